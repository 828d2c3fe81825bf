"""``actionlab expand``: the exact Taylor coefficients S_0..S_K of the action and the notes' named terms.

Computes S(base + tθ) = S_0 + S_1 t + … + S_K t^K exactly (Taylor mode,
:func:`actionlab.expansion.action_series`; notes 000/001 eqs. (3)–(6)) for a
two-layer classifier q = softmax(U·σ(W z + b) + c) on a data set; with base =
0 (the default) also the decomposition of S_2 and S_3 into the notes' named
terms (:func:`actionlab.expansion.terms`; σ(0) = 0 and σ analytic at 0), the
partial sums against the exact S(base + tθ), and the radius where a kinked
activation's one-sided series stops being exact
(:func:`actionlab.expansion.kink_radius`). Writes ``results.json`` and
``summary.md``.

Under ``torchrun`` (``RunOptions.group``) every rank loads the same data and θ
(the same seed), keeps its shard of the samples
(:func:`actionlab.distributed.shard`, rank order) and passes ``group=`` to
``action_series``, ``action_exact`` and ``terms``: the numbers are those of
one process on all samples, to round-off; the kink radius is the minimum over
the ranks' radii.

Examples::

    actionlab expand --data digits --activation silu --hidden 64 --order 6
    actionlab expand --data fashion-mnist --split test --per-class 200 --activation relu --order 4
    actionlab expand --data fashion-mnist --params runs/theta-star/theta.safetensors --order 8
    actionlab expand --data fashion-mnist --params dir.safetensors --base theta_star.safetensors --order 4
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from actionlab._display import short_repr
from actionlab.config import RunOptions, seed_everything
from actionlab.experiments._registry import param, register_experiment

__all__ = ["ExpandConfig", "ExpandResult", "PartialSum", "run"]


@dataclass
class ExpandConfig:
    """The exact Taylor coefficients S_0..S_K of the action (any order, any activation) and the named terms."""

    data: str = param("digits", "data set: digits, fashion-mnist, mnist or cifar10")
    split: str = param("test", "split: train, validation or test")
    per_class: int | None = param(None, "balanced subset with this many samples per class (default: all)", min=1)
    balance: bool = param(True, "subsample to equal class counts (--no-balance keeps p(m) as it is)")
    standardize: str = param("none", "none, centre or zscore")
    reduce: str | None = param(None, "reduce the embedding: pca, random or pool (default: raw features)")
    dim: int | None = param(None, "target embedding dimension E for --reduce", min=1)
    activation: str = param("silu", "activation σ of the random θ (ignored with --params)")
    hidden: int = param(64, "hidden width H of the random θ (ignored with --params)", min=1)
    scale: float = param(0.1, "random θ ~ N(0, scale²)", min=0, exclusive_min=True)
    order: int = param(4, "K, the highest order of the series", min=0)
    params: Path | None = param(None, "θ (the direction) from a TwoLayer safetensors file")
    base: Path | None = param(None, "expansion point from a TwoLayer safetensors file (default θ = 0)")
    t: tuple[float, ...] = param((0.25, 0.5, 1.0), "t values at which the partial sums are compared with the exact "
                                 "S(base + tθ)", allow_empty=False)
    batch_size: int | None = param(None, "samples per batch (default: automatic)", min=1)

    PRESETS: ClassVar[dict[str, dict]] = {"quick": {}, "default": {}, "full": {"order": 6}}


@dataclass
class PartialSum:
    """Σ_{n≤k} S_n t^n for k = 0..K at one t, against the exact S(base + tθ)."""

    t: float
    exact: float
    partial_sums: list[float]
    within_kink_radius: bool


@short_repr
@dataclass
class ExpandResult:
    """S_0..S_K, the problem's sizes, the kink radius, the partial sums and the named terms (θ = 0 only)."""

    S: list[float]
    order: int
    activation: str
    M: int
    H: int
    E: int
    N: int
    kink_radius: float
    partial_sums: list[PartialSum]
    terms: Any  # actionlab.expansion.Terms, or None
    terms_note: str


def _load(config: ExpandConfig, options: RunOptions):
    """The data set, the direction θ, its activation and the base point (None for θ = 0)."""
    from actionlab import data as _data
    from actionlab.models import TwoLayer

    dtype, device = options.torch_dtype, options.torch_device
    gen = seed_everything(options.seed)
    ds = _data.load(config.data, config.split, balance=config.balance or config.per_class is not None,
                    per_class=config.per_class, standardize=config.standardize, reduce=config.reduce, dim=config.dim,
                    seed=options.seed, dtype=dtype, device=device)
    if config.params is not None:
        model = TwoLayer.load(config.params, device=device)
        theta = {k: v.to(dtype) for k, v in model.tensors().items()}
    else:
        model = TwoLayer.random(ds.num_classes, config.hidden, ds.z.shape[1], activation=config.activation,
                                scale=config.scale, generator=gen, dtype=dtype, device=device)
        theta = model.tensors()
    base = None
    if config.base is not None:
        base = {k: v.to(dtype) for k, v in TwoLayer.load(config.base, device=device).tensors().items()}
    return ds, theta, model.activation, base


