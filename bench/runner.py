"""Run one cell: fitted state (cached) -> adapt on the target images -> score -> metrics -> row.

The runner is the only place that sees labels and masks; methods get images only.
"""
from __future__ import annotations

import json
import platform
import random
import resource
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import metrics
from .cache import FitCache, data_fingerprint
from .datasets.base import Category
from .datasets.corruptions import CLEAN, backend_version, corrupted_images
from .datasets.registry import get_dataset
from .errors import BenchError
from .grid import Cell, GridSpec
from .methods import Method, get
from .methods.backbones import describe


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("adshift-bench", "torch", "timm", "faiss-cpu", "faiss-gpu", "numpy", "pot", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    out["corruptions"] = backend_version()
    return out


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: no CUDA device is visible to torch; use --device cpu or auto")
    return device


@dataclass
class RunContext:
    """What cells of one grid share: loaded categories, the fit cache, masks, a fit log."""

    spec: GridSpec
    fit_cache: FitCache = field(default_factory=FitCache)
    fit_log: Path | None = None  # one JSON line per fit actually computed
    _categories: dict[str, Category] = field(default_factory=dict)
    _masks: dict[tuple, np.ndarray] = field(default_factory=dict)

    def category(self, name: str) -> Category:
        if name not in self._categories:
            ds = get_dataset(self.spec.dataset)
            self._categories[name] = ds.load(ds.root(self.spec.root), name)
        return self._categories[name]

    def masks(self, cell: Cell, method: Method) -> np.ndarray:
        key = (cell.category, type(method).__name__, repr(getattr(method, "geometry", None)))
        if key not in self._masks:
            test = self.category(cell.category).test
            self._masks[key] = np.stack([method.mask_transform(test.mask(i)) for i in range(len(test))])
        return self._masks[key]


def fitted_method(cell: Cell, ctx: RunContext, device: str) -> tuple[Method, float, bool]:
    """A method instance holding the cell's fitted state: from the cache, else fitted now."""
    method = get(cell.method).create(device=device, seed=cell.seed, **cell.config.to_dict())
    cat = ctx.category(cell.category)
    identity = {
        **method.fit_identity(),
        "dataset": cell.dataset,
        "category": cell.category,
        "seed": cell.seed,
        "data": data_fingerprint(cat.root / cat.name if cat.root else None, cat.train.ids),
    }
    key = ctx.fit_cache.key(identity)
    entry = ctx.fit_cache.load(key)
    if entry is not None:
        method.load_fitted_state(entry["state"])
        return method, float(entry["meta"].get("fit_seconds", float("nan"))), True
    seed_everything(cell.seed)
    t0 = time.perf_counter()
    method.fit(cat.train)
    seconds = time.perf_counter() - t0
    ctx.fit_cache.save(key, method.fitted_state(), {"fit_seconds": seconds, "identity": identity})
    if ctx.fit_log is not None:
        with open(ctx.fit_log, "a") as f:
            f.write(json.dumps({"key": key, "method": cell.method, "category": cell.category,
                                "seed": cell.seed, "fit_seconds": seconds}) + "\n")
    return method, seconds, False


def base_row(cell: Cell, device: str) -> dict[str, Any]:
    cfg = cell.config
    return {
        "cell_id": cell.cell_id,
        "method": cell.method,
        "config": json.dumps(cfg.to_dict(), sort_keys=True, default=str),
        "config_hash": cell.config_hash,
        "dataset": cell.dataset,
        "category": cell.category,
        "corruption": cell.corruption,
        "severity": cell.severity,
        "seed": cell.seed,
        "backbone": cfg.backbone,
        "weights": _weights_origin(cfg.backbone, cfg.weights),
        "image_size": int(getattr(cfg, "image_size", 0)),
        "protocol": cell.protocol,
        "device": device,
        "versions": json.dumps(versions(), sort_keys=True),
    }


def _weights_origin(backbone: str, weights: str) -> str:
    try:
        return describe(backbone, weights)
    except Exception:  # the cell itself will report the problem
        return weights


def run_cell(cell: Cell, ctx: RunContext, on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one cell and return its row; any exception becomes a ``failed`` row."""
    device = resolve_device(ctx.spec.device)
    row = base_row(cell, device)
    t_start = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stage = on_stage or (lambda s: None)
    try:
        stage("fit")
        method, fit_seconds, cached = fitted_method(cell, ctx, device)
        cat = ctx.category(cell.category)
        target = corrupted_images(
            cat.test.images, dataset=cell.dataset, category=cell.category,
            corruption=cell.corruption, severity=cell.severity, seed=cell.seed, protocol=cell.protocol,
        )
        stage("adapt")
        seed_everything(cell.seed)
        t0 = time.perf_counter()
        method.adapt(target)
        t1 = time.perf_counter()
        stage("score")
        scores = method.score(target)
        t2 = time.perf_counter()
        stage("metrics")
        masks = ctx.masks(cell, method)
        if scores.maps.shape != masks.shape:
            raise BenchError(f"{cell.method} returned maps of shape {scores.maps.shape[1:]} but its "
                             f"mask_transform gives {masks.shape[1:]}; they must match")
        values = metrics.compute_all(cat.test.labels, scores.image_scores, masks, scores.maps)
        t3 = time.perf_counter()
        row.update(values)
        row.update({
            "fit_seconds": fit_seconds, "fit_cached": cached, "adapt_seconds": t1 - t0,
            "score_seconds": t2 - t1, "metric_seconds": t3 - t2, "n_test": len(target),
            "status": "ok", "error": "",
        })
        row.update({f"diag_{k}": v for k, v in method.diagnostics().items()})
    except Exception as exc:  # noqa: BLE001 - a failed cell is a result, the grid goes on
        row.update({"status": "failed", "error": _error_text(exc)})
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    row["total_seconds"] = time.perf_counter() - t_start
    row["peak_memory_mb"] = _peak_memory_mb(device)
    row["finished_at"] = datetime.now(timezone.utc).isoformat()
    return row


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return ("CUDA out of memory in this cell (" + str(exc).split("\n")[0] + "); lower the method's "
                "batch_size with --set batch_size=N or run on a larger GPU")
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    # process-wide peak resident set size (kilobytes on Linux)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
