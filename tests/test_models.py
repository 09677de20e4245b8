"""Both sides of a model, core/hub.py and core/runtime.py: spec parsing, safetensors-only
loading, unsafe-class mapping, hub cache (offline only; nothing here downloads), progress,
device and precision choice, and score parity with the model card's reference loop."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nsfw_desk.core import hub, runtime
from nsfw_desk.core.hub import (
    DEFAULT_MODEL,
    DEFAULT_REVISION,
    ModelError,
    ModelSpec,
    _progress_tqdm,
)
from nsfw_desk.core.progress import Progress
from nsfw_desk.core.runtime import (
    LoadedModel,
    available_cores,
    choose_device,
    choose_precision,
    load_model,
    unsafe_indices_for,
)
from nsfw_desk.synthetic import save_random_model, synthetic_photo

FIVE_LABELS = ("drawing", "hentai", "neutral", "porn", "sexy")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
MAIN_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


# --------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _relabel(src: Path, dst: Path, labels) -> Path:
    """A copy of the model folder `src` whose config names other labels (same weights)."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["label_names"] = list(labels)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _batch(model: LoadedModel, count: int, size=(200, 150), first_seed: int = 0) -> torch.Tensor:
    photos = [synthetic_photo(size, seed=first_seed + i) for i in range(count)]
    return torch.stack([model.preprocess(photo)[0] for photo in photos])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cpu_model(model_dir) -> LoadedModel:
    """conftest's NSFW/SFW test_vit, loaded on the CPU in fp32 whatever the machine has."""
    return load_model(model_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def batch(cpu_model) -> torch.Tensor:
    return _batch(cpu_model, 12)


@pytest.fixture(scope="module")
def five_class_dir(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("five") / "five", labels=FIVE_LABELS, seed=1)


@pytest.fixture(scope="module")
def relabelled(model_dir, tmp_path_factory):
    """Copies of the NSFW/SFW model under other label names, one folder per label tuple."""
    root = tmp_path_factory.mktemp("relabelled")
    made: dict[tuple[str, ...], Path] = {}

    def get(labels: tuple[str, ...]) -> Path:
        if labels not in made:
            made[labels] = _relabel(model_dir, root / f"m{len(made)}", labels)
        return made[labels]

    return get


@pytest.fixture(scope="module")
def vit_tiny_dir(tmp_path_factory) -> Path:
    """The architecture of the default model (ViT-Tiny/16 at 384 px), random weights."""
    return save_random_model(
        tmp_path_factory.mktemp("vit_tiny") / "vit_tiny", architecture="vit_tiny_patch16_384"
    )


@pytest.fixture(scope="module")
def vit_tiny(vit_tiny_dir) -> LoadedModel:
    return load_model(vit_tiny_dir, device="cpu", precision="fp32")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any attempt to unpickle fails the test, whichever entry point is used."""

    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle a checkpoint")

    class ForbiddenUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)


class _CreatesFile:
    """Pickled, this object's unpickling opens (creates) `path` for writing."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _malicious_pickle(path: Path, sentinel: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": _CreatesFile(sentinel)}))
    return path


# --------------------------------------------------------------------------- ModelSpec


@pytest.mark.parametrize("text", [None, "", DEFAULT_MODEL])
def test_parse_default_is_the_pinned_hub_model(text):
    spec = ModelSpec.parse(text)
    assert spec == ModelSpec(DEFAULT_MODEL, DEFAULT_REVISION, is_local=False)
    assert spec.source == "Marqo/nsfw-image-detection-384"
    assert spec.revision == "0c26ec22111b83f106d72a55f611ec35962bcb65"
    assert str(spec) == f"{DEFAULT_MODEL}@{DEFAULT_REVISION}"


def test_parse_hub_id_with_and_without_revision():
    spec = ModelSpec.parse("org/name@abc")
    assert (spec.source, spec.revision, spec.is_local) == ("org/name", "abc", False)
    assert str(spec) == "org/name@abc"
    plain = ModelSpec.parse("org/name")
    assert (plain.source, plain.revision, plain.is_local) == ("org/name", None, False)
    assert str(plain) == "org/name"


def test_parse_existing_folder_is_local_even_if_it_looks_like_a_hub_id(tmp_path, monkeypatch):
    folder = tmp_path / "some model"
    folder.mkdir()
    spec = ModelSpec.parse(folder)
    assert spec.is_local and Path(spec.source) == folder and spec.revision is None
    # A folder in the working directory wins over the hub id it resembles.
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec.parse("org/name")
    assert spec.is_local and Path(spec.source) == Path("org/name")


@pytest.mark.parametrize("text", ["./missing", "../missing/model", "/nowhere/at/all"])
def test_parse_paths_that_do_not_exist_are_local(text):
    spec = ModelSpec.parse(text)
    assert spec.is_local and spec.revision is None
    with pytest.raises(ModelError, match="does not exist"):
        load_model(text, device="cpu")


# --------------------------------------------------------------------------- local folders


def test_load_local_folder(model_dir, cpu_model):
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert cpu_model.model_id == "sha256:" + _sha256(model_dir / "model.safetensors")
    assert cpu_model.spec.is_local
    assert cpu_model.architecture == "test_vit"
    assert cpu_model.labels == ["NSFW", "SFW"]
    assert cpu_model.unsafe_indices == [0]
    assert cpu_model.unsafe_labels == ["NSFW"]
    assert cpu_model.device == torch.device("cpu")
    assert cpu_model.precision == "fp32"
    assert not cpu_model.module.training


def test_model_id_follows_the_weights_not_the_folder(cpu_model, relabelled, five_class_dir):
    # Same bytes in another folder: same id. Different bytes: different id.
    assert load_model(relabelled(("NSFW", "SFW")), device="cpu").model_id == cpu_model.model_id
    other_id = load_model(five_class_dir, device="cpu").model_id
    assert other_id == "sha256:" + _sha256(five_class_dir / "model.safetensors")
    assert other_id != cpu_model.model_id


def test_path_to_the_safetensors_file_loads_its_folder(model_dir, cpu_model):
    model = load_model(model_dir / "model.safetensors", device="cpu")
    assert model.model_id == cpu_model.model_id
    assert model.labels == cpu_model.labels


def test_labels_come_from_the_config(relabelled):
    model = load_model(relabelled(("Unsafe", "Fine")), device="cpu")
    assert model.labels == ["Unsafe", "Fine"]
    assert model.unsafe_indices == [0]


def test_label_count_must_match_the_classes(relabelled):
    with pytest.raises(ModelError, match="3 labels for 2 classes"):
        load_model(relabelled(("NSFW", "SFW", "other")), device="cpu")


# --------------------------------------------------------------------------- unsafe classes


@pytest.mark.parametrize(("labels", "expected"), [(("NSFW", "SFW"), [0]), (("SFW", "NSFW"), [1])])
def test_unsafe_class_is_read_from_the_labels(relabelled, batch, labels, expected):
    model = load_model(relabelled(labels), device="cpu", precision="fp32")
    assert model.unsafe_indices == expected
    assert model.unsafe_labels == ["NSFW"]
    pred = model.predict(batch)
    np.testing.assert_allclose(pred.unsafe_scores, pred.probabilities[:, expected[0]], atol=1e-6)


def test_swapping_labels_swaps_the_scores(relabelled, batch):
    a = load_model(relabelled(("NSFW", "SFW")), device="cpu", precision="fp32").predict(batch)
    b = load_model(relabelled(("SFW", "NSFW")), device="cpu", precision="fp32").predict(batch)
    np.testing.assert_allclose(a.unsafe_scores + b.unsafe_scores, 1.0, atol=1e-5)
    assert np.abs(a.unsafe_scores - b.unsafe_scores).max() > 0.1


def test_five_class_unsafe_score_is_the_sum_of_the_unsafe_classes(five_class_dir):
    model = load_model(five_class_dir, device="cpu", precision="fp32")
    assert model.labels == list(FIVE_LABELS)
    assert model.unsafe_indices == [1, 3, 4]
    assert model.unsafe_labels == ["hentai", "porn", "sexy"]
    pred = model.predict(_batch(model, 10))
    probs = pred.probabilities
    assert probs.shape == (10, 5)
    # Each unsafe class carries real weight, so summing fewer (or other) classes would show.
    assert (probs[:, [1, 3, 4]].mean(axis=0) > 0.01).all()
    np.testing.assert_allclose(pred.unsafe_scores, probs[:, [1, 3, 4]].sum(axis=1), atol=1e-6)
    np.testing.assert_allclose(pred.unsafe_scores, 1.0 - probs[:, [0, 2]].sum(axis=1), atol=1e-5)


def test_unknown_labels_need_an_override(relabelled):
    with pytest.raises(ModelError) as info:
        load_model(relabelled(("cat", "dog")), device="cpu")
    message = str(info.value)
    assert "cat" in message and "dog" in message
    assert "--unsafe-label" in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("dog", [1]),
        ("DOG", [1]),
        ("Cat", [0]),
        ("dog, cat", [0, 1]),
        (["dog"], [1]),
    ],
)
def test_unsafe_label_override(relabelled, override, expected):
    model = load_model(relabelled(("cat", "dog")), device="cpu", unsafe_label=override)
    assert model.unsafe_indices == expected


