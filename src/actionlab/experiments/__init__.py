"""Experiments: one module per experiment, each registered with
:func:`actionlab.experiments._registry.register_experiment`.

``load_all()`` imports every module of this package so that the registry is
complete; ``actionlab study`` calls it. The CLI does not: it finds an
experiment's module in its static index (``actionlab.cli.COMMANDS``, checked
against this registry by the tests) and imports only that one.
"""

from __future__ import annotations

import importlib
import pkgutil

from actionlab.experiments._registry import (
    EXPERIMENTS,
    Experiment,
    check_config,
    get_experiment,
    make_config,
    param,
    register_experiment,
)

__all__ = ["EXPERIMENTS", "Experiment", "get_experiment", "make_config", "register_experiment", "param",
           "check_config", "load_all"]

_loaded = False


def load_all() -> dict[str, Experiment]:
    """Import every experiment module (once) and return the registry."""
    global _loaded
    if not _loaded:
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _loaded = True
    return EXPERIMENTS
