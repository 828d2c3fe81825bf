"""Relative natural gradient descent (RNGD) — Sun & Nielsen (003; algorithm in papers.md).

This module owns the optimizer: the per-layer plan (:func:`describe_layers`),
the running metrics, their damped inverses and the preconditioned step. The
single-unit RFIM coefficient ν comes from the activation object
(:meth:`actionlab.activations.Activation.rfim_coefficient`), the torch module →
activation map from :func:`actionlab.activations.from_module`. Measured speed,
memory and fidelity figures are in docs/rngd.md and benchmarks/bench_rngd.py.

The metric is block-diagonal over the layers of an MLP (003 section 3,
Theorem 3: the Fisher of a model whose every layer output is stochastic is
block-diagonal with the layers' averaged RFIMs as blocks). Each affine layer
with weights W (m × D) and bias b has its bias folded in, x̃ = (x, 1), and its
parameters w_o = (W[o, :], b[o]) ∈ R^d, d = D + 1, per output neuron o.

Models: an ``nn.Sequential`` of Linear / BatchNorm1d / activation layers, a
model with such a ``.net`` (:class:`actionlab.models.MLP`), or the two-layer
classifier :class:`actionlab.models.TwoLayer` f = U σ(W z + b) + c, whose
layers are (W, b) on the input z and (U, c) on the hidden h = σ(W z + b)
(recomputed from the captured z after the forward pass: one extra N·H·E
product per training forward).

Per layer (papers.md, "the authors' published code", items 1–5):

* **non-linear (hidden) layer** followed by an activation σ: one block per
  output neuron (003 section 2.6, table 1),
  G_o = mean_n ν(a_no) x̃_n x̃_nᵀ, with ν = ``σ̄.rfim_coefficient(a)`` of the
  activation's stand-in σ̄ = ``σ.smoothed(relu_omega)``: relu / leaky_relu
  (ι = the leak slope) become the smoothed relu with
  ν(a) = [ι + (1 − ι) sigm((1 − ι) a / ω)]² (003 eq. 2, section 2.3),
  ω = ``relu_omega`` (default 1) — for relu, ι = 0, ω = 1 this is the
  authors' sigm(w_oᵀx̃)²; tanh: sech²(a) (section 2.1, Bernoulli ±1),
  sigmoid: sigm(1 − sigm) (section 2.2), elu: 1 or (α eᵃ)² (section 2.4), any
  other activation: σ'(a)² (Gaussian output, eq. 8). With BatchNorm between
  the Linear and σ, a_no is the input of σ (after batch normalisation).
* **linear layer** (the first and the last layer, as in the authors' code, or
  any Linear not followed by an activation): one matrix shared by all its
  neurons, A = mean_n x̃_n x̃_nᵀ (003 section 2.5, g = diag[x̃x̃ᵀ, …, x̃x̃ᵀ]).
  ``first_layer="per_neuron"`` gives the first layer per-neuron blocks too.

Running average (papers.md item 3): G ← ω G + (1 − ω) G_batch at every step,
ω = ``decay`` (default 0.995), starting from G = I. ``metric_every=k`` (a cheaper
schedule that is not the authors') updates it only at steps t ≡ 0 (mod k), with
the decay compounded over the k steps, G ← ωᵏ G + (1 − ωᵏ) G_batch, so that the
average still spans ≈ 1/(1 − ω) steps (it sees k times fewer mini-batches).

Blocked shared metrics (``shared_block_size=b``, default None = dense, the
authors'): a shared metric with d > b is replaced by its block-diagonal part
over ⌈d/b⌉ contiguous, nearly equal blocks of coordinates (each ≤ b; the bias
coordinate is the last one of the last block), A ≈ diag(A_11, …, A_kk) with
A_jj = mean_n x̃_n,J x̃_n,Jᵀ, damped with the dense metric's ε = λ·tr(A)/d, so
that the inverted matrix is exactly the block-diagonal part of the authors'
damped metric A + εI. This is an approximation — the same kind that RNGD
already makes across neurons and layers — that cuts the first layer's cost by
the factor ⌈d/b⌉ (its fidelity on MNIST: docs/rngd.md).

Low-rank-plus-identity first-layer inverse (``first_layer_rank=k``, default
None = dense, the authors'; an approximation, not in 003): the first layer's
shared metric A (d × d, updated exactly as above) is, at every inverse
refresh, replaced by its top-k eigen-directions and an isotropic remainder,

    A + εI ≈ V_k Λ_k V_kᵀ + ρ (I − V_k V_kᵀ),   ρ = (tr(A + εI) − Σ Λ_k) / (d − k),

ρ the mean of the d − k remaining eigenvalues of the damped metric (so ρ ≥ ε
and the trace is kept), and the step applies its exact inverse to the whole
weight gradient g (m × d) as

    Δ = ρ⁻¹ g + (g V_k) diag(Λ_k⁻¹ − ρ⁻¹) V_kᵀ        (4·m·d·k flops instead of 2·m·d²).

V_k, Λ_k come from a block subspace iteration with Rayleigh–Ritz (k + 10
columns, warm-started from the previous refresh's directions; 6 iterations at
the first refresh, 4 afterwards) — ≈ 12·d²·(k + 10) flops per refresh instead
of an O(d³) Cholesky or eigendecomposition. The same inverse with any remainder
on the complement of V_k — a scalar ρ, or a per-coordinate D — is
:func:`low_rank_inverse_apply` (the diagonal remainder was measured and not
adopted: docs/rngd.md).

Inverse (item 4): at steps t = 0, T, 2T, … (T = ``inverse_every``, counted per
layer, after that step's metric update), every block is replaced by the
inverse of its damped version, computed by Cholesky,

    (G + ε I)⁻¹,   ε = λ · tr(G) / d      (λ = ``damping``, d = block size),

i.e. λ times the block's mean eigenvalue, separately for every per-neuron block
(a blocked shared metric takes its layer's ε, see above). (The
authors' code used ε = 10⁻⁴ · tr(G) without the 1/d; pass
``damping_relative_to="trace"`` for that.)

Step (item 5): the gradient [∇W | ∇b] (m × d) is preconditioned row by row,
Δ_o = G_o⁻¹ g_o (per-neuron) or Δ = [∇W | ∇b] A⁻¹ (shared); then optional
heavy-ball momentum on Δ (buf ← μ buf + Δ), optional decoupled weight decay
(W ← W − lr·wd·W, weights only unless ``decay_bias``), and W ← W − lr·buf.
Parameters outside any layer (BatchNorm's γ, β) take the plain
(momentum-)SGD step with the same lr.

The layer inputs x and pre-activations a are captured by forward hooks that
the optimizer registers (only while the model is in training mode and
autograd is on, so evaluation passes do not disturb them); ``remove_hooks()``
removes them. ``step()`` must follow a training forward/backward pass.

Cost per step and memory (N = batch, layer with m outputs, d = D_in + 1):

=====================  =======================  ======================  ===================
layer kind             metric update (flops)    preconditioning         memory (floats)
=====================  =======================  ======================  ===================
per-neuron (hidden)    N·m·d(d+1) (one GEMM)    2·m·d²                  1.5·m·d² (+ 1.5·N·d² temp)
shared (first/last)    2·N·d²                   2·m·d²                  2·d²
shared, k blocks of b  2·N·d·b                  2·m·d·b                 2·d·b
shared, rank k         2·N·d²                   4·m·d·k                 d² + d·(k + 10)
=====================  =======================  ======================  ===================

(the metric-update column is divided by ``metric_every``)

plus, every T steps, m Cholesky factorisations and inverses of d × d
(≈ m·d³ flops; shared: ≈ d³). Per-neuron metrics are kept as packed upper
triangles (d(d+1)/2 floats each), their inverses as full d × d matrices; a
wide hidden layer (m·d² large) wants ``hidden_layers="shared"``. Worked
examples and the measured step times: docs/rngd.md.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from actionlab import activations as _act
from actionlab import distributed as _D
from actionlab._checks import ValueCheckError, check_choice, check_positive
from actionlab.models import TwoLayer

__all__ = ["RNGD", "LayerSpec", "describe_layers", "low_rank_plus_identity", "low_rank_inverse_apply", "SUPPORTED_MODULES"]

_PASS_THROUGH = (nn.Dropout, nn.Flatten, nn.Identity)
_NORMS = (nn.BatchNorm1d,)
SUPPORTED_MODULES = (
    f"nn.Linear, nn.BatchNorm1d, nn.Dropout, nn.Flatten, nn.Identity and the activations {_act.SUPPORTED_MODULES}"
)


def _activation_of(mod: nn.Module, relu_omega: float) -> _act.Activation | None:
    """The stand-in activation σ̄ = σ.smoothed(ω) whose RFIM weights the blocks (None: not an activation).

    Linear, BatchNorm1d and the pass-through modules are not activations; any other module must be one
    that :func:`actionlab.activations.from_module` knows.
    """
    if isinstance(mod, (nn.Linear, *_NORMS, *_PASS_THROUGH)):
        return None
    try:
        return _act.from_module(mod).smoothed(relu_omega)
    except ValueCheckError as err:
        raise ValueCheckError(
            f"RNGD does not support the layer {type(mod).__name__} ({mod}): {err}. Supported are {SUPPORTED_MODULES}. "
            f"Convolutions have no relative-Fisher blocks here — use another optimizer for them"
        ) from None


def _flatten(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        out: list[nn.Module] = []
        for m in module:
            out.extend(_flatten(m))
        return out
    return [module]


def _sequence_of(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return _flatten(model)
    net = getattr(model, "net", None)
    if isinstance(net, nn.Sequential):
        own = {id(p) for p in model.parameters()}
        if own != {id(p) for p in net.parameters()}:
            raise ValueCheckError(
                f"{type(model).__name__} has parameters outside its .net Sequential; RNGD supports models whose "
                f"parameters all live in one nn.Sequential of {SUPPORTED_MODULES}"
            )
        return _flatten(net)
    raise ValueCheckError(
        f"RNGD needs an nn.Sequential (or a model with an nn.Sequential .net such as actionlab.models.MLP) or an "
        f"actionlab.models.TwoLayer, got {type(model).__name__}; wrap the layers in nn.Sequential of {SUPPORTED_MODULES}"
    )


@dataclass(eq=False)
class LayerSpec:
    """How RNGD treats one affine layer x ↦ W x + b (an nn.Linear, or W, b / U, c of a TwoLayer)."""

    index: int  # position of the layer among the model's affine layers
    weight: nn.Parameter = field(repr=False)  # m × D
    bias: nn.Parameter | None = field(repr=False)  # m, or None
    kind: str  # "per_neuron" or "shared"
    activation: _act.Activation | None  # the σ̄ whose RFIM coefficient weights the blocks
    linear: nn.Linear | None = field(default=None, repr=False)  # the module whose input is x (None: TwoLayer)
    act_module: nn.Module | None = field(default=None, repr=False)  # module whose input is the pre-activation a
    d: int = 0
    m: int = 0
    blocks: int = 1  # shared metrics: number of diagonal blocks (1 = dense)
    rank: int = 0  # shared metrics: k of the low-rank-plus-identity inverse (0 = exact inverse)
    captured: dict = field(default_factory=dict, repr=False)

    @property
    def block(self) -> int:
        """Size B of each shared block (the last one has d − (blocks − 1)·B real coordinates, padded to B)."""
        return -(-self.d // self.blocks)

    @property
    def block_sizes(self) -> list[int]:
        return [self.block] * (self.blocks - 1) + [self.d - (self.blocks - 1) * self.block]

    @property
    def metric_numel(self) -> int:
        if self.kind == "per_neuron":  # packed upper triangles
            return self.m * self.d * (self.d + 1) // 2
        return self.blocks * self.block * self.block


_OVERSAMPLE = 10  # extra columns of the subspace iteration of a low-rank inverse
_SUBSPACE_ITERS_FIRST = 6  # subspace iterations at the first refresh (random start)
_SUBSPACE_ITERS = 4  # at later refreshes (warm start from the previous directions; 2 lost up to 0.01 of cosine, docs/rngd.md)


def low_rank_plus_identity(Gd: torch.Tensor, k: int, start: torch.Tensor | None = None,
                           iters: int = _SUBSPACE_ITERS_FIRST) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs of a symmetric positive semi-definite d × d ``Gd`` and the isotropic remainder ρ.

    Block subspace iteration Q ← qr(Gd Q) (``iters`` times, k + 10 columns, from ``start`` or a seeded
    Gaussian block), then Rayleigh–Ritz: eigh(Qᵀ Gd Q). Returns (Λ_k descending, V_k (d × k), ρ, Q) with
    ρ = (tr Gd − Σ Λ_k)/(d − k) the mean of the remaining eigenvalues and Q the Ritz basis (the next warm start).
    """
    d = Gd.shape[-1]
    p = min(d, k + _OVERSAMPLE)
    if start is None or start.shape != (d, p):
        gen = torch.Generator(device=Gd.device).manual_seed(0)
        start = torch.randn(d, p, generator=gen, dtype=Gd.dtype, device=Gd.device)
    Q = start.to(Gd.dtype)
    for _ in range(iters):
        Q, _ = torch.linalg.qr(Gd @ Q)
    vals, U = torch.linalg.eigh(Q.T @ Gd @ Q)
    Q = Q @ U.flip(-1)
    vals = vals.flip(-1)
    rest = (torch.diagonal(Gd).sum() - vals[:k].sum()) / max(d - k, 1)
    return vals[:k], Q[:, :k], torch.clamp(rest, min=0.0), Q


