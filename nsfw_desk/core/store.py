"""The SQLite library: files, scores per model, errors, scans; thumbnails in a cache database.

Durability: WAL journal with `synchronous=FULL`, so every committed batch or decision survives
a killed process and a power cut; each scan batch is one transaction, so a crash leaves the
library as it was after the last whole batch. The schema version lives in `PRAGMA user_version`
and `MIGRATIONS` upgrades older libraries in order, each step in its own transaction.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import sqlite_utils

from nsfw_desk.core.defaults import BUSY_TIMEOUT_MS

APP_NAME = "nsfw-desk"
LIBRARY_FILE = "library.sqlite"
THUMBNAILS_FILE = "thumbnails.sqlite"


class LibraryError(Exception):
    """The library cannot be opened or used; the message is for the user."""


class LibraryBusy(LibraryError):
    """Another connection held the library's write lock for longer than the busy timeout."""


class LibraryFull(LibraryError):
    """The disk holding the library (or its temporary files) is full; nothing was half-written."""


class LibraryDamaged(LibraryError):
    """The library file is not a database or is corrupt."""


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


def _free_space(path: Path) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return "unknown"
    return f"{free / 1e6:,.1f} MB"


def library_error(exc: sqlite3.Error, path: Path | str | None) -> LibraryError:
    """The user-facing error for an SQLite failure: what happened, what was kept, what to do.

    Every write is one transaction, so in each case the library keeps everything committed
    before the failing statement and nothing of that statement.
    """
    where = Path(path) if path else Path("the library")
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(exc)
    if code == _SQLITE_FULL or "disk is full" in text:
        return LibraryFull(
            f"The disk holding {where} is full ({_free_space(where)} free). Everything saved "
            f"before this point is kept; nothing was half-written. Free space on that disk "
            f"and try again."
        )
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text:
        return LibraryBusy(
            f"The library {where} stayed locked by another program (a second nsfw-desk?) for "
            f"more than {BUSY_TIMEOUT_MS // 1000} s. Nothing was lost; try again when it is "
            f"done."
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in text:
        return LibraryDamaged(
            f"The library {where} is damaged ({text}). Restore a backup copy of it, or move it "
            f"away to start a new library."
        )
    return LibraryError(f"The library {where} could not be used: {text}")


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


def path_key(path: Path | str) -> tuple[str, bytes | None]:
    """Text to store for a path, plus its raw bytes when the name is not valid UTF-8.

    Each byte that is not UTF-8 becomes NUL + `\\xNN` in the text. No real path holds a NUL,
    so that text can never be another path's: with a plain `\\xNN` the name b"a\\xff" and the
    valid name "a\\\\xff" shared one key, and one file hid the other in the library. The
    escape is per byte, so a folder's text is still a prefix of its files' texts.
    """
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "nsfw_desk.path"), raw


def display_text(text: str) -> str:
    """A stored path text as people read it: bytes that are not UTF-8 shown as `\\xNN`."""
    return text.replace("\x00", "")


def path_from_row(text: str, raw: bytes | None) -> Path:
    return Path(os.fsdecode(raw)) if raw is not None else Path(text)


