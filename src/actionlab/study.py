"""``actionlab study``: every registered experiment, one after the other, resumably.

The study folder holds one run folder per experiment (``DIR/<name>/``, in the
format of `actionlab.runs`) and an index, ``DIR/study.json``:

    DIR/
      study.json          # what ran, with which preset and seed, status, wall time, errors
      demo/               # results.json, *.png, summary.md, provenance.json
      expand/
      notes-check/
      ...

Members: the registered experiments (:func:`actionlab.experiments.load_all`;
``expand`` and ``notes-check`` are experiments like the others).

Rules (so that a long study can be stopped and started again). For each
member, :func:`decide` looks at its run folder (:func:`actionlab.runs.folder_state`)
and says what to do; ``run_study`` then does it:

* experiments run in registry order (``order``, then name);
* a *finished* run folder is kept (status ``cached``) unless ``rerun=True`` —
  or unless it was made with another configuration, seed or dtype (it is
  rerun, and ``note`` says why);
* a finished folder whose ``results.json`` does not validate
  (:func:`actionlab.runs.read_results`: unreadable bytes, not a JSON object,
  no config or claims) is rerun, and ``note`` (also in the log line) says why;
* a *running* folder (a ``RUNNING`` marker: an interrupted study, a killed
  process), a *failed* one (a ``FAILED`` marker) or an *incomplete* one is
  run again; before it runs, the files an earlier run wrote (its manifest,
  figures, ``results.json``, markers: :func:`actionlab.runs.clear_run_files`)
  are deleted — never a file the study did not write, which stays beside the
  new results;
* a member folder locked by another live process (``LOCK``: a single command
  or another study writing it right now) is left alone: status ``busy``, with
  the holder's pid in ``note``; a path that is a file, not a folder, is
  ``failed`` with a message, and the file is kept;
* the study folder itself is locked while the study runs: a second study on
  the same folder fails at once naming the first one's pid and start time;
* a ``study.json`` that cannot be read (bad bytes, not JSON, not an object)
  is moved aside to ``study.json.corrupt-<time>`` with a one-line note and the
  index is rebuilt; malformed entries in it are dropped;
* an experiment that raises is recorded as ``failed`` with its traceback,
  both in ``study.json`` and in the run folder's ``FAILED`` marker
  (:func:`actionlab.runs.mark_failed`, with the command that repeats it); the
  study goes on with the next one, and a later study retries it;
* Ctrl-C marks the running experiment ``interrupted`` in ``study.json`` (its
  folder keeps the ``RUNNING`` marker, so the next study restarts it), saves
  ``study.json`` and is raised again;
* ``study.json`` is rewritten (atomically) after every experiment, so it is
  valid whenever the study is stopped.

Each experiment is called as ``run(config, RunOptions(out=DIR/<name>, seed,
device, dtype, preset, command))`` with the config of the requested preset
(``default`` when the experiment has no such preset); ``command`` is the
single command that repeats that one run (``actionlab <name> --preset quick
--out DIR/<name> --seed 0 --device cpu --dtype float32``), which its run
folder records as its provenance.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import shlex
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actionlab._checks import DataError, ValueCheckError
from actionlab.config import RunOptions, check_out_dir, seed_everything
from actionlab.runs import (
    FAILED,
    FOLDER_STATES,
    VERDICTS,
    FolderInUseError,
    acquire_lock,
    atomic_write_text,
    clear_run_files,
    folder_state,
    lock_holder,
    mark_failed,
    provenance,
    read_results,
    to_jsonable,
)

__all__ = [
    "StudyEntry",
    "Study",
    "Decision",
    "decide",
    "study_members",
    "run_study",
    "plan_study",
    "run_state",
    "load_study",
    "command_line",
    "STUDY_FILE",
    "ERROR_FILE",
    "STATUSES",
    "RUN_STATES",
]

STUDY_FILE = "study.json"
#: the marker of a failed run folder (owned by `actionlab.runs`; kept here under its old name)
ERROR_FILE = FAILED

#: status of an experiment in ``study.json``
STATUSES = ("pending", "running", "done", "cached", "failed", "interrupted", "busy")
#: state of a run folder on disk, see `actionlab.runs.folder_state`
RUN_STATES = FOLDER_STATES

#: the study's presets (an experiment without the one asked for runs its ``default``)
PRESETS = ("quick", "default", "full")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_state(path: str | Path) -> str:
    """The state of a run folder on disk: :func:`actionlab.runs.folder_state` (kept under this name)."""
    return folder_state(path)


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
        """The entry of a ``study.json`` row; fields of the wrong type are dropped (a DataError when the name
        or folder is unusable)."""
        if not isinstance(d, Mapping):
            raise DataError(f"a study.json entry is a JSON {type(d).__name__}, not an object")
        name, folder = d.get("name"), d.get("folder", d.get("name"))
        if not isinstance(name, str) or not name or not isinstance(folder, str) or Path(folder).name != folder \
                or folder in ("", ".", ".."):
            raise DataError(f"a study.json entry has no usable name/folder ({name!r}, {folder!r})")
        kept: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in d and _type_ok(f.name, d[f.name]):
                kept[f.name] = d[f.name]
        kept["folder"] = folder
        if kept.get("status") not in STATUSES:
            kept.pop("status", None)
        return cls(**kept)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "folder": (str,), "sources": (list,), "help": (str,), "order": (int,), "status": (str,),
    "preset": (str, type(None)), "command": (str, type(None)), "started": (str, type(None)),
    "finished": (str, type(None)), "wall_time_s": (int, float, type(None)), "claims": (dict,), "figures": (int,),
    "note": (str,), "error": (str, type(None)), "traceback": (str, type(None)),
}


def _type_ok(name: str, value: Any) -> bool:
    types_ = _FIELD_TYPES.get(name)
    return types_ is None or (isinstance(value, types_) and not (isinstance(value, bool) and bool not in types_))


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

    @property
    def busy(self) -> list[StudyEntry]:
        """Members left alone because another live process was writing their folder."""
        return [e for e in self.entries if e.status == "busy"]

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
        return atomic_write_text(self.out / STUDY_FILE, json.dumps(self.to_json(), indent=2, allow_nan=False))


def load_study(path: str | Path, notes: list[str] | None = None) -> Study | None:
    """Read ``study.json`` of a study folder (or the file itself); ``None`` when there is none.

    A file that is not UTF-8 JSON holding an object is a :class:`DataError`; entries that do not
    validate are dropped, with a line in ``notes`` (when given) saying which.
    """
    p = Path(path)
    f = p if p.name == STUDY_FILE else p / STUDY_FILE
    if not f.is_file():
        return None
    fix = "delete it (or move it away) and rerun `actionlab study` to rebuild it"
    try:
        data = json.loads(f.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{f} is not valid JSON ({exc}); {fix}") from exc
    except OSError as exc:
        raise DataError(f"{f} cannot be read ({exc.strerror or exc}); {fix}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("study", {}), dict) \
            or not isinstance(data.get("experiments", []), list):
        raise DataError(f"{f} is not a study index (a JSON object with 'study' and an 'experiments' list); {fix}")
    s = data.get("study", {})

    def get(key: str, default: Any, types_: tuple[type, ...] = (str,)) -> Any:
        v = s.get(key, default)
        return v if isinstance(v, types_) else default

    study = Study(
        out=f.parent,
        preset=get("preset", "default"),
        seed=get("seed", 0, (int,)),
        device=get("device", "cpu"),
        dtype=get("dtype", "float32"),
        command=get("command", ""),
        started=get("started", None),
        finished=get("finished", None),
        provenance=get("provenance", {}, (dict,)),
    )
    for i, e in enumerate(data.get("experiments", [])):
        try:
            study.entries.append(StudyEntry.from_dict(e))
        except DataError as exc:
            if notes is not None:
                notes.append(f"{f}: entry {i} dropped ({exc})")
    return study


def _previous_study(out: Path, log: Callable[[str], Any]) -> Study | None:
    """The earlier index of the study folder; an unreadable one is moved aside (kept) with a note."""
    notes: list[str] = []
    try:
        previous = load_study(out, notes)
    except DataError as exc:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        aside = out / f"{STUDY_FILE}.corrupt-{stamp}"
        (out / STUDY_FILE).replace(aside)
        log(f"note: {exc}; moved it to {aside.name} and started a new index")
        return None
    for n in notes:
        log(f"note: {n}")
    return previous


def study_members() -> dict[str, Any]:
    """Every member of the study: the registered experiments."""
    from actionlab.experiments import load_all

    return dict(load_all())


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
    return make_config(exp.config_cls, fallback), fallback, f"no preset {preset!r}; ran preset {fallback!r}"


def command_line(name: str, preset: str, out: Path, options: RunOptions) -> str:
    """The single command that repeats one member's run: ``actionlab NAME --preset P --out DIR/NAME --seed …``."""
    return shlex.join(["actionlab", name, "--preset", preset, "--out", str(out), "--seed", str(options.seed),
                       "--device", str(options.device), "--dtype", str(options.dtype)])


