"""The SQLite library: files, scores per model, errors, scans; thumbnails in a cache database.

Durability: WAL journal with `synchronous=FULL`, so every committed batch or decision survives
a killed process and a power cut; each scan batch is one transaction, so a crash leaves the
library as it was after the last whole batch. The schema version lives in `PRAGMA user_version`
and `MIGRATIONS` upgrades older libraries in order, each step in its own transaction.
`Library.close()` folds the WAL into the main file, so after a clean quit `library.sqlite`
alone holds everything.

Paths are stored as their exact bytes (`path_bytes` BLOBs, the keys) next to a readable text
that is not unique; every timestamp is `now_utc()`'s ISO 8601 UTC with milliseconds. This
module and core/review.py hold all of the app's SQL (a test enforces it).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import platformdirs
import sqlite_utils

from nsfw_desk.core.defaults import BUSY_TIMEOUT_MS
from nsfw_desk.core.paths import display_path
from nsfw_desk.core.result_columns import (
    FileArrays,
    ResultColumns,
    align,
    align_sorted,
    concat,
    count_present,
    error_text,
    hash_order,
    hash_texts,
    present_sorted,
    unpack_hashes,
    unpack_numbers,
    unpack_scores,
)
from nsfw_desk.core.units import format_size

log = logging.getLogger(__name__)

APP_NAME = "nsfw-desk"
LIBRARY_FILE = "library.sqlite"
THUMBNAILS_FILE = "thumbnails.sqlite"


# From this many files on, a folder's scores are read in one pass over the model's index
# and matched in numpy, rather than asked for by hash.
ONE_PASS_ROWS = 50_000
# Rows per packed read (`_packed_chunks`): SQLite packs a chunk without holding the GIL,
# but turning its strings into Python objects holds it (about 40 ms for a million hashes).
PACKED_ROWS = 250_000


class LibraryError(Exception):
    """The library cannot be opened or used; the message is for the user."""


class LibraryBusy(LibraryError):
    """Another connection held the library's write lock for longer than the busy timeout."""


class LibraryFull(LibraryError):
    """The disk holding the library (or its temporary files) is full; nothing was half-written."""


class LibraryDamaged(LibraryError):
    """The library file is not a database or is corrupt."""


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


_SQLITE_IOERR = 10
NEARLY_FULL_BYTES = 1 << 20  # an I/O error with less than this free is a full disk


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def _free_space(path: Path) -> str:
    return format_size(_free_bytes(path))


