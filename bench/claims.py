"""``bench claims PRESET RUN``: the comparisons a paper states, tested on your rows.

Each preset's claims are written down once, as data (``CLAIMS``): "A beats B on these
conditions" (``>``, optionally by more than ``margin`` points) or "A equals B within ``margin``
points" (``≈``). A claim is tested with the paired bootstrap over test images that
``bench compare-methods`` uses (``bench.stats.paired_test``): on every cell both methods ran
(same dataset, category, condition, seed and test images), the same resampled images score both
methods, and the claim's effect is the mean of A - B over those cells. At the given level:

- ``>``: holds when the interval lies above ``margin``, does not hold when it lies at or below
  it, undecided otherwise;
- ``≈``: holds when the interval lies inside [-margin, +margin], does not hold when it lies
  wholly outside, undecided otherwise.

The paper's own effect (the same mean over the published cells of the claim's conditions) is
shown beside ours. Rows without per-image scores (written before they existed) give the mean
effect and "undecided (no per-image scores)".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import BenchError
from .metrics import METRICS

CLEAN = ("clean",)
CORRUPTED = "corrupted"  # every corruption of the rows (the paper's corruption mean)


@dataclass(frozen=True)
class Claim:
    text: str  # as a reader would state it
    a: str  # our method names
    b: str
    relation: str = ">"  # ">" (A beats B) or "≈" (A equals B within margin)
    conditions: tuple[str, ...] | str = CORRUPTED  # corruption names, "clean", or CORRUPTED
    margin: float = 0.0  # points (percent of the metric)
    metric: str = "image_auroc"
    # domain-shift tables: the test domains compared (uncorrupted), the categories of our rows and
    # the published setting (GNL Table 3: one-vs-all = the digits, multi-class = even)
    domains: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    setting: str = ""

    def __post_init__(self) -> None:
        if self.relation not in (">", "≈"):
            raise ValueError(f"claim {self.text!r}: relation must be '>' or '≈'")
        if self.relation == "≈" and self.margin <= 0:
            raise ValueError(f"claim {self.text!r}: '≈' needs a margin > 0 points")

    def selects(self, rows: pd.DataFrame) -> pd.Series:
        """The rows (ours or published) of the claim's conditions."""
        if self.domains:
            domain = rows["domain"] if "domain" in rows else pd.Series("", index=rows.index)
            keep = domain.isin(self.domains) & (rows["corruption"] == "clean")
        elif self.conditions == CORRUPTED:
            keep = rows["corruption"] != "clean"
        else:
            keep = rows["corruption"].isin(self.conditions)
        return keep


