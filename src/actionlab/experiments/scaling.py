"""``actionlab scaling``: the notes' own scaling script, and the E question.

Note 001 (end of §2.4): "the power law between the model size and the optimized loss appears
only when E has been large enough".  The notes come with the script that measured it
(shuiruge/entropy ``scales/scaling_law_on_fashion_mnist_v2.py``, summarised in
``seeds/papers.md``); this experiment is that script, repeated over seeds and over E:

1. Fashion-MNIST pixels scaled to [0, 1] (x/255), no other preprocessing.
2. **Base model** (one per E and seed): x ↦ A x + a (a linear embedding of width E) ↦
   relu(1024) ↦ softmax(10), Glorot-uniform weights and zero biases (Keras' Dense defaults),
   trained by AdamW with Keras' defaults (lr 1e-3, weight decay 0.004, β = (0.9, 0.999),
   ε = 1e-7), batch 4096, EarlyStopping(monitor="val_loss", patience 0, no restoring of the
   best weights), at most 10,000 epochs.  Its embedding (A, a) is then frozen.
3. **Models of width n** for n = int(2^x), x = linspace(4, 12, 10) (n = 16 … 4096): the frozen
   embedding ↦ relu(n) ↦ relu(n) ↦ softmax(10), trained the same way.
4. The loss is the test cross-entropy; the size is the script's parameter count
   N(n) = E·n + n·n + n·10 (weights only: the embedding and every bias excluded).
5. The fits: the saturating power law L(N) = a·N^(−α) + L∞ with a 68 % interval on α from the
   variation between seeds and a comparison against a pure power law, an exponential
   saturation and a logarithmic law by AICc (:func:`actionlab.stats.fit_power_law`); beside it
   the script's own fit, ``scipy.stats.linregress`` of log₂ L on log₂ N after dropping points
   outside mean ± 2σ of the absolute residuals (:func:`actionlab.stats.robust_loglog_fit`).

**Seeds** are independent replications: seed k retrains the base model (so the embedding),
redraws every initialisation and batch order and, with ``validation="holdout"``, the held-out
validation rows.  The interval on α therefore includes the variation of the embedding.

**Validation.**  The script early-stops on the *test* split (``validation_data=(x_test,
y_test)``), so its test loss is selected on the test set; ``validation="test"`` (the ``full``
preset) does exactly that, ``validation="holdout"`` (the default) stops on a stratified
``val_fraction`` of the training split, disjoint from the test split, and trains on the rest.

**The verdict** (criterion fixed before the numbers, :func:`judge_power_law_at`,
:func:`judge_only_large`): at one E "a power law appears" when a power law (saturating or
pure) has an AICc lower than every alternative's by ≥ 2 *and* the 68 % interval of α lies
above 0; "no power law" when an alternative is ahead by ≥ 2 (firm) or the α interval reaches
0 (indicative: no decrease detected); otherwise inconclusive.  "Only when E is large enough"
holds when the measured E's split into no-power-law at the smallest and power-law at the
largest, with one switch between.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from actionlab import stats
from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment
from actionlab.experiments._trained import DataSpec, shared_param
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = [
    "ScalingConfig",
    "ScalingResult",
    "KerasEarlyStopping",
    "notes_widths",
    "param_count",
    "judge_power_law_at",
    "judge_only_large",
    "run",
]

POWER_LAWS = ("saturating power law", "pure power law")  # the laws that count as "a power law"
AICC_MARGIN = 2.0  # ΔAICc ≥ 2: the usual threshold of substantial support
FIRM_SEEDS = 3  # fewer seeds per E give an indicative verdict at best


# --------------------------------------------------------------------------- the script's grid and size


def notes_widths(min_log2: float = 4.0, max_log2: float = 12.0, num: int = 10) -> list[int]:
    """The script's widths n = int(2^x) for x = ``np.linspace(min_log2, max_log2, num)`` (16 … 4096 for 4, 12, 10)."""
    if num < 2 or not max_log2 > min_log2:
        raise ValueError(f"need num ≥ 2 and max_log2 > min_log2, got {num}, {min_log2}, {max_log2}")
    return [int(2**x) for x in np.linspace(min_log2, max_log2, num)]


