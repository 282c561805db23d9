"""What every figure shares: the run's rows, the style, PNG + PDF output, labels."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import BenchError
from ..results import RunStore, load_rows
from ..tables.aggregate import PREFERRED, _norm_conditions, _resolve_labels, _variant_values, mixed_configs
from ..tables.names import _condition_rank, _domain_rank, condition_label, config_fields, method_display, method_rank

DPI = 200  # PNG resolution; the PDF is vector
# A condition: (test domain, corruption, severity); domain "" for a dataset's own test split.
Cond = tuple[str, str, int]
# Series styles: tab20's ten dark shades (tab10's colours), then its ten light ones, and 7 markers
# (7 is prime to 20), so (colour, marker) repeats only after 140 series; bars, which have no
# marker, get a hatch after 20.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
HATCHES = ("", "//", "..", "xx")


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported here only."""
    try:
        import matplotlib
    except ImportError:
        raise BenchError("bench plot needs matplotlib: pip install 'adshift-bench[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "figure.dpi": 100, "savefig.bbox": "tight", "axes.grid": False,
                         # embed TrueType (Type 42), not Type 3 fonts: conference PDF checkers reject Type 3
                         "pdf.fonttype": 42, "ps.fonttype": 42})
    return plt


@functools.cache
def _colors() -> tuple:
    """tab20's dark shades (tab10's colours), then its light ones; read once, rcParams untouched."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    return tuple(tab20[0::2] + tab20[1::2])


def style(i: int) -> dict:
    """Colour, marker and hatch of series ``i``: distinct for 140 lines or 80 bars."""
    colors = _colors()
    return {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)],
            "hatch": HATCHES[i // len(colors) % len(HATCHES)]}


def method_styles(methods: Sequence[str]) -> dict[str, dict]:
    """A style per method from its place in the registry's order, so that a method keeps its colour
    whichever ``--methods`` a figure draws; methods not registered follow, in the given order."""
    rank = method_rank()
    registry = sorted(rank, key=lambda m: (rank[m], m))
    extra = [m for m in dict.fromkeys(methods) if m not in rank]
    return {m: style(registry.index(m) if m in rank else len(registry) + extra.index(m)) for m in methods}


def save(fig, out: Path, stem: str) -> list[Path]:
    """Write ``out/stem.png`` and ``out/stem.pdf``; close the figure."""
    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def ok_rows(run: Path) -> pd.DataFrame:
    """The run's ok rows, severity 0 for clean; one line when there are none."""
    try:
        df = load_rows(run)
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from None
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    if df.empty:
        raise BenchError(f"{run}: no finished (ok) rows to plot")
    return _norm_conditions(df).reset_index(drop=True)


