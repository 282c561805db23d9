"""M3DM's point branch as PatchCore, and TTAD on it (TTAD Table 2: MVTec 3D-AD, Point-MAE).

``PointMAEPatchCore``: PatchCore whose embedder is Point-MAE (``point_mae.py``: M3DM's features of
blocks 3/7/11, 1152-d, interpolated to the points and pooled to 56 x 56 patches on a 224 cloud).
Like M3DM, every patch enters the bank, the ones without valid points too (zero vectors). The
bank, greedy coreset, FAISS search, image score (max patch score) and maps (bilinear to 224 +
Gaussian sigma 4, as M3DM's blur) are PatchCore's; M3DM's own re-weighted image score and its
random projection inside the coreset are not used (PatchCore's scoring is the common ground of
the table's rows).

``PointMAEAdaptedPatchCore``: the test-time adaptation loop of ``adaptation.py`` (TTAD when
registered as ``ttad_pointmae``) on the same embedder. A point backbone is a backbone: only the
inputs (clouds instead of images: ``grid_input``/``input_tensor``), the target augmentation
(``xyz_flip_rot``) and, on request, the adapted layers (``adapt_norms``) differ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .adaptation import AdaptConfig, AdaptedPatchCore
from .base import ADAPT, FIT, bounded
from .geometry import Geometry
from .patchcore import PatchCore, PatchCoreConfig
from .point_features import check_cloud
from .point_mae import GROUP_SIZE, M3DM_GRID, NUM_GROUP, POINT_MAE, SHAPENET, PointMAEEmbedder


@dataclass(frozen=True)
class PointMAEPatchCoreConfig(PatchCoreConfig):
    backbone: str = bounded(POINT_MAE, choices=(POINT_MAE,))
    weights: str = SHAPENET  # "shapenet" (Point-MAE's pretraining), "random" (explicit only) or a path
    image_size: int = bounded(224, ge=1)  # the served cloud's side (mvtec3d's resize); maps live there
    grid: int = bounded(M3DM_GRID, ge=1)  # patch grid side (M3DM: 56 on a 224 cloud)
    num_group: int = bounded(NUM_GROUP, ge=1)  # FPS centres per cloud (M3DM: 1024)
    group_size: int = bounded(GROUP_SIZE, ge=1)  # points per group (M3DM: 128)

    def geometry(self) -> Geometry:
        return Geometry(resize=self.image_size, square=True)  # the loader serves clouds at image_size


class PointMAEPatchCore(PatchCore):
    Config = PointMAEPatchCoreConfig

    def make_embedder(self) -> tuple[None, nn.Module]:
        cfg = self.config
        return None, PointMAEEmbedder(cfg.num_group, cfg.group_size, cfg.grid, cfg.weights, seed=self.seed)

    def grid_input(self, item: np.ndarray) -> np.ndarray:
        cloud = check_cloud(item, "Point-MAE PatchCore", self.config.image_size)
        return cloud.astype(np.float32, copy=False)

    def input_tensor(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S) x/y/z


# Which normalisation layers TTAD adapts on Point-MAE. "bn" (default): the two BatchNorm1d of the
# mini-PointNet tokeniser, as the 2-D loop adapts BN only: they sit where a point-level shift
# (noise) enters and keep the source running statistics (bn_mode=source). "bn+ln" adds the
# transformer's 25 LayerNorms (affine only: LN keeps no statistics); the last of them produces
# the very features the loss compares to the bank, so its per-channel scale/shift can pull target
# features onto the bank without re-encoding anything (an easy way to lower the loss, not to
# undo the shift).
ADAPT_NORMS = ("bn", "bn+ln")


@dataclass(frozen=True)
class PointMAEAdaptConfig(PointMAEPatchCoreConfig, AdaptConfig):
    adapt_norms: str = bounded("bn", choices=ADAPT_NORMS, stage=ADAPT)


class PointMAEAdaptedPatchCore(PointMAEPatchCore, AdaptedPatchCore):
    """AdaptedPatchCore (TTAD, TTT++, TTAC, ...) on the Point-MAE embedder."""

    Config = PointMAEAdaptConfig

    @classmethod
    def fit_identity(cls, config: PointMAEAdaptConfig) -> dict[str, Any]:
        ident = super().fit_identity(config)  # AdaptedPatchCore's: PatchCore's fields + source_stats
        stats = dict(ident["source_stats"])
        point = {k: stats.pop(k) for k in PointMAEPatchCoreConfig.fields_at(FIT) if k in stats}
        return {**ident, "fit": "PointMAEPatchCore+source_stats", **point, "source_stats": stats}

    def norm_layers(self) -> list[nn.Module]:
        layers = super().norm_layers()
        if self.config.adapt_norms == "bn+ln":
            layers += [m for m in self.embedder.backbone.modules() if isinstance(m, nn.LayerNorm)]
        return layers
