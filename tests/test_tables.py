import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import papers
from bench.errors import BenchError, BenchWarning
from bench.results import RunStore
from bench.tables import compare_published, condition_label, main_table, paper_table, table_frame
from _grids import run_cli
from _latex import check_latex

# (method, category, corruption) -> image AUROC per seed
VALUES = {
    ("patchcore", "bottle", "clean"): [0.98],
    ("patchcore", "cable", "clean"): [0.96],
    ("patchcore", "bottle", "gaussian_noise"): [0.80],
    ("patchcore", "cable", "gaussian_noise"): [0.70],
    ("patchcore", "bottle", "contrast"): [0.60],
    ("patchcore", "cable", "contrast"): [0.64],
    ("ttad", "bottle", "clean"): [0.98],
    ("ttad", "cable", "clean"): [0.96],
    ("ttad", "bottle", "gaussian_noise"): [0.89, 0.91],  # two seeds -> 0.90
    ("ttad", "cable", "gaussian_noise"): [0.86],
    ("ttad", "bottle", "contrast"): [0.84],
    ("ttad", "cable", "contrast"): [0.80],
}


def synthetic(extra_rows=()):
    rows = []
    for (method, category, corruption), values in VALUES.items():
        for seed, v in enumerate(values):
            rows.append(dict(
                cell_id=f"{method}-{category}-{corruption}-{seed}", method=method, config_hash=method,
                dataset="mvtec_ad", category=category, corruption=corruption,
                severity=0 if corruption == "clean" else 5, seed=seed,
                image_auroc=v, pixel_auroc=v - 0.1, status="ok", error="",
            ))
    # a failed cell with a value that would spoil the means if it were used
    rows.append(dict(cell_id="failed", method="patchcore", config_hash="patchcore", dataset="mvtec_ad",
                     category="bottle", corruption="gaussian_noise", severity=5, seed=1,
                     image_auroc=0.0, pixel_auroc=0.0, status="failed", error="boom"))
    rows += list(extra_rows)
    return pd.DataFrame(rows)


HEADER = "| Method | MVTec AD / Clean | MVTec AD / Gaussian Noise | MVTec AD / Contrast | MVTec AD / Mean |"
# PatchCore's bottle / Gaussian Noise seed 1 failed (synthetic's failed row): its Gaussian Noise
# value and Mean lack a cell of the run, partial (†); the table says what † means under it
NOTE = ("† partial: the mean lacks cells the run has for its column (a category or seed that failed, has not "
        "run yet or has no value of this metric); never bold")


def test_means_over_categories_and_seeds_exclude_failed_rows():
    frame = table_frame(synthetic())
    assert list(frame.index) == ["PatchCore", "TTAD"]
    assert list(frame.columns) == [("MVTec AD", "Clean"), ("MVTec AD", "Gaussian Noise"),
                                   ("MVTec AD", "Contrast"), ("MVTec AD", "Mean")]
    pc, tt = frame.loc["PatchCore"], frame.loc["TTAD"]
    assert math.isclose(pc[("MVTec AD", "Gaussian Noise")], 0.75)  # the failed 0.0 is not in
    assert math.isclose(tt[("MVTec AD", "Gaussian Noise")], 0.88)  # (0.90 + 0.86) / 2
    # Mean is over the corrupted conditions only: Clean is excluded
    assert math.isclose(pc[("MVTec AD", "Mean")], (0.75 + 0.62) / 2)
    assert math.isclose(tt[("MVTec AD", "Mean")], (0.88 + 0.82) / 2)


def test_markdown_exact_cells_and_bold_ties():
    md = main_table(synthetic(), fmt="markdown")
    lines = md.strip().splitlines()
    assert lines[0] == HEADER
    assert lines[1] == "|:---|---:|---:|---:|---:|"
    assert lines[2] == "| PatchCore | **97.00** | 75.00† | 62.00 | 68.50† |"
    assert lines[3] == "| TTAD | **97.00** | **88.00** | **82.00** | **85.00** |"
    assert lines[4:] == ["", NOTE]