def test_override_beats_the_name_table():
    assert unsafe_indices_for(["NSFW", "SFW"], "sfw") == [1]
    assert unsafe_indices_for(["NSFW", "SFW"], None) == [0]


def test_override_naming_a_missing_label_is_refused(relabelled):
    with pytest.raises(ModelError) as info:
        load_model(relabelled(("cat", "dog")), device="cpu", unsafe_label="horse")
    message = str(info.value)
    assert "horse" in message and "cat" in message and "dog" in message


# --------------------------------------------------------------------------- predict


def test_predict_batch(cpu_model, batch):
    pred = cpu_model.predict(batch)
    n = len(batch)
    assert pred.probabilities.shape == (n, 2) and pred.probabilities.dtype == np.float32
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert pred.unsafe_scores.shape == (n,) and pred.unsafe_scores.dtype == np.float32
    assert ((pred.unsafe_scores >= 0) & (pred.unsafe_scores <= 1)).all()
    assert pred.unsafe_scores.max() - pred.unsafe_scores.min() > 0.2
    assert pred.embeddings.shape == (n, cpu_model.module.num_features) == (n, 64)
    assert pred.embeddings.dtype == np.float32
    assert np.isfinite(pred.embeddings).all()
    # Distinct images give distinct embeddings (no broadcast of one row).
    assert np.abs(pred.embeddings[0] - pred.embeddings[1]).max() > 1e-3


