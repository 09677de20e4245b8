"""The desk's "Show similar" view and hash-list matches on the tiles."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from desk import column, scan
from PIL import ImageFilter
from PySide6.QtCore import Qt

from nsfw_desk.core import hashlists
from nsfw_desk.core.similar import EmbeddingIndex
from nsfw_desk.core.store import Library
from nsfw_desk.gui.grid import Role
from nsfw_desk.synthetic import synthetic_photo


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

    window.similar.show_similar()  # again; a new Show filter goes back first
    qtbot.waitUntil(lambda: window.similar.active, timeout=10_000)
    window.set_filter("unflagged")
    assert not window.similar.active and not window.similar.strip.isVisible()
    assert column(window, Role.SIMILARITY) == [None] * window.results.rowCount()


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


@pytest.fixture
def synthetic_folder(tmp_path):
    """Three generated photos whose PDQ hashes have a usable quality."""
    folder = tmp_path / "synthetic"
    folder.mkdir()
    for seed in (1, 2, 3):
        synthetic_photo((320, 240), seed).filter(ImageFilter.GaussianBlur(1)).save(
            folder / f"p{seed}.png"
        )
    return folder


def test_hash_list_matches_show_on_tiles_filter_and_flag(qtbot, make_window, synthetic_folder):
    window = make_window()
    scan(qtbot, window, synthetic_folder)
    window.set_threshold(0.99)  # the model flags none of them
    assert window.results.counts().flagged == 0
    p1, p2 = (synthetic_folder / "p1.png", synthetic_folder / "p2.png")
    with Library(window.library_path) as library:
        h1, h2 = (library.file_facts(p)["hash"] for p in (p1, p2))
        hashed, quality = library.pdq_of(h1)
        near = bytearray(hashed)
        near[0] ^= 0b1011  # 3 bits off: a re-encoded copy seen elsewhere
        unsafe = window.library_path.parent / "theirs.txt"
        unsafe.write_text(f"# shared by a partner\n{bytes(near).hex()},{quality}\n")
        hashlists.import_hash_list(library, unsafe, "theirs", "unsafe")
        known = window.library_path.parent / "known.txt"
        known.write_text(hashlib.sha256(p2.read_bytes()).hexdigest() + "\n")
        hashlists.import_hash_list(library, known, "seen", "known")

    assert window.results.list_matches == {}  # none imported when the folder loaded
    window.rescan()  # lists imported from the command line show on the next load
    qtbot.waitUntil(lambda: not window.scanning, timeout=60_000)
    qtbot.waitUntil(lambda: bool(window.results.list_matches), timeout=10_000)

    rows = {window.results.index(i).data(Role.PATH): i for i in range(3)}
    listed = window.results.index(rows[p1])
    assert [(m.list_name, m.list_kind, m.distance) for m in listed.data(Role.LISTS)] == [
        ("theirs", "unsafe", 3)
    ]
    assert listed.data(Role.FLAGGED) and listed.data(Role.SCORE) < 0.99
    assert listed.data(Role.LISTED_UNSAFE) == "theirs"
    assert "Hash list theirs (unsafe): pdq, distance 3" in listed.data(Qt.ItemDataRole.ToolTipRole)
    seen = window.results.index(rows[p2])
    assert [m.list_name for m in seen.data(Role.LISTS)] == ["seen"]
    assert not seen.data(Role.FLAGGED)  # a `known` list does not flag
    counts = window.results.counts()
    assert (counts.flagged, counts.by_list) == (1, 1)
    assert "1 flagged (1 by list: theirs)" in window.counts_label.text()

    window.set_filter("hash_lists")
    assert window.filter_box.currentText() == "Hash list matches"
    assert sorted(column(window, Role.PATH)) == [p1, p2]
    window.set_filter("flagged")
    assert column(window, Role.PATH) == [p1]
    window.set_filter("unflagged")
    assert p1 not in column(window, Role.PATH)
    assert hashlists.flagged_by_lists(window.results.list_matches) == {h1}
    assert h2 in window.results.list_matches


def test_list_matches_arriving_late_leave_the_current_item_where_it_is(
    qtbot, make_window, photo_folder
):
    """Matches load after the scan; under a filter they do not affect, they only add marks,
    so the item the moderator is on (not yet 'moved', e.g. opened by a test or a queue)
    must not jump back to the top of the grid (seen once: the loupe showed another file)."""
    window = make_window()
    scan(qtbot, window, photo_folder)
    window._select_row(2)
    before = window.grid.currentIndex().data(Role.PATH)
    assert before != window.results.index(0).data(Role.PATH)
    with qtbot.waitSignal(window.grouping.tasks.matched, timeout=20_000):
        window.grouping.match(force=True)
    assert window.grid.currentIndex().data(Role.PATH) == before
