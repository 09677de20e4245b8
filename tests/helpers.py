"""Test helpers: small random-weight timm models in the hub layout, and generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_model_dir(
    folder: Path,
    *,
    architecture: str = "test_vit",
    labels: tuple[str, ...] = ("NSFW", "SFW"),
    head_scale: float = 40.0,
    seed: int = 0,
    model_args: dict | None = None,
) -> Path:
    """Save a random-weight timm classifier as `save_for_hf` does (config + safetensors).

    The head is scaled up so that scores spread over [0, 1]: a freshly initialised head gives
    about 1/num_classes for every image, which would make score checks meaningless.
    """
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=len(labels),
                              **(model_args or {}))
    with torch.no_grad():
        head = model.get_classifier()
        head.weight.mul_(head_scale)
    folder.mkdir(parents=True, exist_ok=True)
    from timm.models import save_for_hf

    save_for_hf(model, str(folder), model_config={"label_names": list(labels)},
                model_args=model_args, safe_serialization=True)
    return folder


def make_image(path: Path, size=(96, 72), *, seed: int = 0, fmt: str | None = None,
               mode: str = "RGB", **save_args) -> Path:
    """A smooth random picture (photo-like, so JPEG sizes and decode times are realistic)."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    image = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 12, size=(h, w, 3))
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **save_args)
    return path