def param_count(dim: int, width: int, layers: int = 2, classes: int = 10) -> int:
    """The script's ``get_num_params`` of hidden units [E, n, …, n]: Σ n_i·n_{i+1} + n·classes.

    Weights only: the embedding's own 784·E and every bias are not counted.  For two layers,
    N = E·n + n² + 10·n.
    """
    units = [dim] + [width] * layers
    return sum(a * b for a, b in zip(units[:-1], units[1:])) + units[-1] * classes


# --------------------------------------------------------------------------- the verdicts


def judge_power_law_at(aicc_margin: float, alpha_low: float, n_seeds: int, quick: bool = False) -> tuple[str, str]:
    """(verdict, strength) of "a power law appears at this E".

    ``aicc_margin`` = AICc of the best non-power law − AICc of the best power law (saturating
    or pure; > 0 favours a power law); ``alpha_low`` = lower end of α's 68 % interval.

    * holds: margin ≥ 2 and α_low > 0 — firm with ≥ 3 seeds;
    * does not hold: margin ≤ −2 (an alternative law is clearly better) — firm with ≥ 3 seeds;
      or α_low ≤ 0 / undefined (no decrease detected between the seeds) — indicative;
    * inconclusive otherwise (|margin| < 2 with α_low > 0).

    A quick preset never gives a firm verdict.
    """
    enough = n_seeds >= FIRM_SEEDS and not quick
    if not math.isfinite(aicc_margin):
        return "inconclusive", "indicative"
    if aicc_margin <= -AICC_MARGIN:
        return "does not hold", "firm" if enough else "indicative"
    if not (math.isfinite(alpha_low) and alpha_low > 0):
        return "does not hold", "indicative"
    if aicc_margin >= AICC_MARGIN:
        return "holds", "firm" if enough else "indicative"
    return "inconclusive", "indicative"


def _only_large_pattern(flags: tuple[bool, ...]) -> bool:
    """True for (False, …, False, True, …, True) with at least one of each."""
    return 0 < sum(flags) < len(flags) and list(flags) == sorted(flags)


def judge_only_large(verdicts: list[str], strengths: list[str]) -> tuple[str, str]:
    """(verdict, strength) of "the power law appears only when E is large enough" from the per-E verdicts (E ascending).

    Holds when the E's split into "does not hold" at the smallest and "holds" at the largest
    with one switch between; does not hold for any other pattern (a power law already at the
    smallest E, none at the largest, or a switch back).  An inconclusive E is tried both ways:
    if the answer depends on it, the verdict is inconclusive.  Firm only when every per-E
    verdict is firm.  Fewer than two E's cannot answer the question (inconclusive).
    """
    if len(verdicts) != len(strengths):
        raise ValueError("one strength per verdict")
    if len(verdicts) < 2:
        return "inconclusive", "indicative"
    options = [(True,) if v == "holds" else (False,) if v == "does not hold" else (True, False) for v in verdicts]
    answers = {_only_large_pattern(flags) for flags in itertools.product(*options)}
    if len(answers) > 1:
        return "inconclusive", "indicative"
    verdict = "holds" if answers.pop() else "does not hold"
    return verdict, "firm" if all(s == "firm" for s in strengths) else "indicative"


# --------------------------------------------------------------------------- training as the script trains


