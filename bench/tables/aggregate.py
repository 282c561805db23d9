"""Aggregation: rows -> seed means per category -> the mean over categories, per table cell.

A value is the mean over seeds within a category, then the plain mean over categories (every
category weighs the same, as in the papers' "averaged over all classes"). Only rows with
``status == "ok"`` count. A value is partial (rendered with a dagger, never bold) when it lacks a
cell the run has: a category of its dataset, or a (category, seed) of its column; a value whose
every cell failed is "failed", not "–" (no value: not run, or no ground truth). A row label's
rows that differ in what else identifies a cell (config, protocol, test subset) are split into
one table row per variant: a mean over them would mix different measurements.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from .. import papers
from ..errors import BenchError, BenchWarning
from ..results import with_domain
from .names import (DATASET_NAMES, MEAN, METRIC_NAMES, _cond_labels, _condition_rank, _nice, config_fields,
                    is_reference, method_display, method_rank)

class LostMasksWarning(BenchWarning):
    """Rows whose evaluation grid lost whole defect masks (``masks_lost``)."""


def _ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    return df


def _norm_conditions(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with the columns of a condition normalised: severity 0 when clean, domain "" where
    a row has none (the dataset's own test split)."""
    df = with_domain(df)
    sev = df["severity"] if "severity" in df.columns else pd.Series(0, index=df.index)
    sev = pd.to_numeric(sev, errors="coerce").fillna(0).astype(int)
    df["severity"] = sev.where(df["corruption"] != "clean", 0)
    return df


def cell_frame(df: pd.DataFrame, metrics) -> pd.DataFrame:
    """A copy of the rows for a per-cell transform (relative, severities): conditions normalised,
    the metrics as floats, the seed and VARIANT columns present, a fresh index (merged runs may
    repeat labels)."""
    df = _norm_conditions(df.copy()).reset_index(drop=True)
    for m in metrics:
        df[m] = pd.to_numeric(df[m], errors="coerce").astype(float)
    for c in ("seed", *VARIANT):
        if c not in df.columns:
            df[c] = 0 if c in ("seed", "test_subset") else ""
    return df


def _select_conditions(conds: Iterable[tuple[str, str, int]], conditions) -> list[tuple[str, str, int]]:
    """The table's (domain, corruption, severity) columns, in order. ``conditions`` names them:
    a corruption or domain name (its every condition), a (corruption, severity) pair (in every
    domain that has it) or a (domain, corruption, severity) triple."""
    conds = sorted(dict.fromkeys(conds), key=_condition_rank)
    if conditions is None:
        return conds
    out: list[tuple[str, str, int]] = []
    for cond in conditions:
        if isinstance(cond, (tuple, list)):
            domain, corruption, severity = cond if len(cond) == 3 else (None, *cond)
            severity = 0 if corruption == "clean" else int(severity)
            if domain is None:
                want = [c for c in conds if c[1:] == (corruption, severity)] or [("", corruption, severity)]
            else:
                want = [(domain, corruption, severity)]
            # an explicit column is shown even when no row has it yet
        else:
            want = [c for c in conds if cond in (c[0], c[1])]
        out += [c for c in want if c not in out]
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


# A table column: a dataset and a condition (domain, corruption, severity).
_COLUMN = ["dataset", "domain", "corruption", "severity"]
# What identifies a cell (bench.grid.Cell.cell_id) besides the table's axes (row label, dataset,
# condition) and the category and seed a value averages over: rows of one label that differ in
# one of these measured different things (a --set, --protocol or --test-subset grid into the
# same run directory), so they are never averaged.
VARIANT = ("config_hash", "protocol", "test_subset")
# Of several protocols or test subsets, the one shown first (tables) or alone (figures): the
# default protocol, every test image (0). A config's first is its method's default config.
PREFERRED = {"protocol": "native", "test_subset": 0}
# split_variants' columns: a row key's label before the split, and its variant's place
_BASE, _RANK = "_row_base", "_variant_rank"


