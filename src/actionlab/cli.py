"""The ``actionlab`` command line: thin, it parses and calls experiments.

Registered experiments become subcommands with one flag per config field;
hand-written commands live in :mod:`actionlab.commands`. Every command takes
``--out DIR``, ``--seed``, ``--device`` and ``--dtype``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import sys
import typing
from pathlib import Path
from typing import Any

from actionlab._checks import ActionlabError
from actionlab.config import RunOptions
from actionlab.runs import default_out

__all__ = ["main", "build_parser", "common_parser", "options_from_args"]


def common_parser() -> argparse.ArgumentParser:
    """The parent parser with the options every command shares."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--out", type=Path, default=None, help="run folder to write (default: runs/<command>-<timestamp>)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="floating-point precision")
    return p


def options_from_args(args: argparse.Namespace, name: str) -> RunOptions:
    out = args.out if args.out is not None else default_out(name)
    return RunOptions(out=Path(out), seed=args.seed, device=args.device, dtype=args.dtype)


def _flag_type(tp: Any) -> tuple[Any, dict]:
    """argparse keyword arguments for a dataclass field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        inner = [a for a in args if a is not type(None)]
        return _flag_type(inner[0]) if inner else (str, {})
    if origin in (tuple, list):
        elem = args[0] if args else str
        return elem, {"nargs": "+"}
    if tp is bool:
        return bool, {"action": argparse.BooleanOptionalAction}
    if tp in (int, float, str):
        return tp, {}
    if tp is Path:
        return Path, {}
    return str, {}


def _add_experiment(sub, exp, common) -> None:
    cfg = exp.config_cls
    presets = getattr(cfg, "PRESETS", {"default": {}})
    p = sub.add_parser(exp.name, parents=[common], help=exp.help, description=(cfg.__doc__ or exp.help).strip())
    p.add_argument("--preset", default="default", choices=list(presets), help="parameter preset (default: default)")
    if "quick" in presets:
        p.add_argument("--quick", dest="preset", action="store_const", const="quick", help="same as --preset quick")
    if "full" in presets:
        p.add_argument("--full", dest="preset", action="store_const", const="full", help="same as --preset full")
    hints = typing.get_type_hints(cfg)
    g = p.add_argument_group(f"{exp.name} options (override the preset)")
    for f in dataclasses.fields(cfg):
        if f.name.startswith("_"):
            continue
        elem, kw = _flag_type(hints.get(f.name, str))
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        helptext = f.metadata.get("help", "") if f.metadata else ""
        if kw.get("action") is argparse.BooleanOptionalAction:
            g.add_argument(flag, dest=f.name, default=None, help=f"{helptext} (default: {default})", **kw)
        else:
            g.add_argument(flag, dest=f.name, type=elem, default=None, help=f"{helptext} (default: {default})", **kw)
    p.set_defaults(_handler=_run_experiment_handler(exp))


def _run_experiment_handler(exp):
    def handler(args: argparse.Namespace) -> int:
        from actionlab.experiments import make_config

        overrides = {}
        for f in dataclasses.fields(exp.config_cls):
            v = getattr(args, f.name, None)
            if isinstance(v, list):
                v = tuple(v)
            overrides[f.name] = v
        config = make_config(exp.config_cls, args.preset, **overrides)
        options = options_from_args(args, exp.name)
        exp.run(config, options)
        summary = Path(options.out) / "summary.md"
        if summary.exists():
            print(summary.read_text())
        print(f"run folder: {options.out}")
        return 0

    return handler


def build_parser() -> argparse.ArgumentParser:
    from actionlab import __version__
    from actionlab.experiments import load_all

    common = common_parser()
    parser = argparse.ArgumentParser(
        prog="actionlab",
        description="Exact action expansions, Fisher spectra and relative natural gradient for neural classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"actionlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import actionlab.commands as commands_pkg

    for mod in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            importlib.import_module(f"actionlab.commands.{mod.name}").register(sub, common)
    for exp in sorted(load_all().values(), key=lambda e: (e.order, e.name)):
        if exp.name not in sub.choices:
            _add_experiment(sub, exp, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 0
    try:
        return int(args._handler(args) or 0)
    except ActionlabError as exc:
        print(f"actionlab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
