"""A classifier head applied to stored embeddings: scores without decoding or a backbone.

A head-only model keeps its base model's backbone, so the pooled embedding the scan stored
for the base model is exactly what the new head reads. Its scores are then one small matrix
product per item, in numpy: 100,000 items in well under a second.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nsfw_desk.core.store import blob_to_array

if TYPE_CHECKING:
    from nsfw_desk.core.runtime import LoadedModel
    from nsfw_desk.core.store import Library

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
CHUNK = 20_000  # items scored per matrix product (bounds memory for big libraries)


@dataclass
class HeadScorer:
    """A linear head (weight C×D, bias C) and which of its classes count as unsafe."""

    weight: np.ndarray
    bias: np.ndarray
    unsafe_indices: list[int]

    @property
    def width(self) -> int:
        return int(self.weight.shape[1])

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """Softmax of the head's logits, float32 (N, C)."""
        logits = np.asarray(embeddings, dtype=np.float32) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def unsafe(self, probabilities: np.ndarray) -> np.ndarray:
        return np.clip(probabilities[:, self.unsafe_indices].sum(axis=1), 0.0, 1.0)

    @classmethod
    def from_module(cls, module, unsafe_indices: list[int]) -> HeadScorer:
        """The head of a timm classifier (`get_classifier()`), which must be one Linear."""
        import torch

        head = module.get_classifier()
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(
                f"the model's classifier is a {type(head).__name__}, not one linear layer"
            )
        weight = head.weight.detach().float().cpu().numpy().astype(np.float32)
        if head.bias is not None:
            bias = head.bias.detach().float().cpu().numpy().astype(np.float32)
        else:
            bias = np.zeros(weight.shape[0], np.float32)
        return cls(weight, bias, list(unsafe_indices))


def embeddings_matrix(blobs: list[bytes], width: int) -> np.ndarray | None:
    """float32 (N, width) from stored float16 blobs; None if any blob has another width."""
    if any(len(blob) != 2 * width for blob in blobs):
        return None
    if not blobs:
        return np.zeros((0, width), np.float32)
    return blob_to_array(b"".join(blobs), "<f2").reshape(len(blobs), width).astype(np.float32)


def rescore_from_embeddings(
    library: Library,
    base_model_id: str,
    model_id: str,
    scorer: HeadScorer,
    hashes: list[str] | None = None,
) -> int:
    """Give `model_id` a score for every content (of `hashes`, or all) that has a stored
    `base_model_id` embedding, computed by `scorer` from that embedding. The backbone is
    the base's, so the embedding is not copied: `model_id` shares the base's (its rows
    store none), unless it cannot (not registered, or it shares another model's), when
    each row gets a copy. One transaction; returns how many."""
    pairs = library.embedding_blobs(base_model_id, hashes)
    size = 2 * scorer.width
    good = [pair for pair in pairs if len(pair[1]) == size]
    if len(good) != len(pairs):
        log.warning(
            "%d stored embeddings of %s are not %d wide; left unscored",
            len(pairs) - len(good),
            base_model_id,
            scorer.width,
        )
    if not good:
        return 0
    good.sort()  # hash order: the inserts walk the (hash, model) index in order
    digests = [digest for digest, _ in good]
    blobs = [blob for _, blob in good]
    matrix = blob_to_array(b"".join(blobs), "<f2").reshape(len(good), scorer.width)
    probs = np.concatenate(
        [
            scorer.probabilities(matrix[start : start + CHUNK])
            for start in range(0, len(good), CHUNK)
        ]
    )
    unsafe = scorer.unsafe(probs)
    if library.share_embeddings(model_id, base_model_id):
        return library.record_shared_scores(model_id, digests, unsafe, probs)
    log.info("%s cannot share the embeddings of %s: its rows copy them", model_id, base_model_id)
    blob = probs.astype("<f4").tobytes()
    step = probs.shape[1] * 4
    rows = zip(
        digests,
        unsafe.tolist(),
        [blob[i : i + step] for i in range(0, len(blob), step)],
        blobs,
        strict=True,
    )
    return library.record_model_scores(model_id, rows)


def training_record(folder: Path | str) -> dict | None:
    """A model folder's training.json, or None when it has none (or it cannot be read)."""
    path = Path(folder)
    if path.is_file():
        path = path.parent
    try:
        record = json.loads((path / TRAINING_FILE).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def head_only_base_id(folder: Path | str) -> str | None:
    """The base model id of a head-only training (its training.json says so), else None:
    such a model's backbone is its base's, and so are its embeddings."""
    record = training_record(folder)
    if not record or record.get("mode") != "head" or not record.get("base_model_id"):
        return None
    return str(record["base_model_id"])


def head_only_base(model: LoadedModel) -> tuple[str, HeadScorer] | None:
    """(base model id, the model's head) when `model` is a head-only training of another
    model: its backbone is the base's, so stored base embeddings give its scores."""
    if not model.spec.is_local:
        return None
    record = training_record(model.spec.source)
    if not record or record.get("mode") != "head" or not record.get("base_model_id"):
        return None
    try:
        scorer = HeadScorer.from_module(model.module, model.unsafe_indices)
    except ValueError:
        return None
    width = record.get("embedding_width")
    if width is not None and int(width) != scorer.width:
        return None
    return str(record["base_model_id"]), scorer


def head_from_folder(folder: Path | str) -> tuple[str, HeadScorer] | None:
    """(base model id, head) of a head-only model folder, read without torch or timm:
    training.json names the head's tensors, safetensors gives them as numpy arrays."""
    record = training_record(folder)
    if not record or record.get("mode") != "head" or not record.get("base_model_id"):
        return None
    names = record.get("head_params") or []
    labels = record.get("label_names") or []
    unsafe = record.get("unsafe_labels") or []
    if not names or not names[0] or not labels:
        return None
    from safetensors import safe_open

    path = Path(folder)
    path = path.parent if path.is_file() else path
    try:
        with safe_open(str(path / "model.safetensors"), framework="numpy") as fh:
            weight = np.asarray(fh.get_tensor(names[0]), dtype=np.float32)
            bias = (
                np.asarray(fh.get_tensor(names[1]), dtype=np.float32)
                if len(names) > 1 and names[1]
                else np.zeros(weight.shape[0], np.float32)
            )
    except Exception as exc:  # a damaged or foreign file: no shortcut, not an error here
        log.debug("no head read from %s: %s", path, exc)
        return None
    indices = [i for i, name in enumerate(labels) if name in unsafe]
    if weight.ndim != 2 or weight.shape[0] != len(labels) or not indices:
        return None
    return str(record["base_model_id"]), HeadScorer(weight, bias, indices)
