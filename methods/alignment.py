"""Alignment losses for test-time adaptation on a memory bank, as small functions.

Features are patch embeddings ``z`` of shape (N, D) that carry gradient (through the backbone's
BatchNorm affine parameters); everything that describes the source (moments, clusters, the
memory bank) is a constant. Three families, one per method of the TTAD comparison:

- moment matching (TTT++): CORAL on covariances + linear MMD on means;
- Gaussian KL (TTAC): symmetric KL between source and (running) target Gaussians, full
  covariance or diagonal per mixture component;
- optimal transport (TTAD): an entropic (Sinkhorn, in torch) or exact (Hungarian) plan between
  target patches and bank items, computed *without* gradient, then used as is (continuous) or
  discretised into unit-weight (target, bank) pairs; the loss is sum_ij pi_ij C_ij (or its mean
  over the plan's mass) with gradient through the target features only (the envelope-theorem
  gradient of the OT value). Sinkhorn iterations are never unrolled through autograd, and no
  (N, M) tensor ever enters the autograd graph.

The OT cost is TTAD's Euclidean distance (or its square); the plan is computed on the cost
divided by a source scale so that the entropic ``reg`` is unit-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ASSIGNMENTS = ("or", "column", "mutual", "continuous", "hungarian")


# ---------------------------------------------------------------------------------------------
# moments (TTT++)


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance of the rows of ``x`` (N, D) -> (D, D); differentiable."""
    n = x.shape[0]
    xc = x - x.mean(0, keepdim=True)
    return xc.T @ xc / max(n - 1, 1)


def coral(cov_s: torch.Tensor, cov_t: torch.Tensor) -> torch.Tensor:
    """CORAL discrepancy: squared Frobenius distance of two covariances / (4 d^2)."""
    d = cov_s.shape[0]
    return ((cov_s - cov_t) ** 2).sum() / (4.0 * d * d)


def linear_mmd(mu_s: torch.Tensor, mu_t: torch.Tensor) -> torch.Tensor:
    """Linear MMD: mean squared difference of the two means."""
    return ((mu_s - mu_t) ** 2).mean()


def moment_loss(z: torch.Tensor, mu_s: torch.Tensor, cov_s: torch.Tensor, coral_weight: float = 1.0,
                mmd_weight: float = 1.0) -> torch.Tensor:
    """TTT++ alignment of target features ``z`` (N, D) to source moments.

    TTT++ scales each term by ``scale / (average discrepancy between source batches and the
    source)`` (an extra 0.5 on the MMD term); pass those as the weights.
    """
    return coral_weight * coral(cov_s, covariance(z)) + mmd_weight * linear_mmd(mu_s, z.mean(0))


def ttt_weights(scale: float, coral_src: float, mmd_src: float) -> tuple[float, float]:
    """TTT++'s loss weights from the source self-discrepancies."""
    return scale / max(coral_src, 1e-12), 0.5 * scale / max(mmd_src, 1e-12)


# ---------------------------------------------------------------------------------------------
# Gaussian KL (TTAC)


def sym_kl_full(mu0: torch.Tensor, cov0: torch.Tensor, mu1: torch.Tensor, cov1: torch.Tensor) -> torch.Tensor:
    """KL(N0 || N1) + KL(N1 || N0) for full covariances (the log-determinants cancel).

    = 0.5 [tr(S1^-1 S0) + tr(S0^-1 S1)] + 0.5 (m1 - m0)^T (S0^-1 + S1^-1) (m1 - m0) - d
    """
    d = mu0.shape[0]
    dm = (mu1 - mu0)[:, None]
    l0 = torch.linalg.cholesky(cov0)
    l1 = torch.linalg.cholesky(cov1)
    tr01 = torch.cholesky_solve(cov0, l1).diagonal().sum()  # tr(S1^-1 S0)
    tr10 = torch.cholesky_solve(cov1, l0).diagonal().sum()  # tr(S0^-1 S1)
    maha = (dm * (torch.cholesky_solve(dm, l0) + torch.cholesky_solve(dm, l1))).sum()
    return 0.5 * (tr01 + tr10 + maha) - d


