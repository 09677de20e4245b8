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
            out = subprocess.run([sys.executable, "-m", "nsfw_desk", "--quit-after-paint",
                                  "--db", str(Path(tmp) / "l.sqlite")],
                                 capture_output=True, text=True, env=env, timeout=60)
            times.append(time.perf_counter() - start)
            line = out.stdout.strip()
    return statistics.median(times), line


def threshold_resplit(items: int = 100_000) -> dict[str, float]:
    """Milliseconds to move the threshold over `items` tiles shown in a real QListView."""
    import numpy as np
    from PySide6.QtWidgets import QApplication, QListView

    from nsfw_desk.core.store import FileOutcome
    from nsfw_desk.gui.grid import ResultsModel

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    scores = rng.random(items)
    outcomes = [FileOutcome(Path(f"/bench/{i:06d}.jpg"), f"{i:064x}", float(s), mtime_ns=i)
                for i, s in enumerate(scores)]
    model = ResultsModel()
    view = QListView()
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setUniformItemSizes(True)
    view.setModel(model)
    view.resize(1200, 800)
    view.show()
    model.reset(Path("/bench"), outcomes)
    app.processEvents()
    figures = {}
    for name in ("all", "flagged"):
        model.set_filter(name)
        app.processEvents()
        times = []
        for threshold in np.linspace(0.1, 0.9, 9):
            start = time.perf_counter()
            model.set_threshold(float(threshold))
            model.counts()
            app.processEvents()  # the view's reaction is part of the cost
            times.append((time.perf_counter() - start) * 1000)
        figures[name] = statistics.median(times)
    view.close()
    return figures


def print_desk_figures() -> dict:
    paint, line = launch_to_first_paint()
    print(f"  launch to first paint: {paint:.2f} s (target < 1 s; {line})")
    resplit = threshold_resplit()
    print(f"  threshold re-split of 100,000 tiles: {resplit['all']:.1f} ms showing all, "
          f"{resplit['flagged']:.1f} ms with the flagged filter (target < 50 ms)")
    return {"first_paint_s": paint, "resplit_ms": resplit}
