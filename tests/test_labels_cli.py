"""`nsfw-desk label` and `import-labels`: decisions from outside the window.

The decisions they write must be the desk's: compared field by field with a decision made
through the desk's own path (ReviewStore.decide with the DecisionInput the window builds).
"""

from __future__ import annotations

import base64
import csv
import os
import re
import shlex
from pathlib import Path

import pytest

from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, main
from nsfw_desk.cli_label import EXIT_REFUSED
from nsfw_desk.core.images import content_hash
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.settings import Settings
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo

UTC_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
ROOT = Path(__file__).parents[1]
COMPARED = ("reviewer", "model_id", "score", "threshold", "source_path", "source_path_bytes")


def photo(path: Path, seed: int) -> Path:
    return write_photo(path, (64 + seed % 5, 48 + seed % 7), seed=seed)


def digest(path: Path) -> str:
    return content_hash(path.read_bytes())


def run(*argv) -> int:
    return main([str(a) for a in argv])


def history(db: Path, content: str):
    with Library(db) as library:
        return ReviewStore(library).history(content)


def labels(db: Path) -> dict[str, str]:
    with Library(db) as library:
        return ReviewStore(library).current_labels()


def desk_decision(db: Path, path: Path, label: str, model_id: str | None, reviewer=None):
    """What the window writes for a tile: its hash, the active model's score, its path, the
    reviewer and threshold of the settings."""
    settings = Settings.load()
    with Library(db) as library:
        content = library.file_facts(path)["hash"]
        score = library.scores_for(model_id, [content]).get(content) if model_id else None
        item = DecisionInput(content, model_id if score is not None else None, score, path)
        ReviewStore(library).decide(
            [item], label, reviewer=reviewer or settings.reviewer, threshold=settings.threshold
        )
        return ReviewStore(library).history(content)[-1]


def same_as_desk(ours, desk) -> None:
    for name in COMPARED:
        assert getattr(ours, name) == getattr(desk, name), name
    assert UTC_TEXT.fullmatch(ours.decided_at) and UTC_TEXT.fullmatch(desk.decided_at)
    assert ours.undo_of is None and ours.note is None


# --- label ---------------------------------------------------------------------------------


def test_label_a_scanned_file_writes_what_the_desk_writes(tmp_path, loaded_model, capsys):
    root = tmp_path / "photos"
    target = photo(root / "a.jpg", 1)
    db = tmp_path / "library.sqlite"
    with Library(db) as library:
        scan_folder(root, loaded_model, library)
        score = library.scores_for(loaded_model.model_id, [digest(target)])[digest(target)]
    assert run("label", "--as", "unsafe", "--reviewer", "tester", "--db", db, target) == EXIT_OK
    assert "labelled unsafe: " in capsys.readouterr().out
    ours = history(db, digest(target))[-1]
    assert ours.label == "unsafe" and ours.model_id == loaded_model.model_id
    assert ours.score == pytest.approx(score) and ours.source == target
    desk = desk_decision(db, target, "safe", loaded_model.model_id, "tester")
    same_as_desk(ours, desk)


