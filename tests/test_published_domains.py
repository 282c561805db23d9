"""bench/published_domains.csv: GNL's Tables 3-10 (MNIST/MNIST-M and PACS), transcribed as printed.

Reads the csv with plain pandas; nothing from the package is imported.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

CSV = Path(__file__).resolve().parents[1] / "bench" / "published_domains.csv"
HEADER = "paper,table,metric,dataset,category,domain,method,setting,value"
KEY = ["table", "metric", "dataset", "category", "domain", "method", "setting"]
MNIST_METHODS = 11  # Tables 3 and 4: 10 baselines + GNL
# cells per printed table: rows x value columns
ROWS_PER_TABLE = {
    3: 11 * 4,   # one-vs-all ID/OOD, multi-class ID/OOD
    4: 11 * 4,   # Photo, Art, Cartoon, Sketch
    5: 6 * 4,    # ablation
    6: 4 * 4,    # lambda settings
    7: 2 * 2,    # training s/epoch, inference s/image
    8: 9 * 20,   # 10 digits x ID/OOD
    9: 9 * 12,   # dog, elephant, giraffe x 4 domains
    10: 9 * 16,  # guitar, horse, house, person x 4 domains
}


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return pd.read_csv(CSV, dtype=str, keep_default_na=False)


def test_header():
    assert CSV.read_text().splitlines()[0] == HEADER


def test_rows_per_table(df):
    assert (df.paper == "gnl").all()
    counts = df.table.astype(int).value_counts().to_dict()
    assert counts == ROWS_PER_TABLE
    assert len(df) == sum(ROWS_PER_TABLE.values()) == 564


def test_no_duplicate_keys(df):
    dup = df[df.duplicated(KEY, keep=False)]
    assert dup.empty, dup


def test_columns_take_known_values(df):
    t = df.table.astype(int)
    assert set(df.metric[t != 7]) == {"image_auroc"}
    assert set(df.metric[t == 7]) == {"train_seconds_per_epoch", "inference_seconds_per_image"}
    assert set(df.dataset[t.isin([3, 8])]) == {"mnist"}
    assert set(df.dataset[~t.isin([3, 8])]) == {"pacs"}
    assert set(df.domain[t.isin([3, 8])]) == {"mnist", "mnist_m"}
    assert set(df.domain[t.isin([4, 5, 6, 9, 10])]) == {"photo", "art_painting", "cartoon", "sketch"}
    assert set(df.domain[t == 7]) == {""}
    assert set(df.category[t == 8]) == {str(d) for d in range(10)}
    assert set(df.category[t == 9]) == {"dog", "elephant", "giraffe"}
    assert set(df.category[t == 10]) == {"guitar", "horse", "house", "person"}
    assert set(df.category[t.isin([4, 5, 6])]) == {""}
    assert set(df.category[t == 7]) == {"dog"}
    # Table 3: class means for one-vs-all, 'even' digits normal for multi-class
    t3 = df[t == 3]
    assert set(t3.category[t3.setting == "one-vs-all"]) == {""}
    assert set(t3.category[t3.setting == "multi-class"]) == {"even"}
    assert t3.method.nunique() == MNIST_METHODS
    assert set(df.method[t == 5]) == {"Baseline", "L_abs only", "L_lowf only", "DINL", "ATTA", "DINL+ATTA"}
    assert set(df.method[t.isin([6])]) == {"GNL"} and df.setting[t == 6].nunique() == 4
    assert set(df.method[t == 7]) == {"RD4AD", "GNL"}


def test_values_in_range(df):
    v = df.value.astype(float)
    auroc = df.metric == "image_auroc"
    assert v[auroc].between(0, 100).all()
    assert (v[~auroc] > 0).all()


def test_per_class_tables_average_to_the_main_tables(df):
    """Tables 8 / 9+10 average (within rounding) to Tables 3 / 4: the column mapping is right."""
    df = df.assign(v=df.value.astype(float))
    t = df.table.astype(int)
    for per_class, mean_table in (([8], 3), ([9, 10], 4)):
        means = df[t.isin(per_class)].groupby(["method", "domain"]).v.mean()
        main = df[(t == mean_table) & (df.category == "")].set_index(["method", "domain"]).v
        joined = pd.concat([means.rename("mean"), main.rename("main")], axis=1, join="inner")
        assert len(joined) == len(means)  # every per-class method is in the main table
        assert ((joined["mean"] - joined["main"]).abs() < 0.01).all(), joined


def _value(df, **key) -> str:
    key = {"category": "", "setting": "", "metric": "image_auroc", **key}
    sel = df
    for k, v in key.items():
        sel = sel[sel[k] == str(v)]
    assert len(sel) == 1, key
    return sel.value.iloc[0]


@pytest.mark.parametrize("key, value", [
    # prose-quoted (Section 5.4.3), converted to percent
    (dict(table=3, dataset="mnist", domain="mnist", method="GNL", setting="one-vs-all"), "96.91"),
    (dict(table=3, dataset="mnist", domain="mnist_m", method="GNL", setting="one-vs-all"), "70.87"),
    (dict(table=3, dataset="mnist", domain="mnist", method="RD4AD", setting="one-vs-all"), "98.89"),
    (dict(table=3, dataset="mnist", domain="mnist_m", method="RD4AD", setting="one-vs-all"), "58.09"),
    (dict(table=4, dataset="pacs", domain="art_painting", method="GNL"), "65.62"),
    (dict(table=4, dataset="pacs", domain="cartoon", method="GNL"), "67.96"),
    (dict(table=4, dataset="pacs", domain="sketch", method="GNL"), "62.39"),
    # main-text tables
    (dict(table=3, dataset="mnist", category="even", domain="mnist", method="KDAD", setting="multi-class"), "90.43"),
    (dict(table=4, dataset="pacs", domain="photo", method="Augmix+EFDM"), "77.28"),
    (dict(table=5, dataset="pacs", domain="art_painting", method="ATTA"), "64.36"),
    (dict(table=6, dataset="pacs", domain="sketch", method="GNL",
          setting="lambda_ori=0.85;lambda_abs=0.075;lambda_lowf=0.075"), "58.57"),
    (dict(table=7, dataset="pacs", category="dog", domain="", method="GNL", metric="train_seconds_per_epoch"), "7.2557"),
    (dict(table=7, dataset="pacs", category="dog", domain="", method="RD4AD",
          metric="inference_seconds_per_image"), "0.0282"),
    # appendix
    (dict(table=8, dataset="mnist", category="0", domain="mnist_m", method="GNL", setting="one-vs-all"), "80.54"),
    (dict(table=8, dataset="mnist", category="9", domain="mnist", method="KDAD", setting="one-vs-all"), "98.16"),
    (dict(table=8, dataset="mnist", category="4", domain="mnist", method="Deep SVDD", setting="one-vs-all"), "96.48"),
    (dict(table=9, dataset="pacs", category="dog", domain="photo", method="Deep SVDD"), "43.25"),
    (dict(table=9, dataset="pacs", category="giraffe", domain="sketch", method="GNL"), "64.11"),
    (dict(table=10, dataset="pacs", category="person", domain="photo", method="KDAD"), "100.00"),
    (dict(table=10, dataset="pacs", category="guitar", domain="sketch", method="f-AnoGAN"), "96.94"),
    (dict(table=10, dataset="pacs", category="person", domain="sketch", method="GNL"), "55.01"),
])
def test_spot_values(df, key, value):
    assert _value(df, **key) == value
