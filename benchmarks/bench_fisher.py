"""Benchmark: FIM statistics of a tanh MLP [M, M, M, C] on T inputs (004, issue 5 item 5).

Methods, all on the same network and inputs (float32 by default):

* ``dual``     — actionlab: layer-factorised dual matrix F* (CT × CT) + eigvalsh
                 (all non-zero eigenvalues, m, s, λ_max);            [the baseline of the ratios]
* ``lanczos``  — actionlab: matrix-free Lanczos (scipy eigsh) on F with torch.func jvp/vjp;
* ``dense``    — torch.func.jacrev: the full T × C × P Jacobian, then F* = BᵀB/T and eigvalsh;
* ``curvlinops`` — anchor library: curvlinops ``GGNLinearOperator`` (MSELoss(reduction="sum"),
                 GGN = 2T·F) + scipy ``eigsh``, run in its own virtualenv.

Each method runs in a fresh subprocess so that its peak memory (ru_maxrss, minus
the process's resident size after building the network and the inputs) is its own.
Dense methods whose Jacobian would not fit in the available memory are reported
as "OOM/skipped (needs X GB)" instead of being run.

The anchor is installed for the benchmark only (never into the main environment)::

    python -m venv --system-site-packages .bench-envs/curvlinops
    .bench-envs/curvlinops/bin/pip install --no-deps -c .bench-envs/constraints.txt \\
        curvlinops-for-pytorch einops einconv backpack-for-pytorch linear_operator opt-einsum

(``.bench-envs/constraints.txt`` pins ``torch==2.13.0``). Without it the anchor
column says so and is skipped.

Spectral density and trace (``--density``, issue 17 item 8), same network and inputs, P ≈ 8 M at M = 2000:

* ``dual-exact`` — actionlab: ``DualFisherOperator`` (F*, CT × CT) + all eigenvalues (exact density of F:
                   the CT non-zero eigenvalues plus P − CT zeros) and the exact trace;   [the reference]
* ``dual-slq``   — actionlab: SLQ and Hutchinson on the dual operator (CT-dimensional probes);
* ``fisher-slq`` — actionlab: SLQ and Hutchinson on the matrix-free ``FisherOperator`` (P-dimensional probes);
* ``curvlinops-slq`` — anchor: curvlinops ``LanczosApproximateSpectrumCached`` and ``hutchinson_trace`` on
                   ``GGNLinearOperator`` (MSELoss(reduction="sum"): GGN = 2T·F, rescaled).

Agreement: Kolmogorov–Smirnov distance of the estimated spectral distribution of F to the exact one
(actionlab: the quadrature rules' CDF, ``spectral.ks_distance``; curvlinops: the CDF of its broadened
density on its grid), and the relative error of the trace.

Matrix-free against matrix-free (``--matfree``, issue 17 item 8's "within 1.5×"): in ONE process per width,
actionlab's ``FisherOperator`` (torch.func JVP/VJP) and curvlinops' ``GGNLinearOperator`` with
``CrossEntropyLoss(reduction="mean")`` (for softmax cross-entropy the GGN is the Fisher F, no rescaling)
on the same network and inputs, each task's repetitions interleaved (ours, theirs / theirs, ours, …) so that
the machine's load affects both alike: one matvec, a block of ``--block`` matvecs, SLQ with ``--probes`` ×
``--steps`` (actionlab with full re-orthogonalisation — its default — and without, against curvlinops'
``fast_lanczos``, Papyan 2020, no re-orthogonalisation; each also with the recurrence in the operator's dtype,
``recurrence_dtype="operator"`` — curvlinops' arithmetic; probes per operator call ``--probe-block``, default
"auto") and Hutchinson with ``--hutch`` matvecs (one block in both); ``--tasks SLQ`` runs only the SLQ rows. Reported: the time ratio ours/curvlinops (median, min–max over ``--reps``), the peak extra resident
memory of each call, and the agreement of both with the exact spectrum of the dual (trace, λ_max = largest
Ritz value, moments tr Fᵏ/P, k = 1..4). Without curvlinops the anchor columns say so and the run exits 0.

Usage::

    python benchmarks/bench_fisher.py                   # M = 500, 2000 and a 10.6 M-parameter net (M = 2300)
    python benchmarks/bench_fisher.py --widths 300 --T 50 --no-big
    python benchmarks/bench_fisher.py --density --widths 2000 --no-big   # density + trace at P ≈ 8 M
    python benchmarks/bench_fisher.py --matfree --widths 500 1000 2000 --no-big   # matrix-free vs curvlinops
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANCHOR_PY = ROOT / ".bench-envs" / "curvlinops" / "bin" / "python"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: echo 5 > /proc/self/clear_refs) so VmHWM measures from now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _available_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("inf")


def _build(M: int, C: int, T: int, L: int, dtype_name: str, seed: int, device: str = "cpu"):
    import torch

    from actionlab.config import resolve_device
    from actionlab.models import MLP

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU, so every device gets the same network and inputs
    net = MLP([M] * L + [C], activation="tanh", sigma_w2=3.0, sigma_b2=0.64, generator=g, dtype=dtype)
    x = torch.randn(T, M, generator=g, dtype=dtype)
    dev = resolve_device(device)
    return net.to(dev), x.to(dev)


def one(method: str, M: int, C: int, T: int, L: int, dtype_name: str, seed: int, threads: int,
        device: str = "cpu") -> dict:
    """Run one method in this process; return timings, peak memory and λ_max (on ``device``)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    net, x = _build(M, C, T, L, dtype_name, seed, device)
    P = sum(p.numel() for p in net.parameters())
    import gc

    gc.collect()
    exact = _reset_peak() and _status_mb("VmHWM") is not None
    base = _status_mb("VmRSS") if exact else _rss_mb()
    itemsize = torch.finfo(x.dtype).bits // 8
    out = {"method": method, "M": M, "P": P, "C": C, "T": T, "device": str(x.device)}
    if method == "dense":
        need_gb = (P * C * T * itemsize * 2 + P * itemsize * 4) / 1024**3  # jacrev output + workspace (≈ ×2)
        if need_gb > 0.8 * _available_gb():
            out["skipped"] = f"OOM/skipped (needs ≈ {need_gb:.1f} GB, {_available_gb():.1f} GB available)"
            return out
    t0 = time.perf_counter()
    try:
        if method == "dual":
            from actionlab.fisher.empirical import fisher_statistics

            st = fisher_statistics(net, x)
            out.update(lambda_max=st.lambda_max, m=st.m, s=st.s)
        elif method == "lanczos":
            from actionlab.fisher.empirical import lanczos_lambda_max

            out["lambda_max"] = lanczos_lambda_max(net, x, tol=1e-6)
        elif method == "dense":
            from torch.func import functional_call, jacrev

            names = [n for n, _ in net.named_parameters()]
            params = {n: p.detach() for n, p in net.named_parameters()}
            J = jacrev(lambda p: functional_call(net, p, (x,)))(params)
            B = torch.cat([J[n].reshape(T * C, -1) for n in names], dim=1)  # (T·C) × P
            del J
            Fs = B @ B.T / T
            ev = torch.linalg.eigvalsh(Fs)
            out.update(lambda_max=float(ev[-1]), m=float(torch.trace(Fs)) / P, s=float((Fs * Fs).sum()) / P)
        elif method == "curvlinops":
            from curvlinops import GGNLinearOperator
            from scipy.sparse.linalg import eigsh

            y = torch.zeros(T, C, dtype=x.dtype, device=x.device)
            op = GGNLinearOperator(net, torch.nn.MSELoss(reduction="sum"), [p for p in net.parameters()],
                                   [(x, y)], check_deterministic=False)
            sop = op.to_scipy()
            import numpy as np

            val = eigsh(sop, k=1, which="LA", tol=1e-6, return_eigenvectors=False,
                        v0=np.random.default_rng(0).standard_normal(P).astype(sop.dtype))
            out["lambda_max"] = float(val[0]) / (2 * T)  # GGN of Σ‖f − y‖² = 2T·F
        elif method == "matfree":
            out.update(_matfree(net, x, MATFREE))
        elif method.startswith("density-"):
            out.update(_density(method[len("density-"):], net, x, P, T))
        else:
            raise ValueError(method)
    except (MemoryError, RuntimeError) as err:
        if "memory" in str(err).lower() or isinstance(err, MemoryError):
            out["skipped"] = f"OOM ({type(err).__name__})"
            return out
        raise
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated(x.device) / 1024**2
    out["time_s"] = time.perf_counter() - t0
    peak = _status_mb("VmHWM") if exact else _rss_mb()
    out["peak_extra_mb"] = max(0.0, peak - base)
    return out


