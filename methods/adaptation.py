"""Test-time adaptation on PatchCore: one loop, a family of alignment losses.

Every method here (TTT++, TTAC, TTAD and TTAD's Table 4 ablation rows) is a *configuration* of
one class, :class:`AdaptedPatchCore`:

1. start from the fitted PatchCore of the category; the memory bank stays fixed;
2. make only the backbone's BatchNorm affine parameters (gamma, beta) trainable;
3. SGD (lr 0.003, momentum 0.9) over the unlabeled target images in batches of 10 for
   ``adapt_epochs`` epochs; each batch is extended with one augmented view per image
   (``flip_rot90``: a random non-identity flip/90-degree rotation, TTAD's target augmentation;
   ``xyz_flip_rot``: the same group acting on a point cloud's coordinates, its grid in place;
   ``copy``: plain duplicates; ``none``: the batch alone);
4. the loss aligns PatchCore's own embedded patches of the batch (with gradient) to the source:
   ``moment`` (TTT++), ``gaussian_kl`` (TTAC) or ``sinkhorn`` (TTAD; assignment ``or``,
   ``column``, ``mutual``, ``continuous`` or ``hungarian``); ``none`` skips adaptation;
5. score the target with the adapted backbone against the source bank (``score_bank=source``)
   or against the same coreset patches re-embedded from the training images by the adapted
   backbone (``adapted``: train and test features from one network).

Source statistics (mean/covariance of all pre-coreset training patches, TTT++'s source
self-discrepancies, k-means components of the coreset with per-component statistics of the
training patches, leave-one-out nearest-neighbour distance quantiles) are computed once at fit
time and cached with the bank (and the coreset's patch indices). ``fit_identity`` is
PatchCore's fields plus those fit-time knobs, so all variants share one fit per category.

Readings of TTAD (no public code; each an option recorded in the row, compared at the paper's
settings by ``benchmarks/ttad_ablation.py``):

- ``assignment``: Eq. 6 literally (``or``: a pair is kept if it is its row's *or* its column's
  arg-max, so every target patch keeps one pair); ``column`` (each bank item's strongest target
  patch only: patches no bank item prefers get no pull); ``mutual`` (both); ``continuous``
  (the entropic plan itself); ``hungarian`` (exact one-to-one, scipy, CPU).
- ``bn_mode``: ``source`` keeps eval-mode BN with the source running statistics (only
  gamma/beta move); ``batch`` normalises with each batch's statistics as TENT and the official
  TTT++/TTAC code do, re-estimating the running statistics (cumulative) for scoring.
- ``ot_reduction``: Eq. 6's ``sum`` over pairs, or the ``mean`` (sum / sum(pi)). With unit
  pairs, ``sum`` at lr / P is about the step ``mean`` takes at lr (P = pairs per step, recorded
  as diag_ot_pairs; exactly where P is constant); ``sum`` at lr 0.003 diverges here.
- ``score_bank``, ``adapt_epochs`` (the paper: 10 on MVTec AD, 1 on Real-IAD).
- ``adapt_clean``: whether clean in-distribution test sets are adapted too (default: no, as the
  papers' tables, whose clean TTA entries equal PatchCore's; such cells record
  ``diag_adapt_skipped_clean`` and score exactly as PatchCore on the shared fit).
- The named ``ttad`` is the paper's method as printed (``builtin.TTAD_ASSIGNMENT``, the source
  bank); ``ttad_reembed`` scores against the re-embedded bank (a harness reading).

Harness choices (recorded here, see also the config fields):

- OT: cost C_ij = ||z_i - m_j|| (TTAD Eq. 4); the plan is computed on C divided by the median
  leave-one-out NN distance of the training patches, so ``reg`` is unit-free. Sinkhorn runs in
  torch float32 on the cell's device in one reused (N, M) buffer and stops once the plan's
  marginal L1 error is below ``sinkhorn_tol`` (at most ``sinkhorn_iters``); the iterations used
  and the final error are in the row (``diag_sinkhorn_iters``, ``diag_sinkhorn_error``).
- ``loss_before`` is the first step's loss (the first batch, its augmentation, source weights),
  ``loss_after`` the loss of that same batch after adaptation (TTAC: from fresh statistics).
- Memory: the bank used for alignment is capped at ``ot_bank_cap`` items (a fixed seeded random
  subset; 16,384 by default: 15,680 x 16,384 x 4 B = 1.0 GB for the one buffer with
  augmentation at 224 px). Scoring always uses the whole bank.
- TTAC on one class: components = k-means on the coreset (``n_clusters``), pseudo label =
  nearest centroid, diagonal component covariances, full global covariance, eps = max(source
  covariance)/30; target patches whose NN distance to the bank exceeds the ``kl_filter_quantile``
  of the source leave-one-out NN distances are excluded from the component terms (TTAC's
  confidence filter). As the official code: a component enters once its running count reaches
  ``kl_component_gate``, and the component terms are summed and divided by the number of
  components. Running-statistics caps and the gate are in images x patches per image.
- TTT++ without its contrastive branch (PatchCore has no source SSL head) and without a queue.
- Named configs: ``ttt++`` and ``ttac`` as the TTAD paper's Table 1 ran them, without target
  augmentation (its TTT++ / TTAC rows equal its Table 4 moment-matching / KL-div rows); ``ttad``
  with flip/rot90 views. ``none`` adapts nothing and scores exactly like ``patchcore``.
- Fig. 5 diagnostic: in the last epoch each bank item's strongest target patch (the column
  arg-max of the plan; the matched row for Hungarian) is counted per target patch, mapped back
  through the augmentation onto the original image's patch grid; ``patch_reports`` hands those
  counts to the runner, which alone sees the masks: ``diag_ot_colmax_in_mask`` is the paper's
  count (assignments to in-defect patches), ``diag_ot_colmax_in_mask_patches`` the distinct
  in-defect patches that received any.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from . import alignment as A
from .base import ADAPT, FIT, bounded
from .knn import torch_knn
from .patchcore import PatchCore, PatchCoreConfig
from .errors import BenchError, warn

LOSSES = ("none", "moment", "gaussian_kl", "sinkhorn")
# xyz_flip_rot: the point-cloud counterpart of flip_rot90, on coordinates (see xyz_dihedral)
AUGMENTS = ("flip_rot90", "copy", "none", "xyz_flip_rot")
BN_MODES = ("source", "batch")
SCORE_BANKS = ("source", "adapted")
# per-step diagnostics reported as their mean over the adaptation steps
AVERAGED = ("kept_fraction", "components_active", "ot_pairs", "sinkhorn_iters", "sinkhorn_error")
STATS_VERSION = 2  # 2: the fitted state carries the coreset's patch indices (score_bank=adapted)


@dataclass(frozen=True)
class AdaptConfig(PatchCoreConfig):
    loss: str = bounded("sinkhorn", choices=LOSSES, stage=ADAPT)  # moment: TTT++, gaussian_kl: TTAC, sinkhorn: TTAD
    # sinkhorn: or (Eq. 6 literally) | column | mutual | continuous | hungarian (see alignment.py)
    assignment: str = bounded("or", choices=A.ASSIGNMENTS, stage=ADAPT)
    augment: str = bounded("flip_rot90", choices=AUGMENTS, stage=ADAPT)  # extra views per target image
    augment_views: int = bounded(1, ge=1, stage=ADAPT)  # extra views per image when augment != none
    adapt_epochs: int = bounded(10, ge=1, stage=ADAPT)  # TTAD: 10 on MVTec AD, 1 on Real-IAD
    adapt_lr: float = bounded(0.003, ge=0, stage=ADAPT)
    adapt_momentum: float = bounded(0.9, ge=0, lt=1, stage=ADAPT)
    adapt_batch_size: int = bounded(10, ge=1, stage=ADAPT)  # target images per step (before augmentation)
    adapt_max_images: int = bounded(0, ge=0, stage=ADAPT)  # 0 = adapt on every target image; N = a seeded subset of N
    # source (running stats, gamma/beta trainable) | batch (train-mode BN)
    bn_mode: str = bounded("source", choices=BN_MODES, stage=ADAPT)
    # the bank the adapted features are scored against: source (the fitted bank) | adapted (the
    # same coreset patches re-embedded from the training images through the adapted backbone)
    score_bank: str = bounded("source", choices=SCORE_BANKS, stage=ADAPT)
    # adapt on a clean in-distribution test set too (the harness tells, Method.target_shifted).
    # False: both papers' protocol, whose clean TTT++ / TTAC / TTAD entries equal PatchCore's to
    # two decimals (TTAD Tables 1 and 3): clean cells are scored as the fit left them.
    adapt_clean: bool = bounded(False, stage=ADAPT)
    # sinkhorn (TTAD)
    sinkhorn_reg: float = bounded(0.1, gt=0, stage=ADAPT)  # entropic reg on the cost normalised by the source NN scale
    sinkhorn_iters: int = bounded(100, ge=1, stage=ADAPT)  # at most; stops earlier once the marginal error < sinkhorn_tol
    sinkhorn_tol: float = bounded(1e-3, ge=0, stage=ADAPT)  # L1 error of the plan's marginals (total mass 1)
    # bank items used for alignment (a seeded subset above this); 0 = the whole bank, as Eq. 4
    ot_bank_cap: int = bounded(16384, ge=0, stage=ADAPT)
    ot_cost: str = bounded("euclidean", choices=A.COSTS, stage=ADAPT)  # TTAD Eq. 4: C_ij = ||z_i - m_j||
    # TTAD Eq. 6 is the sum over pairs; "mean" divides it by the pairs' total weight (sum(pi)).
    # For unit-weight pairs, "sum" at lr / P takes about the SGD step "mean" takes at lr (exactly
    # where P is constant), where P = pairs per step (the row's diag_ot_pairs: ~N + M for "or", M
    # for "column"; the plan's mass is 1 for "continuous", so both are equal there). "sum" at lr
    # 0.003 is a step P times larger (textures, 4 steps: loss 2e6 -> 4e10, diverged).
    ot_reduction: str = bounded("mean", choices=A.REDUCTIONS, stage=ADAPT)
    # moment (TTT++)
    moment_scale: float = bounded(0.05, ge=0, stage=ADAPT)  # TTT++ scale_ext
    # gaussian_kl (TTAC)
    kl_scale: float = bounded(0.05, ge=0, stage=ADAPT)  # TTAC loss_scale on CIFAR-10 / ImageNet
    kl_filter_quantile: float = bounded(0.95, gt=0, le=1, stage=ADAPT)
    kl_ema_images: int = bounded(1280, ge=1, stage=ADAPT)  # global running-statistics cap, in images
    kl_ema_images_component: int = bounded(128, ge=1, stage=ADAPT)  # per-component cap, in images
    # a component enters the loss once it has seen this many samples (TTAC's code: 16 on CIFAR),
    # in images x patches per image like the caps; the component terms are summed and divided
    # by the number of components (the code), not averaged over the components present
    kl_component_gate: int = bounded(16, ge=0, stage=ADAPT)
    # fit-time source statistics (part of the fit identity; every field above acts after the
    # fit, so all adaptation variants of one PatchCore config share one fit)
    n_clusters: int = bounded(32, ge=1)
    stats_batch_images: int = bounded(10, ge=1)  # TTT++ source self-discrepancy batches, in training images
    stats_max_patches: int = bounded(20000, ge=1)  # training patches sampled for NN-distance quantiles

    def inert_fields(self) -> frozenset[str]:
        """loss=none (TTAD Table 4's "none") never adapts: its adaptation settings do nothing."""
        if self.loss != "none":
            return frozenset()
        return frozenset(self.fields_at(ADAPT)) - {"loss", "score_bank"}


# ---------------------------------------------------------------------------------------------
# augmentation on image batches and its inverse on patch grids


def dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """Element t (0..7) of the dihedral group on the last two axes: flip if t >= 4, then rot90^(t%4)."""
    if t >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, t % 4, dims=(-2, -1))


