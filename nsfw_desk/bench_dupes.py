"""`nsfw-desk bench` figures for perceptual hashes: PDQ's share of a scan, grouping, matching."""

from __future__ import annotations

import hashlib
import sys
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


def flip_bits(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of N×32 uint8 hashes with 1 to 30 random bits flipped in each."""
    flipped = rng.integers(1, 31, len(rows))
    out = rows.copy()
    for first in range(0, len(rows), 65_536):  # k bits: where the k smallest of 256 keys are
        keys = rng.random((min(65_536, len(rows) - first), 256))
        kth = np.sort(keys, axis=1)[np.arange(len(keys)), flipped[first : first + len(keys)] - 1]
        out[first : first + len(keys)] ^= np.packbits(keys <= kth[:, None], axis=1)
    return out


def synthetic_hashes(count: int, seed: int = 0, share: float = 0.05) -> np.ndarray:
    """Random PDQ hashes, `share` of them in near-duplicate clusters: a quarter originals,
    three quarters copies of one with 1-30 bits flipped (as re-encodes and resizes are)."""
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    copies = int(count * share) * 3 // 4
    originals = rng.integers(0, max(1, int(count * share) - copies), copies)
    packed[count - copies :] = flip_bits(packed[originals], rng)
    return packed


def _cpu_and_wall() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def measure_grouping(
    count: int, max_distance: int = dupes.DEFAULT_MAX_DISTANCE, *, from_library: bool = False
) -> dict:
    """Seconds to group `count` synthetic hashes (wall and CPU: the CPU time says what a
    shared machine hides); with `from_library`, read them from a real library first."""
    from nsfw_desk.core.store import Library

    packed = synthetic_hashes(count)
    qualities = np.full(count, 90, dtype=np.int16)
    read_s = float("nan")
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp:
        if from_library:
            with Library(Path(tmp) / "library.sqlite") as library:
                library.record_pdq_hashes(
                    (f"{i:064x}", row.tobytes(), 90) for i, row in enumerate(packed)
                )
                start = time.perf_counter()
                hashes, packed, qualities = library.pdq_hashes()
                read_s = time.perf_counter() - start
        cpu, wall = _cpu_and_wall()
        groups = dupes.group(packed, qualities, max_distance)
        group_s, group_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "hashes": count,
        "max_distance": max_distance,
        "read_s": read_s,
        "seconds": group_s,
        "cpu_s": group_cpu_s,
        "groups": len(groups),
        "in_groups": sum(len(g.members) for g in groups),
        "bytes_per_hash": packed.nbytes / count,
        "mb": (packed.nbytes + qualities.nbytes) / 1e6,
    }


def measure_matching(library_size: int, list_size: int) -> dict:
    """Seconds to import a PDQ list of `list_size` lines and match it against a library of
    `library_size` hashed items (a real Library on disk); 1 % of the list are copies of
    library items, half of them with 1-30 bits flipped."""
    from nsfw_desk.core.hashlists import import_hash_list, match_library
    from nsfw_desk.core.store import Library

    rng = np.random.default_rng(1)
    items = rng.integers(0, 256, (library_size, 32), dtype=np.uint8)
    listed = synthetic_hashes(list_size, seed=5)
    copied = list_size // 100
    listed[:copied] = items[:copied]
    listed[: copied // 2] = flip_bits(items[: copied // 2], rng)
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
            cpu, wall = _cpu_and_wall()
            matches = match_library(library, compute_digests=False)
            matched, matched_cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "library": library_size,
        "list": list_size,
        "import_s": imported,
        "match_s": matched,
        "match_cpu_s": matched_cpu,
        "matched": len(matches),
    }


def _strings_mb(hashes: list[str]) -> float:
    return (sys.getsizeof(hashes) + sum(sys.getsizeof(h) for h in hashes)) / 1e6


def measure_similar(count: int, dim: int = 192, queries: int = 7) -> dict:
    """A real library of `count` float16 embeddings of width `dim` (vit_tiny: 192), clustered
    as a scan's are: seconds to read them (`Library.embeddings`), to build the index, and
    the median ms of top-20 queries; the index's memory, and the largest difference of its
    similarities from float32 ones among the answers."""
    from nsfw_desk.core.similar import EmbeddingIndex
    from nsfw_desk.core.store import Library, float16_blob

    rng = np.random.default_rng(2)
    centres = rng.standard_normal((max(1, count // 50), dim), dtype=np.float32)
    with (
        tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp,
        Library(Path(tmp) / "library.sqlite") as library,
    ):
        library.register_model(
            "bench",
            source="bench",
            revision=None,
            architecture="bench",
            labels=["safe", "unsafe"],
            unsafe_labels=["unsafe"],
        )
        probabilities = np.array([0.5, 0.5], dtype="<f4").tobytes()
        for first in range(0, count, 100_000):
            rows = min(100_000, count - first)
            block = centres[rng.integers(0, len(centres), rows)]
            block += 0.5 * rng.standard_normal((rows, dim), dtype=np.float32)
            library.record_model_scores(
                "bench",
                (
                    (f"{first + i:064x}", 0.5, probabilities, float16_blob(vector))
                    for i, vector in enumerate(block)
                ),
            )
        start = time.perf_counter()
        hashes, matrix = library.embeddings("bench")
        read_s = time.perf_counter() - start
    start = time.perf_counter()
    index = EmbeddingIndex(hashes, matrix)
    build_s = time.perf_counter() - start
    times, cpu_times, worst = [], [], 0.0
    for row in rng.integers(0, count, queries).tolist():
        query = index.vector(hashes[row])
        cpu, wall = _cpu_and_wall()
        found = index.nearest(query, 20)
        times.append(time.perf_counter() - wall)
        cpu_times.append(time.process_time() - cpu)
        exact = matrix[[int(n.content_hash, 16) for n in found]].astype(np.float32)
        exact /= np.linalg.norm(exact, axis=1, keepdims=True)
        q = matrix[row].astype(np.float32)
        true = exact @ (q / np.linalg.norm(q))
        worst = max(worst, float(np.abs(true - [n.similarity for n in found]).max()))
    return {
        "embeddings": count,
        "dim": dim,
        "read_s": read_s,
        "build_s": build_s,
        "query_ms": 1000 * float(np.median(times)),
        "query_cpu_ms": 1000 * float(np.median(cpu_times)),
        "mib": index.nbytes / 2**20,
        "mb": index.nbytes / 1e6,
        "float16_mb": matrix.nbytes / 1e6,
        "hashes_mb": _strings_mb(hashes) + sys.getsizeof(index.position) / 1e6,
        "max_difference": worst,
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
    return {"pdq": cost | {"scan_ms_per_image": per_image_ms}} | print_index_figures(quick)


def print_index_figures(quick: bool) -> dict:
    """Grouping, hash-list matching and similar-image queries at a million (20,000 quick)."""
    count = 20_000 if quick else 1_000_000
    print(f"\nnear-duplicate grouping ({count:,} PDQ hashes, 5 % in clusters of copies):")
    grouping = measure_grouping(count, from_library=True)
    print(
        f"  grouping        : {grouping['seconds']:6.2f} s within {grouping['max_distance']} "
        f"bits ({grouping['cpu_s']:.1f} s CPU), {grouping['groups']:,} groups of "
        f"{grouping['in_groups']:,} hashes; library read {grouping['read_s']:.2f} s; "
        f"{grouping['mb']:.0f} MB of hashes and qualities",
        flush=True,
    )
    library_size, list_size = (10_000, 100_000) if quick else (100_000, 1_000_000)
    matching = measure_matching(library_size, list_size)
    print(
        f"  hash list       : {matching['list']:,} PDQ lines imported in "
        f"{matching['import_s']:.2f} s, matched against {matching['library']:,} items in "
        f"{matching['match_s']:.2f} s ({matching['match_cpu_s']:.1f} s CPU; "
        f"{matching['matched']:,} matches)",
        flush=True,
    )
    similar = measure_similar(20_000 if quick else 1_000_000)
    print(
        f"  similar images  : {similar['query_ms']:6.0f} ms per query over "
        f"{similar['embeddings']:,} × {similar['dim']} embeddings (median, "
        f"{similar['query_cpu_ms']:.0f} ms CPU); once per library state: read "
        f"{similar['read_s']:.1f} s, index {similar['build_s']:.1f} s; "
        f"{similar['mb']:.0f} MB int8 (float16 {similar['float16_mb']:.0f} MB), content "
        f"hashes {similar['hashes_mb']:.0f} MB; similarity within "
        f"{similar['max_difference']:.4f} of float32",
        flush=True,
    )
    return {
        "grouping": grouping,
        "matching": matching,
        "similar": similar,
    }