def test_latex_booktabs_and_bold():
    tex = main_table(synthetic(), fmt="latex", caption="Image AUROC", label="tab:main")
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{", r"\caption{Image AUROC}",
                  r"\label{tab:main}", r"\multicolumn{4}{c}{MVTec AD}", r"\cmidrule(lr){2-5}"):
        assert token in tex
    assert r"Method & Clean & Gaussian Noise & Contrast & Mean \\" in tex
    assert r"PatchCore & \textbf{97.00} & 75.00$^\dagger$ & 62.00 & 68.50$^\dagger$ \\" in tex
    assert tex.endswith("\\begin{flushleft}\\footnotesize\n$^\\dagger$ partial: the mean lacks cells the run has for "
                        "its column (a category or seed that failed, has not run yet or has no value of this metric); "
                        "never bold\n\\end{flushleft}")
    assert r"TTAD & \textbf{97.00} & \textbf{88.00} & \textbf{82.00} & \textbf{85.00} \\" in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")


def test_every_latex_layout_compiles():
    """Labels with LaTeX's special characters, partial means (dagger), std, several metrics,
    per class and per defect type: the structure pdflatex needs (tests/_latex.py)."""
    df = with_breakdown(synthetic()).replace({"method": {"ttad": "my_ttad #2 (50% & more)"},
                                             "category": {"cable": "metal_nut"}})
    gone = (df["method"] == "patchcore") & (df["category"] == "metal_nut") & (df["corruption"] == "contrast")
    df = df[~gone]
    layouts = [main_table(df, fmt="latex"), main_table(df, ["image_auroc", "pixel_auroc"], fmt="latex"),
               main_table(df, fmt="latex", per_class=True), main_table(df, fmt="latex", by="defect_type")]
    for tex in layouts:
        check_latex(tex)
        assert r"my\_ttad \#2 (50\% \& more)" in tex
    assert r"60.00$^\dagger$" in layouts[0] and r"80.00 $\pm$ 1.41" in layouts[3]
    assert r"metal\_nut" in layouts[2]


def test_method_order_and_selection():
    md = main_table(synthetic(), fmt="markdown", methods=["TTAD", "patchcore"], mean=False)
    lines = md.strip().splitlines()
    assert lines[0] == "| Method | MVTec AD / Clean | MVTec AD / Gaussian Noise | MVTec AD / Contrast |"
    assert lines[2].startswith("| TTAD |") and lines[3].startswith("| PatchCore |")
    only = main_table(synthetic(), fmt="markdown", methods=["ttad"], conditions=["contrast"])
    assert only.strip().splitlines()[2] == "| TTAD | 82.00 |"


def test_default_order_is_the_papers_then_table4_then_user_methods():
    # rows arrive in an arbitrary order (part files load by cell id)
    df = synthetic()
    extra = []
    for name in ("mine", "ot_discrete", "none", "rd4ad"):
        r = df[df.method == "ttad"].copy()
        r["method"] = r["config_hash"] = name
        r["cell_id"] = r["cell_id"] + name
        extra.append(r)
    mixed = pd.concat([extra[0], df.iloc[::-1], *extra[1:]], ignore_index=True)
    assert list(table_frame(mixed).index) == ["PatchCore", "TTAD", "RD4AD", "none", "ot_discrete", "mine"]


def test_failed_rows_are_excluded_entirely():
    extra = [dict(cell_id="x", method="broken", dataset="mvtec_ad", category="bottle",
                  corruption="clean", severity=0, seed=0, image_auroc=0.99, status="failed", error="oom")]
    md = main_table(synthetic(extra), fmt="markdown")
    assert "99.00" not in md  # its value is not used; the method is shown as failed (test_table_mixed_rows)
    assert "| broken | failed | – | – | – |" in md


