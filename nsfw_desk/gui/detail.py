"""The detail pane: the selected image larger (blurred unless revealed), facts and history."""

from __future__ import annotations

import html
import math
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from nsfw_desk.core.paths import display_path
from nsfw_desk.core.store import model_display_name
from nsfw_desk.core.units import format_size
from nsfw_desk.gui.thumbnails import ThumbnailCache
from nsfw_desk.gui.tiles import score_text

PREVIEW_MIN_HEIGHT = 160
CONCEPTS_TOOLTIP = (
    "The Stable Diffusion safety checker compares the image with 17 concepts and 3 "
    "special-care concepts whose names were never published, so they are shown by slot "
    "number (0-16, 0-2) with their margin over the threshold; any special-care hit lowers "
    "every concept threshold by 0.01, and any concept above its threshold flags the image."
)


class DetailPane(QWidget):
    reveal_requested = Signal(bool)  # pressed (True) / released (False) on the preview

    def __init__(self, thumbnails: ThumbnailCache, parent=None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.hash: str | None = None
        self.path: Path | None = None
        self.revealed = False
        self.hide_all = False
        self.heat = None  # core.explain.HeatMap of `heat_for`
        self.heat_for: str | None = None
        self.heat_visible = False

        self.preview = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(QSize(240, PREVIEW_MIN_HEIGHT))
        self.preview.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.preview.setStyleSheet("background: #30333a; color: #c8ccd4;")
        self.preview.setToolTip("Press and hold (or hold Space) to reveal")
        self.preview.mousePressEvent = lambda e: self.reveal_requested.emit(True)
        self.preview.mouseReleaseEvent = lambda e: self.reveal_requested.emit(False)

        self.heat_label = QLabel(wordWrap=True)  # which detector and class the map shows
        self.heat_label.setObjectName("heat")
        self.heat_label.hide()
        self.path_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        # A path segment longer than the pane cannot wrap: it is clipped (the tooltip has it
        # all) instead of widening the facts past the pane.
        self.path_label.setMinimumWidth(1)
        self.size_label = QLabel()
        self.dims_label = QLabel()
        self.scores_label = QLabel(wordWrap=True)
        self.why_label = QLabel(wordWrap=True)  # the safety checker's slots that fired
        self.why_label.setObjectName("why")
        self.why_label.setToolTip(CONCEPTS_TOOLTIP)
        self.label_label = QLabel()
        self.ai_label = QLabel()  # the independent AI-generated label (G/R)
        self.tags_label = QLabel(wordWrap=True)
        self.tags_label.setObjectName("tags")
        # Reviewers whose labels differ (gui/team.py); shown only for a conflict.
        self.reviewers_label = QLabel(wordWrap=True)
        self.reviewers_label.setObjectName("reviewers")
        self.history = QPlainTextEdit(readOnly=True)
        self.history.setMaximumHeight(140)
        self.show_button = QPushButton("Show in folder")
        self.show_button.clicked.connect(self.show_in_folder)

        layout = QVBoxLayout(self)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.heat_label)
        layout.addWidget(self._facts_area())
        layout.addWidget(self.show_button)
        self.show_item(None)
        thumbnails.changed.connect(self._thumbnail_arrived)

    def _facts_area(self) -> QScrollArea:
        """Facts and history scroll under the preview: a long path wraps to more lines than
        the layout's minimum size allows for, and must never be painted over by the preview."""
        facts = QWidget()
        form = self._form = QFormLayout(facts)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("File", self.path_label)
        form.addRow("Size", self.size_label)
        form.addRow("Dimensions", self.dims_label)
        form.addRow("Scores", self.scores_label)
        form.addRow("Why", self.why_label)
        form.addRow("Label", self.label_label)
        form.addRow("AI-generated", self.ai_label)
        form.addRow("Tags", self.tags_label)
        form.addRow("Conflict", self.reviewers_label)
        self._reviewers_row = form.rowCount() - 1
        self._form = form
        form.setRowVisible(self._reviewers_row, False)
        form.addRow(QLabel("Decision history"))
        form.addRow(self.history)
        area = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
        # Not a Tab stop: it shows no focus, and the arrow keys would then scroll it unseen
        # instead of moving in the grid (the history box and the button remain stops).
        area.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(facts)
        # The preview takes the room left once the facts have what they ask for.
        area.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        # Room for a path of four lines and the Size row at the window's minimum size.
        area.setMinimumHeight(9 * self.fontMetrics().lineSpacing())
        return area

    def show_item(
        self,
        path: Path | None,
        content_hash: str | None = None,
        *,
        facts: dict | None = None,
        scores: dict[str, float] | None = None,
        label: str | None = None,
        error: str | None = None,
        history: list | None = None,
        tags: tuple[str, ...] | list[str] = (),
        model_names: dict[str, str] | None = None,
        details: dict[str, dict] | None = None,
        ai_generated: bool | None = None,
    ) -> None:
        self.path, self.hash, self.revealed = path, content_hash, False
        if content_hash != self.heat_for:
            self.heat, self.heat_for = None, None
            self.heat_label.setText("")
        self.show_button.setEnabled(path is not None)
        self.path_label.setText(display_path(path) if path else "No image selected")
        self.path_label.setToolTip(display_path(path) if path else "")
        facts = facts or {}
        size = facts.get("size")
        self.size_label.setText(format_size(size) if size is not None else "")
        w, h = facts.get("width"), facts.get("height")
        self.dims_label.setText(f"{w} × {h} {facts.get('format') or ''}" if w and h else "")
        if error:
            self.scores_label.setText(f"<span style='color:#b3261e'>{error}</span>")
        else:
            self.scores_label.setText(
                "<br>".join(
                    f"{score:.3f} — {(model_names or {}).get(model) or _short(model)}"
                    for model, score in (scores or {}).items()
                    if score is not None and not math.isnan(score)
                )
            )
        why = [
            checker_line(d, (model_names or {}).get(m) or _short(m))
            for m, d in (details or {}).items()
            if d and "concepts" in d
        ]
        self.why_label.setText("\n".join(why))
        self._form.setRowVisible(self.why_label, bool(why))
        self.label_label.setText({"unsafe": "Unsafe", "safe": "Safe"}.get(label, "Not reviewed"))
        self.set_ai_label(ai_generated if path is not None else None)
        self.tags_label.setText(" · ".join(tags) if tags else "none (T to add)")
        self.history.setPlainText(
            "\n".join(
                f"{d.decided_at}  {_what(d)}  by {d.reviewer}"
                + (
                    f"  (score {score_text(d.score, d.threshold)} at threshold {d.threshold:.2f})"
                    if d.score is not None and d.threshold is not None
                    else ""
                )
                + (f"\n    note: {d.note}" if getattr(d, "note", None) else "")
                for d in (history or [])
            )
        )
        self._paint_preview()

    def set_ai_label(self, generated: bool | None) -> None:
        """The AI-generated label as the moderator set it with G or R (or not yet)."""
        self.ai_label.setText(
            {True: "Yes (G)", False: "No, real (R)"}.get(generated, "not labelled (G / R)")
        )

    def set_reviewers(self, reviewers: dict[str, str] | None) -> None:
        """Each reviewer's label of a conflict, or None to hide the row."""
        shown = dict(reviewers) if reviewers else None
        if shown == getattr(self, "_reviewers_shown", None):
            return  # called on every grid layout change: no relayout when nothing changed
        self._reviewers_shown = shown
        if reviewers:
            self.reviewers_label.setText(
                "<span style='color:#b3261e'>"
                + html.escape(", ".join(f"{name}: {label}" for name, label in reviewers.items()))
                + "</span> — your decision resolves it"
            )
        self._form.setRowVisible(self._reviewers_row, bool(reviewers))

    def set_revealed(self, revealed: bool) -> None:
        self.revealed = revealed
        self._paint_preview()

    def set_heat_visible(self, visible: bool) -> None:
        """H: draw the heat map over the preview (when one has arrived for this item)."""
        self.heat_visible = visible
        self.heat_label.setVisible(visible)
        if visible and self.heat is not None:
            self.heat_label.setText(self.heat.describe())
        self._paint_preview()

    def set_heat(self, content_hash: str, heat) -> None:
        """A heat map arrived from the worker; kept only if it is for the item shown."""
        if content_hash != self.hash:
            return
        self.heat, self.heat_for = heat, content_hash
        self.heat_label.setText(heat.describe())
        self._paint_preview()

    def set_heat_text(self, text: str) -> None:
        self.heat_label.setText(text)

    def set_hide_all(self, hidden: bool) -> None:
        self.hide_all = hidden
        self._paint_preview()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._paint_preview()

    def _thumbnail_arrived(self, content_hash: str) -> None:
        if content_hash == self.hash:
            self._paint_preview()

    def _paint_preview(self) -> None:
        pixmap: QPixmap | None = None
        if self.hash and not self.hide_all:
            pixmap = (
                self.thumbnails.original(self.hash)
                if self.revealed
                else self.thumbnails.blurred(self.hash)
            )
        if pixmap is None or pixmap.isNull():
            self.preview.setPixmap(QPixmap())
            self.preview.setText("Hidden" if self.hide_all else "")
            return
        shown = pixmap.scaled(
            self.preview.size(),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        if self.heat_visible and self.heat is not None and self.heat_for == self.hash:
            from nsfw_desk.gui.heatmap import overlay_heat

            shown = overlay_heat(shown, self.heat)
        self.preview.setPixmap(shown)

    def show_in_folder(self) -> None:
        if self.path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.path.parent)))