def library_error(exc: sqlite3.Error, path: Path | str | None) -> LibraryError:
    """The user-facing error for an SQLite failure: what happened, what was kept, what to do.

    Every write is one transaction, so in each case the library keeps everything committed
    before the failing statement and nothing of that statement.
    """
    where = Path(path) if path else Path("the library")
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    log.debug("SQLite error %s (code %s) on %s", text, code, where, exc_info=exc)
    free = _free_bytes(where)
    # Creating the -shm or -wal file on a full disk is an I/O error, not SQLITE_FULL.
    io_on_full_disk = code == _SQLITE_IOERR and free is not None and free < NEARLY_FULL_BYTES
    if code == _SQLITE_FULL or "disk is full" in text or io_on_full_disk:
        return LibraryFull(
            f"The disk holding {where} is full ({_free_space(where)} free). Everything saved "
            f"before this point is kept; nothing was half-written. Free space on that disk "
            f"and try again."
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return LibraryBusy(
            f"The library {where} stayed locked by another program (a second nsfw-desk?) "
            f"longer than this wait allows. Nothing was lost; try again when it is done."
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text:
        return LibraryDamaged(
            f"The library {where} is damaged ({text}). Restore a backup copy of it, or move it "
            f"away to start a new library."
        )
    return LibraryError(f"The library {where} could not be used: {text}")


def as_library_error(exc: BaseException, path: Path | str | None) -> BaseException:
    """`exc` as the LibraryError a user can act on, when it is an SQLite failure; else itself.

    Write transactions translate their own failures; this covers reads and opening, where a
    raw sqlite3 error (or a generic LibraryError caused by one, e.g. a full disk while a new
    library is created) would otherwise reach the user.
    """
    if isinstance(exc, sqlite3.DatabaseError):
        return library_error(exc, path)
    cause = exc.__cause__
    if type(exc) is LibraryError and isinstance(cause, sqlite3.Error):
        mapped = library_error(cause, path)
        return mapped if isinstance(mapped, LibraryFull) else exc
    return exc


def _database_file(conn: sqlite3.Connection) -> str | None:
    try:
        return conn.execute("PRAGMA database_list").fetchone()[2] or None
    except sqlite3.Error:
        return None


def default_library_path() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / LIBRARY_FILE


def default_thumbnails_path(library: Path | None = None) -> Path:
    """The user cache dir for the default library; beside a library given with --db."""
    if library is None or Path(library) == default_library_path():
        return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / THUMBNAILS_FILE
    library = Path(library)
    return library.with_name(library.stem + ".thumbnails.sqlite")


def _escape_undecodable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "".join(f"\x00\\x{byte:02x}" for byte in exc.object[exc.start : exc.end]), exc.end


codecs.register_error("nsfw_desk.path", _escape_undecodable)


def path_key(path: Path | str | bytes) -> tuple[str, bytes | None]:
    """An in-memory text key for a path, plus its raw bytes when the name is not valid UTF-8.

    Each byte that is not UTF-8 becomes NUL + `\\xNN` in the text. No real path holds a NUL,
    so that text can never be another path's (b"a\\xff" and the valid name "a\\\\xff" stay
    apart), and `key_bytes` turns it back into the bytes. The escape is per byte, so a folder's
    text is still a prefix of its files' texts. Since schema 3 the library stores the bytes
    themselves (`path_bytes`) and never this text: it keys dicts in memory only (scan.py).
    """
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "nsfw_desk.path"), raw


def key_text(raw: bytes) -> str:
    """`path_key`'s text for path bytes read from the library."""
    return raw.decode("utf-8", "nsfw_desk.path")


def key_bytes(key: str | bytes) -> bytes:
    """The path bytes of a `path_key` text (the inverse of `key_text`); bytes pass through."""
    if isinstance(key, bytes):
        return key
    pieces = _ESCAPED_BYTE.split(key)  # text, hex, text, hex, …, text
    return b"".join(
        bytes([int(piece, 16)]) if odd else piece.encode("utf-8", "surrogatepass")
        for odd, piece in zip(itertools.cycle((False, True)), pieces)
    )


_ESCAPED_BYTE = re.compile("\x00\\\\x([0-9a-f]{2})")


def display_text(text: str) -> str:
    """A `path_key` text as people read it: bytes that are not UTF-8 shown as `\\xNN`."""
    return text.replace("\x00", "")


def path_from_row(text: str, raw: bytes | None) -> Path:
    return Path(os.fsdecode(raw)) if raw is not None else Path(text)


def _prefix_range(root: Path) -> tuple[bytes, bytes]:
    """[low, high) bounds of every stored path under `root`, for an indexed range scan.

    BLOBs compare with memcmp(), so the bytes of every path under the folder sort between
    "folder/" and "folder" + the byte after "/".
    """
    sep = os.fsencode(os.sep)
    prefix = os.fsencode(root).rstrip(sep) + sep
    return prefix, prefix[:-1] + bytes([prefix[-1] + 1])


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction that holds the write lock from its first statement.

    sqlite-utils' `atomic()` issues a plain (deferred) BEGIN, and its writes read the schema
    first, so the transaction starts as a reader and must upgrade. In WAL mode that upgrade
    fails at once with SQLITE_BUSY ("database is locked", the busy timeout does not apply)
    whenever another connection (the GUI's, the scan worker's, a second instance's) committed
    since the read began. BEGIN IMMEDIATE instead waits, up to the busy timeout, for the lock,
    and then nothing can come between. Inside a caller's transaction this is a savepoint.
    SQLite's operational failures leave as `LibraryError`s (`LibraryFull`, `LibraryBusy`, …).
    """
    conn = db.conn
    if conn.in_transaction:
        name = f"nsfw_desk_{secrets.token_hex(8)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        # Full disk, lock held past the timeout, I/O error: a message the user can act on.
        raise library_error(exc, _database_file(conn)) from exc


def _make_private_dir(folder: Path) -> None:
    if not folder.exists():
        try:
            folder.mkdir(parents=True, mode=0o700)
        except FileExistsError:  # another instance made it a moment ago
            return
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _open_private_db(path: Path) -> sqlite3.Connection:
    """A connection to `path`, creating it owner-only (the WAL and SHM files inherit that)."""
    try:
        _make_private_dir(path.parent)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise _unusable(path, exc) from exc
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()  # refused: no handle left open on the file
        raise _unusable(path, exc) from exc
    return conn


def _unusable(path: Path, exc: BaseException) -> LibraryError:
    """Why a library cannot be opened. A read-only disk or folder is named as such: SQLite
    says only "unable to open database file" (WAL needs its -shm file beside the library),
    which reads like a damaged library."""
    if path.is_dir():
        return LibraryError(
            f"{path} is a folder; a library is a file: name one, such as {path / 'library.sqlite'}"
        )
    if path.exists() and not path.is_file():
        return LibraryError(
            f"{path} is not a regular file (a FIFO, device or socket); a library is a file"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        read_only_disk = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        read_only_disk = False
    if read_only_disk:
        why, fix = "its disk is read-only", f"remount the disk holding {folder} read-write"
    elif not os.access(folder, os.W_OK):
        why, fix = f"{folder} is not writable", f"make {folder} writable"
    elif path.exists() and not os.access(path, os.W_OK):
        why, fix = "the file is read-only", "make it writable"
    else:
        return LibraryError(f"{path} is not a usable nsfw-desk library: {exc}")
    return LibraryError(
        f"{path} cannot be written: {why}. The desk saves every decision there as it is "
        f"made, so it needs a writable library: {fix}, or choose another library with "
        "--db PATH."
    )


def _retry_busy(statement: Callable[[], object]) -> None:
    """Run `statement`, retrying while the database is busy, up to the busy timeout.

    Turning a new database to WAL needs it to itself for a moment, and SQLite answers
    SQLITE_BUSY at once instead of waiting: two instances creating one library collide here.
    """
    started = time.monotonic()
    deadline = started + BUSY_TIMEOUT_MS / 1000
    tries = 0
    while True:
        try:
            statement()
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 5) & 0xFF) in (5, 6)  # BUSY, LOCKED
            if not (busy and "locked" in str(exc)) or time.monotonic() > deadline:
                if tries:
                    log.debug(
                        "still busy after %d retries in %.2f s: %s",
                        tries,
                        time.monotonic() - started,
                        exc,
                    )
                raise
            if not tries:
                log.debug("database busy (%s); retrying for up to %d ms", exc, BUSY_TIMEOUT_MS)
            tries += 1
            time.sleep(0.01)
        else:
            if tries:
                log.debug(
                    "busy wait over after %d retries, %.2f s", tries, time.monotonic() - started
                )
            return


SHARED_SCORES_CHUNK = 100_000  # rows per statement of record_shared_scores
IN_CHUNK = 500  # SQLite limits host parameters per statement (999 in older builds)


def in_chunks(values: Iterable) -> Iterator[tuple[list, str]]:
    """`values` in slices small enough for one `IN (...)`, each with its `?,?,…` marks."""
    values = list(values)
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start : start + IN_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def float16_blob(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f2").tobytes()


def float32_blob(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def blob_to_array(blob: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(blob, dtype=dtype)


def utc_text(when: datetime) -> str:
    """The library's one timestamp format: ISO 8601 UTC, milliseconds, 'Z'.

    Fixed width, so text order is time order in SQL and in Python.
    """
    when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def now_utc() -> str:
    """Now in the library's timestamp format (see `utc_text`)."""
    return utc_text(datetime.now(timezone.utc))


_now = now_utc  # the name store.py used before schema 3 unified the formats

_UTC_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@functools.lru_cache(maxsize=4096)  # a scan batch shares one timestamp
def _as_utc_text(text: str | None) -> str | None:
    """An older timestamp (local time with a `+hhmm` offset) in the library's format.

    Text that is not a timestamp is kept as it is: a migration must not lose anything.
    """
    if text is None or _UTC_TEXT.fullmatch(text):
        return text
    for parse in (lambda t: datetime.strptime(t, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            when = parse(text)
        except (TypeError, ValueError):
            continue
        return utc_text(when if when.tzinfo else when.replace(tzinfo=timezone.utc))
    return text


# --- schema -------------------------------------------------------------------------------


def _migrate_to_1(db: sqlite_utils.Database) -> None:
    db.table("files").create(
        {
            "path": str,
            "raw_path": bytes,
            "size": int,
            "mtime_ns": int,
            "hash": str,
            "width": int,
            "height": int,
            "format": str,
            "scanned_at": str,
        },
        pk="path",
    )
    db.table("files").create_index(["hash"])
    db.table("models").create(
        {
            "id": str,
            "source": str,
            "revision": str,
            "architecture": str,
            "labels": str,
            "unsafe_labels": str,
            "first_used": str,
        },
        pk="id",
    )
    db.table("scores").create(
        {
            "hash": str,
            "model_id": str,
            "unsafe": float,
            "probabilities": bytes,
            "embedding": bytes,
            "scored_at": str,
        },
        pk=("hash", "model_id"),
    )
    db.table("scores").create_index(["model_id", "unsafe"])
    db.table("errors").create(
        {
            "path": str,
            "raw_path": bytes,
            "kind": str,
            "message": str,
            "size": int,
            "mtime_ns": int,
            "scan_id": int,
            "at": str,
        },
        pk="path",
    )
    db.table("scans").create(
        {
            "id": int,
            "root": str,
            "model_id": str,
            "started_at": str,
            "finished_at": str,
            "status": str,
            "files": int,
            "scored": int,
            "cached": int,
            "errors": int,
        },
        pk="id",
    )


def _migrate_to_2(db: sqlite_utils.Database) -> None:
    """Review decisions (see core/review.py): append-only, keyed by content hash."""
    # AUTOINCREMENT: ids are never reused, so "highest id" is always "latest decision".
    db.execute(
        "CREATE TABLE decisions ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " hash TEXT NOT NULL CHECK (hash <> ''),"
        " label TEXT CHECK (label IS NULL OR label IN ('unsafe', 'safe')),"
        " reviewer TEXT NOT NULL,"
        " decided_at TEXT NOT NULL,"
        " model_id TEXT,"
        " score REAL,"
        " threshold REAL,"
        " source_path TEXT,"
        " undo_of INTEGER REFERENCES decisions(id))"
    )
    db.execute("CREATE INDEX idx_decisions_hash_id ON decisions (hash, id)")
    _append_only_triggers(db, "CREATE")


def _append_only_triggers(db: sqlite_utils.Database, verb: str) -> None:
    for action in ("UPDATE", "DELETE"):
        if verb == "DROP":
            db.execute(f"DROP TRIGGER decisions_no_{action.lower()}")
        else:
            db.execute(
                f"CREATE TRIGGER decisions_no_{action.lower()} BEFORE {action} ON decisions "
                "BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END"
            )


# Schema 3 tables. SQLite keeps these comments in sqlite_master.sql, so `.schema` in the
# sqlite3 shell shows them; the `notes` table says the same in rows.
_FILES_V3 = """CREATE TABLE files (
    path_bytes BLOB PRIMARY KEY NOT NULL, -- the path's exact bytes (os.fsencode): the key
    path TEXT NOT NULL, -- the path for people; bytes that are not UTF-8 shown as \\xNN
    size INTEGER,
    mtime_ns INTEGER,
    hash TEXT, -- BLAKE2b-256 of the content, hex
    width INTEGER,
    height INTEGER,
    format TEXT,
    scanned_at TEXT -- ISO 8601 UTC with milliseconds and 'Z'
)"""
_ERRORS_V3 = """CREATE TABLE errors (
    path_bytes BLOB PRIMARY KEY NOT NULL, -- the path's exact bytes (os.fsencode): the key
    path TEXT NOT NULL, -- the path for people; bytes that are not UTF-8 shown as \\xNN
    kind TEXT,
    message TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    scan_id INTEGER,
    at TEXT -- ISO 8601 UTC with milliseconds and 'Z'
)"""
_NOTES_V3 = """CREATE TABLE notes (
    topic TEXT PRIMARY KEY NOT NULL, -- table.column, or a subject
    note TEXT NOT NULL -- what it holds, for anyone reading the library with other tools
)"""
NOTES = {
    "scores.probabilities": "little-endian float32 (numpy '<f4'), one per class of the model, "
    "in the order of models.labels (a JSON list) of scores.model_id: the softmax output",
    "scores.embedding": "little-endian float16 (numpy '<f2'): the model's pooled pre-logits "
    "embedding (timm forward_head(pre_logits=True)), as many values as the model's width",
    "scores.unsafe": "the summed probability of the model's unsafe classes "
    "(models.unsafe_labels), 0 to 1",
    "files.path_bytes": "the file's path exactly as the operating system knows it "
    "(os.fsencode); the key. errors.path_bytes, scans.root_bytes and "
    "decisions.source_path_bytes hold the same kind of bytes",
    "files.path": "the same path as text for people: bytes that are not valid UTF-8 shown as "
    "\\xNN, so two names can read alike; use path_bytes to open the file",
    "timestamps": "every timestamp column (files.scanned_at, scores.scored_at, "
    "models.first_used, scans.started_at and finished_at, errors.at, decisions.decided_at) "
    "is ISO 8601 UTC with milliseconds and 'Z', e.g. 2026-01-31T12:00:00.000Z",
    "decisions": "append-only (triggers refuse UPDATE and DELETE); the row with the highest "
    "id of a hash is its current label, and a NULL label clears it",
}


@functools.lru_cache(maxsize=4096)
def _legacy_path_bytes(text: str | None, raw: bytes | None) -> bytes | None:
    """Schema 2 kept `path_key` text (NUL escapes) and, for names not UTF-8, the raw bytes."""
    if raw is not None:
        return bytes(raw)
    return None if text is None else key_bytes(text)


def _legacy_path_text(text: str | None, raw: bytes | None) -> str | None:
    raw = _legacy_path_bytes(text, raw)
    return None if raw is None else display_path(raw)


_D = "[0-9]"
_UTC_GLOB = f"{_D * 4}-{_D * 2}-{_D * 2}T{_D * 2}:{_D * 2}:{_D * 2}.{_D * 3}Z"
_OFFSET_GLOB = f"{_D * 4}-{_D * 2}-{_D * 2}T{_D * 2}:{_D * 2}:{_D * 2}[+-]{_D * 4}"


def _utc_sql(column: str) -> str:
    """SQL for `_as_utc_text(column)`: SQLite's date functions convert the old format (a
    `+hhmm` offset once written `+hh:mm`) at SQL speed; Python sees only what is left."""
    return (
        f"CASE WHEN {column} GLOB '{_OFFSET_GLOB}' THEN strftime('%Y-%m-%dT%H:%M:%fZ', "
        f"substr({column}, 1, 22) || ':' || substr({column}, 23, 2)) "
        f"ELSE nsfw_utc({column}) END"
    )


def _migrate_to_3(db: sqlite_utils.Database) -> None:
    """Paths as exact bytes (no text with a NUL left), one timestamp format, notes.

    Keyed on the bytes, b"x\\xe9.jpg" and the valid name "x\\\\xe9.jpg" stay two rows while
    both read "x\\xe9.jpg" as text. SQLite's own string functions stop at a NUL, so the
    rewrite of the old NUL-escaped texts runs through Python functions.
    """
    conn = db.conn
    conn.create_function("nsfw_path_bytes", 2, _legacy_path_bytes, deterministic=True)
    conn.create_function("nsfw_path_text", 2, _legacy_path_text, deterministic=True)
    conn.create_function("nsfw_utc", 1, _as_utc_text, deterministic=True)
    for table, ddl, columns in (
        ("files", _FILES_V3, "size, mtime_ns, hash, width, height, format"),
        ("errors", _ERRORS_V3, "kind, message, size, mtime_ns, scan_id"),
    ):
        stamp = "scanned_at" if table == "files" else "at"
        db.execute(f"ALTER TABLE {table} RENAME TO {table}_v2")
        db.execute(ddl)
        # Old keys were unique texts, so their bytes are unique too; OR REPLACE only guards
        # against rows from before the NUL escape, where the latest row wins.
        # Without raw_path the text was the valid UTF-8 name itself: SQL converts those
        # (fast); Python only the few names that were not UTF-8.
        db.execute(
            f"INSERT OR REPLACE INTO {table} (path_bytes, path, {columns}, {stamp}) SELECT "
            "CASE WHEN raw_path IS NULL THEN CAST(path AS BLOB) "
            "ELSE nsfw_path_bytes(path, raw_path) END, "
            "CASE WHEN raw_path IS NULL THEN path ELSE nsfw_path_text(path, raw_path) END, "
            f"{columns}, {_utc_sql(stamp)} FROM {table}_v2 ORDER BY rowid"
        )
        db.execute(f"DROP TABLE {table}_v2")
    db.execute("CREATE INDEX idx_files_hash ON files (hash)")
    db.execute("ALTER TABLE scans ADD COLUMN root_bytes BLOB")
    db.execute(
        "UPDATE scans SET root_bytes = nsfw_path_bytes(root, NULL), "
        f"root = nsfw_path_text(root, NULL), started_at = {_utc_sql('started_at')}, "
        f"finished_at = {_utc_sql('finished_at')}"
    )
    db.execute("CREATE INDEX idx_scans_root_bytes ON scans (root_bytes, id)")
    db.execute(f"UPDATE models SET first_used = {_utc_sql('first_used')}")
    # Only rows in another format: scores carry blobs, and a rewrite copies them.
    db.execute(
        f"UPDATE scores SET scored_at = {_utc_sql('scored_at')} "
        f"WHERE scored_at NOT GLOB '{_UTC_GLOB}'"
    )
    db.execute("ALTER TABLE decisions ADD COLUMN source_path_bytes BLOB")
    # The log is append-only and its triggers refuse every UPDATE, this one too. This one
    # changes no decision: the same path, as bytes plus readable text instead of a text
    # with NUL escapes, and the same instant in the one timestamp format. So the triggers go
    # for the length of the rewrite, inside this migration's transaction: no other
    # connection ever sees the log without them, and a failure restores them with the rest.
    _append_only_triggers(db, "DROP")
    db.execute(
        "UPDATE decisions SET source_path_bytes = nsfw_path_bytes(source_path, NULL), "
        "source_path = nsfw_path_text(source_path, NULL) WHERE source_path IS NOT NULL"
    )
    db.execute(
        f"UPDATE decisions SET decided_at = {_utc_sql('decided_at')} "
        f"WHERE decided_at NOT GLOB '{_UTC_GLOB}'"
    )
    _append_only_triggers(db, "CREATE")
    db.execute(_NOTES_V3)
    db.conn.executemany("INSERT INTO notes (topic, note) VALUES (?, ?)", list(NOTES.items()))


def model_display_name(model_id: str, source: str | None = None) -> str:
    """How people read a model's name: the hub id, or a local folder's name and short hash.

    `org/name@commit` → `org/name`; a local model (id `sha256:…`, source its folder) →
    `my-finetune (sha256:fb8690ab)`; without a known folder just the short hash. The full
    id stays the key everywhere; this is only for showing.
    """
    if model_id.startswith("sha256:"):
        short = model_id[:15]
        folder = Path(source).name if source else ""
        return f"{folder} ({short})" if folder else short
    return model_id.partition("@")[0] or model_id


_TAGS_V4 = """CREATE TABLE tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL CHECK (hash <> ''), -- the content the tag is on
    tag TEXT NOT NULL CHECK (tag <> ''),
    added INTEGER NOT NULL CHECK (added IN (0, 1)), -- 1 added, 0 removed
    reviewer TEXT NOT NULL,
    at TEXT NOT NULL -- ISO 8601 UTC with milliseconds and 'Z'
)"""
NOTES_V4 = {
    "models.display_name": "the model's name for people: the hub id, or a local folder's name "
    "and the short hash of its weights; models.id stays the key",
    "decisions.note": "the reviewer's note on that decision, or NULL; a note on its own is a "
    "decision that repeats the current label",
    "tags": "append-only (triggers refuse UPDATE and DELETE): a tag is on a content while the "
    "latest row of its (hash, tag) has added = 1",
}


def _migrate_to_4(db: sqlite_utils.Database) -> None:
    """Model display names, a note per decision, tags per content (append-only)."""
    db.execute("ALTER TABLE models ADD COLUMN display_name TEXT")
    rows = db.execute("SELECT id, source FROM models").fetchall()
    db.conn.executemany(
        "UPDATE models SET display_name = ? WHERE id = ?",
        [(model_display_name(model_id, source), model_id) for model_id, source in rows],
    )
    # ADD COLUMN rewrites no row, so the append-only triggers can stay.
    db.execute("ALTER TABLE decisions ADD COLUMN note TEXT")
    db.execute(_TAGS_V4)
    db.execute("CREATE INDEX idx_tags_hash_tag ON tags (hash, tag, id)")
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER tags_no_{action.lower()} BEFORE {action} ON tags "
            "BEGIN SELECT RAISE(ABORT, 'tags are append-only'); END"
        )
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)", list(NOTES_V4.items())
    )


NOTES_PDQ = {
    "content_hashes": "per content (files.hash): its PDQ perceptual hash (32 bytes, the "
    "reference's printed order) and quality 0-100, computed by the scan from the decoded "
    "pixels; md5, sha1, sha256 of the file's bytes, computed when a hash list needs them",
    "hash_lists": "imported lists of hashes from elsewhere; kind unsafe, safe or known",
    "hash_list_entries": "one hash of a list: algorithm pdq, md5, sha1 or sha256, the raw "
    "digest bytes, the PDQ quality when the list gave one, and the line it came from",
}


def _migrate_add_pdq_and_hash_lists(db: sqlite_utils.Database) -> None:
    """Perceptual and file hashes per content; imported hash lists (issue 12)."""
    db.execute(
        "CREATE TABLE content_hashes (hash TEXT PRIMARY KEY, pdq BLOB, pdq_quality INTEGER, "
        "md5 BLOB, sha1 BLOB, sha256 BLOB)"
    )
    db.execute(
        "CREATE TABLE hash_lists (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "kind TEXT NOT NULL CHECK (kind IN ('unsafe', 'safe', 'known')), "
        "created TEXT NOT NULL, source TEXT)"
    )
    db.execute(
        "CREATE TABLE hash_list_entries (list_id INTEGER NOT NULL REFERENCES hash_lists(id), "
        "algorithm TEXT NOT NULL, digest BLOB NOT NULL, quality INTEGER, line INTEGER)"
    )
    db.execute("CREATE INDEX idx_hash_list_entries_list ON hash_list_entries (list_id)")
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)", list(NOTES_PDQ.items())
    )


