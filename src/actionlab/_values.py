"""Values of results.json as readable text: numbers to 6 significant digits, dicts as ``key: value; …``.

Shared by the run folders' summaries (:func:`actionlab.runs.claims_table_md`) and the report.

Nothing here truncates with an ellipsis: a string, a dict and a short list
are written in full; only a long numeric array is summarised (its shape,
minimum, maximum and mean), never cut.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_value", "flatten", "is_number", "fmt_number"]


def fmt_number(x: float) -> str:
    """6 significant digits; scientific notation (4 decimals) outside 1e-4 … 1e6."""
    if isinstance(x, (bool, int)):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        return f"{x:.6g}"
    return f"{x:.4e}"


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _shape(v: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(v, list) and v:
        shape.append(len(v))
        v = v[0]
    return tuple(shape)


def _flat_numbers(v: Any) -> list[float] | None:
    out: list[float] = []
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif is_number(x):
            out.append(float(x))
        elif isinstance(x, str) and x in ("nan", "inf", "-inf"):
            out.append(float(x))
        else:
            return None
    return out


def _array_summary(nums: list[float], shape: tuple[int, ...]) -> str:
    finite = [x for x in nums if math.isfinite(x)]
    dims = "×".join(str(s) for s in shape) or str(len(nums))
    if finite:
        return (f"array {dims} ({len(nums)} values): min {fmt_number(min(finite))}, "
                f"max {fmt_number(max(finite))}, mean {fmt_number(sum(finite) / len(finite))}")
    return f"array {dims} ({len(nums)} values, none finite)"


def format_value(v: Any, max_items: int = 8, _depth: int = 0) -> str:
    """A value of results.json as readable text.

    Numbers to 6 significant digits; ``None`` as "—"; a dict as
    ``key: value; key: value`` (a nested dict in parentheses,
    ``key: (a: 1, b: 2)``); a list in full, except a numeric array of more
    than ``max_items`` values, which is summarised by its shape, min, max and
    mean. Strings are never cut.
    """
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if is_number(v):
        return fmt_number(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        if not v:
            return "[]"
        nums = _flat_numbers(v)
        shape = _shape(v)
        if nums is not None and (len(shape) > 1 or len(v) > max_items):
            return _array_summary(nums, shape)
        return "[" + ", ".join(format_value(x, max_items, _depth + 1) for x in v) + "]"
    if isinstance(v, Mapping):
        if not v:
            return "(empty)"
        sep = "; " if _depth == 0 else ", "
        body = sep.join(f"{k}: {format_value(x, max_items, _depth + 1)}" for k, x in v.items())
        return body if _depth == 0 else f"({body})"
    return str(v)


def flatten(v: Any, prefix: str = "", limit: int = 250) -> list[tuple[str, str]]:
    """(key path, formatted value) rows of a nested results dict, at most ``limit``."""
    rows: list[tuple[str, str]] = []

    def rec(x: Any, key: str) -> None:
        if len(rows) >= limit:
            return
        if isinstance(x, Mapping) and x:
            for k, y in x.items():
                rec(y, f"{key}.{k}" if key else str(k))
        elif isinstance(x, list) and x and all(isinstance(y, Mapping) for y in x) and len(x) <= 20:
            for i, y in enumerate(x):
                rec(y, f"{key}[{i}]")
        else:
            rows.append((key or "(value)", format_value(x)))

    rec(v, prefix)
    return rows
