"""What a moderator's day at the desk turned up (an audit under a real X server): each test
fails without its fix."""

from __future__ import annotations

import json
import shutil

from desk import export_dialog, scan, settle, two_decided

from nsfw_desk.core.progress import Progress
from nsfw_desk.gui.grid import SORTS, Role


def test_threshold_sort_filter_and_folder_survive_a_crash(
    qtbot, tmp_path, model_dir, folder, monkeypatch
):
    """A killed desk (power cut, kill -9) kept the decisions but lost the threshold the
    moderator had set, the sort, the filter and the folder just opened: settings were
    written only on a clean quit."""
    from nsfw_desk.core import settings as settings_module
    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.main_window import MainWindow

    stored = tmp_path / "config" / "settings.json"
    monkeypatch.setattr(settings_module, "settings_path", lambda: stored)
    window = MainWindow(
        Settings(reviewer="tester"),
        library_path=tmp_path / "library.sqlite",
        model=str(model_dir),
        device="cpu",
    )
    qtbot.addWidget(window)
    window.show()
    scan(qtbot, window, folder)
    window.spin.setValue(0.83)
    window.sort_box.setCurrentIndex(list(SORTS).index("name"))
    window.filter_box.setCurrentIndex(window.filter_box.findData("errors"))

    def saved() -> dict:
        try:
            return json.loads(stored.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    # No close: what is on disk while the window still runs is what a crash leaves.
    qtbot.waitUntil(lambda: saved().get("threshold") == 0.83, timeout=5_000)
    assert saved()["sort"] == "name" and saved()["filter"] == "errors"
    assert saved()["recent_folders"][0] == str(folder.resolve())
    assert Settings.load(stored).threshold == 0.83
    window.close()


def test_a_broken_file_shows_its_size_in_the_detail_pane(qtbot, make_window, folder):
    """The tile said `⚠ decode error · 14 bytes` but the detail pane's Size stayed empty: a
    failed file has no row in the library's files, and an empty file's 0 read as none."""
    window = make_window()
    scan(qtbot, window, folder)
    window.filter_box.setCurrentIndex(window.filter_box.findData("errors"))
    qtbot.waitUntil(lambda: window.results.rowCount() == 1)
    window._select_row(0)
    index = window.grid.currentIndex()
    assert index.data(Role.ERROR) and index.data(Role.SIZE) == 14
    assert window.detail.size_label.text() == "14 bytes"  # at once, from the tile
    qtbot.waitUntil(lambda: window.reads.pending() == 0)  # then the read thread's facts
    assert window.detail.size_label.text() == "14 bytes"

    window.detail.show_item(folder / "empty.png", facts={"size": 0}, error="not an image")
    assert window.detail.size_label.text() == "0 bytes"


def test_export_dialog_keeps_its_size_when_the_counts_arrive(qtbot, make_window, folder):
    """The counts ("N images", train, val) arrived while the dialog was being mapped and
    grew it by two lines; openbox then placed it at the screen's corner with its title bar
    off-screen (every other time, under a real X server)."""

    window = two_decided(qtbot, make_window, folder)
    dialog = export_dialog(qtbot, window)
    before = dialog.sizeHint().height()
    qtbot.waitUntil(lambda: dialog.preview is not None, timeout=10_000)
    assert dialog.preview_label.text().count("\n") == 2  # 2 images, train, val
    assert dialog.sizeHint().height() == before
    dialog.reject()


def test_a_deleted_folder_is_named_as_such_on_rescan(qtbot, make_window, folder):
    """Rescanning a folder deleted (or unmounted) under the desk said `Scanned: 1 file ·
    0 new · 1 error`, and every vanished image stayed listed with no word why."""
    window = make_window()
    scan(qtbot, window, folder)
    listed = window.results.rowCount()
    shutil.rmtree(folder)
    window.rescan()
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    text = window.status.text()
    assert str(folder.resolve()) in text and "cannot be opened" in text
    assert window.results.rowCount() >= listed  # the stored results stay, as the text says


def test_progress_says_one_error_not_one_errors():
    """The status bar read `17 / 33 · 1 errors · 14.8 images/s` during a scan."""
    line = Progress("scan", done=17, total=33, errors=1, rate=14.8).describe()
    assert "· 1 error ·" in line
    assert "· 2 errors ·" in Progress("scan", done=17, total=33, errors=2).describe()
    imported = Progress("import", done=10, total=20, errors=1, message="list.txt").describe()
    assert imported.endswith("· 1 bad line")


def test_tab_from_the_grid_never_lands_on_an_invisible_stop(qtbot, make_window, folder):
    """Tab from the grid went to the detail pane's facts area, which shows no focus: the
    arrow keys then scrolled it, unseen, instead of moving in the grid."""
    from PySide6.QtWidgets import QApplication, QScrollArea

    window = make_window()
    scan(qtbot, window, folder)
    window.grid.setFocus()
    seen = []
    for _ in range(12):
        window.focusNextChild()
        seen.append(QApplication.focusWidget())
    assert window.grid in seen  # the chain comes back round to the grid
    assert not [w for w in seen if isinstance(w, QScrollArea)]


def test_a_name_that_is_not_utf8_keeps_its_odd_bytes_on_the_tile(qtbot, make_window, tmp_path):
    """b"bad_\\xff\\xfe_bytes.png" read "bad__bytes.png" on its tile (Qt drops the lone
    surrogates Python decodes such bytes to) and "bad_��_bytes.png" in the detail pane."""
    import os

    from nsfw_desk.synthetic import write_photo

    photos = tmp_path / "odd"
    photos.mkdir()
    write_photo(photos / "plain.jpg", (90, 60), seed=1)
    odd = os.path.join(os.fsencode(photos), b"bad_\xff\xfe_bytes.jpg")
    os.rename(os.fsencode(photos / "plain.jpg"), odd)
    window = make_window()
    scan(qtbot, window, photos)
    window._select_row(0)
    assert window.grid.currentIndex().data() == "bad_\\xff\\xfe_bytes.jpg"
    assert window.detail.path_label.text().endswith("bad_\\xff\\xfe_bytes.jpg")


def test_clearing_images_never_labelled_writes_no_decision(qtbot, make_window, folder, stored):
    """Ctrl+A then 0 appended a "cleared" decision to every image of the folder, labelled
    or not (and its undo as many more): the history of images nobody had reviewed then
    read "cleared by …", as if a label had been taken away."""
    window = make_window()
    scan(qtbot, window, folder)
    window._select_row(0)
    first = window.grid.currentIndex().data(Role.HASH)
    window.decide("unsafe")  # auto-advance: the second image is current
    second = window.grid.currentIndex().data(Role.HASH)
    window.grid.selectAll()
    window.decide(None)
    settle(qtbot, window)
    reviews = stored(window)
    assert [d.label for d in reviews.history(first)] == ["unsafe", None]
    assert reviews.history(second) == []
    window.grid.clearSelection()
    window._select_row(window.results.row_of(window.grid.currentIndex().data(Role.PATH)))
    window.decide(None)
    settle(qtbot, window)
    assert "Nothing to clear" in window.statusBar().currentMessage() + window.status.text()
    assert reviews.history(second) == []


def test_a_library_on_a_read_only_disk_is_named_as_such(small_disk):
    """On a disk mounted read-only the desk said "… is not a usable nsfw-desk library:
    unable to open database file", as if the library were damaged."""
    import subprocess

    import pytest

    from nsfw_desk.core.store import Library, LibraryError

    disk = small_disk("4m")
    Library(disk / "library.sqlite").close()
    done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {done.stderr!r}")
    with pytest.raises(LibraryError) as refused:
        Library(disk / "library.sqlite")
    message = str(refused.value)
    assert "read-only" in message and "--db" in message and "not a usable" not in message
    with pytest.raises(LibraryError, match="read-only"):  # a new library there, too
        Library(disk / "new" / "library.sqlite")


def test_an_unusable_library_is_reported_once(qtbot, make_window, tmp_path, folder, monkeypatch):
    """Opening a folder on an unusable library stacked two identical "Library not usable"
    dialogs: one from the read thread, one from the scan."""
    from PySide6.QtWidgets import QMessageBox

    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"not a database " * 500)
    shown = []
    monkeypatch.setattr(
        QMessageBox, "critical", staticmethod(lambda parent, title, text: shown.append(title))
    )
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.windowTitle()))
    window = make_window(library_path=damaged)
    window.open_folder(folder)
    qtbot.waitUntil(lambda: not window.scanning, timeout=20_000)
    qtbot.wait(300)  # a second report would be queued behind the first
    assert shown == ["Library not usable"]


