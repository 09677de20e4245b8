"""A note on the current item: one line of context stored with a decision.

Shift+N opens a one-line field for the current item; Enter saves, Esc cancels. The note is
written as a decision that repeats the item's current label (shown label, so a decision
still on its way counts), through the window's write thread like every decision: the log
stays the one record of who said what and when, and a note never changes a label. On an
unreviewed item that decision has no label, so the item stays unreviewed. Notes are not on
the undo stack: undo is for labels, and a wrong note is corrected by a new one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout

from nsfw_desk.core.review import MAX_NOTE, DecisionInput
from nsfw_desk.gui.grid import Role

if TYPE_CHECKING:
    from nsfw_desk.gui.main_window import MainWindow

NOTE_KEY = "Shift+N"


class NoteDialog(QDialog):
    """One line for a note; the item's latest note, if any, is there to edit."""

    def __init__(self, name: str, current: str = "", parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Note")
        self.field = QLineEdit(current)
        self.field.setMaxLength(MAX_NOTE)
        self.field.setPlaceholderText("e.g. looks under 18, ask the lead")
        self.field.setMinimumWidth(420)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.field.returnPressed.connect(self.accept)
        layout = QVBoxLayout(self)
        title = QLabel(f"Note on <b>{_escape(name)}</b>, saved with its decision:")
        title.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(title)
        layout.addWidget(self.field)
        layout.addWidget(buttons)

    def text(self) -> str:
        return self.field.text().strip()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Notes:
    """The window's note key: reads the latest note, opens the field, sends the write."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self._pending: set[int] = set()
        window.writes.saved.connect(self._on_saved)

    def add_note(self) -> None:
        index = self.window.grid.currentIndex()
        digest = index.data(Role.HASH) if index.isValid() else None
        if not digest or index.data(Role.ERROR):
            self.window.status.setText("Select an image to add a note to it")
            return
        item = DecisionInput(
            digest, self.window.model_id, index.data(Role.SCORE), index.data(Role.PATH)
        )
        label = index.data(Role.LABEL)
        name = index.data() or ""

        def read(library):
            from nsfw_desk.core.review import ReviewStore

            return ReviewStore(library).latest_notes([digest]).get(digest, "")

        self.window.reads.query(read, lambda current: self._ask(item, label, name, current))

    def _ask(self, item: DecisionInput, label: str | None, name: str, current: str) -> None:
        dialog = NoteDialog(name, current, self.window)
        if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.text():
            return
        if dialog.text() == current:
            return  # nothing new to record
        self.save(item, label, dialog.text())

    def save(self, item: DecisionInput, label: str | None, note: str) -> int:
        """Record `note` with a decision repeating `label`; the detail pane shows it once saved."""
        ticket = self.window.writes.decide(
            [item],
            label,
            reviewer=self.window.settings.reviewer,
            threshold=self.window.results.threshold,
            note=note,
        )
        self._pending.add(ticket)
        self.window.status.setText("Note saved with the decision" if label else "Note saved")
        return ticket

    def _on_saved(self, ticket: int, _labels: dict) -> None:
        if ticket in self._pending:
            self._pending.discard(ticket)
            self.window._show_detail()
