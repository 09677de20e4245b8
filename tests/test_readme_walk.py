"""The README walked as a new user walks it: its synopses against the commands' own options,
the wording its commands print, and the commands no other test runs as written."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from nsfw_desk.cli import EXIT_OK, build_parser, main

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> list[set[str]]:
    """Each option's spellings (`{"-q", "--quiet"}`), help left out."""
    return [
        set(a.option_strings)
        for a in parser._actions
        if a.option_strings and "--help" not in a.option_strings
    ]


def _synopses() -> list[tuple[str, str]]:
    """(command, its synopsis with continuation lines) from the README's untagged blocks."""
    found, blocks, block, tag = [], [], [], None
    for line in README.splitlines():
        if line.lstrip().startswith("```"):
            if tag is None:
                tag, block = line.strip()[3:], []
            else:
                if tag == "":
                    blocks.append(block)
                tag = None
        elif tag is not None:
            block.append(line)
    for lines in blocks:
        for i, line in enumerate(lines):
            if not (line.startswith("nsfw-desk ") and "[--" in line):
                continue
            text = line
            for more in lines[i + 1 :]:
                if not more.startswith(" "):
                    break
                text += " " + more
            found.append((line.split()[1], text))
    return found


def test_every_synopsis_lists_the_options_its_command_takes_once():
    """`scan` once had two synopses, one stale; `export` lacked `-q`."""
    synopses = _synopses()
    commands = [command for command, _ in synopses]
    assert {"scan", "export", "train", "compare", "cluster-scan", "import"} <= set(commands)
    assert len(commands) == len(set(commands)), commands
    parsers = _subcommands()
    for command, text in synopses:
        named = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", text.split(command, 1)[1]))
        options = _options(parsers[command])
        assert [o for o in options if not o & named] == [], f"{command}: not in the README"
        assert named <= set().union(*options), f"{command}: not an option"


def test_label_clear_says_cleared(tmp_path, capsys):
    """README: `nsfw-desk label --as clear FILE`; it said "labelled clear: FILE"."""
    from nsfw_desk.synthetic import write_photo

    photo = write_photo(tmp_path / "IMG_0002.jpg", (64, 48), seed=2)
    db = ["--db", str(tmp_path / "library.sqlite"), "--reviewer", "alice"]
    assert main(["label", "--as", "unsafe", "--ai-generated", "yes", str(photo), *db]) == 0
    capsys.readouterr()
    assert main(["label", "--as", "clear", str(photo), *db]) == 0
    assert capsys.readouterr().out == f"cleared label: {photo}\n"
    assert main(["label", "--as", "safe", "--ai-generated", "clear", str(photo), *db]) == 0
    assert capsys.readouterr().out == f"labelled safe; cleared AI-generated label: {photo}\n"


def test_merge_counts_one_image_in_the_singular(tmp_path, capsys):
    """`nsfw-desk merge` (README, Several reviewers) printed "on 1 images"."""
    from nsfw_desk.synthetic import write_photo

    photo = write_photo(tmp_path / "a.jpg", (64, 48), seed=1)
    ours, bobs = tmp_path / "library.sqlite", tmp_path / "bob" / "library.sqlite"
    bobs.parent.mkdir()
    assert main(["label", "--as", "safe", "--reviewer", "bob", "--db", str(bobs), str(photo)]) == 0
    assert main(["label", "--as", "safe", "--reviewer", "me", "--db", str(ours), str(photo)]) == 0
    capsys.readouterr()
    assert main(["merge", str(bobs), "--db", str(ours)]) == EXIT_OK
    assert f"{bobs}: 1 of 1 decisions added (bob 1) on 1 image." in capsys.readouterr().out


def test_dupes_help_promises_what_the_readme_measured():
    """README: crops, rotations and caption bars often fall outside 31 bits; the help said
    crops were found."""
    text = " ".join(_subcommands()["dupes"].format_help().split())
    assert "crops, rotations and caption bars often fall outside 31 bits" in text
    readme = " ".join(README.split())
    assert "crops of a few percent, small rotations and caption bars often do not" in readme


def test_bench_detectors_help_names_itself_in_full(capsys):
    """`python -m nsfw_desk.bench_detectors --help` cut its description mid-sentence."""
    from nsfw_desk import bench_detectors

    with pytest.raises(SystemExit):
        bench_detectors.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m nsfw_desk.bench_detectors ")
    assert "for `nsfw-desk bench` and `python -m nsfw_desk.bench_detectors`: NSFW" in text


def test_the_screenshot_command_makes_the_picture(tmp_path, qapp):
    """README's first lines: `python -m nsfw_desk.gui.screenshot docs/screenshot.png`."""
    from PIL import Image

    from nsfw_desk.gui import screenshot

    command = re.search(r"`(python -m nsfw_desk\.gui\.screenshot\s+docs/screenshot\.png)`", README)
    assert command, "the README names the command"
    argv = shlex.split(command.group(1))
    assert argv[:3] == ["python", "-m", "nsfw_desk.gui.screenshot"]
    out = tmp_path / argv[3]
    assert screenshot.main([str(out)]) == 0
    with Image.open(out) as shot:
        assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= 700
        assert len(shot.getcolors(1 << 20) or range(1 << 20)) > 100  # a window, not a blank


def test_label_of_a_copy_of_a_scored_image_does_not_call_it_unscored(tmp_path, model_dir, capsys):
    """README, Labels: a new copy of a scanned image is listed with the score its content
    has (the desk shows it); the summary said "(not scored)"."""
    import shutil

    from nsfw_desk.synthetic import write_photo

    photo = write_photo(tmp_path / "inbox" / "IMG_0001.jpg", (64, 48), seed=1)
    db = ["--db", str(tmp_path / "library.sqlite")]
    assert main(["scan", str(photo.parent), "--model", str(model_dir), "-q", *db]) == 0
    copy = tmp_path / "holiday" / "IMG_0001.jpg"
    copy.parent.mkdir()
    shutil.copyfile(photo, copy)
    capsys.readouterr()
    assert main(["label", "--as", "unsafe", "--reviewer", "r", str(copy), *db]) == 0
    err = capsys.readouterr().err
    assert "1 new file listed in the library (no model ran)" in err
    assert "not scored" not in err
