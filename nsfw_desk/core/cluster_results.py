"""The layout of a `cluster-scan` results folder, read and written without Ray.

    RESULTS_DIR/
      run-20261126T003000Z-1a2b3c4d/        one folder per completed run
        run.json                            source root, models (id, labels, …), counts
        *.parquet                           one row per file (schema below)
      run-20261126T010000Z-5e6f7a8b.partial/ a run that has not finished (or was killed)

Every run writes into its own folder, so a run never rewrites another's files, and a run
only looks at its own to check that each file it was given has exactly one row. Readers
(`read_rows`: resume and `nsfw-desk import`) take every readable Parquet file, in run order,
and keep one row per path: the latest run's. So the rows a reader sees are duplicate-free
even if a block were ever written twice, or a killed run left files behind; a torn Parquet
file (a run killed while writing it) is skipped with a warning and its files are scored
again by the next run.

pyarrow is imported inside functions: it comes with `ray[data]` (the `cluster` extra) and
`nsfw-desk import` needs it, but nothing else in the app does.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_desk.core.durable import fsync_dir, write_durably
from nsfw_desk.core.images import ErrorKind
from nsfw_desk.core.paths import display_path

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

RUN_PREFIX = "run-"
PARTIAL_SUFFIX = ".partial"
RUN_FILE = "run.json"
INSTALL_HINT = "pip install 'nsfw-desk[cluster]'"
SHOWN_INCOMPLETE = 5  # incomplete rows named in the refusal; the rest are counted


class ResultsError(Exception):
    """A results folder (or pyarrow) that cannot be used; the message says what to do."""


def require_pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ResultsError(
            f"Reading cluster results needs pyarrow, which is not installed. Install it with "
            f"{INSTALL_HINT} (Ray Data, which brings pyarrow) or pip install pyarrow."
        ) from exc
    import pyarrow

    return pyarrow


def schema() -> pa.Schema:
    """One row per file. `path_base64`: the exact bytes when `path` (text) would lose them
    (core/paths.py); `scores`: one entry per model, the embedding as float16 little-endian
    bytes and the probabilities as float32, as the library stores them."""
    pa = require_pyarrow()
    score = pa.struct(
        [
            ("model", pa.string()),
            ("unsafe", pa.float32()),
            ("probabilities", pa.list_(pa.float32())),
            ("embedding", pa.binary()),
        ]
    )
    return pa.schema(
        [
            ("path", pa.string()),
            ("path_base64", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("hash", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("format", pa.string()),
            ("scores", pa.list_(score)),
            ("pdq", pa.binary()),
            ("pdq_quality", pa.int32()),
            ("thumbnail", pa.binary()),
            ("error_kind", pa.string()),
            ("error", pa.string()),
        ]
    )


def row_path(row: dict) -> bytes:
    """The exact path bytes of a result row; ResultsError for a row that names no path."""
    encoded = row.get("path_base64")
    if encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError as exc:  # binascii.Error
            raise ResultsError(f"its path_base64 is not base64 ({exc}): {encoded[:40]!r}") from exc
    if not row.get("path"):
        raise ResultsError("it names no path (path and path_base64 are empty)")
    return str(row["path"]).encode("utf-8")


def new_run_folder(out: Path, run_id: str) -> Path:
    folder = out / f"{RUN_PREFIX}{run_id}{PARTIAL_SUFFIX}"
    folder.mkdir(parents=True)
    return folder


def finish_run_folder(folder: Path) -> Path:
    """Rename a finished run's folder to its final name (atomic; durable)."""
    final = folder.with_name(folder.name.removesuffix(PARTIAL_SUFFIX))
    os.replace(folder, final)
    fsync_dir(final.parent)
    return final


def write_run_file(folder: Path, record: dict) -> None:
    tmp = folder / f".{RUN_FILE}.tmp"
    tmp.unlink(missing_ok=True)
    write_durably(tmp, json.dumps(record, indent=1, sort_keys=True).encode("utf-8"), mode=0o644)
    os.replace(tmp, folder / RUN_FILE)
    fsync_dir(folder)


