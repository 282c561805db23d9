"""A plugin method's code is part of what a row was computed by: a user iterating on their method
edits its source without changing its config, and must not get the old rows or fit back."""
from __future__ import annotations

import sys
import textwrap

import pytest

from bench.errors import BenchWarning
from bench.executors import run_local
from bench.grid import GridSpec
from bench.methods import get
from bench.methods.registry import code_fingerprint, registered_temporarily
from bench.results import load_rows
from bench.verify import check

from _plugins import module_writer

PLUGIN = '''
import numpy as np
from bench.methods import Geometry, Method, MethodConfig, Scores


class ProbeConfig(MethodConfig):
    pass


class Probe(Method):
    """Brightness of the test image, on a small grid."""

    geometry = Geometry(resize=32, square=True)

    def fit(self, train):
        self.level = 0.0

    def score(self, images):
        maps = np.stack([self.geometry.image(im).astype(np.float32).mean(-1) for im in images])
        return Scores(SIGN * maps.reshape(len(maps), -1).mean(1).astype(np.float64), SIGN * maps)

    def fitted_state(self):
        return {"level": self.level}

    def load_fitted_state(self, state):
        self.level = state["level"]


SIGN = 1.0
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A plugin module on sys.path; ``plugin(sign)`` (re)writes and (re)imports it."""
    write = module_writer(tmp_path, monkeypatch, "adsb_probe_plugin")

    def load(sign: float):
        return write(PLUGIN.replace("SIGN = 1.0", f"SIGN = {sign}")).Probe

    yield load
    sys.modules.pop("adsb_probe_plugin", None)


def test_the_fingerprint_follows_a_plugins_source_and_leaves_builtins_out(plugin):
    first = code_fingerprint(plugin(1.0))
    assert first.startswith("sha256:")  # a module on sys.path: no distribution, its source only
    assert code_fingerprint(plugin(1.0)) == first  # rewritten with the same text
    assert code_fingerprint(plugin(-1.0)) != first
    assert get("patchcore").code == "" and get("ttad").code == ""  # the harness's own methods


def test_an_edited_plugin_is_fitted_and_run_again(plugin, tiny_root, tmp_path):
    spec = GridSpec(methods=["probe"], dataset="folder", root=str(tiny_root), corruptions=["clean"])
    run = tmp_path / "run"
    with registered_temporarily("probe", plugin(1.0)):
        run_local(spec, run, show_progress=False)
        before = load_rows(run)
    with registered_temporarily("probe", plugin(-1.0)), \
            pytest.warns(BenchWarning, match="computed by other code of the method"):  # same config, other code
        summary = run_local(spec, run, show_progress=False)
        after = load_rows(run)
    assert summary.ran == len(before) and summary.skipped == 0
    assert (after["method_code"] != before["method_code"]).all()
    assert not after["fit_cached"].any()  # the fit cache did not serve the old code's fit
    assert ((after["image_auroc"] + before["image_auroc"] - 1).abs() < 1e-9).all()  # scores negated
    # bench verify of an old row says why it differs
    notes = check(before.iloc[0].to_dict(), after.iloc[0].to_dict()).notes
    assert any(n.startswith("method_code: sha256:") for n in notes), notes
    # unchanged code: done cells stay done
    with registered_temporarily("probe", plugin(-1.0)):
        assert run_local(spec, run, show_progress=False).ran == 0


def test_rows_of_a_method_without_a_network_name_no_backbone():
    """A method that runs no pretrained network (takes_weights = False) must not be recorded as
    an ImageNet EfficientNet because MethodConfig has backbone fields."""
    from bench.grid import Cell
    from bench.runner import base_row

    def row(method: str) -> dict:
        cell = Cell(method, "mvtec3d", "bagel", "clean", 0, 0, "native", get(method).config())
        return base_row(cell, "cpu")

    computed = row("patchcore_fpfh")  # FPFH point features
    assert (computed["backbone"], computed["weights"], computed["normalization"]) == ("", "", "")
    cnn = row("patchcore")
    assert cnn["backbone"] == "tf_efficientnet_lite0" and "ImageNet" in cnn["weights"] and cnn["normalization"]


def test_a_method_without_a_source_file_is_said_not_fingerprinted_as_empty():
    """A class fed on stdin or typed in a notebook has no file: the harness cannot tell its edits
    (it once hashed nothing and showed that as an ordinary fingerprint)."""
    import types

    from bench.errors import BenchWarning

    module = types.ModuleType("adsb_nofile_plugin")  # like __main__ of `python - < script.py`
    sys.modules[module.__name__] = module
    try:
        exec(textwrap.dedent(PLUGIN), module.__dict__)
        with pytest.warns(BenchWarning, match=r"Probe: defined in adsb_nofile_plugin without a source file, so "
                                               r"the harness cannot tell an edited version"):
            assert code_fingerprint(module.Probe) == "source unread"
    finally:
        del sys.modules[module.__name__]
