"""``actionlab data NAME``: load a data set and print N, E, M, the class counts and the balance.

Examples::

    actionlab data digits
    actionlab data fashion-mnist --split test --balance
    actionlab data mnist --split train --validation 10000 --reduce pca --dim 50 --out runs/mnist-info

With ``--out DIR`` the same facts are written to ``DIR/data.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from actionlab._checks import ValueCheckError

__all__ = ["register", "describe"]


def _validation(text: str) -> int | float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--validation takes a count or a fraction in (0, 1), got {text!r}") from None
    return int(v) if v.is_integer() else v


def register(subparsers, common) -> None:
    from actionlab.data import REDUCTIONS, SPLITS, STANDARDIZE, names

    p = subparsers.add_parser(
        "data",
        parents=[common],
        help="describe a data set: N, E, M, class counts and balance",
        description=(
            "Load one split of a data set the way the experiments do and print its size N, embedding dimension E, "
            "number of classes M, the class names with their counts, and how far p(m) is from 1/M. "
            "Files are looked for in --root, $ACTIONLAB_DATA, ../shared/data, then downloaded."
        ),
    )
    p.add_argument("name", nargs="?", default="digits", help=f"data set: {', '.join(names())} (default digits)")
    p.add_argument("--split", default="train", choices=list(SPLITS), help="which split (default train)")
    p.add_argument("--root", type=Path, default=None, help="folder holding the files (default: the lookup order)")
    p.add_argument("--balance", action="store_true", help="subsample so every class has the same count, p(m) = 1/M")
    p.add_argument("--per-class", type=int, default=None, help="at most this many samples per class")
    p.add_argument("--standardize", default="none", choices=list(STANDARDIZE), help="none, centre or zscore")
    p.add_argument("--reduce", default=None, choices=list(REDUCTIONS), help="reduce E to --dim (pca, random, pool)")
    p.add_argument("--dim", type=int, default=None, help="the reduced embedding dimension E'")
    p.add_argument("--validation", type=_validation, default=None,
                   help="validation size held out of the official train file (count or fraction; default 10000 "
                        "MNIST / Fashion-MNIST, 5000 CIFAR-10, 10%% digits; 0 = none); train never includes it")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check each file against its official checksum once, cached (default); --no-verify uses "
                        "the files as they are")
    p.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="allow (or with --no-download forbid) downloading missing files from the official source; "
                        "default: download into the cache when no --root is given")
    p.set_defaults(_handler=_handle)


def describe(ds) -> dict:
    """The facts ``actionlab data`` prints, as a JSON-ready dict."""
    rep = ds.balance_report()
    z = ds.z
    return {
        "name": ds.name,
        "split": ds.split,
        "N": len(ds),
        "E": ds.E,
        "M": ds.num_classes,
        "dtype": str(z.dtype).replace("torch.", ""),
        "classes": [{"index": i, "name": n, "count": c, "proportion": p}
                    for i, (n, c, p) in enumerate(zip(ds.class_names, rep.counts, rep.proportions))],
        "balance": {
            "is_balanced": rep.is_balanced,
            "max_deviation": rep.max_deviation,
            "kl_from_uniform": rep.kl_from_uniform,
        },
        "z": {"min": float(z.min()), "max": float(z.max()), "mean": float(z.double().mean())},
        "info": ds.info,
    }


def _handle(args: argparse.Namespace, options) -> int:
    from actionlab import data
    from actionlab.config import check_out_dir, resolve_device, resolve_dtype
    from actionlab.runs import atomic_write_text, to_jsonable

    if args.per_class is not None and args.per_class < 1:
        raise ValueCheckError(f"--per-class must be ≥ 1, got {args.per_class}")
    if args.out is not None:
        check_out_dir(args.out)  # before loading anything
    ds = data.load(
        args.name,
        args.split,
        root=args.root,
        balance=args.balance,
        per_class=args.per_class,
        standardize=args.standardize,
        reduce=args.reduce,
        dim=args.dim,
        seed=args.seed,
        dtype=resolve_dtype(args.dtype),
        validation=args.validation,
        download=args.download,
        device=resolve_device(args.device),
        verify=args.verify,
    )
    facts = describe(ds)
    print(f"{ds.name} / {ds.split}: N = {facts['N']}, E = {facts['E']}, M = {facts['M']} ({facts['dtype']}, {ds.z.device})")
    where = ds.info.get("root") or ds.info.get("source")
    if where:
        print(f"source: {where}" + (f" ({ds.info['found_via']})" if "found_via" in ds.info else ""))
    width = max(len(c["name"]) for c in facts["classes"])
    print(f"  {'m':>2}  {'class':<{width}}  {'count':>7}  p(m)")
    for c in facts["classes"]:
        print(f"  {c['index']:>2}  {c['name']:<{width}}  {c['count']:>7}  {c['proportion']:.4f}")
    print("balance: " + ds.balance_report().summary())
    zf = facts["z"]
    print(f"z: min {zf['min']:.4g}, max {zf['max']:.4g}, mean {zf['mean']:.4g}")
    opts = {k: ds.info.get(k) for k in ("seed", "validation", "balance", "per_class", "standardize", "reduce", "dim")}
    print("options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))
    if args.out is not None:
        target = atomic_write_text(Path(args.out) / "data.json", json.dumps(to_jsonable(facts), indent=2,
                                                                           allow_nan=False))
        print(f"wrote {target}")
    return 0
