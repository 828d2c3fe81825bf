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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from actionlab import activations as _act
from actionlab._checks import ShapeError, ValueCheckError, check_choice, check_matrix
from actionlab._display import short_repr
from actionlab.activations import ActivationModule

__all__ = [
    "FisherStatistics",
    "layer_signals",
    "dual_matrix",
    "fisher_statistics",
    "dense_fisher",
    "lanczos_lambda_max",
    "fisher_rao_norm",
    "fisher_rao_diagonal",
    "input_statistics",
    "OUTPUTS",
]

OUTPUTS = ("squared", "cross_entropy")

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


def _parse(model: nn.Module) -> list[_Layer]:
    """Split an MLP / nn.Sequential into (Linear, elementwise activation) pairs; clear error otherwise."""
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


def dual_matrix(model: nn.Module, x: torch.Tensor, outputs: str = "squared") -> torch.Tensor:
    """The dual F* (CT × CT, output-major) from the layer-wise factorisation A.19/A.30 (plus bias terms).

    Memory O(C·T·max M_l + (CT)²): the P × CT matrix B is never formed.
    """
    check_choice(outputs, OUTPUTS, "outputs")
    hs, deltas, f = layer_signals(model, x)
    layers = _parse(model)
    T, C = f.shape
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
            R = _lambda_matrix(f)  # (T, C, C): R[t, k, a]
            F4 = Fs.reshape(C, T, C, T)
            Fs = torch.einsum("tka,ktls,slb->atbs", R, F4, R).reshape(C * T, C * T)
    return Fs


@short_repr
@dataclass
class FisherStatistics:
    """Eigen-statistics of the FIM measured through F*."""

    eigenvalues: np.ndarray  # all CT eigenvalues of F*, descending (= F's non-zero ones plus zeros if rank-deficient)
    m: float  # tr F / P
    s: float  # ‖F‖²_F / P = ‖F*‖²_F / P
    lambda_max: float
    num_params: int
    C: int
    T: int
    outputs: str
    trace: float
    dual: torch.Tensor | None = field(default=None, repr=False)

    def nonzero_eigenvalues(self, rtol: float = 1e-10) -> np.ndarray:
        """Eigenvalues above rtol·λ_max (the non-zero eigenvalues of F)."""
        return self.eigenvalues[self.eigenvalues > rtol * max(self.lambda_max, 0.0)]


def fisher_statistics(model: nn.Module, x: torch.Tensor, outputs: str = "squared", return_dual: bool = False) -> FisherStatistics:
    """m_λ, s_λ, λ_max and the spectrum of the FIM of ``model`` on inputs ``x`` (T × M_0) via F*."""
    Fs = dual_matrix(model, x, outputs)
    P = sum(p.numel() for p in model.parameters())
    CT = Fs.shape[0]
    T = x.shape[0]
    ev = torch.linalg.eigvalsh(Fs).flip(0).cpu().numpy().astype(np.float64)
    tr = float(torch.trace(Fs))
    return FisherStatistics(
        eigenvalues=ev, m=tr / P, s=float((Fs * Fs).sum()) / P, lambda_max=float(ev[0]), num_params=int(P),
        C=CT // T, T=T, outputs=outputs, trace=tr, dual=Fs if return_dual else None,
    )


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
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    params = [p.detach() for _, p in model.named_parameters()]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def unflat(v: torch.Tensor) -> dict:
        return {n: t.reshape(s) for n, t, s in zip(names, torch.split(v, sizes), shapes)}

    def f(v: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return functional_call(model, unflat(v), (xb,))

    return f, torch.cat([p.reshape(-1) for p in params]), names, sizes


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
    maxiter: int | None = None,
) -> float:
    """λ_max of F by Lanczos (``scipy.sparse.linalg.eigsh``) on F v = (1/T) Σ_t J_tᵀ Λ_t J_t v.

    Matrix-free (torch.func.jvp / vjp, inputs in chunks of ``batch_size``): memory
    O(P + batch·width), for T too large for the CT × CT dual matrix.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    check_choice(outputs, OUTPUTS, "outputs")
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
