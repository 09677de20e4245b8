"""cluster-scan on a local Ray (2 CPUs, no dashboard, started here once for the module):
one row per file with the same scores as `scan`, errors with reasons, a worker killed
mid-run, resume, and `import` into a library the desk reads without a model.

Marked `cluster` and skipped where ray is not installed (the `cluster` extra). Ray is slow
to start on a small shared machine; every wait here has a limit, and a run that stops
making progress fails by itself (the stall timeout), so nothing can hang for ever.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # no Ray starts unless a test starts it
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from support import permissions_enforced  # noqa: E402

from nsfw_desk.core import cluster_results  # noqa: E402
from nsfw_desk.core.cluster import HOLD_ENV, ClusterOptions, cluster_scan  # noqa: E402
from nsfw_desk.core.cluster_import import PrefixMap, import_results  # noqa: E402
from nsfw_desk.core.images import discover  # noqa: E402
from nsfw_desk.core.paths import path_fields  # noqa: E402
from nsfw_desk.core.store import Library  # noqa: E402
from nsfw_desk.synthetic import write_photo  # noqa: E402

pytestmark = pytest.mark.cluster

RUN_LIMIT_S = 420  # one cluster_scan here, Ray's start included, on a busy 2-core machine
NON_UTF8 = b"caf\xe9.jpg"


@pytest.fixture(scope="module")
def hold_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hold")


@pytest.fixture(scope="module")
def ray_session(hold_dir):
    """One local Ray for the module: 2 CPUs, no dashboard, no usage report."""
    os.environ[HOLD_ENV] = str(hold_dir)  # inherited by the workers Ray starts
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # A last resort against a hang anywhere in Ray: dump the stacks and end the run.
    faulthandler.dump_traceback_later(1800, exit=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    faulthandler.cancel_dump_traceback_later()
    os.environ.pop(HOLD_ENV, None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Eight photos, a copy under a name that is not UTF-8, and bad files of each kind."""
    root = tmp_path_factory.mktemp("archive") / "photos"
    for i in range(8):
        write_photo(root / ("a" if i % 2 else "b") / f"photo_{i}.jpg", (100 + 9 * i, 80), seed=i)
    (root / os.fsdecode(NON_UTF8)).write_bytes((root / "a" / "photo_1.jpg").read_bytes())
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_bytes(b"not a picture at all, just text\n" * 4)
    os.mkfifo(root / "pipe.jpg")
    if permissions_enforced():
        locked = root / "locked.jpg"
        write_photo(locked, (64, 64), seed=99)
        locked.chmod(0)
    return root


def options(model_dir: Path, **more) -> ClusterOptions:
    settings = {"precision": "fp32", "batch_size": 4, "stall_s": 240.0, **more}
    return ClusterOptions(models=[str(model_dir)], **settings)


