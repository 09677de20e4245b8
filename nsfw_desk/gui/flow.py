"""The moderator's flow: why an item cannot be labelled, and why the grid is empty.

Words for states the desk must explain, and the overlay that explains an empty grid; the
window decides when to show them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from nsfw_desk.gui.grid import FILTERS

# The error kinds of core/images.py (as the grid shows them, "_" → " "), in plain words.
_WHY = {
    "decode error": "it is not an image we could read",
    "not an image": "its content is no picture format (empty, text or another kind of file)",
    "unreadable": "the file could not be read",
    "vanished": "the file was gone when it was read",
    "too large": "it is too large to open safely",
}


def why_not_labellable(name: str, error: str | None) -> str:
    """One status-bar line saying why a key on this item did nothing."""
    if not error:
        return f"{name} can't be labelled yet: it has not been scanned"
    kind = error.split(":", 1)[0].strip()
    reason = _WHY.get(kind, "the scan could not score it")
    return f"{name} can't be labelled: {kind} — {reason}"


# What each Show filter keeps, said under "No items match" so the empty grid makes sense.
_FILTER_MEANS = {
    "flagged": "items the model scores at or above the threshold",
    "unflagged": "items the model scores below the threshold",
    "reviewed": "items you have labelled",
    "unreviewed": "scanned items without a label",
    "disagreements": "items you labelled differently from the model at this threshold",
    "errors": "files that could not be scanned",
    "models_disagree": "items the shown model and the one under 'Compare with' decide "
    "differently at this threshold (choose the other model there)",
    "hash_lists": "items a hash list matches (import one with `nsfw-desk hashlist import`)",
    "conflicts": "items reviewers labelled differently and nobody has decided since "
    "(bring their libraries in with `nsfw-desk merge`)",
    "assigned": "items `nsfw-desk assign` gave to the reviewer named in Settings",
}


def empty_grid_message(
    folder: Path | None, scanning: bool, total: int, filter_name: str
) -> tuple[str, bool]:
    """Why the grid shows nothing, and whether clearing the filter would show something."""
    filtered = filter_name != "all"
    if folder is None:
        return "Open a folder to scan (Ctrl+O), or drop one here", False
    if total:
        still = " yet" if scanning else ""
        means = _FILTER_MEANS.get(filter_name)
        detail = f"<br><small>{FILTERS[filter_name]}: {means}.</small>" if means else ""
        return f"No items match '{FILTERS[filter_name]}'{still}{detail}", filtered
    if scanning:
        if filtered:  # a filter kept from the last session may hide everything that comes
            return f"Scanning… only items that match '{FILTERS[filter_name]}' will show", True
        return "Scanning…", False
    return "This folder has no images", False


class EmptyGridHint(QWidget):
    """A message over an empty grid's viewport, with one button to show every item."""

    clear_requested = Signal()

    def __init__(self, viewport: QWidget) -> None:
        super().__init__(viewport)
        self.setObjectName("empty-hint")
        layout = QVBoxLayout(self)
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        font = self.label.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.label.setFont(font)
        self.clear_button = QPushButton("Show all")
        self.clear_button.setToolTip("Clear the Show filter (Alt+1)")
        self.clear_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.clear_button.clicked.connect(self.clear_requested)
        layout.addStretch(1)
        layout.addWidget(self.label)
        layout.addWidget(self.clear_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        viewport.installEventFilter(self)
        self.hide()

    def text(self) -> str:
        return self.label.text()

    def show_message(self, text: str | None, offer_clear: bool = False) -> None:
        """Show `text` over the viewport; None hides the hint."""
        if text is None:
            self.hide()
            return
        self.label.setText(text)
        self.clear_button.setVisible(offer_clear)
        self._fit()
        self.show()
        self.raise_()

    def _fit(self) -> None:
        parent = self.parentWidget()
        if parent is not None:
            self.setGeometry(parent.rect().adjusted(24, 24, -24, -24))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Resize:
            self._fit()
        return False
