"""``actionlab early-stop``: the notes' §3 rule ∇S_T·∇S_E = 0 against the minimum of S_E, regime by regime.

Note 001 §3, eq. (7): with empirical training and evaluation distributions p_T, p_E, training should
stop where ∇S_E turns against ∇S_T,

    ∇S_T(θ) · ∇S_E(θ) = 0,

"especially important when the data size is quite limited".  The rule comes from gradient flow
θ̇ = −∇S_T, along which dS_E/dt = −∇S_E·∇S_T: S_E is minimal exactly where the dot product crosses
zero.  Gradient descent with step η changes S_E by

    S_E(θ_{k+1}) − S_E(θ_k) = −η ∇S_E·∇S_T + (η²/2) ∇S_Tᵀ H_E ∇S_T + O(η³),

so for small η (against the sharpness λ_max of S_T along the path: GD is stable for η < 2/λ_max)
and with both gradients on the full sets at every step, the raw rule fires at argmin S_E within a
step or so.  This experiment tests that first and then how it degrades, as one-factor-at-a-time
sweeps around the gradient-flow baseline (full-batch GD, η = f₀·2/λ_max(θ₀), N₀ training samples):

* step size: η = f·2/λ_max(θ₀) for the fractions ``lr_fractions`` (small … near the stability limit);
* batch size: full batch and the mini-batch sizes ``batch_sizes`` at the baseline η;
* optimizer: GD, heavy-ball SGD (momentum μ, lr = η(1 − μ): the same effective step η/(1 − μ) = η)
  and Adam (lr ``adam_lr``);
* training-set size: ``sizes`` at the baseline η.

λ_max(θ) is the largest eigenvalue of the Fisher information of the softmax outputs (the
Gauss–Newton part of the Hessian of S_T; :func:`actionlab.fisher.empirical.lanczos_lambda_max`
with ``outputs="cross_entropy"``) on at most ``lambda_samples`` training samples, measured at θ₀
(it sets η) and at the S_E minimum (the sharpness GD met there).  Every gradient-flow-like regime
(full-batch GD or heavy ball, f < ``near_limit``) is trained for ``seeds`` seeds, every noisy one
(mini-batch, Adam, f ≥ ``near_limit``: their gaps scatter over seeds) for ``noisy_seeds``; a seed
redraws the data subsample, refits the embedding, reinitialises the model and reorders the batches.
A run may take budget = ``steps``·(f₀/f)·max(1, N/N₀) steps (the same gradient-flow time η·k at
every f, longer for larger N, which overfits later; at most ``max_steps``) and ends earlier at the
first measurement k where the rule has fired, S_E(k) ≥ min S_E + ``pass_margin`` and
k ≥ (1 + ``pass_patience``)·argmin S_E (:func:`passed_minimum`); a seed whose S_E minimum is
still its last measurement leaves its regime inconclusive.  :class:`actionlab.train.GradientAlignmentStop` records S_T, S_E and
∇S_T·∇S_E over all trainable parameters on the full training set and the (``test_per_class``-
balanced) test set every ``measure_every`` steps, with ``stop=False`` so that training goes on past
the minimum.  Per regime: the raw rule's step, argmin S_E, the gap in steps and in nats
(S_E(rule) − min S_E), with t-intervals over seeds (:func:`actionlab.stats.mean_interval`), and a
verdict by :func:`judge_regime` against tolerances stated before the measurement.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from actionlab import activations as _act
from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything, torch_threads
from actionlab.embeddings import KINDS as EMBEDDING_KINDS
from actionlab.embeddings import EmbeddedClassifier
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import BuildOptions, DataSpec, get_embedding, learned_config_from, load_splits
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["EarlyStopConfig", "EarlyStopResult", "Regime", "run", "regime_grid", "compare_rule",
           "first_nonpositive", "run_gaps", "summarise_regime", "judge_regime", "OPTIMIZERS"]

#: the optimizers of the sweep: full-batch / mini-batch gradient descent, heavy-ball SGD, Adam
OPTIMIZERS = ("gd", "momentum", "adam")


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
           "final_S_E": float(s_e[-1]), "min_at_end": i_min == len(steps) - 1}
    for label, s in (("raw", 0.0), ("smoothed", smoothing)):
        st = first_nonpositive(dots, steps, s, min_step)
        if st is None:
            out[label] = {"rule_step": None, "S_E_at_rule": None, "gap_steps": None, "gap_loss": None}
        else:
            j = steps.index(st)
            out[label] = {"rule_step": st, "S_E_at_rule": float(s_e[j]), "gap_steps": st - steps[i_min],
                          "gap_loss": float(s_e[j] - s_e[i_min])}
    return out


def run_gaps(cmp: dict, which: str = "raw") -> dict:
    """The gap of one run, with its censoring, from a :func:`compare_rule` result.

    ``status``: "measured" (the rule fired and S_E passed its minimum within the budget);
    "late" (S_E passed its minimum but the rule never fired: gap ≥ final step − min step, a lower
    bound, and S_E(final) − min S_E in nats); "early" (the rule fired while S_E was still falling at
    the end: gap ≤ rule step − final step, an upper bound); "none" (neither: S_E still falling and
    no stop — consistent, but not a test).
    """
    r = cmp[which]
    fired, passed = r["rule_step"] is not None, not cmp["min_at_end"]
    if fired and passed:
        return {"status": "measured", "gap_steps": r["gap_steps"], "gap_nats": r["gap_loss"]}
    if passed:
        return {"status": "late", "gap_steps": cmp["final_step"] - cmp["min_step"],
                "gap_nats": cmp["final_S_E"] - cmp["min_S_E"]}
    if fired:
        return {"status": "early", "gap_steps": r["rule_step"] - cmp["final_step"],
                "gap_nats": r["S_E_at_rule"] - cmp["final_S_E"]}
    return {"status": "none", "gap_steps": None, "gap_nats": None}


@dataclass(frozen=True)
class Regime:
    """One cell of the grid: optimizer, η as a fraction of 2/λ_max(θ₀), batch size (None: full), N_train."""

    optimizer: str
    lr_fraction: float
    batch_size: int | None
    n_train: int
    sweeps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        bs = "full" if self.batch_size is None else f"b{self.batch_size}"
        lr = f"eta{self.lr_fraction:g}" if self.optimizer != "adam" else ""
        return "-".join(p for p in (self.optimizer, lr, bs, f"N{self.n_train}") if p)

    @property
    def label(self) -> str:
        opt = {"gd": "GD" if self.batch_size is None else "SGD", "momentum": "SGD+momentum", "adam": "Adam"}[self.optimizer]
        step = "" if self.optimizer == "adam" else f", η = {self.lr_fraction:g}·2/λ₀"
        return f"{opt}{step}, batch {'full' if self.batch_size is None else self.batch_size}, N = {self.n_train}"


def regime_grid(config: EarlyStopConfig) -> list[Regime]:
    """The baseline (full-batch GD, f₀, N₀) and the one-factor-at-a-time sweeps around it, each regime once."""
    f0, n0 = config.lr_fraction, config.n_train
    cells: dict[tuple, set] = {}

    def add(opt, f, bs, n, sweep):
        cells.setdefault((opt, f, bs, n), set()).add(sweep)

    add("gd", f0, None, n0, "baseline")
    for f in config.lr_fractions:
        add("gd", f, None, n0, "step size")
    add("gd", f0, None, n0, "step size")
    for bs in (None, *config.batch_sizes):
        add("gd", f0, bs if bs is None or bs < n0 else None, n0, "batch size")
    for opt in ("gd", "momentum", "adam"):
        add(opt, f0, None, n0, "optimizer")
    for n in config.sizes:
        add("gd", f0, None, n, "training-set size")
    return [Regime(o, f, b, n, tuple(sorted(s))) for (o, f, b, n), s in cells.items()]


@dataclass
class EarlyStopConfig:
    """∇S_T·∇S_E = 0 (notes 001 §3, eq. 7) against argmin S_E: gradient-flow baseline and sweeps."""

    dataset: str = param("fashion-mnist", "data set whose train / test splits are p_T / p_E (notes §3)")
    standardize: str = param("none", "input standardisation of the data set", choices=("none", "centre", "center", "zscore"))
    embedding: str = param("pca", "embedding z: pca / pool / raw (fixed, fitted on each seed's training subsample) or "
                           "learned (a linear map trained jointly with the classifier from scratch)", choices=EMBEDDING_KINDS)
    dim: int = param(32, "embedding dimension E (ignored for raw)", min=1)
    hidden: int = param(64, "hidden width H of the TwoLayer classifier (notes 001 §1.1)", min=1)
    activation: str = param("silu", "activation σ of the TwoLayer", choices=tuple(_act.names()))
    n_train: int = param(300, "baseline training-set size N₀ (balanced, N/10 per class)", min=10)
    sizes: tuple[int, ...] = param((100, 300, 1000, 3000, 10000), "training-set sizes of the size sweep (full-batch "
                                   "GD at the baseline η)", min=10, allow_empty=False)
    lr_fraction: float = param(0.2, "baseline step f₀: η = f₀·2/λ_max(θ₀) (GD is stable for f < 1); 0.2 keeps "
                               "η·λ_max/2 ≈ 0.3 at the S_E minimum for N = 300 and ≈ 0.6 for N = 10,000 (the "
                               "curvature grows with N), so the whole size sweep stays gradient-flow-faithful, while "
                               "f = 0.5 reached 1.5 — past the stability limit — at N = 10,000", min=0.0,
                               exclusive_min=True)
    lr_fractions: tuple[float, ...] = param((0.02, 0.05, 0.2, 0.5, 0.9), "step-size sweep: fractions f of the "
                                            "stability limit 2/λ_max(θ₀), small … near the limit", min=0.0,
                                            exclusive_min=True, allow_empty=False)
    batch_sizes: tuple[int, ...] = param((64, 16), "mini-batch sizes of the batch sweep (besides the full batch)",
                                         min=1, allow_empty=False)
    momentum: float = param(0.9, "heavy-ball momentum μ of the optimizer sweep (lr = η(1 − μ): same effective step)",
                            min=0.0, max=0.999)
    adam_lr: float = param(1e-3, "Adam's learning rate in the optimizer sweep", min=0.0, exclusive_min=True)
    adam_steps: int = param(1500, "Adam's step budget at N₀ (its step is adam_lr, not a fraction of 2/λ_max): "
                            "adam_steps·max(1, N/N₀), at most max_steps", min=2)
    steps: int = param(400, "step budget at the baseline (f₀, N₀): a regime with fraction f and N samples may run "
                       "budget = steps·(f₀/f)·max(1, N/N₀) steps (the same gradient-flow time η·k, growing with N "
                       "because a larger training set overfits later; Adam: adam_steps·max(1, N/N₀)), at most max_steps; "
                       "it ends earlier once S_E has passed its minimum (pass_margin, pass_patience)", min=2)
    max_steps: int = param(15000, "cap on the step budget of one run", min=2)
    pass_margin: float = param(0.02, "early end of a run, stated before it: training stops at the first measurement k "
                               "where the rule has fired, S_E(k) ≥ min_{j≤k} S_E(j) + pass_margin (nats) and "
                               "k ≥ (1 + pass_patience)·argmin_{j≤k} S_E; a run that never meets it uses its whole "
                               "budget, and one whose S_E minimum is its last measurement stays inconclusive", min=0.0,
                               exclusive_min=True)
    pass_patience: float = param(0.5, "see pass_margin: the run goes on at least this fraction of argmin S_E past the "
                                 "minimum before it may end", min=0.0)
    measure_every: int = param(1, "∇S_T·∇S_E, S_T, S_E every this many steps at least (the measurement grid)", min=1)
    grid_samples: int = param(1000, "the grid widens with N: every max(measure_every, ⌈N_train / grid_samples⌉) steps, "
                              "so that the full-set gradients cost about as much as the training itself", min=1)
    seeds: int = param(3, "seeds of the gradient-flow-like cells (full-batch GD / heavy ball with f < near_limit; "
                       "options.seed, +1, …): a seed redraws the data subsample, refits the embedding, reinitialises "
                       "the model and reorders the batches", min=2)
    noisy_seeds: int = param(20, "seeds of the cells whose gap scatters over seeds: mini-batch, Adam and f ≥ near_limit "
                             "(3 seeds gave t-intervals straddling the tolerance there: b64 −306 [−740, 128] steps, "
                             "Adam +39 [−0.3, 78]; with that spread ~8 seeds put the 90 % interval on one side: 20 for margin, "
                             "they are cheap)",
                             min=2)
    near_limit: float = param(0.75, "step fractions f ≥ this count as near the stability limit (noisy_seeds)",
                              min=0.0, exclusive_min=True)
    test_per_class: int | None = param(100, "S_E on this many test samples per class (None: the whole test split)", min=1)
    lambda_samples: int = param(500, "training samples on which λ_max of the FIM is measured (Lanczos)", min=10)
    step_tolerance: float = param(0.05, "'holds' needs |gap in steps| ≤ max(measure_every, this × mean argmin step)",
                                  min=0.0)
    nats_tolerance: float = param(0.01, "'holds' needs S_E(rule) − min S_E ≤ this many nats", min=0.0)
    level: float = param(0.9, "level of the t-intervals over seeds", min=0.5, max=0.999)
    num_threads: int = param(1, "torch intra-op threads during the run (these nets are small: 1 is fastest, on a busy "
                             "2-core machine by 20× and more); 0 = leave as is", min=0)
    cache: bool = param(True, "cache the loaded splits and fixed embeddings on disk")
    cache_dir: str | None = param(None, "cache directory (None: the default cache)")
    PRESETS: ClassVar[dict] = {
        "quick": {"dim": 16, "hidden": 32, "n_train": 100, "sizes": (100, 300), "lr_fraction": 0.1,
                  "lr_fractions": (0.1, 0.4, 0.9), "batch_sizes": (32, 8), "steps": 600, "max_steps": 2000,
                  "adam_steps": 600, "seeds": 2, "noisy_seeds": 3, "test_per_class": 50, "lambda_samples": 100},
        "default": {},
        "full": {"embedding": "learned", "dim": 128, "hidden": 256, "sizes": (100, 300, 1000, 3000, 10000, 30000),
                 "seeds": 5, "noisy_seeds": 20, "steps": 1600, "max_steps": 60000, "test_per_class": None},
    }


@short_repr
@dataclass
class EarlyStopResult:
    regimes: list = field(default_factory=list)  # per regime: settings, per-seed runs, intervals, verdict
    baseline: str = ""  # key of the gradient-flow baseline regime


# ----------------------------------------------------------------------------- judging


def summarise_regime(runs: list[dict], level: float) -> dict:
    """Intervals over seeds of the rule step, argmin S_E and the gaps (steps, nats), and the censoring counts.

    Runs with status "none" (no minimum, no stop) are left out of the intervals; censored runs
    ("late" / "early", see :func:`run_gaps`) enter with their bound.
    """
    from actionlab.stats import mean_interval

    counts = {s: sum(r["gap"]["status"] == s for r in runs) for s in ("measured", "late", "early", "none")}
    used = [r for r in runs if r["gap"]["status"] != "none"]
    out: dict = {"counts": counts, "informative": len(used)}

    def iv(values):
        if len(values) < 2:
            return None
        i = mean_interval(np.asarray(values, float), level=level, method="t")
        return {"estimate": i.estimate, "low": i.low, "high": i.high, "level": level, "n": i.n}

    out["gap_steps"] = iv([r["gap"]["gap_steps"] for r in used])
    out["gap_nats"] = iv([r["gap"]["gap_nats"] for r in used])
    out["min_step"] = iv([r["comparison"]["min_step"] for r in runs])
    fired = [r["comparison"]["raw"]["rule_step"] for r in runs if r["comparison"]["raw"]["rule_step"] is not None]
    out["rule_step"] = iv(fired)
    out["lambda_ratio_at_min"] = iv([r["eta_lambda_at_min"] for r in runs if r.get("eta_lambda_at_min") is not None])
    return out


def judge_regime(gap_steps: dict | None, gap_nats: dict | None, step_tol: float, nats_tol: float,
                 counts: dict | None = None, firm_seeds: int = 3) -> tuple[str, str]:
    """Verdict and strength of one regime from the intervals of its gaps (stated before measuring).

    "holds": the gap-in-steps interval lies within ±step_tol and the gap-in-nats interval below
    nats_tol, with no censored run.  A seed whose S_E minimum is still its last measurement with no
    firing (status "none": the budget ended before S_E passed its minimum) makes the regime
    "inconclusive", whatever the other seeds say.  "does not hold": the gap interval lies wholly beyond +step_tol
    or −step_tol, or the nats interval wholly above nats_tol (censored bounds only strengthen these,
    as long as all censoring is in one direction).  Otherwise "inconclusive".  Strength: "firm" for
    a decided verdict on ≥ ``firm_seeds`` informative seeds, else "indicative".
    """
    counts = counts or {}
    if gap_steps is None or gap_nats is None or counts.get("none", 0):
        return "inconclusive", "indicative"
    late, early = counts.get("late", 0), counts.get("early", 0)
    if late and early:
        return "inconclusive", "indicative"
    strength = "firm" if gap_steps["n"] >= firm_seeds else "indicative"
    beyond_late = gap_steps["low"] > step_tol and not early
    beyond_early = gap_steps["high"] < -step_tol and not late
    if beyond_late or beyond_early or (gap_nats["low"] > nats_tol and not early):
        return "does not hold", strength
    inside = -step_tol <= gap_steps["low"] and gap_steps["high"] <= step_tol and gap_nats["high"] <= nats_tol
    if inside and not (late or early):
        return "holds", strength
    return "inconclusive", "indicative"


def measurement_grid(config: EarlyStopConfig, n_train: int) -> int:
    """Steps between measurements: max(measure_every, ⌈N_train / grid_samples⌉)."""
    return max(config.measure_every, math.ceil(n_train / config.grid_samples))


def step_tolerance(summary: dict, config: EarlyStopConfig, n_train: int) -> float:
    """max(grid, step_tolerance × mean argmin step): the ± band of 'the rule fires at the minimum'."""
    mean_min = summary["min_step"]["estimate"] if summary["min_step"] else 0.0
    return float(max(measurement_grid(config, n_train), config.step_tolerance * mean_min))


def step_budget(config: EarlyStopConfig, regime: Regime) -> int:
    """Most steps of one run: steps·(f₀/f)·max(1, N/N₀) (Adam: adam_steps·max(1, N/N₀)), at most max_steps."""
    grow = max(1.0, regime.n_train / config.n_train)
    if regime.optimizer == "adam":
        return int(min(config.max_steps, math.ceil(config.adam_steps * grow)))
    return int(min(config.max_steps, math.ceil(config.steps * config.lr_fraction / regime.lr_fraction * grow)))


def is_noisy(config: EarlyStopConfig, regime: Regime) -> bool:
    """Mini-batch, Adam or f ≥ near_limit: the cells whose gap scatters over seeds (they get noisy_seeds)."""
    return regime.batch_size is not None or regime.optimizer == "adam" or regime.lr_fraction >= config.near_limit


def regime_seeds(config: EarlyStopConfig, regime: Regime, first: int) -> list[int]:
    """The seeds of one regime: ``first`` + 0, 1, … (noisy_seeds or seeds of them, see :func:`is_noisy`)."""
    return [first + i for i in range(config.noisy_seeds if is_noisy(config, regime) else config.seeds)]


def passed_minimum(step: int, s_e: float, min_step: int, min_s_e: float, fired: bool, margin: float,
                   patience: float) -> bool:
    """The early end of a run: the rule has fired, S_E ≥ min S_E + margin and step ≥ (1 + patience)·argmin S_E."""
    return bool(fired and s_e >= min_s_e + margin and step >= (1.0 + patience) * min_step)


class _PassedMinimum:
    """Callback after the GradientAlignmentStop: ends training once :func:`passed_minimum` holds at a measurement."""

    def __init__(self, rule, margin: float, patience: float) -> None:
        self.rule, self.margin, self.patience = rule, margin, patience
        self.best, self.best_step, self.seen, self.stop_reason = math.inf, 0, 0, ""

    def on_step_end(self, state) -> bool:
        recs = self.rule.records
        for rec in recs[self.seen:]:  # the running minimum over all measurements (the first one wins ties)
            if rec.S_E < self.best:
                self.best, self.best_step = rec.S_E, rec.step
        self.seen = len(recs)
        last = recs[-1] if recs else None
        if last is None or last.step != state.step:
            return False
        if passed_minimum(last.step, last.S_E, self.best_step, self.best, self.rule.stop_step is not None,
                          self.margin, self.patience):
            self.stop_reason = (f"S_E passed its minimum: {last.S_E:.4f} ≥ {self.best:.4f} + {self.margin} at step "
                                f"{last.step} ≥ (1 + {self.patience})·{self.best_step}; rule fired at "
                                f"{self.rule.stop_step}")
            return True
        return False


# ----------------------------------------------------------------------------- training one run


class _SnapshotAtMin:
    """Callback placed after the GradientAlignmentStop: keeps the parameters at the smallest S_E seen."""

    def __init__(self, rule) -> None:
        self.rule, self.best, self.state = rule, math.inf, None

    def _look(self, state) -> None:
        rec = self.rule.records[-1] if self.rule.records else None
        if rec is not None and rec.step == state.step and rec.S_E < self.best:
            self.best, self.state = rec.S_E, copy.deepcopy(state.model.state_dict())

    def on_fit_start(self, state) -> None:
        self._look(state)

    def on_step_end(self, state) -> bool:
        self._look(state)
        return False


def _data(config: EarlyStopConfig, n: int, seed: int, store: dict):
    """Embedded (train, test) of N = n samples for one seed (memoised in ``store``); pixels for 'learned'."""
    if (n, seed) not in store:
        dspec = DataSpec.from_config(config, seed, train_per_class=max(1, n // 10))
        tr, te = load_splits(dspec)
        if config.embedding != "learned":
            dim = None if config.embedding == "raw" else config.dim
            tr, te, _, _ = get_embedding(dspec, config.embedding, dim, learned_config_from(config), splits=(tr, te),
                                         build=BuildOptions(seed=seed, cache=config.cache, cache_dir=config.cache_dir))
        store[(n, seed)] = (tr, te)
    return store[(n, seed)]


def _model(config: EarlyStopConfig, tr, seed: int) -> torch.nn.Module:
    """The TwoLayer (for 'learned': a Glorot-initialised linear embedding in front), initialised from ``seed``."""
    from actionlab.models import TwoLayer

    gen = torch.Generator().manual_seed(seed)
    if config.embedding != "learned":
        return TwoLayer.glorot(tr.num_classes, config.hidden, tr.z.shape[1], activation=config.activation, generator=gen)
    proj = torch.nn.Linear(tr.z.shape[1], config.dim)
    bound = math.sqrt(6.0 / (tr.z.shape[1] + config.dim))
    with torch.no_grad():
        proj.weight.uniform_(-bound, bound, generator=gen)
        proj.bias.zero_()
    clf = TwoLayer.glorot(tr.num_classes, config.hidden, config.dim, activation=config.activation, generator=gen)
    return EmbeddedClassifier(proj, clf)


def _lambda_max(model: torch.nn.Module, z: torch.Tensor, samples: int) -> float:
    """λ_max of the FIM of the softmax outputs (Gauss–Newton part of ∇²S_T) on the first ``samples`` rows."""
    from actionlab.fisher.empirical import lanczos_lambda_max

    p = next(model.parameters())
    x = z[:samples].to(device=p.device, dtype=p.dtype)
    return lanczos_lambda_max(model, x, outputs="cross_entropy", tol=1e-4)


def _optimizer(config: EarlyStopConfig, regime: Regime, lam0: float):
    from actionlab.train import OptimizerSpec

    eta = regime.lr_fraction * 2.0 / lam0
    if regime.optimizer == "gd":
        return OptimizerSpec("sgd", lr=eta), eta
    if regime.optimizer == "momentum":
        return OptimizerSpec("sgd", lr=eta * (1.0 - config.momentum), momentum=config.momentum), eta
    return OptimizerSpec("adam", lr=config.adam_lr), None


def train_regime(config: EarlyStopConfig, regime: Regime, seed: int, device, store: dict) -> dict:
    """One seed of one regime: λ_max(θ₀), the training with the rule recorded, the comparison and the gaps."""
    from actionlab import train as _train

    tr, te = _data(config, regime.n_train, seed, store)
    model = _model(config, tr, seed).to(device)
    lam0 = _lambda_max(model, tr.z, config.lambda_samples)
    opt, eta = _optimizer(config, regime, lam0)
    steps = step_budget(config, regime)
    every = measurement_grid(config, len(tr.z))
    rule = _train.GradientAlignmentStop((tr.z, tr.labels), (te.z, te.labels), every=every,
                                        stop=False, seed=seed)
    snap = _SnapshotAtMin(rule)
    ends = _PassedMinimum(rule, config.pass_margin, config.pass_patience)
    bs = len(tr.z) if regime.batch_size is None else regime.batch_size
    spec = _train.TrainSpec(epochs=math.ceil(steps / math.ceil(len(tr.z) / bs)), max_steps=steps, batch_size=bs,
                            seed=seed, eval_every=steps, progress=False)
    hist = _train.Trainer(model, (tr.z, tr.labels), optimizer=opt, spec=spec, callbacks=(rule, snap, ends),
                          device=device).run()
    trace = rule.as_dict()
    cmp = compare_rule(trace["step"], trace["S_E"], trace["dot"], 0.0)
    out = {"seed": seed, "n_train": len(tr.z), "lambda_max_init": lam0, "lr": opt.lr, "eta": eta, "budget": steps,
           "steps": hist.steps_done, "passed_minimum": bool(ends.stop_reason),
           "every": every, "batch_size": bs, "comparison": cmp, "gap": run_gaps(cmp), "stop_reason": hist.stop_reason,
           "wall_time_s": hist.wall_time_s, "trace": _thin(trace)}
    if snap.state is not None and not cmp["min_at_end"]:
        model.load_state_dict(snap.state)
        out["lambda_max_at_min"] = _lambda_max(model, tr.z, config.lambda_samples)
        # η_eff·λ_max/2 at the minimum: < 1 where GD is still stable there (η_eff = η for GD and heavy ball)
        out["eta_lambda_at_min"] = None if eta is None else eta * out["lambda_max_at_min"] / 2.0
    return out


def _thin(trace: dict, points: int = 400) -> dict:
    """The trace's columns at ≤ ``points`` evenly spaced measurements (results.json stays small)."""
    n = len(trace["step"])
    idx = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))
    return {k: [trace[k][i] for i in idx] for k in ("step", "S_T", "S_E", "dot", "cosine")}


