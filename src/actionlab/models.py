"""Models: the two-layer classifier of the theory notes, a deep MLP, and the action.

``TwoLayer`` is the classifier of notes 000–002 (§1.1):

    f_α(z, θ) = Σ_β U_αβ σ(Σ_γ W_βγ z_γ + b_β) + c_α,   q_m(z, θ) = softmax_m f(z, θ),

with θ = (U, c, W, b), U ∈ R^{M×H}, c ∈ R^M, W ∈ R^{H×E}, b ∈ R^H.

``action`` is eq. (2) of the notes with the empirical distribution
p(z, m) = (1/N) Σ_i δ(z − z_i) δ_{m, m_i}:

    S(θ) = −Σ_{z,m} p(z, m) ln q_m(z, θ) = −(1/N) Σ_i ln q_{m_i}(z_i, θ).

``MLP`` is the deep network of 004 (Karakida et al., papers.md):
u^l = W^l h^{l−1} + b^l, h^l = φ(u^l), with W^l_ij ~ N(0, σ_w²/M_{l−1}) and
b^l_i ~ N(0, σ_b²), used by the Fisher and natural-gradient work.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from actionlab import activations as _act
from actionlab._checks import (
    DataError,
    ShapeError,
    ValueCheckError,
    check_finite,
    check_float,
    check_labels,
    check_matrix,
    check_same_length,
)

__all__ = ["TwoLayer", "TwoLayerShapes", "check_two_layer", "MLP", "two_layer_logits", "action", "PARAM_NAMES"]

PARAM_NAMES = ("U", "c", "W", "b")


def check_two_layer(U: torch.Tensor, c: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> tuple[int, int, int]:
    """Check θ = (U, c, W, b) of the two-layer classifier (notes 000–002 §1.1); return (M, H, E).

    U ∈ R^{M×H}, c ∈ R^M, W ∈ R^{H×E}, b ∈ R^H, every entry a finite float.
    The one definition of the shapes: :class:`TwoLayer` and
    :class:`actionlab.expansion.Params` both check their tensors here.
    """
    tensors = {"U": U, "c": c, "W": W, "b": b}
    for name, t in tensors.items():
        check_float(t, name)
    if U.dim() != 2 or W.dim() != 2 or c.dim() != 1 or b.dim() != 1:
        raise ShapeError(
            "the two-layer classifier needs U (M×H), c (M), W (H×E), b (H); got "
            + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
        )
    M, H = U.shape
    if c.shape[0] != M or W.shape[0] != H or b.shape[0] != H:
        raise ShapeError(
            f"inconsistent shapes: U is {M}×{H}, so c needs {M} entries (has {c.shape[0]}), "
            f"W needs {H} rows (has {W.shape[0]}) and b needs {H} entries (has {b.shape[0]})"
        )
    for name, t in tensors.items():
        check_finite(t.detach(), name)
    return int(M), int(H), int(W.shape[1])


class TwoLayerShapes:
    """M, H, E of anything holding θ = (U, c, W, b) as attributes (U: M×H, W: H×E)."""

    U: torch.Tensor
    W: torch.Tensor

    @property
    def M(self) -> int:
        return self.U.shape[0]

    @property
    def H(self) -> int:
        return self.U.shape[1]

    @property
    def E(self) -> int:
        return self.W.shape[1]


def two_layer_logits(
    U: torch.Tensor, c: torch.Tensor, W: torch.Tensor, b: torch.Tensor, activation, z: torch.Tensor
) -> torch.Tensor:
    """f(z) = U σ(W z + b) + c for a batch z (N × E) → logits (N × M). Pure; works under torch.func."""
    act = _act.get(activation)
    return act(z @ W.T + b) @ U.T + c


class TwoLayer(TwoLayerShapes, nn.Module):
    """The two-layer classifier q = softmax(U·σ(W z + b) + c) of notes 000–002 §1.1.

    Construct from tensors of any float dtype (kept as given)::

        model = TwoLayer(U=U, c=c, W=W, b=b, activation="silu")

    or with :meth:`zeros`, :meth:`random`, :meth:`glorot`.
    """

    def __init__(
        self,
        U: torch.Tensor,
        c: torch.Tensor,
        W: torch.Tensor,
        b: torch.Tensor,
        activation: str | _act.Activation = "silu",
        **activation_params: float,
    ) -> None:
        super().__init__()
        check_two_layer(U, c, W, b)
        tensors = {"U": U, "c": c, "W": W, "b": b}
        dtypes = {t.dtype for t in tensors.values()}
        devices = {t.device for t in tensors.values()}
        if len(dtypes) > 1 or len(devices) > 1:
            raise ValueCheckError(f"U, c, W, b must share one dtype and device, got {dtypes} on {devices}")
        self.U = nn.Parameter(U.detach().clone())
        self.c = nn.Parameter(c.detach().clone())
        self.W = nn.Parameter(W.detach().clone())
        self.b = nn.Parameter(b.detach().clone())
        self.activation = _act.get(activation, **activation_params)

    # -- shapes (M, H, E from TwoLayerShapes) ------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.U.dtype

    @property
    def device(self) -> torch.device:
        return self.U.device

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- evaluation ----------------------------------------------------------------------
    def _check_z(self, z: torch.Tensor) -> torch.Tensor:
        check_matrix(z, "z", cols=self.E)
        if z.dtype != self.dtype:
            raise ValueCheckError(
                f"z has dtype {z.dtype} but the model has {self.dtype}; convert one of them (z.to({self.dtype}))"
            )
        return z

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) = U σ(W z + b) + c, shape N × M."""
        self._check_z(z)
        return two_layer_logits(self.U, self.c, self.W, self.b, self.activation, z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(z)

    def probs(self, z: torch.Tensor) -> torch.Tensor:
        """q(z) = softmax f(z), shape N × M."""
        return torch.softmax(self.logits(z), dim=-1)

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def zeros(cls, M: int, H: int, E: int, activation="silu", dtype=torch.float32, device=None, **activation_params):
        """θ = 0: every parameter zero (the expansion point of the notes)."""
        _check_sizes(M, H, E)
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        return cls(U=z(M, H), c=z(M), W=z(H, E), b=z(H), activation=activation, **activation_params)

    @classmethod
    def random(
        cls,
        M: int,
        H: int,
        E: int,
        activation="silu",
        scale: float = 1.0,
        generator: torch.Generator | None = None,
        dtype=torch.float32,
        device=None,
        **activation_params,
    ):
        """Every entry i.i.d. N(0, scale²) (drawn in float64 on the CPU, so the values do not depend on dtype)."""
        _check_sizes(M, H, E)

        def r(*s):
            return (scale * torch.randn(*s, generator=generator, dtype=torch.float64)).to(dtype=dtype, device=device)

        return cls(U=r(M, H), c=r(M), W=r(H, E), b=r(H), activation=activation, **activation_params)

    @classmethod
    def glorot(
        cls, M: int, H: int, E: int, activation="silu", generator=None, dtype=torch.float32, device=None, **activation_params
    ):
        """Glorot-uniform weights, U(−a, a) with a = √(6/(fan_in + fan_out)); zero biases."""
        _check_sizes(M, H, E)

        def g(fan_out, fan_in):
            a = math.sqrt(6.0 / (fan_in + fan_out))
            u = torch.rand(fan_out, fan_in, generator=generator, dtype=torch.float64)
            return ((2 * u - 1) * a).to(dtype=dtype, device=device)

        zeros = lambda n: torch.zeros(n, dtype=dtype, device=device)  # noqa: E731
        return cls(U=g(M, H), c=zeros(M), W=g(H, E), b=zeros(H), activation=activation, **activation_params)

    # -- parameter algebra ---------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """``{"U", "c", "W", "b"}`` as plain (detached) tensors."""
        return {k: getattr(self, k).detach() for k in PARAM_NAMES}

    def with_tensors(self, **new: torch.Tensor) -> TwoLayer:
        """A new model with some of U, c, W, b replaced."""
        unknown = set(new) - set(PARAM_NAMES)
        if unknown:
            raise ValueCheckError(f"unknown parameter(s) {sorted(unknown)}; TwoLayer has {PARAM_NAMES}")
        t = self.tensors()
        t.update(new)
        return TwoLayer(**t, activation=self.activation)

    def scaled(self, t: float) -> TwoLayer:
        """θ → tθ (every parameter multiplied by t)."""
        return TwoLayer(**{k: v * t for k, v in self.tensors().items()}, activation=self.activation)

    def to_vector(self) -> torch.Tensor:
        """θ as one vector, U, c, W, b flattened (row-major) in that order."""
        return torch.cat([v.reshape(-1) for v in self.tensors().values()])

    @classmethod
    def from_vector(cls, vec: torch.Tensor, M: int, H: int, E: int, activation="silu", **activation_params) -> TwoLayer:
        """Inverse of :meth:`to_vector`."""
        _check_sizes(M, H, E)
        sizes = [M * H, M, H * E, H]
        if vec.dim() != 1 or vec.numel() != sum(sizes):
            raise ShapeError(
                f"vector has shape {tuple(vec.shape)} but M={M}, H={H}, E={E} needs a 1-D vector of {sum(sizes)} entries"
            )
        U, c, W, b = torch.split(vec, sizes)
        return cls(U=U.reshape(M, H), c=c, W=W.reshape(H, E), b=b, activation=activation, **activation_params)

    # -- persistence ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """U, c, W, b and the activation spec as a safetensors blob (what :meth:`save` writes)."""
        from safetensors.torch import save

        meta = {"format": "actionlab.TwoLayer", "activation": json.dumps(self.activation.spec())}
        return save({k: v.contiguous().cpu() for k, v in self.tensors().items()}, metadata=meta)

    def save(self, path: str | Path) -> Path:
        """Write U, c, W, b and the activation spec to a safetensors file (temporary file, then rename)."""
        import os
        import tempfile

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, device=None) -> TwoLayer:
        """Read a model written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise DataError(f"model file {path} does not exist; write one with TwoLayer.save(path)")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types
            raise DataError(f"{path} is not a readable safetensors file: {exc}") from None
        if meta.get("format") != "actionlab.TwoLayer" or set(tensors) != set(PARAM_NAMES):
            raise DataError(f"{path} is not a TwoLayer checkpoint (keys {sorted(tensors)}, metadata {meta})")
        spec = json.loads(meta["activation"])
        if device is not None:
            tensors = {k: v.to(device) for k, v in tensors.items()}
        return cls(**tensors, activation=_act.get(spec["name"], **spec["params"]))

    def extra_repr(self) -> str:
        return f"M={self.M}, H={self.H}, E={self.E}, activation={self.activation!r}, dtype={self.dtype}"


def _check_sizes(*sizes: int) -> None:
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueCheckError(f"layer sizes must be positive integers, got {sizes}")


def _check_widths(widths: Sequence[int]) -> list[int]:
    """MLP widths [M0, …, ML]: at least two, each a positive integer (no 2.5, no True, no strings)."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueCheckError(f"MLP widths must be a list of integers [M0, M1, …, ML], got {widths!r}")
    for i, w in enumerate(widths):
        if isinstance(w, bool) or not isinstance(w, numbers.Integral):
            raise ValueCheckError(f"MLP widths must be integers (numbers of units), got {w!r} at position {i} of "
                                  f"{list(widths)}; round it, e.g. int({w!r})" if isinstance(w, float) else
                                  f"MLP widths must be integers (numbers of units), got {w!r} at position {i} of "
                                  f"{list(widths)}")
    out = [int(w) for w in widths]
    if len(out) < 2 or any(w < 1 for w in out):
        raise ValueCheckError(f"MLP needs at least an input and an output width, all ≥ 1; got {out}")
    return out


