"""Mean-field order parameters and Fisher-spectrum predictions of wide random MLPs.

This module owns the mean-field theory of 004: the Gaussian integrals by
quadrature, the architecture (:class:`Architecture`), the order-parameter
recurrences and the predicted eigenvalue statistics. Closed forms of the
integrals live on the activation objects (:mod:`actionlab.activations`:
``q_hat``, ``I_phi``, ``I_dphi``); quadrature is the fallback.

Source: Karakida, Akaho & Amari, "Universal Statistics of Fisher Information in
Deep Neural Networks: Mean Field Approach" (AISTATS 2019), supplement
``004_c5eeeb19a9204c84.txt`` and the main-text definitions collected in
``seeds/papers.md``.

Network (papers.md): u^l = W^l h^{l-1} + b^l, h^l = φ(u^l), l = 1..L, with
W^l_ij ~ N(0, σ_w²/M_{l-1}), b^l_i ~ N(0, σ_b²), widths M_l = α_l M and C
outputs f_k = u^L_k (linear output) or f_k = φ_out(u^L_k) (non-linear output).

Order parameters (papers.md, main-text eqs. (9)–(12) as cited by the supplement):

* forward   q^l = σ_w² q̂^{l-1} + σ_b²,          q̂^l = ∫Du φ(√q^l u)²,
            q^l_st = σ_w² q̂^{l-1}_st + σ_b²,   q̂^l_st = I_φ[q^l, q^l_st];
* backward  q̃^l = σ_w² q̃^{l+1} I_φ'[q^l, q^l],  q̃^l_st = σ_w² q̃^{l+1}_st I_φ'[q^l, q^l_st],
  with q̃^L = q̃^L_st = 1 for a linear output, and q̃^L = I_φout'[q^L, q^L],
  q̃^L_st = I_φout'[q^L, q^L_st] for an output unit φ_out (B.10 has q̃^L = 1/2 for relu);
* I_φ[a, b] = ∫Dz₁Dz₂ φ(√a z₁) φ(√a(c z₁ + √(1−c²) z₂)), c = b/a (B.5 gives the
  equivalent one-dimensional form ∫Dy (∫Dx φ(√(a−b) x + √b y))²).

κ₁ = Σ_l (α_{l-1}/α) q̃^l q̂^{l-1}, κ₂ = Σ_l (α_{l-1}/α) q̃^l_st q̂^{l-1}_st (A.6),
m_λ = C κ₁/M (A.12), s_λ = α C ((T−1)/T κ₂² + κ₁²/T) (A.25, A.33),
λ_max = α ((T−1)/T κ₂ + κ₁/T) M (Theorem 4, A.4), the C = O(M) bounds of A.5,
the Fisher–Rao norm ⟨‖θ‖_FR⟩ = σ_w² C Σ_l q̃^l q̂^{l-1} (A.50) and the
learning-rate bound η_c = 2(1+μ)/λ_max (Lemma 6, A.53).

The bulk and the tail (A.4(i), A.9, A.16): the leading F̄* = αMK/T of A.23 has, per
output block, one eigenvalue λ_max and T − 1 eigenvalues α(κ₁−κ₂)M/T (the bulk, eigenvectors
e_1 − e_i); the bias entries add m_λ^(b) = Σ_l q̃^l/(αM²) per output (A.9, O(1/M²)); and
Markov's inequality with m_λ = Cκ₁/M gives Corollary 2, N(λ ≥ k) ≤ ακ₁CM/k (A.13–A.16).

Per layer (A.19): F* = Σ_l F*_l with F*_l ≈ M_{l−1} q̃^l q̂^{l−1}/T on the diagonal and
M_{l−1} q̃^l_st q̂^{l−1}_st/T off it, so each layer is the same matrix with κ₁, κ₂ replaced by
its own summand κ^(l)_1 = (α_{l−1}/α) q̃^l q̂^{l−1}, κ^(l)_2 = (α_{l−1}/α) q̃^l_st q̂^{l−1}_st
(:func:`layer_predictions`).

Gaussian integrals
------------------
* ``method="hermite"``: Gauss–Hermite quadrature with the probabilists'
  weight (``scipy.special.roots_hermitenorm``), 1-D with ``n`` nodes and 2-D on
  an ``n × n`` tensor grid. It converges only like exp(−c√n) once the poles of
  φ(√q u) come near the real axis, and only algebraically for kinked φ.
* ``method="split"`` (the default, "auto"): composite Gauss–Legendre. The
  domain is truncated to |z| ≤ 12 (Gaussian mass outside < 4e-33) and split at
  the kinks into sub-intervals of length ≤ 1.5, each integrated by 24-node
  Gauss–Legendre (384 nodes per dimension); in 2-D the inner integral over z₂
  is split at the z₁-dependent kink location, the outer at the kinks of both
  factors, with a graded mesh where |c| → 1 makes the inner integrand a step of
  width √(1−c²) (at |c| = 1 exactly the 1-D form is used). The measured errors
  of both rules are in docs/fisher.md; the tests hold the split rule to 1e-10.

The math here never reads files or prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from scipy.special import roots_hermitenorm, roots_legendre

from actionlab import activations as _act
from actionlab._checks import ValueCheckError
from actionlab._display import short_repr

__all__ = [
    "GaussFn",
    "as_gauss_fn",
    "gauss_1d",
    "gauss_2d",
    "q_hat",
    "I_phi",
    "I_dphi",
    "document_relu_I_dphi",
    "DOCUMENT_RELU_I_D",
    "Architecture",
    "OrderParameters",
    "order_parameters",
    "MeanFieldPrediction",
    "predict",
    "LayerPrediction",
    "layer_predictions",
    "markov_bound",
    "eta_c",
]

_Z_MAX = 12.0  # truncation of the standard normal for the split rule
_PIECE = 1.5  # longest sub-interval of the split rule
_GL_NODES = 24


# ---------------------------------------------------------------------------------------
# the function to integrate
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussFn:
    """A numpy scalar function with the points where it (or its derivative) is not smooth."""

    f: Callable[[np.ndarray], np.ndarray]
    kinks: tuple[float, ...] = ()
    name: str = ""

    @property
    def smooth(self) -> bool:
        return not self.kinks


def _torch_np(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    def g(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fn(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()

    return g


def as_gauss_fn(activation, derivative: int = 0) -> GaussFn:
    """φ (``derivative=0``) or φ' (``derivative=1``) of a registry activation as a :class:`GaussFn`.

    ``activation`` is a name, an :class:`actionlab.activations.Activation` or an
    already built :class:`GaussFn` (returned unchanged).
    """
    if isinstance(activation, GaussFn):
        return activation
    act = _act.get(activation)
    if derivative == 0:
        return GaussFn(_torch_np(act), tuple(act.kinks), act.name)
    if derivative == 1:
        return GaussFn(_torch_np(lambda x: act.derivative(x, 1)), tuple(act.kinks), act.name + "'")
    raise ValueCheckError(f"derivative must be 0 or 1, got {derivative}")


# ---------------------------------------------------------------------------------------
# quadrature rules
# ---------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = roots_hermitenorm(n)
    return x, w / math.sqrt(2.0 * math.pi)  # weights of the standard normal density


@lru_cache(maxsize=4)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return roots_legendre(n)


def _pieces(breaks: Sequence[float]) -> np.ndarray:
    """Sub-interval end points of [−Z, Z] split at ``breaks`` and into pieces of length ≤ _PIECE."""
    pts = sorted({-_Z_MAX, _Z_MAX, *[float(b) for b in breaks if -_Z_MAX < b < _Z_MAX]})
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:]):
        k = max(1, int(math.ceil((b - a) / _PIECE)))
        out.extend(np.linspace(a, b, k + 1)[1:].tolist())
    return np.asarray(out)


def _split_rule(breaks: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (standard normal density included) of the split Gauss–Legendre rule."""
    ends = _pieces(breaks)
    xg, wg = _legendre(_GL_NODES)
    a, b = ends[:-1, None], ends[1:, None]
    x = (0.5 * (b - a) * xg + 0.5 * (a + b)).ravel()
    w = (0.5 * (b - a) * wg).ravel() * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return x, w


