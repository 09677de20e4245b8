"""compile: torch.compile (Inductor) with its artefacts kept on disk between runs.

Inductor's FX graph cache and kernel caches live in TORCHINDUCTOR_CACHE_DIR; unless the user
set it, it points into this app's cache folder, so only the first run on a machine pays the
full compilation (the bench reports both costs). Batches are padded to a few fixed sizes so a
scan's short last batch does not trigger another compilation.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from nsfw_desk.core.accel import forward_outputs

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
# Padded batch sizes: at least this many, then powers of two.
MIN_COMPILED_BATCH = 8


def inductor_cache_dir() -> str:
    """Where compiled artefacts go: $TORCHINDUCTOR_CACHE_DIR, else the app's cache folder.

    Inductor writes its default (a folder in /tmp, lost on reboot) into the variable the first
    time it looks, so that value counts as unset here.
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if os.environ.get(CACHE_ENV) in (None, "", default_cache_dir()):
        from nsfw_desk.core.precision import cache_folder

        os.environ[CACHE_ENV] = str(cache_folder("inductor"))
    return os.environ[CACHE_ENV]


def padded_size(n: int) -> int:
    size = MIN_COMPILED_BATCH
    while size < n:
        size *= 2
    return size


class CompiledRunner:
    """Calls the compiled forward; remembers how long each new batch shape took first."""

    def __init__(self, module: Any) -> None:
        import torch

        self.cache_dir = inductor_cache_dir()
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
        self.module = module
        self.device = next(module.parameters()).device
        self._forward = torch.compile(
            lambda x: forward_outputs(module, x), dynamic=False, fullgraph=False
        )
        self.first_call_s: dict[int, float] = {}

    def __call__(self, batch: torch.Tensor):
        import torch

        n = batch.shape[0]
        size = padded_size(n)
        if size != n:
            pad = batch.new_zeros((size - n, *batch.shape[1:]))
            batch = torch.cat([batch, pad])
        start = time.perf_counter()
        with torch.inference_mode():
            probs, embedding = self._forward(batch.to(self.device))
        if size not in self.first_call_s:
            self.first_call_s[size] = time.perf_counter() - start
            log.info(
                "compile: batch of %d compiled or loaded from %s in %.1f s",
                size,
                self.cache_dir,
                self.first_call_s[size],
            )
        return probs[:n].cpu().numpy(), embedding[:n].cpu().numpy()


def prepare_compiled(module: Any) -> CompiledRunner:
    return CompiledRunner(module)