def test_a_scan_stopped_by_the_library_does_not_leave_scanning_on_the_grid(
    qtbot, make_window, tmp_path, folder, monkeypatch
):
    """After "Library not usable" the empty grid went on saying "Scanning…" (and the
    status bar "The scan stopped"): a scan that ends without a summary left the hint."""
    from PySide6.QtWidgets import QMessageBox

    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"not a database " * 500)
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda *args: None))
    monkeypatch.setattr(QMessageBox, "exec", lambda box: None)
    window = make_window(library_path=damaged)
    window.open_folder(folder)
    qtbot.waitUntil(lambda: not window.scanning, timeout=20_000)
    hint = window.empty_hint.label.text()
    assert "Scanning" not in hint and "no images" not in hint
    assert "The scan stopped: library not usable" in hint


def test_stop_pressed_before_the_worker_takes_up_the_scan_stops_it(qtbot, make_window, folder):
    """Stop pressed while the scan worker was still busy (the scan before winding down, a
    model loading) was lost: the worker made a fresh cancel token when it took the request
    up, and the scan ran to the end."""
    import threading

    from PySide6.QtCore import QTimer

    window = make_window()
    busy, free = threading.Event(), threading.Event()

    def hold_the_worker() -> None:
        busy.set()
        free.wait(10)

    QTimer.singleShot(0, window.worker.worker, hold_the_worker)
    assert busy.wait(5)
    window.open_folder(folder)  # queued behind the hold
    window.stop_scan()
    free.set()
    qtbot.waitUntil(lambda: not window.scanning, timeout=20_000)
    assert window.results.rowCount() == 0  # nothing was scanned
    assert "Scanned" not in window.status.text()


