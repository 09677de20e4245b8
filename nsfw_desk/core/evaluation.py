"""How good a model's scores are against reviewed labels: the before/after report's numbers.

An item is predicted unsafe when score >= threshold (the app's rule everywhere); the positive
class is "reviewed unsafe". Conventions follow core/metrics.py: precision is 1.0 when nothing
is flagged, recall 0.0 when there is no unsafe item. ROC AUC and average precision need both
classes and are None otherwise.
"""

from __future__ import annotations

import math

import numpy as np


def _arrays(scores, is_unsafe) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(is_unsafe, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    if np.isnan(s).any():
        raise ValueError("scores must not be NaN")
    return s, y


def roc_auc(scores, is_unsafe) -> float | None:
    """The probability that an unsafe item scores above a safe one (ties count half)."""
    s, y = _arrays(scores, is_unsafe)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of tied groups (1-based)
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(scores, is_unsafe) -> float | None:
    """Area under the precision-recall steps: sum of (R_k - R_{k-1}) · P_k over thresholds
    (tied scores form one threshold), as scikit-learn computes it."""
    s, y = _arrays(scores, is_unsafe)
    n_pos = int(y.sum())
    if not n_pos or n_pos == len(y):
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_group = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_group]
    flagged = (np.flatnonzero(last_of_group) + 1).astype(np.float64)
    precision = tp / flagged
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def evaluate(scores, is_unsafe, threshold: float) -> dict:
    """Accuracy, precision, recall, F1 at `threshold`, ROC AUC, average precision, confusion."""
    s, y = _arrays(scores, is_unsafe)
    if math.isnan(float(threshold)):
        raise ValueError("threshold must be a number")
    flagged = s >= float(threshold)
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    tn = int(np.sum(~flagged & ~y))
    fn = int(np.sum(~flagged & y))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = tp + fp + tn + fn
    return {
        "threshold": float(threshold),
        "n": total,
        "n_unsafe": tp + fn,
        "n_safe": fp + tn,
        "accuracy": (tp + tn) / total if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": roc_auc(s, y),
        "average_precision": average_precision(s, y),
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def format_threshold(value: float | None, decimals: int = 3) -> str:
    """A threshold for a table: `decimals` places, more where those would show a real
    score of 0.000048 as 0.000 (a threshold of 0) or 0.99996 as 1.000, and rounded down, so
    that the threshold shown still flags every item the real one does."""
    if value is None:
        return "—"
    for places in range(decimals, 9):
        shown = math.floor(value * 10**places + 1e-9) / 10**places  # 0.29 * 1000 < 290
        if shown > 0 or value <= 0:
            return f"{shown:.{places}f}"
    return f"{value:.2e}"


def threshold_for_recall(scores, is_unsafe, recall: float) -> float | None:
    """The highest threshold at which at least `recall` of the unsafe items are flagged.

    None when there is no unsafe item. A recall of 0 needs nothing flagged: the threshold
    is then just above the highest unsafe score.
    """
    s, y = _arrays(scores, is_unsafe)
    if not 0.0 <= recall <= 1.0:
        raise ValueError("recall must be between 0 and 1")
    unsafe = np.sort(s[y])[::-1]
    if not len(unsafe):
        return None
    needed = math.ceil(recall * len(unsafe) - 1e-9)
    if needed <= 0:
        return float(np.nextafter(unsafe[0], np.inf))
    return float(unsafe[needed - 1])
