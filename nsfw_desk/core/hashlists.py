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
from nsfw_desk.core.paths import display_path
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
    bad = list(dict.fromkeys(ch for ch in value if ch not in _HEX))
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:5]) + (", ..." if len(bad) > 5 else "")
        verb = "is not a hex digit" if len(bad) == 1 else "are not hex digits"
        raise ValueError(f"not a hex hash: {shown} {verb}")
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


_BLOCK_BYTES = 1 << 22  # read this much at a time: constant memory whatever the file's size
_HEX_DIGIT = np.full(256, 255, dtype=np.uint8)
for _value, _digits in enumerate(zip("0123456789abcdef", "0123456789ABCDEF", strict=True)):
    _HEX_DIGIT[ord(_digits[0])] = _HEX_DIGIT[ord(_digits[1])] = _value
_SHAPES = {  # line length -> (hex digits, algorithm, quality digits) of the usual lines
    33: (32, "md5", 0),
    41: (40, "sha1", 0),
    65: (64, "hex256", 0),
    **{66 + q: (64, "pdq", q) for q in (1, 2, 3)},  # 'hex,q\n'
}


def _parse_block(lines: list[bytes], first: int) -> tuple[list, list[int]]:
    """Parse the lines of the usual shapes ('hex\n', 'pdq,quality\n') with numpy, many at
    once; (entries as `read_hash_list` yields them, indices of the other lines)."""
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    entries: list = []
    rest = np.ones(len(lines), dtype=bool)
    for length, (digits, algorithm, quality_digits) in _SHAPES.items():
        which = np.flatnonzero(lengths == length)
        if not len(which):
            continue
        text = np.frombuffer(b"".join([lines[i] for i in which.tolist()]), dtype=np.uint8)
        text = text.reshape(len(which), length)
        values = _HEX_DIGIT[text[:, :digits]]
        good = (values != 255).all(axis=1) & (text[:, -1] == ord("\n"))
        quality = None
        if quality_digits:
            number = text[:, 65:-1].astype(np.int64) - ord("0")
            good &= (text[:, 64] == ord(",")) & ((number >= 0) & (number <= 9)).all(axis=1)
            quality = (number * 10 ** np.arange(quality_digits - 1, -1, -1)).sum(axis=1)
            good &= quality <= 100
        which, values = which[good], values[good]
        digests = ((values[:, 0::2] << 4) | values[:, 1::2]).astype(np.uint8)
        rest[which] = False
        qualities = quality[good].tolist() if quality is not None else [None] * len(which)
        raw = digests.tobytes()
        size = digits // 2
        entries.extend(
            (i, algorithm, raw[k * size : (k + 1) * size], q)
            for k, (i, q) in enumerate(zip(which.tolist(), qualities, strict=True))
        )
    entries.sort(key=lambda entry: entry[0])
    return [(a, d, q, first + i) for i, a, d, q in entries], np.flatnonzero(rest).tolist()


