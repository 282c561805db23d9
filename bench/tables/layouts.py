"""The layouts: TTAD Table 1 (methods x dataset / condition [/ metric], with a Mean column) and
the per-class appendix layout (categories x condition / method)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from .aggregate import _as_list, _build_main, _build_per_class
from .defects import BY_DEFECT_TYPE, _build_by_type, flat_labels, type_groups
from .render import _defaults, _render


def _check_by(by: str | None, metrics: list[str], per_class: bool, interval: int = 0) -> None:
    if by is None:
        return
    if by != BY_DEFECT_TYPE:
        raise ValueError(f"by={by!r}: the only breakdown is {BY_DEFECT_TYPE!r}")
    if len(metrics) != 1 or per_class or interval:
        raise ValueError(f"by={BY_DEFECT_TYPE!r} takes one metric, in the main layout, without intervals")


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
    by: str | None = None,
) -> pd.DataFrame:
    """The numbers behind :func:`main_table` (unscaled means; NaN where missing)."""
    metrics = _as_list(metric)
    _check_by(by, metrics, per_class)
    if by is not None:
        return _build_by_type(df, metrics[0], rows, _as_list(datasets), methods, conditions, categories,
                              mean, display).values
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
    by: str | None = None,
    relative: str | None = None,
    severity_mean: bool = False,
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
    columns: corruption names (all severities) or (corruption, severity) pairs; with test domains
    (rows' ``domain``) also domain names (all of a domain's conditions), pairs match every domain
    and (domain, corruption, severity) triples name one column. A domain's column is labelled with
    its published name ("MNIST-M", "Art"; "Art + Contrast" when corrupted); Mean leaves out the
    in-distribution domain's clean column as it leaves out Clean.
    Missing values render as "–" (Markdown) / "--" (LaTeX), values whose every cell failed as
    "failed"; a partial value (it lacks a category, or a (category, seed), that the run has for
    its column) gets a dagger and no bold; a note under the table says what the marks shown mean.
    A method whose rows differ in config, protocol or test subset (``aggregate.VARIANT``) gets one
    row per variant, labelled by what differs ("PatchCore (coreset_ratio 0.01)"); ``methods``
    naming the method selects all of them, its row label one.

    ``std``: where a value averages several seeds, "± std over seeds" follows it (the std of the
    per-seed means over categories). ``interval`` (resamples, 0 = none): the bootstrap interval
    at ``level`` of each value over test images, "[lo, hi]" (``bench.stats.mean_interval``; image
    AUROC only, from the rows' per-image scores). Main layout only.

    ``by="defect_type"``: rows = (method, defect type) from the rows' per-defect-type breakdown
    (``defect_metrics``; one of image_auroc, pixel_auroc, aupro), columns as the main layout;
    bold marks the best method per defect type and column (``bench.tables.defects``).

    ``relative``: differences instead of values (``bench.tables.relative``), each shifted value
    minus the method's own clean one (``"clean"``: what the shift costs), or each method minus the
    named method (e.g. ``"patchcore"``: what adaptation wins back, that row unbold); a note under
    the table says which. Main and per-class layouts.

    ``severity_mean``: one column per corruption, its value the mean over the corruption's
    severities per category and seed (``bench.tables.severities``: a cell missing one of them
    gives no value); a note under the table names the severities. Main and per-class layouts;
    with ``relative``, the differences are taken from these means.
    """
    metrics = _as_list(metric)
    notes: list[str] = []
    if severity_mean:
        if by is not None or interval:
            raise ValueError("severity means take the main or per-class layout, without intervals")
        from .severities import severity_means

        df, note = severity_means(df, metrics)
        notes += [note] if note else []
    if relative is not None:
        if by is not None or interval:
            raise ValueError("relative tables take the main or per-class layout, without intervals")
        from .relative import CLEAN, relative_rows

        df, note = relative_rows(df, metrics, relative)
        notes.append(note)
        if relative != CLEAN:  # a value and differences in one column: no best to mark
            best = None
    scale, direction = _defaults(metrics, scale, best)
    datasets = _as_list(datasets)
    _check_by(by, metrics, per_class, interval)
    if by is not None:
        grid = _build_by_type(df, metrics[0], rows, datasets, methods, conditions, categories, mean, display,
                              std=std)
        if grid.values.empty:
            raise ValueError("no ok rows match the selection; nothing to tabulate")
        groups = type_groups(grid.values)
        return _render(flat_labels(grid), fmt, scale, decimals, direction, lambda _: groups, caption, label,
                       column_format)
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
    return _render(grid, fmt, scale, decimals, direction, groups, caption, label, column_format, notes)
