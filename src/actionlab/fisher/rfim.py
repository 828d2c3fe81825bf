"""Relative Fisher information matrices (RFIMs) in closed form — Sun & Nielsen, 003.

The RFIM of a module with output ``y``, parameters ``θ`` and reference (input)
``x`` held fixed is (003, section 2; papers.md)

    g^y(θ | x) = E_{p(y|θ,x)}[∂_θ ln p ∂_θ ln pᵀ] = −E_{p(y|θ,x)}[∂²_θ ln p],

and the metric used for learning is its average over the data (003, section 3,
Theorem 3).  Every function here takes the module's weights and a batch of
inputs ``x`` (N × D) and returns the batch *mean* of g^y(θ | x_n) (or a
weighted mean with ``weights``, or the per-sample matrices with
``reduce="none"``).

Conventions
-----------
* A layer's weights are ``W`` (D_out × D_in, the ``torch.nn.Linear`` layout)
  and an optional bias ``b`` (D_out).  The bias is folded in: x̃ = (x, 1) and
  neuron o has the parameter vector w_o = (W[o, :], b[o]) of size
  d = D_in + 1 (d = D_in without a bias).
* The layer's parameter vector stacks the neurons: index (o, i) ↦ o·d + i,
  i.e. the row-major flattening of [W | b] (003, section 2.5: "W is vectorized
  by stacking its columns w_i", with w_i neuron i's weights).
* a_no = w_oᵀ x̃_n is the pre-activation.

Output distributions (as in the supplement, 003 sections 2.1–2.4)
-----------------------------------------------------------------
* ``tanh``: Bernoulli y ∈ {−1, +1} with p(y = ±1) = (1 ± tanh a)/2 (eqs. 5–7),
  RFIM sech²(a) x̃x̃ᵀ (section 2.1).
* ``sigmoid``/``sigm``: Bernoulli y ∈ {0, 1} with p(y = 1) = sigm(a),
  RFIM sigm(a)(1 − sigm(a)) x̃x̃ᵀ (section 2.2).
* ``relu_omega`` (ω, ι), ``elu`` (α) and every other activation: Gaussian
  y ~ N(σ(a), 1) (eq. 8, σ = 1), RFIM σ'(a)² x̃x̃ᵀ (sections 2.3, 2.4):
  relu_ω: [ι + (1 − ι) sigm((1 − ι) a / ω)]² (eq. 2); elu: 1 for a ≥ 0 and
  (α eᵃ)² for a < 0 (eq. 3).
* ``output="gaussian"`` forces the Gaussian model for tanh / sigm too
  (coefficient sech⁴ a, resp. [sigm(1 − sigm)]²).

Matrix representations (dataclasses): :class:`NeuronBlocks` (block-diagonal,
one d × d block per neuron: the non-linear layer, table 1), :class:`Kronecker`
(B ⊗ A: the linear layer, 003 section 2.5), :class:`DenseBlocks` (an
m × m grid of d × d blocks: the softmax layer eq. 10 and two layers eq. 12).
Each has ``.dense()``.

The single-unit coefficient ν(a) belongs to the activation
(:meth:`actionlab.activations.Activation.rfim_coefficient`); this module owns
the layer-level blocks built from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from actionlab import activations as _act
from actionlab._checks import ShapeError, ValueCheckError, check_choice, check_float, check_matrix

__all__ = [
    "augment",
    "rfim_coefficient",
    "default_output",
    "NeuronBlocks",
    "Kronecker",
    "DenseBlocks",
    "neuron_rfim",
    "linear_layer_rfim",
    "nonlinear_layer_rfim",
    "softmax_layer_rfim",
    "two_layer_rfim",
]

# ---------------------------------------------------------------------------------------
# result types
# ---------------------------------------------------------------------------------------
@dataclass
class NeuronBlocks:
    """Block-diagonal matrix diag[G_1, …, G_m] with ``blocks`` of shape (m, d, d)
    (or (N, m, d, d) per sample with ``reduce="none"``)."""

    blocks: torch.Tensor

    @property
    def dim(self) -> int:
        return self.blocks.shape[-3] * self.blocks.shape[-1]

    def dense(self) -> torch.Tensor:
        """The (m·d) × (m·d) matrix (per sample: N × m·d × m·d)."""
        m, d = self.blocks.shape[-3], self.blocks.shape[-1]
        eye = torch.eye(m, dtype=self.blocks.dtype, device=self.blocks.device)
        # out[..., o, i, p, j] = δ_op · blocks[..., o, i, j]
        out = torch.einsum("op,...oij->...oipj", eye, self.blocks)
        return out.reshape(*self.blocks.shape[:-3], m * d, m * d)


@dataclass
class Kronecker:
    """B ⊗ A with neuron-major ordering: entry ((o, i), (p, j)) = B[o, p]·A[i, j]."""

    A: torch.Tensor  # d × d (input side, x̃x̃ᵀ)
    B: torch.Tensor  # m × m (output side)

    @property
    def dim(self) -> int:
        return self.A.shape[-1] * self.B.shape[-1]

    def dense(self) -> torch.Tensor:
        if self.A.dim() == 2:
            return torch.kron(self.B, self.A)
        m, d = self.B.shape[-1], self.A.shape[-1]
        return torch.einsum("...op,...ij->...oipj", self.B, self.A).reshape(*self.A.shape[:-2], m * d, m * d)


@dataclass
class DenseBlocks:
    """A dense matrix stored as an m × m grid of d × d blocks: ``blocks[o, p]`` = G_op, shape (m, m, d, d)."""

    blocks: torch.Tensor

    @property
    def dim(self) -> int:
        return self.blocks.shape[-4] * self.blocks.shape[-1]

    def dense(self) -> torch.Tensor:
        m, d = self.blocks.shape[-4], self.blocks.shape[-1]
        return self.blocks.transpose(-3, -2).reshape(*self.blocks.shape[:-4], m * d, m * d)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def augment(x: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """x̃ = (x, 1): append a column of ones (003, table 1); ``bias=False`` returns x unchanged."""
    if not bias:
        return x
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], dim=-1)


def default_output(activation) -> str:
    """The supplement's output distribution for an activation: 'bernoulli' for tanh / sigm, else 'gaussian'."""
    return _act.get(activation).default_output


