"""Reverse-distillation building blocks shared by RD4AD and GNL.

- ``Teacher``: the frozen pretrained backbone (shared factory) returning the three stages at
  strides 4/8/16 (WRN-50 layer1..layer3), optionally with EFDM applied after the first two
  stages (GNL's test-time feature distribution matching).
- ``OCBE``: the one-class bottleneck embedding: multi-scale fusion of the three teacher levels
  (strided 3x3 convs down to the deepest level, concatenation) and one residual stage of
  bottleneck blocks with a stride-2 first block.
- ``StudentDecoder``: a mirrored ResNet whose stages upsample x2 with 2x2 transposed convs and end
  on the teacher's channel counts, deepest first.
- Feature-level style mixing for the OOD-generalisation baselines of GNL's tables: MixStyle (Zhou
  et al., ICLR 2021) and EFDMix (Zhang et al., CVPR 2022) between random pairs of a batch,
  applied through the same stage hooks as EFDM; and the Jigsaw task (JiGen, Carlucci et al., CVPR
  2019): tiles shuffled by one of P permutations and a permutation classifier on the bottleneck.

Everything is built from the teacher's stage channel counts ``(c1, c2, c3)``, so the same code
serves WRN-50 (256, 512, 1024; the official RD4AD network, wide bottlenecks) and smaller backbones
such as EfficientNet-Lite0 (24, 40, 112). Block widths follow the wide ResNet rule of the
official network: the inner width of a bottleneck is half its output width (WRN-50-2: 1024
inside a 2048-wide block), and the bottleneck's output has ``2 * c3`` channels.

The student's block type follows the teacher's, as in the official code (``student_layout``): a
teacher whose stages are ResNet basic blocks (ResNet-18 / 34) gets RD4AD's basic-block student
(OCBE = ``BN_layer(AttnBasicBlock, n)`` with n the teacher's fourth-stage block count, 2 for
ResNet-18 and 3 for ResNet-34; decoder = ``de_resnet18`` / ``de_resnet34``, the teacher's first
three stage counts [2, 2, 2] / [3, 4, 6] deepest first); a bottleneck ResNet gets bottlenecks as
wide inside as its own (ResNet-50: a quarter of the output, as ``de_resnet50``; WRN-50: half);
every other teacher (EfficientNet, ...) the wide-bottleneck student above (OCBE 3, decoder
[3, 4, 6]).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import DISTILL_STRIDES, bottleneck_divisor, feature_info, load_backbone, resnet_blocks, stages_for
from .errors import BenchError

DECODER_BLOCKS = (3, 4, 6)  # blocks per decoder stage, deepest stage first (de_wide_resnet50_2)
OCE_BLOCKS = 3  # bottleneck blocks in the one-class embedding stage
BLOCK_TYPES = ("bottleneck", "basic")


@dataclass(frozen=True)
class StudentLayout:
    """The student's block type and block counts (OCBE; decoder stages, deepest first)."""

    block: str = "bottleneck"
    oce_blocks: int = OCE_BLOCKS
    decoder_blocks: tuple[int, ...] = DECODER_BLOCKS
    inner_divisor: int = 2  # a bottleneck's output width over its inner width (WRN: 2, ResNet-50: 4)

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"student block {self.block!r}: use one of {BLOCK_TYPES}")
        if self.oce_blocks < 1 or len(self.decoder_blocks) != 3 or min(self.decoder_blocks) < 1:
            raise ValueError(f"bad student layout {self}")


def student_layout(backbone: str) -> StudentLayout:
    """The official pairing of teacher and student: basic blocks for a teacher built of ResNet
    basic blocks (as ``BN_layer`` + ``de_resnet18`` / ``de_resnet34``: OCBE blocks = the teacher's
    fourth-stage count, which the bottleneck stands in for; decoder = the teacher's first three
    stage counts, deepest first, as ``de_resnet``'s ``layers[0..2]``); the wide-bottleneck student
    for every other teacher."""
    blocks = resnet_blocks(backbone)
    if blocks is None:
        return StudentLayout()
    kind, counts = blocks
    if kind == "basic":
        return StudentLayout("basic", counts[3], tuple(counts[:3]))
    return StudentLayout("bottleneck", counts[3], tuple(counts[:3]), bottleneck_divisor(backbone) or 2)


# ---------------------------------------------------------------------------------------------
# blocks


