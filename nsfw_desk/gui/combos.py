"""Combo boxes that keep the toolbar on screen: as wide as a few characters, whatever their
items, with an open list wide enough to show every item whole."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox


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
