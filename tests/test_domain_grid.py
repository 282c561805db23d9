"""The domain dimension of a grid: cells per test domain (corruptions combinable), the rows'
``domain`` columns, tables with domain columns, and every cell without a domain keeping its id."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _domain_data import make_mnist, make_mnist_m_folder, make_pacs
from _grids import GrayProbe, cache_env, run_cli, textures_root
from bench import stats, verify
from bench.executors import LocalExecutor, run_grid
from bench.grid import Cell, GridSpec, corruption_sets
from bench.methods import registered_temporarily
from bench.methods.persist import stable_hash
from bench.results import load_rows
from bench.errors import BenchError, UnknownName
from bench.tables import main_table, table_frame

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "textures_default" / "rows.parquet"
MNIST_LABELS = [i % 10 for i in range(20)]


@contextlib.contextmanager
def probe():
    with registered_temporarily("probe", GrayProbe, summary="gray probe") as name:
        yield name


def _run(spec: GridSpec, out: Path, cache: Path) -> pd.DataFrame:
    with probe(), cache_env(cache):
        summary = run_grid(spec, out, LocalExecutor(workers=1, threads=1), show_progress=False)
    assert summary.failed == 0, summary.failures
    return load_rows(out)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> Path:
    root = make_mnist(tmp_path_factory.mktemp("mnist"))
    return make_mnist_m_folder(root, MNIST_LABELS)


@pytest.fixture(scope="module")
def mnist_rows(mnist_root, tmp_path_factory) -> pd.DataFrame:
    """probe on mnist '3' and 'even', both domains, clean + gaussian noise at 3 (28 px digits are
    too small for imagecorruptions: the resized protocol takes them to 256 px first)."""
    tmp = tmp_path_factory.mktemp("mnist-run")
    spec = GridSpec(methods=["probe"], dataset="mnist", root=str(mnist_root), categories=["3", "even"],
                    domains=["all"], corruptions=["gaussian_noise"], severities=[3], protocol="resized",
                    device="cpu", bootstrap=100)
    return _run(spec, tmp / "run", tmp / "cache")


def test_cells_without_a_domain_keep_their_ids():
    """The main job's cells are the committed reference rows' cells, id for id; a cell's id only
    grows a domain term when it has a domain."""
    reference = pd.read_parquet(REFERENCE, columns=["cell_id", "method", "seed"])
    methods = sorted(set(reference["method"]))  # the 13 built-in methods (a plugin may add others)
    seeds = sorted(int(s) for s in set(reference["seed"]))  # the main job's seed 0, and two more
    reference = set(reference["cell_id"])
    cells = GridSpec(methods=methods, root=str(textures_root()), seeds=seeds).cells()
    assert {c.cell_id for c in cells} == reference and all(c.domain == "" for c in cells)
    c = cells[0]
    key = [c.method, c.config_hash, c.dataset, c.category, c.corruption, c.severity, c.seed, c.protocol]
    assert c.cell_id.endswith(stable_hash(key, 12))
    with_domain = Cell(c.method, "mnist", "3", "clean", 0, 0, "native", c.config, domain="mnist_m")
    assert with_domain.cell_id.startswith(f"{c.method}-3-mnist_m-clean-s0-")
    assert with_domain.cell_id != Cell(c.method, "mnist", "3", "clean", 0, 0, "native", c.config).cell_id


def test_domains_of_a_grid(mnist_root):
    with probe():
        spec = GridSpec(methods=["probe"], dataset="mnist", root=str(mnist_root), categories=["0"],
                        corruptions=["contrast"], severities=[2])
        assert [(c.domain, c.corruption) for c in spec.cells()] == [("mnist", "clean"), ("mnist", "contrast")]
        spec.domains = ["all"]
        assert [(c.domain, c.corruption) for c in spec.cells()] == [
            ("mnist", "clean"), ("mnist", "contrast"), ("mnist_m", "clean"), ("mnist_m", "contrast")]
        spec.domains = ["mnist_n"]
        with pytest.raises(UnknownName, match="unknown domain 'mnist_n': did you mean 'mnist_m'"):
            spec.cells()
        assert "domains" not in GridSpec(methods=["probe"]).to_dict()  # old specs, old run directories
        with pytest.raises(BenchError, match="--domains photo: dataset 'textures' has one test split, no domains"):
            GridSpec(methods=["probe"], root=str(textures_root()), domains=["photo"]).cells()


def test_rows_carry_the_domain(mnist_rows):
    df = mnist_rows
    assert len(df) == 8 and (df["status"] == "ok").all()  # 2 categories x 2 domains x 2 conditions
    assert sorted(set(zip(df["category"], df["domain"], df["corruption"]))) == sorted(
        (c, d, k) for c in ("3", "even") for d in ("mnist", "mnist_m") for k in ("clean", "gaussian_noise"))
    source = df.groupby("domain")["domain_source"].unique()
    assert len(source["mnist"]) == 1 and source["mnist"][0].startswith("MNIST test set (")
    assert len(source["mnist_m"]) == 1 and source["mnist_m"][0].startswith("MNIST-M test split, released folder")
    assert (df["n_test"] == 20).all() and np.isfinite(df["image_auroc"]).all()
    assert df["pixel_auroc"].isna().all() and not df["pixel_ground_truth"].any()
    for _, row in df.iterrows():  # ids per domain: the corruption seeds differ between domains
        assert row["image_ids"][0] == ("t10k/00000" if row["domain"] == "mnist" else "mnist_m_test/00000000.png")
        assert f"-{row['category']}-{row['domain']}-" in row["cell_id"]
    even = df[(df["category"] == "even") & (df["domain"] == "mnist")].iloc[0]
    assert list(even["image_labels"]) == [y % 2 for y in MNIST_LABELS]
    # the fit is shared by the domains and conditions of a category
    assert df.groupby("category")["fit_cached"].sum().to_dict() == {"3": 3, "even": 3}


def test_tables_show_domains_as_conditions(mnist_rows):
    frame = table_frame(mnist_rows, "image_auroc")
    assert list(frame.columns) == [("MNIST/MNIST-M", c) for c in
                                   ("MNIST", "MNIST + Gaussian Noise", "MNIST-M", "MNIST-M + Gaussian Noise", "Mean")]
    per_cat = mnist_rows.groupby(["domain", "corruption"])["image_auroc"].mean()
    assert frame.iloc[0, 2] == pytest.approx(per_cat[("mnist_m", "clean")])
    shifted = [per_cat[("mnist", "gaussian_noise")], per_cat[("mnist_m", "clean")], per_cat[("mnist_m", "gaussian_noise")]]
    assert frame.iloc[0, 4] == pytest.approx(np.mean(shifted))  # the in-distribution clean column is left out
    md = main_table(mnist_rows, "image_auroc", fmt="markdown", interval=50)
    header = md.splitlines()[0]
    assert header == ("| Method | MNIST/MNIST-M / MNIST | MNIST/MNIST-M / MNIST + Gaussian Noise | MNIST/MNIST-M / "
                      "MNIST-M | MNIST/MNIST-M / MNIST-M + Gaussian Noise | MNIST/MNIST-M / Mean |")
    assert md.splitlines()[2].count("[") == 5  # each value with its bootstrap interval
    only = table_frame(mnist_rows, "image_auroc", conditions=["mnist_m"], mean=False)
    assert [c[1] for c in only.columns] == ["MNIST-M", "MNIST-M + Gaussian Noise"]
    explicit = table_frame(mnist_rows, "image_auroc", conditions=[("mnist_m", "clean", 0), ("gaussian_noise", 3)],
                           mean=False)
    assert [c[1] for c in explicit.columns] == ["MNIST-M", "MNIST + Gaussian Noise", "MNIST-M + Gaussian Noise"]
    per_class = table_frame(mnist_rows, "image_auroc", per_class=True)
    assert list(per_class.index) == ["3", "even", "Mean"]
    assert [c[0] for c in per_class.columns] == ["MNIST", "MNIST + Gaussian Noise", "MNIST-M", "MNIST-M + Gaussian Noise"]
    by_type = table_frame(mnist_rows, "image_auroc", by="defect_type")
    assert [t for _, t in by_type.index] == [str(d) for d in range(10)]  # anomalous digits of '3' and 'even'
    assert list(by_type.columns) == list(frame.columns)


def test_domain_rows_rebuild_and_pair(mnist_rows, mnist_root):
    row = mnist_rows[mnist_rows["domain"] == "mnist_m"].iloc[0].to_dict()
    with probe():
        cell, spec = verify.rebuild(row, str(mnist_root), "cpu")
    assert cell.domain == "mnist_m" and cell.cell_id == row["cell_id"] and spec.domains == ["mnist_m"]
    diffs = stats.paired_test(mnist_rows, mnist_rows, resamples=20)
    assert len(diffs) == 9 and diffs[-1].cell == "overall"  # each domain's row matched with its own
    assert any("/ mnist_m /" in d.cell for d in diffs)


def test_pacs_grid_over_two_domains(tmp_path):
    root = make_pacs(tmp_path / "pacs", per_class=2, size=32)
    spec = GridSpec(methods=["probe"], dataset="pacs", root=str(root), categories=["dog"],
                    domains=["photo", "art_painting"], corruptions=["clean"], device="cpu", bootstrap=0)
    df = _run(spec, tmp_path / "run", tmp_path / "cache")
    assert sorted(df["domain"]) == ["art_painting", "photo"]
    assert df.set_index("domain")["n_test"].to_dict() == {"photo": 7, "art_painting": 14}
    frame = table_frame(df, "image_auroc")
    assert list(frame.columns) == [("PACS", "Photo"), ("PACS", "Art")]
    assert "Photo" in main_table(df, fmt="latex")


def test_cli_domains(mnist_root, tmp_path, monkeypatch, capsys):
    with probe(), cache_env(tmp_path / "cache"):
        code, out, err = run_cli(monkeypatch, capsys, "grid", "-d", "mnist", "--root", mnist_root, "-c", "7",
                                 "--domains", "mnist,mnist_m", "-m", "probe", "--corruptions", "clean",
                                 "--out", tmp_path / "run", "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert "| Method | MNIST/MNIST-M / MNIST | MNIST/MNIST-M / MNIST-M |" in out
    assert sorted(load_rows(tmp_path / "run")["domain"]) == ["mnist", "mnist_m"]


def test_corruption_sets_per_domain(mnist_root):
    """bench corrupt fills the cache for each domain's own images (ids, hence seeds, per domain)."""
    with probe():
        spec = GridSpec(methods=["probe"], dataset="mnist", root=str(mnist_root), categories=["5"], domains=["all"],
                        corruptions=["contrast"], severities=[1, 2], protocol="resized")
        sets = corruption_sets(spec)
    assert [(s.category, s.images.ids[0], s.corruptions, s.severities) for s in sets] == [
        ("5", "t10k/00000", ["contrast"], [1, 2]), ("5", "mnist_m_test/00000000.png", ["contrast"], [1, 2])]
