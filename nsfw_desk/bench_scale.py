"""Scale figures for `nsfw-desk bench --desk-scale N` and `--scan-memory N` (issue 14).

The desk on a generated library of N scored items (core of it: `synthetic_library.py`): the
window's first paint, asking the library until the grid shows every item sorted, the longest
stall of the GUI thread meanwhile, threshold re-splits, frame times scrolling the real
QListView from top to bottom, and resident memory. And a scan of N small generated images:
resident memory after N/20 files and after N, which must not grow with N.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--desk-scale",
        type=int,
        metavar="ITEMS",
        default=None,
        help="only time the desk on a generated library of ITEMS scored items (1000000 "
        "for the issue's figures)",
    )
    parser.add_argument(
        "--scan-memory",
        type=int,
        metavar="FILES",
        default=None,
        help="only measure resident memory while scanning FILES small generated images "
        "(200000 for the issue's figure), against the memory after FILES/20",
    )


def rss_mb() -> float:
    """Resident memory of this process now, MB (Linux /proc; else the peak from rusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the desk on N items --------------------------------------------------------------


def desk_scale(items: int, workdir: Path, *, steps: int = 200) -> dict:
    """Open the desk on a generated library of `items` and time what the issue asks."""
    import subprocess

    from nsfw_desk.synthetic_library import MODEL_ID, ROOT

    # In a process of its own: its bulk-insert cache would count in the desk's memory.
    start = time.perf_counter()
    path = workdir / "scale.sqlite"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from nsfw_desk.synthetic_library import generate; "
            "generate(sys.argv[1], int(sys.argv[2]))",
            str(path),
            str(items),
        ],
        check=True,
    )
    figures: dict = {"items": items, "generate_s": time.perf_counter() - start}
    figures.update(desk_on_library(path, ROOT, MODEL_ID, items, steps=steps))
    figures.update(library_reads(path, ROOT, MODEL_ID))
    return figures


def library_reads(library: Path, root: Path, model_id: str) -> dict:
    """The desk's big reads alone, on this thread, no window: the listing, the model
    switcher's counts, the near-duplicate grouping's inputs (PDQ hashes, copies)."""
    from nsfw_desk.core.dupes import GroupInputs
    from nsfw_desk.core.result_columns import read_folder
    from nsfw_desk.core.store import Library

    reads = {
        "read_listing_s": lambda lib: read_folder(lib, root, model_id),
        "read_model_counts_s": lambda lib: lib.models_scored_under(root),
        "read_group_inputs_s": lambda lib: GroupInputs.read(lib, root),
    }
    figures = {}
    with Library(library) as lib:
        for name, read in reads.items():
            start = time.perf_counter()
            read(lib)
            figures[name] = time.perf_counter() - start
    return figures