_CORR = ("gaussian_noise", "defocus_blur", "brightness", "contrast")
_DIGITS = tuple(str(d) for d in range(10))
_PACS_OOD = ("art_painting", "cartoon", "sketch")
_OVA = dict(categories=_DIGITS, setting="one-vs-all")
_MULTI = dict(categories=("even",), setting="multi-class")
CLAIMS: dict[str, tuple[Claim, ...]] = {
    "ttad-table1": (
        Claim("TTAD beats PatchCore on the corruption mean", "ttad", "patchcore"),
        Claim("TTAD beats TTT++ on the corruption mean", "ttad", "ttt++"),
        Claim("TTAD beats TTAC on the corruption mean", "ttad", "ttac"),
        Claim("TTAD equals PatchCore on clean data (within 1 point)", "ttad", "patchcore", "≈", CLEAN, 1.0),
        Claim("PatchCore beats TTT++ on the corruption mean", "patchcore", "ttt++"),
        Claim("PatchCore beats TTAC on the corruption mean", "patchcore", "ttac"),
        *(Claim(f"TTAD beats PatchCore under {c}", "ttad", "patchcore", conditions=(c,))
          for c in ("gaussian_noise", "defocus_blur", "brightness")),
        Claim("GNL beats TTAD under contrast", "gnl", "ttad", conditions=("contrast",)),
    ),
    "ttad-table3": (
        Claim("TTAD beats PatchCore on the corruption mean (pixel AUROC)", "ttad", "patchcore", metric="pixel_auroc"),
        Claim("TTAD beats RD4AD under brightness (pixel AUROC)", "ttad", "rd4ad", conditions=("brightness",),
              metric="pixel_auroc"),
        Claim("TTAD beats RD4AD under gaussian noise (pixel AUROC)", "ttad", "rd4ad",
              conditions=("gaussian_noise",), metric="pixel_auroc"),
    ),
    "ttad-table4": (
        Claim("Discrete OT beats KL-div on the corruption mean", "ot_discrete", "kl_div"),
        Claim("Discrete OT beats moment matching on the corruption mean", "ot_discrete", "moment_matching"),
        Claim("Hungarian OT beats no adaptation on the corruption mean", "ot_hungarian", "none"),
        Claim("Copying the target batch beats no augmentation", "ot_discrete_copy", "ot_discrete"),
        Claim("Augmenting the target batch beats copying it", "ot_discrete_augment", "ot_discrete_copy"),
    ),
    "gnl-table1": (
        Claim("GNL beats RD4AD on the corruption mean", "gnl", "rd4ad"),
        *(Claim(f"GNL beats RD4AD under {c}", "gnl", "rd4ad", conditions=(c,)) for c in _CORR),
        Claim("GNL equals RD4AD on clean data (within 1 point)", "gnl", "rd4ad", "≈", CLEAN, 1.0),
    ),
    "gnl-table2": (
        Claim("GNL beats RD4AD on the corruption mean", "gnl", "rd4ad"),
        Claim("GNL beats RD4AD under contrast", "gnl", "rd4ad", conditions=("contrast",)),
        Claim("GNL beats RD4AD under gaussian noise", "gnl", "rd4ad", conditions=("gaussian_noise",)),
    ),
    "gnl-table3": (
        Claim("GNL beats RD4AD on MNIST-M by at least 10 points (one-vs-all)", "gnl", "rd4ad", margin=10.0,
              domains=("mnist_m",), **_OVA),
        *(Claim(f"GNL beats {name} on MNIST-M (one-vs-all)", "gnl", m, domains=("mnist_m",), **_OVA)
          for m, name in (("augmix", "AugMix"), ("mixstyle", "MixStyle"), ("efdm_train", "EFDM"),
                          ("jigsaw", "Jigsaw"))),
        Claim("RD4AD beats GNL on MNIST (one-vs-all; GNL's small decline in distribution)", "rd4ad", "gnl",
              domains=("mnist",), **_OVA),
        Claim("GNL beats RD4AD on MNIST-M (multi-class)", "gnl", "rd4ad", domains=("mnist_m",), **_MULTI),
    ),
    "gnl-table4": (
        Claim("GNL beats RD4AD on the OOD domains (Art, Cartoon, Sketch)", "gnl", "rd4ad", domains=_PACS_OOD),
        *(Claim(f"GNL beats RD4AD on {name}", "gnl", "rd4ad", domains=(d,))
          for d, name in (("art_painting", "Art"), ("cartoon", "Cartoon"), ("sketch", "Sketch"))),
        Claim("GNL beats RD4AD on Photo (in distribution)", "gnl", "rd4ad", domains=("photo",)),
        *(Claim(f"GNL beats {name} on the OOD domains", "gnl", m, domains=_PACS_OOD)
          for m, name in (("augmix", "AugMix"), ("mixstyle", "MixStyle"), ("efdm_train", "EFDM"),
                          ("augmix_efdm", "AugMix+EFDM"))),
    ),
    "gnl-table5": (
        Claim("DINL beats the baseline (RD4AD) on the OOD domains", "dinl", "rd4ad", domains=_PACS_OOD),
        Claim("DINL beats the baseline on Photo", "dinl", "rd4ad", domains=("photo",)),
        Claim("ATTA beats the baseline on the OOD domains", "atta", "rd4ad", domains=_PACS_OOD),
        Claim("The baseline beats ATTA on Photo (ATTA's slight decrease in distribution)", "rd4ad", "atta",
              domains=("photo",)),
        Claim("DINL+ATTA beats DINL on the OOD domains", "gnl", "dinl", domains=_PACS_OOD),
        Claim("DINL+ATTA beats ATTA on the OOD domains", "gnl", "atta", domains=_PACS_OOD),
    ),
    "gnl-table6": tuple(
        Claim(f"DINL with lambda_ori {o} equals the default 0.90 within 2 points on the OOD domains",
              f"dinl_lambda_{round(o * 100):03d}", "dinl_lambda_090", "≈", margin=2.0, domains=_PACS_OOD)
        for o in (0.95, 0.85, 0.80)),
}


# Where a run lacks a claim's method, the row that computes the same thing stands in (said in the
# output): TTAD Table 4's "none" is PatchCore, scored on the fit the TTA methods share.
STAND_INS = {"patchcore": "none"}


@dataclass
class Verdict:
    claim: Claim
    cells: int
    a: float  # mean metric over the matched cells, percent
    b: float
    effect: float  # mean A - B, percent
    low: float
    high: float
    paper: float  # the published A - B over the claim's conditions (NaN: not in the table)
    verdict: str


