"""The plugin paths end to end: a method, and a corruption, each in its own package, installed
into a fresh environment, found through the ``bench.methods`` / ``bench.corruptions`` entry points
and run by ``bench grid``.

The packages are docs/adding-a-method.md's and docs/adding-a-corruption.md's examples
(docs/example_plugin, docs/example_corruption), copied to a temporary folder; the guides' code
blocks must be these files, so the guides are what is proven here.
"""
from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

from bench.results import load_rows

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "example_plugin"
GUIDE = REPO / "docs" / "adding-a-method.md"
CORRUPTION_EXAMPLE = REPO / "docs" / "example_corruption"
CORRUPTION_GUIDE = REPO / "docs" / "adding-a-corruption.md"


@pytest.mark.parametrize("guide, example, module", [(GUIDE, EXAMPLE, "bench_mean_distance.py"),
                                                    (CORRUPTION_GUIDE, CORRUPTION_EXAMPLE, "bench_uneven_light.py")])
def test_the_guide_shows_the_example_package_as_it_is(guide, example, module):
    blocks = re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", guide.read_text(), flags=re.S)
    shown = {name: body for name, body in blocks}
    assert set(shown) >= {module, "pyproject.toml"}
    for name in (module, "pyproject.toml"):
        assert shown[name] == (example / name).read_text(), f"{guide.name} shows another {name} than {example}"


