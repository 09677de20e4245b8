"""`train(mode="partial")` from a library's decisions: Stop after epoch 1, resume, a model.

The fine-tuning itself is tested in test_finetune.py; this is the way the desk and
`nsfw-desk train --mode partial` reach it: the checkpoint beside MODEL_DIR, `resumable`,
the step count going on, the checkpoint removed once the model folder is written.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from nsfw_desk.core.review import DecisionInput, ReviewStore  # noqa: E402
from nsfw_desk.core.scan import scan_folder  # noqa: E402
from nsfw_desk.core.store import Library  # noqa: E402
from nsfw_desk.core.training import (  # noqa: E402
    TrainingStopped,
    TrainOptions,
    resumable,
    train,
)
from nsfw_desk.core.training.checkpoint import checkpoint_folder  # noqa: E402
from nsfw_desk.synthetic import write_family_photos  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine two spinning threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_partial_training_stops_resumes_and_writes_a_model(tmp_path, loaded_model, model_dir):
    families = write_family_photos(tmp_path / "photos", 12)
    library = Library(tmp_path / "library.sqlite")
    try:
        summary = scan_folder(tmp_path / "photos", loaded_model, library, keep_outcomes=True)
        reviews = ReviewStore(library)
        for o in summary.outcomes:
            label = "unsafe" if families[o.path] == 0 else "safe"
            item = DecisionInput(o.hash, library.last_model_for(o.path.parent), o.score, o.path)
            reviews.decide([item], label, reviewer="tester", threshold=0.5)
        out = tmp_path / "models" / "partial"
        options = TrainOptions(
            out, base=str(model_dir), mode="partial", epochs=2, batch_size=10, device="cpu"
        )
        assert not resumable(out)
        with pytest.raises(TrainingStopped, match="checkpoint after epoch 1"):
            train(options, library, should_stop=lambda: resumable(out))
        assert resumable(out) and not out.exists()

        reports = []
        options.resume = True
        result = train(options, library, progress=reports.append)
    finally:
        library.close()
    steps = [r.step for r in reports if r.phase == "training"]
    assert steps[0] == 3 and steps[-1] == 4  # 20 training images, 2 steps an epoch
    record = json.loads((out / "training.json").read_text())
    assert record["mode"] == "partial"
    assert [h["step"] for h in record["history"]] == [2, 4]
    assert not checkpoint_folder(out).exists() and not resumable(out)
    assert "after" in result.report and (out / "model.safetensors").is_file()
