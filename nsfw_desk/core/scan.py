"""The batched scan: discover → cache check → decode pool → model batches → library.

Decoding runs in a small thread pool (Pillow and the file reads release the GIL) while the
calling thread runs the model on the previous batch, so the two overlap. Every batch is
committed before the next starts: a cancel or a crash loses at most the batch in flight, and
the next scan of the folder skips everything already stored.

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
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nsfw_desk.core.defaults import BATCH_SIZE, DECODE_NICENESS, PROGRESS_INTERVAL_S, RESULT_CHUNK
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
from nsfw_desk.core.pdq import pdq_hash
from nsfw_desk.core.progress import CancelToken, Progress, ProgressCallback
from nsfw_desk.core.runtime import LoadedModel, available_cores
from nsfw_desk.core.store import (
    FileOutcome,
    Library,
    PdqLookup,
    ScoredFile,
    ScoreLookup,
    ThumbnailReader,
    path_key,
)

if TYPE_CHECKING:  # torch is imported where a scan runs, not when the module loads
    import torch

log = logging.getLogger(__name__)


@dataclass
class ScanOptions:
    batch_size: int = BATCH_SIZE
    workers: int | None = None  # decode threads; default: available cores, 2 to 4
    include_hidden: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    def decode_workers(self) -> int:
        return self.workers or min(4, max(2, available_cores()))


@dataclass
class ScanSummary:
    root: Path
    model_id: str | None  # None: listed without a model
    device: str
    files: int = 0
    scored: int = 0  # run through the model in this scan
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

    @property
    def images_per_s(self) -> float:
        return self.scored / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class _Prepared:
    entry: FileEntry
    hash: str
    tensor: torch.Tensor | None = None  # None when already scored, or listed without a model
    thumbnail: bytes | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    decoded: bool = False  # False: the content is known, only the file row is new
    pdq: bytes | None = None  # the perceptual hash of the decoded pixels
    pdq_quality: int | None = None
    via_base: bool = False  # scored from the base model's stored embedding (head-only model)


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
    model: LoadedModel | None,
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

    `on_results` receives outcomes in chunks as they are committed (cached ones first);
    `cancel` stops the scan within about a second, keeping everything committed so far.
    With `model` None the folder is only listed (so a moderator can review without a model):
    files get their hash, facts and thumbnail, outcomes carry `stored_model`'s stored scores
    where there are any, and the next scan with a model scores the same rows.
    """
    options = options or ScanOptions()
    cancel = cancel or CancelToken()
    root = Path(root)
    model_id = model.model_id if model else None
    if model is not None:
        library.register_model(
            model.model_id,
            source=model.spec.source,
            revision=model.spec.revision,
            architecture=model.architecture,
            labels=model.labels,
            unsafe_labels=model.unsafe_labels,
            embeddings_of=_head_only_base_id(model),
        )
    summary = ScanSummary(root, model_id, model.describe() if model else "no model")
    summary.scan_id = library.begin_scan(root, model_id)
    started = time.monotonic()

    def emit(outcomes: list[FileOutcome]) -> None:
        if keep_outcomes:
            summary.outcomes.extend(outcomes)
        if on_results and outcomes:
            on_results(outcomes)

    status = "failed"
    try:
        entries, found_errors, present, stats = _discover(root, options, progress, cancel)
        summary.ignored = stats.ignored_not_images + stats.ignored_hidden
        todo, cached = _check_cache(library, root, model_id or stored_model, entries, model)
        if model is not None:
            todo, scored_now = _score_from_embeddings(library, root, todo, model)
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

        scored, known, errors, via_base = _scan_entries(
            todo, model, library, options, cancel, tracker, emit, summary.scan_id, stored_model
        )
        summary.from_embeddings += via_base
        known -= via_base
        if model is None:
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
        library.finish_scan(
            summary.scan_id,
            status,
            files=summary.files,
            scored=summary.scored,
            cached=summary.cached,
            errors=summary.errors,
        )
    return summary