# ----------------------------------------------------------------------------- the experiment


@register_experiment("early-stop", config=EarlyStopConfig, sources=("001", "000"), order=45,
                     help="the §3 rule ∇S_T·∇S_E ≤ 0 against argmin S_E: gradient-flow GD, then step size, "
                          "batch size, optimizer and training-set size (notes §3)")
def run(config: EarlyStopConfig, options: RunOptions) -> EarlyStopResult:
    from tqdm.auto import tqdm

    seed_everything(options.seed)
    run_folder = RunFolder(options, "early-stop", config, seed=options.seed,
                           data={"dataset": config.dataset, "standardize": config.standardize,
                                 "sizes": sorted({config.n_train, *config.sizes})})
    grid = regime_grid(config)
    res = EarlyStopResult(baseline=grid[0].key)
    bar = tqdm(total=sum(len(regime_seeds(config, r, options.seed)) for r in grid), desc="early-stop", disable=None)
    try:
        with torch_threads(config.num_threads):
            _run_grid(config, options, grid, res, bar)
    finally:
        bar.close()
    for claim in regime_claims(res, config, options):
        run_folder.add_claim(claim)
    _figure(run_folder, res)
    run_folder.finish(res, _summary(run_folder, res, config))
    return res


def _run_grid(config: EarlyStopConfig, options: RunOptions, grid: list[Regime], res: EarlyStopResult, bar) -> None:
    """Train every regime on its seeds, summarise over seeds and judge it (appends to ``res.regimes``)."""
    store: dict = {}
    for regime in grid:
        runs = []
        seeds = regime_seeds(config, regime, options.seed)
        for s in seeds:
            runs.append(train_regime(config, regime, s, options.device, store))
            bar.update()
        summ = summarise_regime(runs, config.level)
        tol = step_tolerance(summ, config, regime.n_train)
        verdict, strength = judge_regime(summ["gap_steps"], summ["gap_nats"], tol, config.nats_tolerance,
                                         summ["counts"])
        res.regimes.append({"key": regime.key, "label": regime.label, "sweeps": list(regime.sweeps),
                            "optimizer": regime.optimizer, "lr_fraction": regime.lr_fraction,
                            "batch_size": regime.batch_size, "n_train": regime.n_train, "seeds": seeds,
                            "runs": runs, "summary": summ, "step_tolerance": tol, "verdict": verdict,
                            "strength": strength})


