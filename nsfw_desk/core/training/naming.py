"""The folder a new model is saved in by default: `<base>-trained-<date>`, one generation deep.

A model trained from a trained model is named after the first base, not after its parent's
whole name (`nsfw-trained-2026-11-26-trained-2026-11-27-…` grew a suffix each generation),
and a folder that already holds something is never proposed: the same base trained twice on
one day gets `-2`, `-3`, … (training replaces what is in its --out folder).
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

SUFFIX = "-trained-"
# What earlier defaults appended, once or (before this module) once per generation.
_GENERATIONS = re.compile(r"(?:-trained-\d{4}-\d{2}-\d{2}(?:-\d+)?)+$")
_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def base_stem(base_name: str) -> str:
    """The base model's name as a folder name: its display name without the short hash
    (`name (sha256:…)`), characters other than letters, digits and `._-` made `-`, and any
    `-trained-<date>[-N]` suffixes of earlier generations cut off."""
    stem = _UNSAFE_CHARACTERS.sub("-", base_name.split(" (")[0]).strip("-.")
    return _GENERATIONS.sub("", stem) or "model"


def default_model_dir(models_dir: Path, base_name: str, when: datetime | None = None) -> Path:
    """`models_dir/<base>-trained-<YYYY-MM-DD>` (UTC day), or with `-2`, `-3`, … when that
    name is taken by anything (a folder, a file, a dangling link)."""
    when = when or datetime.now(timezone.utc)
    name = f"{base_stem(base_name)}{SUFFIX}{when:%Y-%m-%d}"
    candidate, n = Path(models_dir) / name, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = Path(models_dir) / f"{name}-{n}"
    return candidate
