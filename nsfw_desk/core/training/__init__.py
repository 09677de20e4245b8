"""Training a better model from the moderators' decisions (head, partial or full fine-tune).

Importing this package stays cheap: torch and timm load inside the functions that need them.
"""

from nsfw_desk.core.training.common import (
    MODES,
    NotEnoughDecisions,
    TrainingError,
    TrainingStopped,
    TrainProgress,
)
from nsfw_desk.core.training.naming import default_model_dir
from nsfw_desk.core.training.train import TrainOptions, TrainResult, resumable, train

__all__ = [
    "MODES",
    "NotEnoughDecisions",
    "TrainOptions",
    "TrainProgress",
    "TrainResult",
    "TrainingError",
    "TrainingStopped",
    "default_model_dir",
    "resumable",
    "train",
]
