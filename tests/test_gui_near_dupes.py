"""Near-duplicates in the desk: the offer bar after a single decision, and "label group"."""

from __future__ import annotations

import pytest
from desk import column, scan, settle
from PIL import Image, ImageFilter
from PySide6.QtCore import Qt

from nsfw_desk.gui.grid import Role
from nsfw_desk.synthetic import synthetic_photo, write_photo


@pytest.fixture
def dupes_folder(tmp_path):
    """One generated photo with three copies (re-encoded, resized down, resized up) and
    five unrelated photos."""
    root = tmp_path / "dupes"
    root.mkdir()
    image = synthetic_photo((480, 360), 3).filter(ImageFilter.GaussianBlur(1))
    image.save(root / "original.jpg", quality=95)
    image.save(root / "copy_q60.jpg", quality=60)
    image.resize((240, 180), Image.Resampling.LANCZOS).save(root / "copy_small.png")
    image.resize((720, 540)).save(root / "copy_large.jpg", quality=85)
    for i in range(5):
        write_photo(root / f"other_{i}.jpg", (240, 180), seed=40 + i)
    return root


COPIES = {"copy_q60.jpg", "copy_small.png", "copy_large.jpg"}


def _select(window, name: str) -> None:
    names = [window.results.index(i).data(Role.PATH).name for i in range(window.results.rowCount())]
    window._select_row(names.index(name))


def _labels(window) -> dict[str, str | None]:
    return {
        window.results.index(i).data(Role.PATH).name: window.results.index(i).data(Role.LABEL)
        for i in range(window.results.rowCount())
    }


def test_labelling_one_offers_its_copies_and_y_labels_them_in_one_undo_step(
    qtbot, make_window, dupes_folder, stored
):
    window = make_window()
    scan(qtbot, window, dupes_folder)
    _select(window, "original.jpg")
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    qtbot.waitUntil(window.offer.isVisible, timeout=10_000)
    paths = {window.results.item_of(h)[0].name for h in window.offer.hashes}
    assert paths == COPIES
    assert "3 near-duplicates" in window.offer.text.text()
    assert "unsafe" in window.offer.text.text()
    assert window.grid.hasFocus()  # the bar never takes the review keys

    qtbot.keyClick(window.grid, Qt.Key.Key_Y)
    assert not window.offer.isVisible()
    labels = _labels(window)
    assert {n for n, label in labels.items() if label == "unsafe"} == COPIES | {"original.jpg"}
    settle(qtbot, window)
    reviews = stored(window)
    decided = [d.source.name for d in reviews.current_decisions()]
    assert sorted(decided) == sorted(COPIES | {"original.jpg"})  # one record per member

    qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    labels = _labels(window)
    assert {n for n, label in labels.items() if label == "unsafe"} == {"original.jpg"}
    settle(qtbot, window)
    assert set(reviews.current_labels().values()) == {"unsafe"}
    assert len(reviews.current_labels()) == 1


def test_esc_dismisses_the_offer_without_hiding_the_images(qtbot, make_window, dupes_folder):
    window = make_window()
    scan(qtbot, window, dupes_folder)
    _select(window, "copy_q60.jpg")
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    qtbot.waitUntil(window.offer.isVisible, timeout=10_000)
    assert {window.results.item_of(h)[0].name for h in window.offer.hashes} == (
        COPIES - {"copy_q60.jpg"} | {"original.jpg"}
    )
    qtbot.keyClick(window.grid, Qt.Key.Key_Escape)
    assert not window.offer.isVisible()
    assert not window.hide_action.isChecked()
    assert sum(label == "safe" for label in _labels(window).values()) == 1


def test_an_unrelated_photo_offers_nothing(qtbot, make_window, dupes_folder):
    window = make_window()
    scan(qtbot, window, dupes_folder)
    _select(window, "other_0.jpg")
    window.decide("unsafe")
    settle(qtbot, window)
    qtbot.wait(200)
    assert not window.offer.isVisible()


def test_label_group_labels_this_and_its_near_duplicates_in_one_step(
    qtbot, make_window, dupes_folder
):
    window = make_window()
    scan(qtbot, window, dupes_folder)
    _select(window, "copy_large.jpg")
    qtbot.keyClick(window.grid, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: "safe" in _labels(window).values(), timeout=10_000)
    labels = _labels(window)
    assert {n for n, label in labels.items() if label == "safe"} == COPIES | {"original.jpg"}
    assert "3 near-duplicates" in window.statusBar().currentMessage() + window.status.text()
    window.undo_stack.undo()
    assert set(_labels(window).values()) == {None}


def test_label_group_is_done_when_the_moderator_moves_on_before_the_lookup_ends(
    qtbot, make_window, dupes_folder
):
    """Shift+U then J at once: the lookup's answer came after the move and was dropped, the
    current item's own label with it."""
    window = make_window()
    scan(qtbot, window, dupes_folder)
    _select(window, "original.jpg")
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_U, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(window.grid, Qt.Key.Key_J)  # before the library thread answers
    qtbot.waitUntil(lambda: "unsafe" in _labels(window).values(), timeout=10_000)
    labels = _labels(window)
    assert {n for n, label in labels.items() if label == "unsafe"} == COPIES | {"original.jpg"}
    assert window.results.index(window.grid.currentIndex().row()).data(Role.PATH).name != (
        "original.jpg"
    )  # the move stands


def test_tiles_count_their_near_duplicates(qtbot, make_window, dupes_folder):
    window = make_window()
    scan(qtbot, window, dupes_folder)
    qtbot.waitUntil(lambda: any(column(window, Role.NEAR)), timeout=10_000)
    names = [p.name for p in column(window, Role.PATH)]
    near = dict(zip(names, column(window, Role.NEAR), strict=True))
    assert near == {n: 3 if n in COPIES | {"original.jpg"} else 0 for n in names}
    tip = window.results.index(names.index("original.jpg")).data(Qt.ItemDataRole.ToolTipRole)
    assert "≈3: near-duplicates" in tip