def test_missing_cells_render_as_dash_and_partial_means_are_marked():
    df = synthetic()
    # TTAD lacks cable/contrast (failed): its contrast mean covers 1 of 2 categories
    df = df[~((df.method == "ttad") & (df.category == "cable") & (df.corruption == "contrast"))]
    # PatchCore has no pixel maps at all
    df.loc[df.method == "patchcore", "pixel_auroc"] = np.nan
    md = main_table(df, fmt="markdown").strip().splitlines()
    assert md[3] == "| TTAD | **97.00** | **88.00** | 84.00† | 86.00† |"
    assert md[2] == "| PatchCore | **97.00** | 75.00† | **62.00** | 68.50† |"
    px = main_table(df, metric="pixel_auroc", fmt="markdown").strip().splitlines()
    assert px[2] == "| PatchCore | – | – | – | – |"
    tex = main_table(df, metric="pixel_auroc", fmt="latex")
    assert r"PatchCore & -- & -- & -- & -- \\" in tex


def test_several_severities_get_labels():
    extra = [dict(cell_id=f"s3-{m}-{c}", method=m, dataset="mvtec_ad", category=c, corruption="contrast",
                  severity=3, seed=0, image_auroc=0.9, status="ok")
             for m in ("patchcore", "ttad") for c in ("bottle", "cable")]
    md = main_table(synthetic(extra), fmt="markdown", mean=False)
    assert md.splitlines()[0] == ("| Method | MVTec AD / Clean | MVTec AD / Gaussian Noise | "
                                  "MVTec AD / Contrast (s3) | MVTec AD / Contrast (s5) |")
    assert condition_label("clean", 0) == "Clean"
    assert condition_label("defocus_blur", 5) == "Defocus Blur"


def test_several_metrics_and_lower_is_better():
    md = main_table(synthetic(), metric=["image_auroc", "pixel_auroc"], fmt="markdown", mean=False)
    assert md.splitlines()[0].startswith("| Method | MVTec AD / Clean / I-AUROC | MVTec AD / Clean / P-AUROC |")
    df = synthetic().assign(total_seconds=lambda d: np.where(d.method == "ttad", 3.0, 1.0))
    md = main_table(df, metric="total_seconds", fmt="markdown", decimals=1, mean=False)
    assert md.strip().splitlines()[2] == "| PatchCore | **1.0** | 1.0† | **1.0** |"


def test_per_class_layout_has_mean_row_and_bold_per_block():
    md = main_table(synthetic(), fmt="markdown", per_class=True).strip().splitlines()
    assert md[0] == ("| Category | Clean / PatchCore | Clean / TTAD | Gaussian Noise / PatchCore | "
                     "Gaussian Noise / TTAD | Contrast / PatchCore | Contrast / TTAD |")
    assert md[2] == "| bottle | **98.00** | **98.00** | 80.00† | **90.00** | 60.00 | **84.00** |"
    assert md[3] == "| cable | **96.00** | **96.00** | 70.00 | **86.00** | 64.00 | **80.00** |"
    assert md[4] == "| Mean | **97.00** | **97.00** | 75.00† | **88.00** | 62.00 | **82.00** |"
    tex = main_table(synthetic(), fmt="latex", per_class=True)
    assert "\\midrule\nMean & " in tex and r"\multicolumn{2}{c}{Gaussian Noise}" in tex
    assert r"Category & PatchCore & TTAD" in tex


def test_per_class_needs_one_dataset():
    extra = [dict(cell_id="r", method="ttad", dataset="real_iad", category="pcb", corruption="clean",
                  severity=0, seed=0, image_auroc=0.9, status="ok")]
    with pytest.raises(ValueError, match="per dataset"):
        main_table(synthetic(extra), per_class=True)
    assert "pcb" not in main_table(synthetic(extra), per_class=True, datasets="mvtec_ad", fmt="markdown")


def test_mixed_configs_warn():
    df = synthetic()
    df.loc[df.index[:2], "config_hash"] = "other"
    with pytest.warns(BenchWarning, match="patchcore differ in config_hash: shown as one table row per variant"):
        main_table(df, fmt="markdown")


