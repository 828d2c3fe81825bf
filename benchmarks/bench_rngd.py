"""Time per step and peak memory of RNGD against SGD, Adam and ASDL's K-FAC.

    python benchmarks/bench_rngd.py                    # both networks, all optimizers
    python benchmarks/bench_rngd.py --steps 100 --nets small

Networks: relu MLPs 784-80-80-80-10 (003's smallest) and 784-1000-1000-10
(wide), mini-batch 50 of MNIST training images (random pixels if the data are
missing), cross-entropy + L2 10⁻³. Each (network, optimizer) is measured in a
fresh child process, so the peak resident memory (``ru_maxrss``) is that
run's own; the table reports it beside the metric's size predicted by
:meth:`actionlab.optim.RNGD.metric_numel`. The epoch time is ms/step × 1000
(50,000 images / batch 50). Ratios are against Adam measured in the same run.

RNGD variants: ``rngd`` — the authors' schedule (metric every step, dense
shared metrics, inverse every T = 100); ``rngd-m10`` — metric updated every
10th step (``metric_every=10``); ``rngd-fast`` — ``metric_every=10`` and shared
metrics block-diagonal over blocks of ≤ 100 inputs (``shared_block_size=100``),
the ``rngd-fast`` optimizer of ``actionlab rngd-mnist`` (``rngd-fast-b200``, on
request: blocks of ≤ 200); ``rngd-r32`` — the authors' schedule with the first
layer's metric inverted as its top 32 eigen-directions plus an isotropic
remainder (``first_layer_rank=32``); ``rngd-r32-m10`` — that and
``metric_every=10``. The low-rank table gives the cosine of that first-layer
direction to the exact dense RNGD direction (the same running metric at the
last refresh, inverted exactly) along an RNGD training run on MNIST. On the wide network
the hidden 1000 → 1000 layer's per-neuron blocks (1.5·1000·1001² floats ≈ 6 GB
in float32) exceed ``--max-metric-gb`` and the layer takes the shared x̃x̃ᵀ
metric (``hidden_layers="shared"``, reported with the suffix ``-shared``).

``--threads`` sets torch's intra-op threads of every run (1 by default, so that
a busy second core does not disturb the timing; 2 is what a user of an idle
2-core machine gets by default).

K-FAC anchor: ASDL (``asdfghjkl`` on PyPI), ``KfacGradientMaker`` with the MC
Fisher, curvature every step with EMA 0.005, inverses every 100 steps (the
same schedule as RNGD), damping 0.1, SGD lr 0.01 (smaller dampings
diverged to NaN on the wide network). It lives in a separate virtualenv so that the main
torch is never touched; create it with

    python -m venv --system-site-packages .bench-envs/kfac
    .bench-envs/kfac/bin/pip install --no-deps asdfghjkl

The cost study (``--cost-only``, or after the tables above; issue 14 item 6, goal: cosine ≥ 0.99 to the exact
authors' RNGD step at ≤ 1.5× Adam's time per step, one thread, same run) prints: a profile of one
authors'-schedule step by part (:func:`profile_step`); each variant of :data:`VARIANTS` (all with the authors'
ε = 10⁻⁴·tr(G), T = 100, ω = 0.995) as a shadow of one authors' RNGD run on MNIST, its first-layer and
whole-step cosine to the exact step after 0, 100, 500, 1000 and 1500 steps, and the damped first-layer
spectrum with the exact top-k inverse under an isotropic and a diagonal remainder
(:func:`variant_fidelity`); then Adam and the variants stepped in turn in one process on the same batches
(:func:`interleaved`), and the goal judged for each (:func:`judge_goal`).

The K-FAC rows are skipped, with a message, when that environment is absent.
Timings on a shared 2-core machine are inflated and noisy: read the ratios.
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
KFAC_PY = ROOT / ".bench-envs" / "kfac" / "bin" / "python"
NETS = {"small": [784, 80, 80, 80, 10], "wide": [784, 1000, 1000, 10]}
RNGD_SCHEDULES = {"rngd": {}, "rngd-m10": {"metric_every": 10}, "rngd-fast": None,  # None: rngd-mnist's rngd-fast settings
                  "rngd-fast-b200": {"metric_every": 10, "shared_block_size": 200},
                  "rngd-r32": {"first_layer_rank": 32}, "rngd-r32-m10": {"first_layer_rank": 32, "metric_every": 10}}
OPTS = ["sgd", "adam", "rngd", "rngd-m10", "rngd-fast", "rngd-r32", "rngd-r32-m10", "kfac"]  # rngd-fast-b200 on request


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(net: str, opt_name: str, steps: int, warmup: int, threads: int, max_metric_gb: float, device: str) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from actionlab.models import MLP

    try:
        from actionlab import data

        ds = data.load("mnist", "train", validation=10000)
        X, Y = ds.z[: 50 * (steps + warmup)], ds.labels[: 50 * (steps + warmup)]
    except Exception:  # noqa: BLE001 - data are optional for a timing
        X = torch.rand(50 * (steps + warmup), 784)
        Y = torch.randint(0, 10, (len(X),))
    X, Y = X.to(device), Y.to(device)
    model = MLP(NETS[net], activation="relu", device=device)
    weights = [lin.weight for lin in model.linears]
    info: dict = {"net": net, "optimizer": opt_name}
    base_rss = _rss_mb()
    gm = None
    if opt_name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
    elif opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    elif opt_name.startswith("rngd"):
        from actionlab.optim import RNGD

        kw = RNGD_SCHEDULES[opt_name]
        if kw is None:
            from actionlab.experiments.rngd_mnist import RngdMnistConfig

            cfg = RngdMnistConfig()
            kw = {"metric_every": cfg.rngd_fast_metric_every, "shared_block_size": cfg.rngd_fast_shared_block_size}
        opt = RNGD(model, lr=0.1, **kw)
        if 2 * 4 * opt.metric_numel() / 1e9 > max_metric_gb:
            opt.remove_hooks()
            opt = RNGD(model, lr=0.1, hidden_layers="shared", **kw)
            info["optimizer"] = opt_name + "-shared"
            info["note"] = "per-neuron hidden blocks exceed --max-metric-gb; hidden layers use the shared x̃x̃ᵀ metric"
        info["metric_floats"] = opt.metric_numel()
    elif opt_name == "kfac":
        if not torch.cuda.is_available():  # ASDL wraps its work in NVTX ranges, absent from CPU builds of torch
            import contextlib

            class _NoRange(contextlib.ContextDecorator):
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return False

            torch.cuda.nvtx.range = lambda *a, **k: _NoRange()  # usable as context manager and decorator
            torch.cuda.nvtx.range_push = lambda *a, **k: 0
            torch.cuda.nvtx.range_pop = lambda *a, **k: 0
        from asdl import KfacGradientMaker, PreconditioningConfig

        cfg = PreconditioningConfig(data_size=50, damping=0.1, preconditioner_upd_interval=100, curvature_upd_interval=1, ema_decay=0.005)
        gm = KfacGradientMaker(model, cfg)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
    else:
        raise SystemExit(f"unknown optimizer {opt_name}")

    n_batches = len(X) // 50  # more steps than MNIST's 1000 training batches: wrap around (an epoch boundary)

    def one(i):
        i %= n_batches
        xb, yb = X[i * 50:(i + 1) * 50], Y[i * 50:(i + 1) * 50]
        opt.zero_grad(set_to_none=True)
        if gm is None:
            loss = F.cross_entropy(model(xb), yb) + 0.5e-3 * sum((w * w).sum() for w in weights)
            loss.backward()
        else:
            dummy = gm.setup_model_call(model, xb)
            gm.setup_loss_call(F.cross_entropy, dummy, yb)
            _, loss = gm.forward_and_backward()
            with torch.no_grad():  # the L2 term's gradient, added after ASDL's preconditioning of the loss gradient
                for w in weights:
                    w.grad.add_(w, alpha=1e-3)
        opt.step()

    for i in range(warmup):
        one(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        one(i)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        info["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    dt = (time.perf_counter() - t0) / steps
    info.update(ms_per_step=1e3 * dt, epoch_s=dt * 1000, peak_rss_mb=_rss_mb(), rss_increase_mb=_rss_mb() - base_rss)
    return info


def fidelity(block_sizes=(50, 100, 200, 400), batches: int = 5, images: int = 20000) -> list[dict]:
    """Cosine between the blocked and the dense preconditioned first-layer gradient (float64).

    The metric is the first layer's A = mean x̃x̃ᵀ over ``images`` MNIST training images (what the running
    average converges to: the first layer's input does not depend on θ), damped with ε = 0.01·tr(A)/d; the
    gradients are those of a fresh 784-80-80-80-10 relu MLP on ``batches`` random mini-batches of 50.
    """
    import torch
    import torch.nn.functional as F

    from actionlab import data
    from actionlab.models import MLP
    from actionlab.optim import describe_layers

    torch.manual_seed(0)
    ds = data.load("mnist", "train", validation=10000, dtype=torch.float64)
    X, Y = ds.z[:images], ds.labels[:images]
    Xt = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    A = Xt.T @ Xt / len(X)
    d = A.shape[0]
    Ad = A + 0.01 * torch.trace(A) / d * torch.eye(d, dtype=A.dtype)
    model = MLP(NETS["small"], activation="relu", dtype=torch.float64)
    first = {b: describe_layers(model, shared_block_size=b)[0] for b in block_sizes}  # RNGD's block layout per b
    cos: dict[int, list[float]] = {b: [] for b in block_sizes}
    for _ in range(batches):
        idx = torch.randint(0, len(X), (50,))
        model.zero_grad()
        F.cross_entropy(model(X[idx]), Y[idx]).backward()
        lin = model.linears[0]
        g = torch.cat([lin.weight.grad, lin.bias.grad[:, None]], 1)
        dense = torch.linalg.solve(Ad, g.T).T
        for b in block_sizes:
            out, start = torch.empty_like(g), 0
            for size in first[b].block_sizes:
                sl = slice(start, start + size)
                out[:, sl] = torch.linalg.solve(Ad[sl, sl], g[:, sl].T).T
                start += size
            cos[b].append(float((out * dense).sum() / out.norm() / dense.norm()))
    rows = []
    for b in block_sizes:
        nb = first[b].blocks
        rows.append({"block_size": b, "blocks": nb, "cos_mean": sum(cos[b]) / batches, "cos_min": min(cos[b]),
                     "first_layer_flops_vs_dense": 1.0 / nb})
    return rows


AUTHORS = {"damping": 1e-4, "damping_relative_to": "trace"}  # the authors' ε = 10⁻⁴·tr(G) (papers.md item 4)
# variants of the authors' schedule compared with it (fidelity and same-run timing); kwargs on top of AUTHORS
VARIANTS = {"rngd": {}, "rngd-m10": {"metric_every": 10},
            "rngd-r128": {"first_layer_rank": 128}, "rngd-r192": {"first_layer_rank": 192},
            "rngd-r256": {"first_layer_rank": 256}, "rngd-r128-m10": {"first_layer_rank": 128, "metric_every": 10},
            "rngd-r192-m10": {"first_layer_rank": 192, "metric_every": 10},
            "rngd-r256-m10": {"first_layer_rank": 256, "metric_every": 10},
            "rngd-r128-m20": {"first_layer_rank": 128, "metric_every": 20}}


def _mnist_batches(dtype, n_images: int):
    import torch

    from actionlab import data

    ds = data.load("mnist", "train", validation=10000, dtype=dtype)
    return ds.z[:n_images], ds.labels[:n_images]


def _loss(model, weights, xb, yb):
    import torch.nn.functional as F

    return F.cross_entropy(model(xb), yb) + 0.5e-3 * sum((w * w).sum() for w in weights)  # L2 10⁻³ (003 §4)


def profile_step(reps: int = 200, rank: int = 128) -> list[dict]:
    """Median ms of each part of one authors'-schedule RNGD step (784-80-80-80-10, batch 50, one thread, float32).

    The parts are timed with the optimizer's own methods, interleaved rep by rep (so the load hits all alike):
    forward + backward (as Adam's), Adam's whole step, each layer's metric update and preconditioning, the
    dense inverses (amortised over T = 100) and the rank-``rank`` first-layer variant's apply and refresh;
    returned beside the ratio to the forward + backward pass (which Adam's step contains).
    """
    import copy

    import torch

    from actionlab.models import MLP
    from actionlab.optim import RNGD

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, Y = _mnist_batches(torch.float32, 50 * 100)
    base = MLP(NETS["small"], activation="relu")
    adam_model = copy.deepcopy(base)
    adam = torch.optim.Adam(adam_model.parameters(), lr=1e-3)
    aw = [lin.weight for lin in adam_model.linears]
    model = copy.deepcopy(base)
    weights = [lin.weight for lin in model.linears]
    opt, low = RNGD(model, lr=0.1, **AUTHORS), RNGD(model, lr=0.1, first_layer_rank=rank, **AUTHORS)
    for o in (opt, low):  # build the metrics and inverses
        o.zero_grad()
        _loss(model, weights, X[:50], Y[:50]).backward()
        o.step()
    specs, group = opt.specs, opt.param_groups[0]
    s0, st0, lst = low.specs[0], low.state[low.specs[0].weight], {}

    def adam_step(i):
        adam.zero_grad(set_to_none=True)
        _loss(adam_model, aw, X[i * 50:(i + 1) * 50], Y[i * 50:(i + 1) * 50]).backward()
        adam.step()

    def fwd_bwd(i):
        opt.zero_grad(set_to_none=True)
        low.zero_grad(set_to_none=True)
        _loss(model, weights, X[i * 50:(i + 1) * 50], Y[i * 50:(i + 1) * 50]).backward()

    parts = {"Adam step (whole)": adam_step, "forward + backward": fwd_bwd}
    for s in specs:
        st = opt.state[s.weight]
        g = torch.cat([s.weight.grad, s.bias.grad[:, None]], 1)
        what = "first" if s.index == 0 else ("last" if s.index == len(specs) - 1 else f"hidden {s.index}")
        parts[f"{what}: metric update ({s.kind}, d = {s.d})"] = lambda i, s=s, st=st: opt._update_metric(s, st, 0.995)
        parts[f"{what}: apply the inverse"] = lambda i, s=s, st=st, g=g: opt._precondition(s, st, g)
        parts[f"{what}: dense inverse / T"] = lambda i, s=s, st=st: opt._inverse(s, st["metric"], group, dict(st))
    g0 = torch.cat([s0.weight.grad, s0.bias.grad[:, None]], 1)
    parts[f"first: apply rank-{rank} inverse"] = lambda i: low._precondition(s0, st0, g0)
    parts[f"first: rank-{rank} refresh / T"] = lambda i: low._inverse(s0, st0["metric"], group, lst.update(st0) or lst)
    times: dict[str, list[float]] = {k: [] for k in parts}
    for i in range(reps):
        fwd_bwd(i % 100)  # fresh captured inputs for the metric updates
        for name, fn in parts.items():
            if name.endswith("/ T") and i % 20:  # the O(d³) parts: every 20th rep
                continue
            t0 = time.perf_counter()
            fn(i % 100)
            times[name].append(1e3 * (time.perf_counter() - t0))
    opt.remove_hooks()
    low.remove_hooks()
    med = {k: sorted(v)[len(v) // 2] / (100.0 if k.endswith("/ T") else 1.0) for k, v in times.items()}
    fb = med["forward + backward"]  # the same pass in Adam's step; less noisy under load than Adam's whole step
    return [{"part": k, "median_ms": v, "vs_forward_backward": v / fb} for k, v in med.items()]


def _direction(opt, layers) -> "torch.Tensor":
    import torch

    d = opt.preconditioned_gradients()
    return torch.cat([d[i].reshape(-1) for i in layers])


def _cos(a, b) -> float:
    return float((a * b).sum() / a.norm() / b.norm())


def remainder_structure(A, eps, g, ranks=(64, 128, 192, 256)) -> dict:
    """Spectrum of the damped first-layer metric A + εI and the cosine of the exact top-k (eigh) inverse with an
    isotropic and with a diagonal remainder (:func:`actionlab.optim.rngd.low_rank_inverse_apply`) to the exact
    direction g (A + εI)⁻¹ (float64)."""
    import torch

    from actionlab.optim.rngd import low_rank_inverse_apply

    d = A.shape[0]
    Gd = A + eps * torch.eye(d, dtype=A.dtype)
    exact = torch.linalg.solve(Gd, g.T).T
    ev, U = torch.linalg.eigh(Gd)
    ev, U = ev.flip(0), U.flip(1)
    mass = ev.cumsum(0) / ev.sum()
    out = {"condition": float(ev[0] / ev[-1]), "eig_rel": {j: float(ev[j - 1] / ev[0]) for j in (32, 128, 256, 512, d)},
           "k_for_mass": {p: int((mass < p).sum()) + 1 for p in (0.9, 0.99)}, "iso": {}, "diag": {}}
    for k in ranks:
        V, lam = U[:, :k], ev[:k]
        out["iso"][k] = _cos(low_rank_inverse_apply(g, lam, V, ev[k:].mean()), exact)
        D = torch.diagonal(Gd - (V * lam) @ V.T).clamp(min=float(eps))
        out["diag"][k] = _cos(low_rank_inverse_apply(g, lam, V, D), exact)
    return out


def variant_fidelity(names=tuple(VARIANTS), checkpoints=(0, 100, 500, 1000, 1500), lr: float = 0.1) -> dict:
    """Cosine of each variant's step to the exact authors' RNGD step, along one authors' RNGD run (float64).

    A 784-80-80-80-10 relu MLP is trained by the authors' RNGD (dense, metric every step, ω = 0.995, T = 100,
    ε = 10⁻⁴·tr(G), lr ``lr``) on MNIST mini-batches of 50. Every variant is a shadow optimizer on the same
    model: it sees the same forward pass and gradient at every step, keeps its own running metrics with its
    own schedule, steps, and the parameters are put back before the next one; the reference steps last.
    Reported for the T steps after each checkpoint (an inverse refresh): the mean and minimum cosine of the
    first layer's direction and of the whole step (all layers concatenated) to the reference's, and, at the
    checkpoint, :func:`remainder_structure` of the reference's first-layer metric.
    """
    import torch

    from actionlab.models import MLP
    from actionlab.optim import RNGD

    torch.set_num_threads(1)
    torch.manual_seed(0)
    T, steps = 100, max(checkpoints) + 100
    X, Y = _mnist_batches(torch.float64, 50 * steps)
    n_batches = len(X) // 50  # past MNIST's 1000 training batches: wrap around (an epoch boundary)
    model = MLP(NETS["small"], activation="relu", dtype=torch.float64)
    weights = [lin.weight for lin in model.linears]
    ref = RNGD(model, lr=lr, inverse_every=T, **AUTHORS)
    shadows = {n: RNGD(model, lr=lr, inverse_every=T, **AUTHORS, **VARIANTS[n]) for n in names if n != "rngd"}
    layers = [s.index for s in ref.specs]
    cos = {n: {c: ([], []) for c in checkpoints} for n in shadows}
    structure = {}
    for t in range(steps):
        i = t % n_batches
        xb, yb = X[i * 50:(i + 1) * 50], Y[i * 50:(i + 1) * 50]
        ref.zero_grad()
        _loss(model, weights, xb, yb).backward()
        saved = [p.detach().clone() for p in model.parameters()]
        for opt in shadows.values():
            opt.step()
            with torch.no_grad():
                for p, q in zip(model.parameters(), saved):
                    p.copy_(q)
        ref.step()
        if t in checkpoints:  # the metric after step t's update: the one its inverse refresh used
            A, lin = ref.metric(0), model.linears[0]
            structure[t] = remainder_structure(A, 1e-4 * torch.trace(A), torch.cat([lin.weight.grad, lin.bias.grad[:, None]], 1))
        c = max((c for c in checkpoints if c <= t), default=None)
        if c is not None and t < c + T:
            full = _direction(ref, layers)
            first = ref.preconditioned_gradients()[0]
            for n, opt in shadows.items():
                cos[n][c][0].append(_cos(opt.preconditioned_gradients()[0], first))
                cos[n][c][1].append(_cos(_direction(opt, layers), full))
    for opt in (ref, *shadows.values()):
        opt.remove_hooks()
    rows = [{"variant": n, "checkpoint": c, "first_mean": sum(f) / len(f), "first_min": min(f),
             "step_mean": sum(w) / len(w), "step_min": min(w)} for n in shadows for c, (f, w) in cos[n].items()]
    return {"rows": rows, "structure": structure, "lr": lr}


def interleaved(names=("adam", "rngd", "rngd-m10", "rngd-r128", "rngd-r256", "rngd-r128-m10", "rngd-r192-m10",
                       "rngd-r256-m10", "rngd-r128-m20"), steps: int = 300, warmup: int = 20, repeats: int = 3) -> dict:
    """ms per step of several optimizers stepped in turn in one process (one thread, same batches, float32).

    Each optimizer trains its own copy of the same 784-80-80-80-10 on the same MNIST mini-batches (RNGD variants:
    the authors' settings of :data:`VARIANTS`); the steps alternate optimizer by optimizer, so a changing load
    hits all of them alike. Per repeat: the median and the mean over ``steps`` (the mean includes the inverse
    refreshes every T = 100 steps) and their ratios to Adam's; returned: the median over the ``repeats``.
    """
    import copy

    import torch

    from actionlab.models import MLP
    from actionlab.optim import RNGD

    torch.set_num_threads(1)
    X, Y = _mnist_batches(torch.float32, 50 * (steps + warmup))
    per_repeat = []
    for rep in range(repeats):
        torch.manual_seed(rep)
        base = MLP(NETS["small"], activation="relu")
        runs = {}
        for name in names:
            model = copy.deepcopy(base)
            opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if name == "adam"
                   else RNGD(model, lr=0.01, **AUTHORS, **VARIANTS[name]))
            runs[name] = (model, opt, [lin.weight for lin in model.linears], [])
        for i in range(steps + warmup):
            xb, yb = X[i * 50:(i + 1) * 50], Y[i * 50:(i + 1) * 50]
            for name, (model, opt, weights, times) in runs.items():
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                _loss(model, weights, xb, yb).backward()
                opt.step()
                if i >= warmup:
                    times.append(1e3 * (time.perf_counter() - t0))
        res = {n: {"median_ms": sorted(ts)[len(ts) // 2], "mean_ms": sum(ts) / len(ts)} for n, (*_, ts) in runs.items()}
        for n in res:
            res[n]["median_vs_adam"] = res[n]["median_ms"] / res["adam"]["median_ms"]
            res[n]["mean_vs_adam"] = res[n]["mean_ms"] / res["adam"]["mean_ms"]
        per_repeat.append(res)
        for _, opt, *_ in runs.values():
            if hasattr(opt, "remove_hooks"):
                opt.remove_hooks()
    return {n: {k: sorted(r[n][k] for r in per_repeat)[len(per_repeat) // 2] for k in per_repeat[0][n]} for n in names}

def judge_goal(cosine: float, time_ratio: float, cos_min: float = 0.99, ratio_max: float = 1.5) -> bool:
    """The issue's goal for one variant: cosine ≥ ``cos_min`` (the whole step's mean cosine over the T steps after
    each checkpoint, worst checkpoint) at ≤ ``ratio_max`` × Adam's time per step (mean over steps, with the
    inverse refreshes; median over repeats)."""
    return cosine >= cos_min and time_ratio <= ratio_max


def cost_tables(steps: int = 300) -> dict:
    """Print and return the cost study: the profile of one step, the variants' fidelity and their same-run timing."""
    load0 = os.getloadavg()[0]
    prof = profile_step()
    print(f"\nProfile of one authors'-schedule RNGD step (784-80-80-80-10, batch 50, one thread, float32; median of "
          f"200 reps, O(d³) parts amortised over T = 100; 1-minute load {load0:.2f} on {os.cpu_count()} cores):\n")
    print("| part | ms | × forward + backward |\n|---|---|---|")
    for r in prof:
        print(f"| {r['part']} | {r['median_ms']:.3f} | {r['vs_forward_backward']:.2f} |")
    fid = variant_fidelity()
    print(f"\nCosine to the exact authors' RNGD step along its MNIST run (float64, lr {fid['lr']}, ε = 10⁻⁴·tr(G), "
          "T = 100, ω = 0.995): mean (min) over the T steps after each checkpoint, first layer and whole step\n")
    cps = sorted({r["checkpoint"] for r in fid["rows"]})
    print("| variant | " + " | ".join(f"first, t={c}" for c in cps) + " | " + " | ".join(f"step, t={c}" for c in cps) + " |")
    print("|---|" + "---|" * (2 * len(cps)))
    by = {(r["variant"], r["checkpoint"]): r for r in fid["rows"]}
    variants = list(dict.fromkeys(r["variant"] for r in fid["rows"]))
    for n in variants:
        print(f"| {n} | " + " | ".join(f"{by[n, c]['first_mean']:.4f} ({by[n, c]['first_min']:.3f})" for c in cps) + " | "
              + " | ".join(f"{by[n, c]['step_mean']:.4f} ({by[n, c]['step_min']:.3f})" for c in cps) + " |")
    st = fid["structure"]
    print("\nThe reference's damped first-layer metric A + εI at each checkpoint: spectrum, and the first-layer cosine of the "
          "exact top-k (eigh) inverse with an isotropic / a diagonal remainder\n")
    ks = list(next(iter(st.values()))["iso"])
    print("| t | λ_max/λ_min | λ_32, λ_128, λ_256, λ_512 / λ_max | k for 90 %, 99 % of the trace | "
          + " | ".join(f"k={k} iso / diag" for k in ks) + " |")
    print("|---|---|---|---|" + "---|" * len(ks))
    for t, r in st.items():
        e = r["eig_rel"]
        print(f"| {t} | {r['condition']:.0f} | {e[32]:.2e}, {e[128]:.2e}, {e[256]:.2e}, {e[512]:.2e} | "
              f"{r['k_for_mass'][0.9]}, {r['k_for_mass'][0.99]} | " + " | ".join(f"{r['iso'][k]:.4f} / {r['diag'][k]:.4f}" for k in ks) + " |")
    inter = interleaved(steps=steps)
    load1 = os.getloadavg()[0]
    print(f"\nSame run, one thread, optimizers stepped in turn on the same MNIST batches (784-80-80-80-10, {steps} steps "
          f"after 20 warm-up, median of 3 repeats; 1-minute load {load0:.2f} → {load1:.2f}):\n")
    print("| optimizer | median ms / step | × Adam (median) | mean ms / step | × Adam (mean) | worst step cosine | goal met |")
    print("|---|---|---|---|---|---|---|")
    worst = {n: min(by[n, c]["step_mean"] for c in cps) for n in variants}
    verdicts = {}
    for n, r in inter.items():
        cos = worst.get(n, 1.0 if n == "rngd" else None)
        verdicts[n] = None if cos is None else judge_goal(cos, r["mean_vs_adam"])
        print(f"| {n} | {r['median_ms']:.2f} | {r['median_vs_adam']:.2f} | {r['mean_ms']:.2f} | {r['mean_vs_adam']:.2f} | "
              f"{'' if cos is None else f'{cos:.4f}'} | {'' if cos is None else ('yes' if verdicts[n] else 'no')} |")
    met = [n for n, v in verdicts.items() if v]
    print(f"\nGoal (whole-step cosine ≥ 0.99 at every checkpoint at ≤ 1.5× Adam's mean time per step): "
          + (f"met by {', '.join(met)}" if met else "not met by any variant"))
    return {"profile": prof, "fidelity": fid, "interleaved": inter, "goal_met_by": met, "load_average_1min": (load0, load1)}


