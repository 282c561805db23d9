"""The MVTec AD layout loader and its errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.datasets.mvtec import load_category
from bench.errors import BenchError


def test_loads_layout_labels_masks_and_grayscale_as_rgb(tiny_root):
    cat = load_category(tiny_root, "widget")
    assert len(cat.train) == 8 and len(cat.test) == 8
    assert list(cat.test.labels) == [0] * 4 + [1] * 4
    img = cat.train[0]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 2]).all()  # grayscale file -> three equal channels
    assert not cat.test.mask(0).any() and cat.test.mask(5).sum() == 14 * 14
    assert cat.test.images.ids[5] == "test/spot/001.png"


def test_defect_without_mask(tiny_root):
    (tiny_root / "widget/ground_truth/spot/002_mask.png").unlink()
    with pytest.raises(BenchError, match=r"002.png: defect image without a mask \(expected .*002_mask.png\)"):
        load_category(tiny_root, "widget")


def test_missing_category_lists_what_is_there(tiny_root):
    with pytest.raises(BenchError, match="categories found there: widget"):
        load_category(tiny_root, "gadget")


def test_mask_of_wrong_size(tiny_root):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tiny_root / "widget/ground_truth/spot/000_mask.png")
    cat = load_category(tiny_root, "widget")
    with pytest.raises(BenchError, match="mask is 10x10 but its image is 64x64"):
        cat.test.mask(4)
