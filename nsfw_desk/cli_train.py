"""`nsfw-desk train`: a new model from the library's decisions (or an export folder)."""

from __future__ import annotations

import argparse
import errno
import sys
import time
from pathlib import Path

TRAIN_EXIT_STATUS = """\
exit status:
  0  the model was trained and saved
  1  interrupted (says whether a fine-tune's checkpoint is kept for --resume)
  2  bad input: too few decisions, an export folder that is not one, an --out
     folder that holds other things, a base model that does not match
  3  the base model could not be loaded
  4  the library cannot be used
  5  a disk is full (an earlier MODEL_DIR and checkpoint stay intact)
"""


def add_parser(commands) -> argparse.ArgumentParser:
    from nsfw_desk.cli import _HelpFormatter
    from nsfw_desk.core.defaults import VAL_FRACTION
    from nsfw_desk.core.hub import DEFAULT_MODEL
    from nsfw_desk.core.runtime import DEVICES, PRECISIONS
    from nsfw_desk.core.training.common import MODES

    parser = commands.add_parser(
        "train",
        help="train a better model from the review decisions",
        description="Train a new model from the library's current decisions (or from an "
        "export folder with --data) and save it as a model folder that `scan --model` and "
        "the desk load like any other. head (the default) trains a new linear head on the "
        "frozen backbone from the embeddings the scan stored (no image decoded for items "
        "that have one) and re-scores the library from them; partial and full fine-tune "
        "the backbone too. Prints the before/after report on the held-out split.",
        epilog=TRAIN_EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="the folder to save the model in (default: models/<base>-trained-<date> beside "
        "the library, as the desk proposes; -2, -3, ... when that is taken)",
    )
    parser.add_argument(
        "--base",
        default=None,
        metavar="MODEL",
        help=f"the model to start from: hub id or folder (default: {DEFAULT_MODEL}, pinned)",
    )
    parser.add_argument("--mode", choices=MODES, default="head")
    parser.add_argument("--epochs", type=int, default=None, help="default: per mode")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per mode")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (per mode)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=VAL_FRACTION,
        metavar="F",
        help=f"share of each class held out for the report (default {VAL_FRACTION})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume", action="store_true", help="continue from MODEL_DIR's last checkpoint"
    )
    parser.add_argument(
        "--unfreeze-blocks", type=int, default=2, metavar="N", help="partial mode: last N blocks"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="EXPORT_DIR",
        help="train on an export folder (nsfw-desk export) instead of the library",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="library file (default: in the user data folder)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


class _Lines:
    """Progress as lines on stderr: each phase once, training at most every 0.5 s."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.phase = ""
        self.last = 0.0

    def __call__(self, report) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if report.phase == self.phase and now - self.last < 0.5:
            return
        self.phase, self.last = report.phase, now
        print(f"  {report.phase}: {report.message}", file=sys.stderr, flush=True)


def _resumable(options) -> bool:
    from nsfw_desk.core.training import resumable

    try:
        return options.mode != "head" and resumable(options.out)
    except Exception:  # an unreadable checkpoint is not one to resume
        return False


def _checkpoint_kept(options) -> str:
    if not _resumable(options):
        return ""
    return (
        " The checkpoint of the last finished epoch is kept: run the same command with "
        "--resume to continue from it."
    )


def _interrupted(options) -> str:
    """What Ctrl+C left behind, checked rather than assumed."""
    nothing = f"nothing was written to {options.out}"
    if _resumable(options):
        return (
            f"{nothing}; the checkpoint of the last finished epoch is kept: run the same "
            "command with --resume to continue from it"
        )
    if options.mode == "head":
        return f"{nothing}; a head keeps no checkpoint: run the command again to start over"
    return f"{nothing} and no checkpoint was kept yet: run the command again to start over"


def default_out(base: str | None, library: Path) -> Path:
    """The desk's default for `--out`: `models/<base>-trained-<date>` in the library's folder,
    named after the base model's folder or hub id (core/training/naming.py)."""
    from nsfw_desk.core.hub import ModelSpec
    from nsfw_desk.core.training import default_model_dir

    spec = ModelSpec.parse(base)
    name = Path(spec.source).resolve().name if spec.is_local else spec.source
    return default_model_dir(library.parent / "models", name)


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import (
        EXIT_FAILED,
        EXIT_MODEL,
        EXIT_OK,
        EXIT_USAGE,
        _close_quietly,
        _failure,
        _library_path,
    )
    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.store import Library
    from nsfw_desk.core.training import TrainingError, TrainingStopped, TrainOptions, train

    library = None
    path = _library_path(args)
    if args.data is None or args.db is not None:
        if not path.is_file():  # opening would create an empty library
            where = f"{path} is a folder, not a library file" if path.is_dir() else ""
            print(
                f"nsfw-desk train: {where or f'no library at {path}'}; scan and review first, "
                "or give an export folder with --data",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            library = Library(path)
        except Exception as exc:
            status = _failure("train", exc, where=path.parent, library=args)
            if status is None:
                raise
            return status
    out = args.out.expanduser() if args.out is not None else default_out(args.base, path)
    options = TrainOptions(
        out=out,
        base=args.base,
        mode=args.mode,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        resume=args.resume,
        data=args.data.expanduser() if args.data else None,
        unfreeze_blocks=args.unfreeze_blocks,
        device=args.device,
        precision=args.precision,
    )
    if options.mode == "head" and options.resume:
        print(
            "nsfw-desk train: --resume does nothing in head mode: a head keeps no checkpoint "
            "(it trains in seconds), so training starts again from the base model",
            file=sys.stderr,
        )
    try:
        result = train(options, library, progress=_Lines(args.quiet))
    except TrainingError as exc:
        print(f"nsfw-desk train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as exc:
        print(f"nsfw-desk train: {exc}\nGive another base model with --base.", file=sys.stderr)
        return EXIT_MODEL
    except TrainingStopped as exc:  # its message says whether a checkpoint is kept
        print(f"nsfw-desk train: {exc}; nothing was written to {options.out}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"nsfw-desk train: interrupted; {_interrupted(options)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        status = _failure(
            "train",
            exc,
            where=options.out.parent,
            library=args if library is not None else None,
            kept=lambda _: (
                f"Nothing was written to {options.out}; an earlier model there is intact."
                + _checkpoint_kept(options)
            ),
        )
        if status is None:
            if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC,):
                print(f"nsfw-desk train: {exc}", file=sys.stderr)
                return EXIT_FAILED
            raise
        return status
    finally:
        if library is not None:
            _close_quietly(library)
    print(result.summary)
    return EXIT_OK