def _fmt_iv(iv: dict | None, digits: int = 0) -> str:
    if iv is None:
        return "—"
    f = f"{{:.{digits}f}}"
    return f"{f.format(iv['estimate'])} [{f.format(iv['low'])}, {f.format(iv['high'])}]"


def gap_statement(summary: dict) -> str:
    """One regime in words: "fires early by X [lo, hi] steps, costing Y [lo, hi] nats", with its censoring.

    The direction is the sign of the mean gap (rule step − argmin S_E); the bracket is the interval of
    that magnitude (a bound of the other sign means the interval reaches the other side).
    """
    g, n, c = summary["gap_steps"], summary["gap_nats"], summary.get("counts", {})
    if c.get("none"):
        return (f"S_E was still falling at the end of the step budget in {c['none']} of "
                f"{sum(c.values())} seeds (minimum not reached): inconclusive")
    if g is None or n is None:
        return "fewer than two informative seeds: no interval"
    sign = 1.0 if g["estimate"] >= 0 else -1.0
    lo, hi = sorted((sign * g["low"], sign * g["high"]))
    where = (f"fires at argmin S_E (gap {g['estimate']:.1f} [{g['low']:.1f}, {g['high']:.1f}] steps)"
             if g["estimate"] == 0 else
             f"fires {'late' if sign > 0 else 'early'} by {sign * g['estimate']:.1f} [{lo:.1f}, {hi:.1f}] steps")
    text = (f"{where}, costing "
            f"{n['estimate']:.4f} [{n['low']:.4f}, {n['high']:.4f}] nats ({g['level']:.0%} t-intervals, {g['n']} seeds")
    censored = [f"{c[k]} {k}" for k in ("late", "early") if c.get(k)]
    return text + (f"; censored at their bound: {', '.join(censored)})" if censored else ")")



