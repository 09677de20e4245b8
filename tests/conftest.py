"""Shared fixtures: small random-weight models in the hub layout, isolated app folders.

No test downloads anything: the Hugging Face cache points at an empty temporary folder and
the hub is switched to offline mode before any test runs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

_isolated_home = tempfile.mkdtemp(prefix="nsfw-desk-tests-")
os.environ["HF_HOME"] = str(Path(_isolated_home) / "hf")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["XDG_DATA_HOME"] = str(Path(_isolated_home) / "data")
os.environ["XDG_CACHE_HOME"] = str(Path(_isolated_home) / "cache")
os.environ["XDG_CONFIG_HOME"] = str(Path(_isolated_home) / "config")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from nsfw_desk.synthetic import save_random_model, write_photo  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """test_vit (160 px, 0.3 M parameters) with labels NSFW, SFW."""
    return save_random_model(tmp_path_factory.mktemp("model") / "nsfw-sfw")


@pytest.fixture(scope="session")
def loaded_model(model_dir):
    from nsfw_desk.core.runtime import load_model

    return load_model(model_dir, device="cpu")


@pytest.fixture
def library(tmp_path):
    from nsfw_desk.core.store import Library

    lib = Library(tmp_path / "library.sqlite")
    yield lib
    lib.close()


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Twelve small generated photos in nested folders."""
    root = tmp_path / "photos"
    for i in range(12):
        sub = root / ("a" if i % 2 else "b") / ("deep" if i % 3 == 0 else "")
        write_photo(sub / f"photo_{i:02d}.jpg", (120 + i * 7, 90 + i * 3), seed=i)
    return root


@pytest.fixture
def folder(photo_folder):
    """The twelve photos plus one broken JPEG."""
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return photo_folder


@pytest.fixture
def make_window(qtbot, tmp_path, model_dir):
    """Desk windows on a throw-away library with the random-weight model; closed after."""
    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.main_window import MainWindow

    windows = []

    def make(library_path=None, **settings):
        window = MainWindow(
            Settings(reviewer="tester", **settings),
            library_path=library_path or tmp_path / "library.sqlite",
            model=str(model_dir),
            device="cpu",
            save_settings=False,
        )
        qtbot.addWidget(window)
        window.resize(1000, 700)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        window.grid.setFocus()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def stored():
    """A window's library as another program sees it (the window owns no connection)."""
    from nsfw_desk.core.review import ReviewStore
    from nsfw_desk.core.store import Library

    libraries = []

    def open_reviews(window):
        library = Library(window.library_path)
        libraries.append(library)
        return ReviewStore(library)

    yield open_reviews
    for library in libraries:
        library.close()


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk("256k")` mounts a real filesystem of that size (tmpfs) that can fill up,
    and returns its folder; every mount is undone after the test, whatever happened."""
    import subprocess
    import sys

    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if sys.platform != "linux" or os.geteuid() != 0:
            pytest.skip("a size-limited tmpfs needs root on Linux (CI runs as root)")
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)


def pytest_terminal_summary(terminalreporter):
    """The reliability figures (tests/hostile_corpus.py's FIGURES), for the README."""
    import sys

    corpus = sys.modules.get("hostile_corpus")
    figures = getattr(corpus, "FIGURES", None)
    if figures:
        terminalreporter.section("reliability figures")
        for name, value in sorted(figures.items()):
            terminalreporter.write_line(f"{name}: {value}")


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        default=False,
        help="fuzz the decoder with 10,000+ cases instead of a few hundred",
    )


@pytest.fixture(scope="session")
def fuzz_long(request) -> bool:
    return bool(request.config.getoption("--fuzz-long"))


@pytest.fixture
def restore_logging():
    """Undo the handlers and levels a test's setup_logging() call installs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("PIL", "huggingface_hub")}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)