def gauss_1d(fn, q: float, n: int = 160, method: str = "auto") -> float:
    """E_{u ~ N(0, q)} fn(u) = ∫Dz fn(√q z).

    ``method``: "hermite" (Gauss–Hermite, n nodes), "split" (composite
    Gauss–Legendre split at the kinks) or "auto" (= "split", the accurate one;
    see the module docstring for the measured Gauss–Hermite errors).
    """
    g = fn if isinstance(fn, GaussFn) else GaussFn(fn)
    if q < 0:
        raise ValueCheckError(f"variance q must be ≥ 0, got {q}")
    sq = math.sqrt(q)
    if method == "auto":
        method = "split"
    if method == "hermite":
        x, w = _hermite(n)
    elif method == "split":
        x, w = _split_rule([k / sq for k in g.kinks] if sq > 0 else [])
    else:
        raise ValueCheckError(f"unknown quadrature method {method!r}; choose auto, hermite or split")
    return float(np.dot(w, g.f(sq * x)))


def gauss_2d(fn1, fn2, a: float, b: float, n: int = 160, method: str = "auto", a2: float | None = None) -> float:
    """E[fn1(u₁) fn2(u₂)] for (u₁, u₂) Gaussian with variances a, a2 (default a) and covariance b.

    u₁ = √a z₁, u₂ = √a2 (c z₁ + √(1−c²) z₂), c = b/√(a a2). With a2 = a this is
    I[a, b] of papers.md / supplement B.5.
    """
    g1 = fn1 if isinstance(fn1, GaussFn) else GaussFn(fn1)
    g2 = fn2 if isinstance(fn2, GaussFn) else GaussFn(fn2)
    a2 = a if a2 is None else a2
    if a < 0 or a2 < 0:
        raise ValueCheckError(f"variances must be ≥ 0, got {a}, {a2}")
    s1, s2 = math.sqrt(a), math.sqrt(a2)
    if s1 == 0 or s2 == 0:
        return float(g1.f(np.zeros(1))[0]) * gauss_1d(g2, a2, n, method) if s1 == 0 else \
            float(g2.f(np.zeros(1))[0]) * gauss_1d(g1, a, n, method)
    c = b / (s1 * s2)
    if abs(c) > 1 + 1e-12:
        raise ValueCheckError(f"covariance {b} exceeds √(a·a2) = {s1 * s2}: |c| = {abs(c)} > 1")
    c = max(-1.0, min(1.0, c))
    r = math.sqrt(max(0.0, 1.0 - c * c))
    if method == "auto":
        method = "split"
    if r == 0.0:  # perfectly correlated: one-dimensional
        prod = GaussFn(lambda z: g1.f(s1 * z) * g2.f(s2 * c * z), tuple(k / s1 for k in g1.kinks)
                       + tuple(k / (s2 * c) for k in g2.kinks))
        return gauss_1d(prod, 1.0, n, method)
    if method == "hermite":
        x, w = _hermite(n)
        z1, z2 = x[:, None], x[None, :]
        vals = g1.f(s1 * z1) * g2.f(s2 * (c * z1 + r * z2))
        return float(w @ vals @ w)
    if method != "split":
        raise ValueCheckError(f"unknown quadrature method {method!r}; choose auto, hermite or split")
    outer_breaks = [k / s1 for k in g1.kinks]
    if c != 0.0:
        for k in g2.kinks:
            z0 = k / (s2 * c)
            outer_breaks.append(z0)
            # near |c| = 1 the inner integral is a smoothed step of width r/|c| around z0: grade the mesh there
            w = r / abs(c)
            while w < 2.0:
                outer_breaks += [z0 - w, z0 + w]
                w *= 3.0
    z1, w1 = _split_rule(outer_breaks)
    # inner integral over z2 for every outer node, split where s2 (c z1 + r z2) hits a kink of fn2
    xg, wg = _legendre(_GL_NODES)
    inner = np.zeros_like(z1)
    brk = [np.clip((k / s2 - c * z1) / r, -_Z_MAX, _Z_MAX) for k in g2.kinks]
    edges = np.sort(np.stack([np.full_like(z1, -_Z_MAX), *brk, np.full_like(z1, _Z_MAX)], axis=1), axis=1)
    for j in range(edges.shape[1] - 1):
        lo, hi = edges[:, j], edges[:, j + 1]
        npieces = int(math.ceil(2 * _Z_MAX / _PIECE))
        for p in range(npieces):
            a_ = lo + (hi - lo) * p / npieces
            b_ = lo + (hi - lo) * (p + 1) / npieces
            zz = 0.5 * (b_ - a_)[:, None] * xg[None, :] + 0.5 * (a_ + b_)[:, None]
            ww = 0.5 * (b_ - a_)[:, None] * wg[None, :] * np.exp(-0.5 * zz * zz) / math.sqrt(2 * math.pi)
            inner += np.sum(ww * g2.f(s2 * (c * z1[:, None] + r * zz)), axis=1)
    return float(np.dot(w1, g1.f(s1 * z1) * inner))


