"""`nsfw-desk bench --cluster`: cluster-scan on a local Ray against `scan`, same files.

Both run fp32 on the same generated JPEGs with the same model and batch size; the figures
are the Ray run's images/s as a share of the scan's (the overhead of Ray Data: actor start,
the object store, Parquet writes) and the largest score difference between the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nsfw_desk.bench import make_corpus, timed_scan, warm_up
from nsfw_desk.core.defaults import BATCH_SIZE
from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.runtime import available_cores, load_model
from nsfw_desk.synthetic import save_random_model


def _model_spec(args: argparse.Namespace, workdir: Path) -> tuple[str | None, str]:
    """The --model, else the cached default model, else its architecture, random weights."""
    if args.model:
        return args.model, args.model
    try:
        load_model(None, device="cpu", precision="fp32", offline=True)
        return None, "the default model (cached weights)"
    except ModelError:
        folder = workdir / "random-vit_tiny_patch16_384"
        save_random_model(folder, architecture="vit_tiny_patch16_384")
        return str(folder), "vit_tiny_patch16_384 with random weights (default model not cached)"


def run_cluster_bench(args: argparse.Namespace) -> int:
    from nsfw_desk.core.cluster import ClusterError, ClusterOptions, cluster_scan, require_ray
    from nsfw_desk.core.cluster_results import read_rows

    try:
        ray = require_ray()
    except ClusterError as exc:
        print(f"nsfw-desk bench --cluster: {exc}", file=sys.stderr)
        return 2
    count = 48 if args.quick else 192
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-bench-cluster-") as tmp:
        workdir = Path(tmp)
        spec, note = _model_spec(args, workdir)
        model = load_model(spec, device="cpu", precision="fp32")
        warm_up(model)
        folder = workdir / "photos"
        print(f"model: {note}\ndevice: {model.describe()}\nwriting {count} 1024×768 JPEGs…")
        paths = make_corpus(folder, (1024, 768), count)
        scan_rate, scan_scores = timed_scan(model, folder, paths, workdir, BATCH_SIZE)
        print(f"  nsfw-desk scan   : {scan_rate:6.2f} images/s (fp32, batch {BATCH_SIZE})")
        started = time.perf_counter()
        ray.init(num_cpus=available_cores(), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        try:
            options = ClusterOptions(models=[spec], precision="fp32", batch_size=BATCH_SIZE)
            summary = cluster_scan(folder, workdir / "results", options)
        finally:
            ray.shutdown()
        scores = {row["path"]: row["scores"][0]["unsafe"] for row in read_rows(workdir / "results")}
        cluster_scores = np.array([scores[str(p)] for p in paths])
        worst = float(np.max(np.abs(cluster_scores - scan_scores)))
        rate = summary.images_per_s
        steady = summary.scored / summary.scoring_s if summary.scoring_s else 0.0
        print(
            f"  cluster-scan     : {rate:6.2f} images/s end to end "
            f"({rate / scan_rate:.2f}× scan; listing, actor start with model load, Parquet "
            f"writes included; Ray's own start, {ray_start:.1f} s, not)\n"
            f"  cluster-scan     : {steady:6.2f} images/s once the model actor was ready "
            f"({steady / scan_rate:.2f}× scan) on {summary.pool.describe()}\n"
            f"  max |Δp| vs scan : {worst:.2e} (fp32 both)",
            flush=True,
        )
        if steady:
            hours = 1e7 / steady / 3600
            print(
                f"  10M images       : about {hours:,.0f} h on one node like this one at the "
                f"steady rate; on N such nodes {hours:,.0f}/N h, plus the actors' start once "
                "(see README: Score on a cluster)",
                flush=True,
            )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "model": note,
                        "files": count,
                        "scan_images_per_s": scan_rate,
                        "cluster_images_per_s": rate,
                        "cluster_steady_images_per_s": steady,
                        "ratio": rate / scan_rate,
                        "steady_ratio": steady / scan_rate,
                        "ray_start_s": ray_start,
                        "max_abs_dp": worst,
                        "pool": summary.pool.describe(),
                    },
                    indent=2,
                )
            )
    return 0
