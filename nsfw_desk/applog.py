"""Logging for the app and the command line: stderr plus a rotating, owner-only log file.

Log lines never carry image content, and file paths only at debug level: a moderator's log
may be shared with support, and paths of flagged images are sensitive too.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

import platformdirs

APP_NAME = "nsfw-desk"
LOG_FILE = "nsfw-desk.log"
MAX_BYTES = 1_000_000
BACKUPS = 4
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HANDLER_PREFIX = "nsfw-desk."


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Each new log file, the one after a rotation too, is created owner-only (0600)."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def _make_private_dirs(folder: Path) -> None:
    """`folder` and its missing parents, each 0700 (mkdir -p would leave parents 0755: on
    Linux the log folder is nsfw-desk/log, and nsfw-desk is ours too)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for part in reversed(missing):
        part.mkdir(mode=0o700, exist_ok=True)
        os.chmod(part, 0o700)  # mkdir's mode is filtered by the umask


def setup_logging(verbosity: int = 0, *, to_file: bool = True) -> Path | None:
    """stderr at WARNING (-v INFO, -vv DEBUG); the file at INFO or DEBUG. Returns its path."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    root = logging.getLogger()
    root.setLevel(min(level, logging.INFO))
    for handler in list(root.handlers):
        if (handler.get_name() or "").startswith(HANDLER_PREFIX):  # ours, from an earlier call
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console.set_name(HANDLER_PREFIX + "console")
    root.addHandler(console)
    if not to_file:
        return None
    path = log_dir() / LOG_FILE
    try:
        _make_private_dirs(path.parent)
        handler = _PrivateRotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
    except OSError as exc:  # a read-only home must not stop the app
        # The error's text holds the path; that goes to debug level, as every path does.
        logging.getLogger(__name__).warning("no log file: %s", exc.strerror or type(exc).__name__)
        logging.getLogger(__name__).debug("no log file at %s", path, exc_info=True)
        return None
    handler.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.set_name(HANDLER_PREFIX + "file")
    root.addHandler(handler)
    for noisy in ("PIL", "huggingface_hub", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return path
