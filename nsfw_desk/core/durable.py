"""Writing files that survive a crash: the pieces every atomic writer here shares.

A writer puts its files in a temporary place with `write_durably`, makes their names
durable with `fsync_dir`, then renames into place: a crash or a full disk leaves either the
old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import os
import tempfile
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


def unwritable_reason(path: Path, *, folder: bool) -> str | None:
    """Why `path` cannot be written, or None: said before the work, not as a traceback after.

    `folder`: `path` is a folder its writer creates, parents included; else a file whose
    folder must exist. The nearest existing folder is probed by creating a temporary file in
    it (root passes permission checks, a read-only or pseudo file system does not). A full
    disk is left to the writer, which says so with its own exit status.
    """
    path = Path(os.path.abspath(Path(path).expanduser()))
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        if not folder:
            return f"{path} is in a folder that does not exist ({parent}); create it first"
        parent = parent.parent
    if not os.path.isdir(parent):
        return f"{parent} is not a folder, so {path} cannot be written there"
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf on Windows
        name_max = 255
    for name in path.relative_to(parent).parts:
        if len(os.fsencode(name)) > name_max:
            return (
                f"the name {name[:40]}… is longer than the {name_max} bytes a name may have "
                f"in {parent}; choose a shorter one"
            )
    if not folder and os.path.isdir(path):
        return f"{path} is a folder; give a file"
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return None
        return (
            f"{parent} cannot be written to ({exc.strerror or exc}); "
            "choose a folder you can write to"
        )
    return None
