"""``actionlab notes-check``: every closed-form claim of notes 000–002, judged from measured numbers.

One row per claim, each with a stable id (``001.s2-uw-coefficient``, …), the
note's value, the measured value on every problem it was evaluated on, a
verdict and its evidence:

* the coefficients of S_0 … S_3 and of the all-orders series (000/001 §2.1–2.5,
  002 eqs. (7)–(10)) on a random balanced problem and on Fashion-MNIST, the
  exact values from :func:`actionlab.expansion.action_series` (Taylor mode)
  by inclusion–exclusion over parameter blocks;
* every second- and third-derivative entry printed in §2.3–2.4, against float64
  autodiff (``torch.func``) of S on a small random problem, including the
  self-contradictory "∂³S/∂U∂W∂b = 1/(6M)(…) = 1/(2M) J";
* the definiteness of δ/M − 1/M² and the stability of c = 0 (§2.3), from
  measured eigenvalues, gradients and sampled values of S;
* "S(θ*) = 0 where q_m = 1" (000/001 §1.2), along S(tθ) on a separable problem;
* "the scales of U, c, W and b are in the same order at θ*" (001 §2.4), from
  trained θ* over several seeds (Fashion-MNIST, the θ* of ``theta-star``).

Every verdict comes from a small pure ``judge_*`` function of the measured
numbers and a stated tolerance or threshold. The claim "J_αγ ranges over
−0.1 … 0.075" (id ``001.j-range``) is owned by ``actionlab j-stats``; this
experiment only records the raw-pixel range beside the Fashion-MNIST problem.

The exact checks run in float64 on the CPU whatever ``--dtype`` / ``--device``
say (the problems are small and the checks are to 1e-9 relative); the θ*
training follows ``--device``. The claims themselves — the notes' statements
and formulas — live here, not in the math module.

Examples::

    actionlab notes-check                       # random problem, Fashion-MNIST, θ* scales over 3 seeds
    actionlab notes-check --no-fashion --out runs/notes
    actionlab notes-check --per-class 300 --hidden 64 --star-seeds 0 1 2 3 4
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from actionlab import activations as _act
from actionlab._checks import ValueCheckError
from actionlab._display import short_repr
from actionlab.config import RunOptions
from actionlab.expansion import (
    action_exact,
    action_series,
    as_params,
    class_frequencies,
    j_contract,
    j_tensor,
    kappa,
    kappa_note,
    s2_stability,
    terms,
)
from actionlab.experiments._registry import param, register_experiment
from actionlab.runs import Claim, RunFolder

__all__ = ["NotesCheckConfig", "NotesCheckResult", "ClaimCheck", "check_note_claims", "derivative_entry_claims",
           "minimum_claim", "theta_star_scale_claim", "run_notes_check", "to_markdown", "run",
           "judge_close", "judge_zero", "definiteness", "judge_definiteness", "judge_c0_unstable",
           "judge_minimum_attained", "judge_same_scale", "element_scales"]

#: relative tolerance of "the note's value equals the exact value" (float64 arithmetic decides it)
TOL = 1e-9
#: relative tolerance below which an eigenvalue counts as zero (relative to the largest |eigenvalue|)
EIG_TOL = 1e-12
#: "the same order": the largest element RMS of U, c, W, b over the smallest is below this (one decade)
SCALE_RATIO_THRESHOLD = 10.0
#: confidence level of the intervals over seeds
LEVEL = 0.95
#: S(tθ) "approaches 0" when its last value is below this fraction of its largest on the probe
APPROACH_FRACTION = 1e-6
#: the θ* sizes of ``--star-size``: overrides of :class:`~actionlab.experiments._trained.ThetaStarSettings`
STAR_SIZES: dict[str, dict] = {
    "quick": {"dim": 32, "hidden": 64, "epochs": 8, "train_per_class": 200, "test_per_class": 80,
              "batch_size": 256, "lr": 3e-3},  # = _trained.QUICK_THETA_STAR (shared cache with theta-star --quick)
    "reduced": {"dim": 256, "hidden": 512},  # all 60,000 training images, the notes' optimiser
    "notes": {},  # the notes' set-up: E = 1024, H = 2048 (theta-star's default θ*)
}


@dataclass
class NotesCheckConfig:
    """Check every closed-form claim of the theory notes 000–002 against exact float64 computations."""

    random_shape: tuple[int, ...] = param((10, 8, 6, 30), "the random problem: classes M, hidden units H, input "
                                          "dimension E, samples per class", min=1, length=4)
    scale: float = param(0.5, "θ ~ N(0, scale²) on the random problem", min=0, exclusive_min=True)
    entries_shape: tuple[int, ...] = param((4, 3, 3, 10), "the problem on which every ∂²S/∂θ∂θ' and ∂³S/∂θ∂θ'∂θ'' "
                                           "entry of 000/001 §2.3–2.4 is computed at θ = 0 by float64 autodiff: M, H, "
                                           "E, samples per class", min=1, length=4)
    fashion: bool = param(True, "also check on Fashion-MNIST: a balanced test subset (raw 784 pixels) and the "
                                "trained θ* of the scale claim (--no-fashion: neither)")
    per_class: int = param(100, "Fashion-MNIST subset: samples per class", min=1)
    hidden: int = param(32, "H of the random θ on Fashion-MNIST", min=1)
    fashion_scale: float = param(0.05, "θ ~ N(0, scale²) on Fashion-MNIST", min=0, exclusive_min=True)
    star_seeds: tuple[int, ...] = param((0, 1, 2), "seeds of the trained θ* whose element scales (RMS of U, c, W, b) "
                                        "test 001 §2.4 'the scales of U, c, W and b are in the same order'; "
                                        "empty = skip that claim", min=0)
    star_size: str = param("reduced", "the θ* of the scale claim: quick (E = 32, H = 64, 200 images/class), reduced "
                                      "(E = 256, H = 512, all training images) or notes (E = 1024, H = 2048, the "
                                      "notes' set-up); learned embedding, AdamW as in theta-star",
                           choices=tuple(STAR_SIZES))

    PRESETS: ClassVar[dict[str, dict]] = {
        "quick": {"per_class": 30, "star_seeds": (0, 1), "star_size": "quick"},
        "default": {},
        "full": {"per_class": 300, "star_seeds": (0, 1, 2, 3, 4), "star_size": "notes"},
    }


@short_repr
@dataclass
class NotesCheckResult:
    """The claim rows (id, source, where, claim, note_value, exact and measured per problem, verdict, details)
    and the problems."""

    rows: list[dict]
    problems: dict


@dataclass
class ClaimCheck:
    """One closed-form claim of notes 000–002 evaluated on one problem.

    note_value: what the note's formula gives (a number, or a statement);
    exact: the project's exact value on the same problem; holds: the judge's
    decision — None where the claim's premise is absent (e.g. unbalanced data);
    numbers: the small dict of measured numbers the verdict rests on (the
    run-folder claim's ``measured``); statistic and rule: what was compared and
    the decision rule, stated before the numbers.
    """

    id: str
    source: str
    where: str
    claim: str
    note_value: object
    exact: object
    holds: bool | None
    details: str = ""
    numbers: dict = field(default_factory=dict)
    strength: str | None = None  # None: firm when decided (exact arithmetic); set where an interval decides
    statistic: str = "exact value (float64) against the note's formula"
    rule: str = f"holds iff |note − exact| ≤ {TOL:g}·max(1, |note|, |exact|)"


# ---------------------------------------------------------------------------------------
# the judges: pure functions of measured numbers
# ---------------------------------------------------------------------------------------


def judge_close(a: float, b: float, tol: float = TOL) -> bool:
    """True iff |a − b| ≤ tol·max(1, |a|, |b|) (the note's value equals the exact one)."""
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def judge_zero(x: float, tol: float = TOL, scale: float = 1.0) -> bool:
    """True iff |x| ≤ tol·max(1, scale) (a term the note says is absent)."""
    return abs(x) <= tol * max(1.0, abs(scale))


def definiteness(eigenvalues, tol: float = EIG_TOL) -> str:
    """The definiteness of a symmetric matrix from its eigenvalues; |λ| ≤ tol·max|λ| counts as 0.

    One of "positive definite", "positive semi-definite", "negative definite",
    "negative semi-definite", "indefinite", "zero".
    """
    ev = [float(x) for x in eigenvalues]
    if not ev:
        raise ValueError("definiteness needs at least one eigenvalue")
    cut = tol * max(abs(x) for x in ev)
    pos = sum(x > cut for x in ev)
    neg = sum(x < -cut for x in ev)
    if pos and neg:
        return "indefinite"
    if pos:
        return "positive definite" if pos == len(ev) else "positive semi-definite"
    if neg:
        return "negative definite" if neg == len(ev) else "negative semi-definite"
    return "zero"


def judge_definiteness(eigenvalues, claimed: str, tol: float = EIG_TOL) -> bool:
    """Whether the claimed "non-positive definite" / "non-negative definite" holds for these eigenvalues."""
    kind = definiteness(eigenvalues, tol)
    admissible = {"non-positive definite": {"negative definite", "negative semi-definite", "zero"},
                  "non-negative definite": {"positive definite", "positive semi-definite", "zero"}}
    if claimed not in admissible:
        raise ValueError(f"claimed must be one of {sorted(admissible)}, got {claimed!r}")
    return kind in admissible[claimed]


def judge_c0_unstable(grad_norm: float, min_gap: float, tol: float = TOL) -> bool:
    """Whether c = 0 is unstable along c: S decreases somewhere near it.

    Unstable iff the gradient at c = 0 is nonzero (‖∇_c S(0)‖ > tol) or some
    sampled c has S(c) < S(0) − tol. S(c) = LSE(c) − Σ_α p(α) c_α is convex, so a
    zero gradient makes c = 0 a global minimum along c and no sample can go below.
    """
    return grad_norm > tol or min_gap < -tol


def judge_minimum_attained(S_values, fraction: float = APPROACH_FRACTION) -> bool | None:
    """Whether "the minimum S = 0 is attained" on a probe S(t_1 θ), …, S(t_k θ) with growing t.

    True if some probed S ≤ 0 (attained at a finite θ); False if every S > 0 while
    the last is below ``fraction`` of the largest (S only approaches its infimum 0
    as t → ∞); None if the probe does not approach 0 (no evidence either way).
    """
    S = [float(x) for x in S_values]
    if not S:
        raise ValueError("judge_minimum_attained needs at least one value of S")
    if min(S) <= 0.0:
        return True
    return False if S[-1] <= fraction * max(S) else None


def judge_same_scale(estimate: float, low: float, high: float, threshold: float = SCALE_RATIO_THRESHOLD,
                     n_seeds: int = 1) -> tuple[str, str]:
    """(verdict, strength) of "U, c, W, b are of the same order" from log10(max RMS / min RMS) over seeds.

    holds iff the ratio is below ``threshold``. Firm when the interval [low, high]
    (of the mean log10 ratio) lies on one side of log10(threshold) and there are
    ≥ 3 seeds; otherwise the verdict of the point estimate, indicative.
    """
    cut = math.log10(threshold)
    verdict = "holds" if estimate < cut else "does not hold"
    decided = (high < cut) if verdict == "holds" else (low > cut)
    return verdict, ("firm" if decided and n_seeds >= 3 else "indicative")


def _verdict(checks: list[ClaimCheck]) -> str:
    """A claim's verdict over problems: does not hold if any problem refutes it, holds if all confirm it."""
    hs = [c.holds for c in checks]
    if any(h is False for h in hs):
        return "does not hold"
    return "holds" if hs and all(h is True for h in hs) else "inconclusive"


# ---------------------------------------------------------------------------------------
# one problem (z, labels, θ) and the claims evaluated on it
# ---------------------------------------------------------------------------------------


def _restrict(theta: dict, keep: str) -> dict:
    """θ with only the named blocks (letters of 'UcWb') kept, the others zero."""
    return {k: (v if k in keep else torch.zeros_like(v)) for k, v in theta.items()}


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


@dataclass
class _Problem:
    """One problem (z, labels, θ) and what every claim group needs of it."""

    z: torch.Tensor
    labels: torch.Tensor
    th: dict
    M: int
    H: int
    pa: torch.Tensor
    balanced: bool
    bal: str
    tol: float
    silu: Any
    full: torch.Tensor
    T: Any

    def S(self, keep: str, K: int = 3) -> torch.Tensor:
        """The series coefficients S_0..S_K along θ restricted to the blocks ``keep``."""
        return action_series(_restrict(self.th, keep), self.z, self.labels, K, activation=self.silu)


def _problem(z: torch.Tensor, labels: torch.Tensor, theta, tol: float) -> _Problem:
    silu = _act.get("silu")
    p = as_params(theta, silu)
    th = {"U": p.U, "c": p.c, "W": p.W, "b": p.b}
    M, H = p.M, p.H
    pa = class_frequencies(labels, M)
    balanced = bool(torch.allclose(pa, torch.full_like(pa, 1.0 / M), rtol=0, atol=1e-12))
    z = z.to(torch.promote_types(p.U.dtype, z.dtype))
    full = action_series(th, z, labels, 3, activation=silu)
    T = terms(th, z, labels, activation=silu, exact=False)
    bal = "balanced" if balanced else f"UNBALANCED (max |p(α) − 1/M| = {float((pa - 1 / M).abs().max()):.3g})"
    return _Problem(z, labels, th, M, H, pa, balanced, bal, tol, silu, full, T)


def _coefficient_check(cid: str, source: str, where: str, claim: str, note: float, exact: float, tol: float,
                       details: str) -> ClaimCheck:
    """A named coefficient: the note's value against the exact one, with their ratio."""
    return ClaimCheck(cid, source, where, claim, note, exact, judge_close(note, exact, tol), details,
                      numbers={"note": note, "exact": exact, "ratio": _ratio(exact, note)})


def _absent_check(cid: str, source: str, where: str, claim: str, exact: float, P: _Problem, details: str) -> ClaimCheck:
    """A term the note says vanishes for balanced data: undecided (None) on unbalanced data."""
    return ClaimCheck(cid, source, where, claim, 0.0, exact, judge_zero(exact, P.tol) if P.balanced else None,
                      f"{details}; data {P.bal}", numbers={"exact": exact, "balanced": P.balanced},
                      rule=f"holds iff |exact| ≤ {P.tol:g} on balanced data; undecided on unbalanced data")


def _claims_s0_s1(P: _Problem) -> list[ClaimCheck]:
    """S_0 = ln M and S_1 = 0 (000/001 eqs. (4)–(5), 002 eqs. (7)–(8))."""
    M, full, T = P.M, P.full, P.T
    return [
        _coefficient_check("001.s0-ln-m", "000 eq. 4; 001 eq. 4; 002 eq. 7", "§2.1", "S_0 = ln M", math.log(M),
                           float(full[0]), P.tol, "S_0 from action_series"),
        _absent_check("001.s1-zero", "000 eq. 5; 001 eq. 5; 002 eq. 8", "§2.2", "S_1(θ) = 0 for balanced data",
                      float(full[1]), P, f"exact S_1 = −Σ_α (p(α) − 1/M) c_α = {T.S1:.3e} (nonzero whenever classes "
                      f"are unbalanced)"),
    ]


def _claims_s2(P: _Problem) -> list[ClaimCheck]:
    """The terms of S_2 (000/001 eq. (6), 002 eq. (9)): c·c, U·W and the absent U·b."""
    S, T = P.S, P.T
    s2uw, note_uw = float(S("UW")[2]), T.by_name("U·W").note_value
    return [
        _coefficient_check("001.s2-cc-term", "000 eq. 6; 001 eq. 6; 002 eq. 9", "§2.3",
                           "c·c term of S_2: ½ Σ (δ_αβ/M − 1/M²) c_α c_β", T.by_name("c·c").note_value,
                           float(S("c")[2]), P.tol, "exact = S_2 along θ restricted to c"),
        _coefficient_check("001.s2-uw-coefficient", "000 eq. 6; 001 eq. 6", "§2.3",
                           "U·W term of S_2: ½ Σ_αγ J_αγ/(2M) Σ_β U_αβ W_βγ", note_uw, s2uw, P.tol,
                           f"exact = S_2 along θ restricted to (U, W) = (σ'(0)/M) Σ J U W = J/(2M)·UW; "
                           f"exact/note = {_ratio(s2uw, note_uw):.6g} (the Hessian entry J/(2M) is right, but the pair "
                           f"(U_αβ, W_βγ) appears twice in ½ θᵀ∇²Sθ: the ½ is cancelled)"),
        _absent_check("001.s2-ub-absent", "000 §2.3; 001 §2.3", "§2.3",
                      "∂²S/∂U_αβ∂b_β(0) = 0: no U·b term in S_2 (balanced data)", float(S("Ub")[2]), P,
                      "exact = S_2 along θ restricted to (U, b)"),
    ]


def _claims_definiteness(P: _Problem) -> list[ClaimCheck]:
    """The definiteness of δ_αβ/M − 1/M² (measured eigenvalues) and the stability of c = 0 (§2.3)."""
    M = P.M
    Hcc = torch.eye(M, dtype=torch.float64) / M - 1.0 / M**2
    ev = [float(x) for x in torch.linalg.eigvalsh(Hcc)]
    kind = definiteness(ev)
    num = {"eigenvalues": [min(ev), max(ev)], "multiplicities": [sum(abs(x - min(ev)) <= EIG_TOL for x in ev),
                                                                 sum(abs(x - max(ev)) <= EIG_TOL for x in ev)],
           "determinant": float(torch.linalg.det(Hcc)), "definiteness": kind}
    evs = (f"eigenvalues {min(ev):.2e} (eigenvector ∝ (1,…,1)) and {max(ev):.6g} = 1/M (×{M - 1}); "
           f"det = {num['determinant']:.2e}: {kind}")
    rule = f"eigenvalues of the M × M matrix (torch.linalg.eigvalsh); |λ| ≤ {EIG_TOL:g}·max|λ| counts as 0"
    out = [
        ClaimCheck("001.c0-psd", "000 §2.3; 001 §2.3", "§2.3",
                   "δ_αβ/M − 1/M² is non-positive definite (since it has non-positive determinant)",
                   "non-positive definite", evs, judge_definiteness(ev, "non-positive definite"),
                   "a zero determinant does not make a matrix non-positive definite: one zero eigenvalue (softmax is "
                   "invariant under c → c + const·1) and M−1 eigenvalues 1/M > 0",
                   numbers=num, statistic="eigenvalues of δ_αβ/M − 1/M²", rule=rule),
        ClaimCheck("002.cc-nonnegative-definite", "002 §2.3", "§2.3", "δ_αβ/M − 1/M² is non-negative definite",
                   "non-negative definite", evs, judge_definiteness(ev, "non-negative definite"),
                   "eigenvalues of the M × M matrix", numbers=num, statistic="eigenvalues of δ_αβ/M − 1/M²", rule=rule),
    ]
    out.append(_c0_stability(P))
    return out


def _c0_stability(P: _Problem) -> ClaimCheck:
    """"c = 0 is unstable" (001 §2.3): gradient, Hessian eigenvalues and sampled values of S(U=W=b=0, c)."""
    M = P.M
    pz = P.pa.to(dtype=torch.float64, device="cpu")

    def S_c(c: torch.Tensor) -> torch.Tensor:  # S(U = W = b = 0, c) = LSE(c) − Σ_α p(α) c_α (independent of the series)
        return torch.logsumexp(c, -1) - c @ pz

    c0 = torch.zeros(M, dtype=torch.float64)
    grad = torch.func.grad(S_c)(c0)
    hev = [float(x) for x in torch.linalg.eigvalsh(torch.func.hessian(S_c)(c0))]
    g = torch.Generator().manual_seed(0)
    cs = torch.randn(256, M, dtype=torch.float64, generator=g) * torch.logspace(-3, 1, 256, dtype=torch.float64)[:, None]
    gap = float((S_c(cs) - S_c(c0)).min())
    gnorm = float(grad.norm())
    det = float(torch.linalg.det(torch.eye(M, dtype=torch.float64) - 1.0 / M))
    unstable = judge_c0_unstable(gnorm, gap, P.tol) if P.balanced else None
    return ClaimCheck(
        "001.c0-unstable", "001 §2.3", "§2.3",
        "δ_αβ − 1/M has non-positive determinant for M = 2, 3, …, which means c = 0 is also unstable",
        "c = 0 unstable", f"det(δ − 1/M) = {det:.2e}; ‖∇_c S(0)‖ = {gnorm:.2e}; Hessian eigenvalues "
        f"[{min(hev):.2e}, {max(hev):.4g}]; min over 256 random c of S(c) − S(0) = {gap:.3e}", unstable,
        f"data {P.bal}; the determinant is 0, but S(c) = LSE(c) − Σ_α p(α) c_α is convex with zero gradient at c = 0 for "
        "balanced data, so c = 0 is a global minimum along c (flat only along c ∝ (1,…,1), where S is exactly constant)",
        numbers={"grad_norm": gnorm, "hessian_eigenvalues": [min(hev), max(hev)], "min_gap": gap, "determinant": det},
        statistic="‖∇_c S(0)‖ (autodiff), eigenvalues of ∇²_c S(0), min of S(c) − S(0) over 256 random c with |c| "
                  "from 1e-3 to 10",
        rule=f"unstable iff ‖∇_c S(0)‖ > {P.tol:g} or some S(c) − S(0) < −{P.tol:g}; undecided on unbalanced data")


def _claims_s2_bound(P: _Problem, st) -> list[ClaimCheck]:
    """S_2 has no lower bound (§2.3), from :func:`s2_stability`."""
    return [ClaimCheck(
        "001.s2-no-lower-bound", "000 §2.3; 001 §2.3", "§2.3", "there is no lower bound for the second (U·W) term of S_2",
        "unbounded below", f"λ_min(∇²S(0)) = {st.lambda_min:.6g} (= −s_1 of σ'(0)[D | 1/M − p]); "
        f"S_2 along the unit direction = {st.s_along[2]:.6g}", st.lambda_min < 0,
        f"S_2 is an indefinite quadratic form (spectrum ±s_i, each H times); along that direction the exact S "
        f"has its minimum {st.S_min:.6g} at t = {st.t_min:.4g} and never goes below 0",
        numbers={"lambda_min": st.lambda_min, "S2_along": st.s_along[2]}, statistic="λ_min of ∇²S(0)",
        rule="holds iff λ_min(∇²S(0)) < 0 (a quadratic form with a negative eigenvalue is unbounded below)")]


#: the S_3 terms: (derived coefficient text of the note, how the exact value is obtained, orderings the note drops)
_S3_TERMS: dict[str, tuple[str, str, int]] = {
    "c·c·c": ("Σ (δ_αβγ/(6M) − (δ_αβ+δ_αγ+δ_βγ)/(6M²) + 1/(3M³)) c_α c_β c_γ", "S_3(c)", 1),
    "(U·b)·c": ("Σ (δ_αγ/(12M) − 1/(12M²)) (Σ_β U_αβ b_β) c_γ", "S_3(U, b, c) − S_3(U, b) − S_3(c)", 6),
    "(U·W)·c": ("Σ (Z_γ δ_αδ/(12M) − Z_γ/(12M²)) (Σ_β U_αβ W_βγ) c_δ", "S_3(U, W, c) − S_3(U, W) − S_3(c)", 6),
    "U·W·b": ("Σ J_αγ/(12M) Σ_β U_αβ W_βγ b_β", "S_3(U, W, b) − S_3(U, W) − S_3(U, b)", 6),
    "U·W·W": ("Σ J_αγδ/(12M) Σ_β U_αβ W_βγ W_βδ", "S_3(U, W)", 3),
}


def _s3_exact(P: _Problem) -> dict[str, float]:
    """Each named S_3 term by inclusion–exclusion over parameter blocks."""
    S3 = {k: float(P.S(k)[3]) for k in ("c", "UW", "Ub", "UWb", "Ubc", "UWc")}
    return {"c·c·c": S3["c"], "(U·b)·c": S3["Ubc"] - S3["Ub"] - S3["c"], "(U·W)·c": S3["UWc"] - S3["UW"] - S3["c"],
            "U·W·b": S3["UWb"] - S3["UW"] - S3["Ub"], "U·W·W": S3["UW"], "U·b·b": S3["Ub"]}


def _claims_s3(P: _Problem, st) -> list[ClaimCheck]:
    """Every S_3 coefficient (000/001 §2.4, 002 eq. (10)), the absent U·b·b term and the cubic's missing lower bound."""
    T, tol = P.T, P.tol
    ex = _s3_exact(P)
    note = {k: T.by_name(k).note_value for k in _S3_TERMS}
    src = "000 §2.4; 001 §2.4"
    out = [_coefficient_check("001.s3-ccc-term", src + "; 002 eq. 10", "§2.4", f"c·c·c term of S_3: {_S3_TERMS['c·c·c'][0]}",
                              note["c·c·c"], ex["c·c·c"], tol, f"exact = {_S3_TERMS['c·c·c'][1]} (action_series)")]
    six = ("(U·b)·c", "(U·W)·c", "U·W·b")
    out.append(ClaimCheck(
        "001.s3-coefficients", src, "§2.4", "the (U·b)·c, (U·W)·c and U·W·b terms of S_3: "
        + "; ".join(f"{k}: {_S3_TERMS[k][0]}" for k in six), {k: note[k] for k in six}, {k: ex[k] for k in six},
        all(judge_close(note[k], ex[k], tol) for k in six),
        "; ".join(f"{k}: exact = {_S3_TERMS[k][1]}, derived {T.by_name(k).coefficient}, exact/note = "
                  f"{_ratio(ex[k], note[k]):.6g}" for k in six)
        + " (the note divides the third derivative by 3! but drops the 6 orderings of three distinct parameters)",
        numbers={k: _ratio(ex[k], note[k]) for k in six},
        rule=f"holds iff every term agrees: |note − exact| ≤ {tol:g}·max(1, |note|, |exact|)"))
    k = "U·W·W"
    out.append(_coefficient_check("001.s3-uww-coefficient", src, "§2.4", f"U·W·W term of S_3: {_S3_TERMS[k][0]}",
                                  note[k], ex[k], tol, f"exact = {_S3_TERMS[k][1]} (action_series); derived "
                                  f"{T.by_name(k).coefficient}; exact/note = {_ratio(ex[k], note[k]):.6g} (the note "
                                  f"drops the 3 orderings of (U, W, W))"))
    out.append(_absent_check("001.s3-ubb-absent", src, "§2.4", "∂³S/∂U_αβ∂b_β∂b_β(0) = 0: no U·b·b term (balanced data)",
                             ex["U·b·b"], P, "exact = S_3(U, b)"))
    tt, cub = st.t[-1], st.cubic[-1]
    out.append(ClaimCheck(
        "001.s3-no-lower-bound", src, "§2.4", "up to the third order the action still has no lower bound",
        "unbounded below", f"S_0 + S_2 t² + S_3 t³ = {cub:.4g} at t = {tt:.3g} along the S_2-descent direction "
        f"(S_3 = {st.s_along[3]:.3g}); exact S there = {st.exact[-1]:.4g}", cub < 0 and st.s_along[2] < 0,
        "true of the truncated series (a cubic is unbounded below), while the exact action is ≥ 0 everywhere",
        numbers={"cubic": cub, "t": tt, "exact_S": st.exact[-1]}, statistic="the truncation S_0 + S_2 t² + S_3 t³",
        rule="holds iff S_2 < 0 along the descent direction and the cubic truncation is negative at its largest t"))
    return out


def _claims_subterms(paper_shapes: tuple[int, int, int]) -> list[ClaimCheck]:
    """The sub-term counts of 001 §2.4 for the paper's shapes (M, H, E)."""
    Mp, Hp, Ep = paper_shapes
    counts = [Mp**3, Mp * Mp * Hp, Mp * Mp * Hp * Ep, Mp * Hp * Ep, Mp * Hp * Ep * Ep]
    note_counts = [1e3, 2.1e5, 2.1e8, 2.1e7, 2.2e10]
    worst = max(abs(a - b) / b for a, b in zip(counts, note_counts))
    return [ClaimCheck(
        "001.s3-subterm-counts", "001 §2.4", "§2.4",
        "for U 10×2048, W 2048×1024 the five S_3 terms sum over 10³, 2.1×10⁵, 2.1×10⁸, 2.1×10⁷, 2.2×10¹⁰ sub-terms",
        note_counts, counts, worst < 0.06, "M³, M²H, M²HE, MHE, MHE² (the counts terms() reports)",
        numbers={"counts": counts, "max_relative_difference": worst}, statistic="exact sub-term counts",
        rule="holds iff every printed count is within 6 % of the exact one (the note rounds to two digits)")]


def _claims_all_orders(P: _Problem, n_max: int) -> list[ClaimCheck]:
    """The all-orders coefficient of the U·Wⁿ part of S_{n+1} (000/001 §2.5), measured by autodiff in ε."""
    z, labels, th, silu, M = P.z, P.labels, P.th, P.silu, P.M
    eps = torch.zeros((), dtype=z.dtype, requires_grad=True)
    d = {"U": eps * th["U"], "c": torch.zeros_like(th["c"]), "W": th["W"], "b": torch.zeros_like(th["b"])}
    ser = action_series(d, z, labels, n_max + 1, activation=silu)
    meas, note_k, derived = [], [], []
    for n in range(1, n_max + 1):
        (gr,) = torch.autograd.grad(ser[n + 1], eps, retain_graph=True)
        con = float(j_contract(z, labels, th["U"], th["W"], n, class_weighted=True))
        meas.append(float(gr) / con if con != 0 else float("nan"))
        note_k.append(kappa_note(silu, n, M))
        derived.append(kappa(silu, n, M))
    ratios = [round(a / b, 6) if b else None for a, b in zip(meas, note_k)]
    return [ClaimCheck(
        "001.all-orders-coefficient", "000 §2.5; 001 §2.5", "§2.5", "the U·Wⁿ part of S_{n+1} is σ⁽ⁿ⁾(0)/((n+1)!·M) Σ J U Wⁿ",
        note_k, meas, all(judge_close(a, b, 1e-6) for a, b in zip(meas, note_k) if b != 0),
        f"measured κ_n = [d/dε S_(n+1)(εU, W, 0, 0)]_(ε=0) / Σ J U Wⁿ for n = 1..{n_max}; derived "
        f"σ⁽ⁿ⁾(0)/(n!·M) = {[round(x, 10) for x in derived]}; measured/note = {ratios} (= n + 1)",
        numbers={"note": note_k, "exact": meas, "ratio": ratios},
        statistic="κ_n measured by autodiff in ε through action_series", rule="holds iff every κ_n agrees to 1e-6 relative")]


def _claims_activations(P: _Problem) -> list[ClaimCheck]:
    """silu's derivatives at 0 and 002's relu claim σ'(0) = 1 (002 §1.1, eq. (9))."""
    z, labels, th, silu, M, tol = P.z, P.labels, P.th, P.silu, P.M, P.tol
    note_cc = P.T.by_name("c·c").note_value
    tau = silu.taylor(2)
    got = [tau[0], tau[1], 2 * tau[2]]
    out = [ClaimCheck("001.silu-derivatives", "000 §2.3–2.4; 001 §2.3–2.4", "§2.3", "silu: σ(0) = 0, σ'(0) = 1/2, σ''(0) = 1/2",
                      [0.0, 0.5, 0.5], got, all(judge_close(a, b, 1e-15) for a, b in zip(got, [0.0, 0.5, 0.5])),
                      "activations.get('silu').taylor(2)", numbers={"exact": got})]
    relu = _act.get("relu")
    r2 = float(action_series(th, z, labels, 2, activation=relu)[2])
    note_relu = 0.5 * float(j_contract(z, labels, th["U"], th["W"], 1, class_weighted=True)) / M + note_cc
    r2uw = float(action_series(_restrict(th, "UW"), z, labels, 2, activation=relu)[2])
    out.append(ClaimCheck(
        "002.relu-derivative", "002 §1.1, eq. 9", "§1.1/§2.3",
        "relu has σ'(0) = 1 (σ⁽ⁿ⁾(0) = 0 otherwise), so S_2 = ½ Σ (δ/M − 1/M²) c c + ½ Σ J_αγ U W with J = (E_p − E_α)z/M",
        note_relu, r2, judge_close(note_relu, r2, tol),
        f"relu is not differentiable at 0 (right derivative 1, left 0): along the ray f(tθ) = t c + t² U relu(W z + b) "
        f"exactly, so the exact one-sided S_2 = ½ c·c-form + Σ_αβ U_αβ D_α[relu(W z + b)_β], not a J-contraction; "
        f"exact S_2 restricted to (U, W) = {r2uw:.6g} vs the note's ½ Σ J U W/M = {note_relu - note_cc:.6g}",
        numbers={"note_S2": note_relu, "exact_S2": r2, "ratio": _ratio(r2, note_relu), "note_UW": note_relu - note_cc,
                 "exact_UW": r2uw},
        statistic="S_2 of relu: the note's formula against the exact one-sided (t → 0⁺) coefficient of action_series"))
    return out


def check_note_claims(z: torch.Tensor, labels: torch.Tensor, theta, *, tol: float = TOL,
                      paper_shapes: tuple[int, int, int] = (10, 2048, 1024), n_max: int = 5) -> list[ClaimCheck]:
    """Evaluate the notes' coefficient claims (000, 001, 002) on (z, labels) at the direction θ (silu, the notes' σ).

    Each named term's *exact* value is taken from
    :func:`actionlab.expansion.action_series` by inclusion–exclusion over
    parameter blocks (e.g. the U·W·b term of S_3 is S_3(U, W, b) − S_3(U, W) −
    S_3(U, b)), independently of :func:`actionlab.expansion.terms`; the note's
    value is its own formula on the same θ. Use balanced data: the notes
    assume p(α) = 1/M throughout (on unbalanced data the claims that need it
    are left undecided, ``holds is None``).
    """
    P = _problem(z, labels, theta, tol)
    st = s2_stability(P.z, P.labels, P.silu, P.H, num_t=25)
    return [*_claims_s0_s1(P), *_claims_s2(P), *_claims_definiteness(P), *_claims_s2_bound(P, st),
            *_claims_s3(P, st), *_claims_subterms(paper_shapes), *_claims_all_orders(P, n_max), *_claims_activations(P)]


# ---------------------------------------------------------------------------------------
# the derivative entries of §2.3–2.4, by float64 autodiff at θ = 0
# ---------------------------------------------------------------------------------------


def _flat_action(z: torch.Tensor, labels: torch.Tensor, M: int, H: int, E: int):
    """S(v) for the flat θ = (U, c, W, b) of the silu classifier, written out directly (the autodiff reference)."""
    sizes = (M * H, M, H * E, H)

    def S(v: torch.Tensor) -> torch.Tensor:
        U, c, W, b = torch.split(v, sizes)
        f = torch.nn.functional.silu(z @ W.view(H, E).T + b) @ U.view(M, H).T + c
        return (torch.logsumexp(f, 1) - f.gather(1, labels.view(-1, 1)).squeeze(1)).mean()

    return S


def _entry_blocks(d2: torch.Tensor, d3: torch.Tensor, M: int, H: int, E: int) -> dict[str, torch.Tensor]:
    """The entries the notes print, cut out of ∇²S(0) and ∇³S(0) (flat order U, c, W, b; β shared as printed)."""
    iU = lambda a, be: a * H + be  # noqa: E731
    ic = lambda a: M * H + a  # noqa: E731
    iW = lambda be, g: M * H + M + be * E + g  # noqa: E731
    ib = lambda be: M * H + M + H * E + be  # noqa: E731
    R = range
    t = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    return {
        "cc": t([[float(d2[ic(a), ic(b)]) for b in R(M)] for a in R(M)]),
        "UW": t([[[float(d2[iU(a, be), iW(be, g)]) for g in R(E)] for be in R(H)] for a in R(M)]),
        "Ub": t([[float(d2[iU(a, be), ib(be)]) for be in R(H)] for a in R(M)]),
        "ccc": t([[[float(d3[ic(a), ic(b), ic(g)]) for g in R(M)] for b in R(M)] for a in R(M)]),
        "UWc": t([[[[float(d3[iU(a, be), iW(be, g), ic(dl)]) for dl in R(M)] for g in R(E)] for be in R(H)] for a in R(M)]),
        "Ubc": t([[[float(d3[iU(a, be), ib(be), ic(g)]) for g in R(M)] for be in R(H)] for a in R(M)]),
        "UWW": t([[[[float(d3[iU(a, be), iW(be, g), iW(be, dl)]) for dl in R(E)] for g in R(E)] for be in R(H)]
                  for a in R(M)]),
        "UWb": t([[[float(d3[iU(a, be), iW(be, g), ib(be)]) for g in R(E)] for be in R(H)] for a in R(M)]),
        "Ubb": t([[float(d3[iU(a, be), ib(be), ib(be)]) for be in R(H)] for a in R(M)]),
    }


def _note_entries(z: torch.Tensor, labels: torch.Tensor, M: int, H: int, E: int) -> dict[str, torch.Tensor]:
    """The entries as printed in 000/001 §2.3–2.4 (silu: σ'(0) = σ''(0) = ½; balanced data), broadcast to the blocks."""
    I = torch.eye(M, dtype=torch.float64)
    Z = z.mean(0)
    cond = torch.stack([z[labels == a].mean(0) for a in range(M)])  # E_{p(z|α)}[z]
    J1 = Z - cond  # J_αγ
    zz = torch.einsum("ng,nd->ngd", z, z)
    J2 = zz.mean(0) - torch.stack([zz[labels == a].mean(0) for a in range(M)])  # J_αγδ
    ones_h = torch.ones(H, dtype=torch.float64)
    d3 = torch.einsum("ab,bg->abg", I, I)
    dab = I[:, :, None].expand(M, M, M)  # δ_αβ, δ_αγ, δ_βγ as (α, β, γ) arrays
    dag = I[:, None, :].expand(M, M, M)
    dbg = I[None, :, :].expand(M, M, M)
    return {
        "cc": I / M - 1.0 / M**2,
        "UW": torch.einsum("ag,b->abg", J1 / (2 * M), ones_h),
        "Ub": torch.zeros(M, H, dtype=torch.float64),
        "ccc": d3 / M - (dab + dag + dbg) / M**2 + 2.0 / M**3,
        "UWc": torch.einsum("ad,g,b->abgd", I / (2 * M) - 1.0 / (2 * M**2), Z, ones_h),
        "Ubc": torch.einsum("ag,b->abg", I / (2 * M) - 1.0 / (2 * M**2), ones_h),
        "UWW": torch.einsum("agd,b->abgd", J2 / (2 * M), ones_h),
        "UWb/6M": torch.einsum("ag,b->abg", J1 / (6 * M), ones_h),
        "UWb/2M": torch.einsum("ag,b->abg", J1 / (2 * M), ones_h),
        "Ubb": torch.zeros(M, H, dtype=torch.float64),
    }


#: (id, where, the entry as printed, the exact block it is compared with)
_ENTRIES: tuple[tuple[str, str, str, str], ...] = (
    ("001.d2-cc-entry", "§2.3", "∂²S/∂c_α∂c_β(0) = δ_αβ/M − 1/M²", "cc"),
    ("001.d2-uw-entry", "§2.3", "∂²S/∂U_αβ∂W_βγ(0) = J_αγ/(2M)", "UW"),
    ("001.d2-ub-entry", "§2.3", "∂²S/∂U_αβ∂b_β(0) = 0", "Ub"),
    ("001.d3-ccc-entry", "§2.4", "∂³S/∂c_α∂c_β∂c_γ(0) = δ_αβγ/M − (δ_αβ + δ_αγ + δ_βγ)/M² + 2/M³", "ccc"),
    ("001.d3-uwc-entry", "§2.4", "∂³S/∂U_αβ∂W_βγ∂c_δ(0) = (δ_αδ/(2M) − 1/(2M²)) Z_γ", "UWc"),
    ("001.d3-ubc-entry", "§2.4", "∂³S/∂U_αβ∂b_β∂c_γ(0) = δ_αγ/(2M) − 1/(2M²)", "Ubc"),
    ("001.d3-uww-entry", "§2.4", "∂³S/∂U_αβ∂W_βγ∂W_βδ(0) = J_αγδ/(2M)", "UWW"),
    ("001.d3-uwb-entry-6m", "§2.4", "∂³S/∂U_αβ∂W_βγ∂b_β(0) = 1/(6M) (E_p[z_γ] − E_{p(z|α)}[z_γ]) (left side of the line)",
     "UWb/6M"),
    ("001.d3-uwb-entry-2m", "§2.4", "∂³S/∂U_αβ∂W_βγ∂b_β(0) = 1/(2M) J_αγ (right side of the same line)", "UWb/2M"),
    ("001.d3-ubb-entry", "§2.4", "∂³S/∂U_αβ∂b_β∂b_β(0) = 0", "Ubb"),
)


def derivative_entry_claims(z: torch.Tensor, labels: torch.Tensor, hidden: int, *, tol: float = TOL) -> list[ClaimCheck]:
    """Every ∂²S and ∂³S entry at θ = 0 printed in 000/001 §2.3–2.4 against float64 autodiff of S.

    S(θ) is written out directly (silu, ``torch.func.hessian`` and ``jacfwd``
    of it at θ = 0), independent of :mod:`actionlab.expansion`; the note's
    entries use its own J_αγ, J_αγδ and Z_γ computed from the data. Each row
    compares a whole block (all α, β, γ, δ with the β the note shares): holds iff
    max |exact − note| ≤ tol·max(1, max |exact|, max |note|); ``numbers`` has the
    largest deviation and the least-squares ratio ⟨exact, note⟩/⟨note, note⟩.
    Use balanced data (the notes' p(α) = 1/M).
    """
    z = z.to(torch.float64)
    M = int(labels.max()) + 1
    E = z.shape[1]
    S = _flat_action(z, labels, M, hidden, E)
    v0 = torch.zeros(M * hidden + M + hidden * E + hidden, dtype=torch.float64)
    d2 = torch.func.hessian(S)(v0)
    d3 = torch.func.jacfwd(torch.func.hessian(S))(v0)
    exact = _entry_blocks(d2, d3, M, hidden, E)
    note = _note_entries(z, labels, M, hidden, E)
    out = []
    for cid, where, text, key in _ENTRIES:
        ex, nv = exact[key.split("/")[0]], note[key]
        dev = float((ex - nv).abs().max())
        scale = max(float(ex.abs().max()), float(nv.abs().max()))
        nn_ = float((nv * nv).sum())
        ratio = float((ex * nv).sum()) / nn_ if nn_ > 0 else None
        num = {"max_abs_deviation": dev, "max_abs_exact": float(ex.abs().max()), "ratio": ratio, "entries": ex.numel()}
        out.append(ClaimCheck(
            cid, f"000 {where}; 001 {where}", where, text, f"{text.split(' = ', 1)[1]}", num,
            dev <= tol * max(1.0, scale),
            f"{ex.numel()} entries on a balanced random problem (M = {M}, H = {hidden}, E = {E}, N = {len(labels)}); "
            f"exact = torch.func autodiff of S at θ = 0; max |exact − note| = {dev:.3g}, exact/note = "
            + (f"{ratio:.6g}" if ratio is not None else "— (the note's entry is 0)"),
            numbers=num, statistic="the entry block by float64 autodiff (torch.func.hessian / jacfwd) at θ = 0",
            rule=f"holds iff max |exact − note| ≤ {tol:g}·max(1, max|exact|, max|note|) over the block"))
    return out


# ---------------------------------------------------------------------------------------
# "S(θ*) = 0 where q_m = 1" (000/001 §1.2): S along tθ on a separable problem
# ---------------------------------------------------------------------------------------


def _stable_action(f: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """S = mean_i softplus(LSE_{α≠m_i}(f_α − f_{m_i})), accurate where S ≪ ulp(max f) (no cancellation)."""
    d = f - f.gather(1, labels.view(-1, 1))
    d = d.scatter(1, labels.view(-1, 1), float("-inf"))
    return torch.logaddexp(torch.zeros(()), torch.logsumexp(d, 1)).mean()


def minimum_claim(z: torch.Tensor, *, num_classes: int, hidden: int, gen: torch.Generator, points: int = 16,
                  max_exponent: float = 200.0) -> ClaimCheck:
    """"The action has the minimum S(θ*) = 0, where q_m(z, θ*) = 1" (000/001 §1.2), probed along S(tθ).

    The problem is separable by construction: a teacher θ = (U, 0, W, b) of the
    silu classifier labels each z by argmax_α [U relu(W z + b)]_α, the limit of
    f(tθ)/t² as t → ∞, so S(tθ) → 0 (samples whose teacher margin is below 5 % of
    the median, e.g. ties where every hidden unit is off, are dropped). t runs log-spaced up to the t where t²
    times the smallest teacher margin is ``max_exponent`` (S there ≈ e^−200,
    still a float64 number). S is computed without cancellation
    (:func:`_stable_action`). Every q_m < 1 at finite logits, so S > 0 at every
    finite θ: 0 is the infimum, approached as ‖θ‖ → ∞, never attained.
    """
    z = z.to(torch.float64)
    M, E = num_classes, z.shape[1]
    U = torch.randn(M, hidden, dtype=torch.float64, generator=gen)
    W = torch.randn(hidden, E, dtype=torch.float64, generator=gen)
    b = torch.randn(hidden, dtype=torch.float64, generator=gen)
    g = torch.relu(z @ W.T + b) @ U.T
    top2 = g.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    keep = margin > 0.05 * margin.median()  # drop ties (e.g. every hidden unit off) and near-ties
    z, g, margin = z[keep], g[keep], margin[keep]
    if len(z) == 0:
        raise ValueCheckError("minimum_claim: the teacher separates no sample; use more hidden units or samples")
    labels = g.argmax(1)
    m_min = float(margin.min())
    t_hi = math.sqrt(max_exponent / m_min)
    ts = torch.logspace(-1.0, math.log10(t_hi), points, dtype=torch.float64)
    S = []
    for t in ts:
        f = (t * U) @ torch.nn.functional.silu(t * (z @ W.T + b)).T
        S.append(float(_stable_action(f.T, labels)))
    q_max = float(torch.softmax(g * ts[-1] ** 2, 1).max())
    attained = judge_minimum_attained(S)
    num = {"t": [float(x) for x in ts[[0, points // 2, -1]]], "S": [S[0], S[points // 2], S[-1]], "min_S": min(S),
           "all_positive": min(S) > 0, "N": len(labels), "smallest_teacher_margin": m_min}
    return ClaimCheck(
        "001.s-min-zero", "000 §1.2; 001 §1.2", "§1.2", "the action has the minimum S(θ*) = 0, where q_m(z, θ*) = 1 for each z",
        "minimum 0 attained at θ*", num, attained,
        f"separable problem (N = {len(labels)}, M = {M}, H = {hidden}, E = {E}; labels of a teacher θ); S(tθ) at "
        f"{points} t from 0.1 to {t_hi:.3g}: " + ", ".join(f"{x:.3g}" for x in S) + f"; every S > 0 and S → 0 only as "
        f"t → ∞ (largest q at the largest t: 1 − {1 - q_max:.2e} in float64): 0 is the infimum, never a minimum",
        numbers=num, statistic="S(tθ) on a separable problem, computed without cancellation",
        rule=f"attained (holds) if some probed S ≤ 0; not attained (does not hold) if every S > 0 and the last is "
             f"≤ {APPROACH_FRACTION:g} of the largest; otherwise undecided")


# ---------------------------------------------------------------------------------------
# "the scales of U, c, W and b are in the same order at θ*" (001 §2.4)
# ---------------------------------------------------------------------------------------


def element_scales(model) -> dict[str, float]:
    """The RMS √(mean x²) of the elements of each block U, c, W, b of a TwoLayer (or a dict of them)."""
    get = model.get if isinstance(model, dict) else lambda k: getattr(model, k)
    return {k: float(get(k).detach().to(torch.float64).pow(2).mean().sqrt()) for k in ("U", "c", "W", "b")}


def theta_star_scale_claim(seeds: tuple[int, ...], size: str, options: RunOptions) -> tuple[ClaimCheck, dict]:
    """The element scales of trained θ* over ``seeds`` (``theta-star``'s θ*, shared cache) and the judged claim.

    Statistic: per seed, r = log10(max RMS / min RMS) over the blocks U, c, W,
    b; the mean of r over seeds with a t interval at ``LEVEL``; judged by
    :func:`judge_same_scale` against log10(``SCALE_RATIO_THRESHOLD``).
    Returns the check and a description of the θ* (sizes, seeds).
    """
    from actionlab import stats
    from actionlab.experiments._trained import DataSpec, ThetaStarSettings, theta_star_for

    settings = dataclasses.replace(ThetaStarSettings(), **STAR_SIZES[size])
    per_seed = {}
    for s in seeds:
        ts = theta_star_for(settings, DataSpec.from_config(settings, s), dataclasses.replace(options, seed=s))
        per_seed[str(s)] = element_scales(ts.model)
    logr = [math.log10(max(v.values()) / min(v.values())) for v in per_seed.values()]
    if len(logr) >= 2:
        iv = stats.mean_interval(logr, LEVEL, method="t")
        est, lo, hi = iv.estimate, iv.low, iv.high
    else:
        est = lo = hi = logr[0]
    verdict, strength = judge_same_scale(est, lo, hi, SCALE_RATIO_THRESHOLD, len(logr))
    mean_rms = {k: sum(v[k] for v in per_seed.values()) / len(per_seed) for k in ("U", "c", "W", "b")}
    num = {"mean_rms": mean_rms, "ratio_max_min": 10**est, "ratio_interval": [10**lo, 10**hi], "level": LEVEL,
           "seeds": len(logr), "threshold": SCALE_RATIO_THRESHOLD}
    info = {"size": size, "E": settings.dim, "H": settings.hidden, "train_per_class": settings.train_per_class,
            "epochs": settings.epochs, "seeds": list(seeds), "rms_per_seed": per_seed}
    check = ClaimCheck(
        "001.same-scale", "001 §2.4", "§2.4", "the scales of U, c, W and b are in the same order when θ ≈ θ*",
        "same order", num, verdict == "holds",
        f"θ* = theta-star's trained classifier ({size}: learned embedding E = {settings.dim}, H = {settings.hidden}, "
        f"Fashion-MNIST), {len(logr)} seeds; element RMS per seed: "
        + "; ".join(f"seed {s}: " + ", ".join(f"{k} {x:.3g}" for k, x in v.items()) for s, v in per_seed.items())
        + f"; max/min = {10**est:.3g} ({LEVEL:.0%} interval {10**lo:.3g} … {10**hi:.3g})",
        numbers=num, strength=strength,
        statistic="log10(max/min of the element RMS of U, c, W, b) per seed; mean over seeds with a t interval",
        rule=f"holds iff max/min < {SCALE_RATIO_THRESHOLD:g} (the same order of magnitude); firm iff the {LEVEL:.0%} "
             f"interval lies on one side of it and there are ≥ 3 seeds")
    return check, info


# ---------------------------------------------------------------------------------------
# the experiment: the problems, the rows, the run folder
# ---------------------------------------------------------------------------------------


def _random_theta(M: int, H: int, E: int, scale: float, gen: torch.Generator) -> dict:
    return {
        "U": torch.randn(M, H, dtype=torch.float64, generator=gen) * scale,
        "c": torch.randn(M, dtype=torch.float64, generator=gen) * scale,
        "W": torch.randn(H, E, dtype=torch.float64, generator=gen) * scale,
        "b": torch.randn(H, dtype=torch.float64, generator=gen) * scale,
    }


def _balanced_gaussian(M: int, E: int, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(M * n, E, dtype=torch.float64, generator=gen), torch.arange(M * n) % M


def _fashion_problem(config: NotesCheckConfig, seed: int, gen: torch.Generator) -> tuple[tuple, dict]:
    """The balanced Fashion-MNIST problem and its description, with the raw-pixel J range (all 10,000 test images)
    as a measurement for ``j-stats``' claim 001.j-range (not judged here)."""
    from actionlab import data

    ds = data.load("fashion-mnist", "test", balance=True, per_class=config.per_class, seed=seed, dtype=torch.float64)
    M = ds.num_classes
    problem = (ds.z, ds.labels, _random_theta(M, config.hidden, ds.z.shape[1], config.fashion_scale, gen))
    full = data.load("fashion-mnist", "test", dtype=torch.float64)
    J = j_tensor(full.z, full.labels, 1)
    info = {"M": M, "H": config.hidden, "E": int(ds.z.shape[1]), "N": len(ds),
            "theta": f"N(0, {config.fashion_scale}²)", "preprocessing": ds.info,
            "J_range_raw_pixels": [float(J.min()), float(J.max())],
            "J_range_note": "all 10,000 test images, raw pixels in [0, 1]; the claim '001.j-range' is judged by "
                            "`actionlab j-stats` (the notes used a learned embedding)"}
    return problem, info


def _row(checks: dict[str, ClaimCheck]) -> dict:
    """One claim evaluated on one or more problems, as a row (the verdict over all of them)."""
    c = next(iter(checks.values()))
    details = {r.details for r in checks.values()}
    strengths = {r.strength for r in checks.values()} - {None}
    return {
        "id": c.id, "source": c.source, "where": c.where, "claim": c.claim,
        "note_value": {k: r.note_value for k, r in checks.items()}, "exact": {k: r.exact for k, r in checks.items()},
        "measured": {k: r.numbers for k, r in checks.items()}, "verdict": _verdict(list(checks.values())),
        "strength": ("indicative" if "indicative" in strengths else "firm") if strengths else None,
        "details": c.details if len(details) == 1 else " | ".join(f"{k}: {r.details}" for k, r in checks.items()),
        "statistic": c.statistic, "rule": c.rule, "problems": list(checks),
    }


def run_notes_check(config: NotesCheckConfig | None = None, *, seed: int = 0, progress: bool | None = None,
                    options: RunOptions | None = None) -> tuple[list[dict], dict]:
    """The claim rows — dicts with id, source, where, claim, note value, exact and measured values per problem,
    verdict, strength (None: firm when decided), details, statistic, decision rule — and a description of each
    problem. A claim holds when it holds on every problem it was evaluated on. ``options`` (device) is used
    for training the θ* of the scale claim."""
    from tqdm.auto import tqdm

    config = config if config is not None else NotesCheckConfig()
    options = options if options is not None else RunOptions(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    M, H, E, n = config.random_shape
    z, labels = _balanced_gaussian(M, E, n, gen)
    problems = {"random": (z, labels, _random_theta(M, H, E, config.scale, gen))}
    info = {"random": {"M": M, "H": H, "E": E, "N": M * n, "z": "N(0, 1)", "theta": f"N(0, {config.scale}²)",
                       "balanced": True}}
    if config.fashion:
        problems["fashion-mnist"], info["fashion-mnist"] = _fashion_problem(config, seed, gen)
    results = {}
    for name, (zz, ll, th) in tqdm(problems.items(), desc="notes-check", leave=False,
                                   disable=None if progress is None else not progress):
        results[name] = {c.id: c for c in check_note_claims(zz, ll, th)}
    rows = [_row({k: results[k][cid] for k in results}) for cid in results["random"]]
    Me, He, Ee, ne = config.entries_shape
    ze, le = _balanced_gaussian(Me, Ee, ne, gen)
    info["entries"] = {"M": Me, "H": He, "E": Ee, "N": Me * ne, "z": "N(0, 1)", "theta": "0 (derivatives at θ = 0)",
                       "balanced": True}
    rows += [_row({"entries": c}) for c in derivative_entry_claims(ze, le, He)]
    smin = minimum_claim(z, num_classes=M, hidden=H, gen=gen)
    info["separable"] = {"M": M, "H": H, "E": E, "N": smin.numbers["N"], "z": "the random problem's z (ties dropped)",
                         "labels": "argmax of a teacher's U relu(W z + b)"}
    rows.append(_row({"separable": smin}))
    if config.fashion and config.star_seeds:
        check, info["theta-star"] = theta_star_scale_claim(tuple(config.star_seeds), config.star_size, options)
        rows.append(_row({"theta-star": check}))
    return rows, info


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _cell(v) -> str:
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _per_problem_cell(values: dict) -> str:
    """One value when every problem gives the same, else 'problem: value' for each."""
    if len({_fmt(v) for v in values.values()}) == 1:
        return _cell(next(iter(values.values())))
    return "; ".join(f"{k}: {_cell(v)}" for k, v in values.items())


def to_markdown(rows: list[dict], data_info: dict) -> str:
    """The table of claims (note's value, measured value per problem, verdict and strength) and the details."""
    lines = ["# The notes' closed-form claims, checked exactly", ""]
    lines.append("Problems: " + "; ".join(f"**{k}**: " + ", ".join(f"{a}={_cell(b)}" for a, b in v.items()
                                                                 if a not in ("preprocessing", "rms_per_seed"))
                                          for k, v in data_info.items()))
    lines += ["", "Exact values come from `actionlab.expansion.action_series` (Taylor mode, float64), each named term "
              "by inclusion–exclusion over parameter blocks, and from float64 autodiff of S; θ is the silu classifier "
              "of notes 000/001.", ""]
    lines += ["| id | source | claim | note's value | measured | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        strength = r.get("strength") or ("indicative" if r["verdict"] == "inconclusive" else "firm")
        lines.append(f"| {r['id']} | {r['source']} | {_cell(r['claim'])} | {_per_problem_cell(r['note_value'])} | "
                     f"{_per_problem_cell(r['exact'])} | **{r['verdict']}** ({strength}) |")
    lines += ["", "## Details", ""]
    for r in rows:
        lines.append(f"- **{r['id']}** ({r['verdict']}): {r['details']} Decision rule: {r['rule']}.")
    fm = data_info.get("fashion-mnist", {})
    if "J_range_raw_pixels" in fm:
        lines += ["", f"J_αγ on Fashion-MNIST (raw pixels, all test images) ranges over {_fmt(fm['J_range_raw_pixels'])} "
                  f"against the note's [−0.1, 0.075]; the claim `001.j-range` is judged by `actionlab j-stats`."]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines += ["", "Verdicts: " + ", ".join(f"{k}: {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


def _claim(row: dict, info: dict, options: RunOptions) -> Claim:
    """A row as a run-folder claim; an exact check that is decided is firm (the run folder downgrades quick presets)."""
    sizes = {k: {a: info[k][a] for a in ("M", "H", "E", "N") if a in info[k]} for k in row["problems"]}
    evidence = {"preset": options.preset, "seed": options.seed, "problems": sizes, "relative_tolerance": TOL,
                "statistic": row["statistic"], "decision_rule": row["rule"]}
    if "theta-star" in row["problems"]:
        st = info["theta-star"]
        m = row["measured"]["theta-star"]
        evidence.update(seeds={"number": len(st["seeds"]), "list": st["seeds"]}, theta_star={a: st[a] for a in
                        ("size", "E", "H", "train_per_class", "epochs")},
                        interval={"low": m["ratio_interval"][0], "high": m["ratio_interval"][1], "level": m["level"]},
                        threshold=m["threshold"])
    strength = row.get("strength") or ("indicative" if row["verdict"] == "inconclusive" else "firm")
    nv = row["note_value"]
    same = len({_fmt(v) for v in nv.values()}) == 1  # a statement or formula the same on every problem: once
    return Claim(source=row["source"].split()[0], claim=f"{row['claim']} ({row['source']})",
                 document_value=next(iter(nv.values())) if same else nv, measured=row["measured"], verdict=row["verdict"],
                 details=row["details"], id=row["id"], evidence=evidence, strength=strength)


@register_experiment("notes-check", config=NotesCheckConfig,
                     help="check every closed-form claim of the theory notes 000-002 against the exact expansion",
                     sources=("000", "001", "002"), order=20)
def run(config: NotesCheckConfig, options: RunOptions) -> NotesCheckResult:
    """Evaluate every claim (see :func:`check_note_claims` and the module docstring), write ``notes_check.md``
    and the run folder."""
    folder = RunFolder(options, "notes-check", config, seed=options.seed)
    rows, info = run_notes_check(config, seed=options.seed, options=options)
    folder.data = info
    for row in rows:
        folder.add_claim(_claim(row, info, options))
    md = to_markdown(rows, info)
    folder.write_text("notes_check.md", md)
    result = NotesCheckResult(rows=rows, problems=info)
    folder.finish(result, md)
    return result
