"""The precision part of `nsfw-desk bench`: every CPU mode side by side, the profile `auto`
reads, compile's first-run and later-run cost, NudeNet on the same files, the startup split,
and `bench --library` (flips on the user's own images with the real model).

Each mode is a full `nsfw-desk scan` of the same files (bench.py's measure_corpus), compared
with fp32 eager: images/s, ratio to the model card's loop, max |Δp| and decisions flipped at
the threshold.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_desk.core.precision import (
    FLIP_BUDGET_PCT,
    NO_BF16_ENV,
    PRECISIONS,
    ModeFigures,
    Profile,
    bf16_disabled,
    check_available,
    machine_key,
    save_profile,
)

if TYPE_CHECKING:
    from nsfw_desk.bench import CorpusFigures
    from nsfw_desk.core.runtime import LoadedModel

THRESHOLD = 0.5
NUDENET_HINT = "pip install nudenet (not a dependency of nsfw-desk)"


def add_options(bench: argparse.ArgumentParser) -> None:
    """The bench's precision and library options (called from cli.py's build_parser)."""
    bench.add_argument(
        "--precisions",
        default=None,
        metavar="LIST",
        help="comma-separated modes to time beside fp32 (default: every one this machine "
        f"can run among {', '.join(p for p in PRECISIONS if p not in ('auto', 'fp32'))})",
    )
    bench.add_argument(
        "--library",
        action="store_true",
        help="instead: re-score a sample of your reviewed (else scanned) images with each "
        "precision and report flips and |Δp| against fp32 with the real model",
    )
    bench.add_argument(
        "--cpu-paths",
        action="store_true",
        help="instead: only the precision paths side by side on both corpora (fp32 eager, "
        "the card loop and each mode interleaved over 3 rounds, medians; NudeNet if "
        "installed), then the profile auto reads; a few minutes",
    )
    bench.add_argument(
        "--sample", type=int, default=200, metavar="N", help="images for --library (200)"
    )
    bench.add_argument(
        "--db", type=Path, default=None, metavar="PATH", help="library for --library"
    )


def cpu_name() -> str:
    from nsfw_desk.core.precision import cpu_model_name

    return cpu_model_name()


def cpu_modes(device: Any, requested: str | None) -> tuple[list[str], list[str]]:
    """The modes to time beside fp32 on `device`, and a line for each one left out."""
    if requested:
        wanted = [m.strip() for m in requested.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in PRECISIONS or m == "auto"]
        if unknown:
            raise ValueError(
                f"--precisions: unknown {', '.join(unknown)}; choose from "
                f"{', '.join(p for p in PRECISIONS if p != 'auto')}"
            )
    elif device.type == "cpu":
        wanted = ["bf16", "int8", "compile", "onnx", "onnx-int8", "openvino"]
    elif device.type == "cuda":
        wanted = ["fp16"]
    else:
        wanted = []
    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.runtime import cpu_has_native_bf16

    modes, skipped = [], []
    for mode in wanted:
        if mode == "fp32":
            continue
        if mode == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            why = f"{NO_BF16_ENV} is set" if bf16_disabled() else "no native bf16 on this CPU"
            skipped.append(f"bf16 skipped: {why} (it would be emulated)")
            continue
        try:
            check_available(mode, device)
        except ModelError as exc:
            skipped.append(f"{mode} skipped: {exc}")
            continue
        modes.append(mode)
    return modes, skipped


def print_modes_table(results: list[CorpusFigures]) -> None:
    """One line per mode and corpus: the table the issue asks for."""
    print(
        f"\nprecision paths side by side ({THRESHOLD} threshold, flips and |Δp| against "
        "fp32 eager on the same files):"
    )
    print(
        f"  {'corpus':<26} {'mode':<9} {'images/s':>9} {'× card':>7} {'× fp32':>7} "
        f"{'max |Δp|':>9} {'flipped':>8}"
    )
    for f in results:
        print(
            f"  {f.name:<26} {'fp32':<9} {f.scan_rate:9.2f} {f.ratio:6.2f}× {1.0:6.2f}× "
            f"{0.0:9.4f} {0.0:7.2f}%"
        )
        for mode, r in f.reduced.items():
            print(
                f"  {f.name:<26} {mode:<9} {r['scan_rate']:9.2f} {r['ratio_vs_card']:6.2f}× "
                f"{r['speedup_vs_fp32']:6.2f}× {r['max_abs_dp_vs_fp32']:9.4f} "
                f"{r['flipped_pct']:7.2f}%"
            )


def build_profile(model: LoadedModel, results: list[CorpusFigures]) -> Profile:
    """Rates from the 1024-px corpus (where the model is nearly all the work); flips and
    |Δp| the worst over every corpus."""
    small = next((f for f in results if "1024" in f.name), results[-1])
    cpu, torch_version, architecture = machine_key(model.architecture)
    profile = Profile(cpu, torch_version, architecture, corpus=small.name)
    profile.modes["fp32"] = ModeFigures(small.scan_rate, 0.0, 0.0)
    for mode, r in small.reduced.items():
        profile.modes[mode] = ModeFigures(
            images_per_s=r["scan_rate"],
            flipped_pct=max(f.reduced[mode]["flipped_pct"] for f in results),
            max_abs_dp=max(f.reduced[mode]["max_abs_dp_vs_fp32"] for f in results),
        )
    return profile


def write_profile(model: LoadedModel, results: list[CorpusFigures]) -> Profile | None:
    if model.device.type != "cpu" or not results:
        return None
    from nsfw_desk.core.precision import choose_from_profile, default_choice

    profile = build_profile(model, results)
    path = save_profile(profile)
    choice, why = choose_from_profile(model.device, model.architecture) or default_choice(
        model.device
    )
    print(f"\nprofile for --precision auto written to {path}\n  auto now picks {choice}: {why}")
    over = [m for m, f in profile.modes.items() if f.flipped_pct > FLIP_BUDGET_PCT]
    if over:
        print(f"  over the {FLIP_BUDGET_PCT}% flip budget, never picked: {', '.join(over)}")
    return profile


# --- bench --cpu-paths ---------------------------------------------------------------------

# The quick comparison skips compile unless asked for: its first compilation alone can take
# longer than the whole run (`--precisions compile,...` or the full bench time it).
CPU_PATHS_DEFAULT = "bf16,int8,onnx,onnx-int8,openvino"
# (name, size, files, rounds): few 12-MP files (decode dominates there), more small ones.
CPU_PATHS_CORPORA = (
    ("12-MP JPEG (4000×3000)", (4000, 3000), 8, 3),
    ("1024-px JPEG (1024×768)", (1024, 768), 32, 3),
)


def run_cpu_paths_bench(args: argparse.Namespace) -> int:
    """Only the precision table: each mode against fp32 eager and the card loop on the same
    generated JPEGs (12-MP and 1024-px), interleaved and repeated so that a busy machine
    slows every path alike; then NudeNet on the same files and this machine's profile."""
    import tempfile

    from nsfw_desk import bench
    from nsfw_desk.core.hub import ModelError

    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp:
        workdir = Path(tmp)
        try:
            model, note = bench.bench_model(args, workdir, "fp32")
            modes, skipped = cpu_modes(model.device, args.precisions or CPU_PATHS_DEFAULT)
            reduced = {mode: bench.bench_model(args, workdir, mode)[0] for mode in modes}
        except (ModelError, ValueError) as exc:
            print(f"nsfw-desk bench: {exc}", file=sys.stderr)
            return 3
        print(f"model: {note}\ndevice: {model.describe()} ({cpu_name()})", flush=True)
        for line in skipped:
            print(f"  {line}")
        for m in (model, *reduced.values()):
            bench.warm_up(m)
        results, nudenet = [], {}
        for name, size, count, rounds in CPU_PATHS_CORPORA:
            folder = workdir / f"{size[0]}x{size[1]}"
            print(f"{name}: writing {count} files, {rounds} interleaved rounds…", flush=True)
            paths = bench.make_corpus(folder, size, count)
            results.append(
                bench.measure_corpus(name, model, reduced, folder, paths, workdir, [], rounds)
            )
            nudenet[name] = nudenet_rate(paths)
        print_modes_table(results)
        print_nudenet(results, nudenet)
        print_linear_share(linear_share(model))
        write_profile(model, results)
    return 0


