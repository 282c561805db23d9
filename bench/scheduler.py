"""The one scheduler: fit groups, then their cells, on any backend that submits work and waits.

What it owns, for every executor alike:

- grouping pending cells by fit key (``plan_groups``): every group fits once, whatever runs it;
- fit before evaluate: a group's cells are submitted when its fit result is in, ahead of fits
  not yet started, so rows land early;
- a failed fit, a fit key that differs from the driver's (the worker sees other training
  data), or a job whose process died too often becomes one ``failed`` row per cell;
- ``fit_cached`` (False only for the first cell after a fit computed in this run);
- retries of jobs whose worker process died (``Lost``), up to ``max_retries``;
- reporting to the driver (fit done, row done, the cell's cache counters).

A backend (``Backend``) only submits a job and says which futures are done: in-process, a
process pool, Ray (``bench.executors``, ``bench.ray_executor``). Its futures resolve to the
worker entry points' typed results (``bench.worker``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Protocol

from .worker import CellJob, CellResult, FitJob, FitResult

if TYPE_CHECKING:
    from .driver import Driver
    from .grid import Cell
    from .runner import RunContext


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
    from .runner import fit_key

    groups: dict[str, FitGroup] = {}
    for cell in cells:
        key = fit_key(cell, ctx)
        groups.setdefault(key, FitGroup(key, [])).cells.append(cell)
    return list(groups.values())


class Lost(Exception):
    """The process running a job died (killed, out of memory): the scheduler may resubmit it."""


class Failed(Exception):
    """The backend could not run a job and will not (its message is the rows' error text)."""


class Backend(Protocol):
    """Where jobs run. Futures are opaque to the scheduler; ``result`` raises Lost or Failed."""

    capacity: int | None  # jobs in flight at most (None: the backend queues them itself)
    key_mismatch: str  # error text when a worker's fit key differs from the driver's ({category})

    def known_fit(self, group: FitGroup) -> FitResult | None: ...  # a fit the driver already holds
    def submit_fit(self, job: FitJob) -> Any: ...
    def fit_ready(self, group: FitGroup, result: FitResult, future: Any) -> Any: ...  # -> state handle
    def submit_eval(self, job: CellJob, state: Any) -> Any: ...
    def wait(self, futures: Iterable[Any]) -> list[Any]: ...  # at least one done future
    def result(self, future: Any) -> FitResult | CellResult: ...


@dataclass
class _Eval:
    job: CellJob
    state: Any  # the backend's handle on the group's fitted state


@dataclass
class _Fit:
    group: FitGroup


def lost_error(attempts: int) -> str:
    return (f"a worker process died while running this cell ({attempts} attempts): killed, out of memory (retry "
            "with fewer --workers), or a crash in native code such as a segfault (--workers 1 runs it in-process "
            "and prints where it crashed)")


class Scheduler:
    def __init__(self, backend: Backend, driver: Driver, device: str, max_retries: int = 2) -> None:
        self.backend = backend
        self.driver = driver
        self.device = device  # for failed rows
        self.max_retries = max_retries

    def run(self, groups: list[FitGroup]) -> None:
        fits: deque[_Fit] = deque(_Fit(g) for g in groups)
        evals: deque[_Eval] = deque()
        running: dict[Any, _Fit | _Eval] = {}
        attempts: dict[Hashable, int] = {}
        cap = self.backend.capacity

        while fits or evals or running:
            while (cap is None or len(running) < cap) and (evals or fits):
                if evals:
                    item: _Fit | _Eval = evals.popleft()
                    running[self.backend.submit_eval(item.job, item.state)] = item
                    continue
                item = fits.popleft()
                known = self.backend.known_fit(item.group)
                if known is not None:  # no fit job: the driver has the state
                    evals.extend(self._fitted(item.group, known, None))
                    continue
                first = item.group.cells[0]
                self.driver.stage(first, "fit")
                running[self.backend.submit_fit(FitJob(first, item.group.key))] = item
            if not running:
                continue
            for future in self.backend.wait(list(running)):
                item = running.pop(future)
                try:
                    result = self.backend.result(future)
                except Lost:
                    job_id = ("fit", item.group.key) if isinstance(item, _Fit) else ("cell", item.job.cell.cell_id)
                    attempts[job_id] = attempts.get(job_id, 0) + 1
                    if attempts[job_id] > self.max_retries:
                        self._fail(item, lost_error(attempts[job_id]))
                    elif isinstance(item, _Fit):
                        fits.appendleft(item)
                    else:
                        evals.appendleft(item)
                    continue
                except Failed as exc:
                    self._fail(item, str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that did not unpickle
                    from .runner import _error_text

                    self._fail(item, _error_text(exc))
                    continue
                self.driver.say(result.warnings)
                if isinstance(item, _Eval):
                    self.driver.row(item.job.cell, result.row, result.cache)
                else:
                    evals.extend(self._fitted(item.group, result, future))

    def _fitted(self, group: FitGroup, result: FitResult, future: Any) -> list[_Eval]:
        """A group's fit is in: report it and return its cells' jobs (none when it failed)."""
        first = group.cells[0]
        if result.error:
            self._fail(_Fit(group), result.error)
            return []
        if result.key != group.key:  # the worker saw other data than the driver (files changed)
            self.driver.fit_done(first, group.key, computed=result.computed, seconds=result.fit_seconds)
            self._fail(_Fit(group), self.backend.key_mismatch.format(category=first.category))
            return []
        state = self.backend.fit_ready(group, result, future)
        self.driver.fit_done(first, group.key, computed=result.computed, seconds=result.fit_seconds)
        return [_Eval(CellJob(cell, group.key, (not result.computed) or i > 0, result.fit_seconds,
                              result.diagnostics), state)
                for i, cell in enumerate(group.cells)]

    def _fail(self, item: _Fit | _Eval, error: str) -> None:
        from .runner import failed_row

        cells = item.group.cells if isinstance(item, _Fit) else [item.job.cell]
        for cell in cells:
            self.driver.row(cell, failed_row(cell, self.device, error))
