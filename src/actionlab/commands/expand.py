"""``actionlab expand``: the exact Taylor coefficients S_0..S_K of the action and the notes' named terms.

Computes S(base + tθ) = S_0 + S_1 t + … + S_K t^K exactly (Taylor mode,
``actionlab.expansion.action_series``) for a two-layer classifier on a data
set; with base = 0 (the default) also the decomposition of S_2 and S_3 into
the notes' named terms (σ(0) = 0 and σ analytic at 0), the partial sums
against the exact S(θ), and the radius where a kinked activation's one-sided
series stops being exact. Prints tables and writes ``results.json`` and
``summary.md``.

Examples::

    actionlab expand --data digits --activation silu --hidden 64 --order 6
    actionlab expand --data fashion-mnist --split test --per-class 200 --activation relu --order 4
    actionlab expand --data fashion-mnist --params runs/theta-star/theta.safetensors --order 8
    actionlab expand --data fashion-mnist --params dir.safetensors --base theta_star.safetensors --order 4
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


__all__ = ["register"]

# `actionlab study` runs this command too (see actionlab.study.CommandExperiment): extra arguments per preset.
STUDY = {"sources": ("000", "001"), "order": 10, "presets": {"quick": [], "default": [], "full": ["--order", "6"]}}


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "expand",
        parents=[common],
        help="exact Taylor coefficients S_0..S_K of the action (any order, any activation) and the named terms",
        description=__doc__.split("Examples::")[0].split("\n", 2)[2].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("expand options")
    g.add_argument("--data", default="digits", help="data set: digits, fashion-mnist, mnist, cifar10 (default digits)")
    g.add_argument("--split", default="test", help="split (default test)")
    g.add_argument("--per-class", type=int, default=None, help="balanced subset with this many samples per class")
    g.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                   help="subsample to equal class counts (default yes; --no-balance keeps p(m) as it is)")
    g.add_argument("--standardize", default="none", help="none, centre or zscore (default none)")
    g.add_argument("--reduce", default=None, help="pca, random or pool (default: raw features)")
    g.add_argument("--dim", type=int, default=None, help="target E for --reduce")
    g.add_argument("--activation", default="silu", help="activation name (default silu)")
    g.add_argument("--hidden", type=int, default=64, help="H of the random θ (default 64; ignored with --params)")
    g.add_argument("--scale", type=float, default=0.1, help="random θ ~ N(0, scale²) (default 0.1)")
    g.add_argument("--order", type=int, default=4, help="K, the highest order (default 4)")
    g.add_argument("--params", type=Path, default=None, help="θ (the direction) from a TwoLayer safetensors file")
    g.add_argument("--base", type=Path, default=None, help="expansion point from a TwoLayer safetensors file (default θ = 0)")
    g.add_argument("--t", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="t values at which the partial sums are compared with S(base + tθ) (default 0.25 0.5 1)")
    g.add_argument("--batch-size", type=int, default=None, help="samples per batch (default: automatic)")
    p.set_defaults(_handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from actionlab import data as _data
    from actionlab._checks import ValueCheckError
    from actionlab.cli import options_from_args
    from actionlab.config import resolve_device, resolve_dtype, seed_everything
    from actionlab.expansion import action_exact, action_series, kink_radius, terms
    from actionlab.models import TwoLayer
    from actionlab.runs import RunFolder

    opts = options_from_args(args, "expand")
    dtype, device = resolve_dtype(opts.dtype), resolve_device(opts.device)
    gen = seed_everything(opts.seed)
    if args.order < 0:
        raise ValueCheckError(f"--order must be ≥ 0, got {args.order}")
    ds = _data.load(args.data, args.split, balance=args.balance or args.per_class is not None, per_class=args.per_class,
                    standardize=args.standardize, reduce=args.reduce, dim=args.dim, seed=opts.seed, dtype=dtype,
                    device=device)
    z, labels = ds.z, ds.labels
    M, E = ds.num_classes, z.shape[1]
    if args.params is not None:
        model = TwoLayer.load(args.params, device=device)
        theta = {k: v.to(dtype) for k, v in model.tensors().items()}
        act = model.activation
    else:
        model = TwoLayer.random(M, args.hidden, E, activation=args.activation, scale=args.scale, generator=gen,
                                dtype=dtype, device=device)
        theta = model.tensors()
        act = model.activation
    base = None
    if args.base is not None:
        bm = TwoLayer.load(args.base, device=device)
        base = {k: v.to(dtype) for k, v in bm.tensors().items()}
    H = theta["U"].shape[1]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not k.startswith("_")}
    run = RunFolder(opts.out, experiment="expand", config=config, seed=opts.seed, data=ds.info)
    K = args.order
    ser = action_series(theta, z, labels, K, base=base, activation=act, batch_size=args.batch_size, progress=None)
    S = [float(x) for x in ser]
    radius = kink_radius(theta, z, base, activation=act)

    def point(t):
        if base is None:
            return {k: t * v for k, v in theta.items()}
        return {k: base[k] + t * theta[k] for k in theta}

    partial = []
    for t in args.t:
        ex = float(action_exact(point(t), z, labels, activation=act, batch_size=args.batch_size))
        ps = [sum(S[j] * t**j for j in range(k + 1)) for k in range(K + 1)]
        partial.append({"t": t, "exact": ex, "partial_sums": ps, "within_kink_radius": t < radius})
    named = None
    named_note = ""
    if base is None:
        try:
            named = terms(theta, z, labels, activation=act, batch_size=args.batch_size, exact=False)
        except ValueCheckError as exc:
            named_note = str(exc)
    else:
        named_note = "named terms are defined at θ = 0 only (no --base)"
    lines = [f"# expand: {ds.name} {ds.split}, N = {len(ds)}, E = {E}, M = {M}, H = {H}, σ = {act.name}, "
             f"base = {'0' if base is None else args.base}", ""]
    lines += ["| n | S_n |", "|---|---|"] + [f"| {n} | {s:.10g} |" for n, s in enumerate(S)]
    if radius < math.inf:
        lines += ["", f"{act.name} has kinks at {act.kinks}: the series is exact for 0 ≤ t < {radius:.4g} "
                  "(the first t at which a pre-activation crosses a kink); beyond it S(t) is on another analytic piece."]
    elif not act.analytic_at_zero and base is None:
        lines += ["", f"{act.name} is not analytic at 0: these are the right-sided coefficients (t → 0⁺). On this ray no "
                  "pre-activation t·(W z + b) changes sign for t > 0, so S(tθ) is analytic there and the series converges "
                  "to it within its radius of convergence."]
    lines += ["", "| t | exact S | " + " | ".join(f"Σ_{{n≤{k}}}" for k in range(K + 1)) + " |", "|---" * (K + 3) + "|"]
    for r in partial:
        lines.append(f"| {r['t']:g} | {r['exact']:.8g} | " + " | ".join(f"{x:.8g}" for x in r["partial_sums"]) + " |")
    if named is not None:
        lines += ["", f"Named terms at θ = 0 (sum S_2 = {named.S2:.10g}, S_3 = {named.S3:.10g}; "
                  f"series S_2 = {S[2] if K >= 2 else float('nan'):.10g}, S_3 = {S[3] if K >= 3 else float('nan'):.10g}):", "",
                  "| order | term | value | coefficient (derived) | note's value | sub-terms |", "|---|---|---|---|---|---|"]
        for tm in named.terms:
            nv = "—" if tm.note_value is None else f"{tm.note_value:.6g}"
            lines.append(f"| {tm.order} | {tm.name} | {tm.value:.6g} | {tm.coefficient} | {nv} | {tm.subterms:,} |")
    elif named_note:
        lines += ["", f"Named terms: not computed — {named_note}"]
    md = "\n".join(lines) + "\n"
    result = {"S": S, "order": K, "activation": act.name, "M": M, "H": H, "E": E, "N": len(ds), "kink_radius": radius,
              "partial_sums": partial, "terms": named, "terms_note": named_note}
    run.finish(result, md)
    print(md)
    print(f"run folder: {opts.out}")
    return 0
