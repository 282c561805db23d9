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
