"""Deterministic stand-in data, written in the datasets' released layouts.

Where MNIST / MNIST-M or PACS cannot be downloaded, a stand-in lets a grid or ``bench reproduce``
run end to end (GNL Tables 3 and 4's protocol on synthetic images; the numbers are not the
paper's). Nothing is downloaded: the images are drawn here, from a seed, and from photographs that
ship inside scikit-image. The same seed writes byte-identical files in every run and process (on
the same library versions); another seed writes other images::

    python -m bench.datasets.standins mnist DIR [--per-class N] [--seed S]   # N train digits (N/2 test) per digit
    python -m bench.datasets.standins pacs DIR [--per-class N] [--seed S]    # N images per class per domain
    python -m bench.datasets.standins mvtec_ad DIR [--categories C,..] [--workers W]  # timing stand-in
    python -m bench.datasets.standins mvtec3d DIR [--categories C,..] [--per-class N]  # point clouds
    python -m bench.datasets.standins realiad DIR [--categories C,..] [--per-class N]  # Real-IAD layout
    python -m bench.datasets.standins cifar10 DIR [--per-class N]                       # CIFAR-10 batches

- ``make_mnist``: ``MNIST/raw/`` with the four IDX files (gzipped) that ``datasets/mnist.py``
  reads: 28x28 gray digits 0-9 drawn from stroke templates (polylines and arcs, ~20 px high),
  each with its own seeded jitter (slant, rotation within +-15 degrees, size, aspect, shift,
  stroke width, per-stroke wobble) and noise on the ink (the background stays 0, as in MNIST);
  plus BSDS500's training-photo folder filled with scikit-image's colour photographs, from which
  ``datasets/mnist_m.py`` generates MNIST-M with its own seeded generator.
- ``make_pacs``: ``<domain>/<class>/*.jpg`` (sketch: ``*.png``, as released) at 227x227 and the
  released-style split files ``pacs_label/<domain>_{train,crossval,test}_kfold.txt``. A class is
  a silhouette built from a few shapes (a dog, an elephant, a giraffe, a guitar, a horse, a
  house, a person) textured with its own scikit-image texture, placed with a seeded pose over a
  background crop shared by every class; a domain is how the scene is rendered: ``photo``
  (textured, shaded, shadowed, sensor noise), ``art_painting`` (median-smoothed, posterised,
  strong hue rotation, canvas weave), ``cartoon`` (flat fills from a palette that every class
  shares, a flattened pastel background, dark outlines), ``sketch`` (gray pencil outlines and
  hatching on white). Each image draws its own scene, so two domains share the classes, not the
  pictures.
- ``make_mvtec_ad``: a *timing* stand-in for MVTec AD: its 15 categories with the published
  image, defect-type and mask counts, sides (700-1024 px) and channels, cut from the embedded
  textures, so a grid does MVTec AD's amount of work (``benchmarks/perf_table.py``).
- ``make_realiad``: Real-IAD's single-view layout (top camera, 256 px copies, the JSON split) for
  a few categories, textures with synthetic defects under three of its defect codes: TTAD Tables 1
  and 3's Real-IAD half (one adaptation epoch) end to end, not its data.
- ``make_cifar10``: CIFAR-10's python release (pickled 32 x 32 batches), a class being a texture
  under its own tint: GNL Table 2's one-class protocol end to end, not its data.
- ``make_mvtec3d``: MVTec 3D-AD's layout (xyz TIFFs, rgb, gt) for its 10 categories, each the
  64 x 64 synthetic cloud of ``datasets.mvtec3d.write_fixture`` (a half-ellipsoid on a tilted
  plane with dents and protrusions as defects): TTAD Table 2's protocol end to end, not its data.

Each root gets a ``STANDIN.md`` whose first line names the seed; the loaders read that line and
start every ``domain_source`` with ``stand-in (bench.datasets.standins, seed S)``, and a
category's load warns that the data is a stand-in.
"""
from __future__ import annotations

import argparse
import functools
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..methods.errors import BenchError
from . import mnist, mnist_m, pacs, textures
from .base import STANDIN_FILE, standin_mark

MNIST_TITLE = "Stand-in MNIST / MNIST-M"
PACS_TITLE = "Stand-in PACS"
MVTEC_TITLE = "Stand-in MVTec AD (timing)"
JPEG_QUALITY = 90

# ------------------------------------------------------------------ common


def _photo(name: str) -> np.ndarray:
    """A scikit-image sample picture (shipped with the package: no download) as (H, W, 3) uint8."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def _versions() -> str:
    import PIL
    import skimage

    return f"numpy {np.__version__}, Pillow {PIL.__version__}, scikit-image {skimage.__version__}"


def _prepare(root: Path, title: str) -> Path:
    """``root`` ready to be written: new, empty, or an earlier stand-in of the same dataset."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise BenchError(f"{root} is not a directory: pass the folder to write the stand-in into")
    marker = root / STANDIN_FILE
    if root.is_dir() and any(root.iterdir()):
        first = marker.read_text(encoding="utf-8").splitlines()[:1] if marker.is_file() else []
        if not first or not first[0].startswith(f"# {title} "):
            what = f"holds another stand-in ({first[0].lstrip('# ')})" if first else f"is not empty and holds no {STANDIN_FILE}"
            raise BenchError(f"{root} {what}: a stand-in is written into an empty folder or over an earlier stand-in "
                             f"of the same dataset; pick another folder")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _write_note(root: Path, title: str, seed: int, body: str) -> None:
    text = (f"# {title} ({standin_mark(seed).split('(', 1)[1]}\n\n"
            f"**This is not the real dataset.** Synthetic images written by `bench.datasets.standins` in the "
            f"released layout, so that grids and `bench reproduce` run without the data; their numbers are not "
            f"comparable with published ones. The loaders read this file's first line and record "
            f"`{standin_mark(seed)}` at the start of every row's `domain_source`.\n\n"
            f"- seed: {seed}\n- written with: {_versions()}\n\n{body.strip()}\n")
    (root / STANDIN_FILE).write_text(text, encoding="utf-8")


def _save(img: np.ndarray | Image.Image, path: Path) -> None:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    if path.suffix == ".jpg":
        im.save(path, format="JPEG", quality=JPEG_QUALITY)  # baseline, no EXIF: the same bytes every time
    else:
        im.save(path, format="PNG", optimize=False)


