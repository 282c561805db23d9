"""Point-MAE features (M3DM's point branch) for PatchCore and TTAD on them: the network, the
extraction, the weights, detection on the MVTec 3D-AD fixture and a TTAD cell through the grid.
CPU and small: 64 groups of 32 points (M3DM: 1024 x 128), a 28 x 28 patch grid (M3DM: 56)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from _grids import cache_env
from bench.datasets.mvtec3d import load_category, write_fixture
from bench.errors import BenchError
from bench.executors import LocalExecutor, run_grid
from bench.grid import GridSpec
from bench.methods import backbones, point_mae, registered
from bench.methods.adaptation import augment_batch, fold_views, xyz_dihedral
from bench.methods.point_features import pool_patches
from bench.methods.point_mae import FEATURE_DIM, PointMAE, PointMAEEmbedder
from bench.results import load_rows

SMALL = dict(num_group=64, group_size=32, grid=28, weights="random")
NATIVE = {"size": 64, "pad_square": False}  # the fixture's own 64 x 64 clouds: cheap geometry checks


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mvtec3d"), seed=0)


@pytest.fixture(scope="module")
def cat(root):
    return load_category(root, "bagel")


def _batch(clouds) -> torch.Tensor:
    return torch.from_numpy(np.stack(clouds)).permute(0, 3, 1, 2).contiguous()


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# -- the network and the extraction --------------------------------------------------------------
def test_shapes_validity_and_determinism(cat, one_thread):
    emb = PointMAEEmbedder(64, 32, 28, "random", seed=0)
    x = _batch([cat.test.images[0], cat.test.images[6]])
    with torch.no_grad():
        feats, valid = emb.extract(x)
        again = PointMAEEmbedder(64, 32, 28, "random", seed=0)(x.flip(0)).flip(0)  # fresh build, other order
    assert feats.shape == (2, 28 * 28, FEATURE_DIM) == (2, 784, 1152) and valid.shape == (2, 784)
    assert torch.equal(feats, again)  # same cloud -> bit-identical features
    assert valid.any() and not valid.all() and not feats[~valid].any()  # empty patches are zero vectors
    other = PointMAEEmbedder(64, 32, 28, "random", seed=1)
    with torch.no_grad():
        assert not torch.equal(other(x), feats)  # the seed draws the random weights
    assert emb.grid() == 28 and len([m for m in emb.backbone.modules() if isinstance(m, torch.nn.BatchNorm1d)]) == 2


def test_fps_follows_pointnet2s_rules():
    rng = np.random.default_rng(0)
    pts = torch.from_numpy(rng.normal(0.5, 0.1, (300, 3)).astype(np.float32))
    pts[5] = torch.tensor([0.01, 0.01, 0.01])  # |p|^2 <= 1e-3: never picked (the kernel skips it)
    idx = point_mae.furthest_point_sampling(pts, 20)
    assert idx[0] == 0 and 5 not in idx.tolist() and len(set(idx.tolist())) == 20
    # textbook FPS from index 0 over the other points gives the same sequence
    d = torch.full((300,), float("inf"))
    d[5] = -1
    ref = [0]
    for _ in range(19):
        d = torch.minimum(d, ((pts - pts[ref[-1]]) ** 2).sum(1))
        ref.append(int(torch.argmax(d)))
    assert idx.tolist() == ref
    assert torch.equal(point_mae.furthest_point_sampling(pts, 20), idx)


@pytest.mark.parametrize("kind", ["spread", "ties", "near_origin"])
def test_fps_kernel_picks_what_the_torch_loop_picks(kind):
    """The CPU's numba FPS and the torch loop (the GPU's) choose the same centres, exact ties
    (a coordinate lattice) and never-picked points (|p|^2 <= 1e-3) included."""
    rng = np.random.default_rng(len(kind))
    pts = {"spread": rng.normal(0.5, 0.1, (5000, 3)),
           "ties": np.round(rng.uniform(-1, 1, (5000, 3)) * 4) / 4,
           "near_origin": rng.normal(0.0, 0.03, (5000, 3))}[kind]
    pts = torch.from_numpy(pts.astype(np.float32))
    for n in (1, 7, 300):
        kernel = point_mae._fps_kernel(pts.numpy(), n, np.float32(point_mae.FPS_SKIP_MAG))
        assert kernel.tolist() == point_mae._fps_torch(pts, n).tolist()
        assert torch.equal(point_mae.furthest_point_sampling(pts, n), torch.from_numpy(kernel))  # the CPU's path


def test_mini_pointnet_is_the_conv_stack(one_thread):
    torch.manual_seed(0)
    net = PointMAE(depth=1, fetch=(0,)).encoder.eval()
    for bn in (net.first_conv[1], net.second_conv[1]):  # non-trivial source statistics
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
    groups = torch.randn(7, 16, 3)
    # the original's form: Conv1d on (n, 3, M), max, [global, point] concatenated, Conv1d, max
    f = net.first_conv(groups.transpose(1, 2))
    f = torch.cat([f.max(2, keepdim=True)[0].expand(-1, -1, 16), f], dim=1)
    plain = net.second_conv(f).max(2)[0]
    assert torch.allclose(net(groups), plain, atol=1e-5, rtol=1e-4)


def test_interpolation_and_pooling_are_m3dms(root, one_thread):
    """The sparse operator equals M3DM's steps: 3-NN inverse squared distance interpolation to every
    valid point, the organised grid with zeros elsewhere, AvgPool 3 + adaptive average
    (``pool_patches``)."""
    cloud = load_category(root, "bagel", **NATIVE).test.images[0]  # 64 x 64
    emb = PointMAEEmbedder(32, 16, 14, "random", seed=0)
    x = _batch([cloud])
    with torch.no_grad():
        feats, valid = emb.extract(x)
        groups, centres, _, _ = emb.geometry(x[0])
        group_feats = emb.backbone(groups[None], centres[None])[0]  # (G, 1152)
    ok = np.all(cloud != 0, axis=-1)
    pts = torch.from_numpy(cloud[ok])
    d2 = (pts ** 2).sum(1, keepdim=True) + (centres ** 2).sum(1) - 2 * pts @ centres.T  # square_distance
    d2, nn_idx = d2.sort(dim=1)
    w = 1.0 / (d2[:, :3] + 1e-8)
    per_point = (group_feats[nn_idx[:, :3]] * (w / w.sum(1, keepdim=True))[..., None]).sum(1)
    grid = np.zeros((64, 64, FEATURE_DIM), np.float32)
    grid[ok] = per_point.numpy()
    expected, expected_valid = pool_patches(grid, ok, grid=14, smooth=3, missing="zero")
    got = feats[0].reshape(14, 14, -1).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert np.array_equal(valid[0].reshape(14, 14).numpy(), expected_valid)


# -- weights -----------------------------------------------------------------------------------------
def _checkpoint(tmp_path, prefix: str = "") -> tuple:
    """A file in the released layout: {'base_model': {'MAE_encoder.*', decoder keys}, ...}."""
    torch.manual_seed(3)
    src = PointMAE()
    for bn in (src.encoder.first_conv[1], src.encoder.second_conv[1]):
        bn.running_var.uniform_(0.5, 2.0)
    sd = {f"{prefix}MAE_encoder.{k}": v for k, v in src.state_dict().items()}
    sd.update({f"{prefix}mask_token": torch.zeros(1, 1, 384), f"{prefix}MAE_decoder.norm.weight": torch.ones(384),
               f"{prefix}increase_dim.0.weight": torch.zeros(96, 384, 1)})
    path = tmp_path / "pointmae_pretrain.pth"
    torch.save({"base_model": sd, "epoch": 300, "metrics": {"acc": 0.0}}, path)
    return path, src


@pytest.mark.parametrize("prefix", ["", "module."])
def test_checkpoint_in_the_released_layout_loads(tmp_path, prefix):
    path, src = _checkpoint(tmp_path, prefix)
    emb = PointMAEEmbedder(64, 32, 28, str(path))
    loaded, expected = emb.backbone.state_dict(), src.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert not emb.backbone.training
    origin = backbones.describe("point_mae", str(path))  # what the row records
    assert origin.startswith(f"file:{path.resolve()} sha256:") and len(origin.rsplit(":", 1)[1]) == 12
    assert backbones.describe("point_mae", "random") == "random (Point-MAE's init, seeded by the cell's seed)"


def test_missing_or_bad_checkpoints_are_one_line_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nope.pth"
    with pytest.raises(BenchError) as exc:
        PointMAEEmbedder(64, 32, 28, str(missing))
    assert str(missing) in _one_line(exc) and "random" in str(exc.value)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="cannot read Point-MAE weights file") as exc:
        PointMAEEmbedder(64, 32, 28, str(bad))
    assert str(bad) in _one_line(exc)
    other = tmp_path / "other.pth"
    torch.save({"base_model": {"MAE_encoder.encoder.first_conv.0.weight": torch.zeros(128, 3, 1)}}, other)
    with pytest.raises(BenchError, match=r"does not fit Point-MAE's encoder: missing '.*' and \d+ more") as exc:
        PointMAEEmbedder(64, 32, 28, str(other))
    _one_line(exc)
    shapes = {f"MAE_encoder.{k}": v for k, v in PointMAE().state_dict().items()}
    shapes["MAE_encoder.norm.weight"] = torch.ones(256)
    torch.save({"base_model": shapes}, other)
    with pytest.raises(BenchError, match=r"'norm.weight' has shape \(256,\), expected \(384,\)") as exc:
        PointMAEEmbedder(64, 32, 28, str(other))
    _one_line(exc)
    # the default: the cache folder, then a download, which fails offline with the fix named
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(BenchError) as exc:
        PointMAEEmbedder(64, 32, 28, "shapenet")
    msg = _one_line(exc)
    cached = tmp_path / "hub" / "checkpoints" / "pointmae_pretrain.pth"
    assert str(cached) in msg and point_mae.CHECKPOINT_URL in msg and "--weights" in msg
    assert backbones.describe("point_mae", "shapenet") == "shapenet (missing)"
    path, _ = _checkpoint(tmp_path)
    path.rename(cached)  # once in the cache (the failed download made its folder), "shapenet" loads it
    PointMAEEmbedder(64, 32, 28, "shapenet")
    assert backbones.describe("point_mae", "shapenet").startswith("Point-MAE ShapeNet file:")


# -- PatchCore on Point-MAE features -------------------------------------------------------------------
def _pixel_and_image_auroc(method, feats, cat) -> tuple[float, float]:
    dist, _ = method.patch_scores(feats)
    patch = dist.mean(-1)
    masks = np.stack([cat.test.mask(i) for i in range(len(cat.test.labels))])
    return (roc_auc_score(masks.reshape(-1), method._maps(patch).reshape(-1)),
            roc_auc_score(cat.test.labels, patch.max(1)))


def test_patchcore_pointmae_finds_the_fixtures_defects_and_shuffled_patches_do_not(cat, one_thread):
    """Random weights (no checkpoint offline): the maps find the defects (pixel AUROC), the image
    scores rank above chance on 4 + 4 samples; the same patches shuffled across the test set
    lose it (mean over 5 permutations), so the signal is in where the features are."""
    reg = registered()["patchcore_pointmae"]
    assert reg.in_all is False and reg.display == "M3DM (Point-MAE PatchCore)"
    default = reg.config()
    assert (default.num_group, default.group_size, default.grid, default.weights) == (1024, 128, 56, "shapenet")
    method = reg.create(seed=0, **SMALL)
    method.fit(cat.train)
    feats = method.embed(cat.test.images)
    pixel, image = _pixel_and_image_auroc(method, feats, cat)
    scores = method.score(cat.test.images)
    assert scores.maps.shape == (8, 224, 224)
    assert np.allclose(scores.image_scores, method.patch_scores(feats)[0].mean(-1).max(1))  # PatchCore's score
    rng = np.random.default_rng(0)
    shuffled = []
    for _ in range(5):
        perm = torch.from_numpy(rng.permutation(feats.shape[0] * feats.shape[1]))
        shuffled.append(_pixel_and_image_auroc(method, feats.reshape(-1, feats.shape[-1])[perm].reshape(feats.shape),
                                               cat)[0])
    print(f"Point-MAE (random) PatchCore: pixel AUROC {pixel:.3f}, image {image:.3f}; shuffled pixel "
          f"{np.mean(shuffled):.3f}")
    assert pixel > 0.9 and image >= 0.7
    assert np.mean(shuffled) < pixel - 0.25, shuffled


def test_a_2d_method_refuses_clouds_and_this_one_images(cat):
    method = registered()["patchcore_pointmae"].create(seed=0, **SMALL)
    with pytest.raises(BenchError, match="needs organised point clouds") as exc:
        method.fit([np.zeros((224, 224, 3), np.uint8)])
    _one_line(exc)
    with pytest.raises(BenchError, match="image_size=224") as exc:
        method.fit([cat.train[0][:64, :64]])
    _one_line(exc)


# -- TTAD on Point-MAE ------------------------------------------------------------------------------
def test_xyz_augmentation_moves_coordinates_and_folds_back_as_the_identity():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 0.02, (3, 3, 8, 8)).astype(np.float32))
    x[:, :, 0, 0] = 0  # a missing point
    out, ts = augment_batch(x, "xyz_flip_rot", 1, np.random.default_rng(1))
    ref, ref_ts = augment_batch(x, "flip_rot90", 1, np.random.default_rng(1))
    assert ts == [0] * 6 and ref_ts[3:] != [0] * 3  # the same draws; the grid does not move
    assert torch.equal(out[:3], x) and not (out[3:, :, 0, 0]).any()
    for i, t in enumerate(ref_ts[3:]):  # an isometry of each cloud about the z axis, z untouched
        v = out[3 + i]
        assert torch.equal(v[2], x[i, 2]) and not torch.equal(v, x[i])
        assert torch.allclose((v[:2] ** 2).sum(0), (x[i, :2] ** 2).sum(0))
        assert torch.equal(xyz_dihedral(x[i], t), v)
    assert torch.equal(xyz_dihedral(xyz_dihedral(x[0], 4), 4), x[0])  # the mirror is an involution
    assert torch.equal(xyz_dihedral(x[0], 1)[:2], torch.stack([-x[0, 1], x[0, 0]]))  # quarter turn: (x, y) -> (-y, x)
    per_view = rng.random((6, 5, 5)).astype(np.float32)
    folded = fold_views(per_view, ts, 3)
    assert np.array_equal(folded, (per_view[:3] + per_view[3:]).reshape(3, -1))  # identity fold-back


def _bn_and_ln(method):
    mods = list(method.embedder.backbone.modules())
    bn = torch.cat([p.detach().clone().reshape(-1) for m in mods if isinstance(m, torch.nn.BatchNorm1d)
                    for p in (m.weight, m.bias)])
    ln = torch.cat([p.detach().clone().reshape(-1) for m in mods if isinstance(m, torch.nn.LayerNorm)
                    for p in (m.weight, m.bias)])
    return bn, ln


@pytest.fixture(scope="module")
def ttad_fit(cat):
    """One small TTAD fit shared by the adaptation tests (adapt-time fields share a fit)."""
    torch.set_num_threads(1)
    method = registered()["ttad_pointmae"].create(seed=0, **SMALL)
    method.fit(cat.train)
    return method.fitted_state()


@pytest.mark.parametrize("norms", ["bn", "bn+ln"])
def test_ttad_pointmae_adapts_the_normalisation_layers_it_names(cat, ttad_fit, norms, one_thread):
    reg = registered()["ttad_pointmae"]
    cfg = reg.config()
    assert (cfg.loss, cfg.assignment, cfg.score_bank, cfg.augment, cfg.adapt_epochs, cfg.adapt_batch_size,
            cfg.adapt_lr, cfg.bn_mode, cfg.adapt_norms) == (
        "sinkhorn", registered()["ttad"].config().assignment, "source", "xyz_flip_rot", 30, 10, 0.003, "source", "bn")
    method = reg.create(seed=0, **SMALL, adapt_epochs=1, adapt_batch_size=4, adapt_norms=norms)
    method.load_fitted_state(ttad_fit)
    fitted = ttad_fit
    copies = {k: np.array(v, copy=True) for k, v in fitted.items() if isinstance(v, np.ndarray)}
    bn0, ln0 = _bn_and_ln(method)
    method.source_images = cat.train
    method.adapt(cat.test.images)
    bn1, ln1 = _bn_and_ln(method)
    assert not torch.equal(bn0, bn1)
    assert torch.equal(ln0, ln1) == (norms == "bn")
    diag = method.diagnostics()
    assert diag["trainable_params"] == 2 * (128 + 512) + (2 * 384 * 25 if norms == "bn+ln" else 0)
    assert diag["views_per_step"] == 8 and diag["adapt_steps"] == 2
    for k, v in copies.items():  # the fitted state it started from is not written into
        assert np.array_equal(fitted[k], v), k
    scores = method.score(cat.test.images)
    assert np.isfinite(scores.image_scores).all() and scores.maps.shape == (8, 224, 224)


def test_ttad_pointmae_cell_through_the_grid(root, tmp_path):
    small = {f"{m}.{k}": str(v) for m in ("patchcore_pointmae", "ttad_pointmae") for k, v in SMALL.items()}
    small.update({"ttad_pointmae.adapt_epochs": "1"})
    spec = GridSpec(methods=["patchcore_pointmae", "ttad_pointmae"], dataset="mvtec3d", root=str(root),
                    categories=["bagel"], corruptions=["point_gaussian_noise"], severities=[5], seeds=[0],
                    device="cpu", overrides=small)
    with cache_env(tmp_path / "cache"):
        summary = run_grid(spec, tmp_path / "run", LocalExecutor(workers=1, threads=1), show_progress=False)
    assert summary.failed == 0, summary.failures
    rows = load_rows(tmp_path / "run")
    assert sorted(zip(rows.method, rows.corruption)) == [
        ("patchcore_pointmae", "clean"), ("patchcore_pointmae", "point_gaussian_noise"),
        ("ttad_pointmae", "clean"), ("ttad_pointmae", "point_gaussian_noise")]
    assert set(rows.weights) == {"random (Point-MAE's init, seeded by the cell's seed)"} and set(rows.backbone) == {"point_mae"}
    assert (rows.status == "ok").all() and np.isfinite(rows.pixel_auroc).all()
    assert rows[rows.method == "patchcore_pointmae"].pixel_auroc.min() > 0.9
    # (no accuracy claim for TTAD here: on random weights the tokens are ~1e-6 against a ~1e-3
    # position embedding, so one BN-affine step at lr 0.003 re-makes the features; see the report)
    ttad = rows[rows.method == "ttad_pointmae"]
    clean, shifted = ttad[ttad.corruption == "clean"], ttad[ttad.corruption != "clean"]
    assert (clean.diag_adapt_skipped_clean == 1).all()  # clean test sets are not adapted (the papers' protocol)
    assert (shifted.diag_adapt_steps == 1).all() and (shifted.diag_trainable_params == 1280).all()
    assert (shifted.diag_ot_colmax_total > 0).all()  # the OT counts folded back onto the patch grid
