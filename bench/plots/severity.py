"""Severity curves (GNL Fig. 4): a metric vs corruption severity, one line per method (and test
domain, where the rows have several), one panel per corruption; the domain's clean value at
severity 0. A point is the mean over categories (the tables' averaging); with several seeds the
line is the mean over seeds and the band +- one std. Points are drawn where rows are; across
severities without rows (not run, or failed) a thin dotted segment, not a line, joins them (and the
std is an error bar per point, not a band across the gap)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import BenchError
from ..metrics import METRICS
from ..tables.names import _corruption_rank, _domain_rank, condition_label, domain_label
from .common import method_label, method_order, method_styles, ok_rows, one_config_each, pyplot, save, select

# A test domain's line style: the first (in-distribution) solid, the others dashed, with hollow markers.
DOMAIN_LINES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)))


def curves(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(method, domain, corruption, severity) -> mean, std over seeds (of the means over categories),
    n seeds. Domains stay apart: a clean point averaged over an ID and an OOD domain is neither."""
    keys = ["method", "domain", "corruption", "severity"]
    per_seed = df.groupby([*keys, "seed"], sort=False)[metric].mean()
    grouped = per_seed.groupby(level=keys, sort=False)
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0),
                         "seeds": grouped.count()}).reset_index()


def runs(x: Sequence[int]) -> list[slice]:
    """Index ranges of consecutive severities in sorted ``x`` (a gap: a severity without a row)."""
    cuts = [0, *(i for i in range(1, len(x)) if x[i] - x[i - 1] > 1), len(x)]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:])]


def plot(run: Path, out: Path, metric: str = "image_auroc", methods: Sequence[str] | None = None,
         categories: Sequence[str] | None = None) -> list[Path]:
    if metric not in METRICS:
        raise BenchError(f"--metric {metric}: not a metric (metrics: {', '.join(METRICS)})")
    df, note = one_config_each(select(ok_rows(run), run, methods, categories), run)
    df = df[pd.to_numeric(df[metric], errors="coerce").notna()] if metric in df.columns else df.iloc[0:0]
    corruptions = sorted({c for c in df["corruption"] if c != "clean"}, key=_corruption_rank)
    if not corruptions:
        raise BenchError(f"{run}: no corrupted rows with {metric}; severity curves need a grid with "
                         "--corruptions and --severities (e.g. --severities 1,2,3,4,5)")
    table = curves(df, metric)
    scale = METRICS[metric].scale
    order = method_order(df, methods)
    styles = method_styles(order)
    domains = sorted(set(df["domain"]), key=_domain_rank)
    plt = pyplot()
    cols = min(4, len(corruptions))
    rows = math.ceil(len(corruptions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.0, 3.0 * cols + 0.4), 2.6 * rows + 0.8), sharey=True,
                             squeeze=False, layout="constrained")
    n_seeds = int(df["seed"].nunique())
    gaps = False
    for k, corruption in enumerate(corruptions):
        ax = axes[k // cols][k % cols]
        for method in order:
            for d, domain in enumerate(domains):
                sub = table[(table["method"] == method) & (table["domain"] == domain)
                            & table["corruption"].isin([corruption, "clean"])].sort_values("severity")
                if (sub["corruption"] == corruption).sum() == 0:
                    continue
                label = method_label(method) + (f", {domain_label(domain)}" if len(domains) > 1 else "")
                line = {"color": styles[method]["color"], "marker": styles[method]["marker"], "ms": 3.5,
                        "mfc": "white" if d else styles[method]["color"]}
                gaps |= _curve(ax, sub["severity"].to_numpy(), sub["mean"].to_numpy() * scale,
                               sub["std"].to_numpy() * scale, line, DOMAIN_LINES[d % len(DOMAIN_LINES)], label,
                               n_seeds > 1)
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
    where = f"; test domain {domain_label(domains[0])}" if len(domains) == 1 and domains[0] else ""
    lines = [f"{METRICS[metric].text} vs severity",
             f"(mean over {n_cat} categor{'y' if n_cat == 1 else 'ies'}; {spread}{where})",
             *(["dotted: bridges severities without rows (not measured)"] if gaps else []),
             *([note] if note else [])]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), frameon=False)
    fig.suptitle("\n".join(lines), fontsize=9)
    return save(fig, out, f"severity_{metric}")


def _curve(ax, x: np.ndarray, y: np.ndarray, s: np.ndarray, line: dict, ls, label: str, spread: bool) -> bool:
    """One series: its domain's line over consecutive severities, a thin dotted segment across
    severities without rows; the spread over seeds as a band, or as error bars where a band would
    span such a gap. Returns whether it had a gap."""
    parts = runs(list(x))
    for n, part in enumerate(parts):
        ax.plot(x[part], y[part], ls=ls, lw=1.5, label=label if n == 0 else "_nolegend_", **line)
    for a, b in zip(parts, parts[1:]):
        ax.plot([x[a.stop - 1], x[b.start]], [y[a.stop - 1], y[b.start]], ls=":", lw=0.9, alpha=0.7,
                color=line["color"])
    if spread and len(parts) > 1:
        ax.errorbar(x, y, yerr=s, fmt="none", ecolor=line["color"], elinewidth=0.8, capsize=2, alpha=0.7)
    elif spread:
        ax.fill_between(x, y - s, y + s, color=line["color"], alpha=0.12, lw=0)
    return len(parts) > 1
