"""Issue 14 at a reduced size: the million-item desk (20,000 here) and the constant-memory
scan (1,500 files here). The full sizes are `nsfw-desk bench --desk-scale 1000000` and
`--scan-memory 200000`; no timing is asserted here, only behaviour."""

from __future__ import annotations

import gc
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

from nsfw_desk.core.result_columns import read_folder
from nsfw_desk.core.store import FileOutcome, Library
from nsfw_desk.synthetic_library import MODEL_ID, generate, item_hash

ITEMS = 20_000


@pytest.fixture(scope="module")
def big_library(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("scale") / "scale.sqlite", ITEMS)


def test_generated_library_holds_every_item_with_scores_and_reviews(big_library):
    with Library(big_library.path) as library:
        columns, labels = read_folder(library, big_library.root, MODEL_ID)
    assert len(columns) == ITEMS
    assert not np.isnan(columns.scores).any()
    assert len(labels) == big_library.reviewed == ITEMS // 100
    assert columns.path(7) == big_library.root / "img_0000007.jpg"
    assert columns.hash(7) == item_hash(7)


def test_columns_say_what_results_says(tmp_path):
    """Same rows, scores, stat facts and error text as the per-row reader, a name that is
    not UTF-8 included, on the small-folder and the big-folder paths alike."""
    made = generate(tmp_path / "l.sqlite", 60, reviewed=3, root=tmp_path / "f")
    odd = tmp_path / "f" / os.fsdecode(b"caf\xe9.jpg")
    with Library(made.path) as library:
        library.record_errors(
            [SimpleNamespace(path=odd, kind="bad_image", message="cut short", size=3, mtime_ns=9)],
            None,
        )
        outcomes = list(library.results(made.root, MODEL_ID))
        columns = library.result_columns(made.root, MODEL_ID)
    assert len(columns) == len(outcomes) == 61
    for row, outcome in enumerate(outcomes):
        assert columns.path(row) == outcome.path
        assert columns.hash(row) == outcome.hash
        score = columns.scores[row]
        assert (math.isnan(score) and outcome.score is None) or score == outcome.score
        assert columns.mtimes[row] == (outcome.mtime_ns or 0)
        assert columns.sizes[row] == outcome.size
    assert columns.errors == {60: "bad image: cut short"}
    assert columns.path(60) == odd


def test_grid_lists_every_item_sorted_and_resplits(qtbot, big_library):
    from nsfw_desk.gui.grid import ResultsModel, Role

    with Library(big_library.path) as library:
        columns, labels = read_folder(library, big_library.root, MODEL_ID)
    model = ResultsModel()
    model.reset_columns(big_library.root, columns, labels)
    assert model.rowCount() == ITEMS  # every item listed
    shown = [model.index(i).data(Role.SCORE) for i in range(model.rowCount())]
    assert shown == sorted(columns.scores.tolist(), reverse=True)  # highest first
    top = model.index(0)
    row = int(np.argmax(columns.scores))
    assert top.data(Role.PATH) == columns.path(row)
    assert top.data(Role.HASH) == item_hash(row)
    assert top.data(Qt_display()) == f"img_{row:07d}.jpg"
    assert model.counts().reviewed == ITEMS // 100

    model.set_threshold(0.3)
    model.set_filter("flagged")
    assert model.rowCount() == int(np.count_nonzero(columns.scores >= 0.3))
    model.set_threshold(0.6)
    assert model.rowCount() == int(np.count_nonzero(columns.scores >= 0.6))
    assert all(model.index(i).data(Role.FLAGGED) for i in range(model.rowCount()))

    # Lookups by path and by hash answer without a dict of every row.
    model.set_filter("all")
    path = columns.path(123)
    position = model.row_of(path)
    assert position is not None and model.index(position).data(Role.PATH) == path
    assert model.copies_of(item_hash(123)) == 1
    assert model.item_of(item_hash(123)) == (path, float(columns.scores[123]))
    assert model.row_of(big_library.root / "not-there.jpg") is None