def test_label_an_unknown_file_lists_it_unscored_and_the_desk_shows_it(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    target = photo(tmp_path / "new" / "b.jpg", 2)
    assert run("label", "--as", "safe", "--reviewer", "tester", "--db", db, target) == EXIT_OK
    with Library(db) as library:
        facts = library.file_facts(target)
        assert facts is not None and facts["hash"] == digest(target)
        assert (facts["width"], facts["height"]) == (66, 50)
        assert library.thumbnail(digest(target)) is not None
        assert library.scores_by_model(digest(target)) == {}
        # A listing of the folder afterwards finds the row as its own: nothing to decode.
        summary = scan_folder(target.parent, None, library)
        assert (summary.listed, summary.cached) == (0, 1)
    ours = history(db, digest(target))[-1]
    assert ours.model_id is None and ours.score is None
    same_as_desk(ours, desk_decision(db, target, "unsafe", None, "tester"))
    assert "1 new file listed" in capsys.readouterr().err


def test_label_refuses_what_it_cannot_read_and_changes_nothing_for_it(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    good = photo(tmp_path / "good.jpg", 3)
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    bad = ["notes.txt", "broken.jpg", "empty.png", "missing.jpg", "folder"]
    argv = ["label", "--as", "unsafe", "--db", db, good, *(tmp_path / n for n in bad)]
    assert run(*argv) == EXIT_REFUSED
    err = capsys.readouterr().err
    for name, kind in zip(
        bad, ["not_an_image", "decode_error", "not_an_image", "vanished", "folder"], strict=True
    ):
        assert f"refused: {tmp_path / name}: {kind}: " in err, name
    assert "--recursive" in err and "5 files refused" in err
    assert labels(db) == {digest(good): "unsafe"}
    with Library(db) as library:
        assert library.known_errors(tmp_path) == {}  # no error rows either
        assert set(library.known_files(tmp_path)) == {str(good)}


def test_label_a_folder_recursively_labels_what_a_scan_would_find(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    root = tmp_path / "batch"
    found = [photo(root / "x.jpg", 4), photo(root / "deep" / "y.png", 5)]
    (root / "readme.txt").write_text("ignored")
    photo(root / ".hidden.jpg", 6)
    assert run("label", "--as", "safe", "-r", "--db", db, root) == EXIT_OK
    assert labels(db) == {digest(p): "safe" for p in found}
    assert "2 other or hidden files ignored" in capsys.readouterr().err


def test_label_again_is_unchanged_and_clear_removes_it(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    target = photo(tmp_path / "c.jpg", 7)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(target.read_bytes())
    assert run("label", "--as", "unsafe", "--db", db, target, copy) == EXIT_OK
    assert "the same image as" in capsys.readouterr().out
    assert run("label", "--as", "unsafe", "--db", db, copy) == EXIT_OK
    assert "unchanged: " in capsys.readouterr().out
    assert [d.label for d in history(db, digest(target))] == ["unsafe"]
    assert run("label", "--as", "clear", "--db", db, target) == EXIT_OK
    assert [d.label for d in history(db, digest(target))] == ["unsafe", None]
    assert labels(db) == {}


def test_label_keeps_a_non_utf8_name_exactly(tmp_path):
    db = tmp_path / "library.sqlite"
    raw = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    path = Path(os.fsdecode(raw))
    photo(path, 8)
    assert run("label", "--as", "unsafe", "--db", db, path) == EXIT_OK
    ours = history(db, digest(path))[-1]
    assert ours.source_path_bytes == raw and ours.source_path.endswith("caf\\xe9.jpg")
    same_as_desk(ours, desk_decision(db, path, "safe", None))


def test_label_needs_a_label_and_a_path(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["label", "some.jpg"])
    assert stop.value.code == EXIT_USAGE
    with pytest.raises(SystemExit):
        main(["label", "--as", "maybe", "some.jpg"])
    assert "invalid choice" in capsys.readouterr().err


# --- import-labels -------------------------------------------------------------------------


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_import_reads_every_spelling_and_reports_bad_rows_by_line(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    pics = [photo(tmp_path / f"p{i}.jpg", 10 + i) for i in range(6)]
    (tmp_path / "notes.txt").write_text("text")
    unknown = "ab" * 32  # a content this library has never seen: labelled by its hash
    lines = [
        " Path ; LABEL ;Reviewer",
        "p0.jpg; NSFW ;",
        "p1.jpg;sfw;bob",
        f"{pics[2]};1;",
        "p3.jpg;0;",
        "p4.jpg;maybe;",
        "notes.txt;unsafe;",
        ";safe;",
        "p5.jpg;;",
        "p0.jpg;unsafe;",  # the same again: one decision
        '"p;odd.jpg";safe;',  # quoted delimiter: a path that does not exist
    ]
    table = write_csv(tmp_path / "labels.csv", "\ufeff" + "\r\n".join(lines) + "\r\n")
    hashes = write_csv(tmp_path / "hashes.csv", f"hash,label\n{unknown.upper()},unsafe\nxyz,1\n")
    assert run("import-labels", table, "--reviewer", "carol", "--db", db) == EXIT_REFUSED
    out, err = capsys.readouterr()
    assert "refused: line 6" in err and "unknown label 'maybe'" in err
    assert "refused: line 7" in err and "not_an_image" in err
    assert "refused: line 8" in err and "neither a path nor a hash" in err
    assert "refused: line 9" in err and "no label" in err
    assert "refused: line 11" in err and "vanished" in err
    assert "duplicate: line 10 (the same image as line 2)" in out
    assert "4 decisions recorded (2 safe, 2 unsafe) as bob, carol" in err  # p1.jpg: bob
    expected = {digest(pics[0]): "unsafe", digest(pics[1]): "safe", digest(pics[2]): "unsafe"}
    assert labels(db) == expected | {digest(pics[3]): "safe"}
    assert history(db, digest(pics[1]))[-1].reviewer == "bob"  # the column wins
    assert history(db, digest(pics[0]))[-1].reviewer == "carol"
    assert run("import-labels", hashes, "--db", db) == EXIT_REFUSED
    assert "line 3: row: hash 'xyz' is not a content hash" in capsys.readouterr().err
    decision = history(db, unknown)[-1]
    assert decision.label == "unsafe" and decision.source_path is None
    # The same file again, by the same reviewers: nothing new, each row reported unchanged.
    before = sum(len(history(db, d)) for d in labels(db))
    assert run("import-labels", table, "--reviewer", "carol", "--db", db) == EXIT_REFUSED
    assert "4 already had that label (unchanged)" in capsys.readouterr().err
    assert sum(len(history(db, d)) for d in labels(db)) == before


def test_import_writes_what_the_desk_writes(tmp_path, loaded_model):
    root = tmp_path / "photos"
    target = photo(root / "a.jpg", 20)
    db = tmp_path / "library.sqlite"
    with Library(db) as library:
        scan_folder(root, loaded_model, library)
    table = write_csv(tmp_path / "t.csv", "path,label,reviewer\nphotos/a.jpg,unsafe,tester\n")
    assert run("import-labels", table, "--db", db) == EXIT_OK
    ours = history(db, digest(target))[-1]
    assert ours.model_id == loaded_model.model_id
    same_as_desk(ours, desk_decision(db, target, "safe", loaded_model.model_id, "tester"))


def test_import_conflicts_and_strict_record_nothing(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    a, b = photo(tmp_path / "a.jpg", 30), photo(tmp_path / "b.jpg", 31)
    copy = tmp_path / "copy-of-a.jpg"
    copy.write_bytes(a.read_bytes())
    table = write_csv(tmp_path / "t.csv", "path\tlabel\na.jpg\tunsafe\ncopy-of-a.jpg\tsafe\n")
    assert run("import-labels", table, "--db", db) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "line 2 says unsafe, line 3 says safe" in err and "2 rows refused" in err
    assert labels(db) == {}
    strict = write_csv(tmp_path / "s.csv", "path,label\nb.jpg,unsafe\nnowhere.jpg,safe\n")
    assert run("import-labels", strict, "--strict", "--db", db) == EXIT_REFUSED
    assert "Nothing recorded (--strict): 1 of 2 rows refused" in capsys.readouterr().err
    assert labels(db) == {}
    with Library(db) as library:  # not even the listing of b.jpg
        assert library.file_facts(b) is None


def test_import_checks_the_hash_against_the_file(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    a = photo(tmp_path / "a.jpg", 40)
    stale = "0" * 64
    absent = "1" * 64
    table = write_csv(
        tmp_path / "t.csv",
        f"hash,path,label\n{stale},a.jpg,unsafe\n{absent},gone.jpg,safe\n",
    )
    assert run("import-labels", table, "--db", db) == EXIT_REFUSED
    out, err = capsys.readouterr()
    assert "line 2" in err and "changed since it was labelled" in err
    assert "file not found here; labelled by its hash" in out
    assert labels(db) == {absent: "safe"}
    assert history(db, absent)[-1].source == tmp_path / "gone.jpg"
    assert digest(a) not in labels(db)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"path,label\ncaf\xe9.jpg,1\n", "is not UTF-8 text (byte 0xe9 on line 2)"),
        (b"path,verdict\na.jpg,1\n", "no 'label' column (found 'path', 'verdict'"),
        (b"name;label\na.jpg;1\n", "no 'path' or 'hash' column"),
        (b"", "is empty"),
    ],
)
def test_import_refuses_a_file_it_cannot_use(tmp_path, capsys, content, message):
    db = tmp_path / "library.sqlite"
    table = tmp_path / "t.csv"
    table.write_bytes(content)
    assert run("import-labels", table, "--db", db) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert run("import-labels", tmp_path / "none.csv", "--db", db) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err


def test_import_reads_utf16_from_a_spreadsheet(tmp_path):
    db = tmp_path / "library.sqlite"
    a = photo(tmp_path / "a.jpg", 50)
    table = write_csv(tmp_path / "t.csv", "\ufeffpath\tlabel\r\na.jpg\tnsfw\r\n", "utf-16-le")
    assert run("import-labels", table, "--db", db) == EXIT_OK
    assert labels(db) == {digest(a): "unsafe"}


def test_export_labels_csv_imports_into_a_fresh_library(tmp_path, loaded_model, capsys):
    """export → labels.csv → import-labels: the same labels, reviewers, notes and paths."""
    root = tmp_path / "photos"
    pics = [photo(root / f"p{i}.jpg", 60 + i) for i in range(5)]
    odd = photo(Path(os.fsdecode(os.fsencode(root) + b"/ol\xe9.jpg")), 70)
    old = tmp_path / "old.sqlite"
    with Library(old) as library:
        scan_folder(root, loaded_model, library)
        scores = library.scores_for(loaded_model.model_id, [digest(p) for p in [*pics, odd]])
        review = ReviewStore(library)
        for i, path in enumerate([*pics, odd]):
            item = DecisionInput(digest(path), loaded_model.model_id, scores[digest(path)], path)
            review.decide(
                [item],
                "unsafe" if i % 2 else "safe",
                reviewer=f"r{i % 2}",
                threshold=0.5,
                note="looked twice" if i == 0 else None,
            )
        expected = {
            d.hash: (d.label, d.reviewer, d.source_path_bytes, d.note)
            for d in review.current_decisions()
        }
    assert run("export", "--out", tmp_path / "out", "--db", old, "-q") == EXIT_OK
    exported = (tmp_path / "out" / "labels.csv").read_text("utf-8")
    assert (
        "source_path_base64" in exported and base64.b64encode(os.fsencode(odd)).decode() in exported
    )
    fresh = tmp_path / "fresh.sqlite"
    capsys.readouterr()
    assert run("import-labels", tmp_path / "out" / "labels.csv", "--db", fresh) == EXIT_OK
    with Library(fresh) as library:
        got = {
            d.hash: (d.label, d.reviewer, d.source_path_bytes, d.note)
            for d in ReviewStore(library).current_decisions()
        }
        assert library.file_facts(odd)["hash"] == digest(odd)  # listed under its exact name
    assert got == expected
    assert "decided_at column is not used" in capsys.readouterr().err


# --- README --------------------------------------------------------------------------------


def readme_section() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    start = text.index("## Labels from the command line")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_recipe_runs_as_written(tmp_path, monkeypatch, capsys):
    """Every command of the README's section, run in a folder holding the files it names."""
    section = readme_section()
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    commands = [line for kind, body in blocks if kind == "sh" for line in body.splitlines() if line]
    table = next(body for kind, body in blocks if kind == "csv")
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(
        [
            "holiday/IMG_0001.jpg",
            "holiday/IMG_0002.jpg",
            "holiday/IMG_0003.jpg",
            "holiday/cleared/IMG_0004.jpg",
        ]
    ):
        photo(tmp_path / name, 80 + i)
    Path("team-labels.csv").write_text(table, "utf-8")
    db = tmp_path / "library.sqlite"
    assert commands and all(c.startswith("nsfw-desk ") for c in commands)
    for command in commands:
        argv = shlex.split(command)[1:] + ["--db", str(db)]
        assert main(argv) == EXIT_OK, command
    rows = list(csv.DictReader(table.splitlines()))
    got = labels(db)
    assert got[digest(tmp_path / "holiday/IMG_0001.jpg")] == "unsafe"
    assert digest(tmp_path / "holiday/IMG_0002.jpg") not in got  # cleared again
    assert got[digest(tmp_path / "holiday/cleared/IMG_0004.jpg")] == "safe"
    assert got[digest(tmp_path / rows[0]["path"])] == "unsafe"
    assert history(db, digest(tmp_path / rows[0]["path"]))[-1].reviewer == rows[0]["reviewer"]
    assert ai_labels(db) == {
        digest(tmp_path / "holiday/IMG_0001.jpg"): True,
        digest(tmp_path / rows[0]["path"]): False,  # the ai_generated column: no
    }
    assert "7  label, import-labels: some files or CSV rows were refused" in _help("label")
    assert "7 `label` or `import-labels` refused some inputs" in (ROOT / "README.md").read_text()


def _help(command: str) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), pytest.raises(SystemExit):
        main([command, "--help"])
    return buffer.getvalue()


def test_reviewer_and_threshold_come_from_the_desk_settings(tmp_path, monkeypatch):
    from nsfw_desk.core import settings as settings_module

    stored = tmp_path / "settings.json"
    Settings(reviewer="dana", threshold=0.73).save(stored)
    monkeypatch.setattr(settings_module, "settings_path", lambda: stored)
    db = tmp_path / "library.sqlite"
    target = photo(tmp_path / "d.jpg", 90)
    assert run("label", "--as", "unsafe", "--db", db, target) == EXIT_OK
    ours = history(db, digest(target))[-1]
    assert (ours.reviewer, ours.threshold) == ("dana", 0.73)
    same_as_desk(ours, desk_decision(db, target, "safe", None))


def test_import_spreadsheet_separator_line_and_multiline_cells_keep_line_numbers(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    a = photo(tmp_path / "a.jpg", 91)
    text = 'sep=|\npath|label|note\n"a.jpg"|sfw|"two\nlines"\nb.jpg|what|\n'
    table = write_csv(tmp_path / "t.csv", text)
    assert run("import-labels", table, "--db", db) == EXIT_REFUSED
    assert "refused: line 5: row: unknown label 'what'" in capsys.readouterr().err
    assert labels(db) == {digest(a): "safe"}
    assert history(db, digest(a))[-1].note == "two lines"


def test_model_and_score_are_those_of_the_folder_the_desk_would_open(tmp_path, library):
    """The latest model scan of a folder holding the file, else the latest scan's model,
    else whichever model scored the content (no model of this test loads: stored rows)."""
    import numpy as np

    from nsfw_desk.core.labelling import Item, fill_models
    from nsfw_desk.core.store import ScoredFile

    content, other = "c" * 64, "d" * 64
    for model_id, root, score in (("m-old", "first", 0.2), ("m-new", "second", 0.9)):
        scan_id = library.begin_scan(tmp_path / root, model_id)
        row = ScoredFile(
            tmp_path / root / "x.jpg",
            1,
            1,
            content,
            unsafe=score,
            probabilities=np.array([score, 1 - score]),
            embedding=np.zeros(4),
        )
        library.record_scored([row], model_id)
        library.finish_scan(scan_id, "done", files=1, scored=1, cached=0, errors=0)
    only_old = ScoredFile(
        tmp_path / "first" / "y.jpg",
        1,
        1,
        other,
        unsafe=0.4,
        probabilities=np.array([0.4, 0.6]),
        embedding=np.zeros(4),
    )
    library.record_scored([only_old], "m-old")
    items = [
        Item("a", "safe", tmp_path / "first" / "sub" / "x.jpg", content),
        Item("b", "safe", tmp_path / "second" / "x.jpg", content),
        Item("c", "safe", None, content),
        Item("d", "safe", tmp_path / "elsewhere.jpg", other),
        Item("e", "safe", None, "e" * 64),
    ]
    fill_models(library, items)
    assert [(i.model_id, i.score) for i in items] == [
        ("m-old", pytest.approx(0.2)),
        ("m-new", pytest.approx(0.9)),
        ("m-new", pytest.approx(0.9)),
        ("m-old", pytest.approx(0.4)),
        (None, None),
    ]


# --- the AI-generated label (issue 13) -------------------------------------------------------

AI_SOURCE = "org/deepfake-detector"
AI_ID = f"{AI_SOURCE}@{'0123456789abcdef' * 2}01234567"


def ai_history(db: Path, content: str):
    with Library(db) as library:
        return ReviewStore(library).ai_history(content)


def ai_labels(db: Path) -> dict[str, bool]:
    with Library(db) as library:
        return ReviewStore(library).current_ai_labels()


def test_label_ai_generated_alone_with_as_and_cleared(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    a, b = photo(tmp_path / "a.jpg", 100), photo(tmp_path / "b.jpg", 101)
    argv = ["label", "--ai-generated", "yes", "--reviewer", "tester", "--db", db, a]
    assert run(*argv) == EXIT_OK
    captured = capsys.readouterr()
    assert "labelled AI-generated: " in captured.out
    assert "1 AI-generated label recorded (1 AI-generated) as tester" in captured.err
    assert ai_labels(db) == {digest(a): True} and labels(db) == {}  # no decision made
    (row,) = ai_history(db, digest(a))
    assert (row.generated, row.reviewer, row.source, row.undo_of) == (True, "tester", a, None)
    assert UTC_TEXT.fullmatch(row.decided_at) and row.model_id is None and row.score is None
    # Both labels at once; a's AI label is already yes, by tester: only its decision is new.
    both = ["label", "--reviewer", "tester", "--db", db]
    assert run(*both, "--as", "safe", "--ai-generated", "no", b) == EXIT_OK
    assert run(*both, "--as", "unsafe", "--ai-generated", "true", a) == EXIT_OK
    out = capsys.readouterr().out
    assert "labelled safe, real: " in out and "labelled unsafe: " in out
    assert "(already AI-generated)" in out
    assert labels(db) == {digest(a): "unsafe", digest(b): "safe"}
    assert ai_labels(db) == {digest(a): True, digest(b): False}
    assert len(ai_history(db, digest(a))) == 1
    assert run("label", "--ai-generated", "1", "--reviewer", "tester", "--db", db, a) == EXIT_OK
    assert "unchanged: " in capsys.readouterr().out
    assert run("label", "--ai-generated", "clear", "--db", db, a, b) == EXIT_OK
    assert ai_labels(db) == {} and len(labels(db)) == 2  # decisions untouched
    # Undo is the desk's: the rows revert like G/R's (the log keeps everything).
    with Library(db) as library:
        reviews = ReviewStore(library)
        last = [reviews.ai_history(digest(p))[-1].id for p in (a, b)]
        reviews.revert_ai(last, reviewer="tester")
        assert reviews.current_ai_labels() == {digest(a): True, digest(b): False}


def test_label_needs_as_or_ai_generated_and_a_known_ai_value(tmp_path, capsys):
    target = photo(tmp_path / "a.jpg", 102)
    db = tmp_path / "library.sqlite"
    with pytest.raises(SystemExit) as stop:
        main(["label", "--db", str(db), str(target)])
    assert stop.value.code == EXIT_USAGE
    assert "give the label: --as, --ai-generated, or both" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["label", "--ai-generated", "maybe", "--db", str(db), str(target)])
    assert stop.value.code == EXIT_USAGE
    assert "'maybe' is not one of yes, no, clear" in capsys.readouterr().err
    assert not db.exists() or ai_labels(db) == {}


def test_label_ai_generated_keeps_the_ai_detectors_score_and_threshold(tmp_path, monkeypatch):
    """As the desk's G/R: the AI detector's model id and score, and its threshold from the
    settings' detector list (core/labelling.py fill_ai_models)."""
    import numpy as np

    from nsfw_desk.core import settings as settings_module
    from nsfw_desk.core.store import float32_blob

    stored = tmp_path / "settings.json"
    detectors = [{"model": AI_SOURCE, "threshold": 0.35, "enabled": True}]
    Settings(reviewer="dana", detectors=detectors).save(stored)
    monkeypatch.setattr(settings_module, "settings_path", lambda: stored)
    db = tmp_path / "library.sqlite"
    target = photo(tmp_path / "a.jpg", 103)
    content = digest(target)
    with Library(db) as library:
        library.register_model(
            AI_ID,
            source=AI_SOURCE,
            revision=AI_ID.split("@")[1],
            architecture="vit_small_patch16_384",
            labels=["real", "fake"],
            unsafe_labels=["fake"],
        )
        blob = float32_blob(np.array([0.2, 0.8], dtype=np.float32))
        library.record_model_scores(AI_ID, [(content, 0.8, blob, None)])
    assert run("label", "--ai-generated", "no", "--db", db, target) == EXIT_OK
    (row,) = ai_history(db, content)
    assert (row.generated, row.model_id, row.reviewer) == (False, AI_ID, "dana")
    assert row.score == pytest.approx(0.8) and row.threshold == pytest.approx(0.35)


def test_import_ai_generated_column_every_spelling_and_bad_values_by_line(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    pics = [photo(tmp_path / f"p{i}.jpg", 110 + i) for i in range(7)]
    lines = [
        "path,label,ai_generated,reviewer",
        "p0.jpg,unsafe,TRUE,",
        "p1.jpg,safe, no ,bob",
        "p2.jpg,,1,",  # the AI label alone
        "p3.jpg,sfw,,",  # empty: no AI label, the decision alone
        "p4.jpg,,0,",
        "p5.jpg,unsafe,maybe,",
        "p6.jpg,,,",
        "p0.jpg,unsafe,false,",  # the same image, another AI value: a conflict
    ]
    table = write_csv(tmp_path / "labels.csv", "\n".join(lines) + "\n")
    assert run("import-labels", table, "--reviewer", "carol", "--db", db) == EXIT_REFUSED
    out, err = capsys.readouterr()
    assert "refused: line 7: row: unknown ai_generated value 'maybe'" in err
    assert "refused: line 8: row: no label and no ai_generated value" in err
    assert "line 2 says unsafe, AI-generated, line 9 says unsafe, real" in err
    assert "3 decisions recorded (2 safe, 1 unsafe) as bob, carol" not in err  # p0 refused
    assert "2 decisions recorded (2 safe) as bob, carol" in err  # p1.jpg is bob's
    assert "3 AI-generated labels recorded (1 AI-generated, 2 real)" in err
    d = {i: digest(p) for i, p in enumerate(pics)}
    assert labels(db) == {d[1]: "safe", d[3]: "safe"}
    assert ai_labels(db) == {d[1]: False, d[2]: True, d[4]: False}
    assert ai_history(db, d[1])[-1].reviewer == "bob"  # the column wins for both labels
    assert history(db, d[1])[-1].reviewer == "bob"
    assert ai_history(db, d[2])[-1].reviewer == "carol"
    # Again, by the same reviewers: nothing new, each good row unchanged.
    assert run("import-labels", table, "--reviewer", "carol", "--db", db) == EXIT_REFUSED
    assert "4 already had that label (unchanged)" in capsys.readouterr().err
    assert len(ai_history(db, d[2])) == 1
    # --strict: a bad AI value records nothing at all.
    strict = write_csv(tmp_path / "s.csv", "path,ai_generated\np5.jpg,yes\np6.jpg,perhaps\n")
    assert run("import-labels", strict, "--strict", "--db", db) == EXIT_REFUSED
    assert "Nothing recorded (--strict): 1 of 2 rows refused" in capsys.readouterr().err
    assert d[5] not in ai_labels(db)


def test_import_a_file_with_only_an_ai_generated_column(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    unknown = "cd" * 32  # labelled by its hash, as decisions are
    table = write_csv(tmp_path / "t.csv", f"hash;ai_generated\n{unknown};yes\n")
    assert run("import-labels", table, "--db", db) == EXIT_OK
    assert ai_labels(db) == {unknown: True} and labels(db) == {}
    neither = write_csv(tmp_path / "n.csv", "hash,verdict\nab,1\n")
    assert run("import-labels", neither, "--db", db) == EXIT_USAGE
    assert "an 'ai_generated' column alone also works" in capsys.readouterr().err


def test_export_labels_csv_carries_ai_labels_into_a_fresh_library(tmp_path, loaded_model):
    """export → labels.csv (ai_generated true/false/empty) → import-labels: the same."""
    root = tmp_path / "photos"
    pics = [photo(root / f"p{i}.jpg", 120 + i) for i in range(3)]
    old = tmp_path / "old.sqlite"
    with Library(old) as library:
        scan_folder(root, loaded_model, library)
        review = ReviewStore(library)
        items = [DecisionInput(digest(p), None, None, p) for p in pics]
        review.decide(items, "safe", reviewer="r", threshold=0.5)
        review.decide_ai(items[:1], True, reviewer="r")
        review.decide_ai(items[1:2], False, reviewer="r")
        expected = review.current_ai_labels()
    assert run("export", "--out", tmp_path / "out", "--db", old, "-q") == EXIT_OK
    fresh = tmp_path / "fresh.sqlite"
    assert run("import-labels", tmp_path / "out" / "labels.csv", "--db", fresh) == EXIT_OK
    assert ai_labels(fresh) == expected and len(expected) == 2
    assert labels(fresh) == {digest(p): "safe" for p in pics}
    assert ai_history(fresh, digest(pics[0]))[-1].reviewer == "r"
