"""Published numbers of the papers this benchmark reproduces (TTAD, GNL).

``published_results.csv`` (shipped inside the package) holds one row per
(paper, table, metric, dataset, method, corruption, severity) with the value in percent, as
printed. Corruption ``clean`` has severity 0. ``published_domains.csv`` holds GNL's domain-shift
tables (3-10: MNIST / MNIST-M, PACS) with a test ``domain``, a ``category`` (the normal class
of a per-class row, "" for a mean over classes, ``even`` for MNIST's multi-class setting) and a
``setting`` (``one-vs-all`` / ``multi-class``, or Table 6's lambdas); its notes on the paper's
inconsistencies are in ``published_domains.md``. Both read as one frame: the corruption tables
with domain = category = setting = "", the domain tables with corruption ``clean``, severity 0.
Table 6's rows are labelled by their lambdas as printed ("0.95, 0.025, 0.025"), its first column.
``published_categories.csv`` holds the per-class corruption tables (TTAD Table 2: MVTec 3D-AD under
Gaussian point noise, one row per class and the printed mean as category ""), with domain =
setting = "".
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = ["published", "layout", "tables", "normalize_method", "PAPER_DATASETS"]

_COLUMNS = ["paper", "table", "metric", "dataset", "category", "domain", "setting", "method", "corruption",
            "severity", "value"]
# The published numbers' dataset key of our dataset names, where they differ.
PAPER_DATASETS = {"realiad": "real_iad"}
_LAMBDAS = re.compile(r"lambda_ori=([\d.]+);lambda_abs=([\d.]+);lambda_lowf=([\d.]+)")


def _read(name: str) -> pd.DataFrame:
    with resources.files("bench").joinpath(name).open("rb") as fh:
        return pd.read_csv(fh, dtype={"category": str, "domain": str, "setting": str})


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    corruptions = _read("published_results.csv").assign(category="", domain="", setting="")
    domains = _read("published_domains.csv").assign(corruption="clean", severity=0)
    per_class = _read("published_categories.csv").assign(domain="", setting="")
    df = pd.concat([corruptions, domains, per_class], ignore_index=True)
    for col in ("category", "domain", "setting"):
        df[col] = df[col].fillna("").astype(str)
    lambdas = df["setting"].str.fullmatch(_LAMBDAS.pattern)
    df.loc[lambdas, "method"] = df.loc[lambdas, "setting"].str.replace(_LAMBDAS, r"\1, \2, \3", regex=True)
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
