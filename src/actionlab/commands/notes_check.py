"""``actionlab notes-check``: every closed-form claim of notes 000–002, checked exactly.

One row per claim (S_0 = ln M; S_1 = 0 for balanced data; the S_2 formula and
its terms; the definiteness of δ/M − 1/M² and the stability conclusion drawn
from it; every S_3 coefficient; the sub-term counts; the all-orders
coefficient; σ'(0) = 1 for relu), each with the note's value, the exact value
on a concrete random problem and on Fashion-MNIST, and a verdict. Writes
``notes_check.md``, ``summary.md`` and ``results.json`` into the run folder.

Examples::

    actionlab notes-check                       # random problem + Fashion-MNIST (balanced 100 per class, raw 784 pixels)
    actionlab notes-check --no-fashion --out runs/notes
    actionlab notes-check --per-class 300 --hidden 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

__all__ = ["register", "run_notes_check"]

# `actionlab study` runs this command too (see actionlab.study.CommandExperiment): extra arguments per preset.
STUDY = {"sources": ("000", "001", "002"), "order": 20, "presets": {"quick": [], "default": [], "full": ["--per-class", "300"]}}


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "notes-check",
        parents=[common],
        help="check every closed-form claim of the theory notes 000-002 against the exact expansion",
        description=__doc__.split("Examples::")[0].split("\n", 2)[2].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("notes-check options")
    g.add_argument("--random-shape", type=int, nargs=4, default=(10, 8, 6, 30), metavar=("M", "H", "E", "PER_CLASS"),
                   help="the random problem: classes, hidden units, input dimension, samples per class (default 10 8 6 30)")
    g.add_argument("--scale", type=float, default=0.5, help="θ ~ N(0, scale²) on the random problem (default 0.5)")
    g.add_argument("--fashion", action=argparse.BooleanOptionalAction, default=True,
                   help="also check on Fashion-MNIST test (default: yes)")
    g.add_argument("--per-class", type=int, default=100, help="balanced Fashion-MNIST subset: samples per class (default 100)")
    g.add_argument("--hidden", type=int, default=32, help="H of the random θ on Fashion-MNIST (default 32)")
    g.add_argument("--fashion-scale", type=float, default=0.05, help="θ ~ N(0, scale²) on Fashion-MNIST (default 0.05)")
    p.set_defaults(_handler=_handler)


def _random_theta(M, H, E, scale, gen):
    return {
        "U": torch.randn(M, H, dtype=torch.float64, generator=gen) * scale,
        "c": torch.randn(M, dtype=torch.float64, generator=gen) * scale,
        "W": torch.randn(H, E, dtype=torch.float64, generator=gen) * scale,
        "b": torch.randn(H, dtype=torch.float64, generator=gen) * scale,
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def run_notes_check(*, seed=0, random_shape=(10, 8, 6, 30), scale=0.5, fashion=True, per_class=100, hidden=32,
                    fashion_scale=0.05, progress=None):
    """The claim rows: dicts with id, source, where, claim, note value, exact values per problem, verdict, details."""
    from actionlab.expansion import check_note_claims, j_tensor

    gen = torch.Generator().manual_seed(seed)
    M, H, E, n = random_shape
    z = torch.randn(M * n, E, dtype=torch.float64, generator=gen)
    labels = torch.arange(M * n) % M
    problems = {"random": (z, labels, _random_theta(M, H, E, scale, gen))}
    data_info = {"random": {"M": M, "H": H, "E": E, "N": M * n, "z": "N(0, 1)", "theta": f"N(0, {scale}²)", "balanced": True}}
    extra_rows = []
    if fashion:
        from actionlab import data

        ds = data.load("fashion-mnist", "test", balance=True, per_class=per_class, seed=seed, dtype=torch.float64)
        Mf = ds.num_classes
        problems["fashion-mnist"] = (ds.z, ds.labels, _random_theta(Mf, hidden, ds.z.shape[1], fashion_scale, gen))
        data_info["fashion-mnist"] = {"M": Mf, "H": hidden, "E": int(ds.z.shape[1]), "N": len(ds),
                                      "theta": f"N(0, {fashion_scale}²)", "preprocessing": ds.info}
        full = data.load("fashion-mnist", "test", dtype=torch.float64)
        J = j_tensor(full.z, full.labels, 1)
        extra_rows.append({
            "id": "J.range", "source": "000 §2.3; 001 §2.3", "where": "§2.3",
            "claim": "on Fashion-MNIST the components of J_αγ vary from −0.1 to 0.075",
            "note_value": [-0.1, 0.075],
            "exact": {"random": None, "fashion-mnist": [float(J.min()), float(J.max())]},
            "verdict": "inconclusive",
            "details": "raw pixels in [0, 1], all 10,000 test images; the notes used a learned embedding z (see "
                       "`actionlab j-stats` for other embeddings and standardisations), so this depends on z",
        })
    from tqdm.auto import tqdm

    results = {}
    for name, (zz, ll, th) in tqdm(problems.items(), desc="notes-check", disable=None if progress is None else not progress,
                                   leave=False):
        results[name] = {c.id: c for c in check_note_claims(zz, ll, th)}
    rows = []
    for cid, c in results["random"].items():
        per = {k: results[k][cid] for k in results}
        hs = [r.holds for r in per.values()]
        if any(h is False for h in hs):
            verdict = "does not hold"
        elif all(h is True for h in hs):
            verdict = "holds"
        else:
            verdict = "inconclusive"
        rows.append({
            "id": cid, "source": c.source, "where": c.where, "claim": c.claim, "note_value": {k: r.note_value for k, r in per.items()},
            "exact": {k: r.exact for k, r in per.items()}, "verdict": verdict,
            "details": (c.details if len({r.details for r in per.values()}) == 1
                        else " | ".join(f"{k}: {r.details}" for k, r in per.items())),
        })
    rows.extend(extra_rows)
    return rows, data_info


def to_markdown(rows, data_info) -> str:
    probs = list(data_info)
    lines = ["# The notes' closed-form claims, checked exactly", ""]
    lines.append("Problems: " + "; ".join(f"**{k}**: " + ", ".join(f"{a}={b}" for a, b in v.items() if a != "preprocessing")
                                          for k, v in data_info.items()))
    lines.append("")
    lines.append("Exact values come from `actionlab.expansion.action_series` (Taylor mode, float64); each named term by "
                 "inclusion–exclusion over parameter blocks. θ is the silu classifier of notes 000/001.")
    lines.append("")
    head = "| id | source | claim | note's value | " + " | ".join(f"exact ({p})" for p in probs) + " | verdict |"
    lines += [head, "|" + "---|" * (5 + len(probs))]

    def cell(v):
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    for r in rows:
        nv = r["note_value"]
        nv = nv.get("random", next(iter(nv.values()))) if isinstance(nv, dict) and nv else nv
        if isinstance(r["note_value"], dict) and len({_fmt(v) for v in r["note_value"].values()}) > 1:
            nv = "; ".join(f"{k}: {_fmt(v)}" for k, v in r["note_value"].items())
        ex = [cell(r["exact"].get(p)) if r["exact"].get(p) is not None else "—" for p in probs]
        lines.append(f"| {r['id']} | {r['source']} | {cell(r['claim'])} | {cell(nv)} | " + " | ".join(ex) + f" | **{r['verdict']}** |")
    lines += ["", "## Details", ""]
    for r in rows:
        lines.append(f"- **{r['id']}** ({r['verdict']}): {r['details']}")
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines += ["", "Verdicts: " + ", ".join(f"{k}: {v}" for k, v in counts.items()), ""]
    return "\n".join(lines)


def _handler(args: argparse.Namespace) -> int:
    from actionlab.cli import options_from_args
    from actionlab.runs import Claim, RunFolder

    opts = options_from_args(args, "notes-check")
    config = {"random_shape": list(args.random_shape), "scale": args.scale, "fashion": args.fashion,
              "per_class": args.per_class, "hidden": args.hidden, "fashion_scale": args.fashion_scale, "dtype": "float64"}
    run = RunFolder(opts.out, experiment="notes-check", config=config, seed=opts.seed)
    rows, info = run_notes_check(seed=opts.seed, random_shape=tuple(args.random_shape), scale=args.scale,
                                 fashion=args.fashion, per_class=args.per_class, hidden=args.hidden,
                                 fashion_scale=args.fashion_scale)
    run.data = info
    for r in rows:
        src = r["source"].split()[0]
        run.add_claim(Claim(source=src, claim=f"[{r['id']}] {r['claim']} ({r['source']})", document_value=r["note_value"],
                            measured=r["exact"], verdict=r["verdict"], details=r["details"]))
    md = to_markdown(rows, info)
    (Path(opts.out) / "notes_check.md").write_text(md)
    run.finish({"rows": rows, "problems": info}, md)
    print(md)
    print(f"run folder: {opts.out}")
    return 0
