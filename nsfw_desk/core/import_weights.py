"""Weights trained elsewhere (timm's train.py) into a model folder the desk loads.

train.py writes pickle checkpoints, which nsfw-desk never opens; timm's clean_checkpoint.py
turns one into a bare state dict in safetensors. That file has no config: no architecture,
no label names. `import_weights` takes them from the base model the run started from,
checks that every tensor fits that architecture (names and shapes), and writes a model
folder in timm's hub layout (core/model_folder.py, atomically). With the export the run
trained on (`data`), it also checks that the export's class order is the label order the
folder will claim, so a model can never come out with its classes silently swapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from nsfw_desk.core.hub import (
    CONFIG_FILE,
    PICKLE_SUFFIXES,
    WEIGHTS_FILE,
    ModelSpec,
    _pickle_refusal,
    model_folder,
)
from nsfw_desk.core.model_folder import TRAINING_FILE, ModelFolderError, base_config
from nsfw_desk.core.paths import display_path

if TYPE_CHECKING:
    import torch

# What wrappers put in front of every name: DistributedDataParallel (`module.`) and
# torch.compile (`_orig_mod.`), in either order (as timm's clean_state_dict strips them).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SHOWN = 8  # names listed per kind of mismatch


class WeightsError(Exception):
    """The weights cannot become a model folder as asked; the message is for the user."""


@dataclass
class ImportResult:
    out: Path
    model_id: str  # as load_model will name the new folder (sha256: of its weights)
    base_model_id: str
    architecture: str
    labels: list[str]
    tensors: int
    parameters: int
    stripped: list[str] = field(default_factory=list)  # wrapper prefixes taken off the names
    data_counts: dict[str, int] | None = None  # split → images, when `data` was given

    @property
    def summary(self) -> str:
        lines = [
            f"Wrote {display_path(self.out)}: {self.architecture}, {self.parameters:,} "
            f"parameters in {self.tensors:,} tensors, labels {', '.join(self.labels)} "
            "(index order).",
            f"Base model: {self.base_model_id}.",
        ]
        if self.stripped:
            lines.append(f"Took the prefix {' and '.join(self.stripped)} off every name.")
        if self.data_counts is None:
            lines.append(
                "No --data: the export's class order was not checked, and `compare` cannot "
                "leave out the images this model was trained on."
            )
        else:
            lines.append(
                "The export's class_map.txt matches these labels; "
                + ", ".join(f"{n:,} {split}" for split, n in self.data_counts.items())
                + " images recorded in training.json."
            )
        lines.append(
            f"Scan with: nsfw-desk scan --model {display_path(self.out)} FOLDER  "
            f"(id {self.model_id})"
        )
        return "\n".join(lines)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a pickle is refused by its name, unopened."""
    import safetensors
    import safetensors.torch

    path = Path(path)
    if path.name.lower().endswith(PICKLE_SUFFIXES):
        raise WeightsError(_pickle_refusal(path))
    if not path.is_file():
        raise WeightsError(
            f"{path} does not exist or is not a file; give the .safetensors file that "
            "clean_checkpoint.py --safetensors wrote."
        )
    try:  # safetensors parses a header and copies bytes: nothing in the file is run
        return safetensors.torch.load_file(str(path), device="cpu")
    except (OSError, safetensors.SafetensorError, ValueError) as exc:
        raise WeightsError(
            f"{path} is not a safetensors file ({type(exc).__name__}: {exc}). A checkpoint "
            "of timm's train.py (a pickle, whatever its name) is converted with "
            "clean_checkpoint.py --checkpoint CHECKPOINT --output weights.safetensors "
            "--safetensors --no-hash first (README: Export and calibration)."
        ) from exc


