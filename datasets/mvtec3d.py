"""MVTec 3D-AD (Bergmann et al., 2021) as released: organised point clouds with colour and masks.

Layout (``--root`` holds the 10 category folders)::

    <root>/<category>/{train,validation,test}/<type>/rgb/000.png
    <root>/<category>/{train,validation,test}/<type>/xyz/000.tiff
    <root>/<category>/{train,validation,test}/<type>/gt/000.png

train and validation hold only ``good``; test holds ``good`` and the defect types (bagel:
combined, contamination, crack, hole). ``xyz/*.tiff`` is float32 (H, W, 3), x/y/z in metres,
(0, 0, 0) where the sensor saw nothing; ``gt/*.png`` is the defect mask (0 / 255) at the same
size; ``rgb/*.png`` is the colour image. Masks of ``good`` samples are not read (all normal).

A sample is served as its preprocessed organised cloud (``PointSet``), as in the 3D AD
literature. BTF (github.com/eliahuhorwitz/3D-ADS) and M3DM (github.com/nomewang/M3DM) share the
same steps, ``utils/preprocessing.py`` run once over the dataset and ``resize_organized_pc`` in
``utils/mvtec3d_util.py`` at load time; the defaults in ``PREPROCESS`` are theirs:

1. background plane removal: a plane is fitted by RANSAC to the valid points of a 10-px strip
   along the four borders (the object sits in the middle), and every point within 5 mm of it is
   set to (0, 0, 0);
2. zero-padding to a square whose side is the larger side rounded up to a multiple of 100
   (masks padded alike), so the resize keeps the aspect ratio;
3. nearest-neighbour resize to 224 x 224 (torch ``interpolate(mode="nearest")``: output index
   i reads input index floor(i * in / out)), so no point is invented; masks are resized alike.

Missing points stay zero throughout; features and scores leave them out (see
``methods.point_features``). Not applied: the literature's DBSCAN cleaning that keeps the
largest cluster (``connected_components_cleaning``, eps 0.006, min_points 30). The options a
category was loaded with are in ``category.extra["preprocess"]``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..methods.errors import BenchError
from ..methods.point_features import valid_points
from .base import (Category, ImageSet, TestSplit, entries, image_size, read_mask, read_rgb, require_root,
                   split_notes, standin, standin_notes)

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")
SOURCE = "MVTec 3D-AD is downloaded by hand from https://www.mvtec.com/company/research/datasets/mvtec-3d-ad"
NORMAL = "good"
SPLITS = ("train", "validation", "test")

# The literature's preprocessing (3D-ADS / M3DM utils/preprocessing.py, utils/mvtec3d_util.py).
PREPROCESS: dict[str, object] = {
    "remove_plane": True,
    "plane_border": 10,          # get_edges_of_pc: rows/columns 0:10 and -10: of the organised cloud
    "ransac_threshold": 0.004,   # get_plane_eq: segment_plane(distance_threshold=0.004, ...)
    "ransac_n": 50,              # ... ransac_n=50 points per hypothesis
    "ransac_iterations": 1000,   # ... num_iterations=1000
    "ransac_seed": 0,            # ours: a seeded numpy RANSAC (Open3D's draws are not seeded there)
    "plane_distance": 0.005,     # remove_plane(distance_threshold=0.005), in metres
    "pad_square": True,          # pad_cropped_pc: to max(roundup_100(H), roundup_100(W)), centred
    "size": 224,                 # resize_organized_pc(target_height=224, target_width=224), nearest
    "missing": "any coordinate == 0",  # np.all(pc != 0, axis=1) marks the valid points
    "largest_component": False,  # connected_components_cleaning (DBSCAN): not implemented here
}


def _tifffile():
    try:
        import tifffile
    except ImportError as exc:
        raise BenchError(f"reading MVTec 3D-AD's xyz TIFFs needs tifffile ({exc}); "
                         "install it with `pip install tifffile`") from None
    return tifffile


MAX_DEPTH = 10.0  # metres: a larger median |z| is a cloud in millimetres (MVTec 3D-AD's sit at about 0.5 m)


def read_xyz(path: Path) -> np.ndarray:
    """One organised cloud as float32 (H, W, 3); non-finite values count as missing (zeros).

    A cloud without valid points, or one in millimetres (median |z| over ``MAX_DEPTH``; the plane
    removal's 5 mm would then be 5 um and remove nothing), is one line naming the file."""
    tifffile = _tifffile()
    try:
        xyz = tifffile.imread(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure: one line naming the file
        raise BenchError(f"{path}: cannot read this TIFF ({type(exc).__name__}: {exc}); replace the file") from None
    if xyz.ndim != 3 or xyz.shape[2] != 3 or xyz.dtype not in (np.float32, np.float64):
        raise BenchError(f"{path}: xyz TIFF is {xyz.dtype} of shape {xyz.shape}, expected float32 (H, W, 3) "
                         "x/y/z in metres (MVTec 3D-AD's xyz/*.tiff); replace the file")
    xyz = xyz.astype(np.float32, copy=False)
    bad = ~np.isfinite(xyz).all(axis=2)
    if bad.any():
        xyz = xyz.copy()
        xyz[bad] = 0
    valid = valid_points(xyz)
    if not valid.any():
        raise BenchError(f"{path}: no valid points (every point is NaN or has a zero coordinate): the file is "
                         "damaged; extract it from the MVTec 3D-AD archive again")
    depth = float(np.median(np.abs(xyz[..., 2][valid])))
    if depth > MAX_DEPTH:
        raise BenchError(f"{path}: median depth {depth:.4g}: looks like millimetres; MVTec 3D-AD stores metres: "
                         "divide the coordinates by 1000 (or extract the file from the archive again)")
    return xyz


def xyz_shape(path: Path) -> tuple[int, int]:
    """(H, W) of an xyz TIFF from its header (no pixels read)."""
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
    except Exception as exc:  # noqa: BLE001
        raise BenchError(f"{path}: cannot read this TIFF ({type(exc).__name__}: {exc}); replace the file") from None
    if len(shape) != 3 or shape[2] != 3:
        raise BenchError(f"{path}: xyz TIFF has shape {shape}, expected (H, W, 3) x/y/z in metres "
                         "(MVTec 3D-AD's xyz/*.tiff); replace the file")
    return int(shape[0]), int(shape[1])


# ----------------------------------------------------------------------------- preprocessing


def check_options(options: dict | None = None) -> dict[str, object]:
    """``PREPROCESS`` updated by ``options``; an unknown key or an unsupported value is one line."""
    opts = dict(PREPROCESS)
    for key, value in (options or {}).items():
        if key not in PREPROCESS:
            raise BenchError(f"unknown MVTec 3D-AD preprocessing option '{key}'; known: {', '.join(PREPROCESS)}")
        opts[key] = value
    if opts["largest_component"]:
        raise BenchError("largest_component=True (3D-ADS's DBSCAN cleaning) is not implemented; leave it False")
    if opts["missing"] != PREPROCESS["missing"]:
        raise BenchError(f"missing={opts['missing']!r}: only {PREPROCESS['missing']!r} is supported")
    size = opts["size"]
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise BenchError(f"size={size!r}: the side of the resized cloud must be a positive int (or None: keep)")
    return opts


def border_points(xyz: np.ndarray, border: int) -> np.ndarray:
    """The valid points of the ``border``-px strip along the four sides, (N, 3) float64."""
    strip = np.zeros(xyz.shape[:2], dtype=bool)
    strip[:border], strip[-border:], strip[:, :border], strip[:, -border:] = True, True, True, True
    return xyz[strip & valid_points(xyz)].astype(np.float64)


def _plane_through(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares planes through each (k, n, 3) batch of points: unit normals (k, 3), offsets (k,)."""
    centre = pts.mean(axis=-2)
    d = pts - centre[..., None, :]
    # the eigenvector of the smallest eigenvalue of the 3 x 3 scatter (eigh sorts ascending)
    normal = np.linalg.eigh(np.einsum("...ni,...nj->...ij", d, d))[1][..., :, 0]
    return normal, -(normal * centre).sum(axis=-1)


def fit_plane_ransac(pts: np.ndarray, threshold: float, n: int, iterations: int, seed: int,
                     where: str = "") -> tuple[np.ndarray, float]:
    """RANSAC plane (unit normal, offset) with the most inliers within ``threshold``; each
    hypothesis is the least-squares plane of ``n`` random points, the winner is refitted to its
    inliers. Seeded: the same points give the same plane."""
    if len(pts) < max(3, n):
        raise BenchError(f"{where or 'point cloud'}: only {len(pts)} valid points in the border strip, too few "
                         f"to fit the background plane (RANSAC takes {n}); load it with remove_plane=False")
    rng = np.random.default_rng(seed)
    best, best_count, best_err = None, -1, np.inf
    for start in range(0, iterations, 100):  # 100 hypotheses at a time keeps memory at N x 100
        k = min(100, iterations - start)
        normal, offset = _plane_through(pts[rng.integers(0, len(pts), size=(k, n))])
        dist = np.abs(pts @ normal.T + offset)  # (N, k)
        inside = dist < threshold
        count = inside.sum(axis=0)
        err = np.where(inside, dist, 0).sum(axis=0) / np.maximum(count, 1)
        j = np.lexsort((err, -count))[0]  # most inliers, then the tighter fit
        if count[j] > best_count or (count[j] == best_count and err[j] < best_err):
            best, best_count, best_err = inside[:, j], int(count[j]), float(err[j])
    normal, offset = _plane_through(pts[best][None])
    return normal[0], float(offset[0])


def remove_plane(xyz: np.ndarray, opts: dict | None = None, where: str = "") -> np.ndarray:
    """``xyz`` with every valid point within ``plane_distance`` of the fitted border plane zeroed."""
    opts = check_options(opts)
    normal, offset = fit_plane_ransac(border_points(xyz, int(opts["plane_border"])), float(opts["ransac_threshold"]),
                                      int(opts["ransac_n"]), int(opts["ransac_iterations"]),
                                      int(opts["ransac_seed"]), where)
    dist = np.abs(xyz.astype(np.float64) @ normal + offset)
    out = xyz.copy()
    out[(dist < float(opts["plane_distance"])) & valid_points(xyz)] = 0
    return out


def _roundup_100(x: int) -> int:
    return int(math.ceil(x / 100.0)) * 100


def pad_square(a: np.ndarray) -> np.ndarray:
    """Zero-pad (H, W[, C]) centred to a square of side max(roundup_100(H), roundup_100(W))."""
    h, w = a.shape[:2]
    side = max(_roundup_100(h), _roundup_100(w))
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(top, side - h - top), (left, side - w - left)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="constant")


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    """(H, W[, C]) -> (size, size[, C]); output index i reads input floor(i * in / out), as torch's
    ``interpolate(mode="nearest")`` (integer arithmetic, so no float rounding at exact multiples)."""
    h, w = a.shape[:2]
    rows = (np.arange(size) * h) // size
    cols = (np.arange(size) * w) // size
    return a[rows][:, cols]


def reshape_like_cloud(a: np.ndarray, opts: dict) -> np.ndarray:
    """Padding and resize of the preprocessing applied to a cloud or its mask (same geometry)."""
    if opts["pad_square"]:
        a = pad_square(a)
    if opts["size"] is not None:
        a = resize_nearest(a, int(opts["size"]))
    return a


def served_shape(native: tuple[int, int], opts: dict) -> tuple[int, int]:
    """(H, W) of a preprocessed cloud whose file is ``native``."""
    if opts["size"] is not None:
        return int(opts["size"]), int(opts["size"])
    if opts["pad_square"]:
        side = max(_roundup_100(native[0]), _roundup_100(native[1]))
        return side, side
    return native


def preprocess(xyz: np.ndarray, opts: dict | None = None, where: str = "") -> np.ndarray:
    """A native cloud -> the cloud methods see: plane removed, padded, resized (per ``opts``)."""
    opts = check_options(opts)
    if opts["remove_plane"]:
        xyz = remove_plane(xyz, opts, where)
    return np.ascontiguousarray(reshape_like_cloud(xyz, opts))


# ----------------------------------------------------------------------------- samples


class PointSet(ImageSet):
    """A lazy, ordered set of point samples: items are preprocessed float32 (H, W, 3) clouds.

    ``xyz_paths`` / ``rgb_paths`` are the sample's files (``rgb(i)`` reads the colour image at
    its native size); ids are the xyz paths relative to the category folder and seed the point
    corruptions like image ids seed the image corruptions.
    """

    def __init__(self, ids: Sequence[str], loader: Callable[[int], np.ndarray],
                 xyz_paths: Sequence[Path] = (), rgb_paths: Sequence[Path] = ()) -> None:
        super().__init__(ids, loader)
        self.xyz_paths = list(xyz_paths)
        self.rgb_paths = list(rgb_paths)

    @classmethod
    def from_files(cls, ids: Sequence[str], xyz_paths: Sequence[Path], rgb_paths: Sequence[Path],
                   opts: dict) -> "PointSet":
        xyz_paths = list(xyz_paths)
        return cls(ids, lambda i: preprocess(read_xyz(xyz_paths[i]), opts, str(xyz_paths[i])), xyz_paths, rgb_paths)

    def with_loader(self, loader: Callable[[int], np.ndarray]) -> "PointSet":
        """The same samples and files served by another loader (e.g. a corrupted copy)."""
        return PointSet(self.ids, loader, self.xyz_paths, self.rgb_paths)

    def rgb(self, i: int) -> np.ndarray:
        return read_rgb(self.rgb_paths[i])

    def take(self, indices: Sequence[int]) -> "PointSet":
        idx = [int(i) for i in indices]
        return PointSet([self.ids[j] for j in idx], lambda k: self._loader(idx[k]),
                        [self.xyz_paths[j] for j in idx] if self.xyz_paths else (),
                        [self.rgb_paths[j] for j in idx] if self.rgb_paths else ())

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.take(range(*i.indices(len(self))))
        return super().__getitem__(i)


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in entries(folder) if p.is_file() and p.suffix.lower() == suffix}


def _other(folder: Path, stem: str) -> str:
    """Where a sample's file is missing: the files of that stem with another suffix, if any."""
    found = [p.name for p in entries(folder) if p.stem == stem] if folder.is_dir() else []
    return f"; found {', '.join(found)} there instead" if found else ""


def _samples(type_dir: Path, masks: bool) -> list[tuple[Path, Path, Path | None]]:
    """(rgb, xyz, gt or None) per sample of one ``<split>/<type>/`` folder, in file order."""
    rgb, xyz = _files(type_dir / "rgb", ".png"), _files(type_dir / "xyz", ".tiff")
    for stem, path in rgb.items():
        if stem not in xyz:
            raise BenchError(f"{path}: colour image without its point cloud (expected "
                             f"{type_dir / 'xyz' / (stem + '.tiff')}{_other(type_dir / 'xyz', stem)}); add the xyz "
                             "TIFF or move the image out")
    for stem, path in xyz.items():
        if stem not in rgb:
            raise BenchError(f"{path}: point cloud without its colour image (expected "
                             f"{type_dir / 'rgb' / (stem + '.png')}{_other(type_dir / 'rgb', stem)}); add the rgb "
                             "PNG or move the TIFF out")
    out = []
    for stem in sorted(xyz):
        gt = None
        if masks:
            gt = type_dir / "gt" / (stem + ".png")
            if not gt.is_file():
                raise BenchError(f"{xyz[stem]}: defect sample without a mask (expected {gt}); add the mask "
                                 "or move the sample out of test/")
        out.append((rgb[stem], xyz[stem], gt))
    return out


def check_root(root: Path) -> Path:
    return require_root(root, f"pass --root the folder that holds the MVTec 3D-AD category folders; {SOURCE}")


def _mask_loader(xyz_paths: list[Path], gt_paths: list[Path | None], opts: dict) -> Callable[[int], np.ndarray]:
    """i -> bool mask in the served cloud's geometry (padded and resized like the cloud)."""
    said: set[str] = set()

    def load(i: int) -> np.ndarray:
        native = xyz_shape(xyz_paths[i])
        if gt_paths[i] is None:
            return np.zeros(served_shape(native, opts), dtype=bool)
        h, w = image_size(gt_paths[i])
        if (h, w) != native:
            raise BenchError(f"{gt_paths[i]}: mask is {w}x{h} but its point cloud {xyz_paths[i].name} is "
                             f"{native[1]}x{native[0]}; masks must have their cloud's size")
        return reshape_like_cloud(read_mask(gt_paths[i], native, said=said), opts)

    return load


def load_category(root: Path, category: str, dataset: str = "mvtec3d", **options) -> Category:
    """One MVTec 3D-AD category: train = ``train/good``, test = ``test/*`` (labels, masks),
    ``extra["validation"]`` = ``validation/good``, ``extra["preprocess"]`` = the options used."""
    opts = check_options(options)
    root = check_root(root)
    base = root / category
    if not base.is_dir():
        found = [p.name for p in entries(root) if (p / "train" / NORMAL / "xyz").is_dir()]
        hint = f"categories found there: {', '.join(found)}" if found else "no category folders found there"
        raise BenchError(f"{base}: no such category folder ({hint}); check --root and --categories")
    train_dir, test_dir = base / "train" / NORMAL, base / "test"
    if not (train_dir / "xyz").is_dir() or not test_dir.is_dir():
        raise BenchError(f"{base}: not in the MVTec 3D-AD layout (needs train/good/{{rgb,xyz}}/ and "
                         "test/<type>/{rgb,xyz,gt}/); rearrange the folder or pick the matching --dataset")

    def points(samples: list[tuple[Path, Path, Path | None]]) -> PointSet:
        return PointSet.from_files([str(x.relative_to(base)) for _, x, _ in samples], [x for _, x, _ in samples],
                                   [r for r, _, _ in samples], opts)

    train = _samples(train_dir, masks=False)
    if not train:
        raise BenchError(f"{train_dir}: no training samples; put the normal rgb/*.png and xyz/*.tiff of "
                         f"{category} there")
    validation = _samples(base / "validation" / NORMAL, masks=False)
    test: list[tuple[Path, Path, Path | None]] = []
    types: list[str] = []
    for type_dir in (p for p in entries(test_dir) if p.is_dir()):
        found = _samples(type_dir, masks=type_dir.name != NORMAL)
        test += found
        types += [type_dir.name] * len(found)
    if not test:
        raise BenchError(f"{test_dir}: no test samples; expected test/good/ and test/<defect type>/")
    labels = np.array([t != NORMAL for t in types], dtype=np.int64)
    split = TestSplit(points(test), labels, types, _mask_loader([x for _, x, _ in test], [g for _, _, g in test], opts),
                      has_masks=True, source=standin(root), files=[tuple(f for f in s if f) for s in test])
    return Category(
        dataset=dataset, name=category, train=points(train), test=split, root=root,
        extra={"modality": "points", "preprocess": dict(opts), "validation": points(validation)},
        notes=split_notes(f"{category} ({test_dir})", labels, NORMAL) + standin_notes(root, dataset),
    )


# ----------------------------------------------------------------------------- fixture


def write_fixture(root: Path, seed: int = 0, category: str = "bagel", side: int = 64, n_train: int = 8,
                  n_validation: int = 2, n_good: int = 4, n_bad: int = 4) -> Path:
    """Write a tiny synthetic category in the released format (for tests); returns ``root``.

    Each cloud is a tilted background plane at ~0.5 m with a half-ellipsoid object (~4.4 cm wide,
    ~14 mm high) on it, 0.2 mm depth noise and ~2 % missing points (zeros). Defects alternate
    between ``hole`` (a 4 mm dent) and ``contamination`` (a 4 mm protrusion), ~6 mm in radius,
    with their gt masks. Deterministic in ``seed``. A STANDIN.md marks the folder as synthetic.
    """
    tifffile = _tifffile()
    root = Path(root)
    rng = np.random.default_rng(seed)
    pitch = 0.08 / side  # 8 cm field of view
    u = (np.arange(side) - (side - 1) / 2) * pitch
    x, y = np.meshgrid(u, u)

    def sample(defect: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        plane = 0.5 + rng.uniform(-0.01, 0.01) + rng.uniform(-0.15, 0.15) * x + rng.uniform(-0.15, 0.15) * y
        cx, cy = rng.uniform(-0.003, 0.003, size=2)
        radius, height = 0.022 + rng.uniform(-0.001, 0.001), 0.014 + rng.uniform(-0.0005, 0.0005)
        r2 = ((x - cx) ** 2 + (y - cy) ** 2) / radius ** 2
        bump = height * np.sqrt(np.clip(1 - r2, 0, None))
        mask = np.zeros((side, side), dtype=bool)
        if defect is not None:
            ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.45 * radius)
            dx, dy, rd = cx + dist * np.cos(ang), cy + dist * np.sin(ang), 0.006
            cap = np.clip(1 - ((x - dx) ** 2 + (y - dy) ** 2) / rd ** 2, 0, None)
            bump = bump + (-0.004 if defect == "hole" else 0.004) * cap
            mask = cap > 0.1
        z = plane - bump + rng.normal(0, 0.0002, size=x.shape)  # the object is nearer the camera
        xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
        xyz[rng.random((side, side)) < 0.02] = 0  # missing points
        shade = np.clip(90 + 8000 * bump + rng.normal(0, 4, size=x.shape), 0, 255)
        rgb = np.stack([shade * 1.2, shade * 0.9, shade * 0.6], axis=-1).clip(0, 255).astype(np.uint8)
        return xyz, rgb, (mask * 255).astype(np.uint8)

    def write(folder: Path, i: int, defect: str | None) -> None:
        xyz, rgb, gt = sample(defect)
        for sub in ("rgb", "xyz", "gt"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "xyz" / f"{i:03d}.tiff", xyz, photometric="rgb")  # read back as (H, W, 3)
        Image.fromarray(rgb).save(folder / "rgb" / f"{i:03d}.png")
        Image.fromarray(gt).save(folder / "gt" / f"{i:03d}.png")  # the release has gt/ for good too

    base = root / category
    for i in range(n_train):
        write(base / "train" / NORMAL, i, None)
    for i in range(n_validation):
        write(base / "validation" / NORMAL, i, None)
    for i in range(n_good):
        write(base / "test" / NORMAL, i, None)
    for i in range(n_bad):
        defect = ("hole", "contamination")[i % 2]
        write(base / "test" / defect, i // 2, defect)
    (root / "STANDIN.md").write_text(
        f"Synthetic MVTec 3D-AD fixture (datasets.mvtec3d.write_fixture, seed {seed}): planes and bumps, "
        "not MVTec 3D-AD.\n", encoding="utf-8")
    return root


def depth_image(cloud: np.ndarray) -> np.ndarray:
    """An organised cloud as a picture for the plots: z of the valid points scaled to 0..255 (near = bright),
    missing points black; uint8 (H, W, 3)."""
    z = np.asarray(cloud, dtype=np.float64)[..., 2]
    valid = np.all(np.asarray(cloud) != 0, axis=-1)
    out = np.zeros(z.shape, dtype=np.uint8)
    if valid.any():
        lo, hi = z[valid].min(), z[valid].max()
        out[valid] = np.round(255 * (hi - z[valid]) / max(hi - lo, 1e-12)).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)
