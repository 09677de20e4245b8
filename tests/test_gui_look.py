"""How the desk looks: nothing overlaps at the minimum size, readable tile colours, marks
that do not rely on hue alone, copy counts, what each count counts, the blur preview."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
from desk import column, scan, settle
from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QImage, QPainter, QPalette, QPixmap
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


# --- tiles: contrast and marks that do not rely on hue --------------------------------

STATES = {
    "flagged": {"score": 1.0, "flagged": True},
    "not flagged": {"score": 0.2, "flagged": False},
    "unsafe": {"score": 1.0, "flagged": True, "label": "unsafe"},
    "safe": {"score": 0.1, "flagged": False, "label": "safe"},
    "unsafe, saving": {"score": 0.9, "flagged": True, "label": "unsafe", "saving": True},
    "cleared, saving": {"score": 0.3, "flagged": False, "saving": True},
    "error": {"error": "not an image: text/html", "size": 52_431},
    "no score (no model)": {"flagged": False},
    "copies": {"score": 0.4, "flagged": False, "copies": 3},
}


def _index(state: dict):
    from PySide6.QtGui import QStandardItem, QStandardItemModel

    model = QStandardItemModel()
    item = QStandardItem("holiday_photo.jpg")
    item.setData(None if state.get("error") else "ab" * 16, Role.HASH)
    item.setData(state.get("score"), Role.SCORE)
    item.setData(state.get("flagged", False), Role.FLAGGED)
    item.setData(state.get("label"), Role.LABEL)
    item.setData(state.get("error"), Role.ERROR)
    item.setData(state.get("saving", False), Role.SAVING)
    item.setData(state.get("copies", 1), Role.COPIES)
    item.setData(state.get("size"), Role.SIZE)
    model.appendRow(item)
    return model, model.index(0, 0)


def render_tile(window, state: dict, selected: bool) -> QImage:
    """One tile as the grid paints it, with the grid's palette and font."""
    delegate = window.delegate
    size = delegate.tile_size()
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, size.width(), size.height())
    option.palette = window.grid.palette()
    option.font = window.grid.font()
    option.state = QStyle.StateFlag.State_Enabled | (
        QStyle.StateFlag.State_Selected if selected else QStyle.StateFlag.State_None
    )
    image = QImage(size, QImage.Format.Format_RGB32)
    image.fill(window.grid.palette().color(QPalette.ColorRole.Base))
    _model, index = _index(state)
    painter = QPainter(image)
    delegate.paint(painter, option, index)
    painter.end()
    return image


def _pixels(image: QImage, rect: QRect) -> np.ndarray:
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    data = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    data = data[:, : rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3)
    return (
        data[rect.top() : rect.bottom() + 1, rect.left() : rect.right() + 1].reshape(-1, 3).copy()
    )


def _luminance(rgb) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(float(v)) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_contrast(image: QImage, rect: QRect) -> float:
    """The text's contrast in `rect`: its background is the commonest colour there, its
    colour the pixel farthest from it (a fully covered stem is the pen's own colour)."""
    pixels = _pixels(image, rect)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    assert len(colours) > 1, f"no text in {rect}"
    return max(contrast(c, background) for c in colours)


def _text_rects(window) -> dict[str, QRect]:
    delegate = window.delegate
    area = delegate.image_rect(QRect(QPoint(0, 0), delegate.tile_size()))
    line = QRect(area.x(), area.bottom() + 4, area.width(), 16)
    half = area.width() // 2
    return {
        "score": QRect(line.x(), line.y(), half, line.height()),
        "badge": QRect(line.x() + half, line.y(), area.width() - half, line.height()),
        "name": line.translated(0, 16),
    }


def test_every_text_on_a_tile_has_aa_contrast_selected_or_not(qtbot, make_window):
    window = make_window()
    rects = _text_rects(window)
    for selected in (False, True):
        for name, state in STATES.items():
            image = render_tile(window, state, selected)
            parts = ["score", "name"]
            if state.get("label") or state.get("saving"):
                parts.append("badge")
            for part in parts:
                ratio = text_contrast(image, rects[part])
                where = f"{name} ({'selected' if selected else 'not selected'}), {part}"
                assert ratio >= 4.5, f"{where}: contrast {ratio:.2f}"


