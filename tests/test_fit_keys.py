"""Fit-cache keys of the built-in methods are pinned: runs resume and cached fits stay valid.

``data/fit_keys_main.json`` was computed by ``bench.runner.fit_key`` at commit 425663d (before
fit identities came from the config classes): method | config overrides | seed -> key, with a
fixed training-set fingerprint. A change that moves any key invalidates every cached fit and
every interrupted run's fits, so it must be deliberate (and this file regenerated). Methods
registered later (GNL's baselines and Table 5 / 6 rows) were added with RD4AD's cases, computed
when they were registered; the fields they brought are ``omit_default``, so no earlier key moved.
The ResNet-18 cases' keys moved on purpose when ResNet-18/34/50 were pinned to torchvision's
weights (``weights_tag``) and RD4AD's ResNet students became RD4AD's own (``student_block``):
fits on timm's default weights, or of the old students, must not be taken for the new ones.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import runner
from bench.cache import FitCache
from bench.grid import Cell
from bench.methods import registered

PINNED = json.loads((Path(__file__).parent / "data" / "fit_keys_main.json").read_text())


class _Context:
    """What ``fit_key`` reads from a RunContext: the category's training ids (no other training files, as
    in the MVTec layout) and the cache's key."""

    fit_cache = SimpleNamespace(key=FitCache.key)
    train_data = runner.RunContext.train_data  # the real one, on this context's category

    def __init__(self):
        self._train_data = {}

    def category(self, name):
        ids = ["train/good/000.png", "train/good/001.png"]
        return SimpleNamespace(root=None, name=name, train=SimpleNamespace(ids=ids), train_files=())


def _key(entry: str) -> str:
    name, case, seed = entry.split("|")
    cell = Cell(name, "textures", "carpet", "clean", 0, int(seed), "native",
                registered()[name].config(**json.loads(case)))
    return runner.fit_key(cell, _Context())


def test_every_builtin_method_is_pinned():
    builtin = {n for n, r in registered().items() if r.cls.__module__.startswith("bench.methods.")}
    assert {e.split("|")[0] for e in PINNED} == builtin


@pytest.mark.parametrize("entry", sorted(PINNED))
def test_fit_key_unchanged(entry):
    assert _key(entry) == PINNED[entry]


def test_adapt_time_fields_share_a_fit_and_fit_time_fields_do_not():
    assert PINNED['ttad|{"adapt_lr": 0.0}|0'] == PINNED["ttad|{}|0"] == PINNED["ttac|{}|0"]
    assert PINNED['ttad|{"n_clusters": 8}|0'] != PINNED["ttad|{}|0"]
    assert PINNED['gnl|{"efdm_alpha": 0.0}|0'] == PINNED["gnl|{}|0"] != PINNED['gnl|{"lr": 0.001}|0']


def test_gnl_ablation_rows_share_the_fits_they_should_and_no_other():
    assert PINNED["atta|{}|0"] == PINNED["rd4ad|{}|0"]  # ATTA only = RD4AD's student + test-time EFDM
    assert PINNED["dinl|{}|0"] == PINNED["gnl|{}|0"] == PINNED["dinl_lambda_090|{}|0"]  # DINL = GNL's student
    own = ["rd4ad", "gnl", "rd4ad_labs", "rd4ad_llowf", "dinl_lambda_095", "dinl_lambda_085", "dinl_lambda_080",
           "augmix", "mixstyle", "efdm_train", "augmix_mixstyle", "augmix_efdm", "jigsaw"]
    assert len({PINNED[f"{n}|{{}}|0"] for n in own}) == len(own)


def test_ttad_on_point_mae_shares_one_fit_across_its_adaptation_settings():
    assert PINNED['ttad_pointmae|{"adapt_epochs": 1}|0'] == PINNED["ttad_pointmae|{}|0"]
    assert PINNED['ttad_pointmae|{"adapt_norms": "bn+ln"}|0'] == PINNED["ttad_pointmae|{}|0"]
    assert PINNED['patchcore_pointmae|{"num_group": 64}|0'] != PINNED["patchcore_pointmae|{}|0"]


def test_resnet_weights_pinned_later_name_their_tag_in_the_fit_identity():
    """ResNet-18/34/50 loaded timm's default a1_in1k weights before their tv_in1k pin: a fit cached
    then is not taken for one on torchvision's weights. WRN-50 (always pinned) and other weights
    (random, a path) keep their keys."""
    def ident(backbone, weights="imagenet", method="patchcore"):
        cell = Cell(method, "textures", "carpet", "clean", 0, 0, "native",
                    registered()[method].config(backbone=backbone, weights=weights))
        return runner.fit_identity(cell, _Context())

    for name in ("resnet18", "resnet34", "resnet50"):
        assert ident(name)["weights_tag"] == "tv_in1k"
        assert ident(name, method="rd4ad")["weights_tag"] == "tv_in1k"
        assert "weights_tag" not in ident(name, weights="random")
    assert "weights_tag" not in ident("wide_resnet50_2") and "weights_tag" not in ident("tf_efficientnet_lite0")
