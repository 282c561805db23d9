"""Severity curves (GNL Fig. 4): a metric vs corruption severity, one line per method, one panel
per corruption; the clean value at severity 0. A point is the mean over categories (the tables'
averaging); with several seeds the line is the mean over seeds and the band +- one std."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import BenchError
from ..metrics import METRICS
from ..tables.names import _corruption_rank, condition_label
from .common import (method_label, method_order, ok_rows, pyplot, save, select, warn_mixed_configs)


def curves(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(method, corruption, severity) -> mean, std over seeds (of the means over categories), n seeds."""
    per_seed = df.groupby(["method", "corruption", "severity", "seed"], sort=False)[metric].mean()
    grouped = per_seed.groupby(level=["method", "corruption", "severity"], sort=False)
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0),
                         "seeds": grouped.count()}).reset_index()


def plot(run: Path, out: Path, metric: str = "image_auroc", methods: Sequence[str] | None = None,
         categories: Sequence[str] | None = None) -> list[Path]:
    if metric not in METRICS:
        raise BenchError(f"--metric {metric}: not a metric (metrics: {', '.join(METRICS)})")
    df = select(ok_rows(run), run, methods, categories)
    warn_mixed_configs(df, run)
    df = df[pd.to_numeric(df[metric], errors="coerce").notna()] if metric in df.columns else df.iloc[0:0]
    corruptions = sorted({c for c in df["corruption"] if c != "clean"}, key=_corruption_rank)
    if not corruptions:
        raise BenchError(f"{run}: no corrupted rows with {metric}; severity curves need a grid with "
                         "--corruptions and --severities (e.g. --severities 1,2,3,4,5)")
    table = curves(df, metric)
    scale = METRICS[metric].scale
    order = method_order(df, methods)
    plt = pyplot()
    cols = min(4, len(corruptions))
    rows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.0, 3.0 * cols + 0.4), 2.6 * rows + 0.8), sharey=True,
                             squeeze=False, layout="constrained")
    colors = plt.get_cmap("tab10")
    n_seeds = int(df["seed"].nunique())
    for k, corruption in enumerate(corruptions):
        ax = axes[k // cols][k % cols]
        for j, method in enumerate(order):
            sub = table[(table["method"] == method) & table["corruption"].isin([corruption, "clean"])]
            sub = sub.sort_values("severity")
            if sub.empty or (sub["corruption"] == corruption).sum() == 0:
                continue
            x, y, s = sub["severity"].to_numpy(), sub["mean"].to_numpy() * scale, sub["std"].to_numpy() * scale
            color = colors(j % 10)
            ax.plot(x, y, marker="o", ms=3.5, lw=1.5, color=color, label=method_label(method))
            if n_seeds > 1:
                ax.fill_between(x, y - s, y + s, color=color, alpha=0.12, lw=0)
        ax.set_title(condition_label(corruption))
        ax.set_xticks(range(0, 6))
        ax.set_xticklabels(["clean", "1", "2", "3", "4", "5"])
        ax.set_xlim(-0.3, 5.3)
        ax.set_xlabel("corruption severity")
        ax.grid(alpha=0.3, lw=0.5)
        if k % cols == 0:
            ax.set_ylabel(f"{METRICS[metric].text} (%)" if scale == 100 else METRICS[metric].text)
    for k in range(len(corruptions), rows * cols):
        axes[k // cols][k % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.flat:  # a method absent from the first panel still gets its legend entry
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    spread = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    n_cat = int(df["category"].nunique())
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), frameon=False)
    fig.suptitle(f"{METRICS[metric].text} vs severity\n(mean over {n_cat} "
                 f"categor{'y' if n_cat == 1 else 'ies'}; {spread})", fontsize=9)
    return save(fig, out, f"severity_{metric}")
