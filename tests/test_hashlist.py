"""Hash lists: parsing, import of good and bad files, matching, export → import round trip."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import ImageFilter

from nsfw_desk.cli import main
from nsfw_desk.core import hashlists, pdq
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import synthetic_photo

PDQ = "f" * 16 + "0" * 48


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", None),
        ("   # a comment", None),
        (f"{PDQ},87", ("pdq", bytes.fromhex(PDQ), 87)),
        (f"{PDQ.upper()} # trailing comment", ("hex256", bytes.fromhex(PDQ), None)),
        (
            "d41d8cd98f00b204e9800998ecf8427e",
            ("md5", bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e"), None),
        ),
        (
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            ("sha1", bytes.fromhex("da39a3ee5e6b4b0d3255bfef95601890afd80709"), None),
        ),
    ],
)
def test_parse_line(line, expected):
    assert hashlists.parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("xyz" + "0" * 61, "'x', 'y', 'z' are not hex digits"),
        ("g" + "0" * 63, "'g' is not a hex digit"),
        ("abc", "3 hex digits"),
        (f"{PDQ},high", "not a whole number"),
        (f"{PDQ},101", "between 0 and 100"),
        ("d41d8cd98f00b204e9800998ecf8427e,50", "only a PDQ hash"),
    ],
)
def test_parse_line_says_what_is_wrong(line, message):
    with pytest.raises(ValueError, match=message):
        hashlists.parse_line(line)


def test_import_reports_bad_lines_by_number_and_keeps_the_good(tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_bytes(
        b"# shared list\n"
        + f"{PDQ},90\n".encode()
        + b"not-a-hash\n"
        + b"d41d8cd98f00b204e9800998ecf8427e\n"
        + b"\xff\xfe\n"
        + b"\n"
        + f"{'a' * 64}\n".encode()
    )
    db = tmp_path / "lib.sqlite"
    code = main(
        ["hashlist", "import", str(listing), "--name", "ours", "--as", "unsafe", "--db", str(db)]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "Imported 3 hashes" in out and "2 bad lines" in out
    assert f"{listing}:3: skipped" in err and f"{listing}:5: skipped: not text" in err
    assert main(["hashlist", "list", "--db", str(db)]) == 0
    assert "ours\tunsafe\t3 hashes" in capsys.readouterr().out
    # the name is taken until removed
    assert (
        main(
            ["hashlist", "import", str(listing), "--name", "ours", "--as", "safe", "--db", str(db)]
        )
        == 2
    )
    assert "remove it first" in capsys.readouterr().err
    assert main(["hashlist", "remove", "ours", "--db", str(db)]) == 0
    assert main(["hashlist", "remove", "ours", "--db", str(db)]) == 2
    with Library(db) as library:
        assert library.hash_lists() == [] and list(library.hash_list_entries()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"# only a comment\n\n", "no hash in a known format"),
        (b"<html><body>not a list</body></html>\n", "line 1: "),
        (b"PK\x03\x04\x00\x00binary zip", "no hash in a known format"),
    ],
)
def test_unusable_lists_are_refused_whole(tmp_path, capsys, content, message):
    listing = tmp_path / "list.txt"
    listing.write_bytes(content)
    db = tmp_path / "lib.sqlite"
    assert (
        main(["hashlist", "import", str(listing), "--name", "x", "--as", "known", "--db", str(db)])
        == 2
    )
    assert message in capsys.readouterr().err
    with Library(db) as library:
        assert library.hash_lists() == []


def test_a_missing_list_file_is_named(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert (
        main(
            [
                "hashlist",
                "import",
                str(missing),
                "--name",
                "x",
                "--as",
                "known",
                "--db",
                str(tmp_path / "l.sqlite"),
            ]
        )
        == 2
    )
    assert f"{missing}: no such file" in capsys.readouterr().err


@pytest.fixture
def reviewed(tmp_path, loaded_model):
    """A scanned library: two photos, one reviewed unsafe; the folder; the library path."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in (1, 2):
        synthetic_photo((320, 240), seed).filter(ImageFilter.GaussianBlur(1)).save(
            folder / f"p{seed}.png"
        )
    db = tmp_path / "lib.sqlite"
    with Library(db) as library:
        scan_folder(folder, loaded_model, library)
        digest = library.file_facts(folder / "p1.png")["hash"]
        ReviewStore(library).decide([DecisionInput(digest)], "unsafe", reviewer="t", threshold=0.5)
    return folder, db


