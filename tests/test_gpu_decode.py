"""The GPU JPEG decode seam's routing and fallback, on the CPU (no GPU needed or used)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from nsfw_desk.core import gpu_decode
from nsfw_desk.synthetic import synthetic_photo


def jpeg(seed: int, orientation: int | None = None, mode: str = "RGB") -> bytes:
    image = synthetic_photo((64, 48), seed=seed).convert(mode)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[gpu_decode.EXIF_ORIENTATION] = orientation
    image.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    synthetic_photo((64, 48), seed=seed).save(buffer, "PNG")
    return buffer.getvalue()


def progressive(seed: int) -> bytes:
    buffer = io.BytesIO()
    synthetic_photo((64, 48), seed=seed).save(buffer, "JPEG", quality=90, progressive=True)
    return buffer.getvalue()


def test_only_plain_whole_jpegs_go_to_the_gpu():
    """The header decides: EXIF-rotated, progressive, CMYK, cut short, over the pixel limit
    and not-JPEGs stay on the CPU path (which decodes them or says what is wrong)."""
    limit = 10**6
    assert gpu_decode.gpu_header(jpeg(1), limit) == gpu_decode.JpegHeader(64, 48)
    assert gpu_decode.gpu_header(jpeg(4, orientation=1), limit) is not None
    assert gpu_decode.gpu_header(jpeg(5, mode="L"), limit) is not None
    assert gpu_decode.gpu_header(jpeg(3, orientation=6), limit) is None
    assert gpu_decode.gpu_header(progressive(6), limit) is None
    assert gpu_decode.gpu_header(jpeg(7, mode="CMYK"), limit) is None
    assert gpu_decode.gpu_header(jpeg(8)[:-200], limit) is None
    assert gpu_decode.gpu_header(jpeg(9), 64 * 48 - 1) is None
    assert gpu_decode.gpu_header(png(2), limit) is None
    assert gpu_decode.gpu_header(b"\xff\xd8\xffcut\xff\xd9", limit) is None


def test_batch_decode_matches_pillow():
    """torchvision's CPU decoder behind the same call: same pixels as Pillow (±libjpeg)."""
    datas = [jpeg(1), jpeg(4)]
    out = gpu_decode.decode_batch(datas, device="cpu")
    for data, got in zip(datas, out, strict=True):
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert got.permute(1, 2, 0).numpy().shape == pixels.shape
        assert np.abs(got.permute(1, 2, 0).numpy().astype(int) - pixels.astype(int)).max() <= 2


def test_a_rejected_jpeg_falls_back_alone():
    datas = [jpeg(1), jpeg(2), jpeg(3)]
    assert len({len(d) for d in datas}) == 3  # the fake decoder tells them apart by size
    calls = []

    def picky(tensors, device):
        calls.append(len(tensors))
        if any(t.numel() == len(datas[1]) for t in tensors):
            raise RuntimeError("nvjpeg: unsupported sampling")
        return gpu_decode.torchvision_decoder(tensors, device)

    out = gpu_decode.decode_batch(datas, device="cpu", decoder=picky)
    assert calls == [3, 1, 1, 1]  # the batch, then one by one
    assert out[0] is not None and out[1] is None and out[2] is not None


def test_nothing_to_decode_makes_no_call():
    def never(tensors, device):
        pytest.fail("the decoder was called without a JPEG")

    assert gpu_decode.decode_batch([], device="cpu", decoder=never) == []


def pillow_says_plain(data: bytes, max_pixels: int) -> gpu_decode.JpegHeader | None:
    """The same question answered by Pillow's reading of the header (what gpu_header did
    before it walked the markers itself): the reference the walk must agree with."""
    if not gpu_decode.is_jpeg(data) or not data.endswith(gpu_decode.JPEG_END):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
            plain = (
                image.mode in gpu_decode.GPU_MODES
                and not image.info.get("progressive")
                and image.getexif().get(gpu_decode.EXIF_ORIENTATION, 1) in (1, None)
            )
            size = image.size
    except Exception:
        return None
    if not plain or size[0] * size[1] > max_pixels:
        return None
    return gpu_decode.JpegHeader(*size)


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def tiff(order: str, entries: list[tuple[int, int, int, int]]) -> bytes:
    """A TIFF structure with IFD0 holding (tag, type, count, value) entries."""
    o = "little" if order == "II" else "big"
    out = order.encode() + (42).to_bytes(2, o) + (8).to_bytes(4, o) + len(entries).to_bytes(2, o)
    for tag, kind, count, value in entries:
        field = value.to_bytes(2, o) + bytes(2) if kind == 3 else value.to_bytes(4, o)
        out += tag.to_bytes(2, o) + kind.to_bytes(2, o) + count.to_bytes(4, o) + field
    return out + bytes(4)