def run_folders(out: Path) -> list[Path]:
    """Run folders, oldest first (the names start with the UTC start time)."""
    if not out.is_dir():
        return []
    return sorted(
        (p for p in out.iterdir() if p.is_dir() and p.name.startswith(RUN_PREFIX)),
        key=lambda p: p.name.removesuffix(PARTIAL_SUFFIX),
    )


def run_records(out: Path) -> list[dict]:
    """The run.json of every run (its models, source root), oldest first."""
    records = []
    for folder in run_folders(out):
        try:
            records.append(json.loads((folder / RUN_FILE).read_text("utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("%s: no readable %s (%s); its rows are still read", folder, RUN_FILE, exc)
    return records


def parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if p.is_file())


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """One Parquet file, or None (with a warning) when it is torn or not ours."""
    require_pyarrow()
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # a torn file from a killed run: its files are scored again
        log.warning("%s: unreadable Parquet file skipped (%s)", path, exc)
        return None


def read_rows(
    out: Path,
    columns: list[str] | None = None,
    *,
    complete: bool = False,
    skipped: list[Path] | None = None,
) -> Iterator[dict]:
    """Every file's row once: the latest run's row for each path (see the module docstring).

    Two passes, one Parquet file in memory at a time: the path columns say which row of
    which file is each path's latest, then the files are read again for `columns`. With
    `complete` (an import), a latest row with neither a content hash nor an error is
    refused in the first pass, before any row is used: it says nothing a library can hold.
    `skipped` gets each Parquet file that could not be read (torn by a killed run)."""
    keys = ["path", "path_base64"]
    checked = [*keys, "hash", "error_kind"] if complete else keys
    want = None if columns is None else sorted({*columns, *keys})
    latest: dict[bytes, tuple[int, int]] = {}
    incomplete: dict[bytes, str] = {}  # path → where its latest row is, while incomplete
    files: list[Path] = []
    for folder in run_folders(out):
        for path in parquet_files(folder):
            table = read_table(path, checked)
            if table is None:
                if skipped is not None:
                    skipped.append(path)
                continue
            for index, key in enumerate(table.to_pylist()):
                try:
                    raw = row_path(key)
                except ResultsError as exc:  # every row is checked before any is used
                    raise ResultsError(
                        f"{path}, row {index + 1}: {exc}; is it a cluster-scan's result file?"
                    ) from exc
                latest[raw] = (len(files), index)
                if complete and key.get("hash") is None and key.get("error_kind") is None:
                    incomplete[raw] = f"{path}, row {index + 1} ({display_path(raw)})"
                else:
                    incomplete.pop(raw, None)
            files.append(path)
    if incomplete:
        rows = list(incomplete.values())
        shown = "; ".join(rows[:SHOWN_INCOMPLETE]) + (
            f"; and {len(rows) - SHOWN_INCOMPLETE:,} more" if len(rows) > SHOWN_INCOMPLETE else ""
        )
        raise ResultsError(
            f"{len(rows):,} {'row has' if len(rows) == 1 else 'rows have'} neither a content "
            f"hash nor an error, so nothing says what became of the file: {shown}. Nothing "
            "was imported. Run the same cluster-scan again (it scores those files anew) and "
            "import then; is it a cluster-scan's result folder?"
        )
    for number, path in enumerate(files):
        table = read_table(path, want)
        if table is None:  # it was readable a moment ago
            raise ResultsError(f"{path} changed while it was read; run the command again.")
        for index, row in enumerate(table.to_pylist()):
            if latest.get(row_path(row)) == (number, index):
                yield row


@dataclass(frozen=True)
class Done:
    size: int | None
    mtime_ns: int | None


def done_files(out: Path) -> dict[bytes, Done]:
    """Files a resumed run may skip: path bytes → the (size, mtime) they were scored at.
    Rows with an error that may pass (unreadable, vanished) are not done, nor a row with
    neither a hash nor an error (`nsfw-desk import` refuses it until a run replaces it)."""
    done: dict[bytes, Done] = {}
    for row in read_rows(out, ["size", "mtime_ns", "error_kind", "hash"]):
        kind = row.get("error_kind")
        if (kind is None and row.get("hash") is not None) or kind in ErrorKind.CONTENT_BOUND:
            done[row_path(row)] = Done(row.get("size"), row.get("mtime_ns"))
    return done
