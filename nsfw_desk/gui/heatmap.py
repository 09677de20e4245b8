"""'Why was it flagged' (H): a heat map of the detector's evidence over the blurred preview.

The map is computed on demand, on its own worker thread (it needs torch; core/explain.py),
for the current item only, and drawn by the detail pane over whatever the preview shows:
the blurred thumbnail, or the original only while the moderator holds reveal. The worker
borrows the scan worker's loaded model (explaining changes nothing in it, so the two threads
may share it) and loads the model itself only when no scan has loaded one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QRectF, Qt, Signal, Slot
from PySide6.QtGui import QImage, QPainter, QPixmap

from nsfw_desk.core.logs import log_unexpected
from nsfw_desk.gui.worker import TaskThread

log = logging.getLogger(__name__)

HEAT_KEY = "H"


@dataclass(frozen=True)
class ExplainRequest:
    serial: int
    path: Path
    digest: str
    model: str | None  # the desk's model spec, for when no scan has loaded one
    device: str = "auto"


class ExplainWorker(QObject):
    ready = Signal(int, str, object)  # serial, content hash, core HeatMap
    failed = Signal(int, str, str)  # serial, content hash, message for the status line

    def __init__(self, borrow: Callable[[], object | None]) -> None:
        super().__init__()
        self._borrow = borrow
        self._own = None
        self._own_key: tuple | None = None

    def cancel(self) -> None:
        """One heat map takes well under a second: nothing to cancel."""

    def _model(self, request: ExplainRequest):
        model = self._borrow()
        if model is not None:
            return model
        key = (request.model or "", request.device)
        if self._own is None or self._own_key != key:
            from nsfw_desk.core.runtime import load_model

            self._own = load_model(request.model or None, device=request.device)
            self._own_key = key
        return self._own

    @Slot(object)
    def explain(self, request: ExplainRequest) -> None:
        from nsfw_desk.core.explain import explain, supports
        from nsfw_desk.core.hub import ModelError
        from nsfw_desk.core.images import ImageError, content_hash, decode, read_file

        try:
            model = self._model(request)
            if not supports(model):
                name = getattr(model, "display_name", "this detector")
                self.failed.emit(
                    request.serial,
                    request.digest,
                    f"No heat map: {name} is not a ViT (the heat map explains ViT detectors).",
                )
                return
            data = read_file(request.path)
            if content_hash(data) != request.digest:
                self.failed.emit(
                    request.serial,
                    request.digest,
                    f"No heat map: {request.path.name} changed since it was scanned; rescan (F5).",
                )
                return
            pixels = decode(data, min_side=model.input_size)[0]
            self.ready.emit(request.serial, request.digest, explain(model, pixels))
        except (ModelError, ImageError) as exc:
            self.failed.emit(request.serial, request.digest, f"No heat map: {exc}")
        except Exception as exc:  # a bug: say so instead of leaving the line waiting
            log_unexpected(log, "heat map failed", exc)
            self.failed.emit(
                request.serial, request.digest, f"Heat map failed: {type(exc).__name__}: {exc}"
            )


class HeatMaps(QObject):
    """The H toggle: asks the worker for the current item's map and hands it to the pane."""

    requested = Signal(object)

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.on = False
        self._serial = 0
        self._asked: str | None = None  # the content hash last asked for
        self.task: TaskThread | None = None

    def _worker(self) -> ExplainWorker:
        if self.task is None:
            scan = self.window.worker.worker
            worker = ExplainWorker(lambda: getattr(scan, "_model", None))
            self.task = TaskThread(worker, "nsfw-desk-explain")
            self.requested.connect(worker.explain, Qt.ConnectionType.QueuedConnection)
            worker.ready.connect(self._ready)
            worker.failed.connect(self._failed)
        assert isinstance(self.task.worker, ExplainWorker)
        return self.task.worker

    def toggle(self, on: bool) -> None:
        self.on = on
        self.window.detail.set_heat_visible(on)
        if on:
            self.current_changed()

    def current_changed(self) -> None:
        """The detail pane shows another item (or the same one again)."""
        detail = self.window.detail
        if not self.on or detail.hash is None or detail.path is None:
            return
        if detail.heat_for == detail.hash or self._asked == detail.hash:
            return  # drawn already, or on its way
        self._worker()
        self._serial += 1
        self._asked = detail.hash
        detail.set_heat_text("Computing the heat map…")
        self.requested.emit(
            ExplainRequest(
                self._serial,
                detail.path,
                detail.hash,
                self.window._model_spec(),
                self.window.device_override or self.window.settings.device,
            )
        )

    def _ready(self, serial: int, digest: str, heat) -> None:
        if serial == self._serial:
            self._asked = None
        self.window.detail.set_heat(digest, heat)

    def _failed(self, serial: int, digest: str, message: str) -> None:
        if serial == self._serial:
            self._asked = None
        if digest == self.window.detail.hash:
            self.window.detail.set_heat_text(message)

    def stop(self) -> None:
        if self.task is not None:
            self.task.stop()


def overlay_heat(pixmap: QPixmap, heat) -> QPixmap:
    """`pixmap` (the preview as shown) with `heat` painted over the model's crop of it."""
    from nsfw_desk.core.explain import heat_colours

    rgba = np.ascontiguousarray(heat_colours(heat.values))
    rows, cols = rgba.shape[:2]
    image = QImage(rgba.data, cols, rows, cols * 4, QImage.Format.Format_RGBA8888).copy()
    out = QPixmap(pixmap)
    x0, y0, x1, y1 = heat.box
    w, h = out.width() / out.devicePixelRatio(), out.height() / out.devicePixelRatio()
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
    painter.drawImage(QRectF(x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h), image)
    painter.end()
    return out
