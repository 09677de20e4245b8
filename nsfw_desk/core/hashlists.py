"""Hash lists: read them (streamed), match the library against them, export reviewed hashes.

A line holds one hash: PDQ as 64 hex digits with `,quality`; MD5 (32), SHA-1 (40) or
SHA-256 (64) hex digits of a file's bytes; `#` starts a comment. 64 digits without a quality
are PDQ or SHA-256 alike: such entries are matched both ways (algorithm "hex256"), which
costs nothing in false matches (a random 256-bit value lies within 31 bits of a given PDQ
hash with probability about 10^-38).

File digests (MD5, SHA-1, SHA-256) are computed when a match needs them, from the files,
and kept per content: the scan does not spend ~13 ms per 3 MB photo on three digests
nobody may ever ask for (the library's own identity is BLAKE2b).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nsfw_desk.core import dupes
from nsfw_desk.core.images import ImageError, content_hash, read_file
from nsfw_desk.core.progress import CancelToken, Progress
from nsfw_desk.core.store import Library

KINDS = ("unsafe", "safe", "known")
_BY_LENGTH = {32: "md5", 40: "sha1", 64: "hex256"}
_HEX = frozenset("0123456789abcdefABCDEF")


class HashListError(Exception):
    """A list that cannot be imported as a whole (missing, empty, no hash in a known format)."""


@dataclass
class ImportReport:
    name: str
    kind: str
    entries: int = 0
    by_algorithm: dict[str, int] = field(default_factory=dict)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


@dataclass(frozen=True)
class Match:
    content_hash: str
    list_name: str
    list_kind: str
    algorithm: str
    distance: int  # 0 for file digests


def parse_line(text: str) -> tuple[str, bytes, int | None] | None:
    """(algorithm, digest, PDQ quality) of one line; None for a blank or comment line.

    ValueError with the reason for anything else."""
    text = text.split("#", 1)[0].strip()
    if not text:
        return None
    value, _, quality_text = text.partition(",")
    value = value.strip().lower()
    bad = sorted({ch for ch in value if ch not in _HEX})
    if bad:
        shown = "".join(bad[:5])
        raise ValueError(f"not a hex hash: {shown!r} is not a hex digit")
    algorithm = _BY_LENGTH.get(len(value))
    if algorithm is None:
        raise ValueError(
            f"{len(value)} hex digits: expected 32 (MD5), 40 (SHA-1) or 64 (PDQ or SHA-256)"
        )
    quality = None
    if quality_text.strip():
        if algorithm != "hex256":
            raise ValueError("only a PDQ hash (64 hex digits) takes a ',quality'")
        try:
            quality = int(quality_text)
        except ValueError:
            raise ValueError(f"quality {quality_text.strip()!r} is not a whole number") from None
        if not 0 <= quality <= 100:
            raise ValueError(f"quality {quality} is not between 0 and 100")
        algorithm = "pdq"
    return algorithm, bytes.fromhex(value), quality


def read_hash_list(
    path: Path,
    report: ImportReport,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[tuple[str, bytes, int | None, int]]:
    """Stream (algorithm, digest, quality, line number) from a list file; bad lines go to
    `report.bad_lines`. Reads in lines, never the whole file (lists run to gigabytes)."""
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            done += len(raw)
            if cancel is not None and cancel.cancelled:
                return
            if progress is not None and number % 100_000 == 0:
                progress(Progress("import", done, total, len(report.bad_lines)))
            try:
                parsed = parse_line(raw.decode("ascii"))
            except UnicodeDecodeError:
                report.bad_lines.append((number, "not text: a byte that is not ASCII"))
                continue
            except ValueError as exc:
                report.bad_lines.append((number, str(exc)))
                continue
            if parsed is None:
                continue
            algorithm, digest, quality = parsed
            report.entries += 1
            report.by_algorithm[algorithm] = report.by_algorithm.get(algorithm, 0) + 1
            yield algorithm, digest, quality, number


def import_hash_list(
    library: Library,
    path: Path,
    name: str,
    kind: str,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Store the list under `name`; HashListError when the file holds no usable hash."""
    if kind not in KINDS:
        raise ValueError(f"a hash list is one of {', '.join(KINDS)}, not {kind!r}")
    if not path.is_file():
        raise HashListError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise HashListError(f"{path} is empty: expected one hash per line")
    report = ImportReport(name, kind)
    entries = read_hash_list(path, report, progress=progress, cancel=cancel)
    # Parse before storing: a file without a single good hash is refused as a whole.
    first = next(entries, None)
    if first is None:
        raise HashListError(
            f"{path} holds no hash in a known format (one per line: PDQ as 64 hex digits "
            "with ',quality', or MD5, SHA-1, SHA-256 as 32, 40, 64 hex digits)"
            + (
                f"; line {report.bad_lines[0][0]}: {report.bad_lines[0][1]}"
                if report.bad_lines
                else ""
            )
        )

    def chained() -> Iterator[tuple[str, bytes, int | None, int]]:
        yield first
        yield from entries

    library.add_hash_list(name, kind, chained(), source=str(path))
    return report


