"""`bench table` never averages rows that must not be averaged, and says what its marks mean.

Rows that differ in a cell's identity besides the seed (config, protocol, test subset) are one
table row each, labelled by what differs; a value that lacks a (category, seed) cell its column
has is partial (†, not bold); a value whose every cell failed reads "failed", not "–"; the
Markdown and LaTeX say what † and "failed" mean under the table.
"""
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import BenchWarning
from bench.results import RunStore, load_runs
from bench.tables import main_table, table_frame
from bench.tables.aggregate import LostMasksWarning
from _grids import run_cli
from _latex import check_latex

DAGGER_NOTE = ("† partial: the mean lacks cells the run has for its column (a category or seed that failed, has not "
               "run yet or has no value of this metric); never bold")
FAILED_NOTE = ("failed: every cell of the value failed (the rows' status and error say why; bench grid "
               "--retry-failed reruns them)")
PC_DEFAULT = "0a1d6e7d839d"  # patchcore's default config hash on mvtec_ad (bench.grid.default_config_hash)


def row(method, category, corruption, seed, value, status="ok", **kw):
    """One result row of mvtec_ad (severity 5 when corrupted); ``kw`` overrides any column."""
    r = dict(method=method, config_hash=method, dataset="mvtec_ad", category=category, corruption=corruption,
             severity=0 if corruption == "clean" else 5, seed=seed, protocol="native", test_subset=0,
             image_auroc=value if status == "ok" else float("nan"), pixel_auroc=value, status=status,
             error="" if status == "ok" else "boom")
    r.update(kw)
    r["cell_id"] = "-".join(str(r[k]) for k in ("method", "config_hash", "category", "corruption", "seed",
                                                 "protocol", "test_subset")).replace("+", "p")
    return r


def grid(method, values, **kw):
    """Rows of ``method``: {(category, corruption, seed): value or "failed"}."""
    return [row(method, c, k, s, None if v == "failed" else v, status="failed" if v == "failed" else "ok", **kw)
            for (c, k, s), v in values.items()]


def md_lines(df, **kw):
    return main_table(df, fmt="markdown", **kw).strip().splitlines()


# --------------------------------------------------------------------------- 1. test subset, protocol


def test_a_test_subset_is_its_own_row_not_averaged_with_the_full_test_set():
    """The auditor's mix2: 99.50 on every test image, 100.00 on --test-subset 20 read 99.75 (bold)."""
    df = pd.DataFrame(grid("patchcore", {("brick", "clean", 0): 0.995})
                      + grid("patchcore", {("brick", "clean", 0): 1.0}, test_subset=20)
                      + grid("ttt++", {("brick", "clean", 0): 0.995}))
    with pytest.warns(BenchWarning, match="patchcore differ in test_subset"):
        lines = md_lines(df)
    assert lines[2:5] == ["| PatchCore (test_subset all) | 99.50 |", "| PatchCore (test_subset 20) | **100.00** |",
                          "| TTT++ | 99.50 |"]
    assert "99.75" not in "\n".join(lines)


def test_a_protocol_is_its_own_row_and_methods_selects_every_variant():
    """The auditor's mix3: native and --protocol resized rows read one bold mean."""
    df = pd.DataFrame(grid("patchcore", {("brick", "clean", 0): 0.995, ("brick", "contrast", 0): 0.475})
                      + grid("patchcore", {("brick", "clean", 0): 0.9975, ("brick", "contrast", 0): 0.55},
                             protocol="resized"))
    with pytest.warns(BenchWarning, match="patchcore differ in protocol"):
        frame = table_frame(df, methods=["PatchCore"], mean=False)
    assert list(frame.index) == ["PatchCore (protocol native)", "PatchCore (protocol resized)"]
    assert frame[("MVTec AD", "Contrast")].tolist() == [0.475, 0.55]
    with pytest.warns(BenchWarning):  # a variant by its row label alone
        assert list(table_frame(df, methods=["patchcore (protocol resized)"]).index) == ["PatchCore (protocol resized)"]


# --------------------------------------------------------------------------- 3. configs


def configs(**change):
    base = {"backbone": "tf_efficientnet_lite0", "coreset_ratio": 0.1, "image_size": 224}
    return json.dumps({**base, **change})


def two_configs():
    """The auditor's mix: patchcore at its default config and with coreset_ratio=0.01 in one run
    (rows in any order: the default config comes first)."""
    return pd.DataFrame(
        grid("patchcore", {("brick", "clean", 0): 0.995, ("brick", "contrast", 0): 0.475},
             config_hash=PC_DEFAULT, config=configs())
        + grid("patchcore", {("brick", "clean", 0): 0.9575, ("brick", "contrast", 0): 0.485},
               config_hash="a76975ec3a12", config=configs(coreset_ratio=0.01))
        + grid("ttt++", {("brick", "clean", 0): 0.995, ("brick", "contrast", 0): 0.4225})).iloc[::-1]