def decide(claim: Claim, low: float, high: float) -> str:
    """holds / does not hold / undecided for an interval of A - B in points."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    m = claim.margin
    if claim.relation == ">":
        return "holds" if low > m else ("does not hold" if high <= m else "undecided")
    if -m <= low and high <= m:
        return "holds"
    return "does not hold" if (low > m or high < -m) else "undecided"


def _published_effect(preset, claim: Claim, dataset: str, ours: pd.DataFrame) -> float:
    """The paper's A - B over the claim's conditions that ``ours`` (the cells tested) also holds:
    a run of two of four corruptions compares with the paper's mean over those two (all of the
    claim's conditions when ``ours`` is empty)."""
    from . import papers

    pub = papers.published(paper=preset.paper, table=preset.table, metric=claim.metric,
                           dataset=preset.paper_dataset(dataset))
    if pub.empty:
        return float("nan")
    inverse = {v: k for k, v in preset.method_map.items()}
    values = {}
    for name in (claim.a, claim.b):
        key = papers.normalize_method(inverse.get(name, name))
        sub = pub[pub["method"].map(papers.normalize_method) == key]
        sub = sub[claim.selects(sub) & (sub["setting"].isin([claim.setting, ""]) if claim.setting else True)]
        if claim.setting == "multi-class":
            sub = sub[sub["category"] == "even"]
        elif claim.domains:
            sub = sub[sub["category"] == ""]  # the class means, not the appendix's per-class rows
        if len(ours):  # untested claims show the paper's effect over all of the claim's conditions
            column = "domain" if claim.domains else "corruption"
            sub = sub[sub[column].isin(set(ours[column]))]
        values[name] = sub.set_index(["domain", "corruption", "severity"])["value"]
    both = values[claim.a].index.intersection(values[claim.b].index)
    if not len(both):
        return float("nan")
    return float((values[claim.a][both] - values[claim.b][both]).mean())


def one_config(rows: pd.DataFrame, method: str, dataset: str) -> tuple[pd.DataFrame, str]:
    """A method's rows of one config: its default one where the rows hold several (an
    ablation's readings); (rows, note)."""
    if "config_hash" not in rows.columns or rows["config_hash"].nunique() <= 1:
        return rows, ""
    from .grid import default_config_hash

    default = default_config_hash(method, dataset)
    n = rows["config_hash"].nunique()
    if default not in set(rows["config_hash"]):
        return rows.iloc[0:0], f"{n} configs of {method}, none its default"
    return rows[rows["config_hash"] == default], f"{method}: its default config, of {n} in the rows"


def evaluate_claims(preset, rows: pd.DataFrame, resamples: int = 1000, level: float = 0.95) -> list[Verdict]:
    """Every claim of ``preset`` on ``rows`` (ok rows of one or more runs)."""
    from .stats import has_per_image, paired_test

    claims = CLAIMS.get(preset.name)
    if not claims:
        raise BenchError(f"preset {preset.name} states no claims yet (claims exist for {', '.join(CLAIMS)})")
    from .results import with_domain

    every = with_domain(rows)  # any status: the cells a claim should have (failed, or not run yet)
    every = every[paper_severity(preset, every)]
    ok = every[every["status"] == "ok"] if "status" in every.columns else every
    dataset = str(ok["dataset"].iloc[0]) if len(ok) else next(iter(preset.datasets))
    present = set(ok["method"])
    keys = ["dataset", "category", "domain", "corruption", "severity", "seed"]
    out = []
    for claim in claims:
        sel, sel_every = (x[claim.selects(x)] for x in (ok, every))
        if claim.categories:
            sel, sel_every = (x[x["category"].isin(claim.categories)] for x in (sel, sel_every))
        a, b = (STAND_INS.get(m, m) if m not in present else m for m in (claim.a, claim.b))
        (rows_a, note_a), (rows_b, note_b) = (one_config(sel[sel["method"] == m], m, dataset) for m in (a, b))
        notes = [n for n in (note_a, note_b) if n]
        shared = rows_a.merge(rows_b[keys], on=keys)
        lacking = _lacking(sel_every[sel_every["method"].isin([a, b])], shared, keys)
        paper = _published_effect(preset, claim, dataset, shared)
        if shared.empty:
            both = a in present and b in present  # else: "no <method> rows"
            why = "; ".join(notes) if notes else (both and lacking) or _no_cells(claim, a, b, present, preset)
            out.append(Verdict(claim, 0, np.nan, np.nan, np.nan, np.nan, np.nan, paper, f"untested ({why})"))
            continue
        if lacking:  # a mean over fewer cells than the run has is another mean: said, as a table's †
            notes.append(lacking)
        if METRICS[claim.metric].resampled is None:
            merged = rows_a.merge(rows_b, on=keys, suffixes=("_a", "_b"))
            va, vb = (100 * float(merged[f"{claim.metric}_{s}"].mean()) for s in ("a", "b"))
            eff, lo, hi = va - vb, np.nan, np.nan
            verdict = "undecided"
            notes.append(f"{METRICS[claim.metric].label} is not resampled over test images: the mean effect only")
        elif has_per_image(rows_a) and has_per_image(rows_b):
            overall = paired_test(rows_a, rows_b, resamples, level, claim.metric)[-1]
            va, vb, eff, lo, hi = (100 * v for v in (overall.a, overall.b, overall.diff, overall.low, overall.high))
            verdict = decide(claim, lo, hi)
        else:
            merged = rows_a.merge(rows_b, on=keys, suffixes=("_a", "_b"))
            va, vb = (100 * float(merged[f"{claim.metric}_{s}"].mean()) for s in ("a", "b"))
            eff, lo, hi = va - vb, np.nan, np.nan
            verdict = "undecided"
            notes.append("no per-image scores: rows from before they were stored")
        notes = [f"{s} for {m}" for m, s in ((claim.a, a), (claim.b, b)) if s != m] + notes
        if notes:
            verdict += f" ({'; '.join(notes)})"
        out.append(Verdict(claim, len(shared), va, vb, eff, lo, hi, paper, verdict))
    return out


