"""The embedded `textures` dataset: deterministic, MVTec layout, exact masks, atomic cache."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bench.datasets import textures as T
from bench.methods.errors import BenchError

COUNTS = {"good": T.N_TEST_GOOD, **{t: T.N_PER_DEFECT for t in T.DEFECT_TYPES}}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return T.ensure_textures(tmp_path_factory.mktemp("tex") / "textures")


@pytest.fixture(scope="module")
def samples() -> dict[str, list[T.Sample]]:
    photos = T.load_photos()
    return {c: T.generate_category(c, photos) for c in T.CATEGORIES}


def _gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L", path
        return np.asarray(im)


def test_photos_are_bundled_with_scikit_image(monkeypatch):
    import skimage
    import skimage.data._fetchers as fetchers

    data_dir = Path(skimage.__file__).parent / "data"
    for c in T.CATEGORIES:
        assert (data_dir / f"{c}.png").is_file()
    # without pooch, anything that would need a download raises instead
    monkeypatch.setattr(fetchers, "_image_fetcher", None, raising=False)
    photos = T.load_photos()
    assert {k: (v.shape, v.dtype) for k, v in photos.items()} == {
        c: ((512, 512), np.uint8) for c in T.CATEGORIES
    }


@pytest.mark.slow  # generates the dataset a second time
def test_generation_is_deterministic(root, tmp_path):
    again = T.ensure_textures(tmp_path / "again")
    a, b = T.read_manifest(root), T.read_manifest(again)
    assert a["generator_version"] == b["generator_version"] == T.GENERATOR_VERSION
    assert a["files"] == b["files"]
    assert a == b


def test_layout_counts_and_manifest(root):
    manifest = T.read_manifest(root)
    on_disk = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
    )
    assert on_disk == sorted([*manifest["files"], T.MANIFEST])
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel

    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(T.CATEGORIES)
    for c in T.CATEGORIES:
        cat = root / c
        assert sorted(p.name for p in (cat / "train").iterdir()) == ["good"]
        train = sorted(p.name for p in (cat / "train" / "good").iterdir())
        assert train == [f"{i:03d}.png" for i in range(T.N_TRAIN)]
        assert sorted(p.name for p in (cat / "test").iterdir()) == sorted(COUNTS)
        for kind, n in COUNTS.items():
            names = sorted(p.name for p in (cat / "test" / kind).iterdir())
            assert names == [f"{i:03d}.png" for i in range(n)]
        # normal images have no masks
        assert sorted(p.name for p in (cat / "ground_truth").iterdir()) == sorted(T.DEFECT_TYPES)
        for kind in T.DEFECT_TYPES:
            masks = sorted(p.name for p in (cat / "ground_truth" / kind).iterdir())
            assert masks == [f"{i:03d}_mask.png" for i in range(T.N_PER_DEFECT)]
    for p in root.rglob("*.png"):
        assert _gray(p).shape == (T.SIDE, T.SIDE), p


def test_every_defect_has_a_nonempty_binary_mask(root):
    for c in T.CATEGORIES:
        for kind in T.DEFECT_TYPES:
            for i in range(T.N_PER_DEFECT):
                img = _gray(root / c / "test" / kind / f"{i:03d}.png")
                mask = _gray(root / c / "ground_truth" / kind / f"{i:03d}_mask.png")
                assert mask.shape == img.shape
                assert set(np.unique(mask)) == {0, 255}, (c, kind, i)
                assert 0 < (mask > 0).mean() < 0.15, (c, kind, i)


def test_files_match_the_in_memory_samples(root, samples):
    for c, items in samples.items():
        assert len(items) == T.N_TRAIN + sum(COUNTS.values())
        for s in items:
            assert np.array_equal(_gray(root / s.relpath), s.image), s.relpath
            if s.defect_type == "good":
                assert s.mask is None and s.clean is None
            else:
                mask = _gray(root / s.mask_relpath) > 0
                assert np.array_equal(mask, s.mask), s.mask_relpath


def test_defects_change_the_masked_pixels_and_only_near_them(samples):
    for items in samples.values():
        for s in items:
            if s.mask is None:
                continue
            diff = np.abs(s.image.astype(int) - s.clean.astype(int))
            ring = ndimage.binary_dilation(s.mask, iterations=3) & ~s.mask
            far = ~ndimage.binary_dilation(s.mask, iterations=24)
            where = f"{s.category}/{s.defect_type}/{s.stem}"
            assert diff[s.mask].mean() >= 8, where
            assert (diff[s.mask] > 0).mean() > 0.9, where
            assert diff[s.mask].mean() > 1.5 * diff[ring].mean(), where
            assert diff[far].max() == 0, where


def test_normal_crops_differ_from_each_other(samples):
    for items in samples.values():
        goods = [s.image for s in items if s.defect_type == "good"]
        flat = {g.tobytes() for g in goods}
        assert len(flat) == len(goods)


def test_ensure_is_idempotent(root, monkeypatch):
    files = [root / T.MANIFEST, root / "brick" / "train" / "good" / "000.png"]
    before = [p.stat().st_mtime_ns for p in files]

    def boom(_):
        raise AssertionError("regenerated")

    monkeypatch.setattr(T, "_write_dataset", boom)
    assert T.ensure_textures(root) == root
    assert [p.stat().st_mtime_ns for p in files] == before


def _copy_of(root):
    """A stand-in for _write_dataset that copies the fixture instead of generating again."""
    return lambda tmp: shutil.copytree(root, tmp, dirs_exist_ok=True)


def test_default_root_is_in_the_cache_and_an_empty_dir_is_filled(root, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "_write_dataset", _copy_of(root))
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path))
    expected = tmp_path / "datasets" / f"textures-v{T.GENERATOR_VERSION}"
    expected.mkdir(parents=True)  # as cache_dir(...) would leave it
    assert T.ensure_textures() == expected
    assert (expected / T.MANIFEST).is_file()
    assert [p.name for p in expected.parent.iterdir()] == [expected.name]


@pytest.mark.slow
def test_killed_generation_leaves_nothing(tmp_path, monkeypatch):
    def dies(tmp):
        (tmp / "brick").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_write_dataset", dies)
    with pytest.raises(KeyboardInterrupt):
        T.ensure_textures(tmp_path / "textures")
    assert list(tmp_path.iterdir()) == []


def test_losing_the_race_uses_the_winners_copy(root, tmp_path, monkeypatch):
    target = tmp_path / "textures"
    ours = _copy_of(root)

    def slow(tmp):
        ours(tmp)
        shutil.copytree(root, target)  # another process finished first
        (target / "winner").write_text("x")

    monkeypatch.setattr(T, "_write_dataset", slow)
    assert T.ensure_textures(target) == target
    assert (target / "winner").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["textures"]


def test_partial_or_foreign_directory_is_refused(tmp_path):
    target = tmp_path / "textures"
    (target / "brick").mkdir(parents=True)
    with pytest.raises(BenchError, match="delete it"):
        T.ensure_textures(target)


def test_old_version_is_refused(root, tmp_path):
    target = tmp_path / "textures"
    target.mkdir()
    manifest = dict(T.read_manifest(root), generator_version=0)
    (target / T.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BenchError, match="version 0"):
        T.ensure_textures(target)


def test_render_samples(root, tmp_path):
    out = T.render_samples(root, tmp_path / "samples.png")
    assert out.stat().st_size < 300_000
    with Image.open(out) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[0] > 3 * T.SIDE and rgb.shape[1] > 6 * T.SIDE
    red = (rgb[..., 0] == 255) & (rgb[..., 1] == 0) & (rgb[..., 2] == 0)
    assert red.sum() > 100  # mask outlines are drawn
