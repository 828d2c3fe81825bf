"""The commands that are not experiments: ``data``, ``study`` and ``report``.

Each module defines ``register(subparsers, common)``, where ``common`` is the
parent parser carrying ``--out --seed --device --dtype``, and sets a handler
``handler(args, options) -> int`` (``options``: the
:class:`actionlab.config.RunOptions` of the command line, ``out`` left
``None`` when ``--out`` was not given). The CLI finds them through its static
index (``actionlab.cli.COMMANDS``); nothing here imports ``actionlab.cli``.
Experiments are not commands: they are registered in
:mod:`actionlab.experiments` and become subcommands by themselves.
"""
