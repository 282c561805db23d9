"""Executors: one interface, one fit per category, same rows in-process and with worker processes."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

from _grids import (THREADS, run_cli, assert_identical, cache_env, reference_rows, reference_run, scratch, textures_root,
                    tiny_spec)
from bench.errors import BenchError
from bench.executors import LocalExecutor, make_executor, plan_groups, run_grid
from bench.results import RunStore, load_rows
from bench.runner import RunContext


def test_groups_share_one_fit_per_category_and_seed():
    spec = tiny_spec(categories=("brick", "grass"), corruptions=("gaussian_noise", "contrast"), seeds=(0, 1))
    cells = spec.cells()
    groups = plan_groups(cells, RunContext(spec))
    assert len(cells) == 2 * 2 * 3
    assert [(g.cells[0].category, g.cells[0].seed) for g in groups] == [
        ("brick", 0), ("brick", 1), ("grass", 0), ("grass", 1)]
    for g in groups:
        assert [c.corruption for c in g.cells] == ["clean", "gaussian_noise", "contrast"]
        assert len({(c.category, c.seed) for c in g.cells}) == 1
    assert len({g.key for g in groups}) == 4


@pytest.mark.slow
def test_workers_give_the_in_process_rows(tmp_path):
    """Two worker processes, cold caches: identical metrics, one fit, every part written by the driver."""
    ref = reference_rows()
    run_dir = tmp_path / "run"
    with cache_env(tmp_path / "cache"):
        summary = run_grid(tiny_spec(), run_dir, LocalExecutor(workers=2, threads=THREADS), show_progress=False)
    assert (summary.ran, summary.failed, summary.fits_computed) == (2, 0, 1)
    assert summary.corruption_cache["set_misses"] == 1 and summary.corruption_cache["misses"] == 40
    rows = load_rows(run_dir)
    assert_identical(rows, ref)
    # fit_cached: the first cell after a computed fit says False, the others True (as in-process)
    flags = rows.sort_values("corruption")[["corruption", "fit_cached"]].values.tolist()
    assert flags == [["clean", False], ["gaussian_noise", True]]
    fits = [json.loads(line) for line in (run_dir / "fits.jsonl").read_text().splitlines()]
    assert [f["category"] for f in fits] == ["brick"]
    assert len(RunStore(run_dir)) == 2


@pytest.mark.slow
def test_rerun_runs_only_missing_cells_and_reuses_the_fit(tmp_path):
    ref_dir = reference_run()
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    victim = sorted((run_dir / "parts").glob("*gaussian_noise*.parquet"))[0]
    victim.unlink()
    with cache_env(scratch() / "cache-reference"):  # the reference run's fit cache
        summary = run_grid(tiny_spec(), run_dir, LocalExecutor(workers=1, threads=THREADS), show_progress=False)
    assert (summary.skipped, summary.ran, summary.fits_computed, summary.fit_cache["hits"]) == (1, 1, 0, 1)
    assert summary.corruption_cache["set_hits"] == 1 and summary.corruption_cache["misses"] == 0
    assert_identical(load_rows(run_dir), reference_rows())
    assert len((run_dir / "fits.jsonl").read_text().splitlines()) == 1  # only the reference's fit


def test_executor_choice_errors(monkeypatch):
    with pytest.raises(BenchError) as e:
        make_executor("spark")
    assert str(e.value) == "--executor spark: unknown executor; use local (this machine) or ray (a Ray cluster)"
    with pytest.raises(BenchError) as e:
        make_executor("rey")
    assert "did you mean 'ray'?" in str(e.value)
    with pytest.raises(BenchError) as e:
        LocalExecutor(workers=0)
    assert str(e.value) == "--workers 0: use a whole number >= 1 (1 runs in-process)"
    with pytest.raises(BenchError) as e:
        make_executor("local", address="auto")
    assert str(e.value) == "--address auto: only the ray executor connects to a cluster; add --executor ray"
    # every option is checked once, where the executor is built (the CLI goes through here too)
    for kwargs, message in [
        ({"name": "ray", "workers": 2}, "--workers 2: the ray executor sizes itself"),
        ({"name": "ray", "cpus_per_cell": 0}, "--cpus-per-cell 0: must be > 0"),
        ({"name": "ray", "gpus_per_cell": -1}, "--gpus-per-cell -1: must be >= 0"),
        ({"name": "ray", "device": "cuda"}, "--device cuda with the ray executor needs --gpus-per-cell"),
        ({"name": "ray", "device": "cuda:1", "gpus_per_cell": 1}, "--device cuda:1: with the ray executor use"),
        ({"name": "local", "gpus_per_cell": 1}, "--gpus-per-cell is a Ray resource"),
        ({"name": "local", "threads": 0}, "--threads 0: use a whole number >= 1"),
    ]:
        with pytest.raises(BenchError, match=message.replace("(", r"\(").replace("+", r"\+")):
            make_executor(**kwargs)
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError
    monkeypatch.delitem(sys.modules, "bench.ray_executor", raising=False)
    ex = make_executor("ray")
    with pytest.raises(BenchError) as e:
        ex.run(tiny_spec(), [], None)
    assert str(e.value) == "the ray executor needs Ray: pip install 'adshift-bench[ray]'"


def test_cli_ray_without_ray_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "bench.ray_executor", raising=False)
    code, out, err = run_cli(monkeypatch, capsys, "grid", "-m", "patchcore", "-d", "textures",
                             "--root", str(textures_root()), "-c", "brick", "--corruptions", "clean",
                             "-x", "ray", "--out", str(scratch() / "no-ray"), "--no-progress")
    assert code == 2
    assert err.strip() == "error: the ray executor needs Ray: pip install 'adshift-bench[ray]'"
    code, out, err = run_cli(monkeypatch, capsys, "grid", "-m", "patchcore", "-x", "ray", "--device", "cuda")
    assert code == 2
    assert err.strip() == ("error: --device cuda with the ray executor needs --gpus-per-cell (e.g. 1): "
                           "Ray hides GPUs from tasks that reserve none")


@pytest.mark.slow
def test_corrupt_command_fills_the_cache_the_grid_reads(monkeypatch, capsys, tmp_path):
    args = ["corrupt", "-d", "textures", "--root", str(textures_root()), "-c", "brick",
            "--corruptions", "gaussian_noise", "-s", "1", "--workers", "2", "--no-progress"]
    with cache_env(tmp_path / "cache"):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, err
        assert "corrupted test sets: 1 sets (40 images)" in err and "40 images generated, 0 already cached" in err
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0 and "0 images generated, 40 already cached" in err
        # the grid's cell reads exactly those images: all 40 hits, nothing generated
        from bench.datasets import corruptions as C

        spec = tiny_spec(severities=(1,))
        cat = RunContext(spec).category("brick")
        cell = [c for c in spec.cells() if c.corruption == "gaussian_noise"][0]
        stats = C.CacheStats()
        list(C.corrupted_images(cat.test.images, dataset=cell.dataset, category=cell.category,
                                corruption=cell.corruption, severity=cell.severity, seed=cell.seed, stats=stats))
        assert (stats.hits, stats.misses) == (40, 0)


def test_the_progress_bar_shows_the_cells_stage(tmp_path):
    """rich reads "[score]" as a markup tag: unescaped, the stage vanished from the bar."""
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from bench.driver import Driver, GridSummary
    from bench.grid import Cell
    from bench.methods import get
    from bench.results import RunStore

    console = Console(file=io.StringIO(), width=200)
    with Progress(TextColumn("[bold]{task.description}"), console=console) as progress:
        task = progress.add_task("grid", total=1)
        driver = Driver(RunStore(tmp_path), GridSummary(tmp_path, 1, 0), console, progress, task, None)
        cell = Cell("patchcore", "textures", "brick", "clean", 0, 0, "native", get("patchcore").config())
        driver.stage(cell, "score")
        progress.refresh()
    assert "patchcore / brick / clean / seed 0 [score]" in console.file.getvalue()


def test_a_worker_records_bench_warnings_for_the_driver_and_shows_the_rest(monkeypatch):
    """In a worker process a BenchWarning goes back with the job's result; a library's warning is
    shown where it happens, as before (recording every warning lost those)."""
    import warnings

    from bench.errors import BenchWarning
    from bench.worker import _recorded

    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, category, *a, **k: shown.append(str(message)))
    with _recorded(in_worker=True) as said:
        warnings.warn("a library's", UserWarning)
        for _ in range(2):
            warnings.warn("the harness's", BenchWarning)
    assert said == ["the harness's"] and shown == ["a library's"]