def _gray(image: QImage, rect: QRect) -> np.ndarray:
    gray = image.convertToFormat(QImage.Format.Format_Grayscale8)
    data = np.frombuffer(gray.constBits(), np.uint8).reshape(gray.height(), gray.bytesPerLine())
    return data[rect.top() : rect.bottom() + 1, rect.left() : rect.right() + 1].astype(int)


def test_flag_and_labels_differ_without_colour(qtbot, make_window):
    """In grayscale (or to a red/green colour-blind eye) flagged, unsafe and safe still read
    differently: each pair differs by many pixels where its text is, not only by hue."""
    window = make_window()
    rects = _text_rects(window)
    pairs = [
        ({"score": 0.6, "flagged": True}, {"score": 0.6, "flagged": False}, "score"),
        (
            {"score": 0.6, "flagged": True, "label": "unsafe"},
            {"score": 0.6, "flagged": True, "label": "safe"},
            "badge",
        ),
    ]
    for selected in (False, True):
        for a, b, part in pairs:
            gray_a = _gray(render_tile(window, a, selected), rects[part])
            gray_b = _gray(render_tile(window, b, selected), rects[part])
            assert np.count_nonzero(np.abs(gray_a - gray_b) > 64) >= 20, (a, b, selected)
        # The flag's frame shows in grayscale against the tile as well.
        flagged = render_tile(window, {"score": 0.6, "flagged": True}, selected)
        plain = render_tile(window, {"score": 0.6, "flagged": False}, selected)
        area = window.delegate.image_rect(QRect(QPoint(0, 0), window.delegate.tile_size()))
        frame = QRect(area.x(), area.y(), area.width(), 4)
        assert np.abs(_gray(flagged, frame) - _gray(plain, frame)).mean() > 40


def test_exact_copies_are_marked_and_a_decision_says_how_many_files_it_covers(
    qtbot, make_window, folder, stored
):
    from nsfw_desk.gui.calibration import CalibrationDialog

    original = sorted(folder.rglob("photo_*.jpg"))[0]
    shutil.copy(original, folder / "copy one.jpg")
    shutil.copy(original, folder / "copy two.jpg")
    window = make_window()
    scan(qtbot, window, folder)
    digest = next(
        h
        for h, p in zip(column(window, Role.HASH), column(window, Role.PATH), strict=True)
        if p == original
    )
    copies = {
        p.name: c
        for h, p, c in zip(
            column(window, Role.HASH),
            column(window, Role.PATH),
            column(window, Role.COPIES),
            strict=True,
        )
        if h == digest
    }
    assert copies == {original.name: 3, "copy one.jpg": 3, "copy two.jpg": 3}
    assert set(column(window, Role.COPIES)) == {3, 1}

    window.settings.auto_advance = False
    row = window.results.row_of(folder / "copy one.jpg")
    window.grid.setCurrentIndex(window.results.index(row))
    window.decide("unsafe")
    note = "Marked unsafe: 1 item, 3 files (copies share a label)"
    assert window.statusBar().currentMessage() == note
    settle(qtbot, window)
    other = next(r for r, h in enumerate(column(window, Role.HASH)) if h and h != digest)
    window.grid.setCurrentIndex(window.results.index(other))
    window.decide("safe")
    # One selected file of its own content: nothing to explain.
    assert window.statusBar().currentMessage() == ""
    settle(qtbot, window)
    text = window.counts_label.text()
    assert "4 files reviewed (2 distinct images)" in text, text

    dialog = CalibrationDialog(window.reads, window.results.threshold, window.model_id, window)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.model_box.count() > 0, timeout=10_000)
    assert "2 distinct reviewed images with a score" in dialog.model_box.itemText(0)


# --- the blur preview in Settings -------------------------------------------------------


def _array(image: QImage) -> np.ndarray:
    return _pixels(image, image.rect()).reshape(image.height(), image.width(), 3).astype(int)