def linear_share(model: LoadedModel, batch_size: int = 8, runs: int = 3) -> float:
    """The share of fp32 eager's forward time spent in its Linear layers (timed by hooks
    over a few batches): what a path that speeds up only those, as int8 does, can save."""
    import torch

    inside = [0.0]
    started: dict[int, float] = {}

    def before(module: Any, _args: Any) -> None:
        started[id(module)] = time.perf_counter()

    def after(module: Any, _args: Any, _out: Any) -> None:
        inside[0] += time.perf_counter() - started.pop(id(module))

    linears = [m for m in model.module.modules() if isinstance(m, torch.nn.Linear)]
    hooks = [
        h
        for m in linears
        for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))
    ]
    batch = torch.rand(batch_size, *model.data_config["input_size"])
    try:
        with torch.inference_mode():
            model.module(batch)
            inside[0] = 0.0
            start = time.perf_counter()
            for _ in range(runs):
                model.module(batch)
            total = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    return inside[0] / total


def print_linear_share(share: float) -> None:
    print(
        f"  fp32 forward: {100 * share:.0f}% in Linear layers. A path that speeds up only "
        f"those (int8) is at most {1 / (1 - share / 2):.2f}× fp32 with them twice as fast, "
        f"{1 / (1 - share):.2f}× with them free"
    )


