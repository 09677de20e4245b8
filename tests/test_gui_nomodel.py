"""Without a model (not downloaded, offline, a broken model folder) the desk still lists the
folder for review: blurred thumbnails, no scores, the problem in a bar above the grid."""

from __future__ import annotations

import shutil

import pytest
from desk import SCAN_TIMEOUT_MS, column, scan, settle
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QMessageBox, QStyleOptionViewItem

from nsfw_desk.core.store import Library
from nsfw_desk.gui import file_dialogs
from nsfw_desk.gui.grid import Role


@pytest.fixture
def broken_model(tmp_path, model_dir):
    """A model folder missing its weights (a copy cut short, a download not finished)."""
    folder = tmp_path / "broken-model"
    folder.mkdir()
    shutil.copy(model_dir / "config.json", folder)
    return folder


@pytest.fixture
def no_dialogs(monkeypatch):
    """A modal dialog is a dead end for the moderator here: any one fails the test."""
    monkeypatch.setattr(QMessageBox, "exec", lambda box: pytest.fail(f"modal: {box.text()}"))


class TextRecorder(QPainter):
    """A painter that remembers the text a tile writes."""

    def __init__(self, device) -> None:
        super().__init__(device)
        self.texts: list[str] = []

    def drawText(self, *args) -> None:  # noqa: N802 (Qt API)
        self.texts.append(str(args[-1]))
        super().drawText(*args)


def tile_texts(window, row: int) -> list[str]:
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, 172, 204)
    option.palette, option.font = window.grid.palette(), window.grid.font()
    image = QImage(option.rect.size(), QImage.Format.Format_RGB32)
    painter = TextRecorder(image)
    window.delegate.paint(painter, option, window.results.index(row))
    painter.end()
    return painter.texts


def images(window) -> list[int]:
    return [r for r, e in enumerate(column(window, Role.ERROR)) if e is None]


def test_a_broken_model_folder_lists_the_folder_for_review(
    qtbot, make_window, folder, broken_model, model_dir, stored, no_dialogs
):
    window = make_window(auto_advance=False)
    window.model_override = str(broken_model)
    scan(qtbot, window, folder)

    # Every file is listed: the 12 images without a score, the broken JPEG as an error.
    assert window.results.rowCount() == 13 and len(images(window)) == 12
    assert all(score is None for score in column(window, Role.SCORE))
    assert "Listed" in window.status.text()
    # Their thumbnails were made without the model and are painted blurred.
    hashes = [h for r, h in enumerate(column(window, Role.HASH)) if r in images(window)]
    qtbot.waitUntil(lambda: all(window.thumbnails.blurred(h) for h in hashes), timeout=10_000)
    assert "no score" in tile_texts(window, images(window)[0])
    # The problem is in a bar above the grid, with its way out.
    bar = window.model_bar
    assert bar.isVisible() and "model.safetensors" in bar.message.text()
    assert (
        bar.mapTo(window, bar.rect().bottomLeft()).y()
        <= window.grid.mapTo(window, window.grid.rect().topLeft()).y()
    )
    assert [b.text() for b in bar.buttons()] == ["Choose a model folder…", "Settings…", "Retry"]

    # Reviewing works: the decision stores no score and no model.
    row = images(window)[0]
    digest = window.results.index(row).data(Role.HASH)
    window.grid.setCurrentIndex(window.results.index(row))
    window.decide("unsafe")
    settle(qtbot, window)
    (decision,) = stored(window).history(digest)
    assert (decision.label, decision.score, decision.model_id) == ("unsafe", None, None)

    # The model is fixed on disk; Retry scores the same rows, each listed once.
    paths = sorted(column(window, Role.PATH))
    shutil.copy(model_dir / "model.safetensors", broken_model)
    bar.retry_button.click()
    qtbot.waitUntil(
        lambda: not window.scanning and window.model_id is not None, timeout=SCAN_TIMEOUT_MS
    )
    assert sorted(column(window, Role.PATH)) == paths
    assert all(column(window, Role.SCORE)[r] is not None for r in images(window))
    assert not bar.isVisible()
    assert window.results.label_of(digest) == "unsafe"
    with Library(window.library_path) as library:
        stored_rows = [r.path for r in library.results(folder, window.model_id)]
    assert sorted(stored_rows) == paths


def test_choose_a_model_folder_in_the_bar_rescans_with_it(
    qtbot, make_window, folder, broken_model, model_dir, no_dialogs, monkeypatch
):
    window = make_window()
    window.model_override = str(broken_model)
    scan(qtbot, window, folder)
    assert window.model_bar.isVisible()
    monkeypatch.setattr(file_dialogs, "existing_directory", lambda *a, **k: str(model_dir))
    window.model_bar.choose_button.click()
    qtbot.waitUntil(
        lambda: not window.scanning and window.model_id is not None, timeout=SCAN_TIMEOUT_MS
    )
    assert window.settings.model == str(model_dir) and window.model_override is None
    assert all(column(window, Role.SCORE)[r] is not None for r in images(window))
    assert not window.model_bar.isVisible()


def test_not_reviewed_filter_shows_unscored_images(qtbot, make_window, folder, broken_model):
    window = make_window()
    window.model_override = str(broken_model)
    scan(qtbot, window, folder)
    window.set_filter("unreviewed")
    assert window.results.rowCount() == 12
