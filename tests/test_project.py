"""Project metadata that must agree: version, AppStream releases, changelog, licence."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from nsfw_desk import __version__

ROOT = Path(__file__).parents[1]
METAINFO = ROOT / "resources" / "io.github.nsfw_desk.NsfwDesk.metainfo.xml"


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def test_metainfo_latest_release_is_the_package_version():
    """Software centres show the AppStream release list: its newest entry is this version."""
    releases = [r.get("version") for r in ET.parse(METAINFO).getroot().iter("release")]
    assert releases, "the metainfo lists no release"
    assert releases[0] == __version__  # AppStream lists the newest first
    assert max(releases, key=_version_key) == releases[0]


def test_changelog_latest_release_is_the_package_version():
    text = (ROOT / "CHANGELOG.md").read_text("utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    assert headings[1] == __version__


def test_licence_file_is_the_one_pyproject_names():
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")  # no tomllib on Python 3.10
    assert re.search(r'^license = \{ text = "Apache-2.0" \}$', pyproject, flags=re.M)
    assert '"License :: OSI Approved :: Apache Software License"' in pyproject
    licence = (ROOT / "LICENSE").read_text("utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence  # the full text, not a pointer to it
    assert ET.parse(METAINFO).getroot().findtext("project_license") == "Apache-2.0"


def test_every_package_of_the_source_is_installed():
    """pyproject lists the packages by name; one left out is missing from a wheel while a
    clone runs fine (nsfw_desk.core.training once was)."""
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    block = re.search(r"^packages = \[(.*?)\]", pyproject, flags=re.M | re.S)
    assert block, "pyproject's [tool.setuptools] packages list"
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "nsfw_desk").rglob("__init__.py")
    }
    assert found | {"nsfw_desk.resources"} == listed
