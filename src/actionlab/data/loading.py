"""One call, :func:`load`: a split of a data set, preprocessed as a :class:`LoadSpec` says, as ``Dataset(z, labels)``.

The order of the steps (each recorded in ``Dataset.info``): read the source
(:mod:`~actionlab.data.sources`), choose the split's rows
(:mod:`~actionlab.data.splits`), keep at most ``per_class`` per class and/or
balance the classes, then reduce and standardise with maps fitted on the
train split loaded with the same spec (:mod:`~actionlab.data.transforms`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionlab._checks import ValueCheckError, check_choice
from actionlab.config import resolve_device
from actionlab.data import sources as _src
from actionlab.data import splits as _splits
from actionlab.data.catalog import REDUCTIONS, SPLITS, STANDARDIZE, canonical
from actionlab.data.dataset import Dataset
from actionlab.data.transforms import Transform, byte_chunks, tensor_chunks

__all__ = ["LoadSpec", "load"]


def _positive_int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value or value < 1:
        raise ValueCheckError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class LoadSpec:
    """How a split is prepared: class subsampling, reduction, standardisation, validation size, seed, dtype.

    balance: subsample every class to the same count (the smallest class count,
    or ``per_class`` if smaller) so that p(m) = 1/M exactly (000, after eq. (3));
    per_class: at most n samples per class (a seeded random subset);
    standardize: ``none`` | ``centre`` (``center`` accepted) | ``zscore``;
    reduce / dim: ``pca`` | ``random`` | ``pool`` to E' = dim, or None;
    seed: splits, subsampling and the random projection;
    dtype: of z (float32 default; half types are computed in float32 and cast);
    validation: the validation split's size (a count, or a fraction in (0, 1)),
    held out of the official train file (digits: of all 1797); None = the data
    set's default (10,000 MNIST / Fashion-MNIST, 5,000 CIFAR-10, 10 % digits);
    0 = no validation split, "train" is then the whole official train file.
    "train" never contains the validation rows (:mod:`~actionlab.data.splits`).
    """

    balance: bool = False
    per_class: int | None = None
    standardize: str = "none"
    reduce: str | None = None
    dim: int | None = None
    seed: int = 0
    dtype: torch.dtype = torch.float32
    validation: int | float | None = None

    def __post_init__(self) -> None:
        std = "centre" if self.standardize == "center" else self.standardize
        check_choice(std, STANDARDIZE, "standardize option")
        object.__setattr__(self, "standardize", std)
        if self.reduce is not None:
            check_choice(self.reduce, REDUCTIONS, "reduction")
            if self.dim is None or isinstance(self.dim, bool) or int(self.dim) != self.dim or self.dim < 1:
                raise ValueCheckError(
                    f"reduce={self.reduce!r} needs a positive integer dim (the new embedding dimension E'), got {self.dim!r}")
            object.__setattr__(self, "dim", int(self.dim))
        elif self.dim is not None:
            raise ValueCheckError(f"dim = {self.dim} given without reduce; pass reduce='pca', 'random' or 'pool' as well")
        object.__setattr__(self, "per_class", _positive_int_or_none(self.per_class, "per_class"))
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ValueCheckError(f"dtype must be a torch floating dtype such as torch.float32, got {self.dtype!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueCheckError(
                f"seed must be an integer (e.g. seed=0), got {self.seed!r} ({type(self.seed).__name__})")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "balance", bool(self.balance))

    def replace(self, **changes: Any) -> LoadSpec:
        """A copy with some fields changed (unknown names are an error listing the fields)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueCheckError(
                f"unknown load option(s) {', '.join(sorted(unknown))}; the options are "
                f"{', '.join(f.name for f in dataclasses.fields(self))} (and root, download, device)")
        return dataclasses.replace(self, **changes)


def _prepared_rows(name: str, split: str, spec: LoadSpec, root, download, verify: bool = True):
    """(source, rows of the source for this split after subsampling, split info)."""
    part = "test" if split == "test" else "train"
    src = _src.read_source(name, part, root, download, verify)
    if name == "digits":
        rows, info = _splits.split_rows(name, split, src.y, spec.seed, spec.validation)
        if root is not None:
            info["root_ignored"] = "digits is bundled with scikit-learn; root applies to the file-based sets"
    elif split == "test":
        rows, info = np.arange(src.y.shape[0]), {"split_rule": "the official test file"}
    else:
        rows, info = _splits.split_rows(name, split, src.y, spec.seed, spec.validation)
    keep = _splits.subsample(src.y[rows], spec.balance, spec.per_class, spec.seed, 10, src.class_names)
    if keep is not None:
        rows = rows[keep]
    if rows.size == 0:
        raise ValueCheckError(
            f"{name} {split}: no samples left after the options (per_class={spec.per_class}, balance={spec.balance})")
    return src, rows, info


