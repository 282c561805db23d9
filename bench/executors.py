"""Run a grid's missing cells on one backend and write one Parquet part per finished cell.

One driver, one scheduler, several backends::

    run_grid(spec, run_dir, executor)        the driver: skips done cells, validates the input,
                                             shows progress, and alone writes the run directory
    make_executor(name, **options)           validates the options once and builds one of:
    LocalExecutor(workers=1)                 in-process (the default)
    LocalExecutor(workers=N)                 N spawn-started worker processes on this machine
    RayExecutor(address, cpus_per_cell, ...) tasks on a Ray cluster (``bench.ray_executor``)

The driver hands the executor its pending cells grouped by fit identity (``FitGroup``: the cells
of one method config x dataset x category x seed). The scheduler (``bench.scheduler``) runs one
*fit* per group and then the group's *evaluation* cells from that fitted state, and reports to
the ``Driver`` (``bench.driver``: fit finished, row finished); an executor is only a backend that submits the two
worker entry points (``bench.worker``) and waits for them. So every category fits once, whatever
the backend: in-process the state is passed along; local workers share it through the on-disk
``FitCache``; Ray passes it through the object store. Workers never touch the results directory.

A killed driver loses nothing that finished: parts are written atomically as rows arrive, fits
are in the fit cache, and a rerun of the same command resumes with the missing cells. The
driver holds the run directory's lock (``bench.run_lock``) while it runs, and on resume moves
any part that does not read back whole into the run's ``quarantine/`` so its cell runs again.

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
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import run_lock, worker
from .cache import FitCache
from .datasets.custom_corruptions import corruption_code
from .errors import BenchError
from .grid import Cell, GridSpec
from .interrupts import GridInterrupted, signal_of
from .methods.errors import warn
from .results import GRIDS, QUARANTINE_DIR, RunStore
from .driver import Driver, GridSummary, read_fit_log
from .methods import get, registered
from .runner import CORRUPTION_CODE, METHOD_CODE, RunContext
from .scheduler import FitGroup, Lost, Scheduler, plan_groups
from .worker import CellJob, CellResult, FitJob, FitResult

__all__ = ["EXECUTORS", "ExecutorOptions", "make_executor", "LocalExecutor", "run_grid", "run_local",
           "plan_grid", "GridPlan", "GridSummary", "Driver", "FitGroup", "plan_groups"]

# --------------------------------------------------------------------------- input


def check_inputs(spec: GridSpec, cells: list[Cell], ctx: RunContext) -> None:
    """Fail before any work on what a listing can tell: every category of the grid must load.

    ``load`` checks the MVTec layout, file types, masks present for defect images and a
    non-empty train/good; it raises a one-line BenchError naming the folder or file. Content
    errors (a truncated image, a mask of the wrong size) are found per category when its first
    fit runs (``RunContext.checked_category``) and fail that category's cells only. Every test
    domain of the grid must load too (e.g. MNIST-M's files are there).
    """
    for name, domain in dict.fromkeys((c.category, c.domain) for c in cells):
        ctx.split(name, domain)


class Executor(Protocol):
    """A backend for the scheduler: runs the groups' fits and cells and reports each to the driver."""

    name: str

    def run(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None: ...


# --------------------------------------------------------------------------- options

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorOptions:
    """Every executor option, validated here once (``bench grid`` and the API build executors
    through this); each message names the flag and the fix."""

    name: str = "local"
    workers: int = 1
    threads: int | None = None
    address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    device: str = "cpu"
    max_retries: int | None = None  # None: the executor's default

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            close = difflib.get_close_matches(self.name, EXECUTORS, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise BenchError(f"--executor {self.name}: unknown executor; {hint}use local (this machine) "
                             "or ray (a Ray cluster)")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BenchError(f"--threads {self.threads}: use a whole number >= 1")
        if self.name == "local":
            if not isinstance(self.workers, int) or self.workers < 1:
                raise BenchError(f"--workers {self.workers}: use a whole number >= 1 (1 runs in-process)")
            if self.address is not None:
                raise BenchError(f"--address {self.address}: only the ray executor connects to a cluster; "
                                 "add --executor ray")
            if self.gpus_per_cell:
                raise BenchError("--gpus-per-cell is a Ray resource; add --executor ray (locally, use --device cuda)")
            return
        if self.workers != 1:
            raise BenchError(f"--workers {self.workers}: the ray executor sizes itself by --cpus-per-cell and "
                             "--gpus-per-cell; drop --workers")
        if self.cpus_per_cell <= 0:
            raise BenchError(f"--cpus-per-cell {self.cpus_per_cell}: must be > 0 (e.g. 1 or 0.5)")
        if self.gpus_per_cell < 0:
            raise BenchError(f"--gpus-per-cell {self.gpus_per_cell}: must be >= 0 (e.g. 1, or 0.5 to share a GPU)")
        # the driver may have no GPU while the workers do: each task resolves the device
        if self.device.startswith("cuda") and not self.gpus_per_cell:
            raise BenchError(f"--device {self.device} with the ray executor needs --gpus-per-cell (e.g. 1): "
                             "Ray hides GPUs from tasks that reserve none")
        if self.device not in ("auto", "cpu", "cuda"):
            raise BenchError(f"--device {self.device}: with the ray executor use auto, cpu or cuda "
                             "(Ray assigns each task its GPU)")


def make_executor(name: str = "local", **options: Any) -> Executor:
    """The executor ``name`` with validated ``options`` (see ``ExecutorOptions``)."""
    opts = ExecutorOptions(name, **options)
    if opts.name == "local":
        return LocalExecutor(options=opts)
    from .ray_executor import RayExecutor

    return RayExecutor(options=opts)


# --------------------------------------------------------------------------- the grid


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
    """Run every cell of ``spec`` that has no sound part in ``run_dir`` yet; return what happened.

    Holds the run directory's lock throughout (``bench.run_lock``); bad parts are quarantined
    first (``RunStore.quarantine_bad_parts``); a KeyboardInterrupt (Ctrl-C, or SIGTERM inside
    ``interrupts.sigterm_raises``) becomes ``GridInterrupted`` with the counts written.
    """
    executor = executor or LocalExecutor()
    console = console or Console(stderr=True, emoji=False)
    cells = spec.cells()  # names, severities, root: one-line errors before anything is written
    ctx = RunContext(spec, fit_cache=fit_cache or FitCache())
    check_inputs(spec, cells, ctx)
    with run_lock.hold(run_dir):  # one grid per run directory; RunLocked (one line) otherwise
        store = RunStore(run_dir)
        store.remove_stale_tmp()
        others = store.record_grid(spec.to_dict(), len(cells))
        if any(_identity(o) != _identity(spec.to_dict()) for o in others):
            warn(f"{run_dir}: this run directory also holds the cells of {len(others)} other grid spec(s) "
                 f"(listed in {run_dir / GRIDS}); bench table shows their rows together; pass another "
                 "--out to keep grids apart")
        _report_unfinished(run_dir)
        statuses = store.quarantine_bad_parts()  # a torn part is moved aside and its cell runs again
        for cid in stale_cells(store, statuses, cells, ctx):  # computed on other test data: again too
            del statuses[cid]
        todo = pending(cells, statuses, retry_failed)
        groups = plan_groups(todo, ctx)
        summary = GridSummary(Path(run_dir), total=len(cells), skipped=len(cells) - len(todo),
                              executor=executor.name, fits_planned=len(groups))
        t0 = time.perf_counter()
        # the time left is the driver's (Driver.time_left, as in a log's lines), not rich's speed
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}")]
        try:
            # no live bar where output goes to a file: it would print once, cut to 80 columns, at the
            # end; each cell's line carries [done/total] and the time left there (Driver.row)
            live = show_progress and console.is_terminal
            with Progress(*columns, console=console, disable=not live, transient=False) as progress:
                task = progress.add_task("grid", total=summary.total, completed=summary.skipped, eta="-:--:--")
                driver = Driver(store, summary, console, progress, task, ctx)
                if groups:
                    executor.run(spec, groups, driver)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through interrupts.sigterm_raises
            raise GridInterrupted(signal_of(exc), Path(run_dir), summary.skipped + summary.ran,
                                  summary.total, summary.ran) from None
    summary.seconds = time.perf_counter() - t0
    return summary


def stale_cells(store: RunStore, statuses: dict[str, str], cells: list[Cell], ctx: RunContext) -> list[str]:
    """Finished cells of this grid that must run again (``stale_reasons``). Their parts are moved
    to quarantine/ with one line per category or method, so the grid runs them again; parts
    written before rows recorded the columns are kept as they are."""
    stale = stale_reasons(store, statuses, cells, ctx)
    for why, cids in stale.items():
        for cid in cids:
            store.quarantine_part(cid)
        warn(f"{store.run_dir}: {len(cids)} finished cell(s) {why}; their parts are moved to "
             f"{store.run_dir / QUARANTINE_DIR} and they run again")
    return [cid for cids in stale.values() for cid in cids]


def stale_reasons(store: RunStore, statuses: dict[str, str], cells: list[Cell], ctx: RunContext) -> dict[str, list[str]]:
    """``{why: cell ids}`` of the finished cells whose rows were computed on another test split
    than the one on disk now (images or masks added, removed, relabelled or rewritten:
    ``test_data`` differs), by a fit of another training set (``train_data`` differs; rows
    written before it was recorded are kept), or by other code of a plugin method or of a corruption of your own
    (``method_code`` / ``corruption_code`` differs: its source was edited). Read only."""
    mine = [c for c in cells if statuses.get(c.cell_id) == "ok"]
    ids = [c.cell_id for c in mine]
    data, train, code, corruption = store.recorded(ids, "test_data", "train_data", METHOD_CODE, CORRUPTION_CODE)
    stale: dict[str, list[str]] = {}  # the warning's words -> cells
    for cell in mine:
        value = data.get(cell.cell_id)
        if value and value != ctx.test_data(cell.category, cell.domain):
            where = f"{cell.category} ({cell.domain})" if cell.domain else cell.category
            stale.setdefault(f"of {where} were computed on other test data than the dataset holds now "
                             "(images or masks added, removed, relabelled or changed)", []).append(cell.cell_id)
        elif train.get(cell.cell_id) and train[cell.cell_id] != ctx.train_data(cell.category):
            stale.setdefault(f"of {cell.category} were fitted on other training data than the dataset holds now "
                             "(training images added, removed or changed)", []).append(cell.cell_id)
        elif cell.cell_id in code and code[cell.cell_id] != get(cell.method).code:
            stale.setdefault(f"of {cell.method} were computed by other code of the method ({code[cell.cell_id]}; "
                             f"now {get(cell.method).code})", []).append(cell.cell_id)
        elif cell.cell_id in corruption and corruption[cell.cell_id] != (now := corruption_code(cell.corruption)):
            stale.setdefault(f"of {cell.corruption} were computed by other code of the corruption "
                             f"({corruption[cell.cell_id]}; now {now})", []).append(cell.cell_id)
    return stale


DRY_RUN_DONE = "dry run: no cell ran; the run directory was read, not changed"


@dataclass
class GridPlan:
    """What ``run_grid`` would do in a run directory now (``plan_grid``; ``bench grid --dry-run``)."""

    run_dir: Path
    cells: list[Cell]
    done: int  # finished ok, kept
    failed_ids: list[str]  # recorded as failed and kept (``--retry-failed`` runs them again)
    stale: dict[str, list[str]]  # finished, but run again: why -> cell ids
    todo: list[Cell]
    fits: int | None  # fitted states the cells to run need (None: not counted, see plan_grid's read_data)
    to_fit: list[str] = field(default_factory=list)  # the method of each of those not in the fit cache
    pace: dict[str, float] = field(default_factory=dict)  # method -> mean seconds of its finished cells here
    fit_pace: dict[str, float] = field(default_factory=dict)  # method -> mean seconds of its fits here (fits.jsonl)

    @property
    def failed(self) -> int:
        return len(self.failed_ids)

    @property
    def fits_cached(self) -> int | None:
        return None if self.fits is None else self.fits - len(self.to_fit)

    def todo_per_method(self) -> dict[str, int]:
        """Cells to run per method, in the tables' order (patchcore first)."""
        orders = {name: r.order for name, r in registered().items() if r.order is not None}
        todo = sorted(dict.fromkeys(x.method for x in self.todo), key=lambda m: (orders.get(m, float("inf")), m))
        return {m: sum(x.method == m for x in self.todo) for m in todo}

    def estimate(self) -> str:
        """The cells and fits to run at the pace of this run's finished ones, one after another;
        fits of a method this run has not timed (its fits came from the cache) are named, not guessed."""
        cells = self.todo_per_method()
        fits = {m: self.to_fit.count(m) for m in dict.fromkeys(self.to_fit)}
        untimed = [m for m in cells if m not in self.pace]
        if not cells or untimed:
            return (f"  time: not estimated (no finished cell of {', '.join(untimed)} in this run directory yet)"
                    if untimed else "")
        timed = {m: n for m, n in fits.items() if m in self.fit_pace}
        total = sum(n * self.pace[m] for m, n in cells.items()) + sum(n * self.fit_pace[m] for m, n in timed.items())
        parts = [f"{m} {n} x {self.pace[m]:.1f} s" for m, n in cells.items()]
        parts += [f"{n} {m} fit{'s' if n > 1 else ''} x {self.fit_pace[m]:.1f} s" for m, n in timed.items()]
        not_timed = [f"{n} {m} fit{'s' if n > 1 else ''}" for m, n in fits.items() if m not in timed]
        plus = f", plus {', '.join(not_timed)} not timed here (no fit computed in this run)" if not_timed else ""
        return (f"  time at this run's pace, one cell at a time: about {total / 60:.0f} min "
                f"({'; '.join(parts)}){plus}")

    def lines(self) -> list[str]:
        def count(items: Iterable[Any], word: str, words: str = "") -> str:
            n = len(dict.fromkeys(items))
            return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"

        c = self.cells
        shape = [count((x.method for x in c), "method"), count((x.category for x in c), "category", "categories"),
                 count(((x.corruption, x.severity) for x in c), "condition"), count((x.seed for x in c), "seed")]
        if any(x.domain for x in c):
            shape.insert(2, count((x.domain for x in c), "test domain"))
        per_method = self.todo_per_method()
        kept = f"{self.failed} recorded as failed (kept; --retry-failed runs them again), " if self.failed else ""
        out = [f"run {self.run_dir}: {len(c)} cells ({', '.join(shape)})",
               f"  {self.done} done, {kept}{len(self.todo)} to run"
               + (" (" + ", ".join(f"{m} {n}" for m, n in per_method.items()) + ")" if per_method else "")]
        if self.fits is not None:
            out.append(f"  fits: {self.fits} needed, {self.fits_cached} in the fit cache, {len(self.to_fit)} to compute")
        elif self.to_fit:  # not counted (bench status): the fits no finished cell here has used yet
            out.append(f"  fits: up to {len(self.to_fit)} to compute (the fit cache may hold some)")
        out += [f"  {len(cids)} finished cell(s) {why}: they run again" for why, cids in self.stale.items()]
        return out + [line for line in [self.estimate()] if line]


def _check_out(run_dir: Path) -> None:
    """What the grid would meet creating ``run_dir`` (a dry run creates nothing), as the one line it
    would say: a file in the way, or a folder it cannot write in."""
    where = next((p for p in (run_dir, *run_dir.parents) if p.exists()), None)
    if where is None:
        return
    if not where.is_dir():
        what = "is a file" if where == run_dir else f"lies under the file {where}"
        raise BenchError(f"--out {run_dir}: it {what}; pass a folder for the run (a new or an earlier run's)")
    if not os.access(where, os.W_OK | os.X_OK):
        raise BenchError(f"--out {run_dir}: {where} cannot be written here (check its permissions or choose "
                         "another path)")


def plan_grid(spec: GridSpec, run_dir: Path, *, retry_failed: bool = False,
              fit_cache: FitCache | None = None, read_data: bool = True) -> GridPlan:
    """What ``run_grid`` would run in ``run_dir`` now, read only: the same checks of the inputs
    (every category loads), parts and stale cells, without the lock, and nothing is moved.

    ``read_data=False`` (``bench status``) lists the categories only: no input check, no stale
    check, and the fits are counted without their keys (which hash the training images): a
    (method, category, seed) with no part here yet is a fit to compute, unless the fit cache
    holds it (an upper bound)."""
    cells = spec.cells()
    ctx = RunContext(spec, fit_cache=fit_cache or FitCache())
    if read_data:
        check_inputs(spec, cells, ctx)
        _check_out(Path(run_dir))
    store = RunStore(run_dir)
    mine = {c.cell_id for c in cells}
    every = store.statuses()  # this grid's parts and any other grid's in the directory (for the pace)
    statuses = {cid: status for cid, status in every.items() if cid in mine}
    stale = stale_reasons(store, statuses, cells, ctx) if read_data else {}
    for cids in stale.values():
        for cid in cids:
            del statuses[cid]
    todo = pending(cells, statuses, retry_failed)
    if read_data:
        groups = plan_groups(todo, ctx)
        fits = len(groups)
        to_fit = [g.cells[0].method for g in groups if not ctx.fit_cache.path(g.key).is_file()]
    else:
        fitted = {(c.method, c.category, c.seed) for c in cells if c.cell_id in statuses}
        to_fit = [m for m, cat, seed in dict.fromkeys((c.method, c.category, c.seed) for c in todo)
                  if (m, cat, seed) not in fitted]
        fits = None
    n_ok = sum(status == "ok" for status in statuses.values())
    todo_ids = {c.cell_id for c in todo}
    failed = [c.cell_id for c in cells if statuses.get(c.cell_id, "ok") != "ok" and c.cell_id not in todo_ids]
    ok = [cid for cid, status in every.items() if status == "ok"]
    methods, seconds = store.recorded(ok, "method", "total_seconds")
    return GridPlan(Path(run_dir), cells, n_ok, failed, stale, todo, fits,
                    to_fit, _means((methods[c], seconds[c]) for c in ok if c in seconds),
                    _means((f.get("method"), f.get("fit_seconds")) for f in read_fit_log(Path(run_dir))))


def pending(cells: list[Cell], statuses: dict[str, str], retry_failed: bool) -> list[Cell]:
    """The cells to run: those without a sound part (``statuses``), and failed ones with ``retry_failed``."""
    done = {cid for cid, status in statuses.items() if status == "ok" or not retry_failed}
    return [c for c in cells if c.cell_id not in done]


def _means(pairs: Iterable[tuple[Any, Any]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for key, value in pairs:
        if key is not None and isinstance(value, (int, float)) and value == value:
            sums.setdefault(key, []).append(float(value))
    return {k: sum(v) / len(v) for k, v in sums.items()}



def _identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What makes two grid specs different grids (the device and the deterministic mode do not
    change the cells; rows record both)."""
    return {k: v for k, v in spec.items() if k not in ("device", "deterministic")}


def run_local(spec: GridSpec, run_dir: Path, *, workers: int = 1, **kwargs: Any) -> GridSummary:
    """``run_grid`` with the local executor (kept for callers of the first API)."""
    return run_grid(spec, run_dir, LocalExecutor(workers=workers), **kwargs)


# --------------------------------------------------------------------------- local


class LocalExecutor:
    """In-process (``workers=1``) or a pool of ``workers`` spawn-started processes.

    A worker that dies (killed, out of memory) breaks the pool: it is rebuilt and the jobs that
    were running are retried by the scheduler up to ``max_retries`` times; after that their
    cells become failed rows. Workers exit when the driver dies.
    """

    def __init__(self, workers: int = 1, threads: int | None = None, max_retries: int = 2, *,
                 options: ExecutorOptions | None = None) -> None:
        opts = options or ExecutorOptions("local", workers=workers, threads=threads, max_retries=max_retries)
        self.workers = opts.workers
        self.max_retries = 2 if opts.max_retries is None else opts.max_retries
        # CPU threads per cell: given, else in-process torch's default, else the cores shared out
        self.threads = opts.threads if opts.threads or self.workers == 1 else max(1, (os.cpu_count() or 1) // self.workers)
        self.name = "local" if self.workers == 1 else f"local x{self.workers}"

    def run(self, spec: GridSpec, groups: list[FitGroup], driver: Driver) -> None:
        if self.workers == 1:
            from .runner import set_threads

            old = set_threads(self.threads) if self.threads else None
            try:
                Scheduler(InProcess(driver), driver, spec.device, self.max_retries).run(groups)
            finally:
                if old is not None:
                    set_threads(old)
        else:
            backend = ProcessPool(spec, self.workers, self.threads)
            try:
                Scheduler(backend, driver, spec.device, self.max_retries).run(groups)
            except BaseException:  # interrupted or failed: do not wait for the running jobs
                backend.close(wait=False)
                raise
            backend.close()


# The cell an in-process grid is running. A crash in native code (a segfault) or SIGKILL ends
# the process without a row or a message; the next run of the directory reads this and says so.
RUNNING = "running.txt"


@contextmanager
def _running(run_dir: Path, what: str) -> Iterator[None]:
    marker = Path(run_dir) / RUNNING
    marker.write_text(what + "\n", encoding="utf-8")
    try:
        yield
    finally:  # an exception or Ctrl-C is reported where it happens; only a dead process leaves it
        marker.unlink(missing_ok=True)


def _report_unfinished(run_dir: Path) -> None:
    marker = Path(run_dir) / RUNNING
    if marker.is_file():
        what = marker.read_text(encoding="utf-8", errors="replace").strip()
        warn(f"{run_dir}: its last run ended during {what} (killed, or a crash in native code such as a "
             "segfault, which leaves no row); it runs again now. If the process dies there again, rerun with "
             "--workers 2: each cell then runs in a worker process and one that kills it becomes a failed row")
        marker.unlink(missing_ok=True)


class InProcess:
    """Backend: runs each job when it is submitted, in this process; the fitted state stays in memory."""

    capacity = 1
    key_mismatch = "the training data of {category} changed while the grid ran; rerun the command"

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def known_fit(self, group: FitGroup) -> None:
        return None

    def submit_fit(self, job: FitJob) -> cf.Future:
        progress = lambda msg: self.driver.stage(job.cell, f"fit {msg}")  # noqa: E731
        with _running(self.driver.store.run_dir, f"the fit of {job.cell.label()}"):
            return _done(worker.fit(job, self.driver.ctx, keep_state=True, on_progress=progress))

    def fit_ready(self, group: FitGroup, result: FitResult, future: Any) -> Any:
        return result.state

    def submit_eval(self, job: CellJob, state: Any) -> cf.Future:
        with _running(self.driver.store.run_dir, f"the cell {job.cell.label()}"):
            return _done(worker.evaluate(job, state, self.driver.ctx,
                                         on_stage=lambda name: self.driver.stage(job.cell, name)))

    def wait(self, futures: Iterable[cf.Future]) -> list[cf.Future]:
        return list(futures)

    def result(self, future: cf.Future) -> FitResult | CellResult:
        return future.result()


def _done(value: Any) -> cf.Future:
    future: cf.Future = cf.Future()
    future.set_result(value)
    return future


class ProcessPool:
    """Backend: spawn-started worker processes; fitted states travel through the on-disk fit cache.

    A dead worker breaks the whole pool: every job it was running comes back ``Lost`` and the
    next submission starts a fresh pool.
    """

    key_mismatch = "the training data of {category} changed while the grid ran; rerun the command"

    def __init__(self, spec: GridSpec, workers: int, threads: int) -> None:
        self.spec, self.capacity, self.threads = spec, workers, threads
        self._pool: cf.ProcessPoolExecutor | None = None
        self._broken = False

    def _get(self) -> cf.ProcessPoolExecutor:
        if self._pool is None or self._broken:
            self.close()
            self._pool, self._broken = _start_pool(self.spec, self.capacity, self.threads), False
        return self._pool

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait and not self._broken, cancel_futures=True)
            self._pool = None

    def known_fit(self, group: FitGroup) -> None:
        return None  # the worker finds a cached fit itself (same machine, same fit cache)

    def submit_fit(self, job: FitJob) -> cf.Future:
        return self._get().submit(worker.fit, job)

    def fit_ready(self, group: FitGroup, result: FitResult, future: Any) -> None:
        return None  # cells load the state from the fit cache

    def submit_eval(self, job: CellJob, state: Any) -> cf.Future:
        return self._get().submit(worker.evaluate, job)

    def wait(self, futures: Iterable[cf.Future]) -> list[cf.Future]:
        done, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, future: cf.Future) -> FitResult | CellResult:
        try:
            return future.result()
        except (cf.process.BrokenProcessPool, cf.CancelledError):  # cancelled: its broken pool was closed
            self._broken = True
            raise Lost() from None


def _start_pool(spec: GridSpec, workers: int, threads: int) -> cf.ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once torch / numba threads exist
    # Thread counts are read when the libraries load in the worker; set them in the env it inherits.
    saved = {k: os.environ.get(k) for k in _THREAD_ENV}
    os.environ.update({k: str(threads) for k in _THREAD_ENV})
    try:
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker.init_pool_worker,
                                      initargs=(pickle.dumps(spec), threads, os.getpid()))
        # start every worker now, while the environment is set
        try:
            for f in [pool.submit(worker.ping) for _ in range(workers)]:
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