def read_hash_list(
    path: Path,
    report: ImportReport,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[tuple[str, bytes, int | None, int]]:
    """Stream (algorithm, digest, quality, line number) from a list file; bad lines go to
    `report.bad_lines`. Reads a few MB at a time, never the whole file (lists run to
    gigabytes), reporting bytes read of the file's size; `Cancelled` when `cancel` is set.
    Lines of the usual shapes are parsed with numpy; the others by `parse_line`."""
    total = path.stat().st_size
    done = 0
    number = 1
    with open(path, "rb") as handle:
        while lines := handle.readlines(_BLOCK_BYTES):
            if cancel is not None:
                cancel.raise_if_cancelled()
            entries, others = _parse_block(lines, number)
            for index in others:
                try:
                    parsed = parse_line(lines[index].decode("ascii"))
                except UnicodeDecodeError:
                    report.bad_lines.append((number + index, "not text: a byte that is not ASCII"))
                    continue
                except ValueError as exc:
                    report.bad_lines.append((number + index, str(exc)))
                    continue
                if parsed is not None:
                    entries.append((*parsed, number + index))
            if others:
                entries.sort(key=lambda entry: entry[3])
            for algorithm, _digest, _quality, _line in entries:
                report.by_algorithm[algorithm] = report.by_algorithm.get(algorithm, 0) + 1
            report.entries += len(entries)
            yield from entries
            number += len(lines)
            done += sum(map(len, lines))
            if progress is not None:
                progress(Progress("import", done, total, len(report.bad_lines), message=path.name))


def import_hash_list(
    library: Library,
    path: Path,
    name: str,
    kind: str,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Store the list under `name`, streamed into one transaction; HashListError when the
    file holds no usable hash. `Cancelled` (nothing stored) when `cancel` is set."""
    if kind not in KINDS:
        raise ValueError(f"a hash list is one of {', '.join(KINDS)}, not {kind!r}")
    shown = display_path(path)
    if not path.is_file():
        if path.is_dir():
            raise HashListError(f"{shown} is a folder: give the list's file (one hash per line)")
        if path.exists():
            raise HashListError(
                f"{shown} is not a regular file (a FIFO, device or socket): give the list's file"
            )
        raise HashListError(f"{shown}: no such file")
    if path.stat().st_size == 0:
        raise HashListError(f"{shown} is empty: expected one hash per line")
    report = ImportReport(name, kind)
    entries = read_hash_list(path, report, progress=progress, cancel=cancel)
    # Parse before storing: a file without a single good hash is refused as a whole.
    first = next(entries, None)
    if first is None:
        raise HashListError(
            f"{shown} holds no hash in a known format (one per line: PDQ as 64 hex digits "
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

    library.add_hash_list(name, kind, chained(), source=shown)  # for people; any name stores
    return report


# --- matching -------------------------------------------------------------------------------


def ensure_file_digests(
    library: Library,
    hashes: list[str] | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> int:
    """Compute MD5, SHA-1 and SHA-256 for contents that lack them, from any of their files
    whose bytes still have the content's hash; returns how many were computed (what was
    computed before a cancel is kept)."""
    hashes = hashes if hashes is not None else library.all_content_hashes()
    have = library.file_digests(hashes)
    missing = [h for h in hashes if h not in have]
    files = library.files_for_hashes(missing)
    rows: list[tuple[str, bytes, bytes, bytes]] = []
    for done, digest in enumerate(missing, 1):
        if cancel is not None and cancel.cancelled:
            break
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
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, list[Match]]:
    """content hash → the hash-list entries it matches (exact file digests, PDQ within
    `max_distance`; PDQ hashes of either side below quality 50 are left out).

    The PDQ entries are read as arrays and matched with `dupes.within` (a million-line list
    against 100,000 items in seconds); file digests are looked up in a table of the
    library's. Progress: "digests" while file digests are computed, then "match" by chunk.
    When `cancel` is set it stops within a second and the answer is incomplete."""
    matches: dict[str, list[Match]] = {}
    if library.hash_list_has_file_entries():
        if compute_digests:
            ensure_file_digests(library, progress=progress, cancel=cancel)
        by_digest: dict[tuple[str, bytes], list[str]] = {}
        for content, digests in library.file_digests().items():
            for algorithm, value in digests.items():
                by_digest.setdefault((algorithm, bytes(value)), []).append(content)
        for count, (name, kind, algorithm, digest) in enumerate(library.hash_list_file_entries()):
            if count % 65_536 == 0 and cancel is not None and cancel.cancelled:
                return matches
            algorithm = "sha256" if algorithm == "hex256" else algorithm
            for content in by_digest.get((algorithm, bytes(digest)), ()):
                matches.setdefault(content, []).append(Match(content, name, kind, algorithm, 0))
    stop = (lambda: cancel.cancelled) if cancel is not None else None
    listed, list_qualities, owners, lists = library.hash_list_pdq_entries(stop)
    usable_entries = (list_qualities < 0) | (list_qualities >= dupes.MIN_QUALITY)
    if not usable_entries.any() or (cancel is not None and cancel.cancelled):
        return matches
    listed, owners = listed[usable_entries], owners[usable_entries]
    hashes, packed, qualities = library.pdq_hashes()
    usable = np.flatnonzero(qualities >= dupes.MIN_QUALITY)
    lib, row, dist = dupes.within(
        packed[usable], listed, max_distance, progress=progress, cancel=cancel
    )
    for index, owner, d in zip(
        usable[lib].tolist(), owners[row].tolist(), dist.tolist(), strict=True
    ):
        content = hashes[index]
        name, kind, _algorithm = lists[owner]
        matches.setdefault(content, []).append(Match(content, name, kind, "pdq", d))
    return matches


# --- export ---------------------------------------------------------------------------------


def export_lines(library: Library, labelled: list[str], fmt: str) -> list[str]:
    """Lines for the contents `labelled` (content hashes): 'pdq,quality' or SHA-256 hex."""
    if fmt == "pdq":
        # Re-encodes and copies share a PDQ hash: one line each, the best quality kept.
        best: dict[str, int] = {}
        for digest in labelled:
            found = library.pdq_of(digest)
            if found is not None:
                code = found[0].hex()
                best[code] = max(best.get(code, found[1]), found[1])
        return [f"{code},{quality}" for code, quality in best.items()]
    if fmt == "sha256":
        ensure_file_digests(library, labelled)
        digests = library.file_digests(labelled)
        return [bytes(digests[d]["sha256"]).hex() for d in labelled if d in digests]
    raise ValueError(f"format is pdq or sha256, not {fmt!r}")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder, fsync and rename: a
    crash leaves the old file or the new one, never half of one."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=folder)
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
