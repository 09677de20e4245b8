"""Training from decisions: the synthetic task end to end, stored embeddings, bad input.

The task: two families of generated pictures whose class is a visible property (warm
stripes = unsafe, cool checkerboard = safe, see nsfw_desk/synthetic.py). The base model is the
random-weight tiny ViT with its head zeroed, so it scores 0.5 for everything: at chance.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from nsfw_desk.cli import main
from nsfw_desk.core import model_folder as model_folder_mod
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.core.training import (
    NotEnoughDecisions,
    TrainingError,
    TrainOptions,
    train,
)
from nsfw_desk.synthetic import write_family_photos


@pytest.fixture(scope="session")
def chance_base(tmp_path_factory, model_dir) -> Path:
    """test_vit with a zero head: every image scores exactly 0.5."""
    import safetensors.torch
    import torch

    from nsfw_desk.core.model_folder import base_config, write_model_folder

    state = safetensors.torch.load_file(str(model_dir / "model.safetensors"))
    state["head.weight"] = torch.zeros_like(state["head.weight"])
    state["head.bias"] = torch.zeros_like(state["head.bias"])
    out = tmp_path_factory.mktemp("chance") / "chance-base"
    write_model_folder(out, state, base_config(model_dir))
    return out


@pytest.fixture(scope="session")
def chance_model(chance_base):
    from nsfw_desk.core.runtime import load_model

    return load_model(chance_base, device="cpu")


def _review(library, outcomes, families, *, limit=None):
    """Decisions as the desk records them: one per item, with the model's score shown."""
    reviews = ReviewStore(library)
    done = 0
    for outcome in outcomes:
        if outcome.hash is None or (limit is not None and done >= limit):
            continue
        label = "unsafe" if families[outcome.path] == 0 else "safe"
        item = DecisionInput(
            outcome.hash, library.last_model_for(outcome.path.parent), outcome.score, outcome.path
        )
        reviews.decide([item], label, reviewer="tester", threshold=0.5)
        done += 1


@pytest.fixture
def reviewed(tmp_path, chance_model):
    """A library with 30 + 30 scanned and reviewed synthetic pictures."""
    families = write_family_photos(tmp_path / "photos", 30)
    library = Library(tmp_path / "library.sqlite")
    summary = scan_folder(tmp_path / "photos", chance_model, library, keep_outcomes=True)
    assert summary.scored == 60
    _review(library, summary.outcomes, families)
    yield library, families
    library.close()


def _count_decodes(monkeypatch, *modules):
    """Calls of each module's `decode`, and of Pillow's Image.open (any decode anywhere)."""
    from PIL import Image

    calls = []
    real_open = Image.open

    def counting_open(*args, **kwargs):
        calls.append("Image.open")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    for module in modules:
        real = module.decode

        def counting(*args, _real=real, **kwargs):
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "decode", counting)
    return calls


def _jsonl_scores(path: Path) -> dict[str, float]:
    return {r["path"]: r["score"] for r in map(json.loads, path.read_text().splitlines())}


