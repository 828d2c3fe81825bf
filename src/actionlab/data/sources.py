"""Where the files are and what they hold: the search roots, locating a data set's files, reading them into a source.

Where the files are found (first hit wins):

1. ``root=DIR`` when given — then *only* there (a missing file is an error
   naming the paths; ``download=True`` fetches into ``DIR``);
2. ``$ACTIONLAB_DATA``;
3. ``../shared/data`` next to the repository (found from the package's own
   location and from the current directory);
4. the download cache (``$ACTIONLAB_DATA`` if set, else ``~/.cache/actionlab``),
   downloading from the official source when the files are not there yet
   (:mod:`actionlab.data.download`; ``download=False`` forbids it).

Inside a root both layouts are accepted: ``root/fashion-mnist/*.gz`` and
``root/*.gz`` (also ``root/FashionMNIST/raw`` and ``root/MNIST/raw``, the
torchvision layout), gzip-compressed or uncompressed IDX files.  CIFAR-10 is
read from ``root/cifar-10-batches-py/`` (or ``root/cifar10/cifar-10-batches-py/``
or ``root/`` itself).  ``digits`` is scikit-learn's bundled 8×8 set (offline).

When ``$ACTIONLAB_DATA`` is set but lacks the files and the lookup finds them
in a later folder, a :class:`DataLookupWarning` names both folders (the data
used is then not the data the variable points to).  Every file found is
checked against its known digest before use (:mod:`~actionlab.data.verify`;
``verify=False`` skips the check).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actionlab._checks import DataError
from actionlab.data import download as _dl
from actionlab.data import readers as _rd
from actionlab.data import verify as _vf
from actionlab.data.catalog import CIFAR_TEST, CIFAR_TRAIN, DIGIT_CLASSES, FASHION_CLASSES, IDX_FILES, SUBDIRS

__all__ = ["Source", "DataLookupWarning", "data_roots", "read_source"]


class DataLookupWarning(UserWarning):
    """The files were not where ``$ACTIONLAB_DATA`` points, and were taken from a later folder of the lookup."""


def _warn_fall_through(name: str, what: str, looked: list[tuple[Path, str]], used: Path, how: str) -> None:
    env = [str(r) for r, h in looked if h == "$ACTIONLAB_DATA"]
    if env:
        warnings.warn(
            f"{name}: {what} not found in $ACTIONLAB_DATA={env[0]}; using the copy in {used} ({how}) instead. "
            f"Fix: put the files into {env[0]} (or unset ACTIONLAB_DATA) to silence this",
            DataLookupWarning, stacklevel=6)


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
    for folder in [root / s for s in SUBDIRS[name]] + [root]:
        looked.append(str(folder))
        if not folder.is_dir():
            looked[-1] += " (no such folder)"
            continue
        found: dict[str, Path] = {}
        for key in keys:
            for fname in _idx_variants(IDX_FILES[name][key][0]):
                if (folder / fname).is_file():
                    found[key] = folder / fname
                    break
        if len(found) == len(keys):
            return found, looked
        if found:
            missing = [IDX_FILES[name][k][0] for k in keys if k not in found]
            looked[-1] += f" (has {', '.join(p.name for p in found.values())} but not {', '.join(missing)})"
    return None, looked


def _find_cifar(files: Sequence[str], root: Path) -> tuple[Path | None, list[str]]:
    looked: list[str] = []
    for folder in [root / s for s in SUBDIRS["cifar10"]] + [root]:
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
        f"'{SUBDIRS[name][0]}' sub-folder), or set ACTIONLAB_DATA=DIR"
    )
    if explicit:
        fix += ", or pass download=True (--download) to fetch them into that root"
    return DataError(f"{name}: {what} not found; looked in: {'; '.join(looked)}. Fix: {fix}. {download_note}".strip())


@dataclass
class Source:
    """The bytes of one file set: ``x / scale`` are the pixels in [0, 1], ``y`` the labels, ``where`` the provenance."""

    x: np.ndarray  # uint8, N × E (rows in the image's C, H, W order)
    y: np.ndarray  # int64 labels
    scale: float  # x / scale is in [0, 1]
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: list[str]
    where: dict  # provenance of the files


def _read_idx_verified(name: str, keys: Sequence[str], found: dict[str, Path], verify: bool):
    x, y = _rd.read_idx_pair(found[keys[0]], found[keys[1]])  # parse first: its diagnosis of a broken file is sharper
    checks = [_vf.verify_file(found[k], _vf.known_idx(name, k)) for k in keys] if verify else "skipped (verify=False)"
    return x, y, checks


def _locate_and_read_idx(name: str, part: str, root, download: bool | None, verify: bool = True) -> Source:
    keys = (f"{part}_images", f"{part}_labels")
    looked: list[str] = []
    explicit = root is not None
    roots = data_roots(root)
    for i, (r, how) in enumerate(roots):
        found, l = _find_idx(name, keys, r)
        looked += l
        if found:
            _warn_fall_through(name, " and ".join(p.name for p in found.values()), roots[:i], r, how)
            x, y, checks = _read_idx_verified(name, keys, found, verify)
            return _source_idx(name, x, y, found, keys, r, how, checks)
    allow = (not explicit) if download is None else bool(download)
    if allow:
        target = Path(root).expanduser() if explicit else _cache_root()
        found = _dl.download_idx(name, keys, target)
        x, y, checks = _read_idx_verified(name, keys, found, verify)
        return _source_idx(name, x, y, found, keys, target, "downloaded", checks)
    note = "Downloading was not allowed (download=False)." if download is False else ""
    files = " and ".join(IDX_FILES[name][k][0].removesuffix(".gz") + "[.gz]" for k in keys)
    raise _missing_error(name, files, looked, explicit, note)


def _source_idx(name, x, y, found, keys, r, how, checks) -> Source:
    classes = list(FASHION_CLASSES) if name == "fashion-mnist" else list(DIGIT_CLASSES)
    where = {"root": str(r), "found_via": how, "files": [str(found[k]) for k in keys], "verified": checks}
    return Source(x, y.astype(np.int64), 255.0, (1, 28, 28), classes, where)


def _verify_cifar(folder: Path, files: Sequence[str], verify: bool) -> list[dict] | str:
    if not verify:
        return "skipped (verify=False)"
    checks = []
    for f in (*files, "batches.meta"):
        known = _vf.known_cifar(f)
        if (folder / f).is_file() and known is not None:
            checks.append(_vf.verify_file(folder / f, known))
    return checks


def _locate_and_read_cifar(part: str, root, download: bool | None, verify: bool = True) -> Source:
    files = CIFAR_TRAIN if part == "train" else CIFAR_TEST
    looked: list[str] = []
    explicit = root is not None
    folder = None
    how = ""
    roots = data_roots(root)
    for i, (r, h) in enumerate(roots):
        folder, l = _find_cifar(files, r)
        looked += l
        if folder is not None:
            how = h
            _warn_fall_through("cifar10", ", ".join(files), roots[:i], folder, how)
            break
    if folder is None:
        allow = (not explicit) if download is None else bool(download)
        if not allow:
            note = "Downloading was not allowed (download=False)." if download is False else ""
            raise _missing_error("cifar10", ", ".join(files), looked, explicit, note)
        folder = _dl.download_cifar(Path(root).expanduser() if explicit else _cache_root())
        how = "downloaded"
    parts = [_rd.cached(folder / f, "cifar-batch", _rd.read_cifar_batch) for f in files]
    x = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    y = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    class_names = _rd.read_cifar_meta(folder)
    where = {"root": str(folder), "found_via": how, "files": [str(folder / f) for f in files],
             "verified": _verify_cifar(folder, files, verify)}
    return Source(x, y, 255.0, (3, 32, 32), class_names, where)


def _digits_source() -> Source:
    def read():
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data.astype(np.uint8), d.target.astype(np.int64)

    x, y = _rd.remember(("sklearn-digits",), read)
    return Source(x, y, 16.0, (1, 8, 8), list(DIGIT_CLASSES), {"source": "sklearn.datasets.load_digits"})


def read_source(name: str, part: str, root, download: bool | None, verify: bool = True) -> Source:
    """The source of ``name``'s ``part`` ("train" or "test" file; digits has one source for both).

    ``verify``: check every file against its known digest first (:mod:`~actionlab.data.verify`)."""
    if name == "digits":
        return _digits_source()
    if name == "cifar10":
        return _locate_and_read_cifar(part, root, download, verify)
    return _locate_and_read_idx(name, part, root, download, verify)
