"""A model folder is written whole or not at all; an earlier one survives any failure."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from nsfw_desk.core import model_folder
from nsfw_desk.core.model_folder import ModelFolderError, base_config, write_model_folder


def _state_and_config(model_dir):
    import safetensors.torch

    state = safetensors.torch.load_file(str(model_dir / "model.safetensors"))
    return state, base_config(model_dir)


def test_written_folder_loads_like_any_model(tmp_path, model_dir):
    from nsfw_desk.core.runtime import load_model

    state, config = _state_and_config(model_dir)
    out = tmp_path / "models" / "mine"
    write_model_folder(out, state, config, {"training.json": "{}\n", "report.json": b"{}"})
    assert sorted(os.listdir(out)) == [
        "config.json",
        "model.safetensors",
        "report.json",
        "training.json",
    ]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((out / n).stat().st_mode) == 0o600 for n in os.listdir(out))
    assert [p.name for p in out.parent.iterdir()] == ["mine"]  # no temporary left behind
    loaded = load_model(out, device="cpu")
    assert loaded.labels == config["label_names"]
    assert loaded.architecture == config["architecture"]


def test_failure_while_writing_leaves_the_earlier_folder_intact(tmp_path, model_dir, monkeypatch):
    state, config = _state_and_config(model_dir)
    out = tmp_path / "mine"
    write_model_folder(out, state, config, {"training.json": "first"})
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    real = model_folder._write_file

    def full_disk(path, data):
        if path.name == "model.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(model_folder, "_write_file", full_disk)
    with pytest.raises(OSError) as caught:
        write_model_folder(out, state, config, {"training.json": "second"})
    assert caught.value.errno == errno.ENOSPC
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_a_full_disk_leaves_the_earlier_folder_intact(small_disk, model_dir):
    state, config = _state_and_config(model_dir)
    disk = small_disk("2m")  # room for one copy of the weights (1.2 MB), not two
    out = disk / "mine"
    write_model_folder(out, state, config, {"training.json": "first"})
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    with pytest.raises(OSError) as caught:
        write_model_folder(out, state, config, {"training.json": "second"})
    assert caught.value.errno == errno.ENOSPC
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    assert [p.name for p in disk.iterdir()] == ["mine"]


def test_a_folder_of_other_things_is_not_replaced(tmp_path, model_dir):
    state, config = _state_and_config(model_dir)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "letter.txt").write_text("keep me")
    with pytest.raises(ModelFolderError, match="neither empty nor a model folder"):
        write_model_folder(tmp_path / "docs", state, config)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFolderError, match="not a folder"):
        write_model_folder(tmp_path / "file", state, config)
    assert (tmp_path / "docs" / "letter.txt").read_text() == "keep me"


def test_base_config_says_what_is_wrong(tmp_path, model_dir):
    assert base_config(model_dir)["label_names"] == ["NSFW", "SFW"]
    with pytest.raises(ModelFolderError, match="not a model folder"):
        base_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="cannot be read as JSON"):
        base_config(tmp_path)
