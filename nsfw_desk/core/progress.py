"""Progress reports and cancellation shared by every long operation (download, scan, export)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """A snapshot of a long operation; `rate` is items (or bytes) per second."""

    phase: str  # "download", "discover", "scan", "export", "done"
    done: int = 0
    total: int = 0
    errors: int = 0
    rate: float = 0.0
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        """One line for a status bar or a terminal: counts, rate and ETA, or download size."""
        from nsfw_desk.core.units import count

        if self.phase == "download":
            from nsfw_desk.core.units import format_size

            return f"{self.message}: {format_size(self.done)} of {format_size(self.total)}"
        if self.phase == "import":  # a hash list: bytes read of the file's size
            from nsfw_desk.core.units import format_size

            bad = f" · {count(self.errors, 'bad line')}" if self.errors else ""
            return (
                f"{self.message}: {format_size(self.done)} of {format_size(self.total)} read "
                f"({self.fraction:.0%}){bad}"
            )
        if self.phase in ("dupes", "match"):  # chunks of the near-duplicate index
            return self.message or f"{self.done} of {self.total}"
        if self.phase == "discover":
            return self.message
        eta = ""
        if self.eta_s is not None and self.done < self.total:
            eta = f" · ETA {format_duration(self.eta_s)}"
        errors = f" · {count(self.errors, 'error')}" if self.errors else ""
        if self.phase == "export":  # rate is bytes/s; the message has files, MB and MB/s
            skipped = f" · {self.errors:,} skipped" if self.errors else ""
            return f"{self.message}{skipped}{eta}"
        return f"{self.done:,} / {self.total:,}{errors} · {self.rate:.1f} images/s{eta}"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


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
