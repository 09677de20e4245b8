"""Several detectors in one scan, for `nsfw-desk bench` and `python -m
nsfw_desk.bench_detectors`: NSFW (timm vit_tiny_patch16_384) plus a deepfake detector
(transformers ViTForImageClassification with ViT-Small/16 shapes at 384 px, labels
real/fake), both with random weights, on the same generated JPEGs.

The goal (issue 13): one scan with both detectors costs no more than the two models' forward
passes plus one decode of every file. Each repeat measures, back to back: the joint scan; two
separate scans (one per detector, each decoding every file); and that bound's parts, one at a
time on this thread: one decode of every file (at the larger input size, as the joint scan
decodes) and the forward passes on the tensors the scan's own preprocessing makes, in
batches of the scan's size in the scan's order (detector A then B on each batch). The ratios
joint/separate and joint/bound are taken within each repeat and their medians reported, so a
machine that gets busier between repeats moves both sides of a ratio alike.

The joint scan does more than the bound counts (preprocessing for each detector, the PDQ
hash, the thumbnail, the library writes); it meets the bound by doing that work in its
decode threads while the forward passes run (core/scan.py, core/torch_threads.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from nsfw_desk.core.defaults import BATCH_SIZE

FILES = 16  # the figure the README quotes: 16 JPEGs of 1024×768
REPEATS = 3


@contextlib.contextmanager
def counting_decodes() -> Iterator[list[int]]:
    """Count the scan's decode calls while inside (one per decoded file)."""
    from nsfw_desk.core import scan

    calls: list[int] = []
    real = scan.decode

    def counted(data, **kwargs):
        calls.append(1)
        return real(data, **kwargs)

    scan.decode = counted  # type: ignore[assignment]
    try:
        yield calls
    finally:
        scan.decode = real  # type: ignore[assignment]


def _models(workdir: Path, tiny: bool):
    from nsfw_desk.core.backends import load_detector
    from nsfw_desk.core.backends.transformers_backend import import_transformers

    import_transformers("The benchmark's deepfake detector")  # ModelError: how to install
    from nsfw_desk.synthetic import save_random_model, save_random_transformers_model

    if tiny:  # the suite's size: the same code paths in a second
        nsfw_dir = save_random_model(workdir / "nsfw-tiny")
        fake_dir = save_random_transformers_model(workdir / "deepfake-tiny")
    else:
        nsfw_dir = save_random_model(workdir / "nsfw-vit_tiny", architecture="vit_tiny_patch16_384")
        fake_dir = save_random_transformers_model(
            workdir / "deepfake-vit_small",
            image_size=384,
            patch_size=16,
            hidden_size=384,
            layers=12,
            heads=6,
        )
    nsfw = load_detector(nsfw_dir, device="cpu", precision="fp32")
    fake = load_detector(fake_dir, device="cpu", precision="fp32")
    return nsfw, fake


def _scan(folder: Path, detectors, workdir: Path) -> tuple[float, int, dict]:
    """Seconds, decodes and outcomes of one scan into a fresh library."""
    from nsfw_desk.core.scan import scan_folder
    from nsfw_desk.core.store import Library

    with tempfile.TemporaryDirectory(dir=workdir) as tmp, counting_decodes() as decodes:
        library = Library(Path(tmp) / "bench.sqlite")
        start = time.perf_counter()
        summary = scan_folder(folder, detectors, library, keep_outcomes=True)
        elapsed = time.perf_counter() - start
        library.close()
    if summary.errors:
        raise RuntimeError(f"bench scan had {summary.errors} errors")
    return elapsed, len(decodes), {o.path: o.scores for o in summary.outcomes}


def _parts(paths: list[Path], detectors) -> dict[str, float]:
    """The bound's parts, one thing at a time: decode every file once (this thread, the
    joint scan's decode size); each detector's forward passes on the tensors the scan's
    preprocessing makes, batched as the scan batches (each batch: A, then B). The
    preprocessing is timed too (not part of the bound), on a thread set up as the scan's
    decode threads are."""
    import torch

    from nsfw_desk.core.images import decode
    from nsfw_desk.core.scan import _decode_thread_setup, _preprocess_all

    min_side = max(d.input_size for d in detectors)
    blobs = [p.read_bytes() for p in paths]
    start = time.perf_counter()
    pictures = [decode(b, min_side=min_side)[0] for b in blobs]
    parts = {"decode_s": time.perf_counter() - start}
    everyone = list(range(len(detectors)))
    tensors: list[dict] = []

    def preprocess() -> None:
        _decode_thread_setup()
        start = time.perf_counter()
        tensors.extend(_preprocess_all(detectors, everyone, p)[0] for p in pictures)
        parts["preprocess_s"] = time.perf_counter() - start

    worker = threading.Thread(target=preprocess, name="bench-preprocess")
    worker.start()
    worker.join()
    batches = [
        [torch.stack([t[i] for t in tensors[first : first + BATCH_SIZE]]) for i in everyone]
        for first in range(0, len(tensors), BATCH_SIZE)
    ]
    for i, detector in enumerate(detectors):  # warm-up: first-call costs out of the figures
        detector.predict(batches[0][i])
        parts[f"forward_{i}_s"] = 0.0
    for batch in batches:
        for i, detector in enumerate(detectors):
            start = time.perf_counter()
            detector.predict(batch[i])
            parts[f"forward_{i}_s"] += time.perf_counter() - start
    return parts


