"""Truncated Taylor-series arithmetic on tensors (Taylor mode, in the spirit of JAX's jet).

A *series* is a tensor whose **last axis** holds the Taylor coefficients
``x[..., k]`` of a function of one real variable ``t``,

    x(t) = x[..., 0] + x[..., 1]·t + … + x[..., K]·t^K + O(t^{K+1}),

so ``x[..., k] = x^{(k)}(0)/k!`` (normalised coefficients, not derivatives).
Every operation maps series of order K to a series of order K and is exact up
to that order (the coefficient of t^k of the result depends only on the
coefficients 0..k of the arguments).

The operations form a small table of rules, :data:`RULES`, one per primitive —
like ``jax.experimental.jet`` — instead of special cases scattered through the
callers. The recurrences are the classical ones (Griewank & Walther,
*Evaluating Derivatives*, ch. 13):

* ``mul``:   z_k = Σ_{j=0..k} x_j y_{k−j}                         (Cauchy product)
* ``reciprocal``: y_0 = 1/x_0,  y_k = −(1/x_0) Σ_{j=1..k} x_j y_{k−j}
* ``exp``:   y_0 = e^{x_0},    y_k = (1/k) Σ_{j=1..k} j x_j y_{k−j}
* ``log``:   y_0 = ln x_0,     y_k = (x_k − (1/k) Σ_{j=1..k−1} j y_j x_{k−j}) / x_0
* ``power`` (real p): y_0 = x_0^p, y_k = (1/(k x_0)) Σ_{j=1..k} (p·j − (k−j)) x_j y_{k−j}
* ``logsumexp`` / ``softmax`` over an axis, through the probabilities' own
  series p_α = e^{x_α − g} (all in [0, 1]): g_0 = LSE(x_0), p_α,0 = softmax(x_0)_α,
  g_k = (1/k) Σ_{j=1..k} j Σ_α x_α,j p_α,k−j,
  p_α,k = (1/k) Σ_{j=1..k} j (x_α,j − g_j) p_α,k−j  (from g' = Σ_α p_α x_α',
  i.e. Σ_α p_α ≡ 1) — accurate to working precision times the coefficients'
  size at any logits, saturated (~100) ones included.
* ``log_softmax`` = x − logsumexp(x).
* ``activation_on_ray``: σ(a0 + a1·t) = Σ_k σ^{(k)}(a0)/k! · a1^k t^k exactly
  (the argument is linear in t, so no composition is needed); on a kink the
  branch is picked by the sign of a1 (the piece the ray enters for t > 0).
* ``compose``: σ(x(t)) for a general series x by Horner's rule on the
  Taylor coefficients of σ at x_0 (O(K³) per element).

All functions are pure torch (autograd passes through them) and work for any
batch shape, dtype and device. Costs per element: mul / exp / log /
reciprocal / logsumexp O(K²), compose O(K³), activation_on_ray O(K).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from actionlab._checks import ShapeError, ValueCheckError

__all__ = [
    "RULES",
    "constant",
    "variable",
    "order_of",
    "add",
    "sub",
    "neg",
    "scale",
    "mul",
    "reciprocal",
    "div",
    "exp",
    "log",
    "power",
    "logsumexp",
    "softmax",
    "log_softmax",
    "activation_on_ray",
    "compose",
    "evaluate",
    "matmul_coeffs",
]


def _check_series(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueCheckError(f"{name} must be a torch.Tensor series (coefficients on the last axis), got {type(x).__name__}")
    if x.dim() == 0:
        raise ShapeError(f"{name} must have a coefficient axis (last axis of length K+1); got a 0-d tensor")
    return x


def _same_order(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[-1] != y.shape[-1]:
        raise ShapeError(
            f"series orders differ: {x.shape[-1] - 1} and {y.shape[-1] - 1}; truncate one with x[..., :K+1] first"
        )


def order_of(x: torch.Tensor) -> int:
    """The truncation order K of a series (its last axis has K+1 coefficients)."""
    return _check_series(x).shape[-1] - 1


def constant(value: torch.Tensor, order: int) -> torch.Tensor:
    """The series of a constant: [value, 0, …, 0]."""
    value = torch.as_tensor(value)
    out = value.new_zeros(value.shape + (order + 1,))
    out[..., 0] = value
    return out


def variable(x0: torch.Tensor, x1: torch.Tensor, order: int) -> torch.Tensor:
    """The series of x0 + x1·t (a point moving along a ray)."""
    x0, x1 = torch.broadcast_tensors(torch.as_tensor(x0), torch.as_tensor(x1))
    out = x0.new_zeros(x0.shape + (order + 1,))
    out[..., 0] = x0
    if order >= 1:
        out[..., 1] = x1
    return out


def add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(x + y)_k = x_k + y_k."""
    _same_order(_check_series(x), _check_series(y, "y"))
    return x + y


