"""Benchmark and check: the Ray executor on one or two Ray nodes of this machine, against in-process.

    python benchmarks/ray_nodes.py                                   # CPU: 2 nodes x 1 CPU
    python benchmarks/ray_nodes.py --device cuda --gpus-per-cell 0.25 --cpus-per-node 8   # one GPU, 4 cells at once

Three runs of the same small grid (PatchCore + TTAD on the embedded textures, 3 categories x
clean + 2 corruptions by default), each with an empty cache of its own:

1. in-process (``--executor local``) on ``--device``: the reference rows;
2. a one-node Ray cluster started here (``ray start --head``), cells of ``--gpus-per-cell`` GPUs;
3. the same head plus a second node (``ray start --address``) with its own temp folder and its
   own ``ADSHIFT_BENCH_CACHE``: no folder is shared between the nodes and the driver, only Ray's
   object store (fitted states) and the rows the tasks return.

Prints wall times, the most cells that ran at once (from each row's finish time and duration),
which nodes' caches received corrupted images (the second node took cells when its own cache
has them), and ``bench diff`` of runs 2 and 3 against run 1 (bit for bit expected: the same
threads per cell and the same device). A GPU is declared to Ray with ``--num-gpus`` even on a
CPU-only machine (``--declare-gpus``), so fractional GPU scheduling can be exercised without one.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = [sys.executable, "-m", "bench"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path) -> dict[str, str]:
    # token auth is Ray's default for `ray start` since 2.59: every client then needs the mode set
    return {**os.environ, "ADSHIFT_BENCH_CACHE": str(cache), "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}


def _ray(args: list[str], cache: Path) -> None:
    out = subprocess.run(["ray", *args], env=_env(cache), capture_output=True, text=True, timeout=180)
    if out.returncode:
        raise SystemExit(f"ray {' '.join(args)} failed:\n{out.stderr[-2000:]}")


def _grid(args, out: Path, cache: Path, executor: list[str]) -> float:
    cmd = [*BENCH, "grid", "--methods", args.methods, "--categories", args.categories, "--corruptions",
           args.corruptions, "--device", args.device, "--threads", str(args.threads), "--no-progress",
           "--out", str(out), *executor]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return time.perf_counter() - t0


def _most_at_once(run_dir: Path) -> int:
    from datetime import datetime

    from bench.results import load_rows

    rows = load_rows(run_dir)
    ends = [datetime.fromisoformat(t).timestamp() for t in rows["finished_at"]]
    spans = [(e - s, e) for e, s in zip(ends, rows["total_seconds"])]
    return max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)


def _diff(ref: Path, other: Path) -> str:
    out = subprocess.run([*BENCH, "diff", str(ref), str(other)], capture_output=True, text=True)
    return (out.stdout.strip().splitlines() or [out.stderr.strip()])[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="patchcore,ttad")
    ap.add_argument("--categories", default="brick,grass,gravel")
    ap.add_argument("--corruptions", default="clean,gaussian_noise,contrast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per cell (the same in every run)")
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--cpus-per-cell", type=float, default=1.0)
    ap.add_argument("--gpus-per-cell", type=float, default=0.0)
    ap.add_argument("--declare-gpus", type=int, default=None,
                    help="GPUs each node declares to Ray (default: 1 when --gpus-per-cell > 0)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    args = ap.parse_args(argv)
    gpus = args.declare_gpus if args.declare_gpus is not None else (1 if args.gpus_per_cell else 0)

    work = Path(tempfile.mkdtemp(prefix="ray-nodes-"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    node = ["--num-cpus", str(args.cpus_per_node), "--num-gpus", str(gpus)]
    ray_cells = ["--executor", "ray", "--address", address, "--cpus-per-cell", str(args.cpus_per_cell),
                 "--gpus-per-cell", str(args.gpus_per_cell)]
    try:
        t_local = _grid(args, work / "local", work / "cache-local", [])
        print(f"1. in-process on {args.device}: {t_local:.1f} s, at most {_most_at_once(work / 'local')} cell(s) at once")

        _ray(["start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), *node,
              "--temp-dir", str(work / "tmp-head"), "--include-dashboard", "false"], work / "cache-head")
        t_one = _grid(args, work / "one-node", work / "cache-driver1", ray_cells)
        print(f"2. Ray, one node ({args.cpus_per_node} CPUs, {gpus} GPU declared, {args.gpus_per_cell:g} GPU per cell): "
              f"{t_one:.1f} s, at most {_most_at_once(work / 'one-node')} cells at once; "
              f"vs 1: {_diff(work / 'local', work / 'one-node')}")

        _ray(["start", "--address", address, "--node-ip-address", "127.0.0.1", *node,
              "--temp-dir", str(work / "tmp-second")], work / "cache-second")
        shutil.rmtree(work / "cache-head" / "corrupted", ignore_errors=True)  # count this run's images only
        t_two = _grid(args, work / "two-nodes", work / "cache-driver2", ray_cells)
        took = {n: len(list((work / f"cache-{n}" / "corrupted").rglob("*.png"))) for n in ("head", "second")}
        print(f"3. Ray, two nodes: {t_two:.1f} s, at most {_most_at_once(work / 'two-nodes')} cells at once; "
              f"corrupted images made per node: {took}; vs 1: {_diff(work / 'local', work / 'two-nodes')}")
        ok = took["second"] > 0
        if not ok:
            print("the second node took no cell")
    finally:
        subprocess.run(["ray", "stop", "--force"], env=_env(work), capture_output=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"runs kept in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
