"""Short, readable representations of result dataclasses (terminal and notebook).

A result dataclass decorated with :func:`short_repr` prints one line per field
with tensors and long sequences summarised (shape, dtype, range) instead of
every element, and renders as a small HTML table in a notebook
(``_repr_html_``).  Use it *above* ``@dataclass``::

    @short_repr
    @dataclass
    class FisherStatistics:
        ...
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Any

__all__ = ["short_repr", "summarise"]

_MAX_ITEMS = 6


def _fmt_number(x: float) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.6g}"


def summarise(value: Any, max_items: int = _MAX_ITEMS) -> str:
    """One short line describing ``value``: numbers to 6 digits, tensors and arrays by shape and range."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch = None
    import numpy as np

    if torch is not None and isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return _fmt_number(value.item())
        desc = f"tensor(shape={tuple(value.shape)}, dtype={str(value.dtype).replace('torch.', '')}"
        if value.numel() and (value.is_floating_point() or not value.is_complex()):
            v = value.detach()
            if v.is_floating_point():
                desc += f", min={_fmt_number(v.min().item())}, max={_fmt_number(v.max().item())}"
        return desc + ")"
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return _fmt_number(value.item())
        desc = f"array(shape={value.shape}, dtype={value.dtype}"
        if value.size and np.issubdtype(value.dtype, np.floating):
            desc += f", min={_fmt_number(float(np.nanmin(value)))}, max={_fmt_number(float(np.nanmax(value)))}"
        return desc + ")"
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        return _fmt_number(value)
    if isinstance(value, np.generic):
        return _fmt_number(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"{type(value).__name__}(…)"
    if isinstance(value, (list, tuple)):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        if len(value) > max_items:
            head = ", ".join(summarise(v, max_items) for v in value[:3])
            return f"{open_}{head}, … {len(value)} items{close}"
        return open_ + ", ".join(summarise(v, max_items) for v in value) + close
    if isinstance(value, dict):
        if len(value) > max_items:
            keys = ", ".join(repr(k) for k in list(value)[:3])
            return f"{{{keys}, … {len(value)} keys}}"
        return "{" + ", ".join(f"{k!r}: {summarise(v, max_items)}" for k, v in value.items()) + "}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _rows(obj: Any) -> list[tuple[str, str]]:
    return [(f.name, summarise(getattr(obj, f.name))) for f in dataclasses.fields(obj) if f.repr]


def _repr(self: Any) -> str:
    rows = _rows(self)
    inner = ", ".join(f"{k}={v}" for k, v in rows)
    line = f"{type(self).__name__}({inner})"
    if len(line) <= 100:
        return line
    body = "\n".join(f"  {k}={v}," for k, v in rows)
    return f"{type(self).__name__}(\n{body}\n)"


def _repr_html(self: Any) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in _rows(self)
    )
    return f"<table><caption>{html.escape(type(self).__name__)}</caption>{cells}</table>"


def short_repr(cls: type) -> type:
    """Class decorator: give a dataclass a short ``__repr__`` and a notebook ``_repr_html_``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"short_repr needs a dataclass, got {cls!r}; put @short_repr above @dataclass")
    cls.__repr__ = _repr  # type: ignore[method-assign]
    cls._repr_html_ = _repr_html  # type: ignore[attr-defined]
    return cls