def sub(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(x − y)_k = x_k − y_k."""
    _same_order(_check_series(x), _check_series(y, "y"))
    return x - y


def neg(x: torch.Tensor) -> torch.Tensor:
    return -_check_series(x)


def scale(x: torch.Tensor, a: torch.Tensor | float) -> torch.Tensor:
    """a·x for a t-independent a (a broadcasts against x's batch shape)."""
    _check_series(x)
    if isinstance(a, torch.Tensor):
        a = a.unsqueeze(-1)
    return x * a


def mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cauchy product z_k = Σ_{j=0..k} x_j y_{k−j}."""
    _same_order(_check_series(x), _check_series(y, "y"))
    K = x.shape[-1] - 1
    x, y = torch.broadcast_tensors(x, y)
    out = []
    for k in range(K + 1):
        # Σ_j x_j y_{k-j}: flip y's first k+1 coefficients
        out.append((x[..., : k + 1] * y[..., : k + 1].flip(-1)).sum(-1))
    return torch.stack(out, -1)


def reciprocal(x: torch.Tensor) -> torch.Tensor:
    """1/x: y_0 = 1/x_0, y_k = −(1/x_0) Σ_{j=1..k} x_j y_{k−j}."""
    _check_series(x)
    K = x.shape[-1] - 1
    inv0 = 1.0 / x[..., 0]
    ys = [inv0]
    for k in range(1, K + 1):
        acc = sum(x[..., j] * ys[k - j] for j in range(1, k + 1))
        ys.append(-inv0 * acc)
    return torch.stack(ys, -1)


def div(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x / y = x · (1/y)."""
    return mul(x, reciprocal(y))


def exp(x: torch.Tensor) -> torch.Tensor:
    """e^x: y_0 = e^{x_0}, y_k = (1/k) Σ_{j=1..k} j x_j y_{k−j}."""
    _check_series(x)
    K = x.shape[-1] - 1
    ys = [torch.exp(x[..., 0])]
    for k in range(1, K + 1):
        acc = sum(j * x[..., j] * ys[k - j] for j in range(1, k + 1))
        ys.append(acc / k)
    return torch.stack(ys, -1)


def log(x: torch.Tensor) -> torch.Tensor:
    """ln x: y_0 = ln x_0, y_k = (x_k − (1/k) Σ_{j=1..k−1} j y_j x_{k−j}) / x_0 (needs x_0 > 0)."""
    _check_series(x)
    K = x.shape[-1] - 1
    x0 = x[..., 0]
    ys = [torch.log(x0)]
    for k in range(1, K + 1):
        acc = x[..., k]
        if k > 1:
            acc = acc - sum(j * ys[j] * x[..., k - j] for j in range(1, k)) / k
        ys.append(acc / x0)
    return torch.stack(ys, -1)


def power(x: torch.Tensor, p: float) -> torch.Tensor:
    """x^p for real p (x_0 > 0 unless p is a non-negative integer, which uses repeated products).

    y_0 = x_0^p, y_k = (1/(k x_0)) Σ_{j=1..k} (p·j − (k − j)) x_j y_{k−j}.
    """
    _check_series(x)
    if float(p).is_integer() and p >= 0:
        n = int(p)
        out = constant(torch.ones_like(x[..., 0]), x.shape[-1] - 1)
        base = x
        while n:  # square-and-multiply
            if n & 1:
                out = mul(out, base)
            n >>= 1
            if n:
                base = mul(base, base)
        return out
    K = x.shape[-1] - 1
    x0 = x[..., 0]
    ys = [x0**p]
    for k in range(1, K + 1):
        acc = sum((p * j - (k - j)) * x[..., j] * ys[k - j] for j in range(1, k + 1))
        ys.append(acc / (k * x0))
    return torch.stack(ys, -1)


def _lse_softmax(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, p): the series of g = logsumexp over batch axis ``dim`` and of p = softmax along it.

    p has the shape of x; g has the axis ``dim`` removed. The recurrence is the coefficient form of
    p_i' = p_i (f_i' − g') and g' = Σ_i p_i f_i' (from Σ_i p_i ≡ 1):

        g_k    = (1/k) Σ_{j=1..k} j Σ_i f_{i,j} p_{i,k−j},
        p_{i,k} = (1/k) Σ_{j=1..k} j (f_{i,j} − g_j) p_{i,k−j},

    started from g_0 = torch.logsumexp(f_0) and p_0 = softmax(f_0).
    """
    _check_series(x)
    nb = x.dim() - 1
    if dim < 0:
        dim += nb
    if not 0 <= dim < nb:
        raise ShapeError(f"dim must index a batch axis of the series (0..{nb - 1}), got {dim}")
    f = x.movedim(dim, -2)  # (..., n, K+1)
    K = f.shape[-1] - 1
    f0 = f[..., 0]
    g0 = torch.logsumexp(f0, dim=-1)
    p0 = torch.softmax(f0, dim=-1)
    if K == 0:
        return g0.unsqueeze(-1), p0.unsqueeze(-1).movedim(-2, dim)
    # Shift invariance: g(f − c) = g(f) − c and p(f − c) = p(f) for any series c common to all i.
    # c_j = Σ_i p_{i,0} f_{i,j} (j ≥ 1) centres the classes that carry the weight, so that where
    # the softmax saturates the dominant class's f_j − c_j is small and its rounding error is not
    # multiplied by |f_j| again at every order; it also makes g_1 − c_1 = 0 exactly.
    c = (p0.unsqueeze(-1) * f[..., 1:]).sum(-2)  # (..., K)
    fc = f[..., 1:] - c.unsqueeze(-2)  # f̃_j = f_j − c_j, j = 1..K, with Σ_i p_{i,0} f̃_{i,j} = 0
    # In the centred variables the j = k term of g̃_k's sum vanishes (Σ_i p_{i,0} f̃_{i,k} = 0), so with
    # h_j = j (f̃_j − g̃_j) and q_k = (1/k) Σ_{j=1..k−1} h_j p_{k−j}:  g̃_k = Σ_i q_{i,k} and
    # p_k = q_k + (f̃_k − g̃_k) p_0 — one reduction per order.
    gs, ps, hs = [g0], [p0], []
    for k in range(1, K + 1):
        q = sum((hs[j - 1] * ps[k - j] for j in range(1, k)), torch.zeros_like(p0)) / k
        g_k = q.sum(-1)
        d_k = fc[..., k - 1] - g_k.unsqueeze(-1)
        hs.append(k * d_k)
        ps.append(q + d_k * p0)
        gs.append(g_k + c[..., k - 1])
    return torch.stack(gs, -1), torch.stack(ps, -1).movedim(-2, dim)


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """g = ln Σ_i e^{f_i} over batch axis ``dim`` of a series f (dim counts batch axes only, not the coefficient axis).

    Computed through the softmax probabilities' own series p_i(t) = e^{f_i(t) − g(t)}
    (see :func:`softmax` for the recurrence): g_0 = torch.logsumexp(f_0) and, for k ≥ 1,
    g_k = (1/k) Σ_{j=1..k} j Σ_i f_{i,j} p_{i,k−j}, i.e. g' = Σ_i p_i f_i' in coefficients.
    Every intermediate is a Taylor coefficient of f, g or of a p_i (a function with
    values in [0, 1]), so nothing grows beyond the coefficients' own size, at any
    logits: the error at orders ≤ 16 stays a small multiple of the working
    precision times max_{j≤k} (|f_{·,j}| + |g_j|), at θ = 0 and at saturated points
    (logits ~100) alike — measured against an mpmath reference by
    tests/test_series_saturated.py (numbers in docs/expansion.md). float32
    behaves the same at its own precision (~1e-7 relative). The earlier form
    LSE(f_0) + ln Σ_i softmax(f_0)_i e^{f_i − f_{i,0}} took ln of a series whose
    exponentials have coefficients ~ |f_1|^k/k! while the result's are ~ |f_1|:
    at logits ~100 it lost about one digit per order.
    """
    return _lse_softmax(x, dim)[0]


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The series of p_i = e^{f_i − g}, g = logsumexp(f), along batch axis ``dim``.

    From p_i' = p_i (f_i' − g') and Σ_i p_i ≡ 1 (so g' = Σ_i p_i f_i'):
    p_{i,0} = softmax(f_0)_i and p_{i,k} = (1/k) Σ_{j=1..k} j (f_{i,j} − g_j) p_{i,k−j};
    Σ_i p_{i,k} = 0 for k ≥ 1 holds by construction. Same accuracy as :func:`logsumexp`.
    """
    return _lse_softmax(x, dim)[1]


def log_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """f − logsumexp(f) along batch axis ``dim``."""
    nb = x.dim() - 1
    d = dim + nb if dim < 0 else dim
    return x - logsumexp(x, d).unsqueeze(d)


def _side_tensor(x1: torch.Tensor) -> torch.Tensor:
    """+1 where x1 ≥ 0, −1 where x1 < 0 (the branch the ray enters for t > 0)."""
    return torch.where(x1 >= 0, torch.ones_like(x1), -torch.ones_like(x1))


def activation_on_ray(act, a0: torch.Tensor | None, a1: torch.Tensor, order: int) -> torch.Tensor:
    """The series of σ(a0 + a1·t), exact: coefficient k is σ^{(k)}(a0)/k! · a1^k.

    ``act`` is an :class:`actionlab.activations.Activation`. Where a0 lies on a
    kink of σ, the coefficients are those of the branch the ray enters for
    t > 0, chosen per element by the sign of a1 (right-sided Taylor
    coefficients; the function of t is then only one-sided smooth at t = 0).
    ``a0=None`` means a0 = 0 everywhere (expansion around θ = 0), which is
    computed from ``act.taylor`` without evaluating σ.
    """
    K = int(order)
    if K < 0:
        raise ValueCheckError(f"order must be ≥ 0, got {order}")
    side = _side_tensor(a1)
    if a0 is None:
        tp = torch.tensor(act.taylor(K, side=+1), dtype=a1.dtype, device=a1.device)
        at_kink = 0.0 in tuple(getattr(act, "kinks", ()))
        if at_kink:
            tm = torch.tensor(act.taylor(K, side=-1), dtype=a1.dtype, device=a1.device)
            coeff = torch.where(side.unsqueeze(-1) > 0, tp, tm)
        else:
            coeff = tp
    else:
        coeff = act.taylor_at(a0, K, side=side)
    if K == 0:
        return coeff.expand(a1.shape + (1,)).clone() if coeff.dim() == 1 else coeff
    pw = a1.unsqueeze(-1).expand(a1.shape + (K,)).cumprod(-1)  # a1, a1², …, a1^K
    pw = torch.cat([torch.ones_like(a1).unsqueeze(-1), pw], -1)
    return coeff * pw


def compose(act, x: torch.Tensor) -> torch.Tensor:
    """σ(x(t)) for a general series x: Σ_k σ^{(k)}(x_0)/k! · (x − x_0)^k by Horner's rule.

    Kinks at x_0 take the branch given by the sign of the first non-zero
    higher coefficient of x (the direction the argument moves for small t > 0).
    """
    _check_series(x)
    K = x.shape[-1] - 1
    x0 = x[..., 0]
    d = x.clone()
    d[..., 0] = 0
    # direction of motion: sign of the first non-zero coefficient of d
    side = torch.ones_like(x0)
    decided = torch.zeros_like(x0, dtype=torch.bool)
    for k in range(1, K + 1):
        nz = (d[..., k] != 0) & ~decided
        side = torch.where(nz, torch.sign(d[..., k]), side)
        decided = decided | nz
    c = act.taylor_at(x0, K, side=side)  # (..., K+1)
    out = constant(c[..., K], K)
    for k in range(K - 1, -1, -1):
        out = mul(out, d)
        out[..., 0] = out[..., 0] + c[..., k]
    return out


def evaluate(x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """The partial sum Σ_k x_k t^k (Horner)."""
    _check_series(x)
    K = x.shape[-1] - 1
    out = x[..., K]
    for k in range(K - 1, -1, -1):
        out = out * t + x[..., k]
    return out


def matmul_coeffs(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Apply a t-independent linear map to every coefficient: x has shape (..., n, K+1), A (m, n) → (..., m, K+1)."""
    _check_series(x)
    return torch.einsum("mn,...nk->...mk", A, x)


#: The rule table: one Taylor-mode rule per primitive (cf. jax.experimental.jet's ``jet_rules``).
RULES: dict[str, Callable[..., torch.Tensor]] = {
    "add": add,
    "sub": sub,
    "neg": neg,
    "scale": scale,
    "mul": mul,
    "reciprocal": reciprocal,
    "div": div,
    "exp": exp,
    "log": log,
    "pow": power,
    "logsumexp": logsumexp,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "activation_on_ray": activation_on_ray,
    "compose": compose,
}
