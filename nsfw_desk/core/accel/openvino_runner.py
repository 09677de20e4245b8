"""openvino: the exported ONNX graph compiled and run by OpenVINO's CPU plugin (`openvino` extra).

On a CPU without native bf16 (AVX2, no AVX512) this is the fastest exact path measured here:
OpenVINO fuses the ViT's attention, LayerNorm and GELU into its own kernels and keeps fp32
throughout (INFERENCE_PRECISION_HINT f32, so a CPU with bf16 does not silently run it in bf16),
so scores agree with fp32 eager to ~1e-6, and the forward pass ran 1.10x torch's eager one on
the README's 2-core AVX2 EPYC (`python -m nsfw_desk.bench_openvino_int8`). It reads the same
cached ONNX export as `onnx` (onnx_runner.export_path), and OpenVINO's compiled blobs go to the
app's cache folder (its own format, keyed by OpenVINO on the graph, the device and its version;
nothing is unpickled), so later runs skip compiling.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def compile_cache_dir() -> Path:
    """Where OpenVINO keeps compiled models between runs, beside the ONNX exports."""
    import openvino

    from nsfw_desk.core.precision import cache_folder

    return cache_folder("openvino", openvino.__version__.split("-")[0])


class OpenVinoRunner:
    """One compiled model under OpenVINO's THROUGHPUT hint: its streams (two on two cores, one
    thread each) each get a share of every batch, run at once. On the 2-core AVX2 EPYC of the
    README this was never slower than the LATENCY hint (one stream over both threads) and
    1.3x faster while another process took CPU time, as a stream whose core is busy holds up
    only its own share (`python -m nsfw_desk.bench_openvino_int8` times both). A lock keeps
    callers on other threads (the desk's explain pane beside a scan) from sharing the
    requests at the same moment."""

    def __init__(
        self, path: Path, threads: int, *, hint: str = "THROUGHPUT", cache: bool = True
    ) -> None:
        """`hint`: OpenVINO's PERFORMANCE_HINT (the int8 probe compares both); `cache`:
        keep the compiled blob in the app's cache (not for a probe's throw-away graphs)."""
        import openvino as ov

        self.path = path
        start = time.perf_counter()
        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if cache:
            config["CACHE_DIR"] = str(compile_cache_dir())
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.compile_s = time.perf_counter() - start
        streams = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [self.compiled.create_infer_request() for _ in range(streams)]
        self._lock = threading.Lock()
        self.outputs = (
            self.compiled.output("probabilities"),
            self.compiled.output("embedding"),
        )
        log.debug("openvino: compiled %s in %.1f s, %d streams", path.name, self.compile_s, streams)

    def __call__(self, batch: torch.Tensor):
        import numpy as np

        pixels = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        parts = [p for p in np.array_split(pixels, len(self.requests)) if len(p)]
        with self._lock:
            running = self.requests[: len(parts)]
            for request, part in zip(running, parts, strict=True):
                request.start_async({"pixels": np.ascontiguousarray(part)})
            for request in running:
                request.wait()
            # Copies: the requests' output buffers are reused by their next call.
            probs, embedding = (
                np.concatenate(
                    [np.array(r.get_tensor(out).data, dtype=np.float32) for r in running]
                )
                for out in self.outputs
            )
        return probs, embedding


def prepare_openvino(
    module: Any, *, model_id: str, input_size: tuple[int, ...], threads: int
) -> OpenVinoRunner:
    from nsfw_desk.core.accel.onnx_runner import ensure_export

    path = ensure_export(module, model_id=model_id, input_size=input_size)
    try:
        return OpenVinoRunner(path, threads)
    except Exception as exc:  # a damaged cached export: export again once
        log.warning("openvino: cached export unusable (%s); exporting again", exc)
        path.unlink(missing_ok=True)
        path = ensure_export(module, model_id=model_id, input_size=input_size)
        return OpenVinoRunner(path, threads)
