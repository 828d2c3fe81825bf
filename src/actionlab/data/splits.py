"""Splits and class subsampling: which rows of a source make a split — one stratified rule for every data set.

The rule, the same for every data set: **train, validation and test are
pairwise disjoint** (by default and for every option).  The validation split is
a stratified hold-out, deterministic in ``seed``, of the pool the test split is
not in, and "train" is that pool minus the validation rows:

* ``fashion-mnist``, ``mnist``, ``cifar10``: "test" is the official test file;
  the pool is the official train file; the validation size is ``validation=``
  (a count, or a fraction in (0, 1) of the train file) or by default 10,000
  (MNIST, Fashion-MNIST) / 5,000 (CIFAR-10).  So ``load("mnist", "train")`` is
  50,000 images, ``load("mnist", "validation")`` the other 10,000 and
  ``load("mnist", "test")`` the official 10,000 — the RNGD split of 003.
* ``digits`` has no official split: test = a stratified 20 % (359 of 1797)
  from the seed; the pool is the rest; validation = 10 % of all 1797 (180, or
  ``validation=``); train = the rest (1258).
* ``validation=0``: no validation split (asking for it is an error); "train" is
  the whole pool — all 60,000 official MNIST training images.

Train and validation share the pool, so they are disjoint only when loaded
with the same ``seed`` and ``validation``: ``info["validation_seed"]`` and
``info["validation_size"]`` record both (and ``Dataset.indices`` the rows).
``info["train_includes_validation"]`` is always False.

Every stratified choice is :func:`stratified_pick`: exactly ``size`` rows with
each class's count within one of its share ``n_m · size / n`` (largest-remainder
quotas).  scikit-learn's ``train_test_split(stratify=y)`` does not do this job
for every input the loader accepts: it refuses a class with a single member, a
size below the number of classes, and size = n.  :func:`stratified_holdout` is
the same rule on a label tensor (the validation part held out of a training set).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from actionlab._checks import ValueCheckError
from actionlab.data.catalog import DEFAULT_VALIDATION, DIGITS_TEST_FRACTION

__all__ = ["rng", "stratified_pick", "label_array", "stratified_holdout", "validation_size", "split_rows", "subsample",
           "STREAM_SPLIT", "STREAM_SUBSAMPLE", "STREAM_PROJECTION", "STREAM_HOLDOUT"]

#: seed streams: one seed, independent streams for each random choice
STREAM_SPLIT, STREAM_SUBSAMPLE, STREAM_PROJECTION, STREAM_HOLDOUT = 1, 2, 3, 4


def rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one random choice (``stream``) from the seed; the streams are independent."""
    return np.random.default_rng([int(seed) % (2**63), stream])


