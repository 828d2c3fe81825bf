"""``actionlab rngd-mnist``: RNGD against SGD and Adam on MNIST MLPs, as the authors ran it (003 §4, figures 1–4).

Protocol (003 section 4 and papers.md): MNIST split 50,000 / 10,000 / 10,000
(``actionlab.data.load("mnist", ..., validation=10000)``), relu MLPs
784-80-80-80-10 and 784-100-100-100-10, with and without batch normalisation
after each hidden layer, Glorot-uniform weights and zero biases, mini-batch
50, L2 strength 10⁻³ on the weights (not the biases) added to the loss as
10⁻³·½Σ‖W‖² (TensorFlow's ``l2_loss``), for every optimizer alike; one
learning-rate grid {10⁻¹, 5·10⁻², 10⁻², 5·10⁻³, 10⁻³} for every optimizer.
Adam has β = (0.9, 0.999), ε = 10⁻⁸. The main RNGD row, ``rngd``, has the
authors' settings: T = 100, moving-average rate λ = 0.005 (ω = 0.995),
the smoothed relu with ω = 1, the authors' damping ε = 10⁻⁴·tr(G)
(``damping_relative_to="trace"``), metric every step, dense first- and
last-layer metrics. Labelled extra rows are the project's variants (not in
003): ``rngd-fast`` (metric every 10th step with the decay compounded, shared
metrics block-diagonal over ≤ 100 inputs, damping ε = 0.01·tr(G)/d) and
``rngd-lowrank`` (the authors' row with the first layer's metric inverted as
its top-k eigen-directions plus an isotropic remainder, ``first_layer_rank``).

Learning-rate selection: every optimizer's rate is chosen by the mean
validation accuracy at the end of ``selection_epochs`` over
``selection_seeds`` selection seeds (``options.seed + 1000 + k``) that are not
among the ``seeds`` reported seeds (``options.seed + k``); the reported runs
then train ``epochs`` epochs at the chosen rate.

"Learns faster per epoch" is decided by a statistic stated before the numbers:
the area under the validation-accuracy curve, AUC = mean over epochs 1..E of
the validation accuracy, paired by seed (same initialisation and batch order
for both optimizers): d_s = AUC_s(RNGD) − AUC_s(other), the t-interval of the
mean of d at ``level`` (:func:`actionlab.stats.paired_difference`); **holds**
when the interval lies above 0 against every baseline, **does not hold** when
it lies below 0 against any, otherwise inconclusive (:func:`judge_faster`).
Epochs to ``target_accuracy`` are reported beside it. The cost claim is the
per-seed ratio of RNGD's optimisation time per epoch to Adam's (same seed,
same run) with its t-interval, against the goal ≤ 2 (:func:`judge_at_most`).

Training is :class:`actionlab.train.Trainer` with the ready optimizer instance
(RNGD hooks into the model, so it is built here and handed over), the L2 term
(l2/2)Σ‖W‖² on the weight matrices only (``l2_on="weights"``), ``drop_last``,
an evaluation per epoch, and ``History.train_time_s`` as the optimisation
wall-clock per epoch (evaluation excluded). A run whose loss turns non-finite
or grows beyond ``divergence_factor`` × its initial value stops there and is
marked diverged (its later epochs count as accuracy 0). Runs are independent
and are spread over ``workers`` processes (one thread each by default): the
per-epoch times are then measured with the other worker busy on the second
core — the same condition for every optimizer.

Presets and their cuts (stated in every claim's evidence): ``quick`` (tests:
4,000 training images, 2 epochs, 2 reported seeds, 1 selection seed of 1
epoch over the grid {0.1, 0.01}); ``default`` — the largest faithful reduction
that fits ≈ 30 min on 2 cores: the main network 784-80-80-80-10 only, the full
data, the full grid with 2 selection seeds × 2 epochs, then 10 reported seeds ×
10 epochs (≈ 12 min on an idle 2-core machine, estimated from the measured
per-epoch times in docs/rngd.md; not yet timed end to end); ``full`` — the paper's scale: all four networks, 40 reported seeds,
10 selection seeds, 20 epochs (many hours on a CPU).
Under ``torchrun`` (``RunOptions.group``, docs/distributed.md) every run is trained by all ranks
together: each rank loads the same data, draws the same initialisation and batch order, and takes
its contiguous shard of every global batch (:func:`actionlab.distributed.shard`; uneven shards
allowed, every rank needs ≥ 1 point, so ``batch_size`` ≥ world size). The model is wrapped in
``DistributedDataParallel`` (RNGD reduces its metric statistics over the group, SGD and Adam take
DDP's averaged gradients); each rank's loss is its shard's sum times W/N (= W·N_r/N × its mean), so
DDP's average is the global batch's mean gradient, and the batch loss that decides divergence is
the all-reduced global mean (the same on every rank). Evaluation runs on the full sets on every
rank (the parameters are the same bits on every rank, so every rank takes the same decisions). The
runs are done one after the other (``workers`` is not used); rank 0 alone writes the run folder.
The numbers equal one process's to round-off; the timings are of the distributed steps, and
networks with ``+bn`` are refused (DDP normalises with each rank's batch statistics).
K-FAC is not a row here: ASDL's K-FAC needs its own forward/backward
(``benchmarks/bench_rngd.py`` has the K-FAC timing row); the summary says so.
"""

