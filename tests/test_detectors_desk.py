"""Issue 13, the desk's part: several detectors' scores on the tiles, per-detector Show, Sort
and threshold, the flag rule, and the AI-generated label (G/R) stored, undone and exported.

The second detector's scores are written straight into the library (as a scan with it would)
so the desk is tested without a second model run."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3

import numpy as np
import pytest
from desk import column, scan, settle
from PySide6.QtCore import QItemSelectionModel, Qt

from nsfw_desk.core.detector_columns import detector_kind, resolve
from nsfw_desk.core.export import ExportOptions, export_dataset
from nsfw_desk.core.metrics import calibration_for, models_with_reviews
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.settings import Settings
from nsfw_desk.core.store import Library, float32_blob
from nsfw_desk.gui.grid import Role

AI_ID = "org/deepfake-detector@0123456789abcdef0123456789abcdef01234567"
AI_SOURCE = "org/deepfake-detector"


def ai_score(digest: str) -> float:
    """A made-up but fixed AI score per content, spread over [0, 1]."""
    return int(digest[:4], 16) / 0xFFFF


def add_ai_detector(library: Library, hashes) -> dict[str, float]:
    """Register an AI-generated-image detector and store its scores, as a scan would."""
    library.register_model(
        AI_ID,
        source=AI_SOURCE,
        revision=AI_ID.split("@")[1],
        architecture="vit_small_patch16_384",
        labels=["real", "fake"],
        unsafe_labels=["fake"],
    )
    scores = {h: ai_score(h) for h in hashes}
    library.record_model_scores(
        AI_ID,
        [
            (h, s, float32_blob(np.array([1 - s, s], dtype=np.float32)), None)
            for h, s in scores.items()
        ],
    )
    return scores


@pytest.fixture
def two_detectors(make_window, qtbot, folder, model_dir):
    """A desk on the folder scanned with the NSFW model, plus the AI detector's scores."""
    window = make_window()
    scan(qtbot, window, folder)
    hashes = {h for h in column(window, Role.HASH) if h}
    with Library(window.library_path) as library:
        scores = add_ai_detector(library, hashes)
    window.settings.detectors = [
        {"model": str(model_dir), "threshold": 0.5, "enabled": True},
        {"model": AI_SOURCE, "threshold": 0.6, "enabled": True},
    ]
    window.detectors_view.load()
    qtbot.waitUntil(lambda: len(window.results.detectors) == 1, timeout=10_000)
    return window, scores


def test_a_chip_per_detector_with_its_kind_and_score(two_detectors, qtbot):
    window, scores = two_detectors
    results = window.results
    assert results.detectors[0].short == "AI" and results.primary_kind == "nsfw"
    for i in range(results.rowCount()):
        index = results.index(i)
        digest = index.data(Role.HASH)
        if not digest:
            assert index.data(Role.ERROR)
            continue
        nsfw, ai = index.data(Role.CHIPS)
        assert nsfw[:3] == ("NSFW", "nsfw", pytest.approx(index.data(Role.SCORE)))
        assert ai[:3] == ("AI", "ai-generated", pytest.approx(scores[digest]))
        assert ai[3] == (scores[digest] >= 0.6)
        assert "AI " in index.data(Qt.ItemDataRole.ToolTipRole)
    # The detector's threshold control shows beside the slider, and tiles paint at every size.
    assert window.detectors_view.spin.value() == pytest.approx(0.6)
    for _ in range(5):
        window.zoom(-1)
    assert window.delegate.size == 96
    assert not window.grid.grab().isNull()


