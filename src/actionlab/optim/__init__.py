"""Optimizers: relative natural gradient descent (RNGD, Sun & Nielsen 003)."""

from actionlab.optim.rngd import RNGD, LayerSpec, describe_layers

__all__ = ["RNGD", "LayerSpec", "describe_layers"]