NOTES_SHARED_EMBEDDINGS = {
    "models.embeddings_of": "the model whose stored embeddings are this model's too, or "
    "NULL: set for a head-only training, whose backbone is its base model's. Its scores "
    "computed from those embeddings store scores.embedding NULL; a reader of its embedding "
    "takes the model's own non-NULL one, else follows embeddings_of (which may itself have "
    "one)",
    "scores.embedding": "little-endian float16 (numpy '<f2'): the model's pooled pre-logits "
    "embedding (timm forward_head(pre_logits=True)), as many values as the model's width; "
    "NULL when models.embeddings_of names the model whose row holds it",
}


def _migrate_add_shared_embeddings(db: sqlite_utils.Database) -> None:
    """A head-only model shares its base model's embeddings instead of copying them (issue 11).

    Rows written before keep their copies (identical to the base's); readers prefer them."""
    db.execute("ALTER TABLE models ADD COLUMN embeddings_of TEXT")
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)",
        list(NOTES_SHARED_EMBEDDINGS.items()),
    )


NOTES_AI_LABELS = {
    "ai_labels": "the second, independent review label 'is this image AI-generated' (issue "
    "13): append-only like decisions (triggers refuse UPDATE and DELETE); the row with the "
    "highest id of a hash is its current value: generated 1 (AI-generated), 0 (real), NULL "
    "(cleared). model_id and score are the AI detector's as shown to the reviewer",
}


def _migrate_add_ai_labels(db: sqlite_utils.Database) -> None:
    """The AI-generated label (issue 13): its own append-only log beside `decisions`, so the
    unsafe/safe decisions and everything that reads them stay exactly as they were."""
    db.execute(
        "CREATE TABLE ai_labels ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " hash TEXT NOT NULL CHECK (hash <> ''),"
        " generated INTEGER CHECK (generated IS NULL OR generated IN (0, 1)),"
        " reviewer TEXT NOT NULL,"
        " decided_at TEXT NOT NULL,"
        " model_id TEXT,"
        " score REAL,"
        " threshold REAL,"
        " source_path TEXT,"
        " source_path_bytes BLOB,"
        " undo_of INTEGER REFERENCES ai_labels(id))"
    )
    db.execute("CREATE INDEX idx_ai_labels_hash_id ON ai_labels (hash, id)")
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER ai_labels_no_{action.lower()} BEFORE {action} ON ai_labels "
            "BEGIN SELECT RAISE(ABORT, 'ai_labels are append-only'); END"
        )
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)", list(NOTES_AI_LABELS.items())
    )


NOTES_SCORE_DETAILS = {
    "scores.details": "JSON object or NULL: what a detector says beyond its score, e.g. the "
    "Stable Diffusion safety checker's {concepts: [17 margins], special: [3 margins], "
    "adjustment: 0.0|0.01, fired: [concept indices], special_fired: [indices]}",
}


def _migrate_add_score_details(db: sqlite_utils.Database) -> None:
    """Per-score details (issue 13): why a detector scored an image as it did."""
    db.execute("ALTER TABLE scores ADD COLUMN details TEXT")
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)",
        list(NOTES_SCORE_DETAILS.items()),
    )


NOTES_TEAM_AND_CARE = {
    "decisions.merged_from": "NULL for a decision made in this library; for one brought in by "
    "`nsfw-desk merge`, the library it came from (as that library's id, library_info). A "
    "decision is the same one in two libraries when hash, reviewer, decided_at, label and "
    "note are equal: a merge skips those it already holds",
    "assignments": "the work split of `nsfw-desk assign`: content hash → reviewer (two "
    "reviewers for the overlap kept for measuring agreement); a new assign of the same "
    "contents replaces their rows",
    "care_days": "per reviewer and local calendar day: images revealed unblurred and for how "
    "long, flagged items decided, time spent reviewing. origin '' is this library's own; a "
    "merge with --include-care-stats adds another library's under its id. Stays on this "
    "machine unless that option is given",
    "library_info": "key/value facts about this library file: library_id (random, made once)",
}


def _migrate_add_team_and_care(db: sqlite_utils.Database) -> None:
    """Merged decisions, work assignments, reviewer-care stats (issue 15)."""
    # ADD COLUMN rewrites no row, so the append-only triggers can stay.
    db.execute("ALTER TABLE decisions ADD COLUMN merged_from TEXT")
    db.execute("CREATE INDEX idx_decisions_identity ON decisions (hash, reviewer, decided_at)")
    db.execute(
        "CREATE TABLE assignments (hash TEXT NOT NULL CHECK (hash <> ''), "
        "reviewer TEXT NOT NULL CHECK (reviewer <> ''), assigned_at TEXT NOT NULL, "
        "PRIMARY KEY (hash, reviewer))"
    )
    db.execute("CREATE INDEX idx_assignments_reviewer ON assignments (reviewer)")
    db.execute(
        "CREATE TABLE care_days (reviewer TEXT NOT NULL, day TEXT NOT NULL, "
        "origin TEXT NOT NULL DEFAULT '', reveals INTEGER NOT NULL DEFAULT 0, "
        "reveal_ms INTEGER NOT NULL DEFAULT 0, flagged_reviewed INTEGER NOT NULL DEFAULT 0, "
        "review_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (reviewer, day, origin))"
    )
    db.execute("CREATE TABLE library_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "INSERT INTO library_info (key, value) VALUES ('library_id', ?)", (secrets.token_hex(8),)
    )
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)",
        list(NOTES_TEAM_AND_CARE.items()),
    )


def _migrate_add_scores_by_model_index(db: sqlite_utils.Database) -> None:
    """A covering index of one model's scores (issue 14): the desk reads a million of them
    in one index range, not a million random row reads (`Library.result_columns`)."""
    db.execute("CREATE INDEX idx_scores_model_hash_unsafe ON scores (model_id, hash, unsafe)")


NOTES_AI_LABELS_MERGED = {
    "ai_labels.merged_from": "as decisions.merged_from, for the AI-generated label: NULL for "
    "a row made in this library, else the library id `nsfw-desk merge` brought it from. A row "
    "is the same one in two libraries when hash, reviewer, decided_at and generated are equal",
}


