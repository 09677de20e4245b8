"""`nsfw-desk bench`: our scan against the model card's per-image loop, in one run.

Shared machines are noisy, so every figure that matters is a ratio of two rates measured
back to back on the same files, model and device. Also measured: reduced precision (speed
and decisions flipped at 0.5), batch sizes, and the rescan rate of an unchanged folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nsfw_desk.core.defaults import BATCH_SIZE as DEFAULT_BATCH_SIZE
from nsfw_desk.core.hub import DEFAULT_MODEL, ModelError
from nsfw_desk.core.runtime import LoadedModel, load_model
from nsfw_desk.core.scan import ScanOptions, scan_folder
from nsfw_desk.core.stage_clock import describe as describe_stages
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import save_random_model, synthetic_photo

THRESHOLD = 0.5


@dataclass
class CorpusFigures:
    name: str
    files: int
    card_rate: float = 0.0
    scan_rate: float = 0.0
    ratio: float = 0.0
    max_abs_dp: float = 0.0
    reduced: dict[str, dict[str, float]] = field(default_factory=dict)
    batch_sizes: dict[int, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # the fp32 scans', summed


def make_corpus(
    folder: Path, size: tuple[int, int], count: int, quality: int = 90, workers: int = 1
) -> list[Path]:
    """`count` photo-like baseline JPEGs, written by `workers` threads (Pillow lets go of
    the GIL while it encodes)."""
    from concurrent.futures import ThreadPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)

    def write(i: int) -> Path:
        path = folder / f"photo_{i:04d}.jpg"
        synthetic_photo(size, seed=i * 7919 + size[0]).save(path, quality=quality)
        return path

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(write, range(count)))


def card_loop(model: LoadedModel, paths: list[Path]) -> tuple[float, np.ndarray]:
    """The model card's loop, verbatim in spirit: open, transform, forward, softmax."""
    import timm
    import torch
    from PIL import Image

    module = model.module
    transforms = timm.data.create_transform(
        **timm.data.resolve_model_data_config(module), is_training=False
    )
    scores = []
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            img = Image.open(path)
            output = module(transforms(img).unsqueeze(0).to(model.device)).softmax(dim=-1).cpu()
            scores.append(float(output[0, model.unsafe_indices].sum()))
    return len(paths) / (time.perf_counter() - start), np.array(scores)


