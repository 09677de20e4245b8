"""Paths are lossless: every record gives back a file's exact bytes, and two names that read
alike (the byte 0xE9 and the text `\\xe9`) never become one.

The consumer's rule (README): take `<name>_base64` when present, else `<name>`; with jq,
`.path_base64 // (.path | @base64)`.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nsfw_desk.cli import main
from nsfw_desk.core.export import ExportOptions, export_dataset
from nsfw_desk.core.paths import bytes_from_fields, display_path, path_fields
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo

posix_bytes = pytest.mark.skipif(
    sys.platform == "win32" or sys.platform == "darwin",
    reason="names that are not UTF-8 need a POSIX filesystem that stores raw bytes",
)
JQ = shutil.which("jq")
needs_jq = pytest.mark.skipif(JQ is None, reason="jq is not installed (CI installs it)")

LATIN1 = b"x\xe9.jpg"  # the byte 0xE9: not UTF-8
LOOKALIKE = b"x\\xe9.jpg"  # the four characters \ x e 9: valid UTF-8, reads the same


def jq_bytes(path: Path, name: str = "path") -> list[bytes]:
    """Each record's path bytes as a jq user gets them (the README's expression)."""
    program = f".{name}_base64 // (.{name} | @base64)"
    out = subprocess.run(
        [JQ, "-r", program, str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [base64.b64decode(line) for line in out.splitlines()]


@pytest.fixture
def lookalikes(tmp_path) -> tuple[Path, dict[bytes, bytes]]:
    """A folder with the two look-alike names (different pictures) and a plain one."""
    root = tmp_path / "in"
    names = {LATIN1: 1, LOOKALIKE: 2, "plain ü.jpg".encode(): 3}
    files = {}
    for name, seed in names.items():
        path = Path(os.fsdecode(os.path.join(os.fsencode(root), name)))
        write_photo(path, (80, 60), seed=seed)
        files[os.fsencode(path)] = path.read_bytes()
    return root, files


def test_path_fields_add_base64_only_when_the_text_loses_bytes():
    assert path_fields("/a/plain ü.jpg") == {"path": "/a/plain ü.jpg"}
    assert path_fields(b"/a/" + LOOKALIKE) == {"path": "/a/x\\xe9.jpg"}
    record = path_fields(b"/a/" + LATIN1, "source_path")
    assert record == {
        "source_path": "/a/x\\xe9.jpg",
        "source_path_base64": base64.b64encode(b"/a/x\xe9.jpg").decode(),
    }
    assert bytes_from_fields(record, "source_path") == b"/a/x\xe9.jpg"
    assert bytes_from_fields(path_fields(b"/a/" + LOOKALIKE)) == b"/a/" + LOOKALIKE
    # A NUL (no real path has one) would end the text in many tools: escaped, bytes kept.
    assert path_fields(b"a\x00b") == {"path": "a\\x00b", "path_base64": "YQBi"}
    assert path_fields(None) == {"path": None}


@posix_bytes
def test_the_library_keeps_lookalike_names_apart(lookalikes, library, loaded_model):
    root, files = lookalikes
    scan_folder(root, loaded_model, library)
    stored = {os.fsencode(o.path): o for o in library.results(root, loaded_model.model_id)}
    assert set(stored) == set(files)
    assert len({o.hash for o in stored.values()}) == 3  # two look-alikes, two contents
    latin1, lookalike = (os.path.join(os.fsencode(root), n) for n in (LATIN1, LOOKALIKE))
    assert display_path(latin1) == display_path(lookalike)  # why the bytes are needed
    for raw in (latin1, lookalike):
        path = Path(os.fsdecode(raw))
        assert library.file_facts(path)["hash"] == stored[raw].hash
        assert path.read_bytes() == files[raw]
    # A rescan finds both in the library and forgets neither.
    again = scan_folder(root, loaded_model, library)
    assert (again.cached, again.scored) == (3, 0)
    assert {os.fsencode(o.path) for o in library.results(root, loaded_model.model_id)} == set(files)


@posix_bytes
def test_scan_jsonl_gives_back_every_files_bytes(lookalikes, model_dir, tmp_path):
    root, files = lookalikes
    out = tmp_path / "scan.jsonl"
    args = ["scan", str(root), "--model", str(model_dir), "--db", str(tmp_path / "l.sqlite")]
    assert main([*args, "--jsonl", str(out), "-q"]) == 0
    records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert sorted(bytes_from_fields(r) for r in records) == sorted(files)
    by_bytes = {bytes_from_fields(r): r for r in records}
    for raw, data in files.items():
        record = by_bytes[raw]
        assert record["path"] == display_path(raw)
        assert ("path_base64" in record) == raw.endswith(LATIN1)  # only where text loses
        assert Path(os.fsdecode(bytes_from_fields(record))).read_bytes() == data
    # Two look-alike texts, two different files.
    texts = [r["path"] for r in records if r["path"].endswith("x\\xe9.jpg")]
    assert len(texts) == 2 and texts[0] == texts[1]
    assert len({r["hash"] for r in records}) == 3


@posix_bytes
@needs_jq
def test_jq_reads_the_scan_jsonl(lookalikes, model_dir, tmp_path):
    root, files = lookalikes
    out = tmp_path / "scan.jsonl"
    args = ["scan", str(root), "--model", str(model_dir), "--db", str(tmp_path / "l.sqlite")]
    assert main([*args, "--jsonl", str(out), "-q"]) == 0
    recovered = jq_bytes(out)
    assert sorted(recovered) == sorted(files)
    for raw in recovered:
        assert Path(os.fsdecode(raw)).read_bytes() == files[raw]


@posix_bytes
def test_export_records_give_back_every_sources_bytes(lookalikes, library, loaded_model, tmp_path):
    root, files = lookalikes
    summary = scan_folder(root, loaded_model, library, keep_outcomes=True)
    ReviewStore(library).decide(
        [DecisionInput(o.hash, "m", o.score, o.path) for o in summary.outcomes],
        "unsafe",
        reviewer="r",
        threshold=0.5,
    )
    out = tmp_path / "dataset"
    report = export_dataset(library, ExportOptions(out=out, val_fraction=0.34))
    assert report.exported == 3

    def check(rows: list[dict], base: Path) -> None:
        assert sorted(bytes_from_fields(r, "source_path") for r in rows) == sorted(files)
        for row in rows:
            raw = bytes_from_fields(row, "source_path")
            assert row["source_path"] == display_path(raw)
            assert bool(row["source_path_base64"]) == raw.endswith(LATIN1)
            # The exported copy is the very file the record names.
            assert (base / row["file_name"]).read_bytes() == files[raw]

    metadata = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    check(metadata, out)
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        check(list(csv.DictReader(fh)), out)
    split_rows = []
    for split in ("train", "val"):
        if (out / split / "metadata.jsonl").exists():
            lines = (out / split / "metadata.jsonl").read_text().splitlines()
            split_rows += [json.loads(line) for line in lines]
    assert sorted(bytes_from_fields(r, "source_path") for r in split_rows) == sorted(files)


@posix_bytes
@needs_jq
def test_jq_reads_the_export_metadata(lookalikes, library, loaded_model, tmp_path):
    root, files = lookalikes
    summary = scan_folder(root, loaded_model, library, keep_outcomes=True)
    ReviewStore(library).decide(
        [DecisionInput(o.hash, "m", o.score, o.path) for o in summary.outcomes],
        "safe",
        reviewer="r",
        threshold=0.5,
    )
    out = tmp_path / "dataset"
    export_dataset(library, ExportOptions(out=out))
    recovered = jq_bytes(out / "metadata.jsonl", "source_path")
    assert sorted(recovered) == sorted(files)
    for raw in recovered:
        assert Path(os.fsdecode(raw)).read_bytes() == files[raw]


@posix_bytes
def test_a_decision_remembers_the_exact_file_it_was_made_on(tmp_path, loaded_model):
    """Export falls back on the decision's own path: it must be the right one of the two."""
    root = tmp_path / "in"
    latin1 = Path(os.fsdecode(os.path.join(os.fsencode(root), LATIN1)))
    lookalike = Path(os.fsdecode(os.path.join(os.fsencode(root), LOOKALIKE)))
    write_photo(latin1, (80, 60), seed=1)
    write_photo(lookalike, (80, 60), seed=2)
    with Library(tmp_path / "l.sqlite") as library:
        outcomes = {
            o.path: o for o in scan_folder(root, loaded_model, library, keep_outcomes=True).outcomes
        }
        reviews = ReviewStore(library)
        reviews.decide(
            [DecisionInput(outcomes[latin1].hash, "m", 0.1, latin1)],
            "safe",
            reviewer="r",
            threshold=0.5,
        )
        (decision,) = reviews.history(outcomes[latin1].hash)
        assert decision.source == latin1
        assert decision.source_path == display_path(lookalike)  # reads alike, is not
        # Undo keeps the exact path too.
        (undo,) = reviews.revert([decision.id], reviewer="r", threshold=0.5)
        assert reviews.history(outcomes[latin1].hash)[-1].source == latin1
        # With the library's file rows gone, export still opens the decided file.
        library.forget_missing(root, set())
        reviews.revert([undo], reviewer="r", threshold=0.5)
        report = export_dataset(library, ExportOptions(out=tmp_path / "out"))
    assert report.exported == 1
    lines = (tmp_path / "out" / "metadata.jsonl").read_text("utf-8").splitlines()
    (row,) = [json.loads(line) for line in lines]
    assert bytes_from_fields(row, "source_path") == os.fsencode(latin1)
    assert (tmp_path / "out" / row["file_name"]).read_bytes() == latin1.read_bytes()