def _device(device) -> torch.device | None:
    """The device ``z`` and ``labels`` go to (None: stay on the CPU); an unavailable one is a named error."""
    if device is None:
        return None
    try:
        return resolve_device(device)
    except ValueCheckError as exc:
        raise ValueCheckError(f"load(device={str(device)!r}): {exc}") from None


def _fitted_transform(name, split, spec, root, download, src, z, work, verify) -> tuple[Transform, str | None]:
    tf = Transform(spec.reduce, spec.dim, spec.standardize, src.image_shape, spec.seed, src.x.shape[1])
    if not tf.needs_fit():
        return tf, None
    if split == "train":
        tf.fit(tensor_chunks(z))
        return tf, "this train split"
    tsrc, trows, _ = _prepared_rows(name, "train", spec, root, download, verify)
    tf.fit(lambda: byte_chunks(tsrc.x, trows, tsrc.scale, work))
    return tf, f"the train split loaded with the same options (N = {trows.size})"


def load(
    name: str = "digits",
    split: str = "train",
    spec: LoadSpec | None = None,
    *,
    root: str | Path | None = None,
    download: bool | None = None,
    device: str | torch.device | None = None,
    verify: bool = True,
    **options: Any,
) -> Dataset:
    """Load one split of a data set as ``Dataset(z, labels)``; :mod:`actionlab.data` details every option.

    name: ``digits`` | ``fashion-mnist`` | ``mnist`` | ``cifar10``; split: ``train`` | ``validation`` | ``test``;
    spec: a :class:`LoadSpec`; keyword ``options`` (any LoadSpec field: balance, per_class, standardize,
    reduce, dim, seed, dtype, validation) replace the spec's fields; root: the folder to read (only
    there); download: None = download into the cache when no ``root`` is given and the files are
    nowhere, True = also into ``root``, False = never; device: where ``z`` and ``labels`` go (cpu, cuda,
    cuda:N, mps or auto; one that is not available is an error); verify: check each file against its
    official digest once (:mod:`~actionlab.data.verify`; False = use the files as they are).

    The three splits are disjoint: "train" is the official train file minus the "validation"
    hold-out (``validation=``, default 10,000 for MNIST), "test" the official test file.

    Examples::

        ds = load("fashion-mnist", "test")                    # 10000 x 784, pixels in [0, 1]
        tr = load("mnist", "train")                           # 50000: the official 60000 minus validation
        va = load("mnist", "validation")                      # the other 10000, disjoint from tr
        full = load("mnist", "train", validation=0)           # all 60000 (no validation split)
        d = load("digits", balance=True, standardize="zscore", reduce="pca", dim=16)
        s = LoadSpec(per_class=100, standardize="zscore"); load("mnist", "test", s)
    """
    name = canonical(name)
    check_choice(split, SPLITS, "split")
    if spec is not None and not isinstance(spec, LoadSpec):
        raise ValueCheckError(
            f"the third argument of load is a LoadSpec, got {type(spec).__name__} {spec!r}; pass the folder as root=...")
    spec = (spec or LoadSpec()).replace(**options) if options else (spec or LoadSpec())
    if not isinstance(verify, bool):
        raise ValueCheckError(f"verify must be True or False, got {verify!r}")
    target = _device(device)  # before reading anything
    src, rows, split_info = _prepared_rows(name, split, spec, root, download, verify)
    E = src.x.shape[1]
    work = spec.dtype if spec.dtype in (torch.float32, torch.float64) else torch.float32
    z = torch.from_numpy(src.x[rows]).to(work).div_(src.scale)
    labels = torch.from_numpy(src.y[rows]).long()
    tf, stats_from = _fitted_transform(name, split, spec, root, download, src, z, work, verify)
    z = tf.apply_all(z)
    if work != spec.dtype:
        z = z.to(spec.dtype)
    if target is not None:
        z, labels = z.to(target), labels.to(target)
    info: dict[str, Any] = {
        "name": name, "split": split, "n": int(z.shape[0]), "E": int(z.shape[1]), "num_classes": 10,
        "counts": np.bincount(src.y[rows], minlength=10).tolist(), "seed": spec.seed, "validation": spec.validation,
        **split_info,
        "balance": spec.balance, "per_class": spec.per_class, "standardize": spec.standardize,
        "reduce": spec.reduce, "dim": spec.dim, "dtype": str(spec.dtype).replace("torch.", ""),
        "pixel_scale": f"x / {src.scale:g} in [0, 1]", "image_shape": list(src.image_shape), "original_E": int(E),
        **src.where, **tf.info,
    }
    if stats_from:
        info["fitted_on"] = stats_from
    return Dataset(z, labels, 10, list(src.class_names), name, split, info, torch.from_numpy(rows.astype(np.int64)),
                   check_finite=False)