def _shard(ds, group):
    """This rank's contiguous shard of the samples (all of them for ``group=None``)."""
    from actionlab import distributed

    return ds.subset(torch.arange(len(ds))[distributed.shard(len(ds), group)]) if group is not None else ds


def _partial_sums(S, theta, base, ds, act, config: ExpandConfig, radius: float, group=None) -> list[PartialSum]:
    from actionlab.expansion import action_exact

    out = []
    for t in config.t:
        point = {k: (0 if base is None else base[k]) + t * v for k, v in theta.items()}
        exact = float(action_exact(point, ds.z, ds.labels, activation=act, batch_size=config.batch_size, group=group))
        sums = [sum(S[j] * t**j for j in range(k + 1)) for k in range(len(S))]
        out.append(PartialSum(t=t, exact=exact, partial_sums=sums, within_kink_radius=t < radius))
    return out


def _named_terms(theta, ds, act, base, batch_size, group=None):
    """(terms, note): the notes' named terms of S_2, S_3 at θ = 0, or why they are not computed."""
    from actionlab._checks import ValueCheckError
    from actionlab.expansion import terms

    if base is not None:
        return None, "named terms are defined at θ = 0 only (no --base)"
    try:
        return terms(theta, ds.z, ds.labels, activation=act, batch_size=batch_size, exact=False, group=group), ""
    except ValueCheckError as exc:
        return None, str(exc)


def _summary(res: ExpandResult, ds, act, config: ExpandConfig) -> str:
    S, K = res.S, res.order
    lines = [f"# expand: {ds.name} {ds.split}, N = {res.N}, E = {res.E}, M = {res.M}, H = {res.H}, σ = {act.name}, "
             f"base = {'0' if config.base is None else config.base}", ""]
    lines += ["| n | S_n |", "|---|---|"] + [f"| {n} | {s:.10g} |" for n, s in enumerate(S)]
    if res.kink_radius < math.inf:
        lines += ["", f"{act.name} has kinks at {act.kinks}: the series is exact for 0 ≤ t < {res.kink_radius:.4g} "
                  "(the first t at which a pre-activation crosses a kink); beyond it S(t) is on another analytic piece."]
    elif not act.analytic_at_zero and config.base is None:
        lines += ["", f"{act.name} is not analytic at 0: these are the right-sided coefficients (t → 0⁺). On this ray no "
                  "pre-activation t·(W z + b) changes sign for t > 0, so S(tθ) is analytic there and the series converges "
                  "to it within its radius of convergence."]
    lines += ["", "| t | exact S | " + " | ".join(f"Σ_{{n≤{k}}}" for k in range(K + 1)) + " |", "|---" * (K + 3) + "|"]
    for r in res.partial_sums:
        lines.append(f"| {r.t:g} | {r.exact:.8g} | " + " | ".join(f"{x:.8g}" for x in r.partial_sums) + " |")
    named = res.terms
    if named is not None:
        s2 = S[2] if K >= 2 else float("nan")
        s3 = S[3] if K >= 3 else float("nan")
        lines += ["", f"Named terms at θ = 0 (sum S_2 = {named.S2:.10g}, S_3 = {named.S3:.10g}; "
                  f"series S_2 = {s2:.10g}, S_3 = {s3:.10g}):", "",
                  "| order | term | value | coefficient (derived) | note's value | sub-terms |", "|---|---|---|---|---|---|"]
        for tm in named.terms:
            nv = "—" if tm.note_value is None else f"{tm.note_value:.6g}"
            lines.append(f"| {tm.order} | {tm.name} | {tm.value:.6g} | {tm.coefficient} | {nv} | {tm.subterms:,} |")
    elif res.terms_note:
        lines += ["", f"Named terms: not computed — {res.terms_note}"]
    return "\n".join(lines) + "\n"


@register_experiment("expand", config=ExpandConfig,
                     help="exact Taylor coefficients S_0..S_K of the action (any order, any activation) and the named terms",
                     sources=("000", "001"), order=10)
def run(config: ExpandConfig, options: RunOptions) -> ExpandResult:
    """S_0..S_K along θ from the base point, the partial sums, the kink radius and the named terms."""
    from actionlab import distributed
    from actionlab.expansion import action_series, kink_radius
    from actionlab.runs import RunFolder

    group = options.group
    ds, theta, act, base = _load(config, options)
    folder = RunFolder(options, "expand", config, seed=options.seed, data=ds.info)
    local = _shard(ds, group)
    ser = action_series(theta, local.z, local.labels, config.order, base=base, activation=act,
                        batch_size=config.batch_size, progress=None, group=group)
    S = [float(x) for x in ser]
    radius = -distributed.all_reduce_max(-kink_radius(theta, local.z, base, activation=act), group)
    named, note = _named_terms(theta, local, act, base, config.batch_size, group)
    res = ExpandResult(S=S, order=config.order, activation=act.name, M=ds.num_classes, H=theta["U"].shape[1],
                       E=ds.z.shape[1], N=len(ds), kink_radius=radius,
                       partial_sums=_partial_sums(S, theta, base, local, act, config, radius, group), terms=named,
                       terms_note=note)
    folder.finish(res, _summary(res, ds, act, config))
    return res
