"""Spectral density (exact and SLQ), top eigenpairs and trace estimators against exact eigenvalues (float64)."""

from __future__ import annotations

import copy

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


def _quadrature_moments(alpha, beta, kmax):
    """∑_j τ_j² θ_jᵏ (k = 0..kmax) of each tridiagonal (float64 eigensolve): p × (kmax + 1)."""
    Tm = torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    th, U = torch.linalg.eigh(Tm.double())
    return torch.stack([(U[:, 0] ** 2 * th**k).sum(1) for k in range(kmax + 1)], 1)


def _rule_moments(nodes, weights, kmax):
    """∑_j w_j θ_jᵏ (k = 0..kmax) of each quadrature rule of a SpectralDensity: p × (kmax + 1)."""
    nodes, weights = torch.as_tensor(nodes, dtype=torch.float64), torch.as_tensor(weights, dtype=torch.float64)
    return torch.stack([(weights * nodes**k).sum(-1) for k in range(kmax + 1)], -1)


def _exact_moments(F, V, kmax):
    """The float64 reference uᵀFᵏu (k = 0..kmax) for each normalised column u of V: p × (kmax + 1)."""
    U = V / V.norm(dim=0)
    return torch.stack([torch.einsum("ni,nm,mi->i", U, torch.linalg.matrix_power(F, k), U)
                        for k in range(kmax + 1)], 1)


def _assert_moments(got, ref, rel):
    """Each moment of each rule within ``rel`` of its reference (pytest.approx per element)."""
    for g, r in zip(got.tolist(), ref.tolist()):
        assert g == pytest.approx(r, rel=rel)


def test_gauss_quadrature_is_exact_for_low_degree(net_and_data):
    _, _, F, _ = net_and_data
    m = 6
    v = torch.randint(0, 2, (F.shape[0], 1), generator=torch.Generator().manual_seed(3)).double() * 2 - 1
    alpha, beta = S.lanczos_tridiagonal(F, v, m)
    # ∑ τ_j² θ_jᵏ = uᵀFᵏu for k ≤ 2m − 1
    _assert_moments(_quadrature_moments(alpha, beta, 2 * m - 1), _exact_moments(F, v, 2 * m - 1), rel=1e-9)


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
    # ∑ τ_j² θ_jᵏ = uᵀFᵏu for k ≤ 2m − 1, here too
    _assert_moments(_quadrature_moments(a_f, b_f, 2 * m - 1), _exact_moments(F, V[:, :1], 2 * m - 1), rel=1e-8)


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