def test_two_configs_are_two_rows_labelled_by_the_field_that_differs():
    """Was one row of their mean (97.62, 48.00) and a warning naming an option the CLI lacks."""
    with pytest.warns(BenchWarning, match="patchcore differ in config_hash: shown as one table row per variant"):
        lines = md_lines(two_configs(), mean=False)
    assert lines[2:] == ["| PatchCore (coreset_ratio 0.1) | **99.50** | 47.50 |",
                         "| PatchCore (coreset_ratio 0.01) | 95.75 | **48.50** |",
                         "| TTT++ | **99.50** | 42.25 |"]
    with pytest.warns(BenchWarning):
        tex = main_table(two_configs(), fmt="latex", per_class=True)
    check_latex(tex)
    assert r"PatchCore (coreset\_ratio 0.01)" in tex


def test_configs_nothing_tells_apart_get_their_hash():
    df = two_configs()
    df["config"] = "not json"
    with pytest.warns(BenchWarning):
        assert set(table_frame(df).index) == {f"PatchCore (config {PC_DEFAULT[:8]})", "PatchCore (config a76975ec)",
                                              "TTT++"}


def test_configs_are_split_per_defect_type_too_and_compare_refuses_them(tmp_path, monkeypatch, capsys):
    from bench.results import encode_defect_metrics

    df = two_configs()
    df["defect_metrics"] = [encode_defect_metrics({"crack": {"image_auroc": v, "pixel_auroc": v, "aupro": v, "n": 2}})
                            for v in df["image_auroc"]]
    with pytest.warns(BenchWarning):
        frame = table_frame(df, by="defect_type", mean=False)
    assert list(frame.index) == [("PatchCore (coreset_ratio 0.1)", "crack"), ("PatchCore (coreset_ratio 0.01)", "crack"),
                                 ("TTT++", "crack")]
    store = RunStore(tmp_path / "run")
    for r in two_configs().to_dict("records"):
        store.write(r)
    code, out, err = run_cli(monkeypatch, capsys, "table", store.run_dir, "--compare", "ttad:1")
    assert code == 2 and out == ""
    assert "--compare: rows of patchcore differ in config_hash; a comparison with published numbers takes one" in err
    code, out, err = run_cli(monkeypatch, capsys, "table", store.run_dir, "-o", tmp_path / "t.md")
    assert code == 0 and "| PatchCore (coreset_ratio 0.01) | 95.75 | **48.50** |" in (tmp_path / "t.md").read_text()


REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
THREE = ["image_auroc", "pixel_auroc", "aupro"]


@pytest.mark.parametrize("table, rows, kw", [
    ("magnetic_tile_distill/table.md", "rows.parquet", dict(metric=THREE, fmt="markdown")),
    ("magnetic_tile_distill/table.tex", "rows.parquet", dict(metric=THREE, fmt="latex")),
    ("magnetic_tile_patchcore/table.md", "rows.parquet", dict(metric=THREE, fmt="markdown")),
    ("magnetic_tile_patchcore/table.tex", "rows.parquet", dict(metric=THREE[:2], fmt="latex")),
    ("magnetic_tile_patchcore/table_square224.md", "rows_square224.parquet", dict(metric=THREE, fmt="markdown")),
    ("magnetic_tile_pictures/table.md", "rows.parquet", dict(fmt="markdown")),
    ("magnetic_tile_distill/by_defect_type_cpu/table.md", "rows.parquet", dict(metric=THREE, fmt="markdown")),
    ("magnetic_tile_distill/by_defect_type_cpu/table_by_defect_type_pixel.tex", "rows.parquet",
     dict(metric="pixel_auroc", fmt="latex", by="defect_type")),
])
def test_the_committed_reference_tables_render_byte_identically(table, rows, kw):
    """One config per method: no split, no mark, no note; the tables `bench table` wrote then."""
    path = REFERENCE / table
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchWarning)  # no split, no average said
        warnings.simplefilter("ignore", LostMasksWarning)  # magnetic_tile_patchcore's, said as then
        text = main_table(load_runs([path.parent / rows]), **kw)
    assert text + "\n" == path.read_text()


# --------------------------------------------------------------------------- 2. missing (category, seed)


SEEDRUN = {("brick", "clean", 0): 0.535, ("brick", "clean", 1): 0.5125,
           ("grass", "clean", 0): 0.5325, ("grass", "clean", 1): "failed"}


def test_a_value_missing_a_seed_cell_of_its_column_is_partial_and_not_bold():
    """The auditor's seedrun: faulty_seed1grass failed on grass seed 1 only; its clean value (mean of
    brick over 2 seeds and grass over seed 0) read 52.81, bold, with no mark and no std."""
    ok = {k: 0.4725 if k[0] == "brick" else 0.5825 for k in SEEDRUN}
    df = pd.DataFrame(grid("faulty_seed1grass", SEEDRUN) + grid("faulty_ok", ok))
    lines = md_lines(df)
    assert lines[2:4] == ["| faulty_seed1grass | 52.81† |", "| faulty_ok | **52.75 ± 0.00** |"]
    assert lines[4:] == ["", DAGGER_NOTE]
    per_class = md_lines(df, per_class=True)
    assert per_class[3] == "| grass | 53.25† | **58.25** |" and per_class[4] == "| Mean | 52.81† | **52.75** |"


