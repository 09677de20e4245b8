"""The `nsfw-desk` command: the desk window by default, `scan` and `bench` on the core.

Exit codes (EXIT_STATUS below, shown in --help): 0 the command ran (a scan with per-file
errors still ran), 1 interrupted or an unexpected failure, 2 bad usage, 3 the model could not
be loaded, 4 the library cannot be used (locked, damaged), 5 a disk is full, 6 the desk
cannot open (no display, missing Qt system libraries), 7 some inputs of `label` or
`import-labels` were refused (each is listed). A script that runs scans unattended
can tell "free some space" from "look at the library" from "fix the command" without parsing
messages.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nsfw_desk import (
    __version__,
    bench_scale,
    cli_compare,
    cli_import_weights,
    cli_label,
    cli_train,
)
from nsfw_desk.core import defaults
from nsfw_desk.core.paths import display_path
from nsfw_desk.core.progress import CancelToken, Progress
from nsfw_desk.core.units import count

if TYPE_CHECKING:  # the store pulls in numpy and sqlite-utils: not for `nsfw-desk --help`
    from nsfw_desk.core.store import Library

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
EXIT_LIBRARY, EXIT_DISK_FULL, EXIT_NO_DISPLAY = 4, 5, 6


def text_arg(value: str) -> str:
    """argparse type of a name stored as text (reviewer, list, model id): bytes that are not
    UTF-8 in an argument (a Latin-1 terminal) are a usage error, not a traceback later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(value).decode("utf-8", "backslashreplace")
        raise argparse.ArgumentTypeError(f"not UTF-8 text: '{shown}'") from None
    return value


MODEL_HINT = "On the command line, pass --model FOLDER (or another hub id) to use another model."

EXIT_STATUS = """\
exit status:
  0  the command ran (a scan with per-file errors too)
  1  interrupted, or an unexpected failure
  2  bad usage: an option, a missing folder or library, nothing to export
  3  the model could not be loaded
  4  the library cannot be used: locked by another program for too long,
     damaged, or not an nsfw-desk library
  5  a disk is full (the library's, or the export's or --jsonl output's);
     what was saved before is kept, and no partial output is left
  6  the desk cannot open: no display, or Qt's system libraries are missing
     (the message names them and the command that installs them)
  7  label, import-labels: some files or CSV rows were refused (each is
     listed with its reason); the others were recorded (with --strict: none)
"""

