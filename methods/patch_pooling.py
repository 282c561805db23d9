"""PatchCore's patch aggregation through numba kernels, equal bit for bit to ATen's.

``patchcore.embed_patches`` in its literal form (unfold each level's 3x3 neighbourhoods,
``adaptive_avg_pool1d`` over their C*9 values, stack the levels, pool them again) spends a third
of an EfficientNet-Lite0 forward in copies and ATen's scalar pooling loops. Without gradients the
same numbers come from two kernels that read the feature maps directly:

- ``_pool_level``: each patch's pooled vector, taking the unfolded value ``(c, ky, kx)`` from the
  zero-padded map where ``F.unfold`` would have put it;
- ``_pool_rows``: the final pooling over the levels' concatenation, level by level.

With gradients (test-time adaptation) the literal form runs with ``adaptive_avg_pool1d`` here:
``_pool_rows`` forward, ``_unpool_rows`` backward.

All follow ATen's CPU adaptive average pooling (``cpu_adaptive_avg_pool2d`` and its backward):
window ``[floor(j L / O), ceil((j + 1) L / O))``, a float32 sum from 0 in index order, then
``sum / 1 / k``; backward from zero, adding ``grad / 1 / k`` in output order. Every row is
computed on its own, so the thread split changes no bit. Tests compare the embedding and its
gradient with ATen's on the shapes of both backbones.
"""
from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
import torch
import torch.nn.functional as F