def variants(df: pd.DataFrame, rows: str = "method") -> tuple[dict[str, list[str]], pd.DataFrame]:
    """The row labels whose rows hold several variants (VARIANT) in one dataset, each with the
    columns that differ; and the rows' normalised VARIANT columns."""
    cols = [c for c in VARIANT if c in df.columns]
    ident = pd.DataFrame({c: _variant_values(df, rows, c) for c in cols}, index=df.index)
    if not cols or df.empty:
        return {}, ident
    n = ident.groupby([df[rows], df["dataset"]], sort=False).nunique()
    several = dict.fromkeys(label for (label, _), k in n.max(axis=1).items() if k > 1)
    return {label: [c for c in cols if ident.loc[df[rows] == label, c].nunique() > 1] for label in several}, ident


def split_variants(df: pd.DataFrame, rows: str, split: bool = True) -> pd.DataFrame:
    """``df`` with the ``rows`` label relabelled "label (what differs)" wherever one label's rows
    hold several variants (VARIANT) in one dataset: one table row per variant, labelled with the
    config fields (bench.tables.names.config_fields, as the figures label them), protocol or test
    subset that tell them apart, the method's default config first; a warning says so.
    ``split=False`` (the published comparisons, matched by method name) keeps the labels and
    warns that the variants are averaged."""
    from ..grid import default_config_hash

    df = df.copy()
    if _BASE in df.columns:  # split already (the per-defect-type rows carry it)
        return df
    df[_BASE], df[_RANK] = df[rows], 0
    several, ident = variants(df, rows)
    vid = ident.astype(str).agg("\x1f".join, axis=1) if several else None  # a variant's id
    for label, differ in several.items() if split else ():
        sel = df[rows] == label
        kinds = ident[sel].assign(vid=vid[sel]).drop_duplicates("vid").set_index("vid")
        configs = dict(zip(ident.loc[sel, "config_hash"], df.loc[sel, "config"])) if "config" in df.columns else {}
        fields = config_fields(configs) if "config_hash" in differ else {}
        details = {i: [*fields.get(v.get("config_hash"), []),
                       *([f"protocol {v['protocol']}"] if "protocol" in differ else []),
                       *([f"test_subset {v['test_subset'] or 'all'}"] if "test_subset" in differ else [])]
                   for i, v in kinds.iterrows()}
        alike = [i for i, d in details.items() if not d or list(details.values()).count(d) > 1]
        for i in alike:  # configs no field tells apart (or that do not parse): their hash does
            details[i] = details[i] + [f"config {kinds.loc[i, 'config_hash'][:8]}"]
        default = default_config_hash(str(label), str(df.loc[sel, "dataset"].iloc[0])) if rows == "method" else ""
        ranked = sorted(kinds.index, key=lambda i: (kinds.loc[i].get("config_hash") != default,
                                                    kinds.loc[i].get("protocol", "native") != PREFERRED["protocol"],
                                                    kinds.loc[i].get("test_subset", 0), details[i]))
        df.loc[sel, rows] = [f"{label} ({', '.join(details[i])})" for i in vid[sel]]
        df.loc[sel, _RANK] = [ranked.index(i) for i in vid[sel]]
    if several:
        how = ("shown as one table row per variant, labelled by what differs" if split else
               "averaged in this comparison (bench table without --compare shows each as its own row)")
        said = "; ".join(f"{label} differ in {', '.join(cols)}" for label, cols in several.items())
        warnings.warn(f"rows of {said}: {how}", BenchWarning, stacklevel=4)
    return df


def _variant_values(df: pd.DataFrame, rows: str, column: str) -> pd.Series:
    """A VARIANT column normalised: a missing test subset (rows written before it) is 0, every
    test image; a missing config hash or protocol is not a variant of its own (its label's first)."""
    if column == "test_subset":
        return pd.to_numeric(df[column], errors="coerce").fillna(0).astype(int)
    values = df[column].where(df[column].notna() & (df[column] != ""))
    return values.fillna(values.groupby(df[rows], sort=False).transform("first")).fillna("").astype(str)


def row_label(key: str, base: str, display: bool) -> str:
    """The label a table shows for a row key: the method's display name and its variant."""
    return method_display(base) + str(key)[len(str(base)):] if display else str(key)


