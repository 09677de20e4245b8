"""The results grid: a list model over numpy columns, sorted and filtered without the model.

Rows are files; the view shows `visible`, a list of row numbers in display order. Changing
the threshold only compares a float array, so re-splitting 100,000 items takes milliseconds.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, Qt, Signal

from nsfw_desk.core import defaults
from nsfw_desk.core.paths import display_path
from nsfw_desk.core.result_columns import HASH_WIDTH, ResultColumns
from nsfw_desk.core.store import FileOutcome
from nsfw_desk.core.units import count
from nsfw_desk.gui import grid_columns


class Role(IntEnum):
    PATH = Qt.ItemDataRole.UserRole + 1
    HASH = PATH + 1
    SCORE = PATH + 2
    FLAGGED = PATH + 3
    LABEL = PATH + 4
    ERROR = PATH + 5
    SAVING = PATH + 6  # a decision on this content is made but not yet committed
    COPIES = PATH + 7  # how many files in the folder hold this content
    TAGS = PATH + 8  # the content's tags (gui/tags.py), a tuple of str
    SIZE = PATH + 9  # the file's size in bytes, or None when unknown
    OTHER_SCORE = PATH + 10  # the compared model's score ("Models disagree"), or None
    NEAR = PATH + 11  # how many other contents of the folder are near-duplicates of this one
    SIMILARITY = PATH + 12  # cosine similarity to the item "Show similar" started from, or None
    LISTS = PATH + 13  # the hash-list entries the content matches (core/hashlists.Match), a tuple
    LISTED_UNSAFE = PATH + 14  # the name of an `unsafe` list it matches (flagged by it), or None
    # While near-duplicates are grouped: (files of its group in this view, collapsed?) when
    # the tile is a collapsed group or a member of an expanded one; else None.
    GROUP = PATH + 15
    CHIPS = PATH + 16  # several detectors: ((short name, kind, score or None, over its threshold),
    # …), the primary first; () with one detector
    AI_LABEL = PATH + 17  # the AI-generated label: True (AI), False (real), None
    REVIEWERS = PATH + 18  # a conflict's {reviewer: label} (gui/team.py), or None
    # Everything a tile paints, in one call: role → value for each of TILE_ROLES. The
    # delegate asks once per tile instead of twenty times through Qt (scrolling at a
    # million items paints a screenful per frame, and each crossing costs).
    TILE = PATH + 19


TILE_ROLES = (
    Qt.ItemDataRole.DisplayRole,
    Role.HASH,
    Role.ERROR,
    Role.SCORE,
    Role.LISTED_UNSAFE,
    Role.CHIPS,
    Role.FLAGGED,
    Role.LABEL,
    Role.TAGS,
    Role.REVIEWERS,
    Role.LISTS,
    Role.SIMILARITY,
    Role.GROUP,
    Role.SIZE,
    Role.OTHER_SCORE,
    Role.SAVING,
    Role.COPIES,
    Role.NEAR,
    Role.AI_LABEL,
)


# Short enough for the toolbar's narrow box (a longer one was cut to "Score (highest fir");
# each item's tooltip says the order in full.
SORTS = {
    "score": "Score",
    "name": "Name",
    "modified": "Newest",
    "disagreement": "Disagreement",
    "uncertain": "Uncertain",  # score nearest the threshold (said in the UI)
}
FILTERS = {
    "all": "All",
    "flagged": "Flagged",
    "unflagged": "Not flagged",
    "reviewed": "Reviewed",
    "unreviewed": "Not reviewed",
    "disagreements": "Disagreements",
    "errors": "Errors",
    "models_disagree": "Models disagree",
    "hash_lists": "Hash list matches",
    "ai_generated": "Labelled AI-generated",
    "ai_real": "Labelled real",
    "conflicts": "Conflicts",  # reviewers' labels differ (core/team.py), unresolved
    "assigned": "Assigned to me",  # the work split of `nsfw-desk assign`, Settings' reviewer
}
_TEAM_FILTERS = {"conflicts", "assigned"}
# The Show filters' keys: Alt+1 … Alt+9 the first nine in order, Alt+0 Conflicts; the rest
# only in the menu and the toolbar.
FILTER_KEYS = {key: f"Alt+{n}" for n, key in enumerate(list(FILTERS)[:9], start=1)} | {
    "conflicts": "Alt+0"
}
DETECTOR_FILTER = "flagged:"  # + model id: flagged by that detector (several detectors)
DETECTOR_SORT = "score:"  # + model id: that detector's score, highest first
_THRESHOLD_FILTERS = {"flagged", "unflagged", "disagreements", "models_disagree"}
_THRESHOLD_SORTS = {"disagreement", "uncertain"}
SORT_TIPS = {
    "score": "Highest score first",
    "name": "By file name",
    "modified": "Newest modification time first",
    "disagreement": "Reviewed items whose label is furthest from the model's score first",
    "uncertain": "Scores nearest the threshold first: the items the model is least sure about",
}  # the last two move with the threshold


@dataclass(frozen=True)
class Counts:
    total: int
    flagged: int
    reviewed: int  # files whose content carries a label
    errors: int
    reviewed_images: int = 0  # distinct contents among them (exact copies count once)
    by_list: int = 0  # files flagged by an `unsafe` hash list that the model did not flag
    list_names: tuple[str, ...] = ()  # the `unsafe` lists that flagged them

    def __str__(self) -> str:
        # Files, as the grid shows them; the distinct images are what calibration and
        # `nsfw-desk metrics` count (those with a score), so say both when they differ.
        images = (
            f" ({self.reviewed_images:,} distinct image{'s' if self.reviewed_images != 1 else ''})"
            if self.reviewed_images != self.reviewed
            else ""
        )
        listed = (
            f" ({self.by_list:,} by list: {', '.join(self.list_names)})" if self.by_list else ""
        )
        return (
            f"{self.flagged:,} flagged{listed} of {count(self.total, 'file')} · "
            f"{count(self.reviewed, 'file')} reviewed{images} · {count(self.errors, 'error')}"
        )


class ResultsModel(QAbstractListModel):
    """Files of one folder with scores, reviewer labels and errors; sorted and filtered.

    A threshold move that keeps the same rows emits `marks_changed` instead of dataChanged
    over every row: Qt's views do work per row for a big dataChanged (150 ms for 100,000
    rows here), while repainting the visible tiles is all that is needed.
    """

    marks_changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.threshold = defaults.THRESHOLD
        self.sort = "score"
        self.filter = "all"
        self.folder: Path | None = None
        self.saving: Collection[str] = ()  # hashes with a decision still being written
        self.tags: dict[str, tuple[str, ...]] = {}  # hash → tags, kept by gui/tags.py
        self.tag_filter: str | None = None  # only contents with this tag (on top of `filter`)
        self.near: dict[str, int] = {}  # hash → near-duplicates in its group (gui/near_dupes.py)
        # The model "Models disagree" compares with; its scores are the `_other` column.
        self.other_model_id: str | None = None
        self.other_model_name: str | None = None  # for the tile's tooltip
        # "Show similar": hash → similarity, shown in that order instead of sort and filter.
        self.similar: dict[str, float] | None = None
        # Hash lists (core/hashlists.py): hash → matches, and hash → `unsafe` list name.
        self.list_matches: dict[str, tuple] = {}
        self._unsafe_listed: dict[str, str] = {}
        # Near-duplicate groups (gui/dupe_tasks.py): hash → group number; while `grouped`,
        # each group not in `expanded` shows as one tile, its first member in the sort order.
        self.grouped = False
        self.expanded: set[int] = set()
        self._group_of_hash: dict[str, int] = {}
        self._group_count = 0
        # Several detectors (issue 13): the shown model is the primary; `detectors` are the
        # others, each with a score column and its own threshold. core/detector_columns.py
        self.primary_kind = "nsfw"
        self.primary_chip = ""  # "NSFW Marqo" beside another NSFW detector (chip_names)
        self.detectors: list = []  # DetectorColumn, their thresholds live in _det_thresholds
        self._det_thresholds: list[float] = []
        self.flag_rule = "any"  # or "primary": only the primary's score flags
        self._ai: dict[str, bool] = {}  # hash → AI-generated label
        # Several reviewers (gui/team.py): unresolved conflicts, and my assigned contents.
        self.conflicts: dict[str, dict[str, str]] = {}
        self.assigned: frozenset[str] = frozenset()
        self._clear_columns()

    def _clear_columns(self) -> None:
        self._paths: list[Path] = []
        self._names: list[str] = []
        self._hashes: list[str | None] = []
        self._errors: list[str | None] = []
        self._scores = np.empty(0, dtype=np.float64)
        self._other = np.empty(0, dtype=np.float64)  # the compared model's scores; NaN: none
        self._det = [np.empty(0, dtype=np.float64) for _ in self.detectors]  # NaN: no score
        self._listed = np.empty(0, dtype=bool)  # an `unsafe` hash list matches the content
        self._mtimes = np.empty(0, dtype=np.int64)
        self._sizes = np.empty(0, dtype=np.int64)  # bytes; -1 unknown
        # Kept per row as labels and results change, so the review queue is one numpy step.
        self._open = np.empty(0, dtype=bool)  # can take a label: scanned, no error
        self._label_codes = np.empty(0, dtype=np.int8)  # 1 unsafe, 0 safe, -1 none
        self._row_of_path: dict[Path, int] = {}
        self._rows_of_hash: dict[str, list[int]] = {}
        self._labels: dict[str, str] = {}
        # Every shown row in display order: numpy, so a re-split over a million rows is a
        # few array passes (a list would be converted back and forth); `_positions` is its
        # inverse (row → position, -1: not shown), made when a lookup asks for it.
        self._visible = np.empty(0, dtype=np.int64)
        self._positions: np.ndarray | None = None
        self._review_counts: tuple[int, int] | None = None  # (files, images) labelled
        self._keys: list[tuple] | None = None
        self._order: np.ndarray | None = None  # every row in sort order; None: stale
        self._group = np.empty(0, dtype=np.int64)  # per row: its group number, -1 none
        self._view_rows = np.empty(0, dtype=np.int64)  # every row the tiles stand for
        self._in_view = np.zeros(0, dtype=np.int64)  # per group: its files in this view
        # Per group: the row whose tile shows it while collapsed, -1 when it is not collapsed.
        self._tile_of_group = np.empty(0, dtype=np.int64)
        self._regroup = False  # a grouped row changed: the next insert recomputes the view

    # --- Qt model interface ------------------------------------------------------------

    def rowCount(self, parent=None) -> int:  # noqa: N802 (Qt API)
        return 0 if parent is not None and parent.isValid() else len(self._visible)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._visible):
            return None
        row = int(self._visible[index.row()])
        if role == Role.TILE:
            return self._tile_data(row)
        return self._row_data(row, role)

    def _tile_data(self, row: int) -> dict:
        """What `_row_data` says for each of TILE_ROLES, with the row's hash decoded once."""
        digest = self._hashes[row]
        key = digest or ""
        score = self._scores[row]
        other = self._other[row]
        size = self._sizes[row]
        similar = self.similar
        return {
            Qt.ItemDataRole.DisplayRole: shown_name(self._names[row]),
            Role.HASH: digest,
            Role.ERROR: self._errors[row],
            Role.SCORE: None if math.isnan(score) else float(score),
            Role.LISTED_UNSAFE: self._unsafe_listed.get(key),
            Role.CHIPS: self.chips(row),
            Role.FLAGGED: bool(self._flagged_row(row)),
            Role.LABEL: self._labels.get(digest) if digest else None,
            Role.TAGS: self.tags.get(digest, ()) if digest else (),
            Role.REVIEWERS: self.conflicts.get(key),
            Role.LISTS: self.list_matches.get(key, ()),
            Role.SIMILARITY: None if similar is None else similar.get(key),
            Role.GROUP: self._group_state(row),
            Role.SIZE: None if size < 0 else int(size),
            Role.OTHER_SCORE: None if math.isnan(other) else float(other),
            Role.SAVING: digest is not None and digest in self.saving,
            Role.COPIES: max(1, self.copies_of(digest)),
            Role.NEAR: self.near.get(digest, 0) if digest else 0,
            Role.AI_LABEL: self._ai.get(key),
        }

    def _row_data(self, row: int, role):
        if role == Qt.ItemDataRole.DisplayRole:
            return shown_name(self._names[row])
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = display_path(self._paths[row]) + (
                f"\n{self._errors[row]}" if self._errors[row] else ""
            )
            if not math.isnan(self._other[row]):  # what "⇄ 0.12" on the tile is
                tip += f"\n⇄ {self._other[row]:.3f}: {self.other_model_name or 'compared model'}"
            for detector, column, threshold in zip(
                self.detectors, self._det, self._det_thresholds, strict=True
            ):  # what each chip is
                value = column[row]
                said = "no score" if math.isnan(value) else f"{value:.3f}"
                tip += f"\n{detector.short} {said} (threshold {threshold:.2f}): {detector.name}"
            ai = self._ai.get(self._hashes[row] or "")
            if ai is not None:
                tip += "\nLabelled AI-generated (G)" if ai else "\nLabelled real (R)"
            near = self.near.get(self._hashes[row] or "", 0)
            if near:  # what "≈3" on the tile is
                tip += f"\n≈{near}: near-duplicates in this folder (Shift+U / Shift+S label all)"
            state = self._group_state(row)
            if state is not None:  # what the group badge is
                tip += f"\nA group of {state[0]} near-duplicate files in this view: " + (
                    "labelling this tile labels them all (+ or a click on ⊞ expands it)"
                    if state[1]
                    else "- or a click on ⊟ collapses it"
                )
            reviewers = self.conflicts.get(self._hashes[row] or "")
            if reviewers:  # what "≠" on the tile is
                tip += "\nConflict: " + ", ".join(f"{r} {lab}" for r, lab in reviewers.items())
            for match in self.list_matches.get(self._hashes[row] or "", ()):
                tip += (
                    f"\nHash list {match.list_name} ({match.list_kind}): {match.algorithm}, "
                    f"distance {match.distance}"
                )
            return tip
        if role == Role.PATH:
            return self._paths[row]
        if role == Role.HASH:
            return self._hashes[row]
        if role == Role.SCORE:
            score = self._scores[row]
            return None if math.isnan(score) else float(score)
        if role == Role.OTHER_SCORE:
            other = self._other[row]
            return None if math.isnan(other) else float(other)
        if role == Role.FLAGGED:
            return bool(self._flagged_row(row))
        if role == Role.LISTS:
            return self.list_matches.get(self._hashes[row] or "", ())
        if role == Role.CHIPS:
            return self.chips(row)
        if role == Role.AI_LABEL:
            return self._ai.get(self._hashes[row] or "")
        if role == Role.LISTED_UNSAFE:
            return self._unsafe_listed.get(self._hashes[row] or "")
        if role == Role.REVIEWERS:
            return self.conflicts.get(self._hashes[row] or "")
        if role == Role.LABEL:
            digest = self._hashes[row]
            return self._labels.get(digest) if digest else None
        if role == Role.ERROR:
            return self._errors[row]
        if role == Role.SAVING:
            digest = self._hashes[row]
            return digest is not None and digest in self.saving
        if role == Role.COPIES:
            return max(1, self.copies_of(self._hashes[row]))
        if role == Role.SIMILARITY:
            if self.similar is None:
                return None
            return self.similar.get(self._hashes[row] or "")
        if role == Role.SIZE:
            return None if self._sizes[row] < 0 else int(self._sizes[row])
        if role == Role.NEAR:
            digest = self._hashes[row]
            return self.near.get(digest, 0) if digest else 0
        if role == Role.TAGS:
            digest = self._hashes[row]
            return self.tags.get(digest, ()) if digest else ()
        if role == Role.GROUP:
            return self._group_state(row)
        return None

    def _group_state(self, row: int) -> tuple[int, bool] | None:
        if not self.grouped or self.similar is not None or self._group[row] < 0:
            return None
        group = int(self._group[row])
        files = int(self._in_view[group]) if group < len(self._in_view) else 0
        if files < 2:
            return None
        collapsed = group < len(self._tile_of_group) and self._tile_of_group[group] == row
        return (
            (files, True) if collapsed else None if group not in self.expanded else (files, False)
        )

    def content_hashes(self) -> set[str]:
        """Every content the folder's files hold."""
        if isinstance(self._rows_of_hash, grid_columns.RowsOfHash):  # a million rows: numpy
            return self._rows_of_hash.present()
        return {h for h, rows in self._rows_of_hash.items() if rows}

    def hash_snapshot(self) -> np.ndarray:
        """Every row's content hash now ("S64", b"" for none), in row order: what a read
        thread matches stored scores and labels against (core/result_columns.py), handed
        over without a string per row; results aligned to it go to `set_detectors`."""
        if isinstance(self._hashes, grid_columns.HashColumn):
            return self._hashes.lend()
        return self._hash_bytes()

    def _hash_bytes(self) -> np.ndarray:
        if isinstance(self._hashes, grid_columns.HashColumn):
            return self._hashes.as_bytes()
        return np.array([h or "" for h in self._hashes], dtype=f"S{HASH_WIDTH}")

    def copies_of(self, content_hash: str | None) -> int:
        """How many files of the folder hold this content (a label covers all of them)."""
        return len(self._rows_of_hash.get(content_hash, ())) if content_hash else 0

    # --- loading results --------------------------------------------------------------

    def reset(
        self,
        folder: Path | None,
        outcomes: list[FileOutcome] = (),
        labels: dict[str, str] | None = None,
    ) -> None:
        """Show `folder` with `outcomes` (for instance the stored results) and labels."""
        self.beginResetModel()
        if folder != self.folder:  # the same folder (another model, a rescan) keeps its groups
            self.near = {}
            self._group_of_hash, self._group_count = {}, 0
            self.expanded = set()
        self.folder = folder
        self._clear_columns()
        self._labels = dict(labels or {})
        self._append(outcomes)
        self._set_visible(self._compute_visible())
        self.endResetModel()

    def reset_columns(
        self, folder: Path | None, columns: ResultColumns, labels: dict[str, str] | None = None
    ) -> None:
        """`reset` from the read thread's columns (core/result_columns.py): no object per
        row, so a million stored rows take a fraction of a second here (gui/grid_columns.py)."""
        self.beginResetModel()
        if folder != self.folder:
            self.near = {}
            self._group_of_hash, self._group_count = {}, 0
            self.expanded = set()
        self.folder = folder
        self._clear_columns()
        self._labels = dict(labels or {})
        n = len(columns)
        self._paths = grid_columns.PathColumn(columns)  # type: ignore[assignment]
        self._names = grid_columns.NameColumn(self._paths)  # type: ignore[assignment,arg-type]
        hashes = grid_columns.HashColumn(columns.hashes)
        self._hashes = hashes  # type: ignore[assignment]
        self._errors = grid_columns.ErrorColumn(columns.errors, n)  # type: ignore[assignment]
        self._row_of_path = grid_columns.RowOfPath(self._paths)  # type: ignore[assignment,arg-type]
        self._rows_of_hash = grid_columns.RowsOfHash(
            hashes, columns.hash_order, columns.hashes_sorted
        )  # type: ignore[assignment]
        self._scores = columns.scores.copy()
        self._mtimes = columns.mtimes.copy()
        self._sizes = columns.sizes.copy()
        # The compared model's scores, as the other detectors', are read again for the new
        # rows (the window asks with the stored rows: refresh_models → compare_with).
        self._other = np.full(n, np.nan, dtype=np.float64)
        # The other detectors' columns take the new rows' length (counting the flagged rows
        # crashed on columns left empty); their scores follow from the detectors' read the
        # window asks for with the stored rows (refresh_models → DetectorsView.load).
        self._det = [np.full(n, np.nan, dtype=np.float64) for _ in self.detectors]
        self._listed = grid_columns.lookup(
            hashes, dict.fromkeys(self._unsafe_listed, True), False, bool
        )
        self._group = grid_columns.lookup(hashes, self._group_of_hash, -1, np.int64)
        has_error = self._errors.mask()  # type: ignore[attr-defined]
        self._open = (hashes.array != b"") & ~has_error
        self._label_codes = self._labels_array()
        if self.sort == "score" and columns.by_score is not None:
            self._order = columns.by_score  # sorted on the read thread
        self._set_visible(self._compute_visible())
        self.endResetModel()

    def merge(self, outcomes: list[FileOutcome]) -> None:
        """Add or update rows as scan batches arrive, keeping sort order and selection."""
        new, changed = [], []
        for outcome in outcomes:
            row = self._row_of_path.get(outcome.path)
            if row is None:
                new.append(outcome)
            elif (self._hashes[row], _score(outcome), self._errors[row]) != (
                outcome.hash,
                self._scores[row],
                _error_text(outcome),
            ):
                changed.append((row, outcome))
        for row, outcome in changed:
            self._remove_visible(row)
            self._set_row(row, outcome)
            self._insert_visible(row)
        if len(new) > 500:  # a big chunk (stored results): one reset beats many inserts
            self._append(new)
            self.beginResetModel()
            self._set_visible(self._compute_visible())
            self.endResetModel()
            return
        first = len(self._paths)
        self._append(new)
        for row in range(first, len(self._paths)):
            self._insert_visible(row)

    def remove_missing(self, present: set[Path]) -> None:
        """Drop rows whose files a finished scan no longer found."""
        gone = [p for p in self._row_of_path if p not in present]
        if not gone:
            return
        keep = [o for o in self.outcomes() if o.path in present]
        self.reset(self.folder, keep, self._labels)

    def paths(self) -> list[Path]:
        return list(self._paths)

    def outcomes(self) -> list[FileOutcome]:
        return [self._outcome(r) for r in range(len(self._paths))]

    def _append(self, outcomes: list[FileOutcome]) -> None:
        if not outcomes:
            return
        self._order = None
        start = len(self._paths)
        self._scores = np.concatenate([self._scores, np.full(len(outcomes), np.nan)])
        self._other = np.concatenate([self._other, np.full(len(outcomes), np.nan)])
        self._det = [np.concatenate([d, np.full(len(outcomes), np.nan)]) for d in self._det]
        self._listed = np.concatenate([self._listed, np.zeros(len(outcomes), dtype=bool)])
        self._mtimes = np.concatenate([self._mtimes, np.zeros(len(outcomes), dtype=np.int64)])
        self._sizes = np.concatenate([self._sizes, np.full(len(outcomes), -1, dtype=np.int64)])
        self._open = np.concatenate([self._open, np.zeros(len(outcomes), dtype=bool)])
        self._group = np.concatenate([self._group, np.full(len(outcomes), -1, dtype=np.int64)])
        self._label_codes = np.concatenate(
            [self._label_codes, np.full(len(outcomes), -1, dtype=np.int8)]
        )
        for offset, outcome in enumerate(outcomes):
            row = start + offset
            self._paths.append(outcome.path)
            self._names.append(outcome.path.name)
            self._hashes.append(None)
            self._errors.append(None)
            self._row_of_path[outcome.path] = row
            self._set_row(row, outcome)

    def _set_row(self, row: int, outcome: FileOutcome) -> None:
        self._order = None
        self._review_counts = None
        old = self._hashes[row]
        if old and old != outcome.hash:
            self._rows_of_hash[old].remove(row)
        if outcome.hash and old != outcome.hash:
            self._rows_of_hash.setdefault(outcome.hash, []).append(row)
        self._hashes[row] = outcome.hash
        self._scores[row] = _score(outcome)
        self._other[row] = self._det_value(self._other, outcome.hash, row)
        for column in self._det:  # another file with this content has its score
            column[row] = self._det_value(column, outcome.hash, row)
        self._listed[row] = (outcome.hash or "") in self._unsafe_listed
        self._errors[row] = _error_text(outcome)
        self._mtimes[row] = outcome.mtime_ns or 0
        self._sizes[row] = -1 if outcome.size is None else outcome.size
        self._open[row] = outcome.hash is not None and self._errors[row] is None
        self._label_codes[row] = _label_code(self._labels.get(outcome.hash or ""))
        self._group[row] = self._group_of_hash.get(outcome.hash or "", -1)

    # --- threshold, labels, sort and filter ---------------------------------------------

    def set_threshold(self, threshold: float) -> None:
        """Re-mark every tile; re-filter only when the filter depends on the threshold."""
        self.threshold = threshold
        if self.filter in _THRESHOLD_FILTERS or self.sort in _THRESHOLD_SORTS:
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def set_sort(self, sort: str) -> None:
        if sort not in SORTS and sort not in self.detector_sorts():
            raise ValueError(f"unknown sort {sort!r}")
        self.sort = sort
        self._order = None
        self._refresh_visible()

    def set_filter(self, name: str) -> None:
        if name not in FILTERS and name not in self.detector_filters():
            raise ValueError(f"unknown filter {name!r}")
        self.filter = name
        self._refresh_visible()

    def set_other_scores(
        self,
        model_id: str | None,
        scores: np.ndarray | None = None,
        hashes: np.ndarray | None = None,
    ) -> None:
        """Compare with `model_id` (None: with no model): `scores` its score per row of the
        `hash_snapshot` they were read for (`hashes`; NaN: none), as `set_detectors` takes
        them; rows added or changed since take another file of that content's score."""
        self.other_model_id = model_id
        n = len(self._paths)
        self._other = np.full(n, np.nan, dtype=np.float64)
        if model_id is not None and scores is not None:
            self._other[: min(n, len(scores))] = scores[:n]
            if hashes is not None:
                for row in self._changed_rows(hashes):
                    self._other[row] = self._det_value(self._other, self._hashes[row], row)
        if self.filter == "models_disagree":
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def set_list_matches(self, matches: dict[str, list]) -> None:
        """Show the hash-list matches (hash → core/hashlists.Match list); contents an
        `unsafe` list matches count as flagged whatever the model's score."""
        self.list_matches = {h: tuple(found) for h, found in matches.items() if found}
        self._unsafe_listed = {
            h: next(m.list_name for m in found if m.list_kind == "unsafe")
            for h, found in self.list_matches.items()
            if any(m.list_kind == "unsafe" for m in found)
        }
        self._listed = grid_columns.lookup(
            self._hashes, dict.fromkeys(self._unsafe_listed, True), False, bool
        )
        if self.list_matches_move_rows():
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def list_matches_move_rows(self) -> bool:
        """Whether new hash-list matches can change which rows show: only when the filter
        depends on flags or lists. Otherwise they change marks, and the current item stays."""
        return self.filter in _THRESHOLD_FILTERS | {"hash_lists", "disagreements"}

    def set_team(self, conflicts: dict[str, dict[str, str]], assigned: Collection[str]) -> None:
        """Show these conflicts (hash → {reviewer: label}) and my assigned contents."""
        self.conflicts = {h: dict(by) for h, by in conflicts.items()}
        self.assigned = frozenset(assigned)
        if self.filter in _TEAM_FILTERS:
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def _hash_mask(self, hashes: Collection[str]) -> np.ndarray:
        """Per row: its content is one of `hashes` (found by bisection, not row by row)."""
        return grid_columns.lookup(self._hashes, dict.fromkeys(hashes, True), False, bool)

    def _flagged(self) -> np.ndarray:
        """Per row: the model flags it or an `unsafe` hash list matches it; with several
        detectors and flag_rule "any", any of them over its own threshold flags it too."""
        flagged = (self._scores >= self.threshold) | self._listed
        if self.flag_rule == "any":
            for column, threshold in zip(self._det, self._det_thresholds, strict=True):
                flagged |= column >= threshold
        return flagged

    def _flagged_row(self, row: int) -> bool:
        if self._scores[row] >= self.threshold or self._listed[row]:
            return True
        if self.flag_rule != "any":
            return False
        return any(c[row] >= t for c, t in zip(self._det, self._det_thresholds, strict=True))

    # --- several detectors (issue 13) and the AI-generated label ------------------------

    def set_detectors(
        self,
        primary_kind: str,
        detectors: list,
        scores: list[np.ndarray],
        hashes: np.ndarray | None = None,
        *,
        primary_chip: str = "",
    ) -> None:
        """Show these detectors beside the shown model (the primary, of `primary_kind`):
        `detectors` are core DetectorColumn, `scores` their score per row of the
        `hash_snapshot` they were read for (`hashes`; NaN: none), aligned. Rows added or
        given another content since take the score another file of that content has.
        `primary_chip` names the primary's chip where its kind alone would be shared."""
        self.primary_kind = primary_kind
        self.primary_chip = primary_chip
        self.detectors = list(detectors)
        self._det_thresholds = [float(d.threshold) for d in detectors]
        n = len(self._paths)
        self._det = []
        for found in scores:
            column = np.full(n, np.nan, dtype=np.float64)
            column[: min(n, len(found))] = found[:n]
            self._det.append(column)
        if scores and hashes is not None:
            for row in self._changed_rows(hashes):
                for column in self._det:
                    column[row] = self._det_value(column, self._hashes[row], row)
        known = self.detector_filters() | self.detector_sorts()
        if self.filter.startswith(DETECTOR_FILTER) and self.filter not in known:
            self.filter = "all"
        if self.sort.startswith(DETECTOR_SORT) and self.sort not in known:
            self.sort = "score"
        self._order = None
        if self.detectors_move_rows():
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def detectors_move_rows(self) -> bool:
        """Whether other detectors' scores can change which rows show, or their order."""
        return (
            self.filter in _THRESHOLD_FILTERS
            or self.filter.startswith(DETECTOR_FILTER)
            or self.sort.startswith(DETECTOR_SORT)
        )

    def detector_filters(self) -> dict[str, str]:
        """Filter key → text for "flagged by" each detector (the primary's is "flagged")."""
        return {
            DETECTOR_FILTER + d.model_id: f"Flagged by {d.short} ({d.name})" for d in self.detectors
        }

    def detector_sorts(self) -> dict[str, str]:
        return {DETECTOR_SORT + d.model_id: f"{d.short} score ({d.name})" for d in self.detectors}

    def _detector_index(self, key: str) -> int | None:
        model_id = key.split(":", 1)[1] if ":" in key else None
        return next((i for i, d in enumerate(self.detectors) if d.model_id == model_id), None)

    def detector_threshold(self, model_id: str) -> float | None:
        index = self._detector_index(DETECTOR_FILTER + model_id)
        return None if index is None else self._det_thresholds[index]

    def set_detector_threshold(self, model_id: str, threshold: float) -> None:
        """Re-split on one detector's threshold, without running any model."""
        index = self._detector_index(DETECTOR_FILTER + model_id)
        if index is None:
            return
        self._det_thresholds[index] = float(threshold)
        if self.filter in _THRESHOLD_FILTERS or self.filter.startswith(DETECTOR_FILTER):
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def set_flag_rule(self, rule: str) -> None:
        if rule not in ("any", "primary"):
            raise ValueError(f"unknown flag rule {rule!r}")
        self.flag_rule = rule
        if self.filter in _THRESHOLD_FILTERS:
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def chips(self, row: int) -> tuple:
        """(short, kind, score or None, over its threshold) per detector, the primary first;
        () when only one detector is shown (its score is the tile's score line)."""
        if not self.detectors or self._errors[row]:  # an error tile has no scores
            return ()
        from nsfw_desk.core.detector_columns import SHORT_NAMES

        score = self._scores[row]
        chips = [
            (
                self.primary_chip or SHORT_NAMES.get(self.primary_kind, "DET"),
                self.primary_kind,
                None if math.isnan(score) else float(score),
                bool(score >= self.threshold),
            )
        ]
        for detector, column, threshold in zip(
            self.detectors, self._det, self._det_thresholds, strict=True
        ):
            value = column[row]
            chips.append(
                (
                    detector.short,
                    detector.kind,
                    None if math.isnan(value) else float(value),
                    bool(value >= threshold),
                )
            )
        return tuple(chips)

    def set_ai_labels(self, labels: dict[str, bool | None], *, replace: bool = False) -> None:
        """Apply AI-generated label changes (hash → True/False/None); `replace`: these are all."""
        if replace:
            self._ai = {}
        for digest, value in labels.items():
            if value is None:
                self._ai.pop(digest, None)
            else:
                self._ai[digest] = bool(value)
        if self.filter in ("ai_generated", "ai_real"):
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def ai_label_of(self, content_hash: str) -> bool | None:
        return self._ai.get(content_hash)

    def detector_score(self, model_id: str, content_hash: str) -> float | None:
        """A detector's score of a content (the AI label records the AI detector's)."""
        index = self._detector_index(DETECTOR_FILTER + model_id)
        if index is None:
            return None
        value = self._det_value(self._det[index], content_hash, -1)
        return None if math.isnan(value) else value

    def _det_value(self, column: np.ndarray, digest: str | None, row: int) -> float:
        """A detector's score of `digest` as another row holding it has it, else NaN."""
        for other in self._rows_of_hash.get(digest, ()) if digest else ():
            if other != row and other < len(column) and not math.isnan(column[other]):
                return float(column[other])
        return math.nan

    def _changed_rows(self, snapshot: np.ndarray) -> list[int]:
        """Rows added or given another content since `snapshot` (`hash_snapshot`) was
        taken: a scan merged them while the read thread worked."""
        now = self._hash_bytes() if len(self._paths) else snapshot[:0]
        known = min(len(now), len(snapshot))
        changed = np.flatnonzero(now[:known] != snapshot[:known]).tolist()
        return changed + list(range(known, len(now)))

    def set_tags(self, tags: dict[str, tuple[str, ...]], tag_filter: str | None) -> None:
        """Show these tags (hash → tags) and keep only contents with `tag_filter` (None: all)."""
        self.tags = {h: tuple(t) for h, t in tags.items() if t}
        refilter = tag_filter is not None or self.tag_filter is not None
        self.tag_filter = tag_filter
        if refilter:
            self._refresh_visible()
        else:
            self.marks_changed.emit()

    def _tag_mask(self) -> np.ndarray:
        n = len(self._paths)
        if self.tag_filter is None:
            return np.ones(n, dtype=bool)
        return self._hash_mask([h for h, tags in self.tags.items() if self.tag_filter in tags])

    def set_labels(self, labels: dict[str, str | None]) -> None:
        """Apply label changes (hash → label or None) to the tiles that show them."""
        rows = []
        self._review_counts = None
        for digest, label in labels.items():
            if label is None:
                self._labels.pop(digest, None)
            else:
                self._labels[digest] = label
            rows.extend(self._rows_of_hash.get(digest, ()))
            self._label_codes[self._rows_of_hash.get(digest, [])] = _label_code(label)
        if self.sort == "disagreement":
            self._order = None
        if (
            self.filter in {"reviewed", "unreviewed", "disagreements"}
            or self.sort == "disagreement"
        ):
            self._refresh_visible()
            return
        positions = self._position_array() if rows else None
        for row in rows:
            if positions is not None and positions[row] >= 0:
                index = self.index(int(positions[row]))
                self.dataChanged.emit(index, index, [Role.LABEL])

    def set_near_counts(self, counts: dict[str, int]) -> None:
        """hash → how many near-duplicates it has in the folder, for the tiles' ≈N mark."""
        self.near = dict(counts)
        self.marks_changed.emit()

    # --- near-duplicate groups, collapsed to one tile each -----------------------------

    def set_groups(self, groups: list[list[str]], group_of: dict[str, int] | None = None) -> None:
        """The folder's near-duplicate groups, each a list of content hashes (exact copies of
        one content are a group too: they are several files); `group_of` (hash → group
        number), when given, is that mapping made already (off the GUI thread)."""
        if group_of is None:
            group_of = {digest: g for g, hashes in enumerate(groups) for digest in hashes}
        self._group_of_hash = group_of
        self._group_count = len(groups)
        self.expanded = set()
        self._group = grid_columns.lookup(self._hashes, self._group_of_hash, -1, np.int64)
        if self.grouped:
            self._refresh_visible()
        else:
            self._in_view = np.zeros(self._group_count, dtype=np.int64)

    def set_grouped(self, on: bool) -> None:
        """Collapse every group to one tile (on), or show every file (off)."""
        self.grouped = on
        self.expanded = set()
        self._refresh_visible()

    def group_at(self, position: int) -> int | None:
        """The group of the tile at visible `position`, if it shows one (collapsed or not)."""
        if not 0 <= position < len(self._visible):
            return None
        row = int(self._visible[position])
        return int(self._group[row]) if self._group_state(row) is not None else None

    def set_expanded(self, group: int, expanded: bool) -> None:
        if expanded:
            self.expanded.add(group)
        else:
            self.expanded.discard(group)
        self._refresh_visible()

    def expand_all(self, expanded: bool) -> None:
        self.expanded = set(range(self._group_count)) if expanded else set()
        self._refresh_visible()

    def collapsed_groups(self) -> tuple[int, int]:
        """(collapsed tiles standing for 2 files or more, the files they stand for)."""
        if not self.grouped or len(self._tile_of_group) != len(self._in_view):
            return 0, 0
        shown = self._in_view[self._tile_of_group >= 0]
        files = shown[shown > 1].tolist()
        return len(files), sum(files)

    def group_members(self, position: int) -> list[FileOutcome]:
        """The files a collapsed group tile at `position` stands for (every file of its group
        in this view, the tile's own first); [] for any other tile."""
        if not 0 <= position < len(self._visible):
            return []
        row = int(self._visible[position])
        state = self._group_state(row)
        if state is None or not state[1]:
            return []
        rows = self._view_rows[self._group[self._view_rows] == self._group[row]].tolist()
        rows.sort(key=lambda r: r != row)
        return [self._outcome(r) for r in rows]

    def _outcome(self, r: int) -> FileOutcome:
        return FileOutcome(
            self._paths[r],
            self._hashes[r],
            None if math.isnan(self._scores[r]) else float(self._scores[r]),
            error=self._errors[r],
            mtime_ns=int(self._mtimes[r]),
            size=None if self._sizes[r] < 0 else int(self._sizes[r]),
        )

    def _collapse(self, rows: np.ndarray) -> np.ndarray:
        """`rows` (filtered, sorted) with each collapsed group's later members left out."""
        self._tile_of_group = np.full(self._group_count, -1, dtype=np.int64)
        if not self.grouped or not self._group_count:  # `_in_view` is read only while grouped
            self._in_view = np.zeros(self._group_count, dtype=np.int64)
            return rows
        groups = self._group[rows]
        in_group = groups >= 0
        self._in_view = np.bincount(groups[in_group], minlength=self._group_count)
        if not in_group.any():
            return rows
        open_groups = np.zeros(self._group_count, dtype=bool)
        open_groups[list(self.expanded)] = True
        collapsing = in_group & ~open_groups[np.where(in_group, groups, 0)]
        at = np.flatnonzero(collapsing)
        # Each collapsing group's first position in the order (no sort: one pass).
        first = np.full(self._group_count, len(rows), dtype=np.int64)
        np.minimum.at(first, groups[at], at)
        first = first[first < len(rows)]
        keep = ~collapsing
        keep[first] = True
        self._tile_of_group[groups[first]] = rows[first]
        return rows[keep]

    def unreviewed_files(self) -> int:
        """Files in this view (a collapsed group's members too) that can take a label and
        have none: what is left to review here."""
        rows = self._view_rows
        if rows is self._order and len(rows) == len(self._open):  # every row
            return int(np.count_nonzero(self._open & (self._label_codes < 0)))
        return int(np.count_nonzero((self._open & (self._label_codes < 0))[rows]))

    def item_of(self, content_hash: str) -> tuple[Path, float | None] | None:
        """(path, score) of a file holding this content in the folder, shown or not."""
        rows = self._rows_of_hash.get(content_hash)
        if not rows or self._errors[rows[0]]:
            return None
        score = self._scores[rows[0]]
        return self._paths[rows[0]], None if math.isnan(score) else float(score)

    def label_of(self, content_hash: str) -> str | None:
        return self._labels.get(content_hash)

    def _reviewed(self) -> tuple[int, int]:
        """(labelled files, distinct labelled images), kept until a label or row changes:
        counting them is a hash pass, and the counts line asks on every threshold move."""
        if self._review_counts is not None:
            return self._review_counts
        if isinstance(self._hashes, grid_columns.HashColumn):  # a million rows: numpy
            labelled = self._label_codes >= 0
            reviewed = int(np.count_nonzero(labelled))
            images = len(np.unique(self._hashes.as_bytes()[labelled]))
        else:
            present = [h for h in self._labels if self._rows_of_hash.get(h)]
            reviewed = sum(len(self._rows_of_hash[h]) for h in present)
            images = len(present)
        self._review_counts = (reviewed, images)
        return self._review_counts

    def counts(self) -> Counts:
        scores = self._scores
        reviewed, images = self._reviewed()
        by_list = self._listed & ~(scores >= self.threshold)
        names = {self._unsafe_listed[self._hashes[r]] for r in np.flatnonzero(by_list).tolist()}
        return Counts(
            total=len(self._paths),
            flagged=int(np.count_nonzero(self._flagged())),
            by_list=int(np.count_nonzero(by_list)),
            list_names=tuple(sorted(names)),
            reviewed=reviewed,
            errors=self._error_count(),
            reviewed_images=images,
        )

    def unscored(self) -> int:
        """Images (read, no error) the shown model has no score for: "Scan again" scores them."""
        return int(np.count_nonzero(self._open & np.isnan(self._scores)))

    def labellable(self, position: int) -> bool:
        """Whether the item at visible `position` can take a label (scanned, no error)."""
        return bool(self._open[self._visible[position]])

    def unreviewed_positions(self) -> np.ndarray:
        """Visible positions, in display order, of labellable items without a label: the queue."""
        if not len(self._visible):
            return np.empty(0, dtype=np.int64)
        visible = self._visible
        pending = self._open[visible] & (self._label_codes[visible] < 0)
        if (
            self._tile_of_group >= 0
        ).any():  # a collapsed tile waits while any file it stands for does
            rows = self._view_rows
            waiting = rows[self._open[rows] & (self._label_codes[rows] < 0)]
            groups = self._group[waiting]
            has = np.zeros(self._group_count, dtype=bool)
            has[groups[groups >= 0]] = True
            tiles = np.zeros(len(self._paths), dtype=bool)
            tiles[self._tile_of_group[self._tile_of_group >= 0]] = True
            pending |= tiles[visible] & has[np.maximum(self._group[visible], 0)]
        return np.flatnonzero(pending)

    def positions_of(self, paths: Collection[Path]) -> list[int]:
        """The visible positions of those of `paths` that are shown, in one pass."""
        rows = {self._shown_row(self._row_of_path[p]) for p in paths if p in self._row_of_path}
        positions = self._position_array()
        return sorted(int(positions[row]) for row in rows if positions[row] >= 0)

    def hidden_among(self, paths: Collection[Path]) -> int:
        """How many of `paths` no tile shows (filtered out; a collapsed group shows its
        members)."""
        positions = self._position_array()
        return sum(
            1
            for p in paths
            if p not in self._row_of_path or positions[self._shown_row(self._row_of_path[p])] < 0
        )

    def _shown_row(self, row: int) -> int:
        """The row whose tile shows `row`: its collapsed group's tile, or itself."""
        group = int(self._group[row]) if row < len(self._group) else -1
        if group < 0 or group >= len(self._tile_of_group) or self._tile_of_group[group] < 0:
            return row
        return int(self._tile_of_group[group])

    def row_of(self, path: Path) -> int | None:
        """The visible position of `path`, or None when it is filtered out or unknown."""
        row = self._row_of_path.get(path)
        if row is None:
            return None
        position = int(self._position_array()[self._shown_row(row)])
        return None if position < 0 else position

    def _position_array(self) -> np.ndarray:
        """Row → its visible position, -1 when not shown (made once per view change)."""
        if self._positions is None or len(self._positions) != len(self._paths):
            position = np.full(len(self._paths), -1, dtype=np.int64)
            position[self._visible] = np.arange(len(self._visible))
            self._positions = position
        return self._positions

    def _set_visible(self, visible: np.ndarray) -> None:
        self._visible = visible
        self._positions = None
        self._keys = None

    def _refresh_visible(self) -> None:
        """Recompute order and filter; persistent indexes (selection) follow their rows."""
        new_visible = self._compute_visible()
        self.layoutAboutToBeChanged.emit()
        old_persistent = self.persistentIndexList()
        old_rows = [
            int(self._visible[i.row()]) if i.row() < len(self._visible) else None
            for i in old_persistent
        ]
        # Rows may disappear; Qt allows that in a layout change only by invalidating them.
        self._set_visible(new_visible)
        position = self._position_array() if old_rows else None
        self.changePersistentIndexList(
            old_persistent,
            [
                self.index(int(position[row]))
                if row is not None and position is not None and position[row] >= 0
                else QModelIndex()
                for row in old_rows
            ],
        )
        self.layoutChanged.emit()

    def show_similar(self, similar: dict[str, float] | None) -> None:
        """Show only these contents (hash → similarity), most similar first; None: back to
        the sort and filter."""
        self.similar = dict(similar) if similar is not None else None
        self._order = None
        self._refresh_visible()

    def _compute_visible(self) -> np.ndarray:
        n = len(self._paths)
        if n == 0:
            self._view_rows = np.empty(0, dtype=np.int64)
            self._tile_of_group = np.empty(0, dtype=np.int64)
            return self._view_rows
        self._tile_of_group = np.empty(0, dtype=np.int64)
        if self.similar is not None:
            ranked = sorted(self.similar.items(), key=lambda item: -item[1])
            shown = [row for digest, _ in ranked for row in self._rows_of_hash.get(digest, ())]
            self._view_rows = np.asarray(shown, dtype=np.int64)
            return self._view_rows
        if self._order is None or self.sort in _THRESHOLD_SORTS:  # that order moves with t
            self._order = self._sort_order()
        if self.filter == "all" and self.tag_filter is None:  # every row: the order itself
            self._view_rows = self._order
        else:
            mask = self._filter_mask() & self._tag_mask()
            self._view_rows = self._order[mask[self._order]]
        return self._collapse(self._view_rows)

    def _labels_array(self) -> np.ndarray:
        """Per row: 1 unsafe, 0 safe, -1 unlabelled."""
        if isinstance(self._rows_of_hash, grid_columns.RowsOfHash):  # a million rows: numpy
            codes = {h: 1 if label == "unsafe" else 0 for h, label in self._labels.items()}
            return grid_columns.lookup(self._hashes, codes, -1, np.int8)
        values = np.full(len(self._paths), -1, dtype=np.int8)
        for digest, label in self._labels.items():
            for row in self._rows_of_hash.get(digest, ()):
                values[row] = 1 if label == "unsafe" else 0
        return values

    def _filter_mask(self) -> np.ndarray:
        n = len(self._paths)
        scored = ~np.isnan(self._scores)
        if self.filter == "all":
            return np.ones(n, dtype=bool)
        if self.filter == "flagged":
            return self._flagged()
        if self.filter == "unflagged":
            return scored & ~self._flagged()
        if self.filter == "hash_lists":
            return self._hash_mask(self.list_matches)
        if self.filter == "errors":
            return self._filter_errors()
        if self.filter in ("ai_generated", "ai_real"):
            wanted = self.filter == "ai_generated"
            return self._hash_mask([h for h, value in self._ai.items() if value is wanted])
        if self.filter.startswith(DETECTOR_FILTER):
            index = self._detector_index(self.filter)
            if index is None:
                return np.ones(n, dtype=bool)
            return self._det[index] >= self._det_thresholds[index]
        if self.filter == "conflicts":
            return self._hash_mask(self.conflicts)
        if self.filter == "assigned":
            return self._hash_mask(self.assigned)
        if self.filter == "models_disagree":
            other = self._other
            both = scored & ~np.isnan(other)
            return both & ((self._scores >= self.threshold) != (other >= self.threshold))
        labels = self._labels_array()
        if self.filter == "reviewed":
            return labels >= 0
        if self.filter == "unreviewed":  # images without a score (no model) too
            return (labels < 0) & ~self._filter_errors()
        flagged = self._flagged()
        return (labels >= 0) & scored & ((labels == 1) != flagged)  # disagreements

    def _error_count(self) -> int:
        if isinstance(self._errors, grid_columns.ErrorColumn):
            return len(self._errors.errors)
        return sum(e is not None for e in self._errors)

    def _filter_errors(self) -> np.ndarray:
        if isinstance(self._errors, grid_columns.ErrorColumn):
            return self._errors.mask()
        return np.array([e is not None for e in self._errors], dtype=bool)

    def _sort_order(self) -> np.ndarray:
        n = len(self._paths)  # not the names: decoding a million of them takes seconds
        if self.sort == "name":
            names = np.array(self._names, dtype=object)
            return np.array(sorted(range(n), key=lambda r: (names[r].lower(), r)), dtype=np.int64)
        # A stable sort keeps row order among equal keys: a lexsort with the row number,
        # at a third of its time over a million rows.
        if self.sort == "modified":
            return np.argsort(-self._mtimes, kind="stable")
        return np.argsort(self._sort_primary(), kind="stable")

    def _sort_primary(self) -> np.ndarray:
        """Ascending key for score and disagreement sorts; rows without a score last."""
        if self.sort.startswith(DETECTOR_SORT):
            index = self._detector_index(self.sort)
            column = self._scores if index is None else self._det[index]
            return np.where(np.isnan(column), np.inf, -column)
        if self.sort == "uncertain":  # nearest the threshold first
            return np.where(np.isnan(self._scores), np.inf, np.abs(self._scores - self.threshold))
        scores = np.where(np.isnan(self._scores), np.inf, -self._scores)
        if self.sort != "disagreement":
            return scores
        labels = self._labels_array()
        strength = np.abs(labels - np.nan_to_num(self._scores, nan=0.5))
        return np.where(labels >= 0, -strength, scores + 10)

    def _key(self, row: int) -> tuple:
        if self.sort == "name":
            return (self._names[row].lower(), row)
        if self.sort == "modified":
            return (-int(self._mtimes[row]), row)
        score = self._scores[row]
        if self.sort.startswith(DETECTOR_SORT):
            index = self._detector_index(self.sort)
            value = score if index is None else self._det[index][row]
            return (math.inf if math.isnan(value) else -float(value), row)
        if self.sort == "uncertain":
            return (math.inf if math.isnan(score) else abs(float(score) - self.threshold), row)
        if self.sort == "disagreement":
            label = self._labels.get(self._hashes[row] or "")
            if label is not None:
                value = 1.0 if label == "unsafe" else 0.0
                s = 0.5 if math.isnan(score) else float(score)
                return (-abs(value - s), row)
        return (
            (math.inf if math.isnan(score) else -float(score))
            + (10 if self.sort == "disagreement" else 0),
            row,
        )

    def _passes(self, row: int) -> bool:
        if self.tag_filter is not None and self.tag_filter not in self.tags.get(
            self._hashes[row] or "", ()
        ):
            return False
        if self.filter == "all":
            return True
        if self.filter in ("ai_generated", "ai_real") or self.filter.startswith(DETECTOR_FILTER):
            return bool(self._filter_mask_row(row))
        score = self._scores[row]
        scored = not math.isnan(score)
        label = self._labels.get(self._hashes[row] or "")
        other = self._other[row]
        flagged = self._flagged_row(row)
        return {
            "flagged": flagged,
            "unflagged": scored and not flagged,
            "hash_lists": (self._hashes[row] or "") in self.list_matches,
            "errors": self._errors[row] is not None,
            "reviewed": label is not None,
            "unreviewed": label is None and self._errors[row] is None,
            "disagreements": label is not None and scored and (label == "unsafe") != flagged,
            "conflicts": (self._hashes[row] or "") in self.conflicts,
            "assigned": (self._hashes[row] or "") in self.assigned,
            "models_disagree": scored
            and not math.isnan(other)
            and (score >= self.threshold) != (other >= self.threshold),
        }[self.filter]

    def _filter_mask_row(self, row: int) -> bool:
        if self.filter in ("ai_generated", "ai_real"):
            return self._ai.get(self._hashes[row] or "") is (self.filter == "ai_generated")
        index = self._detector_index(self.filter)
        return index is None or bool(self._det[index][row] >= self._det_thresholds[index])

    def _ensure_keys(self) -> list[tuple]:
        if self._keys is None:
            self._keys = [self._key(row) for row in self._visible.tolist()]
        return self._keys

    def _insert_visible(self, row: int) -> None:
        if self.similar is not None:
            return
        if self._regroup or (self.grouped and self._group[row] >= 0):
            # It may join (or leave) a collapsed tile: count the view again.
            self._regroup = False
            self._refresh_visible()
            return
        if not self._passes(row):
            return
        self._view_rows = np.append(self._view_rows, row)
        keys = self._ensure_keys()
        key = self._key(row)
        position = bisect.bisect_left(keys, key)
        self.beginInsertRows(QModelIndex(), position, position)
        keys.insert(position, key)
        self._visible = np.insert(self._visible, position, row)
        self._positions = None
        self.endInsertRows()

    def _remove_visible(self, row: int) -> None:
        if self.grouped and self._group[row] >= 0:
            self._regroup = True  # the insert after it (merge) counts the view again
            return
        found = np.flatnonzero(self._visible == row)
        if not len(found):
            return
        position = int(found[0])
        self._view_rows = self._view_rows[self._view_rows != row]
        keys = self._ensure_keys()
        self.beginRemoveRows(QModelIndex(), position, position)
        self._visible = np.delete(self._visible, position)
        self._positions = None
        del keys[position]
        self.endRemoveRows()


def _label_code(label: str | None) -> int:
    return -1 if label is None else 1 if label == "unsafe" else 0


def _score(outcome: FileOutcome) -> float:
    return math.nan if outcome.score is None else float(outcome.score)


def _error_text(outcome: FileOutcome) -> str | None:
    if outcome.error_kind is None and outcome.error is None:
        return None
    kind = (outcome.error_kind or "error").replace("_", " ")
    return f"{kind}: {outcome.error}" if outcome.error else kind


def shown_name(name: str) -> str:
    """A file name for people. A name that is not UTF-8 comes as lone surrogates, which Qt
    drops without a trace (b"a\\xff\\xfeb.png" read "ab.png", like another file's name): its
    odd bytes are shown as `\\xff` instead, as in the detail pane and the records."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return display_path(name)
    return name
