"""The moderator's flow through the desk: no dead ends, a queue, and every state explained."""

from __future__ import annotations

import os

import pytest
from desk import SCAN_TIMEOUT_MS, column, scan, settle
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu

from nsfw_desk.gui.grid import FILTER_KEYS, FILTERS, Role
from nsfw_desk.synthetic import write_photo

ALT = Qt.KeyboardModifier.AltModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def named_folder(tmp_path):
    """Sorted by name, a broken file sits between the photos: a_0, a_1, b_broken, c_0, c_1."""
    root = tmp_path / "named"
    for i, name in enumerate(("a_0", "a_1", "c_0", "c_1")):
        write_photo(root / f"{name}.jpg", (120, 90), seed=i)
    (root / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


@pytest.fixture
def many_folder(tmp_path):
    """40 photos, each newer than the one before: sorted newest first, every scan batch
    lands above the ones before it."""
    root = tmp_path / "many"
    for i in range(40):
        path = write_photo(root / f"{i:02d}.jpg", (140, 100), seed=100 + i)
        os.utime(path, ns=(1_700_000_000_000_000_000 + i * 10**9,) * 2)
    return root


def paths_selected(window) -> set:
    return {i.data(Role.PATH) for i in window.grid.selectionModel().selectedIndexes()}


def said(window) -> str:
    """What the status bar tells the moderator about their last key."""
    return window.statusBar().currentMessage()


def current_name(window) -> str | None:
    index = window.grid.currentIndex()
    return index.data(Role.PATH).name if index.isValid() else None


def test_auto_advance_skips_error_items_and_a_key_on_one_says_why(
    qtbot, make_window, named_folder, stored
):
    window = make_window(sort="name")
    scan(qtbot, window, named_folder)
    names = [p.name for p in column(window, Role.PATH)]
    assert names == ["a_0.jpg", "a_1.jpg", "b_broken.jpg", "c_0.jpg", "c_1.jpg"]
    window._select_row(0)
    for key in (Qt.Key.Key_U, Qt.Key.Key_S, Qt.Key.Key_U, Qt.Key.Key_S):
        qtbot.keyClick(window.grid, key)
    settle(qtbot, window)
    labels = dict(zip(names, column(window, Role.LABEL), strict=True))
    assert labels == {
        "a_0.jpg": "unsafe",
        "a_1.jpg": "safe",
        "b_broken.jpg": None,
        "c_0.jpg": "unsafe",
        "c_1.jpg": "safe",
    }
    hashes = [h for h in column(window, Role.HASH) if h]
    assert len(stored(window).current_labels(hashes)) == 4

    # A key on the broken file is not dropped silently: the status bar says why.
    window._select_row(2)
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    text = said(window)
    assert text.startswith("b_broken.jpg can't be labelled: decode error")
    assert "not an image we could read" in text
    assert current_name(window) == "b_broken.jpg"


def test_a_selection_with_an_error_item_labels_the_rest_and_says_so(
    qtbot, make_window, named_folder
):
    window = make_window(sort="name", auto_advance=False)
    scan(qtbot, window, named_folder)
    window.grid.selectAll()
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    settle(qtbot, window)
    assert column(window, Role.LABEL) == ["unsafe", "unsafe", None, "unsafe", "unsafe"]
    assert said(window).startswith("1 item was left out: b_broken.jpg can't be labelled")


def test_empty_filter_says_why_and_one_click_shows_all(qtbot, make_window, folder):
    window = make_window(filter="disagreements")
    window.open_folder(folder)
    hint = window.empty_hint
    assert hint.text() == "Scanning… only items that match 'Disagreements' will show"
    assert hint.isVisible() and hint.clear_button.isVisible()
    qtbot.waitUntil(lambda: not window.scanning, timeout=SCAN_TIMEOUT_MS)
    assert window.results.rowCount() == 0
    qtbot.waitUntil(lambda: "No items match 'Disagreements'" in hint.text())
    assert hint.isVisible() and hint.clear_button.isVisible()
    qtbot.mouseClick(hint.clear_button, Qt.MouseButton.LeftButton)
    assert window.results.filter == "all"
    assert window.filter_box.currentData() == "all"
    assert window.results.rowCount() == 13
    qtbot.waitUntil(lambda: not hint.isVisible())


def test_empty_grid_says_scanning_or_no_images(qtbot, make_window, tmp_path):
    window = make_window()
    assert window.empty_hint.isVisible()  # no folder yet: it says how to open one
    assert "Ctrl+O" in window.empty_hint.text()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    window.open_folder(empty)
    assert window.empty_hint.text().startswith("Scanning")
    assert not window.empty_hint.clear_button.isVisible()
    qtbot.waitUntil(lambda: not window.scanning, timeout=SCAN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.empty_hint.text() == "This folder has no images")
    assert window.empty_hint.isVisible()


def test_first_item_stays_current_while_results_arrive_until_the_moderator_moves(
    qtbot, make_window, many_folder
):
    window = make_window(sort="modified")
    seen = []

    def check() -> None:
        if window.results.rowCount():
            seen.append(window.grid.currentIndex().row())

    # Checked once the window has handled each batch (its slot's event is queued first).
    window.worker.worker.results.connect(lambda *_: QTimer.singleShot(0, check))
    scan(qtbot, window, many_folder)
    assert window.results.rowCount() == 40
    assert seen and set(seen) == {0}
    assert window.grid.currentIndex().row() == 0
    assert paths_selected(window) == {window.results.index(0).data(Role.PATH)}

    # Looking further down (scrolling is not choosing) keeps the view where it is.
    bar = window.grid.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum())
    window.set_sort("score")
    assert window.grid.currentIndex().row() == 0
    assert bar.value() == bar.maximum()
    window.set_sort("modified")
    top = window.results.index(0).data(Role.HASH)
    qtbot.keyClick(window.grid, Qt.Key.Key_U)  # labels the top of the grid, not some item
    assert window.results.label_of(top) == "unsafe"

    # Once the moderator has moved, a re-sort keeps their item.
    qtbot.keyClick(window.grid, Qt.Key.Key_J)
    chosen = window.grid.currentIndex().data(Role.PATH)
    window.set_sort("name")
    assert window.grid.currentIndex().data(Role.PATH) == chosen
    settle(qtbot, window)


