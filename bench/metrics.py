"""Evaluation metrics shared by every method.

Image-level metrics take a 1-D array of binary labels (1 = anomalous) and a
1-D array of anomaly scores. Pixel-level metrics take binary ground-truth
masks and anomaly maps of the same shape (N, H, W); they are computed over
all pixels of all test images at once (dataset level).

The pixel-level metrics avoid one big argsort over every pixel: they split
the pixels into the two classes, sort the larger class once and binary-search
it with the (sorted) smaller class. Ties are handled exactly as scikit-learn
does (a tied positive/negative pair counts one half for AUROC; a tied group of
scores is a single threshold for the curves). The normal pixels may come as
several sorted parts (the normal images' and each defect type's): every count
is a sum over the parts, so the per-defect-type breakdown (``per_defect_type``)
and the overall metrics share one sort of the pixels and give the same numbers
as one sorted array would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# scipy.ndimage and sklearn.metrics (1.4 s) are imported where they are used, so that reading the
# registry (results schema, tables, CLI) stays cheap.

__all__ = [
    "image_auroc",
    "image_f1_max",
    "image_ap",
    "pixel_auroc",
    "pixel_ap",
    "aupro",
    "pro_curve",
    "compute_all",
    "per_defect_type",
    "DEFECT_TYPE_METRICS",
    "Metric",
    "METRICS",
    "METRIC_NAMES",
]

_NAN = float("nan")
# 8-connectivity for ground-truth regions, as in the MVTec AD evaluation code.
_STRUCTURE_8 = np.ones((3, 3), dtype=bool)


# --------------------------------------------------------------------------- #
# input validation
# --------------------------------------------------------------------------- #


def _as_binary(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be boolean or numeric 0/1, got dtype {arr.dtype}")
    if not ((arr == 0) | (arr == 1)).all():
        raise ValueError(f"{name} must be binary (only 0 and 1), got other values")
    return arr != 0


def _as_finite_scores(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind == "f":
        # float32 / float64 kept as they are (ties then match sklearn exactly); float16 widens to
        # float32 losslessly; longdouble narrows to float64, as sklearn reads it
        if arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)
        elif arr.dtype.itemsize > 8:
            arr = arr.astype(np.float64)
    elif arr.dtype.kind in "iub":
        if arr.dtype.kind != "b" and arr.size and np.abs(arr).max() > 2**53:
            # float64 would merge neighbouring integers there, and with them their ranks
            raise ValueError(f"{name} hold integers beyond 2**53, which float64 cannot tell apart; "
                             "scale them to floats first")
        arr = arr.astype(np.float64)
    else:
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise ValueError(f"{name} contain NaN or inf values ({bad} of {arr.size})")
    return arr


def _image_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = _as_binary(labels, "labels").reshape(-1)
    s = _as_finite_scores(scores, "image scores").reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and image scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise ValueError("labels and image scores are empty")
    return y, s


def _pixel_inputs(masks, maps, need_3d: bool = False) -> tuple[np.ndarray, np.ndarray]:
    m = _as_binary(masks, "masks")
    a = _as_finite_scores(maps, "anomaly map scores")
    if m.shape != a.shape:
        raise ValueError(f"masks and anomaly maps differ in shape: {m.shape} vs {a.shape}")
    if m.size == 0:
        raise ValueError("masks and anomaly maps are empty")
    if need_3d and m.ndim != 3:
        raise ValueError(f"masks and anomaly maps must have shape (N, H, W), got {m.shape}")
    return m, a


def _one_class(y: np.ndarray) -> bool:
    n_pos = int(np.count_nonzero(y))
    return n_pos == 0 or n_pos == y.size


# --------------------------------------------------------------------------- #
# image level
# --------------------------------------------------------------------------- #


def image_auroc(labels, scores) -> float:
    """Area under the ROC curve of image scores; NaN if only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, s = _image_inputs(labels, scores)
    if _one_class(y):
        return _NAN
    return float(roc_auc_score(y, s))


