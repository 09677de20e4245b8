"""Concurrent use: the desk reading and deciding while its scan worker writes, two instances of
the app on one library, and folders and files that change or disappear while a scan runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import FIGURES
from scan_probe import ScanProbe, check_outcomes, stored_and_unchanged
from test_crash import check_library, parse_report

from nsfw_desk.core.images import ErrorKind, content_hash
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import SCHEMA_VERSION, Library, ScoredFile
from nsfw_desk.synthetic import write_photo

DRIVER = Path(__file__).with_name("core_driver.py")
SCORE = "score"


def scored_file(path: Path, digest: str) -> ScoredFile:
    return ScoredFile(
        path,
        100,
        1,
        digest,
        10,
        10,
        "JPEG",
        0.5,
        np.array([0.5, 0.5], dtype=np.float32),
        np.zeros(8, np.float32),
        b"jpeg",
    )


def test_the_desk_reads_and_decides_while_the_worker_writes(tmp_path):
    """The worker's connection commits batch after batch as fast as it can; the GUI's reads
    the results and records decisions in between. No "database is locked" reaches either."""
    path = tmp_path / "library.sqlite"
    Library(path).close()
    root = tmp_path / "photos"
    failures: list[str] = []
    stop = threading.Event()
    batches = 0

    def worker() -> None:
        nonlocal batches
        library = Library(path)
        try:
            scan_id = library.begin_scan(root, "m")
            while not stop.is_set():
                items = [
                    scored_file(root / f"b{batches}" / f"{k}.jpg", f"h{batches}-{k}")
                    for k in range(8)
                ]
                library.record_scored(items, "m")
                batches += 1
            library.finish_scan(scan_id, "done", files=0, scored=0, cached=0, errors=0)
        except Exception as exc:
            failures.append(f"worker: {exc!r}")
        finally:
            library.close()

    thread = threading.Thread(target=worker)
    thread.start()
    library = Library(path)
    reviews = ReviewStore(library)
    decided: dict[int, str] = {}
    waits: list[float] = []
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end and not failures:
            rows = list(library.results(root, "m"))
            reviews.current_labels([r.hash for r in rows[-50:]])
            if rows:
                digest = rows[-1].hash
                started = time.perf_counter()
                (new_id,) = reviews.decide(
                    [DecisionInput(digest, "m", 0.5)], "unsafe", reviewer="r", threshold=0.5
                )
                waits.append(time.perf_counter() - started)
                decided[new_id] = digest
                if len(decided) % 5 == 0:
                    reviews.revert([new_id], reviewer="r", threshold=0.5)
    except Exception as exc:
        failures.append(f"desk: {exc!r}")
    finally:
        stop.set()
        thread.join()
    assert not failures, failures
    assert batches > 10 and len(decided) > 10, (batches, len(decided))
    stored = {d.id: d.hash for h in set(decided.values()) for d in reviews.history(h)}
    assert all(stored.get(i) == h for i, h in decided.items())
    assert library.integrity_check() == "ok"
    library.close()
    FIGURES["concurrency: desk while the worker writes"] = (
        f"{len(decided)} decisions between {batches} worker batches in 2 s, no lock error; "
        f"slowest decision {max(waits) * 1000:.0f} ms"
    )


def test_the_desk_reads_while_a_real_scan_writes(tmp_path, loaded_model):
    folder = tmp_path / "photos"
    for i in range(40):
        write_photo(folder / f"{i // 10}" / f"p{i}.jpg", (100 + i, 80), seed=i)
    path = tmp_path / "library.sqlite"
    failures: list[str] = []
    done = threading.Event()
    Library(path).close()

    def worker() -> None:
        try:
            with Library(path) as library:
                summary = scan_folder(folder, loaded_model, library)
                assert summary.scored == 40
        except BaseException as exc:
            failures.append(repr(exc))
        finally:
            done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    seen = 0
    with Library(path) as library:
        reviews = ReviewStore(library)
        while not done.is_set():
            rows = [r for r in library.results(folder, loaded_model.model_id) if r.hash]
            seen = max(seen, len(rows))
            if rows:
                reviews.decide([DecisionInput(rows[0].hash)], "safe", reviewer="r", threshold=0.5)
                library.thumbnail(rows[-1].hash)
            time.sleep(0.005)
        thread.join()
        assert not failures, failures
        assert len(list(library.results(folder, loaded_model.model_id))) == 40
        assert library.integrity_check() == "ok"


def open_at_once(path: Path) -> list[str]:
    """Two threads open `path` at the same moment and hold it open together."""
    start, both_open = threading.Barrier(2), threading.Barrier(2, timeout=60)
    failures: list[str] = []

    def open_it() -> None:
        start.wait()
        try:
            library = Library(path)
        except Exception as exc:
            failures.append(repr(exc))
            both_open.abort()
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            both_open.wait()
        library.close()

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_two_instances_opening_a_new_library_at_once(tmp_path):
    """Both create and migrate the same new file at the same moment: both must work."""
    for attempt in range(10):
        path = tmp_path / f"new{attempt}" / "library.sqlite"  # the folder is new too
        assert open_at_once(path) == []
        with Library(path) as library:
            assert library.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert library.integrity_check() == "ok"


ROUNDS, NEW_IMAGES = 4, 4
# One decision per 20 ms and process at most: far faster than a moderator, and the scan
# workers still get the write lock. A reviewer that wrote every 0-5 ms (one fsync each) could
# starve them: SQLite's busy handler is no queue, a waiting writer retries at most every
# 100 ms and a free moment between two decisions may never coincide with its retry.
REVIEW_INTERVAL_S = 0.02


def test_two_instances_scan_and_review_one_library_at_once(
    tmp_path, model_dir, loaded_model, monkeypatch
):
    """Two processes, each a scan worker plus a reviewer, on one library and one folder.

    Each scans exactly ROUNDS times (no deadline: a slow machine makes the test slower, not
    shorter) while its reviewer decides and undoes. `NSFW_DESK_CONCURRENCY_SEED` picks the
    seeds of the four threads' random choices; they are in every failure message.
    """
    base = int(os.environ.get("NSFW_DESK_CONCURRENCY_SEED", 0))
    seeds = {
        life: {"scan_seed": base * 100 + 10 * life + 1, "review_seed": base * 100 + 10 * life + 2}
        for life in (1, 2)
    }
    replay = f"seeds {seeds} (NSFW_DESK_CONCURRENCY_SEED={base})"
    folder = tmp_path / "photos"
    for i in range(6):
        write_photo(folder / "shared" / f"p{i}.jpg", (90 + i, 70), seed=500 + i)
    library_path = tmp_path / "library.sqlite"  # new: the two race to create it too
    procs = []
    for life, life_seeds in seeds.items():
        args = {
            "library": str(library_path),
            "folder": str(folder),
            "model": str(model_dir),
            "seed": life,
            **life_seeds,
            "report": str(tmp_path / f"instance{life}.txt"),
            "rounds": ROUNDS,
            "new_images": NEW_IMAGES,
            "review_interval_s": REVIEW_INTERVAL_S,
            "min_decisions": 5,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(DRIVER), "run", json.dumps(args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        # Only against a hang: the lives stop after their rounds, however long those take.
        outputs = [p.communicate(timeout=600)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
            proc.communicate()
        pytest.fail(f"an instance hung for 10 minutes; {replay}")
    committed: dict[int, tuple[str, str]] = {}
    for life, (proc, output) in enumerate(zip(procs, outputs, strict=True), start=1):
        text = (tmp_path / f"instance{life}.txt").read_text()
        where = f"instance {life}, {replay}"
        assert proc.returncode == 0, (where, output[-3000:])
        assert "ERROR" not in text and "locked" not in output, (where, text[-2000:], output[-3000:])
        assert text.rstrip().endswith("DONE"), (where, text[-2000:])
        assert text.count("SCANNED") == ROUNDS, (where, text[-2000:])
        reported, _ = parse_report(text)
        assert len(reported) >= 5, f"{where}: only {len(reported)} decisions"
        committed.update(reported)
    try:
        check_library(library_path, committed)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {replay}") from exc

    # Whatever either instance stored holds: a third scan reads none of it again.
    probe = ScanProbe(monkeypatch, loaded_model)
    with Library(library_path) as library:
        stored = stored_and_unchanged(library, folder, loaded_model.model_id)
        summary = scan_folder(folder, loaded_model, library)
        assert summary.files == 6 + 2 * ROUNDS * NEW_IMAGES
        assert not {os.fsencode(p) for p in probe.reads} & stored, replay
        assert summary.scored == 0, replay
    FIGURES["concurrency: two instances on one library"] = (
        f"2 processes × {ROUNDS} scan rounds + reviews at once, {len(committed):,} decisions, "
        f"no lock error, integrity ok, nothing rescanned"
    )


# --- folders and files that change under a running scan ---------------------------------


@pytest.fixture
def drive(tmp_path):
    """A folder of photos standing for a removable drive's mount point."""
    root = tmp_path / "drive"
    for i in range(24):
        write_photo(root / f"d{i % 3}" / f"p{i:02d}.jpg", (80 + i, 60), seed=900 + i)
    return root


