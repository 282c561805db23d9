"""FPFH: our numba port against Open3D itself, on MVTec 3D-AD-sized clouds; prints equality and seconds.

    pip install open3d   # needs the system's libusb-1.0 on Linux
    python benchmarks/fpfh_vs_open3d.py [--side 224] [--threads 1]
    python benchmarks/fpfh_vs_open3d.py --write-reference tests/data/fpfh_open3d_reference.npz

The clouds are seeded surfaces at the sensor's scale (about 0.3 mm between points, 30 cm away,
sub-mm noise) with a bump and a hole of missing points; ``--write-reference`` stores a small one
with Open3D's features, which tests/test_fpfh.py checks the default backend against.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def surface(side: int, seed: int = 0) -> np.ndarray:
    """A seeded organised cloud (side, side, 3), float32: a wavy surface, a bump, missing points."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] * 0.0003
    z = 0.3 + 0.004 * np.sin(xx * 180) + 0.002 * np.cos(yy * 140) + rng.normal(0, 2e-5, xx.shape)
    c = side // 2
    z += 0.002 * np.exp(-(((np.arange(side)[:, None] - c) ** 2 + (np.arange(side)[None] - c) ** 2) / (side / 8) ** 2))
    cloud = np.stack([xx + rng.normal(0, 1e-5, xx.shape), yy + rng.normal(0, 1e-5, xx.shape), z], -1)
    cloud[: side // 8, : side // 4] = 0  # a hole the sensor did not see
    return cloud.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads for Open3D (the port is single-threaded)")
    ap.add_argument("--write-reference", metavar="NPZ")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from bench.methods.point_features import fpfh_grid

    if args.write_reference:
        cloud = surface(32, seed=1)
        np.savez_compressed(args.write_reference, cloud=cloud, fpfh=fpfh_grid(cloud, backend="open3d"))
        print(f"wrote {args.write_reference}: a 32x32 cloud and Open3D's FPFH")
        return
    import open3d

    cloud = surface(args.side)
    n = int(np.all(cloud != 0, -1).sum())
    fpfh_grid(cloud[:32, :32], backend="numba")  # numba compiles (or loads its cache) once
    out = {}
    for backend in ("numba", "open3d", "numba", "open3d"):
        t = time.perf_counter()
        out[backend] = fpfh_grid(cloud, backend=backend)
        print(f"{backend:7s} {n} points: {time.perf_counter() - t:.2f} s")
    diff = np.abs(out["numba"] - out["open3d"])
    same = np.all(diff == 0, axis=-1)[np.all(cloud != 0, -1)]
    print(f"open3d {open3d.__version__}: max |difference| {diff.max():.3g}, {same.mean():.1%} of points bit for bit equal")


if __name__ == "__main__":
    main()