def test_export_then_import_round_trip_matches_the_same_items(reviewed, tmp_path, capsys):
    folder, db = reviewed
    for fmt in ("pdq", "sha256"):
        out = tmp_path / f"unsafe.{fmt}.txt"
        assert (
            main(
                [
                    "hashlist",
                    "export",
                    "--label",
                    "unsafe",
                    "--format",
                    fmt,
                    "--out",
                    str(out),
                    "--db",
                    str(db),
                ]
            )
            == 0
        )
        lines = out.read_text().splitlines()
        assert len(lines) == 1
        if fmt == "sha256":
            assert lines[0] == hashlib.sha256((folder / "p1.png").read_bytes()).hexdigest()
        else:
            digest, quality = lines[0].split(",")
            from PIL import Image

            expected = pdq.pdq_hash(Image.open(folder / "p1.png").convert("RGB"))
            assert (digest, int(quality)) == (expected[0].hex(), expected[1])
        assert (
            main(["hashlist", "import", str(out), "--name", fmt, "--as", "unsafe", "--db", str(db)])
            == 0
        )
    capsys.readouterr()
    with Library(db) as library:
        p1 = library.file_facts(folder / "p1.png")["hash"]
        matches = hashlists.match_library(library)
        assert set(matches) == {p1}
        assert sorted((m.list_name, m.algorithm, m.distance) for m in matches[p1]) == [
            ("pdq", "pdq", 0),
            ("sha256", "sha256", 0),  # 64 digits without a quality: matched both ways
        ]


def test_an_unsafe_list_match_is_flagged_whatever_the_score(reviewed, tmp_path):
    folder, db = reviewed
    with Library(db) as library:
        p2 = library.file_facts(folder / "p2.png")["hash"]
        hashed, quality = library.pdq_of(p2)
        near = bytearray(hashed)
        near[0] ^= 0b1011  # 3 bits off: a re-encoded copy elsewhere
        listing = tmp_path / "theirs.txt"
        listing.write_text(f"{bytes(near).hex()},{quality}\n")
        hashlists.import_hash_list(library, listing, "theirs", "unsafe")
        matches = hashlists.match_library(library)
        assert [(m.list_name, m.distance) for m in matches[p2]] == [("theirs", 3)]
        score = library.scores_for(next(iter(library.model_names())), [p2])[p2]
        assert p2 in hashlists.flagged_by_lists(matches)  # flagged even at this score
        assert score < 1.0
        library.remove_hash_list("theirs")
        listing.write_text(f"{bytes(near).hex()},{quality}\n")
        hashlists.import_hash_list(library, listing, "theirs", "known")
        assert hashlists.flagged_by_lists(hashlists.match_library(library)) == set()


def test_matching_a_large_list_is_streamed_and_vectorised(tmp_path):
    rng = np.random.default_rng(0)
    listing = tmp_path / "big.txt"
    with open(listing, "w") as handle:
        for row in rng.integers(0, 256, (20_000, 32), dtype=np.uint8):
            handle.write(f"{row.tobytes().hex()},80\n")
    with Library(tmp_path / "l.sqlite") as library:
        report = hashlists.import_hash_list(library, listing, "big", "known")
        assert report.entries == 20_000 and not report.bad_lines
        assert hashlists.match_library(library) == {}


def test_the_readme_commands_run(reviewed, tmp_path, capsys, monkeypatch):
    import re
    import shlex
    from pathlib import Path

    folder, db = reviewed
    readme = (Path(__file__).parents[1] / "README.md").read_text("utf-8")
    section = readme.split("## Near-duplicates and hash lists", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("nsfw-desk ")]
    assert [c[1] for c in commands] == [
        "dupes",
        "dupes",
        "hashlist",
        "hashlist",
        "hashlist",
        "hashlist",
        "similar",
    ]
    (tmp_path / "shared-unsafe.txt").write_text(f"# from a partner\n{PDQ},90\n")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        args = [
            str(folder)
            if a == "~/Pictures/inbox"
            else a.replace("~/Pictures/inbox/beach.jpg", str(folder / "p1.png"))
            for a in command[1:]
        ]
        assert main([*args, "--db", str(db)]) == 0, command
    assert (tmp_path / "our-unsafe.txt").read_text().count("\n") == 1
    assert "partner-2026-11" not in capsys.readouterr().err


def test_lines_of_the_usual_shapes_and_odd_ones_keep_their_numbers(tmp_path):
    """The block parser (numpy, for 'hex' and 'pdq,quality' lines) and the line parser agree,
    and a bad digit in a usual-shaped line is reported with its number."""
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    listing = tmp_path / "mixed.txt"
    listing.write_bytes(
        f"{PDQ},87\n{PDQ},100\n{PDQ},5\n{md5}\n{PDQ.upper()}\r\n".encode()
        + ("g" + PDQ[1:] + ",90\n").encode()  # usual shape, not hex
        + f"{PDQ},101\n{PDQ} # note\n".encode()
        + f"{md5}".encode()  # last line without a newline
    )
    report = hashlists.ImportReport("x", "known")
    entries = list(hashlists.read_hash_list(listing, report))
    assert [(a, q, n) for a, _d, q, n in entries] == [
        ("pdq", 87, 1),
        ("pdq", 100, 2),
        ("pdq", 5, 3),
        ("md5", None, 4),
        ("hex256", None, 5),
        ("hex256", None, 8),
        ("md5", None, 9),
    ]
    assert all(d == bytes.fromhex(PDQ) for a, d, _q, _n in entries if a != "md5")
    assert [(n, why) for n, why in report.bad_lines] == [
        (6, "not a hex hash: 'g' is not a hex digit"),
        (7, "quality 101 is not between 0 and 100"),
    ]
    assert report.entries == 7 and report.by_algorithm == {"pdq": 3, "md5": 2, "hex256": 2}


