"""Benchmark: the embedded grid with local ``--workers 2`` against 1 (in-process).

    python benchmarks/perf_workers.py                 # patchcore x textures (3 categories) x paper set
    python benchmarks/perf_workers.py --size 64       # the same grid at 64 px (quick)

Three runs, each a fresh process (so wall times include start-up, as a user sees them):

1. ``--workers 1``, cold caches (no fitted state, no corrupted images);
2. ``--workers 2``, cold caches;
3. ``--workers 2`` again on a new run directory with run 2's caches: every fit and corrupted
   test set comes from the cache.

Prints wall time, speedup over run 1, and the cache counts: fits computed / found, corrupted
test sets generated / found. The machine's load average is printed too: on a shared machine
the speedup depends on what else runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _spec(args: dict):
    from bench.grid import GridSpec

    overrides = {"resize": str(args["size"]), "image_size": str(args["size"])} if args.get("size") else {}
    return GridSpec(methods=["patchcore"], dataset="textures", root=args["root"], categories=args["categories"],
                    corruptions=args["corruptions"], severities=[args["severity"]], seeds=[0],
                    overrides=overrides, device="cpu")


def _one(args: dict) -> None:
    """Child process: run the grid once, print the summary as JSON."""
    from bench.executors import LocalExecutor, run_grid

    t0 = time.perf_counter()
    summary = run_grid(_spec(args), Path(args["run_dir"]), LocalExecutor(workers=args["workers"]),
                       show_progress=False)
    print(json.dumps({"ran": summary.ran, "failed": summary.failed, "grid_seconds": summary.seconds,
                      "in_process_seconds": time.perf_counter() - t0, "fits_computed": summary.fits_computed,
                      "fit_hits": summary.fit_cache["hits"], "corruption": summary.corruption_cache}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/perf_workers.py", description=__doc__.split("\n")[0])
    p.add_argument("--categories", default="brick,grass,gravel", type=lambda s: s.split(","))
    p.add_argument("--corruptions", default="paper", type=lambda s: s.split(","))
    p.add_argument("--severity", type=int, default=5)
    p.add_argument("--size", type=int, default=0, help="PatchCore resize/image_size in px (0: dataset default)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="work directory (default: a new temp dir)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        _one(json.loads(args.one))
        return 0

    out = Path(args.out or tempfile.mkdtemp(prefix="adshift-perf-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["ADSHIFT_BENCH_CACHE"] = str(out / "cache-setup")
    from bench.datasets import textures

    root = textures.ensure_textures(out / "textures")
    base = {"root": str(root), "categories": args.categories, "corruptions": args.corruptions,
            "severity": args.severity, "size": args.size}
    n_cells = len(_spec(base).cells())
    print(f"grid: patchcore x textures {','.join(args.categories)} x clean+{','.join(args.corruptions)}@"
          f"{args.severity} = {n_cells} cells, size {args.size or 'default'}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start", flush=True)

    runs = [("1 worker (in-process), cold cache", 1, "cold-1"),
            (f"{args.workers} workers, cold cache", args.workers, "cold-2"),
            (f"{args.workers} workers, warm cache", args.workers, "cold-2")]
    results = []
    for i, (label, workers, cache) in enumerate(runs):
        env = {**os.environ, "ADSHIFT_BENCH_CACHE": str(out / cache)}
        job = {**base, "workers": workers, "run_dir": str(out / f"run-{i + 1}")}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r.update(label=label, workers=workers, wall_seconds=wall, load=os.getloadavg()[0])
        results.append(r)
        print(f"  {label}: {wall:.1f}s", flush=True)

    t1 = results[0]["wall_seconds"]
    print()
    print("| run | wall time (s) | speedup vs 1 worker | fits computed / cache hits | "
          "corrupted sets generated / cache hits | failed cells |")
    print("|:---|---:|---:|---:|---:|---:|")
    for r in results:
        c = r["corruption"]
        print(f"| {r['label']} | {r['wall_seconds']:.1f} | {t1 / r['wall_seconds']:.2f}x | "
              f"{r['fits_computed']} / {r['fit_hits']} | {c['set_misses']} / {c['set_hits']} | {r['failed']} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs); work dir {out}")
    (out / "perf_workers.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
