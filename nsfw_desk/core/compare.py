"""Two models side by side on the reviewed items neither was trained on.

The same numbers as training's before/after report (core/evaluation.py), and how many
decisions at the threshold change between them. A head-only trained model scores items
that lack its score from the base model's stored embeddings (no decoding); other missing
scores are counted and the command to get them is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsfw_desk.core.defaults import TARGET_RECALL, THRESHOLD
from nsfw_desk.core.evaluation import evaluate, format_threshold, threshold_for_recall
from nsfw_desk.core.hub import ModelSpec, model_folder
from nsfw_desk.core.review import ReviewStore
from nsfw_desk.core.store import Library


class CompareError(Exception):
    """The comparison cannot be made; the message says why and what to do."""


@dataclass
class _Side:
    spec: str
    folder: Path
    model_id: str
    trained_on: set[str]


def _side(spec: str) -> _Side:
    from nsfw_desk.core.training.heads import training_record

    folder, model_id = model_folder(ModelSpec.parse(spec), offline=True)
    record = training_record(folder) or {}
    return _Side(spec, folder, model_id, set(record.get("train_hashes") or []))


def compare_models(
    library: Library, model_a: str, model_b: str, *, threshold: float = THRESHOLD
) -> dict:
    """Metrics of both models on reviewed items that neither was trained on."""
    from nsfw_desk.core.training.heads import head_from_folder, rescore_from_embeddings

    a, b = _side(model_a), _side(model_b)
    labels = ReviewStore(library).current_labels()
    if not labels:
        raise CompareError("The library has no reviewed items to compare the models on.")
    trained = a.trained_on | b.trained_on
    candidates = sorted(h for h in labels if h not in trained)
    if not candidates:
        raise CompareError(
            f"All {len(labels)} reviewed items were used to train one of the models; review "
            "more items to compare them fairly."
        )
    from_embeddings = {}
    scores = {}
    for key, side in (("a", a), ("b", b)):
        have = library.scores_for(side.model_id, candidates)
        missing = [h for h in candidates if h not in have]
        made = 0
        head = head_from_folder(side.folder) if missing else None
        if head is not None:
            base_id, scorer = head
            made = rescore_from_embeddings(library, base_id, side.model_id, scorer, missing)
            have = library.scores_for(side.model_id, candidates)
        from_embeddings[key] = made
        scores[key] = have
    both = [h for h in candidates if h in scores["a"] and h in scores["b"]]
    lacking = {key: len(candidates) - len(scores[key]) for key in ("a", "b")}
    if not both:
        raise CompareError(
            f"None of the {len(candidates)} reviewed items has a score from both models. "
            + _how_to_score(a, b, lacking)
        )
    y = np.array([labels[h] == "unsafe" for h in both])
    result: dict = {
        "threshold": threshold,
        "target_recall": TARGET_RECALL,
        "reviewed": len(labels),
        "trained_on_excluded": len(labels) - len(candidates),
        "compared": len(both),
        "lacking_scores": lacking,
        "scored_from_embeddings": from_embeddings,
    }
    flagged = {}
    for key, side in (("a", a), ("b", b)):
        s = np.array([scores[key][h] for h in both], dtype=np.float64)
        metrics = evaluate(s, y, threshold)
        metrics["threshold_for_target_recall"] = threshold_for_recall(s, y, TARGET_RECALL)
        result[key] = {"model": side.spec, "model_id": side.model_id, **metrics}
        flagged[key] = s >= threshold
    changed = flagged["a"] != flagged["b"]
    result["changed_decisions"] = int(changed.sum())
    result["now_flagged"] = int((changed & flagged["b"]).sum())
    result["no_longer_flagged"] = int((changed & flagged["a"]).sum())
    if any(lacking.values()):
        result["hint"] = _how_to_score(a, b, lacking)
    return result


def _how_to_score(a: _Side, b: _Side, lacking: dict[str, int]) -> str:
    parts = [
        f"{lacking[key]} lack a score from {side.spec}: scan their folders with "
        f"`nsfw-desk scan --model {side.spec} FOLDER`"
        for key, side in (("a", a), ("b", b))
        if lacking[key]
    ]
    return "; ".join(parts) + "."


def compare_lines(result: dict) -> list[str]:
    """The comparison as a table for people."""

    def fmt(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    a, b = result["a"], result["b"]
    lines = [
        f"A: {a['model']}",
        f"B: {b['model']}",
        f"{result['compared']} reviewed items neither model was trained on "
        f"({a['n_unsafe']} unsafe, {a['n_safe']} safe; {result['trained_on_excluded']} "
        f"left out as training items); threshold {result['threshold']:g}",
        f"  {'':<28}{'A':>9}{'B':>9}",
    ]
    for label, key in (
        ("accuracy", "accuracy"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("F1", "f1"),
        ("ROC AUC", "roc_auc"),
        ("average precision", "average_precision"),
    ):
        lines.append(f"  {label:<28}{fmt(a[key]):>9}{fmt(b[key]):>9}")
    for key in ("tp", "fp", "tn", "fn"):
        lines.append(
            f"  {key.upper() + ' (confusion)':<28}{a['confusion'][key]:>9}{b['confusion'][key]:>9}"
        )
    lines.append(
        f"  {'threshold for recall ' + format(result['target_recall'], 'g'):<28}"
        f"{format_threshold(a['threshold_for_target_recall']):>9}"
        f"{format_threshold(b['threshold_for_target_recall']):>9}"
    )
    lines.append(
        f"Changed decisions at {result['threshold']:g}: {result['changed_decisions']} "
        f"({result['now_flagged']} flagged by B only, {result['no_longer_flagged']} by A only)"
    )
    made = result["scored_from_embeddings"]
    for key in ("a", "b"):
        if made[key]:
            lines.append(
                f"{made[key]} items scored for {key.upper()} from stored embeddings (no decoding)"
            )
    if result.get("hint"):
        lines.append("Not compared: " + result["hint"])
    return lines