class KerasEarlyStopping:
    """Keras' ``EarlyStopping(monitor="val_loss", min_delta=0, patience=p, restore_best_weights=r)`` as a Trainer callback.

    At the end of every epoch the mean cross-entropy on (x_val, y_val) is measured; it improves
    when strictly below the best so far.  Training stops at the end of the first epoch after
    the first one at which ``patience + 1`` epochs have passed without improvement (patience 0:
    the first epoch that does not improve).  With ``restore_best`` the best epoch's weights are
    loaded when it stops; without (the script) the model stays as it is.
    """

    def __init__(self, x_val: torch.Tensor, y_val: torch.Tensor, patience: int = 0, restore_best: bool = False,
                 batch_size: int = 8192) -> None:
        self.x_val, self.y_val = x_val, y_val
        self.patience, self.restore_best, self.batch_size = int(patience), bool(restore_best), int(batch_size)
        self.losses: list[float] = []
        self.best, self.best_epoch, self.wait = math.inf, -1, 0
        self.best_state: dict | None = None
        self.stopped_epoch: int | None = None
        self.stop_reason = ""

    def on_fit_start(self, state: Any) -> None:
        self.x_val, self.y_val = self.x_val.to(state.device), self.y_val.to(state.device)

    def validation_loss(self, model: nn.Module) -> float:
        """Mean cross-entropy of ``model`` on the validation rows (Keras' ``val_loss``)."""
        from actionlab.train import evaluate

        return evaluate(model, self.x_val, self.y_val, batch_size=self.batch_size)[0]

    def on_step_end(self, state: Any) -> bool:
        if state.epoch != int(state.epoch):  # not the end of an epoch
            return False
        loss = self.validation_loss(state.model)
        self.losses.append(loss)
        epoch = len(self.losses) - 1
        self.wait += 1
        if loss < self.best:
            self.best, self.best_epoch, self.wait = loss, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.stop_reason = f"validation loss did not improve for {self.wait} epoch(s) (epoch {epoch + 1})"
            if self.restore_best and self.best_state is not None:
                state.model.load_state_dict(self.best_state)
            return True
        return False


def _glorot_(linear: nn.Linear, gen: torch.Generator) -> nn.Linear:
    """Keras' Dense initialisation: weights U(−a, a), a = √(6/(fan_in + fan_out)); zero bias."""
    a = math.sqrt(6.0 / (linear.in_features + linear.out_features))
    with torch.no_grad():
        u = torch.rand(linear.weight.shape, generator=gen, dtype=torch.float64)
        linear.weight.copy_((2 * u - 1) * a)
        if linear.bias is not None:
            linear.bias.zero_()
    return linear


