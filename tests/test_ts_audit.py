"""Trust-and-safety workflows as a team lead runs them from the README: the bugs an
end-to-end audit found (relative scan folders, who an import is recorded as, metrics for a
model folder, a missing dupes folder, a wrong train --data), each held here."""

from __future__ import annotations

import csv

from test_metrics import fill

from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, main
from nsfw_desk.core.hub import ModelSpec, model_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo


def test_a_relative_scan_folder_is_stored_absolute(tmp_path, monkeypatch, model_dir, capsys):
    """`nsfw-desk scan inbox` stored `inbox/a.jpg`: the desk, `label` and `dupes --folder`
    (all absolute) then saw other files, and `label` listed the scanned image again."""
    monkeypatch.chdir(tmp_path)
    for i in range(2):
        write_photo(tmp_path / "inbox" / f"p{i}.jpg", (64, 48), seed=i)
    db = tmp_path / "library.sqlite"
    assert main(["scan", "inbox", "--model", str(model_dir), "--db", str(db), "-q"]) == EXIT_OK
    with Library(db) as library:
        assert len(library.known_files(tmp_path / "inbox")) == 2
    capsys.readouterr()
    assert main(["label", "--as", "unsafe", "inbox/p0.jpg", "--db", str(db)]) == EXIT_OK
    assert "listed in the library" not in capsys.readouterr().out


def test_import_labels_says_who_the_decisions_are_by(tmp_path, capsys):
    """A CSV's reviewer column wins over --reviewer; the summary said "as <--reviewer>"."""
    for i in range(2):
        write_photo(tmp_path / f"p{i}.jpg", (64, 48), seed=i)
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerows([["path", "label", "reviewer"], ["p0.jpg", "unsafe", "alice"]])
        writer.writerow(["p1.jpg", "safe", "bob"])
    db = tmp_path / "library.sqlite"
    assert main(["import-labels", str(table), "--reviewer", "carol", "--db", str(db)]) == 0
    said = capsys.readouterr().err
    assert "2 decisions recorded (1 safe, 1 unsafe) as alice, bob, threshold" in said
    assert "carol" not in said


def test_metrics_takes_a_model_folder_as_scan_does(tmp_path, model_dir, capsys):
    """`metrics --model FOLDER` said "0 unsafe and 0 safe reviewed items" for a model with
    27 of them: it only took the stored id."""
    model_id = model_folder(ModelSpec.parse(str(model_dir)), offline=True)[1]
    db = tmp_path / "lib.sqlite"
    with Library(db) as library:
        fill(library, 12, 15, model_id)
    assert main(["metrics", "--db", str(db), "--model", str(model_dir)]) == EXIT_OK
    assert "12 unsafe and 15 safe reviewed items" in capsys.readouterr().out
    assert main(["metrics", "--db", str(db), "--model", str(tmp_path / "nope")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is not a model of this library" in err and f"{model_id} (27)" in err


def test_dupes_of_a_folder_that_is_not_there_is_refused(tmp_path, capsys):
    db = tmp_path / "library.sqlite"
    Library(db).close()
    assert main(["dupes", "--folder", str(tmp_path / "nope"), "--db", str(db)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "holds no image under" in captured.err and "nope" in captured.err
    assert "No near-duplicates" not in captured.out


def test_train_data_that_is_not_an_export_is_refused_before_loading_a_model(
    tmp_path, capsys, monkeypatch
):
    """It loaded (or downloaded) the base model first; offline that said exit 3, 'not in the
    Hugging Face cache', instead of what was wrong."""
    import nsfw_desk.core.runtime as runtime

    def no_model(*args, **kwargs):
        raise AssertionError("the base model was loaded before --data was checked")

    monkeypatch.setattr(runtime, "load_model", no_model)
    (tmp_path / "photos").mkdir()
    out = tmp_path / "model"
    assert main(["train", "--data", str(tmp_path / "photos"), "--out", str(out)]) == EXIT_USAGE
    assert "is not an nsfw-desk export" in capsys.readouterr().err
    assert not out.exists()


def test_train_and_compare_tables_show_a_tiny_threshold_as_it_is():
    """A threshold for 95 % recall of 0.000048 printed as 0.000 (a threshold of 0, which
    flags everything); one of 0.99996 as 1.000 (which flags almost nothing)."""
    from nsfw_desk.core.compare import compare_lines
    from nsfw_desk.core.training.train import report_lines

    def side(threshold: float) -> dict:
        return {
            "n": 4,
            "n_unsafe": 2,
            "n_safe": 2,
            "accuracy": 1.0,
            "precision": 1.0,
            "recall": 1.0,
            "f1": 1.0,
            "roc_auc": 1.0,
            "average_precision": 1.0,
            "confusion": {"tp": 2, "fp": 0, "tn": 2, "fn": 0},
            "threshold_for_target_recall": threshold,
            "model": "m",
        }

    report = {"threshold": 0.5, "target_recall": 0.95, "before": side(4.8e-5)}
    report["after"] = side(0.99996)
    row = report_lines(report)[-1].split()
    assert row[-2:] == ["0.00004", "0.999"]
    result = {
        "a": side(4.8e-5),
        "b": side(0.99996),
        "compared": 4,
        "trained_on_excluded": 0,
        "threshold": 0.5,
        "target_recall": 0.95,
        "changed_decisions": 0,
        "now_flagged": 0,
        "no_longer_flagged": 0,
        "scored_from_embeddings": {"a": 0, "b": 0},
    }
    row = next(line for line in compare_lines(result) if "threshold for recall" in line)
    assert row.split()[-2:] == ["0.00004", "0.999"]


def _relabelled_copy(model_dir, out, labels):
    """The same weights under other class names (what import-weights --labels writes)."""
    import json
    import shutil

    shutil.copytree(model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["label_names"] = labels
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_the_same_weights_scoring_another_class_are_refused_not_given_stored_scores(
    tmp_path, model_dir, folder, capsys
):
    """A local model's id is its weights' hash, and scores are kept per id: the same weights
    asked for the other class (--unsafe-label SFW, or a config naming the classes the other
    way round) were answered from the stored scores of the first class, silently wrong."""
    import pytest

    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import ScoreMeaningConflict, scan_folder

    db = tmp_path / "library.sqlite"
    assert main(["scan", str(folder), "--model", str(model_dir), "--db", str(db), "-q"]) == 0
    with Library(db) as library:
        before = library.db.execute("SELECT COUNT(*), SUM(unsafe) FROM scores").fetchone()
    capsys.readouterr()
    scan = ["scan", str(folder), "--db", str(db), "-q"]
    assert main([*scan, "--model", str(model_dir), "--unsafe-label", "SFW"]) == 3
    err = capsys.readouterr().err
    assert "probability of NSFW" in err and "--unsafe-label NSFW" in err
    assert "Traceback" not in err
    swapped = _relabelled_copy(model_dir, tmp_path / "swapped", ["safe", "unsafe"])
    with Library(db) as library, pytest.raises(ScoreMeaningConflict):
        scan_folder(folder, load_model(swapped, device="cpu"), library)
    # The same class under another name is the same score: taken from the library.
    renamed = _relabelled_copy(model_dir, tmp_path / "renamed", ["unsafe", "safe"])
    with Library(db) as library:
        summary = scan_folder(folder, load_model(renamed, device="cpu"), library)
        assert summary.scored == 0 and summary.cached == 12
        after = library.db.execute("SELECT COUNT(*), SUM(unsafe) FROM scores").fetchone()
    assert after == before