SLQ_PROBES, SLQ_STEPS, HUTCH_MATVECS = 4, 30, 32


def _density(kind: str, net, x, P: int, T: int) -> dict:
    """One density + trace method; returns the trace, the rule (nodes, weights) or grid density, and timings."""
    import numpy as np
    import torch

    from actionlab.fisher import spectral
    from actionlab.fisher.operators import DualFisherOperator, FisherOperator

    if kind == "dual-exact":
        op = DualFisherOperator(net, x)
        sd = spectral.spectral_density(op, method="exact")
        ev = np.sort(sd.nodes[0])
        return {"trace": op.trace(), "eigenvalues_nonzero": ev[ev > 0].tolist(), "matvecs": 0}
    if kind in ("dual-slq", "fisher-slq"):
        op = DualFisherOperator(net, x) if kind == "dual-slq" else FisherOperator(net, x)
        t0 = time.perf_counter()
        sd = spectral.spectral_density(op, method="slq", probes=SLQ_PROBES, steps=SLQ_STEPS)
        t1 = time.perf_counter()
        tr = spectral.hutchinson_trace(op, HUTCH_MATVECS, chunk=8)
        return {"trace": tr.estimate, "trace_se": tr.stderr, "nodes": sd.nodes.tolist(), "weights": sd.weights.tolist(),
                "density_s": t1 - t0, "trace_s": time.perf_counter() - t1, "matvecs": SLQ_PROBES * SLQ_STEPS + HUTCH_MATVECS}
    if kind == "curvlinops-slq":
        from curvlinops import GGNLinearOperator, LanczosApproximateSpectrumCached, hutchinson_trace

        y = torch.zeros(T, net(x[:1]).shape[1], dtype=x.dtype)
        op = GGNLinearOperator(net, torch.nn.MSELoss(reduction="sum"), list(net.parameters()), [(x, y)],
                               check_deterministic=False)
        t0 = time.perf_counter()
        cache = LanczosApproximateSpectrumCached(op, ncv=SLQ_STEPS)
        grid, dens = cache.approximate_spectrum(num_repeats=SLQ_PROBES, num_points=1024)
        t1 = time.perf_counter()
        tr = float(hutchinson_trace(op, HUTCH_MATVECS)) / (2 * T)  # GGN of Σ‖f − y‖² = 2T·F
        g = np.asarray(grid, dtype=np.float64) / (2 * T)
        return {"trace": tr, "grid": g.tolist(), "density": (np.asarray(dens, dtype=np.float64) * 2 * T).tolist(),
                "density_s": t1 - t0, "trace_s": time.perf_counter() - t1, "matvecs": SLQ_PROBES * SLQ_STEPS + HUTCH_MATVECS}
    raise ValueError(kind)