# ---------------------------------------------------------------------------------------
# the Gaussian integrals: the activation's closed form (appendix B), else quadrature
# ---------------------------------------------------------------------------------------
def _closed(activation, key: str):
    """The activation's closed form ``key`` (``q_hat`` / ``I_phi`` / ``I_dphi``) or None (GaussFn: never)."""
    if isinstance(activation, GaussFn):
        return None
    act = _act.get(activation)
    return getattr(act, key) if key in act.closed_forms else None


def document_relu_I_dphi(a: float, b: float) -> float:
    """B.12 exactly as printed, a/(2π)(π/2 + sin⁻¹c): a spurious factor a (kept to report the slip).

    The true value E[θ(u₁)θ(u₂)] = (π/2 + sin⁻¹c)/(2π) is ``activations.get("relu").I_dphi(a, b)``.
    """
    c = max(-1.0, min(1.0, b / a)) if a > 0 else 0.0
    return a / (2 * math.pi) * (math.pi / 2 + math.asin(c))


#: B.12 as printed (with the spurious factor a) for comparison in reports.
DOCUMENT_RELU_I_D = document_relu_I_dphi


def q_hat(activation, q: float, closed_form: bool = True, n: int = 160) -> float:
    """q̂ = ∫Du φ(√q u)² (main-text eq. (9)); the activation's closed form (B.3, B.9, B.13) if it has one."""
    f = _closed(activation, "q_hat") if closed_form else None
    if f is not None:
        return float(f(q))
    phi = as_gauss_fn(activation)
    return gauss_1d(GaussFn(lambda x: phi.f(x) ** 2, phi.kinks), q, n)


