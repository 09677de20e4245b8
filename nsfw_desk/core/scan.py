"""The batched scan: discover → cache check → decode pool → model batches → library.

Decoding runs in a small thread pool (Pillow and the file reads release the GIL) while the
calling thread runs the model on the previous batch, so the two overlap. Every batch is
committed before the next starts: a cancel or a crash loses at most the batch in flight, and
the next scan of the folder skips everything already stored.

Several detectors (core/detector.py) can score one scan: each file is read and decoded once
for all of them, each gets its own preprocessing (shared where two agree), and each runs its
forward pass on the batch; scores are stored per (content hash, model id) and cached per
model, so a file one detector already scored only runs the others. The first detector is the
primary one: its score is the outcome's `score`; `scores` holds every detector's.

Without a model (not downloaded yet, offline, a broken model folder) the same pipeline lists
the folder: discovery, content hash, decode for the thumbnail, the file rows and errors, no
score. A later scan with a model then scores those rows in place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

from nsfw_desk.core import gpu_prepare
from nsfw_desk.core.defaults import (
    BATCH_SIZE,
    CUDA_BATCH_SIZE,
    DECODE_NICENESS,
    GPU_DECODE_CHOICES,
    PROGRESS_INTERVAL_S,
    RESULT_CHUNK,
)
from nsfw_desk.core.detector import Detector
from nsfw_desk.core.gpu_decode import gpu_header
from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    THUMBNAIL_SIZE,
    DiscoveryStats,
    ErrorKind,
    FileEntry,
    FileError,
    ImageError,
    content_hash,
    decode,
    discover,
    make_thumbnail,
    read_file,
)
from nsfw_desk.core.logs import log_unexpected
from nsfw_desk.core.paths import absolute_folder
from nsfw_desk.core.pdq import pdq_hash
from nsfw_desk.core.progress import CancelToken, Progress, ProgressCallback
from nsfw_desk.core.runtime import available_cores
from nsfw_desk.core.stage_clock import StageClock
from nsfw_desk.core.store import (
    FileOutcome,
    Library,
    PdqLookup,
    ScoredFile,
    ScoreLookup,
    ThumbnailReader,
    path_key,
)
from nsfw_desk.core.torch_threads import one_torch_thread

if TYPE_CHECKING:  # torch is imported where a scan runs, not when the module loads
    import torch
    from PIL import Image

    from nsfw_desk.core.gpu_prepare import GpuPreparer

log = logging.getLogger(__name__)


GPU_BATCHES_IN_FLIGHT = 4  # sent to the GPU's thread and not yet taken back (H100 runs: 4)
GPU_BATCH_PIXELS = 200_000_000  # a GPU batch of 12-MP photos stops at 17 (600 MB decoded)


@dataclass
class ScanOptions:
    batch_size: int | None = None  # None: BATCH_SIZE on the CPU, CUDA_BATCH_SIZE on CUDA
    workers: int | None = None  # decode threads; default: see decode_workers
    include_hidden: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    # JPEGs decoded and prepared on the model's device (core/gpu_prepare.py): "auto" on
    # CUDA, "on" on any device (the tests run it on the CPU), "off" never.
    gpu_decode: str = "auto"
    # Threads preparing batches on the GPU, each on its own CUDA stream. bench_gpu on an H100:
    # one 1,285-1,565 images/s, two 1,080-1,437 (no gain: they share nvJPEG's locks and the GIL).
    # The thumbnails' JPEGs encoded on a thread of their own was slower too (one run, three
    # rounds: 906-1,025 against 1,158-1,350 images/s on the preparing thread; commit 0950373).
    gpu_threads: int = 1

    def decode_workers(self, device: str = "cpu") -> int:
        """On the CPU the model's threads need the cores (2 to 4 decode threads); on CUDA the
        decode threads read, hash and check headers, and decode what the GPU cannot: half
        the cores, 2 to 8."""
        if self.workers:
            return self.workers
        if device == "cuda":  # more threads only fight over the GIL (bench_gpu: 16 ≈ 8)
            return min(8, max(2, available_cores() // 2))
        return min(4, max(2, available_cores()))

    def batch_for(self, device: str = "cpu") -> int:
        return self.batch_size or (CUDA_BATCH_SIZE if device == "cuda" else BATCH_SIZE)


@dataclass
class ScanSummary:
    root: Path
    model_id: str | None  # None: listed without a model; else the primary detector's
    device: str
    files: int = 0
    scored: int = 0  # run through the model (at least one detector) in this scan
    listed: int = 0  # decoded for a thumbnail only (a scan without a model)
    cached: int = 0  # answered from the library without decoding
    from_embeddings: int = 0  # scored by a head-only model from stored base embeddings
    errors: int = 0
    ignored: int = 0  # not images (by name and content) or hidden
    elapsed_s: float = 0.0
    cancelled: bool = False
    scan_id: int | None = None
    unlisted: list[Path] = field(default_factory=list)  # folders that could not be read:
    # their stored results are kept, not forgotten (a drive that is not mounted)
    outcomes: list[FileOutcome] = field(default_factory=list, repr=False)
    model_ids: list[str] = field(default_factory=list)  # every detector's, primary first
    # Seconds per stage over all threads (core/stage_clock.py): where the time went.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    decoded_on_device: int = 0  # JPEGs decoded and prepared on the GPU (core/gpu_prepare.py)

    @property
    def images_per_s(self) -> float:
        return self.scored / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def reached(self) -> int:
        """Files the scan got to (scored, listed, answered from the library or failed): a
        stopped scan's `files` less this is what it left for the next one."""
        return self.scored + self.listed + self.cached + self.errors