def test_grid_columns_take_a_scan_batch_and_labels(qtbot, big_library):
    """After the stored rows, a scan's batch adds a file and rescores another; a label
    reaches every tile of its content."""
    from nsfw_desk.gui.grid import ResultsModel, Role

    with Library(big_library.path) as library:
        columns, labels = read_folder(library, big_library.root, MODEL_ID)
    model = ResultsModel()
    model.reset_columns(big_library.root, columns, labels)
    new = big_library.root / "zz_new.jpg"
    model.merge(
        [
            FileOutcome(new, item_hash(5), 0.999, mtime_ns=1, size=10),  # a copy of item 5
            FileOutcome(columns.path(9), item_hash(9), 0.9995, mtime_ns=2, size=10),
        ]
    )
    assert model.rowCount() == ITEMS + 1
    assert model.index(0).data(Role.PATH) == columns.path(9)
    assert model.index(1).data(Role.PATH) == new
    assert model.copies_of(item_hash(5)) == 2
    model.set_labels({item_hash(5): "unsafe"})
    for path in (new, columns.path(5)):
        assert model.index(model.row_of(path)).data(Role.LABEL) == "unsafe"
    model.set_groups([[item_hash(5), item_hash(9)]])
    assert model.index(model.row_of(new)).data(Role.HASH) == item_hash(5)
    assert model._group[[5, 9, ITEMS]].tolist() == [0, 0, 0]


def test_one_call_per_tile_says_what_each_role_says(qtbot, big_library):
    """The delegate's single Role.TILE ask answers exactly what the twenty per-role asks
    would, on plain, labelled, error, appended and several-detector rows."""
    from nsfw_desk.core.detector_columns import DetectorColumn
    from nsfw_desk.gui.grid import TILE_ROLES, ResultsModel, Role

    with Library(big_library.path) as library:
        columns, labels = read_folder(library, big_library.root, MODEL_ID)
    model = ResultsModel()
    model.reset_columns(big_library.root, columns, labels)
    model.merge([FileOutcome(big_library.root / "zz.jpg", None, None, error="cut short")])
    hashes = model.hash_snapshot()  # the read thread works on it while a copy arrives:
    model.merge([FileOutcome(big_library.root / "zz2.jpg", item_hash(4), 0.42)])
    ai = np.where(np.arange(len(hashes)) % 2 == 0, 0.9, np.nan)
    model.set_detectors("nsfw", [DetectorColumn("ai", "AI one", "ai-generated", 0.5)], [ai], hashes)
    model.set_ai_labels({item_hash(4): True})
    labelled = model.row_of(columns.path(0))  # generate() labels item 0
    for position in [
        0,
        1,
        2,
        labelled,
        model.rowCount() - 1,
        model.row_of(big_library.root / "zz2.jpg"),
    ]:
        index = model.index(position)
        assert index.data(Role.TILE) == {role: index.data(role) for role in TILE_ROLES}
    assert model.index(labelled).data(Role.LABEL) is not None
    # The copy of item 4 added after the snapshot takes item 4's detector score (row 4).
    copy = model.index(model.row_of(big_library.root / "zz2.jpg"))
    assert copy.data(Role.CHIPS)[1][2] == 0.9 and copy.data(Role.AI_LABEL) is True
    assert model.detector_score("ai", item_hash(4)) == 0.9
    assert model.detector_score("ai", item_hash(5)) is None


def test_reads_match_a_listing_snapshot_row_by_row(big_library):
    """Other detectors' scores and AI labels read for a listing's hashes come back aligned
    to its rows, by the few-rows path and by the one-pass path alike."""
    from nsfw_desk.core.result_columns import read_ai_labels, read_scores
    from nsfw_desk.core.review import DecisionInput, ReviewStore

    with Library(big_library.path) as library:
        columns, _ = read_folder(library, big_library.root, MODEL_ID)
        ReviewStore(library).decide_ai(
            [DecisionInput(item_hash(11), None, None)], True, reviewer="r", threshold=None
        )
        few = columns.hashes[:50].copy()
        many = np.concatenate([columns.hashes, np.array([b"", b"f" * 64], dtype="S64")])
        for hashes in (few, many):
            scores = read_scores(library, MODEL_ID, hashes)
            rows = min(len(hashes), len(columns))
            assert np.array_equal(scores[:rows], columns.scores[:rows])
            assert len(scores) == len(hashes) and np.isnan(scores[rows:]).all()
            assert read_ai_labels(library, hashes) == {item_hash(11): True}
        assert read_ai_labels(library, few[:5]) == {}


def Qt_display():  # noqa: N802 (reads like the Qt role it is)
    from PySide6.QtCore import Qt

    return Qt.ItemDataRole.DisplayRole


