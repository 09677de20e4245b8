"""The scan pipeline: results, cache, resume, cancel, progress, several models."""

from __future__ import annotations

import io
import os
import threading

import pytest
from PIL import Image

from nsfw_desk.core import scan as scan_module
from nsfw_desk.core.progress import CancelToken
from nsfw_desk.core.runtime import load_model
from nsfw_desk.core.scan import ScanOptions, scan_folder
from nsfw_desk.synthetic import save_random_model, write_photo


def files_in(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_scan_scores_every_file_and_stores_everything(photo_folder, loaded_model, library):
    progress = []
    summary = scan_folder(
        photo_folder, loaded_model, library, keep_outcomes=True, progress=progress.append
    )
    assert summary.files == summary.scored == 12 and summary.errors == 0
    assert {o.path for o in summary.outcomes} == set(files_in(photo_folder))
    scores = [o.score for o in summary.outcomes]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert max(scores) - min(scores) > 0.1  # a real model on real pixels, not a constant
    for o in summary.outcomes:
        assert len(o.hash) == 64
        emb = library.embedding(o.hash, loaded_model.model_id)
        assert emb.shape == (64,)  # test_vit's pooled features
        probs = library.probabilities(o.hash, loaded_model.model_id)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert probs[0] == pytest.approx(o.score, abs=1e-6)  # label 0 is NSFW
        thumb = Image.open(io.BytesIO(library.thumbnail(o.hash)))
        assert thumb.format == "JPEG" and max(thumb.size) <= 256
    final = progress[-1]
    assert (final.done, final.total, final.errors) == (12, 12, 0)
    assert any(p.rate > 0 for p in progress)
    stored = {r.path: r.score for r in library.results(photo_folder, loaded_model.model_id)}
    assert stored == {o.path: pytest.approx(o.score) for o in summary.outcomes}
    assert library.scans()[-1]["status"] == "done"


def test_batches_respect_batch_size(photo_folder, loaded_model, library, monkeypatch):
    sizes = []
    real = loaded_model.predict
    monkeypatch.setattr(loaded_model, "predict", lambda x: sizes.append(len(x)) or real(x))
    scan_folder(photo_folder, loaded_model, library, options=ScanOptions(batch_size=5))
    assert sum(sizes) == 12 and max(sizes) <= 5 and len(sizes) >= 3


def test_scores_do_not_depend_on_batching(photo_folder, loaded_model, tmp_path):
    from nsfw_desk.core.store import Library

    results = []
    for batch_size in (1, 7):
        with Library(tmp_path / f"b{batch_size}.sqlite") as lib:
            s = scan_folder(
                photo_folder,
                loaded_model,
                lib,
                keep_outcomes=True,
                options=ScanOptions(batch_size=batch_size),
            )
            results.append({o.path: o.score for o in s.outcomes})
    assert results[0].keys() == results[1].keys()
    for path, score in results[0].items():
        assert results[1][path] == pytest.approx(score, abs=1e-4)


def test_rescan_of_unchanged_folder_neither_reads_nor_hashes(
    photo_folder, loaded_model, library, monkeypatch
):
    first = scan_folder(photo_folder, loaded_model, library, keep_outcomes=True)

    def forbidden(*args, **kwargs):
        raise AssertionError("an unchanged file was read, hashed or decoded")

    for name in ("read_file", "content_hash", "decode"):
        monkeypatch.setattr(scan_module, name, forbidden)
    second = scan_folder(photo_folder, loaded_model, library, keep_outcomes=True)
    assert second.cached == 12 and second.scored == 0 and second.errors == 0
    assert {o.path: o.score for o in second.outcomes} == {o.path: o.score for o in first.outcomes}
    assert all(o.cached for o in second.outcomes)


def test_changed_renamed_and_deleted_files(photo_folder, loaded_model, library, monkeypatch):
    first = {
        o.path: o
        for o in scan_folder(photo_folder, loaded_model, library, keep_outcomes=True).outcomes
    }
    paths = sorted(first)
    changed, renamed, deleted = paths[0], paths[1], paths[2]
    write_photo(changed, (200, 150), seed=999, fmt="JPEG")
    os.utime(changed, ns=(1, 1))  # a new mtime whatever the clock's resolution
    moved = renamed.with_name("renamed.jpg")
    renamed.rename(moved)
    deleted.unlink()

    decoded = []
    real_decode = scan_module.decode
    monkeypatch.setattr(
        scan_module, "decode", lambda data, **kw: decoded.append(1) or real_decode(data, **kw)
    )
    second = scan_folder(photo_folder, loaded_model, library, keep_outcomes=True)
    by_path = {o.path: o for o in second.outcomes}
    assert len(decoded) == 1  # only the changed file; the renamed one is known content
    assert by_path[changed].hash != first[changed].hash and not by_path[changed].cached
    assert by_path[moved].hash == first[renamed].hash
    assert by_path[moved].score == pytest.approx(first[renamed].score)
    assert deleted not in by_path and renamed not in by_path
    stored = {r.path for r in library.results(photo_folder, loaded_model.model_id)}
    assert stored == set(files_in(photo_folder))


def test_duplicates_share_one_score(tmp_path, loaded_model, library):
    root = tmp_path / "dups"
    original = write_photo(root / "one.png", (80, 60), seed=3)
    (root / "copies").mkdir()
    (root / "copies" / "two.png").write_bytes(original.read_bytes())
    summary = scan_folder(root, loaded_model, library, keep_outcomes=True)
    a, b = summary.outcomes
    assert a.hash == b.hash and a.score == pytest.approx(b.score)


def test_cancel_keeps_committed_batches_and_a_later_scan_resumes(
    tmp_path, loaded_model, library, monkeypatch
):
    root = tmp_path / "many"
    for i in range(40):
        write_photo(root / f"{i:03d}.jpg", (64, 48), seed=i)
    cancel = CancelToken()
    seen = []

    def on_results(outcomes):
        seen.extend(outcomes)
        if len(seen) >= 8:
            cancel.cancel()

    first = scan_folder(
        root,
        loaded_model,
        library,
        cancel=cancel,
        on_results=on_results,
        options=ScanOptions(batch_size=4),
    )
    assert first.cancelled and 8 <= first.scored < 40
    assert library.scans()[-1]["status"] == "cancelled"
    stored = [r for r in library.results(root, loaded_model.model_id) if r.score is not None]
    assert len(stored) == first.scored
    assert library.integrity_check() == "ok"

    predicted = []
    real = loaded_model.predict
    monkeypatch.setattr(loaded_model, "predict", lambda x: predicted.append(len(x)) or real(x))
    second = scan_folder(root, loaded_model, library)
    assert not second.cancelled
    assert second.cached == first.scored
    assert sum(predicted) == second.scored == 40 - first.scored  # nothing redone


def test_cancel_from_another_thread_stops_a_running_scan(tmp_path, loaded_model, library):
    root = tmp_path / "slow"
    for i in range(60):
        write_photo(root / f"{i:03d}.jpg", (64, 48), seed=i)
    cancel = CancelToken()
    started = threading.Event()

    def on_results(outcomes):
        started.set()

    timer = threading.Thread(target=lambda: started.wait(10) and cancel.cancel())
    timer.start()
    summary = scan_folder(
        root,
        loaded_model,
        library,
        cancel=cancel,
        on_results=on_results,
        options=ScanOptions(batch_size=2, workers=1),
    )
    timer.join()
    assert summary.cancelled and summary.scored < 60


def test_scores_are_kept_per_model(photo_folder, loaded_model, library, tmp_path):
    other = load_model(
        save_random_model(tmp_path / "other", labels=("SFW", "NSFW"), seed=5), device="cpu"
    )
    assert other.model_id != loaded_model.model_id
    a = scan_folder(photo_folder, loaded_model, library, keep_outcomes=True)
    b = scan_folder(photo_folder, other, library, keep_outcomes=True)
    assert b.scored == 12  # a new model scores again...
    c = scan_folder(photo_folder, loaded_model, library)
    assert c.cached == 12 and c.scored == 0  # ...and the first model's scores are still there
    sa = {o.path: o.score for o in a.outcomes}
    sb = {o.path: o.score for o in b.outcomes}
    assert any(abs(sa[p] - sb[p]) > 0.01 for p in sa)
    models = {row["id"] for row in library.db["models"].rows}
    assert models == {loaded_model.model_id, other.model_id}


def test_remembered_errors_are_not_reread_until_the_file_changes(
    tmp_path, loaded_model, library, monkeypatch
):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "notes.jpg").write_text("not a picture")
    first = scan_folder(root, loaded_model, library, keep_outcomes=True)
    assert [o.error_kind for o in first.outcomes] == ["not_an_image"]
    reads = []
    real_read = scan_module.read_file
    monkeypatch.setattr(
        scan_module, "read_file", lambda p, **kw: reads.append(p) or real_read(p, **kw)
    )
    second = scan_folder(root, loaded_model, library, keep_outcomes=True)
    assert reads == [] and second.errors == 1
    assert second.outcomes[0].error == first.outcomes[0].error
    write_photo(root / "notes.jpg", (50, 40), fmt="JPEG")
    os.utime(root / "notes.jpg", ns=(10**9, 10**9))
    third = scan_folder(root, loaded_model, library, keep_outcomes=True)
    assert third.errors == 0 and third.scored == 1