@dataclass
class _Cells:
    """What the layouts read, per (row key, dataset, condition, category): the seed means
    (``per_cat``), the seeds with a finite value per metric (``n_seeds``), whether any row is ok
    (``has_ok``) and whether any failed (``has_failed``: a value is "failed" where every cell of it
    failed, not where cells have not run); per (dataset, condition, category) the seeds the
    run has, any row and status (``seeds``); per dataset its categories (``n_expected``)."""

    per_cat: pd.DataFrame
    n_seeds: pd.DataFrame
    has_ok: pd.Series
    has_failed: pd.Series
    seeds: pd.Series
    n_expected: dict
    row_order: list
    base: dict
    ds_order: list
    cond_order: dict
    ok: pd.DataFrame

    def short(self, metrics) -> pd.DataFrame:
        """True where a category's seed mean covers fewer seeds than the run has for its column
        (a seed's cell failed or has not run): a mean over it is partial."""
        want = self.seeds.reindex(self.n_seeds.index.droplevel(0)).to_numpy()
        n = self.n_seeds[list(metrics)]
        return n.gt(0) & n.lt(want[:, None])

    def failed(self, keys: list[str]) -> pd.Series:
        """Per ``keys`` (levels of ``has_ok``): True where no row is ok and one failed, the values that
        read "failed" (cells not run yet are no failure)."""
        return ~self.has_ok.groupby(level=keys).any() & self.has_failed.groupby(level=keys).any()

    def labels(self, display: bool) -> list[str]:
        return [row_label(r, self.base[r], display) for r in self.row_order]


def _per_category(df, metrics, rows, datasets, methods, conditions, categories, split: bool = True) -> _Cells:
    """Seed-averaged values per (row key, dataset, domain, corruption, severity, category), and
    what the run has of each (``_Cells``)."""
    missing = [c for c in [rows, "dataset", "category", "corruption", *metrics] if c not in df.columns]
    if missing:
        raise KeyError(f"result rows lack column(s) {missing}")
    df = _norm_conditions(df)
    if datasets is not None:
        df = df[df["dataset"].isin(list(datasets))]
    if categories is not None:
        df = df[df["category"].isin(list(categories))]
    if "seed" not in df.columns:
        df = df.assign(seed=0)
    # what the run has (any status, any row): a mean over fewer categories of its dataset, or
    # over fewer seeds of a category than its column has, is partial
    n_expected = df.groupby("dataset", sort=False)["category"].nunique().to_dict()
    seeds = df.groupby([*_COLUMN, "category"])["seed"].nunique()
    df = split_variants(df, rows, split)
    row_order = _selected(df, rows, methods)
    df = df[df[rows].isin(row_order)]
    ok = _ok_rows(df)
    _warn_rows(ok, rows)
    keys = [rows, *_COLUMN, "category"]
    data = ok[keys + list(metrics)].copy()
    for m in metrics:
        data[m] = pd.to_numeric(data[m], errors="coerce").astype(float)
    grouped = data.groupby(keys, sort=False, dropna=False)[list(metrics)]
    per_cat = grouped.mean().reset_index()
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    has_ok = (status == "ok").groupby([df[k] for k in keys]).any()
    has_failed = (status == "failed").groupby([df[k] for k in keys]).any()

    # rows, datasets and conditions of any status: a method or condition whose every cell failed
    # is shown as failed, not left out
    ds_order = list(datasets) if datasets is not None else list(dict.fromkeys(df["dataset"]))
    ds_order = [d for d in ds_order if d in set(df["dataset"])]
    cond_order = {
        ds: _select_conditions(zip(g["domain"], g["corruption"], g["severity"]), conditions)
        for ds, g in df.groupby("dataset", sort=False)
    }
    base = dict(zip(df[rows], df[_BASE]))
    return _Cells(per_cat, grouped.count(), has_ok, has_failed, seeds, n_expected, row_order, base, ds_order,
                  cond_order, ok)


def _selected(df: pd.DataFrame, rows: str, methods) -> list:
    """The table's row keys in order. ``methods`` (names, matched as _resolve_labels does, or row
    keys) selects and orders them, a name with each of its variants; else the registry's order of
    the methods, then first appearance. A label's variants follow in split_variants' order."""
    keys = list(dict.fromkeys(df[rows]))
    base, rank = dict(zip(df[rows], df[_BASE])), dict(zip(df[rows], df[_RANK]))
    bases = list(dict.fromkeys(base[k] for k in keys))
    if methods is None:
        order = method_rank() if rows == "method" else {}
        wanted = sorted(bases, key=lambda b: (order.get(b, float("inf")), bases.index(b)))
    else:
        wanted = _resolve_labels(methods, bases + [k for k in keys if k not in bases])
        unknown = [w for w in wanted if w not in rank and w not in bases]
        if unknown:  # a typo would leave its row out of the table without a word
            them = "it" if len(unknown) == 1 else "them"
            raise BenchError(f"--methods {','.join(map(str, unknown))}: no rows of {them} (rows of: "
                             f"{', '.join(map(str, bases))})")
    out: list = []
    for w in wanted:
        out += [w] if w in rank and base[w] != w else sorted((k for k in keys if base[k] == w), key=rank.get)
    return list(dict.fromkeys(out))


