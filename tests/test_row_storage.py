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
    other = dataclasses.replace(spec, bootstrap=100, map_samples=0, map_size=32)
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


# --------------------------------------------------------------------------- torn side files


def torn(path, size=100):
    """Cut a file short, as a full disk or a partial copy leaves it (``truncate -s 100``)."""
    with open(path, "r+b") as fh:
        fh.truncate(size)
    return path


def test_a_torn_side_file_is_one_line_for_readers_and_quarantined_with_its_part_on_resume(tmp_path):
    import warnings

    from bench.errors import BenchWarning

    store = RunStore(tmp_path / "run")
    blob, _ = packed()
    for cid in ("a", "c"):
        store.write(make_row(cid, map_sample_ids=["id0", "id1"], **{samples.SAMPLES_KEY: blob}))
    store.write(make_row("b"))  # written with --map-samples 0: no side file, nothing to check
    side = torn(store.samples_path("a"))
    with pytest.raises(samples.UnreadableSamples) as info:
        store.read_samples("a")
    assert str(info.value) == (f"{side}: unreadable map samples (File is not a zip file); rerun its grid "
                               "(bench grid with the same --out moves the part aside and runs the cell again)")
    assert store.read_samples("c").ids == ["id0", "id1"] and store.read_samples("b") is None
    assert store.done_ids() == {"b", "c"}  # a resume computes it again
    assert side.exists() and store.part_path("a").exists()  # readers never move files
    with pytest.warns(BenchWarning) as record:
        statuses = store.quarantine_bad_parts()
    quarantine = store.run_dir / "quarantine"
    assert statuses == {"b": "ok", "c": "ok"}
    assert [str(w.message) for w in record] == [
        f"{side}: unreadable map samples (File is not a zip file); moved to {quarantine / 'a.maps.npz'} with "
        "its part (a.parquet), its cell runs again"]
    assert sorted(p.name for p in quarantine.iterdir()) == ["a.maps.npz", "a.parquet"]
    assert not side.exists() and not store.part_path("a").exists()
    # the cell goes bad again after its rerun: both copies are kept, numbered alike
    store.write(make_row("a", map_sample_ids=["id0", "id1"], **{samples.SAMPLES_KEY: blob}))
    torn(store.samples_path("a"), 0)
    with pytest.warns(BenchWarning, match="a.maps.npz: unreadable map samples"):
        assert store.quarantine_bad_parts() == {"b": "ok", "c": "ok"}
    assert sorted(p.name for p in quarantine.iterdir()) == ["a-2.maps.npz", "a-2.parquet", "a.maps.npz", "a.parquet"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sound parts and side files: nothing to say
        assert store.quarantine_bad_parts() == {"b": "ok", "c": "ok"}


def test_a_part_naming_map_samples_without_its_side_file_runs_again(tmp_path):
    from bench.errors import BenchWarning

    store = RunStore(tmp_path / "run")
    store.write(make_row("a", map_sample_ids=["id0", "id1"]))  # its side file was deleted
    store.write(make_row("b", map_sample_ids=[]))  # a cell with no test image to keep
    with pytest.warns(BenchWarning) as record:
        assert store.quarantine_bad_parts() == {"b": "ok"}
    assert [str(w.message) for w in record] == [
        f"{store.samples_path('a')}: unreadable map samples (the file is missing); moved to "
        f"{store.run_dir / 'quarantine' / 'a.parquet'}, its cell runs again"]


def test_the_side_file_check_reads_the_directory_and_headers_not_the_maps(tmp_path):
    blob, _ = packed()
    path = tmp_path / "x.maps.npz"
    path.write_bytes(blob)
    assert samples.side_file_problem(path) is None
    for size in (0, 100, len(blob) - 1):
        torn(path, size)
        assert samples.side_file_problem(path) == ("the file is empty" if size == 0 else "File is not a zip file")
        path.write_bytes(blob)
    zeroed = bytearray(blob)
    zeroed[:30] = bytes(30)  # a partial sync: the first member's header is zeros
    path.write_bytes(bytes(zeroed))
    assert samples.side_file_problem(path) == "Bad magic number for file header"
    # damage inside a member's compressed data passes the cheap check; unpacking says it in one line
    zeroed = bytearray(blob)
    zeroed[200:400] = bytes(200)
    path.write_bytes(bytes(zeroed))
    assert samples.side_file_problem(path) is None
    with pytest.raises(samples.UnreadableSamples, match=r"x\.maps\.npz: unreadable map samples \(Error -3 "):
        samples.read(path)


@pytest.mark.slow
def test_a_grid_resumes_past_a_torn_side_file_and_the_plots_leave_its_maps_out(tmp_path, monkeypatch, capsys):
    """A probe grid (2 cells, seconds): one torn side file; `bench plot all` warns and draws the rest;
    resuming quarantines that cell's part and side file and runs the cell again; a grid without map
    samples has no side files and resumes without running anything."""
    import warnings

    from _grids import GrayProbe, cache_env, run_cli, textures_root
    from bench.errors import BenchWarning
    from bench.executors import LocalExecutor, run_grid
    from bench.grid import GridSpec
    from bench.methods import registered_temporarily

    spec = GridSpec(methods=["probe"], dataset="textures", root=str(textures_root()), categories=["brick"],
                    corruptions=["gaussian_noise"], severities=[3], seeds=[0], device="cpu", bootstrap=0)
    run = tmp_path / "run"
    with registered_temporarily("probe", GrayProbe, summary="gray probe"), cache_env(tmp_path / "cache"):
        assert run_grid(spec, run, LocalExecutor(workers=1, threads=1), show_progress=False).ran == 2
        store = RunStore(run)
        cid = next(c.cell_id for c in spec.cells() if c.corruption == "gaussian_noise")
        side = torn(store.samples_path(cid))

        code, _, err = run_cli(monkeypatch, capsys, "plot", "all", run, "--out", tmp_path / "plots")
        assert code == 0, err
        warned = [line for line in err.splitlines() if line.startswith("warning: ")]
        assert warned == [f"warning: {side}: unreadable map samples (File is not a zip file); its cell's maps are "
                          "left out of the plot (rerunning its grid, bench grid with the same --out, moves the part "
                          "aside and runs the cell again)"]
        assert (tmp_path / "plots" / "maps_brick_seed0.png").is_file()
        assert len(list((tmp_path / "plots").glob("*.png"))) == 3  # severity, maps, histograms (no OT counts)
        assert "Traceback" not in err and "BadZipFile" not in err

        with pytest.warns(BenchWarning) as record:
            summary = run_grid(spec, run, LocalExecutor(workers=1, threads=1), show_progress=False)
        assert summary.ran == 1 and summary.skipped == 1 and summary.failed == 0
        assert [str(w.message) for w in record if issubclass(w.category, BenchWarning)] == [
            f"{side}: unreadable map samples (File is not a zip file); moved to "
            f"{run / 'quarantine' / side.name} with its part ({cid}.parquet), its cell runs again"]
        assert sorted(p.name for p in (run / "quarantine").iterdir()) == [side.name, f"{cid}.parquet"]
        row = load_rows(run).set_index("cell_id").loc[cid]
        assert store.read_samples(cid).ids == list(row["map_sample_ids"])  # written again, whole
        assert store.done_ids() == {c.cell_id for c in spec.cells()}

        without = tmp_path / "no-maps"
        spec.map_samples = 0
        assert run_grid(spec, without, LocalExecutor(workers=1, threads=1), show_progress=False).ran == 2
        assert not list((without / "parts").glob("*.npz"))
        with warnings.catch_warnings():
            warnings.simplefilter("error", BenchWarning)
            assert run_grid(spec, without, LocalExecutor(workers=1, threads=1), show_progress=False).ran == 0
        assert not (without / "quarantine").exists()


def test_a_torn_part_takes_its_sound_side_file_into_quarantine(tmp_path):
    """The side file belongs to the torn part's cell: it goes along, not left for the rerun to
    overwrite (the README says quarantine/ keeps parts with their map side files)."""
    from bench.errors import BenchWarning

    store = RunStore(tmp_path / "run")
    blob, _ = packed()
    store.write(make_row("a", map_sample_ids=["id0", "id1"], **{samples.SAMPLES_KEY: blob}))
    part = torn(store.part_path("a"))
    with pytest.warns(BenchWarning, match="unreadable result part"):
        assert store.quarantine_bad_parts() == {}
    quarantine = store.run_dir / "quarantine"
    assert sorted(p.name for p in quarantine.iterdir()) == ["a.maps.npz", "a.parquet"]
    assert not part.exists() and not store.samples_path("a").exists()
