"""`python -m nsfw_desk.bench_gpu`: a scan on a GPU, end to end, with JPEGs decoded on the CPU
and on the GPU, against the model card's loop on the same device, in one run.

It generates photo-like JPEGs (1024×768 by default, and a few 12-MP ones), then times on the
same files: the card's per-image loop; our scan with JPEGs decoded by the decode threads
(`gpu_decode="off"`) and on the GPU (core/gpu_prepare.py), each after a warm-up scan, with
the share of time in read, decode, PDQ, transform, thumbnail, forward and store; and the
ceilings that explain the figures: the forward pass alone, nvJPEG's decode alone, Pillow's
decode alone on every core. Scores and PDQ hashes of the two decode paths are compared file by file.

Without CUDA it runs on the CPU (`--gpu-decode on` puts the GPU path on the CPU device), which
is how the suite keeps it from rotting; its figures mean something on a GPU only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nsfw_desk.bench import card_loop, make_corpus
from nsfw_desk.core import pdq
from nsfw_desk.core.runtime import LoadedModel, load_model
from nsfw_desk.core.scan import ScanOptions, scan_folder
from nsfw_desk.core.stage_clock import STAGES
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import save_random_model

THRESHOLD = 0.5


@dataclass
class ScanFigures:
    label: str
    files: int
    images_per_s: float
    elapsed_s: float
    stage_seconds: dict[str, float]
    batch_size: int
    gpu_decode: str
    decoded_on_device: int
    scores: dict[str, float] = field(default_factory=dict, repr=False)
    pdq: dict[str, bytes] = field(default_factory=dict, repr=False)


def timed_scan(
    model: LoadedModel,
    folder: Path,
    workdir: Path,
    label: str,
    gpu_decode: str,
    batch_size: int | None = None,
    workers: int | None = None,
    gpu_threads: int = 1,
) -> ScanFigures:
    """One scan into a fresh library (nothing answered from a cache)."""
    options = ScanOptions(
        batch_size=batch_size,
        workers=workers,
        gpu_decode=gpu_decode,
        gpu_threads=gpu_threads,
    )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        library = Library(Path(tmp) / "bench.sqlite")
        start = time.perf_counter()
        summary = scan_folder(folder, model, library, options=options, keep_outcomes=True)
        elapsed = time.perf_counter() - start
        hashes, codes, _ = library.pdq_hashes(folder)
        library.close()
    if summary.errors:
        raise RuntimeError(f"the bench scan had {summary.errors} errors")
    by_hash = {h: bytes(code) for h, code in zip(hashes, codes, strict=True)}
    return ScanFigures(
        label,
        summary.files,
        summary.files / elapsed,
        elapsed,
        summary.stage_seconds,
        options.batch_for(model.device.type),
        gpu_decode,
        summary.decoded_on_device,
        {str(o.path): float(o.score) for o in summary.outcomes if o.score is not None},
        {str(o.path): by_hash[o.hash] for o in summary.outcomes if o.hash in by_hash},
    )


def forward_alone(model: LoadedModel, batch_size: int, seconds: float = 2.0) -> float:
    """Images/s of the model's predict on one batch already on the device (the ceiling)."""
    import torch

    batch = torch.rand(batch_size, *model.data_config["input_size"], device=model.device)
    model.predict(batch)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict(batch)
        runs += 1
    return runs * batch_size / (time.perf_counter() - start)


def gpu_decode_alone(paths: list[Path], device: str, batch_size: int) -> float:
    """Images/s of nvJPEG (torchvision) decoding the files' bytes in batches, bytes in memory."""
    import torch

    from nsfw_desk.core.gpu_decode import decode_batch

    datas = [path.read_bytes() for path in paths]
    decode_batch(datas[:batch_size], device)
    start = time.perf_counter()
    for at in range(0, len(datas), batch_size):
        decode_batch(datas[at : at + batch_size], device)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(datas) / (time.perf_counter() - start)


def cpu_decode_alone(paths: list[Path], workers: int) -> float:
    """Images/s of Pillow decoding the files' bytes at full size on `workers` threads."""
    from PIL import Image

    datas = [path.read_bytes() for path in paths]

    def decode(data: bytes) -> None:
        import io

        Image.open(io.BytesIO(data)).convert("RGB")

    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        list(pool.map(decode, datas))
    return len(datas) / (time.perf_counter() - start)


