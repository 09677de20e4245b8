"""`nsfw-desk dupes`: near-duplicate groups of the library's images, by PDQ distance."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nsfw_desk.core.dupes import DEFAULT_MAX_DISTANCE, MAX_DISTANCE, MIN_QUALITY


def _distance(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_DISTANCE:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_DISTANCE} (bits of 256)")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:  # PDQ's quality is 0 to 100: above, every hash would be left out
        raise argparse.ArgumentTypeError("must be 0 to 100")
    return value


def add_parser(commands, formatter_class=argparse.HelpFormatter) -> argparse.ArgumentParser:
    dupes = commands.add_parser(
        "dupes",
        help="list groups of near-duplicate images (PDQ perceptual hashes)",
        description="Groups of near-duplicate images in the library: re-encodes, resizes, "
        "recolourings, blur and sharpening of one picture (crops, rotations and caption bars "
        "often fall outside 31 bits). Images get their PDQ hash when scanned; "
        "scan older folders again to hash them (the model does not run again).",
        formatter_class=formatter_class,
    )
    dupes.add_argument("--folder", type=Path, metavar="F", help="only images under F")
    dupes.add_argument(
        "--max-distance",
        type=_distance,
        default=DEFAULT_MAX_DISTANCE,
        metavar="D",
        help=f"most differing bits of 256 within a group (default {DEFAULT_MAX_DISTANCE})",
    )
    dupes.add_argument(
        "--min-quality",
        type=_quality,
        default=MIN_QUALITY,
        metavar="Q",
        help=f"leave out hashes of quality below Q, 0-100 (default {MIN_QUALITY}: flat "
        "pictures hash unreliably)",
    )
    dupes.add_argument("--json", action="store_true", help="machine-readable output")
    dupes.add_argument("--db", type=Path, default=None, metavar="PATH", help="library file")
    return dupes


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, existing_library, holds_nothing_under
    from nsfw_desk.core.dupes import library_groups
    from nsfw_desk.core.paths import absolute_folder, display_path, path_fields
    from nsfw_desk.core.store import Library

    path = existing_library(args, "dupes")
    if path is None:
        return EXIT_USAGE
    folder = absolute_folder(args.folder.expanduser()) if args.folder else None
    with Library(path) as library:
        if holds_nothing_under(library, folder, "dupes"):
            return EXIT_USAGE
        groups = library_groups(library, folder, args.max_distance, min_quality=args.min_quality)
        files = library.files_for_hashes(h for g in groups for h in g.hashes)
    records = []
    for g in groups:
        members = []
        for digest, pdq, distance in zip(g.hashes, g.pdqs, g.distances, strict=True):
            for file_path, _text, _fmt in files.get(digest, []):
                if folder is not None and not file_path.is_relative_to(folder):
                    continue
                members.append(
                    {
                        **path_fields(file_path),
                        "hash": digest,
                        "pdq": pdq.hex(),
                        "distance": distance,
                    }
                )
        if len(members) > 1:
            records.append(members)
    if args.json:
        json.dump(records, sys.stdout)
        sys.stdout.write("\n")
        return EXIT_OK
    from nsfw_desk.core.export import _printable

    if not records:
        print(f"No near-duplicates within {args.max_distance} bits.")
        return EXIT_OK
    for number, members in enumerate(records, 1):
        print(f"Group {number}: {len(members)} images")
        for m in members:
            shown = _printable(display_path(m["path"]))  # a newline in a name stays one line
            print(f"  {m['distance']:>3}  {shown}")
    print(f"{len(records)} groups within {args.max_distance} bits.")
    return EXIT_OK