def test_defects_the_grid_lost_are_said_with_the_table():
    df = synthetic()
    df["n_masks_lost"] = 0
    df["image_labels"] = [[0, 1, 1, 1]] * len(df)
    df.loc[(df["method"] == "patchcore") & (df["category"] == "bottle"), "n_masks_lost"] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        main_table(df[df["method"] != "patchcore"], fmt="markdown")  # none lost: silent
    with pytest.warns(BenchWarning) as said:
        main_table(df, fmt="markdown")
    assert [str(w.message) for w in said] == [
        "defects outside the evaluation grid (patchcore on bottle: 2 of 3): the method never saw them, the "
        "images still count as anomalous and add no defect pixels (n_masks_lost, masks_lost in the rows)"]


def test_tables_from_a_run_store(tmp_path):
    store = RunStore(tmp_path)
    for row in synthetic().to_dict("records"):
        store.write(row)
    assert main_table(store.read(), fmt="markdown").splitlines()[0] == HEADER


def test_published_numbers_are_packaged():
    t1 = papers.published("ttad", 1, metric="image_auroc", dataset="mvtec_ad", method="ttad")
    assert t1.set_index("corruption").loc["contrast", "value"] == 85.45
    t4 = papers.published("ttad", 4, metric="image_auroc", method="ot_discrete_augment")
    assert t4.set_index("corruption").loc["contrast", "value"] == 84.45  # the paper disagrees with itself
    assert papers.layout("gnl", 1)["conditions"][0] == ("clean", 0)
    assert {3} == {s for c, s in papers.layout("gnl", 1)["conditions"] if c != "clean"}


def test_compare_published_ttad_table1():
    df = synthetic()
    df["severity"] = np.where(df.corruption == "clean", 0, 5)
    out = compare_published(df, paper="ttad", table=1)
    assert set(out["method"]) == {"PatchCore", "TTAD"}
    row = out[(out.method == "TTAD") & (out.dataset == "mvtec_ad") & (out.corruption == "contrast")].iloc[0]
    assert row["published"] == 85.45 and math.isclose(row["ours"], 82.0)
    assert math.isclose(row["delta"], 82.0 - 85.45) and row["ours_method"] == "ttad"
    missing = out[(out.method == "TTAD") & (out.corruption == "defocus_blur") & (out.dataset == "mvtec_ad")]
    assert missing["ours"].isna().all() and missing["published"].iloc[0] == 96.75
    md = compare_published(df, paper="ttad", table=1, fmt="markdown")
    assert "82.00 (85.45)" in md and "– (96.75)" in md
    tex = compare_published(df, paper="ttad", table=1, fmt="latex")
    assert r"\toprule" in tex and "82.00 (85.45)" in tex
    assert len(compare_published(df, paper="ttad", table=1, only_ours=False)["method"].unique()) == 10



def test_compare_published_appends_corruptions_the_paper_lacks_as_columns_without_a_published_value():
    """bench reproduce --add-corruptions: the user's shift as a column after the paper's, for
    every method shown, "ours (–)"; rows of a corruption not asked for stay out."""
    extra = [dict(cell_id=f"{m}-bottle-{c}", method=m, config_hash=m, dataset="mvtec_ad", category="bottle",
                  corruption=c, severity=5, seed=0, image_auroc=v, pixel_auroc=v, status="ok", error="")
             for m, c, v in (("ttad", "uneven_light", 0.625), ("patchcore", "uneven_light", 0.5),
                             ("ttad", "fog", 0.1))]
    df = synthetic(extra)
    df["severity"] = np.where(df.corruption == "clean", 0, 5)
    out = compare_published(df, paper="ttad", table=1, metric="image_auroc", extra_corruptions=["uneven_light"])
    mine = out[out.corruption == "uneven_light"].set_index("method")
    assert sorted(mine.index) == ["PatchCore", "TTAD"] and mine["published"].isna().all()
    assert mine.loc["TTAD", "ours"] == 62.5 and mine.loc["PatchCore", "ours"] == 50.0
    assert "fog" not in set(out.corruption)
    md = compare_published(df, paper="ttad", table=1, metric="image_auroc", extra_corruptions=["uneven_light"],
                           fmt="markdown")
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header.index("MVTec AD / Contrast") < header.index("MVTec AD / Uneven Light")  # after the paper's
    assert "62.50† (–)" in md  # bottle alone of the rows' categories: marked, as bench table marks it


