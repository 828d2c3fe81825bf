"""``actionlab early-stop``: the notes' §3 rule ∇S_T·∇S_E = 0 against the minimum of S_E.

Note 001 §3, eq. (7): with empirical training and evaluation distributions p_T, p_E, training by
gradient descent on S_T should stop where ∇S_E turns against ∇S_T,

    ∇S_T(θ) · ∇S_E(θ) = 0,

"especially important when the data size is quite limited".  For every training-set size of a grid
this experiment trains the classifier (for the ``learned`` embedding: the linear embedding and the
TwoLayer together, from scratch, on that training set only; otherwise a TwoLayer on the fixed
embedding) well past the optimum while :class:`actionlab.train.GradientAlignmentStop` records S_T,
S_E and ∇S_T·∇S_E over all trainable parameters (with ``stop=False``, so that training goes on and
the minimum of S_E can be found).  The rule's step — the first evaluation where the (smoothed) dot
product is ≤ 0 — is compared with the step of the smallest S_E: gap in steps and in test loss.
S_E is the test split (the notes' p_E).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from actionlab.config import RunOptions, seed_everything
from actionlab.embeddings import KINDS as EMBEDDING_KINDS
from actionlab.embeddings import EmbeddedClassifier
from actionlab import activations as _act
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import DataSpec, get_embedding, learned_config_from, load_splits
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["EarlyStopConfig", "EarlyStopResult", "run", "compare_rule", "first_nonpositive"]


def first_nonpositive(values, steps, smoothing: float = 0.0, min_step: int = 0):
    """The first step at which the EMA (d̄_k = s·d̄_{k−1} + (1−s)·d_k, d̄_0 = d_0) of ``values`` is ≤ 0; None if never."""
    ema = None
    for v, s in zip(values, steps):
        ema = v if ema is None else smoothing * ema + (1 - smoothing) * v
        if s >= min_step and ema <= 0:
            return int(s)
    return None


def compare_rule(steps, s_e, dots, smoothing: float, min_step: int = 0) -> dict:
    """Rule step (raw and smoothed), the step of min S_E and the gaps (steps, S_E(rule) − min S_E)."""
    steps = list(map(int, steps))
    i_min = int(np.argmin(s_e))
    out = {"min_step": steps[i_min], "min_S_E": float(s_e[i_min]), "final_step": steps[-1],
           "min_at_end": i_min == len(steps) - 1}
    for label, s in (("raw", 0.0), ("smoothed", smoothing)):
        st = first_nonpositive(dots, steps, s, min_step)
        if st is None:
            out[label] = {"rule_step": None, "S_E_at_rule": None, "gap_steps": None, "gap_loss": None}
        else:
            j = steps.index(st)
            out[label] = {"rule_step": st, "S_E_at_rule": float(s_e[j]), "gap_steps": st - steps[i_min],
                          "gap_loss": float(s_e[j] - s_e[i_min])}
    return out


@dataclass
class EarlyStopConfig:
    """∇S_T·∇S_E = 0 (notes §3) against the minimum of the test loss, over training-set sizes."""

    dataset: str = param("fashion-mnist", "data set whose train / test splits are p_T / p_E (notes §3)")
    standardize: str = param("none", "input standardisation of the data set", choices=("none", "centre", "center", "zscore"))
    embedding: str = param("learned", "embedding z: learned (a linear map trained jointly with the classifier, from "
                           "scratch on each training set), raw, pca or pool (fixed)",
                           choices=EMBEDDING_KINDS)
    dim: int = param(128, "embedding dimension E (ignored for raw)", min=1)
    hidden: int = param(256, "hidden width H of the TwoLayer classifier (notes 001 §1.1)", min=1)
    activation: str = param("silu", "activation σ of the TwoLayer", choices=tuple(_act.names()))
    sizes: tuple[int, ...] = param((300, 1000, 3000, 10000, 60000), "training-set sizes N_train (balanced, N/10 per "
                                   "class; ≥ 60000: the whole training split)", min=10, allow_empty=False)
    steps: int = param(2000, "optimizer steps per size (well past the optimum for the small sizes)", min=1)
    measurements: int = param(60, "∇S_T·∇S_E measurements per run (every steps/measurements steps; eq. (7))", min=1)
    smoothing: float = param(0.5, "EMA weight s of the dot product: d̄_k = s·d̄_{k−1} + (1 − s)·d_k (0: raw)",
                             min=0.0, max=0.99)
    max_samples: int | None = param(20000, "sets larger than this use a fixed random subset of this many samples to "
                                    "estimate S and ∇S (stated); None: full data", min=1)
    batch_size: int = param(128, "mini-batch size", min=1)
    optimizer: str = param("adamw", "optimizer; sgd: plain gradient steps, the setting of the notes' argument "
                           "(d S_E/dt = −∇S_E·∇S_T)", choices=("sgd", "adam", "adamw"))
    lr: float = param(1e-3, "learning rate η", min=0.0, exclusive_min=True)
    weight_decay: float = param(0.0, "the optimizer's weight decay (decoupled for adamw)", min=0.0)
    test_per_class: int | None = param(None, "S_E on this many test samples per class (None: the whole test split)", min=1)
    cache: bool = param(True, "cache the loaded splits and fixed embeddings on disk")
    cache_dir: str | None = param(None, "cache directory (None: the default cache)")
    PRESETS: ClassVar[dict] = {
        "quick": {"dim": 16, "hidden": 32, "sizes": (100, 300), "steps": 300, "measurements": 30,
                  "batch_size": 32, "lr": 1e-2, "test_per_class": 50},
        "default": {},
        "full": {"dim": 1024, "hidden": 2048, "steps": 6000, "measurements": 100, "max_samples": None},
    }


@dataclass
class EarlyStopResult:
    runs: list = field(default_factory=list)  # one per size: trace and comparison


@register_experiment("early-stop", config=EarlyStopConfig, sources=("001", "000"), order=45,
                     help="the §3 rule ∇S_T·∇S_E ≤ 0 against the minimum of S_E over training-set sizes (notes §3)")
def run(config: EarlyStopConfig, options: RunOptions) -> EarlyStopResult:
    from tqdm.auto import tqdm

    from actionlab import train as _train
    from actionlab.models import TwoLayer

    seed_everything(options.seed)
    run_folder = RunFolder(options, "early-stop", config, seed=options.seed,
                           data={"dataset": config.dataset, "standardize": config.standardize, "sizes": list(config.sizes)})
    res = EarlyStopResult()
    for n in tqdm(config.sizes, desc="early-stop", disable=None):
        per_class = None if n >= 60000 else max(1, n // 10)
        dspec = DataSpec.from_config(config, options.seed, train_per_class=per_class)
        tr, te = load_splits(dspec)
        gen = torch.Generator().manual_seed(options.seed)
        if config.embedding == "learned":
            proj = torch.nn.Linear(tr.z.shape[1], config.dim)
            bound = math.sqrt(6.0 / (tr.z.shape[1] + config.dim))
            with torch.no_grad():
                proj.weight.uniform_(-bound, bound, generator=gen)
                proj.bias.zero_()
            model = EmbeddedClassifier(proj, TwoLayer.glorot(tr.num_classes, config.hidden, config.dim,
                                                             activation=config.activation, generator=gen))
            ztr, zte, emb_info = tr.z, te.z, {"kind": "learned", "dim": config.dim, "trained": "jointly, in this run"}
        else:
            etr, ete, emb_info, _ = get_embedding(dspec, config.embedding, None if config.embedding == "raw" else config.dim,
                                                  learned_config_from(config), seed=options.seed, splits=(tr, te))
            model = TwoLayer.glorot(tr.num_classes, config.hidden, etr.z.shape[1], activation=config.activation, generator=gen)
            ztr, zte = etr.z, ete.z
        every = max(1, config.steps // config.measurements)
        rule = _train.GradientAlignmentStop((ztr, tr.labels), (zte, te.labels), every=every, smoothing=config.smoothing,
                                            max_samples=config.max_samples, stop=False, seed=options.seed)
        steps_per_epoch = math.ceil(len(ztr) / config.batch_size)
        spec = _train.TrainSpec(epochs=math.ceil(config.steps / steps_per_epoch), max_steps=config.steps,
                                batch_size=config.batch_size, seed=options.seed, eval_every=config.steps, progress=False)
        opt = _train.OptimizerSpec(config.optimizer, lr=config.lr, weight_decay=config.weight_decay)
        hist = _train.Trainer(model, (ztr, tr.labels), optimizer=opt, spec=spec, callbacks=(rule,),
                              device=options.device).run()
        tr_ = rule.as_dict()
        cmp = compare_rule(tr_["step"], tr_["S_E"], tr_["dot"], config.smoothing)
        res.runs.append({"n_train": len(ztr), "embedding": emb_info, "every": every, "estimated": rule.estimated,
                         "trace": tr_, "comparison": cmp, "wall_time_s": hist.wall_time_s,
                         "tracked_stop_step": rule.stop_step})
    _figure(run_folder, res)
    summary = _summary(run_folder, res, config)
    run_folder.finish(res, summary)
    return res


def _figure(run_folder: RunFolder, res: EarlyStopResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(res.runs)
    fig, axes = plt.subplots(2, n, figsize=(3.8 * n + 0.4, 6.2), squeeze=False, layout="constrained")
    for j, r in enumerate(res.runs):
        t, c = r["trace"], r["comparison"]
        ax = axes[0, j]
        ax.plot(t["step"], t["S_T"], label="S_T (training action)")
        ax.plot(t["step"], t["S_E"], label="S_E (test action)")
        ax.axvline(c["min_step"], color="g", lw=0.8, label="min S_E")
        if c["smoothed"]["rule_step"] is not None:
            ax.axvline(c["smoothed"]["rule_step"], color="r", ls="--", lw=0.8, label="rule ∇S_T·∇S_E ≤ 0 (smoothed)")
        ax.set_title(f"N_train = {r['n_train']}: actions", fontsize=9)
        ax.set(xlabel="optimizer step", ylabel="action (nats)")
        ax = axes[1, j]
        d = np.array(t["dot"])
        ax.plot(t["step"], np.sign(d) * np.log10(1 + np.abs(d) * 1e3), label="sign·log₁₀(1 + 10³|∇S_T·∇S_E|)")
        ax.plot(t["step"], np.array(t["cosine"]), label="cosine of ∇S_T, ∇S_E")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"N_train = {r['n_train']}: gradient alignment (eq. 7)", fontsize=9)
        ax.set(xlabel="optimizer step", ylabel="alignment")
        for a in axes[:, j]:
            a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))  # tick labels that do not collide
    for row, where in ((0, "outside upper center"), (1, "outside lower center")):  # legends beside the data, not on it
        handles: dict = {}
        for a in axes[row]:
            for h, lab in zip(*a.get_legend_handles_labels()):
                handles.setdefault(lab, h)
        fig.legend(list(handles.values()), list(handles), loc=where, ncol=len(handles), fontsize=8)
    run_folder.save_figure(fig, "early_stop")


def _summary(run_folder: RunFolder, res: EarlyStopResult, config: EarlyStopConfig) -> str:
    rows = ["| N_train | min S_E (step) | rule step raw | rule step smoothed | gap steps | S_E at rule − min S_E | min at end of budget |",
            "|---|---|---|---|---|---|---|"]
    gaps = []
    for r in res.runs:
        c = r["comparison"]
        s = c["smoothed"]
        raw = c["raw"]
        gl = "—" if s["gap_loss"] is None else f"{s['gap_loss']:.4f}"
        rows.append(f"| {r['n_train']} | {c['min_S_E']:.4f} ({c['min_step']}) | {raw['rule_step']} | {s['rule_step']} | "
                    f"{s['gap_steps']} | {gl} | {c['min_at_end']} |")
        if s["gap_loss"] is not None and not c["min_at_end"]:
            gaps.append((r["n_train"], s["gap_loss"], s["gap_steps"]))
    fired = [r for r in res.runs if r["comparison"]["smoothed"]["rule_step"] is not None]
    overfit = [r for r in res.runs if not r["comparison"]["min_at_end"]]
    close = [g for g in gaps if g[1] <= 0.02]
    if not overfit:
        verdict, meas = "inconclusive", "S_E never passed its minimum within the step budget"
    else:
        good = all(r["comparison"]["smoothed"]["rule_step"] is not None and r["comparison"]["smoothed"]["gap_loss"] <= 0.05
                   for r in overfit)
        verdict = "holds" if good else "does not hold"
        meas = "; ".join(f"N={r['n_train']}: rule {r['comparison']['smoothed']['rule_step']} vs min {r['comparison']['min_step']}"
                         for r in overfit)
    run_folder.add_claim(Claim(
        "001", "training early-stops at ∇S_T·∇S_E = 0, where S_E starts to increase (eq. 7)",
        "rule step = step of min S_E", meas, verdict,
        f"smoothing {config.smoothing} (EMA of the dot product); 'holds' if on every run whose S_E passed its minimum the "
        f"rule fired and S_E at the rule is within 0.05 nats of the minimum; rule fired on {len(fired)}/{len(res.runs)} runs, "
        f"within 0.02 nats on {len(close)}"))
    est = any(r["estimated"] for r in res.runs)
    head = (f"# early-stop — ∇S_T·∇S_E = 0 against the minimum of S_E\n\nData {config.dataset} (standardize="
            f"{config.standardize}), embedding **{config.embedding}** (E = {config.dim}"
            f"{', trained jointly with the classifier from scratch on each training set' if config.embedding == 'learned' else ''}), "
            f"TwoLayer H = {config.hidden}, {config.activation}; {config.optimizer} lr {config.lr}, batch {config.batch_size}, "
            f"{config.steps} steps per size; S_T, S_E, ∇S_T·∇S_E every {max(1, config.steps // config.measurements)} steps over all "
            f"trainable parameters, S_E on the test split"
            + (f" ({config.test_per_class} per class)" if config.test_per_class else "")
            + (f"; sets larger than {config.max_samples} samples use a fixed random subset of that many (a stated large-batch "
               f"estimate)" if est else "; full-data gradients") + ".\n\n")
    return head + "\n".join(rows) + "\n\n## Claims\n\n" + claims_table_md(run_folder.claims)
