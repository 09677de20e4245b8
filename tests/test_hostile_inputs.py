"""Hostile input to the commands beyond `scan`: each case here was a crash, a silent skip or
a write to a file the user only gave to be read (found by running every command over a
folder of broken files and odd names; see tests/hostile_corpus.py for the scan's own).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from nsfw_desk.cli import EXIT_LIBRARY, EXIT_OK, EXIT_USAGE, main
from nsfw_desk.cli_label import EXIT_REFUSED
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo

POSIX = os.name == "posix"


def fingerprint(path: Path) -> tuple[bytes, int]:
    return hashlib.sha256(path.read_bytes()).digest(), path.stat().st_mtime_ns


@pytest.fixture
def scanned(tmp_path, loaded_model):
    """photos/ (two photos and an exact copy of one, and an empty .jpg), scanned into
    library.sqlite; the library closed."""
    photos = tmp_path / "photos"
    write_photo(photos / "a.jpg", seed=1)
    write_photo(photos / "b.jpg", seed=2)
    (photos / "copy_of_a.jpg").write_bytes((photos / "a.jpg").read_bytes())
    (photos / "empty.jpg").write_bytes(b"")
    with Library(tmp_path / "library.sqlite") as library:
        scan_folder(photos, loaded_model, library)
    return tmp_path / "library.sqlite", photos


# --- merge reads the other library and writes nothing beside it ------------------------------


def _library_with_a_decision(path: Path, thumbnails: Path | None = None) -> None:
    with Library(path, thumbnails) as library:
        ReviewStore(library).apply_labels(
            [(DecisionInput("ab" * 32, "m", 0.9), "unsafe")], reviewer="bob", threshold=0.5
        )


def not_libraries(folder, empty_name: str):
    """An empty file and another program's SQLite database: neither is a library."""
    empty = folder / empty_name
    empty.write_bytes(b"")
    foreign = folder / "other_app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE bookmarks (url TEXT)")
    conn.commit()
    conn.close()
    return empty, foreign


def test_merge_refuses_a_file_that_is_no_library_and_leaves_it_untouched(tmp_path, capsys):
    own = tmp_path / "own.sqlite"
    _library_with_a_decision(own)
    empty, foreign = not_libraries(tmp_path, "notes.txt")
    good = tmp_path / "bob.sqlite"
    _library_with_a_decision(good)
    before = {p: fingerprint(p) for p in (empty, foreign)}
    for bad in (empty, foreign):
        # a good library first: nothing of it is merged when another given file is unusable
        assert main(["merge", str(good), str(bad), "--db", str(own)]) == EXIT_LIBRARY
        err = capsys.readouterr().err
        assert "is not an nsfw-desk library" in err and "Nothing merged" in err
        assert not bad.with_name(bad.stem + ".thumbnails.sqlite").exists()
    assert {p: fingerprint(p) for p in before} == before
    with Library(own) as library:
        assert len(ReviewStore(library).all_decisions()) == 1


def test_merge_makes_no_thumbnail_file_beside_the_other_library(tmp_path, capsys):
    share = tmp_path / "share"
    share.mkdir()
    other = share / "bob.sqlite"
    _library_with_a_decision(other, tmp_path / "bob_cache" / "thumbnails.sqlite")
    assert main(["merge", str(other), "--db", str(tmp_path / "own.sqlite")]) == EXIT_OK
    assert "1 of 1 decisions added" in capsys.readouterr().out
    assert sorted(p.name for p in share.iterdir()) == ["bob.sqlite"]


# --- a relative folder ----------------------------------------------------------------------


