"""Tables of differences (``bench table --relative``): how much a method loses under shift
(``clean``), or how much it wins back over another method (a method's name, e.g. ``patchcore``).

Differences are taken per cell, before anything is averaged: a shifted cell minus its own clean
cell (same method and variant, dataset, category and seed; with test domains, the
in-distribution domain's clean cell), or a method's cell minus the reference method's cell of
the same condition, category and seed (and protocol and test subset). The table's mean over
categories and seeds is then a mean of paired differences, and its ± std the spread of the
per-seed ones. A cell whose partner is missing or failed gives no difference: its column is
marked partial, as for any missing cell.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..datasets.corruptions import CLEAN
from ..errors import BenchError
from .aggregate import VARIANT, _resolve_labels, _variant_values, cell_frame
from .names import is_reference, method_display


def relative_rows(df: pd.DataFrame, metrics: Sequence[str], to: str) -> tuple[pd.DataFrame, str]:
    """``df`` with each metric replaced by its difference from the reference cell, and the note that
    says what the table's numbers are. The reference cells (clean, or ``to``'s rows) keep their
    values: they are the baseline the differences are read against."""
    df = cell_frame(df, metrics)
    ok = df["status"] == "ok" if "status" in df.columns else pd.Series(True, index=df.index)
    ident = pd.DataFrame({c: _variant_values(df, "method", c) for c in VARIANT}, index=df.index)
    if to == CLEAN:
        reference = ok & pd.Series([is_reference(ds, (d, c)) for ds, d, c in
                                    zip(df["dataset"], df["domain"], df["corruption"])], index=df.index)
        keys = pd.concat([df[["method", "dataset", "category", "seed"]], ident], axis=1)
        note = ("Differences: each shifted value is the method's value minus its own clean value on the same "
                "category and seed; the clean column is the value itself.")
    else:
        methods = list(dict.fromkeys(df["method"]))
        base = _resolve_labels([to], methods)[0]  # "PatchCore" -> "patchcore"
        if base not in methods:
            raise BenchError(f"--relative {to}: no rows of that method here (methods: {', '.join(methods)}); "
                             f"use clean or one of them")
        configs = ident.loc[df["method"] == base, "config_hash"].nunique()
        if configs > 1:
            raise BenchError(f"--relative {to}: its rows hold {configs} configs; the differences need one "
                             "(select its rows of one config first)")
        reference = ok & (df["method"] == base)
        keys = pd.concat([df[["dataset", "domain", "corruption", "severity", "category", "seed"]],
                          ident[["protocol", "test_subset"]]], axis=1)
        note = (f"Differences: each method's value minus {method_display(base)}'s on the same condition, category "
                f"and seed; {method_display(base)}'s row is the value itself.")
    key = keys.astype(str).agg("\x1f".join, axis=1)
    partner = df.loc[reference, list(metrics)].groupby(key[reference]).mean()  # one cell each, unless runs merged
    shifted = ok & ~reference
    matched = partner.reindex(key[shifted]).to_numpy()  # NaN where the partner is missing or failed
    df.loc[shifted, list(metrics)] = df.loc[shifted, list(metrics)].to_numpy() - matched
    return df, note

