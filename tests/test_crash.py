"""SIGKILL at random moments: real scans and review sessions in a child process, killed twenty
times. After each kill the library passes `PRAGMA integrity_check`, every decision the child
reported as committed is there with its hash and label, and the next scan redoes nothing that
was stored (it reads neither files whose stored result still holds nor scored content).

Each life is forked from a "zygote" that has imported torch and timm once (tests/core_driver.py),
so twenty lives cost seconds, not twenty interpreter starts. `NSFW_DESK_CRASH_SEED` replays a
run's kill times; `NSFW_DESK_CRASH_KILLS=200` makes a longer run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hostile_corpus import FIGURES
from scan_probe import ScanProbe, stored_and_unchanged

from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

DRIVER = Path(__file__).with_name("core_driver.py")
KILLS = int(os.environ.get("NSFW_DESK_CRASH_KILLS", 20))  # more for a longer run
MAX_DELAY_S = 1.2


class Spawner:
    """Each life is a new interpreter: slower (torch and timm imported every time), but safe
    where forking a process that imported them is not (macOS)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self._procs: dict[int, subprocess.Popen] = {}

    def fork(self, args: dict) -> int:
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER), "run", json.dumps(args)],
            stdout=self._err,
            stderr=self._err,
        )
        self._procs[proc.pid] = proc
        return proc.pid

    def wait(self, pid: int) -> int:
        code = self._procs.pop(pid).wait(60)
        return -code if code < 0 else code << 8  # as os.waitpid reports it

    def stop(self) -> None:
        for proc in self._procs.values():
            proc.kill()
            proc.wait()
        self._err.close()


