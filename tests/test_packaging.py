"""`methods/` and `datasets/` install as bench.methods / bench.datasets, never top-level."""
from __future__ import annotations

import pytest

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import importlib.util, bench.methods, bench.datasets, bench.datasets.mvtec;"
    "print(bench.methods.__file__); print(bench.datasets.__file__);"
    "spec = importlib.util.find_spec('datasets');"
    "print('top-level datasets:', None if spec is None else spec.origin)"
)


def _probe(env_path: str | None, cwd: Path) -> list[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if env_path:
        env["PYTHONPATH"] = env_path
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_editable_install_maps_subpackages(tmp_path):
    lines = _probe(None, tmp_path)  # the test environment has the editable install
    assert lines[0].endswith("methods/__init__.py") and lines[1].endswith("datasets/__init__.py")
    assert str(ROOT) not in (lines[2] or "")  # our datasets/ is not importable as `datasets`


@pytest.mark.slow
def test_wheel_contains_and_imports_subpackages(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("adshift_bench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "bench/methods/patchcore.py" in names and "bench/datasets/mvtec.py" in names
    assert "bench/tables/layouts.py" in names and not any(n.startswith("benchmarks/") for n in names)
    assert "bench/published_results.csv" in names and "bench/published_domains.csv" in names
    assert "bench/published_categories.csv" in names
    assert not any(n.startswith(("datasets/", "methods/")) for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    lines = _probe(str(target), tmp_path)
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target))
    # `import datasets` finds nothing, or another distribution (Hugging Face's): never this wheel's folder
    assert str(target) not in lines[2] and str(ROOT) not in lines[2]
