"""What the scan and the rest of the app need from a detector, whatever library runs it.

A detector is a model plus what it detects (`kind`): NSFW, AI-generated, or something else.
Its positive classes (unsafe for NSFW, fake for AI-generated) are read from its labels, or
named by the user (`--unsafe-label`, a setting). The timm backend's `LoadedModel`
(core/runtime.py) is the reference implementation; core/backends/ holds the others.

Two optional attributes let the scan share preprocessing between detectors that agree
(core/scan.py `_preprocess_all`):
- `preprocess_key`: hashable, equal for two detectors whose whole preprocessing is the same;
  the tensor is made once and given to both.
- `resize_key` with `from_resized(image) -> (tensor, view)`: equal for two detectors whose
  first step (an aspect-keeping resize) is the same; the resize runs once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nsfw_desk.core.hub import ModelError, ModelSpec

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from nsfw_desk.core.runtime import Prediction

KINDS = ("nsfw", "ai-generated", "other")

# Label names (lower-cased) that mean "this is the class a moderator wants flagged".
UNSAFE_LABEL_NAMES = frozenset(
    {"nsfw", "unsafe", "porn", "pornography", "hentai", "sexy", "explicit", "nudity", "nude"}
)
# Label names (lower-cased) of the positive class of an AI-generated-image detector.
FAKE_LABEL_NAMES = frozenset(
    {"fake", "generated", "synthetic", "ai", "ai-generated", "ai_generated", "deepfake"}
)
POSITIVE_NAMES = {"nsfw": UNSAFE_LABEL_NAMES, "ai-generated": FAKE_LABEL_NAMES}
KIND_NAMES = {"nsfw": "NSFW", "ai-generated": "AI-generated", "other": "positive"}


class DetectorFacts:
    """What every backend's detector says about itself in the same words: its positive labels,
    its name for people and its status-bar line. A base of LoadedModel and the backends'."""

    labels: list[str]
    unsafe_indices: list[int]
    model_id: str
    spec: ModelSpec
    device: torch.device
    device_name: str
    precision: str
    threads: int

    @property
    def unsafe_labels(self) -> list[str]:
        return [self.labels[i] for i in self.unsafe_indices]

    @property
    def display_name(self) -> str:
        """The model's name for people (see store.model_display_name)."""
        from nsfw_desk.core.store import model_display_name

        return model_display_name(self.model_id, self.spec.source if self.spec.is_local else None)

    def describe(self) -> str:
        """Short line for a status bar or a summary, e.g. `CPU · fp32 · 2 threads`."""
        if self.device.type == "cpu":
            return f"CPU · {self.precision} · {self.threads} threads"
        name = self.device_name or self.device.type.upper()
        return f"{self.device.type.upper()} · {name} · {self.precision}"


@runtime_checkable
class Detector(Protocol):
    """A loaded model ready to score images: the facts and calls the app uses."""

    model_id: str
    spec: ModelSpec
    architecture: str
    labels: list[str]
    unsafe_indices: list[int]  # the positive classes (unsafe, fake, ...)
    kind: str  # one of KINDS
    device: torch.device
    precision: str
    threads: int

    @property
    def input_size(self) -> int:
        """Shorter side the decoder must keep so preprocessing never upsamples a draft."""
        ...

    @property
    def display_name(self) -> str: ...

    @property
    def unsafe_labels(self) -> list[str]: ...

    def describe(self) -> str: ...

    def preprocess(self, pixels: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model input for `pixels`, and a picture the thumbnail can be made from."""
        ...

    def predict(self, batch: torch.Tensor) -> Prediction: ...


def infer_kind(labels: Sequence[str]) -> str:
    """What a model detects, read from its labels: NSFW words first, then AI-generated
    words; a model with neither is taken as an NSFW model whose positive class the user
    names (`--unsafe-label`), as before detectors had kinds."""
    lowered = {label.lower() for label in labels}
    if lowered & UNSAFE_LABEL_NAMES:
        return "nsfw"
    if lowered & FAKE_LABEL_NAMES:
        return "ai-generated"
    return "nsfw"


def positive_indices_for(
    labels: Sequence[str], kind: str, override: str | Sequence[str] | None
) -> list[int]:
    """Which classes count as positive for a detector of `kind`: the override if given
    (names, comma-separated), else the label names known for the kind."""
    if kind not in KINDS:
        raise ModelError(f"Unknown detector kind {kind!r}; choose one of {', '.join(KINDS)}.")
    lowered = [label.lower() for label in labels]
    if override:
        wanted = override.split(",") if isinstance(override, str) else list(override)
        indices = []
        for name in (w.strip() for w in wanted):
            if name.lower() not in lowered:
                raise ModelError(
                    f"--unsafe-label {name!r} is not one of the model's labels: "
                    f"{', '.join(labels)}."
                )
            indices.append(lowered.index(name.lower()))
        return sorted(set(indices))
    known = POSITIVE_NAMES.get(kind, frozenset())
    indices = [i for i, name in enumerate(lowered) if name in known]
    if not indices:
        what = "unsafe" if kind == "nsfw" else f"the {KIND_NAMES[kind]} class"
        raise ModelError(
            f"Cannot tell which of the model's labels means {what}: {', '.join(labels)}. "
            "Name it with --unsafe-label (several separated by commas)."
        )
    return indices
