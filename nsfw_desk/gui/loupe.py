"""The loupe: one image large inside the window, blurred exactly as the grid unless revealed.

Full-size pixels are read and decoded by core.images (EXIF orientation, pixel and byte
limits) in a thread pool, scaled to at most twice the screen and blurred there too, with the
grid's own `blur()` (its radius follows the image's size, so the loupe looks as blurred as
the tile). The blurred thumbnail stands in until they arrive. The window routes decisions,
Space and hide-all here; this module only shows, zooms and pans.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image
from PySide6.QtCore import (
    QEvent,
    QObject,
    QPointF,
    QRectF,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from nsfw_desk.core import images
from nsfw_desk.gui.thumbnails import ThumbnailCache, blur, to_qimage
from nsfw_desk.gui.tiles import HIDDEN

MIN_ZOOM, MAX_ZOOM = 0.02, 32.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch
DRAG_SLOP = 4  # pixels a press may move and still count as press-and-hold
ERROR_TEXT = QColor("#f0a0a0")


def display_limit() -> int:
    """The longest side worth decoding: twice the screen's, enough for 1:1 and a little zoom."""
    screen = QGuiApplication.primaryScreen()
    size = screen.size() * screen.devicePixelRatio() if screen is not None else QSize(1920, 1080)
    return max(1024, 2 * max(size.width(), size.height()))


def _place(position: float, length: float, room: float) -> float:
    """Centred when the image is shorter than the view, else no gap at either edge."""
    return (room - length) / 2 if length <= room else min(0.0, max(position, room - length))


class _Signals(QObject):
    # serial, original, blurred, (width, height) of the upright original, error, hash read
    done = Signal(int, QImage, QImage, object, str, str)


class _Decode(QRunnable):
    """Read, decode, scale and blur one file; never on the GUI thread."""

    def __init__(
        self, path: Path, serial: int, limit: int, strength: int, grayscale: bool, signals
    ) -> None:
        super().__init__()
        self.path, self.serial, self.limit = path, serial, limit
        self.strength, self.grayscale, self.signals = strength, grayscale, signals

    def run(self) -> None:
        try:
            decoded = images.load_image(self.path)
        except images.ImageError as exc:
            text = f"{exc.kind.replace('_', ' ')}: {exc.message}"
            self.signals.done.emit(self.serial, QImage(), QImage(), None, text, "")
            return
        except Exception as exc:  # whatever else: say so, never crash the desk
            text = f"cannot show this file: {type(exc).__name__}"
            self.signals.done.emit(self.serial, QImage(), QImage(), None, text, "")
            return
        pixels: Image.Image = decoded.image
        if max(pixels.size) > self.limit:
            pixels = pixels.copy()
            pixels.thumbnail((self.limit, self.limit), Image.Resampling.LANCZOS)
        soft = blur(pixels, self.strength, self.grayscale)
        self.signals.done.emit(
            self.serial,
            to_qimage(pixels),
            to_qimage(soft),
            (decoded.width, decoded.height),
            "",
            decoded.content_hash,
        )