def sym_kl_diag(mu0: torch.Tensor, var0: torch.Tensor, mu1: torch.Tensor, var1: torch.Tensor) -> torch.Tensor:
    """Symmetric KL between diagonal Gaussians; the last axis is the feature axis (batched)."""
    dm2 = (mu1 - mu0) ** 2
    return 0.5 * (var0 / var1 + var1 / var0 + dm2 * (1.0 / var0 + 1.0 / var1)).sum(-1) - mu0.shape[-1]


def ema_alpha(count: float, cap: float) -> float:
    """TTAC's step size: the plain running average (1/n) until n exceeds the cap, then 1/cap."""
    return 1.0 / cap if count > cap else 1.0 / max(count, 1.0)


def ema_moments(mu: torch.Tensor, cov: torch.Tensor, x: torch.Tensor, alpha: float,
                diagonal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """TTAC's incremental update of a running Gaussian with a batch ``x`` (n, D).

    ``mu``/``cov`` are the previous (detached) estimates; the result is differentiable w.r.t.
    ``x``. With ``alpha = 1/n`` on an empty state it returns the batch mean and the biased batch
    covariance (variance when ``diagonal``).
    """
    n = x.shape[0]
    delta_pre = x - mu
    delta = alpha * delta_pre.sum(0)
    new_mu = mu + delta
    if diagonal:
        new_cov = cov + alpha * ((delta_pre ** 2).sum(0) - n * cov) - delta ** 2
    else:
        new_cov = cov + alpha * (delta_pre.T @ delta_pre - n * cov) - delta[:, None] * delta[None, :]
    return new_mu, new_cov


@dataclass
class RunningGaussian:
    """Detached running target statistics between steps (one global or K diagonal components)."""

    mu: torch.Tensor
    cov: torch.Tensor  # (D, D) full, or (K, D) variances
    count: torch.Tensor  # () or (K,) number of samples seen

    @classmethod
    def empty(cls, d: int, components: int = 0, dtype=torch.float32) -> "RunningGaussian":
        if components:
            return cls(torch.zeros(components, d, dtype=dtype), torch.zeros(components, d, dtype=dtype),
                       torch.zeros(components, dtype=torch.float64))
        return cls(torch.zeros(d, dtype=dtype), torch.zeros(d, d, dtype=dtype), torch.zeros((), dtype=torch.float64))


def gaussian_kl_loss(
    z: torch.Tensor,
    src_mu: torch.Tensor,
    src_cov: torch.Tensor,
    eps: float,
    state: RunningGaussian | None = None,
    cap: float = float("inf"),
    *,
    comp_mu: torch.Tensor | None = None,
    comp_var: torch.Tensor | None = None,
    assign: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    comp_state: RunningGaussian | None = None,
    comp_cap: float = float("inf"),
    comp_gate: float = 0.0,
) -> tuple[torch.Tensor, dict]:
    """TTAC: sym-KL(global source || running target) + (1 / K) * the sum over components of the
    diagonal sym-KL of each component present in the batch (kept samples) whose running count
    has reached ``comp_gate`` (TTAC's code: 16 samples; the sum is divided by the number of
    components K, not by the number of terms).

    ``assign`` (N,) is each patch's component (nearest centroid, the pseudo label) and ``keep``
    (N,) the filter (patches close enough to the bank). ``eps`` regularises every covariance.
    ``state``/``comp_state`` are updated in place with detached values; pass None for a
    stateless evaluation on ``z`` alone. Returns (loss, info).
    """
    d = z.shape[1]
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    st = state if state is not None else RunningGaussian.empty(d, dtype=z.dtype)
    st.count += z.shape[0]
    mu_t, cov_t = ema_moments(st.mu.to(z), st.cov.to(z), z, ema_alpha(float(st.count), cap))
    st.mu, st.cov = mu_t.detach(), cov_t.detach()
    loss_global = sym_kl_full(src_mu, src_cov + eps * eye, mu_t, cov_t + eps * eye)
    info = {"kl_global": float(loss_global.detach())}
    loss = loss_global
    if comp_mu is not None:
        k = comp_mu.shape[0]
        cs = comp_state if comp_state is not None else RunningGaussian.empty(d, k, dtype=z.dtype)
        sel = keep if keep is not None else torch.ones(len(z), dtype=torch.bool, device=z.device)
        terms = []
        for c in torch.unique(assign[sel]).tolist():
            xc = z[sel & (assign == c)]
            cs.count[c] += xc.shape[0]
            m, v = ema_moments(cs.mu[c].to(z), cs.cov[c].to(z), xc, ema_alpha(float(cs.count[c]), comp_cap),
                               diagonal=True)
            cs.mu[c], cs.cov[c] = m.detach(), v.detach()
            if float(cs.count[c]) >= comp_gate:
                terms.append(sym_kl_diag(comp_mu[c], comp_var[c] + eps, m, v + eps))
        if terms:
            loss_comp = torch.stack(terms).sum() / k
            loss = loss + loss_comp
            info["kl_components"] = float(loss_comp.detach())
        info["components_active"] = len(terms)
        info["kept_fraction"] = float(sel.float().mean())
    return loss, info


# ---------------------------------------------------------------------------------------------
# optimal transport (TTAD)


@torch.no_grad()
def sq_cost(x: torch.Tensor, y: torch.Tensor, scale: float = 1.0, chunk: int = 4096,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """Squared-L2 cost (N, M) / ``scale``, built chunk by chunk into one buffer (no gradient).

    ``out``: a preallocated buffer of at least N*M elements to build it in (reused across
    adaptation steps, so the largest tensor of the loop is allocated once)."""
    x = x.detach()
    y = y.detach()
    n, m = x.shape[0], y.shape[0]
    if out is None or out.numel() < n * m or out.dtype != x.dtype or out.device != x.device:
        out = torch.empty(n, m, dtype=x.dtype, device=x.device)
    else:
        out = out.view(-1)[: n * m].view(n, m)
    y_sq = (y * y).sum(1)
    for lo in range(0, n, chunk):
        xs = x[lo:lo + chunk]
        blk = out[lo:lo + chunk]
        torch.mm(xs, y.T, out=blk)
        blk.mul_(-2.0).add_((xs * xs).sum(1, keepdim=True)).add_(y_sq[None, :]).clamp_(min=0.0)
    if scale != 1.0:
        out.div_(scale)
    return out


@dataclass
class SinkhornInfo:
    iters: int  # scaling iterations run
    error: float  # L1 error of the row marginals at the end (columns are exact)
    solver: str  # "scaling", or "log" when the scaling form broke down numerically


@torch.no_grad()
def sinkhorn_plan(cost: torch.Tensor, reg: float, max_iter: int = 100, tol: float = 1e-3,
                  check_every: int = 5) -> tuple[torch.Tensor, SinkhornInfo]:
    """Entropic OT plan with uniform marginals, in torch on ``cost``'s device and dtype.

    Written in place into ``cost`` (no second (N, M) buffer). The cost is first shifted by its
    row minima and then its column minima: with fixed marginals that leaves the plan unchanged
    (the shifts are absorbed by the dual scalings) and puts a zero in every row and column, so
    the Gibbs kernel exp(-C / reg) has an entry 1 in each and never an all-underflowed line.
    Sinkhorn scalings u = a / Kv, v = b / K^T u run until the L1 error of the row marginals
    (the columns are exact after each v update) is below ``tol``, checked every
    ``check_every`` iterations, or ``max_iter`` iterations. If the scalings overflow (kernels
    whose support admits no plan), the kernel is turned back into the shifted cost in place
    (entries that underflowed become +inf) and ``sinkhorn_log_plan`` solves it (rare).
    Returns the plan (the same storage as ``cost``) and what the solver did.
    """
    n, m = cost.shape
    cost.sub_(cost.min(1, keepdim=True).values)
    cost.sub_(cost.min(0, keepdim=True).values)
    k = cost.mul_(-1.0 / reg).exp_()  # the Gibbs kernel, in place
    a, b = 1.0 / n, 1.0 / m
    v = torch.ones(m, dtype=k.dtype, device=k.device)
    u = torch.empty(n, dtype=k.dtype, device=k.device)
    kv = torch.empty(n, dtype=k.dtype, device=k.device)
    ktu = torch.empty(m, dtype=k.dtype, device=k.device)
    it, err = 0, float("inf")
    while it < max_iter:
        torch.mv(k, v, out=kv)
        if it > 0 and it % check_every == 0:
            err = float((u * kv - a).abs().sum())  # row marginals of the current plan
            if not err == err or err == float("inf"):  # NaN / inf: the scalings broke down
                break
            if err < tol:
                break
        torch.div(a, kv, out=u)
        torch.mv(k.T, u, out=ktu)
        torch.div(b, ktu, out=v)
        it += 1
    if it == max_iter:
        torch.mv(k, v, out=kv)
        err = float((u * kv - a).abs().sum())
    if not (err == err and err != float("inf") and bool(torch.isfinite(u).all()) and bool(torch.isfinite(v).all())):
        return sinkhorn_log_plan(k.log_().mul_(-reg), reg, max_iter, tol, check_every)
    k.mul_(u[:, None]).mul_(v[None, :])  # the plan diag(u) K diag(v), in place
    return k, SinkhornInfo(it, err, "scaling")


@torch.no_grad()
def sinkhorn_log_plan(cost: torch.Tensor, reg: float, max_iter: int = 100, tol: float = 1e-3,
                      check_every: int = 5) -> tuple[torch.Tensor, SinkhornInfo]:
    """The log-domain form of ``sinkhorn_plan`` (stable for any cost / reg; slower, temporaries).
    The plan is written into ``cost``'s storage."""
    n, m = cost.shape
    la, lb = -float(np.log(n)), -float(np.log(m))
    c = cost / reg
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    it, err = 0, float("inf")
    while it < max_iter:
        f = la - torch.logsumexp(g[None, :] - c, dim=1)
        g = lb - torch.logsumexp(f[:, None] - c, dim=0)
        it += 1
        if it % check_every == 0 or it == max_iter:
            rows = torch.logsumexp(f[:, None] + g[None, :] - c, dim=1).exp()
            err = float((rows - 1.0 / n).abs().sum())
            if err < tol:
                break
    del c
    plan = torch.exp(cost.div_(-reg).add_(f[:, None]).add_(g[None, :]), out=cost)
    return plan, SinkhornInfo(it, err, "log")


def discretise(plan: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """TTAD Eq. 6 readings: (rows, cols) of the unit-weight pairs kept from the plan.

    ``or`` (Eq. 6 literally): pi_ij = 1 where j is row i's arg-max *or* i is column j's arg-max;
    every target patch keeps its strongest bank item. ``column``: only each bank item's
    strongest target patch (target patches that no bank item prefers, e.g. anomalous ones, get
    no pull: the property TTAD argues for and Fig. 5 counts). ``mutual``: only pairs that are
    each other's arg-max.
    """
    n, m = plan.shape
    row_best = plan.argmax(1)  # (N,) best bank item of each target patch
    col_best = plan.argmax(0)  # (M,) best target patch of each bank item
    cols_all = torch.arange(m, device=plan.device)
    if mode == "column":
        return col_best, cols_all
    if mode == "mutual":
        ok = row_best[col_best] == cols_all
        return col_best[ok], cols_all[ok]
    if mode != "or":
        raise ValueError(f"discretise mode {mode!r}: use or, column or mutual")
    rows = torch.cat([torch.arange(n, device=plan.device), col_best])
    cols = torch.cat([row_best, cols_all])
    key = torch.unique(rows * m + cols)  # a pair that is both arg-maxes counts once
    return key // m, key % m


def hungarian_pairs(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact linear assignment (scipy): min(N, M) one-to-one (target, bank) pairs."""
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(cost.detach().cpu().numpy())
    dev = cost.device
    return torch.as_tensor(r, device=dev), torch.as_tensor(c, device=dev)


COSTS = ("euclidean", "sqeuclidean")
REDUCTIONS = ("sum", "mean")


def _pair_cost(diff: torch.Tensor, cost: str) -> torch.Tensor:
    d2 = (diff * diff).sum(-1)
    return d2 if cost == "sqeuclidean" else torch.sqrt(d2 + 1e-12)


def pair_loss(z: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
              cost: str = "euclidean", reduction: str = "sum") -> torch.Tensor:
    """sum_k c(z_rows[k], bank_cols[k]) over unit-weight pairs (``mean``: divided by their
    number); gradient through ``z`` only."""
    # index_select, not z[rows]: the backward of advanced indexing with repeated rows
    # accumulates in a thread-dependent order on the CPU (not bitwise reproducible)
    c = _pair_cost(torch.index_select(z, 0, rows) - torch.index_select(bank, 0, cols), cost)
    return c.sum() if reduction == "sum" else c.mean()


def plan_loss(z: torch.Tensor, bank: torch.Tensor, plan: torch.Tensor, cost: str = "euclidean",
              reduction: str = "sum", chunk: int = 2048) -> torch.Tensor:
    """sum_ij pi_ij c(z_i, m_j) for a dense plan, without an (N, M) autograd graph.

    The value and its gradient g_i = sum_j w_ij (z_i - m_j) (w = pi / ||z_i - m_j|| for the
    Euclidean cost, 2 pi for the squared one) are accumulated in row chunks without gradient;
    the returned tensor is value + <z - z.detach(), g>, i.e. the same value and the same
    gradient w.r.t. ``z`` (the plan is a constant: envelope-theorem gradient).
    """
    zd = z.detach()
    grad = torch.empty_like(zd)
    value = zd.new_zeros((), dtype=torch.float64)
    with torch.no_grad():
        bank_sq = (bank * bank).sum(1)
        plan = plan.to(zd.dtype)
        for lo in range(0, len(zd), chunk):
            zc, pc = zd[lo:lo + chunk], plan[lo:lo + chunk]
            d2 = ((zc * zc).sum(1, keepdim=True) - 2.0 * zc @ bank.T + bank_sq[None, :]).clamp_min_(0.0)
            if cost == "sqeuclidean":
                value += (pc * d2).sum().double()
                w = 2.0 * pc
            else:
                d = d2.sqrt_()
                value += (pc * d).sum().double()
                w = pc / d.clamp_min_(1e-6)
            grad[lo:lo + chunk] = zc * w.sum(1, keepdim=True) - w @ bank
        total = plan.sum()
    loss = value.to(zd.dtype) + ((z - zd) * grad).sum()
    return loss if reduction == "sum" else loss / total


@dataclass
class Transport:
    """What one OT step produced, beyond the loss: for diagnostics and the Fig. 5 count."""

    col_best: torch.Tensor  # (M,) the target patch each bank item is assigned to (most strongly); -1 none
    solver: str  # scaling | log | hungarian
    pairs: int  # pairs with weight in the loss
    iters: int = 0  # Sinkhorn iterations used
    error: float = 0.0  # final L1 marginal error


class TransportLoss:
    """TTAD's alignment loss between target patches ``z`` (N, D) and the memory bank (M, D).

    The plan comes from the cost divided by ``scale`` (so ``reg`` is unit-free), without
    gradient: Sinkhorn (``sinkhorn_plan``, torch, on the features' device, stopped on the
    marginal error) for ``continuous``/``or``/``column``/``mutual``, exact linear assignment
    (scipy, CPU) for ``hungarian``. The loss is sum_ij pi_ij C_ij on the raw cost (TTAD Eqs. 4-6)
    with pi = the plan itself (``continuous``, total mass 1) or unit weights on the discretised
    pairs; ``reduction="mean"`` divides by sum(pi). One (N, M) buffer is kept and reused by
    every call (the cost, then the kernel, then the plan, all in place).
    """

    def __init__(self, bank: torch.Tensor, assignment: str = "or", reg: float = 0.1, max_iter: int = 100,
                 tol: float = 1e-3, scale: float = 1.0, cost: str = "euclidean", reduction: str = "sum") -> None:
        if assignment not in ASSIGNMENTS:
            raise ValueError(f"assignment {assignment!r}: use one of {', '.join(ASSIGNMENTS)}")
        if cost not in COSTS or reduction not in REDUCTIONS:
            raise ValueError(f"cost {cost!r} / reduction {reduction!r}: use {COSTS} / {REDUCTIONS}")
        self.bank, self.assignment, self.reg, self.max_iter, self.tol = bank, assignment, reg, max_iter, tol
        self.scale, self.cost, self.reduction = scale, cost, reduction
        self._buf: torch.Tensor | None = None

    @torch.no_grad()
    def _cost(self, z: torch.Tensor) -> torch.Tensor:
        c = sq_cost(z, self.bank, 1.0, out=self._buf)
        if self._buf is None or c.data_ptr() != self._buf.data_ptr():
            self._buf = c  # (re)allocated: the largest batch so far
        if self.cost == "euclidean":
            c.sqrt_()
        return c.div_(self.scale)

    def __call__(self, z: torch.Tensor) -> tuple[torch.Tensor, Transport]:
        bank, cost, reduction = self.bank, self.cost, self.reduction
        c = self._cost(z)
        if self.assignment == "hungarian":
            rows, cols = hungarian_pairs(c)
            col_best = torch.full((bank.shape[0],), -1, dtype=torch.long, device=z.device)
            col_best[cols] = rows
            return pair_loss(z, bank, rows, cols, cost, reduction), Transport(col_best, "hungarian", len(rows))
        plan, info = sinkhorn_plan(c, self.reg, self.max_iter, self.tol)
        col_best = plan.argmax(0)
        if self.assignment == "continuous":
            loss = plan_loss(z, bank, plan, cost, reduction)
            pairs = int((plan > 0).sum())
        else:
            rows, cols = discretise(plan, self.assignment)
            loss = pair_loss(z, bank, rows, cols, cost, reduction)
            pairs = len(rows)
            if self.assignment == "mutual":
                keep = torch.full_like(col_best, -1)
                keep[cols] = rows
                col_best = keep
        return loss, Transport(col_best, info.solver, pairs, info.iters, info.error)


def transport_loss(z: torch.Tensor, bank: torch.Tensor, assignment: str = "or", reg: float = 0.1,
                   iters: int = 100, scale: float = 1.0, cost: str = "euclidean", reduction: str = "sum",
                   tol: float = 1e-3) -> tuple[torch.Tensor, Transport]:
    """One call of ``TransportLoss`` (a fresh buffer): the loss and what the step produced."""
    return TransportLoss(bank, assignment, reg, iters, tol, scale, cost, reduction)(z)


def column_counts(col_best: torch.Tensor, n_rows: int) -> np.ndarray:
    """How many bank items chose each target row as their (strongest) partner; -1 = none."""
    c = col_best[col_best >= 0]
    return torch.bincount(c, minlength=n_rows).cpu().numpy()
