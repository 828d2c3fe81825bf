"""A base point keeps its own activation; half-precision inputs are refused.

t ↦ S(base + tθ) has a single activation σ, so a base carrying another
activation than θ is refused with a ValueCheckError that names both; a base
carrying the same one — as a TwoLayer, a dict with a name or an Activation,
a Params, or a bare tuple (which takes θ's) — gives the same coefficients,
with S_0 = S(base) computed independently (cross-entropy of the written-out
logits) and the rest against nested float64 autodiff.
"""

from __future__ import annotations

import math

import pytest
import torch

from actionlab import activations as A
from actionlab._checks import ValueCheckError
from actionlab.expansion import action_exact, action_series, as_params, kink_radius, leading_series, terms
from actionlab.models import TwoLayer

DT = torch.float64


def problem(seed=0, M=3, H=4, E=2, N=20):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, E, dtype=DT, generator=g)
    labels = torch.arange(N) % M

    def th():
        return {
            "U": torch.randn(M, H, dtype=DT, generator=g),
            "c": torch.randn(M, dtype=DT, generator=g),
            "W": torch.randn(H, E, dtype=DT, generator=g),
            "b": torch.randn(H, dtype=DT, generator=g),
        }

    return z, labels, th(), th()


def S_of(P, act, z, labels):
    logits = act(z @ P["W"].T + P["b"]) @ P["U"].T + P["c"]
    return torch.nn.functional.cross_entropy(logits, labels)


def ref_series(theta, base, act, z, labels, K):
    """[S_0..S_K] of t ↦ S(base + tθ) by nested reverse-mode autodiff (float64)."""
    t = torch.zeros((), dtype=DT, requires_grad=True)
    g = S_of({k: base[k] + t * theta[k] for k in theta}, act, z, labels)
    out = [g.detach()]
    for k in range(1, K + 1):
        (g,) = torch.autograd.grad(g, t, create_graph=True)
        out.append(g.detach() / math.factorial(k))
    return torch.stack(out)


TUPLE = ("U", "c", "W", "b")


@pytest.mark.parametrize("act", ["tanh", "silu"])
def test_matching_base_in_every_form_gives_the_same_exact_series(act):
    z, labels, theta, base = problem()
    K = 4
    ref = ref_series(theta, base, A.get(act), z, labels, K)
    # S_0 is S(base) itself, computed independently of the series
    assert abs(float(ref[0]) - float(S_of(base, A.get(act), z, labels))) < 1e-14
    forms = {
        "TwoLayer": TwoLayer(**base, activation=act),
        "dict with name": dict(base, activation=act),
        "dict with Activation": dict(base, activation=A.get(act)),
        "Params": as_params(base, act),
        "tuple": tuple(base[k] for k in TUPLE),
    }
    directions = {
        "TwoLayer": (TwoLayer(**theta, activation=act), {}),
        "tuple + name": (tuple(theta[k] for k in TUPLE), {"activation": act}),
        "tuple + Activation": (tuple(theta[k] for k in TUPLE), {"activation": A.get(act)}),
    }
    for dname, (params, kw) in directions.items():
        for bname, b in forms.items():
            got = action_series(params, z, labels, K, base=b, **kw)
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-11, msg=f"{dname} with base {bname}")
    # S_0 at the base is the action at the base
    torch.testing.assert_close(
        action_series(TwoLayer(**theta, activation=act), z, labels, 0, base=forms["TwoLayer"])[0],
        action_exact(forms["TwoLayer"], z, labels),
        rtol=1e-13,
        atol=0,
    )


def test_base_with_another_activation_is_refused():
    z, labels, theta, base = problem()
    m_silu = TwoLayer(**theta, activation="silu")
    b_tanh = TwoLayer(**base, activation="tanh")
    # the case: a silu θ with a tanh base used to silently take silu for the base
    with pytest.raises(ValueCheckError, match=r"base has activation Tanh\(\) but params have SiLU\(\).*'silu'"):
        action_series(m_silu, z, labels, 3, base=b_tanh)
    for b in (b_tanh, dict(base, activation="tanh"), dict(base, activation=A.get("tanh")), as_params(base, "tanh")):
        with pytest.raises(ValueCheckError, match="base has activation"):
            action_series(tuple(theta[k] for k in TUPLE), z, labels, 2, base=b, activation="silu")
        with pytest.raises(ValueCheckError, match="base has activation"):
            kink_radius(m_silu, z, b)
    # activation parameters count: elu(α = 0.5) is not elu(α = 1)
    with pytest.raises(ValueCheckError, match="base has activation"):
        action_series(TwoLayer(**theta, activation="elu"), z, labels, 2, base=TwoLayer(**base, activation="elu", alpha=0.5))
    # activation= names θ's activation; a base with its own other activation is still refused
    with pytest.raises(ValueCheckError, match="base has activation"):
        action_series(m_silu, z, labels, 2, base=b_tanh, activation="silu")


def test_kink_radius_takes_the_base_activation_it_is_given():
    z, labels, theta, base = problem(1)
    m = TwoLayer(**theta, activation="relu")
    r_model = kink_radius(m, z, TwoLayer(**base, activation="relu"))
    r_tuple = kink_radius(m, z, tuple(base[k] for k in TUPLE))
    a0, a1 = z @ base["W"].T + base["b"], z @ theta["W"].T + theta["b"]
    t = -a0 / a1  # relu's kink at 0: first crossing t > 0
    expect = float(t[(t > 0) & (a0 != 0)].min())
    assert r_model == r_tuple and abs(r_model - expect) < 1e-12


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_refused_with_the_fix(half):
    z, labels, theta, base = problem()
    h = {k: v.to(half) for k, v in theta.items()}
    calls = {
        "action_series params": lambda: action_series(h, z, labels, 2, activation="silu"),
        "action_series z": lambda: action_series(theta, z.to(half), labels, 2, activation="silu"),
        "action_series base": lambda: action_series(
            theta, z, labels, 2, base={k: v.to(half) for k, v in base.items()}, activation="silu"
        ),
        "action_exact": lambda: action_exact(h, z, labels, activation="silu"),
        "terms": lambda: terms(h, z, labels, activation="silu"),
        "leading_series": lambda: leading_series(theta, z.to(half), labels, 2, activation="silu"),
    }
    for name, call in calls.items():
        with pytest.raises(ValueCheckError, match=r"float32 or float64.*\.float\(\) or \.double\(\)"):
            call()
    # float32 is accepted and finite
    s = action_series({k: v.float() for k, v in theta.items()}, z.float(), labels, 2, activation="silu")
    assert s.dtype == torch.float32 and torch.isfinite(s).all()
