"""The log file: owner-only, rotating, and free of image paths at the default level."""

from __future__ import annotations

import logging
import stat
import sys

import pytest

from nsfw_desk import applog
from nsfw_desk.cli import main


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_log_file_is_owner_only_and_rotates(tmp_path, monkeypatch, restore_logging):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = applog.setup_logging(0)
    assert path is not None and path.parent == applog.log_dir()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    handler = next(
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.handlers.RotatingFileHandler)
    )
    assert handler.maxBytes == applog.MAX_BYTES and handler.backupCount == applog.BACKUPS
    logging.getLogger("nsfw_desk.test").info("hello from the test")
    handler.flush()
    assert "hello from the test" in path.read_text()


def test_no_log_file_warns_without_the_path(tmp_path, monkeypatch, restore_logging, capfd):
    """A log folder that cannot be made still lets the app run, and the warning on stderr
    says why without the path (paths appear at debug level only)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "state"))
    assert applog.setup_logging(0) is None
    err = capfd.readouterr().err
    assert "no log file: Not a directory" in err
    assert str(blocker) not in err


def test_a_scan_logs_no_image_paths_at_the_default_level(
    tmp_path, monkeypatch, model_dir, restore_logging, photo_folder
):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (photo_folder / "secret-name.jpg").write_bytes(b"not an image")
    assert (
        main(
            [
                "scan",
                str(photo_folder),
                "--model",
                str(model_dir),
                "--db",
                str(tmp_path / "l.sqlite"),
                "-q",
            ]
        )
        == 0
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = (applog.log_dir() / applog.LOG_FILE).read_text()
    assert "nsfw-desk" in text  # something was logged...
    assert "secret-name" not in text and str(photo_folder) not in text  # ...but no paths


def test_about_text_names_versions_without_importing_torch():
    import subprocess

    code = (
        "import sys; from nsfw_desk.gui.about import about_text; "
        "t = about_text('org/model@abc', 'CPU · fp32 · 2 threads'); "
        "print('torch' in sys.modules, 'timm' in sys.modules); print(t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    first, text = out.split("\n", 1)
    assert first == "False False"
    for word in ("nsfw-desk", "Qt", "PySide6", "torch", "timm", "org/model@abc", "CPU"):
        assert word in text
