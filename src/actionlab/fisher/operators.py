"""One protocol for curvature matrices: explicit, matrix-free, block-structured or foreign.

A :class:`CurvatureOperator` is a symmetric (by declaration) n × n linear map
with ``matmat``, ``matvec``, ``@``, ``dense()``, ``shape``, ``dtype``,
``device`` and an export ``to_scipy()`` to ``scipy.sparse.linalg.LinearOperator``.
Every spectral function of :mod:`actionlab.fisher.spectral` takes any of them
(or anything :func:`as_operator` accepts).

Implementations

* :class:`DenseOperator` — an explicit symmetric matrix.
* :class:`DualFisherOperator` — the dual F* (CT × CT, 004 A.19/A.28) of a model
  on T inputs; ``full_dim`` = P records that it stands for the P × P Fisher F
  (same non-zero eigenvalues; F has P − rank further zeros). Built by the
  layer-wise factorisation of :func:`actionlab.fisher.empirical.dual_matrix`
  for Linear/activation stacks and as the Jacobian Gram matrix of
  :func:`actionlab.fisher.ntk.generic_dual_matrix` for any other module.
  ``layer_terms()`` returns the per-layer summands F*_l of A.19.
* :class:`FisherOperator` — F itself, P × P and matrix-free:
  F V = (1/T) Σ_t J_tᵀ Λ_t J_t V with Λ_t = I (squared loss) or
  diag p_t − p_t p_tᵀ (cross-entropy), by ``torch.func`` JVPs and VJPs
  (vmapped over the columns of V, inputs in chunks), for any sample-wise module.
* :class:`RFIMBlockOperator` — the block-diagonal metric of RNGD: a list of
  RFIM blocks of :mod:`actionlab.fisher.rfim` (``NeuronBlocks``, ``Kronecker``,
  ``DenseBlocks``) or plain symmetric matrices, applied block by block.
* :class:`ForeignOperator` / :func:`from_curvlinops` — any object with
  ``shape`` and ``@`` on torch tensors or numpy arrays, e.g. a curvlinops
  ``GGNLinearOperator`` (optional extra ``actionlab[curvlinops]``), with a scale
  to match normalisations.

Distributed (``group=``, the rule of :mod:`actionlab.distributed`): :class:`FisherOperator` and
:class:`DualFisherOperator` take a process group; each rank passes its shard of the inputs and the
operator is that of the union (T = Σ_r T_r). Both act on blocks replicated on every rank, so every
spectral function of :mod:`actionlab.fisher.spectral` takes them unchanged (``group`` attribute;
None for every other operator).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from actionlab import distributed as _dist
from actionlab._checks import ShapeError, ValueCheckError, check_choice, check_float
from actionlab.fisher import ntk as _ntk
from actionlab.fisher import rfim as _rfim

__all__ = [
    "CurvatureOperator",
    "DenseOperator",
    "DualFisherOperator",
    "FisherOperator",
    "RFIMBlockOperator",
    "ForeignOperator",
    "from_curvlinops",
    "as_operator",
    "OUTPUTS",
]

OUTPUTS = ("squared", "cross_entropy")


def _outputs(outputs: str) -> str:
    return check_choice(outputs.replace("-", "_"), OUTPUTS, "outputs")


class CurvatureOperator:
    """Base class: a symmetric n × n operator; subclasses implement ``_matmat(V)`` for V of shape (n, k).

    ``dense_is_cheap`` tells spectral routines that ``dense()`` may be formed
    (exact eigenvalues); ``full_dim`` is the dimension of the matrix the
    operator stands for (P for a dual F* of a P-parameter model, else n).
    """

    symmetric = True
    dense_is_cheap = False
    group = None  # a torch.distributed group when the operator is distributed (see actionlab.distributed)

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device | str, full_dim: int | None = None):
        self.shape = (int(n), int(n))
        self.dtype = dtype
        self.device = torch.device(device)
        self.full_dim = int(n if full_dim is None else full_dim)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matmat(self, V):
        """A V for V of shape (n, k) or (n,) — a torch tensor (returned as one) or a numpy array (returned as one)."""
        is_np = isinstance(V, np.ndarray)
        t = torch.as_tensor(V) if is_np else V
        if not isinstance(t, torch.Tensor):
            raise ValueCheckError(f"matmat needs a torch tensor or numpy array, got {type(V).__name__}")
        if t.dim() not in (1, 2) or t.shape[0] != self.shape[0]:
            raise ShapeError(f"the operator is {self.shape[0]} × {self.shape[1]} but got a block of shape {tuple(t.shape)}")
        vec = t.dim() == 1
        t = t.to(dtype=self.dtype, device=self.device)
        out = self._matmat(t[:, None] if vec else t)
        out = out[:, 0] if vec else out
        return out.detach().cpu().numpy() if is_np else out

    def matvec(self, v):
        """A v."""
        return self.matmat(v)

    def __matmul__(self, V):
        return self.matmat(V)

    def dense(self, chunk: int = 256) -> torch.Tensor:
        """The n × n matrix, from ``matmat`` on blocks of the identity (subclasses with structure override it)."""
        n = self.shape[0]
        cols = []
        for s in range(0, n, chunk):
            E = torch.zeros(n, min(chunk, n - s), dtype=self.dtype, device=self.device)
            E[torch.arange(s, s + E.shape[1]), torch.arange(E.shape[1])] = 1
            cols.append(self._matmat(E))
        return torch.cat(cols, dim=1)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` in float64 (symmetric: rmatvec = matvec)."""
        from scipy.sparse.linalg import LinearOperator

        def mm(V):
            V = np.asarray(V, dtype=np.float64)
            return np.asarray(self.matmat(V.reshape(self.shape[0], -1)), dtype=np.float64).reshape(V.shape)

        return LinearOperator(self.shape, matvec=mm, rmatvec=mm, matmat=mm, rmatmat=mm, dtype=np.float64)

    def __repr__(self) -> str:
        extra = f", full_dim={self.full_dim}" if self.full_dim != self.shape[0] else ""
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, device={self.device}{extra})"


