"""FAISS on the GPU: which wheel matches the installed torch's CUDA, and installing it.

    python -m bench.faiss_gpu            # print the choice and the pip commands
    python -m bench.faiss_gpu --install  # run them, then check that FAISS sees the GPU

Why a command and not only a pip extra: every FAISS wheel ships the same ``faiss`` package, so
``faiss-cpu`` (a dependency of the harness) and a GPU wheel installed side by side overwrite each
other's files in an order pip does not promise. The GPU wheel also holds the CPU code, so it
replaces ``faiss-cpu``: uninstall one, install the other.

The choice, by the CUDA major version torch was built with (``torch.version.cuda``), best first:

- CUDA 12: ``faiss-gpu-cu12`` (CUDA 12 wheels on PyPI; kernels for sm_70 ... sm_90).
- CUDA 13: ``faiss-gpu-cu13-cuvs`` (NVIDIA's cuVS build: Python 3.12, glibc >= 2.39), then
  ``faiss-cuda==1.14.1.post4`` (a CUDA 13 build of FAISS 1.14.1 that loads the ``nvidia-cublas`` /
  ``nvidia-cuda-runtime`` torch already has; later ``faiss-cuda`` releases are CUDA 12.8 builds),
  then ``faiss-gpu-cu12``: a CUDA 12 wheel brings its own CUDA 12 libraries (the
  ``nvidia-*-cu12`` wheels, ~600 MB) and runs on the newer driver a CUDA 13 torch needs, since
  NVIDIA drivers run binaries built for older CUDA versions.
- no CUDA (a CPU build of torch): nothing to do; the GPU search would not be used.

Every install runs with a pip constraints file that pins torch and the CUDA libraries installed
beside it (``torch``, ``triton``, ``nvidia-*``, ``cuda-*``) at their installed versions: a FAISS
wheel that pins other versions of them (the cuVS build pins ``cuda-toolkit==13.0.0`` and an older
NCCL than torch 2.11's) is refused by pip and the next candidate is tried, instead of pip
replacing the libraries torch runs on with a warning.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CU12 = "faiss-gpu-cu12"
CU13 = "faiss-gpu-cu13-cuvs"
CU13_TORCH_LIBS = "faiss-cuda==1.14.1.post4"


def candidates(cuda: str | None, python: tuple[int, int] | None = None) -> list[str]:
    """The FAISS GPU wheels to try for a torch built with CUDA ``cuda`` ("12.8", "13.0"), best first."""
    if not cuda:
        return []
    major = int(str(cuda).split(".")[0])
    python = python or sys.version_info[:2]
    if major >= 13:
        return ([CU13] if python >= (3, 12) else []) + [CU13_TORCH_LIBS, CU12]
    if major == 12:
        return [CU12]
    return []  # CUDA 11 and older: no maintained FAISS wheel on PyPI


def torch_pins() -> list[str]:
    """``name==version`` of torch and the CUDA libraries installed beside it (a constraints file)."""
    import importlib.metadata as md

    pins = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in ("torch", "triton") or name.startswith(("nvidia-", "cuda-")):  # what torch runs on
            pins[name] = f"{name}=={dist.version}"
    return sorted(pins.values())


def commands(wheel: str, constraints: str | None = None) -> list[list[str]]:
    """Uninstall faiss-cpu, install ``wheel`` (under ``constraints``, a pip constraints file)."""
    pip = [sys.executable, "-m", "pip"]
    return [[*pip, "uninstall", "-y", "faiss-cpu"], [*pip, "install", *(["-c", constraints] if constraints else []), wheel]]


def gpu_search_works() -> tuple[bool, str]:
    """(True, detail) when FAISS (in a fresh interpreter) has GPU support and sees a GPU."""
    code = ("import faiss; g = faiss.get_num_gpus() if hasattr(faiss, 'StandardGpuResources') else -1; "
            "print(faiss.__version__, g)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        return False, (out.stderr.strip().splitlines() or ["import faiss failed"])[-1]
    version, gpus = out.stdout.split()
    if int(gpus) < 0:
        return False, f"faiss {version} has no GPU support (a CPU wheel)"
    return int(gpus) > 0, f"faiss {version} sees {gpus} GPU(s)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.faiss_gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--install", action="store_true", help="uninstall faiss-cpu and install the chosen wheel")
    args = ap.parse_args(argv)
    import torch

    cuda = torch.version.cuda
    wheels = candidates(cuda)
    if not wheels:
        print(f"torch {torch.__version__} is built without CUDA 12 or newer ({cuda or 'a CPU build'}): "
              "FAISS stays on the CPU (faiss-cpu)")
        return 0 if not cuda else 1
    print(f"torch {torch.__version__} (CUDA {cuda}): FAISS GPU wheel {' or '.join(wheels)}")
    if not args.install:
        for cmd in commands(wheels[0]):
            print("  python " + " ".join(cmd[1:]))
        return 0
    import tempfile

    pins = torch_pins()
    print(f"keeping torch and its CUDA libraries where they are ({len(pins)} pins)")
    subprocess.run(commands(wheels[0])[0], check=False)
    with tempfile.TemporaryDirectory(prefix="torch-pins-") as tmp:
        constraints = f"{tmp}/constraints.txt"
        with open(constraints, "w") as f:
            f.write("\n".join(pins) + "\n")
        installed = None
        for wheel in wheels:
            if subprocess.run(commands(wheel, constraints)[1]).returncode == 0:
                installed = wheel
                break
            print(f"{wheel}: not installable here without moving torch's libraries (or no wheel for this "
                  "platform); trying the next", file=sys.stderr)
    if installed is None:  # leave the CPU search working
        subprocess.run([sys.executable, "-m", "pip", "install", "faiss-cpu"], check=False)
        print(f"error: none of {', '.join(wheels)} could be installed; faiss-cpu is back (CPU search)",
              file=sys.stderr)
        return 1
    ok, detail = gpu_search_works()
    print(("ok: " if ok else "error: ") + detail + ("" if ok else "; bench doctor --device cuda says more"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
