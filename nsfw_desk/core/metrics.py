"""Threshold calibration: precision, recall, F1 and FPR of a model's scores against reviews."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from nsfw_desk.core.defaults import MIN_PER_CLASS, TARGET_RECALL
from nsfw_desk.core.review import ReviewStore
from nsfw_desk.core.store import Library

# An item is predicted unsafe when score >= threshold (the app's rule everywhere); positive
# class = reviewed unsafe. Only the current label of each content hash counts, once per hash
# however many paths share the content; a cleared item is not reviewed.


class NotEnoughReviews(Exception):
    """Too few reviewed items of a class to say anything useful; the message is for the user.

    The counts are set when calibration_for raises it (None when raised with a message only).
    """

    def __init__(
        self,
        message: str,
        *,
        unsafe: int | None = None,
        safe: int | None = None,
        needed: int | None = None,
    ) -> None:
        super().__init__(message)
        self.unsafe, self.safe, self.needed = unsafe, safe, needed


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion counts and rates when everything scoring >= `threshold` is flagged."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float  # 1.0 when nothing is flagged
    recall: float  # 0.0 when there are no unsafe items
    f1: float  # 0.0 when precision and recall are both 0
    fpr: float  # 0.0 when there are no safe items


@dataclass
class Calibration:
    """Metrics at every candidate threshold of one model, and the two suggested thresholds."""

    model_id: str
    target_recall: float
    points: list[ThresholdMetrics]  # one per candidate threshold, ascending threshold
    at_target: ThresholdMetrics | None  # recall >= target with the best precision
    best_f1: ThresholdMetrics
    unsafe_scores: np.ndarray  # scores of items reviewed unsafe, ascending
    safe_scores: np.ndarray  # scores of items reviewed safe, ascending

    @property
    def n_unsafe(self) -> int:
        return len(self.unsafe_scores)

    @property
    def n_safe(self) -> int:
        return len(self.safe_scores)

    def at(self, threshold: float) -> ThresholdMetrics:
        """Metrics at any threshold, e.g. the desk's slider value (not just candidates)."""
        threshold = float(threshold)
        if np.isnan(threshold):
            raise ValueError("threshold must be a number")
        return _points(_columns(self.unsafe_scores, self.safe_scores, np.array([threshold])))[0]

    def as_dict(self) -> dict:
        """Plain JSON-ready data: counts, suggestions and every point."""
        return {
            "model_id": self.model_id,
            "target_recall": self.target_recall,
            "counts": {
                "unsafe": self.n_unsafe,
                "safe": self.n_safe,
                "total": self.n_unsafe + self.n_safe,
            },
            "at_target": _as_dict(self.at_target) if self.at_target else None,
            "best_f1": _as_dict(self.best_f1),
            "points": [_as_dict(p) for p in self.points],
        }


_FIELDS = tuple(f.name for f in fields(ThresholdMetrics))


def _as_dict(point: ThresholdMetrics) -> dict:
    return {name: getattr(point, name) for name in _FIELDS}  # asdict() deep-copies: slow


def _rates(tp: np.ndarray, fp: np.ndarray, positives: int, negatives: int):
    """precision, recall, F1 and FPR arrays, with the documented values where undefined."""
    fn, flagged = positives - tp, tp + fp
    precision = np.where(flagged > 0, tp / np.maximum(flagged, 1), 1.0)
    recall = tp / positives if positives else np.zeros(len(tp))
    f1_denominator = 2 * tp + fp + fn  # 2PR/(P+R) written in counts: exact, tie-stable
    f1 = np.where(f1_denominator > 0, 2 * tp / np.maximum(f1_denominator, 1), 0.0)
    fpr = fp / negatives if negatives else np.zeros(len(tp))
    return precision, recall, f1, fpr


def _columns(unsafe_sorted: np.ndarray, safe_sorted: np.ndarray, thresholds: np.ndarray):
    """ThresholdMetrics fields as arrays. Counts come from binary search in the sorted scores:
    side='left' counts the scores >= threshold, equal scores included."""
    positives, negatives = len(unsafe_sorted), len(safe_sorted)
    tp = positives - np.searchsorted(unsafe_sorted, thresholds, side="left")
    fp = negatives - np.searchsorted(safe_sorted, thresholds, side="left")
    precision, recall, f1, fpr = _rates(tp, fp, positives, negatives)
    return thresholds, tp, fp, negatives - fp, positives - tp, precision, recall, f1, fpr


def _points(columns) -> list[ThresholdMetrics]:
    return [ThresholdMetrics(*row) for row in zip(*(c.tolist() for c in columns), strict=True)]


