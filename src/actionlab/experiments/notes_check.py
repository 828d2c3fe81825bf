"""``actionlab notes-check``: every closed-form claim of notes 000–002, checked exactly.

One row per claim (S_0 = ln M; S_1 = 0 for balanced data; the S_2 formula and
its terms; the definiteness of δ/M − 1/M² and the stability conclusion drawn
from it; every S_3 coefficient; the sub-term counts; the all-orders
coefficient; σ'(0) = 1 for relu), each with the note's value, the exact value
on a concrete random problem and on Fashion-MNIST, and a verdict. Writes
``notes_check.md``, ``summary.md`` and ``results.json`` into the run folder.

The exact values come from :func:`actionlab.expansion.action_series` (Taylor
mode), each named term by inclusion–exclusion over parameter blocks, in
float64 on the CPU whatever ``--dtype`` / ``--device`` say (the problems are
small and the checks are to 1e-9 relative). The claims themselves — the
note's statements and formulas — live here, not in the math module.

Examples::

    actionlab notes-check                       # random problem + Fashion-MNIST (balanced 100 per class, raw 784 pixels)
    actionlab notes-check --no-fashion --out runs/notes
    actionlab notes-check --per-class 300 --hidden 64
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from actionlab import activations as _act
from actionlab._display import short_repr
from actionlab.config import RunOptions
from actionlab.expansion import (
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

__all__ = ["NotesCheckConfig", "NotesCheckResult", "ClaimCheck", "check_note_claims", "run_notes_check",
           "to_markdown", "run"]

#: relative tolerance of "the note's value equals the exact value"
TOL = 1e-9


@dataclass
class NotesCheckConfig:
    """Check every closed-form claim of the theory notes 000–002 against the exact expansion (float64)."""

    random_shape: tuple[int, ...] = param((10, 8, 6, 30), "the random problem: classes M, hidden units H, input "
                                          "dimension E, samples per class", min=1, length=4)
    scale: float = param(0.5, "θ ~ N(0, scale²) on the random problem", min=0, exclusive_min=True)
    fashion: bool = param(True, "also check on a balanced subset of Fashion-MNIST test (raw 784 pixels)")
    per_class: int = param(100, "Fashion-MNIST subset: samples per class", min=1)
    hidden: int = param(32, "H of the random θ on Fashion-MNIST", min=1)
    fashion_scale: float = param(0.05, "θ ~ N(0, scale²) on Fashion-MNIST", min=0, exclusive_min=True)

    PRESETS: ClassVar[dict[str, dict]] = {"quick": {}, "default": {}, "full": {"per_class": 300}}


@short_repr
@dataclass
class NotesCheckResult:
    """The claim rows (id, source, where, claim, note_value, exact per problem, verdict, details) and the problems."""

    rows: list[dict]
    problems: dict


@dataclass
class ClaimCheck:
    """One closed-form claim of notes 000–002 evaluated on one problem.

    note_value: what the note's formula gives (a number, or a statement);
    exact: the project's exact value on the same problem; holds: whether they
    agree (to ``tol`` relative) — None where the claim cannot be decided here;
    details: how the exact value was obtained and by how much they differ.
    """

    id: str
    source: str
    where: str
    claim: str
    note_value: object
    exact: object
    holds: bool | None
    details: str = ""


def _restrict(theta: dict, keep: str) -> dict:
    """θ with only the named blocks (letters of 'UcWb') kept, the others zero."""
    return {k: (v if k in keep else torch.zeros_like(v)) for k, v in theta.items()}


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


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


def _claims_s0_s1(P: _Problem) -> list[ClaimCheck]:
    """S_0 = ln M and S_1 = 0 (000/001 eqs. (4)–(5), 002 eqs. (7)–(8))."""
    M, full, T, tol, balanced, bal = P.M, P.full, P.T, P.tol, P.balanced, P.bal
    out: list[ClaimCheck] = []
    # S_0, S_1
    out.append(ClaimCheck("S0", "000 eq. 4; 001 eq. 4; 002 eq. 7", "§2.1", "S_0 = ln M", math.log(M), float(full[0]),
                          _close(math.log(M), float(full[0]), tol), "S_0 from action_series"))
    out.append(ClaimCheck("S1", "000 eq. 5; 001 eq. 5; 002 eq. 8", "§2.2", "S_1(θ) = 0 for balanced data", 0.0,
                          float(full[1]), abs(float(full[1])) <= tol if balanced else None,
                          f"data {bal}; exact S_1 = −Σ_α (p(α) − 1/M) c_α = {T.S1:.3e} (nonzero whenever classes are unbalanced)"))
    return out


def _claims_s2(P: _Problem) -> list[ClaimCheck]:
    """The terms of S_2 (000/001 eq. (6), 002 eq. (9)): c·c, U·W and the absent U·b."""
    S, T, tol, balanced, bal = P.S, P.T, P.tol, P.balanced, P.bal
    out: list[ClaimCheck] = []
    # S_2
    s2c = float(S("c")[2])
    note_cc = T.by_name("c·c").note_value
    out.append(ClaimCheck("S2.cc", "000 eq. 6; 001 eq. 6; 002 eq. 9", "§2.3", "c·c term of S_2: ½ Σ (δ_αβ/M − 1/M²) c_α c_β",
                          note_cc, s2c, _close(note_cc, s2c, tol), "exact = S_2 along θ restricted to c"))
    s2uw = float(S("UW")[2])
    note_uw = T.by_name("U·W").note_value
    out.append(ClaimCheck("S2.UW", "000 eq. 6; 001 eq. 6", "§2.3", "U·W term of S_2: ½ Σ_αγ J_αγ/(2M) Σ_β U_αβ W_βγ",
                          note_uw, s2uw, _close(note_uw, s2uw, tol),
                          f"exact = S_2 along θ restricted to (U, W) = (σ'(0)/M) Σ J U W = J/(2M)·UW; "
                          f"exact/note = {s2uw / note_uw if note_uw else float('nan'):.6g} (the Hessian entry J/(2M) is right, "
                          f"but the pair (U_αβ, W_βγ) appears twice in ½ θᵀ∇²Sθ: the ½ is cancelled)"))
    s2ub = float(S("Ub")[2])
    out.append(ClaimCheck("S2.Ub", "000 §2.3; 001 §2.3", "§2.3", "∂²S/∂U_αβ∂b_β(0) = 0: no U·b term in S_2 (balanced data)", 0.0,
                          s2ub, abs(s2ub) <= tol if balanced else None, f"exact = S_2 along θ restricted to (U, b); data {bal}"))
    return out


def _claims_definiteness(P: _Problem) -> list[ClaimCheck]:
    """The definiteness of δ_αβ/M − 1/M² and the stability of c = 0 drawn from it (§2.3)."""
    M, pa, balanced = P.M, P.pa, P.balanced
    out: list[ClaimCheck] = []
    # definiteness of the c block and stability conclusions
    Hcc = torch.eye(M, dtype=torch.float64) / M - 1.0 / M**2
    ev = torch.linalg.eigvalsh(Hcc)
    det = float(torch.linalg.det(Hcc))
    evs = f"eigenvalues {float(ev[0]):.2e} (×1, eigenvector ∝ (1,…,1)) and {float(ev[-1]):.6g} = 1/M (×{M - 1}); det = {det:.2e}"
    out.append(ClaimCheck("S2.cc.definite", "000 §2.3; 001 §2.3", "§2.3",
                          "δ_αβ/M − 1/M² is non-positive definite (since it has non-positive determinant)",
                          "non-positive definite", evs, False,
                          "it is positive SEMI-definite: one zero eigenvalue (softmax is invariant under c → c + const·1) "
                          "and M−1 eigenvalues 1/M > 0; a zero determinant does not make a matrix non-positive definite"))
    out.append(ClaimCheck("S2.cc.definite.002", "002 §2.3", "§2.3", "δ_αβ/M − 1/M² is non-negative definite",
                          "non-negative definite", evs, bool(float(ev[0]) >= -1e-15), "eigenvalues of the M × M matrix"))
    # c = 0 stability: S restricted to c is convex with S_1 = 0 at c = 0 (balanced) → global minimum there
    g = torch.Generator().manual_seed(0)
    cs = torch.randn(256, M, dtype=torch.float64, generator=g) * torch.logspace(-3, 1, 256, dtype=torch.float64).unsqueeze(1)
    pz = pa.to(dtype=torch.float64, device="cpu")
    Sc = torch.logsumexp(cs, 1) - cs @ pz  # S(U=W=b=0, c) = LSE(c) − Σ p(α) c_α
    gap = float((Sc - math.log(M)).min())
    out.append(ClaimCheck("S2.c.unstable", "001 §2.3", "§2.3",
                          "δ_αβ − 1/M has non-positive determinant for M = 2, 3, …, which means c = 0 is also unstable",
                          "c = 0 unstable", f"det(δ − 1/M) = {float(torch.linalg.det(torch.eye(M, dtype=torch.float64) - 1.0 / M)):.2e}; "
                          f"min over 256 random c of S(c) − ln M = {gap:.3e}",
                          False if balanced else None,
                          "the determinant is 0, but S(c) = LSE(c) − Σ_α p(α) c_α is convex with zero gradient at c = 0 "
                          "for balanced data, so c = 0 is a global minimum along c (flat only along c ∝ (1,…,1), where S is exactly constant)"))
    return out


def _claims_s2_bound(P: _Problem, st) -> list[ClaimCheck]:
    """S_2 has no lower bound (§2.3), from :func:`s2_stability`."""
    z, labels, silu, H = P.z, P.labels, P.silu, P.H
    out: list[ClaimCheck] = []
    out.append(ClaimCheck("S2.no_lower_bound", "000 §2.3; 001 §2.3", "§2.3", "there is no lower bound for the second (U·W) term of S_2",
                          "unbounded below", f"λ_min(∇²S(0)) = {st.lambda_min:.6g} (= −s_1 of σ'(0)[D | 1/M − p]); "
                          f"S_2 along the unit direction = {st.s_along[2]:.6g}",
                          st.lambda_min < 0,
                          f"S_2 is an indefinite quadratic form (spectrum ±s_i, each H times); along that direction the exact S "
                          f"has its minimum {st.S_min:.6g} at t = {st.t_min:.4g} and never goes below 0"))
    return out


def _claims_s3(P: _Problem, st) -> list[ClaimCheck]:
    """Every S_3 coefficient (000/001 §2.4, 002 eq. (10)), the absent U·b·b term and the cubic's missing lower bound."""
    S, T, tol, balanced, bal = P.S, P.T, P.tol, P.balanced, P.bal
    out: list[ClaimCheck] = []
    # S_3 terms
    S3 = {k: float(S(k)[3]) for k in ("c", "UW", "Ub", "UWb", "Ubc", "UWc")}
    exact3 = {
        "c·c·c": S3["c"],
        "(U·b)·c": S3["Ubc"] - S3["Ub"] - S3["c"],
        "(U·W)·c": S3["UWc"] - S3["UW"] - S3["c"],
        "U·W·b": S3["UWb"] - S3["UW"] - S3["Ub"],
        "U·W·W": S3["UW"],
    }
    factors = {"c·c·c": "1", "(U·b)·c": "6", "(U·W)·c": "6", "U·W·b": "6", "U·W·W": "3"}
    texts = {
        "c·c·c": "Σ (δ_αβγ/(6M) − (δ_αβ+δ_αγ+δ_βγ)/(6M²) + 1/(3M³)) c_α c_β c_γ",
        "(U·b)·c": "Σ (δ_αγ/(12M) − 1/(12M²)) (Σ_β U_αβ b_β) c_γ",
        "(U·W)·c": "Σ (Z_γ δ_αδ/(12M) − Z_γ/(12M²)) (Σ_β U_αβ W_βγ) c_δ",
        "U·W·b": "Σ J_αγ/(12M) Σ_β U_αβ W_βγ b_β",
        "U·W·W": "Σ J_αγδ/(12M) Σ_β U_αβ W_βγ W_βδ",
    }
    how = {
        "c·c·c": "S_3(c)",
        "(U·b)·c": "S_3(U, b, c) − S_3(U, b) − S_3(c)",
        "(U·W)·c": "S_3(U, W, c) − S_3(U, W) − S_3(c)",
        "U·W·b": "S_3(U, W, b) − S_3(U, W) − S_3(U, b)",
        "U·W·W": "S_3(U, W)",
    }
    for name, ex in exact3.items():
        nv = T.by_name(name).note_value
        ratio = ex / nv if nv else float("nan")
        out.append(ClaimCheck(f"S3.{name}", "000 §2.4; 001 §2.4" + ("; 002 eq. 10" if name == "c·c·c" else ""), "§2.4",
                              f"{name} term of S_3: {texts[name]}", nv, ex, _close(nv, ex, tol),
                              f"exact = {how[name]} (action_series); derived coefficient: {T.by_name(name).coefficient}; "
                              f"exact/note = {ratio:.6g}" + ("" if name == "c·c·c" else
                              f" (the note divides the third derivative by 3! but drops the {factors[name]} orderings of the "
                              f"distinct parameters)")))
    s3ubb = S3["Ub"]
    out.append(ClaimCheck("S3.Ubb", "000 §2.4; 001 §2.4", "§2.4", "∂³S/∂U_αβ∂b_β∂b_β(0) = 0: no U·b·b term (balanced data)", 0.0,
                          s3ubb, abs(s3ubb) <= tol if balanced else None, f"exact = S_3(U, b); data {bal}"))
    # no lower bound up to third order
    tt = st.t[-1]
    cub = st.cubic[-1]
    out.append(ClaimCheck("S3.no_lower_bound", "000 §2.4; 001 §2.4", "§2.4", "up to the third order the action still has no lower bound",
                          "unbounded below", f"S_0 + S_2 t² + S_3 t³ = {cub:.4g} at t = {tt:.3g} along the S_2-descent direction "
                          f"(S_3 = {st.s_along[3]:.3g}); exact S there = {st.exact[-1]:.4g}",
                          cub < 0 and st.s_along[2] < 0,
                          "true of the truncated series (a cubic is unbounded below), while the exact action is ≥ 0 everywhere"))
    return out


