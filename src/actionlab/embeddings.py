"""The embedding z of the classifier q = softmax(U·σ(W z + b) + c): a choice.

The theory notes (000, 001) write the classifier on an "embedding vector"
z ∈ R^E (001, §1.1).  Their own Fashion-MNIST experiment (``seeds/papers.md``,
"Origin of the theory notes") used a *learned* linear embedding of the pixels
of width E = 1024, trained jointly with a SiLU hidden layer and a 10-way
output by AdamW with early stopping on the validation loss, and then read z
off the trained model.  This module offers that choice beside the fixed
reductions of :mod:`actionlab.data`:

=========  ===================================================================
``raw``     the pixels as loaded (E = number of pixels; ``dim`` must be None
            or equal to it)
``pca``     projection on the first ``dim`` principal components, fitted on
            the training split only and applied to both splits
``pool``    average pooling of the image to ``dim`` cells (images only)

            pca and pool are :mod:`actionlab.data.transforms`' maps: through
            :func:`actionlab.data.load` when both splits came from it unreduced
            (same rows, same options, so the reduction comes before the
            standardisation), else fitted on the given training split directly
            (pool then needs ``dim`` = C·s², C·H·W from ``info["image_shape"]``
            or a square 1×s×s image)
``learned`` a linear map x ↦ A x + a of width ``dim`` trained jointly with a
            :class:`~actionlab.models.TwoLayer` classifier (AdamW, early
            stopping on a held-out validation part of the training split,
            best weights restored), then frozen and applied to both splits
=========  ===================================================================

:func:`embed` returns ``(train_e, test_e, info)``; ``info`` is a JSON-able
description of what was done (for a run folder's provenance).  For
``learned`` the jointly trained modules are returned too, in
``info["model"]`` (an :class:`EmbeddedClassifier`, not JSON-able; drop it
with :func:`jsonable_info`): the notes read θ* = (U, c, W, b) off exactly
this model.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from actionlab._checks import ShapeError, ValueCheckError, check_choice, check_positive
from actionlab.data import transforms as _tf
from actionlab.data.splits import stratified_holdout

__all__ = [
    "KINDS",
    "EmbeddedClassifier",
    "ValLossEarlyStop",
    "LearnedConfig",
    "embed",
    "train_learned_embedding",
    "train_classifier",
    "apply_projection",
    "jsonable_info",
]

KINDS = ("raw", "pca", "pool", "learned")


@dataclasses.dataclass
class LearnedConfig:
    """Training settings of the ``learned`` embedding (defaults: the notes' Keras script, papers.md).

    The script used AdamW (Keras defaults: lr 1e-3, weight decay 0.004), batch
    4096, early stopping on the validation loss and a SiLU hidden layer of
    4096 units; ``hidden`` is configurable because 4096 does not fit a
    2-core time budget.
    """

    hidden: int = 2048
    activation: str = "silu"
    lr: float = 1e-3
    weight_decay: float = 0.004
    batch_size: int = 4096
    epochs: int = 30
    patience: int = 3
    val_fraction: float = 0.1
    bias: bool = True  # Keras Dense layers carry a bias by default
    max_steps: int | None = None


class EmbeddedClassifier(nn.Module):
    """x ↦ TwoLayer(A x + a): a linear embedding followed by the notes' two-layer classifier."""

    def __init__(self, projection: nn.Linear, classifier: nn.Module) -> None:
        super().__init__()
        self.projection = projection
        self.classifier = classifier

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.projection(x))