def _last_max(values: np.ndarray, among: np.ndarray) -> int:
    """Index of the largest value within `among` (indices, ascending); ties: the last one."""
    picked = values[among]
    return int(among[np.flatnonzero(picked == picked.max())[-1]])


def calibrate(
    scores, is_unsafe, *, target_recall: float = TARGET_RECALL, model_id: str = ""
) -> Calibration:
    """Metrics at 0.0, 1.0 and every distinct score, in O(n log n)."""
    scores = np.asarray(scores, dtype=np.float64)
    is_unsafe = np.asarray(is_unsafe, dtype=bool)
    if scores.ndim != 1 or scores.shape != is_unsafe.shape:
        raise ValueError("scores and is_unsafe must be 1-D and of the same length")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers")
    if not 0.0 <= target_recall <= 1.0:
        raise ValueError("target_recall must be between 0 and 1")
    unsafe_sorted = np.sort(scores[is_unsafe])
    safe_sorted = np.sort(scores[~is_unsafe])
    thresholds = np.unique(np.concatenate([scores, [0.0, 1.0]]))  # sorted, ties merged
    columns = _columns(unsafe_sorted, safe_sorted, thresholds)
    precision, recall, f1 = columns[5:8]
    points = _points(columns)
    reaching = np.flatnonzero(recall >= target_recall)
    at_target = points[_last_max(precision, reaching)] if len(reaching) else None
    best_f1 = points[_last_max(f1, np.arange(len(points)))]
    return Calibration(
        model_id, float(target_recall), points, at_target, best_f1, unsafe_sorted, safe_sorted
    )


def calibrates_against(library: Library, model_id: str) -> str:
    """What a detector is calibrated against (issue 13): an AI-generated-image detector
    against the AI-generated labels (G/R, "ai"), every other against unsafe/safe
    ("decisions")."""
    from nsfw_desk.core.detector_columns import detector_kind

    found = library.model_labels(model_id)
    return "ai" if found and detector_kind(found[1]) == "ai-generated" else "decisions"


def reviewed_scores(
    library: Library, model_id: str, against: str = "decisions"
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, is_positive) of every content hash with a current label and a score from
    `model_id`; one row per hash, since scores and labels both belong to the content.
    Positive: reviewed unsafe, or with `against="ai"` labelled AI-generated."""
    reviews = ReviewStore(library)
    rows = (
        reviews.ai_reviewed_scores(model_id)
        if against == "ai"
        else reviews.reviewed_scores(model_id)
    )
    scores = np.array([r[0] for r in rows], dtype=np.float64)
    is_unsafe = np.array([bool(r[1]) for r in rows], dtype=bool)
    return scores, is_unsafe


def calibration_for(
    library: Library,
    model_id: str,
    *,
    target_recall: float = TARGET_RECALL,
    min_per_class: int = MIN_PER_CLASS,
    against: str | None = None,
) -> Calibration:
    """Calibrate `model_id` on the library's reviews; refuse below `min_per_class` of a class,
    where the numbers would mislead more than help. `against`: "decisions" (unsafe/safe) or
    "ai" (AI-generated/real); None: by the detector's kind (`calibrates_against`)."""
    against = against or calibrates_against(library, model_id)
    scores, is_unsafe = reviewed_scores(library, model_id, against)
    unsafe = int(is_unsafe.sum())
    safe = len(is_unsafe) - unsafe
    if unsafe < min_per_class or safe < min_per_class:
        name = library.model_names([model_id])[model_id] if model_id else "this model"
        yes, no, keys = (
            ("AI-generated", "real", " (G and R)") if against == "ai" else ("unsafe", "safe", "")
        )
        raise NotEnoughReviews(
            f"Not enough reviews to calibrate {name}: {unsafe} {yes} and "
            f"{safe} {no} reviewed items{keys}; at least {min_per_class} of each are needed.",
            unsafe=unsafe,
            safe=safe,
            needed=min_per_class,
        )
    return calibrate(scores, is_unsafe, target_recall=target_recall, model_id=model_id)


def models_with_reviews(library: Library) -> list[tuple[str, int]]:
    """(model id, reviewed items it scored), most first: which models can be calibrated.
    An AI-generated-image detector counts the contents with an AI-generated label."""
    reviews = ReviewStore(library)
    decided = dict(reviews.models_with_reviews())
    ai = dict(reviews.models_with_ai_reviews())
    counts = {}
    for model_id in dict.fromkeys([*decided, *ai]):
        if calibrates_against(library, model_id) == "ai":
            count = ai.get(model_id, 0)
        else:
            count = decided.get(model_id, 0)
        if count:
            counts[model_id] = count
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
