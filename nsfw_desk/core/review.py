"""Review decisions: an append-only log per content hash; the latest decision is the label.

A decision belongs to the content, not the path, so it follows a file across renames and
covers every duplicate. Nothing is ever updated or deleted (triggers refuse it): clearing
appends a NULL label and undo appends the label from before, so the log is a full audit
trail of who decided what, when, and what the model said at that moment.

"Latest" means decided last (`decided_at`), not stored last: `nsfw-desk merge` appends
another library's older decisions after this one's newer ones (see `_LogKind.latest`).
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from nsfw_desk.core.paths import display_path
from nsfw_desk.core.store import Library, in_chunks, now_utc, utc_text, write_transaction

log = logging.getLogger(__name__)
LABELS = ("unsafe", "safe")
MAX_NOTE = 500  # characters: a note is one line of context, not a report
MAX_TAG = 40
FALLBACK_REVIEWER = "reviewer"


@dataclass(frozen=True)
class DecisionInput:
    """What the GUI knows about one item when the reviewer decides on it."""

    hash: str
    model_id: str | None = None
    score: float | None = None  # the model's unsafe score shown to the reviewer
    source_path: Path | str | bytes | None = None


class _Sourced:
    """The file a row's reviewer looked at, exactly as it was named."""

    source_path: str | None
    source_path_bytes: bytes | None

    @property
    def source(self) -> Path | None:
        if self.source_path_bytes is not None:
            return Path(os.fsdecode(self.source_path_bytes))
        return Path(self.source_path) if self.source_path else None


@dataclass(frozen=True)
class Decision(_Sourced):
    """One stored row of the log."""

    id: int
    hash: str
    label: str | None
    reviewer: str
    decided_at: str
    model_id: str | None
    score: float | None
    threshold: float | None
    source_path: str | None  # for people: not unique, see core/paths.py
    undo_of: int | None
    source_path_bytes: bytes | None = None  # the exact path (os.fsencode); open this one
    note: str | None = None  # the reviewer's note on this decision
    merged_from: str | None = None  # the library id it was merged from; None: made here

    @property
    def value(self) -> str | None:
        """The label, under the name every log's rows share (core/team.py)."""
        return self.label


@dataclass(frozen=True)
class AiLabel(_Sourced):
    """One stored row of the AI-generated log: generated True (AI), False (real), None
    (cleared)."""

    id: int
    hash: str
    generated: bool | None
    reviewer: str
    decided_at: str
    model_id: str | None  # the AI detector shown to the reviewer, if any
    score: float | None  # its score then
    threshold: float | None
    source_path: str | None
    undo_of: int | None
    source_path_bytes: bytes | None = None
    merged_from: str | None = None  # as Decision.merged_from

    @property
    def value(self) -> bool | None:
        return self.generated


def _ai_row(row) -> AiLabel:
    values = list(row)
    values[2] = None if values[2] is None else bool(values[2])
    return AiLabel(*values)


def _batches(sql: str, hashes: Iterable[str] | None) -> Iterable[tuple[str, Sequence]]:
    """`sql` with its {where} filled: once for every hash (None), else in chunks of them."""
    if hashes is None:
        yield sql.format(where=""), []
        return
    for chunk, marks in in_chunks(dict.fromkeys(hashes)):
        yield sql.format(where=f"WHERE hash IN ({marks})"), chunk


def refuse_nested(db: sqlite_utils.Database, why: str) -> None:
    """A write inside a caller's transaction would become its savepoint: not durable here."""
    if db.conn.in_transaction:
        raise RuntimeError(why)


def _check_label(label: str | None) -> None:
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {LABELS} or None, not {label!r}")


def _check_generated(value: bool | None) -> None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"ai_generated must be True, False or None, not {value!r}")


# Which of a content's rows is its latest, as one text per row whose MAX is the latest (the
# separators keep the order of decided_at first, then reviewer, then id); LATEST_ORDER is
# the same order for ORDER BY ... LIMIT 1.
LATEST = "decided_at || char(1) || reviewer || char(1) || printf('%020d', id)"
LATEST_ORDER = "decided_at DESC, reviewer DESC, id DESC"


