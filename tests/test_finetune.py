"""Partial and full fine-tuning on a task a random-weight model cannot do: red vs blue images.

The model is timm's test_vit (6 blocks, 64 wide) at 64 px with random weights; the images are
generated: class 0 reddish, class 1 bluish, with texture and brightness that vary. Each run is
3 epochs of 4 steps on 2 CPU threads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from nsfw_desk.core.images import content_hash  # noqa: E402
from nsfw_desk.core.training import checkpoint as ck  # noqa: E402
from nsfw_desk.core.training.common import TrainingError, TrainingStopped  # noqa: E402
from nsfw_desk.core.training.finetune import (  # noqa: E402
    Example,
    finetune,
    trainable_parameters,
)

IMG = 64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: tiny matrices gain nothing from two, and on a busy 2-core machine
    two spinning threads made these runs four times slower (measured 4 s against 19 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model():
    torch.manual_seed(0)
    module = timm.create_model("test_vit", pretrained=False, num_classes=2, img_size=IMG)
    with torch.no_grad():  # a fresh head: at chance (random ones can separate red from blue)
        module.get_classifier().weight.zero_()
        module.get_classifier().bias.zero_()
    return module, data_config_of(module)


def data_config_of(module) -> dict:
    # timm keeps the pretrained config's 160 px whatever img_size the model was built with
    return {**timm.data.resolve_model_data_config(module), "input_size": (3, IMG, IMG)}


def write_image(path: Path, cls: int, seed: int) -> Example:
    rng = np.random.default_rng(seed)
    base = np.array([200, 60, 50] if cls == 0 else [50, 70, 200], dtype=np.float32)
    base *= rng.uniform(0.6, 1.2)
    small = rng.normal(0, 25, size=(6, 6, 3))
    texture = np.asarray(
        Image.fromarray(np.uint8(np.clip(small + 128, 0, 255))).resize((48, 40)), np.float32
    )
    pixels = np.clip(base + texture - 128 + rng.normal(0, 8, size=(40, 48, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.uint8(pixels)).save(path)
    return Example(path, cls, content_hash(path.read_bytes()))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    train = [write_image(root / "train" / f"{i}.png", i % 2, i) for i in range(32)]
    val = [write_image(root / "val" / f"{i}.png", i % 2, 1000 + i) for i in range(16)]
    return train, val


def run(tmp_path, data, module=None, **overrides):
    module, data_config = (module, overrides.pop("data_config")) if module else make_model()
    train, val = overrides.pop("train", data[0]), overrides.pop("val", data[1])
    options = dict(
        mode="partial",
        unfreeze_blocks=2,
        epochs=3,
        batch_size=8,
        lr=2e-3,
        seed=0,
        device=torch.device("cpu"),
        precision="fp32",
        class_weights=None,
        checkpoint_dir=tmp_path / "model.checkpoint",
        resume=False,
    )
    options.update(overrides)
    return module, finetune(module, data_config, train, val, **options)


def accuracy(module, examples) -> float:
    data_config = data_config_of(module)
    transform = timm.data.create_transform(**data_config)
    batch = torch.stack([transform(Image.open(e.path).convert("RGB")) for e in examples])
    with torch.inference_mode():
        predicted = module.eval()(batch).argmax(dim=1)
    return float((predicted == torch.tensor([e.target for e in examples])).float().mean())


def test_partial_trains_only_the_last_blocks_norm_and_head(tmp_path, data):
    module, _ = make_model()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert accuracy(module, data[1]) == 0.5  # at chance before training
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    train = [*data[0], Example(broken, 0, content_hash(broken.read_bytes()))]
    reports = []
    module, outcome = run(
        tmp_path,
        data,
        module=module,
        data_config=data_config_of(module),
        train=train,
        progress=reports.append,
    )
    expected = {n for n, _ in module.named_parameters() if n.startswith(("blocks.4.", "blocks.5."))}
    expected |= {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    assert set(trainable_parameters(module, "partial", 2)) == expected
    changed = {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == expected  # every trained tensor moved, no frozen one did
    assert all(p.requires_grad for p in module.parameters())  # given back as it came
    # It learned the task, and the loss came down.
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3]
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"]
    assert outcome.history[outcome.best_epoch - 1]["val_accuracy"] >= 0.9
    assert accuracy(module, data[1]) >= 0.9  # the module holds the best epoch's weights
    assert outcome.steps == 12 and outcome.epochs_run == 3
    # The broken file is left out and said so; progress went up one step at a time.
    assert [item.path for item in outcome.left_out] == [broken]
    assert any("broken.jpg" in r.message and "left out 1 image" in r.message for r in reports)
    steps = [r.step for r in reports if r.phase == "training"]
    assert steps == sorted(steps) and steps[-1] == 12
    last = reports[-1]
    assert (last.epoch, last.epochs, last.steps) == (3, 3, 12) and last.val_accuracy is not None
    assert "epoch 3/3 · step 12/12 · loss" in last.message and "val acc" in last.message
    # Its checkpoint records a finished run; resuming it trains nothing more.
    assert ck.load_checkpoint(tmp_path / "model.checkpoint")[1]["finished"] is True
    _, resumed = run(tmp_path, data, train=train, resume=True)
    assert resumed.steps == 12 and resumed.history == outcome.history
    for key, value in outcome.state.items():
        assert torch.equal(resumed.state[key], value)


def test_full_trains_everything(tmp_path, data):
    module, _ = make_model()
    before = {k: v.clone() for k, v in module.named_parameters()}
    module, outcome = run(
        tmp_path,
        data,
        module=module,
        data_config=data_config_of(module),
        mode="full",
        lr=1e-3,
        class_weights=[1.0, 1.5],
    )
    assert all(not torch.equal(p, before[n]) for n, p in module.named_parameters())
    assert outcome.history[-1]["train_loss"] < outcome.history[0]["train_loss"]
    assert max(h["val_accuracy"] for h in outcome.history) >= 0.9
    assert accuracy(module, data[1]) >= 0.9


def test_resume_after_a_stop_continues_as_an_uninterrupted_run(tmp_path, data):
    """Stopped at the first step of epoch 2, resumed: same steps, history and weights.

    Tolerance: 1e-5 absolute on losses and on every weight. Randomness is re-derived from
    (seed, epoch), so on one machine the two runs compute the same numbers; the tolerance
    only allows for float summation order.
    """
    _, whole = run(tmp_path / "a", data)

    folder = tmp_path / "b" / "model.checkpoint"
    with pytest.raises(TrainingStopped, match="checkpoint after epoch 1 \\(step 4\\) is kept"):
        run(tmp_path / "b", data, should_stop=lambda: ck.has_checkpoint(folder))
    assert ck.load_checkpoint(folder)[1]["step"] == 4
    reports = []
    _, resumed = run(tmp_path / "b", data, resume=True, progress=reports.append)

    assert resumed.resumed_from_epoch == 1
    training = [r.step for r in reports if r.phase == "training"]
    assert training[0] == 5 and training[-1] == 12  # the step count continues
    assert (resumed.steps, resumed.best_epoch) == (whole.steps, whole.best_epoch)
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert a["step"] == b["step"]
        for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
            assert math.isclose(a[key], b[key], abs_tol=1e-5), (key, a, b)
    for key, value in whole.state.items():
        torch.testing.assert_close(resumed.state[key], value, atol=1e-5, rtol=0)

    # Another run's checkpoint is refused, naming what differs.
    with pytest.raises(TrainingError, match="different training run \\(differs in: lr\\)"):
        run(tmp_path / "b", data, resume=True, lr=1e-3)
    with pytest.raises(TrainingError, match="differs in: train"):
        run(tmp_path / "b", data, resume=True, train=data[0][:-2])
    with pytest.raises(TrainingError, match="no checkpoint .* to resume"):
        run(tmp_path / "c", data, resume=True)


def test_stop_in_the_first_epoch_says_nothing_can_be_resumed(tmp_path, data):
    with pytest.raises(TrainingStopped, match="first epoch.*nothing to resume"):
        run(tmp_path, data, should_stop=lambda: True)
    assert ck.load_checkpoint(tmp_path / "model.checkpoint") is None


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(small_disk, data):
    """The disk holds one checkpoint and a half: the second epoch's cannot be written."""
    module, data_config = make_model()
    model_bytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    trained = set(trainable_parameters(module, "partial", 2))
    trained_bytes = sum(p.numel() * 4 for n, p in module.named_parameters() if n in trained)
    one = model_bytes + 2 * trained_bytes  # weights + AdamW's two moments
    disk = small_disk(f"{math.ceil(one * 1.5 / 4096) * 4}k")
    with pytest.raises(OSError, match="disk is full.*previous checkpoint \\(epoch 1\\) is kept"):
        run(disk, data, module=module, data_config=data_config)
    tensors, state = ck.load_checkpoint(disk / "model.checkpoint")
    assert (state["epoch"], state["step"]) == (1, 4)
    assert [p.name for p in (disk / "model.checkpoint").iterdir() if "partial" in p.name] == []


def test_partial_needs_transformer_blocks(tmp_path, data):
    class NoBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(3, 2)

        def get_classifier(self):
            return self.head

    with pytest.raises(TrainingError, match="needs a transformer with blocks.*--mode full"):
        trainable_parameters(NoBlocks(), "partial", 2)
    module, _ = make_model()
    with pytest.raises(TrainingError, match="unfreeze_blocks is 9, but the model has 6 blocks"):
        trainable_parameters(module, "partial", 9)