class DenseOperator(CurvatureOperator):
    """An explicit symmetric matrix A (n × n)."""

    dense_is_cheap = True

    def __init__(self, matrix: torch.Tensor, full_dim: int | None = None, check_symmetric: bool = True):
        check_float(matrix, "matrix")
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ShapeError(f"a curvature matrix must be square, got shape {tuple(matrix.shape)}")
        if check_symmetric:
            scale = float(matrix.abs().max()) if matrix.numel() else 0.0
            tol = 1e-5 if matrix.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
            if float((matrix - matrix.T).abs().max()) > tol * max(scale, 1e-300):
                raise ValueCheckError("the matrix is not symmetric; pass (A + A.T) / 2 if that is intended")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device, full_dim)
        self.matrix = matrix.detach()

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.matrix @ V

    def dense(self, chunk: int = 256) -> torch.Tensor:
        return self.matrix


class DualFisherOperator(CurvatureOperator):
    """The dual F* of ``model`` on inputs ``x`` (CT × CT, row k·T + t), standing for the P × P Fisher F.

    F*[(k,s),(k',t)] = (1/T) Σ_l (Σ_i δ^l_{k,i}(s) δ^l_{k',i}(t)) (Σ_j h^{l-1}_j(s) h^{l-1}_j(t) + 1)
    (004 A.19, bias "+1"), = Θ_{kk'}(x_s, x_t)/T for the squared loss; Rᵀ F* R for cross-entropy.

    **Distributed** (``group=``, :mod:`actionlab.distributed`): each rank passes its shard of the
    inputs; T is the union's and t runs over the shards in rank order. A rank holds the block
    rows (k, s) of its own inputs, ``rows`` (C·T_r × C·T): it computes its layer signals and
    receives the other ranks', one rank and one layer at a time, so memory per rank is
    O(C·T_r·C·T + C·T_r·max M_l) — it falls as 1/world size. ``matmat`` takes and returns a
    vector replicated on every rank (the local rows' product, then a gather of C·T·k numbers);
    ``matmat_local`` works on the distributed vector (each rank its C·T_r entries). ``dense()``
    gathers the whole CT × CT matrix onto every rank, so ``dense_is_cheap`` is False and the
    spectral functions use Lanczos. Every rank holds at least one input.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, outputs: str = "squared", batch_size: int | None = None,
                 *, group=None):
        from actionlab.fisher import empirical as _emp

        outputs = _outputs(outputs)
        self.model, self.x, self.outputs, self.batch_size, self.group = model, x, outputs, batch_size, group
        P = sum(p.numel() for p in model.parameters())
        if group is None:
            try:  # Linear/activation stacks: the layer-wise factorisation (no P-sized object)
                Fs, self.factorised = _emp.dual_matrix(model, x, outputs), True
            except (ValueCheckError, ShapeError):  # any other module (or image inputs): the Jacobian Gram matrix
                Fs, self.factorised = _ntk.generic_dual_matrix(model, x, outputs, batch_size), False
            self.matrix = self.rows = Fs.detach()
            self.T = self.T_local = int(x.shape[0])
            self.offset, self.dense_is_cheap = 0, True
        else:
            self.factorised = _check_distributed_inputs(model, x, group)
            sizes = _dist.all_sizes(x.shape[0], group)
            self.T, self.T_local = sum(sizes), int(x.shape[0])
            self.offset = sum(sizes[: _dist.world(group)[0]])
            rows = None
            for _, term in _row_terms(model, x, outputs, batch_size, group, self.factorised, per_layer=False):
                rows = term if rows is None else rows + term
            self.matrix, self.rows, self.dense_is_cheap = None, rows, False
        self.C = self.rows.shape[1] // self.T
        super().__init__(self.C * self.T, self.rows.dtype, self.rows.device, full_dim=P)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self.matrix is not None:
            return self.matrix @ V
        return self._gather_rows(self.rows @ V)

    def _gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """Local rows (C·T_r × k) of every rank → the replicated (C·T × k) block in the output-major layout."""
        C, k = self.C, local.shape[1]
        parts = _dist.all_gather_varlen(local.reshape(C, self.T_local, k).transpose(0, 1).contiguous(), self.group)
        return torch.cat(parts).transpose(0, 1).reshape(C * self.T, k)

    def local_part(self, V: torch.Tensor) -> torch.Tensor:
        """The entries (k, s) of this rank's inputs of a replicated dual vector/block V (C·T [× k] → C·T_r [× k])."""
        vec = V.dim() == 1
        W = V.reshape(self.C, self.T, -1)[:, self.offset: self.offset + self.T_local]
        W = W.reshape(self.C * self.T_local, -1)
        return W[:, 0] if vec else W

    def matmat_local(self, V_local: torch.Tensor) -> torch.Tensor:
        """(F* V) on a distributed vector: each rank passes and gets the C·T_r entries of its own inputs.

        Collective: gathers the C·T·k numbers of V, then multiplies by the local rows.
        """
        vec = V_local.dim() == 1
        V = V_local[:, None] if vec else V_local
        if V.shape[0] != self.C * self.T_local:
            raise ShapeError(f"this rank holds {self.C * self.T_local} entries (C·T_r) of the dual vector, "
                             f"got a block of shape {tuple(V_local.shape)}")
        out = self.rows @ self._gather_rows(V.to(dtype=self.dtype, device=self.device))
        return out[:, 0] if vec else out

    def dense(self, chunk: int = 256) -> torch.Tensor:
        """F* (CT × CT); with a group it is gathered onto every rank (memory (CT)² per rank)."""
        return self.matrix if self.matrix is not None else self._gather_rows(self.rows)

    def trace(self) -> float:
        """tr F* = tr F (so m_λ = tr / P, 004 A.3): local diagonal, summed over the ranks."""
        R4 = self.rows.reshape(self.C, self.T_local, self.C, self.T)[:, :, :, self.offset: self.offset + self.T_local]
        return float(_dist.all_reduce_sum(torch.einsum("ksks->", R4), self.group))

    def frobenius_sq(self) -> float:
        """‖F*‖²_F = ‖F‖²_F = tr F² (so s_λ = ‖F*‖²_F / P, A.24): local rows, summed over the ranks."""
        return float(_dist.all_reduce_sum((self.rows**2).sum(), self.group))

    def layer_terms(self) -> list[tuple[str, torch.Tensor]]:
        """The summands (name, F*_l) of A.19 — one per module holding parameters; they sum to F*.

        Linear/activation stacks: (1/T)(D_l D_lᵀ) ∘ (H_l + 1) from the layer signals
        (:func:`actionlab.fisher.empirical.layer_signals`); other modules: the Gram
        matrix of the output gradients with respect to that module's parameters.
        With a group: this rank's block rows of each term (C·T_r × C·T); collective.
        """
        if self.group is None and not self.factorised:
            return [(name, _ntk.generic_dual_matrix(self.model, self.x, self.outputs, self.batch_size, params=sl))
                    for name, sl in _ntk.parameter_groups(self.model)]
        return list(_row_terms(self.model, self.x, self.outputs, self.batch_size, self.group, self.factorised,
                               per_layer=True))