def dihedral_inverse(x: torch.Tensor, t: int) -> torch.Tensor:
    x = torch.rot90(x, -(t % 4), dims=(-2, -1))
    if t >= 4:
        x = torch.flip(x, dims=(-1,))
    return x


def xyz_dihedral(cloud: torch.Tensor, t: int) -> torch.Tensor:
    """Element t (0..7) of the dihedral group acting on an organised cloud's coordinates (3, H, W):
    mirror x if t >= 4, then rotate by t % 4 quarter turns about the camera's z axis. The grid
    stays in place (each point keeps its pixel), and a missing point (0, 0, 0) stays missing.
    MVTec 3D-AD objects sit near the optical axis, so the turn about z keeps them in view."""
    x, y, z = cloud[0], cloud[1], cloud[2]
    if t >= 4:
        x = -x
    for _ in range(t % 4):
        x, y = -y, x
    return torch.stack([x, y, z])


def views_per_image(mode: str, views: int) -> int:
    """How many images ``augment_batch`` makes of each: the original and its extra views."""
    return 1 if mode == "none" or views <= 0 else 1 + views


def augment_batch(x: torch.Tensor, mode: str, views: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[int]]:
    """(B, 3, S, S) -> (B * (1 + views), 3, S, S) and the dihedral element of every image's grid.

    The originals come first. ``flip_rot90`` draws a non-identity element per extra view;
    ``xyz_flip_rot`` draws one the same way and applies it to the coordinates of organised
    clouds instead of the grid (so every grid element is 0: the fold-back is the identity);
    ``copy`` repeats the originals; ``none`` returns the batch alone.
    """
    b = x.shape[0]
    if views_per_image(mode, views) == 1:
        return x, [0] * b
    if mode == "copy":
        return torch.cat([x] * (1 + views)), [0] * (b * (1 + views))
    ts = [0] * b
    out = [x]
    for _ in range(views):
        draw = rng.integers(1, 8, size=b).tolist()
        if mode == "xyz_flip_rot":
            out.append(torch.stack([xyz_dihedral(x[i], t) for i, t in enumerate(draw)]))
            ts += [0] * b
            continue
        out.append(torch.stack([dihedral(x[i], t) for i, t in enumerate(draw)]))
        ts += draw
    return torch.cat(out), ts