def I_phi(activation, a: float, b: float, closed_form: bool = True, n: int = 160) -> float:
    """I_φ[a, b] (B.5); the activation's closed form (B.7, B.11, B.15) if it has one."""
    f = _closed(activation, "I_phi") if closed_form else None
    if f is not None:
        return float(f(a, b))
    phi = as_gauss_fn(activation)
    return gauss_2d(phi, phi, a, b, n)


def I_dphi(activation, a: float, b: float, closed_form: bool = True, n: int = 160) -> float:
    """I_φ'[a, b] (B.8); b = a gives ∫Du φ'(√a u)²; closed form (B.4/B.8, B.10/B.12 corrected, B.14/B.16) if any."""
    f = _closed(activation, "I_dphi") if closed_form else None
    if f is not None:
        return float(f(a, b))
    d = as_gauss_fn(activation, 1)
    if abs(b - a) <= 1e-15 * max(1.0, abs(a)):
        return gauss_1d(GaussFn(lambda x: d.f(x) ** 2, d.kinks), a, n)
    return gauss_2d(d, d, a, b, n)


# ---------------------------------------------------------------------------------------
# the architecture
# ---------------------------------------------------------------------------------------
def _act_name(activation) -> str | None:
    if activation is None:
        return None
    return activation.name if isinstance(activation, GaussFn) else _act.get(activation).name


