"""Finding image files and decoding them: discovery, reading, every mode to RGB, hostile files."""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import sys
import threading
import time
import zlib
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps
from support import permissions_enforced

from nsfw_desk.core import images
from nsfw_desk.core.images import (
    DiscoveryStats,
    ErrorKind,
    FileEntry,
    FileError,
    ImageError,
    content_hash,
    decode,
    discover,
    load_image,
    make_thumbnail,
    read_file,
    sniff_format,
)
from nsfw_desk.synthetic import synthetic_photo, write_photo

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types and links")
needs_non_root = pytest.mark.skipif(
    not permissions_enforced(), reason="file permissions not enforced (root, or Windows)"
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save_args)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose IHDR (with a correct CRC) claims another size."""
    data = bytearray(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small baseline JPEG whose SOF0 header claims another size."""
    data = bytearray(encode(Image.new("RGB", (8, 8), RED), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def decode_kind(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        decode(data, **kwargs)
    assert info.value.message, "every error carries a message for the moderator"
    assert str(info.value) == info.value.message
    return info.value.kind


def names(found) -> list[str]:
    return [item.path.name for item in found]


def close_to(pixel, expected, tolerance=3) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- discovery ----------------------------------------------------------------------------


def test_discover_recurses_matches_suffixes_in_any_case_and_counts_the_rest(tmp_path):
    write_photo(tmp_path / "a.JPG")
    write_photo(tmp_path / "d.webp")
    write_photo(tmp_path / "e.tif")
    write_photo(tmp_path / "sub" / "b.Jpeg")
    write_photo(tmp_path / "sub" / "deep" / "c.PNG")
    (tmp_path / "README.txt").write_text("not a picture")
    (tmp_path / "sub" / "notes.md").write_text("# notes")
    stats = DiscoveryStats()

    found = list(discover(tmp_path, stats=stats))

    assert all(isinstance(item, FileEntry) for item in found)
    # Stable order: a folder's files by name, then its subfolders by name, depth first.
    assert names(found) == ["a.JPG", "d.webp", "e.tif", "b.Jpeg", "c.PNG"]
    assert found[4].path == tmp_path / "sub" / "deep" / "c.PNG"
    for item in found:
        st = item.path.stat()
        assert (item.size, item.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert stats.ignored_not_images == 2
    assert stats.ignored_hidden == 0 and stats.errors == []
    assert names(discover(tmp_path)) == names(found)


def test_discover_sniffs_content_whatever_the_name(tmp_path):
    png = encode(synthetic_photo((20, 10)), "PNG")
    (tmp_path / "upload.dat").write_bytes(png)
    (tmp_path / "noext").write_bytes(png)
    (tmp_path / "clip.bin").write_bytes(encode(synthetic_photo((20, 10)), "WEBP"))
    (tmp_path / "scan").write_bytes(encode(synthetic_photo((20, 10)), "JPEG"))
    (tmp_path / "README.txt").write_text("hello, I am text")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("text with an image suffix is still a candidate")
    stats = DiscoveryStats()

    found = list(discover(tmp_path, stats=stats))

    assert sorted(names(found)) == ["clip.bin", "noext", "scan", "text.jpg", "upload.dat"]
    assert stats.ignored_not_images == 2


def test_discover_skips_hidden_files_and_folders_unless_asked(tmp_path):
    write_photo(tmp_path / "visible.jpg")
    write_photo(tmp_path / ".hidden.jpg")
    write_photo(tmp_path / ".cache" / "inside.jpg")
    write_photo(tmp_path / "sub" / ".also.png")
    stats = DiscoveryStats()

    assert names(discover(tmp_path, stats=stats)) == ["visible.jpg"]
    assert stats.ignored_hidden == 3  # two files and one folder (its contents unseen)

    stats = DiscoveryStats()
    found = names(discover(tmp_path, include_hidden=True, stats=stats))
    assert sorted(found) == [".also.png", ".hidden.jpg", "inside.jpg", "visible.jpg"]
    assert stats.ignored_hidden == 0


@posix_only
def test_discover_survives_symlink_loops_and_walks_each_real_folder_once(tmp_path):
    root = tmp_path / "root"
    write_photo(root / "top.jpg")
    write_photo(root / "a" / "p.jpg")
    os.symlink("..", root / "a" / "up")  # back to root: a loop
    os.symlink(".", root / "a" / "self")  # to itself: a loop
    outside = tmp_path / "outside"
    write_photo(outside / "o.jpg")
    os.symlink(outside, root / "ext")
    os.symlink(outside, root / "ext2")  # a second way into the same folder
    stats = DiscoveryStats()

    # islice: a walk that loops fails here instead of hanging the test run.
    found = list(islice(discover(root, stats=stats), 100))

    paths = [item.path for item in found]
    assert len(paths) == len(set(paths)) == 3
    assert set(paths) == {root / "top.jpg", root / "a" / "p.jpg", root / "ext" / "o.jpg"}
    assert stats.links_already_seen == 3  # up, self, ext2
    assert stats.errors == []


@posix_only
def test_discover_reports_a_broken_link_with_an_image_name(tmp_path):
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "gone.jpg")
    os.symlink(tmp_path / "nowhere.txt", tmp_path / "gone.txt")
    stats = DiscoveryStats()

    found = list(discover(tmp_path, stats=stats))

    assert len(found) == 1 and isinstance(found[0], FileError)
    assert found[0].path == tmp_path / "gone.jpg"
    assert found[0].kind == ErrorKind.VANISHED and found[0].message
    assert stats.errors == found


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_discover_reports_a_fifo_named_like_an_image_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    os.mkfifo(tmp_path / "pipe")
    write_photo(tmp_path / "y.png")
    stats = DiscoveryStats()

    found = list(discover(tmp_path, stats=stats))

    assert names(found) == ["x.png", "y.png"]
    error = found[0]
    assert isinstance(error, FileError)
    assert error.kind == ErrorKind.UNREADABLE and "regular" in error.message
    assert isinstance(found[1], FileEntry)
    assert stats.errors == [error]
    assert stats.ignored_not_images == 1  # the FIFO without an image name


def test_discover_missing_root_is_one_error(tmp_path):
    stats = DiscoveryStats()
    found = list(discover(tmp_path / "absent", stats=stats))
    assert len(found) == 1 and found[0].kind == ErrorKind.UNREADABLE and found[0].message
    assert stats.errors == found


@needs_non_root
def test_discover_reports_an_unreadable_folder_and_goes_on(tmp_path):
    write_photo(tmp_path / "ok" / "a.jpg")
    locked = tmp_path / "locked"
    write_photo(locked / "b.jpg")
    locked.chmod(0)
    try:
        stats = DiscoveryStats()
        found = list(discover(tmp_path, stats=stats))
    finally:
        locked.chmod(0o755)
    errors = [item for item in found if isinstance(item, FileError)]
    assert [e.path for e in errors] == [locked]
    assert errors[0].kind == ErrorKind.UNREADABLE and errors[0].message
    assert [item.path.name for item in found if isinstance(item, FileEntry)] == ["a.jpg"]
    assert stats.errors == errors


# --- reading ------------------------------------------------------------------------------


def test_read_file_returns_every_byte(tmp_path):
    data = np.random.default_rng(0).bytes(9 * 2**20 + 17)  # more than two read chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert read_file(path) == data
    assert read_file(path, max_bytes=len(data)) == data
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_file(tmp_path / "empty.jpg") == b""


def test_read_file_vanished(tmp_path):
    with pytest.raises(ImageError) as info:
        read_file(tmp_path / "gone.jpg")
    assert info.value.kind == ErrorKind.VANISHED and info.value.message


def test_read_file_on_a_folder_is_unreadable(tmp_path):
    with pytest.raises(ImageError) as info:
        read_file(tmp_path)
    assert info.value.kind == ErrorKind.UNREADABLE and info.value.message


def test_read_file_over_the_size_limit(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 1001)
    with pytest.raises(ImageError) as info:
        read_file(path, max_bytes=1000)
    assert info.value.kind == ErrorKind.TOO_LARGE and info.value.message
    assert len(read_file(path, max_bytes=1001)) == 1001


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_read_file_on_a_fifo_fails_without_hanging(tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    outcome: list = []

    def attempt():
        try:
            outcome.append(read_file(fifo))
        except ImageError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # release the blocked open before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("read_file blocked on a FIFO")
    assert isinstance(outcome[0], ImageError)
    assert outcome[0].kind == ErrorKind.UNREADABLE


@needs_non_root
def test_read_file_without_permission_is_unreadable(tmp_path):
    path = write_photo(tmp_path / "locked.jpg")
    path.chmod(0)
    try:
        with pytest.raises(ImageError) as info:
            read_file(path)
    finally:
        path.chmod(0o644)
    assert info.value.kind == ErrorKind.UNREADABLE and info.value.message


# --- decoding: sizes ----------------------------------------------------------------------


def test_jpeg_decodes_at_draft_scale_but_reports_the_original_size():
    data = encode(synthetic_photo((4000, 3000)), "JPEG", quality=80)
    pixels, width, height, fmt = decode(data, min_side=384)
    assert (width, height, fmt) == (4000, 3000, "JPEG")
    assert pixels.mode == "RGB"
    assert 384 <= min(pixels.size) < 3000
    assert pixels.width * 3 == pixels.height * 4  # aspect kept
    full, width, height, _ = decode(data)
    assert full.size == (width, height) == (4000, 3000)


def test_other_formats_are_reduced_but_not_below_min_side():
    data = encode(synthetic_photo((1000, 800)), "PNG")
    pixels, width, height, fmt = decode(data, min_side=160)
    assert (width, height, fmt) == (1000, 800, "PNG")
    assert 160 <= min(pixels.size) < 800


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_one_pixel_image(fmt):
    pixels, width, height, got = decode(encode(Image.new("RGB", (1, 1), RED), fmt), min_side=384)
    assert (width, height, got) == (1, 1, fmt)
    assert pixels.size == (1, 1) and pixels.mode == "RGB"
    assert close_to(pixels.getpixel((0, 0)), RED, 4)


@pytest.mark.parametrize("make", [png_claiming, jpeg_claiming], ids=["png", "jpeg"])
def test_huge_header_is_refused_before_decoding(make, monkeypatch):
    data = make(20000, 20000)

    def no_pixels(self):
        raise AssertionError("pixels must not be decoded for a too-large header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)
    started = time.perf_counter()
    assert decode_kind(data) == ErrorKind.TOO_LARGE
    assert time.perf_counter() - started < 1.0


def test_pixel_limit_is_inclusive():
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    assert decode(data, max_pixels=10_000)[1:3] == (100, 100)
    assert decode_kind(data, max_pixels=9_999) == ErrorKind.TOO_LARGE


# --- decoding: bad content ----------------------------------------------------------------


def test_empty_and_text_are_not_images():
    assert decode_kind(b"") == ErrorKind.NOT_AN_IMAGE
    assert decode_kind(b"Just some text in a file called photo.jpg\n") == ErrorKind.NOT_AN_IMAGE


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_files_are_decode_errors(fmt):
    full = encode(synthetic_photo((64, 48)), fmt)
    assert decode(full)[3] == fmt
    assert decode_kind(full[: len(full) // 2]) == ErrorKind.DECODE_ERROR
    if fmt != "WEBP":  # RIFF....WEBP needs 12 bytes to be recognised at all
        assert decode_kind(full[:10]) == ErrorKind.DECODE_ERROR


def test_formats_outside_the_allow_list_are_not_opened():
    # Pillow could read these, but the allow-list keeps its riskier plugins away.
    assert decode_kind(encode(Image.new("RGB", (8, 8), RED), "PCX")) == ErrorKind.NOT_AN_IMAGE
    assert decode_kind(encode(Image.new("RGB", (8, 8), RED), "TGA")) == ErrorKind.NOT_AN_IMAGE
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert decode_kind(eps) == ErrorKind.NOT_AN_IMAGE


def test_a_png_named_jpg_decodes_as_png(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(encode(synthetic_photo((30, 20)), "PNG"))
    decoded = load_image(path)
    assert decoded.format == "PNG"
    assert (decoded.width, decoded.height) == (30, 20)
    assert decoded.content_hash == content_hash(path.read_bytes())


# --- decoding: orientation ----------------------------------------------------------------


def test_exif_orientation_6_rotates_the_pixels_clockwise():
    image = Image.new("RGB", (200, 100), BLUE)
    image.paste(RED, (0, 0, 40, 20))  # top-left corner as stored
    exif = image.getexif()
    exif[0x0112] = 6
    pixels, width, height, _ = decode(encode(image, "JPEG", exif=exif, quality=95))
    assert (width, height) == (100, 200)
    assert pixels.size == (100, 200)
    # Turned a quarter clockwise, the stored top-left corner is now top-right.
    assert close_to(pixels.getpixel((90, 10)), RED, 8)
    assert close_to(pixels.getpixel((5, 5)), BLUE, 8)
    assert close_to(pixels.getpixel((90, 190)), BLUE, 8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillows_exif_transpose(orientation):
    image = synthetic_photo((40, 24), seed=orientation)
    exif = image.getexif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    pixels, width, height, _ = decode(data)
    assert (width, height) == expected.size
    assert np.array_equal(np.asarray(pixels), np.asarray(expected))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00garbage!",
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff",
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12",
    ],
    ids=["bad-header", "cut-ifd", "cut-entry"],
)
def test_corrupt_exif_is_ignored(exif):
    image = Image.new("RGB", (20, 10), RED)
    pixels, width, height, _ = decode(encode(image, "JPEG", exif=exif))
    assert (width, height) == pixels.size == (20, 10)


@pytest.mark.parametrize("value", [0, 9, 99, 65535])
def test_bogus_orientation_values_are_ignored(value):
    image = Image.new("RGB", (20, 10), RED)
    exif = image.getexif()
    exif[0x0112] = value
    pixels, width, height, _ = decode(encode(image, "JPEG", exif=exif))
    assert (width, height) == pixels.size == (20, 10)


def test_exif_that_cannot_be_parsed_at_all_is_not_fatal(monkeypatch):
    def broken(self):
        raise SyntaxError("unreadable EXIF")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    pixels, width, height, _ = decode(encode(Image.new("RGB", (20, 10), RED), "JPEG"))
    assert (width, height) == pixels.size == (20, 10)


# --- decoding: every mode to RGB ----------------------------------------------------------


def _rgba() -> bytes:
    im = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    im.putpixel((1, 0), (255, 0, 0, 255))
    im.putpixel((2, 0), (0, 0, 0, 128))
    return encode(im, "PNG")


def _la() -> bytes:
    im = Image.new("LA", (3, 1), (0, 0))
    im.putpixel((1, 0), (50, 255))
    im.putpixel((2, 0), (0, 128))
    return encode(im, "PNG")


def _palette_transparency(fmt: str) -> bytes:
    im = Image.new("P", (3, 1), 0)
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 - 3) * 3)
    im.putpixel((1, 0), 1)
    im.putpixel((2, 0), 2)
    return encode(im, fmt, transparency=0)


def _rgb_colour_key() -> bytes:
    im = Image.new("RGB", (3, 1), (1, 2, 3))
    im.putpixel((1, 0), RED)
    im.putpixel((2, 0), BLUE)
    return encode(im, "PNG", transparency=(1, 2, 3))


def _one_bit() -> bytes:
    im = Image.new("1", (3, 1), 0)
    im.putpixel((1, 0), 1)
    return encode(im, "PNG")


def _grey() -> bytes:
    return encode(Image.fromarray(np.array([[77, 200, 0]], dtype=np.uint8), "L"), "PNG")


def _cmyk_jpeg() -> bytes:
    im = Image.new("CMYK", (24, 8), (0, 0, 0, 0))  # white
    im.paste((0, 255, 255, 0), (8, 0, 16, 8))  # red
    im.paste((255, 255, 0, 0), (16, 0, 24, 8))  # blue
    return encode(im, "JPEG", quality=95)


def _sixteen_bit(fmt: str) -> bytes:
    im = Image.fromarray(np.array([[32768, 65535, 0]], dtype=np.uint16))
    assert im.mode == "I;16"
    return encode(im, fmt)


def _float_tiff(values) -> bytes:
    return encode(Image.fromarray(np.array([values], dtype=np.float32), "F"), "TIFF")


def _gif() -> bytes:
    im = Image.new("P", (3, 1), 0)
    im.putpalette([10, 20, 30, 255, 0, 0, 0, 0, 255] + [0] * (256 - 3) * 3)
    im.putpixel((1, 0), 1)
    im.putpixel((2, 0), 2)
    return encode(im, "GIF")


MODES = {
    # name: (encoded file, expected RGB of pixels x=0, 1, 2)
    "RGBA": (_rgba, [WHITE, RED, (127, 127, 127)]),
    "LA": (_la, [WHITE, (50, 50, 50), (127, 127, 127)]),
    "P+transparency PNG": (lambda: _palette_transparency("PNG"), [WHITE, RED, BLUE]),
    "P+transparency GIF": (lambda: _palette_transparency("GIF"), [WHITE, RED, BLUE]),
    "RGB+colour key PNG": (_rgb_colour_key, [WHITE, RED, BLUE]),
    "1": (_one_bit, [(0, 0, 0), WHITE, (0, 0, 0)]),
    "L": (_grey, [(77, 77, 77), (200, 200, 200), (0, 0, 0)]),
    "I;16 PNG": (lambda: _sixteen_bit("PNG"), [(128, 128, 128), WHITE, (0, 0, 0)]),
    "I;16 TIFF": (lambda: _sixteen_bit("TIFF"), [(128, 128, 128), WHITE, (0, 0, 0)]),
    "F 0..1 TIFF": (lambda: _float_tiff([0.5, 1.0, 0.0]), [(128, 128, 128), WHITE, (0,) * 3]),
    "F 0..255 TIFF": (
        lambda: _float_tiff([100.0, 255.0, 0.0]),
        [(100, 100, 100), WHITE, (0, 0, 0)],
    ),
    "P GIF": (_gif, [(10, 20, 30), RED, BLUE]),
}


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_becomes_rgb_with_alpha_over_white(name):
    make, expected = MODES[name]
    pixels, width, height, _ = decode(make())
    assert pixels.mode == "RGB"
    assert pixels.size == (width, height) == (3, 1)
    got = [pixels.getpixel((x, 0)) for x in range(3)]
    assert all(close_to(g, e, 2) for g, e in zip(got, expected, strict=True)), got


def test_cmyk_jpeg_becomes_rgb():
    pixels, width, height, fmt = decode(_cmyk_jpeg())
    assert (pixels.mode, width, height, fmt) == ("RGB", 24, 8, "JPEG")
    assert close_to(pixels.getpixel((3, 4)), WHITE, 12)
    assert close_to(pixels.getpixel((12, 4)), RED, 12)
    assert close_to(pixels.getpixel((20, 4)), BLUE, 12)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_decodes_its_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    pixels, width, height, got = decode(data)
    assert (width, height, got) == (16, 16, fmt)
    assert close_to(pixels.getpixel((8, 8)), RED, 4)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode(fmt, tmp_path):
    image = synthetic_photo((64, 48), seed=3)
    path = tmp_path / f"photo.{fmt.lower()}"
    image.save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    decoded = load_image(path)
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == decoded.image.size == (64, 48)
    assert decoded.image.mode == "RGB"
    if fmt in ("PNG", "WEBP", "BMP", "TIFF"):  # lossless: the very pixels
        assert np.array_equal(np.asarray(decoded.image), np.asarray(image))


# --- thumbnails, hashes, sniffing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1000, 500), (256, 128)),
        ((300, 1200), (64, 256)),
        ((100, 50), (100, 50)),
        ((2000, 3), (256, 1)),
    ],
)
def test_thumbnail_is_a_jpeg_within_256_keeping_aspect(size, expected):
    data = make_thumbnail(synthetic_photo(size))
    assert data[:3] == b"\xff\xd8\xff"
    thumb = Image.open(io.BytesIO(data))
    assert thumb.format == "JPEG"
    assert thumb.size == expected
    assert max(thumb.size) <= images.THUMBNAIL_SIZE


def test_content_hash_identifies_bytes():
    data = encode(synthetic_photo((32, 32)), "PNG")
    digest = content_hash(data)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert content_hash(bytes(data)) == digest
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    assert content_hash(bytes(changed)) != digest
    # The library stores these: the algorithm must not change silently.
    assert digest == hashlib.blake2b(data, digest_size=32).hexdigest()
    assert content_hash(b"") != content_hash(b"\x00")


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"GIF89a", "GIF"),
        (b"GIF87a", "GIF"),
        (b"BM\x00\x00", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.7", None),
        (b"", None),
    ],
)
def test_sniff_format(head, fmt):
    assert sniff_format(head) == fmt


def test_load_image_hashes_the_bytes_it_decoded(tmp_path):
    path = write_photo(tmp_path / "p.jpg", (80, 60), seed=5)
    decoded = load_image(path, min_side=20)
    assert decoded.content_hash == content_hash(Path(path).read_bytes())
    assert (decoded.width, decoded.height, decoded.format) == (80, 60, "JPEG")
    with pytest.raises(ImageError) as info:
        load_image(path, max_bytes=10)
    assert info.value.kind == ErrorKind.TOO_LARGE
