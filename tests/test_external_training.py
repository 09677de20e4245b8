"""The external route: an export → timm's train.py → clean_checkpoint.py → import-weights →
scan. The export's class indices follow the base model's label order; the steps of the
README recipe (timm's own training-loop pieces, the safetensors state dict clean_checkpoint.py
writes, `nsfw-desk import-weights`, `nsfw-desk scan --model`) run here on a tiny model.

train.py and clean_checkpoint.py are not in timm's wheel or sdist (checked for 1.0.31), so
the suite cannot run them offline; it runs the pieces they are made of, as they call them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
from PIL import Image

from nsfw_desk.cli import EXIT_MODEL, EXIT_OK, EXIT_USAGE, main
from nsfw_desk.core.export import (
    TRAIN_BATCH_SIZE,
    ClassOrder,
    ExportOptions,
    class_order,
    export_dataset,
    recipe_commands,
)
from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.import_weights import WeightsError, import_weights, strip_wrappers
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.runtime import load_model
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import save_random_model

ROOT = Path(__file__).parents[1]


def coloured(path: Path, unsafe: bool, seed: int) -> Path:
    """A class you can see: red-dominant pictures are 'unsafe', blue-dominant 'safe'."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 90, size=(48, 64, 3)).astype(np.uint8)
    pixels[..., 0 if unsafe else 2] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def sfw_first(tmp_path_factory) -> Path:
    """A base model whose labels are not alphabetical: index 0 is SFW, 1 is NSFW."""
    return save_random_model(tmp_path_factory.mktemp("base") / "sfw-nsfw", labels=("SFW", "NSFW"))


def reviewed_export(tmp_path: Path, library, base: Path, *, per_class: int = 11) -> Path:
    """Scan red and blue pictures with `base`, label them as a reviewer would, export."""
    model = load_model(base, device="cpu", precision="fp32")
    root = tmp_path / "photos"
    for i in range(per_class):
        coloured(root / f"red{i:02d}.jpg", True, seed=i)
        coloured(root / f"blue{i:02d}.jpg", False, seed=100 + i)
    summary = scan_folder(root, model, library, keep_outcomes=True)
    store = ReviewStore(library)
    for outcome in summary.outcomes:
        assert outcome.hash, outcome.error
        store.decide(
            [DecisionInput(outcome.hash, model.model_id, outcome.score, outcome.path)],
            "unsafe" if outcome.path.name.startswith("red") else "safe",
            reviewer="alice",
            threshold=0.5,
        )
    out = tmp_path / "export"
    export_dataset(library, ExportOptions(out=out, val_fraction=0.2))
    return out


# --- the export's class order ------------------------------------------------------------


@pytest.mark.parametrize("labels", [("SFW", "NSFW"), ("NSFW", "SFW")])
def test_export_indices_follow_the_base_model_label_order(tmp_path, library, labels):
    import timm.data

    base = save_random_model(tmp_path / "base", labels=labels)
    out = reviewed_export(tmp_path, library, base, per_class=4)
    folders = [name.lower() for name in labels]
    assert (out / "class_map.txt").read_text() == "".join(f + "\n" for f in folders)

    # timm's own readers, as train.py calls them: index i is the folder of the label i
    for split in ("train", "val"):
        dataset = timm.data.create_dataset(
            "", root=str(out), split=split, class_map=str(out / "class_map.txt")
        )
        assert dataset.reader.class_to_idx == {f: i for i, f in enumerate(folders)}
        samples = dataset.reader.samples
        assert samples and {Path(p).parent.name for p, _ in samples} == set(folders)
        for path, target in samples:
            assert Path(path).parent.name == labels[target].lower()
            assert Path(path).name.startswith(("red", "blue")) is False  # named by hash
        direct = timm.data.ImageDataset(str(out / split), class_map=str(out / "class_map.txt"))
        assert sorted(direct.reader.samples) == sorted(samples)

    unsafe_index = folders.index("nsfw")
    for row in map(json.loads, (out / "metadata.jsonl").read_text().splitlines()):
        assert row["class_index"] == folders.index(row["label"])
        assert (row["class_index"] == unsafe_index) == (row["label"] == "nsfw")
    card = (out / "README.md").read_text()
    for i, folder in enumerate(folders):
        reviewed_as = "unsafe" if folder == "nsfw" else "safe"
        line = f"{i}. `{folder}`: reviewed as {reviewed_as}, the base model's label `{labels[i]}`"
        assert line in card
    assert ("This is not alphabetical" in card) == (folders != sorted(folders))


