"""A generator of hostile, broken and odd files, for scanning end to end.

Every *kind* writes one or a few files (or folders, links, FIFOs, sockets) into its own folder
and says how each candidate must end: a score, a given error kind, or `ANY` (a score or an
error with a reason, when either is a fair answer). Some kinds also act *during* the scan, just
before the scan reads a given file (replace it, grow it, delete it, remove the whole folder):
`Built.before_read` maps a path to that action, and the test installs it around
`nsfw_desk.core.scan.read_file`. `Built.after_first` is what a second scan must find once the
actions are over (a file caught mid-upload must not stay an error forever).

Everything is generated here: no file of this corpus is committed, and nothing is downloaded.
`build_all` writes every kind side by side (one folder each) for one scan of the whole corpus.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from support import permissions_enforced

from nsfw_desk.core.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ErrorKind
from nsfw_desk.synthetic import synthetic_photo

SCORE = "score"
ANY = "any"  # a score, or an error with a reason: both are fair answers for this file
POSIX = sys.platform != "win32"

# Filled by the tests that scan the corpus, printed at the end of the run (see conftest.py).
FIGURES: dict[str, str] = {}


@dataclass
class Built:
    """What one kind wrote, and what the scan must make of it."""

    expected: dict[Path, str]
    before_read: dict[Path, Callable[[], None]] = field(default_factory=dict)
    after_first: dict[Path, str] | None = None  # expected on a rescan; None: as `expected`
    finish: list[Callable[[], None]] = field(default_factory=list)  # end background writers
    ignored: int = 0  # files discovery must pass over (not images, hidden)

    def rescan_expected(self) -> dict[Path, str]:
        return dict(self.expected if self.after_first is None else self.after_first)

    def done(self) -> None:
        for step in self.finish:
            step()
        self.finish.clear()


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[Path], Built]
    posix_only: bool = False
    what: str = ""


# --- byte-level helpers --------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save_args)
    return out.getvalue()


_seed = iter(range(5000, 10**9))


def photo(size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A distinct photo-like picture on every call (so no two kinds share content)."""
    return synthetic_photo(size, seed=next(_seed))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_insert(png: bytes, chunks: list[bytes], *, after_ihdr: bool = True) -> bytes:
    """`png` with extra chunks right after IHDR (or right before IEND)."""
    at = 8 + 25 if after_ihdr else png.rindex(b"IEND") - 4
    return png[:at] + b"".join(chunks) + png[at:]


def png_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (1, 1), (200, 20, 20)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_bomb(width: int, height: int) -> bytes:
    """A small file whose pixels (8-bit grey, all zero) fill width × height: a zip bomb."""
    raw_row = b"\x00" * (width + 1)  # filter byte + pixels
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(raw_row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8), (200, 20, 20)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_scan_bomb(repeats: int) -> bytes:
    """A progressive JPEG whose one small AC scan is repeated `repeats` times.

    Each copy is ~50 bytes but makes the decoder walk every block of a 12-MP picture again:
    about 1 ms a copy, so a 1 MB file costs tens of seconds unless refused.
    """
    data = encode(
        Image.new("RGB", (4000, 3000), (120, 130, 140)), "JPEG", progressive=True, quality=90
    )
    sos = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    ends = sos[1:] + [len(data) - 2]
    chunk = data[ends[0] : ends[1]]  # the second scan, with the tables that precede it
    return data[: ends[1]] + chunk * repeats + data[ends[1] :]


def jpeg_with_app1(payload: bytes) -> bytes:
    data = encode(photo(), "JPEG")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def exif_tiff_header(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0) -> bytes:
    """A big-endian TIFF/EXIF block with one IFD of raw (tag, type, count, 4-byte value)."""
    out = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", len(entries))
    for tag, typ, count, value in entries:
        out += struct.pack(">HHI", tag, typ, count) + value.ljust(4, b"\x00")[:4]
    return out + struct.pack(">I", next_ifd)


def lzw_single_pixel(min_code_size: int) -> bytes:
    """GIF LZW data for one pixel of colour 0: clear, 0, end-of-information."""
    width = min_code_size + 1
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    bits = 0
    for i, code in enumerate((clear, 0, end)):
        bits |= code << (i * width)
    nbytes = (3 * width + 7) // 8
    return bits.to_bytes(nbytes, "little")


def gif_with_frames(frames: int) -> bytes:
    """A real first frame, then `frames - 1` one-pixel frames (about 25 bytes each)."""
    first = encode(photo((64, 48)).convert("P", palette=Image.Palette.ADAPTIVE), "GIF")
    assert first.endswith(b"\x3b")
    packed = first[10]
    min_code = max(2, (packed & 0x07) + 1)
    lzw = lzw_single_pixel(min_code)
    frame = (
        b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 1/100 s
        + b"\x2c"
        + struct.pack("<HHHH", 0, 0, 1, 1)
        + b"\x00"
        + bytes([min_code, len(lzw)])
        + lzw
        + b"\x00"
    )
    return first[:-1] + frame * (frames - 1) + b"\x3b"