def test_a_seed_another_row_has_counts_and_a_seed_no_row_has_does_not():
    a = {("brick", "clean", 0): 0.9, ("brick", "clean", 1): 0.9, ("grass", "clean", 0): 0.9}
    b = {("brick", "clean", 0): 0.95, ("grass", "clean", 0): 0.95}  # lacks brick seed 1, which a has
    assert md_lines(pd.DataFrame(grid("a", a) + grid("b", b)))[2:4] == ["| a | **90.00** |", "| b | 95.00† |"]
    # nobody has grass seed 1: not a cell of the run, so a is complete
    assert md_lines(pd.DataFrame(grid("a", a) + grid("b", a)))[2:] == ["| a | **90.00** |", "| b | **90.00** |"]


# --------------------------------------------------------------------------- 4. failed, notes


PLUG = {("brick", "clean", 0): 0.5, ("grass", "clean", 0): 0.55, ("brick", "contrast", 0): 0.4,
        ("grass", "contrast", 0): 0.45}


def plug_run(tmp_path) -> Path:
    """faulty_ok fine; faulty_fit_raise failed in every cell (the auditor's plug_run)."""
    store = RunStore(tmp_path / "run")
    for r in grid("faulty_ok", PLUG) + grid("faulty_fit_raise", {k: "failed" for k in PLUG}):
        store.write(r)
    return store.run_dir


def test_a_method_whose_every_cell_failed_is_shown_failed_when_named(tmp_path, monkeypatch, capsys):
    """It vanished, with rc 0 and nothing on stderr, even named with --methods."""
    run = plug_run(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "table", run, "--methods", "faulty_fit_raise,faulty_ok")
    assert code == 0, err
    assert out.strip().splitlines()[2:] == ["| faulty_fit_raise | failed | failed |", "| faulty_ok | 52.50 | 42.50 |",
                                            "", FAILED_NOTE]
    code, out, _ = run_cli(monkeypatch, capsys, "table", run, "--metric", "pixel_auroc")  # default: shown too
    assert "| faulty_fit_raise | failed | failed |" in out


def test_failed_is_not_no_value_and_a_condition_every_method_failed_keeps_its_column():
    df = pd.DataFrame(grid("a", {**PLUG, ("brick", "snow", 0): "failed", ("grass", "snow", 0): "failed"})
                      + grid("b", {("brick", "snow", 0): "failed", ("grass", "snow", 0): "failed"}))
    df.loc[df["method"] == "a", "pixel_auroc"] = float("nan")  # no ground truth: "–"
    lines = md_lines(df, metric="pixel_auroc")
    assert lines[0] == "| Method | MVTec AD / Clean | MVTec AD / Snow | MVTec AD / Contrast | MVTec AD / Mean |"
    assert lines[2:4] == ["| a | – | failed | – | failed |", "| b | – | failed | – | failed |"]
    tex = main_table(df, metric="pixel_auroc", fmt="latex")
    check_latex(tex)
    assert r"a & -- & failed & -- & failed \\" in tex


def test_the_by_defect_type_layout_names_a_method_whose_every_cell_failed():
    from bench.results import encode_defect_metrics

    df = pd.DataFrame(grid("faulty_ok", PLUG) + grid("faulty_fit_raise", {k: "failed" for k in PLUG}))
    df["defect_metrics"] = [encode_defect_metrics({"crack": {"image_auroc": v, "n": 2}}) if s == "ok" else None
                            for v, s in zip(df["image_auroc"], df["status"])]
    with pytest.warns(BenchWarning, match=r"every cell failed of faulty_fit_raise \(4 cells\)"):
        main_table(df, fmt="markdown", by="defect_type")


def test_markdown_and_latex_say_what_the_dagger_means():
    df = pd.DataFrame(grid("a", PLUG) + grid("b", {**PLUG, ("grass", "contrast", 0): "failed"}))
    md = main_table(df, fmt="markdown")
    assert md.endswith("\n\n" + DAGGER_NOTE + "\n") and "| b | **52.50** | 40.00† |" in md
    tex = main_table(df, fmt="latex", caption="Image AUROC")
    check_latex(tex)
    assert tex.endswith("\\end{table}\n\n\\begin{flushleft}\\footnotesize\n$^\\dagger$ partial: the mean lacks cells "
                        "the run has for its column (a category or seed that failed, has not run yet or has no value of "
                        "this metric); never "
                        "bold\n\\end{flushleft}")
    clean = main_table(pd.DataFrame(grid("a", PLUG)), fmt="markdown")
    assert "†" not in clean and "partial" not in clean  # no mark, no note
