"""Finding, loading and running the classifier: hub or local folder, safetensors only.

Everything a user can get wrong here (offline, a pickle checkpoint, labels we cannot map to
"unsafe") ends as a `ModelError` whose message says what happened and what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from nsfw_desk.core.progress import Progress, ProgressCallback

if TYPE_CHECKING:  # torch is heavy to import; keep it out of module import time
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Marqo/nsfw-image-detection-384"
DEFAULT_REVISION = "0c26ec22111b83f106d72a55f611ec35962bcb65"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# Label names (lower-cased) that mean "this is the class a moderator wants flagged".
UNSAFE_LABEL_NAMES = frozenset(
    {"nsfw", "unsafe", "porn", "pornography", "hentai", "sexy", "explicit", "nudity", "nude"}
)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Longer side : shorter side that preprocessing keeps; a more elongated picture is cut to its
# centre first (see `limit_aspect`).
MAX_ASPECT = 16


class ModelError(Exception):
    """A model could not be found, loaded or understood; the message is for the user."""


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: a hub id (optionally pinned to a revision) or a local folder."""

    source: str
    revision: str | None = None
    is_local: bool = False

    @classmethod
    def parse(cls, text: str | os.PathLike[str] | None) -> ModelSpec:
        """`None` is the pinned default; `org/name@rev` pins a hub revision; else a path."""
        if text is None or str(text) in ("", DEFAULT_MODEL):
            return cls(DEFAULT_MODEL, DEFAULT_REVISION)
        text = str(text)
        path = Path(text).expanduser()
        if path.exists() or not _looks_like_hub_id(text.split("@")[0]):
            return cls(str(path), is_local=True)
        repo, _, revision = text.partition("@")
        return cls(repo, revision or None)

    def __str__(self) -> str:
        return f"{self.source}@{self.revision}" if self.revision else self.source


def _looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


@dataclass
class Prediction:
    """One forward pass over a batch: everything we store per image."""

    probabilities: np.ndarray  # (N, classes) float32
    unsafe_scores: np.ndarray  # (N,) float32, summed probability of the unsafe classes
    embeddings: np.ndarray  # (N, D) float32, pooled pre-logits features


