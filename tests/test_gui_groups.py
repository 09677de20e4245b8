"""Near-duplicate groups collapsed in the grid (D), and the grouping and hash-list matching
tasks on threads of their own (gui/grouping.py, gui/dupe_tasks.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from desk import LatenessProbe, column, scan, settle
from PIL import Image, ImageFilter
from PySide6.QtCore import Qt, QThread

from nsfw_desk.core import hashlists
from nsfw_desk.core.store import Library
from nsfw_desk.gui import dupe_tasks
from nsfw_desk.gui.grid import Role
from nsfw_desk.gui.shortcut_sheet import shortcut_rows
from nsfw_desk.synthetic import synthetic_photo, write_photo

GROUP_A = {"a.jpg", "a_q60.jpg", "a_small.png", "a_large.jpg"}
GROUP_B = {"b.jpg", "b_q50.jpg", "b_small.png"}
OTHERS = {"other_0.jpg", "other_1.jpg", "other_2.jpg"}


@pytest.fixture
def groups_folder(tmp_path):
    """Two generated photos with copies (re-encoded, resized) and three unrelated photos."""
    root = tmp_path / "groups"
    root.mkdir()
    a = synthetic_photo((480, 360), 3).filter(ImageFilter.GaussianBlur(1))
    a.save(root / "a.jpg", quality=95)
    a.save(root / "a_q60.jpg", quality=60)
    a.resize((240, 180), Image.Resampling.LANCZOS).save(root / "a_small.png")
    a.resize((720, 540)).save(root / "a_large.jpg", quality=85)
    b = synthetic_photo((400, 300), 11).filter(ImageFilter.GaussianBlur(1))
    b.save(root / "b.jpg", quality=95)
    b.save(root / "b_q50.jpg", quality=50)
    b.resize((200, 150), Image.Resampling.LANCZOS).save(root / "b_small.png")
    for i in range(3):
        write_photo(root / f"other_{i}.jpg", (240, 180), seed=70 + i)
    return root


def _grouped_window(qtbot, make_window, folder):
    window = make_window()
    scan(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.results._group_count >= 2, timeout=20_000)
    return window


def _names(window) -> list[str]:
    return [p.name for p in column(window, Role.PATH)]


def _tile(window, members: set[str]) -> int:
    """The visible position of the tile showing one of `members`."""
    return next(i for i, name in enumerate(_names(window)) if name in members)


def test_d_collapses_each_group_to_its_best_scored_file_and_expands_it_again(
    qtbot, make_window, groups_folder
):
    window = _grouped_window(qtbot, make_window, groups_folder)
    assert window.results.rowCount() == 10
    scores = dict(zip(_names(window), column(window, Role.SCORE), strict=True))
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_D)
    assert window.grouping.toggle_action.isChecked() and window.settings.group_near_duplicates

    names = _names(window)
    assert len(names) == 5  # two group tiles and three single photos
    assert set(names) >= OTHERS
    a, b = _tile(window, GROUP_A), _tile(window, GROUP_B)
    # Under the score sort the tile is the group's highest-scoring file.
    assert names[a] == max(GROUP_A, key=scores.__getitem__)
    assert names[b] == max(GROUP_B, key=scores.__getitem__)
    assert window.results.index(a).data(Role.GROUP) == (4, True)
    assert window.results.index(b).data(Role.GROUP) == (3, True)
    assert all(window.results.index(_tile(window, {n})).data(Role.GROUP) is None for n in OTHERS)
    assert "A group of 4 near-duplicate files" in window.results.index(a).data(
        Qt.ItemDataRole.ToolTipRole
    )
    # Counts stay counts of files: the toolbar and "left in this view" count members.
    assert window.results.counts().total == 10
    assert window.remaining_label.text() == "10 left in this view"

    window._select_row(a)
    qtbot.keyClick(window.grid, Qt.Key.Key_Plus)
    assert len(_names(window)) == 8
    assert set(_names(window)) >= GROUP_A
    assert window.grid.currentIndex().data(Role.PATH).name == names[a]  # the place is kept
    members = [window.results.index(i).data(Role.GROUP) for i in range(8)]
    assert members.count((4, False)) == 4 and members.count((3, True)) == 1

    window._select_row(_tile(window, {"a_small.png"}))
    qtbot.keyClick(window.grid, Qt.Key.Key_Minus)
    assert _names(window) == names
    assert window.grid.currentIndex().data(Role.PATH).name == names[a]  # its group's tile

    # A click on the badge expands the group; a click on an open group's badge collapses it.
    def click_badge(position: int) -> None:
        index = window.results.index(position)
        rect = window.delegate.group_badge_rect(
            window.grid.visualRect(index), index.data(Role.GROUP), window.grid.font()
        )
        qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    click_badge(_tile(window, GROUP_B))
    assert len(_names(window)) == 7 and set(_names(window)) >= GROUP_B
    click_badge(_tile(window, GROUP_B))
    assert len(_names(window)) == 5

    window.grouping.expand_all(True)
    assert sorted(_names(window)) == sorted(GROUP_A | GROUP_B | OTHERS)
    window.grouping.expand_all(False)
    assert len(_names(window)) == 5
    qtbot.keyClick(window.grid, Qt.Key.Key_D)
    assert len(_names(window)) == 10 and not window.results.grouped
    assert set(column(window, Role.GROUP)) == {None}
    rows = {row.action: row.keys for row in shortcut_rows(window)}
    assert rows["Group near-duplicates"] == "D"
    assert rows["Expand this group"] == "+, ="
    assert rows["Collapse this group"] == "-"


def test_labelling_a_collapsed_tile_labels_every_member_as_one_undo_step(
    qtbot, make_window, groups_folder, stored
):
    window = _grouped_window(qtbot, make_window, groups_folder)
    window.grouping.set_grouped(True)
    window._select_row(_tile(window, GROUP_A))
    steps = window.undo_stack.count()
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    assert window.undo_stack.count() == steps + 1  # one step for the four files
    labels = {
        p.name: window.results.label_of(h)
        for p, h in ((o.path, o.hash) for o in window.results.outcomes())
    }
    assert {n for n, label in labels.items() if label == "unsafe"} == GROUP_A
    assert "a group of 4 files" in window.statusBar().currentMessage()
    assert window.results.counts().reviewed == 4
    qtbot.waitUntil(lambda: window.remaining_label.text() == "6 left in this view")
    assert not window.offer.isVisible()  # a group decision offers no near-duplicates

    settle(qtbot, window)
    reviews = stored(window)
    decided = sorted(d.source.name for d in reviews.current_decisions())
    assert decided == sorted(GROUP_A)  # one decision record per member

    qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert all(window.results.label_of(o.hash) is None for o in window.results.outcomes())
    settle(qtbot, window)
    assert reviews.current_labels() == {}
    qtbot.waitUntil(lambda: window.remaining_label.text() == "10 left in this view")


def _import_list(window, folder) -> None:
    with Library(window.library_path) as library:
        digest = library.file_facts(folder / "other_0.jpg")["hash"]
        hashed, quality = library.pdq_of(digest)
        listed = window.library_path.parent / "theirs.txt"
        listed.write_text(f"{hashed.hex()},{quality}\n")
        hashlists.import_hash_list(library, listed, "theirs", "unsafe")


def test_matching_runs_on_its_own_thread_shows_progress_and_stops(
    qtbot, make_window, groups_folder, monkeypatch
):
    window = _grouped_window(qtbot, make_window, groups_folder)
    _import_list(window, groups_folder)
    seen: dict[str, object] = {}

    def slow_match(library, *, progress, cancel, **_):
        """Busy in small steps, as the core's matching is, until stopped."""
        report = progress
        seen["thread"] = QThread.currentThread().objectName()
        for step in range(400):
            if cancel.cancelled:
                seen["stopped_at"] = step
                return {}
            np.sort(np.random.default_rng(step).random(20_000))
            report(dupe_tasks.Progress("match", step, 400, message=f"{step} of 400"))
            time.sleep(0.01)
        return {}

    monkeypatch.setattr(hashlists, "match_library", slow_match)
    answers: list = []
    window.grouping.tasks.matched.connect(answers.append)
    probe = LatenessProbe()
    probe.start()
    window.grouping.match(force=True)
    indicator = window.grouping.tasks.matching.indicator
    qtbot.waitUntil(indicator.isVisible, timeout=10_000)
    qtbot.waitUntil(lambda: indicator.bar.maximum() == 400, timeout=10_000)

    read: list = []  # the read thread is free while matching runs
    window.reads.query(lambda library: library.file_facts(groups_folder / "a.jpg"), read.append)
    qtbot.waitUntil(lambda: bool(read), timeout=10_000)
    assert window.grouping.tasks.matching.busy

    qtbot.mouseClick(indicator.stop, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.grouping.tasks.matching.busy, timeout=10_000)
    probe.stop()
    assert seen["thread"] == "nsfw-desk-hash-lists"
    assert seen["stopped_at"] < 400
    assert answers == [] and not indicator.isVisible()
    assert "Matching hash lists: stopped" in window.statusBar().currentMessage()
    print(f"event-loop lateness while matching: max {probe.worst_ms:.1f} ms")
    assert probe.worst_ms < 100, probe.worst_ms


