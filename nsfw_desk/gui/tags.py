"""Tags on contents ("minor?", "escalate"): a small editor, tile text, a Show-by-tag filter.

T opens the editor for the selected items: type a tag and press Enter to add it, click a tag
to remove it. Tags belong to the content (like decisions) and are stored append-only with
who and when (core/review.py), written through the window's write thread. The window keeps
every current tag in memory (tagged contents are few), so tiles and the filter never wait
on the library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from nsfw_desk.core.review import MAX_TAG, clean_tag
from nsfw_desk.gui.grid import Role

if TYPE_CHECKING:
    from nsfw_desk.gui.main_window import MainWindow

TAG_KEY = "T"
ANY_TAG = "Any tag"


class TagEditor(QDialog):
    """The tags of the selected items: buttons to remove, a field to add (Enter)."""

    def __init__(self, tags: Tags, hashes: list[str], title: str, parent=None) -> None:
        super().__init__(parent)
        self.tags, self.hashes = tags, hashes
        self.setWindowTitle("Tags")
        self.field = QLineEdit()
        self.field.setMaxLength(MAX_TAG)
        self.field.setPlaceholderText("Type a tag and press Enter (e.g. escalate, minor?)")
        self.field.setMinimumWidth(360)
        completer = QCompleter(sorted(tags.counts()), self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.field.setCompleter(completer)
        self.field.returnPressed.connect(self._add)
        self.chips = QWidget()
        self.chips_layout = QHBoxLayout(self.chips)
        self.chips_layout.setContentsMargins(0, 0, 0, 0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(title))
        layout.addWidget(self.chips)
        layout.addWidget(self.field)
        layout.addWidget(buttons)
        self._fill()

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """Enter adds the typed tag (returnPressed) and keeps the editor open for the next;
        QDialog would also press its default button (Close). Esc still closes."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            return
        super().keyPressEvent(event)

    def current(self) -> list[str]:
        """The tags on at least one of the selected items."""
        found: set[str] = set()
        for digest in self.hashes:
            found.update(self.tags.window.results.tags.get(digest, ()))
        return sorted(found)

    def _fill(self) -> None:
        while self.chips_layout.count():
            widget = self.chips_layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        current = self.current()
        if not current:
            self.chips_layout.addWidget(QLabel("<i>No tags yet</i>"))
        for tag in current:
            chip = QPushButton(f"{tag}  ✕")
            chip.setToolTip(f"Remove “{tag}”")
            chip.setObjectName(f"tag:{tag}")
            chip.setAutoDefault(False)
            chip.clicked.connect(lambda _=False, t=tag: self._remove(t))
            self.chips_layout.addWidget(chip)
        self.chips_layout.addStretch(1)

    def _add(self) -> None:
        text = self.field.text()
        self.field.clear()
        if text.strip():
            self.tags.set_tag(self.hashes, text, added=True)
            self._fill()

    def _remove(self, tag: str) -> None:
        self.tags.set_tag(self.hashes, tag, added=False)
        self._fill()


class Tags:
    """The window's tags: in memory for tiles and filter, written through `window.writes`."""

    def __init__(self, window: MainWindow, toolbar: QToolBar | None = None) -> None:
        self.window = window
        self.filter_box = QComboBox()
        self.filter_box.setObjectName("tag_filter")
        self.filter_box.setToolTip("Show only images with this tag (T edits tags)")
        self.filter_box.currentIndexChanged.connect(self._filter_chosen)
        if toolbar is not None:
            toolbar.addWidget(QLabel(" Tag "))
            toolbar.addWidget(self.filter_box)
        self._fill_filter()
        self.reload()
        # Another instance may have tagged meanwhile: read them again with each folder.
        window.results.modelReset.connect(self.reload)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tags in self.window.results.tags.values():
            for tag in tags:
                counts[tag] = counts.get(tag, 0) + 1
        return dict(sorted(counts.items()))

    def reload(self) -> None:
        """Read every current tag from the library (on the read thread)."""

        def read(library):
            from nsfw_desk.core.review import ReviewStore

            return ReviewStore(library).tags()

        self.window.reads.query(read, self._loaded)

    def _loaded(self, tags: dict[str, list[str]]) -> None:
        merged = {h: tuple(t) for h, t in tags.items()}
        self._apply(merged)

    def edit(self) -> None:
        rows = sorted(i.row() for i in self.window.grid.selectionModel().selectedIndexes())
        if not rows and self.window.grid.currentIndex().isValid():
            rows = [self.window.grid.currentIndex().row()]
        hashes = [
            digest
            for row in rows
            if (digest := self.window.results.index(row).data(Role.HASH))
            and not self.window.results.index(row).data(Role.ERROR)
        ]
        hashes = list(dict.fromkeys(hashes))
        if not hashes:
            self.window.status.setText("Select an image to tag it")
            return
        name = self.window.results.index(rows[0]).data() or ""
        title = f"Tags of <b>{name}</b>" if len(hashes) == 1 else f"Tags of {len(hashes)} images"
        TagEditor(self, hashes, title, self.window).exec()

    def set_tag(self, hashes: list[str], text: str, *, added: bool) -> None:
        """Shown at once, written in order with the decisions."""
        try:
            tag = clean_tag(text)
        except ValueError:
            return
        tags = dict(self.window.results.tags)
        for digest in hashes:
            now = set(tags.get(digest, ()))
            now = now | {tag} if added else now - {tag}
            tags[digest] = tuple(sorted(now))
        self._apply(tags)
        self.window.writes.tag(hashes, tag, added=added, reviewer=self.window.settings.reviewer)
        self.window._show_detail()

    def chosen(self) -> str | None:
        return self.filter_box.currentData() or None

    def _apply(self, tags: dict[str, tuple[str, ...]]) -> None:
        chosen = self.chosen()
        with self.window._keeping_current(if_gone="place"):
            self.window.results.set_tags(tags, chosen)
        self._fill_filter()
        self.window.grid.viewport().update()

    def _fill_filter(self) -> None:
        chosen = self.chosen()
        self.filter_box.blockSignals(True)
        self.filter_box.clear()
        self.filter_box.addItem(ANY_TAG, "")
        counts = self.counts()
        for tag, n in counts.items():
            self.filter_box.addItem(f"{tag} ({n})", tag)
        if chosen is not None and chosen not in counts:
            self.filter_box.addItem(f"{chosen} (0)", chosen)  # keep the moderator's choice
        index = self.filter_box.findData(chosen or "")
        self.filter_box.setCurrentIndex(max(0, index))
        self.filter_box.blockSignals(False)

    def set_filter(self, tag: str | None) -> None:
        index = self.filter_box.findData(tag or "")
        if index < 0:
            self.filter_box.addItem(f"{tag} (0)", tag)
            index = self.filter_box.findData(tag)
        self.filter_box.setCurrentIndex(index)

    def _filter_chosen(self, _index: int) -> None:
        with self.window._keeping_current(if_gone="first"):
            self.window.results.set_tags(self.window.results.tags, self.chosen())
