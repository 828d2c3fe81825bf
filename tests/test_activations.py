"""Activations: values, derivatives and Taylor coefficients against float64 autodiff and known series."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actionlab import activations as A
from actionlab._checks import ValueCheckError

ALL = [
    ("silu", {}),
    ("gelu", {}),
    ("tanh", {}),
    ("sigmoid", {}),
    ("erf", {}),
    ("softplus", {}),
    ("elu", {"alpha": 0.7}),
    ("relu_omega", {"omega": 0.8, "iota": 0.2}),
    ("relu", {}),
    ("leaky_relu", {"slope": 0.1}),
    ("linear", {}),
]


def autodiff_coefficients(act, x, order):
    """σ⁽ᵏ⁾(x)/k! by nested float64 autograd (independent of the recurrences)."""
    xx = x.clone().requires_grad_(True)
    g = act(xx)
    out = [g.detach()]
    for k in range(1, order + 1):
        if not g.requires_grad:
            out.append(torch.zeros_like(x))
            continue
        (g,) = torch.autograd.grad(g.sum(), xx, create_graph=True, allow_unused=True)
        if g is None:
            g = torch.zeros_like(x)
        out.append(g.detach() / math.factorial(k))
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize("name,params", ALL)
def test_taylor_at_matches_autodiff(name, params):
    act = A.get(name, **params)
    gen = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(200, generator=gen, dtype=torch.float64)
    x = x[x.abs() > 1e-3]  # away from kinks, where autodiff picks a branch arbitrarily
    got = act.taylor_at(x, 6)
    ref = autodiff_coefficients(act, x, 6)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,params", ALL)
def test_closed_form_derivatives(name, params):
    act = A.get(name, **params)
    x = torch.linspace(-4, 4, 401, dtype=torch.float64)
    x = x[x.abs() > 1e-9]
    ref = autodiff_coefficients(act, x, 2)
    torch.testing.assert_close(act.derivative(x, 1), ref[:, 1], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(act.derivative(x, 2), 2 * ref[:, 2], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(act.derivative(x, 0), act(x))


@pytest.mark.parametrize("name,params", [p for p in ALL if p[0] not in ("relu", "leaky_relu", "elu")])
def test_taylor_at_zero_matches_autodiff_to_order_6(name, params):
    act = A.get(name, **params)
    ref = autodiff_coefficients(act, torch.zeros(1, dtype=torch.float64), 6)[0]
    assert act.taylor(6) == pytest.approx(ref.tolist(), rel=1e-12, abs=1e-14)
    assert act.taylor(6, side=-1) == act.taylor(6)  # analytic: both sides agree


KNOWN = {
    # silu = x·sigmoid(x) = x/2 + x²/4 − x⁴/48 + x⁶/480 − …
    "silu": [0, 1 / 2, 1 / 4, 0, -1 / 48, 0, 1 / 480],
    # sigmoid = 1/2 + x/4 − x³/48 + x⁵/480
    "sigmoid": [1 / 2, 1 / 4, 0, -1 / 48, 0, 1 / 480, 0],
    # tanh = x − x³/3 + 2x⁵/15 − 17x⁷/315
    "tanh": [0, 1, 0, -1 / 3, 0, 2 / 15, 0, -17 / 315],
    # erf = (2/√π)(x − x³/3 + x⁵/10 − x⁷/42)
    "erf": [c * 2 / math.sqrt(math.pi) for c in (0, 1, 0, -1 / 3, 0, 1 / 10, 0, -1 / 42)],
    # gelu = xΦ(x) = x/2 + x²/√(2π) − x⁴/(6√(2π)) + x⁶/(40√(2π))
    "gelu": [0, 1 / 2, 1 / math.sqrt(2 * math.pi), 0, -1 / (6 * math.sqrt(2 * math.pi)), 0, 1 / (40 * math.sqrt(2 * math.pi))],
    # softplus = ln 2 + x/2 + x²/8 − x⁴/192
    "softplus": [math.log(2), 1 / 2, 1 / 8, 0, -1 / 192, 0, 1 / 2880],
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_series(name):
    expect = KNOWN[name]
    assert A.get(name).taylor(len(expect) - 1) == pytest.approx(expect, rel=1e-13, abs=1e-15)


def test_high_order_series_is_exact():
    # tanh's 15th coefficient: −929569/638512875 (Bernoulli numbers)
    assert A.get("tanh").taylor(15)[15] == pytest.approx(-929569 / 638512875, rel=1e-11)
    # erf: (2/√π)(−1)^n/(n!(2n+1)) at power 2n+1; n = 7 → power 15
    assert A.get("erf").taylor(15)[15] == pytest.approx(-2 / math.sqrt(math.pi) / (math.factorial(7) * 15), rel=1e-11)


def test_one_sided_coefficients_of_kinked_activations():
    assert A.get("relu").taylor(3) == [0, 1, 0, 0]
    assert A.get("relu").taylor(3, side=-1) == [0, 0, 0, 0]
    assert A.get("leaky_relu", slope=0.2).taylor(2, side=-1) == pytest.approx([0, 0.2, 0])
    # elu left: α(eˣ − 1) = α(x + x²/2 + x³/6 + …)
    assert A.get("elu", alpha=2.0).taylor(4, side=-1) == pytest.approx([0, 2, 1, 1 / 3, 1 / 12])
    assert A.get("elu", alpha=2.0).taylor(4, side=+1) == pytest.approx([0, 1, 0, 0, 0])


def test_side_chooses_branch_per_element_on_a_ray():
    act = A.get("elu", alpha=1.0)
    x0 = torch.zeros(2, dtype=torch.float64)
    x1 = torch.tensor([0.3, -0.3], dtype=torch.float64)
    c = act.taylor_at(x0, 8, side=torch.sign(x1))
    t = 0.5
    series = (c * (x1[:, None] * t) ** torch.arange(9)).sum(-1)
    torch.testing.assert_close(series, act(x0 + x1 * t), rtol=1e-9, atol=1e-12)


def test_properties_flags():
    assert A.get("relu").positively_homogeneous and not A.get("relu").analytic_at_zero
    assert A.get("linear").positively_homogeneous and A.get("linear").analytic_at_zero
    assert A.get("elu").kind == "piecewise" and A.get("elu").kinks == (0.0,)
    assert A.get("silu").kind == "analytic" and A.get("relu").kind == "homogeneous"
    for name in ("silu", "gelu", "tanh", "sigmoid", "erf", "softplus", "relu_omega"):
        assert A.get(name).analytic_at_zero and not A.get(name).positively_homogeneous


@pytest.mark.parametrize("name,params", [p for p in ALL if p[0] in ("relu", "leaky_relu", "linear")])
def test_positive_homogeneity(name, params):
    act = A.get(name, **params)
    x = torch.randn(50, dtype=torch.float64)
    for lam in (0.1, 2.0, 7.5):
        torch.testing.assert_close(act(lam * x), lam * act(x))


def test_relu_omega_is_softplus_family():
    # ι = 0, ω = 1 gives softplus exactly; ω → 0 approaches relu
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    torch.testing.assert_close(A.get("relu_omega")(x), A.get("softplus")(x))
    assert (A.get("relu_omega", omega=1e-3)(x) - torch.relu(x)).abs().max() < 1e-3
    # derivative formula of 003 §1: ι + (1−ι) sigm((1−ι)t/ω)
    act = A.get("relu_omega", omega=0.5, iota=0.3)
    torch.testing.assert_close(act.derivative(x), 0.3 + 0.7 * torch.sigmoid(0.7 * x / 0.5))


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["silu", "gelu", "tanh", "sigmoid", "erf", "softplus", "relu_omega"]),
    x0=st.floats(-6, 6),
    x1=st.floats(-1, 1),
)
def test_series_resums_to_value(name, x0, x1):
    """Σ_k c_k (x1 t)^k → σ(x0 + x1 t) for small t (radius of convergence ≥ π/2 for these σ near the real axis... t small)."""
    act = A.get(name)
    c = act.taylor_at(torch.tensor(x0, dtype=torch.float64), 12)
    t = 0.05
    approx = sum(float(c[k]) * (x1 * t) ** k for k in range(13))
    exact = float(act(torch.tensor(x0 + x1 * t, dtype=torch.float64)))
    assert approx == pytest.approx(exact, rel=1e-12, abs=1e-13)


def test_registry_errors_and_aliases():
    with pytest.raises(ValueCheckError, match="unknown activation 'swishy'.*silu"):
        A.get("swishy")
    with pytest.raises(ValueCheckError, match="bad parameters"):
        A.get("tanh", alpha=1.0)
    with pytest.raises(ValueCheckError, match="omega > 0"):
        A.get("relu_omega", omega=0.0)
    with pytest.raises(ValueCheckError, match="iota"):
        A.get("relu_omega", iota=1.0)
    assert A.get("sigm").name == "sigmoid" and A.get("Leaky-ReLU").name == "leaky_relu"
    act = A.get("elu", alpha=0.5)
    assert A.get(act) is act
    assert A.get(act.spec()["name"], **act.spec()["params"]) == act
    with pytest.raises(ValueCheckError):
        act.derivative(torch.zeros(1), 3)
    with pytest.raises(ValueCheckError):
        act.taylor(3, side=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved_and_module(dtype):
    for name in A.names():
        act = A.get(name)
        x = torch.randn(4, dtype=dtype)
        assert act(x).dtype == dtype
        assert act.taylor_at(x, 3).shape == (4, 4) and act.taylor_at(x, 3).dtype == dtype
        torch.testing.assert_close(act.module()(x), act(x))


def test_no_nan_gradients_for_large_inputs():
    for name in A.names():
        x = torch.tensor([-200.0, -30.0, 0.0, 30.0, 200.0], dtype=torch.float64, requires_grad=True)
        y = A.get(name)(x).sum()
        (g,) = torch.autograd.grad(y, x)
        assert torch.isfinite(g).all(), name
        assert torch.isfinite(A.get(name).taylor_at(x.detach(), 6)).all(), name


# ---------------------------------------------------------------------------------------
# Gaussian closed forms on the object (004 appendix B) against scipy quadrature
# ---------------------------------------------------------------------------------------
_GAUSS = 1.0 / math.sqrt(2 * math.pi)
_CLOSED_VARIANTS = [(n, {}) for n in A.names()] + [("leaky_relu", {"slope": 0.3}), ("leaky_relu", {"slope": -0.5})]


def _reference_fns(name, params):
    """σ and σ' as plain float functions written out here (independent of the Activation objects)."""
    from scipy.special import erf

    if name == "erf":
        return (lambda x: float(erf(x))), (lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x))
    if name == "linear":
        return (lambda x: x), (lambda x: 1.0)
    s = params.get("slope", 0.01) if name == "leaky_relu" else 0.0
    return (lambda x: x if x >= 0 else s * x), (lambda x: 1.0 if x >= 0 else s)