def _claims_subterms(paper_shapes: tuple[int, int, int]) -> list[ClaimCheck]:
    """The sub-term counts of 001 §2.4 for the paper's shapes (M, H, E)."""
    out: list[ClaimCheck] = []
    # sub-term counts (001)
    Mp, Hp, Ep = paper_shapes
    counts = [Mp**3, Mp * Mp * Hp, Mp * Mp * Hp * Ep, Mp * Hp * Ep, Mp * Hp * Ep * Ep]
    note_counts = [1e3, 2.1e5, 2.1e8, 2.1e7, 2.2e10]
    ok = all(abs(a - b) / b < 0.06 for a, b in zip(counts, note_counts))
    out.append(ClaimCheck("S3.subterms", "001 §2.4", "§2.4",
                          "for U 10×2048, W 2048×1024 the five S_3 terms sum over 10³, 2.1×10⁵, 2.1×10⁸, 2.1×10⁷, 2.2×10¹⁰ sub-terms",
                          note_counts, counts, ok, "M³, M²H, M²HE, MHE, MHE² (the counts terms() reports)"))
    return out


def _claims_all_orders(P: _Problem, n_max: int) -> list[ClaimCheck]:
    """The all-orders coefficient of the U·Wⁿ part of S_{n+1} (000/001 §2.5), measured by autodiff in ε."""
    z, labels, th, silu, M = P.z, P.labels, P.th, P.silu, P.M
    out: list[ClaimCheck] = []
    # all-orders coefficient, measured as d/dε S_{n+1}(εU, W, b = 0, c = 0)
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
    agree_note = all(_close(a, b, 1e-6) for a, b in zip(meas, note_k) if b != 0)
    out.append(ClaimCheck("S.all_orders", "000 §2.5; 001 §2.5", "§2.5",
                          "the U·Wⁿ part of S_{n+1} is σ⁽ⁿ⁾(0)/((n+1)!·M) Σ J U Wⁿ",
                          note_k, meas, agree_note,
                          f"measured κ_n = [d/dε S_(n+1)(εU, W, 0, 0)]_(ε=0) / Σ J U Wⁿ for n = 1..{n_max}; derived "
                          f"σ⁽ⁿ⁾(0)/(n!·M) = {[round(x, 10) for x in derived]}; measured/note = "
                          f"{[round(a / b, 6) if b else None for a, b in zip(meas, note_k)]} (= n + 1)"))
    return out


