"""``actionlab embedding-dim``: term dominance at θ* against the embedding dimension E.

Note 001, end of §2.4: the U·W·W term dominates S_3(θ*) because it sums over far more sub-terms
(M·H·E²) than the others — "We can check this idea by making the embedding dimension E small.
Indeed, when E is small, domination of the last term vanishes."  This experiment trains θ* for E on
a grid (learned and PCA embeddings), splits S_2(θ*) and S_3(θ*) into the named terms
(:func:`actionlab.expansion.terms`) and plots the share of the dominant-candidate terms (U·W in S_2,
U·W·W in S_3; share = |term| / Σ|terms of that order|) against E.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar


import numpy as np
import torch

from actionlab import expansion, stats
from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything, torch_threads
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import (
    BuildOptions,
    DataSpec,
    dominance,
    get_theta_star,
    learned_config_from,
    load_splits,
    shared_param,
)
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["EmbeddingDimConfig", "EmbeddingDimResult", "run", "trend", "smallest_dominant_E", "judge_vanishes", "CANDIDATE"]


#: the named terms whose share is followed against E, per order (001 §2.4: U·W·W is the candidate of S_3)
CANDIDATE = {2: "U·W", 3: "U·W·W"}


@dataclass
class EmbeddingDimConfig:
    """Share of U·W in S_2(θ*) and of U·W·W in S_3(θ*) against the embedding dimension E, over seeds."""

    dataset: str = shared_param("dataset", "fashion-mnist")
    standardize: str = shared_param("standardize", "none")
    embeddings: tuple[str, ...] = param(("learned",), "embeddings z to compare (raw | pca | pool | learned, 001 §1.1); "
                                        "learned is the notes' script", choices=("raw", "pca", "pool", "learned"),
                                        allow_empty=False)
    dims: tuple[int, ...] = param((2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                                  "embedding dimensions E to sweep (001 §2.4; PCA dims above the pixel count are capped "
                                  "at it); at least three for a trend", min=1, allow_empty=False)
    seeds: int = param(3, "independent θ* per E from seeds seed, seed+1, …: each retrains the embedding, the "
                          "initialisation, the batch order and the data subset", min=1)
    hidden: int = shared_param("hidden", 2048)
    activation: str = shared_param("activation", "silu")
    epochs: int = shared_param("epochs", 30)
    patience: int = shared_param("patience", 3)
    batch_size: int = shared_param("batch_size", 1024)
    lr: float = shared_param("lr", 1e-3)
    weight_decay: float = shared_param("weight_decay", 0.004)
    train_per_class: int | None = shared_param("train_per_class", 1000)
    test_per_class: int | None = shared_param("test_per_class", 500)
    cache: bool = shared_param("cache", True)
    cache_dir: str | None = shared_param("cache_dir", None)
    threads: int = param(0, "torch intra-op threads during the run (small nets on a busy machine: 1 is fastest); "
                            "0 = leave as is", min=0)
    PRESETS: ClassVar[dict] = {
        "quick": {"dims": (2, 8, 32, 128), "hidden": 32, "epochs": 6, "train_per_class": 150, "test_per_class": 60,
                  "batch_size": 128, "lr": 3e-3, "seeds": 2, "embeddings": ("learned", "pca"), "threads": 1},
        # default: H = 2048 as in the notes, ten E from 2 to 1024, three seeds, trained as the notes' script to
        # early stopping (≤ 30 epochs, patience 3: at 10 epochs θ* is far from it and U·W·W's share at E = 2 moves
        # from 0.60 to 0.80); to fit ~15 min on 2 cores the data are cut to 1000 training / 500 test samples per
        # class and the batch to 1024
        "default": {},
        "full": {"hidden": 4096, "batch_size": 4096, "epochs": 30, "seeds": 5, "train_per_class": None,
                 "test_per_class": None, "embeddings": ("learned", "pca")},
    }


@short_repr
@dataclass
class EmbeddingDimResult:
    """One row per (embedding, E, seed); ``trends`` per (embedding, order): the candidate's share against
    log₂ E with its slope interval, per-E intervals and the paired share difference to the largest other term."""

    rows: list = field(default_factory=list)
    trends: dict = field(default_factory=dict)


@register_experiment("embedding-dim", config=EmbeddingDimConfig, sources=("001",), order=42,
                     help="share of U·W in S_2(θ*) and U·W·W in S_3(θ*) against the embedding dimension E (note 001 §2.4)")
def run(config: EmbeddingDimConfig, options: RunOptions) -> EmbeddingDimResult:
    from tqdm.auto import tqdm

    seed_everything(options.seed)
    seeds = [options.seed + k for k in range(config.seeds)]
    expansion.check_terms_activation(config.activation)  # a refused σ fails before any θ* is trained
    dspec = DataSpec.from_config(config, options.seed)
    run_folder = RunFolder(options, "embedding-dim", config, seed=options.seed,
                           data={**dataclasses.asdict(dspec), "seeds": seeds})
    res = EmbeddingDimResult()
    splits = {s: load_splits(DataSpec.from_config(config, s)) for s in seeds}
    P = splits[seeds[0]][0].z.shape[1]
    jobs = [(kind, E, s) for kind in config.embeddings
            for E in sorted({min(E, P) if kind == "pca" else E for E in config.dims}) for s in seeds]
    with torch_threads(config.threads):
        for kind, E, s in tqdm(jobs, desc="embedding-dim", disable=None):
            ts = get_theta_star(DataSpec.from_config(config, s), kind, E, config.hidden, learned_config_from(config),
                                build=BuildOptions.of(config, options, seed=s, progress=False), splits=splits[s])
            res.rows.append(_row(kind, E, s, config.hidden, ts))
    for kind in config.embeddings:
        for n in (2, 3):
            t = trend([r for r in res.rows if r["embedding"] == kind], n)
            if t is not None:
                res.trends[f"{kind}/S{n}"] = t
    _figure(run_folder, res)
    summary = _summary(run_folder, res, config)
    run_folder.finish(res, summary)
    return res


def _row(kind: str, E: int, seed: int, H: int, ts) -> dict:
    """The named terms of S_2(θ*), S_3(θ*) on the test split and their shares, with S(θ*) and S_0..S_3 (float64).

    Only what the shares need: one pass of :func:`expansion.action_series` to order 3 (the exact S_2, S_3 the
    terms must sum to) and :func:`expansion.terms` without its own series; the rank-3 sum U·W·W is contracted
    through the data, Σ_αβ U_αβ D_α[(W z)_β²], at cost N·H·E — never the M·H·E² tensor."""
    z = ts.test.z.double()
    y = ts.test.labels
    p = expansion.as_params(ts.model).to(dtype=torch.float64, device=z.device)
    training = ts.info.get("training") or {}
    S_n = [float(v) for v in expansion.action_series(p, z, y, 3)]
    T = expansion.terms(p, z, y, exact=False)
    d2, d3 = (dominance({t.name: t.value for t in T.order(n)}) for n in (2, 3))
    d3_note = dominance({t.name: t.note_value for t in T.order(3) if t.note_value is not None})
    return {
        "embedding": kind, "E": E, "seed": seed, "H": H, "S_exact": float(expansion.action_exact(p, z, y)),
        "S_n": S_n, "dominant_S2": d2["dominant"], "dominant_S3": d3["dominant"],
        "shares_S2": d2["shares"], "shares_S3": d3["shares"],
        "share_UW_in_S2": d2["shares"].get("U·W"), "share_UWW_in_S3": d3["shares"].get("U·W·W"),
        "share_UWW_in_S3_note": d3_note.get("shares", {}).get("U·W·W"),
        "terms": {t.name: t.value for t in T.terms}, "subterms": {t.name: t.subterms for t in T.terms},
        "terms_minus_series": [T.S2 - S_n[2], T.S3 - S_n[3]],
        "param_rms": {k: float(getattr(p, k).pow(2).mean().sqrt()) for k in ("U", "c", "W", "b")}, "cached": ts.cached,
        "epochs_trained": len(training.get("validation_losses") or []), "stopped_early": training.get("stopped_early"),
    }


def _interval(x, level: float) -> dict:
    if len(x) < 2:
        return {"estimate": float(np.mean(x)), "low": float("nan"), "high": float("nan"), "level": level, "n": len(x)}
    iv = stats.mean_interval(x, level, method="t")
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "level": level, "n": iv.n}


def trend(rows: list[dict], n: int) -> dict | None:
    """The share of ``CANDIDATE[n]`` in S_n(θ*) against log₂ E: per E the mean over seeds with 68 / 95 % t
    intervals and the paired difference share(candidate) − max share(other terms) (:func:`stats.paired_difference`,
    95 %); the slope in log₂ E with seeds as replicates (:func:`stats.slope_interval`, 68 and 95 %).
    None when the terms are missing or fewer than three E / two seeds are present (no slope)."""
    name = CANDIDATE[n]
    rows = [r for r in rows if name in r[f"shares_S{n}"]]
    dims = sorted({r["E"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    if len(dims) < 3:
        return None
    table = np.full((len(dims), len(seeds)), np.nan)
    other = np.full_like(table, np.nan)
    for r in rows:
        i, j = dims.index(r["E"]), seeds.index(r["seed"])
        sh = r[f"shares_S{n}"]
        table[i, j] = sh[name]
        other[i, j] = max(v for k, v in sh.items() if k != name)
    per_E = []
    for i, E in enumerate(dims):
        d = table[i] - other[i]
        per_E.append({"E": E, "share": table[i].tolist(), "share68": _interval(table[i], 0.68),
                      "share95": _interval(table[i], 0.95), "largest_other": other[i].tolist(),
                      "difference95": _interval(d, 0.95)})
    x = np.log2(np.array(dims, float))
    out = {"term": name, "order": n, "dims": dims, "seeds": seeds, "per_E": per_E}
    if len(seeds) >= 2:
        for lv in (0.68, 0.95):
            sf = stats.slope_interval(x, table, level=lv)
            out[f"slope{int(lv * 100)}"] = {"estimate": sf.slope.estimate, "low": sf.slope.low, "high": sf.slope.high,
                                            "level": lv, "n_seeds": sf.n_seeds}
    else:
        sf = stats.slope_interval(x, table[:, 0], level=0.95, method="pooled")
        out["slope95"] = {"estimate": sf.slope.estimate, "low": float("nan"), "high": float("nan"), "level": 0.95,
                          "n_seeds": 1}
    out["smallest_dominant_E"] = smallest_dominant_E(per_E)
    return out


def smallest_dominant_E(per_E: list[dict]) -> int | None:
    """The smallest E from which on (every larger E too) the candidate's share is distinguishably above the
    largest other term's: the 95 % interval of the paired difference lies above 0."""
    best = None
    for p in reversed(per_E):
        if not p["difference95"]["low"] > 0:
            break
        best = p["E"]
    return best


