"""CPU precision modes (int8, compile, onnx, openvino beside fp32/bf16), the bench profile
`auto` reads, NSFW_DESK_NO_BF16, clear refusals, the startup split, and `bench --library`."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
import torch

from nsfw_desk.core import precision, runtime
from nsfw_desk.core.hub import ModelError
from nsfw_desk.core.precision import (
    FLIP_BUDGET_PCT,
    PRECISIONS,
    TOLERANCE,
    ModeFigures,
    Profile,
    load_profile,
    machine_key,
    profile_path,
    save_profile,
)
from nsfw_desk.core.runtime import choose_precision, choose_precision_why, load_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def batch(loaded_model):
    generator = torch.Generator().manual_seed(3)
    return torch.rand(5, *loaded_model.data_config["input_size"], generator=generator)


@pytest.fixture(autouse=True)
def profiles_stay_in_their_test():
    """A profile a test saves would steer `auto` in every later test of the session."""
    yield
    shutil.rmtree(precision.cache_folder("profiles"), ignore_errors=True)


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setenv(precision.NO_BF16_ENV, "1")


@pytest.fixture
def native_bf16(monkeypatch):
    """As on a CPU with AVX512-BF16 (the flag in /proc/cpuinfo), whatever this one has."""
    monkeypatch.delenv(precision.NO_BF16_ENV, raising=False)
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            import io

            return io.StringIO("model name\t: Test CPU\nflags\t\t: sse avx512_bf16\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)


def agree(mode_model, fp32_model, batch, tolerance):
    low, full = mode_model.predict(batch), fp32_model.predict(batch)
    assert low.probabilities.dtype == low.embeddings.dtype == np.float32
    assert low.embeddings.shape == full.embeddings.shape
    np.testing.assert_allclose(low.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(low.unsafe_scores - full.unsafe_scores).max() <= tolerance
    return low, full


def test_int8_agrees_with_fp32_and_quantizes_the_linear_layers(model_dir, loaded_model, batch):
    model = load_model(model_dir, device="cpu", precision="int8")
    assert model.describe() == f"CPU · int8 · {model.threads} threads"
    low, full = agree(model, loaded_model, batch, TOLERANCE["int8"])
    assert not np.array_equal(low.unsafe_scores, full.unsafe_scores)  # int8 really ran
    from nsfw_desk.core.accel.int8 import quantize

    quantized = quantize(loaded_model.module)
    kinds = {type(m).__name__ for m in quantized.modules()}
    assert "Linear" in {k.split(".")[-1] for k in kinds}  # the dynamic quantized Linear
    assert any("quantized" in type(m).__module__ for m in quantized.modules())
    # The loaded fp32 model is left as it was (quantize works on a copy).
    assert not any("quantized" in type(m).__module__ for m in loaded_model.module.modules())


def test_onnx_agrees_with_fp32_and_exports_once(model_dir, loaded_model, batch, caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from nsfw_desk.core.accel.onnx_runner import export_path

    path = export_path(loaded_model.model_id)
    path.unlink(missing_ok=True)
    with caplog.at_level(logging.INFO, logger="nsfw_desk.core.accel.onnx_runner"):
        model = load_model(model_dir, device="cpu", precision="onnx")
    assert path.is_file() and "exported the model once" in caplog.text
    low, full = agree(model, loaded_model, batch, TOLERANCE["onnx"])
    np.testing.assert_allclose(low.embeddings, full.embeddings, atol=1e-3)
    assert model.predict(batch[:1]).embeddings.shape == (1, full.embeddings.shape[1])
    caplog.clear()
    stamp = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="nsfw_desk.core.accel.onnx_runner"):
        load_model(model_dir, device="cpu", precision="onnx")
    assert "exported" not in caplog.text and path.stat().st_mtime_ns == stamp


def test_onnx_int8_agrees_with_fp32(model_dir, loaded_model, batch):
    pytest.importorskip("onnxruntime")
    model = load_model(model_dir, device="cpu", precision="onnx-int8")
    assert model.runner.path.name.endswith("-int8.onnx")
    low, full = agree(model, loaded_model, batch, TOLERANCE["onnx-int8"])
    assert not np.array_equal(low.unsafe_scores, full.unsafe_scores)  # int8 really ran


def test_onnx_reexports_a_damaged_cached_file(model_dir, loaded_model, batch):
    pytest.importorskip("onnxruntime")
    from nsfw_desk.core.accel.onnx_runner import export_path

    path = export_path(loaded_model.model_id)
    path.write_bytes(b"not an onnx graph")
    model = load_model(model_dir, device="cpu", precision="onnx")
    agree(model, loaded_model, batch, TOLERANCE["onnx"])


def test_openvino_agrees_with_fp32_and_reuses_the_export(model_dir, loaded_model, batch):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from nsfw_desk.core.accel.onnx_runner import export_path
    from nsfw_desk.core.accel.openvino_runner import compile_cache_dir

    model = load_model(model_dir, device="cpu", precision="openvino")
    assert model.runner.path == export_path(loaded_model.model_id)  # the onnx mode's export
    assert model.describe() == f"CPU · openvino · {model.threads} threads"
    low, full = agree(model, loaded_model, batch, TOLERANCE["openvino"])
    np.testing.assert_allclose(low.embeddings, full.embeddings, atol=1e-3)
    # A short last batch runs on the same compiled model (the batch axis is dynamic).
    assert model.predict(batch[:1]).embeddings.shape == (1, full.embeddings.shape[1])
    # Compiled blobs land in the app's cache folder, OpenVINO's own format (no pickles).
    cached = list(compile_cache_dir().iterdir())
    assert cached and all(p.suffix in (".blob", ".cl_cache", ".json", "") for p in cached)


def test_openvino_reexports_a_damaged_cached_file(model_dir, loaded_model, batch):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from nsfw_desk.core.accel.onnx_runner import export_path

    path = export_path(loaded_model.model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an onnx graph")
    model = load_model(model_dir, device="cpu", precision="openvino")
    agree(model, loaded_model, batch, TOLERANCE["openvino"])


def test_forcing_openvino_without_it_says_how_to_install(monkeypatch, model_dir):
    monkeypatch.setattr(precision, "has_openvino", lambda: False)
    with pytest.raises(ModelError, match=r"pip install 'nsfw-desk\[openvino\]'"):
        choose_precision(CPU, "openvino")
    with pytest.raises(ModelError, match="OpenVINO"):
        load_model(model_dir, device="cpu", precision="openvino")
    with pytest.raises(ModelError, match="CPU only"):
        choose_precision(torch.device("cuda"), "openvino")


def test_auto_picks_openvino_only_when_shown_and_installed(no_bf16, monkeypatch):
    save_profile(_profile(fp32=(10, 0), onnx=(13, 0.0), openvino=(21, 0.0), int8=(30, 1.0)))
    monkeypatch.setattr(precision, "has_onnxruntime", lambda: True)
    monkeypatch.setattr(precision, "has_openvino", lambda: True)
    chosen, why = choose_precision_why(CPU, "auto", "test_vit")
    assert chosen == "openvino" and "2.10× fp32" in why
    monkeypatch.setattr(precision, "has_openvino", lambda: False)  # uninstalled since
    assert choose_precision(CPU, "auto", "test_vit") == "onnx"
    save_profile(_profile(fp32=(10, 0), openvino=(21, 0.6)))  # over the flip budget
    monkeypatch.setattr(precision, "has_openvino", lambda: True)
    assert choose_precision(CPU, "auto", "test_vit") == "fp32"


@pytest.mark.slow
def test_compile_agrees_with_fp32(model_dir, loaded_model, batch, tmp_path, monkeypatch, request):
    """Minutes on a small shared CPU (Inductor compiles C++): run with -m slow."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("torch.compile builds C++ kernels (minutes on 2 busy cores): -m slow")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = load_model(model_dir, device="cpu", precision="compile")
    agree(model, loaded_model, batch, TOLERANCE["compile"])
    assert list(model.runner.first_call_s) == [8]  # 5 images padded to the compiled 8
    assert any((tmp_path / "inductor").iterdir())  # artefacts on disk for the next run


