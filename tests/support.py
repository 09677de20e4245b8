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
