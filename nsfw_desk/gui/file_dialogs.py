"""File dialogs that never open the files they list.

Qt's file dialog reads the first bytes of each file it lists whose name does not tell its
MIME type, for the icon and the Type column; `library.sqlite` and its `-wal` and `-shm`
files are such files. Closing that descriptor drops every POSIX lock this process holds on
the file, SQLite's included: another program (a backup with the SQLite shell, the command
line, a second desk) could then take the library for unused and delete its WAL under the
desk (tests/test_library_locks.py). These dialogs name each entry by what `stat` says
(folder or file) and, where locks are POSIX ones (not on Windows), are Qt's own dialog,
which uses that provider, not the platform's, which may run in this process and read the
files itself.
"""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QFileDialog, QFileIconProvider, QWidget

_IconType = QFileIconProvider.IconType


class PlainIcons(QFileIconProvider):
    """A folder or a file icon and type, from the file's metadata only."""

    def icon(self, what):  # noqa: D102 (Qt API: an IconType or a QFileInfo)
        if isinstance(what, _IconType):
            return super().icon(what)
        return super().icon(_IconType.Folder if what.isDir() else _IconType.File)

    def type(self, info) -> str:  # noqa: D102 (Qt API)
        return "Folder" if info.isDir() else "File"


def _dialog(parent: QWidget | None, caption: str, start: str) -> QFileDialog:
    dialog = QFileDialog(parent, caption, start)
    if sys.platform != "win32":  # Windows locks are not dropped by another handle's close
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog)
    icons = PlainIcons()
    dialog.setIconProvider(icons)
    dialog._plain_icons = icons  # the dialog keeps only a pointer: keep the object alive
    return dialog


def existing_directory(parent: QWidget | None, caption: str, start: str = "") -> str:
    """As QFileDialog.getExistingDirectory: the chosen folder, or "" when cancelled."""
    dialog = _dialog(parent, caption, start)
    dialog.setFileMode(QFileDialog.FileMode.Directory)
    dialog.setOption(QFileDialog.Option.ShowDirsOnly)
    return dialog.selectedFiles()[0] if dialog.exec() and dialog.selectedFiles() else ""


def save_path(parent: QWidget | None, caption: str, start: str = "") -> str:
    """As QFileDialog.getSaveFileName's path: a new name to write, or "" when cancelled."""
    dialog = _dialog(parent, caption, start)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    dialog.setFileMode(QFileDialog.FileMode.AnyFile)
    return dialog.selectedFiles()[0] if dialog.exec() and dialog.selectedFiles() else ""
