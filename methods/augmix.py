"""AugMix views (Hendrycks et al., ICLR 2020) for the distillation family.

Two users with different op lists (``OP_LISTS``, the config field ``augmix_ops``):

- GNL's distribution-invariant normality learning (ADShift's loaders): photometric ops only,
  since the geometric ops of standard AugMix (rotate, shear_x/y, translate_x/y) can fabricate
  anomalies. ``mvtec``: autocontrast, equalize, posterize, solarize, color, sharpness (contrast
  and brightness left out: they coincide with test corruptions); ``pacs``: the same plus
  contrast and brightness.
- The AugMix baseline of GNL's tables (RD4AD trained on AugMix views): ``all`` is AugMix's
  whole list (``augmentations_all`` of the reference code, geometric ops included), which GNL
  uses on MNIST and PACS; ``all_but_brightness_contrast`` leaves out the two ops that overlap
  the test corruptions, as GNL does on MVTec AD and CIFAR-10.

A view is ``(1 - m) * x + m * sum_i w_i * chain_i(x)`` in the teacher's normalised tensor space,
with ``w ~ Dirichlet(1, ..., 1)`` over ``width`` chains, ``m ~ Beta(1, 1)`` and each chain a
random sequence of 1-3 ops (``depth=-1``) at a level drawn per op, uniform in (0.1, severity).
``random_severity`` (ADShift's loaders) first draws the image's severity as a random integer in
0..``severity``; AugMix's reference code uses ``severity`` itself. Harness choice: each chain
draws its own depth (standard AugMix); the ADShift loader lets the first chain's draw fix it for
all three. All randomness comes from a caller's ``numpy.random.Generator``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .backbones import Normalization

MAX_LEVEL = 10.0  # AugMix's level scale


def _autocontrast(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.autocontrast(img)


def _equalize(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.equalize(img)


def _posterize(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.posterize(img, 4 - int(level * 4 / MAX_LEVEL))  # keep 4..1 bits


def _solarize(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
    return ImageOps.solarize(img, 256 - int(level * 256 / MAX_LEVEL))


Op = Callable[[Image.Image, float, np.random.Generator], Image.Image]


def _enhance(kind: type) -> Op:
    def op(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
        return kind(img).enhance(0.1 + level * 1.8 / MAX_LEVEL)  # factor in [0.1, 1.9]

    return op


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() > 0.5 else value  # the geometric ops' random direction


def _rotate(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
    return img.rotate(_signed(int(level * 30 / MAX_LEVEL), rng), resample=Image.BILINEAR)  # up to 30 degrees


def _affine(coefficients: Callable[[float, tuple[int, int]], tuple[float, ...]]) -> Op:
    def op(img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
        return img.transform(img.size, Image.AFFINE, coefficients(_signed(level, rng), img.size),
                             resample=Image.BILINEAR)

    return op


# shear up to 0.3, translation up to a third of the side (AugMix's ranges)
_shear_x = _affine(lambda lv, wh: (1, lv * 0.3 / MAX_LEVEL, 0, 0, 1, 0))
_shear_y = _affine(lambda lv, wh: (1, 0, 0, lv * 0.3 / MAX_LEVEL, 1, 0))
_translate_x = _affine(lambda lv, wh: (1, 0, int(lv * wh[0] / 3 / MAX_LEVEL), 0, 1, 0))
_translate_y = _affine(lambda lv, wh: (1, 0, 0, 0, 1, int(lv * wh[1] / 3 / MAX_LEVEL)))

# name -> op(PIL image, level in [0, MAX_LEVEL], generator); every op AugMix may apply is looked up here
OPERATIONS: dict[str, Op] = {
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "posterize": _posterize,
    "rotate": _rotate,
    "solarize": _solarize,
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
    "color": _enhance(ImageEnhance.Color),
    "contrast": _enhance(ImageEnhance.Contrast),
    "brightness": _enhance(ImageEnhance.Brightness),
    "sharpness": _enhance(ImageEnhance.Sharpness),
}
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
CORRUPTION_OPS = ("contrast", "brightness")
EXCLUDED_OPS = GEOMETRIC_OPS + CORRUPTION_OPS  # what GNL's MVTec list leaves out
ALL_OPS = tuple(OPERATIONS)  # AugMix's augmentations_all, in its order
MVTEC_OPS = tuple(o for o in ALL_OPS if o not in EXCLUDED_OPS)
# the config field ``augmix_ops``: name -> ops, each in the order its source lists them
OP_LISTS: dict[str, tuple[str, ...]] = {
    "mvtec": MVTEC_OPS,  # ADShift's MVTec loader (GNL)
    "pacs": ("autocontrast", "equalize", "posterize", "solarize", "color", "contrast", "brightness",
             "sharpness"),  # ADShift's PACS loader (GNL)
    "all": ALL_OPS,  # AugMix baseline on MNIST and PACS
    "all_but_brightness_contrast": tuple(o for o in ALL_OPS if o not in CORRUPTION_OPS),  # ... on MVTec, CIFAR-10
}


def _normalise(img: np.ndarray, norm: Normalization) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    return ((x - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)).transpose(2, 0, 1)


def augmix(
    image: np.ndarray,
    rng: np.random.Generator,
    norm: Normalization,
    *,
    ops: Sequence[str] = MVTEC_OPS,
    width: int = 3,
    depth: int = -1,
    severity: int = 3,
    alpha: float = 1.0,
    random_severity: bool = True,
) -> np.ndarray:
    """One AugMix view of a uint8 (H, W, 3) image as a float32 (3, H, W) array normalised with
    ``norm`` (the teacher's input normalisation)."""
    bad = [o for o in ops if o not in OPERATIONS]
    if bad:
        raise ValueError(f"unknown AugMix ops {bad}: use ops from {list(OPERATIONS)}")
    pil = Image.fromarray(image)
    sev = int(rng.integers(0, severity + 1)) if random_severity else severity
    weights = rng.dirichlet([alpha] * width).astype(np.float32)
    m = np.float32(rng.beta(alpha, alpha))
    mix = np.zeros((3, *image.shape[:2]), np.float32)
    for w in weights:
        chain = pil
        n = depth if depth > 0 else int(rng.integers(1, 4))
        for _ in range(n):
            name = ops[int(rng.integers(len(ops)))]
            level = 0.1 + (sev - 0.1) * rng.random()  # uniform between 0.1 and the severity
            chain = OPERATIONS[name](chain, level, rng)
        mix += w * _normalise(np.asarray(chain), norm)
    return (1.0 - m) * _normalise(image, norm) + m * mix