class MLP(nn.Module):
    """Deep fully connected network of 004 (papers.md): widths [M0, M1, …, ML].

    u^l = W^l h^{l−1} + b^l for l = 1..L; h^l = φ(u^l) for l < L; the output
    f = u^L is linear unless ``output_activation`` is given (then f = φ_out(u^L)).
    Weights W^l_ij ~ N(0, σ_w²/M_{l−1}), biases b^l_i ~ N(0, σ_b²). With
    ``batchnorm=True`` a BatchNorm1d follows every hidden Linear (before φ).
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str | _act.Activation = "tanh",
        bias: bool = True,
        batchnorm: bool = False,
        sigma_w2: float = 1.0,
        sigma_b2: float = 0.0,
        output_activation: str | _act.Activation | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> None:
        super().__init__()
        widths = _check_widths(widths)
        for name, v in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueCheckError(f"{name} must be a finite number ≥ 0 (a weight / bias variance), got {v!r}")
        self.widths = widths
        self.activation = _act.get(activation)
        self.output_activation = _act.get(output_activation) if output_activation is not None else None
        self.sigma_w2, self.sigma_b2 = float(sigma_w2), float(sigma_b2)
        layers: list[nn.Module] = []
        self.linears: list[nn.Linear] = []
        L = len(widths) - 1
        for l in range(L):
            lin = nn.Linear(widths[l], widths[l + 1], bias=bias, dtype=dtype, device=device)
            with torch.no_grad():
                w = torch.randn(widths[l + 1], widths[l], generator=generator, dtype=torch.float64)
                lin.weight.copy_(w * math.sqrt(sigma_w2 / widths[l]))
                if bias:
                    bb = torch.randn(widths[l + 1], generator=generator, dtype=torch.float64)
                    lin.bias.copy_(bb * math.sqrt(sigma_b2))
            layers.append(lin)
            self.linears.append(lin)
            if l < L - 1:
                if batchnorm:
                    layers.append(nn.BatchNorm1d(widths[l + 1], dtype=dtype, device=device))
                layers.append(self.activation.module())
            elif self.output_activation is not None:
                layers.append(self.output_activation.module())
        self.net = nn.Sequential(*layers)

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.widths[0]:
            raise ShapeError(f"MLP expects input of shape (N, {self.widths[0]}), got {tuple(x.shape)}")
        return self.net(x)


def action(model: nn.Module, z: torch.Tensor, labels: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """S(θ) = −(1/N) Σ_i ln q_{m_i}(z_i, θ): eq. (2) of notes 000–002 with the empirical p(z, m).

    ``model`` maps z (N × E) to logits (N × M): a :class:`TwoLayer`, an
    :class:`MLP` or any module. Evaluated in batches of ``batch_size`` rows
    (all at once by default); differentiable; in the model's dtype.
    """
    check_matrix(z, "z")
    check_same_length(z, labels, "z", "labels")
    if z.shape[0] == 0:
        raise ShapeError("z is empty; the action needs at least one sample")
    bs = z.shape[0] if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueCheckError(f"batch_size must be ≥ 1, got {batch_size}")
    total = None
    num_classes = None
    for start in range(0, z.shape[0], bs):
        logits = model(z[start : start + bs])
        if logits.dim() != 2:
            raise ShapeError(f"the model must return logits of shape (N, M), got {tuple(logits.shape)}")
        if num_classes is None:
            num_classes = logits.shape[1]
            check_labels(labels, num_classes)
        lab = labels[start : start + bs].to(logits.device)
        part = torch.nn.functional.cross_entropy(logits, lab, reduction="sum")
        total = part if total is None else total + part
    return total / z.shape[0]