def _claims_activations(P: _Problem) -> list[ClaimCheck]:
    """silu's derivatives at 0 and 002's relu claim σ'(0) = 1 (002 §1.1, eq. (9))."""
    z, labels, th, silu, M, tol = P.z, P.labels, P.th, P.silu, P.M, P.tol
    note_cc = P.T.by_name("c·c").note_value
    out: list[ClaimCheck] = []
    # silu derivatives
    tau = silu.taylor(2)
    out.append(ClaimCheck("silu.derivatives", "000 §2.3–2.4; 001 §2.3–2.4", "§2.3", "silu: σ(0) = 0, σ'(0) = 1/2, σ''(0) = 1/2",
                          [0.0, 0.5, 0.5], [tau[0], tau[1], 2 * tau[2]],
                          _close(tau[1], 0.5, 1e-15) and _close(2 * tau[2], 0.5, 1e-15) and tau[0] == 0.0, "activations.get('silu').taylor(2)"))
    # relu claims of 002
    relu = _act.get("relu")
    r2 = float(action_series(th, z, labels, 2, activation=relu)[2])
    note_relu = 0.5 * float(j_contract(z, labels, th["U"], th["W"], 1, class_weighted=True)) / M + note_cc
    r2uw = float(action_series(_restrict(th, "UW"), z, labels, 2, activation=relu)[2])
    out.append(ClaimCheck("relu.sigma_prime", "002 §1.1, eq. 9", "§1.1/§2.3",
                          "relu has σ'(0) = 1 (σ⁽ⁿ⁾(0) = 0 otherwise), so S_2 = ½ Σ (δ/M − 1/M²) c c + ½ Σ J_αγ U W with J = (E_p − E_α)z/M",
                          note_relu, r2, _close(note_relu, r2, tol),
                          f"relu is not differentiable at 0 (right derivative 1, left 0): along the ray f(tθ) = t c + t² U relu(W z + b) "
                          f"exactly, so the exact S_2 = ½ c·c-form + Σ_αβ U_αβ D_α[relu(W z + b)_β], not a J-contraction; "
                          f"exact S_2 restricted to (U, W) = {r2uw:.6g} vs the note's ½ Σ J U W/M = {note_relu - note_cc:.6g}"))
    return out


