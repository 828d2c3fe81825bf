"""Data sets as ``Dataset(z, labels)``: loading, checksums, splits, balancing, embeddings.

One call, :func:`load`, gives the embedding vectors ``z`` (N × E float tensor,
pixels scaled to [0, 1]) and the labels ``m`` (N long tensor) of

=================  ==========================================  ============  ======
name               source                                      N train/test  E
=================  ==========================================  ============  ======
``digits``         scikit-learn's bundled 8×8 digits (offline)  1797 in all   64
``fashion-mnist``  IDX gzip files (Zalando), 28×28 grey         60000/10000   784
``mnist``          IDX gzip files (LeCun et al.), 28×28 grey    60000/10000   784
``cifar10``        official python batches, 32×32×3 colour      50000/10000   3072
=================  ==========================================  ============  ======

The empirical distribution p(z, m) of the notes (000, eq. (1) ff.) is the
uniform measure on the returned rows; the expansion of the action at θ = 0
assumes balanced classes, p(m) = Σ_z p(z, m) = 1/M (000, the line after
eq. (3)), which ``balance=True`` makes exact and :func:`balance_report`
measures.

Where the files are found (first hit wins)
------------------------------------------
1. ``root=DIR`` when given — then *only* there (a missing file is an error
   naming the paths; ``download=True`` fetches into ``DIR``);
2. ``$ACTIONLAB_DATA``;
3. ``../shared/data`` next to the repository (found from the package's own
   location and from the current directory);
4. the download cache (``$ACTIONLAB_DATA`` if set, else ``~/.cache/actionlab``),
   downloading from the official source when the files are not there yet
   (md5 verified, and sha256 for MNIST / Fashion-MNIST; a mismatch deletes the
   file and is an error; ``download=False`` forbids downloading).

Inside a root both layouts are accepted: ``root/fashion-mnist/*.gz`` and
``root/*.gz`` (also ``root/FashionMNIST/raw`` and ``root/MNIST/raw``, the
torchvision layout), gzip-compressed or uncompressed IDX files.  CIFAR-10 is
read from ``root/cifar-10-batches-py/`` (or ``root/cifar10/cifar-10-batches-py/``
or ``root/`` itself).

Splits
------
* ``digits`` has no official split: a stratified split from the seed gives
  test = 20 % (359 of 1797), validation = 10 % (180, or ``validation=``) and
  train = the rest (1258); the three are always disjoint.
* ``fashion-mnist``, ``mnist``, ``cifar10``: "train" and "test" are the official
  files.  "validation" is carved from the official train set, stratified by
  class and deterministic in ``seed``; its size is ``validation=`` (a count, or
  a fraction in (0, 1)) or by default 10,000 (MNIST, Fashion-MNIST) / 5,000
  (CIFAR-10).  **"train" excludes the validation rows only when you pass
  ``validation=``**: ``load("mnist", "train", validation=10000)`` returns the
  other 50,000 (the RNGD split 50,000 / 10,000 / 10,000), while
  ``load("mnist", "train")`` is the full official 60,000 and overlaps
  ``load("mnist", "validation")``.  ``info["train_includes_validation"]`` says
  which case you have.  For ``split="validation"`` without ``validation=``, the
  statistics of ``standardize`` / ``reduce`` come from that full train file
  (which contains the validation rows); pass ``validation=`` to keep them apart.

Options (applied in this order, each recorded in ``Dataset.info``)
------------------------------------------------------------------
* ``per_class=n``: at most n samples per class (a seeded random subset).
* ``balance=True``: subsample every class to the same count (the smallest
  class count, or ``per_class`` if smaller) so that p(m) = 1/M exactly.
* ``reduce`` to E' = ``dim``, fitted on the train split loaded with the same
  options so that validation and test use the *same* map:

  - ``"pca"``: z ↦ (z − μ) V, V the top-``dim`` eigenvectors of the train
    covariance (streamed in chunks, accumulated in float64, ``eigh``), i.e. scikit-learn's ``PCA(dim).transform`` with the
    sign of each component fixed so its largest-|·| loading is positive;
  - ``"random"``: z ↦ z R, R_{jk} ~ N(0, 1/dim) i.i.d. from the seed (a
    Johnson–Lindenstrauss map: E‖zR‖² = ‖z‖²);
  - ``"pool"``: average pooling of the image (8×8, 28×28 or 3×32×32) to
    s × s (adaptive pooling when s does not divide the side), so ``dim`` must
    be C·s² — 1, 4, 9, …, 784 for MNIST, 1, 4, …, 64 for digits and
    3, 12, …, 3072 for CIFAR-10 (the error lists the nearest allowed values).
* ``standardize`` (after the reduction, statistics from the train split with
  the same options, population std):

  - ``"none"``: pixels in [0, 1] (or the reduced coordinates);
  - ``"centre"``: z_j − μ_j (``"center"`` is accepted);
  - ``"zscore"``: (z_j − μ_j)/σ_j; coordinates that are constant in the train
    split (σ_j ≤ 1e-8, e.g. MNIST's always-black corner pixels) carry no
    information and are set to 0 in every split instead of dividing by 0.

Memory: a file is decompressed once into a uint8 array (kept in a small
in-process cache, :func:`clear_cache`), and only the selected rows are
converted to the requested float dtype (float32 by default) — a
60000 × 784 float64 copy is never made unless you ask for ``dtype=float64``.
Every problem with a file (missing, corrupt gzip, truncated, wrong IDX magic,
header/payload size mismatch, labels out of range, image/label count
mismatch) raises :class:`~actionlab._checks.DataError` naming the file and
what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import struct
import tarfile
import urllib.request
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionlab._checks import DataError, ShapeError, ValueCheckError, check_choice, check_float, check_labels, check_matrix

__all__ = [
    "Dataset",
    "BalanceReport",
    "load",
    "names",
    "balance_report",
    "check_balanced",
    "clear_cache",
    "data_roots",
    "SPLITS",
    "STANDARDIZE",
    "REDUCTIONS",
]

SPLITS = ("train", "validation", "test")
STANDARDIZE = ("none", "centre", "zscore")
REDUCTIONS = ("pca", "random", "pool")

#: coordinates whose train-split std is at most this are treated as constant by zscore
ZERO_STD = 1e-8

_ALIASES = {
    "digits": "digits",
    "sklearn-digits": "digits",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}


def names() -> list[str]:
    """The data set names :func:`load` knows (aliases such as ``fashion_mnist`` are accepted too)."""
    return ["digits", "fashion-mnist", "mnist", "cifar10"]


_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_DIGIT_CLASSES = tuple(str(i) for i in range(10))

# (file name, md5, sha256): md5 from torchvision/datasets/mnist.py and cifar.py, sha256 from
# torchvision's prototype _CHECKSUMS table; both agree with ../shared/data/README.md.
_IDX_FILES: dict[str, dict[str, tuple[str, str, str | None]]] = {
    "fashion-mnist": {
        "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
    "mnist": {
        "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
}
_CIFAR_ARCHIVE = ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", None)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)

#: base URLs tried in order (a file's URL is base + file name)
MIRRORS: dict[str, list[str]] = {
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}

# sub-folders of a root that may hold a data set (then the root itself)
_SUBDIRS = {
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "mnist": ("mnist", "MNIST/raw"),
    "cifar10": (_CIFAR_DIR, f"cifar10/{_CIFAR_DIR}", f"cifar-10/{_CIFAR_DIR}"),
}
_DEFAULT_VALIDATION = {"digits": 0.1, "fashion-mnist": 10000, "mnist": 10000, "cifar10": 5000}
_DIGITS_TEST_FRACTION = 0.2

# seed streams: one seed, independent streams for each random choice
_STREAM_SPLIT, _STREAM_SUBSAMPLE, _STREAM_PROJECTION = 1, 2, 3


# --------------------------------------------------------------------------- results


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
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueCheckError(f"labels must hold integer class indices, got dtype {labels.dtype}; use labels.long()")
    if num_classes is None:
        if int(labels.min()) < 0:
            raise ValueCheckError(f"labels must be ≥ 0, found {int(labels.min())}")
        num_classes = int(labels.max()) + 1
    check_labels(labels, num_classes)
    return labels.long(), int(num_classes)


def balance_report(labels: Any, num_classes: int | None = None) -> BalanceReport:
    """Counts, proportions, max |p(m) − 1/M| and KL(p ‖ uniform) of a label set.

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


