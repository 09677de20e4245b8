"""Several detectors per scan (issue 13): the detector interface, the Hugging Face
transformers backend, one decode per file for all detectors, scores per model, refusals.

Tests that need `transformers` (the optional extra) skip without it; the others run on the
timm models alone.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import test_models as shared

from nsfw_desk.core import scan as scan_module
from nsfw_desk.core.backends import detect_backend, load_detector
from nsfw_desk.core.detector import Detector, infer_kind, positive_indices_for
from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import save_random_model, synthetic_photo, write_photo

# the hub cache fixture and its pinned commit, shared with test_models
fake_hub_repo = shared.fake_hub_repo
COMMIT = shared.COMMIT


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory) -> Path:
    """A tiny random-weight transformers ViTForImageClassification (labels real, fake) in
    the real layout: config.json, model.safetensors, preprocessor_config.json."""
    pytest.importorskip("transformers")
    from nsfw_desk.synthetic import save_random_transformers_model

    return save_random_transformers_model(tmp_path_factory.mktemp("hf") / "deepfake")


@pytest.fixture(scope="session")
def hf_model(hf_dir):
    return load_detector(hf_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def second_timm(tmp_path_factory):
    folder = save_random_model(
        tmp_path_factory.mktemp("second") / "sfw-nsfw", labels=("SFW", "NSFW"), seed=5
    )
    return load_detector(folder, device="cpu")


@pytest.fixture
def decodes(monkeypatch):
    """Counts the scan's decode calls (one per decoded file)."""
    calls: list[int] = []
    real = scan_module.decode

    def counting(data, **kwargs):
        calls.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(scan_module, "decode", counting)
    return calls


def _count_predicts(monkeypatch, detector) -> list[int]:
    sizes: list[int] = []
    real = detector.predict
    monkeypatch.setattr(detector, "predict", lambda x: sizes.append(len(x)) or real(x))
    return sizes


# --- the interface -------------------------------------------------------------------------


def test_positive_classes_follow_the_kind():
    assert infer_kind(["real", "fake"]) == "ai-generated"
    assert infer_kind(["NSFW", "SFW"]) == "nsfw"
    assert positive_indices_for(["Real", "Fake"], "ai-generated", None) == [1]
    assert positive_indices_for(["human", "AI"], "ai-generated", None) == [1]
    assert positive_indices_for(["real", "synthetic"], "ai-generated", "real") == [0]
    with pytest.raises(ModelError, match="--unsafe-label"):
        positive_indices_for(["cat", "dog"], "ai-generated", None)
    with pytest.raises(ModelError, match="means unsafe"):
        positive_indices_for(["real", "fake"], "nsfw", None)


def test_the_timm_model_is_a_detector(loaded_model, model_dir):
    assert isinstance(loaded_model, Detector)
    assert loaded_model.kind == "nsfw" and loaded_model.unsafe_labels == ["NSFW"]
    assert detect_backend(model_dir) == "timm"
    again = load_detector(model_dir, device="cpu")
    assert type(again) is type(loaded_model) and again.model_id == loaded_model.model_id


def test_backends_are_told_apart_by_config(tmp_path):
    def folder(name: str, config) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps(config))
        return path

    checker = {"architectures": ["StableDiffusionSafetyChecker"], "model_type": "clip"}
    assert detect_backend(folder("checker", checker)) == "safety-checker"
    hf = {"architectures": ["ViTForImageClassification"], "model_type": "vit"}
    assert detect_backend(folder("hf", hf)) == "transformers"
    assert detect_backend(folder("timm", {"architecture": "vit_tiny_patch16_384"})) == "timm"
    with pytest.raises(ModelError, match="names no architecture"):
        detect_backend(folder("neither", {"hidden_size": 3}))
    with pytest.raises(ModelError, match="not valid JSON"):
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "config.json").write_text("{")
        detect_backend(tmp_path / "broken")


# --- the transformers backend -------------------------------------------------------------


