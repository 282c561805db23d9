"""The per-defect-type layout (MVTec AD's per-type tables): rows = (method, defect type), columns
= the main layout's (dataset, condition) and Mean, from the rows' ``defect_metrics`` breakdown.

Each defect type is the main layout on that type's values (``_build_main``): the mean over seeds
within a category, then over the categories that have the type (a type's mean over fewer of them
is partial); the std over seeds likewise. Bold marks the best method per type and column.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import BenchError, BenchWarning
from ..metrics import DEFECT_TYPE_METRICS
from ..results import DEFECT_METRICS, decode_defect_metrics
from ..results import with_domain
from .aggregate import (_BASE, _RANK, _Grid, _build_main, _norm_conditions, _ok_rows, _selected, _select_conditions,
                        _warn_rows, row_label, split_variants)

BY_DEFECT_TYPE = "defect_type"
_KEEP = ("dataset", "category", "domain", "corruption", "severity", "seed")


def require_breakdown(df: pd.DataFrame, where: str = "the result rows") -> None:
    """One line when no ok row carries the per-defect-type breakdown (rows of an older run)."""
    ok = _ok_rows(df)
    if DEFECT_METRICS not in ok.columns or not ok[DEFECT_METRICS].map(lambda t: isinstance(t, str) and t != "").any():
        raise BenchError(
            f"{where}: no per-defect-type metrics (column {DEFECT_METRICS}): the rows were written before "
            "the breakdown existed; rerun the grid with a new --out (a resumed run keeps its old rows) "
            "to get --by defect_type")


def defect_type_rows(df: pd.DataFrame, rows: str = "method") -> pd.DataFrame:
    """One row per (ok row, defect type of its breakdown): ``rows``, dataset, category, corruption,
    severity, seed, ``defect_type``, ``n`` and the breakdown's metrics. Rows without a breakdown
    are left out with a warning (none has one: :func:`require_breakdown`'s error)."""
    require_breakdown(df)
    ok = with_domain(_ok_rows(df))
    keep = [*_KEEP, *(c for c in (_BASE, _RANK) if c in ok.columns)]  # split_variants' labels
    decoded = ok[DEFECT_METRICS].map(decode_defect_metrics)
    missing = int(decoded.isna().sum())
    if missing:
        warnings.warn(f"{missing} of {len(ok)} ok rows have no per-defect-type metrics (written before "
                      f"{DEFECT_METRICS} existed); left out of the table: rerun their grid with a new --out",
                      BenchWarning, stacklevel=3)
    out = []
    for (_, row), breakdown in zip(ok.iterrows(), decoded):
        for name, values in (breakdown or {}).items():
            out.append({rows: row[rows], **{k: row[k] for k in keep}, "status": "ok", "defect_type": name,
                        "n": values.get("n"), **{m: values.get(m, np.nan) for m in DEFECT_TYPE_METRICS}})
    columns = [rows, *keep, "status", "defect_type", "n", *DEFECT_TYPE_METRICS]
    return pd.DataFrame(out, columns=columns)


def _build_by_type(df, metric, rows, datasets, methods, conditions, categories, mean, display,
                   std: bool = False) -> _Grid:
    """The grid: index (row label, defect type), one block of rows per row label."""
    if metric not in DEFECT_TYPE_METRICS:
        raise ValueError(f"--by {BY_DEFECT_TYPE} shows one of {', '.join(DEFECT_TYPE_METRICS)}, not {metric}")
    df = split_variants(df, rows)  # once, here: the long rows below carry the split, not the configs
    _warn_failed(df, rows, methods)
    ok = _ok_rows(df)
    _warn_rows(ok, rows)  # once: the long rows below carry no lost masks
    long = _norm_conditions(defect_type_rows(df, rows))
    if datasets is not None:
        long = long[long["dataset"].isin(list(datasets))]
    if categories is not None:
        long = long[long["category"].isin(list(categories))]
    order = _selected(long, rows, methods)
    # every type gets the same columns: the conditions of all its rows
    pairs = _select_conditions(zip(long["domain"], long["corruption"], long["severity"]), conditions)
    blocks = {}
    for name in sorted(set(long["defect_type"])):
        sub = long[long["defect_type"] == name]  # a category without the type is not expected
        blocks[name] = _build_main(sub, [metric], rows, datasets, order, pairs, None, mean, display, std=std)
    frames = {k: [] for k in ("values", "partial", "std")}
    index = []
    base = dict(zip(long[rows], long[_BASE]))
    for r in order:
        label = row_label(r, base[r], display)  # as _build_main labels its rows
        for name, grid in blocks.items():
            if label not in grid.values.index:
                continue
            index.append((label, name))
            for k in frames:
                part = getattr(grid, k)
                frames[k].append(None if part is None else part.loc[[label]])
    if not index:
        return _Grid(pd.DataFrame(), pd.DataFrame(), "Method")
    names = [rows, "defect type"]
    vals = _stack(frames["values"], index, names, float)
    part = _stack(frames["partial"], index, names, bool, vals.columns).fillna(False).astype(bool)
    spread = _stack(frames["std"], index, names, float, vals.columns) if all(
        f is not None for f in frames["std"]) else None
    rules = [i for i in range(1, len(index)) if index[i][0] != index[i - 1][0]]
    corner = ("Method" if rows == "method" else rows.replace("_", " ").capitalize()) + " / Defect type"
    return _Grid(vals, part, corner, rules=rules, std=spread)


def _warn_failed(df: pd.DataFrame, rows: str, methods) -> None:
    """Failed cells have no breakdown: a row whose every cell failed is named, not just left out."""
    if "status" not in df.columns:
        return
    sel = df[df[rows].isin(_selected(df, rows, methods))]
    status = sel.assign(ok=sel["status"] == "ok", failed=sel["status"] == "failed").groupby(sel[rows], sort=False)
    counts = status.agg(any_ok=("ok", "any"), n=("failed", "sum"))
    gone = [f"{r} ({n} cells)" for r, (any_ok, n) in counts.iterrows() if not any_ok and n]
    if gone:
        warnings.warn(f"every cell failed of {', '.join(gone)}: no per-defect-type values, left out of this "
                      "table (bench table without --by shows them as failed)", BenchWarning, stacklevel=4)


def type_groups(frame: pd.DataFrame) -> list[tuple[list[int], list[int]]]:
    """Bold groups of the layout: the rows of one defect type, per column."""
    types = list(frame.index.get_level_values(-1))
    rows_of = {t: [i for i, x in enumerate(types) if x == t] for t in dict.fromkeys(types)}
    return [(idx, [j]) for idx in rows_of.values() for j in range(frame.shape[1])]


def flat_labels(grid: _Grid) -> _Grid:
    """The grid with "PatchCore / crack" row labels, as the renderers print one label per row."""
    def flat(frame):
        if frame is None:
            return None
        frame = frame.copy()
        frame.index = [" / ".join(map(str, i)) for i in frame.index]
        return frame

    return _Grid(flat(grid.values), flat(grid.partial), grid.corner, grid.rules, std=flat(grid.std))


def _stack(parts, index, names, dtype, columns=None) -> pd.DataFrame:
    frame = pd.concat([p.reset_index(drop=True) for p in parts], ignore_index=True, sort=False)
    if columns is not None:
        frame = frame.reindex(columns=columns)
    frame.index = pd.MultiIndex.from_tuples(index, names=names)
    return frame.astype(dtype) if dtype is float else frame