class Zygote:
    """tests/core_driver.py zygote: forks lives on request, reaps them (Linux)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), "zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.expect("ZYGOTE", 180)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.strip())

    def expect(self, word: str, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the zygote did not answer {word}: {self.log.read_text()[-3000:]}")
        assert line.startswith(word), (line, self.log.read_text()[-3000:])
        return line

    def fork(self, args: dict) -> int:
        self.proc.stdin.write(f"FORK {json.dumps(args)}\n")
        self.proc.stdin.flush()
        return int(self.expect("PID", 30).split()[1])

    def wait(self, pid: int) -> int:
        self.proc.stdin.write(f"WAIT {pid}\n")
        self.proc.stdin.flush()
        return int(self.expect("EXIT", 60).split()[2])

    def stop(self) -> None:
        try:
            self.proc.stdin.write("QUIT\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):  # a dead zygote: nothing to flush to
            self.proc.stdin.close()
        self._reader.join(10)  # it ends at the pipe's end, the zygote being gone
        self.proc.stdout.close()
        self._err.close()


def wait_for_ready(report: Path, pid: int, log: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = report.read_text() if report.exists() else ""
        if "ERROR" in text:
            pytest.fail(f"life {pid} failed: {text}\n{log.read_text()[-3000:]}")
        if "READY" in text:
            return
        time.sleep(0.01)
    pytest.fail(f"life {pid} never got ready: {log.read_text()[-3000:]}")


def parse_report(text: str) -> tuple[dict[int, tuple[str, str]], list[str]]:
    committed: dict[int, tuple[str, str]] = {}
    lines = text.splitlines()
    for line in lines:
        if line.startswith("COMMITTED "):
            parts = line.split()
            if len(parts) == 4:  # a line cut by the kill has no label yet: not reported
                committed[int(parts[1])] = (parts[2], parts[3])
    return committed, lines


def check_library(path: Path, committed: dict[int, tuple[str, str]]) -> None:
    """Integrity of both databases, and every reported decision present as reported."""
    for db in (path, path.with_name(path.stem + ".thumbnails.sqlite")):
        if db.exists():
            conn = sqlite3.connect(db)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", db
            finally:
                conn.close()
    # A kill while the first life created the library leaves it at an earlier schema
    # version (each migration is one transaction); the next start finishes it, as here.
    with Library(path):
        pass
    conn = sqlite3.connect(path)
    try:
        rows = {
            i: (h, label) for i, h, label in conn.execute("SELECT id, hash, label FROM decisions")
        }
    finally:
        conn.close()
    missing = sorted(set(committed) - set(rows))
    assert not missing, f"{len(missing)} committed decisions lost, e.g. {missing[:5]}"
    for decision_id, (digest, label) in committed.items():
        stored_hash, stored_label = rows[decision_id]
        assert stored_hash == digest, decision_id
        if label != "?":
            assert stored_label == (None if label == "-" else label), decision_id


def test_sigkill_at_random_moments_loses_nothing(tmp_path, model_dir, loaded_model, monkeypatch):
    seed = int(os.environ.get("NSFW_DESK_CRASH_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    folder = tmp_path / "photos"
    for i in range(8):
        write_photo(folder / "start" / f"p{i}.jpg", (90 + i, 70), seed=i)
    library_path = tmp_path / "library.sqlite"
    lives = Zygote if sys.platform.startswith("linux") else Spawner
    zygote = lives(tmp_path / "zygote.log")
    probe = ScanProbe(monkeypatch, loaded_model)
    committed: dict[int, tuple[str, str]] = {}
    mid_scan = survived = resumed_files = 0
    try:
        for life in range(KILLS):
            report = tmp_path / f"life{life}.txt"
            pid = zygote.fork(
                {
                    "library": str(library_path),
                    "folder": str(folder),
                    "model": str(model_dir),
                    "seed": life + 1,
                    "report": str(report),
                    "rounds": 10_000,
                    "new_images": 5,
                    "max_seconds": 60,
                }
            )
            wait_for_ready(report, pid, zygote.log)
            time.sleep(rng.uniform(0, MAX_DELAY_S))
            os.kill(pid, signal.SIGKILL)
            status = zygote.wait(pid)
            text = report.read_text()
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
                f"life {life} ended by itself ({status}): {text[-2000:]}\n"
                f"{zygote.log.read_text()[-3000:]}"
            )
            assert "ERROR" not in text, f"seed {seed}, life {life}: {text[-2000:]}"
            reported, lines = parse_report(text)
            committed.update(reported)
            scan_lines = [line for line in lines if line.startswith("SCAN")]
            mid_scan += bool(scan_lines) and scan_lines[-1].startswith("SCAN ")

            check_library(library_path, committed)

            # The next scan resumes: nothing whose stored result still holds is read again,
            # no content that has a score is decoded again, and every file ends somewhere.
            with Library(library_path) as library:
                stored = stored_and_unchanged(library, folder, loaded_model.model_id)
                scored = {
                    row[0]
                    for row in library.db.execute(
                        "SELECT hash FROM scores WHERE model_id = ?", (loaded_model.model_id,)
                    )
                }
                probe.reset()
                summary = scan_folder(folder, loaded_model, library)
                reread = {os.fsencode(p) for p in probe.reads} & stored
                assert not reread, f"seed {seed}, life {life}: re-read {sorted(reread)[:5]}"
                assert not set(probe.decoded_hashes) & scored, f"seed {seed}: re-decoded"
                # A kill inside write_photo leaves its hidden temporary file: scans skip it.
                on_disk = sum(
                    1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                )
                assert summary.files == on_disk and not summary.cancelled
                assert summary.scored + summary.cached + summary.errors == summary.files
                resumed_files += len(stored)
            survived += 1
    finally:
        zygote.stop()
    check_library(library_path, committed)
    FIGURES["crash: SIGKILLs survived"] = (
        f"{survived} of {KILLS} ({mid_scan} during a scan, {KILLS - mid_scan} while writing "
        f"pictures; decisions all along); {len(committed):,} decisions reported committed, "
        f"all present; "
        f"integrity_check ok every time; {resumed_files:,} stored results not redone"
    )
    assert survived == KILLS
    assert mid_scan >= KILLS // 4, f"only {mid_scan} kills landed during a scan"
    assert len(committed) >= KILLS, "the lives made too few decisions to test anything"
