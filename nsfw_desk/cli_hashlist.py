"""`nsfw-desk hashlist`: import, list, remove and export lists of hashes to share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHOWN_BAD_LINES = 20


def add_parser(commands, formatter_class=argparse.HelpFormatter) -> argparse.ArgumentParser:
    from nsfw_desk.cli import text_arg

    hashlist = commands.add_parser(
        "hashlist",
        help="import, list, remove or export hash lists (PDQ, MD5, SHA-1, SHA-256)",
        description="Hash lists let teams share what they decided without sharing images. "
        "Items matching an imported list show the list's name; an 'unsafe' list's matches "
        "count as flagged.",
        formatter_class=formatter_class,
    )
    actions = hashlist.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="import a list: one hash per line",
        description="One hash per line: PDQ as 64 hex digits with an optional ',quality'; "
        "MD5, SHA-1 or SHA-256 of a file's bytes as 32, 40 or 64 hex digits. '#' starts a "
        "comment. Bad lines are reported with their number and skipped.",
        formatter_class=formatter_class,
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    imp.add_argument(
        "--name", type=text_arg, required=True, help="the list's name, shown on matching items"
    )
    imp.add_argument(
        "--as",
        dest="kind",
        required=True,
        choices=("unsafe", "safe", "known"),
        help="what a match means",
    )
    exp = actions.add_parser(
        "export",
        help="write the hashes of reviewed items",
        description="Write the hashes of the items whose current label is LABEL, one per "
        "line, to share with another team (no image leaves the library).",
        formatter_class=formatter_class,
    )
    exp.add_argument("--label", required=True, choices=("unsafe", "safe"))
    exp.add_argument(
        "--format",
        choices=("pdq", "sha256"),
        default="pdq",
        help="pdq: 'hash,quality' (default); sha256: of the file's bytes",
    )
    exp.add_argument("--out", type=Path, metavar="FILE", help="write here (default: stdout)")
    actions.add_parser("list", help="the imported lists", formatter_class=formatter_class)
    rem = actions.add_parser("remove", help="forget a list", formatter_class=formatter_class)
    rem.add_argument("name", type=text_arg, metavar="NAME")
    for parser in (imp, exp, rem, actions.choices["list"]):
        parser.add_argument("--db", type=Path, default=None, metavar="PATH", help="library file")
    return hashlist


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_USAGE, _library_path, existing_library
    from nsfw_desk.core.store import Library

    if args.action == "import":  # a list can come before the first scan
        path = _library_path(args)
    elif (found := existing_library(args, f"hashlist {args.action}")) is not None:
        path = found
    else:
        return EXIT_USAGE
    with Library(path) as library:
        return {"import": _import, "export": _export, "list": _list, "remove": _remove}[
            args.action
        ](args, library)


def _import(args, library) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, _ProgressLine
    from nsfw_desk.core.hashlists import HashListError, import_hash_list
    from nsfw_desk.core.store import LibraryError

    line = _ProgressLine(not args.quiet)  # bytes read of the file's size, as scan shows
    try:
        report = import_hash_list(library, args.file, args.name, args.kind, progress=line)
    except (HashListError, LibraryError, OSError) as exc:
        line.close()
        print(f"nsfw-desk hashlist import: {exc}", file=sys.stderr)
        return EXIT_USAGE
    line.close()
    for number, why in report.bad_lines[:SHOWN_BAD_LINES]:
        print(f"{args.file}:{number}: skipped: {why}", file=sys.stderr)
    if len(report.bad_lines) > SHOWN_BAD_LINES:
        print(f"… and {len(report.bad_lines) - SHOWN_BAD_LINES} more bad lines", file=sys.stderr)
    kinds = ", ".join(f"{n} {a}" for a, n in sorted(report.by_algorithm.items()))
    print(
        f"Imported {report.entries} hashes ({kinds}) as {args.kind} list {args.name!r}; "
        f"{len(report.bad_lines)} bad lines skipped."
    )
    return EXIT_OK


def _export(args, library) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, output_over_library
    from nsfw_desk.core.durable import unwritable_reason
    from nsfw_desk.core.hashlists import export_lines, write_atomically
    from nsfw_desk.core.review import ReviewStore

    why = None
    if args.out is not None:
        why = unwritable_reason(args.out, folder=False) or output_over_library(args.out, args)
    if why:
        print(f"nsfw-desk hashlist export: --out: {why}", file=sys.stderr)
        return EXIT_USAGE
    labels = ReviewStore(library).current_labels()
    chosen = sorted(h for h, label in labels.items() if label == args.label)
    lines = export_lines(library, chosen, args.format)
    text = "".join(line + "\n" for line in lines)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.out, text)
        print(
            f"Wrote {len(lines)} {args.format} hashes of {args.label} items to {args.out}",
            file=sys.stderr,
        )
    missing = len(chosen) - len(lines)
    if missing:
        print(
            f"{missing} {args.label} items have no {args.format} hash yet (scan their folder "
            "again, or their files are gone)",
            file=sys.stderr,
        )
    return EXIT_OK


def _list(args, library) -> int:
    from nsfw_desk.cli import EXIT_OK

    lists = library.hash_lists()
    if not lists:
        print("No hash lists; add one with `nsfw-desk hashlist import FILE --name NAME --as KIND`.")
    for item in lists:
        print(f"{item.name}\t{item.kind}\t{item.entries} hashes\t{item.created}")
    return EXIT_OK


def _remove(args, library) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE

    if library.remove_hash_list(args.name):
        print(f"Removed hash list {args.name!r}.")
        return EXIT_OK
    print(f"nsfw-desk hashlist remove: no hash list named {args.name!r}", file=sys.stderr)
    return EXIT_USAGE
