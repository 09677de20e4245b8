"""The loupe (Enter on a tile) and the keyboard sheet (F1), driven offscreen."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from desk import column, scan, settle
from PySide6.QtCore import QEvent, QPoint, QPointF, QSize, Qt
from PySide6.QtGui import QAction, QImage, QKeySequence, QMouseEvent, QPainter, QWheelEvent
from PySide6.QtWidgets import QApplication
from test_gui import detail_energy, to_array

from nsfw_desk.core import images
from nsfw_desk.gui.grid import Role
from nsfw_desk.gui.shortcut_sheet import HELD_AND_MOUSE, ShortcutSheet, shortcut_rows
from nsfw_desk.gui.thumbnails import blur
from nsfw_desk.gui.tiles import HIDDEN
from nsfw_desk.synthetic import write_photo

BIG = (1200, 900)


@pytest.fixture
def big_folder(tmp_path):
    """Photos larger than the loupe's view (so 1:1 can pan), and one broken file."""
    root = tmp_path / "big"
    for i in range(4):
        write_photo(root / f"big_{i}.jpg", BIG, seed=40 + i)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


def open_on(qtbot, window, row: int) -> None:
    window._select_row(row)
    qtbot.keyClick(window.grid, Qt.Key.Key_Return)
    assert window.loupe_open()
    qtbot.waitUntil(lambda: not window.loupe.loading, timeout=20_000)


def scored_rows(window) -> list[int]:
    return [i for i, e in enumerate(column(window, Role.ERROR)) if not e]


def painted(view) -> np.ndarray:
    return to_array(view.grab().toImage())


def rendered(view, pixmap) -> np.ndarray:
    """What the view would show with `pixmap` at its present zoom and pan."""
    image = QImage(view.size(), QImage.Format.Format_RGB32)
    image.fill(HIDDEN)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    painter.drawPixmap(view.image_rect(), pixmap, pixmap.rect().toRectF())
    painter.end()
    return to_array(image)


def image_area(view) -> tuple[slice, slice]:
    rect = view.image_rect().toAlignedRect().intersected(view.rect()).adjusted(3, 3, -3, -3)
    return slice(rect.top(), rect.bottom()), slice(rect.left(), rect.right())


