"""``actionlab rngd-mnist``: RNGD against SGD and Adam on MNIST MLPs (003, section 4, figures 1–4).

Protocol (003 section 4 and papers.md): MNIST split 50,000 / 10,000 / 10,000
(``actionlab.data.load("mnist", ..., validation=10000)``), relu MLPs
784-80-80-80-10 and 784-100-100-100-10, with and without batch normalisation
after each hidden layer, Glorot-uniform weights and zero biases, mini-batch
50, L2 strength 10⁻³ on the weights (not the biases) added to the loss as
10⁻³·½Σ‖W‖² (TensorFlow's ``l2_loss``), for every optimizer alike. Each
optimizer has a small learning-rate grid; the learning rate is chosen by the
mean final validation accuracy. Adam has β = (0.9, 0.999), ε = 10⁻⁸; RNGD is
:class:`actionlab.optim.RNGD` with T = 100, ω = 0.995 (papers.md), in two
schedules: ``rngd``, the authors' (metric every step, dense first- and
last-layer metrics), and ``rngd-fast``, the same optimizer with the metric
updated every 10th step (decay compounded, ``metric_every``) and the shared
metrics block-diagonal over blocks of ≤ 100 inputs (``shared_block_size``),
an approximation that makes an epoch 2.6–3.7× cheaper on 784-80-80-80-10
(2.6× in the default preset's timing, 3.7× in ``benchmarks/bench_rngd.py``).

Learning-rate selection: with ``select_all_seeds`` (the ``full`` preset, the
paper's protocol) every learning rate is run with every seed; otherwise (quick
and default presets, to fit the budget) the grid is searched with the first
seed and the chosen learning rate is rerun with the remaining seeds.

Training is :class:`actionlab.train.Trainer` with the ready optimizer instance
(RNGD hooks into the model, so it is built here and handed over), the L2 term
(l2/2)Σ‖W‖² on the weight matrices only (``l2_on="weights"``) added to the loss
identically for all optimizers, ``drop_last`` (the last incomplete batch of an
epoch is dropped), an evaluation per epoch, and ``History.train_time_s`` as the
optimisation wall-clock per epoch (evaluation excluded). RNGD's forward hooks
see only the training forward passes (they record in training mode with
autograd on; evaluations run in ``eval()`` mode under ``no_grad``). A run whose
loss turns non-finite or grows beyond ``divergence_factor`` × its initial value
stops there and is marked diverged. Runs are
independent and are spread over ``workers`` processes (one thread each by
default): the per-epoch times are then measured with the other worker busy on
the second core — the same condition for every optimizer.

Default-preset budget: ≤ 30 minutes on 2 cores. Measured: 12 min 54 s and
13 min 52 s wall in two runs on an idle 2-core CPU machine (2 workers × 1
thread, 72 training runs, peak RSS 0.75 GB; docs/rngd.md). ``--full`` (40
seeds, 4 architectures, 20 epochs, every lr with every seed) takes many hours.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from actionlab._checks import ValueCheckError, check_choice
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["RngdMnistConfig", "RngdMnistResult", "run", "parse_architecture", "train_one"]

OPTIMIZERS = ("sgd", "adam", "rngd", "rngd-fast")
RNGD_VARIANTS = ("rngd", "rngd-fast")


@dataclass
class RngdMnistConfig:
    """RNGD vs SGD vs Adam on MNIST relu MLPs (003 section 4): learning curves, test accuracy, time per epoch."""

    architectures: tuple[str, ...] = param(
        ("784-80-80-80-10", "784-80-80-80-10+bn", "784-100-100-100-10", "784-100-100-100-10+bn"),
        "relu MLPs of 003 §4 as widths 784-…-10, '+bn' for batch normalisation after each hidden layer", allow_empty=False)
    optimizers: tuple[str, ...] = param(OPTIMIZERS, "optimizers compared: sgd, adam, rngd (003's schedule), rngd-fast "
                                        "(metric every k steps, block-diagonal shared metrics; not in 003)",
                                        choices=OPTIMIZERS, allow_empty=False)
    lr_sgd: tuple[float, ...] = param((0.1, 0.05), "SGD learning-rate grid η (chosen by validation accuracy)",
                                      min=0.0, exclusive_min=True, allow_empty=False)
    lr_adam: tuple[float, ...] = param((1e-3, 5e-4), "Adam learning-rate grid η", min=0.0, exclusive_min=True,
                                       allow_empty=False)
    lr_rngd: tuple[float, ...] = param((0.3, 0.1, 1e-2), "RNGD learning-rate grid η (003: usually ~1e-2 or 5e-3)",
                                       min=0.0, exclusive_min=True, allow_empty=False)
    lr_rngd_fast: tuple[float, ...] = param((0.3, 0.1, 1e-2), "rngd-fast learning-rate grid η", min=0.0,
                                            exclusive_min=True, allow_empty=False)
    epochs: int = param(8, "passes over the training set per run", min=1)
    seeds: int = param(3, "independent runs (seeds) per architecture, optimizer and chosen η", min=1)
    batch_size: int = param(50, "mini-batch size (003 §4: 50); the last incomplete batch of an epoch is dropped", min=1)
    l2: float = param(1e-3, "L2 strength: l2·½Σ‖W‖² on the weights (not biases) added to the loss (003 §4: 1e-3)",
                      min=0.0)
    train_size: int = param(50000, "training images used (of the 50,000 of the split; 0 = all)", min=0)
    validation_size: int = param(10000, "validation images used for choosing η (of 10,000; 0 = all)", min=0)
    test_size: int = param(10000, "test images used for the final accuracy (of 10,000; 0 = all)", min=0)
    rngd_decay: float = param(0.995, "RNGD: ω of the running metric average G ← ωG + (1 − ω)G_batch (papers.md: 0.995)",
                              min=0.0, max=1.0, exclusive_min=True)
    rngd_damping: float = param(0.01, "RNGD damping λ: ε = λ·tr(G)/d added to the metric before inversion",
                                min=0.0, exclusive_min=True)
    rngd_inverse_every: int = param(100, "RNGD: the metric is inverted every T steps (003: T = 100)", min=1)
    rngd_relu_omega: float = param(1.0, "RNGD: ω of the smoothed relu whose relative Fisher information stands for relu layers (003: ω = 1)",
                                   min=0.0, exclusive_min=True)
    rngd_metric_every: int = param(1, "rngd: the metric is updated every k steps (003: every step)", min=1)
    rngd_fast_metric_every: int = param(10, "rngd-fast: the metric is updated every k steps (decay compounded)", min=1)
    rngd_fast_shared_block_size: int = param(100, "rngd-fast: shared metrics block-diagonal over blocks of ≤ this "
                                             "many inputs (0 = dense)", min=0)
    divergence_factor: float = param(1e3, "a run stops as diverged once a loss exceeds this multiple of its initial "
                                     "training loss (or turns non-finite)", min=1.0, exclusive_min=True)
    select_all_seeds: bool = param(False, "choose η with every seed (003's protocol, the full preset) instead of the "
                                   "first seed only")
    workers: int = param(2, "worker processes running independent training runs", min=1)
    threads: int = param(1, "torch threads per worker (0 = leave torch's setting)", min=0)
    PRESETS: ClassVar[dict] = {
        "quick": {
            "architectures": ("784-80-80-80-10",), "lr_sgd": (0.1,), "lr_adam": (1e-3,), "lr_rngd": (0.3,), "lr_rngd_fast": (0.3,),
            "epochs": 2, "seeds": 2, "train_size": 4000, "validation_size": 2000, "test_size": 2000,
            "rngd_inverse_every": 20, "workers": 1,
        },
        "default": {},
        "full": {"epochs": 20, "seeds": 40, "select_all_seeds": True,
                 "lr_sgd": (0.1, 0.05, 0.01), "lr_adam": (5e-3, 1e-3, 5e-4), "lr_rngd": (0.3, 0.1, 5e-2, 1e-2, 5e-3),
                 "lr_rngd_fast": (0.3, 0.1, 5e-2, 1e-2, 5e-3)},
    }


@dataclass
class RunRecord:
    """One training run: curves per epoch (index 0 = before training)."""

    architecture: str
    optimizer: str
    lr: float
    seed: int
    train_loss: list[float] = field(default_factory=list)  # cross-entropy on the whole training set
    train_error: list[float] = field(default_factory=list)  # misclassification rate on the training set
    val_accuracy: list[float] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)  # optimisation wall-clock of each epoch
    test_accuracy: float = float("nan")
    diverged: bool = False


@dataclass
class RngdMnistResult:
    runs: list[RunRecord]
    selected_lr: dict  # arch -> optimizer -> lr
    table: list[dict]  # arch, optimizer, lr, test acc mean/std, val acc, time per epoch
    per_epoch: dict  # arch -> {faster_than: {opt: bool}, ...}
    per_second: dict
    wall_time_s: float


def parse_architecture(spec: str) -> tuple[list[int], bool]:
    """'784-80-80-80-10+bn' → ([784, 80, 80, 80, 10], True)."""
    s = spec.strip()
    bn = s.endswith("+bn")
    if bn:
        s = s[:-3]
    try:
        widths = [int(w) for w in s.split("-")]
    except ValueError:
        raise ValueCheckError(f"architecture {spec!r} must look like 784-80-80-80-10 (optionally +bn)") from None
    if len(widths) < 2 or widths[0] != 784 or widths[-1] != 10:
        raise ValueCheckError(f"architecture {spec!r} must start at 784 (MNIST pixels) and end at 10 classes")
    return widths, bn


def _make_model(arch: str, seed: int, dtype, device):
    from actionlab.models import MLP

    widths, bn = parse_architecture(arch)
    model = MLP(widths, activation="relu", batchnorm=bn, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # Glorot uniform weights, zero biases (003 section 4)
        for lin in model.linears:
            bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
            lin.weight.copy_((torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            if lin.bias is not None:
                lin.bias.zero_()
    return model


def _protocol_optimizer(name: str, model: nn.Module, lr: float, cfg: RngdMnistConfig) -> torch.optim.Optimizer:
    """The optimizer ``name`` of 003 section 4's protocol over ``model`` (SGD, Adam β = (0.9, 0.999), ε = 10⁻⁸, or RNGD)."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    from actionlab.optim import RNGD

    if name == "rngd-fast":
        schedule = {"metric_every": cfg.rngd_fast_metric_every, "shared_block_size": cfg.rngd_fast_shared_block_size or None}
    else:
        schedule = {"metric_every": cfg.rngd_metric_every}
    return RNGD(model, lr=lr, decay=cfg.rngd_decay, damping=cfg.rngd_damping, inverse_every=cfg.rngd_inverse_every,
                relu_omega=cfg.rngd_relu_omega, **schedule)


