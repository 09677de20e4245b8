"""Review → "Train from my decisions…" in the desk: progress, Stop and Resume, errors, report,
the new model shown and the review queue after it (tiny random-weight model, head mode)."""

from __future__ import annotations

import numpy as np
import pytest
from desk import column, scan, settle
from PIL import Image
from PySide6.QtCore import Qt

from nsfw_desk.core.review import DecisionInput
from nsfw_desk.core.store import Library
from nsfw_desk.gui.grid import Role

N_PER_CLASS = 14
N_UNREVIEWED = 6


@pytest.fixture
def two_colour_folder(tmp_path):
    """Noisy images in two colour families: reddish ("unsafe") and bluish ("safe")."""
    root = tmp_path / "colours"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2 * N_PER_CLASS + N_UNREVIEWED):
        red = i % 2 == 0
        base = np.array([200, 40, 40] if red else [40, 60, 200], dtype=np.float64)
        pixels = np.clip(base + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{'r' if red else 'b'}_{i:02d}.png")
    return root


def label_all_but_a_few(window) -> list:
    """Label the first N_PER_CLASS of each colour as the desk would; the rest stay open."""
    items = {"unsafe": [], "safe": []}
    for path, digest, score in zip(
        column(window, Role.PATH),
        column(window, Role.HASH),
        column(window, Role.SCORE),
        strict=True,
    ):
        label = "unsafe" if path.name.startswith("r_") else "safe"
        if len(items[label]) < N_PER_CLASS:
            items[label].append(DecisionInput(digest, window.model_id, score, path))
    with Library(window.library_path) as library:
        from nsfw_desk.core.review import ReviewStore

        for label, chosen in items.items():
            ReviewStore(library).decide(chosen, label, reviewer="tester", threshold=0.5)
    return [i.hash for chosen in items.values() for i in chosen]


def stop_at_first_training_step(dialog, epoch: int = 1) -> list:
    """Ask the run to stop as soon as it reports a training step in `epoch` (on the worker's
    thread, so the stop is certain to land before the run ends); every step is kept."""
    steps: list = []
    worker = dialog.task.worker

    def seen(p) -> None:
        steps.append((p.phase, p.step))
        stop = p.phase == "training" and p.step > 0 and p.epoch >= epoch
        if stop and not worker.__dict__.get("stopped_once"):
            worker.__dict__["stopped_once"] = True
            worker.cancel()

    worker.progress.connect(seen, Qt.ConnectionType.DirectConnection)
    return steps


def start_training(qtbot, window, out, *, mode: str, epochs: int, dialog=None):
    dialog = dialog or window.open_training()
    qtbot.waitUntil(lambda: "14 unsafe, 14 safe" in dialog.intro.text())
    dialog.out.setText(str(out))
    dialog.out.editingFinished.emit()
    dialog.mode.setCurrentIndex(dialog.mode.findData(mode))
    dialog.epochs.setValue(epochs)
    return dialog


def test_training_from_the_desk_shows_progress_report_and_the_new_model(
    qtbot, make_window, two_colour_folder, tmp_path
):
    window = make_window(auto_advance=True)
    scan(qtbot, window, two_colour_folder)
    base_model = window.model_id
    label_all_but_a_few(window)
    dialog = window.open_training()
    assert dialog.base_label.text() == window.model_name(base_model)
    assert dialog.out.text().startswith(str(tmp_path / "models" / "nsfw-sfw-trained-"))
    out = tmp_path / "trained"
    dialog = start_training(qtbot, window, out, mode="head", epochs=40, dialog=dialog)
    steps = stop_at_first_training_step(dialog)

    # Stop in the first epoch: nothing written, the base model still shown.
    dialog.train_button.click()
    assert dialog.running and not dialog.options.isEnabled()
    qtbot.waitUntil(lambda: not dialog.running, timeout=60_000)
    assert dialog.phase.text() == "Stopped", dialog.error.text()
    assert dialog.line.text().startswith("Stopped in epoch")
    assert dialog.result is None and window.model_id == base_model and not out.exists()
    assert any(phase == "training" for phase, _ in steps)

    steps.clear()
    dialog.train_button.click()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=120_000)
    result = dialog.result
    assert result.out == out and (out / "training.json").is_file()
    # Progress was shown: epochs, steps, loss, time left.
    assert [p for p, _ in steps].count("training") >= 1
    assert dialog.figures["epoch"].text() != "—" and dialog.figures["step"].text() != "—"
    assert dialog.bar.value() == dialog.bar.maximum() > 0
    # The before/after report as a table, and the summary says where the scores came from.
    names = [dialog.report.item(r, 0).text() for r in range(dialog.report.rowCount())]
    assert names[:6] == ["Accuracy", "Precision", "Recall", "F1", "ROC AUC", "Average precision"]
    assert "Threshold for recall 0.95" in names or any(n.startswith("Threshold for") for n in names)
    before = result.report["before"]["accuracy"]
    assert dialog.report.item(0, 1).text() == f"{before:.3f}"
    assert dialog.report.item(0, 2).text() == f"{result.report['after']['accuracy']:.3f}"
    assert "Held-out split" in dialog.caption.text()
    assert result.rescored >= 2 * N_PER_CLASS
    assert "stored embeddings: no image was decoded" in dialog.summary.toPlainText()
    # The window shows the new model's scores, and lists it as trained from the base.
    qtbot.waitUntil(lambda: window.model_id == result.model_id)
    with Library(window.library_path) as library:
        expected = library.scores_for(result.model_id, column(window, Role.HASH))
    assert len(expected) == 2 * N_PER_CLASS + N_UNREVIEWED
    qtbot.waitUntil(
        lambda: (
            dict(zip(column(window, Role.HASH), column(window, Role.SCORE), strict=True))
            == pytest.approx(expected)
        )
    )
    box = window.switcher.model_box
    qtbot.waitUntil(lambda: box.findData(result.model_id) >= 0)
    assert box.currentData() == result.model_id
    title = box.itemText(box.findData(result.model_id))
    assert "trained from nsfw-sfw" in title and "head" in title
    assert box.findData(base_model) >= 0  # the base stays selectable
    # The review queue: unreviewed items, the new model's least sure first.
    dialog.review_button.click()
    assert window.results.filter == "unreviewed" and window.results.sort == "uncertain"
    shown = column(window, Role.SCORE)
    assert len(shown) == N_UNREVIEWED
    distances = [abs(s - window.results.threshold) for s in shown]
    assert distances == sorted(distances)
    assert window.grid.currentIndex().row() == 0
    window.decide("safe")  # auto-advance follows the queue
    assert window.results.rowCount() == N_UNREVIEWED - 1
    assert window.grid.currentIndex().row() == 0
    # Switching back to the base shows its scores again, without a scan.
    window.switch_model(base_model)
    qtbot.waitUntil(lambda: window.model_id == base_model)
    assert not window.scanning
    settle(qtbot, window)