def test_compile_pads_batches_to_few_shapes():
    from nsfw_desk.core.accel.compiled import padded_size

    assert [padded_size(n) for n in (1, 7, 8, 9, 16, 17)] == [8, 8, 8, 16, 16, 32]


def test_compile_keeps_its_cache_in_the_app_cache_folder(monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from nsfw_desk.core.accel.compiled import CACHE_ENV, inductor_cache_dir

    monkeypatch.setenv(CACHE_ENV, default_cache_dir())  # what Inductor writes there itself
    assert inductor_cache_dir() == str(precision.cache_folder("inductor"))
    monkeypatch.setenv(CACHE_ENV, "/somewhere/the/user/chose")
    assert inductor_cache_dir() == "/somewhere/the/user/chose"


def test_precision_list_has_every_mode():
    assert PRECISIONS == (
        "auto",
        "fp32",
        "fp16",
        "bf16",
        "int8",
        "compile",
        "onnx",
        "onnx-int8",
        "openvino",
    )
    assert set(TOLERANCE) == set(PRECISIONS) - {"auto"}


def test_no_bf16_env_makes_auto_fp32(native_bf16, monkeypatch):
    assert runtime.cpu_has_native_bf16()
    assert choose_precision(CPU) == "bf16"
    monkeypatch.setenv(precision.NO_BF16_ENV, "1")
    assert not runtime.cpu_has_native_bf16()
    chosen, why = choose_precision_why(CPU, "auto", "test_vit")
    assert chosen == "fp32" and precision.NO_BF16_ENV in why
    monkeypatch.setenv(precision.NO_BF16_ENV, "0")
    assert choose_precision(CPU) == "bf16"


def _profile(**modes: tuple[float, float]) -> Profile:
    cpu, torch_version, arch = machine_key("test_vit")
    return Profile(
        cpu, torch_version, arch, {m: ModeFigures(r, f, 0.01) for m, (r, f) in modes.items()}
    )


def test_auto_picks_the_fastest_mode_within_the_flip_budget(no_bf16):
    save_profile(_profile(fp32=(10, 0), int8=(30, 2.0), onnx=(18, 0.25), fp16=(11, 0)))
    pytest.importorskip("onnxruntime")
    chosen, why = choose_precision_why(CPU, "auto", "test_vit")
    assert chosen == "onnx"  # int8 is faster but flipped 2 % > FLIP_BUDGET_PCT
    assert "bench profile" in why and "1.80× fp32" in why
    assert FLIP_BUDGET_PCT == 0.5


def test_auto_never_picks_what_the_profile_did_not_show(no_bf16):
    save_profile(_profile(fp32=(10, 0), int8=(30, 0.6)))
    assert choose_precision(CPU, "auto", "test_vit") == "fp32"
    # An architecture the bench never ran: today's rule.
    assert choose_precision(CPU, "auto", "other_arch") == "fp32"


def test_auto_without_native_bf16_ignores_a_bf16_entry(no_bf16):
    save_profile(_profile(fp32=(10, 0), bf16=(40, 0.0), int8=(15, 0.0)))
    assert choose_precision(CPU, "auto", "test_vit") == "int8"


def test_auto_with_native_bf16_compares_against_bf16(native_bf16):
    save_profile(_profile(fp32=(10, 0), bf16=(20, 0.0), int8=(15, 0.0)))
    assert choose_precision(CPU, "auto", "test_vit") == "bf16"


def test_profile_missing_means_todays_rule(no_bf16):
    profile_path(machine_key("test_vit")).unlink(missing_ok=True)
    assert load_profile("test_vit") is None
    assert choose_precision_why(CPU, "auto", "test_vit") == precision.default_choice(CPU)
    assert choose_precision(CPU, "auto", "test_vit") == "fp32"


def test_profile_from_another_cpu_or_torch_is_ignored(no_bf16, monkeypatch):
    save_profile(_profile(fp32=(10, 0), int8=(30, 0.0)))
    assert choose_precision(CPU, "auto", "test_vit") == "int8"
    path = profile_path(machine_key("test_vit"))
    data = json.loads(path.read_text())
    for field, other in (("cpu", "Another CPU"), ("torch", "1.0.0")):
        path.write_text(json.dumps({**data, field: other}))  # copied from another machine
        assert load_profile("test_vit") is None
        assert choose_precision(CPU, "auto", "test_vit") == "fp32"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(precision, "cpu_model_name", lambda: "Another CPU")
    assert load_profile("test_vit") is None  # looked up under this CPU's own key
    assert choose_precision(CPU, "auto", "test_vit") == "fp32"


def test_unreadable_profile_is_ignored(no_bf16):
    profile_path(machine_key("test_vit")).write_text("{not json")
    assert choose_precision(CPU, "auto", "test_vit") == "fp32"


def test_auto_on_cuda_and_mps_ignores_the_profile(no_bf16):
    save_profile(_profile(fp32=(10, 0), int8=(30, 0.0)))
    assert choose_precision(torch.device("cuda"), "auto", "test_vit") == "fp16"
    assert choose_precision(torch.device("mps"), "auto", "test_vit") == "fp32"


def test_load_model_logs_and_describes_autos_choice(model_dir, no_bf16, caplog):
    save_profile(_profile(fp32=(10, 0), int8=(30, 0.0)))
    with caplog.at_level(logging.INFO, logger="nsfw_desk.core.runtime"):
        model = load_model(model_dir, device="cpu")
    assert model.precision == "int8" and model.runner is not None
    assert model.describe() == f"CPU · int8 · {model.threads} threads"
    assert "bench profile" in model.precision_reason
    assert "int8 (auto from this machine's bench profile" in caplog.text
    profile_path(machine_key("test_vit")).unlink()


def test_forcing_onnx_without_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setattr(precision, "has_onnxruntime", lambda: False)
    with pytest.raises(ModelError, match=r"pip install 'nsfw-desk\[onnx\]'"):
        choose_precision(CPU, "onnx")


def test_forcing_compile_without_a_compiler_says_so(monkeypatch):
    monkeypatch.setattr(precision, "cxx_compiler", lambda: None)
    with pytest.raises(ModelError, match="C\\+\\+ compiler"):
        choose_precision(CPU, "compile")


def test_forcing_cpu_modes_elsewhere_says_so(monkeypatch):
    for mode in ("int8", "onnx", "onnx-int8", "openvino"):
        with pytest.raises(ModelError, match="CPU only"):
            choose_precision(torch.device("cuda"), mode)
    for mode in ("fp16", "bf16", "int8", "compile", "onnx"):
        with pytest.raises(ModelError, match="MPS, which runs fp32 only"):
            choose_precision(torch.device("mps"), mode)
    assert choose_precision(torch.device("mps"), "fp32") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ModelError, match="Tesla T4 has no bf16 support"):
        choose_precision(torch.device("cuda"), "bf16")