def test_predict_matches_the_full_forward_pass(cpu_model, batch):
    pred = cpu_model.predict(batch)
    with torch.inference_mode():
        expected = cpu_model.module(batch).softmax(-1).numpy()
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-5)


def test_predict_rows_do_not_depend_on_the_batch(cpu_model, batch):
    whole = cpu_model.predict(batch)
    for i in (0, 5):
        alone = cpu_model.predict(batch[i : i + 1])
        np.testing.assert_allclose(alone.probabilities[0], whole.probabilities[i], atol=1e-5)
        np.testing.assert_allclose(alone.embeddings[0], whole.embeddings[i], atol=1e-4)


def test_preprocess_equals_the_models_transform(cpu_model):
    photo = synthetic_photo((333, 250), seed=3)
    tensor, resized = cpu_model.preprocess(photo)
    assert tensor.shape == (3, 160, 160)
    torch.testing.assert_close(tensor, cpu_model.transform(photo))
    # The resized picture is the whole photo at the transform's scale (for thumbnails).
    resize = cpu_model.transform.transforms[0]
    assert min(resized.size) == resize.size
    assert resized.size[0] / resized.size[1] == pytest.approx(333 / 250, rel=0.01)
    # Decoding at input_size never forces the transform to upsample.
    assert cpu_model.input_size >= resize.size


