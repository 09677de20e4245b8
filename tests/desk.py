"""Helpers for driving the desk window in tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import time

from PySide6.QtCore import QTimer

SCAN_TIMEOUT_MS = 60_000


def scan(qtbot, window, folder) -> None:
    window.open_folder(folder)
    qtbot.waitUntil(lambda: not window.scanning, timeout=SCAN_TIMEOUT_MS)


def settle(qtbot, window) -> None:
    """Wait until every decision the window made is committed to the library."""
    qtbot.waitUntil(lambda: window.writes.waiting == 0, timeout=20_000)


def export_dialog(qtbot, window):
    """The Export dialog on the window's library, folder and reviewer, as File → Export makes
    it (shown, not run modally, so a test can drive it)."""
    from nsfw_desk.gui.export_dialog import ExportDialog

    dialog = ExportDialog(
        window.library_path, window.folder, window.settings.reviewer, window, reads=window.reads
    )
    qtbot.addWidget(dialog)
    return dialog


def two_decided(qtbot, make_window, folder):
    """A window on the scanned `folder` with one unsafe and one safe decision committed:
    something to export."""
    window = make_window()
    scan(qtbot, window, folder)
    window.decide("unsafe")
    window.decide("safe")
    settle(qtbot, window)
    return window


def column(window, role) -> list:
    return [window.results.index(i).data(role) for i in range(window.results.rowCount())]


def _run_queue_waits() -> dict[str, int]:
    """Per thread of this process: nanoseconds spent ready to run but waiting for a CPU
    (Linux schedstat; nothing elsewhere). Other programs on a busy machine cause that wait,
    not the desk: a GUI thread blocked by our own work (a GIL-holding call, a full garbage
    collection, a synchronous query) is running or asleep, never queued."""
    waits = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return waits
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as f:
                waits[task] = int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return waits


class LatenessProbe:
    """A 10 ms timer on the GUI thread; how late each tick came is how long the loop froze.

    A tick's lateness excludes the time the process's threads spent queued for a CPU behind
    other programs (the full suite and parallel work load these 2-core machines), so what
    it measures is what the desk itself did; `raw_ms` keeps the wall-clock figure."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.interval_ms = interval_ms
        self.lateness_ms: list[float] = []
        self.raw_ms: list[float] = []
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self._queued: dict[str, int] = {}

    def _tick(self) -> None:
        now, queued = time.perf_counter(), _run_queue_waits()
        late = (now - self._last) * 1000 - self.interval_ms
        # The longest any one thread queued: the GUI thread itself, or the thread holding
        # the interpreter it waited for. (A sum would also count our own threads queued
        # behind each other, and hide a stall the desk caused.)
        waited_ms = max((ns - self._queued.get(t, 0) for t, ns in queued.items()), default=0) / 1e6
        self.raw_ms.append(late)
        self.lateness_ms.append(max(0.0, late - waited_ms))
        self._last, self._queued = now, queued

    def start(self) -> None:
        self._last, self._queued = time.perf_counter(), _run_queue_waits()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def worst_ms(self) -> float:
        return max(self.lateness_ms, default=0.0)

    @property
    def worst_raw_ms(self) -> float:
        return max(self.raw_ms, default=0.0)
