"""bench plot: each figure from a small real run (PNG and PDF), and one-line errors when a run
lacks what a figure needs."""
import subprocess
import sys
from pathlib import Path

import pytest
from _grids import THREADS, run_cli, scratch, tiny_spec
from test_results import make_row

from bench.methods.errors import BenchWarning
from bench.results import RunStore

KINDS = ("severity", "maps", "histograms", "assignments")


@pytest.fixture(scope="module")
def small_run():
    """PatchCore and TTAD (one adaptation epoch) on textures/brick at 64 px: clean and Gaussian
    noise at severities 1 and 5, seeds 0 and 1 (12 cells, ~30 s on one core)."""
    from bench.executors import LocalExecutor, run_grid

    spec = tiny_spec(severities=(1, 5), seeds=(0, 1))
    spec.methods = ["patchcore", "ttad"]
    spec.overrides["adapt_epochs"] = "1"
    run = scratch() / "plots-run"
    summary = run_grid(spec, run, LocalExecutor(workers=1, threads=THREADS), show_progress=False)
    assert summary.failed == 0, summary.failures
    return run


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_each_plot_writes_png_and_pdf_from_a_real_run(small_run, kind, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "plot", kind, small_run, "--out", tmp_path)
    assert code == 0, err
    pngs, pdfs = sorted(tmp_path.glob("*.png")), sorted(tmp_path.glob("*.pdf"))
    assert len(pngs) == len(pdfs) == 1
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pngs[0].stat().st_size > 10_000
    assert pdfs[0].read_bytes()[:5] == b"%PDF-" and pdfs[0].stat().st_size > 5_000
    assert f"wrote {pngs[0]}" in err


@pytest.mark.slow
def test_plot_options_select_and_refuse_in_one_line(small_run, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "plot", "maps", small_run, "--out", tmp_path,
                           "--conditions", "gaussian_noise@1,clean", "--methods", "ttad", "--seed", "1")
    assert code == 0, err
    assert (tmp_path / "maps_brick_seed1.png").is_file()
    for args, says in ((("maps", "--images", "nope.png"), "--images nope.png: no kept map"),
                       (("maps", "--conditions", "contrast@5"), "--conditions contrast@5: no such condition"),
                       (("severity", "--methods", "rd4ad"), "no rows with method rd4ad"),
                       (("severity", "--metric", "nope"), "--metric nope: not a metric")):
        code, _, err = run_cli(monkeypatch, capsys, "plot", args[0], small_run, "--out", tmp_path, *args[1:])
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_plot_all_draws_every_figure_the_run_can_have(small_run, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "plot", "all", small_run, "--out", tmp_path)
    assert code == 0, err
    assert len(list(tmp_path.glob("*.png"))) == len(list(tmp_path.glob("*.pdf"))) == 4
    code, _, err = run_cli(monkeypatch, capsys, "plot", "assignments", small_run, "--out", tmp_path / "one",
                           "--conditions", "gaussian_noise@1")
    assert code == 0 and (tmp_path / "one" / "ot_assignments.pdf").is_file(), err


def old_run(root: Path) -> Path:
    """Rows as a run wrote them before per-image scores and maps were kept: clean only."""
    store = RunStore(root)
    store.write(make_row("a", corruption="clean", severity=0))
    return root


@pytest.mark.parametrize("kind, says", [
    ("severity", "no corrupted rows"),
    ("maps", "no anomaly-map samples"),
    ("histograms", "needs the per-image scores"),
    ("assignments", "no rows with OT assignment counts"),
])
def test_a_run_without_what_the_plot_needs_is_one_line(kind, says, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "plot", kind, old_run(tmp_path / "run"), "--out", tmp_path / "o")
    assert code == 2 and says in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_plot_all_on_a_run_without_anything_to_draw(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "plot", "all", old_run(tmp_path / "run"), "--out", tmp_path / "o")
    assert code == 2 and err.count("skipped ") == 4 and "no figure could be drawn" in err


