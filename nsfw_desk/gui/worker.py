"""The one background pattern of the desk: a worker QObject living on its own QThread.

The worker owns the model (torch is imported here, never on the GUI thread) and its own
library connection; it reports through queued signals. The GUI asks for work with queued
signals and stops it with `cancel()`, which only sets a thread-safe flag. Exports use the
same pattern (ExportWorker on its own TaskThread).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.logs import log_unexpected
from nsfw_desk.core.progress import CancelToken
from nsfw_desk.core.store import Library, LibraryBusy, LibraryError, LibraryFull

log = logging.getLogger(__name__)


def keep_collections_short() -> None:
    """Move every object alive now (torch, timm, Qt's wrappers, the model: ~390,000 of them)
    out of the garbage collector's sight, once they are loaded: when the window is built,
    and again when a scan's model is.

    A full collection walks every tracked object while holding the interpreter lock: ~200 ms
    with torch loaded (2-core AMD EPYC), in whichever thread allocated, and the window froze
    for as long (tests/test_gui.py's responsiveness test saw a 240 ms stall). These objects
    live as long as the process, so the collector has nothing to find among them; later
    collections look only at what is newer (after the freeze a full one took < 1 ms).
    Without torch, the desk on a million items: one 76 ms frame in 201 while scrolling,
    a full collection, 37 ms at most after the freeze (`nsfw-desk bench --desk-scale`).
    Python's documentation recommends `gc.freeze()` for this.
    """
    import gc

    gc.freeze()


def failure_kind(exc: BaseException) -> str:
    """A short name for what went wrong, so the window can offer the right action."""
    if isinstance(exc, LibraryFull):
        return "full"
    if isinstance(exc, LibraryBusy):
        return "busy"
    if isinstance(exc, LibraryError):
        return "library"
    return "unexpected"


@dataclass(frozen=True)
class ScanRequest:
    folder: Path
    model: str | None  # hub id or folder; None or "" is the default model
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 0  # 0: auto (ScanOptions.batch_for)
    unsafe_label: str | None = None
    serial: int = 0  # tells the GUI which request a `finished` answers
    shown_model: str | None = None  # the model the grid shows (the switcher's choice), if any
    detectors: tuple[str, ...] = ()  # the other enabled detectors' models (issue 13)
    # Made with the request on the GUI thread, so Stop pressed before the worker takes the
    # request up (while the scan before it winds down) stops this one too.
    cancel: CancelToken = field(default_factory=CancelToken, compare=False, repr=False)


class LibraryOwner(QObject):
    """A worker that opens its own library connection on first use, on its own thread, and
    closes it there (TaskThread calls `close` as the thread ends)."""

    def __init__(self, library_path: Path | None) -> None:
        super().__init__()
        self._library_path = library_path
        self._library: Library | None = None

    def library(self) -> Library:
        if self._library is None:
            self._library = Library(self._library_path)
        return self._library

    def cancel(self) -> None:
        """Nothing to cancel by default: TaskThread.stop calls this."""

    @Slot()
    def close(self) -> None:
        if self._library is not None:
            self._library.close()
            self._library = None


class ScanWorker(LibraryOwner):
    """Loads stored results, then the model, then scans; every step reports by signal.

    When the model cannot be loaded (`model_failed`), the folder is listed without it."""

    # folder, model id, list[FileOutcome], their labels (hash → label): read here, not on
    # the GUI thread, because a big folder's labels take a noticeable query
    stored_results = Signal(object, str, object, dict)  # ..., core ResultColumns, labels
    model_loading = Signal(str)  # what is being loaded
    model_ready = Signal(str, str)  # model id, device description
    model_named = Signal(str, str)  # model id, its name for people (before model_ready)
    model_failed = Signal(str)  # the model could not be loaded: a message for the user
    library_failed = Signal(str, str)  # kind ("full", "busy", "library"), message
    scan_failed = Signal(str)  # anything else: a bug, with the message for the log
    progress = Signal(object)  # core Progress
    results = Signal(object, list, dict)  # folder, list[FileOutcome], their labels
    finished = Signal(object, object)  # ScanRequest, ScanSummary (None: it did not run)
    detector_failed = Signal(str)  # another detector could not be loaded: why (the scan goes on)

    def __init__(self, library_path: Path | None) -> None:
        super().__init__(library_path)
        self._model = None
        self._model_key: tuple | None = None
        self._extras: dict[tuple, object] = {}  # the other detectors, loaded once each
        self._cancel = CancelToken()

    def cancel(self) -> None:
        """Thread-safe: called from the GUI thread while `scan` runs here."""
        self._cancel.cancel()

    @Slot(object)
    def scan(self, request: ScanRequest) -> None:
        self._cancel = cancel = request.cancel
        folder = request.folder
        try:
            library = self.library()
            known_model = request.shown_model or (
                self._model.model_id
                if self._model
                else primary_model_id(library, request) or library.last_model_for(folder)
            )
            if known_model:
                self._emit_stored(library, folder, known_model)
            if cancel.cancelled:  # stopped before it began
                self.finished.emit(request, None)
                return
            model = self._load(request)
            if cancel.cancelled:
                self.finished.emit(request, None)
                return
            if model is not None and model.model_id != known_model:
                self._emit_stored(library, folder, model.model_id)
            from nsfw_desk.core.scan import ScanOptions, scan_folder

            # Without a model the folder is still listed (thumbnails, no scores) so the
            # moderator can review; a later scan with a model scores the same rows.
            extras = self._load_extras(request) if model is not None else []
            scanned = [model, *extras] if extras else model
            summary = scan_folder(
                folder,
                scanned,
                library,
                options=ScanOptions(batch_size=request.batch_size or None),
                progress=self.progress.emit,
                on_results=lambda outcomes: self._emit_results(library, folder, outcomes),
                cancel=cancel,
                stored_model=known_model,
            )
            self.finished.emit(request, summary)
        except ModelError as exc:  # the library's scores mean another class (core/scan)
            self.model_failed.emit(str(exc))
            self.finished.emit(request, None)
        except LibraryError as exc:
            log.debug("scan stopped by the library", exc_info=True)
            self.library_failed.emit(failure_kind(exc), str(exc))
            self.finished.emit(request, None)
        except Exception as exc:  # never let a worker exception vanish silently
            log_unexpected(log, "scan failed", exc)
            self.scan_failed.emit(f"{type(exc).__name__}: {exc}")
            self.finished.emit(request, None)

    def _emit_results(self, library, folder: Path, outcomes: list) -> None:
        """New results with their labels, read here so the GUI thread never queries."""
        from nsfw_desk.core.review import ReviewStore

        labels = ReviewStore(library).current_labels({o.hash for o in outcomes if o.hash})
        self.results.emit(folder, outcomes, labels)

    def _emit_stored(self, library, folder: Path, model_id: str) -> None:
        from nsfw_desk.core.result_columns import read_folder

        columns, labels = read_folder(library, folder, model_id)  # numpy columns: no per-row
        self.stored_results.emit(folder, model_id, columns, labels)

    def _load_extras(self, request: ScanRequest) -> list:
        """The other enabled detectors; one that cannot be loaded is said and left out."""

        loaded = []
        for spec in request.detectors:
            key = (spec, request.device, request.precision)
            if key not in self._extras:
                self.model_loading.emit(spec or "the default model")
                try:
                    self._extras[key] = load_any_detector(spec, request, self.progress.emit)
                except ModelError as exc:
                    self.detector_failed.emit(f"{spec}: {exc}")
                    continue
                keep_collections_short()
            loaded.append(self._extras[key])
        return loaded

    def _load(self, request: ScanRequest):
        from nsfw_desk.core.backends import load_detector

        key = (request.model or "", request.device, request.precision, request.unsafe_label)
        if self._model is not None and self._model_key == key:
            return self._model
        self.model_loading.emit(request.model or "the default model")
        try:
            model = load_detector(
                request.model or None,
                device=request.device,
                precision=request.precision,
                unsafe_label=request.unsafe_label,
                progress=self.progress.emit,
            )
        except ModelError as exc:
            self.model_failed.emit(str(exc))
            return None
        self._model, self._model_key = model, key
        keep_collections_short()
        self.model_named.emit(model.model_id, model.display_name)
        self.model_ready.emit(model.model_id, model.describe())
        return model


def primary_model_id(library: Library, request: ScanRequest) -> str | None:
    """With several detectors, the primary's id if the library knows it: its stored scores
    show first, not those of whichever detector scanned last."""
    if not request.detectors:
        return None
    from nsfw_desk.core.detector_columns import resolve

    found = resolve([(request.model or "", 0.0)], library.models_by_source())
    return found[0].model_id if found else None


def load_any_detector(spec: str, request: ScanRequest, progress):
    """Another enabled detector, of any backend (core/backends.load_detector)."""
    from nsfw_desk.core.backends import load_detector

    return load_detector(
        spec or None, device=request.device, precision=request.precision, progress=progress
    )


class ExportWorker(QObject):
    """Writes a dataset export on its own thread; same pattern as the scan worker."""

    progress = Signal(object)  # core Progress
    finished = Signal(object)  # ExportReport
    failed = Signal(str)  # a message for the user (also for a cancelled export)

    def __init__(self, library_path: Path | None) -> None:
        super().__init__()
        self._library_path = library_path
        self._cancel = CancelToken()

    def cancel(self) -> None:
        self._cancel.cancel()

    @Slot(object)
    def export(self, options) -> None:
        from nsfw_desk.core.export import ExportError, export_dataset
        from nsfw_desk.core.progress import Cancelled

        self._cancel = CancelToken()
        try:
            with Library(self._library_path) as library:
                report = export_dataset(
                    library, options, progress=self.progress.emit, cancel=self._cancel
                )
        except Cancelled:
            self.failed.emit("Export cancelled; nothing was written.")
        except (ExportError, LibraryError) as exc:
            self.failed.emit(str(exc))
        except Exception as exc:
            log_unexpected(log, "export failed", exc)
            self.failed.emit(
                f"The export failed and nothing was written: {type(exc).__name__}: {exc}"
            )
        else:
            self.finished.emit(report)


class TaskThread:
    """A started QThread holding one worker object; `stop` cancels, closes and joins it."""

    def __init__(self, worker: QObject, name: str) -> None:
        self.thread = QThread()
        self.thread.setObjectName(name)
        self.worker = worker
        worker.moveToThread(self.thread)
        if hasattr(worker, "close"):
            # `finished` is emitted on the worker's own thread as its loop ends: a direct
            # call closes the worker's connections on the thread that opened them.
            self.thread.finished.connect(worker.close, Qt.ConnectionType.DirectConnection)
        self.thread.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        self.worker.cancel()
        self.thread.quit()
        self.thread.wait(timeout_ms)
