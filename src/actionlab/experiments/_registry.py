"""The experiment registry.

An experiment is a config dataclass plus a function
``run(config, options) -> Result`` that writes a run folder
(see :mod:`actionlab.runs`). Registering it makes it a CLI subcommand (flags
generated from the config's fields) and a member of ``actionlab study``.

Config dataclasses declare presets as a class attribute::

    @dataclass
    class MyConfig:
        width: int = 512
        PRESETS: ClassVar[dict[str, dict]] = {"quick": {"width": 32}, "default": {}, "full": {"width": 4096}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actionlab._checks import ValueCheckError

__all__ = ["Experiment", "register_experiment", "EXPERIMENTS", "get_experiment", "make_config"]


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
    return config_cls(**values)
