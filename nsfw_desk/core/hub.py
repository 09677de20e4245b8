"""The hub side of a model: what the user asked for, and the local folder that holds it.

A spec is a hub id (pinned to a revision) or a local folder. Either way we end with a folder
holding config.json + model.safetensors, or a `ModelError` whose message says what happened
and what to do (offline, a pickle checkpoint, a missing file). Weights are never unpickled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nsfw_desk.core.paths import display_text
from nsfw_desk.core.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Marqo/nsfw-image-detection-384"
DEFAULT_REVISION = "0c26ec22111b83f106d72a55f611ec35962bcb65"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# The image processor of a Hugging Face transformers model (core/backends).
PREPROCESSOR_FILE = "preprocessor_config.json"
# `.tar`: timm's train.py writes `checkpoint-N.pth.tar` and `model_best.pth.tar` (pickles).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".tar")


class ModelError(Exception):
    """A model could not be found, loaded or understood; the message is for the user.

    A model folder's name need not be UTF-8: the message shows it as every other path is
    shown (core/paths.py `display_text`), whoever wrote the message."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(display_text(str(message)), *args)


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


def model_folder(
    spec: ModelSpec, progress: ProgressCallback | None = None, *, offline: bool = False
) -> tuple[Path, str]:
    """The local folder holding config.json + model.safetensors, and the model's cache id.

    `offline` uses only the Hugging Face cache, never the network.
    """
    if spec.is_local:
        folder = _check_local_folder(Path(spec.source))
        model_id = "sha256:" + _sha256(folder / WEIGHTS_FILE)
        log.debug("model: local folder %s, weights %s", folder, model_id)
        return folder, model_id
    default = " (the pinned default)" if spec == ModelSpec.parse(None) else ""
    log.debug(
        "model: hub %s, revision %s%s, offline %s", spec.source, spec.revision, default, offline
    )
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


def is_training_checkpoint(path: Path) -> bool:
    """A name timm's train.py gives its checkpoints (`*.pth.tar`): a dict with the weights
    under `state_dict`, the optimizer and the run's arguments, not a bare state dict."""
    return path.name.lower().endswith(".tar")


def _pickle_refusal(path: Path) -> str:
    why = (
        f"Refusing to load {path.name}: it is a pickle checkpoint, and unpickling a file can run "
        "arbitrary code. nsfw-desk loads weights from safetensors only. If you trust the file, "
    )
    checkpoint = path if is_training_checkpoint(path) else "runs/NAME/model_best.pth.tar"
    train_py = (
        "timm's clean_checkpoint.py (beside train.py in timm's repository) keeps only the "
        "weights, as safetensors; nsfw-desk import-weights then checks them against the base "
        "model and writes a model folder with its label names:\n"
        f"  python clean_checkpoint.py --checkpoint '{checkpoint}' --output weights.safetensors "
        "--safetensors --no-hash\n"
        "  nsfw-desk import-weights weights.safetensors --base BASE_MODEL --out MODEL_DIR\n"
        "and use --model MODEL_DIR (README: Export and calibration)."
    )
    if is_training_checkpoint(path):
        return why + "this looks like a checkpoint of timm's train.py: " + train_py
    return (
        why + "convert it once with:\n"
        '  python -c "import torch; from safetensors.torch import save_file; '
        f"save_file(torch.load('{path}', weights_only=True), 'model.safetensors')\"\n"
        "and put model.safetensors beside the model's config.json. A checkpoint of timm's "
        "train.py is converted differently: " + train_py
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
            found = _hub_files(spec, None, local_only=True)
            log.debug("model: %s found in the Hugging Face cache, network not used", found[1])
            return found
        except hf_errors.LocalEntryNotFoundError as exc:
            if offline:
                raise ModelError(_not_available(spec, "offline mode is on")) from exc
            log.debug("model: %s not in the Hugging Face cache; asking the hub", spec)
    unreachable = _hub_unreachable(constants.ENDPOINT)
    if unreachable:
        log.debug("model: hub probe failed: %s", unreachable)
        raise ModelError(_not_available(spec, unreachable))
    tqdm_class = _progress_tqdm(progress, spec.source) if progress else None
    found = _hub_files(spec, tqdm_class, local_only=False)
    log.debug("model: %s resolved through %s", found[1], constants.ENDPOINT)
    return found


def _not_available(spec: ModelSpec, reason: str) -> str:
    return (
        f"Model {spec.source} (revision {spec.revision or 'main'}) is not in the local "
        f"Hugging Face cache and cannot be downloaded: {reason}.\n"
        "Connect to the internet once to download it, or use a local folder holding "
        f"{CONFIG_FILE} and {WEIGHTS_FILE} (for example a copy of the hub repo)."
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
        if not _is_timm_config(Path(config)):
            try:  # a transformers model's preprocessing; timm keeps it in config.json
                hf_hub_download(
                    spec.source,
                    PREPROCESSOR_FILE,
                    revision=spec.revision,
                    local_files_only=local_only,
                )
            except hf_errors.EntryNotFoundError as exc:
                if isinstance(exc, hf_errors.LocalEntryNotFoundError):
                    raise  # not cached yet: ask the hub (or say offline)
                log.debug("model: %s has no %s", spec, PREPROCESSOR_FILE)
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


def _is_timm_config(path: Path) -> bool:
    """timm configs name their `architecture`; transformers ones list `architectures`."""
    import json

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # the loader reports a broken config; nothing more to fetch for it
    return not isinstance(config, dict) or "architecture" in config


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
    return (
        revision is not None
        and len(revision) == 40
        and all(c in "0123456789abcdef" for c in revision)
    )


def _progress_tqdm(progress: ProgressCallback, name: str):
    """A tqdm subclass that reports byte progress through our progress callback."""
    from tqdm.auto import tqdm

    class _ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._seen = self.n  # type: ignore[has-type]  # `initial`: the bytes a resumed download already has

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