def _check_distributed_inputs(model: nn.Module, x: torch.Tensor, group) -> bool:
    """Collective checks of a rank's inputs; True when the layer-wise factorisation applies (on every rank)."""
    from actionlab.fisher import empirical as _emp

    err, ok = None, False
    try:
        theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        _dist.check_device(theta, group, "the model's parameters")
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] < 1:
            raise ShapeError(f"every rank needs ≥ 1 input, this one got shape {tuple(getattr(x, 'shape', ()))}; "
                             f"shard n ≥ world size inputs with actionlab.distributed.shard(n, group)")
        try:
            _emp.layer_signals(model, x[:1])
            ok = True
        except (ValueCheckError, ShapeError):
            _ntk.check_samplewise(model)
    except (ValueCheckError, ShapeError) as e:
        err = e
    _dist.raise_together(err, group)
    _dist.check_same(theta, group, "the model's parameters")
    return _dist.all_reduce_max(0.0 if ok else 1.0, group) == 0.0


def _row_terms(model, x, outputs, batch_size, group, factorised: bool, per_layer: bool):
    """Yield (name, this rank's block rows of F*_l) (C·T_r × C·T); one term ``("", F*)`` unless ``per_layer``.

    The columns (k', t) of the other ranks come from their signals (layer signals or Jacobian
    rows), passed one rank at a time by :func:`actionlab.distributed.each_rank`.
    """
    if factorised:
        yield from _mlp_row_terms(model, x, outputs, group, per_layer)
    else:
        yield from _jacobian_row_terms(model, x, outputs, batch_size, group, per_layer)


