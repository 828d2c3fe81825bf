"""``Dataset(z, labels)`` — the embedding vectors and labels of one split — and the class balance p(m).

The empirical distribution p(z, m) of the notes (000, eq. (1) ff.) is the
uniform measure on a Dataset's rows; the expansion of the action at θ = 0
assumes balanced classes, p(m) = Σ_z p(z, m) = 1/M (000, the line after
eq. (3)), which :func:`balance_report` measures and :func:`check_balanced`
requires.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np
import torch

from actionlab._checks import ShapeError, ValueCheckError, check_float, check_labels, check_matrix
from actionlab._display import short_repr

__all__ = ["Dataset", "BalanceReport", "balance_report", "check_balanced"]


@short_repr
@dataclass
class BalanceReport:
    """How far a label set is from p(m) = 1/M.

    ``kl_from_uniform`` = KL(p ‖ u) = Σ_m p(m) ln(M p(m)) = ln M − H(p) in nats
    (0 ln 0 = 0, so it stays finite when a class is empty); ``max_deviation`` =
    max_m |p(m) − 1/M|; ``is_balanced`` means all counts are equal.
    """

    counts: list[int]
    proportions: list[float]
    num_classes: int
    n: int
    max_deviation: float
    kl_from_uniform: float
    is_balanced: bool

    def summary(self) -> str:
        if self.is_balanced:
            return f"balanced: {self.counts[0]} per class, p(m) = 1/{self.num_classes} exactly"
        return (
            f"not balanced: counts {min(self.counts)}..{max(self.counts)}, max |p(m) - 1/M| = {self.max_deviation:.4g}, "
            f"KL(p||uniform) = {self.kl_from_uniform:.4g} nats (load(..., balance=True) makes p(m) = 1/M exactly)"
        )

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


@short_repr
@dataclass
class Dataset:
    """Embedding vectors and labels of one split.

    ``z``: N × E float tensor; ``labels``: N long tensor in 0..M−1;
    ``num_classes`` = M; ``class_names``: M names; ``info``: the provenance
    (source files, seed, every preprocessing option); ``indices``: the rows'
    positions in the source (the official train or test file, or the 1797
    digits), so splits can be compared.
    """

    z: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_names: list[str]
    name: str = "custom"
    split: str = "train"
    info: dict = field(default_factory=dict)
    indices: torch.Tensor | None = None
    check_finite: InitVar[bool] = True  # the loader, which builds z from bytes, skips the O(N·E) scan

    def __post_init__(self, check_finite: bool = True) -> None:
        if check_finite:
            check_matrix(self.z, "z")
        else:
            check_float(self.z, "z")
            if self.z.dim() != 2:
                raise ShapeError(f"z must be 2-D (N × E), got shape {tuple(self.z.shape)}")
        check_labels(self.labels, self.num_classes, "labels")
        if self.labels.shape[0] != self.z.shape[0]:
            raise ShapeError(f"z has {self.z.shape[0]} rows but labels has {self.labels.shape[0]}; they must describe the same samples")
        self.class_names = [str(c) for c in self.class_names]
        if len(self.class_names) != self.num_classes:
            raise ShapeError(f"{len(self.class_names)} class names given for num_classes = {self.num_classes}")

    def __len__(self) -> int:
        return int(self.z.shape[0])

    @property
    def N(self) -> int:
        return int(self.z.shape[0])

    @property
    def E(self) -> int:
        return int(self.z.shape[1])

    @property
    def M(self) -> int:
        return self.num_classes

    def counts(self) -> list[int]:
        return torch.bincount(self.labels.cpu(), minlength=self.num_classes).tolist()

    def balance_report(self) -> BalanceReport:
        return balance_report(self.labels, self.num_classes)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Dataset":
        """A copy on another device and/or float dtype (labels stay long)."""
        z = self.z.to(device=device, dtype=dtype) if dtype is not None else self.z.to(device=device)
        return Dataset(z, self.labels.to(device=device), self.num_classes, list(self.class_names), self.name,
                       self.split, dict(self.info), self.indices)

    def subset(self, rows: torch.Tensor | Sequence[int]) -> "Dataset":
        """The rows ``rows`` (indices or a boolean mask) as a new Dataset."""
        rows = torch.as_tensor(rows, device=self.z.device)
        idx = self.indices[rows.cpu()] if self.indices is not None else None
        return Dataset(self.z[rows], self.labels[rows], self.num_classes, list(self.class_names), self.name,
                       self.split, dict(self.info, subset=True), idx)


# --------------------------------------------------------------------------- balance


def _labels_array(labels: Any, num_classes: int | None) -> tuple[torch.Tensor, int]:
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    labels = labels.detach().cpu()
    if labels.dim() != 1:
        raise ShapeError(f"labels must be 1-D (N,), got shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueCheckError("labels is empty; a balance report needs at least one sample")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueCheckError(f"labels must hold integer class indices, got dtype {labels.dtype}; use labels.long()")
    labels = labels.long()  # any integer dtype (uint8 from a file, int32 from numpy) is accepted
    if num_classes is None:
        if int(labels.min()) < 0:
            raise ValueCheckError(f"labels must be ≥ 0, found {int(labels.min())}")
        num_classes = int(labels.max()) + 1
    check_labels(labels, num_classes)
    return labels.long(), int(num_classes)


def balance_report(labels: Any, num_classes: int | None = None) -> BalanceReport:
    """Counts, proportions, max |p(m) − 1/M| and KL(p ‖ uniform) of a label set.

    ``labels``: a tensor of any integer dtype (uint8 too), an integer array or a list.

    ``num_classes`` defaults to max(labels) + 1; pass it when a class may be
    absent (an absent class counts 0 and makes the set unbalanced).
    """
    lab, M = _labels_array(labels, num_classes)
    counts = torch.bincount(lab, minlength=M).tolist()
    n = int(lab.numel())
    p = [c / n for c in counts]
    max_dev = max(abs(pm - 1.0 / M) for pm in p)
    kl = sum(pm * math.log(M * pm) for pm in p if pm > 0)
    kl = max(kl, 0.0)
    balanced = min(counts) == max(counts)
    return BalanceReport(counts, p, M, n, 0.0 if balanced else max_dev, 0.0 if balanced else kl, balanced)


def check_balanced(labels: Any, num_classes: int | None = None, tol: float = 0.0) -> BalanceReport:
    """Require p(m) = 1/M (all counts equal when ``tol`` = 0, else max |p(m) − 1/M| ≤ tol).

    Raises ``ValueCheckError`` with the class counts and the fix; returns the report otherwise.
    """
    rep = balance_report(labels, num_classes)
    ok = rep.is_balanced if tol <= 0 else rep.max_deviation <= tol
    if not ok:
        raise ValueCheckError(
            f"the classes are not balanced (counts {rep.counts}, max |p(m) - 1/M| = {rep.max_deviation:.4g} > tol = {tol}); "
            f"the expansion at theta = 0 assumes p(m) = 1/M: load the data with balance=True "
            f"(actionlab.data.load(..., balance=True) or --balance)"
        )
    return rep