# --------------------------------------------------------------------------- file reading

_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_MAX = 8


def clear_cache() -> None:
    """Forget the decompressed files kept in memory."""
    _CACHE.clear()


def _cached(path: Path, kind: str, reader):
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, kind)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = reader(path)
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.popitem(last=False)
    return value


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip (by its magic bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            if path.suffix == ".gz":
                raise DataError(
                    f"{path}: the name ends in .gz but the file is not gzip-compressed (it starts with {head!r}, "
                    f"not 1f 8b); it is corrupt or mislabelled — delete it and download it again"
                )
            return f.read()
    except EOFError as exc:
        raise DataError(
            f"{path}: the gzip stream is truncated ({exc}); the file was cut short (incomplete download or copy) — "
            f"delete it and download it again"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc}); delete the file and download it again") from None
    except OSError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read ({exc})") from None


def _read_idx(path: Path, ndim: int, kind: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions (1: labels, 3: images)."""
    raw = _read_bytes(path)
    expected = 0x0800 | ndim
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes after decompression, too short for an IDX header; the file is truncated")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected:
        raise DataError(
            f"{path}: IDX magic number is 0x{magic:08x} but an IDX {kind} file starts with 0x{expected:08x}; "
            f"this is not a {kind} file (wrong file in its place, or corrupt)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: the IDX header is cut short ({len(raw)} of {header} bytes); the file is truncated")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    need = int(np.prod(dims, dtype=np.int64))
    have = len(raw) - header
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise DataError(
            f"{path}: the IDX header announces {' x '.join(map(str, dims))} = {need} bytes of data but the file holds "
            f"{have} ({what}); delete it and download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, count=need, offset=header).reshape(dims)


def _read_idx_pair(images_path: Path, labels_path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    def read_images(p: Path) -> np.ndarray:
        a = _read_idx(p, 3, "images")
        if a.shape[1:] != (28, 28):
            raise DataError(f"{p}: images are {a.shape[1]}x{a.shape[2]} but MNIST-style images are 28x28")
        return a.reshape(a.shape[0], 784)

    def read_labels(p: Path) -> np.ndarray:
        a = _read_idx(p, 1, "labels")
        if a.size and int(a.max()) >= num_classes:
            bad = int(np.argmax(a >= num_classes))
            raise DataError(
                f"{p}: label {int(a[bad])} at index {bad} is out of range; labels must lie in 0..{num_classes - 1} "
                f"(the file is corrupt or not a labels file of this data set)"
            )
        return a

    x = _cached(images_path, "idx-images", read_images)
    y = _cached(labels_path, "idx-labels", read_labels)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{images_path} holds {x.shape[0]} images but {labels_path} holds {y.shape[0]} labels; "
            f"the two files do not belong together (mixed versions or a truncated file)"
        )
    return x, y


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches, allowing only the numpy constructors they need (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(
            f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc}); the file is truncated or "
            f"corrupt — delete it and download it again"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: a CIFAR-10 batch is a pickled dict, got {type(d).__name__}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path}: a CIFAR-10 batch needs keys 'data' and 'labels', found {sorted(map(str, d))}")
    x = np.asarray(d["data"])
    y = np.asarray(d["labels"])
    if x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{path}: 'data' has shape {x.shape} but CIFAR-10 rows are 3072 = 3x32x32 bytes")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.integer) or (x.size and (x.min() < 0 or x.max() > 255)):
            raise DataError(f"{path}: 'data' must hold bytes 0..255, got dtype {x.dtype}")
        x = x.astype(np.uint8)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: {x.shape[0]} images but {y.size} labels; the batch is corrupt")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels must lie in 0..9, found {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def _read_cifar_meta(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return list(_CIFAR_CLASSES)
    try:
        with open(meta, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
        names_ = d.get(b"label_names", d.get("label_names"))
        names_ = [n.decode() if isinstance(n, bytes) else str(n) for n in names_]
    except Exception as exc:  # noqa: BLE001 - any failure is a corrupt meta file
        raise DataError(f"{meta}: not a readable CIFAR-10 batches.meta ({type(exc).__name__}: {exc})") from None
    if len(names_) != 10:
        raise DataError(f"{meta}: label_names has {len(names_)} entries, CIFAR-10 has 10 classes")
    return names_


# --------------------------------------------------------------------------- locating files


def _repo_shared_roots() -> list[Path]:
    """``../shared/data`` of the repository holding this package, and relative to the current directory."""
    out: list[Path] = []
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for p in (start, *start.parents):
            if (p / "src" / "actionlab").is_dir():
                out.append(p.parent / "shared" / "data")
                break
    out.append(Path.cwd().resolve().parent / "shared" / "data")
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def _cache_root() -> Path:
    env = os.environ.get("ACTIONLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "actionlab"


def data_roots(root: str | Path | None = None) -> list[tuple[Path, str]]:
    """The folders searched, in order, with how each was chosen."""
    if root is not None:
        return [(Path(root).expanduser(), "explicit root")]
    roots: list[tuple[Path, str]] = []
    env = os.environ.get("ACTIONLAB_DATA")
    if env:
        roots.append((Path(env).expanduser(), "$ACTIONLAB_DATA"))
    for p in _repo_shared_roots():
        roots.append((p, "shared data folder"))
    if not env:
        roots.append((_cache_root(), "download cache"))
    return roots


def _idx_variants(gz_name: str) -> list[str]:
    base = gz_name[:-3]
    dotted = base.replace("-idx", ".idx")  # the original LeCun names: train-images.idx3-ubyte
    return [gz_name, base, dotted + ".gz", dotted]


def _find_idx(name: str, keys: Sequence[str], root: Path) -> tuple[dict[str, Path] | None, list[str]]:
    """Look for the files ``keys`` in root's sub-folders, then root; all from one folder."""
    looked: list[str] = []
    for folder in [root / s for s in _SUBDIRS[name]] + [root]:
        looked.append(str(folder))
        if not folder.is_dir():
            looked[-1] += " (no such folder)"
            continue
        found: dict[str, Path] = {}
        for key in keys:
            for fname in _idx_variants(_IDX_FILES[name][key][0]):
                if (folder / fname).is_file():
                    found[key] = folder / fname
                    break
        if len(found) == len(keys):
            return found, looked
        if found:
            missing = [_IDX_FILES[name][k][0] for k in keys if k not in found]
            looked[-1] += f" (has {', '.join(p.name for p in found.values())} but not {', '.join(missing)})"
    return None, looked


def _find_cifar(files: Sequence[str], root: Path) -> tuple[Path | None, list[str]]:
    looked: list[str] = []
    for folder in [root / s for s in _SUBDIRS["cifar10"]] + [root]:
        looked.append(str(folder) + ("" if folder.is_dir() else " (no such folder)"))
        if folder.is_dir():
            present = [f for f in files if (folder / f).is_file()]
            if len(present) == len(files):
                return folder, looked
            if present:
                looked[-1] += f" (has {', '.join(present)} but not {', '.join(f for f in files if f not in present)})"
    return None, looked


def _missing_error(name: str, what: str, looked: list[str], explicit: bool, download_note: str) -> DataError:
    fix = (
        "pass root=DIR (--root DIR) pointing to a folder that holds them (directly or in a "
        f"'{_SUBDIRS[name][0]}' sub-folder), or set ACTIONLAB_DATA=DIR"
    )
    if explicit:
        fix += ", or pass download=True (--download) to fetch them into that root"
    return DataError(f"{name}: {what} not found; looked in: {'; '.join(looked)}. Fix: {fix}. {download_note}".strip())


# --------------------------------------------------------------------------- download


def _fetch(url: str, dest: Path) -> None:
    """Copy ``url`` (http(s):// or file://) to ``dest`` with a progress bar."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - official URLs / file:// in tests
        total = r.headers.get("Content-Length") if hasattr(r, "headers") else None
        with open(dest, "wb") as f, tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                                         desc=dest.name, disable=None, leave=False) as bar:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_file(name: str, fname: str, md5: str, sha256: str | None, folder: Path) -> Path:
    """Fetch one file from the mirrors into ``folder``, verifying md5 (and sha256); all failures in one error."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / fname
    tmp = folder / (fname + ".part")
    problems: list[str] = []
    for base in MIRRORS[name]:
        url = base + fname
        try:
            _fetch(url, tmp)
        except Exception as exc:  # noqa: BLE001 - network errors of any kind: try the next mirror
            problems.append(f"{url}: {type(exc).__name__}: {exc}")
            tmp.unlink(missing_ok=True)
            continue
        got_md5 = _digest(tmp, "md5")
        got_sha = _digest(tmp, "sha256") if sha256 else None
        if got_md5 != md5 or (sha256 and got_sha != sha256):
            problems.append(
                f"{url}: checksum mismatch (md5 {got_md5}, expected {md5}"
                + (f"; sha256 {got_sha}, expected {sha256}" if sha256 else "")
                + ")"
            )
            tmp.unlink(missing_ok=True)
            continue
        tmp.replace(target)
        return target
    raise DataError(
        f"{name}: could not download {fname} into {folder}: " + " | ".join(problems)
        + ". Fix: download it by hand from the official source and pass root=DIR or set ACTIONLAB_DATA=DIR"
    )


def _download_idx(name: str, keys: Sequence[str], target_root: Path) -> dict[str, Path]:
    folder = target_root / _SUBDIRS[name][0]
    out = {}
    for key in keys:
        fname, md5, sha = _IDX_FILES[name][key]
        out[key] = folder / fname if (folder / fname).is_file() else _download_file(name, fname, md5, sha, folder)
    return out


def _download_cifar(target_root: Path) -> Path:
    fname, md5, sha = _CIFAR_ARCHIVE
    archive = _download_file("cifar10", fname, md5, sha, target_root)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target_root, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(target_root)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: cannot be extracted ({exc}); delete it and try again") from None
    archive.unlink(missing_ok=True)
    return target_root / _CIFAR_DIR


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    x: np.ndarray  # uint8, N × E (rows in the image's C, H, W order)
    y: np.ndarray  # int64 labels
    scale: float  # x / scale is in [0, 1]
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: list[str]
    where: dict  # provenance of the files


def _locate_and_read_idx(name: str, part: str, root, download: bool | None) -> _Source:
    keys = (f"{part}_images", f"{part}_labels")
    looked: list[str] = []
    explicit = root is not None
    for r, how in data_roots(root):
        found, l = _find_idx(name, keys, r)
        looked += l
        if found:
            x, y = _read_idx_pair(found[keys[0]], found[keys[1]])
            return _source_idx(name, x, y, found, keys, r, how)
    allow = (not explicit) if download is None else bool(download)
    if allow:
        target = Path(root).expanduser() if explicit else _cache_root()
        found = _download_idx(name, keys, target)
        x, y = _read_idx_pair(found[keys[0]], found[keys[1]])
        return _source_idx(name, x, y, found, keys, target, "downloaded")
    note = "Downloading was not allowed (download=False)." if download is False else ""
    files = " and ".join(_IDX_FILES[name][k][0].removesuffix(".gz") + "[.gz]" for k in keys)
    raise _missing_error(name, files, looked, explicit, note)


def _source_idx(name, x, y, found, keys, r, how) -> _Source:
    classes = list(_FASHION_CLASSES) if name == "fashion-mnist" else list(_DIGIT_CLASSES)
    where = {"root": str(r), "found_via": how, "files": [str(found[k]) for k in keys]}
    return _Source(x, y.astype(np.int64), 255.0, (1, 28, 28), classes, where)


def _locate_and_read_cifar(part: str, root, download: bool | None) -> _Source:
    files = _CIFAR_TRAIN if part == "train" else _CIFAR_TEST
    looked: list[str] = []
    explicit = root is not None
    folder = None
    how = ""
    for r, h in data_roots(root):
        folder, l = _find_cifar(files, r)
        looked += l
        if folder is not None:
            how = h
            break
    if folder is None:
        allow = (not explicit) if download is None else bool(download)
        if not allow:
            note = "Downloading was not allowed (download=False)." if download is False else ""
            raise _missing_error("cifar10", ", ".join(files), looked, explicit, note)
        folder = _download_cifar(Path(root).expanduser() if explicit else _cache_root())
        how = "downloaded"
    parts = [_cached(folder / f, "cifar-batch", _read_cifar_batch) for f in files]
    x = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    y = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    where = {"root": str(folder), "found_via": how, "files": [str(folder / f) for f in files]}
    return _Source(x, y, 255.0, (3, 32, 32), _read_cifar_meta(folder), where)


def _digits_source() -> _Source:
    def read(_):
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data.astype(np.uint8), d.target.astype(np.int64)

    key = ("sklearn-digits",)
    if key not in _CACHE:
        _CACHE[key] = read(None)
    x, y = _CACHE[key]
    return _Source(x, y, 16.0, (1, 8, 8), list(_DIGIT_CLASSES), {"source": "sklearn.datasets.load_digits"})


# --------------------------------------------------------------------------- splits and subsampling


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % (2**63), stream])