def _dense_stack(widths: list[int], *, linear_first: bool, gen: torch.Generator, dtype, device) -> nn.Sequential:
    """Dense layers widths[0] → … → widths[-1]; relu after every hidden layer (not after the first
    when ``linear_first``: the embedding), none after the output (softmax is in the loss)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(_glorot_(nn.Linear(a, b), gen))
        if i < len(widths) - 2 and not (linear_first and i == 0):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


def _sub_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _fit_like_keras(model: nn.Module, train: tuple, val: tuple, cfg: ScalingConfig, seed: int) -> dict:
    """``model.fit`` of the script: AdamW (Keras defaults), batch ``cfg.batch_size``, shuffled every epoch,
    :class:`KerasEarlyStopping` on ``val``, at most ``cfg.max_epochs`` epochs.  Returns the record."""
    from actionlab.train import Trainer, TrainSpec

    def adamw(params):
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)

    stopper = KerasEarlyStopping(*val, patience=cfg.patience, restore_best=cfg.restore_best)
    steps = cfg.max_epochs * math.ceil(len(train[0]) / cfg.batch_size)
    spec = TrainSpec(epochs=cfg.max_epochs, batch_size=cfg.batch_size, seed=seed, eval_every=steps, progress=False)
    cpu0 = time.process_time()
    hist = Trainer(model, train, optimizer=adamw, spec=spec, callbacks=(stopper,)).run()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return {"epochs": len(stopper.losses), "stopped_early": stopper.stopped_epoch is not None,
            "best_validation_loss": stopper.best, "final_validation_loss": stopper.losses[-1] if stopper.losses else None,
            "steps": hist.steps_done, "wall_time_s": hist.wall_time_s,
            "cpu_time_s": time.process_time() - cpu0}  # core-seconds of this process: the cost on an unloaded machine


# --------------------------------------------------------------------------- config and result


@dataclass
class ScalingConfig:
    """The notes' scaling script (base model → frozen embedding → two relu layers of width n), over seeds and E."""

    dataset: str = shared_param("dataset", "fashion-mnist")
    dims: tuple[int, ...] = param((4, 16, 64, 256, 1024),
                                  "embedding widths E, one scaling curve each (001 §1.1, end of §2.4; script: 1024)",
                                  min=1, allow_empty=False)
    base_hidden: int = param(1024, "width of the relu layer the embedding is trained with (script's base model: 1024)",
                             min=1)
    min_log2_width: float = param(4.0, "log₂ of the smallest width n (script: 4, n = 16)", min=0)
    max_log2_width: float = param(12.0, "log₂ of the largest width n (script: 12, n = 4096)", min=1)
    num_widths: int = param(10, "widths n = int(2^x), x = linspace(min, max, num) (script: 10)", min=5)
    widths_used: int | None = param(None, "train only the smallest k of those widths (same log spacing; a cut of "
                                          "the default preset; ≥ 5 so that the AICc of a 3-parameter law, which "
                                          "needs sizes − 4 > 0, is finite); empty = all", min=5)
    hidden_layers: int = param(2, "relu layers of width n after the frozen embedding (script: 2)", min=1)
    seeds: int = param(5, "independent replications per E (each retrains the embedding); script: 1 (seed 1)", min=1)
    validation: str = param("holdout", "early-stopping data: holdout (val_fraction of the training split, disjoint "
                                       "from test) | test (the script's choice: the test split itself, a leak)",
                            choices=("holdout", "test"))
    val_fraction: float = param(0.1, "held-out share of the training split when validation = holdout (stratified)",
                                min=0, exclusive_min=True, max=0.5)
    patience: int = param(0, "Keras EarlyStopping patience: epochs without a lower validation loss tolerated "
                             "(script: 0, the Keras default)", min=0)
    restore_best: bool = param(False, "restore the best epoch's weights when stopping (Keras restore_best_weights; "
                                      "script: False)")
    max_epochs: int = param(10000, "epochs at most (script: 10000; early stopping ends training long before)", min=1)
    batch_size: int = shared_param("batch_size", 4096)
    lr: float = param(1e-3, "AdamW learning rate (Keras default 1e-3)", min=0, exclusive_min=True)
    weight_decay: float = param(0.004, "AdamW decoupled weight decay (Keras default 0.004)", min=0)
    beta1: float = param(0.9, "AdamW β₁ (Keras default 0.9)", min=0, max=0.999999)
    beta2: float = param(0.999, "AdamW β₂ (Keras default 0.999)", min=0, max=0.999999)
    eps: float = param(1e-7, "AdamW ε (Keras default 1e-7; torch's is 1e-8)", min=0, exclusive_min=True)
    train_per_class: int | None = shared_param("train_per_class", None)
    test_per_class: int | None = shared_param("test_per_class", None)
    PRESETS: ClassVar[dict] = {
        "quick": {"dims": (4, 64), "widths_used": 5, "seeds": 2, "train_per_class": 100, "test_per_class": 50},
        "default": {"dims": (4, 16, 64, 256, 1024), "widths_used": 6, "seeds": 3},
        "full": {"dims": (4, 16, 64, 256, 1024), "widths_used": None, "seeds": 5, "validation": "test"},
    }

    def widths(self) -> list[int]:
        """The widths n trained (the script's grid, cut to ``widths_used``)."""
        grid = notes_widths(self.min_log2_width, self.max_log2_width, self.num_widths)
        return grid[: self.widths_used] if self.widths_used else grid


@short_repr
@dataclass
class ScalingResult:
    dims: list[int]
    widths: list[int]
    seeds: list[int]
    num_params: dict = field(default_factory=dict)  # E -> [N(n)] (the script's count)
    losses: dict = field(default_factory=dict)  # E -> [size][seed] test cross-entropy
    accuracies: dict = field(default_factory=dict)  # E -> [size][seed] test accuracy
    training: dict = field(default_factory=dict)  # E -> [seed] {"base": record, "sizes": [record]}
    fits: dict = field(default_factory=dict)  # E -> stats.PowerLawFit
    loglog: dict = field(default_factory=dict)  # E -> {"means": LogLogFit, "per_seed_alpha", "interval"}
    outcomes: dict = field(default_factory=dict)  # E -> {"verdict", "strength", "aicc_margin", ...}
    verdict: str = "not yet measured"
    strength: str = "indicative"
    wall_time_s: float = 0.0


# --------------------------------------------------------------------------- the run


