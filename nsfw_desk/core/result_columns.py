"""A folder's stored results as a few numpy columns: how a million rows cross threads cheaply.

`Library.results` yields one `FileOutcome` (and one `Path`) per file: at a million files that
is seconds of work and hundreds of megabytes before the grid shows anything. The desk reads
`Library.result_columns` instead: the paths stay one bytes blob with offsets (a path is
decoded only when a tile, a tooltip or a decision asks for it), hashes one fixed-width array,
errors a small dict. Handing these to the GUI thread moves a handful of objects, not a
million.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HASH_WIDTH = 64  # BLAKE2b-256 in hex
# Rows per step when converting: one C call over a million rows holds the GIL for its whole
# length (the GUI thread would wait); between steps the GUI thread gets its turn.
CHUNK = 50_000
NUMBER_TEXT_PIECE = 1 << 20  # characters of packed numbers parsed per call (about 30 ms)


def _chunked(values: list, convert: Callable[[list], np.ndarray]) -> np.ndarray:
    """`convert(values)` a chunk at a time, concatenated."""
    if len(values) <= CHUNK:
        return convert(values)
    return np.concatenate([convert(values[i : i + CHUNK]) for i in range(0, len(values), CHUNK)])


def concat(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """`np.concatenate(parts)` (`empty` when there are none), copied a part at a time:
    one call over a million hashes holds the GIL for 100 ms here (fresh memory, page
    faults); between parts the GUI thread gets its turn. Always a new, writable array."""
    if not parts:
        return empty
    out = np.empty((sum(len(part) for part in parts), *parts[0].shape[1:]), parts[0].dtype)
    at = 0
    for part in parts:
        out[at : at + len(part)] = part
        at += len(part)
    return out


@dataclass
class ResultColumns:
    """Rows in library order (files by path bytes, then errors by path bytes)."""

    blob: bytes  # every path's bytes (os.fsencode), one after the other
    offsets: np.ndarray  # int64, len(rows) + 1: row r is blob[offsets[r]:offsets[r + 1]]
    hashes: np.ndarray  # "S64"; b"" for a row without a hash (an error)
    scores: np.ndarray  # float64; NaN: no score for the model
    mtimes: np.ndarray  # int64 ns; 0 unknown
    sizes: np.ndarray  # int64 bytes; -1 unknown
    errors: dict[int, str] = field(default_factory=dict)  # row → error text shown on the tile
    # Rows in hash order (argsort of `hashes`, made on the read thread): lookups by hash
    # bisect `hashes[hash_order]` instead of a dict of a million strings.
    hash_order: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    hashes_sorted: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="S64"))
    # Rows highest score first (no score last, ties in row order): the desk's default sort,
    # made on the read thread too (`score_order`).
    by_score: np.ndarray | None = None
    # (start, stop) row ranges whose path bytes ascend (library order): lookups bisect them.
    sorted_runs: tuple[tuple[int, int], ...] = ()

    def __len__(self) -> int:
        return len(self.scores)

    def raw_path(self, row: int) -> bytes:
        return self.blob[int(self.offsets[row]) : int(self.offsets[row + 1])]

    def path(self, row: int) -> Path:
        return Path(os.fsdecode(self.raw_path(row)))

    def hash(self, row: int) -> str | None:
        digest = self.hashes[row]
        return digest.decode("ascii") if digest else None

    @classmethod
    def build(
        cls,
        files: FileArrays,
        scores: np.ndarray | None,
        errors: dict[int, str] | None = None,
        sorted_runs: tuple[tuple[int, int], ...] = (),
    ) -> ResultColumns:
        """Columns from the rows' arrays; `scores` None: none yet (the caller fills them,
        e.g. with `align_sorted`)."""
        n = len(files.hashes)
        order = hash_order(files.hashes)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(files.lengths, out=offsets[1:])
        return cls(
            blob=files.blob,
            offsets=offsets,
            hashes=files.hashes,
            hash_order=order,
            hashes_sorted=files.hashes[order],
            scores=np.full(n, np.nan) if scores is None else scores,
            mtimes=files.mtimes,
            sizes=files.sizes,
            errors=dict(errors or {}),
            sorted_runs=sorted_runs,
        )


@dataclass
class FileArrays:
    """Listed rows as arrays, before they become `ResultColumns`."""

    blob: bytes  # the paths' bytes, one after the other
    lengths: np.ndarray  # int64: each path's length in `blob`
    hashes: np.ndarray  # "S64"; b"" for none
    mtimes: np.ndarray  # int64 ns; 0 unknown
    sizes: np.ndarray  # int64 bytes; -1 unknown

    @classmethod
    def from_rows(
        cls,
        raws: list[bytes],
        hashes: list[str | None],
        mtimes: list[int | None],
        sizes: list[int | None],
    ) -> FileArrays:
        """From per-row values (a query's rows, unzipped)."""
        n = len(raws)
        return cls(
            blob=b"".join([b"".join(raws[i : i + CHUNK]) for i in range(0, n, CHUNK)]),
            lengths=_chunked(raws, lambda c: np.fromiter(map(len, c), np.int64, len(c)))
            if n
            else np.zeros(0, np.int64),
            hashes=_chunked(hashes, lambda c: np.array([h or "" for h in c], f"S{HASH_WIDTH}")),
            mtimes=_chunked(mtimes, lambda c: np.array([m or 0 for m in c], np.int64)),
            sizes=_chunked(
                sizes, lambda c: np.array([-1 if s is None else s for s in c], np.int64)
            ),
        )

    @classmethod
    def unpack(
        cls, count: int, paths: bytes, lengths: bytes, hashes: bytes, mtimes: bytes, sizes: bytes
    ) -> FileArrays | None:
        """From `count` rows that SQLite packed into a few strings (the store's packed
        read: paths one after the other, hashes likewise, numbers as comma-separated text),
        which costs a handful of Python objects instead of five per row. None when the
        strings do not hold `count` well-formed rows (a NULL, which `group_concat` skips,
        or a value of another type): read those rows one by one instead."""
        digests = unpack_hashes(count, hashes)
        if not count or digests is None:
            return None
        try:
            arrays = cls(
                blob=paths,
                lengths=unpack_numbers(lengths, np.int64),
                hashes=digests,
                mtimes=unpack_numbers(mtimes, np.int64),
                sizes=unpack_numbers(sizes, np.int64),
            )
        except ValueError:  # a number that is not one
            return None
        whole = all(
            len(column) == count
            for column in (arrays.lengths, arrays.hashes, arrays.mtimes, arrays.sizes)
        )
        if not whole or int(arrays.lengths.sum()) != len(paths):
            return None
        return arrays

    @classmethod
    def join(cls, parts: list[FileArrays]) -> FileArrays:
        """One array per column (always writable: the grid edits its own hashes)."""
        parts = [part for part in parts if len(part.hashes)]
        if not parts:
            empty = np.zeros(0, np.int64)
            return cls(b"", empty, np.zeros(0, f"S{HASH_WIDTH}"), empty, empty)
        return cls(
            blob=b"".join(part.blob for part in parts),
            lengths=concat([part.lengths for part in parts], parts[0].lengths),
            hashes=concat([part.hashes for part in parts], parts[0].hashes),
            mtimes=concat([part.mtimes for part in parts], parts[0].mtimes),
            sizes=concat([part.sizes for part in parts], parts[0].sizes),
        )


def unpack_scores(count: int, hashes: bytes, scores: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(hashes "S64", scores float64) of `count` packed score rows; None when the strings
    do not hold them (as `FileArrays.unpack`)."""
    digests = unpack_hashes(count, hashes)
    try:
        values = unpack_numbers(scores, np.float64)
    except ValueError:
        return None
    if digests is None or len(values) != count:
        return None
    return digests, values


def unpack_hashes(count: int, hashes: bytes) -> np.ndarray | None:
    """`count` packed 64-character hashes as "S64"; None when the bytes do not hold
    exactly that (ASCII: a hash is hex)."""
    if len(hashes) != count * HASH_WIDTH:
        return None
    if hashes and np.frombuffer(hashes, np.uint8).max() > 127:
        return None
    return np.frombuffer(hashes, f"S{HASH_WIDTH}")  # read-only: `concat` makes the copy


def unpack_numbers(text: bytes, dtype: type) -> np.ndarray:
    """Comma-separated numbers parsed in C, a piece at a time (one call over a million
    holds the GIL for half a second). ValueError on anything else (numpy before 2.3 warned
    instead and stopped early: the callers check the count)."""
    pieces: list[np.ndarray] = []
    start = 0
    while start < len(text):
        end = text.find(b",", start + NUMBER_TEXT_PIECE)
        end = len(text) if end < 0 else end
        try:
            pieces.append(np.fromstring(text[start:end], dtype=dtype, sep=","))
        except DeprecationWarning as exc:  # older numpy, warnings as errors
            raise ValueError(str(exc)) from exc
        start = end + 1
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype)


def error_text(kind: str | None, message: str | None) -> str | None:
    """What a tile says about a file that could not be read (as the grid's merge does)."""
    if kind is None and message is None:
        return None
    kind = (kind or "error").replace("_", " ")
    return f"{kind}: {message}" if message else kind


def labels_of(columns: ResultColumns, labels: dict[str, str]) -> dict[str, str]:
    """The labels (hash → label, e.g. every current label of the library) of contents
    these rows hold, found in the hashes sorted once (`hash_order`)."""
    if not labels or not len(columns):
        return {}
    keys = list(labels)
    ordered = columns.hashes_sorted
    wanted = np.array(keys, dtype=f"S{HASH_WIDTH}")
    at = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
    inside = ordered[at] == wanted
    return {keys[i]: labels[keys[i]] for i in np.flatnonzero(inside).tolist()}


def matches(keys: list[str], hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of `hashes`, index in `keys`) of each row of `hashes` ("S64", b"" none)
    whose hash is one of `keys`: the keys sorted once, each row found by bisection, a
    chunk at a time (the GUI thread gets the interpreter between chunks)."""
    none = np.empty(0, dtype=np.int64)
    if not keys or not len(hashes):
        return none, none
    wanted = _chunked(keys, lambda c: np.array(c, f"S{HASH_WIDTH}"))
    order = np.argsort(wanted, kind="stable")
    ordered = wanted[order]
    rows, which = [none], [none]
    for start in range(0, len(hashes), CHUNK):
        part = hashes[start : start + CHUNK]
        at = np.minimum(np.searchsorted(ordered, part), len(ordered) - 1)
        hit = np.flatnonzero(ordered[at] == part)
        rows.append(hit + start)
        which.append(order[at[hit]])
    return np.concatenate(rows), np.concatenate(which)


def align(found: dict[str, float], hashes: np.ndarray) -> np.ndarray:
    """Per row of `hashes`: `found[its hash]` (a score), NaN where it has none."""
    out = np.full(len(hashes), np.nan, dtype=np.float64)
    rows, which = matches(list(found), hashes)
    if len(rows):
        values = _chunked(list(found.values()), lambda c: np.array(c, np.float64))
        out[rows] = values[which]
    return out


def align_sorted(
    keys: np.ndarray | list[str],
    values: np.ndarray | list[float],
    hashes: np.ndarray,
    order: np.ndarray | None = None,
    hashes_sorted: np.ndarray | None = None,
) -> np.ndarray:
    """As `align`, for `keys` ("S64" or text) already ascending (an index read in hash
    order) with their `values`: no dict of a million strings, no sort of the keys. Rows
    are looked up in hash order (`order`, `hash_order(hashes)` when not given;
    `hashes_sorted`, `hashes[order]`), which keeps the bisection in cache (0.5 s → 0.1 s
    at 1M)."""
    out = np.full(len(hashes), np.nan, dtype=np.float64)
    if not len(keys) or not len(hashes):
        return out
    found = (
        values
        if isinstance(values, np.ndarray)
        else _chunked(values, lambda c: np.array(c, np.float64))
    )
    order = hash_order(hashes) if order is None else order
    for start, hit, at in _find_sorted(_as_digests(keys), hashes, order, hashes_sorted):
        out[order[start : start + len(hit)][hit]] = found[at[hit]]
    return out


def count_present(
    keys: np.ndarray, hashes: np.ndarray, order: np.ndarray, hashes_sorted: np.ndarray
) -> int:
    """How many rows of `hashes` (sorted by `order` into `hashes_sorted`) hold one of
    `keys` ("S64", ascending)."""
    if not len(keys):
        return 0
    return sum(int(hit.sum()) for _, hit, _ in _find_sorted(keys, hashes, order, hashes_sorted))


def present_sorted(needles: np.ndarray, haystack: np.ndarray) -> np.ndarray:
    """Per hash of `needles` ("S64", ascending): whether `haystack` (ascending) holds it."""
    found = np.zeros(len(needles), dtype=bool)
    if len(needles) and len(haystack):
        rows = np.arange(len(needles))
        for start, hit, _ in _find_sorted(haystack, needles, rows, needles):
            found[start : start + len(hit)] = hit
    return found


def _as_digests(keys: np.ndarray | list[str]) -> np.ndarray:
    if isinstance(keys, np.ndarray):
        return keys
    return _chunked(keys, lambda c: np.array(c, f"S{HASH_WIDTH}"))


def _find_sorted(
    ordered: np.ndarray, hashes: np.ndarray, order: np.ndarray, hashes_sorted: np.ndarray | None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(start, hit, at) per chunk of the rows in hash order: whether each holds one of
    `ordered` (ascending "S64") and which. Found by bisecting the keys' first 8 bytes as
    integers (a text bisection of a million 64-byte keys took 1.6 s), checked against the
    whole key; rows whose prefix several keys share bisect the text."""
    prefixes = _prefix(ordered)
    last = len(ordered) - 1
    for start in range(0, len(hashes), CHUNK):
        part = (
            hashes[order[start : start + CHUNK]]
            if hashes_sorted is None
            else hashes_sorted[start : start + CHUNK]
        )
        mine = _prefix(part)
        at = np.minimum(np.searchsorted(prefixes, mine), last)
        hit = ordered[at] == part
        shared = np.flatnonzero(~hit & (prefixes[at] == mine))  # a prefix two keys share
        if len(shared):
            at[shared] = np.minimum(np.searchsorted(ordered, part[shared]), last)
            hit[shared] = ordered[at[shared]] == part[shared]
        yield start, hit, at


def hash_order(hashes: np.ndarray) -> np.ndarray:
    """`np.argsort(hashes, kind="stable")` for "S64" digests, sorting their first 8 bytes
    as integers (a text sort of a million took 0.4 s, this 0.2 s); rows whose first bytes
    tie (hex digests: 32 bits, so about a hundred pairs in a million, plus every copy of
    one content) are sorted by their whole text among themselves."""
    if len(hashes) < 2:
        return np.arange(len(hashes))
    prefixes = _prefix(hashes)
    order = np.argsort(prefixes, kind="stable")
    first_bytes = prefixes[order]
    tie = first_bytes[1:] == first_bytes[:-1]
    if tie.any():
        at = np.flatnonzero(np.concatenate([tie, [False]]) | np.concatenate([[False], tie]))
        # Ties sit in runs of equal first bytes, ascending: sorting them all by text keeps
        # each run in its place, and a stable sort keeps equal hashes in row order.
        tied = order[at]
        order[at] = tied[np.argsort(hashes[tied], kind="stable")]
    return order


def _prefix(digests: np.ndarray) -> np.ndarray:
    """Each digest's first 8 bytes as a big-endian integer: in the digests' own order
    (bytes compare like the text), and bisected ten times faster."""
    raw = np.ascontiguousarray(digests, dtype=f"S{HASH_WIDTH}").view(np.uint8)
    return raw.reshape(len(digests), HASH_WIDTH)[:, :8].copy().view(">u8").ravel().astype(np.uint64)


def hash_texts(hashes: np.ndarray) -> set[str]:
    return {h.decode("ascii") for h in hashes.tolist() if h}


def read_scores(library, model_id: str, hashes: np.ndarray) -> np.ndarray:
    """`model_id`'s score per row of `hashes` (a listing's hash snapshot), NaN where it
    has none: a few rows ask for theirs, many read the model's scores in one pass and
    match them in numpy (asking for a million hashes by `IN` takes tens of seconds)."""
    if len(hashes) <= 20_000:
        return align(library.scores_for(model_id, hash_texts(hashes)), hashes)
    keys, values = library.model_scores_in_hash_order(model_id)
    return align_sorted(keys, values, hashes)


def read_ai_labels(library, hashes: np.ndarray) -> dict[str, bool]:
    """The current AI-generated labels (hash → True/False) of contents some row of
    `hashes` holds; as `read_scores`, every label read once and matched in numpy when the
    rows are many."""
    from nsfw_desk.core.review import ReviewStore

    reviews = ReviewStore(library)
    if len(hashes) <= 20_000:
        return reviews.current_ai_labels(hash_texts(hashes))
    found = reviews.current_ai_labels()
    keys = list(found)
    _, which = matches(keys, hashes)
    return {keys[i]: found[keys[i]] for i in np.unique(which).tolist()}


def read_folder(library, folder: Path, model_id: str | None) -> tuple[ResultColumns, dict]:
    """(columns, labels) of `folder` for `model_id`: what the desk shows, read on a
    worker thread (`library` is that thread's `Library`)."""
    from nsfw_desk.core.review import ReviewStore

    columns = library.result_columns(folder, model_id)
    columns.by_score = score_order(columns.scores)
    _give_back_freed_memory()
    if len(columns) <= 20_000:  # few rows: ask for just theirs
        hashes = {h.decode("ascii") for h in columns.hashes.tolist() if h}
        return columns, ReviewStore(library).current_labels(hashes)
    return columns, labels_of(columns, ReviewStore(library).current_labels())


def score_order(scores: np.ndarray) -> np.ndarray:
    """Rows by score, highest first; rows without a score last; ties in row order."""
    return np.argsort(np.where(np.isnan(scores), np.inf, -scores), kind="stable")


def _give_back_freed_memory() -> None:
    """Return the rows' freed memory to the system (glibc keeps it otherwise, and the
    desk's resident memory would stay at the read's peak)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
            ctypes.CDLL("libc.so.6").malloc_trim(0)
