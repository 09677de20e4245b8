"""The desk's only way to the library: reads and writes on worker threads, never on the GUI's.

SQLite can make a caller wait: a second instance or a long scan transaction holds the write
lock, the disk is full, a busy handler backs off. So the window owns no connection. Two
threads each own one (WAL lets them work side by side):

- `LibraryReads.query` runs read jobs (detail facts, history, calibration data) in order and
  hands each answer to its callback on the GUI thread. In WAL mode a reader never waits on a
  writer, so reads stay quick while a write is stuck.
- `ReviewWrites` commits decisions and undo/redo steps in the order they were made. A write
  that cannot be committed (lock held past the busy timeout, disk full) stays at the head of
  the queue and is retried with back-off; later writes wait behind it, so the append-only log
  keeps the moderator's order and nothing is dropped. The grid shows each decision at once,
  marked as saving until `saved` confirms it with the labels the library now holds.

Undo and redo go through the core's `ReviewStore.revert`: a step names the write it undoes by
its ticket, and the writer thread maps tickets to the decision ids it committed.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from nsfw_desk.core.logs import log_unexpected
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.store import Library, LibraryError
from nsfw_desk.gui.worker import LibraryOwner, TaskThread, failure_kind

log = logging.getLogger(__name__)
WRITE_WAIT_MS = 2000  # a decision waits this long for the lock before the desk says why
RETRY_FIRST_MS = 1000  # then it is tried again after this, doubling up to the max
RETRY_MAX_MS = 2000

Job = Callable[[Library], Any]


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, LibraryError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _ReadWorker(LibraryOwner):
    done = Signal(int, object)  # ticket, result
    failed = Signal(int, str, str)  # ticket, kind, message

    @Slot(int, object)
    def run(self, ticket: int, job: Job) -> None:
        try:
            result = job(self.library())
        except Exception as exc:
            log.debug("library read failed", exc_info=True)
            self.failed.emit(ticket, failure_kind(exc), describe_failure(exc))
        else:
            self.done.emit(ticket, result)


class LibraryReads(QObject):
    """Read jobs on the read thread; a job must touch only the Library it is given."""

    failed = Signal(str, str)  # kind, message: a read that could not be answered
    _run = Signal(int, object)

    def __init__(self, library_path: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker = _ReadWorker(library_path)
        self._task = TaskThread(self._worker, "nsfw-desk-library-reads")
        self._run.connect(self._worker.run, Qt.ConnectionType.QueuedConnection)
        self._worker.done.connect(self._on_done)
        self._worker.failed.connect(self._on_failed)
        self._tickets = itertools.count(1)
        self._callbacks: dict[int, Callable[[Any], None]] = {}

    def query(self, job: Job, on_done: Callable[[Any], None]) -> None:
        ticket = next(self._tickets)
        self._callbacks[ticket] = on_done
        self._run.emit(ticket, job)

    def pending(self) -> int:
        """Queries asked and not answered yet (the scale bench waits for none)."""
        return len(self._callbacks)

    def _on_done(self, ticket: int, result: object) -> None:
        callback = self._callbacks.pop(ticket, None)
        if callback is not None:
            callback(result)

    def _on_failed(self, ticket: int, kind: str, message: str) -> None:
        self._callbacks.pop(ticket, None)
        self.failed.emit(kind, message)

    def stop(self) -> None:
        self._callbacks.clear()
        self._task.stop()


# --- writes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Decide:
    """Give every item one label (None clears it)."""

    items: tuple[DecisionInput, ...]
    label: str | None
    reviewer: str
    threshold: float
    note: str | None = None  # stored with each of these decisions (gui/notes.py)


@dataclass(frozen=True)
class Tag:
    """Add or remove one tag on contents (gui/tags.py); changes no label."""

    hashes: tuple[str, ...]
    tag: str
    added: bool
    reviewer: str


@dataclass(frozen=True)
class Care:
    """Add to a reviewer's care counters of one day (core/care.py); changes no label."""

    reviewer: str
    day: str
    reveals: int = 0
    reveal_ms: int = 0
    flagged_reviewed: int = 0
    review_ms: int = 0


@dataclass(frozen=True)
class Revert:
    """Undo the decisions an earlier write (`of`, its ticket) committed; redo is the same."""

    of: int
    reviewer: str
    threshold: float


@dataclass(frozen=True)
class AiDecide:
    """Give every item one AI-generated value (True AI, False real, None clears it); changes
    no unsafe/safe label (gui/ai_label.py)."""

    items: tuple[DecisionInput, ...]
    generated: bool | None
    reviewer: str
    threshold: float | None = None