def test_enter_opens_the_current_item_blurred_as_the_grid(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    row = scored_rows(window)[1]
    path = window.results.index(row).data(Role.PATH)
    open_on(qtbot, window, row)
    loupe, view = window.loupe, window.loupe.view
    assert loupe.path == path and window.grid.currentIndex().row() == row
    assert view.image_size == QSize(*BIG) and view.fit
    assert view.blurred.size() == QSize(*BIG)  # full size, not the 256-px thumbnail
    area = image_area(view)
    assert view.image_rect().width() > 500  # fit: large, not a tile
    shown = painted(view)[area]
    blurred = rendered(view, view.blurred)[area]
    sharp = rendered(view, view.original)[area]
    assert np.abs(shown - blurred).mean() < 1.0  # the loupe shows the blurred pixels
    assert np.abs(shown - sharp).mean() > 3.0  # which are visibly not the original
    assert detail_energy(shown) < 0.3 * detail_energy(sharp)
    # The same blur as the grid's: blur() with its strength per image size, on the decoded file.
    thumbnails = window.thumbnails  # the grid's style: strength and grayscale
    reference = blur(images.load_image(path).image, thumbnails.strength, thumbnails.grayscale)
    made = to_array(view.blurred.toImage())
    assert np.abs(made - np.asarray(reference, dtype=int)[..., ::-1]).mean() < 1.5  # BGR
    # Space held reveals it, as on the grid; released, it is blurred again.
    qtbot.keyPress(view, Qt.Key.Key_Space)
    assert view.revealed and window.delegate.revealed == loupe.hash
    assert np.abs(painted(view)[area] - sharp).mean() < 1.0
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    assert not view.revealed
    assert np.abs(painted(view)[area] - blurred).mean() < 1.0
    # Hide-all blanks the loupe, even while revealing.
    window.hide_action.trigger()
    qtbot.keyPress(view, Qt.Key.Key_Space)
    assert len(np.unique(painted(view).reshape(-1, 3), axis=0)) == 1
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    window.hide_action.trigger()
    assert np.abs(painted(view)[area] - blurred).mean() < 1.0


def test_grayscale_setting_reaches_the_loupe(qtbot, make_window, big_folder):
    window = make_window(grayscale=True)
    scan(qtbot, window, big_folder)
    open_on(qtbot, window, scored_rows(window)[0])
    made = to_array(window.loupe.view.blurred.toImage())
    assert np.abs(made[..., 0] - made[..., 1]).max() == 0  # grey
    colour = to_array(window.loupe.view.original.toImage())
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 10  # the original keeps colour
    # Settings change the style: the loupe blurs again, in colour now.
    window.thumbnails.set_style(window.thumbnails.strength, False)
    window.loupe.reload()
    qtbot.waitUntil(lambda: not window.loupe.loading, timeout=20_000)
    made = to_array(window.loupe.view.blurred.toImage())
    assert np.abs(made[..., 0] - made[..., 1]).max() > 0


def test_return_in_the_threshold_box_does_not_open_the_loupe(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    window._select_row(0)
    window.spin.setFocus()
    qtbot.waitUntil(window.isActiveWindow)
    with qtbot.waitSignal(window.spin.editingFinished, timeout=2000):
        qtbot.keyClick(window.spin, Qt.Key.Key_Return)  # the box gets its Return
    assert not window.loupe_open()
    # Anywhere else (the grid, the slider, nothing focused), Return opens the loupe.
    window.slider.setFocus()
    qtbot.keyClick(window.slider, Qt.Key.Key_Return)
    assert window.loupe_open()


def test_double_click_opens_the_loupe(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    window._select_row(0)
    center = window.grid.visualRect(window.results.index(2)).center()
    qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=center)
    qtbot.mouseDClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert window.loupe_open()
    assert window.loupe.path == window.results.index(2).data(Role.PATH)


def send_mouse(view, kind, pos: QPointF, buttons) -> None:
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    global_pos = QPointF(view.mapToGlobal(pos.toPoint()))
    event = QMouseEvent(kind, pos, global_pos, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, event)


def test_z_wheel_and_drag_zoom_and_pan(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    open_on(qtbot, window, scored_rows(window)[0])
    view = window.loupe.view
    fit = view.zoom
    assert view.fit and fit < 1.0  # 1200×900 does not fit 1:1 in a 1000×700 window
    qtbot.keyClick(view, Qt.Key.Key_Z)
    assert not view.fit and view.zoom == 1.0
    assert view.image_rect().width() == BIG[0]
    assert "100%" in window.loupe.caption.text()
    # Drag pans by the mouse's movement.
    before = QPointF(view.offset)
    start = QPointF(view.width() / 2, view.height() / 2)
    held = Qt.MouseButton.LeftButton
    send_mouse(view, QEvent.Type.MouseButtonPress, start, held)
    send_mouse(view, QEvent.Type.MouseMove, start + QPointF(-30, -20), held)
    send_mouse(view, QEvent.Type.MouseMove, start + QPointF(-60, -40), held)
    send_mouse(
        view, QEvent.Type.MouseButtonRelease, start + QPointF(-60, -40), Qt.MouseButton.NoButton
    )
    assert view.offset - before == QPointF(-60, -40)
    assert not view.revealed  # a drag is not a press-and-hold
    # The wheel zooms around the pointer: the image point under it stays under it.
    at = QPointF(200, 150)
    point = (at - view.offset) / view.zoom
    wheel = QWheelEvent(
        at,
        QPointF(view.mapToGlobal(at.toPoint())),
        QPoint(),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, wheel)
    assert view.zoom == pytest.approx(1.25)
    after = view.offset + point * view.zoom
    assert (after.x(), after.y()) == pytest.approx((at.x(), at.y()), abs=0.5)
    qtbot.keyClick(view, Qt.Key.Key_Z)  # back to fit
    assert view.fit and view.zoom == pytest.approx(fit)


def test_press_and_hold_in_the_loupe_reveals(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    open_on(qtbot, window, scored_rows(window)[0])
    view = window.loupe.view
    centre = QPointF(view.width() / 2, view.height() / 2)
    send_mouse(view, QEvent.Type.MouseButtonPress, centre, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.revealed, timeout=3000)
    send_mouse(view, QEvent.Type.MouseButtonRelease, centre, Qt.MouseButton.NoButton)
    assert not view.revealed


def test_u_in_the_loupe_decides_and_shows_the_next_item(qtbot, make_window, big_folder, stored):
    window = make_window()
    scan(qtbot, window, big_folder)
    rows = scored_rows(window)
    first, second = (window.results.index(r) for r in rows[:2])
    first_hash, second_path = first.data(Role.HASH), second.data(Role.PATH)
    window._select_row(rows[0])
    window.grid.selectAll()  # an old multi-selection must not be decided from the loupe
    assert window.grid.currentIndex() == first
    qtbot.keyClick(window.grid, Qt.Key.Key_Return)
    view = window.loupe.view
    qtbot.keyClick(view, Qt.Key.Key_U)
    assert window.loupe_open()
    assert window.loupe.path == second_path  # auto-advance: the loupe shows the next item
    assert first.data(Role.LABEL) == "unsafe"  # shown at once
    settle(qtbot, window)
    assert stored(window).current_labels() == {first_hash: "unsafe"}
    # Undo works from the loupe, through the same undo stack.
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    assert stored(window).current_labels() == {}
    assert window.loupe_open()


def test_esc_returns_to_the_grid_at_the_same_item(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    rows = scored_rows(window)
    open_on(qtbot, window, rows[0])
    view = window.loupe.view
    qtbot.keyClick(view, Qt.Key.Key_J)  # next image, in the loupe
    moved = window.results.index(rows[1]).data(Role.PATH)
    assert window.loupe.path == moved
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert not window.loupe_open()
    assert not window.hide_action.isChecked()  # Esc here leaves the loupe; it does not hide
    assert window.grid.currentIndex().data(Role.PATH) == moved
    assert window.grid.hasFocus()
    assert not window.loupe_size_action.isEnabled()  # Z belongs to the loupe
    assert window.loupe.view.blurred is None  # the full-size pixels are let go


def test_a_broken_or_vanished_file_shows_its_error(qtbot, make_window, big_folder):
    window = make_window()
    scan(qtbot, window, big_folder)
    broken = column(window, Role.PATH).index(big_folder / "broken.jpg")
    open_on(qtbot, window, broken)
    view = window.loupe.view
    assert view.error.startswith("decode error") and view.blurred is None
    shown = painted(view)
    assert len(np.unique(shown.reshape(-1, 3), axis=0)) > 1  # the text is painted
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    # A file deleted since the scan: the decoder's reason, not an image.
    row = scored_rows(window)[0]
    window.results.index(row).data(Role.PATH).unlink()
    open_on(qtbot, window, row)
    assert view.error.startswith("vanished") and view.blurred is None


def test_full_size_decode_never_runs_on_the_gui_thread(qtbot, make_window, big_folder, monkeypatch):
    window = make_window()
    scan(qtbot, window, big_folder)
    gate = threading.Event()
    threads: list[threading.Thread] = []
    real = images.decode

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "decode", recording)
    row = scored_rows(window)[0]
    digest = window.results.index(row).data(Role.HASH)
    window._select_row(row)
    qtbot.keyClick(window.grid, Qt.Key.Key_Return)
    loupe = window.loupe
    qtbot.waitUntil(lambda: bool(threads), timeout=5000)
    # While it decodes, the blurred thumbnail stands in (never the unblurred one).
    qtbot.waitUntil(lambda: loupe.view.blurred is not None, timeout=5000)
    assert loupe.loading
    assert loupe.view.blurred.cacheKey() == window.thumbnails.blurred(digest).cacheKey()
    assert "loading" in loupe.caption.text()
    gate.set()
    qtbot.waitUntil(lambda: not loupe.loading, timeout=20_000)
    assert loupe.view.image_size == QSize(*BIG)
    assert threads and threading.main_thread() not in threads


def test_f1_sheet_lists_every_shortcut_even_one_added_at_runtime(qtbot, make_window):
    window = make_window()
    added = QAction("Test: frobnicate", window)
    added.setShortcut(QKeySequence("Ctrl+Shift+F9"))
    window.addAction(added)
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts need the window active
    qtbot.keyClick(window.grid, Qt.Key.Key_F1)
    sheets = window.findChildren(ShortcutSheet)
    assert len(sheets) == 1 and sheets[0].isVisible()
    sheet = sheets[0]
    shown = {
        (sheet.table.item(i, 0).text(), sheet.table.item(i, 1).text())
        for i in range(sheet.table.rowCount())
    }
    with_keys = [a for a in window.findChildren(QAction) if a.shortcuts()]
    assert len(with_keys) > 20
    texts = {text for _keys, text in shown}
    for action in with_keys:
        keys = ", ".join(
            s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()
        )
        name = action.text().replace("&", "").replace("…", "").strip()
        assert (keys, name) in shown, (keys, name)
    assert "Test: frobnicate" in texts
    for keys, what, _where in HELD_AND_MOUSE:
        assert (keys, what) in shown
    # Menu actions carry their menu path; the loupe's keys are among them.
    rows = {r.action: r for r in shortcut_rows(window)}
    assert rows["Mark unsafe"].where == "Review" and rows["Mark unsafe"].keys == "U"
    assert rows["Loupe: fit / actual size (1:1)"].keys == "Z"
    assert rows["Keyboard shortcuts"].keys.startswith("F1")
    sheet.filter.setText("loupe")
    visible = [i for i in range(sheet.table.rowCount()) if not sheet.table.isRowHidden(i)]
    assert visible and all(
        "loupe" in sheet.rows[i].action.lower() + sheet.rows[i].where.lower() for i in visible
    )
    # F1 again: still one sheet, made afresh.
    qtbot.keyClick(window.grid, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: len(window.findChildren(ShortcutSheet)) == 1)
    assert window.findChildren(ShortcutSheet)[0] is not sheet


def test_a_long_name_does_not_widen_the_loupe(qtbot, make_window, tmp_path):
    root = tmp_path / "names"
    write_photo(root / "a.jpg", (400, 300), seed=1)
    write_photo(root / ("b" * 200 + ".jpg"), (400, 300), seed=2)
    window = make_window(sort="name")
    scan(qtbot, window, root)
    open_on(qtbot, window, 0)
    qtbot.keyClick(window.loupe.view, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: not window.loupe.loading, timeout=20_000)
    assert window.loupe.name.startswith("bbbb")
    assert window.loupe.caption.text().startswith("bbbb")
    # The caption must not push the splitter (the loupe's width) about as names change.
    assert window.loupe.minimumSizeHint().width() < 400


def test_without_auto_advance_the_loupe_stays_and_shows_the_label(qtbot, make_window, big_folder):
    window = make_window(auto_advance=False)
    scan(qtbot, window, big_folder)
    row = scored_rows(window)[0]
    path = window.results.index(row).data(Role.PATH)
    open_on(qtbot, window, row)
    assert "UNSAFE" not in window.loupe.caption.text()
    qtbot.keyClick(window.loupe.view, Qt.Key.Key_U)
    assert window.loupe.path == path  # no auto-advance: the same image
    assert "UNSAFE" in window.loupe.caption.text()  # shown at once ("UNSAFE…" while saving)
    settle(qtbot, window)
    qtbot.waitUntil(lambda: "UNSAFE ·" in window.loupe.caption.text())  # saved: no "…"


def test_the_desk_exits_cleanly_with_the_loupe_built(tmp_path):
    # Reparenting the grid into the loupe's stack once made PySide's clean-up at exit call
    # the window's event filter from a half-destroyed widget: a segfault after every run.
    code = (
        "import os, sys\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from pathlib import Path\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from nsfw_desk.core.settings import Settings\n"
        "from nsfw_desk.gui.main_window import MainWindow\n"
        "app = QApplication([])\n"
        "w = MainWindow(Settings(reviewer='t'), library_path=Path(sys.argv[1]),\n"
        "               save_settings=False)\n"
        "w.show(); app.processEvents(); w.open_loupe(); w.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "library.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
