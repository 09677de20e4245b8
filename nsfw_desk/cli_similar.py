"""`nsfw-desk similar`: the library's images nearest to one, by the model's embeddings."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def add_parser(commands, formatter_class=argparse.HelpFormatter) -> argparse.ArgumentParser:
    from nsfw_desk.cli import text_arg

    similar = commands.add_parser(
        "similar",
        help="list the images that look most like one (cosine similarity of embeddings)",
        description="The images nearest to FILE_OR_HASH (a scanned file, or a content hash "
        "as `dupes --json` prints) by cosine similarity of the model's stored embeddings.",
        formatter_class=formatter_class,
    )
    similar.add_argument("target", metavar="FILE_OR_HASH")
    similar.add_argument("--top", type=_count, default=20, metavar="K", help="how many (20)")
    similar.add_argument(
        "--model",
        type=text_arg,
        default=None,
        metavar="ID",
        help="whose embeddings (default: the last used)",
    )
    similar.add_argument("--json", action="store_true", help="machine-readable output")
    similar.add_argument("--db", type=Path, default=None, metavar="PATH", help="library file")
    return similar


def run(args: argparse.Namespace) -> int:
    from nsfw_desk.cli import EXIT_OK, EXIT_USAGE, existing_library
    from nsfw_desk.core.images import ImageError, content_hash, read_file
    from nsfw_desk.core.paths import absolute_folder, path_fields
    from nsfw_desk.core.similar import EmbeddingIndex, NoEmbedding
    from nsfw_desk.core.store import Library, path_key

    path = existing_library(args, "similar")
    if path is None:
        return EXIT_USAGE
    with Library(path) as library:
        target = Path(args.target).expanduser()
        if target.is_file():
            try:
                digest = content_hash(read_file(target))
            except ImageError as exc:
                print(f"nsfw-desk similar: {target}: {exc.message}", file=sys.stderr)
                return EXIT_USAGE
        elif re.fullmatch(r"[0-9a-f]{64}", args.target):
            digest = args.target
        else:
            print(
                f"nsfw-desk similar: {args.target} is neither a file nor a content hash",
                file=sys.stderr,
            )
            return EXIT_USAGE
        model_id = args.model or library.last_model_for(target.parent.absolute())
        if model_id is None:
            print("nsfw-desk similar: the library holds no scores yet; scan first", file=sys.stderr)
            return EXIT_USAGE
        index = EmbeddingIndex.from_library(library, model_id)
        try:
            query = index.vector(digest)
        except NoEmbedding:
            folder = absolute_folder(target.parent)  # as the scan stored it
            refused = (
                library.known_errors(folder).get(path_key(folder / target.name)[0])
                if target.is_file()
                else None
            )
            where = (
                f"the scan could not read it: {refused[2]}: {refused[3]}"
                if refused
                else f"scan its folder first: nsfw-desk scan {target.parent}"
                if target.is_file()
                else "scan it first"
            )
            print(
                f"nsfw-desk similar: {args.target} is not in the library with an embedding "
                f"for {library.model_names([model_id])[model_id]}; {where}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        neighbours = index.nearest(query, args.top, exclude=digest)
        files = library.files_for_hashes(n.content_hash for n in neighbours)
    records = [
        {**path_fields(file_path), "hash": n.content_hash, "similarity": round(n.similarity, 4)}
        for n in neighbours
        for file_path, _text, _fmt in files.get(n.content_hash, [])[:1]
    ]
    if args.json:
        json.dump(records, sys.stdout)
        sys.stdout.write("\n")
    else:
        from nsfw_desk.core.export import _printable

        for record in records:
            print(f"{record['similarity']:.3f}  {_printable(record['path'])}")  # one line each
    return EXIT_OK
