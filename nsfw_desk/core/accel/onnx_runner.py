"""onnx: the model exported once to ONNX and run with ONNX Runtime (the `onnx` extra).

The exported graph has two outputs, class probabilities and the pooled embedding, because the
store needs both from one pass. The export is cached in the app's cache folder, keyed by the
model id (which names the exact weights) and the torch version that exported it, and written
atomically, so a crash mid-export never leaves a half file that a later run would load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_desk.core.accel import forward_outputs

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
OUTPUTS = ("probabilities", "embedding")


def export_path(model_id: str, quantized: bool = False) -> Path:
    import torch

    from nsfw_desk.core.precision import cache_folder

    key = hashlib.sha256(f"{model_id}\0torch {torch.__version__}".encode()).hexdigest()[:24]
    return cache_folder("onnx") / f"model-{key}{'-int8' if quantized else ''}.onnx"


def quantize_export(source: Path, path: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of the exported graph's MatMul weights,
    written atomically next to it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=".quantize.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)  # its advice to pre-process the graph, on the root logger
        quantize_dynamic(str(source), tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        root.setLevel(level)


def export(module: Any, path: Path, input_size: tuple[int, ...]) -> float:
    """Export `module` to `path` (atomically); returns the seconds it took."""
    import torch

    class Outputs(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return forward_outputs(self.inner, x)

    start = time.perf_counter()
    fd, tmp = tempfile.mkstemp(prefix=".export.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # The TorchScript-based exporter: no extra dependency, and it handles timm's ViT
            # with a dynamic batch axis. Newer torch warns that it is deprecated.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Outputs(module).eval(),
                (torch.zeros(1, *input_size),),
                tmp,
                input_names=["pixels"],
                output_names=list(OUTPUTS),
                dynamic_axes={name: {0: "batch"} for name in ("pixels", *OUTPUTS)},
                opset_version=17,
                dynamo=False,
            )
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return time.perf_counter() - start


class OnnxRunner:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: torch.Tensor):
        import numpy as np

        pixels = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        probs, embedding = self.session.run(list(OUTPUTS), {"pixels": pixels})
        return probs.astype(np.float32), embedding.astype(np.float32)


def ensure_export(module: Any, *, model_id: str, input_size: tuple[int, ...]) -> Path:
    """The cached fp32 export for `model_id`, exporting it first when missing (the `onnx`,
    `onnx-int8` and `openvino` modes share it)."""
    from nsfw_desk.core.hub import ModelError

    path = export_path(model_id)
    if not path.exists():
        try:
            seconds = export(module, path, input_size)
        except Exception as exc:
            raise ModelError(
                f"Could not export the model to ONNX: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''} Use another --precision."
            ) from exc
        log.info("onnx: exported the model once in %.1f s (cached for later runs)", seconds)
    return path


def prepare_onnx(
    module: Any,
    *,
    model_id: str,
    input_size: tuple[int, ...],
    threads: int,
    quantized: bool = False,
) -> OnnxRunner:
    path = ensure_export(module, model_id=model_id, input_size=input_size)
    if quantized:
        source, path = path, export_path(model_id, quantized=True)
        if not path.exists():
            quantize_export(source, path)
            log.info("onnx-int8: quantized the exported model (cached for later runs)")
    try:
        return OnnxRunner(path, threads)
    except Exception as exc:  # a damaged cache file: export again once
        log.warning("onnx: cached export unusable (%s); exporting again", exc)
        path.unlink(missing_ok=True)
        return prepare_onnx(
            module, model_id=model_id, input_size=input_size, threads=threads, quantized=quantized
        )
