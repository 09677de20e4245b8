"""Head mode: a new linear head on the frozen backbone, trained on stored embeddings.

The loss reads the head's classes as the two the desk decides between: log P(unsafe) is the
log of the summed softmax of the unsafe classes (for a two-class model this is plain
cross-entropy), so a base model with any label set keeps its labels and their order. The
classes are weighted inversely to their counts (balanced), so a library with ten times more
safe than unsafe decisions still learns both. Full-batch-free mini-batches with AdamW, warm
started from the base head; early stopping on validation loss keeps the best epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nsfw_desk.core.defaults import THRESHOLD
from nsfw_desk.core.training.common import TrainingStopped, TrainProgress
from nsfw_desk.core.training.heads import HeadScorer

EPOCHS = 100
BATCH_SIZE = 1024
LR = 1e-2
WEIGHT_DECAY = 1e-4
PATIENCE = 8
REPORT_INTERVAL_S = 0.1


@dataclass
class HeadOutcome:
    weight: np.ndarray  # best epoch's (C, D)
    bias: np.ndarray
    best_epoch: int
    epochs_run: int
    steps: int
    class_weights: dict[str, float]
    history: list[dict] = field(default_factory=list)


def class_weights(is_unsafe: np.ndarray) -> tuple[float, float]:
    """Balanced weights (unsafe, safe): n / (2 · n_class)."""
    n = len(is_unsafe)
    n_unsafe = int(is_unsafe.sum())
    return n / (2 * n_unsafe), n / (2 * (n - n_unsafe))


def train_head(
    start: HeadScorer,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    seed: int = 0,
    patience: int = PATIENCE,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> HeadOutcome:
    """Train a head like `start` on (x, y is_unsafe); returns the best epoch's weights.

    One thread: the matrices are small (batch × embedding width), and torch's thread pool
    costs more in wake-ups than it saves (10 ms a step instead of 0.1 on a busy 2-core CPU).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        yt = torch.from_numpy(np.asarray(y_train, dtype=bool))
        xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
        yv = torch.from_numpy(np.asarray(y_val, dtype=bool))
        w_unsafe, w_safe = class_weights(np.asarray(y_train, dtype=bool))
        weight = torch.nn.Parameter(torch.from_numpy(start.weight.copy()))
        bias = torch.nn.Parameter(torch.from_numpy(start.bias.copy()))
        unsafe_mask = torch.zeros(weight.shape[0], dtype=torch.bool)
        unsafe_mask[start.unsafe_indices] = True
        optimiser = torch.optim.AdamW(
            [weight, bias], lr=lr, weight_decay=WEIGHT_DECAY, foreach=False
        )

        unsafe_at = torch.nonzero(unsafe_mask).flatten()
        safe_at = torch.nonzero(~unsafe_mask).flatten()
        two_classes = len(unsafe_at) == 1 and len(safe_at) == 1
        pair_weights = torch.zeros(weight.shape[0])
        pair_weights[unsafe_at], pair_weights[safe_at] = w_unsafe, w_safe

        def losses(x, y):
            logits = x @ weight.T + bias
            if two_classes:  # plain weighted cross-entropy: the same loss, fewer operations
                target = torch.where(y, unsafe_at[0], safe_at[0])
                loss = torch.nn.functional.cross_entropy(logits, target, weight=pair_weights)
                return loss, torch.log_softmax(logits, dim=1)[:, unsafe_at[0]]
            log_probs = torch.log_softmax(logits, dim=1)
            log_unsafe = torch.logsumexp(log_probs.index_select(1, unsafe_at), dim=1)
            log_safe = torch.logsumexp(log_probs.index_select(1, safe_at), dim=1)
            nll = torch.where(y, -log_unsafe, -log_safe)
            per_item_weight = torch.where(y, w_unsafe, w_safe)
            return (nll * per_item_weight).sum() / per_item_weight.sum(), log_unsafe

        n = len(xt)
        per_epoch = max(1, -(-n // batch_size))
        total = epochs * per_epoch
        best = (float("inf"), weight.detach().clone(), bias.detach().clone(), 0)
        history: list[dict] = []
        step, since_best, last_report, started = 0, 0, 0.0, time.monotonic()
        epoch = 0
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=generator)
            running = 0.0
            for start_at in range(0, n, batch_size):
                if should_stop is not None and should_stop():
                    raise TrainingStopped(
                        f"stopped in epoch {epoch}, before anything was saved; a head keeps no "
                        "checkpoint (it trains in seconds): train again to start over"
                    )
                index = order[start_at : start_at + batch_size]
                loss, _ = losses(xt[index], yt[index])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                running += float(loss.detach()) * len(index)
            with torch.no_grad():
                val_loss, log_unsafe = losses(xv, yv)
                val_accuracy = float(((log_unsafe.exp() >= THRESHOLD) == yv).float().mean())
            record = {
                "epoch": epoch,
                "train_loss": running / n,
                "val_loss": float(val_loss),
                "val_accuracy": val_accuracy,
                "lr": lr,
            }
            history.append(record)
            if record["val_loss"] < best[0] - 1e-6:
                best = (record["val_loss"], weight.detach().clone(), bias.detach().clone(), epoch)
                since_best = 0
            else:
                since_best += 1
            now = time.monotonic()
            stopping = since_best >= patience
            last = stopping or epoch == epochs  # the final figures always reach the caller
            if progress is not None and (now - last_report >= REPORT_INTERVAL_S or last):
                last_report = now
                eta = (now - started) / step * (total - step) if not last else 0.0
                progress(
                    TrainProgress(
                        "training",
                        epoch,
                        epochs,
                        step,
                        total,
                        record["train_loss"],
                        val_accuracy,
                        eta,
                        f"epoch {epoch}/{epochs} · step {step}/{total} · loss "
                        f"{record['train_loss']:.3f} · val acc {val_accuracy:.3f}"
                        + ("" if last else f" · {eta:.0f} s left"),
                    )
                )
            if stopping:
                break
        return HeadOutcome(
            best[1].numpy().astype(np.float32),
            best[2].numpy().astype(np.float32),
            best[3],
            epoch,
            step,
            {"unsafe": w_unsafe, "safe": w_safe},
            history,
        )
    finally:
        torch.set_num_threads(threads)