def low_rank_inverse_apply(g: torch.Tensor, lam: torch.Tensor, V: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """g M⁻¹ for M⁻¹ = V_k Λ_k⁻¹ V_kᵀ + P D⁻¹ P, P = I − V_k V_kᵀ (V_k orthonormal, d × k; g: m × d).

    ``tail`` is the remainder on the complement of V_k: a scalar ρ (the isotropic remainder of
    ``first_layer_rank``, M = V_k Λ_k V_kᵀ + ρP, computed as ρ⁻¹g + (gV_k)(Λ_k⁻¹ − ρ⁻¹)V_kᵀ, 4·m·d·k flops) or a
    vector D of d per-coordinate values (a diagonal remainder, e.g. diag(A + εI − V_kΛ_kV_kᵀ); 8·m·d·k flops).
    M is exact on the kept directions (M V_k = V_k Λ_k) in both cases.
    """
    gV = g @ V
    if tail.dim() == 0:
        return g / tail + (gV * (1.0 / lam - 1.0 / tail)) @ V.T
    r = (g - gV @ V.T) / tail
    return (gV / lam) @ V.T + r - (r @ V) @ V.T


def damping_epsilon(trace: torch.Tensor, d: int, damping: float, relative_to: str = "mean_eigenvalue") -> torch.Tensor:
    """ε = λ·tr(G)/d (``relative_to="mean_eigenvalue"``) or λ·tr(G) (``"trace"``, the authors' code) of a d × d metric."""
    return damping * trace / (d if relative_to == "mean_eigenvalue" else 1.0)


def _layer_kind(k: int, n_layers: int, act, first_layer: str, hidden_layers: str) -> str:
    """'per_neuron' for a layer followed by an activation that is neither the last nor a shared first one."""
    first, last = k == 0, k == n_layers - 1
    if act is None or last or (first and first_layer == "shared") or hidden_layers == "shared":
        return "shared"
    return "per_neuron"


def _spec(k, weight, bias, kind, act, shared_block_size, linear=None, act_module=None, rank=None) -> LayerSpec:
    per = kind == "per_neuron"
    spec = LayerSpec(k, weight, bias, kind, act if per else None, linear, act_module if per else None)
    spec.m, spec.d = weight.shape[0], weight.shape[1] + (1 if bias is not None else 0)
    if kind == "shared" and k == 0 and rank is not None and spec.d > rank:
        spec.rank = int(rank)  # low-rank-plus-identity inverse (takes precedence over blocks)
    elif kind == "shared" and shared_block_size is not None and spec.d > shared_block_size:
        spec.blocks = -(-spec.d // int(shared_block_size))
    return spec


def describe_layers(model: nn.Module, first_layer: str = "shared", hidden_layers: str = "per_neuron", relu_omega: float = 1.0,
                    shared_block_size: int | None = None, first_layer_rank: int | None = None) -> list[LayerSpec]:
    """The per-layer plan of RNGD for ``model`` (raises a clear error on unsupported modules)."""
    if isinstance(model, TwoLayer):  # f = U σ(W z + b) + c: layers (W, b) then (U, c)
        act = model.activation.smoothed(relu_omega)
        kinds = [_layer_kind(k, 2, act, first_layer, hidden_layers) for k in (0, 1)]
        return [_spec(0, model.W, model.b, kinds[0], act, shared_block_size, rank=first_layer_rank),
                _spec(1, model.U, model.c, kinds[1], None, shared_block_size)]
    mods = _sequence_of(model)
    acts = []
    for i, m in enumerate(mods):
        try:
            acts.append(_activation_of(m, relu_omega))
        except ValueCheckError as err:
            raise ValueCheckError(f"layer {i}: {err}") from None
    linears = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueCheckError("RNGD found no nn.Linear layer in the model")
    specs: list[LayerSpec] = []
    for k, i in enumerate(linears):
        lin = mods[i]
        act, act_mod = None, None
        for j in range(i + 1, len(mods)):
            if isinstance(mods[j], nn.Linear):
                break
            if acts[j] is not None:
                act, act_mod = acts[j], mods[j]
                break
        kind = _layer_kind(k, len(linears), act, first_layer, hidden_layers)
        specs.append(_spec(k, lin.weight, lin.bias, kind, act, shared_block_size, lin, act_mod, first_layer_rank))
    return specs


def _refuse_singular(eigenvalues: torch.Tensor, d: int, dtype: torch.dtype) -> None:
    """Raise when an undamped metric is singular: λ_min ≤ d·eps·λ_max for any block (its inverse would be noise)."""
    lo, hi = eigenvalues.min(-1).values, eigenvalues.max(-1).values
    bad = lo <= d * torch.finfo(dtype).eps * torch.clamp(hi, min=0.0)
    if bool(bad.any()):
        worst = int(torch.argmax((hi - lo) * bad).item()) if bad.dim() else 0
        raise ValueCheckError(
            f"RNGD: a metric block is singular without damping (block {worst}: smallest eigenvalue "
            f"{float(lo.reshape(-1)[worst]):.3g}, largest {float(hi.reshape(-1)[worst]):.3g}; fewer samples than its "
            f"dimension d = {d} give a rank-deficient metric, 003 section 2.1); damping=0 would step along its null "
            "space — pass damping > 0 (e.g. damping=1e-4 with damping_relative_to='trace', the authors')"
        )


class RNGD(torch.optim.Optimizer):
    """Relative natural gradient descent for MLPs (see the module docstring for every formula).

    Args:
        model: an ``nn.Sequential`` of Linear / BatchNorm1d / activation layers, an
            :class:`actionlab.models.MLP` or an :class:`actionlab.models.TwoLayer`.
        lr: learning rate.
        momentum: heavy-ball momentum μ on the preconditioned direction (0 = off).
        weight_decay: decoupled weight decay (W ← W − lr·wd·W), weights only unless ``decay_bias``.
        decay: ω of the running average G ← ωG + (1 − ω)G_batch (papers.md: 0.995).
        damping: λ in ε = λ·tr(G)/d (or λ·tr(G) with ``damping_relative_to="trace"``).
        inverse_every: T, steps between recomputations of the inverses (papers.md: 100).
        relu_omega: ω of the smoothed relu whose RFIM stands for relu layers (003: ω = 1).
        first_layer: "shared" (authors' code) or "per_neuron".
        hidden_layers: "per_neuron" (003 section 2.6) or "shared" (x̃x̃ᵀ only, for very wide layers).
        damping_relative_to: "mean_eigenvalue" (tr/d, default) or "trace".
        decay_bias: apply the decoupled weight decay to biases (and BatchNorm parameters) too.
        metric_every: update the running metric only at steps t ≡ 0 (mod k) (default 1: every step,
            as the authors); a cheaper schedule, each update G ← ωᵏG + (1 − ωᵏ)G_batch.
        shared_block_size: None (default, the authors': dense shared metrics) or b: shared metrics with
            more than b coordinates become block-diagonal over ⌈d/b⌉ contiguous blocks (an approximation).
        first_layer_rank: None (default, the authors': exact inverse) or k: a shared first-layer metric with
            d > k is inverted as its top-k eigen-directions plus an isotropic remainder (an approximation).
        group: a ``torch.distributed`` ProcessGroup, or None (this process alone; the default). A
            ``DistributedDataParallel`` model brings its own (``model.process_group``). With a group every
            rank holds the same running metrics — those of the global batch, the union of the ranks'
            batches: each step adds Σ_r Σ_n ν x̃x̃ᵀ and Σ_r N_r over the ranks (one all-reduce) — and each
            inverse is computed once, on the rank it is assigned to by cost, and broadcast. The gradients
            must be the global batch's on every rank: DDP averages them (scale each rank's mean loss by
            W·N_r/N when the batches are uneven), with a plain model all-reduce them yourself. The step then
            equals single-process RNGD on the global batch (docs/distributed.md).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-2,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        decay: float = 0.995,
        damping: float = 0.01,
        inverse_every: int = 100,
        relu_omega: float = 1.0,
        first_layer: str = "shared",
        hidden_layers: str = "per_neuron",
        damping_relative_to: str = "mean_eigenvalue",
        decay_bias: bool = False,
        metric_every: int = 1,
        shared_block_size: int | None = None,
        first_layer_rank: int | None = None,
        group=None,
    ) -> None:
        check_positive(lr, "lr")
        check_positive(momentum, "momentum", allow_zero=True)
        check_positive(weight_decay, "weight_decay", allow_zero=True)
        check_positive(damping, "damping", allow_zero=True)
        check_positive(relu_omega, "relu_omega")
        if not 0.0 <= decay < 1.0:
            raise ValueCheckError(f"decay (ω of the running average) must be in [0, 1), got {decay}")
        if int(metric_every) != metric_every or metric_every < 1:
            raise ValueCheckError(f"metric_every must be an integer ≥ 1, got {metric_every}")
        if int(inverse_every) != inverse_every or inverse_every < 1:
            raise ValueCheckError(f"inverse_every (T) must be an integer ≥ 1, got {inverse_every}")
        if shared_block_size is not None and (int(shared_block_size) != shared_block_size or shared_block_size < 1):
            raise ValueCheckError(f"shared_block_size must be None (dense) or an integer ≥ 1, got {shared_block_size}")
        if first_layer_rank is not None and (int(first_layer_rank) != first_layer_rank or first_layer_rank < 1):
            raise ValueCheckError(f"first_layer_rank must be None (exact inverse) or an integer k ≥ 1, got {first_layer_rank}")
        check_choice(first_layer, ("shared", "per_neuron"), "first_layer")
        check_choice(hidden_layers, ("shared", "per_neuron"), "hidden_layers")
        check_choice(damping_relative_to, ("mean_eigenvalue", "trace"), "damping_relative_to")
        if not isinstance(model, nn.Module):
            raise ValueCheckError(f"RNGD(model, ...) takes the model (nn.Module), not {type(model).__name__}")
        if isinstance(model, nn.parallel.DistributedDataParallel):  # the layers live in .module
            group = model.process_group if group is None else group
            model = model.module
        self.group = group if _D.is_distributed(group) else None
        self.specs = describe_layers(model, first_layer, hidden_layers, relu_omega, shared_block_size, first_layer_rank)
        self.model = model
        if self.group is not None:
            flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()])
            _D.check_same(flat, self.group, "the model's parameters")
        params = [p for p in model.parameters() if p.requires_grad]
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, decay=decay, damping=damping,
            inverse_every=int(inverse_every), damping_relative_to=damping_relative_to, decay_bias=decay_bias,
            metric_every=int(metric_every), shared_block_size=shared_block_size, first_layer_rank=first_layer_rank,
        )
        super().__init__(params, defaults)
        self._param_group = {id(p): g for g in self.param_groups for p in g["params"]}
        self._in_layer = set()
        for s in self.specs:
            self._in_layer.add(id(s.weight))
            if s.bias is not None:
                self._in_layer.add(id(s.bias))
        self._hooks: list = []
        self._triu_cache: dict = {}
        self._register_hooks()

    # -- hooks ----------------------------------------------------------------------------
    def _register_hooks(self) -> None:
        if isinstance(self.model, TwoLayer):
            self._hooks.append(self.model.register_forward_hook(self._two_layer_hook))
            return
        for s in self.specs:
            def pre_hook(mod, inputs, s=s):
                if mod.training and torch.is_grad_enabled():
                    s.captured["x"] = inputs[0].detach()

            self._hooks.append(s.linear.register_forward_pre_hook(pre_hook))
            if s.kind == "per_neuron" and s.act_module is not None:
                def act_hook(mod, inputs, s=s):
                    if mod.training and torch.is_grad_enabled():
                        s.captured["a"] = inputs[0].detach()

                self._hooks.append(s.act_module.register_forward_pre_hook(act_hook))

    def _two_layer_hook(self, model: TwoLayer, inputs, output) -> None:
        """After a training forward of f = U σ(W z + b) + c: x = z, a = W z + b for (W, b); x = σ(a) for (U, c)."""
        if model.training and torch.is_grad_enabled():
            first, second = self.specs
            with torch.no_grad():
                z = inputs[0].detach()
                a = z @ model.W.T + model.b
                first.captured.update(x=z, a=a)
                second.captured["x"] = model.activation(a)

    def remove_hooks(self) -> None:
        """Remove the forward hooks (the optimizer cannot step afterwards)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    # -- metric ---------------------------------------------------------------------------
    def _batch_terms(self, s: LayerSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = s.captured.get("x")
        if x is None:
            raise ValueCheckError(
                "RNGD.step() needs the layer inputs of a training forward pass; call model.train(), run the forward "
                "and backward pass with autograd on, then step() (and do not remove the hooks)"
            )
        x = x.reshape(-1, x.shape[-1])
        xt = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], 1) if s.bias is not None else x
        nu = None
        if s.kind == "per_neuron":
            a = s.captured.get("a")
            if a is None:
                raise ValueCheckError(f"RNGD: the pre-activation of layer {s.index} was not captured; run a training forward pass")
            nu = s.activation.rfim_coefficient(a.reshape(-1, s.m).to(xt.dtype))
        return xt, nu

    def _triu(self, s: LayerSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat positions i·d + j and j·d + i (i ≤ j) of the d(d+1)/2 packed upper-triangle entries of a d × d block."""
        key = (s.index, str(device))
        if key not in self._triu_cache:
            iu, ju = torch.triu_indices(s.d, s.d, device=device)
            self._triu_cache[key] = (iu * s.d + ju, ju * s.d + iu)
        return self._triu_cache[key]

    def _initial_metric(self, s: LayerSpec, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """G = I in the layer's layout: (m, d(d+1)/2) packed upper triangles per neuron, (d, d) dense shared,
        (k, B, B) blocked (the padding coordinates of the last block stay exactly 0 and are never used)."""
        d = s.d
        if s.kind == "per_neuron":
            upper, lower = self._triu(s, device)
            return (upper == lower).to(dtype).expand(s.m, upper.numel()).clone()
        if s.blocks == 1:
            return torch.eye(d, dtype=dtype, device=device)
        diag = torch.zeros(s.blocks * s.block, dtype=dtype, device=device)
        diag[:d] = 1.0
        return torch.diag_embed(diag.view(s.blocks, s.block))

    @staticmethod
    def _to_blocks(s: LayerSpec, v: torch.Tensor) -> torch.Tensor:
        """(n, d) → (k, n, B): the coordinates of each block, zero-padded to B."""
        pad = s.blocks * s.block - s.d
        if pad:
            v = torch.nn.functional.pad(v, (0, pad))
        return v.view(v.shape[0], s.blocks, s.block).transpose(0, 1)

    def _update_metric(self, s: LayerSpec, state: dict, decay: float) -> None:
        """G ← ω G + (1 − ω) G_batch (ω already compounded over ``metric_every`` steps)."""
        xt, nu = self._batch_terms(s)
        N, d = xt.shape
        W = s.weight
        if "metric" not in state:
            state["metric"] = self._initial_metric(s, W.dtype, W.device)
        G = state["metric"]
        xt = xt.to(G.dtype)
        if s.kind == "per_neuron":
            # G_o ← ω G_o + (1−ω)/N Σ_n ν_no x̃_n x̃_nᵀ on the upper triangles (i ≤ j), one GEMM (m × N)·(N × d(d+1)/2)
            upper, _ = self._triu(s, xt.device)
            # the full outer products then one index_select: faster on a CPU than gathering x̃_i and x̃_j (docs/rngd.md)
            outer = (xt[:, :, None] * xt[:, None, :]).reshape(N, d * d).index_select(1, upper)
            G.mul_(decay).addmm_(nu.T.to(G.dtype), outer, alpha=(1.0 - decay) / N)
        elif s.blocks == 1:
            G.mul_(decay).addmm_(xt.T, xt, alpha=(1.0 - decay) / N)
        else:  # A_jj ← ω A_jj + (1−ω)/N X̃_Jᵀ X̃_J, one batched GEMM over the k blocks
            xb = self._to_blocks(s, xt)
            G.baddbmm_(xb.transpose(1, 2), xb, beta=decay, alpha=(1.0 - decay) / N)

    def _batch_sum(self, s: LayerSpec, state: dict) -> tuple[torch.Tensor, int]:
        """(Σ_n ν_n x̃_n x̃_nᵀ in the metric's layout, N) of this rank's batch: the unnormalised G_batch."""
        xt, nu = self._batch_terms(s)
        N, d = xt.shape
        if "metric" not in state:
            state["metric"] = self._initial_metric(s, s.weight.dtype, s.weight.device)
        G = state["metric"]
        xt = xt.to(G.dtype)
        if s.kind == "per_neuron":
            upper, _ = self._triu(s, xt.device)
            outer = (xt[:, :, None] * xt[:, None, :]).reshape(N, d * d).index_select(1, upper)
            return nu.T.to(G.dtype) @ outer, N
        if s.blocks == 1:
            return xt.T @ xt, N
        xb = self._to_blocks(s, xt)
        return torch.bmm(xb.transpose(1, 2), xb), N

    def _update_metrics(self, updates: list) -> None:
        """G ← ω G + (1 − ω) G_batch for each (spec, state, param group); with a group G_batch is the global
        batch's, Σ_r S_r / Σ_r N_r, from one all-reduce of every layer's sums and counts."""
        if self.group is None:
            for s, st, g in updates:
                self._update_metric(s, st, g["decay"] ** g["metric_every"])
            return
        if not updates:
            return
        sums = [self._batch_sum(s, st) for s, st, _ in updates]
        dtype = sums[0][0].dtype
        for S, _ in sums:
            dtype = torch.promote_types(dtype, S.dtype)
        counts = torch.tensor([float(n) for _, n in sums], dtype=dtype, device=sums[0][0].device)
        flat = _D.all_reduce_sum(torch.cat([counts] + [S.reshape(-1).to(dtype) for S, _ in sums]), self.group)
        pos = len(sums)
        for i, ((s, st, g), (S, _)) in enumerate(zip(updates, sums)):
            G, decay = st["metric"], g["decay"] ** g["metric_every"]
            total = flat[pos : pos + S.numel()].view(S.shape).to(G.dtype)
            pos += S.numel()
            G.mul_(decay).add_(total, alpha=(1.0 - decay) / float(flat[i]))

    @staticmethod
    def damped_inverse(G: torch.Tensor, damping: float, relative_to: str = "mean_eigenvalue",
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """(G + εI)⁻¹ per block (G: d × d or k × d × d), ε = λ·tr(G)/d (or λ·tr(G)), by Cholesky.

        ``eps`` (one value per block) overrides the damping computed from each block's own trace."""
        d = G.shape[-1]
        if eps is None:
            eps = damping_epsilon(torch.diagonal(G, dim1=-2, dim2=-1).sum(-1), d, damping, relative_to)
        if damping == 0:
            _refuse_singular(torch.linalg.eigvalsh(G), d, G.dtype)
        eps = torch.clamp(eps, min=torch.finfo(G.dtype).tiny ** 0.5)
        eye = torch.eye(d, dtype=G.dtype, device=G.device)
        Gd = G + eps[..., None, None] * eye
        L, info = torch.linalg.cholesky_ex(Gd)
        if bool((info > 0).any()):  # fall back to a symmetric eigendecomposition
            vals, vecs = torch.linalg.eigh(Gd)
            vals = torch.clamp(vals, min=eps[..., None])
            return (vecs / vals[..., None, :]) @ vecs.transpose(-1, -2)
        return torch.cholesky_inverse(L)

    def _dense(self, s: LayerSpec, G: torch.Tensor) -> torch.Tensor:
        """The running metric as matrices: (m, d, d) per neuron (unpacked), else as stored."""
        if s.kind != "per_neuron":
            return G
        d = s.d
        upper, lower = self._triu(s, G.device)
        full = G.new_zeros(G.shape[0], d * d)  # G: all m neurons, or a contiguous chunk of them
        full.index_copy_(1, lower, G)
        full.index_copy_(1, upper, G)
        return full.view(G.shape[0], d, d)

    def metric(self, layer: int) -> torch.Tensor:
        """The running metric of the ``layer``-th Linear layer: (m, d, d) per neuron, (d, d) dense shared,
        (k, B, B) blocked shared (zero-padded last block); raises before the first step."""
        s = self.specs[layer]
        st = self.state[s.weight]
        if "metric" not in st:
            raise ValueCheckError(f"RNGD has no metric for layer {layer} yet; it is built at the first step()")
        return self._dense(s, st["metric"])

    def _low_rank_inverse(self, s: LayerSpec, G: torch.Tensor, group: dict, state: dict) -> torch.Tensor:
        """V_k of A + εI ≈ V_k Λ_k V_kᵀ + ρ(I − V_k V_kᵀ); stores Λ_k⁻¹ − ρ⁻¹ and ρ⁻¹ in ``state`` (module docstring)."""
        d = s.d
        eps = damping_epsilon(torch.diagonal(G).sum(), d, group["damping"], group["damping_relative_to"])
        Gd = G + torch.clamp(eps, min=torch.finfo(G.dtype).tiny ** 0.5) * torch.eye(d, dtype=G.dtype, device=G.device)
        start = state.get("ritz_basis")
        lam, V, rho, Q = low_rank_plus_identity(Gd, s.rank, start, _SUBSPACE_ITERS if start is not None else _SUBSPACE_ITERS_FIRST)
        if group["damping"] == 0:
            _refuse_singular(torch.stack([torch.minimum(rho, lam.min()), lam.max()]), d, G.dtype)
        state["ritz_basis"] = Q
        state["inverse_coef"] = 1.0 / lam - 1.0 / rho
        state["inverse_rho"] = 1.0 / rho
        return V

    def _inverse(self, s: LayerSpec, G: torch.Tensor, group: dict, state: dict | None = None) -> torch.Tensor:
        if s.rank:
            return self._low_rank_inverse(s, G, group, state if state is not None else {})
        eps = None
        if s.kind == "shared" and s.blocks > 1:
            # the ε of the dense metric (its trace is the blocks' traces summed; padding entries are 0), so that
            # the blocked matrix is exactly the block-diagonal part of the dense damped metric A + εI
            tr = torch.diagonal(G, dim1=-2, dim2=-1).sum()
            eps = damping_epsilon(tr, s.d, group["damping"], group["damping_relative_to"]).expand(s.blocks)
        return self.damped_inverse(self._dense(s, G), group["damping"], group["damping_relative_to"], eps)

    def _precondition(self, s: LayerSpec, state: dict, grad: torch.Tensor) -> torch.Tensor:
        Ginv = state["inverse"]
        if s.rank:  # ρ⁻¹ g + (g V_k) diag(Λ_k⁻¹ − ρ⁻¹) V_kᵀ (low_rank_inverse_apply with a scalar ρ, from stored coefficients)
            g = grad.to(Ginv.dtype)
            return (g * state["inverse_rho"] + ((g @ Ginv) * state["inverse_coef"]) @ Ginv.T).to(grad.dtype)
        if s.kind == "per_neuron":
            # G_o⁻¹ g_o as the row product g_oᵀ G_o⁻¹ (the inverse is symmetric): one pass over the m × d × d
            # inverses, faster on a CPU than bmm with a single column (docs/rngd.md)
            return torch.matmul(grad.to(Ginv.dtype)[:, None, :], Ginv)[:, 0, :].to(grad.dtype)
        if s.blocks == 1:
            return (grad.to(Ginv.dtype) @ Ginv).to(grad.dtype)
        out = torch.bmm(self._to_blocks(s, grad.to(Ginv.dtype)), Ginv)  # (k, m, B)
        return out.transpose(0, 1).reshape(grad.shape[0], -1)[:, : s.d].to(grad.dtype)

    # -- inverses over a group ----------------------------------------------------------------
    @staticmethod
    def _units(s: LayerSpec, size: int) -> list[tuple[int, int, float]]:
        """The inverse of a layer as work units (lo, hi, cost ≈ flops): per-neuron layers in up to ``size``
        contiguous chunks of neurons (cost (hi − lo)·d³ each), any other layer whole (d³, k·B³, 2·(iterations + 2)·d²·(k + 10))."""
        d = s.d
        if s.rank:
            return [(0, 1, 2.0 * (_SUBSPACE_ITERS + 2) * d * d * (s.rank + _OVERSAMPLE))]
        if s.kind == "per_neuron":
            units, lo = [], 0
            for n in _D.shard_sizes(s.m, min(size, s.m)):
                units.append((lo, lo + n, float(n) * d**3))
                lo += n
            return units
        return [(0, 1, float(s.blocks) * s.block**3)]

    @staticmethod
    def _unit_shapes(s: LayerSpec, lo: int, hi: int) -> list[tuple[int, ...]]:
        """Shapes of what a unit's owner broadcasts: the inverse (chunk), or V_k, the Ritz basis, Λ_k⁻¹ − ρ⁻¹, ρ⁻¹."""
        if s.rank:
            return [(s.d, s.rank), (s.d, min(s.d, s.rank + _OVERSAMPLE)), (s.rank,), ()]
        if s.kind == "per_neuron":
            return [(hi - lo, s.d, s.d)]
        return [(s.d, s.d)] if s.blocks == 1 else [(s.blocks, s.block, s.block)]

    def _compute_unit(self, s: LayerSpec, st: dict, g: dict, lo: int, hi: int) -> list[torch.Tensor]:
        if s.rank:
            V = self._inverse(s, st["metric"], g, st)
            return [V, st["ritz_basis"], st["inverse_coef"], st["inverse_rho"]]
        G = st["metric"][lo:hi] if s.kind == "per_neuron" else st["metric"]
        return [self._inverse(s, G, g, st)]

    def _refresh_inverses(self, refresh: list) -> None:
        """(G + εI)⁻¹ for each (spec, state, param group); with a group each work unit is computed by one rank
        (greedy by cost: the costliest unit to the least-loaded rank) and broadcast from it."""
        if self.group is None:
            for s, st, g in refresh:
                st["inverse"] = self._inverse(s, st["metric"], g, st)
            return
        rank, size = _D.world(self.group)
        units = [(i, lo, hi, cost) for i, (s, _, _) in enumerate(refresh) for lo, hi, cost in self._units(s, size)]
        load, owners = [0.0] * size, {}
        for u in sorted(range(len(units)), key=lambda j: -units[j][3]):
            owners[u] = min(range(size), key=lambda r: load[r])
            load[owners[u]] += units[u][3]
        mine, err = {}, None
        try:
            for u, (i, lo, hi, _) in enumerate(units):
                if owners[u] == rank:
                    mine[u] = self._compute_unit(*refresh[i], lo, hi)
        except (ValueCheckError, RuntimeError) as e:  # raised on every rank below, so that none waits
            err = e
        _D.raise_together(err, self.group)
        chunks: dict[int, list[torch.Tensor]] = {}
        for u, (i, lo, hi, _) in enumerate(units):
            s, st, _ = refresh[i]
            G = st["metric"]
            shapes = self._unit_shapes(s, lo, hi)
            if owners[u] == rank:
                flat = torch.cat([t.reshape(-1).to(G.dtype) for t in mine[u]])
            else:
                flat = torch.empty(sum(math.prod(sh) for sh in shapes), dtype=G.dtype, device=G.device)
            flat = _D.broadcast(flat, self.group, src=owners[u])
            parts, pos = [], 0
            for sh in shapes:
                parts.append(flat[pos : pos + math.prod(sh)].view(sh))
                pos += math.prod(sh)
            if s.rank:
                st["ritz_basis"], st["inverse_coef"], st["inverse_rho"] = parts[1], parts[2], parts[3]
            chunks.setdefault(i, []).append(parts[0])
        for i, (s, st, _) in enumerate(refresh):
            st["inverse"] = torch.cat(chunks[i]) if s.kind == "per_neuron" and not s.rank else chunks[i][0]

    def preconditioned_gradients(self) -> dict[int, torch.Tensor]:
        """The preconditioned directions [ΔW | Δb] (m × d) of the last step, by layer index (for inspection)."""
        return {s.index: self.state[s.weight]["last_direction"] for s in self.specs if "last_direction" in self.state[s.weight]}

    # -- step -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        done: set[int] = set()
        active = []
        for s in self.specs:
            W, b = s.weight, s.bias
            group = self._param_group.get(id(W))
            if group is None:  # frozen layer
                continue
            done.add(id(W))
            if b is not None:
                done.add(id(b))
            if W.grad is not None or (b is not None and b.grad is not None):
                active.append((s, self.state[W], group))
        # the metrics, then the inverses (each phase one round of communication under a group)
        self._update_metrics([(s, st, g) for s, st, g in active
                              if st.get("rngd_step", 0) % g["metric_every"] == 0 or "metric" not in st])
        self._refresh_inverses([(s, st, g) for s, st, g in active
                                if st.get("rngd_step", 0) % g["inverse_every"] == 0 or "inverse" not in st])
        planned = []  # every layer's direction first, so that a refused metric leaves all parameters untouched
        for s, st, group in active:
            W, b = s.weight, s.bias
            st["rngd_step"] = st.get("rngd_step", 0) + 1
            gW = W.grad if W.grad is not None else torch.zeros_like(W)
            g = gW if b is None else torch.cat([gW, (b.grad if b.grad is not None else torch.zeros_like(b))[:, None]], 1)
            planned.append((s, st, group, self._precondition(s, st, g)))
        for s, st, group, direction in planned:
            W, b = s.weight, s.bias
            st["last_direction"] = direction
            if group["momentum"] > 0:
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = direction.clone()
                else:
                    buf.mul_(group["momentum"]).add_(direction)
                direction = buf
            lr, wd = group["lr"], group["weight_decay"]
            D = W.shape[1]
            if wd > 0:
                W.mul_(1.0 - lr * wd)
                if b is not None and group["decay_bias"]:
                    b.mul_(1.0 - lr * wd)
            W.add_(direction[:, :D], alpha=-lr)
            if b is not None:
                b.add_(direction[:, D], alpha=-lr)
        # parameters outside the Linear layers (BatchNorm γ, β): plain (momentum-)SGD
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) in done or p.grad is None:
                    continue
                d_p = p.grad
                if group["momentum"] > 0:
                    st = self.state[p]
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = d_p.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d_p)
                    d_p = buf
                if group["weight_decay"] > 0 and group["decay_bias"]:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p.add_(d_p, alpha=-group["lr"])
        for s in self.specs:
            s.captured.clear()
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state (copied, so the source optimizer's tensors are never aliased)."""
        super().load_state_dict(copy.deepcopy(state_dict))
        self._param_group = {id(p): g for g in self.param_groups for p in g["params"]}

    # -- memory -----------------------------------------------------------------------------
    def metric_numel(self) -> int:
        """Number of floats in the running metrics (the inverses take as many again)."""
        return sum(s.metric_numel for s in self.specs)

    def __repr__(self) -> str:
        lines = [f"RNGD(lr={self.defaults['lr']}, decay={self.defaults['decay']}, damping={self.defaults['damping']}, T={self.defaults['inverse_every']})"]
        for s in self.specs:
            act = f", ν of {s.activation!r}" if s.activation is not None else ""
            blocks = f", {s.blocks} blocks of ≤ {s.block}" if s.blocks > 1 else (f", rank {s.rank} + identity" if s.rank else "")
            lines.append(f"  layer {s.index}: {'Linear' if s.linear is not None else 'affine'}({s.weight.shape[1]}→{s.m}) {s.kind}, d={s.d}{blocks}{act}")
        return "\n".join(lines)
