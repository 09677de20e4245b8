"""The parts of cluster-scan and import that need no Ray: sizing the actor pool, the
messages without the `cluster` extra, and path prefix mapping."""

from __future__ import annotations

import os
import sys

import pytest

from nsfw_desk.cli import EXIT_USAGE, main
from nsfw_desk.core.cluster import ClusterError, plan_pool
from nsfw_desk.core.cluster_import import PrefixMap, map_path


def test_the_pool_leaves_a_cpu_for_ray_datas_own_tasks():
    # This machine's case: two CPUs. An actor taking both (or two actors one each) starved
    # the listing and Parquet-write tasks and the job hung, reporting backpressure.
    small = plan_pool(2, 0)
    assert small.concurrency == 1 and 2 - small.concurrency * small.num_cpus >= 1
    assert small.threads == 2  # the actor still uses both cores for torch and decoding
    two = plan_pool(2, 0, concurrency=2)
    assert 2 - 2 * two.num_cpus >= 1 and two.threads == 1
    big = plan_pool(64, 0)
    assert big.concurrency == 8 and 64 - 8 * big.num_cpus >= 1 and big.threads == 8


def test_gpu_actors_are_sized_from_the_clusters_gpus():
    pool = plan_pool(32, 4, num_gpus_per_worker=1)
    assert (pool.concurrency, pool.num_gpus) == (4, 1.0)
    assert plan_pool(32, 4, num_gpus_per_worker=0.5).concurrency == 8
    with pytest.raises(ClusterError, match="--num-gpus-per-worker 1 asks for GPUs"):
        plan_pool(2, 0, num_gpus_per_worker=1)
    with pytest.raises(ClusterError, match="needs 6 GPUs; the cluster has 4"):
        plan_pool(32, 4, concurrency=6, num_gpus_per_worker=1)


def test_without_ray_cluster_scan_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    status = main(["cluster-scan", str(tmp_path), "--out", str(tmp_path / "out")])
    assert status == EXIT_USAGE
    assert "pip install 'nsfw-desk[cluster]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_pyarrow_import_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    (tmp_path / "results").mkdir()
    status = main(["import", str(tmp_path / "results"), "--db", str(tmp_path / "lib.sqlite")])
    assert status == EXIT_USAGE
    assert "pip install 'nsfw-desk[cluster]'" in capsys.readouterr().err


def test_import_of_a_folder_without_results_says_so(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    (tmp_path / "results").mkdir()
    status = main(["import", str(tmp_path / "results"), "--db", str(tmp_path / "lib.sqlite")])
    assert status == EXIT_USAGE
    assert "holds no cluster-scan results" in capsys.readouterr().err


def test_prefixes_map_byte_for_byte():
    odd = os.fsdecode(b"/mnt/arch\xe9ve")  # a mount point that is not UTF-8
    maps = [PrefixMap.parse(f"{odd}=/home/me/archive"), PrefixMap.parse("/data=/srv")]
    assert map_path(b"/mnt/arch\xe9ve/a/x\xff.jpg", maps) == b"/home/me/archive/a/x\xff.jpg"
    assert map_path(b"/data/y.jpg", maps) == b"/srv/y.jpg"
    assert map_path(b"/elsewhere/z.jpg", maps) == b"/elsewhere/z.jpg"
    with pytest.raises(ValueError, match="FROM=TO"):
        PrefixMap.parse("no-equals-sign")


def test_on_several_nodes_each_keeps_a_cpu():
    pool = plan_pool(64, 0, nodes=8)  # eight 8-CPU nodes: one actor each, 7 CPUs
    assert pool.concurrency == 8 and pool.num_cpus == 7.0


def test_only_core_cluster_imports_ray():
    """Ray stays optional: one module imports it, inside functions."""
    from pathlib import Path

    package = Path(__file__).parents[1] / "nsfw_desk"
    importers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(
            line.strip().startswith(("import ray", "from ray"))
            for line in path.read_text("utf-8").splitlines()
        )
    )
    assert importers == ["core/cluster.py"]
    source = (package / "core" / "cluster.py").read_text("utf-8")
    assert "\nimport ray" not in source and "\nfrom ray" not in source  # not at module level
