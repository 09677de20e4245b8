"""`nsfw-desk compare`: two models on the reviewed items neither was trained on."""

from __future__ import annotations

import json

import test_training as shared

from nsfw_desk.cli import main
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.core.training import TrainOptions, train
from nsfw_desk.synthetic import write_family_photos

# fixtures and helpers shared with test_training
_review = shared._review
chance_base = shared.chance_base
chance_model = shared.chance_model
reviewed = shared.reviewed


def test_compare_uses_untrained_items_and_scores_a_head_from_embeddings(
    tmp_path,
    reviewed,
    chance_base,
    chance_model,
    model_dir,
    capsys,
):
    library, _ = reviewed
    out = tmp_path / "mine"
    train(TrainOptions(out, base=str(chance_base), device="cpu"), library)
    # Ten more reviewed items, scanned by the base only: the new model has no score yet.
    later = write_family_photos(tmp_path / "later", 5, seed=5)
    summary = scan_folder(tmp_path / "later", chance_model, library, keep_outcomes=True)
    _review(library, summary.outcomes, later)
    library.close()
    db = str(tmp_path / "library.sqlite")

    code = main(["compare", str(chance_base), str(out), "--db", db, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["reviewed"] == 70
    assert result["trained_on_excluded"] == 48  # the new model's train_hashes
    assert result["compared"] == 22  # 12 held out + 10 later
    assert result["scored_from_embeddings"] == {"a": 0, "b": 10}
    assert result["lacking_scores"] == {"a": 0, "b": 0}
    assert result["a"]["accuracy"] == 0.5 and result["b"]["accuracy"] >= 0.9
    # the chance base flags everything (0.5 >= 0.5); the new one only the unsafe half
    assert (
        result["changed_decisions"]
        == result["a"]["confusion"]["fp"]
        - result["b"]["confusion"]["fp"]
        + result["a"]["confusion"]["tp"]
        - result["b"]["confusion"]["tp"]
    )
    assert result["no_longer_flagged"] == result["changed_decisions"]

    code = main(["compare", str(chance_base), str(out), "--db", db])
    text = capsys.readouterr().out
    assert code == 0 and "Changed decisions at 0.5" in text and "ROC AUC" in text


def test_compare_says_how_to_score_what_lacks_a_score(
    tmp_path,
    reviewed,
    chance_base,
    model_dir,
    capsys,
):
    library, _ = reviewed
    library.close()
    code = main(
        ["compare", str(chance_base), str(model_dir), "--db", str(tmp_path / "library.sqlite")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "None of the 60 reviewed items has a score from both models" in err
    assert f"60 lack a score from {model_dir}: scan their folders with" in err
    assert f"nsfw-desk scan --model {model_dir} FOLDER" in err


def test_compare_without_a_library_or_with_a_missing_model(tmp_path, model_dir, capsys):
    assert main(["compare", str(model_dir), str(model_dir), "--db", str(tmp_path / "no")]) == 2
    assert "no library at" in capsys.readouterr().err
    Library(tmp_path / "lib.sqlite").close()
    code = main(
        ["compare", str(model_dir), str(tmp_path / "gone"), "--db", str(tmp_path / "lib.sqlite")]
    )
    assert code == 3
    assert "does not exist" in capsys.readouterr().err
