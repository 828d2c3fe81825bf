"""Reading the files: IDX (MNIST, Fashion-MNIST; gzip or not) and CIFAR-10 python batches, with a small cache.

Every problem with a file (missing, corrupt gzip, truncated, wrong IDX magic,
header/payload size mismatch, labels out of range, image/label count
mismatch) raises :class:`~actionlab._checks.DataError` naming the file and
what is wrong.  A file is decompressed once into a uint8 array and kept in a
small in-process cache (:func:`clear_cache`).  CIFAR batches are unpickled
with an allow-list of numpy constructors (no code execution).
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from actionlab._checks import DataError
from actionlab.data.catalog import CIFAR_CLASSES

__all__ = ["clear_cache", "cached", "remember", "read_idx", "read_idx_pair", "read_cifar_batch", "read_cifar_meta"]

_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
CACHE_MAX = 8


def clear_cache() -> None:
    """Forget the decompressed files kept in memory."""
    _CACHE.clear()


def cached(path: Path, kind: str, reader):
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, kind)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = reader(path)
    _CACHE[key] = value
    while len(_CACHE) > CACHE_MAX:
        _CACHE.popitem(last=False)
    return value


def read_bytes(path: Path) -> bytes:
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


def read_idx(path: Path, ndim: int, kind: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions (1: labels, 3: images)."""
    raw = read_bytes(path)
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


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    def read_images(p: Path) -> np.ndarray:
        a = read_idx(p, 3, "images")
        if a.shape[1:] != (28, 28):
            raise DataError(f"{p}: images are {a.shape[1]}x{a.shape[2]} but MNIST-style images are 28x28")
        return a.reshape(a.shape[0], 784)

    def read_labels(p: Path) -> np.ndarray:
        a = read_idx(p, 1, "labels")
        if a.size and int(a.max()) >= num_classes:
            bad = int(np.argmax(a >= num_classes))
            raise DataError(
                f"{p}: label {int(a[bad])} at index {bad} is out of range; labels must lie in 0..{num_classes - 1} "
                f"(the file is corrupt or not a labels file of this data set)"
            )
        return a

    x = cached(images_path, "idx-images", read_images)
    y = cached(labels_path, "idx-labels", read_labels)
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


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
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


def read_cifar_meta(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return list(CIFAR_CLASSES)
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


def remember(key: tuple, make):
    """``make()`` computed once and kept in the same cache (for sources that are not files)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]