@short_repr
@dataclass
class Architecture:
    """A random MLP of 004 (papers.md): u^l = W^l h^{l−1} + b^l, h^l = φ(u^l), l = 1..L.

    * ``widths`` = (M_0, M_1, …, M_L): M_0 inputs, M_L = C outputs (f = u^L, or
      φ_out(u^L) with ``output_activation``);
    * ``M``: the reference width of α_l = M_l/M (default M_1, or M_0 when L = 1);
    * W^l_ij ~ N(0, σ_w²/M_{l−1}) (``sigma_w2``), b^l_i ~ N(0, σ_b²) (``sigma_b2``);
    * ``activation`` φ (a name, an :class:`~actionlab.activations.Activation` or a
      :class:`GaussFn`); ``bias``: whether the network has the b^l (they add to
      the finite-size statistics only).

    :meth:`uniform` builds the widths from M, L, C and α_0 … α_{L−1}.
    """

    activation: Any
    widths: tuple[int, ...]
    M: int | None = None
    sigma_w2: float = 1.0
    sigma_b2: float = 0.0
    output_activation: Any = None
    bias: bool = True

    def __post_init__(self) -> None:
        w = tuple(int(x) for x in self.widths)
        if len(w) < 2 or min(w) < 1:
            raise ValueCheckError(f"widths must list M_0, …, M_L (≥ 2 entries, all ≥ 1), got {list(w)}")
        self.widths = w
        self.M = int(self.M) if self.M is not None else (w[1] if len(w) > 2 else w[0])
        if self.M < 1:
            raise ValueCheckError(f"the reference width M must be ≥ 1, got {self.M}")
        if not (self.sigma_w2 >= 0 and self.sigma_b2 >= 0 and math.isfinite(self.sigma_w2 + self.sigma_b2)):
            raise ValueCheckError(f"sigma_w2, sigma_b2 must be finite and ≥ 0, got {self.sigma_w2}, {self.sigma_b2}")
        self.sigma_w2, self.sigma_b2 = float(self.sigma_w2), float(self.sigma_b2)
        _act_name(self.activation), _act_name(self.output_activation)  # unknown names fail here

    @classmethod
    def uniform(cls, activation, L: int, M: int, C: int = 1, alphas: Sequence[float] | None = None, **kwargs) -> Architecture:
        """widths = (α_0 M, …, α_{L−1} M, C) rounded (α default all 1: M_0 = M_l = M); ``kwargs`` as the constructor."""
        for name, v in (("L", L), ("M", M), ("C", C)):
            if isinstance(v, bool) or not float(v).is_integer():
                raise ValueCheckError(f"{name} must be a whole number (a width or a depth), got {v!r}")
        if L < 1 or C < 1 or M < 1:
            raise ValueCheckError(f"need L ≥ 1, C ≥ 1, M ≥ 1; got L={L}, C={C}, M={M}")
        al = [1.0] * L if alphas is None else [float(a) for a in alphas]
        if len(al) != L:
            raise ValueCheckError(f"alphas must have L = {L} entries (α_0 … α_(L−1)), got {len(al)}")
        bad = [a for a in al if not (math.isfinite(a) and a > 0)]
        if bad:
            raise ValueCheckError(f"every alpha (width ratio α_l = M_l/M) must be finite and > 0, got {al}")
        return cls(activation, tuple(max(1, int(round(a * M))) for a in al) + (int(C),), M=M, **kwargs)

    @property
    def L(self) -> int:
        return len(self.widths) - 1

    @property
    def C(self) -> int:
        return self.widths[-1]

    @property
    def alphas(self) -> list[float]:
        """α_l = M_l / M for l = 0..L."""
        return [w / self.M for w in self.widths]

    @property
    def num_weights(self) -> int:
        """P_w = Σ_l M_l M_{l−1} (the weights only)."""
        return sum(self.widths[l] * self.widths[l - 1] for l in range(1, self.L + 1))

    @property
    def alpha(self) -> float:
        """α = P_w / M² (004: P = αM² weights)."""
        return self.num_weights / self.M**2

    @property
    def num_params(self) -> int:
        """P = P_w + Σ_{l≥1} M_l with biases, P_w without."""
        return self.num_weights + (sum(self.widths[1:]) if self.bias else 0)


# ---------------------------------------------------------------------------------------
# order parameters
# ---------------------------------------------------------------------------------------
@short_repr
@dataclass
class OrderParameters:
    """Per-layer order parameters; index l = 0..L (entries at l = 0 of q, q_st, q̃ are NaN)."""

    q: list[float]
    q_st: list[float]
    q_hat: list[float]
    q_hat_st: list[float]
    q_tilde: list[float]
    q_tilde_st: list[float]


def order_parameters(
    activation,
    L: int,
    sigma_w2: float,
    sigma_b2: float,
    q_hat0: float = 1.0,
    q_hat0_st: float = 0.0,
    *,
    output_activation=None,
    closed_form: bool = True,
    n: int = 160,
) -> OrderParameters:
    """Forward (q, q̂, q_st, q̂_st) and backward (q̃, q̃_st) recurrences of papers.md for l = 1..L."""
    if L < 1:
        raise ValueCheckError(f"L must be ≥ 1, got {L}")
    if sigma_w2 < 0 or sigma_b2 < 0:
        raise ValueCheckError(f"sigma_w2, sigma_b2 must be ≥ 0, got {sigma_w2}, {sigma_b2}")
    if q_hat0 < 0 or abs(q_hat0_st) > q_hat0 + 1e-12:
        raise ValueCheckError(f"input statistics need q̂⁰ ≥ |q̂⁰_st|, got q̂⁰ = {q_hat0}, q̂⁰_st = {q_hat0_st}")
    nan = float("nan")
    q, qs = [nan], [nan]
    qh, qhs = [float(q_hat0)], [float(q_hat0_st)]
    for l in range(1, L + 1):
        ql = sigma_w2 * qh[l - 1] + sigma_b2
        qsl = sigma_w2 * qhs[l - 1] + sigma_b2
        q.append(ql)
        qs.append(qsl)
        if l < L:
            qh.append(q_hat(activation, ql, closed_form, n))
            qhs.append(I_phi(activation, ql, qsl, closed_form, n))
        else:  # the output layer: f = u^L or φ_out(u^L)
            if output_activation is None:
                qh.append(ql)
                qhs.append(qsl)
            else:
                qh.append(q_hat(output_activation, ql, closed_form, n))
                qhs.append(I_phi(output_activation, ql, qsl, closed_form, n))
    qt = [nan] * (L + 1)
    qts = [nan] * (L + 1)
    if output_activation is None:
        qt[L], qts[L] = 1.0, 1.0
    else:
        qt[L] = I_dphi(output_activation, q[L], q[L], closed_form, n)
        qts[L] = I_dphi(output_activation, q[L], qs[L], closed_form, n)
    for l in range(L - 1, 0, -1):
        qt[l] = sigma_w2 * qt[l + 1] * I_dphi(activation, q[l], q[l], closed_form, n)
        qts[l] = sigma_w2 * qts[l + 1] * I_dphi(activation, q[l], qs[l], closed_form, n)
    return OrderParameters(q, qs, qh, qhs, qt, qts)


