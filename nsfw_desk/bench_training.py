"""Training figures for `nsfw-desk bench`: head training on stored embeddings, and
re-scoring a library from stored embeddings with a head-only model (no decoding).

Goals (issue 11): training on 10,000 stored embeddings under 5 s, re-scoring 100,000 items
under 2 s, on a 2-core CPU. The embeddings are 192 wide, like the default model's (a ViT-tiny):
two Gaussian classes, 30 % unsafe, in a library as a scan leaves it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

WIDTH = 192
TRAIN_ITEMS = 10_000
RESCORE_ITEMS = 100_000


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _hashes(n: int, salt: int) -> list[str]:
    return [f"{salt:08x}{i:056x}" for i in range(n)]


def _embeddings(rng, n: int, unsafe: np.ndarray) -> np.ndarray:
    direction = np.random.default_rng(99).normal(size=WIDTH).astype(np.float32)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(n, WIDTH)).astype(np.float32)
    x += np.where(unsafe[:, None], 1.5, -1.5) * direction
    return x


def _store(library, model_id: str, hashes: list[str], x: np.ndarray) -> None:
    probs = np.full((len(hashes), 2), 0.5, "<f4")
    emb = x.astype("<f2")
    library.record_model_scores(
        model_id,
        ((h, 0.5, probs[i].tobytes(), emb[i].tobytes()) for i, h in enumerate(hashes)),
    )


def measure_training(workdir: Path) -> dict[str, float]:
    from nsfw_desk.core.review import DecisionInput, ReviewStore
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.store import Library
    from nsfw_desk.core.training import TrainOptions, train
    from nsfw_desk.core.training.head import train_head
    from nsfw_desk.core.training.heads import HeadScorer, rescore_from_embeddings
    from nsfw_desk.synthetic import save_random_model

    rng = np.random.default_rng(0)
    base_dir = save_random_model(
        workdir / "train-base", model_args={"img_size": 32, "embed_dim": WIDTH, "num_heads": 3}
    )
    base = load_model(base_dir, device="cpu")
    figures: dict[str, float] = {}

    # 1. train() end to end on 10,000 reviewed items with stored embeddings
    unsafe = rng.random(TRAIN_ITEMS) < 0.3
    hashes = _hashes(TRAIN_ITEMS, 1)
    library = Library(workdir / "train.sqlite")
    _store(library, base.model_id, hashes, _embeddings(rng, TRAIN_ITEMS, unsafe))
    reviews = ReviewStore(library)
    changes = [
        (DecisionInput(h, base.model_id, 0.5), "unsafe" if u else "safe")
        for h, u in zip(hashes, unsafe, strict=True)
    ]
    reviews.apply_labels(changes, reviewer="bench", threshold=0.5)
    start, cpu = time.perf_counter(), time.process_time()
    result = train(TrainOptions(workdir / "trained", base=str(base_dir), device="cpu"), library)
    figures["train_total_s"] = time.perf_counter() - start
    figures["train_total_cpu_s"] = time.process_time() - cpu
    library.close()
    record = __import__("json").loads((workdir / "trained" / "training.json").read_text())
    figures["train_head_s"] = record["train_seconds"]
    figures["train_epochs"] = record["epochs_run"]
    figures["train_items"] = TRAIN_ITEMS
    figures["train_val_accuracy"] = result.report["after"]["accuracy"]

    # 2. the head loop alone on the same 10,000 (8,000 train, 2,000 val), default settings
    x = _embeddings(rng, TRAIN_ITEMS, unsafe)
    scorer = HeadScorer.from_module(base.module, base.unsafe_indices)
    start = time.perf_counter()
    train_head(scorer, x[:8000], unsafe[:8000], x[8000:], unsafe[8000:])
    figures["head_loop_s"] = time.perf_counter() - start

    # 3. re-scoring 100,000 items from stored embeddings
    library = Library(workdir / "rescore.sqlite")
    many = _hashes(RESCORE_ITEMS, 2)
    _store(
        library,
        base.model_id,
        many,
        _embeddings(rng, RESCORE_ITEMS, rng.random(RESCORE_ITEMS) < 0.3),
    )
    start, cpu = time.perf_counter(), time.process_time()
    library.register_model(  # as train() does: the head shares the base's embeddings
        "sha256:bench-head",
        source=str(workdir / "bench-head"),
        revision=None,
        architecture=base.architecture,
        labels=base.labels,
        unsafe_labels=base.unsafe_labels,
        embeddings_of=base.model_id,
    )
    done = rescore_from_embeddings(library, base.model_id, "sha256:bench-head", scorer)
    figures["rescore_s"] = time.perf_counter() - start
    figures["rescore_cpu_s"] = time.process_time() - cpu
    figures["rescore_items"] = done
    library.close()
    return figures


def print_training(figures: dict[str, float]) -> None:
    print(
        f"  train (head mode, {figures['train_items']:,.0f} stored embeddings, 192 wide): "
        f"{figures['train_total_s']:.2f} s end to end ({figures['train_total_cpu_s']:.2f} s of "
        "CPU time, loading the base model and re-scoring the 10,000 included; the head loop "
        f"{figures['train_head_s']:.2f} s, {figures['train_epochs']:.0f} epochs with early "
        f"stopping; held-out accuracy {figures['train_val_accuracy']:.3f}); target < 5 s\n"
        f"  head loop alone : {figures['head_loop_s']:.2f} s for 8,000 train / 2,000 val\n"
        f"  re-score from stored embeddings: {figures['rescore_items']:,.0f} items in "
        f"{figures['rescore_s']:.2f} s ({figures['rescore_cpu_s']:.2f} s of CPU time; the rest "
        "is the disk and other programs), no decoding; target < 2 s\n"
        f"  CPU: {cpu_name()}",
        flush=True,
    )