def _scipy_1d(f, q):
    from scipy import integrate

    return integrate.quad(lambda z: f(math.sqrt(q) * z) ** 2 * math.exp(-z * z / 2) * _GAUSS, -14, 14,
                          points=[0.0], epsabs=1e-13, epsrel=1e-12, limit=400)[0]


def _scipy_2d(f, a, b):
    """E[f(u₁) f(u₂)], u₁ = √a z₁, u₂ = √a (c z₁ + r z₂), by nested scipy quad split at the kink u = 0."""
    from scipy import integrate

    c = b / a
    r = math.sqrt(1 - c * c)

    def inner(z1):
        return integrate.quad(lambda z2: f(math.sqrt(a) * (c * z1 + r * z2)) * math.exp(-z2 * z2 / 2) * _GAUSS, -14, 14,
                              points=[-c * z1 / r], epsabs=1e-13, epsrel=1e-12, limit=200)[0]

    return integrate.quad(lambda z1: f(math.sqrt(a) * z1) * inner(z1) * math.exp(-z1 * z1 / 2) * _GAUSS, -14, 14,
                          points=[0.0], epsabs=1e-12, epsrel=1e-11, limit=200)[0]


def test_which_activations_have_gaussian_closed_forms():
    have = {n for n, p in _CLOSED_VARIANTS if A.get(n, **p).closed_forms}
    assert have == {"erf", "relu", "leaky_relu", "linear"}  # each needs a reference in _reference_fns
    for n in have:
        assert A.get(n).closed_forms == ("q_hat", "I_phi", "I_dphi")
    assert A.get("silu").q_hat(1.0) is None and A.get("elu").I_phi(1.0, 0.5) is None


