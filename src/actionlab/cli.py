"""The ``actionlab`` command line: thin, it parses and calls experiments.

Registered experiments (:mod:`actionlab.experiments`) become subcommands with
one flag per config field (its help text and range from
:func:`actionlab.experiments.param`) plus ``--preset`` / ``--quick`` /
``--full``; the commands that are not experiments (``data``, ``study``,
``report``) live in :mod:`actionlab.commands`. Every command takes ``--out
DIR``, ``--seed``, ``--device`` and ``--dtype``.

Start-up is cheap: :data:`COMMANDS`, a static index (name → module, one-line
help), answers ``actionlab --help`` without importing torch or any
experiment, and ``actionlab CMD …`` imports only CMD's module (the tests check
the index against the registry, so it cannot go stale). A name outside the
index (an experiment registered by a plug-in) falls back to importing every
experiment.

Every input is checked at the edge, before any work: the config fields
(:func:`actionlab.experiments.check_config`), ``--out`` (not empty, not a
file, not below a file, writable: :func:`actionlab.config.check_out_dir`)
and ``--device`` (:func:`actionlab.config.resolve_device`: ``tpu``, ``meta``
or ``cuda`` without a GPU are refused).

Errors: a user error (:class:`actionlab.ActionlabError`) or an operating
system error (a full disk, a permission) prints one line ``actionlab CMD:
error: …`` and exits 2; Ctrl-C prints ``actionlab CMD: error: interrupted``
and exits 130. An experiment that fails leaves its run folder marked
``FAILED`` (:func:`actionlab.runs.mark_failed`, with the traceback), never
with only a ``RUNNING`` marker. An experiment's run folder is locked while the
command runs (:func:`actionlab.runs.acquire_lock`): a second command on the
same ``--out`` fails at once, naming the holder's pid and start time.

``actionlab EXPERIMENT --print-config [--preset P] [flags]`` prints the
resolved config as JSON and exits, without running anything.

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set): ``torchrun
--nproc_per_node=N -m actionlab EXPERIMENT …`` initialises the default process
group (:func:`actionlab.distributed.init_from_env`; gloo for ``--device cpu``,
NCCL for ``cuda``, each process on the GPU ``LOCAL_RANK``) and hands it to the
experiment as ``RunOptions.group``; the experiment shards its data by rank.
Rank 0 alone checks, locks and writes the run folder (the other ranks'
:class:`actionlab.runs.RunFolder` writes nothing) and prints the summary; the
run folder (also the default one) is rank 0's on every rank. A check that
fails on one rank before the run raises on every rank
(:func:`actionlab.distributed.raise_together`); a rank that fails during the
run exits, which breaks its peers' pending collectives (and torchrun stops
them), and rank 0 marks the folder ``FAILED``. The process group is destroyed
when the command ends. Commands that are not experiments refuse to run under
a world size above 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shlex
import sys
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "index_parser", "common_parser", "options_from_args", "COMMANDS", "Command"]


@dataclass(frozen=True)
class Command:
    """One entry of the static command index."""

    module: str  # the module that registers the experiment, or that defines register(subparsers, common)
    help: str  # the one-line help of `actionlab --help` (for an experiment: its registered help)
    experiment: bool = False  # a registered experiment (True) or a hand-written command (False)


#: every command, in the order of ``actionlab --help``: the experiments (by their study order), then the rest
COMMANDS: dict[str, Command] = {
    "demo": Command("actionlab.experiments.demo", "train a small TwoLayer on the bundled digits (seconds)", True),
    "expand": Command("actionlab.experiments.expand", "exact Taylor coefficients S_0..S_K of the action (any order, "
                      "any activation) and the named terms", True),
    "notes-check": Command("actionlab.experiments.notes_check", "check every closed-form claim of the theory notes "
                           "000-002 against the exact expansion", True),
    "j-stats": Command("actionlab.experiments.j_stats", "range and distribution of J_αγ, J_αγδ on Fashion-MNIST per "
                       "preprocessing (note 001 §2.3)", True),
    "theta-star": Command("actionlab.experiments.theta_star", "train θ*, split S_2(θ*), S_3(θ*) into named terms, "
                          "histogram J, U·W and products (note 001 §2.3–2.4)", True),
    "embedding-dim": Command("actionlab.experiments.embedding_dim", "share of U·W in S_2(θ*) and U·W·W in S_3(θ*) "
                             "against the embedding dimension E (note 001 §2.4)", True),
    "scaling": Command("actionlab.experiments.scaling", "the notes' scaling script over seeds and embedding widths E: "
                       "test loss against parameter count, α(E) with intervals, model comparison (note 001)", True),
    "conjecture": Command("actionlab.experiments.conjecture", "the notes' all-orders series at θ* and along 0 → θ* "
                          "against the exact S (notes §2.5)", True),
    "early-stop": Command("actionlab.experiments.early_stop", "the §3 rule ∇S_T·∇S_E ≤ 0 against argmin S_E: "
                          "gradient-flow GD, then step size, batch size, optimizer and training-set size (notes §3)", True),
    "fim-spectrum": Command("actionlab.experiments.fim_spectrum", "FIM eigenvalue statistics m_λ, s_λ, λ_max of random "
                            "MLPs against mean-field theory (004)", True),
    "lr-bound": Command("actionlab.experiments.lr_bound", "critical learning rate r* = η*/(2(1+μ)/λ_max) of heavy-ball "
                        "GD at a minimum (004 Lemma 6), and the one-epoch colour map at initialisation", True),
    "rfim-check": Command("actionlab.experiments.rfim_check", "003 table 1 RFIM closed forms against the definition; "
                          "rank of g^y(w) against the number of samples", True),
    "rngd-mnist": Command("actionlab.experiments.rngd_mnist", "RNGD against SGD and Adam on MNIST MLPs (003 section 4, "
                          "figures 1-4)", True),
    "data": Command("actionlab.commands.data", "describe a data set: N, E, M, class counts and balance"),
    "study": Command("actionlab.commands.study", "run every registered experiment (resumable) and build the report"),
    "report": Command("actionlab.commands.report", "build one self-contained HTML report (and a Markdown twin) from "
                      "run folders"),
}

_DESCRIPTION = "Exact action expansions, Fisher spectra and relative natural gradient for neural classifiers."
_EPILOG = ("Run `actionlab COMMAND --help` for a command's options. Start with `actionlab demo --out runs/demo` "
           "(seconds, offline); `actionlab study --quick --out runs/study` runs every experiment and builds the report.")


def common_parser() -> argparse.ArgumentParser:
    """The parent parser with the options every command shares."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--out", default=None, metavar="DIR", help="run folder to write (default: runs/<command>-<timestamp>)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="floating-point precision")
    return p


