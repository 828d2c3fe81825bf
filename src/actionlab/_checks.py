"""Input validation shared by every module.

Every public function checks its inputs here and raises one of the errors
below with a message that names the problem *and* the fix, so that a user
never sees a traceback from deep inside torch for a wrong shape or a NaN.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import torch

__all__ = [
    "ActionlabError",
    "ShapeError",
    "ValueCheckError",
    "DataError",
    "check_finite",
    "check_matrix",
    "check_labels",
    "check_nonempty",
    "check_same_length",
    "check_float",
    "check_choice",
    "check_positive",
]


class ActionlabError(Exception):
    """Base class of every error actionlab raises on bad input."""


class ShapeError(ActionlabError, ValueError):
    """A tensor has the wrong number of dimensions or mismatched sizes."""


class ValueCheckError(ActionlabError, ValueError):
    """A value is out of range: NaN/inf, a label outside 0..M-1, an unknown name."""


class DataError(ActionlabError, OSError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


def check_float(x: torch.Tensor, name: str) -> torch.Tensor:
    """Require a floating-point tensor (any float dtype is kept as it is)."""
    if not isinstance(x, torch.Tensor):
        raise ValueCheckError(f"{name} must be a torch.Tensor, got {type(x).__name__}; wrap it with torch.as_tensor(...)")
    if not x.is_floating_point():
        raise ValueCheckError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; convert it with {name}.float() or .double()"
        )
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Require every entry to be finite; the message says how many are not and where the first is."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        n_bad = int(bad.sum())
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueCheckError(
            f"{name} contains {n_bad} non-finite value(s) (NaN or inf), the first at index {first}; "
            f"clean or impute the data before calling (e.g. torch.nan_to_num or drop those rows)"
        )
    return x


def check_matrix(x: torch.Tensor, name: str, cols: int | None = None, rows: int | None = None) -> torch.Tensor:
    """Require a finite float 2-D tensor, optionally with a given number of rows / columns."""
    check_float(x, name)
    if x.dim() != 2:
        raise ShapeError(f"{name} must be 2-D (N × E), got shape {tuple(x.shape)}; reshape with {name}.reshape(len({name}), -1)")
    if cols is not None and x.shape[1] != cols:
        raise ShapeError(f"{name} has {x.shape[1]} columns but {cols} are expected (shape {tuple(x.shape)})")
    if rows is not None and x.shape[0] != rows:
        raise ShapeError(f"{name} has {x.shape[0]} rows but {rows} are expected (shape {tuple(x.shape)})")
    return check_finite(x, name)


def check_labels(labels: torch.Tensor, num_classes: int | None, name: str = "labels") -> torch.Tensor:
    """Require a 1-D int64 tensor of class indices with values in 0..num_classes-1.

    A list, a float or bool tensor, or another integer dtype (uint8 wraps at 256, and torch's losses and
    ``one_hot`` take int64 only) is refused with the conversion to use. ``num_classes=None`` checks only
    that the indices are ≥ 0.
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueCheckError(f"{name} must be a torch.Tensor of integer class indices, got {type(labels).__name__}; "
                              f"wrap it with torch.as_tensor({name}, dtype=torch.long)")
    if labels.dim() != 1:
        raise ShapeError(f"{name} must be 1-D (N,), got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueCheckError(f"{name} must hold integer class indices, got dtype {labels.dtype}; use {name}.long()")
    if labels.dtype != torch.int64:
        raise ValueCheckError(f"{name} must be int64 (torch.long) class indices, got dtype {labels.dtype}; "
                              f"use {name}.long()")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1):
        raise ValueCheckError(f"the number of classes M must be a positive integer, got {num_classes!r}")
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            bound = f"0..{num_classes - 1} (M = {num_classes} classes)" if num_classes is not None else "≥ 0"
            raise ValueCheckError(
                f"{name} must lie in {bound} but range over {lo}..{hi}; "
                f"remap the labels or pass the right number of classes"
            )
    return labels


def check_nonempty(x: torch.Tensor, name: str) -> torch.Tensor:
    """Require at least one sample (a non-empty leading dimension)."""
    if x.dim() == 0 or x.shape[0] == 0:
        raise ShapeError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample")
    return x


def check_same_length(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Require two tensors to have the same leading dimension."""
    if a.shape[0] != b.shape[0]:
        raise ShapeError(f"{name_a} has {a.shape[0]} rows but {name_b} has {b.shape[0]}; they must describe the same samples")


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    """Require value to be one of choices; the message lists them."""
    choices = list(choices)
    if value not in choices:
        raise ValueCheckError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """Require a positive (or non-negative) finite number."""
    import numbers

    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueCheckError(f"{name} must be a number, got {value!r} ({type(value).__name__}); pass e.g. {name}=0.01")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value in (float("inf"), float("-inf")):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueCheckError(f"{name} must be finite and {bound}, got {value}")
    return value
