"""Training on its own thread, the scan's pattern: a LibraryOwner on a TaskThread.

`core.training.train` runs here with the worker's own library connection (it reads the
decisions and stored embeddings, and writes the new model's scores); torch is imported
there, never on the GUI thread. Stop only sets a flag that `train` polls between steps; it
then keeps its last checkpoint, and Resume continues from it (`resume=True`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import Signal, Slot

from nsfw_desk.core.logs import log_unexpected
from nsfw_desk.core.store import LibraryError
from nsfw_desk.gui.worker import LibraryOwner

log = logging.getLogger(__name__)


class TrainWorker(LibraryOwner):
    progress = Signal(object)  # core.training.TrainProgress
    finished = Signal(object)  # core.training.TrainResult
    stopped = Signal(str)  # Stop was honoured: a message (the checkpoint is kept)
    failed = Signal(str, str)  # kind ("input", "library", "unexpected"), message for the user
    # out folder, whether a run there can be resumed, whether a model is saved there already
    checked = Signal(object, bool, bool)

    def __init__(self, library_path: Path | None) -> None:
        super().__init__(library_path)
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Thread-safe: the GUI asks; training stops at its next step."""
        self._stop.set()

    @Slot(object)
    def check(self, out: Path) -> None:
        """Whether `out` has a checkpoint to resume (a file look-up: kept off the GUI thread)."""
        from nsfw_desk.core.training import resumable

        try:
            found = resumable(Path(out))
        except Exception as exc:  # an unreadable checkpoint is not resumable; say why in the log
            log.debug("could not check %s for a checkpoint: %s", out, exc)
            found = False
        try:
            occupied = (Path(out) / "config.json").is_file()
        except OSError:
            occupied = False
        self.checked.emit(out, found, occupied)

    @Slot(object)
    def train(self, options) -> None:
        from nsfw_desk.core.training import TrainingError, TrainingStopped, train

        self._stop.clear()
        try:
            result = train(
                options, self.library(), progress=self.progress.emit, should_stop=self._stop.is_set
            )
        except TrainingStopped as exc:
            self.stopped.emit(str(exc) or "Training stopped; the last checkpoint is kept.")
        except TrainingError as exc:
            self.failed.emit("input", str(exc))
        except LibraryError as exc:
            self.failed.emit("library", str(exc))
        except Exception as exc:  # never let a worker exception vanish silently
            log_unexpected(log, "training failed", exc)
            self.failed.emit("unexpected", f"{type(exc).__name__}: {exc}")
        else:
            self.finished.emit(result)
        finally:
            self._stop.clear()
