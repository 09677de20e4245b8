"""Training checkpoints that survive a crash or a full disk: safetensors + JSON, never pickle.

A checkpoint folder holds `state.json` (epoch, step, history, RNG seeds, the options
fingerprint...) and the tensors file it names (`tensors-<n>.safetensors`: model weights,
optimiser state flattened into tensors, RNG states). A new checkpoint writes a new tensors
file first, flushes it, and only then replaces `state.json` by an atomic rename; so until
that rename the previous checkpoint is the one on disk, whole. A crash between the two, or a
disk that fills while writing, leaves the previous checkpoint loadable; the stray file is
removed by the next save.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_desk.core.durable import fsync_dir, write_durably
from nsfw_desk.core.training.common import TrainingError

if TYPE_CHECKING:
    from torch import Tensor

STATE_FILE = "state.json"
FORMAT = 1
_TENSORS_PREFIX = "tensors-"
_TENSORS_SUFFIX = ".safetensors"
_OPTIMIZER_PREFIX = "optimizer."


def checkpoint_folder(out: Path) -> Path:
    """Where the checkpoint for a model folder `out` lives: beside it, `<out>.checkpoint`."""
    return Path(str(out) + ".checkpoint")


def save_checkpoint(folder: Path, tensors: Mapping[str, Tensor], state: dict) -> None:
    """Write a checkpoint; the previous one stays whole until this one is complete.

    Raises OSError (the message says the previous checkpoint is kept) when the disk is full
    or the folder cannot be written; nothing half-written is left behind.
    """
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        previous = _read_state(folder)
    except (OSError, ValueError):
        previous = {}  # a damaged checkpoint: this one replaces it
    serial = int(previous.get("serial", 0)) + 1 if previous else 1
    name = f"{_TENSORS_PREFIX}{serial:06d}{_TENSORS_SUFFIX}"
    partial = folder / f".{name}.partial"
    state_tmp = folder / f".{STATE_FILE}.partial"
    try:
        plain = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
        # Serialised in memory and written by us: a full disk is then a plain OSError (ENOSPC),
        # where safetensors' own file writer raises its own error type.
        write_durably(partial, save(plain), exclusive=False)
        del plain
        os.replace(partial, folder / name)
        record = {
            **state,
            "format": FORMAT,
            "serial": serial,
            "tensors_file": name,
            "tensors_sha256": _sha256(folder / name),
        }
        _write_text(state_tmp, json.dumps(record, indent=1, sort_keys=True))
        fsync_dir(folder)
        os.replace(state_tmp, folder / STATE_FILE)  # the moment the new checkpoint counts
    except BaseException as exc:
        for leftover in (partial, state_tmp, folder / name):
            _unlink_quietly(leftover)
        if not isinstance(exc, OSError):
            raise
        kept = (
            f"the previous checkpoint (epoch {previous.get('epoch', '?')}) is kept"
            if previous
            else "there was no earlier checkpoint"
        )
        what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise OSError(
            exc.errno,
            f"could not write the training checkpoint in {folder}: {what}; {kept}. "
            "Free some space and resume the training",
        ) from exc
    fsync_dir(folder)
    _remove_stale(folder, keep=name)


def load_checkpoint(folder: Path) -> tuple[dict[str, Tensor], dict] | None:
    """The last complete checkpoint in `folder` (tensors, state), or None when there is none.

    Raises TrainingError when a checkpoint is there but damaged.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        state = _read_state(folder)
    except (OSError, ValueError) as exc:
        raise TrainingError(
            f"the training checkpoint in {folder} cannot be read ({exc}); delete that folder "
            "to start the training again"
        ) from exc
    if not state:
        return None
    path = folder / str(state.get("tensors_file", ""))
    if not path.is_file() or _sha256(path) != state.get("tensors_sha256"):
        raise TrainingError(
            f"the training checkpoint in {folder} is damaged ({path.name} is missing or "
            "differs from what was written); delete that folder to start the training again"
        )
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise TrainingError(
            f"the training checkpoint {path} cannot be read ({exc}); delete {folder} to start "
            "the training again"
        ) from exc
    return tensors, state


def has_checkpoint(folder: Path) -> bool:
    """A checkpoint is there (cheap: does not read the tensors)."""
    try:
        return bool(_read_state(Path(folder)))
    except (OSError, ValueError):
        return False


def remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint folder after a successful finish (only the files it writes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name in (STATE_FILE, f".{STATE_FILE}.partial") or entry.name.lstrip(
            "."
        ).startswith(_TENSORS_PREFIX):
            _unlink_quietly(entry)
    with contextlib.suppress(OSError):  # something else was put there: leave it
        folder.rmdir()


# --- optimiser state as tensors + JSON ----------------------------------------------------


def flatten_optimizer(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict]:
    """`optimizer.state_dict()` as tensors (`optimizer.<param>.<key>`) and JSON-able rest."""
    import torch

    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIMIZER_PREFIX}{param}.{key}"] = value
            else:
                scalars.setdefault(str(param), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, json.loads(json.dumps(meta))


def unflatten_optimizer(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict:
    """The inverse of `flatten_optimizer`: a dict `optimizer.load_state_dict` accepts."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(_OPTIMIZER_PREFIX):
            continue
        param, key = name[len(_OPTIMIZER_PREFIX) :].split(".", 1)
        state.setdefault(int(param), {})[key] = value
    for param, values in meta.get("scalars", {}).items():
        state.setdefault(int(param), {}).update(values)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in group.items()}
        for group in meta["param_groups"]
    ]  # JSON turned tuples (AdamW's betas) into lists
    return {"state": state, "param_groups": groups}


# --- files --------------------------------------------------------------------------------


def _read_state(folder: Path) -> dict:
    try:
        text = (folder / STATE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    state = json.loads(text)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{STATE_FILE} is not a checkpoint this version writes")
    return state


def _write_text(path: Path, text: str) -> None:
    write_durably(path, text.encode("utf-8"), exclusive=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _remove_stale(folder: Path, keep: str) -> None:
    """Tensors files of earlier checkpoints, or of a save a crash cut short."""
    for entry in folder.iterdir():
        stale_tensors = entry.name.lstrip(".").startswith(_TENSORS_PREFIX) and entry.name != keep
        if stale_tensors or entry.name == f".{STATE_FILE}.partial":
            _unlink_quietly(entry)
