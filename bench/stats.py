"""Bootstrap statistics over test images: per-cell intervals, intervals of table means, paired tests.

Every statistic resamples a cell's test images stratified by label (normal and anomalous images
drawn separately, with replacement, in their own counts), so every resample holds both classes
and AUROC is always defined. The draw is seeded by the cell's dataset, category, condition and
seed - never by the method - so two methods' rows of one cell see the same resamples: that is
what makes ``paired_test`` paired, and why a table's interval over one cell equals its row's.

The metrics that can be resampled are those with a ``resampled`` function in the metrics
registry (image AUROC); each gets ``<metric>_ci_low`` / ``<metric>_ci_high`` in the rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import BenchError
from .metrics import METRICS, Metric
from .methods.persist import stable_hash

LEVEL = 0.95
DEFAULT_RESAMPLES = 1000
_CHUNK = 250  # resamples per rank pass: bounds memory at CHUNK x images floats
_CELL = ("dataset", "category", "corruption", "severity", "seed")


def resampled_metrics() -> dict[str, Metric]:
    return {name: m for name, m in METRICS.items() if m.resampled is not None}


def interval_columns(metric: str) -> tuple[str, str]:
    return f"{metric}_ci_low", f"{metric}_ci_high"


INTERVAL_COLUMNS: tuple[str, ...] = tuple(c for m in resampled_metrics() for c in interval_columns(m))


def cell_key(dataset: str, category: str, corruption: str, severity: int, seed: int) -> int:
    """The resampling seed of a cell (no method in it: paired across methods)."""
    severity = 0 if corruption == "clean" else int(severity)
    return int(stable_hash([str(dataset), str(category), str(corruption), severity, int(seed)], 15), 16)


def replicates(labels, scores: Sequence[np.ndarray], key: int, resamples: int,
               metric: str = "image_auroc") -> np.ndarray:
    """(len(scores), resamples): ``metric`` of each score vector on the same stratified resamples."""
    fn = METRICS[metric].resampled
    if fn is None:
        raise BenchError(f"{metric} has no resampled form in the metrics registry; "
                         f"use one of {', '.join(resampled_metrics())}")
    y = np.asarray(labels).reshape(-1).astype(bool)
    pos_idx, neg_idx = np.flatnonzero(y), np.flatnonzero(~y)
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    out = np.full((len(arrays), resamples), np.nan)
    if len(pos_idx) == 0 or len(neg_idx) == 0:
        return out  # one class: undefined, as the metric itself
    rng = np.random.default_rng(key)
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        p = pos_idx[rng.integers(0, len(pos_idx), (b, len(pos_idx)))]
        n = neg_idx[rng.integers(0, len(neg_idx), (b, len(neg_idx)))]
        for i, s in enumerate(arrays):
            out[i, start:start + b] = fn(s[p], s[n])
    return out


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.nanpercentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def check_level(level: float) -> float:
    if not 0.5 <= level < 1.0:
        raise BenchError(f"--level {level}: use a confidence level in [0.5, 1), e.g. 0.95")
    return level


# A 95 % interval's ends are the 2.5th and 97.5th percentiles of the resamples: below this they are
# a few draws (one resample gives an interval that need not hold its own estimate), and a p-value's
# resolution is 1 / resamples. Above the ceiling the replicates' arrays outgrow a workstation.
MIN_RESAMPLES, MAX_RESAMPLES = 100, 100_000


def check_resamples(resamples: int, what: str = "--bootstrap", none_ok: bool = True) -> int:
    """``resamples`` when usable; ``none_ok``: 0 (no intervals) is too."""
    if (none_ok and resamples == 0) or MIN_RESAMPLES <= resamples <= MAX_RESAMPLES:
        return resamples
    zero = "0 (no intervals) or " if none_ok else ""
    raise BenchError(f"{what} {resamples}: use {zero}{MIN_RESAMPLES} to {MAX_RESAMPLES:,} resamples, e.g. 1000")


def cell_intervals(labels, scores, key: int, resamples: int, level: float = LEVEL) -> dict[str, float]:
    """The row's interval columns (NaN when ``resamples`` is 0)."""
    out: dict[str, float] = {"bootstrap_resamples": int(resamples)}
    for name in resampled_metrics():
        lo = hi = float("nan")
        if resamples:
            lo, hi = percentile_interval(replicates(labels, [scores], key, resamples, name)[0], level)
        out.update(dict(zip(interval_columns(name), (lo, hi))))
    return out


