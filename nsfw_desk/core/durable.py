"""Writing files that survive a crash: the pieces every atomic writer here shares.

A writer puts its files in a temporary place with `write_durably`, makes their names
durable with `fsync_dir`, then renames into place: a crash or a full disk leaves either the
old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: Path, data: bytes, *, mode: int = 0o600, exclusive: bool = True) -> None:
    """`data` in `path`, flushed to disk before returning.

    `exclusive`: the file must be new (a name clash is a bug, not something to overwrite).
    `mode` is filtered by the umask, as for any new file.
    """
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the names created in folder `path` durable (a no-op where folders cannot be
    opened for it: Windows)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
