"""Test-time adaptation on PatchCore: one loop, named configs, no leaks between cells."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from bench.methods import get, registered
from bench.methods.adaptation import (AdaptConfig, AdaptedPatchCore, augment_batch, dihedral,
                                      dihedral_inverse, fold_views)
from bench.methods.builtin import TTAD_ASSIGNMENT, TTAD_SCORE_BANK
from bench.methods.patchcore import PatchCoreConfig

NAMES = ["ttt++", "ttac", "ttad", "none", "kl_div", "moment_matching", "ot_hungarian", "ot_discrete",
         "ot_discrete_copy", "ot_discrete_augment"]
SMALL = dict(resize=32, image_size=32, coreset_ratio=0.1, n_clusters=4, adapt_epochs=2, adapt_batch_size=2,
             adapt_max_images=4, sinkhorn_iters=20, stats_batch_images=2)


# -- the registry: ten names, one class, one fit --------------------------------------------------
def test_named_methods_are_configs_of_one_class_sharing_one_fit():
    table = registered()
    assert set(NAMES) <= set(table)
    expected = {
        "ttt++": ("moment", "none"), "ttac": ("gaussian_kl", "none"),  # as TTAD's Table 1 ran them
        "ttad": ("sinkhorn", "flip_rot90"), "none": ("none", "none"), "kl_div": ("gaussian_kl", "none"),
        "moment_matching": ("moment", "none"), "ot_hungarian": ("sinkhorn", "none"),
        "ot_discrete": ("sinkhorn", "none"), "ot_discrete_copy": ("sinkhorn", "copy"),
        "ot_discrete_augment": ("sinkhorn", "flip_rot90"),
    }
    identities = set()
    for name in NAMES:
        cfg = table[name].config()
        assert table[name].cls is AdaptedPatchCore
        assert (cfg.loss, cfg.augment) == expected[name], name
        identities.add(repr(sorted(AdaptedPatchCore.fit_identity(cfg).items())))
    assert len(identities) == 1  # every variant reuses one fit of the category
    assert table["ttad"].config().assignment == TTAD_ASSIGNMENT
    # the paper keeps the bank fixed (no training data at inference); the re-embedded reading is named apart
    assert table["ttad"].config().score_bank == "source" == TTAD_SCORE_BANK
    assert table["ttad_reembed"].config() == dataclasses.replace(table["ttad"].config(), score_bank="adapted")
    assert not table["ttad_reembed"].in_all
    assert table["ot_discrete_augment"].config().score_bank == "source"
    for name in ("ot_discrete", "ot_discrete_copy", "ot_discrete_augment"):
        assert table[name].config().assignment == "or"  # Eq. 6 as printed
    # TTT++ / TTAC equal Table 4's moment matching / KL-div rows (as the paper's tables are)
    assert table["ttt++"].config() == table["moment_matching"].config()
    assert table["ttac"].config() == table["kl_div"].config()
    assert table["ttad"].config() == table["ot_discrete_augment"].config()  # Table 1's TTAD = Table 4's last row
    assert table["ot_hungarian"].config().assignment == "hungarian"
    # the paper's values are the defaults
    cfg = AdaptConfig()
    assert (cfg.adapt_lr, cfg.adapt_momentum, cfg.adapt_batch_size, cfg.adapt_epochs, cfg.bn_mode) == (
        0.003, 0.9, 10, 10, "source")
    # a fit-time knob changes the identity, an adaptation knob does not
    same = AdaptedPatchCore.fit_identity(dataclasses.replace(cfg, adapt_epochs=1, sinkhorn_reg=0.5))
    other = AdaptedPatchCore.fit_identity(dataclasses.replace(cfg, n_clusters=8))
    assert AdaptedPatchCore.fit_identity(cfg) == same != other
    assert get("patchcore").cls.fit_identity(PatchCoreConfig()) != AdaptedPatchCore.fit_identity(cfg)
    with pytest.raises(ValueError):
        AdaptConfig(assignment="greedy")


# -- augmentation and the patch-grid bookkeeping --------------------------------------------------
def test_dihedral_group_and_inverse():
    x = torch.arange(12.0).reshape(1, 3, 4)[:, :, :3].reshape(1, 3, 3)
    seen = set()
    for t in range(8):
        y = dihedral(x, t)
        assert torch.equal(dihedral_inverse(y, t), x)
        seen.add(tuple(y.flatten().tolist()))
    assert len(seen) == 8


def test_augment_batch_modes():
    x = torch.randn(3, 3, 8, 8)
    rng = np.random.default_rng(0)
    out, ts = augment_batch(x, "none", 1, rng)
    assert out.shape[0] == 3 and ts == [0, 0, 0]
    out, ts = augment_batch(x, "copy", 1, rng)
    assert torch.equal(out[3:], x) and ts == [0] * 6
    out, ts = augment_batch(x, "flip_rot90", 2, rng)
    assert out.shape[0] == 9 and ts[:3] == [0, 0, 0] and all(1 <= t <= 7 for t in ts[3:])
    for v, t in enumerate(ts):
        assert torch.equal(out[v], dihedral(x[v % 3], t))


def test_fold_views_maps_counts_back_onto_the_original_grid():
    g = 4
    a = np.arange(2 * g * g, dtype=np.float32).reshape(2, g, g)  # two originals
    ts = [0, 0, 5, 3]  # then one augmented view of each
    views = np.stack([a[0], a[1], dihedral(torch.from_numpy(a[0]), 5).numpy(), dihedral(torch.from_numpy(a[1]), 3).numpy()])
    out = fold_views(views, ts, 2)
    assert np.array_equal(out, 2 * a.reshape(2, -1))


def test_patch_report_diagnostics_counts_inside_the_masks():
    from bench.runner import patch_report_diagnostics

    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, :4, :4] = True  # image 0: top-left patch of a 2x2 grid
    masks[1, :4, :2] = True  # image 1: half of a patch -> counts (>= 0.5)
    masks[2, :, :] = True  # image 2: not reported on
    reports = {"ot": np.array([[3.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 5.0], [np.nan] * 4])}
    d = patch_report_diagnostics(reports, masks)
    assert d == {"diag_ot_total": 11.0, "diag_ot_in_mask": 3.0, "diag_ot_in_mask_patches": 1.0,
                 "diag_ot_mask_patches": 2.0, "diag_ot_patches": 8.0}


# -- the loop on a tiny synthetic category --------------------------------------------------------
def _images(n: int, seed: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size // 8, size // 8, 3)).astype(np.uint8)
    out = []
    for _ in range(n):
        img = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8)).astype(np.int16)
        img += rng.integers(-20, 20, img.shape).astype(np.int16)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def fitted_state():
    torch.manual_seed(0)
    method = get("ttad").create(**SMALL)
    method.fit(_images(6, 0))
    state = method.fitted_state()
    st = state["source_stats"]
    assert st["cov"].shape == (1024, 1024) and st["centroids"].shape == (4, 1024)
    assert st["nn_scale"] > 0 and st["coral_src"] > 0 and st["mmd_src"] > 0
    assert np.all(np.diff(st["nn_quantiles"]) >= 0)
    return state


@pytest.mark.parametrize("name,extra", [
    pytest.param("ttt++", {}, marks=pytest.mark.slow), pytest.param("ttac", {}, marks=pytest.mark.slow),
    pytest.param("ot_hungarian", {}, marks=pytest.mark.slow),
    pytest.param("ot_discrete_copy", {"assignment": "continuous"}, marks=pytest.mark.slow),
    pytest.param("ttad", {"bn_mode": "batch"}, marks=pytest.mark.slow),
    pytest.param("ttad", {"assignment": "column"}, marks=pytest.mark.slow),
    pytest.param("ttad", {"assignment": "mutual"}, marks=pytest.mark.slow),
])
def test_adapt_moves_only_bn_affine_and_reports(fitted_state, name, extra):
    state = copy.deepcopy(fitted_state)
    extra = {"score_bank": "source", **extra}  # the bank must stay the fitted one here
    method = get(name).create(**{**SMALL, **extra})
    method.load_fitted_state(state)
    fresh = get(name).create(**{**SMALL, **extra}).embedder.state_dict()
    bank = method.bank.copy()
    target = _images(6, 1)
    method.source_images = _images(6, 0)  # the fit's training images, as the harness sets them
    method.adapt(target)
    after = method.embedder.state_dict()
    bn_affine = {n for n, m in method.embedder.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    moved = set()
    for k, v in after.items():
        if not torch.equal(v, fresh[k]):
            moved.add(k)
    affine = {k for k in moved if k.rsplit(".", 1)[0] in bn_affine and k.rsplit(".", 1)[1] in ("weight", "bias")}
    assert affine, "no BN affine parameter moved"
    others = moved - affine
    if extra.get("bn_mode") == "batch":  # running statistics re-estimated on the target
        assert others and all(k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked") for k in others)
    else:
        assert not others, sorted(others)[:5]
    if method.config.score_bank == "source":
        assert np.array_equal(method.bank, bank)
    else:  # "adapted" (ttad_reembed): the same coreset patches re-embedded by the adapted backbone
        assert method.bank.shape == bank.shape and not np.array_equal(method.bank, bank)
    assert not any(p.requires_grad for p in method.embedder.parameters()) and not method.embedder.training
    d = method.diagnostics()
    assert d["adapt_steps"] == 4 and d["adapt_images"] == 4
    assert np.isfinite(d["loss_before"]) and np.isfinite(d["loss_after"])
    reports = method.patch_reports()
    if method.config.loss == "sinkhorn":
        counts = reports["ot_colmax"]
        assert counts.shape == (6, 16)
        assert np.isnan(counts).all(axis=1).sum() == 2  # two target images were not adapted on
        per_step = min(d["ot_bank_used"], (2 * (1 + (method.config.augment != "none"))) * 16)
        if method.config.assignment == "mutual":  # only mutual arg-maxes keep a partner
            assert 0 < np.nansum(counts) <= 2 * per_step
        else:
            assert np.nansum(counts) == 2 * per_step  # every bank item's partner, 2 steps in the last epoch
        if method.config.assignment != "hungarian":
            assert 0 < d["sinkhorn_iters"] <= SMALL["sinkhorn_iters"] and np.isfinite(d["sinkhorn_error"])
    else:
        assert reports == {}
    scores = method.score(target)
    assert np.isfinite(scores.image_scores).all()


@pytest.mark.slow
def test_score_bank_adapted_reembeds_the_coreset_patches(fitted_state):
    train = _images(6, 0)  # the images the fixture fitted on
    src = get("ttad").create(**SMALL)
    src.load_fitted_state(copy.deepcopy(fitted_state))
    method = get("ttad").create(**SMALL, score_bank="adapted")
    method.load_fitted_state(copy.deepcopy(fitted_state))
    target = _images(6, 1)
    with pytest.raises(Exception, match="source_images"):
        method.adapt(target)
    method = get("ttad").create(**SMALL, score_bank="adapted")
    method.load_fitted_state(copy.deepcopy(fitted_state))
    method.source_images = train
    method.adapt(target)
    assert method.bank.shape == src.bank.shape and not np.allclose(method.bank, src.bank)
    # the new bank = the adapted backbone's features of the same training patches
    feats = method.embed(train).reshape(-1, method.bank.shape[1]).numpy()
    assert np.allclose(method.bank, feats[fitted_state["bank_index"]], atol=1e-5)
    assert method.diagnostics()["reembed_seconds"] >= 0
    # with nothing adapted it reproduces the source bank
    same = get("ttad").create(**{**SMALL, "adapt_lr": 0.0}, score_bank="adapted")
    same.load_fitted_state(copy.deepcopy(fitted_state))
    same.source_images = train
    same.adapt(target)
    assert np.allclose(same.bank, src.bank, atol=1e-4)


@pytest.mark.slow  # fits the shared TTAD state (1024-d statistics)
def test_none_skips_adaptation_and_matches_patchcore_scores(fitted_state):
    none = get("none").create(**SMALL)
    none.load_fitted_state(copy.deepcopy(fitted_state))
    target = _images(3, 2)
    none.adapt(target)
    assert none.patch_reports() == {} and "loss_before" not in none.diagnostics()
    pc = get("patchcore").create(**{k: v for k, v in SMALL.items() if k in {f.name for f in dataclasses.fields(PatchCoreConfig)}})
    pc.load_fitted_state({"bank": fitted_state["bank"]})
    a, b = none.score(target), pc.score(target)
    assert np.array_equal(a.image_scores, b.image_scores) and np.array_equal(a.maps, b.maps)


@pytest.mark.slow
def test_adapted_cells_never_leak_and_order_does_not_matter(tmp_path):
    """Two cells through the runner, in both orders (fresh fit cache each): identical results."""
    from bench.cache import FitCache
    from bench.grid import GridSpec
    from bench.runner import RunContext, run_cell

    overrides = {k: str(v) for k, v in {**SMALL, "adapt_max_images": 6, "adapt_batch_size": 3,
                                        "adapt_epochs": 1, "adapt_clean": "true"}.items()}
    spec = GridSpec(methods=["ttad"], dataset="textures", categories=["brick"],
                    corruptions=["gaussian_noise"], overrides=overrides)
    cells = spec.cells()  # clean, then gaussian_noise@5
    assert [c.corruption for c in cells] == ["clean", "gaussian_noise"]

    def run(order, where):
        ctx = RunContext(spec, fit_cache=FitCache(tmp_path / where))
        return {cells[i].corruption: run_cell(cells[i], ctx) for i in order}

    first, second = run([0, 1], "a"), run([1, 0], "b")
    keys = ["image_auroc", "pixel_auroc", "aupro", "diag_loss_before", "diag_loss_after",
            "diag_ot_colmax_in_mask", "diag_ot_colmax_total"]
    for corruption in ("clean", "gaussian_noise"):
        r1, r2 = first[corruption], second[corruption]
        assert r1["status"] == r2["status"] == "ok", (r1.get("error"), r2.get("error"))
        assert {k: r1[k] for k in keys} == {k: r2[k] for k in keys}, corruption
        assert r1["diag_ot_colmax_total"] > 0 and r1["diag_ot_colmax_patches"] > 0
        # patches with an assignment inside a mask <= patches inside a mask <= patches reported on
        assert (r1["diag_ot_colmax_in_mask_patches"] <= r1["diag_ot_colmax_mask_patches"]
                <= r1["diag_ot_colmax_patches"])
    assert first["clean"]["fit_cached"] is False and second["clean"]["fit_cached"] is True


def test_ttt_with_no_more_training_images_than_a_batch_is_refused_not_diverged():
    """TTT++ divides its loss weights by how far a source batch lies from the source: 0 when the
    batch is the whole source (the adaptation went to NaN, every image scored 3.4e38), small when
    it is most of it: at least two batches' worth of training images are needed."""
    from bench.errors import BenchError
    from bench.methods import get
    from bench.methods.contract import tiny_images

    train, test, _, shifted = tiny_images(0)
    small = {"resize": 64, "image_size": 64, "coreset_ratio": 0.25, "adapt_epochs": 1}
    method = get("moment_matching").create(**small, stats_batch_images=len(train))
    method.fit(train)
    with pytest.raises(BenchError, match=rf"moment_matching: TTT\+\+ scales its losses by how far batches of "
                                         rf"{len(train)} training images lie from all {len(train)}"):
        method.adapt(shifted)
    # just above one batch the distance is tiny and the weights ~9x too large: refused as well
    near = get("moment_matching").create(**small, stats_batch_images=len(train) // 2 + 1)
    near.fit(train)
    with pytest.raises(BenchError, match=rf"stats_batch_images=N with N at most {len(train) // 2}"):
        near.adapt(shifted)
    ok = get("moment_matching").create(**small, stats_batch_images=len(train) // 2)
    ok.fit(train)
    ok.adapt(shifted)
    assert np.isfinite(ok.score(test).image_scores).all()


def test_clean_test_sets_are_not_adapted_unless_asked():
    """The papers' clean TTT++ / TTAC / TTAD entries equal PatchCore's: a clean in-distribution
    test set is scored as the fit left it (adapt_clean=False); shifted sets, or adapt_clean=True,
    are adapted."""
    from bench.methods.contract import tiny_images

    train, test, _, shifted = tiny_images(0, n_train=8)
    small = {"resize": 64, "image_size": 64, "coreset_ratio": 0.25, "adapt_epochs": 1, "adapt_batch_size": 2,
             "sinkhorn_iters": 5}
    base = get("ttad").create(**small)
    base.fit(train)
    state = base.fitted_state()
    reference = base.score(test).image_scores  # never adapted

    def run(shift, **extra):
        m = get("ttad").create(**small, **extra)
        m.load_fitted_state(copy.deepcopy(state))
        m.target_shifted = shift
        m.adapt(test)
        return m.score(test).image_scores, m.diagnostics()

    scores, diag = run(False)
    assert np.array_equal(scores, reference) and diag["adapt_skipped_clean"] == 1.0 and "loss_before" not in diag
    for shift, extra in ((True, {}), (False, {"adapt_clean": True}), (None, {})):  # None: outside the harness
        scores, diag = run(shift, **extra)
        assert not np.array_equal(scores, reference) and "adapt_skipped_clean" not in diag, (shift, extra)


def test_runner_tells_a_method_whether_its_test_set_is_shifted():
    from types import SimpleNamespace

    from bench.grid import Cell
    from bench.runner import target_shifted

    cfg = get("ttad").config()

    def cell(corruption, domain=""):
        return Cell("ttad", "d", "c", corruption, 5 if corruption != "clean" else 0, 0, "native", cfg, domain=domain)

    one_split = SimpleNamespace(domains={})
    two = SimpleNamespace(domains={"mnist": None, "mnist_m": None})  # in-distribution first
    assert not target_shifted(cell("clean"), one_split)
    assert target_shifted(cell("gaussian_noise"), one_split)
    assert not target_shifted(cell("clean", "mnist"), two)
    assert target_shifted(cell("clean", "mnist_m"), two)
    assert target_shifted(cell("contrast", "mnist"), two)


def test_ttt_says_when_its_scales_were_measured_at_another_batch_size():
    """TTT++'s loss weights are a source batch's distance at stats_batch_images; a step that aligns
    another number of images (another adapt_batch_size, or augmented views) is said, not silent."""
    import warnings

    from bench.methods.contract import tiny_images
    from bench.methods.errors import BenchWarning

    train, _, _, shifted = tiny_images(0, n_train=8)
    small = {"resize": 64, "image_size": 64, "coreset_ratio": 0.25, "adapt_epochs": 1, "stats_batch_images": 2}
    base = get("moment_matching").create(**small, adapt_batch_size=2)
    base.fit(train)
    state = base.fitted_state()

    def said(**extra):
        m = get("moment_matching").create(**{**small, **extra})
        m.load_fitted_state(copy.deepcopy(state))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.adapt(shifted)
        return [str(w.message) for w in caught if issubclass(w.category, BenchWarning)]

    assert said(adapt_batch_size=2) == []
    assert any("measured on batches of 2 training images, but each step aligns 3 images: "
               "--set stats_batch_images=3" in w for w in said(adapt_batch_size=3))
    assert any("each step aligns 4 images" in w for w in said(adapt_batch_size=2, augment="flip_rot90"))