@dataclass(frozen=True)
class _LogKind:
    """What differs between the append-only label logs: the table, its value column and
    how that value is read, written and checked; everything else is `_Log`'s."""

    table: str
    value: str  # the label column
    extra: tuple[str, ...]  # columns a write sets beyond the shared ones
    row: Callable[[Sequence[Any]], Any]  # a selected row → its dataclass
    load: Callable[[Any], Any]  # a stored value → the value
    dump: Callable[[Any], Any]  # a value → as stored
    check: Callable[[Any], None]  # raises ValueError for a value the log cannot hold
    positive: Callable[[Any], bool]  # does a stored value count as positive (calibration)
    busy: str  # why a write inside a caller's transaction is refused
    noun: str  # the rows, for messages

    @property
    def columns(self) -> str:
        return (
            f"id, hash, {self.value}, reviewer, decided_at, model_id, score, threshold, "
            "source_path, undo_of, source_path_bytes"
            + "".join(f", {c}" for c in self.extra)
            + ", merged_from"
        )

    def insert(self, *more: str) -> str:
        """INSERT of the columns every row has, then `more`."""
        columns = (
            "hash",
            self.value,
            "reviewer",
            "decided_at",
            "model_id",
            "score",
            "threshold",
            "source_path",
            "source_path_bytes",
            *more,
        )
        marks = ", ".join("?" * len(columns))
        return f"INSERT INTO {self.table} ({', '.join(columns)}) VALUES ({marks})"

    @property
    def latest(self) -> str:
        """The id of each hash's latest row: the one decided last (`decided_at`), not the
        one stored last, so a merge that brings an older decision from another library
        leaves a later one here the label. Decided in the same millisecond: the reviewer
        name that sorts last, so merging A into B and B into A agree; then the id (one
        reviewer's rows of one instant, in the order they were made). SQLite takes the bare
        `id` from the row holding the MAX; the (hash, reviewer, decided_at) index, which
        holds the id too, answers it without reading the table."""
        return (
            f"SELECT id FROM (SELECT id, MAX({LATEST}) FROM {self.table} {{where}} GROUP BY hash)"
        )

    @property
    def labelled(self) -> str:
        """hash and value of every content whose latest row still carries a value."""
        return (
            f"SELECT hash, {self.value} FROM {self.table} WHERE {self.value} IS NOT NULL "
            "AND id IN (" + self.latest.format(where="") + ")"
        )


DECISIONS = _LogKind(
    "decisions",
    "label",
    ("note",),
    lambda row: Decision(*row),
    lambda value: value,
    lambda value: value,
    _check_label,
    lambda value: value == "unsafe",
    "decisions must not be written inside another transaction",
    "decisions",
)
AI_LABELS = _LogKind(
    "ai_labels",
    "generated",
    (),
    _ai_row,
    lambda value: None if value is None else bool(value),
    lambda value: None if value is None else int(value),
    _check_generated,
    bool,
    "labels must not be written inside another transaction",
    "AI-generated labels",
)


