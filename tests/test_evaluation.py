"""The before/after report's numbers, checked against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from nsfw_desk.core.evaluation import (
    average_precision,
    evaluate,
    roc_auc,
    threshold_for_recall,
)


def test_evaluate_counts_and_rates_at_the_threshold():
    scores = [0.9, 0.8, 0.6, 0.4, 0.3, 0.1]
    unsafe = [True, True, False, True, False, False]
    got = evaluate(scores, unsafe, 0.5)
    assert got["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert got["n_unsafe"] == 3 and got["n_safe"] == 3 and got["n"] == 6
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    # pairs (unsafe, safe) ranked right: 0.9 beats 3, 0.8 beats 3, 0.4 beats 2 → 8 of 9
    assert got["roc_auc"] == pytest.approx(8 / 9)
    # flagged in order: 1/1, 2/2, (2/3), 3/4 → AP = (1 + 1 + 3/4) / 3
    assert got["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_a_score_equal_to_the_threshold_is_flagged():
    got = evaluate([0.5, 0.2], [True, False], 0.5)
    assert got["confusion"] == {"tp": 1, "fp": 0, "tn": 1, "fn": 0}


def test_ties_count_half_in_roc_auc_and_group_in_average_precision():
    assert roc_auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert average_precision([0.5, 0.5], [True, False]) == pytest.approx(0.5)


def test_perfect_and_inverted_scores():
    y = np.array([True] * 5 + [False] * 5)
    s = np.linspace(1, 0, 10)
    assert roc_auc(s, y) == 1.0 and average_precision(s, y) == 1.0
    assert roc_auc(-s, y) == 0.0


def test_one_class_only_has_no_auc_and_the_documented_conventions():
    got = evaluate([0.1, 0.2], [False, False], 0.5)
    assert got["roc_auc"] is None and got["average_precision"] is None
    assert got["precision"] == 1.0 and got["recall"] == 0.0 and got["f1"] == 0.0
    assert got["accuracy"] == 1.0


def test_mismatched_lengths_and_nan_are_refused():
    with pytest.raises(ValueError):
        evaluate([0.1], [True, False], 0.5)
    with pytest.raises(ValueError):
        evaluate([float("nan")], [True], 0.5)


def test_threshold_for_recall_is_the_highest_that_reaches_it():
    scores = [0.9, 0.7, 0.4, 0.2, 0.3, 0.8]
    unsafe = [True, True, True, True, False, False]
    assert threshold_for_recall(scores, unsafe, 0.5) == pytest.approx(0.7)
    assert threshold_for_recall(scores, unsafe, 0.75) == pytest.approx(0.4)
    assert threshold_for_recall(scores, unsafe, 1.0) == pytest.approx(0.2)
    t = threshold_for_recall(scores, unsafe, 0.75)
    assert evaluate(scores, unsafe, t)["recall"] >= 0.75
    assert evaluate(scores, unsafe, np.nextafter(t, 1))["recall"] < 0.75
    assert threshold_for_recall([0.3], [False], 0.9) is None
    assert evaluate(scores, unsafe, threshold_for_recall(scores, unsafe, 0.0))["recall"] == 0.0
