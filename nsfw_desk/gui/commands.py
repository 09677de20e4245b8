"""Undoable review actions: each step appends decisions through the core's review API.

A step is sent to the write thread (gui/library_tasks.py) and shown at once; redo of the
first step decides, undo reverts what that step committed (`ReviewStore.revert`), and a
later redo reverts the undo. Nothing is deleted, and the window never waits for SQLite.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QUndoCommand

from nsfw_desk.core.review import DecisionInput
from nsfw_desk.gui.library_tasks import ReviewWrites

# hash → label to show now, and the write that will confirm it
LabelsShown = Callable[[dict[str, str | None], "DecisionCommand"], None]

_NAMES = {"unsafe": "Mark unsafe", "safe": "Mark safe", None: "Clear label"}


class DecisionCommand(QUndoCommand):
    """Label some items; undo gives each item back the label it had before."""

    def __init__(
        self,
        writes: ReviewWrites,
        items: list[DecisionInput],
        label: str | None,
        *,
        previous: dict[str, str | None],
        reviewer: str,
        threshold: float,
        on_change: LabelsShown,
    ) -> None:
        name = _NAMES[label]
        super().__init__(f"{name} ({len(items)})" if len(items) > 1 else name)
        self.writes, self.items, self.label = writes, items, label
        self.previous = previous  # as the grid showed them: what undo is expected to restore
        self.reviewer, self.threshold, self.on_change = reviewer, threshold, on_change
        self.last_ticket: int | None = None  # the write whose result the next step reverts

    @property
    def hashes(self) -> list[str]:
        return [item.hash for item in self.items]

    def redo(self) -> None:
        shown = {h: self.label for h in self.hashes}
        if self.last_ticket is None:
            self.last_ticket = self.writes.decide(
                self.items, self.label, reviewer=self.reviewer, threshold=self.threshold
            )
        else:
            self.last_ticket = self._revert(shown)
        self.on_change(shown, self)

    def undo(self) -> None:
        shown = {h: self.previous.get(h) for h in self.hashes}
        self.last_ticket = self._revert(shown)
        self.on_change(shown, self)

    def _revert(self, expected: dict[str, str | None]) -> int:
        assert self.last_ticket is not None
        return self.writes.revert(
            self.last_ticket, expected, reviewer=self.reviewer, threshold=self.threshold
        )
