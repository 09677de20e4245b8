"""What a moderator's day at the desk ran into (an audit driven by keyboard under Xvfb).

Each test fails on the code before its fix.
"""

from __future__ import annotations

import os

from nsfw_desk.core.scan import scan_folder


def test_a_renamed_or_touched_file_keeps_its_dimensions(photo_folder, loaded_model, library):
    """Known content is not decoded again; its width, height and format stay known (the
    detail pane's Dimensions line was empty for a renamed file)."""
    scan_folder(photo_folder, loaded_model, library)
    old = photo_folder / "a" / "photo_01.jpg"
    facts = library.file_facts(old)
    assert facts["width"] == 127 and facts["format"] == "JPEG"
    renamed = old.with_name("renamed.jpg")
    old.rename(renamed)
    touched = photo_folder / "a" / "photo_05.jpg"
    before = library.file_facts(touched)
    os.utime(touched, ns=(before["mtime_ns"] + 10**9, before["mtime_ns"] + 10**9))

    summary = scan_folder(photo_folder, loaded_model, library)

    assert summary.scored == 0  # nothing was decoded or run through the model again
    for path, expected in ((renamed, facts), (touched, before)):
        now = library.file_facts(path)
        assert (now["width"], now["height"], now["format"]) == (
            expected["width"],
            expected["height"],
            expected["format"],
        )
    assert library.file_facts(old) is None


def test_an_undo_in_another_folder_says_where_not_that_a_filter_hides_it(
    qtbot, make_window, folder, tmp_path
):
    """Ctrl+Z after opening another folder undid a decision there and said "not shown in
    this view ('All')", as if the filter hid it."""
    from desk import scan, settle
    from PySide6.QtCore import Qt

    from nsfw_desk.gui.grid import Role
    from nsfw_desk.synthetic import write_photo

    other = tmp_path / "other"
    for i in range(2):
        write_photo(other / f"o{i}.jpg", seed=50 + i)
    window = make_window()
    scan(qtbot, window, folder)
    labelled = window.grid.currentIndex().data(Role.PATH)
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    scan(qtbot, window, other)
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    said = window.statusBar().currentMessage()
    assert said == f"Undid: Mark unsafe · in another folder: {labelled.parent}"
    settle(qtbot, window)


def test_a_stopped_scan_says_what_it_left_and_how_to_go_on(qtbot, make_window, tmp_path):
    """After Stop the strip above the grid read "all 240 images scored" in a folder of 400,
    and the status line did not say how to scan the rest."""
    from desk import SCAN_TIMEOUT_MS

    from nsfw_desk.synthetic import write_photo

    root = tmp_path / "many"
    for i in range(40):
        write_photo(root / f"{i:02d}.jpg", (140, 100), seed=100 + i)
    window = make_window()
    window.open_folder(root)
    qtbot.waitUntil(lambda: window.results.rowCount() >= 8, timeout=SCAN_TIMEOUT_MS)
    window.stop_button.click()
    qtbot.waitUntil(lambda: not window.scanning, timeout=5000)
    done = int(window.status.text().removeprefix("Stopped after ").split(" of ")[0])
    assert done < 40 and window.status.text().endswith(" · F5 scans the rest")
    coverage = window.switcher.coverage
    qtbot.waitUntil(lambda: "stopped" in coverage.text(), timeout=5000)
    assert coverage.text().strip() == (
        f"{done} images scored · the scan stopped before {40 - done} more files"
    )
    assert window.switcher.scan_button.isVisibleTo(window.switcher)
    window.switcher.scan_button.click()  # Scan again: the rest, then all of it is scored
    qtbot.waitUntil(lambda: not window.scanning, timeout=SCAN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: coverage.text().strip() == "all 40 images scored", timeout=5000)
    assert not window.switcher.scan_button.isVisibleTo(window.switcher)