def test_forcing_an_unavailable_mode_fails_load_model_cleanly(model_dir, monkeypatch):
    monkeypatch.setattr(precision, "has_onnxruntime", lambda: False)
    with pytest.raises(ModelError, match="ONNX Runtime"):
        load_model(model_dir, device="cpu", precision="onnx")


def test_scan_cli_refuses_an_unavailable_mode(
    model_dir, photo_folder, tmp_path, capsys, monkeypatch
):
    """`nsfw-desk scan --precision onnx` without the runtime: the model exit code and why."""
    from nsfw_desk.cli import EXIT_MODEL, main

    monkeypatch.setattr(precision, "has_onnxruntime", lambda: False)
    argv = ["scan", str(photo_folder), "--model", str(model_dir), "--device", "cpu"]
    status = main([*argv, "--precision", "onnx", "--db", str(tmp_path / "l.sqlite"), "-q"])
    assert status == EXIT_MODEL
    assert "pip install 'nsfw-desk[onnx]'" in capsys.readouterr().err


def test_mps_fallback_is_enabled_and_logged_on_macos(monkeypatch, caplog):
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    monkeypatch.setattr(precision.sys, "platform", "linux")
    precision.enable_mps_fallback()
    import os

    assert "PYTORCH_ENABLE_MPS_FALLBACK" not in os.environ
    monkeypatch.setattr(precision.sys, "platform", "darwin")
    with caplog.at_level(logging.INFO, logger="nsfw_desk.core.precision"):
        precision.enable_mps_fallback()
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    assert "runs on the CPU" in caplog.text


