"""Desk figures for `nsfw-desk bench`: launch to first paint, and threshold re-split time."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def launch_to_first_paint(runs: int = 3) -> tuple[float, str]:
    """Wall time from starting `nsfw-desk` to its first painted window (median of runs)."""
    times, line = [], ""
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CONFIG_HOME"] = tmp  # do not touch the user's settings
        for _ in range(runs):
            start = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "nsfw_desk",
                    "--quit-after-paint",
                    "--db",
                    str(Path(tmp) / "l.sqlite"),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            times.append(time.perf_counter() - start)
            line = out.stdout.strip()
    return statistics.median(times), line


def threshold_resplit(items: int = 100_000) -> dict[str, float]:
    """Milliseconds to move the threshold over `items` tiles shown in a real QListView."""
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from nsfw_desk.core.settings import Settings
    from nsfw_desk.core.store import FileOutcome
    from nsfw_desk.gui.grid import ResultsModel
    from nsfw_desk.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    scores = rng.random(items)
    outcomes = [
        FileOutcome(Path(f"/bench/{i:06d}.jpg"), f"{i:064x}", float(s), mtime_ns=i)
        for i, s in enumerate(scores)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(Settings(), library_path=Path(tmp) / "l.sqlite", save_settings=False)
        window.resize(1400, 900)
        window.show()
        model: ResultsModel = window.results
        model.reset(Path("/bench"), outcomes)
        for _ in range(3):
            app.processEvents()
        figures = _time_resplits(app, window)
        figures.update(_time_groups(app, window, items))
        window.close()
    return figures


def _time_resplits(app, window) -> dict[str, float]:
    """As the spin box does it: re-mark or re-filter, recount, keep the current item."""
    import numpy as np

    figures = {}
    for name in ("all", "flagged"):
        window.set_filter(name)
        app.processEvents()
        times = []
        for threshold in np.linspace(0.1, 0.9, 9):
            start = time.perf_counter()
            window.spin.setValue(float(threshold))
            app.processEvents()  # the view's reaction (layout, first repaint) is part of it
            times.append((time.perf_counter() - start) * 1000)
        figures[name] = statistics.median(times)
    return figures


def _time_groups(app, window, items: int) -> dict[str, float]:
    """Near-duplicate groups of 5 over every tile: D on, one group expanded, a re-split
    while grouped (milliseconds, the view's reaction included)."""
    import numpy as np

    def timed(action) -> float:
        start = time.perf_counter()
        action()
        app.processEvents()
        return (time.perf_counter() - start) * 1000

    window.set_filter("all")
    groups = [[f"{i * 5 + k:064x}" for k in range(5)] for i in range(items // 5)]
    window.results.set_groups(groups)
    figures = {"grouped_on_ms": timed(lambda: window.grouping.set_grouped(True))}
    window._select_row(0)
    figures["expand_ms"] = timed(lambda: window.grouping.expand_current(True))
    figures["grouped_resplit_ms"] = statistics.median(
        timed(lambda t=float(t): window.spin.setValue(t)) for t in np.linspace(0.1, 0.9, 5)
    )
    window.grouping.set_grouped(False)
    return figures


def print_desk_figures() -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # measured without a visible window
    paint, line = launch_to_first_paint()
    print(f"  launch to first paint: {paint:.2f} s (target < 1 s; {line})")
    resplit = threshold_resplit()
    print(
        f"  threshold re-split of 100,000 tiles: {resplit['all']:.1f} ms showing all, "
        f"{resplit['flagged']:.1f} ms with the flagged filter (target < 50 ms)"
    )
    print(
        f"  near-duplicate groups (100,000 tiles in groups of 5): Group (D) "
        f"{resplit['grouped_on_ms']:.1f} ms, expand one {resplit['expand_ms']:.1f} ms, "
        f"threshold re-split while grouped {resplit['grouped_resplit_ms']:.1f} ms"
    )
    return {"first_paint_s": paint, "resplit_ms": resplit}
