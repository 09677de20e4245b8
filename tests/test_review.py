"""Review decisions: migration, append-only log, latest wins, undo, atomicity, durability."""

from __future__ import annotations

import os
import re
import sqlite3
import time

import pytest

from nsfw_desk.core import review, store
from nsfw_desk.core.review import Decision, DecisionInput, ReviewStore, default_reviewer
from nsfw_desk.core.store import Library, ScoredFile

ISO_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def item(digest: str, score: float = 0.9, path: str | None = None) -> DecisionInput:
    return DecisionInput(digest, "model-1", score, path or f"/photos/{digest}.jpg")


def decide(reviews: ReviewStore, digests, label, **kw) -> list[int]:
    kw.setdefault("reviewer", "alice")
    kw.setdefault("threshold", 0.5)
    return reviews.decide([item(d) for d in digests], label, **kw)


def row_count(library: Library) -> int:
    return library.db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]


@pytest.fixture
def reviews(library) -> ReviewStore:
    return ReviewStore(library)


# --- schema and migration -----------------------------------------------------------------


def test_new_library_has_the_decisions_table_and_index(library):
    assert store.SCHEMA_VERSION >= 2
    columns = {c.name: c.type for c in library.db["decisions"].columns}
    assert columns == {
        "id": "INTEGER",
        "hash": "TEXT",
        "label": "TEXT",
        "reviewer": "TEXT",
        "decided_at": "TEXT",
        "model_id": "TEXT",
        "score": "REAL",
        "threshold": "REAL",
        "source_path": "TEXT",
        "undo_of": "INTEGER",
        "source_path_bytes": "BLOB",
        "note": "TEXT",
        "merged_from": "TEXT",  # issue 15: the library a merged decision came from
    }
    index_columns = [
        [row[2] for row in library.db.execute(f"PRAGMA index_info('{index.name}')")]
        for index in library.db["decisions"].indexes
    ]
    assert ["hash", "id"] in index_columns
    sql = library.db.execute("SELECT sql FROM sqlite_master WHERE name = 'decisions'").fetchone()[0]
    assert "AUTOINCREMENT" in sql


def _v1_from_first_migration(path):
    """Exactly what nsfw-desk 1 created: only the first migration ever ran."""
    db = store.sqlite_utils.Database(path)
    store.migrate(db, store.MIGRATIONS[:1])
    db.close()


