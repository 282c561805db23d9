"""Tables from result rows, in the papers' layouts (LaTeX via ``Styler.to_latex``, Markdown).

All functions take the rows DataFrame of :mod:`bench.results` and use only rows with
``status == "ok"``. A value is the mean over seeds within a category, then the plain mean over
categories (every category weighs the same, as in the papers' "averaged over all classes").

A mean that covers fewer categories than the dataset has in the rows (a cell failed or has not
run yet) is marked with a dagger and is not eligible for bold.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import papers

__all__ = [
    "main_table",
    "paper_table",
    "compare_published",
    "table_frame",
    "condition_label",
    "CORRUPTION_NAMES",
    "DATASET_NAMES",
    "METHOD_NAMES",
    "METHOD_ORDER",
    "METRIC_NAMES",
]

# Hendrycks-Dietterich order (noise, blur, weather, digital, then the extra four); TTAD's
# tables follow it (noise, defocus, brightness, contrast).
CORRUPTION_NAMES: dict[str, str] = {
    "gaussian_noise": "Gaussian Noise",
    "shot_noise": "Shot Noise",
    "impulse_noise": "Impulse Noise",
    "defocus_blur": "Defocus Blur",
    "glass_blur": "Glass Blur",
    "motion_blur": "Motion Blur",
    "zoom_blur": "Zoom Blur",
    "snow": "Snow",
    "frost": "Frost",
    "fog": "Fog",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "elastic_transform": "Elastic Transform",
    "pixelate": "Pixelate",
    "jpeg_compression": "JPEG Compression",
    "speckle_noise": "Speckle Noise",
    "gaussian_blur": "Gaussian Blur",
    "spatter": "Spatter",
    "saturate": "Saturate",
}
DATASET_NAMES: dict[str, str] = {
    "mvtec_ad": "MVTec AD",
    "real_iad": "Real-IAD",
    "visa": "VisA",
    "btad": "BTAD",
    "mpdd": "MPDD",
    "cifar10": "CIFAR-10",
}
METHOD_NAMES: dict[str, str] = {
    "patchcore": "PatchCore",
    "ttt++": "TTT++",
    "ttac": "TTAC",
    "ttad": "TTAD",
    "rd4ad": "RD4AD",
    "gnl": "GNL",
}
# Default row order: the main methods as in the papers, then TTAD Table 4's ablation rows in the
# paper's order; any other method (a user's) follows in the order its rows appear.
METHOD_ORDER: tuple[str, ...] = (*METHOD_NAMES, "none", "kl_div", "moment_matching", "ot_hungarian",
                                 "ot_discrete", "ot_discrete_copy", "ot_discrete_augment")
METRIC_NAMES: dict[str, str] = {
    "image_auroc": "I-AUROC",
    "pixel_auroc": "P-AUROC",
    "aupro": "AUPRO",
    "image_f1_max": "I-F1max",
    "image_ap": "I-AP",
    "pixel_ap": "P-AP",
}
_FRACTION_METRICS = set(METRIC_NAMES)

CLEAN = "Clean"
MEAN = "Mean"
_NA = {"latex": "--", "markdown": "–"}
_DAGGER = {"latex": r"$^\dagger$", "markdown": "†"}


# --------------------------------------------------------------------------- labels


def _nice(name: str, table: Mapping[str, str]) -> str:
    return table.get(str(name), table.get(str(name).lower(), str(name)))


def condition_label(corruption: str, severity: int | None = None, with_severity: bool = False) -> str:
    """"Clean", "Gaussian Noise", or "Contrast (s3)" when severities must be told apart."""
    if corruption == "clean":
        return CLEAN
    name = CORRUPTION_NAMES.get(corruption, str(corruption).replace("_", " ").title())
    return f"{name} (s{int(severity)})" if with_severity and severity is not None else name


def _corruption_rank(corruption: str) -> tuple:
    if corruption == "clean":
        return (0, 0, "")
    order = list(CORRUPTION_NAMES)
    if corruption in CORRUPTION_NAMES:
        return (1, order.index(corruption), "")
    return (2, 0, str(corruption))


# --------------------------------------------------------------------------- aggregation


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    return df


def _norm_severity(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    sev = df["severity"] if "severity" in df.columns else pd.Series(0, index=df.index)
    sev = pd.to_numeric(sev, errors="coerce").fillna(0).astype(int)
    df["severity"] = sev.where(df["corruption"] != "clean", 0)
    return df


def _select_conditions(pairs: Iterable[tuple[str, int]], conditions) -> list[tuple[str, int]]:
    pairs = list(dict.fromkeys(pairs))
    if conditions is None:
        return sorted(pairs, key=lambda p: (_corruption_rank(p[0]), p[1]))
    out: list[tuple[str, int]] = []
    for cond in conditions:
        if isinstance(cond, (tuple, list)):
            # an explicit (corruption, severity) column is shown even when no row has it yet
            want = [(cond[0], 0 if cond[0] == "clean" else int(cond[1]))]
        else:
            want = sorted((p for p in pairs if p[0] == cond), key=lambda p: p[1])
        out += [p for p in want if p not in out]
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
    """Seed-averaged values per (row label, dataset, corruption, severity, category)."""
    missing = [c for c in [rows, "dataset", "category", "corruption", *metrics] if c not in df.columns]
    if missing:
        raise KeyError(f"result rows lack column(s) {missing}")
    df = _norm_severity(df)
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
    if "config_hash" in ok.columns and rows == "method":
        n_cfg = ok.groupby(rows, sort=False)["config_hash"].nunique()
        several = n_cfg[n_cfg > 1]
        if len(several):
            warnings.warn(
                f"rows of {list(several.index)} mix several configs and are averaged together; "
                "filter the rows or pass rows=<a column that tells the variants apart>",
                stacklevel=3,
            )
    keys = [rows, "dataset", "corruption", "severity", "category"]
    data = ok[keys + list(metrics)].copy()
    for m in metrics:
        data[m] = pd.to_numeric(data[m], errors="coerce").astype(float)
    per_cat = data.groupby(keys, sort=False, dropna=False)[list(metrics)].mean().reset_index()

    if methods is not None:
        row_order = list(methods)
    else:
        seen = list(dict.fromkeys(ok[rows]))
        rank = {m: i for i, m in enumerate(METHOD_ORDER)} if rows == "method" else {}
        row_order = sorted(seen, key=lambda m: (rank.get(m, len(rank)), seen.index(m)))
    row_order = [r for r in row_order if r in set(per_cat[rows])]
    ds_order = list(datasets) if datasets is not None else list(dict.fromkeys(ok["dataset"]))
    ds_order = [d for d in ds_order if d in set(per_cat["dataset"])]
    cond_order = {
        ds: _select_conditions(
            zip(g["corruption"], g["severity"]), conditions
        )
        for ds, g in per_cat.groupby("dataset", sort=False)
    }
    return per_cat, n_expected, row_order, ds_order, cond_order


def _cond_labels(pairs: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    counts = pd.Series([c for c, _ in pairs]).value_counts().to_dict() if pairs else {}
    return {(c, s): condition_label(c, s, counts.get(c, 0) > 1) for c, s in pairs}


class _Grid:
    """Raw values, a partial-coverage mask, and where horizontal rules go (before row i)."""

    def __init__(self, values: pd.DataFrame, partial: pd.DataFrame, corner: str, rules=()):
        self.values = values
        self.partial = partial
        self.corner = corner
        self.rules = list(rules)


def _build_main(df, metrics, rows, datasets, methods, conditions, categories, mean, display) -> _Grid:
    per_cat, n_expected, row_order, ds_order, cond_order = _per_category(
        df, metrics, rows, datasets, methods, conditions, categories
    )
    gkeys = [rows, "dataset", "corruption", "severity"]
    grouped = per_cat.groupby(gkeys, sort=False)[list(metrics)]
    means, counts = grouped.mean(), grouped.count()

    multi_metric = len(metrics) > 1
    col_tuples, values, partial = [], {}, {}
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
                if pair[0] != "clean":
                    shifted_cols[m].append(col)
        if mean and len(shifted_cols[metrics[0]]) >= 2:
            for m in metrics:
                col = (ds, MEAN) + ((m,) if multi_metric else ())
                block = np.array([values[c] for c in shifted_cols[m]], dtype=float)
                # no mean over an incomplete set of conditions: it would not be comparable
                values[col] = list(block.mean(axis=0)) if block.size else []
                partial[col] = list(np.array([partial[c] for c in shifted_cols[m]]).any(axis=0))
                col_tuples.append(col)

    index = [(_nice(r, METHOD_NAMES) if display else r) for r in row_order]
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
    return _Grid(vals, part, corner)


def _build_per_class(df, metric, rows, datasets, methods, conditions, categories, display) -> _Grid:
    per_cat, n_expected, row_order, ds_order, cond_order = _per_category(
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
    table = per_cat.set_index([rows, "corruption", "severity", "category"])[metric]

    col_tuples, values, partial = [], {}, {}
    for pair in pairs:
        for r in row_order:
            col = (labels[pair], _nice(r, METHOD_NAMES) if display else r)
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


# --------------------------------------------------------------------------- rendering


def _best_mask(shown: pd.DataFrame, partial: pd.DataFrame, groups, direction: str | None) -> pd.DataFrame:
    """True where a shown (rounded) value is the best of its group; ties all win."""
    mask = pd.DataFrame(False, index=shown.index, columns=shown.columns)
    if direction is None:
        return mask
    arr = shown.to_numpy(dtype=float)
    eligible = np.isfinite(arr) & ~partial.to_numpy(dtype=bool)
    out = np.zeros_like(eligible)
    for rows_idx, cols_idx in groups:
        block = arr[np.ix_(rows_idx, cols_idx)]
        sub = np.where(eligible[np.ix_(rows_idx, cols_idx)], block, np.nan)
        if np.isfinite(block).sum() < 2 or not np.isfinite(sub).any():
            continue  # a lone value is not "best" of anything
        best = np.nanmax(sub) if direction == "max" else np.nanmin(sub)
        out[np.ix_(rows_idx, cols_idx)] = sub == best
    mask.iloc[:, :] = out
    return mask


def _cells(shown: pd.DataFrame, partial: pd.DataFrame, decimals: int, fmt: str) -> pd.DataFrame:
    def one(v, p):
        if v is None or not math.isfinite(v):
            return _NA[fmt]
        return f"{v:.{decimals}f}" + (_DAGGER[fmt] if p else "")

    data = [[one(v, p) for v, p in zip(vr, pr)] for vr, pr in zip(shown.to_numpy(float), partial.to_numpy(bool))]
    return pd.DataFrame(data, index=shown.index, columns=shown.columns, dtype=object)


def _latex_escape(text: str) -> str:
    repl = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
    return "".join(repl.get(ch, ch) for ch in str(text))


def _to_latex(cells, bold, grid: _Grid, caption, label, column_format) -> str:
    frame = cells.copy()
    frame.index = [_latex_escape(i) for i in frame.index]
    frame.index.name = None
    frame.columns = pd.MultiIndex.from_tuples(
        [tuple(_latex_escape(x) for x in (c if isinstance(c, tuple) else (c,))) for c in frame.columns]
    )
    css = pd.DataFrame(np.where(bold.to_numpy(), "textbf: --rwrap;", ""), index=frame.index, columns=frame.columns)
    styler = frame.style.apply(lambda _: css, axis=None)
    n_cols = frame.shape[1]
    latex = styler.to_latex(
        hrules=True,
        multicol_align="c",
        column_format=column_format or ("l" + "r" * n_cols),
        caption=caption,
        label=label,
        position_float="centering" if (caption or label) else None,
    )
    return _latex_polish(latex, frame.columns, grid)


def _latex_polish(latex: str, columns: pd.MultiIndex, grid: _Grid) -> str:
    """Corner label, booktabs \\cmidrule under grouped headers, \\midrule before a Mean row."""
    lines = latex.split("\n")
    top = next(i for i, ln in enumerate(lines) if ln.startswith(r"\toprule"))
    mid = next(i for i, ln in enumerate(lines) if ln.startswith(r"\midrule"))
    header = list(range(top + 1, mid))
    if header:
        last = header[-1]
        lines[last] = re.sub(r"^\s*&", _latex_escape(grid.corner) + " &", lines[last], count=1)
    # \cmidrule under each group of every upper header level
    inserts = []
    for level, line_no in enumerate(header[:-1]):
        spans, start = [], 0
        keys = [tuple(c[: level + 1]) for c in columns]
        for j in range(1, len(keys) + 1):
            if j == len(keys) or keys[j] != keys[start]:
                spans.append((start + 2, j + 1))  # +1 for the index column, 1-based
                start = j
        rule = " ".join(rf"\cmidrule(lr){{{a}-{b}}}" for a, b in spans)
        inserts.append((line_no, rule))
    for line_no, rule in reversed(inserts):
        lines.insert(line_no + 1, rule)
    if grid.rules:
        body_start = next(i for i, ln in enumerate(lines) if ln.startswith(r"\midrule")) + 1
        for r in sorted(grid.rules, reverse=True):
            lines.insert(body_start + r, r"\midrule")
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def _to_markdown(cells, bold, corner: str, caption: str | None) -> str:
    def head(c):
        return " / ".join(str(x) for x in (c if isinstance(c, tuple) else (c,)))

    header = [corner] + [head(c) for c in cells.columns]
    out = []
    if caption:
        out += [caption, ""]
    out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    out.append("|" + "|".join([":---"] + ["---:"] * cells.shape[1]) + "|")
    b = bold.to_numpy()
    for i, (idx, row) in enumerate(cells.iterrows()):
        vals = [f"**{v}**" if b[i, j] else v for j, v in enumerate(row.tolist())]
        out.append("| " + " | ".join(_md_escape(x) for x in [idx] + vals) + " |")
    return "\n".join(out) + "\n"


def _render(grid: _Grid, fmt, scale, decimals, direction, groups, caption, label, column_format) -> str:
    if fmt not in ("latex", "markdown"):
        raise ValueError(f"fmt must be 'latex' or 'markdown', not {fmt!r}")
    shown = (grid.values * scale).round(decimals)
    bold = _best_mask(shown, grid.partial, groups(shown), direction)
    cells = _cells(shown, grid.partial, decimals, fmt)
    if fmt == "markdown":
        return _to_markdown(cells, bold, grid.corner, caption)
    return _to_latex(cells, bold, grid, caption, label, column_format)


def _defaults(metrics: Sequence[str], scale, best):
    if scale is None:
        scale = 100 if all(m in _FRACTION_METRICS for m in metrics) else 1
    if best == "auto":
        lower = all(m.endswith(("_seconds", "_mb")) for m in metrics)
        best = "min" if lower else "max"
    return scale, best


def _as_list(x) -> list | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)


# --------------------------------------------------------------------------- public API


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
    """
    metrics = _as_list(metric)
    scale, direction = _defaults(metrics, scale, best)
    datasets = _as_list(datasets)
    if per_class:
        if len(metrics) != 1:
            raise ValueError("per-class tables take one metric")
        grid = _build_per_class(df, metrics[0], rows, datasets, methods, conditions, categories, display)

        def groups(frame):  # per row, within each condition block
            cond = [c[0] for c in frame.columns]
            blocks = [[j for j, c in enumerate(cond) if c == k] for k in dict.fromkeys(cond)]
            return [([i], b) for i in range(frame.shape[0]) for b in blocks]
    else:
        grid = _build_main(df, metrics, rows, datasets, methods, conditions, categories, mean, display)

        def groups(frame):  # per column
            return [(list(range(frame.shape[0])), [j]) for j in range(frame.shape[1])]

    if grid.values.empty:
        raise ValueError("no ok rows match the selection; nothing to tabulate")
    return _render(grid, fmt, scale, decimals, direction, groups, caption, label, column_format)


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
