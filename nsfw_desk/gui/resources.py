"""Icons from the installed package data (the repo's resources/ folder)."""

from __future__ import annotations

import sys
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

from PySide6.QtGui import QIcon

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def _package():
    try:
        return files("nsfw_desk.resources")
    except ModuleNotFoundError:  # a PyInstaller bundle keeps them as plain files
        return Path(getattr(sys, "_MEIPASS", ".")) / "nsfw_desk" / "resources"


@cache
def app_icon() -> QIcon:
    icon = QIcon()
    for size in ICON_SIZES:
        with as_file(_package() / "png" / f"nsfw-desk-{size}.png") as path:
            icon.addFile(str(path))
    return icon


@cache
def action_icon(name: str) -> QIcon:
    with as_file(_package() / "icons" / f"{name}.svg") as path:
        return QIcon(str(path))