@dataclass
class _Prepared:
    entry: FileEntry
    hash: str
    # detector index -> model input, for the detectors that have no score of the content yet
    # (empty when all have one, or listed without a model)
    tensors: dict[int, torch.Tensor] = field(default_factory=dict)
    thumbnail: bytes | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    decoded: bool = False  # False: the content is known, only the file row is new
    pdq: bytes | None = None  # the perceptual hash of the decoded pixels
    pdq_quality: int | None = None
    # detector indices scored from their base model's stored embedding (head-only models)
    via_base: tuple[int, ...] = ()


@dataclass
class _Deferred:
    """A JPEG read and hashed, left for the GPU to decode and prepare (core/gpu_prepare.py)."""

    entry: FileEntry
    hash: str
    data: bytes
    width: int
    height: int
    to_run: tuple[int, ...]  # detector indices to score it
    via_base: tuple[int, ...] = ()


ResultsCallback = Callable[[list[FileOutcome]], None]


class _Progress:
    """Turns counts into throttled Progress reports with rate and ETA."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.errors = 0
        self.fresh = 0
        self.fresh_total = 0
        self.start = time.monotonic()
        self.last = 0.0

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.callback or (not force and now - self.last < PROGRESS_INTERVAL_S):
            return
        self.last = now
        elapsed = now - self.start
        rate = self.fresh / elapsed if elapsed > 0 and self.fresh else 0.0
        remaining = self.fresh_total - self.fresh
        eta = remaining / rate if rate else None
        self.callback(
            Progress(
                "scan",
                self.done,
                self.total,
                self.errors,
                rate,
                eta,
                f"{self.done:,} of {self.total:,}",
            )
        )


def scan_folder(
    root: Path,
    model: Detector | Sequence[Detector] | None,
    library: Library,
    *,
    options: ScanOptions | None = None,
    progress: ProgressCallback | None = None,
    on_results: ResultsCallback | None = None,
    cancel: CancelToken | None = None,
    keep_outcomes: bool = False,
    stored_model: str | None = None,
) -> ScanSummary:
    """Scan `root` with `model` into `library`; every file ends as a score or an error.

    `model` is one detector, several (the first is the primary one: its score is each
    outcome's `score`; `scores` has every detector's), or None.
    `on_results` receives outcomes in chunks as they are committed (cached ones first);
    `cancel` stops the scan within about a second, keeping everything committed so far.
    With `model` None the folder is only listed (so a moderator can review without a model):
    files get their hash, facts and thumbnail, outcomes carry `stored_model`'s stored scores
    where there are any, and the next scan with a model scores the same rows.
    """
    options = options or ScanOptions()
    cancel = cancel or CancelToken()
    root = absolute_folder(root)  # stored paths name the file from any working folder
    detectors = _as_detectors(model)
    conflict = score_meaning_conflict(library, detectors)
    if conflict:
        raise ScoreMeaningConflict(conflict)
    primary = detectors[0] if detectors else None
    model_id = primary.model_id if primary else None
    for detector in detectors:
        library.register_model(
            detector.model_id,
            source=detector.spec.source,
            revision=detector.spec.revision,
            architecture=detector.architecture,
            labels=detector.labels,
            unsafe_labels=detector.unsafe_labels,
            embeddings_of=_head_only_base_id(detector),
        )
    summary = ScanSummary(
        root,
        model_id,
        primary.describe() if primary else "no model",
        model_ids=[d.model_id for d in detectors],
    )
    summary.scan_id = library.begin_scan(root, model_id)
    started = time.monotonic()
    clock = StageClock()

    def emit(outcomes: list[FileOutcome]) -> None:
        if keep_outcomes:
            summary.outcomes.extend(outcomes)
        if on_results and outcomes:
            on_results(outcomes)

    status = "failed"
    try:
        entries, found_errors, present, stats = _discover(
            root, options, progress, cancel, library.own_files()
        )
        summary.ignored = stats.ignored_not_images + stats.ignored_hidden
        score_ids = summary.model_ids or ([stored_model] if stored_model else [])
        todo, cached = _check_cache(library, root, score_ids, entries, bool(detectors))
        if detectors:
            todo, scored_now = _score_from_embeddings(library, root, todo, detectors)
            summary.from_embeddings = len(scored_now)
            cached += scored_now
        tracker = _Progress(progress, len(entries) + len(found_errors))
        tracker.fresh_total = len(todo)

        library.record_errors(found_errors, summary.scan_id)
        first = [_error_outcome(e) for e in found_errors] + cached
        for start in range(0, len(first), RESULT_CHUNK):
            emit(first[start : start + RESULT_CHUNK])
        summary.cached = sum(1 for o in cached if o.error_kind is None and o.cached)
        summary.errors = sum(1 for o in first if o.error_kind is not None)
        tracker.done, tracker.errors = len(first), summary.errors
        tracker.report(force=True)

        scored, known, errors, via_base, summary.decoded_on_device = _scan_entries(
            todo,
            detectors,
            library,
            options,
            cancel,
            tracker,
            emit,
            summary.scan_id,
            score_ids,
            clock,
        )
        summary.from_embeddings += via_base
        known -= via_base
        if not detectors:
            summary.listed += scored
        else:
            summary.scored += scored
        summary.cached += known
        summary.errors += errors
        summary.files = len(entries) + len(found_errors)
        summary.cancelled = cancel.cancelled
        if not summary.cancelled:
            library.forget_missing(root, present, keep_under=stats.unlisted)
        summary.unlisted = list(stats.unlisted)
        status = "cancelled" if summary.cancelled else "done"
        tracker.report(force=True)
    finally:
        summary.elapsed_s = time.monotonic() - started
        summary.stage_seconds = clock.seconds()
        library.finish_scan(
            summary.scan_id,
            status,
            files=summary.files,
            scored=summary.scored,
            cached=summary.cached,
            errors=summary.errors,
        )
    return summary


class ScoreMeaningConflict(ModelError):
    """The library holds scores of these weights for another unsafe class."""


def score_meaning_conflict(library: Library, detectors: Sequence[Detector]) -> str | None:
    """Why a scan with `detectors` would mix up stored scores, or None.

    A local model's id is its weights' hash, and scores are kept per id. The same weights
    read with another unsafe class (`--unsafe-label`, or a config.json naming its classes
    otherwise) would take the stored scores, which are another class's probability, as its
    own. Until the id says which class it scores, such a scan is refused with what to do."""
    for detector in detectors:
        stored = library.stored_unsafe_classes(detector.model_id)
        if stored is None:
            continue
        labels, unsafe = stored
        before = sorted(labels.index(u) for u in unsafe if u in labels)
        now = sorted(detector.labels.index(u) for u in detector.unsafe_labels)
        if before and now and before != now:
            return (
                f"This library holds scores of these weights ({detector.model_id}) as the "
                f"probability of {', '.join(unsafe)} (of {', '.join(labels)}); this scan "
                f"would score {', '.join(detector.unsafe_labels)} (of "
                f"{', '.join(detector.labels)}) with the same weights, and the stored scores "
                f"would be taken for it. Scan with --unsafe-label {unsafe[0]}, or into "
                "another library (--db)."
            )
    return None


def _as_detectors(model: Detector | Sequence[Detector] | None) -> list[Detector]:
    """The detectors of a scan, primary first; the same model twice is run once."""
    if model is None:
        return []
    found = [model] if not isinstance(model, Sequence) else list(model)
    unique: dict[str, Detector] = {}
    for detector in found:
        unique.setdefault(detector.model_id, detector)
    return list(unique.values())


def _stored_scores(
    library: Library, model_ids: list[str], hashes: set[str]
) -> dict[str, dict[str, float]]:
    """content hash -> {model id: stored score} for `model_ids` (those it has)."""
    found: dict[str, dict[str, float]] = {}
    for mid in model_ids:
        for digest, score in library.scores_for(mid, hashes).items():
            found.setdefault(digest, {})[mid] = score
    return found


def _outcome(
    entry: FileEntry,
    digest: str,
    scores: dict[str, float],
    model_ids: list[str],
    *,
    cached: bool,
) -> FileOutcome:
    """A scored file's outcome: the primary's score, and every detector's in `scores`."""
    return FileOutcome(
        entry.path,
        digest,
        scores.get(model_ids[0]) if model_ids else None,
        cached=cached,
        mtime_ns=entry.mtime_ns,
        size=entry.size,
        scores={mid: scores[mid] for mid in model_ids if mid in scores} if model_ids else None,
    )


