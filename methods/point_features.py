"""FPFH point features on an organised point cloud, pooled to a patch grid (BTF's "FPFH" backbone).

Horwitz & Hoshen, "Back to the Feature" (official code github.com/eliahuhorwitz/3D-ADS,
``feature_extractors/fpfh_features.py`` and ``feature_extractors/features.py``):

- FPFH (33 bins) is computed by Open3D (BTF; here by default our numba port of its arithmetic,
  ``methods/fpfh_kernels.py``, equal to Open3D 0.20 bit for bit on the clouds we compared, so
  Open3D and its system libraries are no dependency) on the valid points only (a point is missing when one of
  its coordinates is exactly 0, ``np.all(pc != 0, axis=1)``), after normals from Open3D's
  ``estimate_normals``; missing points get all-zero features in the (H, W, 33) grid.
- Search parameters: ``voxel_size=0.05`` (no downsampling: it only scales the radii), normals
  within ``2 * voxel_size`` = 0.1 m and at most 30 neighbours, FPFH within ``5 * voxel_size``
  = 0.25 m and at most 100 neighbours. On MVTec 3D-AD clouds (a few cm across) the radii hold
  the whole object, so the neighbour caps decide: in effect a 30-NN and a 100-NN search.
- Pooling: a 3 x 3 average (stride 1), then an adaptive average to 28 x 28 for a 224 cloud,
  each patch a 33-d vector for PatchCore. BTF averages the zero features of missing points in
  (``missing="zero"``); ``missing="exclude"`` averages over valid points only. Either way a
  patch with no valid point is reported in ``patch_valid`` so scores can leave it out.

``backend="open3d"`` runs Open3D itself (``pip install open3d``), imported on first use;
``benchmarks/fpfh_vs_open3d.py`` compares the two backends and times them.
"""
from __future__ import annotations

import numpy as np

from .errors import BenchError

FPFH_DIM = 33
VOXEL_SIZE = 0.05  # 3D-ADS get_fpfh_features(voxel_size=0.05)
NORMAL_RADIUS_FACTOR, NORMAL_MAX_NN = 2, 30  # radius_normal = voxel_size * 2, max_nn=30
FEATURE_RADIUS_FACTOR, FEATURE_MAX_NN = 5, 100  # radius_feature = voxel_size * 5, max_nn=100
PATCH_GRID = 28  # features.py: AdaptiveAvgPool2d((28, 28)) on a 224 cloud (M3DM uses 56 for PointMAE)
SMOOTH = 3  # features.py: AvgPool2d(3, stride=1) before the adaptive pooling
MISSING_MODES = ("zero", "exclude")
FPFH_BACKENDS = ("numba", "open3d")


def valid_points(xyz: np.ndarray) -> np.ndarray:
    """(H, W) bool: the points the sensor saw. Missing points are stored as zeros; like 3D-ADS and
    M3DM, a point with any coordinate exactly 0 counts as missing."""
    return np.all(np.asarray(xyz) != 0, axis=-1)


def check_cloud(xyz: np.ndarray, who: str = "FPFH", size: int | None = None) -> np.ndarray:
    """``xyz`` as an organised cloud, float (H, W, 3), ``size`` x ``size`` when given; else one line."""
    xyz = np.asarray(xyz)
    if xyz.ndim != 3 or xyz.shape[2] != 3 or xyz.dtype.kind != "f":
        raise BenchError(f"{who} needs organised point clouds, float (H, W, 3) x/y/z, got {xyz.dtype} "
                         f"{xyz.shape}: use a point-cloud dataset (--dataset mvtec3d), not images")
    if size is not None and xyz.shape[:2] != (size, size):
        raise BenchError(f"a {xyz.shape[1]}x{xyz.shape[0]} cloud for image_size={size}: the loader's resize and "
                         "the method's image_size must agree")
    return xyz


def fpfh_grid(xyz: np.ndarray, voxel_size: float = VOXEL_SIZE, backend: str = "numba") -> np.ndarray:
    """Per-point FPFH of an organised cloud: float32 (H, W, 33), zeros at missing points.

    ``backend="numba"`` (default): our port of Open3D's ``EstimateNormals`` (hybrid search, the
    fast 3 x 3 eigen solver and its sign convention, no orientation) and ``ComputeFPFHFeature``,
    with scipy's KD-tree for the neighbours; ``"open3d"`` calls Open3D itself (``pip install
    open3d``; on Linux it needs the system's libusb-1.0). The two agree except where neighbours tie
    at the ``max_nn`` cap (the trees order equal distances differently; see tests/test_fpfh.py).
    Deterministic: no random draws in either.
    """
    xyz = check_cloud(xyz)
    if backend not in FPFH_BACKENDS:
        raise BenchError(f"fpfh backend {backend!r}: use one of {', '.join(FPFH_BACKENDS)}")
    h, w, _ = xyz.shape
    valid = valid_points(xyz)
    out = np.zeros((h, w, FPFH_DIM), dtype=np.float32)
    pts = np.ascontiguousarray(xyz[valid], dtype=np.float64)
    if len(pts) == 0:
        return out
    normal_search = (voxel_size * NORMAL_RADIUS_FACTOR, NORMAL_MAX_NN)
    feature_search = (voxel_size * FEATURE_RADIUS_FACTOR, FEATURE_MAX_NN)
    fpfh = (_fpfh_open3d if backend == "open3d" else _fpfh_numba)(pts, normal_search, feature_search)
    out[valid] = fpfh.astype(np.float32)
    return out


