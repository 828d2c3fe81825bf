"""``actionlab conjecture``: the notes' all-orders series at θ* and along the path from 0 to θ*.

Notes 000/001 §2.5 conjecture that the main contribution of S_{n+1}(θ*) is

    κ_n Σ_{α,γ1…γn} J_{αγ1…γn} Σ_β U_αβ W_βγ1⋯W_βγn,     κ_n^note = σ⁽ⁿ⁾(0)/((n+1)!·M),

so that S(θ) ≈ ln M + Σ_{n≥1} κ_n Σ J U Wⁿ for θ ≈ θ*.  :func:`actionlab.expansion.leading_series`
gives the contractions C_n = Σ J U Wⁿ (without materialising J) and the derived coefficient
κ_n = σ⁽ⁿ⁾(0)/(n!·M) beside the notes'.  Along the path θ(t) = t·θ*, C_n(tθ*) = t^{n+1} C_n(θ*), so
the partial sums at every t follow from one evaluation.  They are set against

* the exact S(tθ*) (:func:`actionlab.expansion.action_exact`), and
* the partial sums Σ_{k≤K} S_k t^k of the true Taylor series (:func:`actionlab.expansion.action_series`),

with a root-test estimate of the true series' radius of convergence in t, and, order by order, the
ratio of the conjectured term to the true S_{n+1}(θ*).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from actionlab import expansion
from actionlab._checks import ValueCheckError
from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import (
    QUICK_THETA_STAR,
    DataSpec,
    ThetaStarSettings,
    series_radius,
    theta_star_for,
)
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["ConjectureConfig", "ConjectureResult", "run", "radius_estimate"]


def radius_estimate(coeffs, tail: int = 4) -> float:
    """Root-test estimate of the radius of convergence of Σ a_k t^k: 1 / max |a_k|^{1/k} over the last ``tail``
    non-zero orders (:func:`actionlab.experiments._trained.series_radius`, the estimate theta-star reports)."""
    return series_radius(coeffs, tail).estimate


@dataclass
class ConjectureConfig(ThetaStarSettings):
    """Partial sums of the all-orders series (derived and notes' coefficient) and of the exact Taylor series against S(tθ*)."""

    n_max: int = param(10, "orders n = 1..n_max of the conjectured all-orders series (000/001 §2.5)", min=1, max=60)
    series_order: int = param(16, "order K of the exact Taylor series of S(tθ*) (000 eq. (3) ff.)", min=1, max=60)
    t_max: float = param(1.0, "largest t of the ray tθ* (t = 1 is θ* itself)", min=0, exclusive_min=True)
    t_points: int = param(41, "number of t values in [0, t_max]", min=2)
    PRESETS: ClassVar[dict] = {
        # same θ* settings as theta-star's quick preset, so the two share the cached θ*
        "quick": {**QUICK_THETA_STAR, "n_max": 8, "series_order": 12, "t_points": 21},
        "default": {},
        "full": {"n_max": 14, "series_order": 24, "t_max": 1.5, "t_points": 61},
    }


@short_repr
@dataclass
class ConjectureResult:
    t: list = field(default_factory=list)
    exact: list = field(default_factory=list)  # S(tθ*)
    taylor_coefficients: list = field(default_factory=list)  # S_0..S_K of S(tθ*) (t^k coefficients at θ*)
    taylor_partial_sums_at_1: list = field(default_factory=list)
    leading: dict = field(default_factory=dict)  # n, kappa, kappa_note, contractions, partial sums at t = 1
    ratio_to_true: dict = field(default_factory=dict)  # n -> (κ_n C_n / S_{n+1}, κ_n^note C_n / S_{n+1})
    radius_t: float = float("nan")
    curves: dict = field(default_factory=dict)  # name -> values over t
    S_star: float = float("nan")


@register_experiment("conjecture", config=ConjectureConfig, sources=("001", "000"), order=44,
                     help="the notes' all-orders series at θ* and along 0 → θ* against the exact S (notes §2.5)")
def run(config: ConjectureConfig, options: RunOptions) -> ConjectureResult:
    seed_everything(options.seed)
    dspec = DataSpec.from_config(config, options.seed)
    run_folder = RunFolder(options, "conjecture", config, seed=options.seed, data=dataclasses.asdict(dspec))
    ts = theta_star_for(config, dspec, options)
    p = expansion.as_params(ts.model).to(dtype=torch.float64)
    z, y = ts.test.z.double(), ts.test.labels
    res = ConjectureResult()
    K = config.series_order
    coeffs = expansion.action_series(p, z, y, K, progress=None)
    res.taylor_coefficients = [float(c) for c in coeffs]
    res.taylor_partial_sums_at_1 = [float(v) for v in torch.cumsum(coeffs, 0)]
    try:
        ls = expansion.leading_series(p, z, y, config.n_max)
    except ValueCheckError as exc:  # a kink at 0 (relu, leaky relu, elu): no J-term series to compare
        return _refused(run_folder, res, config, p, z, y, str(exc))
    res.leading = dataclasses.asdict(ls)
    res.S_star = ls.exact
    res.radius_t = radius_estimate(coeffs)
    for n, k, kn, c in zip(ls.n, ls.kappa, ls.kappa_note, ls.contractions):
        if n + 1 <= K and res.taylor_coefficients[n + 1] != 0:
            s = res.taylor_coefficients[n + 1]
            res.ratio_to_true[str(n)] = {"S_n+1": s, "derived": k * c / s, "note": kn * c / s}
    from tqdm.auto import tqdm

    ts_grid = np.linspace(0.0, config.t_max, config.t_points)
    res.t = ts_grid.tolist()
    lnM = math.log(p.M)
    for t in tqdm(ts_grid, desc="S(tθ*)", disable=None):
        pt = expansion.Params(t * p.U, t * p.c, t * p.W, t * p.b, p.activation)
        res.exact.append(float(expansion.action_exact(pt, z, y)))
    tpow = lambda k: np.power(ts_grid, k)  # noqa: E731
    for order in sorted({2, 3, 4, 6, K}):
        if order <= K:
            res.curves[f"taylor K={order}"] = sum(res.taylor_coefficients[k] * tpow(k) for k in range(order + 1)).tolist()
    for label, ks in (("leading (derived κ_n)", ls.kappa), ("leading (notes' κ_n)", ls.kappa_note)):
        res.curves[label] = (lnM + sum(k * c * tpow(n + 1) for n, k, c in zip(ls.n, ks, ls.contractions))).tolist()
    _figure(run_folder, res, config)
    summary = _summary(run_folder, res, config, ts)
    run_folder.finish(res, summary)
    return res


def _refused(run_folder: RunFolder, res: ConjectureResult, config: ConjectureConfig, p, z, y, reason: str):
    """The run for a σ with a kink at 0: the exact S(θ*) and one-sided series, and a claim saying why no κ_n."""
    res.S_star = float(expansion.action_exact(p, z, y))
    res.radius_t = radius_estimate(res.taylor_coefficients)
    run_folder.add_claim(Claim(
        "001", f"the main contribution to S_(n+1)(θ*) is σ⁽ⁿ⁾(0)/((n+1)!M) Σ J U Wⁿ, for σ = {config.activation}",
        "ratio ≈ 1 at every n", None, "inconclusive",
        f"not evaluated: {reason} (expansion.kappa and leading_series refuse a kink rather than return the right-hand "
        f"σ⁽ⁿ⁾(0⁺), which would multiply a contraction that is not the series' term)",
        id="001.all-orders-kinked", evidence={"activation": config.activation, "refused": reason}, strength="indicative"))
    text = (f"# conjecture — the all-orders series at θ*\n\n{config.activation} is not analytic at 0, so the series "
            f"ln M + Σ κ_n Σ J U Wⁿ of 000/001 §2.5 is not defined for it: {reason}.\n\nS(θ*) = {res.S_star:.5f}; "
            f"exact one-sided (t → 0⁺) Taylor coefficients of t ↦ S(tθ*): "
            + ", ".join(f"{v:.4g}" for v in res.taylor_coefficients) + "\n\n## Claims\n\n" + claims_table_md(run_folder.claims))
    run_folder.finish(res, text)
    return res


def _figure(run_folder: RunFolder, res: ConjectureResult, config: ConjectureConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    t = np.array(res.t)
    ex = np.array(res.exact)
    ax = axes[0]
    ax.plot(t, ex, "k-", lw=2, label="exact S(tθ*)")
    for name, vals in res.curves.items():
        ax.plot(t, vals, "--" if name.startswith("taylor") else ":", lw=1, label=name)
    lo, hi = min(ex.min(), 0) - 0.5, max(ex.max(), math.log(10)) + 1.0
    ax.set_ylim(lo, hi)
    ax.set_xlabel("t (θ = tθ*)")
    ax.set_ylabel("action S (nats)")
    ax.axvline(res.radius_t, color="gray", lw=0.6, label="radius estimate")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"path 0 → θ*; root-test radius ≈ {res.radius_t:.3g}", fontsize=9)
    ax = axes[1]
    ns = np.arange(len(res.taylor_partial_sums_at_1))
    ax.plot(ns, res.taylor_partial_sums_at_1, "o-", ms=3, label="Σ_{k≤K} S_k(θ*)")
    L = res.leading
    ax.plot(np.array(L["n"]) + 1, L["partial_sums"], "s-", ms=3, label="leading, derived κ_n")
    ax.plot(np.array(L["n"]) + 1, L["note_partial_sums"], "^-", ms=3, label="leading, notes' κ_n")
    ax.axhline(res.S_star, color="k", lw=1.5, label="S(θ*)")
    ax.set_yscale("symlog")
    ax.set_xlabel("order (highest power of t kept)")
    ax.set_ylabel("partial sum (nats, symlog)")
    ax.set_title("partial sums at θ* (t = 1)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    run_folder.save_figure(fig, "conjecture")


# ----------------------------------------------------------------------------- judging

#: the band a ratio "conjectured term / exact S_{n+1}(θ*)" must lie in for "the main contribution"
RATIO_BAND = (0.5, 2.0)
#: a decision within this relative margin of its threshold is indicative (the number could flip it)
MARGIN = 0.1


def judge_leading(ratios: dict, *, band: tuple[float, float] = RATIO_BAND, quick: bool = False) -> tuple[str, str]:
    """"holds" when every ratio (notes' term / exact S_{n+1}) lies in ``band``, else "does not hold".

    Firm (outside a quick preset) when the decision is not within ``MARGIN`` of the band's edges:
    for "holds" every ratio lies inside the band shrunk by 1 ± MARGIN; for "does not hold" some ratio
    lies outside the band widened by 1 ± MARGIN. No ratios: inconclusive."""
    vals = [float(v) for v in ratios.values()]
    if not vals:
        return "inconclusive", "indicative"
    lo, hi = band
    if all(lo <= v <= hi for v in vals):
        clear = all(lo * (1 + MARGIN) <= v <= hi * (1 - MARGIN) for v in vals)
        return "holds", "firm" if clear and not quick else "indicative"
    clear = any(v < lo * (1 - MARGIN) or v > hi * (1 + MARGIN) for v in vals)
    return "does not hold", "firm" if clear and not quick else "indicative"


def judge_close(value: float, target: float, *, tolerance: float = 0.1, quick: bool = False) -> tuple[str, str]:
    """"holds" when |value − target| ≤ tolerance·|target|; firm unless the relative error is within
    ``MARGIN``·tolerance of the tolerance (or the preset is quick)."""
    if not (math.isfinite(value) and math.isfinite(target)) or target == 0:
        return "inconclusive", "indicative"
    rel = abs(value - target) / abs(target)
    verdict = "holds" if rel <= tolerance else "does not hold"
    clear = abs(rel - tolerance) > MARGIN * tolerance
    return verdict, "firm" if clear and not quick else "indicative"


def judge_converges_at_one(radius: float, *, quick: bool = False) -> tuple[str, str]:
    """The series of t ↦ S(tθ*) summed at t = 1: "holds" when the radius estimate exceeds 1.

    The root-test radius is an estimate (its spread over the last orders is ~10–20 %), so the verdict
    is firm only when the radius lies outside [1/(1 + 2·MARGIN), 1 + 2·MARGIN]."""
    if not math.isfinite(radius):
        return "inconclusive", "indicative"
    verdict = "holds" if radius > 1.0 else "does not hold"
    clear = radius < 1.0 / (1 + 2 * MARGIN) or radius > 1.0 + 2 * MARGIN
    return verdict, "firm" if clear and not quick else "indicative"


def _claims(run_folder: RunFolder, res: ConjectureResult, config: ConjectureConfig, ts) -> None:
    """The three claim rows of §2.5, each judged by a function above, with its evidence."""
    L, S = res.leading, res.S_star
    quick = run_folder.preset == "quick"
    ev = {"preset": run_folder.preset, "seeds": {"number": 1, "list": [run_folder.seed]},
          "theta_star": {"embedding": config.embedding, "E": ts.model.E, "H": ts.model.H, "activation": config.activation},
          "sample_sizes": {"test_N": int(ts.test.z.shape[0])}, "series_order": config.series_order, "n_max": config.n_max,
          "note": "one θ*: the ratios are exact numbers of that θ* (float64), not a distribution over seeds"}
    ratios = {n: v["note"] for n, v in res.ratio_to_true.items()}
    verdict, strength = judge_leading(ratios, quick=quick)
    run_folder.add_claim(Claim(
        "001", "the main contribution to S_{n+1}(θ*) is σ⁽ⁿ⁾(0)/((n+1)!M) Σ J U Wⁿ", "ratio ≈ 1 at every n",
        {n: round(v, 3) for n, v in ratios.items()}, verdict,
        f"ratio = notes' term / exact S_{{n+1}}(θ*); 'holds' needs {RATIO_BAND[0]} ≤ ratio ≤ {RATIO_BAND[1]} at every "
        f"n ≤ {min(config.n_max, config.series_order - 1)}; derived-κ ratios: "
        + ", ".join(f"n={n}: {v['derived']:.3f}" for n, v in res.ratio_to_true.items()),
        id="001.leading-term", strength=strength,
        evidence={**ev, "statistic": "notes' leading term / exact S_{n+1}(θ*) per n", "values": ratios,
                  "threshold": {"band": list(RATIO_BAND), "margin": MARGIN},
                  "decision_rule": judge_leading.__doc__.split("\n")[0]}))
    last_d, last_n = L["partial_sums"][-1], L["note_partial_sums"][-1]
    incr = abs(L["partial_sums"][-1] - L["partial_sums"][-2]) if len(L["partial_sums"]) > 1 else float("nan")
    verdict, strength = judge_close(last_n, S, quick=quick)
    run_folder.add_claim(Claim(
        "001", "S(θ) ≈ ln M + Σ_n σ⁽ⁿ⁾(0)/((n+1)!M) Σ J U Wⁿ for θ ≈ θ*", f"S(θ*) = {S:.4f}",
        f"notes' coefficient, n ≤ {config.n_max}: {last_n:.4g}; derived coefficient: {last_d:.4g} (last increment {incr:.3g})",
        verdict, "holds if the notes' partial sum at n_max is within 10 % of S(θ*)",
        id="001.all-orders-sum", strength=strength,
        evidence={**ev, "statistic": "the notes' partial sum at n_max against S(θ*)",
                  "values": {"notes_partial_sum": last_n, "derived_partial_sum": last_d, "S_star": S},
                  "threshold": {"relative_tolerance": 0.1, "margin": MARGIN},
                  "decision_rule": judge_close.__doc__.split("\n")[0]}))
    verdict, strength = judge_converges_at_one(res.radius_t, quick=quick)
    run_folder.add_claim(Claim(
        "001", "(implicit in §2) the Taylor series of S around θ = 0 can be summed at θ*", "converges at t = 1",
        f"root-test radius in t ≈ {res.radius_t:.3g}; Σ_(k≤{config.series_order}) S_k(θ*) = "
        f"{res.taylor_partial_sums_at_1[-1]:.4g} vs S(θ*) = {S:.4f}", verdict,
        "radius from the root test 1/|S_k|^{1/k} over the last orders (an estimate)",
        id="001.series-at-theta-star", strength=strength,
        evidence={**ev, "statistic": "root-test radius of convergence of t ↦ S(tθ*)",
                  "values": {"radius": res.radius_t, "partial_sum_at_1": res.taylor_partial_sums_at_1[-1]},
                  "threshold": {"radius": 1.0, "margin": 2 * MARGIN},
                  "decision_rule": judge_converges_at_one.__doc__.split("\n")[0]}))


def _summary(run_folder: RunFolder, res: ConjectureResult, config: ConjectureConfig, ts) -> str:
    L = res.leading
    S = res.S_star
    rows = ["| n | S_{n+1}(θ*) exact | κ_n C_n (derived) | κ_n C_n (notes) | ratio derived | ratio notes |", "|---|---|---|---|---|---|"]
    for n, k, kn, c in zip(L["n"], L["kappa"], L["kappa_note"], L["contractions"]):
        r = res.ratio_to_true.get(str(n))
        s = f"{r['S_n+1']:.4g}" if r else "—"
        rows.append(f"| {n} | {s} | {k * c:.4g} | {kn * c:.4g} | {r['derived']:.3f} | {r['note']:.3f} |" if r else
                    f"| {n} | — | {k * c:.4g} | {kn * c:.4g} | — | — |")
    _claims(run_folder, res, config, ts)
    text = (f"# conjecture — the all-orders series at θ*\n\nθ*: {config.embedding} embedding E = {ts.model.E}, H = {ts.model.H}, "
            f"{config.activation}; test split, float64. S(θ*) = {S:.5f}, ln M = {L['lnM']:.5f}. Exact Taylor series of "
            f"t ↦ S(tθ*) to K = {config.series_order}; root-test radius of convergence in t ≈ {res.radius_t:.3g}.\n\n"
            "Partial sums of the true series at t = 1: " + ", ".join(f"{v:.4g}" for v in res.taylor_partial_sums_at_1) + "\n\n"
            "Leading series partial sums at t = 1, derived κ_n = σ⁽ⁿ⁾(0)/(n!M): " + ", ".join(f"{v:.4g}" for v in L["partial_sums"])
            + "\n\nNotes' κ_n = σ⁽ⁿ⁾(0)/((n+1)!M): " + ", ".join(f"{v:.4g}" for v in L["note_partial_sums"]) + "\n\n"
            + "\n".join(rows) + "\n\n")
    tt = np.array(res.t)
    ex = np.array(res.exact)
    pick = [i for i in range(len(tt)) if i % max(1, len(tt) // 5) == 0 or i == len(tt) - 1]
    text += "| t | exact S(tθ*) | " + " | ".join(res.curves) + " |\n|---" * 1 + "|---" * (len(res.curves) + 1) + "|\n"
    for i in pick:
        text += f"| {tt[i]:.2f} | {ex[i]:.4f} | " + " | ".join(f"{res.curves[k][i]:.4g}" for k in res.curves) + " |\n"
    return text + "\n## Claims\n\n" + claims_table_md(run_folder.claims)