def test_flagged_by_a_detector_and_its_threshold_resplit_live(two_detectors, qtbot):
    window, scores = two_detectors
    ai_id = window.results.detectors[0].model_id
    window.set_filter("flagged:" + ai_id)
    assert window.filter_box.currentData() == "flagged:" + ai_id

    def shown() -> set[str]:
        return set(column(window, Role.HASH))

    assert shown() == {h for h, s in scores.items() if s >= 0.6}
    window.detectors_view.choice.setCurrentIndex(0)
    window.detectors_view.spin.setValue(0.3)  # no model runs: the grid re-splits now
    assert shown() == {h for h, s in scores.items() if s >= 0.3}
    assert window.settings.detectors[1]["threshold"] == pytest.approx(0.3)
    assert window.settings.detectors[0]["threshold"] == pytest.approx(0.5)
    # Sort by the AI detector's score, highest first.
    window.set_filter("all")
    window.set_sort("score:" + ai_id)
    order = [scores[h] for h in column(window, Role.HASH) if h]
    assert order == sorted(order, reverse=True)


def test_flag_rule_any_or_primary(two_detectors, qtbot):
    window, scores = two_detectors
    window.spin.setValue(0.5)
    nsfw = {
        h: s
        for h, s in zip(column(window, Role.HASH), column(window, Role.SCORE), strict=True)
        if h
    }
    either = sum(1 for h in nsfw if nsfw[h] >= 0.5 or scores[h] >= 0.6)
    primary = sum(1 for h in nsfw if nsfw[h] >= 0.5)
    assert either != primary, "the made-up scores must tell the two rules apart"
    assert window.results.counts().flagged == either  # "any" is the default
    window.set_filter("flagged")
    assert len([h for h in column(window, Role.HASH) if h]) == either
    window.results.set_flag_rule("primary")
    assert window.results.counts().flagged == primary
    assert len([h for h in column(window, Role.HASH) if h]) == primary
    assert all(column(window, Role.FLAGGED))


def select_rows(window, rows) -> None:
    selection = window.grid.selectionModel()
    selection.clear()
    for row in rows:
        selection.select(window.results.index(row), QItemSelectionModel.SelectionFlag.Select)
    selection.setCurrentIndex(
        window.results.index(rows[-1]), QItemSelectionModel.SelectionFlag.NoUpdate
    )


def test_g_and_r_store_an_independent_undoable_ai_label(two_detectors, qtbot, stored):
    window, scores = two_detectors
    window.settings.auto_advance = False
    window.set_sort("name")
    rows = [i for i in range(window.results.rowCount()) if window.results.index(i).data(Role.HASH)]
    select_rows(window, rows[:1])
    first = window.results.index(rows[0]).data(Role.HASH)
    assert window.detail.ai_label.text() == "not labelled (G / R)"
    qtbot.keyClick(window.grid, Qt.Key.Key_G)
    assert window.results.index(rows[0]).data(Role.AI_LABEL) is True
    assert window.detail.ai_label.text() == "Yes (G)"  # the detail pane says it at once
    settle(qtbot, window)
    reviews = stored(window)
    assert reviews.current_ai_labels() == {first: True}
    assert reviews.current_labels() == {}  # unsafe/safe untouched
    (row,) = reviews.ai_history(first)
    assert (row.model_id, row.score, row.reviewer) == (
        AI_ID,
        pytest.approx(scores[first]),
        "tester",
    )
    assert row.threshold == pytest.approx(0.6)

    select_rows(window, rows[1:4])  # one key press on three: one undo step
    qtbot.keyClick(window.grid, Qt.Key.Key_R)
    three = [window.results.index(r).data(Role.HASH) for r in rows[1:4]]
    settle(qtbot, window)
    assert reviews.current_ai_labels() == {first: True} | {h: False for h in three}
    window.undo_stack.undo()
    assert all(window.results.index(r).data(Role.AI_LABEL) is None for r in rows[1:4])
    settle(qtbot, window)
    assert reviews.current_ai_labels() == {first: True}
    window.undo_stack.undo()
    settle(qtbot, window)
    assert reviews.current_ai_labels() == {}
    window.undo_stack.redo()
    settle(qtbot, window)
    assert reviews.current_ai_labels() == {first: True}
    # Show → Labelled AI-generated
    window.set_filter("ai_generated")
    assert column(window, Role.HASH) == [first] * window.results.copies_of(first)