def paper_severity(preset, rows: pd.DataFrame) -> pd.Series:
    """Clean rows and corrupted rows at the paper's severity: the claims are the paper's, and
    its effects are measured there (another severity is another experiment)."""
    return (rows["corruption"] == "clean") | (rows["severity"].astype(int) == preset.severity)


def _lacking(cells: pd.DataFrame, shared: pd.DataFrame, keys: list[str]) -> str:
    """The cells of a claim (either method has a row of any status) without an ok row of both,
    in words ("" where none lacks): a failed cell, or one a run's grid names and has not run."""
    wanted = cells[keys].drop_duplicates()
    gone = wanted.merge(shared[keys].drop_duplicates(), on=keys, how="left", indicator=True)
    gone = gone[gone["_merge"] == "left_only"]
    if gone.empty:
        return ""
    where = ", ".join(dict.fromkeys(gone["corruption"].astype(str)))
    return f"{len(gone)} of its {len(wanted)} cells failed or have not run for one of the two: {where}"


def _no_cells(claim: Claim, a: str, b: str, present: set, preset) -> str:
    """Why a claim has no cell both methods ran, in the user's terms."""
    missing = [m for m in (a, b) if m not in present]
    if missing:
        return f"no {' or '.join(missing)} rows"
    if claim.domains:
        return f"no rows of the test domains {', '.join(claim.domains)}"
    cells = "corrupted cells" if claim.conditions == CORRUPTED else f"cells of {', '.join(claim.conditions)}"
    at = "" if claim.conditions == CLEAN else f" at severity {preset.severity} (the paper's)"
    return f"no {cells}{at} with both {a} and {b}"


def _num(v: float, sign: bool = False) -> str:
    if not np.isfinite(v):
        return "–"
    return f"{v:+.2f}" if sign else f"{v:.2f}"


def claims_text(preset, runs: Sequence, resamples: int = 1000, level: float = 0.95) -> str:
    from .results import load_runs
    from .stats import check_level, check_resamples

    check_level(level)
    check_resamples(resamples, "--resamples", none_ok=False)
    from .recorded import with_missing_cells

    rows = with_missing_cells(load_runs(runs), runs)
    verdicts = evaluate_claims(preset, rows, resamples, level)
    ok = rows[rows["status"] == "ok"] if "status" in rows.columns else rows
    other = int((~paper_severity(preset, ok)).sum())
    pct = f"{round(level * 100, 2):g} %"
    datasets = sorted(set(rows["dataset"].astype(str)))
    paper_data = sorted(preset.datasets)
    where = "" if set(datasets) <= set(paper_data) else (
        f" Rows of {', '.join(datasets)}, not the paper's {' / '.join(paper_data)}: a stand-in, so the paper's "
        "effects are context, not a target.")
    lines = [f"Claims of {preset.summary}, tested on {', '.join(map(str, runs))}: paired bootstrap over test "
             f"images ({resamples} resamples, {pct} intervals); effect = mean of A - B over the cells both ran, "
             f"in points; paper = the published A - B over the same conditions.{where}"
             + (f" {other} rows at other severities than the paper's ({preset.severity}) are left out." if other else ""),
             "",
             f"| claim | metric | cells | A | B | A - B | {pct} interval | paper | verdict |",
             "|:---|:---|---:|---:|---:|---:|:---:|---:|:---|"]
    for v in verdicts:
        interval = "–" if not np.isfinite(v.low) else f"[{_num(v.low, True)}, {_num(v.high, True)}]"
        lines.append(f"| {v.claim.text} | {METRICS[v.claim.metric].label} | {v.cells} | {_num(v.a)} | {_num(v.b)} | "
                     f"{_num(v.effect, True)} | {interval} | {_num(v.paper, True)} | {v.verdict} |")
    counts = pd.Series([v.verdict.split(" (")[0] for v in verdicts]).value_counts()
    lines += ["", "; ".join(f"{n} {k}" for k, n in counts.items())]
    return "\n".join(lines) + "\n"
