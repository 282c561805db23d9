"""What a host's kernel choices do to the numbers: one process per kernel setting, same work.

Each setting is what another host would choose on its own (another ATen SIMD level, oneDNN ISA,
OpenBLAS core type, FAISS SIMD level, thread count); a fresh process with that environment
trains RD4AD for one epoch on textures/brick and fits PatchCore there, and prints a digest of the
fitted states and scores. Equal digests = equal bits. ``bench.numerics`` pins every one of these
knobs (oneDNN at AVX, MKL at its COMPATIBLE branch), so an AVX-512 or a 48 KB-L1 host computes
what the reference host computed.

    python benchmarks/host_numerics.py                    # the digests (about 1 min per setting)
    python benchmarks/host_numerics.py --grid ONEDNN_MAX_CPU_ISA=AVX2
        # the main job's RD4AD and GNL cells under one setting, compared with the reference rows

The second form is how far a last-bit difference carries after training (``bench diff``).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [
    "",  # the harness's default pins (BENCH_KERNELS=portable)
    "ATEN_CPU_CAPABILITY=default",  # ATen without SIMD (a host where ATen picks another level)
    "ONEDNN_MAX_CPU_ISA=AVX2",  # oneDNN's brgemm convolutions (what BENCH_KERNELS=fast runs)
    "OPENBLAS_CORETYPE=Sandybridge",  # FAISS's and numpy's OpenBLAS on another core type
    "FAISS_SIMD_LEVEL=NONE",  # FAISS's scalar distance code
    "THREADS=1",  # one thread instead of two
]


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def child() -> None:
    import bench  # noqa: F401 - the pins, before numpy and torch

    import numpy as np
    import torch

    from bench.datasets.registry import get_dataset
    from bench.methods import get

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    ds = get_dataset("textures")
    cat = ds.load(ds.root(None), "brick")
    test = [cat.test.images[i] for i in range(len(cat.test))]
    out = []
    for name, kwargs in (("rd4ad", {"image_size": 160, "epochs": 1}), ("patchcore", {"resize": 160, "image_size": 160})):
        torch.manual_seed(0)
        m = get(name).create(device="cpu", seed=0, **kwargs)
        m.fit(cat.train)
        state = m.fitted_state()
        tensors = state["student"] if "student" in state else state
        arrays = [v.numpy() if isinstance(v, torch.Tensor) else v for _, v in sorted(tensors.items())
                  if isinstance(v, (torch.Tensor, np.ndarray))]
        s = m.score(test)
        out.append(f"{name} state {_digest(*arrays)} scores {_digest(s.image_scores)} maps {_digest(s.maps)}")
    print(" | ".join(out), flush=True)


def _env(setting: str) -> dict[str, str]:
    env = {**os.environ}
    if setting:
        key, _, value = setting.partition("=")
        env[key] = value  # a variable set by the user wins over the harness's pin
    return env


def digests() -> None:
    for setting in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--child"], env=_env(setting), capture_output=True,
                             text=True, cwd=REPO)
        line = out.stdout.strip() or out.stderr.strip().splitlines()[-1]
        print(f"{setting or 'pinned (portable)':32s} {line}", flush=True)


def grid(setting: str, methods: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**_env(setting), "ADSHIFT_BENCH_CACHE": str(Path(tmp) / "cache")}
        threads = ["--threads", env.pop("THREADS")] if "THREADS" in env else []
        run = Path(tmp) / "run"
        subprocess.run(["bench", "grid", "--methods", methods, "--no-progress", "--out", str(run), *threads],
                       env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        print(f"{setting}: bench grid --methods {methods} against results/reference/textures_default", flush=True)
        subprocess.run(["bench", "diff", "results/reference/textures_default", str(run)], cwd=REPO)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--grid", metavar="VAR=VALUE", help="run the main job's cells of --methods under this setting")
    ap.add_argument("--methods", default="rd4ad,gnl")
    args = ap.parse_args()
    if args.child:
        child()
    elif args.grid:
        grid(args.grid, args.methods)
    else:
        digests()
