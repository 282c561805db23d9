"""Published numbers of the papers this benchmark reproduces (TTAD, GNL).

``published_results.csv`` (shipped inside the package) holds one row per
(paper, table, metric, dataset, method, corruption, severity) with the value in percent, as
printed. Corruption ``clean`` has severity 0.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = ["published", "layout", "tables", "normalize_method"]

_COLUMNS = ["paper", "table", "metric", "dataset", "method", "corruption", "severity", "value"]


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    with resources.files("bench").joinpath("published_results.csv").open("rb") as fh:
        df = pd.read_csv(fh)
    df["table"] = df["table"].astype(int)
    df["severity"] = df["severity"].astype(int)
    return df[_COLUMNS]


def normalize_method(name: str) -> str:
    """Key for matching method names across spellings: "CFLOW-AD" ~ "cflow_ad", "TTT++" ~ "ttt++"."""
    return re.sub(r"[\s_\-]", "", str(name)).casefold()


def published(
    paper: str | None = None,
    table: int | None = None,
    metric: str | None = None,
    dataset: str | None = None,
    method: str | None = None,
) -> pd.DataFrame:
    """Published rows, filtered by any of the arguments (method case-insensitively)."""
    df = _load()
    mask = pd.Series(True, index=df.index)
    if paper is not None:
        mask &= df["paper"].str.casefold() == paper.casefold()
    if table is not None:
        mask &= df["table"] == int(table)
    if metric is not None:
        mask &= df["metric"] == metric
    if dataset is not None:
        mask &= df["dataset"] == dataset
    if method is not None:
        mask &= df["method"].map(normalize_method) == normalize_method(method)
    return df[mask].reset_index(drop=True)


def tables() -> pd.DataFrame:
    """One row per published table: paper, table, metrics, datasets, number of methods."""
    df = _load()
    out = df.groupby(["paper", "table"], sort=False).agg(
        metrics=("metric", lambda s: list(dict.fromkeys(s))),
        datasets=("dataset", lambda s: list(dict.fromkeys(s))),
        n_methods=("method", "nunique"),
    )
    return out.reset_index()


def layout(paper: str, table: int) -> dict:
    """The shape of a published table, in print order.

    Returns ``{"metrics": [...], "datasets": [...], "conditions": [(corruption, severity)...],
    "methods": [...]}``.
    """
    df = published(paper=paper, table=table)
    if df.empty:
        raise KeyError(f"no published table {paper!r} {table!r}; see bench.papers.tables()")
    return {
        "metrics": list(dict.fromkeys(df["metric"])),
        "datasets": list(dict.fromkeys(df["dataset"])),
        "conditions": list(dict.fromkeys(zip(df["corruption"], df["severity"].astype(int)))),
        "methods": list(dict.fromkeys(df["method"])),
    }
