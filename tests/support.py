"""Helpers shared by several test modules."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def permissions_enforced() -> bool:
    """Whether a mode-000 file is unreadable to us: not on Windows, not as (capable) root."""
    if sys.platform == "win32":
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        try:
            probe.read_bytes()
        except PermissionError:
            return True
        finally:
            probe.chmod(0o600)
        return False


def fill_disk(folder: Path) -> Path:
    """Write a file into `folder` until its disk is full; delete it to give the space back."""
    filler = folder / "filler.bin"
    chunk = b"\0" * (64 * 1024)
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    # Also the last few bytes a 64 KiB write could not take.
    with open(filler, "ab", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError:
            pass
    return filler