def exif_segment(order: str, entries: list[tuple[int, int, int, int]]) -> bytes:
    return segment(0xE1, b"Exif\x00\x00" + tiff(order, entries))


def xmp_segment(orientation: int | None) -> bytes:
    tag = f'<rdf:Description tiff:Orientation="{orientation}"/>' if orientation else "<x/>"
    return segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + tag.encode())


def saved(size=(64, 48), mode="RGB", **options) -> bytes:
    buffer = io.BytesIO()
    synthetic_photo(size, seed=size[0]).convert(mode).save(buffer, "JPEG", **options)
    return buffer.getvalue()


ORIENTATION = gpu_decode.EXIF_ORIENTATION
AGREED = {
    "baseline": saved(),
    "grey": saved(mode="L"),
    "odd size": saved((1, 333)),
    "4:4:4": saved(subsampling=0),
    "4:2:2": saved(subsampling=1),
    "optimized Huffman": saved(optimize=True),
    "restart markers": saved(restart_marker_blocks=2),
    "comment": saved(comment=b"made by the tests"),
    "ICC profile": saved(icc_profile=b"\x00" * 300),
    "ICC profile of 3 segments": saved(icc_profile=bytes(range(256)) * 600),
    "Pillow's EXIF, orientation 1": jpeg(1, orientation=1),
    "Pillow's EXIF, orientation 6": jpeg(1, orientation=6),
    "Pillow's EXIF, orientation 8": jpeg(1, orientation=8),
    "Pillow's EXIF, no orientation": jpeg(1),
    "progressive": progressive(2),
    "CMYK": saved(mode="CMYK"),
    "little-endian EXIF, orientation 3": after_soi(
        saved(), exif_segment("II", [(ORIENTATION, 3, 1, 3)])
    ),
    "big-endian EXIF, orientation 3": after_soi(
        saved(), exif_segment("MM", [(ORIENTATION, 3, 1, 3)])
    ),
    "big-endian EXIF, orientation 1 among others": after_soi(
        saved(), exif_segment("MM", [(0x010F, 2, 4, 0), (ORIENTATION, 3, 1, 1), (0x0131, 2, 4, 0)])
    ),
    "XMP orientation 6": after_soi(saved(), xmp_segment(6)),
    "XMP without orientation": after_soi(saved(), xmp_segment(None)),
    "fill bytes before a marker": saved()[:2] + b"\xff\xff" + saved()[2:],
    "cut in the header": saved()[:40] + gpu_decode.JPEG_END,
    "cut in the pixels": saved()[:-100] + gpu_decode.JPEG_END[:1],
}
# Headers the walk declines though Pillow would let them through: the CPU path decodes them
# (exactly as before), so a scan's answer cannot change, only where the work is done.
DECLINED = {
    "two EXIF segments": after_soi(
        saved(), exif_segment("II", []), exif_segment("II", [(ORIENTATION, 3, 1, 1)])
    ),
    "EXIF it cannot read": after_soi(saved(), segment(0xE1, b"Exif\x00\x00II*\x00\xff\xff")),
    "orientation not one SHORT": after_soi(saved(), exif_segment("II", [(ORIENTATION, 4, 1, 1)])),
    "XMP orientation 1": after_soi(saved(), xmp_segment(1)),
}


@pytest.mark.parametrize("name", list(AGREED))
def test_the_header_walk_agrees_with_pillow(name):
    data = AGREED[name]
    for limit in (10**6, 64 * 48 - 1):
        assert gpu_decode.gpu_header(data, limit) == pillow_says_plain(data, limit), name


@pytest.mark.parametrize("name", list(DECLINED))
def test_headers_the_walk_does_not_understand_stay_on_the_cpu(name):
    assert gpu_decode.gpu_header(DECLINED[name], 10**6) is None


def test_the_agreed_cases_cover_both_answers():
    """A reference that said None to everything would make the agreement above hollow."""
    answers = [pillow_says_plain(data, 10**6) is not None for data in AGREED.values()]
    assert 8 < sum(answers) < len(answers) - 5