def _discover(
    root: Path, options: ScanOptions, progress: ProgressCallback | None, cancel: CancelToken
):
    stats = DiscoveryStats()
    entries: list[FileEntry] = []
    errors: list[FileError] = []
    last = time.monotonic()
    for found in discover(root, include_hidden=options.include_hidden, stats=stats):
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
    model_id: str | None,
    entries: list[FileEntry],
    model: LoadedModel | None,
):
    """Split entries into work and outcomes answered from the library (no reads, no hashing).

    A listing (no `model`) needs nothing more for a known, unchanged file; a scan needs its
    score for the model. Outcomes carry `model_id`'s stored scores.
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
    scores = library.scores_for(model_id, {d for _, d in maybe}) if model_id else {}
    # Content stored before PDQ hashes is decoded once more for its hash (not scored again).
    lacking = library.hashes_lacking_pdq({d for _, d in maybe})
    for entry, digest in maybe:
        if (digest in scores or model is None) and digest not in lacking:
            cached.append(
                FileOutcome(
                    entry.path,
                    digest,
                    scores.get(digest),
                    cached=True,
                    mtime_ns=entry.mtime_ns,
                    size=entry.size,
                )
            )
        else:
            todo.append(entry)
    return todo, cached


def _may_be_head_only(model: LoadedModel) -> bool:
    """A local model folder with a training record: only then is the training code imported
    (a scan of any other model pays nothing for head-only re-scoring)."""
    if not model.spec.is_local:
        return False
    folder = Path(model.spec.source)
    folder = folder.parent if folder.is_file() else folder
    return (folder / "training.json").is_file()


def _head_only_base_id(model: LoadedModel) -> str | None:
    """The base of a head-only model, whose stored embeddings are the model's own too."""
    if not _may_be_head_only(model):
        return None
    from nsfw_desk.core.training.heads import head_only_base_id

    return head_only_base_id(model.spec.source)