def _discover(
    root: Path,
    options: ScanOptions,
    progress: ProgressCallback | None,
    cancel: CancelToken,
    library_files: list[Path],
):
    stats = DiscoveryStats()
    entries: list[FileEntry] = []
    errors: list[FileError] = []
    last = time.monotonic()
    for found in discover(
        root, include_hidden=options.include_hidden, stats=stats, never_open=library_files
    ):
        if isinstance(found, FileError):
            errors.append(found)
        else:
            entries.append(found)
        if progress and len(entries) % 1000 == 0 and time.monotonic() - last > 0.1:
            last = time.monotonic()
            progress(
                Progress(
                    "discover",
                    len(entries),
                    0,
                    len(errors),
                    message=f"Found {len(entries):,} images",
                )
            )
        if cancel.cancelled:
            break
    present = {path_key(e.path)[0] for e in entries} | {path_key(e.path)[0] for e in errors}
    return entries, errors, present, stats


def _check_cache(
    library: Library,
    root: Path,
    model_ids: list[str],
    entries: list[FileEntry],
    scanning: bool,
):
    """Split entries into work and outcomes answered from the library (no reads, no hashing).

    A listing (not `scanning`) needs nothing more for a known, unchanged file; a scan needs
    its score for every detector. Outcomes carry `model_ids`' stored scores (the first's as
    `score`).
    """
    known = library.known_files(root)
    known_errors = library.known_errors(root)
    maybe: list[tuple[FileEntry, str]] = []
    todo: list[FileEntry] = []
    cached: list[FileOutcome] = []
    for entry in entries:
        key = path_key(entry.path)[0]
        row = known.get(key)
        if row and row.hash and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            maybe.append((entry, row.hash))
            continue
        err = known_errors.get(key)
        if (
            err
            and err[0] == entry.size
            and err[1] == entry.mtime_ns
            and err[2] in ErrorKind.CONTENT_BOUND
        ):
            cached.append(
                FileOutcome(
                    entry.path, None, None, True, err[2], err[3], entry.mtime_ns, entry.size
                )
            )
            continue
        todo.append(entry)
    scores = _stored_scores(library, model_ids, {d for _, d in maybe})
    # Content stored before PDQ hashes is decoded once more for its hash (not scored again).
    lacking = library.hashes_lacking_pdq({d for _, d in maybe})
    for entry, digest in maybe:
        have = scores.get(digest, {})
        if (not scanning or len(have) == len(model_ids)) and digest not in lacking:
            cached.append(_outcome(entry, digest, have, model_ids, cached=True))
        else:
            todo.append(entry)
    return todo, cached


