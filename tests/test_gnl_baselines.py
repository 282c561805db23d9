"""GNL's table methods on RD4AD: AugMix, MixStyle / EFDM(Mix), Jigsaw, the Table 5 / 6 rows, MNIST sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.methods import augmix as A
from bench.methods import get
from bench.methods import rd4ad as R
from bench.methods.distill import efdmix, jigsaw_permutations, mixstyle, shuffle_tiles, sorted_values
from bench.methods.preprocess import to_tensor
from bench.methods.rd4ad import RD4AD, net_size

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(image_size=64, epochs=1, batch_size=4)


def _surface(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    base = np.kron(rng.normal(128, 40, (size // 8, size // 8, 3)), np.ones((8, 8, 1)))
    return np.clip(base + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [_surface(rng) for _ in range(8)]


def _student_inputs(m: RD4AD, images, monkeypatch) -> list[torch.Tensor]:
    """The teacher maps one training step hands to the student (its first call)."""
    seen: list[list[torch.Tensor]] = []
    forward = m.student.forward
    monkeypatch.setattr(m.student, "forward", lambda feats: seen.append([f.clone() for f in feats]) or forward(feats))
    imgs = np.stack([m.net_geometry.image(im) for im in images])
    m.student.train()
    m._step(imgs, np.arange(4), None, np.random.default_rng(0), torch.optim.SGD(m._trainable(), lr=0.0))
    return seen[0]


# -- registration ------------------------------------------------------------------------------
def test_table_names_and_settings():
    from bench.tables import method_display, method_rank

    shown = {n: method_display(n) for n in ("augmix", "mixstyle", "efdm_train", "augmix_mixstyle", "augmix_efdm",
                                           "jigsaw", "rd4ad", "gnl", "rd4ad_labs", "rd4ad_llowf", "dinl", "atta")}
    assert shown == {"augmix": "AugMix", "mixstyle": "MixStyle", "efdm_train": "EFDM", "augmix_mixstyle": "AugMix+MixStyle",
                     "augmix_efdm": "AugMix+EFDM", "jigsaw": "Jigsaw", "rd4ad": "RD4AD", "gnl": "GNL",
                     "rd4ad_labs": "L_abs only", "rd4ad_llowf": "L_lowf only", "dinl": "DINL", "atta": "ATTA"}
    rank = method_rank()
    assert sorted(rank, key=rank.get)[13:19] == ["augmix", "mixstyle", "efdm_train", "augmix_mixstyle", "augmix_efdm",
                                                 "jigsaw"]  # the tables' row order, after the existing rows
    a = get("augmix").config()
    assert (a.train_augment, a.augmix_ops, a.augmix_severity, a.augmix_random_severity, a.epochs, a.augmix_views) == \
        ("augmix", "all_but_brightness_contrast", 3, False, 200, False)  # RD4AD's training settings kept
    for name, kind in (("mixstyle", "mixstyle"), ("efdm_train", "efdmix")):
        c = get(name).config()
        assert (c.feature_style, c.style_p, c.style_alpha, c.efdm_alpha, c.epochs) == (kind, 0.5, 0.1, 0.0, 200)
    j = get("jigsaw").config()
    assert (j.jigsaw_weight, j.jigsaw_classes, j.jigsaw_bias_whole) == (0.7, 30, 0.9)
    # Table 6: lambda_abs = lambda_lowf and the three sum to one; its 0.90 row is Table 5's DINL
    rows = {n: get(n).config() for n in ("dinl_lambda_095", "dinl_lambda_090", "dinl_lambda_085", "dinl_lambda_080")}
    assert [(c.loss_ori, c.loss_abs) for c in rows.values()] == [(0.95, 0.025), (0.9, 0.05), (0.85, 0.075), (0.8, 0.1)]
    assert all(c.loss_abs == c.loss_lowf and c.loss_ori + 2 * c.loss_abs == pytest.approx(1) and c.efdm_alpha == 0
               for c in rows.values())
    assert [method_display(n) for n in rows] == ["0.95, 0.025, 0.025", "0.90, 0.050, 0.050", "0.85, 0.075, 0.075",
                                                 "0.80, 0.100, 0.100"]
    assert rows["dinl_lambda_090"] == get("dinl").config()


# -- AugMix baseline ---------------------------------------------------------------------------
@pytest.mark.parametrize("ops", ["all_but_brightness_contrast", "all"])
def test_augmix_trains_on_views_of_its_op_list(ops, images, monkeypatch):
    used: list[str] = []
    for name, op in list(A.OPERATIONS.items()):
        monkeypatch.setitem(A.OPERATIONS, name, lambda img, lv, rng, name=name, op=op: used.append(name) or op(img, lv, rng))
    m = get("augmix").create(**TINY, augmix_ops=ops)
    seen = _student_inputs(m, images * 8, monkeypatch)
    assert set(used) <= set(A.OP_LISTS[ops]) and len(set(used)) >= 6
    assert ("brightness" in used) == (ops == "all")
    with torch.no_grad():  # the teacher saw views, not the clean images
        clean = m.teacher(to_tensor([m.net_geometry.image(im) for im in images[:4]], m.norm))
    assert not torch.allclose(seen[0], clean[0])


# -- MixStyle / EFDMix -------------------------------------------------------------------------
def test_style_mixing_moves_statistics_to_the_partner():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=g) * torch.tensor([1.0, 3.0, 0.5]).view(3, 1, 1, 1) + 2
    perm = torch.tensor([1, 2, 0])
    for lam in (torch.ones(3), torch.zeros(3)):
        ms, ef = mixstyle(x, lam, perm), efdmix(x, lam, perm)
        src = x if lam[0] == 1 else x[perm]
        assert torch.allclose(ms.mean((2, 3)), src.mean((2, 3)), atol=1e-5)
        assert torch.allclose(ms.std((2, 3)), src.std((2, 3)), atol=1e-3)
        assert torch.allclose(sorted_values(ef), sorted_values(src), atol=1e-6)
    # content stays: each value keeps its rank within its channel
    ef = efdmix(x, torch.full((3,), 0.3), perm)
    assert torch.equal(ef.flatten(2).argsort(-1), x.flatten(2).argsort(-1))


@pytest.mark.parametrize("name", ["mixstyle", "efdm_train"])
def test_style_mixing_acts_in_training_only_and_leaves_the_teacher_frozen(name, images, monkeypatch):
    m = get(name).create(**TINY, style_p=1.0)
    frozen = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    seen = _student_inputs(m, images, monkeypatch)
    with torch.no_grad():
        plain = m.teacher(to_tensor([m.net_geometry.image(im) for im in images[:4]], m.norm))
    # stages 1 and 2 mixed (their channel means moved), stage 3 computed from the mixed stage 2
    for s, p in zip(seen, plain):
        assert not torch.allclose(s.mean((2, 3)), p.mean((2, 3)), atol=1e-4)
    off = get(name).create(**TINY, style_p=0.0)  # the p gate: never applied
    assert all(torch.equal(s, p) for s, p in zip(_student_inputs(off, images, monkeypatch), plain))
    m.fit(images)
    assert all(torch.equal(v, frozen[k]) for k, v in m.teacher.state_dict().items())
    assert not any(p.requires_grad for p in m.teacher.parameters())
    assert not any(mod.training for mod in m.teacher.net.modules())  # BN on its ImageNet statistics
    # scoring sees plain teacher maps: the same scores as RD4AD with this student
    rd = get("rd4ad").create(**TINY)
    rd.load_fitted_state(m.fitted_state())
    a, b = m.score(images[:3]), rd.score(images[:3])
    assert np.array_equal(a.maps, b.maps) and np.array_equal(a.image_scores, b.image_scores)


# -- Jigsaw ------------------------------------------------------------------------------------
def test_jigsaw_permutations_are_distinct_derangement_rich_and_shuffle_tiles():
    perms = jigsaw_permutations(30)
    assert perms.shape == (30, 9) and len({tuple(p) for p in perms}) == 30
    assert all(sorted(p) == list(range(9)) and list(p) != list(range(9)) for p in perms)
    assert (perms != perms[0]).sum(1)[1:].mean() > 7  # far apart (maximal mean Hamming selection)
    x = torch.arange(2 * 7 * 7, dtype=torch.float32).view(2, 1, 7, 7)  # side 7: tiles of 2, one row/col left
    table = torch.from_numpy(np.concatenate([np.arange(9)[None], perms]))
    out = shuffle_tiles(x, table, torch.tensor([0, 1]))
    assert torch.equal(out[0], x[0])
    p = perms[0]
    for t in range(9):  # output tile t is input tile p[t]
        r, c, sr, sc = t // 3, t % 3, p[t] // 3, p[t] % 3
        assert torch.equal(out[1, 0, 2 * r:2 * r + 2, 2 * c:2 * c + 2], x[1, 0, 2 * sr:2 * sr + 2, 2 * sc:2 * sc + 2])
    assert torch.equal(out[1, 0, 6], x[1, 0, 6]) and torch.equal(out[1, 0, :, 6], x[1, 0, :, 6])


def test_jigsaw_head_learns_a_tiny_permutation_task(images):
    m = get("jigsaw").create(image_size=64, epochs=8, batch_size=4, lr=0.001, jigsaw_classes=2, jigsaw_bias_whole=0.0,
                             jigsaw_weight=1.0)
    m.fit(images)
    assert 0 <= m.diagnostics()["train_jigsaw_accuracy"] <= 1
    state = m.fitted_state()
    again = get("jigsaw").create(image_size=64, epochs=8, batch_size=4, lr=0.001, jigsaw_classes=2,
                                 jigsaw_bias_whole=0.0, jigsaw_weight=1.0, seed=5)
    again.load_fitted_state(state)  # the head travels with the fitted state
    x = to_tensor([again.net_geometry.image(im) for im in images], again.norm)
    right = []
    with torch.no_grad():
        for c in range(3):  # unshuffled + the two permutations
            labels = torch.full((len(images),), c)
            z, _ = again.student(again.teacher(shuffle_tiles(x, again._jigsaw_table, labels)))
            right.append((again.jigsaw_head(z).argmax(1) == labels).float().mean().item())
    assert np.mean(right) >= 0.75, right  # chance: 1/3
    assert "jigsaw_head" not in get("rd4ad").create(**TINY).fitted_state()


def test_jigsaw_adds_its_cross_entropy_to_the_distillation_loss(images, monkeypatch):
    one = lambda t, s: sum((a.sum() + b.sum()) * 0.0 + 1.0 for a, b in zip(t, s))  # noqa: E731 - 3 scales, 1 each
    monkeypatch.setattr(R, "distill_loss", one)
    ce: list[float] = []
    real = R.F.cross_entropy
    monkeypatch.setattr(R.F, "cross_entropy", lambda logits, y: ce.append(float(real(logits, y).detach())) or real(logits, y))
    m = get("jigsaw").create(**TINY, jigsaw_bias_whole=0.0)
    imgs = np.stack([m.net_geometry.image(im) for im in images])
    m.student.train()
    loss = m._step(imgs, np.arange(4), None, np.random.default_rng(0), torch.optim.SGD(m._trainable(), lr=0.0))
    assert len(ce) == 1 and loss == pytest.approx(3 + 0.7 * ce[0], rel=1e-6)
    assert m.jigsaw_head.fc.out_features == 31  # 30 permutations + the unshuffled image


# -- Table 5: the loss terms of each row, ATTA ---------------------------------------------------
@pytest.mark.parametrize("name, terms, expected", [
    ("rd4ad", set(), 3.0),
    ("atta", set(), 3.0),
    ("rd4ad_labs", {"abs"}, 0.9 * 3 + 0.05 * 2),
    ("rd4ad_llowf", {"lowf"}, 0.9 * 3 + 0.05 * 2),
    ("dinl", {"abs", "lowf"}, 0.9 * 3 + 0.05 * 2 + 0.05 * 2),
    ("dinl_lambda_080", {"abs", "lowf"}, 0.8 * 3 + 0.1 * 2 + 0.1 * 2),
])
def test_table5_rows_compute_exactly_their_loss_terms(name, terms, expected, images, monkeypatch):
    m = get(name).create(**TINY)
    z_ch = m.student.bottleneck.out_channels
    seen: list[str] = []

    def one(a, b):  # every distance = 1 (graph kept); which term asked is told by the shape
        seen.append("abs" if a.shape[1] == z_ch else "lowf")
        return (a.sum() + b.sum()) * 0.0 + 1.0

    monkeypatch.setattr(R, "flat_cosine_distance", one)
    monkeypatch.setattr(R, "distill_loss", lambda t, s: sum((a.sum() + b.sum()) * 0.0 + 1.0 for a, b in zip(t, s)))
    imgs = np.stack([m.net_geometry.image(im) for im in images])
    m.student.train()
    loss = m._step(imgs, np.arange(4), None, np.random.default_rng(0), torch.optim.SGD(m._trainable(), lr=0.0))
    assert loss == pytest.approx(expected)
    assert set(seen) == terms and len(seen) == 2 * len(terms)  # each term over the AugMix and the gray view


def test_atta_is_rd4ads_fit_scored_with_test_time_efdm(images):
    assert RD4AD.fit_identity(get("atta").config()) == RD4AD.fit_identity(get("rd4ad").config())
    assert get("atta").config().efdm_alpha == 0.5 == get("gnl").config().efdm_alpha
    rd = get("rd4ad").create(**TINY)
    rd.fit(images)
    atta = get("atta").create(**TINY)
    atta.load_fitted_state(rd.fitted_state())
    efdm = get("rd4ad").create(**TINY, efdm_alpha=0.5)
    efdm.load_fitted_state(rd.fitted_state())
    a, e, r = atta.score(images[:3]), efdm.score(images[:3]), rd.score(images[:3])
    assert np.array_equal(a.maps, e.maps) and not np.allclose(a.maps, r.maps)


# -- MNIST: 28x28, ResNet-18 or the default backbone -------------------------------------------
def test_net_size_rounds_up_to_the_bottleneck_stride():
    assert [net_size(s) for s in (28, 32, 33, 100, 256)] == [32, 32, 64, 128, 256]


@pytest.mark.parametrize("backbone, weights", [("resnet18", "random"), ("tf_efficientnet_lite0", "imagenet")])
def test_distillation_runs_on_28px_digits(backbone, weights):
    rng = np.random.default_rng(0)
    digits = []
    for _ in range(6):  # MNIST-like: a bright stroke on black, gray as RGB
        im = np.zeros((28, 28), np.uint8)
        r = rng.integers(6, 16)
        im[r:r + 8, 8:20] = 255
        digits.append(np.repeat(im[..., None], 3, axis=2))
    m = get("gnl").create(image_size=28, epochs=1, batch_size=4, backbone=backbone, weights=weights, efdm_alpha=0.9)
    assert m.geometry.out_size == 28 and m.net_geometry.out_size == 32
    m.fit(digits)
    assert m.fitted_state()["reference"].shape == (32, 32, 3)  # the network's grid
    s = m.score(digits[:3])
    assert s.maps.shape == (3, 28, 28) and np.isfinite(s.maps).all()
    assert np.allclose(s.image_scores, s.maps.reshape(3, -1).max(1))
