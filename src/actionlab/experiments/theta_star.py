"""``actionlab theta-star``: the action at a trained θ*: term dominance and element distributions.

Notes 001 §2.3–2.4 (and 000): train θ* = (U, c, W, b) of q = softmax(U·σ(W z + b) + c) on the
Fashion-MNIST training split (SiLU; U 10×2048, W 2048×1024 — a learned embedding of width
E = 1024), evaluate on the test split, and split

    S_2(θ*) (eq. 6)  into  c·c  +  U·W  (+ U·b, zero for balanced data),
    S_3(θ*) (§2.4)   into  c·c·c + (U·b)·c + (U·W)·c + U·W·b + U·W·W  (+ U·b·b),

where S_n(θ) is the t^n coefficient of S(tθ) at θ = 0.  The notes claim that U·W dominates S_2
and U·W·W dominates S_3, that J_αγ and Σ_β U_αβ W_βγ (rank 2) and J_αγδ and Σ_β U_αβ W_βγ W_βδ
(rank 3) have Gaussian elements centred at zero, and that the elementwise products are highly
biased — mostly negative at rank 2, mostly positive at rank 3.

The named terms, their coefficients (derived exactly; the notes' own coefficients are reported
beside them) and the exact S_n come from :mod:`actionlab.expansion`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from actionlab import expansion, stats
from actionlab._checks import ValueCheckError
from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import (
    QUICK_THETA_STAR,
    DataSpec,
    ThetaStarSettings,
    activation_pole_bound,
    dominance,
    gaussianity,
    histogram_figure,
    looks_gaussian_centred,
    series_radius,
    theta_star_for,
)
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["ThetaStarConfig", "ThetaStarResult", "run", "analyse", "rank_tensors", "along_path", "radius_and_paths",
           "across_seeds", "judge_against", "judge_all_below", "NOTE_SUBTERMS"]

#: note 001 §2.4: sub-term counts for U 10×2048, W 2048×1024
NOTE_SUBTERMS = {"U·W·W": 2.2e10, "c·c·c": 1e3, "(U·b)·c": 2.1e5, "(U·W)·c": 2.1e8, "U·W·b": 2.1e7}


@dataclass
class ThetaStarConfig(ThetaStarSettings):
    """Train θ* and split S_2(θ*), S_3(θ*) into the notes' named terms; element histograms of J, U·W and products."""

    series_order: int = param(6, "order K of the exact Taylor series S_0..S_K(θ*) (000 eq. (3) ff.)", min=3, max=40)
    rank3: bool = param(True, "also split S_3(θ*) into its named terms and histogram the rank-3 tensors (M·E² elements)")
    rank3_max_elements: int = param(1 << 25, "M·E² above this: the rank-3 histograms use a random block of coordinates",
                                    min=1)
    seeds: int = param(3, "independent θ* trained from seeds seed, seed+1, …; each retrains the learned embedding, the "
                          "initialisation, the batch order and the validation hold-out; fractions get intervals across them",
                       min=1)
    radius_order: int = param(20, "order K of the series S_0..S_K(tθ*) whose last orders give the root-test radius of "
                                  "convergence in t (Cauchy–Hadamard on 000 eq. (3))", min=4, max=60)
    radius_tail: int = param(6, "number of the highest orders over which the root test's r_k = |S_k|^(−1/k) is read "
                                "(their spread is the estimate's uncertainty)", min=2)
    PRESETS: ClassVar[dict] = {
        "quick": {**QUICK_THETA_STAR, "seeds": 2, "radius_order": 14},
        "default": {},
        # the notes' script: learned E = 1024, H = 4096, SiLU, trained to early stopping
        "full": {"epochs": 60, "hidden": 4096, "dim": 1024, "embedding": "learned", "activation": "silu", "seeds": 3},
    }


@short_repr
@dataclass
class ThetaStarResult:
    """The first seed's θ* in full (``analysis``), every seed's key numbers (``per_seed``) and their
    intervals across seeds (``across_seeds``: name → {estimate, low68, high68, low95, high95, n})."""

    shapes: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    embedding: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)
    per_seed: list = field(default_factory=list)
    across_seeds: dict = field(default_factory=dict)