def timed_scan(
    model: LoadedModel,
    folder: Path,
    paths: list[Path],
    workdir: Path,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stages: dict[str, float] | None = None,
) -> tuple[float, np.ndarray]:
    """A fresh library each time, so nothing is answered from a cache; `stages` gets the
    scan's seconds per stage added."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        library = Library(Path(tmp) / "bench.sqlite")
        start = time.perf_counter()
        summary = scan_folder(
            folder, model, library, options=ScanOptions(batch_size=batch_size), keep_outcomes=True
        )
        elapsed = time.perf_counter() - start
        library.close()
    if stages is not None:
        for stage, seconds in summary.stage_seconds.items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    by_path = {o.path: o.score for o in summary.outcomes}
    if summary.errors or len(by_path) != len(paths):
        raise RuntimeError(f"bench scan had {summary.errors} errors")
    return len(paths) / elapsed, np.array([by_path[p] for p in paths])


def bench_model(args: argparse.Namespace, workdir: Path, precision: str) -> tuple[LoadedModel, str]:
    """The requested model, the cached default, or its architecture with random weights."""
    if args.model:
        return load_model(args.model, device=args.device, precision=precision), args.model
    try:
        model = load_model(None, device=args.device, precision=precision, offline=True)
        return model, f"{DEFAULT_MODEL} (cached weights)"
    except ModelError:
        folder = workdir / "random-vit_tiny_patch16_384"
        if not folder.exists():
            save_random_model(folder, architecture="vit_tiny_patch16_384")
        model = load_model(folder, device=args.device, precision=precision)
        return model, "vit_tiny_patch16_384 with random weights (default model not cached)"


def warm_up(model: LoadedModel) -> None:
    import torch

    size = model.data_config["input_size"]
    model.predict(torch.zeros(DEFAULT_BATCH_SIZE, *size))


def measure_corpus(
    name: str,
    model: LoadedModel,
    reduced: dict[str, LoadedModel],
    folder: Path,
    paths: list[Path],
    workdir: Path,
    batch_sizes: list[int],
    rounds: int,
) -> CorpusFigures:
    """Card loop and scans alternate for `rounds` rounds; medians damp a noisy machine."""
    figures = CorpusFigures(name, len(paths))
    card_rates, scan_rates = [], []
    reduced_rates: dict[str, list[float]] = {label: [] for label in reduced}
    reduced_scores: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        card_rate, card_scores = card_loop(model, paths)
        scan_rate, scan_scores = timed_scan(model, folder, paths, workdir, stages=figures.stages)
        card_rates.append(card_rate)
        scan_rates.append(scan_rate)
        for label, other in reduced.items():
            rate, reduced_scores[label] = timed_scan(other, folder, paths, workdir)
            reduced_rates[label].append(rate)
    figures.card_rate = float(np.median(card_rates))
    figures.scan_rate = float(np.median(scan_rates))
    figures.ratio = figures.scan_rate / figures.card_rate
    figures.max_abs_dp = float(np.max(np.abs(card_scores - scan_scores)))
    for label, scores in reduced_scores.items():
        rate = float(np.median(reduced_rates[label]))
        flips = np.mean((scores >= THRESHOLD) != (scan_scores >= THRESHOLD))
        figures.reduced[label] = {
            "scan_rate": rate,
            "ratio_vs_card": rate / figures.card_rate,
            "speedup_vs_fp32": rate / figures.scan_rate,
            "flipped_pct": 100.0 * float(flips),
            "max_abs_dp_vs_fp32": float(np.max(np.abs(scores - scan_scores))),
            "max_abs_dp_vs_card": float(np.max(np.abs(scores - card_scores))),
        }
    for size in batch_sizes:
        figures.batch_sizes[size] = timed_scan(model, folder, paths, workdir, size)[0]
    return figures


def measure_cancel(model: LoadedModel, folder: Path, workdir: Path) -> float | None:
    """Seconds from `cancel()` to `scan_folder` returning, cancelled after the first batch;
    None when the scan ended before the cancel (a folder of one batch)."""
    import threading

    from nsfw_desk.core.progress import CancelToken

    cancel = CancelToken()
    first_batch = threading.Event()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        finished = {}

        def run() -> None:
            with Library(Path(tmp) / "cancel.sqlite") as library:
                summary = scan_folder(
                    folder,
                    model,
                    library,
                    cancel=cancel,
                    on_results=lambda outcomes: first_batch.set(),
                )
            finished["at"] = time.perf_counter()
            finished["cancelled"] = summary.cancelled

        worker = threading.Thread(target=run)
        worker.start()
        first_batch.wait(60)
        asked = time.perf_counter()
        cancel.cancel()
        worker.join()
    return finished["at"] - asked if finished["cancelled"] else None


def measure_pipeline(model: LoadedModel, paths: list[Path]) -> dict[str, float]:
    """Where a 12-MP image's time goes: decoding with and without the JPEG draft (median ms
    per file, one thread), and the model alone on preprocessed batches (the ceiling of any
    scan on this device and precision)."""
    import torch

    from nsfw_desk.core.images import decode

    full, draft, tensors = [], [], []
    for path in paths[:5]:
        data = path.read_bytes()
        start = time.perf_counter()
        decode(data)
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        pixels = decode(data, min_side=model.input_size)[0]
        draft.append(time.perf_counter() - start)
        tensors.append(model.preprocess(pixels)[0])
    batch = torch.stack([tensors[i % len(tensors)] for i in range(DEFAULT_BATCH_SIZE)])
    model.predict(batch)
    rounds = 4
    start = time.perf_counter()
    for _ in range(rounds):
        model.predict(batch)
    return {
        "decode_full_ms": 1000 * float(np.median(full)),
        "decode_draft_ms": 1000 * float(np.median(draft)),
        "model_only_images_per_s": rounds * DEFAULT_BATCH_SIZE / (time.perf_counter() - start),
    }


def measure_decisions(workdir: Path, count: int = 50) -> dict[str, float]:
    """Milliseconds to commit one decision, with the library's `synchronous=FULL` (an fsync
    per commit, so it survives a power cut) and, for comparison, WAL's usual `NORMAL`."""
    from nsfw_desk.core.review import DecisionInput, ReviewStore

    figures = {}
    for mode in ("FULL", "NORMAL"):
        with Library(workdir / f"decisions-{mode.lower()}.sqlite") as library:
            library.set_synchronous(mode)
            reviews = ReviewStore(library)
            times = []
            for i in range(count):
                item = DecisionInput(f"{i:064x}", "bench", 0.5, f"/bench/{i}.jpg")
                start = time.perf_counter()
                reviews.decide([item], "unsafe", reviewer="bench", threshold=THRESHOLD)
                times.append(time.perf_counter() - start)
        figures[f"decision_ms_{mode.lower()}"] = 1000 * float(np.median(times))
    return figures