def image_f1_max(labels, scores) -> float:
    """Best F1 over all thresholds of the precision-recall curve; NaN if only one class is present
    (with anomalous images alone it would be 1 whatever the scores)."""
    from sklearn.metrics import precision_recall_curve

    y, s = _image_inputs(labels, scores)
    if _one_class(y):
        return _NAN
    precision, recall, _ = precision_recall_curve(y, s)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(f1.max())


def image_ap(labels, scores) -> float:
    """Average precision of image scores (anomalous = positive); NaN if only one class is present
    (with anomalous images alone it would be 1 whatever the scores)."""
    from sklearn.metrics import average_precision_score

    y, s = _image_inputs(labels, scores)
    if _one_class(y):
        return _NAN
    return float(average_precision_score(y, s))


# --------------------------------------------------------------------------- #
# pixel level
# --------------------------------------------------------------------------- #


def _split_sorted(m: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of positive and of negative pixels, each sorted ascending."""
    pos = a[m]
    pos.sort()
    neg = a[~m]
    neg.sort()
    return pos, neg


def _count_lt_le(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key, #table < key and #table <= key (table sorted ascending)."""
    lt = np.searchsorted(table, keys, side="left")
    le = lt.copy()
    # A second full binary search is the slowest step; only keys tied with a table value need it.
    found = table[np.minimum(lt, table.size - 1)] == keys
    found &= lt < table.size
    tied = np.flatnonzero(found)
    if tied.size:
        le[tied] = np.searchsorted(table, keys[tied], side="right")
    return lt, le


def pixel_auroc(masks, maps) -> float:
    """AUROC over all pixels of all images; NaN without positive or negative pixels.

    Exact, equal to ``roc_auc_score(masks.ravel(), maps.ravel())`` including ties.
    """
    m, a = _pixel_inputs(masks, maps)
    if _one_class(m):
        return _NAN
    return _pixel_auroc_sorted(*_split_sorted(m, a))


def _count_lt_le_parts(tables: tuple[np.ndarray, ...], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_count_lt_le`` over the union of several sorted tables."""
    lt = np.zeros(keys.shape, np.int64)
    le = np.zeros(keys.shape, np.int64)
    for table in tables:
        if table.size:
            a, b = _count_lt_le(table, keys)
            lt += a
            le += b
    return lt, le


def _u2(pos: np.ndarray, neg: np.ndarray) -> int:
    """Mann-Whitney U doubled: pairs (p, n) with p > n count 2, ties 1 (both sorted ascending).

    The smaller class is searched in the larger one; s = 2 * #(key > other) + #(key == other)."""
    if pos.size <= neg.size:
        keys, table = pos, neg
    else:
        keys, table = neg, pos
    lt, le = _count_lt_le(table, keys)
    s = int(lt.sum(dtype=np.int64)) + int(le.sum(dtype=np.int64))
    return s if keys is pos else 2 * pos.size * neg.size - s


def _pixel_auroc_sorted(pos: np.ndarray, *negs: np.ndarray) -> float:
    """AUROC of sorted positive scores against the union of the sorted negative parts."""
    n_pos, n_neg = pos.size, sum(n.size for n in negs)
    if n_pos == 0 or n_neg == 0:
        return _NAN
    return sum(_u2(pos, n) for n in negs if n.size) / (2 * n_pos * n_neg)


def pixel_ap(masks, maps) -> float:
    """Average precision over all pixels of all images; NaN without positive or without negative
    pixels (1 whatever the scores).

    Exact, equal to ``average_precision_score(masks.ravel(), maps.ravel())``.
    """
    m, a = _pixel_inputs(masks, maps)
    if _one_class(m):
        return _NAN
    return _pixel_ap_sorted(*_split_sorted(m, a))


def _pixel_ap_sorted(pos: np.ndarray, *negs: np.ndarray) -> float:
    n_pos = pos.size
    if n_pos == 0 or not any(n.size for n in negs):
        return _NAN
    # Recall only changes at thresholds equal to a positive score.
    values, counts = np.unique(pos, return_counts=True)
    values, counts = values[::-1], counts[::-1]
    tp = np.cumsum(counts)
    fp = sum(n.size - np.searchsorted(n, values, side="left") for n in negs)
    precision = tp / (tp + fp)
    return float(np.sum(counts / n_pos * precision))


def _region_pixels(m: np.ndarray, a: np.ndarray, images: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores of all ground-truth region pixels, their global region ids, region count
    (of the images at the indices ``images``; None: every image)."""
    from scipy import ndimage

    values, ids = [], []
    n_regions = 0
    has = m.reshape(m.shape[0], -1).any(axis=1)
    for i in np.flatnonzero(has) if images is None else [i for i in images if has[i]]:
        lab, n = ndimage.label(m[i], structure=_STRUCTURE_8)
        inside = lab > 0
        values.append(a[i][inside])
        ids.append(lab[inside].astype(np.int64) + (n_regions - 1))
        n_regions += n
    if n_regions == 0:
        return np.empty(0, a.dtype), np.empty(0, np.int64), 0
    return np.concatenate(values), np.concatenate(ids), n_regions


def _trapezoid_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Area under the piecewise-linear curve (x nondecreasing) from x[0] to x_max."""
    end = int(np.searchsorted(x, x_max, side="right"))
    xs, ys = x[:end], y[:end]
    if end < x.size:
        x0, x1, y0, y1 = x[end - 1], x[end], y[end - 1], y[end]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        xs = np.append(xs, x_max)
        ys = np.append(ys, y_at)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-region-overlap curve: (fpr, pro) vertices, from (0, 0) to (1, 1).

    One vertex pair per distinct region-pixel score; thresholds in between only
    change the FPR, so they add collinear points that do not alter the area.
    """
    m, a = _pixel_inputs(masks, maps, need_3d=True)
    neg = a[~m]
    neg.sort()
    return _pro_curve_sorted(m, a, neg)


def _pro_curve_sorted(m: np.ndarray, a: np.ndarray, *negs: np.ndarray,
                      images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve of the regions of ``images`` (None: all) against the union of the sorted
    negative parts ``negs``."""
    values, ids, n_regions = _region_pixels(m, a, images)
    n_neg = sum(n.size for n in negs)
    if n_regions == 0 or n_neg == 0:
        return np.empty(0), np.empty(0)
    sizes = np.bincount(ids, minlength=n_regions)
    # Each region pixel adds 1 / (region size * number of regions) to the PRO.
    weights = 1.0 / (sizes[ids] * float(n_regions))

    order = np.argsort(values, kind="stable")[::-1]
    values, weights = values[order], weights[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    thresholds = values[starts]
    pro_at = np.cumsum(np.add.reduceat(weights, starts))
    pro_at = np.minimum(pro_at, 1.0)
    pro_before = np.r_[0.0, pro_at[:-1]]

    lt, le = _count_lt_le_parts(negs, thresholds)
    fpr_gt = (n_neg - le) / n_neg
    fpr_ge = (n_neg - lt) / n_neg

    fpr = np.empty(2 * thresholds.size + 2)
    pro = np.empty_like(fpr)
    fpr[0], pro[0] = 0.0, 0.0
    fpr[1:-1:2], pro[1:-1:2] = fpr_gt, pro_before
    fpr[2:-1:2], pro[2:-1:2] = fpr_ge, pro_at
    fpr[-1], pro[-1] = 1.0, pro_at[-1]
    return fpr, pro


def aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (dataset level).

    Regions are the 8-connected components of every ground-truth mask; the PRO
    at a threshold is the mean over all regions of all images of the covered
    fraction of the region; the FPR is taken over all normal pixels of all
    images. The area from FPR 0 to ``fpr_limit`` is divided by ``fpr_limit``,
    so a perfect detector scores 1.0. NaN without regions or normal pixels.
    """
    _check_fpr_limit(fpr_limit)
    return _aupro_from_curve(*pro_curve(masks, maps), fpr_limit)


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")


def _aupro_from_curve(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    if fpr.size == 0:
        return _NAN
    return _trapezoid_to(fpr, pro, fpr_limit) / fpr_limit


# --------------------------------------------------------------------------- #
# everything at once
# --------------------------------------------------------------------------- #


# The metrics of the per-defect-type breakdown (MVTec AD's per-type tables), in its order.
DEFECT_TYPE_METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro")


def compute_all(labels, image_scores, masks=None, maps=None, fpr_limit: float = 0.3,
                *, types=None) -> dict:
    """Every registered metric (``METRICS``), computed together: the pixels are split and sorted
    once for all pixel metrics. The pixel ones are NaN when ``masks`` is None.

    ``types`` (one defect type per image, e.g. ``TestSplit.defect_types``): the result also holds
    ``"per_defect_type"``, the breakdown of :func:`per_defect_type`, computed from the same sort
    of the pixels (split by defect type once; the overall values are the same either way)."""
    _check_fpr_limit(fpr_limit)
    out = {
        "image_auroc": image_auroc(labels, image_scores),
        "image_f1_max": image_f1_max(labels, image_scores),
        "image_ap": image_ap(labels, image_scores),
    }
    groups = None if types is None else _type_groups(labels, types)
    if masks is None:
        out.update(pixel_auroc=_NAN, aupro=_NAN, pixel_ap=_NAN)
        result = {k: float(out[k]) for k in METRICS}
        if groups is not None:
            result["per_defect_type"] = _per_type(labels, image_scores, groups, None, fpr_limit)
        return result
    m, a = _checked_pixels(labels, masks, maps)
    # Validate, split and sort the pixels once for all pixel metrics (per group of images).
    parts = _split_groups(m, a, None if groups is None else [groups[0], *groups[1].values()])
    pos = parts[0][0] if len(parts) == 1 else np.sort(np.concatenate([p for p, _ in parts]))
    negs = tuple(n for _, n in parts)
    out["pixel_auroc"] = _pixel_auroc_sorted(pos, *negs)
    out["pixel_ap"] = _pixel_ap_sorted(pos, *negs)
    del pos
    out["aupro"] = _aupro_from_curve(*_pro_curve_sorted(m, a, *negs), fpr_limit)
    result = {k: float(out[k]) for k in METRICS}
    if groups is not None:
        result["per_defect_type"] = _per_type(labels, image_scores, groups, (m, a, parts), fpr_limit)
    return result


def per_defect_type(labels, scores, types, masks=None, maps=None,
                    fpr_limit: float = 0.3) -> dict[str, dict[str, float]]:
    """The MVTec-style breakdown: ``{type: {"image_auroc", "pixel_auroc", "aupro", "n"}}``.

    For each defect type T of the anomalous images (``types[i]`` for label 1; the normal images'
    type is not used), sorted by name: image AUROC over the normal images and the images of type
    T; pixel AUROC over the pixels of those images; AUPRO over the regions of type T with the FPR
    taken over the normal pixels of those images; ``n`` = the number of images of type T. The
    pixel metrics are NaN when ``masks`` is None. Same implementations as the overall metrics;
    with one defect type the values equal the overall ones.
    """
    _check_fpr_limit(fpr_limit)
    groups = _type_groups(labels, types)
    pixels = None
    if masks is not None:
        m, a = _checked_pixels(labels, masks, maps)
        pixels = (m, a, _split_groups(m, a, [groups[0], *groups[1].values()]))
    return _per_type(labels, scores, groups, pixels, fpr_limit)


def _checked_pixels(labels, masks, maps) -> tuple[np.ndarray, np.ndarray]:
    if maps is None:
        raise ValueError("masks given but anomaly maps are None")
    n_images = np.asarray(labels).reshape(-1).size
    m, a = _pixel_inputs(masks, maps, need_3d=True)
    if m.shape[0] != n_images:
        raise ValueError(f"{m.shape[0]} masks for {n_images} image labels")
    return m, a


def _type_groups(labels, types) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(indices of the normal images, {defect type: indices of its anomalous images})."""
    y = _as_binary(labels, "labels").reshape(-1)
    t = np.asarray([str(v) for v in types], dtype=object)
    if t.shape != y.shape:
        raise ValueError(f"labels and defect types differ in length: {y.size} vs {t.size}")
    return np.flatnonzero(~y), {name: np.flatnonzero(y & (t == name)) for name in sorted(set(t[y]))}


def _split_groups(m: np.ndarray, a: np.ndarray, groups: list[np.ndarray] | None) -> list[tuple]:
    """Sorted (positive, negative) scores of each group of images (None: all images, one group)."""
    if groups is None:
        return [_split_sorted(m, a)]
    return [_split_sorted(m[idx], a[idx]) for idx in groups]


def _per_type(labels, scores, groups, pixels, fpr_limit: float) -> dict[str, dict[str, float]]:
    """The breakdown from the type groups and, with masks, (m, a, sorted parts per group: the
    normal images' first, then one per type in the groups' order)."""
    y, s = _image_inputs(labels, scores)
    normal, by_type = groups
    out = {}
    for k, (name, idx) in enumerate(by_type.items()):
        subset = np.concatenate([normal, idx])
        values = {"image_auroc": image_auroc(y[subset], s[subset]), "pixel_auroc": _NAN, "aupro": _NAN}
        if pixels is not None:
            m, a, parts = pixels
            (pos_normal, neg_normal), (pos, neg) = parts[0], parts[k + 1]
            if pos_normal.size:  # a normal image with mask pixels (unusual): its regions count too
                pos = np.sort(np.concatenate([pos_normal, pos]))
            values["pixel_auroc"] = _pixel_auroc_sorted(pos, neg_normal, neg)
            curve = _pro_curve_sorted(m, a, neg_normal, neg, images=np.sort(subset))
            values["aupro"] = _aupro_from_curve(*curve, fpr_limit)
        out[name] = {**{key: float(v) for key, v in values.items()}, "n": int(idx.size)}
    return out


def _auroc_resampled(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row of (B, P) positive and (B, Q) negative scores (Mann-Whitney, ties 1/2,
    as ``image_auroc``); one rank pass over all rows instead of B sklearn calls."""
    from scipy.stats import rankdata

    n_pos, n_neg = pos.shape[1], neg.shape[1]
    if n_pos == 0 or n_neg == 0:
        return np.full(pos.shape[0], _NAN)
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


# --------------------------------------------------------------------------- #
# the registry: one definition of each metric name
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Metric:
    """A result column: how it is computed and how it is shown.

    The results schema, the tables, the CLI and the per-cell progress line all read these.
    """

    name: str  # the row's column
    function: Callable[..., float]  # (labels, scores) for image level, (masks, maps) for pixel level
    level: str  # "image" or "pixel"
    label: str  # table header, e.g. "I-AUROC"
    text: str  # in sentences and the progress line, e.g. "image AUROC"
    scale: float = 100.0  # a [0, 1] fraction shown in percent
    higher_is_better: bool = True
    in_progress_line: bool = False
    # (positive scores (B, P), negative scores (B, Q)) -> (B,): the metric on B resamples at once.
    # A metric that has one gets a bootstrap interval per cell (bench.stats) and paired tests.
    resampled: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("image_auroc", image_auroc, "image", "I-AUROC", "image AUROC", in_progress_line=True,
           resampled=_auroc_resampled),
    Metric("pixel_auroc", pixel_auroc, "pixel", "P-AUROC", "pixel AUROC", in_progress_line=True),
    Metric("aupro", aupro, "pixel", "AUPRO", "AUPRO", in_progress_line=True),
    Metric("image_f1_max", image_f1_max, "image", "I-F1max", "image F1-max"),
    Metric("image_ap", image_ap, "image", "I-AP", "image AP"),
    Metric("pixel_ap", pixel_ap, "pixel", "P-AP", "pixel AP"),
)}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