def rank_tensors(U: torch.Tensor, W: torch.Tensor, J1: torch.Tensor, J2: torch.Tensor | None,
                 max_elements: int = 1 << 25, seed: int = 0) -> dict:
    """The tensors the notes histogram: J, U·W, J∘(U·W) (rank 2) and J_αγδ, Σ_β U_αβ W_βγ W_βδ and their
    product (rank 3).  When M·E² > max_elements the rank-3 tensors are restricted to a random block
    of k coordinates (γ, δ ∈ G, |G| = k, M·k² ≤ max_elements) — recorded in ``rank3_block``."""
    UW = U @ W
    out = {"J": J1, "UW": UW, "J*UW": J1 * UW}
    if J2 is not None:
        M, E = J1.shape
        idx = None
        if M * E * E > max_elements:
            k = int(math.sqrt(max_elements / M))
            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(E, generator=g)[:k].sort().values
            J2 = J2[:, idx][:, :, idx]
            Wb = W[:, idx]
        else:
            Wb = W
        UWW = torch.stack([(Wb.T * U[a]) @ Wb for a in range(M)])  # Σ_β U_αβ W_βγ W_βδ
        out.update({"J3": J2, "UWW": UWW, "J3*UWW": J2 * UWW,
                    "rank3_block": None if idx is None else int(len(idx))})
    return out


def analyse(model, ds, *, order: int = 3, rank3: bool = True, max_elements: int = 1 << 25, seed: int = 0,
            keep_tensors: bool = False) -> dict:
    """S(θ*), S_0..S_order(θ*), the named terms of S_2 and S_3 and their dominance, parameter scales, and
    element statistics of the rank-2 / rank-3 tensors, on the dataset ``ds`` (float64 throughout)."""
    z = ds.z.double()
    y = ds.labels
    p = expansion.as_params(model).to(dtype=torch.float64, device=z.device)  # one device: where the data are
    out: dict = {"N": len(z), "S_exact": float(expansion.action_exact(p, z, y))}
    ser = expansion.action_series(p, z, y, order)
    out["S_n"] = [float(v) for v in ser]
    out["partial_sums"] = [float(v) for v in torch.cumsum(ser, 0)]
    out["param_rms"] = {k: float(getattr(p, k).pow(2).mean().sqrt()) for k in ("U", "c", "W", "b")}
    out["param_abs_max"] = {k: float(getattr(p, k).abs().max()) for k in ("U", "c", "W", "b")}
    try:
        T = expansion.terms(p, z, y, exact=True)
    except ValueCheckError as exc:  # kinked activation or σ(0) ≠ 0: no J-term decomposition
        out["terms_error"] = str(exc)
        T = None
    if T is not None:
        out["balanced"] = T.balanced
        out["terms"] = [dataclasses.asdict(t) for t in T.terms]
        out["S2_terms_sum"], out["S3_terms_sum"] = T.S2, T.S3
        out["S2_series"], out["S3_series"] = T.exact_S2, T.exact_S3
        for n in (2, 3):
            tn = T.order(n)
            out[f"dominance_S{n}"] = dominance({t.name: t.value for t in tn})
            out[f"dominance_S{n}_note"] = dominance({t.name: t.note_value for t in tn if t.note_value is not None})
        out["subterms"] = {t.name: t.subterms for t in T.terms}
    J1 = expansion.j_tensor(z, y, 1, num_classes=p.M, class_weighted=True)
    J2 = None
    if rank3:
        if p.M * p.E * p.E * 8 > (1 << 31):
            raise ValueCheckError(f"J_αγδ with E = {p.E} needs {p.M * p.E**2 * 8 / 2**30:.1f} GiB; run with --no-rank3")
        J2 = expansion.j_tensor(z, y, 2, num_classes=p.M, class_weighted=True, max_bytes=1 << 31)
    tens = rank_tensors(p.U, p.W, J1, J2, max_elements, seed)
    out["rank3_block"] = tens.pop("rank3_block", None)
    if T is not None:  # the histogrammed products, summed with the derived coefficient, are the terms
        s1, s2 = p.activation.taylor(1)[1], 2.0 * p.activation.taylor(2)[2]
        out["check_UW_from_tensors"] = s1 / p.M * float(tens["J*UW"].sum())
        if J2 is not None and out["rank3_block"] is None:
            out["check_UWW_from_tensors"] = s2 / (2 * p.M) * float(tens["J3*UWW"].sum())
    out["stats"] = {k: gaussianity(v, seed=seed) for k, v in tens.items()}
    if keep_tensors:
        out["_tensors"] = tens
    return out