def test_relative_tables_pair_each_cell_with_its_clean_cell_or_the_reference_methods():
    """bench table --relative: what the shift costs (minus the method's own clean cell) and what a
    method wins back (minus PatchCore's cell), paired per category and seed before any mean: a
    cell without its partner (TTAD's bottle noise seed 1 has no clean seed 1; PatchCore's is
    failed) gives no difference and its value is partial."""
    df = synthetic()

    def row(md: str, label: str) -> list[str]:
        return next(line for line in md.splitlines() if line.startswith(f"| {label} |")).split(" | ")[1:]

    drop = main_table(df, "image_auroc", fmt="markdown", relative="clean", std=False)
    assert row(drop, "PatchCore") == ["**97.00**", "-22.00†", "-35.00", "-28.50† |"]
    assert row(drop, "TTAD") == ["**97.00**", "-9.50†", "**-15.00**", "-12.25† |"]
    assert "Differences: each shifted value is the method's value minus its own clean value on the same category " \
        "and seed" in drop
    check_latex(main_table(df, "image_auroc", fmt="latex", relative="clean"))  # the note is LaTeX too
    gain = main_table(df, "image_auroc", fmt="markdown", relative="PatchCore", std=False)
    assert row(gain, "PatchCore") == ["97.00", "75.00†", "62.00", "68.50† |"]  # the reference itself, not bold
    assert row(gain, "TTAD") == ["0.00", "12.50†", "20.00", "16.25† |"]
    assert "minus PatchCore's on the same condition, category and seed" in gain and "**" not in gain
    with pytest.raises(BenchError, match=r"--relative gnl: no rows of that method here \(methods: patchcore, ttad\)"):
        main_table(df, "image_auroc", fmt="markdown", relative="gnl")
    two = synthetic([dict(cell_id="pc-other", method="patchcore", config_hash="other", dataset="mvtec_ad",
                          category="bottle", corruption="clean", severity=0, seed=0, image_auroc=0.5,
                          pixel_auroc=0.4, status="ok", error="")])
    with pytest.raises(BenchError, match="its rows hold 2 configs"):
        main_table(two, "image_auroc", fmt="markdown", relative="patchcore")


def test_bench_table_relative_refuses_layouts_it_does_not_fill(tmp_path, monkeypatch, capsys):
    path = tmp_path / "rows.parquet"
    synthetic().to_parquet(path)
    code, out, _ = run_cli(monkeypatch, capsys, "table", path, "--relative", "clean")
    assert code == 0 and "| TTAD | **97.00** | -9.50† | **-15.00** | -12.25† |" in out
    code, _, err = run_cli(monkeypatch, capsys, "table", path, "--relative", "clean", "--compare", "ttad:1")
    assert code == 2 and "--relative: differences are shown in the main and per-class layouts only" in err

def test_paper_table_uses_the_published_layout():
    md = paper_table(synthetic(), "ttad", 1, fmt="markdown")
    lines = md.strip().splitlines()
    assert lines[0] == ("| Method | MVTec AD / Clean | MVTec AD / Gaussian Noise | MVTec AD / Defocus Blur | "
                        "MVTec AD / Brightness | MVTec AD / Contrast |")
    assert lines[2] == "| PatchCore | **97.00** | 75.00† | – | – | 62.00 |"
    # GNL Table 1 is at severity 3: our severity-5 rows do not fill it
    gnl = paper_table(synthetic(), "gnl", 1, fmt="markdown").strip().splitlines()
    assert gnl[2] == "| PatchCore | **97.00** | – | – | – | – |"


# --------------------------------------------------------------------------- per defect type


def with_breakdown(df):
    """Each ok row's breakdown: crack = its image AUROC (pixel - 0.2, AUPRO - 0.3) in every
    category, hole (image AUROC - 0.1, no pixel values) in bottle only."""
    from bench.results import encode_defect_metrics

    def one(r):
        v = r["image_auroc"]
        d = {"crack": {"image_auroc": v, "pixel_auroc": v - 0.2, "aupro": v - 0.3, "n": 3}}
        if r["category"] == "bottle":
            d["hole"] = {"image_auroc": v - 0.1, "pixel_auroc": math.nan, "aupro": math.nan, "n": 2}
        return encode_defect_metrics(d) if r["status"] == "ok" else None

    df = df.copy()
    df["defect_metrics"] = df.apply(one, axis=1)
    return df