def test_matches_are_computed_again_only_when_the_lists_change(
    qtbot, make_window, groups_folder, monkeypatch
):
    window = _grouped_window(qtbot, make_window, groups_folder)
    calls: list[int] = []
    real = hashlists.match_library

    def counted(library, **kwargs):
        calls.append(1)
        return real(library, **kwargs)

    monkeypatch.setattr(hashlists, "match_library", counted)
    _import_list(window, groups_folder)

    def match(**kwargs) -> dict:
        with qtbot.waitSignal(window.grouping.tasks.matched, timeout=20_000) as signal:
            window.grouping.match(**kwargs)
        return signal.args[0]

    first = match()
    assert len(calls) == 1 and len(first) == 1
    assert match() == first and len(calls) == 1  # nothing changed: the kept answer
    window.rescan()
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    assert match() == first and len(calls) == 1
    match(force=True)  # View → Refresh hash-list matches
    assert len(calls) == 2
    with Library(window.library_path) as library:
        library.remove_hash_list("theirs")
    assert match() == {} and len(calls) == 2  # no list: nothing to match, nothing read
    _import_list(window, groups_folder)
    assert len(match()) == 1 and len(calls) == 3
    listed = window.results.index(_tile(window, {"other_0.jpg"}))
    assert listed.data(Role.LISTED_UNSAFE) == "theirs"


