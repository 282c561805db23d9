"""A grid end to end on a tiny dataset: rows, resume, fit reuse, failed cells, tables, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench.errors import BenchWarning
from bench.executors import run_local
from bench.grid import GridSpec
from bench.methods import Scores, registered, registered_temporarily
from bench.methods.patchcore import PatchCore
from bench.results import load_rows

FAST = {"resize": "64", "image_size": "64", "coreset_ratio": "0.5"}


def _spec(root, methods=("patchcore",), **kw) -> GridSpec:
    return GridSpec(methods=list(methods), dataset="folder", root=str(root), corruptions=["gaussian_noise"],
                    severities=[3], overrides=dict(FAST), **kw)


@pytest.mark.slow
def test_grid_writes_one_row_per_cell_and_resumes(tiny_root, tmp_path):
    run = tmp_path / "run"
    s1 = run_local(_spec(tiny_root), run, show_progress=False)
    assert (s1.total, s1.ran, s1.failed) == (2, 2, 0)
    df = load_rows(run)
    assert sorted(df["corruption"]) == ["clean", "gaussian_noise"]
    assert set(df["status"]) == {"ok"}
    for col in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max"):
        assert df[col].between(0, 1).all(), col
    assert df.loc[df.corruption == "clean", "image_auroc"].item() == 1.0
    # one fit for the category, reused by the corrupted cell
    fits = (run / "fits.jsonl").read_text().splitlines()
    assert len(fits) == 1
    assert sorted(df["fit_cached"]) == [False, True]
    cfg = json.loads(df["config"].iloc[0])
    assert cfg["coreset_ratio"] == 0.5 and cfg["backbone"] == "tf_efficientnet_lite0"
    assert df["dataset"].iloc[0] == "data" and df["protocol"].iloc[0] == "native"

    s2 = run_local(_spec(tiny_root), run, show_progress=False)
    assert (s2.skipped, s2.ran) == (2, 0)
    assert len(load_rows(run)) == 2


@pytest.mark.slow
def test_changed_hyperparameter_makes_new_cells(tiny_root, tmp_path):
    run = tmp_path / "run"
    run_local(_spec(tiny_root), run, show_progress=False)
    spec = _spec(tiny_root)
    spec.overrides["num_neighbours"] = "3"
    with pytest.warns(BenchWarning, match="also holds the cells of 1 other grid spec"):
        s = run_local(spec, run, show_progress=False)
    assert s.ran == 2
    assert load_rows(run)["config_hash"].nunique() == 2


class _NaNMethod(PatchCore):
    def score(self, images):
        s = super().score(images)
        return Scores(np.full_like(s.image_scores, np.nan), s.maps)


@pytest.fixture
def nan_method():
    """Registered for one test only, so the contract test never sees it."""
    with registered_temporarily("test_nan_method", _NaNMethod, summary="returns NaN scores (test only)") as name:
        yield name


@pytest.mark.slow
def test_failed_cell_is_recorded_and_grid_goes_on(tiny_root, tmp_path, nan_method):
    run = tmp_path / "run"
    s = run_local(_spec(tiny_root, methods=("test_nan_method", "patchcore")), run, show_progress=False)
    assert (s.ran, s.failed) == (4, 2)
    df = load_rows(run)
    bad = df[df.method == "test_nan_method"]
    assert set(bad["status"]) == {"failed"}
    assert bad["error"].str.contains("NaN").all()
    assert set(df[df.method == "patchcore"]["status"]) == {"ok"}
    # failed cells are done unless asked to retry
    with pytest.warns(BenchWarning, match="also holds the cells of 1 other grid spec"):  # a subset of the first grid
        assert run_local(_spec(tiny_root, methods=("test_nan_method",)), run, show_progress=False).ran == 0
    with pytest.warns(BenchWarning, match="also holds the cells of 1 other grid spec"):
        again = run_local(_spec(tiny_root, methods=("test_nan_method",)), run, retry_failed=True, show_progress=False)
    assert again.ran == 2


@pytest.mark.slow
def test_cli_grid_table_and_list(tiny_root, tmp_path):
    run = tmp_path / "clirun"
    cmd = [sys.executable, "-m", "bench", "grid", "--methods", "patchcore", "--root", str(tiny_root),
           "--corruptions", "contrast", "--severities", "2", "--out", str(run), "--no-progress"]
    for k, v in FAST.items():
        cmd += ["--set", f"{k}={v}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| PatchCore |" in out.stdout
    latex = subprocess.run([sys.executable, "-m", "bench", "table", str(run), "--format", "latex",
                            "--metric", "image_auroc,pixel_auroc"], capture_output=True, text=True)
    assert latex.returncode == 0, latex.stderr
    assert "\\toprule" in latex.stdout and "PatchCore & 100.00" in latex.stdout
    lst = subprocess.run([sys.executable, "-m", "bench", "list", "methods"], capture_output=True, text=True)
    assert lst.returncode == 0, lst.stderr
    listed = [line.split()[0] for line in lst.stdout.splitlines()]
    assert listed == list(registered()) and "patchcore" in listed  # one line per method, registry order


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path, tiny_root):
    def error(*args):
        out = subprocess.run([sys.executable, "-m", "bench", "grid", *args], capture_output=True, text=True)
        assert out.returncode == 2
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in out.stderr
        return lines[0]

    assert "does not exist" in error("--methods", "patchcore", "--root", str(tmp_path / "nope"))
    assert "did you mean 'patchcore'?" in error("--methods", "patchcor", "--root", str(tiny_root))


def test_unknown_override_for_a_method_is_rejected(tiny_root):
    from bench.errors import BenchError

    spec = _spec(tiny_root)
    spec.overrides["patchcore.coreset_ration"] = "0.1"
    with pytest.raises(BenchError, match="no hyperparameter 'coreset_ration'"):
        spec.cells()


def test_cpu_sized_defaults_apply_to_the_embedded_dataset_only():
    def cfg(dataset, method, **overrides):
        spec = GridSpec(methods=[method], dataset=dataset, root="/nonexistent", overrides=overrides)
        return spec.method_config(method)

    # textures: CPU-sized budgets (datasets/registry.py)
    assert (cfg("textures", "ttad").adapt_epochs, cfg("textures", "ttad").adapt_max_images) == (1, 5)
    assert (cfg("textures", "rd4ad").epochs, cfg("textures", "gnl").epochs) == (25, 6)
    assert cfg("textures", "patchcore").image_size == 160
    # every other dataset: the papers' values
    for ds in ("mvtec_ad", "folder"):
        assert (cfg(ds, "ttad").adapt_epochs, cfg(ds, "ttad").adapt_max_images) == (10, 0)
        assert (cfg(ds, "rd4ad").epochs, cfg(ds, "gnl").epochs) == (200, 20)
        assert (cfg(ds, "patchcore").resize, cfg(ds, "patchcore").image_size) == (256, 224)
    # --set wins over the dataset's defaults
    assert cfg("textures", "gnl", **{"gnl.epochs": "2"}).epochs == 2