# ---------------------------------------------------------------------------------------
# deciding what to do with a member
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the study does with one member: keep its finished run folder, or (re)run it, and why."""

    run: bool
    reason: str = ""  # why it is (re)run; "" for a first run or a kept folder


_RESTART = {
    "running": "restarted: the previous run was interrupted",
    "failed": "retried: the previous run failed",
    "incomplete": "restarted: the folder held no results",
}


def _read_results(folder: Path) -> dict | None:
    return read_results(folder)[0]


def _stale_reason(folder: Path, config: Any, options: RunOptions, before: StudyEntry | None) -> str | None:
    """Why a finished run folder does not match the requested run (None when it does)."""
    data, problem = read_results(folder)
    if data is None:
        return problem
    stored = data.get("config")
    wanted = json.loads(json.dumps(to_jsonable(config)))
    if isinstance(stored, dict) and isinstance(wanted, dict):
        changed = sorted(k for k in wanted if k in stored and stored[k] != wanted[k])
        if changed:
            return f"configuration changed ({', '.join(changed)})"
    prov = data.get("provenance") or {}
    if prov.get("seed") is not None and prov["seed"] != options.seed:
        return f"seed changed ({prov['seed']} -> {options.seed})"
    dtype = str(options.dtype)
    if prov.get("dtype") is not None and prov["dtype"] != dtype:
        return f"dtype changed ({prov['dtype']} -> {dtype})"
    if prov.get("dtype") is None and before is not None and before.command and f"--dtype {dtype}" not in before.command:
        return f"dtype changed (now {dtype})"
    return None


def decide(folder: Path, config: Any, options: RunOptions, *, rerun: bool = False,
           before: StudyEntry | None = None) -> Decision:
    """What to do with a member whose run folder is ``folder``, from the folder's state (see the module's rules).

    ``before``: the member's entry in the previous ``study.json`` (for run folders that do not record
    their dtype).
    """
    state = folder_state(folder)
    if state == "absent":
        return Decision(True)
    if state == "finished":
        if rerun:
            return Decision(True, "rerun: asked for")
        stale = _stale_reason(folder, config, options, before)
        return Decision(False) if stale is None else Decision(True, f"rerun: {stale}")
    return Decision(True, _RESTART[state])


# ---------------------------------------------------------------------------------------
# doing it
# ---------------------------------------------------------------------------------------


def _fill_from_results(entry: StudyEntry, folder: Path) -> None:
    data = _read_results(folder) or {}
    counts = {v: 0 for v in VERDICTS}
    for c in data.get("claims") or []:
        v = c.get("verdict", "not yet measured")
        counts[v] = counts.get(v, 0) + 1
    entry.claims = {k: v for k, v in counts.items() if v}
    entry.figures = len(data.get("figures") or [])
    prov = data.get("provenance") or {}
    if entry.wall_time_s is None and isinstance(prov.get("wall_time_s"), (int, float)):
        entry.wall_time_s = float(prov["wall_time_s"])
    if isinstance(prov.get("command"), str):
        entry.command = entry.command or prov["command"]
    if isinstance(prov.get("date"), str):
        entry.finished = entry.finished or prov["date"]


def _claims_text(entry: StudyEntry) -> str:
    if not entry.claims:
        return "no claims"
    return ", ".join(f"{n} {v}" for v, n in entry.claims.items())


def _fail(entry: StudyEntry, exc: BaseException) -> None:
    entry.status = "failed"
    entry.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    entry.traceback = "".join(traceback.format_exception(exc))
    entry.finished = _now()


def _execute(exp: Any, config: Any, entry: StudyEntry, options: RunOptions, save: Callable[[], Any]) -> str:
    """Run one member into ``options.out`` (locked, the earlier run's files cleared), record the outcome
    in ``entry``; return the log line's tail.

    ``save`` is called once the entry reads ``running`` (so ``study.json`` says what is in progress).

    Ctrl-C marks the entry ``interrupted`` and is raised again (the folder keeps its ``RUNNING`` marker).
    """
    folder = Path(options.out)
    try:
        lock = acquire_lock(folder, options.command)
    except FolderInUseError as exc:
        entry.status, entry.error, entry.traceback = "busy", None, None
        return f"left alone: {exc}"
    try:
        clear_run_files(folder)
        entry.status, entry.command = "running", options.command
        entry.started, entry.finished, entry.wall_time_s = _now(), None, None
        entry.error = entry.traceback = None
        entry.claims, entry.figures = {}, 0
        save()
        return _run_member(exp, config, entry, options)
    finally:
        if lock is not None:
            lock.release()


def _run_member(exp: Any, config: Any, entry: StudyEntry, options: RunOptions) -> str:
    folder = Path(options.out)
    t0 = time.perf_counter()
    try:
        seed_everything(options.seed)
        exp.run(config, options)
        if folder_state(folder) != "finished":
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
        _fail(entry, exc)
        marker = mark_failed(folder, entry.traceback, command=options.command, create=True)
        return f"FAILED after {entry.wall_time_s:.1f} s: {entry.error} (traceback in {marker})"
    entry.wall_time_s = time.perf_counter() - t0
    entry.status, entry.finished = "done", _now()
    _fill_from_results(entry, folder)
    return f"done in {entry.wall_time_s:.1f} s ({_claims_text(entry)})"


def _member(exp: Any, entry: StudyEntry, study: Study, rerun: bool, before: StudyEntry | None) -> str:
    """Decide what to do with one member and do it; returns the log line's tail (with the note, if any)."""
    tail = _member_tail(exp, entry, study, rerun, before)
    return f"{entry.note}; {tail}" if entry.note and entry.status != "cached" else tail


def _member_tail(exp: Any, entry: StudyEntry, study: Study, rerun: bool, before: StudyEntry | None) -> str:
    folder = study.out / entry.folder
    try:
        config, used, note = _config_for(exp, study.preset)
    except Exception as exc:  # a broken preset is this experiment's failure, not the study's
        _fail(entry, exc)
        return f"failed to build its config: {entry.error}"
    if folder.exists() and not folder.is_dir():
        _fail(entry, DataError(f"{folder} is a file, not a run folder; move it away to run {exp.name}"))
        return f"not run: {entry.error}"
    holder = lock_holder(folder)
    if holder is not None:
        entry.status, entry.error, entry.traceback = "busy", None, None
        entry.note = f"in use by {holder.describe()}"
        return "left alone (another process is writing it); run the study again when it is done"
    common = RunOptions(seed=study.seed, device=study.device, dtype=study.dtype)
    options = dataclasses.replace(common, out=folder, preset=used,
                                  command=command_line(exp.name, used, folder, common))
    decision = decide(folder, config, options, rerun=rerun, before=before)
    entry.preset = used
    entry.note = "; ".join(x for x in (note, decision.reason) if x)
    if not decision.run:
        entry.status, entry.error, entry.traceback = "cached", None, None
        _fill_from_results(entry, folder)
        return f"finished earlier, kept ({_claims_text(entry)}); --rerun to redo"
    return _execute(exp, config, entry, options, study.save)


def _new_study(out: Path, preset: str, options: RunOptions, plan: list[Any], previous: Study | None) -> Study:
    """The study's index: one pending entry per planned member, beside the kept entries of earlier studies."""
    study = Study(out=out, preset=preset, seed=options.seed, device=str(options.device), dtype=str(options.dtype),
                  command=options.command or "", started=_now(),
                  provenance=provenance(seed=options.seed, command=options.command))
    planned = {e.name for e in plan}
    kept = [e for e in (previous.entries if previous else []) if e.name not in planned]
    for exp in plan:
        study.entries.append(StudyEntry(name=exp.name, folder=exp.name, sources=list(getattr(exp, "sources", ())),
                                        help=getattr(exp, "help", ""), order=getattr(exp, "order", 100)))
    study.entries = sorted(study.entries + kept, key=lambda e: (e.order, e.name))
    return study


def run_study(
    out: str | Path,
    *,
    preset: str = "quick",
    only: Iterable[str] | str | None = None,
    skip: Iterable[str] | str | None = None,
    rerun: bool = False,
    options: RunOptions | None = None,
    progress: bool | None = None,
    experiments: Mapping[str, Any] | Iterable[Any] | None = None,
    log: Callable[[str], Any] | None = None,
) -> Study:
    """Run the registered experiments into ``out/<name>/`` and keep ``out/study.json`` up to date.

    * ``out``: the study folder (created when absent);
    * ``preset``: ``quick``, ``default`` or ``full``; an experiment without
      that preset runs its ``default`` (noted in ``study.json``);
    * ``only``, ``skip``: experiment names to run / leave out (lists or
      comma-separated);
    * ``rerun``: rerun experiments whose run folder is already finished;
    * ``options``: seed, device and dtype of every experiment, and the
      command that started the study (``options.out`` is not used);
      default ``RunOptions()``;
    * ``progress``: one overall tqdm bar (``None``: only on a terminal);
    * ``experiments``: the members to run (default: `study_members`);
    * ``log``: a callable taking one line per experiment status (default:
      ``tqdm.write``).

    Returns the `Study`; failed experiments are in ``study.failed``, those
    another process was writing in ``study.busy``. ``KeyboardInterrupt``
    marks the running experiment ``interrupted``, saves ``study.json`` and is
    raised again. The study folder is locked while it runs
    (:class:`actionlab.runs.FolderInUseError` when another study holds it).
    """
    out = Path(out)
    if preset not in PRESETS:
        raise ValueCheckError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    options = options if options is not None else RunOptions()
    plan = plan_study(only=only, skip=skip, experiments=experiments)
    if log is None:
        from tqdm.auto import tqdm

        log = tqdm.write
    write = log
    check_out_dir(out)
    lock = acquire_lock(out, options.command)
    try:
        return _run_plan(out, preset, plan, rerun, options, progress, write)
    finally:
        if lock is not None:
            lock.release()


def _run_plan(out: Path, preset: str, plan: list[Any], rerun: bool, options: RunOptions, progress: bool | None,
              write: Callable[[str], Any]) -> Study:
    from tqdm.auto import tqdm

    previous = _previous_study(out, write)
    study = _new_study(out, preset, options, plan, previous)
    study.save()
    bar = tqdm(total=len(plan), desc="study", unit="experiment", disable=(None if progress is None else not progress),
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} experiments [{elapsed}{postfix}]")
    try:
        for i, exp in enumerate(plan, 1):
            entry = study.entry(exp.name)
            assert entry is not None
            bar.set_description(f"study: {exp.name}")
            before = previous.entry(exp.name) if previous else None
            write(f"[{i}/{len(plan)}] {exp.name}: {_member(exp, entry, study, rerun, before)}")
            study.save()
            bar.update(1)
            c = study.counts
            bar.set_postfix_str(" ".join(f"{k}={c[k]}" for k in ("done", "cached", "failed") if c.get(k)))
    finally:
        bar.close()
        study.finished = _now()
        study.save()
    return study
