"""Option values a command cannot use are one line before anything runs (a dry run says them too),
not a cell that fails on them, a traceback after the run, or a silent default or double count."""
from __future__ import annotations

import pandas as pd
import pytest

from _grids import run_cli, tiny_spec
from bench.cli_common import parse_ints, split_list
from bench.errors import BenchError, BenchWarning
from bench.results import NoResults, load_runs
from bench.runner import check_device_name, resolve_device
from bench.stats import MAX_RESAMPLES, MIN_RESAMPLES, check_resamples

TINY_GRID = ["grid", "--dry-run", "-m", "patchcore", "-c", "brick", "--corruptions", "clean"]


def lines(monkeypatch, capsys, *args) -> tuple[int, list[str]]:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, [line for line in (out + err).splitlines() if line.strip()]


def test_list_options_count_each_item_once_and_an_empty_one_is_an_error():
    assert split_list(["a,b", "a", " b ,c"]) == ["a", "b", "c"]
    assert parse_ints(["0,0", "0-2"], "seeds") == [0, 1, 2]
    assert split_list(None) is None
    with pytest.raises(BenchError, match=r"^--methods '': no item in it; name at least one, or leave the option out"):
        split_list([""], "methods")
    with pytest.raises(BenchError, match=r"^--seeds ' , ': no item"):
        parse_ints([" , "], "seeds")


def test_a_grid_runs_a_repeated_name_once_and_refuses_a_seed_numpy_cannot_take():
    cells = tiny_spec(seeds=(0, 0), severities=(3, 3), categories=("brick", "brick")).cells()
    assert len(cells) == 2 and len({c.cell_id for c in cells}) == 2  # clean + gaussian_noise@3
    with pytest.raises(BenchError, match=r"^--seeds -1: seeds are integers from 0 to 2\*\*32 - 1"):
        tiny_spec(seeds=(-1,)).cells()
    with pytest.raises(BenchError, match=r"^--seeds 4294967296"):
        tiny_spec(seeds=(2**32,)).cells()


def test_resamples_below_a_meaningful_interval_or_past_memory_are_refused():
    assert check_resamples(0) == 0 and check_resamples(MIN_RESAMPLES) == MIN_RESAMPLES
    for bad in (-1, 1, MIN_RESAMPLES - 1, MAX_RESAMPLES + 1):
        with pytest.raises(BenchError, match=rf"^--bootstrap {bad}: use 0 \(no intervals\) or 100 to 100,000"):
            check_resamples(bad)
    with pytest.raises(BenchError, match=r"^--resamples 0: use 100 to 100,000 resamples"):
        check_resamples(0, "--resamples", none_ok=False)
    with pytest.raises(BenchError, match="--bootstrap 1: use 0"):
        tiny_spec(bootstrap=1).cells()


def test_a_device_name_torch_cannot_take_is_refused_before_any_cell():
    assert check_device_name("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    for bad in ("tpu", "", "CPU", "cuda:x"):
        with pytest.raises(BenchError, match=r"^--device '.*': use auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


def test_merged_runs_that_disagree_on_a_cell_are_said(tmp_path):
    row = dict(cell_id="c1", method="patchcore", dataset="textures", category="brick", corruption="clean",
               severity=0, seed=0, status="ok", image_auroc=0.9)
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pd.DataFrame([row]).to_parquet(a)
    pd.DataFrame([{**row, "image_auroc": 0.1}]).to_parquet(b)
    pd.DataFrame([row]).to_parquet(c)
    with pytest.warns(BenchWarning, match=rf"1 cell\(s\) are in several of the runs given with other values \(e.g. c1 "
                                          rf"in {a} and {b}\); each keeps the row of the last path given"):
        assert load_runs([a, b])["image_auroc"].tolist() == [0.1]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", BenchWarning)
        assert len(load_runs([a, c])) == 1  # the same values twice: nothing to say


def test_a_parquet_file_without_the_columns_of_rows_is_one_line(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"cell_id": ["c"], "method": ["m"], "dataset": ["d"], "category": ["k"], "corruption": ["clean"],
                  "seed": [0], "status": ["ok"]}).to_parquet(path)
    with pytest.raises(NoResults, match=rf"^{path}: not result rows of adshift-bench \(no column severity\); pass a run"):
        load_runs([path])


def test_a_dry_run_checks_out_format_and_sample_as_the_run_would(monkeypatch, capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, out = lines(monkeypatch, capsys, *TINY_GRID, "-o", afile)
    assert code == 2 and out == [f"error: --out {afile}: it is a file; pass a folder for the run (a new or an "
                                 "earlier run's)"]
    code, out = lines(monkeypatch, capsys, *TINY_GRID, "-o", afile / "run")
    assert code == 2 and out[-1].startswith(f"error: --out {afile / 'run'}: it lies under the file {afile}")
    code, out = lines(monkeypatch, capsys, "reproduce", "ttad-table1", "--dry-run", "-f", "html")
    assert code == 2 and out == ["error: --format html: use latex or markdown"]
    code, out = lines(monkeypatch, capsys, "reproduce", "ttad-table1", "--dry-run", "--workers", "0")
    assert code == 2 and len(out) == 1 and out[0].startswith("error: --workers 0")
    code, out = lines(monkeypatch, capsys, "verify", tmp_path, "--sample", "-1")
    assert code == 2 and out == ["error: --sample -1: use 0 or more (--sample 0: every finished cell)"]


def _rows_file(path, **changes):
    row = dict(cell_id="c1", method="patchcore", dataset="textures", category="brick", corruption="clean",
               severity=0, seed=0, status="ok", error="", image_auroc=0.9, versions='{"torch": "2.4.0"}',
               image_ids=[["a", "b"]], image_labels=[[0, 1]], image_scores=[[0.1, 0.2]])
    row.update(changes)
    pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in row.items()}).drop(
        columns=[k for k, v in changes.items() if v is None]).to_parquet(path)
    return path


