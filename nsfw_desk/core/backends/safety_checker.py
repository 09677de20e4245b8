"""The Stable Diffusion Safety Checker as a detector, without diffusers.

CompVis/stable-diffusion-safety-checker is a CLIP ViT-L/14 image tower (`vision_model.*`),
a bias-free projection to 768 dimensions (`visual_projection.weight`), 17 concept embeddings
with a threshold each (`concept_embeds`, `concept_embeds_weights`) and 3 "special care"
embeddings with theirs (`special_care_embeds`, `special_care_embeds_weights`). The tower is
built with `transformers.CLIPVisionModel` from the config's `vision_config` and every weight
is read from `model.safetensors`; the pickle `pytorch_model.bin` beside it is never opened.

The rule is diffusers' `StableDiffusionSafetyChecker.forward`, step for step:

1. cosine similarity (in float32) of the projected pooled image feature to every concept;
2. the special-care slots in order: margin = round(cos − threshold + adjustment, 3), with
   adjustment starting at 0.0 and set to 0.01 by the first margin `> 0`;
3. the concepts: margin = round(cos − threshold + adjustment, 3); a concept fires when its
   margin is `> 0`, and the image is flagged when any concept fires.

The arithmetic is float32 as numpy ≥ 2 does it for diffusers' float32 scalars and Python
floats. Those margins are multiples of 0.001, so with m the largest concept margin the score

    p = 1 / (1 + exp(−50 · (m − 0.0005)))

is ≥ 0.5 exactly when m > 0, i.e. exactly when the rule flags the image: a margin of 0 (not
flagged) gives 0.494, the smallest flagging margin 0.001 gives 0.506. The map is monotone in
m; ±0.02 gives 0.73 / 0.26, ±0.05 gives 0.92 / 0.07. Each image keeps its margins
(`Prediction.details`: concepts, special, adjustment, fired, special_fired) so the desk can
say which slots fired; the concept names were never published, so slots are indices.

Precision "auto" is fp32 on a CPU and fp16 on CUDA (the tower only: projection, cosine and
rule stay float32), since a bf16 tower moves margins by about 0.01 and flips borderline flags.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_desk.core.detector import DetectorFacts
from nsfw_desk.core.hub import CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, ModelError, ModelSpec
from nsfw_desk.core.runtime import Prediction, available_cores, choose_device, limit_aspect

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

ARCHITECTURE = "StableDiffusionSafetyChecker"
PREPROCESSOR_FILE = "preprocessor_config.json"
CONCEPTS = 17
SPECIAL = 3
SPECIAL_ADJUSTMENT = 0.01
# The score map: p = sigmoid(SCORE_SLOPE * (margin - SCORE_SHIFT)); margins are on a 0.001
# grid, so the half-step shift puts 0 below 0.5 and 0.001 above it.
SCORE_SLOPE = 50.0
SCORE_SHIFT = 0.0005
LABELS = ["safe", "nsfw"]
TRANSFORMERS_MISSING = (
    "The Stable Diffusion Safety Checker needs the transformers package: "
    "pip install 'nsfw-desk[transformers]'"
)


def score_from_margin(margin: float | np.ndarray) -> np.ndarray:
    """The documented monotone map from the largest concept margin to a score in [0, 1]."""
    m = np.asarray(margin, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-SCORE_SLOPE * (m - SCORE_SHIFT)))).astype(np.float32)


def apply_rule(
    special_cos: np.ndarray,
    special_thresholds: np.ndarray,
    concept_cos: np.ndarray,
    concept_thresholds: np.ndarray,
) -> list[dict[str, Any]]:
    """diffusers' rule on cosine similarities: per image, the margins and what fired.

    `special_cos` (N, 3) and `concept_cos` (N, 17) are float32; thresholds the weights."""
    special_cos = np.asarray(special_cos, dtype=np.float32)
    concept_cos = np.asarray(concept_cos, dtype=np.float32)
    special_t = np.asarray(special_thresholds, dtype=np.float32)
    concept_t = np.asarray(concept_thresholds, dtype=np.float32)
    results = []
    for row_special, row_concept in zip(special_cos, concept_cos, strict=True):
        adjustment = 0.0
        special: list[float] = []
        special_fired: list[int] = []
        for k in range(len(row_special)):  # in order: a hit raises the later slots too
            margin = np.round(row_special[k] - special_t[k] + np.float32(adjustment), 3)
            special.append(float(margin))
            if margin > 0:
                special_fired.append(k)
                adjustment = SPECIAL_ADJUSTMENT
        margins = np.round(row_concept - concept_t + np.float32(adjustment), 3)
        results.append(
            {
                "concepts": [round(float(m), 3) for m in margins],
                "special": [round(s, 3) for s in special],
                "adjustment": adjustment,
                "fired": [int(i) for i in np.flatnonzero(margins > 0)],
                "special_fired": special_fired,
                "max_margin": float(margins.max()),
            }
        )
    return results


@dataclass
class SafetyChecker(DetectorFacts):
    """A loaded safety checker: what the scan and the desk use from a detector."""

    tower: Any  # transformers.CLIPVisionModel
    projection: torch.Tensor  # (projection_dim, hidden) float32
    concept_embeds: torch.Tensor  # (17, projection_dim) float32
    concept_thresholds: np.ndarray  # (17,) float32
    special_embeds: torch.Tensor  # (3, projection_dim) float32
    special_thresholds: np.ndarray  # (3,) float32
    processor: Any  # transformers.CLIPImageProcessor
    model_id: str
    spec: ModelSpec
    device: torch.device
    precision: str
    threads: int
    shortest_edge: int
    device_name: str = ""
    architecture: str = ARCHITECTURE
    kind: str = "nsfw"
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    unsafe_indices: list[int] = field(default_factory=lambda: [1])

    @property
    def input_size(self) -> int:
        """Shorter side the decoder must keep: CLIP resizes the shorter side to this."""
        return self.shortest_edge

    def preprocess(self, pixels: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """CLIP's preprocessing from preprocessor_config.json; the picture for a thumbnail."""
        pixels = limit_aspect(pixels.convert("RGB"))
        values = self.processor(images=pixels, return_tensors="pt")["pixel_values"]
        return values[0], pixels

    def image_embeddings(self, batch: torch.Tensor) -> torch.Tensor:
        """The projected pooled image features (N, projection_dim), float32."""
        import torch

        with torch.inference_mode():
            x = batch.to(self.device)
            if self.precision in ("fp16", "bf16"):
                dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    pooled = self.tower(pixel_values=x).pooler_output
            else:
                pooled = self.tower(pixel_values=x).pooler_output
            return pooled.float() @ self.projection.t()

    def predict(self, batch: torch.Tensor) -> Prediction:
        import torch

        embeds = self.image_embeddings(batch)
        with torch.inference_mode():
            normed = torch.nn.functional.normalize(embeds)
            special = normed @ torch.nn.functional.normalize(self.special_embeds).t()
            concept = normed @ torch.nn.functional.normalize(self.concept_embeds).t()
        details = apply_rule(
            special.cpu().numpy(),
            self.special_thresholds,
            concept.cpu().numpy(),
            self.concept_thresholds,
        )
        margins = np.array([d.pop("max_margin") for d in details], dtype=np.float64)
        scores = score_from_margin(margins)
        return Prediction(
            probabilities=np.stack([1.0 - scores, scores], axis=1).astype(np.float32),
            unsafe_scores=scores,
            embeddings=embeds.cpu().numpy().astype(np.float32),
            details=details,
        )