def unplug(root: Path) -> Path:
    away = root.with_name("unplugged")
    os.rename(root, away)
    return away


def test_a_drive_unplugged_mid_scan(drive, loaded_model, library, monkeypatch):
    files = sorted(p for p in drive.rglob("*.jpg"))
    sixth = sorted(files, key=lambda p: (p.parent.name, p.name))[5]
    away = drive.with_name("unplugged")
    probe = ScanProbe(monkeypatch, loaded_model, {sixth: lambda: unplug(drive)})

    summary = scan_folder(drive, loaded_model, library, keep_outcomes=True)

    assert not drive.exists() and away.exists() and not probe.actions
    assert not summary.cancelled and summary.files == 24
    kinds = [o.error_kind or SCORE for o in summary.outcomes]
    assert set(kinds) <= {SCORE, ErrorKind.VANISHED}, kinds
    assert kinds.count(SCORE) >= 1 and kinds.count(ErrorKind.VANISHED) >= 1, kinds
    check_outcomes(summary.outcomes, {o.path: o.error_kind or SCORE for o in summary.outcomes})
    assert len(list(library.results(drive, loaded_model.model_id))) == 24

    # Plugged in again: the vanished files are read and scored, the scored ones are not.
    os.rename(away, drive)
    stored = stored_and_unchanged(library, drive, loaded_model.model_id)
    assert len(stored) == kinds.count(SCORE)
    probe.reset()
    again = scan_folder(drive, loaded_model, library, keep_outcomes=True)
    check_outcomes(again.outcomes, dict.fromkeys(files, SCORE))
    assert not {os.fsencode(p) for p in probe.reads} & stored
    assert again.scored == kinds.count(ErrorKind.VANISHED)