def measure_rescan(workdir: Path, count: int) -> dict[str, float]:
    """Rate of a second scan over an unchanged folder (stat + library lookups only)."""
    folder = workdir / "rescan"
    folder.mkdir()
    tiny = synthetic_photo((24, 24), seed=1)
    for i in range(count):
        # distinct bytes per file, so every file has its own content hash and score
        tiny.putpixel((0, 0), (i % 256, i // 256 % 256, i // 65536 % 256))
        tiny.save(folder / f"{i:06d}.png")
    model_dir = save_random_model(workdir / "tiny-model", model_args={"img_size": 32})
    model = load_model(model_dir, device="cpu")
    library = Library(workdir / "rescan.sqlite")
    first = scan_folder(folder, model, library, options=ScanOptions(batch_size=64))
    start = time.perf_counter()
    second = scan_folder(folder, model, library)
    elapsed = time.perf_counter() - start
    library.close()
    assert second.cached == count and second.scored == 0, second
    return {
        "files": count,
        "first_scan_s": first.elapsed_s,
        "rescan_s": elapsed,
        "rescan_files_per_s": count / elapsed,
    }


def measure_export(workdir: Path, count: int) -> dict[str, float]:
    """Export `count` reviewed 320×240 JPEGs; the baseline is a plain copy loop of the same
    files with the same durability (each file fsynced), i.e. what this disk can do."""
    import os
    import shutil

    from nsfw_desk.core.export import ExportOptions, export_dataset
    from nsfw_desk.core.review import DecisionInput, ReviewStore

    folder = workdir / "export-source"
    paths = make_corpus(folder, (320, 240), count, quality=92)
    total = sum(p.stat().st_size for p in paths)
    model = load_model(
        save_random_model(workdir / "export-model", model_args={"img_size": 32}), device="cpu"
    )
    with Library(workdir / "export.sqlite") as library:
        summary = scan_folder(
            folder, model, library, options=ScanOptions(batch_size=64), keep_outcomes=True
        )
        items = [
            DecisionInput(o.hash, model.model_id, o.score, o.path)
            for o in summary.outcomes
            if o.hash
        ]
        reviews = ReviewStore(library)
        half = len(items) // 2
        reviews.decide(items[:half], "unsafe", reviewer="bench", threshold=THRESHOLD)
        reviews.decide(items[half:], "safe", reviewer="bench", threshold=THRESHOLD)
        start = time.perf_counter()
        report = export_dataset(library, ExportOptions(out=workdir / "exported"))
        export_s = time.perf_counter() - start
    copies = workdir / "plain-copies"
    copies.mkdir()
    start = time.perf_counter()
    for path in paths:
        target = copies / path.name
        shutil.copyfile(path, target)
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    copy_s = time.perf_counter() - start
    assert report.exported == count, report
    return {
        "files": count,
        "mb": total / 1e6,
        "export_s": export_s,
        "copy_s": copy_s,
        "export_mb_per_s": total / 1e6 / export_s,
        "copy_mb_per_s": total / 1e6 / copy_s,
        "export_files_per_s": count / export_s,
    }


def run_bench(args: argparse.Namespace) -> int:
    from nsfw_desk import bench_precision as bp

    if getattr(args, "library", False):
        return bp.run_library_bench(args)
    if getattr(args, "cpu_paths", False):
        return bp.run_cpu_paths_bench(args)
    if getattr(args, "cluster", False):
        from nsfw_desk.bench_cluster import run_cluster_bench

        return run_cluster_bench(args)
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp:
        workdir = Path(tmp)
        compile_cost: dict[str, float] = {}
        try:
            model, model_note = bench_model(args, workdir, "fp32")
            source = args.model or (model.spec.source if model.spec.is_local else None)
            modes, skipped = bp.cpu_modes(model.device, getattr(args, "precisions", None))
            if "compile" in modes:
                # A fresh Inductor cache: the first process pays the compilation, the second
                # shows what every later run costs; the timed scans below reuse that cache.
                cache = workdir / "inductor"
                print("compile: timing the first and a later run in fresh processes…")
                compile_cost = bp.compile_costs(source, cache)
                import os

                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
            reduced = {mode: bench_model(args, workdir, mode)[0] for mode in modes}
        except (ModelError, ValueError) as exc:
            print(f"nsfw-desk bench: {exc}", file=sys.stderr)
            return 3
        from nsfw_desk.core.runtime import choose_precision_why

        default, why = choose_precision_why(model.device, "auto", model.architecture)
        print(
            f"model: {model_note}\ndevice: {model.describe()} ({bp.cpu_name()}); "
            f"--precision auto picks {default} here ({why})",
            flush=True,
        )
        for line in skipped:
            print(f"  {line}")
        if compile_cost:
            print(
                f"  compile: first batch {compile_cost['first_run_s']:.1f} s on the first run "
                f"(empty cache), {compile_cost['later_run_s']:.1f} s on later runs (cache on "
                "disk)"
            )
        for m in (model, *reduced.values()):
            warm_up(m)
        nudenet: dict[str, float | None] = {}
        corpora = [
            ("12-MP JPEG (4000×3000)", (4000, 3000), 8 if quick else 48),
            ("1024-px JPEG (1024×768)", (1024, 768), 16 if quick else 64),
        ]
        results = []
        for name, size, count in corpora:
            folder = workdir / f"{size[0]}x{size[1]}"
            print(f"\n{name}: writing {count} files…", flush=True)
            paths = make_corpus(folder, size, count)
            sweep = [] if quick or size[0] > 2000 else [4, 8, 16]
            figures = measure_corpus(
                name, model, reduced, folder, paths, workdir, sweep, rounds=1 if quick else 2
            )
            _print_figures(figures)
            results.append(figures)
            nudenet[name] = bp.nudenet_rate(paths)
            if nudenet[name] is not None:
                print(
                    f"  NudeNet detector: {nudenet[name]:6.2f} images/s on the same files "
                    f"(nsfw-desk fp32 {figures.scan_rate / nudenet[name]:.2f}× it)"
                )
            else:
                print(f"  NudeNet detector: not installed ({bp.NUDENET_HINT})")
            if size[0] > 2000:
                pipeline = measure_pipeline(model, paths)
                print(
                    f"  decode per file : {pipeline['decode_full_ms']:6.0f} ms full, "
                    f"{pipeline['decode_draft_ms']:.0f} ms with the JPEG draft (one thread)\n"
                    f"  model alone     : {pipeline['model_only_images_per_s']:6.2f} images/s "
                    f"fp32, batch {DEFAULT_BATCH_SIZE} (the ceiling of any scan here)",
                    flush=True,
                )
                latency = measure_cancel(model, folder, workdir)
                text = (
                    f"{latency:6.2f} s"
                    if latency is not None
                    else "   n/a (the scan ended before the cancel: too few files)"
                )
                print(f"  cancel latency  : {text} (target < 1 s)", flush=True)
                from nsfw_desk.bench_dupes import print_figures as print_hash_figures

                hashing = print_hash_figures(paths, model.input_size, figures.scan_rate, quick)
                from nsfw_desk.bench_explain import print_explain_figures

                explained = print_explain_figures(model, quick)
        bp.print_modes_table(results)
        profile = bp.write_profile(model, results)
        startup_folder = workdir / "startup"
        startup_folder.mkdir()
        for path in sorted((workdir / "1024x768").glob("*.jpg"))[:DEFAULT_BATCH_SIZE]:
            (startup_folder / path.name).write_bytes(path.read_bytes())
        startup = bp.startup_split(source, startup_folder, workdir)
        bp.print_startup(startup)
        rescan_count = 2000 if quick else 10_000
        print(f"\nrescan of an unchanged folder: writing {rescan_count:,} files…", flush=True)
        rescan = measure_rescan(workdir, rescan_count)
        print(
            f"  rescan: {rescan['rescan_files_per_s']:,.0f} files/s "
            f"({rescan['files']:,} files in {rescan['rescan_s']:.2f} s; target ≥ 5,000/s)"
        )
        export_count = 1000 if quick else 10_000
        print(f"\nexport of {export_count:,} reviewed 320×240 JPEGs: writing them…", flush=True)
        exported = measure_export(workdir, export_count)
        print(
            f"  export: {exported['export_mb_per_s']:,.0f} MB/s, "
            f"{exported['export_files_per_s']:,.0f} files/s ({exported['mb']:,.0f} MB in "
            f"{exported['export_s']:.1f} s); plain copy loop with fsync: "
            f"{exported['copy_mb_per_s']:,.0f} MB/s "
            f"({exported['export_mb_per_s'] / exported['copy_mb_per_s']:.2f}× of it)",
            flush=True,
        )
        decisions = measure_decisions(workdir)
        print(
            f"\nreview decision commit: {decisions['decision_ms_full']:.2f} ms "
            f"(synchronous=FULL, as the library runs), {decisions['decision_ms_normal']:.2f} ms "
            "with NORMAL",
            flush=True,
        )
        from nsfw_desk.bench_training import measure_training, print_training

        print("\ntraining from decisions (head mode, stored embeddings):", flush=True)
        training = measure_training(workdir)
        print_training(training)
        from nsfw_desk import bench_detectors

        print("\nseveral detectors in one scan (NSFW + deepfake):", flush=True)
        detectors: dict | None = None
        try:
            detectors = bench_detectors.measure_detectors(workdir)  # the README figure's size
            bench_detectors.print_detectors(detectors)
        except ModelError as exc:  # transformers is an optional extra
            print(f"  skipped: {exc}", flush=True)
    print("\ndesk:", flush=True)
    from nsfw_desk.gui.bench_gui import print_desk_figures

    desk = print_desk_figures()
    if args.json:
        payload = {
            "model": model_note,
            "device": model.describe(),
            "corpora": [asdict(r) for r in results],
            "rescan": rescan,
            "cancel_latency_s": latency,
            "export": exported,
            "pipeline_12mp": pipeline,
            "decisions": decisions,
            "training": training,
            "detectors": detectors,
            "desk": desk,
            "perceptual_hashes": hashing,
            "precision": {
                "skipped": skipped,
                "compile_cost": compile_cost,
                "profile": asdict(profile) if profile else None,
                "nudenet_images_per_s": nudenet,
                "startup": startup,
            },
            "heat_map": explained,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


def _print_figures(f: CorpusFigures) -> None:
    print(f"  model card loop : {f.card_rate:6.2f} images/s")
    print(
        f"  nsfw-desk scan  : {f.scan_rate:6.2f} images/s  fp32, batch {DEFAULT_BATCH_SIZE}: "
        f"{f.ratio:.2f}× the card loop; max |Δp| vs card {f.max_abs_dp:.4f}"
    )
    for label, r in f.reduced.items():
        print(
            f"  nsfw-desk scan  : {r['scan_rate']:6.2f} images/s  {label}: "
            f"{r['ratio_vs_card']:.2f}× the card loop, {r['speedup_vs_fp32']:.2f}× fp32; "
            f"{r['flipped_pct']:.2f}% decisions flipped at {THRESHOLD}; "
            f"max |Δp| vs fp32 {r['max_abs_dp_vs_fp32']:.4f}, vs card "
            f"{r['max_abs_dp_vs_card']:.4f}"
        )
    if f.stages:
        print(f"  where the fp32 scan's time went (all threads): {describe_stages(f.stages)}")
    for size in f.batch_sizes:
        print(f"  batch {size:<10}: {f.batch_sizes[size]:6.2f} images/s (fp32)")
