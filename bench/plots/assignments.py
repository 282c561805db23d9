"""TTAD Fig. 5: how many optimal-transport assignments went to anomalous target patches, per
reading of TTAD (assignment rule) and target augmentation, per condition.

An assignment is a bank item's strongest target patch in the last adaptation epoch; it is
anomalous when at least half of the patch lies in a ground-truth defect (``diag_ot_colmax_*``,
counted by the runner). A bar is the sum over the run's categories (the mean over seeds, +- one
std, when there are several); its label gives the share of all assignments, as the paper's
"123 (5.89 %)".
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import BenchError
from ..results import with_domain
from .common import cond_label, conditions_of, config_variants, method_order, ok_rows, pyplot, save, select, style

IN_MASK, TOTAL = "diag_ot_colmax_in_mask", "diag_ot_colmax_total"


def counts(df: pd.DataFrame) -> pd.DataFrame:
    """(series, domain, corruption, severity) -> mean and std over seeds of the per-seed sums over
    categories (test domains apart, as the bars are)."""
    keys = ["series", "domain", "corruption", "severity"]
    per_seed = with_domain(df).groupby([*keys, "seed"], sort=False)[[IN_MASK, TOTAL]].sum()
    g = per_seed.groupby(level=keys, sort=False)
    out = g.mean()
    out["std"] = g[IN_MASK].std(ddof=1).fillna(0.0)
    out["seeds"] = g[IN_MASK].count()
    return out.reset_index()


MAX_AXES_WIDTH = 11.0  # inches: a landscape page


def plot(run: Path, out: Path, methods: Sequence[str] | None = None,
         categories: Sequence[str] | None = None, conditions: Sequence[str] | None = None) -> list[Path]:
    df = select(ok_rows(run), run, methods, categories)
    if IN_MASK not in df.columns or TOTAL not in df.columns or df[IN_MASK].notna().sum() == 0:
        raise BenchError(f"{run}: no rows with OT assignment counts ({IN_MASK}); they come from TTAD and its "
                         "Table 4 OT variants (ttad, ot_discrete, ot_discrete_copy, ot_discrete_augment) "
                         "on a dataset with masks")
    df = df[df[IN_MASK].notna() & df[TOTAL].notna()].copy()
    # one bar series per (method, config): the readings of an ablation are told apart, not summed
    df["series"], labels = config_variants(df, shown=("assignment", "augment"))
    table = counts(df)
    order = [k for m in method_order(df, methods) for k in dict.fromkeys(df.loc[df["method"] == m, "series"])]
    conds = conditions_of(df, conditions, run, with_clean=True)
    plt = pyplot()
    width = 0.8 / len(order)
    legend_lines = sum(labels[k].count("\n") + 1.5 for k in order)  # the legend beside the axes fits their height
    # a page's width at most (an ablation's 11 series x 5 conditions asked for 45 in); narrow bars
    # get their labels turned upright
    axes_width = min(MAX_AXES_WIDTH, max(3.0, 1.3 * len(conds) * max(1.0, 0.6 * len(order))))
    upright = axes_width * width / (len(conds) + 0.2) < 0.3  # inches per bar
    fig, ax = plt.subplots(figsize=(axes_width + 2.2, max(3.6, 0.12 * legend_lines + 0.8)), layout="constrained")
    n_seeds = int(df["seed"].nunique())
    top = 0.0
    for j, method in enumerate(order):
        xs, ys, es, shares = [], [], [], []
        for k, cond in enumerate(conds):
            row = table[(table["series"] == method) & (table["domain"] == cond[0]) & (table["corruption"] == cond[1])
                        & (table["severity"] == cond[2])]
            if row.empty:
                continue
            xs.append(k - 0.4 + width * (j + 0.5))
            ys.append(float(row[IN_MASK].iloc[0]))
            es.append(float(row["std"].iloc[0]))
            total = float(row[TOTAL].iloc[0])
            shares.append(100.0 * ys[-1] / total if total > 0 else np.nan)
        es = np.array(es) if n_seeds > 1 else np.zeros(len(ys))
        # a count is never negative: the lower whisker stops at 0
        yerr = np.vstack([np.minimum(es, ys), es]) if n_seeds > 1 else None
        look = style(j)
        bars = ax.bar(xs, ys, width * 0.92, yerr=yerr, capsize=2, color=look["color"], hatch=look["hatch"] or None,
                      edgecolor="white" if look["hatch"] else None, label=labels[method])
        top = max([top, *(np.asarray(ys) + es)])
        for bar, y, e, share in zip(bars, ys, es, shares):
            count = f"{y:.0f}" if float(y).is_integer() else f"{y:.1f}"  # a mean over seeds
            ax.annotate(f"{count}{' ' if upright else chr(10)}({share:.1f}%)", (bar.get_x() + bar.get_width() / 2, y + e),
                        ha="center", va="bottom", fontsize=6, xytext=(0, 1), textcoords="offset points",
                        rotation=90 if upright else 0)
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels([cond_label(*c).replace(" (", "\n(") for c in conds])
    ax.set_ylim(0, (1.45 if upright else 1.25) * top if top > 0 else 1.0)  # room for the labels above the bars
    ax.set_ylabel("OT assignments to\nanomalous patches (count)")
    ax.grid(axis="y", alpha=0.3, lw=0.5)
    spread = f"; mean ± std over {n_seeds} seeds" if n_seeds > 1 else ""
    n_cat = int(df["category"].nunique())
    ax.set_title(f"OT assignments to anomalous patches, last adaptation epoch\n(sum over {n_cat} "
                 f"categor{'y' if n_cat == 1 else 'ies'}{spread};\nlabel: count (share of all assignments))",
                 fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
    return save(fig, out, "ot_assignments")
