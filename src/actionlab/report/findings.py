"""The "Key findings" of a report: one plain sentence per firm verdict that matters most.

`KEY_FINDINGS` maps a claim id (set by the experiment that owns the claim)
to a sentence template. A template is a `str.format` string over the
decisive judgement of that claim: ``{measured}``, ``{document_value}``,
``{verdict}``, ``{strength}``, ``{details}``, ``{claim}``, ``{source}``,
``{evidence}`` and ``{run}``; a dict-valued field is reached by key, e.g.
``{measured[fashion-mnist]}``. Every value is written as readable text
(`format_value`). The sentence states what the document says and what was
measured — the verdict itself always comes from the claim, never from the
template. Only claims whose decisive judgement is ``firm`` become findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import ClaimGroup, KeyFinding
from actionlab._values import format_value, is_number

__all__ = ["KEY_FINDINGS", "key_findings", "finding_sentence"]

#: claim id -> sentence template (see the module docstring); the report lists them in this order.
KEY_FINDINGS: dict[str, str] = {
    "001.s2-uw-coefficient":
        "The U·W term of S₂ (000/001 eq. 6; the notes write σ'(0)/(2M), a factor ×2 from the exact σ'(0)/M): "
        "the note's formula gives {document_value}, the exact expansion {measured} — {verdict}.",
    "001.s3-coefficients":
        "The (U·b)·c, (U·W)·c and U·W·b terms of S₃ (000/001 §2.4; the note divides by 3! but drops the ×6 "
        "orderings): exact/note = {measured[random]} on a random problem — {verdict}.",
    "001.s3-uww-coefficient":
        "The U·W·W term of S₃ (000/001 §2.4; the note drops its ×3 orderings): exact/note = "
        "{measured[random][ratio]:.6g} (note {measured[random][note]:.4g}, exact {measured[random][exact]:.4g}) — {verdict}.",
    "001.all-orders-coefficient":
        "The conjectured all-orders leading coefficient (000/001 §2.5; the notes' σ⁽ⁿ⁾(0)/((n+1)!·M) against "
        "the exact σ⁽ⁿ⁾(0)/(n!·M), a factor ×(n+1)): for silu, n = 1…5, note {measured[random][note]}, "
        "exact {measured[random][exact]}, exact/note {measured[random][ratio]} — {verdict}.",
    "001.c0-psd":
        "The matrix δ_αβ/M − 1/M² of the c·c term of S₂ (001 §2.3 calls it non-positive definite): "
        "its measured eigenvalues are {measured[random][eigenvalues]} with multiplicities "
        "{measured[random][multiplicities]}, i.e. {measured[random][definiteness]} — {verdict}.",
    "001.c0-unstable":
        "Stability of c = 0 (001 §2.3 says it is unstable): measured ‖∇_c S(0)‖ = {measured[random][grad_norm]:.1e} "
        "and min S(c) − S(0) = {measured[random][min_gap]:.1e} over 256 random c (S is convex in c) "
        "— {verdict}.",
    "002.relu-derivative":
        "ReLU's derivative at the kink (002 takes σ'(0) = 1): the note's S₂ is {measured[random][note_S2]:.4g}, "
        "the exact one-sided (t → 0⁺) S₂ {measured[random][exact_S2]:.4g} (U·W part {measured[random][note_UW]:.4g} "
        "vs {measured[random][exact_UW]:.4g}) — {verdict}.",
    "004.B12-relu":
        "B.12's relu integral I_φ'[a, b] (004; printed as a/(2π)(π/2 + sin⁻¹c)): the supplement gives "
        "{document_value}, the measurement {measured} — {verdict}.",
    "004.B10-relu":
        "B.10's boundary q̃^L = 1/2 for relu networks (004): the supplement gives {document_value}, "
        "measured {measured} — {verdict}.",
    "003.rngd-faster-per-epoch":
        "RNGD per epoch against SGD and Adam (003 §5: it learns faster per epoch): the paper says "
        "{document_value}, measured {measured} — {verdict}.",
    "003.rngd-speed":
        "RNGD's cost in wall-clock time per epoch against Adam (003 reports none): target {document_value}, "
        "measured {measured} — {verdict}.",
    "001.early-stop":
        "Early stopping where ∇S_T·∇S_E = 0 (001 §3, eq. 7): the note says {document_value}; in the regime of "
        "its derivation (full-batch GD, small steps) {measured[baseline]} — {verdict}. Full-batch GD holds up to "
        "η = {measured[gd_holds_up_to_f]}·2/λ_max; mini-batch: {measured[minibatch_gaps]}; other optimizers: "
        "{measured[optimizer_gaps]}; training-set size: {measured[size_gaps]}.",
    "001.power-law-E":
        "The loss–model-size power law and the embedding dimension (001 §2.4: it appears only when E is large "
        "enough): the note says {document_value}; measured α(E) and the model comparison per E: {measured} "
        "— {verdict}.",
    "001.dominance-vs-E":
        "Term dominance and the embedding dimension (001 §2.4: the dominance of U·W·W vanishes for small E): "
        "measured {measured} — {verdict}.",
    "004.lr-bound":
        "The learning-rate bound η < 2(1+μ)/λ_max at a minimum (004 Lemma 6, A.7): the supplement says "
        "{document_value}, measured critical ratio {measured} — {verdict}.",
}


class _Readable:
    """A claim field for `str.format`: readable text when formatted, its items by key or index."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        if spec and is_number(self.value):
            return format(self.value, spec)
        text = format_value(self.value, max_items=32)
        return f"({text})" if isinstance(self.value, Mapping) and len(self.value) > 1 else text

    def __getitem__(self, key: Any) -> _Readable:
        v = self.value
        if isinstance(v, Mapping):
            return _Readable(v[key])
        if isinstance(v, list):
            return _Readable(v[int(key)])
        raise KeyError(key)


def finding_sentence(template: str, claim: Mapping, run_label: str) -> str:
    """The template filled with the claim's fields; a generic sentence when it names a field the claim lacks."""
    fields = {k: _Readable(claim.get(k)) for k in ("measured", "document_value", "details", "evidence", "claim", "source")}
    fields.update(verdict=claim["verdict"], strength=claim["strength"], run=run_label)
    try:
        return template.format_map(fields)
    except (KeyError, IndexError, ValueError, TypeError):
        return (f"{claim['claim']} ({claim['source']}): the document says {format_value(claim.get('document_value'))}, "
                f"measured {format_value(claim.get('measured'), max_items=32)} — {claim['verdict']}.")


def key_findings(groups: Iterable[ClaimGroup], table: Mapping[str, str] | None = None) -> list[KeyFinding]:
    """One `KeyFinding` per claim id of ``table`` (default `KEY_FINDINGS`) whose decisive judgement is firm."""
    table = KEY_FINDINGS if table is None else table
    first: dict[str, ClaimGroup] = {}
    for g in groups:  # a claim naming two documents sits in two sections: take it once
        first.setdefault(g.key, g)
    out = []
    for cid, template in table.items():
        g = first.get(cid)
        if g is None or g.claim["strength"] != "firm":
            continue
        out.append(KeyFinding(cid, finding_sentence(template, g.claim, g.run.label), g.claim["verdict"],
                              g.claim["strength"], g.anchor, g.run))
    return out