def test_settings_preview_blurs_a_sample_as_the_grid_paints_it(qtbot, make_window):
    from nsfw_desk.gui.settings_dialog import SettingsDialog, sample_picture
    from nsfw_desk.gui.thumbnails import blur, to_qimage

    window = make_window(blur_strength=4, grayscale=False)
    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    delegate = window.delegate

    class Sample:  # a thumbnail cache holding the sample, blurred as ThumbnailCache does
        def __init__(self, strength: int, grayscale: bool) -> None:
            self.pixmap = QPixmap.fromImage(to_qimage(blur(sample_picture(), strength, grayscale)))

        def blurred(self, _digest):
            return self.pixmap

    def grid_paints(strength: int, grayscale: bool) -> np.ndarray:
        delegate.thumbnails = Sample(strength, grayscale)
        image = render_tile(window, {"score": 0.1}, selected=False)
        area = delegate.image_rect(QRect(QPoint(0, 0), delegate.tile_size()))
        return _array(image.copy(area))

    def shown() -> np.ndarray:
        return _array(dialog.preview.pixmap().toImage().convertToFormat(QImage.Format.Format_RGB32))

    def sharpness(pixels: np.ndarray) -> float:
        return float(np.abs(np.diff(pixels, axis=1)).mean())

    try:
        seen = {}
        for strength, grayscale in ((4, False), (32, False), (1, False), (12, True)):
            dialog.blur.setValue(strength)  # the preview follows the slider as it moves
            dialog.grayscale.setChecked(grayscale)
            pixels = shown()
            assert np.array_equal(pixels, grid_paints(strength, grayscale)), strength
            seen[strength] = sharpness(pixels)
            picture = pixels[40:120]  # inside the fitted 4:3 sample, off the dark ground
            gray = (picture[..., 0] == picture[..., 1]) & (picture[..., 1] == picture[..., 2])
            assert gray.all() == grayscale
        assert seen[1] > seen[4] > seen[32]
    finally:
        delegate.thumbnails = window.thumbnails


# --- grayscale: the default for a new desk, one key away --------------------------------


def test_grayscale_is_the_first_run_default_and_a_view_toggle(qtbot, make_window, tmp_path):
    from nsfw_desk.core.settings import Settings

    assert Settings.load(tmp_path / "none.json").grayscale  # a first run: grayscale
    kept = tmp_path / "kept.json"
    Settings(grayscale=False).save(kept)
    assert not Settings.load(kept).grayscale  # a moderator's own choice is kept

    window = make_window()
    assert window.thumbnails.grayscale and window.grayscale_action.isChecked()
    assert window.grayscale_action.shortcut().toString() == "Ctrl+G"
    assert window.grayscale_action in window.menuBar().actions()[3].menu().actions()  # View
    window.grayscale_action.trigger()
    assert not window.thumbnails.grayscale and not window.settings.grayscale
    window.grayscale_action.trigger()
    assert window.thumbnails.grayscale and window.settings.grayscale


def test_error_tiles_show_the_file_size(qtbot, make_window, folder):
    """Defect 10: a moderator deciding whether to chase a broken file wants its size (an
    empty or truncated upload reads differently from a big one that failed)."""
    from nsfw_desk.core.units import format_size

    broken = folder / "broken.jpg"
    window = make_window()
    scan(qtbot, window, folder)
    row = window.results.row_of(broken)
    index = window.results.index(row)
    assert index.data(Role.ERROR)
    assert index.data(Role.SIZE) == broken.stat().st_size
    # The line the tile paints under its placeholder.
    assert format_size(broken.stat().st_size) in window.delegate.error_line(index)
    # From the library too, as a reopened folder shows it.
    again = make_window()
    scan(qtbot, again, folder)
    stored = again.results.index(again.results.row_of(broken))
    assert stored.data(Role.SIZE) == broken.stat().st_size


# --- batch size: auto by default (8 on the CPU, 128 on CUDA) ------------------------------


def test_batch_size_is_auto_unless_chosen(qtbot, make_window, tmp_path):
    import json

    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.settings_dialog import SettingsDialog
    from nsfw_desk.gui.worker import ScanRequest

    assert Settings.load(tmp_path / "none.json").batch_size == 0  # auto
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"batch_size": -3}))
    assert Settings.load(odd).batch_size == 0
    assert ScanRequest(tmp_path, None).batch_size == 0

    window = make_window()
    dialog = SettingsDialog(window.settings, window)
    qtbot.addWidget(dialog)
    assert dialog.batch_size.text() == "auto" and dialog.result_settings().batch_size == 0
    dialog.batch_size.setValue(32)
    assert dialog.batch_size.text() == "32" and dialog.result_settings().batch_size == 32