def test_vit_tiny_embeddings_are_192_wide(vit_tiny):
    assert vit_tiny.input_size == 384
    pred = vit_tiny.predict(_batch(vit_tiny, 3, size=(400, 300)))
    assert pred.embeddings.shape == (3, 192)
    assert pred.probabilities.shape == (3, 2)
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- parity


PARITY_SIZES = [(4000, 3000), (1024, 768), (640, 480), (300, 200), (384, 512), (2000, 3000)]


def test_parity_with_the_model_card_loop(vit_tiny, vit_tiny_dir, tmp_path):
    """Our decode (JPEG draft) + preprocess + predict against the reference loop of the card:
    full decode, timm's transform, module(x).softmax(-1). The reference model is loaded by
    timm itself from the folder, independently of load_model."""
    import timm
    from PIL import Image

    from nsfw_desk.core.images import load_image

    reference = timm.create_model(f"local-dir:{vit_tiny_dir}", pretrained=True).eval()
    transform = timm.data.create_transform(
        **timm.data.resolve_model_data_config(reference), is_training=False
    )
    worst = 0.0
    spread = []
    for i, size in enumerate(PARITY_SIZES):
        path = tmp_path / f"photo_{i}.jpg"
        synthetic_photo(size, seed=100 + i).save(path, quality=90)

        decoded = load_image(path, min_side=vit_tiny.input_size)
        assert (decoded.width, decoded.height) == size
        ours = vit_tiny.predict(vit_tiny.preprocess(decoded.image)[0].unsqueeze(0))

        with torch.inference_mode():
            x = transform(Image.open(path))
            expected = reference(x.unsqueeze(0)).softmax(-1)[0].numpy()
        worst = max(worst, float(np.abs(ours.probabilities[0] - expected).max()))
        spread.append(float(expected[0]))
    assert worst <= 0.01, f"max |Δp| = {worst:.4f}"
    assert max(spread) - min(spread) > 0.02  # the comparison is not between constants


# --------------------------------------------------------------------------- refusals


def test_folder_with_only_pickle_weights_is_refused(model_dir, tmp_path, no_unpickling):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(model_dir / "config.json", folder / "config.json")
    sentinel = tmp_path / "UNPICKLED"
    _malicious_pickle(folder / "pytorch_model.bin", sentinel)
    with pytest.raises(ModelError) as info:
        load_model(folder, device="cpu")
    message = str(info.value)
    assert "pytorch_model.bin" in message
    assert "pickle" in message.lower() and "safetensors" in message
    assert "save_file" in message and "model.safetensors" in message  # how to convert
    assert not sentinel.exists()


@pytest.mark.parametrize("name", ["weights.pt", "weights.pth", "model.ckpt", "pytorch_model.bin"])
def test_pickle_file_given_directly_is_refused(model_dir, tmp_path, no_unpickling, name):
    shutil.copy(model_dir / "config.json", tmp_path / "config.json")
    shutil.copy(model_dir / "model.safetensors", tmp_path / "model.safetensors")
    sentinel = tmp_path / "UNPICKLED"
    path = _malicious_pickle(tmp_path / name, sentinel)
    with pytest.raises(ModelError) as info:
        load_model(path, device="cpu")
    message = str(info.value)
    assert name in message and "pickle" in message.lower() and "safetensors" in message
    assert not sentinel.exists()


