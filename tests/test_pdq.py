"""The numpy PDQ port against the reference C++ (the `pdqhash` bindings, a test dependency)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from nsfw_desk.core import pdq
from nsfw_desk.core.images import decode, to_rgb
from nsfw_desk.synthetic import synthetic_photo

pdqhash = pytest.importorskip("pdqhash")


def reference(pixels: np.ndarray) -> tuple[bytes, int]:
    """The reference hash of H×W×3 uint8 pixels, in the reference's printed (hex) byte order."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(pixels, dtype=np.uint8))
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes(), quality


def shapes_photo(width: int, height: int, seed: int) -> Image.Image:
    """Gradients, shapes, noise and blur: the texture of an ordinary photo, in any size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    fields = np.stack(
        [np.sin(x * rng.uniform(1, 9) + rng.uniform(0, 6)) * (0.5 + y), np.cos(y * 5) * x, x * y],
        -1,
    )
    fields = (fields - fields.min()) / (np.ptp(fields) + 1e-9) * 255
    image = Image.fromarray(fields.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x0, y0, x0 + int(rng.integers(5, width // 2 + 6)), y0 + int(rng.integers(5, 40))]
        draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 8, (height, width, 3)).astype(
        np.int16
    )
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))


# Sizes and aspect ratios: tiny, square, panoramas, portrait, odd sides, a 64×64 (no filter).
SIZES = [(5, 7), (33, 20), (64, 64), (100, 100), (640, 480), (480, 640), (1500, 200), (97, 1203)]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_matches_the_reference_on_generated_photos(width, height):
    for seed in range(4):
        image = shapes_photo(width, height, seed)
        expected = reference(np.asarray(image))
        assert pdq.pdq_hash(image) == expected
        assert pdq.pdq_hash(np.asarray(image)) == expected  # the numpy path agrees too


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_reference_on_the_benchmark_photos(seed):
    image = synthetic_photo((int(300 + 97 * seed), int(200 + 61 * seed)), seed)
    assert pdq.pdq_hash(image) == reference(np.asarray(image))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr"])
def test_every_pillow_mode_hashes_as_the_reference_hashes_its_rgb(mode):
    image = shapes_photo(180, 120, 7).convert(mode)
    rgb = to_rgb(image)
    assert pdq.pdq_hash(rgb) == reference(np.asarray(rgb))


@pytest.mark.parametrize("mode", ["I", "F", "I;16"])
def test_high_depth_modes(mode):
    grey = np.asarray(shapes_photo(160, 100, 3).convert("L"), dtype=np.float32)
    image = Image.fromarray((grey * 200).astype(np.int32 if mode == "I" else np.float32))
    if mode == "I;16":
        image = Image.fromarray((grey * 200).astype(np.uint16))
    rgb = to_rgb(image)
    assert pdq.pdq_hash(rgb) == reference(np.asarray(rgb))


def test_grey_pixels_hash_as_their_rgb():
    grey = shapes_photo(200, 150, 1).convert("L")
    assert pdq.pdq_hash(grey) == reference(np.asarray(grey.convert("RGB")))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_photos_hash_upright(orientation):
    upright = shapes_photo(160, 120, orientation)
    turns = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90}
    stored = upright.transpose(turns.get(orientation, Image.Transpose.ROTATE_270))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, "PNG", exif=exif)
    pixels, *_ = decode(out.getvalue())
    assert pixels.size == upright.size
    assert pdq.pdq_hash(pixels) == reference(np.asarray(upright))


def test_pillow_luminance_equals_the_reference_formula():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    formula = (pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114).astype(
        np.float32
    )
    assert np.array_equal(pdq.luma(Image.fromarray(pixels)), formula)


def test_too_small_images_hash_to_zero_with_no_quality():
    assert pdq.pdq_hash(np.zeros((4, 100, 3), np.uint8)) == (bytes(32), 0)


def test_quality_separates_flat_from_detailed():
    _, flat = pdq.pdq_hash(np.full((200, 200, 3), 120, np.uint8))
    _, detailed = pdq.pdq_hash(shapes_photo(200, 200, 0))
    assert flat == 0 and detailed >= 50


def test_hex_is_the_reference_order_and_round_trips():
    digest, _ = pdq.pdq_hash(shapes_photo(300, 200, 2))
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(shapes_photo(300, 200, 2))))
    # The reference prints bit 255 first: the first hex digit holds bits 255..252.
    assert int(pdq.to_hex(digest)[0], 16) == int("".join(str(b) for b in bits[:4]), 2)
    assert pdq.from_hex(pdq.to_hex(digest)) == digest


@pytest.mark.parametrize(
    ("text", "message"), [("abc", "64 hex digits"), ("g" * 64, "only hex digits")]
)
def test_from_hex_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        pdq.from_hex(text)


def test_distance_counts_differing_bits():
    a = bytes(32)
    assert pdq.distance(a, bytes([0b1011]) + bytes(31)) == 3
    assert pdq.distance(a, b"\xff" * 32) == 256


def test_scan_size_pixels_hash_close_to_the_full_size():
    """The scan hashes a JPEG decoded at a reduced DCT scale (here 1/4: 600×400 of 2400×1600).

    Measured on these photos: 12-20 bits from the full-size hash (0-8 for 1200×900 at 1/2).
    A hash list computed elsewhere from full-size files matches within the default distance.
    """
    distances = []
    for seed in range(4):
        full = shapes_photo(2400, 1600, seed)
        out = io.BytesIO()
        full.save(out, "JPEG", quality=92)
        whole, *_ = decode(out.getvalue())
        reduced, *_ = decode(out.getvalue(), min_side=224)  # the scan's draft decode
        assert reduced.size[0] < whole.size[0]
        distances.append(pdq.distance(pdq.pdq_hash(whole)[0], pdq.pdq_hash(reduced)[0]))
    assert max(distances) <= 24, distances  # inside the matching distance (31)