def eta_c(lambda_max: float, momentum: float = 0.0) -> float:
    """Critical learning rate η_c = 2(1+μ)/λ_max (Lemma 6, A.51–A.53)."""
    if lambda_max <= 0:
        raise ValueCheckError(f"lambda_max must be > 0, got {lambda_max}")
    if not 0 <= momentum < 1:
        raise ValueCheckError(f"momentum must lie in [0, 1), got {momentum}")
    return 2.0 * (1.0 + momentum) / lambda_max


# ---------------------------------------------------------------------------------------
# predictions
# ---------------------------------------------------------------------------------------
@short_repr
@dataclass
class MeanFieldPrediction:
    """What the mean-field theory predicts for one :class:`Architecture` and T inputs.

    ``m, s, lambda_max`` are the supplement's formulas (A.12, A.33, Theorem 4)
    with α = Σ_l M_l M_{l−1}/M² (weights only, P = αM²). ``*_finite`` keep the
    same leading-order structure of F* (A.23) but count the bias entries and
    use the exact number of parameters (incl. biases) — they are what a
    finite-M measurement should be compared with first.
    """

    architecture: Architecture
    T: int
    q_hat0: float
    q_hat0_st: float
    order: OrderParameters
    kappa1: float
    kappa2: float
    m: float
    s: float
    lambda_max: float
    momentum: float
    eta_c: float
    num_params: int
    m_finite: float
    s_finite: float
    lambda_max_finite: float
    # A.5 (C = O(M)): m' = Cκ₁/M, s_λ ≤ s' ≤ C s_λ, α(...)M ≤ λ_max ≤ M √(α C s_λ)
    s_lower: float = 0.0
    s_upper: float = 0.0
    lambda_max_lower: float = 0.0
    lambda_max_upper: float = 0.0
    # A.6: ⟨‖θ‖_FR⟩ = σ_w² C Σ_l q̃^l q̂^{l−1} (weights only) and its bound C σ_w² (α/α_min) κ₁
    fisher_rao: float = 0.0
    fisher_rao_bound: float = 0.0
    extra: dict = field(default_factory=dict)
    # A.4(i): the other T − 1 eigenvalues of each output block of the leading F̄*, α(κ₁ − κ₂)M/T
    lambda_bulk: float = 0.0
    lambda_bulk_finite: float = 0.0  # (B1 − B2)/T with the bias entries
    # A.3/A.9: m_λ = m^(W) + m^(b); m^(b) = C Σ_l q̃^l/(αM²) (A.9 per output, summed over C as in A.11)
    m_weights: float = 0.0
    m_bias: float = 0.0
    m_bias_finite: float = 0.0  # C Σ_l q̃^l / P with the exact P

    def markov_bound(self, k: float) -> float:
        """Corollary 2 (A.16): N(λ ≥ k) ≤ ακ₁CM/k (= P m_λ/k with P = αM², m_λ = Cκ₁/M)."""
        return markov_bound(self.alpha, self.kappa1, self.C, self.M, k)

    # the architecture's numbers, for reading results
    activation = property(lambda self: _act_name(self.architecture.activation))
    output_activation = property(lambda self: _act_name(self.architecture.output_activation))
    widths = property(lambda self: list(self.architecture.widths))
    M = property(lambda self: self.architecture.M)
    C = property(lambda self: self.architecture.C)
    sigma_w2 = property(lambda self: self.architecture.sigma_w2)
    sigma_b2 = property(lambda self: self.architecture.sigma_b2)
    alphas = property(lambda self: self.architecture.alphas)
    alpha = property(lambda self: self.architecture.alpha)


