"""A small, reusable trainer: its specification, history, callbacks and the §3 early-stopping rule.

:class:`Trainer` minimises the training action (cross-entropy, eq. (2) of
notes 000–002 with the empirical distribution p_T) or the squared loss to
one-hot targets by mini-batch gradient descent. Its steps are separate
methods — :meth:`Trainer.resume`, :meth:`Trainer.step`,
:meth:`Trainer.evaluate`, :meth:`Trainer.checkpoint` — and :meth:`Trainer.run`
strings them together. What the loop does is a :class:`TrainSpec`; which
optimizer it uses is an :class:`OptimizerSpec` (or any ready
``torch.optim.Optimizer`` instance, e.g. :class:`actionlab.optim.RNGD`, which
needs the model itself). :func:`fit` is the one-call form::

    from actionlab import data, models, train

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    model = models.TwoLayer.glorot(tr.num_classes, 64, tr.z.shape[1], generator=torch.Generator().manual_seed(0))
    hist = train.fit(model, tr, eval=te, optimizer="adam", lr=1e-2, epochs=20, batch_size=64)
    # the same, spelled out:
    hist = train.Trainer(model, tr, eval=te, optimizer=train.OptimizerSpec("adam", lr=1e-2),
                         spec=train.TrainSpec(epochs=20, batch_size=64)).run()
    hist.eval_accuracy[-1]

Conventions (all stated here once):

* **Losses.** ``loss="cross_entropy"``: S(θ) = −(1/N) Σ_i ln q_{m_i}(z_i, θ)
  (notes eq. (2)). ``loss="mse"``: ½ (1/N) Σ_i ‖f(z_i) − e_{m_i}‖², the squared
  loss of the network's *outputs* f (the logits, no softmax) against the one-hot
  vector e_m (the loss E(θ) of 004's Fisher analysis, A.51). Accuracy is
  argmax_m f_m = m_i. Losses recorded in the history are data losses, without
  any L2 term.
* **L2.** ``weight_decay`` (of :class:`OptimizerSpec`) is handed to the
  optimizer with torch's semantics: SGD and Adam add ``weight_decay·θ`` to the
  gradient (the gradient of (weight_decay/2)‖θ‖²; with Adam it is then
  rescaled by the adaptive step), AdamW decays θ directly (decoupled). ``l2``
  (of :class:`TrainSpec`) instead adds (l2/2)·Σ‖θ‖² to the minimised objective
  explicitly, whatever the optimizer — over all trainable parameters
  (``l2_on="all"``) or only over those with two or more dimensions, the
  weight matrices (``l2_on="weights"``: biases and normalisation scales are
  not penalised; TensorFlow's ``l2_loss`` convention of 003 §4).
* **Mini-batches.** Each epoch draws a permutation of the N training samples
  from a ``torch.Generator`` seeded with ``seed`` and cuts it into
  ⌈N / batch_size⌉ batches (the last may be smaller; with ``drop_last`` the
  ⌊N / batch_size⌋ full ones only). Given the same seed, model initialisation,
  data and device, two runs give identical parameters (on CPU bit-for-bit);
  the global torch RNG is seeded with ``seed`` inside a forked RNG state so
  that dropout-like layers are reproducible too and the caller's RNG state is
  left alone.
* **Evaluation.** At step 0, then every epoch (``eval_every="epoch"``) or
  every k optimizer steps (``eval_every=k``), and at the end: the full-data
  training loss and accuracy and, with an ``eval`` set, its loss and accuracy
  (streamed in batches of ``eval_batch_size``, in ``model.eval()`` mode).
  ``History.train_time_s`` is the optimisation wall-clock up to each
  evaluation, evaluations and checkpoints excluded (CUDA is synchronised
  before the clock is read).
* **Checkpoints.** With ``checkpoint_dir`` the trainer writes ``last.pt``
  there at every evaluation (model ``state_dict``, optimizer ``state_dict``,
  the history, the step and the batch generator's state). ``resume=True``
  continues from ``checkpoint_dir/last.pt`` (if it exists) exactly where it
  stopped: the same batches follow and the CPU random stream of dropout-like
  layers is restored, so an interrupted and resumed run equals an
  uninterrupted one (on CPU; CUDA random streams are reseeded, not restored).
* **Divergence.** A non-finite mini-batch loss, or one larger than
  ``divergence_factor`` × S_0 (S_0: the full-data training loss at step 0,
  when S_0 > 0), stops training *before* the update is applied
  (``stop_reason`` names the step and the cause; ``History.diverged`` is
  True); a full-data loss at an evaluation that is non-finite or beyond the
  same bound stops likewise. ``divergence_factor=None`` keeps only the
  non-finite test.

Callbacks are any objects with optional methods ``on_fit_start(state)``,
``on_step_end(state)``, ``on_eval(state)`` and ``on_fit_end(state)``;
``on_step_end`` / ``on_eval`` returning True stop training (``stop_reason``
is the callback's ``stop_reason`` attribute when it has one).
:class:`GradientAlignmentStop` is the early-stopping rule of notes 001 §3,
eq. (7): stop when ∇S_T · ∇S_E first turns ≤ 0.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from actionlab._checks import (
    DataError,
    ShapeError,
    ValueCheckError,
    check_choice,
    check_labels,
    check_matrix,
    check_positive,
    check_same_length,
)
from actionlab._display import short_repr

__all__ = [
    "fit",
    "Trainer",
    "TrainSpec",
    "OptimizerSpec",
    "History",
    "TrainState",
    "Callback",
    "GradientAlignmentStop",
    "AlignmentRecord",
    "StopAfter",
    "loss_fn",
    "evaluate",
    "full_gradient",
    "load_checkpoint",
    "OPTIMIZERS",
    "LOSSES",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
LOSSES = ("cross_entropy", "mse")
L2_TARGETS = ("all", "weights")
CHECKPOINT_NAME = "last.pt"


# ---------------------------------------------------------------------------------------------
# data handling
# ---------------------------------------------------------------------------------------------
def _as_pair(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """A Dataset (``.z``, ``.labels``, ``.num_classes``) or a ``(z, labels)`` tuple → (z, labels, M or None)."""
    if data is None:
        raise ValueCheckError(f"{name} data is missing; pass a Dataset or a (z, labels) tuple")
    if hasattr(data, "z") and hasattr(data, "labels"):
        z, labels, m = data.z, data.labels, getattr(data, "num_classes", None)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        (z, labels), m = data, None
    else:
        raise ValueCheckError(
            f"{name} must be an actionlab Dataset or a (z, labels) tuple of tensors, got {type(data).__name__}"
        )
    check_matrix(z, f"{name} z")
    if not isinstance(labels, torch.Tensor):
        raise ValueCheckError(f"{name} labels must be a torch.Tensor of class indices, got {type(labels).__name__}")
    check_same_length(z, labels, f"{name} z", f"{name} labels")
    if z.shape[0] == 0:
        raise ShapeError(f"{name} data is empty (0 samples)")
    return z, labels, (int(m) if m is not None else None)


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in model.parameters():
        return p.dtype, p.device
    raise ValueCheckError("the model has no parameters to train")


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, loss: str = "cross_entropy", reduction: str = "mean") -> torch.Tensor:
    """The training loss of a batch: cross-entropy (notes eq. (2)) or ½‖f − e_m‖² (see the module docstring)."""
    if loss == "cross_entropy":
        return nn.functional.cross_entropy(logits, labels, reduction=reduction)
    if loss == "mse":
        target = nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
        per = 0.5 * ((logits - target) ** 2).sum(dim=1)
        return per.mean() if reduction == "mean" else per.sum()
    check_choice(loss, LOSSES, "loss")
    raise AssertionError  # pragma: no cover


@torch.no_grad()
def evaluate(
    model: nn.Module, z: torch.Tensor, labels: torch.Tensor, loss: str = "cross_entropy", batch_size: int = 4096
) -> tuple[float, float]:
    """(mean loss, accuracy) over all of (z, labels), streamed in batches, in ``model.eval()`` mode."""
    was_training = model.training
    model.eval()
    dtype, device = _model_dtype_device(model)
    total, correct, n = 0.0, 0, z.shape[0]
    try:
        for s in range(0, n, batch_size):
            zb = z[s : s + batch_size].to(device=device, dtype=dtype)
            yb = labels[s : s + batch_size].to(device)
            out = model(zb)
            total += float(loss_fn(out, yb, loss, reduction="sum").double())
            correct += int((out.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return total / n, correct / n


def full_gradient(
    model: nn.Module,
    z: torch.Tensor,
    labels: torch.Tensor,
    loss: str = "cross_entropy",
    batch_size: int = 4096,
) -> tuple[float, list[torch.Tensor]]:
    """(S, ∇_θ S) of the mean loss over all of (z, labels), streamed in batches.

    S = (1/N) Σ_batches Σ_{i∈batch} ℓ_i and ∇S likewise: the batch sums are
    accumulated in float64, so the result equals the one-shot full-batch
    gradient up to the model dtype's rounding. Parameters are those with
    ``requires_grad``; the model is put in ``eval()`` mode while computing.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    dtype, device = _model_dtype_device(model)
    was_training = model.training
    model.eval()
    n = z.shape[0]
    grads = [torch.zeros(p.shape, dtype=torch.float64, device=p.device) for p in params]
    total = 0.0
    try:
        for s in range(0, n, batch_size):
            zb = z[s : s + batch_size].to(device=device, dtype=dtype)
            yb = labels[s : s + batch_size].to(device)
            with torch.enable_grad():
                part = loss_fn(model(zb), yb, loss, reduction="sum")
                gs = torch.autograd.grad(part, params, allow_unused=True)
            total += float(part.detach().double())
            for acc, g in zip(grads, gs):
                if g is not None:
                    acc += g.double()
    finally:
        model.train(was_training)
    return total / n, [g / n for g in grads]


