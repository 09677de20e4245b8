"""Writing a model folder in timm's hub layout, all of it or nothing.

A trained model is a folder (`config.json`, `model.safetensors`, and the training record)
that `load_model` reads like any other. It is written into a hidden folder beside the target
and swapped into place only when every file is on disk, so a full disk or a crash leaves an
earlier model at that path exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nsfw_desk.core.durable import fsync_dir, unwritable_reason, write_durably
from nsfw_desk.core.hub import CONFIG_FILE, WEIGHTS_FILE

if TYPE_CHECKING:
    import torch

TRAINING_FILE = "training.json"
REPORT_FILE = "report.json"


class ModelFolderError(Exception):
    """The target cannot hold a model folder (it is a file, or a folder of something else)."""


def base_config(folder: Path) -> dict:
    """The `config.json` of a model folder (hub layout), with a clear error if unreadable."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise ModelFolderError(f"{path} does not exist: {folder} is not a model folder.") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFolderError(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path} is not a model config (a JSON object).")
    return config


def _replaceable(folder: Path) -> bool:
    """Only an empty folder or an earlier model folder may be replaced."""
    try:
        names = set(os.listdir(folder))
    except OSError:
        return False
    return not names or {CONFIG_FILE, WEIGHTS_FILE} <= names


def check_target(out: Path) -> Path:
    """`out` as an absolute path that a model folder may be written to, or ModelFolderError."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    if not out.name:
        raise ModelFolderError(f"{out} cannot be a model folder.")
    if os.path.lexists(out):
        if out.is_symlink() or not out.is_dir():
            raise ModelFolderError(f"{out} exists and is not a folder; choose another --out.")
        if not _replaceable(out):
            raise ModelFolderError(
                f"{out} is neither empty nor a model folder (no {CONFIG_FILE} and "
                f"{WEIGHTS_FILE}); not replacing it. Choose another --out."
            )
    why = unwritable_reason(out, folder=True)
    if why:
        raise ModelFolderError(f"{why}.")
    return out


def _write_file(path: Path, data: bytes) -> None:
    write_durably(path, data)
    os.chmod(path, 0o600)  # O_CREAT's mode is filtered by the umask


def weights_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """`state` as safetensors bytes (tensors on the CPU, contiguous, detached)."""
    import safetensors.torch

    tensors = {name: t.detach().cpu().contiguous() for name, t in state.items()}
    return safetensors.torch.save(tensors)


def write_model_folder(
    out: Path,
    state: Mapping[str, torch.Tensor],
    config: dict,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> None:
    """Write `out` (config.json, model.safetensors, `extra_files`) atomically.

    Everything goes into a hidden folder beside `out` (files 0600, folder 0700), flushed to
    disk, then renamed into place; an earlier `out` is renamed aside first and deleted only
    after the new one is in place. Any failure (a full disk: OSError ENOSPC) deletes the
    partial folder and leaves `out` as it was.
    """
    out = check_target(out)
    files: dict[str, bytes] = {
        CONFIG_FILE: (json.dumps(config, indent=2, sort_keys=False) + "\n").encode("utf-8"),
        WEIGHTS_FILE: weights_bytes(state),
    }
    for name, content in (extra_files or {}).items():
        if os.path.basename(name) != name or name in (CONFIG_FILE, WEIGHTS_FILE, "", ".", ".."):
            raise ValueError(f"extra file name {name!r} is not a plain new file name")
        files[name] = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.partial-", dir=out.parent))
    try:
        os.chmod(tmp, 0o700)
        for name, content in files.items():
            _write_file(tmp / name, content)
        fsync_dir(tmp)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(tmp, out)
    else:
        check_target(out)  # still replaceable: nothing else appeared there meanwhile
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.old-", dir=out.parent))
        os.rmdir(aside)  # only a unique name was wanted
        os.rename(out, aside)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(aside, out)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):
        fsync_dir(out.parent)