def big_list(path, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    with open(path, "w") as handle:
        handle.writelines(f"{row.tobytes().hex()},80\n" for row in packed)
    return packed


def test_a_big_list_is_streamed_with_progress_in_bytes(tmp_path, monkeypatch):
    """Memory stays flat whatever the file's size (a 2 GB list is read a few MB at a time;
    here 64 kB at a time, so that a 10 MB list shows it)."""
    import tracemalloc

    monkeypatch.setattr(hashlists, "_BLOCK_BYTES", 1 << 16)
    listing = tmp_path / "big.txt"
    big_list(listing, 150_000)
    size = listing.stat().st_size
    seen = []
    with Library(tmp_path / "l.sqlite") as library:
        tracemalloc.start()
        report = hashlists.import_hash_list(library, listing, "big", "known", progress=seen.append)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert report.entries == 150_000
    assert peak < size * 0.5, f"{peak:,} bytes held for a {size:,}-byte list"
    assert [p.done for p in seen] == sorted(p.done for p in seen) and len(seen) >= 100
    assert seen[-1].done == seen[-1].total == size
    assert seen[-1].describe().startswith("big.txt: ") and "read (100%)" in seen[-1].describe()


def test_a_cancelled_import_stores_nothing(tmp_path):
    from nsfw_desk.core.progress import Cancelled, CancelToken

    listing = tmp_path / "big.txt"
    big_list(listing, 150_000)
    token = CancelToken()
    with Library(tmp_path / "l.sqlite") as library:
        with pytest.raises(Cancelled):
            hashlists.import_hash_list(
                library, listing, "big", "known", progress=lambda p: token.cancel(), cancel=token
            )
        assert library.hash_lists() == []


def test_the_import_command_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    import sys

    from nsfw_desk.core import defaults

    listing = tmp_path / "list.txt"
    big_list(listing, 2000)
    monkeypatch.setattr(defaults, "CLI_PROGRESS_INTERVAL_S", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    db = str(tmp_path / "l.sqlite")
    assert (
        main(["hashlist", "import", str(listing), "--name", "x", "--as", "known", "--db", db]) == 0
    )
    err = capsys.readouterr().err
    assert "list.txt: 136.0 kB of 136.0 kB read (100%)" in err
    assert (
        main(["hashlist", "import", str(listing), "-q", "--name", "y", "--as", "known", "--db", db])
        == 0
    )
    assert "read (" not in capsys.readouterr().err


def test_matching_reports_progress_and_stops_when_cancelled(tmp_path, monkeypatch):
    from nsfw_desk.core import dupes
    from nsfw_desk.core.progress import CancelToken

    monkeypatch.setattr(dupes, "BRUTE_FORCE_PAIRS", 0)
    listing = tmp_path / "list.txt"
    listed = big_list(listing, 3000)
    with Library(tmp_path / "l.sqlite") as library:
        library.record_pdq_hashes(
            (f"{i:064x}", row.tobytes(), 90) for i, row in enumerate(listed[:500])
        )
        hashlists.import_hash_list(library, listing, "list", "unsafe")
        seen = []
        matches = hashlists.match_library(library, progress=seen.append)
        assert len(matches) == 500
        assert [p.done for p in seen] == list(range(1, 17)) and seen[0].phase == "match"
        token = CancelToken()
        stopped = []

        def cancel_after_one(p):
            stopped.append(p)
            token.cancel()

        hashlists.match_library(library, progress=cancel_after_one, cancel=token)
        assert len(stopped) == 1


def test_a_pdq_export_writes_each_hash_once(tmp_path):
    """Copies and re-encodes share a PDQ hash: the export wrote one line per content, the
    same hash several times over (found by a trust-and-safety audit)."""
    code = bytes(range(32))
    with Library(tmp_path / "library.sqlite") as library:
        library.record_pdq_hashes(
            [("a" * 64, code, 80), ("b" * 64, code, 95), ("c" * 64, code[::-1], 70)]
        )
        lines = hashlists.export_lines(library, ["a" * 64, "b" * 64, "c" * 64], "pdq")
    assert lines == [f"{code.hex()},95", f"{code[::-1].hex()},70"]
