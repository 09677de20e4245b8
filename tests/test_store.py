"""The SQLite library: schema and migrations, durability settings, privacy, records."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys

import numpy as np
import pytest

from nsfw_desk.core import store
from nsfw_desk.core.images import ErrorKind, FileError
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
