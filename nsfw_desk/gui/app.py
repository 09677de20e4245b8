"""Starting the desk: a QApplication, the main window, and an optional first folder.

Nothing here imports torch: the window paints first, the worker thread loads the model.
Qt itself is imported only after `display_problem` found nothing wrong: without a display, or
without the system libraries of Qt's X11 platform, Qt aborts the process with a message few
users can act on, so we check first and say what to install or to run instead.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

# Qt platforms that need neither a display nor X11 libraries.
HEADLESS_PLATFORMS = frozenset(
    {"offscreen", "minimal", "minimalegl", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"}
)

# What Qt's xcb platform plugin (and Qt GUI under it) loads from the system, as PySide6's
# wheels leave these out: soname, Debian/Ubuntu package, Fedora package.
XCB_LIBRARIES = (
    ("libxcb.so.1", "libxcb1", "libxcb"),
    ("libX11.so.6", "libx11-6", "libX11"),
    ("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
    ("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    ("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    ("libxcb-util.so.1", "libxcb-util1", "xcb-util"),
    ("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    ("libxcb-render.so.0", "libxcb-render0", "libxcb"),
    ("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    ("libxcb-shm.so.0", "libxcb-shm0", "libxcb"),
    ("libxcb-sync.so.1", "libxcb-sync1", "libxcb"),
    ("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb"),
    ("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
    ("libGL.so.1", "libgl1", "libglvnd-glx"),
    ("libEGL.so.1", "libegl1", "libglvnd-egl"),
    ("libfontconfig.so.1", "libfontconfig1", "fontconfig"),
    ("libfreetype.so.6", "libfreetype6", "freetype"),
    ("libdbus-1.so.3", "libdbus-1-3", "dbus-libs"),
)


def _loadable(soname: str) -> bool:
    """Whether the dynamic loader finds `soname` the way Qt's own dlopen will."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def _x_server_refuses(display: str) -> str | None:
    """Why an X connection to `display` fails, or None: Qt's first step, done with libxcb."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return None  # reported as a missing library
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    error = xcb.xcb_connection_has_error(connection)
    xcb.xcb_disconnect(connection)
    return f"cannot connect to the X display {display!r} (xcb error {error})" if error else None


def display_problem(
    environ: Mapping[str, str] | None = None,
    *,
    platform: str = sys.platform,
    loadable: Callable[[str], bool] | None = None,
    connect: Callable[[str], str | None] | None = None,
) -> str | None:
    """Why the window cannot open here, as a message for the user; None when it can.

    Linux only (macOS and Windows always have their platform). The parameters let tests
    stand in for the environment, the loader and the X server.
    """
    if not platform.startswith("linux"):
        return None
    env = os.environ if environ is None else environ
    loadable = loadable or _loadable
    connect = connect or _x_server_refuses
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    # QT_QPA_PLATFORM may list fallbacks ("wayland;xcb") and options ("vnc:size=800x600");
    # unset, Qt takes Wayland in a Wayland session and X11 otherwise.
    names = [p.split(":")[0].strip() for p in env.get("QT_QPA_PLATFORM", "").split(";")]
    names = [n for n in names if n] or (["wayland", "xcb"] if wayland else ["xcb"])
    for name in names:
        if name in HEADLESS_PLATFORMS or (name.startswith("wayland") and wayland):
            return None  # Wayland's libraries come with the session
        if name == "xcb" and display:
            break
        if name != "xcb" and not name.startswith("wayland"):
            return None  # a platform we know nothing about: Qt will say
    else:
        return (
            "no display: set DISPLAY (or WAYLAND_DISPLAY) to open the desk, or use "
            "`nsfw-desk scan FOLDER`, which needs no display."
        )
    missing = [row for row in XCB_LIBRARIES if not loadable(row[0])]
    if missing:
        debian = " ".join(dict.fromkeys(row[1] for row in missing))
        fedora = " ".join(dict.fromkeys(row[2] for row in missing))
        return (
            "the desk cannot open: Qt's X11 (xcb) platform needs system libraries that are "
            f"missing here: {', '.join(row[0] for row in missing)}.\n"
            f"  Debian/Ubuntu: sudo apt install {debian}\n"
            f"  Fedora:        sudo dnf install {fedora}\n"
            "Or use `nsfw-desk scan FOLDER`, which needs no display."
        )
    refused = connect(display)
    if refused:
        return (
            f"no display: {refused}. Check DISPLAY (and that X forwarding is on over ssh), "
            "or use `nsfw-desk scan FOLDER`, which needs no display."
        )
    return None


def run_gui(
    folder: Path | None = None,
    *,
    model: str | None = None,
    device: str | None = None,
    db: Path | None = None,
    quit_after_paint: bool = False,
    started: float | None = None,
) -> int:
    from nsfw_desk.cli import EXIT_NO_DISPLAY

    problem = display_problem()
    if problem:
        print(f"nsfw-desk: {problem}", file=sys.stderr)
        return EXIT_NO_DISPLAY
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:  # Qt GUI's own libraries (GL, EGL, fontconfig) are missing
        print(f"nsfw-desk: the desk cannot open: {exc}", file=sys.stderr)
        return EXIT_NO_DISPLAY

    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.main_window import MainWindow
    from nsfw_desk.gui.resources import app_icon

    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    app.setApplicationName("nsfw-desk")
    app.setOrganizationName("nsfw-desk")
    app.setDesktopFileName("io.github.nsfw_desk.NsfwDesk")
    app.setWindowIcon(app_icon())
    # The window opens the library on a worker thread and reports a problem itself.
    window = MainWindow(Settings.load(), library_path=db, model=model, device=device)
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
