"""Measured Fisher information spectra of MLPs through the dual matrix F* = BᵀB/T.

Source: supplement of Karakida, Akaho & Amari (``004_c5eeeb19a9204c84.txt``).

For a network with C outputs f_k and T inputs x(t), the squared-loss (Gaussian
output) Fisher information matrix is F = (1/T) Σ_t Σ_k ∇_θ f_k(t) ∇_θ f_k(t)ᵀ =
BBᵀ/T with B = [∇_θ f_1 … ∇_θ f_C] of size P × CT (A.26–A.27). Its dual
F* = BᵀB/T (CT × CT) has the same non-zero eigenvalues. F* is built here from
the layer-wise factorisation A.18–A.20 / A.29–A.30 without ever forming B:

    F*[(k,s),(k',t)] = (1/T) Σ_l (Σ_i δ^l_{k,i}(s) δ^l_{k',i}(t)) · (Σ_j h^{l-1}_j(s) h^{l-1}_j(t) + 1),

where δ^l_{k,i}(t) = ∂f_k(t)/∂u^l_i are the back-propagated signals (A.2) and
the "+1" is the bias entry ∇_{b^l} f = δ^l. Rows are ordered output-major,
index k·T + t (the block structure F*(k, k') of A.28).

The cross-entropy (softmax) Fisher F = (1/T) Σ_t J_tᵀ (diag p_t − p_t p_tᵀ) J_t
has the dual Rᵀ F*_sq R with R = blockdiag_t(diag √p_t − p_t √p_tᵀ), because
diag p − p pᵀ = R_t R_tᵀ.

Statistics: m_λ = tr F / P = tr F* / P (A.3), s_λ = ‖F*‖²_F / P (A.24),
λ_max = ‖F*‖₂ (Theorem 4); the Fisher–Rao norm θᵀFθ (A.44); a matrix-free
λ_max by Lanczos on F with Jacobian-vector products for T too large for F*.

Any ``nn.Module``: :func:`fisher_statistics` and :func:`layer_statistics` use the
layer-wise factorisation above for Linear/activation stacks and otherwise the Gram
matrix of the per-sample output gradients (``torch.func``,
:func:`actionlab.fisher.ntk.generic_dual_matrix`): Conv2d, pooling, BatchNorm in eval
mode, LayerNorm, … A module whose samples interact (BatchNorm in train mode) or that
``torch.func`` cannot differentiate per sample is refused with the fix.

Per layer (A.19): F* = Σ_l F*_l, F*_l = F*_l^(W) + F*_l^(b) (weights / bias entries, A.3);
:func:`layer_statistics` gives each term's m_l = tr F*_l / P (they sum to m_λ), s_l = ‖F*_l‖²_F / P,
λ_max,l = ‖F*_l‖₂ and the bias part tr F*_l^(b) / P (A.7–A.9).

Distributed (``group=``, the rule of :mod:`actionlab.distributed`): :func:`fisher_statistics`,
:func:`dual_matrix` and :func:`lanczos_lambda_max` take a process group; every rank passes its own
shard of the inputs (``x[actionlab.distributed.shard(T, group)]``) and gets the statistics of the union.
F* is held by block rows (:class:`actionlab.fisher.operators.DualFisherOperator` with ``group=``: a
rank computes its inputs' layer signals and receives the other ranks' one rank and one layer at a
time), so its memory per rank is C·T_r × C·T, falling as 1/world size; m_λ and s_λ are all-reduced
local traces and squared norms, the top eigenvalues come from Lanczos with the distributed product.

Memory: F* has (CT)² entries; before allocating it the functions compare their need with the
memory available on the device (``/proc/meminfo`` MemAvailable or ``os.sysconf`` on the CPU,
``torch.cuda.mem_get_info`` on CUDA; :func:`available_memory`) and refuse with the alternatives
(:class:`InsufficientMemoryError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from actionlab import activations as _act
from actionlab._checks import ActionlabError, ShapeError, ValueCheckError, check_choice, check_matrix
from actionlab._display import short_repr
from actionlab.activations import ActivationModule

__all__ = [
    "FisherStatistics",
    "LayerStatistics",
    "layer_statistics",
    "InsufficientMemoryError",
    "available_memory",
    "check_memory",
    "layer_signals",
    "dual_matrix",
    "fisher_statistics",
    "dense_fisher",
    "lanczos_lambda_max",
    "fisher_rao_norm",
    "fisher_rao_diagonal",
    "input_statistics",
    "OUTPUTS",
    "SPECTRA",
]

OUTPUTS = ("squared", "cross_entropy")
SPECTRA = ("auto", "full", "top")  # fisher_statistics(spectrum=): all CT eigenvalues when they fit / always / top_k

_ELEMENTWISE = (
    nn.Tanh, nn.ReLU, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Softplus, nn.Hardtanh,
    nn.Identity, nn.Mish, nn.CELU, nn.SELU,
)


@dataclass
class _Layer:
    linear: nn.Linear
    act: nn.Module | None  # elementwise activation after the Linear (None: identity)


def _derivative(act: nn.Module | None, u: torch.Tensor) -> torch.Tensor | None:
    """φ'(u) of an elementwise activation module (None: identity).

    The activation object's closed-form derivative where :func:`actionlab.activations.from_module`
    knows the module, else autograd of the sum (nn.Hardtanh, nn.Mish, nn.CELU, nn.SELU, approximate GELU).
    """
    if act is None:
        return None
    try:
        phi = _act.from_module(act)
    except ValueCheckError:
        phi = None
    if phi is not None:
        return None if phi.name == "linear" else phi.derivative(u, 1)
    with torch.enable_grad():  # other elementwise torch activations: autograd of the sum
        v = u.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(act(v).sum(), v)
    return g


def _two_layer_stack(model: nn.Module) -> list[_Layer]:
    """A TwoLayer f = U σ(W z + b) + c (000 §1.1) as Linear(W, b) → σ → Linear(U, c), sharing its parameters."""
    first, second = nn.Linear(model.E, model.H), nn.Linear(model.H, model.M)
    first.weight, first.bias, second.weight, second.bias = model.W, model.b, model.U, model.c
    return [_Layer(first, ActivationModule(model.activation)), _Layer(second, None)]


def _parse(model: nn.Module) -> list[_Layer]:
    """Split an MLP / nn.Sequential / TwoLayer into (Linear, elementwise activation) pairs; clear error otherwise."""
    from actionlab.models import TwoLayer

    if isinstance(model, TwoLayer):
        return _two_layer_stack(model)
    net = model.net if hasattr(model, "net") and isinstance(model.net, nn.Sequential) else model
    if not isinstance(net, nn.Sequential):
        raise ValueCheckError(
            f"fisher statistics need an actionlab MLP or an nn.Sequential of Linear and activation layers, "
            f"got {type(model).__name__}; wrap the layers in nn.Sequential"
        )
    layers: list[_Layer] = []
    for i, mod in enumerate(net):
        if isinstance(mod, nn.Linear):
            layers.append(_Layer(mod, None))
        elif isinstance(mod, (_ELEMENTWISE, ActivationModule)):
            if not layers:
                raise ValueCheckError(f"layer {i} ({type(mod).__name__}) comes before the first Linear; "
                                      f"apply it to the inputs beforehand")
            if layers[-1].act is not None:
                raise ValueCheckError(f"two activations in a row at layer {i}; merge them into one module")
            layers[-1].act = None if isinstance(mod, nn.Identity) else mod
        elif isinstance(mod, nn.Dropout) and not mod.training:
            continue
        elif isinstance(mod, nn.Flatten) and not layers:
            continue
        else:
            extra = ""
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                extra = (" (BatchNorm couples the inputs of a batch in train mode and adds parameters; "
                         "the layer-wise dual matrix covers Linear + elementwise activations only — "
                         "use dense_fisher() or lanczos_lambda_max(), which work for any module, in eval mode)")
            raise ValueCheckError(f"unsupported layer {i}: {type(mod).__name__}{extra}")
    if not layers:
        raise ValueCheckError("the model has no nn.Linear layer")
    n_lin = sum(p.numel() for ly in layers for p in ly.linear.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    if n_lin != n_all:
        raise ValueCheckError(f"the model has {n_all - n_lin} parameters outside its Linear layers; "
                              f"activations with parameters are not supported")
    return layers


def layer_signals(model: nn.Module, x: torch.Tensor):
    """Forward and backward signals of every layer.

    Returns ``(hs, deltas, f)``: hs[l] = h^{l} inputs of layer l+1 (T × M_l),
    deltas[l] = δ^{l+1} = ∂f_k/∂u^{l+1} of shape (C, T, M_{l+1}) for every output
    k and input t (A.2, chain (7)), and the outputs f (T × C).
    """
    layers = _parse(model)
    x = check_matrix(x, "x")
    if x.shape[1] != layers[0].linear.in_features:
        raise ShapeError(f"x has {x.shape[1]} columns but the first Linear expects {layers[0].linear.in_features}")
    w0 = layers[0].linear.weight
    x = x.to(dtype=w0.dtype, device=w0.device)
    hs, dphis = [x], []
    h = x
    with torch.no_grad():
        for ly in layers:
            u = ly.linear(h)
            dphis.append(_derivative(ly.act, u))
            h = ly.act(u) if ly.act is not None else u
            hs.append(h)
        f = hs.pop()
        T, C = f.shape
        eye = torch.eye(C, dtype=f.dtype, device=f.device)
        d = eye[:, None, :].expand(C, T, C)
        if dphis[-1] is not None:
            d = d * dphis[-1][None]
        deltas = [d]
        for l in range(len(layers) - 1, 0, -1):
            d = d @ layers[l].linear.weight
            if dphis[l - 1] is not None:
                d = d * dphis[l - 1][None]
            deltas.append(d)
        deltas.reverse()
    return hs, deltas, f


def _lambda_matrix(f: torch.Tensor) -> torch.Tensor:
    """R_t = diag √p_t − p_t √p_tᵀ (T × C × C), so that R_t R_tᵀ = diag p_t − p_t p_tᵀ."""
    p = torch.softmax(f, dim=1)
    sp = p.sqrt()
    return torch.diag_embed(sp) - p[:, :, None] * sp[:, None, :]


class InsufficientMemoryError(ActionlabError, MemoryError):
    """The dual matrix (or the Jacobian) would not fit in the memory available on the device."""


def available_memory(device=None) -> int | None:
    """Bytes available for new tensors on ``device``; None where unknown (no check is then made).

    CUDA: the free memory of ``torch.cuda.mem_get_info``; CPU: MemAvailable of ``/proc/meminfo``
    (Linux), else ``os.sysconf`` available (or physical) pages × page size.
    """
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for key in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return int(os.sysconf(key)) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            continue
    return None


def check_memory(need_bytes: float, device, what: str, fraction: float = 0.9) -> None:
    """Refuse (:class:`InsufficientMemoryError`) when ``need_bytes`` exceeds ``fraction`` of :func:`available_memory`."""
    avail = available_memory(device)
    if avail is None or need_bytes <= fraction * avail:
        return
    raise InsufficientMemoryError(
        f"{what} needs ≈ {need_bytes / 1024**3:.3g} GB but {avail / 1024**3:.3g} GB are available on "
        f"{torch.device(device or 'cpu')}; alternatives: Lanczos on F itself (lanczos_lambda_max, or "
        f"fisher.operators.FisherOperator with fisher.spectral.top_eigenpairs / spectral_density / "
        f"hutchinson_trace: memory O(P)), fewer inputs T (memory grows as (CT)²), or several ranks "
        f"(DualFisherOperator(..., group=...) of actionlab.distributed: (CT)²/world size per rank)")


def _dual_bytes(C: int, T: int, dtype: torch.dtype, copies: int) -> float:
    return float(copies) * (C * T) ** 2 * torch.empty((), dtype=dtype).element_size()


def _is_stack(model: nn.Module) -> bool:
    """Whether the layer-wise factorisation applies (a Linear/activation stack)."""
    try:
        _parse(model)
    except ValueCheckError:
        return False
    return True


def dual_matrix(model: nn.Module, x: torch.Tensor, outputs: str = "squared", *, group=None) -> torch.Tensor:
    """The dual F* (CT × CT, output-major) from the layer-wise factorisation A.19/A.30 (plus bias terms).

    Linear/activation stacks only (other modules: :func:`actionlab.fisher.ntk.generic_dual_matrix`,
    which :func:`fisher_statistics` picks by itself). Memory O(C·T·max M_l + (CT)²): the P × CT
    matrix B is never formed; the (CT)² need is checked first (:func:`check_memory`).

    ``group=``: ``x`` is this rank's shard (T_r inputs) and the result is **this rank's block rows**
    of the union's F*, shape (C·T_r × C·T): row k·T_r + s is the union's row k·T + offset + s
    (offset = the inputs of the earlier ranks), column k'·T + t the union's. Stacking the ranks'
    rows (per output k, in rank order) gives the one-process F*; any module that
    :class:`~actionlab.fisher.operators.DualFisherOperator` accepts. Collective.
    """
    check_choice(outputs, OUTPUTS, "outputs")
    if group is not None:
        return _distributed_dual(model, x, outputs, None, group).rows
    layers = _parse(model)
    w0 = layers[0].linear.weight
    T, C = check_matrix(x, "x").shape[0], layers[-1].linear.out_features
    check_memory(_dual_bytes(C, T, w0.dtype, 4), w0.device, f"the dual matrix F* ({C * T} × {C * T})")
    hs, deltas, f = layer_signals(model, x)
    Fs = torch.zeros(C * T, C * T, dtype=f.dtype, device=f.device)
    with torch.no_grad():
        for l, ly in enumerate(layers):
            D = deltas[l].reshape(C * T, -1)
            H = hs[l] @ hs[l].T
            if ly.linear.bias is not None:
                H = H + 1.0
            Fs += (D @ D.T) * H.repeat(C, C)
        Fs /= T
        if outputs == "cross_entropy":
            Fs = _apply_softmax(Fs, f)
    return Fs


def _apply_softmax(Fs: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Rᵀ F*_sq R (the cross-entropy dual) with R = blockdiag_t(diag √p_t − p_t √p_tᵀ)."""
    T, C = f.shape
    R = _lambda_matrix(f)  # (T, C, C): R[t, k, a]
    F4 = Fs.reshape(C, T, C, T)
    return torch.einsum("tka,ktls,slb->atbs", R, F4, R).reshape(C * T, C * T)


