"""A scripted review session on a real X server, driven by keys as a moderator would.

Xvfb plus a window manager (openbox), the desk started as a user starts it (`python -m
nsfw_desk FOLDER`), xdotool typing the keys: a folder holding bad files is reviewed item by
item in name order, the loupe opened, a decision undone and redone, a filter switched, and
the reviewed items exported from the export dialog. The library is then checked from
outside: every valid item has its decision. A screenshot of each state is written to
$NSFW_DESK_SHOTS (or the test's temporary folder) for a person to look at.

Needs `Xvfb`, `openbox`, `xdotool` and `import` (ImageMagick); `.ci/run` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsfw_desk.synthetic import write_photo

TOOLS = ("Xvfb", "openbox", "xdotool", "import")
pytestmark = [
    pytest.mark.x11,
    pytest.mark.skipif(
        sys.platform != "linux" or not all(shutil.which(t) for t in TOOLS),
        reason=f"needs {', '.join(TOOLS)} (CI installs them)",
    ),
]
PHOTOS = 8


@contextlib.contextmanager
def x_server() -> Iterator[str]:
    """A private Xvfb on a free display, with openbox managing its windows."""
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        display = ":" + pipe.readline().strip()
    wm = subprocess.Popen(
        ["openbox"], env={**os.environ, "DISPLAY": display}, stderr=subprocess.DEVNULL
    )
    try:
        yield display
    finally:
        for process in (wm, xvfb):
            process.terminate()
            process.wait(timeout=10)


class Session:
    """The desk's process on `display`, and the moderator's keyboard."""

    def __init__(self, display: str, shots: Path) -> None:
        self.env = {**os.environ, "DISPLAY": display}
        self.env.pop("QT_QPA_PLATFORM", None)  # the real xcb platform, not offscreen
        self.shots = shots
        self.window = ""

    def xdotool(self, *args: str) -> str:
        done = subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()

    def find_window(self, title: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--onlyvisible", "--name", title).split()
            if found:
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no window named {title!r} appeared")

    def focus(self, window: str) -> None:
        self.xdotool("windowactivate", "--sync", window)
        time.sleep(0.2)

    def key(self, *keys: str, pause: float = 0.25) -> None:
        for key in keys:
            self.xdotool("key", "--clearmodifiers", key)
            time.sleep(pause)

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", "20", text)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True)
        return path


def wait_for(condition, what: str, timeout: float = 60, state=None) -> None:
    """Poll `condition`; on time-out say what was awaited and, with `state`, what there was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f": {state()}" if state else ""))


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


def scans(db: Path) -> list[tuple]:
    """The scan history's statuses; nothing while the desk is still creating the library."""
    try:
        return query(db, "SELECT status FROM scans")
    except sqlite3.OperationalError:  # no file or no table yet
        return []


def latest_labels(db: Path) -> dict[str, str | None]:
    rows = query(
        db,
        "SELECT hash, label FROM decisions WHERE id IN (SELECT MAX(id) FROM decisions "
        "GROUP BY hash)",
    )
    return dict(rows)


def test_a_keyboard_review_session_on_a_real_x_server(tmp_path, model_dir):
    folder = tmp_path / "upload"
    for i in range(PHOTOS):
        write_photo(folder / f"{i:02d}-photo.jpg", (480, 360), seed=200 + i)
    (folder / "03b-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "05b-text.png").write_text("not a picture at all")
    home = tmp_path / "home"
    config = home / "config" / "nsfw-desk"
    config.mkdir(parents=True)
    # The moderator's saved choices: name order, auto-advance, a reviewer name.
    (config / "settings.json").write_text(
        json.dumps({"sort": "name", "auto_advance": True, "reviewer": "x-session"})
    )
    db = tmp_path / "library.sqlite"
    shots = Path(os.environ.get("NSFW_DESK_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    export = tmp_path / "dataset"

    with x_server() as display:
        session = Session(display, shots)
        env = {
            **session.env,
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_STATE_HOME": str(home / "state"),
        }
        app = subprocess.Popen(
            [sys.executable, "-m", "nsfw_desk", str(folder), "--model", str(model_dir)]
            + ["--device", "cpu", "--db", str(db)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            window = session.find_window("upload — nsfw-desk")
            wait_for(lambda: scans(db) == [("done",)], "the first scan")
            session.focus(window)
            session.shot("1-scanned")
            valid = dict(query(db, "SELECT path, hash FROM files"))
            assert len(valid) == PHOTOS
            assert len(query(db, "SELECT path FROM errors")) == 2

            # Review every item in name order: U for even photos, S for odd ones. The two
            # bad files are skipped by auto-advance, so the keys stay in step.
            session.key("Home")
            expected = {}
            for i in range(PHOTOS):
                label = "unsafe" if i % 2 == 0 else "safe"
                session.key("u" if label == "unsafe" else "s")
                expected[valid[str(folder / f"{i:02d}-photo.jpg")]] = label
            wait_for(
                lambda: latest_labels(db) == expected,
                "every decision in the library",
                timeout=20,
                state=lambda: f"expected {expected}, the library has {latest_labels(db)}",
            )
            session.shot("2-reviewed")

            # The loupe on the first item, then back.
            session.key("Home", "Return", pause=1.0)
            session.shot("3-loupe")
            session.key("Escape", pause=0.5)

            # Undo the last decision, then redo it.
            session.key("ctrl+z", pause=0.5)
            last = valid[str(folder / f"{PHOTOS - 1:02d}-photo.jpg")]
            wait_for(lambda: latest_labels(db).get(last) is None, "the undo in the library")
            session.shot("4-undone")
            session.key("ctrl+shift+z", pause=0.5)
            wait_for(lambda: latest_labels(db) == expected, "the redo in the library")

            # Show only the errors (Alt+7: the seventh filter), then all again (Alt+1).
            session.key("alt+7", pause=0.5)
            session.shot("5-errors-only")
            session.key("alt+1", pause=0.5)

            # Export from the dialog: type the folder, Enter exports, Escape closes.
            session.key("ctrl+e", pause=1.0)
            dialog = session.find_window("Export dataset")
            session.focus(dialog)
            session.type(str(export))
            session.key("Return")
            wait_for(lambda: (export / "metadata.jsonl").exists(), "the export")
            session.shot("6-exported")
            session.key("Escape", pause=0.5)
            session.focus(window)
            session.key("ctrl+q")
            output, _ = app.communicate(timeout=30)
        finally:
            if app.poll() is None:
                app.kill()
                app.communicate()

    assert app.returncode == 0, output
    assert latest_labels(db) == expected  # every valid item, the label its key gave
    rows = [json.loads(line) for line in (export / "metadata.jsonl").read_text().splitlines()]
    assert {r["hash"]: r["label"] for r in rows} == {
        h: "nsfw" if label == "unsafe" else "sfw" for h, label in expected.items()
    }
    for name in ("1-scanned", "2-reviewed", "3-loupe", "4-undone", "5-errors-only"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    print(f"x session: {len(expected)} decisions by keyboard; screenshots in {shots}")