def test_transformers_scores_agree_with_its_pipeline(hf_dir, hf_model):
    import torch
    from transformers import pipeline

    assert isinstance(hf_model, Detector)
    assert hf_model.kind == "ai-generated" and hf_model.unsafe_labels == ["fake"]
    assert hf_model.labels == ["real", "fake"] and hf_model.input_size == 64
    reference = pipeline("image-classification", model=str(hf_dir), device="cpu")
    images = [
        synthetic_photo(size, seed=i)
        for i, size in enumerate([(64, 64), (200, 150), (90, 300), (500, 40), (33, 77)])
    ]
    ours = hf_model.predict(torch.stack([hf_model.preprocess(im)[0] for im in images]))
    theirs = []
    for im in images:
        ranked = {r["label"]: r["score"] for r in reference(im, top_k=2)}
        theirs.append(ranked["fake"])
    delta = np.abs(ours.unsafe_scores - np.array(theirs))
    assert delta.max() <= 0.01, delta
    assert np.ptp(ours.unsafe_scores) > 0.01  # the head reads the images: not a constant

    # The embedding is what the classifier sees: the CLS token after the final layer norm.
    batch = torch.stack([hf_model.preprocess(im)[0] for im in images])
    with torch.inference_mode():
        cls = hf_model.module.vit(pixel_values=batch).last_hidden_state[:, 0]
    np.testing.assert_allclose(ours.embeddings, cls.numpy(), atol=1e-5)
    assert ours.embeddings.shape == (len(images), 32)


def test_a_folder_scored_by_transformers_matches_its_pipeline(tmp_path, hf_dir, hf_model, library):
    from PIL import Image
    from transformers import pipeline

    root = tmp_path / "pngs"
    for i in range(4):
        write_photo(root / f"{i}.png", (120 + 30 * i, 90), seed=i)
    summary = scan_folder(root, hf_model, library, keep_outcomes=True)
    assert summary.scored == 4 and summary.errors == 0
    reference = pipeline("image-classification", model=str(hf_dir), device="cpu")
    for outcome in summary.outcomes:
        with Image.open(outcome.path) as im:
            ranked = {r["label"]: r["score"] for r in reference(im.convert("RGB"), top_k=2)}
        assert outcome.score == pytest.approx(ranked["fake"], abs=0.01)
        assert outcome.scores == {hf_model.model_id: outcome.score}


# --- several detectors in one scan --------------------------------------------------------


def test_three_detectors_decode_each_file_once(
    photo_folder, loaded_model, hf_model, second_timm, library, decodes, monkeypatch
):
    detectors = [loaded_model, hf_model, second_timm]
    ids = [d.model_id for d in detectors]
    assert len(set(ids)) == 3
    summary = scan_folder(photo_folder, detectors, library, keep_outcomes=True)
    assert summary.scored == 12 and summary.errors == 0
    assert summary.model_ids == ids and summary.model_id == ids[0]
    assert len(decodes) == 12  # one decode per file for all three detectors
    for outcome in summary.outcomes:
        stored = library.scores_by_model(outcome.hash)
        assert set(stored) == set(ids)  # three scores per image
        assert outcome.scores == pytest.approx(stored)
        assert outcome.score == stored[ids[0]]  # the primary's
        for mid in ids:
            assert library.embedding(outcome.hash, mid) is not None

    # Each detector alone gives the same scores (the shared decode only changes a JPEG's
    # draft scale, which the preprocessing's own resize absorbs).
    from nsfw_desk.core.store import Library

    for detector in detectors:
        with Library(library.path.parent / f"alone-{detector.architecture}.sqlite") as alone:
            single = scan_folder(photo_folder, detector, alone, keep_outcomes=True)
        for outcome in single.outcomes:
            together = library.scores_by_model(outcome.hash)[detector.model_id]
            assert outcome.score == pytest.approx(together, abs=0.02)

    # A rescan answers from the library: no decode, no forward pass.
    counts = [_count_predicts(monkeypatch, d) for d in detectors]
    decodes.clear()
    again = scan_folder(photo_folder, detectors, library)
    assert again.cached == 12 and again.scored == 0
    assert decodes == [] and counts == [[], [], []]


def test_caching_is_per_detector(
    photo_folder, loaded_model, second_timm, library, decodes, monkeypatch
):
    scan_folder(photo_folder, loaded_model, library)
    assert len(decodes) == 12
    decodes.clear()
    first = _count_predicts(monkeypatch, loaded_model)
    second = _count_predicts(monkeypatch, second_timm)
    summary = scan_folder(photo_folder, [loaded_model, second_timm], library, keep_outcomes=True)
    assert summary.scored == 12 and summary.cached == 0
    assert first == [] and sum(second) == 12  # only the detector without scores runs
    assert len(decodes) == 12  # it needs the pixels: decoded once each
    assert all(
        set(o.scores or {}) == {loaded_model.model_id, second_timm.model_id}
        for o in summary.outcomes
    )

    # A copy of known content needs no decode and no forward pass.
    decodes.clear()
    some = sorted(photo_folder.rglob("*.jpg"))[0]
    shutil.copy2(some, photo_folder / "copy.jpg")
    summary = scan_folder(photo_folder, [loaded_model, second_timm], library, keep_outcomes=True)
    copy = next(o for o in summary.outcomes if o.path.name == "copy.jpg")
    assert decodes == [] and first == [] and sum(second) == 12
    assert set(copy.scores or {}) == {loaded_model.model_id, second_timm.model_id}


def test_switching_the_primary_needs_no_rescan(
    photo_folder, loaded_model, second_timm, library, decodes, monkeypatch
):
    a, b = loaded_model, second_timm
    scan_folder(photo_folder, [a, b], library)
    stored_b = {o.path: o.score for o in library.results(photo_folder, b.model_id)}
    assert len(stored_b) == 12 and None not in stored_b.values()
    decodes.clear()

    # With no model loaded at all, the desk lists the folder with B's stored scores.
    listing = scan_folder(photo_folder, None, library, keep_outcomes=True, stored_model=b.model_id)
    assert listing.listed == 0 and listing.cached == 12 and decodes == []
    assert {o.path: o.score for o in listing.outcomes} == stored_b

    # B as the primary: everything is answered from the library, B's score is `score`.
    runs = [_count_predicts(monkeypatch, a), _count_predicts(monkeypatch, b)]
    swapped = scan_folder(photo_folder, [b, a], library, keep_outcomes=True)
    assert swapped.cached == 12 and swapped.scored == 0 and runs == [[], []] and decodes == []
    assert {o.path: o.score for o in swapped.outcomes} == stored_b
    assert all(o.scores and set(o.scores) == {a.model_id, b.model_id} for o in swapped.outcomes)


def test_detectors_that_agree_share_preprocessing(loaded_model, second_timm, monkeypatch):
    assert loaded_model.preprocess_key == second_timm.preprocess_key
    calls = []
    monkeypatch.setattr(second_timm, "preprocess", lambda pixels: calls.append(1) or (None, pixels))
    image = synthetic_photo((300, 200), seed=3)
    tensors, view = scan_module._preprocess_all([loaded_model, second_timm], [0, 1], image)
    assert calls == [] and tensors[0] is tensors[1]
    assert view.size != image.size  # the resized picture, for a smaller thumbnail


def test_the_shared_resize_gives_the_same_tensor(loaded_model, monkeypatch):
    """Two timm models with the same resize but another normalisation: one resize, and each
    model's tensor equals its own preprocessing."""
    import copy

    other = copy.copy(loaded_model)
    other.data_config = {**loaded_model.data_config, "mean": (0.1, 0.2, 0.3)}
    other._transform = None
    assert other.resize_key == loaded_model.resize_key
    assert other.preprocess_key != loaded_model.preprocess_key
    image = synthetic_photo((301, 207), seed=4)
    tensors, _ = scan_module._preprocess_all([loaded_model, other], [0, 1], image)
    assert np.allclose(tensors[0].numpy(), loaded_model.preprocess(image)[0].numpy())
    assert np.allclose(tensors[1].numpy(), other.preprocess(image)[0].numpy())
    assert not np.allclose(tensors[0].numpy(), tensors[1].numpy())


# --- refusals -----------------------------------------------------------------------------


