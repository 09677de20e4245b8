"""`nsfw-desk label` and `nsfw-desk import-labels`: decisions from outside the window.

Both write the desk's own decisions (see core/labelling.py) in one transaction, print what
happened to each input, and end with a summary. Inputs that cannot be used are listed with
their reason and change nothing; the exit status then says so (EXIT_REFUSED).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_REFUSED = 7  # see cli.EXIT_STATUS
SHOWN_REFUSED = 50  # rows listed one by one; the rest are counted


def add_parser(commands) -> None:
    """The parsers of both commands, with the exit-status table every command shows."""
    from nsfw_desk.cli import EXIT_STATUS as epilog
    from nsfw_desk.cli import _HelpFormatter as formatter_class

    label = commands.add_parser(
        "label",
        help="record review decisions for image files",
        description="Record a decision (unsafe, safe, or clear the label) for each image, "
        "by its content as the desk does: every copy of the image carries it. Images the "
        "library does not know yet are read and listed (thumbnail, no score). A folder is "
        "only labelled with --recursive. Files that are not images or cannot be read are "
        "listed and change nothing. --ai-generated records the second, independent label "
        "(AI-generated or real, as the desk's G/R) with --as or alone; at least one of the "
        "two is needed. All decisions of one run are one transaction.",
        epilog=epilog,
        formatter_class=formatter_class,
    )
    label.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files")
    label.add_argument(
        "--as",
        dest="label",
        choices=("unsafe", "safe", "clear"),
        help="the decision; clear removes the label (the log keeps the history)",
    )
    label.add_argument(
        "--ai-generated",
        type=_ai_choice,
        metavar="yes|no|clear",
        help="the AI-generated label (the desk's G/R), alone or with --as: yes (AI-generated), "
        "no (real) or clear; also true/false, 1/0",
    )
    label.set_defaults(label_parser=label)
    label.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="label every image under a folder given as PATH (as a scan finds them: "
        "hidden files and folders skipped)",
    )
    _add_common(label)

    imports = commands.add_parser(
        "import-labels",
        help="record review decisions from a CSV file",
        description="Record the decisions of a CSV file with a 'label' column (unsafe/safe, "
        "nsfw/sfw or 1/0) and a 'hash' (the library's content hash) or 'path' column "
        "(also path_base64, source_path[_base64] and file_name, as the export's labels.csv "
        "writes them; relative paths are relative to the CSV's folder). A 'reviewer' column "
        "wins over --reviewer, a 'note' column is kept; decided_at, score, model, "
        "threshold and tags columns are not used (the decision is recorded now, with the library's "
        "score and your threshold, like the desk's). Rows whose image already has that "
        "label are reported unchanged. An 'ai_generated' column (true/false, yes/no, 1/0; "
        "empty: none) records the AI-generated label too (the desk's G/R), or alone when "
        "the label cell (or column) is empty, as the export's labels.csv writes it. Bad rows "
        "are listed with their line and skipped; "
        "all good rows are one transaction.",
        epilog=epilog,
        formatter_class=formatter_class,
    )
    imports.add_argument("csv", type=Path, metavar="FILE.csv", help="the labels")
    imports.add_argument(
        "--strict",
        action="store_true",
        help="record nothing at all when any row is bad",
    )
    _add_common(imports)


def _ai_choice(text: str) -> str:
    """--ai-generated: yes, no or clear (true/false, 1/0 too)."""
    from nsfw_desk.core.labelling import ai_word

    if text.strip().lower() == "clear":
        return "clear"
    try:
        return "yes" if ai_word(text) else "no"
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not one of yes, no, clear (or true/false, 1/0)"
        ) from None


def _add_common(parser: argparse.ArgumentParser) -> None:
    from nsfw_desk.cli import text_arg

    parser.add_argument(
        "--reviewer",
        type=text_arg,
        default=None,
        metavar="NAME",
        help="who decided (default: the desk's reviewer name, your login name unless "
        "changed in Settings)",
    )
    from nsfw_desk.cli import _add_db_option

    _add_db_option(parser)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only refused inputs and the summary"
    )


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, _close_quietly, _failure, _library_path
    from nsfw_desk.core import labelling
    from nsfw_desk.core.settings import Settings
    from nsfw_desk.core.store import Library

    command = args.command
    settings = Settings.load()
    reviewer = " ".join((args.reviewer or settings.reviewer).split())
    if not reviewer:
        print(f"nsfw-desk {command}: --reviewer needs a name", file=sys.stderr)
        return EXIT_USAGE
    notes: list[str] = []
    if command == "label":
        if args.label is None and args.ai_generated is None:
            args.label_parser.error("give the label: --as, --ai-generated, or both")
        label = None if args.label == "clear" else args.label
        items, notes = labelling.items_for_paths(args.paths, label, recursive=args.recursive)
        for item in items:
            item.decide = args.label is not None
            if args.ai_generated is not None:
                item.ask_ai({"yes": True, "no": False, "clear": None}[args.ai_generated])
        strict = False
    else:
        try:
            items, notes = labelling.read_label_csv(args.csv)
        except labelling.LabelFileError as exc:
            print(f"nsfw-desk import-labels: {exc}", file=sys.stderr)
            return EXIT_USAGE
        strict = args.strict
    path = _library_path(args)
    try:
        library = Library(path)
    except Exception as exc:
        status = _failure(command, exc, where=path.parent, library=path)
        if status is None:
            raise
        return status
    try:
        report = labelling.record_labels(
            library,
            items,
            reviewer=reviewer,
            threshold=settings.threshold,
            strict=strict,
            notes=notes,
            ai_thresholds=[(d["model"], d["threshold"]) for d in settings.detectors],
        )
    except Exception as exc:
        status = _failure(
            command,
            exc,
            where=path.parent,
            library=path,
            kept=lambda _: (
                "No decision of this run was recorded (files it listed stay "
                "listed, without a label)."
            ),
        )
        if status is None:
            raise
        return status
    finally:
        _close_quietly(library)
    _print_items(report, quiet=args.quiet, csv_rows=command != "label")
    print(summary(report, command), file=sys.stderr)
    return EXIT_REFUSED if report.count(labelling.REFUSED) else EXIT_OK


def _print_items(report, *, quiet: bool, csv_rows: bool) -> None:
    from nsfw_desk.core.export import _printable
    from nsfw_desk.core.labelling import AI_NAMES, LABELLED, REFUSED
    from nsfw_desk.core.paths import display_path

    refused = 0
    for item in report.items:
        if item.status == REFUSED:
            refused += 1
            if refused > SHOWN_REFUSED:
                continue
            path = f" {_printable(display_path(item.path))}" if csv_rows and item.path else ""
            print(
                f"refused: {_printable(item.where)}{path}: {item.kind}: {_printable(item.reason)}",
                file=sys.stderr,
            )
        elif (
            item.status
            and not quiet
            and not (csv_rows and item.status == LABELLED and not item.reason)
        ):
            what = item.status
            if item.status == LABELLED:
                what = _labelled(item, AI_NAMES)
            reason = f" ({_printable(item.reason)})" if item.reason else ""
            print(f"{what}: {_printable(item.where)}{reason}")
    if refused > SHOWN_REFUSED:
        print(f"refused: ... and {refused - SHOWN_REFUSED:,} more", file=sys.stderr)


def _labelled(item, ai_names: dict) -> str:
    """What one input got, as the summary words it: "labelled unsafe, real", "cleared label"
    (not "labelled clear"), "labelled safe; cleared AI-generated label"."""
    given = ([item.label] if item.records_label and item.label else []) + (
        [ai_names[item.ai]] if item.records_ai and item.ai is not None else []
    )
    cleared = (["label"] if item.records_label and not item.label else []) + (
        ["AI-generated label"] if item.records_ai and item.ai is None else []
    )
    parts = ["labelled " + ", ".join(given)] if given else []
    if cleared:
        parts.append("cleared " + " and ".join(cleared))
    return "; ".join(parts)


def summary(report, command: str) -> str:
    """One paragraph: what was recorded, for whom, and what was not."""
    from nsfw_desk.core.labelling import DUPLICATE, REFUSED, UNCHANGED

    unit = "rows" if command == "import-labels" else "files"
    refused = report.count(REFUSED)
    if not report.recorded:
        return (
            f"Nothing recorded (--strict): {refused:,} of {len(report.items):,} {unit} "
            "refused, listed above. Fix them or leave out --strict to record the others."
        )
    labels = report.labels()
    done = ", ".join(
        f"{n:,} {label or 'cleared'}"
        for label, n in sorted(labels.items(), key=lambda kv: kv[0] or "")
    )
    ai = report.ai_labels()
    parts = []
    if report.decision_ids or not report.ai_label_ids:
        parts.append(
            _count(len(report.decision_ids), "decision")
            + " recorded"
            + (f" ({done})" if done else "")
            + f" as {_reviewers(report, 'records_label')}, threshold {report.threshold:.2f}"
        )
    if report.ai_label_ids:
        words = {True: "AI-generated", False: "real", None: "cleared"}
        said = ", ".join(f"{ai[v]:,} {words[v]}" for v in (True, False, None) if v in ai)
        parts.append(
            _count(len(report.ai_label_ids), "AI-generated label")
            + f" recorded ({said})"
            + ("" if report.decision_ids else f" as {_reviewers(report, 'records_ai')}")
        )
    if report.count(UNCHANGED):
        parts.append(f"{report.count(UNCHANGED):,} already had that label (unchanged)")
    if report.count(DUPLICATE):
        parts.append(f"{report.count(DUPLICATE):,} the same image as an earlier one")
    if report.listed:
        # "not scored" was wrong for a copy of content the library has scores for: the desk
        # shows those; what is true of every listed file is that no model ran.
        parts.append(_count(report.listed, "new file") + " listed in the library (no model ran)")
    if refused:
        parts.append(
            _count(refused, unit[:-1]) + " refused (listed above; nothing recorded for them)"
        )
    lines = ["; ".join(parts) + "."]
    lines += [f"Note: {note}" for note in report.notes]
    return "\n".join(lines)


def _reviewers(report, records: str) -> str:
    """Who the recorded decisions are by: a CSV's `reviewer` column wins over --reviewer."""
    from nsfw_desk.core.labelling import LABELLED

    names = sorted(
        {
            item.reviewer or report.reviewer
            for item in report.items
            if item.status == LABELLED and getattr(item, records)
        }
    )
    return ", ".join(names) or report.reviewer


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