def test_ai_labels_are_append_only_and_calibrate_the_ai_detector(library):
    hashes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(20)]
    scores = add_ai_detector(library, hashes)
    reviews = ReviewStore(library)
    for h in hashes:
        reviews.decide_ai([DecisionInput(h, AI_ID, scores[h])], scores[h] >= 0.5, reviewer="a")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        library.db.execute("UPDATE ai_labels SET generated = 0")
    assert dict(models_with_reviews(library)) == {AI_ID: 20}
    calibration = calibration_for(library, AI_ID, min_per_class=1)
    assert calibration.n_unsafe == sum(s >= 0.5 for s in scores.values())
    assert calibration.best_f1.f1 == 1.0  # the labels follow the scores exactly
    assert detector_kind(["fake"]) == "ai-generated" and detector_kind(["NSFW"]) == "nsfw"


def test_export_carries_ai_generated_and_every_detectors_score(tmp_path, library, loaded_model):
    from nsfw_desk.core.scan import scan_folder
    from nsfw_desk.synthetic import write_photo

    root = tmp_path / "photos"
    for i in range(4):
        write_photo(root / f"p{i}.jpg", (64, 48), seed=50 + i)
    summary = scan_folder(root, loaded_model, library, keep_outcomes=True)
    found = sorted((o for o in summary.outcomes if o.hash), key=lambda o: o.path)
    scores = add_ai_detector(library, [o.hash for o in found])
    reviews = ReviewStore(library)
    items = [DecisionInput(o.hash, loaded_model.model_id, o.score, o.path) for o in found]
    reviews.decide(items, "safe", reviewer="a", threshold=0.5)
    reviews.decide_ai(items[:1], True, reviewer="a")
    reviews.decide_ai(items[1:2], False, reviewer="a")
    out = tmp_path / "out"
    export_dataset(library, ExportOptions(out=out, val_fraction=0.0))
    lines = (out / "metadata.jsonl").read_text().splitlines()
    rows = {json.loads(line)["hash"]: json.loads(line) for line in lines}
    assert [rows[o.hash]["ai_generated"] for o in found] == [True, False, None, None]
    for o in found:
        assert rows[o.hash]["scores"] == {
            loaded_model.model_id: pytest.approx(o.score),
            AI_ID: pytest.approx(scores[o.hash]),
        }
    with open(out / "labels.csv", newline="") as fh:
        table = {r["hash"]: r for r in csv.DictReader(fh)}
    assert [table[o.hash]["ai_generated"] for o in found] == ["true", "false", "", ""]
    assert set(json.loads(table[found[0].hash]["scores"])) == {loaded_model.model_id, AI_ID}


def test_settings_keep_valid_detectors_and_flag_rule(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "detectors": [
                    {"model": "a/b", "threshold": 1.7, "enabled": True},
                    "not a detector",
                    {"model": "/models/ai", "threshold": 0.3, "enabled": False},
                ],
                "flag_rule": "most",
            }
        )
    )
    settings = Settings.load(path)
    assert settings.detectors == [
        {"model": "a/b", "threshold": 1.0, "enabled": True},
        {"model": "/models/ai", "threshold": 0.3, "enabled": False},
    ]
    assert settings.flag_rule == "any"
    assert settings.detector_specs() == [("a/b", 1.0)]
    assert Settings(model="x", threshold=0.4).detector_specs() == [("x", 0.4)]
    models = [
        {"id": "m1", "source": "a/b", "revision": "r1", "name": "b", "unsafe_labels": ["NSFW"]}
    ]
    (found,) = resolve([("a/b", 0.7)], models)
    assert (found.model_id, found.short, found.threshold) == ("m1", "NSFW", 0.7)


