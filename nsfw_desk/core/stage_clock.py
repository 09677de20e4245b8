"""Where a scan's time goes, stage by stage, summed over the threads that ran each stage.

The decode threads read, decode, hash and preprocess files in parallel while the scan's own
thread runs the model and writes the library, so the stages' seconds add up to more than the
scan's wall time: they say which stage holds the others up (the forward pass on a CPU,
decoding once a GPU takes the forward pass). `nsfw-desk bench` prints them for its scans.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

# In pipeline order: what the decode threads do, then what the scan's thread does.
# "transform" is the model input; "thumbnail" the review grid's picture (scaled, JPEG-encoded).
STAGES = ("read", "decode", "pdq", "transform", "thumbnail", "forward", "store")


class StageClock:
    """Seconds per stage, added to from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = dict.fromkeys(STAGES, 0.0)

    @contextlib.contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._seconds[stage] += elapsed

    def seconds(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)


def describe(seconds: dict[str, float]) -> str:
    """'read 0.4 s (3 %) · decode …', shares of the stages' total."""
    total = sum(seconds.values()) or 1.0
    return " · ".join(
        f"{stage} {seconds[stage]:.1f} s ({100 * seconds[stage] / total:.0f} %)"
        for stage in STAGES
        if stage in seconds
    )
