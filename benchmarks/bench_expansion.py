"""Benchmark: the exact Taylor coefficients S_0..S_K of the action, actionlab against its anchors.

Work: Fashion-MNIST test (N = 10,000, E = 784, M = 10), H = 2048, silu,
θ ~ N(0, 0.05²), float32, coefficients of t ↦ S(tθ) for K ∈ {2, 4, 6, 8}.

Methods, all measured in the same run (each in a fresh subprocess of this
script, so that peak memory is per method):

* ``actionlab``  — :func:`actionlab.expansion.action_series` (Taylor mode, streamed)
* ``autodiff``   — nested reverse-mode autodiff of t ↦ S(tθ) in torch (K grad calls with create_graph)
* ``jet``        — JAX Taylor mode, ``jax.experimental.jet.jet`` of t ↦ S(tθ), jit-compiled
                   (runs under the separate environment .bench-envs/jax; skipped with a message if absent)
* ``projection`` — the bare projection z·Wᵀ, the floor every method pays

Times are the best of ``--repeats`` runs after one warm-up (jit compile
excluded for jet). Peak memory is the subprocess's peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus its current resident
size (/proc/self/statm) just before the method runs, i.e. after imports and
data loading — it includes allocator caches and, for JAX, its compiled
program; it is an upper bound when an earlier spike (imports) set the peak.

Create the JAX environment once::

    python -m venv --system-site-packages .bench-envs/jax
    echo "torch==2.13.0" > .bench-envs/jax-constraints.txt
    .bench-envs/jax/bin/pip install -c .bench-envs/jax-constraints.txt jax jaxlib

Run::

    python benchmarks/bench_expansion.py                 # the full work (minutes; autodiff only up to K = 4)
    python benchmarks/bench_expansion.py --quick         # N = 2,000, H = 512, K ∈ {2, 4}
    python benchmarks/bench_expansion.py --autodiff-max-k 6 --out runs/bench-expansion.json
    python benchmarks/bench_expansion.py --device cuda   # the torch methods on a GPU (no JAX anchor)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JAX_PY = ROOT / ".bench-envs" / "jax" / "bin" / "python"


def _rss_mb() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mb() -> float:
    """Current resident set size (MiB), from /proc/self/statm (falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _rss_mb()


def _best(fn, repeats: int, sync=lambda: None) -> tuple[float, object]:
    out = fn()  # warm-up
    sync()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync()  # a GPU runs asynchronously: time the finished work
        best = min(best, time.perf_counter() - t)
    return best, out


# ---------------------------------------------------------------------------------------------
# one measurement (runs in a subprocess)
# ---------------------------------------------------------------------------------------------


def one(method: str, K: int, folder: Path, repeats: int, threads: int | None, device: str = "cpu") -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    z = torch.from_numpy(np.load(folder / "z.npy")).to(dev)
    labels = torch.from_numpy(np.load(folder / "labels.npy")).long().to(dev)
    th = {k: torch.from_numpy(np.load(folder / f"{k}.npy")).to(dev) for k in ("U", "c", "W", "b")}
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    import gc

    gc.collect()
    base_rss = _current_rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
        base_gpu = torch.cuda.memory_allocated(dev) / 2**20
    if method == "projection":
        W = th["W"]
        t, _ = _best(lambda: z @ W.T, repeats, sync)
        coeffs = None
    elif method == "actionlab":
        from actionlab.expansion import action_series

        t, out = _best(lambda: action_series(th, z, labels, K, activation="silu"), repeats, sync)
        coeffs = [float(x) for x in out]
    elif method == "autodiff":
        silu = torch.nn.functional.silu

        def nested():
            tt = torch.zeros((), dtype=z.dtype, device=z.device, requires_grad=True)
            logits = silu(z @ (tt * th["W"]).T + tt * th["b"]) @ (tt * th["U"]).T + tt * th["c"]
            g = torch.nn.functional.cross_entropy(logits, labels)
            res = [float(g)]
            for k in range(1, K + 1):
                (g,) = torch.autograd.grad(g, tt, create_graph=k < K)
                res.append(float(g) / math.factorial(k))
            return res

        t, coeffs = _best(nested, repeats, sync)
    else:
        raise ValueError(method)
    # peak extra memory: the GPU's allocator peak on cuda, the resident set on the CPU
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 - base_gpu if cuda else _rss_mb() - base_rss
    return {"method": method, "K": K, "time_s": t, "peak_mb": peak, "coeffs": coeffs,
            "threads": torch.get_num_threads(), "device": str(dev)}


JET_SCRIPT = r"""
import json, math, resource, sys, time
import numpy as np
import jax, jax.numpy as jnp
from jax.experimental import jet
folder, K, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
z = jnp.asarray(np.load(folder + "/z.npy")); lab = jnp.asarray(np.load(folder + "/labels.npy"))
U, c, W, b = (jnp.asarray(np.load(folder + f"/{k}.npy")) for k in ("U", "c", "W", "b"))
import os
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def S(t):
    logits = jax.nn.silu(z @ (t * W).T + t * b) @ (t * U).T + t * c
    lse = jax.scipy.special.logsumexp(logits, axis=1)
    return jnp.mean(lse - jnp.take_along_axis(logits, lab[:, None], axis=1)[:, 0])
@jax.jit
def coeffs(t0):
    series = [jnp.ones_like(t0)] + [jnp.zeros_like(t0)] * (K - 1)
    p, ts = jet.jet(S, (t0,), (series,))
    return p, jnp.stack(ts)
t0 = jnp.zeros((), dtype=z.dtype)
tc = time.perf_counter(); out = jax.block_until_ready(coeffs(t0)); compile_s = time.perf_counter() - tc
best = math.inf
for _ in range(repeats):
    t = time.perf_counter(); out = jax.block_until_ready(coeffs(t0)); best = min(best, time.perf_counter() - t)
p, ts = out
res = [float(p)] + [float(ts[k - 1]) / math.factorial(k) for k in range(1, K + 1)]
print(json.dumps({"method": "jet", "K": K, "time_s": best, "compile_s": compile_s,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - base, "coeffs": res,
                  "jax": jax.__version__, "backend": jax.default_backend()}))
"""


def run_sub(args: list[str], env=None, timeout=3600) -> dict | str:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 2,000, H = 512, K ∈ {2, 4}, 1 repeat")
    ap.add_argument("--orders", type=int, nargs="+", default=None, help="K values (default 2 4 6 8)")
    ap.add_argument("--hidden", type=int, default=None, help="H (default 2048)")
    ap.add_argument("--samples", type=int, default=None, help="N, the first N test images (default all 10,000)")
    ap.add_argument("--autodiff-max-k", type=int, default=4, help="skip nested autodiff above this K (default 4; it grows fast)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats after a warm-up (default 3; --quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-jet", action="store_true", help="skip the JAX anchor")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N for the torch methods (the JAX anchor is "
                                                     "skipped on a GPU: it runs on the CPU)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--one", nargs=3, metavar=("METHOD", "K", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.one:
        m, K, folder = args.one
        print(json.dumps(one(m, int(K), Path(folder), repeats, args.threads, args.device)))
        return 0

    import torch

    from actionlab import data

    orders = args.orders or ([2, 4] if args.quick else [2, 4, 6, 8])
    H = args.hidden or (512 if args.quick else 2048)
    N = args.samples or (2000 if args.quick else 10000)
    ds = data.load("fashion-mnist", "test", dtype=torch.float32)
    z, labels = ds.z[:N].contiguous(), ds.labels[:N]
    M, E = ds.num_classes, z.shape[1]
    g = torch.Generator().manual_seed(0)
    th = {"U": torch.randn(M, H, generator=g) * 0.05, "c": torch.randn(M, generator=g) * 0.05,
          "W": torch.randn(H, E, generator=g) * 0.05, "b": torch.randn(H, generator=g) * 0.05}
    print(f"work: Fashion-MNIST test N = {N}, E = {E}, M = {M}, H = {H}, silu, float32, K = {orders}, best of {repeats}, "
          f"device {args.device}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (timings on a shared machine are inflated)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "z.npy", z.numpy())
        np.save(folder / "labels.npy", labels.numpy().astype(np.int32))
        for k, v in th.items():
            np.save(folder / f"{k}.npy", v.numpy())
        me = [sys.executable, str(Path(__file__).resolve())]
        extra = ["--repeats", str(repeats), "--device", args.device] + (
            ["--threads", str(args.threads)] if args.threads else [])
        if args.device != "cpu" and not args.no_jet:
            args.no_jet = True
            print(f"jet: skipped — --device {args.device}; the JAX anchor runs on the CPU only")
        jet_ok = JAX_PY.exists() and not args.no_jet
        if not jet_ok and not args.no_jet:
            print(f"jet: skipped — no JAX environment at {JAX_PY} (see this script's docstring to create it)")
        proj = run_sub(me + ["--one", "projection", "0", str(folder)] + extra)
        print("projection:", proj if isinstance(proj, str) else f"{proj['time_s']:.3f} s")
        for K in orders:
            row = {"K": K, "projection": proj}
            row["actionlab"] = run_sub(me + ["--one", "actionlab", str(K), str(folder)] + extra)
            if K <= args.autodiff_max_k:
                row["autodiff"] = run_sub(me + ["--one", "autodiff", str(K), str(folder)] + extra)
            else:
                row["autodiff"] = f"skipped (K > --autodiff-max-k {args.autodiff_max_k})"
            if jet_ok:
                env = dict(os.environ, JAX_PLATFORMS="cpu")
                if args.threads == 1:
                    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                row["jet"] = run_sub([str(JAX_PY), "-c", JET_SCRIPT, str(folder), str(K), str(repeats)], env=env)
            else:
                row["jet"] = "skipped (no JAX environment)" if not args.no_jet else "skipped (--no-jet)"
            results.append(row)
            print(f"K = {K}: " + ", ".join(
                f"{m} {r['time_s']:.3f} s" if isinstance(r, dict) else f"{m} {r}" for m, r in row.items() if m != "K"))
    # table
    def t(r):
        return r["time_s"] if isinstance(r, dict) else None

    def mb(r):
        return f"{r['peak_mb']:.0f}" if isinstance(r, dict) else "—"

    def fmt(x, spec=".3f"):
        return format(x, spec) if x is not None else "—"

    lines = [
        "| K | actionlab (s) | autodiff (s) | jet (s) | z·Wᵀ (s) | actionlab / z·Wᵀ | autodiff / actionlab | jet / actionlab "
        "| peak MB actionlab / autodiff / jet / z·Wᵀ | max rel. diff of S_k vs actionlab (autodiff, jet) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        a, d, j, p = (t(row[m]) for m in ("actionlab", "autodiff", "jet", "projection"))

        def rel(other):
            if not (isinstance(row[other], dict) and isinstance(row["actionlab"], dict) and row[other].get("coeffs")):
                return "—"
            x, y = np.array(row[other]["coeffs"]), np.array(row["actionlab"]["coeffs"])
            return f"{np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-3 * np.abs(y).max())):.1e}"

        lines.append(
            f"| {row['K']} | {fmt(a)} | {fmt(d)} | {fmt(j)} | {fmt(p)} | {fmt(a / p if a and p else None, '.2f')} | "
            f"{fmt(d / a if a and d else None, '.1f')} | {fmt(j / a if a and j else None, '.2f')} | "
            f"{mb(row['actionlab'])} / {mb(row['autodiff'])} / {mb(row['jet'])} / {mb(row['projection'])} | "
            f"{rel('autodiff')}, {rel('jet')} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"N": N, "E": E, "M": M, "H": H, "orders": orders, "repeats": repeats,
                                        "device": args.device,
                                        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
                                        "results": results, "table": table}, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