def _may_be_head_only(model: Detector) -> bool:
    """A local model folder with a training record: only then is the training code imported
    (a scan of any other model pays nothing for head-only re-scoring)."""
    if not model.spec.is_local:
        return False
    folder = Path(model.spec.source)
    folder = folder.parent if folder.is_file() else folder
    return (folder / "training.json").is_file()


def _head_only_base_id(model: Detector) -> str | None:
    """The base of a head-only model, whose stored embeddings are the model's own too."""
    if not _may_be_head_only(model):
        return None
    from nsfw_desk.core.training.heads import head_only_base_id

    return head_only_base_id(model.spec.source)


def _heads(detectors: list[Detector]) -> dict[int, tuple]:
    """detector index -> (base model id, head scorer) for the head-only detectors."""
    heads: dict[int, tuple] = {}
    for i, detector in enumerate(detectors):
        if _may_be_head_only(detector):
            from nsfw_desk.core.training.heads import head_only_base

            found = head_only_base(detector)  # type: ignore[arg-type]
            if found is not None:
                heads[i] = found
    return heads


def _score_from_embeddings(
    library: Library, root: Path, todo: list[FileEntry], detectors: list[Detector]
) -> tuple[list[FileEntry], list[FileOutcome]]:
    """Score, without decoding, the known unchanged files whose content has a stored
    embedding from the base model of a head-only detector (same backbone, new head: the
    stored embedding is all the head reads).

    Returns the entries still to decode (some detector still lacks a score) and the
    outcomes now scored by every detector (committed).
    """
    if not todo:
        return todo, []
    heads = _heads(detectors)
    if not heads:
        return todo, []
    from nsfw_desk.core.training.heads import rescore_from_embeddings

    known = library.known_files(root)
    digests: dict[str, str] = {}
    for entry in todo:
        row = known.get(path_key(entry.path)[0])
        if row and row.hash and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            digests[path_key(entry.path)[0]] = row.hash
    if not digests:
        return todo, []
    contents = set(digests.values())
    for i, (base_id, scorer) in heads.items():
        lacking = contents - set(library.scores_for(detectors[i].model_id, contents))
        if lacking:
            rescore_from_embeddings(
                library, base_id, detectors[i].model_id, scorer, sorted(lacking)
            )
    model_ids = [d.model_id for d in detectors]
    scores = _stored_scores(library, model_ids, contents)
    rest: list[FileEntry] = []
    outcomes: list[FileOutcome] = []
    for entry in todo:
        digest = digests.get(path_key(entry.path)[0])
        have = scores.get(digest, {}) if digest is not None else {}
        if digest is not None and len(have) == len(model_ids):
            outcomes.append(_outcome(entry, digest, have, model_ids, cached=False))
        else:
            rest.append(entry)
    log.info(
        "%d files scored from stored embeddings of %s (no decoding)",
        len(outcomes),
        ", ".join(base for base, _ in heads.values()),
    )
    return rest, outcomes


def _decode_thread_setup() -> None:
    """A decode thread yields to the model's threads and preprocesses on itself alone."""
    _lower_thread_priority()
    one_torch_thread()  # see core/torch_threads.py: 20× faster preprocessing under load


