"""Hand-written CLI commands (those that are not plain registered experiments).

Each module defines ``register(subparsers, common)`` where ``common`` is the
parent parser carrying ``--out --seed --device --dtype``; the CLI imports
every module of this package.
"""