def test_settings_dialog_edits_the_detectors_and_the_flag_rule(qtbot):
    from nsfw_desk.gui.settings_dialog import SettingsDialog

    settings = Settings(
        reviewer="t", detectors=[{"model": "a/b", "threshold": 0.4, "enabled": True}]
    )
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    editor = dialog.detectors
    editor.add("/models/deepfake")
    editor.add("a/b")  # already listed: not twice
    editor.table.setCurrentCell(1, 0)
    editor.move_current(-1)  # the deepfake detector becomes the primary
    editor.table.cellWidget(0, 1).setValue(0.7)
    editor.table.item(1, 0).setCheckState(Qt.CheckState.Unchecked)
    editor.flag_rule.setCurrentIndex(editor.flag_rule.findData("primary"))
    new = dialog.result_settings()
    assert new.detectors == [
        {"model": "/models/deepfake", "threshold": 0.7, "enabled": True},
        {"model": "a/b", "threshold": 0.4, "enabled": False},
    ]
    assert new.flag_rule == "primary"
    assert new.detector_specs() == [("/models/deepfake", 0.7)]
    editor.table.setCurrentCell(0, 0)
    editor.remove_current()
    assert [d["model"] for d in editor.entries()] == ["a/b"]


def test_the_scan_asks_for_every_enabled_detector_the_primary_first(make_window, model_dir):
    window = make_window(
        detectors=[
            {"model": str(model_dir), "threshold": 0.5, "enabled": True},
            {"model": AI_SOURCE, "threshold": 0.6, "enabled": True},
            {"model": "org/off", "threshold": 0.6, "enabled": False},
        ]
    )
    assert window._model_spec() == str(model_dir)  # --model, which is the primary here
    assert window.detectors_view.scan_specs() == (AI_SOURCE,)


def test_a_desk_scan_scores_with_every_enabled_detector(
    make_window, qtbot, folder, model_dir, tmp_path
):
    from nsfw_desk.synthetic import save_random_model

    ai_dir = save_random_model(tmp_path / "deepfake", labels=("real", "fake"), seed=3)
    window = make_window(
        detectors=[
            {"model": str(model_dir), "threshold": 0.5, "enabled": True},
            {"model": str(ai_dir), "threshold": 0.5, "enabled": True},
        ]
    )
    scan(qtbot, window, folder)
    qtbot.waitUntil(lambda: len(window.results.detectors) == 1, timeout=30_000)
    (ai,) = window.results.detectors
    assert ai.kind == "ai-generated" and ai.spec == str(ai_dir)
    chips = [c for c in column(window, Role.CHIPS) if c]
    assert len(chips) == 12 and all(c[1][2] is not None for c in chips)  # every image scored


def test_detector_scores_survive_the_stored_results_being_read_again(two_detectors, qtbot):
    """Settings → OK re-reads the folder's stored rows: the other detectors' columns must be
    rebuilt for them (they were left empty, and counting the flagged rows crashed)."""
    from nsfw_desk.core.result_columns import read_folder

    window, scores = two_detectors
    with Library(window.library_path) as library:
        columns, labels = read_folder(library, window.folder, window.model_id)
    window._on_stored_results(window.folder, window.model_id, columns, labels)
    window.results.counts()  # crashed here: the detector columns were left empty

    def chips() -> dict:
        return {
            index.data(Role.HASH): index.data(Role.CHIPS)[1][2]
            for index in (window.results.index(i) for i in range(window.results.rowCount()))
            if index.data(Role.HASH)
        }

    qtbot.waitUntil(lambda: None not in chips().values(), timeout=10_000)
    assert chips() == pytest.approx(scores)  # read again for the new rows
    ai_only = {h for h, s in scores.items() if s >= 0.6}
    assert window.results.counts().flagged >= len(ai_only)  # "any": the AI flags count


def test_enter_in_the_new_detector_field_adds_it_and_keeps_settings_open(qtbot):
    from nsfw_desk.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(Settings(reviewer="t"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    field = dialog.detectors.new_model
    field.setFocus()
    qtbot.keyClicks(field, "/models/deepfake")
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert dialog.isVisible() and dialog.result() == 0  # not accepted: still open
    assert [e["model"] for e in dialog.detectors.entries()] == ["/models/deepfake"]
    assert field.text() == ""
