"""JPEG decoding on the GPU in batches (nvJPEG through torchvision), with the CPU as fallback.

On a CUDA machine decoding becomes the bottleneck of a scan long before the model does, so
a scan on CUDA decodes JPEGs on the GPU in batches with `torchvision.io.decode_jpeg(device=
"cuda")` (baseline JPEGs on the GPU's hardware JPEG decoders where it has them: A100, H100).
What the GPU path cannot do exactly like the CPU path stays on the CPU (`images.decode`):
other formats, JPEGs with an EXIF orientation (nvJPEG ignores it), progressive JPEGs (nvJPEG
decodes them one at a time on the host: the decode threads do it faster), CMYK, files that do
not end where a JPEG ends (a truncated file must be reported, not decoded as grey), pictures
over the pixel limit, and any JPEG that torchvision rejects. `gpu_header` makes that choice
from the header, in the decode threads; `decode_batch` answers None for each file the GPU
refused, and the caller decodes those on the CPU.

torchvision 0.29 marks its codecs deprecated in favour of TorchCodec; decode_jpeg still works
there. tests/test_gpu_decode.py holds the routing and fallback on the CPU (torchvision's CPU
decoder behind the same call); `python -m nsfw_desk.bench_gpu` runs it on a GPU.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
JPEG_MAGIC = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
EXIF_ORIENTATION = 0x0112
GPU_MODES = frozenset({"RGB", "L"})  # YCbCr and grey JPEGs; CMYK/YCCK stay on the CPU

Decoder = Callable[[list[Any], Any], list[Any]]


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def gpu_header(data: bytes, max_pixels: int) -> JpegHeader | None:
    """The JPEG's size when the GPU may decode it exactly as the CPU path would; else None
    (the CPU path then decodes it, or reports what is wrong with it). Reads the header only."""
    if not is_jpeg(data) or not data.endswith(JPEG_END):
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
            width, height = image.size
            plain = (
                image.format == "JPEG"
                and image.mode in GPU_MODES
                and not image.info.get("progressive")
                and not image.info.get("progression")
                and image.getexif().get(EXIF_ORIENTATION, 1) in (1, None)
            )
    except Exception:  # unreadable header: let the CPU path say what is wrong
        return None
    if not plain or width <= 0 or height <= 0 or width * height > max_pixels:
        return None
    return JpegHeader(width, height)


@contextlib.contextmanager
def torchvision_codecs() -> Iterator[None]:
    """torchvision 0.29 deprecates its image codecs in favour of TorchCodec (not a dependency
    here); decode_jpeg and encode_jpeg still work. TorchCodec is the way forward."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities")
        yield


def torchvision_decoder(tensors: list[Any], device: Any) -> list[Any]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with torchvision_codecs():
        return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)


def decode_batch(
    datas: Sequence[bytes],
    device: torch.device | str = "cuda",
    decoder: Decoder = torchvision_decoder,
) -> list[torch.Tensor | None]:
    """RGB uint8 tensors (3, H, W) on `device`, or None for each file the CPU must decode.
    One batched call first; if it fails, file by file, so one bad JPEG sends only itself
    back to the CPU."""
    import torch

    if not datas:
        return []
    with warnings.catch_warnings():  # nothing writes to them: no copy into a bytearray
        warnings.filterwarnings("ignore", message="The given buffer is not writable")
        tensors = [torch.frombuffer(data, dtype=torch.uint8) for data in datas]
    try:
        decoded: list[Any] = list(decoder(tensors, device))
    except Exception as exc:
        log.debug("GPU JPEG batch of %d failed (%s); decoding one by one", len(datas), exc)
        decoded = []
        for tensor in tensors:
            try:
                decoded.append(decoder([tensor], device)[0])
            except Exception as one:
                log.debug("GPU JPEG decode refused a file (%s); the CPU decodes it", one)
                decoded.append(None)
    return [
        image if image is not None and image.ndim == 3 and image.shape[0] == 3 else None
        for image in decoded
    ]