def test_a_scan_of_a_relative_folder_stores_paths_that_hold_from_anywhere(
    tmp_path, loaded_model, monkeypatch, capsys
):
    photos = tmp_path / "photos"
    write_photo(photos / "a.jpg", seed=1)
    write_photo(photos / "b.jpg", seed=2)
    db = tmp_path / "library.sqlite"
    monkeypatch.chdir(tmp_path)
    with Library(db) as library:
        first = scan_folder(Path("photos"), loaded_model, library, keep_outcomes=True)
        assert {o.path for o in first.outcomes} == {photos / "a.jpg", photos / "b.jpg"}
        monkeypatch.chdir(photos)  # elsewhere, by the absolute path: all of it is known
        again = scan_folder(photos, loaded_model, library)
        assert (again.cached, again.scored) == (2, 0)
    monkeypatch.chdir(tmp_path)
    assert main(["label", "--as", "unsafe", "photos/a.jpg", "--db", str(db)]) == EXIT_OK
    assert "new file" not in capsys.readouterr().out  # the scanned row, not a second one


def test_dupes_and_assign_take_a_folder_as_the_scan_stored_it_and_say_when_it_holds_nothing(
    scanned, monkeypatch, capsys
):
    db, photos = scanned
    monkeypatch.chdir(photos)
    roundabout = os.path.join("..", "photos")  # cwd/../photos: the same folder
    assert main(["dupes", "--folder", roundabout, "--json", "--db", str(db)]) == EXIT_OK
    groups = json.loads(capsys.readouterr().out)
    assert [sorted(Path(m["path"]).name for m in g) for g in groups] == [["a.jpg", "copy_of_a.jpg"]]
    assign = ["assign", "--reviewers", "ann,bo", "--json", "--db", str(db)]
    assert main([*assign, "--folder", roundabout]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["contents"] == 2
    for command in (["dupes", "--db", str(db)], assign):
        assert main([*command, "--folder", "nowhere"]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "holds no image under" in err and "nowhere" in err


# --- hash lists -----------------------------------------------------------------------------


def test_hashlist_import_says_what_the_given_path_is(tmp_path, capsys):
    db = str(tmp_path / "library.sqlite")
    folder = tmp_path / "lists"
    folder.mkdir()
    command = ["hashlist", "import", "-q", "--name", "x", "--as", "unsafe", "--db", db]
    assert main([*command, str(folder)]) == EXIT_USAGE
    assert "is a folder" in capsys.readouterr().err
    if POSIX:
        os.mkfifo(tmp_path / "pipe.txt")
        assert main([*command, str(tmp_path / "pipe.txt")]) == EXIT_USAGE  # and no hang
        assert "not a regular file" in capsys.readouterr().err


@pytest.mark.skipif(not POSIX, reason="bytes file names")
def test_hashlist_import_takes_a_file_whose_name_is_not_utf8(tmp_path, capsys):
    name = Path(os.fsdecode(os.fsencode(tmp_path) + b"/list_\xff.txt"))
    name.write_text("ab" * 32 + ",100\n")
    db = str(tmp_path / "library.sqlite")
    command = ["hashlist", "import", "-q", "--name", "x", "--as", "unsafe", "--db", db]
    assert main([*command, str(name)]) == EXIT_OK
    assert "Imported 1 hashes" in capsys.readouterr().out
    assert main(["hashlist", "list", "--db", db]) == EXIT_OK
    assert capsys.readouterr().out.startswith("x\tunsafe\t1 hashes")


# --- similar --------------------------------------------------------------------------------


def test_similar_refuses_a_count_below_one_and_says_why_a_file_has_no_embedding(scanned, capsys):
    db, photos = scanned
    with pytest.raises(SystemExit) as info:
        main(["similar", "--top", "0", str(photos / "a.jpg"), "--db", str(db)])
    assert info.value.code == EXIT_USAGE
    assert "--top: must be 1 or more" in capsys.readouterr().err
    assert main(["similar", str(photos / "empty.jpg"), "--db", str(db)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "the scan could not read it: not_an_image: empty file" in err
    assert "scan its folder first" not in err  # scanning again would not help


# --- cluster-scan results that are not what cluster-scan writes ------------------------------


def _results(out: Path, rows: list[dict], models: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from nsfw_desk.core.cluster_results import schema

    run = out / "run-20260101T000000Z-x"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"source": "/data/photos", "models": models}))
    blank = {name: None for name in schema().names} | {"size": 1, "mtime_ns": 1}
    rows = [blank | {"hash": "ab" * 32, "format": "JPEG"} | row for row in rows]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), run / "part-0.parquet")
    return out


