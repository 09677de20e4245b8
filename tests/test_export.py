"""Dataset export: selection, layout loadable by torchvision/timm, split, atomicity, safety."""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from nsfw_desk.core import export as export_module
from nsfw_desk.core import review
from nsfw_desk.core.export import (
    ExportError,
    ExportOptions,
    class_names,
    export_dataset,
    extension,
    is_correction,
    split_val,
)
from nsfw_desk.core.images import content_hash
from nsfw_desk.core.progress import Cancelled, CancelToken
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import write_photo

NAME = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


def scan(library, model, root: Path) -> dict[Path, object]:
    """Scan `root` for real; path → outcome (hash, score)."""
    summary = scan_folder(root, model, library, keep_outcomes=True)
    return {o.path: o for o in summary.outcomes if o.hash}


def decide(library, outcomes, label, *, reviewer="alice", threshold=0.5, score=None) -> None:
    items = [
        DecisionInput(o.hash, "model", o.score if score is None else score, o.path)
        for o in outcomes
    ]
    ReviewStore(library).decide(items, label, reviewer=reviewer, threshold=threshold)


def photos(root: Path, count: int, start: int = 0) -> list[Path]:
    return [
        write_photo(root / f"p{i:03d}.jpg", (64 + i % 7, 48 + i % 5), seed=1000 + i)
        for i in range(start, start + count)
    ]


@pytest.fixture
def reviewed(tmp_path, library, loaded_model):
    """30 scanned photos: 18 reviewed unsafe, 12 safe, by their real model id and score."""
    root = tmp_path / "photos"
    photos(root, 30)
    found = sorted(scan(library, loaded_model, root).values(), key=lambda o: o.path)
    store = ReviewStore(library)
    for i, o in enumerate(found):
        store.decide(
            [DecisionInput(o.hash, loaded_model.model_id, o.score, o.path)],
            "unsafe" if i % 5 < 3 else "safe",
            reviewer="alice",
            threshold=0.5,
        )
    return root, found


def run(library, out: Path, **kw):
    return export_dataset(library, ExportOptions(out=out, **kw))


def image_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix not in (".jsonl", ".csv", ".md", ".txt")
    }


def metadata(folder: Path, name: str = "metadata.jsonl") -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text("utf-8").splitlines()]


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_loads_with_torchvision_and_timm(reviewed, library, tmp_path):
    import timm.data
    import torchvision.datasets

    out = tmp_path / "dataset"
    report = run(library, out)
    assert report.exported == 30 and report.skipped == [] and report.linked == 0
    assert report.counts == {"train": {"nsfw": 14, "sfw": 10}, "val": {"nsfw": 4, "sfw": 2}}
    assert report.bytes == sum(p.stat().st_size for p in (out / "train").rglob("*.jpg")) + sum(
        p.stat().st_size for p in (out / "val").rglob("*.jpg")
    )
    assert sorted(listing(out)) == [
        "README.md",
        "class_map.txt",
        "labels.csv",
        "metadata.jsonl",
        "train",
        "val",
    ]

    for split, folder in (("train", "train"), ("val", "val")):
        tv = torchvision.datasets.ImageFolder(str(out / folder))
        assert tv.class_to_idx == {"nsfw": 0, "sfw": 1}
        assert [tv.targets.count(i) for i in (0, 1)] == [
            report.counts[split]["nsfw"],
            report.counts[split]["sfw"],
        ]
        image, target = tv[0]
        assert image.size[0] > 0 and target == 0
    train = timm.data.create_dataset("", root=str(out), split="train")
    val = timm.data.create_dataset("", root=str(out), split="validation")  # finds val/
    assert len(train) == 24 and len(val) == 6
    assert sorted(t for _, t in train.reader.samples).count(0) == 14
    reader = timm.data.ImageDataset(str(out / "train"), class_map=str(out / "class_map.txt"))
    assert len(reader) == 24

    rows = metadata(out)
    assert [r["file_name"] for r in rows] == sorted(image_files(out))  # each file once
    labels = {o.hash: ("nsfw" if i % 5 < 3 else "sfw") for i, o in enumerate(reviewed[1])}
    for row in rows:
        assert set(row) == set(export_module.COLUMNS)
        data = (out / row["file_name"]).read_bytes()
        assert content_hash(data) == row["hash"]
        assert row["file_name"] == f"{row['split']}/{row['label']}/{row['hash']}.jpg"
        assert row["label"] == labels[row["hash"]]
        assert Path(row["source_path"]).read_bytes() == data
        assert row["reviewer"] == "alice" and row["threshold"] == 0.5
        assert row["model"].startswith("sha256:") and 0 <= row["score"] <= 1
        assert row["decided_at"].endswith("Z")
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert [r["file_name"] for r in table] == [r["file_name"] for r in rows]
    assert all(
        t["hash"] == r["hash"]
        and t["source_path"] == r["source_path"]
        and float(t["score"]) == r["score"]
        for t, r in zip(table, rows, strict=True)
    )
    for split in ("train", "val"):  # per split, for Hugging Face imagefolder
        part = metadata(out / split)
        assert [split + "/" + r["file_name"] for r in part] == [
            r["file_name"] for r in rows if r["split"] == split
        ]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and "path: val/**" in card
    assert "| train | 14 | 10 | 24 |" in card and "| val | 4 | 2 | 6 |" in card
    assert "threshold 0.5: 30 images" in card and "seed 0" in card
    assert (out / "class_map.txt").read_text() == "nsfw\nsfw\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dataset")]


