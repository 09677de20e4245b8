"""'Looks similar': the nearest contents by cosine similarity of a model's stored embeddings.

The embeddings are the model's pooled features, stored as float16 by the scan. An index
holds them L2-normalised in one float16 matrix (1,000,000 × 768 is 1.4 GiB; a 384-wide model
half that), and a query is one matrix-vector product in float32 blocks plus a partial sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nsfw_desk.core.store import Library

_BLOCK = 65_536


class NoEmbedding(LookupError):
    """The item has no embedding for the model (not scanned with it yet)."""


@dataclass(frozen=True)
class Neighbour:
    content_hash: str
    similarity: float  # cosine, -1 to 1


class EmbeddingIndex:
    def __init__(self, hashes: list[str], matrix: np.ndarray) -> None:
        self.hashes = hashes
        self.position = {digest: i for i, digest in enumerate(hashes)}
        vectors = np.asarray(matrix, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True) if len(vectors) else vectors
        self.matrix = (vectors / np.maximum(norms, 1e-12)).astype(np.float16)

    @classmethod
    def from_library(cls, library: Library, model_id: str) -> EmbeddingIndex:
        return cls(*library.embeddings(model_id))

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes)

    def vector(self, content_hash: str) -> np.ndarray:
        index = self.position.get(content_hash)
        if index is None:
            raise NoEmbedding(content_hash)
        return self.matrix[index]

    def nearest(
        self, query: np.ndarray, top: int = 20, *, exclude: str | None = None
    ) -> list[Neighbour]:
        """The `top` most similar contents to the (any-length-normalised) `query` vector."""
        if not len(self.hashes) or top < 1:
            return []
        q = np.asarray(query, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        scores = np.empty(len(self.hashes), dtype=np.float32)
        for start in range(0, len(self.hashes), _BLOCK):
            block = self.matrix[start : start + _BLOCK].astype(np.float32)
            scores[start : start + _BLOCK] = block @ q
        if exclude is not None and exclude in self.position:
            scores[self.position[exclude]] = -np.inf
        count = min(top, len(scores) - (exclude in self.position if exclude else 0))
        if count <= 0:
            return []
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Neighbour(self.hashes[i], float(scores[i])) for i in best.tolist()]