def test_by_defect_type_frame_means_over_the_categories_that_have_the_type():
    frame = table_frame(with_breakdown(synthetic()), by="defect_type")
    assert list(frame.index) == [("PatchCore", "crack"), ("PatchCore", "hole"), ("TTAD", "crack"), ("TTAD", "hole")]
    assert list(frame.columns) == [("MVTec AD", "Clean"), ("MVTec AD", "Gaussian Noise"),
                                   ("MVTec AD", "Contrast"), ("MVTec AD", "Mean")]
    # crack: the main table's values (both categories); hole: bottle's alone, not a partial mean
    main = table_frame(synthetic())
    pd.testing.assert_frame_equal(frame.xs("crack", level="defect type"), main, check_names=False)
    assert math.isclose(frame.loc[("PatchCore", "hole"), ("MVTec AD", "Gaussian Noise")], 0.70)
    assert math.isclose(frame.loc[("TTAD", "hole"), ("MVTec AD", "Gaussian Noise")], 0.80)  # (0.79 + 0.81) / 2
    aupro = table_frame(with_breakdown(synthetic()), "aupro", by="defect_type")
    assert math.isclose(aupro.loc[("TTAD", "crack"), ("MVTec AD", "Clean")], 0.97 - 0.3)
    assert aupro.loc[("TTAD", "hole")].isna().all()


def test_by_defect_type_markdown_and_latex_are_pinned():
    df = with_breakdown(synthetic())
    assert main_table(df, fmt="markdown", by="defect_type") == (
        "| Method / Defect type | MVTec AD / Clean | MVTec AD / Gaussian Noise | MVTec AD / Contrast | MVTec AD / Mean |\n"
        "|:---|---:|---:|---:|---:|\n"
        "| PatchCore / crack | **97.00** | 75.00† | 62.00 | 68.50† |\n"
        "| PatchCore / hole | **88.00** | 70.00† | 50.00 | 60.00† |\n"
        "| TTAD / crack | **97.00** | **88.00** | **82.00** | **85.00** |\n"
        "| TTAD / hole | **88.00** | **80.00 ± 1.41** | **74.00** | **77.00** |\n"
        "\n" + NOTE + "\n")  # bold per type and column
    latex = main_table(df, "pixel_auroc", fmt="latex", by="defect_type")
    assert latex.splitlines()[4:11] == [
        r"Method / Defect type & Clean & Gaussian Noise & Contrast & Mean \\",
        r"\midrule",
        r"PatchCore / crack & \textbf{77.00} & 55.00$^\dagger$ & 42.00 & 48.50$^\dagger$ \\",
        r"PatchCore / hole & -- & -- & -- & -- \\",
        r"\midrule",
        r"TTAD / crack & \textbf{77.00} & \textbf{68.00} & \textbf{62.00} & \textbf{65.00} \\",
        r"TTAD / hole & -- & -- & -- & -- \\",
    ]


def test_by_defect_type_marks_a_partial_mean_and_refuses_what_it_cannot_show():
    df = with_breakdown(synthetic())
    gone = (df["method"] == "ttad") & (df["category"] == "cable") & (df["corruption"] == "contrast")
    frame_md = main_table(df[~gone], fmt="markdown", by="defect_type")
    assert "| TTAD / crack | **97.00** | **88.00** | 84.00† |" in frame_md  # bottle only: partial, not bold
    assert "| TTAD / hole | **88.00** | **80.00 ± 1.41** | **74.00** |" in frame_md  # hole: bottle is all
    with pytest.raises(ValueError, match="one of image_auroc, pixel_auroc, aupro"):
        main_table(df, "image_f1_max", by="defect_type")
    with pytest.raises(ValueError, match="one metric"):
        main_table(df, ["image_auroc", "aupro"], by="defect_type")


