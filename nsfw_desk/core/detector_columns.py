"""Which detectors the desk shows, and how it names them (Qt-free; the desk and export use it).

Settings.detectors lists models by what loads them (a hub id or a folder); the library knows
models by id. A detector's kind (what it detects) is read from its positive labels, so a
chip can say "NSFW 0.93" or "AI 0.71" without loading the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nsfw_desk.core.detector import FAKE_LABEL_NAMES

# The positive-class words of an AI-generated-image detector: core/detector.py's list.
AI_WORDS = FAKE_LABEL_NAMES
SHORT_NAMES = {"nsfw": "NSFW", "ai-generated": "AI", "other": "DET"}
FLAG_RULES = ("any", "primary")


def detector_kind(positive_labels: list[str]) -> str:
    """ "ai-generated" when a positive label is an AI word, else "nsfw" (today's models)."""
    words = {label.strip().lower() for label in positive_labels}
    return "ai-generated" if words & AI_WORDS else "nsfw"


@dataclass(frozen=True)
class DetectorColumn:
    """One detector as the desk shows it: a score column, a chip, a threshold."""

    model_id: str
    name: str  # the model's display name, for tooltips and menus
    kind: str  # nsfw | ai-generated | other
    threshold: float
    spec: str = ""  # what loads it (Settings.detectors' "model")
    chip: str = ""  # the chip's name where the kind's alone would be shared (chip_names)

    @property
    def short(self) -> str:
        """The chip's name: NSFW, AI, …; "NSFW trained" beside another NSFW detector."""
        return self.chip or SHORT_NAMES.get(self.kind, SHORT_NAMES["other"])


CHIP_TAG_CHARS = 12  # a chip's distinguishing word is cut to this many characters
CHIP_ID_CHARS = 4  # of a revision or weights hash, where the names do not differ


def _name_words(name: str) -> list[str]:
    """The words of a display name, without the short hash a local model's carries."""
    return re.findall(r"[A-Za-z0-9]+", re.sub(r"\s*\(sha256:[0-9a-f]*\)\s*$", "", name))


def _id_tag(model_id: str) -> str:
    """What tells two models of one name apart: the start of the hub revision or of the
    weights' hash (the model's display name shows the hash's first 8 characters)."""
    if model_id.startswith("sha256:"):
        return model_id[7 : 7 + CHIP_ID_CHARS]
    return model_id.partition("@")[2][:CHIP_ID_CHARS]


def chip_names(detectors: list[tuple[str, str, str]]) -> list[str]:
    """Each chip's name for (kind, display name, model id) per detector, the primary first.

    A chip reads its kind ("NSFW", "AI") as long as no other chip does; chips that would
    read the same each add a word of their model's name that the others' names lack, so
    the default model beside its fine-tuned copy reads "NSFW Marqo" and "NSFW trained".
    Without such a word, the revision or the weights' short hash; the last resort is the
    detector's place in the list.
    """
    shorts = [SHORT_NAMES.get(kind, SHORT_NAMES["other"]) for kind, _, _ in detectors]
    names = list(shorts)
    for short in set(shorts):
        group = [i for i, s in enumerate(shorts) if s == short]
        if len(group) < 2:
            continue
        words = {i: _name_words(detectors[i][1]) for i in group}
        tags: dict[int, str] = {}
        for i in group:
            others = {w.lower() for j in group if j != i for w in words[j]}
            own = [w for w in words[i] if w.lower() not in others]
            lettered = [w for w in own if any(c.isalpha() for c in w)]
            tags[i] = (lettered or own or [_id_tag(detectors[i][2])])[0][:CHIP_TAG_CHARS]
        for i in group:
            shared = not tags[i] or list(tags.values()).count(tags[i]) > 1
            names[i] = f"{short} {str(i + 1) if shared else tags[i]}"
    return names


def enabled_detectors(detectors: list[dict], model: str, threshold: float) -> list[tuple]:
    """(spec, threshold) of every enabled detector in order, the first the primary; an empty
    list means the single `model` at `threshold`, as before several detectors existed."""
    chosen = [
        (str(d.get("model", "")), float(d.get("threshold", threshold)))
        for d in detectors
        if d.get("enabled", True)
    ]
    return chosen or [(model, threshold)]


def clean_detectors(value: object, threshold: float) -> list[dict]:
    """Settings.detectors as stored: entries that are not {model, threshold, enabled} are
    dropped, thresholds clamped to [0, 1]."""
    if not isinstance(value, list):
        return []
    cleaned = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("model", ""), str):
            continue
        raw = entry.get("threshold", threshold)
        level = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0.5
        cleaned.append(
            {
                "model": entry.get("model", ""),
                "threshold": min(1.0, max(0.0, level)),
                "enabled": bool(entry.get("enabled", True)),
            }
        )
    return cleaned


def same_spec(a: str, b: str) -> bool:
    """Whether two Settings.detectors "model" texts load the same model (a local folder
    however it is written; a hub id at the same revision, or at any when `b` names none)."""
    from nsfw_desk.core.hub import ModelSpec

    first = ModelSpec.parse(a or None)
    return matches(b, first.source, first.revision)


def hand_over(detectors: list[dict], base: str, trained: str) -> list[dict] | None:
    """Settings.detectors with `trained` flagging in place of `base`, the model it was
    trained from: its entry takes the base's place (the primary's, if the base was) and
    threshold; the base's stays after it, turned off, so turning it on again undoes that.

    None when `base` is no enabled detector there (with one model, no detectors set, the
    desk makes the trained model Settings' model instead)."""
    at = next(
        (
            i
            for i, d in enumerate(detectors)
            if d.get("enabled", True) and same_spec(str(d.get("model", "")), base)
        ),
        None,
    )
    if at is None or same_spec(base, trained):
        return None
    handed: list[dict] = []
    for i, entry in enumerate(detectors):
        if i == at:
            handed += [{**entry, "model": trained, "enabled": True}, {**entry, "enabled": False}]
        elif not same_spec(str(entry.get("model", "")), trained):
            handed.append(entry)  # (a model trained again into one folder: its old entry goes)
    return handed


def matches(spec_text: str, source: str | None, revision: str | None) -> bool:
    """Whether a model registered with (source, revision) is what `spec_text` loads."""
    from nsfw_desk.core.hub import ModelSpec

    if source is None:
        return False
    spec = ModelSpec.parse(spec_text or None)
    if spec.is_local:
        try:
            return Path(spec.source).expanduser().resolve() == Path(source).resolve()
        except (OSError, RuntimeError):
            return spec.source == source
    return spec.source == source and (spec.revision is None or spec.revision == revision)


def resolve(specs: list[tuple[str, float]], models: list[dict]) -> list[DetectorColumn]:
    """The detectors among `models` (Library.models_by_source, newest first) that `specs`
    name, in the specs' order; a spec no model matches yet (never scanned) is left out."""
    found: list[DetectorColumn] = []
    for spec, threshold in specs:
        row = next((m for m in models if matches(spec, m["source"], m["revision"])), None)
        if row is None or any(c.model_id == row["id"] for c in found):
            continue
        found.append(
            DetectorColumn(
                row["id"], row["name"], detector_kind(row["unsafe_labels"]), threshold, spec
            )
        )
    return found
