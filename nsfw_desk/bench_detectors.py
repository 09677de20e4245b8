"""Several detectors in one scan, for `nsfw-desk bench`: NSFW (timm vit_tiny_patch16_384)
plus a deepfake detector (transformers ViTForImageClassification with ViT-Small/16 shapes at
384 px, labels real/fake), both with random weights, on the same generated JPEGs.

Measured back to back: one scan with both detectors; two separate scans (one per detector,
each decoding every file); and the parts, one at a time on one thread: one decode of every
file (at the larger input size, as the joint scan decodes) and each model's forward passes
alone (batches of the scan's size on tensors made beforehand). The goal (issue 13): the
joint scan costs no more than the two forward passes plus one decode; the figures print
that sum beside the scan's time. The scan's decode threads overlap the forward passes, so
on a machine with spare cores it comes in under the serial sum.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from nsfw_desk.core.defaults import BATCH_SIZE


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
    """One thread, one thing at a time: decode every file once, each model's
    preprocessing, each model's forward passes."""
    import torch

    from nsfw_desk.core.images import decode

    min_side = max(d.input_size for d in detectors)
    blobs = [p.read_bytes() for p in paths]
    start = time.perf_counter()
    pictures = [decode(b, min_side=min_side)[0] for b in blobs]
    parts = {"decode_s": time.perf_counter() - start}
    for n, detector in enumerate(detectors):
        start = time.perf_counter()
        tensors = [detector.preprocess(p)[0] for p in pictures]
        parts[f"preprocess_{n}_s"] = time.perf_counter() - start
        detector.predict(torch.stack(tensors[:BATCH_SIZE]))  # warm-up
        start = time.perf_counter()
        for first in range(0, len(tensors), BATCH_SIZE):
            detector.predict(torch.stack(tensors[first : first + BATCH_SIZE]))
        parts[f"forward_{n}_s"] = time.perf_counter() - start
    return parts


def measure_detectors(workdir: Path, files: int = 32, tiny: bool = False) -> dict:
    """Joint scan vs two separate scans vs the sum of the parts, on `files` JPEGs."""
    from nsfw_desk.bench import make_corpus

    nsfw, fake = _models(workdir, tiny)
    size = (320, 240) if tiny else (1024, 768)
    folder = workdir / f"detectors-{size[0]}x{size[1]}"
    paths = make_corpus(folder, size, files)
    if not tiny:  # warm-up: first-call costs out of the figures
        _scan(folder, [nsfw, fake], workdir)
    together_s, decodes_together, joint = _scan(folder, [nsfw, fake], workdir)
    nsfw_s, decodes_a, alone_a = _scan(folder, [nsfw], workdir)
    fake_s, decodes_b, alone_b = _scan(folder, [fake], workdir)
    parts = _parts(paths, [nsfw, fake])
    bound = parts["forward_0_s"] + parts["forward_1_s"] + parts["decode_s"]
    agree = max(
        abs(joint[p][d.model_id] - alone[p][d.model_id])
        for d, alone in ((nsfw, alone_a), (fake, alone_b))
        for p in paths
    )
    return {
        "files": files,
        "size": f"{size[0]}x{size[1]}",
        "models": [f"{nsfw.architecture} ({nsfw.kind})", f"{fake.architecture} ({fake.kind})"],
        "together_s": together_s,
        "separate_s": nsfw_s + fake_s,
        "separate_nsfw_s": nsfw_s,
        "separate_deepfake_s": fake_s,
        "ratio": together_s / (nsfw_s + fake_s),
        "decodes_together": decodes_together,
        "decodes_separate": decodes_a + decodes_b,
        "forwards_plus_one_decode_s": bound,
        "within_bound": together_s <= bound,
        "max_abs_dp_together_vs_alone": agree,
        **parts,
    }


def print_detectors(f: dict) -> None:
    print(
        f"  {f['files']} JPEGs {f['size']}; {f['models'][0]} + {f['models'][1]}, random "
        "weights, fp32\n"
        f"  one scan, both detectors : {f['together_s']:6.2f} s ({f['decodes_together']} "
        "decodes)\n"
        f"  two separate scans       : {f['separate_s']:6.2f} s ({f['decodes_separate']} "
        f"decodes: {f['separate_nsfw_s']:.2f} + {f['separate_deepfake_s']:.2f} s); one scan "
        f"takes {f['ratio']:.2f}× of it\n"
        f"  parts, one thread        : forward {f['forward_0_s']:.2f} + {f['forward_1_s']:.2f} "
        f"s, one decode {f['decode_s']:.2f} s: sum {f['forwards_plus_one_decode_s']:.2f} s "
        f"(preprocessing {f['preprocess_0_s']:.2f} + {f['preprocess_1_s']:.2f} s, not in "
        "the sum)\n"
        f"  one scan ≤ forwards + one decode: {'yes' if f['within_bound'] else 'NO'} "
        f"({f['together_s'] / f['forwards_plus_one_decode_s']:.2f}× the sum); scores vs "
        f"each detector alone: max |Δp| {f['max_abs_dp_together_vs_alone']:.4f}",
        flush=True,
    )