def test_same_seed_same_split_other_seed_other_split(reviewed, library, tmp_path):
    first = run(library, tmp_path / "a", seed=7)
    again = run(library, tmp_path / "b", seed=7)
    other = run(library, tmp_path / "c", seed=8)
    assert image_files(tmp_path / "a") == image_files(tmp_path / "b")
    assert metadata(tmp_path / "a") == metadata(tmp_path / "b")
    assert (tmp_path / "a" / "labels.csv").read_bytes() == (
        tmp_path / "b" / "labels.csv"
    ).read_bytes()
    assert image_files(tmp_path / "c") != image_files(tmp_path / "a")
    assert first.counts == again.counts == other.counts


def test_split_is_stratified_and_deterministic():
    hashes = {
        "unsafe": [f"{i:064x}" for i in range(40)],
        "safe": [f"{i + 100:064x}" for i in range(10)],
    }
    val = split_val(hashes, 0.2, seed=0)
    assert len(val & set(hashes["unsafe"])) == 8 and len(val & set(hashes["safe"])) == 2
    shuffled = {k: list(reversed(v)) for k, v in hashes.items()}
    assert split_val(shuffled, 0.2, seed=0) == val  # input order does not matter
    assert split_val(hashes, 0.2, seed=1) != val
    assert len(split_val(hashes, 0.3, seed=3) & set(hashes["safe"])) == 3
    assert split_val(hashes, 0.0, seed=0) == set()


def test_val_fraction_zero_keeps_empty_class_folders(reviewed, library, tmp_path):
    report = run(library, tmp_path / "out", val_fraction=0.0)
    assert report.counts["val"] == {"nsfw": 0, "sfw": 0}
    assert sorted(listing(tmp_path / "out" / "val")) == ["nsfw", "sfw"]
    assert "split: validation" not in (tmp_path / "out" / "README.md").read_text()  # for HF
    assert any("empty class folders" in note for note in report.notes)


def test_hugging_face_imagefolder_loads_both_splits_with_metadata(reviewed, library, tmp_path):
    import datasets  # in the test extra: CI runs this, it must not skip

    report = run(library, tmp_path / "out")
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "hf-cache")
    )
    for name, split in (("train", "train"), ("validation", "val")):
        part = loaded[name]
        assert len(part) == sum(report.counts[split].values())
        assert set(part["split"]) == {split}
        assert part["label"].count("nsfw") == report.counts[split]["nsfw"]
        assert part[0]["image"].size[0] > 0


