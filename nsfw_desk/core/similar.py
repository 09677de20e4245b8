"""'Looks similar': the nearest contents by cosine similarity of a model's stored embeddings.

The embeddings are the model's pooled features, stored as float16 by the scan. The index
holds them L2-normalised and quantised to int8 with one scale per dimension (a ViT's few
outlier dimensions do not coarsen the others): 1,000,000 × 192 (vit_tiny) is 192 MB, a
quarter of float32. A query is one int8 × float32 product (numpy's einsum casts in small
buffers and multiplies with SIMD) plus a partial sort. Similarities are within a few
thousandths of the float32 ones (0.0031 in `nsfw-desk bench`, which prints it), so only near
ties can swap places.

Measured on a 2-core AMD EPYC, 1,000,000 × 192, CPU time per query: the float16 matrix
converted to float32 block by block (the first version) ~950 ms, the conversion being most
of it; a resident float32 matrix and BLAS 85-140 ms (768 MB); faiss IndexScalarQuantizer
fp16 ~77 ms (384 MB); int8 here 99 ms (192 MB; `nsfw-desk bench`). faiss was not taken: it
is no faster than numpy on one query, and its wheels bring their own OpenMP runtime, which
aborts or crashes a process that has loaded torch's on macOS and Windows (faiss-wheels issue
73, and several projects that set KMP_DUPLICATE_LIB_OK to live with it); the desk loads
torch for scans.

The index is built once per library state (about a second for a million rows, after
reading them) and kept by the desk; only the query runs per "Show similar".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nsfw_desk.core.store import Library

_BLOCK = 65_536  # rows per step of building and of a query (bounded temporary memory)


class NoEmbedding(LookupError):
    """The item has no embedding for the model (not scanned with it yet)."""


@dataclass(frozen=True)
class Neighbour:
    content_hash: str
    similarity: float  # cosine, -1 to 1


def _normalised(block: np.ndarray) -> np.ndarray:
    vectors = np.asarray(block, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class EmbeddingIndex:
    def __init__(self, hashes: list[str], matrix: np.ndarray) -> None:
        self.hashes = hashes
        self.position = {digest: i for i, digest in enumerate(hashes)}
        matrix = np.asarray(matrix)
        rows, width = len(hashes), matrix.shape[1] if matrix.ndim == 2 else 0
        # Two passes in blocks, so a million rows never exist in float32 at once.
        peak = np.zeros(width, dtype=np.float32)
        for start in range(0, rows, _BLOCK):
            block = np.abs(_normalised(matrix[start : start + _BLOCK]))
            np.maximum(peak, block.max(axis=0), out=peak)
        self.scale = np.maximum(peak, 1e-12) / 127  # value of one int8 step, per dimension
        self.codes = np.empty((rows, width), dtype=np.int8)
        for start in range(0, rows, _BLOCK):
            block = _normalised(matrix[start : start + _BLOCK]) / self.scale
            self.codes[start : start + _BLOCK] = np.rint(block)

    @classmethod
    def from_library(cls, library: Library, model_id: str) -> EmbeddingIndex:
        return cls(*library.embeddings(model_id))

    @property
    def nbytes(self) -> int:
        """Memory of the vectors (the int8 codes and their per-dimension scale)."""
        return int(self.codes.nbytes + self.scale.nbytes)

    def vector(self, content_hash: str) -> np.ndarray:
        """The stored item's (normalised, dequantised) vector, to query with."""
        index = self.position.get(content_hash)
        if index is None:
            raise NoEmbedding(content_hash)
        return self.codes[index] * self.scale

    def nearest(
        self, query: np.ndarray, top: int = 20, *, exclude: str | None = None
    ) -> list[Neighbour]:
        """The `top` most similar contents to the (any-length-normalised) `query` vector."""
        if not len(self.hashes) or top < 1:
            return []
        q = np.asarray(query, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        weights = (q * self.scale).astype(np.float32)  # the codes' scale moved to the query
        scores = np.empty(len(self.hashes), dtype=np.float32)
        for start in range(0, len(self.hashes), _BLOCK):
            block = self.codes[start : start + _BLOCK]
            np.einsum(
                "ij,j->i", block, weights, dtype=np.float32, out=scores[start : start + len(block)]
            )
        if exclude is not None and exclude in self.position:
            scores[self.position[exclude]] = -np.inf
        count = min(top, len(scores) - (exclude in self.position if exclude else 0))
        if count <= 0:
            return []
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best], kind="stable")]
        # int8 codes put a vector's similarity to itself a little above 1 (1.0013): a cosine
        # is printed and sorted as one, so it stays within -1..1.
        np.clip(scores, -1.0, 1.0, out=scores)
        return [Neighbour(self.hashes[i], float(scores[i])) for i in best.tolist()]