def options_from_args(args: argparse.Namespace, argv: list[str] | None = None, check: bool = True):
    """The :class:`actionlab.config.RunOptions` of parsed arguments; ``command`` is ``actionlab`` + ``argv``.

    ``out`` stays ``None`` when ``--out`` was not given (each command knows its default). With
    ``check`` an empty ``--out`` and an unusable ``--device`` are refused here, before any work.
    """
    from actionlab._checks import ValueCheckError
    from actionlab.config import RunOptions, resolve_device

    out = args.out
    if check and isinstance(out, str) and not out.strip():
        raise ValueCheckError("--out is empty; give the folder to write, e.g. --out runs/my-run")
    if check:
        resolve_device(args.device)
    command = shlex.join(["actionlab", *argv]) if argv is not None else None
    return RunOptions(out=None if out is None else Path(out), seed=args.seed, device=args.device, dtype=args.dtype,
                      preset=getattr(args, "preset", None), command=command)


def _top_parser() -> argparse.ArgumentParser:
    from actionlab import __version__

    parser = argparse.ArgumentParser(prog="actionlab", description=_DESCRIPTION, epilog=_EPILOG)
    parser.add_argument("--version", action="version", version=f"actionlab {__version__}")
    return parser


def index_parser() -> argparse.ArgumentParser:
    """The top-level parser from :data:`COMMANDS` alone (no imports): ``--help``, ``--version``, unknown names."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        sub.add_parser(name, help=cmd.help, add_help=False)
    return parser


# ---------------------------------------------------------------------------------------
# experiments as subcommands
# ---------------------------------------------------------------------------------------


def _flag_type(tp: Any) -> tuple[Any, dict]:
    """(element type, argparse keyword arguments) for a config field's type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        return _flag_type(inner[0]) if inner else (str, {})
    if origin in (tuple, list):
        return (args[0] if args else str), {"nargs": "+"}
    if tp is bool:
        return bool, {"action": argparse.BooleanOptionalAction}
    if tp in (int, float, str, Path):
        return tp, {}
    return str, {}


