"""Run a grid's missing cells on one backend and write one Parquet part per finished cell.

One driver, several executors::

    run_grid(spec, run_dir, executor)        the driver: skips done cells, validates the input,
                                             shows progress, and alone writes the run directory
    LocalExecutor(workers=1)                 in-process (the default)
    LocalExecutor(workers=N)                 N spawn-started worker processes on this machine
    RayExecutor(address, cpus_per_cell, ...) tasks on a Ray cluster (``bench.ray_executor``)

The driver hands an executor its pending cells grouped by fit identity (``FitGroup``: the
cells of one method config x dataset x category x seed). An executor runs one *fit* per group
and then the group's *evaluation* cells from that fitted state, reporting back through the
``Driver`` (fit finished, row finished). So every category fits once, whatever the backend:
in-process the state is passed along; local workers share it through the on-disk ``FitCache``;
Ray passes it through the object store. Workers never touch the results directory.

A killed driver loses nothing that finished: parts are written atomically as rows arrive, fits
are in the fit cache, and a rerun of the same command resumes with the missing cells.

Numbers do not depend on the executor, only on the CPU threads a cell uses (``--threads``;
a convolution's float sums follow the thread split): with equal threads per cell, rows are
bit-identical in-process, in worker processes and on Ray (tests/test_executors.py, test_ray.py).

Bad input: what a directory listing shows (missing root, not the MVTec layout, a non-image
file, a defect image without mask, an empty train/good) and bad names or severities stop the
command before any work with one line; what needs the pixels (a truncated or undecodable
image, a mask of the wrong size) fails that category's cells when its fit starts, with one
line naming the file, and the grid goes on.
"""
from __future__ import annotations

import concurrent.futures as cf
import difflib
import multiprocessing
import os
import pickle
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import pool_worker
from .cache import FitCache
from .datasets import corruptions as _corruptions
from .errors import BenchError
from .grid import Cell, GridSpec
from .results import RunStore
from .runner import RunContext, _error_text, failed_row, fit_key, log_fit, obtain_fit, run_cell

EXECUTORS = ("local", "ray")
FIT_LOG = "fits.jsonl"


# --------------------------------------------------------------------------- the plan


@dataclass
class FitGroup:
    """Pending cells that share one fitted state (same fit-cache key), in grid order."""

    key: str
    cells: list[Cell]

    @property
    def label(self) -> str:
        c = self.cells[0]
        return f"{c.method} / {c.category} / seed {c.seed}"


def plan_groups(cells: list[Cell], ctx: RunContext) -> list[FitGroup]:
    """Group cells by fit-cache key, keeping grid order (first appearance) for groups and cells."""
    groups: dict[str, FitGroup] = {}
    for cell in cells:
        key = fit_key(cell, ctx)
        groups.setdefault(key, FitGroup(key, [])).cells.append(cell)
    return list(groups.values())


def check_inputs(spec: GridSpec, cells: list[Cell], ctx: RunContext) -> None:
    """Fail before any work on what a listing can tell: every category of the grid must load.

    ``load`` checks the MVTec layout, file types, masks present for defect images and a
    non-empty train/good; it raises a one-line BenchError naming the folder or file. Content
    errors (a truncated image, a mask of the wrong size) are found per category when its first
    fit runs (``RunContext.checked_category``) and fail that category's cells only.
    """
    for name in dict.fromkeys(c.category for c in cells):
        ctx.category(name)


# --------------------------------------------------------------------------- the driver


@dataclass
class GridSummary:
    run_dir: Path
    total: int
    skipped: int
    executor: str = "local"
    ran: int = 0
    failed: int = 0
    seconds: float = 0.0
    fits_computed: int = 0
    fit_cache: dict[str, int] = field(default_factory=lambda: {"hits": 0, "misses": 0})
    # corrupted test images: per image (hits/misses) and per test set (a set is a hit when all
    # of its images came from the cache); clean cells are not counted
    corruption_cache: dict[str, int] = field(
        default_factory=lambda: {"hits": 0, "misses": 0, "set_hits": 0, "set_misses": 0})
    failures: list[tuple[str, str]] = field(default_factory=list)

    def cache_line(self) -> str:
        c = self.corruption_cache
        return (f"fits: {self.fits_computed} computed, {self.fit_cache['hits']} cache hits; corrupted sets: "
                f"{c['set_misses']} generated, {c['set_hits']} from cache ({c['misses']} / {c['hits']} images)")


