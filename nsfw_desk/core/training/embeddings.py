"""The base model's pooled embedding of every training item: stored ones first, no decode.

An item the base model has scored already has its embedding in the library (float16, from
the scan's forward pass). Only the others are read, decoded with the scan's robust decoder
and run through the base model; their scores and embeddings are then stored as a scan
would store them, so the next run (and re-scoring) finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nsfw_desk.core.images import ImageError, content_hash, decode, read_file
from nsfw_desk.core.runtime import LoadedModel
from nsfw_desk.core.store import Library, float16_blob, float32_blob
from nsfw_desk.core.training.common import TrainingError
from nsfw_desk.core.training.data import Item
from nsfw_desk.core.training.heads import embeddings_matrix

log = logging.getLogger(__name__)

BATCH = 16


@dataclass
class Embeddings:
    hashes: list[str]
    matrix: np.ndarray  # float32 (N, D), rows in the order of `hashes`
    stored: int = 0  # found in the library
    computed: int = 0  # decoded and run through the base model now
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (hash, why)


def gather(
    items: list[Item],
    model: LoadedModel,
    width: int,
    library: Library | None,
    *,
    report: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Embeddings:
    """Embeddings of `items` from `model` (the base); `report(done, total)` for computing."""
    found: dict[str, np.ndarray] = {}
    if library is not None:
        pairs = library.embedding_blobs(model.model_id, [i.hash for i in items])
        matrix = embeddings_matrix([b for _, b in pairs], width)
        if matrix is None:
            widths = sorted({len(b) // 2 for _, b in pairs})
            raise TrainingError(
                f"The embeddings stored for {model.display_name} are {widths} values wide, but "
                f"its classifier reads {width}: they came from another model. Scan again with "
                "this model, or choose the base model the library was scanned with (--base)."
            )
        found = {digest: matrix[n] for n, (digest, _) in enumerate(pairs)}
    stored = len(found)
    missing = [i for i in items if i.hash not in found]
    left_out: list[tuple[str, str]] = []
    computed = _compute(missing, model, library, found, left_out, report, should_stop)
    hashes = [i.hash for i in items if i.hash in found]
    matrix = np.stack([found[h] for h in hashes]) if hashes else np.zeros((0, width), np.float32)
    return Embeddings(hashes, matrix.astype(np.float32), stored, computed, left_out)


def _compute(
    missing: list[Item],
    model: LoadedModel,
    library: Library | None,
    found: dict[str, np.ndarray],
    left_out: list[tuple[str, str]],
    report: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> int:
    import torch

    from nsfw_desk.core.training.common import TrainingStopped

    computed = 0
    batch: list[tuple[str, object]] = []

    def flush() -> None:
        nonlocal computed, batch
        if not batch:
            return
        prediction = model.predict(torch.stack([t for _, t in batch]))  # type: ignore[misc]
        rows = []
        for n, (digest, _) in enumerate(batch):
            found[digest] = prediction.embeddings[n].astype(np.float16).astype(np.float32)
            rows.append(
                (
                    digest,
                    float(prediction.unsafe_scores[n]),
                    float32_blob(prediction.probabilities[n]),
                    float16_blob(prediction.embeddings[n]),
                )
            )
        if library is not None:
            library.record_model_scores(model.model_id, rows)
        computed += len(batch)
        batch = []

    for done, item in enumerate(missing, start=1):
        if should_stop is not None and should_stop():
            raise TrainingStopped("stopped while computing embeddings; nothing was trained")
        tensor, why = _load(item, model)
        if tensor is None:
            left_out.append((item.hash, why))
            log.warning("training: left out %s: %s", item.hash[:12], why)
        else:
            batch.append((item.hash, tensor))
            if len(batch) >= BATCH:
                flush()
        if report is not None:
            report(done, len(missing))
    flush()
    return computed


def _load(item: Item, model: LoadedModel):
    """The model input for the first file of `item` that still holds that content."""
    why = "no file holds this content"
    for path in item.paths:
        try:
            data = read_file(path)
            if content_hash(data) != item.hash:
                why = f"{path} changed since it was reviewed"
                continue
            pixels, *_ = decode(data, min_side=model.input_size)
            tensor, _ = model.preprocess(pixels)
            return tensor, ""
        except ImageError as exc:
            why = f"{path}: {exc.message}"
        except OSError as exc:
            why = f"{path}: {exc.strerror or exc}"
    return None, why
