"""`nsfw-desk merge`, `assign` and `agreement`: several reviewers on one archive (core/team.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAMES = ("merge", "assign", "agreement")


def _overlap(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction between 0 and 1")
    return value


def add_parser(commands, formatter_class=argparse.HelpFormatter) -> None:
    from nsfw_desk.cli import EXIT_STATUS, _add_db_option, text_arg

    merge = commands.add_parser(
        "merge",
        help="bring other reviewers' decisions into this library",
        description="Append every decision of the other libraries to this one, by content "
        "hash, as it was made (reviewer, time, the model's score, note). A decision this "
        "library already holds (same content, reviewer, time, label and note) is skipped, so "
        "merging a library again adds nothing. Decisions on images no file of this library "
        "holds are kept and counted; they show once a scan finds the images. Items whose "
        "reviewers' labels differ become conflicts (the desk's Conflicts filter, Alt+0); "
        "deciding such an item resolves it. AI-generated labels (keys G/R) come in the "
        "same way, and reviewers who labelled an image AI-generated and real make a conflict "
        "of their own, resolved by your AI-generated label. Reviewer-care stats stay behind unless "
        "--include-care-stats is given.",
        epilog=EXIT_STATUS,
        formatter_class=formatter_class,
    )
    merge.add_argument(
        "others", nargs="+", type=Path, metavar="OTHER_LIBRARY", help="library.sqlite files"
    )
    merge.add_argument(
        "--include-care-stats",
        action="store_true",
        help="also bring the other libraries' per-day reviewer-care stats (reveals, review "
        "time); they are personal, so only when the reviewers agreed",
    )
    _add_db_option(merge)

    assign = commands.add_parser(
        "assign",
        help="split the library's images between reviewers",
        description="Deal every image (by content) to one reviewer, deterministically from "
        "its hash (rendezvous hashing: the same split on every run and machine; a new "
        "reviewer takes over only the images they win), and a fraction of them to a second "
        "reviewer too, for measuring agreement. The split is stored in the library; the "
        "desk's 'Assigned to me' filter shows the images of the reviewer named in Settings. "
        "Assigning again replaces the split of the same images.",
        epilog=EXIT_STATUS,
        formatter_class=formatter_class,
    )
    assign.add_argument(
        "--reviewers",
        type=text_arg,
        required=True,
        metavar="A,B,C",
        help="reviewer names, comma-separated",
    )
    assign.add_argument(
        "--overlap",
        type=_overlap,
        default=0.1,
        metavar="F",
        help="fraction of images given to two reviewers (default 0.1)",
    )
    assign.add_argument("--folder", type=Path, metavar="F", help="only images under F")
    assign.add_argument("--json", action="store_true", help="machine-readable output")
    _add_db_option(assign)

    agreement = commands.add_parser(
        "agreement",
        help="how far reviewers agree, and each reviewer's pace",
        description="For each pair of reviewers: the images both labelled (each reviewer's "
        "latest label), percent agreement and Cohen's kappa. Per reviewer: decisions "
        "(labels given; clears and undo steps not counted), corrections of the model "
        "(labels that differ from the model's flag at the time: the score and threshold "
        "recorded with the decision), and decisions per hour of active review (a pause "
        "over 10 minutes between two decisions ends a session; the pause is not counted). "
        "Agreement on the AI-generated label (keys G/R) is reported apart, when there is any.",
        epilog=EXIT_STATUS,
        formatter_class=formatter_class,
    )
    agreement.add_argument("--json", action="store_true", help="machine-readable output")
    _add_db_option(agreement)


def run(args: argparse.Namespace) -> int:
    return {"merge": _merge, "assign": _assign, "agreement": _agreement}[args.command](args)


def _merge(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_LIBRARY, EXIT_OK, EXIT_USAGE, _library_path
    from nsfw_desk.core.store import Library, LibraryError
    from nsfw_desk.core.team import check_other_library, merge_library

    missing = [p for p in args.others if not p.expanduser().is_file()]
    if missing:
        for path in missing:
            print(f"nsfw-desk merge: no library at {path}", file=sys.stderr)
        print("Nothing merged. Give the library.sqlite file of each reviewer.", file=sys.stderr)
        return EXIT_USAGE
    path = _library_path(args)
    others = [p.expanduser() for p in args.others]
    if any(p.resolve() == path.resolve() for p in others if path.exists()):
        print(f"nsfw-desk merge: {path} is this library itself; nothing merged", file=sys.stderr)
        return EXIT_USAGE
    for other in others:  # every one usable before any is merged
        try:
            check_other_library(path, other)
        except LibraryError as exc:
            print(f"nsfw-desk merge: {exc}", file=sys.stderr)
            print("Nothing merged.", file=sys.stderr)
            return EXIT_LIBRARY
    with Library(path) as library:
        for other in others:
            report = merge_library(library, other, include_care=args.include_care_stats)
            who = ", ".join(f"{r} {n:,}" for r, n in sorted(report.reviewers.items()))
            line = f"{other}: {report.added:,} of {report.seen:,} decisions added" + (
                f" ({who})" if who else ""
            )
            if report.ai_seen:
                ai_who = ", ".join(f"{r} {n:,}" for r, n in sorted(report.ai_reviewers.items()))
                line += f" and {report.ai_added:,} of {report.ai_seen:,} AI-generated labels" + (
                    f" ({ai_who})" if ai_who else ""
                )
            line += f" on {report.contents:,} image{'' if report.contents == 1 else 's'}"
            if report.added < report.seen:
                line += f"; {report.seen - report.added:,} decisions were here already"
            if report.unknown_contents:
                line += (
                    f"; {report.unknown_contents:,} of those images have no file in this "
                    "library yet (their decisions are kept and show once a scan finds them)"
                )
            if args.include_care_stats:
                line += f"; {report.care_rows:,} care-stat days"
            print(line + ".")
        from nsfw_desk.core.review import ReviewStore
        from nsfw_desk.core.team import ai_conflicts, conflicts

        found = conflicts(ReviewStore(library))
        ai_found = ai_conflicts(ReviewStore(library))
    print(
        f"{len(found):,} conflict{'' if len(found) == 1 else 's'} (reviewers' labels differ; "
        "the desk's Conflicts filter, Alt+0, shows them)."
        if found
        else "No conflicts.",
        file=sys.stderr,
    )
    if ai_found:
        print(
            f"{len(ai_found):,} AI-generated-label conflict{'' if len(ai_found) == 1 else 's'} "
            "(reviewers said AI-generated and real; in the Conflicts filter too).",
            file=sys.stderr,
        )
    return EXIT_OK


def _assign(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, existing_library, holds_nothing_under
    from nsfw_desk.core.paths import absolute_folder
    from nsfw_desk.core.store import Library
    from nsfw_desk.core.team import assign

    reviewers = list(dict.fromkeys(r.strip() for r in args.reviewers.split(",") if r.strip()))
    if not reviewers:
        print("nsfw-desk assign: --reviewers needs at least one name", file=sys.stderr)
        return EXIT_USAGE
    path = existing_library(args, "assign")
    if path is None:
        return EXIT_USAGE
    folder = absolute_folder(args.folder.expanduser()) if args.folder else None
    with Library(path) as library:
        if holds_nothing_under(library, folder, "assign"):
            return EXIT_USAGE
        result = assign(library, reviewers, args.overlap, folder)
    if args.json:
        print(
            json.dumps(
                {
                    "contents": result.contents,
                    "overlap": result.overlap,
                    "per_reviewer": result.per_reviewer,
                }
            )
        )
        return EXIT_OK
    for reviewer, n in result.per_reviewer.items():
        print(f"{reviewer}\t{n:,}")
    print(
        f"{result.contents:,} images assigned to {len(reviewers)} reviewers; "
        f"{result.overlap:,} of them to two (for agreement).",
        file=sys.stderr,
    )
    return EXIT_OK


def _agreement(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, existing_library
    from nsfw_desk.core.store import Library
    from nsfw_desk.core.team import agreement

    path = existing_library(args, "agreement")
    if path is None:
        return EXIT_USAGE
    with Library(path) as library:
        result = agreement(library)
    if args.json:
        print(
            json.dumps(
                {
                    "pairs": [_pair_json(p) for p in result.pairs],
                    "reviewers": [
                        {
                            "reviewer": r.reviewer,
                            "decisions": r.decisions,
                            "corrections": r.corrections,
                            "judged": r.judged,
                            "sessions": r.sessions,
                            "active_s": round(r.active_s, 1),
                            "per_hour": r.per_hour,
                        }
                        for r in result.reviewers
                    ],
                    "conflicts": result.conflicts,
                    "ai_pairs": [_pair_json(p) for p in result.ai_pairs],
                    "ai_conflicts": result.ai_conflicts,
                },
                indent=2,
            )
        )
        return EXIT_OK
    if not result.reviewers:
        print("No decisions in this library yet.", file=sys.stderr)
        return EXIT_OK
    _print_pairs("pair", result.pairs)
    if result.ai_pairs:
        print()
        _print_pairs("AI-generated label: pair", result.ai_pairs)
    print()
    print("reviewer\tdecisions\tcorrections\tper hour")
    for r in result.reviewers:
        pace = "-" if r.per_hour is None else f"{r.per_hour:.0f}"
        print(f"{r.reviewer}\t{r.decisions:,}\t{r.corrections:,} of {r.judged:,}\t{pace}")
    print(f"{result.conflicts:,} unresolved conflicts.", file=sys.stderr)
    if result.ai_conflicts:
        print(f"{result.ai_conflicts:,} unresolved AI-generated-label conflicts.", file=sys.stderr)
    return EXIT_OK


def _print_pairs(title: str, pairs) -> None:
    print(f"{title}\tboth\tagree\tkappa")
    for p in pairs:
        percent = "-" if p.percent is None else f"{p.percent:.1f}%"
        kappa = "-" if p.kappa is None else f"{p.kappa:.3f}"
        print(f"{p.reviewers[0]} + {p.reviewers[1]}\t{p.both:,}\t{percent}\t{kappa}")


def _pair_json(p) -> dict:
    return {
        "reviewers": list(p.reviewers),
        "both": p.both,
        "agree": p.agree,
        "percent": p.percent,
        "kappa": p.kappa,
    }