def _softmax_rows(f_local: torch.Tensor, group, outputs: str):
    """R_t of the union (T × C × C) and of this rank's inputs, or (None, None) for the squared loss."""
    if outputs != "cross_entropy":
        return None, None
    sizes = _dist.all_sizes(f_local.shape[0], group)
    off = sum(sizes[: _dist.world(group)[0]])
    R = _ntk._softmax_factor(torch.cat(_dist.all_gather_varlen(f_local, group)))
    return R, R[off: off + f_local.shape[0]]


def _finish(rows: torch.Tensor, T: int, R_all, R_loc) -> torch.Tensor:
    """(C, T_r, C, T) raw sums → /T, Rᵀ · R for cross-entropy, reshaped to (C·T_r × C·T)."""
    rows = rows / T
    if R_all is not None:
        rows = torch.einsum("ska,kslt,tlb->asbt", R_loc, rows, R_all)
    C, Tl = rows.shape[0], rows.shape[1]
    return rows.reshape(C * Tl, C * T)


def _mlp_row_terms(model, x, outputs, group, per_layer):
    from actionlab.fisher import empirical as _emp

    hs, deltas, f = _emp.layer_signals(model, x)
    Tl, C = f.shape
    T = sum(_dist.all_sizes(Tl, group))
    R_all, R_loc = _softmax_rows(f, group, outputs)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    total = None
    with torch.no_grad():
        for l, (name, lin) in enumerate(zip(names, linears)):
            D, H = deltas[l], hs[l]  # (C, T_r, M), (T_r, M')
            bias = 1.0 if lin.bias is not None else 0.0
            rows = torch.empty(C, Tl, C, T, dtype=f.dtype, device=f.device)
            for _, o, (H_r, D_r) in _dist.each_rank([H, D.transpose(0, 1)], group):  # D_r: (T_q, C, M)
                G = torch.einsum("ksi,tli->kslt", D, D_r)
                rows[:, :, :, o: o + H_r.shape[0]] = G * (H @ H_r.T + bias)[None, :, None, :]
            if per_layer:
                yield name, _finish(rows, T, R_all, R_loc)
            else:
                total = rows if total is None else total + rows
        if not per_layer:
            yield "", _finish(total, T, R_all, R_loc)


