"""`nsfw-desk compare MODEL_A MODEL_B`: both models on the reviewed items neither trained on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(commands) -> argparse.ArgumentParser:
    from nsfw_desk.core.defaults import THRESHOLD

    parser = commands.add_parser(
        "compare",
        help="compare two models on the reviewed items",
        description="Accuracy, precision, recall, F1, ROC AUC, average precision and the "
        "confusion counts of two models on the library's reviewed items that neither was "
        "trained on (from each model folder's training.json), and how many decisions at the "
        "threshold change. A head-only trained model scores missing items from stored "
        "embeddings.",
    )
    parser.add_argument("model_a", metavar="MODEL_A", help="hub id or model folder")
    parser.add_argument("model_b", metavar="MODEL_B", help="hub id or model folder")
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="library file (default: in the user data folder)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_MODEL, EXIT_OK, EXIT_USAGE, _close_quietly, existing_library
    from nsfw_desk.core.compare import CompareError, compare_lines, compare_models
    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.store import Library

    path = existing_library(args, "compare")
    if path is None:
        return EXIT_USAGE
    library = Library(path)
    try:
        result = compare_models(library, args.model_a, args.model_b, threshold=args.threshold)
    except CompareError as exc:
        print(f"nsfw-desk compare: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as exc:
        print(f"nsfw-desk compare: {exc}", file=sys.stderr)
        return EXIT_MODEL
    finally:
        _close_quietly(library)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(compare_lines(result)))
    return EXIT_OK
