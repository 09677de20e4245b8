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


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def setup_logging(verbosity: int = 0, *, to_file: bool = True) -> Path | None:
    """stderr at WARNING (-v INFO, -vv DEBUG); the file at INFO or DEBUG. Returns its path."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    root = logging.getLogger()
    root.setLevel(min(level, logging.INFO))
    for handler in list(root.handlers):
        if getattr(handler, "_nsfw_desk", False):
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console._nsfw_desk = True
    root.addHandler(console)
    if not to_file:
        return None
    path = log_dir() / LOG_FILE
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
            os.chmod(path.parent, 0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES,
                                                       backupCount=BACKUPS, encoding="utf-8")
    except OSError as exc:  # a read-only home must not stop the app
        logging.getLogger(__name__).warning("no log file: %s", exc)
        return None
    handler.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._nsfw_desk = True
    root.addHandler(handler)
    for noisy in ("PIL", "huggingface_hub", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return path
