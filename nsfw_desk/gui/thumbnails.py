"""Thumbnails for painting: loaded and blurred off the GUI thread, cached as pixmaps.

The stored thumbnails are unblurred; blurring happens here, at display time, so that blur
strength and grayscale can change without touching the library. Only `blurred()` is used for
ordinary painting; `original()` is asked for one deliberately revealed item.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict, deque
from pathlib import Path

from PIL import Image, ImageFilter
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap

from nsfw_desk.core.images import THUMBNAIL_SIZE
from nsfw_desk.core.store import ThumbnailReader


def blur(image: Image.Image, strength: int, grayscale: bool = False) -> Image.Image:
    """A Gaussian blur whose radius is `strength` pixels per 256 pixels of image size."""
    radius = max(1.0, strength * max(image.size) / THUMBNAIL_SIZE)
    out = image.convert("RGB").filter(ImageFilter.GaussianBlur(radius))
    return out.convert("L").convert("RGB") if grayscale else out


def to_qimage(image: Image.Image) -> QImage:
    rgb = image.convert("RGB")
    return QImage(
        rgb.tobytes(), rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888
    ).copy()  # copy: own the pixels


class _Signals(QObject):
    done = Signal(str, int, QImage, QImage)  # hash, generation, original, blurred


def _load(
    reader: ThumbnailReader,
    content_hash: str,
    generation: int,
    strength: int,
    grayscale: bool,
    signals: _Signals,
) -> None:
    data = reader.jpeg(content_hash)
    try:
        with Image.open(io.BytesIO(data or b"")) as opened:
            image = opened.convert("RGB")
    except Exception:  # missing or unreadable thumbnail: the tile keeps a placeholder
        signals.done.emit(content_hash, generation, QImage(), QImage())
        return
    blurred = blur(image, strength, grayscale)
    signals.done.emit(content_hash, generation, to_qimage(image), to_qimage(blurred))


class _Drain(QRunnable):
    """Loads queued thumbnails until the queue is empty. At most one runnable per pool
    thread, started once per turn of the event loop, not one per thumbnail while painting:
    each start costs the GUI thread a wake-up and the interpreter lock, and scrolling a big
    grid asks for a screenful of thumbnails every frame."""

    def __init__(self, cache: ThumbnailCache) -> None:
        super().__init__()
        self.cache = cache

    def run(self) -> None:
        cache = self.cache
        while True:
            with cache._lock:
                if not cache._queue:
                    cache._draining -= 1
                    return
                job = cache._queue.popleft()
            _load(*job)


class ThumbnailCache(QObject):
    """hash → (blurred, original) pixmaps, loaded on demand in a small thread pool."""

    changed = Signal(str)  # a thumbnail arrived; views repaint

    def __init__(
        self,
        thumbnails_path: Path | None,
        *,
        strength: int = 12,
        grayscale: bool = False,
        capacity: int = 3000,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self.strength, self.grayscale, self.capacity = strength, grayscale, capacity
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._signals = _Signals()
        self._signals.done.connect(self._arrived, Qt.ConnectionType.QueuedConnection)
        self._cache: OrderedDict[str, tuple[QPixmap | None, QPixmap | None]] = OrderedDict()
        self._pending: set[str] = set()
        self._generation = 0
        # Loads waiting for a pool thread: (reader, hash, generation, strength, grayscale,
        # signals); `_draining` runnables empty it (guarded by `_lock`).
        self._queue: deque[tuple] = deque()
        self._lock = threading.Lock()
        self._draining = 0
        self._kick = QTimer(self, singleShot=True, interval=0)
        self._kick.timeout.connect(self._start_draining)
        self.set_path(thumbnails_path)

    def set_path(self, thumbnails_path: Path | None) -> None:
        # Read-only connections per pool thread (core/store.py): the library's own
        # connection belongs to the worker thread.
        self._reader = ThumbnailReader(thumbnails_path) if thumbnails_path else None
        self.clear()

    def set_style(self, strength: int, grayscale: bool) -> None:
        self.strength, self.grayscale = strength, grayscale
        self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._pending.clear()
        with self._lock:  # loads for the old style would be thrown away on arrival
            self._queue.clear()

    def blurred(self, content_hash: str | None) -> QPixmap | None:
        """The blurred thumbnail, or None while it loads (paint a placeholder)."""
        entry = self._get(content_hash)
        return entry[0] if entry else None

    def original(self, content_hash: str | None) -> QPixmap | None:
        entry = self._get(content_hash)
        return entry[1] if entry else None

    def wait_idle(self, timeout_ms: int = 5000) -> bool:
        """For tests and screenshots: wait for queued loads (their results still queue)."""
        self._start_draining()
        return self._pool.waitForDone(timeout_ms)

    def _start_draining(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._draining >= self._pool.maxThreadCount():
                    return
                self._draining += 1
            self._pool.start(_Drain(self))

    def _get(self, content_hash: str | None):
        if not content_hash:
            return None
        entry = self._cache.get(content_hash)
        if entry is not None:
            self._cache.move_to_end(content_hash)
            return entry
        if content_hash not in self._pending and self._reader is not None:
            self._pending.add(content_hash)
            job = (
                self._reader,
                content_hash,
                self._generation,
                self.strength,
                self.grayscale,
                self._signals,
            )
            with self._lock:
                self._queue.append(job)
            if not self._kick.isActive():
                self._kick.start()
        return None

    def _arrived(
        self, content_hash: str, generation: int, original: QImage, blurred: QImage
    ) -> None:
        if generation != self._generation:
            return  # made before the style changed; a fresh load is or will be queued
        self._pending.discard(content_hash)
        if original.isNull():
            self._cache[content_hash] = (None, None)
        else:
            self._cache[content_hash] = (QPixmap.fromImage(blurred), QPixmap.fromImage(original))
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.changed.emit(content_hash)