MATFREE = {"reps": 3, "block": 8, "probes": 2, "steps": 20, "hutch": 8, "probe_block": "auto", "tasks": []}


def _timed(fn):
    """(result, seconds, peak extra resident MB) of fn() — VmHWM reset before the call where Linux allows."""
    import gc

    gc.collect()
    exact = _reset_peak() and _status_mb("VmHWM") is not None
    base = _status_mb("VmRSS") if exact else _rss_mb()
    t0 = time.perf_counter()
    res = fn()
    sec = time.perf_counter() - t0
    return res, sec, max(0.0, (_status_mb("VmHWM") if exact else _rss_mb()) - base)


def _rule_stats(nodes, weights) -> dict:
    """λ_max (largest Ritz value) and the moments tr Fᵏ/P (k = 1..4, probe mean) of per-probe quadrature rules."""
    import numpy as np

    nodes, weights = np.asarray(nodes, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    return {"lambda_max": float(nodes.max()), "moments": [float((weights * nodes**k).sum(1).mean()) for k in range(1, 5)]}


def _none(_) -> dict:
    return {}


def _matfree_tasks(net, x, cfg: dict) -> dict:
    """name → (actionlab call, curvlinops call or None); every call returns its agreement numbers (or {})."""
    import torch

    from actionlab.fisher import spectral
    from actionlab.fisher.operators import FisherOperator

    ours = FisherOperator(net, x, "cross_entropy")
    P = ours.shape[0]
    g = torch.Generator().manual_seed(1)
    v = torch.randn(P, generator=g, dtype=x.dtype).to(x.device)
    V = torch.randn(P, cfg["block"], generator=g, dtype=x.dtype).to(x.device)
    p, m, N = cfg["probes"], cfg["steps"], cfg["hutch"]

    def slq(reorth, rec=torch.float64):
        sd = spectral.spectral_density(ours, method="slq", probes=p, steps=m, reorthogonalize=reorth,
                                       probe_block=cfg["probe_block"], recurrence_dtype=rec)
        return _rule_stats(sd.nodes, sd.weights)

    tasks = {"matvec": [lambda: _none(ours @ v)], f"block of {cfg['block']}": [lambda: _none(ours @ V)],
             f"SLQ {p}×{m} (ours: full reorth.)": [lambda: slq(True)],
             f"SLQ {p}×{m} (ours: no reorth.)": [lambda: slq(False)],
             f"SLQ {p}×{m} (ours: no reorth., {x.dtype} recurrence)": [lambda: slq(False, "operator")],
             f"SLQ {p}×{m} (ours: full reorth., {x.dtype} recurrence)": [lambda: slq(True, "operator")],
             f"Hutchinson {N}": [lambda: {"trace": spectral.hutchinson_trace(ours, N, chunk=N).estimate}]}
    try:
        from curvlinops import GGNLinearOperator, hutchinson_trace
        from curvlinops.papyan2020traces.spectrum import fast_lanczos
    except ImportError:
        return {k: (fns[0], None) for k, fns in tasks.items()}
    y = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # the GGN of cross-entropy does not depend on y
    cl = GGNLinearOperator(net, torch.nn.CrossEntropyLoss(reduction="mean"), list(net.parameters()), [(x, y)],
                           check_deterministic=False)

    def cl_slq():
        torch.manual_seed(0)
        rules = [fast_lanczos(cl, m) for _ in range(p)]
        return _rule_stats([r[0].double().numpy() for r in rules], [(r[1][0] ** 2).double().numpy() for r in rules])

    theirs = [lambda: _none(cl @ v), lambda: _none(cl @ V), cl_slq, cl_slq, cl_slq, cl_slq,
              lambda: {"trace": float(hutchinson_trace(cl, N))}]
    return {k: (fns[0], t) for (k, fns), t in zip(tasks.items(), theirs)}


def _matfree(net, x, cfg: dict) -> dict:
    """Interleaved repetitions of every task in both libraries, and the exact reference from the dual."""
    import numpy as np

    from actionlab.fisher import spectral
    from actionlab.fisher.operators import DualFisherOperator

    def exact():
        dual = DualFisherOperator(net, x, "cross_entropy")
        ev = np.clip(spectral.spectral_density(dual, method="exact").nodes[0], 0.0, None)
        return {"trace": dual.trace(), "lambda_max": float(ev.max()),
                "moments": [float((ev**k).sum() / dual.full_dim) for k in range(1, 5)]}

    ref, t_ref, mem_ref = _timed(exact)
    tasks = _matfree_tasks(net, x, cfg)
    for fn in tasks["matvec"]:  # warm-up, not counted: first-call costs of torch.func and the allocator
        if fn is not None:
            fn()
    rows = []
    for name, (ours, theirs) in tasks.items():
        if cfg["tasks"] and not any(t.lower() in name.lower() for t in cfg["tasks"]):
            continue
        row = {"task": name, "ours_s": [], "theirs_s": [], "ours_mb": 0.0, "theirs_mb": 0.0}
        for r in range(cfg["reps"]):
            order = [("ours", ours), ("theirs", theirs)][:: 1 if r % 2 == 0 else -1]
            for who, fn in order:
                if fn is None:
                    continue
                res, sec, mb = _timed(fn)
                row[f"{who}_s"].append(sec)
                row[f"{who}_mb"] = max(row[f"{who}_mb"], mb)
                row[f"{who}_agree"] = res
        rows.append(row)
    return {"exact": ref, "exact_s": t_ref, "exact_mb": mem_ref, "tasks": rows, "config": dict(cfg),
            "anchor": rows[0]["theirs_s"] != []}


def _matfree_table(r: dict) -> None:
    import numpy as np

    if "skipped" in r:
        print(f"\nM = {r['M']}: {r['skipped']}")
        return
    cfg, ref = r["config"], r["exact"]
    print(f"\nMatrix-free, M = {r['M']}, P = {r['P']} (cross-entropy F; {cfg['reps']} interleaved repetitions; "
          f"exact dual {r['exact_s']:.3g} s)" + ("" if r["anchor"] else " — curvlinops not installed: anchor skipped"))
    print("| task | actionlab (s, median) | curvlinops (s, median) | ratio ours/curvlinops median (min–max) | "
          "peak extra MB ours / curvlinops |")
    print("|---|---|---|---|---|")
    for t in r["tasks"]:
        o, c = np.asarray(t["ours_s"]), np.asarray(t["theirs_s"])
        if c.size:
            q = o / c
            ratio = f"{np.median(q):.2f} ({q.min():.2f}–{q.max():.2f})"
            cs, cm = f"{np.median(c):.3g}", f"{t['theirs_mb']:.0f}"
        else:
            ratio, cs, cm = "anchor absent", "—", "—"
        print(f"| {t['task']} | {np.median(o):.3g} | {cs} | {ratio} | {t['ours_mb']:.0f} / {cm} |")
    print("Agreement with the exact spectrum (relative error; moments tr Fᵏ/P, k = 1..4):")
    print("| task | library | trace | λ_max | m1 | m2 | m3 | m4 |")
    print("|---|---|---|---|---|---|---|---|")
    for t in r["tasks"]:
        for who, lib in (("ours", "actionlab"), ("theirs", "curvlinops")):
            a = t.get(f"{who}_agree") or {}
            if not a or (who == "theirs" and ("no reorth" in t["task"] or "recurrence" in t["task"])):  # same run
                continue
            cells = [f"{(a[k] - ref[k]) / ref[k]:+.1e}" if k in a else "" for k in ("trace", "lambda_max")]
            cells += [f"{(x - y) / y:+.1e}" for x, y in zip(a.get("moments", []), ref["moments"])] or [""] * 4
            print(f"| {t['task']} | {lib} | " + " | ".join(cells) + " |")


def _agreement(r: dict, ref: dict) -> tuple[float, float]:
    """(KS distance of the spectral distribution of F to the exact one, relative trace error) of a density row."""
    import numpy as np

    from actionlab.fisher.spectral import SpectralDensity, ks_distance

    P = r["P"]
    nz = np.asarray(ref["eigenvalues_nonzero"])
    exact = np.concatenate([np.zeros(P - nz.size), nz]) if P - nz.size < 5_000_000 else None
    rel = (r["trace"] - ref["trace"]) / ref["trace"]

    def exact_cdf(v):  # the exact CDF of F: (P − n) zeros plus the n non-zero eigenvalues
        return ((P - nz.size) * (v >= 0) + np.searchsorted(nz, v, side="right")) / P

    if "nodes" in r:
        nodes, weights = np.asarray(r["nodes"]), np.asarray(r["weights"])
        sd = SpectralDensity("slq", P, nodes, weights, np.zeros(0), np.zeros(0), np.zeros(0), 1.0, np.zeros(0),
                             np.zeros(0), nodes.shape[0], nodes.shape[1])
        if exact is not None:
            return ks_distance(sd, exact, atol=1e-6 * nz.max()), rel
        pts = np.unique(np.concatenate([nodes.ravel(), nz, [0.0]]))
        return float(np.abs(sd.cdf(pts) - exact_cdf(pts)).max()), rel
    if "grid" in r:
        g, d = np.asarray(r["grid"]), np.asarray(r["density"])
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (d[1:] + d[:-1]) * np.diff(g))])
        return float(np.abs(cdf - exact_cdf(g)).max()), rel
    return 0.0, rel


