"""The embedded default dataset ``textures``: needs no download.

Three categories (``brick``, ``grass``, ``gravel``) are cut from the 512x512 grayscale texture
photos bundled inside scikit-image. Normal images are random 160x160 crops of the photo shrunk by
``ZOOM``, with a little photometric jitter (flips and turns are a knob, off by default, so that
orientation stays available as a distribution shift); defective images are fresh crops with one
synthetic defect (``scratch``, ``stain``, ``hole``, ``foreign``) whose footprint is the mask.
Everything comes from a numpy Generator seeded per category, so the files are bit-identical
across runs. The result is written once, atomically, in the MVTec AD layout::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/{good,scratch,stain,hole,foreign}/000.png
    <root>/<category>/ground_truth/<type>/000_mask.png
    <root>/MANIFEST.json   (generator version, knobs, sha256 of every file)

The module constants below are the difficulty knobs; changing any of them must bump
``GENERATOR_VERSION`` (the cache directory is named after it).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..methods.errors import BenchError
from .cache import cache_dir

GENERATOR_VERSION = 2  # 2: ZOOM 0.5, no rotations, stronger stains
NAME = "textures"
CATEGORIES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "stain", "hole", "foreign")
MANIFEST = "MANIFEST.json"

SEED = 20250611
SIDE = 160  # crop side in px
N_TRAIN = 48
N_TEST_GOOD = 20
N_PER_DEFECT = 5
# The photo is shrunk by ZOOM before cropping, so a crop covers SIDE / ZOOM px of the original:
# denser coverage of the one photo, and texture elements small next to the defects.
ZOOM = 0.5
# 1: as photographed; 2: + mirror; 4: + 180 degree turns; 8: all flips and 90 degree turns.
# More orientations split the few training crops over more looks and make grass near chance.
ORIENTATIONS = 1

# Normal variation, so test crops are not pixel copies of training patches.
GAIN_JITTER = 0.06  # contrast scaled by 1 +- this
BIAS_JITTER = 6.0  # brightness shifted by +- this many gray levels
NOISE_STD = 2.0  # per-pixel Gaussian sensor noise, gray levels

# Defect strength. Sizes are fractions of SIDE; contrasts are gray levels (0-255).
MASK_ALPHA = 0.5  # a pixel is in the mask where the defect's blend weight reaches this
SCRATCH_LENGTH = (0.15, 0.40)  # chord length
SCRATCH_WIDTH = (1.0, 3.0)  # px
SCRATCH_BEND = 0.25  # max sideways bow of the curve, fraction of its length
SCRATCH_CONTRAST = (25.0, 60.0)  # line level = crop mean +- this (bright or dark)
STAIN_SIZE = (0.08, 0.25)  # diameter
STAIN_CONTRAST = (18.0, 40.0)  # added or subtracted at the stain's centre
STAIN_SOFTNESS = (0.2, 0.4)  # edge ramp half-width, fraction of the radius
HOLE_SIZE = (0.06, 0.16)  # diameter of the long axis
HOLE_DEPTH = (0.35, 0.70)  # fraction of brightness removed inside
HOLE_EDGE = (0.7, 1.5)  # edge ramp half-width, px
FOREIGN_SIZE = (0.10, 0.25)  # diameter
FOREIGN_MATCH = 0.75  # 0: paste the other texture as is; 1: match local mean and std exactly
FOREIGN_EDGE = 0.8  # edge ramp half-width, px
IRREGULARITY = 0.25  # radial wobble of stain and foreign outlines


def _knobs() -> dict:
    names = [
        "SEED", "SIDE", "N_TRAIN", "N_TEST_GOOD", "N_PER_DEFECT", "ZOOM", "ORIENTATIONS",
        "GAIN_JITTER", "BIAS_JITTER",
        "NOISE_STD", "MASK_ALPHA", "SCRATCH_LENGTH", "SCRATCH_WIDTH", "SCRATCH_BEND",
        "SCRATCH_CONTRAST", "STAIN_SIZE", "STAIN_CONTRAST", "STAIN_SOFTNESS", "HOLE_SIZE",
        "HOLE_DEPTH", "HOLE_EDGE", "FOREIGN_SIZE", "FOREIGN_MATCH", "FOREIGN_EDGE",
        "IRREGULARITY",
    ]
    return {n: globals()[n] for n in names}


def load_photos() -> dict[str, np.ndarray]:
    """The three bundled photos as (512, 512) uint8; never downloads."""
    import skimage.data

    photos = {}
    for name in CATEGORIES:
        try:
            arr = np.asarray(getattr(skimage.data, name)())
        except Exception as exc:  # ModuleNotFoundError (pooch) or a missing file
            raise BenchError(
                f"scikit-image's bundled photo '{name}' is unavailable "
                f"({type(exc).__name__}: {exc}); reinstall scikit-image (pip install -U "
                "--force-reinstall scikit-image)"
            ) from None
        if arr.dtype != np.uint8 or arr.ndim != 2:
            raise BenchError(
                f"scikit-image's photo '{name}' is {arr.dtype} {arr.shape}, expected 2-D uint8; "
                "reinstall scikit-image"
            )
        photos[name] = arr
    return photos


@dataclass
class Sample:
    category: str
    defect_type: str  # "good" for normal images
    split: str  # "train" or "test"
    stem: str
    image: np.ndarray  # (SIDE, SIDE) uint8
    mask: np.ndarray | None = None  # (SIDE, SIDE) bool, defects only
    clean: np.ndarray | None = None  # the same crop before the defect, defects only

    @property
    def relpath(self) -> str:
        return f"{self.category}/{self.split}/{self.defect_type}/{self.stem}.png"

    @property
    def mask_relpath(self) -> str:
        return f"{self.category}/ground_truth/{self.defect_type}/{self.stem}_mask.png"


# ---------------------------------------------------------------- crops and shapes


def _orient(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k, flip = int(rng.integers(4)), rng.random() < 0.5  # drawn always, so knobs keep the stream
    if ORIENTATIONS >= 8:
        patch = np.rot90(patch, k)
    elif ORIENTATIONS >= 4:
        patch = np.rot90(patch, 2 * (k % 2))
    if ORIENTATIONS >= 2 and flip:
        patch = patch[:, ::-1]
    return patch


def _scaled(photo: np.ndarray) -> np.ndarray:
    """The photo as float64, resized by ZOOM (Lanczos, so shrinking does not alias)."""
    if ZOOM == 1.0:
        return photo.astype(np.float64)
    side = int(round(photo.shape[0] * ZOOM))
    if side < SIDE:
        raise ValueError(f"ZOOM={ZOOM} leaves a {side} px photo, smaller than a {SIDE} px crop")
    im = Image.fromarray(photo.astype(np.float32))  # mode "F"
    return np.asarray(im.resize((side, side), Image.Resampling.LANCZOS), dtype=np.float64)


def _raw_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y, x = rng.integers(0, np.array(photo.shape) - SIDE + 1)
    return _orient(photo[y:y + SIDE, x:x + SIDE], rng)


def _normal_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A float crop with photometric jitter and sensor noise (not yet rounded)."""
    patch = _raw_crop(photo, rng)
    gain = 1.0 + rng.uniform(-GAIN_JITTER, GAIN_JITTER)
    bias = rng.uniform(-BIAS_JITTER, BIAS_JITTER)
    mean = patch.mean()
    return (patch - mean) * gain + mean + bias + rng.normal(0.0, NOISE_STD, patch.shape)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _ramp(signed_dist: np.ndarray, edge: float) -> np.ndarray:
    """Blend weight: 1 inside, 0 outside, 0.5 on the outline, smooth over +-edge px."""
    t = np.clip(0.5 - signed_dist / (2.0 * max(edge, 0.5)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blob(rng: np.random.Generator, diameter: float, aspect: tuple[float, float],
          irregularity: float, edge: float) -> np.ndarray:
    """Blend weight of an (irregular) ellipse placed wholly inside the crop."""
    rx = diameter / 2.0
    ry = rx * rng.uniform(*aspect)
    angle = rng.uniform(0.0, np.pi)
    amps = rng.uniform(-irregularity, irregularity, 4) / np.arange(2, 6)
    phases = rng.uniform(0.0, 2 * np.pi, 4)
    margin = rx * (1.0 + np.abs(amps).sum()) + edge + 2.0
    cy, cx = rng.uniform(margin, SIDE - margin, 2)

    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    k = np.arange(2, 6)[:, None, None]
    r = 1.0 + (amps[:, None, None] * np.cos(k * theta + phases[:, None, None])).sum(0)
    # radial approximation of the signed distance to the outline, in px
    return _ramp((rho - r) * 0.5 * (rx + ry), edge)


def _scratch_alpha(rng: np.random.Generator) -> np.ndarray:
    length = rng.uniform(*SCRATCH_LENGTH) * SIDE
    width = rng.uniform(*SCRATCH_WIDTH)
    angle = rng.uniform(0.0, 2 * np.pi)
    bend = rng.uniform(-SCRATCH_BEND, SCRATCH_BEND) * length
    half = 0.5 * length * np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([np.cos(angle), -np.sin(angle)])
    margin = 0.5 * length + abs(bend) + width + 3.0
    centre = rng.uniform(margin, SIDE - margin, 2) if margin < SIDE / 2 else np.full(2, SIDE / 2)
    p0, p2 = centre - half, centre + half
    p1 = centre + 2.0 * bend * normal  # the curve's midpoint bows out by `bend`
    t = np.linspace(0.0, 1.0, 33)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2  # (K, 2) as (y, x)

    lo = np.maximum(np.floor(pts.min(0) - width - 2), 0).astype(int)
    hi = np.minimum(np.ceil(pts.max(0) + width + 3), SIDE).astype(int)
    yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]].astype(np.float64)
    p = np.stack([yy, xx], -1)[:, :, None, :]
    a, ab = pts[:-1], pts[1:] - pts[:-1]
    s = np.clip(((p - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    dist = np.linalg.norm(p - (a + s[..., None] * ab), axis=-1).min(-1)

    alpha = np.zeros((SIDE, SIDE))
    # box-filter coverage of a line `width` px wide: 0.5 on its edge
    alpha[lo[0]:hi[0], lo[1]:hi[1]] = np.clip(0.5 * width + 0.5 - dist, 0.0, 1.0)
    return alpha


# ---------------------------------------------------------------- defects


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _scratch(img, rng, photos, category):
    alpha = _scratch_alpha(rng)
    level = np.clip(img.mean() + _sign(rng) * rng.uniform(*SCRATCH_CONTRAST), 0, 255)
    return img * (1 - alpha) + level * alpha, alpha


def _stain(img, rng, photos, category):
    diameter = rng.uniform(*STAIN_SIZE) * SIDE
    edge = rng.uniform(*STAIN_SOFTNESS) * diameter / 2
    alpha = _blob(rng, diameter, (0.6, 1.0), IRREGULARITY, edge)
    return img + _sign(rng) * rng.uniform(*STAIN_CONTRAST) * alpha, alpha


def _hole(img, rng, photos, category):
    diameter = rng.uniform(*HOLE_SIZE) * SIDE
    alpha = _blob(rng, diameter, (0.5, 1.0), 0.0, rng.uniform(*HOLE_EDGE))
    return img * (1 - rng.uniform(*HOLE_DEPTH) * alpha), alpha


def _foreign(img, rng, photos, category):
    others = [c for c in CATEGORIES if c != category]
    patch = _raw_crop(photos[others[int(rng.integers(len(others)))]], rng)
    diameter = rng.uniform(*FOREIGN_SIZE) * SIDE
    alpha = _blob(rng, diameter, (0.6, 1.0), IRREGULARITY, FOREIGN_EDGE)
    inside = alpha >= MASK_ALPHA
    m_loc, s_loc = img[inside].mean(), img[inside].std()
    m_pat, s_pat = patch[inside].mean(), max(patch[inside].std(), 1.0)
    m = FOREIGN_MATCH
    patch = (patch - m_pat) / s_pat * (m * s_loc + (1 - m) * s_pat) + m * m_loc + (1 - m) * m_pat
    patch = patch + rng.normal(0.0, NOISE_STD, patch.shape)  # same noise as the host crop
    return img * (1 - alpha) + patch * alpha, alpha


_DEFECTS = {"scratch": _scratch, "stain": _stain, "hole": _hole, "foreign": _foreign}


def scaled_photos() -> dict[str, np.ndarray]:
    """The bundled photos as the generator crops them (float64, resized by ZOOM)."""
    return {c: _scaled(p) for c, p in load_photos().items()}


def normal_crop(photos: dict[str, np.ndarray], category: str, rng: np.random.Generator) -> np.ndarray:
    """One normal SIDE x SIDE float crop of ``category``'s photo (jitter and noise included)."""
    return _normal_crop(photos[category], rng)


def add_defect(kind: str, img: np.ndarray, rng: np.random.Generator, photos: dict[str, np.ndarray],
               category: str) -> tuple[np.ndarray, np.ndarray]:
    """``img`` with one defect of ``kind`` (DEFECT_TYPES) and its mask (bool)."""
    out, alpha = _DEFECTS[kind](img, rng, photos, category)
    return out, alpha >= MASK_ALPHA


def generate_category(category: str, photos: dict[str, np.ndarray] | None = None) -> list[Sample]:
    """All samples of one category, in memory; deterministic for a given GENERATOR_VERSION."""
    if category not in CATEGORIES:
        from ..methods.errors import UnknownName

        raise UnknownName("category", category, CATEGORIES)
    photos = {c: _scaled(p) for c, p in (photos or load_photos()).items()}
    photo = photos[category]
    rng = np.random.default_rng([SEED, CATEGORIES.index(category)])
    out = [Sample(category, "good", "train", f"{i:03d}", _to_u8(_normal_crop(photo, rng)))
           for i in range(N_TRAIN)]
    out += [Sample(category, "good", "test", f"{i:03d}", _to_u8(_normal_crop(photo, rng)))
            for i in range(N_TEST_GOOD)]
    for kind in DEFECT_TYPES:
        for i in range(N_PER_DEFECT):
            clean = _normal_crop(photo, rng)
            img, alpha = _DEFECTS[kind](clean, rng, photos, category)
            mask = alpha >= MASK_ALPHA
            out.append(Sample(category, kind, "test", f"{i:03d}", _to_u8(img), mask, _to_u8(clean)))
    return out


# ---------------------------------------------------------------- on disk


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write_dataset(root: Path) -> None:
    photos = load_photos()
    files: dict[str, str] = {}

    def put(rel: str, arr: np.ndarray) -> None:
        data = _png_bytes(arr)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = hashlib.sha256(data).hexdigest()

    for category in CATEGORIES:
        for s in generate_category(category, photos):
            put(s.relpath, s.image)
            if s.mask is not None:
                put(s.mask_relpath, s.mask.astype(np.uint8) * 255)
    manifest = {
        "dataset": NAME,
        "generator_version": GENERATOR_VERSION,
        "source": {
            c: {"photo": f"skimage.data.{c}()",
                "pixels_sha256": hashlib.sha256(photos[c].tobytes()).hexdigest()}
            for c in CATEGORIES
        },
        "categories": list(CATEGORIES),
        "defect_types": list(DEFECT_TYPES),
        "knobs": _knobs(),
        "files": dict(sorted(files.items())),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def read_manifest(root: Path) -> dict:
    return json.loads((Path(root) / MANIFEST).read_text())


def _sweep_stale_temps(parent: Path, name: str, older_than_s: float = 3600.0) -> None:
    """Remove temp dirs that killed generations left behind (best effort)."""
    now = time.time()
    for p in parent.glob(f".{name}.tmp-*"):
        try:
            if now - p.stat().st_mtime > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def ensure_textures(root: Path | str | None = None) -> Path:
    """Return the dataset root, generating it first if it is not there yet.

    Generation writes into a sibling temp dir and renames it into place, so a killed run never
    leaves half a dataset and two racing processes both end up using one complete copy.
    """
    if root is None:
        root = cache_dir("datasets") / f"{NAME}-v{GENERATOR_VERSION}"
    root = Path(root)
    if (root / MANIFEST).is_file():
        version = read_manifest(root).get("generator_version")
        if version != GENERATOR_VERSION:
            raise BenchError(
                f"{root}: holds textures generator version {version}, this code writes "
                f"{GENERATOR_VERSION}; delete the directory to regenerate it"
            )
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BenchError(
            f"{root}: exists but has no {MANIFEST}, so it is not a complete textures dataset; "
            "delete it (or pass another root) and it will be regenerated"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(root.parent, root.name)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _write_dataset(tmp)
        try:
            os.rename(tmp, root)  # replaces an empty dir; fails if another process won
        except OSError:
            if not (root / MANIFEST).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


# ---------------------------------------------------------------- preview picture


def render_samples(root: Path | str, out_path: Path | str) -> Path:
    """Write a PNG grid: per category 2 normal test crops, then one crop per defect type with
    its mask outlined in red. Saved as a palette image (64 grays, red, white) to stay small."""
    from PIL import ImageDraw

    root, out_path = Path(root), Path(out_path)
    gap, label_w, head_h = 4, 60, 18
    cols = [("good", "000"), ("good", "001")] + [(t, "000") for t in DEFECT_TYPES]
    width = label_w + len(cols) * (SIDE + gap)
    height = head_h + len(CATEGORIES) * (SIDE + gap)
    levels = 64  # preview only: fewer grays keep the PNG small
    RED, WHITE = levels, levels + 1  # palette indices after the grays
    canvas = np.full((height, width), WHITE, np.uint8)

    for r, category in enumerate(CATEGORIES):
        for c, (kind, stem) in enumerate(cols):
            with Image.open(root / category / "test" / kind / f"{stem}.png") as im:
                gray = np.asarray(im.convert("L")).astype(np.int32)
            tile = (gray * levels // 256).astype(np.uint8)
            if kind != "good":
                with Image.open(root / category / "ground_truth" / kind / f"{stem}_mask.png") as im:
                    mask = np.asarray(im.convert("L")) > 127
                # a ring 2 px outside the mask, so even a thin scratch stays visible
                ring = ndimage.binary_dilation(mask, iterations=3)
                tile[ring & ~ndimage.binary_dilation(mask, iterations=2)] = RED
            y0 = head_h + r * (SIDE + gap)
            x0 = label_w + c * (SIDE + gap)
            canvas[y0:y0 + SIDE, x0:x0 + SIDE] = tile

    img = Image.frombytes("P", (width, height), canvas.tobytes())
    palette = []
    for i in range(levels):
        g = round(i * 255 / (levels - 1))
        palette += [g, g, g]
    palette += [255, 0, 0, 255, 255, 255]
    img.putpalette(palette)
    draw = ImageDraw.Draw(img)
    for c, (kind, stem) in enumerate(cols):
        draw.text((label_w + c * (SIDE + gap) + 4, 3), kind, fill=0)
    for r, category in enumerate(CATEGORIES):
        draw.text((4, head_h + r * (SIDE + gap) + SIDE // 2 - 6), category, fill=0)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    img.save(out_path, format="PNG", optimize=True)
    return out_path
