"""The two worker entry points every executor runs: ``fit`` a group, ``evaluate`` one cell.

Jobs and results are typed and picklable, the same in-process, in a pool worker and in a Ray
task. Errors inside a job never escape it: a failed fit is ``FitResult.error``, a failed cell
is a row with ``status = failed``. A cell returns its row and its own corrupted-image cache
counters (no process-global counters to diff).

Kept free of heavy imports at module level: a spawn-started pool worker imports this module
first, protects itself against a dying driver (``PR_SET_PDEATHSIG`` on Linux, and a watchdog
thread everywhere), and only then imports torch and the harness (seconds on a busy machine).
"""
from __future__ import annotations

import copy
import os
import pickle
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from .datasets.corruptions import CacheStats
    from .grid import Cell, GridSpec
    from .runner import RunContext


@dataclass(frozen=True)
class FitJob:
    """Fit (or find in the fit cache) the state that a group's cells share."""

    cell: Cell  # the group's first cell
    key: str  # the driver's fit-cache key for it


@dataclass
class FitResult:
    key: str = ""  # the key the worker computed (differs from the job's when it sees other data)
    computed: bool = False  # fitted now; False: found in a fit cache
    fit_seconds: float = float("nan")
    diagnostics: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    error: str | None = None  # the fit failed: every cell of the group fails with this text
    state: dict[str, Any] | None = None  # only when asked for (in-process, Ray)
    warnings: list[str] = field(default_factory=list)  # a worker process's, for the driver to say


@dataclass(frozen=True)
class CellJob:
    """Evaluate one cell from its group's fitted state."""

    cell: Cell
    key: str
    cached: bool  # the row's fit_cached: False only for the first cell after a computed fit
    fit_seconds: float
    diagnostics: dict[str, Any]


@dataclass
class CellResult:
    row: dict[str, Any]
    cache: CacheStats
    warnings: list[str] = field(default_factory=list)  # a worker process's, for the driver to say


# --------------------------------------------------------------------------- the entry points


def fit(job: FitJob, ctx: RunContext | None = None, *, keep_state: bool = False,
        on_progress: Callable[[str], None] | None = None) -> FitResult:
    """The group's fit into the fit cache (or found there). ``ctx``: default this process's."""
    from .runner import _error_text, obtain_fit, resolve_device

    with _recorded(in_worker=ctx is None) as said:
        ctx = ctx or _PROCESS["ctx"]
        try:
            fitted, error = obtain_fit(job.cell, ctx, resolve_device(ctx.spec.device), on_progress), None
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the group's cells fail, the grid goes on
            fitted, error = None, _error_text(exc)
    if error is not None:
        return FitResult(error=error, warnings=said)
    return FitResult(key=fitted.key, computed=not fitted.cached, fit_seconds=fitted.fit_seconds,
                     diagnostics=fitted.diagnostics, host=socket.gethostname(),
                     state=fitted.state if keep_state else None, warnings=said)


def evaluate(job: CellJob, state: dict[str, Any] | None = None, ctx: RunContext | None = None, *,
             on_stage: Callable[[str], None] | None = None) -> CellResult:
    """One cell. ``state``: the fitted state when the executor hands it over (in-process, Ray);
    None: from this process's fit cache (pool workers; without the entry the cell fits itself)."""
    from .datasets.corruptions import CacheStats
    from .runner import Fitted, cached_fit, run_cell

    with _recorded(in_worker=ctx is None) as said:
        ctx = ctx or _PROCESS["ctx"]
        if state is None:
            fitted = cached_fit(ctx.fit_cache, job.key, job.cached)
        else:  # run_cell copies the state before loading it (object-store arrays are read-only)
            fitted = Fitted(job.key, state, job.fit_seconds, job.cached, copy.deepcopy(job.diagnostics))
        stats = CacheStats()
        row = run_cell(job.cell, ctx, on_stage=on_stage, fitted=fitted, cache_stats=stats)
    return CellResult(row, stats, said)


@contextmanager
def _recorded(in_worker: bool) -> Iterator[list[str]]:
    """In a worker process (pool or Ray), the job's BenchWarnings, recorded for the driver to say
    (a worker's stderr is not the user's terminal, and the driver says each message once);
    in-process they are said where they happen."""
    said: list[str] = []
    if not in_worker:
        yield said
        return
    import warnings

    from .errors import BenchWarning

    with warnings.catch_warnings():  # restores showwarning and the filters on the way out
        warnings.simplefilter("always", BenchWarning)
        show = warnings.showwarning

        def record(message, category, *args, **kwargs):  # noqa: ANN001 - warnings' own signature
            if not issubclass(category, BenchWarning):  # a library's: the worker's stderr, as before
                show(message, category, *args, **kwargs)
            elif str(message) not in said:
                said.append(str(message))

        warnings.showwarning = record
        yield said


# --------------------------------------------------------------------------- worker processes

_PROCESS: dict[str, Any] = {}  # this worker process's RunContext and the spec it was built for


def use(spec: GridSpec, threads: int) -> None:
    """Set up this process for ``spec``: thread count and one RunContext per grid (reused).

    The context has its own, node-local fit cache: a worker on the driver's machine (or one that
    fitted before) finds a state without fitting; no shared filesystem is assumed.
    """
    from .cache import FitCache
    from .runner import RunContext, set_threads

    set_threads(threads)
    ident = repr(spec.to_dict())
    if _PROCESS.get("spec") != ident:
        _PROCESS.update(spec=ident, ctx=RunContext(spec, fit_cache=FitCache()))


def ping() -> int:
    return os.getpid()


def init_pool_worker(spec_bytes: bytes, threads: int, parent: int) -> None:
    """Initializer of a local pool worker: die with the driver, then load the harness."""
    _die_with(parent)
    use(pickle.loads(spec_bytes), threads)


def _die_with(parent: int) -> None:
    """Exit when the driver dies: a SIGKILLed driver cannot stop its workers itself."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux
        pass

    def watchdog() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watchdog, daemon=True, name="driver-watchdog").start()