def judge_vanishes(t: dict, *, quick: bool, slope_threshold: float = 0.0) -> tuple[str, str]:
    """"Dominance vanishes when E is small" (001 §2.4), decided from the whole trend (rule stated before the numbers):

    * dominant at E: the 95 % interval of share(candidate) − max share(other terms), paired by seed, lies above 0;
      not dominant at E: it lies below 0 (another term is distinguishably larger); otherwise undetermined at E;
    * E₀ = the smallest E from which on the candidate is dominant at every larger E of the grid
      (:func:`smallest_dominant_E`); the slope = the share's change per doubling of E (least squares in log₂ E,
      seeds as replicates, 95 % interval);
    * holds: the slope's 95 % interval lies above ``slope_threshold`` (0), E₀ exists and the candidate is not
      dominant at some E below E₀ — the share rises with E and another term wins at small E;
    * does not hold: the candidate is dominant already at the smallest E of the grid, or the slope's 95 % interval
      lies below ``slope_threshold`` (the share falls as E grows);
    * inconclusive otherwise (e.g. never distinguishably dominant, or undetermined at every E below E₀).
      Firm needs ≥ 3 seeds, a non-quick preset and a decided verdict.
    """
    per_E = t["per_E"]
    slope = t.get("slope95", {})
    s_lo, s_hi = slope.get("low", float("nan")), slope.get("high", float("nan"))
    E0 = smallest_dominant_E(per_E)
    lost_below = E0 is not None and any(p["difference95"]["high"] < 0 for p in per_E if p["E"] < E0)
    if per_E[0]["difference95"]["low"] > 0 or s_hi < slope_threshold:
        verdict = "does not hold"
    elif s_lo > slope_threshold and lost_below:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    firm = verdict != "inconclusive" and len(t["seeds"]) >= 3 and not quick
    return verdict, "firm" if firm else "indicative"


