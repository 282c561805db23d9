"""MVTec 3D-AD: the loader and its errors, the literature's preprocessing, point noise, FPFH."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from bench.datasets import mvtec3d
from bench.datasets.base import ImageSet
from bench.datasets.corruptions import corrupt_image, corrupted_images
from bench.datasets.mvtec3d import PREPROCESS, PointSet, load_category, write_fixture
from bench.datasets.point_corruptions import (POINT_GAUSSIAN_NOISE, SIGMAS, corrupt_points, corrupted_points,
                                              refuse_points)
from bench.errors import BenchError
from bench.methods.point_features import FPFH_DIM, fpfh_grid, fpfh_patches, valid_points

NATIVE = {"size": 64, "pad_square": False}  # the fixture's 64 x 64, no padding / upsampling


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mvtec3d"), seed=0)


@pytest.fixture()
def broken_root(tmp_path):
    """A fresh copy to break (the module fixture stays intact)."""
    return write_fixture(tmp_path, seed=0)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_loader_reads_the_fixture(fixture_root):
    cat = load_category(fixture_root, "bagel")
    assert (len(cat.train), len(cat.extra["validation"]), len(cat.test)) == (8, 2, 8)
    assert cat.test.defect_types == ["contamination"] * 2 + ["good"] * 4 + ["hole"] * 2
    assert list(cat.test.labels) == [1, 1, 0, 0, 0, 0, 1, 1]
    assert cat.test.images.ids[0] == "test/contamination/xyz/000.tiff"
    assert cat.extra["preprocess"] == PREPROCESS and cat.extra["modality"] == "points"
    assert isinstance(cat.test.images, PointSet) and isinstance(cat.test.subset(4).images, PointSet)
    # defaults: 64 px padded to 100, resized (nearest) to 224; masks follow the same geometry
    cloud, mask = cat.test.images[0], cat.test.mask(0)
    assert cloud.shape == (224, 224, 3) and cloud.dtype == np.float32
    assert mask.shape == (224, 224) and mask.dtype == bool and mask.any()
    assert valid_points(cloud)[mask].mean() > 0.9  # the defect lies on the kept object
    raw = load_category(fixture_root, "bagel", size=None, pad_square=False, remove_plane=False)
    for i in (0, 1, 6, 7):  # served mask and cloud share geometry: same x/y under the defect as in the files
        gt = np.asarray(Image.open(fixture_root / "bagel" / cat.test.images.ids[i].replace("xyz", "gt")
                                   .replace(".tiff", ".png"))) > 0
        served, native = cat.test.images[i], raw.test.images[i]
        a = served[cat.test.mask(i) & valid_points(served)].mean(axis=0)[:2]
        b = native[gt & valid_points(native)].mean(axis=0)[:2]
        assert np.abs(a - b).max() < 0.0005  # < half a pixel (1.25 mm)
    assert not any(cat.test.mask(i).any() for i in range(2, 6))  # good: all normal
    assert cat.test.images.rgb(0).shape == (64, 64, 3)
    assert any("stand-in" in n for n in cat.notes) and cat.test.source.startswith("stand-in")
    # no preprocessing: exactly the TIFF
    assert np.array_equal(raw.train[3], tifffile.imread(fixture_root / "bagel/train/good/xyz/003.tiff"))
    assert (~valid_points(raw.train[3])).mean() > 0.01  # the fixture has missing points


def test_resize_is_torch_nearest():
    a = np.random.default_rng(0).random((80, 70, 3)).astype(np.float32)
    for size in (224, 28):
        ref = torch.nn.functional.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None], size=(size, size),
                                              mode="nearest")[0].permute(1, 2, 0).numpy()
        assert np.array_equal(mvtec3d.resize_nearest(a, size), ref)
    assert mvtec3d.pad_square(a).shape == (100, 100, 3)


def test_missing_category_folder(fixture_root):
    with pytest.raises(BenchError) as exc:
        load_category(fixture_root, "tire")
    assert "bagel" in _one_line(exc) and str(fixture_root / "tire") in str(exc.value)


def test_rgb_without_its_xyz(broken_root):
    (broken_root / "bagel/test/hole/xyz/001.tiff").unlink()
    with pytest.raises(BenchError) as exc:
        load_category(broken_root, "bagel")
    msg = _one_line(exc)
    assert msg.startswith(str(broken_root / "bagel/test/hole/rgb/001.png")) and "xyz/001.tiff" in msg


def test_defect_without_mask(broken_root):
    (broken_root / "bagel/test/hole/gt/000.png").unlink()
    with pytest.raises(BenchError, match=r"defect sample without a mask") as exc:
        load_category(broken_root, "bagel")
    assert "gt/000.png" in _one_line(exc)


def test_broken_and_wrong_tiffs_name_the_file(broken_root):
    bad = broken_root / "bagel/train/good/xyz/001.tiff"
    bad.write_bytes(b"not a tiff at all")
    wrong = broken_root / "bagel/train/good/xyz/002.tiff"
    tifffile.imwrite(wrong, np.zeros((64, 64), np.uint16))  # a depth image, not x/y/z
    cat = load_category(broken_root, "bagel")
    with pytest.raises(BenchError, match="cannot read this TIFF") as exc:
        cat.train[1]
    assert _one_line(exc).startswith(str(bad))
    with pytest.raises(BenchError, match=r"xyz TIFF is uint16 of shape \(64, 64\), expected float32") as exc:
        cat.train[2]
    assert _one_line(exc).startswith(str(wrong))


def test_mask_of_another_size(broken_root):
    gt = broken_root / "bagel/test/hole/gt/000.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(gt)
    cat = load_category(broken_root, "bagel")
    with pytest.raises(BenchError, match="mask is 12x10 but its point cloud 000.tiff is 64x64") as exc:
        cat.test.mask(6)
    assert _one_line(exc).startswith(str(gt))


def test_plane_removal_zeroes_the_plane_and_keeps_the_object():
    rng = np.random.default_rng(1)
    u = np.linspace(-0.04, 0.04, 64)
    x, y = np.meshgrid(u, u)
    z = 0.5 + 0.1 * x - 0.05 * y + rng.normal(0, 0.0003, x.shape)
    box = (np.abs(x) < 0.015) & (np.abs(y) < 0.015)
    z[box] -= 0.01  # a 10 mm block towards the camera
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
    missing = rng.random(x.shape) < 0.03
    xyz[missing] = 0
    out = mvtec3d.remove_plane(xyz)
    kept = valid_points(out)
    assert not kept[~box].any()  # every plane point is gone
    assert kept[box].sum() == (box & ~missing).sum()  # every object point stays, unchanged
    assert np.array_equal(out[kept], xyz[kept]) and not out[missing].any()
    # same input, same plane (seeded RANSAC)
    assert np.array_equal(mvtec3d.remove_plane(xyz), out)


def test_plane_removal_on_the_fixture(fixture_root):
    cat = load_category(fixture_root, "bagel", **NATIVE)
    raw = load_category(fixture_root, "bagel", **NATIVE, remove_plane=False)
    cloud, before = cat.train[0], raw.train[0]
    assert not valid_points(cloud)[:10].any() and not valid_points(cloud)[-10:].any()  # background gone
    centre = valid_points(before)[24:40, 24:40]
    assert np.array_equal(valid_points(cloud)[24:40, 24:40], centre)  # the object's top is kept


def test_point_noise_is_seeded_and_keeps_missing_points(fixture_root):
    cat = load_category(fixture_root, "bagel", **NATIVE)
    cloud = cat.test.images[0]
    a = corrupt_points(cloud, POINT_GAUSSIAN_NOISE, 5, seed=7)
    assert np.array_equal(a, corrupt_points(cloud, POINT_GAUSSIAN_NOISE, 5, seed=7))
    assert not np.array_equal(a, corrupt_points(cloud, POINT_GAUSSIAN_NOISE, 5, seed=8))
    valid = valid_points(cloud)
    assert not a[~valid].any() and (~valid).any()
    delta = (a.astype(np.float64) - cloud)[valid]
    assert SIGMAS[5] == 1e-6 and 0.5e-6 < delta.std() < 1.5e-6
    assert sorted(SIGMAS) == [1, 2, 3, 4, 5] and all(SIGMAS[s] < SIGMAS[s + 1] for s in range(1, 5))
    # per sample, seeded by (dataset, category, id, corruption, severity, seed) like the image ones
    noisy = corrupted_points(cat.test.images, dataset="mvtec3d", category="bagel", corruption=POINT_GAUSSIAN_NOISE,
                             severity=5, seed=0)
    again = corrupted_points(cat.test.images, dataset="mvtec3d", category="bagel", corruption=POINT_GAUSSIAN_NOISE,
                             severity=5, seed=0)
    other = corrupted_points(cat.test.images, dataset="mvtec3d", category="bagel", corruption=POINT_GAUSSIAN_NOISE,
                             severity=5, seed=1)
    assert isinstance(noisy, PointSet) and noisy.ids == cat.test.images.ids
    assert np.array_equal(noisy[3], again[3]) and not np.array_equal(noisy[3], other[3])
    assert not np.array_equal(noisy[3], cat.test.images[3])


def test_each_family_refuses_the_other_input(fixture_root):
    cat = load_category(fixture_root, "bagel", **NATIVE)
    cloud = cat.test.images[0]
    image = cat.test.images.rgb(0)
    with pytest.raises(BenchError) as exc:
        corrupt_image(cloud, "gaussian_noise", 5, seed=0)
    _one_line(exc)
    with pytest.raises(BenchError):
        corrupted_images(cat.test.images, dataset="mvtec3d", category="bagel", corruption="gaussian_noise",
                         severity=5, seed=0, cache=False)[0]
    for points in (cloud, cat.test.images):
        with pytest.raises(BenchError, match="gaussian_noise is an image corruption and this is a point cloud") as exc:
            refuse_points(points, "gaussian_noise")
        _one_line(exc)
    refuse_points(image, "gaussian_noise")  # an image passes
    with pytest.raises(BenchError, match="corrupts point clouds .* got uint8 .*: an image") as exc:
        corrupt_points(image, POINT_GAUSSIAN_NOISE, 5, seed=0)
    _one_line(exc)
    with pytest.raises(BenchError, match="got a set of images") as exc:
        corrupted_points(ImageSet.from_arrays(["a"], [image]), dataset="d", category="c",
                         corruption=POINT_GAUSSIAN_NOISE, severity=5, seed=0)
    _one_line(exc)


def test_fpfh_grid_is_deterministic_with_zeros_at_missing_points(fixture_root):
    cloud = load_category(fixture_root, "bagel", **NATIVE).test.images[0]
    f = fpfh_grid(cloud)
    assert f.shape == (64, 64, FPFH_DIM) and f.dtype == np.float32
    assert np.array_equal(f, fpfh_grid(cloud))
    valid = valid_points(cloud)
    assert not f[~valid].any() and (np.abs(f[valid]).sum(axis=1) > 0).all()
    patches, patch_valid = fpfh_patches(cloud, grid=16)
    assert patches.shape == (16, 16, FPFH_DIM) and patch_valid.any() and not patch_valid.all()
    assert not patches[~patch_valid].any()


def _patch_features(cat, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bank of valid training patches, test patches (N, P, 33), their validity (N, P))."""
    train = [fpfh_patches(c, grid=grid) for c in cat.train]
    test = [fpfh_patches(c, grid=grid) for c in cat.test.images]
    bank = np.concatenate([p[v] for p, v in train])
    return bank, np.stack([p.reshape(-1, FPFH_DIM) for p, _ in test]), np.stack([v.reshape(-1) for _, v in test])