def _evidence(reg: dict, config: EarlyStopConfig, options: RunOptions) -> dict:
    s = reg["summary"]
    runs = reg["runs"]
    return {"preset": options.preset, "seeds": {"number": len(reg["seeds"]), "list": reg["seeds"]},
            "n_train": reg["n_train"], "batch_size": reg["batch_size"] or "full", "optimizer": reg["optimizer"],
            "lr_fraction_of_2_over_lambda0": reg["lr_fraction"], "widths": {"E": config.dim, "H": config.hidden},
            "embedding": config.embedding, "test_samples": "all" if config.test_per_class is None
            else 10 * config.test_per_class, "measurement_grid_steps": measurement_grid(config, reg["n_train"]),
            "statistic": "gap = raw rule step − argmin S_E (steps) and S_E(rule) − min S_E (nats), mean over seeds",
            "interval": {"gap_steps": s["gap_steps"], "gap_nats": s["gap_nats"], "level": config.level,
                         "method": "t over seeds"},
            "counts": s["counts"],
            "statement": gap_statement(s),
            "step_budget": runs[0]["budget"] if runs else None,
            "steps_run": [r["steps"] for r in runs],
            "min_at_end_of_budget_seeds": sum(bool(r["comparison"]["min_at_end"]) for r in runs),
            "stopping_rule": f"a run ends at step budget = steps·(f₀/f)·max(1, N/N₀) (cap {config.max_steps}), or "
                             f"earlier at the first measurement k where the rule has fired, S_E(k) ≥ min S_E + "
                             f"{config.pass_margin} nats and k ≥ (1 + {config.pass_patience})·argmin S_E; a seed "
                             "whose S_E minimum is its last measurement (rule not fired) makes the cell inconclusive",
            "threshold": {"steps": reg["step_tolerance"], "nats": config.nats_tolerance},
            "decision_rule": "holds if the gap-in-steps interval ⊂ ±max(grid, step_tolerance·mean argmin step) and the "
                             "gap-in-nats interval < nats_tolerance, no censored seed; does not hold if either interval "
                             "lies wholly beyond its threshold (censored seeds enter with their bound); a seed whose S_E "
                             "minimum is its last measurement (budget too short) makes the cell inconclusive; else "
                             "inconclusive",
            "design": "one-factor-at-a-time sweeps around full-batch GD (f₀, N₀), not the full product (time budget)"}


