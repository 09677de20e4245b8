"""What a team lead's day with the desk's advanced features turned up (an audit under a real
X server: several detectors, Compare with, merged reviewers' conflicts, tags): each test
fails without its fix."""

from __future__ import annotations

from desk import column, scan, settle
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem
from test_detectors_desk import AI_SOURCE, add_ai_detector

from nsfw_desk.core import team
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.store import Library
from nsfw_desk.gui.grid import Role
from nsfw_desk.gui.tiles import CHIP_COLOURS, CONFLICT_BACKGROUND


class Recorder(QPainter):
    """A painter that remembers each text a tile writes and each box it fills, by colour."""

    def __init__(self, device) -> None:
        super().__init__(device)
        self.texts: list[str] = []
        self.fills: list[tuple[QRect, QColor]] = []

    def drawText(self, *args) -> None:  # noqa: N802 (Qt API)
        self.texts.append(str(args[-1]))
        super().drawText(*args)

    def fillRect(self, rect, colour, *rest) -> None:  # noqa: N802 (Qt API)
        if isinstance(rect, QRect) and isinstance(colour, QColor):
            self.fills.append((QRect(rect), QColor(colour)))
        super().fillRect(rect, colour, *rest)


def paint_tile(window, row: int) -> Recorder:
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, 172, 204)
    option.palette, option.font = window.grid.palette(), window.grid.font()
    image = QImage(option.rect.size(), QImage.Format.Format_RGB32)
    painter = Recorder(image)
    window.delegate.paint(painter, option, window.results.index(row))
    painter.end()
    return painter


def two_detector_window(make_window, qtbot, folder, model_dir):
    window = make_window()
    scan(qtbot, window, folder)
    hashes = sorted(h for h in column(window, Role.HASH) if h)
    with Library(window.library_path) as library:
        add_ai_detector(library, hashes)
    window.settings.detectors = [
        {"model": str(model_dir), "threshold": 0.5, "enabled": True},
        {"model": AI_SOURCE, "threshold": 0.6, "enabled": True},
    ]
    window.detectors_view.load()
    qtbot.waitUntil(lambda: len(window.results.detectors) == 1, timeout=10_000)
    return window, hashes


def test_compare_with_shows_the_compared_score_on_tiles_with_detector_chips(
    qtbot, make_window, folder, model_dir, tmp_path
):
    """With several detectors the tile's line showed only "⚑ NSFW · AI": choosing Compare
    with put the compared model's score nowhere on the grid (only in the tooltip), so the
    Models disagree filter listed tiles without saying why."""
    from nsfw_desk.synthetic import save_random_model

    window, _ = two_detector_window(make_window, qtbot, folder, model_dir)
    other_dir = save_random_model(tmp_path / "other", seed=5)
    window.model_override = str(other_dir)
    scan(qtbot, window, folder)  # the second model's scores, then back to the first
    other = window.model_id
    window.model_override = str(model_dir)
    scan(qtbot, window, folder)
    qtbot.waitUntil(lambda: window.switcher.compare_box.count() >= 2, timeout=10_000)
    window.compare_with(other)
    qtbot.waitUntil(lambda: any(s is not None for s in column(window, Role.OTHER_SCORE)))
    row = next(r for r, s in enumerate(column(window, Role.OTHER_SCORE)) if s is not None)
    assert window.results.index(row).data(Role.CHIPS)  # the chips' tile, not the one-model one
    texts = paint_tile(window, row).texts
    assert "⇄ " in texts
    other_score = window.results.index(row).data(Role.OTHER_SCORE)
    assert any(t.endswith(f"{other_score:.2f}") for t in texts[texts.index("⇄ ") :])


def test_a_conflict_strip_does_not_hide_the_detector_chips(
    qtbot, make_window, folder, model_dir, tmp_path
):
    """The conflict strip (`≠ alice ✖ · bob ✓`) was painted where the AI detector's chip
    was: a conflicted item's AI score could not be read on its tile."""
    window, hashes = two_detector_window(make_window, qtbot, folder, model_dir)
    bob_db = tmp_path / "bob.sqlite"
    with Library(bob_db) as bob:
        ReviewStore(bob).apply_labels(
            [(DecisionInput(hashes[0]), "unsafe")], reviewer="bob", threshold=0.5
        )
    with Library(window.library_path) as mine:
        ReviewStore(mine).apply_labels(
            [(DecisionInput(hashes[0]), "safe")], reviewer="tester", threshold=0.5
        )
        team.merge_library(mine, bob_db)
    window.team.reload()
    qtbot.waitUntil(lambda: hashes[0] in window.results.conflicts, timeout=10_000)
    window.set_filter("conflicts")
    assert column(window, Role.HASH) == [hashes[0]]
    painter = paint_tile(window, 0)
    strips = [r for r, c in painter.fills if c == CONFLICT_BACKGROUND]
    chips = [r for r, c in painter.fills if c in CHIP_COLOURS.values()]
    assert len(strips) == 1 and len(chips) == 2, painter.texts  # both detectors' chips
    assert not any(chip.intersects(strips[0]) for chip in chips)