def test_before_moving_a_resort_or_refilter_keeps_the_first_item_current(
    qtbot, make_window, folder
):
    window = make_window()
    scan(qtbot, window, folder)
    window.set_sort("name")
    assert window.grid.currentIndex().row() == 0
    window.set_filter("unflagged")
    if window.results.rowCount():
        assert window.grid.currentIndex().row() == 0


def test_undo_and_redo_select_what_they_changed_and_say_so(qtbot, make_window, folder):
    window = make_window()
    scan(qtbot, window, folder)
    window._select_row(0)
    for row in (1, 2):
        window.grid.selectionModel().select(
            window.results.index(row), window.grid.selectionModel().SelectionFlag.Select
        )
    changed = {window.results.index(i).data(Role.PATH) for i in range(3)}
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    window._select_row(8)
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, CTRL)
    assert said(window) == "Undid: Mark unsafe (3)"
    assert paths_selected(window) == changed
    assert window.grid.currentIndex().data(Role.PATH) in changed
    assert all(window.results.index(i).data(Role.LABEL) is None for i in range(3))
    window._select_row(8)
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, CTRL | SHIFT)
    assert said(window) == "Redid: Mark unsafe (3)"
    assert paths_selected(window) == changed
    settle(qtbot, window)


def test_undo_of_an_item_filtered_out_of_view_says_so(qtbot, make_window, folder):
    window = make_window(filter="unreviewed", auto_advance=False)
    scan(qtbot, window, folder)
    window._select_row(0)
    name = current_name(window)
    qtbot.keyClick(window.grid, Qt.Key.Key_S)  # leaves the "Not reviewed" view
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, CTRL)  # back in it, and selected
    assert said(window) == "Undid: Mark safe"
    assert current_name(window) == name
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, CTRL | SHIFT)  # out of the view again
    assert said(window).startswith("Redid: Mark safe")
    assert "not shown" in said(window)
    settle(qtbot, window)


def test_stop_says_how_many_files_of_how_many(qtbot, make_window, many_folder):
    window = make_window()
    window.open_folder(many_folder)
    qtbot.waitUntil(lambda: window.results.rowCount() >= 8, timeout=SCAN_TIMEOUT_MS)
    window.stop_button.click()
    qtbot.waitUntil(lambda: not window.scanning, timeout=5000)
    text = window.status.text()
    assert text.startswith("Stopped after ") and " of 40 files" in text
    done = int(text.removeprefix("Stopped after ").split(" of ")[0])
    assert window.results.rowCount() <= done < 40


