"""The runtime side of a model: load it, choose device and precision, preprocess, predict.

`load_model` asks `hub` for the folder, then builds the timm model from safetensors. torch
and timm are imported inside functions, so importing this module stays cheap (the desk paints
before torch loads).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_desk.core import startup
from nsfw_desk.core.detector import DetectorFacts, infer_kind, positive_indices_for
from nsfw_desk.core.hub import CONFIG_FILE, WEIGHTS_FILE, ModelError, ModelSpec, model_folder
from nsfw_desk.core.precision import PRECISIONS, bf16_disabled
from nsfw_desk.core.progress import ProgressCallback

if TYPE_CHECKING:  # torch is heavy to import; keep it out of module import time
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
# PRECISIONS (every --precision choice) lives in core/precision.py with the modes' rules.
# Longer side : shorter side that preprocessing keeps; a more elongated picture is cut to its
# centre first (see `limit_aspect`).
MAX_ASPECT = 16


@dataclass
class Prediction:
    """One forward pass over a batch: everything we store per image."""

    probabilities: np.ndarray  # (N, classes) float32
    unsafe_scores: np.ndarray  # (N,) float32, summed probability of the unsafe classes
    embeddings: np.ndarray  # (N, D) float32, pooled pre-logits features
    # One JSON-able dict per image that the library keeps beside the score (scores.details),
    # e.g. the safety checker's per-concept margins; None for a plain classifier.
    details: list[dict] | None = None


@dataclass
class LoadedModel(DetectorFacts):
    """A ready-to-run timm classifier and the facts the rest of the app needs about it
    (the timm backend of core/detector.py's `Detector`)."""

    module: torch.nn.Module
    model_id: str
    spec: ModelSpec
    architecture: str
    labels: list[str]
    unsafe_indices: list[int]
    data_config: dict[str, Any]
    device: torch.device
    precision: str
    threads: int
    device_name: str = ""
    kind: str = "nsfw"  # what it detects: nsfw | ai-generated | other (core/detector.py)
    _transform: Callable[[Any], torch.Tensor] | None = field(default=None, repr=False)
    # int8, compile and onnx run the forward pass through this (see core/accel); None: eager.
    runner: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, repr=False
    )
    precision_reason: str = ""  # why this precision: asked for, or auto's reason
    _preprocess_key: tuple[Any, tuple] | None = field(default=None, repr=False)  # (of, key)

    @property
    def input_size(self) -> int:
        """Shorter side the decoder must keep so preprocessing never upsamples a draft."""
        crop_pct = self.data_config.get("crop_pct") or 1.0
        return int(max(self.data_config["input_size"][1:]) / crop_pct + 0.999)

    @property
    def transform(self) -> Callable[[Any], torch.Tensor]:
        """The model's own eval transform (timm's), built from its data config."""
        if self._transform is None:
            import timm.data

            self._transform = timm.data.create_transform(**self.data_config, is_training=False)
        return self._transform

    def preprocess(self, pixels: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model input for `pixels`, and the whole picture at the transform's scale.

        When the transform starts with an aspect-keeping resize (timm's usual eval
        transform), that resized image is returned too, so a thumbnail can be made from it
        instead of from the larger decoded pixels.
        """
        resize = self._aspect_resize()
        if resize is not None:
            return self.from_resized(resize(limit_aspect(pixels)))
        return self.transform(pixels), pixels

    def _aspect_resize(self) -> Any:
        """The transform's first step when it is an aspect-keeping resize, else None."""
        from torchvision import transforms as T

        steps = getattr(self.transform, "transforms", None)
        if (
            steps
            and isinstance(steps[0], T.Resize)
            and isinstance(steps[0].size, int | list)
            and (isinstance(steps[0].size, int) or len(steps[0].size) == 1)
        ):
            return steps[0]
        return None

    @property
    def resize_key(self) -> tuple | None:
        """Equal for two models whose transforms start with the same aspect-keeping resize,
        so a scan with both resizes each image once (core/detector.py)."""
        resize = self._aspect_resize()
        if resize is None:
            return None
        size = resize.size if isinstance(resize.size, int) else resize.size[0]
        return ("timm-shorter-side", size, str(resize.interpolation), resize.antialias)

    @property
    def preprocess_key(self) -> tuple:
        """Equal for two models whose whole eval transform is the same (one tensor for both).
        Made once: Normalize's repr formats tensors, ~1 ms a call, and a scan asks per file."""
        transform = self.transform
        if self._preprocess_key is None or self._preprocess_key[0] is not transform:
            self._preprocess_key = (transform, ("timm", repr(transform)))
        return self._preprocess_key[1]

    def from_resized(self, resized: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """`preprocess` after its first step (the resize `resize_key` names)."""
        from torchvision import transforms as T

        steps = self.transform.transforms  # type: ignore[attr-defined]
        return T.Compose(steps[1:])(resized), resized

    def predict(self, batch: torch.Tensor) -> Prediction:
        """Probabilities, unsafe score and embedding from a single forward pass."""
        if self.runner is not None:
            probs_np, embeddings = self.runner(batch)
        else:
            probs_np, embeddings = self._eager(batch)
        startup.first_batch_done()
        probs_np = probs_np.astype(np.float32, copy=False)
        unsafe = probs_np[:, self.unsafe_indices].sum(axis=1)
        return Prediction(
            probabilities=probs_np,
            unsafe_scores=np.clip(unsafe, 0.0, 1.0).astype(np.float32),
            embeddings=embeddings.astype(np.float32, copy=False),
        )

    def _eager(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        import torch

        module: Any = self.module  # timm's methods, which torch.nn.Module does not declare
        with torch.inference_mode(), self._autocast():
            x = batch.to(self.device, non_blocking=True)
            features = module.forward_features(x)
            embedding = module.forward_head(features, pre_logits=True)
            logits = module.get_classifier()(embedding)
            probs = logits.float().softmax(dim=-1)
        return probs.cpu().numpy(), embedding.float().cpu().numpy()

    def _autocast(self):
        import torch

        if self.precision not in ("fp16", "bf16"):
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def limit_aspect(pixels: Image.Image, limit: int = MAX_ASPECT) -> Image.Image:
    """The centre of a picture more elongated than `limit`:1, cut to that ratio.

    The eval transform scales the shorter side to the model's size and then crops the centre,
    so a 60000×1 strip (a 100-byte PNG) would first become a 10-gigapixel image: minutes and
    gigabytes, or the out-of-memory killer. The model's crop spans at most the shorter side
    around the centre, well inside what is kept, and the scale stays the same (the shorter
    side is untouched), so the model sees the same pixels up to rounding (at most 2 of 255
    levels, scores within 0.0002 in tests/test_hostile.py).
    """
    box = aspect_box(*pixels.size, limit)
    return pixels if box is None else pixels.crop(box)


def aspect_box(
    width: int, height: int, limit: int = MAX_ASPECT
) -> tuple[int, int, int, int] | None:
    """`limit_aspect`'s crop as (left, top, right, bottom), or None when the picture is kept
    whole (core/gpu_prepare.py cuts tensors by it)."""
    short, long = min(width, height), max(width, height)
    if long <= short * limit:
        return None
    keep = short * limit
    start = (long - keep) // 2
    if width > height:
        return (start, 0, start + keep, height)
    return (0, start, width, start + keep)


def unsafe_indices_for(labels: Sequence[str], override: str | Sequence[str] | None) -> list[int]:
    """Which classes count as unsafe: the override if given, else the known unsafe names."""
    return positive_indices_for(labels, "nsfw", override)


def choose_device(requested: str = "auto") -> torch.device:
    """`auto` is CUDA, then Apple MPS, then CPU; an explicit choice must be available."""
    import torch

    if requested not in DEVICES:
        raise ModelError(f"Unknown device {requested!r}; choose one of {', '.join(DEVICES)}.")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    log.debug("device: %s asked for; CUDA available: %s, MPS available: %s", requested, cuda, mps)
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        raise ModelError(
            "Device cuda was asked for (--device, or Device in Settings), but torch sees no "
            "CUDA GPU."
        )
    if requested == "mps" and not mps:
        raise ModelError(
            "Device mps was asked for (--device, or Device in Settings), but Apple MPS is not "
            "available."
        )
    return torch.device(requested)


def choose_precision(
    device: torch.device, requested: str = "auto", architecture: str | None = None
) -> str:
    """See `choose_precision_why`; this is its choice alone."""
    return choose_precision_why(device, requested, architecture)[0]


def choose_precision_why(
    device: torch.device, requested: str = "auto", architecture: str | None = None
) -> tuple[str, str]:
    """The precision to run, and why.

    An explicit choice must be runnable here (core/precision.py check_available says what is
    missing otherwise). `auto` on the CPU takes the fastest mode that `nsfw-desk bench`
    showed within the flip budget on this machine (its profile for `architecture`); without
    a profile: bf16 on CPUs with native bf16 (measured faster with no decision flipped, see
    README: Precision), fp32 on other CPUs and on MPS, fp16 autocast on CUDA.
    """
    from nsfw_desk.core import precision

    if requested not in PRECISIONS:
        raise ModelError(f"Unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}.")
    if requested != "auto":
        precision.check_available(requested, device)
        if requested == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("precision bf16 asked for on a CPU without native bf16: it is emulated")
        chosen, why = requested, f"asked for on {device.type}"
    else:
        chosen, why = precision.choose_from_profile(
            device, architecture
        ) or precision.default_choice(device)
    log.debug("precision %s: %s", chosen, why)
    return chosen, why


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo on Linux);
    False whenever NSFW_DESK_NO_BF16 is set, to behave as on a CPU without it."""
    if bf16_disabled():
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_model(
    model: str | os.PathLike[str] | ModelSpec | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    unsafe_label: str | Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    offline: bool = False,
    kind: str | None = None,
) -> LoadedModel:
    """Resolve, download if needed, and load a timm classifier ready for `predict`.

    core/backends `load_detector` loads any backend's model; this one is timm's."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    folder, model_id = model_folder(spec, progress, offline=offline)
    return load_timm(
        folder,
        model_id,
        spec,
        device=device,
        precision=precision,
        unsafe_label=unsafe_label,
        kind=kind,
    )


def load_timm(
    folder: Path,
    model_id: str,
    spec: ModelSpec,
    *,
    device: str = "auto",
    precision: str = "auto",
    unsafe_label: str | Sequence[str] | None = None,
    kind: str | None = None,
) -> LoadedModel:
    """The timm classifier in `folder` (config.json + model.safetensors, as resolved)."""
    from nsfw_desk.core.precision import enable_mps_fallback

    enable_mps_fallback()  # before torch loads; macOS only
    imports_start = time.perf_counter()
    import safetensors.torch
    import timm
    import torch
    from timm.models._hub import load_model_config_from_path

    startup.imports_done(time.perf_counter() - imports_start)

    try:
        pretrained_cfg, architecture, model_args = load_model_config_from_path(folder)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE} is not a timm model config: {exc}") from exc
    if not timm.is_model(architecture):
        raise ModelError(
            f"Model architecture {architecture!r} is unknown to timm {timm.__version__}; "
            "upgrade timm or choose another model."
        )
    num_classes = int(pretrained_cfg.get("num_classes") or 0)
    labels = list(pretrained_cfg.get("label_names") or [])
    if not labels:
        labels = [f"class_{i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ModelError(
            f"{folder / CONFIG_FILE} lists {len(labels)} labels for {num_classes} classes."
        )
    kind = kind or infer_kind(labels)
    unsafe = positive_indices_for(labels, kind, unsafe_label)

    try:
        module = timm.create_model(
            architecture,
            pretrained=False,
            pretrained_cfg=pretrained_cfg,
            **{**model_args, "num_classes": num_classes},
        )
        state = safetensors.torch.load_file(str(folder / WEIGHTS_FILE), device="cpu")
        module.load_state_dict(state)
    except Exception as exc:  # corrupt file, shape mismatch, unknown argument
        raise ModelError(
            f"Could not load the weights in {folder / WEIGHTS_FILE} into {architecture}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc

    torch_device = choose_device(device)
    chosen_precision, reason = choose_precision_why(torch_device, precision, architecture)
    threads = available_cores()
    torch.set_num_threads(threads)
    module.eval().to(torch_device)
    device_name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else ""
    data_config = timm.data.resolve_model_data_config(module)
    from nsfw_desk.core.accel import prepare_runner

    runner = prepare_runner(
        chosen_precision,
        module,
        model_id=model_id,
        input_size=tuple(data_config["input_size"]),
        threads=threads,
    )
    # A local model's source is a path, and paths are logged at debug level only: the model
    # id (org/name@commit or sha256:…) says which model without saying where it lives.
    log.info(
        "loaded %s (%s) on %s, %s (%s), %d threads",
        model_id,
        architecture,
        device_name or torch_device,
        chosen_precision,
        reason,
        threads,
    )
    startup.model_loaded()
    log.debug(
        "model %s from %s: labels %s, unsafe %s, input %s, torch %s, timm %s",
        model_id,
        folder,
        labels,
        [labels[i] for i in unsafe],
        data_config.get("input_size"),
        torch.__version__,
        timm.__version__,
    )
    return LoadedModel(
        module=module,
        model_id=model_id,
        spec=spec,
        architecture=architecture,
        labels=labels,
        unsafe_indices=unsafe,
        data_config=data_config,
        device=torch_device,
        precision=chosen_precision,
        threads=threads,
        device_name=device_name,
        kind=kind,
        runner=runner,
        precision_reason=reason,
    )