def check_note_claims(z: torch.Tensor, labels: torch.Tensor, theta, *, tol: float = TOL,
                      paper_shapes: tuple[int, int, int] = (10, 2048, 1024), n_max: int = 5) -> list[ClaimCheck]:
    """Evaluate every closed-form claim of notes 000, 001, 002 on (z, labels) at the direction θ (silu, the notes' σ).

    Each named term's *exact* value is taken from
    :func:`actionlab.expansion.action_series` by inclusion–exclusion over
    parameter blocks (e.g. the U·W·b term of S_3 is S_3(U, W, b) − S_3(U, W) −
    S_3(U, b)), independently of :func:`actionlab.expansion.terms`; the note's
    value is its own formula on the same θ. Use balanced data: the notes
    assume p(α) = 1/M throughout.
    """
    P = _problem(z, labels, theta, tol)
    st = s2_stability(P.z, P.labels, P.silu, P.H, num_t=25)
    return [*_claims_s0_s1(P), *_claims_s2(P), *_claims_definiteness(P), *_claims_s2_bound(P, st),
            *_claims_s3(P, st), *_claims_subterms(paper_shapes), *_claims_all_orders(P, n_max), *_claims_activations(P)]


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


def _fashion_problem(config: NotesCheckConfig, seed: int, gen: torch.Generator) -> tuple[tuple, dict, dict]:
    """The balanced Fashion-MNIST problem, its description, and the J-range row (all 10,000 test images)."""
    from actionlab import data

    ds = data.load("fashion-mnist", "test", balance=True, per_class=config.per_class, seed=seed, dtype=torch.float64)
    M = ds.num_classes
    problem = (ds.z, ds.labels, _random_theta(M, config.hidden, ds.z.shape[1], config.fashion_scale, gen))
    info = {"M": M, "H": config.hidden, "E": int(ds.z.shape[1]), "N": len(ds),
            "theta": f"N(0, {config.fashion_scale}²)", "preprocessing": ds.info}
    full = data.load("fashion-mnist", "test", dtype=torch.float64)
    J = j_tensor(full.z, full.labels, 1)
    row = {
        "id": "J.range", "source": "000 §2.3; 001 §2.3", "where": "§2.3",
        "claim": "on Fashion-MNIST the components of J_αγ vary from −0.1 to 0.075",
        "note_value": [-0.1, 0.075],
        "exact": {"random": None, "fashion-mnist": [float(J.min()), float(J.max())]},
        "verdict": "inconclusive",
        "details": "raw pixels in [0, 1], all 10,000 test images; the notes used a learned embedding z (see "
                   "`actionlab j-stats` for other embeddings and standardisations), so this depends on z",
    }
    return problem, info, row


