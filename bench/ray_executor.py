"""The Ray executor: a grid as Ray tasks on an existing cluster (or a local one it starts).

Per fit group (method config x dataset x category x seed) one *fit task* returns the fitted
state into the object store; the group's *evaluation tasks* take that ObjectRef as an argument,
so Ray ships the state to whichever node runs them - no shared filesystem - and the category
fits once cluster-wide. Tasks return rows; the driver alone writes the Parquet parts.

The driver also keeps every fitted state it receives in its own fit cache, so a rerun after the
driver died does not fit again: a cached state is ``ray.put`` once and handed to the cells.

Worker crashes (a killed process, a lost node) are retried by Ray up to ``max_retries`` times
per task; a task that still fails becomes a ``failed`` row. Errors inside a task (bad input, a
method that raises, CUDA out of memory) never escape it: they are the row's error text.

Ray is optional (``pip install 'adshift-bench[ray]'``) and imported only here, only when used.
"""
from __future__ import annotations

import copy
import os
from typing import Any

from .cache import FitCache
from .datasets import corruptions as _corruptions
from .datasets.cache import cache_dir
from .errors import BenchError
from .grid import Cell, GridSpec
from .runner import Fitted, RunContext, _error_text, cached_fit, failed_row, obtain_fit, run_cell

RAY_MISSING = "the ray executor needs Ray: pip install 'adshift-bench[ray]'"


