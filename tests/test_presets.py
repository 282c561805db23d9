"""Presets pin a paper table's protocol; `bench reproduce` compares with the published numbers."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.errors import BenchError
from bench.presets import PRESETS, comparison, cost, departures, get_preset, grid_spec

from _grids import preset_rows, run_cli
from _latex import check_latex
from bench.tables.render import latex_text

# the harness defaults of TTAD's OT rows that depart from the paper's text (bench.papers.PAPER_CONFIG):
# Eq. 6 sums over the pairs, Eq. 4 uses the whole memory bank
TTAD_HARNESS = ["ot_reduction=mean (paper: sum)", "ot_bank_cap=16384 (paper: no cap)"]


def test_presets_pin_the_papers_protocols():
    assert list(PRESETS) == ["ttad-table1", "ttad-table2", "ttad-table3", "ttad-table4", "gnl-table1", "gnl-table2",
                             *(f"gnl-table{n}" for n in range(3, 11))]  # every table of both papers
    t2 = grid_spec(get_preset("ttad-table2"))
    assert (t2.dataset, t2.corruptions, t2.severities, t2.backbone) == ("mvtec3d", ["point_gaussian_noise"], [5], "")
    assert t2.method_config("ttad_pointmae").adapt_epochs == 30 and t2.method_config("ttad_pointmae").adapt_batch_size == 10
    assert t2.method_config("patchcore_depth").backbone == "wide_resnet50_2"
    t1 = grid_spec(get_preset("ttad-table1"))
    assert (t1.dataset, t1.severities, t1.backbone) == ("mvtec_ad", [5], "wide_resnet50_2")
    assert t1.corruptions == ["gaussian_noise", "defocus_blur", "brightness", "contrast"]
    assert t1.method_config("ttad").adapt_epochs == 10
    real = grid_spec(get_preset("ttad-table1"), dataset="realiad")
    assert real.method_config("ttad").adapt_epochs == 1  # the paper: one epoch on Real-IAD
    assert grid_spec(get_preset("gnl-table1")).severities == [3]
    assert grid_spec(get_preset("gnl-table2")).dataset == "cifar10"
    with pytest.raises(BenchError, match="covers the datasets mvtec_ad, realiad"):
        grid_spec(get_preset("ttad-table1"), dataset="visa")
    with pytest.raises(BenchError, match="did you mean 'ttad-table1'"):
        get_preset("ttad-tabel1")


def test_a_method_subset_keeps_only_the_settings_that_reach_it():
    """perf_table's --methods rd4ad,gnl: Table 1's adapt_epochs (a TTA field) must not stop the grid."""
    preset = get_preset("ttad-table1")
    trained = grid_spec(preset, dataset="mvtec_ad", methods=["rd4ad", "gnl"])
    assert trained.methods == ["rd4ad", "gnl"] and "adapt_epochs" not in trained.overrides
    trained.check_overrides(trained.methods)  # raised "no selected method has a field 'adapt_epochs'" before
    tta = grid_spec(preset, dataset="mvtec_ad", methods=["patchcore", "ttad"])
    assert tta.overrides["adapt_epochs"] == "10" and tta.method_config("ttad").adapt_epochs == 10
    assert grid_spec(preset, dataset="mvtec_ad").overrides == {"adapt_epochs": "10"}  # the whole preset
    mnist = grid_spec(get_preset("gnl-table3"), dataset="mnist", methods=["rd4ad"])
    assert "gnl.efdm_alpha" not in mnist.overrides and mnist.overrides["epochs"] == "5"


def test_cost_counts_cells_and_shared_fits():
    # 15 categories x 6 methods x 5 conditions; fits: PatchCore, one TTA fit shared by TTT++/TTAC/TTAD,
    # RD4AD, GNL = 4 per category
    assert cost(get_preset("ttad-table1")) == (15, 450, 60)
    assert cost(get_preset("ttad-table4")) == (15, 525, 15)  # seven configs of one fit
    # the six OOD-generalisation baselines train their own students: 8 fits per category
    assert cost(get_preset("gnl-table2")) == (10, 400, 80)
    # 11 categories (digits + even) x 8 methods x 2 domains; every method trains its own student
    assert cost(get_preset("gnl-table3")) == (11, 176, 88)
    # RD4AD, L_abs, L_lowf, DINL trained; ATTA scores RD4AD's fit, GNL DINL's
    assert cost(get_preset("gnl-table5")) == (7, 168, 28)


def test_the_domain_presets_pin_gnls_protocol():
    t3 = grid_spec(get_preset("gnl-table3"))
    assert (t3.dataset, t3.domains, t3.backbone) == ("mnist", ["mnist", "mnist_m"], "resnet18")
    assert t3.categories == [*map(str, range(10)), "even"] and t3.conditions() == [("clean", 0)]
    gnl, rd4ad, augmix = (t3.method_config(m) for m in ("gnl", "rd4ad", "augmix"))
    assert (gnl.efdm_alpha, rd4ad.efdm_alpha, gnl.epochs, rd4ad.epochs, gnl.image_size) == (0.9, 0.0, 5, 5, 28)
    assert (augmix.augmix_ops, gnl.augmix_ops) == ("all", "pacs")
    t4 = grid_spec(get_preset("gnl-table4"))
    assert (t4.dataset, t4.domains, t4.backbone) == ("pacs", ["photo", "art_painting", "cartoon", "sketch"],
                                                     "wide_resnet50_2")
    assert (t4.method_config("gnl").epochs, t4.method_config("rd4ad").epochs) == (20, 200)
    t7 = grid_spec(get_preset("gnl-table7"))
    assert (t7.categories, t7.domains) == (["dog"], ["photo"])


def test_comparison_layout_and_departure_marks():
    p = get_preset("gnl-table1")
    spec = grid_spec(p)
    df = preset_rows(p, spec, ["bottle", "cable"], lambda cat: 0.5 if cat == "bottle" else 0.7)
    text = comparison(p, spec, df)
    lines = text.splitlines()
    assert lines[2] == ("| Method | MVTec AD / Clean | MVTec AD / Brightness | MVTec AD / Contrast "
                        "| MVTec AD / Defocus Blur | MVTec AD / Gaussian Noise |")
    # mean over the two categories (60.00) next to GNL Table 1's numbers; 2 of 15 categories: marked
    assert lines[4] == "| DeepSVDD‡ | – (69.98) | – (55.18) | – (50.07) | – (68.82) | – (59.11) |"  # published only
    assert lines[7] == "| RD4AD† | 60.00 (98.64) | 60.00 (96.50) | 60.00 (94.12) | 60.00 (98.90) | 60.00 (90.14) |"
    assert lines[8] == "| AugMix† | 60.00 (96.29) | 60.00 (95.10) | 60.00 (94.51) | 60.00 (95.39) | 60.00 (90.99) |"
    assert lines[14] == "| GNL† | 60.00 (97.99) | 60.00 (97.43) | 60.00 (97.46) | 60.00 (97.77) | 60.00 (94.10) |"
    assert "† rd4ad: 2 of 15 categories" in text and "‡ DeepSVDD: not run (Deep SVDD (Ruff et al. 2018)" in text


def test_departures_name_each_difference():
    p = get_preset("ttad-table1")
    spec = grid_spec(p, backbone="tf_efficientnet_lite0")
    from bench.datasets.registry import get_dataset

    cats = list(get_dataset("mvtec_ad").categories)
    df = preset_rows(p, grid_spec(p), cats, lambda c: 0.9, backbone="tf_efficientnet_lite0")
    dep = departures(p, spec, df)
    assert dep["ttad"] == ["backbone tf_efficientnet_lite0 (paper: wide_resnet50_2)", *TTAD_HARNESS]
    df2 = preset_rows(p, grid_spec(p), cats, lambda c: 0.9, adapt_epochs=1)
    assert departures(p, grid_spec(p), df2)["ttad"] == ["adapt_epochs 1 (paper: 10)", *TTAD_HARNESS]
    assert departures(p, grid_spec(p), preset_rows(p, grid_spec(p), cats, lambda c: 0.9))["ttad"] == TTAD_HARNESS
    # the paper's own settings: nothing marked
    paper = dict(ot_reduction="sum", ot_bank_cap=0)
    assert departures(p, grid_spec(p), preset_rows(p, grid_spec(p), cats, lambda c: 0.9, **paper))["ttad"] == []
    standin = preset_rows(p, grid_spec(p), cats, lambda c: 0.9, **paper)
    standin["domain_source"] = "stand-in (bench.datasets.standins, seed 3): PACS photo: ..."
    assert departures(p, grid_spec(p), standin)["ttad"] == ["stand-in (bench.datasets.standins, seed 3) data for mvtec_ad"]
    standin["domain_source"] = "MNIST test set (/data/MNIST/raw/t10k-images-idx3-ubyte.gz)"  # real data: no mark
    assert departures(p, grid_spec(p), standin)["ttad"] == []


def _table1_rows(**changes):
    p = get_preset("ttad-table1")
    spec = grid_spec(p)
    return p, spec, preset_rows(p, spec, ["bottle", "cable"], lambda c: 0.9, **changes)


def test_a_harness_default_that_departs_from_the_paper_is_marked():
    """The named ttad at the harness defaults: TTAD's Eq. 6 is a sum over the pairs and Eq. 4 takes
    the whole memory bank; its run was compared with the harness default and came out unmarked."""
    p, spec, df = _table1_rows()
    dep = departures(p, spec, df)
    assert dep["ttad"] == [*TTAD_HARNESS, "2 of 15 categories"]
    assert dep["patchcore"] == dep["ttt++"] == dep["ttac"] == dep["gnl"] == ["2 of 15 categories"]
    assert "| TTAD† |" in comparison(p, spec, df)
    assert "† ttad: ot_reduction=mean (paper: sum); ot_bank_cap=16384 (paper: no cap); 2 of 15 categories" in \
        comparison(p, spec, df)
    # a stated field set off the paper's value by the user: named once, with the paper's value, not under 'changed'
    p, spec, df = _table1_rows(score_bank="adapted", adapt_clean=True, bn_mode="batch")
    dep = departures(p, spec, df)
    assert dep["ttad"] == ["score_bank=adapted (paper: source)", *TTAD_HARNESS, "adapt_clean=true (paper: false)",
                           "changed: bn_mode=batch", "2 of 15 categories"]
    assert dep["ttt++"] == ["adapt_clean=true (paper: false)", "changed: bn_mode=batch, score_bank=adapted",
                            "2 of 15 categories"]


def test_a_run_at_the_papers_values_is_not_marked_for_them():
    """ot_reduction=sum and no bank cap differ from the harness defaults but are the paper's: no mark
    (the old comparison with the harness default listed them under 'changed')."""
    p, spec, df = _table1_rows(ot_reduction="sum", ot_bank_cap=0, score_bank="source", adapt_clean=False)
    dep = departures(p, spec, df)
    assert dep["ttad"] == ["2 of 15 categories"]
    # a cap the rows show never cut the bank (the bank no larger than the cap) is the whole bank
    p, spec, df = _table1_rows(ot_reduction="sum")
    ttad = df["method"] == "ttad"
    df.loc[ttad, "diag_ot_bank_used"] = 4000.0
    df.loc[ttad, "diag_bank_size"] = 4000.0
    df.loc[ttad & (df["corruption"] == "clean"), ["diag_ot_bank_used", "diag_bank_size"]] = float("nan")  # not adapted
    assert departures(p, spec, df)["ttad"] == ["2 of 15 categories"]
    df.loc[ttad & (df["category"] == "cable") & (df["corruption"] != "clean"),
           ["diag_ot_bank_used", "diag_bank_size"]] = [16384.0, 20000.0]
    assert departures(p, spec, df)["ttad"] == [
        "ot_bank_cap=16384 (paper: no cap; it cut the bank in 1 of 2 categories)", "2 of 15 categories"]


def test_a_stated_field_a_config_lacks_or_the_preset_sets_is_skipped(monkeypatch):
    from bench import papers

    monkeypatch.setattr(papers, "PAPER_CONFIG", {
        "ttad": {"no_such_field": 3, "ot_reduction": "sum", "adapt_epochs": 1},  # adapt_epochs: the preset sets 10
        "patchcore": {"no_such_field": 3}})
    p, spec, df = _table1_rows()
    dep = departures(p, spec, df)
    assert dep["ttad"] == ["ot_reduction=mean (paper: sum)", "2 of 15 categories"]
    assert dep["patchcore"] == ["2 of 15 categories"]


def test_methods_without_a_paper_entry_are_compared_with_their_defaults_as_before():
    p, spec, df = _table1_rows(coreset_ratio=0.01, bn_mode="batch", sinkhorn_reg=0.05)
    dep = departures(p, spec, df)
    assert dep["patchcore"] == ["coreset_ratio 0.01 (paper: 0.1)", "2 of 15 categories"]
    assert dep["ttt++"] == ["coreset_ratio 0.01 (paper: 0.1)", "changed: bn_mode=batch, sinkhorn_reg=0.05",
                            "2 of 15 categories"]
    assert dep["ttad"] == ["coreset_ratio 0.01 (paper: 0.1)", *TTAD_HARNESS,
                           "changed: bn_mode=batch, sinkhorn_reg=0.05", "2 of 15 categories"]
    assert "gnl" in dep and dep["rd4ad"] == ["2 of 15 categories"]


_GNL12 = ["DeepSVDD‡", "f-AnoGAN‡", "KDAD‡", "RD4AD", "AugMix", "MixStyle", "EFDM", "AugMix+MixStyle", "AugMix+EFDM",
          "Jigsaw", "GNL"]
_MV = "MVTec AD / Clean | MVTec AD / Gaussian Noise | MVTec AD / Defocus Blur | MVTec AD / Brightness | MVTec AD / Contrast"
_RI = _MV.replace("MVTec AD", "Real-IAD")
_3D = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")
LAYOUTS = {  # the published tables' column order and method order (rows the paper lacks are not shown)
    "ttad-table1": (f"| Method | {_MV} | {_RI} |", ["ViTAD‡", "KDAD‡", "RD4AD", "UniAD‡", "CFLOW-AD‡", "PatchCore",
                                                     "TTT++", "TTAC", "GNL", "TTAD"]),
    # per class, then the mean; the rows the harness cannot run stay, marked
    "ttad-table2": (["| Method | " + " | ".join(f"MVTec 3D-AD / {c}" for c in _3D) + " |",
                     "| Method | MVTec 3D-AD / Point Gaussian Noise |"],
                    ["Depth GAN‡", "Depth AE‡", "Depth VM‡", "Depth PatchCore", "Raw (in BTF)", "HoG (in BTF)",
                     "SIFT (in BTF)", "FPFH", "M3DM", "TTAD (Ours)"]),
    "ttad-table3": (f"| Method | {_MV} | {_RI} |", ["CFLOW-AD‡", "UniAD‡", "RD4AD", "PatchCore", "TTT++", "TTAC",
                                                     "TTAD"]),
    "ttad-table4": ("| Method | " + _MV.split(" | ", 1)[1] + " |",
                    ["none", "kl_div", "moment_matching", "ot_hungarian", "ot_discrete", "ot_discrete_copy",
                     "ot_discrete_augment"]),
    "gnl-table1": ("| Method | MVTec AD / Clean | MVTec AD / Brightness | MVTec AD / Contrast | "
                   "MVTec AD / Defocus Blur | MVTec AD / Gaussian Noise |", _GNL12),
    "gnl-table2": ("| Method | CIFAR-10 / Clean | CIFAR-10 / Brightness | CIFAR-10 / Contrast | "
                   "CIFAR-10 / Defocus Blur | CIFAR-10 / Gaussian Noise |", _GNL12),
}


_NOT_RUN = ["Deep SVDD‡", "f-AnoGAN‡", "KDAD‡"]
_BASE = _NOT_RUN + ["RD4AD", "Augmix", "Mixstyle", "EFDM", "Augmix+Mixstyle", "Augmix+EFDM", "Jigsaw", "GNL"]
_APPENDIX = [m for m in _BASE if "+" not in m]  # the appendix tables print no combinations
_PACS = "PACS / Photo | PACS / Art | PACS / Cartoon | PACS / Sketch"
_MN = "MNIST/MNIST-M / MNIST | MNIST/MNIST-M / MNIST-M"
LAYOUTS.update({
    "gnl-table3": (f"| Method | {_MN} |", _BASE * 2),  # one-vs-all, then multi-class
    "gnl-table4": (f"| Method | {_PACS} |", _BASE),
    "gnl-table5": (f"| Method | {_PACS} |", ["Baseline", "L_abs only", "L_lowf only", "DINL", "ATTA", "DINL+ATTA"]),
    "gnl-table6": (f"| Method | {_PACS} |", ["0.95, 0.025, 0.025", "0.90, 0.050, 0.050", "0.85, 0.075, 0.075",
                                             "0.80, 0.100, 0.100"]),
    "gnl-table8": ("| Method | " + " | ".join(f"MNIST/MNIST-M / {d} / MNIST | MNIST/MNIST-M / {d} / MNIST-M"
                                             for d in range(10)) + " |", _APPENDIX),
    "gnl-table9": ("| Method | " + " | ".join(_PACS.replace("PACS /", f"PACS / {c} /")
                                             for c in ("dog", "elephant", "giraffe")) + " |", _APPENDIX),
    "gnl-table10": ("| Method | " + " | ".join(_PACS.replace("PACS /", f"PACS / {c} /")
                                              for c in ("guitar", "horse", "house", "person")) + " |", _APPENDIX),
})


HARNESS_MARKED = {"ttad-table1": {"TTAD"}, "ttad-table2": {"TTAD (Ours)"}, "ttad-table3": {"TTAD"},
                  "ttad-table4": {"ot_hungarian", "ot_discrete", "ot_discrete_copy", "ot_discrete_augment"}}


@pytest.mark.parametrize("name", [n for n in PRESETS if not PRESETS[n].runtime])
def test_every_preset_renders_its_published_layout(name):
    p = get_preset(name)
    spec = grid_spec(p)
    from bench.datasets.registry import get_dataset

    df = preset_rows(p, spec, list(spec.categories or get_dataset(spec.dataset).categories), lambda c: 0.8)
    text = comparison(p, spec, df)
    headers, methods = LAYOUTS[name]
    headers = [headers] if isinstance(headers, str) else headers  # per class, then the mean (Table 2)
    tables = len(p.metrics) * max(1, len(p.blocks)) * len(headers)  # one table per metric (and setting)
    assert text.count("| Method |") == tables
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("| Method")] == headers * (tables // len(headers))
    body = [line.split("|")[1].strip() for line in lines if line.startswith("| ") and not line.startswith("| Method")]
    assert [b.removesuffix("†") for b in body] == methods * (tables // len(p.metrics) if p.per_class and p.not_run
                                                             else len(p.metrics))
    # the paper's own protocol: marked only where a harness default departs from the paper (TTAD's OT rows)
    assert "80.00 (" in text and {b[:-1] for b in body if b.endswith("†")} == HARNESS_MARKED.get(name, set())
    notes = [line for line in lines if line.startswith("† ")]
    assert len(notes) == len(HARNESS_MARKED.get(name, ())) and all(
        line.strip().endswith(": " + "; ".join(TTAD_HARNESS)) for line in notes), notes
    assert f"@{p.severity}" in p.summary or p.domains


def test_domain_comparisons_put_each_domain_and_setting_in_its_place():
    p = get_preset("gnl-table3")
    spec = grid_spec(p)
    # ID 0.9 / OOD 0.6 for the digits; the multi-class category 'even' 0.7 / 0.5
    df = preset_rows(p, spec, spec.categories, lambda c, d: (0.7 if d == "mnist" else 0.5) if c == "even"
               else (0.9 if d == "mnist" else 0.6))
    text = comparison(p, spec, df)
    one, multi = text.split("(multi-class)")
    assert "| GNL | 90.00 (96.91) | 60.00 (70.87) |" in one and "| GNL | 70.00 (88.59) | 50.00 (58.50) |" in multi
    per_digit = comparison(get_preset("gnl-table8"), grid_spec(get_preset("gnl-table8")),
                           preset_rows(get_preset("gnl-table8"), spec, list(map(str, range(10))),
                                 lambda c, d: 0.5 + int(c) / 100))
    row = next(line for line in per_digit.splitlines() if line.startswith("| RD4AD"))
    assert row.startswith("| RD4AD | 50.00 (99.56) | 50.00 (71.50) | 51.00 (99.50) | 51.00 (60.09) |")


def test_the_runtime_table_shows_seconds_and_names_both_devices():
    p = get_preset("gnl-table7")
    spec = grid_spec(p)
    text = comparison(p, spec, preset_rows(p, spec, ["dog"], lambda c: 0.8))
    assert "| RD4AD | 10.0000 (2.5726) | 0.0200 (0.0282) |" in text
    assert "| GNL | 10.0000 (7.2557) | 0.0200 (0.0356) |" in text
    assert "Ours on rd4ad: training on cpu, 2 threads (a CPU), inference on cpu, 2 threads (a CPU)" in text
    assert "published on one RTX 3090 24GB GPU" in text
    # the training seconds are the fit's: from the machine that fitted, said when it came from the cache
    cached = preset_rows(p, spec, ["dog"], lambda c: 0.8).assign(fit_device="cuda:0", fit_threads=8, fit_cached=True)
    assert ("rd4ad: training on cuda:0, 8 threads; a cached fit, timed where it was computed, inference on cpu"
            in comparison(p, spec, cached))
    latex = comparison(p, spec, preset_rows(p, spec, ["dog"], lambda c: 0.8), fmt="latex")
    assert r"Model & Training (s per epoch) & Inference (s per image) \\" in latex  # not a tuple's repr


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_writes_latex_that_compiles(name):
    """`bench reproduce -f latex`: marks as LaTeX macros, notes escaped under the table, the
    published layout's width (before, every preset's output stopped pdflatex: escaped
    $^\\dagger$ in the labels, bare underscores in the notes and captions)."""
    p = get_preset(name)
    spec = grid_spec(p)
    cats = (spec.categories or [""])[:2]
    df = preset_rows(p, spec, cats, lambda c: 0.8, **({"epochs": 1} if p.runtime else {}))
    text = comparison(p, spec, df, fmt="latex")
    check_latex(text)
    assert r"$^\dagger$" in text and "\\begin{flushleft}\\footnotesize" in text  # the marked rows, and why
    markdown = comparison(p, spec, df)
    assert "†" in markdown and "\\begin{flushleft}" not in markdown
    notes = [line for line in markdown.splitlines() if line.startswith(("† ", "‡ "))]
    assert notes and all(line.endswith("  ") for line in notes[:-1])  # one line each in a Markdown viewer
    for name in p.not_run:  # the published rows the harness cannot run: kept, marked, named
        assert latex_text(name) + r"$^\ddagger$ & " in text and rf"$^\ddagger$ {latex_text(name)}: not run" in text


def test_list_presets_cli(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "list", "presets")
    assert code == 0
    assert "ttad-table1" in out and "mvtec_ad: 15 categories, 450 cells, 60 fits" in out
    assert "realiad: 30 categories, 900 cells, 120 fits" in out
    assert "pacs: 1 category, 2 cells, 2 fits" in out  # GNL Table 7
    code, out, _ = run_cli(monkeypatch, capsys, "list", "corruptions")
    assert code == 0 and "point-cloud corruptions (MVTec 3D-AD): point_gaussian_noise" in out


def test_settings_a_method_ignores_are_no_departure_and_mixed_configs_are_said():
    p = get_preset("ttad-table4")
    spec = grid_spec(p)
    dep = departures(p, spec, preset_rows(p, spec, ["bottle"], lambda c: 0.8, adapt_epochs=1))
    assert dep["ot_discrete"] == ["adapt_epochs 1 (paper: 10)", *TTAD_HARNESS, "1 of 15 categories"]
    assert dep["none"] == ["1 of 15 categories"]  # loss none never adapts: its adapt_epochs does nothing
    two = pd.concat([preset_rows(p, spec, ["bottle"], lambda c: 0.8),
                     preset_rows(p, spec, ["bottle"], lambda c: 0.8, adapt_epochs=1)], ignore_index=True)
    assert departures(p, spec, two)["ot_discrete"][0] == "2 configs in the rows, averaged"


def test_table2_marks_random_weights_and_names_the_rows_it_cannot_run():
    p = get_preset("ttad-table2")
    spec = grid_spec(p)
    df = preset_rows(p, spec, ["bagel"], lambda c: 0.7)
    dep = departures(p, spec, df)
    assert dep.pop("ttad_pointmae") == [*TTAD_HARNESS, "1 of 10 categories"]
    assert all(v == ["1 of 10 categories"] for v in dep.values())  # no backbone mark: each its own
    pm = df[df["method"] == "patchcore_pointmae"].copy()
    pm["config"] = [json.dumps({**json.loads(c), "weights": "random"}) for c in pm["config"]]
    assert departures(p, spec, pm)["patchcore_pointmae"] == ["random weights (paper: pretrained)", "1 of 10 categories"]
    text = comparison(p, spec, df)
    assert "| M3DM† | 70.00 (74.10) |" in text and "| Depth GAN‡ | – (47.50) |" in text
    assert "‡ Depth VM: not run (the MVTec 3D-AD paper's depth-only VM baseline" in text


@pytest.mark.parametrize("preset, why", [("gnl-table3", "has test domains for columns"),
                                         ("gnl-table7", "compares run times, not metrics"),
                                         ("ttad-table2", "has a column per class")])
def test_added_corruptions_need_a_table_whose_columns_are_corruptions(preset, why, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "reproduce", preset, "--add-corruptions", "fog")
    assert code == 2 and f"--add-corruptions: {preset} {why}; run your corruption with bench grid --corruptions fog" \
        in err, err
    code, _, err = run_cli(monkeypatch, capsys, "reproduce", "ttad-table1", "--add-corruptions", "foggy")
    assert code == 2 and "unknown corruption 'foggy'" in err and "Traceback" not in err


def test_added_corruptions_join_the_grid_at_the_tables_severity_after_its_own():
    from bench.presets import added_corruptions

    p = get_preset("gnl-table1")
    spec = grid_spec(p, corruptions=[*p.corruptions, "fog", "contrast"])
    assert spec.conditions() == [("clean", 0), *((c, 3) for c in p.corruptions), ("fog", 3)]
    assert added_corruptions(p, spec.corruptions) == ["fog"]
