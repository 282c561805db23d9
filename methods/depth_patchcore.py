"""PatchCore on BTF's depth-map features (TTAD Table 2's Depth PatchCore, Raw, HoG and SIFT rows).

``patchcore_raw`` / ``patchcore_hog`` / ``patchcore_sift`` pool the depth map to 28 x 28 patches as BTF does
(``depth_features``); ``patchcore_depth`` runs PatchCore's CNN (WRN-50 in the paper) on the z map
repeated to 3 channels, fed in metres as BTF feeds it (no ImageNet normalisation). Harness reading:
BTF's depth CNN pools layers 2-3 with its own 3 x 3 average and resize; here PatchCore's
aggregation (3 x 3 neighbourhoods pooled to 1024 dims) is kept, one PatchCore for every row. BTF's
scoring (unsquared L2, its re-weighting with 3 neighbours) is not copied either: every row scores
as the harness's PatchCore does, so the rows differ in their features only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .base import bounded
from .depth_features import RAW_LAYOUTS, depth_image_tensor, hog_patches, raw_patches, sift_patches
from .geometry import Geometry
from .patchcore import PatchCore, PatchCoreConfig
from .point_features import check_cloud
from .point_patchcore import PointPatchCore, PointPatchCoreConfig


@dataclass(frozen=True)
class RawPatchCoreConfig(PointPatchCoreConfig):
    raw_layout: str = bounded("btf", choices=RAW_LAYOUTS)  # btf: its raster-order reshape; blocks: 8 x 8


class RawPatchCore(PointPatchCore):
    Config = RawPatchCoreConfig

    def point_patches(self, cloud: np.ndarray) -> np.ndarray:
        return raw_patches(cloud, grid=self.config.grid, layout=self.config.raw_layout)[0]


@dataclass(frozen=True)
class HoGPatchCoreConfig(PointPatchCoreConfig):
    orientations: int = bounded(8, ge=1)  # BTF: 8 orientations, 8 x 8 cells, 1 x 1 blocks


class HoGPatchCore(PointPatchCore):
    Config = HoGPatchCoreConfig

    def point_patches(self, cloud: np.ndarray) -> np.ndarray:
        return hog_patches(cloud, grid=self.config.grid, orientations=self.config.orientations)[0]


class SIFTPatchCore(PointPatchCore):
    Config = PointPatchCoreConfig

    def point_patches(self, cloud: np.ndarray) -> np.ndarray:
        return sift_patches(cloud, grid=self.config.grid)[0]


@dataclass(frozen=True)
class DepthPatchCoreConfig(PatchCoreConfig):
    resize: int = bounded(224, ge=1)
    image_size: int = bounded(224, ge=1)  # the served cloud's side; no crop

    def geometry(self) -> Geometry:
        return Geometry(resize=self.image_size, square=True)


class DepthPatchCore(PatchCore):
    Config = DepthPatchCoreConfig

    def __init__(self, config: DepthPatchCoreConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.norm = None  # BTF feeds the z map in metres

    def feature_batches(self, images: Sequence[np.ndarray]):
        bs = self.config.batch_size
        for i in range(0, len(images), bs):
            x = depth_image_tensor([check_cloud(images[j], "Depth PatchCore", self.config.image_size)
                                    for j in range(i, min(i + bs, len(images)))])
            with torch.no_grad():
                yield self.embedder(x.to(self.device)).cpu()
