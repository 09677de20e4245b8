"""A generated library of scored files without images: the desk's scale bench and tests.

A million rows of (path, hash, score, mtime, size) in one folder, some reviewed, written in
one bulk transaction (`Library.insert_scored_listing`). No file exists on disk and no
thumbnail is stored: the desk paints placeholders, which is what a moderator sees for an
imported archive whose thumbnails are not cached yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.store import Library

MODEL_ID = "synthetic/scale-model"
ROOT = Path("/synthetic/archive")  # the one folder every generated file sits in


@dataclass(frozen=True)
class SyntheticLibrary:
    path: Path  # the library file
    root: Path  # the folder holding every item
    model_id: str
    items: int
    reviewed: int


def item_hash(i: int) -> str:
    """The content hash of generated item `i` (distinct, hex, like BLAKE2b-256)."""
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=32).hexdigest()


def item_scores(items: int, seed: int = 0) -> np.ndarray:
    """Scores like a real folder's: most near 0, a tail of flagged ones near 1."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.beta(0.4, 1.6, items), 0.0, 1.0)


def _rows(items: int, root: Path, scores: np.ndarray) -> Iterator[tuple]:
    prefix = bytes(root) + b"/"
    base = 1_700_000_000 * 10**9
    for i in range(items):
        # Digits first then a name, so that name and path orders differ from score order.
        yield (
            prefix + b"img_%07d.jpg" % i,
            item_hash(i),
            float(scores[i]),
            base + (i * 7919 % items) * 10**6,
            20_000 + i % 50_000,
        )


def generate(
    path: Path,
    items: int = 1_000_000,
    *,
    reviewed: int | None = None,
    root: Path = ROOT,
    seed: int = 0,
) -> SyntheticLibrary:
    """Write a library of `items` scored files under `root` (no files on disk), with
    `reviewed` of them labelled (default 1 %). `path` must not exist yet."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists already: give a new file name for the library")
    reviewed = items // 100 if reviewed is None else reviewed
    scores = item_scores(items, seed)
    with Library(path) as library:
        library.register_model(
            MODEL_ID,
            source="synthetic",
            revision=None,
            architecture="none",
            labels=["safe", "unsafe"],
            unsafe_labels=["unsafe"],
            display_name="Synthetic scale model",
        )
        library.insert_scored_listing(MODEL_ID, _rows(items, root, scores), probabilities=False)
        scan = library.begin_scan(root, MODEL_ID)  # the desk opens the folder with it
        library.finish_scan(scan, "done", files=items, scored=items, cached=0, errors=0)
        step = max(1, items // max(1, reviewed)) if reviewed else 0
        picks = range(0, items, step)[:reviewed] if reviewed else range(0)
        changes = [
            (
                DecisionInput(item_hash(i), MODEL_ID, float(scores[i])),
                "unsafe" if scores[i] >= 0.5 else "safe",
            )
            for i in picks
        ]
        ReviewStore(library).apply_labels(changes, reviewer="synthetic", threshold=0.5)
    return SyntheticLibrary(path, root, MODEL_ID, items, len(changes))
