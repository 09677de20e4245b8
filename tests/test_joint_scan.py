"""A scan with several detectors at speed (issue 13): the decode threads preprocess on one
torch thread each while the forward passes keep theirs, and the joint scan still gives each
detector's own scores, one decode per file, its errors and its cancel."""

from __future__ import annotations

import threading

import pytest
import torch

from nsfw_desk.core import scan as scan_module
from nsfw_desk.core.backends import load_detector
from nsfw_desk.core.progress import CancelToken
from nsfw_desk.core.scan import ScanOptions, scan_folder
from nsfw_desk.core.store import Library
from nsfw_desk.core.torch_threads import _openmp_runtime, one_torch_thread
from nsfw_desk.synthetic import save_random_model, write_photo

needs_openmp = pytest.mark.skipif(
    _openmp_runtime(torch.__file__) is None, reason="torch runs without an OpenMP runtime here"
)


@pytest.fixture(scope="module")
def other_detector(tmp_path_factory):
    folder = save_random_model(
        tmp_path_factory.mktemp("other") / "sfw-nsfw", labels=("SFW", "NSFW"), seed=5
    )
    return load_detector(folder, device="cpu")


@pytest.fixture
def decodes(monkeypatch):
    calls: list[int] = []
    real = scan_module.decode
    monkeypatch.setattr(
        scan_module, "decode", lambda data, **kw: calls.append(1) or real(data, **kw)
    )
    return calls


@needs_openmp
def test_one_torch_thread_changes_the_calling_thread_only():
    before = torch.get_num_threads()
    seen: dict[str, int] = {}

    def single() -> None:
        assert one_torch_thread()
        torch.rand(3, 384, 384).sub_(0.5).div_(0.5)  # a parallel-sized op keeps it at one
        seen["single"] = torch.get_num_threads()

    def other() -> None:
        seen["other"] = torch.get_num_threads()

    for target in (single, other):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert seen == {"single": 1, "other": before}
    assert torch.get_num_threads() == before  # the forward pass's thread keeps its number


@needs_openmp
def test_decode_threads_preprocess_on_one_torch_thread(
    photo_folder, loaded_model, other_detector, library, monkeypatch
):
    threads_seen: list[tuple[str, int]] = []
    real = loaded_model.preprocess

    def watched(pixels):
        threads_seen.append((threading.current_thread().name, torch.get_num_threads()))
        return real(pixels)

    monkeypatch.setattr(loaded_model, "preprocess", watched)
    before = torch.get_num_threads()
    summary = scan_folder(photo_folder, [loaded_model, other_detector], library)
    assert summary.scored == 12
    assert len(threads_seen) == 12
    assert all(name.startswith("nsfw-desk-decode") and n == 1 for name, n in threads_seen)
    assert torch.get_num_threads() == before


def test_a_joint_scan_gives_each_detectors_own_scores_from_one_decode(
    photo_folder, loaded_model, other_detector, library, decodes
):
    detectors = [loaded_model, other_detector]
    together = scan_folder(photo_folder, detectors, library, keep_outcomes=True)
    assert together.scored == 12 and len(decodes) == 12
    joint = {o.path: o.scores for o in together.outcomes}
    for detector in detectors:
        decodes.clear()
        with Library(library.path.parent / f"alone-{detector.model_id[:12]}.sqlite") as alone:
            single = scan_folder(photo_folder, detector, alone, keep_outcomes=True)
        assert len(decodes) == 12
        for outcome in single.outcomes:
            # same input size, so the same decode: equal up to the batch's float rounding
            assert joint[outcome.path][detector.model_id] == pytest.approx(outcome.score, abs=1e-6)


def test_a_bad_file_in_a_joint_scan_is_listed_under_errors(
    folder, loaded_model, other_detector, library
):
    summary = scan_folder(folder, [loaded_model, other_detector], library, keep_outcomes=True)
    assert summary.scored == 12 and summary.errors == 1
    (bad,) = [o for o in summary.outcomes if o.error_kind is not None]
    assert bad.path.name == "broken.jpg" and bad.error
    assert all(
        set(o.scores or {}) == {loaded_model.model_id, other_detector.model_id}
        for o in summary.outcomes
        if o.error_kind is None
    )
    stored = [r for r in library.results(folder, loaded_model.model_id) if r.error_kind]
    assert [r.path.name for r in stored] == ["broken.jpg"]


def test_a_joint_scan_cancels_mid_scan_and_resumes(
    tmp_path, loaded_model, other_detector, library, monkeypatch
):
    root = tmp_path / "many"
    for i in range(24):
        write_photo(root / f"{i:03d}.jpg", (64, 48), seed=i)
    cancel = CancelToken()
    seen = []

    def on_results(outcomes):
        seen.extend(outcomes)
        if len(seen) >= 4:
            cancel.cancel()

    detectors = [loaded_model, other_detector]
    first = scan_folder(
        root,
        detectors,
        library,
        cancel=cancel,
        on_results=on_results,
        options=ScanOptions(batch_size=4),
    )
    assert first.cancelled and 4 <= first.scored < 24
    assert library.scans()[-1]["status"] == "cancelled"
    for detector in detectors:  # every committed file has both detectors' scores
        stored = [r for r in library.results(root, detector.model_id) if r.score is not None]
        assert len(stored) == first.scored

    runs: list[int] = []
    for detector in detectors:
        real = detector.predict
        monkeypatch.setattr(
            detector, "predict", lambda x, real=real: runs.append(len(x)) or real(x)
        )
    second = scan_folder(root, detectors, library)
    assert not second.cancelled and second.cached == first.scored
    assert sum(runs) == 2 * second.scored == 2 * (24 - first.scored)  # nothing redone
