"""Painting one tile: the blurred thumbnail (or a placeholder), score, flag and label.

The rule this module keeps: an image is painted unblurred only for the one item the
moderator is deliberately revealing, and nothing is painted while "hide all" is on.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

from nsfw_desk.gui.grid import Role
from nsfw_desk.gui.thumbnails import ThumbnailCache

FLAG_COLOUR = QColor("#d64545")
SAFE_COLOUR = QColor("#2e8b57")
PLACEHOLDER = QColor("#8a8f98")
HIDDEN = QColor("#30333a")
TEXT_LINES = 2
TAG_BACKGROUND = QColor(20, 22, 28, 210)
TAG_TEXT = QColor("#f2d16b")


class TileDelegate(QStyledItemDelegate):
    """Paints tiles from a ThumbnailCache; knows which hash (if any) is being revealed."""

    def __init__(self, thumbnails: ThumbnailCache, size: int = 160, parent=None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.size = size
        self.revealed: str | None = None
        self.hide_all = False

    def tile_size(self) -> QSize:
        line = 16
        return QSize(self.size + 12, self.size + 12 + TEXT_LINES * line)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 (Qt API)
        return self.tile_size()

    def image_rect(self, rect: QRect) -> QRect:
        return QRect(rect.x() + 6, rect.y() + 6, self.size, self.size)

    def paint(self, painter: QPainter, option, index) -> None:
        painter.save()
        rect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        if selected:
            painter.fillRect(rect, palette.highlight())
        area = self.image_rect(rect)
        digest = index.data(Role.HASH)
        error = index.data(Role.ERROR)
        score = index.data(Role.SCORE)
        flagged = score is not None and index.data(Role.FLAGGED)
        label = index.data(Role.LABEL)

        self._paint_image(painter, area, digest, error)
        if flagged:
            painter.setPen(QPen(FLAG_COLOUR, 3))
            painter.drawRect(area.adjusted(1, 1, -2, -2))
        self._paint_tags(painter, area, index.data(Role.TAGS), option.font)

        text_colour = palette.highlightedText().color() if selected else palette.text().color()
        font = QFont(option.font)
        painter.setFont(font)
        line_h = 16
        y = area.bottom() + 4
        left = QRect(area.x(), y, area.width(), line_h)
        if error:
            painter.setPen(FLAG_COLOUR)
            kind = error.split(":", 1)[0]  # "decode error", "too large", … (full text: tooltip)
            painter.drawText(left, Qt.AlignmentFlag.AlignLeft, f"⚠ {kind}")
        elif score is not None:
            painter.setPen(FLAG_COLOUR if flagged else text_colour)
            mark = "⚑ " if flagged else ""
            painter.drawText(left, Qt.AlignmentFlag.AlignLeft, f"{mark}{score:.2f}")
        saving = index.data(Role.SAVING)
        if label or saving:
            # "…" until the library has committed the decision (gui/library_tasks.py)
            badge = {"unsafe": "UNSAFE", "safe": "SAFE"}.get(label, "") + ("…" if saving else "")
            bold = QFont(font)
            bold.setBold(True)
            bold.setItalic(bool(saving))
            painter.setFont(bold)
            painter.setPen(
                text_colour if not label else FLAG_COLOUR if label == "unsafe" else SAFE_COLOUR
            )
            painter.drawText(left, Qt.AlignmentFlag.AlignRight, badge)
            painter.setFont(font)
        name_rect = QRect(area.x(), y + line_h, area.width(), line_h)
        painter.setPen(text_colour)
        name = painter.fontMetrics().elidedText(
            index.data() or "", Qt.TextElideMode.ElideMiddle, area.width()
        )
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft, name)
        painter.restore()

    def _paint_tags(self, painter: QPainter, area: QRect, tags, font: QFont) -> None:
        """Tags in small text on a dark strip along the bottom of the image (gui/tags.py)."""
        if not tags:
            return
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        painter.setFont(small)
        height = painter.fontMetrics().height() + 2
        strip = QRect(area.x() + 3, area.bottom() - height - 2, area.width() - 6, height)
        text = painter.fontMetrics().elidedText(
            " · ".join(tags), Qt.TextElideMode.ElideRight, strip.width() - 6
        )
        painter.fillRect(strip, TAG_BACKGROUND)
        painter.setPen(TAG_TEXT)
        painter.drawText(strip.adjusted(3, 0, -3, 0), Qt.AlignmentFlag.AlignVCenter, text)
        painter.setFont(font)

    def _paint_image(
        self, painter: QPainter, area: QRect, digest: str | None, error: str | None
    ) -> None:
        if self.hide_all:
            painter.fillRect(area, HIDDEN)
            return
        pixmap = None
        if digest and not error:
            if digest == self.revealed:
                pixmap = self.thumbnails.original(digest)
            else:
                pixmap = self.thumbnails.blurred(digest)
        if pixmap is None or pixmap.isNull():
            painter.fillRect(area, PLACEHOLDER if not error else HIDDEN)
            return
        target = pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = area.x() + (area.width() - target.width()) // 2
        y = area.y() + (area.height() - target.height()) // 2
        painter.fillRect(area, HIDDEN)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(QRect(x, y, target.width(), target.height()), pixmap)