def along_path(p, z: torch.Tensor, y: torch.Tensor, coeffs: torch.Tensor, terms: list[dict], t: float) -> dict:
    """What the expansion says about S(tθ*) at one t (000 eq. (3): S(tθ) = Σ_n S_n t^n).

    Within S_n every term scales by the same t^n, so a term's share *of S_n* does not depend on t; what
    changes with t is whether the terms describe S at all.  Returned: the exact S(tθ*), the partial sums
    P_K(t) = Σ_{n≤K} S_n t^n for every K computed, the order contributions S_n t^n, each named term of
    S_2, S_3 at t (value·t^n), the named term carrying the largest part of S(tθ*) − S_0 and that part
    (its value·t^n / (S(tθ*) − S_0)), and the truncation error |P_3(t) − S(tθ*)| / |S(tθ*) − S_0|.
    """
    pt = expansion.Params(t * p.U, t * p.c, t * p.W, t * p.b, p.activation)
    exact = float(expansion.action_exact(pt, z, y))
    c = [float(v) for v in coeffs]
    contrib = [cn * t**n for n, cn in enumerate(c)]
    partial = list(np.cumsum(contrib))
    delta = exact - c[0]
    named = {d["name"]: d["value"] * t ** d["order"] for d in terms if d["order"] in (2, 3)}
    top = max(named, key=lambda k: abs(named[k])) if named else None
    return {
        "t": t, "exact": exact, "partial_sums": [float(v) for v in partial], "contributions": contrib,
        "named_terms": named, "largest_term": top,
        "largest_term_part_of_change": (named[top] / delta) if top is not None and delta != 0 else float("nan"),
        "truncation_error_P3": abs(partial[min(3, len(partial) - 1)] - exact) / abs(delta) if delta != 0 else float("nan"),
        "truncation_error_PK": abs(partial[-1] - exact) / abs(delta) if delta != 0 else float("nan"),
    }


def radius_and_paths(p, z: torch.Tensor, y: torch.Tensor, terms: list[dict], order: int, tail: int) -> dict:
    """The root-test radius r of t ↦ S(tθ*) with its spread across orders, the activation-pole bound, where
    t = 1 lies, and :func:`along_path` at t = r/2 (inside the radius) and at t = 1 (θ* itself)."""
    coeffs = expansion.action_series(p, z, y, order)
    r = series_radius(coeffs, tail, activation_pole_bound(p, z))
    t_in = 0.5 * r.radius
    return {"radius": dataclasses.asdict(r), "t1_location": r.location(1.0), "t_inside": t_in,
            "at_half_radius": along_path(p, z, y, coeffs, terms, t_in) if math.isfinite(t_in) else None,
            "at_one": along_path(p, z, y, coeffs, terms, 1.0), "series": [float(v) for v in coeffs]}


@register_experiment("theta-star", config=ThetaStarConfig, sources=("001", "000"), order=41,
                     help="train θ*, split S_2(θ*), S_3(θ*) into named terms, histogram J, U·W and products (note 001 §2.3–2.4)")
