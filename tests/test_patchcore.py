"""PatchCore's building blocks against their definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.methods.coreset import greedy_coreset, project
from bench.methods.knn import NearestNeighbours, torch_knn
from bench.methods.patchcore import PatchCoreConfig, embed_patches


def test_embedding_matches_the_pooled_form_for_wrn_widths():
    """With WRN-50 widths the aggregation is: layer3 = mean of adjacent channel pairs of the
    3x3 (zero-padded) local mean, upsampled bilinearly (method_specs §1, step 4)."""
    torch.manual_seed(0)
    l2, l3 = torch.randn(2, 512, 8, 8), torch.randn(2, 1024, 4, 4)
    out = embed_patches([l2, l3], PatchCoreConfig())
    assert out.shape == (2, 64, 1024)
    local3 = F.avg_pool2d(l3, 3, 1, 1, count_include_pad=True)
    local3 = F.interpolate(local3, size=(8, 8), mode="bilinear", align_corners=False)
    pairs = local3.reshape(2, 512, 2, 8, 8).mean(2)  # (B, 512, 8, 8)
    expected = pairs.permute(0, 2, 3, 1).reshape(2, 64, 512)
    torch.testing.assert_close(out[..., 512:], expected, rtol=1e-4, atol=1e-5)


def test_embedding_is_translation_aware_per_patch():
    """A change at one location only moves the patches whose 3x3 window sees it."""
    cfg = PatchCoreConfig()
    a = [torch.zeros(1, 40, 8, 8), torch.zeros(1, 112, 4, 4)]
    b = [a[0].clone(), a[1].clone()]
    b[0][0, :, 2, 2] = 1.0
    diff = (embed_patches(b, cfg) - embed_patches(a, cfg)).abs().sum(-1).reshape(8, 8)
    changed = set(zip(*np.nonzero(diff.numpy() > 0)))
    assert changed == {(y, x) for y in (1, 2, 3) for x in (1, 2, 3)}


def _brute_force_coreset(x: torch.Tensor, n: int, seed: int) -> list[int]:
    """The official algorithm, written plainly (Euclidean distances, mean-distance start)."""
    z = project(x, seed=seed)
    starts = np.random.default_rng(seed).choice(len(z), size=10, replace=False)
    mind = torch.cdist(z, z[torch.as_tensor(starts)]).mean(1)
    out = []
    for _ in range(n):
        i = int(torch.argmax(mind))
        out.append(i)
        mind = torch.minimum(mind, torch.cdist(z, z[i : i + 1])[:, 0])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dim", [300, 40])  # projected to 128 / kept at 40 (zero-padded for numba)
def test_coreset_algorithms_match_the_plain_greedy_loop(dim):
    torch.manual_seed(0)
    x = torch.randn(3000, dim)
    ref = _brute_force_coreset(x, 150, seed=3)
    for algorithm in ("fused", "torch"):
        got = greedy_coreset(x, 0.05, seed=3, algorithm=algorithm)
        assert len(got) == 150
        assert list(got) == ref, algorithm


def test_coreset_covers_space_better_than_random():
    torch.manual_seed(1)
    x = torch.cat([torch.randn(2000, 16), torch.randn(20, 16) + 12])  # a rare far cluster
    idx = greedy_coreset(x, 0.02, seed=0)
    assert (idx >= 2000).any(), "greedy coreset must reach the rare far cluster"
    d_greedy = torch.cdist(x, x[idx]).min(1).values.max()
    rand = np.random.default_rng(0).choice(len(x), len(idx), replace=False)
    d_rand = torch.cdist(x, x[rand]).min(1).values.max()
    assert d_greedy < d_rand


def test_faiss_and_torch_knn_give_identical_squared_distances():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(500, 64)).astype(np.float32)
    q = rng.normal(size=(300, 64)).astype(np.float32)
    d_faiss, i_faiss = NearestNeighbours(bank).search(q, 3)
    d_torch, i_torch = torch_knn(torch.from_numpy(q), torch.from_numpy(bank), k=3)
    brute = ((q[:, None, :] - bank[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d_faiss[:, 0], brute.min(1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(d_faiss, d_torch.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(i_faiss[:, 0], brute.argmin(1))
    np.testing.assert_array_equal(i_faiss, i_torch.numpy())


def test_patchcore_finds_the_defect(tiny_root):
    from bench import metrics
    from bench.datasets.mvtec import load_category
    from bench.methods import get

    cat = load_category(tiny_root, "widget")
    method = get("patchcore").create(resize=64, image_size=64, coreset_ratio=0.5)
    method.fit(cat.train)
    scores = method.score(cat.test.images)
    masks = np.stack([method.mask_transform(cat.test.mask(i)) for i in range(len(cat.test))])
    assert metrics.image_auroc(cat.test.labels, scores.image_scores) == 1.0
    assert metrics.pixel_auroc(masks, scores.maps) > 0.9
    # the hottest pixel of every defective image lies inside (or next to) its defect
    for i in np.nonzero(cat.test.labels)[0]:
        y, x = np.unravel_index(scores.maps[i].argmax(), scores.maps[i].shape)
        ys, xs = np.nonzero(masks[i])
        assert ys.min() - 4 <= y <= ys.max() + 4 and xs.min() - 4 <= x <= xs.max() + 4


@pytest.mark.slow
def test_reweighting_never_raises_scores_and_keeps_the_ranking(tiny_root):
    from bench import metrics

    from bench.datasets.mvtec import load_category
    from bench.methods import get

    cat = load_category(tiny_root, "widget")
    plain = get("patchcore").create(resize=64, image_size=64, coreset_ratio=0.5)
    plain.fit(cat.train)
    rew = get("patchcore").create(resize=64, image_size=64, coreset_ratio=0.5, reweight=True)
    rew.load_fitted_state(plain.fitted_state())
    a, b = plain.score(cat.test.images).image_scores, rew.score(cat.test.images).image_scores
    # Eq. 7 damps the Euclidean max distance; the plain scores are squared distances
    assert (b <= np.sqrt(a) + 1e-6).all() and (b > 0).all() and (b >= 0.5 * np.sqrt(a)).any()
    assert metrics.image_auroc(cat.test.labels, b) == 1.0


@pytest.mark.parametrize("shapes,fields", [
    (((16, 40, 20, 20), (16, 112, 10, 10)), {}),  # EfficientNet-Lite0 at 160 px (the main job)
    (((2, 512, 8, 8), (2, 1024, 4, 4)), {}),  # WRN-50 widths: windows of 4-5 and 9 values
    (((2, 40, 8, 8), (2, 112, 8, 8)), {}),  # levels on one grid: no upsampling
    (((2, 40, 7, 9), (2, 112, 4, 5)), {"patch_size": 5}),
    (((2, 40, 6, 6), (2, 112, 3, 3)), {"pretrain_embed_dim": 100, "target_embed_dim": 3}),  # windows span levels
])
def test_fused_patch_pooling_equals_the_literal_form_bit_for_bit(shapes, fields):
    """Without gradients embed_patches takes patch_pooling's kernels; with them, the literal
    unfold + adaptive_avg_pool1d form. Both must give the same bits."""
    from bench.methods import patch_pooling

    torch.manual_seed(0)
    cfg = PatchCoreConfig(**fields)
    feats = [torch.relu(torch.randn(*shapes[0])), torch.randn(*shapes[1])]
    literal = embed_patches(feats, cfg)  # grad mode: the literal form
    with torch.no_grad():
        assert patch_pooling.supported(feats, cfg.patch_size)
        fused = embed_patches(feats, cfg)
    assert fused.shape == literal.shape and torch.equal(fused, literal)
    assert not patch_pooling.supported(feats, 2) and not patch_pooling.supported(feats, 3)  # even k / grad mode


@pytest.mark.parametrize("n,length,size", [(400, 360, 1024), (100, 1008, 1024), (400, 2048, 1024),
                                           (20, 4608, 1024), (20, 9216, 1024), (7, 100, 3), (5, 10, 37)])
def test_numba_adaptive_pooling_equals_atens_in_value_and_gradient(n, length, size):
    """The pooling the literal form uses when a gradient is wanted (test-time adaptation):
    the same bits as F.adaptive_avg_pool1d forward and backward, windows overlapping or not."""
    from bench.methods import patch_pooling

    torch.manual_seed(0)
    x = torch.randn(n, 1, length, requires_grad=True)
    g = torch.randn(n, 1, size)
    ours = patch_pooling.adaptive_avg_pool1d(x, size)
    aten = F.adaptive_avg_pool1d(x, size)
    assert ours.grad_fn is not None and type(ours.grad_fn).__name__ != type(aten.grad_fn).__name__  # numba's
    assert torch.equal(ours, aten)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(aten, x, g)[0])


def test_nan_features_are_an_error_not_a_far_neighbour():
    """FAISS answers a NaN query with index -1 at float32's largest distance, and leaves NaN bank
    rows out: a diverged adaptation would score every image 3.4e38 (AUROC 50) without a word.
    (The torch search gives NaN distances, which the cell's finite check names.)"""
    from bench.errors import BenchError
    from bench.methods.knn import NearestNeighbours

    rng = np.random.default_rng(0)
    bank, queries = rng.random((50, 8), dtype=np.float32), rng.random((4, 8), dtype=np.float32)
    assert (NearestNeighbours(bank, backend="faiss").search(queries, 2)[1] >= 0).all()
    queries[1, 2] = np.nan
    with pytest.raises(BenchError, match=r"^1 of 4 query features found no neighbour \(NaN/inf"):
        NearestNeighbours(bank, backend="faiss").search(queries, 1)
    bank[3] = np.inf
    with pytest.raises(BenchError, match=r"^1 of 50 memory-bank features are NaN/inf"):
        NearestNeighbours(bank, backend="faiss")