def _inner(out_ch: int, divisor: int = 2) -> int:
    return max(8, out_ch // divisor)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (or 2x2 transposed, stride 2, when ``up``) -> 1x1, with a projected shortcut.

    ``stride=2`` halves the grid (3x3 stride-2 conv; 1x1 stride-2 conv + BN on the shortcut) or,
    with ``up=True``, doubles it (2x2 stride-2 transposed convs on both paths).
    """

    def __init__(self, in_ch: int, width: int, out_ch: int, stride: int = 1, up: bool = False,
                 final_relu: bool = True) -> None:
        super().__init__()
        self.final_relu = final_relu
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        if stride == 2 and up:
            self.conv2: nn.Module = nn.ConvTranspose2d(width, width, 2, stride=2, bias=False)
        else:
            self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_ch, out_ch, stride, up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out)) + identity
        return self.relu(out) if self.final_relu else out


def _shortcut(in_ch: int, out_ch: int, stride: int, up: bool) -> nn.Module | None:
    """The projected shortcut of a block that changes grid or width (None: identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    proj = (nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2, bias=False) if up and stride == 2
            else nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False))
    return nn.Sequential(proj, nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """ResNet-18/34's block: 3x3 (or 2x2 transposed, stride 2, when ``up``) -> 3x3, both at the
    output width, with a projected shortcut (RD4AD's ``AttnBasicBlock`` in the OCBE and
    ``de_resnet``'s ``BasicBlock`` in the decoder).

    ``stride=2`` halves the grid (3x3 stride-2 conv; 1x1 stride-2 conv + BN on the shortcut) or,
    with ``up=True``, doubles it (2x2 stride-2 transposed convs on both paths).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, up: bool = False,
                 final_relu: bool = True) -> None:
        super().__init__()
        self.final_relu = final_relu
        if stride == 2 and up:
            self.conv1: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_ch, out_ch, stride, up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + identity
        return self.relu(out) if self.final_relu else out


def _block(kind: str, in_ch: int, out_ch: int, divisor: int = 2, **kwargs) -> nn.Module:
    """A block of the student's type; a bottleneck's inner width is its output's / ``divisor``."""
    if kind == "basic":
        return BasicBlock(in_ch, out_ch, **kwargs)
    return Bottleneck(in_ch, _inner(out_ch, divisor), out_ch, **kwargs)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def _init(module: nn.Module) -> None:
    """ResNet initialisation: Kaiming (fan-out) convs, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class OCBE(nn.Module):
    """One-class bottleneck: fuse levels (c1@4, c2@8, c3@16) into 2*c3 channels at stride 32."""

    def __init__(self, channels: Sequence[int], blocks: int = OCE_BLOCKS, block: str = "bottleneck",
                 divisor: int = 2) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.fuse1 = nn.Sequential(*_conv_bn_relu(c1, c2, 2), *_conv_bn_relu(c2, c3, 2))
        self.fuse2 = nn.Sequential(*_conv_bn_relu(c2, c3, 2))
        out = 2 * c3
        layers = [_block(block, 3 * c3, out, divisor, stride=2)]
        layers += [_block(block, out, out, divisor) for _ in range(blocks - 1)]
        self.embed = nn.Sequential(*layers)
        self.out_channels = out
        _init(self)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        return self.embed(torch.cat([self.fuse1(f1), self.fuse2(f2), f3], dim=1))


class StudentDecoder(nn.Module):
    """Mirror of the teacher: ``in_ch`` @32 -> c3 @16 -> c2 @8 -> c1 @4; returns [c1, c2, c3] maps.

    ``signed`` (per teacher level, lowest first): that level's teacher maps take negative values
    (e.g. EfficientNet stages end on a linear projection), so the matching decoder stage ends
    without the ReLU that a ResNet stage has; otherwise its output could never point where the
    teacher's does.
    """

    def __init__(self, channels: Sequence[int], in_ch: int, blocks: Sequence[int] = DECODER_BLOCKS,
                 signed: Sequence[bool] = (False, False, False), block: str = "bottleneck",
                 divisor: int = 2) -> None:
        super().__init__()
        stages = []
        cin = in_ch
        for out, n, neg in zip(reversed(tuple(channels)), blocks, reversed(tuple(signed))):
            layers = [_block(block, cin, out, divisor, stride=2, up=True, final_relu=n > 1 or not neg)]
            layers += [_block(block, out, out, divisor, final_relu=i < n - 2 or not neg) for i in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = out
        self.stages = nn.ModuleList(stages)
        _init(self)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            z = stage(z)
            outs.append(z)
        return outs[::-1]  # lowest level first, as the teacher


class Student(nn.Module):
    """The trainable part: OCBE + decoder (what RD4AD's optimiser sees); ``layout``: the block
    type and counts (``student_layout(backbone)``; default the wide-bottleneck student)."""

    def __init__(self, channels: Sequence[int], signed: Sequence[bool] = (False, False, False),
                 layout: StudentLayout | None = None) -> None:
        super().__init__()
        layout = layout or StudentLayout()
        self.layout = layout
        self.bottleneck = OCBE(channels, layout.oce_blocks, layout.block, layout.inner_divisor)
        self.decoder = StudentDecoder(channels, self.bottleneck.out_channels, layout.decoder_blocks,
                                      signed=signed, block=layout.block, divisor=layout.inner_divisor)

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = self.bottleneck(feats)
        return z, self.decoder(z)


# ---------------------------------------------------------------------------------------------
# EFDM


def sorted_values(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> per-channel ascending spatial values (B, C, H*W)."""
    return x.flatten(2).sort(dim=-1).values


def efdm(x: torch.Tensor, reference_sorted: torch.Tensor, alpha: float) -> torch.Tensor:
    """Exact feature distribution matching of ``x`` towards a reference, per channel.

    Each channel's spatial values are sorted; the k-th smallest becomes ``(1 - alpha) * own_k +
    alpha * ref_k`` (``torch.lerp``: exactly ``own`` at 0 and exactly ``ref`` at 1) and goes
    back to the position it came from. ``reference_sorted`` is (1 or B, C, H*W) from
    ``sorted_values``; a single reference broadcasts over the batch.
    """
    b, c = x.shape[:2]
    flat = x.flatten(2)
    if reference_sorted.shape[1:] != flat.shape[1:]:
        raise BenchError(f"EFDM reference has {tuple(reference_sorted.shape[1:])} values per channel, "
                         f"the test feature {tuple(flat.shape[1:])}: both must use the same image size")
    values, order = flat.sort(dim=-1)
    target = torch.lerp(values, reference_sorted.to(values.dtype).expand_as(values), alpha)
    return torch.empty_like(flat).scatter_(-1, order, target).view_as(x)


StageFn = Callable[[torch.Tensor], torch.Tensor]
STYLE_EPS = 1e-6  # MixStyle / EFDMix official eps


def mixstyle(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor, eps: float = STYLE_EPS) -> torch.Tensor:
    """MixStyle: normalise each sample's channels by their spatial mean / std, then re-style them
    with ``lam * own + (1 - lam) * partner`` statistics (partner = ``perm``; ``lam`` (B,))."""
    mu = x.mean(dim=(2, 3), keepdim=True)
    sig = (x.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    w = lam.to(x.dtype).view(-1, 1, 1, 1)
    return (x - mu) / sig * torch.lerp(sig[perm], sig, w) + torch.lerp(mu[perm], mu, w)


def efdmix(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """EFDMix: EFDM of each sample towards its partner's sorted values with weight ``1 - lam``
    (``lam * own + (1 - lam) * partner`` at each rank, values back in their own positions)."""
    return efdm(x, sorted_values(x)[perm], (1.0 - lam.to(x.dtype)).view(-1, 1, 1))


STYLE_MIXERS = {"mixstyle": mixstyle, "efdmix": efdmix}


def style_mixers(kind: str, batch: int, stages: int, p: float, alpha: float, rng: np.random.Generator,
                 device: torch.device | str) -> list[StageFn | None]:
    """One training step's draws for ``stages`` hooked stages, as MixStyle's / EFDMix's modules
    draw them per call: applied with probability ``p``; then ``lam ~ Beta(alpha, alpha)`` per
    sample and a random partner permutation of the batch. None: that stage is left alone."""
    mix = STYLE_MIXERS[kind]
    fns: list[StageFn | None] = []
    for _ in range(stages):
        if rng.random() > p:
            fns.append(None)
            continue
        lam = torch.from_numpy(rng.beta(alpha, alpha, size=batch).astype(np.float32)).to(device)
        perm = torch.from_numpy(rng.permutation(batch)).to(device)
        fns.append(functools.partial(mix, lam=lam, perm=perm))
    return fns


# ---------------------------------------------------------------------------------------------
# Jigsaw (JiGen)

JIGSAW_GRID = 3  # 3x3 tiles, as JiGen


@functools.lru_cache(maxsize=8)
def jigsaw_permutations(n: int, seed: int = 0) -> np.ndarray:
    """``n`` permutations of the 9 tiles, far apart in Hamming distance: (n, 9) int64.

    The greedy "maximal" selection of Noroozi & Favaro's Jigsaw code, which JiGen's permutation
    files come from: a random first permutation, then repeatedly the one with the largest mean
    Hamming distance to those chosen (ties: the first in lexicographic order). The identity is
    no candidate: it is class 0, the unshuffled image. Generated here (seeded) instead of
    shipping JiGen's files; like theirs, the set is not guaranteed far from the identity.
    """
    k = JIGSAW_GRID * JIGSAW_GRID
    cand = np.array(list(itertools.permutations(range(k))), dtype=np.int8)[1:]  # [0] was the identity
    if not 1 <= n <= len(cand):
        raise BenchError(f"jigsaw_classes={n}: must be in [1, {len(cand)}]")
    total = np.zeros(len(cand), np.int64)
    chosen = [int(np.random.default_rng(seed).integers(len(cand)))]
    while len(chosen) < n:
        total += (cand != cand[chosen[-1]]).sum(1)
        total[chosen] = -1
        chosen.append(int(total.argmax()))
    return cand[chosen].astype(np.int64)


def shuffle_tiles(x: torch.Tensor, table: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reassemble each image of ``x`` (B, C, S, S) from its 3x3 tiles in the order of
    ``table[label]`` (output tile t = input tile ``table[label, t]``; row 0 the identity). Tiles
    have side S // 3; the last ``S % 3`` rows and columns stay where they are."""
    b, c = x.shape[:2]
    g = JIGSAW_GRID
    t = x.shape[-1] // g
    region = x[..., :g * t, :g * t]
    tiles = region.reshape(b, c, g, t, g, t).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c, t, t)
    order = table.to(x.device)[labels]
    moved = tiles[torch.arange(b, device=x.device)[:, None], order]
    out = x.clone()
    out[..., :g * t, :g * t] = moved.reshape(b, g, g, c, t, t).permute(0, 3, 1, 4, 2, 5).reshape(b, c, g * t, g * t)
    return out


class JigsawHead(nn.Module):
    """JiGen's jigsaw classifier on the bottleneck: global average pool + linear over P + 1 classes."""

    def __init__(self, in_ch: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_ch, classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------
# teacher


def _submodule(model: nn.Module, name: str) -> nn.Module:
    for candidate in (name, name.replace(".", "_")):  # FeatureListNet flattens dotted names
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    raise BenchError(f"cannot find the module '{name}' that produces a teacher stage")


class Teacher(nn.Module):
    """Frozen backbone stages at strides 4/8/16; ``forward(x, efdm_refs, alpha)`` for GNL's ATTA."""

    def __init__(self, backbone: str, weights: str) -> None:
        super().__init__()
        stages = stages_for(backbone, DISTILL_STRIDES)
        self.net = load_backbone(backbone, weights, stages)
        self.net.requires_grad_(False)
        self.net.eval()
        self.layout = student_layout(backbone)  # the student that goes with this teacher
        info = {f["index"]: f for f in feature_info(backbone)}
        self.channels = tuple(int(info[s]["num_chs"]) for s in stages)
        self._stage_modules = [_submodule(self.net, info[s]["module"]) for s in stages]
        with torch.no_grad():  # which levels take negative values (no ReLU at the stage's end)
            probe = self.net(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
        self.signed = tuple(bool((f < 0).any()) for f in probe)

    def train(self, mode: bool = True) -> "Teacher":  # the teacher never leaves eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor, efdm_refs: Sequence[torch.Tensor] | None = None,
                alpha: float = 0.5, *, stage_fns: Sequence[StageFn | None] | None = None) -> list[torch.Tensor]:
        """Stage maps of ``x``; with ``efdm_refs`` (sorted reference values of the first stages),
        each of those stages' outputs is EFDM-shifted before it feeds the next stage. ``stage_fns``
        does the same with any function per stage (None: that stage unchanged), e.g. style mixing."""
        if efdm_refs:
            if stage_fns:
                raise ValueError("give efdm_refs or stage_fns, not both")
            stage_fns = [functools.partial(efdm, reference_sorted=ref, alpha=alpha) for ref in efdm_refs]
        if not stage_fns or all(fn is None for fn in stage_fns):
            return list(self.net(x))
        handles = [module.register_forward_hook(lambda _m, _inp, out, fn=fn: fn(out))
                   for module, fn in zip(self._stage_modules, stage_fns) if fn is not None]
        try:
            return list(self.net(x))
        finally:
            for h in handles:
                h.remove()


# ---------------------------------------------------------------------------------------------
# loss and maps


def flat_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batch mean of 1 - cos between each sample's whole flattened maps (RD4AD code's form)."""
    return (1.0 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean()


def distill_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of ``flat_cosine_distance``; 0 when the two lists are identical."""
    if len(teacher) != len(student):
        raise ValueError(f"{len(teacher)} teacher levels but {len(student)} student levels")
    return sum(flat_cosine_distance(t, s) for t, s in zip(teacher, student))


def anomaly_maps(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """Sum over levels of per-pixel 1 - cos (along channels), bilinearly upsampled to ``size``
    (align_corners=True, as the official code). Returns (B, size, size)."""
    total = None
    for t, s in zip(teacher, student):
        m = 1.0 - F.cosine_similarity(t, s, dim=1)
        m = F.interpolate(m.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        total = m if total is None else total + m
    return total
