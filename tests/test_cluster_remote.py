"""cluster-scan of a remote source on a local Ray (2 CPUs, started once for the module): a
pyarrow filesystem that is not the local one (fsspec's DirFileSystem behind pyarrow's
FSSpecHandler, as an s3fs or gcsfs one would be), listed with pyarrow.fs and read by Ray
Data's read tasks. One row per file with the same scores as `scan`, errors with reasons,
resume, and the README's URI recipe (file:// in place of s3://, no network).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # no Ray starts unless a test starts it
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
fsspec = pytest.importorskip("fsspec")

from support import permissions_enforced  # noqa: E402
from test_cluster import finish, options, raw_rows  # noqa: E402

from nsfw_desk.core import cluster_results  # noqa: E402
from nsfw_desk.core.cluster import cluster_scan  # noqa: E402
from nsfw_desk.core.images import discover  # noqa: E402
from nsfw_desk.core.store import Library  # noqa: E402
from nsfw_desk.synthetic import write_photo  # noqa: E402

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def ray_session():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> Path:
    """bucket/photos: six photos, bad files of each kind, and files a listing passes over."""
    bucket = tmp_path_factory.mktemp("bucket")
    root = bucket / "photos"
    for i in range(6):
        write_photo(root / ("a" if i % 2 else "b") / f"photo_{i}.jpg", (90 + 7 * i, 70), seed=i)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.jpg").write_bytes(b"not a picture at all, just text\n" * 4)
    (root / "readme.txt").write_text("not an image: passed over\n")
    (root / ".hidden.jpg").write_bytes((root / "a" / "photo_1.jpg").read_bytes())
    os.mkfifo(root / "pipe.jpg")  # never opened: a listing error
    if permissions_enforced():
        locked = root / "locked.jpg"
        write_photo(locked, (64, 64), seed=99)
        locked.chmod(0)  # listed, then the read task cannot open it
    return bucket


@pytest.fixture(scope="module")
def filesystem(bucket):
    """A pyarrow filesystem that is not pyarrow's local one; paths are relative to `bucket`."""
    import pyarrow.fs as pafs
    from fsspec.implementations.dirfs import DirFileSystem

    return pafs.PyFileSystem(
        pafs.FSSpecHandler(DirFileSystem(path=str(bucket), fs=fsspec.filesystem("file")))
    )


def relative_keys(root: Path) -> set[str]:
    """What discovery lists under `root`, as paths relative to its parent (the bucket)."""
    return {os.fsdecode(found.path.relative_to(root.parent)) for found in discover(root)}


