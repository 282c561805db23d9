"""Display names: corruptions, datasets, test domains, methods and their default order, metric headers.

Method names and order come from the method registry (given at registration), metric headers
from the metrics registry (``bench.metrics.METRICS``).
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Mapping, Sequence

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
    "point_gaussian_noise": "Point Gaussian Noise",
}
DATASET_NAMES: dict[str, str] = {
    "mvtec_ad": "MVTec AD",
    "realiad": "Real-IAD",  # the registered dataset
    "real_iad": "Real-IAD",  # its key in published_results.csv
    "visa": "VisA",
    "btad": "BTAD",
    "mpdd": "MPDD",
    "cifar10": "CIFAR-10",
    "mnist": "MNIST/MNIST-M",
    "pacs": "PACS",
    "mvtec3d": "MVTec 3D-AD",
}
# Test domains as the papers print them (GNL Tables 3, 4, 8-10), in their order: a dataset's
# in-distribution domain first.
DOMAIN_NAMES: dict[str, str] = {
    "mnist": "MNIST",
    "mnist_m": "MNIST-M",
    "photo": "Photo",
    "art_painting": "Art",
    "cartoon": "Cartoon",
    "sketch": "Sketch",
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


def config_fields(configs: Mapping[str, object], shown: Sequence[str] = ()) -> dict[str, list[str]]:
    """Per config hash, "field value" for the ``shown`` fields its configs have, then for every
    field whose value differs between them (no cap: a variant left out of the label would share
    another's). ``configs``: config hash -> the rows' config (JSON text; unparsable: no fields).
    The labels of one method's variants in tables and figures (bench.plots.common)."""
    parsed = {h: _parse_config(c) for h, c in configs.items()}
    differing = [k for k in dict.fromkeys(k for c in parsed.values() for k in c)
                 if len({json.dumps(c.get(k), sort_keys=True) for c in parsed.values()}) > 1]
    fields = list(dict.fromkeys([*(k for k in shown if any(k in c for c in parsed.values())), *differing]))
    return {h: [f"{k} {cfg.get(k)}" for k in fields] for h, cfg in parsed.items()}


def _parse_config(text: object) -> dict:
    try:
        cfg = json.loads(str(text))
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


METRIC_NAMES: dict[str, str] = {name: m.label for name, m in METRICS.items()}

CLEAN = "Clean"
MEAN = "Mean"


def _nice(name: str, table: Mapping[str, str]) -> str:
    return table.get(str(name), table.get(str(name).lower(), str(name)))


def domain_label(domain: str) -> str:
    """"MNIST-M", "Art", ...: a test domain as the papers name it."""
    return DOMAIN_NAMES.get(str(domain), str(domain).replace("_", " ").title())


def condition_label(corruption: str, severity: int | None = None, with_severity: bool = False,
                    domain: str = "") -> str:
    """"Clean", "Gaussian Noise", or "Contrast (s3)" when severities must be told apart; with a
    test domain, "Art" (clean) or "Art + Contrast"."""
    if corruption == "clean":
        return domain_label(domain) if domain else CLEAN
    name = CORRUPTION_NAMES.get(corruption, str(corruption).replace("_", " ").title())
    name = f"{name} (s{int(severity)})" if with_severity and severity is not None else name
    return f"{domain_label(domain)} + {name}" if domain else name


def in_distribution(dataset: str) -> str:
    """The test domain a dataset trains on (its first), "" for a dataset with one test split."""
    from ..datasets.registry import DATASETS

    spec = DATASETS.get(str(dataset))
    return spec.domains[0] if spec is not None and spec.domains else ""


def is_reference(dataset: str, condition: tuple) -> bool:
    """Whether a (domain, corruption, severity) column is the unshifted one ("Clean", or the
    in-distribution domain uncorrupted) that a Mean over the shifted conditions leaves out."""
    domain, corruption = condition[0], condition[1]
    return corruption == "clean" and domain in ("", in_distribution(dataset))


def _corruption_rank(corruption: str) -> tuple:
    if corruption == "clean":
        return (0, 0, "")
    order = list(CORRUPTION_NAMES)
    if corruption in CORRUPTION_NAMES:
        return (1, order.index(corruption), "")
    return (2, 0, str(corruption))


def _domain_rank(domain: str) -> tuple:
    if not domain:
        return (0, 0, "")
    if domain in DOMAIN_NAMES:
        return (1, list(DOMAIN_NAMES).index(domain), "")
    return (2, 0, str(domain))


def _condition_rank(condition: tuple) -> tuple:
    """Table order of (domain, corruption, severity): domains in the papers' order, then as before."""
    domain, corruption, severity = condition
    return (_domain_rank(domain), _corruption_rank(corruption), severity)


def _cond_labels(conds: list[tuple]) -> dict[tuple, str]:
    """Column labels of (corruption, severity) or (domain, corruption, severity) conditions; the
    severity is shown where one domain holds several of a corruption."""
    full = {c: (c if len(c) == 3 else ("", *c)) for c in conds}
    counts = Counter((d, c) for d, c, _ in full.values())
    return {k: condition_label(c, s, counts.get((d, c), 0) > 1, d) for k, (d, c, s) in full.items()}
