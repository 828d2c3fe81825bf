"""``actionlab report``: one self-contained HTML page (and a Markdown twin) from run folders.

The report is organised by source document (000–004, see ``shared/seeds``):
for each document, the claims the experiments checked — what the document
says, what was measured, and a verdict (holds / does not hold /
inconclusive / not yet measured) — then, per run folder, its figures, its
measured values and the provenance of every number (command, seed, data,
library versions, date, git commit). A document that no run folder covers is
listed as *not yet measured*, with the registered experiments that would
measure it (their ``sources``) and the command to run them.

The HTML file needs no network: figures are embedded as base64 ``data:``
URIs, the style sheet is inline and there is no script. The Markdown twin
(``report.md``) links the PNG files of the run folders by relative path, for
reading on GitHub next to the runs.

Input: any mix of run folders (``results.json``), study folders
(``study.json``, see `actionlab.study`) and folders holding run folders.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from actionlab._checks import DataError
from actionlab.runs import VERDICTS

__all__ = [
    "DOCUMENTS",
    "RunRecord",
    "Problem",
    "DocumentSection",
    "ReportData",
    "ReportFiles",
    "collect",
    "build_model",
    "render_html",
    "render_markdown",
    "build_report",
    "format_value",
]

#: The source documents (``shared/seeds/``): id -> (title, what it is).
DOCUMENTS: dict[str, tuple[str, str]] = {
    "000": (
        "Taylor expansion of the action (SiLU draft)",
        "Theory note: two-layer classifier q = softmax(U·σ(Wz + b) + c), action S(θ) = cross-entropy, "
        "its expansion S = S0 + S1 + S2 + S3 + … at θ = 0 for balanced classes, the J tensors, numerical "
        "claims on Fashion-MNIST, a conjectured all-orders leading series, early stopping at ∇S_T·∇S_E = 0.",
    ),
    "001": (
        "Taylor expansion of the action (later SiLU draft)",
        "Later draft of 000: adds the hidden size H, the count of sub-terms per term, the dependence of term "
        "dominance on the embedding dimension E and the loss-vs-model-size power law for large E.",
    ),
    "002": (
        "Taylor expansion of the action (ReLU draft)",
        "Earlier draft of the same note with ReLU (σ'(0) taken as 1); its third order is unfinished.",
    ),
    "003": (
        "Relative Fisher information and natural gradient (Sun & Nielsen, ICML 2017, supplement)",
        "Activation derivatives, relative Fisher information matrices (RFIM) of tanh / sigm / smoothed relu / "
        "elu neurons and of linear, non-linear, softmax and two-layer blocks; RNGD on MNIST MLPs.",
    ),
    "004": (
        "Universal statistics of Fisher information (Karakida, Akaho & Amari, AISTATS 2019, supplement)",
        "Mean m_λ, second moment s_λ and largest eigenvalue λ_max of the Fisher information of wide random "
        "networks from order parameters (κ1, κ2); the Fisher–Rao norm; the learning-rate bound η < 2(1+μ)/λ_max.",
    ),
}

OTHER = "other"
_DOC_RE = re.compile(r"(?<!\d)(00[0-9])(?!\d)")
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml", ".gif": "image/gif"}


# --------------------------------------------------------------------------- data model


@dataclass
class RunRecord:
    """One finished run folder, as read from its ``results.json``."""

    path: Path
    experiment: str
    config: Any = None
    results: Any = None
    claims: list[dict] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # file names in ``path`` (existing ones)
    missing_figures: list[str] = field(default_factory=list)  # listed in results.json but absent
    provenance: dict = field(default_factory=dict)
    has_summary: bool = False
    anchor: str = ""  # HTML id of the run's subsection
    label: str = ""  # a short name: experiment, plus the folder when ambiguous
    sources: list[str] = field(default_factory=list)  # documents it covers


@dataclass
class Problem:
    """A run folder that did not finish: failed, interrupted / in progress, or unreadable."""

    path: Path
    experiment: str
    state: str  # failed | running | interrupted | unreadable | incomplete
    message: str = ""
    traceback: str = ""
    command: str = ""
    anchor: str = ""


@dataclass
class DocumentSection:
    """What the report says about one source document."""

    doc: str  # "000" … "004" or "other"
    title: str
    description: str
    anchor: str
    claims: list[tuple[dict, RunRecord]] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)  # runs shown in full in this section
    linked_runs: list[RunRecord] = field(default_factory=list)  # runs shown in another section
    registered: list[Any] = field(default_factory=list)  # experiments whose ``sources`` name it
    unrun: list[Any] = field(default_factory=list)  # of those, the ones without a run folder here

    @property
    def counts(self) -> dict[str, int]:
        c = {v: 0 for v in VERDICTS}
        for claim, _ in self.claims:
            c[claim.get("verdict", "not yet measured")] = c.get(claim.get("verdict", "not yet measured"), 0) + 1
        return c

    @property
    def status(self) -> str:
        """``not yet measured`` when no claim of it was measured, else a count of verdicts."""
        c = self.counts
        measured = sum(n for v, n in c.items() if v != "not yet measured")
        if not self.claims or measured == 0:
            return "not yet measured"
        return ", ".join(f"{n} {v}" for v, n in c.items() if n)


@dataclass
class ReportData:
    """Everything the renderers need."""

    title: str
    generated: str
    inputs: list[str]
    runs: list[RunRecord]
    problems: list[Problem]
    sections: list[DocumentSection]
    studies: list[dict]  # the "study" blocks of study.json files met
    registry: list[Any]
    registry_error: str | None = None


@dataclass
class ReportFiles:
    """Where `build_report` wrote the report."""

    html: Path
    markdown: Path | None
    runs: int
    problems: int


# --------------------------------------------------------------------------- reading run folders


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _normalise_claim(c: Any) -> dict:
    if not isinstance(c, Mapping):
        return {"source": "", "claim": str(c), "document_value": None, "measured": None, "verdict": "not yet measured", "details": ""}
    verdict = c.get("verdict", "not yet measured")
    if verdict not in VERDICTS:
        verdict = "inconclusive"
    return {
        "source": str(c.get("source", "") or ""),
        "claim": c.get("claim", ""),
        "document_value": c.get("document_value"),
        "measured": c.get("measured"),
        "verdict": verdict,
        "details": c.get("details", "") or "",
    }


def read_run(path: str | Path) -> RunRecord:
    """Read one finished run folder (``results.json``, figures, provenance)."""
    p = Path(path)
    data = _read_json(p / "results.json")
    if not isinstance(data, Mapping):
        raise DataError(f"{p / 'results.json'} does not hold a JSON object")
    listed = [str(f) for f in (data.get("figures") or [])]
    figures = [f for f in listed if (p / f).is_file()]
    missing = [f for f in listed if not (p / f).is_file()]
    # figures written without RunFolder.save_figure still belong to the run
    extra = sorted(q.name for q in p.iterdir() if q.suffix.lower() in _IMAGE_TYPES and q.name not in listed)
    prov = data.get("provenance")
    if not isinstance(prov, Mapping):
        prov = _read_json(p / "provenance.json") if (p / "provenance.json").is_file() else {}
    return RunRecord(
        path=p,
        experiment=str(data.get("experiment") or p.name),
        config=data.get("config"),
        results=data.get("results"),
        claims=[_normalise_claim(c) for c in (data.get("claims") or [])],
        figures=figures + extra,
        missing_figures=missing,
        provenance=dict(prov),
        has_summary=(p / "summary.md").is_file(),
    )


def collect(paths: Sequence[str | Path]) -> tuple[list[RunRecord], list[Problem], list[dict]]:
    """Find the run folders under ``paths`` (run folders, study folders or folders of run folders).

    Returns ``(runs, problems, studies)``: finished runs, folders that did not
    finish (with the study's error and traceback when it has one), and the
    ``study`` blocks of the ``study.json`` files met. A path that does not
    exist is a `DataError`.
    """
    from actionlab.study import ERROR_FILE, load_study, run_state

    runs: list[RunRecord] = []
    problems: list[Problem] = []
    studies: list[dict] = []
    seen: set[Path] = set()

    def visit_run(folder: Path, study_entry: Any = None) -> None:
        key = folder.resolve()
        if key in seen:
            return
        seen.add(key)
        state = run_state(folder)
        name = getattr(study_entry, "name", None) or folder.name
        if state == "finished":
            try:
                runs.append(read_run(folder))
            except Exception as exc:  # one malformed run folder must not hide the others
                problems.append(Problem(folder, name, "unreadable", f"{type(exc).__name__}: {exc}"))
            return
        if state == "absent":
            return
        msg, tb, cmd = "", "", getattr(study_entry, "command", "") or ""
        status = getattr(study_entry, "status", None)
        if study_entry is not None and study_entry.error:
            msg, tb = study_entry.error, study_entry.traceback or ""
        elif (folder / ERROR_FILE).is_file():
            text = (folder / ERROR_FILE).read_text()
            tb = text
            msg = next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()), "failed")
        if state == "running":
            st = "interrupted" if status in ("interrupted", "failed", "done", "cached") else "running"
            msg = msg or ("interrupted (a RUNNING marker is left); `actionlab study` restarts it" if st == "interrupted"
                          else "in progress or interrupted (a RUNNING marker is present)")
        else:
            st = "failed" if state == "failed" else "incomplete"
            msg = msg or "no results.json"
        problems.append(Problem(folder, name, st, msg, tb, cmd))

    def visit(p: Path, depth: int) -> None:
        if (p / "results.json").is_file() or (p / "RUNNING").exists() or (p / ERROR_FILE).is_file():
            visit_run(p)
            return
        study = load_study(p)
        if study is not None:
            block = {"path": str(p), "preset": study.preset, "seed": study.seed, "device": study.device,
                     "dtype": study.dtype, "command": study.command, "started": study.started,
                     "finished": study.finished, "counts": study.counts}
            studies.append(block)
            for e in study.entries:
                if e.status != "pending" or (p / e.folder).exists():
                    folder = p / e.folder
                    if not folder.exists() and e.status in ("failed", "interrupted"):
                        seen.add(folder.resolve())
                        problems.append(Problem(folder, e.name, e.status, e.error or e.status, e.traceback or "", e.command or ""))
                    else:
                        visit_run(folder, e)
        if depth > 0:
            for child in sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith(".")):
                visit(child, depth - 1)

    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p} does not exist; pass run folders or a study folder (made by `actionlab study --out DIR`)")
        if not p.is_dir():
            if p.name == "results.json":
                p = p.parent
            else:
                raise DataError(f"{p} is not a folder; pass run folders or a study folder")
        visit(p, depth=2)
    return runs, problems, studies


# --------------------------------------------------------------------------- building the model


def _slug(text: str) -> str:
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return s or "x"


def _claim_docs(source: str) -> list[str]:
    docs = [d for d in _DOC_RE.findall(source or "") if d in DOCUMENTS]
    return sorted(set(docs)) or [OTHER]


def _load_registry(registry: Mapping[str, Any] | Iterable[Any] | None) -> tuple[list[Any], str | None]:
    if registry is None:
        try:
            from actionlab.study import study_members

            registry = study_members()
        except Exception as exc:  # a broken experiment module must not hide the measured results
            return [], f"{type(exc).__name__}: {exc}"
    items = list(registry.values()) if isinstance(registry, Mapping) else list(registry)
    return sorted(items, key=lambda e: (getattr(e, "order", 100), e.name)), None


def build_model(
    paths: Sequence[str | Path],
    registry: Mapping[str, Any] | Iterable[Any] | None = None,
    title: str | None = None,
) -> ReportData:
    """Read the run folders under ``paths`` and arrange them by source document."""
    runs, problems, studies = collect(paths)
    if not runs and not problems:
        raise DataError(
            f"no run folders found in {', '.join(str(p) for p in paths)}; "
            "make some with `actionlab study --preset quick --out DIR` (or any experiment command) first"
        )
    exps, reg_error = _load_registry(registry)
    by_name = {e.name: e for e in exps}

    # anchors and labels, unique
    names = [r.experiment for r in runs]
    used: set[str] = set()
    for r in sorted(runs, key=lambda r: (getattr(by_name.get(r.experiment), "order", 100), r.experiment, str(r.path))):
        r.label = r.experiment if names.count(r.experiment) == 1 else f"{r.experiment} ({r.path.parent.name}/{r.path.name})"
        base = "run-" + _slug(r.label)
        anchor, k = base, 2
        while anchor in used:
            anchor, k = f"{base}-{k}", k + 1
        used.add(anchor)
        r.anchor = anchor
        # the run is shown in full under the document most of its claims are about (then the
        # registry's first source); the other documents it covers link to it
        declared = [d for d in (getattr(by_name.get(r.experiment), "sources", ()) or ()) if d in DOCUMENTS]
        per_doc: dict[str, int] = {}
        for c in r.claims:
            for d in _claim_docs(c["source"]):
                per_doc[d] = per_doc.get(d, 0) + 1
        docs = set(declared) | set(per_doc)
        rank = {d: i for i, d in enumerate(declared)}
        r.sources = sorted(docs, key=lambda d: (-per_doc.get(d, 0), rank.get(d, len(rank)), d == OTHER, d)) or [OTHER]
    runs.sort(key=lambda r: (getattr(by_name.get(r.experiment), "order", 100), r.experiment, str(r.path)))

    sections = {d: DocumentSection(d, t, desc, f"doc-{d}") for d, (t, desc) in DOCUMENTS.items()}
    sections[OTHER] = DocumentSection(
        OTHER, "Other claims", "Claims and runs that name none of the documents 000–004.", "doc-other"
    )
    for r in runs:
        for c in r.claims:
            for d in _claim_docs(c["source"]):
                sections[d].claims.append((c, r))
        primary = r.sources[0]
        sections[primary].runs.append(r)
        for d in r.sources[1:]:
            sections[d].linked_runs.append(r)
    run_names = {r.experiment for r in runs}
    for i, p in enumerate(problems, 1):
        p.anchor = f"problem-{i}"
    for e in exps:
        for d in getattr(e, "sources", ()) or ():
            if d in sections:
                sections[d].registered.append(e)
                if e.name not in run_names:
                    sections[d].unrun.append(e)
    ordered = [sections[d] for d in DOCUMENTS]
    if sections[OTHER].claims or sections[OTHER].runs:
        ordered.append(sections[OTHER])
    return ReportData(
        title=title or "actionlab report",
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        inputs=[str(p) for p in paths],
        runs=runs,
        problems=problems,
        sections=ordered,
        studies=studies,
        registry=exps,
        registry_error=reg_error,
    )


# --------------------------------------------------------------------------- formatting values


def _fmt_number(x: float) -> str:
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    a = abs(x)
    if 1e-4 <= a < 1e6:
        return f"{x:.6g}"
    return f"{x:.4e}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _shape(v: Any) -> tuple[int, ...]:
    shape = []
    while isinstance(v, list) and v:
        shape.append(len(v))
        v = v[0]
    return tuple(shape)


def _flat_numbers(v: Any) -> list[float] | None:
    out: list[float] = []
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif _is_number(x):
            out.append(float(x))
        elif isinstance(x, str) and x in ("nan", "inf", "-inf"):
            out.append(float(x))
        else:
            return None
    return out


def format_value(v: Any, max_items: int = 8, max_chars: int = 400) -> str:
    """A value of results.json as short readable text (long arrays are summarised, not dumped)."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if _is_number(v):
        return _fmt_number(v)
    if isinstance(v, str):
        return v if len(v) <= max_chars else v[: max_chars - 1] + "…"
    if isinstance(v, list):
        if not v:
            return "[]"
        nums = _flat_numbers(v)
        shape = _shape(v)
        if nums is not None and len(shape) == 1 and len(v) <= max_items:
            return "[" + ", ".join(_fmt_number(x) for x in v) + "]"
        if nums is not None:
            finite = [x for x in nums if math.isfinite(x)]
            dims = "×".join(str(s) for s in shape)
            if finite:
                return (
                    f"array {dims} ({len(nums)} values): min {_fmt_number(min(finite))}, "
                    f"max {_fmt_number(max(finite))}, mean {_fmt_number(sum(finite) / len(finite))}"
                )
            return f"array {dims} ({len(nums)} values, none finite)"
        if len(v) <= max_items:
            s = "[" + ", ".join(format_value(x, max_items, max_chars) for x in v) + "]"
        else:
            s = f"list of {len(v)}: [" + ", ".join(format_value(x, max_items, 60) for x in v[:3]) + ", …]"
        return s if len(s) <= max_chars else s[: max_chars - 1] + "…"
    if isinstance(v, Mapping):
        s = "{" + ", ".join(f"{k}: {format_value(x, max_items, 80)}" for k, x in v.items()) + "}"
        return s if len(s) <= max_chars else s[: max_chars - 1] + "…"
    return str(v)


def _flatten(v: Any, prefix: str = "", limit: int = 250) -> list[tuple[str, str]]:
    """(key path, formatted value) rows of a nested results dict, at most ``limit``."""
    rows: list[tuple[str, str]] = []

    def rec(x: Any, key: str) -> None:
        if len(rows) >= limit:
            return
        if isinstance(x, Mapping) and x:
            for k, y in x.items():
                rec(y, f"{key}.{k}" if key else str(k))
        elif isinstance(x, list) and x and all(isinstance(y, Mapping) for y in x) and len(x) <= 20:
            for i, y in enumerate(x):
                rec(y, f"{key}[{i}]")
        else:
            rows.append((key or "(value)", format_value(x)))

    rec(v, prefix)
    return rows


def _versions(prov: Mapping) -> str:
    v = prov.get("versions")
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    return format_value(v)


def _provenance_rows(r: RunRecord) -> list[tuple[str, str]]:
    p = r.provenance
    rows = [
        ("command", str(p.get("command") or "—")),
        ("seed", format_value(p.get("seed"))),
        ("data", format_value(p.get("data"), max_chars=800)),
        ("date", str(p.get("date") or "—")),
        ("versions", _versions(p)),
        ("git commit", str(p.get("git_commit") or "— (not a git checkout or no commit yet)")),
        ("wall time", f"{_fmt_number(p['wall_time_s'])} s" if _is_number(p.get("wall_time_s")) else "—"),
        ("machine", format_value(p.get("machine"))),
        ("run folder", str(r.path)),
    ]
    known = {"command", "seed", "data", "date", "versions", "git_commit", "wall_time_s", "machine"}
    rows += [(k, format_value(v)) for k, v in p.items() if k not in known]
    return rows


def _run_command(exp: Any) -> str:
    return f"actionlab {exp.name} --quick --out runs/{exp.name}"


# --------------------------------------------------------------------------- HTML

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d8dde6; --bg:#ffffff; --soft:#f5f7fa; --accent:#2456a6; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
header.top { border-bottom: 2px solid var(--line); margin-bottom: 1rem; }
h1 { font-size: 1.8rem; margin: .2rem 0 .4rem; }
h2 { font-size: 1.45rem; margin-top: 2.6rem; padding-top: .6rem; border-top: 1px solid var(--line); }
h3 { font-size: 1.15rem; margin-top: 1.8rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 .4rem; color: var(--muted); }
a { color: var(--accent); }
.muted { color: var(--muted); }
nav#toc { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1.2rem; margin: 1rem 0; }
nav#toc ul { margin: .2rem 0; padding-left: 1.2rem; }
nav#toc > ul { padding-left: .4rem; list-style: none; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid var(--line); padding: .35rem .5rem; vertical-align: top; text-align: left; }
th { background: var(--soft); }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.val, td.claim { word-break: break-word; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; }
pre { background: var(--soft); border: 1px solid var(--line); padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
.verdict { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .82rem; font-weight: 600; white-space: nowrap; }
.v-holds { background: #dff3e4; color: #17612e; }
.v-does-not-hold { background: #fbe0e0; color: #9b1c1c; }
.v-inconclusive { background: #fff1cc; color: #7a5300; }
.v-not-yet-measured { background: #e9ecf1; color: #4a5263; }
.v-failed, .v-interrupted, .v-unreadable { background: #fbe0e0; color: #9b1c1c; }
.v-running, .v-incomplete { background: #fff1cc; color: #7a5300; }
figure { margin: 1rem 0; padding: .6rem; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: .88rem; color: var(--muted); margin-top: .4rem; }
section.run { border-left: 3px solid var(--line); padding-left: 1rem; margin: 1.4rem 0; }
details > summary { cursor: pointer; color: var(--accent); }
.box { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _badge(verdict: str) -> str:
    return f'<span class="verdict v-{_slug(verdict)}">{_e(verdict)}</span>'


def _data_uri(path: Path) -> str:
    mime = _IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _html_table(header: Sequence[str] | None, rows: Iterable[Sequence[str]], classes: Sequence[str] = ()) -> str:
    out = ["<table>"]
    if header:
        out.append("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
            cells.append(f"<td{cls}>{cell}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _claims_html(section: DocumentSection) -> str:
    if not section.claims:
        return ""
    rows = []
    for i, (c, r) in enumerate(section.claims, 1):
        cmd = str(r.provenance.get("command") or "")
        rows.append([
            f'<span id="claim-{section.doc}-{i}">{i}</span>',
            _e(c["claim"]),
            _e(format_value(c["document_value"])),
            _e(format_value(c["measured"])),
            _badge(c["verdict"]),
            _e(c["details"]),
            f'<a href="#{r.anchor}" title="{_e(cmd)}">{_e(r.label)}</a>'
            + f'<br><span class="muted">seed {_e(format_value(r.provenance.get("seed")))} · {_e(str(r.provenance.get("date") or "")[:10])}</span>',
        ])
    return _html_table(
        ["#", "claim (document)", "document value", "measured", "verdict", "how it was measured", "run (its provenance)"],
        rows,
        ["num", "claim", "val", "val", "", "", ""],
    )


def _run_html(r: RunRecord, section: DocumentSection, by_name: Mapping[str, Any]) -> str:
    exp = by_name.get(r.experiment)
    parts = [f'<section class="run" id="{r.anchor}">', f"<h3>Run: {_e(r.label)}</h3>"]
    helptext = getattr(exp, "help", "")
    if helptext:
        parts.append(f"<p>{_e(helptext)}</p>")
    also = [d for d in r.sources if d != section.doc]
    srcs = ", ".join(f'<a href="#doc-{d}">{_e(d)}</a>' for d in r.sources)
    parts.append(
        f'<p class="muted">Folder <code>{_e(r.path)}</code> · documents {srcs} · '
        f'{len(r.claims)} claim(s), {len(r.figures)} figure(s)'
        + f" · files: results.json, provenance.json{', summary.md' if r.has_summary else ''}"
        + "</p>"
    )
    if also:
        parts.append(f'<p class="muted">It also covers document(s) {", ".join(also)}, whose sections link here.</p>')
    # provenance first: every number below comes from this command
    parts.append("<h4>Provenance</h4>")
    parts.append(_html_table(None, ([f"<b>{_e(k)}</b>", f"<code>{_e(v)}</code>" if k == "command" else _e(v)] for k, v in _provenance_rows(r))))
    if r.figures:
        parts.append("<h4>Figures</h4>")
        for j, f in enumerate(r.figures, 1):
            fid = f"{r.anchor}-fig-{j}"
            parts.append(
                f'<figure id="{fid}"><img src="{_data_uri(r.path / f)}" alt="{_e(r.experiment)}: {_e(f)}">'
                f"<figcaption>Figure {j} of <a href=\"#{r.anchor}\">{_e(r.label)}</a>: <code>{_e(f)}</code> "
                f"— made by <code>{_e(r.provenance.get('command') or '?')}</code></figcaption></figure>"
            )
    for f in r.missing_figures:
        parts.append(f'<p class="box">Figure <code>{_e(f)}</code> is listed in results.json but missing from the folder.</p>')
    rows = _flatten(r.results)
    parts.append("<h4>Measured values</h4>")
    if rows:
        parts.append(f"<details><summary>{len(rows)} value(s) from results.json</summary>")
        parts.append(_html_table(["quantity", "value"], ([f"<code>{_e(k)}</code>", _e(v)] for k, v in rows), ["", "val"]))
        parts.append("</details>")
    else:
        parts.append('<p class="muted">results.json holds no measured values.</p>')
    cfg = _flatten(r.config)
    if cfg:
        parts.append(f"<details><summary>Configuration ({len(cfg)} field(s))</summary>")
        parts.append(_html_table(["field", "value"], ([f"<code>{_e(k)}</code>", _e(v)] for k, v in cfg)))
        parts.append("</details>")
    parts.append("</section>")
    return "\n".join(parts)


def _section_html(s: DocumentSection, by_name: Mapping[str, Any], problems_by_name: Mapping[str, Problem]) -> str:
    head = f"{s.doc} — {s.title}" if s.doc != OTHER else s.title
    parts = [f'<section class="doc" id="{s.anchor}">', f"<h2>{_e(head)}</h2>", f'<p class="muted">{_e(s.description)}</p>']
    parts.append(f"<p>Status: {_badge('not yet measured') if s.status == 'not yet measured' else _e(s.status)}</p>")
    if s.claims:
        parts.append("<h3>Claims</h3>")
        parts.append(_claims_html(s))
    elif s.runs or s.linked_runs:
        parts.append("<p>The runs below record no claim about this document.</p>")
    else:
        parts.append(f"<p>{_badge('not yet measured')} No run folder in this report measures a claim of document {_e(s.doc)}.</p>")
    if s.unrun:
        parts.append("<p>Registered experiments that cover this document but have no finished run folder here:</p><ul>")
        for e in s.unrun:
            prob = problems_by_name.get(e.name)
            state = (f' — {_badge(prob.state)} <a href="#{prob.anchor}">see why</a>' if prob else "")
            parts.append(f"<li><b>{_e(e.name)}</b> — {_e(getattr(e, 'help', ''))} (<code>{_e(_run_command(e))}</code>){state}</li>")
        parts.append("</ul>")
    elif not s.registered and s.doc != OTHER:
        parts.append("<p class=\"muted\">No registered experiment names this document in its sources.</p>")
    for r in s.linked_runs:
        parts.append(f'<p>Also from run <a href="#{r.anchor}">{_e(r.label)}</a> (shown in full in section {_e(r.sources[0])}).</p>')
    for r in s.runs:
        parts.append(_run_html(r, s, by_name))
    parts.append("</section>")
    return "\n".join(parts)


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page (no script, no external resource)."""
    by_name = {e.name: e for e in data.registry}
    toc = ['<nav id="toc"><b>Contents</b><ul>', '<li><a href="#overview">Overview</a></li>']
    for s in data.sections:
        label = f"{s.doc} — {s.title}" if s.doc != OTHER else s.title
        toc.append(f'<li><a href="#{s.anchor}">{_e(label)}</a> <span class="muted">({_e(s.status)})</span>')
        if s.runs:
            toc.append("<ul>" + "".join(f'<li><a href="#{r.anchor}">{_e(r.label)}</a></li>' for r in s.runs) + "</ul>")
        toc.append("</li>")
    if data.problems:
        toc.append('<li><a href="#problems">Runs that did not finish</a></li>')
    toc.append('<li><a href="#coverage">Experiments and documents</a></li>')
    toc.append("</ul></nav>")

    overview = ['<section id="overview"><h2>Overview</h2>']
    rows = []
    for s in data.sections:
        c = s.counts
        rows.append([f'<a href="#{s.anchor}">{_e(s.doc)}</a>', _e(s.title)] + [str(c[v]) for v in VERDICTS] + [str(len(s.runs) + len(s.linked_runs))])
    overview.append(_html_table(["document", "title", *VERDICTS, "runs"], rows, ["", "", "num", "num", "num", "num", "num"]))
    if data.studies:
        for st in data.studies:
            counts = ", ".join(f"{n} {k}" for k, n in (st.get("counts") or {}).items())
            overview.append(
                f'<p>Study <code>{_e(st["path"])}</code>: preset <b>{_e(st["preset"])}</b>, seed {_e(st["seed"])}, '
                f'device {_e(st["device"])}, dtype {_e(st["dtype"])}; {_e(counts)}; '
                f'started {_e(st.get("started"))}, {_e("last update " + st["finished"] if st.get("finished") else "still running")}; '
                f'command <code>{_e(st.get("command"))}</code></p>'
            )
    overview.append(
        '<p class="muted">Verdicts: <b>holds</b> — the measurement agrees with the document within the stated tolerance; '
        "<b>does not hold</b> — it disagrees (the numbers say by how much); <b>inconclusive</b> — the measurement cannot "
        "decide; <b>not yet measured</b> — no run has checked it. Every number links to its run, whose provenance table "
        "gives the command that reproduces it.</p></section>"
    )

    problems_by_name = {p.experiment: p for p in data.problems}
    body = [_section_html(s, by_name, problems_by_name) for s in data.sections]

    if data.problems:
        pr = ['<section id="problems"><h2>Runs that did not finish</h2>',
              "<p>These run folders hold no results; <code>actionlab study</code> reruns them.</p>"]
        for p in data.problems:
            pr.append(
                f'<div class="box" id="{p.anchor}"><p>{_badge(p.state)} <b>{_e(p.experiment)}</b> — <code>{_e(p.path)}</code>'
                + (f"<br>command: <code>{_e(p.command)}</code>" if p.command else "")
                + f"<br>{_e(p.message)}</p>"
                + (f"<details><summary>traceback</summary><pre>{_e(p.traceback)}</pre></details>" if p.traceback else "")
                + "</div>"
            )
        pr.append("</section>")
        body.append("\n".join(pr))

    cov = ['<section id="coverage"><h2>Experiments and documents</h2>']
    if data.registry_error:
        cov.append(f'<p class="box">The experiment registry could not be loaded: <code>{_e(data.registry_error)}</code>; '
                   "documents are assigned from the claims alone.</p>")
    ran = {r.experiment: r for r in data.runs}
    crow = []
    for e in data.registry:
        r = ran.get(e.name)
        where = f'<a href="#{r.anchor}">{_e(r.label)}</a>' if r else _badge("not yet measured")
        crow.append([f"<code>{_e(e.name)}</code>", _e(", ".join(getattr(e, "sources", ()) or ()) or "—"), _e(getattr(e, "help", "")), where])
    for r in data.runs:
        if r.experiment not in by_name:
            crow.append([f"<code>{_e(r.experiment)}</code>", _e(", ".join(r.sources)), "(not in this version's registry)", f'<a href="#{r.anchor}">{_e(r.label)}</a>'])
    cov.append(_html_table(["experiment", "documents", "what it measures", "run in this report"], crow))
    cov.append("</section>")
    body.append("\n".join(cov))

    inputs = ", ".join(f"<code>{_e(p)}</code>" for p in data.inputs)
    from actionlab import __version__

    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(data.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body><main>",
        f'<header class="top"><h1>{_e(data.title)}</h1>'
        f'<p class="muted">Generated {_e(data.generated)} by actionlab {_e(__version__)} from {inputs}: '
        f"{len(data.runs)} run folder(s), {len(data.problems)} unfinished.</p></header>",
        *toc,
        *overview,
        *body,
        "</main></body></html>",
    ])


# --------------------------------------------------------------------------- Markdown


def _md(x: Any) -> str:
    s = x if isinstance(x, str) else format_value(x)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out + [""]


def render_markdown(data: ReportData, md_dir: str | Path) -> str:
    """The report as Markdown, figures linked by paths relative to ``md_dir``."""
    md_dir = Path(md_dir)
    by_name = {e.name: e for e in data.registry}
    L: list[str] = [f"# {data.title}", "", f"Generated {data.generated} from {', '.join(f'`{p}`' for p in data.inputs)}: "
                    f"{len(data.runs)} run folder(s), {len(data.problems)} unfinished.", ""]
    L += ["## Contents", "", "- [Overview](#overview)"]
    for s in data.sections:
        label = f"{s.doc} — {s.title}" if s.doc != OTHER else s.title
        L.append(f"- [{label}](#{s.anchor}) ({s.status})")
        for r in s.runs:
            L.append(f"  - [{r.label}](#{r.anchor})")
    if data.problems:
        L.append("- [Runs that did not finish](#problems)")
    L.append("- [Experiments and documents](#coverage)")
    L += ["", '<a id="overview"></a>', "", "## Overview", ""]
    L += _md_table(["document", "title", *VERDICTS, "runs"],
                   ([f"[{s.doc}](#{s.anchor})", _md(s.title), *(str(s.counts[v]) for v in VERDICTS), str(len(s.runs) + len(s.linked_runs))] for s in data.sections))
    for st in data.studies:
        counts = ", ".join(f"{n} {k}" for k, n in (st.get("counts") or {}).items())
        L += [f"Study `{st['path']}`: preset **{st['preset']}**, seed {st['seed']}, device {st['device']}, dtype {st['dtype']}; "
              f"{counts}; command `{st.get('command')}`.", ""]
    for s in data.sections:
        head = f"{s.doc} — {s.title}" if s.doc != OTHER else s.title
        L += [f'<a id="{s.anchor}"></a>', "", f"## {head}", "", f"*{s.description}*", "", f"Status: **{s.status}**", ""]
        if s.claims:
            rows = []
            for i, (c, r) in enumerate(s.claims, 1):
                cmd = r.provenance.get("command") or ""
                rows.append([str(i), _md(c["claim"]), _md(format_value(c["document_value"])), _md(format_value(c["measured"])),
                             f"**{c['verdict']}**", _md(c["details"]), f"[{_md(r.label)}](#{r.anchor})" + (f" `{_md(cmd)}`" if cmd else "")])
            L += _md_table(["#", "claim (document)", "document value", "measured", "verdict", "how it was measured", "run and command"], rows)
        elif not (s.runs or s.linked_runs):
            L += [f"**not yet measured** — no run folder in this report measures a claim of document {s.doc}.", ""]
        if s.unrun:
            probs = {p.experiment: p for p in data.problems}
            L += ["Registered experiments that cover this document but have no finished run folder here:", ""]
            L += [f"- **{e.name}** — {_md(getattr(e, 'help', ''))} (`{_run_command(e)}`)"
                  + (f" — **{probs[e.name].state}**, see [why](#{probs[e.name].anchor})" if e.name in probs else "")
                  for e in s.unrun] + [""]
        for r in s.linked_runs:
            L += [f"Also from run [{r.label}](#{r.anchor}) (shown in full in section {r.sources[0]}).", ""]
        for r in s.runs:
            L += [f'<a id="{r.anchor}"></a>', "", f"### Run: {r.label}", ""]
            helptext = getattr(by_name.get(r.experiment), "help", "")
            if helptext:
                L += [_md(helptext), ""]
            L += [f"Folder `{r.path}` · documents {', '.join(r.sources)} · {len(r.claims)} claim(s), {len(r.figures)} figure(s).", ""]
            L += ["**Provenance**", ""]
            L += _md_table(["provenance", "value"], ([f"**{k}**", f"`{_md(v)}`" if k == "command" else _md(v)] for k, v in _provenance_rows(r)))
            for j, f in enumerate(r.figures, 1):
                rel = Path(os.path.relpath(r.path / f, md_dir)).as_posix()
                L += [f"![{r.experiment}: {f}]({quote(rel)})", "", f"*Figure {j} of {r.label}: `{f}`*", ""]
            for f in r.missing_figures:
                L += [f"Figure `{f}` is listed in results.json but missing.", ""]
            rows = _flatten(r.results)
            if rows:
                L += ["<details><summary>Measured values</summary>", ""]
                L += _md_table(["quantity", "value"], ([f"`{_md(k)}`", _md(v)] for k, v in rows))
                L += ["</details>", ""]
    if data.problems:
        L += ['<a id="problems"></a>', "", "## Runs that did not finish", ""]
        for p in data.problems:
            L += [f'- <a id="{p.anchor}"></a>**{p.experiment}** ({p.state})' f" — `{p.path}`: {_md(p.message)}" + (f" — command `{p.command}`" if p.command else "")]
        L.append("")
    L += ['<a id="coverage"></a>', "", "## Experiments and documents", ""]
    ran = {r.experiment: r for r in data.runs}
    L += _md_table(["experiment", "documents", "what it measures", "run in this report"],
                   ([f"`{e.name}`", ", ".join(getattr(e, "sources", ()) or ()) or "—", _md(getattr(e, "help", "")),
                     f"[{ran[e.name].label}](#{ran[e.name].anchor})" if e.name in ran else "not yet measured"] for e in data.registry))
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- entry point


def build_report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    markdown: bool = True,
    registry: Mapping[str, Any] | Iterable[Any] | None = None,
    title: str | None = None,
) -> ReportFiles:
    """Write ``report.html`` (and ``report.md``) for the run folders under ``paths``.

    ``out`` is a folder (the files are ``out/report.html`` and
    ``out/report.md``) or a path ending in ``.html``; by default the single
    folder given, or ``./report/`` when several are given.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no folder given; pass run folders or a study folder (made by `actionlab study --out DIR`)")
    data = build_model(paths, registry=registry, title=title)
    if out is None:
        out = paths[0] if len(paths) == 1 and paths[0].is_dir() else Path("report")
    out = Path(out)
    html_path = out if out.suffix.lower() in (".html", ".htm") else out / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(data), encoding="utf-8")
    md_path = None
    if markdown:
        md_path = html_path.with_suffix(".md")
        md_path.write_text(render_markdown(data, md_path.parent), encoding="utf-8")
    return ReportFiles(html=html_path, markdown=md_path, runs=len(data.runs), problems=len(data.problems))
