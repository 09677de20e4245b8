"""Helpers for driving the desk window in tests (fixtures are in conftest.py)."""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer

SCAN_TIMEOUT_MS = 60_000


def scan(qtbot, window, folder) -> None:
    window.open_folder(folder)
    qtbot.waitUntil(lambda: not window.scanning, timeout=SCAN_TIMEOUT_MS)


def settle(qtbot, window) -> None:
    """Wait until every decision the window made is committed to the library."""
    qtbot.waitUntil(lambda: window.writes.waiting == 0, timeout=20_000)


def column(window, role) -> list:
    return [window.results.index(i).data(role) for i in range(window.results.rowCount())]


class LatenessProbe:
    """A 10 ms timer on the GUI thread; how late each tick came is how long the loop froze."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.interval_ms = interval_ms
        self.lateness_ms: list[float] = []
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness_ms.append((now - self._last) * 1000 - self.interval_ms)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def worst_ms(self) -> float:
        return max(self.lateness_ms, default=0.0)