def _ai_conflicts(window, hashes, tmp_path) -> None:
    """Bob said AI-generated, the tester real, on each of `hashes`."""
    bob_db = tmp_path / "bob-ai.sqlite"
    with Library(bob_db) as bob:
        ReviewStore(bob).decide_ai([DecisionInput(h) for h in hashes], True, reviewer="bob")
    with Library(window.library_path) as mine:
        ReviewStore(mine).decide_ai([DecisionInput(h) for h in hashes], False, reviewer="tester")
        team.merge_library(mine, bob_db)
    window.team.reload()


def test_resolving_a_conflict_with_g_keeps_an_image_current_in_the_conflicts_view(
    qtbot, make_window, photo_folder, tmp_path
):
    """Working down Show → Conflicts, R (or G, or a note) resolved the current item, which
    left the view, and then no image was current: the next key said "Nothing to label:
    select an image first" although conflicts were left."""
    window = make_window()
    scan(qtbot, window, photo_folder)
    hashes = sorted(h for h in column(window, Role.HASH) if h)[:3]
    _ai_conflicts(window, hashes, tmp_path)
    qtbot.waitUntil(lambda: len(window.results.conflicts) == 3, timeout=10_000)
    window.set_filter("conflicts")
    window.grid.setFocus()
    qtbot.mouseClick(
        window.grid.viewport(),
        Qt.MouseButton.LeftButton,
        pos=window.grid.visualRect(window.results.index(0)).center(),
    )
    first = window.grid.currentIndex().data(Role.HASH)
    assert first in hashes

    qtbot.keyClick(window.grid, Qt.Key.Key_R)  # resolves it: it leaves the view
    settle(qtbot, window)
    qtbot.waitUntil(lambda: window.results.rowCount() == 2, timeout=10_000)
    current = window.grid.currentIndex()
    assert current.isValid() and current.data(Role.HASH) in set(hashes) - {first}

    qtbot.keyClick(window.grid, Qt.Key.Key_R)  # and the next key acts on that one
    settle(qtbot, window)
    qtbot.waitUntil(lambda: window.results.rowCount() == 1, timeout=10_000)
    assert "Nothing to label" not in window.status.text()
    assert window.grid.currentIndex().isValid()


def test_a_detector_that_fails_to_load_is_said_from_the_windows_thread(
    qtbot, make_window, folder, model_dir
):
    """A detector that could not load (a hub id offline, a broken folder) was reported by a
    lambda, which ran on the scan thread and touched the status bar from there (Qt: "Cannot
    create children for a parent that is in a different thread"); so did "Loading …"."""
    import threading

    window = make_window()
    window.settings.detectors = [
        {"model": str(model_dir), "threshold": 0.5, "enabled": True},
        {"model": "org/not-downloaded-detector", "threshold": 0.5, "enabled": True},
    ]
    threads: dict[str, set[str]] = {"say": set(), "status": set()}
    say, set_text = window._say, window.status.setText

    def recording_say(text: str) -> None:
        threads["say"].add(threading.current_thread().name)
        say(text)

    def recording_set_text(text: str) -> None:
        threads["status"].add(threading.current_thread().name)
        set_text(text)

    window._say = recording_say
    window.status.setText = recording_set_text
    said = []
    window.statusBar().messageChanged.connect(said.append)
    scan(qtbot, window, folder)
    qtbot.waitUntil(lambda: any("A detector was left out" in s for s in said), timeout=10_000)
    main = threading.main_thread().name
    assert threads["say"] == {main} and threads["status"] == {main}


