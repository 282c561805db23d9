"""What a cell's numbers depend on besides its config and seed, and what the harness fixes.

A trained student amplifies a last-bit difference into points of AUROC: RD4AD trained on two
hosts with the same versions differed by up to 15 points. The bits of a CPU computation depend
on (measured: ``benchmarks/host_numerics.py``)

- the thread count (a convolution or GEMM splits its sums by thread): recorded (``threads``);
- the SIMD kernels each library picks for the host: ATen (``ATEN_CPU_CAPABILITY``), oneDNN's
  convolutions (``ONEDNN_MAX_CPU_ISA``), MKL's GEMMs (``MKL_CBWR``), the OpenBLAS copies inside
  FAISS and numpy (``OPENBLAS_CORETYPE``), FAISS's distance code (``FAISS_SIMD_LEVEL``), numba's
  code generation for the coreset (``NUMBA_CPU_NAME``: its vector width and unrolling), numpy's
  and OpenCV's AVX-512 paths. An AVX-512 host picks other kernels than an AVX2 host.

- at AVX2, still the host: oneDNN's brgemm convolutions split their sums by the L1 / L2 size,
  and MKL honours ``MKL_CBWR=AVX2`` on Intel processors only.

``pin_cpu_kernels`` (called when ``bench`` is imported, before numpy or torch load) pins them on
x86 hosts with AVX2 (``BENCH_KERNELS``):

- ``portable`` (default): ATen, OpenBLAS, FAISS, numba at AVX2, oneDNN at AVX (its plain JIT and
  GEMM convolutions: the sums follow the shapes and threads only), MKL's COMPATIBLE branch: the
  same bits on every x86 host with AVX2, whatever its vendor, caches or AVX-512;
- ``fast``: everything at AVX2 (about 1.3-1.6x faster convolutions and 3x faster MKL GEMMs;
  the same bits only on hosts with the same L1 / L2 sizes and processor vendor);
- ``native``: each library its widest kernels (rows match only hosts of the same kind).

A variable the user set is kept. What is left is recorded in every row
(``reproducibility_fields``): processor, ATen's kernel level, the pins in effect, caches,
threads, device, deterministic mode.

On CUDA, ``deterministic`` turns on ``torch.use_deterministic_algorithms`` (cuBLAS workspace
``:4096:8``, cuDNN deterministic, no autotuning) unless ``--nondeterministic``; an operation
without a deterministic kernel warns instead of failing, and its name is recorded in the row
(``nondeterministic_ops``).

This module imports only the standard library at import time (it runs before numpy and torch).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, MutableMapping

KERNELS_ENV = "BENCH_KERNELS"  # portable (default) | fast | native
CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for deterministic results (PyTorch's docs)

# Every library's kernels capped at AVX2 + FMA (x86-64-v3), the widest level nearly every x86
# server of the last decade has. Values are each library's own spelling.
AVX2_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",  # oneDNN's older name of the same setting
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility (Intel processors only)
    "OPENBLAS_CORETYPE": "Haswell",  # blocking is compile-time per core type: host-independent
    "FAISS_SIMD_LEVEL": "AVX2",  # exact spelling: FAISS aborts on another one
    "NUMBA_CPU_NAME": "haswell",  # vector width and unrolling of the fastmath coreset loop
}
# What is still host-dependent at AVX2, removed in the default mode (measured and read in the
# sources of oneDNN 3.12 and MKL 2024, see docs/reproducibility.md):
# - oneDNN's brgemm convolutions (AVX2 and up) split their reductions by the L1 / L2 size, so a
#   48 KB-L1 host sums in another order than a 32 KB one; capped at AVX, oneDNN runs its plain
#   JIT and GEMM convolutions, whose order depends only on shapes and the thread count (on the
#   harness's networks: every convolution of RD4AD's training and of the backbones' forward);
# - MKL honours MKL_CBWR=AVX2 on Intel processors only (AMD runs its own branch); COMPATIBLE is
#   the one branch that gives the same bits on every x86 processor (about 3x slower GEMMs).
PORTABLE_PINS = {**AVX2_PINS, "ONEDNN_MAX_CPU_ISA": "AVX", "DNNL_MAX_CPU_ISA": "AVX", "MKL_CBWR": "COMPATIBLE"}
MODES = {"portable": PORTABLE_PINS, "fast": AVX2_PINS, "native": {}}
# Dispatch targets above AVX2 that numpy and OpenCV would pick; each is disabled only where the
# host has it (both libraries complain about features the host lacks). numpy 2.4 renamed its
# groups (X86_V4 for AVX512F + CD + SKX); before it, each group has its own name, and a name that
# version does not know is passed over without a word (so the wrong spelling pins nothing).
_NUMPY_ABOVE_AVX2 = {"avx512f": "X86_V4", "avx512_vbmi2": "AVX512_ICL", "avx512_fp16": "AVX512_SPR"}
_NUMPY_ABOVE_AVX2_BEFORE_2_4 = {"avx512f": "AVX512F", "avx512cd": "AVX512CD", "avx512bw": "AVX512_SKX",
                                "avx512_vnni": "AVX512_CLX", "avx512vbmi": "AVX512_CNL",
                                "avx512_vbmi2": "AVX512_ICL", "avx512_fp16": "AVX512_SPR"}
_OPENCV_ABOVE_AVX2 = {"avx_vnni": "AVX_VNNI", "avx512f": "AVX512-SKX", "avx512_vnni": "AVX512-CLX"}

_APPLIED: dict[str, str] = {}  # what pin_cpu_kernels set or found, for the rows
_MODE = ["native"]


# --------------------------------------------------------------------------- the host


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


@lru_cache(maxsize=1)
def host_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def has_avx2() -> bool:
    flags = host_flags()
    return platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= flags


def host_isa() -> str:
    """The widest x86 SIMD level the host offers (what an unpinned library would use)."""
    flags = host_flags()
    if "avx512f" in flags:
        return "AVX512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    if "avx" in flags:
        return "AVX"
    return platform.machine() or "unknown"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """Processor name with vendor family / model / stepping (VMs often show a generic name)."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    ids = [f"{k} {info[k]}" for k in ("cpu family", "model", "stepping") if k in info]
    return f"{name} ({', '.join(ids)})" if ids else name


