"""The Method contract: every registered method passes ``check_method``; broken ones are told why."""
from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods import (ADAPT, Geometry, Method, MethodConfig, Scores, bounded, check_method, registered,
                           registered_temporarily)
from bench.methods.contract import ContractError

# Small budgets so every method runs in seconds; fields a method lacks are left out.
TINY = {"resize": 64, "image_size": 64, "epochs": 1, "batch_size": 4, "coreset_ratio": 0.25, "adapt_epochs": 1,
        "stats_batch_images": 2}  # TTT++ scales its losses by batches of fewer images than the source


def tiny_config(reg) -> dict:
    names = {f.name for f in dataclasses.fields(reg.cls.Config)}
    return {**reg.overrides, **{k: v for k, v in TINY.items() if k in names}}


# PatchCore alone in the fast subset (pytest -m "not slow"); every method in the full run.
FAST = {"patchcore"}


# Methods on point clouds (MVTec 3D-AD) get clouds, small settings, random weights (none offline).
POINTS = {"patchcore_fpfh": {}, "patchcore_raw": {}, "patchcore_hog": {}, "patchcore_sift": {},
          "patchcore_depth": {},  # the default backbone: its ImageNet weights ship offline
          "patchcore_pointmae": {"num_group": 32, "group_size": 16, "grid": 28, "weights": "random"},
          "ttad_pointmae": {"num_group": 32, "group_size": 16, "grid": 28, "weights": "random", "adapt_epochs": 1}}


@functools.lru_cache(maxsize=1)
def point_inputs():
    """(train, test, masks, shifted) clouds of the MVTec 3D-AD fixture, served at 224 px."""
    import tempfile

    from bench.datasets.mvtec3d import load_category, write_fixture

    cat = load_category(write_fixture(Path(tempfile.mkdtemp()), seed=0), "bagel")
    test = [cat.test.images[i] for i in range(len(cat.test.images))]
    rng = np.random.default_rng(0)
    shifted = [np.where(c != 0, c + rng.normal(0, 1e-3, c.shape), 0).astype(np.float32) for c in test]
    return list(cat.train), test, [cat.test.mask(i) for i in range(len(test))], shifted


def test_every_point_method_is_checked_on_clouds():
    assert {n for n, r in registered().items() if r.cls.__module__.split(".")[-1].startswith(("point", "depth"))} \
        == set(POINTS)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(registered())])
def test_registered_method_passes_check_method(name, one_thread):
    reg = registered()[name]
    if name in POINTS:
        passed = check_method(reg.cls, images=point_inputs(), **{**reg.overrides, **POINTS[name]})
    else:
        passed = check_method(reg.cls, **tiny_config(reg))
    assert "fitted state through torch.save: same scores" in passed
    assert "adapt leaves the fitted state alone" in passed


# -- a tiny method and ways to break it -------------------------------------------------------------
@dataclass(frozen=True)
class MeanConfig(MethodConfig):
    side: int = bounded(16, ge=4)  # the evaluation grid: images squashed to side x side
    gain: float = bounded(1.0, gt=0, stage=ADAPT)

    def geometry(self) -> Geometry:
        return Geometry(resize=self.side, square=True)


class MeanDistance(Method):
    """Distance to the mean training image (gray, on the geometry's grid); adapt re-centres it."""

    Config = MeanConfig

    def _gray(self, images):
        return np.stack([self.geometry.image(im).astype(np.float32).mean(-1) for im in images])

    def fit(self, train):
        self.mean = self._gray(train).mean(0)

    def adapt(self, target):
        self.mean = 0.5 * self.mean + 0.5 * self._gray(target).mean(0)  # a new array: the state stays

    def score(self, images):
        maps = (self.config.gain * np.abs(self._gray(images) - self.mean)).astype(np.float32)
        return Scores(maps.reshape(len(maps), -1).max(1).astype(np.float64), maps)

    def fitted_state(self):
        return {"mean": self.mean}

    def load_fitted_state(self, state):
        self.mean = state["mean"]


def test_a_correct_method_passes():
    assert len(check_method(MeanDistance)) == 9


class AdaptsInPlace(MeanDistance):
    def adapt(self, target):
        self.mean += 1.0  # writes into the array it was loaded from: leaks into the next cell


class ForgetsState(MeanDistance):
    def fit(self, train):
        super().fit(train)
        self.offset = float(self.mean.mean())

    def score(self, images):
        s = super().score(images)
        return Scores(s.image_scores + getattr(self, "offset", 0.0), s.maps)


@dataclass(frozen=True)
class NoGeometryConfig(MethodConfig):
    side: int = 16


class NoGeometry(MeanDistance):
    Config = NoGeometryConfig


class NoState(MeanDistance):
    fitted_state = Method.fitted_state


class WrongShape(MeanDistance):
    def score(self, images):
        s = super().score(images)
        return Scores(s.image_scores, s.maps[:, :-1])


class NaNScores(MeanDistance):
    def score(self, images):
        s = super().score(images)
        return Scores(s.image_scores * np.nan, s.maps)


class Unseeded(MeanDistance):
    def fit(self, images):
        super().fit(images)
        self.mean = self.mean + np.random.default_rng().normal(size=self.mean.shape)  # a fresh, unseeded generator


