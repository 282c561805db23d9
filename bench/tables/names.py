"""Display names: corruptions, datasets, methods and their default order, metric headers.

Method names and order come from the method registry (given at registration), metric headers
from the metrics registry (``bench.metrics.METRICS``).
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..methods import registered
from ..metrics import METRICS

# Hendrycks-Dietterich order (noise, blur, weather, digital, then the extra four); TTAD's
# tables follow it (noise, defocus, brightness, contrast).
CORRUPTION_NAMES: dict[str, str] = {
    "gaussian_noise": "Gaussian Noise",
    "shot_noise": "Shot Noise",
    "impulse_noise": "Impulse Noise",
    "defocus_blur": "Defocus Blur",
    "glass_blur": "Glass Blur",
    "motion_blur": "Motion Blur",
    "zoom_blur": "Zoom Blur",
    "snow": "Snow",
    "frost": "Frost",
    "fog": "Fog",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "elastic_transform": "Elastic Transform",
    "pixelate": "Pixelate",
    "jpeg_compression": "JPEG Compression",
    "speckle_noise": "Speckle Noise",
    "gaussian_blur": "Gaussian Blur",
    "spatter": "Spatter",
    "saturate": "Saturate",
}
DATASET_NAMES: dict[str, str] = {
    "mvtec_ad": "MVTec AD",
    "real_iad": "Real-IAD",
    "visa": "VisA",
    "btad": "BTAD",
    "mpdd": "MPDD",
    "cifar10": "CIFAR-10",
}


def method_display(name: str) -> str:
    """The name tables show for a method: given at registration (a plugin sets its own)."""
    table = registered()
    reg = table.get(str(name)) or table.get(str(name).lower())
    return reg.display if reg is not None else str(name)


def method_rank() -> dict[str, float]:
    """Default row order: the ``order`` given at registration (methods without one follow, in the
    order their rows appear)."""
    return {n: r.order for n, r in registered().items() if r.order is not None}


METRIC_NAMES: dict[str, str] = {name: m.label for name, m in METRICS.items()}

CLEAN = "Clean"
MEAN = "Mean"


def _nice(name: str, table: Mapping[str, str]) -> str:
    return table.get(str(name), table.get(str(name).lower(), str(name)))


def condition_label(corruption: str, severity: int | None = None, with_severity: bool = False) -> str:
    """"Clean", "Gaussian Noise", or "Contrast (s3)" when severities must be told apart."""
    if corruption == "clean":
        return CLEAN
    name = CORRUPTION_NAMES.get(corruption, str(corruption).replace("_", " ").title())
    return f"{name} (s{int(severity)})" if with_severity and severity is not None else name


def _corruption_rank(corruption: str) -> tuple:
    if corruption == "clean":
        return (0, 0, "")
    order = list(CORRUPTION_NAMES)
    if corruption in CORRUPTION_NAMES:
        return (1, order.index(corruption), "")
    return (2, 0, str(corruption))


def _cond_labels(pairs: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    counts = pd.Series([c for c, _ in pairs]).value_counts().to_dict() if pairs else {}
    return {(c, s): condition_label(c, s, counts.get(c, 0) > 1) for c, s in pairs}