def rfim_coefficient(activation, a: torch.Tensor, output: str | None = None) -> torch.Tensor:
    """ν(a) such that a single neuron's RFIM is ν(wᵀx̃)·x̃x̃ᵀ (003, table 1); the activation's own
    :meth:`~actionlab.activations.Activation.rfim_coefficient`:

    * Bernoulli tanh (y = ±1, eqs. 5–7):  sech²(a) = 1 − tanh²(a)       (section 2.1)
    * Bernoulli sigm (y ∈ {0, 1}):       sigm(a)(1 − sigm(a))          (section 2.2)
    * Gaussian N(σ(a), 1) (eq. 8):        σ'(a)²; for relu_ω this is
      [ι + (1 − ι) sigm((1 − ι)a/ω)]² (eq. 2, section 2.3), for elu 1 / (α eᵃ)² (eq. 3, section 2.4).
    """
    return _act.get(activation).rfim_coefficient(a, output)


def _weights_vec(weights: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    check_float(weights, "weights")
    if weights.shape != (n,):
        raise ShapeError(f"weights must have shape ({n},) (one per input row), got {tuple(weights.shape)}")
    if bool((weights < 0).any()):
        raise ValueCheckError("weights must be ≥ 0 (a probability distribution over the inputs)")
    return weights.to(like.dtype) / weights.sum()


def _layer_inputs(W: torch.Tensor, b: torch.Tensor | None, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̃, a) with x̃ = (x, 1) and a = x̃ [W | b]ᵀ after shape checks."""
    check_matrix(W, "W")
    check_matrix(x, "x", cols=W.shape[1])
    if b is not None:
        check_float(b, "b")
        if b.shape != (W.shape[0],):
            raise ShapeError(f"b must have shape ({W.shape[0]},) to match W {tuple(W.shape)}, got {tuple(b.shape)}")
    xt = augment(x, b is not None)
    Wt = W if b is None else torch.cat([W, b[:, None]], dim=1)
    return xt, xt @ Wt.T


def _reduce_choice(reduce: str) -> str:
    return check_choice(reduce, ("mean", "none"), "reduce")


# ---------------------------------------------------------------------------------------
# single neuron, layers
# ---------------------------------------------------------------------------------------
def neuron_rfim(
    w: torch.Tensor,
    x: torch.Tensor,
    activation="tanh",
    *,
    bias: bool = True,
    output: str | None = None,
    weights: torch.Tensor | None = None,
    reduce: str = "mean",
) -> torch.Tensor:
    """RFIM of a single neuron y = σ(wᵀx̃) (003, table 1, sections 2.1–2.4): mean_n ν(wᵀx̃_n) x̃_n x̃_nᵀ.

    ``w`` has d = D + 1 entries (the last one is the bias) when ``bias`` is True, else D.
    Returns a d × d matrix (N × d × d with ``reduce="none"``).
    """
    check_float(w, "w")
    if w.dim() != 1:
        raise ShapeError(f"w must be 1-D (the neuron's weights, bias last), got shape {tuple(w.shape)}")
    D = w.shape[0] - (1 if bias else 0)
    W, b = (w[None, :D], w[D:]) if bias else (w[None, :], None)
    res = nonlinear_layer_rfim(W, b, x, activation, output=output, weights=weights, reduce=reduce)
    return res.blocks[..., 0, :, :]


def linear_layer_rfim(
    W: torch.Tensor,
    b: torch.Tensor | None,
    x: torch.Tensor,
    *,
    sigma2: float = 1.0,
    weights: torch.Tensor | None = None,
    reduce: str = "mean",
) -> Kronecker:
    """RFIM of a linear layer y ~ N(W x̃, σ² I) (003, section 2.5):

        g^y(W) = (1/σ²) diag[x̃x̃ᵀ, …, x̃x̃ᵀ] = (I_m / σ²) ⊗ mean_n x̃_n x̃_nᵀ.
    """
    reduce = _reduce_choice(reduce)
    if not sigma2 > 0:
        raise ValueCheckError(f"sigma2 must be > 0, got {sigma2}")
    xt, _ = _layer_inputs(W, b, x)
    B = torch.eye(W.shape[0], dtype=xt.dtype, device=xt.device) / sigma2
    if reduce == "none":
        A = xt[:, :, None] * xt[:, None, :]
        return Kronecker(A=A, B=B.expand(x.shape[0], -1, -1))
    wv = _weights_vec(weights, x.shape[0], xt)
    A = (xt * wv[:, None]).T @ xt
    return Kronecker(A=A, B=B)


def nonlinear_layer_rfim(
    W: torch.Tensor,
    b: torch.Tensor | None,
    x: torch.Tensor,
    activation="tanh",
    *,
    output: str | None = None,
    weights: torch.Tensor | None = None,
    reduce: str = "mean",
) -> NeuronBlocks:
    """RFIM of a non-linear layer with independent output units (003, section 2.6, table 1):

        g^y(W) = diag[G_1, …, G_m],   G_o = mean_n ν(w_oᵀx̃_n) x̃_n x̃_nᵀ,

    ν from :func:`rfim_coefficient` (the single-neuron RFIM of each unit).
    """
    reduce = _reduce_choice(reduce)
    xt, a = _layer_inputs(W, b, x)
    nu = rfim_coefficient(activation, a, output)  # N × m
    if reduce == "none":
        return NeuronBlocks(torch.einsum("no,ni,nj->noij", nu, xt, xt))
    wv = _weights_vec(weights, x.shape[0], xt)
    return NeuronBlocks(torch.einsum("no,ni,nj->oij", nu * wv[:, None], xt, xt))


def softmax_layer_rfim(
    W: torch.Tensor,
    b: torch.Tensor | None,
    x: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    reduce: str = "mean",
) -> DenseBlocks:
    """RFIM of a softmax layer p(y = i) = η_i = softmax(W x̃)_i (003, section 2.7, eq. 10):

        G_ij = mean_n (η_i δ_ij − η_i η_j) x̃_n x̃_nᵀ   (blocks i, j = 1..m).
    """
    reduce = _reduce_choice(reduce)
    xt, a = _layer_inputs(W, b, x)
    eta = torch.softmax(a, dim=1)
    C = torch.diag_embed(eta) - eta[:, :, None] * eta[:, None, :]  # N × m × m
    if reduce == "none":
        return DenseBlocks(torch.einsum("nop,ni,nj->nopij", C, xt, xt))
    wv = _weights_vec(weights, x.shape[0], xt)
    return DenseBlocks(torch.einsum("nop,ni,nj->opij", C * wv[:, None, None], xt, xt))


def two_layer_rfim(
    W: torch.Tensor,
    b: torch.Tensor | None,
    C: torch.Tensor,
    c: torch.Tensor | None,
    x: torch.Tensor,
    activation="sigmoid",
    output_activation="sigmoid",
    *,
    output: str | None = None,
    weights: torch.Tensor | None = None,
    reduce: str = "mean",
) -> DenseBlocks:
    """RFIM g^y(W) of the first layer's weights seen through two layers (003, section 2.8, eqs. 11–12).

    h = σ(W x̃) (deterministic hidden layer, D_h units), y_l independent with
    mean σ_out(c_lᵀ h̃) (Bernoulli for sigm / tanh outputs, Gaussian N(·, 1)
    otherwise; ``C`` is D_y × D_h, ``c`` its bias). Eq. (12):

        G_ij = mean_n Σ_l ν_out(c_lᵀh̃) C_li C_lj σ'(w_iᵀx̃) σ'(w_jᵀx̃) x̃ x̃ᵀ,

    with ν_out the output unit's RFIM coefficient (:func:`rfim_coefficient`).
    Note: eq. (12) writes ν_f(w_i, x) for the hidden factor; it must be the
    derivative σ'(w_iᵀx̃) (= ∂h_i/∂(w_iᵀx̃)), which coincides with the RFIM
    coefficient ν only for Bernoulli tanh / sigm units, not for relu / elu.
    """
    reduce = _reduce_choice(reduce)
    xt, a = _layer_inputs(W, b, x)
    act = _act.get(activation)
    h = act(a)
    _, u = _layer_inputs(C, c, h)
    nu_out = rfim_coefficient(output_activation, u, output)  # N × D_y
    dh = act.derivative(a, 1)  # N × D_h
    # coefficient K[n, i, j] = Σ_l ν_out[n, l] C[l, i] C[l, j] · σ'(a_ni) σ'(a_nj)
    K = torch.einsum("nl,li,lj->nij", nu_out, C, C) * dh[:, :, None] * dh[:, None, :]
    if reduce == "none":
        return DenseBlocks(torch.einsum("nop,ni,nj->nopij", K, xt, xt))
    wv = _weights_vec(weights, x.shape[0], xt)
    return DenseBlocks(torch.einsum("nop,ni,nj->opij", K * wv[:, None, None], xt, xt))
