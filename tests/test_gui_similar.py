"""The desk's "Show similar" view and hash-list matches on the tiles."""

from __future__ import annotations

import numpy as np
import pytest
from desk import column, scan
from PySide6.QtCore import Qt

from nsfw_desk.core.similar import EmbeddingIndex
from nsfw_desk.core.store import Library
from nsfw_desk.gui.grid import Role


def test_show_similar_orders_like_the_core_and_back_restores_the_view(
    qtbot, make_window, photo_folder
):
    window = make_window()
    scan(qtbot, window, photo_folder)
    window.set_sort("name")
    window._moved = True
    window._select_row(4)
    before = column(window, Role.PATH)
    source = window.grid.currentIndex()
    source_path, source_hash = source.data(Role.PATH), source.data(Role.HASH)

    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_F)
    qtbot.waitUntil(lambda: window.similar.active, timeout=10_000)

    with Library(window.library_path) as library:
        index = EmbeddingIndex.from_library(library, window.model_id)
    expected = index.nearest(index.vector(source_hash), top=50, exclude=source_hash)
    shown = column(window, Role.HASH)
    assert shown == [n.content_hash for n in expected][: len(shown)]
    assert len(shown) == 11  # every other photo of the folder, none twice, not the source
    similarities = column(window, Role.SIMILARITY)
    assert similarities == pytest.approx([n.similarity for n in expected][:11], abs=1e-6)
    assert window.similar.strip.isVisible()
    assert f"Similar to {source_path.name}" in window.similar.strip.label.text()
    assert window.grid.currentIndex().row() == 0

    qtbot.keyClick(window.grid, Qt.Key.Key_Escape)
    assert not window.similar.active
    assert not window.similar.strip.isVisible()
    assert not window.hide_action.isChecked()  # Esc went Back, it did not hide the images
    assert column(window, Role.PATH) == before
    assert window.grid.currentIndex().data(Role.PATH) == source_path
    assert column(window, Role.SIMILARITY) == [None] * len(before)


def test_an_item_without_an_embedding_says_so(qtbot, make_window, photo_folder):
    window = make_window()
    scan(qtbot, window, photo_folder)
    window._select_row(0)
    digest = window.grid.currentIndex().data(Role.HASH)
    window.similar.indexes[window.model_id] = EmbeddingIndex(
        [h for h in window.results.content_hashes() if h != digest],
        np.ones((11, 8), dtype=np.float16),
    )
    window.similar.show_similar()
    qtbot.waitUntil(lambda: "has no embedding" in window.statusBar().currentMessage())
    assert not window.similar.active