def _generic_dual(model: nn.Module, x: torch.Tensor, outputs: str, batch_size: int | None) -> torch.Tensor:
    """F* of any sample-wise module (the Jacobian Gram matrix), with the memory check and a clear error."""
    from actionlab.fisher import ntk as _ntk

    _ntk.check_samplewise(model)
    theta = next(model.parameters())
    P = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        C = int(model(x[:1].to(dtype=theta.dtype, device=theta.device)).reshape(1, -1).shape[1])
    T = int(x.shape[0])
    need = _dual_bytes(C, T, theta.dtype, 4) + 2.0 * T * C * P * theta.element_size()
    check_memory(need, theta.device, f"the per-sample Jacobian (T·C·P = {T}·{C}·{P}) and F* ({C * T} × {C * T})")
    try:
        return _ntk.generic_dual_matrix(model, x, outputs, batch_size)
    except RuntimeError as e:
        raise ValueCheckError(
            f"torch.func could not differentiate {type(model).__name__} per sample ({str(e).splitlines()[0][:200]}); "
            f"supported: modules whose samples do not interact (Linear, Conv, pooling, BatchNorm in eval mode, "
            f"LayerNorm, …) without in-place changes of their inputs or .item() calls in forward") from e


@short_repr
@dataclass
class FisherStatistics:
    """Eigen-statistics of the FIM measured through F*.

    ``spectrum``: "full" — ``eigenvalues`` holds all CT eigenvalues of F*; "top" — only the
    ``len(eigenvalues)`` largest (Lanczos), because F* was too large to diagonalise or ``spectrum="top"``
    was asked for. Under a group every rank holds the same result; ``dual`` is then this rank's
    block rows (C·T_r × C·T, see :func:`dual_matrix`).
    """

    eigenvalues: np.ndarray  # descending: all CT eigenvalues of F* (spectrum "full") or the largest ones ("top")
    m: float  # tr F / P
    s: float  # ‖F‖²_F / P = ‖F*‖²_F / P
    lambda_max: float
    num_params: int
    C: int
    T: int  # all inputs (the union of the shards under a group)
    outputs: str
    trace: float
    dual: torch.Tensor | None = field(default=None, repr=False)
    spectrum: str = "full"  # "full": all CT eigenvalues; "top": only the largest ones (Lanczos)

    def nonzero_eigenvalues(self, rtol: float = 1e-10) -> np.ndarray:
        """Eigenvalues above rtol·λ_max (the non-zero eigenvalues of F; only the largest for spectrum "top")."""
        return self.eigenvalues[self.eigenvalues > rtol * max(self.lambda_max, 0.0)]