# ---------------------------------------------------------------------------------------------
# history, state, callbacks
# ---------------------------------------------------------------------------------------------
@short_repr
@dataclass
class History:
    """What the trainer measured, one entry per evaluation (the first at step 0, before any update).

    ``train_loss`` / ``train_accuracy``: full training set at that step;
    ``eval_loss`` / ``eval_accuracy``: the ``eval`` set (None without one);
    ``batch_loss``: mean of the mini-batch losses since the previous evaluation
    (None at step 0); ``epoch``: epochs done (step / steps per epoch);
    ``time_s``: wall time since the start of training; ``train_time_s``: the
    optimisation wall-clock only (evaluations and checkpoints excluded).
    ``diverged``: a non-finite loss, or one beyond ``divergence_factor`` × the
    initial loss, was met (training then stops, ``stop_reason`` says where);
    ``stopped_early``: a callback or a divergence ended training before
    ``epochs`` / ``max_steps`` were done.
    """

    step: list[int] = field(default_factory=list)
    epoch: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    eval_loss: list[float | None] = field(default_factory=list)
    eval_accuracy: list[float | None] = field(default_factory=list)
    batch_loss: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)
    train_time_s: list[float] = field(default_factory=list)
    steps_done: int = 0
    steps_per_epoch: int = 0
    stopped_early: bool = False
    diverged: bool = False
    stop_reason: str = ""
    wall_time_s: float = 0.0
    loss: str = "cross_entropy"

    def __len__(self) -> int:
        return len(self.step)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def best(self, metric: str = "eval_loss") -> int:
        """Index of the evaluation with the lowest loss (or highest accuracy for ``*_accuracy``)."""
        vals = getattr(self, metric)
        pairs = [(v, i) for i, v in enumerate(vals) if v is not None and math.isfinite(v)]
        if not pairs:
            raise ValueCheckError(f"history has no finite {metric} values")
        return (max if metric.endswith("accuracy") else min)(pairs)[1]


