"""Near-duplicate groups: the exact index, the grouping, the scan's hashes and `nsfw-desk dupes`.

Distances measured (tests/test_dupes.py transforms on 24 generated 640×480 photos plus two
real 720×477 photographs, each against its original): JPEG q90 ≤ 2, q70/q50 ≤ 10, q30 ≤ 18;
half size ≤ 16, quarter ≤ 22, 1.5× up ≤ 8; contrast ×1.4 ≤ 24, saturation ×1.6 ≤ 34 (on a
quality-32 hash, left out of matching), brightness ≤ 18, blur ≤ 12, sharpen ≤ 4, grey ≤ 2.
Crops of 2 % a side (28-68), 2° rotations (28-84) and caption bars (14-72) are often beyond
31: PDQ is not made for them. Unrelated pictures: median 128, 1st percentile 105.
Hence the default stays PDQ's own 31.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from nsfw_desk.cli import main
from nsfw_desk.core import dupes, pdq
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import synthetic_photo


def brute_pairs(packed: np.ndarray, limit: int) -> set[tuple[int, int]]:
    words = dupes.as_words(packed)
    full = np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(-1)
    left, right = np.nonzero(np.triu(full <= limit, 1))
    return set(zip(left.tolist(), right.tolist(), strict=True))


def with_copies(count: int, seed: int = 0) -> np.ndarray:
    """Random hashes plus copies of some of them with 0-40 bits flipped."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    bits = np.unpackbits(base[rng.integers(0, count, count // 4)], axis=1)
    for row in bits:
        row[rng.choice(256, int(rng.integers(0, 41)), replace=False)] ^= 1
    return np.concatenate([base, np.packbits(bits, axis=1)])


@pytest.fixture(params=["index", "brute force"])
def search(request, monkeypatch):
    """Both ways `near_pairs` and `within` answer: the grid index (forced here at a small
    size) and comparing every pair (what they do below `BRUTE_FORCE_PAIRS`)."""
    monkeypatch.setattr(dupes, "BRUTE_FORCE_PAIRS", 0 if request.param == "index" else 10**12)
    return request.param


@pytest.mark.parametrize("limit", [0, 7, 15, 16, 24, 31])
def test_the_index_finds_exactly_the_pairs_within_the_distance(limit, search):
    packed = with_copies(1200, seed=limit)
    left, right, dist = dupes.near_pairs(packed, limit)
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == brute_pairs(packed, limit)
    assert np.all(dist <= limit)


def test_groups_are_connected_components_with_distances_to_the_representative():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, 32, dtype=np.uint8)
    bits = np.unpackbits(a)
    b_bits, c_bits = bits.copy(), bits.copy()
    b_bits[:20] ^= 1  # a-b: 20
    c_bits[:20] ^= 1
    c_bits[100:120] ^= 1  # b-c: 20, a-c: 40 (joined through b)
    b, c = np.packbits(b_bits), np.packbits(c_bits)
    far = rng.integers(0, 256, 32, dtype=np.uint8)
    packed = np.stack([far, c, a, b])
    groups = dupes.group(packed, np.array([100, 60, 90, 80]), 31)
    assert len(groups) == 1
    assert groups[0].members == [2, 3, 1]  # highest quality first
    assert groups[0].distances == [0, 20, 40]


def test_low_quality_hashes_are_left_out():
    packed = np.zeros((2, 32), np.uint8)
    assert dupes.group(packed, np.array([90, 90])) != []
    assert dupes.group(packed, np.array([90, 49])) == []
    assert dupes.group(packed, np.array([90, 49]), min_quality=40) != []


@pytest.mark.parametrize("limit", [0, 12, 31])
def test_within_finds_exactly_the_library_query_pairs(limit, search):
    packed = with_copies(800, seed=9)
    rng = np.random.default_rng(limit)
    query = packed[rng.integers(0, len(packed), 300)].copy()
    bits = np.unpackbits(query, axis=1)
    for row in bits:
        row[rng.choice(256, int(rng.integers(0, 40)), replace=False)] ^= 1
    query = np.concatenate([np.packbits(bits, axis=1), rng.integers(0, 256, (50, 32), np.uint8)])
    lib, q, dist = dupes.within(packed, query, limit)
    words, query_words = dupes.as_words(packed), dupes.as_words(query)
    full = np.bitwise_count(words[:, None, :] ^ query_words[None, :, :]).sum(-1)
    expected = set(zip(*np.nonzero(full <= limit), strict=True))
    assert set(zip(lib.tolist(), q.tolist(), strict=True)) == expected
    assert np.array_equal(dist, full[lib, q])