def test_startup_split_is_logged_once(monkeypatch, caplog):
    from nsfw_desk.core import startup

    monkeypatch.setattr(startup, "_marks", {})
    monkeypatch.setattr(startup, "_done", False)
    clock = iter([1.5, 2.0, 2.75])
    monkeypatch.setattr(startup, "since_process_start", lambda: next(clock))
    startup.imports_done(0.9)
    startup.model_loaded()
    with caplog.at_level(logging.INFO, logger="nsfw_desk.core.startup"):
        startup.first_batch_done()
        startup.first_batch_done()
    assert caplog.text.count("first batch scored") == 1
    assert "Python imports 1.50 s (torch and timm 0.90 s), model load 0.50 s" in caplog.text
    assert startup.split() == {
        "imports_s": 1.5,
        "torch_import_s": 0.9,
        "model_load_s": 0.5,
        "first_batch_s": 0.75,
        "total_s": 2.75,
    }


def test_process_start_clock_is_plausible():
    from nsfw_desk.core import startup

    assert 0.0 < startup.since_process_start() < 24 * 3600


def test_bench_cpu_modes_respects_no_bf16_and_missing_runtimes(no_bf16, monkeypatch):
    from nsfw_desk.bench_precision import cpu_modes

    monkeypatch.setattr(precision, "has_onnxruntime", lambda: False)
    monkeypatch.setattr(precision, "has_openvino", lambda: False)
    modes, skipped = cpu_modes(CPU, None)
    assert "bf16" not in modes and "onnx" not in modes and "int8" in modes
    assert "openvino" not in modes
    assert any("openvino skipped" in line and "nsfw-desk[openvino]" in line for line in skipped)
    assert any("bf16 skipped: NSFW_DESK_NO_BF16 is set" in line for line in skipped)
    assert any("onnx skipped" in line and "nsfw-desk[onnx]" in line for line in skipped)
    with pytest.raises(ValueError, match="unknown int4"):
        cpu_modes(CPU, "int8,int4")


