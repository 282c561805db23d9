"""Our rows next to the papers' published numbers: a paper's table layout, and the comparison."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import papers
from ..methods.errors import warn
from .aggregate import _Grid, _as_list, _ok_rows, _per_category
from .layouts import main_table
from .names import DATASET_NAMES, METRIC_NAMES, _cond_labels, _nice, method_display
from .render import _DAGGER, _NA, FAILED, NOTES, _to_latex, _to_markdown, latex_notes, latex_text

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
    setting: str | None = None,
    per_class: bool = False,
    fmt: str | None = None,
    caption: str | None = None,
    label: str | None = None,
    extra: Sequence[str] = (),
    extra_corruptions: Sequence[str] = (),
) -> pd.DataFrame | str:
    """Our means next to a paper's published numbers for the same method and condition.

    Returns a long DataFrame (dataset, category, method, ours_method, domain, corruption,
    severity, metric, published, ours, delta, n_categories, partial, failed), or with ``fmt`` a
    table whose cells read "ours (published)", ours marked † where it lacks cells the run has
    (``partial``) and "failed" where every cell of it failed, as ``bench table`` marks them.
    Methods match case-insensitively, ignoring "-", "_" and spaces; ``method_map`` maps a
    published name to our row label where that is not enough (e.g. TTAD Table 4's
    "ot_discrete_augment" to a variant label). ``only_ours`` keeps only the
    published methods we have rows for. ``setting`` keeps the published rows of one setting
    (GNL Table 3: one-vs-all or multi-class); ``per_class`` compares per category (the appendix
    tables) instead of the mean over the rows' categories. A published row of a named category
    (MNIST's multi-class ``even``) compares with our rows of that category. ``extra``: our row
    labels the paper has no row for (a method of the user's, run under the table's protocol),
    appended with their display name and no published value, in the published conditions.
    ``extra_corruptions``: corruptions the paper has no column for (the user's shift, run under the
    table's protocol), appended as columns for every method shown, without a published value.
    """
    metrics = _as_list(metric)
    pub = papers.published(paper=paper, table=table)
    if "dataset" in df.columns:  # our names as the published numbers spell them (realiad: real_iad)
        df = df.assign(dataset=df["dataset"].replace(papers.PAPER_DATASETS))
    if metrics is not None:
        pub = pub[pub["metric"].isin(metrics)]
    if setting is not None:
        pub = pub[pub["setting"] == setting]
    named = sorted(set(pub["category"]) - {""})
    if not per_class and named and (pub["category"] == "").any():
        pub = pub[pub["category"] == ""]  # the mean rows; the per-class ones are the appendix's
    elif per_class:
        pub = pub[pub["category"] != ""]
    if pub.empty:
        raise KeyError(f"no published numbers for {paper!r} table {table} metric {metric!r}")
    ours_data = set(df["dataset"]) if "dataset" in df.columns else set()
    if ours_data and not ours_data & set(pub["dataset"]):  # every "ours" would read "–"
        warn(f"the rows are of {', '.join(sorted(ours_data))}; {paper} table {table} publishes "
             f"{', '.join(sorted(set(pub['dataset'])))}: no value of ours to compare (bench reproduce runs "
             "its protocol, a folder standing in for its dataset if need be)")
    metrics = list(dict.fromkeys(pub["metric"]))
    by_category = per_class or (pub["category"] != "").all()

    have = [m for m in metrics if m in df.columns]
    keys = [rows, "dataset", "domain", "corruption", "severity"] + (["category"] if by_category else [])
    if have and rows in df.columns and len(_ok_rows(df)):
        # matched to the published rows by method name: variants are not split here (a warning
        # says they are averaged; bench reproduce lists it among the departures)
        cells = _per_category(df, have, rows, None, None, None, None, split=False)
        g = cells.per_cat.groupby(keys, sort=False)[have]
        means = g.mean().reset_index().melt(id_vars=keys, var_name="metric", value_name="ours")
        counts = g.count().reset_index().melt(id_vars=keys, var_name="metric", value_name="n_categories")
        ours = means.merge(counts, on=keys + ["metric"])
        ours = ours.merge(_marks(cells, have, keys), how="outer", on=keys + ["metric"]).rename(columns={rows: "ours_method"})
        ours["n_categories"] = ours["n_categories"].fillna(0)
        if not by_category:  # a mean over fewer categories than the run has
            fewer = ours["n_categories"] < [cells.n_expected.get(ds, 0) for ds in ours["dataset"]]
            ours["partial"] = ours["partial"] | ((ours["n_categories"] > 0) & fewer)
        ours["ours"] = ours["ours"] * scale
        ours_labels = list(dict.fromkeys(ours["ours_method"]))
    else:
        ours = pd.DataFrame(columns=["ours_method", *keys[1:], "metric", "ours", "n_categories", "partial", "failed"])
        ours_labels = []
    on = ["ours_method", *keys[1:], "metric"]

    matched = _match_rows(ours_labels, list(dict.fromkeys(pub["method"])), method_map)
    pub = pub.assign(ours_method=pub["method"].map(matched))
    if only_ours:
        pub = pub[pub["ours_method"].notna()]
    out = pub.merge(ours, how="left", on=on)
    if len(extra):
        conditions = out[on[1:]].drop_duplicates()  # the table's columns: the paper's conditions only
        mine = ours[ours["ours_method"].isin(list(extra))].merge(conditions, on=on[1:])
        out = pd.concat([out, mine.assign(method=mine["ours_method"].map(method_display), value=np.nan)],
                        ignore_index=True)
    if len(extra_corruptions):
        shown = out.dropna(subset=["ours_method"]).drop_duplicates("ours_method").set_index("ours_method")["method"]
        mine = ours[ours["ours_method"].isin(shown.index) & ours["corruption"].isin(list(extra_corruptions))
                    & ours["metric"].isin(set(out["metric"])) & ours["dataset"].isin(set(out["dataset"]))]
        out = pd.concat([out, mine.assign(method=mine["ours_method"].map(shown), value=np.nan)], ignore_index=True)
    out = out.rename(columns={"value": "published"})
    out["ours"] = pd.to_numeric(out["ours"], errors="coerce").astype(float)
    out["delta"] = out["ours"] - out["published"]
    out["n_categories"] = pd.to_numeric(out["n_categories"], errors="coerce").astype("Int64")
    out["partial"] = out["partial"].fillna(False).astype(bool) & out["ours"].notna()
    out["failed"] = out["failed"].fillna(False).astype(bool) & out["ours"].isna()
    if not by_category:
        out["category"] = ""
    out = out[["dataset", "category", "method", "ours_method", "domain", "corruption", "severity", "metric",
               "published", "ours", "delta", "n_categories", "partial", "failed"]].reset_index(drop=True)
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
    out = out.assign(category=out["category"] if "category" in out else "", domain=out["domain"] if "domain" in out else "")
    per_class = (out["category"] != "").any() and out["category"].nunique() > 1
    # a per-class table of one condition (TTAD Table 2): the classes are the columns, the
    # condition is in the caption, not repeated over every class
    one_condition = per_class and len(set(zip(out["domain"], out["corruption"], out["severity"]))) == 1
    for ds, cat in dict.fromkeys(zip(out["dataset"], out["category"])):
        sub = out[(out["dataset"] == ds) & (out["category"] == cat)]
        conds = list(dict.fromkeys(zip(sub["domain"], sub["corruption"], sub["severity"].astype(int))))
        labels = _cond_labels(conds)
        head = (_nice(ds, DATASET_NAMES),) + ((cat,) if per_class else ())
        for cond in conds:
            for m in dict.fromkeys(sub["metric"]):
                col = (*head, *(() if one_condition else (labels[cond],))) + (
                    (_nice(m, METRIC_NAMES),) if multi_metric else ())
                sel = sub[(sub["domain"] == cond[0]) & (sub["corruption"] == cond[1]) & (sub["severity"] == cond[2])
                          & (sub["metric"] == m)]
                col_cells = []
                for meth in methods:
                    r = sel[sel["method"] == meth]
                    if r.empty:
                        col_cells.append(na)
                        continue
                    o, p = r["ours"].iloc[0], r["published"].iloc[0]
                    o_txt = (f"{o:.{decimals}f}" + (_DAGGER[fmt] if r["partial"].iloc[0] else "") if np.isfinite(o)
                             else FAILED if r["failed"].iloc[0] else na)
                    col_cells.append(f"{o_txt} ({na if not np.isfinite(p) else f'{p:.{decimals}f}'})")
                cols.append(col)
                cells[col] = col_cells
    frame = pd.DataFrame({i: cells[c] for i, c in enumerate(cols)}, index=methods, dtype=object)
    frame.columns = pd.MultiIndex.from_tuples(cols)
    bold = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    caption = caption or "Ours (published) per method and condition."
    grid = _Grid(frame, bold, "Method")
    notes = [NOTES[k] for k in ("partial", "failed") if out[k].any()]
    if fmt == "markdown":
        return _to_markdown(frame, bold, "Method", caption) + ("\n" + "  \n".join(notes) + "\n" if notes else "")
    return _to_latex(frame, bold, grid, caption, label, None) + ("\n" + latex_notes(notes) if notes else "")


def _marks(cells, metrics: Sequence[str], keys: list[str]) -> pd.DataFrame:
    """Per ``keys`` and metric: ``partial`` where a category's seed mean lacks seeds the run has
    (a mean over fewer categories is told by its count), ``failed`` where every cell failed."""
    failed = cells.failed(keys)
    short = cells.short(metrics).groupby(level=keys).any()
    out = [pd.DataFrame({"metric": m, "partial": short[m].reindex(failed.index, fill_value=False),
                         "failed": failed}) for m in metrics]
    return pd.concat(out).reset_index()


_RUNTIME_DEVICE = {("gnl", 7): "one RTX 3090 24GB GPU"}  # as the paper's caption names it


def runtime_ours(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: seconds per training epoch (the fit's) and per scored image, and the device."""
    import json

    out = []
    for method, sub in rows.groupby("method", sort=False):
        train = pd.to_numeric(sub.get("diag_train_seconds_per_epoch"), errors="coerce")
        per_image = pd.to_numeric(sub["score_seconds"], errors="coerce") / pd.to_numeric(sub["n_test"], errors="coerce")
        device = str(sub["device"].iloc[0])
        if device.startswith("cuda") and "numerics" in sub:
            gpu = json.loads(sub["numerics"].iloc[0] or "{}").get("gpu")
            device = f"{device} ({gpu})" if gpu else device
        elif "cpu_model" in sub and isinstance(sub["cpu_model"].iloc[0], str):
            device = f"cpu, {int(sub['threads'].iloc[0])} threads ({sub['cpu_model'].iloc[0]})"
        fit = device
        if "fit_device" in sub and isinstance(sub["fit_device"].iloc[0], str) and sub["fit_device"].iloc[0]:
            threads = sub["fit_threads"].iloc[0] if "fit_threads" in sub else None
            fit = str(sub["fit_device"].iloc[0]) + (f", {int(threads)} threads" if pd.notna(threads) else "")
        if "fit_cached" in sub and sub["fit_cached"].fillna(False).astype(bool).all():
            fit += "; a cached fit, timed where it was computed"  # no training ran in this run
        out.append({"ours_method": method, "train_seconds_per_epoch": float(train.mean()),
                    "inference_seconds_per_image": float(per_image.mean()), "device": device, "fit_device": fit})
    return pd.DataFrame(out)


def runtime_comparison(rows: pd.DataFrame, preset, fmt: str, dagger: str, departures: Mapping[str, list]) -> str:
    """GNL Table 7's layout: seconds per training epoch and per image, ours (published), with the
    devices named (seconds compare only on like hardware)."""
    pub = papers.published(paper=preset.paper, table=preset.table)
    ours = runtime_ours(rows)
    matched = _match_rows(list(ours["ours_method"]), list(dict.fromkeys(pub["method"])), preset.method_map)
    na = _NA[fmt]
    metrics = list(dict.fromkeys(pub["metric"]))
    cells, index = {m: [] for m in metrics}, []
    for method in dict.fromkeys(pub["method"]):
        ours_label = matched.get(method)
        index.append(f"{method}{dagger}" if ours_label and departures.get(ours_label) else method)
        mine = ours[ours["ours_method"] == ours_label]
        for m in metrics:
            p = pub[(pub["method"] == method) & (pub["metric"] == m)]["value"]
            o = float(mine[m].iloc[0]) if len(mine) and np.isfinite(mine[m].iloc[0]) else float("nan")
            o_txt = na if not np.isfinite(o) else f"{o:.4f}"
            cells[m].append(f"{o_txt} ({float(p.iloc[0]):.4f})" if len(p) else o_txt)
    labels = {"train_seconds_per_epoch": "Training (s per epoch)", "inference_seconds_per_image": "Inference (s per image)"}
    frame = pd.DataFrame({labels.get(m, m): cells[m] for m in metrics}, index=index, dtype=object)
    frame.columns = pd.MultiIndex.from_tuples([(c,) for c in frame.columns])
    bold = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    theirs = _RUNTIME_DEVICE.get((preset.paper, preset.table), "the paper's device")
    where = "; ".join(f"{r.ours_method}: training on {r.fit_device}, inference on {r.device}"
                      for r in ours.itertuples())
    caption = f"{preset.summary}: ours (published). Ours on {where}; published on {theirs}."
    if fmt == "markdown":
        return _to_markdown(frame, bold, "Model", caption)
    return _to_latex(frame, bold, _Grid(frame, bold, "Model"), latex_text(caption), None, None)