def regime_claims(res: EarlyStopResult, config: EarlyStopConfig, options: RunOptions) -> list[Claim]:
    """One claim per regime ("001.early-stop.<key>") and the summary "001.early-stop" (the baseline's verdict)."""
    claims = []
    for reg in res.regimes:
        s = reg["summary"]
        claims.append(Claim(
            "001", f"the rule ∇S_T·∇S_E = 0 fires at argmin S_E (eq. 7) — {reg['label']}", "rule step = argmin S_E",
            {"gap_steps": s["gap_steps"] and s["gap_steps"]["estimate"], "gap_nats": s["gap_nats"] and s["gap_nats"]["estimate"],
             "argmin_step": s["min_step"] and s["min_step"]["estimate"]},
            reg["verdict"],
            f"{gap_statement(s)}; seeds measured/late/early/no-min: {s['counts']}; tolerance "
            f"±{reg['step_tolerance']:.0f} steps, {config.nats_tolerance} nats",
            id=f"001.early-stop.{reg['key']}", evidence=_evidence(reg, config, options), strength=reg["strength"]))
    base = next(r for r in res.regimes if r["key"] == res.baseline)
    claims.append(Claim(
        "001", "training early-stops at ∇S_T·∇S_E = 0, where S_E starts to increase (eq. 7; gradient flow)",
        "rule step = argmin S_E", overall_measured(res), base["verdict"],
        "verdict of the regime of the derivation (full-batch GD, small η, full-set gradients every step); the other "
        "regimes' verdicts are the claims 001.early-stop.<regime>",
        id="001.early-stop", evidence=_evidence(base, config, options), strength=base["strength"]))
    return claims


