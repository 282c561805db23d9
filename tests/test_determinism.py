"""The same grid twice, from cold caches, gives identical metric columns."""
from __future__ import annotations

import json

import pytest

from _grids import THREADS, assert_identical, cache_env, reference_rows, tiny_spec
from bench.executors import LocalExecutor, run_grid
from bench.results import METRICS, load_rows

pytestmark = pytest.mark.slow  # end to end


def test_same_grid_twice_gives_identical_metrics(tmp_path):
    first = reference_rows()  # in-process, its own cold fit and corruption caches
    with cache_env(tmp_path / "cache"):  # a second cold start: fit and corrupted images made again
        summary = run_grid(tiny_spec(), tmp_path / "run", LocalExecutor(workers=1, threads=THREADS), show_progress=False)
    assert (summary.ran, summary.fits_computed, summary.corruption_cache["set_misses"]) == (2, 1, 1)
    second = load_rows(tmp_path / "run")
    assert (second["status"] == "ok").all()
    assert second[list(METRICS)].notna().all().all()
    assert_identical(second, first)
    # the corruption matters (the comparison is not between two constant columns)
    by = second.set_index("corruption")["image_auroc"]
    assert by["clean"] != by["gaussian_noise"]


def _train_in_a_fresh_process(tmp_path, name: str):
    """bench grid with RD4AD and GNL (short budgets) in its own process with its own cold caches."""
    import os
    import subprocess
    import sys

    cache, run = tmp_path / f"cache-{name}", tmp_path / f"run-{name}"
    env = {**os.environ, "ADSHIFT_BENCH_CACHE": str(cache)}
    args = [sys.executable, "-m", "bench", "grid", "--methods", "rd4ad,gnl", "--categories", "brick",
            "--corruptions", "gaussian_noise", "--set", "rd4ad.epochs=2", "--set", "gnl.epochs=1",
            "--threads", "2", "--no-progress", "--bootstrap", "0", "--out", str(run)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return cache / "fits", run


def test_rd4ad_and_gnl_trained_in_two_fresh_processes_are_identical(tmp_path):
    import torch

    first_fits, first_run = _train_in_a_fresh_process(tmp_path, "a")
    second_fits, second_run = _train_in_a_fresh_process(tmp_path, "b")
    def students(fits, run):  # method -> trained student (fit keys differ: the data's mtimes do)
        log = [json.loads(line) for line in (run / "fits.jsonl").read_text().splitlines()]
        return {e["method"]: torch.load(fits / f"{e['key']}.pt", weights_only=False)["state"]["student"] for e in log}

    first_students, second_students = students(first_fits, first_run), students(second_fits, second_run)
    assert sorted(first_students) == sorted(second_students) == ["gnl", "rd4ad"]
    for method in first_students:
        a, b = first_students[method], second_students[method]
        assert list(a) == list(b)
        for k in a:  # byte for byte
            assert a[k].dtype == b[k].dtype and a[k].numpy().tobytes() == b[k].numpy().tobytes(), k
    first, second = load_rows(first_run), load_rows(second_run)
    assert len(first) == 4 and (first["status"] == "ok").all()
    assert (first["threads"] == 2).all() and (first["fit_threads"] == 2).all()
    assert_identical(first, second)
    assert list(first.sort_values("cell_id")["defect_metrics"]) == list(second.sort_values("cell_id")["defect_metrics"])
    # the budgets mattered: the two students differ from each other
    assert first.set_index("method").loc["rd4ad", "image_auroc"].tolist() != \
        first.set_index("method").loc["gnl", "image_auroc"].tolist()
