"""The desk's model switcher, the "Models disagree" filter and the uncertainty review queue."""

from __future__ import annotations

import json

import pytest
from desk import column, scan, settle
from PySide6.QtCore import Qt

from nsfw_desk.core.runtime import load_model
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.gui.grid import Role
from nsfw_desk.synthetic import save_random_model


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    """A second random model with another seed, marked as trained here (training.json)."""
    folder = save_random_model(tmp_path_factory.mktemp("other") / "my-finetune", seed=7)
    (folder / "training.json").write_text(
        json.dumps(
            {
                "base_model_id": "org/base-model@abc",
                "mode": "head",
                "trained_at": "2026-11-20T10:00:00Z",
            }
        )
    )
    return folder


@pytest.fixture
def two_models(tmp_path, folder, model_dir, other_model_dir):
    """The folder scored by both models in the test library; their scores by path."""
    scores = {}
    with Library(tmp_path / "library.sqlite") as library:
        for spec in (other_model_dir, model_dir):  # the conftest model scanned last
            model = load_model(spec, device="cpu")
            summary = scan_folder(folder, model, library, keep_outcomes=True)
            scores[model.model_id] = {
                o.path: o.score for o in summary.outcomes if o.score is not None
            }
    return scores


def shown_scores(window, *, unscored: bool = False) -> dict:
    """Path → score as the grid shows it (the broken file, never scored, left out)."""
    pairs = zip(column(window, Role.PATH), column(window, Role.SCORE), strict=True)
    return {p: s for p, s in pairs if s is not None or (unscored and p.name != "broken.jpg")}


def test_switcher_lists_the_models_and_switching_shows_their_stored_scores(
    qtbot, make_window, folder, two_models, other_model_dir
):
    window = make_window()
    scan(qtbot, window, folder)
    first, other = window.model_id, next(m for m in two_models if m != window.model_id)
    qtbot.waitUntil(lambda: window.switcher.model_box.count() == 2)
    box = window.switcher.model_box
    titles = [box.itemText(i) for i in range(box.count())]
    assert titles[box.findData(first)] == window.model_name(first)
    assert box.currentData() == first  # the active model is selected
    trained = titles[box.findData(other)]
    assert "my-finetune" in trained and "trained from org/base-model" in trained
    assert "head" in trained and "2026-11-20" in trained
    assert shown_scores(window) == pytest.approx(two_models[first])

    box.setCurrentIndex(box.findData(other))
    box.activated.emit(box.currentIndex())
    qtbot.waitUntil(
        lambda: (
            window.model_id == other and shown_scores(window) == pytest.approx(two_models[other])
        )
    )
    assert not window.scanning  # no scan: the stored scores
    assert window.switcher.coverage.text().strip() == "all 12 images scored"
    assert not window.switcher.scan_button.isVisible()
    # A decision now records the switched model and its score.
    window._select_row(0)
    window.decide("unsafe")
    settle(qtbot, window)


def test_a_model_that_never_scored_new_files_says_so_and_scan_again_scores_them(
    qtbot, make_window, folder, two_models, other_model_dir
):
    from nsfw_desk.synthetic import write_photo

    window = make_window()
    scan(qtbot, window, folder)
    other = next(m for m in two_models if m != window.model_id)
    write_photo(folder / "new.jpg", (100, 80), seed=99)
    scan(qtbot, window, folder)  # the new file is scored by the active model only
    qtbot.waitUntil(lambda: window.switcher.model_box.findData(other) >= 0)
    window.switch_model(other)
    qtbot.waitUntil(lambda: window.model_id == other and window.results.unscored() == 1)
    assert "1 of 13 images have no score" in window.switcher.coverage.text()
    assert window.switcher.scan_button.isVisibleTo(window)
    new = folder.resolve() / "new.jpg"
    assert shown_scores(window, unscored=True)[new] is None
    window.switcher.scan_button.click()
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    assert window.model_id == other  # scanned with the switched model
    assert shown_scores(window)[new] is not None
    assert window.results.unscored() == 0