def select(df: pd.DataFrame, run: Path, methods: Sequence[str] | None = None,
           categories: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """Rows of the chosen methods, categories and seeds; one line naming what exists otherwise."""
    for column, wanted in (("method", methods), ("category", categories), ("seed", seeds)):
        if not wanted:
            continue
        present = list(dict.fromkeys(df[column]))
        if column == "method":
            wanted = _resolve_labels(wanted, present)
        missing = [w for w in wanted if w not in present]
        if missing:
            raise BenchError(f"{run}: no rows with {column} {', '.join(map(str, missing))} "
                             f"(it has {', '.join(map(str, present))})")
        df = df[df[column].isin(wanted)]
    return df


def config_variants(df: pd.DataFrame, shown: Sequence[str] = ()) -> tuple[pd.Series, dict[str, str]]:
    """One series key per (method, config): the method's name while it has one config in the
    rows, else ``method#hash`` (a run can hold several configs of one method, e.g. the TTAD
    ablation's readings; summing or averaging them into one bar would be a wrong number).
    Returns the keys (aligned with ``df``) and a label per key, one per key: the display name, plus
    the ``shown`` config fields and every field that tells the variants of a method apart (the
    config hash too where those do not, e.g. a config that does not parse)."""
    if "config_hash" not in df.columns or "config" not in df.columns:
        return df["method"].astype(str), {m: method_label(m) for m in df["method"].unique()}
    several = set(mixed_configs(df))
    keys = pd.Series([f"{m}#{h[:8]}" if m in several else m for m, h in zip(df["method"], df["config_hash"])],
                     index=df.index)
    labels = {}
    for method, rows in df.groupby("method", sort=False):
        details = config_fields(dict(zip(rows["config_hash"], rows["config"])), shown)
        for h, detail in details.items():
            key = f"{method}#{h[:8]}" if method in several else method
            tag = f" #{h[:8]}" if method in several and sum(d == detail for d in details.values()) > 1 else ""
            lines = [", ".join(detail[i:i + 2]) for i in range(0, len(detail), 2)]  # two fields a line
            labels[key] = "\n".join([method_label(method) + tag, *lines])
    return keys, labels


def one_config_each(df: pd.DataFrame, run: Path) -> tuple[pd.DataFrame, str]:
    """The rows of one config per method (and of one protocol and test subset), and a note for the
    figure naming the kept ones ("" when no method has several). A run can hold several configs
    of one method (an ablation's readings, a second grid with ``--set``); a line or panel per
    method of their mean would be a wrong
    number. Kept: the method's default config on the rows' dataset where the rows have it, else
    the first in row order (the rows' order is the order they finished in). A warning says which,
    and how to plot another."""
    from ..grid import default_config_hash
    from ..methods.errors import warn

    keep = pd.Series(True, index=df.index)
    notes = []
    for method in mixed_configs(df):
        rows = df[df["method"] == method]
        hashes = list(dict.fromkeys(rows["config_hash"]))
        default = default_config_hash(method, str(rows["dataset"].iloc[0]))
        chosen, why = ((default, "its default config") if default in hashes else
                       (hashes[0], "the first in row order; its default config is not among them"))
        keep &= (df["method"] != method) | (df["config_hash"] == chosen)
        notes.append(f"{method_label(method)}: config {chosen} ({why}), 1 of {len(hashes)}")
        others = ", ".join(h for h in hashes if h != chosen)
        warn(f"{run}: the rows hold {len(hashes)} configs of {method}; this figure shows config {chosen} "
             f"only ({why}), not {others}; to plot another, give bench plot a Parquet file of that config's "
             "rows only (rows[rows.config_hash == HASH].to_parquet(FILE)) or a run directory of its grid alone")
    # the other things that tell a method's rows apart (a second grid with --protocol or
    # --test-subset into one run): one of them, as the tables show first, never their mean
    for column, preferred in PREFERRED.items():
        if column not in df.columns:
            continue
        values = _variant_values(df, "method", column)
        for method, kept in values[keep].groupby(df["method"][keep], sort=False):
            found = list(dict.fromkeys(kept))
            if len(found) > 1:
                chosen = preferred if preferred in found else found[0]
                keep &= (df["method"] != method) | (values == chosen)
                notes.append(f"{method_label(method)}: {column} {chosen}, 1 of {len(found)}")
                warn(f"{run}: the rows of {method} hold {len(found)} values of {column} "
                     f"({', '.join(map(str, found))}); this figure shows {column} {chosen} only; to plot "
                     "another, give bench plot a run directory of its grid alone")
    return df[keep], "; ".join(notes)


def method_order(df: pd.DataFrame, methods: Sequence[str] | None = None) -> list[str]:
    present = list(dict.fromkeys(df["method"]))
    if methods:
        return [m for m in _resolve_labels(methods, present) if m in present]
    rank = method_rank()  # the order given at registration, as the tables use
    return sorted(present, key=lambda m: (rank.get(m, float("inf")), present.index(m)))


def method_label(name: str) -> str:
    return method_display(name)


def cond_label(domain: str, corruption: str, severity: int) -> str:
    """"Contrast (s5)", "Clean"; with a test domain, as the tables name it: "MNIST-M + Contrast (s5)",
    "MNIST-M" (its clean images)."""
    return condition_label(corruption, severity, with_severity=corruption != "clean", domain=domain)


def at(df: pd.DataFrame, method: str, cond: Cond) -> pd.DataFrame:
    """The rows of ``method`` in one condition."""
    domain, corruption, severity = cond
    return df[(df["method"] == method) & (df["domain"] == domain) & (df["corruption"] == corruption)
              & (df["severity"] == severity)]


def store(run: Path) -> RunStore:
    return RunStore(run)


def conditions_of(df: pd.DataFrame, wanted: Sequence[str] | None, run: Path,
                  with_clean: bool = False) -> list[Cond]:
    """(domain, corruption, severity) conditions, test domains kept apart (one domain's clean images
    are not another's), in the tables' order: domain, then corruption (noise, blur, weather,
    digital), then severity. ``wanted`` items: ``gaussian_noise@5``, ``gaussian_noise`` (its highest
    severity) or ``clean``, each in every domain that has it, or a domain's name (its default
    conditions). Default: in each domain, every corruption at its highest severity, after clean when
    ``with_clean`` and the rows have it (clean alone when the domain has no corrupted rows)."""
    domains = sorted(set(df["domain"]), key=_domain_rank) or [""]
    present = sorted({(d, c, int(s)) for d, c, s in zip(df["domain"], df["corruption"], df["severity"])
                      if c != "clean"}, key=_condition_rank)
    with_rows = set(zip(df["domain"], df["corruption"]))

    def defaults(domain: str) -> list[Cond]:
        best: dict[str, int] = {}
        for d, c, s in present:
            if d == domain:
                best[c] = max(best.get(c, 0), s)
        clean = [(domain, "clean", 0)] if with_clean and (domain, "clean") in with_rows else []
        return (clean + [(domain, c, s) for c, s in best.items()]) or [(domain, "clean", 0)]

    if not wanted:
        return [c for d in domains for c in defaults(d)]
    out: list[Cond] = []
    for item in wanted:
        name, _, sev = item.partition("@")
        if name == "clean":
            found = [(d, "clean", 0) for d in domains]
        elif item in domains and item not in {c for _, c, _ in present}:
            found = defaults(item)
        else:
            found = [max(options, key=lambda p: p[2]) for d in domains
                     if (options := [p for p in present if p[:2] == (d, name) and (not sev or str(p[2]) == sev)])]
        if not found:
            shown = ", ".join(dict.fromkeys(f"{c}@{s}" for _, c, s in present)) or "none"
            named = f"; test domains: {', '.join(domains)}" if domains != [""] else ""
            raise BenchError(f"--conditions {item}: no such condition in {run} (corrupted conditions: {shown}{named})")
        out += [c for c in found if c not in out]
    return sorted(out, key=lambda c: _domain_rank(c[0]))  # stable: the given order within a domain


def one_category_seed(df: pd.DataFrame, category: str | None, seed: int | None) -> tuple[pd.DataFrame, str, int]:
    """Rows of one category and seed (default: the first category, the smallest seed): scores and
    maps of different categories or seeds are not on one scale."""
    category = category or sorted(df["category"])[0]
    seed = int(seed if seed is not None else df["seed"].min())
    return df[(df["category"] == category) & (df["seed"] == seed)], category, seed
