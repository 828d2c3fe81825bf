"""Finding and reading run folders: finished runs, the ones that did not finish, study blocks.

The only module of the report that reads files. The state of a run folder
comes from its markers through `actionlab.runs.folder_state` /
`actionlab.runs.failure_text` (their one owner); ``study.json`` is read by
`actionlab.study.load_study`. Both are imported in `_marker_api` alone, so a
change of their names touches one place.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from actionlab._checks import DataError
from actionlab.runs import STRENGTHS, VERDICTS

from .model import Problem, RunFolderRecord

__all__ = ["collect", "read_run", "normalise_claim", "claim_key", "run_preset"]

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml", ".gif": "image/gif"}
_PRESET_RE = re.compile(r"--preset[= ](\S+)")


def _marker_api() -> tuple[Any, Any, Any]:
    """(folder_state, failure_text, load_study) — every import of the run-folder markers and study.json is here."""
    from actionlab.runs import failure_text, folder_state
    from actionlab.study import load_study

    return folder_state, failure_text, load_study


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def claim_key(claim: Mapping) -> str:
    """The claim's id, or ``"source | claim text"`` for a claim written without one (older run folders)."""
    cid = str(claim.get("id") or "").strip()
    return cid or f"{claim.get('source', '')} | {claim.get('claim', '')}"


def normalise_claim(c: Any) -> dict:
    """A claim of results.json with every field the report reads.

    An unknown verdict becomes ``inconclusive``; a missing or unknown
    ``strength`` (run folders written before claims had one) becomes
    ``indicative``; ``key`` is `claim_key`.
    """
    if not isinstance(c, Mapping):
        c = {"claim": str(c)}
    verdict = c.get("verdict", "not yet measured")
    if verdict not in VERDICTS:
        verdict = "inconclusive"
    strength = c.get("strength")
    out = {
        "id": str(c.get("id") or ""),
        "source": str(c.get("source", "") or ""),
        "claim": str(c.get("claim", "") or ""),
        "document_value": c.get("document_value"),
        "measured": c.get("measured"),
        "verdict": verdict,
        "strength": strength if strength in STRENGTHS else "indicative",
        "details": str(c.get("details", "") or ""),
        "evidence": c.get("evidence") if isinstance(c.get("evidence"), Mapping) else None,
    }
    out["key"] = claim_key(out)
    return out


def run_preset(results: Mapping, provenance: Mapping, study_preset: str | None = None) -> str | None:
    """The preset a run used: ``preset`` of results.json or its provenance, else the command line, else the study's entry."""
    for source in (results, provenance):
        if isinstance(source.get("preset"), str) and source["preset"]:
            return source["preset"]
    cmd = str(provenance.get("command") or "")
    m = _PRESET_RE.search(cmd)
    if m:
        return m.group(1)
    for flag in ("quick", "full"):
        if re.search(rf"(^|\s)--{flag}(\s|$)", cmd):
            return flag
    return study_preset or None


def _finished(provenance: Mapping, results_file: Path) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(str(provenance.get("date")))
        return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return _dt.datetime.fromtimestamp(results_file.stat().st_mtime, _dt.timezone.utc)


def read_run(path: str | Path, study_preset: str | None = None) -> RunFolderRecord:
    """Read one finished run folder (``results.json``, figures, provenance)."""
    p = Path(path)
    data = _read_json(p / "results.json")
    if not isinstance(data, Mapping):
        raise DataError(f"{p / 'results.json'} does not hold a JSON object")
    listed = [str(f) for f in (data.get("figures") or [])]
    figures = [f for f in listed if (p / f).is_file()]
    missing = [f for f in listed if not (p / f).is_file()]
    # figures written without RunFolder.save_figure still belong to the run
    extra = sorted(q.name for q in p.iterdir() if q.suffix.lower() in IMAGE_TYPES and q.name not in listed)
    prov = data.get("provenance")
    if not isinstance(prov, Mapping):
        prov = _read_json(p / "provenance.json") if (p / "provenance.json").is_file() else {}
    return RunFolderRecord(
        path=p,
        experiment=str(data.get("experiment") or p.name),
        config=data.get("config"),
        results=data.get("results"),
        claims=[normalise_claim(c) for c in (data.get("claims") or [])],
        figures=figures + extra,
        missing_figures=missing,
        provenance=dict(prov),
        has_summary=(p / "summary.md").is_file(),
        preset=run_preset(data, prov, study_preset),
        finished=_finished(prov, p / "results.json"),
    )