def test_partial_training_stops_and_resumes_from_its_checkpoint(
    qtbot, make_window, two_colour_folder, tmp_path
):
    pytest.importorskip("nsfw_desk.core.training.finetune")
    window = make_window()
    scan(qtbot, window, two_colour_folder)
    label_all_but_a_few(window)
    out = tmp_path / "partial"
    dialog = start_training(qtbot, window, out, mode="partial", epochs=3)
    steps = stop_at_first_training_step(dialog, epoch=2)  # a checkpoint after epoch 1
    dialog.train_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=120_000)
    assert dialog.phase.text() == "Stopped", dialog.error.text()
    qtbot.waitUntil(dialog.resume_button.isEnabled)  # the checkpoint was found
    assert "Resume picks up from its last checkpoint" in dialog.line.text()
    stopped_at = max(step for phase, step in steps if phase == "training")
    steps.clear()
    dialog.resume_button.click()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=240_000)
    resumed = [step for phase, step in steps if phase == "training" and step]
    # The step count went on from the checkpoint (the end of epoch 1), not from 0.
    assert resumed and min(resumed) >= stopped_at > 0 and max(resumed) > stopped_at
    qtbot.waitUntil(lambda: window.model_id == dialog.result.model_id)
    # Its backbone changed, so no stored embedding serves it: the desk scans the folder with it.
    assert dialog.result.rescored == 0
    assert "is scoring the open folder" in dialog.summary.toPlainText()
    qtbot.waitUntil(lambda: window.scanning)
    qtbot.waitUntil(lambda: not window.scanning, timeout=120_000)
    assert window.model_id == dialog.result.model_id
    assert window.results.unscored() == 0
    with Library(window.library_path) as library:
        stored = library.scores_for(window.model_id, column(window, Role.HASH))
    shown = dict(zip(column(window, Role.HASH), column(window, Role.SCORE), strict=True))
    assert shown == pytest.approx(stored) and len(stored) == 2 * N_PER_CLASS + N_UNREVIEWED