@dataclass(frozen=True)
class AiRevert:
    """Undo (or redo) the AI-generated rows an earlier AiDecide or AiRevert committed."""

    of: int
    reviewer: str
    threshold: float | None = None


Write = Decide | Revert | Tag | AiDecide | AiRevert | Care


class _WriteWorker(LibraryOwner):
    committed = Signal(int, dict)  # ticket, hash → label the library now holds (None: none)
    blocked = Signal(str, str)  # kind, message: the head write waits for a retry
    unblocked = Signal()
    failed = Signal(int, str, dict)  # ticket, message, hash → label held: it can never succeed

    def __init__(self, library_path: Path | None) -> None:
        super().__init__(library_path)
        self._queue: deque[tuple[int, Write]] = deque()
        self._ids: dict[int, list[int]] = {}  # ticket → committed decision ids
        self._hashes: dict[int, list[str]] = {}  # ticket → content hashes it touched
        self._retry = QTimer(self, singleShot=True)  # moves to the worker thread with self
        self._retry.timeout.connect(self._drain)
        self._delay_ms = RETRY_FIRST_MS
        self._is_blocked = False

    def library(self) -> Library:
        fresh = self._library is None
        library = super().library()
        if fresh:  # wait less than other writers, then say why and retry (never drop)
            library.wait_for_lock(WRITE_WAIT_MS)
        return library

    @Slot(int, object)
    def submit(self, ticket: int, op: Write) -> None:
        if isinstance(op, Decide):
            self._hashes[ticket] = [item.hash for item in op.items]
        elif isinstance(op, Tag | AiDecide | AiRevert | Care):
            # a tag, an AI-generated label or a care counter changes no label
            self._hashes[ticket] = []
        else:
            self._hashes[ticket] = list(self._hashes.get(op.of, []))
        self._queue.append((ticket, op))
        if not self._is_blocked:
            self._drain()

    def _drain(self) -> None:
        while self._queue:
            ticket, op = self._queue[0]
            try:
                labels = self._write(ticket, op)
            except LibraryError as exc:
                self._wait_and_retry(exc)
                return
            except Exception as exc:  # a bug, not a condition to wait out: say so, go on
                log_unexpected(log, "a review write failed", exc)
                self._queue.popleft()
                self.failed.emit(ticket, describe_failure(exc), self._held(ticket))
                continue
            self._queue.popleft()
            if self._is_blocked:
                self._is_blocked = False
                self._delay_ms = RETRY_FIRST_MS
                log.debug("library writable again; %d writes waiting", len(self._queue))
                self.unblocked.emit()
            self.committed.emit(ticket, labels)

    def _write(self, ticket: int, op: Write) -> dict[str, str | None]:
        reviews = ReviewStore(self.library())
        if isinstance(op, Care):
            self.library().add_care(
                op.reviewer,
                op.day,
                reveals=op.reveals,
                reveal_ms=op.reveal_ms,
                flagged_reviewed=op.flagged_reviewed,
                review_ms=op.review_ms,
            )
            ids: list[int] = []
        elif isinstance(op, AiDecide):
            ids = reviews.decide_ai(
                list(op.items), op.generated, reviewer=op.reviewer, threshold=op.threshold
            )
        elif isinstance(op, AiRevert):
            undone = self._ids.get(op.of, [])
            ids = (
                reviews.revert_ai(undone, reviewer=op.reviewer, threshold=op.threshold)
                if undone
                else []
            )
        elif isinstance(op, Tag):
            reviews.set_tag(op.hashes, op.tag, added=op.added, reviewer=op.reviewer)
            ids = []
        elif isinstance(op, Decide):
            ids = reviews.decide(
                list(op.items), op.label, reviewer=op.reviewer, threshold=op.threshold, note=op.note
            )
        else:
            undone = self._ids.get(op.of, [])
            ids = (
                reviews.revert(undone, reviewer=op.reviewer, threshold=op.threshold)
                if undone
                else []
            )
        self._ids[ticket] = ids
        return reviews.previous_labels(self._hashes[ticket])

    def _held(self, ticket: int) -> dict[str, str | None]:
        try:
            return ReviewStore(self.library()).previous_labels(self._hashes[ticket])
        except Exception:
            return {}

    def _wait_and_retry(self, exc: LibraryError) -> None:
        log.debug("review write blocked (%s); retry in %d ms", type(exc).__name__, self._delay_ms)
        self._is_blocked = True
        self.blocked.emit(failure_kind(exc), str(exc))
        self._retry.start(self._delay_ms)
        self._delay_ms = min(RETRY_MAX_MS, self._delay_ms * 2)


