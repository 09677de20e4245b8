"""Near-duplicate groups: contents whose PDQ hashes lie within a Hamming distance.

Exact, not approximate. The index is multi-index hashing (Norouzi et al.) on 16 chunks of 16
bits, sharpened by the pigeonring principle (Qin & Xiao, VLDB 2018): for two hashes within D
bits there is a chunk i, counted round the ring, whose own distance is at most D // 16 and
where chunks i, i+1, i+2 together differ in at most 3 * D // 16 bits. (Take the chunk just
after the point where the running sum of "chunk distance minus D/16" peaks: every run of
chunks from there stays at or under its share.) So for each chunk the candidates are the pairs
whose chunk agrees exactly (or, for D of 16 to 31, in one bit); the next two chunks, one
32-bit word, drop nearly all of them (a random pair passes with p ~ 1e-5), and the few left
are checked on all 256 bits.

The candidates of a chunk come from a grid rather than from pair lists: the hashes sorted by
the chunk's value, laid out as `width` rows × 65,536 columns (column = the chunk's value, row
= rank within that value; empty cells hold random words that the full check rejects). A
value's one-bit neighbours are then a fixed permutation of the columns, a strided view, so
every step is an xor, popcount and compare over contiguous rows: no gathers, which cost 5-40
ns each here. The few hashes beyond `width` in a crowded value are probed one by one. The
width is chosen per chunk by a cost model of the two.

Measured on a 2-core AMD EPYC, 1,000,000 hashes of which 5 % are near copies (1-30 bits
flipped) of others, D = 31: the pair lists of the first version (sorted chunk joins, a
gather per candidate) 5.4 s for 100,000, ~700 s extrapolated; the same with cache-sized
blocks ~50 s extrapolated; this grid 14.2 s of CPU in all (`nsfw-desk bench`; 102 s of wall time
while the machine ran 17 jobs on its 2 cores). Two chunks are searched at once (`WORKERS`).
faiss' IndexBinaryMultiHash (16 × 16 bits, nflip 1, range_search) took 45 s for 100,000
hashes and IndexBinaryFlat is the 5 × 10^11-comparison brute force, so the index here is
numpy's; faiss was not added as a dependency for it.

Groups are connected components of the pairs within D (a copy of a copy joins its
original's group). Hashes with quality below `MIN_QUALITY` are left out, as PDQ advises: flat
or nearly flat pictures hash to noise and would join unrelated groups.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nsfw_desk.core.progress import CancelToken, Progress

if TYPE_CHECKING:
    from nsfw_desk.core.store import Library

DEFAULT_MAX_DISTANCE = 31  # see tests/test_dupes.py for the measured distances behind it
MAX_DISTANCE = 31  # beyond it the one-bit chunk search is no longer exact
MIN_QUALITY = 50  # PDQ's guidance: lower-quality hashes are not reliable for matching
_CHUNKS = 16
_VALUES = 1 << 16  # values of one chunk: the grid's columns
BRUTE_FORCE_PAIRS = 4_000_000  # up to this many pairs, comparing all of them is quicker
_CELL_COST, _PROBE_COST = 1.0, 12.0  # a grid cell vs a one-by-one candidate, measured
_BLOCK = 1 << 18  # hash pairs per numpy step of the brute force
WORKERS = max(1, min(2, os.cpu_count() or 1))  # chunks searched at once (numpy frees the GIL)


@dataclass(frozen=True)
class Group:
    """Indices into the hashes given, the first the group's representative (highest quality,
    then lowest index), with each member's distance to it."""

    members: list[int]
    distances: list[int]


def as_words(packed: np.ndarray) -> np.ndarray:
    """N×32 uint8 hashes as N×4 uint64 words for popcounts."""
    return np.ascontiguousarray(packed, dtype=np.uint8).view(np.uint64).reshape(-1, 4)


def distances_to(words: np.ndarray, one: np.ndarray) -> np.ndarray:
    """Hamming distances of every row of `words` (N×4 uint64) to `one` (4 uint64)."""
    return np.bitwise_count(words ^ one[None, :]).sum(axis=1, dtype=np.int64)


def _check_distance(max_distance: int) -> None:
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"the distance must be 0 to {MAX_DISTANCE} bits, not {max_distance}")


