"""Why a ViT detector scored an image as it did: a heat map of where the evidence lies.

Two methods, measured by `nsfw-desk bench` on the default architecture (vit_tiny_patch16_384,
random weights; figures in README: Why was it flagged):

- **Grad-CAM**, the one the desk uses: the positive classes' summed probability
  differentiated with respect to the last block's norm1 output; channel weights are the
  gradient's mean over the patch grid, the map is the ReLU of the weighted sum of the
  activations. That is the `grad-cam` package's GradCAM on `blocks[-1].norm1` (its ViT
  example), computed here without its hooks and without its imports (OpenCV, matplotlib,
  SciPy, scikit-learn: tens of seconds on a first call); the bench checks the two agree.
  Class-specific: it shows what pushed the score up.
- **attention rollout** (Abnar & Zuidema 2020): every block's attention averaged over
  heads, plus the identity for the residual path, rows renormalised, multiplied through the
  blocks; the class token's row over the patches. Class-agnostic: what the class token drew
  on, not which way it pushed. On the random-weight bench model it was no better than a
  random order at finding the evidence.

Faithfulness is measured by deletion: grey out the hottest patches first, 10 % at a time, and
average the positive-class probability over the way (lower = the map found the evidence);
the bench prints it for each method and for a random order.

Both re-run the model's own layers (patch embedding, positional embedding, each block's
norm1 / qkv / q_norm / k_norm for the attention, the last block's parts for Grad-CAM) rather
than use hooks or switch timm's fused attention off: the model is shared with the scan, and
nothing here changes it.
The map covers the model's centre crop, so it comes with the crop's box as fractions of the
upright picture, which a preview of any size maps onto.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_desk.core.hub import ModelError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from nsfw_desk.core.runtime import LoadedModel

METHODS = ("gradcam", "rollout")
DEFAULT_METHOD = "gradcam"
GRADCAM_MISSING = "Grad-CAM needs the grad-cam package: pip install grad-cam"


@dataclass(frozen=True)
class HeatMap:
    """Where the evidence lies, on the model's patch grid, and where that grid sits."""

    values: np.ndarray  # (rows, cols) float32 in [0, 1], 1 = most evidence
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the crop, fractions of the picture
    method: str
    model_id: str
    model_name: str
    label: str  # the class(es) the map is for, e.g. "NSFW"
    score: float  # the positive-class probability of this pass
    seconds: float

    def describe(self) -> str:
        """One line for the status bar: which detector and class the map shows."""
        what = "attention rollout" if self.method == "rollout" else "Grad-CAM"
        return f"Heat map: {self.model_name} · {self.label} {self.score:.2f} · {what}"


def supports(model: Any) -> bool:
    """A timm VisionTransformer (blocks with attn.qkv, a patch grid): rollout can explain it."""
    module = getattr(model, "module", None)
    blocks = getattr(module, "blocks", None)
    patch = getattr(module, "patch_embed", None)
    return bool(
        blocks is not None
        and len(blocks) > 0
        and hasattr(blocks[0], "attn")
        and hasattr(blocks[0].attn, "qkv")
        and getattr(patch, "grid_size", None) is not None
    )


def crop_box(width: int, height: int, data_config: dict) -> tuple[float, float, float, float]:
    """The part of a `width` × `height` picture that timm's eval transform keeps, as
    fractions: the shorter side is resized to size / crop_pct, then the centre is cropped."""
    size = int(max(data_config["input_size"][1:]))
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    short = min(width, height)
    scaled = size / crop_pct / short  # resized pixels per original pixel
    keep_w = min(1.0, size / (width * scaled))
    keep_h = min(1.0, size / (height * scaled))
    return ((1 - keep_w) / 2, (1 - keep_h) / 2, (1 + keep_w) / 2, (1 + keep_h) / 2)