def _warn_rows(ok: pd.DataFrame, rows: str) -> None:
    """What the table's ok rows hide: defects the grid lost."""
    lost = masks_lost(ok, rows)
    if lost:
        warnings.warn(
            f"defects outside the evaluation grid ({'; '.join(lost)}): the method never saw them, the "
            "images still count as anomalous and add no defect pixels (n_masks_lost, masks_lost in the rows)",
            LostMasksWarning, stacklevel=4,
        )


class _Grid:
    """Raw values, a partial-coverage mask, and where horizontal rules go (before row i).

    ``std``: the std over seeds shown as "± s" (NaN: not shown); ``low`` / ``high``: an interval
    shown as "[lo, hi]" (NaN: not shown); both unscaled, like ``values``. ``failed``: True where
    a value is missing because every cell of it failed (None: nowhere)."""

    def __init__(self, values: pd.DataFrame, partial: pd.DataFrame, corner: str, rules=(),
                 std: pd.DataFrame | None = None, low: pd.DataFrame | None = None,
                 high: pd.DataFrame | None = None, failed: pd.DataFrame | None = None):
        self.values = values
        self.partial = partial
        self.corner = corner
        self.rules = list(rules)
        self.std, self.low, self.high = std, low, high
        self.failed = failed


def _build_main(df, metrics, rows, datasets, methods, conditions, categories, mean, display,
                std: bool = False, interval: int = 0, level: float = 0.95) -> _Grid:
    """``std``: add the std over seeds where the rows hold several seeds; ``interval``: add the
    bootstrap interval of each value at ``level`` from ``interval`` resamples (bench.stats)."""
    cells = _per_category(df, metrics, rows, datasets, methods, conditions, categories)
    row_order, ok = cells.row_order, cells.ok
    spread = Spread(ok, rows, metrics, cells.n_expected) if (std or interval) else None
    gkeys = [rows, *_COLUMN]
    grouped = cells.per_cat.groupby(gkeys, sort=False)[list(metrics)]
    means, counts = grouped.mean(), grouped.count()
    short = cells.short(metrics).groupby(level=gkeys).any()  # a category's seeds incomplete
    failed_at = cells.failed(gkeys)

    multi_metric = len(metrics) > 1
    col_tuples, values, partial, failed = [], {}, {}, {}
    stds, lows, highs = {}, {}, {}
    col_pairs: dict = {}  # column -> the (dataset, conditions, metric) it averages
    for ds in cells.ds_order:
        pairs = cells.cond_order.get(ds, [])
        labels = _cond_labels(pairs)
        n_exp = cells.n_expected.get(ds, 0)
        shifted_cols = {m: [] for m in metrics}
        for pair in pairs:
            for m in metrics:
                col = (ds, labels[pair]) + ((m,) if multi_metric else ())
                v, p, f = [], [], []
                for r in row_order:
                    key = (r, ds, *pair)
                    val = means[m].get(key, np.nan) if key in means.index else np.nan
                    cnt = counts[m].get(key, 0) if key in counts.index else 0
                    v.append(val)
                    p.append(bool(cnt > 0 and (cnt < n_exp or short[m].get(key, False))))
                    f.append(bool(failed_at.get(key, False)))
                col_tuples.append(col)
                values[col], partial[col], failed[col] = v, p, f
                col_pairs[col] = (ds, [pair], m)
                if not is_reference(ds, pair):
                    shifted_cols[m].append(col)
        if mean and len(shifted_cols[metrics[0]]) >= 2:
            for m in metrics:
                col = (ds, MEAN) + ((m,) if multi_metric else ())
                block = np.array([values[c] for c in shifted_cols[m]], dtype=float)
                # a condition without a value (failed, not run): the mean over the others, marked
                # partial as a mean over fewer categories is; "failed" where none has a value and
                # one failed
                n = np.isfinite(block).sum(axis=0)
                values[col] = list(np.where(n > 0, np.nansum(block, axis=0) / np.maximum(n, 1), np.nan))
                partial[col] = list(np.array([partial[c] for c in shifted_cols[m]]).any(axis=0)
                                    | ((n > 0) & (n < len(block))))
                failed[col] = list((n == 0) & np.array([failed[c] for c in shifted_cols[m]]).any(axis=0))
                col_tuples.append(col)
                col_pairs[col] = (ds, [p for p in pairs if not is_reference(ds, p)], m)
    if spread is not None:
        for col, (ds, cond_pairs, m) in col_pairs.items():
            stds[col] = [spread.std(r, ds, cond_pairs, m) if std else np.nan for r in row_order]
            bounds = [spread.interval(r, ds, cond_pairs, m, interval, level) if interval else (np.nan, np.nan)
                      for r in row_order]
            lows[col], highs[col] = [b[0] for b in bounds], [b[1] for b in bounds]

    index = cells.labels(display)
    names = ["dataset", "condition"] + (["metric"] if multi_metric else [])
    disp_cols = [
        ((_nice(c[0], DATASET_NAMES) if display else c[0]), c[1])
        + ((_nice(c[2], METRIC_NAMES) if display else c[2],) if multi_metric else ())
        for c in col_tuples
    ]
    columns = pd.MultiIndex.from_tuples(disp_cols, names=names) if disp_cols else pd.MultiIndex.from_tuples([], names=names)
    vals = pd.DataFrame({i: values[c] for i, c in enumerate(col_tuples)}, index=index, dtype=float)
    part = pd.DataFrame({i: partial[c] for i, c in enumerate(col_tuples)}, index=index, dtype=bool)
    fail = pd.DataFrame({i: failed[c] for i, c in enumerate(col_tuples)}, index=index, dtype=bool)
    vals.columns = part.columns = fail.columns = columns
    vals.index.name = part.index.name = fail.index.name = rows
    corner = "Method" if rows == "method" else rows.replace("_", " ").capitalize()
    extra = {"failed": fail}
    if spread is not None:
        for name, data in (("std", stds), ("low", lows), ("high", highs)):
            frame = pd.DataFrame({i: data[c] for i, c in enumerate(col_tuples)}, index=index, dtype=float)
            frame.columns, frame.index.name = columns, rows
            extra[name] = frame
    return _Grid(vals, part, corner, **extra)


