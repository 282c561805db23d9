"""``bench verify``: recompute a seeded sample of a run's finished cells from scratch and compare.

Each sampled row is rebuilt into its cell (method, config from the row, dataset, category,
condition, seed, protocol, test subset) and run in a scratch cache: the fit is computed again
(not taken from the fit cache) and the corrupted images are generated again, with the thread
counts the row records for its fit and its cell. Every metric of the new row is compared with
the stored one; the largest difference is printed per metric and per method, and a difference
above ``tol`` fails (exit 1) naming the cell and the metric.

Rows record what their bits depend on (``bench.numerics``); where the recorded values differ
from this process's (another processor, kernel level, device, library version), the output says
so first: bit-for-bit equality is then not guaranteed, and a difference says which of them matters.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import BenchError
from .metrics import METRICS


@dataclass
class Checked:
    """One recomputed cell: its stored and new metric values."""

    cell_id: str
    method: str
    label: str
    stored: dict[str, float]
    new: dict[str, float]
    notes: list[str] = field(default_factory=list)  # reproducibility fields that differ
    judged: bool = True  # False: the row recorded nondeterministic kernels
    error: str = ""  # the recomputation failed

    def differences(self) -> dict[str, float]:
        """Per metric both rows have (a row from before the per-defect-type breakdown has none:
        ``notes`` says so); a registry metric missing on one side counts as NaN."""
        keys = [k for k in self.stored if k in self.new or "[" not in k]
        return {k: _diff(self.stored.get(k), self.new.get(k)) for k in keys}

    def worst(self) -> tuple[str, float]:
        diffs = self.differences()
        if not diffs:
            return "", 0.0
        name = max(diffs, key=lambda k: diffs[k])
        return name, diffs[name]


def _diff(a: Any, b: Any) -> float:
    """|a - b|; 0 when both are NaN (undefined alike), inf when only one is."""
    a = float("nan") if a is None else float(a)
    b = float("nan") if b is None else float(b)
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b)


def metric_values(row: dict[str, Any]) -> dict[str, float]:
    """The row's metrics: the registry's columns and, where present, the per-defect-type ones."""
    from .results import DEFECT_METRICS, decode_defect_metrics

    out = {m: float(row[m]) if row.get(m) is not None else float("nan") for m in METRICS}
    for kind, values in (decode_defect_metrics(row.get(DEFECT_METRICS)) or {}).items():
        for name, value in values.items():
            if name in METRICS:
                out[f"{name}[{kind}]"] = float("nan") if value is None else float(value)
    return out


# --------------------------------------------------------------------------- sampling


def sample(rows: pd.DataFrame, n: int, seed: int, methods: Sequence[str] | None = None,
           cells: Sequence[str] | None = None) -> pd.DataFrame:
    """``n`` finished rows, seeded, spread over the methods (round robin; 0 = every row)."""
    ok = rows[rows["status"] == "ok"] if "status" in rows.columns else rows
    if cells:
        missing = [c for c in cells if c not in set(ok["cell_id"])]
        if missing:
            raise BenchError(f"--cells: no finished row with cell id {missing[0]} in this run")
        return ok[ok["cell_id"].isin(cells)]
    if methods:
        unknown = [m for m in methods if m not in set(ok["method"])]
        if unknown:
            raise BenchError(f"--methods {unknown[0]}: no finished row of that method in this run "
                             f"(it has {', '.join(sorted(set(ok['method'])))})")
        ok = ok[ok["method"].isin(methods)]
    if not len(ok):
        raise BenchError("no finished (ok) rows to verify")
    if n <= 0 or n >= len(ok):
        return ok
    rng = np.random.default_rng(seed)
    order = list(methods) if methods else sorted(set(ok["method"]))
    pools = {m: list(rng.permutation(ok.index[ok["method"] == m].to_numpy())) for m in order}
    chosen: list[Any] = []
    while len(chosen) < n:
        for m in order:
            if pools[m] and len(chosen) < n:
                chosen.append(pools[m].pop())
    return ok.loc[sorted(chosen, key=list(ok.index).index)]


# --------------------------------------------------------------------------- rebuilding cells


def rebuild(row: dict[str, Any], root: str | None, device: str):
    """The row's cell and a one-cell GridSpec for it (no bootstrap or map samples: no metric)."""
    from .datasets.registry import DATASETS
    from .grid import Cell, GridSpec
    from .methods import get

    method = get(row["method"])
    try:
        config = method.config(**json.loads(row["config"]))
    except Exception as exc:  # noqa: BLE001 - a field renamed or removed since the row was written
        raise BenchError(f"{row['cell_id']}: its config no longer builds ({exc}); verify with the "
                         "adshift-bench version in the row's versions column") from None
    if config.hash() != row["config_hash"]:
        raise BenchError(f"{row['cell_id']}: its config hashes to {config.hash()}, the row says "
                         f"{row['config_hash']}: the method's config changed since the row was written")
    label = str(row["dataset"])
    dataset = label if label in DATASETS else "folder"
    if dataset == "folder":
        if root is None:
            raise BenchError(f"{row['cell_id']}: dataset '{label}' is a folder dataset; pass --root "
                             f"with the folder that holds its categories (named {label})")
        if Path(root).name != label:
            raise BenchError(f"--root {root}: the rows' dataset is '{label}', the folder is named "
                             f"'{Path(root).name}'; pass the folder the run used")
    test_subset = int(row.get("test_subset") or 0)
    domain = _text(row.get("domain"))  # rows written before domains: none
    deterministic = row.get("deterministic")
    spec = GridSpec(methods=[row["method"]], dataset=dataset, root=root, categories=[row["category"]],
                    seeds=[int(row["seed"])], protocol=row["protocol"], device=device,
                    test_subset=test_subset, bootstrap=0, map_samples=0, domains=[domain] if domain else None,
                    deterministic=True if deterministic is None or pd.isna(deterministic) else bool(deterministic))
    cell = Cell(row["method"], label, row["category"], row["corruption"], int(row["severity"]),
                int(row["seed"]), row["protocol"], config, test_subset, _text(row.get("preset")), domain)
    if cell.cell_id != row["cell_id"]:
        raise BenchError(f"{row['cell_id']}: the rebuilt cell's id is {cell.cell_id}; the row's identity "
                         "columns and its id disagree (edited by hand?)")
    return cell, spec