def _jacobian_row_terms(model, x, outputs, batch_size, group, per_layer):
    J = _ntk.per_sample_jacobian(model, x, batch_size)  # (T_r, C, P)
    Tl, C = J.shape[0], J.shape[1]
    T = sum(_dist.all_sizes(Tl, group))
    f, theta, _, _ = _ntk.functional_model(model)
    with torch.no_grad():
        R_all, R_loc = _softmax_rows(f(theta, x.to(dtype=theta.dtype, device=theta.device)), group, outputs)
        if R_loc is not None:
            J = torch.einsum("tkp,tka->tap", J, R_loc)  # columns J_tᵀ R_t: the Gram matrix is then Rᵀ F* R
        slices = _ntk.parameter_groups(model) if per_layer else [("", slice(None))]
        for name, sl in slices:
            Js = J[:, :, sl]
            rows = torch.empty(C, Tl, C, T, dtype=J.dtype, device=J.device)
            for _, o, (J_r,) in _dist.each_rank([Js], group):
                rows[:, :, :, o: o + J_r.shape[0]] = torch.einsum("skp,tlp->kslt", Js, J_r)
            yield name, _finish(rows, T, None, None)


class FisherOperator(CurvatureOperator):
    """F = (1/T) Σ_t J_tᵀ Λ_t J_t (P × P), matrix-free through ``torch.func`` for any sample-wise module.

    Λ_t = I_C (``outputs="squared"``, 004 A.26) or diag p_t − p_t p_tᵀ (``"cross_entropy"``),
    p_t = softmax f(x_t). A block V (P × k) costs k JVPs and k VJPs per chunk of
    ``batch_size`` inputs (vmapped over the k columns); memory O(k·batch·(C + activations) + P).

    **Distributed** (``group=``): each rank passes its shard of the inputs and the same model
    (checked); T is the union's. ``matmat`` takes a block V replicated on every rank and returns
    F V on every rank: the per-rank sums Σ_{t in shard} J_tᵀ Λ_t J_t V, one all-reduce of P·k
    numbers, then 1/T. Construction checks collectively that every rank holds ≥ 1 input.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, outputs: str = "squared", batch_size: int | None = None,
                 *, group=None):
        self.outputs = _outputs(outputs)
        self.group = group
        err = None
        try:
            _ntk.check_samplewise(model)
            self._f, self._theta, _, _ = _ntk.functional_model(model)
            _dist.check_device(self._theta, group, "the model's parameters")
            x = _ntk._inputs(x, self._theta, "x")
            _ntk._check_outputs(self._f, self._theta, x)
            bs = x.shape[0] if batch_size is None else int(batch_size)
            if bs < 1:
                raise ValueCheckError(f"batch_size must be ≥ 1, got {batch_size}")
        except (ValueCheckError, ShapeError) as e:
            err = e
        _dist.raise_together(err, group)
        _dist.check_same(self._theta, group, "the model's parameters")
        self._chunks = list(torch.split(x, bs))
        self.T_local = int(x.shape[0])
        self.T = sum(_dist.all_sizes(self.T_local, group))
        self._probs = None
        if self.outputs == "cross_entropy":
            with torch.no_grad():
                self._probs = [torch.softmax(self._f(self._theta, xb), dim=1) for xb in self._chunks]
        super().__init__(self._theta.numel(), self._theta.dtype, self._theta.device)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        from torch.func import jvp, vjp, vmap

        Vt = V.T.contiguous()  # (k, P): each probe contiguous (a strided column slows every layer's product)
        out = torch.zeros_like(Vt)
        for i, xb in enumerate(self._chunks):
            fb = lambda th, xb=xb: self._f(th, xb)  # noqa: E731
            _, pull = vjp(fb, self._theta)
            JV = vmap(lambda v: jvp(fb, (self._theta,), (v,))[1])(Vt)  # (k, Tb, C)
            if self._probs is not None:
                p = self._probs[i]
                JV = p * JV - p * (p * JV).sum(-1, keepdim=True)  # Λ_t J_t v
            out += vmap(lambda u: pull(u)[0])(JV)
        out = _dist.all_reduce_sum(out.detach(), self.group)
        return (out / self.T).T


class RFIMBlockOperator(CurvatureOperator):
    """The block-diagonal matrix diag(G_1, …, G_L) of RFIM blocks (003 section 3, Theorem 3).

    Each block is a :class:`~actionlab.fisher.rfim.NeuronBlocks` (diag of per-neuron d × d
    blocks), a :class:`~actionlab.fisher.rfim.Kronecker` (B ⊗ A, applied as
    B X A with X the neuron-major reshape), a :class:`~actionlab.fisher.rfim.DenseBlocks`
    or a symmetric torch matrix; the layout of each block is that of its ``dense()``.
    """

    dense_is_cheap = True

    def __init__(self, blocks):
        blocks = list(blocks)
        if not blocks:
            raise ValueCheckError("RFIMBlockOperator needs at least one block")
        dims = []
        for i, b in enumerate(blocks):
            if isinstance(b, (_rfim.NeuronBlocks, _rfim.DenseBlocks)):
                if b.blocks.dim() != (3 if isinstance(b, _rfim.NeuronBlocks) else 4):
                    raise ShapeError(f"block {i} is per-sample (reduce='none'); pass the batch mean (reduce='mean')")
                dims.append(b.dim)
            elif isinstance(b, _rfim.Kronecker):
                if b.A.dim() != 2:
                    raise ShapeError(f"block {i} is per-sample (reduce='none'); pass the batch mean (reduce='mean')")
                dims.append(b.dim)
            elif isinstance(b, torch.Tensor) and b.dim() == 2 and b.shape[0] == b.shape[1]:
                dims.append(b.shape[0])
            else:
                raise ValueCheckError(f"block {i} is a {type(b).__name__}; use an rfim block or a square tensor")
        first = blocks[0].blocks if hasattr(blocks[0], "blocks") else getattr(blocks[0], "A", blocks[0])
        self.blocks, self.dims = blocks, dims
        super().__init__(sum(dims), first.dtype, first.device)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        outs, s = [], 0
        for b, d in zip(self.blocks, self.dims):
            X = V[s:s + d]
            s += d
            if isinstance(b, _rfim.NeuronBlocks):
                m, e = b.blocks.shape[0], b.blocks.shape[-1]
                outs.append(torch.einsum("oij,ojk->oik", b.blocks, X.reshape(m, e, -1)).reshape(d, -1))
            elif isinstance(b, _rfim.Kronecker):
                m, e = b.B.shape[0], b.A.shape[0]
                outs.append(torch.einsum("op,ij,pjk->oik", b.B, b.A, X.reshape(m, e, -1)).reshape(d, -1))
            elif isinstance(b, _rfim.DenseBlocks):
                m, e = b.blocks.shape[0], b.blocks.shape[-1]
                outs.append(torch.einsum("opij,pjk->oik", b.blocks, X.reshape(m, e, -1)).reshape(d, -1))
            else:
                outs.append(b @ X)
        return torch.cat(outs)

    def dense(self, chunk: int = 256) -> torch.Tensor:
        return torch.block_diag(*[b if isinstance(b, torch.Tensor) else b.dense() for b in self.blocks])


class ForeignOperator(CurvatureOperator):
    """Any symmetric operator with ``shape`` and ``@`` (torch tensors, else numpy), times ``scale``.

    For a curvlinops operator (``GGNLinearOperator``, ``FisherMCLinearOperator``, …)
    ``@`` takes and returns torch tensors of its own dtype/device.
    """

    def __init__(self, op, scale: float = 1.0, dtype: torch.dtype | None = None, device=None):
        shape = tuple(getattr(op, "shape", ()))
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ShapeError(f"the operator must be square with a .shape, got {shape or type(op).__name__}")
        if not hasattr(op, "__matmul__") and not hasattr(op, "matmat"):
            raise ValueCheckError(f"{type(op).__name__} has neither @ nor matmat; it cannot act as a curvature operator")
        dt = dtype or getattr(op, "dtype", None)
        dt = dt if isinstance(dt, torch.dtype) else torch.float64
        dev = device or getattr(op, "device", None)
        dev = dev if isinstance(dev, (torch.device, str)) else "cpu"
        self.op, self.scale = op, float(scale)
        self._numpy = not _takes_torch(op)
        super().__init__(shape[0], dt, dev)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self._numpy:
            Vn = V.detach().cpu().numpy()
            out = self.op.matmat(Vn) if hasattr(self.op, "matmat") else self.op @ Vn
            out = torch.as_tensor(np.asarray(out), dtype=self.dtype, device=self.device)
        else:
            out = self.op @ V
        return self.scale * out


def _takes_torch(op) -> bool:
    mod = type(op).__module__ or ""
    return mod.startswith("curvlinops") or isinstance(op, (torch.Tensor, CurvatureOperator))


def from_curvlinops(op, scale: float = 1.0) -> ForeignOperator:
    """Wrap a curvlinops linear operator; ``scale`` converts its normalisation to the project's F.

    E.g. ``GGNLinearOperator`` with ``CrossEntropyLoss(reduction="mean")`` is the
    cross-entropy F (scale 1); with ``MSELoss(reduction="mean")`` on C outputs it is
    (2/C)·F_squared, so pass ``scale=C/2``; with ``MSELoss(reduction="sum")`` it is
    2T·F_squared (``scale=1/(2T)``).
    """
    if not (type(op).__module__ or "").startswith("curvlinops"):
        raise ValueCheckError(f"expected a curvlinops operator, got {type(op).__name__}; use ForeignOperator for others")
    return ForeignOperator(op, scale)


def as_operator(op) -> CurvatureOperator:
    """Any accepted curvature object as a :class:`CurvatureOperator`.

    Accepts a CurvatureOperator (returned as is), a square symmetric torch tensor
    (:class:`DenseOperator`), RFIM blocks (one or a list), or any square object with
    ``shape`` and ``@`` / ``matmat`` (curvlinops, ``scipy.sparse.linalg.LinearOperator``).
    """
    if isinstance(op, CurvatureOperator):
        return op
    if isinstance(op, torch.Tensor):
        return DenseOperator(op)
    if isinstance(op, (_rfim.NeuronBlocks, _rfim.Kronecker, _rfim.DenseBlocks)):
        return RFIMBlockOperator([op])
    if isinstance(op, (list, tuple)):
        return RFIMBlockOperator(op)
    if isinstance(op, np.ndarray):
        return DenseOperator(torch.as_tensor(op))
    if hasattr(op, "shape") and (hasattr(op, "__matmul__") or hasattr(op, "matmat")):
        return ForeignOperator(op)
    raise ValueCheckError(
        f"cannot use a {type(op).__name__} as a curvature operator; pass a CurvatureOperator, a square tensor, "
        f"RFIM blocks or an object with .shape and @ (e.g. a curvlinops operator)"
    )