@pytest.mark.parametrize("name,params", [v for v in _CLOSED_VARIANTS if A.get(v[0], **v[1]).closed_forms])
@pytest.mark.parametrize("a,c", [(0.3, 0.5), (1.0, -0.8), (2.5, 0.95), (7.0, 0.0)])
def test_gaussian_closed_forms_against_scipy(name, params, a, c):
    """q̂ (B.3/B.9/B.13), I_φ (B.7/B.11/B.15), I_φ' (B.4/B.8, corrected B.12, B.14/B.16) to 1e-9 (relative to a)."""
    act = A.get(name, **params)
    b = c * a
    phi, dphi = _reference_fns(name, params)
    tol = 1e-9 * max(1.0, a)
    assert abs(act.q_hat(a) - _scipy_1d(phi, a)) < tol
    assert abs(act.I_phi(a, b) - _scipy_2d(phi, a, b)) < tol
    assert abs(act.I_dphi(a, b) - _scipy_2d(dphi, a, b)) < 1e-9
    assert abs(act.I_dphi(a, a) - _scipy_1d(dphi, a)) < 1e-9  # b = a: ∫Dz σ'(√a z)²
    assert abs(act.I_phi(a, a) - act.q_hat(a)) < 1e-12 * max(1.0, a)  # I_φ[q, q] = q̂(q)


def test_gaussian_closed_forms_reject_bad_moments():
    for bad in ((-1.0, 0.0), (1.0, 1.5)):
        with pytest.raises(ValueCheckError):
            A.get("erf").I_phi(*bad)
    with pytest.raises(ValueCheckError, match="variance"):
        A.get("relu").q_hat(-0.1)


