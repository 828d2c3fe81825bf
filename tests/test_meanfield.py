"""Mean-field order parameters (004): quadrature against scipy.integrate and the appendix-B closed forms."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from actionlab import activations as A
from actionlab._checks import ValueCheckError
from actionlab.fisher import meanfield as mf


def _quad_1d(fn, q):
    return integrate.quad(lambda z: fn(math.sqrt(q) * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                          -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13, limit=400)[0]


def _quad_2d(fn, a, b):
    """E[fn(u1) fn(u2)] by nested scipy quad (independent of our rule)."""
    c = b / a
    r = math.sqrt(1 - c * c)

    def inner(z1):
        return integrate.quad(lambda z2: fn(math.sqrt(a) * (c * z1 + r * z2)) * math.exp(-z2 * z2 / 2),
                              -12, 12, epsabs=1e-13, epsrel=1e-12, limit=200)[0] / math.sqrt(2 * math.pi)

    return integrate.quad(lambda z1: fn(math.sqrt(a) * z1) * inner(z1) * math.exp(-z1 * z1 / 2), -12, 12,
                          epsabs=1e-13, epsrel=1e-12, limit=200)[0] / math.sqrt(2 * math.pi)


def _scalar(name, d=0):
    act = A.get(name)
    return lambda x: float(act(torch.tensor(x, dtype=torch.float64)) if d == 0 else
                           act.derivative(torch.tensor(x, dtype=torch.float64), 1))


@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid", "silu", "gelu", "softplus"])
@pytest.mark.parametrize("q", [0.3, 1.0, 3.64, 10.0])
def test_q_hat_smooth_against_scipy(name, q):
    phi = _scalar(name)
    ref = _quad_1d(lambda x: phi(x) ** 2, q)
    assert abs(mf.q_hat(name, q, closed_form=False) - ref) < 1e-10


@pytest.mark.parametrize("name", ["relu", "elu", "leaky_relu"])
def test_q_hat_kinked_against_scipy(name):
    phi = _scalar(name)
    for q in (0.5, 2.0):
        ref = integrate.quad(lambda z: phi(math.sqrt(q) * z) ** 2 * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                             -40, 40, points=[0.0], epsabs=1e-14, epsrel=1e-13, limit=400)[0]
        assert abs(mf.q_hat(name, q, closed_form=False) - ref) < 1e-10


@pytest.mark.parametrize("name,a,b", [("tanh", 1.0, 0.3), ("tanh", 3.64, 0.64), ("erf", 2.5, -0.7)])
def test_I_phi_smooth_against_nested_scipy(name, a, b):
    phi = _scalar(name)
    assert abs(mf.I_phi(name, a, b, closed_form=False) - _quad_2d(phi, a, b)) < 1e-10


def test_gauss_hermite_option_converges_for_small_q():
    g = mf.as_gauss_fn("tanh")
    sq = mf.GaussFn(lambda x: g.f(x) ** 2)
    ref = _quad_1d(lambda x: math.tanh(x) ** 2, 1.0)
    assert abs(mf.gauss_1d(sq, 1.0, n=160, method="hermite") - ref) < 1e-12
    # and the 2-D tensor-product rule agrees with the split rule
    assert abs(mf.gauss_2d(g, g, 1.0, 0.4, n=120, method="hermite") - mf.gauss_2d(g, g, 1.0, 0.4)) < 1e-12


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.05, 20.0), c=st.floats(-0.999, 0.999))
@pytest.mark.parametrize("name", ["erf", "relu", "leaky_relu", "linear"])
def test_closed_forms_against_quadrature(name, a, c):
    """Appendix B (B.3, B.4, B.7–B.9, B.11, B.13–B.16) against the quadrature; relu's I_φ' corrected (B.12);
    leaky_relu from relu(u) − s·relu(−u)."""
    b = c * a
    cf = A.get(name)
    assert cf.closed_forms == ("q_hat", "I_phi", "I_dphi")
    assert abs(cf.q_hat(a) - mf.q_hat(name, a, closed_form=False)) < 1e-10 * max(1, a)
    assert abs(cf.I_phi(a, b) - mf.I_phi(name, a, b, closed_form=False)) < 1e-10 * max(1, a)
    assert abs(cf.I_dphi(a, b) - mf.I_dphi(name, a, b, closed_form=False)) < 1e-10
    assert abs(cf.I_dphi(a, a) - mf.I_dphi(name, a, a, closed_form=False)) < 1e-10


def test_relu_B12_has_a_spurious_factor_a():
    a, b = 2.0, 0.5
    quad = mf.I_dphi("relu", a, b, closed_form=False)
    assert abs(quad - (math.pi / 2 + math.asin(b / a)) / (2 * math.pi)) < 1e-12
    assert abs(mf.DOCUMENT_RELU_I_D(a, b) - a * quad) < 1e-12  # printed B.12 = a × truth
    assert abs(mf.DOCUMENT_RELU_I_D(1.0, 0.3) - mf.I_dphi("relu", 1.0, 0.3, closed_form=False)) < 1e-12


def test_erf_B2_half_line_integral():
    """B.2: ∫_0^∞ Dx erf(ax)erf(bx) = (1/π) atan(√2 ab / √(a²+b²+1/2))."""
    from scipy.special import erf

    for a, b in [(0.7, 1.3), (2.0, 0.4)]:
        lhs = integrate.quad(lambda x: erf(a * x) * erf(b * x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi),
                             0, np.inf, epsabs=1e-14)[0]
        rhs = math.atan(math.sqrt(2) * a * b / math.sqrt(a * a + b * b + 0.5)) / math.pi
        assert abs(lhs - rhs) < 1e-12


def test_order_parameters_closed_form_equals_quadrature_path():
    for name in ("erf", "relu", "linear"):
        p1 = mf.order_parameters(name, 4, 2.0, 0.3, 1.0, 0.2)
        p2 = mf.order_parameters(name, 4, 2.0, 0.3, 1.0, 0.2, closed_form=False)
        for f in ("q_hat", "q_hat_st", "q_tilde", "q_tilde_st"):
            np.testing.assert_allclose(getattr(p1, f)[1:], getattr(p2, f)[1:], rtol=1e-10, atol=1e-12)


def test_relu_recurrences_B9_B10():
    sw, sb = 2.0, 0.1
    op = mf.order_parameters("relu", 4, sw, sb, output_activation="relu")
    for l in range(1, 3):
        assert abs(op.q_hat[l + 1] - (op.q_hat[l] * sw / 2 + sb / 2)) < 1e-12  # B.9
    assert abs(op.q_tilde[4] - 0.5) < 1e-12  # B.10 boundary for a relu output unit
    for l in range(1, 4):
        assert abs(op.q_tilde[l] - op.q_tilde[l + 1] * sw / 2) < 1e-12
    lin = mf.order_parameters("relu", 4, sw, sb)
    assert lin.q_tilde[4] == 1.0 and lin.q_tilde_st[4] == 1.0


def test_predict_quick_check_papers_md():
    """papers.md: tanh, L=3, M=400, C=1, T=60, σ_w²=3, σ_b²=0.64 → m 0.00239, s 0.0581, λ_max 106.1."""
    p = mf.predict(mf.Architecture.uniform("tanh", L=3, M=400, C=1, sigma_w2=3.0, sigma_b2=0.64), T=60)
    assert p.widths == [400, 400, 400, 1]
    assert abs(p.m - 0.00239) / 0.00239 < 0.005
    assert abs(p.s - 0.0581) / 0.0581 < 0.005
    assert abs(p.lambda_max - 106.1) / 106.1 < 0.005
    assert abs(p.eta_c - 2 / p.lambda_max) < 1e-15


def test_predict_identities():
    p = mf.predict(mf.Architecture.uniform("erf", L=4, M=300, C=3, sigma_w2=2.0, sigma_b2=0.2), T=20, momentum=0.5)
    k1, k2, a, M, T, C = p.kappa1, p.kappa2, p.alpha, p.M, p.T, p.C
    assert math.isclose(p.m, C * k1 / M)
    assert math.isclose(p.s, a * C * ((T - 1) / T * k2**2 + k1**2 / T))
    assert math.isclose(p.lambda_max, a * ((T - 1) / T * k2 + k1 / T) * M)
    assert math.isclose(p.eta_c, 2 * 1.5 / p.lambda_max)
    assert p.s_lower <= p.s_upper and math.isclose(p.s_upper, C * p.s)
    assert p.lambda_max_lower <= p.lambda_max_upper
    assert p.fisher_rao <= p.fisher_rao_bound * (1 + 1e-12)
    # T = 1, C = 1: s = α κ₁² (A.3, end of outline)
    q = mf.predict(mf.Architecture.uniform("tanh", L=3, M=100, sigma_w2=1.5), T=1)
    assert math.isclose(q.s, q.alpha * q.kappa1**2)


def test_predict_errors():
    with pytest.raises(ValueCheckError, match="Architecture"):
        mf.predict("tanh")  # not an architecture
    with pytest.raises(ValueCheckError, match="widths"):
        mf.Architecture("tanh", (10,))  # fewer than two widths
    with pytest.raises(ValueCheckError, match="alphas"):
        mf.Architecture.uniform("tanh", L=3, M=10, alphas=(1.0,))
    with pytest.raises(ValueCheckError, match="nope"):
        mf.Architecture.uniform("nope", L=2, M=10)
    with pytest.raises(ValueCheckError, match="sigma_w2"):
        mf.Architecture("tanh", (5, 5, 1), sigma_w2=-1.0)
    with pytest.raises(ValueCheckError, match="T must be"):
        mf.predict(mf.Architecture.uniform("tanh", L=2, M=10), T=0)
    with pytest.raises(ValueCheckError):
        mf.predict(mf.Architecture.uniform("tanh", L=2, M=10), q_hat0=0.1, q_hat0_st=0.5)
    with pytest.raises(ValueCheckError):
        mf.eta_c(-1.0)


@pytest.mark.parametrize("c", [1 - 1e-4, 1 - 1e-6, 1 - 1e-10, -1 + 1e-8, 1.0])
def test_kinked_near_perfect_correlation(c):
    """The inner integral becomes a step of width √(1−c²): the graded mesh keeps the relu integrals exact."""
    a = 2.0
    cf = A.get("relu")
    assert abs(mf.I_phi("relu", a, c * a, closed_form=False) - cf.I_phi(a, c * a)) < 1e-10
    assert abs(mf.I_dphi("relu", a, c * a, closed_form=False) - cf.I_dphi(a, c * a)) < 1e-10


def test_meanfield_uses_the_activation_closed_form_and_falls_back_to_quadrature():
    """q_hat / I_phi / I_dphi ask the activation object: its closed form where it has one, quadrature otherwise."""
    lr = A.get("leaky_relu", slope=0.3)
    assert mf.q_hat(lr, 1.7) == lr.q_hat(1.7)  # the object's value, exactly
    assert mf.I_dphi(lr, 1.7, 0.4) == lr.I_dphi(1.7, 0.4)
    assert A.get("tanh").q_hat(1.0) is None and A.get("tanh").closed_forms == ()
    assert mf.q_hat("tanh", 1.0) == mf.q_hat("tanh", 1.0, closed_form=False)  # quadrature fallback
    g = mf.as_gauss_fn("relu")  # a GaussFn has no closed form: quadrature, which agrees with B.9
    assert abs(mf.q_hat(g, 2.0) - 1.0) < 1e-12


def test_architecture_and_short_repr():
    arch = mf.Architecture.uniform("relu", L=3, M=50, C=4, alphas=(0.4, 1.0, 2.0), sigma_w2=2.0, sigma_b2=0.1)
    assert arch.widths == (20, 50, 100, 4) and arch.L == 3 and arch.C == 4 and arch.M == 50
    assert arch.num_weights == 20 * 50 + 50 * 100 + 100 * 4 and arch.num_params == arch.num_weights + 154
    assert math.isclose(arch.alpha, arch.num_weights / 50**2)
    assert mf.Architecture("tanh", [784, 200, 10]).M == 200  # reference width defaults to M_1
    assert mf.Architecture("tanh", [784, 10]).M == 784  # L = 1: M_0
    p = mf.predict(arch, T=7)
    assert p.widths == [20, 50, 100, 4] and p.activation == "relu" and p.C == 4 and p.num_params == arch.num_params
    text = repr(p)
    assert "architecture=Architecture(…)" in text and "lambda_max=" in text and len(text.splitlines()) < 40
    assert "<table>" in p._repr_html_()


def _leading_dual(d: float, o: float, T: int, C: int) -> np.ndarray:
    """The leading F̄* of A.23/A.31: C diagonal blocks with d on the diagonal and o off it."""
    K = np.full((T, T), o) + np.eye(T) * (d - o)
    return np.kron(np.eye(C), K)


@pytest.mark.parametrize("act,C,T", [("tanh", 1, 7), ("relu", 3, 5), ("erf", 2, 9)])
def test_bulk_outliers_and_markov_bound_from_the_leading_dual(act, C, T):
    """A.4(i): the leading F̄* = αMK/T has C eigenvalues λ_max and C(T−1) at α(κ₁−κ₂)M/T (numpy eigvalsh of the
    explicit matrix); with the bias entries (B1, B2) the same with the finite values. Corollary 2 = P m_λ/k."""
    arch = mf.Architecture.uniform(act, L=3, M=200, C=C, sigma_w2=2.0, sigma_b2=0.3)
    p = mf.predict(arch, T=T)
    a, M = p.alpha, p.M
    ev = np.linalg.eigvalsh(_leading_dual(a * M * p.kappa1 / T, a * M * p.kappa2 / T, T, C))[::-1]
    np.testing.assert_allclose(ev[:C], p.lambda_max, rtol=1e-12)
    np.testing.assert_allclose(ev[C:], p.lambda_bulk, rtol=1e-10)
    # finite: diagonal B1/T, off-diagonal B2/T with B1 − B2 = T λ_bulk_finite and B1 + (T−1)B2 = T λ_max_finite,
    # so B2 = λ_max_finite − λ_bulk_finite
    B2 = p.lambda_max_finite - p.lambda_bulk_finite
    B1 = p.lambda_bulk_finite * T + B2
    evf = np.linalg.eigvalsh(_leading_dual(B1 / T, B2 / T, T, C))[::-1]
    np.testing.assert_allclose(evf[:C], p.lambda_max_finite, rtol=1e-12)
    np.testing.assert_allclose(p.m_finite, C * T * B1 / T / p.num_params, rtol=1e-12)  # trace / P
    # A.3/A.9: m = m^(W) + m^(b) with m^(b) = C Σ_l q̃^l/(αM²)
    qt = sum(p.order.q_tilde[1:])
    assert math.isclose(p.m_bias, C * qt / (a * M**2)) and math.isclose(p.m_weights, p.m)
    assert math.isclose(p.m_finite, C * (p.kappa1 * a * M + qt) / p.num_params)
    # Corollary 2: ακ₁CM/k = (αM²)·m_λ/k
    for k in (0.1, 1.0, 10.0):
        assert math.isclose(p.markov_bound(k), a * M**2 * p.m / k)
    with pytest.raises(ValueCheckError, match="k of Corollary 2"):
        p.markov_bound(0.0)


def test_layer_predictions_sum_to_the_totals():
    arch = mf.Architecture.uniform("tanh", L=4, M=150, C=2, alphas=(1.0, 2.0, 1.0, 0.5), sigma_w2=3.0, sigma_b2=0.64)
    p = mf.predict(arch, T=11)
    ls = mf.layer_predictions(p)
    assert [x.layer for x in ls] == [1, 2, 3, 4] and [x.fan_in for x in ls] == list(arch.widths[:-1])
    assert math.isclose(sum(x.kappa1 for x in ls), p.kappa1, rel_tol=1e-12)
    assert math.isclose(sum(x.kappa2 for x in ls), p.kappa2, rel_tol=1e-12)
    assert math.isclose(sum(x.m for x in ls), p.m, rel_tol=1e-12)
    assert math.isclose(sum(x.m_finite for x in ls), p.m_finite, rel_tol=1e-12)
    assert math.isclose(sum(x.m_bias for x in ls), p.m_bias_finite, rel_tol=1e-12)
    assert math.isclose(sum(x.lambda_max for x in ls), p.lambda_max, rel_tol=1e-12)  # linear in κ
    assert math.isclose(sum(x.lambda_max_finite for x in ls), p.lambda_max_finite, rel_tol=1e-12)
    for x in ls:  # each layer alone: the formulas of A.25 and Theorem 4 with its own κ
        assert math.isclose(x.s, p.alpha * p.C * (10 / 11 * x.kappa2**2 + x.kappa1**2 / 11))
    with pytest.raises(ValueCheckError, match="result of predict"):
        mf.layer_predictions(arch)


def test_layer_predictions_against_random_networks():
    """Simulation: per-layer m_l, λ_max,l and the bias share (A.9) of random tanh MLPs at M = 300, 4 seeds,
    against the finite-size per-layer theory; tolerance 10 % on the seed mean (fluctuations O(1/√M)).

    Layer 1 on Gaussian inputs has q̂⁰_st = 0, so κ^(1)_2 = 0 and F*_1 has no outlier: its λ_max is the edge of a
    bulk widened by the O(√M)/T fluctuations (the exceptional case after A.25), above the theory's κ₁/T·αM."""
    from actionlab.fisher import empirical as emp
    from actionlab.models import MLP

    arch = mf.Architecture.uniform("tanh", L=3, M=300, sigma_w2=3.0, sigma_b2=0.64)
    T = 20
    meas = []
    for s in range(4):
        g = torch.Generator().manual_seed(s)
        net = MLP(list(arch.widths), activation="tanh", sigma_w2=3.0, sigma_b2=0.64, generator=g, dtype=torch.float64)
        x = torch.randn(T, 300, generator=g, dtype=torch.float64)
        meas.append([(ly.m, ly.lambda_max, ly.m_bias) for ly in emp.layer_statistics(net, x)])
    meas = np.array(meas).mean(0)
    for (m, lam, mb), th in zip(meas, mf.layer_predictions(mf.predict(arch, T=T))):
        assert abs(m / th.m_finite - 1) < 0.1, (m, th)
        assert abs(mb / th.m_bias - 1) < 0.1, (mb, th)
        if th.kappa2 > 0:
            assert abs(lam / th.lambda_max_finite - 1) < 0.1, (lam, th)
        else:
            assert lam > 1.1 * th.lambda_max_finite, (lam, th)
