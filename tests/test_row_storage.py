"""What rows keep for statistics and plots: per-image columns, map samples in side files, and
old runs without them still reading, resuming and keeping their directory."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
from test_results import make_row

from bench import samples
from bench.grid import default_run_dir
from bench.metrics import image_auroc
from bench.results import RunStore, export, load_rows


def per_image(n=6):
    labels = np.array([0, 1] * (n // 2))
    scores = np.linspace(0.1, 0.9, n)
    return samples.per_image_columns([f"test/x/{i:03d}.png" for i in range(n)], labels, scores)


def packed(k=2, side=8, with_masks=True):
    rng = np.random.default_rng(0)
    maps = rng.random((k, 32, 32)).astype(np.float32)
    masks = np.zeros((k, 32, 32), bool)
    masks[:, 4:12, 4:12] = True
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(k)]
    return samples.pack([f"id{i}" for i in range(k)], maps, masks if with_masks else None, images, side), maps


def test_list_columns_round_trip_and_old_parts_read_beside_them(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write(make_row("old"))  # a part written before the per-image columns existed
    store.write(make_row("new", **per_image()))
    store.write(make_row("failed", status="failed"))
    df = load_rows(store.run_dir).set_index("cell_id")
    assert list(df.loc["new", "image_ids"])[:2] == ["test/x/000.png", "test/x/001.png"]
    np.testing.assert_array_equal(df.loc["new", "image_labels"], [0, 1, 0, 1, 0, 1])
    np.testing.assert_allclose(df.loc["new", "image_scores"], np.linspace(0.1, 0.9, 6))
    assert df.loc["old", "image_scores"] is None and df.loc["failed", "image_scores"] is None
    assert store.done_ids() == {"old", "new", "failed"}
    # an exported run keeps the lists
    out = export(store.run_dir, tmp_path / "rows.parquet")
    again = pd.read_parquet(out).set_index("cell_id")
    np.testing.assert_allclose(again.loc["new", "image_scores"], np.linspace(0.1, 0.9, 6))


def test_map_samples_go_to_a_side_file_not_into_the_part(tmp_path):
    store = RunStore(tmp_path / "run")
    blob, maps = packed()
    store.write(make_row("a", map_sample_ids=["id0", "id1"], **{samples.SAMPLES_KEY: blob}))
    store.write(make_row("b"))
    assert store.samples_path("a").is_file() and not store.samples_path("b").exists()
    df = load_rows(store.run_dir)
    assert samples.SAMPLES_KEY not in df.columns and len(df) == 2
    s = store.read_samples("a")
    assert s.ids == ["id0", "id1"] and s.maps.dtype == np.float16 and s.maps.shape == (2, 8, 8)
    assert s.images.shape == (2, 8, 8, 3) and s.images.dtype == np.uint8
    assert s.masks.shape == (2, 8, 8) and s.masks[:, 1:3, 1:3].all() and not s.masks[:, 5:, 5:].any()
    # area-averaged: the mean of the map survives shrinking
    assert abs(float(s.maps[0].astype(np.float32).mean()) - float(maps[0].mean())) < 1e-2
    assert store.read_samples("b") is None


def test_samples_without_ground_truth_and_small_maps_kept_as_they_are():
    blob, maps = packed(side=64, with_masks=False)
    s = samples.unpack(blob)
    assert s.masks is None and s.maps.shape == (2, 32, 32)
    np.testing.assert_allclose(s.maps.astype(np.float32), maps, atol=1e-3)


def test_pick_is_seeded_by_the_ids_and_prefers_anomalous_images():
    ids = [f"img{i}" for i in range(20)]
    labels = np.array([0] * 10 + [1] * 10)
    a = samples.pick(ids, labels, 4)
    assert list(a) == list(samples.pick(ids, labels, 4))  # same ids, same images
    assert (labels[a] == 1).sum() == 3 and (labels[a] == 0).sum() == 1
    assert list(a) != list(samples.pick([i + "x" for i in ids], labels, 4))  # another test set, another draw
    assert len(samples.pick(ids, np.zeros(20), 4)) == 4  # no anomalies: normals only
    assert len(samples.pick(ids[:2], labels[:2], 4)) == 2
    assert len(samples.pick(ids, labels, 0)) == 0


def test_storage_options_do_not_move_the_run_directory():
    from _grids import tiny_spec

    spec = tiny_spec()
    other = dataclasses.replace(spec, bootstrap=10, map_samples=0, map_size=32)
    assert default_run_dir(spec) == default_run_dir(other)
    assert [c.cell_id for c in spec.cells()] == [c.cell_id for c in other.cells()]


@pytest.mark.slow
def test_a_real_cell_row_holds_scores_labels_interval_and_maps():
    from _grids import reference_run

    run = reference_run()
    df = load_rows(run)
    store = RunStore(run)
    for _, row in df.iterrows():
        labels, scores = np.asarray(row["image_labels"]), np.asarray(row["image_scores"])
        assert len(labels) == len(scores) == len(row["image_ids"]) == row["n_test"]
        assert image_auroc(labels, scores) == row["image_auroc"]  # nothing to re-run
        assert row["image_auroc_ci_low"] < row["image_auroc"] < row["image_auroc_ci_high"]
        assert row["bootstrap_resamples"] == 1000
        s = store.read_samples(row["cell_id"])
        assert s.ids == list(row["map_sample_ids"]) and len(s.ids) == 4
        assert set(s.ids) <= set(row["image_ids"]) and max(s.maps.shape[1:]) <= 64
        assert store.samples_path(row["cell_id"]).stat().st_size < 100_000
    # the same images for both conditions (and every method and seed) of the category
    assert len({tuple(x) for x in df["map_sample_ids"]}) == 1


def test_a_thin_defect_stays_visible_in_the_kept_masks():
    """A one-pixel crack on a 448 px map grid covers 1/7 of each 64 px pixel: it must not vanish."""
    mask = np.zeros((1, 448, 448), bool)
    mask[0, 200, 40:400] = True
    maps = np.zeros((1, 448, 448), np.float32)
    image = np.zeros((448, 448, 3), np.uint8)
    kept = samples.unpack(samples.pack(["a"], maps, mask, [image], 64))
    assert kept.masks.shape == (1, 64, 64) and kept.masks[0].any(axis=1).sum() in (1, 2)
    assert kept.masks[0].sum() >= 50  # the crack's length, not a few pixels


def test_the_defect_type_breakdown_survives_parts_export_and_old_rows(tmp_path):
    from bench.results import decode_defect_metrics, encode_defect_metrics

    breakdown = {"crack": {"image_auroc": 0.75, "pixel_auroc": 0.9, "aupro": 0.5, "n": 3},
                 "hole": {"image_auroc": 1 / 3, "pixel_auroc": float("nan"), "aupro": float("nan"), "n": 1}}
    text = encode_defect_metrics(breakdown)
    assert "NaN" not in text and "null" in text  # strict JSON
    store = RunStore(tmp_path / "run")
    store.write(make_row("old"))  # written before the column existed
    store.write(make_row("new", defect_metrics=text))
    store.write(make_row("failed", status="failed"))
    exported = load_rows(export(store.run_dir, tmp_path / "ref" / "rows.parquet")).set_index("cell_id")
    for df in (load_rows(store.run_dir).set_index("cell_id"), exported):
        got = decode_defect_metrics(df.loc["new", "defect_metrics"])
        assert list(got) == ["crack", "hole"] and got["crack"] == breakdown["crack"]
        assert got["hole"]["image_auroc"] == 1 / 3 and got["hole"]["n"] == 1
        assert np.isnan(got["hole"]["pixel_auroc"]) and np.isnan(got["hole"]["aupro"])
        assert decode_defect_metrics(df.loc["old", "defect_metrics"]) is None
        assert decode_defect_metrics(df.loc["failed", "defect_metrics"]) is None
