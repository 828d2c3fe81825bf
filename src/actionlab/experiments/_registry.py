"""The experiment registry.

An experiment is a config dataclass plus a function
``run(config, options) -> Result`` that writes a run folder
(see :mod:`actionlab.runs`). Registering it makes it a CLI subcommand (flags
generated from the config's fields) and a member of ``actionlab study``.

Config dataclasses declare each field with :func:`param` (its help text for
the CLI and its admissible range, checked by :func:`make_config` before any
work) and presets as a class attribute::

    @dataclass
    class MyConfig:
        width: int = param(512, "hidden width H (notes 001 §1.1)", min=1)
        PRESETS: ClassVar[dict[str, dict]] = {"quick": {"width": 32}, "default": {}, "full": {"width": 4096}}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from actionlab._checks import ValueCheckError

__all__ = ["Experiment", "register_experiment", "EXPERIMENTS", "get_experiment", "make_config", "param", "check_config"]


def param(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    exclusive_min: bool = False,
    choices: Iterable[Any] | None = None,
    allow_empty: bool = True,
    length: int | None = None,
) -> Any:
    """A config field with its CLI help text and its admissible values.

    ``min`` / ``max`` bound a number (or every element of a tuple of numbers;
    ``exclusive_min=True`` makes the lower bound strict); ``choices`` lists
    the admissible values (of the field, or of each element of a tuple);
    ``allow_empty=False`` refuses an empty tuple; ``length`` fixes the number
    of elements of a tuple (the CLI flag then takes exactly that many).
    Numbers must be finite. :func:`make_config` checks all of this before any
    work is done.
    """
    if not help or not str(help).strip():
        raise TypeError("param needs a help text: what the field means, with its unit or source")
    meta = {"help": help, "min": min, "max": max, "exclusive_min": exclusive_min,
            "choices": tuple(choices) if choices is not None else None, "allow_empty": allow_empty, "length": length}
    if isinstance(default, (list, dict, set)):
        raise TypeError("param defaults must be immutable; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_value(name: str, value: Any, meta: dict) -> None:
    flag = _flag(name)
    if value is None:  # an optional field left unset
        return
    if isinstance(value, tuple):
        if not value and not meta.get("allow_empty", True):
            raise ValueCheckError(f"{flag} must not be empty; give at least one value")
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise ValueCheckError(f"{flag} takes exactly {meta['length']} values, got {len(value)}: {value!r}")
        for v in value:
            _check_value(name, v, meta)
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueCheckError(f"{flag} {value!r} is not one of: {', '.join(map(str, choices))}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueCheckError(f"{flag} must be a finite number, got {value}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        if meta.get("exclusive_min") and not value > lo:
            raise ValueCheckError(f"{flag} must be > {lo}{' (positive)' if lo == 0 else ''}, got {value}")
        if not meta.get("exclusive_min") and not value >= lo:
            what = " (a positive integer)" if lo == 1 and isinstance(value, int) else ""
            raise ValueCheckError(f"{flag} must be >= {lo}{what}, got {value}")
    if hi is not None and not value <= hi:
        raise ValueCheckError(f"{flag} must be <= {hi}, got {value}")


def check_config(config: Any) -> Any:
    """Check every field of a config dataclass against its :func:`param` metadata; return it.

    Floats must be finite even without a declared range.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        _check_value(f.name, value, dict(f.metadata) if f.metadata else {})
    return config


@dataclass(frozen=True)
class Experiment:
    name: str
    config_cls: type
    run: Callable[..., Any]
    help: str
    sources: tuple[str, ...] = ()  # source documents whose claims it checks, e.g. ("000", "001")
    order: int = 100  # position in `actionlab study`


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, config: type, help: str, sources: tuple[str, ...] = (), order: int = 100):
    """Decorator: register ``run(config, options)`` under ``name``."""

    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config for experiment {name!r} must be a dataclass")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in EXPERIMENTS and EXPERIMENTS[name].run is not fn:
            raise ValueError(f"experiment {name!r} registered twice")
        EXPERIMENTS[name] = Experiment(name, config, fn, help, tuple(sources), order)
        return fn

    return deco


def get_experiment(name: str) -> Experiment:
    from actionlab.experiments import load_all

    load_all()
    if name not in EXPERIMENTS:
        raise ValueCheckError(f"unknown experiment {name!r}; registered: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]


def make_config(config_cls: type, preset: str = "default", **overrides: Any) -> Any:
    """Instantiate ``config_cls`` from a preset (quick / default / full) and explicit overrides."""
    presets: dict[str, dict] = getattr(config_cls, "PRESETS", {"default": {}})
    if preset not in presets:
        raise ValueCheckError(f"unknown preset {preset!r} for {config_cls.__name__}; choose one of: {', '.join(presets)}")
    values = dict(presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueCheckError(f"{config_cls.__name__} has no option(s) {sorted(unknown)}; known: {sorted(names)}")
    return check_config(config_cls(**values))
