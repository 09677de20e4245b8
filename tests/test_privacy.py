"""Privacy of what nsfw-desk keeps: owner-only files, no network but the model download, and logs
without image content (and without paths above debug level).

Pickle checkpoints (also from a hub repo offering only pytorch_model.bin) are refused in
tests/test_models.py; export never writing outside its folder is tests/test_export.py's.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import sys
import zlib
from pathlib import Path

import pytest
from hostile_corpus import encode, jpeg_with_app1, png_chunk, png_insert
from PIL import Image

import nsfw_desk.core.scan as scan_module
from nsfw_desk import applog
from nsfw_desk.cli import main
from nsfw_desk.core.review import DecisionInput, ReviewStore
from nsfw_desk.core.settings import Settings
from nsfw_desk.core.store import Library
from nsfw_desk.synthetic import synthetic_photo, write_photo

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")

SECRET_NAME = "secretname"
SECRET_CONTENT = "SECRETCONTENT"
APP_DIRS = ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME")


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """Empty platformdirs folders (data, cache, config, state) and a permissive umask."""
    homes = {}
    for name in APP_DIRS:
        homes[name] = tmp_path / "home" / name.lower()
        monkeypatch.setenv(name, str(homes[name]))
    old_umask = os.umask(0o022)  # what most desktops use: files 0644 unless made private
    yield homes
    os.umask(old_umask)


def secret_corpus(root: Path) -> Path:
    """Images and broken files whose names and bytes carry markers that must not be logged."""
    marker = SECRET_CONTENT.encode()
    photo = synthetic_photo((80, 60), seed=3)
    exif = photo.getexif()
    exif[0x010E] = SECRET_CONTENT  # ImageDescription
    write_photo(root / f"{SECRET_NAME}_ok.jpg", seed=1)
    (root / f"{SECRET_NAME}_exif.jpg").write_bytes(encode(photo, "JPEG", exif=exif))
    (root / f"{SECRET_NAME}_comment.jpg").write_bytes(jpeg_with_app1(b"Exif\x00\x00" + marker))
    text = png_chunk(b"tEXt", b"Comment\x00" + marker)
    ztxt = png_chunk(b"zTXt", b"Secret\x00\x00" + zlib.compress(marker * 10))
    (root / "sub").mkdir(parents=True)
    (root / "sub" / f"{SECRET_NAME}_text.png").write_bytes(
        png_insert(encode(photo, "PNG"), [text, ztxt])
    )
    (root / "sub" / f"{SECRET_NAME}_notimage.jpg").write_bytes(marker * 20)
    truncated = encode(photo, "PNG")
    (root / "sub" / f"{SECRET_NAME}_truncated.png").write_bytes(truncated[:200] + marker)
    (root / f"{SECRET_NAME}_decoder_fails.jpg").write_bytes(
        encode(synthetic_photo((70, 50), seed=9), "JPEG", comment=marker + b"FAILHERE")
    )
    (root / f"{SECRET_NAME}_huge.png").write_bytes(_png_claiming_huge())
    return root


def _png_claiming_huge() -> bytes:
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = (30000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def walk(folder: Path):
    yield folder
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            yield Path(dirpath) / name


@posix_only
def test_everything_nsfw_desk_creates_is_owner_only(
    fresh_home, tmp_path, model_dir, photo_folder, restore_logging
):
    # A real scan into the default library, a decision, saved settings and a rotated log.
    assert main(["-v", "scan", str(photo_folder), "--model", str(model_dir), "-q"]) == 0
    with Library() as library:
        digest = next(iter(library.hashes_under(photo_folder)))
        ReviewStore(library).decide([DecisionInput(digest)], "unsafe", reviewer="r", threshold=0.5)
        assert library.thumbnail(digest)
    Settings(reviewer="r").save()
    logging.getLogger("nsfw_desk.test").warning("a line to rotate")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            handler.doRollover()
            logging.getLogger("nsfw_desk.test").warning("a line after the rotation")
            handler.flush()

    created = {name: home / "nsfw-desk" for name, home in fresh_home.items()}
    assert all(folder.is_dir() for folder in created.values()), created
    names = {p.name for folder in created.values() for p in walk(folder)}
    assert {
        "library.sqlite",
        "thumbnails.sqlite",
        "settings.json",
        "nsfw-desk.log",
        "nsfw-desk.log.1",
    } <= names, names
    loose = []
    for folder in created.values():
        for path in walk(folder):
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            want = 0o700 if path.is_dir() else 0o600
            if mode != want:
                loose.append(f"{path.relative_to(tmp_path)}: {mode:o}")
    assert not loose, "not owner-only: " + ", ".join(loose)


class NetworkAttempt(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Every way out to the network fails, and is written down."""
    attempts: list[str] = []

    def refuse(what):
        def blocked(*args, **kwargs):
            attempts.append(f"{what}{args[:2]!r}")
            raise NetworkAttempt(f"network access attempted: {what}")

        return blocked

    real_socket = socket.socket

    class GuardedSocket(real_socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if family in (socket.AF_INET, socket.AF_INET6, -1) and fileno is None:
                refuse("socket")(family, type)
            super().__init__(family, type, proto, fileno)

    monkeypatch.setattr(socket, "socket", GuardedSocket)
    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(real_socket, name, refuse(f"socket.{name}"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    # The tests run with HF_HUB_OFFLINE=1, which would hide a download attempt: not here.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return attempts


def test_the_blocker_catches_a_download_attempt(no_network):
    """Guards the test below: with the blocker on, a hub model does try the network."""
    from nsfw_desk.core.hub import ModelError
    from nsfw_desk.core.runtime import load_model

    with pytest.raises((ModelError, OSError)):
        load_model("nsfw-desk-tests/not-cached-anywhere", device="cpu")
    assert no_network, "loading an uncached hub model never touched the network"


def test_scan_review_export_and_metrics_need_no_network(
    no_network, tmp_path, model_dir, photo_folder, capsys
):
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import scan_folder

    db = tmp_path / "library.sqlite"
    model = load_model(model_dir, device="cpu")
    with Library(db) as library:
        summary = scan_folder(photo_folder, model, library, keep_outcomes=True)
        assert summary.scored == 12
        ReviewStore(library).decide(
            [DecisionInput(o.hash, model.model_id, o.score, o.path) for o in summary.outcomes[:6]],
            "unsafe",
            reviewer="r",
            threshold=0.5,
        )
    (photo_folder / "new.jpg").write_bytes(encode(synthetic_photo((90, 60), seed=77), "JPEG"))
    assert main(["scan", str(photo_folder), "--model", str(model_dir), "--db", str(db), "-q"]) == 0
    assert main(["export", "--out", str(tmp_path / "dataset"), "--db", str(db)]) == 0
    assert main(["metrics", "--db", str(db)]) in (0, 2)  # 2: too few reviews for a curve
    assert no_network == []


LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ")


def log_records(text: str) -> list[tuple[str, str]]:
    """(level, whole record text with any traceback) from the log file's format."""
    records: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            records.append((match.group(1), line))
        elif records:
            records[-1] = (records[-1][0], records[-1][1] + "\n" + line)
    return records


@pytest.mark.parametrize("verbosity", [0, 1, 2])
def test_logs_hold_no_image_content_and_paths_only_at_debug(
    verbosity, fresh_home, tmp_path, model_dir, monkeypatch, restore_logging, capsys
):
    root = secret_corpus(tmp_path / "uploads")
    real_decode = scan_module.decode
    failed = []

    def decoder_with_a_bug(data, **kwargs):  # the "unexpected error" path of the scan
        if b"FAILHERE" in data:
            failed.append(len(data))
            raise RuntimeError("the decoder failed unexpectedly")
        return real_decode(data, **kwargs)

    monkeypatch.setattr(scan_module, "decode", decoder_with_a_bug)
    flags = ["-v"] * verbosity
    assert (
        main(
            [
                *flags,
                "scan",
                str(root),
                "--model",
                str(model_dir),
                "--db",
                str(tmp_path / "l.sqlite"),
                "--jsonl",
                str(tmp_path / "out.jsonl"),
            ]
        )
        == 0
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    captured = capsys.readouterr()
    assert failed

    # The per-file error list (JSON lines, the summary) names the files: that is its job.
    listing = (tmp_path / "out.jsonl").read_text()
    assert SECRET_NAME in listing and "unexpected RuntimeError" in listing

    log_text = (applog.log_dir() / applog.LOG_FILE).read_text()
    records = log_records(log_text)
    assert any("unexpected error preparing a file" in text for _, text in records)
    for level, text in records:
        assert SECRET_CONTENT not in text, text
        if level != "DEBUG":
            assert SECRET_NAME not in text and str(root) not in text, text
    # stderr gets the same records (and the per-file error summary, which may name files).
    assert SECRET_CONTENT not in captured.err and SECRET_CONTENT not in captured.out


def test_unexpected_failures_keep_their_paths_at_debug_level(caplog):
    import logging

    from nsfw_desk.core.logs import log_problem, log_unexpected

    log = logging.getLogger("nsfw_desk.test")
    secret = "/home/moderator/case-4711/evidence.jpg"
    caplog.set_level(logging.DEBUG, logger="nsfw_desk.test")
    for report in (log_unexpected, log_problem):
        try:
            open(secret, "rb")  # noqa: SIM115 (it never opens)
        except OSError as exc:
            report(log, "reading failed", exc)
    above = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(above) == 2 and all("FileNotFoundError" in m for m in above)
    assert not any(secret in m for m in above)
    assert "test_privacy.py" in above[0]  # where in our code, for the bug report
    assert len(debug) == 2 and all(secret in m for m in debug)