def test_bench_profile_uses_the_small_images_and_the_worst_flips(loaded_model, no_bf16):
    from nsfw_desk.bench import CorpusFigures
    from nsfw_desk.bench_precision import build_profile

    def corpus(name, fp32, int8, flips):
        figures = CorpusFigures(name, 10, scan_rate=fp32)
        figures.reduced["int8"] = {
            "scan_rate": int8,
            "flipped_pct": flips,
            "max_abs_dp_vs_fp32": flips / 100,
        }
        return figures

    profile = build_profile(
        loaded_model,
        [corpus("12-MP JPEG", 5.0, 6.0, 0.8), corpus("1024-px JPEG (1024×768)", 10, 17, 0)],
    )
    assert profile.modes["fp32"].images_per_s == 10
    assert profile.modes["int8"] == ModeFigures(17, 0.8, 0.008)
    save_profile(profile)
    assert choose_precision(CPU, "auto", "test_vit") == "fp32"  # 0.8 % > budget


def test_bench_library_reports_flips_on_the_users_images(
    model_dir, folder, library, loaded_model, capsys, no_bf16
):
    from nsfw_desk.cli import main
    from nsfw_desk.core.review import DecisionInput, ReviewStore
    from nsfw_desk.core.scan import scan_folder

    summary = scan_folder(folder, loaded_model, library, keep_outcomes=True)
    reviewed = [o for o in summary.outcomes if o.hash][:4]
    ReviewStore(library).decide(
        [DecisionInput(o.hash, loaded_model.model_id, o.score, o.path) for o in reviewed],
        "unsafe",
        reviewer="t",
        threshold=0.5,
    )
    reviewed[0].path.unlink()  # gone from disk: left out, not an error
    argv = ["bench", "--library", "--db", str(library.path), "--model", str(model_dir)]
    assert main([*argv, "--precisions", "int8", "--sample", "10"]) == 0
    out = capsys.readouterr().out
    assert "images: 3 reviewed, on disk" in out
    assert re.search(r"fp32 +[\d.]+ +0\.0000 +0\.00%", out)
    assert re.search(r"int8 +[\d.]+ +0\.\d{4} +\d+\.\d\d%", out)