def tiff_bytes(pages: list[dict], *, loop: bool = False, bad_offsets: bool = False) -> bytes:
    """A little-endian TIFF, one IFD per page, written by hand for odd bit depths.

    Each page: width, height, bps (bits per sample), spp (samples per pixel), photometric,
    sample_format (1 uint, 2 int, 3 float) and the raw pixel bytes (uncompressed, one strip).
    `loop` points the last IFD back at the first; `bad_offsets` points strips past the end.
    """
    out = bytearray(b"II\x2a\x00\x00\x00\x00\x00")
    ifd_offsets = []
    for page in pages:
        while len(out) % 2:
            out += b"\x00"
        pixel_offset = len(out)
        out += page["data"]
        while len(out) % 2:
            out += b"\x00"
        spp = page.get("spp", 1)
        bps_offset = len(out)
        out += struct.pack("<" + "H" * spp, *([page["bps"]] * spp))
        while len(out) % 2:
            out += b"\x00"
        entries = [
            (256, 4, 1, struct.pack("<I", page["width"])),
            (257, 4, 1, struct.pack("<I", page["height"])),
            (
                258,
                3,
                spp,
                struct.pack("<H", page["bps"]) if spp == 1 else struct.pack("<I", bps_offset),
            ),
            (259, 3, 1, struct.pack("<H", 1)),
            (262, 3, 1, struct.pack("<H", page.get("photometric", 1))),
            (273, 4, 1, struct.pack("<I", 10**9 if bad_offsets else pixel_offset)),
            (277, 3, 1, struct.pack("<H", spp)),
            (278, 4, 1, struct.pack("<I", page["height"])),
            (279, 4, 1, struct.pack("<I", len(page["data"]))),
            (339, 3, 1, struct.pack("<H", page.get("sample_format", 1))),
        ]
        ifd_offsets.append(len(out))
        out += struct.pack("<H", len(entries))
        for tag, typ, count, value in entries:
            out += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00")
        out += b"\x00\x00\x00\x00"  # next IFD, patched below
    struct.pack_into("<I", out, 4, ifd_offsets[0])
    for this, following in zip(ifd_offsets, ifd_offsets[1:], strict=False):
        count = struct.unpack_from("<H", out, this)[0]
        struct.pack_into("<I", out, this + 2 + 12 * count, following)
    if loop:
        last = ifd_offsets[-1]
        count = struct.unpack_from("<H", out, last)[0]
        struct.pack_into("<I", out, last + 2 + 12 * count, ifd_offsets[0])
    return bytes(out)


def tiff_page(
    width: int,
    height: int,
    bps: int,
    *,
    spp: int = 1,
    photometric: int = 1,
    sample_format: int = 1,
    seed: int = 0,
) -> dict:
    row_bytes = (width * spp * bps + 7) // 8
    data = (
        np.random.default_rng(seed).integers(0, 256, row_bytes * height, dtype=np.uint8).tobytes()
    )
    if sample_format == 3:  # floats in [0, 1], not NaN soup
        count = len(data) // (bps // 8)
        floats = np.random.default_rng(seed).random(count)
        data = floats.astype("<f4" if bps == 32 else "<f8").tobytes()
    return {
        "width": width,
        "height": height,
        "bps": bps,
        "spp": spp,
        "photometric": photometric,
        "sample_format": sample_format,
        "data": data,
    }


def bmp_header_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4), (10, 200, 10)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


