"""Point-cloud corruptions: a corruption family for organised clouds, next to the image ones.

TTAD (Table 2; section 4.1, "Evaluation Protocol") shifts MVTec 3D-AD by adding Gaussian noise
n ~ N(0, [1e-6]^2) to the point clouds; it names neither the unit nor a severity. Here
``point_gaussian_noise`` adds N(0, sigma^2) to each coordinate, in the units of the xyz files
(metres for MVTec 3D-AD), with sigma from ``SIGMAS``: the paper's 1e-6 is severity 5, the
severity the grid runs by default and the 2D corruptions of the same paper use, and severities
1-4 scale it like imagecorruptions' ``gaussian_noise`` scales its sigma (0.08, 0.12, 0.18, 0.26,
0.38). The noise is added to the served (preprocessed) cloud, as TTAD's M3DM-based pipeline
reads clouds that were preprocessed offline, and only to valid points: missing points (zeros)
and removed background stay zero. Values are float32 afterwards, so at ~0.5 m (float32 spacing
~6e-8 m) severity 1 moves a coordinate by a few float32 steps.

Each sample's noise is seeded like an image corruption: ``corruptions.image_seed(dataset,
category, sample id, corruption, severity, seed)``, a local generator, global RNG untouched.
Image corruptions refuse point clouds and point corruptions refuse images, each in one line
(``refuse_points`` is the guard an image-corruption entry point calls).
"""
from __future__ import annotations

import numpy as np

from ..methods.errors import BenchError, UnknownName
from ..methods.point_features import valid_points
from .base import ImageSet
from .corruptions import CLEAN, check_severity, image_seed
from .mvtec3d import PointSet

POINT_GAUSSIAN_NOISE = "point_gaussian_noise"
POINT_CORRUPTIONS = frozenset({POINT_GAUSSIAN_NOISE})
PAPER_SIGMA, PAPER_SEVERITY = 1e-6, 5  # TTAD section 4.1: n ~ N(0, [1e-6]^2)
_LADDER = (0.08, 0.12, 0.18, 0.26, 0.38)  # imagecorruptions gaussian_noise sigmas, severities 1-5
SIGMAS: dict[int, float] = {s: PAPER_SIGMA * c / _LADDER[PAPER_SEVERITY - 1] for s, c in enumerate(_LADDER, 1)}


def is_points(x: object) -> bool:
    """A point sample: a PointSet, or a float (H, W, 3) array (images are uint8)."""
    if isinstance(x, PointSet):
        return True
    a = np.asarray(x) if isinstance(x, np.ndarray) else None
    return a is not None and a.dtype.kind == "f" and a.ndim == 3 and a.shape[2] == 3


def refuse_points(x: object, corruption: str) -> None:
    """Guard for image corruptions: one line when ``x`` is a point cloud or a set of them."""
    if corruption in POINT_CORRUPTIONS or corruption == CLEAN or not is_points(x):
        return
    raise BenchError(f"{corruption} is an image corruption and this is a point cloud (float x/y/z); "
                     f"use a point corruption ({', '.join(sorted(POINT_CORRUPTIONS))}) on point datasets")


def _check_name(corruption: str) -> str:
    name = corruption.strip().lower().replace("-", "_") if isinstance(corruption, str) else corruption
    if name != CLEAN and name not in POINT_CORRUPTIONS:
        raise UnknownName("point corruption", str(corruption), [*sorted(POINT_CORRUPTIONS), CLEAN])
    return name


def corrupt_points(xyz: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt one organised cloud (float (H, W, 3)); deterministic in ``seed``; zeros stay zero."""
    corruption = _check_name(corruption)
    xyz = np.asarray(xyz)
    if not is_points(xyz):
        raise BenchError(f"{corruption} corrupts point clouds (float (H, W, 3) x/y/z), got {xyz.dtype} "
                         f"{xyz.shape}: an image; use an image corruption (e.g. gaussian_noise) on images")
    if corruption == CLEAN:
        return xyz.copy()
    sigma = SIGMAS[check_severity(severity)]
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFF)
    # noise drawn for every point, then kept at valid ones: a point's noise does not depend on
    # which other points are missing (e.g. on whether the background plane was removed)
    noise = rng.normal(0.0, sigma, size=xyz.shape)
    valid = valid_points(xyz)[..., None]
    return np.where(valid, xyz.astype(np.float64) + noise, 0.0).astype(xyz.dtype)


def corrupted_points(points: ImageSet, *, dataset: str, category: str, corruption: str, severity: int,
                     seed: int) -> PointSet:
    """A lazy PointSet with the same ids and files whose items are the corrupted clouds."""
    corruption = _check_name(corruption)
    if not isinstance(points, PointSet):
        raise BenchError(f"{corruption} corrupts point samples (a PointSet, e.g. MVTec 3D-AD), got a set of "
                         "images; use an image corruption (e.g. gaussian_noise) on image datasets")
    if corruption == CLEAN:
        return points
    severity = check_severity(severity)
    ids = list(points.ids)
    return points.with_loader(lambda i: corrupt_points(
        points[i], corruption, severity, image_seed(dataset, category, ids[i], corruption, severity, seed)))
