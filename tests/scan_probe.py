"""Watching a real scan from the inside: which files it reads and decodes, how long each takes,
how much memory the process uses, and whether a rescan redoes anything already stored.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import nsfw_desk.core.scan as scan_module
from nsfw_desk.core.images import ErrorKind, content_hash
from nsfw_desk.core.store import Library, key_bytes

SCORE = "score"
ANY = "any"
HEX64 = re.compile(r"[0-9a-f]{64}")
ERROR_KINDS = ErrorKind.ALL


class ScanProbe:
    """Wraps the scan's read, decode, preprocess and thumbnail steps (install with monkeypatch).

    Per file: the time spent in those steps (the file's whole cost in a decode thread).
    Before a file is read, its action from `actions` runs once (the corpus's mid-scan events).
    """

    def __init__(self, monkeypatch, model, actions: dict[Path, Callable[[], None]] | None = None):
        self.actions = dict(actions or {})
        self.reads: list[Path] = []
        self.decoded_hashes: list[str] = []
        self.seconds: dict[Path, float] = defaultdict(float)
        self._local = threading.local()
        self._lock = threading.Lock()
        real_read, real_decode = scan_module.read_file, scan_module.decode
        real_thumb, real_pre = scan_module.make_thumbnail, model.preprocess

        def read_file(path, **kwargs):
            path = Path(path)
            with self._lock:
                self.reads.append(path)
                action = self.actions.pop(path, None)
            if action is not None:
                action()
            self._local.path = path
            return self._timed(real_read, path, **kwargs)

        def decode(data, **kwargs):
            with self._lock:
                self.decoded_hashes.append(content_hash(data))
            return self._timed(real_decode, data, **kwargs)

        monkeypatch.setattr(scan_module, "read_file", read_file)
        monkeypatch.setattr(scan_module, "decode", decode)
        monkeypatch.setattr(
            scan_module, "make_thumbnail", lambda *a, **k: self._timed(real_thumb, *a, **k)
        )
        monkeypatch.setattr(model, "preprocess", lambda *a, **k: self._timed(real_pre, *a, **k))

    def _timed(self, func, *args, **kwargs):
        path = getattr(self._local, "path", None)
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            if path is not None:
                with self._lock:
                    self.seconds[path] += time.perf_counter() - started

    def reset(self) -> None:
        self.reads.clear()
        self.decoded_hashes.clear()
        self.seconds.clear()


class MemoryWatch:
    """Peak resident memory of this process while the block runs (sampled, and ru_maxrss)."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.baseline = self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return _maxrss()

    def __enter__(self) -> MemoryWatch:
        self.baseline = self.peak = self.rss()
        self._maxrss_before = _maxrss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        after = _maxrss()
        if after > self._maxrss_before:  # this block set the process's record: exact peak
            self.peak = max(self.peak, after)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _maxrss() -> int:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def same_path(a: Path) -> bytes:
    return os.fsencode(a)


def check_outcomes(outcomes, expected: dict[Path, str]) -> dict[Path, object]:
    """Every expected path exactly once, each ending as its expected score or error."""
    counts = Counter(same_path(o.path) for o in outcomes)
    duplicated = {p: n for p, n in counts.items() if n > 1}
    assert not duplicated, f"files reported more than once: {duplicated}"
    want = {same_path(p): (p, w) for p, w in expected.items()}
    assert set(counts) == set(want), (
        f"missing: {sorted(set(want) - set(counts))}; unexpected: {sorted(set(counts) - set(want))}"
    )
    by_path = {same_path(o.path): o for o in outcomes}
    for key, (path, wanted) in want.items():
        check_one(by_path[key], wanted, path)
    return {want[k][0]: o for k, o in by_path.items()}


def check_one(outcome, wanted: str, path: Path) -> None:
    name = os.fsencode(path.name)
    is_score = outcome.error_kind is None
    if wanted == ANY:
        wanted = SCORE if is_score else outcome.error_kind
        assert wanted == SCORE or wanted in ERROR_KINDS, (name, outcome)
    if wanted == SCORE:
        assert is_score and outcome.error is None, (name, outcome)
        assert outcome.score is not None and 0.0 <= outcome.score <= 1.0, (name, outcome)
        assert HEX64.fullmatch(outcome.hash or ""), (name, outcome)
    else:
        assert outcome.error_kind == wanted, (name, wanted, outcome)
        assert isinstance(outcome.error, str) and outcome.error.strip(), (name, outcome)
        assert outcome.score is None and outcome.hash is None, (name, outcome)


def check_library(
    library: Library, root: Path, model_id: str, outcomes: dict[Path, object]
) -> None:
    """The library holds exactly the scan's outcomes: same files, hashes and errors."""
    stored = list(library.results(root, model_id))
    counts = Counter(same_path(r.path) for r in stored)
    assert counts == Counter(same_path(p) for p in outcomes), (
        f"library and scan disagree: only in library "
        f"{sorted(set(counts) - {same_path(p) for p in outcomes})}, only in scan "
        f"{sorted({same_path(p) for p in outcomes} - set(counts))}"
    )
    by_path = {same_path(p): o for p, o in outcomes.items()}
    for row in stored:
        outcome = by_path[same_path(row.path)]
        assert (row.hash, row.error_kind) == (outcome.hash, outcome.error_kind), row.path
        if row.error_kind is None:
            assert abs(row.score - outcome.score) < 1e-6, row.path


def stored_and_unchanged(library: Library, root: Path, model_id: str) -> set[bytes]:
    """Files whose stored result still holds: same size and mtime on disk, and a score for
    their content or an error that depends only on their bytes. A rescan must not read them."""
    known = library.known_files(root)
    errors = library.known_errors(root)
    scored = library.scores_for(model_id, {k.hash for k in known.values() if k.hash})
    keep: set[bytes] = set()
    for text, row in known.items():
        path = _path_for(library, text)
        if path is not None and row.hash in scored and _facts(path) == (row.size, row.mtime_ns):
            keep.add(os.fsencode(path))
    for text, (size, mtime_ns, kind, _) in errors.items():
        path = _path_for(library, text)
        if (
            path is not None
            and kind in ErrorKind.CONTENT_BOUND
            and _facts(path) == (size, mtime_ns)
        ):
            keep.add(os.fsencode(path))
    return keep


def _path_for(library: Library, text: str) -> Path | None:
    """The path of a `known_files`/`known_errors` key, if the library still has its row."""
    raw = key_bytes(text)
    for table in ("files", "errors"):
        row = library.db.execute(
            f"SELECT path_bytes FROM {table} WHERE path_bytes = ?", (raw,)
        ).fetchone()
        if row is not None:
            return Path(os.fsdecode(row[0]))
    return None


def _facts(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns
