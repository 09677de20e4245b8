"""The Stable Diffusion Safety Checker backend against diffusers' rule written out again."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from checker_support import reference_cosines, reference_rule, save_tiny_checker  # noqa: E402

from nsfw_desk.core.backends.safety_checker import (  # noqa: E402
    SCORE_SHIFT,
    load_safety_checker,
    score_from_margin,
)
from nsfw_desk.core.hub import ModelError, ModelSpec  # noqa: E402
from nsfw_desk.synthetic import synthetic_photo, write_photo  # noqa: E402

COUNT = 12


def _images():
    return [synthetic_photo((80 + 9 * i, 64 + 5 * i), seed=100 + i) for i in range(COUNT)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return save_tiny_checker(tmp_path_factory.mktemp("checker") / "sd-checker", _images())


@pytest.fixture(scope="module")
def checker_dir(built):
    return built[0]


@pytest.fixture(scope="module")
def checker(checker_dir):
    return load_safety_checker(
        checker_dir, "test/sd-checker", ModelSpec(str(checker_dir), is_local=True), device="cpu"
    )


def test_scores_and_flags_follow_the_rule(checker, checker_dir, built):
    import torch

    flip = built[1]
    images = _images()
    special, concept, state = reference_cosines(checker_dir, images)
    reference = reference_rule(special, concept, state)
    flags = np.array([bool(r["bad"]) for r in reference])
    best = np.array([max(r["concept_scores"].values()) for r in reference])

    prediction = checker.predict(torch.stack([checker.preprocess(im)[0] for im in images]))
    scores = prediction.unsafe_scores
    # The flag agrees with the rule on every image, and the score says it at 0.5.
    assert ((scores >= 0.5) == flags).all()
    assert np.abs(scores - score_from_margin(best)).max() <= 0.01
    assert prediction.probabilities.shape == (COUNT, 2)
    assert np.allclose(prediction.probabilities.sum(axis=1), 1.0)
    assert prediction.embeddings.shape == (COUNT, 16)
    # The construction is not vacuous: some flagged, some not, special care fired on some,
    # and on image `flip` the 0.01 adjustment decided the flag.
    assert 0 < flags.sum() < COUNT
    assert any(r["special_care"] for r in reference) and not all(
        r["special_care"] for r in reference
    )
    unadjusted = [
        any(round(c - state["concept_embeds_weights"][j].item(), 3) > 0 for j, c in enumerate(row))
        for row in concept
    ]
    assert flags[flip] and not unadjusted[flip]
    # Details: the margins, what fired, the adjustment, per image, as the rule has them.
    for details, ref in zip(prediction.details, reference, strict=True):
        assert details["adjustment"] == ref["adjustment"]
        assert details["fired"] == ref["bad"]
        assert details["special_fired"] == ref["special_care"]
        assert len(details["concepts"]) == 17 and len(details["special"]) == 3
        expected = list(ref["concept_scores"].values())
        assert np.abs(np.array(details["concepts"]) - expected).max() < 2e-3


def test_score_map_at_the_boundary():
    # Margins are rounded to 0.001: 0 is not flagged, 0.001 is; -0.0 too is below.
    assert score_from_margin(0.0) < 0.5 < score_from_margin(0.001)
    assert score_from_margin(-0.0) < 0.5
    assert score_from_margin(np.float32(0.001)) >= 0.5
    assert score_from_margin(SCORE_SHIFT) == pytest.approx(0.5)
    margins = np.linspace(-0.3, 0.3, 61)
    assert (np.diff(score_from_margin(margins)) > 0).all()


def test_scan_stores_scores_and_details(checker, tmp_path, library):
    from nsfw_desk.core.images import content_hash
    from nsfw_desk.core.scan import scan_folder

    root = tmp_path / "photos"
    for i in range(4):
        write_photo(root / f"p{i}.png", (90, 70), seed=200 + i, fmt="PNG")
    summary = scan_folder(root, checker, library)
    assert summary.scored == 4
    digest = content_hash((root / "p0.png").read_bytes())
    details = library.score_details(digest, checker.model_id)
    assert details is not None and len(details["concepts"]) == 17
    assert set(details) >= {"concepts", "special", "adjustment", "fired", "special_fired"}
    score = library.scores_for(checker.model_id, [digest])[digest]
    assert (score >= 0.5) == bool(details["fired"])
    assert library.score_details(digest, "another-model") is None


def test_pickle_only_folder_is_refused(tmp_path, checker_dir):
    folder = tmp_path / "only-bin"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((checker_dir / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle that would run code")
    with pytest.raises(ModelError, match="pytorch_model.bin.*pickle"):
        load_safety_checker(folder, "x", ModelSpec(str(folder), is_local=True), device="cpu")


def test_wrong_shapes_are_named(tmp_path, checker_dir):
    import safetensors.torch

    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((checker_dir / name).read_bytes())
    state = safetensors.torch.load_file(str(checker_dir / "model.safetensors"))
    state["concept_embeds"] = state["concept_embeds"][:5].contiguous()
    safetensors.torch.save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="concept_embeds has shape"):
        load_safety_checker(folder, "x", ModelSpec(str(folder), is_local=True), device="cpu")


def test_load_detector_finds_the_checker_by_its_config(checker_dir, photo_folder, tmp_path):
    """The path users take (`scan --model FOLDER`, the desk's detectors): the checker's folder
    is told apart from timm and transformers classifiers and loads as the checker, whose
    flags and per-concept details a scan stores."""
    from nsfw_desk.core.backends import detect_backend, load_detector
    from nsfw_desk.core.backends.safety_checker import SafetyChecker
    from nsfw_desk.core.scan import scan_folder
    from nsfw_desk.core.store import Library

    assert detect_backend(checker_dir) == "safety-checker"
    detector = load_detector(checker_dir, device="cpu")
    assert isinstance(detector, SafetyChecker)
    library = Library(tmp_path / "l.sqlite")
    summary = scan_folder(photo_folder, detector, library, keep_outcomes=True)
    scored = [o for o in summary.outcomes if o.score is not None]
    assert scored
    details = library.score_details(scored[0].hash, detector.model_id)
    assert details is not None and len(details["concepts"]) == 17