def explain(model: LoadedModel, pixels: Image.Image, method: str = DEFAULT_METHOD) -> HeatMap:
    """The heat map of `model`'s positive classes for `pixels` (decoded, upright, RGB)."""
    if method not in METHODS:
        raise ValueError(f"unknown heat-map method {method!r}; choose one of {METHODS}")
    if not supports(model):
        raise ModelError(
            f"{model.display_name} is not a ViT: the heat map explains ViT detectors only."
        )
    import torch

    from nsfw_desk.core.runtime import limit_aspect

    upright = limit_aspect(pixels)
    started = time.perf_counter()
    tensor, _ = model.preprocess(upright)
    x = tensor.unsqueeze(0).to(model.device)
    module: Any = model.module  # timm's VisionTransformer
    if method == "gradcam" and type(module.blocks[-1]).__name__ != "Block":
        method = "rollout"  # a block of another layout (norm after attention): no Grad-CAM
    if method == "rollout":
        with torch.inference_mode():
            values, probs = rollout(model.module, x)
    else:
        values, probs = gradcam(model.module, x, model.unsafe_indices)
    score = float(probs[model.unsafe_indices].sum())
    return HeatMap(
        values=_unit(values),
        box=crop_box(upright.width, upright.height, model.data_config),
        method=method,
        model_id=model.model_id,
        model_name=model.display_name,
        label=" + ".join(model.unsafe_labels),
        score=min(1.0, max(0.0, score)),
        seconds=time.perf_counter() - started,
    )


