"""Taylor-series rules against nested forward-mode autodiff in float64."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actionlab import activations as A
from actionlab import series as S
from actionlab._checks import ShapeError

DT = torch.float64
K = 6


def taylor_ref(fn, K: int, tshape=()) -> torch.Tensor:
    """Coefficients of t ↦ fn(t) at t = 0 by nested reverse-mode autodiff (float64): (..., K+1).

    ``t`` has shape ``tshape`` (broadcast against the output) so that each
    output element depends on its own copy of t and the gradient of the sum
    gives every element's derivative at once.
    """
    t = torch.zeros(tshape, dtype=DT, requires_grad=True)
    g = fn(t)
    out = [g.detach()]
    for k in range(1, K + 1):
        if not g.requires_grad:  # a constant derivative (piecewise-linear σ): the rest vanish
            g = torch.zeros_like(out[0])
        else:
            (g,) = torch.autograd.grad(g.sum(), t, create_graph=True, allow_unused=True, materialize_grads=True)
        g = g.reshape(out[0].shape) if g.numel() == out[0].numel() else g.expand_as(out[0])
        out.append(g.detach() / math.factorial(k))
    return torch.stack(out, -1)


def poly(x: torch.Tensor):
    """The function t ↦ Σ_k x_k t^k of a series (exact polynomial)."""
    return lambda t: sum(x[..., k] * t**k for k in range(x.shape[-1]))


def rand_series(*shape, gen, pos=False):
    x = torch.randn(*shape, K + 1, dtype=DT, generator=gen)
    if pos:
        x[..., 0] = x[..., 0].abs() + 0.5
    return x


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1)


def test_mul_exp_log_reciprocal_power_against_autodiff(gen):
    x = rand_series(3, 4, gen=gen, pos=True)
    y = rand_series(3, 4, gen=gen)
    fx, fy = poly(x), poly(y)
    torch.testing.assert_close(S.mul(x, y), taylor_ref(lambda t: fx(t) * fy(t), K, (3, 4)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(S.exp(y), taylor_ref(lambda t: torch.exp(fy(t)), K, (3, 4)), rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(S.log(x), taylor_ref(lambda t: torch.log(fx(t)), K, (3, 4)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S.reciprocal(x), taylor_ref(lambda t: 1 / fx(t), K, (3, 4)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S.div(y, x), taylor_ref(lambda t: fy(t) / fx(t), K, (3, 4)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S.power(x, 1.7), taylor_ref(lambda t: fx(t) ** 1.7, K, (3, 4)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S.power(y, 3), taylor_ref(lambda t: fy(t) ** 3, K, (3, 4)), rtol=1e-11, atol=1e-11)


def test_logsumexp_and_log_softmax_stable_for_huge_logits(gen):
    x = rand_series(5, 7, gen=gen)
    x[..., 0] *= 400.0  # e^{±1000}: the naive formula overflows
    fx = poly(x)
    ref = taylor_ref(lambda t: torch.logsumexp(fx(t), dim=1), K, (5, 1))
    got = S.logsumexp(x, dim=1)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    ls = S.log_softmax(x, dim=-1)
    for j in range(7):
        ref_j = taylor_ref(lambda t: torch.log_softmax(fx(t), dim=-1)[:, j], K, (5, 1))
        torch.testing.assert_close(ls[:, j], ref_j, rtol=1e-9, atol=1e-9)
    # softmax sums to one: Σ exp(log_softmax) = [1, 0, …, 0]
    tot = S.exp(ls).sum(1)
    torch.testing.assert_close(tot, S.constant(torch.ones(5, dtype=DT), K), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["silu", "gelu", "tanh", "sigmoid", "softplus", "erf", "elu", "relu", "leaky_relu"])
def test_activation_on_ray_and_compose_against_autodiff(name, gen):
    act = A.get(name)
    a0 = torch.randn(20, dtype=DT, generator=gen) * 2
    a1 = torch.randn(20, dtype=DT, generator=gen)
    ref = taylor_ref(lambda t: act(a0 + a1 * t), K, (20,))
    torch.testing.assert_close(S.activation_on_ray(act, a0, a1, K), ref, rtol=1e-10, atol=1e-10)
    x = rand_series(20, gen=gen)
    x[..., 0] = a0
    ref2 = taylor_ref(lambda t: act(poly(x)(t)), K, (20,))
    torch.testing.assert_close(S.compose(act, x), ref2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
def test_activation_on_ray_through_a_kink_takes_the_ray_branch(name, gen):
    """At a0 = 0 the series is the one-sided expansion of σ(a1 t) for t > 0 (right branch when a1 > 0, left when a1 < 0)."""
    act = A.get(name)
    a1 = torch.tensor([1.3, -0.7, 0.0, 2.0, -1.5], dtype=DT)
    for a0 in (None, torch.zeros(5, dtype=DT)):
        ser = S.activation_on_ray(act, a0, a1, K)
        for t in (1e-2, 3e-2):
            true = act(a1 * t)  # t > 0: a1 t lies on the branch of sign(a1)
            err = (S.evaluate(ser, t) - true).abs().max()
            assert err <= 10 * t ** (K + 1)


def test_order_mismatch_and_bad_axis_raise():
    x = torch.zeros(3, 4, dtype=DT)
    with pytest.raises(ShapeError):
        S.mul(x, torch.zeros(3, 5, dtype=DT))
    with pytest.raises(ShapeError):
        S.logsumexp(x, dim=1)  # only one batch axis (0)


def test_rule_table_names_every_primitive():
    for name in ("add", "mul", "exp", "log", "reciprocal", "pow", "logsumexp", "log_softmax", "activation_on_ray", "compose"):
        assert callable(S.RULES[name])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.integers(0, 7))
def test_exp_log_inverse_and_mul_reciprocal_identity(seed, order):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, order + 1, dtype=DT, generator=g)
    x[..., 0] = x[..., 0].abs() + 0.3
    torch.testing.assert_close(S.exp(S.log(x)), x, rtol=1e-9, atol=1e-9)
    one = S.mul(x, S.reciprocal(x))
    torch.testing.assert_close(one, S.constant(torch.ones(4, dtype=DT), order), rtol=1e-9, atol=1e-9)
    # evaluation is the polynomial
    t = 0.37
    torch.testing.assert_close(S.evaluate(x, t), poly(x)(torch.tensor(t, dtype=DT)))
