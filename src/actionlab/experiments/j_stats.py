"""``actionlab j-stats``: range and distribution of J_αγ and J_αγδ on Fashion-MNIST.

Note 001 (§2.3, after eq. 6): "Computed on fashion-MNIST dataset, components of J vary from −0.1
to 0.075", with

    J_αγ  = E_{z∼p(z)}[z_γ] − E_{z∼p(z|α)}[z_γ],
    J_αγδ = E_{z∼p(z)}[z_γ z_δ] − E_{z∼p(z|α)}[z_γ z_δ]            (§2.4).

The note does not say which z: its script's z is a learned 1024-wide embedding (papers.md).
This experiment computes J for every standardisation of the pixels (none = pixels in [0, 1],
centre, zscore) and every listed embedding (raw pixels, PCA, learned), on the training and the test
split, and says which (if any) reproduces the note's range.  It also repeats the notes' script's
small-sample estimate of J_αγδ (200 samples for E_p, 50 per class) to show its noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import (
    BuildOptions,
    DataSpec,
    gaussianity,
    get_embedding,
    histogram_figure,
    learned_config_from,
    load_splits,
    shared_param,
)
from actionlab.expansion import j_tensor
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["JStatsConfig", "JStatsResult", "run", "NOTE_RANGE", "RANGE_TOLERANCE", "range_matches", "judge_range"]

NOTE_RANGE = (-0.1, 0.075)
#: relative tolerance at both ends of the range (the note gives one or two digits)
RANGE_TOLERANCE = 0.25


def range_matches(lo: float, hi: float, tol: float = RANGE_TOLERANCE) -> bool:
    """Whether [lo, hi] matches the note's [−0.1, 0.075] to a relative tolerance ``tol`` at both ends."""
    return abs(lo - NOTE_RANGE[0]) <= tol * abs(NOTE_RANGE[0]) and abs(hi - NOTE_RANGE[1]) <= tol * abs(NOTE_RANGE[1])


def _worst_end_error(lo: float, hi: float) -> float:
    return max(abs(lo - NOTE_RANGE[0]) / abs(NOTE_RANGE[0]), abs(hi - NOTE_RANGE[1]) / abs(NOTE_RANGE[1]))


def judge_range(ranges: dict[str, tuple[float, float]], *, quick: bool, tol: float = RANGE_TOLERANCE) -> tuple[str, str]:
    """"J ranges over −0.1 … 0.075" against the measured (min, max) of every tested preprocessing/embedding:
    holds when at least one matches both ends within ``tol`` (relative), does not hold when none does.  J is an
    exact function of the data (no seed enters raw / pca; a learned embedding's is one trained map), so the
    verdict is firm unless the preset is quick (subsampled data, small embeddings)."""
    if not ranges:
        return "not yet measured", "indicative"
    ok = any(range_matches(lo, hi, tol) for lo, hi in ranges.values())
    return ("holds" if ok else "does not hold"), ("indicative" if quick else "firm")


@dataclass
class JStatsConfig:
    """Range and distribution of J_αγ and J_αγδ for every standardisation and embedding."""

    dataset: str = shared_param("dataset", "fashion-mnist")
    standardizations: tuple[str, ...] = param(("none", "centre", "zscore"), "standardisations of the pixels to compare (none | centre | zscore); empty = none of them", choices=("none", "centre", "center", "zscore"), allow_empty=False)
    embeddings: tuple[str, ...] = param(("raw", "pca", "learned"), "embeddings z to compare (raw | pca | pool | learned, 001 §1.1)", choices=("raw", "pca", "pool", "learned"), allow_empty=False)
    dim: int = param(1024, "embedding dimension E for pca (capped at the pixel count) and learned (001 §1.1)", min=1)
    learned_standardizations: tuple[str, ...] = param(("none",), "standardisations for which a learned embedding is trained (each costs one training); empty = no learned embedding", choices=("none", "centre", "center", "zscore"))
    hidden: int = param(2048, "hidden width H of the TwoLayer a learned embedding is trained with (shared cache with theta-star)", min=1)
    activation: str = shared_param("activation", "silu")
    epochs: int = shared_param("epochs", 20)
    patience: int = shared_param("patience", 3)
    batch_size: int = shared_param("batch_size", 4096)
    lr: float = shared_param("lr", 1e-3)
    weight_decay: float = shared_param("weight_decay", 0.004)
    train_per_class: int | None = shared_param("train_per_class", None)
    test_per_class: int | None = shared_param("test_per_class", None)
    rank3: bool = param(True, "also measure J_αγδ (001 eq. (6), n = 2), M·E² elements")
    rank3_max_E: int = param(1024, "J_αγδ only for E ≤ this (it has M·E² elements)", min=1)
    rank3_splits: tuple[str, ...] = param(("test",), "splits on which J_αγδ is measured (train costs 6× test); empty = none", choices=("train", "test"))
    notes_estimator: bool = param(True, "also the notes' script estimate of J_αγδ (200 / 50 samples per class)")
    cache: bool = shared_param("cache", True)
    cache_dir: str | None = shared_param("cache_dir", None)
    PRESETS: ClassVar[dict] = {
        "quick": {"standardizations": ("none", "zscore"), "embeddings": ("raw", "learned"), "dim": 32, "hidden": 64,
                  "epochs": 5, "train_per_class": 150, "test_per_class": 60, "batch_size": 256, "rank3_max_E": 64},
        "default": {},
        "full": {"learned_standardizations": ("none", "centre", "zscore"), "epochs": 40},
    }