_DATA_CACHE: dict = {}


def _data(cfg: RngdMnistConfig, dtype, device):
    key = (cfg.train_size, cfg.validation_size, cfg.test_size, str(dtype), str(device))
    if key not in _DATA_CACHE:
        from actionlab import data

        tr = data.load("mnist", "train", validation=10000, dtype=dtype)
        va = data.load("mnist", "validation", validation=10000, dtype=dtype)
        te = data.load("mnist", "test", dtype=dtype)

        def sub(ds, n, seed):
            n = len(ds) if n in (0, None) or n >= len(ds) else n
            idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
            return ds.z[idx].to(device), ds.labels[idx].to(device)

        _DATA_CACHE.clear()
        _DATA_CACHE[key] = (sub(tr, cfg.train_size, 11), sub(va, cfg.validation_size, 12), sub(te, cfg.test_size, 13))
    return _DATA_CACHE[key]


def train_one(cfg: RngdMnistConfig, arch: str, opt_name: str, lr: float, seed: int,
              dtype=torch.float32, device="cpu") -> RunRecord:
    """Train one model with :class:`actionlab.train.Trainer`; curves after every epoch (index 0: at initialisation)."""
    from actionlab.train import Trainer, TrainSpec, evaluate

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    (ztr, ytr), (zva, yva), (zte, yte) = _data(cfg, dtype, device)
    seed_everything(seed)
    model = _make_model(arch, seed, dtype, device)
    opt = _protocol_optimizer(opt_name, model, lr, cfg)
    spec = TrainSpec(epochs=cfg.epochs, batch_size=cfg.batch_size, loss="cross_entropy", l2=cfg.l2, l2_on="weights",
                     seed=10_000 + seed, drop_last=True, eval_batch_size=5000, divergence_factor=cfg.divergence_factor,
                     progress=False)
    try:
        hist = Trainer(model, (ztr, ytr), eval=(zva, yva), optimizer=opt, spec=spec).run()
    finally:
        if hasattr(opt, "remove_hooks"):
            opt.remove_hooks()
    rec = RunRecord(arch, opt_name, lr, seed, diverged=hist.diverged)
    rec.epoch_time_s = [b - a for a, b in zip(hist.train_time_s, hist.train_time_s[1:])]
    whole = [k for k, e in enumerate(hist.epoch) if float(e).is_integer()]  # evaluations at whole epochs
    rec.train_loss = [hist.train_loss[k] for k in whole]
    rec.train_error = [1.0 - hist.train_accuracy[k] for k in whole]
    rec.val_accuracy = [hist.eval_accuracy[k] for k in whole]
    if rec.diverged:  # the epochs after the divergence: no loss, accuracy counted as 0
        rec.test_accuracy = 0.0
        while len(rec.val_accuracy) < cfg.epochs + 1:
            rec.train_loss.append(float("nan"))
            rec.train_error.append(float("nan"))
            rec.val_accuracy.append(0.0)
    else:
        rec.test_accuracy = evaluate(model, zte, yte, batch_size=5000)[1]
    return rec


