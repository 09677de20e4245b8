"""End to end: a folder of broken, odd and valid files; every one ends as a score or an error."""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import permissions_enforced

import nsfw_desk.core.scan as scan_module
from nsfw_desk.core.images import ErrorKind, content_hash
from nsfw_desk.core.scan import scan_folder
from nsfw_desk.synthetic import synthetic_photo, write_photo

SCORE = "score"
HEX64 = re.compile(r"[0-9a-f]{64}")
POSIX = sys.platform != "win32"


LOCKS_WORK = permissions_enforced()  # as root a mode-000 file is read (and scored) anyway


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save_args)
    return out.getvalue()


def huge_png_header() -> bytes:
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def build_corpus(root: Path) -> tuple[dict[Path, str], dict[str, Path]]:
    """Write the corpus; return the expected outcome of every candidate file, and a few paths."""
    expected: dict[Path, str] = {}
    seed = iter(range(100, 1000))  # distinct content for every picture

    def put(name: str | Path, outcome: str, data: bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[path] = outcome
        return path

    def photo(size=(96, 72)) -> Image.Image:
        return synthetic_photo(size, seed=next(seed))

    # Valid files in every common format.
    for fmt, suffix in [
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("GIF", "gif"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
    ]:
        put(f"valid/photo.{suffix}", SCORE, encode(photo(), fmt))
    put("valid/deeper/more/photo.jpeg", SCORE, encode(photo(), "JPEG"))

    # Broken files.
    jpeg = encode(photo((160, 120)), "JPEG")
    png = encode(photo((160, 120)), "PNG")
    put("broken/zero.jpg", ErrorKind.NOT_AN_IMAGE, b"")
    put("broken/truncated.jpg", ErrorKind.DECODE_ERROR, jpeg[: len(jpeg) // 2])
    put("broken/truncated.png", ErrorKind.DECODE_ERROR, png[: len(png) // 2])
    put("broken/text.jpg", ErrorKind.NOT_AN_IMAGE, b"This is a shopping list, not a photo.\n")
    put("broken/huge_header.png", ErrorKind.TOO_LARGE, huge_png_header())

    # Odd but valid files.
    put("odd/png_named.jpg", SCORE, encode(photo(), "PNG"))
    put("odd/upload.dat", SCORE, encode(photo(), "PNG"))  # found by its content
    put("odd/cmyk.jpg", SCORE, encode(photo().convert("CMYK"), "JPEG"))
    grey16 = (np.asarray(photo().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    put("odd/gray16.png", SCORE, encode(Image.fromarray(grey16), "PNG"))
    palette = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("odd/palette_trns.png", SCORE, encode(palette, "PNG", transparency=0))
    frames = [photo((64, 48)) for _ in range(3)]
    put(
        "odd/animated.gif",
        SCORE,
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80),
    )
    rotated = photo((200, 100))
    exif = rotated.getexif()
    exif[0x0112] = 6
    put("odd/rotated.jpg", SCORE, encode(rotated, "JPEG", exif=exif))
    put("odd/one_pixel.png", SCORE, encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"))
    long_name = "long_" + "x" * 230 + ".jpg"
    assert 200 < len(long_name.encode()) <= 255
    put(f"odd/{long_name}", SCORE, encode(photo(), "JPEG"))
    put("odd/vanishing.jpg", ErrorKind.VANISHED, encode(photo(), "JPEG"))
    locked = put(
        "odd/locked.jpg", ErrorKind.UNREADABLE if LOCKS_WORK else SCORE, encode(photo(), "JPEG")
    )

    # Not candidates at all: counted as ignored, never as results.
    (root / "odd" / "README.txt").write_text("notes about this folder")
    write_photo(root / "odd" / ".hidden.jpg", seed=next(seed))

    special: dict[str, Path] = {
        "locked": locked,
        "vanishing": root / "odd" / "vanishing.jpg",
        "rotated": root / "odd" / "rotated.jpg",
    }
    if POSIX:
        raw = os.fsencode(root / "odd") + b"/bad_\xff\xfe_name.jpg"
        with open(raw, "wb") as fh:
            fh.write(encode(photo(), "JPEG"))
        special["non_utf8"] = Path(os.fsdecode(raw))
        expected[special["non_utf8"]] = SCORE

        put("loop/inner.jpg", SCORE, encode(photo(), "JPEG"))
        os.symlink("..", root / "loop" / "up")  # back to the corpus root
        os.symlink(".", root / "loop" / "self")

        os.mkfifo(root / "odd" / "pipe.png")
        expected[root / "odd" / "pipe.png"] = ErrorKind.UNREADABLE
    return expected, special


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    expected, special = build_corpus(root)
    if LOCKS_WORK:
        special["locked"].chmod(0)
    yield root, expected, special
    if POSIX:
        special["locked"].chmod(0o644)


def vanish_on_read(monkeypatch, doomed: Path) -> list[Path]:
    """Make `doomed` disappear just before the scan reads it, as if deleted meanwhile."""
    real = scan_module.read_file
    asked: list[Path] = []

    def read_file(path, **kwargs):
        asked.append(Path(path))
        if Path(path) == doomed and os.path.exists(path):
            os.remove(path)
        return real(path, **kwargs)

    monkeypatch.setattr(scan_module, "read_file", read_file)
    return asked


def check_outcomes(outcomes, expected: dict[Path, str]) -> dict[Path, object]:
    counts = Counter(o.path for o in outcomes)
    duplicated = {p: n for p, n in counts.items() if n > 1}
    assert not duplicated, f"files reported more than once: {duplicated}"
    assert set(counts) == set(expected), (
        f"missing: {sorted(map(str, set(expected) - set(counts)))}; "
        f"unexpected: {sorted(map(str, set(counts) - set(expected)))}"
    )
    by_path = {o.path: o for o in outcomes}
    for path, want in expected.items():
        outcome = by_path[path]
        if want == SCORE:
            assert outcome.error_kind is None and outcome.error is None, (path.name, outcome)
            assert outcome.score is not None and 0.0 <= outcome.score <= 1.0, path.name
            assert HEX64.fullmatch(outcome.hash), path.name
        else:
            assert outcome.error_kind == want, (path.name, outcome)
            assert isinstance(outcome.error, str) and outcome.error.strip(), path.name
            assert outcome.score is None and outcome.hash is None, path.name
    return by_path


def test_every_bad_file_is_accounted_for(corpus, loaded_model, library, monkeypatch):
    root, expected, special = corpus
    asked = vanish_on_read(monkeypatch, special["vanishing"])
    scores = sum(1 for want in expected.values() if want == SCORE)
    errors = len(expected) - scores

    summary = scan_folder(root, loaded_model, library, keep_outcomes=True)

    assert special["vanishing"] in asked and not special["vanishing"].exists()
    by_path = check_outcomes(summary.outcomes, expected)
    assert not summary.cancelled
    assert summary.files == len(expected)
    assert (summary.scored, summary.cached, summary.errors) == (scores, 0, errors)
    assert summary.ignored == 2  # README.txt and .hidden.jpg

    # Scores belong to the bytes that were read: the hash is of the file's content.
    for path, want in expected.items():
        if want == SCORE:
            assert by_path[path].hash == content_hash(path.read_bytes()), path.name

    if POSIX:
        # A name that is not UTF-8 comes back as the very same file on disk.
        raw = os.fsencode(special["non_utf8"])
        assert b"\xff\xfe" in raw
        outcome = next(o for o in summary.outcomes if os.fsencode(o.path) == raw)
        assert outcome.path == special["non_utf8"] and outcome.path.is_file()
        with open(raw, "rb") as fh:
            assert outcome.hash == content_hash(fh.read())

    # The library holds every result and every error, with the same facts.
    stored = list(library.results(root, loaded_model.model_id))
    assert Counter(r.path for r in stored) == Counter(list(expected))
    for result in stored:
        outcome = by_path[result.path]
        assert (result.hash, result.error_kind) == (outcome.hash, outcome.error_kind)
        if outcome.error_kind is None:
            assert result.score == pytest.approx(outcome.score, abs=1e-6)
            assert result.error is None
            thumb = Image.open(io.BytesIO(library.thumbnail(result.hash)))
            assert thumb.format == "JPEG" and max(thumb.size) <= 256
        else:
            assert result.error == outcome.error and result.score is None
    if POSIX:
        assert os.fsencode(
            next(r.path for r in stored if r.path == special["non_utf8"])
        ) == os.fsencode(special["non_utf8"])

    # Decoding facts were stored upright and with the true format.
    rows = {row["path"]: row for row in library.db["files"].rows}
    rotated = rows[str(special["rotated"])]
    assert (rotated["width"], rotated["height"], rotated["format"]) == (100, 200, "JPEG")
    assert rows[str(root / "odd" / "png_named.jpg")]["format"] == "PNG"
    assert rows[str(root / "odd" / "upload.dat")]["format"] == "PNG"
    assert rows[str(root / "odd" / "gray16.png")]["format"] == "PNG"

    # A second scan answers everything from the library and reports the same errors.
    # The vanished file is gone for good, so it is no longer a candidate.
    monkeypatch.setattr(scan_module, "read_file", read_file_forbidden_for(expected))
    again = dict(expected)
    del again[special["vanishing"]]
    second = scan_folder(root, loaded_model, library, keep_outcomes=True)

    by_path_2 = check_outcomes(second.outcomes, again)
    assert second.scored == 0
    assert second.files == len(again)
    assert second.cached == sum(1 for want in again.values() if want == SCORE)
    assert second.errors == len(again) - second.cached
    for path, outcome in by_path_2.items():
        first = by_path[path]
        assert (outcome.hash, outcome.score, outcome.error_kind, outcome.error) == (
            first.hash,
            first.score,
            first.error_kind,
            first.error,
        ), path.name
        if outcome.error_kind in ErrorKind.CONTENT_BOUND or outcome.error_kind is None:
            assert outcome.cached, path.name
    stored = list(library.results(root, loaded_model.model_id))
    assert Counter(r.path for r in stored) == Counter(list(again))


def read_file_forbidden_for(expected: dict[Path, str]):
    """A read_file for the rescan: only files that may legitimately be retried are read."""
    real = scan_module.read_file
    retried = {p for p, want in expected.items() if want == ErrorKind.UNREADABLE}

    def read_file(path, **kwargs):
        assert Path(path) in retried, f"{Path(path).name} was read again on an unchanged rescan"
        return real(path, **kwargs)

    return read_file
