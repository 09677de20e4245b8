"""Partial and full fine-tuning of a timm classifier on decided images, resumable per epoch.

"partial" trains the last `unfreeze_blocks` transformer blocks, the final norm and the head;
"full" trains everything. AdamW (timm's, no weight decay on biases and norms), cosine learning
rate with linear warm-up, label-smoothed (class-weighted) cross-entropy, timm's own training
augmentations, autocast on CUDA. After each epoch a checkpoint (checkpoint.py) holds what a
resumed run needs to go on as the uninterrupted one would: weights, the best epoch's weights,
optimiser state, step, history. Randomness is re-derived from (seed, epoch), so no RNG state
has to travel: the shuffle from a generator seeded with (seed, epoch), each sample's
augmentation from (seed, epoch, index), dropout from the global torch RNG seeded per epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from nsfw_desk.core.training.checkpoint import (
    flatten_optimizer,
    load_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
)
from nsfw_desk.core.training.common import TrainingError, TrainingStopped, TrainProgress
from nsfw_desk.core.training.finetune_data import (
    EpochSampler,
    Example,
    ImageDataset,
    LeftOut,
    check_examples,
    loader_workers,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["Example", "FinetuneOutcome", "LeftOut", "finetune", "trainable_parameters"]

log = logging.getLogger(__name__)

FINETUNE_MODES = ("partial", "full")
LABEL_SMOOTHING = 0.1
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.1
MIN_LR_FRACTION = 0.01
GRAD_CLIP = 1.0
PROGRESS_INTERVAL_S = 0.1


@dataclass
class FinetuneOutcome:
    """The best epoch's weights (by validation loss) and how the run went."""

    state: dict[str, Tensor]
    best_epoch: int
    epochs_run: int
    steps: int
    history: list[dict]  # per epoch: train_loss, val_loss, val_accuracy, lr, step, seconds
    left_out: list[LeftOut] = field(default_factory=list)
    early_stopped: bool = False
    resumed_from_epoch: int = 0  # 0: not resumed


def trainable_parameters(module, mode: str, unfreeze_blocks: int) -> list[str]:
    """Names of the parameters `mode` trains (the others are frozen)."""
    if mode == "full":
        return [name for name, _ in module.named_parameters()]
    if mode != "partial":
        raise TrainingError(f"unknown fine-tuning mode {mode!r}: choose partial or full")
    return [
        name
        for part in _partial_modules(module, unfreeze_blocks)
        for name, _ in _named_parameters_of(module, part)
    ]