def test_nothing_left_in_a_filtered_view_says_what_waits_outside_it(qtbot, make_window, folder):
    """Review the most uncertain first (and N) under Disagreements or Reviewed said only
    "Nothing left to review in this view", as if the folder were done."""
    from desk import scan, settle
    from PySide6.QtCore import Qt

    window = make_window()
    scan(qtbot, window, folder)  # 12 images and 1 broken file
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    window.set_filter("reviewed")
    qtbot.keyClick(window.grid, Qt.Key.Key_N)
    hint = " · 11 not reviewed outside 'Reviewed' (Alt+1 shows all)"
    assert window.statusBar().currentMessage() == "Nothing left to review in this view" + hint
    window.review_uncertain()
    assert window.statusBar().currentMessage() == "Nothing left to review in this view" + hint
    window.set_filter("all")  # nothing hidden: no hint
    window.grid.selectAll()
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    qtbot.keyClick(window.grid, Qt.Key.Key_N)
    assert window.statusBar().currentMessage() == "Nothing left to review in this view"
    settle(qtbot, window)


def test_the_decision_history_never_rounds_a_score_onto_the_threshold(qtbot, make_window, folder):
    """The tile showed 0.44 for 0.449 under a threshold of 0.45 (tiles.score_text), and the
    history line under it "score 0.45 at threshold 0.45", as if it were flagged."""
    import math

    from desk import scan, settle
    from PySide6.QtCore import Qt

    from nsfw_desk.gui.grid import Role
    from nsfw_desk.gui.tiles import score_text

    window = make_window(auto_advance=False)
    scan(qtbot, window, folder)
    scores = [window.results.index(i).data(Role.SCORE) for i in range(12)]
    row = next(i for i, s in enumerate(scores) if 0.1 < s < 0.9 and (s * 100) % 1 >= 0.5)
    path = window.results.index(row).data(Role.PATH)
    threshold = math.ceil(scores[row] * 100) / 100  # just over the score: not flagged
    window.set_threshold(threshold)
    window._select_row(window.results.row_of(path))
    qtbot.keyClick(window.grid, Qt.Key.Key_S)
    shown = score_text(scores[row], threshold)
    assert float(shown) < threshold
    qtbot.waitUntil(lambda: "safe" in window.detail.history.toPlainText(), timeout=10_000)
    assert f"(score {shown} at threshold {threshold:.2f})" in window.detail.history.toPlainText()
    settle(qtbot, window)


def test_calibration_without_reviews_does_not_read_the_library_for_good(qtbot, make_window, folder):
    """Ctrl+T before any review: the Model box kept "Reading the library…" under the
    message that said why there was nothing to calibrate."""
    from desk import scan

    from nsfw_desk.gui.calibration import CalibrationDialog

    window = make_window()
    scan(qtbot, window, folder)
    dialog = CalibrationDialog(window.reads, 0.5, window.model_id, window)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.loaded, timeout=10_000)
    assert dialog.message.text().startswith("No reviewed item has a score yet")
    assert dialog.model_box.placeholderText() == "No model has scored a reviewed image yet"


def test_the_model_box_does_not_say_no_scores_while_they_arrive(qtbot, make_window, tmp_path):
    """During a folder's first scan "Scores from" read "model (no scores here yet)" beside
    "all 48 images scored", the tiles filling with scores."""
    from desk import SCAN_TIMEOUT_MS

    from nsfw_desk.synthetic import write_photo

    root = tmp_path / "many"
    for i in range(40):
        write_photo(root / f"{i:02d}.jpg", (140, 100), seed=100 + i)
    window = make_window()
    box = window.switcher.model_box
    window.open_folder(root)
    qtbot.waitUntil(lambda: box.count() > 0 and window.results.rowCount() > 0, timeout=30_000)
    assert window.scanning, "the scan ended before the check: make the folder larger"
    assert box.itemText(0).endswith("(scanning…)")
    window.stop_button.click()
    qtbot.waitUntil(lambda: not window.scanning, timeout=SCAN_TIMEOUT_MS)
    qtbot.waitUntil(  # the model has scores stored here now: its plain name
        lambda: not box.itemText(0).endswith(("(scanning…)", "(no scores here yet)")),
        timeout=5000,
    )


def test_why_a_non_image_cannot_be_labelled_is_not_said_twice():
    """U on text.jpg said "can't be labelled: not an image — it is not an image"."""
    from nsfw_desk.gui.flow import why_not_labellable

    said = why_not_labellable("text.jpg", "not an image: not an image (unrecognised content)")
    assert said == (
        "text.jpg can't be labelled: not an image — its content is no picture format "
        "(empty, text or another kind of file)"
    )