@short_repr
@dataclass
class JStatsResult:
    rows: list = field(default_factory=list)  # one per (split, standardize, embedding)
    reproducing: list = field(default_factory=list)  # labels of the rows whose J_αγ range matches the note
    reproducing_over_2M: list = field(default_factory=list)  # rows whose J_αγ/(2M) range matches the note
    notes_estimator: dict = field(default_factory=dict)


@register_experiment("j-stats", config=JStatsConfig, sources=("001", "000"), order=40,
                     help="range and distribution of J_αγ, J_αγδ on Fashion-MNIST per preprocessing (note 001 §2.3)")
def run(config: JStatsConfig, options: RunOptions) -> JStatsResult:
    from tqdm.auto import tqdm

    seed_everything(options.seed)
    run_folder = RunFolder(options, "j-stats", config, seed=options.seed,
                           data={"dataset": config.dataset, "train_per_class": config.train_per_class,
                                 "test_per_class": config.test_per_class})
    res = JStatsResult()
    hist2: dict[str, torch.Tensor] = {}
    hist3: dict[str, torch.Tensor] = {}
    jobs = [(s, e) for s in config.standardizations for e in config.embeddings
            if e != "learned" or s in config.learned_standardizations]
    for std, emb in tqdm(jobs, desc="j-stats", disable=None):
        dspec = DataSpec.from_config(config, options.seed, standardize=std)
        splits = load_splits(dspec)
        P = splits[0].z.shape[1]
        dim = None if emb == "raw" else min(config.dim, P) if emb == "pca" else config.dim
        tr, te, info, _ = get_embedding(dspec, emb, dim, learned_config_from(config),
                                        build=BuildOptions.of(config, options, progress=False), splits=splits)
        for split, ds in (("train", tr), ("test", te)):
            J1 = j_tensor(ds.z, ds.labels, 1, num_classes=ds.num_classes)
            row = {"split": split, "standardize": std, "embedding": emb, "E": int(ds.z.shape[1]),
                   "N": len(ds.z), "J2": gaussianity(J1, seed=options.seed),
                   "J2_range_matches_note": range_matches(float(J1.min()), float(J1.max())),
                   "J2_over_2M": {"min": float(J1.min()) / (2 * ds.num_classes), "max": float(J1.max()) / (2 * ds.num_classes)},
                   "embedding_info": {k: v for k, v in info.items() if k != "training"}}
            if config.rank3 and ds.z.shape[1] <= config.rank3_max_E and split in config.rank3_splits:
                J2 = j_tensor(ds.z, ds.labels, 2, num_classes=ds.num_classes)
                row["J3"] = gaussianity(J2, seed=options.seed)
                row["J3_sampled_for_tests"] = row["J3"]["test_sample"] < row["J3"]["count"]
                if split == "test":
                    hist3[f"J_αγδ {std}/{emb}"] = J2
            res.rows.append(row)
            if row["J2_range_matches_note"]:
                res.reproducing.append(f"{split}/{std}/{emb}")
            if split == "test":
                hist2[f"J_αγ {std}/{emb}"] = J1
        if (config.notes_estimator and config.rank3 and std == "none" and emb == config.embeddings[-1]
                and te.z.shape[1] <= config.rank3_max_E):
            res.notes_estimator = {"embedding": emb, "standardize": std, **_notes_estimator(te, options.seed)}
    run_folder.save_figure(histogram_figure(hist2, "J_αγ elements (test split)"), "j2_hist")
    if hist3:
        run_folder.save_figure(histogram_figure(hist3, "J_αγδ elements (test split)"), "j3_hist")
    summary = _summary(run_folder, res, config)
    run_folder.finish(res, summary)
    return res


def _notes_estimator(ds, seed: int) -> dict:
    """The notes' script: E_p from 200 random samples, E_{p|α} from 50 per class; compared with all."""
    g = torch.Generator().manual_seed(seed)
    full = j_tensor(ds.z, ds.labels, 2, num_classes=ds.num_classes).double()
    idx_p = torch.randperm(len(ds.z), generator=g)[:200]
    zz = ds.z.double()
    overall = zz[idx_p].T @ zz[idx_p] / len(idx_p)
    est = []
    for a in range(ds.num_classes):
        ia = (ds.labels == a).nonzero().flatten()
        ia = ia[torch.randperm(len(ia), generator=g)[:50]]
        est.append(overall - zz[ia].T @ zz[ia] / len(ia))
    est = torch.stack(est)
    err = est - full
    return {"N_p": int(len(idx_p)), "per_class": 50, "rel_rms_error": float(err.norm() / full.norm()),
            "corr_with_full": float(np.corrcoef(est.flatten().numpy(), full.flatten().numpy())[0, 1]),
            "range_small_sample": [float(est.min()), float(est.max())], "range_full": [float(full.min()), float(full.max())]}


