"""README's "Train from your decisions" recipe, run command by command.

The test stands in for the user: $BASE is the at-chance test model (no download), the folder
and model paths are temporary ones, every command gets `--db` (and `--device cpu` where it
takes one), and the review between scan and train is done as the desk does it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import test_training as shared

from nsfw_desk.cli import main
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_family_photos

# fixtures and helpers shared with test_training
_review = shared._review
chance_base = shared.chance_base
chance_model = shared.chance_model

README = Path(__file__).parents[1] / "README.md"


def _recipe() -> list[str]:
    text = README.read_text("utf-8")
    section = text.split("## Train from your decisions", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_recipe_runs_as_written(tmp_path, chance_base, capsys):
    lines = _recipe()
    assert lines[0].startswith("BASE=")
    commands = [line for line in lines[1:] if line]
    assert [c.split()[1] for c in commands] == ["scan", "train", "scan", "compare"]
    inbox = tmp_path / "inbox"
    families = write_family_photos(inbox, 15)
    db = tmp_path / "library.sqlite"
    outputs = []
    for n, command in enumerate(commands):
        command = (
            command.replace("$BASE", str(chance_base))
            .replace("~/Pictures/inbox", str(inbox))
            .replace("~/models/our-head", str(tmp_path / "our-head"))
        )
        argv = shlex.split(command)[1:] + ["--db", str(db)]
        if argv[0] in ("scan", "train"):
            argv += ["--device", "cpu"]
        assert main(argv) == 0, (command, capsys.readouterr().err)
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
        if n == 0:  # the review, as the desk records it
            with Library(db) as library:
                from nsfw_desk.core.runtime import load_model
                from nsfw_desk.core.scan import scan_folder

                summary = scan_folder(
                    inbox, load_model(chance_base, device="cpu"), library, keep_outcomes=True
                )
                _review(library, summary.outcomes, families)
    assert "Re-scored 30 library items from stored embeddings (no decoding)" in outputs[1]
    assert "30 from the library" in outputs[2]  # train scored them all already
    assert "Changed decisions at 0.5" in outputs[3]