def _check_model_inputs(model: nn.Module, x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ShapeError(f"x must be a tensor with a leading sample dimension and ≥ 1 input, got "
                         f"{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}; under a group every rank "
                         f"needs ≥ 1 input: shard n ≥ world size inputs with actionlab.distributed.shard(n, group)")
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise ValueCheckError(f"the model has non-finite (NaN or inf) parameters in {', '.join(bad)}; "
                              f"the Fisher information is undefined there — re-initialise or reload the model")


def _check_spectrum_args(outputs: str, spectrum: str, top_k: int) -> None:
    check_choice(outputs, OUTPUTS, "outputs")
    check_choice(spectrum, SPECTRA, "spectrum")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueCheckError(f"top_k must be an integer ≥ 1 (the number of largest eigenvalues), got {top_k!r}")


def _top_values(op, k: int) -> np.ndarray:
    """The k largest eigenvalues of a curvature operator by Lanczos (dense eigh when k ≥ n − 1)."""
    from actionlab.fisher.spectral import top_eigenpairs

    n = op.shape[0]
    k = min(int(k), n)
    method = "lanczos" if k < n - 1 else "dense"
    return np.asarray(top_eigenpairs(op, k, method=method, tol=0.0).values, dtype=np.float64)


def _fits(need: float, device, what: str) -> bool:
    try:
        check_memory(need, device, what)
    except InsufficientMemoryError:
        return False
    return True


def _local_spectrum(Fs: torch.Tensor, spectrum: str, top_k: int) -> tuple[np.ndarray, str]:
    """All eigenvalues of F* (eigvalsh) when asked and they fit; else the top_k by Lanczos on F*."""
    from actionlab.fisher.operators import DenseOperator

    need = _dual_bytes(1, Fs.shape[0], Fs.dtype, 2)
    what = f"the eigendecomposition of F* ({Fs.shape[0]}²)"
    if spectrum == "full":
        check_memory(need, Fs.device, what)
    if spectrum == "full" or (spectrum == "auto" and _fits(need, Fs.device, what)):
        return torch.linalg.eigvalsh(Fs).flip(0).cpu().numpy().astype(np.float64), "full"
    return _top_values(DenseOperator(Fs), top_k), "top"


def fisher_statistics(
    model: nn.Module, x: torch.Tensor, outputs: str = "squared", return_dual: bool = False, *,
    batch_size: int | None = None, group=None, spectrum: str = "auto", top_k: int = 6,
) -> FisherStatistics:
    """m_λ, s_λ, λ_max and the spectrum of the FIM of ``model`` on inputs ``x`` (T × …) via F*.

    Linear/activation stacks: the layer-wise dual :func:`dual_matrix`; any other sample-wise module
    (Conv2d, pooling, eval-mode BatchNorm, LayerNorm, …): the Jacobian Gram matrix of
    :func:`actionlab.fisher.ntk.generic_dual_matrix` (inputs in chunks of ``batch_size``).
    m = tr F*/P (A.3), s = ‖F*‖²_F/P (A.24), λ_max = ‖F*‖₂ (Theorem 4).

    ``spectrum``: "auto" — all CT eigenvalues when their eigendecomposition fits in memory, else
    the ``top_k`` largest by Lanczos (``FisherStatistics.spectrum`` says which); "full" — all or
    :class:`InsufficientMemoryError`; "top" — the ``top_k`` largest only (λ_max alone: ``top_k=1``).

    ``group=`` (:mod:`actionlab.distributed`): ``x`` is this rank's shard; the statistics are the
    union's, the same on every rank. F* by block rows (C·T_r × C·T per rank, checked against the
    rank's memory); m, s by all-reduce of the local traces / squared norms; the top eigenvalues by
    Lanczos with the distributed product. The full spectrum (spectrum "auto" or "full") is gathered
    onto **rank 0 only** when (CT)² fits there, diagonalised there, and its CT eigenvalues are
    broadcast, so every rank returns the same ``eigenvalues``; otherwise (auto) the top_k by Lanczos.
    Collective: every rank calls it with the same arguments except ``x``.
    """
    _check_spectrum_args(outputs, spectrum, top_k)
    if group is not None:
        return _distributed_statistics(model, x, outputs, return_dual, batch_size, group, spectrum, top_k)
    _check_model_inputs(model, x)
    Fs = dual_matrix(model, x, outputs) if _is_stack(model) else _generic_dual(model, x, outputs, batch_size)
    P = sum(p.numel() for p in model.parameters())
    CT, T = Fs.shape[0], int(x.shape[0])
    ev, kind = _local_spectrum(Fs, spectrum, top_k)
    tr = float(torch.trace(Fs))
    return FisherStatistics(
        eigenvalues=ev, m=tr / P, s=float((Fs * Fs).sum()) / P, lambda_max=float(ev[0]), num_params=int(P),
        C=CT // T, T=T, outputs=outputs, trace=tr, dual=Fs if return_dual else None, spectrum=kind,
    )


def _distributed_dual(model: nn.Module, x, outputs: str, batch_size: int | None, group):
    """DualFisherOperator(group=) after collective input checks and a check of the block rows' memory."""
    from actionlab import distributed as _D
    from actionlab.fisher.operators import DualFisherOperator

    err, C = None, 0
    try:
        _check_model_inputs(model, x)
        theta = next(model.parameters(), None)
        if theta is None:
            raise ValueCheckError("the model has no parameters")
        with torch.no_grad():
            C = int(model(x[:1].to(dtype=theta.dtype, device=theta.device)).reshape(1, -1).shape[1])
    except (ValueCheckError, ShapeError) as e:
        err = e
    _D.raise_together(err, group)
    T, Tl = sum(_D.all_sizes(x.shape[0], group)), int(x.shape[0])
    try:  # rows, one layer's term, their running sum and one other rank's signals: ≈ 4 blocks C·T_r × C·T
        need = 4.0 * (C * Tl) * (C * T) * theta.element_size()
        check_memory(need, theta.device, f"this rank's block rows of F* ({C * Tl} × {C * T})")
    except InsufficientMemoryError as e:
        err = e
    _D.raise_together(err, group)
    return DualFisherOperator(model, x, outputs, batch_size, group=group)


def _gathered_eigenvalues(op, group) -> torch.Tensor:
    """All CT eigenvalues of a distributed F*: the block rows gathered onto rank 0 (one rank's at a time),
    eigvalsh there, the eigenvalues broadcast (descending, on every rank)."""
    from actionlab import distributed as _D

    C, T, Tl = op.C, op.T, op.T_local
    full = torch.empty(C, T, C, T, dtype=op.dtype, device=op.device) if _D.is_rank0(group) else None
    mine = op.rows.reshape(C, Tl, C * T).transpose(0, 1).contiguous()  # points first, for each_rank
    for _, o, (blk,) in _D.each_rank([mine], group):
        if full is not None:
            full[:, o: o + blk.shape[0]] = blk.transpose(0, 1).reshape(C, blk.shape[0], C, T)
        del blk
    ev = torch.empty(C * T, dtype=op.dtype, device=op.device)
    if full is not None:
        ev = torch.linalg.eigvalsh(full.reshape(C * T, C * T)).flip(0)
        del full
    return _D.broadcast(ev, group, src=0)


def _distributed_statistics(model, x, outputs, return_dual, batch_size, group, spectrum, top_k) -> FisherStatistics:
    from actionlab import distributed as _D

    op = _distributed_dual(model, x, outputs, batch_size, group)
    P, CT = int(op.full_dim), op.shape[0]
    tr, fro = op.trace(), op.frobenius_sq()
    misfit = 0.0  # rank 0 decides whether the gathered F* and its eigendecomposition fit there
    if spectrum != "top" and _D.is_rank0(group):
        misfit = 0.0 if _fits(_dual_bytes(1, CT, op.dtype, 3), op.device, f"the gathered F* ({CT}²)") else 1.0
    full = spectrum != "top" and _D.all_reduce_max(misfit, group) == 0.0
    if spectrum == "full" and not full:
        raise InsufficientMemoryError(
            f"rank 0 cannot hold the gathered F* ({CT} × {CT}) and its eigendecomposition; use "
            f"spectrum='top' (the top_k largest by Lanczos, memory C·T_r × C·T per rank) or fewer inputs")
    ev = _gathered_eigenvalues(op, group).cpu().numpy().astype(np.float64) if full else _top_values(op, top_k)
    return FisherStatistics(
        eigenvalues=ev, m=tr / P, s=fro / P, lambda_max=float(ev[0]), num_params=P, C=op.C, T=op.T,
        outputs=outputs, trace=tr, dual=op.rows if return_dual else None, spectrum="full" if full else "top",
    )


@short_repr
@dataclass
class LayerStatistics:
    """One layer's term F*_l of A.19 (a Linear of a stack, or any module holding parameters)."""

    name: str
    num_params: int  # P_l, the layer's parameters
    m: float  # tr F*_l / P (P of the whole model: the layer's share of m_λ)
    s: float  # ‖F*_l‖²_F / P
    lambda_max: float  # ‖F*_l‖₂
    m_bias: float  # tr F*_l^(b) / P: the bias entries' share (A.7–A.9)
    trace: float


def _stat(name: str, n: int, F: torch.Tensor, Fb: torch.Tensor | None, P: int) -> LayerStatistics:
    lam = float(torch.linalg.eigvalsh(F)[-1])
    tr = float(torch.trace(F))
    mb = float(torch.trace(Fb)) / P if Fb is not None else 0.0
    return LayerStatistics(name, int(n), tr / P, float((F * F).sum()) / P, lam, mb, tr)


def _stack_layer_terms(model: nn.Module, x: torch.Tensor, outputs: str):
    """Yield (name, P_l, F*_l, F*_l^(b)) of a Linear/activation stack from the layer signals (A.19, A.2)."""
    layers = _parse(model)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    hs, deltas, f = layer_signals(model, x)
    T, C = f.shape
    with torch.no_grad():
        for l, ly in enumerate(layers):
            D = deltas[l].reshape(C * T, -1)
            G = D @ D.T / T
            Fw = G * (hs[l] @ hs[l].T).repeat(C, C)
            Fb = G if ly.linear.bias is not None else None
            F = Fw + Fb if Fb is not None else Fw
            if outputs == "cross_entropy":
                F = _apply_softmax(F, f)
                Fb = _apply_softmax(Fb, f) if Fb is not None else None
            yield names[l], sum(p.numel() for p in ly.linear.parameters()), F, Fb


def _generic_layer_terms(model: nn.Module, x: torch.Tensor, outputs: str, batch_size: int | None):
    """Yield (name, P_l, F*_l, F*_l^(b)) of any module: Gram matrices of slices of the per-sample Jacobian."""
    from actionlab.fisher import ntk as _ntk

    _generic_dual(model, x[:1], outputs, batch_size)  # the checks and clear errors, on one sample
    J = _ntk.per_sample_jacobian(model, x, batch_size)
    _, _, pnames, sizes = _ntk.functional_model(model)
    starts = np.cumsum([0] + sizes)
    for name, sl in _ntk.parameter_groups(model):
        bias = [slice(int(a), int(b)) for n, a, b in zip(pnames, starts[:-1], starts[1:])
                if sl.start <= a < sl.stop and n.rsplit(".", 1)[-1] == "bias"]
        F = _ntk._dual_from_jacobian(J[:, :, sl], model, x, outputs)
        Fb = _ntk._dual_from_jacobian(torch.cat([J[:, :, b] for b in bias], dim=2), model, x, outputs) if bias else None
        yield name, sl.stop - sl.start, F, Fb


def layer_statistics(
    model: nn.Module, x: torch.Tensor, outputs: str = "squared", *, batch_size: int | None = None,
) -> list[LayerStatistics]:
    """m_l, s_l, λ_max,l and the bias share of each layer's term F*_l of F* = Σ_l F*_l (A.19).

    The terms are those of :meth:`actionlab.fisher.operators.DualFisherOperator.layer_terms`
    (one per module holding parameters); Σ_l m_l = m_λ, and m_l is normalised by the whole P so that
    it compares with the layer's summand Cκ^(l)_1/M of :func:`actionlab.fisher.meanfield.layer_predictions`.
    """
    check_choice(outputs, OUTPUTS, "outputs")
    P = sum(p.numel() for p in model.parameters())
    theta = next(model.parameters(), None)
    if theta is None:
        raise ValueCheckError("the model has no parameters")
    stack = _is_stack(model)
    if stack:
        C, T = _parse(model)[-1].linear.out_features, int(check_matrix(x, "x").shape[0])
        check_memory(_dual_bytes(C, T, theta.dtype, 5), theta.device, f"the per-layer terms F*_l ({C * T} × {C * T})")
        terms = _stack_layer_terms(model, x, outputs)
    else:
        terms = _generic_layer_terms(model, x, outputs, batch_size)
    return [_stat(name, n, F, Fb, P) for name, n, F, Fb in terms]


def input_statistics(x: torch.Tensor) -> tuple[float, float]:
    """(q̂⁰, q̂⁰_st): mean of ‖x_t‖²/M_0 and mean over s ≠ t of x_s·x_t/M_0 (papers.md)."""
    x = check_matrix(x, "x").double()
    T, M0 = x.shape
    G = x @ x.T / M0
    qd = float(G.diagonal().mean())
    qs = float((G.sum() - G.diagonal().sum()) / (T * (T - 1))) if T > 1 else 0.0
    return qd, qs


# ---------------------------------------------------------------------------------------
# autodiff-based: dense FIM (reference), Lanczos, Fisher–Rao norm
# ---------------------------------------------------------------------------------------
def _functional(model: nn.Module):
    """``(f, θ, names, sizes)`` of :func:`actionlab.fisher.ntk.functional_model` (one implementation)."""
    from actionlab.fisher import ntk as _ntk

    return _ntk.functional_model(model)


def dense_fisher(model: nn.Module, x: torch.Tensor, outputs: str = "squared") -> torch.Tensor:
    """The P × P FIM from the full Jacobian (torch.func.jacrev): the independent reference for small nets."""
    from torch.func import jacrev

    check_choice(outputs, OUTPUTS, "outputs")
    f, theta, _, _ = _functional(model)
    x = x.to(dtype=theta.dtype, device=theta.device)
    J = jacrev(f)(theta, x)  # (T, C, P)
    T = x.shape[0]
    if outputs == "squared":
        Jf = J.reshape(-1, J.shape[-1])
        return Jf.T @ Jf / T
    with torch.no_grad():
        R = _lambda_matrix(f(theta, x))  # (T, C, C)
    B = torch.einsum("tkp,tka->tap", J, R).reshape(-1, J.shape[-1])
    return B.T @ B / T


def _fvp_factory(model: nn.Module, x: torch.Tensor, outputs: str, batch_size: int | None):
    from torch.func import jvp, vjp

    f, theta, _, _ = _functional(model)
    x = x.to(dtype=theta.dtype, device=theta.device)
    T = x.shape[0]
    bs = T if batch_size is None else int(batch_size)
    chunks = list(torch.split(x, bs))
    Rs = None
    if outputs == "cross_entropy":
        with torch.no_grad():
            Rs = [_lambda_matrix(f(theta, xb)) for xb in chunks]

    def fvp(v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(theta)
        for i, xb in enumerate(chunks):
            fb = lambda th: f(th, xb)  # noqa: E731
            _, jv = jvp(fb, (theta,), (v,))
            if Rs is not None:
                R = Rs[i]
                jv = torch.einsum("tka,tla,tl->tk", R, R, jv)  # Λ_t J_t v
            _, pull = vjp(fb, theta)
            out += pull(jv)[0]
        return out / T

    return fvp, theta


def lanczos_lambda_max(
    model: nn.Module, x: torch.Tensor, outputs: str = "squared", tol: float = 1e-8, batch_size: int | None = None,
    maxiter: int | None = None, *, group=None,
) -> float:
    """λ_max of F by Lanczos (``scipy.sparse.linalg.eigsh``) on F v = (1/T) Σ_t J_tᵀ Λ_t J_t v.

    Matrix-free (torch.func.jvp / vjp, inputs in chunks of ``batch_size``): memory
    O(P + batch·width), for T too large for the CT × CT dual matrix.

    ``group=``: ``x`` is this rank's shard; F v is each rank's sum over its inputs, all-reduced
    (P numbers per product, :class:`~actionlab.fisher.operators.FisherOperator` with ``group=``), the
    Lanczos iteration run by rank 0 from the same start vector; the union's λ_max on every rank.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    check_choice(outputs, OUTPUTS, "outputs")
    if group is not None:
        from actionlab import distributed as _D
        from actionlab.fisher.operators import FisherOperator
        from actionlab.fisher.spectral import top_eigenpairs

        err = None
        try:
            _check_model_inputs(model, x)
        except (ValueCheckError, ShapeError) as e:
            err = e
        _D.raise_together(err, group)
        op = FisherOperator(model, x, outputs, batch_size, group=group)
        return float(top_eigenpairs(op, 1, method="lanczos", tol=tol, maxiter=maxiter, seed=0).values[0])
    check_matrix(x, "x")
    fvp, theta = _fvp_factory(model, x, outputs, batch_size)
    P = theta.numel()

    def mv(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=theta.dtype, device=theta.device)
        return fvp(t).detach().cpu().double().numpy()

    op = LinearOperator((P, P), matvec=mv, dtype=np.float64)
    rng = np.random.default_rng(0)
    vals = eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=rng.standard_normal(P), return_eigenvectors=False)
    return float(vals[0])


def fisher_rao_norm(model: nn.Module, x: torch.Tensor, outputs: str = "squared", weights_only: bool = False) -> float:
    """θᵀFθ = (1/T) Σ_t (J_t θ)ᵀ Λ_t (J_t θ) (A.44); ``weights_only`` zeroes the bias entries of θ as A.44 does."""
    from torch.func import jvp

    check_choice(outputs, OUTPUTS, "outputs")
    f, theta, names, sizes = _functional(model)
    x = check_matrix(x, "x").to(dtype=theta.dtype, device=theta.device)
    v = theta.clone()
    if weights_only:
        parts = list(torch.split(v, sizes))
        for n, t in zip(names, parts):
            if n.endswith("bias"):
                t.zero_()
        v = torch.cat(parts)
    fx, jv = jvp(lambda th: f(th, x), (theta,), (v,))
    if outputs == "squared":
        return float((jv * jv).sum() / x.shape[0])
    p = torch.softmax(fx, dim=1)
    quad = (p * jv * jv).sum(1) - (p * jv).sum(1) ** 2
    return float(quad.sum() / x.shape[0])


def fisher_rao_diagonal(model: nn.Module, x: torch.Tensor) -> float:
    """Σ_{l,ij} F_(l,ij),(l,ij) (W^l_ij)²: the diagonal (weights-only) part of θᵀFθ, squared loss.

    This is the sum that A.48 keeps (it drops every (l,ij) ≠ (l',ab) term):
    (1/T) Σ_t Σ_k Σ_l Σ_ij δ^l_{k,i}(t)² (W^l_ij)² h^{l-1}_j(t)², from the layer signals (no Jacobian).
    """
    layers = _parse(model)
    hs, deltas, f = layer_signals(model, x)
    T = f.shape[0]
    tot = 0.0
    with torch.no_grad():
        for l, ly in enumerate(layers):
            W2 = ly.linear.weight ** 2
            tot += float((((deltas[l] ** 2) @ W2) * (hs[l] ** 2)[None]).sum())
    return tot / T