class _Collector:
    """Walks the given folders once; each run folder is visited at most once."""

    def __init__(self) -> None:
        self.folder_state, self.failure_text, self.load_study = _marker_api()
        self.runs: list[RunFolderRecord] = []
        self.problems: list[Problem] = []
        self.studies: list[dict] = []
        self.seen: set[Path] = set()

    def unfinished(self, folder: Path, state: str, entry: Any) -> Problem:
        name = getattr(entry, "name", None) or folder.name
        msg, tb, cmd = "", "", getattr(entry, "command", "") or ""
        status = getattr(entry, "status", None)
        if entry is not None and entry.error:
            msg, tb = entry.error, entry.traceback or ""
        elif self.failure_text(folder) is not None:
            tb = self.failure_text(folder)
            msg = next((ln for ln in reversed(tb.strip().splitlines()) if ln.strip()), "failed")
        if state == "running":
            st = "interrupted" if status in ("interrupted", "failed", "done", "cached") else "running"
            msg = msg or ("interrupted (a RUNNING marker is left); `actionlab study` restarts it" if st == "interrupted"
                          else "in progress or interrupted (a RUNNING marker is present)")
        else:
            st = "failed" if state == "failed" else "incomplete"
            msg = msg or "no results.json"
        return Problem(folder, name, st, msg, tb, cmd)

    def visit_run(self, folder: Path, entry: Any = None) -> None:
        key = folder.resolve()
        if key in self.seen:
            return
        self.seen.add(key)
        state = self.folder_state(folder)
        if state == "finished":
            try:
                self.runs.append(read_run(folder, getattr(entry, "preset", None)))
            except Exception as exc:  # one malformed run folder must not hide the others
                name = getattr(entry, "name", None) or folder.name
                self.problems.append(Problem(folder, name, "unreadable", f"{type(exc).__name__}: {exc}"))
        elif state != "absent":
            self.problems.append(self.unfinished(folder, state, entry))

    def visit_study(self, p: Path, study: Any) -> None:
        self.studies.append({"path": str(p), "preset": study.preset, "seed": study.seed, "device": study.device,
                             "dtype": study.dtype, "command": study.command, "started": study.started,
                             "finished": study.finished, "counts": study.counts})
        for e in study.entries:
            folder = p / e.folder
            if e.status == "pending" and not folder.exists():
                continue
            if not folder.exists() and e.status in ("failed", "interrupted"):
                self.seen.add(folder.resolve())
                self.problems.append(Problem(folder, e.name, e.status, e.error or e.status, e.traceback or "", e.command or ""))
            else:
                self.visit_run(folder, e)

    def visit(self, p: Path, depth: int) -> None:
        if self.folder_state(p) != "incomplete":  # a run folder (finished, running or failed), not a folder of them
            self.visit_run(p)
            return
        study = self.load_study(p)
        if study is not None:
            self.visit_study(p, study)
        if depth > 0:
            for child in sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith(".")):
                self.visit(child, depth - 1)


def collect(paths: Sequence[str | Path]) -> tuple[list[RunFolderRecord], list[Problem], list[dict]]:
    """Find the run folders under ``paths`` (run folders, study folders or folders of run folders).

    Returns ``(runs, problems, studies)``: finished runs, folders that did not
    finish (with the study's error and traceback when it has one), and the
    ``study`` blocks of the ``study.json`` files met. A path that does not
    exist is a `DataError`.
    """
    c = _Collector()
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p} does not exist; pass run folders or a study folder (made by `actionlab study --out DIR`)")
        if not p.is_dir():
            if p.name != "results.json":
                raise DataError(f"{p} is not a folder; pass run folders or a study folder")
            p = p.parent
        c.visit(p, depth=2)
    return c.runs, c.problems, c.studies
