"""The desk with several reviewers and care for them: Conflicts and Assigned-to-me filters,
the Today panel, the break reminder and the reveal cap (gui/team.py, gui/care.py)."""

from __future__ import annotations

import pytest
from desk import column, scan, settle
from PySide6.QtCore import Qt

from nsfw_desk.core import team
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.store import Library
from nsfw_desk.gui.grid import Role


def _label(library: Library, reviewer: str, labels: dict[str, str]) -> None:
    ReviewStore(library).apply_labels(
        [(DecisionInput(h), label) for h, label in labels.items()], reviewer=reviewer, threshold=0.5
    )


@pytest.fixture
def clock():
    """A clock the test moves by hand: no real waiting."""
    now = [1000.0]

    class Clock:
        def __call__(self) -> float:
            return now[0]

        def advance(self, seconds: float) -> None:
            now[0] += seconds

    return Clock()


def test_conflicts_filter_shows_each_reviewers_label_and_a_decision_resolves_it(
    qtbot, make_window, photo_folder, tmp_path
):
    window = make_window()
    scan(qtbot, window, photo_folder)
    hashes = sorted(h for h in column(window, Role.HASH) if h)
    bob_db = tmp_path / "bob.sqlite"
    with Library(bob_db) as bob:
        _label(bob, "bob", {hashes[0]: "unsafe", hashes[1]: "safe"})
    with Library(window.library_path) as mine:
        _label(mine, "tester", {hashes[0]: "safe", hashes[1]: "safe"})
        team.merge_library(mine, bob_db)
    window.team.reload()
    qtbot.waitUntil(lambda: hashes[0] in window.results.conflicts, timeout=10_000)
    assert window.results.conflicts == {hashes[0]: {"bob": "unsafe", "tester": "safe"}}

    qtbot.keyClick(window.grid, Qt.Key.Key_0, Qt.KeyboardModifier.AltModifier)
    assert window.results.filter == "conflicts"
    assert column(window, Role.HASH) == [hashes[0]]
    window._select_row(0)
    assert column(window, Role.REVIEWERS) == [{"bob": "unsafe", "tester": "safe"}]
    assert "bob: unsafe, tester: safe" in window.detail.reviewers_label.text()
    assert window.detail.reviewers_label.isVisibleTo(window.detail)

    qtbot.keyClick(window.grid, Qt.Key.Key_U)  # the moderator decides: resolved
    settle(qtbot, window)
    qtbot.waitUntil(lambda: not window.results.conflicts, timeout=10_000)
    assert window.results.rowCount() == 0
    assert not window.detail.reviewers_label.isVisibleTo(window.detail)

    qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    qtbot.waitUntil(lambda: hashes[0] in window.results.conflicts, timeout=10_000)
    assert column(window, Role.HASH) == [hashes[0]]


def test_assigned_to_me_shows_the_items_assign_gave_the_settings_reviewer(
    qtbot, make_window, photo_folder
):
    window = make_window()
    scan(qtbot, window, photo_folder)
    with Library(window.library_path) as library:
        team.assign(library, ["tester", "someone"], 0.0)
        mine = {h for h, _ in library.assignments("tester")}
    assert 0 < len(mine) < 12
    window.team.reload()
    qtbot.waitUntil(lambda: window.results.assigned == mine, timeout=10_000)
    window.set_filter("assigned")
    assert set(column(window, Role.HASH)) == mine


def _reveal(qtbot, window, clock, seconds: float) -> None:
    qtbot.keyPress(window.grid, Qt.Key.Key_Space)
    clock.advance(seconds)
    qtbot.keyRelease(window.grid, Qt.Key.Key_Space)


def test_the_today_panel_counts_a_reveal_and_its_time_and_the_library_keeps_it(
    qtbot, make_window, photo_folder, clock
):
    window = make_window()
    window.care.clock.clock = clock
    scan(qtbot, window, photo_folder)
    window._select_row(0)
    _reveal(qtbot, window, clock, 2.5)
    qtbot.keyClick(window.grid, Qt.Key.Key_T, Qt.KeyboardModifier.ShiftModifier)
    panel = window.care.panel
    assert panel is not None and panel.isVisible()
    assert panel.reveals.text() == "1"
    assert panel.reveal_time.text() == "2 s"
    clock.advance(5)
    _reveal(qtbot, window, clock, 0.5)
    clock.advance(0.05)  # pressed again at once (a held key's repeat on some X servers)
    _reveal(qtbot, window, clock, 0.45)
    assert panel.reveals.text() == "2"  # one more reveal, and the open panel follows
    assert panel.reveal_time.text() == "3 s"
    window.care.flush()
    settle(qtbot, window)
    with Library(window.library_path) as library:
        (row,) = library.care_totals("tester")
    assert row[2:4] == (2, 3450)  # the 0.05 s between the repeat is not counted