class NoisyScores(MeanDistance):
    """Draws from the global generators while scoring, which the harness seeds per cell: correct."""

    def score(self, images):
        s = super().score(images)
        noise = torch.rand(len(s.image_scores)).numpy() + np.random.rand(len(s.image_scores))
        return Scores(s.image_scores + noise, s.maps)


def test_global_randomness_the_harness_seeds_is_no_false_alarm():
    assert "fitted state through torch.save: same scores" in check_method(NoisyScores)


class WritesIntoImages(MeanDistance):
    def score(self, images):
        for im in images:
            im[:] = 0  # "normalising" in place
        return super().score(images)


@pytest.mark.parametrize("cls, message", [
    (Unseeded, r"same seed, same scores: a second fit with seed 0 gives other image scores"),
    (WritesIntoImages, r"score \(after fit\): wrote into its input images; work on a copy"),
    (AdaptsInPlace, r"adapt: changed the fitted state it was loaded from \(at state\['mean'\]\)"),
    (ForgetsState, "fitted state round trip: .* other image scores"),
    (NoGeometry, "geometry: NoGeometryConfig must define geometry"),
    (NoState, "required methods: implement fitted_state"),
    (WrongShape, r"score \(after fit\): .* expected \(4,\) and \(4, 16, 16\)"),
    (NaNScores, r"score \(after fit\): 4 NaN/inf image scores"),
])
def test_a_broken_method_is_told_what_to_fix(cls, message):
    with pytest.raises(ContractError, match=f"check_method\\({cls.__qualname__}\\): {message}"):
        check_method(cls)


# -- fit identity and registration --------------------------------------------------------------------
def test_fit_identity_follows_the_stage_of_each_field():
    a = MeanDistance.fit_identity(MeanConfig(gain=2.0))
    assert a == MeanDistance.fit_identity(MeanConfig()) == {"fit": "MeanDistance", "side": 16,
                                                           "backbone": "tf_efficientnet_lite0", "weights": "imagenet"}
    assert MeanDistance.fit_identity(MeanConfig(side=32)) != a
    assert MeanConfig.fields_at(ADAPT) == ("gain",)


@dataclass(frozen=True)
class LaterConfig(MeanConfig):
    blur: int = bounded(0, ge=0, omit_default=True)  # added later: 0 reproduces the earlier fits


def test_a_field_added_with_omit_default_keys_only_when_set():
    before = MeanDistance.fit_identity(MeanConfig())
    assert MeanDistance.fit_identity(LaterConfig()) == before  # earlier cached fits stay valid
    assert MeanDistance.fit_identity(LaterConfig(blur=2)) == {**before, "blur": 2}
    assert LaterConfig(blur=2).hash() != LaterConfig().hash()  # the row still records it


def test_display_name_and_order_come_from_registration():
    from bench.tables import method_display, method_rank

    assert method_display("ttad") == "TTAD" and method_display("kl_div") == "kl_div"
    rank = method_rank()
    assert sorted(rank, key=rank.get)[:6] == ["patchcore", "ttt++", "ttac", "ttad", "rd4ad", "gnl"]
    with registered_temporarily("mean_distance", MeanDistance, display="Mean distance", order=0.5):
        assert method_display("mean_distance") == "Mean distance"
        assert 0 == method_rank()["patchcore"] < method_rank()["mean_distance"] < method_rank()["ttt++"]
    assert "mean_distance" not in method_rank()
    # docs/adding-a-method.md tells plugins to take 100 and up: no built-in may sit there
    assert all(r.order is not None and r.order < 100 for r in registered().values())


def test_methods_all_is_the_main_job_and_leaves_the_gnl_table_variants_to_their_presets():
    from bench.grid import GridSpec

    main = GridSpec(dataset="textures", methods=["all"]).method_names()
    assert main == [n for n in registered() if registered()[n].in_all] and len(main) == 13
    assert "gnl" in main and "rd4ad" in main and not {"augmix", "atta", "dinl", "dinl_lambda_080"} & set(main)
    assert GridSpec(dataset="textures", methods=["atta"]).method_names() == ["atta"]  # still selectable by name
    with registered_temporarily("mean_distance", MeanDistance):  # a plugin is in `all` unless it says otherwise
        assert "mean_distance" in GridSpec(dataset="textures", methods=["all"]).method_names()


def test_listing_methods_imports_no_method_module_and_no_torch():
    code = ("import sys; from bench.methods import registered; r = registered(); "
            "import bench.tables.names; "
            "print(len(r), sorted(m for m in ('torch', 'bench.methods.patchcore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(registered())), "[]"]


def test_a_class_registered_by_path_is_imported_and_checked_when_used():
    with registered_temporarily("by_path", f"{__name__}:MeanDistance", summary="test", side=8) as name:
        reg = registered()[name]
        assert reg.module == __name__ and reg.cls is MeanDistance and reg.config().side == 8
    with registered_temporarily("bad_field", f"{__name__}:MeanDistance", no_such_field=1):
        with pytest.raises(TypeError, match="not fields of MeanConfig"):
            registered()["bad_field"].cls


def test_registry_suggests_closest_name():
    from bench.errors import UnknownName
    from bench.methods import get

    with pytest.raises(UnknownName, match="did you mean 'patchcore'"):
        get("patchcor")


def test_variant_registration_rejects_unknown_fields():
    from bench.methods import register_variant
    from bench.methods.patchcore import PatchCore

    with pytest.raises(TypeError, match="not fields"):
        register_variant("bogus", PatchCore, no_such_field=1)