def _field_help(f: dataclasses.Field, default: Any) -> str:
    """The field's help text, its default and its admissible values (argparse-escaped)."""
    meta = dict(f.metadata) if f.metadata else {}
    text = meta.get("help", "")
    shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
    extra = [] if default is None else [f"default: {shown}"]  # an optional field's help says what unset means
    if meta.get("choices") is not None:
        extra.append("one of: " + ", ".join(map(str, meta["choices"])))
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        extra.append(f"{'>' if meta.get('exclusive_min') else '>='} {lo}")
    if hi is not None:
        extra.append(f"<= {hi}")
    return (f"{text} ({'; '.join(extra)})" if extra else text).replace("%", "%%")


def _add_experiment(sub, exp, common) -> None:
    cfg = exp.config_cls
    presets = getattr(cfg, "PRESETS", {"default": {}})
    p = sub.add_parser(exp.name, parents=[common], help=exp.help, description=(cfg.__doc__ or exp.help).strip())
    p.add_argument("--preset", default="default", choices=list(presets),
                   help="parameter preset: " + ", ".join(presets) + " (default: default; a quick run's claims are indicative)")
    if "quick" in presets:
        p.add_argument("--quick", dest="preset", action="store_const", const="quick", help="same as --preset quick")
    if "full" in presets:
        p.add_argument("--full", dest="preset", action="store_const", const="full", help="same as --preset full")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (preset and flags) as JSON and exit without running")
    hints = typing.get_type_hints(cfg)
    g = p.add_argument_group(f"{exp.name} options (override the preset)")
    for f in dataclasses.fields(cfg):
        if f.name.startswith("_"):
            continue
        elem, kw = _flag_type(hints.get(f.name, str))
        if kw.get("nargs") and f.metadata and f.metadata.get("length"):
            kw["nargs"] = f.metadata["length"]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        if kw.get("action") is None:
            kw["type"] = elem
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None, help=_field_help(f, default), **kw)
    p.set_defaults(_handler=_experiment_handler(exp))


def _error_text(exc: BaseException) -> str:
    import traceback

    from actionlab._checks import ActionlabError

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, ActionlabError):
        return f"{type(exc).__name__}: {exc}"
    return "".join(traceback.format_exception(exc))


def _resolved_config(exp, args: argparse.Namespace):
    from actionlab.experiments import make_config

    overrides = {}
    for f in dataclasses.fields(exp.config_cls):
        v = getattr(args, f.name, None)
        overrides[f.name] = tuple(v) if isinstance(v, list) else v
    return make_config(exp.config_cls, args.preset, **overrides)


def _open_folder(name: str, options):
    """Rank 0: the default ``--out``, its checks and its lock; then every rank takes rank 0's folder.

    Returns rank 0's lock (None on the other ranks). A failed check raises on every rank.
    """
    from actionlab import distributed
    from actionlab.config import check_out_dir
    from actionlab.runs import acquire_lock, default_out

    lock, error = None, None
    if options.is_rank0:
        try:
            if options.out is None:
                options.out = default_out(name)
                options.command = f"{options.command} --out {shlex.quote(str(options.out))}"
            check_out_dir(options.out)
            lock = acquire_lock(options.out, options.command)
        except Exception as exc:  # noqa: BLE001 - raised on every rank below
            error = exc
    distributed.raise_together(error, options.group)
    options.out, options.command = distributed.broadcast_object((options.out, options.command), options.group)
    return lock


def _experiment_handler(exp):
    def handler(args: argparse.Namespace, options) -> int:
        from actionlab.runs import folder_state, mark_failed, to_jsonable

        config = _resolved_config(exp, args)
        if getattr(args, "print_config", False):
            if options.is_rank0:
                print(json.dumps(to_jsonable(dataclasses.asdict(config)), indent=2, allow_nan=False))
            return 0
        lock = _open_folder(exp.name, options)
        try:
            try:
                exp.run(config, options)
            except BaseException as exc:
                if options.is_rank0:
                    mark_failed(options.out, _error_text(exc), command=options.command)
                raise
            if options.is_rank0 and folder_state(options.out) != "finished":
                mark_failed(options.out, "the experiment returned without finishing its run folder",
                            command=options.command)
                raise RuntimeError(f"experiment {exp.name!r} returned without finishing its run folder "
                                   f"{options.out} (it must call RunFolder.finish())")
        finally:
            if lock is not None:
                lock.release()
        if not options.is_rank0:
            return 0
        summary = Path(options.out) / "summary.md"
        if summary.exists():
            print(summary.read_text(encoding="utf-8", errors="replace"))
        print(f"run folder: {options.out}")
        return 0

    handler.distributed = True  # type: ignore[attr-defined]  # runs under torchrun (the group on RunOptions)
    return handler


