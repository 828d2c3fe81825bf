"""The maps applied to z: one PCA, one random projection, one average pooling, one standardisation.

All are fitted on a training split and then applied unchanged to any split
(the statistics never see validation or test rows):

* ``"pca"``: z ↦ (z − μ) V, V the top-``dim`` eigenvectors of the train
  covariance (streamed in chunks, accumulated in float64, ``eigh``), i.e.
  scikit-learn's ``PCA(dim).transform`` with the sign of each component fixed
  so its largest-|·| loading is positive (scikit-learn's ``svd_flip``).  The
  covariance is streamed because ``PCA.fit`` needs the whole N × E matrix in
  memory at once; the test suite checks the two agree.
* ``"random"``: z ↦ z R, R_{jk} ~ N(0, 1/dim) i.i.d. from the seed (a
  Johnson–Lindenstrauss map: E‖zR‖² = ‖z‖²);
* ``"pool"``: average pooling of the image (C × H × W) to s × s (adaptive
  pooling when s does not divide the side), so ``dim`` must be C·s²;
* standardisation, after the reduction, population statistics:
  ``"none"``; ``"centre"``: z_j − μ_j; ``"zscore"``: (z_j − μ_j)/σ_j, with
  coordinates constant in the train split (σ_j ≤ :data:`ZERO_STD`) set to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from actionlab._checks import ValueCheckError
from actionlab._display import short_repr
from actionlab.data.splits import STREAM_PROJECTION, rng

__all__ = ["Transform", "PCAFit", "fit_pca", "pool", "pool_side", "ZERO_STD", "tensor_chunks"]

#: coordinates whose train-split std is at most this are treated as constant by zscore
ZERO_STD = 1e-8
CHUNK = 8192


def tensor_chunks(x: torch.Tensor, size: int = CHUNK) -> Callable[[], Iterable[torch.Tensor]]:
    """A chunk factory over the rows of ``x`` (what :meth:`Transform.fit` and :func:`fit_pca` read)."""
    return lambda: (x[i:i + size] for i in range(0, x.shape[0], size))


def byte_chunks(x: np.ndarray, rows: np.ndarray, scale: float, dtype: torch.dtype, size: int = CHUNK):
    """The rows ``rows`` of a uint8 array as float chunks ``x / scale``."""
    for i in range(0, rows.shape[0], size):
        yield torch.from_numpy(x[rows[i:i + size]]).to(dtype).div_(scale)


def pool_side(dim: int, shape: tuple[int, int, int]) -> int:
    """The side s with C·s² = ``dim`` for images of ``shape`` = (C, H, W); else an error listing the allowed dims."""
    C, H, _ = shape
    allowed = [C * s * s for s in range(1, H + 1)]
    if dim not in allowed:
        near = [a for a in allowed if a < dim][-1:] + [a for a in allowed if a > dim][:1]
        raise ValueCheckError(
            f"reduce='pool' needs dim = C*s*s for a side s in 1..{H} (images {C}x{H}x{H}: "
            f"{', '.join(map(str, allowed[:4]))}, ..., {allowed[-1]}); {dim} is not one of them — "
            f"nearest allowed: {', '.join(map(str, near))}"
        )
    return int(round(math.sqrt(dim // C)))


def pool(x: torch.Tensor, image_shape: tuple[int, int, int], side: int) -> torch.Tensor:
    """Average pooling of each row (an image of ``image_shape``) to ``side`` × ``side`` cells per channel."""
    C, H, W = image_shape
    y = torch.nn.functional.adaptive_avg_pool2d(x.reshape(-1, C, H, W), side)
    return y.reshape(x.shape[0], -1)


class _Moments:
    """Streaming mean and (optionally) covariance / variance in float64 (Chan et al.'s pairwise update)."""

    def __init__(self, full: bool):
        self.full, self.n, self.mean, self.m2 = full, 0, None, None

    def add(self, x: torch.Tensor) -> None:
        nb = x.shape[0]
        if nb == 0:
            return
        if self.full:  # the E x E Gram in the data's own dtype (float32 halves the time), accumulated in float64
            mb = x.to(torch.float64).mean(0)
            xc = x - mb.to(x.dtype)
            m2b = (xc.T @ xc).to(torch.float64)
        else:  # per-coordinate variance in float64, so that constant coordinates come out exactly (near) 0
            x = x.to(torch.float64)
            mb = x.mean(0)
            xc = x - mb
            m2b = (xc * xc).sum(0)
        if self.n == 0:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / n)
        corr = torch.outer(delta, delta) if self.full else delta * delta
        self.m2 = self.m2 + m2b + corr * (self.n * nb / n)
        self.n = n


