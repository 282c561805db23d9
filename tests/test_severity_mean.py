"""`bench table --severity-mean`: one column per corruption, the mean over its severities per
category and seed; a cell missing a severity gives no value (partial), never a flattering mean."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bench.results import RunStore
from bench.tables import main_table, table_frame
from bench.tables.severities import severity_means
from _grids import run_cli
from _latex import check_latex

SEVERITIES = (1, 3, 5)


def _value(method: str, category: str, corruption: str, severity: int, seed: int) -> float:
    """A distinct value per cell: clean 0.95, falling with severity, TTAD falling less."""
    if corruption == "clean":
        return 0.95 - 0.01 * seed
    drop = {"gaussian_noise": 0.04, "contrast": 0.06}[corruption] * severity * (0.5 if method == "ttad" else 1.0)
    return round(0.95 - drop - 0.02 * (category == "cable") - 0.01 * seed, 6)


def _rows(skip=(), fail=()) -> pd.DataFrame:
    rows = []
    for method, category, seed in itertools.product(("patchcore", "ttad"), ("bottle", "cable"), (0, 1)):
        conditions = [("clean", 0)] + [(c, s) for c in ("gaussian_noise", "contrast") for s in SEVERITIES]
        for corruption, severity in conditions:
            key = (method, category, corruption, severity, seed)
            if key in skip:
                continue
            rows.append(dict(cell_id="-".join(map(str, key)), method=method, config_hash=method, dataset="mvtec_ad",
                             category=category, corruption=corruption, severity=severity, seed=seed,
                             image_auroc=0.0 if key in fail else _value(*key), status="failed" if key in fail else "ok",
                             error="boom" if key in fail else ""))
    return pd.DataFrame(rows)


def _expected(method: str, corruption: str) -> float:
    """Mean over categories of the mean over seeds of the mean over severities, by hand."""
    return float(np.mean([np.mean([np.mean([_value(method, cat, corruption, s, seed) for s in SEVERITIES])
                                   for seed in (0, 1)]) for cat in ("bottle", "cable")]))


def test_each_corruption_is_the_mean_over_its_severities():
    df = _rows()
    means, note = severity_means(df, ["image_auroc"])
    frame = table_frame(means)
    assert list(frame.columns.get_level_values(-1)) == ["Clean", "Gaussian Noise", "Contrast", "Mean"]
    for method, label in (("patchcore", "PatchCore"), ("ttad", "TTAD")):
        for corruption, column in (("gaussian_noise", "Gaussian Noise"), ("contrast", "Contrast")):
            assert frame.loc[label].xs(column, level=-1).item() == pytest.approx(_expected(method, corruption))
    # balanced: the same numbers as the mean of the per-severity columns of the ordinary table
    full = table_frame(df)
    noise = [c for c in full.columns if str(c[-1]).startswith("Gaussian Noise")]
    assert len(noise) == 3
    assert frame.loc["TTAD"].xs("Gaussian Noise", level=-1).item() == pytest.approx(full.loc["TTAD", noise].mean())
    assert frame.loc["TTAD"].xs("Mean", level=-1).item() == pytest.approx(full.loc["TTAD"].xs("Mean", level=-1).item())
    assert note == ("Each corruption's value is the mean over its severities (1, 3, 5) on the same category and seed; "
                    "a cell missing one of them gives no value.")

    md = main_table(df, "image_auroc", fmt="markdown", severity_mean=True, std=False)
    assert md.splitlines()[0] == ("| Method | MVTec AD / Clean | MVTec AD / Gaussian Noise | MVTec AD / Contrast | "
                                  "MVTec AD / Mean |")
    assert f"| TTAD | **94.50** | **{100 * _expected('ttad', 'gaussian_noise'):.2f}** |" in md
    assert note in md and "†" not in md
    check_latex(main_table(df, "image_auroc", fmt="latex", severity_mean=True))  # the note is LaTeX too
    with_std = main_table(df, "image_auroc", fmt="markdown", severity_mean=True)
    assert "± 0.71" in with_std  # the seeds differ by 1 point everywhere: std over the seeds' severity means


def test_a_missing_or_failed_severity_leaves_its_cell_out_and_marks_the_value_partial():
    for rows in (_rows(skip=[("ttad", "bottle", "contrast", 5, 1)]),
                 _rows(fail=[("ttad", "bottle", "contrast", 5, 1)])):  # a failed row's 0.0 must not count
        frame = table_frame(severity_means(rows, ["image_auroc"])[0])
        bottle_seed0 = np.mean([_value("ttad", "bottle", "contrast", s, 0) for s in SEVERITIES])
        cable = np.mean([np.mean([_value("ttad", "cable", "contrast", s, seed) for s in SEVERITIES]) for seed in (0, 1)])
        assert frame.loc["TTAD"].xs("Contrast", level=-1).item() == pytest.approx((bottle_seed0 + cable) / 2)
        md = main_table(rows, "image_auroc", fmt="markdown", severity_mean=True, std=False)
        ttad = next(line for line in md.splitlines() if line.startswith("| TTAD |")).split(" | ")
        assert ttad[3].endswith("†") and "**" not in ttad[3]  # partial: never bold
        assert "| PatchCore |" in md and "†" not in next(x for x in md.splitlines() if x.startswith("| PatchCore |"))


def test_a_corruption_whose_every_row_failed_reads_failed():
    fail = [("patchcore", cat, "contrast", s, seed) for cat in ("bottle", "cable") for s in SEVERITIES for seed in (0, 1)]
    md = main_table(_rows(fail=fail), "image_auroc", fmt="markdown", severity_mean=True, std=False)
    patchcore = next(line for line in md.splitlines() if line.startswith("| PatchCore |")).split(" | ")
    assert patchcore[3] == "failed"


def test_the_note_names_a_run_of_severities_as_a_span_and_relative_tables_use_the_means():
    rows = _rows()
    five = pd.concat([rows, rows[rows.severity == 5].assign(severity=2), rows[rows.severity == 5].assign(severity=4)])
    five["cell_id"] = five["cell_id"] + five["severity"].astype(str)
    assert "over its severities (1-5) on the same" in severity_means(five, ["image_auroc"])[1]
    drop = main_table(rows, "image_auroc", fmt="markdown", severity_mean=True, relative="clean", std=False)
    clean = 0.945  # mean over categories and seeds of the clean value
    assert f"| {100 * (_expected('patchcore', 'contrast') - clean):.2f} |" in drop
    assert "mean over its severities" in drop and "Differences:" in drop


def test_cli_severity_mean_and_what_it_refuses(tmp_path, monkeypatch, capsys):
    store = RunStore(tmp_path / "run")
    for row in _rows().to_dict("records"):
        store.write(row)
    code, out, _ = run_cli(monkeypatch, capsys, "table", tmp_path / "run", "--severity-mean", "--no-std")
    assert code == 0 and "| MVTec AD / Gaussian Noise | MVTec AD / Contrast |" in out
    for extra in (("--compare", "ttad:1"), ("--interval",), ("--by", "defect_type")):
        code, _, err = run_cli(monkeypatch, capsys, "table", tmp_path / "run", "--severity-mean", *extra)
        assert code == 2 and "--severity-mean: means over severities are shown in the main and per-class layouts" in err