@pytest.mark.parametrize(
    ("rows", "models", "said"),
    [
        ([{"path": "/data/x.jpg", "path_base64": "!!not base64"}], [], "is not base64"),
        ([{"path": None}], [], "names no path"),
        ([{"path": "/data/x.jpg"}], [{"id": "m"}], "names a model without source"),
    ],
    ids=["bad-path_base64", "no-path", "model-without-source"],
)
def test_import_says_what_is_wrong_with_results_it_cannot_use(rows, models, said, tmp_path, capsys):
    out = _results(tmp_path / "results", rows, models)
    db = tmp_path / "library.sqlite"
    assert main(["import", str(out), "--db", str(db)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("nsfw-desk import: ") and said in err
    with Library(db) as library:
        assert library.has_files_under(Path("/")) is False  # no row of it stored


def test_scan_refuses_a_jsonl_output_it_cannot_write_before_scanning(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_photo(photos / "a.jpg")
    scan = ["scan", str(photos), "--db", str(tmp_path / "library.sqlite"), "-q", "--jsonl"]
    for out, said in ((tmp_path, "is a folder"), (tmp_path / "no" / "x.jsonl", "does not exist")):
        assert main([*scan, str(out)]) == EXIT_USAGE  # no model loaded, nothing scanned
        assert said in capsys.readouterr().err
    assert not (tmp_path / "library.sqlite").exists()


# --- import-labels ------------------------------------------------------------------------


def test_import_labels_refuses_a_path_with_a_nul_byte_and_shows_names_as_bytes(tmp_path, capsys):
    import base64

    nul = base64.b64encode(b"/photos/a\x00b.jpg").decode()
    odd = base64.b64encode(os.fsencode(tmp_path) + b"/gone_\xff.jpg").decode()
    csv = tmp_path / "labels.csv"
    csv.write_text(f'path,path_base64,label\n,{nul},unsafe\n,{odd},safe\n"a\x00b.jpg",,safe\n')
    assert (
        main(["import-labels", str(csv), "--db", str(tmp_path / "library.sqlite")]) == EXIT_REFUSED
    )
    err = capsys.readouterr().err
    assert "line 2: row: path_base64 holds a NUL byte" in err
    assert "line 4: row: path holds a NUL byte" in err
    assert "gone_\\xff.jpg: vanished" in err and "\\udc" not in err  # the byte, as paths show


# --- names given on the command line ---------------------------------------------------------


@pytest.mark.skipif(not POSIX, reason="bytes arguments")
@pytest.mark.parametrize(
    "command",
    [
        ["label", "--as", "unsafe", "--reviewer", "{bad}", "{photo}"],
        ["import-labels", "--reviewer", "{bad}", "{csv}"],
        ["export", "--out", "{out}", "--reviewer", "{bad}"],
        ["hashlist", "import", "--name", "{bad}", "--as", "unsafe", "{csv}"],
        ["hashlist", "remove", "{bad}"],
        ["assign", "--reviewers", "ann,{bad}"],
        ["similar", "--model", "{bad}", "{photo}"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_name_argument_that_is_not_utf8_is_a_usage_error(command, scanned, capsys):
    db, photos = scanned
    bad = os.fsdecode(b"rev\xff")  # what Python makes of a Latin-1 terminal's argument
    csv = photos.parent / "labels.csv"
    csv.write_text("hash,label\n" + "ab" * 32 + ",unsafe\n")
    fill = {"bad": bad, "photo": str(photos / "a.jpg"), "csv": str(csv), "out": str(db) + "x"}
    args = [part.format(**fill) for part in command]
    with pytest.raises(SystemExit) as info:
        main([*args, "--db", str(db)])
    assert info.value.code == EXIT_USAGE
    assert "rev\\xff'" in capsys.readouterr().err.split("not UTF-8 text: ")[1]


# --- a --db that is no library, given to a command that reads one ---------------------------


@pytest.mark.parametrize(
    "command",
    [["dupes"], ["agreement"], ["hashlist", "list"], ["similar", "ab" * 32], ["metrics"]],
    ids=lambda c: c[0],
)
def test_a_reading_command_refuses_a_db_that_is_no_library_without_writing_to_it(
    command, tmp_path, capsys
):
    empty, foreign = not_libraries(tmp_path, "empty.sqlite")
    for db in (empty, foreign):
        before = fingerprint(db)
        assert main([*command, "--db", str(db)]) == EXIT_LIBRARY
        assert "is not an nsfw-desk library" in capsys.readouterr().err
        assert fingerprint(db) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite", "other_app.db"]


def test_dupes_and_similar_print_one_line_per_file_whose_name_holds_a_newline(
    tmp_path, loaded_model, capsys
):
    photos = tmp_path / "photos"
    write_photo(photos / "a.jpg", seed=1)
    copy = (photos / "a.jpg").read_bytes()
    (photos / "a\nbreak.jpg").write_bytes(copy)  # before a.jpg in byte order: `similar` shows it
    db = tmp_path / "library.sqlite"
    with Library(db) as library:
        scan_folder(photos, loaded_model, library)
    assert main(["dupes", "--db", str(db)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "a\\nbreak.jpg" in out and "\nbreak.jpg" not in out
    write_photo(photos / "b.jpg", seed=2)
    with Library(db) as library:
        scan_folder(photos, loaded_model, library)
    assert main(["similar", str(photos / "b.jpg"), "--db", str(db)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].endswith("/a\\nbreak.jpg")


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """`nsfw-desk hashlist list | head -1`: the reader closed the pipe before the output was
    written, and the command died in a BrokenPipeError traceback (found by a trust-and-safety
    audit, with `metrics | head -2`)."""
    import subprocess
    import sys

    from nsfw_desk.core.store import Library

    db = tmp_path / "library.sqlite"
    Library(db).close()
    for command in (["hashlist", "list"], ["agreement"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # nobody will ever read: the first write fails
        done = subprocess.run(
            [sys.executable, "-m", "nsfw_desk", *command, "--db", str(db)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        os.close(write_end)
        err = done.stderr.decode()
        assert "Traceback" not in err and "Exception ignored" not in err, (command, err)


def test_an_export_folder_named_in_odd_bytes_is_said_as_such(tmp_path, capsys):
    """The summary said `\\udcff` (a surrogate) for an --out whose name is not UTF-8."""
    from nsfw_desk.cli import _export_summary
    from nsfw_desk.core.export import ExportReport

    out = tmp_path / os.fsdecode(b"out\xff")
    report = ExportReport(out, 0, {"train": {}, "val": {}}, [], 0, 1.0, 0, [], {})
    assert "out\\xff" in _export_summary(report) and "\\udcff" not in _export_summary(report)


def test_a_folder_reached_through_a_link_is_one_folder_for_scan_label_and_the_desk(
    tmp_path, model_dir, capsys
):
    """`nsfw-desk scan ~/link` stored the link's path while the desk and `label` resolve
    folders: the desk then listed the folder anew and `label` added its files again."""
    from nsfw_desk.core.labelling import desk_path
    from nsfw_desk.synthetic import write_photo

    real = tmp_path / "disk" / "photos"
    for i in range(2):
        write_photo(real / f"p{i}.jpg", (64, 48), seed=i)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    db = tmp_path / "library.sqlite"
    assert main(["scan", str(link), "--model", str(model_dir), "--db", str(db), "-q"]) == EXIT_OK
    with Library(db) as library:
        assert len(library.known_files(real)) == 2  # the desk opens `real`
    assert desk_path(link / "p0.jpg").parent == real
    capsys.readouterr()
    assert main(["label", "--as", "unsafe", str(link / "p0.jpg"), "--db", str(db)]) == EXIT_OK
    assert "listed in the library" not in capsys.readouterr().out
    assert main(["dupes", "--folder", str(link), "--db", str(db)]) == EXIT_OK