def test_a_repo_with_only_pickle_weights_is_refused(tmp_path, hf_dir, monkeypatch):
    import torch

    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(hf_dir / name, folder / name)
    torch.save({"classifier.weight": torch.zeros(2, 2)}, folder / "pytorch_model.bin")

    def never(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(ModelError, match="Refusing to load pytorch_model.bin: it is a pickle"):
        load_detector(folder, device="cpu")


def _edited_copy(hf_dir: Path, target: Path, **changes) -> Path:
    shutil.copytree(hf_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_a_config_that_names_custom_code_is_refused(tmp_path, hf_dir):
    folder = _edited_copy(
        hf_dir,
        tmp_path / "custom",
        auto_map={"AutoModelForImageClassification": "modeling_evil.EvilModel"},
    )
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ModelError, match=r"custom code .*never runs a model repository's own"):
        load_detector(folder, device="cpu")
    assert not marker.exists()


def test_an_architecture_transformers_does_not_ship_is_refused(tmp_path, hf_dir):
    folder = _edited_copy(
        hf_dir,
        tmp_path / "unknown",
        architectures=["GlimmerForImageClassification"],
        model_type="glimmer",
    )
    with pytest.raises(ModelError, match=r"'GlimmerForImageClassification'.* unknown to"):
        load_detector(folder, device="cpu")
    folder = _edited_copy(hf_dir, tmp_path / "not-a-classifier", architectures=["ViTModel"])
    with pytest.raises(ModelError, match="not an image classifier"):
        load_detector(folder, device="cpu")


def test_a_transformers_model_without_its_processor_is_refused(tmp_path, hf_dir):
    folder = tmp_path / "no-processor"
    shutil.copytree(hf_dir, folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ModelError, match="has no preprocessor_config.json"):
        load_detector(folder, device="cpu")


def test_a_timm_only_precision_is_refused_for_a_transformers_model(hf_dir):
    with pytest.raises(ModelError, match="is a transformers model"):
        load_detector(hf_dir, precision="int8")


def test_transformers_missing_says_what_to_install(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "hf-config-only"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["ViTForImageClassification"], "model_type": "vit"})
    )
    (folder / "model.safetensors").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ModelError, match=r"pip install 'nsfw-desk\[transformers\]'"):
        load_detector(folder, device="cpu")

    from nsfw_desk.cli import EXIT_MODEL, main

    photos = tmp_path / "photos"
    write_photo(photos / "a.jpg")
    status = main(["scan", str(photos), "--model", str(folder), "--db", str(tmp_path / "l.db")])
    assert status == EXIT_MODEL
    assert "pip install 'nsfw-desk[transformers]'" in capsys.readouterr().err


def test_training_from_a_transformers_model_is_refused(hf_dir):
    from nsfw_desk.core.training.common import TrainingError
    from nsfw_desk.core.training.train import _check_timm_base

    with pytest.raises(TrainingError, match="training starts from a timm model only"):
        _check_timm_base(str(hf_dir))


# --- command line and export --------------------------------------------------------------


def test_scan_command_with_two_detectors(tmp_path, photo_folder, model_dir, hf_dir, capsys):
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, main

    out, db = tmp_path / "out.jsonl", tmp_path / "lib.sqlite"
    args = ["scan", str(photo_folder), "--model", str(model_dir), "--model", str(hf_dir)]
    three = ["--threshold", "0.5", "--threshold", "0.4", "--threshold", "0.3"]
    assert main([*args, *three, "--db", str(db)]) == EXIT_USAGE
    assert "3 --threshold for 2 --model" in capsys.readouterr().err
    status = main(
        [*args, "--threshold", "0.45", "--threshold", "0.55", "--jsonl", str(out), "--db", str(db)]
    )
    assert status == EXIT_OK
    err = capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 12
    primary, deepfake = records[0]["model"], None
    for r in records:
        assert len(r["scores"]) == 2 and r["model"] == primary
        deepfake = next(m for m in r["scores"] if m != primary)
        assert r["score"] == r["scores"][primary] and r["flagged"] == (r["score"] >= 0.45)
        assert r["flags"] == {primary: r["score"] >= 0.45, deepfake: r["scores"][deepfake] >= 0.55}
    flagged = sum(r["flags"][deepfake] for r in records)
    assert f"(ai-generated): {flagged} flagged at 0.55" in err