def print_nudenet(results: list[CorpusFigures], nudenet: dict[str, float | None]) -> None:
    """NudeNet beside fp32 and the fastest mode, corpus by corpus."""
    for f in results:
        rate = nudenet.get(f.name)
        if rate is None:
            print(f"  NudeNet detector: not installed ({NUDENET_HINT})")
            return
        rates = {"fp32": f.scan_rate, **{m: r["scan_rate"] for m, r in f.reduced.items()}}
        best = max(rates, key=lambda m: rates[m])
        print(
            f"  {f.name:<26} NudeNet {rate:6.2f} images/s; fp32 {rates['fp32'] / rate:.2f}× "
            f"it, {best} {rates[best] / rate:.2f}× it"
        )


# --- torch.compile's cost, in fresh processes ---------------------------------------------


def compile_costs(model_source: str | None, cache_dir: Path) -> dict[str, float]:
    """Seconds to the first scored batch with `compile`, in a fresh process with an empty
    Inductor cache (first run on a machine) and again with that cache (every later run)."""
    figures = {}
    for label in ("first_run_s", "later_run_s"):
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
        command = [sys.executable, "-m", "nsfw_desk.bench_precision", "compile-probe"]
        command += [model_source] if model_source else []
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"compile probe failed: {done.stderr.strip()[-500:]}")
        figures[label] = float(done.stdout.split()[-1])
        figures[label.replace("_s", "_process_s")] = time.perf_counter() - start
    return figures


def _compile_probe(source: str | None) -> None:
    """The child of `compile_costs`: load with compile, time the first batch, print it."""
    import torch

    from nsfw_desk.core.runtime import load_model

    model = load_model(source, device="cpu", precision="compile", offline=source is None)
    batch = torch.zeros(8, *model.data_config["input_size"])
    start = time.perf_counter()
    model.predict(batch)
    print(f"{time.perf_counter() - start:.3f}")


# --- NudeNet on the same files -------------------------------------------------------------


def nudenet_rate(paths: list[Path]) -> float | None:
    """NudeNet's detector (its own ONNX Runtime session) over `paths`, images/s; None when
    nudenet is not installed."""
    import importlib.util

    if importlib.util.find_spec("nudenet") is None:
        return None
    from nudenet import NudeDetector

    detector = NudeDetector()
    detector.detect(str(paths[0]))  # session warm-up, as our scan's model is warm
    start = time.perf_counter()
    for path in paths:
        detector.detect(str(path))
    return len(paths) / (time.perf_counter() - start)


