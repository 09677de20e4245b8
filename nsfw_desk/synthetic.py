"""Harmless generated data: photo-like pictures and random-weight models in the hub layout.

Benchmarks, tests and the screenshot script use these instead of real (possibly sensitive)
images or downloaded weights.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth colour fields plus fine grain: JPEG sizes and decode times like a photo's."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    base = Image.fromarray(small, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    grain = rng.integers(-12, 13, size=(h, w, 3), dtype=np.int16)
    pixels = np.asarray(base, dtype=np.int16) + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_photo(
    path: Path,
    size: tuple[int, int] = (96, 72),
    *,
    seed: int = 0,
    fmt: str | None = None,
    mode: str = "RGB",
    **save_args,
) -> Path:
    """Save a synthetic photo, converted to `mode`, in the format the suffix (or `fmt`) says.

    The file appears whole or not at all (written to a hidden temporary name in the same
    folder, then renamed over `path`): a scan running at the same moment, in a test that
    writes photos while scanning, must never read half a photo.
    """
    image = synthetic_photo(size, seed)
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden (scans skip it), unique per process and thread, and with path's suffix so that
    # Pillow picks the same format from it.
    temporary = path.with_name(
        f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}"
    )
    try:
        image.save(temporary, format=fmt, **save_args)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def save_random_model(
    folder: Path,
    *,
    architecture: str = "test_vit",
    labels: tuple[str, ...] | list[str] = ("NSFW", "SFW"),
    seed: int = 0,
    model_args: dict | None = None,
) -> Path:
    """A random-weight timm classifier saved as `timm.models.save_for_hf` writes it.

    A freshly initialised head scores about 1/num_classes for every image, which would make
    parity and decision checks meaningless; so the head is set to read the main directions
    in which the backbone's embeddings of synthetic photos vary, scaled so that scores spread
    over [0, 1].
    """
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(
        architecture, pretrained=False, num_classes=len(labels), **(model_args or {})
    ).eval()
    _spread_head(model, len(labels), seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_for_hf(
        model,
        str(folder),
        model_config={"label_names": list(labels)},
        model_args=model_args,
        safe_serialization=True,
    )
    return folder


def save_random_transformers_model(
    folder: Path,
    *,
    labels: tuple[str, ...] | list[str] = ("real", "fake"),
    image_size: int = 64,
    patch_size: int = 16,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
) -> Path:
    """A random-weight Hugging Face transformers ViTForImageClassification in the hub layout
    (config.json, model.safetensors, preprocessor_config.json from a ViTImageProcessor).

    The defaults are tiny (tests); ViT-Small/16 at 384 px is `image_size=384,
    hidden_size=384, layers=12, heads=6` (the CommunityForensics deepfake detector's
    shapes). The head is spread over the photos' main directions as for timm models."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 4,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    photos = [synthetic_photo((320, 240), seed=2000 + seed * 24 + i) for i in range(24)]
    with torch.inference_mode():
        pixels = processor(images=photos, return_tensors="pt")["pixel_values"]
        embeddings = model.vit(pixel_values=pixels).last_hidden_state[:, 0]
    _set_spread(model.classifier, embeddings, len(labels), seed)
    folder.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in bench output
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(str(folder))
    return folder


def _spread_head(model, num_classes: int, seed: int, samples: int = 24) -> None:
    import timm.data
    import torch

    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    photos = [synthetic_photo((320, 240), seed=1000 + seed * samples + i) for i in range(samples)]
    with torch.inference_mode():
        batch = torch.stack([transform(p) for p in photos])
        embeddings = model.forward_head(model.forward_features(batch), pre_logits=True)
    _set_spread(model.get_classifier(), embeddings, num_classes, seed)


def _set_spread(head, embeddings, num_classes: int, seed: int) -> None:
    """Point a linear head at the main directions in which `embeddings` vary."""
    import torch

    mean = embeddings.mean(dim=0)
    _, _, directions = torch.linalg.svd(embeddings - mean, full_matrices=False)
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(num_classes, min(3, directions.shape[0]), generator=generator)
    weight = mixing @ directions[: mixing.shape[1]]
    logits = (embeddings - mean) @ weight.T
    weight *= 2.5 / (logits.std() + 1e-6)  # logit spread of a few units: scores use [0, 1]
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(-(weight @ mean))


def family_photo(family: int, size: tuple[int, int] = (96, 72), seed: int = 0) -> Image.Image:
    """A picture whose class is a visible property: family 0 is warm with horizontal
    stripes, family 1 cool with a checkerboard; position, period, shade and grain vary with
    `seed`. Training tests and benchmarks use the two families as 'unsafe' and 'safe'."""
    rng = np.random.default_rng(seed * 2 + family)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    period = int(rng.integers(6, 14))
    phase = int(rng.integers(0, period))
    if family == 0:
        pattern = ((ys + phase) // period) % 2
        low = np.array([150, 40, 20]) + rng.integers(-30, 30, 3)
        high = np.array([250, 170, 60]) + rng.integers(-30, 5, 3)
    else:
        pattern = (((ys + phase) // period) + ((xs + phase) // period)) % 2
        low = np.array([20, 60, 140]) + rng.integers(-20, 30, 3)
        high = np.array([90, 200, 240]) + rng.integers(-30, 15, 3)
    pixels = np.where(pattern[..., None] == 1, high, low).astype(np.int16)
    pixels += rng.integers(-20, 21, size=(h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_family_photos(folder: Path, count: int, *, seed: int = 0) -> dict[Path, int]:
    """`count` JPEGs of each family under `folder`: path → family (0 or 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[Path, int] = {}
    for i in range(count):
        for family in (0, 1):
            path = folder / f"f{family}_{seed}_{i:04d}.jpg"
            family_photo(family, seed=seed * 100_000 + i).save(path, quality=90)
            written[path] = family
    return written
