"""Aggregation: rows -> seed means per category -> the mean over categories, per table cell.

A value is the mean over seeds within a category, then the plain mean over categories (every
category weighs the same, as in the papers' "averaged over all classes"). Only rows with
``status == "ok"`` count; a mean over fewer categories than the dataset has in the rows is
marked partial (rendered with a dagger, never bold).
"""
from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import pandas as pd

from .. import papers
from ..errors import BenchWarning
from ..results import with_domain
from .names import (DATASET_NAMES, MEAN, METRIC_NAMES, _cond_labels, _condition_rank, _nice, is_reference,
                    method_display, method_rank)

class LostMasksWarning(BenchWarning):
    """Rows whose evaluation grid lost whole defect masks (``masks_lost``)."""


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    return df


def _norm_conditions(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with the columns of a condition normalised: severity 0 when clean, domain "" where
    a row has none (the dataset's own test split)."""
    df = with_domain(df)
    sev = df["severity"] if "severity" in df.columns else pd.Series(0, index=df.index)
    sev = pd.to_numeric(sev, errors="coerce").fillna(0).astype(int)
    df["severity"] = sev.where(df["corruption"] != "clean", 0)
    return df


def _select_conditions(conds: Iterable[tuple[str, str, int]], conditions) -> list[tuple[str, str, int]]:
    """The table's (domain, corruption, severity) columns, in order. ``conditions`` names them:
    a corruption or domain name (its every condition), a (corruption, severity) pair (in every
    domain that has it) or a (domain, corruption, severity) triple."""
    conds = sorted(dict.fromkeys(conds), key=_condition_rank)
    if conditions is None:
        return conds
    out: list[tuple[str, str, int]] = []
    for cond in conditions:
        if isinstance(cond, (tuple, list)):
            domain, corruption, severity = cond if len(cond) == 3 else (None, *cond)
            severity = 0 if corruption == "clean" else int(severity)
            if domain is None:
                want = [c for c in conds if c[1:] == (corruption, severity)] or [("", corruption, severity)]
            else:
                want = [(domain, corruption, severity)]
            # an explicit column is shown even when no row has it yet
        else:
            want = [c for c in conds if cond in (c[0], c[1])]
        out += [c for c in want if c not in out]
    return out


def _resolve_labels(wanted: Iterable[str], present: Iterable[str]) -> list[str]:
    """Map requested method names onto the row labels present ("PatchCore" -> "patchcore")."""
    present = list(dict.fromkeys(present))
    by_key = {papers.normalize_method(p): p for p in present}
    out = []
    for w in wanted:
        label = w if w in present else by_key.get(papers.normalize_method(w), w)
        if label not in out:
            out.append(label)
    return out


def _per_category(df, metrics, rows, datasets, methods, conditions, categories):
    """Seed-averaged values per (row label, dataset, domain, corruption, severity, category)."""
    missing = [c for c in [rows, "dataset", "category", "corruption", *metrics] if c not in df.columns]
    if missing:
        raise KeyError(f"result rows lack column(s) {missing}")
    df = _norm_conditions(df)
    if datasets is not None:
        df = df[df["dataset"].isin(list(datasets))]
    if categories is not None:
        df = df[df["category"].isin(list(categories))]
    # categories a dataset has in this run (any status): a mean over fewer is partial
    n_expected = df.groupby("dataset", sort=False)["category"].nunique().to_dict()
    ok = _ok_rows(df)
    if methods is not None:
        methods = _resolve_labels(methods, ok[rows])
        ok = ok[ok[rows].isin(methods)]
    _warn_rows(ok, rows)
    keys = [rows, "dataset", "domain", "corruption", "severity", "category"]
    data = ok[keys + list(metrics)].copy()
    for m in metrics:
        data[m] = pd.to_numeric(data[m], errors="coerce").astype(float)
    per_cat = data.groupby(keys, sort=False, dropna=False)[list(metrics)].mean().reset_index()

    row_order = [r for r in _row_order(ok, rows, methods) if r in set(per_cat[rows])]
    ds_order = list(datasets) if datasets is not None else list(dict.fromkeys(ok["dataset"]))
    ds_order = [d for d in ds_order if d in set(per_cat["dataset"])]
    cond_order = {
        ds: _select_conditions(
            zip(g["domain"], g["corruption"], g["severity"]), conditions
        )
        for ds, g in per_cat.groupby("dataset", sort=False)
    }
    return per_cat, n_expected, row_order, ds_order, cond_order, ok


def _warn_rows(ok: pd.DataFrame, rows: str) -> None:
    """What the table's ok rows hide: several configs averaged, defects the grid lost."""
    if rows == "method":
        several = mixed_configs(ok)
        if several:
            warnings.warn(
                f"rows of {several} mix several configs and are averaged together; "
                "filter the rows or pass rows=<a column that tells the variants apart>",
                BenchWarning, stacklevel=4,
            )
    lost = masks_lost(ok, rows)
    if lost:
        warnings.warn(
            f"defects outside the evaluation grid ({'; '.join(lost)}): the method never saw them, the "
            "images still count as anomalous and add no defect pixels (n_masks_lost, masks_lost in the rows)",
            LostMasksWarning, stacklevel=4,
        )


def _row_order(ok: pd.DataFrame, rows: str, methods) -> list:
    """``methods`` as given (already resolved to row labels), else the registry's order of the
    methods, then first appearance."""
    if methods is not None:
        return list(methods)
    seen = list(dict.fromkeys(ok[rows]))
    rank = method_rank() if rows == "method" else {}
    return sorted(seen, key=lambda m: (rank.get(m, float("inf")), seen.index(m)))


class _Grid:
    """Raw values, a partial-coverage mask, and where horizontal rules go (before row i).

    ``std``: the std over seeds shown as "± s" (NaN: not shown); ``low`` / ``high``: an interval
    shown as "[lo, hi]" (NaN: not shown); both unscaled, like ``values``."""

    def __init__(self, values: pd.DataFrame, partial: pd.DataFrame, corner: str, rules=(),
                 std: pd.DataFrame | None = None, low: pd.DataFrame | None = None,
                 high: pd.DataFrame | None = None):
        self.values = values
        self.partial = partial
        self.corner = corner
        self.rules = list(rules)
        self.std, self.low, self.high = std, low, high


def _build_main(df, metrics, rows, datasets, methods, conditions, categories, mean, display,
                std: bool = False, interval: int = 0, level: float = 0.95) -> _Grid:
    """``std``: add the std over seeds where the rows hold several seeds; ``interval``: add the
    bootstrap interval of each value at ``level`` from ``interval`` resamples (bench.stats)."""
    per_cat, n_expected, row_order, ds_order, cond_order, ok = _per_category(
        df, metrics, rows, datasets, methods, conditions, categories
    )
    spread = Spread(ok, rows, metrics) if (std or interval) else None
    gkeys = [rows, "dataset", "domain", "corruption", "severity"]
    grouped = per_cat.groupby(gkeys, sort=False)[list(metrics)]
    means, counts = grouped.mean(), grouped.count()

    multi_metric = len(metrics) > 1
    col_tuples, values, partial = [], {}, {}
    stds, lows, highs = {}, {}, {}
    col_pairs: dict = {}  # column -> the (dataset, conditions, metric) it averages
    for ds in ds_order:
        pairs = cond_order.get(ds, [])
        labels = _cond_labels(pairs)
        n_exp = n_expected.get(ds, 0)
        shifted_cols = {m: [] for m in metrics}
        for pair in pairs:
            for m in metrics:
                col = (ds, labels[pair]) + ((m,) if multi_metric else ())
                v, p = [], []
                for r in row_order:
                    key = (r, ds, *pair)
                    val = means[m].get(key, np.nan) if key in means.index else np.nan
                    cnt = counts[m].get(key, 0) if key in counts.index else 0
                    v.append(val)
                    p.append(bool(0 < cnt < n_exp))
                col_tuples.append(col)
                values[col], partial[col] = v, p
                col_pairs[col] = (ds, [pair], m)
                if not is_reference(ds, pair):
                    shifted_cols[m].append(col)
        if mean and len(shifted_cols[metrics[0]]) >= 2:
            for m in metrics:
                col = (ds, MEAN) + ((m,) if multi_metric else ())
                block = np.array([values[c] for c in shifted_cols[m]], dtype=float)
                # no mean over an incomplete set of conditions: it would not be comparable
                values[col] = list(block.mean(axis=0)) if block.size else []
                partial[col] = list(np.array([partial[c] for c in shifted_cols[m]]).any(axis=0))
                col_tuples.append(col)
                col_pairs[col] = (ds, [p for p in pairs if not is_reference(ds, p)], m)
    if spread is not None:
        for col, (ds, cond_pairs, m) in col_pairs.items():
            stds[col] = [spread.std(r, ds, cond_pairs, m) if std else np.nan for r in row_order]
            bounds = [spread.interval(r, ds, cond_pairs, m, interval, level) if interval else (np.nan, np.nan)
                      for r in row_order]
            lows[col], highs[col] = [b[0] for b in bounds], [b[1] for b in bounds]

    index = [(method_display(r) if display else r) for r in row_order]
    names = ["dataset", "condition"] + (["metric"] if multi_metric else [])
    disp_cols = [
        ((_nice(c[0], DATASET_NAMES) if display else c[0]), c[1])
        + ((_nice(c[2], METRIC_NAMES) if display else c[2],) if multi_metric else ())
        for c in col_tuples
    ]
    columns = pd.MultiIndex.from_tuples(disp_cols, names=names) if disp_cols else pd.MultiIndex.from_tuples([], names=names)
    vals = pd.DataFrame({i: values[c] for i, c in enumerate(col_tuples)}, index=index, dtype=float)
    part = pd.DataFrame({i: partial[c] for i, c in enumerate(col_tuples)}, index=index, dtype=bool)
    vals.columns = part.columns = columns
    vals.index.name = part.index.name = rows
    corner = "Method" if rows == "method" else rows.replace("_", " ").capitalize()
    extra = {}
    if spread is not None:
        for name, data in (("std", stds), ("low", lows), ("high", highs)):
            frame = pd.DataFrame({i: data[c] for i, c in enumerate(col_tuples)}, index=index, dtype=float)
            frame.columns, frame.index.name = columns, rows
            extra[name] = frame
    return _Grid(vals, part, corner, **extra)


def mixed_configs(rows: pd.DataFrame) -> list[str]:
    """Methods whose rows hold several configs (averaging them into one value would mislead)."""
    if "config_hash" not in rows.columns:
        return []
    n_cfg = rows.groupby("method", sort=False)["config_hash"].nunique()
    return list(n_cfg[n_cfg > 1].index)


def masks_lost(rows: pd.DataFrame, by: str = "method") -> list[str]:
    """"<method> on <category>: N of M" where a method's evaluation grid lost whole defect masks."""
    if "n_masks_lost" not in rows.columns:
        return []
    n = pd.to_numeric(rows["n_masks_lost"], errors="coerce").fillna(0)
    lost = rows[n > 0]
    out = []
    for (label, category), group in lost.groupby([by, "category"], sort=False):
        defects = ""
        labels = group["image_labels"].iloc[0] if "image_labels" in group.columns else None
        if isinstance(labels, (list, np.ndarray)):  # rows written before per-image columns: NaN
            defects = f" of {int(sum(1 for v in labels if v))}"
        out.append(f"{label} on {category}: {int(group['n_masks_lost'].max())}{defects}")
    return out


class Spread:
    """Std over seeds and bootstrap intervals of the main table's values, from its ok rows."""

    def __init__(self, ok: pd.DataFrame, rows: str, metrics) -> None:
        self.ok, self.rows = _norm_conditions(ok), rows
        keys = [rows, "dataset", "domain", "corruption", "severity", "seed"]
        data = self.ok[keys + list(metrics)].copy()
        for m in metrics:
            data[m] = pd.to_numeric(data[m], errors="coerce").astype(float)
        # per seed, the mean over categories (the table's value is their mean over seeds) and how
        # many categories it covers
        grouped = data.groupby(keys, sort=False)
        self.per_seed = grouped[list(metrics)].mean().sort_index()
        self.n_cats = grouped[list(metrics)].count().sort_index()
        # categories of each (row, dataset, condition) over all seeds: what a complete seed covers
        self.n_expected = self.ok.groupby([rows, "dataset", "domain", "corruption", "severity"])["category"].nunique()
        self.n_seeds = int(self.ok["seed"].nunique())

    def std(self, r, ds, pairs, metric) -> float:
        """Std over the seeds that cover every category of every condition of the value (a seed
        with a missing cell would mean something else); NaN below two such seeds."""
        if self.n_seeds < 2:  # the common one-seed run: no spread to compute
            return float("nan")
        try:
            means, counts = self.per_seed[metric].loc[(r, ds)], self.n_cats[metric].loc[(r, ds)]
        except KeyError:
            return float("nan")
        conds = list(zip(*(means.index.get_level_values(i) for i in range(3))))
        keep = np.array([c in pairs for c in conds])
        means, counts = means[keep], counts[keep]
        full = np.array([self.n_expected.get((r, ds, *c), 0) for c in zip(
            *(counts.index.get_level_values(i) for i in range(3)))])
        complete = means[counts.to_numpy() == full]
        per_seed = complete.groupby(level="seed")
        n_conds = per_seed.size()
        by_seed = per_seed.mean()[n_conds == len(pairs)]
        return float(by_seed.std(ddof=1)) if len(by_seed) > 1 else float("nan")

    def interval(self, r, ds, pairs, metric, resamples, level) -> tuple[float, float]:
        from .. import stats

        ok = self.ok
        sel = ok[(ok[self.rows] == r) & (ok["dataset"] == ds)
                 & pd.Series([c in pairs for c in zip(ok["domain"], ok["corruption"], ok["severity"])], index=ok.index)]
        return stats.mean_interval(sel, metric, resamples, level)


def _build_per_class(df, metric, rows, datasets, methods, conditions, categories, display) -> _Grid:
    per_cat, n_expected, row_order, ds_order, cond_order, _ = _per_category(
        df, [metric], rows, datasets, methods, conditions, categories
    )
    if len(ds_order) > 1:
        raise ValueError(
            f"per-class tables are per dataset; rows hold {ds_order}: pass datasets=[one of them]"
        )
    if not ds_order:
        return _Grid(pd.DataFrame(), pd.DataFrame(), "Category")
    ds = ds_order[0]
    pairs = cond_order[ds]
    labels = _cond_labels(pairs)
    cats = list(categories) if categories is not None else sorted(set(per_cat["category"]))
    cats = [c for c in cats if c in set(per_cat["category"])]
    n_exp = n_expected.get(ds, len(cats))
    table = per_cat.set_index([rows, "domain", "corruption", "severity", "category"])[metric]

    col_tuples, values, partial = [], {}, {}
    for pair in pairs:
        for r in row_order:
            col = (labels[pair], method_display(r) if display else r)
            v = [table.get((r, *pair, c), np.nan) for c in cats]
            arr = np.array(v, dtype=float)
            n = int(np.isfinite(arr).sum())
            values[col] = v + [arr[np.isfinite(arr)].mean() if n else np.nan]
            partial[col] = [False] * len(cats) + [bool(0 < n < n_exp)]
            col_tuples.append(col)
    index = cats + [MEAN]
    columns = pd.MultiIndex.from_tuples(col_tuples, names=["condition", rows])
    vals = pd.DataFrame({i: values[c] for i, c in enumerate(col_tuples)}, index=index, dtype=float)
    part = pd.DataFrame({i: partial[c] for i, c in enumerate(col_tuples)}, index=index, dtype=bool)
    vals.columns = part.columns = columns
    vals.index.name = part.index.name = "category"
    return _Grid(vals, part, "Category", rules=[len(cats)])


def _as_list(x) -> list | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)
