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
* ``logsumexp`` over an axis: shift by the constant coefficients (the
  max-trick), y = LSE(x_0) + ln Σ_α softmax(x_0)_α · exp(x_α − x_α,0), whose
  exponentials have constant term 1 — numerically stable for any logits.
* ``log_softmax`` = x − logsumexp(x).
* ``activation_on_ray``: σ(a0 + a1·t) = Σ_k σ^{(k)}(a0)/k! · a1^k t^k exactly
  (the argument is linear in t, so no composition is needed); on a kink the
  branch is picked by the sign of a1 (the piece the ray enters for t > 0).
* ``compose``: σ(x(t)) for a general series x by Horner's rule on the
  Taylor coefficients of σ at x_0 (O(K³) per element).

All functions are pure torch (autograd passes through them) and work for any
batch shape, dtype and device. Costs per element: mul / exp / log /
reciprocal O(K²), compose O(K³), activation_on_ray O(K).
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


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """ln Σ_α e^{x_α} over batch axis ``dim`` of a series (dim counts batch axes only, not the coefficient axis).

    Stable form: LSE(x) = LSE(x_0) + ln Σ_α softmax(x_0)_α · exp(x_α − x_α,0); the
    inner exponentials have constant coefficient 1 and the weighted sum has
    constant coefficient exactly 1, so nothing over- or underflows.
    """
    _check_series(x)
    nb = x.dim() - 1
    if dim < 0:
        dim += nb
    if not 0 <= dim < nb:
        raise ShapeError(f"dim must index a batch axis of the series (0..{nb - 1}), got {dim}")
    x0 = x[..., 0].contiguous()
    mx = x0.amax(dim=dim, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    e0 = torch.exp(x0 - mx)
    s0 = e0.sum(dim=dim, keepdim=True)
    lse0 = (mx + torch.log(s0)).squeeze(dim)
    w = e0 / s0  # softmax(x0)
    d = x.clone()
    d[..., 0] = 0
    e = exp(d)  # constant term 1
    s = (e * w.unsqueeze(-1)).sum(dim=dim)
    out = log(s)
    out[..., 0] = lse0  # ln s_0 = ln 1 = 0 exactly; put the constant back
    return out


def log_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x − logsumexp(x) along batch axis ``dim``."""
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
    "log_softmax": log_softmax,
    "activation_on_ray": activation_on_ray,
    "compose": compose,
}
