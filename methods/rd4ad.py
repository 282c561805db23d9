"""RD4AD (Deng & Li, CVPR 2022), GNL (Cao et al., ADShift, ICCV 2023) and the OOD-generalisation
baselines of GNL's tables as one trainer.

RD4AD: a frozen pretrained teacher (stages at strides 4/8/16), a trainable one-class bottleneck
and a student decoder that reconstructs the teacher's three maps from the bottleneck. The
student's blocks follow the teacher's, as in the official code: a ResNet-18 / ResNet-34 teacher
(basic blocks) gets RD4AD's basic-block student (OCBE of 2 / 3 basic blocks, decoder
``de_resnet18`` [2, 2, 2] / ``de_resnet34`` [3, 4, 6]), every other teacher (WRN-50,
EfficientNet, also ResNet-50) the wide-bottleneck student of WRN-50 (OCBE 3, decoder [3, 4, 6]);
a basic-block student is named in the fit identity (``student_block``, see ``fit_identity``).
Loss: sum over scales of 1 - cosine between each sample's flattened maps (hq-deng/RD4AD's form). Adam
lr 0.005, betas (0.5, 0.999), batch 16, 200 epochs, images squashed to 256x256. Anomaly map:
sum of the bilinearly upsampled per-pixel 1 - cos maps, Gaussian sigma 4; image score = max.

GNL = the same network and trainer with config flags:
- ``augmix_views``: per training image two extra views (an AugMix view with photometric ops only,
  see ``augmix.py``, and a grayscale view), and the loss
  ``loss_ori * L_ori + loss_abs * L_abs + loss_lowf * L_lowf`` where L_abs compares the bottleneck
  embeddings of clean vs each view and L_lowf the decoder's lowest-level output (0.9/0.05/0.05,
  20 epochs, as the official MVTec runs). The two views' terms are added, not averaged
  (``consistency_reduction="sum"``), as ADShift's training script does; ``"mean"`` divides by
  the number of views as the paper's equation reads (half the effective weight).
- ``efdm_alpha`` > 0: at test time, EFDM after the first two teacher stages towards one
  reference normal training image (``efdm_reference``: index or id in the training set; default
  the first image), batched and on the device.

GNL's OOD-generalisation baselines, fitted into RD4AD with its training settings (GNL Sec. 5.3):
- ``train_augment="augmix"``: each training image is replaced by an AugMix view drawn online
  (severity 3, ``augmix_ops``: AugMix's whole list on MNIST / PACS, all but brightness and
  contrast on MVTec AD / CIFAR-10), plain RD4AD loss, no consistency term (AugMix's JSD loss
  belongs to classification; ADShift ships no baseline code).
- ``feature_style="mixstyle"|"efdmix"``: during training only, the teacher's first two stage
  outputs are style-mixed between random pairs of the batch (MixStyle: channel mean / std;
  EFDMix: sorted values; p 0.5, Beta(0.1, 0.1), as the official code), the mixed stage 1 feeding
  stage 2 as EFDM does at test time. The mixed maps are both the bottleneck's input and the
  student's targets; the teacher stays frozen (it has no trainable state; only its activations
  are mixed). Scoring sees plain teacher maps.
- ``jigsaw_weight`` > 0: JiGen's task on the bottleneck: each training image is shown with its
  3x3 tiles shuffled by one of ``jigsaw_classes`` permutations (unshuffled with probability
  ``jigsaw_bias_whole``, else a uniform draw over the identity and the P permutations), and a
  linear head on the pooled OCBE output classifies the permutation; loss = L_ori +
  ``jigsaw_weight`` * cross-entropy (JiGen's weights: P 30, 0.7, bias 0.9 in its ResNet-18 PACS
  run). The distillation term covers every image, shuffled or not, as JiGen's class loss does.

Image size: ``image_size`` is the evaluation grid; the network sees the image squashed to the
next multiple of 32 (the bottleneck works at stride 32), so 28x28 MNIST enters at 32x32 as
ADShift's MNIST loader resizes it, and the maps are computed at 28x28.

The trained student is the fitted state: the harness trains once per (config, backbone,
dataset, category, seed) and reuses it for every corruption cell. Training writes an epoch
checkpoint (student + optimiser + epoch + RNG state) into ``checkpoint_dir`` when the harness
sets one, and a killed training resumes there. Shuffling and AugMix draw from a generator seeded
by (seed, epoch), so a resumed run ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .augmix import OP_LISTS, augmix
from .base import ADAPT, Method, MethodConfig, Scores, bounded
from .distill import (JigsawHead, Student, Teacher, anomaly_maps, distill_loss, flat_cosine_distance,
                      jigsaw_permutations, shuffle_tiles, sorted_values, student_layout, style_mixers)
from .errors import BenchError, warn
from .persist import atomic_write, stable_hash
from .backbones import normalization
from .geometry import Geometry
from .preprocess import batches, to_tensor
from .smoothing import smooth_maps

log = logging.getLogger(__name__)

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's Grayscale
CHECKPOINT = "last.pt"
CL = torch.channels_last
STRIDE = 32  # the bottleneck's: the network's input side is a multiple of it
STYLE_STAGES = 2  # MixStyle / EFDMix after the teacher's first two stages (GNL: "first two layers")


def net_size(image_size: int) -> int:
    """The network's input side: ``image_size`` rounded up to a multiple of 32 (28 -> 32)."""
    return -(-image_size // STRIDE) * STRIDE


@dataclass(frozen=True)
class RD4ADConfig(MethodConfig):
    image_size: int = bounded(256, ge=8)  # squash side (no crop) = evaluation resolution; see net_size
    epochs: int = bounded(200, ge=1)  # RD4AD official code; GNL uses 20
    batch_size: int = bounded(16, ge=1)  # training and scoring
    lr: float = bounded(0.005, gt=0)
    beta1: float = bounded(0.5, ge=0, lt=1)
    beta2: float = bounded(0.999, ge=0, lt=1)
    smoothing_sigma: float = bounded(4.0, ge=0, stage=ADAPT)  # scoring only
    # GNL: distribution-invariant normality learning
    augmix_views: bool = False  # train with an AugMix view and a grayscale view per image
    augmix_width: int = bounded(3, ge=1)
    augmix_depth: int = bounded(-1, ge=-1)  # -1: 1..3 ops per chain
    augmix_severity: int = bounded(3, ge=1)
    gray_after_norm: bool = True  # official order: grayscale of the ImageNet-normalised tensor
    loss_ori: float = bounded(1.0, ge=0)
    loss_abs: float = bounded(0.0, ge=0)
    loss_lowf: float = bounded(0.0, ge=0)
    # ADShift's training script adds the consistency terms of the two views undivided ("sum",
    # the code behind the published numbers); the paper's Eq. averages over the N views ("mean")
    consistency_reduction: str = bounded("sum", choices=("sum", "mean"))
    # AugMix op list (augmix.OP_LISTS): GNL uses ADShift's "mvtec" list ("pacs" on PACS)
    augmix_ops: str = bounded("mvtec", choices=tuple(OP_LISTS), omit_default=True)
    # ADShift's loaders draw each image's severity in 0..augmix_severity; False: AugMix's reference code
    augmix_random_severity: bool = bounded(True, omit_default=True)
    # GNL's OOD-generalisation baselines on RD4AD (all off by default)
    train_augment: str = bounded("none", choices=("none", "augmix"), omit_default=True)  # train on AugMix views
    feature_style: str = bounded("none", choices=("none", "mixstyle", "efdmix"), omit_default=True)
    style_p: float = bounded(0.5, ge=0, le=1, omit_default=True)  # MixStyle / EFDMix official p
    style_alpha: float = bounded(0.1, gt=0, omit_default=True)  # Beta(alpha, alpha), official 0.1
    jigsaw_weight: float = bounded(0.0, ge=0, omit_default=True)  # JiGen's jig_weight (0 = no Jigsaw)
    jigsaw_classes: int = bounded(30, ge=1, le=1000, omit_default=True)  # P permutations (+ the unshuffled class)
    jigsaw_bias_whole: float = bounded(0.9, ge=0, le=1, omit_default=True)  # JiGen's bias_whole_image
    # GNL: test-time EFDM (0 = off)
    efdm_alpha: float = bounded(0.0, ge=0, le=1, stage=ADAPT)
    efdm_reference: str = "0"  # index into the training set, or a training image id
    # execution only (the numbers do not depend on them): changing them reuses the trained student
    teacher_cache_mb: int = bounded(2048, ge=0, stage=ADAPT)  # keep fixed teacher maps across epochs when they fit
    checkpoint_every: int = bounded(1, ge=1, stage=ADAPT)  # epochs between resume checkpoints

    def geometry(self) -> Geometry:
        return Geometry(resize=self.image_size, crop=None, square=True)


class RD4AD(Method):
    Config = RD4ADConfig

    def __init__(self, config: RD4ADConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        super().__init__(config, device, seed)
        cfg = self.config
        if cfg.epochs < 0 or cfg.batch_size < 1:
            raise BenchError("epochs must be >= 0 and batch_size >= 1")
        if cfg.consistency_reduction not in ("sum", "mean"):
            raise BenchError(f"consistency_reduction={cfg.consistency_reduction!r}: use sum (ADShift's code) or mean")
        self.norm = normalization(cfg.backbone)  # as the teacher's weights were trained
        # channels-last: about 1.8x faster convolutions on CPU (depthwise ones above all)
        self.teacher = Teacher(cfg.backbone, cfg.weights).to(device, memory_format=CL)
        self.net_geometry = Geometry(resize=net_size(cfg.image_size), crop=None, square=True)  # the network's input
        self.jigsaw_head: JigsawHead | None = None
        with torch.random.fork_rng(devices=[]):  # same initial student for the same seed, always
            torch.manual_seed(seed)
            self.student = Student(self.teacher.channels, self.teacher.signed, self.teacher.layout)
            if cfg.jigsaw_weight > 0:  # drawn after the student: the student is RD4AD's either way
                self.jigsaw_head = JigsawHead(self.student.bottleneck.out_channels, cfg.jigsaw_classes + 1).to(device)
        if self.jigsaw_head is not None:  # row 0: the unshuffled order (class 0)
            table = np.concatenate([np.arange(9)[None], jigsaw_permutations(cfg.jigsaw_classes)])
            self._jigsaw_table = torch.from_numpy(table).to(device)
        self.student.to(device, memory_format=CL).eval()
        self.jigsaw_accuracy = float("nan")  # last epoch's share of training images whose permutation was right
        self._jigsaw_tally = [0, 0]
        self.history: list[float] = []  # mean loss per epoch
        self.epoch_seconds: list[float] = []
        self.resumed_from = 0
        self.reference: np.ndarray | None = None
        self.reference_index = -1
        self.reference_id = ""
        self._ref_sorted: list[torch.Tensor] | None = None

    # -- identity ----------------------------------------------------------------------------
    @classmethod
    def fit_identity(cls, config: RD4ADConfig) -> dict[str, Any]:
        """The config's fit-time fields, and the student's layout where it is not the wide-bottleneck
        student that every teacher got before (``student_block: "basic"`` for ResNet-18 / 34,
        ``student_inner_divisor: 4`` for ResNet-50): their cached fits and checkpoints must not be
        taken for these. A wide-bottleneck student's identity stays as it was, as does its network."""
        ident = super().fit_identity(config)
        try:
            layout = student_layout(config.backbone)
        except BenchError:  # unknown backbone: building the method reports it
            return ident
        if layout.block != "bottleneck":
            ident = {**ident, "student_block": layout.block}
        if layout.block == "bottleneck" and layout.inner_divisor != 2:
            ident = {**ident, "student_inner_divisor": layout.inner_divisor}
        return ident

    def _identity_hash(self) -> str:
        return stable_hash(self.fit_identity(self.config), 16)

    # -- training -----------------------------------------------------------------------------
    def fit(self, train: Sequence[np.ndarray]) -> None:
        cfg = self.config
        if len(train) == 0:
            raise BenchError("no training images")
        images = np.stack([self.net_geometry.image(img) for img in train])  # (N, S, S, 3) uint8
        self._choose_reference(train, images)
        self.history, self.epoch_seconds, self.resumed_from = [], [], 0
        opt = torch.optim.Adam(self._trainable(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        start = self._resume(opt)
        cache = self._teacher_cache(images) if start < cfg.epochs and self._fixed_targets() else None
        n = len(images)
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            self.student.train()
            self._jigsaw_tally = [0, 0]
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(n)
            total = 0.0
            for i in range(0, n, cfg.batch_size):
                idx = order[i:i + cfg.batch_size]
                total += self._step(images, idx, cache, rng, opt) * len(idx)
            self.history.append(total / n)
            self.epoch_seconds.append(time.perf_counter() - t0)
            if self.jigsaw_head is not None:
                self.jigsaw_accuracy = self._jigsaw_tally[0] / max(1, self._jigsaw_tally[1])
            done = epoch + 1
            if self.checkpoint_dir is not None and (done % max(1, cfg.checkpoint_every) == 0 or done == cfg.epochs):
                self._save_checkpoint(opt, done)
            self._report(done)
        self.student.eval()
        self._ref_sorted = None

    def _trainable(self) -> list[torch.nn.Parameter]:
        head = list(self.jigsaw_head.parameters()) if self.jigsaw_head is not None else []
        return list(self.student.parameters()) + head

    def _fixed_targets(self) -> bool:
        """Whether the teacher maps of a training image are the same every epoch (then cacheable)."""
        cfg = self.config
        return cfg.train_augment == "none" and cfg.feature_style == "none" and self.jigsaw_head is None

    def _augmix(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        return augmix(image, rng, self.norm, ops=OP_LISTS[cfg.augmix_ops], width=cfg.augmix_width,
                      depth=cfg.augmix_depth, severity=cfg.augmix_severity,
                      random_severity=cfg.augmix_random_severity)

    def _inputs(self, images: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """The batch the teacher sees: the images, or their AugMix views (``train_augment``)."""
        if self.config.train_augment == "augmix":
            x = torch.from_numpy(np.stack([self._augmix(images[j], rng) for j in idx]))
        else:
            x = to_tensor([images[j] for j in idx], self.norm)
        return x.to(self.device).contiguous(memory_format=CL)

    def _jigsaw(self, x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """JiGen's sampling: a uniform class in 0..P, replaced by 0 (unshuffled) with probability
        ``jigsaw_bias_whole``; the batch with its tiles in that order, and the labels."""
        cfg = self.config
        labels = rng.integers(0, cfg.jigsaw_classes + 1, size=len(x))
        labels[rng.random(len(x)) < cfg.jigsaw_bias_whole] = 0
        labels_t = torch.from_numpy(labels).to(self.device)
        return shuffle_tiles(x, self._jigsaw_table, labels_t).contiguous(memory_format=CL), labels_t

    def _step(self, images: np.ndarray, idx: np.ndarray, cache: dict[str, list[torch.Tensor]] | None,
              rng: np.random.Generator, opt: torch.optim.Optimizer) -> float:
        cfg = self.config
        labels = None
        with torch.no_grad():
            x = self._inputs(images, idx, rng)
            if self.jigsaw_head is not None:
                x, labels = self._jigsaw(x, rng)
            if cache is not None:
                sel = torch.as_tensor(idx, device=cache["clean"][0].device)

                def cached(kind: str) -> list[torch.Tensor]:
                    return [c.index_select(0, sel).to(self.device) for c in cache[kind]]

                t_clean = cached("clean")
            else:
                styles = None
                if cfg.feature_style != "none":  # training only: scoring never passes stage functions
                    styles = style_mixers(cfg.feature_style, len(idx), STYLE_STAGES, cfg.style_p, cfg.style_alpha,
                                          rng, self.device)
                t_clean = self.teacher(x, stage_fns=styles)
            views: list[list[torch.Tensor]] = []
            if cfg.augmix_views:
                aug = torch.from_numpy(np.stack([self._augmix(images[j], rng) for j in idx])).to(self.device)
                if cache is not None and "gray" in cache:  # the grayscale view is fixed: only AugMix's is new
                    views = [self.teacher(aug.contiguous(memory_format=CL)), cached("gray")]
                else:
                    both = self.teacher(torch.cat([aug, self._gray(x)]).contiguous(memory_format=CL))
                    b = len(idx)
                    views = [[f[:b] for f in both], [f[b:] for f in both]]
        z, dec = self.student(t_clean)
        loss = cfg.loss_ori * distill_loss(t_clean, dec)
        if views:
            l_abs = l_lowf = 0.0
            for t_view in views:  # each view through the student on its own (own BN batch stats)
                z_v, dec_v = self.student(t_view)
                if cfg.loss_abs:  # a term with weight 0 is not computed (Table 5's single-term rows)
                    l_abs = l_abs + flat_cosine_distance(z, z_v)
                if cfg.loss_lowf:
                    l_lowf = l_lowf + flat_cosine_distance(dec[0], dec_v[0])
            per = len(views) if cfg.consistency_reduction == "mean" else 1
            loss = loss + cfg.loss_abs * l_abs / per + cfg.loss_lowf * l_lowf / per
        if labels is not None:
            logits = self.jigsaw_head(z)
            loss = loss + cfg.jigsaw_weight * F.cross_entropy(logits, labels)
            self._jigsaw_tally[0] += int((logits.argmax(1) == labels).sum())
            self._jigsaw_tally[1] += len(labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def _gray(self, x: torch.Tensor) -> torch.Tensor:
        """The grayscale view of a normalised batch (3 equal channels)."""
        w = torch.tensor(GRAY_WEIGHTS, device=x.device).view(1, 3, 1, 1)
        if self.config.gray_after_norm:  # ADShift: Grayscale applied after Normalize
            return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()
        mean = torch.tensor(self.norm.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.norm.std, device=x.device).view(1, 3, 1, 1)
        g = ((x * std + mean) * w).sum(1, keepdim=True)
        return ((g - mean) / std).contiguous()

    @torch.no_grad()
    def _teacher_cache(self, images: np.ndarray) -> dict[str, list[torch.Tensor]] | None:
        """Teacher maps of every training image that are the same each epoch, when they fit
        ``teacher_cache_mb``: the clean image's ("clean") and, with ``augmix_views``, its
        grayscale view's ("gray"). A sample's maps do not depend on the batch it is computed in
        (eval-mode teacher; checked bit for bit in the tests), so the cache changes no weight."""
        cfg = self.config
        s = self.net_geometry.out_size
        per_image = sum(c * (s // stride) ** 2 for c, stride in zip(self.teacher.channels, (4, 8, 16)))
        fit = int(cfg.teacher_cache_mb * 2**20 // max(1, len(images) * per_image * 4))  # kinds that fit
        kinds = (("clean", "gray") if cfg.augmix_views else ("clean",))[:fit]
        if not kinds:
            return None
        bs = cfg.batch_size
        parts: dict[str, list[list[torch.Tensor]]] = {k: [] for k in kinds}
        for i in range(0, len(images), bs):
            x = to_tensor(images[i:i + bs], self.norm).to(self.device, memory_format=CL)
            parts["clean"].append(self.teacher(x))
            if "gray" in parts:
                parts["gray"].append(self.teacher(self._gray(x).contiguous(memory_format=CL)))
        return {k: [torch.cat([p[level] for p in maps]) for level in range(3)] for k, maps in parts.items()}

    def _choose_reference(self, train: Sequence[np.ndarray], images: np.ndarray) -> None:
        ref = str(self.config.efdm_reference).strip()
        ids = list(getattr(train, "ids", None) or [])
        try:
            idx = int(ref)
        except ValueError:
            if ref not in ids:
                raise BenchError(f"efdm_reference '{ref}' is neither an index nor a training image id "
                                 f"(e.g. {ids[0] if ids else 'train/good/000.png'})") from None
            idx = ids.index(ref)
        if not -len(images) <= idx < len(images):
            raise BenchError(f"efdm_reference {idx} is out of range: the training set has {len(images)} images")
        idx %= len(images)
        self.reference = images[idx].copy()
        self.reference_index = idx
        self.reference_id = ids[idx] if ids else str(idx)
        self._ref_sorted = None

    # -- checkpoints --------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return Path(self.checkpoint_dir) / CHECKPOINT if self.checkpoint_dir is not None else None

    def _save_checkpoint(self, opt: torch.optim.Optimizer, epoch: int) -> None:
        path = self._checkpoint_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "identity": self._identity_hash(), "epoch": epoch,
            "student": self.student.state_dict(), "optimizer": opt.state_dict(), **self._head_state(),
            "history": list(self.history), "epoch_seconds": list(self.epoch_seconds),
            "torch_rng": torch.get_rng_state(),
            "computed_with": self._computed_with(),
        }
        atomic_write(path, lambda fh: torch.save(state, fh), durable=False)  # a checkpoint can be redone

    def _computed_with(self) -> str:
        return f"{torch.get_num_threads()} threads on {self.device}"

    def _resume(self, opt: torch.optim.Optimizer) -> int:
        """Load the last epoch checkpoint if there is one for this fit; return the epochs done."""
        path = self._checkpoint_path()
        if path is None or not path.is_file():
            return 0
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # torn or foreign file: train from scratch
            log.warning("ignoring unreadable checkpoint %s (%s)", path, e)
            return 0
        if state.get("identity") != self._identity_hash() or not 0 < state["epoch"] <= self.config.epochs:
            log.warning("ignoring checkpoint %s: it belongs to another training", path)
            return 0
        if state.get("computed_with") != self._computed_with():
            # the rows record one fit_threads / fit_device: a training split across two would not
            # be what they say, and bench verify could not reproduce it
            warn(f"{path}: epochs 1-{state['epoch']} were trained with {state.get('computed_with')}, this run "
                 f"uses {self._computed_with()}; training again from epoch 0 (rerun with the checkpoint's "
                 "--threads / --device to resume it)")
            return 0
        self.student.load_state_dict(state["student"])
        self._load_head_state(state)
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.history = list(state["history"])
        self.epoch_seconds = list(state["epoch_seconds"])
        self.resumed_from = int(state["epoch"])
        self._report(self.resumed_from, resumed=True)
        return self.resumed_from

    def _report(self, epoch: int, resumed: bool = False) -> None:
        loss = self.history[-1] if self.history else float("nan")
        sec = self.epoch_seconds[-1] if self.epoch_seconds else float("nan")
        what = "resumed at" if resumed else "epoch"
        msg = f"{what} {epoch}/{self.config.epochs} loss {loss:.4f} ({sec:.1f} s/epoch)"
        log.info("%s %s", self.name, msg)
        if self.progress is not None:
            self.progress(msg)

    # -- scoring ------------------------------------------------------------------------------
    def _efdm_refs(self) -> list[torch.Tensor] | None:
        if self.config.efdm_alpha <= 0:
            return None
        if self.reference is None:
            raise BenchError("EFDM needs the reference training image: fit (or load_fitted_state) first")
        if self._ref_sorted is None:
            with torch.no_grad():
                feats = self.teacher(to_tensor([self.reference], self.norm).to(self.device, memory_format=CL))
            self._ref_sorted = [sorted_values(f) for f in feats[:2]]  # EFDM after stages 1 and 2
        return self._ref_sorted

    def score(self, images: Sequence[np.ndarray]) -> Scores:
        cfg = self.config
        self.student.eval()
        refs = self._efdm_refs()
        image_scores, maps = [], []
        for x in batches(images, self.net_geometry, cfg.batch_size, self.norm):
            with torch.no_grad():
                t = self.teacher(x.to(self.device, memory_format=CL), refs, cfg.efdm_alpha)
                _, s = self.student(t)
                m = anomaly_maps(t, s, cfg.image_size).float().cpu().numpy()
            m = smooth_maps(m, cfg.smoothing_sigma)
            maps.append(m)
            image_scores.append(m.reshape(len(m), -1).max(1))
        return Scores(np.concatenate(image_scores).astype(np.float64), np.concatenate(maps))

    # -- harness ------------------------------------------------------------------------------
    def _head_state(self) -> dict[str, Any]:
        """The Jigsaw head and its last accuracy (only when there is one: RD4AD's state is unchanged)."""
        if self.jigsaw_head is None:
            return {}
        return {"jigsaw_head": {k: v.detach().cpu().clone() for k, v in self.jigsaw_head.state_dict().items()},
                "jigsaw_accuracy": self.jigsaw_accuracy}

    def _load_head_state(self, state: dict[str, Any]) -> None:
        if self.jigsaw_head is not None and "jigsaw_head" in state:
            self.jigsaw_head.load_state_dict(state["jigsaw_head"])
            self.jigsaw_accuracy = float(state["jigsaw_accuracy"])

    def fitted_state(self) -> dict[str, Any]:
        return {
            **self._head_state(),
            "student": {k: v.detach().cpu().clone() for k, v in self.student.state_dict().items()},
            "history": list(self.history), "epoch_seconds": list(self.epoch_seconds),
            "resumed_from": self.resumed_from, "reference": self.reference,
            "reference_index": self.reference_index, "reference_id": self.reference_id,
        }

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.student.eval()
        self._load_head_state(state)
        self.history = list(state["history"])
        self.epoch_seconds = list(state["epoch_seconds"])
        self.resumed_from = int(state["resumed_from"])
        self.reference = state["reference"]
        self.reference_index = int(state["reference_index"])
        self.reference_id = str(state["reference_id"])
        self._ref_sorted = None

    def diagnostics(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "train_epochs": float(len(self.history)),
            "train_loss": self.history[-1] if self.history else float("nan"),
            "train_seconds_per_epoch": float(np.mean(self.epoch_seconds)) if self.epoch_seconds else float("nan"),
            "resumed_from_epoch": float(self.resumed_from),
        }
        if self.jigsaw_head is not None:
            out["train_jigsaw_accuracy"] = self.jigsaw_accuracy
        if self.config.efdm_alpha > 0:
            out["efdm_reference_index"] = float(self.reference_index)
            out["efdm_reference_id"] = self.reference_id
        return out

