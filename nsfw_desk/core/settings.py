"""User settings, kept as JSON in the platformdirs config folder (owner-only, atomic writes)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import platformdirs

from nsfw_desk.core import defaults
from nsfw_desk.core.detector_columns import FLAG_RULES, clean_detectors, enabled_detectors
from nsfw_desk.core.logs import log_problem
from nsfw_desk.core.review import default_reviewer
from nsfw_desk.core.store import APP_NAME

log = logging.getLogger(__name__)
MAX_RECENT = 10


def settings_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.json"


@dataclass
class Settings:
    """What the desk remembers between runs; unknown or invalid entries fall back to defaults."""

    model: str = ""  # hub id or local folder; "" is the pinned default model
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 0  # 0: auto (defaults.BATCH_SIZE on the CPU, CUDA_BATCH_SIZE on CUDA)
    blur_strength: int = 12  # 1 (barely) to 32 (shapes only)
    # Grayscale from the first run: with the blur it makes a disturbing picture far less
    # vivid, and revealing (Space) still shows the original in colour.
    grayscale: bool = True
    reviewer: str = field(default_factory=default_reviewer)
    auto_advance: bool = True
    group_near_duplicates: bool = False  # View → Group near-duplicates (D)
    threshold: float = defaults.THRESHOLD
    thumbnail_size: int = 160
    sort: str = "score"
    filter: str = "all"
    recent_folders: list[str] = field(default_factory=list)
    window_geometry: str = ""  # base64 of Qt's saveGeometry()
    window_state: str = ""
    splitter_state: str = ""
    # Several detectors (issue 13): {"model", "threshold", "enabled"} each, the first enabled
    # one the primary; empty: the single `model` at `threshold`. core/detector_columns.py
    detectors: list[dict] = field(default_factory=list)
    flag_rule: str = "any"  # "any": flagged when any enabled detector is over its threshold
    # Care for the reviewer (core/care.py): a break reminder after this many minutes of
    # continuous review (0: never), and at most this many reveals a day (0: no cap).
    break_minutes: int = 25
    max_reveals_per_day: int = 0

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        path = path or settings_path()
        settings = cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return settings
        except (OSError, ValueError) as exc:
            log_problem(log, "settings file unreadable, using defaults", exc)
            return settings
        if not isinstance(data, dict):
            return settings
        for f in fields(cls):
            value = data.get(f.name)
            default = getattr(settings, f.name)
            if value is not None and type(value) is type(default):
                setattr(settings, f.name, value)
            elif isinstance(default, float) and isinstance(value, int):
                setattr(settings, f.name, float(value))
        settings.threshold = min(1.0, max(0.0, settings.threshold))
        settings.blur_strength = min(32, max(1, settings.blur_strength))
        settings.batch_size = max(0, settings.batch_size)
        settings.detectors = clean_detectors(settings.detectors, settings.threshold)
        if settings.flag_rule not in FLAG_RULES:
            settings.flag_rule = "any"
        settings.break_minutes = max(0, settings.break_minutes)
        settings.max_reveals_per_day = max(0, settings.max_reveals_per_day)
        return settings

    def save(self, path: Path | None = None) -> None:
        path = path or settings_path()
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".settings.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(self), fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def detector_specs(self) -> list[tuple[str, float]]:
        """(model, threshold) of the enabled detectors, the primary first."""
        return enabled_detectors(self.detectors, self.model, self.threshold)

    def add_recent(self, folder: Path | str) -> None:
        text = str(folder)
        self.recent_folders = [text] + [f for f in self.recent_folders if f != text]
        del self.recent_folders[MAX_RECENT:]

    def forget_recent(self, folder: Path | str) -> None:
        self.recent_folders = [f for f in self.recent_folders if f != str(folder)]