# --------------------------------------------------------------------------- from rows


PER_IMAGE = ("image_ids", "image_labels", "image_scores")  # what a resample draws from


def has_per_image(df: pd.DataFrame) -> bool:
    return all(c in df.columns and df[c].notna().all() for c in PER_IMAGE)


def require_per_image(df: pd.DataFrame, what: str) -> None:
    if not has_per_image(df):
        lack = next(c for c in PER_IMAGE if c not in df.columns or df[c].isna().any())
        raise BenchError(f"{what} needs the per-image scores of every row ({lack}); rows written "
                         "before they were recorded lack them: delete those parts and rerun the grid")


def _arrays(row) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(row["image_labels"], dtype=np.int64), np.asarray(row["image_scores"], dtype=np.float64)


def _row_key(row) -> int:
    return cell_key(*(row[c] for c in _CELL))


def _severity(row) -> int:
    return 0 if row["corruption"] == "clean" else int(row["severity"])


def joint_keys(rows: pd.DataFrame) -> dict:
    """Row index -> resampling key, the same for every row of one test image set.

    A category's conditions and seeds score the same test images (corrupted or not), so their
    errors are correlated; a mean over them is resampled jointly - one draw of images per image
    set - or its interval comes out too narrow. The set's key is that of its first cell (sorted
    by corruption, severity, seed), so a lone cell keeps its own key and row interval."""
    groups: dict[tuple, list] = {}
    for idx, r in rows.iterrows():
        groups.setdefault((r["dataset"], r["category"], r.get("domain", ""), tuple(r["image_ids"])), []).append(
            (str(r["corruption"]), _severity(r), int(r["seed"]), idx))
    keys = {}
    for (dataset, category, _, _), members in groups.items():
        corruption, severity, seed, _ = min(members, key=lambda m: m[:3])
        key = cell_key(dataset, category, corruption, severity, seed)
        keys.update({idx: key for *_, idx in members})
    return keys


def mean_interval(rows: pd.DataFrame, metric: str, resamples: int, level: float = LEVEL) -> tuple[float, float]:
    """Interval of a table value over ``rows``: per resample, the tables' own averaging (mean over
    seeds within a category, then over categories, then over conditions), the cells of one test
    image set resampled jointly (``joint_keys``). NaN when ``metric`` cannot be resampled or a
    row lacks per-image scores."""
    from .results import with_domain

    if METRICS[metric].resampled is None or rows.empty or not has_per_image(rows):
        return float("nan"), float("nan")
    rows = with_domain(rows).reset_index(drop=True)  # joint_keys is keyed by index label
    keys = joint_keys(rows)
    per_cond = []
    for _, cond_rows in rows.groupby(["domain", "corruption", "severity"], sort=False):
        per_cat = []
        for _, cat_rows in cond_rows.groupby("category", sort=False):
            reps = []
            for idx, r in cat_rows.iterrows():
                labels, scores = _arrays(r)
                reps.append(replicates(labels, [scores], keys[idx], resamples, metric)[0])
            per_cat.append(np.mean(reps, axis=0))
        per_cond.append(np.mean(per_cat, axis=0))
    return percentile_interval(np.mean(per_cond, axis=0), level)


