import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.metrics import (
    METRIC_NAMES,
    aupro,
    compute_all,
    image_ap,
    image_auroc,
    image_f1_max,
    pixel_ap,
    per_defect_type,
    pixel_auroc,
)


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def random_blob_masks(rng, n, h=16, w=16, n_blobs_max=3):
    """Masks made of random rectangles/discs; image 0 has two separate regions,
    image 1 is empty (a defective image without annotation also has this)."""
    masks = np.zeros((n, h, w), dtype=bool)
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        if i == 1:
            continue
        if i == 0:
            masks[i, 1:4, 1:5] = True
            masks[i, 9:14, 10:15] = (yy[9:14, 10:15] - 11) ** 2 + (xx[9:14, 10:15] - 12) ** 2 <= 4
            continue
        for _ in range(rng.integers(0, n_blobs_max + 1)):
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            r = rng.integers(1, 4)
            if rng.random() < 0.5:
                masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                masks[i, max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = True
    return masks


def brute_force_aupro(masks, maps, fpr_limit=0.3):
    """Slow reference: one threshold per distinct score, explicit region masks."""
    regions = []
    for i in range(masks.shape[0]):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            regions.append((i, lab == r))
    normal = ~masks
    n_normal = normal.sum()
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        hit = maps >= t
        fprs.append((hit & normal).sum() / n_normal)
        pros.append(np.mean([hit[i][reg].sum() / reg.sum() for i, reg in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def noisy_maps(rng, masks, quantise=None, dtype=np.float64):
    maps = rng.normal(size=masks.shape) + 1.2 * masks
    if quantise:
        maps = np.round(maps * quantise) / quantise
    return maps.astype(dtype)


# --------------------------------------------------------------------------- #
# image level
# --------------------------------------------------------------------------- #


def test_image_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.normal(size=200) + y
    assert image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert image_ap(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_image_perfect_and_inverted():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert image_auroc(y, s) == 1.0
    assert image_auroc(y, -s) == 0.0
    assert image_f1_max(y, s) == 1.0
    assert image_ap(y, s) == 1.0


def test_image_f1_max_hand_example():
    # thresholds 0.8 / 0.4 / 0.35 / 0.1 give F1 = 2/3, 1/2, 4/5, 2/3
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert image_f1_max(y, s) == pytest.approx(0.8, abs=1e-12)


def test_image_single_class_is_nan():
    assert math.isnan(image_auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(image_auroc([0, 0], [0.1, 0.2]))
    assert math.isnan(image_f1_max([0, 0], [0.1, 0.2]))
    assert math.isnan(image_ap([0, 0], [0.1, 0.2]))
    # anomalous images alone: AP and F1-max would be 1 whatever the scores (sklearn's value)
    for scores in ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.5, 0.5]):
        assert math.isnan(image_f1_max([1, 1, 1], scores))
        assert math.isnan(image_ap([1, 1, 1], scores))


def test_scores_keep_their_order_whatever_their_dtype():
    y = np.array([0, 1, 0, 1])
    fine = 0.5 + np.array([0, 1, 2, 3], dtype=np.longdouble) * np.longdouble(1e-12)
    assert image_auroc(y, fine) == pytest.approx(0.75)  # float32 would tie all four at 0.5
    assert image_auroc(y, fine.astype(np.float16)) == 0.5  # narrower: widened, ties as given
    with pytest.raises(ValueError, match="integers beyond 2"):
        image_auroc(y, np.array([0, 1, 2, 3], dtype=np.int64) + 2**53)


def test_image_validation():
    with pytest.raises(ValueError, match="scores contain NaN"):
        image_auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="scores contain NaN"):
        image_auroc([0, 1], [0.1, np.inf])
    with pytest.raises(ValueError, match="differ in length"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="binary"):
        image_auroc([0, 2], [0.1, 0.2])


# --------------------------------------------------------------------------- #
# pixel AUROC / AP
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("quantise", [None, 10, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pos_fraction", [0.05, 0.7])
def test_pixel_auroc_and_ap_match_sklearn(quantise, dtype, pos_fraction):
    # pos_fraction > 0.5 exercises the branch that searches negatives in positives
    rng = np.random.default_rng(1)
    masks = rng.random((6, 20, 24)) < pos_fraction
    maps = noisy_maps(rng, masks, quantise, dtype)
    y, s = masks.ravel(), maps.ravel()
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_pixel_auroc_integer_maps_with_heavy_ties():
    rng = np.random.default_rng(2)
    masks = rng.random((3, 8, 8)) < 0.3
    maps = rng.integers(0, 3, masks.shape) + masks
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    const = np.zeros(masks.shape)
    assert pixel_auroc(masks, const) == 0.5


def test_pixel_perfect_and_inverted():
    masks = random_blob_masks(np.random.default_rng(3), 4)
    maps = masks.astype(np.float32)
    assert pixel_auroc(masks, maps) == 1.0
    assert pixel_auroc(masks, -maps) == 0.0
    assert pixel_ap(masks, maps) == 1.0


def test_pixel_one_class_is_nan():
    maps = np.random.default_rng(4).random((2, 4, 4))
    assert math.isnan(pixel_auroc(np.zeros((2, 4, 4), bool), maps))
    assert math.isnan(pixel_auroc(np.ones((2, 4, 4), bool), maps))
    assert math.isnan(pixel_ap(np.zeros((2, 4, 4), bool), maps))
    assert math.isnan(pixel_ap(np.ones((2, 4, 4), bool), maps))  # 1 whatever the maps


def test_pixel_validation():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 1, 1] = True
    maps = np.zeros((2, 4, 4), np.float32)
    maps[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="scores contain NaN"):
        pixel_auroc(masks, maps)
    with pytest.raises(ValueError, match="scores contain NaN"):
        aupro(masks, maps)
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_auroc(masks, np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="binary"):
        pixel_auroc(masks.astype(np.uint8) * 255, np.zeros((2, 4, 4)))
    # 0/1 integer masks are accepted
    assert pixel_auroc(masks.astype(np.uint8), np.zeros((2, 4, 4))) == 0.5


# --------------------------------------------------------------------------- #
# AUPRO
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantise", [None, 4])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_matches_brute_force(seed, quantise, fpr_limit):
    rng = np.random.default_rng(100 + seed)
    masks = random_blob_masks(rng, 5)
    maps = noisy_maps(rng, masks, quantise)
    expected = brute_force_aupro(masks, maps, fpr_limit)
    assert aupro(masks, maps, fpr_limit) == pytest.approx(expected, abs=1e-6)


def test_aupro_region_count_matters():
    # A tiny region detected perfectly and a large one missed: PRO averages
    # regions, so the result is ~0.5 although most defect pixels are missed.
    masks = np.zeros((2, 16, 16), bool)
    masks[0, 0, 0] = True
    masks[1, 2:12, 2:12] = True
    maps = np.where(masks, 0.0, 0.5)
    maps[0, 0, 0] = 1.0
    assert aupro(masks, maps) == pytest.approx(0.5, abs=1e-12)
    # tied with all normal pixels, the missed region gives a diagonal: 0.5 + 0.5 * 0.3 / 2
    maps[masks == 0] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.575, abs=1e-12)
    assert aupro(masks, maps) == pytest.approx(brute_force_aupro(masks, maps), abs=1e-12)


def test_aupro_uses_8_connectivity():
    # (0,0),(0,1) and (1,2) touch only diagonally: one region of 3 pixels with
    # 8-connectivity (PRO 1/3 when only (1,2) is found), two regions with 4 (PRO 1/2).
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 0, 0:2] = True
    masks[0, 1, 2] = True
    maps = np.full(masks.shape, 0.5)
    maps[0, 0, 0:2] = 0.0
    maps[0, 1, 2] = 1.0
    assert aupro(masks, maps) == pytest.approx(1 / 3, abs=1e-12)


def test_aupro_perfect_inverted_and_nan():
    rng = np.random.default_rng(5)
    masks = random_blob_masks(rng, 4)
    perfect = masks.astype(np.float32) + 0.01 * rng.random(masks.shape).astype(np.float32)
    assert aupro(masks, perfect) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks, -perfect) == 0.0
    assert math.isnan(aupro(np.zeros((2, 8, 8), bool), rng.random((2, 8, 8))))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(masks, perfect, fpr_limit=0.0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(masks[0], perfect[0])


def test_aupro_empty_mask_image_only_adds_normal_pixels():
    rng = np.random.default_rng(6)
    masks = random_blob_masks(rng, 3)
    maps = noisy_maps(rng, masks)
    extra_mask = np.zeros((1,) + masks.shape[1:], bool)
    extra_map = np.full((1,) + masks.shape[1:], 100.0)  # all false positives at every threshold
    with_extra = aupro(np.concatenate([masks, extra_mask]), np.concatenate([maps, extra_map]))
    assert with_extra < aupro(masks, maps)
    assert with_extra == pytest.approx(
        brute_force_aupro(np.concatenate([masks, extra_mask]), np.concatenate([maps, extra_map])), abs=1e-6
    )


# --------------------------------------------------------------------------- #
# compute_all
# --------------------------------------------------------------------------- #


def test_compute_all():
    rng = np.random.default_rng(7)
    masks = random_blob_masks(rng, 6)
    labels = masks.reshape(6, -1).any(axis=1).astype(int)
    labels[1] = 1  # defective image with an empty mask
    maps = noisy_maps(rng, masks)
    scores = maps.reshape(6, -1).max(axis=1)
    out = compute_all(labels, scores, masks, maps)
    assert tuple(out) == METRIC_NAMES
    assert all(isinstance(v, float) for v in out.values())
    assert out["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert out["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert out["aupro"] == pytest.approx(brute_force_aupro(masks, maps), abs=1e-6)
    assert out["pixel_ap"] == pixel_ap(masks, maps)
    assert compute_all(labels, scores, masks, maps, fpr_limit=0.1)["aupro"] == aupro(masks, maps, 0.1)
    # more defect than normal pixels takes the other search direction
    assert compute_all(labels, scores, ~masks, maps)["pixel_auroc"] == pytest.approx(
        roc_auc_score(~masks.ravel(), maps.ravel()), abs=1e-12
    )
    empty = compute_all(labels, scores, np.zeros_like(masks), maps)
    assert all(math.isnan(empty[k]) for k in ("pixel_auroc", "aupro", "pixel_ap"))

    image_only = compute_all(labels, scores, None, None)
    assert tuple(image_only) == METRIC_NAMES
    assert image_only["image_ap"] == out["image_ap"]
    assert all(math.isnan(image_only[k]) for k in ("pixel_auroc", "aupro", "pixel_ap"))

    # the registry's functions, one at a time, give what compute_all gives together
    from bench.metrics import METRICS

    for name, metric in METRICS.items():
        args = (labels, scores) if metric.level == "image" else (masks, maps)
        assert metric.function(*args) == out[name], name

    with pytest.raises(ValueError, match="masks for"):
        compute_all(labels[:5], scores[:5], masks, maps)
    with pytest.raises(ValueError, match="maps are None"):
        compute_all(labels, scores, masks, None)


# --------------------------------------------------------------------------- #
# per defect type
# --------------------------------------------------------------------------- #


def typed_split(seed=3, n=40, quantise=8):
    """Random blob masks and tied maps; the anomalous images get one of three defect types."""
    rng = np.random.default_rng(seed)
    masks = random_blob_masks(rng, n, 24, 24)
    labels = masks.reshape(n, -1).any(axis=1).astype(int)
    labels[1] = 1  # a defect image with an empty mask
    maps = noisy_maps(rng, masks, quantise=quantise)
    scores = maps.reshape(n, -1).max(axis=1)
    types = np.where(labels == 1, rng.choice(["crack", "hole", "stain"], n), "good")
    return labels, scores, types, masks, maps


def test_per_defect_type_is_each_metric_on_the_normal_images_plus_that_type():
    labels, scores, types, masks, maps = typed_split()
    out = per_defect_type(labels, scores, types, masks, maps)
    assert list(out) == ["crack", "hole", "stain"]
    for name, got in out.items():
        keep = (labels == 0) | (types == name)
        assert got["n"] == int((types == name).sum())
        assert got["image_auroc"] == image_auroc(labels[keep], scores[keep])
        assert got["pixel_auroc"] == pixel_auroc(masks[keep], maps[keep])
        assert got["aupro"] == aupro(masks[keep], maps[keep])
        assert got["pixel_auroc"] == pytest.approx(roc_auc_score(masks[keep].ravel(), maps[keep].ravel()), abs=1e-12)
    # the breakdown from compute_all shares its sort and leaves the overall values as they were
    both = compute_all(labels, scores, masks, maps, types=list(types))
    assert both.pop("per_defect_type") == out
    assert both == compute_all(labels, scores, masks, maps)


def test_per_defect_type_of_a_one_type_split_is_the_overall_value():
    labels, scores, types, masks, maps = typed_split(seed=5)
    one = np.where(labels == 1, "crack", "good")
    overall = compute_all(labels, scores, masks, maps)
    got = per_defect_type(labels, scores, one, masks, maps)["crack"]
    assert {k: got[k] for k in ("image_auroc", "pixel_auroc", "aupro")} == {
        k: overall[k] for k in ("image_auroc", "pixel_auroc", "aupro")}
    assert got["n"] == int(labels.sum())


def test_a_method_that_sees_one_defect_type_only():
    rng = np.random.default_rng(0)
    n_good, n_each, h = 30, 30, 16
    labels = np.r_[np.zeros(n_good), np.ones(2 * n_each)].astype(int)
    types = ["good"] * n_good + ["crack"] * n_each + ["hole"] * n_each
    masks = np.zeros((len(labels), h, h), bool)
    masks[n_good:, 4:9, 5:11] = True
    maps = rng.random(masks.shape)
    maps[n_good:n_good + n_each][masks[n_good:n_good + n_each]] += 1.0  # cracks stand out, holes do not
    scores = maps.reshape(len(labels), -1).max(axis=1)
    out = per_defect_type(labels, scores, types, masks, maps)
    assert out["crack"]["image_auroc"] == 1.0
    assert out["crack"]["pixel_auroc"] == 1.0
    assert out["crack"]["aupro"] == pytest.approx(1.0, abs=1e-9)
    assert abs(out["hole"]["image_auroc"] - 0.5) < 0.2
    assert abs(out["hole"]["pixel_auroc"] - 0.5) < 0.05
    assert out["hole"]["aupro"] < 0.3
    assert (out["crack"]["n"], out["hole"]["n"]) == (n_each, n_each)
    # overall, the holes pull every metric down
    overall = compute_all(labels, scores, masks, maps)
    assert out["hole"]["image_auroc"] < overall["image_auroc"] < 1.0


def test_per_defect_type_without_masks_and_bad_input():
    labels, scores, types, masks, maps = typed_split()
    out = per_defect_type(labels, scores, types)
    assert all(math.isnan(v["pixel_auroc"]) and math.isnan(v["aupro"]) for v in out.values())
    assert {k: v["image_auroc"] for k, v in out.items()} == {
        k: v["image_auroc"] for k, v in per_defect_type(labels, scores, types, masks, maps).items()}
    assert compute_all(labels, scores, types=types)["per_defect_type"] == out
    assert per_defect_type(np.zeros(4, int), np.arange(4.0), ["good"] * 4) == {}  # no defect type
    with pytest.raises(ValueError, match="defect types differ in length"):
        per_defect_type(labels, scores, types[:-1])
    with pytest.raises(ValueError, match="masks for"):
        per_defect_type(labels[:-1], scores[:-1], types[:-1], masks, maps)
