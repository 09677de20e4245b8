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
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

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
    size = plain_jpeg_size(data)
    if size is None:
        return None
    width, height = size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        return None
    return JpegHeader(width, height)


# Frames nvJPEG decodes as libjpeg-turbo does: baseline and extended sequential, Huffman-coded.
SEQUENTIAL_FRAMES = frozenset({0xC0, 0xC1})
OTHER_FRAMES = frozenset({0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE})
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


def plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a sequential 8-bit grey or YCbCr JPEG that nothing asks to rotate;
    None for anything else, or anything this walk of the markers does not understand.

    The decode threads ask this of every JPEG on a GPU scan, holding Python's interpreter
    lock while they do; Pillow's reading of the same header (every quantisation table parsed
    in Python) took several times longer. Pillow still decides what the CPU path does: an
    EXIF or XMP orientation other than 1 (Pillow's exif_transpose reads both) sends the file
    there, and so does a header this walk finds odd (more than one EXIF segment, an EXIF it
    cannot read), so the two paths never disagree on how a picture is turned."""
    size: tuple[int, int] | None = None
    exif_seen = False
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD9:  # no segment: out of place here
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        body, pos = pos + 4, pos + 2 + length
        if length < 2 or pos > end:
            return None
        if marker == 0xDA:  # start of scan: the header is over
            return size
        if marker in SEQUENTIAL_FRAMES:
            if length < 8 or size is not None or data[body] != 8 or data[body + 5] not in (1, 3):
                return None  # 12-bit, CMYK/YCCK, two frames
            size = ((data[body + 3] << 8) | data[body + 4], (data[body + 1] << 8) | data[body + 2])
        elif marker in OTHER_FRAMES:
            return None  # progressive, lossless, arithmetic-coded, hierarchical
        elif marker == 0xE1 and data.startswith(EXIF_HEADER, body, pos):
            if exif_seen or _exif_orientation(data, body + len(EXIF_HEADER), pos) != 1:
                return None
            exif_seen = True
        elif (
            marker == 0xE1
            and data.startswith(XMP_HEADER, body, pos)
            and data.find(b"tiff:Orientation", body, pos) >= 0
        ):
            return None
    return None


def _exif_orientation(data: bytes, start: int, end: int) -> int | None:
    """IFD0's orientation in the TIFF structure at data[start:end]: 1 when absent, None when
    the structure cannot be read."""
    if end - start < 8 or data[start : start + 2] not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if data[start] == 0x49 else "big"

    def number(at: int, size: int) -> int:
        return int.from_bytes(data[start + at : start + at + size], order)

    ifd = number(4, 4)
    if ifd < 8 or start + ifd + 2 > end:
        return None
    count = number(ifd, 2)
    if start + ifd + 2 + 12 * count > end:
        return None
    orientation = 1
    for entry in range(start + ifd + 2, start + ifd + 2 + 12 * count, 12):
        if number(entry - start, 2) == EXIF_ORIENTATION:
            if number(entry - start + 2, 2) != 3 or number(entry - start + 4, 4) != 1:
                return None  # not one SHORT: let Pillow make sense of it
            orientation = number(entry - start + 8, 2)
            if orientation != 1:
                return orientation
    return orientation


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