def _prefix_range(root: Path) -> tuple[str, str]:
    """[low, high) bounds of every stored path under `root`, for an indexed range scan."""
    prefix = path_key(root)[0].rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


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
    _make_private_dir(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.DatabaseError as exc:
        raise LibraryError(f"{path} is not a usable nsfw-desk library: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()  # refused: no handle left open on the file
        raise LibraryError(f"{path} is not a usable nsfw-desk library: {exc}") from exc
    return conn


def _retry_busy(statement: Callable[[], object]) -> None:
    """Run `statement`, retrying while the database is busy, up to the busy timeout.

    Turning a new database to WAL needs it to itself for a moment, and SQLite answers
    SQLITE_BUSY at once instead of waiting: two instances creating one library collide here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 5) & 0xFF) in (5, 6)  # BUSY, LOCKED
            if not (busy and "locked" in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --- schema -------------------------------------------------------------------------------


def _migrate_to_1(db: sqlite_utils.Database) -> None:
    db["files"].create(
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
    db["files"].create_index(["hash"])
    db["models"].create(
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
    db["scores"].create(
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
    db["scores"].create_index(["model_id", "unsafe"])
    db["errors"].create(
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
    db["scans"].create(
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
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER decisions_no_{action.lower()} BEFORE {action} ON decisions "
            "BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END"
        )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migrate_to_1, _migrate_to_2]
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
                migrations[version](db)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")
    return len(migrations)


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


class Library:
    """One library database (plus its thumbnail cache), used from one thread at a time."""

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
            raise LibraryError(f"{self.path} is not a usable nsfw-desk library: {exc}") from exc
        except BaseException:
            self.db.close()
            raise
        self.thumbs = sqlite_utils.Database(_open_private_db(self.thumbnails_path))
        if "thumbnails" not in self.thumbs.table_names():
            with write_transaction(self.thumbs):  # IF NOT EXISTS: another instance may be first
                self.thumbs.execute(
                    "CREATE TABLE IF NOT EXISTS thumbnails (hash TEXT PRIMARY KEY, jpeg BLOB)"
                )

    def close(self) -> None:
        self.db.close()
        self.thumbs.close()

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
    ) -> None:
        with write_transaction(self.db):
            self.db["models"].insert(
                {
                    "id": model_id,
                    "source": source,
                    "revision": revision,
                    "architecture": architecture,
                    "labels": json.dumps(labels),
                    "unsafe_labels": json.dumps(unsafe_labels),
                    "first_used": _now(),
                },
                ignore=True,
            )

    def begin_scan(self, root: Path, model_id: str) -> int:
        with write_transaction(self.db):
            table = self.db["scans"].insert(
                {
                    "root": path_key(root)[0],
                    "model_id": model_id,
                    "started_at": _now(),
                    "status": "running",
                }
            )
        return int(table.last_pk)

    def finish_scan(
        self, scan_id: int, status: str, *, files: int, scored: int, cached: int, errors: int
    ) -> None:
        with write_transaction(self.db):
            self.db["scans"].update(
                scan_id,
                {
                    "finished_at": _now(),
                    "status": status,
                    "files": files,
                    "scored": scored,
                    "cached": cached,
                    "errors": errors,
                },
            )

    # the cache check

    def known_files(self, root: Path) -> dict[str, KnownFile]:
        """Stored stat facts of every file under `root`, keyed by stored path text."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, hash FROM files WHERE path >= ? AND path < ?",
            (low, high),
        )
        return {path: KnownFile(size, mtime, digest) for path, size, mtime, digest in rows}

    def known_errors(self, root: Path) -> dict[str, tuple[int, int, str, str]]:
        """Remembered content-bound errors: path text → (size, mtime_ns, kind, message)."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, kind, message FROM errors WHERE path >= ? AND path < ?",
            (low, high),
        )
        return {row[0]: tuple(row[1:]) for row in rows}

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

    # writes

    def record_scored(self, items: list[ScoredFile], model_id: str) -> None:
        """One transaction for a batch: file rows, new scores, and clearing old errors."""
        if not items:
            return
        now = _now()
        file_rows, score_rows, error_paths = [], [], []
        for item in items:
            text, raw = path_key(item.path)
            error_paths.append(text)
            file_rows.append(
                {
                    "path": text,
                    "raw_path": raw,
                    "size": item.size,
                    "mtime_ns": item.mtime_ns,
                    "hash": item.hash,
                    "width": item.width,
                    "height": item.height,
                    "format": item.format,
                    "scanned_at": now,
                }
            )
        for item in items:
            if item.unsafe is not None:
                score_rows.append(
                    {
                        "hash": item.hash,
                        "model_id": model_id,
                        "unsafe": float(item.unsafe),
                        "probabilities": float32_blob(item.probabilities),
                        "embedding": float16_blob(item.embedding),
                        "scored_at": now,
                    }
                )
        thumbs = [{"hash": i.hash, "jpeg": i.thumbnail} for i in items if i.thumbnail]
        if thumbs:  # thumbnails first: a crash in between leaves a harmless spare thumbnail
            with write_transaction(self.thumbs):
                self.thumbs["thumbnails"].insert_all(thumbs, replace=True)
        with write_transaction(self.db):
            self.db["files"].insert_all(file_rows, replace=True)
            if score_rows:
                self.db["scores"].insert_all(score_rows, replace=True)
            self._delete_paths("errors", error_paths)

    def record_errors(self, errors: list, scan_id: int | None) -> None:
        """Errors replace any file row of the same path (it no longer scores)."""
        if not errors:
            return
        now = _now()
        rows, paths = [], []
        for error in errors:
            text, raw = path_key(error.path)
            paths.append(text)
            rows.append(
                {
                    "path": text,
                    "raw_path": raw,
                    "kind": error.kind,
                    "message": error.message,
                    "size": error.size,
                    "mtime_ns": error.mtime_ns,
                    "scan_id": scan_id,
                    "at": now,
                }
            )
        with write_transaction(self.db):
            self.db["errors"].insert_all(rows, replace=True)
            self._delete_paths("files", paths)

    def forget_missing(self, root: Path, present: set[str], keep_under: Iterable[Path] = ()) -> int:
        """Drop file and error rows under `root` that a full scan no longer found.

        Rows under `keep_under` (folders that could not be listed: a drive that is not
        mounted, a permission lost for a while) stay: their files are unknown, not gone.
        Scores, decisions and thumbnails stay: they belong to content, not paths.
        """
        low, high = _prefix_range(root)
        kept = tuple(_prefix_range(folder)[0] for folder in keep_under)
        gone = [
            row[0]
            for table in ("files", "errors")
            for row in self.db.execute(
                f"SELECT path FROM {table} WHERE path >= ? AND path < ?", (low, high)
            )
            if row[0] not in present and not row[0].startswith(kept)
        ]
        if gone:
            with write_transaction(self.db):
                self._delete_paths("files", gone)
                self._delete_paths("errors", gone)
        return len(gone)

    def _delete_paths(self, table: str, paths: list[str]) -> None:
        for chunk, marks in in_chunks(paths):
            self.db.execute(f"DELETE FROM {table} WHERE path IN ({marks})", chunk)

    # reads for the GUI, the CLI and export

    def results(self, root: Path, model_id: str) -> Iterator[FileOutcome]:
        """Every file under `root` with its score for `model_id`, then every error."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT f.path, f.raw_path, f.hash, s.unsafe, f.mtime_ns FROM files f "
            "LEFT JOIN scores s ON s.hash = f.hash AND s.model_id = ? "
            "WHERE f.path >= ? AND f.path < ? ORDER BY f.path",
            (model_id, low, high),
        )
        for text, raw, digest, unsafe, mtime_ns in rows:
            yield FileOutcome(path_from_row(text, raw), digest, unsafe, True, mtime_ns=mtime_ns)
        rows = self.db.execute(
            "SELECT path, raw_path, kind, message, mtime_ns FROM errors "
            "WHERE path >= ? AND path < ? ORDER BY path",
            (low, high),
        )
        for text, raw, kind, message, mtime_ns in rows:
            yield FileOutcome(path_from_row(text, raw), None, None, True, kind, message, mtime_ns)

    def last_model_for(self, root: Path) -> str | None:
        """The model of the latest scan of `root` (else of any folder), so that stored
        results can be shown before a model is loaded."""
        row = (
            self.db.execute(
                "SELECT model_id FROM scans WHERE root = ? ORDER BY id DESC LIMIT 1",
                (path_key(root)[0],),
            ).fetchone()
            or self.db.execute("SELECT model_id FROM scans ORDER BY id DESC LIMIT 1").fetchone()
        )
        return row[0] if row else None

    def file_facts(self, path: Path) -> dict | None:
        row = self.db.execute(
            "SELECT size, mtime_ns, hash, width, height, format FROM files WHERE path = ?",
            (path_key(path)[0],),
        ).fetchone()
        if row is None:
            return None
        return dict(
            zip(("size", "mtime_ns", "hash", "width", "height", "format"), row, strict=True)
        )

    def scores_by_model(self, content_hash: str) -> dict[str, float]:
        rows = self.db.execute(
            "SELECT model_id, unsafe FROM scores WHERE hash = ? ORDER BY scored_at",
            (content_hash,),
        )
        return dict(rows)

    def embedding(self, content_hash: str, model_id: str) -> np.ndarray | None:
        row = self.db.execute(
            "SELECT embedding FROM scores WHERE hash = ? AND model_id = ?",
            (content_hash, model_id),
        ).fetchone()
        return blob_to_array(row[0], "<f2") if row else None

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
        return list(self.db["scans"].rows_where(order_by="id"))

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    def hashes_under(self, root: Path) -> set[str]:
        """Content hashes of the files stored under `root` (export's folder filter)."""
        low, high = _prefix_range(root)
        rows = self.db.execute(
            "SELECT DISTINCT hash FROM files WHERE path >= ? AND path < ? AND hash IS NOT NULL",
            (low, high),
        )
        return {row[0] for row in rows}

    def files_for_hashes(
        self, hashes: Iterable[str]
    ) -> dict[str, list[tuple[Path, str, str | None]]]:
        """Every stored file of each content as (path, stored path text, format), by path."""
        hashes = list(dict.fromkeys(hashes))
        found: dict[str, list[tuple[Path, str, str | None]]] = {}
        for chunk, marks in in_chunks(hashes):
            rows = self.db.execute(
                f"SELECT hash, path, raw_path, format FROM files WHERE hash IN ({marks}) "
                "ORDER BY path",
                chunk,
            )
            for digest, text, raw, fmt in rows:
                found.setdefault(digest, []).append((path_from_row(text, raw), text, fmt))
        return found


class ScoreLookup:
    """Read-only 'is this content already scored?' checks, safe from any thread.

    Each thread gets its own read-only connection; WAL lets them read while the scan writes.
    """

    def __init__(self, path: Path, model_id: str) -> None:
        self._uri = Path(path).resolve().as_uri() + "?mode=ro"
        self._model_id = model_id
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []  # every thread's, for close()

    def has_score(self, content_hash: str) -> bool:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            self._local.conn = conn
            self._opened.append(conn)
        row = conn.execute(
            "SELECT 1 FROM scores WHERE hash = ? AND model_id = ?", (content_hash, self._model_id)
        ).fetchone()
        return row is not None

    def close(self) -> None:
        """Close every thread's connection; call once no thread uses this lookup any more."""
        for conn in self._opened:
            conn.close()
        self._opened.clear()