def test_without_a_known_base_order_the_classes_are_alphabetical_and_said_so(tmp_path, library):
    order = class_order(library, [])
    assert order.folders == ["safe", "unsafe"] and order.model_id is None
    assert "no decision names the model" in order.why
    commands = recipe_commands(order, 40)
    assert "--labels safe,unsafe" in commands[2]  # the import names the classes it trained


def test_the_card_gives_the_recipe_and_warns_about_a_small_train_split(
    tmp_path, library, sfw_first
):
    out = reviewed_export(tmp_path, library, sfw_first, per_class=4)
    card = (out / "README.md").read_text()
    meta = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    train_images = sum(row["split"] == "train" for row in meta)
    assert train_images < TRAIN_BATCH_SIZE
    for command in recipe_commands(class_order(library, _decisions(library)), train_images):
        assert command in card, command
    assert f"--batch-size {train_images} --device cpu" in card
    assert "--model local-dir:BASE --pretrained --num-classes 2" in card
    assert f"**Warning: the train split has {train_images} images, fewer than" in card
    assert "trains zero steps and still exits 0" in card


def _decisions(library):
    return ReviewStore(library).current_decisions()


# --- the recipe, step by step ------------------------------------------------------------


# timm's folder reader hands Pillow open files that it never closes (train.py leaks them too);
# under filterwarnings=error their ResourceWarning at collection would fail this test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_recipe_steps_train_convert_import_and_scan_with_the_right_class_order(
    tmp_path, library, sfw_first, monkeypatch
):
    """timm's training loop pieces on the export (as train.py calls them), the state dict
    saved as clean_checkpoint.py --safetensors saves it, import-weights, scan --model."""
    import timm
    import torch
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2

    torch.manual_seed(0)
    monkeypatch.setattr(torch, "load", _forbidden)  # nothing here unpickles
    data = reviewed_export(tmp_path, library, sfw_first)
    class_map = str(data / "class_map.txt")

    # train.py --model local-dir:BASE --pretrained --num-classes 2
    model = timm.create_model(f"local-dir:{sfw_first}", pretrained=True, num_classes=2)
    base_state = safetensors.torch.load_file(str(sfw_first / "model.safetensors"))
    assert model.pretrained_cfg["label_names"] == ["SFW", "NSFW"]  # local-dir keeps them
    assert torch.equal(model.get_classifier().weight, base_state["head.weight"])  # and the head

    # --data-dir DIR --train-split train --class-map DIR/class_map.txt --batch-size B
    config = resolve_data_config({}, model=model)
    train = create_dataset(
        "", root=str(data), split="train", is_training=True, class_map=class_map, batch_size=6
    )
    assert train.reader.class_to_idx == {"sfw": 0, "nsfw": 1}

    def loader(batch_size):
        return create_loader(
            train,
            input_size=config["input_size"],
            batch_size=batch_size,
            is_training=True,  # timm's training augmentations (create_transform is_training)
            use_prefetcher=True,  # train.py's default; on the CPU without CUDA streams
            mean=config["mean"],
            std=config["std"],
            num_workers=0,
            device=torch.device("cpu"),
        )

    assert len(train) == 18 and len(loader(TRAIN_BATCH_SIZE)) == 0  # the default: no step
    batches = loader(6)
    assert len(batches) == 3
    optimizer = create_optimizer_v2(model, opt="adamw", lr=3e-3, weight_decay=0.05)
    loss_fn = LabelSmoothingCrossEntropy(smoothing=0.1)
    model.train()
    steps = 0
    for _ in range(4):  # 12 optimiser steps
        for images, targets in batches:
            loss = loss_fn(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    assert steps == 12

    # clean_checkpoint.py --safetensors: safetensors.torch.save_file of the state dict
    weights = tmp_path / "ft.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(weights))

    model_dir = tmp_path / "MODEL_DIR"
    argv = ["import-weights", str(weights), "--base", str(sfw_first), "--out", str(model_dir)]
    assert main([*argv, "--data", str(data)]) == EXIT_OK
    config_json = json.loads((model_dir / "config.json").read_text())
    assert config_json["label_names"] == ["SFW", "NSFW"]
    assert config_json["architecture"] == "test_vit"
    assert config_json["pretrained_cfg"]["input_size"] == [3, 160, 160]
    record = json.loads((model_dir / "training.json").read_text())
    assert record["mode"] == "external" and record["base_model_id"].startswith("sha256:")
    assert len(record["train_hashes"]) == 18 and len(record["val_hashes"]) == 4

    fresh = tmp_path / "fresh"
    for i in range(4):
        coloured(fresh / f"red{i}.jpg", True, seed=500 + i)
        coloured(fresh / f"blue{i}.jpg", False, seed=600 + i)
    jsonl = tmp_path / "scan.jsonl"
    scan_argv = ["scan", str(fresh), "--model", str(model_dir), "--device", "cpu"]
    db = ["--db", str(tmp_path / "other.sqlite"), "--jsonl", str(jsonl), "-q"]
    assert main([*scan_argv, *db]) == EXIT_OK
    scores = {
        Path(r["path"]).name: r["score"] for r in map(json.loads, jsonl.read_text().splitlines())
    }
    red = [s for name, s in scores.items() if name.startswith("red")]
    blue = [s for name, s in scores.items() if name.startswith("blue")]
    assert len(red) == len(blue) == 4
    # unsafe = the NSFW label's probability: red (reviewed unsafe) high, blue low
    assert min(red) > 0.5 > max(blue), scores


def test_an_alphabetical_class_map_on_this_base_is_refused_not_inverted(tmp_path, sfw_first):
    """The bug the export had: alphabetical classes on a base labelled SFW, NSFW."""
    data = tmp_path / "old-export"
    data.mkdir()
    (data / "class_map.txt").write_text("nsfw\nsfw\n")
    (data / "metadata.jsonl").write_text(json.dumps({"hash": "a" * 64, "split": "train"}) + "\n")
    weights = tmp_path / "w.safetensors"
    safetensors.torch.save_file(
        safetensors.torch.load_file(str(sfw_first / "model.safetensors")), str(weights)
    )
    with pytest.raises(WeightsError, match="wrong classes") as info:
        import_weights(weights, str(sfw_first), tmp_path / "out", data=data)
    assert "nsfw, sfw" in str(info.value) and "SFW, NSFW" in str(info.value)
    assert not (tmp_path / "out").exists()
    # Trained with that class map, the classes are what it says: --labels names them so.
    result = import_weights(
        weights, str(sfw_first), tmp_path / "out", data=data, labels=["nsfw", "sfw"]
    )
    assert result.labels == ["nsfw", "sfw"]
    assert load_model(tmp_path / "out", device="cpu").unsafe_labels == ["nsfw"]


# --- import-weights: checks and messages -------------------------------------------------


def _forbidden(*args, **kwargs):
    raise AssertionError("something tried to unpickle")


def _save(tmp_path: Path, state, name="w.safetensors") -> Path:
    path = tmp_path / name
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _state(base: Path) -> dict:
    return safetensors.torch.load_file(str(base / "model.safetensors"))


def test_module_prefix_is_stripped_and_the_folder_loads(tmp_path, sfw_first, capsys):
    state = {f"module._orig_mod.{k}": v for k, v in _state(sfw_first).items()}
    assert strip_wrappers(state)[1] == ["module.", "_orig_mod."]
    weights = _save(tmp_path, state)
    out = tmp_path / "model"
    assert main(["import-weights", str(weights), "--base", str(sfw_first), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Took the prefix module. and _orig_mod. off every name" in err
    assert "No --data" in err and f"--model {out}" in err
    loaded = load_model(out, device="cpu")
    assert loaded.labels == ["SFW", "NSFW"] and loaded.unsafe_labels == ["NSFW"]
    assert sorted((p.name, oct(p.stat().st_mode & 0o777)) for p in out.iterdir()) == [
        ("config.json", "0o600"),
        ("model.safetensors", "0o600"),
        ("training.json", "0o600"),
    ]


def test_other_class_count_or_architecture_is_named_and_nothing_written(
    tmp_path, sfw_first, capsys
):
    import timm

    three = timm.create_model("test_vit", num_classes=3).state_dict()
    argv = ["import-weights", str(_save(tmp_path, three, "three.safetensors"))]
    out = tmp_path / "model"
    assert main([*argv, "--base", str(sfw_first), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "head.weight (3, 64) vs (2, 64)" in err and "head.bias (3,) vs (2,)" in err
    assert "The weights have 3 classes, the base model 2 (SFW, NSFW)" in err
    assert "--num-classes 2" in err and "Nothing was written" in err
    assert not out.exists()

    state = _state(sfw_first)
    state.pop("head.bias")
    state["extra.weight"] = state["head.weight"].clone()
    argv = ["import-weights", str(_save(tmp_path, state, "odd.safetensors"))]
    assert main([*argv, "--base", str(sfw_first), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "missing (1): head.bias" in err and "unexpected (1): extra.weight" in err

    other = timm.create_model("resnet18", num_classes=2).state_dict()
    argv = ["import-weights", str(_save(tmp_path, other, "resnet.safetensors"))]
    assert main([*argv, "--base", str(sfw_first), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "do not fit the base model's architecture test_vit" in err
    assert "Most names differ" in err and "and " in err and " more" in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["model_best.pth.tar", "checkpoint-4.pth.tar", "w.pth", "w.bin"])
def test_pickles_are_refused_unopened_with_the_route(tmp_path, sfw_first, monkeypatch, name):
    import torch

    monkeypatch.setattr(torch, "load", _forbidden)
    path = tmp_path / name
    path.write_bytes(b"\x80\x02}q\x00.")  # the bytes of a pickled empty dict
    with pytest.raises(WeightsError) as info:
        import_weights(path, str(sfw_first), tmp_path / "out")
    message = str(info.value)
    assert "pickle" in message and "clean_checkpoint.py" in message
    assert "--safetensors" in message and "nsfw-desk import-weights" in message
    # The desk's own refusal says the same for a train.py checkpoint beside a config.
    (tmp_path / "config.json").write_text((sfw_first / "config.json").read_text())
    with pytest.raises(ModelError) as refused:
        load_model(path, device="cpu")
    assert "clean_checkpoint.py" in str(refused.value)
    assert "import-weights" in str(refused.value)
    if name.endswith(".tar"):
        assert "checkpoint of timm's train.py" in str(refused.value)


def test_not_safetensors_missing_base_and_existing_output(tmp_path, sfw_first, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"PK\x03\x04 a zip, as torch.save writes")
    out = tmp_path / "model"
    argv = ["import-weights", str(bad), "--base", str(sfw_first), "--out", str(out)]
    assert main(argv) == EXIT_USAGE
    assert "is not a safetensors file" in capsys.readouterr().err

    good = _save(tmp_path, _state(sfw_first))
    argv = ["import-weights", str(good), "--base", str(tmp_path / "nowhere"), "--out", str(out)]
    assert main(argv) == EXIT_MODEL
    assert "does not exist" in capsys.readouterr().err

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["import-weights", str(good), "--base", str(sfw_first), "--out", str(out)]
    assert main(argv) == EXIT_USAGE
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == EXIT_USAGE  # not a model folder: never replaced
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert main(argv) == EXIT_OK  # an empty folder is fine
    assert main(argv) == EXIT_USAGE and main([*argv, "--overwrite"]) == EXIT_OK


# --- the README --------------------------------------------------------------------------


def test_readme_gives_the_recipe_the_card_gives():
    readme = (ROOT / "README.md").read_text("utf-8")
    order = ClassOrder({"unsafe": "nsfw", "safe": "sfw"}, "model", ("NSFW", "SFW"), "labels")
    for command in recipe_commands(order, 32, data="DIR", base="BASE"):
        assert command in readme, command
    assert "--pretrained-path" in readme and "zero steps" in readme
    assert 'V=$(python -c "import timm; print(timm.__version__)")' in readme
    assert "pytorch-image-models/v$V/train.py" in readme  # at the installed timm's tag
    assert "train.py" in readme and "clean_checkpoint.py" in readme
