"""Every registered method runs through fit / adapt / score on tiny images."""
from __future__ import annotations

import numpy as np
import pytest

from bench.methods import Scores, registered

# Small budgets so every method runs in seconds; fields a method lacks are ignored.
TINY = {"resize": 64, "image_size": 64, "epochs": 1, "batch_size": 4, "coreset_ratio": 0.25}


def _tiny_config(reg):
    import dataclasses

    names = {f.name for f in dataclasses.fields(reg.cls.Config)}
    return {k: v for k, v in TINY.items() if k in names}


@pytest.fixture(scope="module")
def tiny_category(tmp_path_factory, mvtec_factory):
    from bench.datasets.mvtec import load_category

    root = mvtec_factory(tmp_path_factory.mktemp("contract"), n_train=6, n_good=2, n_bad=2)
    return load_category(root, "widget")


# PatchCore alone in the fast subset (pytest -m "not slow"); every method in the full run.
FAST = {"patchcore"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(registered())])
def test_method_contract(name, tiny_category):
    reg = registered()[name]
    method = reg.create(seed=0, **_tiny_config(reg))
    assert method.name == name
    cat = tiny_category
    method.fit(cat.train)
    before = method.score(cat.test.images)

    # a fresh instance loaded from the fitted state scores exactly like the fitted one
    fresh = reg.create(seed=0, **_tiny_config(reg))
    fresh.load_fitted_state(method.fitted_state())
    np.testing.assert_allclose(fresh.score(cat.test.images).image_scores, before.image_scores,
                               rtol=1e-4, atol=1e-5)

    method.source_images = cat.train  # as the harness does (ttad re-embeds its bank from them)
    method.adapt(cat.test.images)
    scores = method.score(cat.test.images)
    assert isinstance(scores, Scores)
    n = len(cat.test)
    assert scores.image_scores.shape == (n,)
    assert np.isfinite(scores.image_scores).all() and np.isfinite(scores.maps).all()
    mask = method.mask_transform(cat.test.mask(0))
    assert scores.maps.shape == (n, *mask.shape)


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
