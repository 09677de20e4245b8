"""Near-duplicate groups: contents whose PDQ hashes lie within a Hamming distance.

Exact, not approximate: multi-index hashing (Norouzi et al.) on 16 chunks of 16 bits. Two
hashes within D bits differ in at most D // 16 bits of some chunk (pigeonhole: 16 chunks of
more would add up to more than D), so every pair within D ≤ 31 is found among the pairs whose
chunk agrees exactly or in one bit, and each such candidate is then checked on all 256 bits.
Candidates come from sorting each chunk's values and joining them with themselves (and their
16 one-bit neighbours), so the work is numpy's, in blocks, with progress and cancel between.

Groups are connected components of the pairs within D (a copy of a copy joins its
original's group). Hashes with quality below `MIN_QUALITY` are left out, as PDQ advises: flat
or nearly flat pictures hash to noise and would join unrelated groups.
"""

from __future__ import annotations

from collections.abc import Callable
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
_BLOCK = 1 << 20  # candidate pairs checked per numpy step


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


def _pair_distances(words: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words[left] ^ words[right]).sum(axis=1, dtype=np.int64)


def _chunk_pairs(keys: np.ndarray, flips: bool) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose 16-bit keys agree exactly, or (with `flips`) in one bit."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    lefts, rights = [], []
    # Equal keys: runs in the sorted order; pair each element with the next k of its run.
    shift = 1
    while shift < len(ordered):
        same = np.flatnonzero(ordered[:-shift] == ordered[shift:])
        if not len(same):
            break
        lefts.append(order[same])
        rights.append(order[same + shift])
        shift += 1
    if flips:
        # Where each 16-bit value's run starts in the sorted order: a table, not a search.
        bounds = np.zeros(65537, dtype=np.int64)
        np.cumsum(np.bincount(ordered, minlength=65536), out=bounds[1:])
        for bit in range(16):
            flipped = (ordered ^ np.uint16(1 << bit)).astype(np.int64)
            start = bounds[flipped]
            counts = bounds[flipped + 1] - start
            has = np.flatnonzero(counts)
            if not len(has):
                continue
            reps = counts[has]
            left = np.repeat(order[has], reps)
            offsets = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
            right = order[np.repeat(start[has], reps) + offsets]
            keep = left < right  # each one-bit pair is found from both ends
            lefts.append(left[keep])
            rights.append(right[keep])
    if not lefts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    left, right = np.concatenate(lefts), np.concatenate(rights)
    low, high = np.minimum(left, right), np.maximum(left, right)
    return low.astype(np.int64), high.astype(np.int64)


def near_pairs(
    packed: np.ndarray,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair (i < j) of the N×32 uint8 hashes within `max_distance` bits, with the
    distance; pairs found through several chunks appear more than once."""
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"the distance must be 0 to {MAX_DISTANCE} bits, not {max_distance}")
    words = as_words(packed)
    chunks = np.ascontiguousarray(packed, dtype=np.uint8).view(">u2").reshape(-1, _CHUNKS)
    flips = max_distance >= _CHUNKS
    found_l, found_r, found_d = [], [], []
    for c in range(_CHUNKS):
        if cancel is not None and cancel.cancelled:
            break
        left, right = _chunk_pairs(chunks[:, c].astype(np.uint16), flips)
        for start in range(0, len(left), _BLOCK):
            lb, rb = left[start : start + _BLOCK], right[start : start + _BLOCK]
            dist = _pair_distances(words, lb, rb)
            near = dist <= max_distance
            found_l.append(lb[near])
            found_r.append(rb[near])
            found_d.append(dist[near])
        if progress is not None:
            progress(Progress("dupes", c + 1, _CHUNKS, message=f"chunk {c + 1} of {_CHUNKS}"))
    if not found_l:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_l), np.concatenate(found_r), np.concatenate(found_d)


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


def _expand(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs [start, start + count): (which run, position) of every element, flat."""
    has = np.flatnonzero(counts)
    reps = counts[has]
    owner = np.repeat(has, reps)
    offsets = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    return owner, np.repeat(starts[has], reps) + offsets


def within(
    packed: np.ndarray,
    query: np.ndarray,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (index into `packed`, index into `query`, distance) within `max_distance`.

    For matching a hash list against the library: the same chunk index as `near_pairs`,
    built on `packed` and probed with the queries, so pairs within either side cost nothing.
    """
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"the distance must be 0 to {MAX_DISTANCE} bits, not {max_distance}")
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1, 32)
    query = np.ascontiguousarray(query, dtype=np.uint8).reshape(-1, 32)
    words, query_words = as_words(packed), as_words(query)
    chunks = packed.view(">u2").reshape(-1, _CHUNKS)
    query_chunks = query.view(">u2").reshape(-1, _CHUNKS)
    flips = [0] + ([1 << bit for bit in range(16)] if max_distance >= _CHUNKS else [])
    found_l, found_q, found_d = [], [], []
    step = max(1, _BLOCK // (len(flips) * 4))  # queries per block, bounding the candidates
    for c in range(_CHUNKS):
        if cancel is not None and cancel.cancelled:
            break
        order = np.argsort(chunks[:, c], kind="stable")
        bounds = np.zeros(65537, dtype=np.int64)
        np.cumsum(np.bincount(chunks[order, c], minlength=65536), out=bounds[1:])
        for first in range(0, len(query), step):
            keys = query_chunks[first : first + step, c].astype(np.int64)
            for flip in flips:
                probe = keys ^ flip
                owner, position = _expand(bounds[probe], bounds[probe + 1] - bounds[probe])
                if not len(owner):
                    continue
                lib, q = order[position], owner + first
                dist = np.bitwise_count(words[lib] ^ query_words[q]).sum(axis=1, dtype=np.int64)
                near = dist <= max_distance
                found_l.append(lib[near])
                found_q.append(q[near])
                found_d.append(dist[near])
    if not found_l:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    lib, q, dist = np.concatenate(found_l), np.concatenate(found_q), np.concatenate(found_d)
    _, first_seen = np.unique(lib * len(query) + q, return_index=True)  # found via many chunks
    return lib[first_seen], q[first_seen], dist[first_seen]


@dataclass(frozen=True)
class ContentGroup:
    """Near-duplicate contents of a library: content hashes (representative first), each
    one's PDQ hash and its distance to the representative's."""

    hashes: list[str]
    pdqs: list[bytes]
    distances: list[int]


def library_groups(
    library: Library,
    root: Path | None = None,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    *,
    min_quality: int = MIN_QUALITY,
    progress: Callable[[Progress], None] | None = None,
    cancel: CancelToken | None = None,
) -> list[ContentGroup]:
    """Groups among the contents with files under `root` (the whole library when None).

    A content stored at several paths counts as a group even alone (exact copies); a caller
    lists each content's files (`Library.files_for_hashes`)."""
    hashes, packed, qualities = library.pdq_hashes(root)
    index = {digest: i for i, digest in enumerate(hashes)}
    found = group(
        packed,
        qualities,
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
    for digest in library.contents_with_copies(root):
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