class _Sorted:
    """One side's hashes sorted by chunk `c`: where each value's run starts and how long it
    is, each hash's rank in its run, and the filter word (chunks c+1, c+2) in that order."""

    def __init__(self, chunks: np.ndarray, c: int) -> None:
        key = chunks[:, c]
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order].astype(np.int64)
        following = chunks[self.order][:, [(c + 1) % _CHUNKS, (c + 2) % _CHUNKS]]
        self.word = (following[:, 0].astype(np.uint32) << np.uint32(16)) | following[:, 1]
        self.counts = np.bincount(self.key, minlength=_VALUES)
        self.starts = np.zeros(_VALUES + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.starts[1:])
        self.rank = np.arange(len(self.key)) - self.starts[self.key]

    def overflow(self, width: int) -> int:
        """How many hashes lie beyond `width` rows (probed one by one)."""
        return int(np.maximum(self.counts - width, 0).sum())

    def grid(self, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(width × 65,536 filter words, the sorted position in each cell or -1)."""
        rng = np.random.default_rng(seed)
        words = rng.integers(0, 1 << 32, (width, _VALUES), dtype=np.uint32)
        where = np.full((width, _VALUES), -1, dtype=np.int64)
        inside = np.flatnonzero(self.rank < width)
        words[self.rank[inside], self.key[inside]] = self.word[inside]
        where[self.rank[inside], self.key[inside]] = inside
        return words, where

    def members(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of `values`: (which one, sorted position) of every hash with that value."""
        counts = self.counts[values]
        has = np.flatnonzero(counts)
        reps = counts[has]
        owner = np.repeat(has, reps)
        offsets = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
        return owner, np.repeat(self.starts[values][has], reps) + offsets


def _flipped(grid: np.ndarray, bit: int) -> np.ndarray:
    """The grid's columns permuted value -> value ^ (1 << bit): a strided view, copied."""
    rows = grid.shape[0]
    halves = grid.reshape(rows, _VALUES >> (bit + 1), 2, 1 << bit)[:, :, ::-1]
    return halves.reshape(rows, _VALUES)


def _budgets(max_distance: int) -> tuple[int, int, bool]:
    """(most bits the filter word may differ by for an exact chunk, for a one-bit chunk,
    whether one-bit chunks are searched at all)."""
    ring = 3 * max_distance // _CHUNKS
    return ring, ring - 1, max_distance >= _CHUNKS


def _self_width(side: _Sorted, flips: bool) -> int:
    """Grid rows for a self-join: cells (8.5 values' worth per row pair with flips) against
    one-by-one probes of the hashes left over."""
    probes = 17 if flips else 1
    mean = max(1.0, float(side.counts.mean()))
    best, best_cost = 1, float("inf")
    for width in range(1, int(side.counts.max()) + 1):
        cells = (probes / 2) * _VALUES * width * width
        cost = _CELL_COST * cells + _PROBE_COST * probes * mean * side.overflow(width)
        if cost < best_cost:
            best, best_cost = width, cost
    return best


def _self_chunk(
    chunks: np.ndarray, c: int, max_distance: int, cancel: CancelToken | None
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (original indices) of chunk `c` that pass the pigeonring filter."""
    exact, one_bit, flips = _budgets(max_distance)
    side = _Sorted(chunks, c)
    width = _self_width(side, flips)
    words, where = side.grid(width, seed=c)
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    for row in range(width - 1):  # pairs within a value: each row with the rows below it
        near = np.bitwise_count(words[row + 1 :] ^ words[row]) <= exact
        hit = np.flatnonzero(near)
        below, value = np.divmod(hit, _VALUES)
        lefts.append(where[row, value])
        rights.append(where[row + 1 + below, value])
    if flips:
        xor = np.empty((width, _VALUES // 2), dtype=np.uint32)
        count = np.empty(xor.shape, dtype=np.uint8)
        near = np.empty(xor.shape, dtype=bool)
        for bit in range(_CHUNKS):
            if cancel is not None and cancel.cancelled:
                break
            # Values with the bit clear against their partners with it set: each pair once.
            split = (width, _VALUES >> (bit + 1), 2, 1 << bit)
            low = words.reshape(split)[:, :, 0].reshape(width, -1)
            high = words.reshape(split)[:, :, 1].reshape(width, -1)
            low_at = where.reshape(split)[:, :, 0].reshape(width, -1)
            high_at = where.reshape(split)[:, :, 1].reshape(width, -1)
            for row in range(width):
                np.bitwise_xor(high, low[row], out=xor)
                np.bitwise_count(xor, out=count)
                np.less_equal(count, one_bit, out=near)
                hit = np.flatnonzero(near)
                other, value = np.divmod(hit, _VALUES // 2)
                lefts.append(low_at[row, value])
                rights.append(high_at[other, value])
    over = np.flatnonzero(side.rank >= width)
    if len(over):  # crowded values: their extra hashes against every hash of each partner
        probes = [(side.key[over], exact)]
        if flips:
            probes += [(side.key[over] ^ (1 << bit), one_bit) for bit in range(_CHUNKS)]
        for values, budget in probes:
            owner, position = side.members(values)
            mine = over[owner]
            near = np.bitwise_count(side.word[mine] ^ side.word[position]) <= budget
            near &= mine != position
            lefts.append(mine[near])
            rights.append(position[near])
    left, right = np.concatenate(lefts), np.concatenate(rights)
    real = (left >= 0) & (right >= 0)
    return side.order[left[real]], side.order[right[real]]


def _cross_widths(one: _Sorted, other: _Sorted, flips: bool) -> tuple[int, int]:
    probes = 17 if flips else 1
    mean_one = max(1.0, float(one.counts.mean()))
    mean_other = max(1.0, float(other.counts.mean()))
    over_one = [one.overflow(w) for w in range(1, int(one.counts.max()) + 1)]
    over_other = [other.overflow(w) for w in range(1, int(other.counts.max()) + 1)]
    best, best_cost = (1, 1), float("inf")
    for w1, o1 in enumerate(over_one, 1):
        for w2, o2 in enumerate(over_other, 1):
            cells = probes * _VALUES * w1 * w2
            cost = _CELL_COST * cells + _PROBE_COST * probes * (o1 * mean_other + o2 * mean_one)
            if cost < best_cost:
                best, best_cost = (w1, w2), cost
    return best


def _cross_chunk(
    chunks: np.ndarray, query_chunks: np.ndarray, c: int, max_distance: int, cancel
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (index, query) pairs of chunk `c` that pass the pigeonring filter."""
    exact, one_bit, flips = _budgets(max_distance)
    one, other = _Sorted(chunks, c), _Sorted(query_chunks, c)
    w1, w2 = _cross_widths(one, other, flips)
    words, where = one.grid(w1, seed=c)
    query_words, query_where = other.grid(w2, seed=c + _CHUNKS)
    lefts: list[np.ndarray] = []
    rights: list[np.ndarray] = []
    xor = np.empty((w2, _VALUES), dtype=np.uint32)
    count = np.empty(xor.shape, dtype=np.uint8)
    near = np.empty(xor.shape, dtype=bool)
    for bit in range(-1, _CHUNKS if flips else 0):
        if cancel is not None and cancel.cancelled:
            break
        budget = exact if bit < 0 else one_bit
        partner = query_words if bit < 0 else _flipped(query_words, bit)
        partner_at = query_where if bit < 0 else _flipped(query_where, bit)
        for row in range(w1):
            np.bitwise_xor(partner, words[row], out=xor)
            np.bitwise_count(xor, out=count)
            np.less_equal(count, budget, out=near)
            hit = np.flatnonzero(near)
            other_row, value = np.divmod(hit, _VALUES)
            lefts.append(where[row, value])
            rights.append(partner_at[other_row, value])
    for mine_side, theirs, width, swap in ((one, other, w1, False), (other, one, w2, True)):
        over = np.flatnonzero(mine_side.rank >= width)
        if not len(over):
            continue
        probes = [(mine_side.key[over], exact)]
        if flips:
            probes += [(mine_side.key[over] ^ (1 << bit), one_bit) for bit in range(_CHUNKS)]
        for values, budget in probes:
            owner, position = theirs.members(values)
            mine = over[owner]
            ok = np.bitwise_count(mine_side.word[mine] ^ theirs.word[position]) <= budget
            pair = (position[ok], mine[ok]) if swap else (mine[ok], position[ok])
            lefts.append(pair[0])
            rights.append(pair[1])
    left, right = np.concatenate(lefts), np.concatenate(rights)
    real = (left >= 0) & (right >= 0)
    return one.order[left[real]], other.order[right[real]]


def _each_chunk(
    search: Callable[[int], tuple[np.ndarray, np.ndarray]],
    phase: str,
    progress: Callable[[Progress], None] | None,
    cancel: CancelToken | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run `search` on the 16 chunks, `WORKERS` at a time; progress from this thread."""
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="nsfw-desk-dupes") as pool:
        pending = [pool.submit(search, c) for c in range(_CHUNKS)]
        for done, future in enumerate(pending, 1):
            found = future.result()
            if cancel is not None and cancel.cancelled:
                for rest in pending:
                    rest.cancel()
                return
            yield found
            if progress is not None:
                progress(Progress(phase, done, _CHUNKS, message=f"chunk {done} of {_CHUNKS}"))


def _brute_force(
    words: np.ndarray, query_words: np.ndarray, max_distance: int, cancel, *, upper: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (index, query, distance) within the distance, comparing all pairs in blocks;
    with `upper` (the same hashes on both sides) only index < query."""
    step = max(1, _BLOCK // max(1, len(words)))
    found_l, found_q, found_d = [], [], []
    for first in range(0, len(query_words), step):
        if cancel is not None and cancel.cancelled:
            break
        block = query_words[first : first + step]
        dist = np.bitwise_count(words[:, None, :] ^ block[None, :, :]).sum(-1, dtype=np.int64)
        lib, q = np.nonzero(dist <= max_distance)
        if upper:
            keep = lib < q + first
            lib, q = lib[keep], q[keep]
        found_l.append(lib)
        found_q.append(q + first)
        found_d.append(dist[lib, q])
    if not found_l:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_l), np.concatenate(found_q), np.concatenate(found_d)


def _checked(
    words: np.ndarray,
    query_words: np.ndarray,
    found: list[tuple[np.ndarray, np.ndarray]],
    max_distance: int,
    *,
    ordered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates within the distance on all 256 bits, each pair once (sorted)."""
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    left = np.concatenate([f[0] for f in found]).astype(np.int64)
    right = np.concatenate([f[1] for f in found]).astype(np.int64)
    if ordered:
        left, right = np.minimum(left, right), np.maximum(left, right)
    pair = np.unique(left * len(query_words) + right)
    left, right = np.divmod(pair, len(query_words))
    dist = np.bitwise_count(words[left] ^ query_words[right]).sum(axis=1, dtype=np.int64)
    near = dist <= max_distance
    return left[near], right[near], dist[near]


def _chunk_values(packed: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(packed, dtype=np.uint8).view(">u2").astype(np.uint16)


def near_pairs(
    packed: np.ndarray,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of the N×32 uint8 hashes within `max_distance` bits, once each,
    with the distance. When `cancel` is set it stops within a fraction of a second and the
    answer is incomplete (the caller knows: it cancelled)."""
    _check_distance(max_distance)
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1, 32)
    words = as_words(packed)
    if len(packed) * (len(packed) - 1) // 2 <= BRUTE_FORCE_PAIRS:
        left, right, dist = _brute_force(words, words, max_distance, cancel, upper=True)
        if progress is not None:
            progress(Progress("dupes", 1, 1))
        order = np.lexsort((right, left))
        return left[order], right[order], dist[order]
    chunks = _chunk_values(packed).reshape(-1, _CHUNKS)

    def search(c: int) -> tuple[np.ndarray, np.ndarray]:
        return _self_chunk(chunks, c, max_distance, cancel)

    found = list(_each_chunk(search, "dupes", progress, cancel))
    return _checked(words, words, found, max_distance, ordered=True)


def _components(count: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A component label per index (the smallest index in it): min-label propagation, with
    roots hooked and paths compressed each round, until every pair has one label."""
    label = np.arange(count)
    while True:
        before = label.copy()
        low = np.minimum(label[left], label[right])
        for side in (left, right):
            np.minimum.at(label, label[side], low)  # hook the roots
            np.minimum.at(label, side, low)
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label, before):
            return label


def group(
    packed: np.ndarray,
    qualities: np.ndarray | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    min_quality: int = MIN_QUALITY,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> list[Group]:
    """Near-duplicate groups (two or more members) among N×32 uint8 hashes, largest first."""
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1, 32)
    usable = np.arange(len(packed))
    if qualities is not None:
        usable = np.flatnonzero(np.asarray(qualities) >= min_quality)
    subset = packed[usable]
    left, right, _ = near_pairs(subset, max_distance, progress=progress, cancel=cancel)
    if not len(left):
        return []
    label = _components(len(subset), left, right)
    members = np.unique(np.concatenate([left, right]))
    by_label: dict[int, list[int]] = {}
    for index in members.tolist():
        by_label.setdefault(int(label[index]), []).append(index)
    words = as_words(subset)
    groups = []
    for local in by_label.values():
        if qualities is not None:
            local.sort(key=lambda i: (-int(qualities[usable[i]]), i))
        dist = distances_to(words[local], words[local[0]])
        groups.append(Group([int(usable[i]) for i in local], [int(d) for d in dist]))
    groups.sort(key=lambda g: (-len(g.members), g.members[0]))
    return groups


def within(
    packed: np.ndarray,
    query: np.ndarray,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (index into `packed`, index into `query`, distance) within `max_distance`, once
    each, for matching a hash list against the library: the same grid as `near_pairs`, one
    side's rows against the other's."""
    _check_distance(max_distance)
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1, 32)
    query = np.ascontiguousarray(query, dtype=np.uint8).reshape(-1, 32)
    words, query_words = as_words(packed), as_words(query)
    if not len(packed) or not len(query):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    if len(packed) * len(query) <= BRUTE_FORCE_PAIRS or min(len(packed), len(query)) <= 64:
        lib, q, dist = _brute_force(words, query_words, max_distance, cancel, upper=False)
        if progress is not None:
            progress(Progress("match", 1, 1))
        order = np.lexsort((q, lib))
        return lib[order], q[order], dist[order]
    chunks = _chunk_values(packed).reshape(-1, _CHUNKS)
    query_chunks = _chunk_values(query).reshape(-1, _CHUNKS)

    def search(c: int) -> tuple[np.ndarray, np.ndarray]:
        return _cross_chunk(chunks, query_chunks, c, max_distance, cancel)

    found = list(_each_chunk(search, "match", progress, cancel))
    return _checked(words, query_words, found, max_distance, ordered=False)


@dataclass(frozen=True)
class ContentGroup:
    """Near-duplicate contents of a library: content hashes (representative first), each
    one's PDQ hash and its distance to the representative's."""

    hashes: list[str]
    pdqs: list[bytes]
    distances: list[int]


@dataclass(frozen=True)
class GroupInputs:
    """What `library_groups` reads from the library: the contents' PDQ hashes and the
    contents stored at several paths. Read once, they also key a cache of the groups."""

    hashes: list[str]  # content hashes, in hash order
    packed: np.ndarray  # N×32 uint8 PDQ hashes
    qualities: np.ndarray  # N
    copies: list[str]  # contents at more than one path

    @classmethod
    def read(cls, library: Library, root: Path | None = None) -> GroupInputs:
        hashes, packed, qualities = library.pdq_hashes(root)
        return cls(hashes, packed, qualities, library.contents_with_copies(root))

    def key(self) -> bytes:
        """Equal for equal inputs (equal groups)."""
        key = hashlib.blake2b(digest_size=16)
        for part in (self.hashes, self.copies):
            key.update("\n".join(part).encode("ascii", "replace") + b"\0")
        key.update(self.packed.tobytes())
        key.update(self.qualities.tobytes())
        return key.digest()


def library_groups(
    library: Library,
    root: Path | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    min_quality: int = MIN_QUALITY,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
    inputs: GroupInputs | None = None,
) -> list[ContentGroup]:
    """Groups among the contents with files under `root` (the whole library when None);
    `inputs`: `GroupInputs.read(library, root)` when the caller has it already.

    A content stored at several paths counts as a group even alone (exact copies); a caller
    lists each content's files (`Library.files_for_hashes`)."""
    inputs = inputs or GroupInputs.read(library, root)
    hashes, packed = inputs.hashes, inputs.packed
    index = {digest: i for i, digest in enumerate(hashes)}
    found = group(
        packed,
        inputs.qualities,
        max_distance,
        min_quality=min_quality,
        progress=progress,
        cancel=cancel,
    )
    groups = [
        ContentGroup(
            [hashes[i] for i in g.members], [packed[i].tobytes() for i in g.members], g.distances
        )
        for g in found
    ]
    # Byte-identical copies (one content at several paths) are a group of their own when no
    # near-duplicate joined them: a group of one content, at distance 0.
    grouped = {digest for g in groups for digest in g.hashes}
    for digest in inputs.copies:
        if digest not in grouped and digest in index:
            groups.append(ContentGroup([digest], [packed[index[digest]].tobytes()], [0]))
    return groups


def near_duplicates_of(
    hashes: list[str],
    packed: np.ndarray,
    qualities: np.ndarray,
    content_hash: str,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    min_quality: int = MIN_QUALITY,
) -> list[str]:
    """The contents among `Library.pdq_hashes`' answer within `max_distance` of one of them,
    nearest first (itself left out). A low-quality hash matches nothing, as in `group`."""
    try:
        i = hashes.index(content_hash)
    except ValueError:
        return []
    if int(qualities[i]) < min_quality:
        return []
    lib, _, dist = within(packed, packed[[i]], max_distance)
    keep = (lib != i) & (np.asarray(qualities)[lib] >= min_quality)
    lib, dist = lib[keep], dist[keep]
    return [hashes[int(j)] for j in lib[np.lexsort((lib, dist))]]