def _verdict(checks: list[ClaimCheck]) -> str:
    hs = [c.holds for c in checks]
    if any(h is False for h in hs):
        return "does not hold"
    return "holds" if all(h is True for h in hs) else "inconclusive"


def run_notes_check(config: NotesCheckConfig | None = None, *, seed: int = 0,
                    progress: bool | None = None) -> tuple[list[dict], dict]:
    """The claim rows — dicts with id, source, where, claim, note value, exact values per problem, verdict,
    details — and a description of each problem. A claim holds when it holds on every problem."""
    from tqdm.auto import tqdm

    config = config if config is not None else NotesCheckConfig()
    gen = torch.Generator().manual_seed(seed)
    M, H, E, n = config.random_shape
    z = torch.randn(M * n, E, dtype=torch.float64, generator=gen)
    labels = torch.arange(M * n) % M
    problems = {"random": (z, labels, _random_theta(M, H, E, config.scale, gen))}
    data_info = {"random": {"M": M, "H": H, "E": E, "N": M * n, "z": "N(0, 1)", "theta": f"N(0, {config.scale}²)",
                            "balanced": True}}
    extra_rows = []
    if config.fashion:
        problems["fashion-mnist"], data_info["fashion-mnist"], row = _fashion_problem(config, seed, gen)
        extra_rows.append(row)
    results = {}
    for name, (zz, ll, th) in tqdm(problems.items(), desc="notes-check", leave=False,
                                   disable=None if progress is None else not progress):
        results[name] = {c.id: c for c in check_note_claims(zz, ll, th)}
    rows = []
    for cid, c in results["random"].items():
        per = {k: results[k][cid] for k in results}
        rows.append({
            "id": cid, "source": c.source, "where": c.where, "claim": c.claim,
            "note_value": {k: r.note_value for k, r in per.items()},
            "exact": {k: r.exact for k, r in per.items()}, "verdict": _verdict(list(per.values())),
            "details": (c.details if len({r.details for r in per.values()}) == 1
                        else " | ".join(f"{k}: {r.details}" for k, r in per.items())),
        })
    return rows + extra_rows, data_info


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def _cell(v) -> str:
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _note_cell(note_value) -> str:
    nv = note_value
    if isinstance(nv, dict) and nv:
        if len({_fmt(v) for v in nv.values()}) > 1:
            return "; ".join(f"{k}: {_fmt(v)}" for k, v in nv.items())
        nv = nv.get("random", next(iter(nv.values())))
    return _cell(nv)


