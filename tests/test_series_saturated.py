"""logsumexp / softmax / log_softmax series and the action's series where the softmax saturates.

References, independent of actionlab.series: mpmath at 40 significant digits
(``mpmath.taylor`` of the function written out with mpmath's exp / log / tanh,
numerical differentiation at raised precision), nested float64 forward-mode
autodiff (torch.func.jvp, orders ≤ 6: its cost grows ~2.7× per order), and the
earlier series formulation LSE(f_0) + ln Σ_i softmax(f_0)_i e^{f_i − f_{i,0}},
written out here, which is exact where the logits are moderate.

Errors are measured against the coefficients' size: at order k,
scale_k = max_{j≤k} (max_i |f_{i,j}|, |g_j|) for a series, and
max(1, max_{j≤k} of the per-sample loss and logit coefficients) for the
action; the bound is C·ε·scale_k with ε the dtype's machine epsilon.
"""

from __future__ import annotations

import functools
import math

import mpmath  # a dependency of sympy, which torch requires
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actionlab import activations as A
from actionlab import series as S
from actionlab.expansion import action_series

DT = torch.float64
EPS = {torch.float64: torch.finfo(torch.float64).eps, torch.float32: torch.finfo(torch.float32).eps}
C = 256  # "a small multiple": measured worst cases are ≤ 60 (float64) and ≤ 130 (float32, inputs rounded first)


# ---------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------


def mp_lse_softmax(x: torch.Tensor, K: int, dps: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients of g = LSE_i f_i(t) and p_i = e^{f_i − g} for a (B, n, K+1) series, by mpmath."""
    mpmath.mp.dps = dps
    gs, ps = [], []
    for row in x.tolist():
        F = [[mpmath.mpf(v) for v in r] for r in row]

        def g(t, F=F):
            vals = [mpmath.polyval(r[::-1], t) for r in F]
            mx = max(vals)
            return mx + mpmath.log(sum(mpmath.exp(v - mx) for v in vals))

        gs.append([float(c) for c in mpmath.taylor(g, 0, K)])
        ps.append([
            [float(c) for c in mpmath.taylor(lambda t, i=i, g=g, F=F: mpmath.exp(mpmath.polyval(F[i][::-1], t) - g(t)), 0, K)]
            for i in range(len(F))
        ])
    return torch.tensor(gs, dtype=DT), torch.tensor(ps, dtype=DT)


def old_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The earlier formulation: LSE(f_0) + ln Σ_i softmax(f_0)_i · exp(f_i − f_{i,0}) (series exp / log)."""
    x0 = x[..., 0]
    mx = x0.amax(dim=dim, keepdim=True)
    e0 = torch.exp(x0 - mx)
    s0 = e0.sum(dim=dim, keepdim=True)
    d = x.clone()
    d[..., 0] = 0
    s = (S.exp(d) * (e0 / s0).unsqueeze(-1)).sum(dim=dim)
    out = S.log(s)
    out[..., 0] = (mx + torch.log(s0)).squeeze(dim)
    return out


def logits_series(gen, B, n, K, L, s):
    """Random series: constant terms of scale L (L = 100: the softmax saturates), the rest of scale s."""
    x = torch.randn(B, n, K + 1, dtype=DT, generator=gen) * s
    x[..., 0] = torch.randn(B, n, dtype=DT, generator=gen) * L
    return x


def rel_to_scale(got, ref, scale):
    return float(((got - ref).abs() / scale).max())


# ---------------------------------------------------------------------------------------
# the series rules
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def series_case(L: int, s: int, K: int = 16):
    """A random series rounded to float32 (so that both dtypes see the same function) and its references.

    Row 0 gets a near-tie at the top (the runner-up 0.7 below the leader), the other rows are
    saturated at L ≥ 30 (one class ahead by tens).
    """
    x = logits_series(torch.Generator().manual_seed(L * 100 + s), 3, 5, K, L, s)
    top = x[0, :, 0].argmax()
    x[0, (top + 1) % 5, 0] = x[0, top, 0] - 0.7
    x = x.float().double()
    return (x, *mp_lse_softmax(x, K))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("L,s", [(1, 1), (1, 10), (30, 10), (30, 30), (100, 10), (100, 30)])
def test_logsumexp_softmax_exact_to_order_16_at_any_logits(L, s, dtype):
    K = 16
    x, g_ref, p_ref = series_case(L, s)
    xd = x.to(dtype)
    g, p, ls = S.logsumexp(xd, 1).double(), S.softmax(xd, 1).double(), S.log_softmax(xd, 1).double()
    assert g.dtype == p.dtype == DT and torch.isfinite(g).all() and torch.isfinite(p).all()
    scale = torch.maximum(x.abs().amax(1), g_ref.abs()).cummax(-1).values  # (B, K+1)
    eps = EPS[dtype]
    assert rel_to_scale(g, g_ref, scale) <= C * eps
    assert rel_to_scale(ls, x - g_ref.unsqueeze(1), scale.unsqueeze(1)) <= C * eps
    # p's coefficients: relative to their own size (p_0 ≤ 1) times the same growth
    pscale = (p_ref.abs().amax(1).cummax(-1).values).clamp(min=1.0) * scale / scale[..., :1].clamp(min=1.0)
    assert rel_to_scale(p, p_ref, pscale.unsqueeze(1)) <= C * eps
    # Σ_i p_i ≡ 1
    torch.testing.assert_close(p.sum(1), S.constant(torch.ones(3, dtype=DT), K), rtol=0, atol=C * eps * float(pscale.max()))


def test_old_formulation_fails_where_the_new_one_holds():
    """The reason for the change: at saturated logits the earlier form loses ~one digit per order."""
    K = 16
    x, g_ref, _ = series_case(30, 10)
    scale = torch.maximum(x.abs().amax(1), g_ref.abs()).cummax(-1).values
    new = rel_to_scale(S.logsumexp(x, 1), g_ref, scale) / EPS[DT]
    old = rel_to_scale(old_logsumexp(x, 1), g_ref, scale) / EPS[DT]
    assert new <= C < 1e4 < old, (new, old)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 7),
    K=st.integers(0, 8),
    L=st.floats(0.0, 5.0),
    s=st.floats(0.0, 2.0),
)
def test_new_logsumexp_equals_old_formulation_at_moderate_logits(seed, n, K, L, s):
    x = logits_series(torch.Generator().manual_seed(seed), 3, n, K, L, s)
    new, old = S.logsumexp(x, 1), old_logsumexp(x, 1)
    scale = torch.maximum(x.abs().amax(1), old.abs()).cummax(-1).values.clamp(min=1.0)
    assert rel_to_scale(new, old, scale) <= 1e-12
    # other axes and negative dims
    xt = x.transpose(0, 1)  # (n, 3, K+1): reduce over batch axis 0
    torch.testing.assert_close(S.logsumexp(xt, 0), new, rtol=0, atol=1e-12 * float(scale.max()))
    torch.testing.assert_close(S.logsumexp(x, -1), new, rtol=0, atol=0)
    torch.testing.assert_close(S.softmax(xt, 0), S.softmax(x, 1).transpose(0, 1), rtol=0, atol=0)


