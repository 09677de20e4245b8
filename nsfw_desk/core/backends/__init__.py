"""Detector backends behind one interface (core/detector.py): timm, Hugging Face
transformers image classification, and the Stable Diffusion safety checker.

`load_detector` resolves the model's folder once (core/hub.py: a hub id, pinned, or a local
folder; safetensors only), reads its config.json to tell the backends apart
(`detect_backend`), and hands the folder to that backend. Every backend is imported lazily:
importing this package costs nothing, and `transformers` is needed only for its models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nsfw_desk.core.hub import CONFIG_FILE, ModelError, ModelSpec, model_folder
from nsfw_desk.core.progress import ProgressCallback

if TYPE_CHECKING:
    from nsfw_desk.core.detector import Detector

BACKENDS = ("timm", "transformers", "safety-checker")
SAFETY_CHECKER_ARCHITECTURE = "StableDiffusionSafetyChecker"


def read_config(folder: Path) -> dict:
    """The model's config.json as a dict, or a ModelError saying what is wrong with it."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}.") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{path} is not a model config (a JSON object).")
    return config


def detect_backend(folder: Path) -> str:
    """Which backend loads the model in `folder`, from its config.json: timm configs name
    their `architecture`; transformers configs list `architectures` and a `model_type`; the
    safety checker's `architectures` is ["StableDiffusionSafetyChecker"]."""
    config = read_config(folder)
    architectures = config.get("architectures")
    if isinstance(architectures, list) and SAFETY_CHECKER_ARCHITECTURE in architectures:
        return "safety-checker"
    if "architecture" in config:
        return "timm"
    if architectures or "model_type" in config:
        return "transformers"
    raise ModelError(
        f"{Path(folder) / CONFIG_FILE} names no architecture: neither a timm config "
        "(`architecture`) nor a Hugging Face transformers one (`architectures`, `model_type`)."
    )


def load_detector(
    model: str | os.PathLike[str] | ModelSpec | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    unsafe_label: str | Sequence[str] | None = None,
    kind: str | None = None,
    progress: ProgressCallback | None = None,
    offline: bool = False,
) -> Detector:
    """Resolve (download if needed) and load any supported model, ready for `predict`.

    `kind` (core/detector.py KINDS) is what the model detects; None reads it from the
    labels. `unsafe_label` names the positive class(es) when the labels do not tell."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    folder, model_id = model_folder(spec, progress, offline=offline)
    backend = detect_backend(folder)
    if backend == "timm":
        from nsfw_desk.core.runtime import load_timm

        return load_timm(
            folder,
            model_id,
            spec,
            device=device,
            precision=precision,
            unsafe_label=unsafe_label,
            kind=kind,
        )
    if backend == "transformers":
        from nsfw_desk.core.backends.transformers_backend import load_transformers

        return load_transformers(
            folder,
            model_id,
            spec,
            device=device,
            precision=precision,
            unsafe_label=unsafe_label,
            kind=kind,
        )
    try:
        from nsfw_desk.core.backends.safety_checker import (  # type: ignore[import-not-found,unused-ignore]
            load_safety_checker,
        )
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.safety_checker":
            raise
        raise ModelError(
            f"{spec} is a Stable Diffusion safety checker, which this version of nsfw-desk "
            "cannot load."
        ) from exc
    return load_safety_checker(folder, model_id, spec, device=device, precision=precision)
