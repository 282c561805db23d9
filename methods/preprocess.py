"""Image geometry: how a native-resolution image and its mask reach a method's input grid.

Each method owns one ``Geometry`` (PatchCore: shorter side 256, centre crop 224; RD4AD: squash
to 256x256). Masks take the same geometry with nearest-neighbour resampling, so pixel metrics
are computed on exactly the grid the anomaly maps live on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .backbones import Normalization


@dataclass(frozen=True)
class Geometry:
    resize: int  # target of the resize step (see ``square``)
    crop: int | None = None  # centre crop side after resizing; None = no crop
    square: bool = False  # True: squash to resize x resize; False: shorter side -> resize

    @property
    def out_size(self) -> int:
        return self.crop if self.crop is not None else self.resize

    def _resized_wh(self, w: int, h: int) -> tuple[int, int]:
        if self.square:
            return self.resize, self.resize
        # torchvision's Resize(int) rule: shorter side -> resize, longer side scaled and truncated
        if w <= h:
            return self.resize, int(self.resize * h / w)
        return int(self.resize * w / h), self.resize

    def _crop_box(self, w: int, h: int) -> tuple[int, int, int, int]:
        c = self.out_size
        left = int(round((w - c) / 2.0))
        top = int(round((h - c) / 2.0))
        return left, top, left + c, top + c

    def _apply(self, im: Image.Image, resample: int) -> Image.Image:
        w, h = im.size
        im = im.resize(self._resized_wh(w, h), resample=resample)
        if self.crop is not None:
            im = im.crop(self._crop_box(*im.size))
        return im

    def image(self, img: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (S, S, 3) on the method's grid (bilinear)."""
        return np.asarray(self._apply(Image.fromarray(img), Image.BILINEAR))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """bool (H, W) -> bool (S, S) on the method's grid (nearest)."""
        im = Image.fromarray(mask.astype(np.uint8) * 255)
        return np.asarray(self._apply(im, Image.NEAREST)) > 127


def to_tensor(images: Sequence[np.ndarray], norm: Normalization | None) -> torch.Tensor:
    """Stack uint8 (S, S, 3) images into a float (B, 3, S, S) batch, normalised with ``norm``
    (the backbone's own, ``backbones.normalization``); None: plain [0, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if norm is not None:
        mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        std = torch.tensor(norm.std).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


def batches(
    images: Sequence[np.ndarray], geometry: Geometry, batch_size: int, norm: Normalization | None
) -> Iterator[torch.Tensor]:
    """Yield normalised (B, 3, S, S) batches of ``images`` on ``geometry``'s grid."""
    buf: list[np.ndarray] = []
    for img in images:
        buf.append(geometry.image(img))
        if len(buf) == batch_size:
            yield to_tensor(buf, norm)
            buf = []
    if buf:
        yield to_tensor(buf, norm)
