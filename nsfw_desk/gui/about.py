"""The About dialog: versions of the app and its engines, and the model and device in use.

Versions come from package metadata, so showing them never imports torch on the GUI thread.
"""

from __future__ import annotations

from importlib import metadata

import PySide6
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMessageBox, QWidget

from nsfw_desk import __version__


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def about_text(model_id: str | None, device: str) -> str:
    rows = [
        ("nsfw-desk", __version__),
        ("Qt", qVersion()),
        ("PySide6", PySide6.__version__),
        ("torch", _version("torch")),
        ("timm", _version("timm")),
        ("Pillow", _version("pillow")),
        ("Model", model_id or "not loaded yet"),
        ("Device", device or "not chosen yet"),
    ]
    table = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return (
        "<p>A review desk for content moderators. Images are scored on this computer; "
        "nothing is uploaded.</p>"
        f"<table cellspacing='4'>{table}</table>"
    )


def show_about(parent: QWidget, model_id: str | None, device: str) -> None:
    QMessageBox.about(parent, "About nsfw-desk", about_text(model_id, device))
