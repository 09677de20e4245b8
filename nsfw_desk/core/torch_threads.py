"""One torch thread for the calling thread only: the scan's decode threads preprocess with
torch ops (ToTensor, Normalize, a transformers processor's resize) that must not start a
team of intra-op threads of their own.

Why: torch runs an op over more than 32k elements on `torch.get_num_threads()` OpenMP
threads, and each decode thread that calls one gets its own team. While the model's forward
pass already keeps every core busy, every small preprocessing op then waits at an OpenMP
barrier for a team thread that has no core: `nsfw-desk bench` on the 2-core CPU measured a
384-px ToTensor + Normalize at 72 ms with two threads, 3.4 ms with one, and a scan with two
detectors preprocesses every image twice.

`torch.set_num_threads(1)` cannot do it: it changes the number for the whole process (the
forward pass too, and every thread started later). OpenMP keeps the number per thread
(`omp_set_num_threads` sets the calling thread's own), and torch reads it back per thread
(`at::get_num_threads` is `omp_get_max_threads`), so the runtime torch already loaded is asked
directly. Where it cannot be found (a torch built without OpenMP, another platform's runtime
under another name) nothing changes: the scan is as fast as before, not wrong.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The OpenMP runtimes torch wheels ship or link: GNU (Linux), LLVM (macOS), Intel, MSVC.
_RUNTIME_NAMES = ("libgomp", "libomp", "libiomp5", "vcomp")


def one_torch_thread() -> bool:
    """Make torch ops started on the calling thread run on it alone (other threads keep
    their number); True when done. Imports nothing: a thread of a process that has not
    loaded torch (a listing without a model) is left as it is."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    runtime = _openmp_runtime(torch.__file__)
    if runtime is None:
        return False
    # torch sets a thread's number once, at its first parallel op, from the process-wide
    # one; this call makes that happen now, so it cannot undo the change below later.
    torch.get_num_threads()
    runtime.omp_set_num_threads(1)
    return torch.get_num_threads() == 1


@cache
def _openmp_runtime(torch_file: str) -> Any:
    """The OpenMP runtime torch runs on, already loaded in this process; None if not found."""
    for path in _candidates(Path(torch_file).parent):
        with contextlib.suppress(OSError, AttributeError):
            mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
            runtime = ctypes.CDLL(str(path), mode=mode)  # loaded already: the same library
            runtime.omp_set_num_threads.argtypes = [ctypes.c_int]
            runtime.omp_set_num_threads.restype = None
            return runtime
    log.debug("no OpenMP runtime found beside torch: preprocessing keeps torch's threads")
    return None


def _candidates(torch_dir: Path) -> list[Path]:
    """Where torch's OpenMP runtime may be: torch's own library folders first, then any
    runtime mapped into the process (Linux; a torch linked against the system's)."""
    found: list[Path] = []
    for folder in (torch_dir / "lib", torch_dir.parent / "torch.libs"):
        with contextlib.suppress(OSError):
            found.extend(sorted(p for p in folder.iterdir() if p.name.startswith(_RUNTIME_NAMES)))
    with (
        contextlib.suppress(OSError),
        open("/proc/self/maps", encoding="utf-8", errors="replace") as maps,
    ):
        for line in maps:
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if path.startswith("/") and Path(path).name.startswith(_RUNTIME_NAMES):
                found.append(Path(path))
    return list(dict.fromkeys(found))
