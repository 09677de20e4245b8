"""Scoring an archive on Ray Data (`nsfw-desk cluster-scan`): the only module that imports ray.

    a local folder: discover (the scan's own, on the driver) ─▶ leave out files RESULTS_DIR
        already has (resume) ─▶ ray.data.from_items(listing) ─▶ map_batches(ScoreFiles), which
        reads each file with the scan's read_file
    a URI (s3://, gs://, file://, …) or a pyarrow filesystem: pyarrow.fs listing on the driver
        (core/cluster_source.py) ─▶ resume filter ─▶ ray.data.read_datasource(ListedFiles):
        Ray Data's read tasks fetch the bytes ─▶ map_batches(ScoreFiles) on those bytes
    then, in ScoreFiles (an actor pool, each actor holding the models): content hash,
    decode_for_models (decode, PDQ hash, each model's transform, thumbnail), LoadedModel.predict
      ─▶ write_parquet into this run's folder (core/cluster_results.py)
      ─▶ check: every listed file has a row (a file without one gets an error row)

A local folder is listed and read by nsfw-desk's own code inside Ray Data's pipeline rather
than by `ray.data.read_binary_files`: Arrow paths are text, so a name that is not UTF-8 could
not be read at all, and an unreadable file or a FIFO there fails (or hangs) the whole job
instead of becoming one error row. That folder must be visible at the same path on every node
(local for a local Ray; NFS or another shared mount on a cluster).

A remote source is read by Ray Data's read tasks, but through a small Datasource of ours
(ListedFiles) rather than `read_binary_files`: that one fails the whole job on one object it
cannot read (or, allowed errored blocks, drops every file of that read task without a word),
fetches each listed file's metadata again (a request per file for a listing that spans
folders), and has no modification time for resume. ListedFiles reads exactly the files the
listing kept, one error row per file that fails, with the listing's size and mtime.

Ray and its Data library are imported inside functions: `ray[data]` is the optional extra
`cluster`, and without it the command says what to install.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_desk.core import cluster_results as results
from nsfw_desk.core import cluster_source as sources
from nsfw_desk.core.durable import unwritable_reason
from nsfw_desk.core.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DiscoveryStats,
    ErrorKind,
    FileEntry,
    FileError,
    ImageError,
    content_hash,
    discover,
    read_file,
)
from nsfw_desk.core.paths import path_fields
from nsfw_desk.core.runtime import available_cores

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)

INSTALL_HINT = results.INSTALL_HINT
# Without a row for this long the run is stuck (an actor that cannot be placed, reads starved
# of CPUs): it says so and stops instead of waiting forever. Model loading (a download on a
# fresh node) happens before the first row, hence the generous default.
DEFAULT_STALL_S = 900.0
CPUS_PER_ACTOR_ON_CPU = 8  # torch's threads scale poorly past this on one model
# Test hook (tests/test_cluster.py): an actor holds its batch while HOLD_ENV/armed exists and
# HOLD_ENV/released does not, after writing its pid there, so a test can kill it mid-batch.
HOLD_ENV = "NSFW_DESK_CLUSTER_TEST_HOLD"


class ClusterError(Exception):
    """A cluster run that cannot start or cannot go on; the message says what to do."""


class ClusterStalled(ClusterError):
    """No row came back for the stall timeout: the run was stopped.

    When cluster_scan started or joined Ray itself it disconnects, which ends the job; in a
    session that was already connected (a test, a notebook) the job is the caller's to end,
    and `writer` is the thread still waiting on it."""

    def __init__(self, message: str, writer: threading.Thread | None = None) -> None:
        super().__init__(message)
        self.writer = writer


def require_ray() -> Any:
    # No Ray call may start a Ray of its own behind our back (a late call after a stall).
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ClusterError(
            f"cluster-scan needs Ray Data, which is not installed. Install it with "
            f"{INSTALL_HINT} (or pip install 'ray[data]')."
        ) from exc
    return ray


@dataclass
class ClusterOptions:
    address: str | None = None  # None: a local Ray on this machine
    models: list[str | None] = field(default_factory=lambda: [None])
    batch_size: int = 8
    concurrency: int | None = None  # model actors; None: from the cluster's resources
    num_gpus_per_worker: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    unsafe_label: str | None = None
    include_hidden: bool = False
    thumbnails: bool = True
    stall_s: float = DEFAULT_STALL_S
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    resume: bool = True
    reach_s: float = sources.DEFAULT_REACH_S  # a remote source that does not answer: stop


@dataclass(frozen=True)
class Pool:
    """How many model actors, and what each asks Ray for."""

    concurrency: int
    num_cpus: float
    num_gpus: float
    threads: int  # torch and decode threads in each actor

    def describe(self) -> str:
        gpus = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        return (
            f"{self.concurrency} model actor(s) × ({self.num_cpus:g} CPU{gpus}, "
            f"{self.threads} threads)"
        )


def plan_pool(
    cpus: float,
    gpus: float,
    *,
    concurrency: int | None = None,
    num_gpus_per_worker: float = 0.0,
    nodes: int = 1,
) -> Pool:
    """Size the actor pool from the cluster's resources (`nodes`: nodes with CPUs).

    Ray Data's other tasks (the listing's blocks, the Parquet writes) need whole CPUs too:
    actors that each took a whole CPU of a 2-CPU machine starved them, and the job hung
    while Ray Data reported backpressure. So the actors together ask for all but one CPU
    per node (fractions are fine: Ray's CPUs are for placement, the threads are set here),
    and on CPUs one actor per 8 cores keeps torch's threads useful.
    """
    if cpus < 1:
        raise ClusterError(f"The Ray cluster has {cpus:g} CPUs; it needs at least one.")
    if num_gpus_per_worker > 0:
        if gpus < num_gpus_per_worker:
            raise ClusterError(
                f"--num-gpus-per-worker {num_gpus_per_worker:g} asks for GPUs, but the Ray "
                f"cluster has {gpus:g}; leave the option out to run on CPUs."
            )
        most = int(gpus // num_gpus_per_worker)
        count = concurrency or most
        if count > most:
            raise ClusterError(
                f"--concurrency {count} actors × {num_gpus_per_worker:g} GPU needs "
                f"{count * num_gpus_per_worker:g} GPUs; the cluster has {gpus:g}."
            )
    else:
        count = concurrency or max(1, int(cpus // CPUS_PER_ACTOR_ON_CPU))
    spare = max(cpus - max(nodes, 1), 0.25)
    each = math.floor(spare / count * 100) / 100  # rounded down: never more than the spare
    num_cpus = max(0.01, min(float(CPUS_PER_ACTOR_ON_CPU), each))
    threads = max(1, min(CPUS_PER_ACTOR_ON_CPU * 2, int(cpus // count)))
    return Pool(count, num_cpus, float(num_gpus_per_worker), threads)


@dataclass
class ClusterSummary:
    run_folder: Path
    pool: Pool
    files: int = 0  # listed in the source
    skipped: int = 0  # already in RESULTS_DIR (resume)
    rows: int = 0  # written by this run
    scored: int = 0
    errors: int = 0
    duplicates: int = 0  # extra rows for one path in this run (readers keep one)
    missing: int = 0  # listed files the cluster returned no row for (written as errors)
    elapsed_s: float = 0.0
    scoring_s: float | None = None  # first model actor ready → last row (see Heartbeat)
    models: list[dict] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.scored / self.elapsed_s if self.elapsed_s > 0 else 0.0


# --- on the actors ---------------------------------------------------------------------------


class ScoreFiles:
    """The callable class of `map_batches`: one per actor, holding the models.

    Each batch runs the scan's own code: `read_file` (a local folder; a remote source's
    rows come with the bytes Ray Data read, or the read's error), `content_hash`,
    `decode_for_models` (decode, PDQ, the model's transform, the thumbnail) in a few threads,
    then one `LoadedModel.predict` per model. Every input row gives exactly one output row: a
    file that fails gets its error kind and message, as in a scan.
    """

    def __init__(
        self,
        models: list[str | None],
        *,
        device: str,
        precision: str,
        unsafe_label: str | None,
        threads: int,
        thumbnails: bool,
        max_bytes: int,
        max_pixels: int,
        heartbeat: Any = None,
    ) -> None:
        import torch

        from nsfw_desk.core.backends import load_detector

        self.heartbeat = heartbeat
        self._beat(0)
        self.models = [
            load_detector(m, device=device, precision=precision, unsafe_label=unsafe_label)
            for m in models
        ]
        torch.set_num_threads(threads)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="nsfw-desk-decode")
        self.thumbnails = thumbnails
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._beat(0, ready=True)

    def _beat(self, rows: int, ready: bool = False) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat.remote(rows, ready)

    def _prepare(self, item: tuple[bytes, bytes | None, ImageError | None]):
        from nsfw_desk.core.scan import decode_for_models

        raw, data, failed = item
        try:
            if failed is not None:
                raise failed
            if data is None:  # a local folder's file: read here, as the scan reads it
                data = read_file(Path(os.fsdecode(raw)), max_bytes=self.max_bytes)
            digest = content_hash(data)
            return digest, decode_for_models(data, self.models, max_pixels=self.max_pixels)
        except ImageError as exc:
            return exc
        except Exception as exc:  # a bug or a Pillow surprise: reported on the file, as scan
            log.exception("unexpected error preparing a file")
            return ImageError(ErrorKind.DECODE_ERROR, f"unexpected {type(exc).__name__}: {exc}")

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import torch

        _hold_for_test()
        count = len(batch["size"])
        datas: list[bytes | None] = [None] * count
        failures: list[ImageError | None] = [None] * count
        if "data" in batch:  # read by Ray Data's read tasks (a remote source): no second read
            raws = [str(p).encode("utf-8") for p in batch["path"]]
            datas = [None if d is None else bytes(d) for d in batch["data"]]
            failures = [
                None if kind is None else ImageError(str(kind), str(message))
                for kind, message in zip(batch["error_kind"], batch["error"], strict=True)
            ]
        else:
            raws = [base64.b64decode(p) for p in batch["path_b64"]]
        sizes = [_int_or_none(s) for s in batch["size"]]
        mtimes = [_int_or_none(m) for m in batch["mtime_ns"]]
        prepared = list(self.pool.map(self._prepare, zip(raws, datas, failures, strict=True)))
        good = [i for i, p in enumerate(prepared) if not isinstance(p, ImageError)]
        per_row: dict[int, list[dict]] = {i: [] for i in good}
        for m, model in enumerate(self.models):
            if not good:
                break
            stacked = torch.stack([prepared[i][1].tensors[m] for i in good])
            prediction = model.predict(stacked)
            for k, i in enumerate(good):
                per_row[i].append(
                    {
                        "model": model.model_id,
                        "unsafe": float(prediction.unsafe_scores[k]),
                        "probabilities": prediction.probabilities[k].tolist(),
                        "embedding": prediction.embeddings[k].astype("<f2").tobytes(),
                    }
                )
        rows = []
        for i, found in enumerate(prepared):
            row: dict[str, Any] = {**path_fields(raws[i]), "size": sizes[i], "mtime_ns": mtimes[i]}
            if isinstance(found, ImageError):
                row.update(error_kind=found.kind, error=found.message)
            else:
                digest, decoded = found
                row.update(
                    hash=digest,
                    width=decoded.width,
                    height=decoded.height,
                    format=decoded.format,
                    scores=per_row[i],
                    pdq=decoded.pdq,
                    pdq_quality=decoded.pdq_quality,
                    thumbnail=decoded.thumbnail if self.thumbnails else None,
                )
            rows.append(row)
        self._beat(len(rows))
        return _table(rows)


def _int_or_none(value: Any) -> int | None:
    """A numpy batch's integer, or None for a null (numpy shows it as NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _table(rows: list[dict]) -> pa.Table:
    import pyarrow as pa

    schema = results.schema()
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)


def _hold_for_test() -> None:
    """See HOLD_ENV: lets a test kill this worker while it holds a batch."""
    hold = os.environ.get(HOLD_ENV)
    if not hold:
        return
    folder = Path(hold)
    if not (folder / "armed").exists() or (folder / "released").exists():
        return
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (folder / "released").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class Heartbeat:
    """A tiny actor the model actors report rows to, so the driver can tell a slow run
    from a stuck one."""

    def __init__(self) -> None:
        self.rows = 0
        self.last = time.monotonic()
        self.ready: float | None = None  # when the first actor had its models loaded
        self.done = self.last  # when the latest row came

    def beat(self, rows: int, ready: bool = False) -> None:
        now = time.monotonic()
        self.rows += rows
        self.last = now
        if ready and self.ready is None:
            self.ready = now
        if rows:
            self.done = now

    def state(self) -> tuple[int, float]:
        return self.rows, time.monotonic() - self.last

    def scoring_s(self) -> float | None:
        """Seconds from the first actor ready to the last row (the steady-state time)."""
        return None if self.ready is None else self.done - self.ready


# --- on the driver ---------------------------------------------------------------------------


def listing(
    root: Path, include_hidden: bool
) -> tuple[list[FileEntry], list[FileError], DiscoveryStats]:
    """The scan's own discovery: the same files `nsfw-desk scan` would score."""
    stats = DiscoveryStats()
    entries: list[FileEntry] = []
    errors: list[FileError] = []
    for found in discover(root, include_hidden=include_hidden, stats=stats):
        (errors if isinstance(found, FileError) else entries).append(found)  # type: ignore[arg-type]
    return entries, errors, stats


@dataclass(frozen=True)
class Listed:
    """A file the run gives the cluster: the exact path (bytes) its row is keyed by."""

    key: bytes
    size: int | None
    mtime_ns: int | None


def _error_row(path: Path | str | bytes, kind: str, message: str, size, mtime_ns) -> dict:
    return {
        **path_fields(path),
        "size": size,
        "mtime_ns": mtime_ns,
        "error_kind": kind,
        "error": message,
    }


def _error_rows(errors: list[FileError]) -> list[dict]:
    return [_error_row(e.path, e.kind, e.message, e.size, e.mtime_ns) for e in errors]


def _to_do(listed: Listed, done: dict[bytes, results.Done]) -> bool:
    """Not in RESULTS_DIR yet, or changed since (size or modification time)."""
    found = done.get(listed.key)
    return found is None or (found.size, found.mtime_ns) != (listed.size, listed.mtime_ns)


def _write_rows(path: Path, rows: list[dict]) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(_table(rows), tmp)
    os.replace(tmp, path)


def _model_records(models: list[str | None], options: ClusterOptions) -> list[dict]:
    """Load each model once here (CPU) for its id and labels: a wrong --model fails before
    the cluster is asked for anything, and the results name their models."""
    from nsfw_desk.core.backends import load_detector

    records = []
    for spec in models:
        model = load_detector(
            spec, device="cpu", precision="fp32", unsafe_label=options.unsafe_label
        )
        records.append(
            {
                "id": model.model_id,
                "spec": str(model.spec),  # what each actor loads: source@revision, or a folder
                "source": model.spec.source,
                "revision": model.spec.revision,
                "architecture": model.architecture,
                "labels": model.labels,
                "unsafe_labels": model.unsafe_labels,
                "display_name": model.display_name,
            }
        )
        del model
    return records


def _connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray on this machine; False when this
    process is already connected (a test, a notebook), which is then used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no report home from a local Ray
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except Exception as exc:  # ConnectionError, or a version mismatch with the cluster
            raise ClusterError(
                f"Cannot join the Ray cluster at {address}: {exc}. Check that it runs "
                "(`ray status` on its head node) with the same Ray and Python versions, or "
                "leave --address out for a local Ray on this machine."
            ) from exc
    else:
        ray.init(num_cpus=available_cores(), include_dashboard=False)
    return True


def cluster_scan(
    source: Path | str,
    out: Path,
    options: ClusterOptions | None = None,
    *,
    say: Callable[[str], None] = lambda text: None,
    filesystem: Any = None,
) -> ClusterSummary:
    """Score every image under `source` on Ray into a new run folder under `out`.

    `source`: a local folder, a URI (`s3://bucket/prefix`, `gs://…`, `file://…`), or, with
    `filesystem` (a pyarrow FileSystem), a folder in that filesystem."""
    options = options or ClusterOptions()
    ray = require_ray()
    results.require_pyarrow()
    remote: sources.RemoteSource | None = None
    if filesystem is not None or sources.is_uri(str(source)):
        try:
            remote = sources.open_source(str(source), filesystem, timeout_s=options.reach_s)
        except sources.SourceError as exc:
            raise ClusterError(str(exc)) from exc
        label, label_bytes = remote.label, remote.label.encode("utf-8")
    else:
        source = Path(source).expanduser().absolute()
        if not source.is_dir():
            raise ClusterError(f"{source} is not a folder (the nodes must see it at this path).")
        label, label_bytes = str(source), os.fsencode(source)
    out = Path(out).expanduser().absolute()
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ClusterError(f"{out} exists and is not a folder; give a results folder as --out.")
    unwritable = unwritable_reason(out, folder=True)
    if unwritable:
        raise ClusterError(f"--out: {unwritable}.")
    started = time.monotonic()
    models = _model_records(options.models, options)

    done = results.done_files(out) if options.resume else {}
    local_todo: list[FileEntry] = []
    remote_todo: list[sources.RemoteFile] = []
    if remote is None:
        entries, found_errors, _stats = listing(Path(source), options.include_hidden)
        local_todo = [
            e for e in entries if _to_do(Listed(os.fsencode(e.path), e.size, e.mtime_ns), done)
        ]
        todo = [Listed(os.fsencode(e.path), e.size, e.mtime_ns) for e in local_todo]
        listed_errors = _error_rows([e for e in found_errors if os.fsencode(e.path) not in done])
        summary_files = len(entries) + len(found_errors)
    else:
        try:
            files, remote_errors = sources.list_files(
                remote, include_hidden=options.include_hidden, max_bytes=options.max_bytes
            )
        except sources.SourceError as exc:
            raise ClusterError(str(exc)) from exc
        remote_todo = [
            f for f in files if _to_do(Listed(f.uri.encode("utf-8"), f.size, f.mtime_ns), done)
        ]
        todo = [Listed(f.uri.encode("utf-8"), f.size, f.mtime_ns) for f in remote_todo]
        listed_errors = [
            _error_row(e.uri, e.kind, e.message, e.size, e.mtime_ns)
            for e in remote_errors
            if e.uri.encode("utf-8") not in done
        ]
        summary_files = len(files) + len(remote_errors)
    started_ray = _connect(options.address)
    try:
        # The pool first: a cluster that cannot run it leaves no run folder behind.
        resources = ray.cluster_resources()
        pool = plan_pool(
            float(resources.get("CPU", 0)),
            float(resources.get("GPU", 0)),
            concurrency=options.concurrency,
            num_gpus_per_worker=options.num_gpus_per_worker,
            nodes=sum(1 for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")),
        )
        run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
        folder = results.new_run_folder(out, run_id)
        record: dict[str, Any] = {
            "run": run_id,
            "source": label,
            "source_base64": base64.b64encode(label_bytes).decode("ascii"),
            "models": models,
            "status": "running",
        }
        results.write_run_file(folder, record)
        if listed_errors:
            _write_rows(folder / "listing-errors.parquet", listed_errors)
        summary = ClusterSummary(folder, pool, models=models)
        summary.files = summary_files
        summary.skipped = summary.files - len(todo) - len(listed_errors)
        say(
            f"{summary.files:,} files under {label}: {summary.skipped:,} already in {out}, "
            f"{len(todo):,} to score on {pool.describe()}"
        )
        if todo:
            blocks = _blocks(len(todo), options, pool)
            if remote is None:
                dataset = _local_dataset(ray, local_todo, blocks)
            else:
                dataset = _remote_dataset(ray, remote, remote_todo, blocks, options.max_bytes)
            summary.scoring_s = _run(
                ray, dataset, len(todo), folder, pool, options, [m["spec"] for m in models], say
            )
        _check(folder, todo, summary)
    finally:
        if started_ray:
            ray.shutdown()
    summary.errors += len(listed_errors)
    summary.rows += len(listed_errors)
    summary.elapsed_s = time.monotonic() - started
    record.update(
        status="done",
        files=summary.files,
        skipped=summary.skipped,
        rows=summary.rows,
        scored=summary.scored,
        errors=summary.errors,
        elapsed_s=round(summary.elapsed_s, 3),
        pool=pool.describe(),
    )
    results.write_run_file(folder, record)
    summary.run_folder = results.finish_run_folder(folder)
    return summary


def _blocks(count: int, options: ClusterOptions, pool: Pool) -> int:
    """Blocks of a few batches: a retried block (a killed actor) redoes little."""
    per_block = options.batch_size * 4
    return max(1, min(-(-count // per_block), 100 * pool.concurrency))


def _local_dataset(ray: Any, todo: list[FileEntry], blocks: int) -> Any:
    """A local folder's listing; the model actors read each file (see the module docstring)."""
    items = [
        {
            "path_b64": base64.b64encode(os.fsencode(e.path)).decode("ascii"),
            "size": e.size,
            "mtime_ns": e.mtime_ns,
        }
        for e in todo
    ]
    return ray.data.from_items(items, override_num_blocks=blocks)


def _remote_dataset(
    ray: Any,
    remote: sources.RemoteSource,
    todo: list[sources.RemoteFile],
    blocks: int,
    max_bytes: int,
) -> Any:
    """A remote source's files, read by Ray Data's read tasks (ListedFiles)."""
    datasource = _listed_files_class(ray)(remote.filesystem, todo, max_bytes)
    return ray.data.read_datasource(datasource, override_num_blocks=blocks)


def _listed_files_class(ray: Any) -> type:
    """ListedFiles, defined here because its base class comes with Ray (imported lazily)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ListedFiles(Datasource):
        """Ray Data reads exactly these files, each once: its bytes or the read's error
        (cluster_source.read_listed), with the listing's size and modification time."""

        def __init__(self, filesystem: Any, files: list[sources.RemoteFile], max_bytes: int):
            super().__init__()
            self.filesystem = filesystem
            self.files = files
            self.max_bytes = max_bytes

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(f.size for f in self.files)

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
            filesystem, max_bytes = self.filesystem, self.max_bytes
            parts = max(1, min(parallelism, len(self.files)))
            tasks = []
            for part in range(parts):
                files = self.files[part::parts]

                def read(files=files):
                    return sources.read_listed(filesystem, files, max_bytes=max_bytes)

                metadata = BlockMetadata(
                    num_rows=len(files),
                    size_bytes=sum(f.size for f in files),
                    input_files=None,
                    exec_stats=None,
                )
                more = (
                    {} if per_task_row_limit is None else {"per_task_row_limit": per_task_row_limit}
                )
                tasks.append(ReadTask(read, metadata, schema=sources.read_schema(), **more))
            return tasks

    return ListedFiles


def _run(
    ray: Any,
    source: Any,
    count: int,
    folder: Path,
    pool: Pool,
    options: ClusterOptions,
    model_sources: list[str],
    say: Callable[[str], None],
) -> float | None:
    """The Ray Data pipeline; stops it (and says why) when no row comes back for stall_s.
    Returns the seconds from the first model actor ready to the last row."""
    heartbeat = ray.remote(num_cpus=0)(Heartbeat).remote()
    device = "cuda" if pool.num_gpus else options.device
    dataset = source.map_batches(
        ScoreFiles,
        batch_size=options.batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={
            "models": model_sources,
            "device": device,
            "precision": options.precision,
            "unsafe_label": options.unsafe_label,
            "threads": pool.threads,
            "thumbnails": options.thumbnails,
            "max_bytes": options.max_bytes,
            "max_pixels": options.max_pixels,
            "heartbeat": heartbeat,
        },
        compute=ray.data.ActorPoolStrategy(size=pool.concurrency),
        num_cpus=pool.num_cpus,
        num_gpus=pool.num_gpus or None,
        # A killed actor is restarted and its batch retried: Ray Data's defaults for actor
        # pools (max_restarts=-1, max_task_retries=-1; passing them here is deprecated in
        # Ray 2.60) and it keeps only the successful attempt's output, so a file still gets
        # one row. A file that kills every worker touching it stops rows coming: the stall
        # timeout below ends that run instead of letting it loop.
    )
    failure: list[BaseException] = []

    def write() -> None:
        try:
            # Half a CPU per write task: with the actors' share, a write never waits for a
            # whole CPU to be free (and Ray Data does not warn that the job may hang).
            dataset.write_parquet(str(folder), ray_remote_args={"max_retries": 4, "num_cpus": 0.5})
        except BaseException as exc:  # reported by the driver thread
            failure.append(exc)

    writer = threading.Thread(target=write, name="nsfw-desk-cluster-write", daemon=True)
    writer.start()
    last_rows, quiet_since = -1, time.monotonic()
    while writer.is_alive():
        writer.join(timeout=1.0)
        try:
            rows, _ = ray.get(heartbeat.state.remote(), timeout=30)
        except Exception:  # the heartbeat itself is unreachable: no news is no progress
            rows = last_rows
        if rows != last_rows:
            last_rows, quiet_since = rows, time.monotonic()
        elif writer.is_alive() and time.monotonic() - quiet_since > options.stall_s:
            raise ClusterStalled(
                f"No file was scored for {options.stall_s:.0f} s ({max(last_rows, 0):,} of "
                f"{count:,} so far), so the run was stopped. The cluster may lack "
                f"the resources asked for ({pool.describe()}; it has "
                f"{ray.cluster_resources()}), or a model actor cannot start (see Ray's "
                "log above). Rows written so far are kept; the same command resumes.",
                writer,
            )
    if failure:
        raise ClusterError(f"The Ray Data run failed: {failure[0]}") from failure[0]
    try:
        return ray.get(heartbeat.scoring_s.remote(), timeout=30)
    except Exception:  # a figure only
        return None


def _check(folder: Path, todo: list[Listed], summary: ClusterSummary) -> None:
    """Count this run's rows per file; a listed file without one gets an error row."""
    counts: dict[bytes, int] = {}
    for path in results.parquet_files(folder):
        if path.name == "listing-errors.parquet":
            continue
        table = results.read_table(path, ["path", "path_base64", "error_kind"])
        if table is None:
            continue
        for row in table.to_pylist():
            raw = results.row_path(row)
            counts[raw] = counts.get(raw, 0) + 1
            if counts[raw] > 1:
                continue
            if row["error_kind"] is None:
                summary.scored += 1
            else:
                summary.errors += 1
    summary.duplicates = sum(n - 1 for n in counts.values())
    lost = [e for e in todo if e.key not in counts]
    summary.missing = len(lost)
    summary.rows = len(counts)
    if lost:
        log.warning("%d files came back without a row; recorded as errors", len(lost))
        message = "no result came back from the cluster; run cluster-scan again to retry it"
        rows = [_error_row(e.key, ErrorKind.UNREADABLE, message, e.size, e.mtime_ns) for e in lost]
        _write_rows(folder / "missing.parquet", rows)
        summary.errors += len(lost)
        summary.rows += len(lost)