def test_the_sentinel_pickle_really_creates_its_file(tmp_path):
    """Guards the two tests above: their pickle does run code when loaded."""
    sentinel = tmp_path / "UNPICKLED"
    data = _malicious_pickle(tmp_path / "x.bin", sentinel).read_bytes()
    pickle.loads(data)["state_dict"].close()
    assert sentinel.exists()


def test_folder_without_config_is_refused(model_dir, tmp_path):
    shutil.copy(model_dir / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match="config.json"):
        load_model(tmp_path, device="cpu")


def test_folder_without_weights_is_refused(model_dir, tmp_path):
    shutil.copy(model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelError, match="model.safetensors"):
        load_model(tmp_path, device="cpu")


def test_nonexistent_folder_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nothing here", device="cpu")


def test_other_file_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelError, match="is a file"):
        load_model(path, device="cpu")


def test_corrupt_safetensors_is_a_model_error(model_dir, tmp_path):
    shutil.copy(model_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError, match="model.safetensors"):
        load_model(tmp_path, device="cpu")


def test_weights_of_another_shape_are_a_model_error(model_dir, five_class_dir, tmp_path):
    shutil.copy(model_dir / "config.json", tmp_path / "config.json")
    shutil.copy(five_class_dir / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match="Could not load the weights"):
        load_model(tmp_path, device="cpu")


@pytest.mark.parametrize(
    "text", ["not json {", "[]", "null", '"text"', '{"pretrained_cfg": 3}', '{"num_classes": 2}']
)
def test_malformed_config_is_a_model_error(model_dir, tmp_path, text):
    shutil.copy(model_dir / "model.safetensors", tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ModelError, match="config"):
        load_model(tmp_path, device="cpu")


def test_unknown_architecture_is_a_model_error(model_dir, tmp_path):
    folder = _relabel(model_dir, tmp_path / "m", ("NSFW", "SFW"))
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "no_such_architecture_xyz"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no_such_architecture_xyz"):
        load_model(folder, device="cpu")


# --------------------------------------------------------------------------- hub (offline)


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def test_hub_cache_is_the_isolated_empty_one():
    """Sanity for the tests below: offline, and the cache is conftest's temporary folder."""
    import os

    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE
    assert Path(constants.HF_HUB_CACHE).is_relative_to(os.environ["HF_HOME"])


@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.parametrize(
    ("text", "name", "revision"),
    [
        ("someorg/somemodel", "someorg/somemodel", "main"),
        ("someorg/somemodel@v1.0", "someorg/somemodel", "v1.0"),
        (None, DEFAULT_MODEL, DEFAULT_REVISION),
    ],
)
def test_hub_model_not_in_cache_offline(text, name, revision, offline):
    with pytest.raises(ModelError) as info:
        load_model(text, device="cpu", offline=offline)
    message = str(info.value)
    assert name in message and revision in message
    assert "local folder" in message
    assert "pickle" not in message.lower()


