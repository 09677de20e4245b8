"""The SQLite library: schema and migrations, durability settings, privacy, records."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nsfw_desk.core import store
from nsfw_desk.core.images import ErrorKind, FileError
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.store import Library, LibraryError, ScoredFile, path_from_row, path_key

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def scored(path, digest, score=0.5, dims=8):
    rng = np.random.default_rng(len(str(path)))
    return ScoredFile(
        path,
        100,
        123,
        digest,
        10,
        10,
        "PNG",
        score,
        np.array([score, 1 - score], dtype=np.float32),
        rng.standard_normal(dims).astype(np.float32),
        b"jpegbytes",
    )


def test_new_library_has_current_schema_and_durable_settings(library):
    assert library.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert {"files", "scores", "errors", "scans", "models"} <= set(library.db.table_names())
    assert library.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert library.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert library.integrity_check() == "ok"


def test_migrations_run_in_order_and_keep_data(tmp_path):
    path = tmp_path / "lib.sqlite"
    Library(path).close()

    def add_extra(db):
        db["extra"].create({"id": int, "text": str}, pk="id")

    db = store.sqlite_utils.Database(path)
    db["models"].insert({"id": "m", "source": "s"})
    assert store.migrate(db, [*store.MIGRATIONS, add_extra]) == store.SCHEMA_VERSION + 1
    assert "extra" in db.table_names()
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION + 1
    assert db["models"].count == 1
    # Running again is a no-op.
    assert store.migrate(db, [*store.MIGRATIONS, add_extra]) == store.SCHEMA_VERSION + 1
    db.close()


def test_failed_migration_leaves_previous_version(tmp_path):
    path = tmp_path / "lib.sqlite"
    Library(path).close()

    def broken(db):
        db["half"].create({"id": int}, pk="id")
        raise RuntimeError("boom")

    db = store.sqlite_utils.Database(path)
    with pytest.raises(RuntimeError):
        store.migrate(db, [*store.MIGRATIONS, broken])
    assert db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    assert "half" not in db.table_names()
    db.close()


def test_library_from_newer_version_is_refused(tmp_path):
    path = tmp_path / "lib.sqlite"
    Library(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    with pytest.raises(LibraryError, match="newer"):
        Library(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not sqlite " * 100)
    with pytest.raises(LibraryError, match="not a usable"):
        Library(path)


@posix_only
def test_library_and_thumbnails_are_owner_only(tmp_path):
    os.umask(0o022)
    folder = tmp_path / "fresh" / "dir"
    lib = Library(folder / "lib.sqlite")
    lib.record_scored([scored(tmp_path / "a.png", "h1")], "m")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (lib.path, lib.thumbnails_path, lib.path.with_name("lib.sqlite-wal")):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    lib.close()


def test_default_locations_follow_platformdirs(tmp_path):
    assert store.default_library_path().name == store.LIBRARY_FILE
    assert "nsfw-desk" in str(store.default_library_path())
    assert "nsfw-desk" in str(store.default_thumbnails_path())
    # A library given with --db keeps its thumbnails beside it, not in the user cache.
    assert store.default_thumbnails_path(tmp_path / "x.sqlite").parent == tmp_path


@pytest.mark.skipif(sys.platform == "win32", reason="bytes paths are POSIX")
def test_non_utf8_paths_round_trip(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9\xff.jpg"
    path = os.fsdecode(raw)
    text, stored_raw = path_key(path)
    assert stored_raw == raw
    text.encode("utf-8")  # storable as SQLite text
    assert os.fsencode(path_from_row(text, stored_raw)) == raw
    assert path_key(tmp_path / "plain.jpg") == (str(tmp_path / "plain.jpg"), None)


def test_scores_embeddings_and_thumbnails_round_trip(library, tmp_path):
    item = scored(tmp_path / "photos" / "a.jpg", "hash-a", 0.75)
    library.record_scored([item], "model-1")
    assert library.scored_hashes("model-1", ["hash-a", "nope"]) == {"hash-a"}
    assert library.scored_hashes("model-2", ["hash-a"]) == set()
    emb = library.embedding("hash-a", "model-1")
    assert emb.dtype == np.float16 and emb.shape == (8,)
    np.testing.assert_allclose(emb, item.embedding, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(library.probabilities("hash-a", "model-1"), [0.75, 0.25])
    assert library.thumbnail("hash-a") == b"jpegbytes"
    results = list(library.results(tmp_path / "photos", "model-1"))
    assert [(r.path, r.hash, r.score) for r in results] == [(item.path, "hash-a", 0.75)]


def test_results_are_limited_to_the_folder(library, tmp_path):
    library.record_scored(
        [
            scored(tmp_path / "a" / "x.jpg", "h1"),
            scored(tmp_path / "ab" / "y.jpg", "h2"),
            scored(tmp_path / "a" / "sub" / "z.jpg", "h3"),
        ],
        "m",
    )
    found = {r.path.name for r in library.results(tmp_path / "a", "m")}
    assert found == {"x.jpg", "z.jpg"}  # not the sibling folder "ab"


def test_errors_and_scores_replace_each_other(library, tmp_path):
    path = tmp_path / "p" / "a.jpg"
    library.record_errors([FileError(path, ErrorKind.DECODE_ERROR, "broken", 5, 6)], scan_id=1)
    (only,) = library.results(tmp_path / "p", "m")
    assert only.error_kind == ErrorKind.DECODE_ERROR and only.error == "broken"
    library.record_scored([scored(path, "h")], "m")
    (only,) = library.results(tmp_path / "p", "m")
    assert only.error_kind is None and only.score == 0.5
    library.record_errors([FileError(path, ErrorKind.VANISHED, "gone")], scan_id=2)
    (only,) = library.results(tmp_path / "p", "m")
    assert only.error_kind == ErrorKind.VANISHED


def test_forget_missing_keeps_scores_of_the_content(library, tmp_path):
    root = tmp_path / "p"
    library.record_scored([scored(root / "a.jpg", "ha"), scored(root / "b.jpg", "hb")], "m")
    removed = library.forget_missing(root, {path_key(root / "a.jpg")[0]})
    assert removed == 1
    assert [r.path.name for r in library.results(root, "m")] == ["a.jpg"]
    assert library.scored_hashes("m", ["hb"]) == {"hb"}


def test_scan_records(library, tmp_path):
    scan_id = library.begin_scan(tmp_path, "m")
    (row,) = library.scans()
    assert row["status"] == "running"
    library.finish_scan(scan_id, "done", files=3, scored=2, cached=0, errors=1)
    (row,) = library.scans()
    assert (row["status"], row["files"], row["errors"]) == ("done", 3, 1)


def test_a_second_connection_reads_while_the_first_writes(library, tmp_path):
    other = Library(library.path)
    try:
        with library.db.atomic():
            library.db["models"].insert({"id": "x", "source": "s"})
            # Inside the open write transaction, another connection still reads.
            assert other.db["models"].count == 0
        assert other.db["models"].count == 1
    finally:
        other.close()


# --- schema 3: paths as bytes, one timestamp format, notes ---------------------------------

ISO_MS_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
TIMESTAMPS = {
    "files": ["scanned_at"],
    "scores": ["scored_at"],
    "models": ["first_used"],
    "scans": ["started_at", "finished_at"],
    "errors": ["at"],
    "decisions": ["decided_at"],
}


def texts_with_a_nul(path) -> list[tuple[str, str]]:
    """(table, column) of every stored text that holds a NUL, read with plain sqlite3."""
    conn = sqlite3.connect(path)
    found = []
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        cursor = conn.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        for row in cursor:
            found += [
                (table, name)
                for name, value in zip(names, row, strict=True)
                if isinstance(value, str) and "\x00" in value
            ]
    conn.close()
    return found


def v2_library(path) -> None:
    """A library as nsfw-desk with schema 2 made it: only the first two migrations ran."""
    db = store.sqlite_utils.Database(path)
    store.migrate(db, store.MIGRATIONS[:2])
    db.close()


def old_key(path) -> tuple[str, bytes | None]:
    """Schema 2's stored path: path_key's text (NUL escapes) plus the raw bytes."""
    return path_key(path)


@pytest.mark.skipif(sys.platform == "win32", reason="bytes paths are POSIX")
def test_a_schema_2_library_migrates_with_its_non_utf8_rows_intact(tmp_path):
    path = tmp_path / "old.sqlite"
    v2_library(path)
    photos = tmp_path / "photos"
    latin1 = os.fsdecode(os.fsencode(photos) + b"/x\xe9.jpg")
    lookalike = str(photos / "x\\xe9.jpg")
    bad_root = os.fsdecode(os.fsencode(tmp_path) + b"/d\xff")
    bad_error = os.fsdecode(os.fsencode(photos) + b"/bad\xfe.png")
    old_stamp, new_stamp = "2026-03-01T13:00:00+0100", "2026-03-01T12:00:00.000Z"
    probabilities = np.array([0.25, 0.75], dtype="<f4")
    conn = sqlite3.connect(path)
    for name, digest in ((latin1, "h-latin1"), (lookalike, "h-lookalike")):
        text, raw = old_key(name)
        conn.execute(
            "INSERT INTO files (path, raw_path, size, mtime_ns, hash, width, height, format, "
            "scanned_at) VALUES (?, ?, 1, 2, ?, 3, 4, 'JPEG', ?)",
            (text, raw, digest, old_stamp),
        )
        conn.execute(
            "INSERT INTO scores VALUES (?, 'm', 0.5, ?, ?, ?)",
            (digest, probabilities.tobytes(), np.ones(4, "<f2").tobytes(), old_stamp),
        )
    text, raw = old_key(bad_error)
    conn.execute(
        "INSERT INTO errors VALUES (?, ?, 'decode_error', 'broken', 5, 6, 1, ?)",
        (text, raw, old_stamp),
    )
    conn.execute("INSERT INTO models (id, source, first_used) VALUES ('m', 's', ?)", (old_stamp,))
    for root, model in ((bad_root, "m-bad"), (str(photos), "m-plain")):
        conn.execute(
            "INSERT INTO scans (root, model_id, started_at, finished_at, status) "
            "VALUES (?, ?, ?, ?, 'done')",
            (old_key(root)[0], model, old_stamp, old_stamp),
        )
    for name, digest in ((latin1, "h-latin1"), (lookalike, "h-lookalike")):
        conn.execute(
            "INSERT INTO decisions (hash, label, reviewer, decided_at, model_id, score, "
            "threshold, source_path) VALUES (?, 'unsafe', 'r', '2026-03-01T12:00:00.000Z', "
            "'m', 0.5, 0.5, ?)",
            (digest, old_key(name)[0]),
        )
    conn.commit()
    assert ("files", "path") in texts_with_a_nul(path)  # what schema 2 did
    conn.close()

    with Library(path) as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert lib.integrity_check() == "ok"
        results = {os.fsencode(o.path): o.hash for o in lib.results(photos, "m")}
        assert results == {
            os.fsencode(latin1): "h-latin1",
            os.fsencode(lookalike): "h-lookalike",
            os.fsencode(bad_error): None,
        }
        assert lib.last_model_for(Path(bad_root)) == "m-bad"
        assert lib.file_facts(Path(latin1))["hash"] == "h-latin1"
        assert lib.file_facts(Path(lookalike))["hash"] == "h-lookalike"
        reviews = ReviewStore(lib)
        assert reviews.current_labels() == {"h-latin1": "unsafe", "h-lookalike": "unsafe"}
        assert os.fsencode(reviews.history("h-latin1")[0].source) == os.fsencode(latin1)
        assert os.fsencode(reviews.history("h-lookalike")[0].source) == os.fsencode(lookalike)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            lib.db.execute("UPDATE decisions SET label = 'safe'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            lib.db.execute("DELETE FROM decisions")
        np.testing.assert_array_equal(lib.probabilities("h-latin1", "m"), probabilities)

    assert texts_with_a_nul(path) == []
    conn = sqlite3.connect(path)  # what any tool sees
    rows = conn.execute("SELECT path_bytes, path, typeof(path_bytes) FROM files ORDER BY 1")
    assert [tuple(r) for r in rows] == [
        (os.fsencode(lookalike), lookalike, "blob"),
        (os.fsencode(latin1), lookalike, "blob"),  # reads the same, is another file
    ]
    (root_bytes,) = conn.execute("SELECT root_bytes FROM scans WHERE model_id = 'm-bad'").fetchone()
    assert root_bytes == os.fsencode(bad_root)
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            values = {r[0] for r in conn.execute(f"SELECT {column} FROM {table}")}
            assert values == {new_stamp}, (table, column)
    conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="bytes paths are POSIX")
def test_a_failing_migration_3_leaves_the_schema_2_library_untouched(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    v2_library(path)
    name = os.fsdecode(os.fsencode(tmp_path) + b"/x\xe9.jpg")
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO files (path, raw_path, hash, scanned_at) VALUES (?, ?, 'h', 'then')",
        old_key(name),
    )
    conn.execute(
        "INSERT INTO decisions (hash, label, reviewer, decided_at, source_path) "
        "VALUES ('h', 'safe', 'r', 'then', ?)",
        (old_key(name)[0],),
    )
    conn.commit()
    conn.close()
    monkeypatch.setattr(store, "_NOTES_V3", "CREATE TABLE notes (")  # fails at the very end
    with pytest.raises(LibraryError):
        Library(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT path, raw_path FROM files").fetchone() == old_key(name)
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert triggers == {"decisions_no_update", "decisions_no_delete"}
    conn.close()


def test_every_timestamp_is_utc_with_milliseconds(library, tmp_path):
    library.register_model(
        "m", source="s", revision=None, architecture="a", labels=[], unsafe_labels=[]
    )
    scan_id = library.begin_scan(tmp_path, "m")
    library.record_scored([scored(tmp_path / "a.png", "h1")], "m")
    library.record_errors([FileError(tmp_path / "b.png", ErrorKind.DECODE_ERROR, "x", 1, 2)], 1)
    library.finish_scan(scan_id, "done", files=2, scored=1, cached=0, errors=1)
    ReviewStore(library).decide([DecisionInput("h1")], "safe", reviewer="r", threshold=0.5)
    for table, columns in TIMESTAMPS.items():
        for column in columns:
            values = [r[0] for r in library.db.execute(f"SELECT {column} FROM {table}")]
            assert values and all(ISO_MS_UTC.fullmatch(v) for v in values), (table, values)


def test_old_timestamps_become_utc():
    assert store._as_utc_text("2026-03-01T13:00:00+0100") == "2026-03-01T12:00:00.000Z"
    assert store._as_utc_text("2026-03-01T00:30:00-0230") == "2026-03-01T03:00:00.000Z"
    assert store._as_utc_text("2026-03-01T12:00:00.123Z") == "2026-03-01T12:00:00.123Z"
    assert store._as_utc_text("not a time") == "not a time"  # kept, never lost
    assert store._as_utc_text(None) is None


def test_plain_sqlite3_reads_what_the_blobs_hold(library, tmp_path):
    item = scored(tmp_path / "a.png", "h1", 0.75, dims=8)
    library.record_scored([item], "m")
    conn = sqlite3.connect(library.path)
    notes = dict(conn.execute("SELECT topic, note FROM notes"))
    assert "little-endian float32" in notes["scores.probabilities"]
    assert (
        "label order" in notes["scores.probabilities"]
        or "models.labels" in notes["scores.probabilities"]
    )
    assert "little-endian float16" in notes["scores.embedding"]
    assert "pre-logits" in notes["scores.embedding"]
    assert "ISO 8601 UTC" in notes["timestamps"]
    # What the notes say is what is there.
    probabilities, embedding = conn.execute(
        "SELECT probabilities, embedding FROM scores WHERE hash = 'h1'"
    ).fetchone()
    np.testing.assert_array_equal(np.frombuffer(probabilities, "<f4"), item.probabilities)
    np.testing.assert_allclose(np.frombuffer(embedding, "<f2"), item.embedding, atol=1e-2)
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'files'").fetchone()
    assert "exact bytes" in sql  # the schema says it too (`.schema files` in sqlite3)
    conn.close()
    assert library.notes() == notes


# --- the WAL and backups --------------------------------------------------------------------


def test_after_close_library_sqlite_alone_holds_every_decision(tmp_path):
    path = tmp_path / "library.sqlite"
    # Another connection stays open (the desk's worker, a second window): SQLite then never
    # folds the WAL into the main file by itself, close() must.
    other = Library(path)
    lib = Library(path)
    hashes = [f"{i:064x}" for i in range(40)]
    reviews = ReviewStore(lib)
    for i, digest in enumerate(hashes):
        label = "unsafe" if i % 3 else "safe"
        reviews.decide([DecisionInput(digest)], label, reviewer="r", threshold=0.5)
    expected = reviews.current_labels()
    lib.close()
    backup = tmp_path / "backup" / "library.sqlite"
    backup.parent.mkdir()
    shutil.copyfile(path, backup)  # only the main file, as a naive backup would
    with Library(backup) as copy:
        assert ReviewStore(copy).current_labels() == expected
        assert len(expected) == 40
    assert path.with_name("library.sqlite-wal").stat().st_size == 0  # TRUNCATE emptied it
    other.close()


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 shell is not installed")
def test_the_readme_backup_command_copies_a_library_in_use(tmp_path):
    path = tmp_path / "library.sqlite"
    with Library(path) as lib:
        reviews = ReviewStore(lib)
        reviews.decide([DecisionInput("c" * 64)], "unsafe", reviewer="r", threshold=0.5)
        assert path.with_name("library.sqlite-wal").stat().st_size > 0  # not yet in the file
        subprocess.run(
            ["sqlite3", str(path), f".backup {tmp_path / 'copy.sqlite'}"], check=True, timeout=60
        )
        with Library(tmp_path / "copy.sqlite") as copy:
            assert ReviewStore(copy).current_labels() == {"c" * 64: "unsafe"}


def test_close_never_fails_while_another_program_reads(tmp_path, caplog):
    path = tmp_path / "library.sqlite"
    lib = Library(path)
    reviews = ReviewStore(lib)
    reviews.decide([DecisionInput("a" * 64)], "safe", reviewer="r", threshold=0.5)
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM decisions").fetchone() == (1,)  # a snapshot
    reviews.decide([DecisionInput("b" * 64)], "unsafe", reviewer="r", threshold=0.5)
    caplog.set_level(logging.DEBUG, logger="nsfw_desk.core.store")
    started = time.monotonic()
    lib.close()  # the reader's snapshot still needs the WAL: the checkpoint cannot finish
    assert time.monotonic() - started < 5
    assert "checkpoint incomplete" in caplog.text
    reader.rollback()
    reader.close()
    with Library(path) as again:
        assert ReviewStore(again).counts() == {"unsafe": 1, "safe": 1}


# --- read-only connections from other threads ----------------------------------------------


def test_thumbnails_and_score_checks_read_from_any_thread(library, tmp_path):
    library.record_scored([scored(tmp_path / "a.png", "h1")], "m")
    thumbs = store.ThumbnailReader(library.thumbnails_path)
    lookup = store.ScoreLookup(library.path, "m")
    found = {}

    def read(name: str) -> None:
        found[name] = (thumbs.jpeg("h1"), thumbs.jpeg("nope"), lookup.has_score("h1"))

    threads = [threading.Thread(target=read, args=(str(i),)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(found.values()) == {(b"jpegbytes", None, True)}
    assert len(thumbs._reader._made) == 3  # one connection per thread
    thumbs.close()
    lookup.close()
    missing = store.ThumbnailReader(tmp_path / "no-such.sqlite")
    assert missing.jpeg("h1") is None  # a placeholder, not an error


# --- what the store logs --------------------------------------------------------------------


def test_the_store_logs_at_debug_and_never_a_path_above_it(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="nsfw_desk")
    path = tmp_path / "secret-folder" / "library.sqlite"
    with Library(path) as lib:
        lib.record_scored([scored(tmp_path / "secret-folder" / "a.png", "h1")], "m")
        store.library_error(sqlite3.OperationalError("database or disk is full"), path)
    messages = [r.getMessage() for r in caplog.records]
    assert any("schema version 3" in m for m in messages)
    assert any("checkpoint done" in m for m in messages)
    assert any("database or disk is full" in m for m in messages)
    above = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert not any("secret-folder" in m for m in above)


def test_busy_retries_are_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="nsfw_desk.core.store")
    outcomes = [sqlite3.OperationalError("database is locked")] * 2 + [None]

    def statement() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    store._retry_busy(statement)
    assert not outcomes
    assert "database busy" in caplog.text
    assert "after 2 retries" in caplog.text


# --- one owner for the schema ---------------------------------------------------------------

SQL = re.compile(
    r"\bsqlite3\b|\bsqlite_utils\b|\.execute(many|script)?\(|\.db\[|\.conn\b"
    r"|\b(SELECT|INSERT INTO|DELETE FROM|UPDATE \w+ SET|CREATE TABLE|PRAGMA)\b"
)
SCHEMA_OWNERS = {"core/store.py", "core/review.py"}


def test_only_the_store_speaks_sql():
    package = Path(store.__file__).parent.parent
    sources = {
        p.relative_to(package).as_posix(): p.read_text("utf-8") for p in package.rglob("*.py")
    }
    assert set(sources) >= SCHEMA_OWNERS and len(sources) > 10
    for owner in SCHEMA_OWNERS:  # the check does find SQL where there is some
        assert SQL.search(sources[owner]), owner
    offenders = {
        name: [line.strip() for line in text.splitlines() if SQL.search(line)]
        for name, text in sources.items()
        if name not in SCHEMA_OWNERS and SQL.search(text)
    }
    assert offenders == {}, "SQL belongs in core/store.py or core/review.py (add a method)"


def test_model_labels_as_registered_else_none(library):
    library.register_model(
        "m",
        source="s",
        revision=None,
        architecture="a",
        labels=["NSFW", "SFW"],
        unsafe_labels=["NSFW"],
    )
    assert library.model_labels("m") == (["NSFW", "SFW"], ["NSFW"])
    assert library.model_labels("unknown") is None
    with library.db.atomic():
        library.db["models"].insert({"id": "broken", "labels": "{not json", "unsafe_labels": "[]"})
    assert library.model_labels("broken") is None


@pytest.mark.skipif(sys.platform == "win32", reason="bytes paths are POSIX")
def test_forget_missing_takes_path_key_texts_or_bytes(library, tmp_path):
    root = tmp_path / "p"
    names = [os.fsdecode(os.fsencode(root) + n) for n in (b"/x\xe9.jpg", b"/x\\xe9.jpg", b"/y")]
    library.record_scored([scored(Path(n), f"h{i}") for i, n in enumerate(names)], "m")
    assert library.forget_missing(root, {path_key(names[0])[0], os.fsencode(names[1])}) == 1
    assert [os.fsencode(r.path) for r in library.results(root, "m")] == sorted(
        os.fsencode(n) for n in names[:2]
    )


# --- model display names (schema 4) -------------------------------------------------------


def test_models_get_a_display_name_for_people(library, tmp_path):
    digest = "fb8690ab" + "0" * 56
    library.register_model(
        f"sha256:{digest}",
        source=str(tmp_path / "my-finetune"),
        revision=None,
        architecture="vit",
        labels=["NSFW", "SFW"],
        unsafe_labels=["NSFW"],
    )
    library.register_model(
        "Marqo/nsfw-image-detection-384@0c26ec22111b83f106d72a55f611ec35962bcb65",
        source="Marqo/nsfw-image-detection-384",
        revision="0c26ec22111b83f106d72a55f611ec35962bcb65",
        architecture="vit",
        labels=["NSFW", "SFW"],
        unsafe_labels=["NSFW"],
    )
    names = library.model_names()
    assert names[f"sha256:{digest}"] == "my-finetune (sha256:fb8690ab)"
    assert names["Marqo/nsfw-image-detection-384@0c26ec22111b83f106d72a55f611ec35962bcb65"] == (
        "Marqo/nsfw-image-detection-384"
    )
    # An id the library never registered still reads better than its hash.
    assert library.model_names([f"sha256:{'cd' * 32}"]) == {
        f"sha256:{'cd' * 32}": "sha256:cdcdcdcd"
    }


def test_a_schema_3_library_migrates_names_notes_and_tags(tmp_path):
    path = tmp_path / "v3.sqlite"
    db = store.sqlite_utils.Database(path)
    store.migrate(db, store.MIGRATIONS[:3])
    local = "sha256:" + "fb8690ab" * 8
    db.execute(
        "INSERT INTO models (id, source, first_used) VALUES (?, ?, '2026-01-01T00:00:00.000Z')",
        (local, str(tmp_path / "my-finetune")),
    )
    db.execute(
        "INSERT INTO decisions (hash, label, reviewer, decided_at) "
        "VALUES ('h1', 'unsafe', 'r', '2026-01-01T00:00:00.000Z')"
    )
    db.conn.commit()
    db.close()
    with Library(path) as lib:
        assert lib.db.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert lib.integrity_check() == "ok"
        assert lib.model_names() == {local: "my-finetune (sha256:fb8690ab)"}
        reviews = ReviewStore(lib)
        assert [d.note for d in reviews.history("h1")] == [None]  # old decisions: no note
        assert reviews.current_labels() == {"h1": "unsafe"}
        assert reviews.tags() == {}
        with pytest.raises(Exception, match="append-only"):
            lib.db.execute("UPDATE decisions SET note = 'x'")
        assert "decisions.note" in lib.notes() and "tags" in lib.notes()