def _job(args):
    cfg, arch, opt_name, lr, seed, dtype, device = args
    return train_one(cfg, arch, opt_name, lr, seed, dtype, device)


def _run_jobs(jobs: list, cfg: RngdMnistConfig, desc: str) -> list[RunRecord]:
    out: list[RunRecord] = []
    if cfg.workers <= 1 or len(jobs) <= 1:
        for j in tqdm(jobs, desc=desc, disable=None):
            out.append(_job(j))
        return out
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=get_context("spawn")) as ex:
        for rec in tqdm(ex.map(_job, jobs), total=len(jobs), desc=desc, disable=None):
            out.append(rec)
    return out


def _lrs(cfg: RngdMnistConfig, opt: str) -> tuple[float, ...]:
    return {"sgd": cfg.lr_sgd, "adam": cfg.lr_adam, "rngd": cfg.lr_rngd, "rngd-fast": cfg.lr_rngd_fast}[opt]


def _mean_final_val(runs: list[RunRecord]) -> float:
    return float(np.mean([r.val_accuracy[-1] for r in runs]))


def _curve_stats(runs: list[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.array([getattr(r, key) for r in runs], dtype=float)
    return np.nanmean(a, 0), np.nanmin(a, 0), np.nanmax(a, 0)


def _fraction_better(a: np.ndarray, b: np.ndarray, higher_is_better: bool) -> float:
    a, b = a[1:], b[1:]  # epochs 1..E
    better = a > b if higher_is_better else a < b
    return float(np.mean(better))


def _acc_at_time(runs: list[RunRecord], t: float) -> float:
    """Mean over seeds of the best validation accuracy among the epochs finished by wall-clock t."""
    vals = []
    for r in runs:
        cum = np.cumsum(r.epoch_time_s)
        done = [r.val_accuracy[k + 1] for k in range(len(cum)) if cum[k] <= t * (1 + 1e-9)]
        vals.append(max(done) if done else r.val_accuracy[0])
    return float(np.mean(vals))


_COLORS = {"sgd": "tab:blue", "adam": "tab:orange", "rngd": "tab:red", "rngd-fast": "tab:purple"}


def _architecture_stats(cfg: RngdMnistConfig, a: str, chosen: dict, lrs: dict, table: list) -> dict:
    """Per optimizer: seed mean / min / max curves and the mean time per epoch of the chosen-η runs; appends table rows."""
    stats = {}
    for o in cfg.optimizers:
        rs = chosen[o]
        tl, va = _curve_stats(rs, "train_loss"), _curve_stats(rs, "val_accuracy")
        te = np.array([r.test_accuracy for r in rs])
        ep_t = float(np.mean([np.mean(r.epoch_time_s) for r in rs]))
        stats[o] = {"train_loss": tl[0], "val": va[0], "tl": tl, "va": va, "time": ep_t, "runs": rs}
        table.append({
            "architecture": a, "optimizer": o, "lr": lrs[o], "seeds": len(rs),
            "test_accuracy_mean": float(te.mean()), "test_accuracy_std": float(te.std(ddof=1)) if len(te) > 1 else 0.0,
            "val_accuracy_mean": float(va[0][-1]), "train_loss_final": float(tl[0][-1]),
            "epoch_time_s": ep_t, "diverged": int(sum(r.diverged for r in rs)),
        })
    return stats


def _architecture_figure(cfg: RngdMnistConfig, a: str, stats: dict, lrs: dict, folder: RunFolder) -> None:
    """Figures 1–4 of 003 for one architecture: loss and validation accuracy per epoch (top) and per second (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), layout="constrained")
    for o in cfg.optimizers:
        tl, va, rs, color = stats[o]["tl"], stats[o]["va"], stats[o]["runs"], _COLORS[o]
        ep = np.arange(len(tl[0]))
        for ax, (m, lo, hi), key in ((axes[0, 0], tl, "train_loss"), (axes[0, 1], va, "val_accuracy")):
            ax.plot(ep, m, color=color, label=f"{o} (lr {lrs[o]:g})")
            ax.fill_between(ep, lo, hi, color=color, alpha=0.2)
            for r in rs:
                ax.plot(ep, getattr(r, key), color=color, lw=0.4, alpha=0.5)
        tt = np.concatenate([[0.0], np.cumsum([np.nanmean([r.epoch_time_s[k] if k < len(r.epoch_time_s) else np.nan
                                                           for r in rs])
                                              for k in range(len(tl[0]) - 1)])])  # a diverged run stops early
        for ax, (m, lo, hi) in ((axes[1, 0], tl), (axes[1, 1], va)):
            ax.plot(tt, m, color=color, marker="o", ms=3)
            ax.fill_between(tt, lo, hi, color=color, alpha=0.2)
    labels = (("epoch", "training loss (cross-entropy)", "training loss per epoch"),
              ("epoch", "validation accuracy", "validation accuracy per epoch"),
              ("optimisation wall-clock (s)", "training loss (cross-entropy)", "training loss per second of optimisation"),
              ("optimisation wall-clock (s)", "validation accuracy", "validation accuracy per second of optimisation"))
    for ax, (xl, yl, title) in zip(axes.ravel(), labels):
        ax.set(xlabel=xl, ylabel=yl)
        ax.set_title(title, fontsize=10)
    axes[0, 0].set_yscale("log")
    axes[1, 0].set_yscale("log")
    lo_acc = min(float(np.nanmin(stats[o]["val"][1:])) for o in cfg.optimizers)
    for ax in (axes[0, 1], axes[1, 1]):
        ax.set_ylim(max(lo_acc - 0.01, 0.0), 1.0)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names))  # below the panels: covers no data
    fig.suptitle(f"MNIST {a} relu, batch {cfg.batch_size}, L2 {cfg.l2:g}: mean (line), min–max over {cfg.seeds} seeds "
                 "(band), single seeds (thin)")
    folder.save_figure(fig, "curves_" + a.replace("+", "_"))


def _comparisons(cfg: RngdMnistConfig, a: str, stats: dict, per_epoch: dict, per_second: dict) -> None:
    """RNGD variants against the baselines: per epoch (fraction of epochs better) and per second (accuracy at equal time)."""
    variants = [o for o in cfg.optimizers if o in RNGD_VARIANTS]
    baselines = [o for o in cfg.optimizers if o not in RNGD_VARIANTS]
    if not (variants and baselines):
        return
    per_epoch[a] = {
        v: {o: {"val_better_fraction": _fraction_better(stats[v]["val"], stats[o]["val"], True),
                "loss_better_fraction": _fraction_better(stats[v]["train_loss"], stats[o]["train_loss"], False)}
            for o in baselines}
        for v in variants
    }
    t_star = min(float(np.mean([sum(x.epoch_time_s) for x in stats[o]["runs"]])) for o in cfg.optimizers)
    per_second[a] = {"t_budget_s": t_star, **{o: _acc_at_time(stats[o]["runs"], t_star) for o in cfg.optimizers},
                     "time_ratio": {v: {o: stats[v]["time"] / stats[o]["time"] for o in baselines} for v in variants}}


@register_experiment("rngd-mnist", config=RngdMnistConfig, help="RNGD against SGD and Adam on MNIST MLPs (003 section 4, figures 1-4)", sources=("003",), order=60)
def run(config: RngdMnistConfig, options: RunOptions) -> RngdMnistResult:
    cfg = config
    for o in cfg.optimizers:
        check_choice(o, OPTIMIZERS, "optimizer")
    for a in cfg.architectures:
        parse_architecture(a)
    if cfg.seeds < 1 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueCheckError("seeds, epochs and batch_size must be ≥ 1")
    t_start = time.perf_counter()
    dtype, device = options.torch_dtype, options.torch_device
    folder = RunFolder(options, "rngd-mnist", config=cfg, seed=options.seed,
                       data={"name": "mnist", "train": cfg.train_size, "validation": cfg.validation_size, "test": cfg.test_size})
    seeds = [options.seed + k for k in range(cfg.seeds)]
    _data(cfg, dtype, device)  # fail early on missing data
    # stage 1: the lr grid (all seeds with select_all_seeds, else the first seed)
    grid_seeds = seeds if cfg.select_all_seeds else seeds[:1]
    jobs = [(cfg, a, o, lr, s, dtype, device) for a in cfg.architectures for o in cfg.optimizers for lr in _lrs(cfg, o) for s in grid_seeds]
    runs = _run_jobs(jobs, cfg, "rngd-mnist grid")
    selected: dict = {}
    for a in cfg.architectures:
        selected[a] = {}
        for o in cfg.optimizers:
            scores = {lr: _mean_final_val([r for r in runs if r.architecture == a and r.optimizer == o and r.lr == lr]) for lr in _lrs(cfg, o)}
            selected[a][o] = max(scores, key=lambda lr: (scores[lr], -lr))
    # stage 2: remaining seeds for the chosen learning rates
    if not cfg.select_all_seeds and len(seeds) > 1:
        jobs = [(cfg, a, o, selected[a][o], s, dtype, device) for a in cfg.architectures for o in cfg.optimizers for s in seeds[1:]]
        runs += _run_jobs(jobs, cfg, "rngd-mnist seeds")

    table, per_epoch, per_second = [], {}, {}
    for a in cfg.architectures:
        chosen = {o: [r for r in runs if r.architecture == a and r.optimizer == o and r.lr == selected[a][o]]
                  for o in cfg.optimizers}
        stats = _architecture_stats(cfg, a, chosen, selected[a], table)
        _architecture_figure(cfg, a, stats, selected[a], folder)
        _comparisons(cfg, a, stats, per_epoch, per_second)

    result = RngdMnistResult(runs, selected, table, per_epoch, per_second, time.perf_counter() - t_start)
    for c in _claims(cfg, result):
        folder.add_claim(c)
    summary = _summary(cfg, result, folder)
    folder.finish(result, summary)
    return result


def _three_way(n_yes: int, n: int) -> str:
    return "holds" if n_yes == n else ("does not hold" if n_yes == 0 else "inconclusive")


GOAL_ARCHITECTURE = "784-80-80-80-10"  # the speed goal: RNGD epoch ≤ 2× Adam's on this network

_VARIANT_WORDS = {"rngd": "RNGD (the authors' schedule)", "rngd-fast": "rngd-fast (actionlab's cheaper schedule, not in 003)"}


def _claims(cfg: RngdMnistConfig, res: RngdMnistResult) -> list[Claim]:
    claims: list[Claim] = []
    variants = [v for v in RNGD_VARIANTS if v in cfg.optimizers]
    baselines = [o for o in cfg.optimizers if o not in RNGD_VARIANTS]
    if not variants or not baselines:
        return claims
    for v in variants:
        faster = {a: all(x["val_better_fraction"] >= 0.75 and x["loss_better_fraction"] >= 0.75 for x in d[v].values())
                  for a, d in res.per_epoch.items()}
        n_yes = sum(faster.values())
        claims.append(Claim(
            "003", f"{_VARIANT_WORDS[v]} learns faster per epoch than {' and '.join(baselines)} "
                   "(figures 1–4: lower training error and higher validation accuracy per epoch)",
            "RNGD's curves lie below (training error) / above (validation accuracy) the others'",
            {a: {o: {k: round(x, 2) for k, x in y.items()} for o, y in d[v].items()} for a, d in res.per_epoch.items()},
            _three_way(n_yes, len(faster)),
            f"fraction of epochs 1..{cfg.epochs} at which the seed-mean of {v} beats each optimizer's (chosen lr each); 'holds' for "
            f"an architecture when ≥ 0.75 for both curves against every optimizer; {n_yes}/{len(faster)} architectures; {cfg.seeds} seeds",
        ))
    for v in variants:
        wins = {a: all(d[v] >= d[o] for o in baselines) for a, d in res.per_second.items()}
        claims.append(Claim(
            "003", f"{_VARIANT_WORDS[v]} is worth its cost per second of wall-clock (not claimed by 003; asked by the issue)",
            None,
            {a: {"t_budget_s": round(d["t_budget_s"], 2), **{o: round(d[o], 4) for o in cfg.optimizers},
                 "time_ratio": {o: round(x, 2) for o, x in d["time_ratio"][v].items()}} for a, d in res.per_second.items()},
            _three_way(sum(wins.values()), len(wins)),
            "best validation accuracy reached within the total optimisation time of the fastest optimizer (t_budget_s); "
            f"time_ratio = {v}'s time per epoch / the other's; {cfg.workers} worker(s) × {cfg.threads} thread(s)",
        ))
    if "adam" in baselines:
        for v in variants:
            ratios = {a: d["time_ratio"][v]["adam"] for a, d in res.per_second.items()}
            others = [a for a in ratios if a != GOAL_ARCHITECTURE]
            if GOAL_ARCHITECTURE in ratios:
                verdict = "holds" if ratios[GOAL_ARCHITECTURE] <= 2.0 else "does not hold"
            else:
                verdict = "inconclusive"
            claims.append(Claim(
                "003", f"{_VARIANT_WORDS[v]}: an epoch of {GOAL_ARCHITECTURE} takes at most 2× Adam's (the issue's goal)", "≤ 2",
                {a: round(x, 2) for a, x in ratios.items()},
                verdict,
                f"judged on {GOAL_ARCHITECTURE} only ({'run' if GOAL_ARCHITECTURE in ratios else 'not run: inconclusive'}); the other "
                f"architectures are shown, {sum(ratios[a] <= 2.0 for a in others)}/{len(others)} of them ≤ 2; optimisation "
                f"wall-clock per epoch (evaluation excluded), mean over the chosen-lr runs; {cfg.workers} worker(s) × "
                f"{cfg.threads} thread(s), the same for every optimizer",
            ))
    if "rngd" in variants:
        rngd_lrs = {a: res.selected_lr[a]["rngd"] for a in res.selected_lr}
        in_range = all(lr in (1e-2, 5e-3) for lr in rngd_lrs.values())
        grid = set(cfg.lr_rngd)
        claims.append(Claim(
            "003", "a good learning rate for RNGD is usually around 10⁻² or 5·10⁻³", "1e-2 or 5e-3", rngd_lrs,
            ("holds" if in_range else "does not hold") if (grid - {1e-2, 5e-3}) and (grid & {1e-2, 5e-3}) else "inconclusive",
            f"chosen by validation accuracy from the grid {sorted(grid)} (inconclusive unless the grid holds 1e-2 or 5e-3 and other values)",
        ))
    gaps = [abs(t["test_accuracy_mean"] - t["val_accuracy_mean"]) for t in res.table]
    claims.append(Claim(
        "003", "the testing accuracy is close to the validation accuracy", "close", {"max |test − val|": round(max(gaps), 4)},
        "holds" if max(gaps) < 0.01 else "does not hold",
        "seed means of the final test and validation accuracy per architecture and optimizer; 'close' taken as < 1 percentage point",
    ))
    return claims


def _summary(cfg: RngdMnistConfig, res: RngdMnistResult, folder: RunFolder) -> str:
    lines = [
        "# rngd-mnist: RNGD vs SGD vs Adam on MNIST relu MLPs (003 section 4)",
        "",
        f"Train / validation / test = {cfg.train_size} / {cfg.validation_size} / {cfg.test_size}, batch {cfg.batch_size}, "
        f"L2 {cfg.l2:g} (on weights, in the loss), {cfg.epochs} epochs, {cfg.seeds} seeds; learning rate chosen by validation "
        f"accuracy ({'every lr with every seed' if cfg.select_all_seeds else 'grid on the first seed, then the other seeds'}); "
        f"RNGD T = {cfg.rngd_inverse_every}, ω = {cfg.rngd_decay}, damping λ = {cfg.rngd_damping} (ε = λ·tr(G)/d), "
        f"relu ω = {cfg.rngd_relu_omega}, metric every {cfg.rngd_metric_every} step(s)"
        + (f"; rngd-fast: metric every {cfg.rngd_fast_metric_every} steps, shared metrics in blocks of ≤ "
           f"{cfg.rngd_fast_shared_block_size} inputs" if "rngd-fast" in cfg.optimizers else "")
        + f". Total wall time {res.wall_time_s:.0f} s with {cfg.workers} worker process(es) × {cfg.threads} thread(s) "
        f"on {os.cpu_count()} cores" + ("; the per-epoch times are taken with the workers running side by side." if cfg.workers > 1 else "."),
        "",
        "## Final test accuracy and time per epoch",
        "",
        "| architecture | optimizer | lr | test accuracy (mean ± sd) | validation accuracy | final training loss | s / epoch | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in res.table:
        lines.append(
            f"| {t['architecture']} | {t['optimizer']} | {t['lr']:g} | {100 * t['test_accuracy_mean']:.2f} ± {100 * t['test_accuracy_std']:.2f} % | "
            f"{100 * t['val_accuracy_mean']:.2f} % | {t['train_loss_final']:.4f} | {t['epoch_time_s']:.2f} | {t['diverged']} |"
        )
    lines += ["", "## Does RNGD learn faster here?", ""]
    for a in cfg.architectures:
        if a not in res.per_epoch:
            continue
        ps = res.per_second[a]
        sec = ", ".join(f"{o} {100 * ps[o]:.2f}%" for o in cfg.optimizers)
        best = max(cfg.optimizers, key=lambda o: ps[o])
        lines.append(f"- **{a}** — within {ps['t_budget_s']:.1f} s of optimisation (the fastest optimizer's whole run) the best "
                     f"validation accuracy is {sec} → **{best}** is ahead at equal wall-clock.")
        for v, pe in res.per_epoch[a].items():
            ep_words = ", ".join(
                f"than {o}: validation accuracy higher at {100 * x['val_better_fraction']:.0f}% and training loss lower at "
                f"{100 * x['loss_better_fraction']:.0f}% of the epochs" for o, x in pe.items())
            ratio = ", ".join(f"{r:.1f}× {o}'s" for o, r in ps["time_ratio"][v].items())
            lines.append(f"  - {v}: per epoch, {ep_words}; an epoch takes {ratio}.")
    lines += ["", "## Claims", "", claims_table_md(folder.claims), "", "Figures: " + ", ".join(f"`{f}`" for f in folder.figures),
              "(top: per epoch, bottom: per second of optimisation; line = seed mean, band = min–max over seeds, thin lines = single seeds)."]
    return "\n".join(lines) + "\n"
