"""`bench grid --dry-run`: what a grid would run in a run directory now, read only."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.cache import FitCache
from bench.errors import BenchError, BenchWarning
from bench.executors import plan_grid, run_local
from bench.grid import GridSpec
from bench.results import PARTS_DIR, load_rows

from _grids import run_cli


def _spec(root, methods=("probe",)) -> GridSpec:
    return GridSpec(methods=list(methods), dataset="folder", root=str(root),
                    corruptions=["gaussian_noise", "contrast"], severities=[3])


def _tree(path):
    return sorted((p.relative_to(path), p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_an_empty_run_directory_is_all_to_run_and_is_not_created(tiny_root, tmp_path, probes):
    # its own fit cache: the session's may hold the probe's fit of this same tiny dataset
    plan = plan_grid(_spec(tiny_root, ("probe", "probe_nan")), tmp_path / "run", fit_cache=FitCache(tmp_path / "fits"))
    assert (plan.done, plan.failed, len(plan.todo), plan.fits, plan.fits_cached) == (0, 0, 6, 2, 0)
    assert plan.lines()[:4] == [
        f"run {tmp_path / 'run'}: 6 cells (2 methods, 1 category, 3 conditions, 1 seed)",
        "  0 done, 6 to run (probe 3, probe_nan 3)",
        "  fits: 2 needed, 0 in the fit cache, 2 to compute",
        "  time: not estimated (no finished cell of probe, probe_nan in this run directory yet)"]
    assert not (tmp_path / "run").exists()


def test_after_a_run_it_counts_done_failed_and_cached_fits_and_moves_nothing(tiny_root, tmp_path, probes):
    run = tmp_path / "run"
    spec = _spec(tiny_root, ("probe", "probe_nan"))
    summary = run_local(spec, run, show_progress=False)
    assert (summary.ran, summary.failed) == (6, 3)
    plan = plan_grid(spec, run)
    assert (plan.done, plan.failed, plan.todo, plan.fits) == (3, 3, [], 0)
    assert "3 recorded as failed (kept; --retry-failed runs them again)" in plan.lines()[1]

    retry = plan_grid(spec, run, retry_failed=True)  # the failed cells' fit is in the cache
    assert ([c.method for c in retry.todo], retry.fits, retry.fits_cached) == (["probe_nan"] * 3, 1, 1)

    part = next((run / PARTS_DIR).glob("probe-*clean*.parquet"))
    part.write_bytes(part.read_bytes()[:100])  # torn: a grid would quarantine it and run the cell
    before = _tree(run)
    plan = plan_grid(spec, run)
    assert [c.cell_id for c in plan.todo] == [part.stem] and (plan.fits, plan.fits_cached) == (1, 1)
    assert _tree(run) == before  # read only: the torn part stays where it is
    with pytest.warns(BenchWarning, match="unreadable result part"):  # readers leave the torn part out too
        seconds = load_rows(run).query("method == 'probe' and status == 'ok'")["total_seconds"]
    assert plan.pace["probe"] == pytest.approx(seconds.mean())  # the torn part's row is not in it
    assert f"about 0 min (probe 1 x {seconds.mean():.1f} s)" in plan.lines()[3]


def test_the_estimate_adds_the_fits_to_compute_at_the_run_s_fit_pace(tiny_root, tmp_path, probes):
    run, fits = tmp_path / "run", FitCache(tmp_path / "fits")  # its own cache: the fit is computed and logged
    spec = _spec(tiny_root)
    run_local(spec, run, show_progress=False, fit_cache=fits)
    with open(run / "fits.jsonl", "a") as fh:  # a killed run's torn last line is skipped
        fh.write('{"key": "x", "method": "probe", "fit_sec')
    more = GridSpec(**{**spec.__dict__, "seeds": [0, 1]})  # a second seed: its own fit, not cached
    plan = plan_grid(more, run, fit_cache=fits)
    assert (len(plan.todo), plan.to_fit) == (3, ["probe"])
    fit = json.loads((run / "fits.jsonl").read_text().splitlines()[0])["fit_seconds"]
    assert plan.fit_pace == {"probe": pytest.approx(fit)}
    expected = 3 * plan.pace["probe"] + fit
    assert f"about {expected / 60:.0f} min (probe 3 x {plan.pace['probe']:.1f} s; 1 probe fit x {fit:.1f} s)" \
        in plan.estimate()


def test_cells_computed_on_other_test_data_are_to_run_again(tiny_root, tmp_path, probes):
    run = tmp_path / "run"
    spec = _spec(tiny_root)
    run_local(spec, run, show_progress=False)
    image = next((tiny_root / "widget" / "test").rglob("*.png"))
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 0xFF  # one pixel rewritten in place: another test split
    Image.fromarray(pixels).save(image)
    before = _tree(run)
    plan = plan_grid(spec, run)
    assert (plan.done, len(plan.todo)) == (0, 3)
    assert any("3 finished cell(s) of widget were computed on other test data" in line for line in plan.lines())
    assert _tree(run) == before
    assert len(load_rows(run)) == 3  # the parts are still there for the grid to move


def test_cli_dry_run_prints_the_plan_and_runs_nothing(tiny_root, tmp_path, probes, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ("grid", "--methods", "probe", "--root", tiny_root, "--corruptions", "contrast",
            "--severities", "2,4", "--out", run, "--dry-run")
    code, out, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "3 cells (1 method, 1 category, 3 conditions, 1 seed)" in out
    assert out.rstrip().endswith("dry run: no cell ran; the run directory was read, not changed") and not run.exists()
    code, _, err = run_cli(monkeypatch, capsys, *args[:3], tmp_path / "missing", *args[5:])
    assert code == 2 and "missing" in err  # the inputs are checked as a grid checks them


def test_a_bad_name_fails_before_any_plan(tiny_root, tmp_path, probes):
    with pytest.raises(BenchError, match="nosuch"):
        plan_grid(GridSpec(methods=["probe"], dataset="folder", root=str(tiny_root), corruptions=["nosuch"]),
                  tmp_path / "run")


def test_reproduce_dry_run_plans_the_papers_protocol(tiny_root, tmp_path, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "reproduce", "ttad-table4", "--dataset", "folder", "--root", tiny_root,
                           "--out", tmp_path / "run", "--dry-run")
    assert code == 0 and not (tmp_path / "run").exists()
    assert "35 cells (7 methods, 1 category, 5 conditions, 1 seed)" in out  # Table 4: 7 rows x clean + 4 @5
    assert "fits: 1 needed" in out  # the ablation's rows share one PatchCore fit
    assert "35 to run (none 5, kl_div 5, moment_matching 5, ot_hungarian 5," in out  # the table's row order


def test_seeds_and_severities_take_ranges(tiny_root, tmp_path, probes, monkeypatch, capsys):
    from bench.cli_common import parse_ints

    assert parse_ints(["1-3,5", "7"], "severities") == [1, 2, 3, 5, 7]
    for bad in ("3-1", "1-", "a-b", "1.5"):
        with pytest.raises(BenchError, match=f"--seeds {bad}: expected integers such as 1,3,5 or a range such as 1-5"):
            parse_ints([bad], "seeds")
    code, out, _ = run_cli(monkeypatch, capsys, "grid", "--methods", "probe", "--root", tiny_root, "--corruptions",
                           "contrast", "--severities", "1-5", "--seeds", "0-2", "--out", tmp_path / "run", "--dry-run")
    assert code == 0 and "18 cells (1 method, 1 category, 6 conditions, 3 seeds)" in out