def _load(cfg: ScalingConfig, seed: int, dtype: torch.dtype):
    """(train, test) Datasets, pixels in [0, 1]: the *whole* official training file (``validation=0``, as the
    script trains on all 60,000; the held-out rows are drawn per seed by :func:`_splits`) and the test file."""
    from actionlab import data

    base = data.LoadSpec(standardize="none", seed=seed, dtype=dtype, validation=0)
    train_spec = base.replace(balance=True, per_class=cfg.train_per_class) if cfg.train_per_class else base
    test_spec = base.replace(balance=True, per_class=cfg.test_per_class) if cfg.test_per_class else base
    return data.load(cfg.dataset, "train", train_spec), data.load(cfg.dataset, "test", test_spec)


def _splits(train, test, cfg: ScalingConfig, seed: int):
    """(fit rows, validation rows, test rows) as (x, labels) pairs on the CPU."""
    from actionlab.data.splits import stratified_holdout

    test_pair = (test.z, test.labels)
    if cfg.validation == "test":
        return (train.z, train.labels), test_pair, test_pair
    keep, held = stratified_holdout(train.labels, cfg.val_fraction, seed)
    return (train.z[keep], train.labels[keep]), (train.z[held], train.labels[held]), test_pair


def _one_replication(train, test, E: int, seed: int, cfg: ScalingConfig, options: RunOptions, bar) -> dict:
    """Base model → frozen embedding → one model per width, for one E and one seed: losses, accuracies, records."""
    from actionlab.embeddings import apply_projection
    from actionlab.train import evaluate

    dev, dtype = options.torch_device, options.torch_dtype
    fit_rows, val_rows, test_rows = _splits(train, test, cfg, seed)
    M = train.num_classes
    base = _dense_stack([train.z.shape[1], E, cfg.base_hidden, M], linear_first=True,
                        gen=torch.Generator().manual_seed(_sub_seed(seed, E, 0)), dtype=dtype, device=dev)
    base_record = _fit_like_keras(base, fit_rows, val_rows, cfg, _sub_seed(seed, E, 1))
    bar.update(1)
    embed = base[0]
    z = {k: (apply_projection(embed, rows[0].to(dtype)), rows[1]) for k, rows in
         (("fit", fit_rows), ("val", val_rows), ("test", test_rows))}
    losses, accs, records = [], [], []
    for j, n in enumerate(cfg.widths()):
        model = _dense_stack([E] + [n] * cfg.hidden_layers + [M], linear_first=False,
                             gen=torch.Generator().manual_seed(_sub_seed(seed, E, n, 2)), dtype=dtype, device=dev)
        rec = _fit_like_keras(model, z["fit"], z["val"], cfg, _sub_seed(seed, E, n, 3))
        loss, acc = evaluate(model, *z["test"])
        losses.append(loss)
        accs.append(acc)
        records.append({"width": n, **rec})
        bar.update(1)
        bar.set_postfix(E=E, n=n, loss=f"{loss:.3f}")
    return {"losses": losses, "accuracies": accs, "record": {"seed": seed, "base": base_record, "sizes": records}}


def _analyse(res: ScalingResult, E: int, quick: bool) -> None:
    """Fits and the per-E verdict from the (sizes × seeds) losses of E."""
    key = str(E)
    P = np.array(res.num_params[key], float)
    L = np.array(res.losses[key], float)
    fit = stats.fit_power_law(P, L)
    comp = fit.comparison
    best_power = min(comp.row(m).aicc for m in POWER_LAWS)
    best_other = min(r.aicc for r in comp.rows if r.name not in POWER_LAWS)
    margin = float(best_other - best_power)
    verdict, strength = judge_power_law_at(margin, fit.alpha_interval.low, L.shape[1], quick)
    per_seed = [stats.robust_loglog_fit(P, L[:, s]).alpha for s in range(L.shape[1])]
    res.fits[key] = fit
    res.loglog[key] = {"means": stats.robust_loglog_fit(P, L), "per_seed_alpha": per_seed,
                       "interval": stats.mean_interval(per_seed) if len(per_seed) > 1 else None}
    res.outcomes[key] = {"verdict": verdict, "strength": strength, "aicc_margin": margin, "best_by_aicc": comp.best,
                         "alpha": fit.alpha, "alpha_low": fit.alpha_interval.low, "alpha_high": fit.alpha_interval.high}