def mixed_configs(rows: pd.DataFrame) -> list[str]:
    """Methods whose rows hold several configs (averaging them into one value would mislead)."""
    if "config_hash" not in rows.columns:
        return []
    n_cfg = rows.groupby("method", sort=False)["config_hash"].nunique()
    return list(n_cfg[n_cfg > 1].index)


def masks_lost(rows: pd.DataFrame, by: str = "method") -> list[str]:
    """"<method> on <category>: N of M" where a method's evaluation grid lost whole defect masks."""
    if "n_masks_lost" not in rows.columns:
        return []
    n = pd.to_numeric(rows["n_masks_lost"], errors="coerce").fillna(0)
    lost = rows[n > 0]
    out = []
    for (label, category), group in lost.groupby([by, "category"], sort=False):
        defects = ""
        labels = group["image_labels"].iloc[0] if "image_labels" in group.columns else None
        if isinstance(labels, (list, np.ndarray)):  # rows written before per-image columns: NaN
            defects = f" of {int(sum(1 for v in labels if v))}"
        out.append(f"{label} on {category}: {int(group['n_masks_lost'].max())}{defects}")
    return out


class Spread:
    """Std over seeds and bootstrap intervals of the main table's values, from its ok rows."""

    def __init__(self, ok: pd.DataFrame, rows: str, metrics, n_expected: dict) -> None:
        self.ok, self.rows = _norm_conditions(ok), rows
        keys = [rows, "dataset", "domain", "corruption", "severity", "seed"]
        data = self.ok[keys + list(metrics)].copy()
        for m in metrics:
            data[m] = pd.to_numeric(data[m], errors="coerce").astype(float)
        # per seed, the mean over categories (the table's value is their mean over seeds) and how
        # many categories it covers
        grouped = data.groupby(keys, sort=False)
        self.per_seed = grouped[list(metrics)].mean().sort_index()
        self.n_cats = grouped[list(metrics)].count().sort_index()
        # the categories a complete seed covers: the dataset's in the run, any method and status
        # (a category that failed or did not run in every seed still makes each seed incomplete)
        self.n_expected = n_expected
        self.n_seeds = int(self.ok["seed"].nunique())

    def std(self, r, ds, pairs, metric) -> float:
        """Std over the seeds that cover every category of every condition of the value (a seed
        with a missing cell would mean something else); NaN below two such seeds."""
        if self.n_seeds < 2:  # the common one-seed run: no spread to compute
            return float("nan")
        try:
            means, counts = self.per_seed[metric].loc[(r, ds)], self.n_cats[metric].loc[(r, ds)]
        except KeyError:
            return float("nan")
        conds = list(zip(*(means.index.get_level_values(i) for i in range(3))))
        keep = np.array([c in pairs for c in conds])
        means, counts = means[keep], counts[keep]
        complete = means[counts.to_numpy() == self.n_expected.get(ds, 0)]
        per_seed = complete.groupby(level="seed")
        n_conds = per_seed.size()
        by_seed = per_seed.mean()[n_conds == len(pairs)]
        return float(by_seed.std(ddof=1)) if len(by_seed) > 1 else float("nan")

    def interval(self, r, ds, pairs, metric, resamples, level) -> tuple[float, float]:
        from .. import stats

        ok = self.ok
        sel = ok[(ok[self.rows] == r) & (ok["dataset"] == ds)
                 & pd.Series([c in pairs for c in zip(ok["domain"], ok["corruption"], ok["severity"])], index=ok.index)]
        return stats.mean_interval(sel, metric, resamples, level)