# --- file-system helpers -------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def raw_path(folder: Path, name: bytes) -> Path:
    """A path whose last part is the given bytes (not necessarily UTF-8)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def atomic_replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def single(outcome: str, name: str, data: bytes) -> Callable[[Path], Built]:
    def build(folder: Path) -> Built:
        return Built({write(folder / name, data): outcome})

    return build


# --- the kinds -----------------------------------------------------------------------------


def _valid_every_format(folder: Path) -> Built:
    expected = {}
    for fmt, suffix in [
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("GIF", "gif"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
    ]:
        expected[write(folder / f"photo.{suffix}", encode(photo(), fmt))] = SCORE
    expected[write(folder / "deeper" / "more" / "photo.jpeg", encode(photo(), "JPEG"))] = SCORE
    return Built(expected)


def _truncated(fmt: str, suffix: str) -> Callable[[Path], Built]:
    def build(folder: Path) -> Built:
        data = encode(photo((160, 120)), fmt)
        return Built(
            {write(folder / f"truncated.{suffix}", data[: len(data) // 2]): ErrorKind.DECODE_ERROR}
        )

    return build


def _not_an_image_family(folder: Path) -> Built:
    expected = {
        write(folder / "zero.jpg", b""): ErrorKind.NOT_AN_IMAGE,
        write(
            folder / "text.jpg", b"This is a shopping list, not a photo.\n"
        ): ErrorKind.NOT_AN_IMAGE,
        write(
            folder / "page.png", b"<!doctype html><html><body>hello</body></html>"
        ): ErrorKind.NOT_AN_IMAGE,
        write(
            folder / "doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
        ): ErrorKind.NOT_AN_IMAGE,
        write(
            folder / "vector.png", b'<svg xmlns="http://www.w3.org/2000/svg"/>'
        ): ErrorKind.NOT_AN_IMAGE,
        # Formats Pillow reads, but outside the allow-list (EPS would run Ghostscript).
        write(
            folder / "ps.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
        ): ErrorKind.NOT_AN_IMAGE,
        write(folder / "pcx.png", encode(Image.new("RGB", (8, 8)), "PCX")): ErrorKind.NOT_AN_IMAGE,
        write(folder / "random.webp", np.random.default_rng(7).bytes(5000)): ErrorKind.NOT_AN_IMAGE,
    }
    return Built(expected)


def _headers_too_large(folder: Path) -> Built:
    return Built(
        {
            write(folder / "png_20000.png", png_claiming(20000, 20000)): ErrorKind.TOO_LARGE,
            write(folder / "jpeg_60000.jpg", jpeg_claiming(60000, 60000)): ErrorKind.TOO_LARGE,
            write(folder / "bmp_50000.bmp", bmp_header_claiming(50000, 50000)): ErrorKind.TOO_LARGE,
            write(folder / "png_1x4e9.png", png_claiming(1, 2**31 - 1)): ErrorKind.TOO_LARGE,
        }
    )


def _png_bomb_at_the_limit(folder: Path) -> Built:
    side = int(DEFAULT_MAX_PIXELS**0.5)  # exactly the limit: must decode, within memory
    return Built({write(folder / "bomb.png", png_bomb(side, side)): SCORE})


def _png_huge_text(folder: Path) -> Built:
    base = encode(photo(), "PNG")
    bomb = zlib.compress(b"A" * (64 * 2**20), 9)  # 64 MiB of text in ~64 KiB
    ztxt = png_chunk(b"zTXt", b"Comment\x00\x00" + bomb)
    many = [png_chunk(b"tEXt", b"k\x00" + b"v" * 1000) for _ in range(2000)]
    return Built(
        {
            write(folder / "ztxt.png", png_insert(base, [ztxt])): ANY,
            write(folder / "many_text.png", png_insert(encode(photo(), "PNG"), many)): ANY,
        }
    )


def _png_huge_iccp(folder: Path) -> Built:
    bomb = zlib.compress(b"\x00" * (64 * 2**20), 9)
    iccp = png_chunk(b"iCCP", b"icc\x00\x00" + bomb)
    return Built({write(folder / "iccp.png", png_insert(encode(photo(), "PNG"), [iccp])): ANY})


def _png_chunk_lies(folder: Path) -> Built:
    base = encode(photo(), "PNG")
    bad_crc = bytearray(base)
    idat = bad_crc.index(b"IDAT")
    length = struct.unpack(">I", bad_crc[idat - 4 : idat])[0]
    bad_crc[idat + 4 + length] ^= 0xFF  # the IDAT's CRC
    huge_length = bytearray(base)
    huge_length[idat - 4 : idat] = struct.pack(">I", 0x7FFFFFFF)
    unknown_critical = png_insert(base, [png_chunk(b"ZZZZ", b"x" * 100)])
    return Built(
        {
            write(folder / "bad_crc.png", bytes(bad_crc)): ANY,
            write(folder / "huge_chunk_length.png", bytes(huge_length)): ANY,
            write(folder / "unknown_critical.png", unknown_critical): ANY,
            write(folder / "no_iend.png", base[: base.rindex(b"IEND") - 4]): ANY,
        }
    )


def _png_many_chunks(folder: Path) -> Built:
    chunks = [png_chunk(b"zzZz", b"") for _ in range(100_000)]  # 1.2 MB of empty chunks
    return Built(
        {
            write(
                folder / "many_chunks.png",
                png_insert(encode(photo(), "PNG"), chunks, after_ihdr=False),
            ): ANY
        }
    )


def _png_odd_modes(folder: Path) -> Built:
    rgba16 = np.random.default_rng(3).integers(0, 65535, (40, 50, 4), dtype=np.uint16)
    la = photo().convert("LA")
    return Built(
        {
            write(folder / "interlaced.png", _interlaced_png()): SCORE,
            write(folder / "la.png", encode(la, "PNG")): SCORE,
            write(folder / "rgba16.png", _png_raw(rgba16, 16, 6)): SCORE,
            write(folder / "one_bit.png", encode(photo().convert("1"), "PNG")): SCORE,
            write(
                folder / "apng.png",
                encode(photo(), "PNG", save_all=True, append_images=[photo(), photo()]),
            ): SCORE,
        }
    )


def _png_raw(pixels: np.ndarray, bit_depth: int, colour_type: int) -> bytes:
    """An uncompressed-filter PNG of big-endian `pixels` (height, width, channels)."""
    height, width = pixels.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\x00" + pixels[y].astype(dtype).tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def _interlaced_png() -> bytes:
    """Adam7 interlacing (Pillow cannot write it): a flat colour is the same in every pass."""
    width, height = 33, 17
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ]
    raw = b""
    for x0, y0, dx, dy in passes:
        cols = len(range(x0, width, dx))
        rows = len(range(y0, height, dy))
        if cols and rows:
            raw += (b"\x00" + b"\x30\x80\xc0" * cols) * rows
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def _extreme_aspect(folder: Path) -> Built:
    wide = Image.fromarray(
        np.tile(np.arange(256, dtype=np.uint8), 240)[None, :60000].repeat(1, 0), "L"
    )
    return Built(
        {
            write(folder / "wide.png", encode(wide, "PNG")): SCORE,
            write(
                folder / "tall.png", encode(wide.transpose(Image.Transpose.ROTATE_90), "PNG")
            ): SCORE,
            write(folder / "panorama.jpg", encode(photo((4000, 60)), "JPEG")): SCORE,
        }
    )


def _jpeg_family(folder: Path) -> Built:
    base = encode(photo((320, 240)), "JPEG", quality=90)
    sos = base.index(b"\xff\xda")
    corrupt = bytearray(base)
    rng = np.random.default_rng(11)
    for pos in rng.integers(sos + 20, len(base) - 10, 40):
        corrupt[pos] = int(rng.integers(0, 255))  # never 0xFF, which would add markers
    cmyk = encode(photo().convert("CMYK"), "JPEG")
    mpo = encode(photo(), "MPO", save_all=True, append_images=[photo()])
    return Built(
        {
            write(
                folder / "progressive.jpg", encode(photo((320, 240)), "JPEG", progressive=True)
            ): SCORE,
            write(folder / "corrupt_entropy.jpg", bytes(corrupt)): ANY,
            write(folder / "no_eoi.jpg", base[:-2]): ANY,
            write(folder / "cmyk.jpg", cmyk): SCORE,
            write(folder / "stereo.mpo", mpo): SCORE,
            write(folder / "grey.jpg", encode(photo().convert("L"), "JPEG")): SCORE,
            write(folder / "polyglot.jpg", base + b"PK\x03\x04" + b"\x00" * 26 + b"<html>"): SCORE,
        }
    )


def _jpeg_scan_bomb(folder: Path) -> Built:
    return Built({write(folder / "scans.jpg", jpeg_scan_bomb(20000)): ErrorKind.DECODE_ERROR})


def _exif_bogus_orientation(folder: Path) -> Built:
    expected = {}
    for value in (0, 9, 255, 65535):
        image = photo((80, 40))
        exif = image.getexif()
        exif[0x0112] = value
        expected[write(folder / f"orientation_{value}.jpg", encode(image, "JPEG", exif=exif))] = (
            SCORE
        )
    # Orientation stored as text, and as a count of 1000 shorts pointing past the end.
    text = exif_tiff_header([(0x0112, 2, 4, b"six\x00")])
    past_end = exif_tiff_header([(0x0112, 3, 1000, struct.pack(">I", 0x7FFFFFF0))])
    expected[write(folder / "orientation_text.jpg", jpeg_with_app1(b"Exif\x00\x00" + text))] = SCORE
    expected[
        write(folder / "orientation_past_end.jpg", jpeg_with_app1(b"Exif\x00\x00" + past_end))
    ] = SCORE
    return Built(expected)


def _exif_corrupt_block(folder: Path) -> Built:
    loop = exif_tiff_header([(0x0112, 3, 1, struct.pack(">H", 6))], next_ifd=8)  # IFD0 → IFD0
    huge_count = b"MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x00" * 20
    garbage = b"Exif\x00\x00" + np.random.default_rng(5).bytes(3000)
    exif_png = png_insert(encode(photo(), "PNG"), [png_chunk(b"eXIf", b"II*\x00\xff\xff")])
    return Built(
        {
            write(folder / "ifd_loop.jpg", jpeg_with_app1(b"Exif\x00\x00" + loop)): SCORE,
            write(folder / "huge_count.jpg", jpeg_with_app1(b"Exif\x00\x00" + huge_count)): SCORE,
            write(folder / "garbage.jpg", jpeg_with_app1(garbage)): SCORE,
            write(folder / "short_app1.jpg", jpeg_with_app1(b"Exif")): SCORE,
            write(folder / "exif_png.png", exif_png): SCORE,
        }
    )


def _gif_10000_frames(folder: Path) -> Built:
    return Built({write(folder / "frames.gif", gif_with_frames(10_000)): SCORE})


def _gif_family(folder: Path) -> Built:
    frames = [photo((64, 48)) for _ in range(3)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80)
    screen = bytearray(encode(photo((16, 16)), "GIF"))
    struct.pack_into("<HH", screen, 6, 65535, 65535)  # logical screen of 4.3 gigapixels
    header_only = encode(photo((16, 16)), "GIF")[: 13 + 3 * 256] + b"\x3b"
    return Built(
        {
            write(folder / "animated.gif", animated): SCORE,
            write(folder / "huge_screen.gif", bytes(screen)): ErrorKind.TOO_LARGE,
            write(folder / "no_frames.gif", header_only): ANY,
            write(folder / "gif87.gif", b"GIF87a" + encode(photo((20, 20)), "GIF")[6:]): SCORE,
        }
    )


def _tiff_many_pages_odd_depths(folder: Path) -> Built:
    pages = [tiff_page(32, 24, 8, seed=1)]
    odd = [tiff_page(17, 9, bps, seed=bps) for bps in (1, 2, 4, 12, 16, 24)]
    odd.append(tiff_page(8, 8, 32, sample_format=3, seed=32))
    odd.append(tiff_page(8, 8, 64, sample_format=3, seed=64))
    odd.append(tiff_page(8, 8, 16, sample_format=2, seed=99))
    odd.append(tiff_page(9, 5, 4, spp=3, photometric=2, seed=4))
    expected = {write(folder / "pages.tiff", tiff_bytes(pages + odd * 50)): SCORE}
    for page in odd:
        suffix = f"{page['bps']}bit_s{page['sample_format']}_c{page['spp']}"
        expected[write(folder / f"depth_{suffix}.tif", tiff_bytes([page] + odd))] = ANY
    return Built(expected)


def _tiff_structure_lies(folder: Path) -> Built:
    page = tiff_page(16, 16, 8, seed=5)
    return Built(
        {
            write(folder / "ifd_loop.tif", tiff_bytes([page, page], loop=True)): ANY,
            write(
                folder / "strip_past_end.tif", tiff_bytes([page], bad_offsets=True)
            ): ErrorKind.DECODE_ERROR,
            write(
                folder / "float.tif",
                encode(
                    Image.fromarray(
                        np.random.default_rng(1).random((20, 30), dtype=np.float32), "F"
                    ),
                    "TIFF",
                ),
            ): SCORE,
            write(
                folder / "rgb16.tif",
                encode(
                    Image.fromarray(
                        np.random.default_rng(2).integers(0, 65535, (20, 30), dtype=np.uint16)
                    ),
                    "TIFF",
                ),
            ): SCORE,
        }
    )


def _webp_family(folder: Path) -> Built:
    frames = [photo((64, 48)) for _ in range(4)]
    animated = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=90)
    lying = bytearray(encode(photo(), "WEBP"))
    struct.pack_into("<I", lying, 4, 0x7FFFFFF0)  # RIFF size far past the end
    return Built(
        {
            write(folder / "animated.webp", animated): SCORE,
            write(
                folder / "lossless_alpha.webp",
                encode(photo().convert("RGBA"), "WEBP", lossless=True),
            ): SCORE,
            write(folder / "riff_lies.webp", bytes(lying)): ANY,
        }
    )


def _bmp_family(folder: Path) -> Built:
    top_down = bytearray(encode(photo((20, 10)), "BMP"))
    width, height = struct.unpack_from("<ii", top_down, 18)
    struct.pack_into("<i", top_down, 22, -height)
    rle = bytearray(encode(photo((16, 16)).convert("P", palette=Image.Palette.ADAPTIVE), "BMP"))
    struct.pack_into("<I", rle, 30, 1)  # claims RLE8, holds raw rows
    palette = bytearray(encode(photo((16, 16)).convert("P", palette=Image.Palette.ADAPTIVE), "BMP"))
    struct.pack_into("<I", palette, 46, 0x7FFFFFFF)  # colours used: two billion
    return Built(
        {
            write(folder / "top_down.bmp", bytes(top_down)): SCORE,
            write(folder / "one_bit.bmp", encode(photo().convert("1"), "BMP")): SCORE,
            write(folder / "fake_rle.bmp", bytes(rle)): ANY,
            write(folder / "palette_lies.bmp", bytes(palette)): ANY,
        }
    )


def _odd_but_valid(folder: Path) -> Built:
    palette = photo().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    grey16 = (np.asarray(photo().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    rotated = photo((200, 100))
    exif = rotated.getexif()
    exif[0x0112] = 6
    return Built(
        {
            write(folder / "png_named.jpg", encode(photo(), "PNG")): SCORE,
            write(folder / "upload.dat", encode(photo(), "PNG")): SCORE,  # found by content
            write(folder / "no_suffix", encode(photo(), "WEBP")): SCORE,
            write(folder / "gray16.png", encode(Image.fromarray(grey16), "PNG")): SCORE,
            write(folder / "palette_trns.png", encode(palette, "PNG", transparency=0)): SCORE,
            write(folder / "rotated.jpg", encode(rotated, "JPEG", exif=exif)): SCORE,
            write(
                folder / "one_pixel.png", encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")
            ): SCORE,
        }
    )


def _ignored_files(folder: Path) -> Built:
    write(folder / "README.txt", b"notes about this folder")
    write(folder / ".hidden.jpg", encode(photo(), "JPEG"))
    write(folder / ".cache" / "inside.png", encode(photo(), "PNG"))
    write(folder / "notes.md", b"# not a picture")
    return Built({write(folder / "visible.jpg", encode(photo(), "JPEG")): SCORE}, ignored=4)


def _names(folder: Path) -> Built:
    long_name = "long_" + "x" * 245 + ".jpg"
    assert len(long_name.encode()) == 254
    deep = folder.joinpath(*[f"d{i}" for i in range(60)])
    expected = {
        write(folder / "new\nline.jpg", encode(photo(), "JPEG")): SCORE,
        write(folder / "tab\tand\rreturn.png", encode(photo(), "PNG")): SCORE,
        write(folder / "\x1b[31mred\x1b[0m.jpg", encode(photo(), "JPEG")): SCORE,
        # No image suffix (it ends in a space): found by its content.
        write(folder / " leading and trailing .jpg ", encode(photo(), "JPEG")): SCORE,
        write(folder / "caf\u00e9.jpg", encode(photo(), "JPEG")): SCORE,  # NFC
        write(folder / "cafe\u0301.jpg", encode(photo(), "JPEG")): SCORE,  # NFD: another file
        write(folder / "\u202eexe.jpg", encode(photo(), "JPEG")): SCORE,  # right-to-left mark
        write(folder / long_name, encode(photo(), "JPEG")): SCORE,
        write(deep / "deep.jpg", encode(photo(), "JPEG")): SCORE,
        write(folder / "-rf.jpg", encode(photo(), "JPEG")): SCORE,
        write(folder / "UPPER.JPEG", encode(photo(), "JPEG")): SCORE,
    }
    return Built(expected)


def _invalid_utf8_names(folder: Path) -> Built:
    folder.mkdir(parents=True, exist_ok=True)
    bad_folder = raw_path(folder, b"dir_\xc3\x28")
    bad_folder.mkdir()
    expected = {
        write(raw_path(folder, b"bad_\xff\xfe.jpg"), encode(photo(), "JPEG")): SCORE,
        write(raw_path(folder, b"latin1_caf\xe9.png"), encode(photo(), "PNG")): SCORE,
        write(raw_path(bad_folder, b"inner.jpg"), encode(photo(), "JPEG")): SCORE,
        # Two names that a lossy text form would merge: both must stay separate files.
        write(raw_path(folder, b"clash_\xff.jpg"), encode(photo(), "JPEG")): SCORE,
        write(folder / "clash_\\xff.jpg", encode(photo(), "JPEG")): SCORE,
    }
    return Built(expected)


def _links_and_folders(folder: Path) -> Built:
    # Outside the walk: discovery skips hidden folders, so only the link leads here.
    target = write(folder / ".outside" / "target.jpg", encode(photo(), "JPEG"))
    write(folder / "loop" / "inner.jpg", encode(photo(), "JPEG"))
    os.symlink("..", folder / "loop" / "up")
    os.symlink(".", folder / "loop" / "self")
    os.symlink(target, folder / "link_to_outside.jpg")
    os.symlink(folder / "nowhere.jpg", folder / "broken_link.jpg")
    write(folder / "x.jpg" / "inside_a_folder_named_x.jpg.png", encode(photo(), "PNG"))
    (folder / "empty.png").mkdir()
    return Built(
        {
            folder / "loop" / "inner.jpg": SCORE,
            folder / "link_to_outside.jpg": SCORE,
            folder / "broken_link.jpg": ErrorKind.VANISHED,
            folder / "x.jpg" / "inside_a_folder_named_x.jpg.png": SCORE,
        },
        ignored=1,
    )


def _special_files(folder: Path) -> Built:
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "x.png")
    expected = {folder / "x.png": ErrorKind.UNREADABLE}
    for device in ("/dev/zero", "/dev/urandom", "/dev/null"):
        if os.path.exists(device):
            link = folder / (Path(device).name + ".jpg")
            os.symlink(device, link)
            expected[link] = ErrorKind.UNREADABLE
    short = Path(tempfile.mkdtemp(prefix="s", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(short / "s"))
        sock.close()
        os.replace(short / "s", folder / "socket.jpg")
        expected[folder / "socket.jpg"] = ErrorKind.UNREADABLE
    except OSError:  # another file system for /tmp: no socket in this corpus
        pass
    finally:
        for leftover in short.iterdir():
            leftover.unlink()
        short.rmdir()
    return Built(expected)


def _sparse_huge_file(folder: Path) -> Built:
    path = folder / "huge.jpg"
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(DEFAULT_MAX_BYTES + 2**20)  # sparse: no disk space, no time
    return Built({path: ErrorKind.TOO_LARGE})


def _duplicates(folder: Path) -> Built:
    data = encode(photo(), "JPEG")
    first = write(folder / "one.jpg", data)
    write(folder / "two.jpg", data)
    os.link(first, folder / "hard_link.jpg")
    return Built({first: SCORE, folder / "two.jpg": SCORE, folder / "hard_link.jpg": SCORE})


def _vanishes_before_read(folder: Path) -> Built:
    path = write(folder / "vanishing.jpg", encode(photo(), "JPEG"))
    return Built({path: ErrorKind.VANISHED}, {path: lambda: path.unlink()}, after_first={})


def _zero_then_valid(folder: Path) -> Built:
    path = write(folder / "upload.png", b"")
    data = encode(photo(), "PNG")
    return Built({path: SCORE}, {path: lambda: atomic_replace(path, data)})


def _valid_then_zero(folder: Path) -> Built:
    path = write(folder / "emptied.jpg", encode(photo(), "JPEG"))
    return Built({path: ErrorKind.NOT_AN_IMAGE}, {path: lambda: path.write_bytes(b"")})


def _modified_before_read(folder: Path) -> Built:
    path = write(folder / "edited.jpg", encode(photo((50, 50)), "JPEG"))
    data = encode(photo((120, 90)), "JPEG")
    return Built({path: SCORE}, {path: lambda: atomic_replace(path, data)})


def _replaced_by_fifo(folder: Path) -> Built:
    path = write(folder / "becomes_pipe.png", encode(photo(), "PNG"))

    def swap() -> None:
        path.unlink()
        os.mkfifo(path)

    return Built({path: ErrorKind.UNREADABLE}, {path: swap})


def _permission_lost(folder: Path) -> Built:
    path = write(folder / "locked_meanwhile.jpg", encode(photo(), "JPEG"))
    outcome = ErrorKind.UNREADABLE if permissions_enforced() else SCORE
    built = Built({path: outcome}, {path: lambda: path.chmod(0)})
    built.finish.append(lambda: path.chmod(0o644))
    built.after_first = {path: SCORE}
    return built


def _growing(folder: Path) -> Built:
    """A file still being written (an upload): the rest arrives while the scan reads it."""
    data = encode(photo((1200, 900)), "JPEG", quality=95)
    path = write(folder / "uploading.jpg", data[:4096])
    done = threading.Event()

    def keep_writing() -> None:
        with open(path, "ab") as fh:
            for start in range(4096, len(data), 16384):
                fh.write(data[start : start + 16384])
                fh.flush()
                time.sleep(0.002)
        done.set()

    writer = threading.Thread(target=keep_writing, daemon=True)
    built = Built({path: ANY}, {path: writer.start}, after_first={path: SCORE})

    def finish() -> None:
        if writer.ident is None:
            writer.start()
        writer.join(30)
        assert done.is_set(), "the writer did not finish"

    built.finish.append(finish)
    return built


def _locked(folder: Path) -> Built:
    path = write(folder / "locked.jpg", encode(photo(), "JPEG"))
    path.chmod(0)
    built = Built({path: ErrorKind.UNREADABLE if permissions_enforced() else SCORE})
    built.finish.append(lambda: path.chmod(0o644))
    built.after_first = {path: SCORE}  # readable again: not an error remembered for good
    return built


KINDS: list[Kind] = [
    Kind("valid_every_format", _valid_every_format, what="controls: JPEG PNG WebP GIF BMP TIFF"),
    Kind("truncated_jpeg", _truncated("JPEG", "jpg")),
    Kind("truncated_png", _truncated("PNG", "png")),
    Kind("truncated_gif", _truncated("GIF", "gif")),
    Kind("truncated_webp", _truncated("WEBP", "webp")),
    Kind("truncated_tiff", _truncated("TIFF", "tif")),
    Kind("truncated_bmp", _truncated("BMP", "bmp")),
    Kind(
        "not_images",
        _not_an_image_family,
        what="empty, text, HTML, PDF, SVG, EPS, PCX, random bytes under image names",
    ),
    Kind(
        "headers_too_large",
        _headers_too_large,
        what="PNG 20000², JPEG 60000², BMP 50000², PNG 1×2³¹",
    ),
    Kind("png_bomb_at_limit", _png_bomb_at_the_limit, what="10000² grey PNG in ~100 KB"),
    Kind("png_huge_ztxt", _png_huge_text, what="64 MiB zTXt bomb; 2000 tEXt chunks"),
    Kind("png_huge_iccp", _png_huge_iccp, what="64 MiB iCCP bomb"),
    Kind("png_chunk_lies", _png_chunk_lies, what="bad CRC, 2 GB chunk length, no IEND"),
    Kind("png_many_chunks", _png_many_chunks, what="100,000 empty ancillary chunks"),
    Kind("png_odd_modes", _png_odd_modes, what="interlaced, LA, RGBA16, 1-bit, APNG"),
    Kind("extreme_aspect", _extreme_aspect, what="60000×1, 1×60000, 4000×60"),
    Kind(
        "jpeg_family",
        _jpeg_family,
        what="progressive, corrupt entropy data, no EOI, CMYK, MPO, grey, polyglot",
    ),
    Kind("jpeg_scan_bomb", _jpeg_scan_bomb, what="20,000 progressive scans of a 12-MP picture"),
    Kind(
        "exif_bogus_orientation",
        _exif_bogus_orientation,
        what="orientation 0, 9, 255, 65535, as text, pointing past the end",
    ),
    Kind(
        "exif_corrupt_block",
        _exif_corrupt_block,
        what="IFD loop, 65535 entries, garbage, short APP1, PNG eXIf",
    ),
    Kind("gif_10000_frames", _gif_10000_frames),
    Kind("gif_family", _gif_family, what="animated, 65535² screen, no frames, GIF87a"),
    Kind(
        "tiff_many_pages_odd_depths",
        _tiff_many_pages_odd_depths,
        what="501 pages; 1/2/4/12/16/24-bit, float32/64, int16, 4-bit RGB pages",
    ),
    Kind(
        "tiff_structure_lies",
        _tiff_structure_lies,
        what="IFD loop, strips past the end, float, 16-bit",
    ),
    Kind("webp_family", _webp_family, what="animated, lossless with alpha, RIFF size lies"),
    Kind("bmp_family", _bmp_family, what="top-down, 1-bit, fake RLE, 2-billion colour palette"),
    Kind(
        "odd_but_valid",
        _odd_but_valid,
        what="PNG named .jpg, no suffix, 16-bit grey, tRNS palette, EXIF rotation, 1×1",
    ),
    Kind("ignored_files", _ignored_files, what="text files, hidden files and folders"),
    Kind(
        "names",
        _names,
        posix_only=True,
        what="newline, tab, CR, terminal escapes, NFC/NFD twins, RTL mark, 254 bytes, "
        "60 levels deep",
    ),
    Kind(
        "invalid_utf8_names",
        _invalid_utf8_names,
        posix_only=True,
        what="invalid UTF-8 file and folder names; a name clashing with its escaped form",
    ),
    Kind(
        "links_and_folders",
        _links_and_folders,
        posix_only=True,
        what="symlink loops, link outside, broken link, folders named x.jpg and empty.png",
    ),
    Kind(
        "special_files",
        _special_files,
        posix_only=True,
        what="FIFO x.png, /dev/zero, /dev/urandom, /dev/null links, a socket",
    ),
    Kind(
        "sparse_huge_file",
        _sparse_huge_file,
        posix_only=True,
        what="a sparse file past the 512 MiB read limit",
    ),
    Kind("duplicates", _duplicates, posix_only=True, what="copies and a hard link"),
    Kind("locked", _locked, posix_only=True, what="mode 000"),
    Kind("vanishes_before_read", _vanishes_before_read),
    Kind(
        "zero_then_valid", _zero_then_valid, what="zero bytes at discovery, a valid image when read"
    ),
    Kind("valid_then_zero", _valid_then_zero),
    Kind("modified_before_read", _modified_before_read),
    Kind("replaced_by_fifo", _replaced_by_fifo, posix_only=True),
    Kind("permission_lost", _permission_lost, posix_only=True),
    Kind("growing", _growing, what="a JPEG still being written while it is read"),
]


def kinds() -> list[Kind]:
    return [k for k in KINDS if POSIX or not k.posix_only]


def count_kinds(selected: list[Kind] | None = None) -> int:
    """Kinds of bad or odd file: every file-producing case, controls left out."""
    return len([k for k in (selected or kinds()) if k.name != "valid_every_format"])


def build_all(root: Path, selected: list[Kind] | None = None) -> Built:
    """Every kind in its own folder under `root`; one Built for the lot."""
    total = Built({}, after_first={})
    for kind in selected or kinds():
        built = kind.build(root / kind.name)
        total.expected.update(built.expected)
        total.after_first.update(built.rescan_expected())
        total.before_read.update(built.before_read)
        total.finish.extend(built.finish)
        total.ignored += built.ignored
    return total
