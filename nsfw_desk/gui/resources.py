"""Icons from the installed package data (the repo's resources/ folder)."""

from __future__ import annotations

from functools import cache
from importlib.resources import as_file, files

from PySide6.QtGui import QIcon

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def _package():
    return files("nsfw_desk.resources")


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