def test_bench_cpu_paths_runs_at_a_tiny_size(model_dir, capsys, monkeypatch, no_bf16):
    """README's `nsfw-desk bench --cpu-paths`, on a tiny model and corpus: the table with
    each mode against fp32, NudeNet's line, and the profile `auto` then reads."""
    from nsfw_desk import bench_precision
    from nsfw_desk.cli import main

    monkeypatch.setattr(
        bench_precision,
        "CPU_PATHS_CORPORA",
        (("12-MP JPEG (tiny)", (160, 120), 3, 1), ("1024-px JPEG (tiny)", (96, 72), 4, 2)),
    )
    monkeypatch.setattr(bench_precision, "nudenet_rate", lambda paths: 2.0)
    argv = ["bench", "--cpu-paths", "--model", str(model_dir), "--device", "cpu"]
    assert main([*argv, "--precisions", "int8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"1024-px JPEG \(tiny\) +int8 +[\d.]+ +[\d.]+× +[\d.]+× +0\.\d{4}", out)
    assert "NudeNet   2.00 images/s" in out
    assert re.search(r"fp32 forward: \d+% in Linear layers.* at most [\d.]+× fp32", out)
    assert "auto now picks" in out
    profile = load_profile(load_model(model_dir, device="cpu", precision="fp32").architecture)
    assert profile is not None and set(profile.modes) == {"fp32", "int8"}
    assert profile.corpus == "1024-px JPEG (tiny)"


def test_linear_share_is_the_time_inside_linear_layers(model_dir):
    """bench --cpu-paths' ceiling for int8: a model of Linear layers alone is nearly all
    Linear; the test ViT is partly; no hook stays on the model."""
    import torch

    from nsfw_desk.bench_precision import linear_share

    model = load_model(model_dir, device="cpu", precision="fp32")
    share = linear_share(model, batch_size=2, runs=2)
    assert 0.05 < share < 0.95, share
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.module.modules())
    width = 512
    model.module = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, width), torch.nn.Linear(width, width)
    )
    model.data_config = {**model.data_config, "input_size": (3, 32, 32)}
    assert linear_share(model, batch_size=64, runs=5) > 0.8


def test_bench_library_on_an_empty_library_says_what_to_do(library, capsys):
    from nsfw_desk.cli import main

    assert main(["bench", "--library", "--db", str(library.path)]) == 1
    assert "scan a folder first" in capsys.readouterr().err


def test_settings_dialog_lists_every_precision(qtbot):
    from nsfw_desk.core.settings import Settings
    from nsfw_desk.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(Settings(reviewer="t", precision="int8"))
    qtbot.addWidget(dialog)
    items = [dialog.precision.itemText(i) for i in range(dialog.precision.count())]
    assert items == list(PRECISIONS)
    assert dialog.result_settings().precision == "int8"
    dialog.precision.setCurrentText("onnx")
    assert dialog.result_settings().precision == "onnx"


def test_import_hitch_is_measured_in_a_fresh_process_and_printed(capsys):
    from nsfw_desk.bench_precision import import_hitch, print_startup

    hitch = import_hitch()
    assert hitch["import_s"] > 0 and hitch["worst_stall_ms"] >= 0
    figures = {"total_s": 3.0, "imports_s": 2.0, "torch_import_s": 1.5}
    figures |= {"model_load_s": 0.5, "first_batch_s": 0.5}
    print_startup(figures | {"hitch_ms": 412.0, "hitch_import_s": 2.5})
    assert "cannot paint for up to 412 ms" in capsys.readouterr().out


def test_openvino_int8_probe_runs_at_a_tiny_size(model_dir, capsys):
    """`python -m nsfw_desk.bench_openvino_int8` (README, Precision) on the tiny test model:
    NNCF's three int8 variants beside OpenVINO fp32, each against fp32 eager."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from nsfw_desk.bench_openvino_int8 import VARIANTS, main

    argv = ["--model", str(model_dir), "--files", "4", "--calibration", "2", "--rounds", "1"]
    # NNCF's static quantization takes ~9 s even for this model: one static variant.
    assert main([*argv, "--size", "96x72", "--variants", "static-fc,weights"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"fp32 eager +[\d.]+ +1\.00× +0\.0000 +0\.00%", out)
    assert re.search(r"openvino fp32 · LATENCY \(1 streams\) +[\d.]+ +[\d.]+× +0\.0000", out)
    for key in ("static-fc", "weights"):  # each ran, and int8 moved the scores (|Δp| > 0)
        variant = re.escape(VARIANTS[key])
        assert re.search(
            rf"{variant} · THROUGHPUT \(\d streams\) +[\d.]+ +[\d.]+× +0\.0*[1-9]", out
        )


def test_openvino_int8_probe_without_nncf_says_how_to_install(monkeypatch, capsys):
    import sys

    from nsfw_desk.bench_openvino_int8 import main

    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed
    assert main(["--files", "1"]) == 3
    assert "pip install 'nsfw-desk[openvino]' nncf" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--variants", "int4"])
    assert "unknown int4" in capsys.readouterr().err
