"""The packed reads behind the desk's listing (`Library.result_columns`, the model
switcher's counts, the grouping's inputs): SQLite packs a column of many rows into one
string and numpy parses it. Whichever way the rows are read (small folder, big folder with
the scores read beside on a second connection, in one chunk or several, row by row when a
chunk does not unpack), the desk must get what the per-row reader `Library.results` says:
the same rows in path order, exact scores, stat facts."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from nsfw_desk.core import store
from nsfw_desk.core.result_columns import ResultColumns
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic_library import MODEL_ID, generate, item_hash

# Scores whose decimal text needs all 17 digits, or is tiny, or subnormal: the packed text
# must give back the very double.
HARD_SCORES = [0.1 + 0.2, 1 - 2**-53, 1e-300, 5e-324, 2**-40 / 3, 0.5, 0.0, 1.0]


@pytest.fixture
def library_path(tmp_path) -> tuple[Path, Path]:
    """A library whose insertion order is not path order (some names added backwards),
    with a name that is not UTF-8, hard scores, a duplicate content, files without a
    score and an error row."""
    made = generate(tmp_path / "l.sqlite", 40, reviewed=2, root=tmp_path / "f")
    prefix = os.fsencode(made.root) + b"/"
    rows = [
        (prefix + b"a_%02d.jpg" % i, item_hash(1000 + i), HARD_SCORES[i % len(HARD_SCORES)], i, i)
        for reversed_i in range(16)
        for i in [15 - reversed_i]
    ]
    rows.append((prefix + b"caf\xe9.jpg", item_hash(3), 0.25, -5, 0))  # a copy of item 3
    with Library(made.path) as library:
        library.insert_scored_listing(MODEL_ID, rows)
        library.register_model(
            "other/model",
            source="x",
            revision=None,
            architecture="none",
            labels=["safe", "unsafe"],
            unsafe_labels=["unsafe"],
        )
        library.insert_scored_listing(
            "other/model",
            [(prefix + b"img_%07d.jpg" % i, item_hash(i), 0.5, 1, 1) for i in range(7)],
        )
        unscored = [(prefix + b"n_%d.jpg" % i, item_hash(5000 + i), 0.5, 1, 1) for i in range(3)]
        library.insert_scored_listing("other/model", unscored)
        library.record_errors([_Error(made.root / "broken.jpg")], None)
    return made.path, made.root


class _Error:
    def __init__(self, path: Path) -> None:
        self.path, self.kind, self.message, self.size, self.mtime_ns = (
            path,
            "bad_image",
            "cut",
            3,
            9,
        )


def assert_as_results(library: Library, root: Path, columns: ResultColumns, model_id: str):
    outcomes = list(library.results(root, model_id))
    assert len(columns) == len(outcomes)
    for row, outcome in enumerate(outcomes):
        assert columns.path(row) == outcome.path
        assert columns.hash(row) == outcome.hash
        score = columns.scores[row]
        assert (math.isnan(score) and outcome.score is None) or score == outcome.score, row
        assert columns.mtimes[row] == (outcome.mtime_ns or 0)
        assert columns.sizes[row] == (-1 if outcome.size is None else outcome.size)
    assert np.array_equal(columns.hash_order, np.argsort(columns.hashes, kind="stable"))


@pytest.mark.parametrize("model_id", [MODEL_ID, "other/model"])
def test_every_way_of_reading_gives_what_results_gives(library_path, monkeypatch, model_id):
    path, root = library_path
    with Library(path) as library:
        small = library.result_columns(root, model_id)
        assert_as_results(library, root, small, model_id)
        monkeypatch.setattr(store, "ONE_PASS_ROWS", 5)  # big: scores read beside, matched
        big = library.result_columns(root, model_id)
        assert_as_results(library, root, big, model_id)
        monkeypatch.setattr(store, "PACKED_ROWS", 3)  # 3 rows at a time, ended by key
        chunked = library.result_columns(root, model_id)
        assert_as_results(library, root, chunked, model_id)
    assert big.blob == small.blob == chunked.blob
    if model_id == MODEL_ID:  # the hard scores went through the packed text
        assert set(HARD_SCORES) <= set(big.scores.tolist())


def test_the_model_scores_are_exact_in_one_chunk_or_several(library_path, monkeypatch):
    path, _ = library_path
    with Library(path) as library:
        rows = library.db.execute(
            "SELECT hash, unsafe FROM scores WHERE model_id = ? ORDER BY hash", (MODEL_ID,)
        ).fetchall()
        whole = library.model_scores_in_hash_order(MODEL_ID)
        monkeypatch.setattr(store, "PACKED_ROWS", 4)
        chunked = library.model_scores_in_hash_order(MODEL_ID)
    for keys, values in (whole, chunked):
        assert keys.tolist() == [row[0].encode() for row in rows]
        assert values.tolist() == [row[1] for row in rows]  # the very doubles
    assert set(HARD_SCORES) <= set(whole[1].tolist())


def test_rows_that_do_not_pack_are_read_one_by_one(library_path, monkeypatch):
    """A file without a hash (group_concat skips a NULL: the columns would shift) and an
    mtime stored as a REAL: that chunk is read row by row, the rest still packed."""
    path, root = library_path
    with Library(path) as library:
        library.db.execute(
            "UPDATE files SET hash = NULL WHERE path_bytes = ?", (os.fsencode(root / "a_03.jpg"),)
        )
        library.db.execute(
            "UPDATE files SET mtime_ns = 1.5 WHERE path_bytes = ?",
            (os.fsencode(root / "img_0000030.jpg"),),
        )
        library.db.conn.commit()
        monkeypatch.setattr(store, "ONE_PASS_ROWS", 5)
        columns = library.result_columns(root, MODEL_ID)
        outcomes = list(library.results(root, MODEL_ID))
        monkeypatch.setattr(store, "PACKED_ROWS", 10)
        chunked = library.result_columns(root, MODEL_ID)
    for found in (columns, chunked):
        assert [found.path(r) for r in range(len(found))] == [o.path for o in outcomes]
        assert [found.hash(r) for r in range(len(found))] == [o.hash for o in outcomes]
        assert found.mtimes.tolist() == [int(o.mtime_ns or 0) for o in outcomes]


def test_the_switchers_counts_for_a_big_folder_match_the_join(library_path, monkeypatch):
    path, root = library_path
    with Library(path) as library:
        joined = library.models_scored_under(root)
        monkeypatch.setattr(store, "ONE_PASS_ROWS", 5)
        matched = library.models_scored_under(root)
        monkeypatch.setattr(store, "PACKED_ROWS", 3)
        chunked = library.models_scored_under(root)
        elsewhere = library.models_scored_under(root / "nothing-here")
    assert [(m["id"], m["scored"]) for m in joined] == [(MODEL_ID, 57), ("other/model", 11)]
    assert matched == joined == chunked
    assert elsewhere == []


def test_a_big_folders_pdq_hashes_and_copies_match_the_small_folder_reads(
    library_path, monkeypatch
):
    """The near-duplicate grouping's inputs: PDQ hashes of the folder's contents (not of
    other folders', not of contents without one) and the contents stored twice."""
    path, root = library_path
    rng = np.random.default_rng(1)
    with Library(path) as library:
        outside = [(item_hash(9000 + i), rng.bytes(32), 50 + i) for i in range(4)]
        inside = [(item_hash(i), rng.bytes(32), i) for i in range(0, 40, 3)]
        library.record_pdq_hashes(inside + outside)
        library.insert_scored_listing(
            MODEL_ID,
            [(b"/elsewhere/x%d.jpg" % i, h, 0.5, 1, 1) for i, (h, _, _) in enumerate(outside)],
        )
        small = library.pdq_hashes(root), library.contents_with_copies(root)
        monkeypatch.setattr(store, "ONE_PASS_ROWS", 5)
        big = library.pdq_hashes(root), library.contents_with_copies(root)
        monkeypatch.setattr(store, "PACKED_ROWS", 2)
        chunked = library.pdq_hashes(root), library.contents_with_copies(root)
        everything = library.pdq_hashes()
    assert small[0][0] == sorted(h for h, _, _ in inside)
    assert small[1] == [item_hash(3)]  # img_0000003.jpg and café.jpg
    for found in (big, chunked):
        assert found[0][0] == small[0][0]
        assert np.array_equal(found[0][1], small[0][1])
        assert np.array_equal(found[0][2], small[0][2])
        assert found[1] == small[1]
    assert everything[0] == sorted(h for h, _, _ in inside + outside)
    assert everything[2].tolist() == [q for _, _, q in sorted(inside + outside)]


def test_a_big_folder_without_copies_has_none(tmp_path, monkeypatch):
    made = generate(tmp_path / "l.sqlite", 12, reviewed=0, root=tmp_path / "f")
    monkeypatch.setattr(store, "ONE_PASS_ROWS", 5)
    with Library(made.path) as library:
        assert library.contents_with_copies(made.root) == []
        assert library.pdq_hashes(made.root)[0] == []