def is_safety_checker_config(config: dict) -> bool:
    return ARCHITECTURE in (config.get("architectures") or [])


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path} is missing: the safety checker folder needs it.") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object.")
    return data


def _check_weights(folder: Path) -> Path:
    weights = folder / WEIGHTS_FILE
    if weights.is_file():
        return weights
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError(
            f"Refusing to load {folder / pickles[0]}: it is a pickle checkpoint, and unpickling "
            f"a file can run arbitrary code. nsfw-desk loads the safety checker from "
            f"{WEIGHTS_FILE} only; download that file of the repository into {folder}."
        )
    raise ModelError(f"Model folder {folder} has no {WEIGHTS_FILE}.")


def _tensor(state: dict, name: str, shape: tuple[int, ...], weights: Path) -> torch.Tensor:
    if name not in state:
        raise ModelError(f"{weights} has no {name!r}: it is not a Stable Diffusion safety checker.")
    tensor = state[name].float()
    if tuple(tensor.shape) != shape:
        raise ModelError(
            f"{weights}: {name} has shape {tuple(tensor.shape)}, expected {shape} from "
            f"{weights.parent / CONFIG_FILE}."
        )
    return tensor


def _tower_state(state: dict, expected: set[str], weights: Path) -> dict:
    """The checkpoint's `vision_model.*` tensors under the names the tower expects.

    diffusers wraps `CLIPVisionModel` as `vision_model`, so the checkpoint says
    `vision_model.vision_model.encoder…`; a transformers version whose CLIPVisionModel has no
    inner `vision_model` expects the name without the second prefix."""
    tower = {}
    for key, value in state.items():
        if not key.startswith("vision_model."):
            continue
        rest = key[len("vision_model.") :]
        if rest not in expected and rest.startswith("vision_model."):
            rest = rest[len("vision_model.") :]
        if rest.endswith("position_ids") and rest not in expected:
            continue  # a buffer older transformers saved; recomputed
        tower[rest] = value.float()
    missing = sorted(expected - set(tower))
    unexpected = sorted(set(tower) - expected)
    if missing or unexpected:
        raise ModelError(
            f"{weights} does not match the CLIP vision config in {weights.parent / CONFIG_FILE}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    return tower


def load_safety_checker(
    folder: Path,
    model_id: str,
    spec: ModelSpec,
    *,
    device: str = "auto",
    precision: str = "auto",
) -> SafetyChecker:
    """The safety checker in `folder` (config.json, preprocessor_config.json,
    model.safetensors), ready for `predict`; a ModelError saying what is wrong otherwise."""
    folder = Path(folder)
    weights = _check_weights(folder)
    config = _read_json(folder / CONFIG_FILE)
    if not is_safety_checker_config(config):
        raise ModelError(
            f"{folder / CONFIG_FILE} does not name {ARCHITECTURE} in its architectures."
        )
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        raise ModelError(f"{folder / CONFIG_FILE} has no vision_config.")
    preprocessor = _read_json(folder / PREPROCESSOR_FILE)
    try:
        import safetensors.torch
        import torch
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel
    except ImportError as exc:
        raise ModelError(TRANSFORMERS_MISSING) from exc

    try:
        vision_config = CLIPVisionConfig.from_dict(vision)
        tower = CLIPVisionModel(vision_config)
    except Exception as exc:  # a config transformers cannot build
        raise ModelError(
            f"{folder / CONFIG_FILE}: cannot build its CLIP vision tower: {exc}"
        ) from exc
    hidden = int(vision_config.hidden_size)
    projection_dim = int(config.get("projection_dim") or 768)
    try:
        state = safetensors.torch.load_file(str(weights), device="cpu")
    except Exception as exc:  # a truncated or corrupt file
        raise ModelError(f"{weights} cannot be read as safetensors: {exc}") from exc
    projection = _tensor(state, "visual_projection.weight", (projection_dim, hidden), weights)
    concepts = _tensor(state, "concept_embeds", (CONCEPTS, projection_dim), weights)
    concept_t = _tensor(state, "concept_embeds_weights", (CONCEPTS,), weights)
    special = _tensor(state, "special_care_embeds", (SPECIAL, projection_dim), weights)
    special_t = _tensor(state, "special_care_embeds_weights", (SPECIAL,), weights)
    tower.load_state_dict(_tower_state(state, set(tower.state_dict()), weights))
    try:
        processor = CLIPImageProcessor(**_processor_args(preprocessor))
    except Exception as exc:
        raise ModelError(
            f"{folder / PREPROCESSOR_FILE}: not a CLIP image processor: {exc}"
        ) from exc
    shortest = _shortest_edge(processor.size)

    torch_device = choose_device(device)
    if precision == "auto":
        chosen = "fp16" if torch_device.type == "cuda" else "fp32"
    else:
        from nsfw_desk.core.runtime import choose_precision

        chosen = choose_precision(torch_device, precision)
    threads = available_cores()
    torch.set_num_threads(threads)
    tower.eval().to(torch_device)
    log.info("loaded %s (%s) on %s, %s", model_id, ARCHITECTURE, torch_device, chosen)
    return SafetyChecker(
        tower=tower,
        projection=projection.to(torch_device),
        concept_embeds=concepts.to(torch_device),
        concept_thresholds=concept_t.numpy().astype(np.float32),
        special_embeds=special.to(torch_device),
        special_thresholds=special_t.numpy().astype(np.float32),
        processor=processor,
        model_id=model_id,
        spec=spec,
        device=torch_device,
        precision=chosen,
        threads=threads,
        shortest_edge=int(shortest),
        device_name=torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else "",
    )


def _processor_args(preprocessor: dict) -> dict:
    """The keys CLIPImageProcessor takes (the real file also names its old class)."""
    skip = {"feature_extractor_type", "image_processor_type", "processor_class"}
    return {k: v for k, v in preprocessor.items() if k not in skip}


def _shortest_edge(size: Any) -> int:
    """The shorter side CLIP resizes to (a dict in older transformers, a SizeDict in newer)."""

    def get(name: str) -> Any:
        return size.get(name) if isinstance(size, dict) else getattr(size, name, None)

    return int(get("shortest_edge") or max(get("height") or 224, get("width") or 224))


def margin_text(margin: float) -> str:
    """A margin as the detail pane shows it: signed, three decimals."""
    return f"{margin:+.3f}" if math.isfinite(margin) else "?"