def strip_wrappers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Names without the wrapper prefixes, and which prefixes were taken off."""
    stripped: list[str] = []
    for prefix in WRAPPER_PREFIXES * 2:  # either order, each at most once
        if state and all(name.startswith(prefix) for name in state):
            state = {name[len(prefix) :]: t for name, t in state.items()}
            stripped.append(prefix)
    return state, stripped


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN:,} more" if len(names) > SHOWN else "")


def check_fit(
    state: dict[str, torch.Tensor], module: torch.nn.Module, architecture: str, labels: list[str]
) -> None:
    """Every tensor of the architecture is there with its shape, and nothing else."""
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        name for name in set(expected) & set(state) if tuple(state[name].shape) != expected[name]
    )
    if not (missing or unexpected or mismatched):
        return
    lines = [f"These weights do not fit the base model's architecture {architecture}:"]
    if missing:
        lines.append(f"- missing ({len(missing):,}): {_listed(missing)}")
    if unexpected:
        lines.append(f"- unexpected ({len(unexpected):,}): {_listed(unexpected)}")
    if mismatched:
        shapes = [f"{n} {tuple(state[n].shape)} vs {expected[n]}" for n in mismatched]
        lines.append(f"- other shape ({len(mismatched):,}, weights vs base): {_listed(shapes)}")
    head = _head_classes(state, module)
    if head is not None and head != len(labels) and not missing and not unexpected:
        lines.append(
            f"The weights have {head} classes, the base model {len(labels)} "
            f"({', '.join(labels)}): train with --num-classes {len(labels)}, or give "
            f"--labels with {head} names in the export's class_map.txt order."
        )
    elif len(missing) + len(unexpected) > len(expected) // 2:
        lines.append(
            "Most names differ: give as --base the model the training started from "
            "(train.py --model)."
        )
    raise WeightsError("\n".join(lines))


def _head_classes(state: dict[str, torch.Tensor], module: torch.nn.Module) -> int | None:
    """Rows of the weights' classifier, found by the name the model gives its head."""
    classifier = getattr(module, "pretrained_cfg", {}).get("classifier")
    weight = state.get(f"{classifier}.weight") if isinstance(classifier, str) else None
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 1 else None