def windows(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """ATen's adaptive-pooling windows: start and end (exclusive) of each of ``out`` outputs."""
    j = np.arange(out, dtype=np.int64)
    return (j * length) // out, -((-(j + 1) * length) // out)


@numba.njit(parallel=True, cache=True)
def _pool_level(padded, offsets, starts, ends, h, w, out):  # pragma: no cover - numba
    """padded (B, C, H + 2p, W + 2p) zero-padded maps, flat -> out (B*H*W, O): adaptive pooling of
    each patch's unfolded C*k*k values; unfolded value i of the patch at (0, 0) is
    ``padded[offsets[i]]``, and a patch's values sit at a fixed shift from those."""
    wp = padded.shape[3]
    flat = padded.reshape(-1)
    per_image = padded.shape[1] * padded.shape[2] * wp
    o = starts.shape[0]
    for r in numba.prange(out.shape[0]):
        b = r // (h * w)
        base = b * per_image + ((r // w) % h) * wp + r % w
        for j in range(o):
            s = np.float32(0.0)
            for i in range(starts[j], ends[j]):
                s += flat[base + offsets[i]]
            out[r, j] = s / np.float32(1.0) / np.float32(ends[j] - starts[j])


@numba.njit(parallel=True, cache=True)
def _pool_rows(x, starts, ends, out, first):  # pragma: no cover - numba
    """x (N, L) -> out[:, first:first + len(starts)]: adaptive pooling of each row of x."""
    for r in numba.prange(out.shape[0]):
        for j in range(starts.shape[0]):
            s = np.float32(0.0)
            for i in range(starts[j], ends[j]):
                s += x[r, i]
            out[r, first + j] = s / np.float32(1.0) / np.float32(ends[j] - starts[j])


@numba.njit(parallel=True, cache=True)
def _unpool_rows(grad, starts, ends, out):  # pragma: no cover - numba
    """The backward of ``_pool_rows`` as ATen computes it: out (N, L) from zero, then, in output
    order, each window's ``grad / 1 / k`` added to each of its inputs."""
    for r in numba.prange(grad.shape[0]):
        for i in range(out.shape[1]):
            out[r, i] = np.float32(0.0)
        for j in range(starts.shape[0]):
            d = grad[r, j] / np.float32(1.0) / np.float32(ends[j] - starts[j])
            for i in range(starts[j], ends[j]):
                out[r, i] += d


class _AdaptivePool1d(torch.autograd.Function):
    """``F.adaptive_avg_pool1d`` on (N, 1, L) float32 CPU tensors through numba, both ways."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int) -> torch.Tensor:  # type: ignore[override]
        n, _, length = x.shape
        starts, ends = windows(length, size)
        out = np.empty((n, size), dtype=np.float32)
        _pool_rows(np.ascontiguousarray(x.detach().reshape(n, length).numpy()), starts, ends, out, 0)
        ctx.windows = starts, ends
        return torch.from_numpy(out).reshape(n, 1, size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        n, _, size = grad.shape
        starts, ends = ctx.windows
        length = int(ends[-1])  # the last window ends at the input's end
        out = np.empty((n, length), dtype=np.float32)
        _unpool_rows(np.ascontiguousarray(grad.reshape(n, size).numpy()), starts, ends, out)
        return torch.from_numpy(out).reshape(n, 1, length), None


def adaptive_avg_pool1d(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.adaptive_avg_pool1d(x, size)``, bit for bit in value and gradient; through numba for
    (N, 1, L) float32 CPU tensors (ATen's loops run 2-3x slower on PatchCore's shapes)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 3 or x.shape[1] != 1:
        return F.adaptive_avg_pool1d(x, size)
    return _AdaptivePool1d.apply(x, size)


def _pool_concatenation(levels: list[np.ndarray], target_dim: int) -> np.ndarray:
    """Adaptive pooling of each row of ``np.concatenate(levels, 1)`` to ``target_dim``, level by
    level where no window spans two levels (PatchCore's widths: each window lies in one)."""
    d = levels[0].shape[1]
    starts, ends = windows(len(levels) * d, target_dim)
    out = np.empty((len(levels[0]), target_dim), dtype=np.float32)
    if np.any((starts // d) != ((ends - 1) // d)):
        _pool_rows(np.concatenate(levels, axis=1), starts, ends, out, 0)
        return out
    for lv, x in enumerate(levels):
        mine = np.flatnonzero(starts // d == lv)
        if len(mine):
            _pool_rows(x, starts[mine] - lv * d, ends[mine] - lv * d, out, mine[0])
    return out


def supported(features: Sequence[torch.Tensor], patch_size: int) -> bool:
    """True where the fused form applies: CPU float32 maps, no gradient wanted, an odd patch size."""
    return (patch_size % 2 == 1 and not torch.is_grad_enabled()
            and all(f.device.type == "cpu" and f.dtype == torch.float32 and f.dim() == 4 for f in features))


def embed_patches_fused(features: Sequence[torch.Tensor], patch_size: int, pretrain_dim: int,
                        target_dim: int) -> torch.Tensor:
    """``embed_patches`` for ``supported`` inputs: (B, h*w, target_dim), equal bit for bit."""
    h, w = features[0].shape[-2:]
    batch = features[0].shape[0]
    levels = []
    for f in features:
        b, c, fh, fw = f.shape
        starts, ends = windows(c * patch_size * patch_size, pretrain_dim)
        pooled = np.empty((b * fh * fw, pretrain_dim), dtype=np.float32)
        pad = patch_size // 2
        padded = F.pad(f, (pad, pad, pad, pad)).contiguous()  # unfold's zero padding
        i = np.arange(c * patch_size * patch_size)
        ky, kx = (i // patch_size) % patch_size, i % patch_size
        offsets = (i // (patch_size * patch_size)) * padded.shape[2] * padded.shape[3] + ky * padded.shape[3] + kx
        _pool_level(padded.numpy(), offsets, starts, ends, fh, fw, pooled)
        u = torch.from_numpy(pooled).reshape(b, fh, fw, pretrain_dim)
        if (fh, fw) != (h, w):  # the literal form's bilinear upsampling, on the same values
            u = F.interpolate(u.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
            u = u.permute(0, 2, 3, 1)
        levels.append(np.ascontiguousarray(u.reshape(b * h * w, pretrain_dim).numpy()))
    return torch.from_numpy(_pool_concatenation(levels, target_dim)).reshape(batch, h * w, target_dim)
