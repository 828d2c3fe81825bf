"""A plain, reusable training loop, its history, callbacks and the §3 early-stopping rule.

``fit`` minimises the training action (cross-entropy, eq. (2) of notes
000–002 with the empirical distribution p_T) or the squared loss to one-hot
targets by mini-batch gradient descent::

    from actionlab import data, models, train

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    model = models.TwoLayer.glorot(tr.num_classes, 64, tr.z.shape[1], generator=torch.Generator().manual_seed(0))
    hist = train.fit(model, tr, eval=te, optimizer="adam", lr=1e-2, epochs=20, batch_size=64)
    hist.eval_accuracy[-1]

Conventions (all stated here once):

* **Losses.** ``loss="cross_entropy"``: S(θ) = −(1/N) Σ_i ln q_{m_i}(z_i, θ)
  (notes eq. (2)). ``loss="mse"``: ½ (1/N) Σ_i ‖f(z_i) − e_{m_i}‖², the squared
  loss of the network's *outputs* f (the logits, no softmax) against the one-hot
  vector e_m (the loss of 004's Fisher analysis). Accuracy is argmax_m f_m = m_i.
  Losses recorded in the history are data losses, without any L2 term.
* **L2.** ``weight_decay`` is handed to the optimizer with torch's semantics:
  SGD and Adam add ``weight_decay·θ`` to the gradient (the gradient of
  (weight_decay/2)‖θ‖²; with Adam it is then rescaled by the adaptive step),
  AdamW decays θ directly (decoupled). ``l2`` instead adds (l2/2)·‖θ‖² to the
  minimised objective explicitly, whatever the optimizer — use it when the
  penalty must be part of the loss itself.
* **Mini-batches.** Each epoch draws a permutation of the N training samples
  from a ``torch.Generator`` seeded with ``seed`` and cuts it into
  ⌈N / batch_size⌉ batches (the last may be smaller). Given the same seed,
  model initialisation, data and device, two runs give identical parameters
  (on CPU bit-for-bit); the global torch RNG is seeded with ``seed`` inside a
  forked RNG state so that dropout-like layers are reproducible too and the
  caller's RNG state is left alone.
* **Evaluation.** At step 0, then every epoch (``eval_every="epoch"``) or
  every k optimizer steps (``eval_every=k``), and at the end: the full-data
  training loss and accuracy and, with an ``eval`` set, its loss and accuracy
  (streamed in batches of ``eval_batch_size``, in ``model.eval()`` mode).
* **Checkpoints.** With ``checkpoint_dir`` the loop writes ``last.pt`` there
  at every evaluation (model ``state_dict``, optimizer ``state_dict``, the
  history, the step and the batch generator's state). ``resume=True`` continues
  from ``checkpoint_dir/last.pt`` (if it exists) exactly where it stopped: the
  same batches follow and the CPU random stream of dropout-like layers is
  restored, so an interrupted and resumed run equals an uninterrupted one
  (on CPU; CUDA random streams are reseeded, not restored).
* **Divergence.** A non-finite mini-batch loss stops training *before* the
  update is applied (``stop_reason`` names the step; ``History.diverged`` is
  True); a non-finite full-data loss at an evaluation stops likewise.

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
    ShapeError,
    ValueCheckError,
    check_choice,
    check_labels,
    check_matrix,
    check_positive,
    check_same_length,
)

__all__ = [
    "fit",
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
@dataclass
class History:
    """What ``fit`` measured, one entry per evaluation (the first at step 0, before any update).

    ``train_loss`` / ``train_accuracy``: full training set at that step;
    ``eval_loss`` / ``eval_accuracy``: the ``eval`` set (None without one);
    ``batch_loss``: mean of the mini-batch losses since the previous evaluation
    (None at step 0); ``epoch``: epochs done (step / steps per epoch);
    ``time_s``: wall time since the start of training. ``diverged``: a
    non-finite loss was met (training then stops, ``stop_reason`` says where);
    ``stopped_early``: a callback or a non-finite loss ended training before
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

    Every ``every`` optimizer steps (``every="eval"``: at each of ``fit``'s
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
    ``(z, labels)`` tuples (normally the same sets as ``fit``'s).

    The L2 penalty of ``fit`` is not part of S_T here: the rule is about the
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
# optimizer construction
# ---------------------------------------------------------------------------------------------
def _make_optimizer(optimizer, params, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if isinstance(optimizer, str):
        name = check_choice(optimizer.lower(), OPTIMIZERS, "optimizer")
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        if momentum:
            raise ValueCheckError(f"momentum={momentum} applies to SGD only; {name} has its own betas")
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, weight_decay=weight_decay)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        accepted = inspect.signature(optimizer).parameters
        kw: dict[str, float] = {"lr": lr}
        if "weight_decay" in accepted:
            kw["weight_decay"] = weight_decay
        if momentum and "momentum" in accepted:
            kw["momentum"] = momentum
        return optimizer(params, **kw)
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueCheckError(f"the optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt
    raise ValueCheckError(
        f"optimizer must be one of {OPTIMIZERS}, a torch.optim.Optimizer class or a callable(params) -> Optimizer; "
        f"got {optimizer!r}"
    )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``fit`` (a dict: model, optimizer, history, step, ...)."""
    from actionlab._checks import DataError

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise DataError(f"checkpoint {path} does not exist; train with fit(..., checkpoint_dir=...) first")
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


# ---------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train: Any,
    *,
    eval: Any = None,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    l2: float = 0.0,
    epochs: int = 10,
    batch_size: int = 128,
    loss: str = "cross_entropy",
    callbacks: Sequence[Any] = (),
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    max_steps: int | None = None,
    eval_every: str | int = "epoch",
    eval_batch_size: int = 4096,
) -> History:
    """Train ``model`` in place on ``train`` by mini-batch gradient descent; return the :class:`History`.

    ``train`` / ``eval``: Datasets or ``(z, labels)`` tuples (z is cast to the
    model's dtype and moved to its device). ``optimizer``: "sgd" (with
    ``momentum``), "adam", "adamw", a ``torch.optim.Optimizer`` subclass (given
    ``lr``, and ``weight_decay`` / ``momentum`` where it accepts them) or any
    callable(params) → Optimizer (then ``lr``, ``momentum`` and
    ``weight_decay`` are the factory's business). ``epochs`` counts passes
    over the training set; ``max_steps`` caps the total number of optimizer
    steps (counting the steps of a resumed run). ``device``: None keeps the
    model where it is; otherwise the model is moved there (in place).
    ``resume``: True continues from ``checkpoint_dir/last.pt`` when it exists
    (and starts fresh when not); a path names the checkpoint file. See the
    module docstring for losses, L2, batching, evaluation and divergence.
    """
    # ---- argument checks -------------------------------------------------------------
    if not isinstance(model, nn.Module):
        raise ValueCheckError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_choice(loss, LOSSES, "loss")
    check_positive(float(lr), "lr")
    check_positive(float(momentum), "momentum", allow_zero=True)
    check_positive(float(weight_decay), "weight_decay", allow_zero=True)
    check_positive(float(l2), "l2", allow_zero=True)
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueCheckError(f"epochs must be an integer ≥ 0, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueCheckError(f"batch_size must be an integer ≥ 1, got {batch_size!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 0):
        raise ValueCheckError(f"max_steps must be an integer ≥ 0 or None, got {max_steps!r}")
    if eval_every != "epoch" and not (isinstance(eval_every, int) and eval_every >= 1):
        raise ValueCheckError(f"eval_every must be 'epoch' or a positive number of steps, got {eval_every!r}")
    if resume and checkpoint_dir is None and not isinstance(resume, (str, Path)):
        raise ValueCheckError("resume=True needs checkpoint_dir (where last.pt lives) or a checkpoint path")

    if device is not None:
        from actionlab.config import resolve_device

        model.to(resolve_device(device))
    dtype, dev = _model_dtype_device(model)

    zt, yt, m_t = _as_pair(train, "train")
    zt, yt = zt.to(device=dev, dtype=dtype), yt.to(dev)
    if eval is not None:
        ze, ye, m_e = _as_pair(eval, "eval")
        ze, ye = ze.to(device=dev, dtype=dtype), ye.to(dev)
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            out = model(zt[:2])
        finally:
            model.train(was_training)
    if out.dim() != 2:
        raise ShapeError(f"the model must return outputs of shape (N, M), got {tuple(out.shape)}")
    num_classes = out.shape[1]
    check_labels(yt, num_classes, "train labels")
    if eval is not None:
        check_labels(ye, num_classes, "eval labels")

    n = zt.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, float(lr), float(momentum), float(weight_decay))
    gen = torch.Generator().manual_seed(int(seed))
    history = History(steps_per_epoch=steps_per_epoch, loss=loss)
    step, pos = 0, 0
    epoch_gen_state = gen.get_state()
    perm = torch.randperm(n, generator=gen)
    time_offset = 0.0
    resumed_rng: torch.Tensor | None = None

    # ---- resume --------------------------------------------------------------------------
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    ckpt_path = Path(resume) if isinstance(resume, (str, Path)) else (ckpt_dir / CHECKPOINT_NAME if ckpt_dir else None)
    if resume and ckpt_path is not None and (ckpt_path.exists() or isinstance(resume, (str, Path))):
        ck = load_checkpoint(ckpt_path)
        if ck.get("n_train") != n or ck.get("batch_size") != batch_size:
            raise ValueCheckError(
                f"checkpoint {ckpt_path} was written for N = {ck.get('n_train')} training samples and "
                f"batch_size = {ck.get('batch_size')}, not N = {n}, batch_size = {batch_size}; "
                f"resume with the same data and batch size or start afresh"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history = History.from_dict(ck["history"])
        step, pos = int(ck["step"]), int(ck["pos"])
        epoch_gen_state = ck["epoch_gen_state"]
        gen.set_state(epoch_gen_state)
        perm = torch.randperm(n, generator=gen)
        time_offset = history.wall_time_s
        resumed_rng = ck.get("torch_rng_state")
        history.stopped_early, history.diverged, history.stop_reason = False, False, ""

    state = TrainState(
        model=model,
        optimizer=opt,
        history=history,
        train=(zt, yt),
        eval=(ze, ye) if eval is not None else None,
        step=step,
        epoch=step / steps_per_epoch,
        device=dev,
    )
    callbacks = [callbacks] if not isinstance(callbacks, (list, tuple)) else list(callbacks)
    t0 = time.perf_counter() - time_offset
    batch_losses: list[float] = []

    def record() -> str | None:
        """Evaluate, append to the history, checkpoint; a reason string when a loss is non-finite."""
        tl, ta = evaluate(model, zt, yt, loss, eval_batch_size)
        el, ea = evaluate(model, ze, ye, loss, eval_batch_size) if eval is not None else (None, None)
        history.step.append(step)
        history.epoch.append(step / steps_per_epoch)
        history.train_loss.append(tl)
        history.train_accuracy.append(ta)
        history.eval_loss.append(el)
        history.eval_accuracy.append(ea)
        history.batch_loss.append(sum(batch_losses) / len(batch_losses) if batch_losses else None)
        history.lr.append(float(opt.param_groups[0].get("lr", float("nan"))))
        history.time_s.append(time.perf_counter() - t0)
        history.steps_done = step
        history.wall_time_s = time.perf_counter() - t0
        batch_losses.clear()
        if ckpt_dir is not None:
            _save_checkpoint(
                ckpt_dir,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "history": history.to_dict(),
                    "step": step,
                    "pos": pos,
                    "epoch_gen_state": epoch_gen_state,
                    "n_train": n,
                    "batch_size": batch_size,
                    "seed": int(seed),
                    "torch_rng_state": torch.get_rng_state(),
                },
            )
        if not math.isfinite(tl) or (el is not None and not math.isfinite(el)):
            return f"non-finite full-data loss at step {step} (train {tl}, eval {el}); lower the learning rate"
        return None

    def call(hook: str) -> str | None:
        for cb in callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None and fn(state):
                return getattr(cb, "stop_reason", "") or f"stopped by {type(cb).__name__} at step {step}"
        return None

    from tqdm.auto import tqdm

    stop: str | None = None
    cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_ids):
        torch.manual_seed(int(seed))
        if resumed_rng is not None:
            torch.set_rng_state(resumed_rng)  # dropout-like layers continue their random stream
        if not history.step or history.step[-1] != step:
            stop = record()
            history.diverged = stop is not None
        for cb in callbacks:
            if hasattr(cb, "on_fit_start"):
                cb.on_fit_start(state)
        bar = tqdm(total=total_steps, initial=min(step, total_steps), disable=None if progress else True,
                   desc="train", unit="step", leave=False)
        model.train()
        try:
            while stop is None and step < total_steps:
                idx = perm[pos : pos + batch_size]
                out = model(zt[idx])
                data_loss = loss_fn(out, yt[idx], loss)
                lval = float(data_loss.detach())
                if not math.isfinite(lval):
                    history.diverged = True
                    stop = (
                        f"non-finite training loss ({lval}) at step {step + 1} (epoch {step / steps_per_epoch:.2f}); "
                        f"the update was not applied — lower the learning rate or check the data"
                    )
                    break
                objective = data_loss
                if l2:
                    objective = objective + 0.5 * l2 * sum((p * p).sum() for p in params)
                opt.zero_grad(set_to_none=True)
                objective.backward()
                opt.step()
                step += 1
                pos += batch_size
                batch_losses.append(lval)
                if pos >= n:
                    pos = 0
                    epoch_gen_state = gen.get_state()
                    perm = torch.randperm(n, generator=gen)
                state.step, state.epoch, state.batch_loss = step, step / steps_per_epoch, lval
                bar.update(1)
                if bar.disable is False:
                    bar.set_postfix(loss=f"{lval:.4f}", refresh=False)
                stop = call("on_step_end")
                due = (step % steps_per_epoch == 0) if eval_every == "epoch" else (step % eval_every == 0)
                if due or step == total_steps or stop is not None:
                    bad = record()
                    if stop is None:
                        stop = bad or call("on_eval")
                    if bad:
                        history.diverged = True
        finally:
            bar.close()
        if not history.step or history.step[-1] != step:
            record()

    if stop is not None:
        history.stopped_early = True
        history.stop_reason = stop
    elif max_steps is not None and step >= max_steps and step < epochs * steps_per_epoch:
        history.stop_reason = f"max_steps = {max_steps} reached"
    else:
        history.stop_reason = f"completed {epochs} epochs ({step} steps)"
    history.steps_done = step
    history.wall_time_s = time.perf_counter() - t0
    for cb in callbacks:
        if hasattr(cb, "on_fit_end"):
            cb.on_fit_end(state)
    return history
