"""Threshold calibration: hand-computed metrics, suggestions, reviewed labels, CLI."""

from __future__ import annotations

import json
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest

from nsfw_desk.cli import main
from nsfw_desk.core.metrics import (
    MIN_PER_CLASS,
    NotEnoughReviews,
    ThresholdMetrics,
    calibrate,
    calibration_for,
    models_with_reviews,
    reviewed_scores,
)
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.store import Library, ScoredFile

MODEL = "sha256:" + "ab" * 32
OTHER = "org/other@0123abc"

# Six items; two tie at 0.4 with different labels.
SCORES = [0.1, 0.4, 0.4, 0.6, 0.8, 0.9]
UNSAFE = [False, True, False, False, True, True]
# threshold: (tp, fp, tn, fn, precision, recall, F1, FPR), worked out by hand.
EXPECTED = {
    0.0: (3, 3, 0, 0, F(1, 2), F(1), F(2, 3), F(1)),  # everything flagged
    0.1: (3, 3, 0, 0, F(1, 2), F(1), F(2, 3), F(1)),
    0.4: (3, 2, 1, 0, F(3, 5), F(1), F(3, 4), F(2, 3)),  # both 0.4 items flip together
    0.6: (2, 1, 2, 1, F(2, 3), F(2, 3), F(2, 3), F(1, 3)),
    0.8: (2, 0, 3, 1, F(1), F(2, 3), F(4, 5), F(0)),
    0.9: (1, 0, 3, 2, F(1), F(1, 3), F(1, 2), F(0)),
    1.0: (0, 0, 3, 3, F(1), F(0), F(0), F(0)),  # nothing flagged: precision 1 by definition
}


def as_tuple(m: ThresholdMetrics) -> tuple:
    return (m.tp, m.fp, m.tn, m.fn, m.precision, m.recall, m.f1, m.fpr)


def brute(scores, unsafe, threshold: float) -> tuple:
    """The definition, one boolean mask per threshold (no sorting, no search)."""
    flagged = np.asarray(scores, dtype=float) >= threshold
    unsafe = np.asarray(unsafe, dtype=bool)
    tp, fp = int(np.sum(flagged & unsafe)), int(np.sum(flagged & ~unsafe))
    tn, fn = int(np.sum(~flagged & ~unsafe)), int(np.sum(~flagged & unsafe))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return (tp, fp, tn, fn, precision, recall, f1, fpr)


def assert_matches(m: ThresholdMetrics, expected: tuple) -> None:
    assert as_tuple(m)[:4] == expected[:4]
    assert as_tuple(m)[4:] == pytest.approx([float(x) for x in expected[4:]], abs=1e-12)


# --- calibrate ----------------------------------------------------------------------------


def test_hand_computed_points():
    cal = calibrate(SCORES, UNSAFE, model_id="m")
    assert [p.threshold for p in cal.points] == list(EXPECTED)
    for point, expected in zip(cal.points, EXPECTED.values(), strict=True):
        assert_matches(point, expected)
        assert isinstance(point.tp, int) and isinstance(point.precision, float)
    assert cal.model_id == "m" and cal.target_recall == 0.95
    assert cal.unsafe_scores.tolist() == [0.4, 0.8, 0.9]
    assert cal.safe_scores.tolist() == [0.1, 0.4, 0.6]
    assert (cal.n_unsafe, cal.n_safe) == (3, 3)


@pytest.mark.parametrize(
    ("target", "threshold"),
    [
        (0.95, 0.4),  # recall 1 at 0.0, 0.1 and 0.4; 0.4 has the best precision
        (1.0, 0.4),
        (0.6, 0.8),  # recall 2/3 with precision 1
        (0.3, 0.9),  # 0.8 and 0.9 both have precision 1: the higher threshold wins
        (0.0, 1.0),  # flag nothing: precision 1 by definition
    ],
)
def test_target_recall_suggestion(target, threshold):
    cal = calibrate(SCORES, UNSAFE, target_recall=target)
    assert cal.at_target.threshold == threshold
    assert cal.at_target.recall >= target
    assert cal.best_f1.threshold == 0.8 and cal.best_f1.f1 == pytest.approx(0.8)


def test_best_f1_ties_take_the_highest_threshold():
    # F1 is 4/5 at 0.0 and at 0.2 (the same items flagged), lower everywhere else.
    cal = calibrate([0.2, 0.3, 0.7], [True, False, True])
    assert cal.best_f1.threshold == 0.2 and cal.best_f1.f1 == pytest.approx(0.8)