def _score_from_embeddings(
    library: Library, root: Path, todo: list[FileEntry], model: LoadedModel
) -> tuple[list[FileEntry], list[FileOutcome]]:
    """Score, without decoding, the known unchanged files whose content has a stored
    embedding from the base model of `model`, when `model` is a head-only training of it
    (same backbone, new head: the stored embedding is all the head reads).

    Returns the entries still to decode and the outcomes scored here (committed).
    """
    if not todo or not _may_be_head_only(model):
        return todo, []
    from nsfw_desk.core.training.heads import head_only_base, rescore_from_embeddings

    found = head_only_base(model)
    if found is None:
        return todo, []
    base_id, scorer = found
    known = library.known_files(root)
    digests: dict[str, str] = {}
    for entry in todo:
        row = known.get(path_key(entry.path)[0])
        if row and row.hash and row.size == entry.size and row.mtime_ns == entry.mtime_ns:
            digests[path_key(entry.path)[0]] = row.hash
    if not digests:
        return todo, []
    rescore_from_embeddings(library, base_id, model.model_id, scorer, list(set(digests.values())))
    scores = library.scores_for(model.model_id, set(digests.values()))
    rest: list[FileEntry] = []
    outcomes: list[FileOutcome] = []
    for entry in todo:
        digest = digests.get(path_key(entry.path)[0])
        if digest is not None and digest in scores:
            outcomes.append(
                FileOutcome(
                    entry.path,
                    digest,
                    scores[digest],
                    cached=False,
                    mtime_ns=entry.mtime_ns,
                    size=entry.size,
                )
            )
        else:
            rest.append(entry)
    log.info("%d files scored from stored embeddings of %s (no decoding)", len(outcomes), base_id)
    return rest, outcomes


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
    model: LoadedModel | None,
    library: Library,
    options: ScanOptions,
    cancel: CancelToken,
    tracker: _Progress,
    emit: ResultsCallback,
    scan_id: int | None,
    stored_model: str | None = None,
) -> tuple[int, int, int, int]:
    """Decode in a pool, infer in batches on this thread (without a model: thumbnails only).

    Returns (scored by the model or listed, answered by known content, errors, of those
    answered: scored from the base model's stored embeddings).
    """
    if not todo:
        return 0, 0, 0, 0
    # Content needs no decode when it is already scored (a scan) or has its thumbnail
    # (a listing): a renamed or copied file then only adds its file row.
    lookup: ScoreLookup | ThumbnailReader
    if model is not None:
        lookup = ScoreLookup(library.path, model.model_id)
        is_known, min_side = lookup.has_score, model.input_size
        scores_model: str | None = model.model_id
    else:
        lookup = ThumbnailReader(library.thumbnails_path)
        is_known, min_side = lookup.has, THUMBNAIL_SIZE
        scores_model = stored_model
    perceptual = PdqLookup(library.path)
    # A head-only model scores content its base model has an embedding of without decoding
    # (a copy or a changed file row of known content).
    head = None
    base_lookup: ScoreLookup | None = None
    if model is not None and _may_be_head_only(model):
        from nsfw_desk.core.training.heads import head_only_base, rescore_from_embeddings

        head = head_only_base(model)
        if head is not None:
            base_lookup = ScoreLookup(library.path, head[0])

    def prepare(entry: FileEntry) -> _Prepared | FileError:
        if cancel.cancelled:
            return FileError(entry.path, "cancelled", "scan cancelled")
        via_base = base_lookup.has_score if base_lookup is not None else None
        return _prepare(entry, model, is_known, perceptual.has_pdq, min_side, options, via_base)

    scored = known_content = errors = via_base = 0
    batch: list[_Prepared] = []
    ready: list[_Prepared] = []  # content already scored: only the file row is new
    failed: list[FileError] = []

    def flush(run_model: bool) -> None:
        nonlocal scored, known_content, errors, via_base, batch, ready, failed
        items: list[ScoredFile] = []
        outcomes: list[FileOutcome] = []
        if run_model and batch:
            prediction = _predict(model, batch)
            for i, p in enumerate(batch):
                score = float(prediction.unsafe_scores[i]) if prediction else None
                items.append(
                    ScoredFile(
                        p.entry.path,
                        p.entry.size,
                        p.entry.mtime_ns,
                        p.hash,
                        p.width,
                        p.height,
                        p.format,
                        score,
                        prediction.probabilities[i] if prediction else None,
                        prediction.embeddings[i] if prediction else None,
                        p.thumbnail,
                        p.pdq,
                        p.pdq_quality,
                        details=prediction.details[i]
                        if prediction and prediction.details
                        else None,
                    )
                )
                outcomes.append(
                    FileOutcome(
                        p.entry.path, p.hash, score, mtime_ns=p.entry.mtime_ns, size=p.entry.size
                    )
                )
            scored += len(batch)
            batch = []
        if ready:
            hashes = {p.hash for p in ready}
            through_base = [p.hash for p in ready if p.via_base]
            if through_base and head is not None and model is not None:
                rescore_from_embeddings(library, head[0], model.model_id, head[1], through_base)
                via_base += len(through_base)
            known = library.scores_for(scores_model, hashes) if scores_model else {}
            for p in ready:
                items.append(_listing_row(p))
                outcomes.append(
                    FileOutcome(
                        p.entry.path,
                        p.hash,
                        known.get(p.hash),
                        cached=not p.via_base,
                        mtime_ns=p.entry.mtime_ns,
                        size=p.entry.size,
                    )
                )
            known_content += len(ready)
            ready = []
        library.record_scored(items, model.model_id if model else None)
        library.record_errors(failed, scan_id)
        outcomes.extend(_error_outcome(e) for e in failed)
        errors += len(failed)
        tracker.errors += len(failed)
        failed = []
        tracker.done += len(outcomes)
        tracker.fresh += len(outcomes)
        emit(outcomes)
        tracker.report()

    workers = options.decode_workers()
    max_inflight = options.batch_size * 2 + workers
    pool = ThreadPoolExecutor(
        workers, thread_name_prefix="nsfw-desk-decode", initializer=_lower_thread_priority
    )
    pending: set[Future] = set()
    queue: Iterator[FileEntry] = iter(todo)
    try:
        while True:
            while len(pending) < max_inflight and not cancel.cancelled:
                entry = next(queue, None)
                if entry is None:
                    break
                pending.add(pool.submit(prepare, entry))
            if not pending or cancel.cancelled:
                break
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                if isinstance(result, FileError) and result.kind == "cancelled":
                    continue
                if isinstance(result, FileError):
                    failed.append(result)
                elif not result.decoded:
                    ready.append(result)
                else:
                    batch.append(result)
                    if len(batch) >= options.batch_size:
                        flush(run_model=True)
            if len(ready) + len(failed) >= options.batch_size:
                flush(run_model=False)
        if not cancel.cancelled:
            flush(run_model=True)
        else:
            flush(run_model=False)  # keep finished cheap work; drop the unrun batch
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        # A cancel does not wait for a decode still running; that thread may still use its
        # connection, which is then left to the garbage collector.
        if all(future.done() for future in pending):
            lookup.close()
            perceptual.close()
            if base_lookup is not None:
                base_lookup.close()
    return scored, known_content, errors, via_base


