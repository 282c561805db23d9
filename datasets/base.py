"""What a dataset hands the harness: lazy image sets and labelled test splits.

Images are ``uint8`` RGB arrays of shape (H, W, 3) at their native resolution; grayscale files
come back as three identical channels. Loading is lazy (by path) so a category of 1024 px images
does not sit in memory twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..methods.errors import BenchError


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8; a clear error names a broken file."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise BenchError(f"{path}: not an image (no known image format inside); replace or remove the file") from None
    except (OSError, SyntaxError, ValueError) as exc:  # e.g. "image file is truncated"
        raise BenchError(f"{path}: cannot decode this image ({exc}); replace or remove the file") from None
    return arr


def read_mask(path: Path, shape: tuple[int, int], nonzero: bool = False) -> np.ndarray:
    """Read a ground-truth mask as a boolean (H, W) array that must match its image's size.

    ``nonzero=False`` (MVTec AD convention, 0 / 255 files): a pixel is a defect where its gray
    value is above 127. ``nonzero=True`` (VisA, Real-IAD): any non-zero stored value is a defect,
    read before any palette or colour conversion (VisA's raw masks hold small label values).
    """
    try:
        with Image.open(path) as im:
            im.load()
            if nonzero:
                raw = np.asarray(im)
                arr = raw.any(axis=2) if raw.ndim == 3 else raw != 0
            else:
                arr = np.asarray(im.convert("L")) > 127
    except UnidentifiedImageError:
        raise BenchError(f"{path}: not an image (no known image format inside); replace the mask file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BenchError(f"{path}: cannot decode this mask ({exc}); replace the mask file") from None
    if arr.shape != tuple(shape):
        raise BenchError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image is "
            f"{shape[1]}x{shape[0]}; masks must have their image's size"
        )
    return arr


class ImageSet(Sequence[np.ndarray]):
    """A lazy, ordered set of images with stable ids (the ids seed the corruptions)."""

    def __init__(self, ids: Sequence[str], loader: Callable[[int], np.ndarray]) -> None:
        self.ids = list(ids)
        self._loader = loader

    @classmethod
    def from_paths(cls, ids: Sequence[str], paths: Sequence[Path]) -> "ImageSet":
        paths = list(paths)
        return cls(ids, lambda i: read_rgb(paths[i]))

    @classmethod
    def from_arrays(cls, ids: Sequence[str], arrays: Sequence[np.ndarray]) -> "ImageSet":
        arrays = list(arrays)
        return cls(ids, lambda i: arrays[i])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            idx = range(*i.indices(len(self)))
            return ImageSet([self.ids[j] for j in idx], lambda k, idx=idx: self._loader(idx[k]))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._loader(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._loader(i)

    def take(self, indices: Sequence[int]) -> "ImageSet":
        """The images at ``indices`` (in that order), still lazy."""
        idx = [int(i) for i in indices]
        return ImageSet([self.ids[j] for j in idx], lambda k: self._loader(idx[k]))


@dataclass
class TestSplit:
    """Test images with labels (1 = anomalous) and masks. Labels never reach a method.

    ``has_masks=False`` says the dataset has no pixel ground truth (e.g. CIFAR-10 one-class):
    only image metrics exist, the pixel metrics of its rows are NaN, and ``mask`` refuses.
    """

    images: ImageSet
    labels: np.ndarray  # (N,) int
    defect_types: list[str]
    mask_loader: Callable[[int], np.ndarray] | None  # i -> bool (H, W) at native resolution
    has_masks: bool = True

    def mask(self, i: int) -> np.ndarray:
        if not self.has_masks or self.mask_loader is None:
            raise BenchError("this test split has no pixel ground truth (image labels only); "
                             "check TestSplit.has_masks before asking for masks")
        return self.mask_loader(i)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int, seed: int = 0) -> "TestSplit":
        """A seeded subset of ``n`` test images stratified by defect type (``good`` included).

        Each type gets its share of ``n`` (largest remainders; at least one image per type when
        ``n`` allows), drawn without replacement; the images keep their original order, so
        every method and seed of a grid sees the same subset. ``n >= len(self)``: everything.
        """
        if n <= 0 or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        types = sorted(set(self.defect_types))
        members = {t: [i for i, d in enumerate(self.defect_types) if d == t] for t in types}
        share = {t: n * len(members[t]) / len(self) for t in types}
        take = {t: min(len(members[t]), max(1 if n >= len(types) else 0, int(share[t]))) for t in types}
        for t in sorted(types, key=lambda t: share[t] - int(share[t]), reverse=True):
            if sum(take.values()) >= n:
                break
            if take[t] < len(members[t]):
                take[t] += 1
        while sum(take.values()) > n:  # the one-per-type floor overshot: trim the largest
            t = max(types, key=lambda t: take[t])
            take[t] -= 1
        chosen = sorted(j for t in types for j in rng.choice(members[t], take[t], replace=False).tolist())
        loader = self.mask_loader
        return TestSplit(self.images.take(chosen), self.labels[chosen], [self.defect_types[j] for j in chosen],
                         lambda i: loader(chosen[i]), has_masks=self.has_masks)


@dataclass
class Category:
    """One category of a dataset: normal training images and a labelled test split."""

    dataset: str
    name: str
    train: ImageSet
    test: TestSplit
    root: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def has_masks(self) -> bool:
        """False when the dataset has no pixel ground truth: image metrics only."""
        return self.test.has_masks