# --- matching -------------------------------------------------------------------------------


def ensure_file_digests(
    library: Library,
    hashes: list[str] | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> int:
    """Compute MD5, SHA-1 and SHA-256 for contents that lack them, from any of their files
    whose bytes still have the content's hash; returns how many were computed."""
    hashes = hashes if hashes is not None else library.all_content_hashes()
    have = library.file_digests(hashes)
    missing = [h for h in hashes if h not in have]
    files = library.files_for_hashes(missing)
    rows: list[tuple[str, bytes, bytes, bytes]] = []
    for done, digest in enumerate(missing, 1):
        for path, _text, _fmt in files.get(digest, []):
            try:
                data = read_file(path)
            except (ImageError, OSError):
                continue
            if content_hash(data) != digest:  # changed since the scan: not this content
                continue
            rows.append(
                (
                    digest,
                    hashlib.md5(data, usedforsecurity=False).digest(),
                    hashlib.sha1(data, usedforsecurity=False).digest(),
                    hashlib.sha256(data).digest(),
                )
            )
            break
        if len(rows) >= 500:
            library.record_file_digests(rows)
            rows = []
        if progress is not None and done % 200 == 0:
            progress(Progress("digests", done, len(missing)))
    if rows:
        library.record_file_digests(rows)
    return len(missing)


def match_library(
    library: Library,
    *,
    max_distance: int = dupes.DEFAULT_MAX_DISTANCE,
    compute_digests: bool = True,
) -> dict[str, list[Match]]:
    """content hash → the hash-list entries it matches (exact file digests, PDQ within
    `max_distance`; PDQ hashes of either side below quality 50 are left out)."""
    matches: dict[str, list[Match]] = {}
    file_entries: dict[tuple[str, bytes], list[tuple[str, str]]] = {}
    pdq_rows: list[bytes] = []
    pdq_lists: list[tuple[str, str, str]] = []
    for entry in library.hash_list_entries():
        if entry.algorithm in ("md5", "sha1", "hex256"):
            algorithm = "sha256" if entry.algorithm == "hex256" else entry.algorithm
            file_entries.setdefault((algorithm, entry.digest), []).append(
                (entry.list_name, entry.list_kind)
            )
        if entry.algorithm in ("pdq", "hex256"):
            if entry.quality is not None and entry.quality < dupes.MIN_QUALITY:
                continue
            pdq_rows.append(entry.digest)
            pdq_lists.append((entry.list_name, entry.list_kind, entry.algorithm))
    if file_entries:
        if compute_digests:
            ensure_file_digests(library)
        for content, digests in library.file_digests().items():
            for algorithm, value in digests.items():
                for name, kind in file_entries.get((algorithm, bytes(value)), []):
                    matches.setdefault(content, []).append(Match(content, name, kind, algorithm, 0))
    if pdq_rows:
        hashes, packed, qualities = library.pdq_hashes()
        usable = np.flatnonzero(qualities >= dupes.MIN_QUALITY)
        query = np.frombuffer(b"".join(pdq_rows), dtype=np.uint8).reshape(-1, 32)
        lib, q, dist = dupes.within(packed[usable], query, max_distance)
        for index, row, d in zip(lib.tolist(), q.tolist(), dist.tolist(), strict=True):
            content = hashes[usable[index]]
            name, kind, _algorithm = pdq_lists[row]
            matches.setdefault(content, []).append(Match(content, name, kind, "pdq", d))
    return matches


# --- export ---------------------------------------------------------------------------------


def export_lines(library: Library, labelled: list[str], fmt: str) -> list[str]:
    """Lines for the contents `labelled` (content hashes): 'pdq,quality' or SHA-256 hex."""
    if fmt == "pdq":
        lines = []
        for digest in labelled:
            found = library.pdq_of(digest)
            if found is not None:
                lines.append(f"{found[0].hex()},{found[1]}")
        return lines
    if fmt == "sha256":
        ensure_file_digests(library, labelled)
        digests = library.file_digests(labelled)
        return [bytes(digests[d]["sha256"]).hex() for d in labelled if d in digests]
    raise ValueError(f"format is pdq or sha256, not {fmt!r}")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder, fsync and rename: a
    crash leaves the old file or the new one, never half of one."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def flagged_by_lists(matches: dict[str, list[Match]]) -> set[str]:
    """Contents that an `unsafe` list matches: flagged whatever the model's score says."""
    return {
        content for content, found in matches.items() if any(m.list_kind == "unsafe" for m in found)
    }