@lru_cache(maxsize=1)
def cache_sizes() -> str:
    """'L1d 32K, L1i 32K, L2 1024K, L3 32768K' of the first CPU (sysfs), '' where unknown."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    parts = []
    for index in sorted(base.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        parts.append(f"L{level}{suffix} {size}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- the pins


def pin_cpu_kernels(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Pin every library's CPU kernels for ``BENCH_KERNELS`` (see the module doc); returns the
    pins in effect.

    Must run before numpy, torch, FAISS, numba and OpenCV load (their dispatch is read once).
    Keeps what the user set. Does nothing with ``BENCH_KERNELS=native`` or without AVX2.
    """
    env = os.environ if environ is None else environ
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS starts
    mode = env.get(KERNELS_ENV, "portable").strip().lower() or "portable"
    if mode not in MODES:
        warnings.warn(f"{KERNELS_ENV}={env[KERNELS_ENV]!r}: use portable (the default), fast or native; "
                      "using portable", stacklevel=2)
        mode = "portable"
    applied: dict[str, str] = {}
    if MODES[mode] and has_avx2():
        pins = dict(MODES[mode])
        flags = host_flags()
        names = _NUMPY_ABOVE_AVX2 if _numpy_at_least(2, 4) else _NUMPY_ABOVE_AVX2_BEFORE_2_4
        numpy_off = [v for f, v in names.items() if f in flags]
        opencv_off = [v for f, v in _OPENCV_ABOVE_AVX2.items() if f in flags]
        if numpy_off:
            pins["NPY_DISABLE_CPU_FEATURES"] = " ".join(numpy_off)
        if opencv_off:
            pins["OPENCV_CPU_DISABLE"] = ",".join(opencv_off)
        for key, value in pins.items():
            applied[key] = env.setdefault(key, value)
    if environ is None:
        _APPLIED.clear()
        _APPLIED.update(applied)
        _MODE[0] = mode if applied else "native"
    return applied


def _numpy_at_least(major: int, minor: int) -> bool:
    """numpy's version without importing it (its feature names changed in 2.4)."""
    from importlib import metadata

    try:
        found = re.match(r"(\d+)\.(\d+)", metadata.version("numpy"))
    except metadata.PackageNotFoundError:
        return False
    return bool(found) and (int(found[1]), int(found[2])) >= (major, minor)


def kernels_mode() -> str:
    if not has_avx2():
        return f"native (no AVX2: {host_isa()})"
    return _MODE[0]


# --------------------------------------------------------------------------- what rows record