def test_exact_recall_boundary_counts_as_reached():
    # 19 of 20 unsafe items at or above 0.5: recall exactly 0.95 must meet a 0.95 target.
    scores = [0.9] * 19 + [0.1] + [0.2] * 20
    unsafe = [True] * 20 + [False] * 20
    cal = calibrate(scores, unsafe, target_recall=0.95)
    assert cal.at_target.threshold == 0.9 and cal.at_target.recall == 0.95


def test_score_of_exactly_one_is_flagged_at_threshold_one():
    cal = calibrate([1.0, 0.5, 0.0], [True, False, False])
    assert [p.threshold for p in cal.points] == [0.0, 0.5, 1.0]
    assert (cal.points[-1].tp, cal.points[-1].fp) == (1, 0)
    assert (cal.points[0].tp, cal.points[0].fp) == (1, 2)  # a 0.0 score is >= 0.0


def test_no_unsafe_items_means_no_target_suggestion():
    cal = calibrate([0.2, 0.4], [False, False])
    assert cal.at_target is None
    assert all(p.recall == 0.0 and p.f1 == 0.0 for p in cal.points)
    assert cal.best_f1.threshold == 1.0


def test_at_arbitrary_thresholds_matches_brute_force():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(300), 2)  # many ties
    unsafe = rng.random(300) < scores
    cal = calibrate(scores, unsafe)
    for threshold in [-0.5, 0.0, 0.005, 0.3, 0.31, 0.5, 0.999, 1.0, 2.0, *scores[:20]]:
        m = cal.at(threshold)
        assert m.threshold == threshold
        assert as_tuple(m) == pytest.approx(brute(scores, unsafe, threshold), abs=1e-12)
    for point in cal.points:
        assert cal.at(point.threshold) == point
    with pytest.raises(ValueError):
        cal.at(float("nan"))


def test_float32_scores_compare_as_stored():
    # Scores as a model stores them (float32 widened to a Python float): no rounding slips.
    values = np.float32([0.1, 0.7, 0.7000001, 0.3]).astype(float)
    unsafe = [False, True, True, False]
    cal = calibrate(values, unsafe)
    for point in cal.points:
        assert as_tuple(point) == pytest.approx(brute(values, unsafe, point.threshold))
    assert cal.at(float(values[1])).tp == 2 and cal.at(float(values[2])).tp == 1
    # float32(0.7) is just below 0.7: a 0.70 slider does not flag it, here as in the desk.
    assert cal.at(0.7).tp == 1 == brute(values, unsafe, 0.7)[0]


