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


def test_only_plain_jpegs_go_to_the_gpu():
    datas = [jpeg(1), png(2), jpeg(3, orientation=6), jpeg(4, orientation=1), b"\xff\xd8\xffcut"]
    assert gpu_decode.gpu_candidates(datas) == [0, 3]


def test_batch_decode_matches_pillow_and_sends_the_rest_to_the_cpu():
    """torchvision's CPU decoder behind the same call: same pixels as Pillow (±libjpeg)."""
    datas = [jpeg(1), png(2), jpeg(3, orientation=8), jpeg(4)]
    out = gpu_decode.decode_batch(datas, device="cpu")
    assert [o is None for o in out] == [False, True, True, False]
    for i in (0, 3):
        pixels = np.asarray(Image.open(io.BytesIO(datas[i])).convert("RGB"))
        got = out[i].permute(1, 2, 0).numpy()
        assert got.shape == pixels.shape
        assert np.abs(got.astype(int) - pixels.astype(int)).max() <= 2


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


def test_a_cmyk_jpeg_goes_back_to_the_cpu():
    """torchvision refuses CMYK JPEGs as RGB on some builds; either way nothing breaks."""
    datas = [jpeg(1, mode="CMYK"), jpeg(2)]
    out = gpu_decode.decode_batch(datas, device="cpu")
    assert out[1] is not None
    assert out[0] is None or tuple(out[0].shape[:1]) == (3,)


def test_nothing_to_decode_makes_no_call():
    def never(tensors, device):
        pytest.fail("the decoder was called without a JPEG")

    assert gpu_decode.decode_batch([png(1)], device="cpu", decoder=never) == [None]
