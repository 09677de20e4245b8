"""Progress reports and cancellation shared by every long operation (download, scan, export)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """A snapshot of a long operation; `rate` is items (or bytes) per second."""

    phase: str  # "download", "discover", "scan", "done"
    done: int = 0
    total: int = 0
    errors: int = 0
    rate: float = 0.0
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressCallback = Callable[[Progress], None]


class Cancelled(Exception):
    """Raised inside an operation when its `CancelToken` was set."""


class CancelToken:
    """A thread-safe flag the UI sets and the worker polls between small steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()