def finetune(
    module,
    data_config: dict,
    train: Sequence[Example],
    val: Sequence[Example],
    *,
    mode: str,
    unfreeze_blocks: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    precision: str,
    class_weights: Sequence[float] | None,
    checkpoint_dir: Path,
    resume: bool,
    patience: int = 3,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FinetuneOutcome:
    """Fine-tune `module` in place; it ends holding the best epoch's weights, in eval mode.

    Raises TrainingStopped when `should_stop()` turns true (the last epoch's checkpoint is
    kept), TrainingError for input it cannot train on (and for a checkpoint of another run
    when resuming), OSError when a checkpoint cannot be written (the previous one is kept).
    """
    import torch

    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise TrainingError(
            f"epochs ({epochs}) and batch size ({batch_size}) must be at least 1 and the "
            f"learning rate ({lr}) above 0"
        )
    names = set(trainable_parameters(module, mode, unfreeze_blocks))
    num_classes = _num_classes(module)
    _check_targets(train, val, num_classes, class_weights)
    options = _options_record(
        module, data_config, train, val, mode, unfreeze_blocks, epochs, batch_size, lr, seed,
        class_weights,
    )  # fmt: skip
    report = _Reporter(progress, epochs)
    stored = _stored_checkpoint(checkpoint_dir, options) if resume else None

    min_side = _min_side(data_config)
    workers = loader_workers(device.type)
    total = len(train) + len(val)
    report.send("preparing", 0, 0, 0, message=f"checking {total} images", force=True)

    def checked(offset: int) -> Callable[[int], None]:
        return lambda done: report.send(
            "preparing", 0, 0, 0, message=f"checking images: {offset + done}/{total}"
        )

    stop = should_stop or (lambda: False)
    checked_train = check_examples(train, min_side, max(2, workers), checked(0), stop)
    checked_val = None
    if checked_train is not None:
        checked_val = check_examples(val, min_side, max(2, workers), checked(len(train)), stop)
    if checked_train is None or checked_val is None:
        kept = _RunState()
        if stored is not None:
            kept.epoch, kept.step = int(stored[1]["epoch"]), int(stored[1]["step"])
        raise _stopped(kept, 0)
    (train_ok, left_train), (val_ok, left_val) = checked_train, checked_val
    left_out = left_train + left_val
    if left_out:
        report.send("preparing", 0, 0, 0, message=_left_out_line(left_out), force=True)
    _check_usable(train_ok, val_ok, num_classes, left_out)

    train_loader, val_loader = _loaders(
        module, data_config, train_ok, val_ok, batch_size, seed, workers, device
    )
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * epochs
    warmup = min(max(1, round(WARMUP_FRACTION * total_steps)), max(1, total_steps // 2))

    original_grad = {name: p.requires_grad for name, p in module.named_parameters()}
    for name, param in module.named_parameters():
        param.requires_grad_(name in names)
    module.to(device)
    from timm.optim import create_optimizer_v2

    optimizer = create_optimizer_v2(module, opt="adamw", lr=lr, weight_decay=WEIGHT_DECAY)
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    autocast_dtype, scaler = _precision(device, precision)
    weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    criterion = torch.nn.CrossEntropyLoss(
        weight=weights.to(device) if weights is not None else None,
        label_smoothing=LABEL_SMOOTHING,
        reduction="none",
    )
    val_criterion = torch.nn.CrossEntropyLoss(
        weight=weights.to(device) if weights is not None else None, reduction="sum"
    )

    run = _RunState()
    if stored is not None:
        run = _restore(stored, module, optimizer, scaler, names)
        log.info("resuming fine-tuning after epoch %d (step %d)", run.epoch, run.step)
    resumed_from = run.epoch if stored is not None else 0

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        floor = lr * MIN_LR_FRACTION
        return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    started, steps_at_start = time.monotonic(), run.step
    python_random = random.getstate()  # samples seed `random` (timm's crops draw from it)
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's RNG is left as it was
            while not run.finished and run.epoch < epochs:
                epoch = run.epoch + 1
                torch.manual_seed(seed * 1_000_003 + epoch)
                train_loader.batch_sampler.epoch = epoch
                _train_mode(module, mode, unfreeze_blocks)
                epoch_started = time.monotonic()
                loss_sum, loss_count = 0.0, 0
                for images, targets, ok in train_loader:
                    if stop():
                        raise _stopped(run, epoch)
                    current_lr = lr_at(run.step)
                    for group in optimizer.param_groups:
                        group["lr"] = current_lr
                    images, targets = images.to(device), targets.to(device)
                    mask = ok.to(device=device, dtype=torch.float32)
                    with torch.autocast(
                        device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                    ):
                        logits = module(images)
                    per_sample = criterion(logits.float(), targets)
                    loss = (per_sample * mask).sum() / mask.sum().clamp(min=1)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(_params(module, names), GRAD_CLIP)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(_params(module, names), GRAD_CLIP)
                        optimizer.step()
                    run.step += 1
                    loss_sum += float(loss.detach()) * int(mask.sum())
                    loss_count += int(mask.sum())
                    report.send(
                        "training",
                        epoch,
                        run.step,
                        total_steps,
                        loss=loss_sum / max(1, loss_count),
                        val_accuracy=run.last_val_accuracy,
                        eta_s=_eta(started, run.step - steps_at_start, total_steps - run.step),
                    )
                report.send(
                    "evaluating", epoch, run.step, total_steps,
                    loss=loss_sum / max(1, loss_count), val_accuracy=run.last_val_accuracy,
                    force=True,
                )  # fmt: skip
                val_loss, val_accuracy = _evaluate(
                    module, val_loader, val_criterion, device, autocast_dtype, stop,
                    lambda epoch=epoch: _stopped(run, epoch),
                )  # fmt: skip
                run.record_epoch(
                    epoch,
                    train_loss=loss_sum / max(1, loss_count),
                    val_loss=val_loss,
                    val_accuracy=val_accuracy,
                    lr=lr_at(max(0, run.step - 1)),
                    seconds=round(time.monotonic() - epoch_started, 3),
                    module=module,
                )
                if epoch - run.best_epoch >= patience and epoch < epochs:
                    run.finished = run.early_stopped = True
                    log.info("early stop after epoch %d: best was epoch %d", epoch, run.best_epoch)
                if epoch == epochs:
                    run.finished = True
                _save(checkpoint_dir, module, optimizer, scaler, run, options)
                eta = (
                    0.0
                    if run.finished
                    else _eta(started, run.step - steps_at_start, total_steps - run.step)
                )
                line = (
                    f"epoch {epoch}/{epochs} done · step {run.step}/{total_steps} · loss "
                    f"{run.history[-1]['train_loss']:.3f} · val loss {val_loss:.3f} · val acc "
                    f"{val_accuracy:.2f} · best epoch {run.best_epoch}"
                )
                if run.early_stopped:
                    line += f" · stopping early: no better val loss in {patience} epochs"
                elif eta is not None and not run.finished:
                    line += f" · {_duration(eta)} left"
                report.send(
                    "training",
                    epoch,
                    run.step,
                    total_steps,
                    loss=run.history[-1]["train_loss"],
                    val_accuracy=val_accuracy,
                    eta_s=eta,
                    message=line,
                    force=True,
                )
    finally:
        random.setstate(python_random)
        for name, param in module.named_parameters():
            param.requires_grad_(original_grad.get(name, True))
    module.load_state_dict(run.best_state)
    module.eval()
    return FinetuneOutcome(
        state=run.best_state,
        best_epoch=run.best_epoch,
        epochs_run=run.epoch,
        steps=run.step,
        history=run.history,
        left_out=left_out,
        early_stopped=run.early_stopped,
        resumed_from_epoch=resumed_from,
    )


# --- which parameters train -----------------------------------------------------------------


def _partial_modules(module, unfreeze_blocks: int) -> list:
    blocks = getattr(module, "blocks", None)
    if blocks is None or not hasattr(blocks, "__len__") or len(blocks) == 0:
        raise TrainingError(
            f"partial fine-tuning needs a transformer with blocks (timm's `blocks`), and "
            f"{type(module).__name__} has none: use --mode head or --mode full"
        )
    if not 1 <= unfreeze_blocks <= len(blocks):
        raise TrainingError(
            f"unfreeze_blocks is {unfreeze_blocks}, but the model has {len(blocks)} blocks: "
            f"choose 1 to {len(blocks)} (or --mode full to train all of them)"
        )
    parts = list(blocks[len(blocks) - unfreeze_blocks :])
    for name in ("norm", "fc_norm", "attn_pool", "head_norm"):
        part = getattr(module, name, None)
        if part is not None:
            parts.append(part)
    parts.append(module.get_classifier())
    return parts


def _named_parameters_of(module, part):
    ids = {id(p) for p in part.parameters()}
    return [(name, p) for name, p in module.named_parameters() if id(p) in ids]


def _params(module, names: set[str]):
    return [p for name, p in module.named_parameters() if name in names]


def _train_mode(module, mode: str, unfreeze_blocks: int) -> None:
    """Train mode for what trains; frozen parts stay in eval (no dropout, fixed norm stats)."""
    if mode == "full":
        module.train()
        return
    module.eval()
    for part in _partial_modules(module, unfreeze_blocks):
        part.train()


def _num_classes(module) -> int:
    classes = getattr(module, "num_classes", None)
    if isinstance(classes, int) and classes > 0:
        return classes
    return int(module.get_classifier().out_features)


# --- input checks ---------------------------------------------------------------------------


def _check_targets(train, val, num_classes: int, class_weights) -> None:
    for example in (*train, *val):
        if not 0 <= example.target < num_classes:
            raise TrainingError(
                f"{example.path}: class index {example.target} but the model has "
                f"{num_classes} classes"
            )
    if class_weights is not None and len(class_weights) != num_classes:
        raise TrainingError(
            f"{len(class_weights)} class weights given for a model with {num_classes} classes"
        )


def _check_usable(train_ok, val_ok, num_classes: int, left_out: list[LeftOut]) -> None:
    missing = sorted(set(range(num_classes)) - {e.target for e in train_ok})
    why = f" ({_left_out_line(left_out)})" if left_out else ""
    if missing:
        raise TrainingError(
            f"no usable training image of class {', '.join(map(str, missing))}{why}: "
            "decide more images of that class"
        )
    if not val_ok:
        raise TrainingError(
            f"no usable validation image{why}: decide more images or raise the validation share"
        )


def _left_out_line(left_out: Sequence[LeftOut]) -> str:
    shown = "; ".join(f"{item.path.name}: {item.reason}" for item in left_out[:3])
    more = f"; and {len(left_out) - 3} more (see the log)" if len(left_out) > 3 else ""
    count = len(left_out)
    return (
        f"left out {count} image{'s' if count != 1 else ''} that could not be used: {shown}{more}"
    )


# --- data -----------------------------------------------------------------------------------


def _loaders(module, data_config, train_ok, val_ok, batch_size, seed, workers, device):
    import timm.data
    import torch

    config = {k: data_config[k] for k in ("input_size", "interpolation", "mean", "std")}
    train_transform = timm.data.create_transform(**config, is_training=True)
    val_transform = timm.data.create_transform(
        **config,
        is_training=False,
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
    )
    min_side = _min_side(data_config)
    extra: dict[str, Any] = {}
    if workers:
        # spawn, not fork: the desk trains on a worker thread of a Qt process, and forking a
        # threaded process can deadlock the child. Workers persist across epochs (a spawned
        # one imports torch anew); the epoch travels in the sampler's keys, not in them.
        extra = {
            "num_workers": workers,
            "persistent_workers": True,
            "multiprocessing_context": "spawn",
        }
    pin = device.type == "cuda"
    train_loader: Any = torch.utils.data.DataLoader(
        cast(Any, ImageDataset(train_ok, train_transform, min_side, seed)),
        batch_sampler=EpochSampler(len(train_ok), batch_size, seed, shuffle=True),
        pin_memory=pin,
        **extra,
    )
    val_loader: Any = torch.utils.data.DataLoader(
        cast(Any, ImageDataset(val_ok, val_transform, min_side, seed)),
        batch_sampler=EpochSampler(len(val_ok), batch_size, seed, shuffle=False),
        pin_memory=pin,
        **extra,
    )
    return train_loader, val_loader


def _min_side(data_config: dict) -> int:
    """The shorter side a decode must keep so that preprocessing never upsamples a draft."""
    crop_pct = data_config.get("crop_pct") or 1.0
    return math.ceil(max(int(s) for s in data_config["input_size"][1:]) / crop_pct)


def _evaluate(module, loader, criterion, device, autocast_dtype, stop, stopped):
    """(validation loss per image, accuracy); the loss is class-weighted, not smoothed."""
    import torch

    module.eval()
    loss_sum, weight_sum, correct, count = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for images, targets, ok in loader:
            if stop():
                raise stopped()
            keep = ok.bool()
            if not keep.any():
                continue
            images, targets = images[keep].to(device), targets[keep].to(device)
            with torch.autocast(
                device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
            ):
                logits = module(images)
            logits = logits.float()
            loss_sum += float(criterion(logits, targets))
            w = criterion.weight
            weight_sum += float(w[targets].sum()) if w is not None else len(targets)
            correct += int((logits.argmax(dim=1) == targets).sum())
            count += len(targets)
    if not count:
        raise TrainingError("no validation image could be decoded: nothing to measure")
    return loss_sum / max(weight_sum, 1e-12), correct / count


# --- precision ------------------------------------------------------------------------------


def _precision(device, precision: str):
    """(autocast dtype or None, GradScaler or None): fp16/bf16 autocast on CUDA; CPU fp32
    unless bf16 is asked for."""
    import torch

    if device.type == "cuda":
        if precision == "fp32":
            return None, None
        if precision == "bf16":
            return torch.bfloat16, None
        return torch.float16, torch.amp.GradScaler("cuda")
    if precision == "bf16":
        return torch.bfloat16, None
    return None, None


# --- run state, checkpoints ------------------------------------------------------------------


@dataclass
class _RunState:
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_state: dict = field(default_factory=dict)
    finished: bool = False
    early_stopped: bool = False

    @property
    def last_val_accuracy(self) -> float | None:
        return self.history[-1]["val_accuracy"] if self.history else None

    def record_epoch(self, epoch: int, *, module, **metrics) -> None:
        self.epoch = epoch
        self.history.append({"epoch": epoch, "step": self.step, **metrics})
        if metrics["val_loss"] < self.best_val_loss or not self.best_state:
            self.best_epoch, self.best_val_loss = epoch, metrics["val_loss"]
            self.best_state = {
                k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()
            }


def _save(folder: Path, module, optimizer, scaler, run: _RunState, options: dict) -> None:
    tensors, optimizer_meta = flatten_optimizer(optimizer.state_dict())
    tensors.update({f"model.{k}": v for k, v in module.state_dict().items()})
    if run.best_epoch != run.epoch:
        tensors.update({f"best.{k}": v for k, v in run.best_state.items()})
    state = {
        "kind": "finetune",
        "epoch": run.epoch,
        "step": run.step,
        "history": run.history,
        "best_epoch": run.best_epoch,
        "best_val_loss": run.best_val_loss,
        "finished": run.finished,
        "early_stopped": run.early_stopped,
        "optimizer": optimizer_meta,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "options": options,
        "fingerprint": _fingerprint(options),
        "rng": "re-derived from seed and epoch (nothing to restore)",
    }
    save_checkpoint(folder, tensors, state)


def _stored_checkpoint(folder: Path, options: dict):
    found = load_checkpoint(folder)
    if found is None:
        raise TrainingError(
            f"there is no checkpoint in {folder} to resume: start the training without resume"
        )
    tensors, state = found
    if state.get("kind") != "finetune":
        raise TrainingError(
            f"the checkpoint in {folder} is not from a partial/full fine-tune: start the "
            "training without resume, or resume it with the mode it was started with"
        )
    if state.get("fingerprint") != _fingerprint(options):
        before = state.get("options", {})
        differ = sorted(k for k in set(before) | set(options) if before.get(k) != options.get(k))
        raise TrainingError(
            f"the checkpoint in {folder} is from a different training run (differs in: "
            f"{', '.join(differ) or 'its record'}): resume with the same data and options, or "
            "start again without resume"
        )
    return tensors, state


def _restore(stored, module, optimizer, scaler, names) -> _RunState:
    tensors, state = stored
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        module.load_state_dict(model_state)
        optimizer.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise TrainingError(
            f"the checkpoint does not fit this model ({str(exc).splitlines()[0]}): start the "
            "training again without resume"
        ) from exc
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return _RunState(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        history=list(state["history"]),
        best_epoch=int(state["best_epoch"]),
        best_val_loss=float(state["best_val_loss"]),
        best_state={k: v.clone() for k, v in (best or model_state).items()},
        finished=bool(state.get("finished")),
        early_stopped=bool(state.get("early_stopped")),
    )


def _options_record(
    module, data_config, train, val, mode, unfreeze_blocks, epochs, batch_size, lr, seed,
    class_weights,
) -> dict:  # fmt: skip
    """What must be the same for a checkpoint to be resumed (JSON, compared key by key)."""
    shapes = [[name, list(t.shape)] for name, t in module.state_dict().items()]
    return {
        "architecture": f"{type(module).__name__}:{_digest(shapes)}",
        "data_config": json.loads(json.dumps(data_config, default=str)),
        "train": _digest(sorted([e.hash, e.target] for e in train)),
        "val": _digest(sorted([e.hash, e.target] for e in val)),
        "mode": mode,
        "unfreeze_blocks": unfreeze_blocks if mode == "partial" else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "class_weights": [float(w) for w in class_weights] if class_weights else None,
    }


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint(options: dict) -> str:
    return _digest(options)


def _stopped(run: _RunState, epoch: int) -> TrainingStopped:
    """Stopped in `epoch` (0: while checking the images), after `run`'s last checkpoint."""
    where = f"during epoch {epoch}" if epoch else "while checking the images"
    if run.epoch == 0:
        first = "during the first epoch" if epoch else where
        return TrainingStopped(
            f"stopped {first}, before any checkpoint: there is nothing to resume; start the "
            "training again"
        )
    # The checkpoint's step, not the live one: steps taken in `epoch` since then are lost.
    kept_step = run.history[-1]["step"] if run.history else run.step
    return TrainingStopped(
        f"stopped {where}; the checkpoint after epoch {run.epoch} (step {kept_step}) is kept: "
        "resume to continue from it"
    )


# --- progress -------------------------------------------------------------------------------


def _eta(started: float, steps_done: int, steps_left: int) -> float | None:
    if steps_done <= 0:
        return None
    return (time.monotonic() - started) / steps_done * max(0, steps_left)


class _Reporter:
    """Sends TrainProgress at most every PROGRESS_INTERVAL_S; the first of a phase, and
    forced ones (an epoch's end), always."""

    def __init__(self, callback: Callable[[TrainProgress], None] | None, epochs: int):
        self.callback = callback
        self.epochs = epochs
        self.last = -math.inf
        self.phase = ""

    def send(
        self,
        phase: str,
        epoch: int,
        step: int,
        steps: int,
        *,
        loss: float | None = None,
        val_accuracy: float | None = None,
        eta_s: float | None = None,
        message: str | None = None,
        force: bool = False,
    ) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and phase == self.phase and now - self.last < PROGRESS_INTERVAL_S:
            return  # the first report of a phase always goes
        self.last, self.phase = now, phase
        if message is None:
            parts = [f"epoch {epoch}/{self.epochs}", f"step {step}/{steps}"]
            if loss is not None:
                parts.append(f"loss {loss:.3f}")
            if val_accuracy is not None:
                parts.append(f"val acc {val_accuracy:.2f}")
            if phase == "evaluating":
                parts.append("validating")
            if eta_s is not None:
                parts.append(f"{_duration(eta_s)} left")
            message = " · ".join(parts)
        self.callback(
            TrainProgress(
                phase=phase,
                epoch=epoch,
                epochs=self.epochs,
                step=step,
                steps=steps,
                loss=loss,
                val_accuracy=val_accuracy,
                eta_s=eta_s,
                message=message,
            )
        )


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