def test_migration_upgrades_a_library_from_before_review(tmp_path):
    # Only the first migration's tables: since schema 3 changed files and errors, a current
    # library with the decisions table dropped is no longer what version 1 was.
    path = tmp_path / "old.sqlite"
    _v1_from_first_migration(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert (
        conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'decisions'").fetchone()[0]
        == 0
    )
    conn.execute("INSERT INTO files (path, size, mtime_ns, hash) VALUES ('/p/a.jpg', 1, 2, 'ha')")
    conn.execute("INSERT INTO scores (hash, model_id, unsafe) VALUES ('ha', 'model-1', 0.8)")
    conn.commit()
    conn.close()

    with Library(path) as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert lib.scores_for("model-1", ["ha"]) == {"ha": 0.8}
        assert lib.db["files"].count == 1
        reviews = ReviewStore(lib)
        assert reviews.current_labels() == {}
        decide(reviews, ["ha"], "unsafe")
    with Library(path) as lib:
        assert ReviewStore(lib).current_labels() == {"ha": "unsafe"}


# --- the log ------------------------------------------------------------------------------


def test_decisions_persist_across_reopen(library, reviews):
    ids = decide(reviews, ["h1", "h2"], "unsafe")
    decide(reviews, ["h3"], "safe")
    before = reviews.history("h1")
    library.close()
    with Library(library.path) as again:
        reopened = ReviewStore(again)
        assert reopened.current_labels() == {"h1": "unsafe", "h2": "unsafe", "h3": "safe"}
        assert reopened.history("h1") == before
        assert [d.id for d in reopened.history("h2")] == [ids[1]]


def test_latest_decision_wins(reviews):
    decide(reviews, ["h"], "unsafe")
    decide(reviews, ["h"], "safe")
    assert reviews.current_labels() == {"h": "safe"}
    decide(reviews, ["h"], "unsafe")
    assert reviews.current_labels(["h"]) == {"h": "unsafe"}
    assert [d.label for d in reviews.history("h")] == ["unsafe", "safe", "unsafe"]


def test_clearing_unlabels_but_keeps_the_history(library, reviews):
    decide(reviews, ["h", "other"], "unsafe")
    decide(reviews, ["h"], None)
    assert reviews.current_labels() == {"other": "unsafe"}
    assert reviews.current_labels(["h"]) == {}
    assert reviews.previous_labels(["h", "other", "never"]) == {
        "h": None,
        "other": "unsafe",
        "never": None,
    }
    assert [d.label for d in reviews.history("h")] == ["unsafe", None]
    assert reviews.counts() == {"unsafe": 1, "safe": 0}


def test_undo_reapplies_previous_labels_and_deletes_nothing(library, reviews):
    decide(reviews, ["a"], "safe")
    decide(reviews, ["b"], "unsafe")
    selection = [item("a"), item("b"), item("c")]
    # The GUI's undo command captures the labels before the decision...
    previous = reviews.previous_labels(i.hash for i in selection)
    assert previous == {"a": "safe", "b": "unsafe", "c": None}
    done = reviews.decide(selection, "unsafe", reviewer="alice", threshold=0.5)
    assert reviews.current_labels() == {"a": "unsafe", "b": "unsafe", "c": "unsafe"}
    assert row_count(library) == 5

    # ...and undo puts back three different labels in one call.
    undone = reviews.apply_labels(
        [(i, previous[i.hash]) for i in selection], reviewer="alice", threshold=0.5, undo_of=done
    )
    assert reviews.current_labels() == {"a": "safe", "b": "unsafe"}
    assert row_count(library) == 8
    assert [(d.label, d.undo_of) for d in reviews.history("c")] == [
        ("unsafe", None),
        (None, done[2]),
    ]

    # Redo appends again; every row ever written is still there, in order.
    reviews.apply_labels(
        [(i, "unsafe") for i in selection], reviewer="alice", threshold=0.5, undo_of=undone
    )
    assert reviews.current_labels() == {"a": "unsafe", "b": "unsafe", "c": "unsafe"}
    assert row_count(library) == 11
    assert [d.label for d in reviews.history("a")] == ["safe", "unsafe", "safe", "unsafe"]
    ids = [row[0] for row in library.db.execute("SELECT id FROM decisions ORDER BY id")]
    assert ids == sorted(set(ids)) and len(ids) == 11


def test_revert_restores_the_label_before_each_decision_and_reverting_again_redoes(
    library, reviews
):
    decide(reviews, ["a"], "safe")
    # A multi-select with the same content under two paths, plus an unlabelled item.
    done = reviews.decide(
        [item("a", path="/x/a.jpg"), item("a", path="/y/a.jpg"), item("b")],
        "unsafe",
        reviewer="alice",
        threshold=0.5,
    )
    undone = reviews.revert(done, reviewer="bob", threshold=0.6)
    # Both rows of "a" go back to "safe", not to the "unsafe" of the first duplicate.
    assert reviews.current_labels(["a", "b"]) == {"a": "safe"}
    assert [d.undo_of for d in reviews.history("a")][-2:] == done[:2]
    assert all(d.reviewer == "bob" and d.threshold == 0.6 for d in reviews.history("b")[1:])
    reviews.revert(undone, reviewer="bob", threshold=0.6)
    assert reviews.current_labels(["a", "b"]) == {"a": "unsafe", "b": "unsafe"}
    assert row_count(library) == 1 + 3 + 3 + 3
    with pytest.raises(ValueError, match="no such"):
        reviews.revert([10_000], reviewer="bob", threshold=0.5)


def test_the_log_refuses_updates_and_deletes(library, reviews):
    decide(reviews, ["h"], "unsafe")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        library.db.execute("UPDATE decisions SET label = 'safe'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        library.db.execute("DELETE FROM decisions")
    assert reviews.current_labels() == {"h": "unsafe"}


# --- atomicity and durability -------------------------------------------------------------


def test_a_multi_item_decision_is_all_or_nothing(library, reviews, monkeypatch):
    decide(reviews, ["kept"], "safe")
    real_execute = library.db.execute
    inserts = []

    def failing_execute(sql, *args, **kwargs):
        if sql.lstrip().upper().startswith("INSERT INTO DECISIONS"):
            inserts.append(sql)
            if len(inserts) == 2:
                raise OSError("disk full")  # after the first row is already in
        return real_execute(sql, *args, **kwargs)

    monkeypatch.setattr(library.db, "execute", failing_execute)
    with pytest.raises(OSError, match="disk full"):
        decide(reviews, ["a", "b", "c"], "unsafe")
    monkeypatch.undo()
    assert len(inserts) == 2
    assert not library.db.conn.in_transaction
    assert row_count(library) == 1
    assert reviews.current_labels() == {"kept": "safe"}


def test_an_invalid_item_mid_batch_writes_nothing(library, reviews):
    with pytest.raises(sqlite3.IntegrityError):
        reviews.decide(
            [item("a"), DecisionInput(""), item("c")], "unsafe", reviewer="alice", threshold=0.5
        )
    assert row_count(library) == 0
    # The connection is usable afterwards.
    decide(reviews, ["a"], "unsafe")
    assert reviews.current_labels() == {"a": "unsafe"}


def test_a_second_connection_sees_a_decision_as_soon_as_decide_returns(library, reviews):
    other = Library(library.path)
    try:
        other_reviews = ReviewStore(other)
        assert other_reviews.current_labels() == {}
        decide(reviews, ["h"], "unsafe")
        assert not library.db.conn.in_transaction  # committed, not pending
        assert other_reviews.current_labels() == {"h": "unsafe"}
        assert other_reviews.counts() == {"unsafe": 1, "safe": 0}
    finally:
        other.close()


def test_decide_inside_a_callers_transaction_is_refused(library, reviews):
    with pytest.raises(RuntimeError, match="transaction"), library.db.atomic():
        decide(reviews, ["h"], "unsafe")
    assert row_count(library) == 0


# --- content, not paths -------------------------------------------------------------------


def test_the_same_content_under_two_paths_shares_the_label(library, reviews, tmp_path):
    first, second = tmp_path / "a" / "one.jpg", tmp_path / "b" / "copy.jpg"
    library.record_scored(
        [ScoredFile(first, 1, 2, "same"), ScoredFile(second, 1, 2, "same")], "model-1"
    )
    reviews.decide(
        [DecisionInput("same", "model-1", 0.9, first)], "unsafe", reviewer="alice", threshold=0.5
    )
    results = list(library.results(tmp_path, "model-1"))
    assert {r.path for r in results} == {first, second}
    labels = reviews.current_labels(r.hash for r in results)
    assert [labels.get(r.hash) for r in results] == ["unsafe", "unsafe"]
    # A rename: the old path's row goes, the content keeps its label.
    library.forget_missing(tmp_path, {str(second)})
    assert reviews.current_labels(["same"]) == {"same": "unsafe"}
    assert reviews.history("same")[0].source_path == str(first)


# --- what is stored -----------------------------------------------------------------------


def test_reviewer_threshold_score_model_and_time_are_stored(reviews, tmp_path):
    before = review.now_utc()
    (new_id,) = reviews.decide(
        [DecisionInput("h", "model-7", 0.8125, tmp_path / "p.jpg")],
        "unsafe",
        reviewer="carol",
        threshold=0.35,
    )
    after = review.now_utc()
    (decision,) = reviews.history("h")
    assert decision == Decision(
        new_id,
        "h",
        "unsafe",
        "carol",
        decision.decided_at,
        "model-7",
        0.8125,
        0.35,
        str(tmp_path / "p.jpg"),
        None,
        os.fsencode(tmp_path / "p.jpg"),
    )
    assert decision.source == tmp_path / "p.jpg"
    assert ISO_MS_UTC.match(decision.decided_at)
    assert before <= decision.decided_at <= after


def test_decision_times_sort_as_text(reviews):
    decide(reviews, ["h"], "unsafe")
    time.sleep(0.002)
    decide(reviews, ["h"], "safe")
    first, second = reviews.history("h")
    assert first.decided_at < second.decided_at


@pytest.mark.parametrize("label", ["UNSAFE", "nsfw", "", "cleared", 1])
def test_labels_are_validated(library, reviews, label):
    with pytest.raises(ValueError, match="label"):
        decide(reviews, ["a", "b"], label)
    with pytest.raises(ValueError, match="label"):
        reviews.apply_labels(
            [(item("a"), "safe"), (item("b"), label)], reviewer="alice", threshold=0.5
        )
    assert row_count(library) == 0


def test_other_arguments_are_validated(library, reviews):
    with pytest.raises(ValueError, match="reviewer"):
        decide(reviews, ["a"], "safe", reviewer=" ")
    with pytest.raises(ValueError, match="undo_of"):
        reviews.apply_labels([(item("a"), "safe")], reviewer="alice", threshold=0.5, undo_of=[1, 2])
    assert reviews.decide([], "safe", reviewer="alice", threshold=0.5) == []
    assert row_count(library) == 0


def test_counts_follow_the_current_labels(reviews):
    assert reviews.counts() == {"unsafe": 0, "safe": 0}
    decide(reviews, ["a", "b", "c"], "unsafe")
    decide(reviews, ["c"], "safe")
    decide(reviews, ["b"], None)
    assert reviews.counts() == {"unsafe": 1, "safe": 1}


def test_default_reviewer_is_the_os_user_with_a_fallback(monkeypatch):
    monkeypatch.setattr(review.getpass, "getuser", lambda: "dana")
    assert default_reviewer() == "dana"

    def no_user():
        raise OSError("no login name")

    monkeypatch.setattr(review.getpass, "getuser", no_user)
    assert default_reviewer() == "reviewer"
    monkeypatch.setattr(review.getpass, "getuser", lambda: "")
    assert default_reviewer() == "reviewer"


# --- scale --------------------------------------------------------------------------------


def test_current_labels_of_100_000_decisions(library, reviews):
    labels = ("unsafe", "safe", None)
    rows = [(f"h{i:06d}", labels[i % 3]) for i in range(80_000)]
    # 20,000 later decisions overrule earlier ones: the latest must win, clears included.
    rows += [(f"h{i:06d}", labels[(i + 1) % 3]) for i in range(0, 80_000, 4)]
    assert len(rows) == 100_000
    with library.db.atomic():
        library.db.conn.executemany(
            "INSERT INTO decisions (hash, label, reviewer, decided_at, model_id, score, "
            "threshold) VALUES (?, ?, 'bulk', '2025-01-01T00:00:00.000Z', 'm', 0.5, 0.5)",
            rows,
        )
    expected = {}
    for digest, label in rows:
        expected[digest] = label
    expected = {h: label for h, label in expected.items() if label is not None}

    everything = reviews.current_labels()
    subset = reviews.current_labels(f"h{i:06d}" for i in range(80_000))
    counts = reviews.counts()

    assert everything == expected
    assert subset == expected
    # Overruled, never decided, cleared then labelled again, unknown.
    assert reviews.current_labels(["h000000", "h000002", "h000008", "missing"]) == {
        "h000000": "safe",
        "h000008": "unsafe",
    }
    assert counts == {
        "unsafe": sum(v == "unsafe" for v in expected.values()),
        "safe": sum(v == "safe" for v in expected.values()),
    }