class Driver:
    """What executors report to. The only writer of the run directory (parts and fit log)."""

    def __init__(self, store: RunStore, summary: GridSummary, console: Console,
                 progress: Progress, task: Any, ctx: RunContext) -> None:
        self.store = store
        self.ctx = ctx  # the driver's: loaded categories and its fit cache
        self.summary = summary
        self.console = console
        self._progress = progress
        self._task = task
        self._lock = threading.Lock()  # executors may report from a helper thread
        self.fit_log = store.run_dir / FIT_LOG

    def stage(self, cell: Cell, name: str) -> None:
        self._progress.update(self._task, description=f"{cell.label()} [{name}]")

    def fit_done(self, cell: Cell, key: str, *, computed: bool, seconds: float) -> None:
        """A group's fit is available; ``computed``: fitted now (not from a cache)."""
        with self._lock:
            if computed:
                self.summary.fits_computed += 1
                self.summary.fit_cache["misses"] += 1
                log_fit(self.fit_log, key, cell, seconds)
            else:
                self.summary.fit_cache["hits"] += 1

    def row(self, cell: Cell, row: dict[str, Any], stats: dict[str, int] | None = None) -> None:
        """Store a finished cell (atomically) and report it."""
        with self._lock:
            self.store.write(row)
            s = self.summary
            s.ran += 1
            if stats and cell.corruption != _corruptions.CLEAN:
                for k in ("hits", "misses"):
                    s.corruption_cache[k] += stats.get(k, 0)
                if stats.get("hits", 0) or stats.get("misses", 0):
                    s.corruption_cache["set_misses" if stats.get("misses", 0) else "set_hits"] += 1
            if row["status"] != "ok":
                s.failed += 1
                s.failures.append((cell.label(), row["error"]))
                self.console.print(f"[red]failed[/red] {escape(cell.label())}: {escape(row['error'])}",
                                   highlight=False, soft_wrap=True)
            else:
                self.console.print(escape(_row_line(cell, row)), highlight=False, soft_wrap=True)
            self._progress.advance(self._task)


