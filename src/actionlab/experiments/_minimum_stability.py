"""Linear stability of heavy-ball gradient descent at a minimum of the squared loss (004 Lemma 6, A.7).

Source 004 (Karakida, Akaho & Amari), supplement A.7: near a global minimum θ*
with E(θ*) = 0 and ∇E(θ*) = 0, heavy-ball GD with a perturbation θ_t = θ* + Δ_t
obeys Δ_{t+1} = (I − ηF)Δ_t + μ(Δ_t − Δ_{t−1}) (A.51); in the eigenbasis of F each
component follows (1 − ηλ_i + μ)Δ̄_{t,i} − μΔ̄_{t−1,i} (A.52) with the roots
λ_± of A.53, and the recurrence converges iff ηλ_i < 2(1 + μ) for all i, i.e.
η < η_c = 2(1 + μ)/λ_max.

This module holds the pieces of that measurement, over a model turned into a
function of one flat parameter vector (``torch.func.functional_call``):

* :func:`squared_loss` — E(θ) = (1/T) Σ_t ½‖f(x_t; θ) − y_t‖² (one-hot y). Its Hessian
  is (1/T) Σ_t J_tᵀJ_t + (1/T) Σ_{t,k} r_{t,k} ∇²f_k(t), so at zero residual r it
  equals the squared-loss FIM F = (1/T) Σ_t J_tᵀJ_t (A.26) that
  :mod:`actionlab.fisher.empirical` measures;
* :func:`train_to_minimum` — full-batch L-BFGS to a root-mean-square residual below a tolerance;
* :func:`hessian_lambda_max` — λ_max of ∇²E by Lanczos (``scipy.sparse.linalg.eigsh``) on
  Hessian–vector products (forward-over-reverse ``torch.func.jvp`` of ``torch.func.grad``);
* :func:`heavy_ball` — θ_{k+1} = θ_k − η∇E(θ_k) + μ(θ_k − θ_{k−1}), θ_{−1} = θ_0 (A.51 with
  Δ_{−1} = Δ_0; the same iterate as ``torch.optim.SGD(momentum=μ, dampening=0)``), with the
  stated divergence criterion: the distance from θ* exceeds ``growth`` × ‖Δ_0‖ (or is
  non-finite) within ``steps`` steps;
* :func:`critical_ratio` — bisection on r of η = r·η_c between a stable and an unstable r.

The math never reads files or prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from actionlab._checks import ValueCheckError, check_positive
from actionlab._display import short_repr

__all__ = ["FlatModel", "Minimum", "HeavyBallRun", "CriticalRatio", "flat_model", "squared_loss",
           "train_to_minimum", "gradient", "hessian_top_eigenpair", "hessian_lambda_max",
           "linear_mode_diverges", "heavy_ball", "critical_ratio", "random_direction"]


@dataclass
class FlatModel:
    """``f(θ, x)``: the model as a function of its flat parameter vector; ``theta0`` its current parameters."""

    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    theta0: torch.Tensor
    names: list[str]
    shapes: list[torch.Size]

    def load_into(self, model: nn.Module, theta: torch.Tensor) -> None:
        """Write the flat ``theta`` into ``model``'s parameters (in place)."""
        with torch.no_grad():
            for p, t in zip(model.parameters(), torch.split(theta, [math.prod(s) for s in self.shapes])):
                p.copy_(t.reshape(p.shape))