def test_a_drive_absent_at_the_next_scan_keeps_the_library(
    drive, loaded_model, library, monkeypatch
):
    first = scan_folder(drive, loaded_model, library)
    assert first.scored == 24
    away = unplug(drive)

    absent = scan_folder(drive, loaded_model, library, keep_outcomes=True)

    assert [(o.path, o.error_kind) for o in absent.outcomes] == [(drive, ErrorKind.UNREADABLE)]
    assert "cannot open folder" in absent.outcomes[0].error
    # The drive's files are unknown, not deleted: their results stay in the library.
    assert len([r for r in library.results(drive, loaded_model.model_id) if r.hash]) == 24

    os.rename(away, drive)
    probe = ScanProbe(monkeypatch, loaded_model)
    back = scan_folder(drive, loaded_model, library)
    assert (back.scored, back.cached, back.errors) == (0, 24, 0)
    assert probe.reads == []


def test_a_folder_that_cannot_be_listed_keeps_its_results(
    drive, loaded_model, library, monkeypatch
):
    scan_folder(drive, loaded_model, library)
    blocked = drive / "d1"
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = scan_folder(drive, loaded_model, library, keep_outcomes=True)
    errors = [o for o in summary.outcomes if o.error_kind]
    assert [(o.path, o.error_kind) for o in errors] == [(blocked, ErrorKind.UNREADABLE)]
    under = [r for r in library.results(drive, loaded_model.model_id) if r.hash]
    assert len(under) == 24  # d1's 8 files included


def test_files_changed_and_deleted_while_a_scan_runs(tmp_path, loaded_model, library, monkeypatch):
    folder = tmp_path / "uploads"
    files = [
        write_photo(folder / f"u{i:02d}.jpg", (90 + i, 60 + i), seed=300 + i) for i in range(40)
    ]
    rng = random.Random(7)
    chaos_done = threading.Event()

    def chaos() -> None:
        for path in rng.sample(files, 20):
            action = rng.choice(["delete", "truncate", "rewrite", "empty"])
            if action == "delete":
                path.unlink()
            elif action == "truncate":
                path.write_bytes(path.read_bytes()[:300])
            elif action == "empty":
                path.write_bytes(b"")
            else:
                write_photo(path, (70, 70), seed=rng.randrange(10**6))
            time.sleep(0.003)
        chaos_done.set()

    starter = threading.Thread(target=chaos)
    probe = ScanProbe(monkeypatch, loaded_model, {files[0]: starter.start})

    summary = scan_folder(folder, loaded_model, library, keep_outcomes=True)
    starter.join()
    assert chaos_done.is_set() and not summary.cancelled
    allowed = {SCORE, ErrorKind.VANISHED, ErrorKind.NOT_AN_IMAGE, ErrorKind.DECODE_ERROR}
    kinds = {o.path: o.error_kind or SCORE for o in summary.outcomes}
    assert set(kinds) == set(files) and set(kinds.values()) <= allowed, kinds

    # Once things are quiet, a rescan agrees with the disk: every file there ends as the
    # score of its present bytes or the error its present bytes deserve; the rest is gone.
    probe.reset()
    again = scan_folder(folder, loaded_model, library, keep_outcomes=True)
    present = {p for p in files if p.exists()}
    assert {o.path for o in again.outcomes} == present
    for outcome in again.outcomes:
        data = outcome.path.read_bytes()
        if outcome.error_kind is None:
            assert outcome.hash == content_hash(data), outcome.path.name
        else:
            assert outcome.error_kind in (ErrorKind.NOT_AN_IMAGE, ErrorKind.DECODE_ERROR)
            assert len(data) in (0, 300), outcome
    stored = list(library.results(folder, loaded_model.model_id))
    assert {r.path for r in stored} == present
    conn = sqlite3.connect(library.path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