def stratified_pick(y: np.ndarray, size: int, gen: np.random.Generator, num_classes: int) -> np.ndarray:
    """Exactly ``size`` indices, class proportions kept (largest-remainder quotas), sorted."""
    n = y.shape[0]
    counts = np.bincount(y, minlength=num_classes)
    quota = counts * size / n
    base = np.floor(quota).astype(np.int64)
    rest = size - int(base.sum())
    order = sorted(range(num_classes), key=lambda c: (-(quota[c] - base[c]), c))
    for c in order[:rest]:
        base[c] += 1
    picked = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        if base[c]:
            picked.append(members[gen.permutation(members.shape[0])[: base[c]]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def validation_size(validation: int | float | None, default: int | float, n: int) -> int:
    v = default if validation is None else validation
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueCheckError(f"validation must be a count or a fraction in (0, 1), got {v!r}")
    if isinstance(v, (float, np.floating)) and not float(v).is_integer():
        if not 0 < v < 1:
            raise ValueCheckError(f"validation fraction must lie in (0, 1), got {v}")
        return int(round(float(v) * n))
    v = int(v)
    if v < 0 or v >= n:
        raise ValueCheckError(f"validation = {v} samples, but it must lie in 0..{n - 1} (the set it is carved from has {n})")
    return v


def split_rows(name: str, split: str, src_train_y: np.ndarray, seed: int, validation) -> tuple[np.ndarray, dict]:
    """Rows of the source for ``split`` (the source is the official train file, or all digits)."""
    M = 10
    n = src_train_y.shape[0]
    info: dict[str, Any] = {}
    if name == "digits":
        gen = rng(seed, STREAM_SPLIT)
        n_test = int(round(DIGITS_TEST_FRACTION * n))
        test = stratified_pick(src_train_y, n_test, gen, M)
        rest = np.setdiff1d(np.arange(n), test)
        n_val = validation_size(validation, DEFAULT_VALIDATION["digits"], n)  # a fraction is of all 1797
        if n_val >= rest.shape[0]:
            raise ValueCheckError(f"validation = {n_val} leaves no training samples (only {rest.shape[0]} are not in the test split)")
        val = rest[stratified_pick(src_train_y[rest], n_val, gen, M)] if n_val else np.zeros(0, np.int64)
        train = np.setdiff1d(rest, val)
        info.update(split_sizes={"train": int(train.size), "validation": int(val.size), "test": int(test.size)},
                    validation_size=int(n_val), validation_seed=int(seed), train_includes_validation=False,
                    split_rule="stratified by class from the seed: test 20%, validation 10% (or validation=), train the rest")
        rows = {"train": train, "validation": val, "test": test}[split]
        if split == "validation" and rows.size == 0:
            raise ValueCheckError("validation = 0 leaves no validation split; pass validation > 0")
        return rows, info
    if split == "test":
        raise AssertionError("official test split is not carved")  # pragma: no cover
    n_val = validation_size(validation, DEFAULT_VALIDATION[name], n)
    if split == "validation" and n_val == 0:
        raise ValueCheckError("validation = 0 leaves no validation split; pass validation > 0 (or leave the default)")
    val = stratified_pick(src_train_y, n_val, rng(seed, STREAM_SPLIT), M) if n_val else np.zeros(0, np.int64)
    info.update(validation_size=int(n_val), validation_seed=int(seed), train_includes_validation=False,
                split_sizes={"train": int(n - n_val), "validation": int(n_val)},
                split_rule=f"validation = {n_val} rows held out of the official train file, stratified by class from "
                           f"the seed; train = the other {n - n_val}; test = the official test file")
    return (val if split == "validation" else np.setdiff1d(np.arange(n), val)), info


def subsample(y: np.ndarray, balance: bool, per_class: int | None, seed: int, num_classes: int, names_: list[str]) -> np.ndarray | None:
    """Positions (sorted) keeping ≤ per_class per class, or exactly the same count per class when balancing."""
    if not balance and per_class is None:
        return None
    counts = np.bincount(y, minlength=num_classes)
    if balance:
        empty = [names_[c] for c in range(num_classes) if counts[c] == 0]
        if empty:
            raise ValueCheckError(
                f"cannot balance: class(es) {', '.join(empty)} have no samples in this split (counts {counts.tolist()}); "
                f"use a larger split or fewer classes"
            )
        k = int(counts.min()) if per_class is None else min(int(counts.min()), per_class)
        take = np.full(num_classes, k)
    else:
        take = np.minimum(counts, per_class)
    gen = rng(seed, STREAM_SUBSAMPLE)
    keep = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        perm = gen.permutation(members.shape[0])  # drawn for every class so one class's size does not shift others
        keep.append(members[perm[: take[c]]])
    return np.sort(np.concatenate(keep))


# --------------------------------------------------------------------------- reductions


def label_array(labels: Any, num_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Class indices as a 1-D int64 numpy array, from a tensor (any integer dtype, e.g. uint8), array or list.

    Float, bool or complex values, another shape, negative values or values ≥ ``num_classes`` are a
    :class:`ValueCheckError` that says what to pass instead.
    """
    if isinstance(labels, torch.Tensor):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueCheckError(f"{name} must hold integer class indices, got dtype {labels.dtype}; use {name}.long()")
        y = labels.detach().cpu().long().numpy()
    else:
        try:
            y = np.asarray(labels)
        except (TypeError, ValueError) as exc:
            raise ValueCheckError(f"{name} must be a sequence of integer class indices ({exc})") from None
        if y.dtype.kind not in "iu":
            raise ValueCheckError(
                f"{name} must hold integer class indices, got {y.dtype} values; pass e.g. a list of ints or a "
                f"torch.long tensor")
        y = y.astype(np.int64)
    if y.ndim != 1:
        raise ValueCheckError(f"{name} must be 1-D (N,), got shape {tuple(y.shape)}")
    if y.size and int(y.min()) < 0:
        raise ValueCheckError(f"{name} must be class indices ≥ 0, found {int(y.min())}")
    if num_classes is not None and y.size and int(y.max()) >= num_classes:
        raise ValueCheckError(f"{name} must lie in 0..{num_classes - 1} (M = {num_classes}), found {int(y.max())}; "
                              f"remap the labels or pass the right number of classes")
    return y


def stratified_holdout(labels: Any, fraction: float, seed: int,
                       num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (kept, held out) of a label set, ``round(fraction · N)`` held out by :func:`stratified_pick`.

    ``labels``: a tensor of any integer dtype (uint8 too), an integer array or a list.  Both index
    tensors are sorted and disjoint and together cover every row; ``fraction`` lies in [0, 1).  The
    choice is deterministic in ``seed``.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueCheckError(f"the held-out fraction must lie in [0, 1), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueCheckError(f"seed must be an integer (e.g. seed=0), got {seed!r}")
    y = label_array(labels, num_classes)
    M = int(num_classes) if num_classes is not None else (int(y.max()) + 1 if y.size else 0)
    size = int(round(fraction * y.shape[0]))
    if fraction > 0 and y.shape[0] > 1:
        size = max(size, 1)  # a positive fraction holds out at least one row
    held = stratified_pick(y, size, rng(seed, STREAM_HOLDOUT), M) if size else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(y.shape[0]), held)
    return torch.from_numpy(kept.astype(np.int64)), torch.from_numpy(held.astype(np.int64))
