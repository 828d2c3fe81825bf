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