class Executor(Protocol):
    """A backend: runs the groups' fits and cells and reports each to the driver."""

    name: str

    def run(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None: ...


def make_executor(name: str = "local", *, workers: int = 1, threads: int | None = None,
                  address: str | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0) -> Executor:
    if name not in EXECUTORS:
        close = difflib.get_close_matches(name, EXECUTORS, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise BenchError(f"--executor {name}: unknown executor; {hint}use local (this machine) or ray (a Ray cluster)")
    if name == "local":
        if address is not None:
            raise BenchError(f"--address {address}: only the ray executor connects to a cluster; add --executor ray")
        if gpus_per_cell:
            raise BenchError("--gpus-per-cell is a Ray resource; add --executor ray (locally, use --device cuda)")
        return LocalExecutor(workers=workers, threads=threads)
    if workers != 1:
        raise BenchError(f"--workers {workers}: the ray executor sizes itself by --cpus-per-cell and "
                         "--gpus-per-cell; drop --workers")
    from .ray_executor import RayExecutor

    return RayExecutor(address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell, threads=threads)


def run_grid(
    spec: GridSpec,
    run_dir: Path,
    executor: Executor | None = None,
    *,
    retry_failed: bool = False,
    console: Console | None = None,
    fit_cache: FitCache | None = None,
    show_progress: bool = True,
) -> GridSummary:
    """Run every cell of ``spec`` that has no part in ``run_dir`` yet; return what happened."""
    executor = executor or LocalExecutor()
    console = console or Console(stderr=True)
    cells = spec.cells()  # names, severities, root: one-line errors before anything is written
    ctx = RunContext(spec, fit_cache=fit_cache or FitCache())
    check_inputs(spec, cells, ctx)
    store = RunStore(run_dir)
    store.remove_stale_tmp()
    store.write_manifest(spec.to_dict())
    done = store.done_ids(include_failed=not retry_failed)
    todo = [c for c in cells if c.cell_id not in done]
    groups = plan_groups(todo, ctx)
    summary = GridSummary(Path(run_dir), total=len(cells), skipped=len(cells) - len(todo), executor=executor.name)
    t0 = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("grid", total=summary.total, completed=summary.skipped)
        driver = Driver(store, summary, console, progress, task, ctx)
        if groups:
            executor.run(spec, groups, driver)
    summary.seconds = time.perf_counter() - t0
    return summary


def run_local(spec: GridSpec, run_dir: Path, *, workers: int = 1, **kwargs: Any) -> GridSummary:
    """``run_grid`` with the local executor (kept for callers of the first API)."""
    return run_grid(spec, run_dir, LocalExecutor(workers=workers), **kwargs)


def _row_line(cell: Cell, row: dict[str, Any]) -> str:
    fit = "cached" if row.get("fit_cached") else f"{row.get('fit_seconds', 0):.1f}s"
    return (f"{cell.label()}: image AUROC {100 * row['image_auroc']:.2f}, pixel AUROC "
            f"{100 * row['pixel_auroc']:.2f}, AUPRO {100 * row['aupro']:.2f} "
            f"(fit {fit}, score {row['score_seconds']:.1f}s)")


# --------------------------------------------------------------------------- local


class LocalExecutor:
    """In-process (``workers=1``) or a pool of ``workers`` spawn-started processes.

    With workers, each group's fit runs as one task; when it is in the on-disk fit cache the
    group's cells are queued (they load the state from that cache). Cells of fitted groups go
    before new fits, so rows land early. A worker that dies (killed, out of memory) breaks the
    pool: it is rebuilt and the tasks that were running are retried up to ``max_retries``
    times; after that their cells become failed rows. Workers exit when the driver dies.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None, max_retries: int = 2) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise BenchError(f"--workers {workers}: use a whole number >= 1 (1 runs in-process)")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise BenchError(f"--threads {threads}: use a whole number >= 1")
        self.workers = workers
        self.max_retries = max_retries
        # CPU threads per cell: given, else in-process torch's default, else the cores shared out
        self.threads = threads if threads or workers == 1 else max(1, (os.cpu_count() or 1) // workers)
        self.name = "local" if workers == 1 else f"local x{workers}"

    def run(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None:
        if self.workers == 1:
            self._run_inprocess(spec, groups, driver)
        else:
            self._run_pool(spec, groups, driver)

    # in-process ---------------------------------------------------------------------------
    def _run_inprocess(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None:
        from .runner import set_threads

        old = set_threads(self.threads) if self.threads else None
        try:
            self._inprocess_groups(spec, groups, driver)
        finally:
            if old is not None:
                set_threads(old)

    def _inprocess_groups(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None:
        from .runner import resolve_device

        ctx = driver.ctx
        for group in groups:
            first = group.cells[0]
            driver.stage(first, "fit")
            try:
                device = resolve_device(spec.device)
                fitted = obtain_fit(first, ctx, device, lambda msg: driver.stage(first, f"fit {msg}"))
            except Exception as exc:  # noqa: BLE001 - the group's cells fail, the grid goes on
                error = _error_text(exc)
                for cell in group.cells:
                    driver.row(cell, failed_row(cell, spec.device, error))
                continue
            driver.fit_done(first, fitted.key, computed=not fitted.cached, seconds=fitted.fit_seconds)
            for i, cell in enumerate(group.cells):
                before = dict(_corruptions.CACHE_STATS)
                this = fitted if i == 0 else replace(fitted, cached=True)
                row = run_cell(cell, ctx, on_stage=lambda name, c=cell: driver.stage(c, name), fitted=this)
                driver.row(cell, row, _corruptions.cache_stats_since(before))

    # worker processes ---------------------------------------------------------------------
    def _run_pool(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None:
        fits: deque[FitGroup] = deque(groups)
        evals: deque[tuple[Cell, str, bool]] = deque()  # (cell, key, cached)
        attempts: dict[tuple, int] = {}
        running: dict[cf.Future, tuple] = {}

        def submit(pool: cf.ProcessPoolExecutor) -> None:
            while len(running) < self.workers and (evals or fits):
                if evals:
                    cell, key, cached = evals.popleft()
                    job = ("eval", cell, key, cached)
                    fut = pool.submit(pool_worker.evaluate, cell, key, cached)
                else:
                    group = fits.popleft()
                    job = ("fit", group)
                    fut = pool.submit(pool_worker.fit, group.cells[0], group.key)
                    driver.stage(group.cells[0], "fit")
                running[fut] = job

        def fail_job(job: tuple, error: str) -> None:
            cells = job[1].cells if job[0] == "fit" else [job[1]]
            for cell in cells:
                driver.row(cell, failed_row(cell, spec.device, error))

        while fits or evals or running:
            pool = _start_pool(spec, self.workers, self.threads)
            broken = False
            try:
                submit(pool)
                while running:
                    finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for fut in finished:
                        job = running.pop(fut)
                        try:
                            result = fut.result()
                        except cf.process.BrokenProcessPool:
                            broken = True
                            job_id = (job[0], job[1].key if job[0] == "fit" else job[1].cell_id)
                            attempts[job_id] = attempts.get(job_id, 0) + 1
                            if attempts[job_id] > self.max_retries:
                                fail_job(job, f"a worker process died while running this cell ({attempts[job_id]} "
                                              "attempts; killed or out of memory?): retry with fewer --workers")
                            elif job[0] == "fit":
                                fits.appendleft(job[1])
                            else:
                                evals.appendleft(job[1:])
                            continue
                        except Exception as exc:  # noqa: BLE001 - e.g. a result that did not unpickle
                            fail_job(job, _error_text(exc))
                            continue
                        if job[0] == "fit":
                            self._fit_finished(job[1], result, driver, evals, fail_job)
                        else:
                            row, stats = result
                            driver.row(job[1], row, stats)
                    if not broken:
                        submit(pool)
            finally:
                pool.shutdown(wait=not broken, cancel_futures=True)
            if not broken:
                break

    @staticmethod
    def _fit_finished(group: FitGroup, info: dict[str, Any], driver: Driver,
                      evals: deque, fail_job: Callable[[tuple, str], None]) -> None:
        if info.get("error"):
            fail_job(("fit", group), info["error"])
            return
        first = group.cells[0]
        driver.fit_done(first, group.key, computed=info["computed"], seconds=info["fit_seconds"])
        if info["key"] != group.key:  # the worker saw other data than the driver (files changed)
            fail_job(("fit", group), f"the training data of {first.category} changed while the grid ran; rerun the command")
            return
        # cells of this group before not-yet-started fits: rows land early
        items = [(cell, group.key, (not info["computed"]) or i > 0) for i, cell in enumerate(group.cells)]
        evals.extend(items)


def _start_pool(spec: GridSpec, workers: int, threads: int) -> cf.ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch / numba threads exist
    # Thread counts are read when the libraries load in the worker; set them in the env it inherits.
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update({k: str(threads) for k in _THREAD_ENV})
    try:
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=pool_worker.init,
                                      initargs=(pickle.dumps(spec), threads, os.getpid()))
        # start every worker now, while the environment is set
        try:
            for f in [pool.submit(pool_worker.ping) for _ in range(workers)]:
                f.result()
        except Exception as exc:  # noqa: BLE001 - e.g. the initializer failed in the worker
            pool.shutdown(wait=False, cancel_futures=True)
            raise BenchError(f"could not start {workers} worker processes ({type(exc).__name__}: {exc}); "
                             "run with --workers 1 to see the error in-process") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------- bench corrupt


@dataclass
class CorruptSummary:
    sets: int = 0
    images: int = 0
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0


def corrupt_grid(spec: GridSpec, *, workers: int = 1, console: Console | None = None,
                 show_progress: bool = True) -> CorruptSummary:
    """Fill the corrupted-image cache for every (category, corruption, severity, seed) of a grid.

    The test sets are exactly the ones the grid's cells read (same dataset label, image ids and
    seeds), generated by ``workers`` spawn-started processes; entries already cached are skipped.
    """
    console = console or Console(stderr=True)
    from .methods import registered

    probe = replace(spec, methods=[next(iter(registered()))])  # pixels do not depend on the method
    cells = probe.cells()
    ctx = RunContext(probe)
    check_inputs(probe, cells, ctx)
    jobs: dict[tuple[str, str, int], list[str]] = {}
    sev_by: dict[tuple[str, str, int], set[int]] = {}
    for c in cells:
        if c.corruption == _corruptions.CLEAN:
            continue
        k = (c.dataset, c.category, c.seed)
        if c.corruption not in jobs.setdefault(k, []):
            jobs[k].append(c.corruption)
        sev_by.setdefault(k, set()).add(c.severity)
    out = CorruptSummary()
    sizes = {k: len(ctx.category(k[1]).test) for k in jobs}
    total = sum(sizes[k] * len(v) * len(sev_by[k]) for k, v in jobs.items())
    out.sets = sum(len(v) * len(sev_by[k]) for k, v in jobs.items())
    t0 = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not show_progress) as progress:
        task = progress.add_task("corrupt", total=total)
        base = 0
        for (dataset, category, seed), names in jobs.items():
            progress.update(task, description=f"{dataset} / {category} / seed {seed}")
            stats = _corruptions.materialize(
                ctx.category(category).test.images, dataset=dataset, category=category, corruptions=names,
                severities=sorted(sev_by[(dataset, category, seed)]), seed=seed, protocol=spec.protocol,
                workers=workers, progress=lambda done, _total, b=base: progress.update(task, completed=b + done))
            base += stats.total
            out.images += stats.total
            out.generated += stats.generated
            out.cached += stats.cached
    out.seconds = time.perf_counter() - t0
    return out
