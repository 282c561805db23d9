"""FAISS on the GPU: which wheel matches the installed torch's CUDA, and installing it.

    python -m bench.faiss_gpu            # print the choice and the pip commands
    python -m bench.faiss_gpu --install  # run them, then check that FAISS sees the GPU

Why a command and not only a pip extra: every FAISS wheel ships the same ``faiss`` package, so
``faiss-cpu`` (a dependency of the harness) and a GPU wheel installed side by side overwrite each
other's files in an order pip does not promise. The GPU wheel also holds the CPU code, so it
replaces ``faiss-cpu``: uninstall one, install the other.

The choice, by the CUDA major version torch was built with (``torch.version.cuda``):

- CUDA 12: ``faiss-gpu-cu12`` (NVIDIA's CUDA 12 wheels on PyPI; kernels for sm_70 ... sm_90).
- CUDA 13: ``faiss-gpu-cu13-cuvs`` where the index has it (its wheels need Python >= 3.12), else
  ``faiss-gpu-cu12``: a CUDA 12 wheel brings its own CUDA 12 runtime libraries (the
  ``nvidia-*-cu12`` wheels) and runs on the newer driver a CUDA 13 torch needs, since NVIDIA
  drivers run binaries built for older CUDA versions.
- no CUDA (a CPU build of torch): nothing to do; the GPU search would not be used.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CU12 = "faiss-gpu-cu12"
CU13 = "faiss-gpu-cu13-cuvs"


def candidates(cuda: str | None, python: tuple[int, int] | None = None) -> list[str]:
    """The FAISS GPU wheels to try for a torch built with CUDA ``cuda`` ("12.8", "13.0"), best first."""
    if not cuda:
        return []
    major = int(str(cuda).split(".")[0])
    python = python or sys.version_info[:2]
    if major >= 13:
        return [CU13, CU12] if python >= (3, 12) else [CU12]
    if major == 12:
        return [CU12]
    return []  # CUDA 11 and older: no maintained FAISS wheel on PyPI


def commands(wheel: str) -> list[list[str]]:
    pip = [sys.executable, "-m", "pip"]
    return [[*pip, "uninstall", "-y", "faiss-cpu"], [*pip, "install", wheel]]


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
    subprocess.run(commands(wheels[0])[0], check=False)
    for wheel in wheels:
        if subprocess.run(commands(wheel)[1]).returncode == 0:
            break
    else:  # leave the CPU search working
        subprocess.run([sys.executable, "-m", "pip", "install", "faiss-cpu"], check=False)
        print(f"error: none of {', '.join(wheels)} could be installed; faiss-cpu is back (CPU search)",
              file=sys.stderr)
        return 1
    ok, detail = gpu_search_works()
    print(("ok: " if ok else "error: ") + detail + ("" if ok else "; bench doctor --device cuda says more"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
