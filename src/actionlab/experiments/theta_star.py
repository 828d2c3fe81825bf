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
    dominance,
    gaussianity,
    histogram_figure,
    looks_gaussian_centred,
    theta_star_for,
)
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["ThetaStarConfig", "ThetaStarResult", "run", "analyse", "rank_tensors", "NOTE_SUBTERMS"]

#: note 001 §2.4: sub-term counts for U 10×2048, W 2048×1024
NOTE_SUBTERMS = {"U·W·W": 2.2e10, "c·c·c": 1e3, "(U·b)·c": 2.1e5, "(U·W)·c": 2.1e8, "U·W·b": 2.1e7}


@dataclass
class ThetaStarConfig(ThetaStarSettings):
    """Train θ* and split S_2(θ*), S_3(θ*) into the notes' named terms; element histograms of J, U·W and products."""

    series_order: int = param(6, "order K of the exact Taylor series S_0..S_K(θ*) (000 eq. (3) ff.)", min=3, max=40)
    rank3: bool = param(True, "also split S_3(θ*) into its named terms and histogram the rank-3 tensors (M·E² elements)")
    rank3_max_elements: int = param(1 << 25, "M·E² above this: the rank-3 histograms use a random block of coordinates",
                                    min=1)
    PRESETS: ClassVar[dict] = {
        "quick": dict(QUICK_THETA_STAR),
        "default": {},
        "full": {"epochs": 60, "hidden": 4096},
    }


@short_repr
@dataclass
class ThetaStarResult:
    shapes: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    embedding: dict = field(default_factory=dict)
    analysis: dict = field(default_factory=dict)


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
    p = expansion.as_params(model).to(dtype=torch.float64)
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


@register_experiment("theta-star", config=ThetaStarConfig, sources=("001", "000"), order=41,
                     help="train θ*, split S_2(θ*), S_3(θ*) into named terms, histogram J, U·W and products (note 001 §2.3–2.4)")
def run(config: ThetaStarConfig, options: RunOptions) -> ThetaStarResult:
    seed_everything(options.seed)
    dspec = DataSpec.from_config(config, options.seed)
    run_folder = RunFolder(options, "theta-star", config, seed=options.seed, data=dataclasses.asdict(dspec))
    ts = theta_star_for(config, dspec, options)
    model = ts.model
    res = ThetaStarResult()
    res.shapes = {"M": model.M, "H": model.H, "E": model.E, "U": [model.M, model.H], "W": [model.H, model.E]}
    res.training = {**(ts.info.get("training") or {}), "cached": ts.cached}
    res.embedding = {k: v for k, v in (ts.info.get("embedding") or {}).items() if k != "training"}
    a = analyse(model, ts.test, order=config.series_order, rank3=config.rank3,
                max_elements=config.rank3_max_elements, seed=options.seed, keep_tensors=True)
    tens = a.pop("_tensors")
    with torch.no_grad():
        a["test_accuracy"] = float((model.double()(ts.test.z.double()).argmax(1) == ts.test.labels).double().mean())
        a["S_train"] = float(expansion.action_exact(model, ts.train.z.double(), ts.train.labels))
    res.analysis = a
    run_folder.save_figure(histogram_figure({"J_αγ": tens["J"], "Σ_β U_αβ W_βγ": tens["UW"], "J ∘ (U·W)": tens["J*UW"]},
                                            "rank 2 (test split)"), "hist_rank2")
    if "J3" in tens:
        blk = f", random block of {a['rank3_block']} coordinates" if a["rank3_block"] else ""
        run_folder.save_figure(histogram_figure({"J_αγδ": tens["J3"], "Σ_β U_αβ W_βγ W_βδ": tens["UWW"],
                                                 "J_αγδ ∘ (U·W·W)": tens["J3*UWW"]}, f"rank 3 (test split{blk})"), "hist_rank3")
    if "terms" in a:
        _terms_figure(run_folder, a)
    summary = _summary(run_folder, res, config)
    run_folder.finish(res, summary)
    return res


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


def _summary(run_folder: RunFolder, res: ThetaStarResult, config: ThetaStarConfig) -> str:
    a = res.analysis
    st = a["stats"]
    sh = res.shapes
    add = run_folder.add_claim
    if "terms" in a:
        for n, name, src_text in ((2, "U·W", "the second term (U·W, J_αγ) dominates S_2(θ*)"),
                                  (3, "U·W·W", "the last term (U·W·W, J_αγδ) dominates S_3(θ*)")):
            d, dn = a[f"dominance_S{n}"], a[f"dominance_S{n}_note"]
            ok = d["dominant"] == name
            add(Claim("001", src_text, name,
                      f"dominant: {d['dominant']} ({d['share_of_abs']:.1%} of Σ|terms|); with the notes' coefficients: "
                      f"{dn['dominant']} ({dn['share_of_abs']:.1%})",
                      "holds" if ok else "does not hold",
                      f"terms with the exact coefficients (expansion.terms); S_{n}(θ*) = {a[f'S{n}_series']:.6g}, "
                      f"Σ named terms = {a[f'S{n}_terms_sum']:.6g}"))
        sub = a["subterms"]
        if (sh["M"], sh["H"], sh["E"]) == (10, 2048, 1024):
            meas = {k: sub[k] for k in NOTE_SUBTERMS}
            ok = all(abs(sub[k] - v) / v < 0.06 for k, v in NOTE_SUBTERMS.items())
            add(Claim("001", "sub-term counts for U 10×2048, W 2048×1024", NOTE_SUBTERMS, meas,
                      "holds" if ok else "does not hold", "counts M·H·E², M³, M²H, M²HE, MHE"))
    for key, label in (("J", "J_αγ"), ("UW", "Σ_β U_αβ W_βγ"), ("J3", "J_αγδ"), ("UWW", "Σ_β U_αβ W_βγ W_βδ")):
        if key not in st:
            continue
        s = st[key]
        ok = looks_gaussian_centred(s)
        add(Claim("001", f"elements of {label} are Gaussian distributed, centred at zero", "Gaussian, mean 0",
                  f"mean/std {s['mean_over_std']:.3f}, skew {s['skew']:.3f}, excess kurtosis {s['excess_kurtosis']:.3f}, "
                  f"normaltest p {s.get('normaltest_p', float('nan')):.2g}",
                  "holds" if ok else "does not hold",
                  "criterion: |skew| < 0.5, |excess kurtosis| < 1, |mean| < 0.1·std (normality tests reject for any "
                  "small departure at these sizes; see the table)"))
    for key, sign, label in (("J*UW", "negative", "J_αγ·Σ_β U_αβ W_βγ"), ("J3*UWW", "positive", "J_αγδ·Σ_β U_αβ W_βγ W_βδ")):
        if key not in st:
            continue
        s = st[key]
        frac = s["fraction_negative"] if sign == "negative" else s["fraction_positive"]
        biased = frac > 0.6 and ((s["mean"] < 0) if sign == "negative" else (s["mean"] > 0))
        add(Claim("001", f"elements of {label} are highly biased, most of them {sign}", f"mostly {sign}",
                  f"fraction {sign} {frac:.3f}, mean {s['mean']:.3g} (mean/std {s['mean_over_std']:.3f})",
                  "holds" if biased else "does not hold", f"criterion: fraction {sign} > 0.6 and mean of that sign"))
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
    lines.append("Element statistics (test split):\n\n" + stats_table(st) + "\n")
    return "\n".join(lines) + "\n## Claims\n\n" + claims_table_md(run_folder.claims)
