"""PatchCore on point-cloud features: FPFH, as BTF ran it (Horwitz & Hoshen, "Back to the Feature").

A point backbone is a backbone: this is ``PatchCore`` with ``feature_batches`` computing FPFH
(33-d, ``point_features.fpfh_patches``) of each organised cloud pooled to a 28 x 28 patch grid
instead of CNN features; the memory bank, greedy coreset, FAISS search, image score (max patch
score) and maps (bilinear to the cloud's side + Gaussian sigma 4) are PatchCore's. The clouds come
from ``datasets/mvtec3d.py`` already preprocessed (plane removed, padded, resized to 224), and
their masks in the same grid, so the evaluation geometry is the identity on that side.

BTF's choices: every patch enters the bank, the ones without valid points too (zero vectors,
``missing="zero"``); ``missing="exclude"`` averages only valid points inside a patch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .base import Method, bounded
from .geometry import Geometry
from .patchcore import PatchCore, PatchCoreConfig
from .point_features import MISSING_MODES, PATCH_GRID, VOXEL_SIZE, check_cloud, fpfh_patches


@dataclass(frozen=True)
class PointPatchCoreConfig(PatchCoreConfig):
    image_size: int = bounded(224, ge=1)  # the served cloud's side (mvtec3d's resize); maps live there
    grid: int = bounded(PATCH_GRID, ge=1)  # patch grid side (BTF: 28 on a 224 cloud)

    def geometry(self) -> Geometry:
        # the loader serves clouds and masks at image_size already: resize to the same side
        return Geometry(resize=self.image_size, square=True)


@dataclass(frozen=True)
class FPFHPatchCoreConfig(PointPatchCoreConfig):
    missing: str = bounded("zero", choices=MISSING_MODES)
    voxel_size: float = bounded(VOXEL_SIZE, gt=0)


class PointPatchCore(PatchCore):
    """PatchCore on computed per-cloud patch features: subclasses give ``point_patches``."""

    Config = PointPatchCoreConfig
    takes_weights = False  # no network: no backbone, weights or normalisation reach these features

    def __init__(self, config: PointPatchCoreConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        # PatchCore's state without its CNN: the features are computed, not learned
        Method.__init__(self, config, device, seed)
        self.norm = None
        self.embedder = None
        self.bank = self.bank_index = self._nn = None
        self.timings = {}

    def point_patches(self, cloud: np.ndarray) -> np.ndarray:
        """(grid, grid, D) features of one organised cloud."""
        raise NotImplementedError

    def feature_batches(self, images: Sequence[np.ndarray]):
        cfg = self.config
        for cloud in images:
            patches = self.point_patches(check_cloud(cloud, type(self).__name__, cfg.image_size))
            yield torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32).reshape(1, cfg.grid * cfg.grid, -1))

    def grid(self) -> int:
        return self.config.grid


class FPFHPatchCore(PointPatchCore):
    Config = FPFHPatchCoreConfig

    def point_patches(self, cloud: np.ndarray) -> np.ndarray:
        cfg = self.config
        return fpfh_patches(cloud, grid=cfg.grid, missing=cfg.missing, voxel_size=cfg.voxel_size)[0]
