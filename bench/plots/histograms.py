"""Score histograms (GNL Fig. 2): image scores of the normal and the anomalous test images, one
panel per method (rows) and condition (columns; one per test domain and condition where the rows
have several domains), for one category and seed. Overlapping
histograms are what a low image AUROC looks like; a shift of both under a corruption is what
breaks a threshold chosen on clean images."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BenchError
from ..metrics import image_auroc
from ..stats import require_per_image
from .common import (at, cond_label, conditions_of, method_label, method_order, ok_rows, one_category_seed,
                     one_config_each, pyplot, save, select)


def plot(run: Path, out: Path, methods: Sequence[str] | None = None, category: str | None = None,
         seed: int | None = None, conditions: Sequence[str] | None = None, bins: int = 20) -> list[Path]:
    if not 1 <= bins <= 1000:  # past a figure's pixels, bins only cost time (10^8 took minutes)
        raise BenchError(f"--bins {bins}: use 1 to 1000")
    df = select(ok_rows(run), run, methods, [category] if category else None,
                [seed] if seed is not None else None)
    df, category, seed = one_category_seed(df, category, seed)
    df, note = one_config_each(df, run)
    require_per_image(df, f"{run}: score histograms")
    conds = conditions_of(df, conditions, run, with_clean=True)
    order = method_order(df, methods)
    plt = pyplot()
    fig, axes = plt.subplots(len(order), len(conds), figsize=(max(4.0, 2.5 * len(conds) + 0.5), 1.9 * len(order) + 0.9),
                             squeeze=False, layout="constrained")
    for i, method in enumerate(order):
        for j, cond in enumerate(conds):
            ax = axes[i][j]
            row = at(df, method, cond)
            if row.empty:
                ax.text(0.5, 0.5, "no row", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            labels = np.asarray(row["image_labels"].iloc[-1], dtype=int)
            scores = np.asarray(row["image_scores"].iloc[-1], dtype=float)
            bad = int((~np.isfinite(scores)).sum())
            if bad:  # no bin edges span an inf; a NaN has no bin
                plt.close(fig)
                raise BenchError(f"{run}: cell {row['cell_id'].iloc[-1]}: {bad} of {len(scores)} image scores are "
                                 "not finite (inf or NaN), which a histogram cannot show; leave it out with "
                                 "--methods or --conditions")
            edges = np.histogram_bin_edges(scores, bins=bins)
            ax.hist(scores[labels == 0], bins=edges, color="tab:blue", alpha=0.6, label="normal")
            ax.hist(scores[labels == 1], bins=edges, color="tab:red", alpha=0.6, label="anomalous")
            auroc = image_auroc(labels, scores)
            ax.text(0.98, 0.95, f"AUROC {100 * auroc:.1f}%", ha="right", va="top", fontsize=7,
                    transform=ax.transAxes, bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1})
            ax.yaxis.get_major_locator().set_params(integer=True)  # counts of images
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(cond_label(*cond))
            if j == 0:
                ax.set_ylabel(f"{method_label(method)}\ntest images")
            if i == len(order) - 1:
                ax.set_xlabel("image anomaly score (method's units)")
    handles, labels = [], []
    for ax in axes.flat:  # the first panel that has data gives the legend
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            break
    if not handles:
        raise BenchError(f"{run}: no rows of {category} seed {seed} for the chosen methods and conditions")
    fig.legend(handles, labels, loc="outside lower center", ncol=2, frameon=False)
    fig.suptitle(f"Image scores of normal vs anomalous test images\n{category}, seed {seed}"
                 + (f"\n{note}" if note else ""), fontsize=9)
    return save(fig, out, f"histograms_{category}_seed{seed}")