def import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError(RAY_MISSING) from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0,
                 max_retries: int = 3, log_to_driver: bool = False, threads: int | None = None) -> None:
        if cpus_per_cell <= 0:
            raise BenchError(f"--cpus-per-cell {cpus_per_cell}: must be > 0 (e.g. 1 or 0.5)")
        if gpus_per_cell < 0:
            raise BenchError(f"--gpus-per-cell {gpus_per_cell}: must be >= 0 (e.g. 1, or 0.5 to share a GPU)")
        self.address = address
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.max_retries = max_retries
        self.log_to_driver = log_to_driver
        # CPU threads per task: by default what the task reserves (at least 1)
        self.threads = threads or max(1, int(cpus_per_cell))
        self.fit_cache: FitCache | None = None

    # ---------------------------------------------------------------------------- cluster
    def _connect(self, ray) -> bool:
        """ray.init unless already connected; returns whether this call connected."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"log_to_driver": self.log_to_driver}
        env = {k: os.environ[k] for k in ("ADSHIFT_BENCH_CACHE",) if k in os.environ}
        if env:  # same cache location on the workers (relevant when they share this machine)
            kwargs["runtime_env"] = {"env_vars": env}
        address = self.address
        if address is None and not os.environ.get("RAY_ADDRESS"):
            # a private local cluster for this run; joining one is explicit (--address auto)
            address = "local"
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            auth = "" if os.environ.get("RAY_AUTH_MODE") else (
                "; a cluster with token authentication (the default of `ray start` since Ray 2.59) also needs "
                "RAY_AUTH_MODE=token here")
            raise BenchError(
                f"--address {self.address}: no Ray cluster reachable ({str(exc).splitlines()[0]}); start one with "
                f"`ray start --head` (or on Slurm / Kubernetes) or omit --address to start a local one{auth}"
            ) from None
        return True

    def _check_resources(self, ray, started_here: bool, console) -> None:
        """A task no node can hold would wait forever: fail early on a cluster we started; on an
        existing cluster (which may autoscale) say so and let Ray wait for nodes."""
        total = ray.cluster_resources()
        problems = []
        if self.gpus_per_cell and total.get("GPU", 0) < self.gpus_per_cell:
            problems.append(f"--gpus-per-cell {self.gpus_per_cell:g}: the Ray cluster has {total.get('GPU', 0):g} "
                            "GPUs; use --gpus-per-cell 0 or add GPU nodes")
        if total.get("CPU", 0) < self.cpus_per_cell:
            problems.append(f"--cpus-per-cell {self.cpus_per_cell:g}: the Ray cluster has {total.get('CPU', 0):g} "
                            "CPUs; lower --cpus-per-cell or add nodes")
        if problems and started_here:
            raise BenchError(problems[0])
        for p in problems:
            console.print(f"warning: {p} (waiting for the cluster to grow)", markup=False, highlight=False)

    # ---------------------------------------------------------------------------- the grid
    def run(self, spec: GridSpec, groups, driver) -> None:
        ray = import_ray()
        connected = self._connect(ray)
        try:
            started_here = connected and self.address is None and not os.environ.get("RAY_ADDRESS")
            self._check_resources(ray, started_here, driver.console)
            self._run(ray, spec, groups, driver)
        finally:
            if connected:
                ray.shutdown()

    def _run(self, ray, spec: GridSpec, groups, driver) -> None:
        opts = {"num_cpus": self.cpus_per_cell, "num_gpus": self.gpus_per_cell, "max_retries": self.max_retries}
        fit_task = ray.remote(_ray_fit).options(num_returns=2, **opts)
        eval_task = ray.remote(_ray_eval).options(**opts)
        threads = self.threads
        cache = self.fit_cache or driver.ctx.fit_cache
        spec_ref = ray.put(spec)
        pending: dict[Any, tuple] = {}

        def submit_cells(group, state_ref, computed: bool, seconds: float, diagnostics: dict) -> None:
            for i, cell in enumerate(group.cells):
                cached = (not computed) or i > 0
                ref = eval_task.remote(spec_ref, cell, group.key, state_ref, seconds, cached, diagnostics, threads)
                pending[ref] = ("eval", cell)

        for group in groups:
            found = cached_fit(cache, group.key)
            if found is not None:  # fitted in an earlier run: no fit task
                driver.fit_done(group.cells[0], group.key, computed=False, seconds=found.fit_seconds)
                submit_cells(group, ray.put(found.state), False, found.fit_seconds, found.diagnostics)
            else:
                state_ref, info_ref = fit_task.remote(spec_ref, group.cells[0], group.key, threads)
                pending[info_ref] = ("fit", group, state_ref)
                driver.stage(group.cells[0], "fit")

        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                error = self._task_error(ray, exc)
                if job[0] == "fit":  # collect the state's error too (else Ray logs it as unhandled)
                    try:
                        ray.get(job[2])
                    except ray.exceptions.RayError:
                        pass
                cells = job[1].cells if job[0] == "fit" else [job[1]]
                for cell in cells:
                    driver.row(cell, failed_row(cell, spec.device, error))
                continue
            if job[0] == "eval":
                row, stats = result
                driver.row(job[1], row, stats)
                continue
            group, state_ref = job[1], job[2]
            if result.get("error"):
                for cell in group.cells:
                    driver.row(cell, failed_row(cell, spec.device, result["error"]))
                continue
            if result["key"] != group.key:
                error = (f"{group.cells[0].category}: a Ray worker sees other training data than the driver "
                         "(different files or mtimes on that node); make the dataset identical on every node")
                for cell in group.cells:
                    driver.row(cell, failed_row(cell, spec.device, error))
                continue
            # keep the state on the driver too: a rerun after a crash of the driver does not refit
            if result["computed"] and cache.load(group.key) is None:
                cache.save(group.key, ray.get(state_ref), {"fit_seconds": result["fit_seconds"],
                                                             "diagnostics": result["diagnostics"],
                                                             "fitted_by": result.get("host", "")})
            driver.fit_done(group.cells[0], group.key, computed=result["computed"], seconds=result["fit_seconds"])
            submit_cells(group, state_ref, result["computed"], result["fit_seconds"], result["diagnostics"])


    def _task_error(self, ray, exc: Exception) -> str:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        if isinstance(exc, ray.exceptions.RayTaskError):  # raised outside the cell's own handling
            return f"Ray task error ({detail}); see the worker's log (`ray logs`) and rerun the command"
        return (f"the Ray worker running this cell died {self.max_retries + 1} times ({type(exc).__name__}: "
                "killed, out of memory, or its node was lost); Ray retried it, it is recorded as failed: "
                "rerun the command with --retry-failed")


# --------------------------------------------------------------------------- tasks (on workers)

_CONTEXTS: dict[int, RunContext] = {}  # per worker process, by spec identity


def _context(spec: GridSpec, threads: int) -> RunContext:
    import warnings

    from .errors import BenchWarning
    from .runner import set_threads

    set_threads(threads)
    warnings.simplefilter("ignore", BenchWarning)  # the driver already said it, once per category
    key = hash(repr(spec.to_dict()))
    if key not in _CONTEXTS:
        _CONTEXTS.clear()
        # a node-local fit cache: a worker on the driver's machine (or one that fitted before)
        # finds the state without fitting; no shared filesystem is assumed
        _CONTEXTS[key] = RunContext(spec, fit_cache=FitCache(cache_dir("fits")))
    return _CONTEXTS[key]


def _ray_fit(spec: GridSpec, cell: Cell, key: str, threads: int):
    """Fit task: (fitted state, info). Errors come back in info, not as exceptions."""
    import socket

    from .runner import resolve_device

    ctx = _context(spec, threads)
    try:
        fitted = obtain_fit(cell, ctx, resolve_device(spec.device))
    except Exception as exc:  # noqa: BLE001
        return None, {"error": _error_text(exc)}
    return fitted.state, {"key": fitted.key, "computed": not fitted.cached, "fit_seconds": fitted.fit_seconds,
                          "diagnostics": fitted.diagnostics, "host": socket.gethostname()}


def _ray_eval(spec: GridSpec, cell: Cell, key: str, state: dict, fit_seconds: float, cached: bool,
              diagnostics: dict, threads: int):
    """Evaluation task: (row, corruption-cache delta). ``state`` arrives resolved from the object store."""
    ctx = _context(spec, threads)
    before = dict(_corruptions.CACHE_STATS)
    # object-store arrays are read-only views; run_cell copies the state before loading it
    fitted = Fitted(key, state, fit_seconds, cached, copy.deepcopy(diagnostics))
    row = run_cell(cell, ctx, fitted=fitted)
    return row, _corruptions.cache_stats_since(before)