# --- startup ------------------------------------------------------------------------------

_STARTUP = re.compile(
    r"startup: first batch scored ([\d.]+) s .*Python imports ([\d.]+) s \(torch and timm "
    r"([\d.]+) s\), model load ([\d.]+) s, first batch ([\d.]+) s"
)


def startup_split(model_source: str | None, folder: Path, workdir: Path) -> dict[str, float]:
    """`nsfw-desk -v scan` in a fresh process on `folder`: its logged startup split, plus the
    process's wall time."""
    command = [sys.executable, "-m", "nsfw_desk", "-v", "scan", str(folder), "-q"]
    command += ["--db", str(workdir / "startup.sqlite"), "--precision", "fp32"]
    if model_source:
        command += ["--model", model_source]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    found = _STARTUP.search(done.stderr)
    if done.returncode not in (0, 1) or not found:
        raise RuntimeError(f"startup probe failed ({done.returncode}): {done.stderr[-500:]}")
    total, imports, torch_s, load, first = map(float, found.groups())
    hitch = import_hitch()
    return {
        "hitch_ms": hitch["worst_stall_ms"],
        "hitch_import_s": hitch["import_s"],
        "total_s": total,
        "imports_s": imports,
        "torch_import_s": torch_s,
        "model_load_s": load,
        "first_batch_s": first,
        "process_s": wall,
    }


_HITCH_PROBE = """
import threading, time
done = threading.Event()
took = []
def load():
    start = time.perf_counter()
    import torch, timm  # noqa: F401
    took.append(time.perf_counter() - start)
    done.set()
threading.Thread(target=load).start()
worst, last = 0.0, time.perf_counter()
while not done.is_set():
    time.sleep(0.005)
    now = time.perf_counter()
    worst, last = max(worst, now - last - 0.005), now
print(f"HITCH {worst * 1000:.1f} {took[0]:.2f}")
"""


def import_hitch() -> dict[str, float]:
    """The longest the main thread of a fresh process waits while another thread imports
    torch and timm, as the desk's scan thread does: `torch._C`'s initialisation holds the
    interpreter, whichever thread runs it, so the window cannot paint meanwhile."""
    done = subprocess.run(
        [sys.executable, "-c", _HITCH_PROBE], capture_output=True, text=True, check=False
    )
    found = re.search(r"HITCH ([\d.]+) ([\d.]+)", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"import probe failed ({done.returncode}): {done.stderr[-500:]}")
    return {"worst_stall_ms": float(found.group(1)), "import_s": float(found.group(2))}


def print_startup(figures: dict[str, float]) -> None:
    print(
        f"\nstartup of `nsfw-desk scan` (fresh process, fp32): first batch scored "
        f"{figures['total_s']:.2f} s after the start = Python imports "
        f"{figures['imports_s']:.2f} s (torch and timm {figures['torch_import_s']:.2f} s) + "
        f"model load {figures['model_load_s']:.2f} s + first batch "
        f"{figures['first_batch_s']:.2f} s",
        flush=True,
    )
    if "hitch_ms" in figures:
        print(
            f"  the desk's window cannot paint for up to {figures['hitch_ms']:.0f} ms while its "
            f"scan thread imports torch and timm ({figures['hitch_import_s']:.2f} s): once "
            "per process, at the first scan",
            flush=True,
        )


# --- bench --library ----------------------------------------------------------------------


