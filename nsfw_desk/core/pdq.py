"""PDQ perceptual hashes (256 bits + a 0-100 quality), the format hash-sharing programs use.

A numpy port of the reference algorithm (facebook/ThreatExchange pdq/cpp): luminance with the
Rec. 601 coefficients, a Jarosz tent filter (two passes of row and column box filters whose
window is ceil(side / 128)) sampled at 64×64 pixel centres, the 16×16 low frequencies of a
DCT of that, each bit set where its coefficient is above the median (Torben's median: the
128th smallest of 256), and the quality from the sum of quantised gradients of the 64×64.
The hex form is the reference's: the 256-bit number whose bit i*16+j is coefficient (i, j),
printed big-endian, so hashes exchange with every other PDQ implementation.

Why a port and not the `pdqhash` package: `pdqhash` binds the reference C++ but ships only a
source distribution, so installing it needs a C++ compiler, which Windows and macOS users of
a desktop app do not have. The port needs nothing beyond numpy (and is faster: ~1.5 ms
against the bindings' ~4.7 ms for 512×384), and tests/test_pdq.py holds it to `pdqhash`:
distance 0 and the same quality on every generated photo tried (450, 5 px to 1500 px, every
Pillow mode, EXIF-rotated). Where the two differ is where the reference's own bits are
float32 rounding noise: pictures whose DCT has many coefficients exactly zero (a pure linear
gradient, exact stripes, noise smaller than 64 px whose side divides 64). Every PDQ port
disagrees with every other there. Photographs do not have such spectra; drawn graphics can.

The scan hashes the pixels it already decoded (a JPEG decoded at a reduced DCT scale, at
least 1.5× the model's input side): the box windows then shrink with the image, so the hash
is of the same picture at a lower resolution. tests/test_pdq.py measures the distance to the
full-size hash; `nsfw-desk bench` prints the cost as a share of a scanned image's time.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

HASH_BITS = 256
HASH_BYTES = 32
HEX_DIGITS = 64
MIN_HASHABLE_SIDE = 5  # the reference returns an all-zero hash with quality 0 below this
_LUMA = (0.299, 0.587, 0.114)
_PASSES = 2  # X,Y,X,Y box passes make a tent filter (Jarosz, "Fast image convolutions")


@functools.cache
def _dct_matrix() -> np.ndarray:
    """Rows 1..16 of the 64-point DCT-II, as the reference builds it (16 × 64)."""
    i = np.arange(1, 17, dtype=np.float64)[:, None]
    j = np.arange(64, dtype=np.float64)[None, :]
    return np.sqrt(2.0 / 64) * np.cos((np.pi / 2.0 / 64) * i * (2 * j + 1))


@functools.lru_cache(maxsize=256)
def _box_bounds(length: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each output's input range [lo, hi) and 1/count, as the reference's box1DFloat clips it.

    The window is off-centre by the reference's choice: half = (window + 2) // 2 values up to
    and including the output, the rest after it.
    """
    half = (window + 2) // 2
    k = np.arange(length)
    lo = np.maximum(0, k - (window - half))
    hi = np.minimum(length - 1, k + half - 1)
    return lo, hi + 1, 1.0 / (hi - lo + 1)


@functools.lru_cache(maxsize=512)
def _tent(length: int) -> tuple[np.ndarray, np.ndarray]:
    """The 64 sampled outputs of two box passes along a side, as (indices, weights), 64 × K.

    Two passes of a box of width w are a tent at most 2w - 1 wide: the samples need only
    those inputs, so filtering a side costs 64 × (2w - 1) products, not a pass over the image.
    """
    window = (length + 2 * 64 - 1) // (2 * 64)
    lo, hi, inv = _box_bounds(length, window)
    centres = ((np.arange(64) + 0.5) * length / 64).astype(np.int64)
    width = 2 * window - 1
    start = np.maximum(0, lo[lo[centres]])  # the leftmost input any sample reaches
    indices = np.minimum(start[:, None] + np.arange(width)[None, :], length - 1)
    weights = np.zeros((64, width))
    for i, centre in enumerate(centres):  # second pass at the centre, first pass inside it
        for k in range(lo[centre], hi[centre]):
            weights[i, lo[k] - start[i] : hi[k] - start[i]] += inv[centre] * inv[k]
    return indices, weights


