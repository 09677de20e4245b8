"""Painting one tile: the blurred thumbnail (or a placeholder), score, flag and label.

The rule this module keeps: an image is painted unblurred only for the one item the
moderator is deliberately revealing, and nothing is painted while "hide all" is on.

Every text meets WCAG AA contrast (4.5:1) against what it is painted on, selected or not,
whatever the palette: the state colours are adjusted to the background at paint time
(`readable`). Hue is never the only difference between states: the flag is a glyph and a
frame, the labels are words with their own glyphs, an error has a warning sign.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

from nsfw_desk.core.units import format_size
from nsfw_desk.gui.grid import Role
from nsfw_desk.gui.thumbnails import ThumbnailCache

FLAG_COLOUR = QColor("#d64545")
SAFE_COLOUR = QColor("#2e8b57")
PLACEHOLDER = QColor("#8a8f98")
HIDDEN = QColor("#30333a")
TEXT_LINES = 2
AA_CONTRAST = 4.5
AIMED_CONTRAST = 4.7  # a margin: painting rounds colours to 8 bits per channel
BADGES = {"unsafe": "✖ UNSAFE", "safe": "✓ SAFE"}
FLAG_MARK = "⚑ "
ERROR_MARK = "⚠ "
OTHER_MARK = "⇄ "  # before the compared model's score
NEAR_MARK = "≈"  # before the number of near-duplicates in the folder
LIST_MARK = "≡ "  # before the name of a hash list the content matches
CONFLICT_MARK = "≠ "  # before the reviewers' differing labels (gui/team.py)
CONFLICT_BACKGROUND = QColor(140, 20, 30, 225)
SIMILAR_MARK = "sim "  # before the cosine similarity in a "Show similar" view (≈ is taken)
GROUP_MARKS = {True: "⊞ ", False: "⊟ "}  # a collapsed group's tile, a member of an open one
GROUP_BACKGROUND = QColor(31, 78, 140)  # white text on it: contrast above 7:1
# Several detectors (issue 13): one chip per detector, white text on the kind's colour (both
# at least 7:1 with white), so "NSFW" and "AI" differ by word as well as by hue.
CHIP_COLOURS = {"nsfw": QColor("#9e1c23"), "ai-generated": QColor("#4b2f9e")}
CHIP_OTHER = QColor("#3c4048")
AI_MARKS = {True: "AI", False: "REAL"}  # the AI-generated label (keys G and R)


def flaggers_text(names: list[str]) -> str:
    """ "NSFW · AI"; chips of one kind told apart by a word say the kind once:
    "NSFW Marqo", "NSFW trained" → "NSFW Marqo · trained"."""
    kinds = {name.partition(" ")[0] for name in names}
    if len(names) > 1 and len(kinds) == 1 and all(" " in name for name in names):
        return f"{kinds.pop()} " + " · ".join(name.partition(" ")[2] for name in names)
    return " · ".join(names)


def _badge_room(font: QFont, label: str | None, saving: bool) -> int:
    """The width the label's badge takes at the score line's right, with a space."""
    if not label and not saving:
        return 0
    bold = QFont(font)
    bold.setBold(True)
    bold.setItalic(bool(saving))
    badge = BADGES.get(label or "", "") + ("…" if saving else "")
    return QFontMetrics(bold).horizontalAdvance(badge + " ")


def luminance(colour: QColor) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in colour.getRgbF()[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio, 1 to 21."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def readable(colour: QColor, background: QColor, ratio: float = AIMED_CONTRAST) -> QColor:
    """`colour`, mixed toward black or white (whichever the background contrasts with
    more) just enough to reach `ratio`; the hue stays recognisable where it can."""
    if contrast(colour, background) >= ratio:
        return QColor(colour)
    end = (
        QColor("black")
        if contrast(QColor("black"), background) >= contrast(QColor("white"), background)
        else QColor("white")
    )
    for step in range(1, 21):
        t = step / 20
        mixed = mix(colour, end, t)
        if contrast(mixed, background) >= ratio:
            return mixed
    return end


@dataclass(frozen=True)
class TileColours:
    """The colours one tile is painted with, each readable on `background`."""

    background: QColor
    text: QColor
    flag: QColor
    unsafe: QColor
    safe: QColor
    flag_inner: QColor  # the inner band of the flag frame, black or white against `flag`


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """`a` moved a fraction `t` of the way to `b`."""
    return QColor.fromRgbF(
        *(x + (y - x) * t for x, y in zip(a.getRgbF()[:3], b.getRgbF()[:3], strict=True))
    )


def tile_colours(palette: QPalette, selected: bool) -> TileColours:
    """A selected tile's text sits on a pale tint of the selection colour (the tile itself
    is framed in it): on the full selection colour red, green and the text would all have
    to turn black or white to stay readable, and the labels would lose their colour."""
    return _tile_colours(
        palette.base().color().rgba(),
        palette.highlight().color().rgba(),
        palette.text().color().rgba(),
        selected,
    )


@functools.lru_cache(maxsize=32)
def _tile_colours(base_rgba: int, highlight_rgba: int, text_rgba: int, selected: bool):
    """Computed once per palette and state: painting runs per tile, on the GUI thread,
    while a scan's threads want the interpreter too (the search for a readable mix is
    hundreds of colour conversions)."""
    base = QColor.fromRgba(base_rgba)
    background = mix(QColor.fromRgba(highlight_rgba), base, 0.8) if selected else base
    flag = readable(FLAG_COLOUR, background)
    return TileColours(
        background,
        readable(QColor.fromRgba(text_rgba), background),
        flag,
        readable(FLAG_COLOUR, background),
        readable(SAFE_COLOUR, background),
        QColor("black") if luminance(flag) > 0.18 else QColor("white"),
    )


TAG_BACKGROUND = QColor(20, 22, 28, 210)
TAG_TEXT = QColor("#f2d16b")


def score_text(score: float, threshold: float) -> str:
    """The score to two decimals, never rounded up onto or over the threshold it is under: an
    unflagged 0.4996 read "0.50" beside a threshold of 0.50."""
    text = f"{score:.2f}"
    if score < threshold <= float(text):
        text = f"{math.floor(score * 100) / 100:.2f}"
    return text


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
        colours = tile_colours(option.palette, selected)
        area = self.image_rect(rect)
        if selected:
            painter.fillRect(rect, option.palette.highlight())
            strip = QRect(rect.x() + 3, area.bottom() + 3, rect.width() - 6, 0)
            strip.setBottom(rect.bottom() - 2)
            painter.fillRect(strip, colours.background)
        else:
            painter.fillRect(rect, colours.background)
        values = index.data(Role.TILE)  # every role at once (gui/grid.py ResultsModel)
        get = values.get if values is not None else index.data
        digest = get(Role.HASH)
        error = get(Role.ERROR)
        score = get(Role.SCORE)
        listed = get(Role.LISTED_UNSAFE)  # an `unsafe` hash list flags it
        chips = get(Role.CHIPS) or ()
        flagged = (
            score is not None or listed is not None or any(c[2] is not None for c in chips)
        ) and get(Role.FLAGGED)
        label = get(Role.LABEL)

        self._paint_image(painter, area, digest, error)
        if flagged:
            self._paint_flag_frame(painter, area, colours.flag, colours.flag_inner)
        tags = get(Role.TAGS)
        self._paint_tags(painter, area, tags, option.font)
        reviewers = get(Role.REVIEWERS)
        if chips and not error:  # above the tags' strip and the conflict's, which hid them
            self._paint_chips(painter, area, chips, option.font, bool(tags) + bool(reviewers))
        if reviewers:  # a conflict: each reviewer's label, above the tags
            self._paint_conflict(painter, area, reviewers, bool(tags), option.font)
        lists = get(Role.LISTS)
        if lists:  # the hash lists it matches; the tooltip says kind, algorithm and distance
            self._paint_list_badge(painter, area, lists, option.font)
        similarity = get(Role.SIMILARITY)
        if similarity is not None:  # "Show similar": how near to the item it started from
            self._paint_corner(painter, area, f"{SIMILAR_MARK}{similarity:.2f}", option.font)
        group = get(Role.GROUP)
        if group is not None:  # "⊞ 7": a collapsed group of 7 files (a click expands it)
            self._paint_group_badge(painter, rect, group, option.font)

        font = QFont(option.font)
        painter.setFont(font)
        line_h = 16
        y = area.bottom() + 4
        left = QRect(area.x(), y, area.width(), line_h)
        if error:
            painter.setPen(colours.flag)
            line = self.fitted_error_line(
                error, get(Role.SIZE), painter.fontMetrics(), left.width()
            )
            painter.drawText(left, Qt.AlignmentFlag.AlignLeft, line)
        elif listed is not None:
            painter.setPen(colours.flag)
            text = (f"{FLAG_MARK}{score:.2f} " if score is not None else FLAG_MARK) + (
                f"list: {listed}"
            )
            room = left.width() * 2 // 3 if get(Role.LABEL) else left.width()
            line = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, room)
            painter.drawText(left, Qt.AlignmentFlag.AlignLeft, line)
        elif chips:  # the chips hold the scores: say which detectors flag it
            counted = chips[:1] if index.model().flag_rule == "primary" else chips
            flaggers = [c[0] for c in counted if c[3]]
            painter.setPen(colours.flag)
            other = get(Role.OTHER_SCORE)
            if other is not None:  # "Compare with": its score, which no chip shows, in the
                # room of the flaggers' names (the chips' ⚑ and the frame still say those)
                self._paint_other(painter, left, "", other, index, colours)
            elif flagged and flaggers:  # "⚑ NSFW · AI": whose threshold it is over
                # Cut before the label's badge ("NSFW 4156 · NSFW trained" ran under it).
                room = left.width() - _badge_room(font, label, get(Role.SAVING))
                line = painter.fontMetrics().elidedText(
                    FLAG_MARK + flaggers_text(flaggers), Qt.TextElideMode.ElideRight, room
                )
                painter.drawText(left, Qt.AlignmentFlag.AlignLeft, line)
        elif score is not None:
            painter.setPen(colours.flag if flagged else colours.text)
            mark = FLAG_MARK if flagged else ""
            text = mark + score_text(score, getattr(index.model(), "threshold", math.inf))
            painter.drawText(left, Qt.AlignmentFlag.AlignLeft, text)
            other = get(Role.OTHER_SCORE)
            if other is not None:  # the compared model's score ("Models disagree")
                self._paint_other(painter, left, text, other, index, colours)
        elif digest:  # listed without a model (or not scored yet)
            painter.setPen(colours.text)
            painter.drawText(left, Qt.AlignmentFlag.AlignLeft, "no score")
        saving = get(Role.SAVING)
        if label or saving:
            # "…" until the library has committed the decision (gui/library_tasks.py)
            badge = BADGES.get(label, "") + ("…" if saving else "")
            bold = QFont(font)
            bold.setBold(True)
            bold.setItalic(bool(saving))
            painter.setFont(bold)
            painter.setPen(
                colours.text if not label else colours.unsafe if label == "unsafe" else colours.safe
            )
            painter.drawText(left, Qt.AlignmentFlag.AlignRight, badge)
            painter.setFont(font)
        name_rect = QRect(area.x(), y + line_h, area.width(), line_h)
        painter.setPen(colours.text)
        copies = get(Role.COPIES) or 1
        near = get(Role.NEAR) or 0
        width = area.width()
        markers = []
        if copies > 1:
            markers.append(f"×{copies}")  # labels follow the content: every copy is labelled
        if near:
            markers.append(f"{NEAR_MARK}{near}")  # near-duplicates: Shift+U / Shift+S label all
        ai = get(Role.AI_LABEL)
        if ai is not None:  # the AI-generated label, beside the unsafe/safe badge's line
            markers.insert(0, AI_MARKS[ai])
        if markers:
            marker = " ".join(markers)
            painter.drawText(name_rect, Qt.AlignmentFlag.AlignRight, marker)
            width -= painter.fontMetrics().horizontalAdvance(marker) + 6
        name = painter.fontMetrics().elidedText(
            get(Qt.ItemDataRole.DisplayRole) or "", Qt.TextElideMode.ElideMiddle, width
        )
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft, name)
        painter.restore()

    @staticmethod
    def _paint_chips(painter: QPainter, area: QRect, chips, font: QFont, strips: int) -> None:
        """One chip per detector, stacked up from the image's bottom left (above the tags and
        the conflict, `strips` strips): `⚑NSFW 0.93`, `AI 0.12`, `AI –` (no score yet); ⚑
        when over its own threshold."""
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        small.setBold(True)
        painter.setFont(small)
        metrics = painter.fontMetrics()
        height = metrics.height() + 2
        bottom = area.bottom() - 2 - (height + 2) * strips
        for short, kind, value, over in reversed(chips):
            text = (FLAG_MARK.strip() if over else "") + short
            text += f" {value:.2f}" if value is not None else " –"
            width = min(area.width() - 6, metrics.horizontalAdvance(text) + 8)
            box = QRect(area.x() + 3, bottom - height + 1, width, height)
            if box.top() < area.top() + height:  # no room: the smallest tiles keep the first
                break
            painter.fillRect(box, CHIP_COLOURS.get(kind, CHIP_OTHER))
            if over:  # a flag is a frame too, not only a glyph
                painter.fillRect(QRect(box.x(), box.y(), 2, box.height()), QColor("white"))
            painter.setPen(QColor("white"))
            shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, width - 6)
            painter.drawText(box.adjusted(4, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter, shown)
            bottom = box.top() - 2
        painter.setFont(font)

    @staticmethod
    def _paint_other(painter: QPainter, line: QRect, shown: str, other: float, index, colours):
        """`⇄ ⚑0.71` after the shown score: the compared model's score, flagged or not."""
        threshold_flag = other >= index.model().threshold
        x = line.x() + (painter.fontMetrics().horizontalAdvance(shown + " ") if shown else 0)
        painter.setPen(colours.text)
        arrow = OTHER_MARK
        painter.drawText(QRect(x, line.y(), line.width(), line.height()), 0, arrow)
        x += painter.fontMetrics().horizontalAdvance(arrow)
        painter.setPen(colours.flag if threshold_flag else colours.text)
        text = f"{FLAG_MARK.strip() if threshold_flag else ''}{other:.2f}"
        painter.drawText(QRect(x, line.y(), line.right() - x, line.height()), 0, text)

    @staticmethod
    def _paint_flag_frame(painter: QPainter, area: QRect, colour: QColor, inner: QColor) -> None:
        """A two-tone frame: the flag colour outside, black or white inside, so it stands
        out from any image and in grayscale, not by its hue alone."""
        for band, fill in ((area, colour), (area.adjusted(2, 2, -2, -2), inner)):
            x, y, w, h = band.x(), band.y(), band.width(), band.height()
            for strip in ((x, y, w, 2), (x, y + h - 2, w, 2), (x, y, 2, h), (x + w - 2, y, 2, h)):
                painter.fillRect(QRect(*strip), fill)  # exactly 2 px, inside the image area

    @staticmethod
    def error_line(index) -> str:
        """`⚠ decode error · 4.1 kB`: the kind (the full reason is the tooltip) and the size,
        which tells an empty or cut-short upload from a big file that failed."""
        return TileDelegate._error_line(index.data(Role.ERROR), index.data(Role.SIZE))

    @staticmethod
    def fitted_error_line(error: str | None, size: int | None, metrics, width: int) -> str:
        """The error line as wide as the tile: without the size where both do not fit (the
        detail pane has it), cut short only where the kind alone does not fit either."""
        line = TileDelegate._error_line(error, size)
        if metrics.horizontalAdvance(line) > width:
            line = TileDelegate._error_line(error, None)
        return metrics.elidedText(line, Qt.TextElideMode.ElideRight, width)

    @staticmethod
    def _error_line(error: str | None, size: int | None) -> str:
        kind = (error or "").split(":", 1)[0]
        return f"{ERROR_MARK}{kind}" + (f" · {format_size(size)}" if size is not None else "")

    @staticmethod
    def _paint_list_badge(painter: QPainter, area: QRect, lists, font: QFont) -> None:
        """`≡ NAME +1` on the image's top left: the hash lists the content matches."""
        names = list(dict.fromkeys(m.list_name for m in lists))
        text = LIST_MARK + names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        painter.setFont(small)
        metrics = painter.fontMetrics()
        width = min(area.width() // 2, metrics.horizontalAdvance(text) + 8)
        box = QRect(area.x() + 3, area.y() + 3, width, metrics.height() + 2)
        painter.fillRect(box, TAG_BACKGROUND)
        painter.setPen(TAG_TEXT)
        shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, width - 6)
        painter.drawText(box.adjusted(4, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter, shown)
        painter.setFont(font)

    def group_badge_rect(self, tile: QRect, state: tuple[int, bool], font: QFont) -> QRect:
        """Where a tile's group badge is: the image's top right corner (a click there
        expands or collapses the group)."""
        area = self.image_rect(tile)
        metrics = QFontMetrics(_bold(font))
        width = min(area.width() - 6, metrics.horizontalAdvance(_group_text(state)) + 10)
        return QRect(area.right() - width - 2, area.y() + 3, width, metrics.height() + 4)

    def _paint_group_badge(
        self, painter: QPainter, tile: QRect, state: tuple[int, bool], font: QFont
    ) -> None:
        box = self.group_badge_rect(tile, state, font)
        if state[1]:  # a collapsed group: the edges of two cards stacked behind the image
            area = self.image_rect(tile)
            for k in (2, 4):
                top = area.y() - k
                painter.fillRect(QRect(area.x() + k, top, area.width(), 1), GROUP_BACKGROUND)
                painter.fillRect(QRect(area.right() + k, top, 1, area.height()), GROUP_BACKGROUND)
        painter.fillRect(box, GROUP_BACKGROUND)
        painter.setFont(_bold(font))
        painter.setPen(QColor("white"))
        painter.drawText(
            box.adjusted(5, 0, -3, 0), Qt.AlignmentFlag.AlignVCenter, _group_text(state)
        )
        painter.setFont(font)

    @staticmethod
    def _paint_corner(painter: QPainter, area: QRect, text: str, font: QFont) -> None:
        """`text` on a dark box in the image's top right corner."""
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)
        metrics = painter.fontMetrics()
        width = min(area.width() - 6, metrics.horizontalAdvance(text) + 8)
        box = QRect(area.right() - width - 2, area.y() + 3, width, metrics.height() + 2)
        painter.fillRect(box, TAG_BACKGROUND)
        painter.setPen(QColor("white"))
        shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, width - 6)
        painter.drawText(box.adjusted(4, 0, -2, 0), Qt.AlignmentFlag.AlignVCenter, shown)
        painter.setFont(font)

    @staticmethod
    def _paint_conflict(
        painter: QPainter, area: QRect, reviewers: dict, above_tags: bool, font: QFont
    ) -> None:
        """`≠ ann ✖ · ben ✓` on a red strip near the image's bottom: who said what."""
        small = QFont(font)
        small.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
        small.setBold(True)
        painter.setFont(small)
        height = painter.fontMetrics().height() + 2
        bottom = area.bottom() - 2 - (height + 2 if above_tags else 0)
        strip = QRect(area.x() + 3, bottom - height, area.width() - 6, height)
        marks = {"unsafe": "✖", "safe": "✓"}
        text = CONFLICT_MARK + " · ".join(
            f"{name} {' '.join(marks.get(p, p) for p in label.split(' + '))}"
            for name, label in reviewers.items()
        )
        text = painter.fontMetrics().elidedText(
            text, Qt.TextElideMode.ElideRight, strip.width() - 6
        )
        painter.fillRect(strip, CONFLICT_BACKGROUND)
        painter.setPen(QColor("white"))
        painter.drawText(strip.adjusted(3, 0, -3, 0), Qt.AlignmentFlag.AlignVCenter, text)
        painter.setFont(font)

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
        draw_fitted(painter, area, pixmap)


def _bold(font: QFont) -> QFont:
    bold = QFont(font)
    bold.setBold(True)
    return bold


def _group_text(state: tuple[int, bool]) -> str:
    return f"{GROUP_MARKS[state[1]]}{state[0]}"


def draw_fitted(painter: QPainter, area: QRect, pixmap: QPixmap) -> None:
    """A thumbnail as the grid paints it: fitted and centred on a dark ground (the
    Settings preview paints its sample with this too)."""
    target = pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
    x = area.x() + (area.width() - target.width()) // 2
    y = area.y() + (area.height() - target.height()) // 2
    painter.fillRect(area, HIDDEN)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    painter.drawPixmap(QRect(x, y, target.width(), target.height()), pixmap)