def _lower_thread_priority() -> None:
    """Decode threads yield to the model's threads (and to the GUI).

    With equal priority a decode thread that preempts one of torch's threads stalls the
    other at its next barrier; at lower priority decoding fills the gaps instead. Linux only:
    elsewhere a thread id is not something `setpriority` accepts.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)


def _error_outcome(error: FileError) -> FileOutcome:
    return FileOutcome(
        error.path,
        error_kind=error.kind,
        error=error.message,
        mtime_ns=error.mtime_ns,
        size=error.size,
    )


def _scan_entries(
    todo: list[FileEntry],
    detectors: list[Detector],
    library: Library,
    options: ScanOptions,
    cancel: CancelToken,
    tracker: _Progress,
    emit: ResultsCallback,
    scan_id: int | None,
    score_ids: list[str],
    clock: StageClock | None = None,
) -> tuple[int, int, int, int, int]:
    """Decode in a pool, infer in batches on this thread (without a model: thumbnails only).

    Returns (scored by a detector or listed, answered by known content, errors, of those
    answered: scored from the base model's stored embeddings, decoded on the GPU).
    """
    if not todo:
        return 0, 0, 0, 0, 0
    # Content needs no decode when every detector has scored it (a scan) or it has its
    # thumbnail (a listing): a renamed or copied file then only adds its file row.
    lookups: list[ScoreLookup | ThumbnailReader]
    if detectors:
        score_lookups = [ScoreLookup(library.path, d.model_id) for d in detectors]
        lookups = list(score_lookups)
        is_known = [lookup.has_score for lookup in score_lookups]
        min_side = max(d.input_size for d in detectors)
    else:
        reader = ThumbnailReader(library.thumbnails_path)
        lookups = [reader]
        is_known, min_side = [reader.has], THUMBNAIL_SIZE
    perceptual = PdqLookup(library.path)
    # A head-only detector scores content its base model has an embedding of without
    # decoding (a copy or a changed file row of known content).
    heads = _heads(detectors)
    base_lookups = {i: ScoreLookup(library.path, head[0]) for i, head in heads.items()}
    via_base = [
        base_lookups[i].has_score if i in base_lookups else None for i in range(len(detectors))
    ]

    clock = clock or StageClock()
    device = _device_type(detectors)
    gpu = _gpu_preparer(detectors, options)

    def prepare(entry: FileEntry, on_gpu: bool = True) -> _Prepared | _Deferred | FileError:
        if cancel.cancelled:
            return FileError(entry.path, "cancelled", "scan cancelled")
        return _prepare(
            entry,
            detectors,
            is_known,
            perceptual.has_pdq,
            min_side,
            options,
            via_base,
            clock,
            defer_jpegs=gpu is not None and on_gpu,
        )

    scored = known_content = errors = through_base = 0
    batch: list[_Prepared] = []
    ready: list[_Prepared] = []  # content already scored: only the file row is new
    failed: list[FileError] = []
    model_ids = [d.model_id for d in detectors]

    def flush(run_model: bool) -> None:
        nonlocal scored, known_content, errors, through_base, batch, ready, failed
        items: list[ScoredFile] = []
        also: dict[str, list[ScoredFile]] = {mid: [] for mid in model_ids[1:]}
        outcomes: list[FileOutcome] = []
        done = (batch if run_model else []) + ready
        based = _score_through_base(library, detectors, heads, done)
        through_base += based
        if run_model and batch:
            with clock.timing("forward"):
                fresh = _predict_all(detectors, batch)
            with clock.timing("store"):
                stored = _stored_scores(library, model_ids, {p.hash for p in batch})
            for n, p in enumerate(batch):
                row = _file_row(p)  # decoded: the scores go in below
                scores = dict(stored.get(p.hash, {}))
                for i, (prediction, rows) in fresh.items():
                    if n not in rows:
                        continue
                    k = rows[n]
                    score = float(prediction.unsafe_scores[k])
                    scores[model_ids[i]] = score
                    target = row if i == 0 else ScoredFile(p.entry.path, 0, 0, p.hash)
                    target.unsafe = score
                    target.probabilities = prediction.probabilities[k]
                    target.embedding = prediction.embeddings[k]
                    target.details = prediction.details[k] if prediction.details else None
                    if i:
                        also[model_ids[i]].append(target)
                items.append(row)
                outcomes.append(_outcome(p.entry, p.hash, scores, model_ids, cached=False))
            scored += len(batch)
            batch = []
        if ready:
            with clock.timing("store"):
                known = _stored_scores(library, score_ids, {p.hash for p in ready})
            for p in ready:
                items.append(_file_row(p))
                if score_ids:
                    outcome = _outcome(
                        p.entry, p.hash, known.get(p.hash, {}), score_ids, cached=not p.via_base
                    )
                else:
                    outcome = FileOutcome(
                        p.entry.path,
                        p.hash,
                        None,
                        True,
                        mtime_ns=p.entry.mtime_ns,
                        size=p.entry.size,
                    )
                outcomes.append(outcome)
            known_content += len(ready)
            ready = []
        with clock.timing("store"):
            library.record_scored(
                items,
                model_ids[0] if model_ids else None,
                also={k: v for k, v in also.items() if v},
            )
            library.record_errors(failed, scan_id)
        outcomes.extend(_error_outcome(e) for e in failed)
        errors += len(failed)
        tracker.errors += len(failed)
        failed = []
        tracker.done += len(outcomes)
        tracker.fresh += len(outcomes)
        emit(outcomes)
        tracker.report()

    batch_size = options.batch_for(device)
    workers = options.decode_workers(device)
    max_inflight = batch_size * 2 + workers
    pool = ThreadPoolExecutor(
        workers, thread_name_prefix="nsfw-desk-decode", initializer=_decode_thread_setup
    )
    # Threads prepare the GPU's batches, so the next are decoded while the model runs.
    gpu_thread = (
        ThreadPoolExecutor(max(1, options.gpu_threads), thread_name_prefix="nsfw-desk-gpu")
        if gpu
        else None
    )
    # Finished futures queue up here: waiting on hundreds of futures with `wait` costs this
    # thread a pass over all of them per wake-up, which a GPU's rate cannot afford.
    finished: SimpleQueue[Future] = SimpleQueue()
    pending: set[Future] = set()  # decode-thread work not yet taken
    deferred: list[_Deferred] = []  # JPEGs waiting for a GPU batch
    deferred_pixels = 0
    on_gpu: set[Future] = set()  # GPU batches in flight
    queue: Iterator[FileEntry] = iter(todo)
    exhausted = False
    on_device = 0

    def submit(entry: FileEntry, may_defer: bool = True) -> None:
        future = pool.submit(prepare, entry, may_defer)
        pending.add(future)
        future.add_done_callback(finished.put)

    def take(result: _Prepared | _Deferred | FileError) -> None:
        nonlocal deferred_pixels
        if isinstance(result, FileError) and result.kind == "cancelled":
            return
        if isinstance(result, FileError):
            failed.append(result)
        elif isinstance(result, _Deferred):
            deferred.append(result)
            deferred_pixels += result.width * result.height
        elif not result.decoded:
            ready.append(result)
        else:
            batch.append(result)
            if len(batch) >= batch_size:
                flush(run_model=True)

    def send_to_gpu() -> None:
        nonlocal deferred, deferred_pixels
        assert gpu is not None and gpu_thread is not None
        job = gpu_thread.submit(_prepare_on_gpu, gpu, deferred, clock)
        on_gpu.add(job)
        job.add_done_callback(finished.put)
        deferred, deferred_pixels = [], 0

    def take_from_gpu(job: Future) -> None:
        nonlocal on_device
        for item, prepared in job.result():
            if prepared is None:  # refused by the GPU: the decode threads decode it
                submit(item.entry, may_defer=False)
            else:
                on_device += 1
                take(prepared)

    try:
        while True:
            while (
                len(pending) + len(deferred) < max_inflight
                and len(on_gpu) < GPU_BATCHES_IN_FLIGHT
                and not cancel.cancelled
            ):
                entry = next(queue, None)
                if entry is None:
                    exhausted = True
                    break
                submit(entry)
            if deferred and (
                len(deferred) >= batch_size
                or deferred_pixels >= GPU_BATCH_PIXELS
                or (exhausted and not pending)
            ):
                send_to_gpu()
            if (not pending and not on_gpu) or cancel.cancelled:
                break
            try:
                done = [finished.get(timeout=0.1)]
            except Empty:
                continue
            while not finished.empty():
                done.append(finished.get_nowait())
            for future in done:
                if future in on_gpu:
                    on_gpu.discard(future)
                    take_from_gpu(future)
                else:
                    pending.discard(future)
                    take(future.result())
            if len(ready) + len(failed) >= batch_size:
                flush(run_model=False)
        if not cancel.cancelled:
            flush(run_model=True)
        else:
            flush(run_model=False)  # keep finished cheap work; drop the unrun batch
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if gpu_thread is not None:
            gpu_thread.shutdown(wait=False, cancel_futures=True)
        # A cancel does not wait for a decode still running; that thread may still use its
        # connection, which is then left to the garbage collector.
        if all(future.done() for future in pending):
            for lookup in lookups:
                lookup.close()
            perceptual.close()
            for base_lookup in base_lookups.values():
                base_lookup.close()
    return scored, known_content, errors, through_base, on_device


def _device_type(detectors: Sequence[Detector]) -> str:
    """Where the primary detector runs ("cpu" for a listing or a runner without a device)."""
    device = getattr(detectors[0], "device", None) if detectors else None
    return str(getattr(device, "type", "cpu"))


def _gpu_preparer(detectors: Sequence[Detector], options: ScanOptions) -> GpuPreparer | None:
    """The GPU preparer when JPEGs are to be decoded on the detectors' device, else None."""
    if options.gpu_decode not in GPU_DECODE_CHOICES:
        raise ValueError(f"gpu_decode is one of {', '.join(GPU_DECODE_CHOICES)}")
    device = _device_type(detectors)
    wanted = options.gpu_decode == "on" or (options.gpu_decode == "auto" and device == "cuda")
    if not detectors or not wanted:
        return None
    devices = {str(getattr(d, "device", "cpu")) for d in detectors}
    why_not = gpu_prepare.supported(detectors) or (
        "the detectors run on different devices" if len(devices) > 1 else None
    )
    if why_not is not None:
        log.info("JPEGs are decoded on the CPU: %s", why_not)
        return None
    device = devices.pop()
    log.info("JPEGs are decoded on %s in batches", device)
    return gpu_prepare.GpuPreparer(detectors, device)


def _prepare_on_gpu(
    gpu: GpuPreparer, items: list[_Deferred], clock: StageClock
) -> list[tuple[_Deferred, _Prepared | None]]:
    """Each deferred JPEG prepared on the GPU, or None for those the CPU must decode (all of
    them if the GPU fails: the scan goes on on the CPU). Never raises."""
    try:
        prepared = gpu.prepare([item.data for item in items], clock)
    except Exception as exc:
        log_unexpected(log, "preparing JPEGs on the GPU failed; the CPU decodes them", exc)
        prepared = [None] * len(items)
    out: list[tuple[_Deferred, _Prepared | None]] = []
    for item, pixels in zip(items, prepared, strict=True):
        if pixels is None:
            out.append((item, None))
            continue
        out.append(
            (
                item,
                _Prepared(
                    item.entry,
                    item.hash,
                    {i: pixels.tensors[i] for i in item.to_run},
                    pixels.thumbnail,
                    item.width,
                    item.height,
                    "JPEG",
                    True,
                    pixels.pdq,
                    pixels.pdq_quality,
                    item.via_base,
                ),
            )
        )
    return out


def _score_through_base(
    library: Library, detectors: list[Detector], heads: dict[int, tuple], done: list[_Prepared]
) -> int:
    """Score the prepared files a head-only detector scores from its base's stored
    embedding (committed here); returns how many files were answered that way alone."""
    if not heads:
        return 0
    from nsfw_desk.core.training.heads import rescore_from_embeddings

    for i, (base_id, scorer) in heads.items():
        hashes = sorted({p.hash for p in done if i in p.via_base})
        if hashes:
            rescore_from_embeddings(library, base_id, detectors[i].model_id, scorer, hashes)
    return sum(1 for p in done if p.via_base and not p.tensors)


def _prepare(
    entry: FileEntry,
    detectors: Sequence[Detector],
    is_known: Sequence[Callable[[str], bool]],
    has_pdq: Callable[[str], bool],
    min_side: int,
    options: ScanOptions,
    via_base: Sequence[Callable[[str], bool] | None] = (),
    clock: StageClock | None = None,
    defer_jpegs: bool = False,
) -> _Prepared | _Deferred | FileError:
    """Read, hash and (unless every detector knows the content) decode one file, once for
    all detectors; never raises. `clock`: where the stages' time is added.

    `is_known[i](digest)`: detector i has a score of the content (a listing: one check, the
    thumbnail's). `via_base[i](digest)` true: head-only detector i scores the content from
    its base model's stored embedding, so it needs no decode either. `defer_jpegs`: a JPEG
    the GPU can decode (gpu_decode.gpu_header) comes back undecoded, as a `_Deferred`."""
    clock = clock or StageClock()
    try:
        with clock.timing("read"):
            data = read_file(entry.path, max_bytes=options.max_bytes)
            digest = content_hash(data)
        missing = [i for i, known in enumerate(is_known) if not known(digest)]
        through_base = tuple(
            i
            for i in missing
            if i < len(via_base) and (check := via_base[i]) is not None and check(digest)
        )
        to_run = [i for i in missing if i not in through_base]
        has_hash = has_pdq(digest)
        if not to_run and has_hash:  # renamed or copied content: no decode needed
            return _Prepared(entry, digest, via_base=through_base)
        if defer_jpegs and to_run:
            with clock.timing("read"):
                header = gpu_header(data, options.max_pixels)
            if header is not None:
                return _Deferred(
                    entry, digest, data, header.width, header.height, tuple(to_run), through_base
                )
        with clock.timing("decode"):
            pixels, width, height, fmt = decode(
                data, min_side=min_side, max_pixels=options.max_pixels
            )
        del data
        # The pixels the model sees (upright, JPEGs at a reduced DCT scale): see core/pdq.
        with clock.timing("pdq"):
            hashed, quality = pdq_hash(pixels)
        if not to_run:  # the hash only (from before PDQ hashes), no model run
            return _Prepared(entry, digest, pdq=hashed, pdq_quality=quality, via_base=through_base)
        if not detectors:
            with clock.timing("thumbnail"):
                thumbnail = make_thumbnail(pixels)
            return _Prepared(
                entry, digest, {}, thumbnail, width, height, fmt, True, hashed, quality
            )
        with clock.timing("transform"):
            tensors, view = _preprocess_all(detectors, to_run, pixels)
        with clock.timing("thumbnail"):
            thumbnail = make_thumbnail(view)
        return _Prepared(
            entry,
            digest,
            tensors,
            thumbnail,
            width,
            height,
            fmt,
            True,
            hashed,
            quality,
            through_base,
        )
    except ImageError as exc:
        return FileError(entry.path, exc.kind, exc.message, entry.size, entry.mtime_ns)
    except Exception as exc:  # a bug or a Pillow surprise: report it on the file
        log_unexpected(log, "unexpected error preparing a file", exc)
        return FileError(
            entry.path,
            ErrorKind.DECODE_ERROR,
            f"unexpected {type(exc).__name__}: {exc}",
            entry.size,
            entry.mtime_ns,
        )


def _preprocess_all(
    detectors: Sequence[Detector], indices: list[int], pixels: Image.Image
) -> tuple[dict[int, torch.Tensor], Image.Image]:
    """Each listed detector's input from one decoded picture, and the thumbnail's picture
    (the first detector's view). Detectors whose whole preprocessing agrees
    (`preprocess_key`) share one tensor; those whose first, aspect-keeping resize agrees
    (`resize_key`) share the resize (core/detector.py)."""
    tensors: dict[int, torch.Tensor] = {}
    by_key: dict[object, torch.Tensor] = {}
    resized: dict[object, Image.Image] = {}
    view: Image.Image | None = None
    for i in indices:
        detector = detectors[i]
        key = getattr(detector, "preprocess_key", None)
        if key is not None and key in by_key:
            tensors[i] = by_key[key]
            continue
        resize_key = getattr(detector, "resize_key", None)
        if resize_key is not None and resize_key in resized:
            tensor, seen = detector.from_resized(resized[resize_key])  # type: ignore[attr-defined]
        else:
            tensor, seen = detector.preprocess(pixels)
            if resize_key is not None:
                resized[resize_key] = seen
        tensors[i] = tensor
        if key is not None:
            by_key[key] = tensor
        view = seen if view is None else view
    assert view is not None, "at least one detector to preprocess for"
    return tensors, view


def _file_row(p: _Prepared) -> ScoredFile:
    """A prepared file's row without scores: facts, PDQ and, when decoded, its thumbnail."""
    if not p.decoded:
        return ScoredFile(
            p.entry.path,
            p.entry.size,
            p.entry.mtime_ns,
            p.hash,
            pdq=p.pdq,
            pdq_quality=p.pdq_quality,
        )
    return ScoredFile(
        p.entry.path,
        p.entry.size,
        p.entry.mtime_ns,
        p.hash,
        p.width,
        p.height,
        p.format,
        thumbnail=p.thumbnail,
        pdq=p.pdq,
        pdq_quality=p.pdq_quality,
    )


def prepare_listing(
    entries: list[FileEntry], library: Library, *, options: ScanOptions | None = None
) -> tuple[list[ScoredFile], list[FileError]]:
    """The rows a listing without a model would store for `entries`, and their errors.

    Nothing is written: the caller stores the rows (`library.record_scored(rows, None)`)
    once it has decided to, so a file that turns out unreadable changes nothing. Content
    that already has a thumbnail is only read and hashed, as in a scan.
    """
    options = options or ScanOptions()
    if not entries:
        return [], []
    reader = ThumbnailReader(library.thumbnails_path)
    perceptual = PdqLookup(library.path)

    def prepare(entry: FileEntry) -> _Prepared | FileError:
        result = _prepare(entry, [], [reader.has], perceptual.has_pdq, THUMBNAIL_SIZE, options)
        assert not isinstance(result, _Deferred), "a listing defers nothing"
        return result

    try:
        with ThreadPoolExecutor(min(options.decode_workers(), len(entries))) as pool:
            results = list(pool.map(prepare, entries))
    finally:
        reader.close()
        perceptual.close()
    rows = [_file_row(r) for r in results if isinstance(r, _Prepared)]
    return rows, [r for r in results if isinstance(r, FileError)]


def _predict_all(detectors: list[Detector], batch: list[_Prepared]) -> dict[int, tuple]:
    """One forward pass per detector over the files of `batch` it has to score:
    detector index -> (Prediction, {batch position: prediction row})."""
    results: dict[int, tuple] = {}
    if not detectors:  # a listing: nothing to run (and no torch to import)
        return results
    for i, detector in enumerate(detectors):
        positions = [n for n, p in enumerate(batch) if i in p.tensors]
        if not positions:
            continue
        stacked = gpu_prepare.stack_for(
            [batch[n].tensors[i] for n in positions], getattr(detector, "device", None)
        )
        results[i] = (detector.predict(stacked), {n: k for k, n in enumerate(positions)})
    return results


@dataclass
class DecodedBytes:
    """One file's bytes made ready for the models: what `decode_for_models` returns."""

    tensors: list[torch.Tensor]  # one model input per model, in the models' order
    width: int
    height: int
    format: str
    pdq: bytes
    pdq_quality: int
    thumbnail: bytes


def decode_for_models(
    data: bytes, models: list[Detector], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedBytes:
    """The scan's own decode → PDQ → model transform → thumbnail for one file's bytes, for
    code that reads the bytes elsewhere (core/cluster.py, on Ray workers). Raises
    `ImageError` with the reason, as `decode` does. With one model the pixels are exactly a
    scan's; with several, the JPEG draft keeps the largest input any of them needs, so a
    smaller model may see a less reduced draft than a scan with it alone (never a smaller)."""
    min_side = max(model.input_size for model in models)
    pixels, width, height, fmt = decode(data, min_side=min_side, max_pixels=max_pixels)
    hashed, quality = pdq_hash(pixels)
    tensors: list[torch.Tensor] = []
    view = None
    for model in models:
        tensor, resized = model.preprocess(pixels)
        tensors.append(tensor)
        view = view if view is not None else resized
    assert view is not None, "at least one model"
    return DecodedBytes(tensors, width, height, fmt, hashed, quality, make_thumbnail(view))
