"""BTF's depth-map baselines (Horwitz & Hoshen, "Back to the Feature"; github.com/eliahuhorwitz/3D-ADS).

BTF's depth map is the organised cloud's z channel at 224 x 224 (missing points 0), repeated to
3 channels where a CNN takes it, fed as metres: no ImageNet normalisation
(``data/mvtec3d.py``, ``feature_extractors/*_features.py``). On it:

- ``raw`` (``raw_features.py``): the z values themselves, ``z.reshape(28, 28, -1)``: 64 values a
  patch. That reshape runs in raster order, so "patch" (a, b) holds 64 consecutive pixels of the
  8-row band a, not an 8 x 8 block; image scores are BTF's, but its maps are scrambled within each
  band (pixel metrics of this row mean little). ``raw_layout="blocks"`` takes 8 x 8 blocks instead.
- ``hog`` (``hog_features.py``): scikit-image HoG of z, 8 orientations, 8 x 8 pixels per cell,
  1 x 1 cells per block (L2-Hys): 8 values a patch on a 28 x 28 grid.
- Depth PatchCore (``depth_inet_features.py``): a CNN on the 3-channel z image;
  ``depth_image_tensor`` builds its input.

BTF's SIFT row needs its dense SIFT descriptor (``utils/DenseSIFTDescriptor.py``); not here.
"""
from __future__ import annotations

import numpy as np

from .errors import BenchError

RAW_LAYOUTS = ("btf", "blocks")


def depth(xyz: np.ndarray) -> np.ndarray:
    """(H, W) float32 z, 0 where the sensor saw nothing (BTF's ``organized_pc_to_depth_map``)."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 3 or xyz.shape[2] != 3 or xyz.dtype.kind != "f":
        raise BenchError(f"a depth map needs an organised point cloud, float (H, W, 3), got {xyz.dtype} {xyz.shape}; "
                         "use a point-cloud dataset (--dataset mvtec3d)")
    return np.ascontiguousarray(xyz[..., 2], dtype=np.float32)


def _check_grid(z: np.ndarray, grid: int) -> int:
    h, w = z.shape
    if h != w or h % grid:
        raise BenchError(f"a {w}x{h} depth map does not split into a {grid}x{grid} patch grid; serve square clouds "
                         f"whose side is a multiple of {grid} (mvtec3d's default 224)")
    return h // grid


def raw_patches(xyz: np.ndarray, grid: int = 28, layout: str = "btf") -> tuple[np.ndarray, np.ndarray]:
    """((grid, grid, side^2 / grid^2) z values, (grid, grid) any-valid) patches of the depth map."""
    if layout not in RAW_LAYOUTS:
        raise BenchError(f"raw_layout={layout!r}: use one of {', '.join(RAW_LAYOUTS)}")
    z = depth(xyz)
    cell = _check_grid(z, grid)
    if layout == "btf":
        patches = z.reshape(grid, grid, -1)  # raster order, as BTF
    else:
        patches = z.reshape(grid, cell, grid, cell).transpose(0, 2, 1, 3).reshape(grid, grid, -1)
    return np.ascontiguousarray(patches), (patches != 0).any(-1)


def hog_patches(xyz: np.ndarray, grid: int = 28, orientations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """((grid, grid, orientations) HoG cells of the depth map, (grid, grid) any-valid)."""
    from skimage.feature import hog

    z = depth(xyz)
    cell = _check_grid(z, grid)
    h = hog(z, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(1, 1),
            visualize=False, feature_vector=False)  # (grid, grid, 1, 1, orientations)
    valid = (z.reshape(grid, cell, grid, cell) != 0).any(axis=(1, 3))
    return np.ascontiguousarray(h.reshape(grid, grid, -1), dtype=np.float32), valid


def depth_image_tensor(clouds) -> "torch.Tensor":
    """(B, 3, H, W) float32: each cloud's z repeated to 3 channels, in metres (BTF's CNN input)."""
    import torch

    z = np.stack([depth(c) for c in clouds])
    return torch.from_numpy(np.repeat(z[:, None], 3, axis=1))
