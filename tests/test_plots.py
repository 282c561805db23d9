"""bench plot: each figure from a small real run (PNG and PDF), and one-line errors when a run
lacks what a figure needs."""
import subprocess
import sys
from pathlib import Path

import pytest
from _grids import THREADS, run_cli, scratch, tiny_spec
from test_results import make_row

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
