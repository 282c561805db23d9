"""Approximate greedy coreset (PatchCore's ``ApproximateGreedyCoresetSampler``).

The official sampler projects the bank to 128 dims with a fresh bias-free ``nn.Linear``
(seeded torch RNG), starts from 10 random points (numpy RNG) whose mean Euclidean distance is
every point's initial "distance to the coreset", then repeatedly takes the farthest point and
lowers every point's distance with the distance to it. Memory is O(N * d); no N x N matrix.

The loop reads the whole projected bank once per step, so it is memory-bandwidth bound. Two
exact ways to make it fast:

* ``fused``: one numba pass per step fuses distance, minimum and arg-max (reads the bank once,
  writes nothing but the N-vector), in parallel over both cores.
* ``pruned`` (default on CPU): points are grouped into blocks around pivots; a block whose
  lower bound ``(|c - pivot| - radius)^2`` is not below its largest current distance cannot
  change and is skipped. Late in the loop nearly every block is skipped. Selections equal the
  brute-force loop (up to float ties).

``torch`` runs the brute-force loop with preallocated buffers (the GPU path).
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

PROJECTION_DIM = 128
NUM_STARTS = 10


def project(features: torch.Tensor, dim: int = PROJECTION_DIM, seed: int = 0) -> torch.Tensor:
    """Random bias-free linear projection with PyTorch's default init, as the official code."""
    if features.shape[1] <= dim:
        return features.float()
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(features.shape[1])  # nn.Linear's kaiming_uniform(a=sqrt(5)) bound
    weight = torch.empty(dim, features.shape[1]).uniform_(-bound, bound, generator=gen)
    weight = weight.to(features.device)
    with torch.no_grad():
        return features.float() @ weight.T


