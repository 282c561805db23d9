"""Our rows next to the papers' published numbers: a paper's table layout, and the comparison."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import papers
from .aggregate import _Grid, _as_list, _ok_rows, _per_category
from .layouts import main_table
from .names import DATASET_NAMES, METRIC_NAMES, _cond_labels, _nice
from .render import _NA, _to_latex, _to_markdown

def _match_rows(ours: Iterable[str], published_methods: Iterable[str], method_map) -> dict[str, str]:
    """published method name -> our row label."""
    ours = list(dict.fromkeys(ours))
    by_key = {papers.normalize_method(o): o for o in ours}
    method_map = {papers.normalize_method(k): v for k, v in (method_map or {}).items()}
    out = {}
    for pub in published_methods:
        key = papers.normalize_method(pub)
        if key in method_map:
            if method_map[key] in ours:
                out[pub] = method_map[key]
        elif key in by_key:
            out[pub] = by_key[key]
    return out


def paper_table(
    df: pd.DataFrame,
    paper: str = "ttad",
    table: int = 1,
    fmt: str = "latex",
    *,
    rows: str = "method",
    method_map: Mapping[str, str] | None = None,
    mean: bool = False,
    **kwargs,
) -> str:
    """Our rows in the layout of a published table: its metrics, datasets, conditions
    (corruption and severity) and method order. Methods the paper lacks come last."""
    lay = papers.layout(paper, table)
    ok = _ok_rows(df)
    ours = list(dict.fromkeys(ok[rows])) if rows in ok.columns else []
    matched = _match_rows(ours, lay["methods"], method_map)
    order = [matched[p] for p in lay["methods"] if p in matched]
    order += [o for o in ours if o not in order]
    metric = lay["metrics"] if len(lay["metrics"]) > 1 else lay["metrics"][0]
    return main_table(
        df, metric=metric, fmt=fmt, rows=rows, datasets=lay["datasets"],
        methods=kwargs.pop("methods", order), conditions=kwargs.pop("conditions", lay["conditions"]),
        mean=mean, **kwargs,
    )


def compare_published(
    df: pd.DataFrame,
    paper: str = "ttad",
    table: int = 1,
    metric: str | Sequence[str] | None = None,
    *,
    rows: str = "method",
    method_map: Mapping[str, str] | None = None,
    scale: float = 100,
    decimals: int = 2,
    only_ours: bool = True,
    fmt: str | None = None,
    caption: str | None = None,
    label: str | None = None,
) -> pd.DataFrame | str:
    """Our means next to a paper's published numbers for the same method and condition.

    Returns a long DataFrame (dataset, method, ours_method, corruption, severity, metric,
    published, ours, delta, n_categories), or with ``fmt`` a table whose cells read
    "ours (published)". Methods match case-insensitively, ignoring "-", "_" and spaces;
    ``method_map`` maps a published name to our row label where that is not enough (e.g.
    TTAD Table 4's "ot_discrete_augment" to a variant label). ``only_ours`` keeps only the
    published methods we have rows for.
    """
    metrics = _as_list(metric)
    pub = papers.published(paper=paper, table=table)
    if metrics is not None:
        pub = pub[pub["metric"].isin(metrics)]
    if pub.empty:
        raise KeyError(f"no published numbers for {paper!r} table {table} metric {metric!r}")
    metrics = list(dict.fromkeys(pub["metric"]))

    have = [m for m in metrics if m in df.columns]
    if have and rows in df.columns and len(_ok_rows(df)):
        per_cat, n_expected, *_ = _per_category(df, have, rows, None, None, None, None)
        keys = [rows, "dataset", "corruption", "severity"]
        g = per_cat.groupby(keys, sort=False)[have]
        means = g.mean().reset_index().melt(id_vars=keys, var_name="metric", value_name="ours")
        counts = g.count().reset_index().melt(id_vars=keys, var_name="metric", value_name="n_categories")
        ours = means.merge(counts, on=keys + ["metric"]).rename(columns={rows: "ours_method"})
        ours["ours"] = ours["ours"] * scale
        ours_labels = list(dict.fromkeys(ours["ours_method"]))
    else:
        ours = pd.DataFrame(columns=["ours_method", "dataset", "corruption", "severity", "metric", "ours", "n_categories"])
        ours_labels = []

    matched = _match_rows(ours_labels, list(dict.fromkeys(pub["method"])), method_map)
    pub = pub.assign(ours_method=pub["method"].map(matched))
    if only_ours:
        pub = pub[pub["ours_method"].notna()]
    out = pub.merge(ours, how="left", on=["ours_method", "dataset", "corruption", "severity", "metric"])
    out = out.rename(columns={"value": "published"})
    out["ours"] = pd.to_numeric(out["ours"], errors="coerce").astype(float)
    out["delta"] = out["ours"] - out["published"]
    out["n_categories"] = pd.to_numeric(out["n_categories"], errors="coerce").astype("Int64")
    out = out[["dataset", "method", "ours_method", "corruption", "severity", "metric",
               "published", "ours", "delta", "n_categories"]].reset_index(drop=True)
    if fmt is None:
        return out
    return _render_comparison(out, fmt, decimals, caption, label)


def _render_comparison(out: pd.DataFrame, fmt: str, decimals: int, caption, label) -> str:
    if fmt not in ("latex", "markdown"):
        raise ValueError(f"fmt must be 'latex' or 'markdown', not {fmt!r}")
    if out.empty:
        raise ValueError("none of the published methods has rows here; pass method_map=...")
    multi_metric = out["metric"].nunique() > 1
    na = _NA[fmt]
    cols, cells = [], {}
    methods = list(dict.fromkeys(out["method"]))
    for ds in dict.fromkeys(out["dataset"]):
        sub = out[out["dataset"] == ds]
        pairs = list(dict.fromkeys(zip(sub["corruption"], sub["severity"].astype(int))))
        labels = _cond_labels(pairs)
        for pair in pairs:
            for m in dict.fromkeys(sub["metric"]):
                col = (_nice(ds, DATASET_NAMES), labels[pair]) + ((_nice(m, METRIC_NAMES),) if multi_metric else ())
                sel = sub[(sub["corruption"] == pair[0]) & (sub["severity"] == pair[1]) & (sub["metric"] == m)]
                col_cells = []
                for meth in methods:
                    r = sel[sel["method"] == meth]
                    if r.empty:
                        col_cells.append(na)
                        continue
                    o, p = r["ours"].iloc[0], r["published"].iloc[0]
                    o_txt = na if not np.isfinite(o) else f"{o:.{decimals}f}"
                    col_cells.append(f"{o_txt} ({p:.{decimals}f})")
                cols.append(col)
                cells[col] = col_cells
    frame = pd.DataFrame({i: cells[c] for i, c in enumerate(cols)}, index=methods, dtype=object)
    frame.columns = pd.MultiIndex.from_tuples(cols)
    bold = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    caption = caption or "Ours (published) per method and condition."
    grid = _Grid(frame, bold, "Method")
    if fmt == "markdown":
        return _to_markdown(frame, bold, "Method", caption)
    return _to_latex(frame, bold, grid, caption, label, None)