class _Log:
    """One append-only label log of a library: per content hash, the row decided last
    (`_LogKind.latest`) is the current value; undo and clearing append. Decisions and the
    AI-generated label share this one implementation (their tables differ only as
    `_LogKind` says)."""

    def __init__(self, db: sqlite_utils.Database, kind: _LogKind) -> None:
        self.db, self.kind = db, kind

    def append(self, changes: Sequence[tuple[DecisionInput, Any]], **options: Any) -> list[int]:
        """Append one row per (item, value), all or none; return the new ids in order.
        `options` are `prepare`'s: reviewer, threshold, and aligned with `changes`,
        undo_of, reviewers and extras (the kind's extra columns)."""
        rows = self.prepare(changes, **options)
        if not rows:
            return []
        refuse_nested(self.db, self.kind.busy)
        with write_transaction(self.db):
            return self.write(rows)

    def prepare(
        self,
        changes: Sequence[tuple[DecisionInput, Any]],
        *,
        reviewer: str,
        threshold: float | None,
        undo_of: Sequence[int | None] | None = None,
        reviewers: Sequence[str | None] | None = None,
        extras: Sequence[tuple] | None = None,
        thresholds: Sequence[float | None] | None = None,
    ) -> list[tuple]:
        """The checked rows `append` writes (`write` them inside a transaction); a row's
        own threshold in `thresholds` (aligned) wins over `threshold`."""
        kind = self.kind
        changes = list(changes)
        for _, value in changes:
            kind.check(value)
        aligned_lists = (("undo_of", undo_of), ("reviewers", reviewers), ("thresholds", thresholds))
        for name, aligned in aligned_lists:
            if aligned is not None and len(aligned) != len(changes):
                raise ValueError(f"{name} must have one entry per change")
        names = [r or reviewer for r in reviewers] if reviewers else [reviewer] * len(changes)
        for name in {reviewer, *names}:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("reviewer must be a non-empty name")
        at = now_utc()
        after_latest = self._after_latest(at, [item.hash for item, _ in changes])
        reverts = undo_of if undo_of is not None else [None] * len(changes)
        more = extras if extras is not None else [()] * len(changes)
        levels = thresholds if thresholds is not None else [threshold] * len(changes)
        rows = []
        for (item, value), reverted, who, extra, level in zip(
            changes, reverts, names, more, levels, strict=True
        ):
            raw = os.fsencode(item.source_path) if item.source_path is not None else None
            rows.append(
                (
                    item.hash,
                    kind.dump(value),
                    who,
                    after_latest.get(item.hash, at),
                    item.model_id,
                    None if item.score is None else float(item.score),
                    None if level is None else float(level),
                    None if raw is None else display_path(raw),
                    raw,
                    reverted,
                    *extra,
                )
            )
        return rows

    def write(self, rows: Sequence[tuple]) -> list[int]:
        """Insert prepared rows (inside the caller's write transaction); their ids."""
        sql = self.kind.insert("undo_of", *self.kind.extra)
        ids: list[int] = []
        for row in rows:
            cursor = self.db.execute(sql, row)
            assert cursor.lastrowid is not None
            ids.append(cursor.lastrowid)
        return ids

    def reverting(self, ids: Sequence[int]) -> list[tuple[DecisionInput, Any]]:
        """The changes that undo rows `ids`: for each, the value its hash had just before.

        When one hash appears several times in `ids` (duplicates in a multi-select) they
        all go back to the value before the earliest. Reads only rows older than `ids`,
        which never change, so no lock is needed for them.
        """
        rows = {r.id: r for r in self.by_id(ids)}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise ValueError(f"no such {self.kind.noun}: {missing}")
        first: dict[str, int] = {}
        for i in ids:
            first[rows[i].hash] = min(first.get(rows[i].hash, i), i)
        before = {h: self.before(h, i) for h, i in first.items()}
        return [
            (
                DecisionInput(rows[i].hash, rows[i].model_id, rows[i].score, rows[i].source),
                before[rows[i].hash],
            )
            for i in ids
        ]

    def current(self, hashes: Iterable[str] | None = None) -> dict[str, Any]:
        """hash → value for hashes whose latest row is not a clear; all hashes if None."""
        kind = self.kind
        sql = (
            f"SELECT hash, {kind.value} FROM {kind.table} WHERE {kind.value} IS NOT NULL "
            "AND id IN (" + kind.latest + ")"
        )
        found: dict[str, Any] = {}
        for statement, params in _batches(sql, hashes):
            found.update((h, kind.load(v)) for h, v in self.db.execute(statement, params))
        return found

    def _after_latest(self, at: str, hashes: Iterable[str]) -> dict[str, str]:
        """hash → 1 ms after its latest row, for contents whose latest row is dated `at` or
        later. The latest row is the one decided last; a merged library's reviewer whose
        clock ran ahead must not hide a decision made here now, so the new row is dated
        just after it (and this is logged)."""
        table = self.kind.table
        found: dict[str, str] = {}
        for chunk, marks in in_chunks(sorted(set(hashes))):
            rows = self.db.execute(
                f"SELECT hash, MAX(decided_at) FROM {table} WHERE hash IN ({marks}) "
                "GROUP BY hash HAVING MAX(decided_at) >= ?",
                [*chunk, at],
            )
            for content_hash, latest in rows:
                when = datetime.strptime(latest, "%Y-%m-%dT%H:%M:%S.%fZ")
                later = when.replace(tzinfo=timezone.utc) + timedelta(milliseconds=1)
                found[content_hash] = utc_text(later)
        if found:
            log.info("%d decisions dated 1 ms after a latest one dated from now on", len(found))
        return found

    def by_reviewer(self, hashes: Iterable[str]) -> dict[tuple[str, str], Any]:
        """(hash, reviewer) → that reviewer's own latest value on the content (None: they
        cleared it), by when it was decided: what a repeat by the same reviewer is
        compared with."""
        found: dict[tuple[str, str], Any] = {}
        for chunk, marks in in_chunks(sorted(set(hashes))):
            rows = self.db.execute(
                f"SELECT hash, reviewer, {self.kind.value} FROM {self.kind.table} "
                f"WHERE hash IN ({marks}) ORDER BY decided_at, id",
                chunk,
            )
            found.update(((h, who), self.kind.load(v)) for h, who, v in rows)
        return found

    def rows(self, where: str = "", params: Sequence = ()) -> list:
        kind = self.kind
        rows = self.db.execute(f"SELECT {kind.columns} FROM {kind.table} {where}", params)
        return [kind.row(row) for row in rows]

    def history(self, content_hash: str) -> list:
        """Every row of one content, oldest first: by when it was decided (a merge appends
        older decisions after newer ones), in the order `latest` breaks ties."""
        oldest_first = LATEST_ORDER.replace(" DESC", "")
        return self.rows(f"WHERE hash = ? ORDER BY {oldest_first}", (content_hash,))

    def latest_rows(self) -> list:
        """The latest row of every hash that still carries a value, by hash."""
        where = f"WHERE {self.kind.value} IS NOT NULL AND id IN ({self.kind.latest}) ORDER BY hash"
        return self.rows(where.format(where=""))

    def by_id(self, ids: Sequence[int]) -> list:
        found: list = []
        for chunk, marks in in_chunks([int(i) for i in ids]):
            found.extend(self.rows(f"WHERE id IN ({marks})", chunk))
        return found

    def before(self, content_hash: str, row_id: int) -> Any:
        """The value the content showed just before row `row_id` was stored: the latest
        (as `latest` orders them) of the rows stored before it."""
        row = self.db.execute(
            f"SELECT {self.kind.value} FROM {self.kind.table} WHERE hash = ? AND id < ? "
            f"ORDER BY {LATEST_ORDER} LIMIT 1",
            (content_hash, row_id),
        ).fetchone()
        return None if row is None else self.kind.load(row[0])

    def reviewed_scores(self, model_id: str) -> list[tuple[float, bool]]:
        """(score, positive) of every content with a current value and a score from
        `model_id`, by hash: one row per content, however many paths share it."""
        rows = self.db.execute(
            f"SELECT s.unsafe, l.{self.kind.value} FROM ({self.kind.labelled}) l "
            "JOIN scores s ON s.hash = l.hash AND s.model_id = ? "
            "WHERE s.unsafe IS NOT NULL ORDER BY l.hash",
            (model_id,),
        )
        return [(float(score), self.kind.positive(value)) for score, value in rows]

    def models_with_reviews(self) -> list[tuple[str, int]]:
        """(model id, contents with a current value it scored), most first."""
        rows = self.db.execute(
            f"SELECT s.model_id, COUNT(*) AS n FROM ({self.kind.labelled}) l "
            "JOIN scores s ON s.hash = l.hash WHERE s.unsafe IS NOT NULL "
            "GROUP BY s.model_id ORDER BY n DESC, s.model_id"
        )
        return [(model_id, int(n)) for model_id, n in rows]

    def counts(self) -> dict[Any, int]:
        """Stored value → how many contents carry it now."""
        rows = self.db.execute(
            f"SELECT {self.kind.value}, COUNT(*) FROM ({self.kind.labelled}) "
            f"GROUP BY {self.kind.value}"
        )
        return dict(rows.fetchall())

    def merge(self, rows: Sequence, merged_from: str) -> list:
        """Append other libraries' rows as they were (reviewer, time, score, extras);
        return those appended. One transaction.

        A row already here (equal hash, reviewer, decided_at, value and extras) is skipped,
        so merging the same library twice appends nothing. `undo_of` ids belong to the
        other library and are not kept; each row's own `merged_from` is kept when it has
        one (a row merged into the other library before comes from its origin).
        """
        kind = self.kind
        refuse_nested(self.db, kind.busy)
        identity = ("hash", "reviewer", "decided_at", kind.value, *kind.extra)
        exists = (
            f"SELECT 1 FROM {kind.table} WHERE "
            + " AND ".join(f"{c} = ?" for c in identity[:3])
            + "".join(f" AND {c} IS ?" for c in identity[3:])
            + " LIMIT 1"
        )
        insert = kind.insert(*kind.extra, "merged_from")
        added: list = []
        seen: set[tuple] = set()
        with write_transaction(self.db):
            for r in sorted(rows, key=lambda r: (r.decided_at, r.id)):
                kind.check(r.value)
                extra = tuple(getattr(r, c) for c in kind.extra)
                key = (r.hash, r.reviewer, r.decided_at, kind.dump(r.value), *extra)
                if key in seen:
                    continue
                seen.add(key)
                if self.db.execute(exists, key).fetchone():
                    continue
                self.db.execute(
                    insert,
                    (
                        r.hash,
                        kind.dump(r.value),
                        r.reviewer,
                        r.decided_at,
                        r.model_id,
                        r.score,
                        r.threshold,
                        r.source_path,
                        r.source_path_bytes,
                        *extra,
                        r.merged_from or merged_from,
                    ),
                )
                added.append(r)
        return added

    def contested(self, hashes: Iterable[str] | None = None) -> list:
        """Every row on contents that more than one reviewer labelled (of `hashes` when
        given), by hash then id: the only ones where reviewers can disagree."""
        table = self.kind.table
        where = (
            f"WHERE hash IN (SELECT hash FROM {table} {{where}} GROUP BY hash "
            "HAVING COUNT(DISTINCT reviewer) > 1) ORDER BY hash, id"
        )
        if hashes is None:
            return self.rows(where.format(where=""))
        found: list = []
        for chunk, marks in in_chunks(sorted(set(hashes))):
            found.extend(self.rows(where.format(where=f"WHERE hash IN ({marks})"), chunk))
        return found