def _hybrid_searches(pts: np.ndarray, *searches: tuple[float, int]) -> list[np.ndarray]:
    """Open3D's SearchHybrid for every point, per (radius, max_nn): at most max_nn neighbours within
    radius, nearest first (the point itself first), as (N, k) indices with -1 past each point's
    count. One KD-tree query serves every search: each is a prefix of the widest one."""
    from scipy.spatial import cKDTree

    n = len(pts)
    k = min(max(nn for _, nn in searches), n)
    dist, idx = cKDTree(pts).query(pts, k=k, distance_upper_bound=max(r for r, _ in searches), workers=1)
    dist, idx = dist.reshape(n, k), idx.reshape(n, k)
    out = []
    for radius, max_nn in searches:
        m = min(max_nn, n)
        out.append(np.where(dist[:, :m] < radius, idx[:, :m], -1).astype(np.int64))
    return out


def _fpfh_numba(pts: np.ndarray, normal_search: tuple[float, int], feature_search: tuple[float, int]) -> np.ndarray:
    from . import fpfh_kernels as kernels

    normal_idx, idx = _hybrid_searches(pts, normal_search, feature_search)
    return kernels.fpfh(pts, kernels.spfh(pts, kernels.normals(pts, normal_idx), idx), idx)


def _fpfh_open3d(pts: np.ndarray, normal_search: tuple[float, int], feature_search: tuple[float, int]) -> np.ndarray:
    try:
        import open3d as o3d
    except ImportError as exc:  # also a missing system library (open3d needs libusb-1.0 on Linux)
        raise BenchError(f"fpfh backend 'open3d' needs Open3D ({exc}); install it with `pip install open3d` "
                         "or use the default backend") from None
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_search[0], max_nn=normal_search[1]))
    fpfh = o3d.pipelines.registration.compute_fpfh_feature(
        pc, o3d.geometry.KDTreeSearchParamHybrid(radius=feature_search[0], max_nn=feature_search[1]))
    return np.asarray(fpfh.data, dtype=np.float64).T


def pool_patches(features: np.ndarray, valid: np.ndarray, grid: int = PATCH_GRID, smooth: int = SMOOTH,
                 missing: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) point features -> ((grid, grid, C) float32 patch features, (grid, grid) bool).

    A ``smooth`` x ``smooth`` average (stride 1), then an adaptive average to ``grid`` x ``grid``
    (torch's bins, as BTF). ``missing="zero"``: missing points enter the averages as zero vectors
    (BTF); ``"exclude"``: each patch averages its valid points only. The bool grid says which
    patches hold at least one valid point (the others are all zero and carry no evidence).
    """
    import torch
    import torch.nn.functional as F

    if missing not in MISSING_MODES:
        raise BenchError(f"missing={missing!r}: use one of {', '.join(MISSING_MODES)}")
    features = np.asarray(features, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    if features.ndim != 3 or valid.shape != features.shape[:2]:
        raise BenchError(f"pool_patches needs (H, W, C) features and an (H, W) validity mask, got "
                         f"{features.shape} and {valid.shape}")
    h, w = valid.shape
    if min(h, w) - smooth + 1 < grid:
        raise BenchError(f"a {w}x{h} cloud is too small for a {grid}x{grid} patch grid after the "
                         f"{smooth}x{smooth} average; use a smaller grid or a larger cloud")

    def pool(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]
        return F.adaptive_avg_pool2d(F.avg_pool2d(t, smooth, stride=1), grid)[0]

    v = valid[..., None].astype(np.float32)
    pooled = pool(features * v)  # features are already zero at missing points; kept explicit
    share = pool(v)[0]  # fraction of valid points behind each patch
    if missing == "exclude":
        pooled = torch.where(share > 0, pooled / share.clamp_min(1e-12), torch.zeros_like(pooled))
    return pooled.permute(1, 2, 0).numpy().astype(np.float32), (share > 0).numpy()


def fpfh_patches(xyz: np.ndarray, grid: int = PATCH_GRID, missing: str = "zero",
                 voxel_size: float = VOXEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """FPFH of a cloud pooled to patches: ``pool_patches(fpfh_grid(xyz), valid_points(xyz))``.

    Channels last; a backbone-style map is ``patches.transpose(2, 0, 1)`` (33, grid, grid).
    """
    xyz = check_cloud(xyz)
    return pool_patches(fpfh_grid(xyz, voxel_size), valid_points(xyz), grid=grid, missing=missing)