def _image_scores(bank: np.ndarray, feats: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """kNN: each test patch's distance to its nearest training patch; an image's score is the max
    over its patches that hold valid points."""
    out = []
    for f, v in zip(feats, valid):
        d = np.sqrt(((f[v][:, None, :] - bank[None]) ** 2).sum(-1)).min(axis=1)
        out.append(d.max())
    return np.array(out)


def test_fpfh_knn_separates_defects_and_shuffled_patches_do_not(fixture_root):
    cat = load_category(fixture_root, "bagel", **NATIVE)
    labels = cat.test.labels
    bank, feats, valid = _patch_features(cat, grid=16)
    auroc = roc_auc_score(labels, _image_scores(bank, feats, valid))
    assert auroc > 0.8
    # control: the same patches permuted across the whole test set, so a defect's patches land in
    # random samples; the signal must go (mean over 10 permutations)
    rng = np.random.default_rng(0)
    shuffled = []
    for _ in range(10):
        perm = rng.permutation(feats.shape[0] * feats.shape[1])
        f = feats.reshape(-1, FPFH_DIM)[perm].reshape(feats.shape)
        v = valid.reshape(-1)[perm].reshape(valid.shape)
        shuffled.append(roc_auc_score(labels, _image_scores(bank, f, v)))
    print(f"FPFH kNN image AUROC {auroc:.3f}, shuffled {np.mean(shuffled):.3f} (10 permutations)")
    assert np.mean(shuffled) < auroc - 0.25, (auroc, shuffled)