# ------------------------------------------------------------------ MNIST


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> np.ndarray:
    """Points on an elliptic arc from angle a0 to a1 (degrees; y points down, 90 = bottom)."""
    t = np.deg2rad(np.linspace(a0, a1, max(6, int(abs(a1 - a0) / 12) + 1)))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*points: tuple[float, float]) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


# Each digit: its ways of writing it, each a list of strokes (polylines) in a unit box, x to the
# right, y down.
DIGIT_STROKES: dict[int, list[list[np.ndarray]]] = {
    0: [[_arc(0.5, 0.5, 0.34, 0.46, 0, 360)],
        [_arc(0.5, 0.5, 0.32, 0.46, -100, 290)]],  # the pen overshoots its start
    1: [[_line((0.55, 0.04), (0.55, 0.96))],
        [_line((0.32, 0.22), (0.55, 0.04), (0.55, 0.96))],
        [_line((0.32, 0.22), (0.55, 0.04), (0.55, 0.96)), _line((0.3, 0.96), (0.8, 0.96))]],
    2: [[np.concatenate([_arc(0.5, 0.3, 0.32, 0.26, 195, 380), _line((0.14, 0.95), (0.88, 0.95))])],
        [np.concatenate([_arc(0.5, 0.3, 0.32, 0.26, 195, 380), _line((0.22, 0.86)),
                         _arc(0.28, 0.86, 0.1, 0.09, 0, 300)[1:], _line((0.9, 0.92))])]],  # a loop at the foot
    3: [[_arc(0.48, 0.27, 0.3, 0.23, 200, 450), _arc(0.48, 0.73, 0.34, 0.23, -90, 160)],
        [np.concatenate([_line((0.15, 0.05), (0.82, 0.05), (0.42, 0.46)), _arc(0.48, 0.7, 0.34, 0.25, -80, 160)])]],
    4: [[_line((0.62, 0.04), (0.1, 0.66), (0.9, 0.66)), _line((0.62, 0.04), (0.62, 0.96))],
        [_line((0.28, 0.04), (0.14, 0.6), (0.9, 0.6)), _line((0.66, 0.22), (0.66, 0.96))]],  # open top
    5: [[np.concatenate([_line((0.82, 0.05), (0.3, 0.05), (0.24, 0.44)), _arc(0.48, 0.69, 0.33, 0.27, -125, 150)])],
        [_line((0.3, 0.05), (0.24, 0.44)), _arc(0.48, 0.69, 0.33, 0.27, -125, 150), _line((0.3, 0.05), (0.84, 0.07))]],
    6: [[np.concatenate([_arc(0.56, 0.6, 0.38, 0.56, -60, -200), _arc(0.52, 0.73, 0.32, 0.22, 160, 520)])],
        [np.concatenate([_line((0.7, 0.04), (0.26, 0.6)), _arc(0.5, 0.74, 0.3, 0.22, 200, 560)])]],
    7: [[_line((0.1, 0.05), (0.9, 0.05), (0.38, 0.96))],
        [_line((0.1, 0.05), (0.9, 0.05), (0.38, 0.96)), _line((0.36, 0.5), (0.84, 0.5))],  # crossed
        [np.concatenate([_line((0.1, 0.1), (0.9, 0.05)), _arc(0.0, 0.05, 0.9, 0.92, -5, 75)[1:]])]],  # curved stem
    8: [[_arc(0.5, 0.26, 0.26, 0.22, 0, 360), _arc(0.5, 0.72, 0.31, 0.24, 0, 360)],
        [_arc(0.52, 0.26, 0.24, 0.22, 0, 360), _arc(0.46, 0.72, 0.33, 0.24, 0, 360)]],
    9: [[_arc(0.46, 0.3, 0.31, 0.26, 0, 360), _line((0.77, 0.3), (0.7, 0.96))],
        [_arc(0.46, 0.3, 0.31, 0.26, 0, 360), _arc(0.2, 0.3, 0.57, 0.66, 0, 80)]],  # curved tail
}
_PIXELS = np.stack(np.meshgrid(np.arange(mnist.SIDE, dtype=np.float64), np.arange(mnist.SIDE, dtype=np.float64),
                               indexing="xy"), axis=-1).reshape(-1, 2)  # (x, y) of each pixel centre


