"""Hugging Face transformers image classifiers as detectors (ViTForImageClassification and
the other `AutoModelForImageClassification` architectures transformers ships).

Safety rules, as for timm models: weights from `model.safetensors` only (`use_safetensors`;
a folder with only `pytorch_model.bin` is refused by core/hub.py before we get here), and a
repository's own code never runs (`trust_remote_code=False`): a config that names custom
code (`auto_map`) or an architecture transformers does not ship is refused with a message.

Preprocessing is the repository's `preprocessor_config.json` through `AutoImageProcessor`,
applied per image in the scan's decode threads (where timm models preprocess too). The
embedding is what the classifier reads (for a ViT: the CLS token after the final layer
norm), captured with a hook on the classifier, so similarity and head training work.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_desk.core.backends import read_config
from nsfw_desk.core.detector import DetectorFacts, infer_kind, positive_indices_for
from nsfw_desk.core.hub import PREPROCESSOR_FILE, WEIGHTS_FILE, ModelError, ModelSpec
from nsfw_desk.core.runtime import (
    Prediction,
    available_cores,
    choose_device,
    choose_precision,
    limit_aspect,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

# The precisions this backend runs (by autocast); the others need core/accel's timm paths.
AUTOCAST_PRECISIONS = ("fp32", "fp16", "bf16")

INSTALL_HINT = "pip install 'nsfw-desk[transformers]'"


@dataclass
class TransformersDetector(DetectorFacts):
    """A ready-to-run transformers image classifier (core/detector.py `Detector`)."""

    module: torch.nn.Module
    processor: Any  # transformers' image processor for this model
    model_id: str
    spec: ModelSpec
    architecture: str
    labels: list[str]
    unsafe_indices: list[int]
    device: torch.device
    precision: str
    threads: int
    input_size: int  # shorter side the decoder keeps (the processor's largest target side)
    kind: str = "nsfw"
    device_name: str = ""
    preprocess_key: str = ""  # equal processor configs: one tensor for both models
    _keeps_aspect: bool = field(default=False, repr=False)

    def preprocess(self, pixels: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The processor's resize and normalisation; the decoded picture for the thumbnail
        (a fixed height × width resize does not keep the aspect ratio)."""
        if self._keeps_aspect:  # a shortest-edge resize: cut extreme strips as timm's path does
            pixels = limit_aspect(pixels)
        values = self.processor(images=pixels, return_tensors="pt")["pixel_values"]
        return values[0], pixels

    def predict(self, batch: torch.Tensor) -> Prediction:
        """Probabilities, positive score and the classifier's input, in one forward pass."""
        import torch

        captured: list[torch.Tensor] = []
        head = _classifier(self.module)
        hook = (
            head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
            if head is not None
            else None
        )
        try:
            with torch.inference_mode(), self._autocast():
                logits = self.module(pixel_values=batch.to(self.device, non_blocking=True)).logits
                probs = logits.float().softmax(dim=-1)
        finally:
            if hook is not None:
                hook.remove()
        probs_np = probs.cpu().numpy().astype(np.float32)
        positive = probs_np[:, self.unsafe_indices].sum(axis=1)
        features = captured[-1] if captured else logits
        embeddings = features.float().reshape(features.shape[0], -1).cpu().numpy()
        return Prediction(
            probabilities=probs_np,
            unsafe_scores=np.clip(positive, 0.0, 1.0).astype(np.float32),
            embeddings=embeddings,
        )

    def _autocast(self):
        import torch

        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def _classifier(module: Any) -> Any:
    """The classification head, whose input is the pooled feature (None if not found)."""
    import torch

    head = getattr(module, "classifier", None)
    return head if isinstance(head, torch.nn.Module) else None


def import_transformers(what: str) -> Any:
    """The transformers package, or a ModelError that says how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise ModelError(
            f"{what} is a Hugging Face transformers model, and the transformers package is "
            f"not installed. Install it with:\n  {INSTALL_HINT}"
        ) from exc
    return transformers


def refuse_custom_code(folder: Path, config: dict, file: str) -> None:
    """A config that asks for the repository's own Python code is refused."""
    if config.get("auto_map"):
        raise ModelError(
            f"{folder / file} names custom code (auto_map: "
            f"{', '.join(sorted(map(str, config['auto_map'])))}). nsfw-desk never runs a "
            "model repository's own code (trust_remote_code); choose a model whose "
            "architecture transformers ships."
        )


