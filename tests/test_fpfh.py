"""FPFH without Open3D: the numba port equals Open3D's features (a stored reference)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.methods import fpfh_kernels as kernels
from bench.methods.errors import BenchError
from bench.methods.point_features import FPFH_DIM, fpfh_grid

# written by `python benchmarks/fpfh_vs_open3d.py --write-reference` with Open3D 0.20.0
REFERENCE = Path(__file__).parent / "data" / "fpfh_open3d_reference.npz"


def test_the_port_equals_open3d_bit_for_bit_on_the_reference_cloud():
    ref = np.load(REFERENCE)
    cloud, expected = ref["cloud"], ref["fpfh"]
    valid = np.all(cloud != 0, axis=-1)
    assert expected.shape == (*cloud.shape[:2], FPFH_DIM) and 0 < valid.mean() < 1
    got = fpfh_grid(cloud)
    assert np.array_equal(got, expected)
    # the blocks of a valid point's FPFH sum to 100 (+ its own SPFH, 100) per angle
    assert np.allclose(got[valid].reshape(-1, 3, 11).sum(-1), 200, atol=1e-3)


def test_normals_are_the_smallest_eigenvectors_of_the_neighbour_covariance():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3)) * np.array([1.0, 0.5, 0.02])  # a noisy slab: normals ~ +-z
    idx = np.argsort(((pts[:, None] - pts[None]) ** 2).sum(-1), axis=1)[:, :20]
    normals = kernels.normals(pts, idx)
    for i in range(0, 200, 17):
        nb = pts[idx[i]]
        cov = np.cov(nb.T, bias=True)
        w, v = np.linalg.eigh(cov)
        assert abs(abs(normals[i] @ v[:, 0]) - 1) < 1e-6
    assert np.allclose(np.linalg.norm(normals, axis=1), 1)


def test_a_point_with_fewer_than_three_neighbours_gets_open3ds_default_normal():
    pts = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    idx = np.array([[0, 1], [1, 0]])
    assert np.array_equal(kernels.normals(pts, idx), [[0, 0, 1], [0, 0, 1]])  # identity covariance


def test_unknown_backend_is_one_line():
    with pytest.raises(BenchError, match="fpfh backend 'pcl': use one of numba, open3d"):
        fpfh_grid(np.ones((8, 8, 3), np.float32), backend="pcl")
