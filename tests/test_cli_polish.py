"""Rough edges of the command line that an audit found, each driven through the real CLI:
one wording for a dangling link, an incomplete result row refused, a merge won by the later
decision, trained models' default names, non-UTF-8 model folders in messages, and a second
reviewer's same-label decision recorded."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_hostile_inputs import _results
from test_train_cli import decided  # noqa: F401 (a fixture)

from nsfw_desk.cli import EXIT_MODEL, EXIT_OK, EXIT_USAGE, main
from nsfw_desk.cli_label import EXIT_REFUSED
from nsfw_desk.core.review import Decision, DecisionInput, ReviewStore
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo

POSIX = os.name == "posix"
H = "ab" * 32


# --- 1. a dangling symbolic link reads the same in every command ---------------------------


@pytest.mark.skipif(not POSIX, reason="symbolic links")
def test_a_dangling_link_is_a_broken_symbolic_link_to_label_as_to_scan(tmp_path, model_dir, capsys):
    """`label` said "vanished: no such file" where `scan` says "broken symbolic link"."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    db = tmp_path / "library.sqlite"
    said = []
    scan = ["scan", str(photos), "--model", str(model_dir), "--db", str(db), "--jsonl", "-"]
    assert main([*scan, "-q"]) == EXIT_OK
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    said.append(record["error"])
    for args in (
        ["label", "--as", "unsafe", str(photos / "gone.jpg")],
        ["label", "-r", "--as", "unsafe", str(photos)],
    ):
        assert main([*args, "--db", str(db)]) == EXIT_REFUSED
        said.append(capsys.readouterr().err.splitlines()[0])
    table = tmp_path / "labels.csv"
    table.write_text("path,label\nphotos/gone.jpg,unsafe\n", encoding="utf-8")
    assert main(["import-labels", str(table), "--db", str(db)]) == EXIT_REFUSED
    said.append(capsys.readouterr().err.splitlines()[0])
    assert said[0] == "vanished: broken symbolic link"
    assert all(line.endswith(": vanished: broken symbolic link") for line in said[1:]), said


# --- 2. a result row with neither a hash nor an error -------------------------------------