@dataclass
class TrainState:
    """What callbacks see. ``train`` / ``eval`` are ``(z, labels)`` on the training device."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    history: History
    train: tuple[torch.Tensor, torch.Tensor]
    eval: tuple[torch.Tensor, torch.Tensor] | None
    step: int = 0
    epoch: float = 0.0
    batch_loss: float | None = None
    device: torch.device = torch.device("cpu")


class Callback:
    """Base class (optional): override any of the hooks; return True from a step/eval hook to stop."""

    stop_reason: str = ""

    def on_fit_start(self, state: TrainState) -> None:  # pragma: no cover - interface
        return None

    def on_step_end(self, state: TrainState) -> bool | None:  # pragma: no cover - interface
        return None

    def on_eval(self, state: TrainState) -> bool | None:  # pragma: no cover - interface
        return None

    def on_fit_end(self, state: TrainState) -> None:  # pragma: no cover - interface
        return None


class StopAfter(Callback):
    """Stop after ``steps`` optimizer steps (a simple example callback, used in tests)."""

    def __init__(self, steps: int) -> None:
        self.steps = int(steps)

    def on_step_end(self, state: TrainState) -> bool:
        if state.step >= self.steps:
            self.stop_reason = f"StopAfter: reached {self.steps} steps"
            return True
        return False


@short_repr
@dataclass
class AlignmentRecord:
    """One measurement of :class:`GradientAlignmentStop`."""

    step: int
    epoch: float
    S_T: float  # training action S_T(θ) (cross-entropy over the training sample used)
    S_E: float  # evaluation action S_E(θ)
    dot: float  # ∇S_T · ∇S_E
    dot_smoothed: float  # exponential moving average of dot (equals dot with smoothing = 0)
    cosine: float  # dot / (‖∇S_T‖ ‖∇S_E‖)
    grad_norm_T: float
    grad_norm_E: float


class GradientAlignmentStop(Callback):
    """Early stopping at ∇S_T(θ) · ∇S_E(θ) = 0: notes 001 §3, eq. (7).

    S_T and S_E are the cross-entropy actions (eq. (2)) of the empirical
    training and evaluation distributions p_T and p_E. While both decrease
    along the training flow their gradients point the same way
    (∇S_T · ∇S_E > 0); the notes stop where ∇S_E turns against ∇S_T.

    Every ``every`` optimizer steps (``every="eval"``: at each of the trainer's
    evaluations) and once before the first step, it computes the full-data
    S_T, S_E, ∇S_T, ∇S_E (streamed in batches of ``batch_size``, accumulated
    in float64; see :func:`full_gradient`), the dot product d = ∇S_T · ∇S_E
    over all trainable parameters and the cosine. With ``smoothing`` = s ∈
    [0, 1) the rule uses the exponential moving average
    d̄_k = s·d̄_{k−1} + (1 − s)·d_k, d̄_0 = d_0 (s = 0: the raw dot product).
    It stops training the first time d̄ ≤ 0 (``stop_step`` is that step); with
    ``stop=False`` it only records, and ``stop_step`` still marks the first
    crossing. ``min_step`` ignores crossings before that step.

    ``max_samples``: when a set has more samples, a fixed random subset of
    ``max_samples`` of them (drawn once, from ``seed``) is used instead — a
    stated large-batch *estimate* of S and ∇S; ``records`` then hold the
    estimate and ``estimated`` is True. ``train`` / ``eval`` are Datasets or
    ``(z, labels)`` tuples (normally the same sets as the trainer's).

    The L2 penalty of :class:`TrainSpec` is not part of S_T here: the rule is about the
    data actions.
    """

    def __init__(
        self,
        train: Any,
        eval: Any,
        every: int | str = 10,
        smoothing: float = 0.0,
        batch_size: int = 4096,
        max_samples: int | None = None,
        stop: bool = True,
        min_step: int = 0,
        seed: int = 0,
    ) -> None:
        zt, yt, _ = _as_pair(train, "train")
        ze, ye, _ = _as_pair(eval, "eval")
        if not (isinstance(every, int) and every >= 1) and every != "eval":
            raise ValueCheckError(f"every must be a positive number of steps or 'eval', got {every!r}")
        if not 0.0 <= float(smoothing) < 1.0:
            raise ValueCheckError(f"smoothing must lie in [0, 1), got {smoothing}")
        if int(batch_size) < 1:
            raise ValueCheckError(f"batch_size must be ≥ 1, got {batch_size}")
        self.estimated = False
        if max_samples is not None:
            if int(max_samples) < 1:
                raise ValueCheckError(f"max_samples must be ≥ 1 or None, got {max_samples}")
            g = torch.Generator().manual_seed(int(seed))
            if zt.shape[0] > max_samples:
                idx = torch.randperm(zt.shape[0], generator=g)[: int(max_samples)]
                zt, yt, self.estimated = zt[idx], yt[idx], True
            if ze.shape[0] > max_samples:
                idx = torch.randperm(ze.shape[0], generator=g)[: int(max_samples)]
                ze, ye, self.estimated = ze[idx], ye[idx], True
        self.train, self.eval = (zt, yt), (ze, ye)
        self.every = every
        self.smoothing = float(smoothing)
        self.batch_size = int(batch_size)
        self.max_samples = max_samples
        self.stop = bool(stop)
        self.min_step = int(min_step)
        self.records: list[AlignmentRecord] = []
        self.stop_step: int | None = None
        self.stop_reason = ""
        self._ema: float | None = None

    def measure(self, model: nn.Module, step: int = 0, epoch: float = 0.0) -> AlignmentRecord:
        """Compute and append one record for the model as it is now."""
        s_t, g_t = full_gradient(model, *self.train, loss="cross_entropy", batch_size=self.batch_size)
        s_e, g_e = full_gradient(model, *self.eval, loss="cross_entropy", batch_size=self.batch_size)
        dot = float(sum((a * b).sum() for a, b in zip(g_t, g_e)))
        n_t = math.sqrt(float(sum((a * a).sum() for a in g_t)))
        n_e = math.sqrt(float(sum((b * b).sum() for b in g_e)))
        cos = dot / (n_t * n_e) if n_t > 0 and n_e > 0 else float("nan")
        self._ema = dot if self._ema is None else self.smoothing * self._ema + (1.0 - self.smoothing) * dot
        rec = AlignmentRecord(step, float(epoch), s_t, s_e, dot, self._ema, cos, n_t, n_e)
        self.records.append(rec)
        return rec

    def _check(self, state: TrainState) -> bool:
        rec = self.measure(state.model, state.step, state.epoch)
        if self.stop_step is None and state.step >= self.min_step and rec.dot_smoothed <= 0:
            self.stop_step = state.step
            self.stop_reason = (
                f"GradientAlignmentStop: ∇S_T·∇S_E = {rec.dot:.3e}"
                + (f" (smoothed {rec.dot_smoothed:.3e})" if self.smoothing else "")
                + f" ≤ 0 at step {state.step} (S_T = {rec.S_T:.4f}, S_E = {rec.S_E:.4f})"
            )
            return self.stop
        return False

    def on_fit_start(self, state: TrainState) -> None:
        if not any(r.step == state.step for r in self.records):
            self._check(state)

    def on_step_end(self, state: TrainState) -> bool:
        if self.every != "eval" and state.step % int(self.every) == 0:
            return self._check(state)
        return False

    def on_eval(self, state: TrainState) -> bool:
        if self.every == "eval" and not any(r.step == state.step for r in self.records):
            return self._check(state)
        return False

    def as_dict(self) -> dict:
        """The trace as columns (for results.json / plotting)."""
        cols = {f.name: [getattr(r, f.name) for r in self.records] for f in dataclasses.fields(AlignmentRecord)}
        cols.update(stop_step=self.stop_step, smoothing=self.smoothing, estimated=self.estimated, every=self.every)
        return cols


# ---------------------------------------------------------------------------------------------
# specifications: the optimizer and the loop
# ---------------------------------------------------------------------------------------------
@dataclass
class OptimizerSpec:
    """Which optimizer to build over the trainable parameters, and its hyperparameters.

    ``kind``: "sgd" (heavy-ball ``momentum`` μ: v ← μ v + g, θ ← θ − lr·v, the
    update of 004 A.51), "adam", "adamw" (torch defaults for the betas), a
    ``torch.optim.Optimizer`` subclass (given ``lr``, and ``weight_decay`` /
    ``momentum`` where its signature accepts them) or any callable(params) →
    Optimizer (then ``lr``, ``momentum`` and ``weight_decay`` are the
    factory's business). ``weight_decay`` has torch's semantics (see the
    module docstring).
    """

    kind: str | type | Callable[..., torch.optim.Optimizer] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_positive(float(self.lr), "lr")
        check_positive(float(self.momentum), "momentum", allow_zero=True)
        check_positive(float(self.weight_decay), "weight_decay", allow_zero=True)
        if isinstance(self.kind, str):
            self.kind = check_choice(self.kind.lower(), OPTIMIZERS, "optimizer")
            if self.kind != "sgd" and self.momentum:
                raise ValueCheckError(f"momentum={self.momentum} applies to SGD only; {self.kind} has its own betas")
        elif not callable(self.kind):
            raise ValueCheckError(
                f"optimizer must be one of {OPTIMIZERS}, a torch.optim.Optimizer class, a callable(params) -> Optimizer "
                f"or an Optimizer instance; got {self.kind!r}"
            )

    def build(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer over ``params``."""
        lr, mom, wd = float(self.lr), float(self.momentum), float(self.weight_decay)
        if self.kind == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)
        if self.kind in ("adam", "adamw"):
            cls = torch.optim.Adam if self.kind == "adam" else torch.optim.AdamW
            return cls(params, lr=lr, weight_decay=wd)
        if isinstance(self.kind, type) and issubclass(self.kind, torch.optim.Optimizer):
            accepted = inspect.signature(self.kind).parameters
            kw: dict[str, float] = {"lr": lr}
            if "weight_decay" in accepted:
                kw["weight_decay"] = wd
            if mom and "momentum" in accepted:
                kw["momentum"] = mom
            return self.kind(params, **kw)
        opt = self.kind(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueCheckError(f"the optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt


def _int_at_least(value: Any, lo: int, name: str, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueCheckError(f"{name} must be an integer ≥ {lo}{' or None' if none_ok else ''}, got {value!r}")


@dataclass
class TrainSpec:
    """What the training loop does (the conventions are in the module docstring).

    ``epochs``: passes over the training set; ``max_steps``: a cap on the total
    number of optimizer steps (counting those of a resumed run);
    ``batch_size`` / ``drop_last``: the mini-batches; ``loss``:
    "cross_entropy" (notes eq. (2)) or "mse" (½‖f − e_m‖²); ``l2`` /
    ``l2_on``: the explicit penalty (l2/2)Σ‖θ‖² on all trainable parameters or
    on the weight matrices only; ``seed``: the batch order (and the global RNG
    inside the loop); ``eval_every``: "epoch" or a number of steps;
    ``eval_batch_size``: streaming batch of the full-data evaluations;
    ``checkpoint_dir`` / ``resume``: ``last.pt`` and exact continuation
    (``resume`` may also name a checkpoint file); ``divergence_factor``: stop
    once a loss exceeds this multiple of the initial full-data loss (None: only
    non-finite losses stop); ``closure``: pass a closure that re-evaluates the
    batch objective to ``optimizer.step`` (for LBFGS-like optimizers);
    ``progress``: a tqdm bar.
    """

    epochs: int = 10
    batch_size: int = 128
    loss: str = "cross_entropy"
    l2: float = 0.0
    l2_on: str = "all"
    seed: int = 0
    max_steps: int | None = None
    drop_last: bool = False
    eval_every: str | int = "epoch"
    eval_batch_size: int = 4096
    checkpoint_dir: str | Path | None = None
    resume: bool | str | Path = False
    divergence_factor: float | None = 1e3
    closure: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice(self.loss, LOSSES, "loss")
        check_choice(self.l2_on, L2_TARGETS, "l2_on")
        check_positive(float(self.l2), "l2", allow_zero=True)
        _int_at_least(self.epochs, 0, "epochs")
        _int_at_least(self.batch_size, 1, "batch_size")
        _int_at_least(self.eval_batch_size, 1, "eval_batch_size")
        _int_at_least(self.max_steps, 0, "max_steps", none_ok=True)
        if self.eval_every != "epoch":
            _int_at_least(self.eval_every, 1, "eval_every (or 'epoch')")
        if self.divergence_factor is not None and not (float(self.divergence_factor) > 1.0
                                                       and math.isfinite(self.divergence_factor)):
            raise ValueCheckError(f"divergence_factor must be a finite number > 1 or None, got {self.divergence_factor!r}")
        if self.resume and self.checkpoint_dir is None and not isinstance(self.resume, (str, Path)):
            raise ValueCheckError("resume=True needs checkpoint_dir (where last.pt lives) or a checkpoint path")


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by the trainer (a dict: model, optimizer, history, step, ...)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise DataError(f"checkpoint {path} does not exist; train with TrainSpec(checkpoint_dir=...) first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a variety of errors for corrupt pickles
        raise DataError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); delete it and retrain") from None


def _save_checkpoint(directory: Path, payload: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CHECKPOINT_NAME
    tmp = directory / (CHECKPOINT_NAME + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, target)  # atomic: an interrupted save never leaves a half-written last.pt
    return target


def _on_device(data: Any, name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    z, labels, _ = _as_pair(data, name)
    return z.to(device=device, dtype=dtype), labels.to(device)


def _num_outputs(model: nn.Module, z: torch.Tensor) -> int:
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            out = model(z[:2])
        finally:
            model.train(was_training)
    if out.dim() != 2:
        raise ShapeError(f"the model must return outputs of shape (N, M), got {tuple(out.shape)}")
    return out.shape[1]


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------
class Trainer:
    """Mini-batch training of ``model`` in place: :meth:`resume`, :meth:`step`, :meth:`evaluate`, :meth:`checkpoint`, :meth:`run`.

    ``train`` / ``eval``: Datasets or ``(z, labels)`` tuples (z is cast to the
    model's dtype and moved to its device). ``optimizer``: an
    :class:`OptimizerSpec`, anything its ``kind`` accepts (a name, an
    Optimizer class, a factory; then with the default hyperparameters), or a
    ready ``torch.optim.Optimizer`` instance over the model's parameters
    (e.g. :class:`actionlab.optim.RNGD`, which hooks into the model).
    ``spec``: a :class:`TrainSpec`. ``device``: None keeps the model where it
    is; otherwise the model is moved there (in place).
    """

    def __init__(self, model: nn.Module, train: Any, eval: Any = None, *, optimizer: Any = "adam",
                 spec: TrainSpec | None = None, callbacks: Sequence[Any] | Any = (), device: Any = None) -> None:
        if not isinstance(model, nn.Module):
            raise ValueCheckError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.spec = spec if spec is not None else TrainSpec()
        if device is not None:
            from actionlab.config import resolve_device

            model.to(resolve_device(device))
        self.model = model
        dtype, self.device = _model_dtype_device(model)
        self.train_data = _on_device(train, "train", dtype, self.device)
        self.eval_data = _on_device(eval, "eval", dtype, self.device) if eval is not None else None
        num_classes = _num_outputs(model, self.train_data[0])
        check_labels(self.train_data[1], num_classes, "train labels")
        if self.eval_data is not None:
            check_labels(self.eval_data[1], num_classes, "eval labels")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.penalised = self.params if self.spec.l2_on == "all" else [p for p in self.params if p.dim() >= 2]
        if isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer
        else:
            opt_spec = optimizer if isinstance(optimizer, OptimizerSpec) else OptimizerSpec(optimizer)
            self.optimizer = opt_spec.build(self.params)
        s, n = self.spec, self.train_data[0].shape[0]
        if s.drop_last and n < s.batch_size:
            raise ValueCheckError(f"drop_last with batch_size {s.batch_size} > N = {n} leaves no batch; lower batch_size")
        self.n = n
        self.steps_per_epoch = n // s.batch_size if s.drop_last else math.ceil(n / s.batch_size)
        self.total_steps = s.epochs * self.steps_per_epoch
        if s.max_steps is not None:
            self.total_steps = min(self.total_steps, s.max_steps)
        self.callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        self.history = History(steps_per_epoch=self.steps_per_epoch, loss=s.loss)
        self.step_count, self.pos = 0, 0
        self._gen = torch.Generator().manual_seed(int(s.seed))
        self._epoch_gen_state = self._gen.get_state()
        self._perm = torch.randperm(n, generator=self._gen)
        self._batch_losses: list[float] = []
        self.stop_reason: str | None = None  # why step() refused a batch
        self._resumed_rng: torch.Tensor | None = None
        self._t0 = time.perf_counter()
        self._train_time, self._clock = 0.0, time.perf_counter()
        self.state = TrainState(model=model, optimizer=self.optimizer, history=self.history, train=self.train_data,
                                eval=self.eval_data, device=self.device)

    # -- resume / checkpoint ------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        s = self.spec
        if isinstance(s.resume, (str, Path)):
            return Path(s.resume)
        return Path(s.checkpoint_dir) / CHECKPOINT_NAME if s.checkpoint_dir is not None else None

    def resume(self) -> bool:
        """Continue from the checkpoint (``spec.resume``) when there is one; True when it was loaded."""
        path = self._checkpoint_path()
        if not self.spec.resume or path is None or not (path.exists() or isinstance(self.spec.resume, (str, Path))):
            return False
        ck = load_checkpoint(path)
        if ck.get("n_train") != self.n or ck.get("batch_size") != self.spec.batch_size \
                or ck.get("drop_last", False) != self.spec.drop_last:
            raise ValueCheckError(
                f"checkpoint {path} was written for N = {ck.get('n_train')} training samples, batch_size = "
                f"{ck.get('batch_size')}, drop_last = {ck.get('drop_last', False)}, not N = {self.n}, batch_size = "
                f"{self.spec.batch_size}, drop_last = {self.spec.drop_last}; resume with the same data and batches or start afresh"
            )
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.history = self.state.history = History.from_dict(ck["history"])
        self.history.stopped_early, self.history.diverged, self.history.stop_reason = False, False, ""
        self.step_count, self.pos = int(ck["step"]), int(ck["pos"])
        self._epoch_gen_state = ck["epoch_gen_state"]
        self._gen.set_state(self._epoch_gen_state)
        self._perm = torch.randperm(self.n, generator=self._gen)
        self._t0 = time.perf_counter() - self.history.wall_time_s
        self._train_time = self.history.train_time_s[-1] if self.history.train_time_s else 0.0
        self._resumed_rng = ck.get("torch_rng_state")
        self.state.step, self.state.epoch = self.step_count, self.step_count / self.steps_per_epoch
        return True

    def checkpoint(self) -> Path | None:
        """Write ``last.pt`` to ``spec.checkpoint_dir`` (None without one)."""
        if self.spec.checkpoint_dir is None:
            return None
        return _save_checkpoint(Path(self.spec.checkpoint_dir), {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "history": self.history.to_dict(), "step": self.step_count, "pos": self.pos,
            "epoch_gen_state": self._epoch_gen_state, "n_train": self.n, "batch_size": self.spec.batch_size,
            "drop_last": self.spec.drop_last, "seed": int(self.spec.seed), "torch_rng_state": torch.get_rng_state(),
        })

    # -- one step ---------------------------------------------------------------------------
    def _objective(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data loss, data loss + (l2/2)Σ‖θ‖²) of the batch ``idx``."""
        zt, yt = self.train_data
        data_loss = loss_fn(self.model(zt[idx]), yt[idx], self.spec.loss)
        if not self.spec.l2:
            return data_loss, data_loss
        return data_loss, data_loss + 0.5 * self.spec.l2 * sum((p * p).sum() for p in self.penalised)

    def _divergence_bound(self) -> float:
        f, s0 = self.spec.divergence_factor, (self.history.train_loss[0] if self.history.train_loss else math.nan)
        return f * s0 if f is not None and math.isfinite(s0) and s0 > 0 else math.inf

    def step(self, idx: torch.Tensor) -> float | None:
        """One optimizer step on the training rows ``idx``; the batch's data loss.

        None when that loss is non-finite or beyond ``divergence_factor`` × S_0:
        then the update is *not* applied and :attr:`stop_reason` says why.
        """
        data_loss, objective = self._objective(idx)
        lval = float(data_loss.detach())
        if not math.isfinite(lval) or lval > self._divergence_bound():
            where = f"at step {self.step_count + 1} (epoch {self.step_count / self.steps_per_epoch:.2f})"
            cause = ("non-finite training loss" if not math.isfinite(lval) else
                     f"training loss grew beyond divergence_factor = {self.spec.divergence_factor:g} × its initial "
                     f"value {self.history.train_loss[0]:.4g}: loss")
            self.stop_reason = (f"{cause} ({lval:.4g}) {where}; the update was not applied — lower the learning rate "
                                "or check the data")
            return None
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.spec.closure:
            def closure() -> torch.Tensor:
                self.optimizer.zero_grad(set_to_none=True)
                obj = self._objective(idx)[1]
                obj.backward()
                return obj

            self.optimizer.step(closure)
        else:
            self.optimizer.step()
        self.step_count += 1
        self._batch_losses.append(lval)
        return lval

    def _next_batch(self) -> torch.Tensor:
        return self._perm[self.pos: self.pos + self.spec.batch_size]

    def _advance(self) -> None:
        self.pos += self.spec.batch_size
        if self.pos >= self.n or (self.spec.drop_last and self.pos + self.spec.batch_size > self.n):
            self.pos = 0
            self._epoch_gen_state = self._gen.get_state()
            self._perm = torch.randperm(self.n, generator=self._gen)

    # -- evaluation -------------------------------------------------------------------------
    def _stop_clock(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._train_time += time.perf_counter() - self._clock

    def evaluate(self) -> str | None:
        """Full-data losses and accuracies now, appended to the history; a reason string when training must stop.

        The reason is set when a loss is non-finite or beyond ``divergence_factor`` × S_0.
        """
        self._stop_clock()
        h, s, step = self.history, self.spec, self.step_count
        tl, ta = evaluate(self.model, *self.train_data, s.loss, s.eval_batch_size)
        el, ea = evaluate(self.model, *self.eval_data, s.loss, s.eval_batch_size) if self.eval_data else (None, None)
        bl = sum(self._batch_losses) / len(self._batch_losses) if self._batch_losses else None
        now = time.perf_counter() - self._t0
        for name, v in (("step", step), ("epoch", step / self.steps_per_epoch), ("train_loss", tl),
                        ("train_accuracy", ta), ("eval_loss", el), ("eval_accuracy", ea), ("batch_loss", bl),
                        ("lr", float(self.optimizer.param_groups[0].get("lr", math.nan))), ("time_s", now),
                        ("train_time_s", self._train_time)):
            getattr(h, name).append(v)
        h.steps_done, h.wall_time_s = step, now
        self._batch_losses.clear()
        self._clock = time.perf_counter()
        if not math.isfinite(tl) or (el is not None and not math.isfinite(el)):
            return f"non-finite full-data loss at step {step} (train {tl}, eval {el}); lower the learning rate"
        if tl > self._divergence_bound():
            return (f"full-data training loss {tl:.4g} at step {step} grew beyond divergence_factor = "
                    f"{s.divergence_factor:g} × its initial value {h.train_loss[0]:.4g}; lower the learning rate")
        return None

    def _record(self) -> str | None:
        reason = self.evaluate()
        self.checkpoint()
        self._clock = time.perf_counter()
        return reason

    # -- the loop ---------------------------------------------------------------------------
    def _call(self, hook: str) -> str | None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None and fn(self.state):
                return getattr(cb, "stop_reason", "") or f"stopped by {type(cb).__name__} at step {self.step_count}"
        return None

    def _eval_due(self) -> bool:
        k = self.steps_per_epoch if self.spec.eval_every == "epoch" else int(self.spec.eval_every)
        return self.step_count % k == 0 or self.step_count == self.total_steps

    def _loop(self, bar: Any) -> str | None:
        """Steps until done or a stop; the reason of a stop (None when the budget was used up)."""
        stop = None
        while stop is None and self.step_count < self.total_steps:
            lval = self.step(self._next_batch())
            if lval is None:
                self.history.diverged = True
                return self.stop_reason
            self._advance()
            self.state.step, self.state.epoch, self.state.batch_loss = (
                self.step_count, self.step_count / self.steps_per_epoch, lval)
            bar.update(1)
            if bar.disable is False:
                bar.set_postfix(loss=f"{lval:.4f}", refresh=False)
            stop = self._call("on_step_end")
            if self._eval_due() or stop is not None:
                bad = self._record()
                if bad:
                    self.history.diverged = True
                if stop is None:
                    stop = bad or self._call("on_eval")
        return stop

    def _finish(self, stop: str | None) -> History:
        h, s = self.history, self.spec
        if stop is not None:
            h.stopped_early, h.stop_reason = True, stop
        elif s.max_steps is not None and self.step_count >= s.max_steps and self.step_count < s.epochs * self.steps_per_epoch:
            h.stop_reason = f"max_steps = {s.max_steps} reached"
        else:
            h.stop_reason = f"completed {s.epochs} epochs ({self.step_count} steps)"
        h.steps_done = self.step_count
        h.wall_time_s = time.perf_counter() - self._t0
        for cb in self.callbacks:
            if hasattr(cb, "on_fit_end"):
                cb.on_fit_end(self.state)
        return h

    def run(self) -> History:
        """Resume (when asked), evaluate at the start, train to ``epochs`` / ``max_steps`` or a stop; the history."""
        from tqdm.auto import tqdm

        if self.spec.resume:
            self.resume()
        dev = self.device
        cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
        stop: str | None = None
        with torch.random.fork_rng(devices=cuda_ids):
            torch.manual_seed(int(self.spec.seed))
            if self._resumed_rng is not None:
                torch.set_rng_state(self._resumed_rng)  # dropout-like layers continue their random stream
            if not self.history.step or self.history.step[-1] != self.step_count:
                self._clock = time.perf_counter()
                stop = self._record()
                self.history.diverged = stop is not None
            for cb in self.callbacks:
                if hasattr(cb, "on_fit_start"):
                    cb.on_fit_start(self.state)
            bar = tqdm(total=self.total_steps, initial=min(self.step_count, self.total_steps), unit="step",
                       disable=None if self.spec.progress else True, desc="train", leave=False)
            self.model.train()
            self._clock = time.perf_counter()
            try:
                if stop is None:
                    stop = self._loop(bar)
            finally:
                bar.close()
            if not self.history.step or self.history.step[-1] != self.step_count:
                self._record()
        return self._finish(stop)


_OPTIMIZER_FIELDS = ("lr", "momentum", "weight_decay")


def fit(model: nn.Module, train: Any, *, eval: Any = None, optimizer: Any = "adam", spec: TrainSpec | None = None,
        callbacks: Sequence[Any] | Any = (), device: Any = None, **settings: Any) -> History:
    """Train ``model`` in place on ``train``; return the :class:`History` (``Trainer(...).run()`` in one call).

    ``settings`` are keyword overrides: ``lr``, ``momentum``, ``weight_decay``
    (fields of :class:`OptimizerSpec`, used when ``optimizer`` is a name, an
    Optimizer class or an :class:`OptimizerSpec`) and any field of
    :class:`TrainSpec` (``epochs``, ``batch_size``, ``loss``, ``l2``, ``seed``,
    ``max_steps``, ``eval_every``, ``checkpoint_dir``, ``resume``,
    ``divergence_factor``, ``progress``, ...), applied on top of ``spec``. See
    :class:`Trainer` for the other arguments.
    """
    train_fields = {f.name for f in dataclasses.fields(TrainSpec)}
    unknown = set(settings) - train_fields - set(_OPTIMIZER_FIELDS)
    if unknown:
        raise ValueCheckError(f"fit() got unknown setting(s) {sorted(unknown)}; known: "
                              f"{sorted(train_fields | set(_OPTIMIZER_FIELDS))}")
    opt_kw = {k: settings[k] for k in _OPTIMIZER_FIELDS if k in settings}
    if isinstance(optimizer, OptimizerSpec):
        optimizer = dataclasses.replace(optimizer, **opt_kw)
    elif isinstance(optimizer, torch.optim.Optimizer):
        if opt_kw:
            raise ValueCheckError(f"{sorted(opt_kw)} cannot be applied to a ready optimizer instance; set them when building it")
    else:
        optimizer = OptimizerSpec(optimizer, **opt_kw)
    loop_kw = {k: v for k, v in settings.items() if k in train_fields}
    spec = dataclasses.replace(spec, **loop_kw) if spec is not None else TrainSpec(**loop_kw)
    return Trainer(model, train, eval, optimizer=optimizer, spec=spec, callbacks=callbacks, device=device).run()
