"""Review decisions: an append-only log per content hash; the latest decision is the label.

A decision belongs to the content, not the path, so it follows a file across renames and
covers every duplicate. Nothing is ever updated or deleted (triggers refuse it): clearing
appends a NULL label and undo appends the label from before, so the log is a full audit
trail of who decided what, when, and what the model said at that moment.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from nsfw_desk.core.paths import display_path
from nsfw_desk.core.store import Library, in_chunks, now_utc, write_transaction

LABELS = ("unsafe", "safe")
MAX_NOTE = 500  # characters: a note is one line of context, not a report
MAX_TAG = 40
FALLBACK_REVIEWER = "reviewer"
_COLUMNS = (
    "id, hash, label, reviewer, decided_at, model_id, score, threshold, source_path, undo_of, "
    "source_path_bytes, note, merged_from"
)
_INSERT = (
    "INSERT INTO decisions (hash, label, reviewer, decided_at, model_id, score, "
    "threshold, source_path, source_path_bytes, undo_of, note) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The latest decision of each hash; the (hash, id) index answers it without a table scan.
_LATEST = "SELECT MAX(id) FROM decisions {where} GROUP BY hash"
# hash and label of every content whose latest decision still carries a label.
_LABELLED = (
    "SELECT hash, label FROM decisions WHERE label IS NOT NULL AND id IN ("
    + _LATEST.format(where="")
    + ")"
)


# The AI-generated label (issue 13): its own append-only log, `ai_labels`, beside decisions.
_AI_COLUMNS = (
    "id, hash, generated, reviewer, decided_at, model_id, score, threshold, source_path, "
    "undo_of, source_path_bytes"
)
_AI_INSERT = (
    "INSERT INTO ai_labels (hash, generated, reviewer, decided_at, model_id, score, "
    "threshold, source_path, source_path_bytes, undo_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_AI_LATEST = "SELECT MAX(id) FROM ai_labels {where} GROUP BY hash"
_AI_LABELLED = (
    "SELECT hash, generated FROM ai_labels WHERE generated IS NOT NULL AND id IN ("
    + _AI_LATEST.format(where="")
    + ")"
)


@dataclass(frozen=True)
class DecisionInput:
    """What the GUI knows about one item when the reviewer decides on it."""

    hash: str
    model_id: str | None = None
    score: float | None = None  # the model's unsafe score shown to the reviewer
    source_path: Path | str | bytes | None = None


@dataclass(frozen=True)
class Decision:
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
    def source(self) -> Path | None:
        """The file the reviewer looked at, exactly as it was named."""
        if self.source_path_bytes is not None:
            return Path(os.fsdecode(self.source_path_bytes))
        return Path(self.source_path) if self.source_path else None


@dataclass(frozen=True)
class AiLabel:
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


def _ai_row(row) -> AiLabel:
    values = list(row)
    values[2] = None if values[2] is None else bool(values[2])
    return AiLabel(*values)


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


def _check_label(label: str | None) -> None:
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {LABELS} or None, not {label!r}")


class ReviewStore:
    """Decisions of one library. Every write is one transaction, committed on return."""

    def __init__(self, library: Library) -> None:
        self.library = library

    @property
    def db(self) -> sqlite_utils.Database:
        return self.library.db

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
        for _, label in changes:
            _check_label(label)
        for name, aligned in (("undo_of", undo_of), ("reviewers", reviewers), ("notes", notes)):
            if aligned is not None and len(aligned) != len(changes):
                raise ValueError(f"{name} must have one entry per change")
        names = [r or reviewer for r in reviewers] if reviewers else [reviewer] * len(changes)
        for name in {reviewer, *names}:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("reviewer must be a non-empty name")
        note = clean_note(note)
        own_notes = [clean_note(n) or note for n in notes] if notes else [note] * len(changes)
        if not changes:
            return []
        if self.db.conn.in_transaction:
            # It would become a savepoint of the caller's transaction: not durable here.
            raise RuntimeError("decisions must not be written inside another transaction")
        at = now_utc()
        reverts = undo_of if undo_of is not None else [None] * len(changes)
        ids: list[int] = []
        with write_transaction(self.db):
            for (item, label), reverted, who, said in zip(
                changes, reverts, names, own_notes, strict=True
            ):
                raw = os.fsencode(item.source_path) if item.source_path is not None else None
                score = float(item.score) if item.score is not None else None
                cursor = self.db.execute(
                    _INSERT,
                    (
                        item.hash,
                        label,
                        who,
                        at,
                        item.model_id,
                        score,
                        float(threshold),
                        None if raw is None else display_path(raw),
                        raw,
                        reverted,
                        said,
                    ),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def revert(self, ids: Sequence[int], *, reviewer: str, threshold: float) -> list[int]:
        """Undo decisions `ids` by appending, for each, the label its hash had just before.

        Reverting the ids this returns is redo. When one hash appears several times in `ids`
        (duplicates in a multi-select) they all go back to the label before the earliest.
        Reads only rows older than `ids`, which never change, so no lock is needed for them.
        """
        rows = {d.id: d for d in self._decisions_by_id(ids)}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise ValueError(f"no such decisions: {missing}")
        first: dict[str, int] = {}
        for i in ids:
            first[rows[i].hash] = min(first.get(rows[i].hash, i), i)
        before = {h: self._label_before(h, i) for h, i in first.items()}
        changes = [
            (
                DecisionInput(rows[i].hash, rows[i].model_id, rows[i].score, rows[i].source),
                before[rows[i].hash],
            )
            for i in ids
        ]
        return self.apply_labels(changes, reviewer=reviewer, threshold=threshold, undo_of=list(ids))

    # reads

    def current_labels(self, hashes: Iterable[str] | None = None) -> dict[str, str]:
        """hash → label for hashes whose latest decision is not a clear; all hashes if None."""
        sql = (
            "SELECT hash, label FROM decisions WHERE label IS NOT NULL AND id IN (" + _LATEST + ")"
        )
        if hashes is None:
            return dict(self.db.execute(sql.format(where="")))
        found: dict[str, str] = {}
        for chunk, marks in in_chunks(dict.fromkeys(hashes)):
            where = f"WHERE hash IN ({marks})"
            found.update(self.db.execute(sql.format(where=where), chunk))
        return found

    def previous_labels(self, hashes: Iterable[str]) -> dict[str, str | None]:
        """Every given hash → its current label or None: what an undo has to restore."""
        hashes = list(hashes)
        current = self.current_labels(hashes)
        return {h: current.get(h) for h in hashes}

    def history(self, content_hash: str) -> list[Decision]:
        """Every decision on one content, oldest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE hash = ? ORDER BY id", (content_hash,)
        )
        return [Decision(*row) for row in rows]

    def current_decisions(self) -> list[Decision]:
        """The latest decision of every hash that still carries a label, by hash (for export)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM decisions WHERE label IS NOT NULL AND id IN ("
            + _LATEST.format(where="")
            + ") ORDER BY hash"
        )
        return [Decision(*row) for row in rows]

    def reviewed_scores(self, model_id: str) -> list[tuple[float, bool]]:
        """(score, reviewed unsafe) of every content with a current label and a score from
        `model_id`, by hash: one row per content, however many paths share it."""
        rows = self.db.execute(
            f"SELECT s.unsafe, l.label = 'unsafe' FROM ({_LABELLED}) l "
            "JOIN scores s ON s.hash = l.hash AND s.model_id = ? "
            "WHERE s.unsafe IS NOT NULL ORDER BY l.hash",
            (model_id,),
        )
        return [(float(score), bool(unsafe)) for score, unsafe in rows]

    def models_with_reviews(self) -> list[tuple[str, int]]:
        """(model id, reviewed contents it scored), most first: which models can be
        calibrated."""
        rows = self.db.execute(
            f"SELECT s.model_id, COUNT(*) AS n FROM ({_LABELLED}) l "
            "JOIN scores s ON s.hash = l.hash WHERE s.unsafe IS NOT NULL "
            "GROUP BY s.model_id ORDER BY n DESC, s.model_id"
        )
        return [(model_id, int(n)) for model_id, n in rows]

    def counts(self) -> dict[str, int]:
        """How many contents currently carry each label (every label present, maybe 0)."""
        rows = self.db.execute(
            "SELECT label, COUNT(*) FROM decisions WHERE label IS NOT NULL AND id IN ("
            + _LATEST.format(where="")
            + ") GROUP BY label"
        )
        return {label: 0 for label in LABELS} | dict(rows)

    def latest_notes(self, hashes: Iterable[str] | None = None) -> dict[str, str]:
        """hash → its most recent note (for export and the tile's tooltip); all if None."""
        sql = (
            "SELECT hash, note FROM decisions WHERE id IN ("
            "SELECT MAX(id) FROM decisions WHERE note IS NOT NULL {where} GROUP BY hash)"
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
        changes = list(changes)
        for _, value in changes:
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"ai_generated must be True, False or None, not {value!r}")
        for name, aligned in (("undo_of", undo_of), ("reviewers", reviewers)):
            if aligned is not None and len(aligned) != len(changes):
                raise ValueError(f"{name} must have one entry per change")
        names = [r or reviewer for r in reviewers] if reviewers else [reviewer] * len(changes)
        for name in {reviewer, *names}:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("reviewer must be a non-empty name")
        if not changes:
            return []
        if self.db.conn.in_transaction:
            raise RuntimeError("labels must not be written inside another transaction")
        at = now_utc()
        reverts = undo_of if undo_of is not None else [None] * len(changes)
        ids: list[int] = []
        with write_transaction(self.db):
            for (item, value), reverted, who in zip(changes, reverts, names, strict=True):
                raw = os.fsencode(item.source_path) if item.source_path is not None else None
                cursor = self.db.execute(
                    _AI_INSERT,
                    (
                        item.hash,
                        None if value is None else int(value),
                        who,
                        at,
                        item.model_id,
                        None if item.score is None else float(item.score),
                        None if threshold is None else float(threshold),
                        None if raw is None else display_path(raw),
                        raw,
                        reverted,
                    ),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def revert_ai(
        self, ids: Sequence[int], *, reviewer: str, threshold: float | None = None
    ) -> list[int]:
        """Undo AI-generated rows `ids` by appending the value each hash had just before;
        reverting what this returns is redo (as `revert` for decisions)."""
        rows = {r.id: r for r in self._ai_by_id(ids)}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise ValueError(f"no such AI-generated labels: {missing}")
        first: dict[str, int] = {}
        for i in ids:
            first[rows[i].hash] = min(first.get(rows[i].hash, i), i)
        before = {h: self._ai_before(h, i) for h, i in first.items()}
        changes = [
            (
                DecisionInput(rows[i].hash, rows[i].model_id, rows[i].score, _source(rows[i])),
                before[rows[i].hash],
            )
            for i in ids
        ]
        return self.apply_ai_labels(
            changes, reviewer=reviewer, threshold=threshold, undo_of=list(ids)
        )

    def current_ai_labels(self, hashes: Iterable[str] | None = None) -> dict[str, bool]:
        """hash → True (AI-generated) / False (real) for contents with a current value."""
        sql = (
            "SELECT hash, generated FROM ai_labels WHERE generated IS NOT NULL AND id IN ("
            + _AI_LATEST
            + ")"
        )
        found: dict[str, bool] = {}
        if hashes is None:
            batches: Iterable = [(sql.format(where=""), [])]
        else:
            batches = (
                (sql.format(where=f"WHERE hash IN ({marks})"), chunk)
                for chunk, marks in in_chunks(dict.fromkeys(hashes))
            )
        for statement, params in batches:
            found.update((h, bool(v)) for h, v in self.db.execute(statement, params))
        return found

    def previous_ai_labels(self, hashes: Iterable[str]) -> dict[str, bool | None]:
        """Every given hash → its current AI-generated value or None."""
        hashes = list(hashes)
        current = self.current_ai_labels(hashes)
        return {h: current.get(h) for h in hashes}

    def ai_history(self, content_hash: str) -> list[AiLabel]:
        """Every AI-generated row of one content, oldest first."""
        rows = self.db.execute(
            f"SELECT {_AI_COLUMNS} FROM ai_labels WHERE hash = ? ORDER BY id", (content_hash,)
        )
        return [_ai_row(row) for row in rows]

    def ai_reviewed_scores(self, model_id: str) -> list[tuple[float, bool]]:
        """(score, reviewed AI-generated) of every content with a current AI-generated value
        and a score from `model_id`, by hash: what calibrates an AI detector."""
        rows = self.db.execute(
            f"SELECT s.unsafe, l.generated FROM ({_AI_LABELLED}) l "
            "JOIN scores s ON s.hash = l.hash AND s.model_id = ? "
            "WHERE s.unsafe IS NOT NULL ORDER BY l.hash",
            (model_id,),
        )
        return [(float(score), bool(generated)) for score, generated in rows]

    def models_with_ai_reviews(self) -> list[tuple[str, int]]:
        """(model id, AI-generated-labelled contents it scored), most first."""
        rows = self.db.execute(
            f"SELECT s.model_id, COUNT(*) AS n FROM ({_AI_LABELLED}) l "
            "JOIN scores s ON s.hash = l.hash WHERE s.unsafe IS NOT NULL "
            "GROUP BY s.model_id ORDER BY n DESC, s.model_id"
        )
        return [(model_id, int(n)) for model_id, n in rows]

    def ai_counts(self) -> dict[str, int]:
        """How many contents are now labelled AI-generated and real."""
        rows = dict(
            self.db.execute(
                f"SELECT generated, COUNT(*) FROM ({_AI_LABELLED}) GROUP BY generated"
            ).fetchall()
        )
        return {"generated": int(rows.get(1, 0)), "real": int(rows.get(0, 0))}

    def _ai_by_id(self, ids: Sequence[int]) -> list[AiLabel]:
        found: list[AiLabel] = []
        for chunk, marks in in_chunks([int(i) for i in ids]):
            rows = self.db.execute(
                f"SELECT {_AI_COLUMNS} FROM ai_labels WHERE id IN ({marks})", chunk
            )
            found.extend(_ai_row(row) for row in rows)
        return found

    def _ai_before(self, content_hash: str, row_id: int) -> bool | None:
        row = self.db.execute(
            "SELECT generated FROM ai_labels WHERE hash = ? AND id < ? ORDER BY id DESC LIMIT 1",
            (content_hash, row_id),
        ).fetchone()
        return None if row is None or row[0] is None else bool(row[0])

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
        if hashes is None:
            batches: Iterable = [(sql.format(where=""), [])]
        else:
            batches = (
                (sql.format(where=f"WHERE hash IN ({marks})"), chunk)
                for chunk, marks in in_chunks(dict.fromkeys(hashes))
            )
        for statement, params in batches:
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
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM decisions ORDER BY id")
        return [Decision(*row) for row in rows]

    def merge_decisions(self, decisions: Sequence[Decision], merged_from: str) -> list[Decision]:
        """Append other libraries' decisions as they were (reviewer, time, score, note);
        return those appended. One transaction.

        A decision already here (equal hash, reviewer, decided_at, label and note) is
        skipped, so merging the same library twice appends nothing. `undo_of` ids belong to
        the other library and are not kept; each decision's own `merged_from` is kept when
        it has one (a decision merged into the other library before comes from its origin).
        """
        if self.db.conn.in_transaction:
            raise RuntimeError("decisions must not be written inside another transaction")
        added: list[Decision] = []
        seen: set[tuple] = set()
        with write_transaction(self.db):
            for d in sorted(decisions, key=lambda d: (d.decided_at, d.id)):
                _check_label(d.label)
                key = (d.hash, d.reviewer, d.decided_at, d.label, d.note)
                if key in seen:
                    continue
                seen.add(key)
                if self.db.execute(
                    "SELECT 1 FROM decisions WHERE hash = ? AND reviewer = ? AND decided_at = ? "
                    "AND label IS ? AND note IS ? LIMIT 1",
                    key,
                ).fetchone():
                    continue
                self.db.execute(
                    "INSERT INTO decisions (hash, label, reviewer, decided_at, model_id, score, "
                    "threshold, source_path, source_path_bytes, undo_of, note, merged_from) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    (
                        d.hash,
                        d.label,
                        d.reviewer,
                        d.decided_at,
                        d.model_id,
                        d.score,
                        d.threshold,
                        d.source_path,
                        d.source_path_bytes,
                        d.note,
                        d.merged_from or merged_from,
                    ),
                )
                added.append(d)
        return added

    def contested(self, hashes: Iterable[str] | None = None) -> list[Decision]:
        """Every decision on contents that more than one reviewer decided (of `hashes` when
        given), by hash then id: the only ones where reviewers can disagree."""
        sql = (
            f"SELECT {_COLUMNS} FROM decisions WHERE hash IN (SELECT hash FROM decisions "
            "{where} GROUP BY hash HAVING COUNT(DISTINCT reviewer) > 1) ORDER BY hash, id"
        )
        if hashes is None:
            return [Decision(*row) for row in self.db.execute(sql.format(where=""))]
        found: list[Decision] = []
        for chunk, marks in in_chunks(sorted(set(hashes))):
            rows = self.db.execute(sql.format(where=f"WHERE hash IN ({marks})"), chunk)
            found.extend(Decision(*row) for row in rows)
        return found

    def _decisions_by_id(self, ids: Sequence[int]) -> list[Decision]:
        found: list[Decision] = []
        for chunk, marks in in_chunks([int(i) for i in ids]):
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM decisions WHERE id IN ({marks})", chunk)
            found.extend(Decision(*row) for row in rows)
        return found

    def _label_before(self, content_hash: str, decision_id: int) -> str | None:
        row = self.db.execute(
            "SELECT label FROM decisions WHERE hash = ? AND id < ? ORDER BY id DESC LIMIT 1",
            (content_hash, decision_id),
        ).fetchone()
        return row[0] if row else None


def _source(row: AiLabel) -> Path | None:
    if row.source_path_bytes is not None:
        return Path(os.fsdecode(row.source_path_bytes))
    return Path(row.source_path) if row.source_path else None