# --- atomicity ----------------------------------------------------------------------------


def test_failure_mid_copy_leaves_nothing(reviewed, library, tmp_path, monkeypatch):
    real, calls = export_module.write_durably, []

    def flaky(path, data, **how):
        calls.append(path)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        real(path, data, **how)

    monkeypatch.setattr(export_module, "write_durably", flaky)
    before = listing(tmp_path)
    with pytest.raises(OSError, match="No space"):
        run(library, tmp_path / "out")
    assert listing(tmp_path) == before  # no DIR, no .out.partial-*


def test_cancel_leaves_nothing(reviewed, library, tmp_path, monkeypatch):
    token, real, calls = CancelToken(), export_module.write_durably, []

    def cancelling(path, data, **how):
        calls.append(path)
        if len(calls) == 3:
            token.cancel()
        real(path, data, **how)

    monkeypatch.setattr(export_module, "write_durably", cancelling)
    before = listing(tmp_path)
    with pytest.raises(Cancelled):
        export_dataset(library, ExportOptions(out=tmp_path / "out"), cancel=token)
    assert len(calls) == 3 and listing(tmp_path) == before


def test_existing_folder_refused_then_replaced_with_overwrite(reviewed, library, tmp_path):
    out = tmp_path / "out"
    run(library, out, seed=1)
    (out / "stale.txt").write_text("from before")
    with pytest.raises(ExportError, match="already exists"):
        run(library, out)
    assert (out / "stale.txt").exists()
    before = listing(tmp_path)
    report = run(library, out, overwrite=True, val_fraction=0.5)
    assert not (out / "stale.txt").exists() and report.counts["val"] == {"nsfw": 9, "sfw": 6}
    assert len(image_files(out)) == 30 and listing(tmp_path) == before  # no .old-* left


def test_overwrite_never_deletes_a_folder_that_is_not_an_export(reviewed, library, tmp_path):
    root, _ = reviewed
    with pytest.raises(ExportError, match="nsfw-desk export; not replacing"):
        run(library, root, overwrite=True)
    assert len(list(root.glob("*.jpg"))) == 30
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        run(library, tmp_path / "file", overwrite=True)
    (tmp_path / "empty").mkdir()
    assert run(library, tmp_path / "empty", overwrite=True).exported == 30


# --- sources ------------------------------------------------------------------------------


def test_changed_and_vanished_sources_are_skipped_and_reported(reviewed, library, tmp_path):
    root, found = reviewed
    changed, gone = found[0].path, found[1].path
    write_photo(changed, (70, 50), seed=99)  # rewritten after review: other content
    gone.unlink()
    report = run(library, tmp_path / "out")
    assert report.exported == 28
    assert sorted(report.skipped) == sorted(
        [(str(changed), "changed since review (content differs)"), (str(gone), "vanished")]
    )
    hashes = {r["hash"] for r in metadata(tmp_path / "out")}
    assert found[0].hash not in hashes and found[1].hash not in hashes
    assert len(image_files(tmp_path / "out")) == 28


