"""A table of an incomplete run says so: a mean that lacks cells is marked †, even where no
method has the cells (the run's recorded grids name them), its ± std over seeds is left out, and
a Mean over conditions of which one has no value is the mean over the others, marked †."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from _grids import make_category, run_cli
from bench.tables import main_table

DAGGER = "†"


@pytest.fixture
def run(tmp_path, monkeypatch, capsys, probes):
    """``probe`` on two categories x clean, contrast, brightness x seeds 0, 1 (12 cells), in a run
    directory."""
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    for i, name in enumerate(["part_a", "part_b"]):
        make_category(root, name, seed=i)
    out = tmp_path / "run"
    code, _, err = grid(monkeypatch, capsys, root, out, "0,1")
    assert code == 0, err
    assert len(list((out / "parts").glob("*.parquet"))) == 12
    return root, out


def grid(monkeypatch, capsys, root, out, seeds: str):
    return run_cli(monkeypatch, capsys, "grid", "-m", "probe", "--root", root, "--corruptions",
                   "clean,contrast,brightness", "-s", "3", "--seeds", seeds, "--out", out, "--no-progress")


def line_of(text: str, label: str) -> list[str]:
    """The cells of the table row ``label``, stripped (the label first)."""
    return [c.strip() for c in next(x for x in text.splitlines() if x.startswith(f"| {label} |")).split("|")[1:-1]]


def table(monkeypatch, capsys, *args) -> tuple[int, list[str], str]:
    code, out, err = run_cli(monkeypatch, capsys, "table", *args)
    return code, [line for line in err.splitlines() if line.strip()], out


def drop(out, *words: str) -> None:
    """Delete the parts whose name holds every word: cells not run yet, for every method."""
    gone = [p for p in (out / "parts").glob("*.parquet") if all(w in p.name for w in words)]
    assert gone
    for p in gone:
        p.unlink()


def test_a_category_no_method_has_marks_every_mean_and_shows_as_a_row(monkeypatch, capsys, run):
    root, out = run
    code, _, full = table(monkeypatch, capsys, out)
    assert code == 0 and DAGGER not in full
    drop(out, "part_b")
    code, err, text = table(monkeypatch, capsys, out)
    assert code == 0 and err == []
    cells = line_of(text, "probe")[1:]
    assert len(cells) == 4 and all(c.endswith(DAGGER) for c in cells)  # clean, brightness, contrast, Mean
    assert not any("± " in c for c in cells)  # a mean over one category of two: no spread over seeds
    code, _, per_class = table(monkeypatch, capsys, out, "--per-class")
    assert line_of(per_class, "part_b")[1:] == ["–", "–", "–"]


def test_a_seed_no_method_has_marks_its_column(monkeypatch, capsys, run):
    root, out = run
    drop(out, "part_a", "contrast")  # both seeds' parts are named alike: run seed 0 again
    assert grid(monkeypatch, capsys, root, out, "0")[0] == 0  # the run's grids name seeds 0, 1 still
    code, err, text = table(monkeypatch, capsys, out)
    assert line_of(text, "Method")[1:] == [f"data / {c}" for c in ("Clean", "Brightness", "Contrast", "Mean")]
    clean, brightness, contrast, mean = line_of(text, "probe")[1:]
    assert code == 0 and err == []
    assert DAGGER not in clean + brightness and "± " in clean
    assert contrast.endswith(DAGGER) and "± " not in contrast  # part_a lacks seed 1 there
    assert mean.endswith(DAGGER)


def test_a_run_whose_data_is_gone_still_renders_and_says_what_it_cannot_check(monkeypatch, capsys, run):
    root, out = run
    shutil.rmtree(root)
    code, err, text = table(monkeypatch, capsys, out)
    assert code == 0 and line_of(text, "probe")
    assert len(err) == 1 and err[0].startswith(f"warning: {out}: the cells its grid names cannot be listed (")
    assert err[0].endswith("a mean that lacks a cell no method has is not marked †")


def rows(method, values):
    """mvtec_ad rows of ``method``: {(category, corruption, seed): value, "failed", or absent}."""
    return [dict(method=method, config_hash=method, dataset="mvtec_ad", category=cat, corruption=cor,
                 severity=0 if cor == "clean" else 5, seed=seed, protocol="native", test_subset=0,
                 status="failed" if v == "failed" else "ok", image_auroc=None if v == "failed" else v,
                 cell_id=f"{method}-{cat}-{cor}-{seed}") for (cat, cor, seed), v in values.items()]


FULL = {(cat, cor, seed): 0.5 + 0.1 * seed + (0.2 if cat == "brick" else 0) + (0.1 if cor == "snow" else 0)
        for cat in ("brick", "grass") for cor in ("clean", "snow", "contrast") for seed in (0, 1)}


def test_a_category_one_method_lacks_in_every_seed_has_no_spread():
    lacking = {k: v for k, v in FULL.items() if not (k[0] == "brick" and k[1] == "snow")}
    text = main_table(pd.DataFrame(rows("a", FULL) + rows("b", lacking)), fmt="markdown")
    assert line_of(text, "b")[2] == "65.00†"  # grass alone, and no ± over seeds: each seed lacks brick


def test_a_mean_over_conditions_one_of_which_failed_is_the_mean_of_the_others_marked():
    failed = {k: ("failed" if k[1] == "snow" else v) for k, v in FULL.items()}
    text = main_table(pd.DataFrame(rows("a", FULL) + rows("b", failed)), fmt="markdown", std=False)
    a, b = line_of(text, "a"), line_of(text, "b")
    assert b[2] == "failed" and b[3].strip("*") == "65.00" and a[4].strip("*") == "70.00"
    assert b[4] == "65.00†"  # contrast's value alone, marked: not "failed", not a full mean


def test_the_comparison_with_published_numbers_marks_ours_as_bench_table_does():
    from bench.tables import compare_published

    conditions = ("clean", "gaussian_noise", "defocus_blur", "brightness", "contrast")
    full = {(cat, cor, 0): 0.5 for cat in ("brick", "grass") for cor in conditions}
    patchcore = {**full, ("brick", "gaussian_noise", 0): "failed", ("grass", "gaussian_noise", 0): "failed"}
    ttad = {**full, ("brick", "gaussian_noise", 0): "failed"}
    df = pd.DataFrame(rows("patchcore", patchcore) + rows("ttad", ttad))
    md = compare_published(df, paper="ttad", table=1, metric="image_auroc", fmt="markdown")
    noise = {line_of(md, m)[0]: line_of(md, m)[2] for m in ("PatchCore", "TTAD")}
    assert noise == {"PatchCore": "failed (77.34)", "TTAD": "50.00† (89.21)"}
    assert line_of(md, "TTAD")[1] == "50.00 (98.81)"
    assert "† partial: the mean lacks cells" in md and "failed: every cell of the value failed" in md
    long = compare_published(df, paper="ttad", table=1, metric="image_auroc")
    long = long[long["dataset"] == "mvtec_ad"].set_index(["method", "corruption"])
    assert long.loc[("TTAD", "gaussian_noise"), "partial"] and long.loc[("PatchCore", "gaussian_noise"), "failed"]


def test_a_method_name_the_rows_lack_and_per_class_with_two_metrics_are_one_line_errors(monkeypatch, capsys, run):
    _, out = run
    code, err, _ = table(monkeypatch, capsys, out, "--methods", "probe,prob")
    assert code == 2 and err == ["error: --methods prob: no rows of it (rows of: probe)"]
    code, err, _ = table(monkeypatch, capsys, out, "--per-class", "--metric", "image_auroc,aupro")
    assert code == 2 and err == ["error: --per-class: one --metric per table (got image_auroc, aupro); render one "
                                 "table each"]
