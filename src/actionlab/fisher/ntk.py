"""The empirical neural tangent kernel and the dual Fisher matrix F* of any ``nn.Module``.

Source: supplement of Karakida, Akaho & Amari (``004_c5eeeb19a9204c84.txt``), A.26–A.28.

For a network with C outputs f_k(x; θ) and the T inputs x(1..T), let
B = [∇_θ f_k(t)] (P × CT, column (k, t) at index k·T + t, output-major). The
empirical neural tangent kernel in the standard parameterisation (no 1/√width
factors in the forward pass; θ are the module's own parameters) is

    Θ_{kk'}(x, x') = ∇_θ f_k(x) · ∇_θ f_k'(x'),

and the squared-loss (Gaussian output) Fisher F = (1/T) Σ_t J_tᵀ J_t = BBᵀ/T
(A.26–A.27) has the dual (A.28)

    F*[(k, s), (k', t)] = (BᵀB)[(k, s), (k', t)] / T = Θ_{kk'}(x_s, x_t) / T,

i.e. **T·F* = Θ** on the training inputs (the Gram matrix of the output
gradients). The normalisation is the project's: F carries the 1/T of 004, the
kernel carries none. F* and F share their non-zero eigenvalues. For the
cross-entropy (softmax) Fisher F = (1/T) Σ_t J_tᵀ(diag p_t − p_t p_tᵀ)J_t the
dual is Rᵀ F*_sq R with R = blockdiag_t(diag √p_t − p_t √p_tᵀ), as in
:mod:`actionlab.fisher.empirical`.

Here the per-sample Jacobians J_t = ∂f(x_t)/∂θ (C × P) come from
``torch.func.vmap(jacrev)`` over the samples, so any module works whose
samples do not interact: Linear, Conv2d, pooling, BatchNorm in *eval* mode,
LayerNorm, … A BatchNorm in training mode (it couples the samples of a batch)
or a Dropout in training mode (random) is refused with the fix (``model.eval()``).
Memory O(T·C·P) for the Jacobians; the inputs are processed in chunks of
``batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from actionlab._checks import ShapeError, ValueCheckError, check_choice, check_finite, check_float

__all__ = [
    "functional_model",
    "check_samplewise",
    "per_sample_jacobian",
    "empirical_ntk",
    "generic_dual_matrix",
    "parameter_groups",
    "LAYOUTS",
]

LAYOUTS = ("tensor", "output_major")
OUTPUTS = ("squared", "cross_entropy")


def check_samplewise(model: nn.Module) -> None:
    """Refuse modules whose output on one sample depends on the other samples of the batch, or is random."""
    for name, mod in model.named_modules():
        where = f"{name or 'the model'} ({type(mod).__name__})"
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training:
            raise ValueCheckError(
                f"{where} is a BatchNorm in training mode: it couples the samples of a batch, so per-sample "
                f"Jacobians (and the Fisher of 004) are not defined; call model.eval() first"
            )
        if isinstance(mod, nn.modules.dropout._DropoutNd) and mod.training and mod.p > 0:
            raise ValueCheckError(f"{where} is a Dropout in training mode (random outputs); call model.eval() first")
    if not any(True for _ in model.parameters()):
        raise ValueCheckError("the model has no parameters")


def functional_model(model: nn.Module) -> tuple[Callable, torch.Tensor, list[str], list[int]]:
    """``(f, θ, names, sizes)`` with f(θ, x) = model(x) evaluated at the flat parameter vector θ.

    θ concatenates ``model.named_parameters()`` in their order (the order of
    :func:`actionlab.fisher.empirical.dense_fisher`).
    """
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


def parameter_groups(model: nn.Module) -> list[tuple[str, slice]]:
    """Slices of the flat θ owned by each module that holds parameters directly (one "layer" each)."""
    groups: list[tuple[str, slice]] = []
    start = 0
    for name, mod in model.named_modules():
        n = sum(p.numel() for p in mod.parameters(recurse=False))
        if n:
            groups.append((name, slice(start, start + n)))
            start += n
    total = sum(p.numel() for p in model.parameters())
    if start != total:  # shared parameters: named_modules order then differs from named_parameters
        raise ValueCheckError("the model shares parameters between modules; per-layer terms are not defined")
    return groups


def _inputs(x: torch.Tensor, theta: torch.Tensor, name: str) -> torch.Tensor:
    check_float(x, name)
    if x.dim() < 1 or x.shape[0] < 1:
        raise ShapeError(f"{name} must have a leading sample dimension with ≥ 1 sample, got shape {tuple(x.shape)}")
    check_finite(x, name)
    return x.to(dtype=theta.dtype, device=theta.device)


def _check_outputs(f: Callable, theta: torch.Tensor, x: torch.Tensor) -> int:
    with torch.no_grad():
        out = f(theta, x[:2])
    if out.dim() != 2 or out.shape[0] != min(2, x.shape[0]):
        raise ShapeError(
            f"the model must map a batch of n inputs to outputs of shape (n, C); on {min(2, x.shape[0])} inputs "
            f"it returned shape {tuple(out.shape)} — flatten the outputs (e.g. end with nn.Flatten / nn.Linear)"
        )
    return int(out.shape[1])


def per_sample_jacobian(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """J[t, k, p] = ∂f_k(x_t)/∂θ_p (T × C × P) by ``vmap(jacrev)`` over the samples, ``batch_size`` at a time."""
    from torch.func import jacrev, vmap

    check_samplewise(model)
    f, theta, _, _ = functional_model(model)
    x = _inputs(x, theta, "x")
    _check_outputs(f, theta, x)

    def one(th: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return f(th, xi.unsqueeze(0)).squeeze(0)

    jac = vmap(jacrev(one), in_dims=(None, 0))
    bs = x.shape[0] if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueCheckError(f"batch_size must be ≥ 1, got {batch_size}")
    return torch.cat([jac(theta, xb).detach() for xb in torch.split(x, bs)])


def _to_layout(K: torch.Tensor, layout: str) -> torch.Tensor:
    """(T1, T2, C, C) → output-major (C·T1) × (C·T2), entry (k·T1 + s, k'·T2 + t)."""
    if layout == "tensor":
        return K
    T1, T2, C, _ = K.shape
    return K.permute(2, 0, 3, 1).reshape(C * T1, C * T2)


def empirical_ntk(
    model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *, layout: str = "tensor",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Θ_{kk'}(x1_s, x2_t) = ∇_θ f_k(x1_s) · ∇_θ f_k'(x2_t), standard parameterisation (no 1/P, no 1/T).

    ``layout="tensor"``: shape (T1, T2, C, C); ``"output_major"``: (C·T1) × (C·T2)
    with row k·T1 + s — the layout of F*, so that on the training inputs
    ``empirical_ntk(model, x, layout="output_major") / T`` is the dual F* (A.28).
    """
    check_choice(layout, LAYOUTS, "layout")
    J1 = per_sample_jacobian(model, x1, batch_size)
    J2 = J1 if x2 is None else per_sample_jacobian(model, x2, batch_size)
    K = torch.einsum("skp,tlp->stkl", J1, J2)
    return _to_layout(K, layout)


def _softmax_factor(f: torch.Tensor) -> torch.Tensor:
    """R_t = diag √p_t − p_t √p_tᵀ (T × C × C): R_t R_tᵀ = diag p_t − p_t p_tᵀ (the factor of empirical.py)."""
    p = torch.softmax(f, dim=1)
    sp = p.sqrt()
    return torch.diag_embed(sp) - p[:, :, None] * sp[:, None, :]


def _dual_from_jacobian(J: torch.Tensor, model: nn.Module, x: torch.Tensor, outputs: str) -> torch.Tensor:
    T, C, _ = J.shape
    if outputs == "cross_entropy":
        f, theta, _, _ = functional_model(model)
        with torch.no_grad():
            R = _softmax_factor(f(theta, x.to(dtype=theta.dtype, device=theta.device)))  # R[t, k, a]
        J = torch.einsum("tkp,tka->tap", J, R)  # columns J_tᵀ R_t
    B = J.permute(1, 0, 2).reshape(C * T, -1)  # row k·T + t
    return B @ B.T / T


def generic_dual_matrix(
    model: nn.Module, x: torch.Tensor, outputs: str = "squared", batch_size: int | None = None,
    params: slice | None = None,
) -> torch.Tensor:
    """F* (CT × CT, output-major) of any sample-wise module as the Gram matrix of its output gradients.

    Squared loss: F* = Θ/T (A.28 with the NTK above); cross-entropy: Rᵀ(Θ/T)R.
    ``params`` restricts θ to a slice (one layer's term of the sum over layers, A.19).
    """
    check_choice(outputs, OUTPUTS, "outputs")
    J = per_sample_jacobian(model, x, batch_size)
    if params is not None:
        J = J[:, :, params]
    return _dual_from_jacobian(J, model, x, outputs)
