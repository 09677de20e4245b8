"""int8: torch dynamic quantization of the Linear layers (weights int8, activations quantized
per batch on the fly). A ViT spends most of its time in Linear layers, so this is where int8
pays; attention's matmuls and the patch embedding stay fp32."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

from nsfw_desk.core.accel import Runner, forward_outputs

log = logging.getLogger(__name__)


def quantize(module: Any) -> Any:
    """A copy of `module` with every nn.Linear dynamically quantized to int8."""
    import torch

    from nsfw_desk.core.precision import _quantized_engine

    engine = _quantized_engine()
    if engine and torch.backends.quantized.engine != engine:
        torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        # torch 2.10+ marks torch.ao.quantization (and its quantized tensors) deprecated in
        # favour of torchao, not a dependency here; quantize_dynamic still works on torch
        # 2.14 with the x86 engine (tests/test_precision.py holds it to fp32).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module), {torch.nn.Linear}, dtype=torch.qint8
        )
    log.debug("int8: Linear layers quantized (engine %s)", torch.backends.quantized.engine)
    return quantized.eval()


def prepare_int8(module: Any) -> Runner:
    import torch

    quantized = quantize(module)

    def run(batch: torch.Tensor):
        with torch.inference_mode():
            probs, embedding = forward_outputs(quantized, batch.to("cpu"))
        return probs.numpy(), embedding.numpy()

    return run