def attention_maps(module: Any, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each block's attention (B, heads, tokens, tokens) and the logits, from one pass that
    uses the model's own layers in timm's order (VisionTransformer.forward_features)."""
    import torch

    h = module.patch_embed(x)
    h = module._pos_embed(h)
    h = module.patch_drop(h)
    h = module.norm_pre(h)
    maps = []
    for block in module.blocks:
        attn = block.attn
        y = block.norm1(h)
        b, n, _ = y.shape
        qkv = attn.qkv(y).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        maps.append(torch.softmax((q * attn.scale) @ k.transpose(-2, -1), dim=-1).float())
        h = block(h)
    h = module.norm(h)
    return maps, module.forward_head(h)


def rollout(module: Any, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Attention rollout of the class token over the patch grid, and the probabilities.

    Only the class token's row of the product is wanted, so it is carried from the last
    block down as a vector (tokens² per block instead of tokens³: 12 ms, not seconds, at
    577 tokens)."""
    import torch

    maps, logits = attention_maps(module, x)
    tokens = maps[0].shape[-1]
    eye = torch.eye(tokens, dtype=torch.float32, device=maps[0].device)
    row = eye[0]
    for attention in reversed(maps):
        a = 0.5 * attention[0].mean(dim=0) + 0.5 * eye
        row = row @ (a / a.sum(dim=-1, keepdim=True))
    prefix = int(getattr(module, "num_prefix_tokens", 1))
    rows, cols = module.patch_embed.grid_size
    values = row[prefix:].reshape(rows, cols).cpu().numpy()
    return values, logits.float().softmax(dim=-1)[0].cpu().numpy()


def gradcam(module: Any, x: torch.Tensor, positive: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the positive classes' summed probability on the last block's norm1
    output (the target the grad-cam package's ViT example uses), on the patch grid.

    The grad-cam package's arithmetic (channel weights = the gradient's mean over the
    grid; map = ReLU of the weighted sum of the activations) without its hooks: the blocks
    before the last run without gradient, and only the last block and the head are
    differentiated, so it costs about one forward pass and changes nothing in the model."""
    import torch

    h = module.patch_embed(x)
    with torch.no_grad():
        h = module.norm_pre(module.patch_drop(module._pos_embed(h)))
        for block in module.blocks[:-1]:
            h = block(h)
    last = module.blocks[-1]
    with torch.enable_grad():
        a = last.norm1(h).detach().requires_grad_(True)
        y = h + last.drop_path1(last.ls1(last.attn(a)))
        y = y + last.drop_path2(last.ls2(last.mlp(last.norm2(y))))
        logits = module.forward_head(module.norm(y))
        probs = logits.float().softmax(dim=-1)
        (grad,) = torch.autograd.grad(probs[:, positive].sum(), a)
    prefix = int(getattr(module, "num_prefix_tokens", 1))
    rows, cols = module.patch_embed.grid_size
    acts, grads = a.detach()[0, prefix:], grad[0, prefix:]  # (patches, channels)
    cam = torch.relu(acts @ grads.mean(dim=0)).reshape(rows, cols)
    return cam.float().cpu().numpy(), probs.detach()[0].cpu().numpy()


def gradcam_package(
    module: Any, x: torch.Tensor, positive: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The same Grad-CAM through the grad-cam package (hooks on the shared model, and
    OpenCV, matplotlib, SciPy and scikit-learn imported first): for `bench` to compare."""
    try:
        from pytorch_grad_cam import GradCAM
    except ImportError as exc:
        raise ModelError(GRADCAM_MISSING) from exc
    import torch

    prefix = int(getattr(module, "num_prefix_tokens", 1))
    rows, cols = module.patch_embed.grid_size

    def to_grid(tokens: torch.Tensor) -> torch.Tensor:
        grid = tokens[:, prefix:, :].reshape(tokens.shape[0], rows, cols, tokens.shape[2])
        return grid.permute(0, 3, 1, 2)

    def target(output: torch.Tensor) -> torch.Tensor:
        return output.softmax(dim=-1)[..., positive].sum(dim=-1)

    with GradCAM(
        model=module, target_layers=[module.blocks[-1].norm1], reshape_transform=to_grid
    ) as cam:
        values = cam(input_tensor=x, targets=[target])[0]
    with torch.inference_mode():
        probs = module(x).float().softmax(dim=-1)[0].cpu().numpy()
    return np.asarray(values, dtype=np.float32), probs


def _unit(values: np.ndarray) -> np.ndarray:
    """`values` scaled to [0, 1] (a flat map becomes all zeros)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return ((values - low) / (high - low)).astype(np.float32)


def deletion_curve(
    model: LoadedModel, pixels: Image.Image, order: np.ndarray, steps: int = 10
) -> list[float]:
    """The positive-class probability as the patches in `order` (hottest first; indices
    into the flattened grid) are greyed out (set to the normalised mean, 0) in `steps`
    equal parts: a faithful map makes it fall fastest."""
    import torch

    tensor, _ = model.preprocess(pixels)
    module: Any = model.module  # timm's VisionTransformer
    rows, cols = module.patch_embed.grid_size
    ph, pw = tensor.shape[1] // rows, tensor.shape[2] // cols
    batch = []
    for step in range(steps + 1):
        masked = tensor.clone()
        for index in order[: round(len(order) * step / steps)]:
            r, c = divmod(int(index), cols)
            masked[:, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] = 0.0
        batch.append(masked)
    with torch.inference_mode():
        probs = module(torch.stack(batch).to(model.device)).float().softmax(dim=-1)
    return probs[:, model.unsafe_indices].sum(dim=1).cpu().tolist()


def area(curve: list[float]) -> float:
    """Area under a deletion curve over [0, 1] (trapezoids)."""
    ys = np.asarray(curve, dtype=np.float64)
    return float(((ys[1:] + ys[:-1]) / 2).mean()) if len(ys) > 1 else float(ys.sum())


def heat_colours(values: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """RGBA (rows, cols, 4) uint8 for a map in [0, 1]: transparent blue for cold through
    yellow to opaque red for hot, so the blurred preview shows through the cold parts."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    red = np.clip(2.0 * v, 0, 1)
    green = np.clip(2.0 - 2.0 * v, 0, 1) * np.clip(2.0 * v, 0, 1)
    blue = np.clip(1.0 - 2.0 * v, 0, 1)
    alpha = opacity * (0.15 + 0.85 * v)
    rgba = np.stack([red, green, blue, alpha], axis=-1)
    return (rgba * 255 + 0.5).astype(np.uint8)
