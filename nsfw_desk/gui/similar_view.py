"""'Show similar' (F): the grid switches to the items nearest the current one, Back returns.

Nearest is by cosine similarity of the shown model's stored embeddings (core/similar.py).
The index is built on the read thread, once per model, and kept until a scan may have
stored new embeddings. Only items of the open folder can be tiles, so the neighbours are
asked for among the whole library and those in the folder are shown, most similar first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from nsfw_desk.gui.grid import Role

SIMILAR_KEY = "F"
SHOWN = 60  # tiles in a "similar" view


@dataclass
class _Previous:
    current: Path | None
    selected: list[Path]


class SimilarStrip(QWidget):
    """'Similar to NAME — Back (Esc/Backspace)' above the grid while the view is on."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        self.label = QLabel()
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.back = QPushButton("Back (Esc/Backspace)")
        layout.addWidget(self.label, 1)
        layout.addWidget(self.back)
        self.setStyleSheet("SimilarStrip { background: #fff4c2; } QLabel { color: #222; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.hide()


class SimilarView(QObject):
    """Owns the strip and the per-model indexes; the window keeps selection and status."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.strip = SimilarStrip()
        self.strip.back.clicked.connect(self.back)
        self.indexes: dict[str, object] = {}  # model id → EmbeddingIndex
        self.source: str | None = None  # the name of the item the view is similar to
        self._previous: _Previous | None = None
        self._serial = 0

    @property
    def active(self) -> bool:
        return self.window.results.similar is not None

    def forget_indexes(self) -> None:
        """A scan may have stored new embeddings: build the indexes afresh when next asked."""
        self.indexes.clear()

    def show_similar(self) -> None:
        w = self.window
        index = w.grid.currentIndex()
        digest = index.data(Role.HASH) if index.isValid() else None
        if not digest or index.data(Role.ERROR):
            w._say("Show similar: choose an image first")
            return
        model_id = w.model_id
        if model_id is None:
            w._say("Show similar needs a model's embeddings: no model is in use")
            return
        name = index.data(Role.PATH).name
        folder_hashes = w.results.content_hashes()
        kept = self.indexes.get(model_id)
        self._serial += 1
        serial = self._serial

        def read(library):
            from nsfw_desk.core.similar import EmbeddingIndex, NoEmbedding

            built = kept or EmbeddingIndex.from_library(library, model_id)
            try:
                vector = built.vector(digest)
            except NoEmbedding:
                return built, None
            wanted = min(SHOWN, len(folder_hashes - {digest}))
            # Most neighbours are usually in the folder: a short list first, all if not.
            for top in (SHOWN * 8, len(built.hashes)):
                found = built.nearest(vector, top=top, exclude=digest)
                near = [n for n in found if n.content_hash in folder_hashes][:wanted]
                if len(near) == wanted:
                    break
            return built, {n.content_hash: n.similarity for n in near}

        def show(result) -> None:
            built, near = result
            self.indexes[model_id] = built
            if serial != self._serial or model_id != w.model_id:
                return
            if near is None:
                w._say(
                    f"{name} has no embedding for {w.model_name(model_id)}: "
                    "scan it again with this model to find similar images"
                )
                return
            self._enter(name, near)

        w.reads.query(read, show)

    def _enter(self, name: str, near: dict[str, float]) -> None:
        w = self.window
        if not self.active:
            self._previous = _Previous(
                w._current_path(),
                [i.data(Role.PATH) for i in w.grid.selectionModel().selectedIndexes()],
            )
        self.source = name
        w.results.show_similar(near)
        self.strip.label.setText(
            f"Similar to {name} — {len(near):,} nearest by {w.model_name(w.model_id)}"
        )
        self.strip.show()
        w._select_row(0)
        w._update_counts()
        w._refresh_view_state()

    def back(self) -> None:
        if not self.active:
            return
        w = self.window
        previous, self._previous = self._previous, None
        w.results.show_similar(None)
        self.strip.hide()
        self.source = None
        if previous is not None:
            if previous.selected:
                w._select_paths(previous.selected)
            w._select_path(previous.current)
        w._update_counts()
        w._refresh_view_state()
        w.grid.setFocus()
