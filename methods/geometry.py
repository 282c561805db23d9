"""The evaluation geometry: how a native-resolution image and its mask reach a method's grid.

Part of the Method contract: each config declares one ``Geometry`` (PatchCore: shorter side
256, centre crop 224; RD4AD: squash to 256x256). Masks take the same geometry with
nearest-neighbour resampling, so pixel metrics are computed on exactly the grid the anomaly
maps live on, and the harness caches one mask stack per (category, geometry). No torch here:
registration and ``bench list`` import this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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

    def _apply(self, im, resample: int):
        w, h = im.size
        im = im.resize(self._resized_wh(w, h), resample=resample)
        if self.crop is not None:
            im = im.crop(self._crop_box(*im.size))
        return im

    def image(self, img: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (S, S, 3) on the method's grid (bilinear)."""
        import numpy as np
        from PIL import Image

        if np.asarray(img).dtype.kind == "f":  # an organised point cloud (x/y/z), not a picture
            from .errors import BenchError

            raise BenchError("this method takes images and the dataset serves point clouds (float x/y/z); "
                             "use a point-cloud method (patchcore_fpfh) on MVTec 3D-AD")

        return np.asarray(self._apply(Image.fromarray(img), Image.BILINEAR))

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """bool (H, W) -> bool (S, S) on the method's grid (nearest)."""
        import numpy as np
        from PIL import Image

        im = Image.fromarray(mask.astype(np.uint8) * 255)
        return np.asarray(self._apply(im, Image.NEAREST)) > 127