def test_logsumexp_gradient_matches_float64_autodiff_at_saturated_logits():
    """autograd passes through the recurrence: d g_k / d f against the derivative of the reference formula."""
    K = 5
    x = logits_series(torch.Generator().manual_seed(7), 3, 4, K, 100, 3).requires_grad_(True)
    w = torch.randn(K + 1, dtype=DT, generator=torch.Generator().manual_seed(8))
    (gr,) = torch.autograd.grad((S.logsumexp(x, 1) * w).sum(), x)
    # reference: coefficients by nested autodiff of t ↦ LSE(Σ_k x_k t^k), then differentiated in x
    def ref(xx):
        t = torch.zeros(3, 1, dtype=DT, requires_grad=True)
        g = torch.logsumexp(sum(xx[..., k] * t**k for k in range(K + 1)), dim=1)
        out = [g]
        for k in range(1, K + 1):
            (g,) = torch.autograd.grad(g.sum(), t, create_graph=True)
            g = g.squeeze(-1)
            out.append(g / math.factorial(k))
        return (torch.stack(out, -1) * w).sum()
    (gref,) = torch.autograd.grad(ref(x), x)
    torch.testing.assert_close(gr, gref, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------
# the action's series at saturated base points
# ---------------------------------------------------------------------------------------


def saturated_problem(seed: int, L: float, M=4, H=5, E=3, N=6):
    """A random θ and a base point whose largest |logit| is exactly L (U0, c0 rescaled)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, E, dtype=DT, generator=g)
    labels = torch.arange(N) % M

    def th(scale):
        return {
            "U": torch.randn(M, H, dtype=DT, generator=g) * scale,
            "c": torch.randn(M, dtype=DT, generator=g) * scale,
            "W": torch.randn(H, E, dtype=DT, generator=g) * scale,
            "b": torch.randn(H, dtype=DT, generator=g) * scale,
        }

    theta, base = th(0.6), th(1.0)
    f0 = torch.tanh(z @ base["W"].T + base["b"]) @ base["U"].T + base["c"]
    a = L / float(f0.abs().max())
    return z, labels, theta, dict(base, U=base["U"] * a, c=base["c"] * a)


MP_ACT = {"tanh": mpmath.tanh, "silu": lambda x: x / (1 + mpmath.exp(-x))}


def mp_action_series(theta, base, act: str, z, labels, K, dps=40):
    """By mpmath: [S_0..S_K] of t ↦ S(base + tθ), and the coefficients' size at each order.

    The size is scale_k = max_{j≤k} max over samples i of |ℓ_{i,j}| and max_a |f_{i,a,j}|, with
    ℓ_i(t) = −ln q_{m_i}(z_i) and f_i(t) the logits (S = mean_i ℓ_i may cancel far below both).
    """
    mpmath.mp.dps = dps
    sig = MP_ACT[act]
    T = {k: v.tolist() for k, v in theta.items()}
    B = {k: (v if base is not None else torch.zeros_like(v)).tolist() for k, v in (base or theta).items()}
    M, H = len(T["U"]), len(T["U"][0])

    def logits(t, zi):
        h = [
            sig(sum((B["W"][b][e] + t * T["W"][b][e]) * zi[e] for e in range(len(zi))) + B["b"][b] + t * T["b"][b])
            for b in range(H)
        ]
        return [sum((B["U"][a][b] + t * T["U"][a][b]) * h[b] for b in range(H)) + B["c"][a] + t * T["c"][a] for a in range(M)]

    def loss(t, zi, m):
        f = logits(t, zi)
        mx = max(f)
        return mx + mpmath.log(sum(mpmath.exp(v - mx) for v in f)) - f[m]

    ell, fsize = [], []
    for zi, m in zip(z.tolist(), labels.tolist()):
        ell.append([float(c) for c in mpmath.taylor(lambda t: loss(t, zi, m), 0, K)])
        fsize.append([[abs(float(c)) for c in mpmath.taylor(lambda t, a=a: logits(t, zi)[a], 0, K)] for a in range(M)])
    ell = torch.tensor(ell, dtype=DT)
    size = torch.maximum(ell.abs().amax(0), torch.tensor(fsize, dtype=DT).amax((0, 1)))
    return ell.mean(0), size.cummax(0).values.clamp(min=1.0)


def fwd_series(theta, base, act, z, labels, K):
    """[S_0..S_K] by nested float64 forward-mode autodiff (torch.func.jvp), cost ~2^K."""
    from torch.func import jvp

    def S_of(t):
        P = {k: base[k] + t * theta[k] for k in theta}
        logits = act(z @ P["W"].T + P["b"]) @ P["U"].T + P["c"]
        return torch.nn.functional.cross_entropy(logits, labels)

    t0, g, out = torch.zeros((), dtype=DT), S_of, []
    out.append(S_of(t0))
    for k in range(1, K + 1):
        g = (lambda g: lambda t: jvp(g, (t,), (torch.ones_like(t),))[1])(g)
        out.append(g(t0) / math.factorial(k))
    return torch.stack(out)


def assert_scaled(got, ref, eps, scale=None, C=C):
    scale = ref.abs().cummax(0).values.clamp(min=1.0) if scale is None else scale
    err = ((got.double() - ref).abs() / scale)
    assert float(err.max()) <= C * eps, f"max err / scale {float(err.max()):.2e} > {C}·{eps:.1e}\n got {got}\n ref {ref}"


@functools.lru_cache(maxsize=None)
def action_case(L: float, direction: str, K: int = 12):
    """A problem with base logits up to L, rounded to float32 (both dtypes see the same function), and its
    mpmath series. direction "along base": θ = 0.3·base, the ray through a trained-like point (the
    earlier logsumexp form lost ~8 digits there at L = 100); "random": an independent θ, where some
    samples have near-ties at the top and the coefficients grow fast (ill-conditioned, ~k·ε·size)."""
    z, labels, theta, base = saturated_problem(int(L), L)
    if direction == "along base":
        theta = {k: 0.3 * v for k, v in base.items()}
    r = lambda d: {k: v.float().double() for k, v in d.items()}  # noqa: E731
    theta, base, z = r(theta), r(base), z.float().double()
    return (z, labels, theta, base, *mp_action_series(theta, base, "tanh", z, labels, K))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "L,direction", [(1.0, "along base"), (30.0, "along base"), (100.0, "along base"), (100.0, "random")]
)
def test_action_series_exact_at_saturated_base_points(L, direction, dtype):
    K = 12
    z, labels, theta, base, ref, size = action_case(L, direction)
    cast = lambda d: {k: v.to(dtype) for k, v in d.items()}  # noqa: E731
    got = action_series(cast(theta), z.to(dtype), labels, K, base=cast(base), activation="tanh")
    assert got.dtype == dtype and torch.isfinite(got).all()
    assert_scaled(got, ref, EPS[dtype], size)


def test_action_series_at_theta_zero_to_order_16():
    K = 16
    z, labels, theta, _ = saturated_problem(5, 1.0)
    theta = {k: v * 3 for k, v in theta.items()}  # a long direction: logits up to ~30 along the ray
    ref, size = mp_action_series(theta, None, "silu", z, labels, K)
    assert_scaled(action_series(theta, z, labels, K, activation="silu"), ref, EPS[DT], size)


def test_action_series_matches_nested_forward_mode_at_logits_100():
    K = 6
    z, labels, theta, base = saturated_problem(100, 100.0)
    got = action_series(theta, z, labels, K, base=base, activation="tanh")
    assert_scaled(got, fwd_series(theta, base, A.get("tanh"), z, labels, K), EPS[DT])