def measure_detectors(
    workdir: Path, files: int = FILES, tiny: bool = False, repeats: int = REPEATS
) -> dict:
    """Joint scan vs two separate scans vs forwards + one decode, on `files` JPEGs;
    `repeats` rounds, medians (ratios taken within each round)."""
    from nsfw_desk.bench import make_corpus
    from nsfw_desk.core.precision import cpu_model_name
    from nsfw_desk.core.runtime import available_cores

    nsfw, fake = _models(workdir, tiny)
    size = (320, 240) if tiny else (1024, 768)
    folder = workdir / f"detectors-{size[0]}x{size[1]}"
    paths = make_corpus(folder, size, files)
    load_before = _load()
    if not tiny:  # warm-up: first-call costs out of the figures
        _scan(folder, [nsfw, fake], workdir)
    rounds: list[dict] = []
    agree = 0.0
    for _ in range(max(1, repeats)):
        together_s, decodes_together, joint = _scan(folder, [nsfw, fake], workdir)
        nsfw_s, decodes_a, alone_a = _scan(folder, [nsfw], workdir)
        fake_s, decodes_b, alone_b = _scan(folder, [fake], workdir)
        parts = _parts(paths, [nsfw, fake])
        bound = parts["forward_0_s"] + parts["forward_1_s"] + parts["decode_s"]
        agree = max(
            agree,
            *(
                abs(joint[p][d.model_id] - alone[p][d.model_id])
                for d, alone in ((nsfw, alone_a), (fake, alone_b))
                for p in paths
            ),
        )
        rounds.append(
            {
                "together_s": together_s,
                "separate_s": nsfw_s + fake_s,
                "separate_nsfw_s": nsfw_s,
                "separate_deepfake_s": fake_s,
                "forwards_plus_one_decode_s": bound,
                "ratio": together_s / (nsfw_s + fake_s),
                "ratio_to_bound": together_s / bound,
                "decodes_together": decodes_together,
                "decodes_separate": decodes_a + decodes_b,
                **parts,
            }
        )
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    return {
        "files": files,
        "size": f"{size[0]}x{size[1]}",
        "models": [f"{nsfw.architecture} ({nsfw.kind})", f"{fake.architecture} ({fake.kind})"],
        "cpu": cpu_model_name(),
        "cores": available_cores(),
        "load_before": load_before,
        "load_after": _load(),
        "repeats": len(rounds),
        **median,
        "decodes_together": max(r["decodes_together"] for r in rounds),
        "decodes_separate": max(r["decodes_separate"] for r in rounds),
        "within_bound": median["ratio_to_bound"] <= 1.0,
        "max_abs_dp_together_vs_alone": agree,
        "rounds": rounds,
    }


def _load() -> float | None:
    """The 1-minute load average: how idle the machine was (None where unknown)."""
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return None


def print_detectors(f: dict) -> None:
    load = (
        f"load {f['load_before']:.1f} → {f['load_after']:.1f}"
        if f["load_before"] is not None and f["load_after"] is not None
        else "load unknown"
    )
    rounds = ", ".join(f"{r['ratio_to_bound']:.2f}" for r in f["rounds"])
    print(
        f"  {f['files']} JPEGs {f['size']}; {f['models'][0]} + {f['models'][1]}, random "
        f"weights, fp32; {f['cpu']}, {f['cores']} cores ({load}); medians of {f['repeats']}\n"
        f"  one scan, both detectors : {f['together_s']:6.2f} s ({f['decodes_together']} "
        "decodes)\n"
        f"  two separate scans       : {f['separate_s']:6.2f} s ({f['decodes_separate']} "
        f"decodes: {f['separate_nsfw_s']:.2f} + {f['separate_deepfake_s']:.2f} s)\n"
        f"  forwards + one decode    : {f['forwards_plus_one_decode_s']:6.2f} s (forward "
        f"{f['forward_0_s']:.2f} + {f['forward_1_s']:.2f} s, one decode {f['decode_s']:.2f} s, "
        f"one thread; preprocessing {f['preprocess_s']:.2f} s, not in the sum)\n"
        f"  one scan / two scans     : {f['ratio']:.2f}×\n"
        f"  one scan / (forwards + one decode): {f['ratio_to_bound']:.2f}× (each round: "
        f"{rounds}); within the bound: {'yes' if f['within_bound'] else 'NO'}\n"
        f"  scores vs each detector alone: max |Δp| {f['max_abs_dp_together_vs_alone']:.4f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m nsfw_desk.bench_detectors`: the issue-13 figure alone."""
    from nsfw_desk.core.hub import ModelError

    parser = argparse.ArgumentParser(
        prog="python -m nsfw_desk.bench_detectors",
        description=" ".join(__doc__.split("\n\n")[0].split()),  # the whole first paragraph
    )
    parser.add_argument("--files", type=int, default=FILES, help="JPEGs of 1024×768")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="rounds (medians)")
    parser.add_argument("--tiny", action="store_true", help="tiny models (a smoke test)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp:
        try:
            figures = measure_detectors(
                Path(tmp), files=args.files, tiny=args.tiny, repeats=args.repeats
            )
        except ModelError as exc:  # transformers is an optional extra
            print(f"bench_detectors: {exc}", file=sys.stderr)
            return 3
    print("several detectors in one scan (NSFW + deepfake):", flush=True)
    print_detectors(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
