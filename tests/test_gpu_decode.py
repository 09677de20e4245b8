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