def desk_on_library(library: Path, root: Path, model_id: str, items: int, *, steps: int) -> dict:
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    from nsfw_desk.core.result_columns import read_folder
    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    figures: dict = {"rss_before_mb": rss_mb()}

    class Painted(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.at = 0.0  # when the grid first painted

        def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
            if not self.at and event.type() == QEvent.Type.Paint:
                self.at = time.perf_counter()
            return False

    painted = Painted()
    start = time.perf_counter()
    window = MainWindow(Settings(), library_path=library, save_settings=False)
    window.grid.viewport().installEventFilter(painted)
    window.resize(1400, 900)
    window.show()
    while not painted.at and time.perf_counter() - start < 30:
        app.processEvents()
        time.sleep(0.002)
    figures["first_paint_s"] = (painted.at or time.perf_counter()) - start

    # The longest gap between ticks of a 5 ms timer: how long the GUI thread was held.
    class Ticker(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.gaps: list[float] = []
            self.last = time.perf_counter()

        def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt API)
            if event.type() == QEvent.Type.Timer:
                now = time.perf_counter()
                self.gaps.append((now - self.last) * 1000)
                self.last = now
                return True
            return False

    ticker = Ticker()
    clock = QObject()
    clock.installEventFilter(ticker)
    window.folder = root
    done: list[float] = []
    asked = ticker.last = time.perf_counter()
    timer = clock.startTimer(5)

    def show(found) -> None:
        window._on_stored_results(root, model_id, *found)
        done.append(time.perf_counter())

    window.reads.query(lambda lib: read_folder(lib, root, model_id), show)
    while not done and time.perf_counter() - asked < 600:
        app.processEvents()
        time.sleep(0.002)
    app.processEvents()
    window.grid.viewport().repaint()
    figures["listed_sorted_s"] = time.perf_counter() - asked
    figures["longest_gui_stall_ms"] = max(ticker.gaps, default=0.0)
    # What the listing asks next (AI labels, other detectors' scores, conflicts, model
    # choices) comes back to the GUI thread too: keep timing the ticks until it has.
    while window.reads.pending() and time.perf_counter() - asked < 600:
        app.processEvents()
        time.sleep(0.002)
    app.processEvents()
    clock.killTimer(timer)
    figures["reads_settled_s"] = time.perf_counter() - asked
    figures["longest_gui_stall_settled_ms"] = max(ticker.gaps, default=0.0)
    figures["listed"] = window.results.rowCount()
    figures["rss_loaded_mb"] = rss_mb()
    figures.update(_resplits(app, window))
    figures.update(_scroll(app, window, steps))
    figures["rss_after_mb"] = rss_mb()
    busy = window.grouping.tasks.grouping
    start = time.perf_counter()
    while busy.busy and time.perf_counter() - start < 600:  # the folder's groups: let
        app.processEvents()  # them finish, a thread must not be destroyed while it runs
        time.sleep(0.01)
    window.close()
    app.processEvents()
    return figures


def _resplits(app, window) -> dict:
    import numpy as np

    figures = {}
    for name in ("all", "flagged"):
        window.set_filter(name)
        app.processEvents()
        times = []
        for threshold in np.linspace(0.1, 0.9, 9):
            start = time.perf_counter()
            window.spin.setValue(float(threshold))
            app.processEvents()
            times.append((time.perf_counter() - start) * 1000)
        figures[f"resplit_{name}_ms"] = statistics.median(times)
    window.set_filter("all")
    window.spin.setValue(0.5)
    app.processEvents()
    return figures


def _scroll(app, window, steps: int) -> dict:
    """Frames scrolling the grid top to bottom: `steps` jumps spread over the whole range
    plus page-by-page scrolling at the top, each followed by a synchronous repaint."""
    from PySide6.QtCore import QPoint

    bar = window.grid.verticalScrollBar()
    viewport = window.grid.viewport()

    def last_tile() -> int:  # the highest tile number the viewport shows, 1-based
        seen = [
            window.grid.indexAt(QPoint(x, y)).row()
            for x in range(10, viewport.width(), 40)
            for y in range(10, viewport.height(), 40)
        ]
        return max(seen, default=-1) + 1

    # A batched layout sets the scroll range when its last batch is done: wait for it,
    # asking where the bottom is only once a second (each ask is hundreds of indexAt
    # calls, which would slow the layout it waits for).
    start = asked = time.perf_counter()
    while time.perf_counter() - start < 300:
        app.processEvents()
        if time.perf_counter() - asked < 1.0:
            continue
        asked = time.perf_counter()
        bar.setValue(bar.maximum())
        if last_tile() >= window.results.rowCount():
            break
    layout_s = time.perf_counter() - start
    bar.setValue(0)
    app.processEvents()
    frames = []
    page = max(1, bar.pageStep())
    positions = [min(bar.maximum(), i * page) for i in range(steps // 2)]
    positions += [bar.maximum() * i // max(1, steps // 2) for i in range(steps // 2 + 1)]
    for value in positions:
        begin = time.perf_counter()
        bar.setValue(value)
        app.processEvents()
        window.grid.viewport().repaint()
        frames.append((time.perf_counter() - begin) * 1000)
    return {
        "layout_s": layout_s,
        "last_tile_reached": last_tile(),
        "scroll_frames": len(frames),
        "scroll_max_frame_ms": max(frames),
        "scroll_median_frame_ms": statistics.median(frames),
        "scroll_reached_bottom": bar.value() == bar.maximum(),
    }


def print_desk_scale(figures: dict) -> None:
    print(f"desk on a generated library of {figures['items']:,} scored items:")
    print(f"  generate the library: {figures['generate_s']:.1f} s")
    print(
        f"  first paint (window built to grid painted, items not asked yet): "
        f"{figures['first_paint_s']:.2f} s (target < 1 s)"
    )
    print(
        f"  every item listed and sorted (asking the library to the grid painted): "
        f"{figures['listed_sorted_s']:.2f} s (target < 5 s); {figures['listed']:,} tiles"
    )
    print(
        f"  longest GUI-thread stall meanwhile (lateness of a 5 ms timer): "
        f"{figures['longest_gui_stall_ms']:.0f} ms; until the folder's labels and other "
        f"scores are read too ({figures['reads_settled_s']:.2f} s): "
        f"{figures['longest_gui_stall_settled_ms']:.0f} ms"
    )
    print(
        f"  threshold re-split: {figures['resplit_all_ms']:.1f} ms showing all, "
        f"{figures['resplit_flagged_ms']:.1f} ms with the flagged filter (target < 50 ms)"
    )
    print(
        f"  scrolling top to bottom: longest frame {figures['scroll_max_frame_ms']:.1f} ms, "
        f"median {figures['scroll_median_frame_ms']:.1f} ms over {figures['scroll_frames']} "
        f"frames (target < 50 ms); the bottom showed tile {figures['last_tile_reached']:,} "
        f"of {figures['listed']:,}"
    )
    print(f"  every tile reachable by scrolling (batched layout done): {figures['layout_s']:.1f} s")
    print(
        f"  resident memory: {figures['rss_loaded_mb']:.0f} MB listed, "
        f"{figures['rss_after_mb']:.0f} MB after scrolling (target < 1,500 MB)"
    )
    if "read_listing_s" in figures:
        print(
            f"  the reads alone (one thread, no window): listing "
            f"{figures['read_listing_s']:.2f} s, the model switcher's counts "
            f"{figures['read_model_counts_s']:.2f} s, the "
            f"near-duplicate grouping's inputs {figures['read_group_inputs_s']:.2f} s"
        )


# --- a long scan at constant memory -----------------------------------------------------


def write_small_images(folder: Path, count: int) -> None:
    """`count` distinct 64×64 JPEGs, fast: one encoded picture, each copy with its own
    bytes after the end marker (decoders ignore them; the content hash differs)."""
    import io

    from nsfw_desk.synthetic import synthetic_photo

    buffer = io.BytesIO()
    synthetic_photo((64, 64), seed=0).save(buffer, format="JPEG", quality=80)
    jpeg = buffer.getvalue()
    for i in range(count):
        sub = folder / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:07d}.jpg").write_bytes(jpeg + i.to_bytes(8, "little"))


def scan_memory(files: int, workdir: Path, *, early: int | None = None) -> dict:
    """Scan `files` small images with a tiny random-weights model (test_vit at 32 px):
    resident memory after `early` files (default files/20) and after all of them."""
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import ScanOptions, scan_folder
    from nsfw_desk.core.store import Library
    from nsfw_desk.synthetic import save_random_model

    early = early or max(1, files // 20)
    folder = workdir / "images"
    start = time.perf_counter()
    write_small_images(folder, files)
    written_s = time.perf_counter() - start
    model = load_model(
        save_random_model(workdir / "model", model_args={"img_size": 32}), device="cpu"
    )
    marks: dict[str, float] = {}

    def progress(p) -> None:
        if p.phase == "scan" and p.done >= early and "early" not in marks:
            marks["early"] = rss_mb()
            marks["early_done"] = p.done

    start = time.perf_counter()
    with Library(workdir / "scan.sqlite") as library:
        summary = scan_folder(folder, model, library, options=ScanOptions(), progress=progress)
    return {
        "files": files,
        "write_s": written_s,
        "scan_s": time.perf_counter() - start,
        "scored": summary.scored,
        "early_files": int(marks.get("early_done", 0)),
        "rss_early_mb": marks.get("early", float("nan")),
        "rss_end_mb": rss_mb(),
    }


def print_scan_memory(figures: dict) -> None:
    growth = figures["rss_end_mb"] - figures["rss_early_mb"]
    print(f"scan of {figures['files']:,} generated 64×64 JPEGs (random-weights test_vit, 32 px):")
    print(f"  {figures['scored']:,} scored in {figures['scan_s']:.0f} s")
    print(
        f"  resident memory: {figures['rss_early_mb']:.0f} MB after "
        f"{figures['early_files']:,} files, {figures['rss_end_mb']:.0f} MB after "
        f"{figures['files']:,}: {growth:+.0f} MB (target within 100 MB)"
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    payload: dict = {}
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-scale-") as tmp:
        if args.desk_scale:
            payload["desk_scale"] = desk_scale(args.desk_scale, Path(tmp))
            print_desk_scale(payload["desk_scale"])
        if args.scan_memory:
            payload["scan_memory"] = scan_memory(args.scan_memory, Path(tmp))
            print_scan_memory(payload["scan_memory"])
    if args.json:
        import json

        args.json.write_text(json.dumps(payload, indent=2))
    return 0
