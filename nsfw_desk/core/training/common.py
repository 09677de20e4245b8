"""What every training mode shares: progress reports, and the errors a caller can act on."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("head", "partial", "full")


@dataclass(frozen=True)
class TrainProgress:
    """One report from a training run; sent often, but not more than about ten times a second."""

    phase: str  # "preparing" | "embeddings" | "training" | "evaluating" | "writing" | "rescoring"
    epoch: int  # 1-based; 0 before the first epoch
    epochs: int
    step: int  # global optimiser step, continuing across a resume
    steps: int  # planned optimiser steps in all
    loss: float | None = None
    val_accuracy: float | None = None
    eta_s: float | None = None
    message: str = ""  # one line for people, e.g. "epoch 2/10 · step 40/200 · loss 0.41"


class TrainingError(Exception):
    """Training cannot start or go on; the message says what is wrong and what to do."""


class NotEnoughDecisions(TrainingError):
    """Too few decisions of a class: the message gives the counts and what is missing."""


class TrainingStopped(Exception):
    """The caller asked to stop; the last complete checkpoint is kept and can be resumed."""
