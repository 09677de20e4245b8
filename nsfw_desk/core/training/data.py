"""What a training run learns from: the current decisions (library or export), split and checked.

Every labelled content counts once (by content hash, however many paths share it). The split
is stratified and seeded, like the export's, and a fingerprint names exactly which decisions
were used, so two runs on the same decisions can be recognised.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nsfw_desk.core.defaults import MIN_PER_CLASS
from nsfw_desk.core.review import LABELS, ReviewStore
from nsfw_desk.core.store import Library
from nsfw_desk.core.training.common import NotEnoughDecisions, TrainingError

EXPORT_METADATA = "metadata.jsonl"
EXPORT_CARD = "README.md"
EXPORT_MARKER = "<!-- written by nsfw-desk export -->"  # core/export.py CARD_MARKER
_HASH_CHARS = frozenset("0123456789abcdef")


@dataclass
class Item:
    """One labelled content: its hash, 'unsafe' or 'safe', and files that may hold it."""

    hash: str
    label: str
    paths: list[Path] = field(default_factory=list)
    split: str | None = None  # an export's split; None from the library

    @property
    def is_unsafe(self) -> bool:
        return self.label == "unsafe"


@dataclass
class Dataset:
    items: list[Item]
    source: str  # "library" or "export:<folder>"
    train: list[Item] = field(default_factory=list)
    val: list[Item] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {label: sum(1 for i in self.items if i.label == label) for label in LABELS}


def from_library(library: Library) -> Dataset:
    """The library's current decisions (a cleared item is not one)."""
    decisions = ReviewStore(library).current_decisions()
    files = library.files_for_hashes(d.hash for d in decisions)
    items = []
    for decision in decisions:
        assert decision.label is not None
        paths = [path for path, _, _ in files.get(decision.hash, [])]
        source = decision.source
        if source is not None and source not in paths:
            paths.append(source)
        items.append(Item(decision.hash, decision.label, paths))
    return Dataset(items, "library")


def _not_an_export(folder: Path, why: str) -> TrainingError:
    return TrainingError(
        f"{folder} is not an nsfw-desk export ({why}). Give --data the folder that "
        "`nsfw-desk export --out` wrote, or leave --data out to train from the library's "
        "decisions."
    )


def check_export(folder: Path) -> Path:
    """`folder` if it is an export folder; TrainingError saying why not (before any model
    is loaded: a wrong --data is said at once, not after a download)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _not_an_export(folder, "no such folder")
    try:
        head = (folder / EXPORT_CARD).read_text("utf-8", errors="replace")[:4096]
    except OSError:
        head = ""
    if not (folder / EXPORT_METADATA).is_file() or EXPORT_MARKER not in head:
        raise _not_an_export(folder, f"no {EXPORT_METADATA} and data card written by export")
    return folder


def from_export(folder: Path, labels: list[str], unsafe_indices: list[int]) -> Dataset:
    """An export folder's items; class folder names are matched to unsafe/safe by the base
    model's labels (case-insensitive), else by the names 'unsafe' and 'safe'."""
    folder = check_export(folder)
    metadata = folder / EXPORT_METADATA
    lowered = [name.lower() for name in labels]
    unsafe_names = {lowered[i] for i in unsafe_indices}
    items: list[Item] = []
    problems: list[str] = []
    with open(metadata, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                name, digest, cls = row["file_name"], row["hash"], str(row["label"]).lower()
                split = row.get("split")
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {number}: not a metadata record")
                continue
            if cls in unsafe_names or (cls == "unsafe" and cls not in lowered):
                label = "unsafe"
            elif cls in lowered or cls == "safe":
                label = "safe"
            else:
                problems.append(
                    f"line {number}: class {cls!r} is none of the base model's labels "
                    f"({', '.join(labels)})"
                )
                continue
            path = folder / str(name)
            if os.path.commonpath([folder, path]) != str(folder) or ".." in Path(name).parts:
                problems.append(f"line {number}: file name {name!r} leaves the export folder")
                continue
            if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= _HASH_CHARS):
                problems.append(f"line {number}: {digest!r} is not a content hash")
                continue
            items.append(Item(digest, label, [path], split if split in ("train", "val") else None))
    if problems and not items:
        raise _not_an_export(folder, f"{EXPORT_METADATA}: " + "; ".join(problems[:3]))
    if problems:
        raise TrainingError(
            f"{metadata} has {len(problems)} bad records ({'; '.join(problems[:3])}). "
            "Export again with `nsfw-desk export`."
        )
    unique = {item.hash: item for item in items}  # one content once
    return Dataset(sorted(unique.values(), key=lambda i: i.hash), f"export:{folder}")


def check_counts(counts: dict[str, int], minimum: int = MIN_PER_CLASS) -> None:
    """NotEnoughDecisions unless each class has at least `minimum` decisions."""
    unsafe, safe = counts.get("unsafe", 0), counts.get("safe", 0)
    missing = [
        f"{minimum - n} more {label}"
        for label, n in (("unsafe", unsafe), ("safe", safe))
        if n < minimum
    ]
    if not missing:
        return
    one = " (one class only)" if (unsafe == 0) != (safe == 0) else ""
    raise NotEnoughDecisions(
        f"Not enough decisions to train: {unsafe} unsafe and {safe} safe{one}; training needs "
        f"at least {minimum} of each. Review {' and '.join(missing)} item(s) first."
    )


def split(dataset: Dataset, fraction: float, seed: int) -> None:
    """Stratified train/val split (per class, sorted hashes permuted by the seed).

    An export's own split is kept when its val part holds both classes."""
    if not 0.0 < fraction < 1.0:
        raise TrainingError(f"the validation fraction must be between 0 and 1, not {fraction}")
    val_items = [i for i in dataset.items if i.split == "val"]
    if {i.label for i in val_items} == set(LABELS) and all(i.split for i in dataset.items):
        dataset.val = val_items
        dataset.train = [i for i in dataset.items if i.split != "val"]
        return
    val: set[str] = set()
    for label in LABELS:
        ordered = sorted(i.hash for i in dataset.items if i.label == label)
        order = np.random.default_rng(seed).permutation(len(ordered))
        take = min(max(1, round(fraction * len(ordered))), len(ordered) - 1)
        val.update(ordered[i] for i in order[:take])
    dataset.train = [i for i in dataset.items if i.hash not in val]
    dataset.val = [i for i in dataset.items if i.hash in val]


def fingerprint(items: list[Item]) -> str:
    """sha256 of the sorted 'hash label' lines: which decisions a model learned from."""
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.hash):
        digest.update(f"{item.hash} {item.label}\n".encode("ascii"))
    return "sha256:" + digest.hexdigest()