def _optional(table, what: str, empty):
    """Run one optional table of the benchmark; print a one-line skip (e.g. MNIST missing) and return ``empty``."""
    try:
        return table()
    except Exception as exc:  # noqa: BLE001 - MNIST may be missing
        print(f"\n[skip] {what}: {exc}")
        return empty


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=["small", "wide"], choices=list(NETS))
    p.add_argument("--optimizers", nargs="+", default=OPTS, choices=[*OPTS, "rngd-fast-b200"])
    p.add_argument("--steps", type=int, default=300, help="measured steps on the small net (wide: steps // 10, at least 20)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per run (default 1: the machine is shared)")
    p.add_argument("--max-metric-gb", type=float, default=2.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    p.add_argument("--no-fidelity", action="store_true", help="skip the blocked-metric fidelity table")
    p.add_argument("--no-interleaved", action="store_true", help="skip the cost study (profile, variants' fidelity, same-run timing)")
    p.add_argument("--cost-only", action="store_true", help="only the cost study of RNGD's approximations (issue 14 item 6)")
    p.add_argument("--child", nargs=2, metavar=("NET", "OPT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        steps = a.steps if a.child[0] == "small" else max(20, a.steps // 10)
        print("RESULT " + json.dumps(child(a.child[0], a.child[1], steps, a.warmup, a.threads, a.max_metric_gb, a.device)))
        return 0

    if a.cost_only:
        cost = cost_tables(a.steps)
        if a.json:
            a.json.write_text(json.dumps({"cost": cost, "threads": 1}, indent=2, default=str))
        return 0
    rows = []
    load_start = os.getloadavg()[0]
    for net in a.nets:
        for opt in a.optimizers:
            py = sys.executable
            if opt == "kfac":
                try:
                    import asdl  # noqa: F401
                except ImportError:
                    if not KFAC_PY.exists():
                        print(f"[skip] kfac: ASDL not installed; create {KFAC_PY.parent.parent} with\n"
                              f"    python -m venv --system-site-packages .bench-envs/kfac && .bench-envs/kfac/bin/pip install --no-deps asdfghjkl")
                        continue
                    py = str(KFAC_PY)
            cmd = [py, __file__, "--child", net, opt, "--steps", str(a.steps), "--warmup", str(a.warmup),
                   "--threads", str(a.threads), "--max-metric-gb", str(a.max_metric_gb), "--device", a.device]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode != 0 or not line:
                print(f"[fail] {net} {opt}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
                continue
            row = json.loads(line[0][7:])
            rows.append(row)
            print(f"  {net:5s} {row['optimizer']:12s} {row['ms_per_step']:8.2f} ms/step  peak RSS {row['peak_rss_mb']:7.0f} MB", flush=True)

    load = (load_start, os.getloadavg()[0])
    print(f"\nthreads per run: {a.threads}; device {a.device}; batch 50; epoch = 1000 steps; 1-minute load average "
          f"before / after: {load[0]:.2f} / {load[1]:.2f} on {os.cpu_count()} cores (absolute times are inflated when "
          "other work shares the cores; the ratios are less affected).\n")
    print("| network | optimizer | ms / step | epoch (s) | × Adam time | peak RSS (MB) | RSS growth (MB) | metric floats |")
    print("|---|---|---|---|---|---|---|---|")
    for net in a.nets:
        adam = next((r for r in rows if r["net"] == net and r["optimizer"] == "adam"), None)
        for r in (r for r in rows if r["net"] == net):
            ratio = r["ms_per_step"] / adam["ms_per_step"] if adam else float("nan")
            mf = r.get("metric_floats", "")
            print(f"| {'-'.join(map(str, NETS[net]))} | {r['optimizer']} | {r['ms_per_step']:.2f} | {r['epoch_s']:.1f} | {ratio:.2f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['rss_increase_mb']:.0f} | {mf} |")
    for r in rows:
        if "note" in r:
            print(f"\nnote ({r['net']}, {r['optimizer']}): {r['note']}")
    fid = _optional(fidelity, "fidelity table", []) if not a.no_fidelity else []
    cost = {} if a.no_interleaved else cost_tables(a.steps)
    if fid:
        print("\nBlocked first-layer metric (shared_block_size=b) against the dense one, MNIST, float64: cosine between the")
        print("preconditioned first-layer gradients (5 mini-batches of 50, fresh 784-80-80-80-10; ε = 0.01·tr(A)/d for both)\n")
        print("| b | blocks | cosine (mean) | cosine (min) | first-layer flops vs dense |")
        print("|---|---|---|---|---|")
        for r in fid:
            print(f"| {r['block_size']} | {r['blocks']} | {r['cos_mean']:.3f} | {r['cos_min']:.3f} | {r['first_layer_flops_vs_dense']:.2f} |")
    if a.json:
        a.json.write_text(json.dumps({"timings": rows, "fidelity": fid, "cost": cost, "load_average_1min": load, "threads": a.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
