"""Fault trials: kill the harness at random moments and check that nothing is lost or done twice.

    python benchmarks/fault_trials.py                      # all phases, defaults below
    python benchmarks/fault_trials.py --phases driver --kills 20 --workers 1

Phases (each on a small grid of the embedded ``textures`` dataset, PatchCore at 64 px):

``driver``  (local executor, in-process) and ``pool`` (local executor, ``--workers 2``):
    start ``bench grid`` as a subprocess, SIGKILL it after a random delay, start it again, ...;
    when a run finishes before its kill, the round ends and a new round starts on a fresh run
    directory and cache, until ``--kills`` kills have landed. ``pool`` also checks that the
    killed driver's worker processes exit by themselves.
``ray``:
    the Ray executor on a local Ray cluster (2 CPUs) started here; while the grid runs, SIGKILL
    a Ray worker process that is executing a fit or cell task (``ray::_ray_fit`` /
    ``ray::_ray_eval``) after a random delay; Ray retries the task. Rounds as above.

After each round (and a final uninterrupted rerun, which must have nothing left to do):
rows expected vs found, duplicate rows (same cell identity twice), torn (unreadable) Parquet
files, repeated fits (a fit computed again after one had finished, from the fit audit file that
every process appends to when it stores a fitted state: ``fit_audit/sitecustomize.py``, put on
the PYTHONPATH of the grid, its pool workers and the Ray workers; the harness has no hook for it), failed rows, orphaned workers, and whether the metric
columns equal an uninterrupted reference run of the same grid. Linux only (reads /proc).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

AUDIT_DIR = Path(__file__).resolve().parent / "fit_audit"
FIT_AUDIT_ENV = "ADSHIFT_FIT_AUDIT"


def install_fit_audit() -> None:
    """Every process started from here (the grid, its pool workers, Ray's workers) imports the
    audit hook at start-up through PYTHONPATH; this process installs it itself (it drives the Ray
    phase in-process)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(AUDIT_DIR), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(AUDIT_DIR))
    import sitecustomize  # noqa: F401

IDENTITY = ("method", "config_hash", "dataset", "category", "corruption", "severity", "seed", "protocol")


@dataclass
class PhaseResult:
    phase: str
    trials: int = 0  # kills that landed while the grid was running
    finished_before_kill: int = 0  # runs that completed before their kill time (end a round)
    rounds: int = 0
    rows_expected: int = 0
    rows_found: int = 0
    duplicates: int = 0
    torn_files: int = 0
    repeated_fits: int = 0
    failed_rows: int = 0
    orphaned_workers: int = 0
    failed_after_retries: int = 0  # Ray phase: cells whose task was killed more often than retried
    metrics_equal_reference: bool = True
    final_rerun_idle: bool = True  # the uninterrupted rerun after each round found nothing to do
    seconds: float = 0.0
    max_delay: float = 0.0
    kills: list[dict] = field(default_factory=list)

    def _kinds(self) -> str:
        tasks = Counter(k["task"] for k in self.kills if "task" in k)
        if not tasks:
            return ""
        return (f", killed tasks: {tasks.get('ray::_ray_fit', 0)} fit / {tasks.get('ray::_ray_eval', 0)} cell, "
                f"cells failed after Ray's retries (then rerun) {self.failed_after_retries}")

    def line(self) -> str:
        return (f"{self.phase}: trials {self.trials}, rows expected {self.rows_expected}, rows found "
                f"{self.rows_found}, duplicates {self.duplicates}, torn files {self.torn_files}, repeated fits "
                f"{self.repeated_fits} | rounds {self.rounds}, failed rows {self.failed_rows}, orphaned workers "
                f"{self.orphaned_workers}{self._kinds()}, metrics equal to an uninterrupted run: "
                f"{'yes' if self.metrics_equal_reference else 'NO'}, rerun idle: "
                f"{'yes' if self.final_rerun_idle else 'NO'} ({self.seconds:.0f}s)")


# --------------------------------------------------------------------------- /proc helpers


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline) for every process we can read."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
        out[int(entry)] = (ppid, cmd)
    return out


