"""The command line: exit codes, JSONL output, summary, help and version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from nsfw_desk import __version__
from nsfw_desk.cli import main
from nsfw_desk.synthetic import write_photo


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "in"
    for i in range(5):
        write_photo(root / f"p{i}.jpg", (90, 70), seed=i)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "readme.txt").write_text("ignored")
    return root


def test_scan_writes_jsonl_and_a_summary(folder, model_dir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "scan",
            str(folder),
            "--model",
            str(model_dir),
            "--db",
            str(tmp_path / "lib.sqlite"),
            "--jsonl",
            str(out),
            "--threshold",
            "0.4",
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6
    for r in records:
        assert set(r) == {"path", "hash", "score", "flagged", "model", "scores", "flags", "error"}
        assert r["model"].startswith("sha256:")
    broken = next(r for r in records if r["path"].endswith("broken.png"))
    assert broken["score"] is None and broken["flagged"] is None
    assert broken["error"].startswith("decode_error")
    scored = [r for r in records if r["error"] is None]
    assert len(scored) == 5
    assert all(r["flagged"] == (r["score"] >= 0.4) for r in scored)
    assert all(r["scores"] == {r["model"]: r["score"]} for r in scored)
    assert all(r["flags"] == {r["model"]: r["flagged"]} for r in scored)
    assert broken["scores"] == {} and broken["flags"] == {}
    flagged = sum(r["flagged"] for r in scored)
    err = capsys.readouterr().err
    assert "6 files" in err and "5 scored" in err and "1 error," in err
    assert f"{flagged} flagged at 0.40" in err
    assert "1 other file ignored" in err
    assert re.search(r"images/s on CPU · (fp32|bf16) · \d+ threads", err)
    assert not list(tmp_path.glob(".out.jsonl.*"))  # the temporary file was renamed


def test_rescan_reports_library_hits(folder, model_dir, tmp_path, capsys):
    args = ["scan", str(folder), "--model", str(model_dir), "--db", str(tmp_path / "l.sqlite")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "0 scored, 5 from the library" in capsys.readouterr().err


def test_verbose_scan_says_where_the_time_went(folder, model_dir, tmp_path, capsys):
    args = ["-v", "scan", str(folder), "--model", str(model_dir), "--db", str(tmp_path / "l.db")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert re.search(r"where the time went \(all threads\): read [\d.]+ s \(\d+ %\)", err)
    assert " · forward " in err and " · store " in err
    quiet = args[1:-1] + [str(tmp_path / "other.db")]  # a fresh library, without -v
    assert main(quiet) == 0
    err = capsys.readouterr().err
    assert "5 scored" in err and "where the time went" not in err


def test_gpu_decode_on_puts_the_jpegs_on_the_models_device(folder, model_dir, tmp_path, capsys):
    """`--gpu-decode on` (README, On a GPU) runs the GPU path on the CPU device here; the
    summary says how many JPEGs went that way, and the default on the CPU is the CPU path."""
    args = ["scan", str(folder), "--model", str(model_dir), "--db", str(tmp_path / "g.db")]
    assert main([*args, "--gpu-decode", "on"]) == 0
    err = capsys.readouterr().err
    assert "5 scored" in err and "(5 JPEGs decoded there)" in err
    assert main([*args[:-1], str(tmp_path / "c.db")]) == 0
    err = capsys.readouterr().err
    assert "5 scored" in err and "decoded there" not in err
    with pytest.raises(SystemExit):
        main([*args, "--gpu-decode", "maybe"])


def test_jsonl_to_stdout(folder, model_dir, tmp_path, capsys):
    assert (
        main(
            [
                "scan",
                str(folder),
                "--model",
                str(model_dir),
                "--db",
                str(tmp_path / "l.sqlite"),
                "--jsonl",
                "-",
                "-q",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(json.loads(line)["path"] for line in lines)


@pytest.mark.parametrize(
    "args",
    [
        ["scan"],
        ["scan", "/definitely/not/here"],
        ["scan", ".", "--threshold", "1.5"],
        ["scan", ".", "--batch-size", "0"],
        ["scan", ".", "--device", "tpu"],
        ["frobnicate"],
    ],
)
def test_bad_usage_exits_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(args)
        raise SystemExit(code)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_model_that_cannot_load_exits_3_with_a_message(folder, tmp_path, capsys):
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    code = main(
        [
            "scan",
            str(folder),
            "--model",
            str(tmp_path / "pickled"),
            "--db",
            str(tmp_path / "l.sqlite"),
        ]
    )
    assert code == 3
    err = capsys.readouterr().err
    assert "pickle" in err and "safetensors" in err and "Traceback" not in err


def test_default_model_offline_exits_3_naming_model_revision_and_local_folder(
    folder, tmp_path, capsys
):
    code = main(["scan", str(folder), "--db", str(tmp_path / "l.sqlite")])
    assert code == 3
    err = capsys.readouterr().err
    assert "Marqo/nsfw-image-detection-384" in err
    assert "0c26ec22111b83f106d72a55f611ec35962bcb65" in err
    assert "local folder" in err


def test_unsafe_label_override(folder, model_dir, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    args = [
        "scan",
        str(folder),
        "--model",
        str(model_dir),
        "--db",
        str(tmp_path / "l.sqlite"),
        "--jsonl",
        str(out),
        "-q",
    ]
    assert main(args) == 0
    nsfw = {r["path"]: r["score"] for r in map(json.loads, out.read_text().splitlines())}
    assert main([*args, "--unsafe-label", "SFW", "--db", str(tmp_path / "l2.sqlite")]) == 0
    sfw = {r["path"]: r["score"] for r in map(json.loads, out.read_text().splitlines())}
    for path, score in nsfw.items():
        if score is not None:
            assert sfw[path] == pytest.approx(1 - score, abs=1e-5)
    assert main([*args, "--unsafe-label", "cat"]) == 3
    assert "NSFW, SFW" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    from nsfw_desk.cli import COMMANDS

    for command in COMMANDS:
        assert command in out
    for command in COMMANDS:  # and each has its own help
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert f"nsfw-desk {command}" in capsys.readouterr().out


def test_console_script_and_module_agree():
    env = {**os.environ}
    script = os.path.join(os.path.dirname(sys.executable), "nsfw-desk")
    a = subprocess.run([script, "--version"], capture_output=True, text=True, env=env)
    b = subprocess.run(
        [sys.executable, "-m", "nsfw_desk", "--version"], capture_output=True, text=True, env=env
    )
    assert a.returncode == b.returncode == 0
    assert a.stdout.strip() == b.stdout.strip() == f"nsfw-desk {__version__}"


def test_export_into_an_existing_folder_names_overwrite(folder, model_dir, tmp_path, capsys):
    from nsfw_desk.core.review import DecisionInput, ReviewStore
    from nsfw_desk.core.store import Library

    db = tmp_path / "l.sqlite"
    assert main(["scan", str(folder), "--model", str(model_dir), "--db", str(db), "-q"]) == 0
    with Library(db) as library:
        hashes = [o.hash for o in library.results(folder, "x") if o.hash]
        ReviewStore(library).decide(
            [DecisionInput(h) for h in hashes], "safe", reviewer="r", threshold=0.5
        )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    capsys.readouterr()
    assert main(["export", "--out", str(tmp_path / "out"), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err


def test_model_errors_name_the_cli_option_on_the_command_line(folder, tmp_path, capsys):
    code = main(["scan", str(folder), "--db", str(tmp_path / "l.sqlite")])
    assert code == 3
    assert "--model FOLDER" in capsys.readouterr().err


def test_metrics_thresholds_print_with_enough_digits_to_tell_rows_apart():
    from nsfw_desk.cli import _metrics_table
    from nsfw_desk.core.metrics import calibrate

    scores = [0.50004 + i / 1000 for i in range(12)] + [0.1 + i / 1000 for i in range(12)]
    table = _metrics_table(calibrate(scores, [True] * 12 + [False] * 12))
    printed = [line.split()[0] for line in table.splitlines() if line[:10].strip()[:1].isdigit()]
    assert len(printed) == len(set(printed)) > 21
    assert "0.50004" in printed and "0.50000" in printed
