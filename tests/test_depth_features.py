"""BTF's depth-map features (Raw, HoG) and Depth PatchCore's input, on organised clouds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.errors import BenchError
from bench.methods import get
from bench.methods.depth_features import depth, depth_image_tensor, hog_patches, raw_patches, sift_patches


def _cloud(side: int = 224, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = np.zeros((side, side, 3), np.float32)
    yy, xx = np.mgrid[0:side, 0:side]
    xyz[..., 0], xyz[..., 1] = xx * 1e-3 + 0.01, yy * 1e-3 + 0.01
    xyz[..., 2] = 0.4 + rng.normal(0, 1e-4, (side, side))
    xyz[:16, :16] = 0  # unseen
    return xyz


def test_raw_btf_layout_is_its_raster_reshape_and_blocks_are_8x8():
    c = _cloud()
    z = c[..., 2]
    btf, valid = raw_patches(c)
    assert btf.shape == (28, 28, 64) and np.array_equal(btf, z.reshape(28, 28, 64))
    # BTF's patch (0, 1) is pixels 64..127 of row 0, not the 8 x 8 block right of (0, 0)
    assert np.array_equal(btf[0, 1], z[0, 64:128])
    blocks, bvalid = raw_patches(c, layout="blocks")
    assert np.array_equal(blocks[2, 3], z[16:24, 24:32].reshape(-1))
    assert not bvalid[0, 0] and not bvalid[1, 1] and bvalid[2, 2]


def test_hog_is_eight_orientations_per_8x8_cell_and_sees_a_step():
    c = _cloud()
    h, valid = hog_patches(c)
    assert h.shape == (28, 28, 8) and h.dtype == np.float32
    assert not valid[0, 0] and not valid[1, 1] and valid[5, 5]
    c[100:, :, 2] += 0.05  # a horizontal step in depth: vertical gradients in the cells along row 100
    h2, _ = hog_patches(c)
    changed = np.abs(h2 - h).sum(-1) > 0.1
    assert changed[12].all() and not changed[20].any()


def test_depth_image_is_z_in_metres_on_three_channels():
    c = _cloud()
    x = depth_image_tensor([c, c])
    assert tuple(x.shape) == (2, 3, 224, 224)
    assert np.array_equal(x[1, 2].numpy(), c[..., 2])


def test_images_are_refused_in_one_line():
    with pytest.raises(BenchError, match="organised point cloud.*--dataset mvtec3d"):
        depth(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(BenchError, match="does not split into a 28x28"):
        raw_patches(_cloud(side=100))


@pytest.mark.parametrize("name", ["patchcore_raw", "patchcore_hog", "patchcore_sift", "patchcore_depth"])
def test_depth_methods_fit_and_score_clouds(name):
    reg = get(name)
    cfg = reg.config(**({"weights": "random", "backbone": "resnet18"} if name == "patchcore_depth" else {}))
    m = reg.cls(cfg)
    m.fit([_cloud(seed=s) for s in range(3)])
    bad = _cloud(seed=9)
    bad[150:180, 150:180, 2] += 0.02  # a bump
    s = m.score([_cloud(seed=7), bad])
    assert s.maps.shape == (2, 224, 224) and s.image_scores[1] > s.image_scores[0]


def test_dense_sift_equals_btfs_kornia_descriptor():
    import torch

    from bench.methods.depth_features import dense_sift

    ref = np.load(Path(__file__).parent / "data" / "dense_sift_kornia_reference.npz")
    got = dense_sift(torch.from_numpy(ref["image"])).numpy()
    assert got.shape == ref["sift"].shape == (1, 128, 10, 12)
    assert np.abs(got - ref["sift"]).max() < 1e-6


def test_sift_patches_are_128_d_pooled_to_28x28():
    s, valid = sift_patches(_cloud())
    assert s.shape == (28, 28, 128) and not valid[0, 0] and valid[10, 10]