@register_experiment("scaling", config=ScalingConfig, sources=("001",), order=43,
                     help="the notes' scaling script over seeds and embedding widths E: test loss against parameter "
                          "count, α(E) with intervals, model comparison (note 001)")
def run(config: ScalingConfig, options: RunOptions) -> ScalingResult:
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    seed_everything(options.seed)
    dspec = DataSpec(config.dataset, "none", config.train_per_class, config.test_per_class, options.seed)
    run_folder = RunFolder(options, "scaling", config, seed=options.seed, data=dataclasses.asdict(dspec))
    train, test = _load(config, options.seed, options.torch_dtype)
    widths = config.widths()
    seeds = [options.seed + k for k in range(config.seeds)]
    res = ScalingResult(list(config.dims), widths, seeds)
    bar = tqdm(total=len(config.dims) * len(seeds) * (1 + len(widths)), desc="scaling", disable=None)
    for E in config.dims:
        reps = [_one_replication(train, test, E, s, config, options, bar) for s in seeds]
        key = str(E)
        res.num_params[key] = [param_count(E, n, config.hidden_layers, train.num_classes) for n in widths]
        res.losses[key] = np.array([r["losses"] for r in reps]).T.tolist()
        res.accuracies[key] = np.array([r["accuracies"] for r in reps]).T.tolist()
        res.training[key] = [r["record"] for r in reps]
        _analyse(res, E, options.preset == "quick")
    bar.close()
    res.verdict, res.strength = judge_only_large([res.outcomes[str(E)]["verdict"] for E in res.dims],
                                                 [res.outcomes[str(E)]["strength"] for E in res.dims])
    res.wall_time_s = time.perf_counter() - t0
    _figures(run_folder, res)
    _claims(run_folder, res, config, options)
    run_folder.finish(res, _summary(run_folder, res, config))
    return res


# --------------------------------------------------------------------------- claims, figures, summary


def _evidence(res: ScalingResult, config: ScalingConfig, options: RunOptions) -> dict:
    full = notes_widths(config.min_log2_width, config.max_log2_width, config.num_widths)
    cuts = []
    if len(res.widths) < len(full):
        cuts.append(f"widths: the smallest {len(res.widths)} of the script's {len(full)} ({res.widths[-1]} of {full[-1]})")
    if config.seeds < 5:
        cuts.append(f"{config.seeds} seeds instead of 5")
    if tuple(config.dims) != (4, 16, 64, 256, 1024):
        cuts.append(f"E ∈ {list(config.dims)} instead of {{4, 16, 64, 256, 1024}}")
    if config.train_per_class or config.test_per_class:
        cuts.append(f"data subsets: {config.train_per_class} train / {config.test_per_class} test rows per class")
    return {
        "preset": options.preset, "seeds": {"number": len(res.seeds), "list": res.seeds}, "dims": res.dims,
        "widths": res.widths, "sizes": "N = E·n + n² + 10·n (script's count: weights only, embedding excluded)",
        "validation": config.validation if config.validation == "holdout" else "test split (the script's leak)",
        "statistic": "α of L(N) = a·N^(−α) + L∞ (stats.fit_power_law, seed means, relative error) and ΔAICc "
                     "= AICc(best of exponential saturation, logarithmic) − AICc(best of saturating, pure power law)",
        "interval": {"level": 0.68, "method": "profile, between-seed variance (every seed retrains the embedding)"},
        "threshold": {"aicc_margin": AICC_MARGIN, "alpha_low": 0.0, "firm_seeds": FIRM_SEEDS},
        "decision_rule": "power law at E: ΔAICc ≥ 2 and α's 68 % interval above 0; none: ΔAICc ≤ −2 (or the α "
                         "interval reaches 0: indicative); 'only when E is large': none at the smallest E's, a power "
                         "law at the largest, one switch; an inconclusive E tried both ways",
        "cuts_from_the_notes_setting": cuts or ["none"],
        "note": "a firm verdict needs ≥ 3 seeds per E; the default preset cuts the widths to the six smallest "
                "(16 … 348) and the seeds to 3 to fit 30 min on 2 CPU cores (≈ 1,000 CPU-s, estimated from measured CPU time); "
                "the notes' whole grid (to 4096, 5 seeds) is --preset full (hours on 2 CPU cores; or --device cuda)",
        "wall_time_s": round(res.wall_time_s, 1),
    }


