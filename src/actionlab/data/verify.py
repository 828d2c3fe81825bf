"""Files are what they claim to be: every data file checked once against its known digest, the result cached.

A file is accepted when its digest is one the catalog knows
(:mod:`~actionlab.data.catalog`):

* an IDX file: the sha256 of the official gzip file, or the sha256 of the
  official *decompressed* bytes (a copy stored uncompressed); a gzip file whose
  own digest differs (re-compressed) is accepted when its decompressed bytes
  have the official digest;
* a CIFAR-10 file (``data_batch_1..5``, ``test_batch``, ``batches.meta``): its md5
  from torchvision's table.

Anything else — one flipped pixel is enough — is a
:class:`~actionlab._checks.DataError` naming the file, the expected and the
actual digest and the fix (delete it and download it again, or
``load(..., verify=False)`` to use it as it is).

The check costs one hash per file (sha256 of MNIST's 9.9 MB train images:
≈ 0.02 s from the page cache) and is done once: the result is cached, keyed
by the file's name, size and modification time (``st_mtime_ns``), in
``.actionlab-verified.json`` beside the file, written atomically (a temporary
file renamed over the old one).  A folder whose permission bits say read-only
(``../shared/data``) is never written to — even by root —; its results go
to ``verified-files.json`` in ``$ACTIONLAB_CACHE`` (else ``~/.cache/actionlab``),
keyed by the absolute path.  When neither can be written the check is simply
repeated next time; loading never fails because a cache cannot be written.
A changed file (another size or mtime) is hashed again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from actionlab._checks import DataError
from actionlab.data import catalog

__all__ = ["Known", "known_idx", "known_cifar", "verify_file", "record", "cache_file", "clear_memo", "BESIDE"]

BESIDE = ".actionlab-verified.json"
_FALLBACK = "verified-files.json"
_MEMO: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> accepted digest, this process


@dataclass(frozen=True)
class Known:
    """The digests a file may have: ``accepted`` (of its bytes, with ``algo``) and ``content`` (sha256 of its
    decompressed bytes, for a re-compressed gzip copy; None when not applicable); ``what`` names it."""

    what: str
    algo: str
    accepted: tuple[str, ...]
    content: str | None = None


def known_idx(name: str, key: str) -> Known:
    """The digests of ``name``'s IDX file ``key`` (e.g. "train_images"): gzip file or decompressed bytes."""
    fname, _md5, sha = catalog.IDX_FILES[name][key]
    raw = catalog.IDX_CONTENT_SHA256[name][key]
    return Known(f"the official {name} {fname}", "sha256", tuple(d for d in (sha, raw) if d), raw)


def known_cifar(fname: str) -> Known | None:
    """The md5 of an extracted CIFAR-10 file, or None for a file the table does not list."""
    md5 = catalog.CIFAR_MD5.get(fname)
    return None if md5 is None else Known(f"the official CIFAR-10 {fname}", "md5", (md5,))


def file_digest(path: Path, algo: str) -> str:
    """The hex digest (``hashlib`` algorithm ``algo``) of a file, read in 1 MiB chunks."""
    return _hash_file(path, algo)


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_decompressed(path: Path) -> str | None:
    """sha256 of a gzip file's decompressed bytes (None when it is not a readable gzip file)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return None
            f.seek(0)
            with gzip.GzipFile(fileobj=f) as g:
                for chunk in iter(lambda: g.read(1 << 20), b""):
                    h.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


# --------------------------------------------------------------------------- the cache


def clear_memo() -> None:
    """Forget which files this process has verified (the on-disk caches are kept)."""
    _MEMO.clear()


def cache_file() -> Path:
    """The fallback cache of results for read-only folders: $ACTIONLAB_CACHE (else ~/.cache/actionlab)/verified-files.json."""
    env = os.environ.get("ACTIONLAB_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "actionlab") / _FALLBACK


def _writable(folder: Path) -> bool:
    """Writable by access() *and* by its permission bits (root may write anywhere; we do not write to r-x folders)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    except OSError:
        return False


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d.get("files", {}) if isinstance(d, dict) and isinstance(d.get("files"), dict) else {}


def _write_atomic(path: Path, files: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"format": 1, "about": "actionlab data-file checksums already verified (safe to delete)",
                       "files": files}, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; others sharing the folder may read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key(path: Path) -> tuple[Path, str, int, int]:
    p = path.resolve()
    st = p.stat()
    return p, str(p), st.st_size, st.st_mtime_ns


def _cached_digest(path: Path) -> str | None:
    p, sp, size, mtime = _key(path)
    if (sp, size, mtime) in _MEMO:
        return _MEMO[(sp, size, mtime)]
    for entries, k in ((_read_json(p.parent / BESIDE), p.name), (_read_json(cache_file()), sp)):
        e = entries.get(k)
        if isinstance(e, dict) and e.get("size") == size and e.get("mtime_ns") == mtime and isinstance(e.get("digest"), str):
            _MEMO[(sp, size, mtime)] = e["digest"]
            return e["digest"]
    return None


def record(path: Path, algo: str, digest: str) -> str:
    """Remember that ``path`` (as it is now) has ``digest``; returns where it was recorded ("" when nowhere)."""
    p, sp, size, mtime = _key(path)
    _MEMO[(sp, size, mtime)] = digest
    entry = {"size": size, "mtime_ns": mtime, "algo": algo, "digest": digest}
    targets = ([(p.parent / BESIDE, p.name)] if _writable(p.parent) else []) + [(cache_file(), sp)]
    for target, k in targets:
        try:
            files = _read_json(target)
            files[k] = entry
            _write_atomic(target, files)
            return str(target)
        except OSError:
            continue  # never fail because a cache cannot be written
    return ""


# --------------------------------------------------------------------------- the check


def verify_file(path: Path, known: Known) -> dict:
    """Check ``path`` against ``known`` once (cached); a mismatch is a DataError with both digests and the fix.

    Returns the provenance ``{"file", "algo", "digest", "checked": "now" | "cached", "cache"}``.
    """
    path = Path(path)
    cached = _cached_digest(path)
    if cached is not None and (cached in known.accepted or cached == known.content):
        return {"file": path.name, "algo": known.algo, "digest": cached, "checked": "cached"}
    got = _hash_file(path, known.algo)
    ok = got if got in known.accepted else None
    content = None
    if ok is None and known.content is not None:
        content = _hash_decompressed(path)
        ok = content if content == known.content else None
    if ok is None:
        expect = " or ".join(known.accepted)
        extra = f"; its decompressed bytes have sha256 {content}, expected {known.content}" if content else ""
        raise DataError(
            f"{path}: {known.algo} {got} is not the digest of {known.what} (expected {expect}{extra}); the file "
            f"differs from the official data (corrupt or modified copy). Fix: delete {path} and download it again "
            f"(load(..., download=True) or --download), or pass verify=False to use the file as it is"
        )
    where = record(path, known.algo, ok)
    return {"file": path.name, "algo": known.algo, "digest": ok, "checked": "now", "cache": where}