def overall_measured(res: EarlyStopResult) -> dict:
    """The numbers the key finding needs: baseline gap, the largest η fraction that holds, the others' gaps."""
    base = next(r for r in res.regimes if r["key"] == res.baseline)

    def gap(r):
        g = r["summary"]["gap_steps"]
        return None if g is None else round(g["estimate"], 1)

    holding = []  # the step fractions up to the first one that does not hold
    for r in sorted((r for r in res.regimes if "step size" in r["sweeps"]), key=lambda r: r["lr_fraction"]):
        if r["verdict"] != "holds":
            break
        holding.append(r["lr_fraction"])
    pick = lambda sweep, cond: {r["label"]: f"{gap(r)} steps ({r['verdict']})"  # noqa: E731
                                for r in res.regimes if sweep in r["sweeps"] and cond(r)}
    say = lambda sweep, cond: {  # noqa: E731  the per-regime sentence: direction, size, intervals, verdict
        r["label"]: f"{gap_statement(r['summary'])} — {r['verdict']} ({r.get('strength', 'indicative')})"
        for r in res.regimes if sweep in r["sweeps"] and cond(r)}
    return {"baseline": f"{base['label']}: gap {gap(base)} steps, "
                        f"{_fmt_iv(base['summary']['gap_nats'], 4)} nats",
            "gd_holds_up_to_f": max(holding) if holding else None,  # η ≤ f·2/λ_max(θ₀)
            "step_size": pick("step size", lambda r: r["key"] != res.baseline),
            "minibatch": pick("batch size", lambda r: r["batch_size"] is not None),
            "optimizer": pick("optimizer", lambda r: r["optimizer"] != "gd"),
            "size": pick("training-set size", lambda r: r["key"] != res.baseline),
            "step_size_gaps": say("step size", lambda r: r["key"] != res.baseline),
            "minibatch_gaps": say("batch size", lambda r: r["batch_size"] is not None),
            "optimizer_gaps": say("optimizer", lambda r: r["optimizer"] != "gd"),
            "size_gaps": say("training-set size", lambda r: r["key"] != res.baseline)}