def compare(a: ScanFigures, b: ScanFigures) -> dict[str, float]:
    """Max |Δp|, decisions flipped at 0.5 and PDQ distances between two scans of one folder."""
    a_scores, b_scores = _by_name(a.scores), _by_name(b.scores)
    a_pdq, b_pdq = _by_name(a.pdq), _by_name(b.pdq)
    common = sorted(set(a_scores) & set(b_scores))
    pa = np.array([a_scores[p] for p in common])
    pb = np.array([b_scores[p] for p in common])
    distances = [pdq.distance(a_pdq[p], b_pdq[p]) for p in common if p in a_pdq and p in b_pdq]
    return {
        "files": len(common),
        "max_abs_dp": float(np.max(np.abs(pa - pb))) if common else 0.0,
        "flipped_pct": 100.0 * float(np.mean((pa >= THRESHOLD) != (pb >= THRESHOLD))),
        "pdq_max_distance": float(max(distances, default=0)),
        "pdq_mean_distance": float(np.mean(distances)) if distances else 0.0,
    }


def _by_name(values: dict) -> dict:
    return {Path(path).name: value for path, value in values.items()}


def describe_device(device: str) -> str:
    import torch

    from nsfw_desk.core.precision import cpu_model_name

    cores = os.cpu_count()
    cpu = f"{cpu_model_name()}, {cores} cores"
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} · {cpu} · torch {torch.__version__}"
    return f"CPU only: {cpu} · torch {torch.__version__}"


def shares(seconds: dict[str, float]) -> str:
    """Each stage's seconds (summed over threads) and share of all stages' seconds."""
    total = sum(seconds.values()) or 1.0
    return " · ".join(
        f"{stage} {seconds.get(stage, 0.0):.2f} s {100 * seconds.get(stage, 0.0) / total:.0f}%"
        for stage in STAGES
    )