def _run(args, env, cwd) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(map(str, args))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _environment(tmp_path: Path, example: Path) -> tuple[Path, Path, Path, dict, list]:
    """A fresh environment holding this checkout and a copy of ``example`` installed: (the copy,
    python, bench, env vars, pip install command)."""
    env_dir = tmp_path / "env"
    # torch, numpy, setuptools, ... come from the environment running this test (a virtual
    # environment's site-packages, not its base interpreter's: system_site_packages would give
    # the latter); no pip of its own (the parent's pip installs into it with --python), so no
    # network is needed
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python, bench = env_dir / "bin" / "python", env_dir / "bin" / "bench"
    inner = Path(sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)}))
    outer = [p for p in dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib")]) if Path(p).is_dir()]
    (inner / "_outer_environment.pth").write_text("\n".join(outer) + "\n")
    env = {**os.environ, "ADSHIFT_BENCH_CACHE": str(tmp_path / "cache"), "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-build-isolation",
           "--no-index"]
    # This checkout, editable, in front of whatever the system site-packages hold (another
    # checkout may be installed there); it also puts the `bench` command into the environment
    _run([*pip, "-e", REPO], env, tmp_path)
    where = _run([python, "-c", "import bench.methods; print(bench.methods.__file__)"], env, tmp_path).stdout
    assert Path(where.strip()).resolve() == (REPO / "methods" / "__init__.py").resolve()
    package = shutil.copytree(example, tmp_path / example.name)
    _run([*pip, package], env, tmp_path)
    return package, python, bench, env, pip


@pytest.mark.slow
def test_a_method_in_its_own_package_runs_in_bench_grid(tmp_path, tiny_root):
    package, python, bench, env, pip = _environment(tmp_path, EXAMPLE)

    listed = _run([bench, "list", "methods"], env, tmp_path).stdout
    assert re.search(r"^mean_distance +Mean distance: ", listed, flags=re.M), listed
    check = _run([python, "-c", "from bench.methods import check_method; from bench_mean_distance import "
                  "MeanDistance; print(len(check_method(MeanDistance, target_weight=0.5)))"], env, tmp_path)
    assert check.stdout.strip() == "9"

    run = tmp_path / "run"
    _run([bench, "grid", "--methods", "mean_distance", "--root", tiny_root, "--corruptions", "gaussian_noise",
          "--severities", "3", "--set", "side=32", "--device", "cpu", "--no-progress", "--out", run], env, tmp_path)
    rows = load_rows(run).sort_values("corruption")
    assert list(rows["method"]) == ["mean_distance"] * 2 and list(rows["status"]) == ["ok", "ok"]
    assert list(rows["corruption"]) == ["clean", "gaussian_noise"]
    assert rows["image_auroc"].between(0, 1).all() and rows["pixel_auroc"].between(0, 1).all()
    assert (rows["diag_train_spread"] > 0).all()  # the optional Diagnostics capability reached the rows
    assert list(rows["fit_cached"]) == [False, True]  # one fit for the category
    table = _run([bench, "table", run, "--format", "markdown"], env, tmp_path).stdout
    assert "| Mean distance |" in table  # the display name given at registration
    assert rows["method_code"].str.fullmatch(r"bench-mean-distance 0\.1\.0 sha256:[0-9a-f]{16}").all()

    # the user edits the method (same version, same config) and reinstalls: its cells run again
    source = package / "bench_mean_distance.py"
    source.write_text(source.read_text().replace("return Scores(maps", "return Scores(-maps"))
    _run([*pip, package], env, tmp_path)
    again = _run([bench, "grid", "--methods", "mean_distance", "--root", tiny_root, "--corruptions", "gaussian_noise",
                  "--severities", "3", "--set", "side=32", "--device", "cpu", "--no-progress", "--out", run],
                 env, tmp_path)
    assert "2 finished cell(s) of mean_distance were computed by other code of the method" in again.stderr
    edited = load_rows(run).sort_values("corruption")
    assert (edited["method_code"] != rows["method_code"].iloc[0]).all()
    assert list(edited["fit_cached"]) == [False, True]  # fitted again, once
    assert np.allclose(edited["image_auroc"].to_numpy() + rows["image_auroc"].to_numpy(), 1, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_a_corruption_in_its_own_package_runs_in_bench_grid(tmp_path, tiny_root):
    package, python, bench, env, pip = _environment(tmp_path, CORRUPTION_EXAMPLE)

    listed = _run([bench, "list", "corruptions"], env, tmp_path).stdout
    assert re.search(r"^  uneven_light +Uneven light: .* \[bench-uneven-light 0\.1\.0 sha256:[0-9a-f]{16}\]$",
                     listed, flags=re.M), listed
    check = _run([python, "-c", "from bench.datasets.custom_corruptions import check_corruption; "
                  "print(len(check_corruption('uneven_light')))"], env, tmp_path)  # the entry point registers it
    assert check.stdout.strip() == "4"

    run = tmp_path / "run"
    grid = [bench, "grid", "--methods", "patchcore", "--root", tiny_root, "--corruptions", "clean,uneven_light",
            "--severities", "5", "--set", "image_size=64", "--set", "resize=64", "--device", "cpu", "--no-progress",
            "--workers", "2", "--out", run]  # worker processes import the entry points themselves
    _run(grid, env, tmp_path)
    rows = load_rows(run).set_index("corruption")
    assert sorted(rows.index) == ["clean", "uneven_light"] and (rows["status"] == "ok").all()
    assert rows.loc["uneven_light", "pixel_auroc"] < rows.loc["clean", "pixel_auroc"]  # other pixels
    assert re.fullmatch(r"bench-uneven-light 0\.1\.0 sha256:[0-9a-f]{16}", rows.loc["uneven_light", "corruption_code"])
    table = _run([bench, "table", run, "--format", "markdown"], env, tmp_path).stdout
    assert "Uneven Light" in table
    _run([bench, "corrupt", "--root", tiny_root, "--preview", "--corruptions", "contrast,uneven_light",
          "--severities", "1,5", "--out", tmp_path / "plots"], env, tmp_path)
    assert (tmp_path / "plots" / "corruptions.png").is_file()

    # the user edits the corruption and reinstalls: new images, and its cell runs again
    source = package / "bench_uneven_light.py"
    source.write_text(source.read_text().replace("LOSS = (0.2, 0.35, 0.5, 0.65, 0.8)", "LOSS = (0.2, 0.35, 0.5, 0.65, 0.3)"))
    _run([*pip, package], env, tmp_path)
    again = _run(grid, env, tmp_path)
    assert "1 finished cell(s) of uneven_light were computed by other code of the corruption" in again.stderr
    edited = load_rows(run).set_index("corruption")
    assert edited.loc["uneven_light", "corruption_code"] != rows.loc["uneven_light", "corruption_code"]
    assert edited.loc["clean", "image_auroc"] == rows.loc["clean", "image_auroc"]  # the clean cell stayed done