def checker_line(details: dict, name: str) -> str:
    """What the safety checker's margins say, e.g. `concepts 3 (+0.012) · special care 0
    (+0.002): thresholds 0.01 lower`; slots by number (the names are not published)."""
    concepts, special = details.get("concepts") or [], details.get("special") or []

    def slots(indices, margins) -> str:
        return ", ".join(f"{i} ({margins[i]:+.3f})" for i in indices if 0 <= int(i) < len(margins))

    fired, special_fired = details.get("fired") or [], details.get("special_fired") or []
    parts = [f"concepts {slots(fired, concepts)} fired" if fired else "no concept fired"]
    if concepts:
        best = max(range(len(concepts)), key=lambda i: concepts[i])
        if not fired:
            parts[0] += f" (closest: {best}, {concepts[best]:+.3f})"
    if special_fired:
        parts.append(
            f"special care {slots(special_fired, special)}: thresholds "
            f"{details.get('adjustment', 0.01):.2f} lower"
        )
    return f"{name}: " + " · ".join(parts)


def _what(decision) -> str:
    """A decision's label for the history; a note on an unreviewed item is no clearing."""
    if decision.label:
        return decision.label
    return "no label" if getattr(decision, "note", None) else "cleared"


def _short(model_id: str) -> str:
    return model_display_name(model_id)
