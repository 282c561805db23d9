"""RD4AD / GNL trainer: AugMix ops, paper defaults, scoring, training once, resume after a kill."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.methods import augmix as A
from bench.errors import BenchWarning
from bench.methods import get
from bench.methods import rd4ad as R
from bench.methods.backbones import normalization
from bench.methods.rd4ad import RD4AD


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(image_size=64, epochs=3, batch_size=4)


def _image(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    base = rng.integers(60, 200, size=(size, size, 1), dtype=np.uint8)
    return np.repeat(base, 3, axis=2) if rng.random() < 0.5 else rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [_image(rng) for _ in range(6)]


# -- AugMix ------------------------------------------------------------------------------------
def _ops_used(monkeypatch, images, **kwargs) -> set[str]:
    used: list[str] = []
    for name, op in list(A.OPERATIONS.items()):
        def spy(img, level, rng, name=name, op=op):
            used.append(name)
            return op(img, level, rng)

        monkeypatch.setitem(A.OPERATIONS, name, spy)
    rng = np.random.default_rng(0)
    for i in range(80):
        view = A.augmix(images[i % len(images)], rng, normalization("tf_efficientnet_lite0"), **kwargs)
        assert view.shape == (3, 48, 48) and view.dtype == np.float32
    return set(used)


def test_augmix_never_applies_an_excluded_op(monkeypatch, images):
    used = _ops_used(monkeypatch, images)  # GNL's default: ADShift's MVTec list
    assert used == set(A.MVTEC_OPS)  # all six photometric ops occur...
    assert not used & set(A.EXCLUDED_OPS)  # ...and nothing geometric or corruption-like
    assert set(A.MVTEC_OPS) == {"autocontrast", "equalize", "posterize", "solarize", "color", "sharpness"}
    with pytest.raises(ValueError, match="twirl"):
        A.augmix(images[0], np.random.default_rng(0), normalization("tf_efficientnet_lite0"), ops=("equalize", "twirl"))


@pytest.mark.parametrize("name, expected", [
    ("mvtec", set(A.MVTEC_OPS)),
    ("pacs", set(A.MVTEC_OPS) | {"contrast", "brightness"}),
    ("all", set(A.MVTEC_OPS) | set(A.EXCLUDED_OPS)),
    ("all_but_brightness_contrast", set(A.MVTEC_OPS) | set(A.GEOMETRIC_OPS)),
])
def test_augmix_op_lists_differ_by_config(monkeypatch, images, name, expected):
    """AugMix's 13 ops for MNIST / PACS, all but brightness and contrast for MVTec AD / CIFAR-10
    (GNL's baseline), and ADShift's photometric lists for GNL; each list is what gets applied."""
    assert set(A.OP_LISTS[name]) == expected
    assert _ops_used(monkeypatch, images, ops=A.OP_LISTS[name], random_severity=False) == expected
    assert len(A.OP_LISTS["all"]) == 13 and A.OP_LISTS["all"][:4] == ("autocontrast", "equalize", "posterize", "rotate")


def test_geometric_ops_move_pixels_both_ways():
    edges = np.zeros((48, 48, 3), np.uint8)
    edges[:, 20:28] = 255
    edges[20:28, :] = 255  # a cross: any rotation, shear or shift moves it
    cross = Image.fromarray(edges)
    for name in A.GEOMETRIC_OPS:
        outs = {np.asarray(A.OPERATIONS[name](cross, 9.0, np.random.default_rng(s))).tobytes() for s in range(8)}
        assert edges.tobytes() not in outs and len(outs) == 2, name  # moved, in one of two directions


def test_standard_augmix_uses_the_severity_itself(monkeypatch, images):
    levels: list[float] = []
    monkeypatch.setitem(A.OPERATIONS, "equalize", lambda img, level, rng: levels.append(level) or img)
    rng = np.random.default_rng(0)
    for _ in range(40):
        A.augmix(images[0], rng, normalization("tf_efficientnet_lite0"), ops=("equalize",), random_severity=False)
    assert min(levels) >= 0.1 and max(levels) > 2.5  # uniform in (0.1, 3) per op
    levels.clear()
    for _ in range(40):  # ADShift: the image's severity is first drawn from 0..3 (0 keeps levels below 0.1)
        A.augmix(images[0], rng, normalization("tf_efficientnet_lite0"), ops=("equalize",))
    assert min(levels) < 0.1


def test_augmix_is_reproducible_and_mixes_in_normalised_space(images):
    norm = normalization("efficientnet_lite0")  # ImageNet statistics: a per-channel range
    a = A.augmix(images[0], np.random.default_rng(5), norm)
    b = A.augmix(images[0], np.random.default_rng(5), norm)
    c = A.augmix(images[0], np.random.default_rng(6), norm)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # a convex mix of normalised uint8 images: inside the normalised range of [0, 255]
    lo = (0 - np.array(norm.mean)) / np.array(norm.std)
    hi = (1 - np.array(norm.mean)) / np.array(norm.std)
    assert (a >= lo[:, None, None] - 1e-5).all() and (a <= hi[:, None, None] + 1e-5).all()


# -- configs -----------------------------------------------------------------------------------
def test_paper_defaults_and_gnl_variant():
    rd = get("rd4ad").config()
    assert (rd.epochs, rd.batch_size, rd.lr, rd.beta1, rd.beta2, rd.image_size, rd.smoothing_sigma) == \
        (200, 16, 0.005, 0.5, 0.999, 256, 4.0)
    assert (rd.augmix_views, rd.efdm_alpha, rd.loss_ori) == (False, 0.0, 1.0)
    g = get("gnl").config()
    assert (g.epochs, g.augmix_views, g.loss_ori, g.loss_abs, g.loss_lowf, g.efdm_alpha, g.efdm_reference) == \
        (20, True, 0.9, 0.05, 0.05, 0.5, "0")
    assert g.consistency_reduction == "sum"  # ADShift's script adds the two views' terms
    m = get("rd4ad").create(**TINY)
    assert m.geometry.square and m.geometry.crop is None and m.geometry.out_size == 64


def test_test_time_settings_share_the_trained_student():
    a = RD4AD.fit_identity(get("gnl").config(**TINY))
    b = RD4AD.fit_identity(get("gnl").config(**TINY, efdm_alpha=0.0, smoothing_sigma=2.0))
    c = RD4AD.fit_identity(get("gnl").config(**{**TINY, "epochs": 4}))
    assert a == b != c
    assert RD4AD.fit_identity(get("rd4ad").config(**TINY)) != a


# -- fit / score -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_gnl(images) -> RD4AD:
    m = get("gnl").create(**{**TINY, "epochs": 2})
    m.fit(images)
    return m


def test_scores_do_not_depend_on_the_batch_size(fitted_gnl, images):
    test = images[:5]
    full = fitted_gnl.score(test)
    assert full.maps.shape == (5, 64, 64) and full.maps.dtype == np.float32
    assert np.allclose(full.image_scores, full.maps.reshape(5, -1).max(1))
    one = get("gnl").create(**{**TINY, "epochs": 2, "batch_size": 1})
    one.load_fitted_state(fitted_gnl.fitted_state())
    single = one.score(test)
    assert np.allclose(single.maps, full.maps, atol=1e-5)
    d = fitted_gnl.diagnostics()
    assert d["efdm_reference_index"] == 0 and d["train_epochs"] == 2


def test_efdm_reference_is_configurable_and_changes_the_scores(fitted_gnl, images):
    other = get("gnl").create(**{**TINY, "epochs": 2, "efdm_reference": "3"})
    other.fit(images)
    assert other.reference_index == 3 and other.diagnostics()["efdm_reference_index"] == 3
    assert np.array_equal(other.fitted_state()["reference"], fitted_gnl.geometry.image(images[3]))
    a, b = _weights(other), _weights(fitted_gnl)  # the reference does not change the training
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not np.allclose(other.score(images[:3]).maps, fitted_gnl.score(images[:3]).maps)
    off = get("gnl").create(**{**TINY, "epochs": 2, "efdm_alpha": 0.0})
    off.load_fitted_state(fitted_gnl.fitted_state())
    assert not np.allclose(off.score(images[:3]).maps, fitted_gnl.score(images[:3]).maps)


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


def _weights(m: RD4AD) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.student.state_dict().items()}


@pytest.mark.parametrize("name", ["rd4ad", "gnl"])
def test_cached_teacher_maps_train_the_same_student_as_computing_them(name, images, monkeypatch):
    """The teacher cache (clean maps; GNL's grayscale views too) is an execution detail: with it
    and without it (``teacher_cache_mb=0``) training ends on the same weights, bit for bit. Batch
    4 of 6 images: the last batch is smaller than the ones the cache was computed in."""
    kinds = []
    original = RD4AD._teacher_cache

    def spy(self, imgs):
        cache = original(self, imgs)
        kinds.append(sorted(cache or {}))
        return cache

    monkeypatch.setattr(RD4AD, "_teacher_cache", spy)
    cached = get(name).create(**{**TINY, "epochs": 2}, seed=1)
    cached.fit(images)
    computed = get(name).create(**{**TINY, "epochs": 2, "teacher_cache_mb": 0}, seed=1)
    computed.fit(images)
    assert kinds == [["clean", "gray"] if name == "gnl" else ["clean"], []]
    assert cached.history == computed.history
    a, b = _weights(cached), _weights(computed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rd4ad", "gnl", "augmix", "mixstyle", "jigsaw"])  # online draws, Jigsaw's head
def test_killed_training_resumes_and_ends_with_the_uninterrupted_weights(name, images, tmp_path):
    straight = get(name).create(**TINY, seed=3)
    straight.fit(images)

    first = get(name).create(**TINY, seed=3)
    first.checkpoint_dir = tmp_path / "ckpt"
    messages = []

    def kill_after_epoch_2(msg):
        messages.append(msg)
        if msg.startswith("epoch 2/"):
            raise Killed

    first.progress = kill_after_epoch_2
    with pytest.raises(Killed):
        first.fit(images)
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    assert messages[0].startswith("epoch 1/3 loss ")

    again = get(name).create(**TINY, seed=3)
    again.checkpoint_dir = tmp_path / "ckpt"
    again.progress = messages.append
    again.fit(images)
    assert again.resumed_from == 2 and messages[2].startswith("resumed at 2/3")
    assert len(again.history) == 3 and again.history[:2] == straight.history[:2]
    a, b = _weights(straight), _weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a different seed trains a different student (the comparison above can fail)
    other = get(name).create(**TINY, seed=4)
    other.fit(images)
    assert not all(torch.equal(a[k], v) for k, v in _weights(other).items())


@pytest.mark.slow
def test_checkpoint_of_another_training_is_ignored(images, tmp_path):
    m = get("rd4ad").create(**{**TINY, "epochs": 1})
    m.checkpoint_dir = tmp_path
    m.fit(images)
    longer = get("rd4ad").create(**{**TINY, "epochs": 2, "lr": 0.001})
    longer.checkpoint_dir = tmp_path
    longer.fit(images)
    assert longer.resumed_from == 0 and len(longer.history) == 2


@pytest.mark.slow
def test_checkpoint_trained_with_other_threads_is_not_resumed(images, tmp_path):
    """The rows record one fit_threads: a training split across two thread counts would not be it."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = get("rd4ad").create(**TINY, seed=3)
        first.checkpoint_dir = tmp_path

        def kill_after_epoch_2(msg):
            if msg.startswith("epoch 2/"):
                raise Killed

        first.progress = kill_after_epoch_2
        with pytest.raises(Killed):
            first.fit(images)
        torch.set_num_threads(2)
        again = get("rd4ad").create(**TINY, seed=3)
        again.checkpoint_dir = tmp_path
        with pytest.warns(BenchWarning, match=r"epochs 1-2 were trained with 1 threads on cpu, this run uses "
                                               r"2 threads on cpu; training again from epoch 0"):
            again.fit(images)
        assert again.resumed_from == 0 and len(again.history) == 3
    finally:
        torch.set_num_threads(before)


# -- through the grid --------------------------------------------------------------------------
def _folder_dataset(root: Path) -> Path:
    rng = np.random.default_rng(1)
    cat = root / "part"
    for sub in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (cat / sub).mkdir(parents=True)
    for i in range(8):
        Image.fromarray(_image(rng, 40)).save(cat / "train/good" / f"{i:03d}.png")
    for i in range(3):
        Image.fromarray(_image(rng, 40)).save(cat / "test/good" / f"{i:03d}.png")
        img = _image(rng, 40)
        img[10:20, 10:20] = 255
        mask = np.zeros((40, 40), np.uint8)
        mask[10:20, 10:20] = 255
        Image.fromarray(img).save(cat / "test/dent" / f"{i:03d}.png")
        Image.fromarray(mask).save(cat / "ground_truth/dent" / f"{i:03d}_mask.png")
    return root


@pytest.mark.slow
def test_grid_resumes_a_killed_training_and_never_retrains_a_finished_one(tmp_path, monkeypatch):
    from bench.cache import FitCache
    from bench.executors import run_local
    from bench.grid import GridSpec
    from bench.results import load_rows

    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))
    root = _folder_dataset(tmp_path / "data")
    spec = GridSpec(methods=["rd4ad"], dataset="folder", root=str(root), corruptions=["clean"],
                    overrides={"image_size": "64", "epochs": "3", "batch_size": "4"})
    cache = FitCache(tmp_path / "cache" / "fits")
    train_dir = tmp_path / "cache" / "train"

    real_save = RD4AD._save_checkpoint

    def save_then_die(self, opt, epoch):
        real_save(self, opt, epoch)
        if epoch == 2:
            raise Killed

    monkeypatch.setattr(RD4AD, "_save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        run_local(spec, tmp_path / "run1", fit_cache=cache, show_progress=False)
    assert len(list(train_dir.glob("*/last.pt"))) == 1
    monkeypatch.setattr(RD4AD, "_save_checkpoint", real_save)

    s1 = run_local(spec, tmp_path / "run1", fit_cache=cache, show_progress=False)
    row = load_rows(tmp_path / "run1").iloc[0]
    assert s1.ran == 1 and row["status"] == "ok", row["error"]
    assert not row["fit_cached"] and row["diag_resumed_from_epoch"] == 2 and row["diag_train_epochs"] == 3
    assert row["image_size"] == 64
    assert not list(train_dir.glob("*/last.pt"))  # the fit cache holds the weights now

    fit_calls = []
    monkeypatch.setattr(RD4AD, "fit", lambda self, train: fit_calls.append(1))
    run_local(spec, tmp_path / "run2", fit_cache=FitCache(tmp_path / "cache" / "fits"), show_progress=False)
    again = load_rows(tmp_path / "run2").iloc[0]
    assert again["status"] == "ok" and bool(again["fit_cached"]) and not fit_calls
    assert again["image_auroc"] == row["image_auroc"]


@pytest.mark.parametrize("reduction,expected", [("sum", 0.9 * 3 + 0.05 * 2 + 0.05 * 2), ("mean", 0.9 * 3 + 0.05 + 0.05)])
def test_gnl_consistency_terms_are_added_over_the_two_views(images, monkeypatch, reduction, expected):
    """L = 0.9 L_ori + 0.05 (L_abs(augmix) + L_abs(gray)) + 0.05 (L_lowf(augmix) + L_lowf(gray)) as
    ADShift's training script computes it ("sum"); "mean" halves the consistency weights."""
    one = lambda a, b: (a.sum() + b.sum()) * 0.0 + 1.0  # noqa: E731 - every distance = 1, graph kept
    monkeypatch.setattr(R, "flat_cosine_distance", one)
    monkeypatch.setattr(R, "distill_loss", lambda t, s: sum(one(a, b) for a, b in zip(t, s)))  # 3 scales
    m = get("gnl").create(**TINY, consistency_reduction=reduction)
    imgs = np.stack([m.geometry.image(im) for im in images])
    opt = torch.optim.SGD(m.student.parameters(), lr=0.0)
    m.student.train()
    loss = m._step(imgs, np.arange(4), None, np.random.default_rng(0), opt)
    assert loss == pytest.approx(expected)