_DISK_FULL_ERRNOS = {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps text with line breaks (the exit status table)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _add_model_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    from nsfw_desk.core.hub import DEFAULT_MODEL
    from nsfw_desk.core.runtime import DEVICES, PRECISIONS

    parser.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        default=None,
        action="append" if several else "store",
        help=f"hub id (org/name[@revision]) or a local folder with config.json "
        f"and model.safetensors: a timm or Hugging Face transformers image classifier "
        f"(default: {DEFAULT_MODEL}, pinned)"
        + (
            "; repeat for several detectors in one scan (the first is the primary one)"
            if several
            else ""
        ),
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where the model runs (auto: CUDA, then Apple MPS, then CPU)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: fp16 autocast on CUDA; on the CPU the fastest mode `nsfw-desk bench` "
        "showed within the flip budget here, else bf16 with native bf16 (AVX512-BF16 or AMX) "
        "and fp32 without; fp32 on Apple MPS (see README: Precision)",
    )
    parser.add_argument(
        "--unsafe-label",
        metavar="L",
        default=None,
        action="append" if several else "store",
        help="the model label(s) that count as unsafe (or fake, for an AI-generated-image "
        "detector), comma-separated (default: read from the model's label names)"
        + (
            "; with several --model, one per model in the same order (auto: from the labels)"
            if several
            else ""
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsfw-desk",
        description="Review desk for content moderators: scan folders of images with a "
        "timm classifier and keep the results in a local library.",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nsfw-desk {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output (-vv for debug, which includes file paths)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = commands.add_parser(
        "gui",
        help="open the review desk (the default command)",
        description="Open the review desk; with FOLDER, scan it too. "
        "`nsfw-desk [FOLDER]` does the same. Needs a display: on a server, use "
        "`nsfw-desk scan`.",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    gui.add_argument("folder", type=Path, nargs="?", metavar="FOLDER")
    _add_model_options(gui)
    _add_db_option(gui)
    gui.add_argument("--quit-after-paint", action="store_true", help=argparse.SUPPRESS)

    desktop = commands.add_parser(
        "desktop-integration",
        help="add nsfw-desk to the desktop's menu (Linux)",
        description="Install the desktop entry, icons and AppStream data for this user, "
        "launching this installation; --remove takes them away again.",
    )
    desktop.add_argument("--remove", action="store_true", help="remove them instead")

    scan = commands.add_parser(
        "scan",
        help="score every image under a folder",
        description="Score every image under FOLDER and store the "
        "results; unchanged files are not read again.",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    scan.add_argument("folder", type=Path, metavar="FOLDER")
    _add_model_options(scan, several=True)
    scan.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"images per forward pass (default {defaults.BATCH_SIZE} on the CPU, measured by "
        f"`bench`; {defaults.CUDA_BATCH_SIZE} on CUDA, measured by bench_gpu)",
    )
    scan.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="decode threads (default: cores, 2 to 4; on CUDA half the cores, 2 to 8)",
    )
    scan.add_argument(
        "--gpu-decode",
        choices=defaults.GPU_DECODE_CHOICES,
        default="auto",
        help="decode JPEGs on the model's device in batches (auto: on CUDA)",
    )
    scan.add_argument(
        "--threshold",
        type=_fraction,
        default=None,
        action="append",
        metavar="T",
        help="score at or above which an image is flagged (default 0.5); with several "
        "--model, one for all or one per model in the same order",
    )
    _add_db_option(scan)
    scan.add_argument(
        "--jsonl",
        type=Path,
        default=None,
        metavar="OUT",
        help="also write one JSON object per file to OUT ('-' for stdout)",
    )
    scan.add_argument(
        "--include-hidden",
        action="store_true",
        help="also scan hidden files and folders (names starting with '.')",
    )
    scan.add_argument("-q", "--quiet", action="store_true", help="no progress line")

    bench = commands.add_parser(
        "bench",
        help="measure scan speed against the model card's per-image loop",
        description="Build a folder of generated JPEGs, then time the model card's loop and "
        "nsfw-desk's scan on the same files and model in one run.",
    )
    bench.add_argument("--quick", action="store_true", help="a smaller, faster run")
    bench.add_argument(
        "--model",
        metavar="ID_OR_DIR",
        default=None,
        help="model to time (default: the default model if cached, else the "
        "same architecture with random weights)",
    )
    bench.add_argument("--device", default="auto", help="device for both loops")
    bench.add_argument(
        "--cluster",
        action="store_true",
        help="instead: cluster-scan on a local Ray against scan (needs the cluster extra)",
    )
    bench.add_argument(
        "--json", type=Path, default=None, metavar="OUT", help="also write the figures as JSON"
    )
    from nsfw_desk import bench_precision

    bench_precision.add_options(bench)
    bench_scale.add_arguments(bench)

    metrics = commands.add_parser(
        "metrics",
        help="precision/recall of a model's scores against your reviews",
        description="Compare a model's scores with the current review labels: precision, "
        "recall, F1 and false-positive rate per threshold, and two suggested "
        "thresholds (target recall with the best precision; best F1).",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    metrics.add_argument(
        "--model",
        metavar="ID",
        default=None,
        help="model id as stored (e.g. sha256:... or org/name@rev), or the model folder "
        "or hub id as scan takes it (default: the model with the most reviewed and scored "
        "items)",
    )
    metrics.add_argument(
        "--target-recall",
        type=_fraction,
        default=defaults.TARGET_RECALL,
        metavar="R",
        help="recall the first suggestion must reach (default %(default)s)",
    )
    metrics.add_argument(
        "--json",
        action="store_true",
        help="print every threshold, the suggestions and counts as JSON",
    )
    _add_db_option(metrics)

    export = commands.add_parser(
        "export",
        help="write the reviewed images as a train/val dataset folder",
        description="Copy the reviewed images into DIR as train/<class>/ and val/<class>/ "
        "with metadata.jsonl, labels.csv and a README data card, loadable by "
        "torchvision's ImageFolder, timm and Hugging Face imagefolder. DIR "
        "appears only when complete; the originals are only read.",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    export.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the dataset folder to create"
    )
    export.add_argument(
        "--only-corrections",
        action="store_true",
        help="only items where the reviewer disagreed with the model at the "
        "threshold then in force (default: every reviewed item)",
    )
    export.add_argument(
        "--folder",
        type=Path,
        default=None,
        metavar="F",
        help="only items with a file under folder F",
    )
    export.add_argument(
        "--reviewer",
        type=text_arg,
        default=None,
        metavar="R",
        help="only items whose current label was given by R",
    )
    export.add_argument(
        "--since",
        default=None,
        metavar="D",
        help="only decisions at or after D (ISO date or date-time, UTC unless it has an offset)",
    )
    export.add_argument(
        "--until",
        default=None,
        metavar="D",
        help="only decisions at or before D (a date includes the whole day)",
    )
    export.add_argument(
        "--val-fraction",
        type=_fraction,
        default=defaults.VAL_FRACTION,
        metavar="F",
        help="share of each class that goes to val/ (default %(default)s)",
    )
    export.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the train/val split (default 0; same seed, same split)",
    )
    export.add_argument(
        "--link",
        action="store_true",
        help="hard-link the originals where the filesystem allows, else copy",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR when it is an earlier export (or empty)",
    )
    export.add_argument(
        "--no-source-path",
        action="store_true",
        help="leave the original paths out of the metadata and data card",
    )
    _add_db_option(export)
    export.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    cli_label.add_parser(commands)
    cli_import_weights.add_parser(commands)
    from nsfw_desk import cli_dupes, cli_hashlist, cli_similar

    for module in (cli_dupes, cli_hashlist, cli_similar):
        module.add_parser(commands, _HelpFormatter).epilog = EXIT_STATUS
    cli_train.add_parser(commands)
    cli_compare.add_parser(commands)
    from nsfw_desk import cli_cluster, cli_import

    for module in (cli_cluster, cli_import):
        module.add_parser(commands, _HelpFormatter).epilog = EXIT_STATUS
    from nsfw_desk import cli_team

    cli_team.add_parser(commands, _HelpFormatter)
    return parser


def _add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="library file (default: in the user data folder)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


COMMANDS = (
    "gui",
    "desktop-integration",
    "scan",
    "bench",
    "metrics",
    "export",
    "label",
    "import-labels",
    "import-weights",
    "dupes",
    "hashlist",
    "similar",
    "train",
    "compare",
    "cluster-scan",
    "import",
    "merge",
    "assign",
    "agreement",
)


def main(argv: list[str] | None = None) -> int:
    try:
        status = _run(argv)
        sys.stdout.flush()  # a reader gone shows here, not in the interpreter's last flush
        return status
    except BrokenPipeError:
        # The reader went away (`nsfw-desk metrics | head -2`): nothing more to tell it.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _run(argv: list[str] | None) -> int:
    started = time.perf_counter()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in COMMANDS or a in ("-h", "--help", "--version") for a in argv):
        argv.insert(0, "gui")  # `nsfw-desk` and `nsfw-desk FOLDER` open the desk
    args = parser.parse_args(argv)
    from nsfw_desk.applog import setup_logging

    setup_logging(args.verbose)
    logging.getLogger(__name__).info("nsfw-desk %s: %s", __version__, args.command or "help")
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    if args.command == "gui":
        return run_gui(args, started)
    try:
        if args.command == "desktop-integration":
            return run_desktop_integration(args)
        if args.command == "scan":
            return run_scan(args)
        if args.command == "bench":
            from nsfw_desk.bench import run_bench

            if args.desk_scale or args.scan_memory:
                return bench_scale.run(args)
            return run_bench(args)
        if args.command == "metrics":
            return run_metrics(args)
        if args.command == "export":
            return run_export(args)
        if args.command in ("label", "import-labels"):
            return cli_label.run(args)
        if args.command == cli_import_weights.NAME:
            return cli_import_weights.run(args)
        if args.command in ("dupes", "hashlist", "similar"):
            from nsfw_desk import cli_dupes, cli_hashlist, cli_similar

            modules = {"dupes": cli_dupes, "hashlist": cli_hashlist, "similar": cli_similar}
            return modules[args.command].run(args)
        if args.command in ("cluster-scan", "import"):
            from nsfw_desk import cli_cluster, cli_import

            return (cli_cluster if args.command == "cluster-scan" else cli_import).run(args)
        if args.command in ("train", "compare"):
            return (cli_train if args.command == "train" else cli_compare).run(args)
        if args.command in ("merge", "assign", "agreement"):
            from nsfw_desk import cli_team

            return cli_team.run(args)
    except KeyboardInterrupt:
        print("\nInterrupted; everything scanned so far is kept.", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # main's: the reader of our output went away
    except Exception as exc:  # a full disk or a library failure the command did not expect
        status = _failure(args.command, exc, where=Path(tempfile.gettempdir()), library=args)
        if status is None:
            raise
        return status
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


def _library_path(args: argparse.Namespace) -> Path:
    from nsfw_desk.core.store import default_library_path

    return (getattr(args, "db", None) or default_library_path()).expanduser()


def holds_nothing_under(library, folder: Path | None, command: str) -> bool:
    """True, after saying so, when `--folder` names a folder the library has no image under
    (an empty answer would read as "nothing found" instead of "never scanned")."""
    if folder is None or library.has_files_under(folder):
        return False
    shown = display_path(folder)
    print(
        f"nsfw-desk {command}: the library holds no image under {shown}; "
        f"scan it first: nsfw-desk scan {shown}",
        file=sys.stderr,
    )
    return True


def existing_library(args: argparse.Namespace, command: str, hint: str = "") -> Path | None:
    """The library `--db` names when it exists; None, after saying so, when it does not:
    opening it would create an empty library, which no reading command wants. An empty file
    or another program's database is refused (LibraryError) before anything is written to it."""
    path = _library_path(args)
    if path.is_file():
        from nsfw_desk.core.paths import display_path
        from nsfw_desk.core.store import LibraryError, stored_schema_version

        if stored_schema_version(path) == 0:
            raise LibraryError(
                f"{display_path(path)} is not an nsfw-desk library (an empty file or another "
                "program's database); nothing was written to it"
            )
        return path
    if path.is_dir():
        example = path / "library.sqlite"
        print(
            f"nsfw-desk {command}: {path} is a folder; give the library's file, such as "
            f"--db {example}",
            file=sys.stderr,
        )
        return None
    print(f"nsfw-desk {command}: no library at {path}{hint}", file=sys.stderr)
    return None


def output_over_library(out: Path, args: argparse.Namespace) -> str | None:
    """Why writing `out` would replace the library `--db` names (or its WAL, its thumbnails),
    or None: an atomic rename over the open library loses every decision in it."""
    from nsfw_desk.core.store import default_thumbnails_path

    library = _library_path(args)
    kept = [library, *(library.with_name(library.name + s) for s in ("-wal", "-shm"))]
    kept.append(default_thumbnails_path(library))
    target = os.path.realpath(out.expanduser())
    for path in kept:
        if target == os.path.realpath(path):
            return f"{out} is the library's own file ({path}); give another file"
    return None


def _free_space(folder: Path) -> str:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    from nsfw_desk.core.units import format_size

    try:
        return format_size(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown"


def _failure(
    command: str,
    exc: BaseException,
    *,
    where: Path,
    library: argparse.Namespace | Path | None = None,
    kept: Callable[[int], str] | None = None,
) -> int | None:
    """Exit status and message for a full disk or an unusable library; None for anything else.

    `where` is the folder an OSError without a file name was writing to; `kept(status)` says
    what survived. Library failures keep every committed transaction, so there is always
    something true to say about what was kept.
    """
    from nsfw_desk.core.store import LibraryError, LibraryFull, as_library_error

    db = _library_path(library) if isinstance(library, argparse.Namespace) else library
    exc = as_library_error(exc, db)
    if isinstance(exc, LibraryFull):
        status, message = EXIT_DISK_FULL, str(exc)
    elif isinstance(exc, LibraryError):
        status, message = EXIT_LIBRARY, str(exc)
    elif isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
        place = Path(os.fsdecode(exc.filename)).parent if exc.filename else where
        what = "is full" if exc.errno == errno.ENOSPC else "is over your disk quota"
        status = EXIT_DISK_FULL
        message = (
            f"The disk holding {place} {what} ({_free_space(place)} free). "
            f"Free space on that disk and try again."
        )
    else:
        return None
    logging.getLogger(__name__).debug("%s failed", command, exc_info=True)
    print(f"nsfw-desk {command}: {message}", file=sys.stderr)
    if kept is not None:
        print(kept(status), file=sys.stderr)
    return status


def run_desktop_integration(args: argparse.Namespace) -> int:
    from nsfw_desk import desktop

    try:
        paths = desktop.uninstall() if args.remove else desktop.install()
    except OSError as exc:
        status = _failure("desktop-integration", exc, where=desktop.data_home())
        if status is None:
            raise
        return status
    verb = "Removed" if args.remove else "Installed"
    print(f"{verb} {len(paths)} files under {desktop.data_home()}", file=sys.stderr)
    return EXIT_OK


def run_gui(args: argparse.Namespace, started: float) -> int:
    if args.folder is not None and not args.folder.expanduser().is_dir():
        print(f"nsfw-desk: {args.folder} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    from nsfw_desk.gui.app import run_gui as start

    return start(
        args.folder.expanduser() if args.folder else None,
        model=args.model,
        device=None if args.device == "auto" else args.device,
        db=args.db,
        quit_after_paint=args.quit_after_paint,
        started=started,
    )


class _ProgressLine:
    """One rewritten stderr line: done/total, errors, images/s, ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < defaults.CLI_PROGRESS_INTERVAL_S:
            return
        self.last = now
        sys.stderr.write("\r\x1b[K" + progress.describe())
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")


def _per_model(values: list | None, count: int, option: str, default):
    """One value per --model: none given (the default for each), one for all, or one each."""
    if not values:
        return [default] * count
    if len(values) == 1 and (count == 1 or option == "--threshold"):
        return values * count
    if len(values) != count:
        raise ValueError(
            f"{len(values)} {option} for {count} --model: give one per --model, in the same "
            "order"
            + (
                " (or one for all)"
                if option == "--threshold"
                else " (auto: read it from the labels)"
            )
        )
    return values


def run_scan(args: argparse.Namespace) -> int:
    from nsfw_desk.core.backends import load_detector
    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.scan import ScanOptions, scan_folder
    from nsfw_desk.core.store import Library

    folder: Path = args.folder.expanduser()
    if not folder.is_dir():
        print(f"nsfw-desk scan: {folder} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    if args.jsonl and str(args.jsonl) != "-":  # said before the scan, not after it
        from nsfw_desk.core.durable import unwritable_reason

        why = unwritable_reason(args.jsonl, folder=False) or output_over_library(args.jsonl, args)
        if why:
            print(f"nsfw-desk scan: --jsonl: {why}", file=sys.stderr)
            return EXIT_USAGE
    specs = args.model or [None]
    try:
        thresholds = _per_model(args.threshold, len(specs), "--threshold", 0.5)
        labels = _per_model(args.unsafe_label, len(specs), "--unsafe-label", None)
    except ValueError as exc:
        print(f"nsfw-desk scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    line = _ProgressLine(not args.quiet)
    detectors = []
    for spec, label in zip(specs, labels, strict=True):
        try:
            detectors.append(
                load_detector(
                    spec,
                    device=args.device,
                    precision=args.precision,
                    unsafe_label=None if label in (None, "", "auto") else label,
                    progress=line,
                )
            )
        except ModelError as exc:
            line.close()
            which = f" (--model {spec})" if len(specs) > 1 else ""
            print(f"nsfw-desk: {exc}{which}\n{MODEL_HINT}", file=sys.stderr)
            return EXIT_MODEL
    model = detectors[0]
    threshold = thresholds[0]
    try:
        library = Library(args.db)
    except Exception as exc:
        status = _failure("scan", exc, where=_library_path(args).parent, library=args)
        if status is None:
            raise
        return status
    from nsfw_desk.core.scan import score_meaning_conflict

    conflict = score_meaning_conflict(library, detectors)
    if conflict:
        library.close()
        print(f"nsfw-desk: {conflict}", file=sys.stderr)
        return EXIT_MODEL
    options = ScanOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        gpu_decode=args.gpu_decode,
        include_hidden=args.include_hidden,
    )
    jsonl_folder = args.jsonl.parent if args.jsonl and str(args.jsonl) != "-" else None
    try:
        writer = (
            _JsonlWriter(args.jsonl, [d.model_id for d in detectors], thresholds)
            if args.jsonl
            else None
        )
    except OSError as exc:
        library.close()
        status = _failure("scan", exc, where=jsonl_folder or Path.cwd(), library=args)
        if status is None:
            raise
        return status
    cancel = CancelToken()
    flagged = scored = 0
    flagged_by = dict.fromkeys((d.model_id for d in detectors), 0)
    limits = {d.model_id: t for d, t in zip(detectors, thresholds, strict=True)}

    def on_results(outcomes) -> None:
        nonlocal flagged, scored
        # Called after each batch is committed: `scored` is what a failure would keep.
        scored += sum(1 for o in outcomes if o.score is not None and not o.cached)
        flagged += sum(1 for o in outcomes if o.score is not None and o.score >= threshold)
        for o in outcomes:
            for mid, value in (o.scores or {}).items():
                flagged_by[mid] += value >= limits[mid]
        if writer:
            writer.write(outcomes)

    failure: Exception | None = None
    try:
        summary = scan_folder(
            folder,
            detectors,
            library,
            options=options,
            progress=line,
            on_results=on_results,
            cancel=cancel,
        )
    except KeyboardInterrupt:
        cancel.cancel()
        raise
    except Exception as exc:  # sorted out below, once the library and output are closed
        failure = exc
    finally:
        line.close()
        _close_quietly(library)
        if writer:
            try:
                if failure is None:
                    writer.close()
                else:
                    writer.discard()
            except OSError as exc:  # the --jsonl disk filled at the last flush
                writer.discard()
                failure = failure or exc
    if failure is not None:

        def kept(status: int) -> str:
            why = "the disk filled" if status == EXIT_DISK_FULL else "this failure"
            jsonl = " The --jsonl output was not written." if writer and writer.target else ""
            return (
                f"{scored:,} files scored before {why} are kept in the library; scanning "
                f"{folder} again continues from there.{jsonl}"
            )

        status = _failure(
            "scan",
            failure,
            where=jsonl_folder or _library_path(args).parent,
            library=args,
            kept=kept,
        )
        if status is None:
            raise failure
        return status
    print(
        f"{count(summary.files, 'file')} in {summary.elapsed_s:.1f} s: "
        f"{summary.scored:,} scored, {summary.cached:,} from the library, "
        + (
            f"{summary.from_embeddings:,} scored from stored embeddings (no decoding), "
            if summary.from_embeddings
            else ""
        )
        + f"{count(summary.errors, 'error')}, {count(summary.ignored, 'other file')} ignored; "
        f"{flagged:,} flagged at {threshold:.2f}; "
        f"{summary.images_per_s:.1f} images/s on {summary.device}"
        + (
            f" ({summary.decoded_on_device:,} JPEGs decoded there)"
            if summary.decoded_on_device
            else ""
        ),
        file=sys.stderr,
    )
    if len(detectors) > 1:
        for d in detectors:
            role = "primary" if d is model else d.kind
            print(
                f"  {d.display_name} ({role}): {flagged_by[d.model_id]:,} flagged at "
                f"{limits[d.model_id]:.2f}",
                file=sys.stderr,
            )
    if args.verbose and summary.scored:
        from nsfw_desk.core.stage_clock import describe

        print(
            f"  where the time went (all threads): {describe(summary.stage_seconds)}",
            file=sys.stderr,
        )
    return EXIT_OK


class _JsonlWriter:
    """One JSON object per file, written to a temporary file and renamed at the end.

    `path` is for people; `path_base64` (only for names that are not valid UTF-8) holds the
    exact bytes, so two names that read alike stay apart (core/paths.py).
    """

    def __init__(self, out: Path, model_ids: list[str], thresholds: list[float]) -> None:
        self.model_id = model_ids[0]  # the primary detector: `score`, `flagged`
        self.threshold = thresholds[0]
        self.thresholds = dict(zip(model_ids, thresholds, strict=True))
        self.target = None if str(out) == "-" else out
        if self.target is None:
            self.fh = sys.stdout
        else:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{out.name[:100]}.", dir=out.parent or ".")
            self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, outcomes) -> None:
        from nsfw_desk.core.paths import path_fields

        for o in outcomes:
            record = {
                **path_fields(o.path),
                "hash": o.hash,
                "score": None if o.score is None else round(o.score, 6),
                "flagged": None if o.score is None else o.score >= self.threshold,
                "model": self.model_id,
                "scores": {m: round(v, 6) for m, v in (o.scores or {}).items()},
                "flags": {m: v >= self.thresholds[m] for m, v in (o.scores or {}).items()},
                "error": None if o.error_kind is None else f"{o.error_kind}: {o.error}",
            }
            self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.target is None:
            self.fh.flush()
            return
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.target)

    def discard(self) -> None:
        """After a failed scan: no partial file left (standard output is only flushed)."""
        if self.target is None:
            with contextlib.suppress(OSError):
                self.fh.flush()
            return
        with contextlib.suppress(OSError):
            self.fh.close()  # its flush may fail again on a full disk
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _close_quietly(library: Library) -> None:
    """Close a library after a failure without hiding that failure behind another."""
    with contextlib.suppress(Exception):  # the first failure is the one worth reporting
        library.close()


def run_metrics(args: argparse.Namespace) -> int:
    path = existing_library(args, "metrics")
    if path is None:
        return EXIT_USAGE
    try:
        return _metrics(args, path)
    except Exception as exc:  # opening migrates and checkpoints: those write
        status = _failure("metrics", exc, where=path.parent, library=path)
        if status is None:
            raise
        return status


def _metrics(args: argparse.Namespace, path: Path) -> int:
    from nsfw_desk.core.metrics import NotEnoughReviews, calibration_for, models_with_reviews
    from nsfw_desk.core.store import Library

    library = Library(path)
    try:
        models = models_with_reviews(library)
        model_id = args.model or (models[0][0] if models else None)
        if args.model and args.model not in {m for m, _ in models} | set(library.model_names()):
            model_id = _stored_model_id(args.model, models)
            if model_id is None:
                return EXIT_USAGE
        if model_id is None:
            print(
                "nsfw-desk metrics: no reviewed item has a score yet; review some images "
                "in the desk first (U and S).",
                file=sys.stderr,
            )
            return EXIT_USAGE
        name = library.model_names([model_id])[model_id]
        try:
            calibration = calibration_for(library, model_id, target_recall=args.target_recall)
        except NotEnoughReviews as exc:
            known = ", ".join(f"{m} ({n})" for m, n in models) or "none"
            print(f"nsfw-desk metrics: {exc}\nModels with reviewed items: {known}", file=sys.stderr)
            return EXIT_USAGE
    finally:
        library.close()
    if args.json:
        json.dump(calibration.as_dict(), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(_metrics_table(calibration, name))
    return EXIT_OK


def _stored_model_id(spec: str, models: list[tuple[str, int]]) -> str | None:
    """The id of `--model` given as a model folder or hub id (as scan takes it) rather than
    the id stored; None, said why, when it names no model this library knows."""
    from nsfw_desk.core.hub import ModelError, ModelSpec, model_folder

    known = ", ".join(f"{m} ({n})" for m, n in models) or "none"
    try:
        return model_folder(ModelSpec.parse(spec), offline=True)[1]
    except (ModelError, OSError) as exc:
        print(
            f"nsfw-desk metrics: --model {spec} is not a model of this library ({exc})\n"
            f"Give one of the ids of the models with reviewed items: {known}",
            file=sys.stderr,
        )
        return None


def _model_title(model_id: str, name: str | None) -> str:
    """The model's name for people, then the id that --model takes, when they differ."""
    return model_id if not name or name == model_id else f"{name} [{model_id}]"


def threshold_digits(thresholds, least: int = 2, most: int = 8) -> int:
    """Decimals enough that no two different thresholds print alike (suggested thresholds
    are real scores, and two can differ only in the fifth digit)."""
    values = sorted(set(thresholds))
    for digits in range(least, most + 1):
        if len({f"{t:.{digits}f}" for t in values}) == len(values):
            return digits
    return most


def _metrics_table(calibration, name: str | None = None) -> str:
    """Every 0.05 step plus the suggested thresholds (marked), then the suggestions."""
    suggested = {"target": calibration.at_target, "F1": calibration.best_f1}
    rows = {round(step * 0.05, 2): calibration.at(round(step * 0.05, 2)) for step in range(21)}
    rows.update({m.threshold: m for m in suggested.values() if m is not None})
    lines = [
        f"{_model_title(calibration.model_id, name)}: {calibration.n_unsafe:,} unsafe and "
        f"{calibration.n_safe:,} safe reviewed items (distinct images with a score from "
        "this model; exact copies count once)",
        f"{'threshold':>10} {'flagged':>8} {'tp':>7} {'fp':>7} {'tn':>7} {'fn':>7} "
        f"{'precision':>9} {'recall':>7} {'F1':>6} {'FPR':>6}",
    ]
    digits = threshold_digits(rows)
    for threshold, m in sorted(rows.items()):
        marks = " ".join(
            f"<- {name}"
            for name, s in suggested.items()
            if s is not None and s.threshold == threshold
        )
        lines.append(
            f"{threshold:>10.{digits}f} {m.tp + m.fp:>8,} {m.tp:>7,} {m.fp:>7,} {m.tn:>7,} "
            f"{m.fn:>7,} {m.precision:>9.3f} {m.recall:>7.3f} {m.f1:>6.3f} "
            f"{m.fpr:>6.3f} {marks}".rstrip()
        )
    target = calibration.at_target
    lines.append("")
    if target is None:
        lines.append(f"target: no threshold reaches recall {calibration.target_recall:g}")
    else:
        lines.append(
            f"target: recall >= {calibration.target_recall:g} with the best "
            f"precision at score >= {target.threshold:.6g}: precision "
            f"{target.precision:.3f}, recall {target.recall:.3f}, FPR {target.fpr:.3f}"
        )
    best = calibration.best_f1
    lines.append(
        f"F1: best F1 {best.f1:.3f} at score >= {best.threshold:.6g}: precision "
        f"{best.precision:.3f}, recall {best.recall:.3f}, FPR {best.fpr:.3f}"
    )
    return "\n".join(lines)


def run_export(args: argparse.Namespace) -> int:
    from nsfw_desk.core import export
    from nsfw_desk.core.store import Library

    path = existing_library(args, "export")
    if path is None:
        return EXIT_USAGE
    options = export.ExportOptions(
        out=args.out,
        only_corrections=args.only_corrections,
        folder=args.folder,
        reviewer=args.reviewer,
        since=args.since,
        until=args.until,
        val_fraction=args.val_fraction,
        seed=args.seed,
        link=args.link,
        overwrite=args.overwrite,
        include_source_path=not args.no_source_path,
    )
    try:
        library = Library(path)
    except Exception as exc:
        status = _failure("export", exc, where=path.parent, library=path)
        if status is None:
            raise
        return status
    line = _ProgressLine(not args.quiet)
    try:
        report = export.export_dataset(library, options, progress=line)
    except export.ExportError as exc:
        line.close()
        hint = (
            " (pass --overwrite to replace an earlier export or an empty folder)"
            if isinstance(exc, export.TargetExists)
            else ""
        )
        print(f"nsfw-desk export: {exc}{hint}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        line.close()
        print(f"\nInterrupted; nothing was written to {display_path(args.out)}.", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        line.close()
        # The export writes into a hidden folder beside DIR and deletes it on any failure.
        status = _failure(
            "export",
            exc,
            where=args.out.expanduser().absolute().parent,
            library=path,
            kept=lambda _: (
                f"Nothing was written to {display_path(args.out)}; the library is unchanged."
            ),
        )
        if status is not None:
            return status
        logging.getLogger(__name__).debug("export failed", exc_info=True)
        print(
            f"nsfw-desk export: failed, nothing was written to {display_path(args.out)}: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        _close_quietly(library)
    line.close()
    print(_export_summary(report), file=sys.stderr)
    return EXIT_OK


def _export_summary(report) -> str:
    """Totals and rate, counts per split and class, then skipped items and notes."""
    from nsfw_desk.core.export import _printable
    from nsfw_desk.core.units import format_rate, format_size

    links = f"; {report.linked:,} hard links" if report.linked else ""
    rate = report.bytes / report.elapsed_s if report.elapsed_s > 0 else 0.0
    lines = [
        f"Exported {report.exported:,} files ({format_size(report.bytes)}) to "
        f"{_printable(display_path(report.out))} in {report.elapsed_s:.1f} s: "
        f"{report.files_per_s:,.1f} files/s, {format_rate(rate)}{links}"
    ]
    lines += [
        f"  {split}: " + ", ".join(f"{name} {n:,}" for name, n in counts.items())
        for split, counts in report.counts.items()
    ]
    if report.skipped:
        lines.append(f"Skipped {len(report.skipped):,}:")
        lines += [
            f"  {_printable(where)}: {_printable(reason)}" for where, reason in report.skipped[:20]
        ]
        if len(report.skipped) > 20:
            lines.append(f"  ... and {len(report.skipped) - 20:,} more")
    lines += [f"Note: {note}" for note in report.notes]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