@short_repr
@dataclass
class PCAFit:
    """The principal axes of a training set: z ↦ (z − mean) @ components (E × dim, float64)."""

    mean: torch.Tensor
    components: torch.Tensor
    explained_variance_ratio: float
    n: int

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) @ self.components.to(x.dtype)


def fit_pca(chunks: Callable[[], Iterable[torch.Tensor]], dim: int) -> PCAFit:
    """The top-``dim`` eigenvectors of the (population) covariance of the rows ``chunks()`` yields, streamed.

    Each component's sign makes its largest-|·| loading positive (scikit-learn's
    ``svd_flip`` on components), so the result is scikit-learn's ``PCA(dim)``.
    """
    mom = _Moments(full=True)
    for ch in chunks():
        mom.add(ch)
    E = int(mom.mean.shape[0]) if mom.mean is not None else 0
    if mom.n == 0 or dim > min(E, mom.n):
        raise ValueCheckError(f"reduce='pca' with dim = {dim} needs dim ≤ min(E, N_train) = {min(E, mom.n)}")
    evals, evecs = torch.linalg.eigh(mom.m2 / mom.n)
    order = torch.argsort(evals, descending=True)[:dim]
    V = evecs[:, order]
    idx = V.abs().argmax(0)
    signs = torch.sign(V[idx, torch.arange(V.shape[1])])
    signs[signs == 0] = 1
    total = float(evals.clamp_min(0).sum())
    kept = float(evals[order].clamp_min(0).sum())
    return PCAFit(mom.mean, V * signs, kept / total if total > 0 else 1.0, mom.n)


class Transform:
    """The fitted map z ↦ standardize(reduce(z)); fitted on the train split, applied to any split."""

    def __init__(self, reduce: str | None, dim: int | None, standardize: str, image_shape, seed: int, E: int):
        self.reduce, self.dim, self.standardize, self.image_shape = reduce, dim, standardize, image_shape
        self.info: dict[str, Any] = {}
        self.proj: torch.Tensor | None = None  # E × dim of the random projection, float64
        self.pca: PCAFit | None = None
        self.mu: torch.Tensor | None = None
        self.inv_sigma: torch.Tensor | None = None
        self.side = None
        if reduce == "pool":
            self.side = pool_side(dim, image_shape)
            self.info["pool_side"] = self.side
        if reduce == "random":
            g = rng(seed, STREAM_PROJECTION)
            self.proj = torch.from_numpy(g.standard_normal((E, dim)) / math.sqrt(dim))
            self.info["projection"] = "R_jk ~ N(0, 1/dim) from the seed; z -> z R"

    def needs_fit(self) -> bool:
        return self.reduce == "pca" or self.standardize != "none"

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce is None:
            return x
        if self.reduce == "pool":
            return pool(x, self.image_shape, self.side)
        if self.reduce == "pca":
            return self.pca.apply(x)
        return x @ self.proj.to(x.dtype)

    def fit(self, chunk_factory: Callable[[], Iterable[torch.Tensor]]) -> Transform:
        """``chunk_factory()`` yields the train split's [0,1]-scaled rows in chunks."""
        if self.reduce == "pca":
            self.pca = fit_pca(chunk_factory, self.dim)
            self.info["pca_explained_variance_ratio"] = self.pca.explained_variance_ratio
            self.info["pca_fitted_on_n"] = self.pca.n
        if self.standardize != "none":
            mom = _Moments(full=False)
            for ch in chunk_factory():
                mom.add(self._reduce(ch))
            self.mu = mom.mean
            if self.standardize == "zscore":
                sigma = (mom.m2 / mom.n).sqrt()
                const = sigma <= ZERO_STD
                self.inv_sigma = torch.where(const, torch.zeros_like(sigma), 1.0 / sigma.clamp_min(ZERO_STD))
                self.info["zero_variance_coordinates"] = int(const.sum())
            self.info["statistics_fitted_on_n"] = mom.n
        return self

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        y = self._reduce(x)
        if self.standardize == "centre":
            y = y - self.mu.to(y.dtype)
        elif self.standardize == "zscore":
            y = (y - self.mu.to(y.dtype)) * self.inv_sigma.to(y.dtype)
        return y

    def apply_all(self, z: torch.Tensor) -> torch.Tensor:
        """The map on every row, in chunks; without a reduction the standardisation is done in place."""
        if self.reduce is not None:
            return torch.cat([self.apply(z[i:i + CHUNK]) for i in range(0, z.shape[0], CHUNK)])
        if self.standardize != "none":  # in place, chunk by chunk: no second N x E copy
            for i in range(0, z.shape[0], CHUNK):
                z[i:i + CHUNK] = self.apply(z[i:i + CHUNK])
        return z