def scan_remote(filesystem, out: Path, model_dir: Path):
    import threading

    found: dict = {}

    def target() -> None:
        try:
            found["summary"] = cluster_scan(
                "photos", out, options(model_dir), filesystem=filesystem
            )
        except BaseException as exc:
            found["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return finish(thread, found)


@pytest.fixture(scope="module")
def remote_run(ray_session, filesystem, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return out, scan_remote(filesystem, out, model_dir)


@pytest.fixture(scope="module")
def scanned(bucket, model_dir, tmp_path_factory):
    """The same folder through `nsfw-desk scan`'s core, fp32: relative path → outcome."""
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import scan_folder

    model = load_model(model_dir, device="cpu", precision="fp32")
    with Library(tmp_path_factory.mktemp("scanlib") / "library.sqlite") as library:
        summary = scan_folder(bucket / "photos", model, library, keep_outcomes=True)
        pdq = {o.hash: library.pdq_of(o.hash) for o in summary.outcomes if o.hash}
    outcomes = {os.fsdecode(o.path.relative_to(bucket)): o for o in summary.outcomes}
    return outcomes, pdq, model.model_id


def test_one_row_per_file_with_the_scans_scores_and_errors(remote_run, bucket, scanned):
    out, summary = remote_run
    outcomes, pdq, model_id = scanned
    rows = raw_rows(summary.run_folder)
    paths = [r["path"] for r in rows]
    # One row per file, the bad ones included, named by the path in the filesystem.
    assert sorted(paths) == sorted(relative_keys(bucket / "photos")) == sorted(outcomes)
    assert summary.duplicates == 0 and summary.missing == 0 and summary.scored == 6
    worst = 0.0
    for row in rows:
        outcome = outcomes[row["path"]]
        assert row["size"] == outcome.size and row["mtime_ns"] is not None
        if outcome.error_kind is not None:
            assert row["error_kind"] == outcome.error_kind and row["error"]
            assert row["scores"] is None and row["hash"] is None
            if not row["path"].endswith("locked.jpg"):  # the reader's words differ there
                assert row["error"] == outcome.error  # the same decoder, the same reason
            continue
        assert row["error_kind"] is None and row["hash"] == outcome.hash  # from the bytes
        (score,) = row["scores"]
        assert score["model"] == model_id
        worst = max(worst, abs(score["unsafe"] - outcome.score))
        assert (row["pdq"], row["pdq_quality"]) == pdq[outcome.hash]
    assert worst <= 1e-4, f"max |Δp| {worst} between a remote cluster-scan and scan (fp32)"
    errors = {r["path"]: (r["error_kind"], r["error"]) for r in rows if r["error_kind"]}
    assert errors["photos/pipe.jpg"] == (
        "unreadable",
        "not a regular file (device, FIFO or socket)",
    )
    assert errors["photos/empty.png"][0] in {"not_an_image", "decode_error"}
    if permissions_enforced():
        assert errors["photos/locked.jpg"][0] == "unreadable"
        assert "cannot read file" in errors["photos/locked.jpg"][1]
    (record,) = cluster_results.run_records(out)
    assert record["status"] == "done" and record["source"] == "photos"


def test_resume_lists_reads_and_scores_only_what_is_not_done(
    remote_run, bucket, filesystem, model_dir, tmp_path
):
    out, _ = remote_run
    resumed = tmp_path / "results"
    shutil.copytree(out, resumed)
    changed = bucket / "photos" / "b" / "photo_0.jpg"
    write_photo(changed, (77, 55), seed=1234)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    summary = scan_remote(filesystem, resumed, model_dir)
    rows = raw_rows(summary.run_folder)
    # Only the changed file and the errors that may pass (the FIFO, the locked file) again.
    assert "photos/b/photo_0.jpg" in {r["path"] for r in rows}
    again = {r["error_kind"] for r in rows if r["path"] != "photos/b/photo_0.jpg"}
    assert again <= {"unreadable"}
    assert summary.scored == 1 and summary.skipped == summary.files - len(rows)
    merged = list(cluster_results.read_rows(resumed))
    assert sorted(r["path"] for r in merged) == sorted(relative_keys(bucket / "photos"))
    (latest,) = [r for r in merged if r["path"] == "photos/b/photo_0.jpg"]
    assert latest["size"] == changed.stat().st_size


def test_the_readme_uri_recipe_runs_with_file_for_s3(
    ray_session, bucket, model_dir, tmp_path, capsys
):
    """README "Score on a cluster": the URI recipe, with file:// standing in for s3:// (no
    network here): cluster-scan of the URI, then import with a prefix map from the URI."""
    from nsfw_desk.cli import EXIT_USAGE, main

    text = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = text.split("## Score on a cluster: Ray Data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    (block,) = [b for b in blocks if "s3://" in b]
    commands = [
        line.strip() for line in block.splitlines() if line.strip().startswith("nsfw-desk ")
    ]
    assert [c.split()[1] for c in commands] == ["cluster-scan", "import"]
    root = bucket / "photos"
    results = tmp_path / "results"
    db = tmp_path / "library.sqlite"
    argvs = []
    for command in commands:
        command = (
            command.replace("s3://bucket/archive", f"file://{root}")
            .replace("/mnt/results/archive", str(results))
            .replace("/home/me/archive", str(root))
        )
        argv = shlex.split(command)[1:]
        argvs.append(argv + (["--model", str(model_dir)] if argv[0] == "cluster-scan" else []))
    assert main(argvs[0]) == 0, capsys.readouterr().err
    # URI results name no local path: import says what to give instead of guessing one.
    bare = [a for a in argvs[1] if not a.startswith("--map-prefix") and "=" not in a]
    assert main([*bare, "--db", str(tmp_path / "other.sqlite")]) == EXIT_USAGE
    assert f"--map-prefix file://{root}=FOLDER" in capsys.readouterr().err
    assert main([*argvs[1], "--db", str(db)]) == 0, capsys.readouterr().err
    with Library(db) as library:
        model_id = library.last_model_for(root)
        assert model_id is not None
        shown = {os.fsencode(o.path): o for o in library.results(root, model_id)}
        assert set(shown) == {os.fsencode(f.path) for f in discover(root)}
        assert sum(o.score is not None for o in shown.values()) == 6
