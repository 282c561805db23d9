"""What every figure shares: the run's rows, the style, PNG + PDF output, labels."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import BenchError
from ..results import RunStore, load_rows
from ..tables.aggregate import _norm_conditions, _resolve_labels, mixed_configs
from ..tables.names import _corruption_rank, condition_label, method_display, method_rank

DPI = 200  # PNG resolution; the PDF is vector


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported here only."""
    try:
        import matplotlib
    except ImportError:
        raise BenchError("bench plot needs matplotlib: pip install 'adshift-bench[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "figure.dpi": 100, "savefig.bbox": "tight", "axes.grid": False})
    return plt


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
    Returns the keys (aligned with ``df``) and a label per key: the display name, plus the config
    fields that tell the variants of a method apart (and the ``shown`` fields, always)."""
    if "config_hash" not in df.columns or "config" not in df.columns:
        return df["method"].astype(str), {m: method_label(m) for m in df["method"].unique()}
    several = set(mixed_configs(df))
    keys = pd.Series([f"{m}#{h[:8]}" if m in several else m for m, h in zip(df["method"], df["config_hash"])],
                     index=df.index)
    labels = {}
    for method, rows in df.groupby("method", sort=False):
        configs = {h: _config(c) for h, c in zip(rows["config_hash"], rows["config"])}
        differing = [k for k in dict.fromkeys(k for c in configs.values() for k in c)
                     if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
        fields = list(dict.fromkeys([*(k for k in shown if any(k in c for c in configs.values())), *differing]))[:4]
        for h, cfg in configs.items():
            detail = ", ".join(f"{k} {cfg.get(k)}" for k in fields)
            key = f"{method}#{h[:8]}" if method in several else method
            tag = "" if detail or method not in several else f" #{h[:8]}"
            labels[key] = method_label(method) + tag + (f"\n{detail}" if detail else "")
    return keys, labels


def _config(text: object) -> dict:
    try:
        cfg = json.loads(str(text))
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def warn_mixed_configs(df: pd.DataFrame, run: Path) -> None:
    """Say once when a figure would average several configs of one method together."""
    several = mixed_configs(df)
    if several:
        from ..methods.errors import warn

        warn(f"{run}: rows of {', '.join(several)} hold several configs and are averaged together in this "
             "figure; plot one grid's run directory, or export the rows of one config")


def method_order(df: pd.DataFrame, methods: Sequence[str] | None = None) -> list[str]:
    present = list(dict.fromkeys(df["method"]))
    if methods:
        return [m for m in _resolve_labels(methods, present) if m in present]
    rank = method_rank()  # the order given at registration, as the tables use
    return sorted(present, key=lambda m: (rank.get(m, float("inf")), present.index(m)))


def method_label(name: str) -> str:
    return method_display(name)


def cond_label(corruption: str, severity: int) -> str:
    return condition_label(corruption, severity, with_severity=corruption != "clean")


def store(run: Path) -> RunStore:
    return RunStore(run)


def conditions_of(df: pd.DataFrame, wanted: Sequence[str] | None, run: Path,
                  with_clean: bool = False) -> list[tuple[str, int]]:
    """``gaussian_noise@5``, ``gaussian_noise`` (its highest severity) or ``clean``; default: every
    corruption at its highest severity, after clean when ``with_clean`` and the rows have it
    (clean alone when the run has no corrupted rows)."""
    # the tables' corruption order (noise, blur, weather, digital), then severity
    present = sorted({(c, int(s)) for c, s in zip(df["corruption"], df["severity"]) if c != "clean"},
                     key=lambda p: (_corruption_rank(p[0]), p[1]))
    if not wanted:
        best: dict[str, int] = {}
        for c, s in present:
            best[c] = max(best.get(c, 0), s)
        clean = [("clean", 0)] if with_clean and (df["corruption"] == "clean").any() else []
        return (clean + list(best.items())) or [("clean", 0)]
    out = []
    for item in wanted:
        name, _, sev = item.partition("@")
        options = [p for p in present if p[0] == name and (not sev or p[1] == int(sev))]
        if name == "clean":
            options = [("clean", 0)]
        if not options:
            shown = ", ".join(f"{c}@{s}" for c, s in present) or "none"
            raise BenchError(f"--conditions {item}: no such condition in {run} (corrupted conditions: {shown})")
        out.append(max(options, key=lambda p: p[1]))
    return out


def one_category_seed(df: pd.DataFrame, category: str | None, seed: int | None) -> tuple[pd.DataFrame, str, int]:
    """Rows of one category and seed (default: the first category, the smallest seed): scores and
    maps of different categories or seeds are not on one scale."""
    category = category or sorted(df["category"])[0]
    seed = int(seed if seed is not None else df["seed"].min())
    return df[(df["category"] == category) & (df["seed"] == seed)], category, seed