class LoupeView(QWidget):
    """Paints the image at a zoom and offset; wheel zooms around the cursor, drag pans."""

    reveal_requested = Signal(bool)  # press and hold (True), release (False)
    back_requested = Signal()  # Esc
    changed = Signal()  # zoom or content changed: the caption follows

    def __init__(self, hold_ms: int, parent=None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.blurred: QPixmap | None = None
        self.original: QPixmap | None = None
        self.image_size = QSize()  # the upright original's pixels (the pixmap may be smaller)
        self.error: str | None = None
        self.revealed = False
        self.hide_all = False
        self.fit = True
        self.zoom = 1.0  # screen pixels per original pixel
        self.offset = QPointF()  # the image's top-left corner in widget coordinates
        self._press: QPointF | None = None
        self._panning = False
        self._hold = QTimer(self, singleShot=True, interval=hold_ms)
        self._hold.timeout.connect(self._held)
        self._held_reveal = False

    # --- content ---

    def set_pixmaps(
        self, blurred: QPixmap | None, original: QPixmap | None, image_size: QSize
    ) -> None:
        """New pixels; a larger version of the same image keeps what the moderator sees."""
        old = self.image_size
        self.blurred, self.original, self.error = blurred, original, None
        self.image_size = QSize(image_size)
        if not self.fit and old.width() > 0 and image_size.width() > 0:
            self.zoom *= old.width() / image_size.width()  # same place, same size on screen
        self._layout()

    def set_error(self, text: str) -> None:
        self.blurred = self.original = None
        self.image_size = QSize()
        self.error = text
        self.update()
        self.changed.emit()

    def clear(self) -> None:
        self.blurred = self.original = None
        self.image_size = QSize()
        self.error = None
        self.fit = True
        self.update()

    # --- zoom and pan ---

    def fit_zoom(self) -> float:
        if self.image_size.isEmpty():
            return 1.0
        return min(self.width() / self.image_size.width(), self.height() / self.image_size.height())

    def toggle_actual_size(self) -> None:
        """Fit ↔ 1:1, keeping the image point at the centre of the view where it is."""
        if self.fit:
            self.zoom_at(1.0, QPointF(self.width() / 2, self.height() / 2))
        else:
            self.fit = True
            self._layout()

    def zoom_at(self, zoom: float, at: QPointF) -> None:
        """Zoom so that the image point under `at` stays under it."""
        if self.image_size.isEmpty():
            return
        zoom = max(MIN_ZOOM, min(MAX_ZOOM, zoom))
        point = (at - self.offset) / self.zoom
        self.fit = False
        self.zoom = zoom
        self.offset = at - point * zoom
        self._layout()

    def image_rect(self) -> QRectF:
        return QRectF(
            self.offset,
            QSize(
                round(self.image_size.width() * self.zoom),
                round(self.image_size.height() * self.zoom),
            ).toSizeF(),
        )

    def _layout(self) -> None:
        """Fit, or keep the image over the view: centred when smaller, no gap when larger."""
        if self.fit:
            self.zoom = self.fit_zoom()
        width = self.image_size.width() * self.zoom
        height = self.image_size.height() * self.zoom
        self.offset = QPointF(
            _place(self.offset.x(), width, self.width()),
            _place(self.offset.y(), height, self.height()),
        )
        self.update()
        self.changed.emit()

    # --- events ---

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt API)
        painter = QPainter(self)
        painter.fillRect(self.rect(), HIDDEN)
        if self.hide_all:
            return  # Esc-hide-all: nothing but the background
        if self.error:
            painter.setPen(ERROR_TEXT)
            painter.drawText(
                self.rect().adjusted(24, 24, -24, -24),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                f"⚠ This file cannot be shown\n\n{self.error}",
            )
            return
        pixmap = self.original if self.revealed else self.blurred
        if pixmap is None or pixmap.isNull():
            return  # still loading: the background, never unblurred pixels
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(self.image_rect(), pixmap, QRectF(pixmap.rect()))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._layout()

    def event(self, event) -> bool:
        # Esc is the window's hide-all shortcut; here it leaves the loupe (handled as a key).
        if event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Escape:
            self.back_requested.emit()
        elif event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self.reveal_requested.emit(True)  # held Space reveals, as on the grid
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self.reveal_requested.emit(False)
        else:
            super().keyReleaseEvent(event)

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt API)
        notches = event.angleDelta().y() / 120
        if notches:
            self.zoom_at(self.zoom * WHEEL_STEP**notches, event.position())
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
            self._panning = False
            self._hold.start()  # press and hold reveals, as on a tile
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self._press is None:
            return
        delta = event.position() - self._press
        if not self._panning and math.hypot(delta.x(), delta.y()) <= DRAG_SLOP:
            return
        if not self._panning:
            self._panning = True
            self._hold.stop()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        self._press = event.position()
        self.offset = self.offset + delta  # a new point: never alter one a caller holds
        if not self.fit or self.zoom > self.fit_zoom():
            self.fit = False
        self._layout()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self._hold.stop()
        self._press = None
        if self._panning:
            self._panning = False
            self.unsetCursor()
        if self._held_reveal:
            self._held_reveal = False
            self.reveal_requested.emit(False)

    def _held(self) -> None:
        self._held_reveal = True
        self.reveal_requested.emit(True)


