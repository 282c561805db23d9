"""The alignment losses of test-time adaptation, pinned on tiny hand-checkable inputs."""
from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from bench.methods import alignment as A


@pytest.fixture(autouse=True)
def _float64():
    """Exact closed forms: float64 by default inside these tests only."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- moments (TTT++) ---------------------------------------------------------------------------
def test_covariance_matches_numpy():
    x = _gaussian(50, 4)
    assert torch.allclose(A.covariance(x), torch.from_numpy(np.cov(x.numpy(), rowvar=False)))


def test_moment_loss_is_zero_for_identical_distributions():
    z = _gaussian(200, 6)
    loss = A.moment_loss(z, z.mean(0), A.covariance(z), coral_weight=3.0, mmd_weight=5.0)
    assert abs(float(loss)) < 1e-12


def test_moment_loss_of_a_shifted_sample_is_the_mmd_closed_form():
    z = _gaussian(200, 6)
    delta = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 3.0])
    # the shifted sample has exactly the same covariance: CORAL = 0, MMD = mean(delta^2)
    loss = A.moment_loss(z + delta, z.mean(0), A.covariance(z), coral_weight=7.0, mmd_weight=2.0)
    assert float(loss) == pytest.approx(2.0 * float((delta ** 2).mean()), rel=1e-10)


def test_coral_closed_form_and_ttt_weights():
    d = 3
    cov_s, cov_t = torch.eye(d), 2.0 * torch.eye(d)
    assert float(A.coral(cov_s, cov_t)) == pytest.approx(d / (4 * d * d))
    assert A.ttt_weights(0.05, coral_src=0.5, mmd_src=0.2) == pytest.approx((0.1, 0.125))


# -- Gaussian KL (TTAC) -------------------------------------------------------------------------
def test_sym_kl_closed_forms():
    d = 4
    mu = torch.tensor([0.5, -1.0, 2.0, 0.0])
    a = _gaussian(d, d, 1)
    cov = a @ a.T + d * torch.eye(d)
    assert abs(float(A.sym_kl_full(mu, cov, mu, cov))) < 1e-10
    delta = torch.tensor([1.0, 0.0, -1.0, 2.0])
    expected = float(delta @ torch.linalg.solve(cov, delta))  # equal covariances: delta' S^-1 delta
    assert float(A.sym_kl_full(mu, cov, mu + delta, cov)) == pytest.approx(expected, rel=1e-10)
    s = 3.0  # N(0, I) vs N(0, sI): d/2 (s + 1/s) - d
    assert float(A.sym_kl_full(torch.zeros(d), torch.eye(d), torch.zeros(d), s * torch.eye(d))) == pytest.approx(
        d / 2 * (s + 1 / s) - d)


def test_sym_kl_diag_agrees_with_full_on_diagonal_covariances():
    mu0, mu1 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    v0, v1 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.5])
    full = A.sym_kl_full(mu0, torch.diag(v0), mu1, torch.diag(v1))
    assert float(A.sym_kl_diag(mu0, v0, mu1, v1)) == pytest.approx(float(full), rel=1e-10)
    batched = A.sym_kl_diag(torch.stack([mu0, mu0]), torch.stack([v0, v0]), torch.stack([mu1, mu0]),
                            torch.stack([v1, v0]))
    assert batched.shape == (2,) and float(batched[1]) == pytest.approx(0.0, abs=1e-12)


def test_ema_moments_first_batch_and_running_average():
    x1, x2 = _gaussian(30, 3, 2), _gaussian(20, 3, 3) + 1.0
    mu, cov = A.ema_moments(torch.zeros(3), torch.zeros(3, 3), x1, A.ema_alpha(30, cap=1e9))
    assert torch.allclose(mu, x1.mean(0))
    assert torch.allclose(cov, A.covariance(x1) * 29 / 30)  # biased batch covariance
    mu2, cov2 = A.ema_moments(mu, cov, x2, A.ema_alpha(50, cap=1e9))
    both = torch.cat([x1, x2])
    assert torch.allclose(mu2, both.mean(0))
    assert torch.allclose(cov2, A.covariance(both) * 49 / 50)
    _, var = A.ema_moments(torch.zeros(3), torch.zeros(3), x1, 1 / 30, diagonal=True)
    assert torch.allclose(var, x1.var(0, unbiased=False))
    assert A.ema_alpha(10, cap=4) == 0.25 and A.ema_alpha(3, cap=4) == pytest.approx(1 / 3)


def test_gaussian_kl_loss_zero_on_source_shifted_positive_and_filtered():
    z = _gaussian(400, 3, 4)
    assign = (z[:, 0] > 0).long()
    comp_mu = torch.stack([z[assign == k].mean(0) for k in (0, 1)])
    comp_var = torch.stack([z[assign == k].var(0, unbiased=False) for k in (0, 1)])
    src = dict(src_mu=z.mean(0), src_cov=A.covariance(z) * 399 / 400, eps=1e-3)
    loss, info = A.gaussian_kl_loss(z, **src, comp_mu=comp_mu, comp_var=comp_var, assign=assign)
    assert abs(float(loss)) < 1e-9 and info["components_active"] == 2
    shifted, _ = A.gaussian_kl_loss(z + 0.5, **src, comp_mu=comp_mu, comp_var=comp_var, assign=assign)
    assert float(shifted) > 0.1
    # filtered-out patches never reach a component
    keep = assign == 0
    _, info = A.gaussian_kl_loss(z, **src, comp_mu=comp_mu, comp_var=comp_var, assign=assign, keep=keep)
    assert info["components_active"] == 1 and info["kept_fraction"] == pytest.approx(float(keep.double().mean()))


def test_gaussian_kl_component_gate_and_division_by_the_component_count():
    z = _gaussian(400, 3, 4)
    assign = (z[:, 0] > 0).long()  # two components present
    comp_mu = torch.zeros(4, 3)  # four components in the model: the sum is divided by 4
    comp_var = torch.ones(4, 3)
    src = dict(src_mu=z.mean(0), src_cov=A.covariance(z) * 399 / 400, eps=1e-3)
    terms = [float(A.sym_kl_diag(comp_mu[k], comp_var[k] + 1e-3, z[assign == k].mean(0),
                                 z[assign == k].var(0, unbiased=False) + 1e-3)) for k in (0, 1)]
    loss, info = A.gaussian_kl_loss(z, **src, comp_mu=comp_mu, comp_var=comp_var, assign=assign)
    assert info["kl_components"] == pytest.approx(sum(terms) / 4, rel=1e-6)
    n0 = int((assign == 0).sum())  # gate between the two components' counts: only the larger one enters
    big = max((0, 1), key=lambda k: int((assign == k).sum()))
    gate = (min(n0, 400 - n0) + max(n0, 400 - n0)) / 2
    _, info = A.gaussian_kl_loss(z, **src, comp_mu=comp_mu, comp_var=comp_var, assign=assign, comp_gate=gate)
    assert info["components_active"] == 1 and info["kl_components"] == pytest.approx(terms[big] / 4, rel=1e-6)
    _, info = A.gaussian_kl_loss(z, **src, comp_mu=comp_mu, comp_var=comp_var, assign=assign, comp_gate=401)
    assert info["components_active"] == 0 and "kl_components" not in info


def test_gaussian_kl_running_state_is_detached_and_accumulates():
    z = _gaussian(100, 2, 5).requires_grad_(True)
    state = A.RunningGaussian.empty(2, dtype=torch.float64)
    loss, _ = A.gaussian_kl_loss(z, torch.zeros(2), torch.eye(2), 0.1, state=state)
    loss.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert not state.mu.requires_grad and float(state.count) == 100
    A.gaussian_kl_loss(z.detach() + 1, torch.zeros(2), torch.eye(2), 0.1, state=state)
    assert float(state.count) == 200
    assert torch.allclose(state.mu, z.detach().mean(0) + 0.5)


# -- optimal transport (TTAD) --------------------------------------------------------------------
def test_discrete_assignment_on_a_known_plan():
    plan = torch.tensor([[0.5, 0.1, 0.0],
                         [0.4, 0.2, 0.1],
                         [0.0, 0.1, 0.3],
                         [0.2, 0.0, 0.05]])  # row 3 is nobody's column favourite
    rows, cols = A.discretise(plan, "or")
    got = set(zip(rows.tolist(), cols.tolist()))
    # rows' arg-max: (0,0) (1,0) (2,2) (3,0); columns' arg-max: (0,0) (1,1) (2,2)
    assert got == {(0, 0), (1, 0), (2, 2), (3, 0), (1, 1)}
    rows, cols = A.discretise(plan, "column")
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0), (1, 1), (2, 2)]  # row 3 gets no pull
    rows, cols = A.discretise(plan, "mutual")
    assert set(zip(rows.tolist(), cols.tolist())) == {(0, 0), (2, 2)}
    with pytest.raises(ValueError):
        A.discretise(plan, "continuous")


def test_sinkhorn_plan_marginals_and_shift_invariance():
    x, y = _gaussian(30, 2, 6).float(), _gaussian(20, 2, 7).float() + 0.5
    cost = A.sq_cost(x, y)
    reference = ot.sinkhorn(np.ones(30) / 30, np.ones(20) / 20, cost.double().numpy(), 0.5, numItermax=5000,
                            stopThr=1e-12)
    plan, info = A.sinkhorn_plan(cost.clone(), 0.5, max_iter=5000, tol=1e-7)
    assert info.solver == "scaling" and info.error < 1e-7 and 0 < info.iters < 5000
    assert plan.dtype == torch.float32
    assert np.allclose(plan.sum(1).numpy(), 1 / 30, atol=1e-6)
    assert np.allclose(plan.sum(0).numpy(), 1 / 20, atol=1e-6)
    assert np.allclose(plan.double().numpy(), reference, atol=1e-5)  # row/column shifts leave it unchanged


def test_sinkhorn_survives_costs_that_underflow_the_plain_kernel():
    x = _gaussian(10, 2, 8).float()
    y = x.clone()
    y[:, 0] += 1e4  # every entry of exp(-C/reg) is 0 in fp32 without the shifts
    plan, info = A.sinkhorn_plan(A.sq_cost(x, y), reg=0.01, max_iter=200)
    assert torch.isfinite(plan).all()
    assert np.allclose(plan.sum(0).numpy(), 0.1, rtol=1e-3)  # the columns are exact
    assert float(plan.sum()) == pytest.approx(1.0, rel=1e-3)
    assert np.isfinite(info.error) and info.iters > 0


def test_sinkhorn_stops_on_the_marginal_error_and_log_domain_agrees():
    x, y = _gaussian(300, 8, 20).float(), _gaussian(200, 8, 21).float() + 0.3
    cost = A.sq_cost(x, y, scale=float(A.sq_cost(x, y).median()))
    loose, li = A.sinkhorn_plan(cost.clone(), 0.1, max_iter=1000, tol=1e-2)
    tight, ti = A.sinkhorn_plan(cost.clone(), 0.1, max_iter=1000, tol=1e-6)
    assert li.iters < ti.iters < 1000 and li.error < 1e-2 and ti.error < 1e-6
    assert abs(float(loose.sum(1).sub(1 / 300).abs().sum()) - li.error) < 1e-4  # the error it reports
    logp, gi = A.sinkhorn_log_plan(cost.clone(), 0.1, max_iter=1000, tol=1e-6)
    assert gi.solver == "log" and torch.allclose(logp, tight, atol=1e-7)
    capped, ci = A.sinkhorn_plan(cost.clone(), 0.1, max_iter=3, tol=1e-9)
    assert ci.iters == 3 and ci.error > 1e-9  # the cap holds and the error is still reported


def test_transport_loss_zero_on_identical_sets_and_shift_closed_form():
    bank = (torch.arange(8, dtype=torch.float32)[:, None] * torch.tensor([[3.0, 0.0]]))  # spacing 3
    z = bank[torch.randperm(8, generator=torch.Generator().manual_seed(0))].clone().requires_grad_(True)
    for assignment in ("or", "column", "mutual", "hungarian"):
        loss, tr = A.transport_loss(z, bank, assignment, reg=0.01, iters=500, tol=1e-6)
        assert loss.item() == pytest.approx(0.0, abs=1e-3), assignment
        assert (z.detach()[tr.col_best] == bank).all(), assignment  # every bank item finds its twin
    delta = torch.tensor([0.0, 0.4])  # small against the spacing: assignments stay the identity
    for cost, expected in (("euclidean", 0.4), ("sqeuclidean", 0.16)):
        for assignment in ("or", "column", "hungarian", "continuous"):
            loss, _ = A.transport_loss(z.detach() + delta, bank, assignment, reg=0.01, iters=500, cost=cost,
                                       reduction="mean", tol=1e-6)
            assert float(loss) == pytest.approx(expected, rel=1e-3), (cost, assignment)
    # literal sum (TTAD Eq. 6): 8 pairs of cost 0.4
    loss, _ = A.transport_loss(z.detach() + delta, bank, "or", reg=0.01, iters=500, reduction="sum", tol=1e-6)
    assert float(loss) == pytest.approx(8 * 0.4, rel=1e-3)


def test_transport_loss_reuses_one_buffer_across_steps():
    bank = _gaussian(50, 4, 22).float()
    ot_loss = A.TransportLoss(bank, "or", reg=0.1, max_iter=20)
    ot_loss(_gaussian(40, 4, 23).float())
    first = ot_loss._buf.data_ptr()
    ot_loss(_gaussian(30, 4, 24).float())  # a smaller (last) batch fits in the same buffer
    assert ot_loss._buf.data_ptr() == first
    ot_loss(_gaussian(60, 4, 25).float())  # a larger one grows it once
    assert ot_loss._buf.numel() == 60 * 50


def test_hungarian_recovers_a_permutation():
    bank = _gaussian(12, 5, 9).float()
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    rows, cols = A.hungarian_pairs(A.sq_cost(bank[perm], bank))
    assert torch.equal(cols[torch.argsort(rows)], perm)


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_plan_loss_value_and_gradient_match_the_dense_formula(cost):
    z = _gaussian(7, 3, 10).float().requires_grad_(True)
    bank = _gaussian(5, 3, 11).float()
    plan = torch.rand(7, 5, generator=torch.Generator().manual_seed(2))
    plan /= plan.sum()
    d2 = ((z[:, None, :] - bank[None]) ** 2).sum(-1)
    dense = (plan * (d2 if cost == "sqeuclidean" else d2.sqrt())).sum()
    (g_dense,) = torch.autograd.grad(dense, z)
    loss = A.plan_loss(z, bank, plan, cost, chunk=3)  # chunked rows
    (g,) = torch.autograd.grad(loss, z)
    assert loss.item() == pytest.approx(dense.item(), rel=1e-5)
    assert torch.allclose(g, g_dense, atol=1e-5)


def test_plan_is_computed_without_gradient_and_loss_has_the_envelope_gradient():
    z = _gaussian(6, 3, 12).float().requires_grad_(True)
    bank = _gaussian(4, 3, 13).float()
    assert A.sq_cost(z, bank).grad_fn is None  # the cost (hence the plan) never enters autograd
    loss, _ = A.transport_loss(z, bank, "or", reg=0.1, iters=50, reduction="sum")
    (g,) = torch.autograd.grad(loss, z)
    # envelope gradient: the pairs are constants, so d/dz_i = sum over i's pairs of (z_i - m_j)/||z_i - m_j||
    with torch.no_grad():
        c = A.sq_cost(z, bank).sqrt()
        plan, _ = A.sinkhorn_plan(c / c.median(), 0.1, 50)
        rows, cols = A.discretise(plan, "or")
        expected = torch.zeros_like(z)
        diff = z[rows] - bank[cols]
        expected.index_add_(0, rows, diff / diff.norm(dim=1, keepdim=True))
    assert torch.allclose(g, expected, atol=1e-5)


def test_column_counts():
    assert A.column_counts(torch.tensor([2, 2, -1, 0]), 4).tolist() == [1, 0, 2, 0]
