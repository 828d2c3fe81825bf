"""Arranging run folders into the report: sections per document, one group per claim id, key findings."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from actionlab._checks import DataError

from .collect import collect
from .findings import key_findings
from .model import DOCUMENTS, OTHER, STRENGTH_RANK, ClaimGroup, DocumentSection, ReportData, RunFolderRecord

__all__ = ["build_model", "group_claims", "slug"]

_DOC_RE = re.compile(r"(?<!\d)(00[0-9])(?!\d)")
_EPOCH = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


def slug(text: str) -> str:
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


def _firmness(item: tuple[dict, RunFolderRecord]) -> tuple[int, _dt.datetime, str]:
    claim, run = item
    return STRENGTH_RANK.get(claim["strength"], 0), run.finished or _EPOCH, str(run.path)


def group_claims(items: Iterable[tuple[dict, RunFolderRecord]]) -> list[ClaimGroup]:
    """Group judgements by claim key (first appearance order): the firmest, then the latest, decides."""
    by_key: dict[str, list[tuple[dict, RunFolderRecord]]] = {}
    for claim, run in items:
        by_key.setdefault(claim["key"], []).append((claim, run))
    groups = []
    for key, judged in by_key.items():
        ranked = sorted(judged, key=_firmness, reverse=True)
        groups.append(ClaimGroup(key, ranked[0], ranked[1:]))
    return groups


def _label_runs(runs: list[RunFolderRecord], by_name: Mapping[str, Any]) -> None:
    """Unique labels and anchors; ``sources``: the documents a run covers, the one shown in full first."""
    names = [r.experiment for r in runs]
    used: set[str] = set()
    for r in runs:
        r.label = r.experiment if names.count(r.experiment) == 1 else f"{r.experiment} ({r.path.parent.name}/{r.path.name})"
        base = "run-" + slug(r.label)
        anchor, k = base, 2
        while anchor in used:
            anchor, k = f"{base}-{k}", k + 1
        used.add(anchor)
        r.anchor = anchor
        # shown in full under the document most of its claims are about (then the registry's first
        # source); the other documents it covers link to it
        declared = [d for d in (getattr(by_name.get(r.experiment), "sources", ()) or ()) if d in DOCUMENTS]
        per_doc: dict[str, int] = {}
        for c in r.claims:
            for d in _claim_docs(c["source"]):
                per_doc[d] = per_doc.get(d, 0) + 1
        rank = {d: i for i, d in enumerate(declared)}
        docs = set(declared) | set(per_doc)
        r.sources = sorted(docs, key=lambda d: (-per_doc.get(d, 0), rank.get(d, len(rank)), d == OTHER, d)) or [OTHER]


def _sections(runs: list[RunFolderRecord], exps: list[Any]) -> list[DocumentSection]:
    sections = {d: DocumentSection(d, t, desc, f"doc-{d}") for d, (t, desc) in DOCUMENTS.items()}
    sections[OTHER] = DocumentSection(OTHER, "Other claims", "Claims and runs that name none of the documents 000–004.", "doc-other")
    judged: dict[str, list[tuple[dict, RunFolderRecord]]] = {d: [] for d in sections}
    for r in runs:
        for c in r.claims:
            for d in _claim_docs(c["source"]):
                judged[d].append((c, r))
        sections[r.sources[0]].runs.append(r)
        for d in r.sources[1:]:
            sections[d].linked_runs.append(r)
    for d, s in sections.items():
        s.groups = group_claims(judged[d])
        for i, g in enumerate(s.groups, 1):
            g.anchor = f"claim-{d}-{i}"
    run_names = {r.experiment for r in runs}
    for e in exps:
        for d in getattr(e, "sources", ()) or ():
            if d in sections:
                sections[d].registered.append(e)
                if e.name not in run_names:
                    sections[d].unrun.append(e)
    ordered = [sections[d] for d in DOCUMENTS]
    if sections[OTHER].groups or sections[OTHER].runs:
        ordered.append(sections[OTHER])
    return ordered


def build_model(
    paths: Sequence[str | Path],
    registry: Mapping[str, Any] | Iterable[Any] | None = None,
    title: str | None = None,
    findings: Mapping[str, str] | None = None,
) -> ReportData:
    """Read the run folders under ``paths`` and arrange them by source document.

    ``findings``: the key-findings table (claim id -> sentence template),
    default `actionlab.report.KEY_FINDINGS`.
    """
    runs, problems, studies = collect(paths)
    if not runs and not problems:
        raise DataError(
            f"no run folders found in {', '.join(str(p) for p in paths)}; "
            "make some with `actionlab study --preset quick --out DIR` (or any experiment command) first"
        )
    exps, reg_error = _load_registry(registry)
    by_name = {e.name: e for e in exps}
    runs.sort(key=lambda r: (getattr(by_name.get(r.experiment), "order", 100), r.experiment, str(r.path)))
    _label_runs(runs, by_name)
    sections = _sections(runs, exps)
    for i, p in enumerate(problems, 1):
        p.anchor = f"problem-{i}"
    return ReportData(
        title=title or "actionlab report",
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        inputs=[str(p) for p in paths],
        runs=runs,
        problems=problems,
        sections=sections,
        studies=studies,
        registry=exps,
        registry_error=reg_error,
        key_findings=key_findings((g for s in sections for g in s.groups), findings),
        quick_only=bool(runs) and all(r.preset == "quick" for r in runs),
    )