def default_reviewer() -> str:
    """The OS user name; getpass can fail without a login name (containers, services)."""
    try:
        name = getpass.getuser()
    except Exception:  # OSError, KeyError or ImportError depending on the platform
        name = ""
    return name or FALLBACK_REVIEWER


def clean_note(note: str | None) -> str | None:
    """One line, trimmed, at most MAX_NOTE characters; empty is no note."""
    if note is None:
        return None
    text = " ".join(str(note).split())[:MAX_NOTE]
    return text or None


def clean_tag(tag: str) -> str:
    """A tag as stored: one line, trimmed, lower case, at most MAX_TAG characters."""
    text = " ".join(str(tag).split()).lower()[:MAX_TAG]
    if not text:
        raise ValueError("a tag needs at least one character")
    return text


class ReviewStore:
    """Decisions of one library. Every write is one transaction, committed on return."""

    def __init__(self, library: Library) -> None:
        self.library = library

    @property
    def db(self) -> sqlite_utils.Database:
        return self.library.db

    @property
    def _decisions(self) -> _Log:
        return _Log(self.db, DECISIONS)

    @property
    def _ai(self) -> _Log:
        return _Log(self.db, AI_LABELS)

    # writes

    def decide(
        self,
        items: Sequence[DecisionInput],
        label: str | None,
        *,
        reviewer: str,
        threshold: float,
        note: str | None = None,
    ) -> list[int]:
        """Give every item the same label (None clears it); return the new ids in order.

        `note` goes with each of these decisions. A note on its own is a decision that
        repeats the item's current label: the log stays the one record of who said what.
        """
        return self.apply_labels(
            [(item, label) for item in items], reviewer=reviewer, threshold=threshold, note=note
        )

    def apply_labels(
        self,
        changes: Sequence[tuple[DecisionInput, str | None]],
        *,
        reviewer: str,
        threshold: float,
        undo_of: Sequence[int | None] | None = None,
        note: str | None = None,
        reviewers: Sequence[str | None] | None = None,
        notes: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Append one decision per (item, label), all or none; return the new ids in order.

        For undo of a multi-select whose items had different labels before; `undo_of`, aligned
        with `changes`, names the decision each new one reverts. `reviewers` and `notes`,
        aligned too, give single decisions their own reviewer or note (an import of several
        reviewers' labels, still one transaction); None entries take `reviewer` and `note`.
        """
        changes = list(changes)
        if notes is not None and len(notes) != len(changes):
            raise ValueError("notes must have one entry per change")
        note = clean_note(note)
        own_notes = [clean_note(n) or note for n in notes] if notes else [note] * len(changes)
        return self._decisions.append(
            changes,
            reviewer=reviewer,
            threshold=float(threshold),
            undo_of=undo_of,
            reviewers=reviewers,
            extras=[(n,) for n in own_notes],
        )

    def record_both(
        self,
        labels: Sequence[tuple[DecisionInput, str | None]],
        ai_labels: Sequence[tuple[DecisionInput, bool | None, float | None]],
        *,
        reviewer: str,
        threshold: float,
        reviewers: Sequence[str | None] | None = None,
        notes: Sequence[str | None] | None = None,
        ai_reviewers: Sequence[str | None] | None = None,
    ) -> tuple[list[int], list[int]]:
        """Decisions and AI-generated labels (item, value, its detector's threshold) in one
        transaction, all or none: what `label` and `import-labels` record. The new ids of
        each, in order; `reviewers`/`notes` align with `labels`, `ai_reviewers` with
        `ai_labels`."""
        labels = list(labels)
        if notes is not None and len(notes) != len(labels):
            raise ValueError("notes must have one entry per change")
        decisions = self._decisions.prepare(
            labels,
            reviewer=reviewer,
            threshold=float(threshold),
            reviewers=reviewers,
            extras=[(clean_note(n),) for n in (notes or [None] * len(labels))],
        )
        ai = self._ai.prepare(
            [(item, value) for item, value, _ in ai_labels],
            reviewer=reviewer,
            threshold=None,
            reviewers=ai_reviewers,
            thresholds=[level for _, _, level in ai_labels],
        )
        if not decisions and not ai:
            return [], []
        refuse_nested(self.db, DECISIONS.busy)
        with write_transaction(self.db):
            return self._decisions.write(decisions), self._ai.write(ai)

    def revert(self, ids: Sequence[int], *, reviewer: str, threshold: float) -> list[int]:
        """Undo decisions `ids` by appending, for each, the label its hash had just before.

        Reverting the ids this returns is redo. When one hash appears several times in `ids`
        (duplicates in a multi-select) they all go back to the label before the earliest.
        """
        changes = self._decisions.reverting(ids)
        return self.apply_labels(changes, reviewer=reviewer, threshold=threshold, undo_of=list(ids))

    # reads

    def current_labels(self, hashes: Iterable[str] | None = None) -> dict[str, str]:
        """hash → label for hashes whose latest decision is not a clear; all hashes if None."""
        return self._decisions.current(hashes)

    def reviewers_labels(self, hashes: Iterable[str]) -> dict[tuple[str, str], str | None]:
        """(hash, reviewer) → that reviewer's own latest label (None: cleared)."""
        return self._decisions.by_reviewer(hashes)

    def previous_labels(self, hashes: Iterable[str]) -> dict[str, str | None]:
        """Every given hash → its current label or None: what an undo has to restore."""
        hashes = list(hashes)
        current = self.current_labels(hashes)
        return {h: current.get(h) for h in hashes}

    def history(self, content_hash: str) -> list[Decision]:
        """Every decision on one content, oldest first."""
        return self._decisions.history(content_hash)

    def current_decisions(self) -> list[Decision]:
        """The latest decision of every hash that still carries a label, by hash (for export)."""
        return self._decisions.latest_rows()

    def reviewed_scores(self, model_id: str) -> list[tuple[float, bool]]:
        """(score, reviewed unsafe) of every content with a current label and a score from
        `model_id`, by hash: one row per content, however many paths share it."""
        return self._decisions.reviewed_scores(model_id)

    def models_with_reviews(self) -> list[tuple[str, int]]:
        """(model id, reviewed contents it scored), most first: which models can be
        calibrated."""
        return self._decisions.models_with_reviews()

    def counts(self) -> dict[str, int]:
        """How many contents currently carry each label (every label present, maybe 0)."""
        return {label: 0 for label in LABELS} | self._decisions.counts()

    def latest_notes(self, hashes: Iterable[str] | None = None) -> dict[str, str]:
        """hash → its most recent note (for export and the tile's tooltip); all if None."""
        sql = (
            "SELECT hash, note FROM decisions WHERE id IN (SELECT id FROM ("
            f"SELECT id, MAX({LATEST}) FROM decisions WHERE note IS NOT NULL {{where}} "
            "GROUP BY hash))"
        )
        if hashes is None:
            return dict(self.db.execute(sql.format(where="")))
        found: dict[str, str] = {}
        for chunk, marks in in_chunks(dict.fromkeys(hashes)):
            found.update(self.db.execute(sql.format(where=f"AND hash IN ({marks})"), chunk))
        return found

    # the AI-generated label: a second, independent decision per content (ai_labels)

    def decide_ai(
        self,
        items: Sequence[DecisionInput],
        generated: bool | None,
        *,
        reviewer: str,
        threshold: float | None = None,
    ) -> list[int]:
        """Say every item is AI-generated (True), real (False) or clear it (None); `items`
        carry the AI detector's model id and score when one was shown."""
        return self.apply_ai_labels(
            [(item, generated) for item in items], reviewer=reviewer, threshold=threshold
        )

    def apply_ai_labels(
        self,
        changes: Sequence[tuple[DecisionInput, bool | None]],
        *,
        reviewer: str,
        threshold: float | None = None,
        undo_of: Sequence[int | None] | None = None,
        reviewers: Sequence[str | None] | None = None,
    ) -> list[int]:
        """Append one AI-generated row per (item, value), all or none; the new ids in order."""
        return self._ai.append(
            changes, reviewer=reviewer, threshold=threshold, undo_of=undo_of, reviewers=reviewers
        )

    def revert_ai(
        self, ids: Sequence[int], *, reviewer: str, threshold: float | None = None
    ) -> list[int]:
        """Undo AI-generated rows `ids` by appending the value each hash had just before;
        reverting what this returns is redo (as `revert` for decisions)."""
        changes = self._ai.reverting(ids)
        return self.apply_ai_labels(
            changes, reviewer=reviewer, threshold=threshold, undo_of=list(ids)
        )

    def current_ai_labels(self, hashes: Iterable[str] | None = None) -> dict[str, bool]:
        """hash → True (AI-generated) / False (real) for contents with a current value."""
        return self._ai.current(hashes)

    def reviewers_ai_labels(self, hashes: Iterable[str]) -> dict[tuple[str, str], bool | None]:
        """(hash, reviewer) → that reviewer's own latest AI-generated value (None: cleared)."""
        return self._ai.by_reviewer(hashes)

    def previous_ai_labels(self, hashes: Iterable[str]) -> dict[str, bool | None]:
        """Every given hash → its current AI-generated value or None."""
        hashes = list(hashes)
        current = self.current_ai_labels(hashes)
        return {h: current.get(h) for h in hashes}

    def ai_history(self, content_hash: str) -> list[AiLabel]:
        """Every AI-generated row of one content, oldest first."""
        return self._ai.history(content_hash)

    def ai_reviewed_scores(self, model_id: str) -> list[tuple[float, bool]]:
        """(score, reviewed AI-generated) of every content with a current AI-generated value
        and a score from `model_id`, by hash: what calibrates an AI detector."""
        return self._ai.reviewed_scores(model_id)

    def models_with_ai_reviews(self) -> list[tuple[str, int]]:
        """(model id, AI-generated-labelled contents it scored), most first."""
        return self._ai.models_with_reviews()

    def ai_counts(self) -> dict[str, int]:
        """How many contents are now labelled AI-generated and real."""
        rows = self._ai.counts()
        return {"generated": int(rows.get(1, 0)), "real": int(rows.get(0, 0))}

    # tags: append-only like decisions; the latest row of a (hash, tag) says whether it is on

    def set_tag(self, hashes: Iterable[str], tag: str, *, added: bool, reviewer: str) -> str:
        """Add (or remove) `tag` on every content; return the tag as stored."""
        tag = clean_tag(tag)
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise ValueError("reviewer must be a non-empty name")
        at = now_utc()
        rows = [(h, tag, int(added), reviewer, at) for h in dict.fromkeys(hashes)]
        with write_transaction(self.db):
            self.db.conn.executemany(
                "INSERT INTO tags (hash, tag, added, reviewer, at) VALUES (?, ?, ?, ?, ?)", rows
            )
        return tag

    def tags(self, hashes: Iterable[str] | None = None) -> dict[str, list[str]]:
        """hash → its current tags, sorted; only contents with at least one; all if None."""
        sql = (
            "SELECT hash, tag FROM tags WHERE added = 1 AND id IN ("
            "SELECT MAX(id) FROM tags {where} GROUP BY hash, tag) ORDER BY hash, tag"
        )
        found: dict[str, list[str]] = {}
        for statement, params in _batches(sql, hashes):
            for digest, tag in self.db.execute(statement, params):
                found.setdefault(digest, []).append(tag)
        return found

    def tag_counts(self) -> dict[str, int]:
        """Every tag now on some content → on how many, by tag."""
        counts: dict[str, int] = {}
        for tags in self.tags().values():
            for tag in tags:
                counts[tag] = counts.get(tag, 0) + 1
        return dict(sorted(counts.items()))

    # several reviewers (core/team.py)

    def all_decisions(self) -> list[Decision]:
        """Every decision, oldest first (what a merge copies into another library)."""
        return self._decisions.rows("ORDER BY id")

    def merge_decisions(self, decisions: Sequence[Decision], merged_from: str) -> list[Decision]:
        """Append other libraries' decisions as they were (reviewer, time, score, note);
        return those appended. One transaction.

        A decision already here (equal hash, reviewer, decided_at, label and note) is
        skipped, so merging the same library twice appends nothing. `undo_of` ids belong to
        the other library and are not kept; each decision's own `merged_from` is kept when
        it has one (a decision merged into the other library before comes from its origin).
        """
        return self._decisions.merge(decisions, merged_from)

    def contested(self, hashes: Iterable[str] | None = None) -> list[Decision]:
        """Every decision on contents that more than one reviewer decided (of `hashes` when
        given), by hash then id: the only ones where reviewers can disagree."""
        return self._decisions.contested(hashes)

    def all_ai_labels(self) -> list[AiLabel]:
        """Every AI-generated row, oldest first (what a merge copies)."""
        return self._ai.rows("ORDER BY id")

    def merge_ai_labels(self, rows: Sequence[AiLabel], merged_from: str) -> list[AiLabel]:
        """As `merge_decisions`, for the AI-generated label: a row already here (equal hash,
        reviewer, decided_at and value) is skipped."""
        return self._ai.merge(rows, merged_from)

    def contested_ai(self, hashes: Iterable[str] | None = None) -> list[AiLabel]:
        """As `contested`, for the AI-generated label."""
        return self._ai.contested(hashes)
