"""Where the command line writes and what it reads, as an audit found them: an output that
cannot be written is refused before the work with exit status 2 (it was a traceback, or exit 1
with Python's errno text after the work), an export is not written into a folder the library
scans, a FIFO given as the labels CSV is refused instead of waited on forever, and a folder
given as --db is named as such."""

from __future__ import annotations

import errno
import itertools
import os
import threading
from pathlib import Path

import pytest
from test_train_cli import decided  # noqa: F401 (a fixture)

from nsfw_desk.cli import EXIT_LIBRARY, EXIT_OK, EXIT_USAGE, main
from nsfw_desk.core import durable
from nsfw_desk.core.durable import unwritable_reason

POSIX = os.name == "posix"
PROC = Path("/proc/self").is_dir()  # a folder nobody may create files in, root included


def _commands(db: Path, model: Path, photos: Path) -> dict[str, list[str]]:
    """Every command that writes a file or folder the user names (the name comes last)."""
    cpu = ["--device", "cpu", "--precision", "fp32"]
    return {
        "scan --jsonl": ["scan", str(photos), "--model", str(model), *cpu, "-q", "--jsonl"],
        "hashlist export": ["hashlist", "export", "--label", "unsafe", "--out"],
        "export": ["export", "-q", "--out"],
        "train": ["train", "--base", str(model), "--mode", "head", *cpu, "-q", "--out"],
        "import-weights": [
            "import-weights",
            str(model / "model.safetensors"),
            "--base",
            str(model),
            "--offline",
            "--out",
        ],
    }


def _targets(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder\n", encoding="utf-8")
    targets = {"under a file": a_file / "out", "a name too long": tmp_path / ("n" * 300)}
    if PROC:
        targets["in an unwritable folder"] = Path("/proc/nsfw-desk-out")
    return targets


def test_an_output_that_cannot_be_written_is_refused_with_usage_status(
    decided,  # noqa: F811
    model_dir,
    tmp_path,
    capsys,
):
    db, _ = decided
    for (where, out), command in itertools.product(
        _targets(tmp_path).items(), _commands(db, model_dir, tmp_path / "photos")
    ):
        args = _commands(db, model_dir, tmp_path / "photos")[command]
        db_args = [] if command == "import-weights" else ["--db", str(db)]
        assert main([*args, str(out), *db_args]) == EXIT_USAGE, (command, where)
        err = capsys.readouterr().err
        assert "Traceback" not in err and "Errno" not in err, err
        assert str(out.parent) in err, err
        assert any(
            why in err for why in ("is not a folder", "cannot be written to", "is longer than")
        ), err
        assert not os.path.lexists(out)


def test_unwritable_reason_names_the_folder_and_leaves_a_full_disk_to_the_writer(
    tmp_path, monkeypatch
):
    assert unwritable_reason(tmp_path / "new" / "deeper", folder=True) is None
    assert "does not exist" in unwritable_reason(tmp_path / "new" / "file", folder=False)
    assert "is a folder" in unwritable_reason(tmp_path, folder=False)

    def refuse(code):
        def temporary_file(*args, **kwargs):
            raise OSError(code, os.strerror(code))

        return temporary_file

    monkeypatch.setattr(durable.tempfile, "TemporaryFile", refuse(errno.EROFS))
    said = unwritable_reason(tmp_path / "out.jsonl", folder=False)
    assert said == (
        f"{tmp_path} cannot be written to ({os.strerror(errno.EROFS)}); "
        "choose a folder you can write to"
    )
    monkeypatch.setattr(durable.tempfile, "TemporaryFile", refuse(errno.ENOSPC))
    assert unwritable_reason(tmp_path / "out.jsonl", folder=False) is None


def test_an_export_inside_a_scanned_folder_is_refused(decided, tmp_path, capsys):  # noqa: F811
    db, _ = decided
    photos = tmp_path / "photos"
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    out = photos / "exports" / "round-1"
    assert main(["export", "-q", "--out", str(out), "--db", str(db)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{out} is inside {photos}, a folder this library scans" in err
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before
    beside = tmp_path / "photos-export"  # a sibling whose name starts the same is fine
    assert main(["export", "-q", "--out", str(beside), "--db", str(db)]) == EXIT_OK


@pytest.mark.skipif(not POSIX, reason="FIFOs")
def test_a_fifo_as_the_labels_csv_is_refused_not_waited_on(tmp_path, capsys):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    done = threading.Event()

    def writer() -> None:  # feeds a reader if one ever opens it (the bug); gives up at the end
        while not done.wait(0.05):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write("hash,label\n" + "ab" * 32 + ",unsafe\n")
            return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        code = main(["import-labels", str(fifo), "--db", str(tmp_path / "library.sqlite")])
    finally:
        done.set()
        thread.join()
    assert code == EXIT_USAGE
    assert f"{fifo} is not a regular file (a FIFO, device or socket)" in capsys.readouterr().err


def test_a_folder_as_db_is_named_a_folder(tmp_path, model_dir, photo_folder, capsys):
    folder = tmp_path / "libraries"
    folder.mkdir()
    scan = ["scan", str(photo_folder), "--model", str(model_dir), "--device", "cpu", "-q"]
    assert main([*scan, "--db", str(folder)]) == EXIT_LIBRARY
    assert f"{folder} is a folder; a library is a file" in capsys.readouterr().err
    assert main(["metrics", "--db", str(folder)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{folder} is a folder; give the library's file, such as --db " in err
    assert list(folder.iterdir()) == []


def test_a_long_but_allowed_output_name_is_written(decided, model_dir, tmp_path):  # noqa: F811
    """The temporary name beside the output (a dot, the name, a random part) was longer than
    a name may be when the output's own name was near the file system's limit: a traceback."""
    db, _ = decided
    for command, args in _commands(db, model_dir, tmp_path / "photos").items():
        if command not in ("scan --jsonl", "hashlist export"):
            continue
        out = tmp_path / ("n" * 245 + ".out")
        assert main([*args, str(out), "--db", str(db)]) == EXIT_OK, command
        assert out.stat().st_size > 0
        out.unlink()


def test_cluster_scan_refuses_a_results_folder_it_cannot_write_before_starting_ray(
    tmp_path, model_dir, photo_folder, capsys
):
    """A file as --out, or --out under a file, was a traceback once Ray had started."""
    pytest.importorskip("ray.data")
    for out in (photo_folder / "a" / "photo_01.jpg", *_targets(tmp_path).values()):
        before = out.read_bytes() if os.path.isfile(out) else None
        command = ["cluster-scan", str(photo_folder), "--model", str(model_dir), "--out"]
        assert main([*command, str(out)]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "Traceback" not in err and "Errno" not in err, err
        assert str(out.parent) in err, err
        assert before is None or out.read_bytes() == before


def test_an_output_named_like_the_library_is_refused_and_the_library_kept(
    decided,  # noqa: F811
    model_dir,
    tmp_path,
    capsys,
):
    """`scan --jsonl` or `hashlist export --out` naming the --db file renamed the output over
    the open library at the end: every decision in it was lost."""
    db, _ = decided
    kept = {path: path.read_bytes() for path in (db, db.with_name("library.thumbnails.sqlite"))}
    commands = _commands(db, model_dir, tmp_path / "photos")
    for command, out in itertools.product(("scan --jsonl", "hashlist export"), kept):
        assert main([*commands[command], str(out), "--db", str(db)]) == EXIT_USAGE, command
        assert f"{out} is the library's own file" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in kept} == kept
    assert main(["metrics", "--db", str(db)]) == EXIT_OK