def _figure(run_folder: RunFolder, res: EmbeddingDimResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, t in res.trends.items():
        kind = key.split("/")[0]
        ax = axes[t["order"] - 2]
        E = [p["E"] for p in t["per_E"]]
        m = np.array([p["share95"]["estimate"] for p in t["per_E"]])
        lo = np.array([p["share95"]["low"] for p in t["per_E"]])
        hi = np.array([p["share95"]["high"] for p in t["per_E"]])
        err = None if np.isnan(lo).all() else np.vstack([m - lo, hi - m])
        ax.errorbar(E, m, yerr=err, fmt="o-", capsize=2, label=f"{kind}: {t['term']} (95 % over seeds)")
        ax.plot(E, [np.mean(p["largest_other"]) for p in t["per_E"]], "x:", label=f"{kind}: largest other term")
    for n, ax in zip((2, 3), axes):
        ax.set_xscale("log", base=2)
        ax.set_title(f"share of {CANDIDATE[n]} in S_{n}(θ*) (001 §2.4)", fontsize=9)
        ax.set_xlabel("embedding dimension E")
        ax.set_ylabel("|term| / Σ|terms of that order|")
        ax.axhline(0.5, color="gray", lw=0.6, label="half of Σ|terms|")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("term dominance against the embedding dimension", fontsize=10)
    fig.tight_layout()
    run_folder.save_figure(fig, "dominance_vs_E")


def _f(x) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def _claim(run_folder: RunFolder, kind: str, t: dict, config: EmbeddingDimConfig, rows: list[dict]) -> None:
    verdict, strength = judge_vanishes(t, quick=run_folder.preset == "quick")
    s95, s68 = t.get("slope95", {}), t.get("slope68", {})
    first, last = t["per_E"][0], t["per_E"][-1]
    measured = {"slope_per_log2E": s95.get("estimate"), "slope95": [s95.get("low"), s95.get("high")],
                "smallest_dominant_E": t["smallest_dominant_E"],
                "share_at_smallest_E": first["share95"]["estimate"], "share_at_largest_E": last["share95"]["estimate"]}
    rule = judge_vanishes.__doc__.split("(rule stated before the numbers):")[1].strip()
    evidence = {"preset": run_folder.preset, "seeds": {"number": len(t["seeds"]), "list": t["seeds"]},
                "sample_sizes": {"train_per_class": config.train_per_class, "test_per_class": config.test_per_class},
                "widths": {"H": config.hidden, "E": t["dims"]}, "embedding": kind, "epochs": config.epochs,
                "theta_star_stopped_early": f"{sum(bool(r['stopped_early']) for r in rows)} of {len(rows)} "
                                            f"(the rest ran all {config.epochs} epochs)",
                "statistic": f"share of {t['term']} in S_3(θ*) against log2 E; paired difference to the largest other term",
                "interval": {"low": s95.get("low"), "high": s95.get("high"), "level": 0.95},
                "interval_68": {"low": s68.get("low"), "high": s68.get("high"), "level": 0.68},
                "difference_at_smallest_E": first["difference95"], "difference_at_largest_E": last["difference95"],
                "threshold": {"slope_per_log2E": 0.0, "share_minus_largest_other": 0.0}, "decision_rule": " ".join(rule.split())}
    cid = "001.dominance-vs-E" if kind == "learned" else f"001.dominance-vs-E-{kind}"
    run_folder.add_claim(Claim(
        "001", f"when E is small the dominance of U·W·W in S_3(θ*) vanishes ({kind} embedding)",
        "U·W·W dominant only for large E", measured, verdict,
        f"slope of the share per doubling of E: {_f(s95.get('estimate'))} [95 %: {_f(s95.get('low'))}, "
        f"{_f(s95.get('high'))}; 68 %: {_f(s68.get('low'))}, {_f(s68.get('high'))}]; smallest E from which U·W·W is "
        f"distinguishably the largest term: {t['smallest_dominant_E']}; share at E = {first['E']}: "
        f"{_f(first['share95']['estimate'])}, at E = {last['E']}: {_f(last['share95']['estimate'])}",
        id=cid, evidence=evidence, strength=strength))


def _summary(run_folder: RunFolder, res: EmbeddingDimResult, config: EmbeddingDimConfig) -> str:
    lines = ["| embedding | order | E | share (mean, 95 % over seeds) | largest other (mean) | share − other (95 %) |",
             "|---|---|---|---|---|---|"]
    for key, t in res.trends.items():
        for p in t["per_E"]:
            s, d = p["share95"], p["difference95"]
            lines.append(f"| {key.split('/')[0]} | S_{t['order']} ({t['term']}) | {p['E']} | {_f(s['estimate'])} "
                         f"[{_f(s['low'])}, {_f(s['high'])}] | {_f(float(np.mean(p['largest_other'])))} | "
                         f"{_f(d['estimate'])} [{_f(d['low'])}, {_f(d['high'])}] |")
        s95 = t.get("slope95", {})
        lines.append(f"| {key.split('/')[0]} | S_{t['order']} slope per log₂ E | | {_f(s95.get('estimate'))} "
                     f"[{_f(s95.get('low'))}, {_f(s95.get('high'))}] | | smallest dominant E: {t['smallest_dominant_E']} |")
    for kind in config.embeddings:
        if f"{kind}/S3" in res.trends:
            _claim(run_folder, kind, res.trends[f"{kind}/S3"], config, [r for r in res.rows if r["embedding"] == kind])
    head = (f"# embedding-dim — term dominance against E\n\nData {config.dataset} (standardize={config.standardize}, "
            f"{config.train_per_class or 'all'} train / {config.test_per_class or 'all'} test samples per class), "
            f"hidden width H = {config.hidden}, activation {config.activation}, embeddings {list(config.embeddings)}, "
            f"{config.seeds} seeds per E (each retrains embedding, initialisation and batch order); θ* trained with "
            f"AdamW (lr {config.lr}, batch {config.batch_size}, ≤ {config.epochs} epochs, early stopping on "
            f"validation loss); terms evaluated on the test split with the exact coefficients; share = "
            f"|term| / Σ|terms of that order|.\n\n")
    return head + "\n".join(lines) + "\n\n## Claims\n\n" + claims_table_md(run_folder.claims)