def test_next_unreviewed_wraps_skips_errors_and_labelled_items(qtbot, make_window, named_folder):
    window = make_window(sort="name", auto_advance=False)
    scan(qtbot, window, named_folder)
    qtbot.waitUntil(lambda: window.remaining_label.text() == "4 left in this view")
    window._select_row(3)  # c_0
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: window.remaining_label.text() == "3 left in this view")
    qtbot.keyClick(window.grid, Qt.Key.Key_N)
    assert current_name(window) == "c_1.jpg"
    qtbot.keyClick(window.grid, Qt.Key.Key_N)  # wraps to the top
    assert current_name(window) == "a_0.jpg"
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    qtbot.keyClick(window.grid, Qt.Key.Key_N)
    assert current_name(window) == "a_1.jpg"
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    qtbot.keyClick(window.grid, Qt.Key.Key_N)  # skips b_broken (error) and c_0 (labelled)
    assert current_name(window) == "c_1.jpg"
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    qtbot.waitUntil(lambda: window.remaining_label.text() == "0 left in this view")
    qtbot.keyClick(window.grid, Qt.Key.Key_N)
    assert current_name(window) == "c_1.jpg"
    assert "Nothing left to review" in said(window)

    # The count follows the filter and undo.
    window.set_filter("flagged")
    qtbot.waitUntil(lambda: window.remaining_label.text() == "0 left in this view")
    window.set_filter("all")
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, CTRL)
    qtbot.waitUntil(lambda: window.remaining_label.text() == "1 left in this view")
    settle(qtbot, window)


def test_remaining_count_counts_only_the_current_filter(qtbot, make_window, folder):
    window = make_window()
    scan(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.remaining_label.text() == "12 left in this view")
    window.set_filter("flagged")
    flagged = window.results.rowCount()
    qtbot.waitUntil(lambda: window.remaining_label.text() == f"{flagged} left in this view")
    window.set_filter("errors")
    qtbot.waitUntil(lambda: window.remaining_label.text() == "0 left in this view")


def test_alt_numbers_switch_the_show_filter_and_are_in_a_menu(qtbot, make_window, folder):
    window = make_window()
    scan(qtbot, window, folder)
    for key, keys in FILTER_KEYS.items():
        qtbot.keyClick(window.grid, getattr(Qt.Key, f"Key_{keys[-1]}"), ALT)
        assert window.results.filter == key
        assert window.filter_box.currentData() == key
        assert window.filter_actions[key].isChecked()
    qtbot.keyClick(window.grid, Qt.Key.Key_1, ALT)
    assert window.results.rowCount() == 13
    window.filter_box.setCurrentIndex(list(FILTERS).index("errors"))  # the combo box
    assert window.filter_actions["errors"].isChecked()


def menu_shortcuts(window) -> dict[str, str]:
    """Every action reachable from the menu bar → its shortcut's text."""
    found: dict[str, str] = {}

    def walk(menu: QMenu) -> None:
        for action in menu.actions():
            if action.menu():
                walk(action.menu())
            elif not action.isSeparator():
                found[action.text().replace("&", "")] = action.shortcut().toString(
                    QKeySequence.SequenceFormat.PortableText
                )

    for action in window.menuBar().actions():
        walk(action.menu())
    return found


def test_every_new_action_is_in_a_menu_with_its_shortcut(qtbot, make_window):
    window = make_window()
    shortcuts = menu_shortcuts(window)
    assert shortcuts["Next unreviewed"] == "N"
    for number, (key, text) in enumerate(FILTERS.items(), start=1):
        assert shortcuts[f"Show {text}"] == FILTER_KEYS.get(key, "")
        if number <= 9:
            assert FILTER_KEYS[key] == f"Alt+{number}"
    assert FILTER_KEYS["conflicts"] == "Alt+0"


def test_auto_advance_at_the_end_stays_off_error_tiles_and_says_what_is_left(
    qtbot, make_window, folder
):
    window = make_window()  # by score: the broken file is last
    scan(qtbot, window, folder)
    assert column(window, Role.ERROR)[-1] is not None
    window._select_row(11)  # the last scored image
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    assert window.grid.currentIndex().row() == 11
    assert said(window) == "End of this view: 11 left to review (N goes to the next)"
    window.grid.selectAll()
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    assert window.grid.currentIndex().row() == 11
    assert said(window).endswith("Everything in this view is reviewed")
    settle(qtbot, window)
