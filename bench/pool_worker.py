"""The worker side of the local process pool (``LocalExecutor(workers=N)``).

Kept free of heavy imports at module level: a spawn-started worker imports this module first,
protects itself against a dying driver (``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread
everywhere), and only then imports torch and the harness, which takes seconds on a busy machine.
"""
from __future__ import annotations

import os
import pickle
import threading
import time
import warnings
from typing import Any

_WORKER: dict[str, Any] = {}  # per worker process: the RunContext and device


def ping() -> int:
    return os.getpid()


def init(spec_bytes: bytes, threads: int, parent: int) -> None:
    _die_with(parent)
    from .cache import FitCache
    from .errors import BenchWarning
    from .runner import RunContext, set_threads

    set_threads(threads)
    warnings.simplefilter("ignore", BenchWarning)  # the driver already said it, once per category

    spec = pickle.loads(spec_bytes)
    _WORKER["ctx"] = RunContext(spec, fit_cache=FitCache())  # no fit log: the driver writes it
    _WORKER["device"] = spec.device


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


def fit(cell, key: str) -> dict[str, Any]:
    """The group's fit into the on-disk fit cache (or found there). Errors are returned, not raised."""
    from .runner import _error_text, obtain_fit, resolve_device

    try:
        fitted = obtain_fit(cell, _WORKER["ctx"], resolve_device(_WORKER["device"]))
    except Exception as exc:  # noqa: BLE001
        return {"error": _error_text(exc)}
    return {"key": fitted.key, "computed": not fitted.cached, "fit_seconds": fitted.fit_seconds}


def evaluate(cell, key: str, cached: bool) -> tuple[dict[str, Any], dict[str, int]]:
    """One cell from the fitted state in the fit cache; (row, corruption-cache delta)."""
    from .datasets import corruptions
    from .runner import cached_fit, run_cell

    ctx = _WORKER["ctx"]
    before = dict(corruptions.CACHE_STATS)
    fitted = cached_fit(ctx.fit_cache, key, cached)
    row = run_cell(cell, ctx, fitted=fitted)  # without the entry (deleted meanwhile) it fits itself
    return row, corruptions.cache_stats_since(before)
