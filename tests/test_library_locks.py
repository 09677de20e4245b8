"""The library's SQLite locks survive what the desk's own process does beside it.

Closing any descriptor of a file drops every POSIX lock the process holds on that file,
SQLite's included. A process that opens the library's files outside SQLite (a scan sniffing
them for image content, a file dialog sniffing them for a MIME type) leaves its connections
unlocked: another program's connection (the `sqlite3` backup the README recommends, a
`nsfw-desk label` run, a second desk) then takes itself for the last one, checkpoints and
deletes the WAL and its index, and the running desk goes on writing into a deleted file,
invisible to every other program and unprotected by any lock.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nsfw_desk.core.scan import scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import write_photo


def other_program_reads(library: Path) -> None:
    """Open, read and close the library from another process, as `sqlite3` does."""
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT count(*) FROM files').fetchall(); c.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(library)], check=True, timeout=60)


def assert_still_locked(library: Path, thumbnails: Path) -> None:
    other_program_reads(library)
    # Had the other program been the last connection it would have removed the WAL.
    assert Path(f"{library}-wal").exists(), "the library's WAL was deleted under it"
    assert Path(f"{thumbnails}-wal").exists()


def test_scanning_the_folder_that_holds_the_library_leaves_its_files_unopened(tmp_path):
    inbox = tmp_path / "inbox"
    for i in range(3):
        write_photo(inbox / f"photo_{i}.jpg", seed=i)
    library = Library(inbox / "review.sqlite")  # --db inside the folder it scans
    try:
        # The check itself holds before the scan.
        assert_still_locked(library.path, library.thumbnails_path)
        summary = scan_folder(inbox, None, library, keep_outcomes=True)
        assert {o.path.name for o in summary.outcomes} == {f"photo_{i}.jpg" for i in range(3)}
        assert_still_locked(library.path, library.thumbnails_path)
    finally:
        library.close()


def test_the_open_folder_dialog_leaves_the_library_unopened(make_window, qtbot, tmp_path):
    """Ctrl+O, then up to the folder that holds the library (`--db` beside the images)."""
    from desk import scan
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QFileDialog

    from nsfw_desk.core.store import default_thumbnails_path

    desk = tmp_path / "desk"
    inbox = desk / "inbox"
    for i in range(2):
        write_photo(inbox / f"photo_{i}.jpg", seed=i)
    window = make_window(library_path=desk / "review.sqlite")
    scan(qtbot, window, inbox)
    listed = []

    def browse() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QFileDialog):
            QTimer.singleShot(20, browse)
            return
        if not listed:
            dialog.setDirectory(str(desk))  # the moderator goes up one folder
        listed.append(dialog)
        if len(listed) < 60:  # a second or more for the dialog to list (and type) it all
            QTimer.singleShot(20, browse)
        else:
            dialog.reject()

    QTimer.singleShot(0, browse)
    window.choose_folder()
    assert listed, "no file dialog opened"
    assert window.folder == inbox.resolve()  # cancelled: nothing else opened
    assert_still_locked(desk / "review.sqlite", default_thumbnails_path(desk / "review.sqlite"))
