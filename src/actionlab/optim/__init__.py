"""Optimizers: relative natural gradient descent (RNGD, Sun & Nielsen 003)."""

from actionlab.optim.rngd import RNGD, SUPPORTED_MODULES, LayerSpec, describe_layers

__all__ = ["RNGD", "LayerSpec", "describe_layers", "SUPPORTED_MODULES"]