def flat_model(model: nn.Module) -> FlatModel:
    """The model as ``f(θ, x)`` over one flat parameter vector (``torch.func.functional_call``)."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def f(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {n: t.reshape(s) for n, t, s in zip(names, torch.split(theta, sizes), shapes)}, (x,))

    return FlatModel(f, torch.cat([p.reshape(-1) for p in params]).clone(), names, shapes)


def squared_loss(fm: FlatModel, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """E(θ) = (1/T) Σ_t ½‖f(x_t; θ) − y_t‖² with ``y`` the T × C targets (the trainer's "mse"; A.51's E)."""
    T = x.shape[0]
    return lambda theta: 0.5 * ((fm.f(theta, x) - y) ** 2).sum() / T


@short_repr
@dataclass
class Minimum:
    """A (near) zero-residual minimum θ* reached by full-batch L-BFGS."""

    theta: torch.Tensor
    loss: float  # E(θ*)
    residual_rms: float  # √(2E/C) = root-mean-square of f(x_t)_k − y_{t,k}
    grad_norm: float  # ‖∇E(θ*)‖
    iterations: int
    converged: bool


def train_to_minimum(loss: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor, C: int,
                     residual_tol: float = 1e-8, max_iter: int = 5000) -> Minimum:
    """Full-batch L-BFGS (strong Wolfe line search) on E from θ_0 until the RMS residual √(2E/C) ≤ ``residual_tol``."""
    check_positive(residual_tol, "residual_tol")
    theta = theta0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=50, history_size=50, tolerance_grad=0.0,
                            tolerance_change=0.0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        e = loss(theta)
        e.backward()
        return e

    it, target = 0, 0.5 * C * residual_tol**2
    while it < max_iter:
        e = float(opt.step(closure).detach())
        it += 50
        if not math.isfinite(e):
            break
        if float(loss(theta).detach()) <= target:
            break
    theta = theta.detach()
    with torch.enable_grad():
        th = theta.clone().requires_grad_(True)
        e = loss(th)
        (g,) = torch.autograd.grad(e, th)
    e = float(e.detach())
    rms = math.sqrt(2 * max(e, 0.0) / C)
    return Minimum(theta, e, rms, float(g.norm()), it, rms <= residual_tol)


def gradient(loss: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """θ ↦ ∇E(θ) by reverse-mode autograd (on small networks ~10× faster per call than ``torch.func.grad``)."""

    def g(theta: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            th = theta.detach().requires_grad_(True)
            return torch.autograd.grad(loss(th), th)[0]

    return g


def hessian_top_eigenpair(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, tol: float = 1e-10,
                          seed: int = 0) -> tuple[float, torch.Tensor]:
    """(λ_max, unit eigenvector) of ∇²E(θ) by Lanczos (``eigsh``, which="LA") on Hessian–vector products jvp(grad E)."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    from torch.func import grad, jvp

    g = grad(loss)
    P = theta.numel()

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=theta.dtype, device=theta.device)
        return jvp(g, (theta,), (t,))[1].detach().cpu().double().numpy()

    op = LinearOperator((P, P), matvec=mv, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(P)
    vals, vecs = eigsh(op, k=1, which="LA", tol=tol, v0=v0)
    vec = torch.as_tensor(vecs[:, 0], dtype=theta.dtype, device=theta.device)
    return float(vals[0]), vec / vec.norm()


def hessian_lambda_max(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, tol: float = 1e-10,
                       seed: int = 0) -> float:
    """λ_max of ∇²E(θ) (:func:`hessian_top_eigenpair`)."""
    return hessian_top_eigenpair(loss, theta, tol, seed)[0]


def linear_mode_diverges(ratio: float, momentum: float, share: float, steps: int, growth: float = 10.0) -> bool:
    """Whether the top mode alone, Δ̄_{k+1} = (1 − ηλ + μ)Δ̄_k − μΔ̄_{k−1} (A.52) with ηλ = 2(1+μ)·ratio and
    Δ̄_0 = Δ̄_{−1} = ``share`` (its share of ‖Δ_0‖ = 1), exceeds ``growth`` within ``steps`` steps.

    This is the linearised dynamics' detection limit of :func:`heavy_ball`'s criterion at finite K: the
    other modes do not grow, so r* of the linear model at K steps is the boundary of this function (> 1).
    """
    a = 1.0 - 2.0 * (1.0 + momentum) * ratio + momentum
    cur, prev = share, share
    for _ in range(steps):
        cur, prev = a * cur - momentum * prev, cur
        if not abs(cur) <= growth:
            return True
    return False


def random_direction(theta: torch.Tensor, size: float, generator: torch.Generator) -> torch.Tensor:
    """Δ_0 = size · ‖θ‖ · g/‖g‖ with g ~ N(0, I) (an isotropic perturbation of relative size ``size``)."""
    g = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta)
    return size * float(theta.norm()) * g / g.norm()