def test_rows_without_the_breakdown_get_one_line(tmp_path, monkeypatch, capsys):
    from _grids import run_cli

    from bench.errors import BenchError

    with pytest.raises(BenchError, match="no per-defect-type metrics .*rerun the grid with a new --out"):
        main_table(synthetic(), by="defect_type")
    # old rows beside new ones are left out with a warning
    df = with_breakdown(synthetic())
    df.loc[df["category"] == "cable", "defect_metrics"] = None
    with pytest.warns(BenchWarning, match="6 of 13 ok rows have no per-defect-type metrics"):
        frame = table_frame(df, by="defect_type")
    assert math.isclose(frame.loc[("PatchCore", "crack"), ("MVTec AD", "Clean")], 0.98)

    store = RunStore(tmp_path / "run")
    for row in synthetic().to_dict("records"):
        store.write(row)
    code, out, err = run_cli(monkeypatch, capsys, "table", store.run_dir, "--by", "defect_type")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: {store.run_dir}: no per-defect-type metrics (column defect_metrics): the rows were written "
        "before the breakdown existed; rerun the grid with a new --out (a resumed run keeps its old rows) to "
        "get --by defect_type"]
    for row in with_breakdown(synthetic()).to_dict("records"):
        store.write(row)
    code, out, err = run_cli(monkeypatch, capsys, "table", store.run_dir, "--by", "defect_type", "--metric", "aupro")
    assert code == 0 and out.splitlines()[2].startswith("| PatchCore / crack | **67.00** | 45.00† |"), out
    code, _, err = run_cli(monkeypatch, capsys, "table", store.run_dir, "--by", "defect_type", "--metric", "image_ap")
    assert code == 2 and "pass one --metric of image_auroc, pixel_auroc, aupro" in err


def test_cli_latex_caption_and_label_reach_every_layout(monkeypatch, capsys):
    ref = Path(__file__).resolve().parents[1] / "results" / "reference" / "textures_default"
    for extra in ((), ("--compare", "ttad:1"), ("--per-class",)):
        code, out, err = run_cli(monkeypatch, capsys, "table", ref, "-f", "latex", "--caption", r"Ours, 50\%",
                                 "--label", "tab:ours", *extra)
        assert code == 0, err
        check_latex(out)
        assert "\\caption{Ours, 50\\%}\n\\label{tab:ours}" in out, extra


def test_every_registered_dataset_has_its_published_name_in_tables():
    from bench.datasets.registry import DATASETS
    from bench.tables.names import DATASET_NAMES

    papers_datasets = {"mvtec_ad", "realiad", "visa", "btad", "mpdd", "cifar10", "mnist", "pacs", "mvtec3d"}
    assert papers_datasets <= set(DATASETS)
    assert {d: DATASET_NAMES.get(d) for d in papers_datasets} == {
        "mvtec_ad": "MVTec AD", "realiad": "Real-IAD", "visa": "VisA", "btad": "BTAD", "mpdd": "MPDD",
        "cifar10": "CIFAR-10", "mnist": "MNIST/MNIST-M", "pacs": "PACS", "mvtec3d": "MVTec 3D-AD"}
    header = main_table(synthetic().assign(dataset="realiad"), fmt="markdown").splitlines()[0]
    assert header.startswith("| Method | Real-IAD / Clean |")  # was "realiad / Clean"


def test_compare_takes_a_preset_name_and_says_which_tables_exist(monkeypatch, capsys):
    ref = Path(__file__).resolve().parents[1] / "results" / "reference" / "textures_default"
    code, by_preset, err = run_cli(monkeypatch, capsys, "table", ref, "--compare", "ttad-table1")
    assert code == 0
    assert ("warning: the rows are of textures; ttad table 1 publishes mvtec_ad, real_iad: no value of ours to "
            "compare") in " ".join(err.split())
    assert run_cli(monkeypatch, capsys, "table", ref, "--compare", "ttad:1")[1] == by_preset
    for bad in ("ttad:9", "foo", "ttad:x"):  # ":x:" stays text (no emoji)
        code, _, err = run_cli(monkeypatch, capsys, "table", ref, "--compare", bad)
        assert code == 2 and "Traceback" not in err
        assert " ".join(err.split()).startswith(f"error: --compare {bad}: no such published table; use one of gnl:1, ")
    code, _, err = run_cli(monkeypatch, capsys, "table", ref, "--compare", "ttad:1", "--metric", "aupro")
    assert code == 2
    assert " ".join(err.split()) == ("error: --compare ttad:1: no published numbers for 'ttad' table 1 metric "
                                     "'aupro'; pass a --metric it publishes")