def test_crowded_chunk_values_beyond_the_grid_are_still_paired(monkeypatch):
    """Hashes that share chunk values (flat regions, one photographer's series) overflow the
    grid's rows and are probed one by one: nothing is lost there."""
    monkeypatch.setattr(dupes, "BRUTE_FORCE_PAIRS", 0)
    packed = with_copies(1000, seed=4)
    packed[:, :8] = np.random.default_rng(4).integers(0, 2, (len(packed), 1), dtype=np.uint8)
    left, right, _ = dupes.near_pairs(packed, 31)
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == brute_pairs(packed, 31)
    query = packed[::7].copy()
    query[:, 20] ^= 0x11
    lib, q, dist = dupes.within(packed, query, 20)
    words, query_words = dupes.as_words(packed), dupes.as_words(query)
    full = np.bitwise_count(words[:, None, :] ^ query_words[None, :, :]).sum(-1)
    assert set(zip(lib.tolist(), q.tolist(), strict=True)) == set(
        zip(*np.nonzero(full <= 20), strict=True)
    )


def test_grouping_through_the_index_equals_comparing_every_pair(monkeypatch):
    """The same connected components, member order and distances either way, on hashes as
    the bench makes them (5 % in clusters of copies with 1-30 bits flipped)."""
    from nsfw_desk.bench_dupes import synthetic_hashes

    packed = synthetic_hashes(6000, seed=11, share=0.2)
    qualities = np.random.default_rng(11).integers(40, 101, len(packed))
    monkeypatch.setattr(dupes, "BRUTE_FORCE_PAIRS", 10**12)
    every_pair = dupes.group(packed, qualities, 31)
    monkeypatch.setattr(dupes, "BRUTE_FORCE_PAIRS", 0)
    indexed = dupes.group(packed, qualities, 31)
    assert len(every_pair) > 100
    assert indexed == every_pair


def test_grouping_reports_progress_and_stops_when_cancelled(monkeypatch):
    from nsfw_desk.core.progress import CancelToken

    monkeypatch.setattr(dupes, "BRUTE_FORCE_PAIRS", 0)
    packed = with_copies(600, seed=2)
    seen = []
    dupes.group(packed, None, 31, progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 17)) and seen[-1].total == 16
    assert "chunk 16 of 16" in seen[-1].describe()
    token = CancelToken()
    stopped = []

    def cancel_after_one(p):
        stopped.append(p)
        token.cancel()

    dupes.group(packed, None, 31, progress=cancel_after_one, cancel=token)
    assert len(stopped) == 1


def test_distance_out_of_range_is_refused():
    with pytest.raises(ValueError, match="0 to 31"):
        dupes.near_pairs(np.zeros((2, 32), np.uint8), 32)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