def fold_views(per_view: np.ndarray, ts: list[int], batch: int) -> np.ndarray:
    """(V*B, g, g) per-view patch values -> (B, g*g) on the originals' grids (views summed).

    View v shows original ``v % batch`` under dihedral element ``ts[v]``; its grid is mapped
    back with the inverse element, so a count lands on the patch of the original image it
    came from (exact for a square grid: the crop side is a multiple of the patch stride).
    """
    g = per_view.shape[-1]
    out = np.zeros((batch, g * g), dtype=np.float32)
    for v, t in enumerate(ts):
        out[v % batch] += dihedral_inverse(torch.from_numpy(np.ascontiguousarray(per_view[v])), t).reshape(-1).numpy()
    return out


def with_evidence(x: torch.Tensor) -> torch.Tensor | None:
    """Rows of (N, D) patch features that are not exactly zero, or None when all are.

    An all-zero patch carries no evidence: on an organised point cloud it is a patch without any
    valid point (``point_features.pool_patches``), a constant with no gradient. Left in, such
    patches (~90 % of an MVTec 3D-AD cloud's grid) would take most of the OT plan's mass in
    zero-cost pairs and make the source NN scale 0; so the Sinkhorn loss and the source scale
    leave them out. Image features have none: None, and their code path is unchanged."""
    keep = x.ne(0).any(dim=1)
    return None if bool(keep.all()) else keep.cpu()


