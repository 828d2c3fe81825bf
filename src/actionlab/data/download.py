"""Fetching the official files from their mirrors, verified by checksum (md5, and sha256 for MNIST / Fashion-MNIST).

A file is written as ``NAME.part`` and renamed only when its checksums match;
a mismatch deletes it and, when every mirror failed, is one
:class:`~actionlab._checks.DataError` listing each URL and what went wrong.
``http(s)://`` and ``file://`` URLs are accepted (the tests use the latter).
"""

from __future__ import annotations

import tarfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from actionlab._checks import DataError
from actionlab.data import verify as _vf
from actionlab.data.catalog import CIFAR_ARCHIVE, CIFAR_DIR, IDX_FILES, MIRRORS, SUBDIRS

__all__ = ["fetch_url", "digest", "download_file", "download_idx", "download_cifar"]


def fetch_url(url: str, dest: Path) -> None:
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


def digest(path: Path, algo: str) -> str:
    """The hex digest of a file (one implementation: :func:`actionlab.data.verify.file_digest`)."""
    return _vf.file_digest(path, algo)


def download_file(name: str, fname: str, md5: str, sha256: str | None, folder: Path) -> Path:
    """Fetch one file from the mirrors into ``folder``, verifying md5 (and sha256); all failures in one error."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / fname
    tmp = folder / (fname + ".part")
    problems: list[str] = []
    for base in MIRRORS[name]:
        url = base + fname
        try:
            fetch_url(url, tmp)
        except Exception as exc:  # noqa: BLE001 - network errors of any kind: try the next mirror
            problems.append(f"{url}: {type(exc).__name__}: {exc}")
            tmp.unlink(missing_ok=True)
            continue
        got_md5 = digest(tmp, "md5")
        got_sha = digest(tmp, "sha256") if sha256 else None
        if got_md5 != md5 or (sha256 and got_sha != sha256):
            problems.append(
                f"{url}: checksum mismatch (md5 {got_md5}, expected {md5}"
                + (f"; sha256 {got_sha}, expected {sha256}" if sha256 else "")
                + ")"
            )
            tmp.unlink(missing_ok=True)
            continue
        tmp.replace(target)
        if got_sha:
            _vf.record(target, "sha256", got_sha)  # verified just now: the first load does not hash it again
        return target
    raise DataError(
        f"{name}: could not download {fname} into {folder}: " + " | ".join(problems)
        + ". Fix: download it by hand from the official source and pass root=DIR or set ACTIONLAB_DATA=DIR"
    )


def download_idx(name: str, keys: Sequence[str], target_root: Path) -> dict[str, Path]:
    folder = target_root / SUBDIRS[name][0]
    out = {}
    for key in keys:
        fname, md5, sha = IDX_FILES[name][key]
        out[key] = folder / fname if (folder / fname).is_file() else download_file(name, fname, md5, sha, folder)
    return out


def download_cifar(target_root: Path) -> Path:
    fname, md5, sha = CIFAR_ARCHIVE
    archive = download_file("cifar10", fname, md5, sha, target_root)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target_root, filter="data")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(target_root)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: cannot be extracted ({exc}); delete it and try again") from None
    archive.unlink(missing_ok=True)
    return target_root / CIFAR_DIR