from __future__ import annotations

import functools
import importlib.util
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

from actionlab import distributed
from actionlab._checks import ValueCheckError, check_choice
from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment
from actionlab.runs import Claim, RunFolder, claims_table_md
from actionlab.stats import mean_interval, paired_difference

__all__ = ["RngdMnistConfig", "RngdMnistResult", "run", "parse_architecture", "train_one", "judge_faster", "judge_at_most"]

OPTIMIZERS = ("sgd", "adam", "rngd", "rngd-fast", "rngd-lowrank")
RNGD_VARIANTS = ("rngd", "rngd-fast", "rngd-lowrank")
LR_GRID = (0.1, 0.05, 1e-2, 5e-3, 1e-3)  # 003 §4: the same grid for every optimizer
MAIN_ARCHITECTURE = "784-80-80-80-10"
SPEED_GOAL = 2.0  # the goal: an RNGD epoch at most 2× Adam's (not a claim of 003)


@dataclass
class RngdMnistConfig:
    """RNGD vs SGD vs Adam on MNIST relu MLPs (003 section 4): learning curves, test accuracy, time per epoch."""

    architectures: tuple[str, ...] = param(
        (MAIN_ARCHITECTURE,),
        "relu MLPs of 003 §4 as widths 784-…-10, '+bn' for batch normalisation after each hidden layer "
        "(full: 784-80-80-80-10 and 784-100-100-100-10, each with and without +bn)", allow_empty=False)
    optimizers: tuple[str, ...] = param(("sgd", "adam", "rngd", "rngd-fast"),
                                        "optimizers compared: sgd, adam, rngd (the authors' settings, the main row), "
                                        "rngd-fast and rngd-lowrank (the project's variants, not in 003)",
                                        choices=OPTIMIZERS, allow_empty=False)
    lrs: tuple[float, ...] = param(LR_GRID, "learning-rate grid η, the same for every optimizer (003 §4: "
                                   "{1e-1, 5e-2, 1e-2, 5e-3, 1e-3}), chosen by validation accuracy on the selection seeds",
                                   min=0.0, exclusive_min=True, allow_empty=False)
    epochs: int = param(10, "passes over the training set per reported run (003: 20 in the figures)", min=1)
    seeds: int = param(10, "reported seeds per architecture and optimizer at the chosen η (003: 40)", min=2)
    selection_seeds: int = param(2, "selection seeds per (optimizer, η), disjoint from the reported seeds", min=1)
    selection_epochs: int = param(2, "epochs of each selection run (η chosen by the final validation accuracy)", min=1)
    batch_size: int = param(50, "mini-batch size (003 §4: 50); the last incomplete batch of an epoch is dropped", min=1)
    l2: float = param(1e-3, "L2 strength: l2·½Σ‖W‖² on the weights (not biases) added to the loss (003 §4: 1e-3)",
                      min=0.0)
    train_size: int = param(50000, "training images used (of the 50,000 of the split; 0 = all)", min=0)
    validation_size: int = param(10000, "validation images used for choosing η and the curves (of 10,000; 0 = all)", min=0)
    test_size: int = param(10000, "test images used for the final accuracy (of 10,000; 0 = all)", min=0)
    rngd_decay: float = param(0.995, "RNGD: ω of the running metric average G ← ωG + (1 − ω)G_batch (003 §4: "
                              "λ = 1 − ω = 0.005)", min=0.0, max=1.0, exclusive_min=True)
    rngd_damping: float = param(1e-4, "rngd (main row) damping λ: ε = λ·tr(G) (the authors', papers.md item 4) or "
                                "λ·tr(G)/d, see rngd_damping_relative_to", min=0.0, exclusive_min=True)
    rngd_damping_relative_to: str = param("trace", "rngd: ε = λ·tr(G) ('trace', the authors') or λ·tr(G)/d "
                                          "('mean_eigenvalue')", choices=("trace", "mean_eigenvalue"))
    rngd_inverse_every: int = param(100, "RNGD: the metric is inverted every T steps (003: T = 100)", min=1)
    rngd_relu_omega: float = param(1.0, "RNGD: ω of the smoothed relu whose relative Fisher information stands for "
                                   "relu layers (003: ω = 1)", min=0.0, exclusive_min=True)
    rngd_fast_damping: float = param(0.01, "rngd-fast: damping λ with ε = λ·tr(G)/d (the project's default)",
                                     min=0.0, exclusive_min=True)
    rngd_fast_metric_every: int = param(10, "rngd-fast: the metric is updated every k steps (decay compounded)", min=1)
    rngd_fast_shared_block_size: int = param(100, "rngd-fast: shared metrics block-diagonal over blocks of ≤ this "
                                             "many inputs (0 = dense)", min=0)
    rngd_lowrank_rank: int = param(32, "rngd-lowrank: k of the first layer's top-k-plus-isotropic inverse", min=1)
    target_accuracy: float = param(0.97, "validation accuracy whose first epoch is reported (epochs to level)",
                                   min=0.0, max=1.0, exclusive_min=True)
    level: float = param(0.95, "level of the paired t-intervals of the verdicts", min=0.0, max=1.0,
                         exclusive_min=True)
    divergence_factor: float = param(1e3, "a run stops as diverged once a loss exceeds this multiple of its initial "
                                     "training loss (or turns non-finite)", min=1.0, exclusive_min=True)
    workers: int = param(2, "worker processes running independent training runs", min=1)
    threads: int = param(1, "torch threads per worker (0 = leave torch's setting)", min=0)
    PRESETS: ClassVar[dict] = {
        "quick": {
            "lrs": (0.1, 1e-2), "epochs": 2, "seeds": 2, "selection_seeds": 1, "selection_epochs": 1,
            "train_size": 4000, "validation_size": 2000, "test_size": 2000, "rngd_inverse_every": 20, "workers": 1,
        },
        "default": {},
        "full": {"architectures": ("784-80-80-80-10", "784-80-80-80-10+bn", "784-100-100-100-10", "784-100-100-100-10+bn"),
                 "epochs": 20, "seeds": 40, "selection_seeds": 10, "selection_epochs": 20},
    }