def test_export_carries_every_detectors_score(
    tmp_path, photo_folder, loaded_model, second_timm, library
):
    from nsfw_desk.core.export import ExportOptions, export_dataset
    from nsfw_desk.core.review import DecisionInput, ReviewStore

    summary = scan_folder(photo_folder, [loaded_model, second_timm], library, keep_outcomes=True)
    items = [
        DecisionInput(o.hash, loaded_model.model_id, o.score, o.path) for o in summary.outcomes
    ]
    ReviewStore(library).decide(items[:6], "unsafe", reviewer="r", threshold=0.5)
    ReviewStore(library).decide(items[6:], "safe", reviewer="r", threshold=0.5)
    export_dataset(library, ExportOptions(out=tmp_path / "export"))
    rows = [
        json.loads(line)
        for line in (tmp_path / "export" / "metadata.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 12
    for row in rows:
        stored = library.scores_by_model(row["hash"])
        assert row["scores"] == pytest.approx(stored) and len(stored) == 2
        assert row["score"] == row["scores"][loaded_model.model_id]


def test_the_detectors_benchmark_runs_at_a_tiny_size(tmp_path, capsys):
    pytest.importorskip("transformers")
    from nsfw_desk import bench_detectors

    figures = bench_detectors.measure_detectors(tmp_path, files=4, tiny=True, repeats=2)
    assert figures["files"] == 4 and figures["decodes_together"] == 4
    assert figures["decodes_separate"] == 8
    assert figures["max_abs_dp_together_vs_alone"] <= 0.02
    assert figures["together_s"] > 0 and figures["separate_s"] > 0
    # the ratios are each round's, their medians reported; the bound is its parts' sum
    assert figures["repeats"] == len(figures["rounds"]) == 2
    for r in figures["rounds"]:
        bound = r["forward_0_s"] + r["forward_1_s"] + r["decode_s"]
        assert r["forwards_plus_one_decode_s"] == pytest.approx(bound)
        assert r["ratio_to_bound"] == pytest.approx(r["together_s"] / bound)
        assert r["ratio"] == pytest.approx(r["together_s"] / r["separate_s"])
    assert figures["cpu"] and figures["cores"] >= 1
    bench_detectors.print_detectors(figures)
    printed = capsys.readouterr().out
    assert f"one scan / two scans     : {figures['ratio']:.2f}×" in printed
    assert f"one scan / (forwards + one decode): {figures['ratio_to_bound']:.2f}×" in printed
    assert figures["cpu"] in printed


def test_the_detectors_benchmark_runs_as_a_module(capsys):
    """`python -m nsfw_desk.bench_detectors`, at the smoke-test size."""
    pytest.importorskip("transformers")
    from nsfw_desk import bench_detectors

    assert bench_detectors.main(["--tiny", "--files", "2", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "2 JPEGs 320x240" in printed and "one scan / (forwards + one decode)" in printed


def test_the_readme_multi_detector_example_runs(tmp_path, photo_folder, model_dir, hf_dir):
    """README "Several detectors in one scan", with the two hub ids replaced by local
    random-weight models of the same libraries (no download in tests)."""
    import re
    import shlex

    from nsfw_desk.cli import main

    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = readme.split("### Several detectors in one scan", 1)[1].split("\n## ", 1)[0]
    lines = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1).splitlines()
    assert lines[0] == "pip install 'nsfw-desk[transformers]'"
    command = (
        lines[1]
        .replace("Marqo/nsfw-image-detection-384", str(model_dir))
        .replace("buildborderless/CommunityForensics-DeepfakeDet-ViT", str(hf_dir))
        .replace("~/Pictures/inbox", str(photo_folder))
        .replace("scores.jsonl", str(tmp_path / "scores.jsonl"))
    )
    argv = shlex.split(command)[1:] + ["--db", str(tmp_path / "lib.sqlite"), "--device", "cpu"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(len(r["scores"]) == 2 for r in records)


def test_a_transformers_repo_in_the_hub_cache_loads_offline(hf_dir, hf_model, fake_hub_repo):
    """core/hub.py fetches preprocessor_config.json beside config.json and the weights for
    a transformers model (here from the HF cache's on-disk layout, offline)."""
    import torch

    files = {n: hf_dir / n for n in ("config.json", "model.safetensors")}
    processor = {"preprocessor_config.json": hf_dir / "preprocessor_config.json"}
    fake_hub_repo("nsfw-desk-tests/deepfake", {**files, **processor})
    spec = f"nsfw-desk-tests/deepfake@{COMMIT}"
    model = load_detector(spec, device="cpu", precision="fp32", offline=True)
    assert model.model_id == spec and model.kind == "ai-generated"
    batch = torch.stack([model.preprocess(synthetic_photo((120, 90), seed=9))[0]])
    assert model.predict(batch).unsafe_scores == pytest.approx(
        hf_model.predict(batch).unsafe_scores, abs=1e-6
    )
    # Cached without its processor: not usable offline, and it says so.
    fake_hub_repo("nsfw-desk-tests/no-processor", files)
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_detector(f"nsfw-desk-tests/no-processor@{COMMIT}", device="cpu", offline=True)
