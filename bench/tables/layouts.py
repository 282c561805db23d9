"""The layouts: TTAD Table 1 (methods x dataset / condition [/ metric], with a Mean column) and
the per-class appendix layout (categories x condition / method)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .aggregate import _as_list, _build_main, _build_per_class
from .render import _defaults, _render

def table_frame(
    df: pd.DataFrame,
    metric: str | Sequence[str] = "image_auroc",
    per_class: bool = False,
    *,
    rows: str = "method",
    datasets: Sequence[str] | str | None = None,
    methods: Sequence[str] | None = None,
    conditions: Sequence | None = None,
    categories: Sequence[str] | None = None,
    mean: bool = True,
    display: bool = True,
) -> pd.DataFrame:
    """The numbers behind :func:`main_table` (unscaled means; NaN where missing)."""
    metrics = _as_list(metric)
    if per_class:
        if len(metrics) != 1:
            raise ValueError("per-class tables take one metric")
        return _build_per_class(df, metrics[0], rows, _as_list(datasets), methods, conditions,
                                categories, display).values
    return _build_main(df, metrics, rows, _as_list(datasets), methods, conditions, categories,
                       mean, display).values


def main_table(
    df: pd.DataFrame,
    metric: str | Sequence[str] = "image_auroc",
    fmt: str = "latex",
    per_class: bool = False,
    scale: float | None = None,
    decimals: int = 2,
    *,
    rows: str = "method",
    datasets: Sequence[str] | str | None = None,
    methods: Sequence[str] | None = None,
    conditions: Sequence | None = None,
    categories: Sequence[str] | None = None,
    mean: bool = True,
    best: str | None = "auto",
    display: bool = True,
    caption: str | None = None,
    label: str | None = None,
    column_format: str | None = None,
    std: bool = True,
    interval: int = 0,
    level: float = 0.95,
) -> str:
    """Render result rows as a LaTeX (booktabs) or Markdown table.

    Default layout (TTAD Table 1): rows = methods (``rows`` names another column to use, e.g. a
    variant column for ablations), columns = (dataset, condition[, metric]) with condition
    "Clean" or the corruption's name ("Contrast (s3)" when one dataset holds several severities
    of it), plus per dataset a "Mean" column: the mean over the corrupted conditions only, Clean
    excluded (shown when there are at least two). Several metrics (``metric=[...]``) give one
    sub-column each (TTAD Table 4).

    ``per_class=True``: the appendix layout for one dataset; rows = categories and a final
    "Mean" row, columns = (condition, method); bold marks the best method per row and block.

    ``scale`` defaults to 100 for the [0, 1] metrics and 1 otherwise; ``best`` is "max",
    "min", None (no bold) or "auto" (min for *_seconds / *_mb columns). ``methods`` both
    selects and orders rows (default: first appearance); ``conditions`` selects and orders
    columns: corruption names (all severities) or (corruption, severity) pairs.
    Missing values render as "–" (Markdown) / "--" (LaTeX).

    ``std``: where a value averages several seeds, "± std over seeds" follows it (the std of the
    per-seed means over categories). ``interval`` (resamples, 0 = none): the bootstrap interval
    at ``level`` of each value over test images, "[lo, hi]" (``bench.stats.mean_interval``; image
    AUROC only, from the rows' per-image scores). Main layout only.
    """
    metrics = _as_list(metric)
    scale, direction = _defaults(metrics, scale, best)
    datasets = _as_list(datasets)
    if per_class:
        if len(metrics) != 1:
            raise ValueError("per-class tables take one metric")
        if interval:
            raise ValueError("intervals are shown in the main layout only, not with per_class")
        grid = _build_per_class(df, metrics[0], rows, datasets, methods, conditions, categories, display)

        def groups(frame):  # per row, within each condition block
            cond = [c[0] for c in frame.columns]
            blocks = [[j for j, c in enumerate(cond) if c == k] for k in dict.fromkeys(cond)]
            return [([i], b) for i in range(frame.shape[0]) for b in blocks]
    else:
        grid = _build_main(df, metrics, rows, datasets, methods, conditions, categories, mean, display,
                           std=std, interval=interval, level=level)

        def groups(frame):  # per column
            return [(list(range(frame.shape[0])), [j]) for j in range(frame.shape[1])]

    if grid.values.empty:
        raise ValueError("no ok rows match the selection; nothing to tabulate")
    return _render(grid, fmt, scale, decimals, direction, groups, caption, label, column_format)
