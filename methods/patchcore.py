"""PatchCore (Roth et al., CVPR 2022), following amazon-science/patchcore-inspection.

Pipeline: resize 256 / centre-crop 224, the backbone's own input normalisation; backbone features at the
stride-8 and stride-16 stages; every 3x3 neighbourhood (stride 1, zero padding 1) of each level
pooled to 1024 dims (adaptive average pooling over C*9), the stride-16 level upsampled
bilinearly to the stride-8 grid, both levels pooled together to 1024 dims; approximate greedy
coreset; FAISS ``IndexFlatL2`` with k nearest neighbours on squared L2; image score = max patch
score; map = bilinear upsample to 224 + Gaussian sigma 4.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import patch_pooling
from .backbones import PATCHCORE_STRIDES, load_backbone, normalization, stages_for
from .base import Method, MethodConfig, Scores, bounded
from .coreset import greedy_coreset
from .errors import BenchError, warn
from .knn import NearestNeighbours
from .persist import array_digest
from .geometry import Geometry
from .preprocess import batched, to_tensor
from .smoothing import smooth_maps


@dataclass(frozen=True)
class PatchCoreConfig(MethodConfig):
    # Every field keeps the default stage (fit), the scoring-only ones too (num_neighbours,
    # reweight*, smoothing_sigma, batch_size): the fit-cache keys predate the stage marks, and
    # marking them now would change every key and orphan every cached fit.
    resize: int = bounded(256, ge=1)
    image_size: int = bounded(224, ge=1)  # centre crop = evaluation resolution
    # False: shorter side -> resize (official; on very non-square images the crop drops the
    # ends). True: squash to resize x resize first; the crop still trims (resize - image_size) / 2
    # px of every side unless resize == image_size (--set square_resize=true --set resize=224).
    square_resize: bool = False
    pretrain_embed_dim: int = bounded(1024, ge=1)  # per-level pooling target (official --pretrain_embed_dimension)
    target_embed_dim: int = bounded(1024, ge=1)  # final patch width (official --target_embed_dimension)
    patch_size: int = bounded(3, ge=1)  # local neighbourhood
    coreset_ratio: float = bounded(0.1, gt=0, le=1)
    coreset_algorithm: str = bounded("auto", choices=("auto", "fused", "torch"))  # auto | fused | torch (the same selection)
    num_neighbours: int = bounded(1, ge=1)  # the reference runs use k = 1
    reweight: bool = False  # the paper's softmax re-weighting (Eq. 7, Euclidean); not in the official code
    reweight_support: int = bounded(9, ge=1)
    smoothing_sigma: float = bounded(4.0, ge=0)
    batch_size: int = bounded(16, ge=1)

    def geometry(self) -> Geometry:
        return Geometry(resize=self.resize, crop=self.image_size, square=self.square_resize)

    def whole_image_settings(self) -> dict[str, str]:
        return {"square_resize": "true", "resize": str(self.image_size)}  # squash: the crop is a no-op


def check_bank_size(n_images: int, n_patches: int, cfg: PatchCoreConfig) -> None:
    """A category too small for the coreset: a one-line error (kNN impossible) or a warning."""
    keep = max(1, int(n_patches * cfg.coreset_ratio))
    if keep < cfg.num_neighbours:
        raise BenchError(f"{n_images} training images give {n_patches} patches and coreset_ratio="
                         f"{cfg.coreset_ratio} keeps {keep}: fewer than num_neighbours={cfg.num_neighbours}; "
                         "add training images or raise coreset_ratio")
    if int(n_patches * cfg.coreset_ratio) < 1:
        warn(f"{n_images} training images give {n_patches} patches: coreset_ratio={cfg.coreset_ratio} "
             "keeps less than one, so the memory bank holds a single patch; add training images or "
             "raise coreset_ratio")


def embed_patches(features: Sequence[torch.Tensor], cfg: PatchCoreConfig) -> torch.Tensor:
    """Backbone maps -> (B, h*w, target_embed_dim) locally aware patch features.

    Literal form of the official aggregation: adaptive pooling over each neighbourhood's C*k*k
    values, then over the concatenated levels. Pooling over channels and bilinear upsampling are
    both linear and act on different axes, so pooling before upsampling equals the official order.
    Without gradients on the CPU the same numbers come from ``patch_pooling`` (3x faster at
    EfficientNet-Lite0's widths, 6x at WRN-50's); with them its pooling replaces ATen's.
    """
    if patch_pooling.supported(features, cfg.patch_size):
        return patch_pooling.embed_patches_fused(features, cfg.patch_size, cfg.pretrain_embed_dim,
                                                 cfg.target_embed_dim)
    h, w = features[0].shape[-2:]
    k = cfg.patch_size
    levels = []
    for f in features:
        b, c, fh, fw = f.shape
        u = F.unfold(f, kernel_size=k, padding=k // 2)  # (B, C*k*k, fh*fw), channel-major
        u = u.transpose(1, 2).reshape(b * fh * fw, 1, c * k * k)
        u = patch_pooling.adaptive_avg_pool1d(u, cfg.pretrain_embed_dim).reshape(b, fh, fw, -1)
        if (fh, fw) != (h, w):
            u = F.interpolate(u.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
            u = u.permute(0, 2, 3, 1)
        levels.append(u.reshape(b * h * w, -1))
    stacked = torch.stack(levels, dim=1).reshape(len(levels[0]), 1, -1)
    out = patch_pooling.adaptive_avg_pool1d(stacked, cfg.target_embed_dim)
    return out.reshape(features[0].shape[0], h * w, cfg.target_embed_dim)


class PatchEmbedder(nn.Module):
    """Backbone + patch aggregation; differentiable so test-time adaptation can train it."""

    def __init__(self, cfg: PatchCoreConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = load_backbone(cfg.backbone, cfg.weights, stages_for(cfg.backbone, PATCHCORE_STRIDES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return embed_patches(self.backbone(x), self.cfg)

    def grid(self) -> int:
        return self.cfg.image_size // PATCHCORE_STRIDES[0]


class PatchCore(Method):
    Config = PatchCoreConfig

    def __init__(self, config: PatchCoreConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.norm, embedder = self.make_embedder()
        self.embedder = embedder.to(device).eval()
        self.bank: np.ndarray | None = None
        self.bank_index: np.ndarray | None = None  # the bank items' positions among all training patches
        self._nn: NearestNeighbours | None = None
        self.timings: dict[str, float] = {}

    # -- inputs and features ---------------------------------------------------------------------
    # The backbone of PatchCore: a subclass with another network (point clouds: Point-MAE)
    # overrides ``make_embedder`` and the two input hooks; one with computed features (FPFH)
    # overrides ``feature_batches`` and ``grid``. Bank, coreset, search, scores, maps and the
    # test-time adaptation loop (adaptation.py) stay PatchCore's.
    def make_embedder(self) -> tuple[Any, nn.Module]:
        """(input normalisation, differentiable module: batch tensor -> (B, patches, D) features)."""
        cfg = self.config
        return normalization(cfg.backbone), PatchEmbedder(cfg)  # as the backbone's weights were trained

    def grid_input(self, item: np.ndarray) -> np.ndarray:
        """One dataset item on the method's grid: uint8 (S, S, 3) for images."""
        return self.geometry.image(item)

    def input_tensor(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        """Items from ``grid_input`` -> the embedder's (B, C, S, S) input."""
        return to_tensor(items, self.norm)

    def input_batches(self, images: Sequence[np.ndarray]):
        """The embedder's inputs for ``images``, ``batch_size`` at a time."""
        return batched(images, self.grid_input, self.config.batch_size, self.input_tensor)

    def feature_batches(self, images: Sequence[np.ndarray]):
        """(B, patches, D) features of ``images`` on the CPU, batch by batch (no gradients)."""
        for x in self.input_batches(images):
            with torch.no_grad():
                yield self.embedder(x.to(self.device)).cpu()

    def grid(self) -> int:
        """Side of the patch grid the maps are computed on."""
        return self.embedder.grid()

    def embed(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, patches, D) features of ``images`` on the CPU, computed in batches."""
        return torch.cat(list(self.feature_batches(images)))

    # -- contract ------------------------------------------------------------------------------
    def fit(self, train: Sequence[np.ndarray]) -> None:
        t0 = time.perf_counter()
        feats = self.embed(train)
        t1 = time.perf_counter()
        flat = feats.reshape(-1, feats.shape[-1])
        check_bank_size(len(train), len(flat), self.config)
        self.on_train_features(flat)
        idx = greedy_coreset(flat.to(self.device), self.config.coreset_ratio, seed=self.seed,
                             algorithm=self.config.coreset_algorithm)
        t2 = time.perf_counter()
        self.timings = {"fit_embed_seconds": t1 - t0, "coreset_seconds": t2 - t1,
                        "train_patches": float(len(flat)), "coreset_steps": float(len(idx))}
        self.bank_index = np.sort(np.asarray(idx, dtype=np.int64))
        self._set_bank(flat[torch.as_tensor(self.bank_index)].numpy())

    def on_train_features(self, flat: torch.Tensor) -> None:
        """Hook for subclasses that need statistics of the full (pre-coreset) training patches."""

    def _set_bank(self, bank: np.ndarray) -> None:
        self.bank = np.ascontiguousarray(bank, dtype=np.float32)
        self._nn = NearestNeighbours(self.bank, self.device)

    def patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(N, P, D) -> squared-L2 k-NN distances (N, P, k) and bank indices (N, P, k)."""
        n, p, d = feats.shape
        dist, idx = self._nn.search(feats.reshape(-1, d).numpy(), self.config.num_neighbours)
        return dist.reshape(n, p, -1), idx.reshape(n, p, -1)

    def score(self, images: Sequence[np.ndarray]) -> Scores:
        assert self._nn is not None, "fit (or load_fitted_state) before score"
        image_scores, maps = [], []
        t_embed = t_search = 0.0
        features = self.feature_batches(images)
        while True:
            t0 = time.perf_counter()
            feats = next(features, None)
            if feats is None:
                break
            t1 = time.perf_counter()
            dist, idx = self.patch_scores(feats)
            t_search += time.perf_counter() - t1
            t_embed += t1 - t0
            patch = dist.mean(-1)  # (B, P)
            image_scores.append(self._image_scores(feats, patch, idx))
            maps.append(self._maps(patch))
        self.timings.update(score_embed_seconds=t_embed, search_seconds=t_search)
        return Scores(np.concatenate(image_scores), np.concatenate(maps))

    def _image_scores(self, feats: torch.Tensor, patch: np.ndarray, idx: np.ndarray) -> np.ndarray:
        top = patch.max(axis=1)
        if not self.config.reweight:
            return top
        # paper Eq. 7: damp the max score when its nearest bank item sits in a dense region. Eq. 7
        # is in Euclidean distances throughout; the patch scores are FAISS's squared distances (as
        # the official code scores), so s* is their square root here.
        out = np.empty_like(top)
        b = self.config.reweight_support
        for i in range(len(top)):
            p = int(patch[i].argmax())
            m_star = self.bank[idx[i, p, 0]]
            _, support = self._nn.search(m_star[None], b)
            q = feats[i, p].numpy()
            d = np.sqrt(((self.bank[support[0]] - q) ** 2).sum(1))
            w = np.exp(d - d.max())
            out[i] = (1.0 - w[0] / w.sum()) * np.sqrt(max(float(top[i]), 0.0))
        return out

    def _maps(self, patch: np.ndarray) -> np.ndarray:
        g = self.grid()
        m = torch.from_numpy(patch.astype(np.float32)).reshape(-1, 1, g, g)
        s = self.config.image_size
        m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False)[:, 0].numpy()
        sigma = self.config.smoothing_sigma
        return smooth_maps(m, sigma)

    # the hooks ``score`` goes through: a subclass that overrides one scores in its own way
    SCORE_PATH = ("score", "feature_batches", "input_batches", "grid_input", "input_tensor", "make_embedder",
                  "grid", "patch_scores", "_image_scores", "_maps")

    def score_identity(self) -> dict[str, Any] | None:
        """What ``score`` reads (capabilities.SharedScores): the scoring code, the config, the seed
        (random weights are drawn from it), the device and the bank's bytes."""
        if self.bank is None:
            return None
        # the class that declared this identity must know the adapt that ran: a subclass with its
        # own adapt (which may move the weights) and no score_identity of its own shares nothing
        owner = next(c for c in type(self).__mro__ if "score_identity" in vars(c))
        if type(self).adapt is not owner.adapt:
            return None
        return {"path": [getattr(type(self), name).__qualname__ for name in self.SCORE_PATH],
                "config": self.scoring_config(), "seed": self.seed, "device": self.device,
                "bank": array_digest(self.bank)}

    def scoring_config(self) -> dict[str, Any]:
        """The config fields scoring may read: all of them (a subclass drops those it does not use)."""
        return self.config.to_dict()

    def fitted_state(self) -> dict[str, Any]:
        return {"bank": self.bank, "bank_index": self.bank_index}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.bank_index = state.get("bank_index")
        self._set_bank(state["bank"])

    def diagnostics(self) -> dict[str, Any]:
        out = dict(self.timings)
        if self.bank is not None:
            out["bank_size"] = float(len(self.bank))
        return out
