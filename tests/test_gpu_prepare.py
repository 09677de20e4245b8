"""JPEGs decoded and prepared on the model's device (core/gpu_prepare.py) against the CPU path.

Everything runs on the CPU device here (torchvision's CPU decoder behind the same calls, the
same tensor code); where torch sees a CUDA GPU the same tests run there too.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_desk.core import gpu_prepare, pdq
from nsfw_desk.core.images import ErrorKind
from nsfw_desk.core.runtime import load_model
from nsfw_desk.core.scan import ScanOptions, _gpu_preparer, scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import synthetic_photo

torch = pytest.importorskip("torch")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# How far the GPU path may be from the CPU path on the test model: the CPU path decodes a
# JPEG at a reduced DCT scale where it can, the GPU at full size, and libjpeg-turbo's IDCT
# and nvJPEG's round differently.
# On CUDA both paths run fp16, and the test model's random weights swing with small pixel
# changes (the 2000×40 strip, upscaled 4×, moved 0.066); bench_gpu measures the real
# architecture: 0.006 over 4,096 photos.
MAX_DP = {"cpu": 0.02, "cuda": 0.1}
MAX_PDQ_BITS = {"cpu": 12, "cuda": 16}


def save_jpeg(path: Path, size: tuple[int, int], seed: int, **options) -> Path:
    image = synthetic_photo(size, seed=seed)
    mode = options.pop("mode", "RGB")
    image.convert(mode).save(path, "JPEG", quality=90, **options)
    return path


def mixed_folder(root: Path) -> Path:
    """JPEGs of several sizes and kinds, and files the GPU must leave to the CPU path."""
    root.mkdir()
    for i in range(6):
        save_jpeg(root / f"wide_{i}.jpg", (480, 360), seed=i)
    for i in range(3):
        save_jpeg(root / f"tall_{i}.jpg", (300, 500), seed=10 + i)
    save_jpeg(root / "big.jpg", (1200, 900), seed=20)  # the CPU decodes it at 1/2 scale
    save_jpeg(root / "strip.jpg", (2000, 40), seed=21)  # cut to 16:1 before the resize
    save_jpeg(root / "tiny.jpg", (3, 3), seed=22)  # too small for a PDQ hash
    save_jpeg(root / "grey.jpg", (400, 300), seed=23, mode="L")
    save_jpeg(root / "cmyk.jpg", (400, 300), seed=24, mode="CMYK")
    save_jpeg(root / "progressive.jpg", (400, 300), seed=25, progressive=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    save_jpeg(root / "rotated.jpg", (400, 300), seed=26, exif=exif.tobytes())
    synthetic_photo((320, 240), seed=27).save(root / "photo.png")
    whole = (root / "wide_0.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "empty.jpg").write_bytes(b"")
    (root / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 8 + b"\xff\xd9")
    return root


def scan(folder: Path, model, db: Path, gpu_decode: str, **options):
    """The scan's summary, and each file's stored facts, PDQ hash and thumbnail by name."""
    library = Library(db)
    summary = scan_folder(
        folder,
        model,
        library,
        options=ScanOptions(gpu_decode=gpu_decode, **options),
        keep_outcomes=True,
    )
    library.close()
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("ATTACH DATABASE ? AS thumbs", [str(library.thumbnails_path)])
        rows = conn.execute(
            "SELECT f.path, f.width, f.height, f.format, h.pdq, h.pdq_quality, t.jpeg "
            "FROM files f LEFT JOIN content_hashes h ON h.hash = f.hash "
            "LEFT JOIN thumbs.thumbnails t ON t.hash = f.hash"
        ).fetchall()
    return summary, {Path(r["path"]).name: r for r in rows}


@pytest.fixture(scope="module")
def models(model_dir):
    return {device: load_model(model_dir, device=device) for device in DEVICES}


@pytest.mark.parametrize("device", DEVICES)
def test_a_scan_with_jpegs_prepared_on_the_device_matches_the_cpu_path(tmp_path, models, device):
    """Same files scored and failed for the same reasons, same facts, close scores and PDQ
    hashes, a thumbnail of the same shape for each file."""
    model = models[device]
    folder = mixed_folder(tmp_path / "photos")
    cpu, cpu_rows = scan(folder, model, tmp_path / "cpu.sqlite", "off")
    dev, dev_rows = scan(folder, model, tmp_path / "gpu.sqlite", "on", batch_size=4)

    # wide ×6, tall ×3, big, strip, tiny, grey: the rest is the CPU path's
    assert (cpu.decoded_on_device, dev.decoded_on_device) == (0, 13)
    by_name = {o.path.name: o for o in cpu.outcomes}
    on_device = {o.path.name: o for o in dev.outcomes}
    assert set(by_name) == set(on_device) == {p.name for p in folder.iterdir()}
    assert {n for n, o in on_device.items() if o.error_kind} == {
        "truncated.jpg",
        "empty.jpg",
        "garbage.jpg",
    }
    for name, outcome in by_name.items():
        other = on_device[name]
        assert other.error_kind == outcome.error_kind, name
        if outcome.error_kind:
            continue
        assert abs(other.score - outcome.score) <= MAX_DP[device], (
            name,
            other.score,
            outcome.score,
        )
        a, b = cpu_rows[name], dev_rows[name]
        assert (a["width"], a["height"], a["format"]) == (b["width"], b["height"], b["format"])
        assert pdq.distance(a["pdq"], b["pdq"]) <= MAX_PDQ_BITS[device], (name, a["pdq"], b["pdq"])
        assert abs(a["pdq_quality"] - b["pdq_quality"]) <= 10, name
        cpu_thumb = Image.open(io.BytesIO(a["jpeg"]))
        dev_thumb = Image.open(io.BytesIO(b["jpeg"]))
        assert dev_thumb.format == "JPEG"
        assert abs(cpu_thumb.width - dev_thumb.width) <= 1, name
        assert abs(cpu_thumb.height - dev_thumb.height) <= 1, name
    assert dev_rows["tiny.jpg"]["pdq"] == bytes(pdq.HASH_BYTES)
    assert {o.error_kind for o in dev.outcomes if o.error_kind} <= {
        ErrorKind.DECODE_ERROR,
        ErrorKind.NOT_AN_IMAGE,
    }


@pytest.mark.parametrize("device", DEVICES)
def test_model_input_and_pdq_of_a_full_size_decode_match_the_cpu_code(tmp_path, models, device):
    """Where the CPU path decodes at full size too, the device's input is the model's own
    transform of the same pixels (±1 level of the resize's rounding) and the PDQ hash the
    same."""
    model = models[device]
    path = save_jpeg(tmp_path / "a.jpg", (240, 200), seed=3)  # no draft: 200 < 1.5 × 169
    data = path.read_bytes()
    preparer = gpu_prepare.GpuPreparer([model], model.device)
    (prepared,) = preparer.prepare([data])
    assert prepared is not None
    pixels = Image.open(io.BytesIO(data)).convert("RGB")
    expected, _ = model.preprocess(pixels)
    got = prepared.tensors[0].cpu()
    assert got.shape == expected.shape
    levels = (got - expected).abs() * 0.5 * 255  # Normalize(0.5, 0.5) undone
    if device == "cpu":
        assert float(levels.max()) <= 2.01, float(levels.max())
    else:  # nvJPEG upsamples chroma otherwise than libjpeg-turbo: colour edges differ
        assert float(levels.mean()) <= 2.0 and float(levels.max()) <= 24, levels.max()
    reference = pdq.pdq_hash(pixels)
    assert pdq.distance(prepared.pdq, reference[0]) <= 2, pdq.distance(prepared.pdq, reference[0])
    assert abs(prepared.pdq_quality - reference[1]) <= 1


def test_jpegs_the_gpu_refuses_or_fails_on_are_decoded_by_the_cpu(tmp_path, models, monkeypatch):
    """A file the GPU answers None for, or a GPU batch that raises, is decoded by the decode
    threads: every file scored, with the CPU path's scores."""
    model = models["cpu"]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        save_jpeg(folder / f"p{i}.jpg", (300, 240), seed=i)
    cpu, _ = scan(folder, model, tmp_path / "cpu.sqlite", "off")
    expected = {o.path: o.score for o in cpu.outcomes}

    original = gpu_prepare.GpuPreparer.prepare

    def refuse_some(self, datas, clock=None):
        out = original(self, datas, clock)
        return [None if n % 2 else item for n, item in enumerate(out)]

    monkeypatch.setattr(gpu_prepare.GpuPreparer, "prepare", refuse_some)
    some, _ = scan(folder, model, tmp_path / "some.sqlite", "on", batch_size=2)
    assert some.scored == 5 and some.errors == 0
    assert 0 < some.decoded_on_device < 5

    def fail(self, datas, clock=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(gpu_prepare.GpuPreparer, "prepare", fail)
    failed, _ = scan(folder, model, tmp_path / "fail.sqlite", "on", batch_size=2)
    assert failed.scored == 5 and failed.errors == 0 and failed.decoded_on_device == 0
    # the CPU path's scores (to rounding: a batch's make-up moves the last float bits)
    assert {o.path: o.score for o in failed.outcomes} == pytest.approx(expected, abs=1e-5)


def test_which_scans_decode_on_the_device(models):
    """auto: CUDA only; on: any device; off: never; a detector whose preprocessing is not a
    plain timm eval transform keeps the whole scan on the CPU path."""
    model = models["cpu"]
    assert _gpu_preparer([model], ScanOptions()) is None
    assert _gpu_preparer([model], ScanOptions(gpu_decode="off")) is None
    assert _gpu_preparer([model], ScanOptions(gpu_decode="on")) is not None
    assert _gpu_preparer([], ScanOptions(gpu_decode="on")) is None

    class OwnPreprocessing:
        model_id = "own"
        device = model.device
        transform = None

    reason = gpu_prepare.supported([model, OwnPreprocessing()])
    assert reason is not None and "own" in reason
    assert _gpu_preparer([model, OwnPreprocessing()], ScanOptions(gpu_decode="on")) is None
    with pytest.raises(ValueError, match="gpu_decode"):
        _gpu_preparer([model], ScanOptions(gpu_decode="yes"))


def test_batches_and_decode_threads_follow_the_device(monkeypatch):
    monkeypatch.setattr("nsfw_desk.core.scan.available_cores", lambda: 16)
    options = ScanOptions()
    assert options.batch_for("cpu") == 8 and options.batch_for("cuda") == 128
    assert options.decode_workers("cpu") == 4 and options.decode_workers("cuda") == 8
    assert ScanOptions(batch_size=32, workers=3).batch_for("cuda") == 32
    assert ScanOptions(batch_size=32, workers=3).decode_workers("cuda") == 3


def test_stack_for_keeps_a_cpu_batch_on_the_cpu():
    tensors = [torch.full((3, 4, 4), float(i)) for i in range(3)]
    stacked = gpu_prepare.stack_for(tensors, torch.device("cpu"))
    assert stacked.shape == (3, 3, 4, 4) and stacked.device.type == "cpu"
    assert [float(t[0, 0, 0]) for t in stacked] == [0.0, 1.0, 2.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stack_for_moves_host_inputs_beside_device_ones():
    tensors = [torch.full((3, 4, 4), 1.0), torch.full((3, 4, 4), 2.0, device="cuda")]
    stacked = gpu_prepare.stack_for(tensors, torch.device("cuda"))
    assert stacked.device.type == "cuda"
    assert stacked[:, 0, 0, 0].tolist() == [1.0, 2.0]


def test_big_batches_are_prepared_a_few_pictures_at_a_time():
    images = [torch.zeros(3, 100, 100, dtype=torch.uint8) for _ in range(5)]
    images.insert(2, None)
    images.append(torch.zeros(3, 50, 80, dtype=torch.uint8))
    groups = list(gpu_prepare._same_size_groups(images, max_pixels=20_000))
    assert [positions for positions, _ in groups] == [[0, 1], [3, 4], [5], [6]]
    assert [tuple(batch.shape) for _, batch in groups][-1] == (1, 3, 50, 80)


def test_the_gpu_bench_runs_on_the_cpu(tmp_path, capsys):
    """`python -m nsfw_desk.bench_gpu` (README, GPU) at a tiny size: its table is printed."""
    from nsfw_desk import bench_gpu

    out = tmp_path / "figures.json"
    args = [
        "--device", "cpu", "--files", "6", "--warm-files", "2", "--card-files", "2",
        "--ceiling-files", "4", "--large", "0", "--batch-sizes", "3", "--cpu-files", "4",
        "--thread-counts", "1", "--repeat", "2",
        "--architecture", "test_vit", "--json", str(out),
    ]  # fmt: skip
    assert bench_gpu.main(args) == 0
    printed = capsys.readouterr().out
    assert "GPU vs CPU decode: max |Δp|" in printed and "forward alone" in printed
    assert "scan, GPU decode, batch 3" in printed
    assert "scan, GPU decode, 2 GPU threads" in printed
    import json

    figures = json.loads(out.read_text())
    assert figures["gpu_vs_cpu_decode"]["files"] == 4
    # CPU decode twice, then the four GPU-decode scans twice over (--repeat 2)
    assert [s["decoded_on_device"] for s in figures["scans"]] == [0, 0] + [6] * 8
    assert [s["label"] for s in figures["scans"][2:6]] == [s["label"] for s in figures["scans"][6:]]


@pytest.mark.parametrize("device", DEVICES)
def test_pdq_on_the_device_is_core_pdq(models, device):
    """The batched device arithmetic against core/pdq.py on the same pixels: smooth and
    grainy pictures (qualities below and at 100), odd sizes, an all-grey picture."""
    preparer = gpu_prepare.GpuPreparer([models[device]], models[device].device)
    rng = np.random.default_rng(5)
    for height, width in [(48, 64), (333, 517), (7, 900)]:
        smooth = [
            np.asarray(
                synthetic_photo((width, height), seed=s)
                .resize((4, 3))
                .resize((width, height), Image.Resampling.BICUBIC)
            )
            for s in range(3)
        ]
        grainy = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8)]
        flat = [np.full((height, width, 3), 128, dtype=np.uint8)]
        pictures = smooth + grainy + flat
        batch = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()
        got = preparer._pdq_hashes(batch.to(models[device].device))
        for n, (picture, (bits, quality)) in enumerate(zip(pictures, got, strict=True)):
            want_bits, want_quality = pdq.pdq_hash(picture)
            assert quality == want_quality, (height, width, n)
            if picture is flat[0]:  # every coefficient ~0: the bits are rounding noise in
                continue  # every PDQ port (core/pdq.py)
            distance = pdq.distance(bits, want_bits)
            assert distance <= (0 if device == "cpu" else 2), (height, width, n, distance)
    assert {q for _, q in got} != {100}, "some picture with a quality below 100"


def test_the_readme_gpu_section_names_what_these_tests_run():
    """README, On a GPU: its commands are the ones run here and in tests/test_cli.py."""
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = readme.split("### On a GPU", 1)[1].split("\n## ", 1)[0]
    commands = [
        block.strip() for block in section.split("```sh\n")[1:] for block in [block.split("```")[0]]
    ]
    assert commands == [
        "nsfw-desk scan ~/Pictures/incoming --gpu-decode on",
        "python -m nsfw_desk.bench_gpu",
    ]
    assert "NVIDIA H100" in section and "Intel Xeon" in section  # the card and CPU named


def test_the_desk_says_how_many_jpegs_the_gpu_decoded(tmp_path):
    pytest.importorskip("PySide6")
    from nsfw_desk.core.scan import ScanSummary
    from nsfw_desk.gui.main_window import MainWindow

    summary = ScanSummary(tmp_path, "m", "CUDA · fp16", files=5, scored=5, elapsed_s=1.0)
    summary.decoded_on_device = 4
    text = MainWindow._scan_summary_text(None, summary)  # type: ignore[arg-type]
    assert text == "Scanned: 5 files in 1.0 s · 5 new · 4 JPEGs decoded on the GPU · 0 errors"
    summary.decoded_on_device = 0
    assert "GPU" not in MainWindow._scan_summary_text(None, summary)  # type: ignore[arg-type]


def test_a_cancelled_gpu_scan_keeps_what_it_committed_and_resumes(tmp_path, models):
    """Cancel with batches in flight on the GPU's thread: what was committed stays, the
    library is consistent, and the next scan does only the rest."""
    from nsfw_desk.core.progress import CancelToken

    model = models["cpu"]
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        save_jpeg(folder / f"{i:03d}.jpg", (96, 72), seed=i)
    cancel = CancelToken()
    seen: list = []

    def on_results(outcomes):
        seen.extend(outcomes)
        if len(seen) >= 8:
            cancel.cancel()

    options = ScanOptions(gpu_decode="on", batch_size=4)
    with Library(tmp_path / "lib.sqlite") as library:
        first = scan_folder(folder, model, library, options=options, cancel=cancel,
                            on_results=on_results)  # fmt: skip
        assert first.cancelled and 8 <= first.scored < 40
        stored = [r for r in library.results(folder, model.model_id) if r.score is not None]
        assert len(stored) == first.scored and library.integrity_check() == "ok"
        second = scan_folder(folder, model, library, options=options)
        assert second.cached == first.scored and second.scored == 40 - first.scored
        assert second.decoded_on_device == second.scored


def test_two_detectors_on_the_gpu_path_match_the_cpu_path(tmp_path, models):
    """Two timm detectors (other labels, other weights): both scored from one decode on the
    device; a detector added later scores only what it lacks, from the same path."""
    from nsfw_desk.synthetic import save_random_model

    first = models["cpu"]
    second = load_model(
        save_random_model(tmp_path / "second", labels=("SFW", "NSFW"), seed=5), device="cpu"
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        save_jpeg(folder / f"p{i}.jpg", (320, 240), seed=i)
    cpu, _ = scan(folder, [first, second], tmp_path / "cpu.sqlite", "off")
    dev, _ = scan(folder, [first, second], tmp_path / "dev.sqlite", "on", batch_size=4)
    assert dev.decoded_on_device == 6
    for a, b in zip(sorted(cpu.outcomes, key=lambda o: o.path),
                    sorted(dev.outcomes, key=lambda o: o.path), strict=True):  # fmt: skip
        assert set(a.scores) == set(b.scores) == {first.model_id, second.model_id}
        for model_id in a.scores:
            assert abs(a.scores[model_id] - b.scores[model_id]) <= MAX_DP["cpu"]

    with Library(tmp_path / "later.sqlite") as library:
        options = ScanOptions(gpu_decode="on", batch_size=4)
        scan_folder(folder, first, library, options=options)
        added = scan_folder(folder, [first, second], library, options=options,
                            keep_outcomes=True)  # fmt: skip
        assert added.scored == 6 and added.decoded_on_device == 6
        assert all(set(o.scores) == {first.model_id, second.model_id} for o in added.outcomes)