def test_rows_that_lack_what_a_command_reads_are_one_line(monkeypatch, capsys, tmp_path):
    ref = _rows_file(tmp_path / "ref.parquet")
    failed = _rows_file(tmp_path / "failed.parquet", status="failed", image_auroc=float("nan"))
    code, out = lines(monkeypatch, capsys, "table", failed)
    assert code == 2 and out == [f"error: {failed}: no ok rows, all 1 cells failed (first error: none recorded); "
                                 "fix the cause and rerun its bench grid with --retry-failed"]
    code, out = lines(monkeypatch, capsys, "diff", ref, failed)
    assert code == 1 and any("not ok: status failed, no error recorded" in line for line in out)
    no_metric = _rows_file(tmp_path / "no_metric.parquet", image_auroc=None)
    code, out = lines(monkeypatch, capsys, "diff", ref, no_metric)
    assert code == 2 and out == [f"error: {no_metric}: its rows have no column image_auroc, which {ref} has; these "
                                 "are not rows as bench grid writes them"]
    bad = _rows_file(tmp_path / "bad.parquet", versions="not json")
    code, out = lines(monkeypatch, capsys, "constraints", bad)
    assert code == 2 and out == [f"error: {bad}: a row's versions column holds 'not json', not the JSON of its "
                                 "library versions; these are not rows as bench grid writes them"]
    no_labels = _rows_file(tmp_path / "no_labels.parquet", image_labels=None)
    code, out = lines(monkeypatch, capsys, "table", no_labels, "--interval")
    assert code == 2 and out[-1].startswith(f"error: --interval ({no_labels}) needs the per-image scores of every "
                                            "row (image_labels)")


def test_a_torn_grid_spec_is_one_line_and_status_goes_on_to_the_next_run(monkeypatch, capsys, tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"
    (bad / "parts").mkdir(parents=True)
    (bad / "grid.json").write_text("{bad")
    code, out = lines(monkeypatch, capsys, "grid", "-m", "patchcore", "-c", "brick", "--corruptions", "clean",
                      "--set", "resize=64", "--set", "image_size=64", "--threads", "1", "--no-progress",
                      "--bootstrap", "0", "--map-samples", "0", "-o", good)
    assert code == 0
    code, out, err = run_cli(monkeypatch, capsys, "status", bad, good)
    assert code == 2 and err.startswith(f"error: {bad / 'grid.json'}: not a grid spec (") and err.strip().endswith(
        "delete it and rerun the grid's own command, which writes it anew")
    assert out.startswith(f"run {good}: 1 cells")  # the next run is still said


def test_table_and_export_refuse_what_would_break_their_output(monkeypatch, capsys, tmp_path):
    ref = _rows_file(tmp_path / "ref.parquet")
    code, out = lines(monkeypatch, capsys, "table", ref, "--compare", "ttad:1", "--per-class")
    assert code == 2 and out[-1].startswith("error: --compare: the published table fixes its layout")
    code, out = lines(monkeypatch, capsys, "table", ref, "-f", "latex", "--label", "tab x_%")
    assert code == 2 and out == ["error: --label tab x_%: use letters, digits and : . _ - only, e.g. tab:main"]
    run = tmp_path / "run"
    (run / "parts").mkdir(parents=True)
    (run / "grid.json").write_text("{}")
    code, out = lines(monkeypatch, capsys, "export", ref, run / "parts" / "x.parquet")
    assert code == 2 and out[-1].startswith(f"error: {run / 'parts' / 'x.parquet'}: inside a run's parts/ folder")
    assert not (run / "parts" / "x.parquet").exists()