def _threads(value: Any, fallback: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return fallback
    return n if n > 0 else fallback


def recompute(row: dict[str, Any], root: str | None, device: str | None,
              on_stage: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The row's cell computed again from scratch in this process: the new row."""
    import torch

    from .cache import FitCache
    from .datasets.cache import cache_at
    from .datasets.registry import get_dataset
    from .runner import RunContext, obtain_fit, resolve_device, run_cell, set_threads

    dev = resolve_device(device or str(row.get("device") or "cpu"))
    cell, spec = rebuild(row, root, dev)
    if spec.root is None:  # the dataset's own folder (textures: generated into the user's cache)
        spec.root = str(get_dataset(spec.dataset).root(None))
    cell_threads = _threads(row.get("threads"), torch.get_num_threads())
    fit_threads = _threads(row.get("fit_threads"), cell_threads)
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp, cache_at(tmp):  # not the user's caches
        ctx = RunContext(spec, fit_cache=FitCache(Path(tmp) / "fits"))
        old = set_threads(fit_threads)
        try:
            fitted = obtain_fit(cell, ctx, dev, on_stage)
            set_threads(cell_threads)
            return run_cell(cell, ctx, on_stage, fitted=fitted)
        finally:
            set_threads(old)


# --------------------------------------------------------------------------- the command


def _reproducibility(row: dict[str, Any]) -> dict[str, Any]:
    from .numerics import REPRODUCIBILITY_KEYS

    out = {k: row.get(k) for k in (*REPRODUCIBILITY_KEYS, "numerics", "versions") if row.get(k) is not None
           and not (isinstance(row.get(k), float) and math.isnan(row[k]))}
    # a whole number read back as float (a column with a failed row's NaN) is still that number
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in out.items()}


def _notes(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    from .numerics import differences
    from .runner import CORRUPTION_CODE, METHOD_CODE

    notes = differences(_reproducibility(stored), _reproducibility(new))
    try:
        a, b = json.loads(stored.get("versions") or "{}"), json.loads(new.get("versions") or "{}")
    except (TypeError, ValueError):
        a, b = {}, {}
    notes += [f"{k}: {a[k]} -> {b[k]}" for k in sorted(a) if k in b and a[k] != b[k]]
    for column in (METHOD_CODE, CORRUPTION_CODE):  # an edited plugin
        if stored.get(column) and stored.get(column) != new.get(column):
            notes.append(f"{column}: {stored[column]} -> {new.get(column)}")
    return notes


def _nondeterministic(row: dict[str, Any]) -> bool:
    flag = row.get("deterministic")
    if flag is not None and not pd.isna(flag) and not bool(flag):
        return True
    try:
        return bool(json.loads(row.get("nondeterministic_ops") or "[]"))
    except (TypeError, ValueError):
        return False


def _text(value: Any) -> str:
    """A string column of a row; "" where it is null or absent (NaN in pandas)."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _label(row: dict[str, Any]) -> str:
    cond = "clean" if row["corruption"] == "clean" else f"{row['corruption']}@{row['severity']}"
    domain = _text(row.get("domain"))
    where = f"{row['category']} / {domain}" if domain else row["category"]
    return f"{row['method']} / {where} / {cond} / seed {row['seed']}"


def check(stored: dict[str, Any], new: dict[str, Any]) -> Checked:
    """The comparison of one cell's stored row with another computation of it."""
    item = Checked(stored["cell_id"], stored["method"], _label(stored), metric_values(stored), {},
                   judged=not _nondeterministic(stored))
    if new.get("status") != "ok":
        item.error = str(new.get("error") or "").strip() or f"status {new.get('status')}, no error recorded"
    else:
        item.new = metric_values(new)
        item.notes = _notes(stored, new)
        one_sided = {k for k in set(item.stored) ^ set(item.new) if "[" in k}
        if one_sided:
            item.notes.append("per-defect-type metrics: in one row only (written before the breakdown)")
    return item


def verify(paths: Sequence[Path], *, n: int = 5, seed: int = 0, methods: Sequence[str] | None = None,
           cells: Sequence[str] | None = None, tol: float = 0.0, root: str | None = None,
           device: str | None = None, echo: Callable[[str], None] = print) -> tuple[bool, list[Checked]]:
    """Recompute a sample of ``paths``' rows; print the comparison; True when every judged
    difference is within ``tol``."""
    from .results import load_runs

    _check_tol(tol)
    rows = load_runs(paths)
    chosen = sample(rows, n, seed, methods, cells)
    echo(f"verifying {len(chosen)} of {int((rows['status'] == 'ok').sum())} finished cells of "
         f"{', '.join(map(str, paths))} (seed {seed}; fits and corrupted images computed again)")
    checked: list[Checked] = []
    for _, series in chosen.iterrows():
        stored = {k: series[k] for k in series.index}
        checked.append(check(stored, recompute(stored, root, device)))
        echo(_cell_line(checked[-1], tol))
    return _summary(checked, tol, echo, "reproduce"), checked


def diff(reference: Sequence[Path], other: Sequence[Path], *, tol: float = 0.0,
         echo: Callable[[str], None] = print) -> tuple[bool, list[Checked]]:
    """Compare the rows two runs have in common (same cell ids), e.g. yours against a committed
    reference; True when every metric is within ``tol``. Nothing is recomputed."""
    from .results import load_runs

    _check_tol(tol)
    ref, new = load_runs(reference), load_runs(other)
    lack = [m for m in METRICS if m in ref.columns and m not in new.columns]
    if lack:  # else every cell would read "differs by NaN vs a value"
        raise BenchError(f"{', '.join(map(str, other))}: its rows have no column {', '.join(lack)}, which "
                         f"{', '.join(map(str, reference))} has; these are not rows as bench grid writes them")
    ref = ref[ref["status"] == "ok"]
    common = [c for c in ref["cell_id"] if c in set(new["cell_id"])]
    if not common:
        raise BenchError(f"{', '.join(map(str, other))} has none of the {len(ref)} finished cells of "
                         f"{', '.join(map(str, reference))} (other methods, settings or data?)")
    new_by_id = new.set_index("cell_id")
    checked = []
    for _, series in ref[ref["cell_id"].isin(common)].iterrows():
        stored = {k: series[k] for k in series.index}
        other_row = new_by_id.loc[stored["cell_id"]]
        checked.append(check(stored, {"cell_id": stored["cell_id"], **other_row.to_dict()}))
    only_other = len(set(new["cell_id"]) - set(ref["cell_id"]))
    echo(f"comparing {len(checked)} cells present in both ({len(ref) - len(checked)} of the reference's "
         f"finished cells are not in the other run, {only_other} of the other run's cells not in the reference)")
    for item in checked:
        if item.error or item.worst()[1] > 0:
            echo(_cell_line(item, tol, ("reference", "other")))
    _versions_hint(reference, ref, new, echo)
    return _summary(checked, tol, echo, "agree", ("reference", "other")), checked


CONSTRAINTS = "constraints.txt"  # beside a published run: the library versions its rows were computed with


def library_pins(rows: pd.DataFrame, where: str = "the rows") -> tuple[list[str], str]:
    """``(["name==version", ...], python)`` from the rows' ``versions`` column: a pip constraints
    file that installs the libraries the rows were computed with. Rows computed with two versions
    of one library are refused (no single file reproduces them)."""
    found: dict[str, set[str]] = {}
    for text in rows["versions"].dropna().unique() if "versions" in rows else []:
        for name, version in _versions(text, where).items():
            found.setdefault(name, set()).add(version)
    if not found:
        raise BenchError(f"{where}: no row records its library versions (rows written before the versions column)")
    mixed = {k: sorted(v) for k, v in found.items() if len(v) > 1}
    if mixed:
        raise BenchError(f"{where}: rows computed with several versions of "
                         + "; ".join(f"{k} ({', '.join(v)})" for k, v in sorted(mixed.items()))
                         + ": select the rows of one installation first")
    one = {k: next(iter(v)) for k, v in found.items()}
    python = one.pop("python", "?")
    one.pop("adshift-bench", None)  # the checkout itself
    # "corruptions" holds the corruption backend as a requirement already ("imagecorruptions-imaug==1.1.5")
    return sorted(v if k == "corruptions" else f"{k}=={v}" for k, v in one.items()), python


def _versions(text: Any, where: str) -> dict[str, str]:
    """A row's ``versions`` (JSON: library -> version), or one line on what it holds instead."""
    try:
        out = json.loads(text)
    except (TypeError, ValueError):
        out = None
    if not isinstance(out, dict):
        raise BenchError(f"{where}: a row's versions column holds {str(text)[:60]!r}, not the JSON of its library "
                         "versions; these are not rows as bench grid writes them")
    return out


def _versions_hint(reference: Sequence[Path], ref: pd.DataFrame, new: pd.DataFrame, echo: Callable[[str], None]) -> None:
    """Where the two runs' library versions differ, name the reference's constraints file (not
    for another Python or another checkout alone: the file pins neither)."""
    def libraries(df: pd.DataFrame) -> set[str]:
        texts = df["versions"].dropna().unique() if "versions" in df else []
        return {json.dumps({k: v for k, v in _versions(t, "the rows").items() if k not in ("python", "adshift-bench")},
                           sort_keys=True) for t in texts}

    a, b = libraries(ref), libraries(new)
    files = [p / CONSTRAINTS if p.is_dir() else p.parent / CONSTRAINTS for p in map(Path, reference)]
    files = [f for f in files if f.is_file()]
    if a and b and a != b and files:
        echo(f"the reference's library versions: pip install -e . -c {files[0]} (in a fresh venv)")


def _check_tol(tol: float) -> None:
    if tol < 0 or math.isnan(tol):
        raise BenchError(f"--tol {tol}: use 0 (bit for bit) or a positive difference, e.g. 0.005")


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if math.isinf(value):
        return "NaN vs a value"
    return f"{value:.3g}"


def _cell_line(item: Checked, tol: float, names: tuple[str, str] = ("stored", "now")) -> str:
    if item.error:
        return f"  FAILED  {item.label} ({item.cell_id}): {item.error}"
    name, worst = item.worst()
    verdict = "same" if worst == 0 else ("within" if worst <= tol else "DIFFERS")
    if not item.judged and worst > tol:
        verdict = "differs (nondeterministic row, not judged)"
    detail = "" if worst == 0 else (f": {name} {item.stored[name]:.6f} {names[0]}, {item.new[name]:.6f} {names[1]} "
                                    f"(|diff| {_fmt(worst)})")
    return f"  {verdict:7s} {item.label} ({item.cell_id}){detail}"





def _summary(checked: list[Checked], tol: float, echo: Callable[[str], None], verb: str,
             names: tuple[str, str] = ("stored", "recomputed")) -> bool:
    done = [c for c in checked if not c.error]
    notes = sorted({n for c in done for n in c.notes})
    if notes:
        echo("recorded -> here (bit-for-bit equality is not guaranteed across these): " + "; ".join(notes))
    per_metric: dict[str, float] = {}
    per_method: dict[str, float] = {}
    for c in done:
        for name, d in c.differences().items():
            base = name.split("[", 1)[0]
            per_metric[base] = max(per_metric.get(base, 0.0), d)
            per_method[c.method] = max(per_method.get(c.method, 0.0), d)
    if done:
        echo("largest |difference| per metric: " + ", ".join(f"{k} {_fmt(v)}" for k, v in per_metric.items()))
        echo("largest |difference| per method: " + ", ".join(f"{k} {_fmt(v)}" for k, v in per_method.items()))
    bad = [c for c in done if c.judged and c.worst()[1] > tol]
    failed = [c for c in checked if c.error]
    for c in bad:
        name, worst = c.worst()
        echo(f"error: {c.label} ({c.cell_id}): {name} differs by {_fmt(worst)} (tolerance {tol:g}): "
             f"{names[0]} {c.stored[name]:.6f}, {names[1]} {c.new[name]:.6f}")
    for c in failed:
        echo(f"error: {c.label} ({c.cell_id}): not ok: {c.error}")
    if bad or failed:
        return False
    echo(f"{len(done)} cells {verb} within {tol:g}" + (" (bit for bit)" if tol == 0 else ""))
    return True