def _layer_sums(arch: Architecture, op: OrderParameters) -> tuple[float, float, float, float]:
    """A1 = Σ_l M_{l−1} q̃^l q̂^{l−1}, A2 = Σ_l M_{l−1} q̃^l_st q̂^{l−1}_st (so κ = A/(αM), A.6) and the bias
    sums Σ_l q̃^l, Σ_l q̃^l_st (zero without biases)."""
    w, L = arch.widths, arch.L
    A1 = sum(w[l - 1] * op.q_tilde[l] * op.q_hat[l - 1] for l in range(1, L + 1))
    A2 = sum(w[l - 1] * op.q_tilde_st[l] * op.q_hat_st[l - 1] for l in range(1, L + 1))
    b1 = sum(op.q_tilde[l] for l in range(1, L + 1)) if arch.bias else 0.0
    b2 = sum(op.q_tilde_st[l] for l in range(1, L + 1)) if arch.bias else 0.0
    return A1, A2, b1, b2


def predict(
    architecture: Architecture,
    T: int = 1,
    q_hat0: float = 1.0,
    q_hat0_st: float = 0.0,
    momentum: float = 0.0,
    *,
    closed_form: bool = True,
    n: int = 160,
) -> MeanFieldPrediction:
    """Mean-field m_λ, s_λ, λ_max, η_c of ``architecture`` on T inputs with statistics (q̂⁰, q̂⁰_st).

    With κ₁ = Σ_l (α_{l−1}/α) q̃^l q̂^{l−1}, κ₂ = Σ_l (α_{l−1}/α) q̃^l_st q̂^{l−1}_st (A.6, A.23):
    m_λ = Cκ₁/M (A.12); s_λ = αC((T−1)/T κ₂² + κ₁²/T) (A.25, A.33);
    λ_max = α((T−1)/T κ₂ + κ₁/T)M (A.4/Theorem 4); A.5 bounds s_λ ≤ s' ≤ Cs_λ,
    λ_max ≤ M√(αCs_λ); Fisher–Rao norm σ_w² C Σ_l q̃^l q̂^{l−1} (A.50); η_c = 2(1+μ)/λ_max (A.53).
    Finite size: B1 = A1 + Σ_l q̃^l, B2 = A2 + Σ_l q̃^l_st (bias entries), m = CB1/P,
    s = C(B1² + (T−1)B2²)/(TP), λ_max = (B1 + (T−1)B2)/T.
    """
    arch = architecture
    if not isinstance(arch, Architecture):
        raise ValueCheckError(f"predict takes an Architecture (mf.Architecture(activation, widths, ...) or "
                              f"Architecture.uniform(activation, L, M, ...)), got {type(arch).__name__}")
    if T < 1:
        raise ValueCheckError(f"T must be ≥ 1, got {T}")
    for name, v in (("q_hat0", q_hat0), ("q_hat0_st", q_hat0_st), ("momentum", momentum)):
        if not math.isfinite(float(v)):
            raise ValueCheckError(f"{name} must be finite, got {v} (q̂⁰ = Σ_j x_j²/M_0 of the inputs, ≈ 1 for "
                                  f"standardised inputs; momentum μ in [0, 1))")
    if q_hat0 < 0:
        raise ValueCheckError(f"q_hat0 = Σ_j x_j²/M_0 must be ≥ 0, got {q_hat0}")
    op = order_parameters(arch.activation, arch.L, arch.sigma_w2, arch.sigma_b2, q_hat0, q_hat0_st,
                          output_activation=arch.output_activation, closed_form=closed_form, n=n)
    M, C, alpha, P = arch.M, arch.C, arch.alpha, arch.num_params
    A1, A2, b1, b2 = _layer_sums(arch, op)
    kappa1, kappa2 = A1 / (alpha * M), A2 / (alpha * M)
    m = C * kappa1 / M
    s = alpha * C * ((T - 1) / T * kappa2**2 + kappa1**2 / T)
    lam = alpha * ((T - 1) / T * kappa2 + kappa1 / T) * M
    B1, B2 = A1 + b1, A2 + b2  # finite size: bias entries (Σ_i δ_i(s)δ_i(t) per layer) and the exact P
    fr = arch.sigma_w2 * C * sum(op.q_tilde[l] * op.q_hat[l - 1] for l in range(1, arch.L + 1))  # A.50
    alpha_min = min(arch.alphas[:-1])
    return MeanFieldPrediction(
        architecture=arch, T=int(T), q_hat0=float(q_hat0), q_hat0_st=float(q_hat0_st), order=op,
        kappa1=kappa1, kappa2=kappa2, m=m, s=s, lambda_max=lam, momentum=float(momentum),
        eta_c=eta_c(lam, momentum) if lam > 0 else float("inf"), num_params=int(P),
        m_finite=C * B1 / P, s_finite=C * (B1**2 + (T - 1) * B2**2) / (T * P), lambda_max_finite=(B1 + (T - 1) * B2) / T,
        s_lower=s, s_upper=C * s,  # A.40, A.43
        lambda_max_lower=lam,  # A.37 (the printed A.37 omits the factor α; see docs/fisher.md)
        lambda_max_upper=M * math.sqrt(alpha * C * s),
        fisher_rao=fr, fisher_rao_bound=C * arch.sigma_w2 * alpha / alpha_min * kappa1,
        lambda_bulk=alpha * (kappa1 - kappa2) * M / T, lambda_bulk_finite=(B1 - B2) / T,
        m_weights=m, m_bias=C * b1 / (alpha * M**2), m_bias_finite=C * b1 / P,
    )


