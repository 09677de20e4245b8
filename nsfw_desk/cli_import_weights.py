"""`nsfw-desk import-weights`: a safetensors state dict from timm's train.py (via its
clean_checkpoint.py) into a model folder the desk loads, with the base model's config and
label names. The work is core/import_weights.py; this module is the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "import-weights"


def add_parser(commands) -> argparse.ArgumentParser:
    from nsfw_desk.cli import EXIT_STATUS, _HelpFormatter

    parser = commands.add_parser(
        NAME,
        help="turn weights trained with timm's train.py into a model folder",
        description="Check WEIGHTS (a .safetensors state dict, as timm's clean_checkpoint.py "
        "--safetensors writes it from a train.py checkpoint) against the base model's "
        "architecture and write MODEL_DIR in timm's hub layout with the base model's "
        "config.json and label names, ready for `nsfw-desk scan --model MODEL_DIR`. "
        "Pickle checkpoints (.pth.tar, .pth, .bin, ...) are refused unopened.",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("weights", type=Path, metavar="WEIGHTS.safetensors")
    parser.add_argument(
        "--base",
        required=True,
        metavar="MODEL",
        help="the model the training started from: a folder with config.json and "
        "model.safetensors (train.py's --model local-dir:FOLDER) or a hub id",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="MODEL_DIR", help="the model folder to write"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="EXPORT_DIR",
        help="the export train.py trained on: checks that its class_map.txt lists the "
        "labels in order, and records its train/val images in training.json",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="A,B",
        help="class names in index order, when the run changed the classes "
        "(default: the base model's label_names)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace MODEL_DIR when it is a model folder"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="a hub id as --base comes from the Hugging Face cache only",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_FAILED, EXIT_MODEL, EXIT_OK, EXIT_USAGE, _failure
    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.import_weights import WeightsError, import_weights

    labels = [n for n in args.labels.split(",")] if args.labels else None
    try:
        result = import_weights(
            args.weights,
            args.base,
            args.out,
            labels=labels,
            data=args.data,
            overwrite=args.overwrite,
            offline=args.offline,
        )
    except WeightsError as exc:
        print(f"nsfw-desk {NAME}: {exc}\nNothing was written.", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as exc:
        print(f"nsfw-desk {NAME}: the base model: {exc}\nNothing was written.", file=sys.stderr)
        return EXIT_MODEL
    except KeyboardInterrupt:
        print(f"\nInterrupted; nothing was written to {args.out}.", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        status = _failure(
            NAME,
            exc,
            where=args.out.expanduser().absolute().parent,
            kept=lambda _: f"{args.out} is as it was before.",
        )
        if status is None:
            raise
        return status
    print(result.summary, file=sys.stderr)
    return EXIT_OK