class Loupe(QWidget):
    """The view plus a caption; loads the current item's full-size pixels off the GUI thread."""

    def __init__(self, thumbnails: ThumbnailCache, hold_ms: int, parent=None) -> None:
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.view = LoupeView(hold_ms)
        self.caption = QLabel()
        self.caption.setTextFormat(Qt.TextFormat.PlainText)
        self.caption.setContentsMargins(6, 2, 6, 2)
        # A long caption must not push the splitter about as the moderator moves on.
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.caption)
        self.path: Path | None = None
        self.hash: str | None = None
        self.name = ""
        self.label: str | None = None
        self.saving = False
        self.score: float | None = None
        self.loading = False
        self.changed_on_disk = False
        self._serial = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # one image at a time; stale requests are dropped
        self._signals = _Signals()
        self._signals.done.connect(self._arrived, Qt.ConnectionType.QueuedConnection)
        thumbnails.changed.connect(self._thumbnail_arrived)
        self.view.changed.connect(self._update_caption)

    def show_item(
        self,
        path: Path | None,
        content_hash: str | None = None,
        error: str | None = None,
        *,
        label: str | None = None,
        saving: bool = False,
        score: float | None = None,
    ) -> None:
        """Show an item: its stored error, or its thumbnail now and its full pixels soon."""
        self.label, self.saving, self.score = label, saving, score
        if path is not None and (path, content_hash) == (self.path, self.hash):
            self._update_caption()  # the same item (a label changed): keep pixels and zoom
            return
        self._serial += 1
        self._pool.clear()  # drop decodes not started for items the moderator has passed
        self.path, self.hash = path, content_hash
        self.name = path.name if path else ""
        self.changed_on_disk = False
        self.view.revealed = False
        self.view.fit = True
        self.loading = False
        if path is None:
            self.view.clear()
        elif error or not content_hash:
            self.view.set_error(error or "no score for this file")
        else:
            self._show_thumbnail()
            self._load()
        self._update_caption()

    def reload(self) -> None:
        """Blur settings changed: make the pixels again, keeping the item."""
        path, content_hash = self.path, self.hash
        self.path = self.hash = None
        if path is not None:
            self.show_item(path, content_hash, self.view.error)

    def set_revealed(self, on: bool) -> None:
        self.view.revealed = on
        self.view.update()
        self._update_caption()

    def set_hide_all(self, hidden: bool) -> None:
        self.view.hide_all = hidden
        self.view.update()
        self._update_caption()

    def wait_idle(self, timeout_ms: int = 5000) -> bool:
        """For tests and screenshots: wait for the decode in flight (its result still queues)."""
        return self._pool.waitForDone(timeout_ms)

    def _load(self) -> None:
        self.loading = True
        self._pool.start(
            _Decode(
                self.path,
                self._serial,
                display_limit(),
                self.thumbnails.strength,
                self.thumbnails.grayscale,
                self._signals,
            )
        )

    def _show_thumbnail(self) -> None:
        blurred = self.thumbnails.blurred(self.hash)
        if blurred is not None and not blurred.isNull():
            self.view.set_pixmaps(blurred, self.thumbnails.original(self.hash), blurred.size())

    def _thumbnail_arrived(self, content_hash: str) -> None:
        if content_hash == self.hash and self.loading and self.view.blurred is None:
            self._show_thumbnail()

    def _arrived(
        self, serial: int, original: QImage, blurred: QImage, size, error: str, digest: str
    ) -> None:
        if serial != self._serial:
            return  # the moderator has moved on
        self.loading = False
        if error:
            self.view.set_error(error)
        else:
            self.changed_on_disk = digest != self.hash
            self.view.set_pixmaps(
                QPixmap.fromImage(blurred), QPixmap.fromImage(original), QSize(*size)
            )
        self._update_caption()

    def _update_caption(self) -> None:
        if self.path is None:
            self.caption.setText("No image selected · Esc: back to the grid")
            return
        parts = [self.name]
        if self.score is not None:
            parts.append(f"score {self.score:.2f}")
        if self.label or self.saving:
            # "…" until the library has committed the decision, as on the tile
            parts.append(
                {"unsafe": "UNSAFE", "safe": "SAFE"}.get(self.label, "") + "…" * self.saving
            )
        view = self.view
        if self.loading:
            parts.append("loading full size…")  # the thumbnail's size says nothing yet
        elif not view.image_size.isEmpty() and not view.error:
            parts.append(f"{view.image_size.width()}×{view.image_size.height()}")
            zoom = f"{view.zoom:.0%}"
            parts.append(f"fit ({zoom})" if view.fit else zoom)
        if self.changed_on_disk:
            parts.append("⚠ the file changed since it was scanned")
        if view.hide_all:
            parts.append("hidden (View → Hide all images)")
        elif view.revealed:
            parts.append("REVEALED")
        elif not view.error:
            parts.append("blurred: hold Space to reveal")
        parts.append("Z: fit / 1:1 · Esc: back to the grid")
        self.caption.setText(" · ".join(parts))