def test_file_vanishing_between_discovery_and_read_is_an_error(
    photo_folder, loaded_model, library, monkeypatch
):
    victim = files_in(photo_folder)[0]
    real_read = scan_module.read_file

    def read_after_deleting(path, **kw):
        if path == victim:
            path.unlink()
        return real_read(path, **kw)

    monkeypatch.setattr(scan_module, "read_file", read_after_deleting)
    summary = scan_folder(photo_folder, loaded_model, library, keep_outcomes=True)
    by_path = {o.path: o for o in summary.outcomes}
    assert by_path[victim].error_kind == "vanished"
    assert summary.scored == 11 and summary.errors == 1


def test_counts_add_up_with_duplicate_content_in_one_scan(tmp_path, loaded_model, library):
    root = tmp_path / "copies"
    original = write_photo(root / "original.png", (70, 50), seed=11)
    for i in range(8):
        (root / f"copy_{i}.png").write_bytes(original.read_bytes())
    summary = scan_folder(
        root, loaded_model, library, keep_outcomes=True, options=ScanOptions(batch_size=4)
    )
    assert summary.files == 9
    assert summary.scored + summary.cached + summary.errors == summary.files
    assert len({o.hash for o in summary.outcomes}) == 1
    row = library.scans()[-1]
    assert row["scored"] + row["cached"] + row["errors"] == row["files"] == 9


