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

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from actionlab._checks import ValueCheckError, check_choice

__all__ = ["RunOptions", "resolve_device", "resolve_dtype", "seed_everything", "DTYPES"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' (or None) picks CUDA when present, else CPU; 'cuda' without a GPU is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueCheckError("--device cuda was asked for but no CUDA device is visible; use --device cpu (or auto)")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' or 'float64' (or a torch dtype) to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueCheckError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    return DTYPES[check_choice(str(dtype), DTYPES, "dtype")]


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
    """

    out: Path | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)
    preset: str | None = None
    command: str | None = None

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return resolve_dtype(self.dtype)
