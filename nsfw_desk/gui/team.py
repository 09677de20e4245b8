"""Several reviewers in the desk: the Conflicts and Assigned-to-me filters (core/team.py).

Conflicts and assignments are read on the read thread when a folder's results arrive and
after each committed decision or AI-generated label (a decision on a conflict resolves it;
undoing it brings the conflict back), then handed to the grid model, which marks the tiles
(`≠ ann ✖ · ben ✓`, `≠ ann AI · ben real`) and filters by them. The detail pane says each
reviewer's label of the current item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot

from nsfw_desk.core.review import ReviewStore
from nsfw_desk.core.team import desk_conflicts
from nsfw_desk.gui.grid import Role

if TYPE_CHECKING:
    from nsfw_desk.gui.main_window import MainWindow

RELOAD_DELAY_MS = 150  # decisions in quick succession share one read


class TeamView(QObject):
    """Keeps the grid's conflicts and assignments in step with the library."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._serial = 0
        self._decided: set[str] = set()  # contents decided since the last look
        self._ai_tickets: dict[int, list[str]] = {}  # AI-generated writes → their contents
        self._timer = QTimer(self, singleShot=True, interval=RELOAD_DELAY_MS)
        self._timer.timeout.connect(self._recheck)
        window.writes.saved.connect(self._on_saved)
        # A method of this object (GUI thread), not a lambda: a lambda would run in the
        # scan worker's thread, which emits this signal.
        window.worker.worker.stored_results.connect(self._on_stored_results)
        window.grid.selectionModel().currentChanged.connect(lambda *_: self.show_current())
        window.results.modelReset.connect(self.show_current)
        window.results.layoutChanged.connect(self.show_current)

    def reload(self) -> None:
        """Read the conflicts and my assigned contents, then show them."""
        self._serial += 1
        serial = self._serial
        reviewer = self.window.settings.reviewer

        def read(library):
            mine = {h for h, _ in library.assignments(reviewer)}
            return desk_conflicts(ReviewStore(library)), mine

        def show(found) -> None:
            if serial != self._serial:
                return  # a newer read is on its way
            with self.window._keeping_current():
                self.window.results.set_team(*found)
            self.show_current()

        self.window.reads.query(read, show)

    @Slot(object, str, list, dict)
    def _on_stored_results(self, *_args) -> None:
        self.reload()

    def ai_written(self, ticket: int, hashes: list[str]) -> None:
        """An AI-generated label write (gui/ai_label.py): once saved, it may resolve (or
        make) an AI-generated-label conflict; `saved` names no contents for it."""
        self._ai_tickets[ticket] = hashes

    def _on_saved(self, ticket: int, labels: dict) -> None:
        labels = dict(labels) | dict.fromkeys(self._ai_tickets.pop(ticket, []))
        if labels:  # care counters and tags change no label
            self._decided.update(labels)
            self._timer.start()

    def _recheck(self) -> None:
        """Conflicts of the contents decided since the last look only: a decision resolves
        one (or, changing a label another reviewer gave, makes one)."""
        hashes, self._decided = set(self._decided), set()
        serial = self._serial

        def show(found: dict[str, dict[str, str]]) -> None:
            if serial != self._serial:
                return  # a whole reload is on its way
            merged = {h: by for h, by in self.window.results.conflicts.items() if h not in hashes}
            with self.window._keeping_current(if_gone="place"):
                self.window.results.set_team(merged | found, self.window.results.assigned)
            self.show_current()

        self.window.reads.query(lambda library: desk_conflicts(ReviewStore(library), hashes), show)

    def show_current(self) -> None:
        """The detail pane's conflict line for the current item."""
        index = self.window.grid.currentIndex()
        self.window.detail.set_reviewers(index.data(Role.REVIEWERS) if index.isValid() else None)
