"""`train()`: decisions → a new model folder → registered, re-scored, with a before/after report.

Head mode needs no image decoded for an item the base model has scored (its embedding is
stored); partial and full fine-tuning (core/training/finetune.py) read the images. The new
model is the base model with new weights (same timm architecture and labels), written as a
hub-layout folder that `load_model` loads like any other.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nsfw_desk.core.defaults import TARGET_RECALL, THRESHOLD
from nsfw_desk.core.evaluation import evaluate, format_threshold, threshold_for_recall
from nsfw_desk.core.model_folder import (
    REPORT_FILE,
    TRAINING_FILE,
    ModelFolderError,
    base_config,
    check_target,
    write_model_folder,
)
from nsfw_desk.core.paths import display_path, path_fields
from nsfw_desk.core.store import now_utc
from nsfw_desk.core.training import data as data_mod
from nsfw_desk.core.training.common import MODES, TrainingError, TrainingStopped, TrainProgress

if TYPE_CHECKING:
    from nsfw_desk.core.runtime import LoadedModel
    from nsfw_desk.core.store import Library

log = logging.getLogger(__name__)

ProgressFn = Callable[[TrainProgress], None]
FINETUNE_DEFAULTS = {"partial": (10, 32, 1e-4), "full": (10, 32, 5e-5)}
HEAD_RESUME_NOTE = (
    "--resume: head mode keeps no checkpoint (a head trains in seconds), so this run "
    "started again from the base model"
)


@dataclass
class TrainOptions:
    out: Path
    base: str | None = None  # model spec (hub id or folder); None -> the default model
    mode: str = "head"  # "head" | "partial" | "full"
    epochs: int | None = None  # None -> mode default
    batch_size: int | None = None
    lr: float | None = None
    val_fraction: float = 0.2
    seed: int = 0
    resume: bool = False
    data: Path | None = None  # an export folder instead of the library's decisions
    unfreeze_blocks: int = 2  # partial mode
    device: str = "auto"
    precision: str = "auto"


@dataclass
class TrainResult:
    out: Path
    model_id: str  # the id the library uses for the new model (as load_model gives it)
    report: dict  # report.json: before/after metrics on the held-out split
    rescored: int  # library items scored for the new model from stored embeddings
    summary: str  # lines for people (printed by `nsfw-desk train`, shown in the desk)


class _Reporter:
    """Progress reports, at most ~10 a second except phase and epoch changes (the loops
    report an epoch's end at most ~10 a second too, and always the last one: the figures a
    caller shows at the end are the run's own)."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self.callback = callback
        self.last = 0.0
        self.phase = ""
        self.epoch = 0

    def __call__(self, report: TrainProgress) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        same = report.phase == self.phase and report.epoch == self.epoch
        if same and now - self.last < 0.1:
            return
        self.phase, self.epoch, self.last = report.phase, report.epoch, now
        self.callback(report)

    def phase_line(self, phase: str, message: str) -> None:
        self(TrainProgress(phase, 0, 0, 0, 0, message=message))


def resumable(out: Path) -> bool:
    """A checkpoint for `out` exists that `resume=True` would continue."""
    from nsfw_desk.core.training.checkpoint import checkpoint_folder, has_checkpoint

    return has_checkpoint(checkpoint_folder(Path(out)))


def software_versions() -> dict[str, str]:
    import safetensors
    import timm
    import torch

    from nsfw_desk import __version__

    return {
        "nsfw_desk": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def _scores_report(before: np.ndarray, after: np.ndarray, is_unsafe: np.ndarray) -> dict:
    """evaluate() of both at the threshold, and the threshold each needs for TARGET_RECALL."""
    report: dict = {"threshold": THRESHOLD, "target_recall": TARGET_RECALL}
    for name, scores in (("before", before), ("after", after)):
        metrics = evaluate(scores, is_unsafe, THRESHOLD)
        needed = threshold_for_recall(scores, is_unsafe, TARGET_RECALL)
        metrics["threshold_for_target_recall"] = needed
        metrics["at_target_recall"] = (
            evaluate(scores, is_unsafe, needed) if needed is not None else None
        )
        report[name] = metrics
    return report


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def report_lines(report: dict) -> list[str]:
    """The before/after table for people."""
    before, after = report["before"], report["after"]
    rows = [
        ("accuracy", "accuracy"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("F1", "f1"),
        ("ROC AUC", "roc_auc"),
        ("average precision", "average_precision"),
    ]
    lines = [
        f"Held-out split: {before['n']} items ({before['n_unsafe']} unsafe, "
        f"{before['n_safe']} safe); threshold {report['threshold']:g}",
        f"  {'':<28}{'before':>9}{'after':>9}",
    ]
    lines += [f"  {label:<28}{_fmt(before[k]):>9}{_fmt(after[k]):>9}" for label, k in rows]
    for key in ("tp", "fp", "tn", "fn"):
        lines.append(
            f"  {key.upper() + ' (confusion)':<28}{before['confusion'][key]:>9}"
            f"{after['confusion'][key]:>9}"
        )
    lines.append(
        f"  {'threshold for recall ' + format(report['target_recall'], 'g'):<28}"
        f"{format_threshold(before['threshold_for_target_recall']):>9}"
        f"{format_threshold(after['threshold_for_target_recall']):>9}"
    )
    return lines


def _head_param_names(module) -> tuple[str, str | None]:
    head = module.get_classifier()
    for name, sub in module.named_modules():
        if sub is head and name:
            return f"{name}.weight", (f"{name}.bias" if head.bias is not None else None)
    raise TrainingError("The base model's classifier could not be found in its weights.")


def train(
    options: TrainOptions,
    library: Library | None,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a new model from the decisions; see the module docstring and README."""
    from nsfw_desk.core.hub import model_folder
    from nsfw_desk.core.runtime import load_model

    started = time.monotonic()
    report = _Reporter(progress)
    if options.mode not in MODES:
        raise TrainingError(f"Unknown mode {options.mode!r}; choose one of {', '.join(MODES)}.")
    if library is None and options.data is None:
        raise TrainingError("Nothing to train from: give a library or an export folder (--data).")
    for name in ("epochs", "batch_size"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise TrainingError(f"--{name.replace('_', '-')} must be 1 or more, not {value}.")
    if options.lr is not None and not options.lr > 0:
        raise TrainingError(f"--lr must be more than 0, not {options.lr}.")
    if not 0.0 < options.val_fraction < 1.0:
        raise TrainingError(
            f"--val-fraction must be between 0 and 1 (exclusive), not {options.val_fraction}."
        )
    try:
        out = check_target(options.out)
    except ModelFolderError as exc:
        raise TrainingError(str(exc)) from exc

    if options.data is None:  # say "too few decisions" before loading any model
        from nsfw_desk.core.review import ReviewStore

        assert library is not None
        data_mod.check_counts(ReviewStore(library).counts())
    else:  # and "not an export" too
        data_mod.check_export(Path(options.data))
    report.phase_line("preparing", "loading the base model")
    _check_timm_base(options.base)
    base = load_model(options.base, device=options.device, precision=options.precision)
    folder, _ = model_folder(base.spec, offline=True)  # load_model just fetched it
    try:
        config = base_config(folder)
    except ModelFolderError as exc:
        raise TrainingError(str(exc)) from exc
    if options.data is not None:
        dataset = data_mod.from_export(Path(options.data), base.labels, base.unsafe_indices)
    else:
        assert library is not None
        dataset = data_mod.from_library(library)
    data_mod.check_counts(dataset.counts())
    if library is not None:
        library.register_model(
            base.model_id,
            source=base.spec.source,
            revision=base.spec.revision,
            architecture=base.architecture,
            labels=base.labels,
            unsafe_labels=base.unsafe_labels,
        )
    if options.mode == "head" and options.resume and resumable(out):
        raise TrainingError(
            f"The checkpoint beside {out} is from a partial or full fine-tune: resume it with "
            "the --mode it was started with, or train a head without --resume."
        )
    if options.mode == "head":
        return _train_head(
            options, out, base, config, dataset, library, report, should_stop, started
        )
    return _train_finetune(
        options, out, base, config, dataset, library, report, should_stop, started
    )


def _check_timm_base(base: str | None) -> None:
    """Training builds on timm models only: a transformers model (or the safety checker)
    scans and is calibrated like any other, but is refused here with a message."""
    from nsfw_desk.core.backends import detect_backend
    from nsfw_desk.core.hub import ModelSpec, model_folder

    folder, _ = model_folder(ModelSpec.parse(base))
    backend = detect_backend(folder)
    if backend != "timm":
        raise TrainingError(
            f"{base} is a {backend} model; training starts from a timm model only. It scans "
            "and calibrates like any other detector (nsfw-desk scan --model, nsfw-desk "
            "metrics --model); to train, choose a timm base (--base)."
        )


def _record(
    options: TrainOptions,
    base: LoadedModel,
    dataset: data_mod.Dataset,
    counts: dict[str, int],
    hyper: dict,
    extra: dict,
    metrics: dict,
) -> dict:
    return {
        "base_model_id": base.model_id,
        "base_model": base.spec.source,
        "base_revision": base.spec.revision,
        "architecture": base.architecture,
        "label_names": base.labels,
        "unsafe_labels": base.unsafe_labels,
        "mode": options.mode,
        "decisions": {
            "source": dataset.source,
            "counts": counts,
            "fingerprint": data_mod.fingerprint(dataset.train + dataset.val),
            "train": len(dataset.train),
            "val": len(dataset.val),
        },
        "train_hashes": sorted(i.hash for i in dataset.train),
        "val_hashes": sorted(i.hash for i in dataset.val),
        "hyperparameters": hyper,
        **extra,
        "metrics": {"before": metrics["before"], "after": metrics["after"]},
        "trained_at": now_utc(),
        "software": software_versions(),
    }


def _write(out: Path, state, config: dict, record: dict, report_data: dict, library, base):
    from nsfw_desk.core.hub import ModelSpec, model_folder

    write_model_folder(
        out,
        state,
        config,
        {
            TRAINING_FILE: json.dumps(record, indent=2) + "\n",
            REPORT_FILE: json.dumps(report_data, indent=2) + "\n",
        },
    )
    spec = ModelSpec(str(out), is_local=True)
    _, model_id = model_folder(spec)
    if library is not None:
        library.register_model(
            model_id,
            source=str(out),
            revision=None,
            architecture=base.architecture,
            labels=base.labels,
            unsafe_labels=base.unsafe_labels,
            # a new head on the base's backbone: the base's stored embeddings are its own
            embeddings_of=base.model_id if record.get("mode") == "head" else None,
        )
    return model_id


def _train_head(options, out, base, config, dataset, library, report, should_stop, started):
    from nsfw_desk.core.training.embeddings import gather
    from nsfw_desk.core.training.head import BATCH_SIZE, EPOCHS, LR, PATIENCE, train_head
    from nsfw_desk.core.training.heads import HeadScorer, rescore_from_embeddings

    try:
        start = HeadScorer.from_module(base.module, base.unsafe_indices)
    except ValueError as exc:
        raise TrainingError(
            f"Head mode needs a base model whose classifier is one linear layer: {exc}. "
            "Use --mode partial or --mode full."
        ) from exc

    def on_embedding(done: int, total: int) -> None:
        report(
            TrainProgress(
                "embeddings",
                0,
                0,
                0,
                0,
                message=f"computing embeddings the library lacks: {done}/{total} decoded",
            )
        )

    report.phase_line("embeddings", "reading stored embeddings")
    emb = gather(
        dataset.items, base, start.width, library, report=on_embedding, should_stop=should_stop
    )
    usable = set(emb.hashes)
    if emb.left_out:
        dataset.items = [i for i in dataset.items if i.hash in usable]
        counts = dataset.counts()
        try:
            data_mod.check_counts(counts)
        except TrainingError as exc:
            raise type(exc)(
                f"{exc} ({len(emb.left_out)} decided items were left out because no file "
                f"holds their content any more, e.g. {emb.left_out[0][1]}.)"
            ) from exc
    counts = dataset.counts()
    data_mod.split(dataset, options.val_fraction, options.seed)
    row = {h: n for n, h in enumerate(emb.hashes)}
    x_train = emb.matrix[[row[i.hash] for i in dataset.train]]
    y_train = np.array([i.is_unsafe for i in dataset.train])
    x_val = emb.matrix[[row[i.hash] for i in dataset.val]]
    y_val = np.array([i.is_unsafe for i in dataset.val])
    epochs = options.epochs or EPOCHS
    batch_size = options.batch_size or BATCH_SIZE
    lr = options.lr or LR
    train_started = time.monotonic()
    outcome = train_head(
        start,
        x_train,
        y_train,
        x_val,
        y_val,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=options.seed,
        patience=PATIENCE,
        progress=report,
        should_stop=should_stop,
    )
    train_s = time.monotonic() - train_started
    report.phase_line("evaluating", "before/after on the held-out split")
    new = HeadScorer(outcome.weight, outcome.bias, base.unsafe_indices)
    metrics = _scores_report(
        start.unsafe(start.probabilities(x_val)), new.unsafe(new.probabilities(x_val)), y_val
    )
    import torch

    weight_name, bias_name = _head_param_names(base.module)
    state = dict(base.module.state_dict())
    state[weight_name] = torch.from_numpy(outcome.weight)
    if bias_name:
        state[bias_name] = torch.from_numpy(outcome.bias)
    hyper = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": 1e-4,
        "optimizer": "AdamW",
        "patience": PATIENCE,
        "val_fraction": options.val_fraction,
        "seed": options.seed,
        "warm_start": "the base model's head",
    }
    extra = {
        "embedding_width": start.width,
        "head_params": [weight_name, bias_name],
        "imbalance": {
            "method": "weighted loss (balanced: n / (2 · n_class))",
            "class_weights": outcome.class_weights,
        },
        "embeddings": {
            "stored": emb.stored,
            "computed": emb.computed,
            "left_out": [{"hash": h, "why": why} for h, why in emb.left_out],
        },
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "epochs_run": outcome.epochs_run,
        "steps": outcome.steps,
        "train_seconds": round(train_s, 3),
    }
    record = _record(options, base, dataset, counts, hyper, extra, metrics)
    report_data = {
        "base_model_id": base.model_id,
        "mode": "head",
        **metrics,
    }
    report.phase_line("writing", f"writing {out}")
    model_id = _write(out, state, config, record, report_data, library, base)
    rescored = 0
    if library is not None:
        report.phase_line("rescoring", "re-scoring the library from stored embeddings")
        rescored = rescore_from_embeddings(library, base.model_id, model_id, new)
    lines = [
        f"Trained a new head for {base.display_name} on {len(dataset.train)} decisions "
        f"({counts['unsafe']} unsafe, {counts['safe']} safe in all; {len(dataset.val)} held "
        f"out) in {train_s:.1f} s: best epoch {outcome.best_epoch} of {outcome.epochs_run}.",
        f"Class imbalance: weighted loss (unsafe ×{outcome.class_weights['unsafe']:.2f}, "
        f"safe ×{outcome.class_weights['safe']:.2f}).",
        f"Embeddings: {emb.stored} stored (no decoding), {emb.computed} computed"
        + (f", {len(emb.left_out)} left out (no file holds them)" if emb.left_out else "")
        + ".",
        *([HEAD_RESUME_NOTE + "."] if options.resume else []),
        *report_lines(report_data),
        f"Saved {out} (model {model_id[:15]}).",
    ]
    if library is not None:
        lines.append(f"Re-scored {rescored} library items from stored embeddings (no decoding).")
    lines.append(f"Use it: nsfw-desk scan --model {out} FOLDER")
    log.info("trained %s from %s in %.1f s", model_id, base.model_id, time.monotonic() - started)
    return TrainResult(out, model_id, report_data, rescored, "\n".join(lines))


def _train_finetune(options, out, base, config, dataset, library, report, should_stop, started):
    """Partial or full fine-tuning through core/training/finetune.py (images are decoded)."""
    from nsfw_desk.core.training import finetune as ft
    from nsfw_desk.core.training.checkpoint import checkpoint_folder, remove_checkpoint
    from nsfw_desk.core.training.head import class_weights

    unsafe_index = base.unsafe_indices[0]
    safe_index = next(i for i in range(len(base.labels)) if i not in base.unsafe_indices)
    files: dict[str, Path] = {}
    missing: list[data_mod.Item] = []
    for item in dataset.items:
        path = next((Path(p) for p in item.paths if Path(p).is_file()), None)
        if path is None:
            missing.append(item)
        else:
            files[item.hash] = path
    if missing:
        log.warning("training: %d decided items have no file any more", len(missing))
        dataset.items = [i for i in dataset.items if i.hash in files]
        try:
            data_mod.check_counts(dataset.counts())
        except TrainingError as exc:
            raise type(exc)(f"{exc} ({_missing_line(missing)}.)") from exc
    data_mod.split(dataset, options.val_fraction, options.seed)
    counts = dataset.counts()

    def examples(items):
        return [
            ft.Example(files[i.hash], unsafe_index if i.is_unsafe else safe_index, i.hash)
            for i in items
        ]

    train_set, val_set = examples(dataset.train), examples(dataset.val)
    default_epochs, default_batch, default_lr = FINETUNE_DEFAULTS[options.mode]
    epochs = options.epochs or default_epochs
    batch_size = options.batch_size or default_batch
    lr = options.lr or default_lr
    y_train = np.array([e.target == unsafe_index for e in train_set])
    w_unsafe, w_safe = class_weights(y_train)
    weights = [w_safe] * len(base.labels)
    for i in base.unsafe_indices:
        weights[i] = w_unsafe

    def stopped_before() -> TrainingStopped:
        if resumable(out):  # resuming, or a checkpoint an earlier run left
            return TrainingStopped(
                "stopped before training went on; the checkpoint is kept: resume to continue "
                "from it"
            )
        return TrainingStopped(
            "stopped before the first epoch, before any checkpoint: there is nothing to "
            "resume; start the training again"
        )

    report.phase_line("preparing", "scoring the held-out images with the base model")
    before_scores, val_keep = _score_examples(base, val_set, should_stop, stopped_before)
    outcome = ft.finetune(
        base.module,
        base.data_config,
        train_set,
        val_set,
        mode=options.mode,
        unfreeze_blocks=options.unfreeze_blocks,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=options.seed,
        device=base.device,
        precision=options.precision,
        class_weights=weights,
        checkpoint_dir=checkpoint_folder(out),
        resume=options.resume,
        progress=report,
        should_stop=should_stop,
    )
    report.phase_line("evaluating", "before/after on the held-out split")
    base.module.load_state_dict({k: v.to(base.device) for k, v in outcome.state.items()})
    base.module.eval()
    after_scores, _ = _score_examples(
        base,
        [val_set[i] for i in val_keep],
        should_stop,
        lambda: TrainingStopped(
            "stopped while evaluating the trained model; its checkpoint is kept: resume to "
            "write the model without training again"
        ),
    )
    y_val = np.array([val_set[i].target == unsafe_index for i in val_keep])
    metrics = _scores_report(before_scores, after_scores, y_val)
    hyper = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "unfreeze_blocks": options.unfreeze_blocks if options.mode == "partial" else None,
        "val_fraction": options.val_fraction,
        "seed": options.seed,
        "optimizer": "AdamW, cosine schedule with warm-up, label smoothing",
    }
    extra = {
        "imbalance": {
            "method": "weighted loss (balanced: n / (2 · n_class))",
            "class_weights": {"unsafe": w_unsafe, "safe": w_safe},
        },
        "images": {
            "missing": len(missing),
            "missing_hashes": sorted(i.hash for i in missing),
            "left_out": len(outcome.left_out),
            "left_out_files": [
                {**path_fields(item.path), "why": item.reason} for item in outcome.left_out
            ],
        },
        "history": outcome.history,
        "best_epoch": outcome.best_epoch,
        "epochs_run": outcome.epochs_run,
        "early_stopped": outcome.early_stopped,
        "resumed_from_epoch": outcome.resumed_from_epoch,
        "steps": outcome.steps,
    }
    record = _record(options, base, dataset, counts, hyper, extra, metrics)
    report_data = {"base_model_id": base.model_id, "mode": options.mode, **metrics}
    report.phase_line("writing", f"writing {out}")
    state = {k: v.detach().cpu() for k, v in outcome.state.items()}
    model_id = _write(out, state, config, record, report_data, library, base)
    remove_checkpoint(checkpoint_folder(out))
    lines = [
        f"Fine-tuned {base.display_name} ({options.mode}) on {len(train_set)} decisions "
        f"({counts['unsafe']} unsafe, {counts['safe']} safe in all; {len(val_set)} held out): "
        f"best epoch {outcome.best_epoch} of {outcome.epochs_run}"
        + (" (stopped early: validation loss no longer improved)" if outcome.early_stopped else "")
        + (
            f"; resumed after epoch {outcome.resumed_from_epoch}"
            if outcome.resumed_from_epoch
            else ""
        )
        + ".",
        f"Class imbalance: weighted loss (unsafe ×{w_unsafe:.2f}, safe ×{w_safe:.2f}).",
        *_images_lines(missing, outcome.left_out),
        *report_lines(report_data),
        f"Saved {out} (model {model_id[:15]}).",
        "The backbone changed: scan again with the new model to score the library "
        f"(nsfw-desk scan --model {out} FOLDER).",
    ]
    log.info("fine-tuned %s from %s in %.1f s", model_id, base.model_id, time.monotonic() - started)
    return TrainResult(out, model_id, report_data, 0, "\n".join(lines))


def _missing_line(missing: list[data_mod.Item]) -> str:
    n = len(missing)
    example = display_path(missing[0].paths[0]) if missing[0].paths else missing[0].hash[:12]
    return (
        f"{n} decided item{'s' if n != 1 else ''} left out: no file holds "
        f"{'their' if n != 1 else 'its'} content any more, e.g. {example}"
    )


def _images_lines(missing: list[data_mod.Item], left_out) -> list[str]:
    """What was not trained on, for people (training.json lists them all)."""
    lines = []
    if missing:
        lines.append(f"{_missing_line(missing)}.")
    if left_out:
        shown = "; ".join(f"{display_path(i.path)}: {i.reason}" for i in left_out[:3])
        more = f"; and {len(left_out) - 3} more (see training.json)" if len(left_out) > 3 else ""
        n = len(left_out)
        lines.append(
            f"{n} image{'s' if n != 1 else ''} left out: no longer decoded or content "
            f"changed since the scan: {shown}{more}."
        )
    return lines


def _score_examples(
    model: LoadedModel,
    examples,
    should_stop: Callable[[], bool] | None = None,
    stopped: Callable[[], TrainingStopped] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Unsafe scores of the examples' images (decoded); indices of those that decoded.

    Polls `should_stop` between images (thousands of held-out images take a while) and
    raises `stopped()` when it turns true."""
    import torch

    from nsfw_desk.core.images import ImageError, decode, read_file

    scores: list[float] = []
    keep: list[int] = []
    batch: list = []

    def flush():
        if batch:
            scores.extend(model.predict(torch.stack(batch)).unsafe_scores.tolist())
            batch.clear()

    for n, example in enumerate(examples):
        if should_stop is not None and stopped is not None and should_stop():
            raise stopped()
        try:
            pixels, *_ = decode(read_file(example.path), min_side=model.input_size)
        except (ImageError, OSError) as exc:
            log.warning("evaluation: left out %s: %s", example.path, exc)
            continue
        batch.append(model.preprocess(pixels)[0])
        keep.append(n)
        if len(batch) >= 16:
            flush()
    flush()
    return np.array(scores, dtype=np.float64), keep