def _prepare(
    entry: FileEntry,
    model: LoadedModel | None,
    is_known: Callable[[str], bool],
    has_pdq: Callable[[str], bool],
    min_side: int,
    options: ScanOptions,
    via_base: Callable[[str], bool] | None = None,
) -> _Prepared | FileError:
    """Read, hash and (unless the content is known) decode one file; never raises.

    `via_base(digest)` true: a head-only model scores the content from its base model's
    stored embedding, so it is not decoded either."""
    try:
        data = read_file(entry.path, max_bytes=options.max_bytes)
        digest = content_hash(data)
        known = is_known(digest)
        has_hash = has_pdq(digest)
        if known and has_hash:  # renamed or copied content: no decode needed
            return _Prepared(entry, digest)
        scored_via_base = not known and via_base is not None and via_base(digest)
        if scored_via_base and has_hash:
            return _Prepared(entry, digest, via_base=True)
        pixels, width, height, fmt = decode(data, min_side=min_side, max_pixels=options.max_pixels)
        del data
        # The pixels the model sees (upright, JPEGs at a reduced DCT scale): see core/pdq.
        hashed, quality = pdq_hash(pixels)
        if known or scored_via_base:  # the hash only (from before PDQ hashes), no model run
            return _Prepared(
                entry, digest, pdq=hashed, pdq_quality=quality, via_base=scored_via_base
            )
        if model is None:
            thumbnail = make_thumbnail(pixels)
            return _Prepared(
                entry, digest, None, thumbnail, width, height, fmt, True, hashed, quality
            )
        tensor, view = model.preprocess(pixels)
        return _Prepared(
            entry, digest, tensor, make_thumbnail(view), width, height, fmt, True, hashed, quality
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


def _listing_row(p: _Prepared) -> ScoredFile:
    """What a listing (no model) stores for a prepared file: its row and, if new, thumbnail."""
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
        return _prepare(entry, None, reader.has, perceptual.has_pdq, THUMBNAIL_SIZE, options)

    try:
        with ThreadPoolExecutor(min(options.decode_workers(), len(entries))) as pool:
            results = list(pool.map(prepare, entries))
    finally:
        reader.close()
        perceptual.close()
    rows = [_listing_row(r) for r in results if isinstance(r, _Prepared)]
    return rows, [r for r in results if isinstance(r, FileError)]


def _predict(model: LoadedModel | None, batch: list[_Prepared]):
    """One forward pass over a batch; None for a listing, which has no model to run."""
    if model is None:
        return None
    import torch

    tensors = [p.tensor for p in batch if p.tensor is not None]
    assert len(tensors) == len(batch), "batch holds only content to score"
    return model.predict(torch.stack(tensors))