# --- listing without a model (first run offline, a broken model folder) -------------------


def test_listing_without_a_model_records_every_image_with_hash_and_thumbnail(
    folder, library, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # a listing never needs torch
    summary = scan_folder(folder, None, library, keep_outcomes=True)
    by_path = {o.path: o for o in summary.outcomes}
    assert set(by_path) == set(files_in(folder))
    images = [o for o in summary.outcomes if o.error_kind is None]
    assert len(images) == 12 and summary.errors == 1 and summary.scored == 0
    assert summary.listed == 12 and summary.model_id is None
    assert by_path[folder / "broken.jpg"].error_kind == "decode_error"
    for o in images:
        assert len(o.hash) == 64 and o.score is None
        thumb = Image.open(io.BytesIO(library.thumbnail(o.hash)))
        assert thumb.format == "JPEG" and 0 < max(thumb.size) <= 256
        facts = library.file_facts(o.path)
        assert facts["hash"] == o.hash and facts["width"] > 0 and facts["format"] == "JPEG"
    # Stored results read back as unscored rows, and the listing is not a model's scan.
    stored = list(library.results(folder, "any-model"))
    assert {r.path for r in stored if r.error_kind is None} == {o.path for o in images}
    assert all(r.score is None for r in stored)
    assert library.scans()[-1]["status"] == "done" and library.last_model_for(folder) is None


def test_relisting_an_unchanged_folder_reads_nothing(photo_folder, library, monkeypatch):
    scan_folder(photo_folder, None, library)

    def forbidden(*args, **kwargs):
        raise AssertionError("an unchanged file was read, hashed or decoded")

    for name in ("read_file", "content_hash", "decode"):
        monkeypatch.setattr(scan_module, name, forbidden)
    again = scan_folder(photo_folder, None, library, keep_outcomes=True)
    assert again.cached == 12 and again.listed == 0
    assert all(o.cached and o.score is None for o in again.outcomes)


def test_a_scan_after_a_listing_scores_the_same_rows_once(folder, loaded_model, library):
    listed = scan_folder(folder, None, library, keep_outcomes=True)
    hashes = {o.path: o.hash for o in listed.outcomes}
    scanned = scan_folder(folder, loaded_model, library, keep_outcomes=True)
    assert scanned.scored == 12 and scanned.errors == 1
    assert {o.path: o.hash for o in scanned.outcomes} == hashes
    stored = list(library.results(folder, loaded_model.model_id))
    assert len(stored) == len({r.path for r in stored}) == 13  # no file listed twice
    assert all(r.score is not None for r in stored if r.error_kind is None)
    assert library.last_model_for(folder) == loaded_model.model_id


def test_a_listing_after_a_scan_keeps_showing_the_stored_scores(
    photo_folder, loaded_model, library
):
    scanned = scan_folder(photo_folder, loaded_model, library, keep_outcomes=True)
    write_photo(photo_folder / "new.jpg", (90, 60), seed=77)
    listed = scan_folder(
        photo_folder, None, library, keep_outcomes=True, stored_model=loaded_model.model_id
    )
    scores = {o.path: o.score for o in listed.outcomes}
    assert scores[photo_folder / "new.jpg"] is None and listed.listed == 1
    for o in scanned.outcomes:
        assert scores[o.path] == pytest.approx(o.score)


def test_the_summary_says_where_the_time_went(photo_folder, loaded_model, library):
    """Seconds per stage (core/stage_clock.py): a first scan spends some in every stage; a
    rescan of the same folder answers from the library, so it reads, decodes and runs the
    model on nothing."""
    from nsfw_desk.core.stage_clock import STAGES, describe

    first = scan_folder(photo_folder, loaded_model, library)
    assert set(first.stage_seconds) == set(STAGES)
    assert all(first.stage_seconds[stage] > 0 for stage in STAGES), first.stage_seconds
    again = scan_folder(photo_folder, loaded_model, library)
    for stage in ("read", "decode", "pdq", "transform", "forward"):
        assert again.stage_seconds[stage] == 0, again.stage_seconds
    line = describe(first.stage_seconds)
    assert line.startswith("read ") and " · forward " in line and line.count("%") == len(STAGES)


def test_the_bench_prints_where_the_scan_time_went(loaded_model, tmp_path, capsys):
    from nsfw_desk.bench import _print_figures, make_corpus, measure_corpus

    paths = make_corpus(tmp_path / "corpus", (64, 48), 6)
    figures = measure_corpus("tiny", loaded_model, {}, tmp_path / "corpus", paths, tmp_path, [], 1)
    _print_figures(figures)
    out = capsys.readouterr().out
    assert figures.stages["forward"] > 0 and figures.stages["decode"] > 0
    assert "where the fp32 scan's time went (all threads): read " in out