def test_real_iad_rows_meet_their_published_numbers():
    """Our dataset is `realiad`, the published numbers' key `real_iad`: matched, not all '–'."""
    rows = synthetic().assign(dataset="realiad")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchWarning)  # no "no value of ours to compare"
        out = compare_published(rows, paper="ttad", table=1, metric="image_auroc")
    mine = out[(out["dataset"] == "real_iad") & (out["ours_method"] == "patchcore") & (out["corruption"] == "clean")]
    assert len(mine) == 1 and np.isfinite(mine["ours"].iloc[0]) and np.isfinite(mine["published"].iloc[0])


def test_relative_to_clean_reads_a_test_domain_against_the_in_distribution_clean_cell():
    """With test domains (GNL Table 3: MNIST in distribution, MNIST-M out), the shift is the
    domain: MNIST-M's clean column is a difference from MNIST's clean cell, not a value."""
    rows = []
    for m, vals in (("rd4ad", (0.9, 0.6, 0.5)), ("gnl", (0.92, 0.7, 0.66))):
        for (dom, cor, sev), v in zip((("mnist", "clean", 0), ("mnist_m", "clean", 0), ("mnist_m", "contrast", 5)),
                                      vals):
            rows.append(dict(cell_id=f"{m}-{dom}-{cor}", method=m, config_hash=m, dataset="mnist", domain=dom,
                             category="0", corruption=cor, severity=sev, seed=0, image_auroc=v, status="ok", error=""))
    md = main_table(pd.DataFrame(rows), "image_auroc", fmt="markdown", relative="clean")
    assert "| RD4AD | 90.00 | -30.00 | -40.00 | -35.00 |" in md
    assert "| GNL | **92.00** | **-22.00** | **-26.00** | **-24.00** |" in md


def test_cli_selects_corruptions_and_categories_and_names_what_the_rows_lack(tmp_path, monkeypatch, capsys):
    store = RunStore(tmp_path / "run")
    for row in synthetic().to_dict("records"):
        store.write(row)

    def table(*args):
        return run_cli(monkeypatch, capsys, "table", tmp_path / "run", "--no-std", *args)

    code, out, _ = table("--corruptions", "contrast", "--categories", "cable")
    assert code == 0, out
    assert out.splitlines()[:4] == ["| Method | MVTec AD / Clean | MVTec AD / Contrast |", "|:---|---:|---:|",
                                    "| PatchCore | **96.00** | 64.00 |", "| TTAD | **96.00** | **80.00** |"]
    code, out, _ = table("--corruptions", "noise")  # a preset: the members the rows hold
    assert code == 0 and out.splitlines()[0] == "| Method | MVTec AD / Clean | MVTec AD / Gaussian Noise |"
    for args, said in ((("--corruptions", "fog"), "--corruptions fog: no rows of it in"),
                       (("--categories", "carpet,zipper"), "--categories carpet,zipper: no rows of them in"),
                       (("--compare", "ttad:1", "--categories", "cable"), "--compare: the published table fixes")):
        code, _, err = table(*args)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err


def test_bold_follows_a_registered_metrics_direction(monkeypatch):
    from bench.metrics import METRICS, Metric
    from bench.tables.render import _defaults

    assert _defaults(["image_auroc"], None, "auto") == (100, "max")
    monkeypatch.setitem(METRICS, "miss_rate", Metric("miss_rate", lambda y, s: 0.0, "image", "Miss", "miss rate",
                                                     higher_is_better=False))
    assert _defaults(["miss_rate"], None, "auto")[1] == "min"
    assert _defaults(["score_seconds"], None, "auto") == (1, "min")
