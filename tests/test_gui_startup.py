"""Starting the desk where it cannot open: no display, or Qt's X11 libraries missing.

Qt aborts (SIGABRT, status 134) in both cases with a message about platform plugins; the
desk checks first, says what to do, and exits with status 6 before importing Qt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nsfw_desk.cli import EXIT_NO_DISPLAY
from nsfw_desk.gui import app

ROOT = Path(__file__).parents[1]


def run_desk(env_changes: dict[str, str | None], prelude: str = "") -> subprocess.CompletedProcess:
    """`nsfw-desk` in a child process with a changed environment; reports whether Qt loaded."""
    env = dict(os.environ)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    code = (
        "import sys\n"
        + prelude
        + "from nsfw_desk.cli import main\n"
        + "status = main([])\n"
        + "print('QT LOADED', any(m.startswith('PySide6') for m in sys.modules))\n"
        + "sys.exit(status)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(sys.platform != "linux", reason="X11 and Wayland are Linux's")
@pytest.mark.parametrize("platform", ["xcb", None])
def test_no_display_exits_6_with_a_clear_message(platform):
    done = run_desk({"DISPLAY": None, "WAYLAND_DISPLAY": None, "QT_QPA_PLATFORM": platform})
    assert done.returncode == EXIT_NO_DISPLAY, done.stderr
    assert "no display: set DISPLAY" in done.stderr and "nsfw-desk scan" in done.stderr
    assert "QT LOADED False" in done.stdout
    assert "platform plugin" not in done.stderr  # Qt's abort message never came


@pytest.mark.skipif(sys.platform != "linux", reason="Qt's xcb platform is Linux's")
def test_missing_xcb_library_is_named_with_the_install_commands():
    prelude = (
        "import nsfw_desk.gui.app as app\n"
        "app._loadable = lambda soname: soname != 'libxcb-cursor.so.0'\n"
    )
    done = run_desk({"DISPLAY": ":99", "WAYLAND_DISPLAY": None, "QT_QPA_PLATFORM": "xcb"}, prelude)
    assert done.returncode == EXIT_NO_DISPLAY, done.stderr
    assert "missing here: libxcb-cursor.so.0." in done.stderr
    assert "Debian/Ubuntu: sudo apt install libxcb-cursor0\n" in done.stderr
    assert "Fedora:        sudo dnf install xcb-util-cursor\n" in done.stderr
    assert "QT LOADED False" in done.stdout


def everything(soname: str) -> bool:
    return True


def nothing(soname: str) -> bool:
    return False


def no_server(display: str) -> str | None:
    raise AssertionError("the X server was asked for")


@pytest.mark.parametrize(
    "env",
    [
        {"QT_QPA_PLATFORM": "offscreen"},
        {"QT_QPA_PLATFORM": "minimal"},
        {"QT_QPA_PLATFORM": "vnc:size=800x600"},
        {"WAYLAND_DISPLAY": "wayland-0"},
        {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"},
        {"QT_QPA_PLATFORM": "wayland", "WAYLAND_DISPLAY": "wayland-0"},
        {"QT_QPA_PLATFORM": "wayland;xcb", "WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"},
    ],
)
def test_headless_and_wayland_platforms_need_no_x11(env):
    assert app.display_problem(env, platform="linux", loadable=nothing, connect=no_server) is None


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"QT_QPA_PLATFORM": "xcb"},
        {"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"},
        {"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"},
    ],
)
def test_no_display_for_the_platform_qt_will_use(env):
    problem = app.display_problem(env, platform="linux", loadable=everything, connect=no_server)
    assert problem is not None and problem.startswith("no display")


def test_a_fallback_to_x11_is_checked_like_x11():
    env = {"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}  # no Wayland session here
    problem = app.display_problem(env, platform="linux", loadable=nothing, connect=no_server)
    assert problem is not None and "libxcb-cursor.so.0" in problem
    assert (
        app.display_problem(env, platform="linux", loadable=everything, connect=lambda d: None)
        is None
    )


def test_other_systems_are_not_checked():
    for platform in ("darwin", "win32"):
        assert app.display_problem({}, platform=platform, loadable=nothing) is None


def test_an_x_server_that_refuses_is_reported():
    env = {"DISPLAY": ":42"}
    refused = app.display_problem(
        env, platform="linux", loadable=everything, connect=lambda d: f"cannot connect to {d}"
    )
    assert refused is not None and "cannot connect to :42" in refused
    assert (
        app.display_problem(env, platform="linux", loadable=everything, connect=lambda d: None)
        is None
    )


def test_an_unreachable_x_server_is_found_with_libxcb():
    """The real probe, against a display number nothing listens on."""
    if not app._loadable("libxcb.so.1"):
        pytest.skip("libxcb is not installed here")
    assert "cannot connect to the X display ':9731'" in (app._x_server_refuses(":9731") or "")


def test_readme_lists_the_packages_the_check_asks_for():
    """The README's install commands are the ones the desk prints when nothing is there."""
    message = app.display_problem({"DISPLAY": ":0"}, platform="linux", loadable=nothing)
    commands = re.findall(r"sudo (?:apt|dnf) install [^\n]+", message or "")
    assert len(commands) == 2
    readme = (ROOT / "README.md").read_text("utf-8")
    for command in commands:
        assert command in readme, command


def test_a_running_x_server_is_accepted(tmp_path):
    """The positive case of the real probe, against a private Xvfb (skipped without one)."""
    import shutil
    import time

    if not shutil.which("Xvfb") or not app._loadable("libxcb.so.1"):
        pytest.skip("needs Xvfb and libxcb (apt install xvfb)")
    display = f":{4000 + os.getpid() % 1000}"
    server = subprocess.Popen(
        ["Xvfb", display, "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while app._x_server_refuses(display) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert app._x_server_refuses(display) is None
    finally:
        server.terminate()
        server.wait(10)
    assert app._x_server_refuses(display) is not None  # and refused once it is gone