def library_sample(db: Path | None, sample: int) -> tuple[str, list[Path]]:
    """Up to `sample` paths of reviewed images that still exist (scanned ones when nothing
    is reviewed), spread evenly over the library; and which kind they are."""
    from nsfw_desk.core.review import ReviewStore
    from nsfw_desk.core.store import Library

    with Library(db) as library:
        reviewed = sorted(ReviewStore(library).current_labels())
        kind, hashes = ("reviewed", reviewed) if reviewed else ("scanned", [])
        if not hashes:
            hashes = library.all_content_hashes()
        step = max(1, len(hashes) // max(1, sample * 2))
        chosen = hashes[::step]
        files = library.files_for_hashes(chosen)
    paths = []
    for digest in chosen:
        existing = next((p for p, _, _ in files.get(digest, []) if p.is_file()), None)
        if existing:
            paths.append(existing)
        if len(paths) >= sample:
            break
    return kind, paths


def run_library_bench(args: argparse.Namespace) -> int:
    import torch

    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.images import decode
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.store import default_library_path

    db = args.db.expanduser() if args.db else None
    if db is not None and not db.is_file():
        print(f"nsfw-desk bench --library: no library at {db}", file=sys.stderr)
        return 2
    kind, paths = library_sample(db, args.sample)
    if not paths:
        print(
            f"nsfw-desk bench --library: no reviewed or scanned image of the library "
            f"{db or default_library_path()} exists on disk; scan a folder first.",
            file=sys.stderr,
        )
        return 1
    try:
        base = load_model(args.model, device="cpu", precision="fp32")
        modes, skipped = cpu_modes(torch.device("cpu"), args.precisions)
        others = {m: load_model(args.model, device="cpu", precision=m) for m in modes}
    except (ModelError, ValueError) as exc:
        print(f"nsfw-desk bench: {exc}", file=sys.stderr)
        return 3
    print(f"model: {base.display_name} ({base.model_id})\nimages: {len(paths)} {kind}, on disk")
    for line in skipped:
        print(f"  {line}")
    tensors, unreadable = [], 0
    for path in paths:
        try:
            pixels = decode(path.read_bytes(), min_side=base.input_size)[0]
        except Exception:  # counted and said below; the sample goes on
            unreadable += 1
            continue
        tensors.append(base.preprocess(pixels)[0])
    if unreadable:
        print(f"  {unreadable} file(s) could not be read or decoded and were left out")
    if not tensors:
        print("nsfw-desk bench --library: none of the sampled images decoded", file=sys.stderr)
        return 1
    scores: dict[str, np.ndarray] = {}
    rates: dict[str, float] = {}
    for mode, model in {"fp32": base, **others}.items():
        model.predict(torch.stack(tensors[:1]))  # compile/warm-up outside the timing
        out, start = [], time.perf_counter()
        for i in range(0, len(tensors), 8):
            out.append(model.predict(torch.stack(tensors[i : i + 8])).unsafe_scores)
        rates[mode] = len(tensors) / (time.perf_counter() - start)
        scores[mode] = np.concatenate(out)
    ref = scores["fp32"]
    print(f"\n  {'mode':<9} {'model img/s':>11} {'max |Δp|':>9} {'flipped at 0.5':>15}")
    flips: dict[str, float] = {}
    for mode, values in scores.items():
        flips[mode] = 100.0 * float(np.mean((values >= THRESHOLD) != (ref >= THRESHOLD)))
        dp = float(np.max(np.abs(values - ref)))
        print(f"  {mode:<9} {rates[mode]:11.2f} {dp:9.4f} {flips[mode]:14.2f}%")
    _merge_library_flips(base, flips)
    return 0


def _merge_library_flips(model: LoadedModel, flips: dict[str, float]) -> None:
    """Real images outrank generated ones: a mode that flipped more on the library than in
    the bench keeps the library's figure in this machine's profile, so `auto` respects it."""
    from nsfw_desk.core.precision import load_profile

    profile = load_profile(model.architecture)
    if profile is None:
        print(
            "\nno bench profile for this machine yet (run nsfw-desk bench); auto keeps "
            "fp32/bf16 until then"
        )
        return
    changed = []
    for mode, pct in flips.items():
        figures = profile.modes.get(mode)
        if figures and pct > figures.flipped_pct:
            figures.flipped_pct = pct
            changed.append(mode)
    if changed:
        save_profile(profile)
        print(f"\nprofile updated with the library's flip rates for {', '.join(changed)}")


if __name__ == "__main__":  # internal probes the bench runs in fresh processes
    if sys.argv[1:2] == ["compile-probe"]:
        _compile_probe(sys.argv[2] if len(sys.argv) > 2 else None)
    else:
        sys.exit(f"usage: {sys.argv[0]} compile-probe [MODEL]")