def test_too_few_decisions_are_said_in_the_dialog_and_nothing_is_written(
    qtbot, make_window, two_colour_folder, tmp_path
):
    window = make_window()
    scan(qtbot, window, two_colour_folder)
    dialog = window.open_training()
    out = tmp_path / "never"
    dialog.out.setText(str(out))
    dialog.train_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=60_000)
    assert dialog.error.isVisible()
    text = dialog.error.text()
    assert "unsafe" in text and "safe" in text and "0" in text
    assert dialog.phase.text() == "Not trained"
    assert not out.exists()
    assert dialog.train_button.isEnabled() and not dialog.resume_button.isEnabled()
    dialog.close_button.click()
    qtbot.waitUntil(lambda: window.train_dialog is None)


def test_a_head_only_scan_in_the_desk_says_it_scored_from_stored_embeddings(
    qtbot, tmp_path, model_dir, loaded_model
):
    """A folder the base model scanned, opened with a head trained on it: the status bar says
    its items were scored from stored embeddings without decoding, as `nsfw-desk scan` does."""
    from nsfw_desk.core.review import ReviewStore
    from nsfw_desk.core.scan import scan_folder
    from nsfw_desk.core.settings import Settings
    from nsfw_desk.core.training import TrainOptions, train
    from nsfw_desk.gui.main_window import MainWindow
    from nsfw_desk.synthetic import write_family_photos

    families = write_family_photos(tmp_path / "decided", 12)
    write_family_photos(tmp_path / "later", 3, seed=1)
    db = tmp_path / "library.sqlite"
    with Library(db) as library:
        summary = scan_folder(tmp_path / "decided", loaded_model, library, keep_outcomes=True)
        for o in summary.outcomes:
            label = "unsafe" if families[o.path] == 0 else "safe"
            item = DecisionInput(o.hash, loaded_model.model_id, o.score, o.path)
            ReviewStore(library).decide([item], label, reviewer="tester", threshold=0.5)
        out = tmp_path / "head"
        train(TrainOptions(out, base=str(model_dir), device="cpu"), library)
        # Scanned by the base model after the training: embeddings stored, no head score yet.
        assert scan_folder(tmp_path / "later", loaded_model, library).scored == 6
    window = MainWindow(
        Settings(reviewer="tester"),
        library_path=db,
        model=str(out),
        device="cpu",
        save_settings=False,
    )
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    try:
        scan(qtbot, window, tmp_path / "later")
        text = window.status.text()
        assert "6 scored from stored embeddings (no decoding)" in text, text
        assert len(column(window, Role.SCORE)) == 6 and window.results.unscored() == 0
    finally:
        window.close()
