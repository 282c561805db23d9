"""The Ray executor on a real local Ray cluster (2 CPUs): the same rows as the local executor."""
from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

from _grids import THREADS, assert_identical, cache_env, reference_rows, scratch, tiny_spec  # noqa: E402
from bench.executors import run_grid  # noqa: E402
from bench.ray_executor import RayExecutor  # noqa: E402
from bench.results import RunStore, load_rows  # noqa: E402

pytestmark = pytest.mark.slow  # end to end


@pytest.fixture(scope="module")
def cluster():
    ref = reference_rows()  # the in-process reference first, so both runs see the same CPU
    with cache_env(scratch() / "cache-ray") as cache:  # cold caches; workers inherit the env
        # "local": always a fresh cluster of our own, even if another one runs on this machine
        # one GPU declared (none is there): fractional --gpus-per-cell is scheduled as on a GPU node
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
        try:
            yield ref, cache
        finally:
            ray.shutdown()


def test_ray_rows_equal_local_rows(cluster, tmp_path):
    ref, _ = cluster
    run_dir = tmp_path / "run"
    summary = run_grid(tiny_spec(), run_dir, RayExecutor(cpus_per_cell=1, threads=THREADS), show_progress=False)
    assert (summary.executor, summary.ran, summary.failed, summary.fits_computed) == ("ray", 2, 0, 1)
    rows = load_rows(run_dir)
    assert_identical(rows, ref)
    assert set(rows["device"]) == {"cpu"}
    assert len(RunStore(run_dir)) == 2  # the driver wrote both parts
    fits = [json.loads(x) for x in (run_dir / "fits.jsonl").read_text().splitlines()]
    assert [f["category"] for f in fits] == ["brick"]

    # a rerun that lost one part: no fit task (the driver kept the state), one cell, same numbers
    victim = sorted((run_dir / "parts").glob("*gaussian_noise*.parquet"))[0]
    victim.unlink()
    again = run_grid(tiny_spec(), run_dir, RayExecutor(cpus_per_cell=1, threads=THREADS), show_progress=False)
    assert (again.ran, again.fits_computed, again.fit_cache["hits"]) == (1, 0, 1)
    assert again.corruption_cache["set_hits"] == 1
    assert_identical(load_rows(run_dir), ref)
    assert len((run_dir / "fits.jsonl").read_text().splitlines()) == 1


def test_fractional_gpus_per_cell_schedule_and_give_the_same_rows(cluster, tmp_path):
    """--gpus-per-cell 0.25: four cells fit on one GPU; on the CPU the rows are the in-process ones."""
    ref, _ = cluster
    assert ray.cluster_resources().get("GPU") == 1
    run_dir = tmp_path / "run"
    summary = run_grid(tiny_spec(), run_dir, RayExecutor(cpus_per_cell=0.5, gpus_per_cell=0.25, threads=THREADS),
                       show_progress=False)
    assert (summary.ran, summary.failed) == (2, 0)
    assert_identical(load_rows(run_dir), ref)