def test_settings_say_a_model_chosen_in_scores_from_is_in_use_from_there(
    qtbot, make_window, folder, model_dir, tmp_path
):
    """After switching Scores from to another model (or training one, which the desk then
    shows), Settings said it was in use as "the primary detector, from Settings →
    Detectors", while the Detectors list right below named another model."""
    from nsfw_desk.synthetic import save_random_model

    window = make_window()
    window.settings.detectors = [{"model": str(model_dir), "threshold": 0.5, "enabled": True}]
    other_dir = save_random_model(tmp_path / "other-model", seed=7)
    window.model_override = str(other_dir)
    scan(qtbot, window, folder)
    other = window.model_id
    window.model_override = None
    scan(qtbot, window, folder)
    assert window.model_id != other
    assert "Settings → Detectors" in window._model_in_use()
    qtbot.waitUntil(lambda: other in window.switcher.choices, timeout=10_000)

    window.switch_model(other)
    qtbot.waitUntil(lambda: window.model_id == other, timeout=10_000)
    said = window._model_in_use()
    assert "Settings → Detectors" not in said and "Scores from" in said
    assert said.startswith(window.model_name(other))


def test_show_sort_and_tag_stay_on_the_toolbar_with_detectors_and_long_counts(
    qtbot, make_window, folder, model_dir
):
    """At the desk's first size (1280 px) with a second detector's controls on the toolbar,
    counts that grew with the work ("33 files reviewed (32 distinct images)") pushed Sort
    and the Tag box into the toolbar's overflow menu, out of sight."""
    window, _ = two_detector_window(make_window, qtbot, folder, model_dir)
    window.show()
    window.resize(1280, 800)
    long = "21 flagged of 48 files · 33 files reviewed (32 distinct images) · 1 error"
    window.counts_label.setText(f"  {long}  ")
    window.counts_label.parentWidget().layout().activate()  # lay the toolbar out now
    assert window.sort_box.isVisible() and window.tags.filter_box.isVisible()
    assert window.filter_box.isVisible() and window.detectors_view.choice.isVisible()
    assert window.counts_label.text().strip() == long  # whole for tests and screen readers
    assert window.counts_label.toolTip() == long  # and for the moderator, where it is cut


def test_another_show_filter_makes_its_first_item_current_when_the_current_one_left(
    qtbot, make_window, folder
):
    """Picking Show → Conflicts, Labelled real, Hash list matches… from an image the new
    view leaves out left no image current: the next U said "Nothing to label: select an
    image first" over a grid of images."""
    window = make_window()
    window.show()
    scan(qtbot, window, folder)
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_U)  # labels the first, moves on to the next
    settle(qtbot, window)
    labelled = window.results.index(0).data(Role.PATH)
    assert window.grid.currentIndex().data(Role.PATH) != labelled

    window.filter_box.setCurrentIndex(window.filter_box.findData("reviewed"))
    assert column(window, Role.PATH) == [labelled]
    assert window.grid.currentIndex().data(Role.PATH) == labelled
    assert window.detail.path == labelled
    qtbot.keyClick(window.grid, Qt.Key.Key_S)  # acts on it
    settle(qtbot, window)
    assert window.results.index(0).data(Role.LABEL) == "safe"
    assert "Nothing to label" not in window.statusBar().currentMessage()


def test_no_menu_has_two_items_on_one_alt_letter(qtbot, make_window):
    """Review had Train… and Tags… on T, Next unreviewed and Label real on R, Clear and
    the most uncertain on C, Next image and Add a note on N: Alt+letter then cycled instead
    of choosing."""
    from PySide6.QtWidgets import QMenu

    window = make_window()
    clashes = []

    def walk(menu: QMenu) -> None:
        letters: dict[str, str] = {}
        for action in menu.actions():
            text = action.text()
            at = text.replace("&&", "").find("&")
            if at >= 0:
                letter = text.replace("&&", "")[at + 1].lower()
                if letter in letters:
                    clashes.append((menu.title(), letters[letter], text))
                letters[letter] = text
            if action.menu():
                walk(action.menu())

    for action in window.menuBar().actions():
        walk(action.menu())
    assert clashes == [], "\n".join(map(str, clashes))


def test_a_score_under_the_threshold_never_reads_as_the_threshold():
    """An unflagged 0.4996 read "0.50" on its tile beside a threshold of 0.50."""
    from nsfw_desk.gui.tiles import score_text

    assert score_text(0.4996, 0.5) == "0.49"
    assert score_text(0.5, 0.5) == "0.50"  # flagged: as it is
    assert score_text(0.4996, 0.6) == "0.50"  # far from the threshold: rounded as usual
    assert score_text(0.123, 0.5) == "0.12" and score_text(0.996, 0.5) == "1.00"
