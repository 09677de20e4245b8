"""The heat map's figures for `nsfw-desk bench`: time per image and faithfulness (deletion)
of attention rollout and Grad-CAM on the bench's model.

Run alone (a minute or two): `python -m nsfw_desk.bench_explain [--model ID_OR_DIR]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nsfw_desk.core.explain import (
    METHODS,
    area,
    deletion_curve,
    explain,
    gradcam,
    gradcam_package,
    supports,
)
from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.runtime import LoadedModel
from nsfw_desk.synthetic import synthetic_photo


def measure_explain(model: LoadedModel, images: int = 6, repeats: int = 3) -> dict[str, float]:
    """Median ms per heat map and mean deletion area per method, and for a random order."""
    figures: dict[str, float] = {}
    photos = [synthetic_photo((640, 480), seed=31 * i + 5) for i in range(images)]
    rng = np.random.default_rng(0)
    x = model.preprocess(photos[0])[0][None]
    model.predict(x)  # warm-up
    predict_times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(x)
        predict_times.append(1000 * (time.perf_counter() - started))
    figures["predict_ms"] = statistics.median(predict_times)
    for method in METHODS:
        started = time.perf_counter()
        explain(model, photos[0], method)  # warm-up
        figures[f"{method}_first_ms"] = 1000 * (time.perf_counter() - started)
        times, areas = [], []
        for photo in photos:
            for _ in range(repeats):
                heat = explain(model, photo, method)
                times.append(heat.seconds * 1000)
            order = np.argsort(-heat.values.ravel(), kind="stable")
            areas.append(area(deletion_curve(model, photo, order)))
        figures[f"{method}_ms"] = statistics.median(times)
        figures[f"{method}_deletion_area"] = float(np.mean(areas))
    grid = model.module.patch_embed.grid_size
    random_areas = [
        area(deletion_curve(model, photo, rng.permutation(grid[0] * grid[1]))) for photo in photos
    ]
    figures["random_deletion_area"] = float(np.mean(random_areas))
    figures.update(_package_agreement(model, photos[0]))
    figures["start_score"] = float(
        np.mean([explain(model, photo, "rollout").score for photo in photos])
    )
    return figures


def _package_agreement(model: LoadedModel, photo) -> dict[str, float]:
    """Time of the grad-cam package's GradCAM (first call: its imports) and the largest
    difference of its map from ours, scaled and resized to the input as the package does."""
    x = model.preprocess(photo)[0][None].to(model.device)
    try:
        started = time.perf_counter()
        theirs = gradcam_package(model.module, x, model.unsafe_indices)[0]
        first = time.perf_counter() - started
        started = time.perf_counter()
        theirs = gradcam_package(model.module, x, model.unsafe_indices)[0]
        again = time.perf_counter() - started
    except ModelError:
        return {}
    import cv2  # the package's own dependency

    ours = gradcam(model.module, x, model.unsafe_indices)[0]
    resized = cv2.resize(ours, theirs.shape[::-1])
    scaled = (resized - resized.min()) / max(1e-12, float(resized.max() - resized.min()))
    diff = float(np.abs(scaled - theirs).max())
    return {"package_first_ms": 1000 * first, "package_ms": 1000 * again, "package_diff": diff}


def print_explain_figures(model: LoadedModel, quick: bool = False) -> dict[str, float]:
    if not supports(model):
        print("  heat map        : n/a (not a ViT)", flush=True)
        return {}
    figures = measure_explain(model, images=3 if quick else 6, repeats=2 if quick else 3)
    print(
        f"  heat map        : {figures['predict_ms']:6.0f} ms for a plain prediction of one "
        "image (the yardstick; target for a heat map < 300 ms)",
        flush=True,
    )
    for method, what in (("gradcam", "Grad-CAM (the desk's)"), ("rollout", "attention rollout")):
        print(
            f"  heat map        : {figures[f'{method}_ms']:6.0f} ms {what} (median; first call "
            f"{figures[f'{method}_first_ms']:.0f} ms); deletion area "
            f"{figures[f'{method}_deletion_area']:.3f}",
            flush=True,
        )
    if "package_ms" in figures:
        print(
            f"  heat map        : {figures['package_ms']:6.0f} ms Grad-CAM through the grad-cam "
            f"package (first call {figures['package_first_ms']:.0f} ms, its imports); its map "
            f"vs ours (scaled and resized as it does): max |Δ| {figures['package_diff']:.5f}",
            flush=True,
        )
    else:
        print("  heat map        : grad-cam package not installed (pip install grad-cam)")
    print(
        f"  deletion area   : {figures['random_deletion_area']:.3f} for a random order "
        f"(positive-class probability averaged while greying 0-100 % of the patches; "
        f"start {figures['start_score']:.3f}; lower = the map found more of the evidence)",
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from nsfw_desk.bench import bench_model

    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-") as tmp:
        try:
            model, note = bench_model(args, Path(tmp), "fp32")
        except ModelError as exc:
            print(f"bench_explain: {exc}", file=sys.stderr)
            return 3
        print(f"model: {note}\ndevice: {model.describe()}", flush=True)
        print_explain_figures(model, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