def descendants(pid: int) -> dict[int, str]:
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for p, (pp, _) in table.items():
        children.setdefault(pp, []).append(p)
    out, stack = {}, [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out[c] = table[c][1]
            stack.append(c)
    return out


def _alive(pid: int, cmd: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            now = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return now == cmd and state != "Z"


# --------------------------------------------------------------------------- checks


def check_run(run_dir: Path, expected_ids: set[str], audit: Path, reference) -> dict:
    """Row set, duplicates, torn files, repeated fits, failed rows, metric equality."""
    import pandas as pd

    from bench.results import METRICS

    parts = sorted((run_dir / "parts").glob("*.parquet"))
    tables, torn = [], 0
    for p in parts:
        try:
            tables.append(pq.read_table(p).to_pandas())
        except Exception:  # noqa: BLE001 - any unreadable part is torn
            torn += 1
    df = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["cell_id", *IDENTITY])
    found = set(df["cell_id"]) if len(df) else set()
    duplicates = int(len(df) - len(df.drop_duplicates(subset=list(IDENTITY)))) if len(df) else 0
    duplicates += int(df["cell_id"].duplicated().sum()) if len(df) else 0
    fits = Counter(json.loads(x)["key"] for x in audit.read_text().splitlines()) if audit.exists() else Counter()
    equal = False
    if len(df) and reference is not None:
        cols = ["cell_id", "status", *METRICS]
        a = df[cols].sort_values("cell_id").reset_index(drop=True)
        b = reference[cols].sort_values("cell_id").reset_index(drop=True)
        equal = bool(a.equals(b))
    return {
        "rows_found": len(found & expected_ids),
        "extra_rows": len(found - expected_ids),
        "duplicates": duplicates,
        "torn_files": torn,
        "repeated_fits": sum(n - 1 for n in fits.values() if n > 1),
        "fits": len(fits),
        "failed_rows": int((df["status"] != "ok").sum()) if len(df) else 0,
        "metrics_equal": equal,
    }


# --------------------------------------------------------------------------- phases


class Trials:
    def __init__(self, args: argparse.Namespace) -> None:
        install_fit_audit()
        self.args = args
        self.out = Path(args.out).resolve()
        self.rng = random.Random(args.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        self.fresh = 0
        os.environ["ADSHIFT_BENCH_CACHE"] = str(self.out / "cache-setup")
        from bench.datasets import textures

        self.root = textures.ensure_textures(self.out / "textures")

    def spec(self):
        from bench.grid import GridSpec

        a = self.args
        return GridSpec(methods=["patchcore"], dataset="textures", root=str(self.root), categories=a.categories,
                        corruptions=a.corruptions, severities=[a.severity], seeds=[0],
                        overrides={"resize": str(a.size), "image_size": str(a.size)}, device="cpu")

    def grid_args(self, run_dir: Path, workers: int) -> list[str]:
        a = self.args
        return [sys.executable, "-c", "from bench.cli import main; main()", "grid", "-m", "patchcore",
                "-d", "textures", "--root", str(self.root), "-c", ",".join(a.categories),
                "--corruptions", ",".join(a.corruptions), "-s", str(a.severity), "--seeds", "0",
                "--set", f"resize={a.size}", "--set", f"image_size={a.size}", "--device", "cpu",
                "--workers", str(workers), "--threads", "1", "--out", str(run_dir), "--no-progress"]

    def new_round(self, phase: str) -> tuple[Path, Path]:
        """A fresh run directory and cache (env for this process and its children); the audit file."""
        self.fresh += 1
        base = self.out / f"{phase}-{self.fresh:02d}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        os.environ["ADSHIFT_BENCH_CACHE"] = str(base / "cache")
        os.environ[FIT_AUDIT_ENV] = str(base / "fit-audit.jsonl")
        return base / "run", base / "fit-audit.jsonl"

    def reference(self):
        """The grid once, uninterrupted, in-process with a cold cache."""
        from bench.executors import LocalExecutor, run_grid
        from bench.results import load_rows

        run_dir, _ = self.new_round("reference")
        summary = run_grid(self.spec(), run_dir, LocalExecutor(1, threads=1), show_progress=False)
        print(f"reference run: {summary.ran} cells in {summary.seconds:.0f}s", flush=True)
        return load_rows(run_dir)

    def _finish(self, result: PhaseResult, checks: list[dict]) -> PhaseResult:
        result.rows_found = sum(c["rows_found"] for c in checks)
        result.duplicates = sum(c["duplicates"] + c["extra_rows"] for c in checks)
        result.torn_files = sum(c["torn_files"] for c in checks)
        result.repeated_fits = sum(c["repeated_fits"] for c in checks)
        result.failed_rows = sum(c["failed_rows"] for c in checks)
        result.metrics_equal_reference = all(c["metrics_equal"] for c in checks)
        result.final_rerun_idle = all(c.get("final_rerun_idle", False) for c in checks)
        return result

    # driver kills ---------------------------------------------------------------------------
    def driver_phase(self, workers: int, reference) -> PhaseResult:
        phase = "driver SIGKILL, local in-process" if workers == 1 else f"driver SIGKILL, local --workers {workers}"
        result = PhaseResult(phase)
        t0 = time.perf_counter()
        expected = {c.cell_id for c in self.spec().cells()}
        checks = []
        name = "pool" if workers > 1 else "driver"
        top = self.args.max_delay
        if not top:  # kill moments spread over one uninterrupted run of this mode (start-up included)
            run_dir, _ = self.new_round(f"{name}-timing")
            t = time.perf_counter()
            subprocess.run(self.grid_args(run_dir, workers), capture_output=True, check=True)
            top = time.perf_counter() - t
            print(f"  {phase}: an uninterrupted run takes {top:.0f}s; kills land in [{self.args.min_delay:g}, "
                  f"{top:.0f}]s after each start", flush=True)
        result.max_delay = top
        while result.trials < self.args.kills:
            run_dir, audit = self.new_round(name)
            result.rounds += 1
            result.rows_expected += len(expected)
            while True:
                delay = self.rng.uniform(self.args.min_delay, top)
                proc = subprocess.Popen(self.grid_args(run_dir, workers), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
                try:
                    proc.wait(timeout=delay)
                    result.finished_before_kill += 1
                    break  # the grid completed: this round is done
                except subprocess.TimeoutExpired:
                    pass
                family = descendants(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                result.trials += 1
                orphans = self._reap(family)
                result.orphaned_workers += orphans
                n_parts = len(list((run_dir / "parts").glob("*.parquet"))) if (run_dir / "parts").is_dir() else 0
                result.kills.append({"round": result.rounds, "after_s": round(delay, 2), "parts": n_parts,
                                     "workers": len(family), "orphans": orphans})
                print(f"  {phase} trial {result.trials}: killed after {delay:.1f}s, {n_parts}/{len(expected)} "
                      f"parts, {len(family)} child processes, {orphans} orphaned", flush=True)
            # one more uninterrupted run: must find nothing to do
            rerun = subprocess.run(self.grid_args(run_dir, workers), capture_output=True, text=True)
            checks.append(check_run(run_dir, expected, audit, reference))
            checks[-1]["final_rerun_idle"] = bool(re.search(r"(?<!\d)0 ran \(", rerun.stderr))
            print(f"  round {result.rounds}: {checks[-1]}", flush=True)
        result.seconds = time.perf_counter() - t0
        return self._finish(result, checks)

    @staticmethod
    def _reap(family: dict[int, str], wait_s: float = 15.0) -> int:
        """Children of a killed driver must exit by themselves; kill (and count) those that do not."""
        deadline = time.time() + wait_s
        while time.time() < deadline:
            alive = {p: c for p, c in family.items() if _alive(p, c)}
            if not alive:
                return 0
            time.sleep(0.25)
        for p in alive:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(alive)

    # ray worker kills -----------------------------------------------------------------------
    def ray_phase(self, reference) -> PhaseResult:
        import ray

        from bench.executors import run_grid
        from bench.ray_executor import RayExecutor

        result = PhaseResult("Ray worker SIGKILL mid-task")
        t0 = time.perf_counter()
        expected = {c.cell_id for c in self.spec().cells()}
        checks = []
        while result.trials < self.args.kills:
            run_dir, audit = self.new_round("ray")
            result.rounds += 1
            result.rows_expected += len(expected)
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                box: dict = {}

                def drive() -> None:
                    try:
                        box["summary"] = run_grid(self.spec(), run_dir, RayExecutor(max_retries=self.args.ray_retries,
                                                                                      threads=1),
                                                  show_progress=False)
                    except BaseException as exc:  # noqa: BLE001
                        box["error"] = exc

                thread = threading.Thread(target=drive, daemon=True)
                thread.start()
                while thread.is_alive() and result.trials < self.args.kills:
                    # alternate: a cell task, then a fit task (whichever runs if the other does not)
                    prefer = "ray::_ray_eval" if result.trials % 2 == 0 else "ray::_ray_fit"
                    victim = self._ray_task_process(thread, prefer)
                    if victim is None:
                        break
                    pid, cmd = victim
                    time.sleep(self.rng.uniform(0.0, self.args.ray_max_delay))
                    if not _alive(pid, cmd) or not thread.is_alive():
                        continue
                    os.kill(pid, signal.SIGKILL)
                    result.trials += 1
                    task = cmd.split()[0]
                    n_parts = len(list((run_dir / "parts").glob("*.parquet"))) if (run_dir / "parts").is_dir() else 0
                    result.kills.append({"round": result.rounds, "task": task, "parts": n_parts})
                    print(f"  ray trial {result.trials}: killed {task} (pid {pid}), {n_parts}/{len(expected)} parts",
                          flush=True)
                thread.join()
                if "error" in box:
                    raise box["error"]
                summary = box["summary"]
                if summary.failed:  # tasks killed more often than Ray retries them: rerun those
                    result.failed_after_retries += summary.failed
                    print(f"  {summary.failed} cells failed after Ray's retries; rerunning them", flush=True)
                    run_grid(self.spec(), run_dir, RayExecutor(max_retries=self.args.ray_retries, threads=1),
                             retry_failed=True, show_progress=False)
                again = run_grid(self.spec(), run_dir, RayExecutor(threads=1), show_progress=False)
            finally:
                ray.shutdown()
            checks.append(check_run(run_dir, expected, audit, reference))
            checks[-1]["final_rerun_idle"] = again.ran == 0
            print(f"  round {result.rounds}: {checks[-1]}", flush=True)
        result.seconds = time.perf_counter() - t0
        return self._finish(result, checks)

    def _ray_task_process(self, thread: threading.Thread, prefer: str, patience: float = 3.0,
                          timeout: float = 300.0):
        """(pid, cmdline) of a Ray worker of ours running a task, or None when the grid ended.

        A cell task is waited for (fits must be let finish for cells to start); a fit task is
        preferred for ``patience`` seconds, then any running task will do.
        """
        start = time.time()
        while thread.is_alive() and time.time() < start + timeout:
            busy = [(p, c) for p, c in descendants(os.getpid()).items()
                    if c.startswith(("ray::_ray_fit", "ray::_ray_eval"))]
            preferred = [b for b in busy if b[1].startswith(prefer)]
            fallback = prefer == "ray::_ray_fit" and busy and time.time() > start + patience
            if preferred or fallback:
                return self.rng.choice(preferred or busy)
            time.sleep(0.02)
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/fault_trials.py", description=__doc__.split("\n")[0])
    p.add_argument("--phases", default="driver,pool,ray", help="comma-separated: driver, pool, ray")
    p.add_argument("--kills", type=int, default=20, help="kills per phase (at least)")
    p.add_argument("--workers", type=int, default=2, help="workers of the pool phase")
    p.add_argument("--categories", default="brick,grass", type=lambda s: s.split(","))
    p.add_argument("--corruptions", default="gaussian_noise,contrast", type=lambda s: s.split(","))
    p.add_argument("--severity", type=int, default=3)
    p.add_argument("--size", type=int, default=64, help="PatchCore resize / image_size (px)")
    p.add_argument("--min-delay", type=float, default=1.0, help="earliest kill after a driver start (s)")
    p.add_argument("--max-delay", type=float, default=0.0,
                   help="latest kill after a driver start (s); 0: the time of one uninterrupted run")
    p.add_argument("--ray-max-delay", type=float, default=0.5,
                   help="latest kill after a Ray task is seen running (s)")
    p.add_argument("--ray-retries", type=int, default=5, help="Ray max_retries per task in the ray phase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/adshift-fault-trials")
    args = p.parse_args(argv)

    trials = Trials(args)
    reference = trials.reference()
    results = []
    for phase in [x.strip() for x in args.phases.split(",") if x.strip()]:
        if phase == "driver":
            results.append(trials.driver_phase(1, reference))
        elif phase == "pool":
            results.append(trials.driver_phase(args.workers, reference))
        elif phase == "ray":
            results.append(trials.ray_phase(reference))
        else:
            p.error(f"unknown phase {phase!r}: use driver, pool, ray")
        print(results[-1].line(), flush=True)
    (trials.out / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    print("\nsummary")
    for r in results:
        print("  " + r.line())
    bad = any(r.duplicates or r.torn_files or r.repeated_fits or r.rows_found != r.rows_expected
              or r.failed_rows or r.orphaned_workers or not r.metrics_equal_reference or not r.final_rerun_idle
              for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
