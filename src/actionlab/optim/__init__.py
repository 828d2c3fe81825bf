"""Optimizers: relative natural gradient descent (RNGD, Sun & Nielsen 003)."""

from actionlab.optim.rngd import RNGD, SUPPORTED_MODULES, LayerSpec, describe_layers, low_rank_plus_identity

__all__ = ["RNGD", "LayerSpec", "describe_layers", "low_rank_plus_identity", "SUPPORTED_MODULES"]
