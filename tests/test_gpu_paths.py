"""What the GPU paths can show without a GPU: the FAISS wheel choice, the search backends that
bench doctor compares, and the timing benchmark's bookkeeping on a tiny CPU run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import faiss_gpu
from bench.doctor import knn_checks
from bench.methods.knn import NearestNeighbours

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("cuda, python, wheels", [
    ("12.8", (3, 11), [faiss_gpu.CU12]),
    # no cuVS wheel for 3.11; the CUDA 12 one, last, runs on the newer driver with its own libraries
    ("13.0", (3, 11), [faiss_gpu.CU13_TORCH_LIBS, faiss_gpu.CU12]),
    ("13.0", (3, 12), [faiss_gpu.CU13, faiss_gpu.CU13_TORCH_LIBS, faiss_gpu.CU12]),
    ("11.8", (3, 11), []),
    (None, (3, 11), []),  # a CPU build of torch
])
def test_faiss_wheel_follows_the_cuda_major_of_torch(cuda, python, wheels):
    assert faiss_gpu.candidates(cuda, python) == wheels


def test_faiss_gpu_commands_replace_faiss_cpu():
    uninstall, install = faiss_gpu.commands(faiss_gpu.CU12, "pins.txt")
    assert uninstall[-3:] == ["uninstall", "-y", "faiss-cpu"]
    assert install[-4:] == ["install", "-c", "pins.txt", faiss_gpu.CU12]


def test_faiss_gpu_installs_never_move_torch_or_its_cuda_libraries():
    """The constraints file pins every installed distribution torch runs on, and nothing else."""
    import importlib.metadata as md

    pins = dict(p.split("==") for p in faiss_gpu.torch_pins())
    assert pins["torch"] == md.version("torch")
    assert all(n in ("torch", "triton") or n.startswith(("nvidia-", "cuda-")) for n in pins)
    assert "numpy" not in pins and "faiss-cpu" not in pins
    installed = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in md.distributions()}
    assert {n for n in installed if n.startswith("nvidia-")} <= set(pins)
    out = subprocess.run([sys.executable, "-m", "bench.faiss_gpu"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert ("faiss-gpu" in out.stdout) == bool(torch.version.cuda)


def test_the_search_backends_find_the_exact_neighbours():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(3000, 64, generator=g), torch.randn(700, 64, generator=g)
    lines = []
    found = knn_checks("cpu", bank, queries, lines.append)
    assert found["faiss"][1] == 1.0 and "100.00 % same neighbour" in lines[0]
    d_f, i_f = NearestNeighbours(bank.numpy(), "cpu").search(queries.numpy(), 3)
    d_t, i_t = NearestNeighbours(bank.numpy(), "cpu", backend="torch").search(queries.numpy(), 3)
    assert np.array_equal(i_f, i_t) and np.allclose(d_f, d_t, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_perf_table_times_the_stages_and_projects_the_table(tmp_path):
    """benchmarks/perf_table.py on a one-category stand-in at toy settings (the GPU run's bookkeeping)."""
    import json

    from bench.datasets.mvtec import MVTEC_SHAPE
    from bench.datasets.standins import make_mvtec_ad

    make_mvtec_ad(tmp_path / "mvtec", ["toothbrush"])
    out = tmp_path / "perf.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perf_table.py"), "--device", "cpu", "--root", str(tmp_path / "mvtec"),
         "--categories", "toothbrush", "--methods", "patchcore,ttad", "--corruptions", "clean,gaussian_noise",
         "--weights", "random", "--set", "image_size=64", "--set", "resize=64", "--set", "adapt_epochs=1",
         "--test-subset", "6", "--out", str(tmp_path / "run"), "--json", str(out)],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "ADSHIFT_BENCH_CACHE": str(tmp_path / "c")})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    r = json.loads(out.read_text())
    assert (r["cells"], r["failed"], r["weights"]) == (4, 0, "random")
    assert {"fit", "adapt", "score", "metrics"} <= set(r["stage_seconds"])
    assert sum(r["stage_seconds"].values()) <= r["wall_seconds"] + 1e-6
    # projected from one category's 60 training / 42 test images to MVTec AD's 3,629 / 1,725
    fits, cells = r["projected_seconds"]["fits"], r["projected_seconds"]["cells"]
    assert fits == pytest.approx(r["fits_seconds"] * 3629 / MVTEC_SHAPE["toothbrush"][2])
    assert cells > 0 and r["method_seconds"]["ttad"] > 0
    assert "projected to all 15 categories" in run.stdout
