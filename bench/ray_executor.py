"""The Ray executor: a grid as Ray tasks on an existing cluster (or a local one it starts).

A backend of the scheduler (``bench.scheduler``), which owns the order, the failed rows and the
key checks; the tasks are thin wrappers of the worker entry points (``bench.worker``). Per fit
group (method config x dataset x category x seed) one *fit task* returns the fitted state into
the object store; the group's *evaluation tasks* take that ObjectRef as an argument,
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

import os
from typing import TYPE_CHECKING, Any, Iterable

from .cache import FitCache
from .errors import BenchError
from .executors import ExecutorOptions
from .runner import cached_fit
from .scheduler import Failed, FitGroup, Scheduler
from .worker import CellJob, CellResult, FitJob, FitResult

if TYPE_CHECKING:
    from .grid import GridSpec

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
                 max_retries: int = 3, log_to_driver: bool = False, threads: int | None = None, *,
                 options: ExecutorOptions | None = None) -> None:
        opts = options or ExecutorOptions("ray", address=address, cpus_per_cell=cpus_per_cell,
                                          gpus_per_cell=gpus_per_cell, threads=threads, max_retries=max_retries)
        self.address = opts.address
        self.cpus_per_cell = opts.cpus_per_cell
        self.gpus_per_cell = opts.gpus_per_cell
        self.max_retries = 3 if opts.max_retries is None else opts.max_retries
        self.log_to_driver = log_to_driver
        # CPU threads per task: by default what the task reserves (at least 1)
        self.threads = opts.threads or max(1, int(opts.cpus_per_cell))
        self.fit_cache: FitCache | None = None

    # ---------------------------------------------------------------------------- cluster
    def _connect(self, ray) -> bool:
        """ray.init unless already connected; returns whether this call connected."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"log_to_driver": self.log_to_driver}
        address = self.address
        private = address is None and not os.environ.get("RAY_ADDRESS")
        if private:
            # a private local cluster for this run; joining one is explicit (--address auto)
            address = "local"
            kwargs["include_dashboard"] = False
        # The same kernel mode everywhere (each worker pins its libraries when it imports bench,
        # bench.numerics). The driver's cache folder only on the private cluster, whose workers
        # share this machine; a node of a real cluster keeps its own (its ADSHIFT_BENCH_CACHE, set
        # where `ray start` ran): nothing but the object store is shared between nodes.
        names = ("ADSHIFT_BENCH_CACHE", "BENCH_KERNELS") if private else ("BENCH_KERNELS",)
        env = {k: os.environ[k] for k in names if k in os.environ}
        if env:
            kwargs["runtime_env"] = {"env_vars": env}
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
        # Ray retries a task whose worker died (max_retries, with lineage for lost objects); what
        # still fails comes back as Failed, so the scheduler does not retry again.
        backend = RayBackend(ray, self, spec, self.fit_cache or driver.ctx.fit_cache)
        Scheduler(backend, driver, spec.device, max_retries=0).run(groups)

    def task_error(self, ray, exc: Exception) -> str:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        if isinstance(exc, ray.exceptions.RayTaskError):  # raised outside the cell's own handling
            return f"Ray task error ({detail}); see the worker's log (`ray logs`) and rerun the command"
        return (f"the Ray worker running this cell died {self.max_retries + 1} times ({type(exc).__name__}: "
                "killed, out of memory, or its node was lost); Ray retried it, it is recorded as failed: "
                "rerun the command with --retry-failed")


class RayBackend:
    """Backend: fit and cell tasks on the cluster; a fitted state goes through the object store.

    The driver keeps every fitted state it receives in its own fit cache, so a rerun after the
    driver died does not fit again: a cached state is ``ray.put`` once and handed to the cells.
    """

    capacity = None  # Ray queues tasks by their resources
    key_mismatch = ("{category}: a Ray worker sees other training data than the driver (other files or "
                    "file contents on that node); make the dataset identical on every node")

    def __init__(self, ray, executor: RayExecutor, spec: GridSpec, cache: FitCache) -> None:
        opts = {"num_cpus": executor.cpus_per_cell, "num_gpus": executor.gpus_per_cell,
                "max_retries": executor.max_retries}
        self.ray, self.executor, self.cache = ray, executor, cache
        self._fit = ray.remote(_ray_fit).options(num_returns=2, **opts)
        self._eval = ray.remote(_ray_eval).options(**opts)
        self._spec = ray.put(spec)
        self._states: dict[Any, Any] = {}  # a fit task's info ref -> its state ref

    def known_fit(self, group: FitGroup) -> FitResult | None:
        found = cached_fit(self.cache, group.key)  # fitted in an earlier run: no fit task
        if found is None:
            return None
        return FitResult(key=group.key, computed=False, fit_seconds=found.fit_seconds,
                         diagnostics=found.diagnostics, state=found.state)

    def submit_fit(self, job: FitJob) -> Any:
        state_ref, info_ref = self._fit.remote(self._spec, job, self.executor.threads)
        self._states[info_ref] = state_ref
        return info_ref

    def fit_ready(self, group: FitGroup, result: FitResult, future: Any) -> Any:
        if future is None:  # known_fit: the driver's cached state
            return self.ray.put(result.state)
        state_ref = self._states.pop(future)
        # keep the state on the driver too: a rerun after a crash of the driver does not refit
        if result.computed and self.cache.load(group.key) is None:
            self.cache.save(group.key, self.ray.get(state_ref), {"fit_seconds": result.fit_seconds,
                                                                 "diagnostics": result.diagnostics,
                                                                 "fitted_by": result.host})
        return state_ref

    def submit_eval(self, job: CellJob, state: Any) -> Any:
        return self._eval.remote(self._spec, job, state, self.executor.threads)

    def wait(self, futures: Iterable[Any]) -> list[Any]:
        ready, _ = self.ray.wait(list(futures), num_returns=1)
        return ready

    def result(self, future: Any) -> FitResult | CellResult:
        ray = self.ray
        try:
            return ray.get(future)
        except ray.exceptions.RayError as exc:
            state_ref = self._states.pop(future, None)
            if state_ref is not None:  # collect the state's error too (else Ray logs it as unhandled)
                try:
                    ray.get(state_ref)
                except ray.exceptions.RayError:
                    pass
            raise Failed(self.executor.task_error(ray, exc)) from None


# --------------------------------------------------------------------------- tasks (on workers)


def _ray_fit(spec: GridSpec, job: FitJob, threads: int) -> tuple[Any, FitResult]:
    """Fit task: (fitted state, result without it); the state goes to the object store alone."""
    from . import worker

    worker.use(spec, threads)
    result = worker.fit(job, keep_state=True)
    state, result.state = result.state, None
    return state, result


def _ray_eval(spec: GridSpec, job: CellJob, state: dict, threads: int) -> CellResult:
    """Cell task; ``state`` arrives resolved from the object store."""
    from . import worker

    worker.use(spec, threads)
    return worker.evaluate(job, state)
