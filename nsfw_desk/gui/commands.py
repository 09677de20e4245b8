"""Undoable review actions: each step appends decisions to the store, nothing is deleted."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QUndoCommand

from nsfw_desk.core.review import DecisionInput, ReviewStore

LabelsChanged = Callable[[dict[str, str | None]], None]


class DecisionCommand(QUndoCommand):
    """Label some items; undo re-applies each item's previous label as a new decision."""

    def __init__(
        self,
        reviews: ReviewStore,
        items: list[DecisionInput],
        label: str | None,
        *,
        reviewer: str,
        threshold: float,
        on_change: LabelsChanged,
    ) -> None:
        name = {"unsafe": "Mark unsafe", "safe": "Mark safe", None: "Clear label"}[label]
        super().__init__(f"{name} ({len(items)})" if len(items) > 1 else name)
        self.reviews, self.items, self.label = reviews, items, label
        self.reviewer, self.threshold, self.on_change = reviewer, threshold, on_change
        self.previous = reviews.previous_labels([i.hash for i in items])
        self.last_ids: list[int] = []

    def redo(self) -> None:
        self.last_ids = self.reviews.decide(
            self.items, self.label, reviewer=self.reviewer, threshold=self.threshold
        )
        self.on_change({i.hash: self.label for i in self.items})

    def undo(self) -> None:
        changes = [(i, self.previous.get(i.hash)) for i in self.items]
        self.reviews.apply_labels(
            changes, reviewer=self.reviewer, threshold=self.threshold, undo_of=self.last_ids
        )
        self.on_change({i.hash: label for i, label in changes})