def check_export(data: Path, labels: list[str]) -> tuple[dict[str, int], list[str], list[str]]:
    """The export the weights were trained on: its class_map.txt must list the labels in
    order (case aside). Returns (images per split, train hashes, val hashes)."""
    class_map, metadata = data / "class_map.txt", data / "metadata.jsonl"
    if not class_map.is_file() or not metadata.is_file():
        raise WeightsError(
            f"{data} is not an nsfw-desk export (no class_map.txt and metadata.jsonl); give "
            "the folder that `nsfw-desk export` wrote and train.py trained on."
        )
    try:
        classes = [line.strip() for line in class_map.read_text("utf-8").splitlines()]
        rows = [json.loads(line) for line in metadata.read_text("utf-8").splitlines() if line]
        hashes: dict[str, list[str]] = {"train": [], "val": []}
        for row in rows:
            hashes[str(row["split"])].append(str(row["hash"]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(
            f"{data}: cannot read its class_map.txt or metadata.jsonl: {exc}"
        ) from exc
    classes = [c for c in classes if c]
    if [c.lower() for c in classes] != [label.lower() for label in labels]:
        raise WeightsError(
            f"{class_map} lists the classes {', '.join(classes)} (index order), but the model "
            f"folder would name them {', '.join(labels)}: the scores would be for the wrong "
            "classes. Give --labels " + ",".join(classes) + " if the weights were trained "
            "with this class_map.txt (it then names the classes), or train with the base "
            "model whose labels are in this order."
        )
    return {split: len(h) for split, h in hashes.items()}, hashes["train"], hashes["val"]


def _checked_labels(labels: Sequence[str]) -> list[str]:
    names = [str(name).strip() for name in labels]
    if len(names) < 2 or any(not n for n in names) or len({n.lower() for n in names}) < len(names):
        raise WeightsError(
            f"--labels needs two or more distinct names separated by commas, not {labels!r}."
        )
    return names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_weights(
    weights: Path,
    base: str | os.PathLike[str] | None,
    out: Path,
    *,
    labels: Sequence[str] | None = None,
    data: Path | None = None,
    overwrite: bool = False,
    offline: bool = False,
) -> ImportResult:
    """Check `weights` against the base model and write `out` as a model folder.

    `labels` names the classes when the run changed them (another --num-classes, or an
    export without a base order); else they are the base model's `label_names`. Raises
    WeightsError (bad input, nothing written) or hub.ModelError (the base cannot be found).
    """
    import timm
    import torch
    from timm.models._hub import load_model_config_from_path

    out = Path(os.path.abspath(Path(out).expanduser()))
    if os.path.lexists(out) and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise WeightsError(f"{out} already exists; choose another --out or pass --overwrite.")
    state, stripped = strip_wrappers(read_weights(Path(weights)))
    spec = ModelSpec.parse(base)
    folder, base_id = model_folder(spec, offline=offline)
    try:
        config = base_config(folder)
        pretrained_cfg, architecture, model_args = load_model_config_from_path(folder)
    except ModelFolderError as exc:
        raise WeightsError(str(exc)) from exc
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise WeightsError(f"{folder / CONFIG_FILE} is not a timm model config: {exc}") from exc
    if not timm.is_model(architecture):
        raise WeightsError(f"The base model's architecture {architecture!r} is unknown to timm.")
    names = list(config.get("label_names") or [])
    names = _checked_labels(labels) if labels else names
    if not names:
        raise WeightsError(
            f"The base model {base_id} has no label_names; name the classes with --labels, "
            "in the export's class_map.txt order."
        )
    with torch.device("meta"):  # names and shapes only: no memory, no random init
        module = timm.create_model(
            architecture,
            pretrained=False,
            pretrained_cfg=pretrained_cfg,
            **{**model_args, "num_classes": len(names)},
        )
    check_fit(state, module, architecture, names)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except Exception as exc:  # what the name and shape check did not foresee
        raise WeightsError(
            f"The weights do not load into {architecture}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    data_counts: dict[str, int] | None = None
    train_hashes: list[str] = []
    val_hashes: list[str] = []
    if data is not None:
        data_counts, train_hashes, val_hashes = check_export(Path(data), names)

    new_config = dict(config)
    new_config["num_classes"] = len(names)
    new_config["label_names"] = names
    if labels:
        new_config.pop("label_descriptions", None)  # described the base model's classes
    for key in ("model_args", "pretrained_cfg"):
        if isinstance(new_config.get(key), dict) and "num_classes" in new_config[key]:
            new_config[key] = {**new_config[key], "num_classes": len(names)}
    mtime = datetime.fromtimestamp(os.stat(weights).st_mtime, timezone.utc)
    record = {
        "base_model_id": base_id,
        "mode": "external",
        "trained_at": mtime.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "imported_at": datetime.now(timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "trained_with": "timm train.py (imported with nsfw-desk import-weights)",
        "weights_file": Path(weights).name,
        "weights_sha256": _sha256(Path(weights)),
        "stripped_prefixes": stripped,
        "label_names": names,
        "data": None if data is None else Path(os.path.abspath(data)).name,
        "train_hashes": train_hashes,
        "val_hashes": val_hashes,
        "hashes_known": data is not None,
        "software": {
            "timm": timm.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    from nsfw_desk.core.model_folder import write_model_folder

    try:
        write_model_folder(
            out, state, new_config, {TRAINING_FILE: json.dumps(record, indent=2) + "\n"}
        )
    except ModelFolderError as exc:
        raise WeightsError(str(exc)) from exc
    return ImportResult(
        out=out,
        model_id="sha256:" + _sha256(out / WEIGHTS_FILE),
        base_model_id=base_id,
        architecture=architecture,
        labels=names,
        tensors=len(state),
        parameters=sum(t.numel() for t in state.values()),
        stripped=stripped,
        data_counts=data_counts,
    )
