"""The keyboard sheet (F1): made from the window's own QActions each time it opens.

Nothing here lists an action's key by hand, so the sheet cannot go stale: it walks the menu
bar (for each action's menu path), then picks up any other action of the window that has a
shortcut. Keys handled outside actions (held keys, the mouse) are declared once, in
HELD_AND_MOUSE, next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLineEdit,
    QMainWindow,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

# Keys and gestures the window handles itself, not through a QAction: (keys, what, where).
HELD_AND_MOUSE: tuple[tuple[str, str, str], ...] = (
    ("Space (hold)", "Reveal the current image unblurred while held", "Grid, loupe"),
    ("Press and hold", "Reveal the image under the mouse while held", "Grid, loupe"),
    ("Double-click", "Open the image in the loupe", "Grid"),
    ("Esc", "Back to the grid, at the same image", "Loupe"),
    ("Y", "Label the offered near-duplicates the same (while the offer shows)", "Grid"),
    ("Esc", "Dismiss the near-duplicates offer (while it shows)", "Grid"),
    ("Click ⊞ / ⊟", "Expand / collapse a near-duplicate group (while grouped, D)", "Grid"),
    ("Return", "Continue after the break reminder (while it dims the grid)", "Grid"),
    ("Mouse wheel", "Zoom around the mouse pointer", "Loupe"),
    ("Drag", "Pan the zoomed image", "Loupe"),
)


@dataclass(frozen=True)
class Row:
    keys: str
    action: str
    where: str


def _keys(action: QAction) -> str:
    return ", ".join(
        s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts() if s
    )


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").replace("…", "").strip()


def shortcut_rows(window: QMainWindow) -> list[Row]:
    """Every action of `window` with a shortcut, menu actions first, then the declared keys."""
    rows: list[Row] = []
    seen: set[int] = set()

    def walk(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            if action.isSeparator():
                continue
            if action.menu() is not None:
                walk(action.menu(), f"{path} → {_plain(action.text())}")
                continue
            seen.add(id(action))
            keys = _keys(action)
            if keys:
                rows.append(Row(keys, _plain(action.text()), path))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), _plain(top.text()))
    # Actions outside the menus (added to the window or a widget at runtime) count too.
    for action in window.findChildren(QAction):
        if id(action) not in seen and _keys(action):
            seen.add(id(action))
            rows.append(Row(_keys(action), _plain(action.text()), "Window"))
    rows.extend(Row(k, a, w) for k, a, w in HELD_AND_MOUSE)
    return rows


class ShortcutSheet(QDialog):
    """A filterable table of every key; built fresh on each opening."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts — nsfw-desk")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.rows = shortcut_rows(window)
        self.filter = QLineEdit(placeholderText="Filter (a key or a word)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._apply_filter)
        self.table = QTableWidget(len(self.rows), 3)
        self.table.setHorizontalHeaderLabels(["Keys", "Action", "Where"])
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        for i, row in enumerate(self.rows):
            for j, text in enumerate((row.keys, row.action, row.where)):
                item = QTableWidgetItem(text)
                if j == 0:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(i, j, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        self.resize(660, 760)
        self.filter.setFocus(Qt.FocusReason.OtherFocusReason)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for i, row in enumerate(self.rows):
            hay = f"{row.keys} {row.action} {row.where}".lower()
            self.table.setRowHidden(i, bool(needle) and needle not in hay)
