"""How the desk looks: nothing overlaps at the minimum size, readable tile colours, marks
that do not rely on hue alone, copy counts, what each count counts, the blur preview."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
from desk import column, scan, settle
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from nsfw_desk.gui.grid import Role


def _detail_widgets(detail):
    return [
        detail.preview,
        detail.path_label,
        detail.size_label,
        detail.dims_label,
        detail.scores_label,
        detail.label_label,
        detail.history,
        detail.show_button,
    ]


def test_nothing_in_the_detail_pane_overlaps_at_the_minimum_window_size(qtbot, make_window, folder):
    window = make_window()
    scan(qtbot, window, folder)
    window.show()
    qtbot.waitExposed(window)
    window.grid.setCurrentIndex(window.results.index(0))
    qtbot.waitUntil(lambda: window.detail.size_label.text() != "", timeout=10_000)
    window.resize(window.minimumSizeHint())
    qtbot.wait(300)  # layouts settle in posted events
    detail = window.detail
    assert window.size() == window.minimumSizeHint()

    def seen(widget) -> QRect:  # the part of the widget on screen, in the pane's coordinates
        box = widget.visibleRegion().boundingRect()
        return QRect(widget.mapTo(detail, box.topLeft()), box.size())

    rects = {w: seen(w) for w in _detail_widgets(detail)}
    for (a, ra), (b, rb) in itertools.combinations(rects.items(), 2):
        assert not ra.intersects(rb), f"{a} {ra} overlaps {b} {rb}"
    for widget, rect in rects.items():
        if rect.isEmpty():  # scrolled out of sight, under the preview's area's edge
            continue
        assert detail.rect().contains(rect), f"{widget} {rect} is outside {detail.rect()}"
    # The File and Size rows are readable without scrolling, and so is the preview.
    for widget in (detail.size_label, detail.path_label):
        assert rects[widget].height() >= widget.fontMetrics().height(), widget.text()
    assert rects[detail.size_label].size() == detail.size_label.size()
    assert rects[detail.preview].height() >= 120
