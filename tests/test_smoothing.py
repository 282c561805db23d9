"""The maps' Gaussian filter: the same bits as scipy's filter map by map, on any thread count."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from bench.methods.smoothing import smooth_maps


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_smoothing_equals_scipy_map_by_map(threads, n):
    maps = np.random.default_rng(n).random((n, 37, 29)).astype(np.float32) * 5
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = smooth_maps(maps, 4.0)
    finally:
        torch.set_num_threads(before)
    expected = np.stack([gaussian_filter(m, sigma=4.0) for m in maps])
    assert out.dtype == np.float32 and out.shape == maps.shape
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, maps)


def test_sigma_zero_leaves_the_maps_alone():
    maps = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    assert np.array_equal(smooth_maps(maps, 0.0), maps)
    assert smooth_maps(maps[:0], 4.0).shape == (0, 8, 8)
