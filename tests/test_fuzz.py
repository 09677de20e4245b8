"""Fuzzing the decoding entry points with mutated valid JPEG, PNG, GIF, WebP, TIFF and BMP bytes.

Whatever the bytes, `decode` and `load_image` either return upright RGB pixels within the pixel
limit (from which a thumbnail can be made) or raise `ImageError`, the documented per-file
error, with a kind and a message. Nothing else escapes, and no case hangs: each has a 10 s
alarm, and a watchdog ends the run if one ever gets stuck where the alarm cannot reach.

The normal run tries about a thousand cases, the same ones every time (a few seconds);
`--fuzz-long` tries 35,000 new ones (`pytest tests/test_fuzz.py --fuzz-long`, about a minute
and a half on 2 cores).
"""

from __future__ import annotations

import faulthandler
import io
import signal
import struct
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import FIGURES, _interlaced_png, encode, tiff_bytes, tiff_page
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nsfw_desk.core.images import (
    DEFAULT_MAX_PIXELS,
    ErrorKind,
    ImageError,
    decode,
    load_image,
    make_thumbnail,
)
from nsfw_desk.synthetic import synthetic_photo

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM"),
    # Pillow warns, and goes on, when it skips damaged TIFF/EXIF metadata ("Corrupt EXIF
    # data", "Tag data larger than file", "Truncated File Read", ...): mutated files are full
    # of it (all of --fuzz-long's warnings come from there). Anything else fails the test.
    pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
]

CASES = {"decode": (150, 5000), "load_image": (150, 5000)}  # per test: (normal, --fuzz-long)
CASE_LIMIT_S = 10
ERROR_KINDS = ErrorKind.ALL
INTERESTING = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
]
STATS = {"cases": 0, "decoded": 0, "errors": 0, "slowest": 0.0}


def _photo(size=(48, 36), seed=0) -> Image.Image:
    return synthetic_photo(size, seed=seed)


def _seeds() -> dict[str, list[bytes]]:
    exif = _photo().getexif()
    exif[0x0112] = 6
    palette = _photo(seed=1).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [_photo((32, 24), seed=s) for s in range(3)]
    grey16 = Image.fromarray(np.asarray(_photo().convert("L"), dtype=np.uint16) * 257)
    return {
        "JPEG": [
            encode(_photo(), "JPEG", quality=80),
            encode(_photo(seed=2), "JPEG", progressive=True),
            encode(_photo(seed=3), "JPEG", exif=exif),
            encode(_photo(seed=4).convert("L"), "JPEG"),
            encode(_photo(seed=5).convert("CMYK"), "JPEG"),
        ],
        "PNG": [
            encode(_photo(), "PNG"),
            encode(palette, "PNG", transparency=0),
            encode(_photo(seed=6).convert("RGBA"), "PNG"),
            encode(grey16, "PNG"),
            _interlaced_png(),
            encode(_photo(seed=7), "PNG", save_all=True, append_images=frames[:2]),
        ],
        "GIF": [
            encode(_photo(), "GIF"),
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
            encode(palette, "GIF", transparency=0),
        ],
        "WEBP": [
            encode(_photo(), "WEBP"),
            encode(_photo(seed=8).convert("RGBA"), "WEBP", lossless=True),
            encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        ],
        "TIFF": [
            encode(_photo(), "TIFF"),
            encode(_photo(seed=9), "TIFF", compression="tiff_lzw"),
            encode(_photo(seed=10), "TIFF", compression="packbits"),
            encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
            encode(grey16, "TIFF"),
            tiff_bytes([tiff_page(9, 7, 12, seed=1), tiff_page(9, 7, 4, seed=2)]),
        ],
        "BMP": [
            encode(_photo(), "BMP"),
            encode(palette, "BMP"),
            encode(_photo(seed=11).convert("1"), "BMP"),
        ],
    }


SEEDS = _seeds()


def fix_png_crcs(data: bytearray) -> None:
    """Recompute every chunk CRC, so mutations reach the decoder instead of the CRC check."""
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(data):
            return
        struct.pack_into(">I", data, end, zlib.crc32(bytes(data[pos + 4 : end])))
        pos = end + 4