def _ks_nonzero(r: dict, ref: dict) -> float:
    """sup over x ≥ 1 % of λ_max of |CDF − exact CDF| of the non-zero part: insensitive to how a method
    broadens the P − CT zeros (curvlinops' Gaussian kernels put half of that spike below 0)."""
    import numpy as np

    P, nz = r["P"], np.asarray(ref["eigenvalues_nonzero"])
    xs = np.linspace(0.01 * nz.max(), 1.2 * nz.max(), 2000)
    exact = (nz.size - np.searchsorted(nz, xs, side="right")) / P  # mass of F's spectrum above x
    if "nodes" in r:
        nodes, weights = np.asarray(r["nodes"]), np.asarray(r["weights"])
        est = ((nodes[:, :, None] > xs[None, None, :]) * weights[:, :, None]).sum(1).mean(0)
    elif "grid" in r:
        g, d = np.asarray(r["grid"]), np.asarray(r["density"])
        tail = np.concatenate([np.cumsum((0.5 * (d[1:] + d[:-1]) * np.diff(g))[::-1])[::-1], [0.0]])  # mass above g
        est = np.interp(xs, g, tail)
    else:
        return 0.0
    return float(np.abs(est - exact).max())


def _density_table(rows: list[dict], M: int) -> None:
    ref = next((r for r in rows if r.get("M") == M and r["method"] == "density-dual-exact" and "trace" in r), None)
    print(f"\nDensity + trace, M = {M}, P = {ref['P'] if ref else '?'} (SLQ {SLQ_PROBES} probes × {SLQ_STEPS} steps, "
          f"Hutchinson {HUTCH_MATVECS} matvecs)")
    print("| method | time (s) | density (s) | trace (s) | × dual-exact | peak extra memory (MB) | KS to exact | "
          "KS, λ ≥ 1 % λ_max | trace rel. err |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("M") != M or not r["method"].startswith("density-"):
            continue
        if "skipped" in r:
            print(f"| {r['method']} | {r['skipped']} | | | | | | | |")
            continue
        ks, rel = _agreement(r, ref) if ref else (float("nan"), float("nan"))
        ratio = r["time_s"] / ref["time_s"] if ref else float("nan")
        print(f"| {r['method']} | {r['time_s']:.3g} | {r.get('density_s', r['time_s']):.3g} | {r.get('trace_s', 0):.3g} | "
              f"{ratio:.3g} | {r['peak_extra_mb']:.0f} | {ks:.3g} | {_ks_nonzero(r, ref) if ref else float('nan'):.3g} | "
              f"{rel:+.1e} |")


def _spawn(method: str, args, M: int) -> dict:
    py = sys.executable
    if method in ("curvlinops", "density-curvlinops-slq", "matfree") and not _importable("curvlinops"):
        if method == "matfree" and not ANCHOR_PY.exists():
            py = sys.executable  # actionlab alone; the table says that the anchor is absent
        elif not ANCHOR_PY.exists():
            return {"method": method, "M": M, "skipped": f"anchor not installed ({ANCHOR_PY} missing; see the docstring)"}
        else:
            py = str(ANCHOR_PY)
    cmd = [py, __file__, "--one", method, "--widths", str(M), "--C", str(args.C), "--T", str(args.T), "--L", str(args.L),
           "--dtype", args.dtype, "--seed", str(args.seed), "--threads", str(args.threads), "--device", args.device,
           "--reps", str(args.reps), "--block", str(args.block), "--probes", str(args.probes), "--steps", str(args.steps),
           "--hutch", str(args.hutch), "--probe-block", str(args.probe_block), "--tasks", *args.tasks]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"method": method, "M": M, "skipped": f"timeout after {args.timeout} s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        killed = p.returncode in (-9, 137)
        return {"method": method, "M": M, "skipped": ("OOM/killed" if killed else f"failed: {tail[0][:200]}")}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--big", dest="big", action="store_true", default=True,
                    help="also a ≥ 10⁷-parameter network (M = 2300: P ≈ 10.6 M)")
    ap.add_argument("--no-big", dest="big", action="store_false")
    ap.add_argument("--C", type=int, default=10)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--L", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (networks and inputs drawn on the CPU, then moved)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per method (default 1: on a shared, busy machine multi-threaded BLAS spin-waits "
                         "and inflates timings 10-100x; 0: torch's default)")
    ap.add_argument("--methods", nargs="+", default=["dual", "lanczos", "dense", "curvlinops"])
    ap.add_argument("--timeout", type=int, default=900, help="seconds per method and width")
    ap.add_argument("--density", action="store_true",
                    help="spectral density + trace: dual exact / SLQ on the dual / matrix-free SLQ / curvlinops")
    ap.add_argument("--matfree", action="store_true",
                    help="matrix-free FisherOperator against curvlinops' GGNLinearOperator, interleaved in one process")
    ap.add_argument("--reps", type=int, default=MATFREE["reps"], help="--matfree: repetitions of each task")
    ap.add_argument("--block", type=int, default=MATFREE["block"], help="--matfree: columns of the matmat block")
    ap.add_argument("--probes", type=int, default=MATFREE["probes"], help="--matfree: SLQ probes")
    ap.add_argument("--steps", type=int, default=MATFREE["steps"], help="--matfree: Lanczos steps per probe")
    ap.add_argument("--hutch", type=int, default=MATFREE["hutch"], help="--matfree: Hutchinson matvecs")
    ap.add_argument("--probe-block", default="auto",
                    help="--matfree: SLQ probes per operator call ('auto': as many as fit in 32 MiB; or an integer)")
    ap.add_argument("--tasks", nargs="*", default=[],
                    help="--matfree: run only the tasks whose name contains one of these strings (e.g. SLQ)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    MATFREE.update(reps=args.reps, block=args.block, probes=args.probes, steps=args.steps, hutch=args.hutch,
                   probe_block=args.probe_block if args.probe_block == "auto" else int(args.probe_block),
                   tasks=list(args.tasks))
    if args.one:
        print(json.dumps(one(args.one, args.widths[0], args.C, args.T, args.L, args.dtype, args.seed, args.threads, args.device)))
        return 0
    widths = list(args.widths) + ([2300] if args.big else [])
    if args.matfree:
        args.methods = ["matfree"]
    if args.density:
        args.methods = ["density-dual-exact", "density-dual-slq", "density-fisher-slq", "density-curvlinops-slq"]
    print(f"# FIM λ_max of a tanh MLP [M]*{args.L}+[{args.C}], T = {args.T}, {args.dtype}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (timings on a busy machine are inflated)")
    rows = []
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **k):
            return x
    for M in widths:
        base = None
        for method in tqdm(args.methods, desc=f"M = {M}", disable=None):
            r = _spawn(method, args, M)
            rows.append(r)
            if method == "dual" and "time_s" in r:
                base = r
        if args.density:
            _density_table(rows, M)
            continue
        if args.matfree:
            _matfree_table(rows[-1])
            continue
        print(f"\nM = {M}, P = {rows[-1].get('P', '?')}")
        print("| method | time (s) | × dual | peak extra memory (MB) | λ_max | rel. diff. to dual |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            if r.get("M") != M:
                continue
            if "skipped" in r:
                print(f"| {r['method']} | {r['skipped']} | | | | |")
                continue
            ratio = r["time_s"] / base["time_s"] if base else float("nan")
            rel = (r["lambda_max"] - base["lambda_max"]) / base["lambda_max"] if base else float("nan")
            print(f"| {r['method']} | {r['time_s']:.3g} | {ratio:.3g} | {r['peak_extra_mb']:.0f} | "
                  f"{r['lambda_max']:.7g} | {rel:+.1e} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