def run_scan(corpus: Path, out: Path, model_dir: Path, **more):
    """cluster_scan in a thread, so a test fails (instead of waiting) past RUN_LIMIT_S."""
    found: dict = {}

    def target() -> None:
        try:
            found["summary"] = cluster_scan(corpus, out, options(model_dir, **more))
        except BaseException as exc:
            found["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, found


def finish(thread: threading.Thread, found: dict):
    thread.join(RUN_LIMIT_S)
    assert not thread.is_alive(), f"cluster_scan did not finish in {RUN_LIMIT_S} s"
    if "error" in found:
        raise found["error"]
    return found["summary"]


def raw_rows(folder: Path) -> list[dict]:
    """Every row of a run folder as written, with no de-duplication."""
    rows = []
    for path in cluster_results.parquet_files(folder):
        table = cluster_results.read_table(path)
        assert table is not None, f"{path} unreadable"
        rows.extend(table.to_pylist())
    return rows


def listed(corpus: Path) -> set[bytes]:
    return {os.fsencode(found.path) for found in discover(corpus)}


@pytest.fixture(scope="module")
def first_run(ray_session, corpus, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    summary = finish(*run_scan(corpus, out, model_dir))
    return out, summary


@pytest.fixture(scope="module")
def scanned(corpus, model_dir, tmp_path_factory):
    """The same folder through `nsfw-desk scan`'s core, fp32: path bytes → outcome."""
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import scan_folder

    model = load_model(model_dir, device="cpu", precision="fp32")
    with Library(tmp_path_factory.mktemp("scanlib") / "library.sqlite") as library:
        summary = scan_folder(corpus, model, library, keep_outcomes=True)
        pdq = {o.hash: library.pdq_of(o.hash) for o in summary.outcomes if o.hash}
    return {os.fsencode(o.path): o for o in summary.outcomes}, pdq, model.model_id


def test_one_row_per_file_with_the_scans_scores_and_errors(first_run, corpus, scanned):
    out, summary = first_run
    outcomes, pdq, model_id = scanned
    rows = raw_rows(summary.run_folder)
    paths = [cluster_results.row_path(r) for r in rows]
    # Exactly one row per file discovery lists (the bad ones included), nothing else.
    assert sorted(paths) == sorted(listed(corpus)) == sorted(outcomes)
    assert summary.duplicates == 0 and summary.missing == 0
    assert summary.rows == len(rows) and summary.scored == 9
    worst = 0.0
    for row, raw in zip(rows, paths, strict=True):
        outcome = outcomes[raw]
        assert row["size"] == outcome.size and row["mtime_ns"] == outcome.mtime_ns
        if outcome.error_kind is not None:
            # The reason, as the scan gives it; no score, no hash.
            assert (row["error_kind"], row["error"]) == (outcome.error_kind, outcome.error)
            assert row["scores"] is None and row["hash"] is None
            continue
        assert row["error_kind"] is None and row["hash"] == outcome.hash
        (score,) = row["scores"]
        assert score["model"] == model_id
        worst = max(worst, abs(score["unsafe"] - outcome.score))
        assert len(score["embedding"]) == 2 * 64  # float16 × test_vit's width
        assert (row["pdq"], row["pdq_quality"]) == pdq[outcome.hash]
        assert row["thumbnail"][:3] == b"\xff\xd8\xff"
    assert worst <= 1e-4, f"max |Δp| {worst} between cluster-scan and scan (fp32)"
    kinds = {r["error_kind"] for r in rows} - {None}
    assert {"decode_error", "not_an_image", "unreadable"} <= kinds
    # The name that is not UTF-8 keeps its exact bytes (lossless paths).
    (odd,) = [r for r in rows if cluster_results.row_path(r).endswith(NON_UTF8)]
    assert odd == {**odd, **path_fields(corpus / os.fsdecode(NON_UTF8))}
    assert odd["path_base64"]
    # The run folder is complete (renamed from .partial) and names its model.
    assert not summary.run_folder.name.endswith(".partial")
    (record,) = cluster_results.run_records(out)
    assert record["status"] == "done" and record["models"][0]["id"] == model_id


def test_a_worker_killed_mid_run_still_gives_every_file_once(
    ray_session, corpus, model_dir, hold_dir, tmp_path
):
    out = tmp_path / "results"
    (hold_dir / "armed").touch()
    try:
        thread, found = run_scan(corpus, out, model_dir)
        deadline = time.monotonic() + RUN_LIMIT_S
        pids: list[Path] = []
        while not pids and time.monotonic() < deadline and thread.is_alive():
            pids = list(hold_dir.glob("*.pid"))
            time.sleep(0.1)
        assert pids, "no model actor took a batch"
        os.kill(int(pids[0].read_text()), signal.SIGKILL)  # mid-batch: it holds one
    finally:
        (hold_dir / "released").touch()
    summary = finish(thread, found)
    rows = raw_rows(summary.run_folder)
    paths = [cluster_results.row_path(r) for r in rows]
    assert sorted(paths) == sorted(listed(corpus))  # every file, once
    assert summary.missing == 0 and summary.duplicates == 0


def _dump(library: Library) -> dict:
    tables = ("files", "scores", "errors", "content_hashes", "models", "scans")
    dump = {t: sorted(map(tuple, library.db.execute(f"SELECT * FROM {t}"))) for t in tables}
    dump["thumbnails"] = sorted(map(tuple, library.thumbs.execute("SELECT * FROM thumbnails")))
    return dump


def test_import_twice_changes_nothing_and_maps_prefixes(first_run, corpus, tmp_path, scanned):
    out, summary = first_run
    outcomes, _pdq, model_id = scanned
    local = tmp_path / "mounted"
    maps = [PrefixMap.parse(f"{corpus}={local}")]
    with Library(tmp_path / "library.sqlite") as library:
        first = import_results(out, library, maps=maps)
        assert first.rows == summary.rows and not first.unchanged
        before = _dump(library)
        second = import_results(out, library, maps=maps)
        assert second.unchanged and _dump(library) == before
        # Paths now start with the reviewer's mount point, bytes for bytes.
        stored = {bytes(r[0]) for r in library.db.execute("SELECT path_bytes FROM files")}
        assert os.fsencode(local) + b"/" + NON_UTF8 in stored
        mapped = {os.fsencode(local) + raw[len(os.fsencode(corpus)) :] for raw in outcomes}
        errors = {bytes(r[0]) for r in library.db.execute("SELECT path_bytes FROM errors")}
        assert stored | errors == mapped and not stored & errors
        scores = library.scores_for(model_id, {o.hash for o in outcomes.values() if o.hash})
        for outcome in outcomes.values():
            if outcome.hash:
                assert abs(scores[outcome.hash] - outcome.score) <= 1e-4


def test_the_desk_shows_imported_scores_without_a_model(first_run, corpus, tmp_path, scanned):
    """What the desk's scan worker reads when a folder opens, before loading any model
    (gui/worker.py: last_model_for, then results): the imported scores."""
    out, _ = first_run
    outcomes, _pdq, model_id = scanned
    with Library(tmp_path / "library.sqlite") as library:
        import_results(out, library)
        assert library.last_model_for(corpus) == model_id
        shown = {os.fsencode(o.path): o for o in library.results(corpus, model_id)}
        assert set(shown) == set(outcomes)
        for raw, outcome in outcomes.items():
            assert shown[raw].error_kind == outcome.error_kind
            if outcome.hash:
                assert shown[raw].score == pytest.approx(outcome.score, abs=1e-4)
                assert library.thumbnail(outcome.hash) is not None


def test_the_desk_opens_imported_scores_without_a_model(
    first_run, corpus, tmp_path, scanned, make_window, qtbot
):
    """The desk on a library that only has the import, with a model that cannot load:
    the folder opens with the imported scores (and their model) all the same."""
    from nsfw_desk.gui.grid import Role

    out, _ = first_run
    outcomes, _pdq, model_id = scanned
    library_path = tmp_path / "library.sqlite"
    with Library(library_path) as library:
        import_results(out, library)
    window = make_window(library_path=library_path)
    window.model_override = str(tmp_path / "no-model-here")  # nothing to load, nothing runs
    window.open_folder(corpus)

    def scores() -> dict:
        found = zip(
            [window.results.index(i).data(Role.PATH) for i in range(window.results.rowCount())],
            [window.results.index(i).data(Role.SCORE) for i in range(window.results.rowCount())],
            strict=True,
        )
        return {os.fsencode(path): score for path, score in found}

    qtbot.waitUntil(lambda: sum(s is not None for s in scores().values()) == 9, timeout=60_000)
    assert window.model_id == model_id
    for raw, outcome in outcomes.items():
        if outcome.score is not None:
            assert scores()[raw] == pytest.approx(outcome.score, abs=1e-4)


def test_gpus_asked_of_a_cluster_without_any_are_refused_up_front(
    ray_session, corpus, model_dir, tmp_path, capsys
):
    from nsfw_desk.cli import EXIT_USAGE, main

    out = tmp_path / "results"
    argv = ["cluster-scan", str(corpus), "--out", str(out), "--model", str(model_dir)]
    assert main([*argv, "--num-gpus-per-worker", "1"]) == EXIT_USAGE
    assert "asks for GPUs, but the Ray cluster has 0" in capsys.readouterr().err
    assert cluster_results.run_folders(out) == []  # nothing was started, nothing left


def test_resume_skips_the_files_already_done(first_run, corpus, model_dir, tmp_path):
    out, _ = first_run
    resumed = tmp_path / "results"
    shutil.copytree(out, resumed)
    changed = corpus / "b" / "photo_0.jpg"
    write_photo(changed, (77, 55), seed=1234)  # new content: scored again
    summary = finish(*run_scan(corpus, resumed, model_dir))
    rows = raw_rows(summary.run_folder)
    # Only the changed file and the errors that may pass (the FIFO, the locked file) run
    # again; the rest are skipped.
    assert os.fsencode(changed) in {cluster_results.row_path(r) for r in rows}
    again = {r["error_kind"] for r in rows if cluster_results.row_path(r) != os.fsencode(changed)}
    assert again <= {"unreadable"}
    assert summary.scored == 1 and summary.skipped == summary.files - len(rows)
    # Readers see one row per file across both runs, the newer one for the changed file.
    merged = list(cluster_results.read_rows(resumed))
    assert sorted(cluster_results.row_path(r) for r in merged) == sorted(listed(corpus))
    (latest,) = [r for r in merged if cluster_results.row_path(r) == os.fsencode(changed)]
    assert latest["size"] == changed.stat().st_size


def test_the_readme_recipe_runs_as_written(ray_session, corpus, model_dir, tmp_path, capsys):
    """README "Score on a cluster": cluster-scan, then import with a prefix map; the test
    model instead of the default one (no download), a temporary library."""
    import re
    import shlex

    from nsfw_desk.cli import main

    text = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = text.split("## Score on a cluster: Ray Data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.startswith("nsfw-desk ")]
    assert [c.split()[1] for c in commands] == ["cluster-scan", "import"]
    mount = tmp_path / "home-me-archive"
    db = tmp_path / "library.sqlite"
    for command in commands:
        command = (
            command.replace("/mnt/archive", str(corpus))
            .replace("/mnt/results/archive", str(tmp_path / "results"))
            .replace("/home/me/archive", str(mount))
        )
        argv = shlex.split(command)[1:]
        argv += ["--model", str(model_dir)] if argv[0] == "cluster-scan" else ["--db", str(db)]
        assert main(argv) == 0, (command, capsys.readouterr().err)
    err = capsys.readouterr().err
    assert "results in" in err and "images" in err
    with Library(db) as library:
        model_id = library.last_model_for(mount)
        assert model_id is not None
        shown = list(library.results(mount, model_id))
        assert len(shown) == len(listed(corpus))
        assert sum(o.score is not None for o in shown) == 9


def test_a_run_that_makes_no_progress_says_so_and_stops(
    ray_session, corpus, model_dir, hold_dir, tmp_path
):
    """The model actor holds its batch (as one that cannot be placed or starves the reads
    would): after the stall timeout the run stops with a message instead of hanging."""
    from nsfw_desk.core.cluster import ClusterStalled

    (hold_dir / "released").unlink(missing_ok=True)
    (hold_dir / "armed").touch()
    try:
        thread, found = run_scan(corpus, tmp_path / "results", model_dir, stall_s=15)
        with pytest.raises(ClusterStalled, match="No file was scored for 15 s") as stalled:
            finish(thread, found)
    finally:
        (hold_dir / "released").touch()
    # This session is the test's: the job is its to end. Released, it finishes.
    stalled.value.writer.join(RUN_LIMIT_S)
    assert not stalled.value.writer.is_alive()
