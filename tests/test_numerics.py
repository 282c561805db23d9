"""The kernel pins, what rows record of their numerics, and the deterministic mode's op record."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from _grids import GrayProbe, THREADS, reference_rows, tiny_spec
from bench import numerics
from bench.executors import LocalExecutor, run_grid
from bench.methods import Scores, registered_temporarily
from bench.results import load_rows


@pytest.fixture
def avx2_host(monkeypatch):
    monkeypatch.setattr(numerics, "has_avx2", lambda: True)
    monkeypatch.setattr(numerics, "host_flags", lambda: frozenset({"avx2", "fma"}))


def test_pins_cap_every_library_at_avx2_and_keep_what_the_user_set(avx2_host):
    env = {"OPENBLAS_CORETYPE": "Zen"}
    applied = numerics.pin_cpu_kernels(env)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["FAISS_SIMD_LEVEL"] == "AVX2"
    assert env["NUMBA_CPU_NAME"] == "haswell"
    # the default: oneDNN below its cache-dependent brgemm kernels, MKL's vendor-independent branch
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX" and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["OPENBLAS_CORETYPE"] == applied["OPENBLAS_CORETYPE"] == "Zen"  # the user's value wins
    assert env["CUBLAS_WORKSPACE_CONFIG"] == numerics.CUBLAS_WORKSPACE
    # no AVX-512 on this (pretend) host: nothing to disable, and no complaint from numpy / OpenCV
    assert "NPY_DISABLE_CPU_FEATURES" not in env and "OPENCV_CPU_DISABLE" not in env


def test_avx512_paths_are_disabled_only_where_the_host_has_them(monkeypatch):
    monkeypatch.setattr(numerics, "has_avx2", lambda: True)
    monkeypatch.setattr(numerics, "host_flags", lambda: frozenset({"avx2", "fma", "avx512f", "avx512_vnni"}))
    env: dict[str, str] = {}
    numerics.pin_cpu_kernels(env)
    assert env["OPENCV_CPU_DISABLE"] == "AVX512-SKX,AVX512-CLX"
    if numerics._numpy_at_least(2, 4):
        assert env["NPY_DISABLE_CPU_FEATURES"] == "X86_V4"
    # numpy before 2.4 (the newest for Python 3.10 is 2.2) spells each AVX-512 group on its own
    monkeypatch.setattr(numerics, "_numpy_at_least", lambda major, minor: False)
    env = {}
    numerics.pin_cpu_kernels(env)
    assert env["NPY_DISABLE_CPU_FEATURES"] == "AVX512F AVX512_CLX"


def test_fast_kernels_cap_everything_at_avx2(avx2_host):
    env = {numerics.KERNELS_ENV: "fast"}
    numerics.pin_cpu_kernels(env)
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["MKL_CBWR"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"


def test_native_kernels_and_hosts_without_avx2_get_no_pins(avx2_host, monkeypatch):
    env = {numerics.KERNELS_ENV: "native"}
    assert numerics.pin_cpu_kernels(env) == {} and "ATEN_CPU_CAPABILITY" not in env
    monkeypatch.setattr(numerics, "has_avx2", lambda: False)
    env = {}
    assert numerics.pin_cpu_kernels(env) == {} and "OPENBLAS_CORETYPE" not in env


@pytest.mark.skipif(not numerics.has_avx2(), reason="the pins apply to x86 hosts with AVX2")
def test_importing_bench_pins_the_libraries_before_they_load():
    env = {k: v for k, v in os.environ.items() if k not in numerics.AVX2_PINS and k != numerics.KERNELS_ENV}
    code = ("import bench, os, torch, faiss; "
            "print(os.environ['ATEN_CPU_CAPABILITY'], torch.backends.cpu.get_cpu_capability(), "
            "faiss.SIMDConfig.get_level_name())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["avx2", "AVX2", "AVX2"]


def test_a_row_records_what_its_bits_depend_on():
    row = reference_rows().iloc[0]
    assert row["threads"] == row["fit_threads"] == THREADS and row["fit_device"] == row["device"] == "cpu"
    assert row["cpu_model"] == numerics.cpu_model() and row["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert bool(row["deterministic"]) and json.loads(row["nondeterministic_ops"]) == []
    recorded = json.loads(row["numerics"])
    assert recorded["host_isa"] == numerics.host_isa() and recorded["aten"] == row["cpu_capability"]
    assert recorded["kernels"] == numerics.kernels_mode()
    assert set(json.loads(row["versions"])) >= {"torch", "numpy", "scipy", "pillow", "faiss-cpu", "scikit-image"}


def test_differences_name_the_fields_that_changed():
    a = {"device": "cpu", "threads": 2, "cpu_model": "A", "numerics": json.dumps({"pins": {"X": "1"}, "caches": "L2 1M"})}
    b = {"device": "cpu", "threads": 4, "cpu_model": "A",
         "numerics": json.dumps({"pins": {"Y": "2"}, "caches": "L2 1M"})}
    # of the pins only those that differ (a row written before a pin existed lacks it)
    assert numerics.differences(a, b) == ["threads: 2 -> 4", "pins: X 1 -> unset, Y unset -> 2"]
    assert numerics.differences(a, a) == []


def test_the_deterministic_mode_names_operations_without_a_deterministic_kernel_and_restores_itself():
    before = torch.are_deterministic_algorithms_enabled()
    with numerics.deterministic_algorithms("cpu", True) as ops:
        assert torch.are_deterministic_algorithms_enabled()
        for _ in range(2):  # every occurrence reaches the record, not once per place
            warnings.warn("foo_backward_cuda does not have a deterministic implementation, but you set "
                          "'torch.use_deterministic_algorithms(True, warn_only=True)'", UserWarning)
        with pytest.warns(UserWarning, match="something else"):
            warnings.warn("something else", UserWarning)  # other warnings pass through
    assert ops == ["foo_backward_cuda", "foo_backward_cuda"]
    assert torch.are_deterministic_algorithms_enabled() == before
    with numerics.deterministic_algorithms("cpu", False):
        assert not torch.are_deterministic_algorithms_enabled()


class _Nondeterministic(GrayProbe):
    """Warns as torch does for an operation without a deterministic kernel."""

    def score(self, images) -> Scores:
        warnings.warn("scatter_add_probe does not have a deterministic implementation, but you set "
                      "'torch.use_deterministic_algorithms(True, warn_only=True)'", UserWarning)
        return super().score(images)


def test_an_operation_without_a_deterministic_kernel_is_recorded_and_said_once(tmp_path):
    spec = tiny_spec(corruptions=("gaussian_noise", "contrast"))
    spec.methods, spec.overrides = ["nondet_probe"], {}
    with registered_temporarily("nondet_probe", _Nondeterministic), \
            pytest.warns(UserWarning, match="scatter_add_probe has no deterministic kernel") as said:
        run_grid(spec, tmp_path / "run", LocalExecutor(workers=1, threads=THREADS), show_progress=False)
    rows = load_rows(tmp_path / "run")
    assert [json.loads(v) for v in rows["nondeterministic_ops"]] == [["scatter_add_probe"]] * 3
    assert sum("no deterministic kernel" in str(w.message) for w in said) == 1