def test_missing_run_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "plot", "severity", tmp_path / "nowhere")
    assert code == 2 and "nowhere: no such file or folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_matplotlib_is_imported_only_by_the_plot_commands():
    code = ("import sys, bench.cli, bench.executors, bench.results, bench.stats, bench.tables; "
            "assert 'matplotlib' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_two_configs_of_one_method_are_two_series_not_one_sum():
    """An ablation run holds several configs of one method: Fig. 5's bars must not add them up."""
    import json

    import pandas as pd

    from bench.plots.assignments import IN_MASK, TOTAL, counts
    from bench.plots.common import config_variants

    rows = pd.DataFrame({
        "method": ["ttad", "ttad", "ot_discrete"], "corruption": "clean", "severity": 0, "seed": 0,
        "config_hash": ["aaaaaaaa11", "bbbbbbbb22", "cccccccc33"],
        "config": [json.dumps({"assignment": "or", "score_bank": s, "augment": "flip_rot90"}) for s in ("source", "adapted")]
        + [json.dumps({"assignment": "or", "augment": "none"})],
        IN_MASK: [10.0, 20.0, 5.0], TOTAL: [100.0, 100.0, 50.0],
    })
    rows["series"], labels = config_variants(rows, shown=("assignment", "augment"))
    assert list(rows["series"]) == ["ttad#aaaaaaaa", "ttad#bbbbbbbb", "ot_discrete"]
    table = counts(rows).set_index("series")
    assert table.loc["ttad#aaaaaaaa", IN_MASK] == 10.0 and table.loc["ttad#bbbbbbbb", IN_MASK] == 20.0
    assert "score_bank source" in labels["ttad#aaaaaaaa"] and "score_bank adapted" in labels["ttad#bbbbbbbb"]
    assert labels["ot_discrete"].endswith("assignment or, augment none")


def run_with_maps(root: Path) -> Path:
    """Two cells of one category and seed, each with per-image scores and map samples (side files)."""
    from test_row_storage import packed, per_image

    from bench.samples import SAMPLES_KEY

    store = RunStore(root)
    blob, _ = packed()
    for cid, corruption, severity in (("clean", "clean", 0), ("contrast5", "contrast", 5)):
        store.write(make_row(cid, corruption=corruption, severity=severity, map_sample_ids=["id0", "id1"],
                             **per_image(), **{SAMPLES_KEY: blob}))
    return root


def test_a_torn_map_sample_file_is_left_out_with_one_warning_and_the_rest_is_drawn(tmp_path, monkeypatch, capsys):
    run = run_with_maps(tmp_path / "run")
    side = RunStore(run).samples_path("contrast5")
    with open(side, "r+b") as fh:
        fh.truncate(100)  # a torn copy
    fix = ("its cell's maps are left out of the plot (rerunning its grid, bench grid with the same --out, moves "
           "the part aside and runs the cell again)")
    for kind, drawn in (("maps", 1), ("all", 3)):  # all: severity, maps, histograms (no OT counts)
        out = tmp_path / kind
        code, _, err = run_cli(monkeypatch, capsys, "plot", kind, run, "--out", out)
        assert code == 0, err
        assert [line for line in err.splitlines() if line.startswith("warning: ")] == [
            f"warning: {side}: unreadable map samples (File is not a zip file); {fix}"]
        assert (out / "maps_bottle_seed0.png").is_file() and len(list(out.glob("*.png"))) == drawn
        assert "Traceback" not in err and "BadZipFile" not in err
    # nothing readable left: one error line after the warning for each file
    clean = RunStore(run).samples_path("clean")
    clean.write_bytes(b"")
    code, _, err = run_cli(monkeypatch, capsys, "plot", "maps", run, "--out", tmp_path / "none")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 3 and not (tmp_path / "none").exists(), err
    assert sorted(lines[:2]) == [f"warning: {clean}: unreadable map samples (the file is empty); {fix}",
                                 f"warning: {side}: unreadable map samples (File is not a zip file); {fix}"]
    assert lines[2] == (f"error: {run}: no readable anomaly-map samples for bottle seed 0: the side file of each of "
                        "its 2 cell(s) with maps is unreadable (see the warnings); rerun its grid (bench grid with "
                        "the same --out moves those parts aside and runs their cells again)")


# ---------------------------------------------------------------- synthetic runs, drawn figures

def drawn(monkeypatch, module) -> list:
    """The figures ``module.plot`` draws, kept instead of written."""
    figs: list = []
    monkeypatch.setattr(module, "save", lambda fig, out, stem: figs.append(fig) or [])
    return figs


def texts(fig) -> list[str]:
    """Every text of a figure: suptitle, titles, y labels, texts in the panels, legend entries."""
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
    out += [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    return out


def scored(cid: str, good: bool = True, **extra) -> dict:
    """A row with per-image scores that separate the normal and anomalous images perfectly (image
    AUROC 100 %) or not at all (0 %)."""
    import numpy as np

    from bench.samples import per_image_columns

    labels = np.array([0, 1] * 3)
    scores = (labels if good else 1 - labels) + np.linspace(0.0, 0.5, 6)
    return make_row(cid, **per_image_columns([f"test/x/{i}.png" for i in range(6)], labels, scores), **extra)


def write_rows(root: Path, rows: list[dict]) -> Path:
    store = RunStore(root)
    for row in rows:
        store.write(row)
    return root


def default_hash(method: str = "patchcore", dataset: str = "mvtec_ad") -> str:
    from bench.grid import GridSpec

    return GridSpec(methods=[method], dataset=dataset).method_config(method).hash()


@pytest.mark.parametrize("with_default", [True, False])
def test_several_configs_of_a_method_one_is_shown_and_named(with_default, tmp_path, monkeypatch, recwarn):
    """Histograms and maps draw one row per panel: with two configs of a method they show one,
    chosen deterministically (the default config, else the first in row order), and say which;
    they never claim to average."""
    from bench.plots import histograms

    first, second = ("abc0000first", default_hash()) if with_default else ("abc0000first", "abc000second")
    shown = second if with_default else first
    rows = [scored(f"{h}-{c}", good=h == shown, config_hash=h, corruption=c, severity=s,
                   finished_at=f"2025-01-01T00:00:0{k}")
            for k, (h, (c, s)) in enumerate((h, cond) for h in (first, second)
                                            for cond in (("clean", 0), ("contrast", 5)))]
    run = write_rows(tmp_path / "run", rows)
    figs = drawn(monkeypatch, histograms)
    histograms.plot(run, tmp_path / "out")
    words = texts(figs[0])
    assert [t for t in words if t.startswith("AUROC")] == ["AUROC 100.0%", "AUROC 100.0%"]  # the chosen one's
    why = "its default config" if with_default else "the first in row order; its default config is not among them"
    assert f"PatchCore: config {shown} ({why}), 1 of 2" in words[0]
    err = "\n".join(str(w.message) for w in recwarn)
    assert f"this figure shows config {shown} only ({why}), not {first if with_default else second}" in err
    assert "rows[rows.config_hash == HASH]" in err and "averaged" not in err


def test_two_protocols_of_one_config_are_not_averaged_in_a_figure(tmp_path, monkeypatch):
    """A second grid with --protocol resized into one run: the figure showed the mean of both
    protocols (as the tables once did); now the native one, said."""
    from bench.plots import histograms

    rows = [scored(f"{p}-{c}", good=p == "native", protocol=p, corruption=c, severity=s)
            for p in ("resized", "native") for c, s in (("clean", 0), ("contrast", 5))]
    run = write_rows(tmp_path / "run", rows)
    figs = drawn(monkeypatch, histograms)
    with pytest.warns(BenchWarning, match="the rows of patchcore hold 2 values of protocol .*this figure shows "
                                          "protocol native only"):
        histograms.plot(run, tmp_path / "out")
    words = texts(figs[0])
    assert [t for t in words if t.startswith("AUROC")] == ["AUROC 100.0%", "AUROC 100.0%"]  # native's alone
    assert "PatchCore: protocol native, 1 of 2" in words[0]


def test_maps_of_several_configs_show_the_chosen_config(tmp_path, monkeypatch):
    import numpy as np

    from bench import samples
    from bench.plots import maps

    rng = np.random.default_rng(0)
    rows = []
    for k, h in enumerate(("abc0000first", "abc000second")):  # neither is the default: the first
        blob = samples.pack([f"img_{h[-5:]}"], rng.random((1, 8, 8)).astype(np.float32), None,
                            [np.zeros((8, 8, 3), np.uint8)], 8)
        rows += [make_row(f"{h}-{c}", config_hash=h, corruption=c, severity=s, finished_at=f"2025-01-01T00:00:0{k}",
                          map_sample_ids=[f"img_{h[-5:]}"], **{samples.SAMPLES_KEY: blob})
                 for c, s in (("clean", 0), ("contrast", 5))]
    figs = drawn(monkeypatch, maps)
    with pytest.warns(BenchWarning, match="this figure shows config abc0000first only"):
        maps.plot(write_rows(tmp_path / "run", rows), tmp_path / "out")
    words = texts(figs[0])
    assert "Contrast (s5)\nimg_first" in words and not any("second" in t for t in words[1:])
    assert "PatchCore: config abc0000first (the first in row order" in words[0]


def domain_rows() -> list[dict]:
    """MNIST (ID) and MNIST-M (OOD) of one method: clean and Gaussian noise at severity 5; the
    OOD domain's clean image AUROC (0.5) is not the ID one's (0.9)."""
    out = []
    for domain, clean_auroc, good in (("mnist", 0.9, True), ("mnist_m", 0.5, False)):
        for c, s, auroc in (("clean", 0, clean_auroc), ("gaussian_noise", 5, 0.4)):
            out.append(scored(f"{domain}-{c}", good=good, dataset="mnist", domain=domain, category="0",
                              corruption=c, severity=s, image_auroc=auroc))
    return out


def test_severity_curves_keep_test_domains_apart(tmp_path, monkeypatch):
    from bench.plots import severity

    figs = drawn(monkeypatch, severity)
    severity.plot(write_rows(tmp_path / "run", domain_rows()), tmp_path / "out")
    ax = figs[0].axes[0]
    clean = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert clean == pytest.approx({"PatchCore, MNIST": 90.0, "PatchCore, MNIST-M": 50.0})  # not their mean, 70


def test_histograms_have_a_panel_per_domain_and_condition(tmp_path, monkeypatch):
    from bench.plots import histograms

    figs = drawn(monkeypatch, histograms)
    histograms.plot(write_rows(tmp_path / "run", domain_rows()), tmp_path / "out")
    axes = figs[0].axes
    assert [ax.get_title() for ax in axes] == ["MNIST", "MNIST + Gaussian Noise (s5)", "MNIST-M",
                                               "MNIST-M + Gaussian Noise (s5)"]
    assert [ax.texts[0].get_text() for ax in axes] == ["AUROC 100.0%"] * 2 + ["AUROC 0.0%"] * 2
    # a condition named alone is taken in every domain; a domain's name, its conditions
    for wanted, titles in ((["clean"], ["MNIST", "MNIST-M"]),
                           (["mnist_m"], ["MNIST-M", "MNIST-M + Gaussian Noise (s5)"])):
        histograms.plot(write_rows(tmp_path / "run", []), tmp_path / "out", conditions=wanted)
        assert [ax.get_title() for ax in figs[-1].axes] == titles


def test_maps_use_each_domains_own_images_and_clean_input(tmp_path, monkeypatch):
    import numpy as np

    from bench import samples
    from bench.plots import maps

    rows = []
    for domain, value in (("mnist", 10), ("mnist_m", 200)):  # each domain's images: its own ids and pixels
        ids = [f"{domain}/t10k/0000{i}" for i in range(2)]
        for c, s in (("clean", 0), ("gaussian_noise", 5)):
            images = [np.full((8, 8, 3), value + (0 if c == "clean" else 1), np.uint8)] * 2
            blob = samples.pack(ids, np.random.default_rng(0).random((2, 8, 8)).astype(np.float32), None, images, 8)
            rows.append(make_row(f"{domain}-{c}", dataset="mnist", domain=domain, category="0", corruption=c,
                                 severity=s, map_sample_ids=ids, **{samples.SAMPLES_KEY: blob}))
    figs = drawn(monkeypatch, maps)
    maps.plot(write_rows(tmp_path / "run", rows), tmp_path / "out")
    axes = np.array(figs[0].axes[:-1]).reshape(2, -1)  # the last axes: the colour bar
    assert [r[0].get_ylabel() for r in axes] == ["MNIST + Gaussian Noise (s5)\nt10k/00000",
                                                 "MNIST-M + Gaussian Noise (s5)\nt10k/00000"]
    # the clean input and the input of each row: that domain's
    assert [(int(r[0].images[0].get_array()[0, 0, 0]), int(r[1].images[0].get_array()[0, 0, 0]))
            for r in axes] == [(10, 11), (200, 201)]


def test_variants_that_differ_only_in_a_late_field_get_distinct_labels():
    """Five fields differ (only the last, score_bank, between two configs), and two configs do not
    parse: every label is its own."""
    import json

    import pandas as pd

    from bench.plots.common import config_variants

    base = {"assignment": "or", "bn_mode": "source", "ot_reduction": "mean", "lr": 0.003, "score_bank": "source"}
    configs = [base, {**base, "score_bank": "adapted"}, {**base, "assignment": "column"},
               {**base, "bn_mode": "batch"}, {**base, "ot_reduction": "sum"}, {**base, "lr": 0.01}]
    rows = pd.DataFrame({"method": "ttad", "config_hash": [f"{i}" * 12 for i in range(8)],
                         "config": [json.dumps(c) for c in configs] + ["not json", "not json"]})
    keys, labels = config_variants(rows, shown=("assignment", "augment"))
    assert len(set(labels.values())) == len(set(keys)) == 8
    assert "score_bank adapted" in labels["ttad#11111111"] and "score_bank source" in labels["ttad#00000000"]
    assert labels["ttad#66666666"].startswith("TTAD #66666666")  # nothing but the hash tells them apart


def test_styles_are_distinct_past_ten_series_and_a_method_keeps_its_own():
    from bench.plots.common import method_styles, style

    looks = [style(i) for i in range(140)]
    assert len({look["color"] for look in looks[:20]}) == 20
    assert len({(look["color"], look["marker"]) for look in looks}) == 140
    assert len({(look["color"], look["hatch"]) for look in looks[:80]}) == 80  # bars: no marker
    assert method_styles(["ttad"])["ttad"] == method_styles(["patchcore", "ttt++", "ttad"])["ttad"]
    assert method_styles(["a_plugin", "ttad"])["a_plugin"] != method_styles(["a_plugin", "ttad"])["ttad"]


def test_the_pdf_embeds_no_type3_font(tmp_path, monkeypatch, capsys):
    run = write_rows(tmp_path / "run", [scored(c, corruption=c, severity=s) for c, s in (("clean", 0), ("contrast", 5))])
    code, _, err = run_cli(monkeypatch, capsys, "plot", "histograms", run, "--out", tmp_path / "o")
    assert code == 0, err
    pdf = (tmp_path / "o" / "histograms_bottle_seed0.pdf").read_bytes()
    assert b"/Subtype /Type3" not in pdf and b"/FontFile2" in pdf  # TrueType outlines embedded


def test_bad_bins_and_non_finite_scores_are_one_line(tmp_path, monkeypatch, capsys):
    run = write_rows(tmp_path / "run", [scored(c, corruption=c, severity=s) for c, s in (("clean", 0), ("contrast", 5))])
    for bins in ("0", "-3", "1001"):
        code, _, err = run_cli(monkeypatch, capsys, "plot", "histograms", run, "--out", tmp_path / "o", "--bins", bins)
        assert code == 2 and err.strip() == f"error: --bins {bins}: use 1 to 1000", err
    bad = scored("contrast", corruption="contrast", severity=5)
    bad["image_scores"][2] = float("inf")
    write_rows(run, [bad])
    code, _, err = run_cli(monkeypatch, capsys, "plot", "histograms", run, "--out", tmp_path / "o")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cell contrast: 1 of 6 image scores are not finite (inf or NaN)" in err and not (tmp_path / "o").exists()


def test_no_solid_line_across_severities_that_were_not_run(tmp_path, monkeypatch):
    """Clean, severity 1 and 5 (2-4 not run, two seeds): solid 0-1, a dotted segment 1-5, and the
    std as error bars, not a band across the gap."""
    import numpy as np

    from bench.plots import severity

    rows = [make_row(f"{c}{s}-{seed}", corruption=c, severity=s, seed=seed, image_auroc=0.9 - 0.1 * s + 0.01 * seed)
            for c, s in (("clean", 0), ("contrast", 1), ("contrast", 5)) for seed in (0, 1)]
    figs = drawn(monkeypatch, severity)
    severity.plot(write_rows(tmp_path / "run", rows), tmp_path / "out")
    ax = figs[0].axes[0]
    by_style = {}
    for line in ax.get_lines():
        by_style.setdefault(line.get_linestyle(), []).append(list(line.get_xdata()))
    assert by_style["-"] == [[0, 1], [5]] and by_style[":"] == [[1, 5]]
    assert all(np.diff(x).max(initial=0) <= 1 for x in by_style["-"])
    kinds = {type(c).__name__ for c in ax.collections}
    assert "LineCollection" in kinds and not any("Poly" in k for k in kinds)  # error bars, no band
    assert "dotted: bridges severities without rows (not measured)" in figs[0]._suptitle.get_text()


def test_maps_column_titles_fit_clean_rows_and_line_up_without_a_mask(tmp_path, monkeypatch):
    from test_row_storage import packed

    from bench.plots import maps
    from bench.samples import SAMPLES_KEY

    blob, _ = packed(with_masks=False)
    rows = [make_row(c, corruption=c, severity=s, map_sample_ids=["id0", "id1"], **{SAMPLES_KEY: blob})
            for c, s in (("clean", 0), ("contrast", 5))]
    run = write_rows(tmp_path / "run", rows)
    figs = drawn(monkeypatch, maps)
    maps.plot(run, tmp_path / "out", conditions=["clean", "contrast"])
    maps.plot(run, tmp_path / "out")
    assert [f.axes[1].get_title() for f in figs] == ["input", "corrupted input"]  # a clean row has no corruption
    fig = figs[-1]
    fig.canvas.draw()
    clean_input, _, truth = fig.axes[:3]
    assert truth.texts[0].get_text() == "no mask"
    assert truth.get_position().y1 == pytest.approx(clean_input.get_position().y1)  # their titles in one line


def test_many_assignment_bars_stay_within_a_page(monkeypatch, capsys, tmp_path):
    """The committed ablation (11 series x 3 conditions) drew a 28-inch-wide figure."""
    from PIL import Image

    from bench.plots.common import DPI

    rows = Path(__file__).resolve().parents[1] / "results" / "reference" / "ttad_ablation_magnetic_tile" / "rows.parquet"
    code, _, err = run_cli(monkeypatch, capsys, "plot", "assignments", rows, "--out", tmp_path)
    assert code == 0, err
    width_in = Image.open(tmp_path / "ot_assignments.png").size[0] / DPI
    assert width_in < 14.5, width_in  # 11 in of axes + the legend beside them


def test_corrupt_preview_draws_the_pixels_the_cells_read(tiny_root, tmp_path, monkeypatch, capsys):
    """`bench corrupt --preview`: one test image at each corruption and severity, made through the
    cells' own seeded cache (the grid then reads them as hits), the first anomalous by default."""
    import numpy as np

    from bench.datasets import custom_corruptions as custom
    from bench.datasets.corruptions import CacheStats, corrupted_images
    from bench.datasets.registry import get_dataset
    from bench.plots import corruptions as preview

    drawn: list[tuple[str, int, int]] = []
    real = preview.corrupted_images

    def spy(images, **kw):
        got = real(images, **kw)
        return type(got)(got.ids, lambda i: (drawn.append((kw["corruption"], kw["severity"], i)), got[i])[1])

    monkeypatch.setattr(preview, "corrupted_images", spy)
    with custom.registered_temporarily("adsb_invert", lambda image, severity, rng: 255 - image):
        code, out, err = run_cli(monkeypatch, capsys, "corrupt", "--root", tiny_root, "--corruptions",
                                 "clean,adsb_invert,contrast", "--severities", "2,4", "--preview", "--out", tmp_path)
        assert code == 0, err
        assert (tmp_path / "corruptions.png").stat().st_size > 0 and (tmp_path / "corruptions.pdf").is_file()
        split = get_dataset("folder").load(tiny_root, "widget").split("")
        first_bad = int(np.flatnonzero(split.labels == 1)[0])
        assert sorted(drawn) == sorted([("clean", 0, first_bad)] + [(c, s, first_bad) for c in ("adsb_invert", "contrast")
                                                                     for s in (2, 4)])
        stats = CacheStats()
        for corruption in ("adsb_invert", "contrast"):
            corrupted_images(split.images, dataset=tiny_root.name, category="widget", corruption=corruption, severity=4,
                             seed=0, stats=stats)[first_bad]
        assert (stats.hits, stats.misses) == (2, 0)  # what the preview drew is what the cells read

        drawn.clear()
        code, _, err = run_cli(monkeypatch, capsys, "corrupt", "--root", tiny_root, "--corruptions", "contrast",
                               "--preview", "--image", split.images.ids[1], "--out", tmp_path)
        assert code == 0 and {i for *_, i in drawn} == {1}
    code, _, err = run_cli(monkeypatch, capsys, "corrupt", "--root", tiny_root, "--corruptions", "contrast",
                           "--preview", "--image", "nope.png", "--out", tmp_path)
    assert code == 2 and f"--image nope.png: not a test image of {tiny_root.name} / widget (8 images: " in err
    code, _, err = run_cli(monkeypatch, capsys, "corrupt", "--root", tiny_root, "--corruptions", "clean",
                           "--preview", "--out", tmp_path)
    assert code == 2 and "name at least one corruption besides clean" in err