@dataclass(frozen=True)
class Difference:
    """metric(A) - metric(B) on one cell (or all of them: ``cell`` = "overall")."""

    cell: str
    n_images: int
    a: float
    b: float
    diff: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def _p_value(reps: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": twice the smaller tail beyond 0."""
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan")
    below = np.mean(reps < 0) + 0.5 * np.mean(reps == 0)
    return float(min(1.0, 2.0 * min(below, 1.0 - below)))


def paired_difference(labels, scores_a, scores_b, key: int, resamples: int, level: float = LEVEL,
                      metric: str = "image_auroc", cell: str = "") -> tuple[Difference, np.ndarray]:
    """One cell's paired bootstrap: both methods' scores on the same resampled images."""
    fn = METRICS[metric].function
    reps = replicates(labels, [scores_a, scores_b], key, resamples, metric)
    d = reps[0] - reps[1]
    a, b = fn(labels, scores_a), fn(labels, scores_b)
    lo, hi = percentile_interval(d, level)
    return Difference(cell, len(np.asarray(labels).reshape(-1)), a, b, a - b, lo, hi, _p_value(d)), d


def _by_cell(rows: pd.DataFrame, match: tuple[str, ...]) -> dict[tuple, pd.Series]:
    """One row per cell; two rows of one cell (two configs of a method) would pair arbitrarily."""
    out: dict[tuple, pd.Series] = {}
    for idx, r in rows.iterrows():
        k = tuple(r[c] for c in match)
        if k in out:
            method = r.get("method", "the method")
            raise BenchError(f"{_label(r)}: {method} has several rows of this cell (several configs, protocols or "
                             "test subsets in these rows); compare one of them: name it as bench table labels its row")
        out[k] = r
    return out


def paired_test(rows_a: pd.DataFrame, rows_b: pd.DataFrame, resamples: int = DEFAULT_RESAMPLES,
                level: float = LEVEL, metric: str = "image_auroc") -> list[Difference]:
    """Per matched cell (same dataset, category, domain, condition, seed and test images), then
    "overall": the mean difference over the matched cells, each weighing the same, the cells of
    one test image set resampled jointly (``joint_keys``; the per-cell lines use each cell's key)."""
    from .results import with_domain

    match = (*_CELL, "domain")
    cells_a, cells_b = _by_cell(with_domain(rows_a), match), _by_cell(with_domain(rows_b), match)
    shared = [k for k in cells_a if k in cells_b]
    if not shared:
        raise BenchError("the two methods share no cell (dataset, category, domain, condition and seed) in these rows")
    pairs = [(cells_a[k], cells_b[k]) for k in shared]
    keys = joint_keys(pd.DataFrame([ra for ra, _ in pairs]).reset_index(drop=True))
    out, reps, a_vals, b_vals, n = [], [], [], [], 0
    for i, (ra, rb) in enumerate(pairs):
        if list(ra["image_ids"]) != list(rb["image_ids"]):
            raise BenchError(f"{_label(ra)}: the two methods' rows were scored on different test images; "
                             "compare rows of one run (same --test-subset)")
        labels, sa = _arrays(ra)
        _, sb = _arrays(rb)
        diff, d = paired_difference(labels, sa, sb, _row_key(ra), resamples, level, metric, _label(ra))
        if keys[i] != _row_key(ra):
            joint = replicates(labels, [sa, sb], keys[i], resamples, metric)
            d = joint[0] - joint[1]
        else:
            n += diff.n_images  # the image set's first cell: count its images once
        out.append(diff)
        reps.append(d)
        a_vals.append(diff.a)
        b_vals.append(diff.b)
    d = np.nanmean(np.stack(reps), axis=0)
    a, b = float(np.nanmean(a_vals)), float(np.nanmean(b_vals))
    lo, hi = percentile_interval(d, level)
    out.append(Difference("overall", n, a, b, a - b, lo, hi, _p_value(d)))
    return out


def _label(row) -> str:
    cond = "clean" if row["corruption"] == "clean" else f"{row['corruption']}@{int(row['severity'])}"
    where = f"{row['category']} / {row['domain']}" if row.get("domain") else row["category"]
    return f"{where} / {cond} / seed {int(row['seed'])}"
