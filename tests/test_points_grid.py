"""Point-cloud cells end to end: MVTec 3D-AD's fixture through the grid, rows identical across
runs with cold caches, and one-line failed rows where an input and a method or corruption do not
belong together."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from _grids import assert_identical, cache_env, run_cli
from _latex import check_latex
from bench.datasets.mvtec3d import write_fixture
from bench.executors import LocalExecutor, run_grid
from bench.grid import GridSpec
from bench.methods import registered
from bench.results import load_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("mvtec3d"), seed=0)


def _spec(root: Path, methods=("patchcore_fpfh",), corruptions=("point_gaussian_noise",), **kw) -> GridSpec:
    return GridSpec(methods=list(methods), dataset="mvtec3d", root=str(root), categories=["bagel"],
                    corruptions=list(corruptions), severities=[5], seeds=[0], device="cpu", **kw)


def _rows(spec: GridSpec, out: Path, cache: Path) -> tuple[pd.DataFrame, object]:
    with cache_env(cache):
        summary = run_grid(spec, out, LocalExecutor(workers=1, threads=1), show_progress=False)
    return load_rows(out), summary


def test_a_point_noise_cell_is_identical_across_runs_and_detects_the_defects(root, tmp_path):
    a, summary = _rows(_spec(root), tmp_path / "a", tmp_path / "cache-a")
    assert summary.failed == 0, summary.failures
    b, _ = _rows(_spec(root), tmp_path / "b", tmp_path / "cache-b")
    assert sorted(a.corruption) == ["clean", "point_gaussian_noise"]
    assert_identical(a, b)
    clean = a[a.corruption == "clean"].iloc[0]
    assert clean.image_auroc > 0.9 and clean.pixel_auroc > 0.8  # the fixture's defects are geometric
    assert set(a.dataset) == {"mvtec3d"}


def test_mismatched_inputs_fail_in_one_line_and_the_grid_goes_on(root, tmp_path):
    spec = _spec(root, methods=("patchcore_fpfh", "patchcore"), corruptions=("gaussian_noise", "point_gaussian_noise"),
                 overrides={"patchcore.resize": "64", "patchcore.image_size": "64"})
    rows, summary = _rows(spec, tmp_path / "run", tmp_path / "cache")
    failed = rows[rows.status == "failed"]
    ok = rows[rows.status == "ok"]
    # an image corruption on clouds, and 2D PatchCore on clouds, are failed rows naming the fix
    assert set(zip(ok.method, ok.corruption)) == {("patchcore_fpfh", "clean"), ("patchcore_fpfh", "point_gaussian_noise")}
    assert len(failed) == 4 and summary.failed == 4
    for err in failed.error:
        assert "\n" not in err.strip()
    fpfh_noise = failed[(failed.method == "patchcore_fpfh") & (failed.corruption == "gaussian_noise")].error.iloc[0]
    assert "point" in fpfh_noise and "gaussian_noise" in fpfh_noise
    assert all("point cloud" in e or "mvtec3d" in e or "image" in e for e in failed[failed.method == "patchcore"].error)


def test_point_methods_are_not_in_methods_all(monkeypatch, capsys):
    assert registered()["patchcore_fpfh"].in_all is False
    code, out, _ = run_cli(monkeypatch, capsys, "list", "methods")
    assert code == 0 and "patchcore_fpfh" in out


def test_reproduce_table2_end_to_end_on_the_standin_with_departures_marked(tmp_path, monkeypatch, capsys):
    from bench.datasets.standins import make_mvtec3d

    root = make_mvtec3d(tmp_path / "m3d", ["bagel"], per_class=4)
    args = ("reproduce", "ttad-table2", "--root", root, "--categories", "bagel", "--weights", "random",
            "--set", "num_group=32", "--set", "group_size=16", "--set", "ttad_pointmae.adapt_epochs=1",
            "--set", "patchcore_depth.backbone=resnet18", "--device", "cpu", "--no-progress", "--out", tmp_path / "run")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    for row in ("Depth PatchCore†", "Raw (in BTF)†", "HoG (in BTF)†", "SIFT (in BTF)†", "FPFH†", "M3DM†", "TTAD (Ours)†"):
        assert f"| {row} | " in out, row
    assert "| Depth GAN‡ | – (47.50) |" in out and "‡ Depth AE: not run" in out
    assert "(mean over classes)" in out
    notes = {line.split(":", 1)[0]: line for line in out.splitlines() if line.startswith("† ")}
    assert "random weights (paper: pretrained)" in notes["† patchcore_pointmae"]
    assert "random weights" not in notes["† patchcore_fpfh"]  # computed features: no weights to be random
    assert "changed: group_size=16, num_group=32" in notes["† patchcore_pointmae"]
    assert "adapt_epochs 1 (paper: 30)" in notes["† ttad_pointmae"]
    assert "backbone resnet18 (paper: wide_resnet50_2)" in notes["† patchcore_depth"]
    assert all("stand-in (bench.datasets.standins, seed 0) data for mvtec3d" in n and "1 of 10 categories" in n
               for n in notes.values())
    # the same run as LaTeX (resumed: nothing recomputed), what a paper includes
    code, tex, err = run_cli(monkeypatch, capsys, *args, "-f", "latex")
    assert code == 0 and "0 ran" in err, err
    check_latex(tex)
    assert r"M3DM$^\dagger$ & " in tex and r"$^\dagger$ patchcore\_pointmae: " in tex
