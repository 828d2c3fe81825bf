"""The exact Taylor expansion of the classifier action, to any order (notes 000–002 §2).

The action of the two-layer classifier q = softmax(U·σ(W z + b) + c) is (eq. 2)

    S(θ) = −Σ_{z,m} p(z, m) ln q_m(z, θ)

with the empirical p(z, m) of the data. Along the ray θ(t) = base + t·θ,

    S(base + tθ) = S_0 + S_1 t + S_2 t² + … ;

for base = 0 these are the notes' S_n(θ) (eq. 3). This module computes them
exactly, names the terms of S_2 and S_3 (eq. 6 and §2.4), and checks every
closed-form claim of the notes (:func:`note_claims`).

How the series is computed (:func:`action_series`, Taylor mode)
---------------------------------------------------------------
Along the ray the pre-activation is exactly linear in t,

    a(t) = a0 + a1 t,   a0 = W0 z + b0,  a1 = W z + b,

so σ(a(t)) has the exact coefficients h_k = σ^{(k)}(a0)/k! · a1^k
(:func:`actionlab.series.activation_on_ray`; on a kink the branch the ray
enters for t > 0, i.e. the sign of a1). The logits
f(t) = (U0 + tU) h(t) + c0 + tc have coefficients f_k = U0 h_k + U h_{k−1}
(+ c0 at k = 0, + c at k = 1), and −ln q_m = logsumexp(f) − f_m is expanded
through the softmax probabilities' own series (:func:`actionlab.series.logsumexp`),
which stays accurate where the softmax saturates (logits ~100, as at a trained θ*).
Samples are streamed in batches; the cost is one projection z·Wᵀ (two with a
base point) plus O(N·H·K + N·M·H·K + N·M·K²).

Kinked activations. relu, leaky relu and elu are not analytic at 0: t ↦ S(tθ)
is then smooth for t > 0 only, and the coefficients returned are the
**right-sided** ones (the limit t → 0⁺), exact for 0 ≤ t < t* where t* is the
first t at which some pre-activation a_β(t) crosses a kink. For relu at
base 0, f(tθ) = t·c + t²·U·relu(W z + b) exactly (positive homogeneity).

Named terms at θ = 0 (:func:`terms`), for σ(0) = 0 and σ analytic at 0
-----------------------------------------------------------------------
With τ_k = σ^{(k)}(0)/k!, f(t) = t c + Σ_{n≥1} t^{n+1} τ_n U (W z + b)^{∘n}, and
LSE(f) = ln M + Σ_k κ_k(f)/k! (cumulants of f_α under the uniform α). Let
p(α) be the class frequencies and, for a feature g(z),

    D_α[g] = (1/M) E_p[g] − p(α) E_{p(z|α)}[g]   (= J_α[g]/M for balanced data),

J̃_α[g] = M·D_α[g] = E_p[g] − M p(α) E_{p(z|α)}[g] (equal to the notes' J when
p(α) = 1/M). Then, exactly (derived here; the notes' coefficients in brackets):

    S_0 = ln M                                                           (eq. 4)  [holds]
    S_1 = −Σ_α (p(α) − 1/M) c_α                                          (eq. 5)  [0 for balanced data]
    S_2 = ½ Σ (δ_αβ/M − 1/M²) c_α c_β                                    (eq. 6, 1st) [holds]
        + (σ'(0)/M) Σ J̃_αγ Σ_β U_αβ W_βγ                               (eq. 6, 2nd) [note: σ'(0)/(2M) — a factor 2 short]
        + σ'(0) Σ_α (1/M − p(α)) Σ_β U_αβ b_β                            [0 for balanced data]
    S_3 = Σ (δ_αβγ/(6M) − (δ_αβ+δ_αγ+δ_βγ)/(6M²) + 1/(3M³)) c c c       [holds]
        + σ'(0) Σ (δ_αγ/M − 1/M²) (Σ_β U_αβ b_β) c_γ                      [note: /12 for silu, i.e. 1/6 of this]
        + σ'(0) Σ (δ_αδ/M − 1/M²) Z_γ (Σ_β U_αβ W_βγ) c_δ                 [note: 1/6 of this]
        + (σ''(0)/M) Σ J̃_αγ Σ_β U_αβ W_βγ b_β                           [note: J/(12M) for silu, 1/6 of this]
        + (σ''(0)/(2M)) Σ J̃_αγδ Σ_β U_αβ W_βγ W_βδ                      [note: J/(12M) for silu, 1/3 of this]
        + (σ''(0)/2) Σ_α (1/M − p(α)) Σ_β U_αβ b_β²                      [0 for balanced data]

and, for the all-orders conjecture (§2.5), the part of S_{n+1} linear in U and
free of b and c is κ_n Σ J̃_{αγ1…γn} Σ_β U_αβ W_βγ1⋯W_βγn with

    κ_n = σ^{(n)}(0) / (n!·M)       (the notes: σ^{(n)}(0)/((n+1)!·M), a factor n+1 too small).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from actionlab import activations as _act
from actionlab import distributed as _D
from actionlab import series as _S
from actionlab._display import short_repr
from actionlab.models import TwoLayerShapes, check_two_layer
from actionlab._checks import (ShapeError, ValueCheckError, check_float, check_labels, check_matrix, check_nonempty,
                               check_same_length)

__all__ = [
    "Params",
    "as_params",
    "action_series",
    "action_exact",
    "kink_radius",
    "Term",
    "Terms",
    "terms",
    "check_terms_activation",
    "class_frequencies",
    "j_tensor",
    "j_contract",
    "LeadingSeries",
    "leading_series",
    "kappa",
    "kappa_note",
    "S2Stability",
    "s2_matrix",
    "s2_stability",
    "DEFAULT_BATCH_BYTES",
]

#: working memory per batch for the (batch × (K+1) × H) coefficient tensor
DEFAULT_BATCH_BYTES = 1 << 27


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------


@dataclass
class Params(TwoLayerShapes):
    """θ = (U, c, W, b) of the two-layer classifier and its activation.

    U: M×H, c: M, W: H×E, b: H — the shapes and their checks are
    :func:`actionlab.models.check_two_layer`, shared with
    :class:`~actionlab.models.TwoLayer`.  Build with :func:`as_params` from a
    TwoLayer, a dict ``{"U","c","W","b"}`` or a 4-tuple (with ``activation=``).
    """

    U: torch.Tensor
    c: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    activation: _act.Activation

    def to(self, dtype=None, device=None) -> Params:
        f = lambda x: x.to(dtype=dtype, device=device)  # noqa: E731
        return Params(f(self.U), f(self.c), f(self.W), f(self.b), self.activation)


def as_params(params, activation=None) -> Params:
    """Normalise a TwoLayer / dict / tuple / Params to :class:`Params` (shapes checked)."""
    if isinstance(params, Params):
        p = params if activation is None else Params(params.U, params.c, params.W, params.b, _act.get(activation))
    else:
        act = activation
        if hasattr(params, "tensors") and callable(params.tensors):
            t = params.tensors()
            act = act if act is not None else getattr(params, "activation", None)
            U, c, W, b = t["U"], t["c"], t["W"], t["b"]
        elif isinstance(params, Mapping):
            missing = {"U", "c", "W", "b"} - set(params)
            if missing:
                raise ValueCheckError(f"params dict lacks {sorted(missing)}; it needs the keys U, c, W, b")
            U, c, W, b = params["U"], params["c"], params["W"], params["b"]
            act = act if act is not None else params.get("activation")
        elif isinstance(params, (tuple, list)) and len(params) == 4:
            U, c, W, b = params
        else:
            raise ValueCheckError(
                f"params must be a TwoLayer, a dict with U, c, W, b, or a tuple (U, c, W, b); got {type(params).__name__}"
            )
        if act is None:
            raise ValueCheckError("no activation given: pass activation='silu' (or any name in actionlab.activations.names())")
        p = Params(*(torch.as_tensor(x) for x in (U, c, W, b)), _act.get(act))
    check_two_layer(p.U, p.c, p.W, p.b)
    return p


def _check_working_dtype(x: torch.Tensor, name: str) -> None:
    """Refuse float16 / bfloat16: the expansion works in float32 or float64."""
    if x.dtype in (torch.float16, torch.bfloat16):
        raise ValueCheckError(
            f"{name} has dtype {x.dtype}; the expansion works in float32 or float64 (float16 and bfloat16 keep "
            f"only ~3 and ~2 significant digits, and float16 overflows above 65504) — convert with .float() or .double()"
        )


def _own_activation(model):
    """The activation a params-like object carries itself (None for a bare tuple (U, c, W, b))."""
    if isinstance(model, Params):
        return model.activation
    if hasattr(model, "tensors") and callable(model.tensors):
        return getattr(model, "activation", None)
    if isinstance(model, Mapping):
        return model.get("activation")
    return None


def _as_base(base, p: Params, activation=None) -> Params:
    """The base point as :class:`Params`, checked against the direction p.

    There is one activation σ in t ↦ S(base + tθ): a base that carries its own
    activation (a TwoLayer, a Params, a dict with "activation") must carry p's;
    a bare tuple takes ``activation`` if given, else p's.
    """
    own = _own_activation(base)
    point = as_params(base, None if own is not None else (activation if activation is not None else p.activation))
    if point.activation != p.activation:
        raise ValueCheckError(
            f"base has activation {point.activation!r} but params have {p.activation!r}; the ray base + tθ has a single "
            f"activation — pass a base with activation {p.activation.name!r} (or base as a tuple (U, c, W, b), which "
            f"takes params' activation)"
        )
    if point.U.shape != p.U.shape or point.W.shape != p.W.shape:
        raise ShapeError(
            f"base has shapes U {tuple(point.U.shape)}, W {tuple(point.W.shape)} but θ has U {tuple(p.U.shape)}, W {tuple(p.W.shape)}"
        )
    for name in ("U", "c", "W", "b"):
        _check_working_dtype(getattr(point, name), f"base {name}")
    return point


def _prepare(params, z, labels, activation=None, base=None):
    p = as_params(params, activation)
    for name in ("U", "c", "W", "b"):
        _check_working_dtype(getattr(p, name), name)
    check_float(z, "z")
    _check_working_dtype(z, "z")
    if z.dim() != 2 or z.shape[1] != p.E:
        raise ShapeError(f"z must be N × E with E = {p.E} (the columns of W), got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z.sum())):  # cheap test first; the full check names the bad entries
        check_matrix(z, "z", cols=p.E)
    check_same_length(z, labels, "z", "labels")
    if z.shape[0] == 0:
        raise ShapeError("z is empty; the action needs at least one sample")
    check_labels(labels, p.M)
    dtype = torch.promote_types(p.U.dtype, z.dtype)
    device = z.device
    p = p.to(dtype=dtype, device=device)
    z = z.to(dtype)
    labels = labels.to(device)
    if base is not None:
        base = _as_base(base, p, activation).to(dtype=dtype, device=device)
    return p, z, labels, base


def _batch_size(batch_size, N, H, K, itemsize, at_zero: bool = True) -> int:
    if batch_size is not None:
        bs = int(batch_size)
        if bs < 1:
            raise ValueCheckError(f"batch_size must be ≥ 1, got {batch_size}")
        return bs
    # base 0 keeps two B × H work arrays of ~16 MiB each (few, large operations: little per-op overhead, which
    # matters on a busy multi-core machine); a base point keeps B × H × (K+1) for the activation series
    per_row = H * itemsize * (2 if at_zero else 2 * (K + 1))
    return max(1, min(N, (DEFAULT_BATCH_BYTES // 4) // max(1, per_row)))


def _checked(group, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` (the local input checks); with a group a failure on any rank raises on every rank."""
    if group is None:
        return fn(*args, **kwargs)
    out, err = None, None
    try:
        out = fn(*args, **kwargs)
    except (ShapeError, ValueCheckError) as e:  # the checks' errors; re-raised on every rank below
        err = e
    _D.raise_together(err, group)
    return out


