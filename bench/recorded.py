"""The grid specs a run directory has served (grid.json, grids.jsonl), as ``GridSpec``s.

A relative ``--root`` is read from the folder the grid was typed in (grids.jsonl records it), so
``bench status`` and ``bench table`` find the data from anywhere.
"""
from __future__ import annotations

import os
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd

from .datasets.corruptions import CLEAN
from .errors import BenchError
from .grid import GridSpec
from .results import RunStore, with_domain

MISSING = "missing"  # the status of a placeholder row: a cell its grid names that has no row yet


def recorded_spec(run_dir: Path) -> GridSpec:
    """The grid spec ``run_dir`` served last."""
    if not Path(run_dir).is_dir():
        what = "a file, not a folder" if Path(run_dir).exists() else "no such folder"
        raise BenchError(f"{run_dir}: {what}; pass the run directory of a grid (its --out)")
    store = RunStore(run_dir)
    spec = store.read_manifest()
    if spec is None:
        raise BenchError(f"{run_dir}: no {store.manifest_path.name}, so no grid has run here; pass the run "
                         "directory of a grid (its --out)")
    entry = next((h for h in store.grids() if h["spec"] == spec), {"spec": spec})
    return _spec(store, entry)


def recorded_specs(run_dir: Path) -> list[GridSpec]:
    """Every grid spec ``run_dir`` has served, oldest first (none where no grid ran there)."""
    store = RunStore(run_dir)
    return [_spec(store, entry) for entry in store.grids()]


def _spec(store: RunStore, entry: dict[str, Any]) -> GridSpec:
    spec, cwd = dict(entry["spec"]), entry.get("cwd")
    if spec.get("root") and cwd and not os.path.isabs(spec["root"]):
        spec["root"] = os.path.join(cwd, spec["root"])
    try:
        return GridSpec(**spec)
    except TypeError as exc:
        raise BenchError(f"{store.manifest_path}: not a grid spec this version of adshift-bench reads ({exc}); "
                         "run the grid's own command with --dry-run instead") from None


# what tells a table's cells apart, as rows hold it (the config aside: see missing_rows)
_KEY = ["method", "dataset", "domain", "category", "corruption", "severity", "seed", "protocol", "test_subset"]


def missing_rows(paths, rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Placeholder rows (status ``missing``, no metric) for the cells that the grids recorded in
    the run directories among ``paths`` name and that no row of ``rows`` holds (a cell not run
    yet, or a category the run never reached), so that a table marks a mean over fewer cells as
    it marks one over a failed cell, even where no method has the cell. A placeholder has no
    config: in a run directory that holds one method under several configs (another ``--set``
    into the same ``--out``) it counts for the method's first variant. Returns the placeholders
    and a warning per run directory whose cells cannot be listed (its dataset no longer there)."""
    have = set(_keys(rows)) if len(rows) else set()
    out: dict[tuple, dict[str, Any]] = {}
    said = []
    for path in map(Path, paths):
        if not path.is_dir():  # a rows.parquet: its rows are all it says
            continue
        try:
            axes = [(spec, spec.axes()) for spec in recorded_specs(path)]
        except BenchError as exc:
            said.append(f"{path}: the cells its grid names cannot be listed ({exc}); a mean that lacks a "
                        "cell no method has is not marked †")
            continue
        for spec, ax in axes:
            for m, d, cat, (c, s), seed in product(ax.methods, ax.domains, ax.categories, ax.conditions, spec.seeds):
                key = (m, ax.dataset, d, cat, c, s, seed, spec.protocol, spec.test_subset)
                if key not in have:
                    out.setdefault(key, dict(zip(_KEY, key), status=MISSING, preset=spec.preset))
    return pd.DataFrame(list(out.values()), columns=[*_KEY, "status", "preset"]), said


def _keys(rows: pd.DataFrame):
    """The rows' _KEY tuples, normalised as a GridSpec's cells name them."""
    def col(name: str, default: Any) -> pd.Series:
        return rows[name] if name in rows.columns else pd.Series([default] * len(rows), index=rows.index)

    clean = col("corruption", "") == CLEAN
    severity = pd.to_numeric(col("severity", 0), errors="coerce").fillna(0).astype(int).where(~clean, 0)
    domain = with_domain(rows)["domain"]
    subset = pd.to_numeric(col("test_subset", 0), errors="coerce").fillna(0).astype(int)
    seed = pd.to_numeric(col("seed", 0), errors="coerce").fillna(0).astype(int)
    return zip(col("method", ""), col("dataset", ""), domain, col("category", ""), col("corruption", ""),
               severity, seed, col("protocol", "native").fillna("native"), subset)


def with_missing_cells(rows: pd.DataFrame, paths) -> pd.DataFrame:
    """``rows`` and the placeholders of :func:`missing_rows`, its warnings said (one line each)."""
    from .methods.errors import warn

    placeholders, said = missing_rows(paths, rows)
    for line in said:
        warn(line)
    return pd.concat([rows, placeholders], ignore_index=True) if len(placeholders) else rows
