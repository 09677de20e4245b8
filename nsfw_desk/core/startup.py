"""Time from the process start to the first scored batch, split into its three parts.

Python imports (interpreter, app, torch and timm), model load (weights, device, precision
path) and the first batch (finding files, decoding them, the first forward pass, which for
`compile` includes compiling). `runtime.load_model` and `LoadedModel.predict` mark the
boundaries; the split is logged once per process at INFO (`nsfw-desk -v scan …` shows it) and
`nsfw-desk bench` prints it from a fresh `nsfw-desk scan` process.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)
LOG_PREFIX = "startup:"

_imported_at = time.perf_counter()
_marks: dict[str, float] = {}
_done = False


def since_process_start() -> float:
    """Seconds since this process started (from /proc on Linux; elsewhere since this module
    was imported, which the CLI does early)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, uptime - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _imported_at


def imports_done(torch_import_s: float) -> None:
    if "imports" not in _marks:
        _marks["imports"] = since_process_start()
        _marks["torch_import"] = torch_import_s


def model_loaded() -> None:
    if "imports" in _marks and "loaded" not in _marks:
        _marks["loaded"] = since_process_start()


def first_batch_done() -> None:
    """Called after every forward pass; logs the split after the first one only."""
    global _done
    if _done:
        return
    _done = True
    if "loaded" not in _marks:
        return
    _marks["first_batch"] = since_process_start()
    log.info(
        "%s first batch scored %.2f s after the process started: Python imports %.2f s "
        "(torch and timm %.2f s), model load %.2f s, first batch %.2f s",
        LOG_PREFIX,
        _marks["first_batch"],
        _marks["imports"],
        _marks["torch_import"],
        _marks["loaded"] - _marks["imports"],
        _marks["first_batch"] - _marks["loaded"],
    )


def split() -> dict[str, float]:
    """The figures so far: imports_s, torch_import_s, model_load_s, first_batch_s, total_s."""
    out: dict[str, float] = {}
    if "imports" in _marks:
        out["imports_s"] = _marks["imports"]
        out["torch_import_s"] = _marks["torch_import"]
    if "loaded" in _marks:
        out["model_load_s"] = _marks["loaded"] - _marks["imports"]
    if "first_batch" in _marks:
        out["first_batch_s"] = _marks["first_batch"] - _marks["loaded"]
        out["total_s"] = _marks["first_batch"]
    return out