def run(config: ThetaStarConfig, options: RunOptions) -> ThetaStarResult:
    seed_everything(options.seed)
    dspec = DataSpec.from_config(config, options.seed)
    run_folder = RunFolder(options, "theta-star", config, seed=options.seed,
                           data={**dataclasses.asdict(dspec), "seeds": [options.seed + k for k in range(config.seeds)]})
    res = ThetaStarResult()
    tens = None
    for k in range(config.seeds):
        s = options.seed + k
        ts = theta_star_for(config, DataSpec.from_config(config, s), dataclasses.replace(options, seed=s))
        a = _analyse_seed(ts, config, s, keep_tensors=k == 0)
        if k == 0:
            tens = a.pop("_tensors")
            model = ts.model
            res.shapes = {"M": model.M, "H": model.H, "E": model.E, "U": [model.M, model.H], "W": [model.H, model.E]}
            res.training = {**(ts.info.get("training") or {}), "cached": ts.cached}
            res.embedding = {k2: v for k2, v in (ts.info.get("embedding") or {}).items() if k2 != "training"}
            res.analysis = a
        res.per_seed.append(seed_numbers(a, s))
    res.across_seeds = across_seeds(res.per_seed)
    _figures(run_folder, res.analysis, tens)
    summary = _summary(run_folder, res, config)
    run_folder.finish(res, summary)
    return res


def _analyse_seed(ts, config: ThetaStarConfig, seed: int, keep_tensors: bool) -> dict:
    """:func:`analyse` on the test split of one θ*, with its accuracy, train action, radius and paths."""
    model = ts.model
    a = analyse(model, ts.test, order=config.series_order, rank3=config.rank3,
                max_elements=config.rank3_max_elements, seed=seed, keep_tensors=keep_tensors)
    z, y = ts.test.z.double(), ts.test.labels
    with torch.no_grad():
        m64 = copy.deepcopy(model).double().to(z.device)
        a["test_accuracy"] = float((m64(z).argmax(1) == y.to(z.device)).double().mean())
        a["S_train"] = float(expansion.action_exact(m64, ts.train.z.double(), ts.train.labels))
    p = expansion.as_params(model).to(dtype=torch.float64, device=z.device)
    a["path"] = radius_and_paths(p, z, y, a.get("terms", []), config.radius_order, config.radius_tail)
    return a


def seed_numbers(a: dict, seed: int) -> dict:
    """The numbers of one seed's analysis that the claims are judged on (plain floats)."""
    st = a["stats"]
    out: dict = {"seed": seed, "S_exact": a["S_exact"], "test_accuracy": a.get("test_accuracy")}
    for n in (2, 3):
        d = a.get(f"dominance_S{n}")
        if d:
            out[f"dominant_S{n}"] = d["dominant"]
            out.update({f"share_S{n}[{k}]": v for k, v in d["shares"].items()})
    if "J*UW" in st:
        out["frac_negative[J*UW]"] = st["J*UW"]["fraction_negative"]
    if "J3*UWW" in st:
        out["frac_positive[J3*UWW]"] = st["J3*UWW"]["fraction_positive"]
    for key in ("J", "UW", "J3", "UWW"):
        if key in st:
            out[f"abs_skew[{key}]"] = abs(st[key]["skew"])
            out[f"abs_excess_kurtosis[{key}]"] = abs(st[key]["excess_kurtosis"])
            out[f"abs_mean_over_std[{key}]"] = abs(st[key]["mean_over_std"])
    path = a["path"]
    out["radius"] = path["radius"]["radius"]
    out["radius_root_test"] = path["radius"]["estimate"]
    out["radius_activation_bound"] = path["radius"]["activation_bound"]
    out["t1_location"] = path["t1_location"]
    h = path["at_half_radius"]
    if h:
        out["half_radius_largest_term"] = h["largest_term"]
        out["half_radius_largest_part"] = h["largest_term_part_of_change"]
        out["half_radius_truncation_P3"] = h["truncation_error_P3"]
    out["t1_truncation_P3"] = path["at_one"]["truncation_error_P3"]
    return out


def _iv(values: list[float], level: float) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    iv = stats.mean_interval(values, level, method="t")
    return iv.low, iv.high