@st.composite
def mutated(draw, formats: list[str]) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(formats))
    data = bytearray(draw(st.sampled_from(SEEDS[fmt])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(
            st.sampled_from(["flip", "byte", "int", "insert", "delete", "duplicate", "truncate"])
        )
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == "int":
            width = draw(st.sampled_from([2, 4]))
            value = draw(st.sampled_from(INTERESTING)) & ((1 << (8 * width)) - 1)
            order = draw(st.sampled_from(["big", "little"]))
            data[pos : pos + width] = value.to_bytes(width, order)
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 256))]
        elif op == "duplicate":
            size = draw(st.integers(1, 512))
            data[pos:pos] = data[pos : pos + size] * draw(st.integers(1, 20))
        elif op == "truncate":
            del data[pos:]
    if fmt == "PNG" and draw(st.booleans()):
        fix_png_crcs(data)
    return fmt, bytes(data)


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    def alarm(signum, frame):
        raise Hang(f"a case took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        STATS["slowest"] = max(STATS["slowest"], time.perf_counter() - started)


@pytest.fixture(autouse=True)
def watchdog():
    """If a case ever hangs inside C code, where the alarm cannot interrupt it, end the run
    with every thread's stack instead of hanging the test suite."""
    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def check_result(result) -> None:
    pixels, width, height, fmt = result
    assert fmt in ("JPEG", "MPO", "PNG", "GIF", "WEBP", "TIFF", "BMP", "DIB"), fmt
    assert pixels.mode == "RGB"
    assert pixels.width >= 1 and pixels.height >= 1
    assert width >= 1 and height >= 1 and width * height <= DEFAULT_MAX_PIXELS
    thumbnail = Image.open(io.BytesIO(make_thumbnail(pixels)))  # what the scan does next
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 256


def check_error(error: ImageError) -> None:
    assert error.kind in ERROR_KINDS, error.kind
    assert isinstance(error.message, str) and error.message.strip()


def examples(name: str, long: bool) -> int:
    return CASES[name][1 if long else 0]


def fuzz_settings(name: str, long: bool):
    return settings(
        max_examples=examples(name, long),
        deadline=None,
        database=None,
        derandomize=not long,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_decode_returns_pixels_or_raises_image_error(fmt, fuzz_long):
    @fuzz_settings("decode", fuzz_long)
    @given(case=mutated([fmt]), min_side=st.sampled_from([0, 160, 384]))
    def run(case, min_side):
        _, data = case
        STATS["cases"] += 1
        with time_limit(CASE_LIMIT_S):
            try:
                result = decode(data, min_side=min_side)
            except ImageError as error:
                STATS["errors"] += 1
                check_error(error)
                return
            STATS["decoded"] += 1
            check_result(result)

    run()
    record(fuzz_long)


def test_load_image_returns_an_image_or_raises_image_error(fuzz_long):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.jpg"

        @fuzz_settings("load_image", fuzz_long)
        @given(case=mutated(sorted(SEEDS)))
        def run(case):
            _, data = case
            path.write_bytes(data)
            STATS["cases"] += 1
            with time_limit(CASE_LIMIT_S):
                try:
                    decoded = load_image(path, min_side=160)
                except ImageError as error:
                    STATS["errors"] += 1
                    check_error(error)
                    return
            STATS["decoded"] += 1
            check_result((decoded.image, decoded.width, decoded.height, decoded.format))
            assert decoded.content_hash == load_image(path).content_hash

        run()
    record(fuzz_long)


def test_the_mutator_reaches_past_the_header():
    """Guards the fuzzing itself: a good share of mutants still decode, others fail deep."""
    import random

    rng = random.Random(0)
    outcomes = {"decoded": 0, "error": 0}
    for fmt, seeds in SEEDS.items():
        for seed in seeds:
            for _ in range(10):
                data = bytearray(seed)
                pos = rng.randrange(len(data) // 2, len(data))
                data[pos] ^= 0x10
                if fmt == "PNG":
                    fix_png_crcs(data)
                try:
                    decode(bytes(data))
                    outcomes["decoded"] += 1
                except ImageError:
                    outcomes["error"] += 1
    assert outcomes["decoded"] > 50 and outcomes["error"] > 5, outcomes


def record(long: bool) -> None:
    mode = "--fuzz-long" if long else "normal run"
    FIGURES[f"fuzz ({mode})"] = (
        f"{STATS['cases']:,} cases: {STATS['decoded']:,} decoded, {STATS['errors']:,} "
        f"ImageError, nothing else; slowest case {STATS['slowest'] * 1000:.0f} ms"
    )
