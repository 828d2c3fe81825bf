"""The report's data model: the documents, one record per run folder, claim groups, sections, findings."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actionlab._display import short_repr
from actionlab.runs import VERDICTS

__all__ = [
    "DOCUMENTS",
    "OTHER",
    "RunFolderRecord",
    "Problem",
    "ClaimGroup",
    "DocumentSection",
    "KeyFinding",
    "ReportData",
    "ReportFiles",
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

#: The section of claims and runs that name none of the documents.
OTHER = "other"

#: Firmness order of a claim's ``strength`` (higher decides).
STRENGTH_RANK = {"firm": 1, "indicative": 0}


@short_repr
@dataclass
class RunFolderRecord:
    """One finished run folder, as read from its ``results.json`` (not a training run of an experiment)."""

    path: Path
    experiment: str
    config: Any = None
    results: Any = None
    claims: list[dict] = field(default_factory=list)  # normalised: see `collect.normalise_claim`
    figures: list[str] = field(default_factory=list)  # file names in ``path`` (existing ones)
    missing_figures: list[str] = field(default_factory=list)  # listed in results.json but absent
    provenance: dict = field(default_factory=dict)
    has_summary: bool = False
    preset: str | None = None  # quick | default | full | … (None: not recorded)
    finished: _dt.datetime | None = None  # provenance date, else the mtime of results.json
    anchor: str = ""  # HTML id of the run's subsection
    label: str = ""  # a short name: experiment, plus the folder when ambiguous
    sources: list[str] = field(default_factory=list)  # documents it covers


@short_repr
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


@short_repr
@dataclass
class ClaimGroup:
    """Every judgement of one claim (one id) in one section: the decisive one first.

    The firmest judgement decides (``firm`` over ``indicative``), then the
    latest run; the others are listed under it.
    """

    key: str  # the claim id, or "source | claim text" for claims written without an id
    decisive: tuple[dict, RunFolderRecord]
    others: list[tuple[dict, RunFolderRecord]] = field(default_factory=list)
    anchor: str = ""

    @property
    def claim(self) -> dict:
        return self.decisive[0]

    @property
    def run(self) -> RunFolderRecord:
        return self.decisive[1]


@short_repr
@dataclass
class DocumentSection:
    """What the report says about one source document."""

    doc: str  # "000" … "004" or "other"
    title: str
    description: str
    anchor: str
    groups: list[ClaimGroup] = field(default_factory=list)
    runs: list[RunFolderRecord] = field(default_factory=list)  # runs shown in full in this section
    linked_runs: list[RunFolderRecord] = field(default_factory=list)  # runs shown in another section
    registered: list[Any] = field(default_factory=list)  # experiments whose ``sources`` name it
    unrun: list[Any] = field(default_factory=list)  # of those, the ones without a run folder here

    @property
    def heading(self) -> str:
        return f"{self.doc} — {self.title}" if self.doc != OTHER else self.title

    @property
    def counts(self) -> dict[str, int]:
        """Decisive verdicts per verdict (one per claim id)."""
        c = {v: 0 for v in VERDICTS}
        for g in self.groups:
            c[g.claim["verdict"]] = c.get(g.claim["verdict"], 0) + 1
        return c

    @property
    def status(self) -> str:
        """``not yet measured`` when no claim of it was measured, else a count of verdicts."""
        c = self.counts
        measured = sum(n for v, n in c.items() if v != "not yet measured")
        if not self.groups or measured == 0:
            return "not yet measured"
        return ", ".join(f"{n} {v}" for v, n in c.items() if n)


@short_repr
@dataclass
class KeyFinding:
    """One plain sentence of the "Key findings" section, from a firm decisive claim."""

    claim_id: str
    sentence: str
    verdict: str
    strength: str
    anchor: str  # the claim row it summarises
    run: RunFolderRecord


@short_repr
@dataclass
class ReportData:
    """Everything the renderers need."""

    title: str
    generated: str
    inputs: list[str]
    runs: list[RunFolderRecord]
    problems: list[Problem]
    sections: list[DocumentSection]
    studies: list[dict]  # the "study" blocks of study.json files met
    registry: list[Any]
    registry_error: str | None = None
    key_findings: list[KeyFinding] = field(default_factory=list)
    quick_only: bool = False  # every run used the quick preset

    @property
    def firm_claims(self) -> int:
        """How many claims (one per id) a firm judgement decides."""
        keys = {g.key for s in self.sections for g in s.groups if g.claim["strength"] == "firm"}
        return len(keys)


@short_repr
@dataclass
class ReportFiles:
    """Where `build_report` wrote the report."""

    html: Path
    markdown: Path | None
    runs: int
    problems: int
