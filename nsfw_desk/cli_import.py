"""`nsfw-desk import RESULTS_DIR`: load cluster-scan results into the library (no Ray)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "import"


def add_parser(commands, formatter_class=argparse.HelpFormatter) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        NAME,
        help="load `cluster-scan` results into the library",
        description="Load the Parquet results of `nsfw-desk cluster-scan` into the library by "
        "content hash (scores per model with embeddings, PDQ hashes, thumbnails, errors), so "
        "the desk shows them without running a model. Importing twice changes nothing. "
        "Needs pyarrow (pip install 'nsfw-desk[cluster]').",
        formatter_class=formatter_class,
    )
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR")
    parser.add_argument(
        "--map-prefix",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="rewrite paths starting with FROM to start with TO (the cluster's mount point "
        "to this machine's); repeatable, the first match wins",
    )
    parser.add_argument("--db", type=Path, default=None, metavar="PATH", help="library file")
    return parser


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE
    from nsfw_desk.core.cluster_import import PrefixMap, import_results
    from nsfw_desk.core.cluster_results import ResultsError
    from nsfw_desk.core.store import Library

    try:
        maps = [PrefixMap.parse(text) for text in args.map_prefix]
    except ValueError as exc:
        print(f"nsfw-desk {NAME}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.results.is_dir():
        print(f"nsfw-desk {NAME}: {args.results} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    with Library(args.db) as library:
        try:
            summary = import_results(args.results, library, maps=maps)
        except ResultsError as exc:
            print(f"nsfw-desk {NAME}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    changed = ", ".join(f"{n:,} {what}" for what, n in summary.changed.items() if n)
    print(
        f"{summary.rows:,} rows ({summary.images:,} images, {summary.errors:,} errors) from "
        f"{len(summary.models)} model(s): "
        + (f"written: {changed}" if changed else "the library already had all of it"),
        file=sys.stderr,
    )
    if summary.skipped:
        count = len(summary.skipped)
        print(
            f"nsfw-desk {NAME}: {count:,} result {'file' if count == 1 else 'files'} could not "
            f"be read and {'was' if count == 1 else 'were'} left out (torn when a run was "
            f"killed?): {', '.join(map(str, summary.skipped[:3]))}"
            + (f" and {count - 3:,} more" if count > 3 else "")
            + ". Their files are not in the library: run the same cluster-scan again (it "
            "scores them anew), then import again.",
            file=sys.stderr,
        )
    return EXIT_OK
