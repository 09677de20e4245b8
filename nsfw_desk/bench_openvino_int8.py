"""Would static int8 (NNCF post-training quantization) make OpenVINO faster here? A probe.

`python -m nsfw_desk.bench_openvino_int8` (needs `pip install 'nsfw-desk[openvino]' nncf`)
quantizes the cached ONNX export three ways with NNCF, calibrated on generated photos that the
bench never scores: static int8 of every MatMul (model_type TRANSFORMER, preset MIXED), the
same with the attention's two activation MatMuls kept in fp32, and int8 weights alone
(`nncf.compress_weights`). It scores the bench's own 1024-px JPEGs with each and with
OpenVINO fp32, against fp32 eager (max |Δp|, decisions flipped at 0.5), and times the forward
pass alone (batches of 8, the models interleaved over rounds, medians) under OpenVINO's
LATENCY hint (one stream) and THROUGHPUT hint (its streams, each batch split across them).

None of these is a `--precision` mode: on the 2-core AVX2 EPYC this was written on (no VNNI),
every int8 variant was slower than OpenVINO fp32 (README, Precision). The probe stays so that
a CPU with an int8 dot-product instruction (AVX-VNNI, AVX512-VNNI, AMX) can be measured with
the same command before int8 is wired in. Quantized graphs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLD = 0.5
CALIBRATION_SEED = 10**6  # far from the bench corpus's seeds (i * 7919 + width)
# --variants key → the name printed.
VARIANTS = {
    "static": "static int8",
    "static-fc": "static int8, attention fp32",
    "weights": "int8 weights only",
}


def quantize(source: Path, variant: str, calibration: np.ndarray, out: Path) -> float:
    """Write `variant` of the graph at `source` as OpenVINO IR at `out`; seconds taken."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # one INFO line per layer it leaves alone
    start = time.perf_counter()
    model = ov.Core().read_model(str(source))
    if variant == "weights":
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    else:
        kept = [r".*attn/MatMul.*"] if variant == "static-fc" else []
        model = nncf.quantize(
            model,
            nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))]),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(patterns=kept, validate=False),
        )
    ov.save_model(model, str(out), compress_to_fp16=False)
    return time.perf_counter() - start


def openvino_forward(path: Path, hint: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Probabilities for a batch from the scan's own runner under `hint` (the batch split
    over the compiled model's streams), its blob not cached."""
    import torch

    from nsfw_desk.core.accel.openvino_runner import OpenVinoRunner

    runner = OpenVinoRunner(path, threads, hint=hint, cache=False)

    def run(batch: np.ndarray) -> np.ndarray:
        return runner(torch.from_numpy(batch))[0]

    run.streams = len(runner.requests)  # type: ignore[attr-defined]
    return run


def scores_of(
    run: Callable[[np.ndarray], Any], pixels: np.ndarray, unsafe: list[int]
) -> np.ndarray:
    out = [
        np.asarray(run(pixels[i : i + 8]))[:, unsafe].sum(axis=1) for i in range(0, len(pixels), 8)
    ]
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nsfw_desk.bench_openvino_int8")
    parser.add_argument("--model", default=None, help="model id or folder (default: as bench)")
    parser.add_argument("--files", type=int, default=64, help="1024-px JPEGs scored (64)")
    parser.add_argument("--calibration", type=int, default=48, help="calibration images (48)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (3)")
    parser.add_argument("--size", default="1024x768", help="JPEG size scored (1024x768)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, of {', '.join(VARIANTS)} (all)",
    )
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if unknown := [v for v in variants if v not in VARIANTS]:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        print(f"needs OpenVINO and NNCF: pip install 'nsfw-desk[openvino]' nncf ({exc})")
        return 3
    import torch

    from nsfw_desk import bench
    from nsfw_desk.core.accel.onnx_runner import ensure_export
    from nsfw_desk.core.images import decode
    from nsfw_desk.synthetic import synthetic_photo

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-ovint8-") as tmp:
        workdir = Path(tmp)
        options = argparse.Namespace(model=args.model, device="cpu")
        model, note = bench.bench_model(options, workdir, "fp32")
        size = model.data_config["input_size"]
        paths = bench.make_corpus(workdir / "corpus", (width, height), args.files)
        pixels = torch.stack(
            [
                model.preprocess(decode(p.read_bytes(), min_side=model.input_size)[0])[0]
                for p in paths
            ]
        ).numpy()
        calibration = torch.stack(
            [
                model.preprocess(synthetic_photo((800, 600), seed=CALIBRATION_SEED + i))[0]
                for i in range(args.calibration)
            ]
        ).numpy()
        source = ensure_export(model.module, model_id=model.model_id, input_size=tuple(size))
        print(f"model: {note}; {model.describe()}; {len(paths)} {args.size} JPEGs scored")
        graphs = {"openvino fp32": source}
        for variant in variants:
            name = VARIANTS[variant]
            graphs[name] = workdir / f"{variant}.xml"
            seconds = quantize(source, variant, calibration, graphs[name])
            print(f"  {name}: quantized in {seconds:.0f} s", flush=True)

        def eager(batch: np.ndarray) -> np.ndarray:
            return model.predict(torch.from_numpy(batch)).probabilities

        runs: dict[str, Callable[[np.ndarray], Any]] = {"fp32 eager": eager}
        for name, path in graphs.items():
            for hint in ("LATENCY", "THROUGHPUT"):
                run = openvino_forward(path, hint, model.threads)
                runs[f"{name} · {hint} ({run.streams} streams)"] = run  # type: ignore[attr-defined]
        reference = scores_of(eager, pixels, model.unsafe_indices)
        near = int(np.sum(np.abs(reference - THRESHOLD) < 0.05))
        print(
            f"  fp32 scores {reference.min():.2f}–{reference.max():.2f}, {near} within 0.05 of 0.5"
        )
        rates: dict[str, list[float]] = {name: [] for name in runs}
        batch = np.ascontiguousarray(pixels[:8])
        for run in runs.values():
            run(batch)  # warm-up outside the timing
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                for _ in range(3):
                    run(batch)
                rates[name].append(3 * len(batch) / (time.perf_counter() - start))
        base = statistics.median(rates["fp32 eager"])
        print(f"\n  {'path':<52} {'images/s':>8} {'× eager':>8} {'max |Δp|':>9} {'flipped':>8}")
        for name, run in runs.items():
            scores = scores_of(run, pixels, model.unsafe_indices)
            dp = float(np.max(np.abs(scores - reference)))
            flipped = 100.0 * float(np.mean((scores >= THRESHOLD) != (reference >= THRESHOLD)))
            rate = statistics.median(rates[name])
            print(f"  {name:<52} {rate:8.2f} {rate / base:7.2f}× {dp:9.4f} {flipped:7.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