def check_config(folder: Path, transformers: Any) -> tuple[dict, str]:
    """The model's config and architecture, refused when it needs custom code or is not
    an image classifier transformers knows."""
    from transformers.models.auto import configuration_auto, modeling_auto

    config = read_config(folder)
    refuse_custom_code(folder, config, "config.json")
    architectures = config.get("architectures") or []
    model_type = config.get("model_type")
    if not isinstance(architectures, list) or not architectures:
        raise ModelError(f"{folder / 'config.json'} lists no `architectures`.")
    architecture = str(architectures[0])
    version = transformers.__version__
    if model_type not in configuration_auto.CONFIG_MAPPING_NAMES or not hasattr(
        transformers, architecture
    ):
        raise ModelError(
            f"Model architecture {architecture!r} (model_type {model_type!r}) is unknown to "
            f"transformers {version}: it would need the repository's own code "
            "(trust_remote_code), which nsfw-desk never runs. Upgrade transformers if a newer "
            "one ships it, or choose another model."
        )
    classifiers: set[str] = set()
    for names in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.values():
        classifiers.update([names] if isinstance(names, str) else names)
    if architecture not in classifiers:
        raise ModelError(
            f"{folder / 'config.json'}: {architecture} is not an image classifier "
            "(AutoModelForImageClassification); nsfw-desk scores images with classifiers."
        )
    return config, architecture


def input_side(processor: Any) -> tuple[int, bool]:
    """(shorter side the decoder must keep, whether the resize keeps the aspect ratio)."""
    size = getattr(processor, "size", None)
    if not getattr(processor, "do_resize", True) or size is None:
        crop = getattr(processor, "crop_size", None) or {}
        values = [v for v in dict(crop).values() if isinstance(v, int)]
        return (max(values) if values else 0), True
    if isinstance(size, int):
        return size, True
    size = dict(size)
    if "height" in size and "width" in size:
        return int(max(size["height"], size["width"])), False
    side = size.get("shortest_edge") or size.get("longest_edge") or 0
    return int(side), True


def load_transformers(
    folder: Path,
    model_id: str,
    spec: ModelSpec,
    *,
    device: str = "auto",
    precision: str = "auto",
    unsafe_label: str | Sequence[str] | None = None,
    kind: str | None = None,
) -> TransformersDetector:
    """The transformers image classifier in `folder`, ready for `predict`."""
    transformers = import_transformers(str(spec))
    config, architecture = check_config(folder, transformers)
    processor_file = folder / PREPROCESSOR_FILE
    if not processor_file.is_file():
        raise ModelError(
            f"Model folder {folder} has no {PREPROCESSOR_FILE}: the image processor that says "
            "how to resize and normalise images for this model. Copy it from the model's "
            "repository."
        )
    try:
        processor_config = json.loads(processor_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read {processor_file}: {exc}.") from exc
    if isinstance(processor_config, dict):
        refuse_custom_code(folder, processor_config, PREPROCESSOR_FILE)

    import torch

    try:
        processor = transformers.AutoImageProcessor.from_pretrained(
            str(folder), trust_remote_code=False, local_files_only=True
        )
    except Exception as exc:  # an unknown processor type, a broken file
        raise ModelError(
            f"Could not build the image processor from {processor_file}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our own progress; no tqdm bar on stderr
    try:
        module, info = transformers.AutoModelForImageClassification.from_pretrained(
            str(folder),
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
            output_loading_info=True,
        )
    except Exception as exc:  # corrupt file, shape mismatch
        raise ModelError(
            f"Could not load the weights in {folder / WEIGHTS_FILE} into {architecture}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    missing = list(info.get("missing_keys") or []) + [
        str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys") or []
    ]
    if missing:
        raise ModelError(
            f"{folder / WEIGHTS_FILE} does not hold all of {architecture}'s weights "
            f"(missing or mismatched: {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}); they would be random."
        )
    id2label = config.get("id2label") or {}
    try:
        labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{folder / 'config.json'}: id2label keys are not numbers.") from exc
    num_classes = int(module.config.num_labels)
    if len(labels) != num_classes:
        labels = [f"LABEL_{i}" for i in range(num_classes)]
    kind = kind or infer_kind(labels)
    positive = positive_indices_for(labels, kind, unsafe_label)

    torch_device = choose_device(device)
    chosen_precision = choose_precision(torch_device, precision)
    if chosen_precision not in AUTOCAST_PRECISIONS:  # int8, compile, onnx: timm models only
        raise ModelError(
            f"Precision {chosen_precision} is for timm models; {folder.name} is a transformers "
            f"model: choose one of {', '.join(('auto', *AUTOCAST_PRECISIONS))}."
        )
    threads = available_cores()
    torch.set_num_threads(threads)
    module = module.float().eval().to(torch_device)
    device_name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else ""
    side, keeps_aspect = input_side(processor)
    log.info(
        "loaded %s (%s, transformers %s) on %s, %s, %d threads",
        model_id,
        architecture,
        transformers.__version__,
        device_name or torch_device,
        chosen_precision,
        threads,
    )
    log.debug(
        "model %s from %s: labels %s, positive %s (%s), input side %d",
        model_id,
        folder,
        labels,
        [labels[i] for i in positive],
        kind,
        side,
    )
    return TransformersDetector(
        module=module,
        processor=processor,
        model_id=model_id,
        spec=spec,
        architecture=architecture,
        labels=labels,
        unsafe_indices=positive,
        device=torch_device,
        precision=chosen_precision,
        threads=threads,
        input_size=side,
        kind=kind,
        device_name=device_name,
        preprocess_key="transformers:"
        + json.dumps(processor.to_dict(), sort_keys=True, default=str),
        _keeps_aspect=keeps_aspect,
    )