def _bn_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class AdaptedPatchCore(PatchCore):
    """PatchCore + test-time adaptation of the backbone's BN affine parameters."""

    Config = AdaptConfig

    def __init__(self, config: AdaptConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        super().__init__(config, device, seed)
        self.stats: dict[str, Any] | None = None
        self._train_flat: torch.Tensor | None = None
        self._reports: dict[str, np.ndarray] = {}
        self._diag: dict[str, float] = {}
        self._adapted = False  # True once adapt has moved the backbone (its scores are its own)

    # -- fit: PatchCore + source statistics ----------------------------------------------------
    @classmethod
    def fit_identity(cls, config: AdaptConfig) -> dict[str, Any]:
        """PatchCore's fit-time fields, and this class's own under ``source_stats``."""
        own = config.fit_fields()
        shared = {k: own.pop(k) for k in PatchCoreConfig.fields_at(FIT)}
        return {"fit": "PatchCore+source_stats", **shared, "source_stats": {**own, "version": STATS_VERSION}}

    def on_train_features(self, flat: torch.Tensor) -> None:
        self._train_flat = flat  # a reference; freed at the end of fit

    def fit(self, train: Sequence[np.ndarray]) -> None:
        try:
            super().fit(train)
            t0 = time.perf_counter()
            stats = source_statistics(self._train_flat, self.bank, self._nn, self.embedder.grid() ** 2,
                                      self.config, self.seed)
            self.timings["source_stats_seconds"] = time.perf_counter() - t0
        finally:
            self._train_flat = None
        self._set_stats(stats)

    def fitted_state(self) -> dict[str, Any]:
        return {**super().fitted_state(), "source_stats": self.stats}

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        super().load_fitted_state(state)
        self._set_stats(state["source_stats"])

    def _set_stats(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        # private torch copies: a cell never writes into the cached state
        self._src = {k: torch.tensor(np.asarray(v), dtype=torch.float32, device=self.device)
                     for k, v in stats.items() if isinstance(v, np.ndarray)}

    # -- adapt ---------------------------------------------------------------------------------
    def adapt(self, target: Sequence[np.ndarray]) -> None:
        cfg = self.config
        self._reports, self._diag = {}, {}
        self._adapted = False
        if cfg.loss == "none" or cfg.adapt_epochs <= 0 or len(target) == 0:
            return
        if self.target_shifted is False and not cfg.adapt_clean:
            self._diag["adapt_skipped_clean"] = 1.0
            return
        self._adapted = True
        assert self.stats is not None, "fit (or load_fitted_state) before adapt"
        rng = np.random.default_rng(self.seed)
        n = len(target)
        chosen = np.arange(n)
        if 0 < cfg.adapt_max_images < n:
            chosen = np.sort(rng.choice(n, cfg.adapt_max_images, replace=False))
        images = np.stack([self.grid_input(target[int(i)]) for i in chosen])  # images: uint8 (n, S, S, 3)
        params = self.prepare_adaptation()
        opt = torch.optim.SGD(params, lr=cfg.adapt_lr, momentum=cfg.adapt_momentum)
        aligner = self._aligner(rng)
        g = self.embedder.grid()
        counts = np.full((n, g * g), np.nan, dtype=np.float32) if cfg.loss == "sinkhorn" else None
        losses: list[list[float]] = []
        probe = None
        t_align = t_net = 0.0
        bs = max(1, cfg.adapt_batch_size)
        for epoch in range(cfg.adapt_epochs):
            order = rng.permutation(len(chosen))
            epoch_losses = []
            for lo in range(0, len(order), bs):
                sel = order[lo:lo + bs]
                x, ts = augment_batch(self.input_tensor(list(images[sel])), cfg.augment, cfg.augment_views, rng)
                if probe is None:
                    probe = x
                t0 = time.perf_counter()
                feats = self.embedder(x.to(self.device))  # (V*B, P, D), with gradient
                z = feats.reshape(-1, feats.shape[-1])
                t1 = time.perf_counter()
                loss, info = aligner(z, stateful=True)
                t2 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                t_align += t2 - t1
                t_net += (t1 - t0) + (time.perf_counter() - t2)
                epoch_losses.append(float(loss.detach()))
                if counts is not None and epoch == cfg.adapt_epochs - 1:
                    per_view = A.column_counts(info["col_best"], len(z)).reshape(len(ts), g, g)
                    counts[chosen[sel]] = np.nan_to_num(counts[chosen[sel]]) + fold_views(per_view, ts, len(sel))
                for k in AVERAGED + ("sinkhorn_log_fallbacks",):
                    if k in info:
                        self._diag[k] = self._diag.get(k, 0.0) + float(info[k])
            losses.append(epoch_losses)
        steps = sum(len(e) for e in losses)
        t0 = time.perf_counter()
        with torch.no_grad():
            self._set_bn_momentum(0.0)  # the probe must not touch re-estimated statistics
            loss_after, _ = aligner(self.embedder(probe.to(self.device)).reshape(-1, feats.shape[-1]), stateful=False)
        self.finish_adaptation()
        t_probe = time.perf_counter() - t0
        if cfg.score_bank == "adapted":
            t1 = time.perf_counter()
            self._reembed_bank()
            self._diag["reembed_seconds"] = time.perf_counter() - t1
        for k in AVERAGED:  # per-step means
            if k in self._diag:
                self._diag[k] /= steps
        self._diag.update({
            "loss_before": losses[0][0],  # first step: the probe batch at the source weights
            "loss_after": float(loss_after),  # the same probe batch after adaptation
            "loss_first_epoch": float(np.mean(losses[0])),
            "loss_last_epoch": float(np.mean(losses[-1])),
            "adapt_steps": float(steps),
            "adapt_images": float(len(chosen)),
            "align_seconds": t_align,  # the loss (OT plan included), forward only
            "fwd_bwd_seconds": t_net,  # backbone forward + backward + SGD step
            "probe_seconds": t_probe,  # loss_after: one more forward and loss on the probe batch
            "views_per_step": float(len(probe)),
            "trainable_params": float(sum(p.numel() for p in params)),
        })
        if counts is not None:
            self._reports["ot_colmax"] = counts

    @torch.no_grad()
    def _reembed_bank(self) -> None:
        """Score against the coreset's training patches re-embedded by the adapted backbone."""
        if self.source_images is None or self.bank_index is None:
            raise BenchError("score_bank=adapted needs the training images (the harness sets source_images) "
                             "and the coreset's patch indices in the fitted state (refit with this version)")
        ppi = self.embedder.grid() ** 2
        idx = torch.as_tensor(self.bank_index, dtype=torch.long)
        bank = np.empty_like(self.bank)
        first = 0  # index of the first training patch of the current batch
        for x in self.input_batches(self.source_images):
            feats = self.embedder(x.to(self.device)).reshape(-1, self.bank.shape[1])
            lo, hi = torch.searchsorted(idx, torch.tensor([first, first + len(feats)])).tolist()
            # pick the coreset rows where they were computed: only those cross to the host
            bank[lo:hi] = feats[(idx[lo:hi] - first).to(feats.device)].cpu().numpy()
            first += len(feats)
        if first != len(self.source_images) * ppi or len(idx) and int(idx[-1]) >= first:
            raise BenchError("score_bank=adapted: the training images do not match the fitted bank")
        self._set_bank(bank)

    def norm_layers(self) -> list[nn.Module]:
        """The normalisation layers whose affine parameters adapt: the backbone's BatchNorm layers
        (a subclass may add others, e.g. Point-MAE's LayerNorms on request)."""
        return _bn_layers(self.embedder.backbone)

    def prepare_adaptation(self) -> list[torch.nn.Parameter]:
        """Freeze the backbone but its normalisation layers' affine parameters (returned); set the BN mode."""
        emb = self.embedder
        for p in emb.parameters():
            p.requires_grad_(False)
        layers = self.norm_layers()
        if not layers:
            raise ValueError(f"backbone {self.config.backbone} has no BatchNorm layers to adapt")
        params = []
        for bn in layers:
            for p in (bn.weight, bn.bias):
                if p is not None:
                    p.requires_grad_(True)
                    params.append(p)
            if self.config.bn_mode == "batch" and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                bn.train()
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average over the adaptation batches
        return params

    def _set_bn_momentum(self, value: float | None) -> None:
        for bn in _bn_layers(self.embedder.backbone):
            bn.momentum = value

    def finish_adaptation(self) -> None:
        """Back to a frozen, eval-mode backbone (what scoring uses)."""
        self.embedder.eval()
        for p in self.embedder.parameters():
            p.requires_grad_(False)

    def _aligner(self, rng: np.random.Generator):
        """A callable ``(z, stateful) -> (loss, info)`` for the configured loss."""
        cfg, s, src = self.config, self.stats, self._src
        ppi = self.embedder.grid() ** 2
        if cfg.loss == "moment":
            if 2 * s.get("src_batch_images", 0) > s.get("src_images", np.inf):
                # the scales divide by a source batch's distance from the source's moments, which
                # shrinks to 0 as the batch becomes most of the source (weights x9 at N = b + 1;
                # NaN features at N = b): at least two batches' worth of training images
                raise BenchError(f"{self.name}: TTT++ scales its losses by how far batches of "
                                 f"{s['src_batch_images']} training images lie from all {s['src_images']}; with fewer "
                                 "than two batches' worth of training images that distance shrinks towards 0 and "
                                 f"the loss weights blow up: --set stats_batch_images=N with N at most "
                                 f"{s['src_images'] // 2}")
            aligned = cfg.adapt_batch_size * views_per_image(cfg.augment, cfg.augment_views)
            if s.get("src_batch_images") and aligned != s["src_batch_images"]:
                # the scales are a batch's expected distance from the source at the source batch's
                # size; a target batch of another size has another noise level (TTT++'s code
                # measures both at one size)
                warn(f"{self.name}: TTT++'s loss scales were measured on batches of {s['src_batch_images']} "
                     f"training images, but each step aligns {aligned} images: --set stats_batch_images={aligned} "
                     "to measure them at that size")
            wc, wm = A.ttt_weights(cfg.moment_scale, s["coral_src"], s["mmd_src"])

            def moment(z: torch.Tensor, stateful: bool):
                return A.moment_loss(z, src["mean"], src["cov"], wc, wm), {}

            return moment
        if cfg.loss == "gaussian_kl":
            eps = float(s["cov"].max()) / 30.0
            threshold = float(np.quantile(s["nn_quantiles"], cfg.kl_filter_quantile)) if len(s["nn_quantiles"]) else np.inf
            state = A.RunningGaussian.empty(src["mean"].shape[0])
            comp_state = A.RunningGaussian.empty(src["mean"].shape[0], len(src["centroids"]))

            def kl(z: torch.Tensor, stateful: bool):
                with torch.no_grad():
                    _, assign = torch_knn(z.detach(), src["centroids"])
                    d, _ = self._nn.search(z.detach().cpu().numpy(), 1)
                    keep = torch.from_numpy(d[:, 0] <= threshold).to(z.device)
                loss, info = A.gaussian_kl_loss(
                    z, src["mean"], src["cov"], eps, state if stateful else None, cfg.kl_ema_images * ppi,
                    comp_mu=src["comp_mean"], comp_var=src["comp_var"], assign=assign[:, 0], keep=keep,
                    comp_state=comp_state if stateful else None, comp_cap=cfg.kl_ema_images_component * ppi,
                    comp_gate=cfg.kl_component_gate * ppi if stateful else 0.0)
                return cfg.kl_scale * loss, info

            return kl
        # sinkhorn (TTAD)
        bank = torch.from_numpy(self.bank)
        keep_bank = with_evidence(bank)
        if keep_bank is not None:
            bank = bank[keep_bank]
        if 0 < cfg.ot_bank_cap < len(bank):
            bank = bank[torch.from_numpy(np.sort(rng.choice(len(bank), cfg.ot_bank_cap, replace=False)))]
        bank = bank.to(self.device)
        scale = float(s["nn_scale"]) if cfg.ot_cost == "sqeuclidean" else float(np.sqrt(s["nn_scale"]))
        self._diag["ot_bank_used"] = float(len(bank))

        ot = A.TransportLoss(bank, cfg.assignment, cfg.sinkhorn_reg, cfg.sinkhorn_iters, cfg.sinkhorn_tol, scale,
                             cfg.ot_cost, cfg.ot_reduction)

        def transport(z: torch.Tensor, stateful: bool):
            keep = with_evidence(z.detach())
            if keep is not None:
                keep = keep.to(z.device)
                if not keep.any():  # nothing seen: nothing to align
                    return z.sum() * 0.0, {"col_best": torch.full((len(bank),), -1, dtype=torch.long,
                                                                   device=z.device), "ot_pairs": 0.0}
            loss, tr = ot(z if keep is None else z[keep])
            col_best = tr.col_best
            if keep is not None:  # back to the rows of z
                rows = keep.nonzero()[:, 0]
                col_best = torch.where(col_best >= 0, rows[col_best.clamp_min(0)], col_best)
            self._diag["ot_cost_mb"] = (len(z) if keep is None else int(keep.sum())) * len(bank) * 4 / 2**20
            info = {"col_best": col_best, "ot_pairs": tr.pairs}
            if cfg.assignment != "hungarian":
                info.update(sinkhorn_iters=tr.iters, sinkhorn_error=tr.error,
                            sinkhorn_log_fallbacks=float(tr.solver == "log"))
            return loss, info

        return transport

    def score_identity(self) -> dict[str, Any] | None:
        """PatchCore's while nothing was adapted (``loss=none``: TTAD Table 4's first row scores as
        PatchCore on the same bank); None once adapt moved the backbone."""
        return None if self._adapted else super().score_identity()

    def scoring_config(self) -> dict[str, Any]:
        """PatchCore's fields and a subclass's own; not this class's (adaptation and fit-time
        source statistics, which scoring does not read)."""
        own = {f.name for f in dataclasses.fields(AdaptConfig)} - {f.name for f in dataclasses.fields(PatchCoreConfig)}
        return {k: v for k, v in super().scoring_config().items() if k not in own}

    # -- reports -------------------------------------------------------------------------------
    def patch_reports(self) -> dict[str, np.ndarray]:
        return dict(self._reports)

    def diagnostics(self) -> dict[str, Any]:
        return {**super().diagnostics(), **self._diag}


# ---------------------------------------------------------------------------------------------
# source statistics


@torch.no_grad()
def source_statistics(flat: torch.Tensor, bank: np.ndarray, nn_index, patches_per_image: int,
                      cfg: AdaptConfig, seed: int, chunk: int = 32768) -> dict[str, Any]:
    """Everything the losses need about the source, from all pre-coreset training patches.

    Returns numpy arrays / floats: ``mean`` (D,), ``cov`` (D, D) (unbiased), ``coral_src`` and
    ``mmd_src`` (TTT++'s average discrepancy of random source batches of ``stats_batch_images``
    images to the source moments), ``centroids`` (K, D) (k-means on the coreset) with
    ``comp_mean``/``comp_var`` (K, D) and ``comp_count`` (K,) of the training patches assigned to
    each, ``nn_quantiles`` (201,) of the leave-one-out squared NN distance of sampled training
    patches to the bank, and ``nn_scale`` (their median).
    """
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    n, d = flat.shape
    mean = torch.zeros(d, dtype=torch.float64)
    for lo in range(0, n, chunk):
        mean += flat[lo:lo + chunk].double().sum(0)
    mean /= n
    mean32 = mean.float()
    cov = torch.zeros(d, d, dtype=torch.float64)
    for lo in range(0, n, chunk):
        xc = flat[lo:lo + chunk] - mean32
        cov += (xc.T @ xc).double()
    cov /= max(n - 1, 1)
    cov32 = cov.float()

    # TTT++ loss scales: how far random source batches are from the source moments. The official
    # code measures later batches against its first batch, which is also its alignment reference;
    # here the reference is the whole source's moments, so the scale measures a batch against
    # them: the scaled loss is ~1 for an unshifted batch in both (batch-vs-batch would be ~2x).
    n_img = n // patches_per_image
    b = max(1, min(cfg.stats_batch_images, n_img))
    corals, mmds = [], []
    for _ in range(8):
        imgs = rng.choice(n_img, b, replace=False)
        x = torch.cat([flat[i * patches_per_image:(i + 1) * patches_per_image] for i in imgs])
        corals.append(float(A.coral(cov32, A.covariance(x))))
        mmds.append(float(A.linear_mmd(mean32, x.mean(0))))

    # TTAC components: k-means on the coreset, statistics of the training patches per centroid
    k = max(1, min(cfg.n_clusters, len(bank)))
    km = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=seed).fit(bank)
    centroids = torch.from_numpy(km.cluster_centers_.astype(np.float32))
    s1 = torch.zeros(k, d, dtype=torch.float64)
    s2 = torch.zeros(k, d, dtype=torch.float64)
    cnt = torch.zeros(k, dtype=torch.float64)
    for lo in range(0, n, chunk):
        x = flat[lo:lo + chunk]
        _, a = torch_knn(x, centroids, k=1)
        a = a[:, 0]
        s1.index_add_(0, a, x.double())
        s2.index_add_(0, a, (x.double() ** 2))
        cnt.index_add_(0, a, torch.ones(len(a), dtype=torch.float64))
    safe = cnt.clamp_min(1.0)[:, None]
    comp_mean = s1 / safe
    comp_var = (s2 / safe - comp_mean ** 2).clamp_min(0.0)

    # leave-one-out NN distances: a sampled patch that is itself a bank item takes its 2nd NN
    # (over patches that carry evidence: see with_evidence; all of them for images)
    keep = with_evidence(flat)
    pool = n if keep is None else np.flatnonzero(keep.numpy())
    m = min(cfg.stats_max_patches, n if keep is None else len(pool))
    idx = np.sort(rng.choice(pool, m, replace=False))
    q = flat[torch.from_numpy(idx)].numpy()
    dist, _ = nn_index.search(q, min(2, len(bank)))
    norms = (q.astype(np.float64) ** 2).sum(1)
    self_hit = dist[:, 0] <= 1e-5 * np.maximum(norms, 1e-12)
    loo = np.where(self_hit, dist[:, -1], dist[:, 0]) if dist.shape[1] > 1 else dist[:, 0]
    loo = loo[np.isfinite(loo)]
    quantiles = np.quantile(loo, np.linspace(0.0, 1.0, 201)).astype(np.float32)
    return {
        "mean": mean32.numpy(),
        "cov": cov32.numpy(),
        "coral_src": float(np.mean(corals)),
        "mmd_src": float(np.mean(mmds)),
        "src_images": n_img, "src_batch_images": b,  # _aligner refuses 2 * b > n_img
        "centroids": centroids.numpy(),
        "comp_mean": comp_mean.float().numpy(),
        "comp_var": comp_var.float().numpy(),
        "comp_count": cnt.float().numpy(),
        "nn_quantiles": quantiles,
        "nn_scale": float(max(np.median(loo), 1e-12)),
    }