def _same_params(p: Params, group, base: Params | None = None) -> None:
    """With a group: θ (and the base point) must be the same on every rank (raises on every rank if not)."""
    if not _D.is_distributed(group):
        return
    parts = [p] if base is None else [p, base]
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for q in parts for t in (q.U, q.c, q.W, q.b)])
    _D.check_same(flat, group, "the parameters θ (U, c, W, b) or the base point")


def _check_samples(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None) -> None:
    """z a non-empty N × E matrix, labels N class indices (in range(num_classes) when it is given)."""
    check_matrix(z, "z")
    check_nonempty(z, "z")
    check_labels(labels, num_classes)
    check_same_length(z, labels, "z", "labels")


def _sum_over_ranks(local: torch.Tensor, n_local: int, group) -> tuple[torch.Tensor, int]:
    """(Σ_r local_r, Σ_r n_r) over the group by one all-reduce (docs/distributed.md: the one rule).

    The sum carries the gradient of this rank's own term only (value Σ_r local_r, derivative that of
    local_r): sum the gradients over the ranks, as DistributedDataParallel does.
    """
    if not _D.is_distributed(group):
        return local, int(n_local)
    n = torch.tensor([float(n_local)], dtype=local.dtype, device=local.device)
    tot = _D.all_reduce_sum(torch.cat([local.detach().reshape(-1), n]), group)
    glob = tot[:-1].reshape(local.shape)
    if local.requires_grad:
        glob = glob + (local - local.detach())
    return glob, int(round(float(tot[-1])))