def test_100k_items_match_brute_force_on_a_subsample():
    rng = np.random.default_rng(7)
    n = 100_000
    scores = np.float32(rng.beta(0.7, 0.7, n)).astype(float)
    scores[: n // 10] = np.round(scores[: n // 10], 3)  # plenty of ties
    unsafe = rng.random(n) < scores
    cal = calibrate(scores, unsafe)
    thresholds = [p.threshold for p in cal.points]
    assert thresholds == sorted(set(scores.tolist()) | {0.0, 1.0})
    for i in rng.choice(len(cal.points), 200, replace=False):
        point = cal.points[i]
        assert as_tuple(point) == pytest.approx(brute(scores, unsafe, point.threshold))
    for threshold in rng.random(10):
        assert as_tuple(cal.at(threshold)) == pytest.approx(brute(scores, unsafe, threshold))
    recalls = np.array([p.recall for p in cal.points])
    precisions = np.array([p.precision for p in cal.points])
    reaching = recalls >= 0.95
    assert cal.at_target.precision == precisions[reaching].max()
    assert cal.at_target.threshold == max(
        t
        for t, r, p in zip(thresholds, reaching, precisions, strict=True)
        if r and p == cal.at_target.precision
    )
    assert cal.best_f1.f1 == max(p.f1 for p in cal.points)


@pytest.mark.parametrize(
    ("scores", "unsafe", "kw"),
    [
        ([0.1, float("nan")], [True, False], {}),
        ([0.1, 0.2], [True], {}),
        ([[0.1]], [[True]], {}),
        ([0.1, 0.2], [True, False], {"target_recall": 1.5}),
    ],
)
def test_bad_input_is_refused(scores, unsafe, kw):
    with pytest.raises(ValueError):
        calibrate(scores, unsafe, **kw)


def test_as_dict_is_json_ready():
    data = json.loads(json.dumps(calibrate(SCORES, UNSAFE, model_id="m").as_dict()))
    assert data["counts"] == {"unsafe": 3, "safe": 3, "total": 6}
    assert data["at_target"]["threshold"] == 0.4 and data["best_f1"]["threshold"] == 0.8
    assert [p["threshold"] for p in data["points"]] == list(EXPECTED)
    assert set(data["points"][0]) == {
        "threshold",
        "tp",
        "fp",
        "tn",
        "fn",
        "precision",
        "recall",
        "f1",
        "fpr",
    }


# --- the library --------------------------------------------------------------------------


def add_scores(
    library: Library, model_id: str, scores: dict[str, float], folder: str = "/photos"
) -> None:
    library.record_scored(
        [
            ScoredFile(
                Path(folder) / f"{digest}.jpg",
                100,
                1,
                digest,
                unsafe=score,
                probabilities=np.array([score, 1 - score]),
                embedding=np.zeros(4),
            )
            for digest, score in scores.items()
        ],
        model_id,
    )


def label(library: Library, digests, value: str | None) -> None:
    ReviewStore(library).decide(
        [DecisionInput(d) for d in digests], value, reviewer="alice", threshold=0.5
    )


def fill(library: Library, unsafe: int, safe: int, model_id: str = MODEL) -> None:
    """`unsafe` items scored high and reviewed unsafe, `safe` scored low and reviewed safe."""
    add_scores(
        library,
        model_id,
        {f"u{i}": 0.5 + i / 1000 for i in range(unsafe)}
        | {f"s{i}": 0.1 + i / 1000 for i in range(safe)},
    )
    label(library, [f"u{i}" for i in range(unsafe)], "unsafe")
    label(library, [f"s{i}" for i in range(safe)], "safe")


def test_reviewed_scores_use_current_labels_and_one_model(library):
    add_scores(library, MODEL, {"a": 0.9, "b": 0.2, "c": 0.7, "d": 0.4, "e": 0.5})
    add_scores(library, OTHER, {"a": 0.1, "b": 0.8, "f": 0.6})
    label(library, ["a", "b", "c", "d", "f", "g"], "unsafe")  # g: reviewed, never scored
    label(library, ["b"], "safe")  # overridden: the latest decision counts
    label(library, ["c"], None)  # cleared: not reviewed any more
    label(library, ["d"], "safe")
    label(library, ["d"], None)
    label(library, ["d"], "unsafe")  # cleared, then labelled again
    scores, unsafe = reviewed_scores(library, MODEL)  # e: scored, never reviewed
    assert dict(zip(scores.tolist(), unsafe.tolist(), strict=True)) == {
        0.9: True,
        0.2: False,
        0.4: True,
    }
    scores, unsafe = reviewed_scores(library, OTHER)
    assert sorted(zip(scores.tolist(), unsafe.tolist(), strict=True)) == [
        (0.1, True),
        (0.6, True),
        (0.8, False),
    ]
    assert reviewed_scores(library, "no/such@model")[0].size == 0
    assert models_with_reviews(library) == [(OTHER, 3), (MODEL, 3)]  # ties: by id


def test_duplicate_content_counts_once(library):
    add_scores(library, MODEL, {"a": 0.9, "b": 0.2})
    add_scores(library, MODEL, {"a": 0.9}, folder="/copies")  # same content, second path
    add_scores(library, MODEL, {"a": 0.9}, folder="/more/copies")
    label(library, ["a", "a", "b"], "unsafe")  # a duplicate in a multi-select
    assert library.db.execute("SELECT COUNT(*) FROM files WHERE hash = 'a'").fetchone()[0] == 3
    scores, unsafe = reviewed_scores(library, MODEL)
    assert sorted(scores.tolist()) == [0.2, 0.9] and unsafe.all()
    assert models_with_reviews(library) == [(MODEL, 2)]


def test_models_with_reviews_most_first(library):
    fill(library, 3, 2, OTHER)
    add_scores(library, MODEL, {"u0": 0.4})
    assert models_with_reviews(library) == [(OTHER, 5), (MODEL, 1)]


def test_not_enough_reviews_names_the_counts(library):
    fill(library, MIN_PER_CLASS - 1, MIN_PER_CLASS + 2)
    with pytest.raises(NotEnoughReviews) as exc:
        calibration_for(library, MODEL)
    assert "9 unsafe and 12 safe reviewed items; at least 10 of each are needed" in str(exc.value)
    assert (exc.value.unsafe, exc.value.safe, exc.value.needed) == (9, 12, 10)
    cal = calibration_for(library, MODEL, min_per_class=9)
    assert (cal.n_unsafe, cal.n_safe) == (9, 12)


def test_exactly_the_minimum_is_enough(library):
    fill(library, MIN_PER_CLASS, MIN_PER_CLASS)
    cal = calibration_for(library, MODEL, target_recall=1.0)
    assert cal.model_id == MODEL and cal.target_recall == 1.0
    assert (cal.n_unsafe, cal.n_safe) == (10, 10)
    # Perfectly separated: precision and recall 1 at the lowest unsafe score.
    assert cal.best_f1.threshold == 0.5 and cal.best_f1.f1 == 1.0
    assert cal.at_target.threshold == 0.5


def test_not_enough_reviews_accepts_a_plain_message():
    assert str(NotEnoughReviews("review some images first")) == "review some images first"


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "lib.sqlite"
    with Library(path) as library:
        fill(library, 12, 15)
        fill(library, 3, 3, OTHER)
    return path


def test_metrics_table(db, capsys):
    assert main(["metrics", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"sha256:abababab [{MODEL}]: 12 unsafe and 15 safe reviewed items")
    assert "precision" in out and "recall" in out and "FPR" in out
    rows = [line.split() for line in out.splitlines() if line[:10].strip()[:1].isdigit()]
    thresholds = [float(r[0]) for r in rows]
    assert thresholds == sorted(thresholds)
    assert {round(i * 0.05, 2) for i in range(21)} <= set(thresholds)
    marked = [r for r in rows if "<-" in r]
    assert len(marked) == 1 and marked[0][0] == "0.50"  # both suggestions on one row
    assert "<- target <- F1" in out
    assert "target: recall >= 0.95" in out and "F1: best F1 1.000 at score >= 0.5" in out
    assert main(["metrics", "--db", str(db), "--model", OTHER, "--target-recall", "1"]) == 2
    assert "3 unsafe and 3 safe" in capsys.readouterr().err


def test_metrics_json(db, capsys):
    assert main(["metrics", "--json", "--db", str(db), "--target-recall", "0.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model_id"] == MODEL and data["target_recall"] == 0.5
    assert data["counts"] == {"unsafe": 12, "safe": 15, "total": 27}
    assert len(data["points"]) == 27 + 2  # distinct scores plus 0.0 and 1.0
    with Library(db) as library:
        expected = calibration_for(library, MODEL, target_recall=0.5).as_dict()
    assert data == json.loads(json.dumps(expected))


def test_metrics_too_few_reviews_exit_2(tmp_path, capsys):
    path = tmp_path / "few.sqlite"
    with Library(path) as library:
        fill(library, 3, 12)
    for extra in ([], ["--json"]):
        assert main(["metrics", "--db", str(path), *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "3 unsafe and 12 safe reviewed items; at least 10 of each are needed" in captured.err


def test_metrics_unknown_model_lists_the_known_ones(db, capsys):
    assert main(["metrics", "--db", str(db), "--model", "org/none@1"]) == 2
    err = capsys.readouterr().err
    assert "--model org/none@1 is not a model of this library" in err
    assert f"{MODEL} (27)" in err and f"{OTHER} (6)" in err


def test_metrics_without_reviews_or_library_exit_2(tmp_path, capsys):
    missing = tmp_path / "missing.sqlite"
    assert main(["metrics", "--db", str(missing)]) == 2
    assert "no library" in capsys.readouterr().err
    assert not missing.exists()  # not created by looking
    empty = tmp_path / "empty.sqlite"
    Library(empty).close()
    assert main(["metrics", "--db", str(empty), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no reviewed item has a score" in captured.err


@pytest.mark.parametrize(
    "args",
    [
        ["metrics", "--target-recall", "1.5"],
        ["metrics", "--target-recall", "x"],
        ["metrics", "--frobnicate"],
    ],
)
def test_metrics_bad_usage_exits_2(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_not_enough_reviews_names_the_model_for_people(tmp_path):
    with Library(tmp_path / "l.sqlite") as library:
        library.register_model(
            MODEL,
            source=str(tmp_path / "my-finetune"),
            revision=None,
            architecture="a",
            labels=["NSFW", "SFW"],
            unsafe_labels=["NSFW"],
        )
        fill(library, 3, 3)
        with pytest.raises(NotEnoughReviews, match=r"calibrate my-finetune \(sha256:abababab\):"):
            calibration_for(library, MODEL)