def test_grouping_can_be_stopped_and_shows_nothing_then(
    qtbot, make_window, groups_folder, monkeypatch
):
    window = _grouped_window(qtbot, make_window, groups_folder)
    from nsfw_desk.core import dupes

    real = dupes.library_groups

    def slow_groups(library, root=None, *args, progress=None, cancel=None, **kwargs):
        for step in range(300):
            if cancel is not None and cancel.cancelled:
                return []
            progress(dupe_tasks.Progress("dupes", step, 300, message=f"chunk {step}"))
            time.sleep(0.01)
        return real(library, root, *args, progress=progress, cancel=cancel, **kwargs)

    monkeypatch.setattr(dupes, "library_groups", slow_groups)
    (groups_folder / "a_copy.jpg").write_bytes((groups_folder / "a.jpg").read_bytes())
    scan(qtbot, window, groups_folder)  # new contents: the kept groups no longer apply
    task = window.grouping.tasks.grouping
    answers: list = []
    window.grouping.tasks.grouped.connect(lambda *args: answers.append(args))
    qtbot.waitUntil(task.indicator.isVisible, timeout=10_000)
    qtbot.waitUntil(lambda: task.indicator.bar.maximum() == 300, timeout=10_000)
    qtbot.mouseClick(task.indicator.stop, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not task.busy, timeout=10_000)
    assert answers == [] and not task.indicator.isVisible()
    assert "Grouping near-duplicates: stopped" in window.statusBar().currentMessage()


def test_show_similar_without_an_embedding_for_the_active_model_says_so(
    qtbot, make_window, groups_folder
):
    window = _grouped_window(qtbot, make_window, groups_folder)
    window._select_row(0)
    window.model_id = "someone/other-model@0123"  # shown, but it scored nothing here
    window.similar.show_similar()
    qtbot.waitUntil(lambda: "no embedding" in window.statusBar().currentMessage(), timeout=10_000)
    message = window.statusBar().currentMessage()
    assert window.grid.currentIndex().data(Role.PATH).name in message
    assert "someone/other-model" in message
    assert not window.similar.active
