"""The mask cache follows each variant's evaluation geometry (issue 10: it was keyed by class name).

Two registered variants of one method class whose anomaly maps live on different grids run in
one grid; each must be scored against masks on its own grid. Before the geometry became part of
the contract, both variants shared the first variant's mask stack (the second one failed with a
shape mismatch, or - with equal shapes - was scored against the wrong masks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from bench.executors import run_local
from bench.grid import GridSpec
from bench.methods import Method, MethodConfig, Scores, registered_temporarily
from bench.results import load_rows


def _resize(img: np.ndarray, side: int, resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((side, side), resample=resample))


@dataclass(frozen=True)
class SideConfig(MethodConfig):
    side: int = 16  # the evaluation grid: images and masks squashed to side x side


class _MeanDistance(Method):
    """Distance to the mean training image on a side x side grid (fit: the mean; no backbone)."""

    Config = SideConfig

    def fit(self, train):
        self.mean = np.mean([self._grid(im) for im in train], axis=0)

    def _grid(self, im):
        return _resize(im, self.config.side, Image.BILINEAR).astype(np.float32).mean(-1)

    def score(self, images):
        maps = np.stack([np.abs(self._grid(im) - self.mean) for im in images]).astype(np.float32)
        return Scores(maps.reshape(len(maps), -1).max(1).astype(np.float64), maps)

    def fitted_state(self):
        return {"mean": self.mean}

    def load_fitted_state(self, state):
        self.mean = state["mean"]


class OwnMaskTransform(_MeanDistance):
    """Written as the README told users to: a mask_transform that reads the config."""

    def mask_transform(self, mask):
        return _resize(mask.astype(np.uint8) * 255, self.config.side, Image.NEAREST) > 127


@dataclass(frozen=True)
class GeometryConfig(SideConfig):
    def geometry(self):
        from bench.methods.preprocess import Geometry

        return Geometry(resize=self.side, square=True)


class DeclaredGeometry(_MeanDistance):
    """Written to the contract: the config declares the geometry, the base class maps the masks."""

    Config = GeometryConfig


@pytest.mark.parametrize("cls", [OwnMaskTransform, DeclaredGeometry], ids=["mask_transform", "geometry"])
def test_each_variant_gets_masks_on_its_own_grid(cls, tiny_root, tmp_path):
    with registered_temporarily("side16", cls, side=16), registered_temporarily("side32", cls, side=32):
        spec = GridSpec(methods=["side16", "side32"], dataset="folder", root=str(tiny_root),
                        corruptions=["gaussian_noise"], severities=[3], device="cpu")
        summary = run_local(spec, tmp_path / "run", show_progress=False)
        rows = load_rows(tmp_path / "run")
        assert summary.failed == 0, summary.failures
        assert set(rows["status"]) == {"ok"} and len(rows) == 4

        from bench.runner import RunContext, new_method

        ctx = RunContext(spec)
        cat = ctx.category("widget")
        cells = {c.method: c for c in spec.cells() if c.corruption == "clean"}
        for name, side in (("side16", 16), ("side32", 32)):
            method = new_method(cells[name], "cpu")
            masks = ctx.masks(cells[name], method)
            expected = np.stack([_resize(cat.test.mask(i).astype(np.uint8) * 255, side, Image.NEAREST) > 127
                                 for i in range(len(cat.test))])
            assert masks.shape == (len(cat.test), side, side)
            assert np.array_equal(masks, expected), name