COPIES = {
    "jpeg 90": lambda im: _jpeg(im, 90),
    "jpeg 60": lambda im: _jpeg(im, 60),
    "jpeg 30": lambda im: _jpeg(im, 30),
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
    "1.5x up": lambda im: im.resize((im.width * 3 // 2, im.height * 3 // 2)),
    "contrast": lambda im: ImageEnhance.Contrast(im).enhance(1.3),
    "saturation": lambda im: ImageEnhance.Color(im).enhance(1.4),
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "sharpen": lambda im: im.filter(ImageFilter.SHARPEN),
    "grey": lambda im: im.convert("L").convert("RGB"),
}


def test_copies_group_with_their_original_and_unrelated_pictures_do_not():
    originals = [
        synthetic_photo((480, 360), seed).filter(ImageFilter.GaussianBlur(1)) for seed in range(5)
    ]
    hashes, qualities, owner = [], [], []
    for number, original in enumerate(originals):
        for image in [original, *(make(original) for make in COPIES.values())]:
            digest, quality = pdq.pdq_hash(image)
            hashes.append(np.frombuffer(digest, np.uint8))
            qualities.append(quality)
            owner.append(number)
    groups = dupes.group(np.stack(hashes), np.array(qualities))
    assert sorted(sorted(owner[i] for i in g.members) for g in groups) == [
        [n] * (len(COPIES) + 1) for n in range(len(originals))
    ]


def _scan(folder, model, library):
    return scan_folder(folder, model, library)


def test_the_scan_stores_a_pdq_hash_per_image_and_old_libraries_get_theirs(
    tmp_path, loaded_model, library
):
    folder = tmp_path / "photos"
    folder.mkdir()
    original = synthetic_photo((400, 300), 1).filter(ImageFilter.GaussianBlur(1))
    original.save(folder / "original.png")
    _jpeg(original, 70).save(folder / "copy.jpg", quality=95)
    synthetic_photo((400, 300), 2).save(folder / "other.png")
    _scan(folder, loaded_model, library)
    hashes, packed, qualities = library.pdq_hashes(folder)
    assert len(hashes) == 3 and np.all(qualities >= 50)
    expected, _ = pdq.pdq_hash(Image.open(folder / "other.png").convert("RGB"))
    other = library.pdq_of(library.file_facts(folder / "other.png")["hash"])
    assert other is not None and other[0] == expected

    # A library from before PDQ hashes: the next scan decodes for the hash, no model run.
    library.db.execute("DELETE FROM content_hashes")
    library.db.conn.commit()
    summary = _scan(folder, loaded_model, library)
    assert summary.scored == 0 and summary.cached == 3
    assert len(library.pdq_hashes(folder)[0]) == 3
    again = _scan(folder, loaded_model, library)
    assert again.scored == 0 and again.cached == 3


def test_dupes_command_prints_groups_as_json(tmp_path, loaded_model, model_dir, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    original = synthetic_photo((400, 300), 4).filter(ImageFilter.GaussianBlur(1))
    original.save(folder / "a.png")
    _jpeg(original, 60).save(folder / "sub" / "a-copy.jpg", quality=90)
    shutil.copy(folder / "a.png", folder / "sub" / "exact.png")
    synthetic_photo((400, 300), 5).save(folder / "b.png")
    db = tmp_path / "lib.sqlite"
    assert main(["scan", str(folder), "--model", str(model_dir), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["dupes", "--json", "--db", str(db)]) == 0
    groups = json.loads(capsys.readouterr().out)
    assert len(groups) == 1
    names = sorted(m["path"].rsplit("/", 1)[-1] for m in groups[0])
    assert names == ["a-copy.jpg", "a.png", "exact.png"]
    assert all(len(m["pdq"]) == 64 and len(m["hash"]) == 64 for m in groups[0])
    assert sorted(m["distance"] for m in groups[0])[0] == 0

    assert main(["dupes", "--folder", str(folder / "sub"), "--json", "--db", str(db)]) == 0
    inside = json.loads(capsys.readouterr().out)
    assert sorted(m["path"].rsplit("/", 1)[-1] for m in inside[0]) == ["a-copy.jpg", "exact.png"]

    assert main(["dupes", "--max-distance", "0", "--db", str(db)]) == 0
    assert "Group 1: 2 images" in capsys.readouterr().out  # the exact copy only
    with pytest.raises(SystemExit):
        main(["dupes", "--max-distance", "40", "--db", str(db)])


def test_dupes_without_a_library_says_so(tmp_path, capsys):
    assert main(["dupes", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no library" in capsys.readouterr().err


def test_the_benchmarks_run_at_a_small_size(tmp_path):
    """`nsfw-desk bench` runs these at full size; here they only must not rot."""
    from nsfw_desk import bench_dupes

    path = tmp_path / "p.jpg"
    synthetic_photo((800, 600), 1).save(path, quality=90)
    cost = bench_dupes.measure_pdq([path], 224)
    assert cost["pdq_draft_ms"] > 0 and cost["pdq_full_ms"] > 0
    grouping = bench_dupes.measure_grouping(3000, from_library=True)
    assert grouping["groups"] > 0 and grouping["bytes_per_hash"] == 32
    assert grouping["read_s"] > 0 and grouping["in_groups"] >= 3000 * 5 // 100 * 3 // 4
    matching = bench_dupes.measure_matching(1000, 3000)
    assert matching["matched"] == 30  # the 1 % of the list copied (half with bits flipped)
    similar = bench_dupes.measure_similar(2000, 32)
    assert similar["mb"] == (2000 * 32 + 32 * 4) / 1e6  # int8 codes and their scales
    assert similar["max_difference"] < 0.01


def test_near_duplicates_of_one_content_nearest_first_without_low_quality():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    copies = []
    for flips in (20, 5, 40):  # 40 bits: beyond the default distance
        bits = np.unpackbits(base[0])
        bits[rng.choice(256, flips, replace=False)] ^= 1
        copies.append(np.packbits(bits))
    packed = np.concatenate([base, np.stack(copies)])
    hashes = ["a", "b", "c", "far20", "near5", "far40"]
    qualities = np.full(len(packed), 100, dtype=np.int16)
    assert dupes.near_duplicates_of(hashes, packed, qualities, "a") == ["near5", "far20"]
    qualities[4] = 10  # a low-quality copy matches nothing
    assert dupes.near_duplicates_of(hashes, packed, qualities, "a") == ["far20"]
    assert dupes.near_duplicates_of(hashes, packed, qualities, "near5") == []
    assert dupes.near_duplicates_of(hashes, packed, qualities, "missing") == []