@dataclass
class TrainingRun:
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


@short_repr
@dataclass
class RngdMnistResult:
    runs: list[TrainingRun]  # the reported runs (chosen η, reported seeds)
    selection_runs: list[TrainingRun]  # the η-selection runs (selection seeds)
    selected_lr: dict  # arch -> optimizer -> lr
    table: list[dict]  # arch, optimizer, lr, test acc mean/std, val acc, AUC, epochs to level, time per epoch
    per_epoch: dict  # arch -> variant -> baseline -> paired AUC comparison (difference, interval, p-values)
    speed: dict  # arch -> variant -> per-seed time-per-epoch ratio to Adam (mean, interval)
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

    if name == "rngd-fast":  # the project's cheaper schedule and damping convention (not in 003)
        schedule = {"metric_every": cfg.rngd_fast_metric_every, "shared_block_size": cfg.rngd_fast_shared_block_size or None,
                    "damping": cfg.rngd_fast_damping, "damping_relative_to": "mean_eigenvalue"}
    else:  # the authors' settings (papers.md items 1–5); rngd-lowrank: the first layer's inverse low-rank + isotropic
        schedule = {"damping": cfg.rngd_damping, "damping_relative_to": cfg.rngd_damping_relative_to}
        if name == "rngd-lowrank":
            schedule["first_layer_rank"] = cfg.rngd_lowrank_rank
    return RNGD(model, lr=lr, decay=cfg.rngd_decay, inverse_every=cfg.rngd_inverse_every,
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


def _sharded_trainer_class():
    """A :class:`actionlab.train.Trainer` whose batch objective is this rank's shard of the global batch."""
    from actionlab.train import Trainer, loss_fn

    class ShardedTrainer(Trainer):
        """Each global batch ``idx`` split by :func:`actionlab.distributed.shard` over ``group``; the model a DDP wrapper.

        Objective on rank r: (W/N)·Σ_{n ∈ shard r} ℓ_n + (l2/2)Σ‖W‖², so DDP's average over the W ranks of the
        gradients is the global batch's (1/N)Σ_n ∇ℓ_n + l2·W (docs/distributed.md, W·N_r/N × the rank's mean).
        The data loss returned (divergence check, batch loss) is the all-reduced global mean, the same on every rank.
        """

        def __init__(self, *args, group, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.group = group
            self.world_size = distributed.world(group)[1]

        def _objective(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            zt, yt = self.train_data
            mine = idx[distributed.shard(len(idx), self.group)]
            local = loss_fn(self.model(zt[mine]), yt[mine], self.spec.loss, reduction="sum")
            data_loss = distributed.all_reduce_sum(local.detach(), self.group) / len(idx)
            objective = local * (self.world_size / len(idx))
            if self.spec.l2:
                objective = objective + 0.5 * self.spec.l2 * sum((p * p).sum() for p in self.penalised)
            return data_loss, objective

    return ShardedTrainer


def _ddp(model: nn.Module, group, device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel over ``group`` (the GPU of this process for CUDA)."""
    from torch.nn.parallel import DistributedDataParallel

    dev = torch.device(device)
    ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, process_group=group)


def train_one(cfg: RngdMnistConfig, arch: str, opt_name: str, lr: float, seed: int,
              dtype=torch.float32, device="cpu", epochs: int | None = None, group=None) -> TrainingRun:
    """Train one model for ``epochs`` (default ``cfg.epochs``) with :class:`actionlab.train.Trainer`; curves after
    every epoch (index 0: at initialisation).

    ``group``: a ``torch.distributed`` ProcessGroup; every rank of it calls this with the same arguments and
    the run is trained under DistributedDataParallel, each rank taking its shard of every global batch
    (the module docstring); the record is the same on every rank (up to the timings).
    """
    epochs = cfg.epochs if epochs is None else epochs
    from actionlab.train import Trainer, TrainSpec, evaluate

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    group = group if distributed.is_distributed(group) else None
    (ztr, ytr), (zva, yva), (zte, yte) = _data(cfg, dtype, device)
    seed_everything(seed)
    model = _make_model(arch, seed, dtype, device)
    net = model if group is None else _ddp(model, group, device)
    opt = _protocol_optimizer(opt_name, net, lr, cfg)
    spec = TrainSpec(epochs=epochs, batch_size=cfg.batch_size, loss="cross_entropy", l2=cfg.l2, l2_on="weights",
                     seed=10_000 + seed, drop_last=True, eval_batch_size=5000, divergence_factor=cfg.divergence_factor,
                     progress=False)
    trainer = Trainer if group is None else functools.partial(_sharded_trainer_class(), group=group)
    try:
        hist = trainer(net, (ztr, ytr), eval=(zva, yva), optimizer=opt, spec=spec).run()
    finally:
        if hasattr(opt, "remove_hooks"):
            opt.remove_hooks()
    rec = TrainingRun(arch, opt_name, lr, seed, diverged=hist.diverged)
    rec.epoch_time_s = [b - a for a, b in zip(hist.train_time_s, hist.train_time_s[1:])]
    whole = [k for k, e in enumerate(hist.epoch) if float(e).is_integer()]  # evaluations at whole epochs
    rec.train_loss = [hist.train_loss[k] for k in whole]
    rec.train_error = [1.0 - hist.train_accuracy[k] for k in whole]
    rec.val_accuracy = [hist.eval_accuracy[k] for k in whole]
    if rec.diverged:  # the epochs after the divergence: no loss, accuracy counted as 0
        rec.test_accuracy = 0.0
        while len(rec.val_accuracy) < epochs + 1:
            rec.train_loss.append(float("nan"))
            rec.train_error.append(float("nan"))
            rec.val_accuracy.append(0.0)
    else:
        rec.test_accuracy = evaluate(model, zte, yte, batch_size=5000)[1]
    return rec


def _job(args, group=None):
    cfg, arch, opt_name, lr, seed, dtype, device, epochs = args
    return train_one(cfg, arch, opt_name, lr, seed, dtype, device, epochs, group=group)


def _run_jobs(jobs: list, cfg: RngdMnistConfig, desc: str, group=None) -> list[TrainingRun]:
    """The runs of ``jobs``: over ``workers`` processes, or one after the other (always so under a group,
    where every rank trains every run together with the others)."""
    out: list[TrainingRun] = []
    if distributed.is_distributed(group) or cfg.workers <= 1 or len(jobs) <= 1:
        for j in tqdm(jobs, desc=desc, disable=None if distributed.is_rank0(group) else True):
            out.append(_job(j, group))
        return out
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=get_context("spawn")) as ex:
        for rec in tqdm(ex.map(_job, jobs), total=len(jobs), desc=desc, disable=None):
            out.append(rec)
    return out


def _mean_final_val(runs: list[TrainingRun]) -> float:
    return float(np.mean([r.val_accuracy[-1] for r in runs]))


def _curve_stats(runs: list[TrainingRun], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.array([getattr(r, key) for r in runs], dtype=float)
    return np.nanmean(a, 0), np.nanmin(a, 0), np.nanmax(a, 0)


def validation_auc(run: TrainingRun) -> float:
    """Area under the validation-accuracy curve per epoch: mean of the accuracy over epochs 1..E."""
    return float(np.mean(run.val_accuracy[1:]))


def epochs_to_level(run: TrainingRun, level: float) -> float:
    """First epoch whose validation accuracy is ≥ ``level`` (inf when never reached)."""
    hits = [e for e, v in enumerate(run.val_accuracy) if e > 0 and v >= level]
    return float(hits[0]) if hits else math.inf


def judge_faster(intervals: dict[str, tuple[float, float]], threshold: float = 0.0) -> str:
    """'holds' when every (low, high) lies above ``threshold``, 'does not hold' when any lies below, else inconclusive."""
    if not intervals:
        return "not yet measured"
    if any(hi < threshold for _, hi in intervals.values()):
        return "does not hold"
    if all(lo > threshold for lo, _ in intervals.values()):
        return "holds"
    return "inconclusive"


def judge_at_most(low: float, high: float, bound: float) -> str:
    """'holds' when the interval lies at or below ``bound``, 'does not hold' when above it, else inconclusive."""
    if high <= bound:
        return "holds"
    if low > bound:
        return "does not hold"
    return "inconclusive"


def _strength(verdict: str, n: int, intervals: list[tuple[float, float]], threshold: float, preset: str | None) -> str:
    """firm: not the quick preset, ≥ 10 seeds, and no interval straddles the threshold."""
    straddle = any(lo <= threshold <= hi for lo, hi in intervals)
    firm = preset != "quick" and n >= 10 and not straddle and verdict in ("holds", "does not hold")
    return "firm" if firm else "indicative"


_COLORS = {"sgd": "tab:blue", "adam": "tab:orange", "rngd": "tab:red", "rngd-fast": "tab:purple", "rngd-lowrank": "tab:green"}


def _architecture_stats(cfg: RngdMnistConfig, a: str, chosen: dict, lrs: dict, table: list) -> dict:
    """Per optimizer: seed mean / min / max curves, AUC, epochs to level and time per epoch; appends table rows."""
    stats = {}
    for o in cfg.optimizers:
        rs = sorted(chosen[o], key=lambda r: r.seed)  # paired by seed with the other optimizers
        tl, va = _curve_stats(rs, "train_loss"), _curve_stats(rs, "val_accuracy")
        te = np.array([r.test_accuracy for r in rs])
        auc = np.array([validation_auc(r) for r in rs])
        to_level = [epochs_to_level(r, cfg.target_accuracy) for r in rs]
        times = np.array([float(np.mean(r.epoch_time_s)) for r in rs])
        stats[o] = {"train_loss": tl[0], "val": va[0], "tl": tl, "va": va, "time": float(times.mean()), "runs": rs,
                    "auc": auc, "times": times, "to_level": to_level}
        reached = [e for e in to_level if math.isfinite(e)]
        table.append({
            "architecture": a, "optimizer": o, "lr": lrs[o], "seeds": len(rs),
            "test_accuracy_mean": float(te.mean()), "test_accuracy_std": float(te.std(ddof=1)) if len(te) > 1 else 0.0,
            "val_accuracy_mean": float(va[0][-1]), "val_auc_mean": float(auc.mean()), "train_loss_final": float(tl[0][-1]),
            "epochs_to_level_median": float(np.median(to_level)), "reached_level": len(reached),
            "epoch_time_s": float(times.mean()), "diverged": int(sum(r.diverged for r in rs)),
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
    fig.suptitle(f"MNIST {a} relu, batch {cfg.batch_size}, L2 {cfg.l2:g}: mean (line), min–max over {cfg.seeds} "
                 "reported seeds (band), single seeds (thin)")
    folder.save_figure(fig, "curves_" + a.replace("+", "_"))


def _comparisons(cfg: RngdMnistConfig, a: str, stats: dict, per_epoch: dict, speed: dict) -> None:
    """Each RNGD row against each baseline: the seed-paired AUC difference; its time per epoch over Adam's."""
    variants = [o for o in cfg.optimizers if o in RNGD_VARIANTS]
    baselines = [o for o in cfg.optimizers if o not in RNGD_VARIANTS]
    per_epoch[a], speed[a] = {}, {}
    for v in variants:
        per_epoch[a][v] = {}
        for o in baselines:
            cmp = paired_difference(stats[v]["auc"], stats[o]["auc"], level=cfg.level)
            per_epoch[a][v][o] = {"auc_difference": cmp.difference.estimate, "low": cmp.difference.low,
                                  "high": cmp.difference.high, "p_wilcoxon": cmp.p_wilcoxon, "n": cmp.n,
                                  "auc_rngd": cmp.mean_a, "auc_other": cmp.mean_b}
        if "adam" in stats:
            ratio = mean_interval(stats[v]["times"] / stats["adam"]["times"], level=cfg.level)
            speed[a][v] = {"ratio": ratio.estimate, "low": ratio.low, "high": ratio.high, "n": ratio.n}


def _preset_cuts(cfg: RngdMnistConfig) -> list[str]:
    """What this configuration leaves out of 003's protocol (stated in the evidence and the summary)."""
    cuts = []
    full = make_full()
    if set(cfg.architectures) != set(full.architectures):
        cuts.append(f"networks {', '.join(cfg.architectures)} only (003: four)")
    if cfg.seeds < 40:
        cuts.append(f"{cfg.seeds} reported seeds (003: 40)")
    if cfg.epochs < 20:
        cuts.append(f"{cfg.epochs} epochs (003's figures: 20)")
    if cfg.selection_seeds < 10 or cfg.selection_epochs < cfg.epochs:
        cuts.append(f"η chosen on {cfg.selection_seeds} selection seed(s) × {cfg.selection_epochs} epoch(s)")
    if tuple(cfg.lrs) != LR_GRID:
        cuts.append(f"η grid {list(cfg.lrs)} (003: {list(LR_GRID)})")
    if cfg.train_size not in (0, 50000) or cfg.validation_size not in (0, 10000):
        cuts.append(f"{cfg.train_size} training / {cfg.validation_size} validation images (003: 50,000 / 10,000)")
    if cfg.rngd_inverse_every != 100:
        cuts.append(f"T = {cfg.rngd_inverse_every} (003: 100)")
    return cuts


def make_full() -> RngdMnistConfig:
    from actionlab.experiments._registry import make_config

    return make_config(RngdMnistConfig, "full")


def _select(cfg: RngdMnistConfig, sel_runs: list[TrainingRun]) -> dict:
    """η per architecture and optimizer: the highest mean final validation accuracy over the selection seeds
    (ties: the smaller η)."""
    selected: dict = {}
    for a in cfg.architectures:
        selected[a] = {}
        for o in cfg.optimizers:
            scores = {lr: _mean_final_val([r for r in sel_runs if r.architecture == a and r.optimizer == o and r.lr == lr])
                      for lr in cfg.lrs}
            selected[a][o] = max(scores, key=lambda lr: (scores[lr], -lr))
    return selected


def _check_group_config(cfg: RngdMnistConfig, group) -> None:
    """Refuse what a process group cannot run exactly: a rank without points in a batch, BatchNorm under DDP."""
    if group is None:
        return
    size = distributed.world(group)[1]
    if cfg.batch_size < size:
        raise ValueCheckError(f"batch_size {cfg.batch_size} is below the world size {size}: every rank needs at least "
                              f"one point of each global batch; raise --batch-size or launch fewer processes")
    bn = [a for a in cfg.architectures if parse_architecture(a)[1]]
    if bn:
        raise ValueCheckError(f"architectures {', '.join(bn)} have batch normalisation, which DistributedDataParallel "
                              "computes from each rank's own batch (not the global batch's); run them as one process "
                              "or drop '+bn' under torchrun")


@register_experiment("rngd-mnist", config=RngdMnistConfig, help="RNGD against SGD and Adam on MNIST MLPs (003 section 4, figures 1-4)", sources=("003",), order=60)
def run(config: RngdMnistConfig, options: RunOptions) -> RngdMnistResult:
    cfg = config
    for o in cfg.optimizers:
        check_choice(o, OPTIMIZERS, "optimizer")
    for a in cfg.architectures:
        parse_architecture(a)
    if cfg.seeds < 2 or cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueCheckError("seeds must be ≥ 2 (the verdicts pair seeds), epochs and batch_size ≥ 1")
    group = options.group if distributed.is_distributed(options.group) else None
    _check_group_config(cfg, group)
    t_start = time.perf_counter()
    dtype, device = options.torch_dtype, options.torch_device
    folder = RunFolder(options, "rngd-mnist", config=cfg, seed=options.seed,
                       data={"name": "mnist", "train": cfg.train_size, "validation": cfg.validation_size, "test": cfg.test_size})
    seeds = [options.seed + k for k in range(cfg.seeds)]
    selection = [options.seed + 1000 + k for k in range(cfg.selection_seeds)]  # never among the reported seeds
    _data(cfg, dtype, device)  # fail early on missing data
    jobs = [(cfg, a, o, lr, s, dtype, device, cfg.selection_epochs)
            for a in cfg.architectures for o in cfg.optimizers for lr in cfg.lrs for s in selection]
    sel_runs = _run_jobs(jobs, cfg, "rngd-mnist η selection", group)
    selected = _select(cfg, sel_runs)
    jobs = [(cfg, a, o, selected[a][o], s, dtype, device, cfg.epochs)
            for a in cfg.architectures for o in cfg.optimizers for s in seeds]
    runs = _run_jobs(jobs, cfg, "rngd-mnist reported seeds", group)

    table, per_epoch, speed = [], {}, {}
    for a in cfg.architectures:
        chosen = {o: [r for r in runs if r.architecture == a and r.optimizer == o] for o in cfg.optimizers}
        stats = _architecture_stats(cfg, a, chosen, selected[a], table)
        _architecture_figure(cfg, a, stats, selected[a], folder)
        _comparisons(cfg, a, stats, per_epoch, speed)

    result = RngdMnistResult(runs, sel_runs, selected, table, per_epoch, speed, time.perf_counter() - t_start)
    world_size = distributed.world(group)[1]
    for c in _claims(cfg, result, getattr(options, "preset", None), world_size):
        folder.add_claim(c)
    summary = _summary(cfg, result, folder, world_size)
    folder.finish(result, summary)
    return result


_VARIANT_WORDS = {"rngd": "RNGD (the authors' settings)", "rngd-fast": "rngd-fast (the project's cheaper schedule, not in 003)",
                  "rngd-lowrank": "rngd-lowrank (the authors' settings, low-rank-plus-identity first-layer inverse; not in 003)"}


def _claim_id(kind: str, v: str, a: str) -> str:
    """'003.rngd-faster-per-epoch' for the authors' row on the main network (the key finding), else suffixed."""
    base = f"003.{v}-{kind}"
    return base if a == MAIN_ARCHITECTURE else f"{base}.{a}"


def _evidence(cfg: RngdMnistConfig, preset: str | None, statistic: str, intervals: dict, threshold: float, rule: str) -> dict:
    return {"preset": preset, "seeds": {"number": cfg.seeds, "list": "options.seed + 0..seeds-1"},
            "selection_seeds": {"number": cfg.selection_seeds, "list": "options.seed + 1000 + 0..selection_seeds-1",
                                "epochs": cfg.selection_epochs},
            "sample_sizes": {"train": cfg.train_size, "validation": cfg.validation_size, "test": cfg.test_size},
            "epochs": cfg.epochs, "lr_grid": list(cfg.lrs), "statistic": statistic,
            "interval": {k: {"low": lo, "high": hi, "level": cfg.level} for k, (lo, hi) in intervals.items()},
            "threshold": threshold, "decision_rule": rule, "cuts": _preset_cuts(cfg)}


def _faster_claims(cfg: RngdMnistConfig, res: RngdMnistResult, preset: str | None) -> list[Claim]:
    claims = []
    rule = ("holds when the paired interval of the AUC difference lies above 0 against every baseline, does not hold "
            "when it lies below 0 against any, else inconclusive")
    for a, by_variant in res.per_epoch.items():
        for v, cmp in by_variant.items():
            if not cmp:
                continue
            iv = {o: (x["low"], x["high"]) for o, x in cmp.items()}
            verdict = judge_faster(iv, 0.0)
            claims.append(Claim(
                "003", f"{_VARIANT_WORDS[v]} learns faster per epoch than {' and '.join(cmp)} on {a} (figures 1–4)",
                "RNGD's validation-accuracy curve lies above the others' per epoch",
                {f"vs {o}": {"auc_difference": round(x["auc_difference"], 4), "interval": [round(x["low"], 4), round(x["high"], 4)],
                             "p_wilcoxon": round(x["p_wilcoxon"], 4)} for o, x in cmp.items()},
                verdict,
                f"AUC = mean validation accuracy over epochs 1..{cfg.epochs}; seed-paired difference {v} − other over "
                f"{cfg.seeds} reported seeds, {100 * cfg.level:.0f}% t-interval; each optimizer at its η chosen on "
                f"{cfg.selection_seeds} separate selection seed(s); {rule}",
                id=_claim_id("faster-per-epoch", v, a),
                evidence=_evidence(cfg, preset, "paired difference of the validation-accuracy AUC over epochs", iv, 0.0, rule),
                strength=_strength(verdict, cfg.seeds, list(iv.values()), 0.0, preset),
            ))
    return claims


def _procs(cfg: RngdMnistConfig, world_size: int) -> str:
    """How the runs were spread: worker processes × threads, or the ranks of a process group."""
    if world_size > 1:
        return f"every run on {world_size} ranks (DistributedDataParallel) × {cfg.threads} thread(s), runs in turn"
    return f"{cfg.workers} worker(s) × {cfg.threads} thread(s)"


def _speed_claims(cfg: RngdMnistConfig, res: RngdMnistResult, preset: str | None, world_size: int = 1) -> list[Claim]:
    claims = []
    rule = f"holds when the interval of the mean per-seed ratio lies at or below {SPEED_GOAL:g}, does not hold above, else inconclusive"
    for a, by_variant in res.speed.items():
        for v, x in by_variant.items():
            verdict = judge_at_most(x["low"], x["high"], SPEED_GOAL)
            claims.append(Claim(
                "003", f"{_VARIANT_WORDS[v]}: an epoch of {a} takes at most {SPEED_GOAL:g}× Adam's (the issue's goal; "
                       "003 gives no timing)", f"≤ {SPEED_GOAL:g}× Adam (the project's target; 003 states none)",
                {"ratio": round(x["ratio"], 2), "interval": [round(x["low"], 2), round(x["high"], 2)]},
                verdict,
                f"optimisation wall-clock per epoch (evaluation excluded) of {v} / Adam's, same seed, same run; "
                f"{_procs(cfg, world_size)}, the same for every optimizer; {rule}",
                id=_claim_id("speed", v, a),
                evidence=_evidence(cfg, preset, "mean over seeds of time-per-epoch ratio to Adam",
                                   {"ratio": (x["low"], x["high"])}, SPEED_GOAL, rule),
                strength=_strength(verdict, x["n"], [(x["low"], x["high"])], SPEED_GOAL, preset),
            ))
    return claims


def _claims(cfg: RngdMnistConfig, res: RngdMnistResult, preset: str | None = None, world_size: int = 1) -> list[Claim]:
    claims = _faster_claims(cfg, res, preset) + _speed_claims(cfg, res, preset, world_size)
    if "rngd" in cfg.optimizers:
        rngd_lrs = {a: res.selected_lr[a]["rngd"] for a in res.selected_lr}
        in_range = all(lr in (1e-2, 5e-3) for lr in rngd_lrs.values())
        grid = set(cfg.lrs)
        testable = bool(grid - {1e-2, 5e-3}) and bool(grid & {1e-2, 5e-3})
        claims.append(Claim(
            "003", "a good learning rate for RNGD is usually around 10⁻² or 5·10⁻³", "1e-2 or 5e-3", rngd_lrs,
            ("holds" if in_range else "does not hold") if testable else "inconclusive",
            f"chosen by validation accuracy from the grid {sorted(grid)} on {cfg.selection_seeds} selection seed(s) × "
            f"{cfg.selection_epochs} epoch(s) (inconclusive unless the grid holds 1e-2 or 5e-3 and other values)",
            id="003.rngd-lr", strength="indicative",
            evidence={"preset": preset, "lr_grid": sorted(grid), "selection_seeds": cfg.selection_seeds,
                      "selection_epochs": cfg.selection_epochs, "decision_rule": "holds when every chosen η is 1e-2 or 5e-3",
                      "cuts": _preset_cuts(cfg)},
        ))
    gaps = [abs(t["test_accuracy_mean"] - t["val_accuracy_mean"]) for t in res.table]
    verdict = judge_at_most(max(gaps), max(gaps), 0.01)
    claims.append(Claim(
        "003", "the testing accuracy is close to the validation accuracy", "close", {"max |test − val|": round(max(gaps), 4)},
        verdict, "seed means of the final test and validation accuracy per architecture and optimizer; 'close' taken "
        "as ≤ 1 percentage point", id="003.test-close-to-validation",
        evidence={"preset": preset, "seeds": cfg.seeds, "statistic": "max over rows of |mean test − mean validation|",
                  "threshold": 0.01, "decision_rule": "holds when ≤ 0.01", "cuts": _preset_cuts(cfg)},
        strength="firm" if preset != "quick" and cfg.seeds >= 10 else "indicative",
    ))
    return claims


def _kfac_line() -> str:
    if importlib.util.find_spec("asdl") is None:
        return ("K-FAC: no row — ASDL (`asdfghjkl`) is not importable here; its time per step is in "
                "`benchmarks/bench_rngd.py` (optional environment).")
    return ("K-FAC: no row — ASDL is installed, but its K-FAC drives its own forward/backward pass and is not wired "
            "into this experiment's trainer; see `benchmarks/bench_rngd.py` for its time per step.")


def _summary(cfg: RngdMnistConfig, res: RngdMnistResult, folder: RunFolder, world_size: int = 1) -> str:
    cuts = _preset_cuts(cfg)
    lines = [
        "# rngd-mnist: RNGD vs SGD vs Adam on MNIST relu MLPs (003 section 4)",
        "",
        f"Train / validation / test = {cfg.train_size} / {cfg.validation_size} / {cfg.test_size}, batch {cfg.batch_size}, "
        f"L2 {cfg.l2:g} (on weights, in the loss), Glorot-uniform initialisation, {cfg.epochs} epochs, {cfg.seeds} reported "
        f"seeds; η from the grid {list(cfg.lrs)} (every optimizer) chosen by the final validation accuracy over "
        f"{cfg.selection_seeds} selection seed(s) × {cfg.selection_epochs} epoch(s), disjoint from the reported seeds. "
        f"rngd (the authors'): T = {cfg.rngd_inverse_every}, ω = {cfg.rngd_decay}, relu ω = {cfg.rngd_relu_omega}, "
        f"damping λ = {cfg.rngd_damping:g} ({'ε = λ·tr(G)' if cfg.rngd_damping_relative_to == 'trace' else 'ε = λ·tr(G)/d'}), "
        "metric every step"
        + (f"; rngd-fast: metric every {cfg.rngd_fast_metric_every} steps, shared metrics in blocks of ≤ "
           f"{cfg.rngd_fast_shared_block_size} inputs, ε = {cfg.rngd_fast_damping:g}·tr(G)/d" if "rngd-fast" in cfg.optimizers else "")
        + (f"; rngd-lowrank: first-layer inverse of rank {cfg.rngd_lowrank_rank} + isotropic" if "rngd-lowrank" in cfg.optimizers else "")
        + f". Total wall time {res.wall_time_s:.0f} s with {_procs(cfg, world_size)} on {os.cpu_count()} cores"
        + ("; the per-epoch times are taken with the workers running side by side." if cfg.workers > 1 and world_size == 1
           else "."),
        "",
        "Cuts against 003's protocol: " + ("; ".join(cuts) if cuts else "none") + ".",
        "",
        _kfac_line(),
        "",
        "## Final test accuracy, AUC and time per epoch",
        "",
        f"| architecture | optimizer | lr | test accuracy (mean ± sd) | validation accuracy | validation AUC | epochs to "
        f"{100 * cfg.target_accuracy:.0f}% (median; seeds reaching) | final training loss | s / epoch | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in res.table:
        lines.append(
            f"| {t['architecture']} | {t['optimizer']} | {t['lr']:g} | {100 * t['test_accuracy_mean']:.2f} ± "
            f"{100 * t['test_accuracy_std']:.2f} % | {100 * t['val_accuracy_mean']:.2f} % | {100 * t['val_auc_mean']:.2f} % | "
            f"{t['epochs_to_level_median']:g} ({t['reached_level']}/{t['seeds']}) | {t['train_loss_final']:.4f} | "
            f"{t['epoch_time_s']:.2f} | {t['diverged']} |")
    lines += ["", "## Does RNGD learn faster per epoch here?", ""]
    for a, by_variant in res.per_epoch.items():
        for v, cmp in by_variant.items():
            words = "; ".join(f"vs {o}: AUC difference {100 * x['auc_difference']:+.2f} points "
                              f"[{100 * x['low']:+.2f}, {100 * x['high']:+.2f}]" for o, x in cmp.items())
            sp = res.speed.get(a, {}).get(v)
            cost = f"; an epoch costs {sp['ratio']:.1f}× Adam's [{sp['low']:.1f}, {sp['high']:.1f}]" if sp else ""
            lines.append(f"- **{a}**, {v}: {words}{cost}.")
    lines += ["", "## Claims", "", claims_table_md(folder.claims), "", "Figures: " + ", ".join(f"`{f}`" for f in folder.figures),
              "(top: per epoch, bottom: per second of optimisation; line = seed mean, band = min–max over seeds, thin lines = single seeds)."]
    return "\n".join(lines) + "\n"
