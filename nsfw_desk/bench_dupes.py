"""`nsfw-desk bench` figures for perceptual hashes: PDQ's share of a scan, grouping, matching."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from nsfw_desk.core import dupes
from nsfw_desk.core.images import decode
from nsfw_desk.core.pdq import pdq_hash


def measure_pdq(paths: list[Path], min_side: int) -> dict[str, float]:
    """Median ms to PDQ-hash the pixels a scan decodes (JPEG draft for `min_side`), to hash
    a full-size decode, and to compute MD5 + SHA-1 + SHA-256 of the file's bytes."""
    draft, full, digests = [], [], []
    for path in paths[:5]:
        data = path.read_bytes()
        pixels = decode(data, min_side=min_side)[0]
        start = time.perf_counter()
        pdq_hash(pixels)
        draft.append(time.perf_counter() - start)
        whole = decode(data)[0]
        start = time.perf_counter()
        pdq_hash(whole)
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        for name in ("md5", "sha1", "sha256"):
            hashlib.new(name, data).digest()
        digests.append(time.perf_counter() - start)
    return {
        "pdq_draft_ms": 1000 * float(np.median(draft)),
        "pdq_full_ms": 1000 * float(np.median(full)),
        "file_digests_ms": 1000 * float(np.median(digests)),
    }


def synthetic_hashes(count: int, seed: int = 0) -> np.ndarray:
    """Random PDQ hashes, a tenth of them copies of others with 0-31 bits changed."""
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    copies = count // 10
    bits = np.unpackbits(packed[rng.integers(0, count - copies, copies)], axis=1)
    flips = rng.random(bits.shape) < (rng.integers(0, 32, copies) / 256)[:, None]
    packed[count - copies :] = np.packbits(bits ^ flips, axis=1)
    return packed


def measure_grouping(count: int, max_distance: int = dupes.DEFAULT_MAX_DISTANCE) -> dict:
    packed = synthetic_hashes(count)
    start = time.perf_counter()
    groups = dupes.group(packed, None, max_distance)
    return {
        "hashes": count,
        "max_distance": max_distance,
        "seconds": time.perf_counter() - start,
        "groups": len(groups),
        "bytes_per_hash": packed.nbytes / count,
    }


def measure_matching(library_size: int, list_size: int) -> dict:
    """Seconds to import a PDQ list of `list_size` lines and match it against a library of
    `library_size` hashed items (a real Library on disk)."""
    from nsfw_desk.core.hashlists import import_hash_list, match_library
    from nsfw_desk.core.store import Library

    rng = np.random.default_rng(1)
    items = rng.integers(0, 256, (library_size, 32), dtype=np.uint8)
    listed = rng.integers(0, 256, (list_size, 32), dtype=np.uint8)
    listed[: list_size // 100] = items[: list_size // 100]  # 1 % of the list is in the library
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp:
        folder = Path(tmp)
        listing = folder / "list.txt"
        with open(listing, "w") as handle:
            handle.writelines(f"{row.tobytes().hex()},90\n" for row in listed)
        with Library(folder / "library.sqlite") as library:
            library.record_pdq_hashes(
                (f"{i:064x}", row.tobytes(), 90) for i, row in enumerate(items)
            )
            start = time.perf_counter()
            import_hash_list(library, listing, "bench", "unsafe")
            imported = time.perf_counter() - start
            start = time.perf_counter()
            matches = match_library(library, compute_digests=False)
            matched = time.perf_counter() - start
    return {
        "library": library_size,
        "list": list_size,
        "import_s": imported,
        "match_s": matched,
        "matched": len(matches),
    }


def measure_similar(count: int, dim: int = 768) -> dict:
    """Median ms for a top-20 query over `count` random float16 embeddings, and their size."""
    from nsfw_desk.core.similar import EmbeddingIndex

    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((count, dim), dtype=np.float32).astype(np.float16)
    index = EmbeddingIndex([f"{i:064x}" for i in range(count)], matrix)
    del matrix
    times = []
    for row in rng.integers(0, count, 5).tolist():
        start = time.perf_counter()
        index.nearest(index.matrix[row], 20)
        times.append(time.perf_counter() - start)
    return {
        "embeddings": count,
        "dim": dim,
        "query_ms": 1000 * float(np.median(times)),
        "mib": index.nbytes / 2**20,
    }


def print_figures(paths: list[Path], min_side: int, scan_rate: float, quick: bool) -> dict:
    """Print the figures (and return them for --json)."""
    cost = measure_pdq(paths, min_side)
    per_image_ms = 1000 / scan_rate if scan_rate else float("nan")
    print(
        f"  PDQ hash        : {cost['pdq_draft_ms']:6.2f} ms per image on the scan's draft "
        f"pixels = {cost['pdq_draft_ms'] / per_image_ms:.1%} of the scan's "
        f"{per_image_ms:.0f} ms per image (target < 5 %); {cost['pdq_full_ms']:.1f} ms on a "
        f"full-size decode\n"
        f"  file digests    : {cost['file_digests_ms']:6.2f} ms per file for MD5+SHA-1+SHA-256 "
        f"= {cost['file_digests_ms'] / per_image_ms:.1%} (computed when a hash list needs "
        "them, not in the scan)",
        flush=True,
    )
    sizes = [20_000] if quick else [100_000]
    grouping = [measure_grouping(n, d) for n in sizes for d in (15, dupes.DEFAULT_MAX_DISTANCE)]
    print("\nnear-duplicate grouping (random PDQ hashes, a tenth near copies):")
    for g in grouping:
        print(
            f"  {g['hashes']:>9,} hashes within {g['max_distance']:>2} bits: "
            f"{g['seconds']:6.2f} s, {g['groups']:,} groups; "
            f"{g['bytes_per_hash'] * 1_000_000 / 2**20:.1f} MiB per million hashes",
            flush=True,
        )
    library_size, list_size = (10_000, 100_000) if quick else (100_000, 1_000_000)
    matching = measure_matching(library_size, list_size)
    print(
        f"  hash list       : {matching['list']:,} PDQ lines imported in "
        f"{matching['import_s']:.2f} s, matched against {matching['library']:,} items in "
        f"{matching['match_s']:.2f} s ({matching['matched']:,} matches)",
        flush=True,
    )
    return {
        "pdq": cost | {"scan_ms_per_image": per_image_ms},
        "grouping": grouping,
        "matching": matching,
    }
