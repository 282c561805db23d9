"""bench verify (recompute a sample from scratch, compare) and bench diff (compare two runs)."""
from __future__ import annotations

import pandas as pd
import pytest

from _grids import reference_rows, reference_run, run_cli
from bench.errors import BenchError
from bench.verify import diff, sample, verify


def _rows(methods: dict[str, int]) -> pd.DataFrame:
    out = [{"cell_id": f"{m}-{i}", "method": m, "status": "ok"} for m, n in methods.items() for i in range(n)]
    return pd.DataFrame(out + [{"cell_id": "x-failed", "method": "a", "status": "failed"}])


def test_the_sample_is_seeded_spread_over_the_methods_and_skips_failed_rows():
    rows = _rows({"a": 6, "b": 2, "c": 1})
    picked = sample(rows, 4, seed=0)
    assert sorted(picked["method"]) == ["a", "a", "b", "c"]  # round robin: one each, then again
    assert list(sample(rows, 4, seed=0)["cell_id"]) == list(picked["cell_id"])
    assert any(list(sample(rows, 4, seed=s)["cell_id"]) != list(picked["cell_id"]) for s in range(1, 6))
    assert len(sample(rows, 0, seed=0)) == 9 and "x-failed" not in set(sample(rows, 0, seed=0)["cell_id"])
    assert list(sample(rows, 2, seed=0, methods=["b"])["method"]) == ["b", "b"]
    assert list(sample(rows, 5, seed=0, cells=["c-0"])["cell_id"]) == ["c-0"]
    with pytest.raises(BenchError, match="no finished row of that method"):
        sample(rows, 2, seed=0, methods=["zz"])
    with pytest.raises(BenchError, match="no finished row with cell id nope"):
        sample(rows, 2, seed=0, cells=["nope"])


def test_a_run_verifies_bit_for_bit_from_scratch():
    lines: list[str] = []
    ok, checked = verify([reference_run()], n=0, echo=lines.append)
    assert ok, "\n".join(lines)
    assert len(checked) == 2 and all(c.worst() == (c.worst()[0], 0.0) for c in checked)
    assert all(c.new["image_auroc"] == c.stored["image_auroc"] for c in checked)
    assert any("[" in k for k in checked[0].new)  # the per-defect-type metrics are compared too
    assert lines[-1] == "2 cells reproduce within 0 (bit for bit)"


def _edited(tmp_path, delta: float) -> tuple[str, str]:
    rows = reference_rows().sort_values("cell_id").reset_index(drop=True)
    rows.loc[1, "aupro"] += delta
    path = tmp_path / "rows.parquet"
    rows.to_parquet(path)
    return str(path), rows.loc[1, "cell_id"]


def test_a_row_edited_by_hand_fails_verify_naming_the_cell_and_the_metric(tmp_path, monkeypatch, capsys):
    path, cell = _edited(tmp_path, 0.01)
    code, out, _ = run_cli(monkeypatch, capsys, "verify", path, "--sample", "0")
    assert code == 1
    assert f"({cell}): aupro differs by 0.01 (tolerance 0)" in out
    assert "DIFFERS" in out and out.count("same") == 1
    code, out, _ = run_cli(monkeypatch, capsys, "verify", path, "--cells", cell, "--tol", "0.02")
    assert code == 0 and "1 cells reproduce within 0.02" in out


def test_diff_compares_the_cells_two_runs_share(tmp_path):
    path, cell = _edited(tmp_path, 0.005)
    lines: list[str] = []
    ok, checked = diff([reference_run()], [path], echo=lines.append)
    assert not ok and len(checked) == 2
    assert "cells are not in the other run, 0 of the other run's cells not in the reference)" in lines[0]
    assert any(line.startswith("error: ") and cell in line and "aupro differs by 0.005" in line for line in lines)
    assert diff([reference_run()], [reference_run()], echo=lambda _: None)[0]
    assert diff([reference_run()], [path], tol=0.01, echo=lambda _: None)[0]
    with pytest.raises(BenchError, match="--tol -1"):
        diff([reference_run()], [path], tol=-1)


def test_constraints_name_the_library_versions_the_rows_were_computed_with(tmp_path, monkeypatch, capsys):
    import json
    from pathlib import Path

    from bench.verify import library_pins

    rows = reference_rows()
    pins, python = library_pins(rows)
    recorded = json.loads(rows["versions"].iloc[0])
    assert f"torch=={recorded['torch']}" in pins and f"numpy=={recorded['numpy']}" in pins
    assert python == recorded["python"] and not any(p.startswith(("python", "adshift-bench")) for p in pins)
    assert recorded["corruptions"] in pins  # already a requirement: imagecorruptions-imaug==...
    code, out, _ = run_cli(monkeypatch, capsys, "constraints", str(reference_run()))
    assert code == 0 and [line for line in out.splitlines() if not line.startswith("#")] == pins
    # the committed reference's file is the one its rows give (regenerated with the reference)
    published = Path(__file__).resolve().parents[1] / "results" / "reference" / "textures_default"
    code, out, _ = run_cli(monkeypatch, capsys, "constraints", str(published))
    assert code == 0 and out == (published / "constraints.txt").read_text()
    # rows of two installations: no single file reproduces them
    mixed = rows.copy()
    mixed.loc[mixed.index[0], "versions"] = json.dumps({**recorded, "numpy": "1.0"})
    with pytest.raises(BenchError, match=r"several versions of numpy \(1.0, "):
        library_pins(mixed, "mixed")


def test_diff_names_the_references_constraints_where_the_versions_differ(tmp_path):
    import json

    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    rows = reference_rows()
    rows.to_parquet(ref_dir / "rows.parquet")
    (ref_dir / "constraints.txt").write_text("torch==1\n")
    other = rows.copy()
    other["versions"] = [json.dumps({**json.loads(v), "torch": "0.0"}) for v in other["versions"]]
    other.to_parquet(tmp_path / "other.parquet")
    lines: list[str] = []
    assert diff([ref_dir], [tmp_path / "other.parquet"], echo=lines.append)[0]  # same metrics, other torch
    assert f"the reference's library versions: pip install -e . -c {ref_dir / 'constraints.txt'} (in a fresh venv)" in lines
    assert any("torch: " in line and "-> 0.0" in line for line in lines)
    lines.clear()
    diff([ref_dir], [ref_dir], echo=lines.append)
    assert not any("constraints" in line for line in lines)
    # another Python alone (the rows equal on 3.13): the file pins libraries, so it is not named
    other["versions"] = [json.dumps({**json.loads(v), "python": "3.99.0"}) for v in rows["versions"]]
    other.to_parquet(tmp_path / "other.parquet")
    lines.clear()
    diff([ref_dir], [tmp_path / "other.parquet"], echo=lines.append)
    assert any("python: " in line and "-> 3.99.0" in line for line in lines)
    assert not any("constraints" in line for line in lines)