def _initial_distances(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Squared form of the mean Euclidean distance to NUM_STARTS random points."""
    rng = np.random.default_rng(seed)
    starts = rng.choice(len(x), size=min(NUM_STARTS, len(x)), replace=False)
    d = torch.cdist(x, x[torch.as_tensor(starts, device=x.device)])
    return d.mean(dim=1).pow_(2)


def greedy_coreset(
    features: torch.Tensor, ratio: float, seed: int = 0, algorithm: str = "auto"
) -> np.ndarray:
    """Indices (int64) of ``int(N * ratio)`` coreset points of ``features`` (N, D)."""
    n = len(features)
    n_select = max(1, int(n * ratio))
    if ratio >= 1.0:
        return np.arange(n)
    x = project(features, seed=seed).contiguous()
    mind = _initial_distances(x, seed)
    if algorithm == "auto":
        algorithm = "torch" if x.is_cuda else "pruned"
    if algorithm == "torch":
        return _greedy_torch(x, mind, n_select)
    xn = x.cpu().numpy().astype(np.float32, copy=False)
    mind_np = mind.cpu().numpy().astype(np.float32)
    if algorithm == "fused":
        return _greedy_fused(xn, mind_np, n_select)
    if algorithm == "pruned":
        return _greedy_pruned(xn, mind_np, n_select, seed)
    raise ValueError(f"unknown coreset algorithm {algorithm!r}: use auto, torch, fused or pruned")


def _greedy_torch(x: torch.Tensor, mind: torch.Tensor, n_select: int) -> np.ndarray:
    norms = (x * x).sum(1)
    dist = torch.empty_like(mind)
    chosen = torch.empty(n_select, dtype=torch.long, device=x.device)
    for step in range(n_select):
        i = torch.argmax(mind)
        chosen[step] = i
        c = x[i]
        # |x|^2 - 2 x.c + |c|^2, into a preallocated buffer (allocation churn is costly)
        torch.addmv(norms, x, c, alpha=-2.0, out=dist)
        dist.add_(norms[i]).clamp_(min=0.0)
        torch.minimum(mind, dist, out=mind)
    return chosen.cpu().numpy()


@numba.njit(parallel=True, fastmath={"reassoc", "contract"}, cache=True)
def _update_fused(x, norms, mind, c, cnorm, nthreads):  # pragma: no cover - numba
    n, d = x.shape
    chunk = (n + nthreads - 1) // nthreads
    best_val = np.full(nthreads, -1.0, dtype=np.float32)
    best_idx = np.zeros(nthreads, dtype=np.int64)
    for t in numba.prange(nthreads):
        lo = t * chunk
        hi = min(n, lo + chunk)
        bv = np.float32(-1.0)
        bi = lo
        for i in range(lo, hi):
            dot = np.float32(0.0)
            for k in range(d):
                dot += x[i, k] * c[k]
            dist = norms[i] - np.float32(2.0) * dot + cnorm
            if dist < mind[i]:
                mind[i] = dist if dist > 0 else np.float32(0.0)
            if mind[i] > bv:
                bv = mind[i]
                bi = i
        best_val[t] = bv
        best_idx[t] = bi
    b = 0
    for t in range(1, nthreads):
        if best_val[t] > best_val[b]:
            b = t
    return best_idx[b]


def _greedy_fused(x: np.ndarray, mind: np.ndarray, n_select: int) -> np.ndarray:
    norms = np.einsum("ij,ij->i", x, x).astype(np.float32)
    nthreads = numba.get_num_threads()
    chosen = np.empty(n_select, dtype=np.int64)
    i = int(np.argmax(mind))
    for step in range(n_select):
        chosen[step] = i
        i = _update_fused(x, norms, mind, x[i].copy(), norms[i], nthreads)
    return chosen


@numba.njit(parallel=True, fastmath={"reassoc", "contract"}, cache=True)
def _pruned_loop(x, norms, mind, starts, pivots, radius, n_select):  # pragma: no cover - numba
    n, d = x.shape
    nb = len(starts) - 1
    bmax = np.empty(nb, dtype=np.float32)  # largest current distance per block
    barg = np.empty(nb, dtype=np.int64)
    for b in range(nb):
        bmax[b] = -1.0
        for i in range(starts[b], starts[b + 1]):
            if mind[i] > bmax[b]:
                bmax[b] = mind[i]
                barg[b] = i
    chosen = np.empty(n_select, dtype=np.int64)
    pc = np.empty(nb, dtype=np.float32)
    for step in range(n_select):
        b0 = 0
        for b in range(1, nb):
            if bmax[b] > bmax[b0]:
                b0 = b
        ci = barg[b0]
        chosen[step] = ci
        c = x[ci].copy()
        cn = norms[ci]
        for b in numba.prange(nb):
            s = np.float32(0.0)
            for k in range(d):
                t = c[k] - pivots[b, k]
                s += t * t
            pc[b] = np.sqrt(s)
        for b in numba.prange(nb):
            gap = pc[b] - radius[b]
            # triangle inequality: every point of b is at least `gap` away from c
            if gap > 0 and gap * gap * np.float32(0.999) >= bmax[b]:
                continue
            bv = np.float32(-1.0)
            bi = starts[b]
            for i in range(starts[b], starts[b + 1]):
                dot = np.float32(0.0)
                for k in range(d):
                    dot += x[i, k] * c[k]
                dist = norms[i] - np.float32(2.0) * dot + cn
                if dist < mind[i]:
                    mind[i] = dist if dist > 0 else np.float32(0.0)
                if mind[i] > bv:
                    bv = mind[i]
                    bi = i
            bmax[b] = bv
            barg[b] = bi
    return chosen


def _blocks(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group points around ~sqrt(N) random pivots: (order, block starts, pivots, radii)."""
    n = len(x)
    nb = int(min(4096, max(1, math.sqrt(n) * 2)))
    rng = np.random.default_rng(seed + 1)
    pivots = x[rng.choice(n, size=nb, replace=False)]
    xt, pt = torch.from_numpy(x), torch.from_numpy(pivots)
    pnorm = (pt * pt).sum(1)
    assign = np.empty(n, dtype=np.int64)
    step = 65536
    for lo in range(0, n, step):
        d = pnorm[None, :] - 2.0 * (xt[lo : lo + step] @ pt.T)
        assign[lo : lo + step] = d.argmin(1).numpy()
    order = np.argsort(assign, kind="stable")
    counts = np.bincount(assign, minlength=nb)
    starts = np.zeros(nb + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    xs = x[order]
    dist = np.sqrt(((xs - pivots[assign[order]]) ** 2).sum(1))
    radius = np.zeros(nb, dtype=np.float32)
    np.maximum.at(radius, assign[order], dist.astype(np.float32))
    # small slack so float rounding in the bound never prunes a block that could change
    radius = radius * np.float32(1.0001) + np.float32(1e-4)
    return order, starts, pivots.astype(np.float32), radius


def _greedy_pruned(x: np.ndarray, mind: np.ndarray, n_select: int, seed: int) -> np.ndarray:
    order, starts, pivots, radius = _blocks(x, seed)
    xs = np.ascontiguousarray(x[order])
    norms = np.einsum("ij,ij->i", xs, xs).astype(np.float32)
    chosen = _pruned_loop(xs, norms, np.ascontiguousarray(mind[order]), starts, pivots, radius, n_select)
    return order[chosen]
