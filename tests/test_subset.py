"""--test-subset: a seeded test subset stratified by defect type, recorded in every row."""
from __future__ import annotations

import numpy as np
import pytest

from bench.datasets import base
from bench.errors import BenchError
from bench.grid import GridSpec


def _split(counts: dict[str, int]) -> base.TestSplit:
    types = [t for t, n in counts.items() for _ in range(n)]
    ids = [f"test/{t}/{i:03d}.png" for i, t in enumerate(types)]
    images = base.ImageSet.from_arrays(ids, [np.full((4, 4, 3), i % 256, np.uint8) for i in range(len(ids))])
    labels = np.array([t != "good" for t in types], dtype=np.int64)
    return base.TestSplit(images, labels, types, lambda i: np.full((4, 4), i % 2 == 1))


def test_subset_is_stratified_seeded_and_keeps_order_and_masks():
    split = _split({"good": 333, "blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103})
    sub = split.subset(100)
    assert len(sub) == 100
    got = {t: sub.defect_types.count(t) for t in set(sub.defect_types)}
    # proportional shares of 100 over 725 images (largest remainders)
    assert got == {"good": 46, "blowhole": 16, "break": 12, "crack": 8, "fray": 4, "uneven": 14}
    assert sub.images.ids == sorted(sub.images.ids, key=split.images.ids.index)  # original order
    again = split.subset(100)
    assert again.images.ids == sub.images.ids  # seeded: every method and seed sees the same subset
    assert split.subset(100, seed=1).images.ids != sub.images.ids
    j = split.images.ids.index(sub.images.ids[7])  # image, label and mask travel together
    assert sub.images[7][0, 0, 0] == j % 256 and sub.labels[7] == split.labels[j]
    assert np.array_equal(sub.mask(7), split.mask(j))
    assert split.subset(0) is split and split.subset(725) is split


def test_subset_keeps_every_type_when_it_can():
    split = _split({"good": 50, "rare": 1, "scratch": 20})
    assert set(split.subset(5).defect_types) == {"good", "rare", "scratch"}
    assert len(split.subset(2)) == 2


def test_a_subset_smaller_than_the_types_keeps_one_normal_and_one_anomalous_image():
    split = _split({"a": 10, "b": 10, "c": 10, "d": 10, "good": 3})  # good has the smallest share
    for n in (2, 3, 4):
        for seed in range(5):
            sub = split.subset(n, seed)
            assert len(sub) == n and 0 < int(sub.labels.sum()) < n, (n, seed)
    with pytest.raises(BenchError, match=r"--test-subset 1: use 0 \(every test image\) or a count of at least 2"):
        GridSpec(methods=["patchcore"], dataset="textures", test_subset=1).cells()


def test_subset_changes_the_cell_id_only_when_set():
    base = dict(methods=["patchcore"], dataset="textures", categories=["brick"], corruptions=["gaussian_noise"])
    full = GridSpec(**base).cells()
    same = GridSpec(**base, test_subset=0).cells()
    sub = GridSpec(**base, test_subset=20).cells()
    assert [c.cell_id for c in full] == [c.cell_id for c in same]
    assert not {c.cell_id for c in full} & {c.cell_id for c in sub}
    assert all(c.test_subset == 20 for c in sub)
