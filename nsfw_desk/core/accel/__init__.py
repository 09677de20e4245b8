"""The CPU paths beside eager fp32/bf16: int8, torch.compile, ONNX Runtime (fp32, int8),
OpenVINO (fp32).

Each `prepare_*` takes the loaded timm module and returns a Runner: a callable from a batch of
model inputs to (probabilities, pooled embedding) as float32 numpy arrays, the two things the
store needs from one forward pass. torch and the runtimes are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

Runner = Callable[["torch.Tensor"], tuple[np.ndarray, np.ndarray]]


def forward_outputs(module: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and pooled embedding from one pass (timm's forward_features → head)."""
    features = module.forward_features(x)
    embedding = module.forward_head(features, pre_logits=True)
    probs = module.get_classifier()(embedding).float().softmax(dim=-1)
    return probs, embedding.float()


def prepare_runner(
    mode: str, module: Any, *, model_id: str, input_size: tuple[int, ...], threads: int
) -> Runner | None:
    """The runner for `mode`, or None for the eager modes (fp32, fp16, bf16)."""
    if mode == "int8":
        from nsfw_desk.core.accel.int8 import prepare_int8

        return prepare_int8(module)
    if mode == "compile":
        from nsfw_desk.core.accel.compiled import prepare_compiled

        return prepare_compiled(module)
    if mode in ("onnx", "onnx-int8"):
        from nsfw_desk.core.accel.onnx_runner import prepare_onnx

        return prepare_onnx(
            module,
            model_id=model_id,
            input_size=input_size,
            threads=threads,
            quantized=mode == "onnx-int8",
        )
    if mode == "openvino":
        from nsfw_desk.core.accel.openvino_runner import prepare_openvino

        return prepare_openvino(module, model_id=model_id, input_size=input_size, threads=threads)
    return None