def _summary(run_folder: RunFolder, res: JStatsResult, config: JStatsConfig) -> str:
    lines = ["| split | standardize | embedding | E | min J_αγ | max J_αγ | mean | skew | exc. kurtosis | frac < 0 | "
             "min J_αγδ | max J_αγδ | matches note |", "|---" * 13 + "|"]
    for r in res.rows:
        j2 = r["J2"]
        j3 = r.get("J3", {})
        lines.append(f"| {r['split']} | {r['standardize']} | {r['embedding']} | {r['E']} | {j2['min']:.4g} | {j2['max']:.4g} | "
                     f"{j2['mean']:.3g} | {j2['skew']:.3f} | {j2['excess_kurtosis']:.3f} | {j2['fraction_negative']:.3f} | "
                     f"{j3.get('min', float('nan')):.4g} | {j3.get('max', float('nan')):.4g} | {r['J2_range_matches_note']} |")
    quick = run_folder.preset == "quick"
    rows = {f"{r['split']}/{r['standardize']}/{r['embedding']}": r for r in res.rows}
    rule = (f"holds when at least one tested preprocessing/embedding gives min and max of J within "
            f"{RANGE_TOLERANCE:.0%} (relative) of the note's −0.1 and 0.075; does not hold when none does")
    for cid, claim, field_of in (
            ("001.j-range", "components of J_αγ on Fashion-MNIST vary from −0.1 to 0.075",
             lambda r: (r["J2"]["min"], r["J2"]["max"])),
            ("001.j-range-over-2M", "(reading) the range −0.1 … 0.075 is that of the weight J_αγ/(2M) of U·W in eq. (6)",
             lambda r: (r["J2_over_2M"]["min"], r["J2_over_2M"]["max"]))):
        ranges = {k: field_of(r) for k, r in rows.items()}
        verdict, strength = judge_range(ranges, quick=quick)
        match = [k for k, (lo, hi) in ranges.items() if range_matches(lo, hi)]
        if cid == "001.j-range":
            res.reproducing = match
        else:
            res.reproducing_over_2M = match
        closest = min(ranges, key=lambda k: _worst_end_error(*ranges[k]))
        evidence = {"preset": run_folder.preset, "seeds": {"number": 1, "list": [run_folder.seed]},
                    "sample_sizes": {k: r["N"] for k, r in rows.items()},
                    "widths": {k: r["E"] for k, r in rows.items()},
                    "statistic": "min and max over α, γ of J (exact class-conditional moments of the split)",
                    "closest": {"row": closest, "range": list(ranges[closest]),
                                "worst_end_relative_error": _worst_end_error(*ranges[closest])},
                    "threshold": RANGE_TOLERANCE, "decision_rule": rule}
        run_folder.add_claim(Claim(
            "001", claim, list(NOTE_RANGE), {k: [round(lo, 4), round(hi, 4)] for k, (lo, hi) in ranges.items()},
            verdict, ("reproduced by: " + ", ".join(match)) if match else
            f"no tested preprocessing/embedding gives this range (closest: {closest}, worst end off by "
            f"{_worst_end_error(*ranges[closest]):.0%}); the range of J scales with the scale of z, so a learned "
            "embedding's range depends on its training", id=cid, evidence=evidence, strength=strength))
    text = ("# j-stats — the range and distribution of J\n\n"
            "J_αγ = E_p[z_γ] − E_{p(z|α)}[z_γ], J_αγδ = E_p[z_γ z_δ] − E_{p(z|α)}[z_γ z_δ] (note 001 §2.3–2.4), "
            f"for each standardisation × embedding; learned embeddings (E={config.dim}) trained jointly with a "
            f"TwoLayer(H={config.hidden}) for standardisations {list(config.learned_standardizations)}. "
            "Normality tests on a random sample of at most 200,000 elements (`test_sample` in results.json).\n\n"
            + "\n".join(lines) + "\n")
    if res.notes_estimator:
        ne = res.notes_estimator
        text += (f"\nThe notes' script's estimate of J_αγδ (200 samples for E_p, 50 per class) against all samples: "
                 f"relative RMS error {ne['rel_rms_error']:.3f}, correlation {ne['corr_with_full']:.3f}; "
                 f"range {ne['range_small_sample']} vs {ne['range_full']}.\n")
    return text + "\n## Claims\n\n" + claims_table_md(run_folder.claims)
