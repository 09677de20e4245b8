"""Combo boxes (and a label) that keep the toolbar on screen: combo boxes as wide as a few
characters, whatever their items, with an open list wide enough to show every item whole."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QComboBox, QLabel, QSizePolicy


def narrow_combo(characters: int) -> QComboBox:
    """A combo box as wide as `characters`: a model's or detector's title is long, and a box
    sized to it pushed Show, Sort and Tag off the toolbar (or widened the window)."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(characters)
    box.currentTextChanged.connect(box.setToolTip)  # the whole title, where it is cut short
    return box


def fit_popup(box: QComboBox) -> None:
    """The open list shows every title whole (call after changing the items)."""
    metrics = box.view().fontMetrics()
    widest = max(
        (metrics.horizontalAdvance(box.itemText(i)) for i in range(box.count())), default=0
    )
    box.view().setMinimumWidth(widest + 32)


class ElidedLabel(QLabel):
    """A toolbar label that gives up width before the controls after it do: its text is
    cut short with "…" (whole in the tooltip) when the window is narrow. The counts grow
    with the work ("33 files reviewed (32 distinct images)") and pushed Sort and Tag into
    the toolbar's overflow menu at 1280 px."""

    def __init__(self, least_characters: int = 12) -> None:
        super().__init__()
        self._least = least_characters
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt API)
        super().setText(text)
        self.setToolTip(text.strip())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = super().minimumSizeHint()
        return QSize(self.fontMetrics().averageCharWidth() * self._least, hint.height())

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(
            rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text
        )
