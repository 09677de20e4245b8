"""Near-duplicates in the desk: found on the read thread, offered in a bar that takes no focus.

A moderator who labels one image is offered its unlabelled near-duplicates (PDQ distance
within `dupes.DEFAULT_MAX_DISTANCE`, quality at least `dupes.MIN_QUALITY`) for the same label:
Y accepts, Esc or moving on dismisses. The folder's PDQ hashes are read once per folder load
and kept here; each lookup runs on the read thread, so the window never waits on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy

from nsfw_desk.core import dupes
from nsfw_desk.gui.library_tasks import LibraryReads

OFFER_NAMES = 3  # the offer names this many near-duplicates, then says how many more
THIS_ONE = "this one"  # the offer's name for a near-duplicate that is the current item


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
        # A long list of names is cut at the bar's edge, never widens the window.
        self.text.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
        self.source = ""  # the name of the file whose decision the offer follows
        self.hide()

    def offer(
        self, label: str, hashes: list[str], *, source: str = "", names: Sequence[str] = ()
    ) -> None:
        """Offer `label` for `hashes`, the near-duplicates of `source` (a file's name);
        `names` are theirs as the moderator reads them ("this one" for the current item).
        Y labels exactly these hashes: the bar says which, so nothing else is expected."""
        self.label, self.hashes, self.source = label, list(hashes), source
        count = len(hashes)
        what = f"{count} near-duplicate{'s' if count != 1 else ''}"
        if source:
            what += f" of {source}"
        if names:
            listed = ", ".join(names[:OFFER_NAMES])
            more = len(names) - OFFER_NAMES
            what += f" ({listed}{f' and {more:,} more' if more > 0 else ''})"
        pronoun = "them" if count != 1 else "it"
        self.text.setText(f"{what} — label {pronoun} {label} too?  [Y]es / [Esc]")
        self.text.setToolTip("\n".join(names))
        self.show()

    def accept(self) -> None:
        if self.isVisible():
            self.hide()
            self.accepted.emit()

    def dismiss(self) -> None:
        if self.isVisible():
            self.hide()
            self.dismissed.emit()
