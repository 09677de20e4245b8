"""Near-duplicate grouping and hash-list matching, each on a thread of its own, with Stop.

Both can take long on a big library (grouping 1,000,000 PDQ hashes, or reading every file
once to hash it for a list of file digests), so neither runs on the shared read thread,
where it would hold up the detail pane and every other read behind it. Each worker owns
its own library connection (WAL: readers never wait on the scan's writes) and keeps its
last answer with a key of what it depends on, so a rescan or reload that changed nothing
costs a query, not a recomputation:

- grouping: the folder's content hashes, PDQ hashes and qualities, and its exact copies;
- matching: the hash lists and the library's contents (`Library.hash_match_key`).

Stop sets a flag the core polls between steps; a stopped job's partial answer is dropped.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from nsfw_desk.core.logs import log_unexpected
from nsfw_desk.core.progress import Cancelled, CancelToken, Progress
from nsfw_desk.core.store import Library, LibraryError
from nsfw_desk.gui.worker import LibraryOwner, TaskThread

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.1  # progress signals at most this often (the GUI repaints on each)
SHOW_AFTER_MS = 400  # a job that answers sooner (a cached one) never shows in the status bar


class _CancellableWorker(LibraryOwner):
    """Runs one job at a time on its thread; `cancel` stops the running one, `skip` jobs
    queued up to a serial (asked for, then replaced before they started)."""

    progress = Signal(int, object)  # serial, core Progress
    done = Signal(int, object)  # serial, answer
    stopped = Signal(int)  # serial: Stop was honoured, nothing is shown
    failed = Signal(int, str)  # serial, a message for the status bar

    def __init__(self, library_path: Path | None) -> None:
        super().__init__(library_path)
        self._cancel = CancelToken()
        self._skip_upto = 0  # set from the GUI thread; an int assignment is atomic

    def cancel(self) -> None:
        """Thread-safe: stops the job that runs now."""
        self._cancel.cancel()

    def skip(self, serial: int) -> None:
        """Thread-safe: jobs up to `serial` that have not started yet will not."""
        self._skip_upto = max(self._skip_upto, serial)

    def _run(self, serial: int, work: Callable[[Library, CancelToken, Callable], Any]) -> None:
        if serial <= self._skip_upto:
            self.stopped.emit(serial)
            return
        self._cancel = CancelToken()
        cancel = self._cancel
        last = [0.0]

        def report(progress: Progress) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or progress.done >= progress.total > 0:
                last[0] = now
                self.progress.emit(serial, progress)

        try:
            answer = work(self.library(), cancel, report)
        except Cancelled:
            self.stopped.emit(serial)
        except LibraryError as exc:
            log.debug("background job stopped by the library", exc_info=True)
            self.failed.emit(serial, str(exc))
        except Exception as exc:  # never let a worker exception vanish silently
            log_unexpected(log, "a background job failed", exc)
            self.failed.emit(serial, f"{type(exc).__name__}: {exc}")
        else:
            if cancel.cancelled:
                self.stopped.emit(serial)  # what the core returned when stopped is partial
            else:
                self.done.emit(serial, answer)


@dataclass(frozen=True)
class FolderGroups:
    """A folder's groups as the grid takes them, made here so the window has no loop to run."""

    hashes: list[list[str]]  # each group's content hashes, the representative first
    near: dict[str, int]  # content hash → its near-duplicates (other contents in its group)
    group_of: dict[str, int]  # content hash → the number of its group in `hashes`


def folder_groups(groups: list) -> FolderGroups:
    hashes = [list(group.hashes) for group in groups]
    return FolderGroups(
        hashes,
        {digest: len(group) - 1 for group in hashes if len(group) > 1 for digest in group},
        {digest: number for number, group in enumerate(hashes) for digest in group},
    )


class GroupingWorker(_CancellableWorker):
    """Near-duplicate groups of a folder (core/dupes.library_groups)."""

    def __init__(self, library_path: Path | None) -> None:
        super().__init__(library_path)
        self._kept: dict[Path, tuple[bytes, FolderGroups]] = {}  # folder → (key, groups)

    @Slot(int, object)
    def group(self, serial: int, folder: Path) -> None:
        self._run(
            serial, lambda library, cancel, report: self._group(library, folder, cancel, report)
        )

    def _group(self, library: Library, folder: Path, cancel: CancelToken, report) -> FolderGroups:
        from nsfw_desk.core import dupes

        inputs = dupes.GroupInputs.read(library, folder)  # read once: key and groups
        key = inputs.key()
        kept = self._kept.get(folder)
        if kept is not None and kept[0] == key:
            return kept[1]
        groups = folder_groups(
            dupes.library_groups(library, folder, progress=report, cancel=cancel, inputs=inputs)
        )
        if not cancel.cancelled:
            self._kept = {folder: (key, groups)}  # one folder's: the open one
        return groups


class MatchingWorker(_CancellableWorker):
    """The library's hash-list matches (core/hashlists.match_library), whole library."""

    def __init__(self, library_path: Path | None) -> None:
        super().__init__(library_path)
        self._kept: tuple[tuple, tuple, dict] | None = None  # (key before, key after, matches)

    @Slot(int, object)
    def match(self, serial: int, force: bool) -> None:
        self._run(
            serial, lambda library, cancel, report: self._match(library, force, cancel, report)
        )

    def _match(self, library: Library, force: bool, cancel: CancelToken, report) -> dict:
        from nsfw_desk.core import hashlists

        key = library.hash_match_key()
        if not force and self._kept is not None and key in self._kept[:2]:
            return self._kept[2]
        if not key[0]:  # no list: nothing can match, and no file needs hashing
            matches: dict = {}
        else:
            matches = hashlists.match_library(library, progress=report, cancel=cancel)
        if not cancel.cancelled:
            # Matching stores the file digests it computed: the key after it counts them.
            self._kept = (key, library.hash_match_key(), matches)
        return matches