# ---------------------------------------------------------------------------------------
# RFIM coefficient on the object (003 table 1)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", ALL)
def test_gaussian_rfim_coefficient_is_squared_autodiff_derivative(name, params):
    act = A.get(name, **params)
    a = torch.linspace(-3, 3, 61, dtype=torch.float64)
    a = a[a.abs() > 1e-9]
    d1 = autodiff_coefficients(act, a, 1)[:, 1]
    torch.testing.assert_close(act.rfim_coefficient(a, "gaussian"), d1 * d1, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,values", [("tanh", (-1.0, 1.0)), ("sigmoid", (0.0, 1.0))])
def test_bernoulli_rfim_coefficient_by_enumeration(name, values):
    """ν(a) = Σ_y p(y|a) (∂_a ln p(y|a))²: tanh y = ±1, p = (1 + y tanh a)/2 (003 eqs. 5–7); sigmoid p(1) = sigm a."""
    act = A.get(name)
    a = torch.linspace(-4, 4, 33, dtype=torch.float64, requires_grad=True)
    ref = torch.zeros_like(a)
    for y in values:
        p = (1 + y * torch.tanh(a)) / 2 if name == "tanh" else (torch.sigmoid(a) if y == 1.0 else 1 - torch.sigmoid(a))
        (score,) = torch.autograd.grad(torch.log(p).sum(), a)
        ref = ref + p.detach() * score**2
    assert act.default_output == "bernoulli"
    torch.testing.assert_close(act.rfim_coefficient(a.detach()), ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueCheckError, match="Bernoulli output is defined for sigmoid and tanh"):
        A.get("relu").rfim_coefficient(a.detach(), "bernoulli")


def test_smoothed_stand_in():
    """relu / leaky_relu → relu_ω(ω, ι = slope), within ω ln 2 of the kinked function (003 §1); others unchanged."""
    x = torch.linspace(-5, 5, 201, dtype=torch.float64)
    for name, params, iota in (("relu", {}, 0.0), ("leaky_relu", {"slope": 0.2}, 0.2)):
        act = A.get(name, **params)
        for omega in (1.0, 0.1, 0.01):
            sm = act.smoothed(omega)
            assert sm == A.get("relu_omega", omega=omega, iota=iota)
            assert float((sm(x) - act(x)).abs().max()) <= omega * math.log(2) + 1e-12  # the gap at 0
    assert A.get("leaky_relu", slope=-0.5).smoothed(1.0) == A.get("leaky_relu", slope=-0.5)
    assert A.get("tanh").smoothed(0.5) == A.get("tanh")


# ---------------------------------------------------------------------------------------
# from_module: the one torch-module → activation map
# ---------------------------------------------------------------------------------------
_MODULES = [
    (torch.nn.Tanh(), "tanh", {}),
    (torch.nn.ReLU(), "relu", {}),
    (torch.nn.LeakyReLU(0.15), "leaky_relu", {"slope": 0.15}),
    (torch.nn.ELU(alpha=0.6), "elu", {"alpha": 0.6}),
    (torch.nn.SiLU(), "silu", {}),
    (torch.nn.GELU(), "gelu", {}),
    (torch.nn.Sigmoid(), "sigmoid", {}),
    (torch.nn.Softplus(), "softplus", {}),
    (torch.nn.Softplus(beta=2.0), "relu_omega", {"omega": 0.5, "iota": 0.0}),
    (torch.nn.Identity(), "linear", {}),
    (A.get("erf").module(), "erf", {}),
    (A.get("relu_omega", omega=0.3, iota=0.1).module(), "relu_omega", {"omega": 0.3, "iota": 0.1}),
]


@pytest.mark.parametrize("module,name,params", _MODULES, ids=[f"{type(m).__name__}-{n}" for m, n, _ in _MODULES])
def test_from_module_maps_every_supported_module(module, name, params):
    act = A.from_module(module)
    assert act == A.get(name, **params)
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    torch.testing.assert_close(act(x), module(x), rtol=1e-12, atol=1e-12)  # the same function as the module


@pytest.mark.parametrize("module", [torch.nn.Hardtanh(), torch.nn.Mish(), torch.nn.Linear(2, 2),
                                    torch.nn.GELU(approximate="tanh"), type("MyReLU", (torch.nn.ReLU,), {})()])
def test_from_module_rejects_other_modules(module):
    with pytest.raises(ValueCheckError) as err:
        A.from_module(module)
    msg = str(err.value)
    assert type(module).__name__ in msg
    if not isinstance(module, torch.nn.GELU):
        assert A.SUPPORTED_MODULES in msg and "nn.Softplus" in msg and "ActivationModule" in msg
