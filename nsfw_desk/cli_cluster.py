"""`nsfw-desk cluster-scan`: score a folder or a URI on Ray Data into Parquet (core/cluster.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "cluster-scan"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def add_parser(commands, formatter_class=argparse.HelpFormatter) -> argparse.ArgumentParser:
    from nsfw_desk.core.runtime import PRECISIONS

    parser = commands.add_parser(
        NAME,
        help="score a folder on a Ray cluster (or a local Ray) into Parquet files",
        description="Score every image under SOURCE with Ray Data (the same decode, "
        "transform and model code as `scan`) and write one Parquet row per file into a new "
        "run folder under RESULTS_DIR: path, size, mtime, content hash, each model's score "
        "and embedding, PDQ hash, thumbnail, or the error. Files already in RESULTS_DIR are "
        "skipped (resume). `nsfw-desk import RESULTS_DIR` loads the results into a library. "
        "Needs the `cluster` extra: pip install 'nsfw-desk[cluster]'.",
        formatter_class=formatter_class,
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="folder every node sees, or a URI pyarrow or fsspec reaches (s3://bucket/prefix, "
        "gs://…, abfs://…, hdfs://…, file://…): listed and read by Ray Data",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="RESULTS_DIR")
    parser.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join: auto, or ray://HOST:PORT (default: start a local Ray "
        "on this machine)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="ID_OR_DIR",
        help="model to run (hub id or folder, as for scan); repeat for several "
        "(default: the default model)",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="N")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="model actors (default: from the cluster's CPUs and GPUs)",
    )
    parser.add_argument(
        "--num-gpus-per-worker",
        type=_non_negative,
        default=0.0,
        metavar="G",
        help="GPUs each model actor takes (0: run on CPUs)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--unsafe-label", default=None, metavar="L")
    parser.add_argument("--include-hidden", action="store_true")
    parser.add_argument(
        "--no-thumbnails",
        action="store_true",
        help="leave the 256-px thumbnails out of the results (the desk then shows "
        "placeholders for imported files until they are scanned locally)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop when no file is scored for S seconds (default 900)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_FAILED, EXIT_MODEL, EXIT_OK, EXIT_USAGE
    from nsfw_desk.core.cluster import (
        DEFAULT_STALL_S,
        ClusterError,
        ClusterOptions,
        ClusterStalled,
        cluster_scan,
        require_ray,
    )
    from nsfw_desk.core.cluster_results import ResultsError
    from nsfw_desk.core.hub import ModelError

    def say(text: str) -> None:
        print(f"nsfw-desk {NAME}: {text}", file=sys.stderr)

    try:
        require_ray()
    except ClusterError as exc:
        say(str(exc))
        return EXIT_USAGE
    options = ClusterOptions(
        address=args.address,
        models=list(args.model or [None]),
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        num_gpus_per_worker=args.num_gpus_per_worker,
        precision=args.precision,
        unsafe_label=args.unsafe_label,
        include_hidden=args.include_hidden,
        thumbnails=not args.no_thumbnails,
        stall_s=args.stall_timeout or DEFAULT_STALL_S,
    )
    try:
        summary = cluster_scan(args.source, args.out, options, say=say)
    except ModelError as exc:
        say(str(exc))
        return EXIT_MODEL
    except ClusterStalled as exc:
        say(str(exc))
        return EXIT_FAILED
    except (ClusterError, ResultsError) as exc:
        say(str(exc))
        return EXIT_USAGE
    lost = f"; {summary.missing:,} files came back without a row" if summary.missing else ""
    say(
        f"{summary.files:,} files: {summary.skipped:,} already done, {summary.scored:,} "
        f"scored, {summary.errors:,} errors, in {summary.elapsed_s:.1f} s "
        f"({summary.images_per_s:.1f} images/s, Ray start included); "
        f"results in {summary.run_folder}{lost}"
    )
    return EXIT_OK
