"""Notes on decisions and tags on contents: stored append-only, shown, filtered, exported."""

from __future__ import annotations

import csv
import json

import pytest

from nsfw_desk.core.export import ExportOptions, export_dataset
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import write_photo


def test_a_note_is_stored_with_its_decision(library):
    reviews = ReviewStore(library)
    reviews.decide([DecisionInput("h1")], "unsafe", reviewer="ann", threshold=0.5)
    reviews.decide(
        [DecisionInput("h1")], "unsafe", reviewer="ann", threshold=0.5, note="  looks\nunder 18 "
    )
    history = reviews.history("h1")
    assert [(d.label, d.note) for d in history] == [("unsafe", None), ("unsafe", "looks under 18")]
    assert reviews.current_labels() == {"h1": "unsafe"}  # a note changes no label
    # A note on an unreviewed item keeps it unreviewed (a NULL label is no label).
    reviews.decide([DecisionInput("h2")], None, reviewer="ann", threshold=0.5, note="ask Bo")
    assert reviews.current_labels() == {"h1": "unsafe"}
    assert reviews.latest_notes() == {"h1": "looks under 18", "h2": "ask Bo"}
    # A later decision without a note keeps the latest note as the item's note.
    reviews.decide([DecisionInput("h1")], "safe", reviewer="ann", threshold=0.5)
    assert reviews.latest_notes(["h1"]) == {"h1": "looks under 18"}


def test_tags_are_append_only_with_history(library):
    reviews = ReviewStore(library)
    assert reviews.set_tag(["h1", "h2"], " Escalate ", added=True, reviewer="ann") == "escalate"
    reviews.set_tag(["h1"], "minor?", added=True, reviewer="ann")
    reviews.set_tag(["h2"], "escalate", added=False, reviewer="bo")
    assert reviews.tags() == {"h1": ["escalate", "minor?"]}
    assert reviews.tags(["h2", "h3"]) == {}
    assert reviews.tag_counts() == {"escalate": 1, "minor?": 1}
    reviews.set_tag(["h2"], "escalate", added=True, reviewer="bo")
    assert reviews.tags(["h2"]) == {"h2": ["escalate"]}
    with pytest.raises(ValueError):
        reviews.set_tag(["h1"], "   ", added=True, reviewer="ann")
    with pytest.raises(Exception, match="append-only"):
        library.db.execute("DELETE FROM tags")


