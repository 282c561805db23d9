import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _grids import run_cli
from bench.errors import BenchWarning
from bench.results import CorruptPartError, RunStore, export, load_rows, load_runs

REPO = Path(__file__).resolve().parents[1]


def make_row(cell_id, status="ok", **extra):
    row = {
        "cell_id": cell_id,
        "method": "patchcore",
        "config": {"coreset_ratio": 0.1, "layers": ["layer2", "layer3"]},
        "config_hash": "abc123",
        "dataset": "mvtec_ad",
        "category": "bottle",
        "corruption": "contrast",
        "severity": np.int64(5),
        "seed": 0,
        "backbone": "wide_resnet50_2",
        "weights": "imagenet",
        "image_size": 224,
        "protocol": "resized",
        "image_auroc": np.float32(0.9) if status == "ok" else float("nan"),
        "pixel_auroc": 0.8 if status == "ok" else float("nan"),
        "aupro": float("nan"),
        "image_f1_max": 0.7,
        "image_ap": 0.75,
        "pixel_ap": 0.3,
        "fit_seconds": 1.5,
        "fit_cached": np.bool_(True),
        "adapt_seconds": 0.0,
        "score_seconds": 0.2,
        "metric_seconds": 0.1,
        "total_seconds": 1.8,
        "peak_memory_mb": 512.0,
        "device": "cpu",
        "versions": {"torch": "2.4.0"},
        "status": status,
        "error": "" if status == "ok" else "RuntimeError: boom",
        "finished_at": "2025-01-01T00:00:00",
        "n_test": 83,
    }
    row.update(extra)
    return row


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    path = store.write(make_row("c1", image_auroc=0.5))
    assert path == tmp_path / "run" / "parts" / "c1.parquet"
    assert sorted(p.name for p in store.parts_dir.iterdir()) == ["c1.parquet"]
    before = path.read_bytes()

    # a writer that dies half-way through the new part: the old part stays whole, no temp file
    import pyarrow.parquet as pq

    def torn_write(table, fh, **kw):
        fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", torn_write)
    with pytest.raises(OSError, match="disk full"):
        store.write(make_row("c1", image_auroc=0.9))
    with pytest.raises(OSError, match="disk full"):
        store.write(make_row("c2"))
    assert sorted(p.name for p in store.parts_dir.iterdir()) == ["c1.parquet"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert store.read()["image_auroc"].tolist() == [0.5]


def test_done_ids_and_failed_cells(tmp_path):
    store = RunStore(tmp_path)
    assert store.done_ids() == set()
    store.write(make_row("a"))
    store.write(make_row("b", status="failed"))
    assert store.done_ids() == {"a", "b"}
    assert store.done_ids(include_failed=False) == {"a"}
    assert len(store) == 2 and "a" in store and "zz" not in store


def test_rewrite_replaces_the_part(tmp_path):
    store = RunStore(tmp_path)
    store.write(make_row("a", status="failed"))
    store.write(make_row("a", image_auroc=0.5))
    df = store.read()
    assert list(df["cell_id"]) == ["a"]
    assert df.loc[0, "status"] == "ok" and df.loc[0, "image_auroc"] == 0.5


def test_types_and_json_columns(tmp_path):
    store = RunStore(tmp_path)
    store.write(make_row("a"))
    store.write(make_row("b", status="failed", n_test=None))
    df = store.read().set_index("cell_id")
    assert json.loads(df.loc["a", "config"]) == {"coreset_ratio": 0.1, "layers": ["layer2", "layer3"]}
    assert json.loads(df.loc["a", "versions"]) == {"torch": "2.4.0"}
    assert df.loc["a", "severity"] == 5 and df.loc["a", "fit_cached"]
    assert math.isclose(df.loc["a", "image_auroc"], 0.9, rel_tol=1e-6)
    assert math.isnan(df.loc["b", "image_auroc"]) and math.isnan(df.loc["a", "aupro"])
    assert df.loc["b", "error"] == "RuntimeError: boom"


def test_read_unions_diag_columns(tmp_path):
    store = RunStore(tmp_path)
    store.write(make_row("a", diag_ot_cost=1.25, diag_n_assigned=7))
    store.write(make_row("b", diag_bn_shift=0.5))
    store.write(make_row("c", diag_n_assigned=3.5))  # int in one part, float in another
    df = store.read().set_index("cell_id")
    assert {"diag_ot_cost", "diag_n_assigned", "diag_bn_shift"} <= set(df.columns)
    assert df.loc["a", "diag_ot_cost"] == 1.25 and math.isnan(df.loc["b", "diag_ot_cost"])
    assert df.loc["a", "diag_n_assigned"] == 7 and df.loc["c", "diag_n_assigned"] == 3.5
    assert math.isnan(df.loc["a", "diag_bn_shift"])
    # core columns come first, diag_ columns last
    assert list(df.reset_index().columns[:3]) == ["cell_id", "method", "config"]
    assert df.columns[-1].startswith("diag_")


def test_torn_part_is_left_out_with_a_warning_and_is_not_done(tmp_path):
    store = RunStore(tmp_path)
    store.write(make_row("good"))
    path = store.write(make_row("torn"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(BenchWarning) as record:
        df = store.read()
    assert list(df["cell_id"]) == ["good"]
    assert [str(w.message) for w in record] == [
        f"{path}: unreadable result part (Parquet magic bytes not found in footer); left out (rerunning "
        "its grid moves it aside and recomputes the cell)"]
    assert store.done_ids() == {"good"}  # a resume computes it again
    assert path.exists()  # readers never move files


def test_a_torn_parquet_file_given_directly_is_one_line(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write(make_row("a"))
    path = export(store.run_dir, tmp_path / "rows.parquet")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptPartError) as info:
        load_rows(path)
    assert str(info.value) == (f"{path}: unreadable Parquet file (Parquet magic bytes not found in footer); "
                               "pass an intact copy (bench export writes one from its run directory)")


def test_stray_temp_file_is_ignored(tmp_path):
    store = RunStore(tmp_path)
    store.write(make_row("a"))
    (store.parts_dir / ".b.parquet.99999999.deadbeef.tmp").write_bytes(b"PAR1 half a file")
    (store.parts_dir / "c.parquet.tmp").write_bytes(b"junk")
    assert store.done_ids() == {"a"}
    assert list(store.read()["cell_id"]) == ["a"]
    assert store.remove_stale_tmp() == 1  # pid 99999999 does not run; the other is no temp of ours
    assert store.done_ids() == {"a"}


def test_unsafe_cell_id_is_rejected(tmp_path):
    with pytest.raises(ValueError):
        RunStore(tmp_path).write(make_row("../escape"))
    with pytest.raises(KeyError):
        RunStore(tmp_path).write({"method": "x"})


def test_manifest_round_trip(tmp_path):
    store = RunStore(tmp_path / "run")
    assert store.read_manifest() is None
    spec = {"methods": ["patchcore", "ttad"], "severities": [5], "seeds": [0, 1]}
    store.write_manifest(spec)
    assert store.read_manifest() == spec
    assert [p.name for p in store.run_dir.iterdir()] == ["grid.json"]


def test_empty_store_reads_empty_frame(tmp_path):
    df = RunStore(tmp_path / "nothing").read()
    assert len(df) == 0 and "cell_id" in df.columns


def test_export_and_load_rows_round_trip(tmp_path):
    store = RunStore(tmp_path / "run")
    for i in range(20):
        store.write(make_row(f"c{i:02d}", category=f"cat{i % 3}", diag_x=float(i),
                             finished_at=f"2025-01-01T00:00:{i:02d}"))
    out = export(store.run_dir, tmp_path / "reference" / "rows.parquet")
    from_parts = load_rows(store.run_dir)
    from_parts_dir = load_rows(store.parts_dir)
    from_file = load_rows(out)
    from_ref_dir = load_rows(out.parent)
    assert len(from_file) == 20 and list(from_file["cell_id"]) == [f"c{i:02d}" for i in range(20)]
    for other in (from_parts_dir, from_file, from_ref_dir):
        pd.testing.assert_frame_equal(from_parts, other, check_dtype=False)
    with pytest.raises(FileNotFoundError):
        load_rows(tmp_path / "missing")


def test_runs_merge_and_a_repeated_cell_keeps_the_last_runs_row(tmp_path, monkeypatch, capsys):
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    a.write(make_row("pc-clean", finished_at="1"))
    a.write(make_row("shared", image_auroc=0.1, finished_at="2"))
    b.write(make_row("ttad-clean", method="ttad", finished_at="3"))
    b.write(make_row("shared", image_auroc=0.7, finished_at="4"))
    with pytest.warns(BenchWarning, match=r"1 cell\(s\) are in several of the runs given with other values \(e.g. "
                                          r"shared in .*; each keeps the row of the last path given"):
        df = load_runs([a.run_dir, export(b.run_dir, tmp_path / "b.parquet")])
    assert sorted(df["cell_id"]) == ["pc-clean", "shared", "ttad-clean"]
    assert math.isclose(df.set_index("cell_id").loc["shared", "image_auroc"], 0.7, rel_tol=1e-6)
    code, out, err = run_cli(monkeypatch, capsys, "table", a.run_dir, b.run_dir)
    assert code == 0 and "| PatchCore |" in out and "| TTAD |" in out
    assert err.startswith("warning: 1 cell(s) are in several of the runs given with other values")


WRITER = textwrap.dedent(
    """
    import sys
    from bench.results import RunStore
    store = RunStore(sys.argv[1])
    i = 0
    while True:
        row = {"cell_id": f"cell{i % 40:03d}", "method": "m", "status": "ok",
               "image_auroc": i / 1e6, "finished_at": str(i), "error": "x" * (i % 5000)}
        row.update({f"diag_{k}": float(k) for k in range(i % 30)})
        store.write(row)
        if i == 0:
            print("ready", flush=True)
        i += 1
    """
)


@pytest.mark.slow
def test_sigkill_during_writes_leaves_only_whole_parts(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(2):  # kill at two different moments
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir)], env=env,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        store = RunStore(run_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("error", BenchWarning)  # a torn part would be a warning
            df = store.read()
        assert not df["cell_id"].duplicated().any()
        assert set(df["cell_id"]) == store.done_ids()
        assert 1 <= len(df) <= 40
        for path in store.parts_dir.glob("*.parquet"):
            assert pd.read_parquet(path)["cell_id"].tolist() == [path.stem]


@pytest.mark.parametrize("platform, maxrss", [("linux", 512 * 1024), ("darwin", 512 * 2**20)])
def test_peak_memory_is_in_megabytes_whatever_unit_the_system_counts_in(platform, maxrss, monkeypatch):
    from types import SimpleNamespace

    from bench import runner

    monkeypatch.setattr(runner.sys, "platform", platform)  # getrusage: kilobytes on Linux, bytes on macOS
    monkeypatch.setattr(runner.resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=maxrss))
    assert runner._peak_memory_mb("cpu") == 512.0
