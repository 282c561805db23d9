"""Tables over several severities (``bench table --severity-mean``): one column per corruption, its
value the mean over the corruption's severities, as ImageNet-C reports a corruption.

The mean is taken per cell before anything else is averaged: for each method variant, dataset,
test domain, category, seed and corruption, the mean of the metric over the severities the rows
hold of that corruption in that dataset and domain. A cell that lacks one of those severities,
or whose row at one of them failed or has no value, gives no value: its column is marked
partial, as for any missing cell, rather than averaging the severities it happens to have (a
mean over the mild ones only would flatter a method). The table's mean over categories and
seeds, its ± std over seeds and its Mean column are then taken as usual.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..datasets.corruptions import CLEAN
from .aggregate import VARIANT, _variant_values, cell_frame


def severity_means(df: pd.DataFrame, metrics: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """``df`` with each corruption's rows of one cell (all severities) replaced by one row holding
    their mean (NaN where a severity is missing, failed or NaN), and the note that says so."""
    metrics = list(metrics)
    df = cell_frame(df, metrics)
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    shifted = df["corruption"] != CLEAN
    clean, rows = df[~shifted], df[shifted].copy()
    if rows.empty:
        return df, ""
    column = ["dataset", "domain", "corruption"]
    levels = rows.groupby(column, sort=False)["severity"].agg(lambda s: tuple(sorted(set(s))))
    ident = pd.DataFrame({c: _variant_values(rows, "method", c) for c in VARIANT}, index=rows.index)
    rows["_cell"] = pd.concat([rows[["method", *column, "category", "seed"]], ident],
                              axis=1).astype(str).agg("\x1f".join, axis=1)
    ok = status[rows.index] == "ok"
    rows[metrics] = rows[metrics].where(ok, axis=0)  # a failed row's severity has no value
    # per cell and severity (several rows only where runs were merged: their mean), then per cell
    by_cell = rows.groupby(["_cell", "severity"], sort=False)[metrics].mean().groupby(level="_cell", sort=False)
    out = rows.drop_duplicates("_cell").set_index("_cell")
    wanted = [levels[tuple(r)] for r in out[column].itertuples(index=False)]  # each cell's column's severities
    whole = by_cell.count().reindex(out.index).eq([len(w) for w in wanted], axis=0)  # all have a value, per metric
    out[metrics] = by_cell.mean().reindex(out.index).where(whole)
    out["severity"] = [max(w) for w in wanted]  # one severity per corruption: the column has no "(s3)"
    if "status" in out.columns:  # ok where a severity is (NaN if not whole); "failed" where none is and one failed
        any_ok = ok.groupby(rows["_cell"]).any().reindex(out.index)
        any_failed = (status[rows.index] == "failed").groupby(rows["_cell"]).any().reindex(out.index)
        out["status"] = np.where(any_ok, "ok", np.where(any_failed, "failed", "missing"))
    out = out.reset_index(drop=True)
    spans = sorted(set(levels))
    said = "; ".join(_span(s) for s in spans)
    note = ("Each corruption's value is the mean over its severities "
            f"({said}) on the same category and seed; a cell missing one of them gives no value.")
    return pd.concat([clean, out], ignore_index=True), note


def _span(levels: tuple[int, ...]) -> str:
    if len(levels) > 2 and list(levels) == list(range(levels[0], levels[-1] + 1)):
        return f"{levels[0]}-{levels[-1]}"
    return ", ".join(map(str, levels))