class ReviewWrites(QObject):
    """The GUI's side of the write thread: tickets, what is still saving, and why."""

    saved = Signal(int, dict)  # ticket, hash → label the library holds now
    failed = Signal(str, dict)  # message, hash → label the library holds
    state_changed = Signal()  # `waiting` or `problem` changed
    _submit = Signal(int, object)

    def __init__(self, library_path: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker = _WriteWorker(library_path)
        self._task = TaskThread(self._worker, "nsfw-desk-library-writes")
        self._submit.connect(self._worker.submit, Qt.ConnectionType.QueuedConnection)
        self._worker.committed.connect(self._on_committed)
        self._worker.blocked.connect(self._on_blocked)
        self._worker.unblocked.connect(self._on_unblocked)
        self._worker.failed.connect(self._on_failed)
        self._tickets = itertools.count(1)
        self._in_flight: dict[int, list[str]] = {}  # ticket → hashes
        self.saving: Counter[str] = Counter()  # hash → writes in flight that touch it
        self.expected: dict[str, str | None] = {}  # hash → label once the last write lands
        self.problem: tuple[str, str] | None = None  # (kind, message) while blocked
        self._care_tickets: set[int] = set()

    @property
    def waiting(self) -> int:
        """Writes made but not yet committed."""
        return len(self._in_flight)

    @property
    def decisions_waiting(self) -> int:
        """Writes made but not committed, leaving out care counters (gui/care.py)."""
        return len(self._in_flight) - len(self._care_tickets & self._in_flight.keys())

    def decide(
        self,
        items: Sequence[DecisionInput],
        label: str | None,
        *,
        reviewer: str,
        threshold: float,
        note: str | None = None,
    ) -> int:
        op = Decide(tuple(items), label, reviewer, threshold, note)
        return self._send(op, {item.hash: label for item in items})

    def tag(self, hashes: Sequence[str], tag: str, *, added: bool, reviewer: str) -> int:
        """Add or remove `tag` on contents, in order with the decisions; `saved` says when."""
        return self._send(Tag(tuple(hashes), tag, added, reviewer), {})

    def care(self, op: Care) -> int:
        """Add to the care counters (gui/care.py), in order with the decisions."""
        ticket = self._send(op, {})
        self._care_tickets.add(ticket)
        return ticket

    def revert(
        self, ticket: int, expected: dict[str, str | None], *, reviewer: str, threshold: float
    ) -> int:
        """Undo (or redo) write `ticket`; `expected` is what the items should show after."""
        return self._send(Revert(ticket, reviewer, threshold), expected)

    def shown_labels(self, stored: dict[str, str]) -> dict[str, str]:
        """Labels read from the library, with the decisions still in flight on top."""
        shown = dict(stored)
        for digest, label in self.expected.items():
            if label is None:
                shown.pop(digest, None)
            else:
                shown[digest] = label
        return shown

    def ai_decide(
        self,
        items: Sequence[DecisionInput],
        generated: bool | None,
        *,
        reviewer: str,
        threshold: float | None = None,
    ) -> int:
        """Write the AI-generated label, in order with the decisions; `saved` says when."""
        return self._send(AiDecide(tuple(items), generated, reviewer, threshold), {})

    def ai_revert(self, ticket: int, *, reviewer: str, threshold: float | None = None) -> int:
        """Undo (or redo) AI-generated write `ticket`."""
        return self._send(AiRevert(ticket, reviewer, threshold), {})

    def _send(self, op: Write, expected: dict[str, str | None]) -> int:
        ticket = next(self._tickets)
        hashes = list(expected)
        self._in_flight[ticket] = hashes
        self.saving.update(hashes)
        self.expected.update(expected)
        self._submit.emit(ticket, op)
        self.state_changed.emit()
        return ticket

    def _settle(self, ticket: int) -> None:
        self._care_tickets.discard(ticket)
        for digest in self._in_flight.pop(ticket, []):
            self.saving[digest] -= 1
            if self.saving[digest] <= 0:
                del self.saving[digest]
                self.expected.pop(digest, None)

    def _on_committed(self, ticket: int, labels: dict) -> None:
        self._settle(ticket)
        # A hash with a later write still in flight keeps the label shown for that write.
        self.saved.emit(ticket, {h: v for h, v in labels.items() if h not in self.saving})
        self.state_changed.emit()

    def _on_failed(self, ticket: int, message: str, labels: dict) -> None:
        self._settle(ticket)
        self.failed.emit(message, {h: v for h, v in labels.items() if h not in self.saving})
        self.state_changed.emit()

    def _on_blocked(self, kind: str, message: str) -> None:
        self.problem = (kind, message)
        self.state_changed.emit()

    def _on_unblocked(self) -> None:
        self.problem = None
        self.state_changed.emit()

    def stop(self) -> None:
        self._task.stop()
