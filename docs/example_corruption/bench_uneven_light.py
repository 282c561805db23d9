"""Uneven light: a brightness ramp across the image at a random angle, as from a lamp moved aside.

An adshift-bench corruption in its own package, found through the ``bench.corruptions``
entry-point group (docs/adding-a-corruption.md walks through it).
"""
from __future__ import annotations

import numpy as np

from bench.datasets.custom_corruptions import register_corruption

# the share of the light lost at the dark edge, at severities 1-5
LOSS = (0.2, 0.35, 0.5, 0.65, 0.8)


@register_corruption("uneven_light", summary="Uneven light: a brightness ramp at a random angle (example plugin)")
def uneven_light(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)  # from the rng the harness seeds per image: every method sees these pixels
    y, x = np.mgrid[0:h, 0:w]
    ramp = (x - w / 2) * np.cos(angle) + (y - h / 2) * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-9)  # 0 at the bright edge, 1 at the dark one
    gain = 1.0 - LOSS[severity - 1] * ramp
    return np.clip(image * gain[..., None], 0, 255).astype(np.uint8)
