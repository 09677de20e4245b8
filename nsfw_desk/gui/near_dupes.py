"""Near-duplicates in the desk: found on the read thread, offered in a bar that takes no focus.

A moderator who labels one image is offered its unlabelled near-duplicates (PDQ distance
within `dupes.DEFAULT_MAX_DISTANCE`, quality at least `dupes.MIN_QUALITY`) for the same label:
Y accepts, Esc or moving on dismisses. The folder's PDQ hashes are read once per folder load
and kept here; each lookup runs on the read thread, so the window never waits on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton

from nsfw_desk.core import dupes
from nsfw_desk.gui.library_tasks import LibraryReads


class NearDuplicateFinder:
    """The near-duplicates of a content among a folder's files, from a per-folder cache."""

    def __init__(self, reads: LibraryReads) -> None:
        self.reads = reads
        self._folder: Path | None = None
        self._hashes: tuple | None = None  # Library.pdq_hashes(folder), once read

    def forget(self) -> None:
        """A new folder or a finished scan: the hashes are read again on the next lookup."""
        self._folder, self._hashes = None, None

    def find(self, folder: Path, content_hash: str, on_found: Callable[[list[str]], None]) -> None:
        cached = self._hashes if self._folder == folder else None

        def job(library):
            data = cached if cached is not None else library.pdq_hashes(folder)
            return data, dupes.near_duplicates_of(*data, content_hash)

        def done(result) -> None:
            data, found = result
            if self._folder is None or self._folder == folder:
                self._folder, self._hashes = folder, data
            on_found(found)

        self.reads.query(job, done)


class OfferBar(QFrame):
    """ "7 near-duplicates — label them unsafe too?" above the grid; its buttons take no focus,
    so the grid keeps the review keys (the window routes Y and Esc here while it shows)."""

    accepted = Signal()
    dismissed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("near-duplicates-offer")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.text = QLabel()
        self.yes = QPushButton("&Yes (Y)")
        self.no = QPushButton("Dismiss (Esc)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        layout.addWidget(self.text, 1)
        for button in (self.yes, self.no):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            layout.addWidget(button)
        self.yes.clicked.connect(self.accept)
        self.no.clicked.connect(self.dismiss)
        self.label: str | None = None
        self.hashes: list[str] = []
        self.hide()

    def offer(self, label: str, hashes: list[str]) -> None:
        self.label, self.hashes = label, list(hashes)
        count = len(hashes)
        what = f"{count} near-duplicate{'s' if count != 1 else ''}"
        pronoun = "them" if count != 1 else "it"
        self.text.setText(f"{what} — label {pronoun} {label} too?  [Y]es / [Esc]")
        self.show()

    def accept(self) -> None:
        if self.isVisible():
            self.hide()
            self.accepted.emit()

    def dismiss(self) -> None:
        if self.isVisible():
            self.hide()
            self.dismissed.emit()