def test_enter_in_the_threshold_box_gives_the_keys_back_to_the_grid(qtbot, make_window, folder):
    """After typing a threshold and Enter, the focus stayed in the box: the arrow keys then
    nudged the threshold instead of moving between images."""
    from PySide6.QtCore import Qt

    window = make_window()
    window.show()
    scan(qtbot, window, folder)
    window.spin.setFocus()
    qtbot.waitUntil(window.spin.hasFocus)
    window.spin.selectAll()
    qtbot.keyClicks(window.spin, "0.7")
    qtbot.keyClick(window.spin, Qt.Key.Key_Return)
    assert window.results.threshold == 0.7
    qtbot.waitUntil(window.grid.hasFocus)
    qtbot.keyClick(window.grid, Qt.Key.Key_Down)
    assert window.results.threshold == 0.7


def test_a_recent_folder_that_is_gone_can_be_taken_off_the_list(
    qtbot, make_window, tmp_path, monkeypatch
):
    """A deleted folder stayed in File → Open recent for good; choosing it only said 'not a
    folder'. Now the message offers to take it off the list (its results stay stored)."""
    from PySide6.QtWidgets import QMessageBox

    gone, kept = tmp_path / "gone", tmp_path / "kept"
    gone.mkdir()
    kept.mkdir()
    window = make_window()
    window.settings.add_recent(kept.resolve())
    window.settings.add_recent(gone.resolve())
    window._fill_recent()
    gone.rmdir()
    said = []

    def click_remove(box):
        said.append(box.text())
        next(b for b in box.buttons() if b.text() == "Remove from Open recent").click()
        return 0

    monkeypatch.setattr(QMessageBox, "exec", click_remove)
    next(a for a in window.recent_menu.actions() if a.text() == str(gone.resolve())).trigger()
    assert "not there any more" in said[0] and "stay in the library" in said[0]
    assert window.settings.recent_folders == [str(kept.resolve())]
    assert [a.text() for a in window.recent_menu.actions()] == [str(kept.resolve())]
    assert window.folder is None


def test_the_calibration_histogram_counts_in_round_steps():
    """Its count axis was the top bar × 1.1 cut in four: ticks at 0, 6, 13, 20, 27."""
    from nsfw_desk.gui.calibration import count_axis

    for top in (0, 1, 3, 7, 24, 49, 100, 998, 12_345):
        maximum, ticks = count_axis(top)
        step = maximum // (ticks - 1)
        assert maximum >= top and maximum % step == 0 and 2 <= ticks <= 6
        assert str(step).strip("0") in ("1", "2", "5"), (top, step)


def test_a_broken_files_tile_line_drops_the_size_before_cutting_the_kind(qtbot):
    """`⚠ not an image · 540 by…`: the line was cut at the tile's edge mid-word."""
    from PySide6.QtGui import QFont, QFontMetrics

    from nsfw_desk.gui.tiles import TileDelegate

    metrics = QFontMetrics(QFont())
    error = "not an image: the file starts with text"
    full = TileDelegate._error_line(error, 540)
    wide = metrics.horizontalAdvance(full) + 4
    assert TileDelegate.fitted_error_line(error, 540, metrics, wide) == full
    kind_only = TileDelegate._error_line(error, None)
    narrow = metrics.horizontalAdvance(kind_only) + 2
    assert TileDelegate.fitted_error_line(error, 540, metrics, narrow) == kind_only
    assert "…" in TileDelegate.fitted_error_line(error, 540, metrics, narrow // 2)


def test_the_detail_pane_never_shows_an_image_the_view_left_out(qtbot, make_window, folder):
    """Switching to Errors from a scored image left that image in the detail pane though
    the view no longer held it (and nothing in the grid was current)."""
    from PySide6.QtCore import Qt

    window = make_window()
    window.show()
    scan(qtbot, window, folder)
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_Right)  # the moderator moves: a scored image
    shown = window.grid.currentIndex().data(Role.PATH)
    assert shown is not None and window.grid.currentIndex().data(Role.ERROR) is None
    window.filter_box.setCurrentIndex(window.filter_box.findData("errors"))
    qtbot.waitUntil(lambda: window.results.rowCount() == 1)
    current = window.grid.currentIndex()
    expected = current.data(Role.PATH) if current.isValid() else None
    assert window.detail.path == expected != shown
