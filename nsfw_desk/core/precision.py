"""Which numeric path a model runs on, and why: the modes, what each needs, and the bench profile.

A CPU without native bf16 (no AVX512-BF16 or AMX) has no cheap reduced precision, so the speed
has to come from elsewhere: int8 dynamic quantization of the Linear layers, torch.compile, or a
dedicated runtime (ONNX Runtime, OpenVINO). Which of those is fastest, and whether it keeps
decisions, depends on the CPU, so `auto` trusts only what `nsfw-desk bench` measured on this
machine: the bench writes a profile keyed by CPU model, torch version and model architecture,
and `auto` picks the fastest mode in it that flipped at most FLIP_BUDGET_PCT of the
decisions. Without a matching profile `auto` keeps the rule it had before (bf16 with native
bf16, else fp32).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from nsfw_desk.core.hub import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

APP_NAME = "nsfw-desk"
# Every --precision choice; the settings dialog's list follows this tuple.
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8", "compile", "onnx", "onnx-int8", "openvino")
# Modes that only run on the CPU here.
CPU_ONLY = frozenset({"int8", "onnx", "onnx-int8", "openvino"})
# Share of decisions (at the 0.5 threshold) a mode may flip against fp32 and still be chosen.
FLIP_BUDGET_PCT = 0.5
NO_BF16_ENV = "NSFW_DESK_NO_BF16"
PROFILE_VERSION = 1
# How each mode is expected to agree with fp32 (max |Δp| on the test models; tests hold it).
TOLERANCE = {
    "fp32": 0.0,
    "fp16": 0.05,
    "bf16": 0.05,
    "int8": 0.1,
    "compile": 1e-3,
    "onnx": 1e-3,
    "onnx-int8": 0.1,
    "openvino": 1e-3,
}


def bf16_disabled() -> bool:
    """True when NSFW_DESK_NO_BF16 is set (to anything but "" or "0"): treat this CPU as one
    without native bf16, for `auto` and for the bench."""
    return os.environ.get(NO_BF16_ENV, "").strip() not in ("", "0")


def cache_folder(*parts: str) -> Path:
    """A folder under the user cache dir (exported graphs, compiled kernels, profiles)."""
    folder = Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    for part in ("", *parts):  # each level owner-only, like the thumbnails beside them
        folder = folder / part if part else folder
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def cpu_model_name() -> str:
    """The CPU's marketing name ("AMD EPYC", "Intel(R) Core(TM) i7-1165G7 …")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def has_onnxruntime() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def has_openvino() -> bool:
    """OpenVINO, and onnx for the export it compiles (the `openvino` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "onnx"))


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would use on the CPU, if one is on PATH."""
    names = ("cl",) if sys.platform == "win32" else ("g++", "c++", "clang++")
    return next((path for name in names if (path := shutil.which(name))), None)


def check_available(mode: str, device: torch.device) -> None:
    """Raise ModelError, saying what is missing and what to do, when `mode` cannot run here."""
    import torch

    kind = device.type
    if kind == "mps" and mode != "fp32":
        raise ModelError(
            f"Precision {mode} was asked for on Apple MPS, which runs fp32 only here; use "
            "--precision fp32 (or auto), or --device cpu for the CPU modes."
        )
    if mode in CPU_ONLY and kind != "cpu":
        raise ModelError(
            f"Precision {mode} runs on the CPU only; use --device cpu with it, or "
            f"--precision auto on {kind}."
        )
    cuda_up = kind == "cuda" and torch.cuda.is_available()
    if mode == "bf16" and cuda_up and not torch.cuda.is_bf16_supported():
        raise ModelError(
            f"Precision bf16 was asked for, but {torch.cuda.get_device_name(device)} has no "
            "bf16 support; use --precision fp16 (auto) or fp32."
        )
    if mode == "int8" and not _quantized_engine():
        raise ModelError(
            "Precision int8 needs a quantized engine (x86, fbgemm, onednn or qnnpack), and "
            f"this torch build has none ({torch.__version__}); use --precision fp32."
        )
    if mode == "compile" and kind == "cpu" and cxx_compiler() is None:
        raise ModelError(
            "Precision compile needs a C++ compiler on PATH (g++ or clang++; MSVC on "
            "Windows) for torch.compile on the CPU; install one, or use --precision fp32."
        )
    if mode.startswith("onnx") and not has_onnxruntime():
        raise ModelError(
            f"Precision {mode} needs ONNX Runtime, which is not installed; install it with "
            "pip install 'nsfw-desk[onnx]', or use another --precision."
        )
    if mode == "openvino" and not has_openvino():
        raise ModelError(
            "Precision openvino needs OpenVINO (and onnx for the export it compiles), which "
            "is not installed; install it with pip install 'nsfw-desk[openvino]', or use "
            "another --precision."
        )