def test_desk_window_lists_the_generated_library(qtbot, big_library):
    """The bench's path through the real window: read thread, grid, threshold, scroll."""
    from nsfw_desk.bench_scale import desk_on_library

    gc.unfreeze()  # as at start-up: nothing frozen yet
    figures = desk_on_library(big_library.path, big_library.root, MODEL_ID, ITEMS, steps=10)
    assert figures["listed"] == ITEMS
    assert figures["scroll_reached_bottom"]
    # The window's modules and widgets were moved out of the collector's full passes (each
    # walked them all, and at 1M items a scroll frame took 76 ms instead of 37).
    assert gc.get_freeze_count() > 50_000


def test_scan_memory_does_not_grow_with_the_files(tmp_path):
    """Resident memory after 800 files against after 200: a scan that kept something per
    file (a decoded picture, a thumbnail, an outcome) grows by more than the bound."""
    import json
    import subprocess
    import sys

    # In a process of its own: this one's resident memory also moves with whatever earlier
    # tests left running or allocated (it once grew past the bound here, never alone).
    code = (
        "import json, sys; from pathlib import Path; "
        "from nsfw_desk.bench_scale import scan_memory; "
        "print(json.dumps(scan_memory(800, Path(sys.argv[1]), early=200)))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["scored"] == 800
    per_file_kb = (figures["rss_end_mb"] - figures["rss_early_mb"]) * 1024 / (800 - 200)
    assert per_file_kb < 48, figures


def test_a_big_folders_scores_read_in_one_pass_match_those_asked_for(big_library, monkeypatch):
    """Above ONE_PASS_ROWS files the scores come from one pass over the model's index,
    matched by 8-byte prefixes; they must equal the per-hash answers, row for row."""
    from nsfw_desk.core import store

    with Library(big_library.path) as library:
        asked, _ = read_folder(library, big_library.root, MODEL_ID)
        monkeypatch.setattr(store, "ONE_PASS_ROWS", 1_000)
        one_pass, _ = read_folder(library, big_library.root, MODEL_ID)
    assert np.array_equal(asked.scores, one_pass.scores, equal_nan=True)
    assert not np.isnan(one_pass.scores).any()


def test_align_sorted_finds_keys_that_share_a_prefix():
    import hashlib
    import random

    from nsfw_desk.core.result_columns import align, align_sorted

    keys = {hashlib.blake2b(str(i).encode(), digest_size=32).hexdigest() for i in range(3000)}
    twins = [k[:8] + c * 56 for k in sorted(keys)[:60] for c in "0f"]  # same first 8 bytes
    keys = sorted(keys | set(twins))
    rng = random.Random(1)
    values = [rng.random() for _ in keys]
    rows = keys[::3] + twins[::3] + [k[:8] + "1" * 56 for k in keys[:20]] + ["e" * 64, ""]
    rng.shuffle(rows)
    hashes = np.array(rows, "S64")
    found = align_sorted(keys, values, hashes)
    assert np.array_equal(
        found, align(dict(zip(keys, values, strict=True)), hashes), equal_nan=True
    )
    assert np.isnan(found).sum() == 22  # the 20 near misses, the unknown and the empty hash


def test_the_desk_scale_bench_runs_and_prints_every_figure(qtbot, tmp_path, capsys):
    """`nsfw-desk bench --desk-scale N` at a small N: its printout must not rot."""
    from nsfw_desk.bench_scale import desk_scale, print_desk_scale

    figures = desk_scale(3_000, tmp_path, steps=4)
    print_desk_scale(figures)
    out = capsys.readouterr().out
    assert figures["listed"] == 3_000
    for words in ("first paint", "every item listed", "re-split", "scrolling", "the reads alone"):
        assert words in out


def test_rows_of_hash_finds_every_row_of_each_digest_asked_in_any_order():
    """The grid's labels, hash-list marks and filters come through `rows_for`: every row
    holding an asked digest, paired with the digest's place in the question."""
    import random

    from nsfw_desk.core.result_columns import hash_order
    from nsfw_desk.gui import grid_columns

    rng = random.Random(0)
    pool = [f"{rng.getrandbits(256):064x}" for _ in range(50)]
    rows = [rng.choice(pool) for _ in range(300)]
    hashes = np.array(rows, "S64")
    order = hash_order(hashes)
    column = grid_columns.HashColumn(hashes)
    asked = rng.sample(pool, 20) + ["f" * 64]  # unsorted, one nowhere
    found, which = grid_columns.RowsOfHash(column, order, hashes[order]).rows_for(asked)
    assert sorted(zip(found.tolist(), which.tolist(), strict=True)) == sorted(
        (row, asked.index(digest)) for row, digest in enumerate(rows) if digest in asked
    )