def test_head_training_learns_the_task_and_the_model_scans_fresh_images(
    tmp_path, reviewed, chance_base, monkeypatch, capsys
):
    from nsfw_desk.core.training import embeddings

    library, _ = reviewed
    decodes = _count_decodes(monkeypatch, embeddings)
    out = tmp_path / "models" / "mine"
    reports = []
    result = train(
        TrainOptions(out, base=str(chance_base), device="cpu"), library, progress=reports.append
    )
    assert decodes == []  # every item had its stored embedding
    assert {"preparing", "embeddings", "training", "writing", "rescoring"} <= {
        r.phase for r in reports
    }
    assert any("val acc" in r.message for r in reports if r.phase == "training")

    before, after = result.report["before"], result.report["after"]
    assert before["accuracy"] == pytest.approx(0.5)  # at chance: everything 0.5, all flagged
    assert before["roc_auc"] == pytest.approx(0.5)
    assert after["accuracy"] >= 0.9 and after["roc_auc"] > 0.9
    assert after["n"] == 12 and after["n_unsafe"] == 6  # 20 % of each class held out
    assert "threshold_for_target_recall" in after
    assert "accuracy" in result.summary and "weighted loss" in result.summary

    # the folder: hub layout, the base's labels, and the training record
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "test_vit" and config["label_names"] == ["NSFW", "SFW"]
    record = json.loads((out / "training.json").read_text())
    assert record["mode"] == "head"
    assert record["base_model_id"].startswith("sha256:")
    assert record["decisions"]["counts"] == {"unsafe": 30, "safe": 30}
    assert record["decisions"]["fingerprint"].startswith("sha256:")
    assert len(record["train_hashes"]) == 48 and len(record["val_hashes"]) == 12
    assert not set(record["train_hashes"]) & set(record["val_hashes"])
    assert record["imbalance"]["method"].startswith("weighted loss")
    assert record["metrics"]["after"]["accuracy"] == after["accuracy"]
    assert {"torch", "timm", "nsfw_desk"} <= set(record["software"])
    assert json.loads((out / "report.json").read_text())["after"] == after

    # registered and every stored item re-scored from embeddings
    assert result.rescored == 60
    assert library.model_labels(result.model_id) == (["NSFW", "SFW"], ["NSFW"])
    assert len(library.embedding_blobs(result.model_id)) == 60

    # fresh images through the normal command line: the saved model on its own
    fresh = write_family_photos(tmp_path / "fresh", 20, seed=7)
    jsonl = tmp_path / "fresh.jsonl"
    code = main(
        [
            "scan",
            str(tmp_path / "fresh"),
            "--model",
            str(out),
            "--db",
            str(tmp_path / "other.sqlite"),
            "--device",
            "cpu",
            "--jsonl",
            str(jsonl),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    scores = _jsonl_scores(jsonl)
    right = sum((scores[str(p)] >= 0.5) == (family == 0) for p, family in fresh.items())
    assert right / len(fresh) >= 0.9, f"{right} of {len(fresh)} right"


def test_head_only_rescan_scores_from_stored_embeddings_without_decoding(
    tmp_path, reviewed, chance_base, chance_model, monkeypatch, capsys
):
    from nsfw_desk.core import scan as scan_mod
    from nsfw_desk.core.runtime import load_model

    library, _ = reviewed
    out = tmp_path / "mine"
    train(TrainOptions(out, base=str(chance_base), device="cpu"), library)
    # New pictures the base model scanned after training: their base embeddings are stored.
    write_family_photos(tmp_path / "later", 10, seed=3)
    scan_folder(tmp_path / "later", chance_model, library)
    library.close()
    # and a copy elsewhere: content the base model scored, a file the library has not seen
    first = sorted((tmp_path / "later").iterdir())[0]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "copy.jpg").write_bytes(first.read_bytes())

    decodes = _count_decodes(monkeypatch, scan_mod)
    db = str(tmp_path / "library.sqlite")
    code = main(
        [
            "scan",
            str(tmp_path / "elsewhere"),
            "--model",
            str(out),
            "--db",
            db,
            "--device",
            "cpu",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0 and "1 scored from stored embeddings (no decoding)" in err, err
    jsonl = tmp_path / "later.jsonl"
    code = main(
        [
            "scan",
            str(tmp_path / "later"),
            "--model",
            str(out),
            "--db",
            db,
            "--device",
            "cpu",
            "--jsonl",
            str(jsonl),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert decodes == []
    assert "19 scored from stored embeddings (no decoding)" in err  # the copy's: stored
    from_embeddings = _jsonl_scores(jsonl)
    assert len(from_embeddings) == 20

    # the same scores (up to the float16 embedding) as running the whole new model
    monkeypatch.undo()
    model = load_model(out, device="cpu")
    other = Library(tmp_path / "fresh.sqlite")
    summary = scan_folder(tmp_path / "later", model, other, keep_outcomes=True)
    other.close()
    assert summary.scored == 20 and summary.from_embeddings == 0
    for outcome in summary.outcomes:
        assert from_embeddings[str(outcome.path)] == pytest.approx(outcome.score, abs=0.02)


def test_missing_embeddings_are_computed_and_stored_others_never_decoded(
    tmp_path, reviewed, chance_base, chance_model, monkeypatch
):
    from nsfw_desk.core.training import embeddings

    library, _ = reviewed
    # Five more reviewed pictures that were only listed (no model): no embedding stored.
    extra = write_family_photos(tmp_path / "listed", 5, seed=11)
    listing = scan_folder(tmp_path / "listed", None, library, keep_outcomes=True)
    _review(library, listing.outcomes, extra)
    assert len(library.embedding_blobs(chance_model.model_id)) == 60
    decodes = _count_decodes(monkeypatch, embeddings)
    result = train(TrainOptions(tmp_path / "m", base=str(chance_base), device="cpu"), library)
    assert decodes.count(1) == 10  # only the ten without an embedding
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["embeddings"] == {"stored": 60, "computed": 10, "left_out": []}
    assert len(library.embedding_blobs(chance_model.model_id)) == 70  # stored as a scan would
    assert result.rescored == 70


def test_one_class_only_is_refused_with_the_counts(tmp_path, chance_model, chance_base):
    families = write_family_photos(tmp_path / "p", 12)
    only_unsafe = {p: 0 for p in families}
    with Library(tmp_path / "lib.sqlite") as library:
        summary = scan_folder(tmp_path / "p", chance_model, library, keep_outcomes=True)
        _review(library, summary.outcomes, only_unsafe)
        with pytest.raises(NotEnoughDecisions) as caught:
            train(TrainOptions(tmp_path / "m", base=str(chance_base), device="cpu"), library)
    message = str(caught.value)
    assert "24 unsafe and 0 safe (one class only)" in message
    assert "Review 10 more safe item(s) first" in message
    assert not (tmp_path / "m").exists()


def test_fewer_than_ten_of_a_class_is_refused(tmp_path, chance_model, chance_base, capsys):
    families = write_family_photos(tmp_path / "p", 12)
    with Library(tmp_path / "lib.sqlite") as library:
        summary = scan_folder(tmp_path / "p", chance_model, library, keep_outcomes=True)
        unsafe = [o for o in summary.outcomes if families[o.path] == 0][:12]
        safe = [o for o in summary.outcomes if families[o.path] == 1][:7]
        _review(library, unsafe + safe, families)
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "m"),
            "--base",
            str(chance_base),
            "--db",
            str(tmp_path / "lib.sqlite"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "12 unsafe and 7 safe" in err and "3 more safe" in err and "Traceback" not in err


def test_a_folder_that_is_not_an_export_is_refused(tmp_path, chance_base, capsys):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(b"x")
    with pytest.raises(TrainingError, match="is not an nsfw-desk export"):
        train(TrainOptions(tmp_path / "m", base=str(chance_base), data=tmp_path / "pics"), None)
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "m"),
            "--base",
            str(chance_base),
            "--data",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 2
    assert "is not an nsfw-desk export (no such folder)" in capsys.readouterr().err


def test_training_from_an_export_folder(tmp_path, reviewed, chance_base):
    from nsfw_desk.core.export import ExportOptions, export_dataset

    library, _ = reviewed
    export_dataset(library, ExportOptions(tmp_path / "export"))
    result = train(
        TrainOptions(tmp_path / "m", base=str(chance_base), data=tmp_path / "export", device="cpu"),
        None,  # no library: every embedding computed from the export's files
    )
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["decisions"]["source"] == f"export:{tmp_path / 'export'}"
    assert record["decisions"]["counts"] == {"unsafe": 30, "safe": 30}
    assert record["embeddings"]["computed"] == 60
    assert result.rescored == 0 and result.report["after"]["accuracy"] >= 0.9


def test_embeddings_of_another_width_are_refused(tmp_path, reviewed, chance_base, chance_model):
    library, _ = reviewed
    digest = library.embedding_blobs(chance_model.model_id)[0][0]
    wrong = np.zeros(7, "<f2").tobytes()
    library.record_model_scores(chance_model.model_id, [(digest, 0.5, b"", wrong)])
    with pytest.raises(TrainingError, match="came from another model"):
        train(TrainOptions(tmp_path / "m", base=str(chance_base), device="cpu"), library)


def test_an_out_folder_of_other_things_is_refused(tmp_path, reviewed, chance_base):
    library, _ = reviewed
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "letter.txt").write_text("keep")
    with pytest.raises(TrainingError, match="neither empty nor a model folder"):
        train(TrainOptions(tmp_path / "docs", base=str(chance_base), device="cpu"), library)
    assert os.listdir(tmp_path / "docs") == ["letter.txt"]


def test_an_earlier_model_dir_stays_intact_when_writing_fails(
    tmp_path, reviewed, chance_base, monkeypatch, capsys
):
    library, _ = reviewed
    out = tmp_path / "mine"
    train(TrainOptions(out, base=str(chance_base), device="cpu"), library)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    library.close()
    real = model_folder_mod._write_file

    def full(path, data):
        if path.name == "model.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(model_folder_mod, "_write_file", full)
    code = main(
        [
            "train",
            "--out",
            str(out),
            "--base",
            str(chance_base),
            "--seed",
            "1",
            "--db",
            str(tmp_path / "library.sqlite"),
            "--device",
            "cpu",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 5, err
    assert "is full" in err and "an earlier model there is intact" in err
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".mine")) == []


def test_train_command_prints_the_report_and_a_missing_base_exits_3(
    tmp_path, reviewed, chance_base, capsys
):
    library, _ = reviewed
    library.close()
    db = str(tmp_path / "library.sqlite")
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "m"),
            "--base",
            str(chance_base),
            "--db",
            db,
            "--device",
            "cpu",
            "--epochs",
            "30",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "before" in captured.out and "after" in captured.out
    assert "Re-scored 60 library items from stored embeddings (no decoding)" in captured.out
    assert "training: epoch" in captured.err
    code = main(
        ["train", "--out", str(tmp_path / "n"), "--base", str(tmp_path / "nothing"), "--db", db]
    )
    assert code == 3
    assert "does not exist" in capsys.readouterr().err


def test_partial_mode_goes_through_finetune_and_writes_a_loadable_model(
    tmp_path, reviewed, chance_base
):
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.training import resumable

    library, _ = reviewed
    out = tmp_path / "partial"
    result = train(
        TrainOptions(
            out,
            base=str(chance_base),
            mode="partial",
            epochs=1,
            batch_size=16,
            device="cpu",
            precision="fp32",
        ),
        library,
    )
    assert result.rescored == 0  # the backbone changed: stored embeddings do not apply
    assert "scan again with the new model" in result.summary
    record = json.loads((out / "training.json").read_text())
    assert record["mode"] == "partial" and record["epochs_run"] == 1
    assert record["imbalance"]["method"].startswith("weighted loss")
    assert set(result.report) >= {"before", "after", "threshold"}
    assert not resumable(out)  # the checkpoint is removed after a finished run
    assert load_model(out, device="cpu").labels == ["NSFW", "SFW"]


def test_a_head_on_a_head_only_model_reads_the_shared_embeddings_without_decoding(
    tmp_path, reviewed, chance_base, chance_model, monkeypatch
):
    """The first head's rows hold no embedding copy (it shares the base's); a second head
    trained with the first as --base still finds every embedding, and decodes nothing."""
    from nsfw_desk.core.similar import EmbeddingIndex
    from nsfw_desk.core.training import embeddings

    library, _ = reviewed
    first = train(TrainOptions(tmp_path / "first", base=str(chance_base), device="cpu"), library)
    rows = library.db.execute(
        "SELECT hash, embedding FROM scores WHERE model_id = ?", (first.model_id,)
    ).fetchall()
    assert len(rows) == 60 and {blob for _, blob in rows} == {None}
    digest = rows[0][0]
    np.testing.assert_array_equal(
        library.embedding(digest, first.model_id), library.embedding(digest, chance_model.model_id)
    )
    index = EmbeddingIndex.from_library(library, first.model_id)
    assert len(index.hashes) == 60
    assert index.nearest(index.vector(digest), top=1)[0].content_hash == digest

    decodes = _count_decodes(monkeypatch, embeddings)
    second = train(
        TrainOptions(tmp_path / "second", base=str(tmp_path / "first"), device="cpu"), library
    )
    assert decodes == []
    record = json.loads((tmp_path / "second" / "training.json").read_text())
    assert record["base_model_id"] == first.model_id
    assert second.rescored == 60
    assert library.embedding_sources(second.model_id) == [
        second.model_id,
        first.model_id,
        chance_model.model_id,
    ]
    assert len(library.embedding_blobs(second.model_id)) == 60
