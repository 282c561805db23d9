"""Rendering a table grid: rounding, best-per-group bold, LaTeX (Styler + booktabs polish), Markdown."""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from ..metrics import METRICS
from .aggregate import _Grid

_FRACTION_METRICS = {name for name, m in METRICS.items() if m.scale == 100}
_NA = {"latex": "--", "markdown": "–"}  # no value: not run, or nothing to measure (no ground truth)
_DAGGER = {"latex": r"$^\dagger$", "markdown": "†"}
FAILED = "failed"  # no value because every cell of it failed: not the same as "–"
# What the marks mean, under every table that shows them (text; latex_notes writes the LaTeX)
NOTES = {
    "partial": "† partial: the mean lacks cells the run has for its column (a category or seed that "
               "failed, has not run yet or has no value of this metric); never bold",
    "failed": f"{FAILED}: every cell of the value failed (the rows' status and error say why; "
              "bench grid --retry-failed reruns them)",
}


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


_PM = {"latex": r" $\pm$ ", "markdown": " ± "}


def _cells(shown: pd.DataFrame, partial: pd.DataFrame, decimals: int, fmt: str,
           std: pd.DataFrame | None = None, low: pd.DataFrame | None = None,
           high: pd.DataFrame | None = None, failed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Formatted cells: value, dagger when partial, "± std" and "[lo, hi]" where given (finite);
    a missing value "failed" where every cell of it failed, else "–"."""
    nan = np.full(shown.shape, np.nan)
    s, lo, hi = ((x.to_numpy(float) if x is not None else nan) for x in (std, low, high))
    f = failed.to_numpy(bool) if failed is not None else np.zeros(shown.shape, bool)

    def one(v, p, fl, sd, a, b):
        if v is None or not math.isfinite(v):
            return FAILED if fl else _NA[fmt]
        text = f"{v:.{decimals}f}" + (_DAGGER[fmt] if p else "")
        if math.isfinite(sd):
            text += f"{_PM[fmt]}{sd:.{decimals}f}"
        if math.isfinite(a) and math.isfinite(b):
            text += f" [{a:.{decimals}f}, {b:.{decimals}f}]"
        return text

    data = [[one(*t) for t in zip(*rows)]
            for rows in zip(shown.to_numpy(float), partial.to_numpy(bool), f, s, lo, hi)]
    return pd.DataFrame(data, index=shown.index, columns=shown.columns, dtype=object)


def _notes(shown: pd.DataFrame, grid: _Grid) -> list[str]:
    """The notes on the marks a table shows: a dagger (on a shown value), "failed"."""
    finite = np.isfinite(shown.to_numpy(float))
    marked = {"partial": (grid.partial.to_numpy(bool) & finite).any(),
              "failed": grid.failed is not None and (grid.failed.to_numpy(bool) & ~finite).any()}
    return [NOTES[k] for k, shown_ in marked.items() if shown_]


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}
# the marks and symbols the harness's own labels and notes use, as pdflatex needs them
_LATEX_UNICODE = {"\u2020": r"$^\dagger$", "\u2021": r"$^\ddagger$", "\u2013": "--", "\u2014": "---",
                  "\u00b1": r"$\pm$", "\u00d7": r"$\times$", "\u03c3": r"$\sigma$", "\u03bb": r"$\lambda$",
                  "\u2264": r"$\leq$", "\u2265": r"$\geq$", "\u2192": r"$\rightarrow$"}


def latex_text(text: str) -> str:
    """Plain text (a label, a note, a caption the harness writes) as LaTeX: special characters
    escaped, the harness's marks (dagger, double dagger, en dash, ...) as pdflatex macros."""
    return "".join(_LATEX_SPECIAL.get(ch) or _LATEX_UNICODE.get(ch, ch) for ch in str(text))


def latex_notes(notes: Sequence[str]) -> str:
    """Notes under a table (what a mark means), one line each, as a LaTeX block."""
    body = "\\\\\n".join(latex_text(n) for n in notes)
    return "\\begin{flushleft}\\footnotesize\n" + body + "\n\\end{flushleft}"


def _to_latex(cells, bold, grid: _Grid, caption, label, column_format) -> str:
    frame = cells.copy()
    frame.index = [latex_text(i) for i in frame.index]
    frame.index.name = None
    columns = [tuple(latex_text(x) for x in (c if isinstance(c, tuple) else (c,))) for c in frame.columns]
    # one header level: a plain Index (Styler prints a one-level MultiIndex's labels as tuples)
    frame.columns = pd.Index([c[0] for c in columns]) if len(columns[0]) == 1 else pd.MultiIndex.from_tuples(columns)
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
        lines[last] = re.sub(r"^\s*&", latex_text(grid.corner) + " &", lines[last], count=1)
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


def _render(grid: _Grid, fmt, scale, decimals, direction, groups, caption, label, column_format,
            notes: Sequence[str] = ()) -> str:
    if fmt not in ("latex", "markdown"):
        raise ValueError(f"fmt must be 'latex' or 'markdown', not {fmt!r}")
    shown = (grid.values * scale).round(decimals)
    bold = _best_mask(shown, grid.partial, groups(shown), direction)
    extra = [None if x is None else x * scale for x in (grid.std, grid.low, grid.high)]
    cells = _cells(shown, grid.partial, decimals, fmt, *extra, failed=grid.failed)
    notes = [*_notes(shown, grid), *notes]
    if fmt == "markdown":
        text = _to_markdown(cells, bold, grid.corner, caption)
        # a hard line break (two trailing spaces) per note, or a viewer runs them together
        return text + ("\n" + "  \n".join(notes) + "\n" if notes else "")
    text = _to_latex(cells, bold, grid, caption, label, column_format)
    return text + ("\n" + latex_notes(notes) if notes else "")


def _defaults(metrics: Sequence[str], scale, best):
    if scale is None:
        scale = 100 if all(m in _FRACTION_METRICS for m in metrics) else 1
    if best == "auto":
        # a registered metric says which way is better; other columns (timings, memory) are costs
        lower = all(not METRICS[m].higher_is_better if m in METRICS else m.endswith(("_seconds", "_mb"))
                    for m in metrics)
        best = "min" if lower else "max"
    return scale, best