def _claims(run_folder: RunFolder, res: ScalingResult, config: ScalingConfig, options: RunOptions) -> None:
    ev = _evidence(res, config, options)
    for E in res.dims:
        o = res.outcomes[str(E)]
        measured = {"alpha": round(o["alpha"], 4), "alpha_68": [round(o["alpha_low"], 4), round(o["alpha_high"], 4)],
                    "aicc_margin": round(o["aicc_margin"], 2), "best_law": o["best_by_aicc"],
                    "script_slope_alpha": round(res.loglog[str(E)]["means"].alpha, 4)}
        run_folder.add_claim(Claim(
            "001", f"a power law between model size and optimised test loss appears at E = {E}",
            "power law for large E only", measured, o["verdict"],
            "the saturating power law fitted to the seed means; ΔAICc against the best non-power law; α's 68 % "
            "interval from the between-seed variance", id=f"001.power-law-E{E}", evidence={**ev, "E": E},
            strength=o["strength"]))
    pattern = {str(E): res.outcomes[str(E)]["verdict"] for E in res.dims}
    alphas = {str(E): round(res.outcomes[str(E)]["alpha"], 3) for E in res.dims}
    run_folder.add_claim(Claim(
        "001", "the power law between the model size and the optimized loss appears only when E has been large "
               "enough (end of §2.4)", "no power law at small E, a power law at large E",
        {"power_law_at": pattern, "alpha": alphas}, res.verdict,
        "read off the per-E verdicts 001.power-law-E<value> (α(E), model comparison, intervals)",
        id="001.power-law-E", evidence=ev, strength=res.strength))


def _loss_panel(ax, res: ScalingResult, E: int) -> None:
    key = str(E)
    P = np.array(res.num_params[key], float)
    L = np.array(res.losses[key], float)
    fit, line = res.fits[key], res.loglog[key]["means"]
    for s in range(L.shape[1]):
        ax.loglog(P, L[:, s], "o", ms=3, color="tab:blue", alpha=0.45, label="seeds" if s == 0 else None)
    ax.loglog(P, L.mean(axis=1), "s", ms=4, color="tab:blue", label="mean over seeds")
    grid = np.geomspace(P.min(), P.max(), 100)
    curve = fit.predict(grid)
    ok = curve > 0  # a log axis shows positive values only
    ax.loglog(grid[ok], curve[ok], "r-", lw=1,
              label=f"a·N^(−α)+L∞: α={fit.alpha:.3f} [{fit.alpha_interval.low:.3f}, {fit.alpha_interval.high:.3f}]")
    ax.loglog(grid, 2.0 ** (line.intercept + line.slope * np.log2(grid)), "k--", lw=0.8,
              label=f"script's log–log line: α={line.alpha:.3f}")
    if fit.l_inf > 0:  # L∞ = 0 has no place on a log axis: no line rather than a collapsed axis
        ax.axhline(fit.l_inf, color="gray", lw=0.6, ls=":", label="L∞")
    positive = L[L > 0]
    if positive.size:  # the y range from the measured losses, so a fitted L∞ near 0 cannot stretch it
        ax.set_ylim(positive.min() / 1.3, positive.max() * 1.6)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only on x: the minor ones overlap
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))  # a loss range inside one decade
    o = res.outcomes[key]
    ax.set_title(f"E = {E}: power law {o['verdict']} ({o['strength']})\nbest by AICc: {o['best_by_aicc']}", fontsize=8)
    ax.set_xlabel("parameters N (script's count)")
    ax.set_ylabel("test loss (nats)")
    ax.legend(fontsize=6, loc="upper right", framealpha=0.8)