def _stratified_pick(y: np.ndarray, size: int, rng: np.random.Generator, num_classes: int) -> np.ndarray:
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
            picked.append(members[rng.permutation(members.shape[0])[: base[c]]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _validation_size(validation: int | float | None, default: int | float, n: int) -> int:
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


def _split_rows(name: str, split: str, src_train_y: np.ndarray, seed: int, validation) -> tuple[np.ndarray, dict]:
    """Rows of the source for ``split`` (the source is the official train file, or all digits)."""
    M = 10
    n = src_train_y.shape[0]
    info: dict[str, Any] = {}
    if name == "digits":
        rng = _rng(seed, _STREAM_SPLIT)
        n_test = int(round(_DIGITS_TEST_FRACTION * n))
        test = _stratified_pick(src_train_y, n_test, rng, M)
        rest = np.setdiff1d(np.arange(n), test)
        n_val = _validation_size(validation, _DEFAULT_VALIDATION["digits"], n)  # a fraction is of all 1797
        if n_val >= rest.shape[0]:
            raise ValueCheckError(f"validation = {n_val} leaves no training samples (only {rest.shape[0]} are not in the test split)")
        val = rest[_stratified_pick(src_train_y[rest], n_val, rng, M)] if n_val else np.zeros(0, np.int64)
        train = np.setdiff1d(rest, val)
        info.update(split_sizes={"train": int(train.size), "validation": int(val.size), "test": int(test.size)},
                    split_rule="stratified by class from the seed: test 20%, validation 10% (or validation=), train the rest")
        rows = {"train": train, "validation": val, "test": test}[split]
        if split == "validation" and rows.size == 0:
            raise ValueCheckError("validation = 0 leaves no validation split; pass validation > 0")
        return rows, info
    if split == "test":
        raise AssertionError("official test split is not carved")  # pragma: no cover
    if split == "train" and validation is None:
        info.update(train_includes_validation=True, validation_size=None)
        return np.arange(n), info
    n_val = _validation_size(validation, _DEFAULT_VALIDATION[name], n)
    if split == "validation" and n_val == 0:
        raise ValueCheckError("validation = 0 leaves no validation split; pass validation > 0")
    val = _stratified_pick(src_train_y, n_val, _rng(seed, _STREAM_SPLIT), M) if n_val else np.zeros(0, np.int64)
    info["validation_size"] = int(n_val)
    if split == "validation":
        info["validation_rule"] = "stratified by class from the official train file, from the seed"
        info["train_includes_validation"] = validation is None
        return val, info
    info["train_includes_validation"] = False
    return np.setdiff1d(np.arange(n), val), info


def _subsample(y: np.ndarray, balance: bool, per_class: int | None, seed: int, num_classes: int, names_: list[str]) -> np.ndarray | None:
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
    rng = _rng(seed, _STREAM_SUBSAMPLE)
    keep = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        perm = rng.permutation(members.shape[0])  # drawn for every class so one class's size does not shift others
        keep.append(members[perm[: take[c]]])
    return np.sort(np.concatenate(keep))


# --------------------------------------------------------------------------- reductions


def _pool_side(dim: int, shape: tuple[int, int, int]) -> int:
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


def _chunks(x: np.ndarray, rows: np.ndarray, scale: float, dtype: torch.dtype, size: int = 8192):
    for i in range(0, rows.shape[0], size):
        yield torch.from_numpy(x[rows[i:i + size]]).to(dtype).div_(scale)


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


class _Transform:
    """The fitted map z ↦ standardize(reduce(z)); fitted on the train split, applied to any split."""

    def __init__(self, reduce: str | None, dim: int | None, standardize: str, image_shape, seed: int, E: int):
        self.reduce, self.dim, self.standardize, self.image_shape = reduce, dim, standardize, image_shape
        self.seed, self.E = seed, E
        self.info: dict[str, Any] = {}
        self.proj: torch.Tensor | None = None  # E × dim (pca, random), float64
        self.pca_mean: torch.Tensor | None = None
        self.mu: torch.Tensor | None = None
        self.inv_sigma: torch.Tensor | None = None
        self.side = None
        if reduce == "pool":
            self.side = _pool_side(dim, image_shape)
            self.info["pool_side"] = self.side
        if reduce == "random":
            g = _rng(seed, _STREAM_PROJECTION)
            self.proj = torch.from_numpy(g.standard_normal((E, dim)) / math.sqrt(dim))
            self.info["projection"] = "R_jk ~ N(0, 1/dim) from the seed; z -> z R"

    def needs_fit(self) -> bool:
        return self.reduce == "pca" or self.standardize != "none"

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce is None:
            return x
        if self.reduce == "pool":
            C, H, W = self.image_shape
            y = torch.nn.functional.adaptive_avg_pool2d(x.reshape(-1, C, H, W), self.side)
            return y.reshape(x.shape[0], -1)
        if self.reduce == "pca":
            return (x - self.pca_mean.to(x.dtype)) @ self.proj.to(x.dtype)
        return x @ self.proj.to(x.dtype)

    def fit(self, chunk_factory) -> None:
        """``chunk_factory()`` yields the train split's [0,1]-scaled rows in chunks."""
        if self.reduce == "pca":
            mom = _Moments(full=True)
            for ch in chunk_factory():
                mom.add(ch)
            if self.dim > min(self.E, mom.n):
                raise ValueCheckError(f"reduce='pca' with dim = {self.dim} needs dim ≤ min(E, N_train) = {min(self.E, mom.n)}")
            cov = mom.m2 / mom.n
            evals, evecs = torch.linalg.eigh(cov)
            order = torch.argsort(evals, descending=True)[: self.dim]
            V = evecs[:, order]
            # sign convention (scikit-learn's svd_flip on components): the largest-|.| loading is positive
            idx = V.abs().argmax(0)
            signs = torch.sign(V[idx, torch.arange(V.shape[1])])
            signs[signs == 0] = 1
            self.proj = V * signs
            self.pca_mean = mom.mean
            total = float(evals.clamp_min(0).sum())
            kept = float(evals[order].clamp_min(0).sum())
            self.info["pca_explained_variance_ratio"] = kept / total if total > 0 else 1.0
            self.info["pca_fitted_on_n"] = mom.n
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

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        y = self._reduce(x)
        if self.standardize == "centre":
            y = y - self.mu.to(y.dtype)
        elif self.standardize == "zscore":
            y = (y - self.mu.to(y.dtype)) * self.inv_sigma.to(y.dtype)
        return y


# --------------------------------------------------------------------------- load


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise ValueCheckError(f"data set name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueCheckError(f"unknown data set {name!r}; choose one of: {', '.join(names())}")
    return _ALIASES[key]


def _prepared_rows(name: str, split: str, root, seed: int, validation, download, balance, per_class):
    """(source, rows of the source for this split after subsampling, split info)."""
    if name == "digits":
        src = _digits_source()
        rows, info = _split_rows(name, split, src.y, seed, validation)
        if root is not None:
            info["root_ignored"] = "digits is bundled with scikit-learn; root applies to the file-based sets"
    elif split == "test":
        src = (_locate_and_read_cifar("test", root, download) if name == "cifar10"
               else _locate_and_read_idx(name, "test", root, download))
        rows, info = np.arange(src.y.shape[0]), {}
    else:
        src = (_locate_and_read_cifar("train", root, download) if name == "cifar10"
               else _locate_and_read_idx(name, "train", root, download))
        rows, info = _split_rows(name, split, src.y, seed, validation)
    keep = _subsample(src.y[rows], balance, per_class, seed, 10, src.class_names)
    if keep is not None:
        rows = rows[keep]
    if rows.size == 0:
        raise ValueCheckError(f"{name} {split}: no samples left after the options (per_class={per_class}, balance={balance})")
    return src, rows, info


def load(
    name: str = "digits",
    split: str = "train",
    root: str | Path | None = None,
    *,
    balance: bool = False,
    per_class: int | None = None,
    standardize: str = "none",
    reduce: str | None = None,
    dim: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    validation: int | float | None = None,
    download: bool | None = None,
    device: str | torch.device | None = None,
) -> Dataset:
    """Load one split of a data set as ``Dataset(z, labels)``; the module docstring details every option.

    name: ``digits`` | ``fashion-mnist`` | ``mnist`` | ``cifar10``; split: ``train`` | ``validation`` | ``test``;
    root: the folder to read (only there); balance / per_class: class subsampling from the seed;
    standardize: ``none`` | ``centre`` | ``zscore`` (train-split statistics); reduce / dim: ``pca`` |
    ``random`` | ``pool`` to E' = dim (fitted on the train split); seed: splits, subsampling and the random
    projection; dtype: of ``z`` (float32 default); validation: size of the validation split (count or
    fraction) — given, "train" excludes it; download: None = download into the cache when no ``root``
    is given and the files are nowhere, True = also into ``root``, False = never; device: where ``z``
    and ``labels`` go.

    Examples::

        ds = load("fashion-mnist", "test")                    # 10000 x 784, pixels in [0, 1]
        tr = load("mnist", "train", validation=10000)         # the other 50000
        va = load("mnist", "validation", validation=10000)    # 10000, disjoint from tr
        d = load("digits", balance=True, standardize="zscore", reduce="pca", dim=16)
    """
    name = _canonical(name)
    check_choice(split, SPLITS, "split")
    if standardize == "center":
        standardize = "centre"
    check_choice(standardize, STANDARDIZE, "standardize option")
    if reduce is not None:
        check_choice(reduce, REDUCTIONS, "reduction")
        if dim is None or isinstance(dim, bool) or int(dim) != dim or dim < 1:
            raise ValueCheckError(f"reduce={reduce!r} needs a positive integer dim (the new embedding dimension E'), got {dim!r}")
        dim = int(dim)
    elif dim is not None:
        raise ValueCheckError(f"dim = {dim} given without reduce; pass reduce='pca', 'random' or 'pool' as well")
    if per_class is not None and (isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1):
        raise ValueCheckError(f"per_class must be a positive integer, got {per_class!r}")
    per_class = None if per_class is None else int(per_class)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueCheckError(f"dtype must be a torch floating dtype such as torch.float32, got {dtype!r}")
    seed = int(seed)

    src, rows, split_info = _prepared_rows(name, split, root, seed, validation, download, balance, per_class)
    E = src.x.shape[1]
    # half / bfloat16 requests are computed in float32 and cast at the end (statistics need the precision)
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    z = torch.from_numpy(src.x[rows]).to(work).div_(src.scale)
    labels = torch.from_numpy(src.y[rows]).long()

    tf = _Transform(reduce, dim, standardize, src.image_shape, seed, E)
    stats_from = None
    if tf.needs_fit():
        if split == "train":
            tf.fit(lambda: (z[i:i + 8192] for i in range(0, z.shape[0], 8192)))
            stats_from = "this train split"
        else:
            tsrc, trows, _ = _prepared_rows(name, "train", root, seed, validation, download, balance, per_class)
            tf.fit(lambda: _chunks(tsrc.x, trows, tsrc.scale, work))
            stats_from = f"the train split loaded with the same options (N = {trows.size})"
    if reduce is not None:
        z = torch.cat([tf.apply(z[i:i + 8192]) for i in range(0, z.shape[0], 8192)])
    elif standardize != "none":  # in place, chunk by chunk: no second N x E copy
        for i in range(0, z.shape[0], 8192):
            z[i:i + 8192] = tf.apply(z[i:i + 8192])
    if work != dtype:
        z = z.to(dtype)
    if device is not None:
        z, labels = z.to(device), labels.to(device)

    counts = np.bincount(src.y[rows], minlength=10).tolist()
    info: dict[str, Any] = {
        "name": name,
        "split": split,
        "n": int(z.shape[0]),
        "E": int(z.shape[1]),
        "num_classes": 10,
        "counts": counts,
        "seed": seed,
        "validation": validation,
        **split_info,
        "balance": bool(balance),
        "per_class": per_class,
        "standardize": standardize,
        "reduce": reduce,
        "dim": dim,
        "dtype": str(dtype).replace("torch.", ""),
        "pixel_scale": f"x / {src.scale:g} in [0, 1]",
        "image_shape": list(src.image_shape),
        "original_E": int(E),
        **src.where,
        **tf.info,
    }
    if stats_from:
        info["fitted_on"] = stats_from
    return Dataset(z, labels, 10, list(src.class_names), name, split, info, torch.from_numpy(rows.astype(np.int64)),
                   check_finite=False)