def test_the_break_reminder_dims_the_grid_after_the_stretch_until_acknowledged(
    qtbot, make_window, photo_folder, clock
):
    window = make_window(break_minutes=1)
    window.care.clock.clock = clock
    scan(qtbot, window, photo_folder)
    window._select_row(0)
    window.care.activity()
    clock.advance(40)
    window.care.activity()
    assert not window.care.overlay.isVisible()
    clock.advance(25)  # 65 s of continuous review: past the minute
    window.care.check()  # what the window's timer does every half minute
    assert window.care.overlay.isVisible()
    assert window.care.overlay.geometry() == window.grid.rect()
    qtbot.keyClick(window.grid, Qt.Key.Key_U)  # review keys wait for the acknowledgement
    assert window.grid.currentIndex().data(Role.LABEL) is None
    window.grid.setFocus()  # where the focus is while reviewing
    qtbot.keyClick(window.grid, Qt.Key.Key_Return)  # acknowledges; does not open the loupe
    assert not window.care.overlay.isVisible()
    assert not window.loupe_open()
    qtbot.keyClick(window.grid, Qt.Key.Key_U)
    settle(qtbot, window)
    assert window.results.index(0).data(Role.LABEL) == "unsafe"


def test_a_long_pause_is_a_break_already(qtbot, make_window, clock):
    window = make_window(break_minutes=1)
    window.care.clock.clock = clock
    window.care.activity()
    clock.advance(50)
    window.care.activity()
    clock.advance(10 * 60)  # away for ten minutes
    window.care.activity()
    clock.advance(30)
    window.care.check()
    assert not window.care.overlay.isVisible()
    assert window.care.today().review_ms == 50_000  # the pause is not reviewing


def test_the_reveal_cap_refuses_with_a_clear_message(qtbot, make_window, photo_folder, clock):
    window = make_window(max_reveals_per_day=1)
    window.care.clock.clock = clock
    scan(qtbot, window, photo_folder)
    window._select_row(0)
    qtbot.keyPress(window.grid, Qt.Key.Key_Space)
    assert window.delegate.revealed is not None
    clock.advance(1)
    qtbot.keyRelease(window.grid, Qt.Key.Key_Space)
    clock.advance(5)
    qtbot.keyPress(window.grid, Qt.Key.Key_Space)
    assert window.delegate.revealed is None
    assert not window.detail.revealed
    assert "Reveal refused" in window.statusBar().currentMessage()
    assert "cap" in window.statusBar().currentMessage()
    qtbot.keyRelease(window.grid, Qt.Key.Key_Space)
    assert window.care.today().reveals == 1


def test_an_ai_label_conflict_shows_in_the_conflicts_filter_and_g_resolves_it(
    qtbot, make_window, photo_folder, tmp_path
):
    window = make_window()
    window.settings.auto_advance = False
    scan(qtbot, window, photo_folder)
    hashes = sorted(h for h in column(window, Role.HASH) if h)
    bob_db = tmp_path / "bob.sqlite"
    with Library(bob_db) as bob:
        ReviewStore(bob).decide_ai([DecisionInput(hashes[0])], True, reviewer="bob")
    with Library(window.library_path) as mine:
        ReviewStore(mine).decide_ai([DecisionInput(hashes[0])], False, reviewer="tester")
        team.merge_library(mine, bob_db)
    window.team.reload()
    qtbot.waitUntil(lambda: hashes[0] in window.results.conflicts, timeout=10_000)
    assert window.results.conflicts == {hashes[0]: {"bob": "AI", "tester": "real"}}
    window.set_filter("conflicts")
    assert column(window, Role.HASH) == [hashes[0]]
    window._select_row(0)
    assert "bob: AI, tester: real" in window.detail.reviewers_label.text()

    qtbot.keyClick(window.grid, Qt.Key.Key_G)  # the moderator's AI label resolves it
    settle(qtbot, window)
    qtbot.waitUntil(lambda: not window.results.conflicts, timeout=10_000)
    qtbot.keyClick(window.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, window)
    qtbot.waitUntil(lambda: hashes[0] in window.results.conflicts, timeout=10_000)
