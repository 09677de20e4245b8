"""A batch of JPEGs made ready for the models on the GPU: decode, PDQ, model input, thumbnail.

On CUDA the decode threads cannot decode, hash and resize 1,500 1024-px JPEGs a second, so a
scan on CUDA has them only read and hash each file and check its header (core/gpu_decode.py
`gpu_header`); the JPEGs the GPU may decode come here in batches, and everything a scan needs
from the pixels is computed where they were decoded:

- the model input: the model's own timm eval transform (an aspect-keeping Resize, CenterCrop,
  ToTensor, Normalize), its torchvision steps run on uint8 tensors, batched per picture size;
- the PDQ hash: core/pdq.py's arithmetic batched on the device (the reference's tent filter
  as two matrix products, rows in float32 and columns in float64, the DCT, the median and
  the quality); only the 256 bits and the quality come back;
- the thumbnail: the model's resized view scaled to THUMBNAIL_SIZE and encoded as a JPEG on
  the device (Pillow's encoder holds the GIL, which the decode threads need), the JPEGs
  brought back in one pinned copy.

Only the model input stays on the device. The CPU path decodes a JPEG at a reduced DCT scale,
and nvJPEG upsamples chroma differently from libjpeg-turbo, so scores and PDQ hashes agree
closely with the CPU path's but not bit for bit (tests/test_gpu_prepare.py says how closely;
`python -m nsfw_desk.bench_gpu` measures it on a GPU).

The same code runs on the CPU device (torchvision's CPU decoder and ops), which is how the
tests hold it against the CPU path without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_desk.core import gpu_decode, pdq
from nsfw_desk.core.images import THUMBNAIL_QUALITY, THUMBNAIL_SIZE
from nsfw_desk.core.stage_clock import StageClock

if TYPE_CHECKING:
    import torch

    from nsfw_desk.core.detector import Detector

log = logging.getLogger(__name__)
# Pixels prepared at once: float intermediates of ~12 bytes a pixel stay near 400 MB
# (40 files of 1024×768 at a time, 12-MP photos two).
GROUP_PIXELS = 32_000_000


@dataclass
class DevicePixels:
    """One JPEG prepared on the device: what a scan stores and runs."""

    tensors: dict[int, torch.Tensor]  # detector index -> model input (on the device)
    thumbnail: bytes
    pdq: bytes
    pdq_quality: int


class DeviceTransform:
    """A timm eval transform of the usual shape, run on batches of uint8 tensors."""

    def __init__(self, resize: Any, crop: Any, normalize: Any, key: object) -> None:
        self.resize, self.crop, self.normalize = resize, crop, normalize
        self.key = key  # the detector's preprocess_key: equal keys share one input

    @classmethod
    def of(cls, detector: Detector) -> DeviceTransform | None:
        """The detector's transform when it is Resize(shorter side), CenterCrop, ToTensor,
        Normalize (timm's eval transform); None for anything else."""
        from torchvision import transforms as T

        steps = getattr(getattr(detector, "transform", None), "transforms", None)
        if not steps or len(steps) != 4:
            return None
        resize, crop, to_tensor, normalize = steps
        shorter_side = isinstance(resize, T.Resize) and (
            isinstance(resize.size, int) or len(resize.size) == 1
        )
        if not (
            shorter_side
            and resize.max_size is None
            and isinstance(crop, T.CenterCrop)
            and type(to_tensor).__name__ in ("ToTensor", "MaybeToTensor")
            and isinstance(normalize, T.Normalize)
        ):
            return None
        return cls(resize, crop, normalize, getattr(detector, "preprocess_key", id(detector)))

    def view(self, images: torch.Tensor) -> torch.Tensor:
        """The resized pictures (B, 3, h, w) uint8: the shorter side at the model's size."""
        return self.resize(images)

    def model_input(self, view: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.crop(view).float().div_(255.0))


def supported(detectors: Sequence[Detector]) -> str | None:
    """None when every detector's input can be made on the device; else why not."""
    for detector in detectors:
        if DeviceTransform.of(detector) is None:
            return f"{detector.model_id}'s preprocessing is not a plain timm eval transform"
    return None


def _limit_aspect(images: torch.Tensor) -> torch.Tensor:
    """runtime.limit_aspect on (..., H, W) tensors: the centre of too elongated pictures."""
    from nsfw_desk.core.runtime import aspect_box

    box = aspect_box(images.shape[-1], images.shape[-2])
    if box is None:
        return images
    left, top, right, bottom = box
    return images[..., top:bottom, left:right]


class GpuPreparer:
    """Prepares batches of JPEG bytes on `device` for `detectors` (primary first)."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        device: torch.device | str,
    ) -> None:
        import torch

        self.device = torch.device(device)
        self.transforms: list[DeviceTransform] = []
        for detector in detectors:
            transform = DeviceTransform.of(detector)
            if transform is None:
                raise ValueError(supported([detector]))
            self.transforms.append(transform)
        self._streams = threading.local()  # each preparing thread on a CUDA stream of its own
        self._tents: dict[tuple, torch.Tensor] = {}
        self._dct_matrix: torch.Tensor | None = None

    def prepare(
        self, datas: Sequence[bytes], clock: StageClock | None = None
    ) -> list[DevicePixels | None]:
        """Each file's prepared pixels, or None where the CPU path must decode it."""
        import torch

        clock = clock or StageClock()
        with torch.inference_mode(), self._on_stream():
            with clock.timing("decode"):
                images = gpu_decode.decode_batch(datas, self.device)
                self._sync()
            out: list[DevicePixels | None] = [None] * len(datas)
            for positions, batch in _same_size_groups(images, GROUP_PIXELS):
                for n, prepared in zip(positions, self._prepare_group(batch, clock), strict=True):
                    out[n] = prepared
        return out

    def _prepare_group(self, batch: torch.Tensor, clock: StageClock) -> list[DevicePixels]:
        """Pictures of one size, (B, 3, H, W) uint8 on the device."""
        with clock.timing("pdq"):
            hashes = self._pdq_hashes(batch)
        with clock.timing("transform"):
            limited = _limit_aspect(batch)
            inputs: dict[int, torch.Tensor] = {}
            by_key: dict[object, torch.Tensor] = {}
            thumbnail_view = None
            for i, transform in enumerate(self.transforms):
                if transform.key not in by_key:
                    view = transform.view(limited)
                    by_key[transform.key] = transform.model_input(view)
                    thumbnail_view = view if thumbnail_view is None else thumbnail_view
                inputs[i] = by_key[transform.key]
            assert thumbnail_view is not None, "at least one detector"
            self._sync()  # the model input done: the stages' times apart
        with clock.timing("thumbnail"):
            thumbnails = self._thumbnails(thumbnail_view)
        return [
            DevicePixels({i: inputs[i][n] for i in inputs}, thumbnails[n], *hashes[n])
            for n in range(batch.shape[0])
        ]

    def _pdq_hashes(self, batch: torch.Tensor) -> list[tuple[bytes, int]]:
        """core/pdq's hash and quality of each picture, computed on the device: the tent
        filter as two matrix products (rows in float32, columns in float64, as
        `pdq.downsample_64`), the DCT, median and quality batched; only the bits come back."""
        import torch

        _, _, height, width = batch.shape
        if min(height, width) < pdq.MIN_HASHABLE_SIDE:  # the reference's all-zero hash
            return [(bytes(pdq.HASH_BYTES), 0)] * batch.shape[0]
        red, green, blue = (batch[:, c].to(torch.float32) for c in range(3))
        lum = red * pdq._LUMA[0] + green * pdq._LUMA[1] + blue * pdq._LUMA[2]
        down = self._tent(height, torch.float32) @ lum
        samples = down.to(torch.float64) @ self._tent(width, torch.float64).T  # (B, 64, 64)
        # pdq.quality_of: float32 differences, truncated; sums of integers, exact in float32.
        grid = samples.to(torch.float32)
        rows = torch.trunc((grid[:, :-1, :] - grid[:, 1:, :]) * 100.0 / 255.0)
        cols = torch.trunc((grid[:, :, :-1] - grid[:, :, 1:]) * 100.0 / 255.0)
        totals = rows.abs().sum((1, 2)) + cols.abs().sum((1, 2))
        dct = self._dct()
        coefficients = (dct @ samples @ dct.T).reshape(-1, 256)
        median = coefficients.kthvalue(128, dim=1).values  # the 128th smallest, as pdq
        bits = (coefficients > median[:, None]).to(torch.float32)
        answer = _to_host(torch.cat([bits, totals[:, None]], dim=1)).numpy()  # one copy back
        packed = np.packbits(answer[:, 255::-1] > 0.5, axis=1)  # bit k = coefficient k
        return [
            (row.tobytes(), min(int(total) // 90, 100))
            for row, total in zip(packed, answer[:, 256], strict=True)
        ]

    def _dct(self) -> torch.Tensor:
        import torch

        if self._dct_matrix is None:
            self._dct_matrix = torch.from_numpy(pdq._dct_matrix()).to(self.device)
        return self._dct_matrix

    def _thumbnails(self, view: torch.Tensor) -> list[bytes]:
        """images.make_thumbnail of each view (B, 3, h, w): scaled and encoded where it is
        (nvJPEG on CUDA), the JPEGs brought back in one copy."""
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        _, _, height, width = view.shape
        scale = THUMBNAIL_SIZE / max(height, width)
        if scale < 1:
            size = [max(1, round(height * scale)), max(1, round(width * scale))]
            view = TF.resize(view, size, InterpolationMode.BICUBIC, antialias=True)
        view = view.contiguous()
        self._sync()  # torchvision's encoder works on a stream of its own, without waiting
        encoded = _jpegs(list(view))
        if view.device.type == "cuda":
            # torchvision writes the JPEGs out on the legacy default stream: wait for it there
            torch.cuda.current_stream().wait_stream(torch.cuda.default_stream(view.device))
        ends = np.cumsum([data.numel() for data in encoded])
        joined = _to_host(torch.cat(encoded)).numpy().tobytes()
        return [joined[end - len(data) : end] for end, data in zip(ends, encoded, strict=True)]

    def _tent(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        import torch

        key = (length, dtype)
        if key not in self._tents:
            dense = torch.from_numpy(pdq.tent_matrix(length))
            self._tents[key] = dense.to(self.device, dtype)
        return self._tents[key]

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[None]:
        """The calling thread's own CUDA stream, so batches are prepared while the model runs
        on the default stream (and two preparing threads overlap); every result is complete
        when `prepare` returns."""
        import torch

        if self.device.type != "cuda":
            yield
            return
        if getattr(self._streams, "stream", None) is None:
            self._streams.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(self._streams.stream):
            yield

    def _sync(self) -> None:
        """Wait for the device (for honest stage times, and before reading host buffers)."""
        stream = getattr(self._streams, "stream", None)
        if stream is not None:
            stream.synchronize()


def _same_size_groups(
    images: list[torch.Tensor | None], max_pixels: int
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(positions, stacked batch) per picture size, at most `max_pixels` (or one picture)
    at a time, in first-seen order; None skipped."""
    import torch

    by_size: dict[tuple[int, ...], list[int]] = {}
    for n, image in enumerate(images):
        if image is not None:
            by_size.setdefault(tuple(image.shape), []).append(n)
    for shape, positions in by_size.items():
        step = max(1, max_pixels // (shape[1] * shape[2]))
        for at in range(0, len(positions), step):
            chunk = positions[at : at + step]
            yield chunk, torch.stack([images[n] for n in chunk])  # type: ignore[misc]


def _jpegs(pictures: list[torch.Tensor]) -> list[torch.Tensor]:
    """torchvision's encode_jpeg at the thumbnails' quality, where the pictures are."""
    from torchvision.io import encode_jpeg

    with gpu_decode.torchvision_codecs():
        return encode_jpeg(pictures, quality=THUMBNAIL_QUALITY)


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A host copy through pinned memory (the copy a CUDA device does fastest)."""
    if tensor.device.type == "cpu":
        return tensor
    import torch

    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    torch.cuda.current_stream(tensor.device).synchronize()
    return host


def stack_for(tensors: list[torch.Tensor], device: Any) -> torch.Tensor:
    """One batch of model inputs, on `device` when it is a CUDA device: inputs the GPU made
    stay there, those the CPU made go over in one pinned, asynchronous copy (the model's
    forward then waits for it on the same stream)."""
    import torch

    if device is None or torch.device(device).type != "cuda":
        return torch.stack([t.cpu() for t in tensors])
    on_host = [n for n, t in enumerate(tensors) if t.device.type == "cpu"]
    if on_host:
        staged = torch.empty((len(on_host), *tensors[on_host[0]].shape), pin_memory=True)
        torch.stack([tensors[n] for n in on_host], out=staged)
        moved = staged.to(device, non_blocking=True)
        tensors = list(tensors)
        for k, n in enumerate(on_host):
            tensors[n] = moved[k]
    return torch.stack(tensors)