def markov_bound(alpha: float, kappa1: float, C: int, M: int, k: float) -> float:
    """Corollary 2 (A.13–A.16): the number of eigenvalues λ ≥ k of F is at most ακ₁CM/k."""
    if not k > 0:
        raise ValueCheckError(f"the level k of Corollary 2 must be > 0, got {k}")
    return alpha * kappa1 * C * M / k


@short_repr
@dataclass
class LayerPrediction:
    """Layer l's term of the sum over layers (A.19) and what it predicts for F*_l alone.

    κ^(l)_1 = (α_{l−1}/α) q̃^l q̂^{l−1}, κ^(l)_2 = (α_{l−1}/α) q̃^l_st q̂^{l−1}_st (the summands of
    A.6/A.23, so Σ_l κ^(l) = κ); F*_l ≈ αMK_l/T per output block, hence m_l = Cκ^(l)_1/M (its share of
    A.12, normalised by the whole P), s_l = αC((T−1)/T (κ^(l)_2)² + (κ^(l)_1)²/T) (A.25 for F*_l),
    λ_max,l = α((T−1)/T κ^(l)_2 + κ^(l)_1/T)M (Theorem 4 for F*_l). ``*_finite`` count the layer's bias
    entries (B1_l = M_{l−1} q̃^l q̂^{l−1} + q̃^l, B2_l likewise) and the exact P; ``m_bias`` = C q̃^l/P
    is the layer's share of A.9.
    """

    layer: int
    fan_in: int  # M_{l−1}
    kappa1: float
    kappa2: float
    m: float
    s: float
    lambda_max: float
    m_finite: float
    s_finite: float
    lambda_max_finite: float
    m_bias: float


def layer_predictions(prediction: MeanFieldPrediction) -> list[LayerPrediction]:
    """The per-layer terms (l = 1..L) of a :func:`predict` result; they sum to κ₁, κ₂, m_λ."""
    if not isinstance(prediction, MeanFieldPrediction):
        raise ValueCheckError(f"layer_predictions takes the result of predict(...), got {type(prediction).__name__}")
    arch, op, T = prediction.architecture, prediction.order, prediction.T
    M, C, alpha, P, w = arch.M, arch.C, arch.alpha, arch.num_params, arch.widths
    out = []
    for l in range(1, arch.L + 1):
        a1 = w[l - 1] * op.q_tilde[l] * op.q_hat[l - 1]
        a2 = w[l - 1] * op.q_tilde_st[l] * op.q_hat_st[l - 1]
        bb1, bb2 = (op.q_tilde[l], op.q_tilde_st[l]) if arch.bias else (0.0, 0.0)
        k1, k2 = a1 / (alpha * M), a2 / (alpha * M)
        B1, B2 = a1 + bb1, a2 + bb2
        out.append(LayerPrediction(
            layer=l, fan_in=w[l - 1], kappa1=k1, kappa2=k2, m=C * k1 / M,
            s=alpha * C * ((T - 1) / T * k2**2 + k1**2 / T), lambda_max=alpha * ((T - 1) / T * k2 + k1 / T) * M,
            m_finite=C * B1 / P, s_finite=C * (B1**2 + (T - 1) * B2**2) / (T * P), lambda_max_finite=(B1 + (T - 1) * B2) / T,
            m_bias=C * bb1 / P))
    return out
