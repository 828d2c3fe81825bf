"""One registry of activation functions: values, derivatives and Taylor coefficients.

Every activation σ gives

* its value ``act(x)`` (plain torch ops, differentiable by autograd);
* closed-form derivatives ``act.derivative(x, n)`` for n = 1, 2;
* exact Taylor coefficients at 0, ``act.taylor(order, side=+1)`` =
  [σ(0), σ'(0), σ''(0)/2!, …, σ⁽ⁿ⁾(0)/n!] (``side=-1``: the left-hand ones);
* Taylor coefficients at any point, ``act.taylor_at(x0, order, side)``: the
  coefficients σ⁽ᵏ⁾(x0)/k! elementwise on the analytic piece containing x0.

The coefficients come from the first-order differential equation each
function satisfies, turned into a recurrence on power series (exact up to
float rounding, never finite differences):

===========  ===========================================  ================================================
name         σ(x)                                         recurrence for y = σ(x0 + t) = Σ y_k t^k
===========  ===========================================  ================================================
tanh         tanh x                                       (k+1) y_{k+1} = δ_{k0} − Σ_{i≤k} y_i y_{k−i}
sigmoid      1/(1+e^{−x})  (003's ``sigm``)              (k+1) y_{k+1} = y_k − Σ_{i≤k} y_i y_{k−i}
silu         x·sigmoid(x)  (notes 000/001)                y_k = x0 s_k + s_{k−1}   (s: sigmoid series)
softplus     ln(1+e^x)                                    (k+1) y_{k+1} = s_k
relu_omega   ω ln(e^{ιx/ω} + e^{x/ω})  (003 §1)           ι x + ω softplus((1−ι) x/ω)
erf          (2/√π)∫₀ˣ e^{−u²} du  (004 App. B.1)         (k+1) y_{k+1} = (2/√π) g_k,  g = e^{−x²}:
                                                          (k+1) g_{k+1} = −2(x0 g_k + g_{k−1})
gelu         x Φ(x)                                       y_k = x0 Φ_k + Φ_{k−1}, (k+1) Φ_{k+1} = φ_k,
                                                          (k+1) φ_{k+1} = −(x0 φ_k + φ_{k−1})
elu          x (x ≥ 0), α(eˣ − 1) (x < 0)  (003 §1)       left piece: y_0 = α(e^{x0}−1), y_k = α e^{x0}/k!
relu         max(x, 0)                                    pieces [x0, 1, 0, …] and 0
leaky_relu   x (x ≥ 0), a·x (x < 0)                       pieces [x0, 1, 0, …] and a·[x0, 1, 0, …]
linear       x                                            [x0, 1, 0, …]
===========  ===========================================  ================================================

Each activation also carries what the rest of the library needs to know about it:

* the Gaussian integrals of the mean-field theory (004 appendix B) in closed
  form where one is known, ``act.q_hat(q)`` = ∫Dz σ(√q z)² (eq. (9); B.3, B.9,
  B.13), ``act.I_phi(a, b)`` = E[σ(u₁)σ(u₂)] (B.5; B.7, B.11, B.15) and
  ``act.I_dphi(a, b)`` = E[σ'(u₁)σ'(u₂)] (B.8; B.4, B.10/B.12 corrected,
  B.14/B.16) for (u₁, u₂) centred Gaussian with variances a and covariance b —
  ``None`` where no closed form is known (erf, relu, leaky_relu, linear have
  all three; :mod:`actionlab.fisher.meanfield` falls back to quadrature);
* its single-neuron relative Fisher information coefficient
  ``act.rfim_coefficient(a, output)`` = ν(a), the RFIM being ν(wᵀx̃) x̃x̃ᵀ
  (003 table 1): Bernoulli outputs for tanh (sech² a, 003 §2.1) and sigmoid
  (sigm(1 − sigm), §2.2), the Gaussian output N(σ(a), 1) (eq. 8) for every
  activation, ν = σ'(a)²; ``act.smoothed(ω)`` is the analytic stand-in 003
  uses for a kinked unit (relu → relu_ω, §2.3);
* :func:`from_module` maps a torch activation module (nn.Tanh, nn.ReLU, …)
  to its activation — the one such map of the library.

Two properties matter to the expansion of the action:

* ``analytic_at_zero`` — σ has a convergent power series at 0 (silu, gelu,
  tanh, sigmoid, erf, softplus, relu_omega);
* ``positively_homogeneous`` — σ(λx) = λσ(x) for λ > 0 (relu, leaky_relu,
  linear), so along a ray from θ = 0 the hidden layer is exactly linear in t.

Kinked activations list their non-analytic points in ``kinks``; at a kink the
one-sided branch is chosen by ``side`` (for a ray a0 + a1·t through a kink,
side = sign(a1) gives the coefficients valid for small t > 0).

The derivative at a kink is the right-hand one (relu'(0) = 1), as document
002 takes it; torch's autograd uses 0 there — a measure-zero difference that
the tests avoid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from actionlab._checks import ValueCheckError, check_choice

__all__ = ["Activation", "ActivationModule", "get", "names", "register", "from_module", "SUPPORTED_MODULES"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Activation:
    """Base class. Subclasses implement ``_value``, ``_d1``, ``_d2`` and ``_series``."""

    name: str = ""
    analytic_at_zero: bool = True
    positively_homogeneous: bool = False
    kinks: tuple[float, ...] = ()

    param_names: tuple[str, ...] = ()

    def __init__(self, **params: float) -> None:
        unknown = set(params) - set(self.param_names)
        if unknown:
            raise TypeError(f"{self.name} takes parameters {self.param_names or '()'}, got {sorted(unknown)}")
        self.params: dict[str, float] = {k: float(v) for k, v in params.items()}

    # -- values -------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._value(x)

    def derivative(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """The n-th derivative σ⁽ⁿ⁾(x) in closed form, n ∈ {1, 2} (right-hand at a kink)."""
        if n == 1:
            return self._d1(x)
        if n == 2:
            return self._d2(x)
        if n == 0:
            return self._value(x)
        raise ValueCheckError(
            f"derivative(x, n) has closed forms for n = 0, 1, 2, got n = {n}; "
            f"use taylor_at(x, n)[..., n] * n! for higher orders"
        )

    # -- series -------------------------------------------------------------------------
    def taylor_at(self, x0: torch.Tensor, order: int, side: torch.Tensor | float | None = None) -> torch.Tensor:
        """Coefficients σ⁽ᵏ⁾(x0)/k!, k = 0..order, stacked on a new last axis.

        For a kinked activation the coefficients are those of the analytic
        piece containing x0; where x0 lies exactly on a kink, ``side`` (±1,
        broadcastable to x0, default +1) selects the right (+1) or left (−1)
        piece. Then σ(x0 + x1 t) = Σ_k c_k (x1 t)^k exactly while x0 + x1 t
        stays in that piece.
        """
        if not isinstance(order, int) or order < 0:
            raise ValueCheckError(f"order must be a non-negative int, got {order!r}")
        if not isinstance(x0, torch.Tensor):
            x0 = torch.as_tensor(x0, dtype=torch.float64)
        if not x0.is_floating_point():
            x0 = x0.to(torch.get_default_dtype())
        return torch.stack(self._series(x0, order, side), dim=-1)

    def taylor(self, order: int, side: int = +1) -> list[float]:
        """Exact [σ(0), σ'(0), σ''(0)/2!, …, σ⁽ⁿ⁾(0)/n!] (float64); ``side=-1`` gives the left-hand series."""
        if side not in (1, -1):
            raise ValueCheckError(f"side must be +1 or -1, got {side!r}")
        x0 = torch.zeros((), dtype=torch.float64)
        return [float(v) for v in self.taylor_at(x0, order, side=float(side))]

    @property
    def kind(self) -> str:
        """'analytic' (power series at 0), 'homogeneous' (positively homogeneous) or 'piecewise'."""
        if self.positively_homogeneous:
            return "homogeneous"
        return "analytic" if self.analytic_at_zero else "piecewise"

    def module(self) -> ActivationModule:
        """An ``nn.Module`` applying this activation (for ``nn.Sequential``)."""
        return ActivationModule(self)

    def spec(self) -> dict:
        """``{"name": ..., "params": {...}}``: enough to rebuild it with ``get(**spec)``-style calls."""
        return {"name": self.name, "params": dict(self.params)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Activation) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items()))))

    # -- Gaussian integrals of the mean-field theory (004 appendix B) --------------------
    def q_hat(self, q: float) -> float | None:
        """Closed form of q̂ = ∫Dz σ(√q z)² (004 eq. (9)), or None where none is known (use quadrature)."""
        return None

    def I_phi(self, a: float, b: float) -> float | None:
        """Closed form of I_σ[a, b] = E[σ(u₁)σ(u₂)], Var u = a, Cov(u₁, u₂) = b (004 B.5), or None."""
        return None

    def I_dphi(self, a: float, b: float) -> float | None:
        """Closed form of I_σ'[a, b] = E[σ'(u₁)σ'(u₂)] (004 B.8; b = a: ∫Dz σ'(√a z)²), or None."""
        return None

    @property
    def closed_forms(self) -> tuple[str, ...]:
        """Which of ``"q_hat"``, ``"I_phi"``, ``"I_dphi"`` this activation has in closed form."""
        return tuple(k for k in ("q_hat", "I_phi", "I_dphi") if getattr(type(self), k) is not getattr(Activation, k))

    # -- relative Fisher information (003) -----------------------------------------------
    #: output distributions of a single unit whose RFIM is known; the first is the supplement's default
    rfim_outputs: tuple[str, ...] = ("gaussian",)

    @property
    def default_output(self) -> str:
        """003's output distribution of this unit: 'bernoulli' for tanh / sigmoid (§2.1–2.2), else 'gaussian' (eq. 8)."""
        return self.rfim_outputs[0]

    def rfim_coefficient(self, a: torch.Tensor, output: str | None = None) -> torch.Tensor:
        """ν(a) such that a single neuron's RFIM is ν(wᵀx̃)·x̃x̃ᵀ (003 table 1).

        ``output="gaussian"`` (y ~ N(σ(a), 1), eq. 8): ν = σ'(a)² — for relu_ω
        [ι + (1 − ι) sigm((1 − ι)a/ω)]² (eq. 2, §2.3), for elu 1 / (α eᵃ)² (eq. 3, §2.4).
        ``output="bernoulli"``: tanh (y = ±1, eqs. 5–7) sech²(a), sigmoid
        (y ∈ {0, 1}) sigm(a)(1 − sigm(a)). Default: :attr:`default_output`.
        """
        output = self.default_output if output is None else check_choice(output, ("bernoulli", "gaussian"), "output distribution")
        if output not in self.rfim_outputs:
            bern = [n for n in names() if "bernoulli" in getattr(_REGISTRY[n], "rfim_outputs", ())]
            raise ValueCheckError(
                f"a Bernoulli output is defined for {' and '.join(bern)} neurons (tanh: y = ±1, sigmoid: y ∈ {{0, 1}}), "
                f"not {self.name}; use output='gaussian'"
            )
        if output == "bernoulli":
            return self._bernoulli_rfim(a)
        d1 = self.derivative(a, 1)
        return d1 * d1

    def smoothed(self, omega: float = 1.0) -> Activation:
        """The analytic activation that stands for this one in a relative Fisher metric (003 §1, §2.3).

        relu and leaky_relu (slope ι ∈ [0, 1)) → relu_ω(ω, ι), which tends to them as ω → 0;
        every other activation is returned unchanged.
        """
        return self

    def _bernoulli_rfim(self, a: torch.Tensor) -> torch.Tensor:  # pragma: no cover - only with "bernoulli" in rfim_outputs
        raise NotImplementedError

    # -- to implement -------------------------------------------------------------------
    def _value(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _d1(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _d2(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _series(self, x0: torch.Tensor, order: int, side) -> list[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError


class ActivationModule(nn.Module):
    """``nn.Module`` wrapper of an :class:`Activation`."""

    def __init__(self, activation: Activation) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)

    def extra_repr(self) -> str:
        return repr(self.activation)


# ---------------------------------------------------------------------------------------
# series helpers (lists of tensors, index = power of t)
# ---------------------------------------------------------------------------------------


def _cauchy(a: list[torch.Tensor], b: list[torch.Tensor], k: int) -> torch.Tensor:
    """Coefficient k of the product of two series: Σ_{i=0..k} a_i b_{k−i}."""
    out = a[0] * b[k]
    for i in range(1, k + 1):
        out = out + a[i] * b[k - i]
    return out


def _linear_series(x0: torch.Tensor, order: int, slope: float = 1.0) -> list[torch.Tensor]:
    zero = torch.zeros_like(x0)
    out = [slope * x0]
    if order >= 1:
        out.append(torch.full_like(x0, slope))
    out.extend(zero for _ in range(order - 1))
    return out


def _sigmoid_series(x0: torch.Tensor, order: int) -> list[torch.Tensor]:
    y = [torch.sigmoid(x0)]
    for k in range(order):
        y.append((y[k] - _cauchy(y, y, k)) / (k + 1))
    return y


def _softplus_series(x0: torch.Tensor, order: int) -> list[torch.Tensor]:
    s = _sigmoid_series(x0, max(order - 1, 0))
    return [torch.logaddexp(x0, torch.zeros_like(x0))] + [s[k] / (k + 1) for k in range(order)]


def _side_mask(x0: torch.Tensor, side, kink: float = 0.0) -> torch.Tensor:
    """True where the right-hand piece (x ≥ kink) applies."""
    if side is None:
        side_t = torch.ones_like(x0)
    else:
        side_t = torch.as_tensor(side, dtype=x0.dtype, device=x0.device).expand_as(x0)
    return (x0 > kink) | ((x0 == kink) & (side_t >= 0))


def _check_gauss(a: float, b: float) -> float:
    """c = b/a ∈ [−1, 1] for a centred Gaussian pair with variances a and covariance b (0 if a = 0)."""
    if not a >= 0 or not math.isfinite(a):
        raise ValueCheckError(f"the variance a must be finite and ≥ 0, got {a}")
    if abs(b) > a * (1 + 1e-12) + 1e-300:
        raise ValueCheckError(f"the covariance b must satisfy |b| ≤ a (a = {a}, b = {b}); pass (q, q_st) with |q_st| ≤ q")
    return max(-1.0, min(1.0, b / a)) if a > 0 else 0.0


def _relu_J(a: float, c: float) -> float:
    """E[relu(u₁) relu(u₂)] = a/(2π)(√(1−c²) + c(π/2 + sin⁻¹c)) (004 B.11)."""
    return a / (2 * math.pi) * (math.sqrt(max(0.0, 1 - c * c)) + c * (math.pi / 2 + math.asin(c)))


def _relu_K(c: float) -> float:
    """P(u₁ > 0, u₂ > 0) = (π/2 + sin⁻¹c)/(2π) = E[θ(u₁)θ(u₂)] (B.12 corrected: no factor a)."""
    return (math.pi / 2 + math.asin(c)) / (2 * math.pi)


# ---------------------------------------------------------------------------------------
# the activations
# ---------------------------------------------------------------------------------------


class Tanh(Activation):
    name = "tanh"
    rfim_outputs = ("bernoulli", "gaussian")

    def _bernoulli_rfim(self, a):  # 003 §2.1: y = ±1, p(y) = (1 + y tanh a)/2 → sech² a
        t = torch.tanh(a)
        return 1.0 - t * t

    def _value(self, x):
        return torch.tanh(x)

    def _d1(self, x):
        return 1 - torch.tanh(x) ** 2

    def _d2(self, x):
        t = torch.tanh(x)
        return -2 * t * (1 - t * t)

    def _series(self, x0, order, side):
        y = [torch.tanh(x0)]
        for k in range(order):
            rhs = -_cauchy(y, y, k)
            if k == 0:
                rhs = rhs + 1
            y.append(rhs / (k + 1))
        return y


class Sigmoid(Activation):
    name = "sigmoid"
    rfim_outputs = ("bernoulli", "gaussian")

    def _bernoulli_rfim(self, a):  # 003 §2.2: y ∈ {0, 1}, p(y = 1) = sigm a → sigm(1 − sigm)
        s = torch.sigmoid(a)
        return s * (1.0 - s)

    def _value(self, x):
        return torch.sigmoid(x)

    def _d1(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s)

    def _d2(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s) * (1 - 2 * s)

    def _series(self, x0, order, side):
        return _sigmoid_series(x0, order)


class SiLU(Activation):
    name = "silu"

    def _value(self, x):
        return x * torch.sigmoid(x)

    def _d1(self, x):
        s = torch.sigmoid(x)
        return s + x * s * (1 - s)

    def _d2(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s) * (2 + x * (1 - 2 * s))

    def _series(self, x0, order, side):
        s = _sigmoid_series(x0, order)
        return [x0 * s[0]] + [x0 * s[k] + s[k - 1] for k in range(1, order + 1)]


class Softplus(Activation):
    name = "softplus"

    def _value(self, x):
        return torch.logaddexp(x, torch.zeros_like(x))

    def _d1(self, x):
        return torch.sigmoid(x)

    def _d2(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s)

    def _series(self, x0, order, side):
        return _softplus_series(x0, order)


class ReluOmega(Activation):
    """Smoothed relu of 003 §1: relu_ω(t) = ω ln(exp(ιt/ω) + exp(t/ω)), ω > 0, 0 ≤ ι < 1.

    relu_ω(t) = ι t + ω softplus((1 − ι) t / ω) and relu_ω'(t) = ι + (1 − ι) sigm((1 − ι) t / ω).
    """

    name = "relu_omega"
    param_names = ("omega", "iota")

    def __init__(self, omega: float = 1.0, iota: float = 0.0) -> None:
        if not omega > 0 or not math.isfinite(omega):
            raise ValueCheckError(f"relu_omega needs omega > 0 (003 §1), got omega = {omega}")
        if not 0 <= iota < 1:
            raise ValueCheckError(f"relu_omega needs 0 ≤ iota < 1 (003 §1), got iota = {iota}")
        super().__init__(omega=omega, iota=iota)

    @property
    def _r(self) -> float:
        return (1 - self.params["iota"]) / self.params["omega"]

    def _value(self, x):
        w, i = self.params["omega"], self.params["iota"]
        return w * torch.logaddexp(i * x / w, x / w)

    def _d1(self, x):
        i = self.params["iota"]
        return i + (1 - i) * torch.sigmoid(self._r * x)

    def _d2(self, x):
        s = torch.sigmoid(self._r * x)
        return (1 - self.params["iota"]) * self._r * s * (1 - s)

    def _series(self, x0, order, side):
        w, i, r = self.params["omega"], self.params["iota"], self._r
        sp = _softplus_series(r * x0, order)
        out = [w * sp[k] * r**k for k in range(order + 1)]
        out[0] = out[0] + i * x0
        if order >= 1:
            out[1] = out[1] + i
        return out


class Erf(Activation):
    name = "erf"

    def q_hat(self, q):  # B.3: (2/π) tan⁻¹(q/√(q + 1/4)) = (2/π) sin⁻¹(2q/(1 + 2q))
        _check_gauss(q, q)
        return 2.0 / math.pi * math.atan(q / math.sqrt(q + 0.25))

    def I_phi(self, a, b):  # B.7
        _check_gauss(a, b)
        return 2.0 / math.pi * math.atan(2 * b / math.sqrt((1 + 2 * a) ** 2 - (2 * b) ** 2))

    def I_dphi(self, a, b):  # B.8 (B.4 at b = a: 2/(π√(q + 1/4)))
        _check_gauss(a, b)
        return 4.0 / (math.pi * math.sqrt((1 + 2 * a) ** 2 - (2 * b) ** 2))

    def _value(self, x):
        return torch.erf(x)

    def _d1(self, x):
        return _TWO_OVER_SQRT_PI * torch.exp(-x * x)

    def _d2(self, x):
        return -2 * x * _TWO_OVER_SQRT_PI * torch.exp(-x * x)

    def _series(self, x0, order, side):
        g = [torch.exp(-x0 * x0)]
        for k in range(order - 1):
            prev = g[k - 1] if k >= 1 else torch.zeros_like(x0)
            g.append(-2 * (x0 * g[k] + prev) / (k + 1))
        return [torch.erf(x0)] + [_TWO_OVER_SQRT_PI * g[k] / (k + 1) for k in range(order)]


class GELU(Activation):
    """GELU, exact form x·Φ(x) with Φ the standard normal CDF."""

    name = "gelu"

    def _value(self, x):
        return F.gelu(x)

    def _d1(self, x):
        phi = torch.exp(-0.5 * x * x) / _SQRT_2PI
        return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * phi

    def _d2(self, x):
        phi = torch.exp(-0.5 * x * x) / _SQRT_2PI
        return phi * (2 - x * x)

    def _series(self, x0, order, side):
        phi = [torch.exp(-0.5 * x0 * x0) / _SQRT_2PI]
        for k in range(order - 1):
            prev = phi[k - 1] if k >= 1 else torch.zeros_like(x0)
            phi.append(-(x0 * phi[k] + prev) / (k + 1))
        cdf = [0.5 * (1 + torch.erf(x0 / math.sqrt(2)))] + [phi[k] / (k + 1) for k in range(order)]
        return [x0 * cdf[0]] + [x0 * cdf[k] + cdf[k - 1] for k in range(1, order + 1)]


class ELU(Activation):
    """elu(t) = t for t ≥ 0, α(exp(t) − 1) for t < 0 (003 §1)."""

    name = "elu"
    param_names = ("alpha",)
    analytic_at_zero = False
    kinks = (0.0,)

    def __init__(self, alpha: float = 1.0) -> None:
        if not math.isfinite(alpha):
            raise ValueCheckError(f"elu needs a finite alpha, got {alpha}")
        super().__init__(alpha=alpha)

    def _value(self, x):
        a = self.params["alpha"]
        return torch.where(x >= 0, x, a * torch.expm1(torch.clamp(x, max=0)))

    def _d1(self, x):
        a = self.params["alpha"]
        return torch.where(x >= 0, torch.ones_like(x), a * torch.exp(torch.clamp(x, max=0)))

    def _d2(self, x):
        a = self.params["alpha"]
        return torch.where(x >= 0, torch.zeros_like(x), a * torch.exp(torch.clamp(x, max=0)))

    def _series(self, x0, order, side):
        a = self.params["alpha"]
        right = _side_mask(x0, side)
        e = a * torch.exp(torch.clamp(x0, max=0))
        lin = _linear_series(x0, order)
        out = [torch.where(right, lin[0], a * torch.expm1(torch.clamp(x0, max=0)))]
        for k in range(1, order + 1):
            out.append(torch.where(right, lin[k], e / math.factorial(k)))
        return out


class LeakyReLU(Activation):
    """x for x ≥ 0, slope·x for x < 0; relu is slope = 0."""

    name = "leaky_relu"
    param_names = ("slope",)
    analytic_at_zero = False
    positively_homogeneous = True
    kinks = (0.0,)

    def __init__(self, slope: float = 0.01) -> None:
        if not math.isfinite(slope):
            raise ValueCheckError(f"leaky_relu needs a finite slope, got {slope}")
        super().__init__(slope=slope)

    @property
    def _slope(self) -> float:
        return self.params.get("slope", 0.0)

    # σ = relu(u) − s·relu(−u), σ' = θ(u) + s·θ(−u); (−u₁, −u₂) has correlation c, (u₁, −u₂) has −c.
    def q_hat(self, q):  # B.9 for s = 0: q/2
        _check_gauss(q, q)
        return q * (1 + self._slope**2) / 2

    def I_phi(self, a, b):  # (1 + s²) J(c) − 2s J(−c), J of B.11
        c, s = _check_gauss(a, b), self._slope
        return (1 + s * s) * _relu_J(a, c) - 2 * s * _relu_J(a, -c)

    def I_dphi(self, a, b):  # (1 + s²) K(c) + 2s K(−c), K = (π/2 + sin⁻¹c)/(2π) (B.10/B.12 corrected)
        c, s = _check_gauss(a, b), self._slope
        return (1 + s * s) * _relu_K(c) + 2 * s * _relu_K(-c)

    def smoothed(self, omega: float = 1.0) -> Activation:
        """relu_ω(ω, ι = slope) (003 §1) for a slope in [0, 1); itself otherwise."""
        return ReluOmega(omega=omega, iota=self._slope) if 0 <= self._slope < 1 else self

    def _value(self, x):
        return torch.where(x >= 0, x, self._slope * x)

    def _d1(self, x):
        return torch.where(x >= 0, torch.ones_like(x), torch.full_like(x, self._slope))

    def _d2(self, x):
        return torch.zeros_like(x)

    def _series(self, x0, order, side):
        right = _side_mask(x0, side)
        lin = _linear_series(x0, order)
        return [torch.where(right, c, self._slope * c) for c in lin]


class ReLU(LeakyReLU):
    name = "relu"
    param_names = ()

    def __init__(self) -> None:
        Activation.__init__(self)

    def _value(self, x):
        return torch.relu(x)


class Linear(Activation):
    name = "linear"
    positively_homogeneous = True

    def q_hat(self, q):  # B.13
        _check_gauss(q, q)
        return float(q)

    def I_phi(self, a, b):  # B.15
        _check_gauss(a, b)
        return float(b)

    def I_dphi(self, a, b):  # B.14/B.16
        _check_gauss(a, b)
        return 1.0

    def _value(self, x):
        return x

    def _d1(self, x):
        return torch.ones_like(x)

    def _d2(self, x):
        return torch.zeros_like(x)

    def _series(self, x0, order, side):
        return _linear_series(x0, order)


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Activation]] = {}
_ALIASES = {
    "sigm": "sigmoid",
    "logistic": "sigmoid",
    "swish": "silu",
    "leaky": "leaky_relu",
    "leakyrelu": "leaky_relu",
    "smoothed_relu": "relu_omega",
    "relu_w": "relu_omega",
    "identity": "linear",
}


def register(name: str, factory: Callable[..., Activation]) -> None:
    """Add an activation class (or factory) to the registry under ``name``."""
    _REGISTRY[name] = factory


for _cls in (Tanh, Sigmoid, SiLU, Softplus, ReluOmega, Erf, GELU, ELU, LeakyReLU, ReLU, Linear):
    register(_cls.name, _cls)


def names() -> list[str]:
    """The registered activation names."""
    return sorted(_REGISTRY)


def get(name: str | Activation, **params: float) -> Activation:
    """The activation called ``name`` with its parameters (e.g. ``get("elu", alpha=0.5)``).

    An :class:`Activation` passes through unchanged. Unknown names and
    unknown parameters raise :class:`~actionlab.ValueCheckError`.
    """
    if isinstance(name, Activation):
        if params:
            raise ValueCheckError("parameters were given together with an Activation instance; pass a name instead")
        return name
    if not isinstance(name, str):
        raise ValueCheckError(f"activation must be a name or an Activation, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    check_choice(key, names(), "activation")
    try:
        return _REGISTRY[key](**params)
    except TypeError as exc:
        raise ValueCheckError(f"bad parameters {params} for activation {key!r}: {exc}") from None


# ---------------------------------------------------------------------------------------
# torch modules
# ---------------------------------------------------------------------------------------
def _softplus_module(mod: nn.Softplus) -> Activation:
    beta = float(mod.beta)
    if not beta > 0:
        raise ValueCheckError(f"nn.Softplus needs beta > 0, got beta = {beta}")
    # (1/β) ln(1 + e^{βx}) = relu_ω with ω = 1/β, ι = 0 (003 §1); torch's switch to x above threshold/β
    # changes the value by < e^{−threshold}/β (2·10⁻⁹/β at the default threshold 20)
    return Softplus() if beta == 1.0 else ReluOmega(omega=1.0 / beta, iota=0.0)


def _gelu_module(mod: nn.GELU) -> Activation:
    if mod.approximate != "none":
        raise ValueCheckError(
            f"nn.GELU(approximate={mod.approximate!r}) is not the exact x·Φ(x) of actionlab's gelu; "
            f"use nn.GELU() (approximate='none') or actionlab.activations.get('gelu').module()"
        )
    return GELU()


_MODULES: dict[type, Callable[[nn.Module], Activation]] = {
    nn.Tanh: lambda m: Tanh(),
    nn.ReLU: lambda m: ReLU(),
    nn.LeakyReLU: lambda m: LeakyReLU(slope=float(m.negative_slope)),
    nn.ELU: lambda m: ELU(alpha=float(m.alpha)),
    nn.SiLU: lambda m: SiLU(),
    nn.GELU: _gelu_module,
    nn.Sigmoid: lambda m: Sigmoid(),
    nn.Softplus: _softplus_module,
    nn.Identity: lambda m: Linear(),
    ActivationModule: lambda m: m.activation,
}

#: the torch modules :func:`from_module` maps (exact types; a subclass may change ``forward``)
SUPPORTED_MODULES = ", ".join(
    f"nn.{t.__name__}" if t is not ActivationModule else "actionlab ActivationModule" for t in _MODULES
)


def from_module(module: nn.Module) -> Activation:
    """The :class:`Activation` a torch module applies elementwise.

    nn.Tanh, nn.ReLU, nn.LeakyReLU(negative_slope), nn.ELU(alpha), nn.SiLU,
    nn.GELU() (exact form only), nn.Sigmoid, nn.Softplus(beta) (β ≠ 1: relu_ω
    with ω = 1/β), nn.Identity (linear) and actionlab's own
    :class:`ActivationModule`. Anything else raises
    :class:`~actionlab.ValueCheckError` naming the module and the supported list.
    """
    build = _MODULES.get(type(module))
    if build is None:
        raise ValueCheckError(
            f"no actionlab activation for the module {type(module).__name__} ({module!r}); "
            f"supported are {SUPPORTED_MODULES}"
        )
    return build(module)