def test_import_refuses_a_result_row_with_neither_a_hash_nor_an_error(tmp_path, capsys):
    """It was stored as a listed file with no content: a row the desk cannot show or
    decide on, and a rescan would never fill it in."""
    pytest.importorskip("pyarrow")
    rows = [
        {"path": "/data/photos/good.jpg"},
        {"path": "/data/photos/half.jpg", "hash": None},
        {
            "path": "/data/photos/bad.jpg",
            "hash": None,
            "error_kind": "decode_error",
            "error": "broken",
        },
    ]
    out = _results(tmp_path / "results", rows, [])
    db = tmp_path / "library.sqlite"
    assert main(["import", str(out), "--db", str(db)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("nsfw-desk import: ")
    assert "part-0.parquet, row 2" in err and "/data/photos/half.jpg" in err
    assert "neither a content hash nor an error" in err
    assert "row 1" not in err and "row 3" not in err
    with Library(db) as library:
        assert library.has_files_under(Path("/data")) is False  # nothing of it stored
    # the refusal says to run the cluster-scan again: its resume scores that file anew
    from nsfw_desk.core.cluster_results import done_files

    assert set(done_files(out)) == {b"/data/photos/good.jpg", b"/data/photos/bad.jpg"}


def test_import_names_result_files_it_could_not_read(tmp_path, capsys):
    """A Parquet file torn by a killed run was left out with a log line only, and the
    summary read as if everything was in."""
    pytest.importorskip("pyarrow")
    out = _results(tmp_path / "results", [{"path": "/data/photos/good.jpg"}], [])
    (run,) = out.iterdir()
    whole = (run / "part-0.parquet").read_bytes()
    (run / "part-1.parquet").write_bytes(whole[: len(whole) // 2])  # cut short mid-write
    db = tmp_path / "library.sqlite"
    assert main(["import", str(out), "--db", str(db)]) == EXIT_OK
    err = capsys.readouterr().err
    assert "1 rows (1 images, 0 errors)" in err
    said = next(line for line in err.splitlines() if "could not be read" in line)
    assert said.startswith("nsfw-desk import: 1 result file could not be read and was left out")
    assert str(run / "part-1.parquet") in said and "run the same cluster-scan again" in said
    with Library(db) as library:
        assert library.has_files_under(Path("/data/photos"))


# --- 3. merge: the later decision wins ------------------------------------------------------


def _dated(library: Library, reviewer: str, label: str, at: str, digest: str = H) -> None:
    """A decision made `at` (in another library, say), as a merge brings it."""
    row = Decision(0, digest, label, reviewer, at, "m", 0.9, 0.5, None, None)
    ReviewStore(library).merge_decisions([row], f"made-by-{reviewer}")


def _label(db: Path) -> str | None:
    with Library(db) as library:
        return ReviewStore(library).current_labels([H]).get(H)


def test_merge_keeps_the_later_decision_whatever_order_they_arrive_in(tmp_path, capsys):
    """The merged decision became the label because it was inserted last, even though
    this library's was made a day later."""
    alice, bob = tmp_path / "alice.sqlite", tmp_path / "bob.sqlite"
    with Library(alice) as library:
        _dated(library, "alice", "unsafe", "2026-03-02T10:00:00.000Z")
    with Library(bob) as library:
        _dated(library, "bob", "safe", "2026-03-01T10:00:00.000Z")
    shutil.copy(bob, tmp_path / "bob_copy.sqlite")
    assert main(["merge", str(bob), "--db", str(alice)]) == EXIT_OK
    assert _label(alice) == "unsafe"  # alice's is a day later
    assert main(["merge", str(alice), "--db", str(tmp_path / "bob_copy.sqlite")]) == EXIT_OK
    assert _label(tmp_path / "bob_copy.sqlite") == "unsafe"  # the same either way
    with Library(alice) as library:  # both stay in the log, and both reviewers count
        history = ReviewStore(library).history(H)
        # oldest first by when decided: bob's merged one (a day earlier) before alice's
        assert [(d.reviewer, d.label) for d in history] == [("bob", "safe"), ("alice", "unsafe")]
    capsys.readouterr()
    assert main(["agreement", "--db", str(alice), "--json"]) == EXIT_OK
    (pair,) = json.loads(capsys.readouterr().out)["pairs"]
    assert (pair["reviewers"], pair["both"], pair["agree"]) == (["alice", "bob"], 1, 0)
    # a decision made later still wins when it is merged: bob looks again the next week
    with Library(bob) as library:
        _dated(library, "bob", "safe", "2026-03-09T10:00:00.000Z")
    assert main(["merge", str(bob), "--db", str(alice)]) == EXIT_OK
    assert _label(alice) == "safe"


def test_merge_breaks_a_tie_the_same_way_in_both_directions(tmp_path):
    """Two decisions made in the same millisecond: the winner does not depend on which
    library was merged into which."""
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    at = "2026-03-02T10:00:00.000Z"
    with Library(one) as library:
        _dated(library, "bob", "safe", at)
    with Library(two) as library:
        _dated(library, "alice", "unsafe", at)
    assert main(["merge", str(two), "--db", str(one)]) == EXIT_OK
    assert main(["merge", str(one), "--db", str(two)]) == EXIT_OK
    assert _label(one) == _label(two) == "safe"  # same time: the reviewer name decides
    # a decision made here now is later than both: it is the label
    with Library(one) as library:
        reviews = ReviewStore(library)
        reviews.apply_labels([(DecisionInput(H), "unsafe")], reviewer="mod", threshold=0.5)
        assert reviews.current_labels([H]) == {H: "unsafe"}
        assert [d.reviewer for d in reviews.current_decisions()] == ["mod"]


def test_a_decision_made_here_wins_over_a_merged_one_dated_in_the_future(tmp_path):
    """A merged reviewer's clock ran a year ahead: a label given here now must still be the
    label (it is dated 1 ms after the merged one), and its reviewer is kept."""
    one, ahead = tmp_path / "one.sqlite", tmp_path / "ahead.sqlite"
    future = "2099-01-01T00:00:00.000Z"
    with Library(ahead) as library:
        _dated(library, "zed", "unsafe", future)
    with Library(one) as library:
        _dated(library, "bob", "safe", "2026-03-02T10:00:00.000Z")
    assert main(["merge", str(ahead), "--db", str(one)]) == EXIT_OK
    assert _label(one) == "unsafe"
    with Library(one) as library:
        reviews = ReviewStore(library)
        reviews.apply_labels([(DecisionInput(H), "safe")], reviewer="ann", threshold=0.5)
        assert reviews.current_labels([H]) == {H: "safe"}
        (latest,) = reviews.current_decisions()
        assert (latest.reviewer, latest.decided_at) == ("ann", "2099-01-01T00:00:00.001Z")
        reviews.apply_labels([(DecisionInput(H), None)], reviewer="ann", threshold=0.5)
        assert reviews.current_labels([H]) == {}  # and clearing it clears it


# --- 4. the default name of a trained model ---------------------------------------------------


def test_a_trained_models_default_folder_does_not_grow_a_suffix_each_generation(tmp_path):
    from nsfw_desk.core.training import default_model_dir

    models = tmp_path / "models"
    day1 = datetime(2026, 11, 26, tzinfo=timezone.utc)
    day2 = datetime(2026, 11, 27, tzinfo=timezone.utc)
    first = default_model_dir(models, "nsfw-sfw", day1)
    assert first == models / "nsfw-sfw-trained-2026-11-26"
    first.mkdir(parents=True)
    # a model trained from the first: its display name is the folder name and short hash
    second = default_model_dir(models, f"{first.name} (sha256:fb8690ab)", day2)
    assert second == models / "nsfw-sfw-trained-2026-11-27"
    # the same base again the same day: never the folder of the model already there
    again = default_model_dir(models, f"{first.name} (sha256:fb8690ab)", day1)
    assert again == models / "nsfw-sfw-trained-2026-11-26-2"
    again.mkdir()
    third = default_model_dir(models, f"{again.name} (sha256:0123abcd)", day1)
    assert third == models / "nsfw-sfw-trained-2026-11-26-3"
    # a name grown by earlier versions is cut back too
    old = default_model_dir(models, "nsfw-sfw-trained-2026-11-01-trained-2026-11-02", day2)
    assert old == second
    # a name that only looks like one keeps what is its own
    assert default_model_dir(models, "trained-2026-11-01", day2).name == (
        "trained-2026-11-01-trained-2026-11-27"
    )


def test_train_without_out_saves_beside_the_library_one_generation_deep(
    tmp_path, model_dir, request, capsys
):
    """`train` names the model as the desk does; trained again from that model it is
    `<first base>-trained-<date>-2`, not `…-trained-<date>-trained-<date>`, and the first
    model stays."""
    db, _ = request.getfixturevalue("decided")
    day = f"{datetime.now(timezone.utc):%Y-%m-%d}"
    models = tmp_path / "models"
    train = ["train", "--db", str(db), "--device", "cpu", "--precision", "fp32", "-q"]
    assert main([*train, "--base", str(model_dir)]) == EXIT_OK
    first = models / f"nsfw-sfw-trained-{day}"
    assert f"Saved {first} " in capsys.readouterr().out
    weights = (first / "model.safetensors").read_bytes()
    assert main([*train, "--base", str(first)]) == EXIT_OK
    assert f"Saved {models / f'nsfw-sfw-trained-{day}-2'} " in capsys.readouterr().out
    assert sorted(p.name for p in models.iterdir()) == [first.name, f"{first.name}-2"]
    assert (first / "model.safetensors").read_bytes() == weights  # never overwritten


def test_the_desk_proposes_the_same_default_folder(tmp_path):
    pytest.importorskip("PySide6")
    from nsfw_desk.core.training import default_model_dir
    from nsfw_desk.gui.train_dialog import default_out

    when = datetime(2026, 11, 26, tzinfo=timezone.utc)
    name = "nsfw-sfw-trained-2026-11-20 (sha256:fb8690ab)"
    assert default_out(tmp_path, name, when) == default_model_dir(tmp_path, name, when)


# --- 5. a model folder named in bytes that are not UTF-8 -------------------------------------


@pytest.mark.skipif(not POSIX, reason="file names as bytes")
@pytest.mark.parametrize("damage", ["weights", "config", "no-weights"])
def test_a_model_folder_not_named_in_utf8_reads_as_other_paths_do(
    damage, tmp_path, model_dir, capsys
):
    """Messages said `m\\udcff` (Python's surrogate escape) where every other message and
    record says `m\\xff`."""
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/m\xff"))
    shutil.copytree(model_dir, folder)
    if damage == "weights":  # safetensors' own message names the file
        (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    elif damage == "config":
        (folder / "config.json").write_text("{not json", encoding="utf-8")
    else:
        (folder / "model.safetensors").unlink()
    write_photo(tmp_path / "photos" / "a.jpg", (64, 48), seed=1)
    db = tmp_path / "library.sqlite"
    args = ["scan", str(tmp_path / "photos"), "--model", str(folder), "--db", str(db), "-q"]
    assert main(args) == EXIT_MODEL
    err = capsys.readouterr().err
    assert "/m\\xff" in err, err
    assert "\udcff" not in err and "\\udcff" not in err


# --- 6. a second reviewer's same-label decision --------------------------------------------


def test_a_second_reviewers_same_label_is_recorded_and_counts_for_agreement(tmp_path, capsys):
    """bob labelling an image that alice's library (copied to him) shows with the same
    label recorded nothing: agreement never saw bob's review."""
    write_photo(tmp_path / "a.jpg", (64, 48), seed=1)
    db = tmp_path / "library.sqlite"
    image = str(tmp_path / "a.jpg")

    def label(reviewer: str, as_: str = "unsafe") -> str:
        argv = ["label", "--as", as_, image, "--reviewer", reviewer, "--db", str(db)]
        assert main(argv) == EXIT_OK
        return capsys.readouterr().err

    def decisions() -> list[tuple[str, str | None]]:
        with Library(db) as library:
            return [(d.reviewer, d.label) for d in ReviewStore(library).all_decisions()]

    assert "1 decision recorded (1 unsafe) as alice" in label("alice")
    assert "1 decision recorded (1 unsafe) as bob" in label("bob")
    assert decisions() == [("alice", "unsafe"), ("bob", "unsafe")]
    said = label("bob")  # bob again, the same label: nothing new
    assert "0 decisions recorded" in said and "1 already had that label" in said
    said = label("alice")
    assert "0 decisions recorded" in said and "1 already had that label" in said
    assert decisions() == [("alice", "unsafe"), ("bob", "unsafe")]
    assert main(["agreement", "--db", str(db), "--json"]) == EXIT_OK
    (pair,) = json.loads(capsys.readouterr().out)["pairs"]
    assert (pair["reviewers"], pair["both"], pair["agree"]) == (["alice", "bob"], 1, 1)
    # carol clears an image she never labelled: nothing of hers to clear, no row
    with Library(db) as library:
        count = len(ReviewStore(library).all_decisions())
    said = label("carol", "clear")
    assert "1 decision recorded" in said  # the label alice and bob gave is cleared
    with Library(db) as library:
        assert len(ReviewStore(library).all_decisions()) == count + 1


def test_import_labels_records_each_reviewers_same_label_once(tmp_path, capsys):
    """Two reviewers' rows for one image with one label: the second was a "duplicate" and
    not recorded; the same reviewer's repeat still is one."""
    write_photo(tmp_path / "a.jpg", (64, 48), seed=1)
    table = tmp_path / "labels.csv"
    table.write_text(
        "path,label,reviewer\na.jpg,unsafe,alice\na.jpg,unsafe,bob\na.jpg,unsafe,alice\n",
        encoding="utf-8",
    )
    db = tmp_path / "library.sqlite"
    assert main(["import-labels", str(table), "--db", str(db)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "2 decisions recorded (2 unsafe) as alice, bob" in err
    assert "1 the same image as an earlier one" in err
    assert "duplicate: line 4 (the same image as line 2)" in out
    with Library(db) as library:
        reviews = ReviewStore(library)
        assert [(d.reviewer, d.label) for d in reviews.all_decisions()] == [
            ("alice", "unsafe"),
            ("bob", "unsafe"),
        ]


def test_undo_after_a_merge_restores_the_label_the_image_showed(tmp_path):
    """Undo goes back to what was the label before the undone decision: the later of the
    two, not the merged (older) one stored after it."""
    alice, bob = tmp_path / "alice.sqlite", tmp_path / "bob.sqlite"
    with Library(alice) as library:
        _dated(library, "alice", "unsafe", "2026-03-02T10:00:00.000Z")
    with Library(bob) as library:
        _dated(library, "bob", "safe", "2026-03-01T10:00:00.000Z")
    assert main(["merge", str(bob), "--db", str(alice)]) == EXIT_OK
    with Library(alice) as library:
        reviews = ReviewStore(library)
        ids = reviews.apply_labels([(DecisionInput(H), "safe")], reviewer="mod", threshold=0.5)
        assert reviews.current_labels([H]) == {H: "safe"}
        reviews.revert(ids, reviewer="mod", threshold=0.5)
        assert reviews.current_labels([H]) == {H: "unsafe"}
