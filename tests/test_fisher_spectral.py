"""Spectral density (exact and SLQ), top eigenpairs and trace estimators against exact eigenvalues (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actionlab._checks import ValueCheckError
from actionlab.fisher import operators as O
from actionlab.fisher import spectral as S
from actionlab.fisher.empirical import dense_fisher


@pytest.fixture(scope="module")
def net_and_data():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 10), nn.Tanh(), nn.Linear(10, 3)).double()  # P = 123
    x = torch.randn(48, 8, dtype=torch.float64)  # CT = 144 > P: F has full rank
    F = dense_fisher(m, x)
    return m, x, F, torch.linalg.eigvalsh(F).numpy()


def test_exact_density_of_dual_is_that_of_F():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 2)).double()  # P = 98 > CT = 20
    x = torch.randn(10, 5, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(dense_fisher(m, x)).numpy()
    d = S.spectral_density(O.DualFisherOperator(m, x))
    assert d.method == "exact" and d.dim == 98
    np.testing.assert_allclose(d.weights.sum(1), 1.0)
    assert d.cdf(1e-9) == pytest.approx(78 / 98)  # the P − CT zeros of F
    assert S.ks_distance(d, ev) > 0.3  # round-off: F's 78 zeros come out at ±1e-16
    assert S.ks_distance(d, ev, atol=1e-12) <= 1e-12  # identical up to round-off
    exact_moments = [np.mean(ev**k) for k in (1, 2, 3)]
    np.testing.assert_allclose(d.moments[:3], exact_moments, rtol=1e-10)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-3)
    full = S.spectral_density(dense_fisher(m, x))  # the same from the P × P matrix
    np.testing.assert_allclose(full.moments, d.moments, rtol=1e-10)


def test_gauss_quadrature_is_exact_for_low_degree(net_and_data):
    _, _, F, _ = net_and_data
    m = 6
    v = torch.randint(0, 2, (F.shape[0], 1), generator=torch.Generator().manual_seed(3)).double() * 2 - 1
    alpha, beta = S.lanczos_tridiagonal(F, v, m)
    Tm = torch.diag(alpha[0]) + torch.diag(beta[0], 1) + torch.diag(beta[0], -1)
    th, U = torch.linalg.eigh(Tm)
    u = v[:, 0] / v.norm()
    for k in range(0, 2 * m):  # ∑ τ_j² θ_jᵏ = uᵀFᵏu for k ≤ 2m − 1
        ref = float(u @ torch.linalg.matrix_power(F, k) @ u)
        assert float((U[0] ** 2 * th**k).sum()) == pytest.approx(ref, rel=1e-9)


def test_lanczos_groups_and_reorthogonalisation(net_and_data):
    """Columns run in memory-bounded groups give the same tridiagonals; with full re-orthogonalisation
    n steps reproduce every eigenvalue of F (float64), without it the low-degree quadrature stays exact."""
    _, _, F, ev = net_and_data
    n = F.shape[0]
    V = torch.randint(0, 2, (n, 3), generator=torch.Generator().manual_seed(5)).double() * 2 - 1
    a_all, b_all = S.lanczos_tridiagonal(F, V, 12)
    a_one, b_one = S.lanczos_tridiagonal(F, V, 12, max_basis_bytes=1)  # one column at a time
    torch.testing.assert_close(a_one, a_all, atol=1e-12, rtol=0)
    torch.testing.assert_close(b_one, b_all, atol=1e-12, rtol=0)
    for j in range(3):  # each column alone, as its own start vector
        a_j, b_j = S.lanczos_tridiagonal(F, V[:, j:j + 1], 12)
        torch.testing.assert_close(a_j[0], a_all[j], atol=1e-12, rtol=0)
        torch.testing.assert_close(b_j[0], b_all[j], atol=1e-12, rtol=0)
    alpha, beta = S.lanczos_tridiagonal(F, V[:, :1], n)  # n steps: T_n is similar to F
    Tn = torch.diag(alpha[0]) + torch.diag(beta[0], 1) + torch.diag(beta[0], -1)
    np.testing.assert_allclose(torch.linalg.eigvalsh(Tn).numpy(), ev, atol=1e-9 * ev.max(), rtol=0)
    m = 6
    a_f, b_f = S.lanczos_tridiagonal(F, V[:, :1], m, reorthogonalize=False)
    Tm = torch.diag(a_f[0]) + torch.diag(b_f[0], 1) + torch.diag(b_f[0], -1)
    th, U = torch.linalg.eigh(Tm)
    u = V[:, 0] / V[:, 0].norm()
    for k in range(0, 2 * m):  # ∑ τ_j² θ_jᵏ = uᵀFᵏu for k ≤ 2m − 1, here too
        ref = float(u @ torch.linalg.matrix_power(F, k) @ u)
        assert float((U[0] ** 2 * th**k).sum()) == pytest.approx(ref, rel=1e-8)


def test_slq_without_reorthogonalisation_matrix_free(net_and_data):
    m, x, F, ev = net_and_data
    d = S.spectral_density(O.FisherOperator(m, x), probes=8, steps=10, seed=2, reorthogonalize=False)
    full = S.spectral_density(O.FisherOperator(m, x), probes=8, steps=10, seed=2)
    for k in (1, 2):  # the same probes: within the probe error of the exact moments
        assert abs(d.moments[k - 1] - np.mean(ev**k)) <= 4 * d.moments_se[k - 1]
    np.testing.assert_allclose(d.moments, full.moments, rtol=1e-6)  # 10 steps: orthogonality not yet lost


def test_slq_density_against_exact_eigenvalues(net_and_data):
    _, _, F, ev = net_and_data
    probes, n = 40, F.shape[0]
    d = S.spectral_density(O.DenseOperator(F), method="slq", probes=probes, steps=60, seed=0)
    assert d.method == "slq" and d.nodes.shape == (probes, 60)
    np.testing.assert_allclose(d.weights.sum(1), 1.0, atol=1e-12)
    for k in (1, 2):  # Gauss quadrature is exact in degree ≤ 119: only the probe error remains
        assert abs(d.moments[k - 1] - np.mean(ev**k)) <= 4 * d.moments_se[k - 1]
    # CDF: |F_GQ − F_μv| ≤ max weight (Chebyshev–Markov–Stieltjes) plus the probe noise of μ_v,
    # Var F_μv(x) ≤ 2/n for a normalised Rademacher probe
    ks = S.ks_distance(d, ev)
    bound = d.max_weight() + 4 * np.sqrt(2 / (n * probes))
    assert ks <= bound
    assert ks < 0.06  # measured 0.034 (bound 0.15); with 25 steps 0.22 (bound 0.5): the clustered bulk needs steps


def test_slq_matrix_free_moments(net_and_data):
    m, x, F, ev = net_and_data
    d = S.spectral_density(O.FisherOperator(m, x), probes=8, steps=10, seed=2)  # not dense-cheap: SLQ
    assert d.method == "slq" and d.dim == F.shape[0]
    for k in (1, 2):
        assert abs(d.moments[k - 1] - np.mean(ev**k)) <= 4 * d.moments_se[k - 1]
    assert np.all(d.density_std >= 0) and d.density_std.max() > 0


def test_top_eigenpairs(net_and_data):
    m, x, F, ev = net_and_data
    for op in (O.FisherOperator(m, x), O.DualFisherOperator(m, x)):
        method = "lanczos" if isinstance(op, O.FisherOperator) else "auto"
        r = S.top_eigenpairs(op, 3, method=method)
        np.testing.assert_allclose(r.values, ev[::-1][:3], rtol=1e-9)
        A = op.dense()
        torch.testing.assert_close(A @ r.vectors, r.vectors * torch.as_tensor(r.values), atol=1e-8, rtol=0)
    with pytest.raises(ValueCheckError, match="k must lie"):
        S.top_eigenpairs(F, 0)


def test_trace_estimators_within_their_errors(net_and_data):
    m, x, F, ev = net_and_data
    op = O.FisherOperator(m, x)
    exact = float(ev.sum())
    h = S.hutchinson_trace(op, 60, seed=0)
    hp = S.hutchpp_trace(op, 60, seed=0)
    assert h.num_matvecs == 60 and hp.num_matvecs == 60 and h.stderr > 0 and hp.stderr > 0
    for est in (h, hp):
        assert abs(est.estimate - exact) <= 3 * est.stderr
    assert hp.stderr < h.stderr  # the deflated residual of a decaying spectrum has less variance
    # the standard error is the spread of the estimator: check it over independent seeds (dense, cheap)
    reps = np.array([S.hutchinson_trace(F, 20, seed=s).estimate for s in range(200)])
    se = np.mean([S.hutchinson_trace(F, 20, seed=s).stderr for s in range(20)])
    assert reps.std(ddof=1) == pytest.approx(se, rel=0.3)
    assert abs(reps.mean() - exact) <= 4 * reps.std(ddof=1) / np.sqrt(200)


def test_errors():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()  # P = 17 < CT = 40
    d = O.DualFisherOperator(m, torch.randn(20, 2, dtype=torch.float64))
    with pytest.raises(ValueCheckError, match="cannot drop"):
        S.spectral_density(d, method="slq")
    ex = S.spectral_density(d)  # exact: F's eigenvalues are the 17 largest of F*
    assert ex.nodes.shape == (1, 17)
    with pytest.raises(ValueCheckError, match="probes"):
        S.spectral_density(d, probes=0)
    with pytest.raises(ValueCheckError, match="Hutch"):
        S.hutchpp_trace(d, 3)
