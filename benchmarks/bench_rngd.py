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

The same-run table steps Adam, ``rngd``, ``rngd-r32`` and ``rngd-r32-m10`` in turn in one
process on the same batches (one thread), so that a changing load hits them alike: read
its ratios for the low-rank goal (cosine ≥ 0.99 at ≤ 1.5× Adam's time per step).

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


def low_rank_fidelity(ranks=(16, 32, 64, 128), steps: int = 1000, inverse_every: int = 100) -> list[dict]:
    """Cosine of the low-rank-plus-identity first-layer direction to the exact dense RNGD direction (float64).

    One 784-80-80-80-10 relu MLP per rank k, trained by ``RNGD(first_layer_rank=k)`` (the authors' schedule:
    metric every step, ω = 0.995, T = ``inverse_every``, ε = 0.01·tr(A)/d) for ``steps`` mini-batches of 50
    MNIST images; at every step the exact direction is g (A_r + εI)⁻¹ with A_r the running metric at the
    last refresh (what dense RNGD would apply in the same state).
    """
    import torch
    import torch.nn.functional as F

    from actionlab import data
    from actionlab.models import MLP
    from actionlab.optim import RNGD

    ds = data.load("mnist", "train", validation=10000, dtype=torch.float64)
    X, Y = ds.z[: 50 * steps], ds.labels[: 50 * steps]
    rows = []
    for k in ranks:
        torch.manual_seed(0)
        model = MLP(NETS["small"], activation="relu", dtype=torch.float64)
        opt = RNGD(model, lr=0.01, inverse_every=inverse_every, first_layer_rank=k)
        cos, exact_inv = [], None
        for t in range(steps):
            xb, yb = X[t * 50:(t + 1) * 50], Y[t * 50:(t + 1) * 50]
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
            if t % inverse_every == 0:
                A = opt.metric(0)
                exact_inv = torch.linalg.inv(A + 0.01 * torch.trace(A) / A.shape[0] * torch.eye(A.shape[0], dtype=A.dtype))
            lin = model.linears[0]
            direction = opt.preconditioned_gradients()[0]
            g = torch.cat([lin.weight.grad, lin.bias.grad[:, None]], 1)
            exact = g @ exact_inv
            cos.append(float((direction * exact).sum() / direction.norm() / exact.norm()))
        opt.remove_hooks()
        late = cos[-inverse_every:]  # the last T steps: the identity start of the running average has decayed
        rows.append({"rank": k, "steps": steps, "cos_mean": sum(cos) / len(cos), "cos_min": min(cos),
                     "cos_last_T_mean": sum(late) / len(late),
                     "apply_flops_vs_dense": 2.0 * k / 785})
    return rows


def interleaved(names=("adam", "rngd", "rngd-r32", "rngd-r32-m10"), steps: int = 300, warmup: int = 20) -> dict:
    """Median ms per step of several optimizers stepped in turn in one process (one thread, same batches).

    Each optimizer trains its own copy of the same 784-80-80-80-10 (float32) on the same MNIST mini-batches;
    the steps alternate optimizer by optimizer, so a changing load on a shared machine hits all of them alike.
    Medians over ``steps`` (an RNGD inverse refresh every 100 steps is inside the mean, not the median: both
    are returned).
    """
    import copy

    import torch
    import torch.nn.functional as F

    from actionlab import data
    from actionlab.models import MLP
    from actionlab.optim import RNGD

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = data.load("mnist", "train", validation=10000)
    X, Y = ds.z[: 50 * (steps + warmup)], ds.labels[: 50 * (steps + warmup)]
    base = MLP(NETS["small"], activation="relu")
    runs = {}
    for name in names:
        model = copy.deepcopy(base)
        if name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        else:
            opt = RNGD(model, lr=0.01, **(RNGD_SCHEDULES[name] or {}))
        runs[name] = (model, opt, [lin.weight for lin in model.linears], [])
    for i in range(steps + warmup):
        xb, yb = X[i * 50:(i + 1) * 50], Y[i * 50:(i + 1) * 50]
        for name, (model, opt, weights, times) in runs.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb) + 0.5e-3 * sum((w * w).sum() for w in weights)
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(1e3 * (time.perf_counter() - t0))
    out = {}
    for name, (*_, times) in runs.items():
        ts = sorted(times)
        out[name] = {"median_ms": ts[len(ts) // 2], "mean_ms": sum(ts) / len(ts)}
    for name in out:
        out[name]["median_vs_adam"] = out[name]["median_ms"] / out["adam"]["median_ms"]
        out[name]["mean_vs_adam"] = out[name]["mean_ms"] / out["adam"]["mean_ms"]
    return out


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
    p.add_argument("--no-interleaved", action="store_true", help="skip the same-process interleaved timing table")
    p.add_argument("--child", nargs=2, metavar=("NET", "OPT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        steps = a.steps if a.child[0] == "small" else max(20, a.steps // 10)
        print("RESULT " + json.dumps(child(a.child[0], a.child[1], steps, a.warmup, a.threads, a.max_metric_gb, a.device)))
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
    inter = _optional(lambda: interleaved(steps=a.steps), "interleaved timing", {}) if not a.no_interleaved else {}
    if inter:
        print("\nSame run, one thread, steps interleaved optimizer by optimizer on the same batches (784-80-80-80-10):\n")
        print("| optimizer | median ms / step | × Adam (median) | mean ms / step | × Adam (mean) |")
        print("|---|---|---|---|---|")
        for n, r in inter.items():
            print(f"| {n} | {r['median_ms']:.2f} | {r['median_vs_adam']:.2f} | {r['mean_ms']:.2f} | {r['mean_vs_adam']:.2f} |")
    lowrank = _optional(low_rank_fidelity, "low-rank fidelity table", []) if not a.no_fidelity else []
    if fid:
        print("\nBlocked first-layer metric (shared_block_size=b) against the dense one, MNIST, float64: cosine between the")
        print("preconditioned first-layer gradients (5 mini-batches of 50, fresh 784-80-80-80-10; ε = 0.01·tr(A)/d for both)\n")
        print("| b | blocks | cosine (mean) | cosine (min) | first-layer flops vs dense |")
        print("|---|---|---|---|---|")
        for r in fid:
            print(f"| {r['block_size']} | {r['blocks']} | {r['cos_mean']:.3f} | {r['cos_min']:.3f} | {r['first_layer_flops_vs_dense']:.2f} |")
    if lowrank:
        print("\nLow-rank-plus-identity first-layer inverse (first_layer_rank=k) against the exact dense one, MNIST, float64:")
        print("cosine of the first-layer directions along an RNGD run (784-80-80-80-10, T = 100, ω = 0.995, ε = 0.01·tr(A)/d)\n")
        print("| k | steps | cosine (mean) | cosine (min) | cosine (mean, last 100 steps) | first-layer apply flops vs dense |")
        print("|---|---|---|---|---|---|")
        for r in lowrank:
            print(f"| {r['rank']} | {r['steps']} | {r['cos_mean']:.4f} | {r['cos_min']:.4f} | {r['cos_last_T_mean']:.4f} | "
                  f"{r['apply_flops_vs_dense']:.2f} |")
    if a.json:
        a.json.write_text(json.dumps({"timings": rows, "fidelity": fid, "low_rank_fidelity": lowrank, "interleaved": inter, "load_average_1min": load, "threads": a.threads}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
