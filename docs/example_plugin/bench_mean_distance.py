"""Mean distance: how far each pixel is from the mean normal training image.

A complete adshift-bench method in one module, shipped as its own package through the
``bench.methods`` entry-point group (docs/adding-a-method.md walks through it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.methods import ADAPT, Geometry, Method, MethodConfig, Scores, bounded, register


@dataclass(frozen=True)
class MeanDistanceConfig(MethodConfig):
    side: int = bounded(64, ge=8)  # fit-time (the default stage): the grid the mean is computed on
    # adapt-time: how far adapt moves the mean towards the cell's target images (0: not at all);
    # changing it reuses the fit
    target_weight: float = bounded(0.0, ge=0, le=1, stage=ADAPT)

    def geometry(self) -> Geometry:
        return Geometry(resize=self.side, square=True)  # squash to side x side, no crop


@register("mean_distance", summary="Mean distance: |image - mean normal image| per pixel (example plugin)",
          display="Mean distance", order=100)
class MeanDistance(Method):
    Config = MeanDistanceConfig
    takes_weights = False  # raw pixels: its rows name no backbone, weights or normalisation

    def _gray(self, images) -> np.ndarray:
        return np.stack([self.geometry.image(im).astype(np.float32).mean(-1) for im in images])

    def fit(self, train) -> None:
        gray = self._gray(train)
        self.mean = gray.mean(0)
        self.spread = float(gray.std())

    def adapt(self, target) -> None:
        w = self.config.target_weight
        if w > 0:  # a new array: the fitted state this cell was loaded from stays as it was
            self.mean = (1 - w) * self.mean + w * self._gray(target).mean(0)

    def score(self, images) -> Scores:
        maps = np.abs(self._gray(images) - self.mean).astype(np.float32)
        return Scores(maps.reshape(len(maps), -1).max(1).astype(np.float64), maps)

    def fitted_state(self) -> dict:
        return {"mean": self.mean, "spread": self.spread}

    def load_fitted_state(self, state: dict) -> None:
        self.mean, self.spread = state["mean"], state["spread"]

    def diagnostics(self) -> dict:  # optional capability: a diag_train_spread column in the rows
        return {"train_spread": self.spread}