def tent_matrix(length: int) -> np.ndarray:
    """The same 64 samples as a dense 64 × `length` matrix: `tent_matrix(rows) @ lum @
    tent_matrix(cols).T` is `downsample_64(lum)` (core/gpu_prepare.py runs it on a device)."""
    indices, weights = _tent(length)
    dense = np.zeros((64, length))
    np.add.at(dense, (np.arange(64)[:, None], indices), weights)  # clipped indices repeat
    return dense


def luma(image: Image.Image | np.ndarray) -> np.ndarray:
    """Float32 luminance of RGB (Pillow or H×W×3 uint8), or of grey (L or H×W) pixels.

    Pillow's RGB to "F" conversion computes 0.299 R + 0.587 G + 0.114 B in the same precision
    as the reference bindings, and 8× faster than numpy (tests/test_pdq.py checks both agree).
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("F"))
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    rgb = pixels[:, :, :3]
    lum = rgb[:, :, 0] * _LUMA[0] + rgb[:, :, 1] * _LUMA[1] + rgb[:, :, 2] * _LUMA[2]
    return lum.astype(np.float32)


def downsample_64(lum: np.ndarray) -> np.ndarray:
    """The 64×64 tent-filtered samples of a luminance image.

    The first (larger) stage sums in float32, as the reference does; the second in float64.

    The box passes are linear and act on separate axes, so they commute (exactly so in real
    arithmetic; the reference's float32 order differs by rounding only): the rows' tents
    first, then the columns' tents on those 64 rows.
    """
    rows, cols = lum.shape
    col_idx, col_w = _tent(cols)
    row_idx, row_w = _tent(rows)
    # Rows first: gathering whole rows is a contiguous copy. Per sample row i, the tent's
    # (1 × K) weights times its (K × cols) rows, batched over the 64 samples by matmul.
    lum32 = np.asarray(lum, dtype=np.float32)
    down = np.matmul(row_w.astype(np.float32)[:, None, :], lum32[row_idx])[:, 0, :]
    across = down.astype(np.float64)[:, col_idx]  # 64 × 64 × K
    return np.einsum("ijk,jk->ij", across, col_w)


def quality_of(buffer64: np.ndarray) -> int:
    """The reference's heuristic: significant gradients of the 64×64, scaled to 0-100."""
    grid = buffer64.astype(np.float32)
    scale100, scale255 = np.float32(100), np.float32(255)
    down = np.trunc((grid[:-1, :] - grid[1:, :]) * scale100 / scale255)
    across = np.trunc((grid[:, :-1] - grid[:, 1:]) * scale100 / scale255)
    total = int(np.abs(down).sum()) + int(np.abs(across).sum())
    return min(total // 90, 100)


def hash_luma(lum: np.ndarray) -> tuple[bytes, int]:
    """(32-byte hash, quality) of a luminance image; all zeros with quality 0 when too small."""
    rows, cols = lum.shape
    if rows < MIN_HASHABLE_SIDE or cols < MIN_HASHABLE_SIDE:
        return bytes(HASH_BYTES), 0
    return hash_buffer64(downsample_64(lum))


def hash_buffer64(buffer64: np.ndarray) -> tuple[bytes, int]:
    """(32-byte hash, quality) from the 64×64 tent-filtered samples (`downsample_64`)."""
    quality = quality_of(buffer64)
    dct = _dct_matrix()
    coefficients = (dct @ buffer64 @ dct.T).ravel()
    median = np.partition(coefficients, 127)[127]
    bits = coefficients > median  # bit k = coefficient (k // 16, k % 16)
    return np.packbits(bits[::-1]).tobytes(), quality


def pdq_hash(image: Image.Image | np.ndarray) -> tuple[bytes, int]:
    """(32-byte hash, quality) of an RGB Pillow image or array (convert other modes first)."""
    if isinstance(image, Image.Image) and image.mode not in ("RGB", "L"):
        raise ValueError(f"pdq_hash needs RGB or L pixels, not mode {image.mode}")
    return hash_luma(luma(image))


def to_hex(digest: bytes) -> str:
    return digest.hex()


def from_hex(text: str) -> bytes:
    """32 bytes from 64 hex digits; ValueError naming what is wrong otherwise."""
    text = text.strip()
    if len(text) != HEX_DIGITS:
        raise ValueError(f"a PDQ hash has {HEX_DIGITS} hex digits, this has {len(text)}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError("a PDQ hash has only hex digits (0-9, a-f)") from None


def distance(a: bytes, b: bytes) -> int:
    """Hamming distance between two 32-byte hashes."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()