def test_notes_and_tags_are_exported(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    for i in range(4):
        write_photo(root / f"p{i}.jpg", (64, 48), seed=300 + i)
    found = scan_folder(root, loaded_model, library, keep_outcomes=True).outcomes
    items = [DecisionInput(o.hash, loaded_model.model_id, o.score, o.path) for o in found]
    reviews = ReviewStore(library)
    reviews.decide(items, "unsafe", reviewer="ann", threshold=0.5)
    reviews.decide(items[:1], "unsafe", reviewer="ann", threshold=0.5, note="check; twice")
    reviews.set_tag([items[0].hash], "escalate", added=True, reviewer="ann")
    reviews.set_tag([items[0].hash], "minor?", added=True, reviewer="ann")
    out = tmp_path / "out"
    export_dataset(library, ExportOptions(out=out))
    lines = (out / "metadata.jsonl").read_text("utf-8").splitlines()
    rows = {r["hash"]: r for r in map(json.loads, lines)}
    assert rows[items[0].hash]["note"] == "check; twice"
    assert rows[items[0].hash]["tags"] == ["escalate", "minor?"]
    assert rows[items[1].hash]["note"] == "" and rows[items[1].hash]["tags"] == []
    with (out / "labels.csv").open(newline="") as fh:
        csv_rows = {r["hash"]: r for r in csv.DictReader(fh)}
    assert csv_rows[items[0].hash]["tags"] == "escalate; minor?"
    assert csv_rows[items[0].hash]["note"] == "check; twice"


# --- the desk -------------------------------------------------------------------------------


def _in_dialog(qtbot, kind, act):
    """Run `act(dialog)` on the next modal dialog of `kind` once it shows (exec blocks)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    def poke():
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, kind):
            act(dialog)
        else:
            QTimer.singleShot(20, poke)

    QTimer.singleShot(20, poke)


def _press(qtbot, window, key, modifier=None):
    from PySide6.QtCore import Qt

    window.activateWindow()  # a closed dialog leaves no active window offscreen
    window.grid.setFocus()
    qtbot.keyClick(window.grid, key, modifier or Qt.KeyboardModifier.NoModifier)


def test_shift_n_notes_the_current_item_with_its_label(qtbot, make_window, folder, stored):
    from desk import scan, settle
    from PySide6.QtCore import Qt

    from nsfw_desk.gui.grid import Role
    from nsfw_desk.gui.notes import NoteDialog

    window = make_window(auto_advance=False)
    window.show()
    scan(qtbot, window, folder)
    window._select_row(0)
    window.grid.setFocus()
    _press(qtbot, window, Qt.Key.Key_U)
    digest = window.grid.currentIndex().data(Role.HASH)

    def write(dialog):
        dialog.field.setText("looks under 18")
        qtbot.keyClick(dialog.field, Qt.Key.Key_Return)

    _in_dialog(qtbot, NoteDialog, write)
    _press(qtbot, window, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    reviews = stored(window)
    qtbot.waitUntil(lambda: len(reviews.history(digest)) == 2)
    settle(qtbot, window)
    history = reviews.history(digest)
    assert [(d.label, d.note) for d in history] == [("unsafe", None), ("unsafe", "looks under 18")]
    qtbot.waitUntil(lambda: "note: looks under 18" in window.detail.history.toPlainText())
    assert window.grid.currentIndex().data(Role.LABEL) == "unsafe"

    # On an unreviewed item the note is recorded and the item stays unreviewed.
    window._select_row(1)
    other = window.grid.currentIndex().data(Role.HASH)
    _in_dialog(qtbot, NoteDialog, lambda d: (d.field.setText("ask Bo"), d.accept()))
    window.notes.add_note()  # the menu's action, as Review → Add a note… runs it
    qtbot.waitUntil(lambda: reviews.history(other) != [])
    assert [(d.label, d.note) for d in reviews.history(other)] == [(None, "ask Bo")]
    assert other not in reviews.current_labels()
    assert window.grid.currentIndex().data(Role.LABEL) is None


def test_t_tags_items_shown_on_tiles_filtered_and_removed(qtbot, make_window, folder, stored):
    from desk import column, scan, settle
    from PySide6.QtCore import Qt

    from nsfw_desk.gui.grid import Role
    from nsfw_desk.gui.tags import TagEditor

    window = make_window(auto_advance=False)
    window.show()
    scan(qtbot, window, folder)
    window._select_row(2)
    window.grid.setFocus()
    digest = window.grid.currentIndex().data(Role.HASH)

    def add_two(dialog):
        for tag in ("Escalate", "minor?"):
            qtbot.keyClicks(dialog.field, tag)
            qtbot.keyClick(dialog.field, Qt.Key.Key_Return)
            assert dialog.isVisible()  # Enter adds a tag and leaves the editor open
        dialog.reject()

    _in_dialog(qtbot, TagEditor, add_two)
    _press(qtbot, window, Qt.Key.Key_T)
    assert window.grid.currentIndex().data(Role.TAGS) == ("escalate", "minor?")  # at once
    settle(qtbot, window)
    assert stored(window).tags() == {digest: ["escalate", "minor?"]}
    qtbot.waitUntil(lambda: "escalate · minor?" in window.detail.tags_label.text())

    total = window.results.rowCount()
    window.tags.set_filter("escalate")
    assert column(window, Role.HASH) == [digest]
    assert window.tags.filter_box.currentText() == "escalate (1)"
    window.tags.set_filter(None)
    assert window.results.rowCount() == total

    def remove_one(dialog):
        from PySide6.QtWidgets import QPushButton

        dialog.findChild(QPushButton, "tag:minor?").click()
        dialog.reject()

    _in_dialog(qtbot, TagEditor, remove_one)
    window.tags.edit()  # Review → Tags…
    settle(qtbot, window)
    assert stored(window).tags() == {digest: ["escalate"]}

    # Another window on the same library reads the tags back for its tiles.
    again = make_window(library_path=window.library_path)
    scan(qtbot, again, folder)
    qtbot.waitUntil(lambda: ("escalate",) in column(again, Role.TAGS))


def test_the_tile_paints_its_tags(qtbot, make_window, folder):
    from desk import scan
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QStyleOptionViewItem

    from nsfw_desk.gui.grid import Role

    window = make_window()
    scan(qtbot, window, folder)
    index = window.results.index(0)

    def paint(tags):
        window.results.set_tags({index.data(Role.HASH): tags} if tags else {}, None)
        image = QImage(window.delegate.tile_size(), QImage.Format.Format_RGB32)
        image.fill(0)
        option = QStyleOptionViewItem()
        option.rect = image.rect()
        option.font = window.font()
        option.palette = window.palette()
        painter = QPainter(image)
        window.delegate.hide_all = True  # no thumbnail: only the tag strip differs
        window.delegate.paint(painter, option, window.results.index(0))
        painter.end()
        return image

    assert paint(("escalate",)) != paint(())
