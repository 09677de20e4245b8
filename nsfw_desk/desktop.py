"""Installing the desktop entry, icons and AppStream data for the current user (Linux).

`nsfw-desk desktop-integration` makes the app appear in the desktop's menu, launching this
very installation (the Python that runs this command), whatever virtual environment it is in.
"""

from __future__ import annotations

import os
import shlex
import sys
from importlib.resources import files
from pathlib import Path

APP_ID = "io.github.nsfw_desk.NsfwDesk"
ICON_NAME = "nsfw-desk"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def targets(base: Path | None = None) -> dict[str, Path]:
    """Where each installed file goes, keyed by a short name."""
    base = base or data_home()
    out = {
        "desktop": base / "applications" / f"{APP_ID}.desktop",
        "metainfo": base / "metainfo" / f"{APP_ID}.metainfo.xml",
        "svg": base / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg",
    }
    for size in SIZES:
        out[f"png{size}"] = (
            base / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        )
    return out


def install(base: Path | None = None, command: list[str] | None = None) -> list[Path]:
    """Write the entry (its Exec runs `command`, default this Python with -m nsfw_desk)."""
    resources = files("nsfw_desk.resources")
    command = command or [sys.executable, "-m", "nsfw_desk"]
    written = []
    for key, target in targets(base).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        if key == "desktop":
            text = (resources / f"{APP_ID}.desktop").read_text(encoding="utf-8")
            exec_line = "Exec=" + " ".join(shlex.quote(part) for part in command) + " %f"
            text = (
                "\n".join(
                    exec_line if line.startswith("Exec=") else line for line in text.splitlines()
                )
                + "\n"
            )
            target.write_text(text, encoding="utf-8")
        elif key == "metainfo":
            target.write_bytes((resources / f"{APP_ID}.metainfo.xml").read_bytes())
        elif key == "svg":
            target.write_bytes((resources / "nsfw-desk.svg").read_bytes())
        else:
            size = key[3:]
            target.write_bytes((resources / "png" / f"nsfw-desk-{size}.png").read_bytes())
        written.append(target)
    return written


def uninstall(base: Path | None = None) -> list[Path]:
    removed = []
    for target in targets(base).values():
        if target.exists():
            target.unlink()
            removed.append(target)
    return removed
