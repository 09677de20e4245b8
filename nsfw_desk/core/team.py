"""Several reviewers: merge their libraries, split the work, find conflicts, measure agreement.

Decisions follow the content (its hash), so another reviewer's library merges by hash: every
decision comes in as it was made (reviewer, time, the model's score and threshold, note) and
is appended to the log. A decision is the same one in two libraries when its hash, reviewer,
time, label and note are equal, so a second merge of one library appends nothing (and a
library copied from this one, then merged back, brings only what was decided since).

Each reviewer's label of an item is their latest decision on it (by time). Two reviewers
whose labels differ make a *conflict*. The moderator resolves it by deciding the item in
this library while it is in conflict (any decision, recorded like every other); from then
on only decisions after that resolution count, so it stays resolved until someone disagrees
again (a later merge bringing a different label). Undoing the resolution brings the conflict
back. See `conflicts`.

The AI-generated label (issue 13, its own log beside the decisions) travels the same way:
merged by hash with its reviewer and time, skipped when already here, and two reviewers whose
AI-generated labels differ make a conflict of its own (`ai_conflicts`), resolved by the
moderator's AI-generated label in this library. The desk's Conflicts filter shows both kinds
(`desk_conflicts`).

The work split (`assign`) is rendezvous hashing: each content goes to the reviewer whose
hash of (reviewer, content) is highest, and a fixed fraction of contents (chosen by their
own hash) also to the second highest, for measuring agreement. Deterministic, needs no
state, and adding a reviewer moves only the contents the newcomer wins.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from pathlib import Path

from nsfw_desk.core.paths import display_path
from nsfw_desk.core.review import AiLabel, Decision, ReviewStore
from nsfw_desk.core.store import Library, LibraryError, stored_schema_version

SESSION_GAP_S = 10 * 60  # a longer pause between two decisions ends a review session


# --- merge --------------------------------------------------------------------------------


@dataclass
class MergeReport:
    """What one merge brought in."""

    source: Path
    source_id: str
    seen: int = 0  # decisions in the other library
    added: int = 0  # appended here (the rest were here already)
    reviewers: Counter = field(default_factory=Counter)  # reviewer → decisions appended
    contents: int = 0  # distinct contents the appended decisions are on
    unknown_contents: int = 0  # of those, contents no file of this library holds
    care_rows: int = 0  # care rows brought (only with include_care)
    ai_seen: int = 0  # AI-generated labels in the other library
    ai_added: int = 0  # of those, appended here
    ai_reviewers: Counter = field(default_factory=Counter)  # reviewer → AI labels appended
    same_library: bool = False  # the other file is this library itself


def check_other_library(library_path: Path, other_path: Path) -> None:
    """LibraryError, with what to give instead, unless `other_path` is another nsfw-desk
    library that `merge_library` can read; checked without writing to it."""
    if not other_path.is_file():
        raise LibraryError(f"no library at {other_path}: give the path of a library.sqlite")
    if other_path.resolve() == library_path.resolve():
        raise LibraryError(f"{other_path} is this library itself; merge another reviewer's")
    if stored_schema_version(other_path) == 0:
        raise LibraryError(
            f"{display_path(other_path)} is not an nsfw-desk library (an empty file or another "
            "program's database); give the path of a library.sqlite"
        )


def merge_library(library: Library, other_path: Path, *, include_care: bool = False) -> MergeReport:
    """Append `other_path`'s decisions (and its care stats when asked) to `library`.

    The other library is opened read-only in spirit: nothing is written to it (opening it
    may migrate it to this version's schema, as any nsfw-desk would), and no thumbnail file
    is made beside it. A file that is no nsfw-desk library (empty, or another program's
    database) is refused untouched. Contents that no file here holds keep their decisions
    and are counted; they show once a scan finds them.
    """
    other_path = Path(other_path)
    check_other_library(Path(library.path), other_path)
    with tempfile.TemporaryDirectory(prefix="nsfw-desk-merge-") as scratch:
        return _merge_from(
            library,
            Library(other_path, Path(scratch) / "thumbnails.sqlite"),
            other_path,
            include_care,
        )


def _merge_from(
    library: Library, other: Library, other_path: Path, include_care: bool
) -> MergeReport:
    try:
        source_id = other.library_id()
        decisions = ReviewStore(other).all_decisions()
        ai_rows = ReviewStore(other).all_ai_labels()
        care = other.care_rows() if include_care else []
    finally:
        other.close()
    report = MergeReport(
        source=other_path, source_id=source_id, seen=len(decisions), ai_seen=len(ai_rows)
    )
    reviews = ReviewStore(library)
    added = reviews.merge_decisions(decisions, source_id)
    report.added = len(added)
    report.reviewers = Counter(d.reviewer for d in added)
    ai_added = reviews.merge_ai_labels(ai_rows, source_id)
    report.ai_added = len(ai_added)
    report.ai_reviewers = Counter(r.reviewer for r in ai_added)
    hashes = {d.hash for d in added} | {r.hash for r in ai_added}
    report.contents = len(hashes)
    report.unknown_contents = len(hashes - library.hashes_with_files(hashes))
    if include_care:
        own = library.library_id()
        rows = [
            (reviewer, day, origin or source_id, reveals, reveal_ms, flagged, review_ms)
            for reviewer, day, origin, reveals, reveal_ms, flagged, review_ms in care
            if (origin or source_id) != own  # this library's own rows, come back: skip
        ]
        report.care_rows = library.put_care_rows(rows)
    return report


# --- each reviewer's label, conflicts -------------------------------------------------------


# Decisions and AI-generated labels alike (`Row`): `.value` is the label, None a clear.
Row = Decision | AiLabel
AI_WORDS = {True: "AI", False: "real"}  # an AI-generated label, as a reviewer's label reads


def _later(a: Row, b: Row) -> bool:
    return (a.decided_at, a.id) > (b.decided_at, b.id)


def reviewer_labels(decisions: Iterable[Row]) -> dict[str, dict[str, str]]:
    """hash → {reviewer: label} from each reviewer's latest decision (clears drop out);
    of AI-generated rows, the label reads AI or real."""
    latest: dict[tuple[str, str], Row] = {}
    for d in decisions:
        key = (d.hash, d.reviewer)
        if key not in latest or _later(d, latest[key]):
            latest[key] = d
    labels: dict[str, dict[str, str]] = {}
    for (digest, reviewer), d in latest.items():
        if d.value is not None:
            labels.setdefault(digest, {})[reviewer] = _word(d)
    return labels


def _word(row: Row) -> str:
    return AI_WORDS[bool(row.value)] if isinstance(row, AiLabel) else str(row.value)


def _in_conflict(state: dict[str, Row]) -> bool:
    return len({d.value for d in state.values() if d.value is not None}) > 1


def _conflict_state(history: Sequence[Row]) -> dict[str, Row]:
    """reviewer → their latest decision that still counts, walking one content's log in
    id order: a decision made here while the content was in conflict resolves it (only it
    counts after), and undoing a decision puts back what counted before it."""
    state: dict[str, Row] = {}
    before: dict[int, dict[str, Row]] = {}  # decision id → state just before it
    for d in history:
        before[d.id] = dict(state)
        if d.undo_of is not None and d.undo_of in before:
            state = dict(before[d.undo_of])
            continue
        if d.merged_from is None and _in_conflict(state):
            state = {d.reviewer: d}
            continue
        held = state.get(d.reviewer)
        if held is None or _later(d, held):
            state[d.reviewer] = d
    return state


def conflicts(
    reviews: ReviewStore, hashes: Iterable[str] | None = None
) -> dict[str, dict[str, str]]:
    """hash → {reviewer: label} of every content (of `hashes` when given) whose reviewers
    disagree, unresolved."""
    return _conflicts(reviews.contested(hashes))


def ai_conflicts(
    reviews: ReviewStore, hashes: Iterable[str] | None = None
) -> dict[str, dict[str, str]]:
    """hash → {reviewer: "AI" | "real"} of every content (of `hashes` when given) whose
    reviewers' AI-generated labels differ, unresolved."""
    return _conflicts(reviews.contested_ai(hashes))


def desk_conflicts(
    reviews: ReviewStore, hashes: Iterable[str] | None = None
) -> dict[str, dict[str, str]]:
    """Both kinds for the desk's Conflicts filter: hash → {reviewer: label}, where a
    content in conflict on both says each reviewer's two labels ("unsafe + AI")."""
    found = conflicts(reviews, hashes)
    for digest, by in ai_conflicts(reviews, hashes).items():
        mine = found.setdefault(digest, {})
        for reviewer, word in by.items():
            mine[reviewer] = f"{mine[reviewer]} + {word}" if reviewer in mine else word
        found[digest] = dict(sorted(mine.items()))
    return found


def _conflicts(rows: Iterable[Row]) -> dict[str, dict[str, str]]:
    """Unresolved conflicts of contested rows given by hash then id."""
    found: dict[str, dict[str, str]] = {}
    history: list[Row] = []

    def close() -> None:
        state = _conflict_state(history)
        if _in_conflict(state):
            found[history[0].hash] = {
                r: _word(d) for r, d in sorted(state.items()) if d.value is not None
            }

    for d in rows:
        if history and d.hash != history[0].hash:
            close()
            history = []
        history.append(d)
    if history:
        close()
    return found


# --- work split -----------------------------------------------------------------------------


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts' BLAKE2b: the same everywhere, every run."""
    digest = hashlib.blake2b("\0".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_contents(
    hashes: Iterable[str], reviewers: Sequence[str], overlap: float
) -> list[tuple[str, str]]:
    """(hash, reviewer) rows: each content to one reviewer, `overlap` of them to two."""
    names = list(dict.fromkeys(r.strip() for r in reviewers if r.strip()))
    if not names:
        raise ValueError("give at least one reviewer name")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError("overlap is a fraction between 0 and 1")
    rows: list[tuple[str, str]] = []
    for digest in sorted(set(hashes)):
        ranked = sorted(names, key=lambda r: _unit("assign", r, digest), reverse=True)
        rows.append((digest, ranked[0]))
        if len(ranked) > 1 and _unit("overlap", digest) < overlap:
            rows.append((digest, ranked[1]))
    return rows


@dataclass(frozen=True)
class Assignment:
    contents: int
    per_reviewer: dict[str, int]
    overlap: int  # contents given to two reviewers


def assign(
    library: Library, reviewers: Sequence[str], overlap: float, folder: Path | None = None
) -> Assignment:
    """Split the library's contents (those under `folder`) and store the split; re-running
    with the same reviewers gives the same rows."""
    hashes = library.hashes_under(folder) if folder else set(library.all_content_hashes())
    hashes = {h for h in hashes if h}  # files listed without a hash yet have none
    rows = assign_contents(hashes, reviewers, overlap)
    library.replace_assignments(hashes, rows)
    per = Counter(r for _, r in rows)
    twice = sum(1 for n in Counter(h for h, _ in rows).values() if n > 1)
    return Assignment(len(hashes), dict(sorted(per.items())), twice)


# --- agreement ------------------------------------------------------------------------------


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items; None when chance agreement is
    certain (both gave one and the same label to everything: kappa is undefined)."""
    if len(a) != len(b):
        raise ValueError("both raters need a label for each item")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[k] * count_b[k] for k in set(a) | set(b)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


@dataclass(frozen=True)
class PairAgreement:
    reviewers: tuple[str, str]
    both: int  # contents both labelled
    agree: int
    percent: float | None  # agree / both × 100
    kappa: float | None


@dataclass(frozen=True)
class ReviewerStats:
    reviewer: str
    decisions: int  # labels given (clears and undo steps not counted)
    corrections: int  # of those, labels that differ from the model's flag at the time
    judged: int  # of those, with the model's score and threshold recorded (corrections of)
    sessions: int  # runs of decisions with no pause over SESSION_GAP_S
    active_s: float  # the time between consecutive decisions within sessions
    per_hour: float | None  # decisions after a session's first, per active hour


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def reviewer_stats(decisions: Sequence[Decision]) -> list[ReviewerStats]:
    """Per reviewer: decisions, corrections of the model and pace, by name."""
    by_reviewer: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.label is not None and d.undo_of is None:
            by_reviewer.setdefault(d.reviewer, []).append(d)
    stats: list[ReviewerStats] = []
    for reviewer, mine in sorted(by_reviewer.items()):
        judged = [d for d in mine if d.score is not None and d.threshold is not None]
        corrections = sum(
            (d.label == "unsafe") != (float(d.score) >= float(d.threshold))  # type: ignore[arg-type]
            for d in judged
        )
        times = sorted(_seconds(d.decided_at) for d in mine)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        steady = [g for g in gaps if g <= SESSION_GAP_S]
        active = float(sum(steady))
        sessions = 1 + sum(g > SESSION_GAP_S for g in gaps)
        stats.append(
            ReviewerStats(
                reviewer,
                len(mine),
                corrections,
                len(judged),
                sessions,
                active,
                len(steady) / (active / 3600) if active > 0 else None,
            )
        )
    return stats


@dataclass(frozen=True)
class Agreement:
    pairs: list[PairAgreement]
    reviewers: list[ReviewerStats]
    conflicts: int  # contents in conflict now (unresolved)
    ai_pairs: list[PairAgreement] = field(default_factory=list)  # on the AI-generated label
    ai_conflicts: int = 0


def pair_agreement(labels: dict[str, dict[str, str]]) -> list[PairAgreement]:
    """For each pair of reviewers, agreement on the contents both labelled."""
    names = sorted({r for by in labels.values() for r in by})
    pairs: list[PairAgreement] = []
    for first, second in combinations(names, 2):
        shared = [(by[first], by[second]) for by in labels.values() if first in by and second in by]
        a = [x for x, _ in shared]
        b = [y for _, y in shared]
        agree = sum(x == y for x, y in shared)
        pairs.append(
            PairAgreement(
                (first, second),
                len(shared),
                agree,
                100.0 * agree / len(shared) if shared else None,
                cohen_kappa(a, b),
            )
        )
    return pairs


def agreement(library: Library) -> Agreement:
    """Pairwise agreement (each reviewer's latest label of each content) and per-reviewer
    figures, from the whole decision log; pairwise agreement on the AI-generated label
    apart."""
    reviews = ReviewStore(library)
    decisions = reviews.all_decisions()
    return Agreement(
        pair_agreement(reviewer_labels(decisions)),
        reviewer_stats(decisions),
        len(conflicts(reviews)),
        pair_agreement(reviewer_labels(reviews.all_ai_labels())),
        len(ai_conflicts(reviews)),
    )
