"""Spectra of curvature operators: top eigenpairs, eigenvalue density (exact or SLQ), trace estimators.

Every function takes anything :func:`actionlab.fisher.operators.as_operator`
accepts (a :class:`~actionlab.fisher.operators.CurvatureOperator`, a symmetric
tensor, RFIM blocks, a curvlinops operator).

* **Density.** The spectral measure of an n × n symmetric A is
  μ = (1/n) Σ_i δ(λ − λ_i), so that ∫ g dμ = tr g(A)/n. Exactly: the eigenvalues of
  ``dense()`` (when the operator says its dense form is cheap). Otherwise by
  stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017; Lin, Saad & Yang 2016):
  for each of ``probes`` Rademacher vectors v (‖v‖ = 1), ``steps`` Lanczos
  steps with full re-orthogonalisation give the tridiagonal T_m = Σ_j θ_j e_j e_jᵀ
  and the Gauss quadrature rule ∫ g dμ_v ≈ Σ_j τ_j² g(θ_j), τ_j = (e_j)_1, where
  μ_v = Σ_i (vᵀu_i)² δ(λ − λ_i) has E[μ_v] = μ. The rule is exact for polynomials
  of degree ≤ 2m − 1, so the moments tr Aᵏ/n (k < 2m) carry only the probe
  error, reported as the standard error over probes. Its cumulative distribution
  differs from μ_v's by at most the largest weight max_j τ_j² at every point (the
  Chebyshev–Markov–Stieltjes inequalities).
* **Dual operators.** A :class:`~actionlab.fisher.operators.DualFisherOperator`
  (F*, CT × CT) stands for F (P × P, ``full_dim``): its non-zero eigenvalues are
  F's (004, A.26–A.28), and F has P − CT further zeros (P ≥ CT), so the density of
  F is (CT/P)·μ_{F*} + (1 − CT/P)·δ₀; with CT > P F's eigenvalues are the P largest of F*.
* **Trace.** Hutchinson: tr A = E[zᵀAz] for Rademacher z, with the standard error
  s/√N of the N samples. Hutch++ (Meyer, Musco, Musco & Woodruff 2021): with
  m matrix-vector products, k = m/3, Q = orth(A S) for S of k Rademacher columns,
  tr A = tr(QᵀAQ) + Hutchinson on (I − QQᵀ)A(I − QQᵀ) with k further probes; the
  standard error is that of the residual term (the projected trace is exact given Q).
* **Distributed operators** (``group=`` given to the operator, :mod:`actionlab.distributed`):
  every rank calls the function with the same arguments; rank 0 alone runs the solver (its
  probes, its ARPACK/Lanczos iterations) and each of its matrix–vector products is broadcast
  (the block, P·k or CT·k numbers) and applied by all ranks together; the result is then sent
  to every rank. So the probes are those of one process with the same ``seed`` and the result is
  that of one process on the union of the shards (to round-off), identical on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from actionlab import distributed as _dist
from actionlab._checks import ShapeError, ValueCheckError, check_choice
from actionlab._display import short_repr
from actionlab.fisher.operators import CurvatureOperator, as_operator

__all__ = [
    "EigenPairs",
    "SpectralDensity",
    "TraceEstimate",
    "top_eigenpairs",
    "lanczos_tridiagonal",
    "spectral_density",
    "ks_distance",
    "hutchinson_trace",
    "hutchpp_trace",
]


@short_repr
@dataclass
class EigenPairs:
    """The k largest eigenvalues (descending) and their unit eigenvectors (n × k, columns)."""

    values: np.ndarray
    vectors: torch.Tensor
    method: str


@short_repr
@dataclass
class SpectralDensity:
    """An eigenvalue density of the operator (of F for a dual operator) as per-probe quadrature rules.

    ``nodes[i], weights[i]``: the rule of probe i (weights sum to 1; exact: one "probe" with
    all eigenvalues, weight 1/dim each). ``density`` is the probe mean of the Gaussian-broadened
    rules on ``grid`` (σ = ``sigma``), ``density_std`` its spread (standard deviation over probes),
    ``moments[k-1]`` = tr Aᵏ/dim for k = 1..K with standard errors ``moments_se``.
    """

    method: str  # "exact" or "slq"
    dim: int
    nodes: np.ndarray  # (probes, m)
    weights: np.ndarray  # (probes, m)
    grid: np.ndarray
    density: np.ndarray
    density_std: np.ndarray
    sigma: float
    moments: np.ndarray
    moments_se: np.ndarray
    probes: int
    steps: int

    def cdf(self, x) -> np.ndarray:
        """The estimated cumulative distribution μ((−∞, x]) (probe mean of the rules' step functions)."""
        x = np.asarray(x, dtype=np.float64)
        below = (self.nodes[:, :, None] <= x.reshape(-1)[None, None, :]) * self.weights[:, :, None]
        return below.sum(1).mean(0).reshape(x.shape)

    def max_weight(self) -> float:
        """Probe mean of the largest node weight: the Chebyshev–Markov–Stieltjes bound on the CDF error."""
        return float(self.weights.max(1).mean())


@short_repr
@dataclass
class TraceEstimate:
    """A stochastic trace estimate with its standard error and the matrix-vector products it used."""

    estimate: float
    stderr: float
    num_matvecs: int
    method: str
    samples: np.ndarray  # the per-probe terms whose mean (plus the exact part for Hutch++) is the estimate


class _Driven(CurvatureOperator):
    """Rank 0's view of a distributed operator: every product is a request served by all ranks."""

    def __init__(self, op: CurvatureOperator, call):
        super().__init__(op.shape[0], op.dtype, op.device, op.full_dim)
        self.dense_is_cheap, self._call = op.dense_is_cheap, call

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self._call(0, V)

    def dense(self, chunk: int = 256) -> torch.Tensor:
        return self._call(1, None)


def _collective(op: CurvatureOperator, fn):
    """fn(op) — for a distributed operator run by rank 0 with the products served by every rank."""
    group = op.group
    if not _dist.is_distributed(group):
        return fn(op)

    def serve(cmd: int, V):
        return op._matmat(V) if cmd == 0 else op.dense()

    return _dist.rank0_drives(lambda call: fn(_Driven(op, call)), serve, group, op.dtype, op.device)


def _rademacher(n: int, k: int, gen: torch.Generator, op: CurvatureOperator) -> torch.Tensor:
    z = torch.randint(0, 2, (n, k), generator=gen).to(dtype=torch.float64) * 2 - 1
    return z.to(dtype=op.dtype, device=op.device)


def _cheap(op: CurvatureOperator, max_dense_dim: int) -> bool:
    return bool(op.dense_is_cheap) and op.shape[0] <= max_dense_dim


def top_eigenpairs(
    op, k: int = 1, *, method: str = "auto", tol: float = 1e-10, maxiter: int | None = None, seed: int = 0,
    max_dense_dim: int = 4000,
) -> EigenPairs:
    """The k largest eigenpairs: ``torch.linalg.eigh`` of ``dense()`` (``"dense"``) or Lanczos
    (``scipy.sparse.linalg.eigsh`` on ``to_scipy()``, ``"lanczos"``); ``"auto"`` picks dense when cheap.

    For a dual operator the eigenvectors live in the CT-dimensional dual space.
    """
    from scipy.sparse.linalg import eigsh

    op = as_operator(op)
    if _dist.is_distributed(op.group):
        return _collective(op, lambda o: top_eigenpairs(o, k, method=method, tol=tol, maxiter=maxiter, seed=seed,
                                                        max_dense_dim=max_dense_dim))
    check_choice(method, ("auto", "dense", "lanczos"), "method")
    n = op.shape[0]
    if not 1 <= k <= n:
        raise ValueCheckError(f"k must lie in 1..{n} (the operator's size), got {k}")
    if method == "dense" or (method == "auto" and (_cheap(op, max_dense_dim) or k >= n - 1)):
        w, V = torch.linalg.eigh(op.dense().to(torch.float64))
        return EigenPairs(w.flip(0)[:k].cpu().numpy(), V.flip(1)[:, :k], "dense")
    if k >= n - 1:
        raise ValueCheckError(f"Lanczos (eigsh) needs k < n − 1 = {n - 1}; use method='dense'")
    v0 = np.random.default_rng(seed).standard_normal(n)
    w, V = eigsh(op.to_scipy(), k=k, which="LA", tol=tol, maxiter=maxiter, v0=v0)
    order = np.argsort(w)[::-1]
    return EigenPairs(w[order], torch.as_tensor(V[:, order].copy()), "lanczos")


_AUTO_BLOCK_BYTES = 2**25  # probe_block="auto": at most 32 MiB of probes per operator call
_MAX_BASIS_BYTES = 2**31  # with re-orthogonalisation: at most 2 GiB of Lanczos basis per group


def _group_size(n: int, p: int, m: int, itemsize: int, op_itemsize: int, reorth: bool, max_basis_bytes: int,
                probe_block) -> int:
    """Columns per Lanczos group: ``probe_block`` (``"auto"``: as many as fit in 32 MiB in the operator's
    dtype, at least one), and with re-orthogonalisation no more than a basis of ``max_basis_bytes`` allows."""
    if probe_block == "auto":
        k = max(1, _AUTO_BLOCK_BYTES // max(n * op_itemsize, 1))
    elif isinstance(probe_block, (int, np.integer)) and not isinstance(probe_block, bool) and probe_block >= 1:
        k = int(probe_block)
    else:
        raise ValueCheckError(f"probe_block must be 'auto' or an integer ≥ 1 (probes per operator call), "
                              f"got {probe_block!r}")
    if reorth:
        k = min(k, max(1, max_basis_bytes // max(m * n * itemsize, 1)))
    return int(max(1, min(p, k)))


def lanczos_tridiagonal(op, V0: torch.Tensor, steps: int, *, reorthogonalize: bool = True,
                        max_basis_bytes: int = _MAX_BASIS_BYTES, probe_block="auto") -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Lanczos steps from each column of V0 (n × p), fully re-orthogonalised by default.

    Returns (α, β) in float64 of shapes (p, m) and (p, m − 1): the tridiagonal T_m of each start vector.
    The recurrence runs in V0's dtype (float64 for the most accurate rules; the operator's dtype halves
    the bytes moved per step and the memory — α, β are still returned, and later eigensolved, in float64).
    Each step applies the three-term recurrence w = A q_j − α_j q_j − β_{j−1} q_{j−1}; with
    ``reorthogonalize`` it follows one classical Gram–Schmidt pass against the whole basis and a
    second only when the first removed more than 1 − 1/√2 of ‖w‖ (the Daniel–Gragg–Kaufman–Stewart
    criterion, "twice is enough"). The basis is stored probe-major (p, m, n) in V0's dtype, so the
    passes are batched matrix products without copies. The columns run in groups, each group's block
    going through one ``matmat``: ``probe_block`` columns per group (``"auto"``: as many as fit in
    32 MiB in the operator's dtype — one at a time at P ≈ 8 M in float32, where a vmapped block costs
    more per column than single products), and with re-orthogonalisation no more than a basis of
    ``max_basis_bytes`` allows (one column at a time if even one does not). The grouping changes only
    round-off. Without re-orthogonalisation (Papyan 2020's "fast Lanczos", as in
    curvlinops) only q_{j−1}, q_j are kept (memory O(n·p)), but the basis loses orthogonality once
    Ritz values converge, and converged outliers reappear as spurious copies sharing their weight.
    On breakdown (an invariant subspace found) the remaining basis vectors are zero, so T_m gains a
    zero block whose eigenvectors have zero first component (weight 0 in the quadrature).
    """
    op = as_operator(op)
    if _dist.is_distributed(op.group):
        return _collective(op, lambda o: lanczos_tridiagonal(o, V0, steps, reorthogonalize=reorthogonalize,
                                                             max_basis_bytes=max_basis_bytes, probe_block=probe_block))
    n, p = V0.shape
    m = int(min(steps, n))
    group = _group_size(n, p, m, V0.element_size(), op.dtype.itemsize, reorthogonalize, max_basis_bytes, probe_block)
    parts = [_lanczos_group(op, V0[:, s: s + group], m, reorthogonalize) for s in range(0, p, group)]
    return torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts])


def _row_norms(W: torch.Tensor) -> torch.Tensor:
    """‖W_i‖ of the rows of W (p × n), in float64. Below float64 the sum of squares goes through
    ``vecdot`` (a pairwise sum, relative error ~1e-7 at n = 8·10⁶ in float32) — ``vector_norm`` and BLAS
    products accumulate serially there (1e-4 relative at n = 8·10⁶), which would shift every β_j."""
    if W.dtype == torch.float64:
        return torch.linalg.vector_norm(W, dim=1)
    return torch.linalg.vecdot(W, W).to(torch.float64).sqrt()


def _lanczos_group(op: CurvatureOperator, V0: torch.Tensor, m: int, reorth: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lanczos recurrence of :func:`lanczos_tridiagonal` for the p columns of V0 at once (in place, V0's dtype)."""
    n, p = V0.shape
    dt, f64 = V0.dtype, torch.float64
    Q = torch.zeros(p, m if reorth else 2, n, dtype=dt, device=V0.device)  # the basis, or (q_{j−1}, q_j)
    alpha = torch.zeros(p, m, dtype=f64, device=V0.device)
    beta = torch.zeros(p, max(m - 1, 0), dtype=f64, device=V0.device)
    Q[:, 0] = V0.T
    Q[:, 0] /= _row_norms(Q[:, 0]).to(dt)[:, None]
    w = torch.empty(p, n, dtype=dt, device=V0.device)  # one buffer for every step (no page faults per step)
    tiny = max(1e-10, 10 * torch.finfo(dt).eps)  # breakdown: ‖w‖ at round-off level of the recurrence's dtype
    for j in range(m):
        cur = j if reorth else j % 2
        q = Q[:, cur]
        w.copy_(op.matmat(q.T).T)  # w owns its storage, so the updates below are in place
        a = torch.linalg.vecdot(q, w)
        alpha[:, j] = a.to(f64)
        w.addcmul_(q, a[:, None], value=-1.0)
        if j:
            w.addcmul_(Q[:, cur - 1 if reorth else 1 - cur], beta[:, j - 1, None].to(dt), value=-1.0)
        if reorth:
            basis, col = Q[:, : j + 1], w[:, :, None]  # (p, j + 1, n) view; col views w
            for _ in range(2):
                before = torch.linalg.vector_norm(w, dim=1)
                col.baddbmm_(basis.transpose(1, 2), torch.bmm(basis, col), alpha=-1.0)
                if bool((torch.linalg.vector_norm(w, dim=1) > before / np.sqrt(2.0)).all()):
                    break
        if j == m - 1:
            break
        b64 = _row_norms(w)
        scale = torch.maximum(alpha[:, : j + 1].abs().amax(1), b64 if j == 0 else torch.maximum(b64, beta[:, :j].amax(1)))
        alive = b64 > tiny * scale.clamp_min(1e-300)
        beta[:, j] = torch.where(alive, b64, torch.zeros_like(b64))
        inv = torch.where(alive, 1.0 / b64.clamp_min(1e-300), torch.zeros_like(b64)).to(dt)
        torch.mul(w, inv[:, None], out=w)
        Q[:, j + 1 if reorth else 1 - cur] = w
    return alpha, beta


def _recurrence_dtype(op: CurvatureOperator, recurrence_dtype) -> torch.dtype:
    dt = op.dtype if isinstance(recurrence_dtype, str) and recurrence_dtype == "operator" else recurrence_dtype
    if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
        raise ValueCheckError(f"recurrence_dtype must be a floating torch dtype or 'operator' (the operator's "
                              f"dtype, {op.dtype}), got {recurrence_dtype!r}")
    return dt


def _slq_rules(op: CurvatureOperator, probes: int, steps: int, seed: int, reorth: bool, probe_block,
               dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per-probe Gauss rules. Probe i is the i-th n-vector of the seed's Rademacher stream (drawn on
    the CPU), whatever the grouping and dtype, and the probes of a group are drawn only when it runs."""
    gen = torch.Generator().manual_seed(int(seed))
    n = op.shape[0]
    m = int(min(steps, n))
    group = _group_size(n, probes, m, dtype.itemsize, op.dtype.itemsize, reorth, _MAX_BASIS_BYTES, probe_block)
    alphas, betas = [], []
    for s in range(0, probes, group):
        Z = torch.randint(0, 2, (min(group, probes - s), n), generator=gen, dtype=torch.float32).mul_(2).sub_(1)
        a, b = _lanczos_group(op, Z.to(dtype=dtype, device=op.device).T, m, reorth)
        alphas.append(a)
        betas.append(b)
    alpha, beta = torch.cat(alphas), torch.cat(betas)
    Tm = torch.diag_embed(alpha) + torch.diag_embed(beta, 1) + torch.diag_embed(beta, -1)
    theta, U = torch.linalg.eigh(Tm)
    return theta.cpu().numpy(), (U[:, 0, :] ** 2).cpu().numpy()


def _to_full_dim(nodes: np.ndarray, weights: np.ndarray, n: int, full: int, exact: bool):
    if full == n:
        return nodes, weights
    if full > n:  # F has full − n extra zero eigenvalues
        z = np.zeros((nodes.shape[0], 1))
        return np.hstack([nodes, z]), np.hstack([weights * n / full, z + (full - n) / full])
    if not exact:
        raise ValueCheckError(f"SLQ of a dual operator with CT = {n} > P = {full} cannot drop F*'s extra zeros; "
                              f"use method='exact' or a FisherOperator")
    keep = np.sort(nodes[0])[::-1][:full]  # F's eigenvalues: the P largest of F*
    return keep[None, :], np.full((1, full), 1.0 / full)


def spectral_density(
    op, *, method: str = "auto", probes: int = 20, steps: int = 40, num_moments: int = 4,
    grid: np.ndarray | None = None, num_grid: int = 400, sigma: float | None = None, seed: int = 0,
    max_dense_dim: int = 4000, reorthogonalize: bool = True, probe_block="auto", recurrence_dtype=torch.float64,
) -> SpectralDensity:
    """The eigenvalue density of ``op`` — of F for a dual operator (see the module docstring).

    ``method="exact"`` (eigenvalues of ``dense()``), ``"slq"`` (``probes`` × ``steps`` Lanczos),
    ``"auto"``: exact when the dense form is cheap and n ≤ ``max_dense_dim``; ``reorthogonalize``
    as in :func:`lanczos_tridiagonal` (False: Papyan's fast Lanczos, O(n·probes) memory); ``probe_block``:
    probes per operator call (``"auto"``: as many as fit in 32 MiB, see :func:`lanczos_tridiagonal`; the
    probes of a block are drawn only when it runs, so memory is O(n·probe_block) without
    re-orthogonalisation); ``recurrence_dtype``: the dtype of the Lanczos vectors (float64 by default;
    ``"operator"`` for the operator's own, e.g. float32: half the bytes per step — the tridiagonal's
    eigensolve and the quadrature stay float64, and the rules then carry the recurrence's round-off,
    ~1e-6 relative in float32, instead of ~1e-15). The density on
    ``grid`` is Gaussian-broadened with width ``sigma`` (default: 1/100 of the spectral range).
    """
    op = as_operator(op)
    if _dist.is_distributed(op.group):
        return _collective(op, lambda o: spectral_density(
            o, method=method, probes=probes, steps=steps, num_moments=num_moments, grid=grid, num_grid=num_grid,
            sigma=sigma, seed=seed, max_dense_dim=max_dense_dim, reorthogonalize=reorthogonalize,
            probe_block=probe_block, recurrence_dtype=recurrence_dtype))
    check_choice(method, ("auto", "exact", "slq"), "method")
    if probes < 1 or steps < 1:
        raise ValueCheckError(f"probes and steps must be ≥ 1, got {probes}, {steps}")
    n = op.shape[0]
    exact = method == "exact" or (method == "auto" and _cheap(op, max_dense_dim))
    if exact:
        nodes = torch.linalg.eigvalsh(op.dense().to(torch.float64)).cpu().numpy()[None, :]
        weights = np.full_like(nodes, 1.0 / n)
    else:
        nodes, weights = _slq_rules(op, probes, steps, seed, reorthogonalize, probe_block,
                                    _recurrence_dtype(op, recurrence_dtype))
    nodes, weights = _to_full_dim(nodes, weights, n, op.full_dim, exact)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = (hi - lo) / 100 if hi > lo else max(abs(hi), 1.0) * 1e-2
    if sigma <= 0:
        raise ValueCheckError(f"sigma must be > 0, got {sigma}")
    g = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(num_grid)) if grid is None else np.asarray(grid, float)
    kern = np.exp(-0.5 * ((g[None, None, :] - nodes[:, :, None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    per_probe = (weights[:, :, None] * kern).sum(1)
    mom = np.stack([(weights * nodes**k).sum(1) for k in range(1, num_moments + 1)], axis=1)  # (probes, K)
    p = nodes.shape[0]
    se = mom.std(0, ddof=1) / np.sqrt(p) if p > 1 else np.zeros(num_moments)
    return SpectralDensity(
        method="exact" if exact else "slq", dim=op.full_dim, nodes=nodes, weights=weights, grid=g,
        density=per_probe.mean(0), density_std=per_probe.std(0, ddof=1) if p > 1 else np.zeros_like(g),
        sigma=float(sigma), moments=mom.mean(0), moments_se=se, probes=p, steps=0 if exact else int(steps),
    )


def ks_distance(a: SpectralDensity, b, atol: float = 0.0) -> float:
    """sup_x |F_a(x) − F_b(x)| between a density's CDF and another density's (or a list of eigenvalues').

    With ``atol`` > 0 eigenvalues closer than ``atol`` count as equal (round-off zeros at ±1e-16
    against exact zeros): sup_x max(F_a(x) − F_b(x + atol), F_b(x) − F_a(x + atol), 0), the
    Kolmogorov–Smirnov distance for ``atol`` = 0.
    """
    if not isinstance(b, SpectralDensity):
        ev = np.asarray(b, dtype=np.float64).reshape(1, -1)
        if ev.size == 0:
            raise ShapeError("ks_distance needs at least one eigenvalue")
        b = SpectralDensity("exact", ev.size, ev, np.full_like(ev, 1.0 / ev.size), np.zeros(0), np.zeros(0),
                            np.zeros(0), 1.0, np.zeros(0), np.zeros(0), 1, 0)
    if atol < 0:
        raise ValueCheckError(f"atol must be ≥ 0, got {atol}")
    pts = np.unique(np.concatenate([a.nodes.ravel(), b.nodes.ravel()]))
    xs = np.concatenate([pts, np.nextafter(pts, -np.inf), pts - atol, np.nextafter(pts - atol, -np.inf)])
    d1 = a.cdf(xs) - b.cdf(xs + atol)
    d2 = b.cdf(xs) - a.cdf(xs + atol)
    return float(max(d1.max(), d2.max(), 0.0))


def hutchinson_trace(op, num_matvecs: int = 100, *, seed: int = 0, chunk: int = 64) -> TraceEstimate:
    """tr A ≈ (1/N) Σ_i z_iᵀ A z_i, z_i Rademacher, standard error s/√N (N = ``num_matvecs``)."""
    op = as_operator(op)
    if _dist.is_distributed(op.group):
        return _collective(op, lambda o: hutchinson_trace(o, num_matvecs, seed=seed, chunk=chunk))
    if num_matvecs < 2:
        raise ValueCheckError(f"num_matvecs must be ≥ 2 for a standard error, got {num_matvecs}")
    gen = torch.Generator().manual_seed(int(seed))
    samples = []
    for s in range(0, num_matvecs, chunk):
        Z = _rademacher(op.shape[0], min(chunk, num_matvecs - s), gen, op)
        samples.append((Z * op.matmat(Z)).sum(0).to(torch.float64).cpu())
    x = torch.cat(samples).numpy()
    return TraceEstimate(float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)), int(num_matvecs), "hutchinson", x)


def hutchpp_trace(op, num_matvecs: int = 99, *, seed: int = 0) -> TraceEstimate:
    """Hutch++: tr(QᵀAQ) + (1/k) Σ_i g̃_iᵀ A g̃_i, g̃ = (I − QQᵀ)g, Q = orth(A S), k = ``num_matvecs`` // 3."""
    op = as_operator(op)
    if _dist.is_distributed(op.group):
        return _collective(op, lambda o: hutchpp_trace(o, num_matvecs, seed=seed))
    k = int(num_matvecs) // 3
    if k < 2:
        raise ValueCheckError(f"Hutch++ needs num_matvecs ≥ 6 (k = m/3 ≥ 2 for a standard error), got {num_matvecs}")
    n = op.shape[0]
    k = min(k, n)
    gen = torch.Generator().manual_seed(int(seed))
    S = _rademacher(n, k, gen, op)
    Q, _ = torch.linalg.qr(op.matmat(S))
    exact_part = float(torch.trace(Q.T @ op.matmat(Q)))
    G = _rademacher(n, k, gen, op)
    G = G - Q @ (Q.T @ G)
    x = (G * op.matmat(G)).sum(0).to(torch.float64).cpu().numpy()
    return TraceEstimate(exact_part + float(x.mean()), float(x.std(ddof=1) / np.sqrt(k)), 3 * k, "hutch++", x)
