"""``actionlab demo``: train the notes' two-layer classifier on the bundled digits, in seconds.

The main job on the built-in default data (scikit-learn's 8×8 digits, offline):
a :class:`~actionlab.models.TwoLayer` q = softmax(U·σ(W z + b) + c) (notes
001 §1.1, SiLU by default) with Glorot-uniform weights is trained with
:func:`actionlab.train.fit` (Adam, mini-batches, cross-entropy = the action
S(θ) of eq. (2)) on the digits train split and evaluated on the test split.

It records

* S(0): the action at θ = 0 on the train split, set against eq. (4),
  S_0 = ln M (at θ = 0 every q_m = 1/M, whatever the labels), as a claim;
* S at initialisation and after training, on the train and test splits;
* the per-epoch history (train/test loss and accuracy);

and writes ``results.json``, ``loss.png`` (train/test action per epoch, with
ln M marked), ``accuracy.png`` and ``summary.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from actionlab import data as _data
from actionlab.config import RunOptions, seed_everything, torch_threads
from actionlab._display import short_repr
from actionlab.experiments._registry import param, register_experiment
from actionlab.models import TwoLayer, action
from actionlab.runs import Claim, RunFolder, claims_table_md
from actionlab.train import History, fit

__all__ = ["DemoConfig", "DemoResult", "run"]


@dataclass
class DemoConfig:
    """Train a small TwoLayer (SiLU) on the bundled digits and plot its loss curves."""

    dataset: str = param("digits", "data set (digits is bundled with scikit-learn: offline, seconds)")
    hidden: int = param(64, "hidden width H of the TwoLayer", min=1)
    activation: str = param("silu", "activation σ (silu is the notes' choice, 001 §1.1)")
    standardize: str = param("zscore", "none, centre or zscore (statistics of the train split)")
    optimizer: str = param("adam", "sgd, adam or adamw")
    lr: float = param(3e-3, "learning rate η", min=0, exclusive_min=True)
    momentum: float = param(0.0, "SGD momentum μ", min=0, max=1)
    weight_decay: float = param(0.0, "weight decay, handed to the optimizer (coupled for sgd/adam, decoupled for adamw)",
                                min=0)
    epochs: int = param(40, "passes over the training set", min=1)
    batch_size: int = param(64, "mini-batch size", min=1)

    PRESETS: ClassVar[dict[str, dict]] = {
        "quick": {"hidden": 32, "epochs": 8},
        "default": {},
        "full": {"hidden": 256, "epochs": 100},
    }


@short_repr
@dataclass
class DemoResult:
    dataset: str
    n_train: int
    n_test: int
    E: int
    M: int
    H: int
    num_params: int
    ln_M: float
    S_zero: float  # S(θ = 0) on the train split
    S_init_train: float
    S_init_test: float
    S_final_train: float
    S_final_test: float
    final_train_accuracy: float
    final_test_accuracy: float
    train_seconds: float
    stop_reason: str
    history: History


@register_experiment("demo", config=DemoConfig, help="train a small TwoLayer on the bundled digits (seconds)",
                     sources=("001",), order=0)
def run(config: DemoConfig, options: RunOptions) -> DemoResult:
    seed_everything(options.seed)
    dtype, device = options.torch_dtype, options.torch_device
    tr = _data.load(config.dataset, "train", standardize=config.standardize, seed=options.seed, dtype=dtype)
    te = _data.load(config.dataset, "test", standardize=config.standardize, seed=options.seed, dtype=dtype)
    zt, yt = tr.z.to(device), tr.labels.to(device)
    ze, ye = te.z.to(device), te.labels.to(device)
    M, E = tr.num_classes, tr.z.shape[1]
    rf = RunFolder(options, "demo", config, seed=options.seed,
                   data={"train": tr.info, "test": te.info, "n_train": len(tr), "n_test": len(te)})

    with torch.no_grad():
        zero = TwoLayer.zeros(M, config.hidden, E, activation=config.activation, dtype=dtype, device=device)
        s_zero = float(action(zero, zt, yt))
        gen = torch.Generator().manual_seed(options.seed)
        model = TwoLayer.glorot(M, config.hidden, E, activation=config.activation, generator=gen, dtype=dtype,
                                device=device)
        s_init_train, s_init_test = float(action(model, zt, yt)), float(action(model, ze, ye))

    # The matrices here are tiny (batch 64 × E 64 × H 64): on a CPU, intra-op threads only add
    # synchronisation cost (measured 10× slower with 2 threads on a busy 2-core machine), so the
    # training runs single-threaded there; the caller's thread setting is restored afterwards.
    with torch_threads(1 if device.type == "cpu" else None):
        hist = fit(model, (zt, yt), eval=(ze, ye), optimizer=config.optimizer, lr=config.lr,
                   momentum=config.momentum, weight_decay=config.weight_decay, epochs=config.epochs,
                   batch_size=config.batch_size, seed=options.seed, device=device)
    with torch.no_grad():
        s_fin_train, s_fin_test = float(action(model, zt, yt)), float(action(model, ze, ye))

    res = DemoResult(
        dataset=config.dataset, n_train=len(tr), n_test=len(te), E=E, M=M, H=config.hidden,
        num_params=model.num_params, ln_M=math.log(M), S_zero=s_zero,
        S_init_train=s_init_train, S_init_test=s_init_test, S_final_train=s_fin_train, S_final_test=s_fin_test,
        final_train_accuracy=hist.train_accuracy[-1], final_test_accuracy=hist.eval_accuracy[-1],
        train_seconds=hist.wall_time_s, stop_reason=hist.stop_reason, history=hist,
    )
    rf.write_bytes("model.safetensors", model.to_bytes())
    _figures(rf, res)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    diff = abs(s_zero - math.log(M))
    rf.add_claim(Claim(
        source="001", claim="S_0 = S(θ = 0) = ln M (eq. (4))", document_value=math.log(M), measured=s_zero,
        verdict="holds" if diff <= tol * math.log(M) else "does not hold",
        details=f"|S(0) − ln M| = {diff:.2e} (tolerance {tol:g} relative, {dtype}); the train split's labels are "
                f"not balanced, which S(0) does not need",
        id="demo.S0-lnM",
        evidence={"preset": options.preset, "seed": options.seed, "dtype": str(options.dtype), "N": len(tr),
                  "statistic": "|S(0) − ln M|", "value": diff, "threshold": tol * math.log(M)},
        strength="firm",
    ))
    rf.finish(res, _summary(rf, res, config, options))
    return res


def _figures(rf: RunFolder, res: DemoResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = res.history
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(h.epoch, h.train_loss, label="train S_T")
    ax.plot(h.epoch, h.eval_loss, label="test S_E")
    ax.axhline(res.ln_M, color="grey", ls=":", label=f"ln M = S(0) = {res.ln_M:.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("action S (cross-entropy)")
    ax.set_yscale("log")
    ax.set_title(f"TwoLayer H={res.H} on {res.dataset}")
    ax.legend(loc="lower left")
    rf.save_figure(fig, "loss")

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(h.epoch, h.train_accuracy, label="train")
    ax.plot(h.epoch, h.eval_accuracy, label="test")
    ax.axhline(1.0 / res.M, color="grey", ls=":", label="chance 1/M")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    rf.save_figure(fig, "accuracy")


def _summary(rf: RunFolder, res: DemoResult, config: DemoConfig, options: RunOptions) -> str:
    lines = [
        f"# demo: TwoLayer ({config.activation}, H = {res.H}) on {res.dataset}\n",
        f"N_train = {res.n_train}, N_test = {res.n_test}, E = {res.E}, M = {res.M}, parameters = {res.num_params}; "
        f"{config.optimizer} lr = {config.lr}, {config.epochs} epochs of batch {config.batch_size}, "
        f"seed {options.seed}, {options.dtype} on {options.device}.\n",
        "| quantity | train | test |",
        "|---|---|---|",
        f"| S(θ = 0) | {res.S_zero:.6f} | (ln M = {res.ln_M:.6f}) |",
        f"| S at initialisation (Glorot) | {res.S_init_train:.4f} | {res.S_init_test:.4f} |",
        f"| S after training | {res.S_final_train:.4f} | {res.S_final_test:.4f} |",
        f"| accuracy after training | {res.final_train_accuracy:.4f} | {res.final_test_accuracy:.4f} |",
        "",
        f"Training: {res.stop_reason}, {res.train_seconds:.1f} s.",
        "",
        "Figures: " + ", ".join(rf.figures),
        "",
        "## Claims\n",
        claims_table_md(rf.claims),
    ]
    return "\n".join(lines)