def render_digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One 28x28 gray digit (uint8, background 0): one of the digit's ways of writing it, warped
    smoothly, then ``rng``'s slant, rotation, size, aspect, shift and stroke width, noise on the ink."""
    ways = DIGIT_STROKES[digit]
    strokes = [s + rng.normal(0, 0.03, 2) + rng.normal(0, 0.008, s.shape) for s in ways[int(rng.integers(len(ways)))]]
    amp, freq, phase = rng.uniform(0, 0.07, 2), rng.uniform(0.5, 1.6, 2), rng.uniform(0, 2 * np.pi, 2)
    strokes = [s + amp * np.sin(2 * np.pi * freq * s[:, ::-1] + phase) for s in strokes]  # a smooth warp
    height = rng.uniform(16.5, 21.0)
    width = height * rng.uniform(0.62, 0.85)
    angle = np.deg2rad(rng.uniform(-15, 15))
    shear = rng.uniform(-0.25, 0.25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([width, height])
    centre = (mnist.SIDE - 1) / 2 + rng.uniform(-2.0, 2.0, 2)
    pen = rng.uniform(1.6, 3.4)
    dist = np.full(len(_PIXELS), np.inf)
    for s in strokes:
        pts = (s - 0.5) @ affine.T + centre
        a, b = pts[:-1], pts[1:]
        ab = b - a
        t = np.clip(((_PIXELS[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
        nearest = a + t[..., None] * ab
        dist = np.minimum(dist, np.sqrt(((_PIXELS[:, None] - nearest) ** 2).sum(-1)).min(1))
    ink = np.clip(pen / 2 + 0.5 - dist, 0, 1).reshape(mnist.SIDE, mnist.SIDE)
    level = rng.uniform(0.8, 1.0) + rng.normal(0, 0.08, ink.shape)
    return np.round(255 * np.clip(ink * level, 0, 1)).astype(np.uint8)


def mnist_digits(n_per_class: int, seed: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """(digits (10 n, 28, 28) uint8, labels (10 n,) uint8) in a seeded order; each image has its own
    generator (seed, split, index), so an image does not depend on how many come after it."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), n_per_class)
    labels = labels[np.random.default_rng([seed, split]).permutation(len(labels))]
    digits = np.stack([render_digit(int(y), np.random.default_rng([seed, split, i])) for i, y in enumerate(labels)]) \
        if len(labels) else np.zeros((0, mnist.SIDE, mnist.SIDE), np.uint8)
    return digits, labels


BSDS_PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")
BSDS_SIZE = (481, 321)  # BSDS500's landscape images, width x height


def _bsds_photo(name: str) -> Image.Image:
    """A scikit-image photograph scaled to cover 481x321 and centre-cropped to it."""
    im = Image.fromarray(_photo(name))
    w, h = BSDS_SIZE
    scale = max(w / im.width, h / im.height)
    im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.LANCZOS)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((left, top, left + w, top + h))


def make_mnist(root: Path, per_class_train: int = 100, per_class_test: int = 50, seed: int = 0) -> Path:
    """A stand-in MNIST root: ``MNIST/raw/*-ubyte.gz`` with ``per_class_train`` / ``per_class_test``
    digits of each class, BSDS500's photo folder for MNIST-M's generator, and STANDIN.md."""
    root = _prepare(root, MNIST_TITLE)
    for split, (name, n) in enumerate((("train", per_class_train), ("t10k", per_class_test))):
        digits, labels = mnist_digits(n, seed, split)
        for file, array in zip(mnist.FILES[name], (digits, labels)):
            (root / mnist.RAW / file).unlink(missing_ok=True)  # an extracted copy would be read first
            mnist.write_idx(root / mnist.RAW / file, array)
    photos = root / mnist_m.BACKGROUNDS[0]
    if photos.is_dir():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    for name in BSDS_PHOTOS:
        _save(_bsds_photo(name), photos / f"{name}.jpg")
    _write_note(root, MNIST_TITLE, seed, f"""
## What is here

- `{mnist.RAW.as_posix()}/`: the four IDX files (gzipped) of MNIST's release, {per_class_train} training and
  {per_class_test} test digits per class ({10 * per_class_train} / {10 * per_class_test}), labels in a seeded order.
  Each 28x28 digit is drawn from stroke templates (polylines and arcs, about 20 px high) with its own
  jitter: slant, rotation within +-15 degrees, size, aspect, shift within +-2 px, stroke width 1.6-3.4 px,
  per-stroke wobble, and noise on the ink; the background is 0, as in MNIST.
- `{mnist_m.BACKGROUNDS[0]}/`: {len(BSDS_PHOTOS)} photographs shipped inside scikit-image
  ({', '.join(BSDS_PHOTOS)}), cropped to BSDS500's {BSDS_SIZE[0]}x{BSDS_SIZE[1]}. With no released MNIST-M
  here, `bench.datasets.mnist_m` generates the MNIST-M test domain from these digits and photographs
  with its own seeded generator (Ganin & Lempitsky's recipe), and its rows say so.

Rewrite with `python -m bench.datasets.standins mnist DIR --per-class {per_class_train} --seed {seed}`
(`--per-class` sets the training digits per class; the test digits are half of them).
""")
    return root


# ------------------------------------------------------------------ PACS

PACS_SIDE = 227
Shape = tuple[np.ndarray, bool]  # a polygon in unit coordinates (x right, y down, about -1..1), filled or a hole


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return _arc(cx, cy, rx, ry, 0, 360)[:-1]


def _bar(x0: float, y0: float, x1: float, y1: float, w: float) -> np.ndarray:
    """A straight limb of width ``w`` from (x0, y0) to (x1, y1), as a quadrilateral."""
    d = np.array([x1 - x0, y1 - y0])
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * w / 2
    a, b = np.array([x0, y0]), np.array([x1, y1])
    return np.stack([a + n, b + n, b - n, a - n])


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _legs(xs: tuple[float, ...], top: float, bottom: float, w: float, splay: float = 0.0) -> list[Shape]:
    return [(_bar(x, top, x + splay * (1 if i % 2 else -1), bottom, w), True) for i, x in enumerate(xs)]


CLASS_SHAPES: dict[str, list[Shape]] = {
    "dog": [(_ellipse(0.0, 0.1, 0.52, 0.24), True), (_ellipse(0.58, -0.22, 0.22, 0.2), True),
            (_ellipse(0.8, -0.14, 0.14, 0.08), True), (_bar(0.5, -0.34, 0.42, -0.05, 0.12), True),
            (_bar(-0.46, 0.0, -0.78, -0.32, 0.08), True)] + _legs((-0.38, -0.24, 0.26, 0.4), 0.2, 0.66, 0.11),
    "elephant": [(_ellipse(0.0, 0.0, 0.6, 0.38), True), (_ellipse(0.58, -0.14, 0.3, 0.3), True),
                 (_ellipse(0.4, -0.08, 0.2, 0.3), True), (_bar(0.82, -0.05, 0.92, 0.66, 0.13), True),
                 (_bar(-0.58, -0.05, -0.72, 0.35, 0.05), True)] + _legs((-0.4, -0.16, 0.18, 0.4), 0.2, 0.86, 0.19),
    "giraffe": [(_ellipse(-0.12, 0.06, 0.38, 0.19), True), (_bar(0.18, 0.02, 0.52, -0.8, 0.15), True),
                (_ellipse(0.62, -0.82, 0.17, 0.08), True), (_bar(0.52, -0.88, 0.48, -0.98, 0.04), True),
                (_bar(-0.46, 0.0, -0.6, 0.34, 0.04), True)] + _legs((-0.4, -0.3, 0.08, 0.18), 0.14, 0.94, 0.07),
    "guitar": [(_ellipse(0.0, 0.45, 0.4, 0.4), True), (_ellipse(0.0, -0.02, 0.29, 0.28), True),
               (_bar(0.0, -0.2, 0.0, -0.9, 0.11), True), (_box(-0.09, -1.0, 0.09, -0.86), True),
               (_ellipse(0.0, 0.22, 0.1, 0.1), False), (_bar(-0.16, 0.58, 0.16, 0.58, 0.05), False)],
    "horse": [(_ellipse(0.0, 0.0, 0.5, 0.21), True), (_bar(0.34, -0.04, 0.6, -0.52, 0.22), True),
              (_bar(0.56, -0.52, 0.88, -0.34, 0.14), True), (_bar(-0.46, -0.06, -0.66, 0.42, 0.1), True),
              (_bar(0.44, -0.18, 0.58, -0.62, 0.06), True)] + _legs((-0.38, -0.28, 0.28, 0.38), 0.1, 0.92, 0.075, 0.06),
    "house": [(_box(-0.62, -0.1, 0.62, 0.82), True), (_line((-0.8, -0.08), (0.0, -0.78), (0.8, -0.08)), True),
              (_box(0.32, -0.66, 0.46, -0.32), True), (_box(-0.1, 0.36, 0.14, 0.82), False),
              (_box(-0.46, 0.06, -0.22, 0.3), False), (_box(0.26, 0.06, 0.5, 0.3), False)],
    "person": [(_ellipse(0.0, -0.76, 0.15, 0.17), True), (_box(-0.2, -0.56, 0.2, 0.16), True),
               (_bar(-0.26, -0.52, -0.36, 0.12, 0.1), True), (_bar(0.26, -0.52, 0.36, 0.12, 0.1), True),
               (_bar(-0.11, 0.12, -0.15, 0.94, 0.14), True), (_bar(0.11, 0.12, 0.15, 0.94, 0.14), True)],
}
# Each class's texture (a scikit-image picture) and tint.
CLASS_TEXTURES: dict[str, tuple[str, tuple[float, float, float]]] = {
    "dog": ("chelsea", (1.0, 0.95, 0.9)),
    "elephant": ("gravel", (0.78, 0.74, 0.72)),
    "giraffe": ("immunohistochemistry", (1.15, 0.95, 0.55)),
    "guitar": ("coffee", (1.1, 0.8, 0.5)),
    "horse": ("grass", (0.7, 0.45, 0.3)),
    "house": ("brick", (1.05, 0.6, 0.5)),
    "person": ("astronaut", (1.0, 1.0, 1.0)),
}
BACKGROUNDS = ("rocket", "hubble_deep_field", "camera", "coffee", "retina", "moon", "page", "astronaut")
# Flat fills of the cartoon domain, shared by every class: a cartoon's class is its outline, not a
# colour (nor the photo's texture).
CARTOON_PALETTE = ((176, 120, 70), (140, 140, 150), (236, 188, 70), (200, 96, 40), (120, 72, 40), (200, 70, 60),
                   (70, 110, 200), (90, 170, 90), (230, 140, 170), (250, 250, 245))


@functools.lru_cache(maxsize=32)
def _picture(name: str) -> np.ndarray:
    return _photo(name).astype(np.float32) / 255.0


def _crop(name: str, rng: np.random.Generator, side: int = PACS_SIDE, zoom: tuple[float, float] = (0.35, 0.9)) -> np.ndarray:
    """A random square crop of a picture (its side a random share of the shorter side), at side px."""
    pic = _picture(name)
    h, w = pic.shape[:2]
    s = max(16, int(min(h, w) * rng.uniform(*zoom)))
    y, x = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
    patch = Image.fromarray(np.round(pic[y:y + s, x:x + s] * 255).astype(np.uint8))
    return np.asarray(patch.resize((side, side), Image.BILINEAR), dtype=np.float32) / 255.0


def _draw(polys: list[Shape], scale: int = 2, outline: int = 0) -> np.ndarray:
    """Polygons (in pixels) filled (holes cut) at ``scale`` x supersampling -> float mask (227, 227);
    ``outline``: only their outlines, this many px wide."""
    im = Image.new("L", (PACS_SIDE * scale, PACS_SIDE * scale), 0)
    draw = ImageDraw.Draw(im)
    for pts, filled in polys:
        xy = [tuple(p) for p in (pts * scale).tolist()]
        if outline:
            draw.line(xy + xy[:1], fill=255, width=outline * scale, joint="curve")
        else:
            draw.polygon(xy, fill=255 if filled else 0)
    return np.asarray(im.resize((PACS_SIDE, PACS_SIDE), Image.BOX), dtype=np.float32) / 255.0


def pacs_scene(cls: str, rng: np.random.Generator) -> dict:
    """What an image shows, before a domain renders it: the object's polygons (pixels), its mask,
    texture, the background, the light."""
    angle = np.deg2rad(rng.uniform(-12, 12) + (25 if cls == "guitar" else 0))
    size = PACS_SIDE * rng.uniform(0.36, 0.46)
    aspect = rng.uniform(0.88, 1.12)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = rot @ np.diag([flip * size * aspect, size / aspect])
    centre = PACS_SIDE / 2 + rng.uniform(-18, 18, 2)
    polys = [((pts + rng.normal(0, 0.015, 2)) @ affine.T + centre, filled) for pts, filled in CLASS_SHAPES[cls]]
    texture_name, tint = CLASS_TEXTURES[cls]
    texture = _crop(texture_name, rng, zoom=(0.25, 0.6)) * np.float32(tint) * np.float32(rng.uniform(0.85, 1.15, 3))
    background = _crop(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))], rng)
    light = rng.normal(0, 1, 2)
    return {"class": cls, "polys": polys, "mask": _draw(polys), "texture": np.clip(texture, 0, 1), "background": background,
            "light": light / max(np.hypot(*light), 1e-9), "offset": rng.uniform(4, 10, 2)}


def _gradient(light: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:PACS_SIDE, 0:PACS_SIDE].astype(np.float32) / PACS_SIDE - 0.5
    return (xx * light[0] + yy * light[1]).astype(np.float32)


def _composite(scene: dict) -> np.ndarray:
    """The scene as a photograph would show it (float RGB 0..1): blurred background, a soft shadow,
    the shaded textured object."""
    m = scene["mask"][..., None]
    bg = Image.fromarray(np.round(scene["background"] * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    bg = np.asarray(bg, dtype=np.float32) / 255.0
    dx, dy = (int(v) for v in scene["offset"])
    shadow = np.roll(np.roll(scene["mask"], dy, axis=0), dx, axis=1)
    shadow = np.asarray(Image.fromarray(np.round(shadow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(5)),
                        dtype=np.float32) / 255.0
    bg = bg * (1 - 0.45 * shadow[..., None])
    obj = scene["texture"] * (0.85 + 0.6 * _gradient(scene["light"]))[..., None]
    return np.clip(bg * (1 - m) + obj * m, 0, 1)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _hue_rotation(degrees: float) -> np.ndarray:
    """The RGB matrix that turns colours about the gray axis by ``degrees``."""
    t = np.deg2rad(degrees)
    k = np.ones((3, 3)) / 3
    skew = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) / np.sqrt(3)
    return (np.cos(t) * np.eye(3) + (1 - np.cos(t)) * k + np.sin(t) * skew).astype(np.float32)


def render_photo(scene: dict, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(_composite(scene) + rng.normal(0, 0.012, (PACS_SIDE, PACS_SIDE, 3)).astype(np.float32))


def render_art(scene: dict, rng: np.random.Generator) -> np.ndarray:
    """Oil-like: median-smoothed strokes, colours posterised, a strong hue rotation and warm varnish,
    canvas weave."""
    img = Image.fromarray(_to_uint8(_composite(scene))).filter(ImageFilter.MedianFilter(5))
    img = np.asarray(img, dtype=np.float32) / 255.0
    img = img @ _hue_rotation(rng.uniform(35, 90) * (1 if rng.random() < 0.5 else -1)).T
    gray = img.mean(-1, keepdims=True)
    img = gray + 1.5 * (img - gray)  # saturated
    img = img * np.float32([1.12, 0.98, 0.78]) + 0.04  # warm varnish
    levels = int(rng.integers(4, 7))
    img = np.round(np.clip(img, 0, 1) * (levels - 1)) / (levels - 1)
    yy, xx = np.mgrid[0:PACS_SIDE, 0:PACS_SIDE]
    weave = 0.04 * (np.sin(xx * 1.9) * np.sin(yy * 1.9)).astype(np.float32)
    return _to_uint8(img * (1 + weave[..., None]))


def _outline(scene: dict, width: int) -> np.ndarray:
    """The object's outer and hole outlines (float 0..1)."""
    from scipy import ndimage

    binary = scene["mask"] > 0.5
    edge = ndimage.binary_dilation(binary, iterations=width) & ~ndimage.binary_erosion(binary, iterations=1)
    return ndimage.gaussian_filter(edge.astype(np.float32), 0.6)


def render_cartoon(scene: dict, rng: np.random.Generator) -> np.ndarray:
    """Flat colours: one fill per object (a palette colour, jittered), a flattened pastel
    background, dark outlines."""
    fill = CARTOON_PALETTE[int(rng.integers(len(CARTOON_PALETTE)))]
    colour = np.float32(fill) / 255 * np.float32(rng.uniform(0.85, 1.15, 3))
    bg = Image.fromarray(_to_uint8(scene["background"])).filter(ImageFilter.GaussianBlur(6))
    bg = np.asarray(bg, dtype=np.float32) / 255.0
    bg = np.round(bg * 2) / 2  # three levels per channel
    bg = 0.45 * bg + 0.55 * np.float32(rng.uniform(0.75, 1.0, 3))  # pastel
    m = scene["mask"][..., None]
    shade = np.where(_gradient(scene["light"]) > 0.15, 0.8, 1.0).astype(np.float32)[..., None]  # one flat shadow tone
    img = bg * (1 - m) + colour * shade * m
    line = _outline(scene, 2)[..., None]
    return _to_uint8(img * (1 - line) + 0.08 * line)


def render_sketch(scene: dict, rng: np.random.Generator) -> np.ndarray:
    """Pencil on white: the outline (a second, offset stroke), hatching where the texture has
    edges; gray."""
    from scipy import ndimage

    first = _outline(scene, 1)
    shift = rng.integers(-2, 3, 2)
    second = np.roll(np.roll(first, int(shift[0]), axis=0), int(shift[1]), axis=1)
    gray = scene["texture"].mean(-1)
    edges = np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1)) * (scene["mask"] > 0.5)
    cut = np.quantile(edges[scene["mask"] > 0.5], 0.9) if (scene["mask"] > 0.5).any() else np.inf
    hatch = (edges > cut).astype(np.float32) * 0.5
    pressure = rng.uniform(0.7, 1.0)
    dark = np.clip(pressure * first + 0.45 * second + hatch, 0, 1)
    paper = 1.0 - 0.85 * dark + rng.normal(0, 0.01, dark.shape)
    return _to_uint8(paper)


PACS_STYLES: dict[str, Callable[[dict, np.random.Generator], np.ndarray]] = {
    "photo": render_photo, "art_painting": render_art, "cartoon": render_cartoon, "sketch": render_sketch,
}
PACS_SUFFIX = {"photo": ".jpg", "art_painting": ".jpg", "cartoon": ".jpg", "sketch": ".png"}  # as released
CROSSVAL = 0.2  # the released crossval is about 10 %; more here, so that Photo's test split has several normal images


def pacs_image(domain: str, cls: str, index: int, seed: int) -> np.ndarray:
    """Image ``index`` of ``cls`` in ``domain``: its own scene, rendered in the domain's style
    (uint8; (227, 227, 3), or (227, 227) for sketch)."""
    d, c = pacs.DOMAINS.index(domain), pacs.CLASSES.index(cls)
    rng = np.random.default_rng([seed, d, c, index])
    return PACS_STYLES[domain](pacs_scene(cls, rng), rng)


def make_pacs(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """A stand-in PACS root: ``<domain>/<class>/NNNN.jpg|png`` (``per_class`` each), the split
    files in ``pacs_label/`` (train: all but the last tenth of each class, crossval: that tenth,
    test: all, as released) and STANDIN.md."""
    if per_class < 2:
        raise BenchError(f"--per-class {per_class}: a PACS stand-in needs 2 images per class at least "
                         "(a training and a held-out Photo image)")
    root = _prepare(root, PACS_TITLE)
    held = max(1, int(round(CROSSVAL * per_class)))
    lists: dict[tuple[str, str], list[str]] = {}
    for domain in pacs.DOMAINS:
        for cls in pacs.CLASSES:
            folder = root / domain / cls
            if folder.is_dir():
                shutil.rmtree(folder)  # an earlier stand-in's images
            folder.mkdir(parents=True)
            for i in range(per_class):
                entry = f"{domain}/{cls}/{i:04d}{PACS_SUFFIX[domain]}"
                _save(pacs_image(domain, cls, i, seed), root / entry)
                lists.setdefault((domain, "train" if i < per_class - held else "crossval"), []).append(entry)
                lists.setdefault((domain, "test"), []).append(entry)
    for domain in pacs.DOMAINS:  # train, crossval, test per domain, as released
        pacs.write_split_files(root, {(domain, s): lists[(domain, s)] for s in ("train", "crossval", "test")})
    _write_note(root, PACS_TITLE, seed, f"""
## What is here

- `<domain>/<class>/NNNN.jpg` (sketch: `.png`, as released), {per_class} images of 227x227 per class per domain
  ({per_class * len(pacs.CLASSES) * len(pacs.DOMAINS)} in all), for the domains {', '.join(pacs.DOMAINS)} and the
  classes {', '.join(pacs.CLASSES)}.
- `pacs_label/<domain>_{{train,crossval,test}}_kfold.txt`: crossval = the last {held} images of each class,
  train = the others, test = every image (as released; the loader tests Photo on its crossval part).

A class is a silhouette of a few shapes (the animal, guitar, house or person), textured with its own
scikit-image picture ({', '.join(f'{c}: {t}' for c, (t, _) in CLASS_TEXTURES.items())}) and placed with a seeded
pose (size, rotation, aspect, mirror, position) over a background crop drawn from pictures shared by every
class ({', '.join(BACKGROUNDS)}). A domain is a rendering style: photo = the textured, shaded object with a soft
shadow over a blurred background, sensor noise; art_painting = the same kind of scene median-smoothed,
posterised to 4-6 levels, hue-rotated by 35-90 degrees, saturated, warm varnish, canvas weave; cartoon = flat
fills from a palette every class shares, one shadow tone, a flattened pastel background, dark outlines;
sketch = gray pencil outlines (doubled) and hatching on white. Every image draws its own scene (seed, domain,
class, index), so the domains share the classes, not the pictures.

Rewrite with `python -m bench.datasets.standins pacs DIR --per-class {per_class} --seed {seed}`.
""")
    return root


# ------------------------------------------------------------------ MVTec AD (timing)

# Per category: which embedded texture it is cut from, and a colour tint (grayscale ones stay 1 channel).
_MVTEC_TINTS = ((1.0, 0.92, 0.8), (0.85, 0.95, 1.0), (1.0, 1.0, 0.9), (0.9, 0.8, 1.0), (0.8, 1.0, 0.85))
_MVTEC_WORK_SIDE = textures.SIDE  # drawn at the textures' crop side, then resized to the category's side


def mvtec_image(category: str, split: str, kind: str, index: int, seed: int,
                photos: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """One stand-in image of MVTec AD's ``category`` at its published side and channels, and its
    mask (bool, defects only). A defect type of MVTec AD maps onto one of the textures' synthetic
    defects; each image has its own random stream, so categories can be written in parallel."""
    from .mvtec import MVTEC_CATEGORIES, MVTEC_SHAPE

    side, channels, _, _, types = MVTEC_SHAPE[category]
    c = MVTEC_CATEGORIES.index(category)
    t = 0 if kind == "good" else 1 + list(types).index(kind)
    rng = np.random.default_rng([seed, c, ("train", "test").index(split), t, index])
    texture = textures.CATEGORIES[c % len(textures.CATEGORIES)]
    img = textures.normal_crop(photos, texture, rng)
    mask = None
    if kind != "good":
        img, mask = textures.add_defect(textures.DEFECT_TYPES[(t - 1) % len(textures.DEFECT_TYPES)],
                                        img, rng, photos, texture)
    gray = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).resize((side, side), Image.Resampling.BILINEAR)
    out = np.asarray(gray)
    if channels == 3:
        tint = np.asarray(_MVTEC_TINTS[c % len(_MVTEC_TINTS)])
        out = np.clip(np.rint(out[:, :, None] * tint), 0, 255).astype(np.uint8)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize((side, side), Image.Resampling.NEAREST))
    return out, mask


def _write_mvtec_category(root: Path, category: str, seed: int) -> int:
    from .mvtec import MVTEC_SHAPE

    photos = textures.scaled_photos()
    _, _, n_train, n_good, types = MVTEC_SHAPE[category]
    jobs = [("train", "good", n_train), ("test", "good", n_good), *(("test", k, n) for k, n in types.items())]
    written = 0
    for split, kind, n in jobs:
        folder = root / category / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, mask = mvtec_image(category, split, kind, i, seed, photos)
            # compress_level 1: writing ~5,000 images of 1 Mpx stays minutes, not tens of minutes
            Image.fromarray(img).save(folder / f"{i:03d}.png", format="PNG", compress_level=1)
            written += 1
            if mask is not None:
                gt = root / category / "ground_truth" / kind
                gt.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(gt / f"{i:03d}_mask.png", format="PNG",
                                                                  compress_level=1)
    return written


def make_mvtec_ad(root: Path, categories: list[str] | None = None, seed: int = 0, workers: int = 1) -> Path:
    """A timing stand-in for MVTec AD: its 15 categories (or ``categories``) with the published
    image counts, defect-type counts, sides and channels (``mvtec.MVTEC_SHAPE``), in its layout.

    The pictures are the embedded textures with synthetic defects, resized up to each category's
    side: they do not look like MVTec AD and their numbers mean nothing, but every stage of a grid
    (decoding, resizing, corruption, backbone, search, metrics) does the same amount of work.
    """
    from .mvtec import MVTEC_CATEGORIES

    wanted = list(categories or MVTEC_CATEGORIES)
    for c in wanted:
        if c not in MVTEC_CATEGORIES:
            from ..methods.errors import UnknownName

            raise UnknownName("category", c, MVTEC_CATEGORIES)
    root = _prepare(root, MVTEC_TITLE)
    for c in wanted:  # a category half written by a killed run is written again from scratch
        shutil.rmtree(root / c, ignore_errors=True)
    if workers > 1:
        import concurrent.futures as cf

        with cf.ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_mvtec_category, [root] * len(wanted), wanted, [seed] * len(wanted)))
    else:
        for c in wanted:
            _write_mvtec_category(root, c, seed)
    _write_note(root, MVTEC_TITLE, seed, f"""
A **timing stand-in** for MVTec AD: the categories {", ".join(wanted)} with MVTec AD's published
training / test / defect-type counts, image sides and channels (`bench.datasets.mvtec.MVTEC_SHAPE`),
drawn from the embedded textures (scikit-image photographs) with synthetic defects and masks.
It exists to time grids at MVTec AD's size (`benchmarks/perf_table.py`); its metrics are not
MVTec AD's. Rewrite with `python -m bench.datasets.standins mvtec_ad DIR --seed {seed}`.
""")
    return root


def make_mvtec3d(root: Path, categories: list[str] | None = None, seed: int = 0, per_class: int = 8) -> Path:
    """MVTec 3D-AD's layout, one synthetic fixture per category (seeds seed, seed + 1, ...)."""
    from .mvtec3d import CATEGORIES, write_fixture

    wanted = list(categories or CATEGORIES)
    unknown = [c for c in wanted if c not in CATEGORIES]
    if unknown:
        raise BenchError(f"unknown MVTec 3D-AD categories {', '.join(unknown)}: use some of {', '.join(CATEGORIES)}")
    root = _prepare(Path(root), "Stand-in MVTec 3D-AD")
    for i, cat in enumerate(wanted):
        write_fixture(root, seed=seed + i, category=cat, n_train=per_class)
    _write_note(root, "Stand-in MVTec 3D-AD", seed, f"""Synthetic point clouds in MVTec 3D-AD's layout for the categories {", ".join(wanted)}: each a
64 x 64 organised cloud of a half-ellipsoid on a tilted plane, with dents and protrusions as
defects (`bench.datasets.mvtec3d.write_fixture`, {per_class} training clouds a category). It runs
TTAD Table 2's protocol end to end; its metrics are not MVTec 3D-AD's. Rewrite with
`python -m bench.datasets.standins mvtec3d DIR --seed {seed}`.
""")
    return root


# ------------------------------------------------------------------ command line


REALIAD_TITLE = "Stand-in Real-IAD"
REALIAD_SIDE = 256  # written as the 256 px copies (realiad_256), which the loader accepts
REALIAD_CODES = ("BX", "HS", "QS")  # deformation, scratch, missing parts: three of Real-IAD's defect codes


def realiad_categories(categories: list[str] | None) -> list[str]:
    """The Real-IAD stand-in's categories: those named, else Real-IAD's first two."""
    from .realiad import CATEGORIES

    return list(categories or CATEGORIES[:2])


def make_realiad(root: Path, categories: list[str] | None = None, seed: int = 0, per_class: int = 20) -> Path:
    """Real-IAD's single-view layout for ``categories`` (default: the first two): per category
    ``per_class`` normal training images, half as many normal test images and a quarter as many
    of each defect code (with masks), top camera C1, from the embedded textures with synthetic
    defects; ``realiad_256/<cat>/{OK,NG/<code>}/<sample>/...`` and ``realiad_jsons_sv/<cat>.json``
    as ``datasets/realiad.py`` reads them. TTAD Tables 1 and 3's Real-IAD protocol end to end
    (one adaptation epoch), not its data."""
    import json

    from .realiad import CATEGORIES

    wanted = realiad_categories(categories)
    unknown = [c for c in wanted if c not in CATEGORIES]
    if unknown:
        raise BenchError(f"unknown Real-IAD categories {', '.join(unknown)}: use some of {', '.join(CATEGORIES)}")
    root = _prepare(Path(root), REALIAD_TITLE)
    photos = textures.scaled_photos()
    for c, cat in enumerate(wanted):
        shutil.rmtree(root / "realiad_256" / cat, ignore_errors=True)
        texture = textures.CATEGORIES[c % len(textures.CATEGORIES)]
        train, test, n = [], [], 0

        def write(kind: str, code: str, split: list, defect: str | None) -> None:
            nonlocal n
            n += 1
            rng = np.random.default_rng([seed, c, n])
            img, mask = textures.normal_crop(photos, texture, rng), None
            if defect is not None:
                img, mask = textures.add_defect(defect, img, rng, photos, texture)
            sample = f"S{n:04d}"
            rel = f"{kind}/{code + '/' if kind == 'NG' else ''}{sample}/{cat}_{n:04d}_{kind}_C1_20231101{n:06d}.jpg"
            (root / "realiad_256" / cat / rel).parent.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).convert("RGB")
            _save(picture.resize((REALIAD_SIDE, REALIAD_SIDE), Image.Resampling.BILINEAR), root / "realiad_256" / cat / rel)
            mrel = None
            if mask is not None:
                mrel = rel[:-4] + "_mask.png"
                _save(Image.fromarray(mask.astype(np.uint8) * 255).resize((REALIAD_SIDE, REALIAD_SIDE),
                                                                          Image.Resampling.NEAREST),
                      root / "realiad_256" / cat / mrel)
            split.append({"category": cat, "anomaly_class": code, "image_path": rel, "mask_path": mrel})

        for _ in range(per_class):
            write("OK", "OK", train, None)
        for _ in range(max(1, per_class // 2)):
            write("OK", "OK", test, None)
        for k, code in enumerate(REALIAD_CODES):
            for _ in range(max(1, per_class // 4)):
                write("NG", code, test, textures.DEFECT_TYPES[k % len(textures.DEFECT_TYPES)])
        doc = {"meta": {"prefix": f"{cat}/", "normal_class": "OK", "pre_transform": False}, "train": train, "test": test}
        (root / "realiad_jsons_sv").mkdir(parents=True, exist_ok=True)
        (root / "realiad_jsons_sv" / f"{cat}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    _write_note(root, REALIAD_TITLE, seed, f"""Synthetic images in Real-IAD's single-view layout (top camera C1, the 256 px copies) for the
categories {", ".join(wanted)}: {per_class} normal training images a category, cut from the embedded
textures, and test images with synthetic defects under three of Real-IAD's defect codes
({", ".join(REALIAD_CODES)}), with masks. It runs TTAD Tables 1 and 3's Real-IAD protocol end to end
(`bench reproduce ttad-table1 --dataset realiad --root DIR`); its numbers are not Real-IAD's.
Rewrite with `python -m bench.datasets.standins realiad DIR --seed {seed}`.
""")
    return root


CIFAR_TITLE = "Stand-in CIFAR-10"
# a class's tint (R, G, B gains) over its texture: ten classes from three textures stay apart
_CIFAR_TINTS = ((1.0, 0.6, 0.6), (0.6, 1.0, 0.6), (0.6, 0.6, 1.0), (1.0, 1.0, 0.5), (0.5, 1.0, 1.0),
                (1.0, 0.5, 1.0), (0.9, 0.9, 0.9), (1.0, 0.8, 0.5), (0.5, 0.8, 1.0), (0.7, 0.5, 0.9))


def make_cifar10(root: Path, per_class: int = 50, seed: int = 0) -> Path:
    """CIFAR-10's python release (``cifar-10-batches-py/``: five training pickles, ``test_batch``,
    ``batches.meta``, the real layout ``datasets/cifar10.py`` reads): ``per_class`` training and
    ``per_class / 5`` test images of 32 x 32 per class, a class being one texture under its own
    tint. GNL Table 2's one-class protocol end to end, not its data."""
    import pickle

    from .cifar10 import CATEGORIES, FOLDER, META_FILE, TEST_FILE, TRAIN_FILES

    root = _prepare(Path(root), CIFAR_TITLE)
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    photos = textures.scaled_photos()

    def images(split: int, n: int) -> tuple[np.ndarray, list[int]]:
        data, labels = [], []
        for i in range(n):
            for k in range(len(CATEGORIES)):
                rng = np.random.default_rng([seed, split, k, i])
                crop = textures.normal_crop(photos, textures.CATEGORIES[k % len(textures.CATEGORIES)], rng)
                small = np.asarray(Image.fromarray(np.clip(np.rint(crop), 0, 255).astype(np.uint8)).resize(
                    (32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
                rgb = np.clip(np.rint(small[:, :, None] * np.asarray(_CIFAR_TINTS[k])), 0, 255).astype(np.uint8)
                data.append(rgb.transpose(2, 0, 1).reshape(-1))  # the release's R, G, B planes, row-major
                labels.append(k)
        return np.stack(data), labels

    def write(name: str, batch: tuple[np.ndarray, list[int]], label: str) -> None:
        data, labels = batch
        entry = {"batch_label": label, "labels": labels, "data": data,
                 "filenames": [f"standin_{name}_{i:05d}.png" for i in range(len(labels))]}
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f, protocol=2)

    per_batch = max(1, per_class // len(TRAIN_FILES))
    for b, name in enumerate(TRAIN_FILES):
        write(name, images(1 + b, per_batch), f"training batch {b + 1} of {len(TRAIN_FILES)}")
    write(TEST_FILE, images(0, max(1, per_class // 5)), "testing batch 1 of 1")
    with (folder / META_FILE).open("wb") as f:
        pickle.dump({"label_names": list(CATEGORIES), "num_cases_per_batch": per_batch * len(CATEGORIES),
                     "num_vis": 3072}, f, protocol=2)
    _write_note(root, CIFAR_TITLE, seed, f"""Synthetic 32 x 32 images in CIFAR-10's python release layout: {per_batch * len(TRAIN_FILES)} training and
{max(1, per_class // 5)} test images per class, a class being one of the embedded textures under its own
tint. It runs GNL Table 2's one-class protocol end to end (`bench reproduce gnl-table2 --root DIR`);
its numbers are not CIFAR-10's. Rewrite with `python -m bench.datasets.standins cifar10 DIR --seed {seed}`.
""")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.datasets.standins",
        description="Write deterministic stand-in data (synthetic, no download) in a dataset's released layout.")
    parser.add_argument("dataset", choices=("mnist", "pacs", "mvtec_ad", "mvtec3d", "realiad", "cifar10"))
    parser.add_argument("root", type=Path, help="the folder to write (new, empty, or an earlier stand-in)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="mnist: training digits per class (test: half; default 100); "
                             "pacs: images per class per domain (default 40); mvtec3d: training clouds (default 8); "
                             "realiad: training images per category (default 20); "
                             "cifar10: training images per class (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", default=None,
                        help="mvtec_ad / mvtec3d / realiad: comma-separated categories to write "
                             "(default: all; realiad: its first two)")
    parser.add_argument("--workers", type=int, default=1, help="mvtec_ad: categories written in parallel")
    args = parser.parse_args(argv)
    if args.per_class is not None and args.per_class < 1:
        parser.error("--per-class must be at least 1")
    cats = [c for c in (args.categories or "").split(",") if c] or None
    # a stand-in of some categories: the command it suggests must ask for those alone
    only = f" --categories {','.join(cats)}" if cats else ""
    try:
        if args.dataset == "mvtec_ad":
            root = make_mvtec_ad(args.root, cats, seed=args.seed, workers=args.workers)
            print(f"timing stand-in MVTec AD (seed {args.seed}) is in {root}: bench grid --dataset mvtec_ad --root {root}{only}")
        elif args.dataset == "mvtec3d":
            root = make_mvtec3d(args.root, cats, seed=args.seed, per_class=args.per_class or 8)
            print(f"stand-in MVTec 3D-AD (seed {args.seed}) is in {root}: bench reproduce ttad-table2 --root {root}{only}")
        elif args.dataset == "realiad":
            root = make_realiad(args.root, cats, seed=args.seed, per_class=args.per_class or 20)
            print(f"stand-in Real-IAD (seed {args.seed}) is in {root}: bench reproduce ttad-table1 --dataset realiad "
                  f"--root {root} --categories {','.join(realiad_categories(cats))}")
        elif args.dataset == "cifar10":
            root = make_cifar10(args.root, per_class=args.per_class or 50, seed=args.seed)
            print(f"stand-in CIFAR-10 (seed {args.seed}) is in {root}: bench reproduce gnl-table2 --root {root}")
        elif args.dataset == "mnist":
            n = 100 if args.per_class is None else args.per_class
            root = make_mnist(args.root, per_class_train=n, per_class_test=max(1, n // 2), seed=args.seed)
            print(f"stand-in MNIST (seed {args.seed}) is in {root}: bench grid --dataset mnist --root {root} --domains all")
        else:
            root = make_pacs(args.root, per_class=40 if args.per_class is None else args.per_class, seed=args.seed)
            print(f"stand-in PACS (seed {args.seed}) is in {root}: bench grid --dataset pacs --root {root} --domains all")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