def to_markdown(rows: list[dict], data_info: dict) -> str:
    """The table of claims (note's value, exact value per problem, verdict) and the details, as Markdown."""
    probs = list(data_info)
    lines = ["# The notes' closed-form claims, checked exactly", ""]
    lines.append("Problems: " + "; ".join(f"**{k}**: " + ", ".join(f"{a}={b}" for a, b in v.items() if a != "preprocessing")
                                          for k, v in data_info.items()))
    lines.append("")
    lines.append("Exact values come from `actionlab.expansion.action_series` (Taylor mode, float64); each named term by "
                 "inclusion–exclusion over parameter blocks. θ is the silu classifier of notes 000/001.")
    lines.append("")
    head = "| id | source | claim | note's value | " + " | ".join(f"exact ({p})" for p in probs) + " | verdict |"
    lines += [head, "|" + "---|" * (5 + len(probs))]
    for r in rows:
        ex = [_cell(r["exact"].get(p)) if r["exact"].get(p) is not None else "—" for p in probs]
        lines.append(f"| {r['id']} | {r['source']} | {_cell(r['claim'])} | {_note_cell(r['note_value'])} | "
                     + " | ".join(ex) + f" | **{r['verdict']}** |")
    lines += ["", "## Details", ""]
    for r in rows:
        lines.append(f"- **{r['id']}** ({r['verdict']}): {r['details']}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines += ["", "Verdicts: " + ", ".join(f"{k}: {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


def _claim(row: dict, info: dict, options: RunOptions) -> Claim:
    """A row as a run-folder claim; an exact check is firm unless it could not be decided."""
    sizes = {k: {a: v[a] for a in ("M", "H", "E", "N") if a in v} for k, v in info.items()}
    return Claim(
        source=row["source"].split()[0], claim=f"[{row['id']}] {row['claim']} ({row['source']})",
        document_value=row["note_value"], measured=row["exact"], verdict=row["verdict"], details=row["details"],
        id=f"notes-check.{row['id']}",
        evidence={"preset": options.preset, "seed": options.seed, "problems": sizes, "relative_tolerance": TOL,
                  "statistic": "exact value (Taylor mode, float64) against the note's formula"},
        strength="indicative" if row["verdict"] == "inconclusive" else "firm",
    )


@register_experiment("notes-check", config=NotesCheckConfig,
                     help="check every closed-form claim of the theory notes 000-002 against the exact expansion",
                     sources=("000", "001", "002"), order=20)
def run(config: NotesCheckConfig, options: RunOptions) -> NotesCheckResult:
    """Evaluate every claim (see :func:`check_note_claims`), write ``notes_check.md`` and the run folder."""
    folder = RunFolder(options, "notes-check", config, seed=options.seed)
    rows, info = run_notes_check(config, seed=options.seed)
    folder.data = info
    for row in rows:
        folder.add_claim(_claim(row, info, options))
    md = to_markdown(rows, info)
    (folder.path / "notes_check.md").write_text(md)
    result = NotesCheckResult(rows=rows, problems=info)
    folder.finish(result, md)
    return result
