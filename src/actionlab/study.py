"""``actionlab study``: every registered experiment, one after the other, resumably.

The study folder holds one run folder per experiment (``DIR/<name>/``, in the
format of `actionlab.runs`) and an index, ``DIR/study.json``:

    DIR/
      study.json          # what ran, with which preset and seed, status, wall time, errors
      expand/             # results.json, *.png, summary.md, provenance.json
      notes-check/
      ...

Rules (so that a long study can be stopped and started again):

* experiments run in registry order (``order``, then name);
* a run folder with ``results.json`` and no ``RUNNING`` marker is *finished*
  and is kept (status ``cached``) unless ``rerun=True`` — or unless it was
  made with another configuration or seed (status ``stale``: it is rerun);
* a run folder with a ``RUNNING`` marker was *interrupted* (or a previous
  experiment crashed): it is deleted and the experiment starts again from a
  clean folder;
* an experiment that raises is recorded as ``failed`` with its traceback, both
  in ``study.json`` and in ``DIR/<name>/ERROR.txt``; the study goes on with
  the next one, and a later study retries it;
* ``study.json`` is rewritten (atomically) after every experiment, so it is
  valid whenever the study is stopped.

Members: every registered experiment (``actionlab.experiments``), plus every
hand-written command of ``actionlab.commands`` that opts in with a module-level
``STUDY`` dict (see `CommandExperiment`): such a command is run as
``actionlab <name> <preset arguments> --out DIR/<name> --seed … --device … --dtype …``
and must write a run folder there.

Each experiment is called as ``run(config, RunOptions(out=DIR/<name>, ...))``
with the config of the requested preset (``default`` when the experiment has
no such preset). While it runs, ``sys.argv`` reads as the equivalent single
command (``actionlab <name> --preset quick --out DIR/<name> --seed 0 ...``),
so the provenance every run folder records is the command that repeats that
one run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actionlab._checks import ValueCheckError
from actionlab.config import RunOptions, seed_everything
from actionlab.runs import VERDICTS, provenance, to_jsonable

__all__ = [
    "StudyEntry",
    "Study",
    "CommandExperiment",
    "study_members",
    "run_study",
    "plan_study",
    "run_state",
    "load_study",
    "STUDY_FILE",
    "STATUSES",
    "RUN_STATES",
]

STUDY_FILE = "study.json"
ERROR_FILE = "ERROR.txt"

#: status of an experiment in ``study.json``
STATUSES = ("pending", "running", "done", "cached", "failed", "interrupted")
#: state of a run folder on disk, see `run_state`
RUN_STATES = ("absent", "finished", "running", "failed", "incomplete")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_state(path: str | Path) -> str:
    """The state of a run folder on disk.

    ``absent`` (no folder), ``finished`` (``results.json`` and no ``RUNNING``
    marker), ``running`` (a ``RUNNING`` marker: in progress or interrupted),
    ``failed`` (an ``ERROR.txt`` written by the study and no results) or
    ``incomplete`` (a folder with neither).
    """
    p = Path(path)
    if not p.is_dir():
        return "absent"
    if (p / "RUNNING").exists():
        return "running"
    if (p / "results.json").is_file():
        return "finished"
    if (p / ERROR_FILE).is_file():
        return "failed"
    return "incomplete"


@dataclass
class StudyEntry:
    """One experiment of a study, as recorded in ``study.json``."""

    name: str
    folder: str  # run folder, relative to the study folder
    sources: list[str] = field(default_factory=list)
    help: str = ""
    order: int = 100
    status: str = "pending"
    preset: str | None = None
    command: str | None = None
    started: str | None = None
    finished: str | None = None
    wall_time_s: float | None = None
    claims: dict[str, int] = field(default_factory=dict)  # verdict -> count
    figures: int = 0
    note: str = ""  # why it was rerun / which preset was used instead
    error: str | None = None  # one line
    traceback: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudyEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Study:
    """The index of a study folder (the content of ``study.json``)."""

    out: Path
    preset: str
    seed: int
    device: str
    dtype: str
    entries: list[StudyEntry] = field(default_factory=list)
    command: str = ""
    started: str | None = None
    finished: str | None = None
    provenance: dict = field(default_factory=dict)

    def entry(self, name: str) -> StudyEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    @property
    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for e in self.entries:
            c[e.status] = c.get(e.status, 0) + 1
        return c

    @property
    def failed(self) -> list[StudyEntry]:
        return [e for e in self.entries if e.status in ("failed", "interrupted")]

    def to_json(self) -> dict:
        return {
            "study": {
                "preset": self.preset,
                "seed": self.seed,
                "device": self.device,
                "dtype": self.dtype,
                "command": self.command,
                "started": self.started,
                "finished": self.finished,
                "provenance": self.provenance,
            },
            "counts": self.counts,
            "experiments": [to_jsonable(e) for e in self.entries],
        }

    def save(self) -> Path:
        """Write ``study.json`` atomically (a temporary file, then a rename)."""
        self.out.mkdir(parents=True, exist_ok=True)
        target = self.out / STUDY_FILE
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False))
        os.replace(tmp, target)
        return target


def load_study(path: str | Path) -> Study | None:
    """Read ``study.json`` of a study folder (or the file itself); ``None`` when there is none."""
    p = Path(path)
    f = p if p.name == STUDY_FILE else p / STUDY_FILE
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        from actionlab._checks import DataError

        raise DataError(f"{f} is not valid JSON ({exc}); delete it and rerun `actionlab study` to rebuild it") from exc
    s = data.get("study", {})
    study = Study(
        out=f.parent,
        preset=s.get("preset", "default"),
        seed=s.get("seed", 0),
        device=s.get("device", "cpu"),
        dtype=s.get("dtype", "float32"),
        command=s.get("command", ""),
        started=s.get("started"),
        finished=s.get("finished"),
        provenance=s.get("provenance", {}),
    )
    study.entries = [StudyEntry.from_dict(e) for e in data.get("experiments", [])]
    return study


@dataclass(frozen=True)
class CommandExperiment:
    """A hand-written command of ``actionlab.commands`` taken into the study.

    A command module opts in with a module-level dict::

        STUDY = {
            "sources": ("000", "001", "002"),   # documents whose claims it checks
            "order": 5,                         # position in the study
            "help": "what it measures",         # default: the parser's help
            "presets": {"quick": ["--no-fashion"], "default": [], "full": []},  # extra arguments
        }

    The study then runs ``actionlab <name> <preset arguments> --out DIR/<name>
    --seed S --device D --dtype T`` in-process (through `actionlab.cli.main`);
    the command must write a run folder at ``--out``. Its config, as far as
    the study sees it, is the argument list of the preset.
    """

    name: str
    config_cls: type
    run: Any
    help: str = ""
    sources: tuple[str, ...] = ()
    order: int = 100

    def command_line(self, config: Any, out: Path, seed: int, device: str, dtype: str) -> list[str]:
        return ["actionlab", self.name, *config.argv, "--out", str(out), "--seed", str(seed), "--device", device, "--dtype", dtype]

    @classmethod
    def from_module(cls, name: str, module: Any) -> CommandExperiment:
        spec = dict(getattr(module, "STUDY"))
        raw = spec.get("presets") or {"default": []}
        presets = {k: {"argv": tuple(str(a) for a in v)} for k, v in raw.items()}
        presets.setdefault("default", {"argv": ()})
        cfg = dataclasses.make_dataclass(
            f"{name.replace('-', '_')}_command_config",
            [("argv", tuple, field(default=()))],
            namespace={"PRESETS": presets, "__doc__": f"Extra arguments of `actionlab {name}` in the study."},
        )

        def run(config: Any, options: RunOptions) -> None:
            import io

            from actionlab.cli import main

            argv = [name, *config.argv, "--out", str(options.out), "--seed", str(options.seed),
                    "--device", str(options.device), "--dtype", str(options.dtype)]
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = main(argv)
                except SystemExit as exc:  # argparse rejects the arguments
                    rc = exc.code if isinstance(exc.code, int) else 1
            if rc:
                tail = (err.getvalue().strip() or out.getvalue().strip())[-2000:]
                raise RuntimeError(f"`actionlab {' '.join(argv)}` exited with status {rc}: {tail}")

        doc = (module.__doc__ or "").strip().splitlines()
        first = doc[0].strip() if doc else name
        helptext = spec.get("help") or re.sub(r"^``actionlab [\w-]+``:\s*", "", first)
        return cls(name, cfg, run, helptext, tuple(spec.get("sources", ())), int(spec.get("order", 100)))


def study_members() -> dict[str, Any]:
    """Every member of the study: the registered experiments, then the commands with a ``STUDY`` dict."""
    import importlib
    import pkgutil

    import actionlab.commands as commands_pkg
    from actionlab.experiments import load_all

    members: dict[str, Any] = dict(load_all())
    for mod in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"actionlab.commands.{mod.name}")
        if isinstance(getattr(module, "STUDY", None), Mapping):
            name = getattr(module, "STUDY").get("name") or mod.name.replace("_", "-")
            if name not in members:
                members[name] = CommandExperiment.from_module(name, module)
    return members


def _registry(experiments: Mapping[str, Any] | Iterable[Any] | None) -> list[Any]:
    if experiments is None:
        experiments = study_members()
    items = list(experiments.values()) if isinstance(experiments, Mapping) else list(experiments)
    return sorted(items, key=lambda e: (getattr(e, "order", 100), e.name))


def _split_names(names: Iterable[str] | str | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        out.extend(x.strip() for x in str(n).split(",") if x.strip())
    return out


def plan_study(
    only: Iterable[str] | str | None = None,
    skip: Iterable[str] | str | None = None,
    experiments: Mapping[str, Any] | Iterable[Any] | None = None,
) -> list[Any]:
    """The experiments a study runs, in registry order (``order``, then name).

    ``only`` / ``skip`` take names (a list, or one comma-separated string);
    an unknown name is an error that lists the registered ones.
    """
    exps = _registry(experiments)
    known = [e.name for e in exps]
    only_l, skip_l = _split_names(only), _split_names(skip)
    unknown = [n for n in only_l + skip_l if n not in known]
    if unknown:
        raise ValueCheckError(
            f"unknown experiment(s) {', '.join(unknown)}; registered: {', '.join(known) or '(none)'}"
        )
    if only_l:
        exps = [e for e in exps if e.name in only_l]
    return [e for e in exps if e.name not in skip_l]


def _config_for(exp: Any, preset: str) -> tuple[Any, str, str]:
    """(config, preset used, note) — falls back to ``default`` when the experiment lacks ``preset``."""
    from actionlab.experiments import make_config

    presets = getattr(exp.config_cls, "PRESETS", {"default": {}})
    if preset in presets:
        return make_config(exp.config_cls, preset), preset, ""
    fallback = "default" if "default" in presets else next(iter(presets))
    return (
        make_config(exp.config_cls, fallback),
        fallback,
        f"no preset {preset!r}; ran preset {fallback!r}",
    )


def _command(name: str, preset: str, out: Path, seed: int, device: str, dtype: str) -> list[str]:
    return ["actionlab", name, "--preset", preset, "--out", str(out), "--seed", str(seed), "--device", device, "--dtype", dtype]


@contextlib.contextmanager
def _argv(argv: list[str]):
    old = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = old


def _read_results(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _stale_reason(folder: Path, config: Any, seed: int) -> str | None:
    """Why a finished run folder does not match the requested run (None when it does)."""
    data = _read_results(folder)
    if data is None:
        return "results.json is unreadable"
    stored = data.get("config")
    wanted = json.loads(json.dumps(to_jsonable(config)))
    if isinstance(stored, dict) and isinstance(wanted, dict):
        changed = sorted(k for k in wanted if k in stored and stored[k] != wanted[k])
        if changed:
            return f"configuration changed ({', '.join(changed)})"
    prov_seed = (data.get("provenance") or {}).get("seed")
    if prov_seed is not None and prov_seed != seed:
        return f"seed changed ({prov_seed} -> {seed})"
    return None


def _fill_from_results(entry: StudyEntry, folder: Path) -> None:
    data = _read_results(folder) or {}
    counts = {v: 0 for v in VERDICTS}
    for c in data.get("claims") or []:
        v = c.get("verdict", "not yet measured") if isinstance(c, dict) else "not yet measured"
        counts[v] = counts.get(v, 0) + 1
    entry.claims = {k: v for k, v in counts.items() if v}
    entry.figures = len(data.get("figures") or [])
    prov = data.get("provenance") or {}
    if entry.wall_time_s is None and isinstance(prov.get("wall_time_s"), (int, float)):
        entry.wall_time_s = float(prov["wall_time_s"])
    entry.command = entry.command or prov.get("command")
    entry.finished = entry.finished or prov.get("date")


def _claims_text(entry: StudyEntry) -> str:
    if not entry.claims:
        return "no claims"
    return ", ".join(f"{n} {v}" for v, n in entry.claims.items())


def run_study(
    out: str | Path,
    *,
    preset: str = "quick",
    only: Iterable[str] | str | None = None,
    skip: Iterable[str] | str | None = None,
    rerun: bool = False,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    progress: bool | None = None,
    experiments: Mapping[str, Any] | Iterable[Any] | None = None,
    log: Any = None,
) -> Study:
    """Run the registered experiments into ``out/<name>/`` and keep ``out/study.json`` up to date.

    * ``out``: the study folder (created when absent);
    * ``preset``: ``quick``, ``default`` or ``full``; an experiment without
      that preset runs its ``default`` (noted in ``study.json``);
    * ``only``, ``skip``: experiment names to run / leave out (lists or
      comma-separated);
    * ``rerun``: rerun experiments whose run folder is already finished;
    * ``seed``, ``device``, ``dtype``: the common options, passed to every
      experiment;
    * ``progress``: one overall tqdm bar (``None``: only on a terminal);
    * ``experiments``: the members to run (default: `study_members`, the
      registered experiments and the commands that opt in);
    * ``log``: a callable taking one line per experiment status (default:
      ``tqdm.write``).

    Returns the `Study`; failed experiments are in ``study.failed``.
    ``KeyboardInterrupt`` marks the running experiment ``interrupted``, saves
    ``study.json`` and is raised again.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if preset not in ("quick", "default", "full"):
        raise ValueCheckError(f"unknown preset {preset!r}; choose one of: quick, default, full")
    plan = plan_study(only=only, skip=skip, experiments=experiments)
    out.mkdir(parents=True, exist_ok=True)

    previous = load_study(out)
    study = Study(
        out=out,
        preset=preset,
        seed=seed,
        device=device,
        dtype=dtype,
        command=" ".join([Path(sys.argv[0]).name or "actionlab", *sys.argv[1:]]),
        started=_now(),
        provenance=provenance(seed=seed),
    )
    # entries of experiments outside this plan (an earlier study, --only) are kept
    planned = {e.name for e in plan}
    kept = [e for e in (previous.entries if previous else []) if e.name not in planned]
    for exp in plan:
        study.entries.append(
            StudyEntry(
                name=exp.name,
                folder=exp.name,
                sources=list(getattr(exp, "sources", ())),
                help=getattr(exp, "help", ""),
                order=getattr(exp, "order", 100),
            )
        )
    study.entries = sorted(study.entries + kept, key=lambda e: (e.order, e.name))
    study.save()

    write = log if log is not None else tqdm.write
    bar = tqdm(
        total=len(plan),
        desc="study",
        unit="experiment",
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} experiments [{elapsed}{postfix}]",
        disable=(None if progress is None else not progress),
    )

    def postfix() -> None:
        c = study.counts
        bar.set_postfix_str(" ".join(f"{k}={c[k]}" for k in ("done", "cached", "failed") if c.get(k)))

    try:
        for i, exp in enumerate(plan, 1):
            entry = study.entry(exp.name)
            assert entry is not None
            folder = out / entry.folder
            bar.set_description(f"study: {exp.name}")
            try:
                config, used, note = _config_for(exp, preset)
            except Exception as exc:  # a broken preset is this experiment's failure, not the study's
                entry.status, entry.error, entry.traceback = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()
                write(f"[{i}/{len(plan)}] {exp.name}: failed to build its config: {entry.error}")
                study.save()
                bar.update(1)
                postfix()
                continue
            entry.preset, entry.note = used, note
            if hasattr(exp, "command_line"):
                cmd = exp.command_line(config, folder, seed, device, dtype)
            else:
                cmd = _command(exp.name, used, folder, seed, device, dtype)
            state = run_state(folder)
            reason = ""
            if state == "finished" and not rerun:
                stale = _stale_reason(folder, config, seed)
                before = previous.entry(exp.name) if previous else None
                if stale is None and before is not None and before.command and f"--dtype {dtype}" not in before.command:
                    stale = f"dtype changed (now {dtype})"
                if stale is None:
                    entry.status, entry.error, entry.traceback = "cached", None, None
                    _fill_from_results(entry, folder)
                    write(f"[{i}/{len(plan)}] {exp.name}: finished earlier, kept ({_claims_text(entry)}); --rerun to redo")
                    study.save()
                    bar.update(1)
                    postfix()
                    continue
                reason = f"rerun: {stale}"
            elif state == "finished":
                reason = "rerun: asked for"
            elif state == "running":
                reason = "restarted: the previous run was interrupted"
            elif state == "failed":
                reason = "retried: the previous run failed"
            elif state == "incomplete":
                reason = "restarted: the folder held no results"
            if state != "absent":
                shutil.rmtree(folder)
            entry.note = "; ".join(x for x in (note, reason) if x)
            entry.status, entry.command = "running", " ".join(cmd)
            entry.started, entry.finished, entry.wall_time_s = _now(), None, None
            entry.error = entry.traceback = None
            entry.claims, entry.figures = {}, 0
            study.save()
            options = RunOptions(out=folder, seed=seed, device=device, dtype=dtype)
            t0 = time.perf_counter()
            try:
                seed_everything(seed)
                with _argv(cmd):
                    exp.run(config, options)
                if run_state(folder) != "finished":
                    raise RuntimeError(
                        f"experiment {exp.name!r} returned without finishing its run folder {folder} "
                        "(no results.json, or a RUNNING marker left): it must call RunFolder.finish()"
                    )
            except KeyboardInterrupt:
                entry.status, entry.error = "interrupted", "KeyboardInterrupt"
                entry.wall_time_s = time.perf_counter() - t0
                raise
            except (Exception, SystemExit) as exc:  # sys.exit inside an experiment must not end the study
                entry.wall_time_s = time.perf_counter() - t0
                entry.status = "failed"
                entry.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                entry.traceback = traceback.format_exc()
                entry.finished = _now()
                folder.mkdir(parents=True, exist_ok=True)
                (folder / ERROR_FILE).write_text(f"{' '.join(cmd)}\n\n{entry.traceback}")
                (folder / "RUNNING").unlink(missing_ok=True)
                write(f"[{i}/{len(plan)}] {exp.name}: FAILED after {entry.wall_time_s:.1f} s: {entry.error} (traceback in {folder / ERROR_FILE})")
            else:
                entry.wall_time_s = time.perf_counter() - t0
                entry.status, entry.finished = "done", _now()
                _fill_from_results(entry, folder)
                write(f"[{i}/{len(plan)}] {exp.name}: done in {entry.wall_time_s:.1f} s ({_claims_text(entry)})")
            study.save()
            bar.update(1)
            postfix()
    finally:
        bar.close()
        study.finished = _now()
        study.save()
    return study