def _quantized_engine() -> str | None:
    """The quantized engine int8 uses: x86 (oneDNN + FBGEMM) where torch has it."""
    import torch

    engines = torch.backends.quantized.supported_engines
    return next((e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in engines), None)


def enable_mps_fallback() -> None:
    """On macOS, let ops that MPS lacks run on the CPU instead of failing the scan; logged."""
    if sys.platform != "darwin" or os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK"):
        return
    os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = "1"
    log.info(
        "PYTORCH_ENABLE_MPS_FALLBACK=1: any op Apple MPS does not implement runs on the CPU "
        "(slower for that op, same result) rather than stopping the scan"
    )


# --- the per-machine profile written by `nsfw-desk bench` --------------------------------


@dataclass
class ModeFigures:
    """One mode in the bench, against fp32 eager on the same files."""

    images_per_s: float
    flipped_pct: float
    max_abs_dp: float


@dataclass
class Profile:
    cpu: str
    torch: str
    architecture: str
    modes: dict[str, ModeFigures] = field(default_factory=dict)
    corpus: str = ""
    version: int = PROFILE_VERSION

    def key(self) -> tuple[str, str, str]:
        return (self.cpu, self.torch, self.architecture)


def machine_key(architecture: str) -> tuple[str, str, str]:
    import torch

    return (cpu_model_name(), torch.__version__, architecture)


def profile_path(key: tuple[str, str, str]) -> Path:
    digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
    return cache_folder("profiles") / f"precision-{key[2]}-{digest}.json"


def save_profile(profile: Profile) -> Path:
    """Write the profile atomically (tmp + fsync + rename) where `load_profile` finds it."""
    path = profile_path(profile.key())
    fd, tmp = tempfile.mkstemp(prefix=".profile.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(profile), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_profile(architecture: str) -> Profile | None:
    """This machine's profile for `architecture`; None when missing, unreadable, or written
    on another CPU model or torch version (its figures would say nothing about this one)."""
    key = machine_key(architecture)
    path = profile_path(key)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        profile = Profile(
            cpu=data["cpu"],
            torch=data["torch"],
            architecture=data["architecture"],
            modes={m: ModeFigures(**f) for m, f in data["modes"].items()},
            corpus=data.get("corpus", ""),
            version=data.get("version", 0),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("precision profile %s unreadable (%s); auto ignores it", path.name, exc)
        return None
    if profile.version != PROFILE_VERSION or profile.key() != key:
        log.info("precision profile %s is for another machine or torch; ignored", path.name)
        return None
    return profile


def default_choice(device: torch.device) -> tuple[str, str]:
    """`auto` without a profile: what it was before there were profiles."""
    from nsfw_desk.core import runtime

    if device.type == "cuda":
        return "fp16", "auto on CUDA"
    if device.type == "cpu" and runtime.cpu_has_native_bf16():
        return "bf16", "auto on a CPU with native bf16 (avx512_bf16 or amx_bf16)"
    if device.type == "cpu":
        why = f" ({NO_BF16_ENV} is set)" if bf16_disabled() else ""
        return "fp32", (
            f"auto on a CPU without native bf16{why} and no bench profile (run nsfw-desk bench)"
        )
    return "fp32", f"auto on {device.type}"


def choose_from_profile(device: torch.device, architecture: str | None) -> tuple[str, str] | None:
    """The fastest mode the bench showed within the flip budget on this machine, or None."""
    from nsfw_desk.core import runtime

    if device.type != "cpu" or not architecture:
        return None
    profile = load_profile(architecture)
    if profile is None:
        return None
    native = runtime.cpu_has_native_bf16()
    baseline = "bf16" if native and "bf16" in profile.modes else "fp32"
    usable = {
        mode: figures
        for mode, figures in profile.modes.items()
        if mode in TOLERANCE
        and figures.flipped_pct <= FLIP_BUDGET_PCT
        and (mode != "bf16" or native)
        and (not mode.startswith("onnx") or has_onnxruntime())
        and (mode != "openvino" or has_openvino())
        and (mode != "compile" or cxx_compiler() is not None)
    }
    if not usable:
        return None
    best = max(usable, key=lambda m: usable[m].images_per_s)
    figures = usable[best]
    base = profile.modes.get(baseline)
    versus = (
        f", {figures.images_per_s / base.images_per_s:.2f}× {baseline}"
        if base and best != baseline
        else ""
    )
    return best, (
        f"auto from this machine's bench profile: fastest within the {FLIP_BUDGET_PCT}% flip "
        f"budget ({figures.images_per_s:.1f} images/s{versus}; {figures.flipped_pct:.2f}% "
        "flipped)"
    )
