"""Options every command shares: output folder, seed, device and dtype.

``RunOptions`` is the one place where a device string becomes a
``torch.device`` and a dtype string a ``torch.dtype``; experiments receive
it beside their own config dataclass. It also carries what the run folder
records about how the run was started: the ``preset`` (a ``quick`` run's
claims are only indicative) and the ``command`` that repeats the run, as a
user types it (``actionlab demo --preset quick --out runs/demo``), set by the
CLI and by ``actionlab study``.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionlab._checks import ValueCheckError, check_choice

__all__ = ["RunOptions", "resolve_device", "resolve_dtype", "seed_everything", "check_out_dir", "DTYPES",
           "DEVICE_TYPES"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


#: the device types a run can use (``auto`` picks cuda when present)
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' (or None) picks CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:N' or 'mps' otherwise.

    An unknown name (``tpu``), a device that holds no data (``meta``), ``cuda`` without a GPU or
    ``cuda:N`` beyond the visible GPUs is a :class:`ValueCheckError` that says what to use instead.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hint = "use --device cpu, cuda, cuda:N or auto"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueCheckError(f"unknown device {str(device)!r}; {hint}") from None
    if dev.type not in DEVICE_TYPES:
        raise ValueCheckError(f"device {str(device)!r} cannot run an experiment (it holds no data or is not "
                              f"supported); {hint}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueCheckError("--device cuda was asked for but no CUDA device is visible; use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueCheckError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueCheckError("--device mps was asked for but MPS is not available here; use --device cpu (or auto)")
    return dev


def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Make sure ``path`` is (or can become) a writable folder; create it; return it as a Path.

    Refused, each with a :class:`ValueCheckError` naming the fix: an empty name, an existing file, a
    path below a file, a place that cannot be created or written.
    """
    if isinstance(path, str) and not path.strip():
        raise ValueCheckError(f"{flag} is empty; give the folder to write, e.g. {flag} runs/my-run")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueCheckError(f"{flag} {p} is a file, not a folder; choose another {flag} (or move the file away)")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueCheckError(f"{flag} {p} lies below the file {parent}; choose another {flag}")
        if parent.exists():
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueCheckError(f"{flag} {p} cannot be created ({exc.strerror or exc}); choose a writable place") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ValueCheckError(f"{flag} {p} is not writable (permission denied); choose a writable place")
    return p


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' or 'float64' (or a torch dtype) to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueCheckError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    return DTYPES[check_choice(str(dtype), DTYPES, "dtype")]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads and restore the caller's setting afterwards
    (``n`` None or ≤ 0: leave the setting as it is). Small networks on a busy CPU run fastest on one
    thread: the experiments' ``num_threads`` / ``threads`` options go through here."""
    before = torch.get_num_threads()
    if n is not None and n > 0:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a torch.Generator seeded the same way for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class RunOptions:
    """The options of every ``actionlab`` command (``--out --seed --device --dtype``).

    ``preset``: the config preset the run uses (``quick``, ``default``,
    ``full``; ``None`` from Python); ``command``: the command line that
    repeats the run (``None`` when started from Python).

    ``group``: the ``torch.distributed`` ProcessGroup the run is spread over
    (the CLI sets it under ``torchrun``: :func:`actionlab.distributed.init_from_env`),
    or ``None`` for this process alone. Experiments shard their data by it and
    pass it on as ``group=`` (docs/distributed.md); only its rank 0 writes the run
    folder. It is a live object, not a setting: it is left out of ``repr``,
    comparisons and every JSON file — the run folder's provenance records
    :attr:`world_size` and :attr:`backend` instead.
    """

    out: Path | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)
    preset: str | None = None
    command: str | None = None
    group: Any = field(default=None, repr=False, compare=False)

    @property
    def world_size(self) -> int:
        """The number of processes of :attr:`group` (1 for ``group=None``)."""
        from actionlab import distributed

        return distributed.world(self.group)[1]

    @property
    def backend(self) -> str | None:
        """The backend of :attr:`group` (``gloo``, ``nccl``, …), None for one process."""
        from actionlab import distributed

        return distributed.backend(self.group)

    @property
    def is_rank0(self) -> bool:
        """Whether this process writes files (rank 0 of :attr:`group`; always True for one process)."""
        from actionlab import distributed

        return distributed.is_rank0(self.group)

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return resolve_dtype(self.dtype)