class ValLossEarlyStop:
    """Callback for :func:`actionlab.train.fit`: stop when the validation loss has not improved
    for ``patience`` evaluations, keeping a copy of the best weights (Keras' EarlyStopping with
    ``restore_best_weights=True``).  The loss is computed here on the given validation tensors,
    so it does not depend on what ``fit`` records."""

    def __init__(self, x_val: torch.Tensor, y_val: torch.Tensor, patience: int = 3, batch_size: int = 8192) -> None:
        self.x_val, self.y_val = x_val, y_val
        self.patience = int(patience)
        self.batch_size = int(batch_size)
        self.best_loss = math.inf
        self.best_state: dict | None = None
        self.best_index = -1
        self.losses: list[float] = []
        self.stopped = False

    @torch.no_grad()
    def _loss(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        dev = next(model.parameters()).device
        total = 0.0
        for i in range(0, len(self.x_val), self.batch_size):
            xb = self.x_val[i : i + self.batch_size].to(dev)
            yb = self.y_val[i : i + self.batch_size].to(dev)
            total += float(F.cross_entropy(model(xb), yb, reduction="sum"))
        model.train(was_training)
        return total / max(len(self.x_val), 1)

    def on_eval(self, state: Any) -> bool:
        hist = getattr(state, "history", None)
        ev = getattr(hist, "eval_loss", None) if hist is not None else None
        if ev and ev[-1] is not None and getattr(state, "eval", None) is not None and len(state.eval[0]) == len(self.x_val):
            loss = float(ev[-1])  # fit already measured it on the same validation set
        else:
            loss = self._loss(state.model)
        self.losses.append(loss)
        if loss < self.best_loss - 1e-7:
            self.best_loss = loss
            self.best_index = len(self.losses) - 1
            self.best_state = copy.deepcopy(state.model.state_dict())
        elif len(self.losses) - 1 - self.best_index >= self.patience:
            self.stopped = True
            return True
        return False

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


def _fit_early_stopped(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, cfg: LearnedConfig, *, seed: int,
                       device, progress: bool, callbacks: tuple = ()) -> tuple[nn.Module, dict]:
    """AdamW on ``model`` with early stopping on a held-out validation part of (x, labels); best weights restored.

    The validation part is ``cfg.val_fraction`` of the rows, stratified by class
    (:func:`actionlab.data.splits.stratified_holdout`, seeded).  The model comes
    back frozen (eval mode, no gradients) with the training record.
    """
    from actionlab import train as _train

    tr_idx, va_idx = stratified_holdout(labels, cfg.val_fraction, seed)
    x_va, y_va = x[va_idx], labels[va_idx]
    stopper = ValLossEarlyStop(x_va, y_va, patience=cfg.patience)
    hist = _train.fit(
        model, (x[tr_idx], labels[tr_idx]), eval=(x_va, y_va), optimizer="adamw", lr=cfg.lr,
        weight_decay=cfg.weight_decay, epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=(stopper, *callbacks),
        seed=seed, device=device, progress=progress, max_steps=cfg.max_steps,
    )
    stopper.restore(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    record = {
        "config": dataclasses.asdict(cfg),
        "n_train": len(tr_idx),
        "n_validation": len(va_idx),
        "validation_losses": stopper.losses,
        "best_evaluation": stopper.best_index,
        "best_validation_loss": stopper.best_loss,
        "stopped_early": stopper.stopped,
        "wall_time_s": getattr(hist, "wall_time_s", None),
        "train_loss_trace": list(getattr(hist, "train_loss", []) or []),
    }
    return model, record


def train_learned_embedding(
    x: torch.Tensor,
    labels: torch.Tensor,
    dim: int,
    num_classes: int,
    config: LearnedConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[EmbeddedClassifier, dict]:
    """Train x ↦ TwoLayer(A x + a) jointly (AdamW, early stopping on validation loss); return it and a record.

    Glorot-uniform initial weights and zero biases (Keras' defaults).  The
    validation part (``config.val_fraction`` of the rows, stratified, seeded) is
    held out of training; the best weights by validation loss are restored.
    """
    from actionlab.models import TwoLayer

    cfg = config or LearnedConfig()
    check_positive(dim, "dim")
    if x.dim() != 2:
        raise ShapeError(f"x must be N × P, got shape {tuple(x.shape)}")
    dtype = x.dtype
    gen = torch.Generator().manual_seed(seed)
    proj = nn.Linear(x.shape[1], dim, bias=cfg.bias)
    bound = math.sqrt(6.0 / (x.shape[1] + dim))
    with torch.no_grad():
        proj.weight.uniform_(-bound, bound, generator=gen)
        if proj.bias is not None:
            proj.bias.zero_()
    proj = proj.to(dtype)
    clf = TwoLayer.glorot(num_classes, cfg.hidden, dim, activation=cfg.activation, generator=gen, dtype=dtype)
    model = EmbeddedClassifier(proj, clf)
    if device is not None:
        model = model.to(device)
    return _fit_early_stopped(model, x, labels, cfg, seed=seed, device=device, progress=progress)


def train_classifier(
    train: Any,
    cfg: LearnedConfig,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    callbacks: tuple = (),
) -> tuple[nn.Module, dict]:
    """Train a Glorot-initialised TwoLayer of width ``cfg.hidden`` on the fixed z of a Dataset.

    The same procedure as the learned embedding's joint training (AdamW, early
    stopping on a stratified held-out part of ``train``, best weights restored);
    returns (model on the CPU, frozen; record).
    """
    from actionlab.models import TwoLayer

    gen = torch.Generator().manual_seed(seed)
    model = TwoLayer.glorot(train.num_classes, cfg.hidden, train.z.shape[1], activation=cfg.activation,
                            generator=gen, dtype=train.z.dtype)
    model, record = _fit_early_stopped(model, train.z, train.labels, cfg, seed=seed, device=device,
                                       progress=progress, callbacks=callbacks)
    record["hidden"] = cfg.hidden
    return model.cpu(), record


@torch.no_grad()
def apply_projection(proj: nn.Module, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """z = A x + a for every row of x, in batches."""
    dev = next(proj.parameters()).device
    out = [proj(x[i : i + batch_size].to(dev)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else x.new_zeros((0, proj.out_features))


def _with_z(ds: Any, z: torch.Tensor, info: dict) -> Any:
    new_info = dict(getattr(ds, "info", {}) or {})
    new_info["embedding"] = info
    return dataclasses.replace(ds, z=z.contiguous(), info=new_info)


def _local_reduction(train: Any, test: Any, kind: str, dim: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """pca / pool of datasets that did not come from ``data.load`` unreduced: the data package's own maps
    (:mod:`actionlab.data.transforms`), fitted on ``train`` only and applied to both."""
    p = train.z.shape[1]
    if kind == "pca":
        if dim > min(p, len(train.z)):
            raise ValueCheckError(f"pca to {dim} dimensions needs at least {dim} features and samples (have {p}, {len(train.z)})")
        fit = _tf.fit_pca(_tf.tensor_chunks(train.z.double()), dim)
        tr, te = fit.apply(train.z.double()).to(train.z.dtype), fit.apply(test.z.double()).to(test.z.dtype)
        return tr, te, {"explained_variance_ratio": fit.explained_variance_ratio, "fitted_on": "train split", "centred": True}
    shape = (getattr(train, "info", None) or {}).get("image_shape")
    if shape is None:
        side = int(round(math.sqrt(p)))
        if side * side != p:
            raise ValueCheckError(f"pool needs square images; {p} features is not a square (use pca or learned)")
        shape = (1, side, side)
    shape = tuple(int(n) for n in shape)
    s = _tf.pool_side(dim, shape)
    return _tf.pool(train.z, shape, s), _tf.pool(test.z, shape, s), {"grid": [s, s], "image_shape": list(shape)}


_RELOAD_KEYS = ("name", "split", "balance", "per_class", "standardize", "seed", "validation")


def _delegate(train: Any, test: Any, kind: str, dim: int):
    """pca / pool through :func:`actionlab.data.load` (its reductions, fitted on the train split, applied
    before the standardisation) when both splits came from ``data.load`` without a reduction; else None
    (then the local reduction is used: PCA fitted on ``train`` / average pooling)."""
    infos = [getattr(d, "info", None) or {} for d in (train, test)]
    if not all(all(k in i for k in _RELOAD_KEYS) and i.get("reduce") is None for i in infos):
        return None
    if kind == "pca" and any(infos[0][k] != infos[1][k] for k in ("balance", "per_class", "seed", "validation")):
        return None  # data.load fits the test split's PCA on a train split loaded with the test's options: not ours
    from actionlab import data

    out = []
    for d, i in zip((train, test), infos):
        r = data.load(i["name"], i["split"], balance=i["balance"], per_class=i["per_class"], standardize=i["standardize"],
                      reduce=kind, dim=dim, seed=i["seed"], dtype=d.z.dtype, validation=i["validation"])
        if len(r) != len(d) or not torch.equal(r.labels, d.labels):
            return None  # not the same rows (e.g. a subset was taken after loading): reduce locally
        out.append(r)
    extra = {k: v for k, v in out[0].info.items() if k.startswith("pca_") or k in ("pool_side", "fitted_on")}
    return out[0], out[1], extra


def embed(
    train: Any,
    test: Any,
    kind: str = "learned",
    dim: int | None = None,
    *,
    learned: LearnedConfig | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[Any, Any, dict]:
    """Embed two :class:`actionlab.data.Dataset` splits; returns ``(train_e, test_e, info)``.

    ``kind``: ``raw | pca | pool | learned`` (module docstring).  The
    reduction is always fitted on ``train`` only and applied to both.  ``info``
    records the kind, the dimension and every setting; for ``learned`` it also
    holds the trained :class:`EmbeddedClassifier` under ``"model"`` (the
    jointly trained classifier is the notes' θ*).
    """
    check_choice(kind, KINDS, "embedding kind")
    if train.z.shape[1] != test.z.shape[1]:
        raise ShapeError(f"train has {train.z.shape[1]} features but test has {test.z.shape[1]}; load both the same way")
    p = train.z.shape[1]
    info: dict = {"kind": kind, "input_dim": p, "seed": seed}
    if kind == "raw":
        if dim is not None and dim != p:
            raise ValueCheckError(f"embedding 'raw' keeps all {p} features; pass dim=None (or {p}), or choose pca/pool/learned")
        info["dim"] = p
        return _with_z(train, train.z, info), _with_z(test, test.z, info), info
    if dim is None:
        raise ValueCheckError(f"embedding {kind!r} needs a dimension: pass dim=E (e.g. 1024)")
    dim = int(check_positive(dim, "dim"))
    delegated = _delegate(train, test, kind, dim) if kind in ("pca", "pool") else None
    if delegated is not None:
        tr, te, extra = delegated
        info.update(dim=int(tr.z.shape[1]), via="actionlab.data.load(reduce=...)", **extra)
        return _with_z(train, tr.z, info), _with_z(test, te.z, info), info
    if kind in ("pca", "pool"):
        tr, te, extra = _local_reduction(train, test, kind, dim)
        info.update(dim=int(tr.shape[1]), **extra)
        return _with_z(train, tr, info), _with_z(test, te, info), info
    # learned
    cfg = learned or LearnedConfig()
    model, record = train_learned_embedding(
        train.z, train.labels, dim, train.num_classes, cfg, seed=seed, device=device, progress=progress
    )
    info.update(dim=dim, training=record)
    tr = apply_projection(model.projection, train.z)
    te = apply_projection(model.projection, test.z)
    info_out = dict(info)
    info_out["model"] = model.cpu()
    return _with_z(train, tr, info), _with_z(test, te, info), info_out


def jsonable_info(info: dict) -> dict:
    """``info`` without the trained model (for results.json / provenance)."""
    return {k: v for k, v in info.items() if k != "model"}