def _probes(n: int, p: int, seed: int) -> torch.Tensor:
    """The SLQ probes of ``seed`` (n × p): probe i is the i-th n-vector of the seed's Rademacher stream."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (p, n), generator=g, dtype=torch.float32) * 2 - 1).double().T


@pytest.mark.parametrize("reorth", [True, False])
def test_probe_block_one_probe_per_call_reproduces_exact_moments(net_and_data, reorth):
    """probe_block=1 (one probe per operator call, the large-P path): the same probes and rules as one block,
    and each rule integrates xᵏ exactly, ∑ τ_j² θ_jᵏ = uᵀFᵏu for k ≤ 2m − 1 (float64 reference, rel 1e-8)."""
    _, _, F, ev = net_and_data
    n, p, m, seed = F.shape[0], 3, 6, 4
    one = S.spectral_density(O.DenseOperator(F), method="slq", probes=p, steps=m, seed=seed, probe_block=1,
                             reorthogonalize=reorth)
    blk = S.spectral_density(O.DenseOperator(F), method="slq", probes=p, steps=m, seed=seed, probe_block=p,
                             reorthogonalize=reorth)
    np.testing.assert_allclose(one.nodes, blk.nodes, rtol=0, atol=1e-12 * ev.max())
    np.testing.assert_allclose(one.weights, blk.weights, rtol=0, atol=1e-12)
    U = _probes(n, p, seed)
    _assert_moments(_rule_moments(one.nodes, one.weights, 2 * m - 1), _exact_moments(F, U, 2 * m - 1), rel=1e-8)
    U = U / U.norm(dim=0)
    a1, b1 = S.lanczos_tridiagonal(F, U, n, probe_block=1)  # n steps: every T_n is similar to F
    assert a1.dtype == torch.float64
    for i in range(p):
        Tn = torch.diag(a1[i]) + torch.diag(b1[i], 1) + torch.diag(b1[i], -1)
        np.testing.assert_allclose(torch.linalg.eigvalsh(Tn).numpy(), ev, atol=1e-9 * ev.max(), rtol=0)


def test_float32_recurrence_reproduces_exact_moments(net_and_data):
    """recurrence_dtype="operator" on a float32 operator: α, β come back in float64 and the float64-eigensolved
    rules reproduce uᵀFᵏu (k ≤ 2m − 1) of the float64 F to rel 1e-4, and with full re-orthogonalisation n steps
    give every eigenvalue of F to 1e-6 λ_max (measured 1.1e-7; F's smallest eigenvalue is 6.6e-7 λ_max)."""
    m_, x, F, ev = net_and_data
    n, p, m, seed = F.shape[0], 4, 6, 7
    F32 = O.DenseOperator(F.float())
    for reorth in (True, False):
        d = S.spectral_density(F32, method="slq", probes=p, steps=m, seed=seed, reorthogonalize=reorth,
                               probe_block=1, recurrence_dtype="operator")
        _assert_moments(_rule_moments(d.nodes, d.weights, 2 * m - 1), _exact_moments(F, _probes(n, p, seed), 2 * m - 1),
                        rel=1e-4)
    a, b = S.lanczos_tridiagonal(F32, _probes(n, 2, seed).float(), n)
    assert a.dtype == b.dtype == torch.float64
    for i in range(2):
        Tn = torch.diag(a[i]) + torch.diag(b[i], 1) + torch.diag(b[i], -1)
        np.testing.assert_allclose(torch.linalg.eigvalsh(Tn).numpy(), ev, atol=1e-6 * ev.max(), rtol=0)
    # matrix-free float32 Fisher, one probe per call, float32 recurrence: within the probe error of the exact
    # moments and equal to the float64 recurrence on the same probes to float32 round-off
    op32 = O.FisherOperator(copy.deepcopy(m_).float(), x.float())
    kw = dict(method="slq", probes=8, steps=10, seed=2, probe_block=1)
    d32 = S.spectral_density(op32, recurrence_dtype="operator", reorthogonalize=False, **kw)
    d64 = S.spectral_density(op32, reorthogonalize=False, **kw)
    for k in (1, 2):
        assert abs(d32.moments[k - 1] - np.mean(ev**k)) <= 4 * d32.moments_se[k - 1] + 1e-5 * np.mean(ev**k)
    np.testing.assert_allclose(d32.moments, d64.moments, rtol=1e-4)


def test_probe_block_auto_and_errors(net_and_data):
    _, _, F, _ = net_and_data
    # "auto": probes per call fit in 32 MiB in the operator's dtype; one at a time at P = 8 M (float32)
    assert S._group_size(8_000_000, 2, 20, 4, 4, False, 2**31, "auto") == 1
    assert S._group_size(2_000_000, 8, 20, 8, 4, False, 2**31, "auto") == 4
    assert S._group_size(123, 20, 40, 8, 8, True, 2**31, "auto") == 20
    assert S._group_size(123, 20, 40, 8, 8, True, 40 * 123 * 8 * 3, "auto") == 3  # the basis bound still applies
    for bad in (0, -1, "one", 1.5, True):
        with pytest.raises(ValueCheckError, match="probe_block"):
            S.spectral_density(F, method="slq", probes=2, steps=3, probe_block=bad)
    with pytest.raises(ValueCheckError, match="recurrence_dtype"):
        S.spectral_density(F, method="slq", probes=2, steps=3, recurrence_dtype=torch.int32)
    with pytest.raises(ValueCheckError, match="recurrence_dtype"):
        S.spectral_density(F, method="slq", probes=2, steps=3, recurrence_dtype="float32")
