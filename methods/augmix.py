"""AugMix views for GNL's distribution-invariant normality learning (the MVTec setting).

Only photometric PIL ops that cannot create a defect and do not overlap the test corruptions:
autocontrast, equalize, posterize, solarize, color, sharpness. Left out on purpose: the
geometric ops of standard AugMix (rotate, shear_x/y, translate_x/y, which can fabricate
anomalies) and contrast/brightness (they coincide with test corruptions).

A view is ``(1 - m) * x + m * sum_i w_i * chain_i(x)`` in the teacher's normalised tensor space,
with ``w ~ Dirichlet(1, ..., 1)`` over ``width`` chains, ``m ~ Beta(1, 1)`` and each chain a
random sequence of 1-3 ops (``depth=-1``) at a level drawn per op. The per-image severity is a
random integer in 0..``severity``, as in the ADShift MVTec loader. Harness choice: each chain
draws its own depth (standard AugMix); the ADShift loader lets the first chain's draw fix it for
all three. All randomness comes from a caller's ``numpy.random.Generator``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .backbones import Normalization

MAX_LEVEL = 10.0  # AugMix's level scale


def _autocontrast(img: Image.Image, level: float) -> Image.Image:
    return ImageOps.autocontrast(img)


def _equalize(img: Image.Image, level: float) -> Image.Image:
    return ImageOps.equalize(img)


def _posterize(img: Image.Image, level: float) -> Image.Image:
    return ImageOps.posterize(img, 4 - int(level * 4 / MAX_LEVEL))  # keep 4..1 bits


def _solarize(img: Image.Image, level: float) -> Image.Image:
    return ImageOps.solarize(img, 256 - int(level * 256 / MAX_LEVEL))


def _enhance(kind: type) -> Callable[[Image.Image, float], Image.Image]:
    def op(img: Image.Image, level: float) -> Image.Image:
        return kind(img).enhance(0.1 + level * 1.8 / MAX_LEVEL)  # factor in [0.1, 1.9]

    return op


# name -> op(PIL image, level in [0, MAX_LEVEL]); every op AugMix may apply is looked up here
OPERATIONS: dict[str, Callable[[Image.Image, float], Image.Image]] = {
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "posterize": _posterize,
    "solarize": _solarize,
    "color": _enhance(ImageEnhance.Color),
    "sharpness": _enhance(ImageEnhance.Sharpness),
}
MVTEC_OPS = tuple(OPERATIONS)
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
CORRUPTION_OPS = ("contrast", "brightness")
EXCLUDED_OPS = GEOMETRIC_OPS + CORRUPTION_OPS


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
) -> np.ndarray:
    """One AugMix view of a uint8 (H, W, 3) image as a float32 (3, H, W) array normalised with
    ``norm`` (the teacher's input normalisation)."""
    bad = [o for o in ops if o in EXCLUDED_OPS or o not in OPERATIONS]
    if bad:
        raise ValueError(f"AugMix ops {bad} are not allowed: use photometric ops from {list(OPERATIONS)}")
    pil = Image.fromarray(image)
    sev = int(rng.integers(0, severity + 1))
    weights = rng.dirichlet([alpha] * width).astype(np.float32)
    m = np.float32(rng.beta(alpha, alpha))
    mix = np.zeros((3, *image.shape[:2]), np.float32)
    for w in weights:
        chain = pil
        n = depth if depth > 0 else int(rng.integers(1, 4))
        for _ in range(n):
            name = ops[int(rng.integers(len(ops)))]
            level = 0.1 + (sev - 0.1) * rng.random()  # uniform between 0.1 and the severity
            chain = OPERATIONS[name](chain, level)
        mix += w * _normalise(np.asarray(chain), norm)
    return (1.0 - m) * _normalise(image, norm) + m * mix
