"""The same grid twice, from cold caches, gives identical metric columns."""
from __future__ import annotations

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