def _alpha_panel(ax, res: ScalingResult) -> None:
    E = np.array(res.dims, float)
    a = np.array([res.outcomes[str(e)]["alpha"] for e in res.dims])
    lo = np.array([res.outcomes[str(e)]["alpha_low"] for e in res.dims])
    hi = np.array([res.outcomes[str(e)]["alpha_high"] for e in res.dims])
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(E[ok], a[ok], yerr=np.maximum([a[ok] - lo[ok], hi[ok] - a[ok]], 0.0), fmt="o-", color="tab:red",
                capsize=3, label="α of a·N^(−α)+L∞, 68 % interval")
    ax.plot(E[~ok], a[~ok], "o", color="tab:red", mfc="none")
    iv = [res.loglog[str(e)]["interval"] for e in res.dims]
    if all(i is not None for i in iv):  # the mean over seeds of the script's per-seed α, with its t-interval
        s = np.array([i.estimate for i in iv])
        ax.errorbar(E * 1.08, s, yerr=np.maximum([s - [i.low for i in iv], [i.high for i in iv] - s], 0.0),
                    fmt="s--", color="k", capsize=3, ms=4, label="script's log–log α, mean over seeds, 68 %")
    else:
        s = np.array([res.loglog[str(e)]["means"].alpha for e in res.dims])
        ax.plot(E * 1.08, s, "s--", color="k", ms=4, label="script's log–log α (seed means)")
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(E)
    ax.set_xticklabels([str(e) for e in res.dims])
    ax.set_xlabel("embedding width E")
    ax.set_ylabel("exponent α")
    ax.set_title("α(E): does the power law appear only for large E?", fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)


def _figures(run_folder: Any, res: ScalingResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(res.dims)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    for ax, E in zip(axes.ravel(), res.dims):
        _loss_panel(ax, res, E)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle("test loss against parameter count (log–log), one panel per embedding width E", fontsize=10)
    fig.tight_layout()
    run_folder.save_figure(fig, "scaling_loglog")
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    _alpha_panel(ax, res)
    fig.tight_layout()
    run_folder.save_figure(fig, "scaling_alpha_vs_E")


def _summary(run_folder: RunFolder, res: ScalingResult, config: ScalingConfig) -> str:
    rows = ["| E | α | α 68 % | L∞ | best law (AICc) | ΔAICc | R² | lack-of-fit p | script's α (means) | "
            "script's α over seeds (68 %) | power law |", "|---" * 11 + "|"]
    for E in res.dims:
        k = str(E)
        f, o, ll = res.fits[k], res.outcomes[k], res.loglog[k]
        iv = ll["interval"]
        ivs = f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]" if iv is not None else "—"
        rows.append(f"| {E} | {f.alpha:.3f} | [{f.alpha_interval.low:.3f}, {f.alpha_interval.high:.3f}] | "
                    f"{f.l_inf:.4f} | {o['best_by_aicc']} | {o['aicc_margin']:.2f} | {f.r_squared:.3f} | "
                    f"{f.lack_of_fit_p:.3g} | {ll['means'].alpha:.4f} | {ivs} | {o['verdict']} ({o['strength']}) |")
    loss_rows = ["| E \\ n | " + " | ".join(str(n) for n in res.widths) + " |", "|---" * (len(res.widths) + 1) + "|"]
    for E in res.dims:
        L = np.array(res.losses[str(E)])
        sd = L.std(axis=1, ddof=1) if L.shape[1] > 1 else np.zeros(len(L))
        loss_rows.append(f"| {E} | " + " | ".join(f"{m:.4f}±{s:.4f}" for m, s in zip(L.mean(axis=1), sd)) + " |")
    return (
        "# scaling — the notes' scaling script over seeds and embedding widths E\n\n"
        f"Data {config.dataset} (pixels in [0, 1]); base model x → linear E → relu({config.base_hidden}) → softmax, "
        f"frozen embedding → {config.hidden_layers} × relu(n) → softmax for n = {res.widths}; AdamW (lr {config.lr}, "
        f"weight decay {config.weight_decay}, ε {config.eps}), batch {config.batch_size}, early stopping on the "
        f"{'test split (the script’s leak)' if config.validation == 'test' else 'held-out validation rows'} "
        f"(patience {config.patience}, restore best {config.restore_best}); {len(res.seeds)} seeds "
        f"{res.seeds}, each retraining the embedding. Wall time {res.wall_time_s:.0f} s.\n\n"
        + "\n".join(rows) + "\n\nTest loss (mean ± sd over seeds):\n\n" + "\n".join(loss_rows) + "\n\n"
        + "## Claims\n\n" + claims_table_md(run_folder.claims)
    )