class TaskIndicator(QWidget):
    """'Grouping near-duplicates… [▮▮▮  ] [Stop]' in the status bar while a job runs."""

    stop_requested = Signal()

    def __init__(self, what: str, stop_tip: str, parent=None) -> None:
        super().__init__(parent)
        self.what = what
        self.label = QLabel(f"{what}…")
        self.bar = QProgressBar()
        self.bar.setFixedWidth(110)
        self.bar.setTextVisible(False)
        self.stop = QPushButton("Stop")
        self.stop.setToolTip(stop_tip)
        self.stop.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the grid keeps the review keys
        self.stop.clicked.connect(self.stop_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 0, 0)
        for widget in (self.label, self.bar, self.stop):
            layout.addWidget(widget)
        self._delay = QTimer(self, singleShot=True, interval=SHOW_AFTER_MS)
        self._delay.timeout.connect(self.show)
        self.hide()

    def started(self) -> None:
        self.label.setText(f"{self.what}…")
        self.bar.setRange(0, 0)
        self._delay.start()

    def report(self, progress: Progress) -> None:
        if progress.total:
            self.bar.setRange(0, progress.total)
            self.bar.setValue(progress.done)
        if progress.message:
            self.label.setText(f"{self.what}: {progress.message}")

    def ended(self) -> None:
        self._delay.stop()
        self.hide()


class _Task(QObject):
    """The GUI's side of one worker: serials, the indicator, and answers only for the
    latest request."""

    answered = Signal(object, object)  # what the request was for, the answer
    said = Signal(str)  # a line for the status bar (stopped, failed)
    _request = Signal(int, object)

    def __init__(
        self, worker: _CancellableWorker, slot, name: str, indicator: TaskIndicator, parent
    ) -> None:
        super().__init__(parent)
        self.worker = worker
        self._thread = TaskThread(worker, name)
        self._request.connect(slot, Qt.ConnectionType.QueuedConnection)
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_done)
        worker.stopped.connect(self._on_stopped)
        worker.failed.connect(self._on_failed)
        self.indicator = indicator
        indicator.stop_requested.connect(self.stop)
        self._serials = itertools.count(1)
        self.serial = 0  # the latest request
        self.running: dict[int, object] = {}  # serial → what it is for, until it answers
        self._stopping = False

    @property
    def busy(self) -> bool:
        return self.serial in self.running

    def ask(self, about: object, argument: object) -> int:
        """Run a job for `about` (a newer request replaces one still running)."""
        if self.running:
            self.worker.skip(self.serial)
            self.worker.cancel()
        self.serial = next(self._serials)
        self.running[self.serial] = about
        self._stopping = False
        self.indicator.started()
        self._request.emit(self.serial, argument)
        return self.serial

    def stop(self) -> None:
        """Stop: the running job stops at its next step, and nothing it found is shown."""
        if not self.running:
            return
        self._stopping = True
        self.worker.skip(self.serial)
        self.worker.cancel()
        self.indicator.label.setText(f"{self.indicator.what}: stopping…")

    def _on_progress(self, serial: int, progress: Progress) -> None:
        if serial == self.serial and not self._stopping:
            self.indicator.report(progress)

    def _settle(self, serial: int) -> object:
        about = self.running.pop(serial, None)
        if serial == self.serial:
            self.indicator.ended()
        return about

    def _on_done(self, serial: int, answer: object) -> None:
        about = self._settle(serial)
        if serial == self.serial and not self._stopping:
            self.answered.emit(about, answer)

    def _on_stopped(self, serial: int) -> None:
        self._settle(serial)
        if serial == self.serial:
            self.said.emit(f"{self.indicator.what}: stopped; nothing of it is shown")

    def _on_failed(self, serial: int, message: str) -> None:
        self._settle(serial)
        if serial == self.serial:
            self.said.emit(f"{self.indicator.what} failed: {message}")

    def close(self) -> None:
        self._thread.stop()


class DupeTasks(QObject):
    """Grouping (per folder) and matching (whole library), for the window."""

    grouped = Signal(object, object)  # folder, FolderGroups
    matched = Signal(dict)  # content hash → list[core.hashlists.Match]
    said = Signal(str)

    def __init__(self, library_path: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        grouping, matching = GroupingWorker(library_path), MatchingWorker(library_path)
        self.grouping = _Task(
            grouping,
            grouping.group,
            "nsfw-desk-grouping",
            TaskIndicator("Grouping near-duplicates", "Stop grouping; the groups are not shown"),
            self,
        )
        self.matching = _Task(
            matching,
            matching.match,
            "nsfw-desk-hash-lists",
            TaskIndicator("Matching hash lists", "Stop matching; no match is shown"),
            self,
        )
        self.grouping.answered.connect(self.grouped)
        self.matching.answered.connect(lambda _about, matches: self.matched.emit(matches))
        for task in (self.grouping, self.matching):
            task.said.connect(self.said)

    def indicators(self) -> list[TaskIndicator]:
        return [self.grouping.indicator, self.matching.indicator]

    def group(self, folder: Path) -> None:
        self.grouping.ask(folder, folder)

    def match(self, *, force: bool = False) -> None:
        """Match the library against the hash lists; reuses the last answer unless the
        lists or the library's contents changed since (or `force`)."""
        self.matching.ask(None, force)

    def stop(self) -> None:
        for task in (self.grouping, self.matching):
            task.close()
