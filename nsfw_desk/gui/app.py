"""Starting the desk: a QApplication, the main window, and an optional first folder.

Nothing here imports torch: the window paints first, the worker thread loads the model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from nsfw_desk.core.settings import Settings
from nsfw_desk.core.store import LibraryError
from nsfw_desk.gui.main_window import MainWindow
from nsfw_desk.gui.resources import app_icon


def run_gui(
    folder: Path | None = None,
    *,
    model: str | None = None,
    device: str | None = None,
    db: Path | None = None,
    quit_after_paint: bool = False,
    started: float | None = None,
) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("nsfw-desk")
    app.setOrganizationName("nsfw-desk")
    app.setDesktopFileName("io.github.nsfw_desk.NsfwDesk")
    app.setWindowIcon(app_icon())
    try:
        window = MainWindow(Settings.load(), library_path=db, model=model, device=device)
    except LibraryError as exc:
        QMessageBox.critical(None, "Library not usable", str(exc))
        return 2
    if quit_after_paint:

        def report() -> None:
            elapsed = time.perf_counter() - (started or 0.0)
            print(
                f"first paint after {elapsed:.3f} s; torch imported: {'torch' in sys.modules}",
                flush=True,
            )
            window.close()
            app.quit()

        window.first_paint.connect(lambda: QTimer.singleShot(0, report))
    window.show()
    if folder is not None:
        QTimer.singleShot(0, lambda: window.open_folder(folder))
    return app.exec()
