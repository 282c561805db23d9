"""``bench compare-methods RUN A B``: is A's metric different from B's beyond test-image noise?

A paired bootstrap over test images (``bench.stats.paired_test``): in every cell both methods ran
(same dataset, category, condition, seed and test images), the same resampled images score both
methods; the difference's percentile interval at the stated level decides significance (it
excludes 0). "overall" is the mean difference over those cells, every cell weighing the same,
the cells that share their test images (a category's conditions and seeds) resampled jointly,
since their errors are correlated. A method with several configs in the rows is compared on its
default config (said in the output), or refused when none is its default; a variant's label as
``bench table`` shows it ("patchcore (coreset_ratio 0.01)") selects that variant.
"""
from __future__ import annotations

import os
import warnings
from typing import Sequence

from .claims import one_config
from .errors import BenchError, BenchWarning
from .metrics import METRICS
from .results import load_runs
from .stats import check_level, check_resamples, paired_test, require_per_image, resampled_metrics
from .tables.aggregate import _resolve_labels, split_variants


def compare_text(runs: Sequence[str | os.PathLike], a: str, b: str, metric: str = "image_auroc",
                 resamples: int = 1000, level: float = 0.95, categories: Sequence[str] | None = None) -> str:
    if metric not in resampled_metrics():
        raise BenchError(f"--metric {metric}: the paired test resamples {', '.join(resampled_metrics())} only")
    check_level(level)
    check_resamples(resamples, "--resamples", none_ok=False)
    try:
        df = load_runs(runs)
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from None
    where = ", ".join(map(str, runs))
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    if categories:
        known = list(dict.fromkeys(df["category"].astype(str)))
        df = df[df["category"].isin(categories)]
        if df.empty:
            raise BenchError(f"--categories {','.join(categories)}: no ok rows of them in {where} "
                             f"(categories: {', '.join(known) or 'none'})")
    # a method's variants (configs, protocols, test subsets) by the labels bench table gives them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BenchWarning)  # the table's "shown as one row per variant"
        variant = split_variants(df, "method")["method"]
    methods = list(dict.fromkeys(df["method"]))
    present = methods + [v for v in dict.fromkeys(variant) if v not in methods]
    a, b = _resolve_labels([a, b], present) if a != b else (a, b)
    for m in (a, b):
        if m not in present:
            raise BenchError(f"no ok rows of method {m} in {where} (methods: {', '.join(present) or 'none'})")
    if a == b:
        raise BenchError(f"compare-methods: A and B are both {a}; give two methods")
    picked = []
    for m in (a, b):
        if m in methods:
            rows, note = one_config(df[df["method"] == m], m, str(df["dataset"].iloc[0]))
        else:  # one variant, named by its table label
            rows, note = df[variant == m], ""
        if rows.empty:
            raise BenchError(f"compare-methods ({where}): {note}; compare rows of one config (a run per config)")
        require_per_image(rows, f"compare-methods ({where}, {m})")
        picked.append((rows, note))
    (rows_a, note_a), (rows_b, note_b) = picked
    results = paired_test(rows_a, rows_b, resamples, level, metric)
    m = METRICS[metric]
    pct = f"{round(level * 100, 2):g} %"
    notes = "".join(f" Rows: {n}." for n in (note_a, note_b) if n)
    lines = [f"Paired bootstrap over test images: {m.text} (%) of A = {a} minus B = {b}; "
             f"{resamples} resamples, {pct} percentile intervals; significant when the interval excludes 0; "
             f"overall: the cells of one test image set (a category's conditions and seeds) resampled jointly."
             f"{notes}",
             "", f"| cell | images | A | B | A - B | {pct} interval | p | significant at {round((1 - level) * 100, 2):g} % |",
             "|:---|---:|---:|---:|---:|:---:|---:|:---:|"]
    for r in results:
        name = f"**overall** (mean of {len(results) - 1} cells)" if r.cell == "overall" else r.cell
        lines.append(f"| {name} | {r.n_images} | {100 * r.a:.2f} | {100 * r.b:.2f} | {100 * r.diff:+.2f} | "
                     f"[{100 * r.low:+.2f}, {100 * r.high:+.2f}] | {_p(r.p_value, resamples)} | "
                     f"{'yes' if r.significant else 'no'} |")
    return "\n".join(lines) + "\n"


def _p(p: float, resamples: int) -> str:
    """A two-sided bootstrap p-value of 0 means below its resolution 2 / resamples, not zero."""
    return f"< {2 / resamples:.3g}" if p == 0 else f"{p:.3f}"