# ---------------------------------------------------------------------------------------
# the parser and main
# ---------------------------------------------------------------------------------------


def build_parser(names: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser with full subcommands: every command (``names=None``; imports every module) or only ``names``.

    With ``names=None`` an experiment registered outside :data:`COMMANDS` gets its subcommand too.
    """
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser()
    for name in (COMMANDS if names is None else names):
        cmd = COMMANDS[name]
        module = importlib.import_module(cmd.module)
        if cmd.experiment:
            from actionlab.experiments import EXPERIMENTS

            _add_experiment(sub, EXPERIMENTS[name], common)
        else:
            module.register(sub, common)
    if names is None:
        from actionlab.experiments import load_all

        for exp in sorted(load_all().values(), key=lambda e: (e.order, e.name)):
            if exp.name not in sub.choices:
                _add_experiment(sub, exp, common)
    return parser


def _launched_by_torchrun() -> bool:
    import os

    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _interrupt(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    raise KeyboardInterrupt


def _start_group(args: argparse.Namespace, options):
    """Under torchrun: the default process group for ``--device`` (None otherwise), set on ``options``.

    The command that repeats the run is prefixed with the torchrun launch; SIGTERM (torchrun stopping
    the ranks after one failed) becomes an interrupt, so the run folder is marked failed.
    """
    import os
    import signal

    from actionlab._checks import ValueCheckError

    if not _launched_by_torchrun():
        return None
    if not getattr(args._handler, "distributed", False):
        if int(os.environ["WORLD_SIZE"]) > 1:
            raise ValueCheckError(f"actionlab {args.command} does not run under torchrun with WORLD_SIZE > 1 (only "
                                  f"experiments do); run it as one process")
        return None
    from actionlab import distributed
    from actionlab.config import resolve_device

    group = distributed.init_from_env(resolve_device(args.device))
    options.group = group
    size = options.world_size
    if size > 1:
        signal.signal(signal.SIGTERM, _interrupt)
        nodes = size // int(os.environ.get("LOCAL_WORLD_SIZE", size))
        launch = f"torchrun --nproc_per_node={os.environ.get('LOCAL_WORLD_SIZE', size)}"
        launch += f" --nnodes={nodes}" if nodes > 1 else ""
        if options.command and options.command.startswith("actionlab "):
            options.command = f"{launch} -m {options.command}"
    return group


def _stop_group(group) -> None:
    if group is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    group, rank = None, ""
    try:
        options = options_from_args(args, argv, check=not getattr(args, "print_config", False))
        group = _start_group(args, options)
        if group is not None and options.world_size > 1:
            from actionlab import distributed

            rank = f" (rank {distributed.world(group)[0]})"
        return int(args._handler(args, options) or 0)
    except KeyboardInterrupt:
        print(f"actionlab {args.command}{rank}: error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from actionlab._checks import ActionlabError

        if isinstance(exc, ActionlabError):
            print(f"actionlab {args.command}{rank}: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):  # a full disk, a permission, a vanished folder: the system's one line
            where = f": {exc.filename}" if exc.filename else ""
            print(f"actionlab {args.command}{rank}: error: {exc.strerror or exc}{where}", file=sys.stderr)
            return 2
        raise
    finally:
        _stop_group(group)


def main(argv: list[str] | None = None) -> int:
    """Run ``actionlab ARGV``; returns the exit status (argparse exits 2 on a bad command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    try:
        if name is None:  # --help, --version or nothing: the static index is enough
            parser = index_parser()
            parser.parse_args(argv)
            parser.print_help()
            return 0
        parser = build_parser([name]) if name in COMMANDS else build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print(f"actionlab{' ' + name if name else ''}: error: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 0
    return _dispatch(args, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