def _build_per_class(df, metric, rows, datasets, methods, conditions, categories, display) -> _Grid:
    cells = _per_category(df, [metric], rows, datasets, methods, conditions, categories)
    if len(cells.ds_order) > 1:
        raise ValueError(
            f"per-class tables are per dataset; rows hold {cells.ds_order}: pass datasets=[one of them]"
        )
    if not cells.ds_order:
        return _Grid(pd.DataFrame(), pd.DataFrame(), "Category")
    ds = cells.ds_order[0]
    pairs = cells.cond_order[ds]
    labels = _cond_labels(pairs)
    present = set(cells.has_ok.index.get_level_values("category"))  # any status
    cats = list(categories) if categories is not None else sorted(present)
    cats = [c for c in cats if c in present]
    n_exp = cells.n_expected.get(ds, len(cats))
    keys = [rows, *_COLUMN, "category"]
    table = cells.per_cat.set_index(keys)[metric]
    short = cells.short([metric])[metric]
    failed_at = cells.failed(keys)

    col_tuples, values, partial, failed = [], {}, {}, {}
    for pair in pairs:
        for r, label in zip(cells.row_order, cells.labels(display)):
            col = (labels[pair], label)
            at = [(r, ds, *pair, c) for c in cats]
            v = [table.get(k, np.nan) for k in at]
            p = [bool(short.get(k, False)) for k in at]
            f = [bool(failed_at.get(k, False)) for k in at]
            arr = np.array(v, dtype=float)
            n = int(np.isfinite(arr).sum())
            values[col] = v + [arr[np.isfinite(arr)].mean() if n else np.nan]
            partial[col] = p + [bool(n and (n < n_exp or any(p)))]
            failed[col] = f + [any(f) and not n]
            col_tuples.append(col)
    index = cats + [MEAN]
    columns = pd.MultiIndex.from_tuples(col_tuples, names=["condition", rows])
    frames = [pd.DataFrame({i: d[c] for i, c in enumerate(col_tuples)}, index=index, dtype=t)
              for d, t in ((values, float), (partial, bool), (failed, bool))]
    for frame in frames:
        frame.columns, frame.index.name = columns, "category"
    vals, part, fail = frames
    return _Grid(vals, part, "Category", rules=[len(cats)], failed=fail)


def _as_list(x) -> list | None:
    if x is None:
        return None
    return [x] if isinstance(x, str) else list(x)
