"""Benchmark: what a user waits for outside the cells, and the quick commands' wall times.

    python benchmarks/perf_overhead.py                       # PatchCore, textures / brick, clean
    python benchmarks/perf_overhead.py --root ../shared/data/magnetic_tile --category magnetic_tile \\
        --test-subset 100

Prints, each from fresh processes as a user starts them:

1. a one-cell ``bench grid`` (cold fit cache; the dataset itself is prepared beforehand): wall
   time, the time inside the cell (its fit + adapt + score + metrics, from the row and
   ``fits.jsonl``) and the share spent outside it (start-up, imports, listing, writing, table);
2. ``bench list methods`` and ``bench table RUN`` on that run: median wall of three;
3. the import cost of each heavy library in a fresh interpreter (what the share outside the
   cell is made of; they overlap: timm imports torchvision, which imports torch).

The machine's load average is printed first: time on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = ["torch", "torchvision", "timm", "sklearn.metrics", "pandas", "pyarrow.parquet", "typer"]


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _import_costs() -> dict[str, float]:
    """Seconds to import each library in a fresh interpreter (with whatever it imports itself)."""
    out = {}
    for name in IMPORTS:
        code = f"import time; t = time.perf_counter(); import {name}; print(time.perf_counter() - t)"
        out[name] = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                         text=True).stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="patchcore")
    ap.add_argument("--root", default=None, help="A folder in the MVTec layout (default: the embedded textures).")
    ap.add_argument("--category", default="brick")
    ap.add_argument("--test-subset", type=int, default=0)
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from bench.datasets import textures

    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="perf-overhead-") as tmp:
        os.environ["ADSHIFT_BENCH_CACHE"] = str(Path(tmp) / "cache")  # this process and the commands
        env = dict(os.environ)
        data = ["--root", args.root] if args.root else []
        if not args.root:
            textures.ensure_textures()  # generated once beforehand: not part of any run
        run = Path(tmp) / "run"
        bench = [sys.executable, "-c", "from bench.cli import main; main()"]
        grid = bench + ["grid", "-m", args.method, *data, "-c", args.category, "--corruptions", "clean",
                        "--test-subset", str(args.test_subset), "--out", str(run), "--no-progress"]
        wall = _wall(grid, env)
        row = pq.read_table(next((run / "parts").glob("*.parquet"))).to_pylist()[0]
        fits = [json.loads(line) for line in (run / "fits.jsonl").read_text().splitlines()]
        cell = sum(f["fit_seconds"] for f in fits) + row["total_seconds"]
        print(f"one-cell grid ({args.method}, {args.category}, clean, {row['n_test']} test images): "
              f"wall {wall:.1f} s, in the cell {cell:.1f} s (fit {sum(f['fit_seconds'] for f in fits):.1f}, "
              f"score {row['score_seconds']:.1f}, metrics {row['metric_seconds']:.1f}), outside "
              f"{wall - cell:.1f} s = {100 * (wall - cell) / wall:.0f} % of the wall time")
        for name, cmd in (("bench list methods", bench + ["list", "methods"]),
                          ("bench table RUN", bench + ["table", str(run)])):
            times = [_wall(cmd, env) for _ in range(3)]
            print(f"{name}: median {statistics.median(times):.2f} s (of {', '.join(f'{t:.2f}' for t in times)})")
    costs = _import_costs()
    print("imports, each in a fresh interpreter: " + ", ".join(f"{k} {v:.2f} s" for k, v in costs.items()))


if __name__ == "__main__":
    main()