@dataclass
class LoadedModel:
    """A ready-to-run classifier and the facts the rest of the app needs about it."""

    module: torch.nn.Module
    model_id: str
    spec: ModelSpec
    architecture: str
    labels: list[str]
    unsafe_indices: list[int]
    data_config: dict[str, Any]
    device: torch.device
    precision: str
    threads: int
    device_name: str = ""
    _transform: Callable[[Any], torch.Tensor] | None = field(default=None, repr=False)

    @property
    def unsafe_labels(self) -> list[str]:
        return [self.labels[i] for i in self.unsafe_indices]

    @property
    def input_size(self) -> int:
        """Shorter side the decoder must keep so preprocessing never upsamples a draft."""
        crop_pct = self.data_config.get("crop_pct") or 1.0
        return int(max(self.data_config["input_size"][1:]) / crop_pct + 0.999)

    def describe(self) -> str:
        """Short line for a status bar or a summary, e.g. `CPU · fp32 · 2 threads`."""
        if self.device.type == "cpu":
            return f"CPU · {self.precision} · {self.threads} threads"
        name = self.device_name or self.device.type.upper()
        return f"{self.device.type.upper()} · {name} · {self.precision}"

    @property
    def transform(self) -> Callable[[Any], torch.Tensor]:
        """The model's own eval transform (timm's), built from its data config."""
        if self._transform is None:
            import timm.data

            self._transform = timm.data.create_transform(**self.data_config, is_training=False)
        return self._transform

    def preprocess(self, pixels: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model input for `pixels`, and the whole picture at the transform's scale.

        When the transform starts with an aspect-keeping resize (timm's usual eval
        transform), that resized image is returned too, so a thumbnail can be made from it
        instead of from the larger decoded pixels.
        """
        from torchvision import transforms as T

        steps = getattr(self.transform, "transforms", None)
        if (
            steps
            and isinstance(steps[0], T.Resize)
            and isinstance(steps[0].size, int | list)
            and (isinstance(steps[0].size, int) or len(steps[0].size) == 1)
        ):
            resized = steps[0](limit_aspect(pixels))
            return T.Compose(steps[1:])(resized), resized
        return self.transform(pixels), pixels

    def predict(self, batch: torch.Tensor) -> Prediction:
        """Probabilities, unsafe score and embedding from a single forward pass."""
        import torch

        module = self.module
        with torch.inference_mode(), self._autocast():
            x = batch.to(self.device, non_blocking=True)
            features = module.forward_features(x)
            embedding = module.forward_head(features, pre_logits=True)
            logits = module.get_classifier()(embedding)
            probs = logits.float().softmax(dim=-1)
        probs_np = probs.cpu().numpy().astype(np.float32)
        unsafe = probs_np[:, self.unsafe_indices].sum(axis=1)
        return Prediction(
            probabilities=probs_np,
            unsafe_scores=np.clip(unsafe, 0.0, 1.0).astype(np.float32),
            embeddings=embedding.float().cpu().numpy(),
        )

    def _autocast(self):
        import torch

        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def limit_aspect(pixels: Image.Image, limit: int = MAX_ASPECT) -> Image.Image:
    """The centre of a picture more elongated than `limit`:1, cut to that ratio.

    The eval transform scales the shorter side to the model's size and then crops the centre,
    so a 60000×1 strip (a 100-byte PNG) would first become a 10-gigapixel image: minutes and
    gigabytes, or the out-of-memory killer. The model's crop spans at most the shorter side
    around the centre, well inside what is kept, and the scale stays the same (the shorter
    side is untouched), so the model sees the same pixels up to rounding (at most 2 of 255
    levels, scores within 0.0002 in tests/test_hostile.py).
    """
    width, height = pixels.size
    short, long = min(width, height), max(width, height)
    if long <= short * limit:
        return pixels
    keep = short * limit
    start = (long - keep) // 2
    if width > height:
        return pixels.crop((start, 0, start + keep, height))
    return pixels.crop((0, start, width, start + keep))


def unsafe_indices_for(labels: Sequence[str], override: str | Sequence[str] | None) -> list[int]:
    """Which classes count as unsafe: the override if given, else the known unsafe names."""
    lowered = [label.lower() for label in labels]
    if override:
        wanted = override.split(",") if isinstance(override, str) else list(override)
        indices = []
        for name in (w.strip() for w in wanted):
            if name.lower() not in lowered:
                raise ModelError(
                    f"--unsafe-label {name!r} is not one of the model's labels: "
                    f"{', '.join(labels)}."
                )
            indices.append(lowered.index(name.lower()))
        return sorted(set(indices))
    indices = [i for i, name in enumerate(lowered) if name in UNSAFE_LABEL_NAMES]
    if not indices:
        raise ModelError(
            f"Cannot tell which of the model's labels means unsafe: {', '.join(labels)}. "
            "Name it with --unsafe-label (several separated by commas)."
        )
    return indices


def choose_device(requested: str = "auto") -> torch.device:
    """`auto` is CUDA, then Apple MPS, then CPU; an explicit choice must be available."""
    import torch

    if requested not in DEVICES:
        raise ModelError(f"Unknown device {requested!r}; choose one of {', '.join(DEVICES)}.")
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        raise ModelError("--device cuda was asked for, but torch sees no CUDA GPU.")
    if requested == "mps" and not mps:
        raise ModelError("--device mps was asked for, but Apple MPS is not available.")
    return torch.device(requested)


def choose_precision(device: torch.device, requested: str = "auto") -> str:
    """fp16 autocast on CUDA; bf16 on CPUs with native bf16; fp32 elsewhere.

    The CPU rule follows `nsfw-desk bench`: on an AVX512-BF16 CPU, bf16 autocast scanned
    1.17-1.36× faster than fp32 and flipped 0.00% of decisions at 0.5 (max |Δp| 0.006).
    Without native bf16 it is emulated and slower, so fp32 stays. See README: Precision.
    """
    if requested not in PRECISIONS:
        raise ModelError(f"Unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}.")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def model_folder(
    spec: ModelSpec, progress: ProgressCallback | None = None, *, offline: bool = False
) -> tuple[Path, str]:
    """The local folder holding config.json + model.safetensors, and the model's cache id.

    `offline` uses only the Hugging Face cache, never the network.
    """
    if spec.is_local:
        folder = _check_local_folder(Path(spec.source))
        return folder, "sha256:" + _sha256(folder / WEIGHTS_FILE)
    return _download_from_hub(spec, progress, offline)


def _check_local_folder(path: Path) -> Path:
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelError(_pickle_refusal(path))
        if path.name == WEIGHTS_FILE or path.suffix == ".safetensors":
            path = path.parent
        else:
            raise ModelError(
                f"{path} is a file; give the folder that holds {CONFIG_FILE} and {WEIGHTS_FILE}."
            )
    if not path.is_dir():
        raise ModelError(
            f"Model folder {path} does not exist. Give a Hugging Face hub id such as "
            f"{DEFAULT_MODEL} or a folder with {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
    if not (path / WEIGHTS_FILE).is_file():
        pickles = sorted(p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise ModelError(_pickle_refusal(pickles[0]))
        raise ModelError(f"Model folder {path} has no {WEIGHTS_FILE}.")
    if not (path / CONFIG_FILE).is_file():
        raise ModelError(
            f"Model folder {path} has no {CONFIG_FILE}; save the model with "
            "timm.models.save_for_hf(model, folder, safe_serialization=True)."
        )
    return path


def _pickle_refusal(path: Path) -> str:
    return (
        f"Refusing to load {path.name}: it is a pickle checkpoint, and unpickling a file can run "
        "arbitrary code. nsfw-desk loads weights from safetensors only. If you trust the file, "
        "convert it once with:\n"
        '  python -c "import torch; from safetensors.torch import save_file; '
        f"save_file(torch.load('{path}', weights_only=True), 'model.safetensors')\"\n"
        "and put model.safetensors beside the model's config.json."
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_from_hub(
    spec: ModelSpec, progress: ProgressCallback | None, offline: bool
) -> tuple[Path, str]:
    """Cache first for a pinned commit (no network at start-up), then the hub."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hf_errors

    offline = offline or bool(constants.HF_HUB_OFFLINE)
    if offline or _is_commit(spec.revision):
        try:
            return _hub_files(spec, None, local_only=True)
        except hf_errors.LocalEntryNotFoundError as exc:
            if offline:
                raise ModelError(_not_available(spec, "offline mode is on")) from exc
    unreachable = _hub_unreachable(constants.ENDPOINT)
    if unreachable:
        raise ModelError(_not_available(spec, unreachable))
    tqdm_class = _progress_tqdm(progress, spec.source) if progress else None
    return _hub_files(spec, tqdm_class, local_only=False)


def _not_available(spec: ModelSpec, reason: str) -> str:
    return (
        f"Model {spec.source} (revision {spec.revision or 'main'}) is not in the local "
        f"Hugging Face cache and cannot be downloaded: {reason}.\n"
        "Connect to the internet once to download it, or point --model at a local folder "
        f"holding {CONFIG_FILE} and {WEIGHTS_FILE} (for example a copy of the hub repo)."
    )


def _hub_unreachable(endpoint: str, timeout: float = 5.0) -> str | None:
    """Why the hub cannot be reached, or None; answers in seconds instead of the hub
    client's retries with back-off (20 s and more) when there is no network at all."""
    if any(
        os.environ.get(name)
        for name in (
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        )
    ):
        return None  # a proxy decides; let the hub client go through it
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"{url.hostname} is unreachable ({exc.strerror or exc})"
    return None


def _hub_files(spec: ModelSpec, tqdm_class, *, local_only: bool) -> tuple[Path, str]:
    """config.json and model.safetensors of `spec` from the cache or the hub."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    try:
        config = hf_hub_download(
            spec.source, CONFIG_FILE, revision=spec.revision, local_files_only=local_only
        )
        try:
            weights = hf_hub_download(
                spec.source,
                WEIGHTS_FILE,
                revision=spec.revision,
                tqdm_class=tqdm_class,
                local_files_only=local_only,
            )
        except hf_errors.EntryNotFoundError as exc:
            if isinstance(exc, hf_errors.LocalEntryNotFoundError):
                # Also an EntryNotFoundError, but it means "not in the cache" (offline or
                # unreachable), not "the repository has no such file".
                _refuse_cached_pickles(spec, Path(config).parent, exc)
                raise
            raise ModelError(
                f"{spec} offers no {WEIGHTS_FILE} (only pickle weights such as "
                "pytorch_model.bin, which nsfw-desk never loads because unpickling can run "
                "code). Convert it to safetensors in a local folder and give that folder."
            ) from exc
    except (ModelError, hf_errors.LocalEntryNotFoundError):
        raise
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError) as exc:
        raise ModelError(
            f"Model {spec.source} was not found on the Hugging Face hub (or needs a login)."
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelError(f"Model {spec.source} has no revision {spec.revision}.") from exc
    except Exception as exc:  # DNS, TLS, proxy, timeouts: all the same to a user
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise ModelError(_not_available(spec, reason)) from exc
    folder = Path(weights).parent
    if Path(config).parent != folder:
        raise ModelError(f"Hub files for {spec} landed in different folders; clear the cache.")
    # The snapshot folder's name is the commit hash the revision resolved to.
    return folder, f"{spec.source}@{spec.revision if _is_commit(spec.revision) else folder.name}"


def _refuse_cached_pickles(spec: ModelSpec, snapshot: Path, exc: Exception) -> None:
    """The cached copy of a hub repo has pickle weights but no safetensors: say so."""
    pickles = sorted(p for p in snapshot.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError(
            f"The cached copy of {spec} has no {WEIGHTS_FILE}, only pickle weights "
            f"({', '.join(p.name for p in pickles)}), and we are offline.\n"
            + _pickle_refusal(pickles[0])
        ) from exc


def _is_commit(revision: str | None) -> bool:
    return bool(revision) and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def _progress_tqdm(progress: ProgressCallback, name: str):
    """A tqdm subclass that reports byte progress through our progress callback."""
    from tqdm.auto import tqdm

    class _ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._seen = self.n  # `initial`: the bytes a resumed download already has

        def update(self, n=1):
            self._seen += n or 0
            self.n = self._seen  # hub code reads `n` (e.g. to size the Xet transfer bar)
            progress(
                Progress(
                    phase="download",
                    done=self._seen,
                    total=self.total or 0,
                    message=f"Downloading {name}",
                )
            )

        # Having these makes a Xet download drive this one bar (bytes written to disk)
        # instead of two instances whose counts (written, received) would interleave.
        def update_transfer(self, n=1):
            pass

        def set_transfer_postfix_str(self, s="", refresh=True):
            pass

    return _ProgressTqdm


def load_model(
    model: str | os.PathLike[str] | ModelSpec | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    unsafe_label: str | Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    offline: bool = False,
) -> LoadedModel:
    """Resolve, download if needed, and load a timm classifier ready for `predict`."""
    spec = model if isinstance(model, ModelSpec) else ModelSpec.parse(model)
    folder, model_id = model_folder(spec, progress, offline=offline)

    import safetensors.torch
    import timm
    import torch
    from timm.models._hub import load_model_config_from_path

    try:
        pretrained_cfg, architecture, model_args = load_model_config_from_path(folder)
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise ModelError(f"{folder / CONFIG_FILE} is not a timm model config: {exc}") from exc
    if not timm.is_model(architecture):
        raise ModelError(
            f"Model architecture {architecture!r} is unknown to timm {timm.__version__}; "
            "upgrade timm or choose another model."
        )
    num_classes = int(pretrained_cfg.get("num_classes") or 0)
    labels = list(pretrained_cfg.get("label_names") or [])
    if not labels:
        labels = [f"class_{i}" for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ModelError(
            f"{folder / CONFIG_FILE} lists {len(labels)} labels for {num_classes} classes."
        )
    unsafe = unsafe_indices_for(labels, unsafe_label)

    try:
        module = timm.create_model(
            architecture,
            pretrained=False,
            pretrained_cfg=pretrained_cfg,
            **{**model_args, "num_classes": num_classes},
        )
        state = safetensors.torch.load_file(str(folder / WEIGHTS_FILE), device="cpu")
        module.load_state_dict(state)
    except Exception as exc:  # corrupt file, shape mismatch, unknown argument
        raise ModelError(
            f"Could not load the weights in {folder / WEIGHTS_FILE} into {architecture}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc

    torch_device = choose_device(device)
    chosen_precision = choose_precision(torch_device, precision)
    threads = available_cores()
    torch.set_num_threads(threads)
    module.eval().to(torch_device)
    device_name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else ""
    data_config = timm.data.resolve_model_data_config(module)
    log.info("loaded %s (%s) on %s", spec, architecture, torch_device)
    return LoadedModel(
        module=module,
        model_id=model_id,
        spec=spec,
        architecture=architecture,
        labels=labels,
        unsafe_indices=unsafe,
        data_config=data_config,
        device=torch_device,
        precision=chosen_precision,
        threads=threads,
        device_name=device_name,
    )
