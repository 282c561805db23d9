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
- ``sift`` (``sift_features.py``, ``utils/DenseSIFTDescriptor.py``, kornia's dense SIFT): 128-d
  RootSIFT at every pixel of z (8 orientations x 4 x 4 spatial bins of 4 px, clipped at 0.2), then
  BTF's 3 x 3 average (stride 1) and an adaptive average to 28 x 28. BTF's copy predates
  kornia's dilated spatial pooling: ours equals kornia 0.9's descriptor with that conv's dilation
  set back to 1 (tests/data/dense_sift_kornia_reference.npz).
- Depth PatchCore (``depth_inet_features.py``): a CNN on the 3-channel z image;
  ``depth_image_tensor`` builds its input.
"""
from __future__ import annotations

import numpy as np

from .errors import BenchError
from .point_features import check_cloud

RAW_LAYOUTS = ("btf", "blocks")


def depth(xyz: np.ndarray) -> np.ndarray:
    """(H, W) float32 z, 0 where the sensor saw nothing (BTF's ``organized_pc_to_depth_map``)."""
    return np.ascontiguousarray(check_cloud(xyz, "a depth map")[..., 2], dtype=np.float32)


def _check_grid(z: np.ndarray, grid: int) -> int:
    h, w = z.shape
    if h != w or h % grid:
        raise BenchError(f"a {w}x{h} depth map does not split into a {grid}x{grid} patch grid; serve square clouds "
                         f"whose side is a multiple of {grid} (mvtec3d's default 224)")
    return h // grid


def cell_valid(z: np.ndarray, grid: int) -> np.ndarray:
    """(grid, grid) bool: the cells of the depth map holding at least one seen point."""
    cell = _check_grid(z, grid)
    return (z.reshape(grid, cell, grid, cell) != 0).any(axis=(1, 3))


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
    return np.ascontiguousarray(h.reshape(grid, grid, -1), dtype=np.float32), cell_valid(z, grid)


def depth_image_tensor(clouds) -> "torch.Tensor":
    """(B, 3, H, W) float32: each cloud's z repeated to 3 channels, in metres (BTF's CNN input)."""
    import torch

    z = np.stack([depth(c) for c in clouds])
    return torch.from_numpy(np.repeat(z[:, None], 3, axis=1))


def dense_sift(z: "torch.Tensor", angles: int = 8, bins: int = 4, bin_size: int = 4, clip: float = 0.2,
                eps: float = 1e-10) -> "torch.Tensor":
    """(B, 1, H, W) -> (B, angles * bins^2, H, W) dense RootSIFT, kornia's DenseSIFTDescriptor
    arithmetic (as BTF ran it: stride 1, padding 1)."""
    import math

    import torch
    import torch.nn.functional as F

    # central differences with replicated borders (kornia spatial_gradient, mode "diff")
    p = F.pad(z, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5
    mag = torch.sqrt(gx * gx + gy * gy + eps)
    o = angles * (torch.atan2(gy, gx + eps) + 2.0 * math.pi) / (2.0 * math.pi)
    b0 = torch.floor(o)
    w1 = o - b0
    b0 = b0 % angles
    b1 = (b0 + 1) % angles
    half = bin_size / 2.0  # triangular spatial weights of a bin
    tri = half - (torch.arange(bin_size, dtype=z.dtype) + 0.5 - half).abs()
    kernel = (torch.outer(tri, tri) / half ** 2)[None, None]
    per_angle = [F.conv2d((b0 == a).to(z.dtype) * (1 - w1) * mag + (b1 == a).to(z.dtype) * w1 * mag, kernel,
                          padding=bin_size // 2) for a in range(angles)]
    pooled = torch.cat(per_angle, dim=1)  # (B, angles, H + 1, W + 1)
    b, _, h, w = z.shape
    desc = F.unfold(pooled, kernel_size=bins, padding=1).reshape(b, angles * bins * bins, h, w)
    desc = F.normalize(F.normalize(desc, dim=1).clamp(0, clip), dim=1)
    return torch.sqrt(F.normalize(desc, p=1, dim=1) + eps)


def sift_patches(xyz: np.ndarray, grid: int = 28, smooth: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """((grid, grid, 128) dense SIFT of the depth map pooled as BTF, (grid, grid) any-valid)."""
    import torch
    import torch.nn.functional as F

    z = depth(xyz)
    _check_grid(z, grid)
    with torch.no_grad():
        d = dense_sift(torch.from_numpy(z)[None, None])
        d = F.adaptive_avg_pool2d(F.avg_pool2d(d, smooth, stride=1), grid)[0]
    return np.ascontiguousarray(d.permute(1, 2, 0).numpy(), dtype=np.float32), cell_valid(z, grid)