def _effective_libraries() -> dict[str, Any]:
    """What the loaded libraries report they run (after the pins), where they say it."""
    out: dict[str, Any] = {}
    try:
        import torch

        out["aten"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    except Exception:  # noqa: BLE001
        pass
    try:
        import faiss

        out["faiss_simd"] = faiss.SIMDConfig.get_level_name()
    except Exception:  # noqa: BLE001 - older FAISS without SIMDConfig, or none
        pass
    blas = _blas_libraries(len(sys.modules))
    if blas is not None:
        out["blas"] = blas
    return out


@lru_cache(maxsize=4)
def _blas_libraries(_modules: int) -> list[str] | None:
    """The BLAS libraries loaded and their kernel families (threadpoolctl walks every loaded
    shared object, ~5 ms: asked again only when a module was imported since, the way a new
    library gets loaded)."""
    try:
        from threadpoolctl import threadpool_info

        return sorted({f"{i.get('internal_api')}:{i.get('architecture') or '?'}"
                       for i in threadpool_info() if i.get("user_api") == "blas"})
    except Exception:  # noqa: BLE001
        return None


def reproducibility_fields(device: str, deterministic: bool, nondeterministic_ops: list[str] | None = None
                           ) -> dict[str, Any]:
    """The row's record of what its bits depend on besides config, seed, data and versions."""
    libs = _effective_libraries()
    numerics: dict[str, Any] = {
        "kernels": kernels_mode(), "host_isa": host_isa(), "pins": dict(sorted(_APPLIED.items())),
        "caches": cache_sizes(), **libs,
    }
    if device.startswith("cuda"):
        numerics.update(_cuda_description(device))
    return {
        "cpu_model": cpu_model(),
        "cpu_capability": str(libs.get("aten", "")),
        "deterministic": bool(deterministic),
        "nondeterministic_ops": json.dumps(sorted(set(nondeterministic_ops or ()))),
        "numerics": json.dumps(numerics, sort_keys=True),
    }


def _cuda_description(device: str) -> dict[str, Any]:
    try:
        import torch

        index = torch.device(device).index or 0
        return {"gpu": torch.cuda.get_device_name(index), "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")}
    except Exception:  # noqa: BLE001
        return {}


# What must be equal for two computations of one cell to agree bit for bit (bench verify).
REPRODUCIBILITY_KEYS = ("device", "threads", "deterministic", "cpu_capability", "cpu_model")
NUMERICS_KEYS = ("kernels", "pins", "caches", "faiss_simd", "blas", "gpu", "cuda", "cudnn")


def differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """'name: recorded -> here' for each reproducibility field that differs (absent = unknown)."""
    out = []
    for key in REPRODUCIBILITY_KEYS:
        if key in recorded and key in here and str(recorded[key]) != str(here[key]):
            out.append(f"{key}: {recorded[key]} -> {here[key]}")
    try:
        a = json.loads(recorded.get("numerics") or "{}")
        b = json.loads(here.get("numerics") or "{}")
    except (TypeError, ValueError):
        return out
    for key in NUMERICS_KEYS:
        if key in a and key in b and a[key] != b[key]:
            out.append(f"{key}: {_changed(a[key], b[key])}")
    return out


def _changed(a: Any, b: Any) -> str:
    """'a -> b'; of two dicts (the pins) only the entries that differ, "unset" where one has none."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return f"{a} -> {b}"
    return ", ".join(f"{k} {a.get(k, 'unset')} -> {b.get(k, 'unset')}" for k in sorted({*a, *b})
                     if a.get(k) != b.get(k))


# --------------------------------------------------------------------------- deterministic mode


_NONDETERMINISTIC = re.compile(r"^(\S+?) does not have a deterministic implementation")


@contextlib.contextmanager
def deterministic_algorithms(device: str, enabled: bool) -> Iterator[list[str]]:
    """torch's deterministic mode for a fit or a cell; yields the list of operations that had no
    deterministic kernel (they warn and run; the caller records them). Restores the previous mode.

    On the CPU torch's kernels are deterministic at a fixed thread count; the mode is turned on
    there too so that an operation without a deterministic CPU kernel is named as well.
    """
    import torch

    seen: list[str] = []
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    fill = getattr(torch.utils, "deterministic", None)
    previous_fill = getattr(fill, "fill_uninitialized_memory", None)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if fill is not None:
        fill.fill_uninitialized_memory = False  # NaN-filling every torch.empty costs time, changes no result
    if device.startswith("cuda"):
        torch.backends.cudnn.deterministic = enabled
        torch.backends.cudnn.benchmark = False if enabled else previous[3]
    show = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        found = _NONDETERMINISTIC.match(str(message))
        if found:
            seen.append(found[1])
        else:
            show(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            # each op's warning in every cell, not once per place in the process
            warnings.filterwarnings("always", message=".*does not have a deterministic implementation")
            warnings.showwarning = record
            yield seen
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]
        if fill is not None and previous_fill is not None:
            fill.fill_uninitialized_memory = previous_fill
