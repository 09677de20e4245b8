"""Full disks and unusable libraries end commands with a message and their own exit status.

The full disks are real: a size-limited tmpfs mounted for the test (root only, as in CI;
elsewhere these tests skip and say why). Exit statuses: 4 library unusable, 5 disk full.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from support import fill_disk

from nsfw_desk.cli import EXIT_DISK_FULL, EXIT_LIBRARY, main
from nsfw_desk.core import store
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import write_photo


def resize(point: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


@pytest.fixture
def many_photos(tmp_path) -> Path:
    """60 photos: their thumbnails and scores need far more than 512 KB of library."""
    root = tmp_path / "photos"
    for i in range(60):
        write_photo(root / f"p{i:02d}.jpg", (320, 240), seed=i)
    return root


def count_files(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    finally:
        conn.close()


def test_scan_onto_a_full_disk_exits_5_and_keeps_what_it_scored(
    small_disk, many_photos, model_dir, capsys
):
    disk = small_disk("512k")
    db = disk / "library.sqlite"
    args = ["scan", str(many_photos), "--model", str(model_dir), "--db", str(db), "-q"]
    assert main([*args, "--batch-size", "4"]) == EXIT_DISK_FULL
    err = capsys.readouterr().err
    assert "Traceback" not in err and "OperationalError" not in err
    assert f"The disk holding {disk}" in err and "is full" in err  # where space is needed
    kept = int(err.split(" files scored before the disk filled are kept")[0].split()[-1])
    assert 0 < kept < 60
    assert count_files(db) == kept  # what the message says was kept, is
    resize(disk, "16m")  # space freed: the next scan continues where the last stopped
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{60 - kept} scored, {kept} from the library" in err


def test_a_library_whose_disk_filled_since_exits_5_when_opened(
    small_disk, photo_folder, model_dir, capsys
):
    """Opening needs room for the -wal and -shm files: SQLite calls that an I/O error."""
    disk = small_disk("4m")
    db = disk / "library.sqlite"
    args = ["scan", str(photo_folder), "--model", str(model_dir), "--db", str(db), "-q"]
    assert main(args) == 0
    fill_disk(disk)
    assert main(args) == EXIT_DISK_FULL
    err = capsys.readouterr().err
    assert f"The disk holding {db} is full" in err and "I/O" not in err


def test_jsonl_onto_a_full_disk_exits_5_and_leaves_no_partial_file(
    small_disk, many_photos, model_dir, tmp_path, capsys
):
    disk = small_disk("4k")
    code = main(
        [
            "scan",
            str(many_photos),
            "--model",
            str(model_dir),
            "--db",
            str(tmp_path / "library.sqlite"),
            "--jsonl",
            str(disk / "out.jsonl"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_DISK_FULL, err
    assert f"The disk holding {disk} is full" in err
    assert "The --jsonl output was not written." in err
    assert list(disk.iterdir()) == []
    assert count_files(tmp_path / "library.sqlite") > 0


@pytest.fixture
def reviewed_db(tmp_path, loaded_model) -> Path:
    """A library with 30 reviewed photos (about 100 KB of JPEGs to export)."""
    root = tmp_path / "reviewed"
    for i in range(30):
        write_photo(root / f"r{i:02d}.jpg", (160, 120), seed=100 + i)
    db = tmp_path / "reviewed.sqlite"
    with store.Library(db) as library:
        summary = scan_folder(root, loaded_model, library, keep_outcomes=True)
        ReviewStore(library).decide(
            [
                DecisionInput(o.hash, loaded_model.model_id, o.score, o.path)
                for o in summary.outcomes
            ],
            "unsafe",
            reviewer="r",
            threshold=0.5,
        )
    return db


def test_export_onto_a_full_disk_exits_5_and_leaves_nothing(small_disk, reviewed_db, capsys):
    disk = small_disk("32k")
    out = disk / "dataset"
    assert main(["export", "--out", str(out), "--db", str(reviewed_db), "-q"]) == EXIT_DISK_FULL
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"nsfw-desk export: The disk holding {disk} is full" in err
    assert f"Nothing was written to {out}" in err
    assert list(disk.iterdir()) == []  # the hidden partial folder is gone too
    resize(disk, "16m")
    assert main(["export", "--out", str(out), "--db", str(reviewed_db), "-q"]) == 0
    assert len(list(out.rglob("*.jpg"))) == 30


@pytest.mark.parametrize("command", ["scan", "metrics", "export"])
def test_a_file_that_is_not_a_library_exits_4(command, tmp_path, model_dir, capsys):
    db = tmp_path / "notes.sqlite"
    db.write_bytes(b"these are my notes, not a database " * 200)
    args = {
        "scan": ["scan", str(tmp_path), "--model", str(model_dir)],
        "metrics": ["metrics"],
        "export": ["export", "--out", str(tmp_path / "out")],
    }[command]
    assert main([*args, "--db", str(db)]) == EXIT_LIBRARY
    err = capsys.readouterr().err
    assert f"{db} is not a usable nsfw-desk library" in err
    assert "Traceback" not in err


def test_a_library_locked_for_too_long_exits_4(tmp_path, model_dir, monkeypatch, capsys):
    db = tmp_path / "library.sqlite"
    store.Library(db).close()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(db)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        code = main(["scan", str(tmp_path), "--model", str(model_dir), "--db", str(db), "-q"])
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err
    assert code == EXIT_LIBRARY, err
    assert "stayed locked by another program" in err
    assert "files scored before this failure are kept" in err


@pytest.mark.parametrize("command", ["scan", "export", "metrics"])
def test_help_documents_the_exit_statuses(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out
    assert "4  the library cannot be used" in out and "5  a disk is full" in out


def test_readme_documents_the_same_exit_statuses():
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    for line in (
        "0 the command ran",
        "1 interrupted",
        "2 bad usage",
        "3 the model could not be loaded",
        "4 the library cannot be used",
        "5 a disk is full",
        "6 the desk cannot open",
    ):
        assert line in readme, line


def test_desktop_integration_onto_a_full_disk_exits_5(small_disk, monkeypatch, capsys):
    disk = small_disk("8k")  # less than the icons need
    monkeypatch.setenv("XDG_DATA_HOME", str(disk))
    assert main(["desktop-integration"]) == EXIT_DISK_FULL
    err = capsys.readouterr().err
    assert "nsfw-desk desktop-integration: The disk holding" in err and "is full" in err
    assert str(disk) in err and "Traceback" not in err