# ----------------------------------------------------------------------------- figures and summary

_SWEEPS = ("step size", "batch size", "optimizer", "training-set size")


def _sweep_x(reg: dict, sweep: str) -> str:
    if sweep == "step size":
        return f"{reg['lr_fraction']:g}"
    if sweep == "batch size":
        return "full" if reg["batch_size"] is None else str(reg["batch_size"])
    if sweep == "optimizer":
        return {"gd": "GD", "momentum": "momentum", "adam": "Adam"}[reg["optimizer"]]
    return str(reg["n_train"])


def _sweep_order(regime: dict, sweep: str) -> tuple:
    """Left-to-right order of a sweep's panel: step size and N ascending, full batch before mini-batches
    (largest first), the optimizers in the grid's order."""
    if sweep == "step size":
        return (regime["lr_fraction"],)
    if sweep == "training-set size":
        return (regime["n_train"],)
    if sweep == "batch size":
        return (-(regime["batch_size"] or math.inf),)
    return (0,)


def _figure(run_folder: RunFolder, res: EarlyStopResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xlabels = {"step size": "η / (2/λ_max(θ₀))", "batch size": "batch size", "optimizer": "optimizer",
               "training-set size": "N_train"}
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.4), layout="constrained")
    for j, sweep in enumerate(_SWEEPS):
        regs = sorted((r for r in res.regimes if sweep in r["sweeps"]), key=lambda r: _sweep_order(r, sweep))
        xs = [_sweep_x(r, sweep) for r in regs]
        for i, (what, unit) in enumerate((("gap_steps", "steps"), ("gap_nats", "nats"))):
            ax = axes[i, j]
            for k, r in enumerate(regs):
                iv = r["summary"][what]
                pts = [x["gap"][what] for x in r["runs"] if x["gap"][what] is not None]
                ax.plot([k] * len(pts), pts, "o", color="0.6", ms=3, label="one seed" if k == 0 else None)
                if iv is not None:
                    ax.errorbar([k], [iv["estimate"]], yerr=[[iv["estimate"] - iv["low"]], [iv["high"] - iv["estimate"]]],
                                fmt="s", color="tab:red", capsize=3,
                                label=f"mean, {iv['level']:.0%} t-interval" if k == 0 else None)
            ax.axhline(0, color="k", lw=0.6)
            ax.set_xticks(range(len(regs)), xs)
            ax.set(xlabel=xlabels[sweep], ylabel=f"rule − argmin S_E ({unit})" if what == "gap_steps"
                   else "S_E(rule) − min S_E (nats)", title=f"{sweep}: gap in {unit}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8)  # the title keeps the top
    fig.suptitle("∇S_T·∇S_E = 0 (001 eq. 7) against argmin S_E, per regime (censored seeds at their bound)", fontsize=10)
    run_folder.save_figure(fig, "early_stop_gaps")
    _trace_figure(run_folder, res, plt)


def _trace_figure(run_folder: RunFolder, res: EarlyStopResult, plt) -> None:
    n = len(res.regimes)
    cols = 4
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    for ax, reg in zip(axes.ravel(), res.regimes):
        r0 = reg["runs"][0]
        t, c = r0["trace"], r0["comparison"]
        ax.plot(t["step"], t["S_E"], color="tab:orange", label="S_E (test action)")
        ax.plot(t["step"], t["S_T"], color="tab:blue", label="S_T (training action)")
        ax.axvline(c["min_step"], color="g", lw=0.9, label="argmin S_E")
        if c["raw"]["rule_step"] is not None:
            ax.axvline(c["raw"]["rule_step"], color="r", ls="--", lw=0.9, label="rule ∇S_T·∇S_E ≤ 0")
        ax.set_title(reg["label"], fontsize=7.5)
        ax.set(xlabel="optimizer step", ylabel="action (nats)")
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    handles: dict = {}
    for a in axes.ravel()[:n]:
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(f"traces of seed {res.regimes[0]['seeds'][0]} per regime", fontsize=10)
    run_folder.save_figure(fig, "early_stop_traces")


def regime_table(res: EarlyStopResult) -> str:
    """The per-regime Markdown table: rule step, argmin S_E, gaps with intervals, η·λ_max/2 at the minimum, verdict."""
    rows = ["| regime | sweeps | rule step | argmin S_E | gap (steps) | gap (nats) | η·λ_max/2 at min | seeds m/l/e/n | verdict |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in res.regimes:
        s = r["summary"]
        c = s["counts"]
        rows.append(f"| {r['label']} | {', '.join(r['sweeps'])} | {_fmt_iv(s['rule_step'])} | {_fmt_iv(s['min_step'])} | "
                    f"{_fmt_iv(s['gap_steps'], 1)} | {_fmt_iv(s['gap_nats'], 4)} | {_fmt_iv(s['lambda_ratio_at_min'], 2)} | "
                    f"{c['measured']}/{c['late']}/{c['early']}/{c['none']} | {r['verdict']} ({r['strength']}) |")
    return "\n".join(rows)


def _summary(run_folder: RunFolder, res: EarlyStopResult, config: EarlyStopConfig) -> str:
    head = (f"# early-stop — ∇S_T·∇S_E = 0 (001 §3, eq. 7) against argmin S_E\n\n"
            f"Data {config.dataset} (standardize={config.standardize}), embedding **{config.embedding}** "
            f"(E = {config.dim}), TwoLayer H = {config.hidden}, {config.activation}; baseline full-batch GD with "
            f"η = {config.lr_fraction}·2/λ_max(θ₀), N₀ = {config.n_train}, budget {config.steps} steps; S_T, S_E, ∇S_T·∇S_E on "
            f"the full training set and {'the whole test split' if config.test_per_class is None else f'{10 * config.test_per_class} test samples'} "
            f"every max({config.measure_every}, ⌈N/{config.grid_samples}⌉) steps; λ_max = top FIM eigenvalue (Lanczos, {config.lambda_samples} training "
            f"samples); {config.seeds} seeds per full-batch GD / momentum regime with f < {config.near_limit}, "
            f"{config.noisy_seeds} per mini-batch, Adam or f ≥ {config.near_limit} regime, {config.level:.0%} "
            f"t-intervals. Step budget steps·(f₀/f)·max(1, N/N₀) ≤ {config.max_steps}; a run ends earlier at the "
            f"first measurement where the rule has fired, S_E ≥ min S_E + {config.pass_margin} nats and the step is "
            f"≥ (1 + {config.pass_patience})·argmin S_E. Tolerances (set before the run): "
            f"±max(grid, {config.step_tolerance}·argmin step) steps and {config.nats_tolerance} nats. "
            f"Seeds m/l/e/n: gap measured / rule never fired (late, lower bound) / S_E still falling when the rule fired "
            f"(early, bound) / neither.\n\n")
    per_regime = "\n".join(f"- {r['label']}: {gap_statement(r['summary'])} — **{r['verdict']}** ({r['strength']})"
                           for r in res.regimes)
    return (head + regime_table(res) + "\n\n## Per regime\n\n" + per_regime + "\n\n## Claims\n\n"
            + claims_table_md(run_folder.claims))
