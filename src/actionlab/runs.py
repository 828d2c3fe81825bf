"""Run folders: where every experiment writes what it measured.

A run folder holds

* ``results.json`` – the measured numbers (the experiment's Result dataclass,
  serialised by :func:`to_jsonable`), under the key ``"results"``, beside
  ``"experiment"``, ``"config"``, ``"claims"`` and ``"provenance"``;
* ``*.png`` – figures, listed in ``results.json`` under ``"figures"``;
* ``summary.md`` – claim by claim, what the source document says and what was
  measured;
* ``provenance.json`` – the command that repeats the run (as a user types it,
  e.g. ``actionlab demo --preset quick --out runs/demo``; handed in through
  ``RunOptions.command``, never read from ``sys.argv``), preset, seed, device,
  dtype, data, library versions, date, git commit, wall time.

Markers: this module is the one owner of the files that say what state a run
folder is in (:func:`folder_state` reads them; nothing else should look at
them):

* ``RUNNING`` – written when the :class:`RunFolder` opens, removed by
  :meth:`RunFolder.finish`. A folder that keeps it was interrupted (Ctrl-C in
  ``actionlab study``, a killed process) or is still being written;
* ``FAILED`` – written by :func:`mark_failed` when the command or experiment
  writing the folder raised (also on Ctrl-C of a single command): it holds the
  command and the error text (the traceback), and the ``RUNNING`` marker is
  removed, so a failed command never leaves a folder with only a ``RUNNING``
  marker. A new :class:`RunFolder` in the same folder removes it.

A folder with ``results.json`` and neither marker is *finished*.

Never losing data:

* every file of a run folder is written *atomically*
  (:func:`atomic_write_text` / :func:`atomic_write_bytes`: a temporary file in
  the same folder, flushed and fsync'ed, then ``os.replace``), figures too
  (saved to a temporary name, then renamed), so a reader — or a process
  killed mid-write — sees the old file or the new one, never half of one;
* a run folder is *locked* while a command writes it: ``LOCK`` (created with
  ``O_CREAT | O_EXCL``) holds the writer's pid, host name, start time and the
  process start time from ``/proc/<pid>/stat`` (so a reused pid is not
  mistaken for the writer). A second writer fails at once with
  :class:`FolderInUseError` ("run folder X is in use by pid N (started …);
  wait for it or choose another --out"); a lock whose process is gone is
  *stale* and taken over with a one-line note on stderr. :func:`lock_holder`
  says who holds a folder; the lock is released by :meth:`RunFolder.finish`,
  :func:`mark_failed`, the outermost holder (the CLI, ``actionlab study``) or
  at interpreter exit;
* :data:`MANIFEST` lists the files a :class:`RunFolder` wrote, so that
  :func:`clear_run_files` (``actionlab study`` restarting a member) deletes
  exactly those and the markers, never a file a user put beside them;
* :func:`read_results` validates ``results.json`` (UTF-8, a JSON object with
  ``config``, a ``claims`` list and an object ``provenance``) and says what is
  wrong instead of raising.

Strength: a claim measured under the ``quick`` preset is at most
``"indicative"`` — :class:`RunFolder` downgrades every claim of a quick run
(the preset comes with ``RunOptions.preset``).

Claims are rows ``{"source": "001", "claim": ..., "document_value": ...,
"measured": ..., "verdict": "holds" | "does not hold" | "not yet measured" |
"inconclusive", "details": ...}`` so that ``actionlab report`` can gather them
across run folders.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionlab._checks import ActionlabError
from actionlab._values import format_value

__all__ = ["RunFolder", "to_jsonable", "provenance", "Claim", "VERDICTS", "STRENGTHS", "default_out",
           "RUNNING", "FAILED", "LOCK", "MANIFEST", "FOLDER_STATES", "folder_state", "mark_failed", "failure_text",
           "atomic_write_text", "atomic_write_bytes", "atomic_savefig", "FolderInUseError", "LockInfo", "FolderLock",
           "acquire_lock", "lock_holder", "release_lock", "clear_run_files", "read_results", "RUN_FILES"]

#: marker file of a run folder that is being written (or was interrupted)
RUNNING = "RUNNING"
#: marker file of a run folder whose command raised; holds the command and the error text
FAILED = "FAILED"
_LEGACY_FAILED = "ERROR.txt"  # what `actionlab study` wrote before FAILED existed
#: lock file of a run folder being written: pid, host, start time of its writer (JSON)
LOCK = "LOCK"
#: the list of files a RunFolder wrote (JSON list of names), so that a restart deletes only those
MANIFEST = ".actionlab-files.json"
#: the files every run folder has (written by RunFolder.finish), besides its figures
RUN_FILES = ("results.json", "provenance.json", "summary.md")
#: the states :func:`folder_state` returns
FOLDER_STATES = ("absent", "running", "finished", "failed", "incomplete")

VERDICTS = ("holds", "does not hold", "inconclusive", "not yet measured")
STRENGTHS = ("firm", "indicative")


@dataclasses.dataclass
class Claim:
    """One claim of a source document set against a measurement."""

    source: str  # document id, e.g. "001" or "004"
    claim: str  # what the document says, in words
    document_value: Any = None  # the document's number or formula
    measured: Any = None  # what this run measured
    verdict: str = "not yet measured"
    details: str = ""  # how it was measured, tolerance, where it fails
    id: str = ""  # one stable identifier per claim, e.g. "001.j-range"; one experiment owns it
    # what the verdict rests on: preset, seeds, sample sizes, widths, the statistic, its
    # interval, the threshold used (plain JSON values)
    evidence: dict | None = None
    strength: str = "indicative"  # "firm" or "indicative" (quick preset, one seed, interval straddling the threshold)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.strength not in STRENGTHS:
            raise ValueError(f"strength must be one of {STRENGTHS}, got {self.strength!r}")
        if self.evidence is not None and not isinstance(self.evidence, dict):
            raise ValueError(f"evidence must be a dict (preset, seeds, statistic, interval, threshold, ...), got {type(self.evidence).__name__}")


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tensors, arrays, paths and numpy scalars to plain JSON types (NaN/inf become strings)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else str(x)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    return obj


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_dirty() -> bool | None:
    """Whether the checkout has uncommitted changes to tracked files (None outside a git checkout)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                             capture_output=True, text=True, timeout=5, check=False)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def provenance(seed: int | None = None, data: Any = None, extra: dict | None = None, command: str | None = None) -> dict:
    """Everything needed to repeat a run: command, seed, data description, versions, date, commit.

    ``command`` is the command line that repeats the run, as the caller knows
    it (the CLI and ``actionlab study`` pass ``RunOptions.command``); ``None``
    when the run was started from Python.
    """
    import scipy
    import sklearn

    from actionlab import __version__

    info = {
        "command": command,
        "seed": seed,
        "data": to_jsonable(data),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "versions": {
            "actionlab": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
    }
    if extra:
        info.update(to_jsonable(extra))
    return info


# ---------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_path(target: Path, suffix: str = ".tmp") -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)
    return Path(tmp)


def _commit(tmp: Path, target: Path) -> Path:
    """fsync ``tmp``, rename it onto ``target`` and fsync the folder."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    A reader (or a process killed mid-write) sees the previous file or the new one, never a part.
    """
    target = Path(path)
    tmp = _temp_path(target)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        return _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_savefig(fig, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` to a temporary name in the same folder, then rename onto ``path`` (format from its suffix)."""
    target = Path(path)
    kwargs.setdefault("format", target.suffix.lstrip(".") or "png")
    tmp = _temp_path(target)
    try:
        fig.savefig(tmp, **kwargs)
        return _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_temp_files(folder: Path) -> None:
    """Remove the temporary files an atomic write killed mid-way left (``.NAME.XXXX.tmp``)."""
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


# ---------------------------------------------------------------------------------------
# the lock of a run folder
# ---------------------------------------------------------------------------------------


class FolderInUseError(ActionlabError):
    """A run folder is being written by another live process (its ``LOCK`` names it)."""


def _note(message: str) -> None:
    """A one-line note for the user on stderr (stale lock taken over, ...)."""
    print(f"actionlab: note: {message}", file=sys.stderr)


def _proc_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":  # a zombie has finished: it writes nothing any more
            return -1
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """What a ``LOCK`` file says about the process writing a run folder."""

    pid: int
    hostname: str
    started: str  # ISO time the lock was taken
    proc_start: int | None = None  # /proc/<pid>/stat start time, to tell a reused pid apart
    command: str | None = None
    readable: bool = True  # False: the LOCK file could not be parsed (being written, or damaged)
    age_s: float = 0.0  # seconds since the LOCK file was last modified

    def describe(self) -> str:
        host = "" if self.hostname == socket.gethostname() else f" on host {self.hostname}"
        return f"pid {self.pid}{host} (started {self.started})"

    def alive(self) -> bool:
        """Whether the holder may still be writing: its pid exists with the recorded start time.

        A lock of another host cannot be checked and counts as alive; an unreadable one counts as
        alive for 10 s (it may be being written), then as stale.
        """
        if not self.readable:
            return self.age_s < 10.0
        if self.hostname != socket.gethostname():
            return True
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        now = _proc_start(self.pid)
        if now == -1:
            return False
        return self.proc_start is None or now is None or now == self.proc_start


def _read_lock(lock: Path) -> LockInfo | None:
    try:
        raw = lock.read_bytes()
        age = max(0.0, time.time() - lock.stat().st_mtime)
    except FileNotFoundError:
        return None
    except OSError:
        return LockInfo(0, "?", "?", readable=False, age_s=0.0)
    try:
        d = json.loads(raw.decode("utf-8"))
        return LockInfo(int(d["pid"]), str(d["hostname"]), str(d["started"]),
                        None if d.get("proc_start") is None else int(d["proc_start"]), d.get("command"), True, age)
    except (ValueError, KeyError, TypeError, AttributeError):
        return LockInfo(0, "?", "?", readable=False, age_s=age)


def lock_holder(folder: str | Path) -> LockInfo | None:
    """The live process (other than this one) holding ``folder``'s lock, or None (no lock, a stale one, or ours)."""
    info = _read_lock(Path(folder) / LOCK)
    if info is None or (info.readable and info.pid == os.getpid() and info.hostname == socket.gethostname()):
        return None
    return info if info.alive() else None


#: locks this process holds: resolved folder -> FolderLock
_HELD: dict[Path, FolderLock] = {}


class FolderLock:
    """This process's hold on a run folder's ``LOCK``; :meth:`release` removes it (when it is still ours)."""

    def __init__(self, folder: Path, info: LockInfo):
        self.folder, self.info = folder, info

    @property
    def path(self) -> Path:
        return self.folder / LOCK

    def release(self) -> None:
        _HELD.pop(self.folder.resolve(), None)
        current = _read_lock(self.path)
        if current is not None and current.readable and current.pid == self.info.pid \
                and current.started == self.info.started and self.info.pid == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _same_lock(a: LockInfo, b: LockInfo) -> bool:
    """Whether two reads of a LOCK file saw the same lock (its age aside)."""
    return (a.pid, a.hostname, a.started, a.proc_start, a.readable) == (b.pid, b.hostname, b.started, b.proc_start,
                                                                           b.readable)


def _try_create(lock: Path, info: LockInfo) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps({"pid": info.pid, "hostname": info.hostname, "started": info.started,
                                 "proc_start": info.proc_start, "command": info.command}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def acquire_lock(folder: str | Path, command: str | None = None) -> FolderLock | None:
    """Lock run folder ``folder`` (created when absent) for this process.

    Returns the new :class:`FolderLock`, or ``None`` when this process already holds the folder (the
    outer holder releases it). Raises :class:`FolderInUseError` when another live process holds it;
    a stale lock (its process is gone, or its pid now belongs to another process) is taken over with a
    one-line note.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD and (_HELD[key].path.is_file()):
        return None
    lock = folder / LOCK
    pid = os.getpid()
    info = LockInfo(pid, socket.gethostname(), _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    _proc_start(pid), command)
    for _ in range(5):
        if _try_create(lock, info):
            held = FolderLock(folder, info)
            _HELD[key] = held
            return held
        other = _read_lock(lock)
        if other is None:
            continue  # released meanwhile: try again
        if other.alive():
            raise FolderInUseError(f"run folder {folder} is in use by {other.describe()}; "
                                   "wait for it or choose another --out")
        again = _read_lock(lock)
        if again is not None and _same_lock(again, other):
            what = other.describe() if other.readable else "an unreadable lock"
            _note(f"run folder {folder}: taking over the stale lock of {what}, which is no longer running")
            lock.unlink(missing_ok=True)
    raise FolderInUseError(f"run folder {folder}: could not take its lock {lock} (other processes keep taking it); "
                           "wait for them or choose another --out")


def release_lock(folder: str | Path) -> None:
    """Release this process's lock on ``folder``, if it holds one."""
    held = _HELD.get(Path(folder).resolve())
    if held is not None:
        held.release()


@atexit.register
def _release_all() -> None:
    for held in list(_HELD.values()):
        with contextlib.suppress(OSError):
            held.release()


# ---------------------------------------------------------------------------------------
# what a run folder holds
# ---------------------------------------------------------------------------------------


def _manifest(folder: Path) -> list[str]:
    try:
        names = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _plain_name(name: Any) -> bool:
    """A file name directly inside the folder (no separators, no ``..``)."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def read_results(folder: str | Path) -> tuple[dict | None, str]:
    """``(payload, "")`` for a valid ``results.json`` of ``folder``, else ``(None, what is wrong)``.

    Valid: UTF-8 JSON, an object with a ``config`` (object or null), a ``claims`` list of objects and, when
    present, an object ``provenance`` and a ``figures`` list.
    """
    f = Path(folder) / "results.json"
    try:
        data = json.loads(f.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, "results.json is missing"
    except OSError as exc:
        return None, f"results.json cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return None, "results.json is not UTF-8 text"
    except ValueError as exc:
        return None, f"results.json is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"results.json holds a JSON {type(data).__name__}, not an object"
    if "config" not in data or not isinstance(data["config"], (dict, type(None))):
        return None, "results.json has no config"
    claims = data.get("claims")
    if not isinstance(claims, list) or not all(isinstance(c, dict) for c in claims):
        return None, "results.json has no claims list"
    if not all(isinstance(c.get("verdict", VERDICTS[-1]), str) for c in claims):
        return None, "results.json has a claim whose verdict is not a string"
    if not isinstance(data.get("provenance", {}), dict):
        return None, "results.json has a provenance that is not an object"
    if not isinstance(data.get("figures", []), list):
        return None, "results.json has a figures entry that is not a list"
    return data, ""


def clear_run_files(folder: str | Path) -> list[str]:
    """Delete what a run wrote in ``folder`` — the files in its manifest, its figures listed in
    ``results.json``, :data:`RUN_FILES` and the markers — and nothing else; returns the names deleted.

    A file a user put in the folder stays.
    """
    p = Path(folder)
    if not p.is_dir():
        return []
    data, _ = read_results(p)
    names = set(_manifest(p)) | set(RUN_FILES) | {RUNNING, FAILED, _LEGACY_FAILED, MANIFEST}
    names |= {n for n in (data or {}).get("figures", []) if isinstance(n, str) and n.endswith(".png")}
    removed = []
    for name in sorted(n for n in names if _plain_name(n) and n != LOCK):
        target = p / name
        if target.is_file() or target.is_symlink():
            target.unlink()
            removed.append(name)
    _remove_temp_files(p)
    return removed


def folder_state(path: str | Path) -> str:
    """The state of a run folder on disk, one of :data:`FOLDER_STATES`.

    ``absent`` (no folder), ``running`` (a ``RUNNING`` marker: being written,
    or interrupted), ``failed`` (a ``FAILED`` marker), ``finished``
    (``results.json`` and no marker) or ``incomplete`` (none of these).
    """
    p = Path(path)
    if not p.is_dir():
        return "absent"
    if (p / RUNNING).exists():
        return "running"
    if (p / FAILED).is_file() or ((p / _LEGACY_FAILED).is_file() and not (p / "results.json").is_file()):
        return "failed"
    if (p / "results.json").is_file():
        return "finished"
    return "incomplete"


def mark_failed(path: str | Path, error: str, *, command: str | None = None, create: bool = False) -> Path | None:
    """Mark a run folder failed: write ``FAILED`` (the command, then ``error``), remove ``RUNNING``, release the lock.

    Nothing is written when the folder does not exist, unless ``create``
    (``actionlab study`` records a failure even when the experiment raised
    before opening its folder), nor when another live process holds the
    folder's lock (it is that process's folder). Returns the marker's path, or ``None``.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        return None
    if not p.is_dir():
        if not create:
            return None
        p.mkdir(parents=True)
    if lock_holder(p) is not None:
        return None
    marker = atomic_write_text(p / FAILED, f"{command}\n\n{error}" if command else error)
    (p / RUNNING).unlink(missing_ok=True)
    release_lock(p)
    return marker


def failure_text(path: str | Path) -> str | None:
    """The text of a failed run folder's ``FAILED`` marker (command and error), or ``None``."""
    p = Path(path)
    for name in (FAILED, _LEGACY_FAILED):
        if (p / name).is_file():
            try:
                return (p / name).read_bytes().decode("utf-8", errors="replace")
            except OSError as exc:
                return f"({name} cannot be read: {exc})"
    return None


def default_out(name: str) -> Path:
    """``runs/<name>-<UTC timestamp>`` under the current directory."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


class RunFolder:
    """A folder that collects one experiment's results, figures, claims and provenance.

    Usage (``options`` is the experiment's :class:`actionlab.config.RunOptions`:
    its ``out``, ``seed``, ``preset`` and ``command`` go into the folder)::

        run = RunFolder(options, experiment="demo", config=cfg)
        run.save_figure(fig, "loss")            # loss.png
        run.add_claim(Claim(...))
        run.finish(result, summary_md)          # results.json, summary.md, provenance.json

    A plain path instead of ``options`` works too (no preset, no command).
    Under the ``quick`` preset every claim's strength becomes ``"indicative"``.

    Opening it takes the folder's lock (:func:`acquire_lock`; :class:`FolderInUseError`
    when another live process writes there), removes a ``FAILED`` marker and writes
    ``RUNNING``; every file goes through :func:`atomic_write_bytes` and into the
    manifest; :meth:`finish` removes ``RUNNING`` and releases the lock.

    Under a process group (``options.group``, set by the CLI under ``torchrun``) rank 0
    alone writes: on every other rank the folder is a *silent writer* — it neither creates,
    locks nor writes anything (``write_text``, ``save_figure``, ``finish`` only return the
    path they would have written; figures are closed), so an experiment calls it the same way
    on every rank. ``provenance.json`` records ``world_size`` and ``backend`` (1 and ``None``
    for one process).
    """

    def __init__(self, path: Any, experiment: str, config: Any = None, seed: int | None = None, data: Any = None):
        from actionlab import distributed
        from actionlab.config import check_out_dir

        options = None if isinstance(path, (str, Path)) else path
        if options is not None and getattr(options, "out", None) is None:
            raise ValueError("RunFolder needs RunOptions with an output folder (options.out is None)")
        group = getattr(options, "group", None)
        self.world = distributed.describe(group)
        #: whether this process writes the folder (rank 0 of the run's group; always for one process)
        self.writer = self.world["rank"] == 0
        target = options.out if options is not None else path
        self.path = check_out_dir(target) if self.writer else Path(target)
        self.experiment = experiment
        self.config = config
        self.seed = seed if seed is not None or options is None else options.seed
        self.data = data
        self.preset: str | None = getattr(options, "preset", None)
        self.command: str | None = getattr(options, "command", None)
        self._options = options
        self.figures: list[str] = []
        self.claims: list[Claim] = []
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        # what ran, fixed when the run starts (the checkout may move on while it runs)
        self._started = {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                         "git_commit": _git_commit(), "git_dirty": _git_dirty(),
                         "load_average_start": _load_average()}
        self._lock: FolderLock | None = None
        self._written: list[str] = []
        if not self.writer:
            return
        self._lock = acquire_lock(self.path, self.command)
        _remove_temp_files(self.path)
        self._written = _manifest(self.path)
        (self.path / FAILED).unlink(missing_ok=True)
        self._write(RUNNING, _dt.datetime.now(_dt.timezone.utc).isoformat().encode())

    def _record(self, name: str) -> None:
        if name not in self._written:
            self._written.append(name)
            atomic_write_text(self.path / MANIFEST, json.dumps(self._written))

    def _write(self, name: str, data: bytes) -> Path:
        if not _plain_name(name) or name in (LOCK, MANIFEST):
            raise ValueError(f"{name!r} is not a file name inside the run folder (no '/', not LOCK or the manifest)")
        if not self.writer:
            return self.path / name
        if name != RUNNING:
            self._record(name)
        return atomic_write_bytes(self.path / name, data)

    def write_text(self, name: str, text: str) -> Path:
        """Write ``name`` (a file directly in the folder) atomically and record it in the manifest."""
        return self._write(name, text.encode("utf-8"))

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write ``name`` (a file directly in the folder, e.g. a safetensors blob) atomically and record it."""
        return self._write(name, bytes(data))

    def save_figure(self, fig, name: str, dpi: int = 120) -> Path:
        """Save a matplotlib figure as ``name.png`` (atomically) and close it."""
        import matplotlib.pyplot as plt

        fname = name if name.endswith(".png") else f"{name}.png"
        if not _plain_name(fname):
            raise ValueError(f"figure name {name!r} must be a plain file name (no '/')")
        if not self.writer:
            plt.close(fig)
            target = self.path / fname
        else:
            self._record(fname)
            target = atomic_savefig(fig, self.path / fname, dpi=dpi, bbox_inches="tight")
            plt.close(fig)
        if target.name not in self.figures:
            self.figures.append(target.name)
        return target

    def add_claim(self, claim: Claim) -> Claim:
        """Record a claim; under the ``quick`` preset its strength is lowered to ``"indicative"``. Returns it."""
        if self.preset == "quick" and claim.strength != "indicative":
            claim = dataclasses.replace(claim, strength="indicative")
        self.claims.append(claim)
        return claim

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` (through :func:`to_jsonable`) as ``name``, atomically."""
        return self.write_text(name, json.dumps(to_jsonable(obj), indent=2, allow_nan=False))

    def finish(self, result: Any, summary: str | None = None) -> Path:
        """Write results.json, provenance.json and summary.md; remove the RUNNING marker; release the lock.

        On a rank other than 0 of the run's group nothing is written; the path of results.json is returned.
        """
        if not self.writer:
            return self.path / "results.json"
        wall = time.perf_counter() - self._t0
        extra: dict[str, Any] = {"preset": self.preset}
        if self._options is not None:
            extra.update(device=str(self._options.device), dtype=str(self._options.dtype))
        extra.update(world_size=self.world["world_size"], backend=self.world["backend"])
        extra["wall_time_s"] = wall
        # CPU seconds of this process (all its threads) and the machine's load: a wall time on a shared
        # machine means little without them
        extra["cpu_time_s"] = time.process_time() - self._cpu0
        extra.update(self._started, load_average_end=_load_average())
        prov = provenance(seed=self.seed, data=self.data, extra=extra, command=self.command)
        payload = {
            "experiment": self.experiment,
            "preset": self.preset,
            "config": to_jsonable(self.config),
            "results": to_jsonable(result),
            "claims": to_jsonable(self.claims),
            "figures": list(self.figures),
            "provenance": prov,
        }
        self.write_json("provenance.json", prov)
        if summary is not None:
            self.write_text("summary.md", summary)
        out = self.write_json("results.json", payload)
        (self.path / RUNNING).unlink(missing_ok=True)
        _fsync_dir(self.path)
        if self._lock is not None:
            self._lock.release()
        return out


def claims_table_md(claims: list[Claim]) -> str:
    """A Markdown table of claims (source, claim, document, measured, verdict, strength).

    Values are written as readable text (:func:`actionlab._values.format_value`: numbers to
    6 significant digits, a dict as ``key: value; …``), never as a JSON string, and never cut."""
    lines = ["| source | claim | document | measured | verdict | strength |", "|---|---|---|---|---|---|"]
    for c in claims:
        def cell(v: Any) -> str:
            s = v if isinstance(v, str) else format_value(to_jsonable(v))
            return s.replace("|", "\\|").replace("\n", " ")

        lines.append(f"| {c.source} | {cell(c.claim)} | {cell(c.document_value)} | {cell(c.measured)} "
                     f"| **{c.verdict}** | {c.strength} |")
    return "\n".join(lines) + "\n"


__all__.append("claims_table_md")