@short_repr
@dataclass
class HeavyBallRun:
    """One heavy-ball GD run from θ* + Δ_0."""

    lr: float
    momentum: float
    diverged: bool
    steps: int  # steps taken (the step at which it diverged, else ``steps``)
    max_growth: float  # max_k ‖Δ_k‖/‖Δ_0‖
    final_growth: float  # ‖Δ_K‖/‖Δ_0‖


def heavy_ball(loss: Callable[[torch.Tensor], torch.Tensor], theta_star: torch.Tensor, delta0: torch.Tensor, lr: float,
               momentum: float, steps: int, growth: float = 10.0) -> HeavyBallRun:
    """Full-batch heavy-ball GD θ_{k+1} = θ_k − η∇E(θ_k) + μ(θ_k − θ_{k−1}) from θ_0 = θ* + Δ_0, θ_{−1} = θ_0 (A.51).

    Diverged: ‖θ_k − θ*‖ > ``growth`` · ‖Δ_0‖, or a non-finite iterate, for some k ≤ ``steps``.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueCheckError(f"momentum must lie in [0, 1), got {momentum}")
    check_positive(lr, "lr")
    check_positive(growth, "growth")
    g = gradient(loss)
    d0 = float(delta0.norm())
    if not d0 > 0:
        raise ValueCheckError("the perturbation Δ_0 must be non-zero")
    theta, prev = theta_star + delta0, theta_star + delta0
    worst = 1.0
    for k in range(1, steps + 1):
        theta, prev = theta - lr * g(theta) + momentum * (theta - prev), theta
        ratio = float((theta - theta_star).norm()) / d0
        worst = max(worst, ratio) if math.isfinite(ratio) else math.inf
        if not ratio <= growth:  # also catches NaN
            return HeavyBallRun(lr, momentum, True, k, worst, ratio)
    return HeavyBallRun(lr, momentum, False, steps, worst, ratio if steps else 1.0)


@short_repr
@dataclass
class CriticalRatio:
    """The boundary r* between the largest stable and the smallest unstable ratio found by bisection."""

    r_star: float  # (stable + unstable)/2
    stable: float  # largest r found stable
    unstable: float  # smallest r found unstable
    evaluations: int
    bracketed: bool  # whether the initial bracket had a stable low end and an unstable high end


def critical_ratio(unstable: Callable[[float], bool], low: float, high: float, tol: float = 1e-3,
                   max_evaluations: int = 40) -> CriticalRatio:
    """Bisection on r ∈ [low, high] for the boundary of ``unstable(r)`` (assumed monotone: unstable above r*).

    Stops when high − low ≤ ``tol``. If ``low`` is already unstable or ``high`` still stable the bracket
    is widened (×/÷ 2, at most 6 times); ``bracketed`` says whether that succeeded.
    """
    if not 0 < low < high:
        raise ValueCheckError(f"need 0 < low < high, got low={low}, high={high}")
    check_positive(tol, "tol")
    n = 0
    for _ in range(6):
        n += 1
        if not unstable(low):
            break
        low /= 2
    else:
        return CriticalRatio(math.nan, math.nan, low, n, False)
    for _ in range(6):
        n += 1
        if unstable(high):
            break
        high *= 2
    else:
        return CriticalRatio(math.nan, high, math.nan, n, False)
    while high - low > tol and n < max_evaluations:
        mid = 0.5 * (low + high)
        n += 1
        if unstable(mid):
            high = mid
        else:
            low = mid
    return CriticalRatio(0.5 * (low + high), low, high, n, True)