def _migrate_add_ai_labels_merged_from(db: sqlite_utils.Database) -> None:
    """`merge` carries the AI-generated label too (issues 13 and 15): where a merged row came
    from, as for decisions, and the index a merge looks its rows up by."""
    # ADD COLUMN rewrites no row, so the append-only triggers can stay.
    db.execute("ALTER TABLE ai_labels ADD COLUMN merged_from TEXT")
    db.execute("CREATE INDEX idx_ai_labels_identity ON ai_labels (hash, reviewer, decided_at)")
    db.conn.executemany(
        "INSERT OR REPLACE INTO notes (topic, note) VALUES (?, ?)",
        list(NOTES_AI_LABELS_MERGED.items()),
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_to_1,
    _migrate_to_2,
    _migrate_to_3,
    _migrate_to_4,
    _migrate_add_pdq_and_hash_lists,
    _migrate_add_shared_embeddings,
    _migrate_add_ai_labels,
    _migrate_add_score_details,
    _migrate_add_team_and_care,
    _migrate_add_scores_by_model_index,
    _migrate_add_ai_labels_merged_from,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _schema_version(db: sqlite_utils.Database, known: int) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > known:
        raise LibraryError(
            f"This library has schema version {version}, newer than this nsfw-desk knows "
            f"({known}). Upgrade nsfw-desk, or use another library with --db."
        )
    return version


def migrate(db: sqlite_utils.Database, migrations=MIGRATIONS) -> int:
    """Bring `db` to the newest schema, one transaction per version; return that version.

    The version is read again inside each write transaction: two instances opening a new
    library at once take turns, and the second finds the work done.
    """
    version = _schema_version(db, len(migrations))
    while version < len(migrations):
        with write_transaction(db):
            version = _schema_version(db, len(migrations))
            if version < len(migrations):
                started = time.monotonic()
                log.debug("migrating the library schema from version %d", version)
                migrations[version](db)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
                log.debug(
                    "schema version %d in %.3f s (committing)", version, time.monotonic() - started
                )
    return len(migrations)


def stored_schema_version(path: Path) -> int:
    """The schema version of the database at `path`, read without writing to it.

    0 means it is no nsfw-desk library (an empty file, or another program's database):
    opening it as a Library would create the schema in it. LibraryError when it is no
    SQLite database at all.
    """
    try:
        conn = sqlite3.connect(
            Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise LibraryError(
            f"{display_path(path)} is not a usable nsfw-desk library: {exc}"
        ) from exc


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownFile:
    size: int
    mtime_ns: int
    hash: str | None


@dataclass(frozen=True)
class FileOutcome:
    """How one file ended: a score for a model (new or known) or an error with its reason."""

    path: Path
    hash: str | None = None
    score: float | None = None
    cached: bool = False
    error_kind: str | None = None
    error: str | None = None
    mtime_ns: int | None = None
    size: int | None = None  # bytes, as the file was last seen
    # Every detector's score of a multi-detector scan (model id -> score; None: no model).
    # `score` is the primary detector's, also in here.
    scores: dict[str, float] | None = None


@dataclass
class ScoredFile:
    """Everything one scored file adds to the library."""

    path: Path
    size: int
    mtime_ns: int
    hash: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    unsafe: float | None = None  # None: the hash already had a score for this model
    probabilities: np.ndarray | None = None
    embedding: np.ndarray | None = None
    thumbnail: bytes | None = None
    pdq: bytes | None = None  # 32 bytes; None: not decoded in this scan
    pdq_quality: int | None = None
    details: dict | None = None  # JSON-able facts of the score (the safety checker's margins)


@dataclass(frozen=True)
class HashList:
    name: str
    kind: str  # unsafe | safe | known
    created: str
    source: str | None
    entries: int


@dataclass(frozen=True)
class HashListEntry:
    list_name: str
    list_kind: str
    algorithm: str  # pdq | md5 | sha1 | sha256
    digest: bytes
    quality: int | None


class Library:
    """One library database (plus its thumbnail cache), used from one thread at a time.

    Every SQL statement of the app lives here and in core/review.py (a test enforces it):
    other modules call methods, so the schema has one owner.
    """

    def __init__(self, path: Path | str | None = None, thumbnails: Path | str | None = None):
        self.path = Path(path) if path else default_library_path()
        self.thumbnails_path = (
            Path(thumbnails) if thumbnails else default_thumbnails_path(self.path)
        )
        self.db = sqlite_utils.Database(_open_private_db(self.path))
        try:
            migrate(self.db)
        except sqlite3.DatabaseError as exc:
            self.db.close()  # refused: no handle left open on the file
            raise _unusable(self.path, exc) from exc
        except BaseException:
            self.db.close()
            raise
        self.thumbs = sqlite_utils.Database(_open_private_db(self.thumbnails_path))
        if "thumbnails" not in self.thumbs.table_names():
            with write_transaction(self.thumbs):  # IF NOT EXISTS: another instance may be first
                self.thumbs.execute(
                    "CREATE TABLE IF NOT EXISTS thumbnails (hash TEXT PRIMARY KEY, jpeg BLOB)"
                )

    def own_files(self) -> list[Path]:
        """The files SQLite keeps for this library and its thumbnails, journals included:
        nothing else in this process may open them (a scan passes over them, see
        images.discover), since closing any descriptor drops the process's POSIX locks."""
        return [
            Path(f"{db}{suffix}")
            for db in (self.path, self.thumbnails_path)
            for suffix in ("", "-wal", "-shm", "-journal")
        ]

    def close(self) -> None:
        """Close both databases, first moving the WAL's contents into the main files.

        After a clean close `library.sqlite` alone holds every commit, so a backup that
        copies only that file misses nothing.
        """
        for db, name in ((self.db, "library"), (self.thumbs, "thumbnails")):
            checkpoint(db.conn, name)
            db.close()

    def set_synchronous(self, mode: str) -> None:
        """SQLite's durability mode for this connection; the library runs FULL (see the module
        docstring). `nsfw-desk bench` uses this to price FULL against WAL's usual NORMAL."""
        if mode not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {mode!r}")
        self.db.execute(f"PRAGMA synchronous = {mode}")

    def wait_for_lock(self, timeout_ms: int) -> None:
        """How long this connection's writes wait for another's lock before LibraryBusy.

        The desk waits briefly and retries in the background, saying why meanwhile; a scan
        or the command line keeps the long default.
        """
        self.db.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # models and scans

    def register_model(
        self,
        model_id: str,
        *,
        source: str,
        revision: str | None,
        architecture: str,
        labels: list[str],
        unsafe_labels: list[str],
        display_name: str | None = None,
        embeddings_of: str | None = None,
    ) -> None:
        """Record a model the first time it is used. `embeddings_of`: the model whose stored
        embeddings are this one's (a head-only training's base), so none are copied."""
        name = display_name or model_display_name(model_id, source)
        with write_transaction(self.db):
            self.db.table("models").insert(
                {
                    "id": model_id,
                    "source": source,
                    "revision": revision,
                    "architecture": architecture,
                    "labels": json.dumps(labels),
                    "unsafe_labels": json.dumps(unsafe_labels),
                    "first_used": now_utc(),
                    "display_name": name,
                },
                ignore=True,
            )
            # A model registered before display names (or under another folder name) keeps
            # its first name: the weights decide the id, the first folder names it.
            self.db.execute(
                "UPDATE models SET display_name = ? WHERE id = ? AND display_name IS NULL",
                (name, model_id),
            )
        if embeddings_of is not None:
            self.share_embeddings(model_id, embeddings_of)

    def stored_unsafe_classes(self, model_id: str) -> tuple[list[str], list[str]] | None:
        """(labels, unsafe labels) the model was registered with: what its stored scores
        are the probability of. None for a model this library has not seen."""
        row = self.db.execute(
            "SELECT labels, unsafe_labels FROM models WHERE id = ?", [model_id]
        ).fetchone()
        if row is None:
            return None
        return json.loads(row[0] or "[]"), json.loads(row[1] or "[]")

    def share_embeddings(self, model_id: str, embeddings_of: str) -> bool:
        """Let registered `model_id` read `embeddings_of`'s stored embeddings as its own (its
        backbone is that model's). True when it does now; False when the model is not
        registered, already shares another model's, or the link would make a cycle."""
        if model_id == embeddings_of or model_id in self.embedding_sources(embeddings_of):
            return False
        with write_transaction(self.db):
            self.db.execute(
                "UPDATE models SET embeddings_of = ? WHERE id = ? AND embeddings_of IS NULL",
                (embeddings_of, model_id),
            )
            row = self.db.execute(
                "SELECT embeddings_of FROM models WHERE id = ?", (model_id,)
            ).fetchone()
        return row is not None and row[0] == embeddings_of

    def embedding_sources(self, model_id: str) -> list[str]:
        """`model_id`, then the model whose embeddings it shares, and so on: where its
        embedding of a content is looked up, in order (the first non-NULL one is it)."""
        chain = [model_id]
        while len(chain) <= 16:
            row = self.db.execute(
                "SELECT embeddings_of FROM models WHERE id = ?", (chain[-1],)
            ).fetchone()
            if row is None or row[0] is None or row[0] in chain:
                break
            chain.append(str(row[0]))
        return chain

    def model_names(self, model_ids: Iterable[str] | None = None) -> dict[str, str]:
        """model id → display name, for every registered model (or the given ones; an
        unregistered id gets the name its id alone gives)."""
        rows = self.db.execute("SELECT id, display_name, source FROM models")
        known = {mid: name or model_display_name(mid, source) for mid, name, source in rows}
        if model_ids is None:
            return known
        return {mid: known.get(mid) or model_display_name(mid) for mid in model_ids}

    def model_labels(self, model_id: str) -> tuple[list[str], list[str]] | None:
        """(labels, unsafe labels) a model was registered with; None if unknown or unreadable."""
        row = self.db.execute(
            "SELECT labels, unsafe_labels FROM models WHERE id = ?", (model_id,)
        ).fetchone()
        try:
            labels, unsafe = json.loads(row[0]), json.loads(row[1])
        except (TypeError, ValueError):  # no row, or not what register_model wrote
            return None
        if not isinstance(labels, list) or not isinstance(unsafe, list):
            return None
        return [str(name) for name in labels], [str(name) for name in unsafe]

    def begin_scan(self, root: Path, model_id: str | None) -> int:
        """A row in the scan history; `model_id` None: a listing without a model."""
        with write_transaction(self.db):
            table = self.db.table("scans").insert(
                {
                    "root": display_path(root),
                    "root_bytes": os.fsencode(root),
                    "model_id": model_id,
                    "started_at": now_utc(),
                    "status": "running",
                }
            )
        assert table.last_pk is not None
        return int(table.last_pk)

    def finish_scan(
        self, scan_id: int, status: str, *, files: int, scored: int, cached: int, errors: int
    ) -> None:
        with write_transaction(self.db):
            self.db.table("scans").update(
                scan_id,
                {
                    "finished_at": now_utc(),
                    "status": status,
                    "files": files,
                    "scored": scored,
                    "cached": cached,
                    "errors": errors,
                },
            )

    # the cache check

    def known_files(self, root: Path) -> dict[str, KnownFile]:
        """Stored stat facts of every file under `root`, keyed by `path_key` text."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT path_bytes, size, mtime_ns, hash FROM files "
            "WHERE path_bytes >= ? AND path_bytes < ?",
            (low, high),
        )
        return {key_text(raw): KnownFile(size, mtime, digest) for raw, size, mtime, digest in rows}

    def known_errors(self, root: Path) -> dict[str, tuple[int, int, str, str]]:
        """Remembered errors: `path_key` text → (size, mtime_ns, kind, message)."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT path_bytes, size, mtime_ns, kind, message FROM errors "
            "WHERE path_bytes >= ? AND path_bytes < ?",
            (low, high),
        )
        return {key_text(row[0]): tuple(row[1:]) for row in rows}

    def scored_hashes(self, model_id: str, hashes: Iterable[str]) -> set[str]:
        return set(self.scores_for(model_id, hashes))

    def scores_for(self, model_id: str, hashes: Iterable[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for chunk, marks in in_chunks(hashes):
            rows = self.db.execute(
                f"SELECT hash, unsafe FROM scores WHERE model_id = ? AND hash IN ({marks})",
                [model_id, *chunk],
            )
            found.update(rows)
        return found

    def score_details(self, content_hash: str, model_id: str) -> dict | None:
        """The details stored with a score (`ScoredFile.details`), or None."""
        row = self.db.execute(
            "SELECT details FROM scores WHERE hash = ? AND model_id = ?", (content_hash, model_id)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def embedding_blobs(
        self, model_id: str, hashes: Iterable[str] | None = None
    ) -> list[tuple[str, bytes]]:
        """(hash, float16 embedding blob) of `model_id`'s stored embeddings: of `hashes`, or
        of every content it has one of when None. For training and re-scoring from
        embeddings: one query per IN_CHUNK hashes, blobs as stored (no decoding into arrays
        here). A model sharing another's embeddings (models.embeddings_of) gets its own
        non-NULL ones, and the other model's for the rest."""
        sources = self.embedding_sources(model_id)
        wanted = None if hashes is None else list(dict.fromkeys(hashes))
        found = self._embedding_blobs_of(sources[0], wanted)
        if len(sources) == 1:
            return found
        have = {digest for digest, _ in found}
        for source in sources[1:]:
            rest = None if wanted is None else [h for h in wanted if h not in have]
            if rest == []:
                break
            more = [pair for pair in self._embedding_blobs_of(source, rest) if pair[0] not in have]
            found.extend(more)
            have.update(digest for digest, _ in more)
        return found

    def _embedding_blobs_of(
        self, model_id: str, hashes: list[str] | None
    ) -> list[tuple[str, bytes]]:
        if hashes is None:
            rows = self.db.execute(
                "SELECT hash, embedding FROM scores WHERE model_id = ? AND embedding IS NOT NULL",
                (model_id,),
            )
            return [(digest, blob) for digest, blob in rows]
        found: list[tuple[str, bytes]] = []
        for chunk, marks in in_chunks(hashes):
            rows = self.db.execute(
                f"SELECT hash, embedding FROM scores WHERE model_id = ? AND hash IN ({marks}) "
                "AND embedding IS NOT NULL",
                [model_id, *chunk],
            )
            found.extend((digest, blob) for digest, blob in rows)
        return found

    # writes

    def record_scored(
        self,
        items: list[ScoredFile],
        model_id: str | None,
        *,
        also: dict[str, list[ScoredFile]] | None = None,
    ) -> None:
        """One transaction for a batch: file rows, new scores, and clearing old errors.

        Items without a score (a listing without a model) add their file row and thumbnail.
        `also`: the new scores of other models (a multi-detector scan), in the same
        transaction; only their score fields are read (the file rows come from `items`)."""
        if not items:
            return
        now = now_utc()
        # Plain tuples and executemany, not sqlite-utils' insert_all: building its queries
        # held the interpreter lock for about a third of this call, on the thread that also
        # feeds a GPU (scripts in the commit message; ~100 µs a file on a 2-core EPYC).
        file_rows, score_rows, error_paths = [], [], []
        # A renamed, copied or touched file of known content is not decoded again: its
        # width, height and format are those stored for the content (under its old name,
        # which the scan forgets only at its end), or the detail pane would show none.
        seen = self._dimensions_of({i.hash for i in items if i.width is None})
        for item in items:
            raw = os.fsencode(item.path)
            error_paths.append(raw)
            width, height, fmt = (
                (item.width, item.height, item.format)
                if item.width is not None
                else seen.get(item.hash, (None, None, item.format))
            )
            file_rows.append(
                (
                    raw,
                    display_path(raw),
                    item.size,
                    item.mtime_ns,
                    item.hash,
                    width,
                    height,
                    fmt,
                    now,
                )
            )
        for scoring, scored in [(model_id, items), *(also or {}).items()]:
            for item in scored:
                if item.unsafe is None:
                    continue
                assert item.probabilities is not None and item.embedding is not None
                assert scoring is not None, "a score belongs to a model"
                score_rows.append(
                    (
                        item.hash,
                        scoring,
                        float(item.unsafe),
                        float32_blob(item.probabilities),
                        float16_blob(item.embedding),
                        now,
                        None if item.details is None else json.dumps(item.details),
                    )
                )
        perceptual = [(i.hash, i.pdq, i.pdq_quality) for i in items if i.pdq is not None]
        thumbs = [(i.hash, i.thumbnail) for i in items if i.thumbnail]
        if thumbs:  # thumbnails first: a crash in between leaves a harmless spare thumbnail
            with write_transaction(self.thumbs):
                self.thumbs.conn.executemany(
                    "INSERT OR REPLACE INTO thumbnails (hash, jpeg) VALUES (?, ?)", thumbs
                )
        with write_transaction(self.db):
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO files (path_bytes, path, size, mtime_ns, hash, width, "
                "height, format, scanned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                file_rows,
            )
            if score_rows:
                self.db.conn.executemany(
                    "INSERT OR REPLACE INTO scores (hash, model_id, unsafe, probabilities, "
                    "embedding, scored_at, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    score_rows,
                )
            if perceptual:
                self.db.conn.executemany(
                    "INSERT INTO content_hashes (hash, pdq, pdq_quality) VALUES (?, ?, ?) "
                    "ON CONFLICT (hash) DO UPDATE SET pdq = excluded.pdq, "
                    "pdq_quality = excluded.pdq_quality",
                    perceptual,
                )
            self._delete_paths("errors", error_paths)

    def record_model_scores(
        self, model_id: str, rows: Iterable[tuple[str, float, bytes, bytes | None]]
    ) -> int:
        """Scores of `model_id` without file rows, in one transaction: (hash, unsafe,
        probabilities blob '<f4', embedding blob '<f2' or None when the model shares another
        model's, see `share_embeddings`). For scores computed from stored embeddings (a
        head-only model) and embeddings training computed; returns the count."""
        now = now_utc()
        values = [(digest, model_id, u, p, e, now) for digest, u, p, e in rows]
        if not values:
            return 0
        with self._big_cache(), write_transaction(self.db):
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO scores "
                "(hash, model_id, unsafe, probabilities, embedding, scored_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
        return len(values)

    def record_shared_scores(
        self, model_id: str, hashes: list[str], unsafe: np.ndarray, probabilities: np.ndarray
    ) -> int:
        """Scores of `model_id`, which shares another model's embeddings (`share_embeddings`),
        in one transaction: content `hashes[i]` gets `unsafe[i]` and the row
        `probabilities[i]` (stored '<f4'), its embedding NULL. Returns the count.

        The rows go in as one JSON array of (hash, unsafe) and one blob of probabilities per
        statement (json_each): a third less time than binding 100,000 rows one by one, for
        the same rows in the same transaction."""
        probs = np.ascontiguousarray(probabilities, dtype="<f4")
        scores = np.asarray(unsafe, dtype=np.float64)
        if len(hashes) != len(scores) or len(hashes) != len(probs):
            raise ValueError("hashes, unsafe and probabilities differ in length")
        if not hashes:
            return 0
        size = probs.shape[1] * 4
        if sqlite3.sqlite_version_info < (3, 38) or not np.isfinite(scores).all():
            # no ->> operator (SQLite before 3.38), or a NaN that JSON cannot carry
            blob = probs.tobytes()
            return self.record_model_scores(
                model_id,
                (
                    (digest, score, blob[n * size : (n + 1) * size], None)
                    for n, (digest, score) in enumerate(zip(hashes, scores.tolist(), strict=True))
                ),
            )
        now = now_utc()
        with self._big_cache(), write_transaction(self.db):
            for start in range(0, len(hashes), SHARED_SCORES_CHUNK):
                end = start + SHARED_SCORES_CHUNK
                pairs = json.dumps(
                    list(zip(hashes[start:end], scores[start:end].tolist(), strict=True))
                )
                self.db.execute(
                    "INSERT OR REPLACE INTO scores "
                    "(hash, model_id, unsafe, probabilities, embedding, scored_at) "
                    f"SELECT value ->> 0, ?, value ->> 1, substr(?, key * {size} + 1, {size}), "
                    "NULL, ? FROM json_each(?)",
                    (model_id, probs[start:end].tobytes(), now, pairs),
                )
        return len(hashes)

    @contextlib.contextmanager
    def _big_cache(self) -> Iterator[None]:
        """A bigger page cache for one bulk transaction: 100,000 inserts into three B-trees
        otherwise re-read the same pages from the OS many times over."""
        (cache,) = self.db.execute("PRAGMA cache_size").fetchone()
        self.db.execute(f"PRAGMA cache_size = {-(256 << 10)}")  # 256 MiB at most
        try:
            yield
        finally:
            self.db.execute(f"PRAGMA cache_size = {int(cache)}")

    def record_errors(self, errors: list, scan_id: int | None) -> None:
        """Errors replace any file row of the same path (it no longer scores)."""
        if not errors:
            return
        now = now_utc()
        rows, paths = [], []
        for error in errors:
            raw = os.fsencode(error.path)
            paths.append(raw)
            rows.append(
                {
                    "path_bytes": raw,
                    "path": display_path(raw),
                    "kind": error.kind,
                    "message": error.message,
                    "size": error.size,
                    "mtime_ns": error.mtime_ns,
                    "scan_id": scan_id,
                    "at": now,
                }
            )
        with write_transaction(self.db):
            self.db.table("errors").insert_all(rows, replace=True)
            self._delete_paths("files", paths)

    def forget_missing(
        self, root: Path, present: set[str] | set[bytes], keep_under: Iterable[Path] = ()
    ) -> int:
        """Drop file and error rows under `root` that a full scan no longer found.

        `present` holds the found paths as `path_key` texts (or as bytes). Rows under
        `keep_under` (folders that could not be listed: a drive that is not mounted, a
        permission lost for a while) stay: their files are unknown, not gone. Scores,
        decisions and thumbnails stay: they belong to content, not paths.
        """
        found = {key_bytes(key) for key in present}
        low, high = _prefix_range(root)
        kept = tuple(_prefix_range(folder)[0] for folder in keep_under)
        gone = [
            row[0]
            for table in ("files", "errors")
            for row in self.db.execute(
                f"SELECT path_bytes FROM {table} WHERE path_bytes >= ? AND path_bytes < ?",
                (low, high),
            )
            if row[0] not in found and not row[0].startswith(kept)
        ]
        if gone:
            with write_transaction(self.db):
                self._delete_paths("files", gone)
                self._delete_paths("errors", gone)
        return len(gone)

    def _dimensions_of(self, hashes: set[str]) -> dict[str, tuple[int, int, str | None]]:
        """Stored width, height and format of each content among `hashes` that has them."""
        found: dict[str, tuple[int, int, str | None]] = {}
        for chunk, marks in in_chunks(sorted(hashes)):
            for digest, width, height, fmt in self.db.execute(
                "SELECT hash, width, height, format FROM files "
                f"WHERE hash IN ({marks}) AND width IS NOT NULL",
                chunk,
            ):
                found[digest] = (width, height, fmt)
        return found

    def _delete_paths(self, table: str, paths: list[bytes]) -> None:
        for chunk, marks in in_chunks(paths):
            self.db.execute(f"DELETE FROM {table} WHERE path_bytes IN ({marks})", chunk)

    # perceptual and file hashes (core/dupes.py, core/hashlists.py)

    def hashes_lacking_pdq(self, hashes: Iterable[str]) -> set[str]:
        """The contents among `hashes` without a PDQ hash (stored before PDQ, or never decoded)."""
        hashes = set(hashes)
        have: set[str] = set()
        for chunk, marks in in_chunks(hashes):
            rows = self.db.execute(
                f"SELECT hash FROM content_hashes WHERE pdq IS NOT NULL AND hash IN ({marks})",
                chunk,
            )
            have.update(row[0] for row in rows)
        return hashes - have

    def pdq_hashes(self, root: Path | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(content hashes, N×32 uint8 PDQ hashes, N qualities) of the contents of files
        stored under `root` (every file when None), in content hash order.

        A big folder's (or the library's) are read packed and matched in numpy: asking by
        `IN (files under root)` builds an index of the folder's hashes first, 10 s at 1M
        files even when none has a PDQ hash."""
        if root is not None:
            low, high = _prefix_range(root)
            if not self._has_more_files(low, high, ONE_PASS_ROWS):
                rows = self.db.execute(
                    "SELECT c.hash, c.pdq, c.pdq_quality FROM content_hashes c "
                    "WHERE c.pdq IS NOT NULL AND c.hash IN "
                    "(SELECT hash FROM files WHERE path_bytes >= ? AND path_bytes < ?) "
                    "ORDER BY c.hash",
                    (low, high),
                ).fetchall()
                return _pdq_rows(rows)
        digests, packed, qualities = self._packed_pdq()
        if root is not None and len(digests):
            folder = self._folder_hashes(low, high)
            inside = present_sorted(digests, folder[hash_order(folder)])
            digests, packed, qualities = digests[inside], packed[inside], qualities[inside]
        return [digest.decode("ascii") for digest in digests.tolist()], packed, qualities

    def _packed_pdq(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored PDQ hash: (content hashes "S64", N×32 uint8, N qualities int16)."""
        table = "content_hashes INDEXED BY sqlite_autoindex_content_hashes_1"
        where = "pdq IS NOT NULL"
        digests: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        qualities: list[np.ndarray] = []
        for count, chunk, params, packed in _packed_chunks(
            self.db.execute,
            table,
            "hash",
            where,
            (),
            "CAST(group_concat(hash, '') AS BLOB), CAST(group_concat(pdq, '') AS BLOB), "
            "CAST(group_concat(ifnull(pdq_quality, 0), ',') AS BLOB)",
        ):
            texts, blob, numbers = packed
            found = unpack_hashes(count, texts)
            try:
                quality: np.ndarray | None = unpack_numbers(numbers, np.int16)
            except ValueError:
                quality = None
            whole = quality is not None and len(quality) == count and len(blob) == count * 32
            if found is None or not whole:
                rows = self.db.execute(
                    f"SELECT hash, pdq, pdq_quality FROM {table} WHERE {chunk} ORDER BY hash",
                    params,
                ).fetchall()
                texts_, matrix, quality = _pdq_rows(rows)
                found = np.array(texts_, "S64")
            else:
                matrix = np.frombuffer(blob, np.uint8).reshape(count, 32)
            digests.append(found)
            hashes.append(matrix)
            qualities.append(np.asarray(quality, np.int16))
        if not digests:
            return np.zeros(0, "S64"), np.zeros((0, 32), np.uint8), np.zeros(0, np.int16)
        return (
            concat(digests, digests[0]),
            concat(hashes, hashes[0]),
            concat(qualities, qualities[0]),
        )

    def record_pdq_hashes(self, rows: Iterable[tuple[str, bytes, int]]) -> None:
        """(content hash, PDQ hash, quality) rows, as the scan records them (and the bench)."""
        with write_transaction(self.db):
            self.db.conn.executemany(
                "INSERT INTO content_hashes (hash, pdq, pdq_quality) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET pdq = excluded.pdq, "
                "pdq_quality = excluded.pdq_quality",
                rows,
            )

    def pdq_of(self, content_hash: str) -> tuple[bytes, int] | None:
        row = self.db.execute(
            "SELECT pdq, pdq_quality FROM content_hashes WHERE hash = ? AND pdq IS NOT NULL",
            (content_hash,),
        ).fetchone()
        return (bytes(row[0]), int(row[1])) if row else None

    def file_digests(self, hashes: Iterable[str] | None = None) -> dict[str, dict[str, bytes]]:
        """content hash → {"md5": …, "sha1": …, "sha256": …} where they were computed."""
        found: dict[str, dict[str, bytes]] = {}
        base = "SELECT hash, md5, sha1, sha256 FROM content_hashes WHERE sha256 IS NOT NULL"
        chunks = in_chunks(hashes) if hashes is not None else iter([([], "")])
        for chunk, marks in chunks:
            sql = base + (f" AND hash IN ({marks})" if hashes is not None else "")
            for digest, md5, sha1, sha256 in self.db.execute(sql, chunk):
                found[digest] = {"md5": md5, "sha1": sha1, "sha256": sha256}
        return found

    def record_file_digests(self, rows: list[tuple[str, bytes, bytes, bytes]]) -> None:
        """(content hash, md5, sha1, sha256) of contents read for a hash-list match."""
        with write_transaction(self.db):
            self.db.conn.executemany(
                "INSERT INTO content_hashes (hash, md5, sha1, sha256) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET md5 = excluded.md5, sha1 = excluded.sha1, "
                "sha256 = excluded.sha256",
                rows,
            )

    def contents_with_copies(self, root: Path | None = None) -> list[str]:
        """Content hashes stored at more than one path (under `root`): byte-identical copies."""
        sql = "SELECT hash FROM files WHERE hash IS NOT NULL"
        params: tuple = ()
        if root is not None:
            params = _prefix_range(root)
            if self._has_more_files(*params, ONE_PASS_ROWS):  # a big folder: in numpy (a
                hashes = self._folder_hashes(*params)  # GROUP BY sorts in a temp table)
                ordered = hashes[hash_order(hashes)]
                copies = ordered[1:][ordered[1:] == ordered[:-1]]
                unique = copies[np.r_[True, copies[1:] != copies[:-1]]] if len(copies) else copies
                return [digest.decode("ascii") for digest in unique.tolist()]
            sql += " AND path_bytes >= ? AND path_bytes < ?"
        rows = self.db.execute(sql + " GROUP BY hash HAVING COUNT(*) > 1 ORDER BY hash", params)
        return [row[0] for row in rows]

    def all_content_hashes(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT hash FROM files ORDER BY hash")]

    def hash_match_key(self) -> tuple:
        """What hash-list matches depend on, cheaply: the lists (a changed list is removed and
        imported again: a new id), and the contents with their perceptual and file hashes.
        The desk matches again only when this changes (gui/dupe_tasks.py)."""
        lists = tuple(
            tuple(row)
            for row in self.db.execute("SELECT id, name, kind FROM hash_lists ORDER BY id")
        )
        contents = self.db.execute(
            "SELECT COUNT(*), COUNT(pdq), COUNT(sha256), MAX(rowid) FROM content_hashes"
        ).fetchone()
        files = self.db.execute("SELECT COUNT(DISTINCT hash) FROM files").fetchone()
        return (lists, tuple(contents), tuple(files))

    # hash lists

    def add_hash_list(
        self,
        name: str,
        kind: str,
        entries: Iterable[tuple[str, bytes, int | None, int]],
        *,
        source: str | None = None,
    ) -> int:
        """Store a list and its (algorithm, digest, quality, line) entries in one transaction.

        LibraryError when a list of that name exists (remove it first)."""
        if kind not in ("unsafe", "safe", "known"):
            raise ValueError(f"a hash list is unsafe, safe or known, not {kind!r}")
        with self._big_cache(), write_transaction(self.db):
            if self.db.execute("SELECT 1 FROM hash_lists WHERE name = ?", (name,)).fetchone():
                raise LibraryError(
                    f"a hash list named {name!r} exists; remove it first "
                    f"(nsfw-desk hashlist remove {name}) or choose another name"
                )
            cursor = self.db.execute(
                "INSERT INTO hash_lists (name, kind, created, source) VALUES (?, ?, ?, ?)",
                (name, kind, now_utc(), source),
            )
            list_id = cursor.lastrowid
            count = 0
            rows = iter(entries)
            while batch := [(list_id, *entry) for entry in itertools.islice(rows, 10_000)]:
                self.db.conn.executemany(_INSERT_ENTRY, batch)
                count += len(batch)
        return count

    def hash_lists(self) -> list[HashList]:
        rows = self.db.execute(
            "SELECT l.name, l.kind, l.created, l.source, "
            "(SELECT COUNT(*) FROM hash_list_entries e WHERE e.list_id = l.id) "
            "FROM hash_lists l ORDER BY l.name"
        )
        return [HashList(*row) for row in rows]

    def remove_hash_list(self, name: str) -> bool:
        """Forget a list and its entries; False when there is none of that name."""
        with write_transaction(self.db):
            row = self.db.execute("SELECT id FROM hash_lists WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            self.db.execute("DELETE FROM hash_list_entries WHERE list_id = ?", (row[0],))
            self.db.execute("DELETE FROM hash_lists WHERE id = ?", (row[0],))
        return True

    def hash_list_entries(self, algorithm: str | None = None) -> Iterator[HashListEntry]:
        sql = (
            "SELECT l.name, l.kind, e.algorithm, e.digest, e.quality FROM hash_list_entries e "
            "JOIN hash_lists l ON l.id = e.list_id"
        )
        rows = (
            self.db.execute(sql + " WHERE e.algorithm = ?", (algorithm,))
            if algorithm
            else self.db.execute(sql)
        )
        for name, kind, algo, digest, quality in rows:
            yield HashListEntry(name, kind, algo, bytes(digest), quality)

    def hash_list_pdq_entries(
        self, stop: Callable[[], bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """Every list entry that may be a PDQ hash (algorithm pdq or hex256) as arrays, for
        matching a million-line list without a Python object per entry: (N×32 uint8 digests,
        N qualities with -1 for none, N indices into the returned [(name, kind, algorithm)]).
        `stop` is asked between batches of rows; when it says so, the answer is partial."""
        lists = self.db.execute(
            "SELECT l.id, l.name, l.kind, e.algorithm FROM hash_lists l JOIN "
            "(SELECT DISTINCT list_id, algorithm FROM hash_list_entries "
            "WHERE algorithm IN ('pdq', 'hex256')) e ON e.list_id = l.id ORDER BY l.id"
        ).fetchall()
        which = {(row[0], row[3]): i for i, row in enumerate(lists)}
        digests, qualities, owners = bytearray(), [], []
        rows = self.db.execute(
            "SELECT list_id, algorithm, digest, quality FROM hash_list_entries "
            "WHERE algorithm IN ('pdq', 'hex256')"
        )
        while (stop is None or not stop()) and (batch := rows.fetchmany(50_000)):
            for list_id, algorithm, digest, quality in batch:
                digests += digest
                qualities.append(-1 if quality is None else quality)
                owners.append(which[(list_id, algorithm)])
        packed = np.frombuffer(bytes(digests), dtype=np.uint8).reshape(-1, 32)
        return (
            packed,
            np.array(qualities, dtype=np.int16),
            np.array(owners, dtype=np.int32),
            [(name, kind, algorithm) for _, name, kind, algorithm in lists],
        )

    def hash_list_has_file_entries(self) -> bool:
        """Whether any list holds an entry that may be a file digest (MD5, SHA-1, SHA-256)."""
        row = self.db.execute(
            "SELECT 1 FROM hash_list_entries WHERE algorithm IN ('md5', 'sha1', 'hex256') LIMIT 1"
        ).fetchone()
        return row is not None

    def hash_list_file_entries(self) -> Iterator[tuple[str, str, str, bytes]]:
        """(list name, kind, algorithm, digest) of the entries that may be a file's MD5,
        SHA-1 or SHA-256 (hex256 included), streamed."""
        names = {
            row[0]: (row[1], row[2])
            for row in self.db.execute("SELECT id, name, kind FROM hash_lists")
        }
        rows = self.db.execute(
            "SELECT list_id, algorithm, digest FROM hash_list_entries "
            "WHERE algorithm IN ('md5', 'sha1', 'hex256')"
        )
        for list_id, algorithm, digest in rows:
            name, kind = names[list_id]
            yield name, kind, algorithm, digest

    # reads for the GUI, the CLI and export

    def results(self, root: Path, model_id: str) -> Iterator[FileOutcome]:
        """Every file under `root` with its score for `model_id`, then every error."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT f.path_bytes, f.hash, s.unsafe, f.mtime_ns, f.size FROM files f "
            "LEFT JOIN scores s ON s.hash = f.hash AND s.model_id = ? "
            "WHERE f.path_bytes >= ? AND f.path_bytes < ? ORDER BY f.path_bytes",
            (model_id, low, high),
        )
        for raw, digest, unsafe, mtime_ns, size in rows:
            yield FileOutcome(_path(raw), digest, unsafe, True, mtime_ns=mtime_ns, size=size)
        rows = self.db.execute(
            "SELECT path_bytes, kind, message, mtime_ns, size FROM errors "
            "WHERE path_bytes >= ? AND path_bytes < ? ORDER BY path_bytes",
            (low, high),
        )
        for raw, kind, message, mtime_ns, size in rows:
            yield FileOutcome(_path(raw), None, None, True, kind, message, mtime_ns, size)

    def result_columns(self, root: Path, model_id: str | None) -> ResultColumns:
        """What `results` yields, as numpy columns (core/result_columns.py): no object per
        row kept, so the desk lists a million files in seconds.

        The files come packed by SQLite a chunk at a time (`_packed_files`). For a big
        folder the model's scores are read in one pass over its index on a second
        connection meanwhile, and matched by hash in numpy: a join looks each file's score
        up in the index instead, a million random reads (8 s at 1M)."""
        low, high = _prefix_range(root)
        big = model_id is not None and self._has_more_files(low, high, ONE_PASS_ROWS)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-read") as pool:
            beside = (
                pool.submit(self._model_scores_beside, model_id)
                if big and model_id is not None
                else None
            )
            files = self._packed_files(low, high)  # in parts: one copy when joined
            errors = self.db.execute(
                "SELECT path_bytes, NULL, mtime_ns, size, kind, message FROM errors "
                "WHERE path_bytes >= ? AND path_bytes < ? ORDER BY path_bytes",
                (low, high),
            ).fetchall()
            start = sum(len(part.hashes) for part in files)
            texts = {
                start + i: error_text(row[4], row[5]) or "error" for i, row in enumerate(errors)
            }
            error_rows = FileArrays.from_rows(
                [row[0] for row in errors],
                [None] * len(errors),
                [row[2] for row in errors],
                [row[3] for row in errors],
            )
            rows = FileArrays.join([*files, error_rows])
            scores: np.ndarray | None = None
            if model_id is not None and not big:
                found = self.scores_for(model_id, hash_texts(rows.hashes[:start]))
                scores = align(found, rows.hashes)
                scores[start:] = np.nan  # errors have no score
            columns = ResultColumns.build(
                rows, scores, texts, sorted_runs=((0, start), (start, start + len(errors)))
            )
            if beside is not None and model_id is not None:
                keys, values = beside.result() or self.model_scores_in_hash_order(model_id)
                columns.scores = align_sorted(
                    keys, values, columns.hashes, columns.hash_order, columns.hashes_sorted
                )
        return columns

    def _has_more_files(self, low: bytes, high: bytes, count: int) -> bool:
        """Whether at least `count` files lie in [low, high) (stops counting there)."""
        row = self.db.execute(
            "SELECT 1 FROM files WHERE path_bytes >= ? AND path_bytes < ? "
            "ORDER BY path_bytes LIMIT 1 OFFSET ?",
            (low, high, count - 1),
        ).fetchone()
        return row is not None

    def _packed_files(self, low: bytes, high: bytes) -> list[FileArrays]:
        """The files in [low, high) in path order, in parts, packed by SQLite into a few strings
        (`_packed_chunks`): SQLite builds them without holding the GIL and numpy parses
        them in C, where fetching a million rows made five million Python objects (2.3 s)
        and unzipping them more. A chunk that does not unpack (a NULL or a value of another
        type somewhere) is read row by row."""
        parts = []
        for count, where, params, packed in _packed_chunks(
            self.db.execute,
            "files INDEXED BY sqlite_autoindex_files_1",
            "path_bytes",
            "1",
            (),
            "CAST(group_concat(path_bytes, '') AS BLOB), "
            "CAST(group_concat(length(CAST(path_bytes AS BLOB)), ',') AS BLOB), "
            "CAST(group_concat(hash, '') AS BLOB), "
            "CAST(group_concat(ifnull(mtime_ns, 0), ',') AS BLOB), "
            "CAST(group_concat(ifnull(size, -1), ',') AS BLOB)",
            (low, high),
        ):
            arrays = FileArrays.unpack(count, *packed)
            if arrays is None:
                log.debug("files of %s did not unpack: read row by row", params)
                rows = self.db.execute(
                    "SELECT path_bytes, hash, mtime_ns, size FROM files "
                    f"WHERE {where} ORDER BY path_bytes",
                    params,
                ).fetchall()
                arrays = FileArrays.from_rows(*(list(column) for column in zip(*rows, strict=True)))
            parts.append(arrays)
        return parts

    def _model_scores_beside(self, model_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """`model_scores_in_hash_order` on a read-only connection of its own, so that it
        runs while this connection reads the files (SQLite lets go of the GIL while it
        steps: the two reads share the cores). None when that connection cannot read."""
        reader = ReadOnlyConnections(self.path)
        try:
            return self.model_scores_in_hash_order(model_id, reader.connection().execute)
        except sqlite3.Error as exc:
            log.debug("scores not read beside the files: %s", exc)
            return None
        finally:
            reader.close()

    def model_scores_in_hash_order(
        self, model_id: str, execute: Callable[..., sqlite3.Cursor] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every score of `model_id` as (hashes "S64", scores float64) in hash order: one
        pass over its covering index, which is in that order already, packed by SQLite as
        `_packed_files` does (`%!.17g`: the text gives back the very double). A join would
        look each file's score up instead (a million random reads: 8 s at 1M)."""
        execute = execute or self.db.execute
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        index = "scores INDEXED BY idx_scores_model_hash_unsafe"
        for count, where, params, packed in _packed_chunks(
            execute,
            index,
            "hash",
            "model_id = ? AND unsafe IS NOT NULL",
            (model_id,),
            "CAST(group_concat(hash, '') AS BLOB), "
            "CAST(group_concat(printf('%!.17g', unsafe), ',') AS BLOB)",
        ):
            unpacked = unpack_scores(count, *packed)
            if unpacked is None:
                log.debug("scores of %s did not unpack: read row by row", params)
                rows = execute(
                    f"SELECT hash, unsafe FROM {index} WHERE {where} ORDER BY hash", params
                )
                pairs = rows.fetchall()
                unpacked = (
                    np.array([pair[0] for pair in pairs], "S64"),
                    np.array([pair[1] for pair in pairs], np.float64),
                )
            parts.append(unpacked)
        if not parts:
            return np.zeros(0, "S64"), np.zeros(0, np.float64)
        return (
            concat([part[0] for part in parts], parts[0][0]),
            concat([part[1] for part in parts], parts[0][1]),
        )

    def insert_scored_listing(
        self,
        model_id: str,
        rows: Iterable[tuple[bytes, str, float, int, int]],
        *,
        probabilities: bool = True,
    ) -> int:
        """Bulk-add files with their scores for a registered model, in one transaction:
        (path bytes, content hash, unsafe score, mtime_ns, size) per file, no thumbnail,
        no embedding. For generated libraries (core/synthetic_library.py) and imports
        that bring only scores; returns how many rows were written."""
        now = now_utc()
        count = 0

        def files() -> Iterator[tuple]:
            nonlocal count
            for raw, digest, _, mtime_ns, size in batch:
                count += 1
                yield (raw, display_path(raw), size, mtime_ns, digest, now)

        def scores() -> Iterator[tuple]:
            for _, digest, unsafe, _, _ in batch:
                probs = float32_blob(np.array([1.0 - unsafe, unsafe])) if probabilities else None
                yield (digest, model_id, float(unsafe), probs, now)

        with self._big_cache(), write_transaction(self.db):
            iterator = iter(rows)
            while batch := list(itertools.islice(iterator, 50_000)):
                self.db.conn.executemany(
                    "INSERT OR REPLACE INTO files (path_bytes, path, size, mtime_ns, hash, "
                    "scanned_at) VALUES (?, ?, ?, ?, ?, ?)",
                    files(),
                )
                self.db.conn.executemany(
                    "INSERT OR REPLACE INTO scores (hash, model_id, unsafe, probabilities, "
                    "scored_at) VALUES (?, ?, ?, ?, ?)",
                    scores(),
                )
        return count

    def models_scored_under(self, root: Path) -> list[dict]:
        """The models with scores for files under `root`: id, display name, source, when first
        used and how many of the folder's files each has scored; most files first.

        The desk's model switcher lists these; switching reads `results(root, id)`. A big
        folder's counts are matched in numpy (`_scored_counts`): the join looks each
        file's hash up per model, a million random reads (8.6 s at 1M)."""
        low, high = _prefix_range(root)
        if self._has_more_files(low, high, ONE_PASS_ROWS):
            counts = self._scored_counts(low, high)
            facts = {
                row[0]: row[1:]
                for row in self.db.execute(
                    "SELECT id, display_name, source, revision, first_used FROM models"
                )
            }
            found = [(m, n, *facts.get(m, (None, None, None, None))) for m, n in counts.items()]
            # As the join's ORDER BY: most files first, then first used (NULL first), id.
            found.sort(key=lambda r: (-r[1], r[5] is not None, r[5] or "", r[0]))
        else:
            found = self.db.execute(
                "SELECT s.model_id, COUNT(*), m.display_name, m.source, m.revision, "
                "m.first_used FROM files f JOIN scores s ON s.hash = f.hash "
                "LEFT JOIN models m ON m.id = s.model_id "
                "WHERE f.path_bytes >= ? AND f.path_bytes < ? "
                "GROUP BY s.model_id ORDER BY COUNT(*) DESC, m.first_used, s.model_id",
                (low, high),
            ).fetchall()
        return [
            {
                "id": model_id,
                "scored": count,
                "name": name or model_display_name(model_id, source),
                "source": source,
                "revision": revision,
                "first_used": first_used,
            }
            for model_id, count, name, source, revision, first_used in found
        ]

    def _scored_counts(self, low: bytes, high: bytes) -> dict[str, int]:
        """Per model with scores, how many files in [low, high) it has scored (none: left
        out): the files' hashes and each model's read once, packed, and matched in numpy."""
        hashes = self._folder_hashes(low, high)
        order = hash_order(hashes)
        hashes_sorted = hashes[order]
        counts = {}
        models = self.db.execute(
            "SELECT DISTINCT model_id FROM scores INDEXED BY idx_scores_model_id_unsafe"
        ).fetchall()
        for (model_id,) in models:
            keys = self._packed_hashes(
                "scores INDEXED BY idx_scores_model_hash_unsafe",
                "hash",
                "model_id = ?",
                (model_id,),
            )
            scored = count_present(keys, hashes, order, hashes_sorted)
            if scored:
                counts[model_id] = scored
        return counts

    def _folder_hashes(self, low: bytes, high: bytes) -> np.ndarray:
        """The content hashes ("S64") of the files in [low, high), in path order."""
        return self._packed_hashes(
            "files INDEXED BY sqlite_autoindex_files_1",
            "path_bytes",
            "hash IS NOT NULL",
            (),
            (low, high),
        )

    def _packed_hashes(
        self,
        table: str,
        key: str,
        where: str,
        params: tuple,
        key_range: tuple[bytes, bytes] | None = None,
    ) -> np.ndarray:
        """The `hash` column of `table`'s rows matching `where` ("S64", in `key` order),
        packed (`_packed_chunks`); row by row for a chunk that does not unpack."""
        parts = []
        for count, chunk, chunk_params, packed in _packed_chunks(
            self.db.execute,
            table,
            key,
            where,
            params,
            "CAST(group_concat(hash, '') AS BLOB)",
            key_range,
        ):
            digests = unpack_hashes(count, packed[0])
            if digests is None:
                rows = self.db.execute(
                    f"SELECT hash FROM {table} WHERE {chunk} ORDER BY {key}", chunk_params
                )
                digests = np.array([row[0] for row in rows], "S64")
            parts.append(digests)
        return concat(parts, np.zeros(0, "S64"))

    def last_model_for(self, root: Path) -> str | None:
        """The model of the latest scan of `root` (else of any folder), so that stored
        results can be shown before a model is loaded. Listings without a model are not
        a model's scan and are passed over."""
        row = (
            self.db.execute(
                "SELECT model_id FROM scans WHERE root_bytes = ? AND model_id IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                (os.fsencode(root),),
            ).fetchone()
            or self.db.execute(
                "SELECT model_id FROM scans WHERE model_id IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
        )
        return row[0] if row else None

    def file_facts(self, path: Path) -> dict | None:
        row = self.db.execute(
            "SELECT size, mtime_ns, hash, width, height, format FROM files WHERE path_bytes = ?",
            (os.fsencode(path),),
        ).fetchone()
        if row is None:
            return None
        return dict(
            zip(("size", "mtime_ns", "hash", "width", "height", "format"), row, strict=True)
        )

    def models_by_source(self) -> list[dict]:
        """Every registered model: id, source, revision, labels, unsafe labels, first used;
        newest first. The desk finds a configured detector's model id among these."""
        rows = self.db.execute(
            "SELECT id, source, revision, labels, unsafe_labels, display_name FROM models "
            "ORDER BY first_used DESC, id"
        )
        found = []
        for model_id, source, revision, labels, unsafe, name in rows:
            try:
                labels_list, unsafe_list = json.loads(labels), json.loads(unsafe)
            except (TypeError, ValueError):
                labels_list, unsafe_list = [], []
            found.append(
                {
                    "id": model_id,
                    "source": source,
                    "revision": revision,
                    "labels": [str(x) for x in labels_list or []],
                    "unsafe_labels": [str(x) for x in unsafe_list or []],
                    "name": name or model_display_name(model_id, source),
                }
            )
        return found

    def scores_by_model(self, content_hash: str) -> dict[str, float]:
        rows = self.db.execute(
            "SELECT model_id, unsafe FROM scores WHERE hash = ? ORDER BY scored_at",
            (content_hash,),
        )
        return dict(rows)

    def scores_of(self, hashes: Iterable[str]) -> dict[str, dict[str, float]]:
        """content hash -> {model id: score} of every model that scored it (exports carry
        every detector's score); one query per IN_CHUNK hashes."""
        found: dict[str, dict[str, float]] = {}
        for chunk, marks in in_chunks(hashes):
            rows = self.db.execute(
                f"SELECT hash, model_id, unsafe FROM scores WHERE hash IN ({marks}) "
                "ORDER BY hash, model_id",
                chunk,
            )
            for digest, model_id, unsafe in rows:
                found.setdefault(digest, {})[model_id] = unsafe
        return found

    def embedding(self, content_hash: str, model_id: str) -> np.ndarray | None:
        """`model_id`'s embedding of a content (its own, or that of the model whose
        embeddings it shares); None when there is none."""
        for source in self.embedding_sources(model_id):
            row = self.db.execute(
                "SELECT embedding FROM scores WHERE hash = ? AND model_id = ? "
                "AND embedding IS NOT NULL",
                (content_hash, source),
            ).fetchone()
            if row is not None:
                return blob_to_array(row[0], "<f2")
        return None

    def embeddings(self, model_id: str) -> tuple[list[str], np.ndarray]:
        """(content hashes in order, N×D float16 embeddings) of every content `model_id` has
        an embedding of (shared ones included, as `embedding_blobs`)."""
        pairs = sorted(self.embedding_blobs(model_id))
        if not pairs:
            return [], np.zeros((0, 0), dtype=np.float16)
        matrix = np.frombuffer(b"".join(blob for _, blob in pairs), dtype="<f2")
        return [digest for digest, _ in pairs], matrix.reshape(len(pairs), -1)

    def probabilities(self, content_hash: str, model_id: str) -> np.ndarray | None:
        row = self.db.execute(
            "SELECT probabilities FROM scores WHERE hash = ? AND model_id = ?",
            (content_hash, model_id),
        ).fetchone()
        return blob_to_array(row[0], "<f4") if row else None

    def thumbnail(self, content_hash: str) -> bytes | None:
        row = self.thumbs.execute(
            "SELECT jpeg FROM thumbnails WHERE hash = ?", (content_hash,)
        ).fetchone()
        return row[0] if row else None

    def scans(self) -> list[dict]:
        return list(self.db.table("scans").rows_where(order_by="id"))

    def notes(self) -> dict[str, str]:
        """What the library's columns hold (the `notes` table), by topic."""
        return dict(self.db.execute("SELECT topic, note FROM notes ORDER BY topic"))

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def has_files_under(self, root: Path) -> bool:
        """Whether any stored file with content lies under `root` (a --folder that selects
        nothing is said, not answered with an empty result)."""
        low, high = _prefix_range(root)
        return (
            self.db.execute(
                "SELECT 1 FROM files WHERE path_bytes >= ? AND path_bytes < ? "
                "AND hash IS NOT NULL LIMIT 1",
                (low, high),
            ).fetchone()
            is not None
        )

    def hashes_under(self, root: Path) -> set[str]:
        """Content hashes of the files stored under `root` (export's folder filter)."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT DISTINCT hash FROM files "
            "WHERE path_bytes >= ? AND path_bytes < ? AND hash IS NOT NULL",
            (low, high),
        )
        return {row[0] for row in rows}

    def files_for_hashes(
        self, hashes: Iterable[str]
    ) -> dict[str, list[tuple[Path, str, str | None]]]:
        """Every stored file of each content as (path, path text for people, format).

        In path byte order; the text is not unique (see `display_path`), the path is.
        """
        hashes = list(dict.fromkeys(hashes))
        found: dict[str, list[tuple[Path, str, str | None]]] = {}
        for chunk, marks in in_chunks(hashes):
            rows = self.db.execute(
                f"SELECT hash, path_bytes, path, format FROM files WHERE hash IN ({marks}) "
                "ORDER BY path_bytes",
                chunk,
            )
            for digest, raw, text, fmt in rows:
                found.setdefault(digest, []).append((_path(raw), text, fmt))
        return found

    # results scored elsewhere (core/cluster_import.py)

    def import_results(
        self,
        files: list[ScoredFile],
        scores: list[tuple[str, str, float, bytes, bytes | None]],
        errors: list,
    ) -> dict[str, int]:
        """Rows scored elsewhere (`nsfw-desk import` of a cluster-scan), in one transaction,
        changing nothing that is already so: a file row stored with the same size, mtime and
        hash stays as it is (its scanned_at too); a stored score of a content by a model is
        kept; a PDQ hash and a thumbnail only fill a gap; an error row is replaced only when
        it differs. Importing the same rows twice therefore changes nothing.

        `scores`: (hash, model id, unsafe, probabilities '<f4' blob, embedding '<f2' blob);
        `errors`: FileError-like. Returns how many rows of each kind changed."""
        now = now_utc()
        changed = {"files": 0, "scores": 0, "errors": 0, "pdq": 0, "thumbnails": 0}
        thumbs = [(i.hash, i.thumbnail) for i in files if i.thumbnail]
        if thumbs:  # first, as record_scored: a crash between leaves a spare thumbnail
            with write_transaction(self.thumbs):
                before = self.thumbs.conn.total_changes
                self.thumbs.conn.executemany(
                    "INSERT OR IGNORE INTO thumbnails (hash, jpeg) VALUES (?, ?)", thumbs
                )
                changed["thumbnails"] = self.thumbs.conn.total_changes - before
        conn = self.db.conn
        with write_transaction(self.db):
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO files (path_bytes, path, size, mtime_ns, hash, width, height, "
                "format, scanned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (path_bytes) DO UPDATE SET size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, hash = excluded.hash, width = excluded.width, "
                "height = excluded.height, format = excluded.format, "
                "scanned_at = excluded.scanned_at "
                "WHERE files.size IS NOT excluded.size OR files.mtime_ns IS NOT "
                "excluded.mtime_ns OR files.hash IS NOT excluded.hash",
                [
                    (
                        os.fsencode(i.path),
                        display_path(i.path),
                        i.size,
                        i.mtime_ns,
                        i.hash,
                        i.width,
                        i.height,
                        i.format,
                        now,
                    )
                    for i in files
                ],
            )
            changed["files"] = conn.total_changes - before
            self._delete_paths("errors", [os.fsencode(i.path) for i in files])
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO scores "
                "(hash, model_id, unsafe, probabilities, embedding, scored_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in scores],
            )
            changed["scores"] = conn.total_changes - before
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO content_hashes (hash, pdq, pdq_quality) VALUES (?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET pdq = excluded.pdq, "
                "pdq_quality = excluded.pdq_quality WHERE content_hashes.pdq IS NULL",
                [(i.hash, i.pdq, i.pdq_quality) for i in files if i.pdq is not None],
            )
            changed["pdq"] = conn.total_changes - before
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO errors (path_bytes, path, kind, message, size, mtime_ns, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path_bytes) DO UPDATE SET "
                "kind = excluded.kind, message = excluded.message, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, at = excluded.at "
                "WHERE errors.kind IS NOT excluded.kind OR errors.message IS NOT "
                "excluded.message OR errors.size IS NOT excluded.size "
                "OR errors.mtime_ns IS NOT excluded.mtime_ns",
                [
                    (
                        os.fsencode(e.path),
                        display_path(e.path),
                        e.kind,
                        e.message,
                        e.size,
                        e.mtime_ns,
                        now,
                    )
                    for e in errors
                ],
            )
            changed["errors"] = conn.total_changes - before
            self._delete_paths("files", [os.fsencode(e.path) for e in errors])
        return changed

    def record_import(self, root: Path, model_id: str, *, files: int, errors: int) -> bool:
        """A scan-history row saying `root` holds `model_id`'s imported scores, so the desk
        shows them when the folder opens (see `last_model_for`); only when the history has
        no row for that folder and model yet. True when one was added."""
        root_bytes = os.fsencode(root)
        with write_transaction(self.db):
            row = self.db.execute(
                "SELECT 1 FROM scans WHERE root_bytes = ? AND model_id = ? LIMIT 1",
                (root_bytes, model_id),
            ).fetchone()
            if row is not None:
                return False
            now = now_utc()
            self.db.table("scans").insert(
                {
                    "root": display_path(root),
                    "root_bytes": root_bytes,
                    "model_id": model_id,
                    "started_at": now,
                    "finished_at": now,
                    "status": "imported",
                    "files": files,
                    "scored": 0,
                    "cached": files - errors,
                    "errors": errors,
                }
            )
        return True

    # team work (core/team.py) and reviewer care (core/care.py)

    def library_id(self) -> str:
        """This library file's random id, made once (a copy of the file shares it)."""
        row = self.db.execute("SELECT value FROM library_info WHERE key = 'library_id'").fetchone()
        return str(row[0])

    def hashes_with_files(self, hashes: Iterable[str]) -> set[str]:
        """Those of `hashes` that some stored file holds: content this library can show."""
        found: set[str] = set()
        for chunk, marks in in_chunks(dict.fromkeys(hashes)):
            rows = self.db.execute(
                f"SELECT DISTINCT hash FROM files WHERE hash IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    def replace_assignments(self, scope: Iterable[str], rows: Iterable[tuple[str, str]]) -> int:
        """Assign contents anew: every row of a hash in `scope` goes, then (hash, reviewer)
        `rows` come in; one transaction. Returns the rows written."""
        rows = list(dict.fromkeys(rows))
        at = now_utc()
        with write_transaction(self.db):
            for chunk, marks in in_chunks(dict.fromkeys(scope)):
                self.db.execute(f"DELETE FROM assignments WHERE hash IN ({marks})", chunk)
            self.db.conn.executemany(
                "INSERT INTO assignments (hash, reviewer, assigned_at) VALUES (?, ?, ?)",
                [(h, r, at) for h, r in rows],
            )
        return len(rows)

    def assignments(self, reviewer: str | None = None) -> list[tuple[str, str]]:
        """(hash, reviewer) of the work split, by hash; only `reviewer`'s when given."""
        if reviewer is None:
            rows = self.db.execute("SELECT hash, reviewer FROM assignments ORDER BY hash, reviewer")
        else:
            rows = self.db.execute(
                "SELECT hash, reviewer FROM assignments WHERE reviewer = ? ORDER BY hash",
                (reviewer,),
            )
        return [(h, r) for h, r in rows]

    def add_care(
        self,
        reviewer: str,
        day: str,
        *,
        reveals: int = 0,
        reveal_ms: int = 0,
        flagged_reviewed: int = 0,
        review_ms: int = 0,
    ) -> None:
        """Add to this library's own care counters of (reviewer, day); one transaction."""
        with write_transaction(self.db):
            self.db.execute(
                "INSERT INTO care_days (reviewer, day, origin, reveals, reveal_ms, "
                "flagged_reviewed, review_ms) VALUES (?, ?, '', ?, ?, ?, ?) "
                "ON CONFLICT (reviewer, day, origin) DO UPDATE SET "
                "reveals = reveals + excluded.reveals, reveal_ms = reveal_ms + excluded.reveal_ms, "
                "flagged_reviewed = flagged_reviewed + excluded.flagged_reviewed, "
                "review_ms = review_ms + excluded.review_ms",
                (
                    reviewer,
                    day,
                    int(reveals),
                    int(reveal_ms),
                    int(flagged_reviewed),
                    int(review_ms),
                ),
            )

    def care_rows(self) -> list[tuple[str, str, str, int, int, int, int]]:
        """Every care row as stored: (reviewer, day, origin, reveals, reveal_ms,
        flagged_reviewed, review_ms)."""
        rows = self.db.execute(
            "SELECT reviewer, day, origin, reveals, reveal_ms, flagged_reviewed, review_ms "
            "FROM care_days ORDER BY reviewer, day, origin"
        )
        return [tuple(row) for row in rows]

    def put_care_rows(self, rows: Iterable[tuple[str, str, str, int, int, int, int]]) -> int:
        """Another library's care rows under their origin (a second merge replaces them)."""
        rows = list(rows)
        with write_transaction(self.db):
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO care_days (reviewer, day, origin, reveals, reveal_ms, "
                "flagged_reviewed, review_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def care_totals(self, reviewer: str | None = None, day: str | None = None) -> list[tuple]:
        """(reviewer, day, reveals, reveal_ms, flagged_reviewed, review_ms) summed over
        origins, by reviewer and day; filtered by `reviewer` and `day` when given."""
        where, params = [], []
        for column, value in (("reviewer", reviewer), ("day", day)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = self.db.execute(
            "SELECT reviewer, day, SUM(reveals), SUM(reveal_ms), SUM(flagged_reviewed), "
            "SUM(review_ms) FROM care_days"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY reviewer, day ORDER BY reviewer, day",
            params,
        )
        return [tuple(row) for row in rows]


_INSERT_ENTRY = (
    "INSERT INTO hash_list_entries (list_id, algorithm, digest, quality, line) "
    "VALUES (?, ?, ?, ?, ?)"
)


def _pdq_rows(rows: list[tuple]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(hash, pdq, quality) rows as `Library.pdq_hashes` gives them."""
    packed = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.uint8)
    qualities = np.array([row[2] or 0 for row in rows], dtype=np.int16)
    return [row[0] for row in rows], packed.reshape(len(rows), 32), qualities


def _packed_chunks(
    execute: Callable[..., sqlite3.Cursor],
    table: str,
    key: str,
    where: str,
    params: tuple,
    columns: str,
    key_range: tuple[bytes, bytes] | None = None,
) -> Iterator[tuple[int, str, tuple, list]]:
    """(count, where, params, packed values) of the rows of `table` matching `where` with
    `key` in `key_range` ([low, high); else any non-empty text), as `SELECT count(*),
    {columns}` packs them (`group_concat`s, in `key` order: the index `table` names is
    read in that order), PACKED_ROWS at a time, each chunk ended by the key found
    PACKED_ROWS on in the index. The where and params returned select the chunk's rows
    (to read them one by one). One lower and one upper bound on `key` per query: with two
    of either SQLite bounds the index range by one and filters by the other."""
    lower, low = (f"{key} >= ?", key_range[0]) if key_range else (f"{key} > ?", "")
    upper, high = (f" AND {key} < ?", (key_range[1],)) if key_range else ("", ())
    while True:
        since, since_params = f"{where} AND {lower}", (*params, low)
        end = execute(
            f"SELECT {key} FROM {table} WHERE {since}{upper} ORDER BY {key} LIMIT 1 OFFSET ?",
            (*since_params, *high, PACKED_ROWS - 1),
        ).fetchone()
        chunk, chunk_params = (
            (f"{since} AND {key} <= ?", (*since_params, end[0]))
            if end
            else (since + upper, (*since_params, *high))
        )
        count, *packed = execute(
            f"SELECT count(*), {columns} FROM {table} WHERE {chunk}", chunk_params
        ).fetchone()
        if count:
            yield count, chunk, chunk_params, packed
        if end is None:
            return
        lower, low = f"{key} > ?", end[0]


def _path(raw: bytes) -> Path:
    return Path(os.fsdecode(raw))


CHECKPOINT_WAIT_MS = 250  # how long close() waits for readers before leaving the WAL as is


def checkpoint(conn: sqlite3.Connection, name: str = "library") -> bool:
    """Copy the WAL into the main file and empty it; True when all of it went in.

    Never raises: a reader in the middle of a transaction (another window, a backup) keeps
    the frames it may still need, and those stay safely in the WAL. Waits at most
    CHECKPOINT_WAIT_MS for them, so quitting never hangs on another program.
    """
    try:
        if conn.in_transaction:
            log.debug("%s: no checkpoint inside an open transaction", name)
            return False
        conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        busy, frames, moved = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        log.debug("%s: checkpoint failed: %s", name, exc)
        return False
    if busy:
        log.debug(
            "%s: checkpoint incomplete, another connection is reading (%s of %s WAL frames "
            "copied; the rest stays in the -wal file)",
            name,
            moved,
            frames,
        )
        return False
    log.debug("%s: checkpoint done, WAL emptied", name)
    return True


class ReadOnlyConnections:
    """Read-only connections to one database file, one per thread, made on first use.

    For readers that must not wait for the Library's thread (decode workers, the thumbnail
    pool): WAL lets each read while a scan writes. Each query's cursor is closed at once, so
    no statement keeps a read snapshot open (one would hold back checkpoints).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._uri = self.path.resolve().as_uri() + "?mode=ro"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[sqlite3.Connection] = []

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3.Error when the file cannot be opened)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            self._local.conn = conn
            with self._lock:
                self._made.append(conn)
        return conn

    def first(self, sql: str, params: Iterable = ()) -> tuple | None:
        """The first row of a query, or None."""
        cursor = self.connection().execute(sql, tuple(params))
        try:
            return cursor.fetchone()
        finally:
            cursor.close()  # resets the statement: no read snapshot stays open

    def close(self) -> None:
        """Close every thread's connection; only when no thread still reads."""
        with self._lock:
            made, self._made = self._made, []
        for conn in made:
            conn.close()


class ScoreLookup:
    """Read-only 'is this content already scored?' checks, safe from any thread."""

    def __init__(self, path: Path, model_id: str) -> None:
        self._reader = ReadOnlyConnections(path)
        self._model_id = model_id

    def has_score(self, content_hash: str) -> bool:
        row = self._reader.first(
            "SELECT 1 FROM scores WHERE hash = ? AND model_id = ?", (content_hash, self._model_id)
        )
        return row is not None

    def close(self) -> None:
        self._reader.close()


class PdqLookup:
    """Read-only 'has this content a PDQ hash?' checks, safe from any thread (the scan's)."""

    def __init__(self, path: Path) -> None:
        self._reader = ReadOnlyConnections(path)

    def has_pdq(self, content_hash: str) -> bool:
        row = self._reader.first(
            "SELECT 1 FROM content_hashes WHERE hash = ? AND pdq IS NOT NULL", (content_hash,)
        )
        return row is not None

    def close(self) -> None:
        self._reader.close()


class ThumbnailReader:
    """Stored thumbnail JPEGs by content hash, safe from any thread (the GUI's pool)."""

    def __init__(self, path: Path) -> None:
        self._reader = ReadOnlyConnections(path)

    def jpeg(self, content_hash: str) -> bytes | None:
        """The JPEG, or None when there is none or the cache cannot be read (a placeholder
        is the right answer then, not an error)."""
        try:
            row = self._reader.first("SELECT jpeg FROM thumbnails WHERE hash = ?", (content_hash,))
        except sqlite3.Error as exc:
            log.debug("thumbnail cache unreadable: %s", exc)
            return None
        return row[0] if row else None

    def has(self, content_hash: str) -> bool:
        """Whether the content has a thumbnail (a listing need not decode it again)."""
        try:
            row = self._reader.first("SELECT 1 FROM thumbnails WHERE hash = ?", (content_hash,))
        except sqlite3.Error as exc:
            log.debug("thumbnail cache unreadable: %s", exc)
            return False
        return row is not None

    def close(self) -> None:
        self._reader.close()
