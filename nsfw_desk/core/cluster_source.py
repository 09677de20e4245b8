"""Where `cluster-scan` reads from when SOURCE is not a local folder path, without Ray.

A SOURCE with a scheme (`s3://bucket/prefix`, `gs://…`, `abfs://…`, `hdfs://…`, `file://…`,
or any protocol fsspec knows), or a pyarrow FileSystem handed over from Python, is listed
here on the driver with `pyarrow.fs` (one recursive FileSelector: the sizes and modification
times resume compares come with it, no request per file) and read by Ray Data's read tasks
with `read_listed` (core/cluster.py builds them). Each listed file gives one row: its bytes,
or the error the read ended in, so one object the reader cannot fetch (access denied, gone
since the listing) is one error row, not a failed job.

A plain folder path does not come here: nsfw-desk's own lister (images.discover) keeps
names that are not UTF-8 (Arrow paths are text; pyarrow cannot even list a folder holding
one) and never opens a FIFO. Remote listings take image files by suffix only: sniffing the
first bytes of every other object would cost a request each.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from nsfw_desk.core.images import IMAGE_SUFFIXES, ErrorKind
from nsfw_desk.core.units import format_size

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
DEFAULT_REACH_S = 120.0  # to reach the source at all: past it, the network or credentials


class SourceError(Exception):
    """A SOURCE that cannot be opened or listed; the message says what to do."""


def is_uri(text: str) -> bool:
    return bool(URI.match(text))


@dataclass(frozen=True)
class RemoteFile:
    """One listed file: its path inside the filesystem and the URI the results name it by."""

    path: str
    uri: str
    size: int
    mtime_ns: int | None


@dataclass(frozen=True)
class ListingError:
    uri: str
    kind: str
    message: str
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class RemoteSource:
    """A pyarrow filesystem, the folder in it, and the name the user gave it."""

    filesystem: pafs.FileSystem
    root: str  # the folder inside `filesystem`, no trailing slash
    label: str  # SOURCE as given: each result's path is this plus the file's relative path

    def relative(self, path: str) -> str:
        """`path` (as the filesystem lists it) below the root; some lead with "/", some not."""
        path, root = path.lstrip("/"), self.root.lstrip("/")
        if root and path.startswith(root + "/"):
            return path[len(root) + 1 :]
        return path

    def uri(self, path: str) -> str:
        base = self.label if self.label.endswith("/") else self.label + "/"
        return base + self.relative(path)


def _with_deadline(what: str, label: str, work: Any, timeout_s: float) -> Any:
    """`work()` in a thread: a source that never answers (no network, a credential lookup
    that waits) is a message after `timeout_s`, not a hang."""
    found: dict[str, Any] = {}

    def target() -> None:
        try:
            found["value"] = work()
        except BaseException as exc:  # reported below, on the caller's thread
            found["error"] = exc

    thread = threading.Thread(target=target, name="nsfw-desk-source", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise SourceError(
            f"Could not {what} {label} in {timeout_s:.0f} s: no answer. Check the network "
            "from this machine and the credentials (for s3://, AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or ~/.aws; for gs://, GOOGLE_APPLICATION_CREDENTIALS)."
        )
    if "error" in found:
        raise found["error"]
    return found["value"]


def open_source(
    source: str, filesystem: pafs.FileSystem | None = None, *, timeout_s: float = DEFAULT_REACH_S
) -> RemoteSource:
    """The filesystem and folder for SOURCE (a URI, or a path in `filesystem`), checked to
    be a folder that can be reached."""
    import pyarrow.fs as pafs

    def resolve() -> RemoteSource:
        if filesystem is not None:
            return RemoteSource(filesystem, source.rstrip("/") or "/", source)
        try:
            fs, root = pafs.FileSystem.from_uri(source)
        except Exception as exc:
            fallback = _fsspec(source)
            if fallback is None:
                raise SourceError(_reach_message(source, exc)) from exc
            fs, root = fallback
        # The results name files by SOURCE's own text, less its query (?region=… options).
        return RemoteSource(fs, root.rstrip("/") or "/", source.split("?", 1)[0])

    def check(found: RemoteSource) -> RemoteSource:
        info = found.filesystem.get_file_info(found.root)
        if info.type == pafs.FileType.NotFound:
            raise SourceError(f"{source} does not exist (or holds nothing).")
        if info.type != pafs.FileType.Directory:
            raise SourceError(f"{source} is not a folder; give the folder (prefix) to score.")
        return found

    def work() -> RemoteSource:
        found = resolve()
        try:
            return check(found)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(_reach_message(source, exc)) from exc

    return _with_deadline("reach", source, work, timeout_s)


def _fsspec(source: str) -> tuple[pafs.FileSystem, str] | None:
    """A protocol pyarrow has no filesystem for, through fsspec when it knows it."""
    try:
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem
    except ImportError:
        return None
    try:
        fs, root = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError):  # an unknown protocol, or its package is missing
        return None
    return PyFileSystem(FSSpecHandler(fs)), root


def _reach_message(source: str, exc: BaseException) -> str:
    if "Unrecognized filesystem type" in str(exc):
        scheme = source.split("://", 1)[0]
        return (
            f"No filesystem for {scheme}:// here: pyarrow reads s3://, gs://, abfs://, "
            f"hdfs:// and file://, and fsspec any protocol whose package is installed "
            f"(e.g. pip install s3fs, gcsfs, adlfs). A local folder is given as a plain path."
        )
    return (
        f"Cannot reach {source}: {exc}. Check the address, the network from this machine "
        "and the credentials (for s3://, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
        "~/.aws; for gs://, GOOGLE_APPLICATION_CREDENTIALS). A local folder is given as a "
        "plain path."
    )


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def list_files(
    source: RemoteSource, *, include_hidden: bool, max_bytes: int
) -> tuple[list[RemoteFile], list[ListingError]]:
    """Every image file under the source (by suffix), sorted; special files and files over
    the size limit as errors, as discovery gives them for a local folder."""
    import pyarrow.fs as pafs

    try:
        infos = source.filesystem.get_file_info(pafs.FileSelector(source.root, recursive=True))
        infos.sort(key=lambda i: i.path)  # a name that is not UTF-8 fails here, if not above
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"A name under {source.label} is not valid UTF-8, which pyarrow cannot list "
            f"({exc}). For a local folder give its plain path: nsfw-desk lists it itself "
            "and keeps such names."
        ) from exc
    except Exception as exc:
        raise SourceError(f"Cannot list {source.label}: {exc}") from exc
    files: list[RemoteFile] = []
    errors: list[ListingError] = []
    for info in infos:
        if info.type == pafs.FileType.Directory:
            continue
        uri = source.uri(info.path)
        if not include_hidden and _hidden(source.relative(info.path)):
            continue
        if PurePosixPath(info.path).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        mtime_ns = info.mtime_ns
        if info.type != pafs.FileType.File:
            message = "not a regular file (device, FIFO or socket)"
            errors.append(ListingError(uri, ErrorKind.UNREADABLE, message, info.size, mtime_ns))
        elif info.size > max_bytes:
            message = f"file too large: {format_size(info.size)} (limit {format_size(max_bytes)})"
            errors.append(ListingError(uri, ErrorKind.TOO_LARGE, message, info.size, mtime_ns))
        else:
            files.append(RemoteFile(info.path, uri, info.size, mtime_ns))
    return files, errors


def read_schema() -> pa.Schema:
    """The rows Ray Data's read tasks give the model actors: bytes, or the read's error."""
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("data", pa.large_binary()),
            ("error_kind", pa.string()),
            ("error", pa.string()),
        ]
    )


def read_listed(
    filesystem: pafs.FileSystem, files: list[RemoteFile], *, max_bytes: int
) -> Iterator[pa.Table]:
    """Read each file once (one table per file): its bytes, or an error row with the reason.

    Runs in Ray Data's read tasks. Size and modification time are the listing's: the ones
    resume compares with the next listing."""
    import pyarrow as pa

    schema = read_schema()
    for found in files:
        row: dict[str, Any] = {"path": found.uri, "size": found.size, "mtime_ns": found.mtime_ns}
        try:
            with filesystem.open_input_stream(found.path) as stream:
                data = stream.read(max_bytes + 1)
            if len(data) > max_bytes:
                row.update(
                    error_kind=ErrorKind.TOO_LARGE,
                    error="file grew past the size limit while read",
                )
            else:
                row["data"] = data
        except FileNotFoundError:
            row.update(error_kind=ErrorKind.VANISHED, error="file vanished before it could be read")
        except Exception as exc:  # access denied, a dropped connection: this file only
            row.update(error_kind=ErrorKind.UNREADABLE, error=f"cannot read file: {exc}")
        yield pa.Table.from_pylist([row], schema)
