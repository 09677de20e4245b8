"""JPEG decoding on the GPU in batches (nvJPEG through torchvision), with the CPU as fallback.

On a CUDA machine decoding becomes the bottleneck of a scan long before the model does, so
JPEGs can be decoded on the GPU in batches with `torchvision.io.decode_jpeg(device="cuda")`.
What the GPU path cannot do exactly like the CPU path goes back to it: other formats, JPEGs
with an EXIF orientation (nvJPEG ignores it; `images.decode` applies it), and any JPEG that
torchvision rejects (CMYK, corrupt, unusual sampling). `decode_batch` answers None for those,
and the caller decodes them with `images.decode` as today.

torchvision 0.29 marks its codecs deprecated in favour of TorchCodec; decode_jpeg still works
there. This is a seam, not yet wired into `scan.py`: its routing and fallback are tested on the CPU
(tests/test_gpu_decode.py, with torchvision's CPU decoder behind the same call); it has not
run on a GPU.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
JPEG_MAGIC = b"\xff\xd8\xff"
EXIF_ORIENTATION = 0x0112

Decoder = Callable[[list[Any], Any], list[Any]]


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def needs_orientation(data: bytes) -> bool:
    """True when the JPEG's EXIF asks for a rotation or flip (read from the header only)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
    except Exception:  # unreadable header: let the CPU path say what is wrong
        return True


def gpu_candidates(datas: Sequence[bytes]) -> list[int]:
    """Indices of the files the GPU may decode: JPEGs without an EXIF rotation."""
    return [i for i, data in enumerate(datas) if is_jpeg(data) and not needs_orientation(data)]


def torchvision_decoder(tensors: list[Any], device: Any) -> list[Any]:
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec (not a
        # dependency here); decode_jpeg still works. TorchCodec is the way forward.
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities")
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)


def decode_batch(
    datas: Sequence[bytes],
    device: torch.device | str = "cuda",
    decoder: Decoder = torchvision_decoder,
) -> list[torch.Tensor | None]:
    """RGB uint8 tensors (3, H, W) on `device` for the files the GPU decoded; None for each
    file the CPU path must decode. One batched call first; if it fails, file by file, so one
    bad JPEG sends only itself back to the CPU."""
    import torch

    out: list[torch.Tensor | None] = [None] * len(datas)
    chosen = gpu_candidates(datas)
    if not chosen:
        return out
    tensors = [torch.frombuffer(bytearray(datas[i]), dtype=torch.uint8) for i in chosen]
    try:
        decoded = decoder(tensors, device)
    except Exception as exc:
        log.debug("GPU JPEG batch of %d failed (%s); decoding one by one", len(chosen), exc)
        decoded = []
        for tensor in tensors:
            try:
                decoded.append(decoder([tensor], device)[0])
            except Exception as one:
                log.debug("GPU JPEG decode refused a file (%s); the CPU decodes it", one)
                decoded.append(None)
    for i, image in zip(chosen, decoded, strict=True):
        if image is not None and image.ndim == 3 and image.shape[0] == 3:
            out[i] = image
    return out
