"""Images for fine-tuning: checked once up front, then decoded per epoch by the robust decoder.

Every example's file is read, its content hash compared with the one the decision was made
on, and decoded before training starts; a file that fails (damaged, vanished, changed since it
was labelled) is left out and listed, so that the run and its report say so. During training
each sample's augmentation is seeded from (seed, epoch, index): the same epoch sees the same
crops whatever the worker count, and a resumed run sees what an uninterrupted one would have.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsfw_desk.core.images import ImageError, content_hash, decode, read_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One decided image: its file, its class index (base model's label order), its hash."""

    path: Path
    target: int
    hash: str


@dataclass(frozen=True)
class LeftOut:
    """An example that was not used, and why (for the progress line, the log and the report)."""

    path: Path
    reason: str


def load_checked(example: Example, min_side: int):
    """The example's pixels (RGB PIL image); raises ImageError when the file is not usable."""
    data = read_file(example.path)
    pixels, _, _, _ = decode(data, min_side=min_side)
    if example.hash and content_hash(data) != example.hash:
        pixels.close()
        raise ImageError(
            "changed",
            "the file changed since it was labelled (its content is not the one decided on)",
        )
    return pixels


def check_examples(
    examples: Sequence[Example],
    min_side: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[Example], list[LeftOut]]:
    """Examples whose files decode (in order) and those left out, each with its reason."""

    def check(example: Example) -> str | None:
        try:
            load_checked(example, min_side).close()
        except ImageError as exc:
            return exc.message
        return None

    usable: list[Example] = []
    left_out: list[LeftOut] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (example, reason) in enumerate(
            zip(examples, pool.map(check, examples), strict=True), start=1
        ):
            if reason is None:
                usable.append(example)
            else:
                log.warning("left out of training: %s: %s", example.path, reason)
                left_out.append(LeftOut(example.path, reason))
            if on_progress:
                on_progress(done)
    return usable, left_out


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for one sample's augmentation, stable across runs, workers and resumes."""
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**31)


class ImageDataset:
    """Map-style dataset; indices are (epoch, position) pairs from `EpochSampler`.

    Returns (pixels, target, ok): ok is 0 for a file that stopped decoding since the check
    (its loss is masked out), so one vanished file does not end a long run.
    """

    def __init__(self, examples: Sequence[Example], transform, min_side: int, seed: int):
        self.examples = list(examples)
        self.transform = transform
        self.min_side = min_side
        self.seed = seed
        self._placeholder_shape: Any = None

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: tuple[int, int]):
        import random

        import torch

        epoch, index = key
        example = self.examples[index]
        seed = sample_seed(self.seed, epoch, index)
        random.seed(seed)  # timm's random crop draws from `random`
        torch.manual_seed(seed)  # torchvision's flips and colour jitter from torch
        try:
            pixels = load_checked(example, self.min_side)
        except ImageError as exc:
            log.warning("left out of this batch: %s: %s", example.path, exc.message)
            return self._placeholder(), example.target, 0
        with pixels:
            tensor = self.transform(pixels)
        self._placeholder_shape = tensor.shape
        return tensor, example.target, 1

    def _placeholder(self):
        import torch

        if self._placeholder_shape is None:
            from PIL import Image

            self._placeholder_shape = self.transform(Image.new("RGB", (8, 8))).shape
        return torch.zeros(self._placeholder_shape)


class EpochSampler:
    """The positions of one epoch as (epoch, index) keys: shuffled by (seed, epoch) or in order."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool):
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 1

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        import numpy as np

        rng = np.random.default_rng([self.seed, self.epoch])
        return [int(i) for i in rng.permutation(self.size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if self.shuffle and len(batch) == 1 and start:
                continue  # a lone last sample: a batch of one breaks batch norm and adds noise
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        batches = math.ceil(self.size / self.batch_size)
        if self.shuffle and self.size % self.batch_size == 1 and self.size > 1:
            batches -= 1
        return batches


def loader_workers(device_type: str) -> int:
    """Decode processes: none on a small CPU (they would compete with the model's threads)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if cores <= 2:
        return 0
    return min(8, cores - 1) if device_type == "cuda" else min(4, cores // 2)