def _progress(iterable, total, enabled, desc):
    if enabled is False:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=None if enabled is None else not enabled, leave=False)


# ---------------------------------------------------------------------------------------
# the exact series
# ---------------------------------------------------------------------------------------


def _logit_series(p: Params, base: Params | None, zb: torch.Tensor, K: int) -> torch.Tensor:
    """Coefficients of f(t) = (U0 + tU)·σ(a0 + a1 t) + c0 + tc for a batch: shape (B, M, K+1)."""
    act = p.activation
    B = zb.shape[0]
    a1 = torch.addmm(p.b, zb, p.W.T)  # (B, H)
    f = zb.new_zeros(B, K + 1, p.M)
    if base is None:
        # base 0: f_k = U h_{k−1} (k ≥ 1), h_j = τ_j a1^j; only h_0..h_{K−1} are needed.
        # Powers are formed in place one at a time (cache-friendly, no B × K × H buffer).
        if K >= 1:
            Kh = K - 1  # highest h order needed
            tp = act.taylor(Kh, side=+1)
            kinked = 0.0 in tuple(act.kinks)
            UT = p.U.T
            grad = torch.is_grad_enabled() and (a1.requires_grad or p.U.requires_grad)
            if Kh >= 1:
                if kinked:
                    tm = act.taylor(Kh, side=-1)
                    parts = [(a1.clamp(min=0), tp), (a1.clamp(max=0), tm)]
                else:
                    parts = [(a1, tp)]
                for base_, coef in parts:
                    pw = None
                    for k in range(1, Kh + 1):
                        # a1^k: a1 itself, then a fresh square, then in place
                        if k == 1:
                            pw = base_
                        elif k == 2 or grad:
                            pw = pw * base_
                        else:
                            pw = pw.mul_(base_)  # in place when nothing needs it for backward
                        if coef[k] != 0.0:
                            f[:, k + 1, :] += coef[k] * (pw @ UT)
            # h_0 = σ(0) (the same on both sides: σ is continuous)
            f[:, 1, :] = tp[0] * p.U.sum(1) + p.c
    else:
        a0 = zb @ base.W.T + base.b
        h = _S.activation_on_ray(act, a0, a1, K)  # (B, H, K+1)
        ht = h.transpose(1, 2)  # (B, K+1, H)
        f = ht @ base.U.T
        if K >= 1:
            f[:, 1:, :] += ht[:, :K, :] @ p.U.T
            f[:, 1, :] += p.c
        f[:, 0, :] += base.c
    return f.transpose(1, 2)  # (B, M, K+1)


def action_series(
    params,
    z: torch.Tensor,
    labels: torch.Tensor,
    order: int,
    base=None,
    *,
    activation=None,
    batch_size: int | None = None,
    progress: bool | None = False,
    group=None,
) -> torch.Tensor:
    """The exact Taylor coefficients [S_0, …, S_K] of t ↦ S(base + tθ) (notes eq. 3).

    Parameters
    ----------
    params : the direction θ — a :class:`~actionlab.models.TwoLayer`, a dict
        ``{"U","c","W","b"}`` or a tuple (then pass ``activation=``).
    z, labels : the data (N × E floats, N class indices); p(z, m) is their
        empirical distribution, S = −(1/N) Σ_i ln q_{m_i}(z_i) (eq. 2).
    order : K ≥ 0.
    base : the expansion point (same kinds as ``params``); ``None`` = θ = 0,
        so that S_n is the notes' S_n(θ). The function has one activation σ:
        a base carrying another activation than ``params`` is refused
        (ValueCheckError); a bare tuple base takes ``params``' activation.
    batch_size : samples per batch (default: sized to ~128 MiB of work space).
    group : a ``torch.distributed`` ProcessGroup or None (this process alone): each rank
        passes its shard of (z, labels) and gets the coefficients over the union
        (docs/distributed.md); one all-reduce of K + 2 numbers. θ and base must be the same
        on every rank; the gradient is this rank's share (sum it over the ranks).

    Returns a 1-D tensor of length K+1 in the promoted dtype of θ and z
    (float64 in, float64 out), differentiable with respect to θ. float16 and
    bfloat16 inputs are refused (ValueCheckError): use float32 or float64.

    Accuracy (measured by tests/test_series_saturated.py against an mpmath
    reference, numbers in docs/expansion.md): at orders ≤ 16 the error of S_k
    stays within a small multiple of the working precision times the size of
    the coefficients (max_{j≤k} of |f_j| and |S_j|), at θ = 0 and at
    saturated base points (logits ~100) alike: ≲ 256·ε times that size, i.e.
    ~1e-14 in float64 and ~1e-5 in float32 (float32 measured 2e-7…4e-5
    relative to |S_k| at base logits 1…100).

    For activations with a kink at the expansion point (relu, leaky relu, elu
    at θ = 0) the coefficients are the right-sided ones, exact for small t > 0
    (the ray's branch is chosen per pre-activation by the sign of a1 = W z + b).
    """
    if not isinstance(order, int) or order < 0:
        raise ValueCheckError(f"order must be a non-negative int, got {order!r}")
    p, z, labels, base = _checked(group, _prepare, params, z, labels, activation, base)
    _same_params(p, group, base)
    K = order
    N = z.shape[0]
    bs = _batch_size(batch_size, N, p.H, K, z.element_size(), at_zero=base is None)
    total = torch.zeros(K + 1, dtype=torch.float64, device=z.device)
    starts = range(0, N, bs)
    for s in _progress(starts, len(starts), progress, f"S_0..S_{K}"):
        zb = z[s : s + bs]
        lab = labels[s : s + bs]
        f = _logit_series(p, base, zb, K)  # (B, M, K+1)
        L = _S.logsumexp(f, dim=1)  # (B, K+1)
        fm = f.gather(1, lab.view(-1, 1, 1).expand(-1, 1, K + 1)).squeeze(1)
        total = total + (L - fm).sum(0).to(torch.float64)
    total, N = _sum_over_ranks(total, N, group)
    return (total / N).to(z.dtype)