def test_models_disagree_lists_exactly_the_items_decided_differently_with_both_scores(
    qtbot, make_window, folder, two_models
):
    window = make_window()
    scan(qtbot, window, folder)
    active = window.model_id
    other = next(m for m in two_models if m != active)
    qtbot.waitUntil(lambda: window.switcher.compare_box.count() == 2)
    a, b = two_models[active], two_models[other]
    # A threshold between the models' scores makes some items differ.
    threshold = round(sorted(a.values())[6], 2)
    window.spin.setValue(threshold)
    expected = {p for p in a if (a[p] >= threshold) != (b[p] >= threshold)}
    assert expected and len(expected) < 12
    window.set_filter("models_disagree")  # picks the only other model to compare with
    qtbot.waitUntil(lambda: window.results.other_model_id == other)
    qtbot.waitUntil(lambda: set(column(window, Role.PATH)) == expected)
    for path, score, other_score in zip(
        column(window, Role.PATH),
        column(window, Role.SCORE),
        column(window, Role.OTHER_SCORE),
        strict=True,
    ):
        assert score == pytest.approx(a[path]) and other_score == pytest.approx(b[path])
    tip = window.results.index(0).data(Qt.ItemDataRole.ToolTipRole)
    assert f"⇄ {column(window, Role.OTHER_SCORE)[0]:.3f}: my-finetune" in tip
    # The threshold moves the set; no comparison model: nothing disagrees.
    window.spin.setValue(0.0)
    assert window.results.rowCount() == 0
    qtbot.waitUntil(lambda: "Models disagree" in window.empty_hint.text())
    window.spin.setValue(threshold)
    window.switcher.compare_box.setCurrentIndex(0)
    window.switcher.compare_box.activated.emit(0)
    qtbot.waitUntil(lambda: window.results.other_model_id is None)
    assert window.results.rowCount() == 0
    assert column(window, Role.OTHER_SCORE) == []


def test_uncertain_sort_puts_scores_nearest_the_threshold_first_and_the_queue_follows_it(
    qtbot, make_window, folder, stored
):
    window = make_window(auto_advance=True)
    scan(qtbot, window, folder)
    window.spin.setValue(0.5)
    window.review_uncertain()
    assert window.sort_box.currentData() == "uncertain"
    assert window.sort_box.currentText() == "Uncertain"
    assert "nearest the threshold" in window.sort_box.toolTip()
    scores = [s for s in column(window, Role.SCORE) if s is not None]
    distances = [abs(s - 0.5) for s in scores]
    assert distances == sorted(distances) and len(scores) == 12
    assert column(window, Role.ERROR)[-1] is not None  # the unscored broken file last
    assert window.grid.currentIndex().row() == 0
    # Label the third item: auto-advance then skips it in the queue.
    window._select_row(1)
    window.decide("safe")
    assert window.grid.currentIndex().row() == 2
    window._select_row(2)
    window.decide("unsafe")
    window._select_row(0)
    window.decide("safe")  # 1 and 2 are reviewed: the queue goes to 3
    assert window.grid.currentIndex().row() == 3
    # Another threshold re-orders the queue.
    window.spin.setValue(0.2)
    distances = [abs(s - 0.2) for s in column(window, Role.SCORE) if s is not None]
    assert distances == sorted(distances)
    settle(qtbot, window)


def test_the_compared_scores_are_read_again_with_the_stored_rows(
    qtbot, make_window, folder, two_models
):
    """A rescan re-reads the folder's stored rows: the compared model's column is rebuilt
    for them from the read thread (no hash → score dict walked on the GUI thread)."""
    from nsfw_desk.core.result_columns import read_folder
    from nsfw_desk.core.store import Library

    window = make_window()
    scan(qtbot, window, folder)
    other = next(m for m in two_models if m != window.model_id)
    qtbot.waitUntil(lambda: window.switcher.compare_box.count() == 2)
    expected = two_models[other]  # every photo (the broken JPEG has no score)

    def shown() -> dict:
        pairs = zip(column(window, Role.PATH), column(window, Role.OTHER_SCORE), strict=True)
        return {path: score for path, score in pairs if score is not None}

    window.compare_with(other)
    qtbot.waitUntil(lambda: shown().keys() == expected.keys())
    with Library(window.library_path) as library:
        columns, labels = read_folder(library, window.folder, window.model_id)
    window._on_stored_results(window.folder, window.model_id, columns, labels)
    assert shown() == {}  # the new rows' column, until the read answers
    qtbot.waitUntil(lambda: shown().keys() == expected.keys())
    assert shown() == pytest.approx(expected)
