"""``actionlab lr-bound``: the learning-rate bound η_c = 2(1+μ)/λ_max of 004 (Lemma 6) on real data.

Source 004 (Karakida, Akaho & Amari), supplement A.7 (A.51–A.53) and Fig. C.2.
For every data set (MNIST, Fashion-MNIST; CIFAR-10 where present), loss
(squared, cross-entropy: reported separately), heavy-ball momentum μ, width M
and learning rate η on a log grid spanning η_c, an MLP [M_0, M, …, M, C] (tanh
by default, W ~ N(0, σ_w²/M_{l−1}), b ~ N(0, σ_b²); the same initial network
for every η at a given M) is trained for one epoch of mini-batch SGD on
``n_train`` training images, and the training loss after the epoch is
recorded.

Training is :class:`actionlab.train.Trainer` (one epoch, plain heavy-ball SGD,
:class:`actionlab.train.OptimizerSpec` "sgd": v ← μ v + ∇E_batch,
θ ← θ − η v, dampening 0: A.51) with the loss E(θ) = (1/N) Σ_n ½‖f(x_n) − y_n‖²
with one-hot y for "squared" (the trainer's "mse"; its Hessian at a
zero-residual minimum is exactly the squared-loss FIM F = BBᵀ/T with T = N) and
E(θ) = −(1/N) Σ_n ln softmax(f(x_n))_{y_n} for "cross_entropy" (Gauss–Newton
part = the softmax Fisher). A cell diverges when a mini-batch or the final
full-data loss is non-finite or exceeds ``divergence_factor`` × the loss at
initialisation; the trainer then stops at once (the update is not applied).

λ_max at initialisation is measured with the dual matrix F* on ``T_fim``
training inputs (:func:`actionlab.fisher.empirical.fisher_statistics`, the
softmax Fisher for cross-entropy); the theory curve (squared loss only) is
:func:`actionlab.fisher.meanfield.predict` with the data's input statistics
(q̂⁰, q̂⁰_st) and T = n_train. A cell (M, η) is "trained" when the loss after
one epoch is finite and below the loss at initialisation; it is on the
correct side of the curve when trained ⇔ η < η_c(M).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from actionlab.config import RunOptions, seed_everything
from actionlab import activations as _act
from actionlab.experiments._registry import param, register_experiment
from actionlab.fisher import empirical as emp
from actionlab.fisher import meanfield as mf
from actionlab.models import MLP
from actionlab.runs import Claim, RunFolder, claims_table_md
from actionlab.train import OptimizerSpec, Trainer, TrainSpec

__all__ = ["LrBoundConfig", "LrBoundResult", "run", "train_one_epoch"]


@dataclass
class LrBoundConfig:
    """Training loss after one epoch over a (width, learning-rate) grid against η_c = 2(1+μ)/λ_max (004, A.7)."""

    datasets: tuple[str, ...] = param(("mnist", "fashion-mnist"), "data sets (a missing one, e.g. cifar10, is skipped "
                                      "with the reason)", allow_empty=False)
    losses: tuple[str, ...] = param(("squared", "cross_entropy"), "losses E(θ): squared ½‖f − e_m‖² (004, A.51) and/or "
                                    "cross_entropy, reported separately", choices=("squared", "cross_entropy"),
                                    allow_empty=False)
    momenta: tuple[float, ...] = param((0.0, 0.9), "heavy-ball momenta μ of SGD (A.51); the bound is η_c = 2(1+μ)/λ_max "
                                       "(A.53)", min=0.0, max=1.0, allow_empty=False)
    activation: str = param("tanh", "activation of the hidden layers", choices=tuple(_act.names()))
    L: int = param(3, "number of layers of the MLP [M_0, M, …, M, C] (L − 1 hidden layers of width M)", min=2)
    sigma_w2: float = param(3.0, "weight variance σ_w²: W ~ N(0, σ_w²/M_{l−1}) (004 §2)", min=0.0, exclusive_min=True)
    sigma_b2: float = param(0.64, "bias variance σ_b²: b ~ N(0, σ_b²) (004 §2)", min=0.0)
    widths: tuple[int, ...] = param((50, 100, 200, 400, 800), "hidden widths M of the grid", min=1, allow_empty=False)
    lr_min_factor: float = param(0.1, "lowest η of the grid as a multiple of the smallest measured η_c (μ = 0)",
                                 min=0.0, exclusive_min=True)
    lr_max_factor: float = param(10.0, "highest η of the grid as a multiple of the largest measured η_c (μ = 0)",
                                 min=0.0, exclusive_min=True)
    n_lrs: int = param(12, "learning rates η on the log grid", min=1)
    n_train: int = param(6000, "training images T (one epoch over them; also T of the mean-field curve)", min=1)
    batch_size: int = param(100, "SGD mini-batch size", min=1)
    T_fim: int = param(200, "inputs on which λ_max of the FIM is measured at initialisation (dual matrix F*)", min=1)
    standardize: str = param("none", "input standardisation of the data set", choices=("none", "centre", "center", "zscore"))
    divergence_factor: float = param(1e5, "a cell has diverged once a mini-batch or the final loss exceeds this multiple "
                                     "of its loss at initialisation (or is non-finite); training stops there",
                                     min=1.0, exclusive_min=True)
    num_threads: int = param(1, "torch intra-op threads while training (small nets: 1 is fastest, esp. on a busy "
                             "machine); 0 = leave as is", min=0)

    PRESETS: ClassVar[dict[str, dict]] = {
        "quick": {"datasets": ("mnist",), "momenta": (0.0, 0.5), "widths": (32, 64, 128), "n_lrs": 6, "n_train": 2000,
                  "batch_size": 50, "T_fim": 60, "lr_min_factor": 0.2, "lr_max_factor": 8.0},
        "default": {},
        "full": {"datasets": ("mnist", "fashion-mnist", "cifar10"), "widths": (50, 100, 200, 400, 800, 1600),
                 "n_lrs": 16, "n_train": 60000},
    }


@dataclass
class LrBoundResult:
    cells: list[dict] = field(default_factory=list)  # one per (data set, loss, μ, M, η)
    curves: list[dict] = field(default_factory=list)  # λ_max measured / theory per (data set, loss, M)
    fractions: list[dict] = field(default_factory=list)  # fraction of cells on the correct side
    skipped: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0


_TRAINER_LOSS = {"squared": "mse", "cross_entropy": "cross_entropy"}  # ½‖f − e_m‖² is the trainer's "mse"


def train_one_epoch(model, x: torch.Tensor, y: torch.Tensor, kind: str, optimizer: OptimizerSpec, batch_size: int,
                    seed: int, divergence_factor: float = 1e5) -> tuple[float, float]:
    """(E(θ) at initialisation, E(θ) after one epoch of ``optimizer``; inf on divergence), full-data losses of (x, y).

    The batches are a permutation of the rows drawn from ``torch.Generator().manual_seed(seed)``.
    """
    spec = TrainSpec(epochs=1, batch_size=batch_size, loss=_TRAINER_LOSS[kind], seed=seed, eval_batch_size=2000,
                     divergence_factor=divergence_factor, progress=False)
    hist = Trainer(model, (x, y), optimizer=optimizer, spec=spec).run()
    final = hist.train_loss[-1]
    return hist.train_loss[0], (float("inf") if hist.diverged or not math.isfinite(final) else final)


@register_experiment("lr-bound", config=LrBoundConfig, sources=("004",), order=51,
                     help="training loss after one epoch over widths × learning rates against η_c = 2(1+μ)/λ_max (004)")
def run(config: LrBoundConfig, options: RunOptions) -> LrBoundResult:

    t0 = time.perf_counter()
    seed_everything(options.seed)
    dtype, device = options.torch_dtype, options.torch_device
    rf = RunFolder(options, "lr-bound", config, seed=options.seed,
                   data={"datasets": list(config.datasets), "n_train": config.n_train, "standardize": config.standardize})
    res = LrBoundResult()
    threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        _run_grid(config, options, res, dtype, device)
    finally:
        torch.set_num_threads(threads)
    res.wall_time_s = time.perf_counter() - t0
    if res.cells:
        _figure(rf, res, config)
    _claims(rf, res, config)
    rf.finish(res, _summary(rf, res, config, options))
    return res


def _run_grid(config: LrBoundConfig, options: RunOptions, res: LrBoundResult, dtype, device) -> None:
    from actionlab.data import load

    for ds_name in config.datasets:
        try:
            ds = load(ds_name, "train", standardize=config.standardize, dtype=torch.float32)
        except Exception as err:  # a data set the user does not have (e.g. CIFAR-10): skip with the reason
            res.skipped.append(f"{ds_name}: {err}")
            continue
        gen = torch.Generator().manual_seed(options.seed)
        idx = torch.randperm(len(ds), generator=gen)[: config.n_train]
        x = ds.z[idx].reshape(len(idx), -1).to(dtype=dtype, device=device)
        y = ds.labels[idx].to(device)
        C, M0 = ds.num_classes, x.shape[1]
        q0, q0st = emp.input_statistics(x[: min(2000, len(x))].cpu())
        for kind in config.losses:
            lam, lam_th = {}, {}
            for M in config.widths:
                widths = [M0] + [M] * (config.L - 1) + [C]
                g = torch.Generator().manual_seed(options.seed * 7919 + M)
                net = MLP(widths, activation=config.activation, sigma_w2=config.sigma_w2, sigma_b2=config.sigma_b2,
                          generator=g, dtype=dtype, device=device)
                st = emp.fisher_statistics(net, x[: config.T_fim], outputs=kind)
                arch = mf.Architecture(config.activation, widths, M=M, sigma_w2=config.sigma_w2, sigma_b2=config.sigma_b2)
                th = mf.predict(arch, T=config.n_train, q_hat0=q0, q_hat0_st=q0st) if kind == "squared" else None
                th_fim = mf.predict(arch, T=config.T_fim, q_hat0=q0, q_hat0_st=q0st)
                lam[M] = st.lambda_max
                lam_th[M] = th.lambda_max if th else None
                res.curves.append({"dataset": ds_name, "loss": kind, "M": M, "lambda_max_measured": st.lambda_max,
                                   "lambda_max_theory": th.lambda_max if th else None,
                                   "lambda_max_theory_T_fim": th_fim.lambda_max if th else None,
                                   "eta_c_measured": 2.0 / st.lambda_max,
                                   "eta_c_theory": 2.0 / th.lambda_max if th else None, "T_fim": config.T_fim})
            etas = [2.0 / v for v in lam.values()]
            lrs = np.geomspace(config.lr_min_factor * min(etas), config.lr_max_factor * max(etas), config.n_lrs)
            for mu in config.momenta:
                jobs = [(M, float(lr)) for M in config.widths for lr in lrs]
                for M, lr in tqdm(jobs, desc=f"lr-bound {ds_name} {kind} μ={mu}", disable=None):
                    widths = [M0] + [M] * (config.L - 1) + [C]
                    g = torch.Generator().manual_seed(options.seed * 7919 + M)
                    net = MLP(widths, activation=config.activation, sigma_w2=config.sigma_w2,
                              sigma_b2=config.sigma_b2, generator=g, dtype=dtype, device=device)
                    init, final = train_one_epoch(net, x, y, kind, OptimizerSpec("sgd", lr=lr, momentum=mu),
                                                  config.batch_size, options.seed + 1, config.divergence_factor)
                    ec = 2.0 * (1.0 + mu) / lam[M]
                    ect = 2.0 * (1.0 + mu) / lam_th[M] if lam_th[M] else None
                    trained = math.isfinite(final) and final < init
                    res.cells.append({"dataset": ds_name, "loss": kind, "momentum": mu, "M": M, "lr": lr,
                                      "init_loss": init, "final_loss": final, "eta_c": ec, "trained": trained,
                                      "below_eta_c": lr < ec, "correct_side": trained == (lr < ec),
                                      "eta_c_theory": ect,
                                      "correct_side_theory": (trained == (lr < ect)) if ect else None})
                cells = [c for c in res.cells if c["dataset"] == ds_name and c["loss"] == kind and c["momentum"] == mu]
                res.fractions.append({"dataset": ds_name, "loss": kind, "momentum": mu, "cells": len(cells),
                                      "fraction_correct": float(np.mean([c["correct_side"] for c in cells])),
                                      "fraction_correct_theory": float(np.mean([c["correct_side_theory"] for c in cells]))
                                      if cells[0]["eta_c_theory"] else None,
                                      "trained_above_eta_c": int(sum(c["trained"] and not c["below_eta_c"] for c in cells)),
                                      "failed_below_eta_c": int(sum((not c["trained"]) and c["below_eta_c"] for c in cells)),
                                      **_onsets(cells)})


def _onsets(cells: list[dict]) -> dict:
    """Per width: largest η/η_c that still trained and smallest η/η_c that failed (medians over widths)."""
    last, first = [], []
    for M in sorted({c["M"] for c in cells}):
        cm = [c for c in cells if c["M"] == M]
        ok = [c["lr"] / c["eta_c"] for c in cm if c["trained"]]
        bad = [c["lr"] / c["eta_c"] for c in cm if not c["trained"]]
        last.append(max(ok) if ok else float("nan"))
        first.append(min(bad) if bad else float("nan"))
    return {"largest_trained_ratio_median": float(np.nanmedian(last)) if not all(np.isnan(last)) else float("nan"),
            "smallest_failed_ratio_median": float(np.nanmedian(first)) if not all(np.isnan(first)) else float("nan")}


def _figure(rf: RunFolder, res: LrBoundResult, config: LrBoundConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(c["dataset"], c["loss"], c["momentum"]) for c in res.cells})
    ncol = len(config.momenta)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.6 * ncol, 4.2 * nrow + 0.6), squeeze=False, layout="constrained")
    for ax, (ds, kind, mu) in zip(axes.ravel(), panels):
        cells = [c for c in res.cells if c["dataset"] == ds and c["loss"] == kind and c["momentum"] == mu]
        Ms = sorted({c["M"] for c in cells})
        lrs = sorted({c["lr"] for c in cells})
        Z = np.full((len(lrs), len(Ms)), np.nan)
        for c in cells:
            v = c["final_loss"]
            Z[lrs.index(c["lr"]), Ms.index(c["M"])] = v if math.isfinite(v) else np.nan
        from matplotlib.colors import LogNorm

        init_max = max(c["init_loss"] for c in cells)
        finite = Z[np.isfinite(Z)]
        Zm = np.ma.masked_invalid(np.minimum(Z, init_max * 10))
        cmap = plt.get_cmap("viridis").with_extremes(bad="lightcoral")  # diverged cells
        vmin = max(float(finite.min()), 1e-3) if finite.size else 1e-3
        mesh = ax.pcolormesh(_edges(Ms), _edges(lrs), Zm, shading="flat", cmap=cmap,
                             norm=LogNorm(vmin=vmin, vmax=max(init_max * 10, vmin * 10)))
        fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02, label="loss after 1 epoch (red: diverged)")
        cur = [r for r in res.curves if r["dataset"] == ds and r["loss"] == kind]
        ax.plot([r["M"] for r in cur], [2 * (1 + mu) / r["lambda_max_measured"] for r in cur], "w-o",
                label="2(1+μ)/λ_max measured at init")
        if cur and cur[0]["lambda_max_theory"]:
            ax.plot([r["M"] for r in cur], [2 * (1 + mu) / r["lambda_max_theory"] for r in cur], "r--",
                    label="2(1+μ)/λ_max mean-field")
        frac = next(f["fraction_correct"] for f in res.fractions if f["dataset"] == ds and f["loss"] == kind
                    and f["momentum"] == mu)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(Ms)
        ax.set_xticklabels([str(m) for m in Ms])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("width M")
        ax.set_ylabel("learning rate η")
        ax.set_title(f"{ds}, {kind}, μ = {mu}: {frac:.0%} on the correct side", fontsize=9)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    handles: dict = {}
    for ax in axes.ravel()[: len(panels)]:  # one legend for all panels, below them: it covers no data
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=8,
               facecolor="0.85")
    fig.suptitle("training loss after one epoch of SGD over width M × learning rate η, against η_c = 2(1+μ)/λ_max (004, A.53)",
                 fontsize=10)
    rf.save_figure(fig, "loss_map")


def _edges(v):
    v = np.asarray(v, float)
    lv = np.log(v)
    if len(v) == 1:
        return np.exp([lv[0] - 0.5, lv[0] + 0.5])
    mid = (lv[1:] + lv[:-1]) / 2
    return np.exp(np.concatenate([[lv[0] - (mid[0] - lv[0])], mid, [lv[-1] + (lv[-1] - mid[-1])]]))


def _claims(rf: RunFolder, res: LrBoundResult, config: LrBoundConfig) -> None:
    for f in res.fractions:
        rf.add_claim(Claim(
            "004", f"Lemma 6 (A.53): SGD trains only for η < 2(1+μ)/λ_max — {f['dataset']}, {f['loss']} loss, μ = {f['momentum']}",
            document_value="η_c = 2(1+μ)/λ_max separates trained from diverged cells",
            measured=f"{f['fraction_correct']:.1%} of {f['cells']} cells on the correct side "
                     f"({f['trained_above_eta_c']} trained above η_c, {f['failed_below_eta_c']} failed below); "
                     f"median over M of the largest η/η_c that trained {f['largest_trained_ratio_median']:.3g}, "
                     f"of the smallest that failed {f['smallest_failed_ratio_median']:.3g}"
                     + (f"; against the mean-field η_c: {f['fraction_correct_theory']:.1%}" if f["fraction_correct_theory"] is not None else ""),
            verdict="holds" if f["fraction_correct"] >= 0.85 else ("inconclusive" if f["fraction_correct"] >= 0.7 else "does not hold"),
            details=f"one epoch of SGD on {config.n_train} images, batch {config.batch_size}; λ_max measured at "
                    f"init on T = {config.T_fim} inputs; holds if ≥ 85 % of cells agree. The bound is local (near a "
                    f"minimum) and for full-batch GD: cells near the curve can go either way."))
    for ds, kind in sorted({(c["dataset"], c["loss"]) for c in res.cells}):
        mus = sorted({c["momentum"] for c in res.cells if c["dataset"] == ds and c["loss"] == kind})
        if 0.0 not in mus:
            continue
        lrs = sorted({c["lr"] for c in res.cells if c["dataset"] == ds and c["loss"] == kind})
        step = (lrs[-1] / lrs[0]) ** (1 / max(1, len(lrs) - 1))

        def first_fail(mu, M):
            bad = [c["lr"] for c in res.cells if c["dataset"] == ds and c["loss"] == kind and c["momentum"] == mu
                   and c["M"] == M and not c["trained"]]
            return min(bad) if bad else float("nan")

        for mu in [m for m in mus if m > 0]:
            ratios = [first_fail(mu, M) / first_fail(0.0, M) for M in config.widths]
            ratios = [r for r in ratios if np.isfinite(r)]
            if not ratios:
                continue
            med = float(np.median(ratios))
            near_pred = abs(math.log(med / (1 + mu))) <= math.log(step) * 1.01
            near_one = abs(math.log(med)) <= math.log(step) * 1.01
            rf.add_claim(Claim(
                "004", f"A.53: momentum μ = {mu} raises the divergence threshold by 1+μ — {ds}, {kind} loss",
                document_value=f"×{1 + mu:.2g}", measured=f"×{med:.3g} (median over M of the ratio of the smallest failing η)",
                verdict="holds" if near_pred and not near_one else ("inconclusive" if near_pred or near_one else "does not hold"),
                details=f"learning-rate grid step ×{step:.3g}: ratios within one step of the prediction count; "
                        f"inconclusive when also within one step of 1 (no effect). Per width: "
                        f"{[round(r, 3) for r in ratios]}"))
    sq = [r for r in res.curves if r["lambda_max_theory"]]
    if sq:
        rel = [(r["lambda_max_measured"] - r["lambda_max_theory_T_fim"]) / r["lambda_max_theory_T_fim"] for r in sq]
        rf.add_claim(Claim(
            "004", "Theorem 4 on real inputs: λ_max at init (squared loss, C = 10) against the mean-field value",
            document_value="λ_max = α((T−1)/T κ₂ + κ₁/T)M",
            measured={f"{r['dataset']} M={r['M']}": f"{r['lambda_max_measured']:.4g} vs {r['lambda_max_theory_T_fim']:.4g}"
                      for r in sq},
            verdict="holds" if max(abs(e) for e in rel) <= 0.25 else "does not hold",
            details=f"measured and predicted at T = {config.T_fim} inputs with the data's mean (q̂⁰, q̂⁰_st); "
                    f"largest |rel. err| {max(abs(e) for e in rel):.3f} (tolerance 0.25: M_0 = 784 is fixed, "
                    f"inputs are not Gaussian, and T_fim is finite)"))


def _summary(rf: RunFolder, res: LrBoundResult, config: LrBoundConfig, options: RunOptions) -> str:
    lines = ["# lr-bound\n", f"{config.activation} MLP, L = {config.L}, σ_w² = {config.sigma_w2}, σ_b² = {config.sigma_b2}; "
             f"one epoch of SGD (actionlab.train.Trainer, batch {config.batch_size}) on {config.n_train} training images; "
             f"wall time {res.wall_time_s:.1f} s.\n", "## λ_max at initialisation\n",
             "| data set | loss | M | λ_max measured (T_fim) | theory (T_fim) | theory (T = n_train) | η_c measured | η_c theory |",
             "|---|---|---|---|---|---|---|---|"]
    for r in res.curves:
        th = (f"{r['lambda_max_theory_T_fim']:.4g} | {r['lambda_max_theory']:.4g}" if r["lambda_max_theory"] else "— | —")
        eth = f"{r['eta_c_theory']:.4g}" if r["eta_c_theory"] else "—"
        lines.append(f"| {r['dataset']} | {r['loss']} | {r['M']} | {r['lambda_max_measured']:.4g} | {th} | "
                     f"{r['eta_c_measured']:.4g} | {eth} |")
    lines += ["\n## Fraction of (M, η) cells on the correct side of η_c = 2(1+μ)/λ_max\n",
              "| data set | loss | μ | cells | correct (measured η_c) | correct (mean-field η_c) | trained above η_c | failed below η_c | largest trained η/η_c | smallest failed η/η_c |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for f in res.fractions:
        ft = f"{f['fraction_correct_theory']:.1%}" if f["fraction_correct_theory"] is not None else "—"
        lines.append(f"| {f['dataset']} | {f['loss']} | {f['momentum']} | {f['cells']} | {f['fraction_correct']:.1%} | {ft} | "
                     f"{f['trained_above_eta_c']} | {f['failed_below_eta_c']} | {f['largest_trained_ratio_median']:.3g} | "
                     f"{f['smallest_failed_ratio_median']:.3g} |")
    if res.skipped:
        lines += ["\nSkipped: " + "; ".join(res.skipped)]
    lines += ["\nFigures: " + ", ".join(rf.figures), "\n## Claims\n", claims_table_md(rf.claims)]
    return "\n".join(lines)
