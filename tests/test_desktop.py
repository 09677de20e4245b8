"""Desktop integration: the entry, icons and AppStream data are valid and install cleanly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.resources import as_file, files

import pytest
from PIL import Image

from nsfw_desk import desktop
from nsfw_desk.cli import main

RESOURCES = files("nsfw_desk.resources")


def test_icon_pngs_exist_in_every_size_and_match_their_names():
    for size in desktop.SIZES:
        with Image.open(RESOURCES / "png" / f"nsfw-desk-{size}.png") as image:
            assert image.size == (size, size)
            assert image.mode == "RGBA"
    assert (RESOURCES / "nsfw-desk.svg").read_text().startswith("<svg")
    for name in ("open", "export", "calibrate", "hide"):
        assert (RESOURCES / "icons" / f"{name}.svg").is_file()


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None,
    reason="desktop-file-utils not installed (CI installs it)",
)
def test_installed_entry_validates_and_launches_this_python(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["desktop-integration"]) == 0
    entry = desktop.targets(tmp_path)["desktop"]
    text = entry.read_text()
    assert f"Exec={sys.executable} -m nsfw_desk %f" in text
    out = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    assert out.returncode == 0 and "error" not in out.stdout.lower(), out.stdout
    for key, path in desktop.targets(tmp_path).items():
        assert path.is_file(), key
    assert main(["desktop-integration", "--remove"]) == 0
    assert not any(p.exists() for p in desktop.targets(tmp_path).values())


@pytest.mark.skipif(
    shutil.which("appstreamcli") is None, reason="appstream not installed (CI installs it)"
)
def test_metainfo_validates():
    with as_file(RESOURCES / f"{desktop.APP_ID}.metainfo.xml") as path:
        out = subprocess.run(
            ["appstreamcli", "validate", "--no-net", str(path)], capture_output=True, text=True
        )
    assert out.returncode == 0, out.stdout + out.stderr
