"""The AI-generated label (issue 13): G says "AI-generated", R says "real", one undoable step
per key press (the whole selection at once), on the desk's one undo stack.

It is a second, independent decision per content beside unsafe/safe: stored append-only in
its own log (core/review.py `decide_ai`), written by the same write thread in order with the
decisions, shown on the tile ("AI" / "REAL") and filtered by Show → Labelled AI-generated /
Labelled real. Each row keeps the AI detector's model id and score when one is shown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from PySide6.QtGui import QUndoCommand

from nsfw_desk.core.result_columns import read_ai_labels
from nsfw_desk.core.review import DecisionInput
from nsfw_desk.gui.grid import Role

GENERATED_KEY = "G"
REAL_KEY = "R"
_NAMES = {True: "Label AI-generated", False: "Label real", None: "Clear AI-generated label"}


class AiLabelCommand(QUndoCommand):
    """Give items an AI-generated value; undo gives each the value it had before."""

    def __init__(
        self,
        writes,
        items: list[DecisionInput],
        generated: bool | None,
        *,
        previous: dict[str, bool | None],
        reviewer: str,
        threshold: float | None,
        on_change: Callable[[dict[str, bool | None]], None],
        on_written: Callable[[int, list[str]], None] | None = None,
    ) -> None:
        name = _NAMES[generated]
        super().__init__(f"{name} ({len(items)})" if len(items) > 1 else name)
        self.writes, self.items, self.generated = writes, items, generated
        self.previous, self.reviewer, self.threshold = previous, reviewer, threshold
        self.on_change, self.on_written = on_change, on_written
        self.last_ticket: int | None = None

    def redo(self) -> None:
        if self.last_ticket is None:
            self.last_ticket = self.writes.ai_decide(
                self.items, self.generated, reviewer=self.reviewer, threshold=self.threshold
            )
        else:
            self.last_ticket = self.writes.ai_revert(
                self.last_ticket, reviewer=self.reviewer, threshold=self.threshold
            )
        self._written()
        self.on_change({item.hash: self.generated for item in self.items})

    def undo(self) -> None:
        assert self.last_ticket is not None
        self.last_ticket = self.writes.ai_revert(
            self.last_ticket, reviewer=self.reviewer, threshold=self.threshold
        )
        self._written()
        self.on_change({item.hash: self.previous.get(item.hash) for item in self.items})

    def _written(self) -> None:
        if self.on_written is not None and self.last_ticket is not None:
            self.on_written(self.last_ticket, [item.hash for item in self.items])


class AiLabels:
    """The window's AI-generated label: keys, undoable writes, and the labels on the tiles."""

    def __init__(self, window) -> None:
        self.window = window
        self._serial = 0

    def ai_detector(self):
        """The AI detector the grid shows (its score goes with the label), or None."""
        for detector in self.window.results.detectors:
            if detector.kind == "ai-generated":
                return detector
        return None

    def decide(self, generated: bool | None) -> None:
        """Label the selection (or the current item) AI-generated, real, or clear it."""
        window = self.window
        rows = sorted(i.row() for i in window.grid.selectionModel().selectedIndexes())
        if not rows and window.grid.currentIndex().isValid():
            rows = [window.grid.currentIndex().row()]
        detector = self.ai_detector()
        primary_ai = window.results.primary_kind == "ai-generated"
        items = []
        for row in rows:
            index = window.results.index(row)
            digest = index.data(Role.HASH)
            if not digest or index.data(Role.ERROR):
                continue
            model_id, score = None, None
            if primary_ai:
                model_id, score = window.model_id, index.data(Role.SCORE)
            elif detector is not None:
                model_id = detector.model_id
                score = window.results.detector_score(detector.model_id, digest)
            items.append(
                DecisionInput(
                    digest, model_id if score is not None else None, score, index.data(Role.PATH)
                )
            )
        if not items:
            window._say("Nothing to label: select an image first")
            return
        window._moved = True
        threshold = (
            window.results.threshold
            if primary_ai
            else window.results.detector_threshold(detector.model_id)
            if detector is not None
            else None
        )
        command = AiLabelCommand(
            window.writes,
            items,
            generated,
            previous={i.hash: window.results.ai_label_of(i.hash) for i in items},
            reviewer=window.settings.reviewer,
            threshold=threshold,
            on_change=self._show,
            on_written=window.team.ai_written if hasattr(window, "team") else None,
        )
        window._pushing = True
        try:
            window.undo_stack.push(command)
        finally:
            window._pushing = False
        window._say(f"{command.text()} · Ctrl+Z undoes it")

    def _show(self, values: dict[str, bool | None], *, replace: bool = False) -> None:
        """New marks; the rows move (and the current item is kept) only under an AI filter,
        so labels that arrive late never send the moderator back to the top."""
        window = self.window
        moving = window.results.filter in ("ai_generated", "ai_real")
        with window._keeping_current(if_gone="place") if moving else contextlib.nullcontext():
            window.results.set_ai_labels(values, replace=replace)
        current = window.grid.currentIndex()
        if current.isValid():  # the detail pane says the current item's label at once
            window.detail.set_ai_label(current.data(Role.AI_LABEL))

    def load(self) -> None:
        """Read the folder's AI-generated labels (read thread) and show them on the tiles."""
        window = self.window
        folder = window.folder
        hashes = window.results.hash_snapshot()  # matched on the read thread
        self._serial += 1
        serial = self._serial

        def show(found: dict[str, bool]) -> None:
            if serial != self._serial or folder != window.folder:
                return
            self._show(found, replace=True)

        window.reads.query(lambda library: read_ai_labels(library, hashes), show)

    @staticmethod
    def paths_of(command) -> list[Path]:
        return [Path(item.source_path) for item in command.items if item.source_path]