def across_seeds(per_seed: list[dict]) -> dict:
    """Mean over seeds with t intervals at 68 % and 95 % (:func:`actionlab.stats.mean_interval`) of every
    numeric per-seed number; NaN bounds with a single seed."""
    out = {}
    keys = [k for k, v in per_seed[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"]
    for k in keys:
        vals = [float(r[k]) for r in per_seed if isinstance(r.get(k), (int, float)) and math.isfinite(float(r[k]))]
        if not vals:
            continue
        lo68, hi68 = _iv(vals, 0.68)
        lo95, hi95 = _iv(vals, 0.95)
        out[k] = {"estimate": float(np.mean(vals)), "low68": lo68, "high68": hi68, "low95": lo95, "high95": hi95,
                  "n": len(vals), "values": vals}
    return out


def judge_against(iv: dict, threshold: float, *, above: bool, quick: bool) -> tuple[str, str]:
    """Verdict and strength of "the quantity is above (``above``) / below ``threshold``" from its 95 %
    interval across seeds: holds when the whole interval is on the claimed side, does not hold when it is
    wholly on the other side, inconclusive when it straddles.  One seed: the point estimate decides,
    indicative.  Firm needs ≥ 3 seeds, no straddle and a non-quick preset."""
    est, lo, hi, n = iv["estimate"], iv["low95"], iv["high95"], iv["n"]
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        ok = est > threshold if above else est < threshold
        return ("holds" if ok else "does not hold"), "indicative"
    yes = lo > threshold if above else hi < threshold
    no = hi < threshold if above else lo > threshold
    verdict = "holds" if yes else "does not hold" if no else "inconclusive"
    firm = verdict != "inconclusive" and n >= 3 and not quick
    return verdict, "firm" if firm else "indicative"


def judge_all_below(ivs: list[dict], tols: list[float], *, quick: bool) -> tuple[str, str]:
    """Every quantity below its tolerance (see :func:`judge_against`): holds when all hold, does not hold
    when any does not, else inconclusive; firm only when every part is firm."""
    parts = [judge_against(iv, t, above=False, quick=quick) for iv, t in zip(ivs, tols)]
    verdicts = [v for v, _ in parts]
    verdict = ("does not hold" if "does not hold" in verdicts else "holds" if all(v == "holds" for v in verdicts)
               else "inconclusive")
    decisive = [st for v, st in parts if v == verdict] if verdict != "inconclusive" else ["indicative"]
    return verdict, "firm" if all(st == "firm" for st in decisive) and decisive else "indicative"


def _terms_figure(run_folder: RunFolder, a: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, n in zip(axes, (2, 3)):
        ts = [t for t in a["terms"] if t["order"] == n]
        names = [t["name"] for t in ts]
        vals = [t["value"] for t in ts]
        colors = ["tab:red" if v < 0 else "tab:blue" for v in vals]
        ax.bar(range(len(names)), np.abs(vals), color=colors)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        if any(abs(v) > 0 for v in vals):
            ax.set_yscale("log")
        ax.set_title(f"named terms of S_{n}(θ*) (000 §2)", fontsize=9)
        ax.set_xlabel("term")
        ax.set_ylabel("|value| (nats)")
        ax.legend(handles=[Patch(color="tab:blue", label="positive"), Patch(color="tab:red", label="negative")],
                  fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    run_folder.save_figure(fig, "terms")


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def stats_table(stats: dict) -> str:
    lines = ["| tensor | elements | mean | std | skew | excess kurtosis | frac < 0 | normaltest p | KS p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, s in stats.items():
        lines.append(f"| {k} | {s['count']} | {s['mean']:.3g} | {s['std']:.3g} | {s['skew']:.3f} | {s['excess_kurtosis']:.3f} | "
                     f"{s['fraction_negative']:.3f} | {s.get('normaltest_p', float('nan')):.2g} | {s.get('ks_p', float('nan')):.2g} |")
    return "\n".join(lines)


def _figures(run_folder: RunFolder, a: dict, tens: dict) -> None:
    """The first seed's element histograms, its named terms and its path 0 → θ*."""
    run_folder.save_figure(histogram_figure({"J_αγ": tens["J"], "Σ_β U_αβ W_βγ": tens["UW"], "J ∘ (U·W)": tens["J*UW"]},
                                            "rank 2 (test split)"), "hist_rank2")
    if "J3" in tens:
        blk = f", random block of {a['rank3_block']} coordinates" if a["rank3_block"] else ""
        run_folder.save_figure(histogram_figure({"J_αγδ": tens["J3"], "Σ_β U_αβ W_βγ W_βδ": tens["UWW"],
                                                 "J_αγδ ∘ (U·W·W)": tens["J3*UWW"]}, f"rank 3 (test split{blk})"), "hist_rank3")
    if "terms" in a:
        _terms_figure(run_folder, a)
    _radius_figure(run_folder, a["path"])


def _radius_figure(run_folder: RunFolder, path: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = path["radius"]
    coeffs = path["series"]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ks = [k for k in range(1, len(coeffs)) if coeffs[k] != 0]
    ax.plot(ks, [abs(coeffs[k]) ** (-1.0 / k) for k in ks], "o-", ms=3, label="r_k = |S_k|^(−1/k)")
    ax.axhline(r["estimate"], color="tab:green", lw=0.8, label=f"root-test radius {r['estimate']:.3g}")
    if math.isfinite(r["activation_bound"]):
        ax.axhline(r["activation_bound"], color="tab:purple", ls=":", lw=0.8,
                   label=f"activation-pole bound {r['activation_bound']:.3g}")
    ax.axhline(1.0, color="tab:red", ls="--", lw=0.8, label="t = 1 (θ*)")
    ax.set_yscale("log")
    ax.set_xlabel("order k")
    ax.set_ylabel("|S_k|^(−1/k)  (t units)")
    ax.set_title("radius of convergence of t ↦ S(tθ*) (root test)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    run_folder.save_figure(fig, "radius")


def _ivtext(iv: dict, pct: bool = False) -> str:
    f = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.3g}")  # noqa: E731
    if iv["n"] < 2:
        return f"{f(iv['estimate'])} (one seed)"
    return f"{f(iv['estimate'])} [95 %: {f(iv['low95'])}, {f(iv['high95'])}; n = {iv['n']}]"


def _evidence(res: ThetaStarResult, config: ThetaStarConfig, preset, key: str, threshold: float, rule: str) -> dict:
    iv = res.across_seeds[key]
    return {"preset": preset, "seeds": {"number": len(res.per_seed), "list": [r["seed"] for r in res.per_seed]},
            "sample_sizes": {"test_N": res.analysis["N"]}, "widths": {k: res.shapes[k] for k in ("M", "H", "E")},
            "activation": config.activation, "embedding": config.embedding, "statistic": key,
            "per_seed": iv["values"], "interval": {"low": iv["low95"], "high": iv["high95"], "level": 0.95},
            "interval_68": {"low": iv["low68"], "high": iv["high68"], "level": 0.68},
            "threshold": threshold, "decision_rule": rule}


def _radius_text(res: ThetaStarResult) -> str:
    a, acr = res.analysis["path"], res.across_seeds
    r = a["radius"]
    h = a["at_half_radius"] or {}
    locs = sorted({p["t1_location"] for p in res.per_seed})
    txt = (f"Radius of convergence r of t ↦ S(tθ*) = min(root test, activation-pole bound): {_ivtext(acr['radius'])} "
           f"across seeds; first seed: root test over orders {r['orders'][0]}–{r['orders'][-1]} {r['estimate']:.3g} "
           f"(spread across those orders {r['low']:.3g}–{r['high']:.3g}), activation-pole bound "
           f"{r['activation_bound']:.3g} (an upper bound on r). t = 1 is {'/'.join(locs)} the radius. ")
    if h:
        txt += (f"At t = r/2 = {h['t']:.3g}, where the terms describe S, the largest named term is {h['largest_term']} "
                f"carrying {h['largest_term_part_of_change']:.1%} of S(tθ*) − S_0 (truncation error of S_0..S_3: "
                f"{h['truncation_error_P3']:.2%}); at t = 1 the truncation error of S_0..S_3 is "
                f"{a['at_one']['truncation_error_P3']:.3g} × |S(θ*) − S_0|. Within S_n every term scales by t^n, so the "
                f"shares inside S_n are the same at every t.")
    return txt


def _dominance_claims(run_folder: RunFolder, res: ThetaStarResult, config: ThetaStarConfig) -> None:
    a = res.analysis
    rule = ("the term dominates S_n when its share |term| / Σ|terms of S_n| (exact coefficients) exceeds 0.5 — more "
            "than all other named terms together; holds if the 95 % t interval across seeds lies above 0.5, does not "
            "hold if below, inconclusive if it straddles")
    for n, name, cid, src_text in ((2, "U·W", "001.s2-dominance", "the second term (U·W, J_αγ) dominates S_2(θ*)"),
                                   (3, "U·W·W", "001.s3-dominance", "the last term (U·W·W, J_αγδ) dominates S_3(θ*)")):
        key = f"share_S{n}[{name}]"
        if key not in res.across_seeds:
            continue
        iv = res.across_seeds[key]
        verdict, strength = judge_against(iv, 0.5, above=True, quick=run_folder.preset == "quick")
        dom = sorted({r.get(f"dominant_S{n}") for r in res.per_seed})
        ev = _evidence(res, config, run_folder.preset, key, 0.5, rule)
        ev["radius"] = {k: res.across_seeds[k] for k in ("radius", "radius_root_test", "radius_activation_bound")
                        if k in res.across_seeds}
        ev["t1_location"] = [r["t1_location"] for r in res.per_seed]
        run_folder.add_claim(Claim(
            "001", src_text, name,
            {"share": iv["estimate"], "low95": iv["low95"], "high95": iv["high95"], "dominant_per_seed": dom,
             "share_notes_coefficients_seed0": a[f"dominance_S{n}_note"].get("share_of_abs")},
            verdict, f"share of {name} in S_{n}(θ*): {_ivtext(iv, pct=True)}; largest term per seed: {', '.join(dom)}. "
                     + _radius_text(res), id=cid, evidence=ev, strength=strength))


def _distribution_claims(run_folder: RunFolder, res: ThetaStarResult, config: ThetaStarConfig) -> None:
    quick = run_folder.preset == "quick"
    tols = {"abs_skew": 0.5, "abs_excess_kurtosis": 1.0, "abs_mean_over_std": 0.1}
    rule = ("Gaussian and centred: |skew| < 0.5, |excess kurtosis| < 1 and |mean| < 0.1·std, each judged on its 95 % "
            "interval across seeds (normality tests reject any small departure at these sizes; see the table)")
    for key, label, cid in (("J", "J_αγ", "001.j-gaussian"), ("UW", "Σ_β U_αβ W_βγ", "001.uw-gaussian"),
                            ("J3", "J_αγδ", "001.j3-gaussian"), ("UWW", "Σ_β U_αβ W_βγ W_βδ", "001.uww-gaussian")):
        names = [f"{m}[{key}]" for m in tols]
        if not all(k in res.across_seeds for k in names):
            continue
        ivs = [res.across_seeds[k] for k in names]
        verdict, strength = judge_all_below(ivs, list(tols.values()), quick=quick)
        ev = _evidence(res, config, run_folder.preset, names[0], tols["abs_skew"], rule)
        ev.update(statistic=names, per_seed={k: iv["values"] for k, iv in zip(names, ivs)},
                  interval={k: {"low": iv["low95"], "high": iv["high95"], "level": 0.95} for k, iv in zip(names, ivs)},
                  threshold=tols)
        ev.pop("interval_68")
        run_folder.add_claim(Claim(
            "001", f"elements of {label} are Gaussian distributed, centred at zero", "Gaussian, mean 0",
            {m: iv["estimate"] for m, iv in zip(tols, ivs)}, verdict,
            "; ".join(f"{m} {_ivtext(iv)}" for m, iv in zip(tols, ivs)), id=cid, evidence=ev, strength=strength))
    frule = "fraction of elements of the claimed sign > 0.6, judged on its 95 % interval across seeds"
    for key, sign, label, cid in (("frac_negative[J*UW]", "negative", "J_αγ·Σ_β U_αβ W_βγ", "001.jfold-negative"),
                                  ("frac_positive[J3*UWW]", "positive", "J_αγδ·Σ_β U_αβ W_βγ W_βδ", "001.j3fold-positive")):
        if key not in res.across_seeds:
            continue
        iv = res.across_seeds[key]
        verdict, strength = judge_against(iv, 0.6, above=True, quick=quick)
        run_folder.add_claim(Claim(
            "001", f"elements of {label} are highly biased, most of them {sign}", f"mostly {sign}",
            {"fraction": iv["estimate"], "low95": iv["low95"], "high95": iv["high95"]}, verdict,
            f"fraction {sign}: {_ivtext(iv, pct=True)}", id=cid,
            evidence=_evidence(res, config, run_folder.preset, key, 0.6, frule), strength=strength))


def _summary(run_folder: RunFolder, res: ThetaStarResult, config: ThetaStarConfig) -> str:
    a = res.analysis
    st = a["stats"]
    sh = res.shapes
    _dominance_claims(run_folder, res, config)
    if "subterms" in a and (sh["M"], sh["H"], sh["E"]) == (10, 2048, 1024):
        sub = a["subterms"]
        meas = {k: sub[k] for k in NOTE_SUBTERMS}
        err = max(abs(sub[k] - v) / v for k, v in NOTE_SUBTERMS.items())
        run_folder.add_claim(Claim(
            "001", "sub-term counts for U 10×2048, W 2048×1024", NOTE_SUBTERMS, meas,
            "holds" if err < 0.06 else "does not hold", "counts M·H·E², M³, M²H, M²HE, MHE", id="001.subterm-counts",
            evidence={"preset": run_folder.preset, "statistic": "max relative deviation of the counts",
                      "value": err, "threshold": 0.06, "decision_rule": "holds when every count is within 6 % "
                      "(the note rounds to two digits); exact integers, no seed dependence"},
            strength="firm"))
    _distribution_claims(run_folder, res, config)
    blk = (f" Rank-3 histograms/statistics use a random block of {a['rank3_block']} of the E coordinates "
           f"(M·E² > {config.rank3_max_elements}).") if a.get("rank3_block") else ""
    lines = [
        "# theta-star — the action at a trained θ*\n",
        f"Data {config.dataset} (standardize={config.standardize}), embedding **{config.embedding}** "
        f"(E = {sh['E']}), activation {config.activation}, U {sh['M']}×{sh['H']}, W {sh['H']}×{sh['E']}. "
        f"Training: AdamW lr {config.lr}, weight decay {config.weight_decay}, batch {config.batch_size}, ≤ {config.epochs} "
        f"epochs, early stopping on validation loss (patience {config.patience}); cached: {res.training.get('cached')}. "
        f"Evaluated on the test split (N = {a['N']}).{blk}\n",
        f"S(θ*) test = {a['S_exact']:.4f} (train {a['S_train']:.4f}), test accuracy {a['test_accuracy']:.4f}.\n",
        "S_n(θ*) (t^n coefficients of S(tθ*) at θ = 0): " + ", ".join(f"S_{i} = {v:.4g}" for i, v in enumerate(a["S_n"])) + "\n",
        "Parameter scales (RMS of elements): " + ", ".join(f"{k} {v:.3g}" for k, v in a["param_rms"].items()) + "\n",
    ]
    if "terms" in a:
        lines.append("| term | order | value (exact coefficient) | value (notes' coefficient) | sub-terms |\n|---|---|---|---|---|")
        for t in a["terms"]:
            lines.append(f"| {t['name']} | {t['order']} | {t['value']:.6g} | {_fmt(t['note_value'])} | {t['subterms']:.3g} |")
        lines.append(f"\nΣ terms of S_2 = {a['S2_terms_sum']:.6g} vs series S_2 = {a['S2_series']:.6g}; "
                     f"Σ terms of S_3 = {a['S3_terms_sum']:.6g} vs series S_3 = {a['S3_series']:.6g}.\n")
    else:
        lines.append(f"No named-term decomposition: {a.get('terms_error')}\n")
    lines.append(f"Element statistics (test split, first seed {res.per_seed[0]['seed']}):\n\n" + stats_table(st) + "\n")
    lines.append(_radius_text(res) + "\n")
    lines.append(f"Across {len(res.per_seed)} seeds (mean, 95 % t interval):\n\n| quantity | across seeds |\n|---|---|")
    lines += [f"| {k} | {_ivtext(iv)} |" for k, iv in res.across_seeds.items()]
    return "\n".join(lines) + "\n## Claims\n\n" + claims_table_md(run_folder.claims)
