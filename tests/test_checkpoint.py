"""Training checkpoints: round trip, no pickle, a full disk or a crash keeps the previous one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from nsfw_desk.core.training import checkpoint as ck  # noqa: E402
from nsfw_desk.core.training.common import TrainingError  # noqa: E402


def _tensors(seed: int, size: int = 1000) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "model.weight": torch.randn(size, generator=g),
        "model.bias": torch.randn(4, 4, generator=g).t(),  # not contiguous: saved anyway
        "rng.torch": torch.get_rng_state(),
    }


def test_round_trip_and_permissions(tmp_path):
    folder = ck.checkpoint_folder(tmp_path / "model")
    assert folder == tmp_path / "model.checkpoint"
    assert ck.load_checkpoint(folder) is None
    assert not ck.has_checkpoint(folder)
    tensors = _tensors(1)
    ck.save_checkpoint(folder, tensors, {"epoch": 1, "step": 10, "history": [{"loss": 0.5}]})
    loaded, state = ck.load_checkpoint(folder)
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)
    assert (state["epoch"], state["step"], state["history"]) == (1, 10, [{"loss": 0.5}])
    assert ck.has_checkpoint(folder)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(entry.stat().st_mode & 0o777 == 0o600 for entry in folder.iterdir())
    # A second save replaces the first and leaves exactly one tensors file.
    ck.save_checkpoint(folder, _tensors(2), {"epoch": 2, "step": 20})
    loaded, state = ck.load_checkpoint(folder)
    assert state["epoch"] == 2 and torch.equal(loaded["model.weight"], _tensors(2)["model.weight"])
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "tensors-000002.safetensors"]
    ck.remove_checkpoint(folder)
    assert not folder.exists()


def test_optimizer_state_round_trips_through_tensors(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
    tensors, meta = ck.flatten_optimizer(opt.state_dict())
    ck.save_checkpoint(tmp_path / "c", tensors, {"optimizer": meta})
    loaded, state = ck.load_checkpoint(tmp_path / "c")
    other = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    other.load_state_dict(ck.unflatten_optimizer(loaded, state["optimizer"]))
    original, restored = opt.state_dict(), other.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for param, values in original["state"].items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(restored["state"][param][key]), value)


def test_never_unpickles(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path / "c", _tensors(1), {"epoch": 1})
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    assert ck.load_checkpoint(tmp_path / "c") is not None


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    folder = tmp_path / "c"
    ck.save_checkpoint(folder, _tensors(1), {"epoch": 1})
    (tensors_file,) = folder.glob("tensors-*")
    data = bytearray(tensors_file.read_bytes())
    data[-1] ^= 0xFF
    tensors_file.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match="damaged.*delete that folder"):
        ck.load_checkpoint(folder)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(TrainingError, match="cannot be read"):
        ck.load_checkpoint(folder)
    # A new save over a damaged checkpoint works.
    ck.save_checkpoint(folder, _tensors(3), {"epoch": 3})
    assert ck.load_checkpoint(folder)[1]["epoch"] == 3


def test_disk_full_while_saving_keeps_the_previous_checkpoint(small_disk):
    disk = small_disk("96k")
    folder = disk / "model.checkpoint"
    ck.save_checkpoint(folder, _tensors(1, size=5000), {"epoch": 1, "step": 7})  # ~20 kB
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    with pytest.raises(OSError) as caught:  # a second copy of ~80 kB does not fit in 96 kB
        ck.save_checkpoint(folder, _tensors(2, size=20000), {"epoch": 2, "step": 14})
    message = str(caught.value)
    assert "disk is full" in message and "previous checkpoint (epoch 1) is kept" in message
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before  # no debris
    loaded, state = ck.load_checkpoint(folder)
    assert state["step"] == 7
    assert torch.equal(loaded["model.weight"], _tensors(1, size=5000)["model.weight"])


def test_disk_full_while_writing_the_state_keeps_the_previous_checkpoint(small_disk):
    """The tensors fit, then the disk is full when state.json is written."""
    disk = small_disk("64k")
    folder = disk / "c"
    ck.save_checkpoint(folder, _tensors(1, size=100), {"epoch": 1, "step": 1})
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill the disk, then give back one page: the tiny tensors file fits, the state not
        written = 0
        try:
            while True:
                written += os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        os.ftruncate(fd, (written // 4096 - 1) * 4096)
    finally:
        os.close(fd)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    assert 0 < free < 12288
    with pytest.raises(OSError, match="previous checkpoint"):
        ck.save_checkpoint(folder, {"t": torch.zeros(1)}, {"epoch": 2, "blob": "x" * 20000})
    assert ck.load_checkpoint(folder)[1]["epoch"] == 1
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "tensors-000001.safetensors"]


def test_crash_between_files_keeps_the_previous_checkpoint(tmp_path):
    """A process killed after writing the new tensors file, before state.json is replaced."""
    folder = tmp_path / "c"
    ck.save_checkpoint(folder, _tensors(1), {"epoch": 1, "step": 5})
    script = textwrap.dedent(
        f"""
        import os, torch
        from nsfw_desk.core.training import checkpoint as ck
        ck._write_text = lambda path, text: os._exit(9)  # dies between the two files
        ck.save_checkpoint({str(folder)!r}, {{"model.weight": torch.ones(10)}}, {{"epoch": 2}})
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
    )
    assert done.returncode == 9, done.stderr.decode()
    assert len(list(folder.glob("tensors-*"))) == 2  # the crash left the new file behind
    loaded, state = ck.load_checkpoint(folder)
    assert state["epoch"] == 1 and torch.equal(loaded["model.weight"], _tensors(1)["model.weight"])
    ck.save_checkpoint(folder, _tensors(3), {"epoch": 3})  # the next save tidies up
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "tensors-000002.safetensors"]
    assert json.loads((folder / "state.json").read_text())["epoch"] == 3
