"""`nsfw-desk train` on bad input and interruptions: each says what happened and what was kept.

Stop, Ctrl+C, a full disk while a checkpoint is written, a base whose architecture does not
match the checkpoint, decided files that are gone or no longer decode; all through
`cli.main`, on 12 + 12 tiny synthetic pictures (partial mode: two steps an epoch).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from nsfw_desk import cli_train  # noqa: E402
from nsfw_desk.cli import main  # noqa: E402
from nsfw_desk.core import training  # noqa: E402
from nsfw_desk.core.review import DecisionInput, ReviewStore  # noqa: E402
from nsfw_desk.core.scan import scan_folder  # noqa: E402
from nsfw_desk.core.store import Library  # noqa: E402
from nsfw_desk.core.training import checkpoint as checkpoint_mod  # noqa: E402
from nsfw_desk.core.training import resumable  # noqa: E402
from nsfw_desk.core.training.checkpoint import checkpoint_folder  # noqa: E402
from nsfw_desk.synthetic import save_random_model, write_family_photos  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine two spinning threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def decided(tmp_path, loaded_model):
    """A library with 12 + 12 scanned pictures, all decided; the paths of each class."""
    families = write_family_photos(tmp_path / "photos", 12)
    with Library(tmp_path / "library.sqlite") as library:
        summary = scan_folder(tmp_path / "photos", loaded_model, library, keep_outcomes=True)
        reviews = ReviewStore(library)
        for o in summary.outcomes:
            label = "unsafe" if families[o.path] == 0 else "safe"
            item = DecisionInput(o.hash, library.last_model_for(o.path.parent), o.score, o.path)
            reviews.decide([item], label, reviewer="tester", threshold=0.5)
    by_class: dict[str, list[Path]] = {"unsafe": [], "safe": []}
    for path, family in sorted(families.items()):
        by_class["unsafe" if family == 0 else "safe"].append(path)
    return tmp_path / "library.sqlite", by_class


def train_cli(db, out, base, *extra) -> int:
    return main(
        [
            "train",
            "--out",
            str(out),
            "--base",
            str(base),
            "--db",
            str(db),
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--seed",
            "0",
            *extra,
        ]
    )


PARTIAL = ("--mode", "partial", "--epochs", "2", "--batch-size", "10")


def stop_when(monkeypatch, condition):
    """`train` as the CLI calls it, with Stop pressed once `condition(report)` held."""
    real = training.train

    def with_stop(options, library, *, progress=None, should_stop=None):
        seen = []

        def spy(report):
            seen.append(report)
            if progress is not None:
                progress(report)

        return real(options, library, progress=spy, should_stop=lambda: any(map(condition, seen)))

    monkeypatch.setattr(training, "train", with_stop)


def ctrl_c_when(monkeypatch, condition):
    """Ctrl+C (KeyboardInterrupt) from inside the run once a report meets `condition`."""
    real = cli_train._Lines.__call__

    def interrupting(self, report):
        if condition(report):
            raise KeyboardInterrupt
        real(self, report)

    monkeypatch.setattr(cli_train._Lines, "__call__", interrupting)


def training_step(report) -> bool:
    return report.phase == "training" and report.step > 0


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_stop_and_ctrl_c_say_whether_a_checkpoint_is_kept(
    tmp_path, decided, model_dir, monkeypatch, capsys
):
    db, _ = decided
    out = tmp_path / "models" / "partial"
    # Stop in the first epoch: nothing to resume, and it says so.
    with monkeypatch.context() as m:
        stop_when(m, training_step)
        assert train_cli(db, out, model_dir, *PARTIAL) == 1
    err = capsys.readouterr().err
    assert "during the first epoch, before any checkpoint: there is nothing to resume" in err
    assert "--resume continues" not in err and "Traceback" not in err
    assert not out.exists() and not resumable(out)
    # Ctrl+C in the first epoch: the same truth.
    with monkeypatch.context() as m:
        ctrl_c_when(m, training_step)
        assert train_cli(db, out, model_dir, *PARTIAL, "-q") == 1
    err = capsys.readouterr().err
    assert "interrupted; nothing was written" in err and "no checkpoint was kept yet" in err
    assert "--resume" not in err and not resumable(out)
    # Stop after epoch 1: the checkpoint is kept, and the message says --resume continues.
    with monkeypatch.context() as m:
        stop_when(m, lambda r: r.phase == "training" and r.epoch == 2)
        assert train_cli(db, out, model_dir, *PARTIAL) == 1
    err = capsys.readouterr().err
    assert "the checkpoint after epoch 1 (step 2) is kept: resume to continue" in err
    assert resumable(out) and not out.exists()
    kept = files_of(checkpoint_folder(out))
    # Ctrl+C during the resumed run: the checkpoint is still there, and it says so.
    with monkeypatch.context() as m:
        ctrl_c_when(m, training_step)
        assert train_cli(db, out, model_dir, *PARTIAL, "--resume", "-q") == 1
    err = capsys.readouterr().err
    assert "checkpoint of the last finished epoch is kept" in err and "--resume" in err
    assert files_of(checkpoint_folder(out)) == kept
    # A base of another architecture (one block, not two) is refused, the checkpoint intact.
    shallow = save_random_model(tmp_path / "shallow", model_args={"depth": 1})
    assert train_cli(db, out, shallow, *PARTIAL, "--unfreeze-blocks", "1", "--resume") == 2
    err = capsys.readouterr().err
    assert "is from a different training run (differs in: architecture" in err
    assert "Traceback" not in err
    assert files_of(checkpoint_folder(out)) == kept and not out.exists()
    # Resuming with the right base finishes; the record says it was resumed.
    assert train_cli(db, out, model_dir, *PARTIAL, "--resume", "-q") == 0
    printed = capsys.readouterr().out
    assert "resumed after epoch 1" in printed
    record = json.loads((out / "training.json").read_text())
    assert record["resumed_from_epoch"] == 1 and record["early_stopped"] is False
    assert record["images"]["missing"] == 0 and record["images"]["left_out"] == 0


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(
    tmp_path, decided, model_dir, monkeypatch, capsys
):
    db, _ = decided
    out = tmp_path / "models" / "partial"
    real = checkpoint_mod.write_durably
    writes = []

    def full_after_the_first_checkpoint(path, data, **how):
        writes.append(path.name)
        if any("state" in name for name in writes[:-1]):  # epoch 1's checkpoint is complete
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, **how)

    monkeypatch.setattr(checkpoint_mod, "write_durably", full_after_the_first_checkpoint)
    assert train_cli(db, out, model_dir, *PARTIAL, "-q") == 5
    err = capsys.readouterr().err
    assert "is full" in err and "Nothing was written to" in err
    assert "checkpoint of the last finished epoch is kept" in err and "--resume" in err
    assert "Traceback" not in err and not out.exists()
    stored = checkpoint_mod.load_checkpoint(checkpoint_folder(out))
    assert stored is not None and stored[1]["epoch"] == 1
    assert [p.name for p in checkpoint_folder(out).iterdir() if "partial" in p.name] == []


def test_files_gone_or_broken_are_reported_in_the_summary_and_training_json(
    tmp_path, decided, model_dir, capsys
):
    db, by_class = decided
    gone = by_class["unsafe"][0]
    gone.unlink()
    broken = by_class["safe"][0]
    broken.write_bytes(b"not an image any more")
    out = tmp_path / "models" / "partial"
    assert train_cli(db, out, model_dir, "--mode", "partial", "--epochs", "1", "-q") == 0
    printed = capsys.readouterr().out
    assert f"1 decided item left out: no file holds its content any more, e.g. {gone}" in printed
    assert f"1 image left out: no longer decoded or content changed since the scan: {broken}: " in (
        printed
    )
    record = json.loads((out / "training.json").read_text())
    images = record["images"]
    assert images["missing"] == 1 and len(images["missing_hashes"]) == 1
    assert images["left_out"] == 1
    assert images["left_out_files"][0]["path"] == str(broken) and images["left_out_files"][0]["why"]
    assert record["decisions"]["counts"] == {"unsafe": 11, "safe": 12}
    assert record["early_stopped"] is False and record["resumed_from_epoch"] == 0


def test_files_gone_leaving_too_few_of_a_class_are_said(tmp_path, decided, model_dir, capsys):
    db, by_class = decided
    for path in by_class["safe"][:3]:
        path.unlink()
    out = tmp_path / "models" / "partial"
    assert train_cli(db, out, model_dir, "--mode", "partial", "-q") == 2
    err = capsys.readouterr().err
    assert "12 unsafe and 9 safe" in err and "Review 1 more safe item(s) first" in err
    assert "3 decided items left out: no file holds their content any more, e.g." in err
    assert "Traceback" not in err and not out.exists() and not resumable(out)


def test_head_mode_stop_and_resume_say_it_starts_again(
    tmp_path, decided, model_dir, monkeypatch, capsys
):
    db, _ = decided
    out = tmp_path / "models" / "head"
    with monkeypatch.context() as m:
        stop_when(m, training_step)
        assert train_cli(db, out, model_dir) == 1
    err = capsys.readouterr().err
    assert "before anything was saved; a head keeps no checkpoint" in err
    assert "train again to start over" in err and "--resume" not in err
    assert not out.exists() and not resumable(out)
    assert list(out.parent.iterdir()) == [] if out.parent.exists() else True
    with monkeypatch.context() as m:
        ctrl_c_when(m, training_step)
        assert train_cli(db, out, model_dir, "-q") == 1
    err = capsys.readouterr().err
    assert "a head keeps no checkpoint: run the command again" in err and not out.exists()
    # --resume in head mode is not silent: it says the run started again from the base.
    assert train_cli(db, out, model_dir, "--resume") == 0
    captured = capsys.readouterr()
    assert "--resume does nothing in head mode" in captured.err  # said at once
    assert "--resume: head mode keeps no checkpoint" in captured.out  # and the summary
    assert (out / "model.safetensors").is_file()


def test_stop_before_the_first_epoch_and_while_evaluating_the_result(
    tmp_path, decided, model_dir, monkeypatch, capsys
):
    db, _ = decided
    out = tmp_path / "models" / "partial"
    one_epoch = ("--mode", "partial", "--epochs", "1", "--batch-size", "10")
    # Stop while the base model scores the held-out images, before any training step.
    with monkeypatch.context() as m:
        stop_when(m, lambda r: r.phase == "preparing")
        assert train_cli(db, out, model_dir, *one_epoch) == 1
    err = capsys.readouterr().err
    assert "stopped before the first epoch, before any checkpoint: there is nothing" in err
    assert "  training: " not in err and not resumable(out) and not out.exists()
    # Stop once training is done, while the new model is evaluated: its checkpoint is kept,
    # and resuming writes the model without another training step.
    with monkeypatch.context() as m:
        stop_when(m, lambda r: r.phase == "evaluating" and r.message.startswith("before/after"))
        assert train_cli(db, out, model_dir, *one_epoch) == 1
    err = capsys.readouterr().err
    assert "stopped while evaluating the trained model; its checkpoint is kept" in err
    assert resumable(out) and not out.exists()
    assert train_cli(db, out, model_dir, *one_epoch, "--resume") == 0
    captured = capsys.readouterr()
    assert "  training: " not in captured.err, captured.err
    assert "resumed after epoch 1" in captured.out
    assert json.loads((out / "training.json").read_text())["epochs_run"] == 1
    assert not resumable(out)