@pytest.fixture
def fake_hub_repo():
    """Writes a repo snapshot into the (isolated) HF cache in its on-disk layout (blobs named
    by hash, snapshots/<commit>/ holding links to them, refs/main naming the commit that
    `main` is); removes the repos after."""
    made = set()

    def make(repo: str, files: dict[str, Path], commit: str = COMMIT, *, main: bool = True) -> Path:
        root = _hub_cache() / ("models--" + repo.replace("/", "--"))
        made.add(root)
        snapshot = root / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (root / "blobs").mkdir(exist_ok=True)
        for name, source in files.items():
            blob = root / "blobs" / _sha256(source)
            shutil.copy(source, blob)
            (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
        if main:
            (root / "refs").mkdir(exist_ok=True)
            (root / "refs" / "main").write_text(commit)
        return snapshot

    yield make
    for root in made:
        shutil.rmtree(root)


def test_hub_model_in_cache_loads_offline(
    fake_hub_repo, model_dir, five_class_dir, batch, cpu_model
):
    # The pinned commit is not what main points at: each name must get its own snapshot.
    fake_hub_repo(
        "nsfw-desk-tests/cached",
        {
            "config.json": model_dir / "config.json",
            "model.safetensors": model_dir / "model.safetensors",
        },
        COMMIT,
        main=False,
    )
    fake_hub_repo(
        "nsfw-desk-tests/cached",
        {
            "config.json": five_class_dir / "config.json",
            "model.safetensors": five_class_dir / "model.safetensors",
        },
        MAIN_COMMIT,
    )
    reports = []
    model = load_model(
        f"nsfw-desk-tests/cached@{COMMIT}",
        device="cpu",
        precision="fp32",
        offline=True,
        progress=reports.append,
    )
    assert model.model_id == f"nsfw-desk-tests/cached@{COMMIT}"
    assert not model.spec.is_local and model.spec.revision == COMMIT
    assert model.labels == ["NSFW", "SFW"] and model.unsafe_indices == [0]
    np.testing.assert_allclose(
        model.predict(batch).probabilities, cpu_model.predict(batch).probabilities, atol=1e-6
    )
    assert reports == []  # nothing to download
    # A branch name resolves through refs/ to its commit, which becomes the id.
    for text in ("nsfw-desk-tests/cached", "nsfw-desk-tests/cached@main"):
        main = load_model(text, device="cpu", offline=True)
        assert main.model_id == f"nsfw-desk-tests/cached@{MAIN_COMMIT}"
        assert main.labels == list(FIVE_LABELS)
    # HF_HUB_OFFLINE alone (offline=False) also finds it without the network.
    assert load_model(f"nsfw-desk-tests/cached@{COMMIT}", device="cpu").model_id == model.model_id


def test_hub_revision_not_in_cache(fake_hub_repo, model_dir):
    fake_hub_repo(
        "nsfw-desk-tests/cached",
        {
            "config.json": model_dir / "config.json",
            "model.safetensors": model_dir / "model.safetensors",
        },
    )
    other = "f" * 40
    with pytest.raises(ModelError) as info:
        load_model(f"nsfw-desk-tests/cached@{other}", device="cpu", offline=True)
    assert other in str(info.value) and "nsfw-desk-tests/cached" in str(info.value)


def test_cached_hub_repo_with_only_pickle_weights(
    fake_hub_repo, model_dir, tmp_path, no_unpickling
):
    sentinel = tmp_path / "UNPICKLED"
    fake_hub_repo(
        "nsfw-desk-tests/pickled",
        {
            "config.json": model_dir / "config.json",
            "pytorch_model.bin": _malicious_pickle(tmp_path / "pytorch_model.bin", sentinel),
        },
    )
    for offline in (True, False):
        with pytest.raises(ModelError) as info:
            load_model(f"nsfw-desk-tests/pickled@{COMMIT}", device="cpu", offline=offline)
        message = str(info.value)
        assert "nsfw-desk-tests/pickled" in message
        assert "pickle" in message.lower() and "safetensors" in message
    assert not sentinel.exists()


def test_cached_hub_config_without_weights_is_not_called_pickle_only(fake_hub_repo, model_dir):
    """Weights not downloaded yet (interrupted, or only the config cached): say it is not in
    the cache, not that the repository offers only pickle weights."""
    fake_hub_repo("nsfw-desk-tests/partial", {"config.json": model_dir / "config.json"})
    with pytest.raises(ModelError) as info:
        load_model(f"nsfw-desk-tests/partial@{COMMIT}", device="cpu", offline=True)
    message = str(info.value)
    assert "nsfw-desk-tests/partial" in message and COMMIT in message
    assert "cache" in message and "local folder" in message
    assert "pickle" not in message.lower()


# --------------------------------------------------------------------------- progress


def test_progress_tqdm_reports_downloaded_bytes(capsys):
    reports: list[Progress] = []
    bar_class = _progress_tqdm(reports.append, "org/name")
    bar = bar_class(total=1000, unit="B", unit_scale=True, desc="model.safetensors")
    bar.update(400)
    bar.update(600)
    bar.close()
    assert [(p.phase, p.done, p.total) for p in reports] == [
        ("download", 400, 1000),
        ("download", 1000, 1000),
    ]
    assert reports[-1].fraction == 1.0
    assert all("org/name" in p.message for p in reports)
    assert capsys.readouterr().err == ""  # our bar replaces tqdm's, it does not print


def test_progress_tqdm_counts_a_resumed_download():
    reports: list[Progress] = []
    bar = _progress_tqdm(reports.append, "org/name")(total=1000, initial=250)
    bar.update(750)
    assert (reports[-1].done, reports[-1].total) == (1000, 1000)


def test_progress_tqdm_with_xet_reports_one_monotonic_count():
    """Xet downloads drive two bars (network bytes, bytes written); the user sees one."""
    xet = pytest.importorskip("huggingface_hub.utils._xet_progress_reporting")
    reporter_class = getattr(xet, "XetDownloadProgressReporter", None)
    if reporter_class is None:
        pytest.skip("this huggingface_hub has no XetDownloadProgressReporter")
    reports: list[Progress] = []
    with reporter_class(
        reconstruction_desc="model.safetensors",
        total=1000,
        log_level=30,
        tqdm_class=_progress_tqdm(reports.append, "org/name"),
    ) as reporter:
        for written, received in [(0, 300), (200, 600), (500, 700), (1000, 700)]:
            reporter.update_progress(
                SimpleNamespace(
                    total_bytes=1000,
                    total_bytes_completed=written,
                    total_transfer_bytes_completed=received,
                    total_bytes_completion_rate=1.0,
                    total_transfer_bytes_completion_rate=1.0,
                )
            )
    done = [p.done for p in reports]
    assert done == sorted(done) and done[-1] == 1000
    assert all(p.total == 1000 for p in reports)


# --------------------------------------------------------------------------- device, precision


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_choose_device_cpu():
    assert choose_device("cpu") == torch.device("cpu")


def test_choose_device_auto_without_gpu(no_gpu):
    assert choose_device("auto") == torch.device("cpu")
    assert choose_device() == torch.device("cpu")


def test_choose_device_auto_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto").type == "cuda"


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_choose_device_unavailable_gpu(no_gpu, device):
    with pytest.raises(ModelError, match=device):
        choose_device(device)


@pytest.mark.parametrize("device", ["gpu", "CUDA", "", "tpu"])
def test_choose_device_unknown(device):
    with pytest.raises(ModelError, match="Unknown device"):
        choose_device(device)


def test_load_model_on_unavailable_cuda_is_a_model_error(model_dir, no_gpu):
    with pytest.raises(ModelError, match="cuda"):
        load_model(model_dir, device="cuda")


def test_choose_precision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert choose_precision(cpu) == "fp32"
    assert choose_precision(cpu, "auto") == "fp32"
    assert choose_precision(cuda, "auto") == "fp16"
    assert choose_precision(torch.device("mps"), "auto") == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert choose_precision(cpu, "auto") == "bf16"  # measured faster, 0% flips: see bench
    assert choose_precision(cuda, "auto") == "fp16"
    for value in ("fp32", "fp16", "bf16"):
        assert choose_precision(cpu, value) == value
        assert choose_precision(cuda, value) == value
    with pytest.raises(ModelError, match="Unknown precision"):
        choose_precision(cpu, "int4")


def test_describe_on_cpu(cpu_model):
    assert re.fullmatch(r"CPU · fp32 · \d+ threads", cpu_model.describe())
    assert cpu_model.threads == available_cores() >= 1
    assert cpu_model.describe() == f"CPU · fp32 · {available_cores()} threads"


def test_describe_on_gpu_names_the_card(cpu_model):
    model = LoadedModel(
        **{
            **{
                f: getattr(cpu_model, f)
                for f in (
                    "module",
                    "model_id",
                    "spec",
                    "architecture",
                    "labels",
                    "unsafe_indices",
                    "data_config",
                    "threads",
                )
            },
            "device": torch.device("cuda", 0),
            "precision": "fp16",
            "device_name": "NVIDIA H100",
        }
    )
    assert model.describe() == "CUDA · NVIDIA H100 · fp16"


def test_bf16_scores_close_to_fp32(model_dir, cpu_model, batch):
    bf16 = load_model(model_dir, device="cpu", precision="bf16")
    assert bf16.precision == "bf16"
    assert bf16.describe().startswith("CPU · bf16 · ")
    low = bf16.predict(batch)
    full = cpu_model.predict(batch)
    assert low.probabilities.dtype == low.embeddings.dtype == np.float32
    np.testing.assert_allclose(low.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(low.unsafe_scores - full.unsafe_scores).max() <= 0.05
    assert not np.array_equal(low.unsafe_scores, full.unsafe_scores)  # bf16 really ran


def test_unreachable_hub_fails_fast_with_a_clear_message(monkeypatch):
    """No network and nothing cached: an answer in seconds, not the hub client's retries."""
    import time

    from huggingface_hub import constants

    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(hub.ModelError) as exc:
        runtime.load_model("someorg/somemodel@" + "a" * 40)
    assert time.monotonic() - started < 10
    message = str(exc.value)
    assert "someorg/somemodel" in message and "a" * 40 in message
    assert "unreachable" in message and "local folder" in message


def test_native_bf16_detection_reads_cpu_flags(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    for flags, expected in (
        ("fpu avx2 avx512f", False),
        ("fpu avx512_bf16 avx2", True),
        ("fpu amx_bf16", True),
    ):
        fake = tmp_path / "cpuinfo"
        fake.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(
            builtins,
            "open",
            lambda p, *a, _f=fake, **k: real_open(_f if p == "/proc/cpuinfo" else p, *a, **k),
        )
        assert runtime.cpu_has_native_bf16() is expected


def test_load_model_logs_its_choices_at_debug_and_no_path_above(model_dir, caplog):
    """A bug report's debug log says which model, device and precision, and why; the INFO
    line names the model by id, never by its folder (paths are for debug level only)."""
    with caplog.at_level("DEBUG", logger="nsfw_desk.core"):
        model = load_model(model_dir, device="cpu", precision="auto")
    debug = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "DEBUG")
    above = [r.getMessage() for r in caplog.records if r.levelno > 10]
    assert "local folder" in debug and str(model_dir) in debug
    assert "device: cpu asked for" in debug
    assert f"precision {model.precision}: auto on a CPU" in debug
    assert any(model.model_id in line and "test_vit" in line for line in above)
    assert not any(str(model_dir) in line or model_dir.name in line for line in above)


def test_hub_choice_is_logged_at_debug(caplog):
    with caplog.at_level("DEBUG", logger="nsfw_desk.core"), pytest.raises(ModelError):
        load_model(None, device="cpu", offline=True)
    debug = "\n".join(r.getMessage() for r in caplog.records)
    assert f"hub {DEFAULT_MODEL}, revision {DEFAULT_REVISION} (the pinned default)" in debug


def test_precision_help_says_what_auto_picks(capsys):
    """The help text follows choose_precision: bf16 on CPUs with native bf16 is not 'fp32'."""
    from nsfw_desk.cli import main

    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert (
        "auto: fp16 autocast on CUDA; on the CPU the fastest mode `nsfw-desk bench` showed "
        "within the flip budget here, else bf16 with native bf16" in help_text
    )
    assert "fp32 elsewhere" not in help_text


def test_a_missing_device_error_names_both_ways_to_choose_it(monkeypatch):
    import torch

    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.runtime import choose_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match=r"--device, or Device in Settings"):
        choose_device("cuda")
