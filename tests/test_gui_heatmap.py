"""The desk's heat map (H) over the blurred preview, and the safety checker's slots line."""

from __future__ import annotations

import numpy as np
from desk import scan
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from nsfw_desk.core.explain import HeatMap
from nsfw_desk.gui.detail import CONCEPTS_TOOLTIP, checker_line
from nsfw_desk.gui.heatmap import overlay_heat


def _pixels(pixmap) -> np.ndarray:
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 4].reshape(image.height(), image.width(), 4).copy()


def _blurred_as_shown(window):
    detail = window.detail
    return window.thumbnails.blurred(detail.hash).scaled(
        detail.preview.size(),
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )


def test_h_draws_the_heat_map_over_the_blurred_preview_and_h_again_removes_it(
    qtbot, make_window, photo_folder
):
    window = make_window()
    scan(qtbot, window, photo_folder)
    window._select_row(0)
    detail = window.detail
    qtbot.waitUntil(lambda: window.thumbnails.blurred(detail.hash) is not None, timeout=10_000)
    plain = _pixels(detail.preview.pixmap())
    assert (plain == _pixels(_blurred_as_shown(window))).all()  # blurred, no overlay yet

    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_H)
    assert window.heat_action.isChecked()
    qtbot.waitUntil(lambda: detail.heat is not None, timeout=60_000)
    heat = detail.heat
    assert detail.heat_for == detail.hash and not detail.revealed
    # What is shown is exactly the blurred preview with the map painted over it.
    shown = _pixels(detail.preview.pixmap())
    assert (shown == _pixels(overlay_heat(_blurred_as_shown(window), heat))).all()
    assert (shown != plain).any()
    # The status line says which detector and class.
    assert detail.heat_label.isVisibleTo(window)
    assert heat.model_name in detail.heat_label.text() and "NSFW" in detail.heat_label.text()

    qtbot.keyClick(window.grid, Qt.Key.Key_H)
    assert not window.heat_action.isChecked()
    assert (_pixels(detail.preview.pixmap()) == plain).all()
    assert not detail.heat_label.isVisibleTo(window)


def test_the_heat_map_follows_the_current_item(qtbot, make_window, photo_folder):
    window = make_window()
    scan(qtbot, window, photo_folder)
    window._select_row(0)
    window.heat_action.setChecked(True)
    detail = window.detail
    qtbot.waitUntil(lambda: detail.heat is not None, timeout=60_000)
    first = detail.heat_for
    window._select_row(1)
    assert detail.heat is None or detail.heat_for == detail.hash  # never another item's map
    qtbot.waitUntil(lambda: detail.heat is not None and detail.heat_for != first, timeout=60_000)
    assert detail.heat_for == detail.hash


def test_overlay_sits_on_the_crop_box(qtbot):
    from PySide6.QtGui import QColor, QPixmap

    base = QPixmap(200, 100)
    base.fill(QColor("#808080"))
    heat = HeatMap(
        values=np.ones((4, 4), np.float32),
        box=(0.25, 0.0, 0.75, 1.0),
        method="gradcam",
        model_id="m",
        model_name="m",
        label="NSFW",
        score=0.9,
        seconds=0.1,
    )
    pixels = _pixels(overlay_heat(base, heat))
    grey = _pixels(base)
    assert (pixels[:, :45] == grey[:, :45]).all() and (pixels[:, 155:] == grey[:, 155:]).all()
    assert (pixels[10:90, 60:140] != grey[10:90, 60:140]).any(axis=-1).all()


def test_checker_line_names_slots_and_margins(qtbot, make_window):
    details = {
        "concepts": [-0.1] * 3 + [0.012] + [-0.05] * 3 + [0.004] + [-0.2] * 9,
        "special": [0.002, -0.3, -0.1],
        "adjustment": 0.01,
        "fired": [3, 7],
        "special_fired": [0],
    }
    line = checker_line(details, "sd-checker")
    assert line == (
        "sd-checker: concepts 3 (+0.012), 7 (+0.004) fired · special care 0 (+0.002): "
        "thresholds 0.01 lower"
    )
    quiet = dict(details, fired=[], special_fired=[], adjustment=0.0)
    assert "no concept fired (closest: 3, +0.012)" in checker_line(quiet, "c")

    window = make_window()
    window.detail.show_item(None, "abc", details={"sd": details, "vit": None})
    assert window.detail.why_label.isVisibleTo(window)
    assert window.detail.why_label.text().startswith("sd: concepts 3 (+0.012)")
    assert window.detail.why_label.toolTip() == CONCEPTS_TOOLTIP
    assert "names were never published" in CONCEPTS_TOOLTIP
    window.detail.show_item(None, "abc", details={"vit": None})
    assert not window.detail.why_label.isVisibleTo(window)