def action_exact(params, z, labels, *, activation=None, batch_size: int | None = None, group=None) -> torch.Tensor:
    """S(θ) itself (eq. 2), streamed in batches — the value the partial sums approach.

    ``group``: each rank passes its shard and gets S over the union (one all-reduce of 2 numbers).
    """
    p, z, labels, _ = _checked(group, _prepare, params, z, labels, activation)
    _same_params(p, group)
    N = z.shape[0]
    bs = batch_size or max(1, min(N, DEFAULT_BATCH_BYTES // max(1, 2 * p.H * z.element_size())))
    total = torch.zeros((), dtype=torch.float64, device=z.device)
    for s in range(0, N, bs):
        zb = z[s : s + bs]
        logits = p.activation(zb @ p.W.T + p.b) @ p.U.T + p.c
        total = total + torch.nn.functional.cross_entropy(logits, labels[s : s + bs], reduction="sum").to(torch.float64)
    total, N = _sum_over_ranks(total, N, group)
    return (total / N).to(z.dtype)


def kink_radius(params, z: torch.Tensor, base=None, *, activation=None) -> float:
    """The largest t* such that the series of t ↦ S(base + tθ) is exact on 0 ≤ t < t* for kinked σ.

    t* = min over samples and hidden units of the first t > 0 at which
    a0 + a1 t reaches a kink of σ that a0 is not already on (∞ for analytic σ,
    and for base = 0 with the only kink at 0, where a(t) = t a1 never crosses).
    Beyond t* the one-sided series describes a different analytic piece.
    """
    p = as_params(params, activation)
    base = None if base is None else _as_base(base, p, activation)  # refuses another activation
    kinks = tuple(p.activation.kinks)
    if not kinks:
        return math.inf
    dtype = torch.promote_types(p.U.dtype, z.dtype)
    z = z.to(dtype)
    a1 = z @ p.W.to(dtype).T + p.b.to(dtype)
    if base is None:
        a0 = torch.zeros_like(a1)
    else:
        a0 = z @ base.W.to(dtype).T + base.b.to(dtype)
    best = math.inf
    for k in kinks:
        with torch.no_grad():
            t = (k - a0) / a1
            ok = (t > 0) & torch.isfinite(t) & (a0 != k)
            if bool(ok.any()):
                best = min(best, float(t[ok].min()))
    return best


# ---------------------------------------------------------------------------------------
# class statistics and J tensors
# ---------------------------------------------------------------------------------------


def class_frequencies(labels: torch.Tensor, num_classes: int, dtype=torch.float64, *, group=None) -> torch.Tensor:
    """p(α) = n_α / N (with ``group``: the counts and N of the union of the ranks' shards)."""
    _checked(group, check_labels, labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).to(dtype)
    counts, N = _sum_over_ranks(counts, labels.shape[0], group)
    return counts / N


def _class_diff(z, labels, M, feature, batch_size, weighted: bool, group=None):
    """For a per-sample feature g(z) (B × H), the M × H matrix

    weighted=False: E_p[g] − E_{p(z|α)}[g]                 (J_α[g], needs every class present)
    weighted=True : E_p[g] − M·p(α)·E_{p(z|α)}[g] = (1/N)(Σ_i g_i − M Σ_{i∈α} g_i)   (J̃_α[g])

    With ``group`` the streamed sums Σ_i g_i (H), Σ_{i∈α} g_i (M × H), the class counts n_α (M)
    and N are added over the ranks by one all-reduce before the division, so classes spread
    unevenly over the ranks give the union's class-conditional moments exactly.
    """
    N = z.shape[0]
    tot = None
    per = None
    for s in range(0, N, batch_size):
        g = feature(z[s : s + batch_size])
        oh = torch.nn.functional.one_hot(labels[s : s + batch_size], M).to(g.dtype)
        ts, ps = g.sum(0), oh.T @ g
        tot = ts if tot is None else tot + ts
        per = ps if per is None else per + ps
    counts = torch.bincount(labels, minlength=M).to(per.dtype)
    if _D.is_distributed(group):
        H = tot.shape[0]
        flat, N = _sum_over_ranks(torch.cat([tot, per.reshape(-1), counts]), N, group)
        tot, per, counts = flat[:H], flat[H : H + M * H].reshape(M, H), flat[H + M * H :]
    if weighted:
        return (tot.unsqueeze(0) - M * per) / N
    if bool((counts == 0).any()):
        empty = [int(i) for i in (counts == 0).nonzero().flatten()]
        raise ValueCheckError(
            f"class(es) {empty} have no samples, so E_{{p(z|α)}} is undefined; drop those classes or use class_weighted=True"
        )
    return tot.unsqueeze(0) / N - per / counts.unsqueeze(1)


def j_tensor(
    z: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    *,
    num_classes: int | None = None,
    class_weighted: bool = False,
    max_bytes: int = 1 << 30,
    batch_size: int | None = None,
    group=None,
) -> torch.Tensor:
    """J_{αγ1…γn} = E_p[z_γ1⋯z_γn] − E_{p(z|α)}[z_γ1⋯z_γn] (notes eq. 6, §2.4, §2.5), shape M × E × … × E.

    ``class_weighted=True`` gives J̃ = E_p[…] − M p(α) E_{p(z|α)}[…], the tensor
    that enters the exact expansion for unbalanced data (equal to J when
    p(α) = 1/M). Refuses (ValueCheckError) when M·Eⁿ entries exceed
    ``max_bytes``; use :func:`j_contract` for the contraction with U, W without
    materialising J. ``group``: each rank passes its shard and gets the union's J
    (one all-reduce of the sums, the class counts and N; without ``num_classes``,
    M is the union's largest label + 1).
    """
    def local_checks():
        _check_samples(z, labels, num_classes)
        if not isinstance(n, int) or n < 1:
            raise ValueCheckError(f"n must be an int ≥ 1, got {n!r}")

    _checked(group, local_checks)
    M = int(num_classes) if num_classes is not None else int(_D.all_reduce_max(float(labels.max()), group)) + 1
    _checked(group, check_labels, labels, M)
    E = z.shape[1]
    need = M * E**n * z.element_size()
    if need > max_bytes:
        raise ValueCheckError(
            f"J with n = {n} has M·E^n = {M}·{E}^{n} entries ({need / 2**30:.2f} GiB) > max_bytes = {max_bytes / 2**30:.2f} GiB; "
            f"raise max_bytes, or use j_contract(z, labels, U, W, n), which contracts J with U and W without materialising it"
        )
    per_sample = E**n * z.element_size()
    bs = batch_size or max(1, min(z.shape[0], (1 << 27) // per_sample))

    def outer(zb):
        x = zb
        for _ in range(n - 1):
            x = (x.unsqueeze(-1) * zb.unsqueeze(1)).reshape(zb.shape[0], -1)
        return x

    J = _class_diff(z, labels, M, outer, bs, class_weighted, group)
    return J.reshape((M,) + (E,) * n)


def j_contract(
    z: torch.Tensor,
    labels: torch.Tensor,
    U: torch.Tensor,
    W: torch.Tensor,
    n: int,
    *,
    b: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    class_weighted: bool = False,
    batch_size: int | None = None,
    group=None,
) -> torch.Tensor:
    """Σ_{α,γ1…γn} J_{αγ1…γn} Σ_β U_αβ W_βγ1⋯W_βγn without materialising J, in one pass over the data.

    Uses Σ_γ… J_{αγ…} W_βγ1⋯W_βγn = E_p[(W z)_β^n] − E_{p(z|α)}[(W z)_β^n].
    Options: ``b`` replaces (W z)_β by (W z + b)_β; ``weights`` (H) multiplies
    the β-sum by v_β (e.g. b_β for the U·W·b term of S_3); ``class_weighted``
    uses J̃ (see :func:`j_tensor`). Returns a 0-d tensor. ``group``: each rank passes its
    shard and gets the union's contraction (one all-reduce of M·H + H + M + 1 numbers);
    U, W (b, weights) must be the same on every rank; the gradient is this rank's share.
    """
    def local_checks():
        _check_samples(z, labels, None)
        if not isinstance(n, int) or n < 0:
            raise ValueCheckError(f"n must be an int ≥ 0, got {n!r}")
        if U.dim() != 2 or W.dim() != 2 or U.shape[1] != W.shape[0] or W.shape[1] != z.shape[1]:
            raise ShapeError(
                f"need U (M×H), W (H×E) with E = z.shape[1] = {z.shape[1]}; got U {tuple(U.shape)}, W {tuple(W.shape)}"
            )
        check_labels(labels, U.shape[0])

    _checked(group, local_checks)
    if _D.is_distributed(group):
        same = [t.detach().reshape(-1).to(torch.float64) for t in (U, W, b, weights) if t is not None]
        _D.check_same(torch.cat(same), group, "U, W (and b, weights)")
    M = U.shape[0]
    dtype = torch.promote_types(U.dtype, z.dtype)
    z, U, W = z.to(dtype), U.to(dtype=dtype, device=z.device), W.to(dtype=dtype, device=z.device)
    bb = None if b is None else b.to(dtype=dtype, device=z.device)
    bs = batch_size or max(1, min(z.shape[0], DEFAULT_BATCH_BYTES // max(1, 2 * W.shape[0] * z.element_size())))

    def feat(zb):
        a = zb @ W.T
        if bb is not None:
            a = a + bb
        return a**n

    D = _class_diff(z, labels, M, feat, bs, class_weighted, group)  # M × H
    V = U if weights is None else U * weights.to(dtype=dtype, device=z.device)
    return (V * D).sum()


# ---------------------------------------------------------------------------------------
# named terms of S_2 and S_3
# ---------------------------------------------------------------------------------------


@short_repr
@dataclass
class Term:
    """One named term of S_2 or S_3 at θ = 0.

    value: the term with the coefficient derived here (exact);
    note_value: the same contraction with the notes' coefficient (None where
    the notes have no such term); subterms: how many products the sum runs
    over (e.g. M·H·E² for U·W·W, as counted in note 001 §2.4).
    """

    name: str
    order: int
    value: float
    coefficient: str
    note_value: float | None
    note_coefficient: str | None
    subterms: int
    vanishes_when_balanced: bool = False


@short_repr
@dataclass
class Terms:
    """The decomposition of S_2 and S_3 at θ = 0 into the notes' named terms.

    ``S2``/``S3`` are the sums of the named terms; ``exact_S2``/``exact_S3``
    the coefficients from :func:`action_series` (they agree to rounding);
    ``S0``, ``S1`` the lower coefficients; ``balanced`` whether p(α) = 1/M.
    """

    S0: float
    S1: float
    S2: float
    S3: float
    exact_S2: float | None
    exact_S3: float | None
    terms: list[Term] = field(default_factory=list)
    balanced: bool = True
    activation: str = ""
    M: int = 0
    H: int = 0
    E: int = 0

    def by_name(self, name: str) -> Term:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(f"no term {name!r}; terms are {[t.name for t in self.terms]}")

    def order(self, n: int) -> list[Term]:
        return [t for t in self.terms if t.order == n]


def check_terms_activation(act: _act.Activation | str, *, need_zero_at_origin: bool = True) -> None:
    """Refuse σ without a J-term decomposition at θ = 0 (ValueCheckError naming the fix).

    A kink at 0 (relu, leaky relu, elu) is always refused: t ↦ S(tθ) is then smooth
    only for t > 0, its coefficients mix the two one-sided series over the signs of
    W z + b, and no coefficient multiplies a J-contraction (for relu the U-linear part
    of S_2 is Σ U_αβ D_α[relu(W z + b)_β], and S_{n+1}, n ≥ 2, has none). With
    ``need_zero_at_origin`` (the named terms of :func:`terms`) σ(0) = 0 is required too.
    Experiments call it before training so that a refused σ fails before any work is done.
    """
    act = _act.get(act) if isinstance(act, str) else act
    if not act.analytic_at_zero or 0.0 in tuple(act.kinks):
        raise ValueCheckError(
            f"{act.name} is not analytic at 0, so the S_n are not polynomials in θ and have no J-term decomposition "
            f"(terms, kappa, leading_series); use action_series(...) for its exact one-sided coefficients"
        )
    if not need_zero_at_origin:
        return
    s0 = act.taylor(0)[0]
    if s0 != 0.0:
        raise ValueCheckError(
            f"the named terms of the notes assume σ(0) = 0, but {act.name}(0) = {s0:g}; "
            f"use action_series(...) for the exact coefficients"
        )


def terms(params, z: torch.Tensor, labels: torch.Tensor, *, activation=None, exact: bool = True,
          batch_size: int | None = None, group=None) -> Terms:
    """S_2 and S_3 at θ = 0 split into the notes' named terms, with the coefficients derived here.

    Requires σ(0) = 0 and σ analytic at 0 (silu, gelu, tanh, erf, linear).
    Terms (see the module docstring for the formulas): ``c·c``, ``U·W``,
    ``U·b`` (S_2); ``c·c·c``, ``(U·b)·c``, ``(U·W)·c``, ``U·W·b``, ``U·W·W``,
    ``U·b·b`` (S_3). ``U·b`` and ``U·b·b`` vanish for balanced data. For
    unbalanced data the J of each coefficient is J̃ = E_p − M·p(α)·E_{p(z|α)}
    (``j_tensor(..., class_weighted=True)``), which equals the notes' J when
    p(α) = 1/M; the sums stay exact either way. With
    ``exact=True`` also runs :func:`action_series` to order 3 for comparison.
    ``group``: each rank passes its shard and gets the terms of the union (the class
    frequencies, the class sums of W z and (W z)², the mean of z: a few all-reduces).
    """
    p, z, labels, _ = _checked(group, _prepare, params, z, labels, activation)
    _same_params(p, group)
    check_terms_activation(p.activation)
    M, H, E = p.M, p.H, p.E
    tau = p.activation.taylor(2)
    s1, s2 = tau[1], 2.0 * tau[2]  # σ'(0), σ''(0)
    dt = z.dtype
    pa = class_frequencies(labels, M, dtype=dt, group=group).to(z.device)
    pdiff = 1.0 / M - pa  # 1/M − p(α)
    balanced = bool(torch.allclose(pa, torch.full_like(pa, 1.0 / M), rtol=0, atol=1e-12))
    U, c, W, b = p.U, p.c, p.W, p.b
    bs = batch_size or max(1, min(z.shape[0], DEFAULT_BATCH_BYTES // max(1, 2 * H * z.element_size())))
    D1 = _class_diff(z, labels, M, lambda zb: zb @ W.T, bs, True, group) / M  # D_α[(Wz)_β] = J̃/M
    D2 = _class_diff(z, labels, M, lambda zb: (zb @ W.T) ** 2, bs, True, group) / M
    Zsum, Nz = _sum_over_ranks(z.sum(0), z.shape[0], group)
    Z = Zsum / Nz
    Ub = U @ b
    UWZ = U @ (W @ Z)

    def cov_c(v):  # Σ_αδ (δ_αδ/M − 1/M²) v_α c_δ
        return float((v * c).sum() / M - v.sum() * c.sum() / M**2)

    cc = 0.5 * float((c * c).sum() / M - c.sum() ** 2 / M**2)
    cbar = c.mean()
    ccc = float(((c - cbar) ** 3).mean() / 6.0)
    uw = s1 * float((U * D1).sum())
    ub = s1 * float((pdiff * Ub).sum())
    ubc = s1 * cov_c(Ub)
    uwc = s1 * cov_c(UWZ)
    uwb = s2 * float((U * b * D1).sum())
    uww = 0.5 * s2 * float((U * D2).sum())
    ubb = 0.5 * s2 * float((pdiff * (U @ (b * b))).sum())
    T = [
        Term("c·c", 2, cc, "½ Σ (δ_αβ/M − 1/M²) c_α c_β", cc, "½ Σ (δ_αβ/M − 1/M²) c_α c_β (eq. 6)", M * M),
        Term("U·W", 2, uw, "(σ'(0)/M) Σ J_αγ Σ_β U_αβ W_βγ", 0.5 * uw,
             "½ · (σ'(0)/M) Σ J_αγ Σ_β U_αβ W_βγ (eq. 6: ½ Σ J/(2M) UW with σ'(0) = ½)", M * H * E),
        Term("U·b", 2, ub, "σ'(0) Σ_α (1/M − p(α)) Σ_β U_αβ b_β", 0.0 if balanced else None,
             "absent (∂²S/∂U∂b = 0 for balanced data)", M * H, True),
        Term("c·c·c", 3, ccc, "Σ (δ_αβγ/(6M) − (δ_αβ+δ_αγ+δ_βγ)/(6M²) + 1/(3M³)) c_α c_β c_γ", ccc,
             "the same (§2.4)", M**3),
        Term("(U·b)·c", 3, ubc, "σ'(0) Σ (δ_αγ/M − 1/M²) (Σ_β U_αβ b_β) c_γ", ubc / 6.0,
             "(σ'(0)/6) Σ (δ_αγ/M − 1/M²) (U·b)_α c_γ (§2.4: δ/(12M) − 1/(12M²) with σ'(0) = ½)", M * M * H),
        Term("(U·W)·c", 3, uwc, "σ'(0) Σ (δ_αδ/M − 1/M²) Z_γ (Σ_β U_αβ W_βγ) c_δ", uwc / 6.0,
             "(σ'(0)/6) Σ (δ_αδ/M − 1/M²) Z_γ (U·W)_αγ c_δ (§2.4: /12 with σ'(0) = ½)", M * M * H * E),
        Term("U·W·b", 3, uwb, "(σ''(0)/M) Σ J_αγ Σ_β U_αβ W_βγ b_β", uwb / 6.0,
             "(σ''(0)/(6M)) Σ J_αγ U W b (§2.4: J/(12M) with σ''(0) = ½)", M * H * E),
        Term("U·W·W", 3, uww, "(σ''(0)/(2M)) Σ J_αγδ Σ_β U_αβ W_βγ W_βδ", uww / 3.0,
             "(σ''(0)/(6M)) Σ J_αγδ U W W (§2.4: J/(12M) with σ''(0) = ½)", M * H * E * E),
        Term("U·b·b", 3, ubb, "(σ''(0)/2) Σ_α (1/M − p(α)) Σ_β U_αβ b_β²", 0.0 if balanced else None,
             "absent (∂³S/∂U∂b∂b = 0 for balanced data)", M * H, True),
    ]
    S1 = float(-((pa - 1.0 / M) * c).sum())
    S2 = sum(t.value for t in T if t.order == 2)
    S3 = sum(t.value for t in T if t.order == 3)
    e2 = e3 = None
    if exact:
        ser = action_series(p, z, labels, 3, batch_size=batch_size, group=group)
        e2, e3 = float(ser[2]), float(ser[3])
    return Terms(S0=math.log(M), S1=S1, S2=S2, S3=S3, exact_S2=e2, exact_S3=e3, terms=T, balanced=balanced,
                 activation=p.activation.name, M=M, H=H, E=E)


# ---------------------------------------------------------------------------------------
# the all-orders conjecture (§2.5)
# ---------------------------------------------------------------------------------------


def _kappa_activation(activation, n: int, M: int) -> _act.Activation:
    act = _act.get(activation)
    check_terms_activation(act, need_zero_at_origin=False)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueCheckError(f"n must be an int ≥ 1 (the power of W in Σ J U Wⁿ), got {n!r}")
    if not isinstance(M, int) or isinstance(M, bool) or M < 1:
        raise ValueCheckError(f"M must be an int ≥ 1 (the number of classes), got {M!r}")
    return act


def kappa(activation, n: int, M: int) -> float:
    """κ_n = σ⁽ⁿ⁾(0)/(n!·M): the exact coefficient of Σ J U Wⁿ in S_{n+1} (derived here; notes §2.5).

    It is the coefficient of the part of S_{n+1} linear in U and free of b and c, for any σ
    analytic at 0 (σ(0) ≠ 0 adds only terms of higher degree in U). A kink at 0 (relu,
    leaky relu, elu) is refused with the ValueCheckError of :func:`terms`: there the
    right-hand σ⁽ⁿ⁾(0⁺) would be returned for a contraction that does not exist.
    """
    act = _kappa_activation(activation, n, M)
    return act.taylor(n)[n] / M


def kappa_note(activation, n: int, M: int) -> float:
    """The notes' coefficient σ⁽ⁿ⁾(0)/((n+1)!·M) (000/001 §2.5); kinked σ refused as in :func:`kappa`."""
    act = _kappa_activation(activation, n, M)
    return act.taylor(n)[n] * math.factorial(n) / (math.factorial(n + 1) * M)


@short_repr
@dataclass
class LeadingSeries:
    """Partial sums of the all-orders series ln M + Σ_{n=1..N} κ_n Σ J U Wⁿ (notes §2.5) at θ.

    contractions[n-1] = Σ J̃_{αγ1…γn} Σ_β U_αβ W_βγ1⋯W_βγn; partial_sums[n-1]
    uses the derived κ_n = σ⁽ⁿ⁾(0)/(n!·M); note_partial_sums the notes'
    σ⁽ⁿ⁾(0)/((n+1)!·M); ``exact`` is S(θ) itself.
    """

    n: list[int]
    kappa: list[float]
    kappa_note: list[float]
    contractions: list[float]
    partial_sums: list[float]
    note_partial_sums: list[float]
    exact: float
    lnM: float
    balanced: bool


def leading_series(params, z, labels, n_max: int, *, activation=None, batch_size: int | None = None,
                   group=None) -> LeadingSeries:
    """The notes' conjectured all-orders series at θ (b and c enter only through the exact S).

    ln M + Σ_{n ≤ n_max} κ_n Σ J U Wⁿ (000/001 §2.5) with κ_n from :func:`kappa` and
    :func:`kappa_note`. σ must be analytic at 0: relu, leaky relu and elu are refused with
    the ValueCheckError of :func:`terms` (use :func:`action_series` for their exact
    one-sided coefficients). ``group``: each rank passes its shard (docs/distributed.md).
    """
    p, z, labels, _ = _checked(group, _prepare, params, z, labels, activation)
    check_terms_activation(p.activation, need_zero_at_origin=False)
    if not isinstance(n_max, int) or n_max < 1:
        raise ValueCheckError(f"n_max must be an int ≥ 1, got {n_max!r}")
    M = p.M
    pa = class_frequencies(labels, M, group=group)
    balanced = bool(torch.allclose(pa, torch.full_like(pa, 1.0 / M), rtol=0, atol=1e-12))
    ns = list(range(1, n_max + 1))
    ks = [kappa(p.activation, n, M) for n in ns]
    kn = [kappa_note(p.activation, n, M) for n in ns]
    con = [float(j_contract(z, labels, p.U, p.W, n, class_weighted=True, batch_size=batch_size, group=group))
           for n in ns]
    lnM = math.log(M)
    ps, nps = [], []
    a = b_ = lnM
    for k, k2, cval in zip(ks, kn, con):
        a += k * cval
        b_ += k2 * cval
        ps.append(a)
        nps.append(b_)
    ex = float(action_exact(p, z, labels, batch_size=batch_size, group=group))
    return LeadingSeries(ns, ks, kn, con, ps, nps, ex, lnM, balanced)


# ---------------------------------------------------------------------------------------
# S_2 as a quadratic form at θ = 0 (stability)
# ---------------------------------------------------------------------------------------


def _s2_blocks(z, labels, activation, M):
    act = _act.get(activation)
    check_terms_activation(act)
    s1 = act.taylor(1)[1]
    check_matrix(z, "z")
    check_labels(labels, M)
    pa = class_frequencies(labels, M, dtype=z.dtype).to(z.device)
    bs = max(1, min(z.shape[0], 1 << 14))
    Dz = _class_diff(z, labels, M, lambda zb: zb, bs, True) / M  # (1/M)E_p z − p(α) E_α z   (M × E)
    Bw = s1 * Dz
    Bb = s1 * (1.0 / M - pa)
    Hcc = torch.eye(M, dtype=z.dtype, device=z.device) / M - 1.0 / M**2
    return Hcc, Bw, Bb


def s2_matrix(z, labels, activation, H: int, num_classes: int | None = None) -> torch.Tensor:
    """The Hessian ∇²S(0) (S_2 = ½ θᵀ ∇²S(0) θ) as a dense P × P matrix in TwoLayer.to_vector order (U, c, W, b).

    Blocks: cc = δ/M − 1/M²; U_αβ–W_β'γ = δ_ββ' σ'(0) D_αγ with D = (1/M)E_p z − p(α)E_{p(z|α)} z
    (= J/M balanced); U_αβ–b_β' = δ_ββ' σ'(0)(1/M − p(α)); all others 0. For small problems only.
    """
    M = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    Hcc, Bw, Bb = _s2_blocks(z, labels, activation, M)
    E = z.shape[1]
    P = M * H + M + H * E + H
    if P > 20000:
        raise ValueCheckError(f"P = {P} parameters is too large for a dense S_2 matrix; use s2_stability (closed-form spectrum)")
    Hm = torch.zeros(P, P, dtype=z.dtype, device=z.device)
    oU, oc, oW, ob = 0, M * H, M * H + M, M * H + M + H * E
    Hm[oc : oc + M, oc : oc + M] = Hcc
    for beta in range(H):
        iu = oU + torch.arange(M) * H + beta
        iw = oW + beta * E + torch.arange(E)
        Hm[iu.unsqueeze(1), iw.unsqueeze(0)] = Bw
        Hm[iw.unsqueeze(1), iu.unsqueeze(0)] = Bw.T
        Hm[iu, ob + beta] = Bb
        Hm[ob + beta, iu] = Bb
    return Hm


@dataclass
class S2Stability:
    """The quadratic form S_2 at θ = 0 and what it says about stability (notes §2.3).

    c_eigenvalues: spectrum of δ/M − 1/M² (1/M with multiplicity M−1, and 0);
    c_null: its null direction (∝ (1, …, 1): adding a constant to every logit
    leaves q unchanged, so S is exactly flat along it);
    uw_singular_values: singular values s_i of the M × (E+1) block
    σ'(0)[D | 1/M − p(α)] coupling U_·β to (W_β·, b_β); the full spectrum of
    ∇²S(0) is c_eigenvalues ∪ {±s_i, each H times} ∪ zeros, so
    lambda_min = −s_1 < 0: S_2 is indefinite and unbounded below;
    direction: the unit vector (TwoLayer.to_vector order) with S_2 = λ_min/2 —
    U_·0 = u_1/√2, (W_0·, b_0) = −v_1/√2; s3_along: S_3 along it;
    exact: t ↦ S(t·direction) on a grid with its minimiser (where the true
    action turns up while S_0 + S_2 t² (+ S_3 t³) keeps falling).
    """

    M: int
    H: int
    E: int
    c_eigenvalues: list[float]
    c_null: list[float]
    uw_singular_values: list[float]
    lambda_min: float
    lambda_max: float
    spectrum_counts: dict
    direction: torch.Tensor
    s_along: list[float]
    t: list[float]
    exact: list[float]
    quadratic: list[float]
    cubic: list[float]
    t_min: float
    S_min: float


def s2_stability(z, labels, activation, H: int, *, num_classes: int | None = None,
                 t_max: float | None = None, num_t: int = 41) -> S2Stability:
    """Spectrum of S_2 at θ = 0 by blocks, a direction of no lower bound, and the exact S along it."""
    M = int(num_classes) if num_classes is not None else int(labels.max()) + 1
    act = _act.get(activation)
    Hcc, Bw, Bb = _s2_blocks(z, labels, act, M)
    E = z.shape[1]
    ev, evec = torch.linalg.eigh(Hcc)
    null = evec[:, 0]
    null = null * torch.sign(null.sum())
    B = torch.cat([Bw, Bb.unsqueeze(1)], 1)  # M × (E+1)
    u, s, vh = torch.linalg.svd(B, full_matrices=False)
    s1, u1, v1 = s[0], u[:, 0], vh[0]
    kw = {"dtype": z.dtype, "device": z.device}
    U = torch.zeros(M, H, **kw)
    W = torch.zeros(H, E, **kw)
    b = torch.zeros(H, **kw)
    c = torch.zeros(M, **kw)
    U[:, 0] = u1 / math.sqrt(2)
    W[0] = -v1[:E] / math.sqrt(2)
    b[0] = -v1[E] / math.sqrt(2)
    d = {"U": U, "c": c, "W": W, "b": b}
    ser = action_series(d, z, labels, 3, activation=act)
    # orient so that S_3 ≤ 0 along +t (the cubic then falls for t > 0 as well)
    if float(ser[3]) > 0:
        d = {"U": -U, "c": c, "W": -W, "b": -b}  # θ → −θ keeps S_2 and flips S_3
        ser = action_series(d, z, labels, 3, activation=act)
    vec = torch.cat([d["U"].reshape(-1), d["c"], d["W"].reshape(-1), d["b"]])
    if t_max is None:
        t_max = max(4.0, 20.0 / math.sqrt(max(float(s1), 1e-12)))
    ts = torch.linspace(0, t_max, num_t, dtype=torch.float64)  # CPU grid of plain numbers
    ex = []
    for t in ts:
        dt_ = {k: v * float(t) for k, v in d.items()}
        ex.append(float(action_exact(dt_, z, labels, activation=act)))
    S = [float(x) for x in ser]
    quad = [S[0] + S[1] * float(t) + S[2] * float(t) ** 2 for t in ts]
    cub = [s2 + S[3] * float(t) ** 3 for s2, t in zip(quad, ts)]
    i = min(range(len(ex)), key=lambda j: ex[j])
    # refine the minimiser on the bracket
    from scipy.optimize import minimize_scalar

    lo = float(ts[max(i - 1, 0)])
    hi = float(ts[min(i + 1, len(ts) - 1)])
    t_min, S_min = float(ts[i]), ex[i]
    if hi > lo:
        r = minimize_scalar(
            lambda t: float(action_exact({k: v * t for k, v in d.items()}, z, labels, activation=act)),
            bounds=(lo, hi), method="bounded", options={"xatol": 1e-6 * max(hi, 1.0)},
        )
        if r.fun <= S_min:
            t_min, S_min = float(r.x), float(r.fun)
    nz = int((s > 0).sum())
    counts = {
        "c block": M,
        "±s_i (each sign H times)": 2 * nz * H,
        "zeros outside the c block": M * H + H * E + H - 2 * nz * H,
    }
    return S2Stability(
        M=M, H=H, E=E,
        c_eigenvalues=[float(x) for x in ev], c_null=[float(x) for x in null],
        uw_singular_values=[float(x) for x in s],
        lambda_min=-float(s1), lambda_max=max(float(s1), float(ev.max())),
        spectrum_counts=counts, direction=vec, s_along=S,
        t=[float(t) for t in ts], exact=ex, quadratic=quad, cubic=cub, t_min=t_min, S_min=S_min,
    )