def test_another_path_with_the_same_content_is_used(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    original = write_photo(root / "a" / "x.jpg", (80, 60), seed=5)
    copy = root / "b" / "copy.jpg"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    outcomes = scan(library, loaded_model, root)
    decide(library, [outcomes[original]], "unsafe")  # also covers the duplicate
    original.unlink()
    report = run(library, tmp_path / "out")
    assert report.exported == 1 and report.skipped == []
    assert metadata(tmp_path / "out")[0]["source_path"] == str(copy)


def test_cleared_items_excluded_and_duplicates_once(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    a, b = photos(root, 2)
    (root / "dup.jpg").write_bytes(a.read_bytes())
    outcomes = scan(library, loaded_model, root)
    decide(library, [outcomes[a], outcomes[root / "dup.jpg"]], "unsafe")
    decide(library, [outcomes[b]], "safe")
    decide(library, [outcomes[b]], None)  # cleared
    report = run(library, tmp_path / "out")
    assert report.exported == 1
    assert [r["hash"] for r in metadata(tmp_path / "out")] == [outcomes[a].hash]


def test_png_extension_from_format_and_fallbacks(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    png = write_photo(root / "picture.JPG", (60, 40), seed=3, fmt="PNG")  # misleading name
    decide(library, scan(library, loaded_model, root).values(), "safe")
    run(library, tmp_path / "out")
    assert metadata(tmp_path / "out")[0]["file_name"].endswith(".png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert extension("TIFF", None) == "tif" and extension("WEBP", Path("x.bin")) == "webp"
    assert extension(None, Path("a.Jp\u00e9G")) == "jpg"
    assert extension(None, Path("noext")) == "bin" and extension("XYZ", Path("a./")) == "bin"


# --- links --------------------------------------------------------------------------------


def test_link_makes_hard_links_and_leaves_originals_alone(reviewed, library, tmp_path):
    root, found = reviewed
    before = {o.path: (o.path.read_bytes(), o.path.stat().st_mtime_ns) for o in found}
    report = run(library, tmp_path / "out", link=True)
    assert report.linked == report.exported == 30
    for row in metadata(tmp_path / "out"):
        exported, source = tmp_path / "out" / row["file_name"], Path(row["source_path"])
        assert exported.stat().st_ino == source.stat().st_ino
        assert exported.stat().st_nlink > 1
    copied = run(library, tmp_path / "copies")
    assert copied.linked == 0
    assert all(p.stat().st_nlink == 1 for p in (tmp_path / "copies").rglob("*.jpg"))
    for path, (data, mtime) in before.items():
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
    assert any("hard links" in note for note in report.notes)


def test_link_falls_back_to_copies(reviewed, library, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    report = run(library, tmp_path / "out", link=True)
    assert report.linked == 0 and report.exported == 30


# --- selection ----------------------------------------------------------------------------


def test_only_corrections_selects_exactly_the_disagreements(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    paths = photos(root, 6)
    o = scan(library, loaded_model, root)
    cases = [  # (label, score, threshold, correction?)
        ("safe", 0.9, 0.5, True),
        ("unsafe", 0.9, 0.5, False),
        ("unsafe", 0.1, 0.5, True),
        ("safe", 0.1, 0.5, False),
        ("safe", 0.5, 0.5, True),
        ("unsafe", None, 0.5, False),
    ]
    store = ReviewStore(library)
    for path, (label, score, threshold, _) in zip(paths, cases, strict=True):
        store.decide(
            [DecisionInput(o[path].hash, "m", score, path)],
            label,
            reviewer="r",
            threshold=threshold,
        )
    want = {o[p].hash for p, c in zip(paths, cases, strict=True) if c[3]}
    assert {d.hash for d in store.current_decisions() if is_correction(d)} == want
    report = run(library, tmp_path / "out", only_corrections=True)
    assert {r["hash"] for r in metadata(tmp_path / "out")} == want and report.exported == 3
    assert run(library, tmp_path / "all").exported == 6


def test_folder_reviewer_and_date_filters(tmp_path, library, loaded_model, monkeypatch):
    root = tmp_path / "photos"
    a = photos(root / "a", 4)
    b = photos(root / "b", 4, start=4)
    o = scan(library, loaded_model, root)
    times = iter(
        ["2024-03-01T10:00:00.000Z", "2024-03-02T23:59:59.999Z", "2024-03-03T00:00:00.000Z"]
    )
    monkeypatch.setattr(review, "now_utc", lambda: next(times))
    decide(library, [o[p] for p in a[:2]], "unsafe", reviewer="alice")
    decide(library, [o[p] for p in a[2:] + b[:1]], "safe", reviewer="bob")
    decide(library, [o[p] for p in b[1:]], "unsafe", reviewer="alice")

    def hashes(name, **kw):
        run(library, tmp_path / name, **kw)
        return {r["hash"] for r in metadata(tmp_path / name)}

    assert hashes("f", folder=root / "a") == {o[p].hash for p in a}
    assert hashes("r", reviewer="bob") == {o[p].hash for p in a[2:] + b[:1]}
    assert hashes("d1", since="2024-03-02", until="2024-03-02") == {
        o[p].hash for p in a[2:] + b[:1]
    }
    assert hashes("d2", until="2024-03-02T23:59:59.999+00:00") == {o[p].hash for p in a + b[:1]}
    assert hashes("d3", since="2024-03-03T01:00:00+01:00") == {o[p].hash for p in b[1:]}
    assert hashes("all", reviewer="alice", folder=root / "b") == {o[p].hash for p in b[1:]}
    with pytest.raises(ExportError, match="nothing to export"):
        run(library, tmp_path / "none", reviewer="carol")
    with pytest.raises(ExportError, match="not an ISO date"):
        run(library, tmp_path / "bad", since="last tuesday")
    with pytest.raises(ExportError, match="after"):
        run(library, tmp_path / "bad", since="2024-03-03", until="2024-03-01")
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists()


def test_class_names_follow_the_most_common_model_else_fallback(tmp_path, library):
    library.register_model(
        "two",
        source="x",
        revision=None,
        architecture="a",
        labels=["Porn", "Neutral"],
        unsafe_labels=["Porn"],
    )
    library.register_model(
        "three",
        source="x",
        revision=None,
        architecture="a",
        labels=["drawing", "porn", "sexy"],
        unsafe_labels=["porn", "sexy"],
    )
    library.register_model(
        "evil",
        source="x",
        revision=None,
        architecture="a",
        labels=["../../up", "ok"],
        unsafe_labels=["../../up"],
    )

    def names(*models):
        return class_names(
            library,
            [
                review.Decision(i, f"{i:064x}", "safe", "r", "t", m, None, None, None, None)
                for i, m in enumerate(models)
            ],
        )

    assert names("two", "two", "three") == {"unsafe": "porn", "safe": "neutral"}
    assert names("three", "three", "two") == {"unsafe": "unsafe", "safe": "safe"}
    assert names("evil") == {"unsafe": "unsafe", "safe": "safe"}
    assert names(None, None) == {"unsafe": "unsafe", "safe": "safe"}


# --- privacy and safety -------------------------------------------------------------------


def test_no_source_path_leaves_no_path_anywhere(reviewed, library, tmp_path):
    root, found = reviewed
    out = tmp_path / "out"
    run(library, out, include_source_path=False, folder=root)
    rows = metadata(out)
    assert rows and all(r["source_path"] == "" for r in rows)
    blobs = [p.read_bytes() for p in out.rglob("*") if p.suffix in (".jsonl", ".csv", ".md")]
    for needle in [str(root), root.name, *(o.path.name for o in found)]:
        assert not any(needle.encode() in blob for blob in blobs), needle
    assert "(withheld)" in (out / "README.md").read_text()


def test_odd_names_and_malicious_paths_never_write_outside(tmp_path, library, loaded_model):
    root = tmp_path / "photos"
    odd = [
        write_photo(root / name, (50, 40), seed=i)
        for i, name in enumerate(
            ["new\nline.jpg", "a..jpg", "-rf .jpg", "\u00fcml\u00e4ut \u2603.jpg", "a;b|c$(x).jpg"]
        )
    ]
    raw = None
    if sys.platform.startswith("linux"):
        raw = os.path.join(os.fsencode(root), b"latin\xff.jpg")
        write_photo(Path(os.fsdecode(raw)), (50, 40), seed=42)
    o = scan(library, loaded_model, root)
    assert len(o) == len(odd) + (raw is not None)
    decide(library, o.values(), "unsafe")
    evil = write_photo(tmp_path / "elsewhere" / "e.jpg", (50, 40), seed=77).read_bytes()
    digest = content_hash(evil)
    store = ReviewStore(library)
    for path in ["../../etc/x.jpg", "/etc/passwd", "../out/../../x\n.jpg", "a\x00b.jpg"]:
        store.decide(
            [DecisionInput(digest, "m", 0.1, path)], "safe", reviewer="r\n`x`", threshold=0.5
        )
    store.decide(
        [DecisionInput("../../../escaped", "m", 0.1, str(odd[0]))],
        "safe",
        reviewer="r",
        threshold=0.5,
    )
    for path in ("../../../x.jpg", str(tmp_path / "elsewhere" / "e.jpg")):
        library.db.execute(
            "INSERT INTO files (path_bytes, path, size, mtime_ns, hash, format) VALUES "
            "(?, ?, 1, 1, ?, '../../evil')",
            (os.fsencode(path), path, digest),
        )
    library.db.conn.commit()

    base = tmp_path / "deep" / "inside"
    base.mkdir(parents=True)
    outside_before = {p for p in tmp_path.rglob("*")}
    report = run(library, base / "out")
    created = {p for p in tmp_path.rglob("*")} - outside_before
    assert all(p == base / "out" or (base / "out") in p.parents for p in created)
    assert report.exported == len(o) + 1
    assert {w for w, _ in report.skipped} >= {"../../../escaped"}
    for path in (base / "out").rglob("*"):
        if path.is_file() and path.parent.name in ("nsfw", "sfw"):
            assert NAME.match(path.name)
    rows = metadata(base / "out")
    expected = {str(p) for p in odd} | {str(tmp_path / "elsewhere" / "e.jpg")}
    if raw:
        expected.add(raw.decode("utf-8", "backslashreplace"))
    assert {r["source_path"] for r in rows} == expected
    card = (base / "out" / "README.md").read_text()
    assert "new\nline" not in card and "r\n`x`" not in card


# --- progress and the command line ----------------------------------------------------------


def test_progress_reports_files_and_bytes(reviewed, library, tmp_path):
    seen = []
    export_dataset(library, ExportOptions(out=tmp_path / "out"), progress=seen.append)
    assert seen and seen[-1].phase == "export" and seen[-1].done == seen[-1].total == 30
    assert "30 / 30 files" in seen[-1].describe() and re.search(
        r"[\d.]+ (k|M|G)?B/s", seen[-1].describe()
    )


def test_cli_export_summary_and_exit_codes(reviewed, library, tmp_path, capsys, monkeypatch):
    from nsfw_desk.cli import main

    db = str(library.path)
    out = tmp_path / "cli-out"
    code = main(
        [
            "export",
            "--out",
            str(out),
            "--db",
            db,
            "--seed",
            "3",
            "--no-source-path",
            "--val-fraction",
            "0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert (
        "Exported 30 files" in err
        and re.search(r"\(([\d.]+ (kB|MB|GB)|\d+ bytes)\)", err)
        and "B/s" in err
    )
    assert re.search(r"train: nsfw 9, sfw 6", err) and re.search(r"val: nsfw 9, sfw 6", err)
    assert all(r["source_path"] == "" for r in metadata(out))

    assert main(["export", "--out", str(out), "--db", db]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--out", str(out), "--db", db, "--overwrite", "--link"]) == 0
    assert "30 hard links" in capsys.readouterr().err
    assert main(["export", "--out", str(tmp_path / "x"), "--db", str(tmp_path / "no.sqlite")]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["export", "--out", str(tmp_path / "x"), "--val-fraction", "2"])
    assert exc.value.code == 2
    found = reviewed[1]
    found[0].path.unlink()
    assert main(["export", "--out", str(tmp_path / "y"), "--db", db]) == 0
    err = capsys.readouterr().err
    assert "Skipped 1" in err and "vanished" in err

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export_module, "export_dataset", broken)
    assert main(["export", "--out", str(tmp_path / "z"), "--db", db]) == 1
    assert "disk on fire" in capsys.readouterr().err


# --- before an export: what it will write --------------------------------------------------


def test_preview_counts_what_the_export_writes_per_split_and_class(reviewed, library, tmp_path):
    from nsfw_desk.core.export import preview_export

    for options in (
        {},
        {"val_fraction": 0.5, "seed": 3},
        {"reviewer": "alice", "val_fraction": 0.0},
    ):
        preview = preview_export(library, ExportOptions(out=tmp_path / "unused", **options))
        assert preview.error is None
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        report = run(library, out, **options)
        assert preview.counts == report.counts and preview.total == 30
    assert not (tmp_path / "unused").exists()  # the preview writes nothing
    nobody = preview_export(library, ExportOptions(out=tmp_path / "x", reviewer="bob"))
    assert nobody.total == 0 and nobody.error is None
    bad = preview_export(library, ExportOptions(out=tmp_path / "x", since="last tuesday"))
    assert bad.error and bad.total == 0


def test_the_data_card_names_models_for_people(reviewed, library, loaded_model, tmp_path):
    run(library, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"model `nsfw-sfw ({loaded_model.model_id[:15]})`" in card
    assert loaded_model.model_id not in card  # not the bare 64-digit hash


def test_sizes_use_one_decimal_unit_family():
    from nsfw_desk.core.units import format_rate, format_size

    assert format_size(999) == "999 bytes"
    assert format_size(1234) == "1.2 kB"
    assert format_size(22_000_000) == "22.0 MB"
    assert format_size(3.5e9) == "3.5 GB"
    assert format_rate(55e6) == "55.0 MB/s"


def test_a_killed_exports_hidden_copies_are_removed_by_the_next(reviewed, library, tmp_path):
    """A killed export left `.out.partial-*` beside the target, full of copies of reviewed
    images, and no later export removed it (found by a trust-and-safety audit)."""
    import subprocess

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    stale = tmp_path / f".out.partial-{ended.pid}-x1"
    live = tmp_path / f".out.partial-{os.getpid()}-x2"  # an export still running
    old = tmp_path / ".out.partial-a1b2c3"  # an earlier version's, a week old
    fresh = tmp_path / ".out.partial-d4e5f6"  # an earlier version's, maybe still running
    for folder in (stale, live, old, fresh):
        (folder / "train" / "nsfw").mkdir(parents=True)
        (folder / "train" / "nsfw" / "copy.jpg").write_bytes(b"\xff\xd8 a reviewed image")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    run(library, tmp_path / "out")
    left = {p.name for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")}
    assert left == {live.name, fresh.name}


def test_an_overwrite_killed_between_its_renames_is_put_right(reviewed, library, tmp_path):
    """--overwrite renames the earlier export aside, then the new one into place: a kill
    between the two left neither under the name, the earlier one hidden for good."""
    import shutil
    import subprocess

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    out = tmp_path / "out"
    run(library, out)
    earlier = image_files(out)
    aside = tmp_path / f".out.old-{ended.pid}-x1"
    out.rename(aside)
    shutil.copytree(aside, tmp_path / f".out.partial-{ended.pid}-x2")  # the new one, whole
    with pytest.raises(export_module.TargetExists):  # the overwrite never happened: as before
        run(library, out)
    assert image_files(out) == earlier
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    # Killed after the new one was in place, before the earlier one was deleted:
    shutil.copytree(out, tmp_path / f".out.old-{ended.pid}-x3")
    run(library, out, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