def run(args: argparse.Namespace) -> dict:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu_mode = "auto" if device == "cuda" else "on"
    workdir = Path(tempfile.mkdtemp(prefix="nsfw-desk-bench-gpu-"))
    cores = os.cpu_count() or 1
    print(f"device: {describe_device(device)}", flush=True)
    folder = workdir / "photos"
    start = time.perf_counter()
    paths = make_corpus(folder, (args.width, args.height), args.files, workers=cores)
    make_corpus(workdir / "warm", (args.width, args.height), args.warm_files, workers=cores)
    print(
        f"corpus: {len(paths)} JPEGs {args.width}×{args.height} "
        f"({sum(p.stat().st_size for p in paths) / len(paths) / 1e3:.0f} kB each) "
        f"in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    model_dir = workdir / "model"
    save_random_model(model_dir, architecture=args.architecture)
    model = load_model(model_dir, device=device, precision=args.precision)
    print(f"model: {args.architecture} (random weights), {model.precision}, {model.device}")

    figures: dict = {"device": describe_device(device), "files": len(paths)}
    figures["card_loop"] = card_loop(model, paths[: args.card_files])[0]
    print(f"card loop: {figures['card_loop']:.1f} images/s ({args.card_files} files)", flush=True)

    # The CPU decode path is an order of magnitude slower on a GPU machine: it runs on the
    # first --cpu-files files (a folder of links to them), compared file by file by name.
    subset = workdir / "subset"
    subset.mkdir()
    for path in paths[: args.cpu_files]:
        os.link(path, subset / path.name)
    configs = [
        ("CPU decode", "off", None, args.workers, subset),
        ("CPU decode, 4 threads", "off", None, 4, subset),
        ("GPU decode", gpu_mode, None, args.workers, folder),
        *[(f"GPU decode, batch {b}", gpu_mode, b, args.workers, folder) for b in args.batch_sizes],
        *[(f"GPU decode, {w} threads", gpu_mode, None, w, folder) for w in args.thread_counts],
        ("GPU decode, 2 GPU threads", gpu_mode, None, args.workers, folder),
    ]
    configs += configs[2:] * (args.repeat - 1)  # the GPU scans again, interleaved: the spread
    scans: list[ScanFigures] = []
    for label, mode, batch, workers, where in configs:
        threads = 2 if "2 GPU threads" in label else 1
        timed_scan(model, workdir / "warm", workdir, "warm-up", mode, batch, workers, threads)
        result = timed_scan(model, where, workdir, label, mode, batch, workers, threads)
        scans.append(result)
        print(
            f"{label:<42} {result.images_per_s:8.1f} images/s "
            f"({result.images_per_s / figures['card_loop']:.1f}× card), batch "
            f"{result.batch_size}: {shares(result.stage_seconds)}",
            flush=True,
        )
    figures["scans"] = [
        {k: v for k, v in asdict(s).items() if k not in ("scores", "pdq")} for s in scans
    ]
    figures["gpu_vs_cpu_decode"] = compare(scans[0], scans[2])
    batch = scans[2].batch_size
    figures["forward_alone"] = forward_alone(model, batch)
    figures["gpu_decode_alone"] = gpu_decode_alone(paths[: args.ceiling_files], device, batch)
    figures["cpu_decode_alone"] = cpu_decode_alone(paths[: args.ceiling_files], cores)
    if args.large:
        large = make_corpus(workdir / "large", (4000, 3000), args.large, workers=cores)
        timed_scan(model, workdir / "large", workdir, "warm-up", gpu_mode)
        figures["card_loop_12mp"] = card_loop(model, large[: max(8, args.large // 4)])[0]
        for label, mode in (("12 MP, CPU decode", "off"), ("12 MP, GPU decode", gpu_mode)):
            result = timed_scan(model, workdir / "large", workdir, label, mode)
            figures.setdefault("scans_12mp", []).append(
                {k: v for k, v in asdict(result).items() if k not in ("scores", "pdq")}
            )
    _print(figures)
    return figures


def _print(f: dict) -> None:
    print(f"\n== nsfw-desk GPU scan bench · {f['device']}")
    print(f"{f['files']} JPEGs; rates are files / whole scan (discovery to last commit)")
    print(f"  card loop (per image, fp32)   : {f['card_loop']:8.1f} images/s")
    for s in f["scans"]:
        print(
            f"  scan, {s['label']:<42}: {s['images_per_s']:8.1f} images/s "
            f"({s['images_per_s'] / f['card_loop']:.1f}× card), {s['elapsed_s']:.2f} s, "
            f"batch {s['batch_size']}, {s['decoded_on_device']} decoded on the device"
        )
        print(f"      {shares(s['stage_seconds'])}")
    c = f["gpu_vs_cpu_decode"]
    print(
        f"  GPU vs CPU decode: max |Δp| {c['max_abs_dp']:.4f}, {c['flipped_pct']:.2f}% flipped, "
        f"PDQ distance mean {c['pdq_mean_distance']:.2f} / max {c['pdq_max_distance']:.0f} bits"
    )
    print(
        f"  ceilings: forward alone {f['forward_alone']:.0f} images/s · nvJPEG decode alone "
        f"{f['gpu_decode_alone']:.0f} · Pillow full decode on every core "
        f"{f['cpu_decode_alone']:.0f}"
    )
    for s in f.get("scans_12mp", []):
        print(
            f"  12 MP scan, {s['label']:<18}: {s['images_per_s']:8.1f} images/s "
            f"({s['images_per_s'] / f['card_loop_12mp']:.1f}× card at "
            f"{f['card_loop_12mp']:.1f}) · {shares(s['stage_seconds'])}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsfw_desk.bench_gpu", description=__doc__)
    parser.add_argument("--files", type=int, default=4096)
    parser.add_argument("--warm-files", type=int, default=256)
    parser.add_argument("--card-files", type=int, default=200)
    parser.add_argument("--ceiling-files", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--large", type=int, default=128, help="12-MP JPEGs (0: none)")
    parser.add_argument("--cpu-files", type=int, default=1024, help="for the CPU decode scans")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[256, 384])
    parser.add_argument("--thread-counts", type=int, nargs="*", default=[])
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the GPU-decode scans this many times"
    )
    parser.add_argument("--workers", type=int, default=None, help="decode threads")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--architecture", default="vit_tiny_patch16_384")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    figures = run(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
