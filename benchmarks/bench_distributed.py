"""Benchmark: the statistics of F* and the expansion on 1 and 2 ranks of a torch.distributed group (issue 16 item 7).

Two measurements, each run with world sizes W ∈ ``--worlds`` (default 1 2), every W in fresh processes
(torch.multiprocessing spawn, gloo on 127.0.0.1, or NCCL with ``--device cuda``), the ``--threads``
CPU threads split evenly between the ranks (so W = 2 uses the same cores as W = 1):

* **fisher** — ``DualFisherOperator(model, x_r, group=)`` for a tanh MLP [E, M, M, C] on T Fashion-MNIST
  test images (each rank its contiguous shard), then λ_max (``top_eigenpairs``, Lanczos on the
  distributed F*) and m_λ = tr F* / P (004 A.3). The default C·T = 10 · 1000 = 10,000: the
  one-process F* is 10⁴ × 10⁴ (800 MB in float64); with W ranks each holds C·T/W of its rows.
* **expansion** — ``action_series(θ, z_r, labels_r, K, group=)`` at θ = 0's ray for a silu
  two-layer classifier on the N = 60,000 Fashion-MNIST training images (E = 784), each rank its shard.

Per rank: wall time of each phase, and the peak resident memory it added (``ru_maxrss`` after the
phase minus before it, i.e. above the process with its data and model loaded; CUDA:
``max_memory_allocated``); for the expansion also the process's whole peak (data loading included:
the streamed batches stay below it, so "added" is 0 there). Agreement: the relative difference of λ_max and m_λ from the W = 1 run, and
max_k |ΔS_k| / max_k |S_k| for the expansion (S_1 ≈ 0 for balanced data). The table has the ratio of each time to W = 1's (measured in the same run).

Usage::

    python benchmarks/bench_distributed.py                       # both, W = 1 and 2, the defaults above
    python benchmarks/bench_distributed.py --only fisher --T 400 --width 128   # smaller
    python benchmarks/bench_distributed.py --json /tmp/bench_distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Peak:
    """Peak memory added by a phase: CPU ru_maxrss delta (MB), CUDA max_memory_allocated delta."""

    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated() / 2**20
        else:
            self.base = _rss_mb()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        self.mb = (self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else _rss_mb()) - self.base
        return False


def _fisher(args, group, device) -> dict:
    import torch
    from torch import nn

    from actionlab import distributed as D
    from actionlab.data import load
    from actionlab.fisher.operators import DualFisherOperator
    from actionlab.fisher.spectral import top_eigenpairs

    ds = load("fashion-mnist", "test", root=args.data_root)
    x = ds.z[: args.T].to(torch.float64)
    torch.manual_seed(0)
    M = args.width
    model = nn.Sequential(nn.Linear(x.shape[1], M), nn.Tanh(), nn.Linear(M, M), nn.Tanh(), nn.Linear(M, 10))
    model = model.double().to(device)
    xr = x[D.shard(len(x), group)].to(device)
    P = sum(p.numel() for p in model.parameters())
    with _Peak(device) as build:
        op = DualFisherOperator(model, xr, "squared", group=group)
    with _Peak(device) as eig:
        lam = float(top_eigenpairs(op, 1, method="lanczos").values[0])
        m = op.trace() / P
    return {"T": len(x), "T_local": int(xr.shape[0]), "C": op.C, "P": P, "lambda_max": lam, "m_lambda": m,
            "build_s": build.seconds, "eig_s": eig.seconds, "build_mb": build.mb, "eig_mb": eig.mb,
            "rows_mb": op.rows.numel() * op.rows.element_size() / 2**20}


def _expansion(args, group, device) -> dict:
    import torch

    from actionlab import distributed as D
    from actionlab import expansion as X
    from actionlab.data import load

    ds = load("fashion-mnist", "train", root=args.data_root, validation=0)
    sl = D.shard(len(ds.z), group)
    z, y = ds.z[sl].to(device, torch.float64), ds.labels[sl].to(device)
    g = torch.Generator().manual_seed(0)
    H, E = args.hidden, z.shape[1]
    theta = {"U": torch.randn(10, H, generator=g, dtype=torch.float64) / H**0.5,
             "c": torch.randn(10, generator=g, dtype=torch.float64),
             "W": torch.randn(H, E, generator=g, dtype=torch.float64) / E**0.5,
             "b": torch.randn(H, generator=g, dtype=torch.float64)}
    theta = {k: v.to(device) for k, v in theta.items()}
    with _Peak(device) as ph:
        S = X.action_series(theta, z, y, args.order, activation="silu", group=group)
    return {"N": len(ds.z), "N_local": int(z.shape[0]), "S": [float(s) for s in S], "series_s": ph.seconds,
            "series_mb": ph.mb, "rss_mb": _rss_mb()}


def _rank(rank: int, size: int, port: int, args, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(max(1, args.threads // size))
    device = torch.device(args.device)
    from actionlab import distributed as D

    if device.type == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group(D.backend_for(device), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size, timeout=timedelta(seconds=3600))
    group = dist.group.WORLD
    res = {"rank": rank, "world": size, "threads": torch.get_num_threads(), "backend": D.backend(group)}
    try:
        for part in args.only:
            dist.barrier()
            res[part] = (_fisher if part == "fisher" else _expansion)(args, group, device)
    finally:
        Path(out_dir, f"{size}-{rank}.json").write_text(json.dumps(res))
        dist.destroy_process_group()


def run_world(size: int, args) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, args.threads // size)))
        mp.start_processes(_rank, args=(size, _free_port(), args, out), nprocs=size, start_method="spawn")
        return [json.loads(Path(out, f"{size}-{r}.json").read_text()) for r in range(size)]


def _rel(a, b) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def table(results: dict[int, list[dict]], parts) -> str:
    """The printed table: one row per (part, world size, rank); ratios against W = 1 of the same run."""
    base = results[min(results)]
    lines = []
    if "fisher" in parts:
        f0 = base[0]["fisher"]
        lines += [f"F* statistics: tanh MLP, C·T = {f0['C']}·{f0['T']} = {f0['C'] * f0['T']}, P = {f0['P']}",
                  "| W | rank | T_r | build F* rows (s) | λ_max + m_λ (s) | total / W=1 | rows held (MB) | "
                  "peak added (MB) | rel. diff λ_max | rel. diff m_λ |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        t0 = max(r["fisher"]["build_s"] + r["fisher"]["eig_s"] for r in base)
        for w, ranks in results.items():
            for r in ranks:
                f = r["fisher"]
                tot = f["build_s"] + f["eig_s"]
                lines.append(f"| {w} | {r['rank']} | {f['T_local']} | {f['build_s']:.2f} | {f['eig_s']:.2f} | "
                             f"{tot / t0:.2f} | {f['rows_mb']:.0f} | {max(f['build_mb'], f['eig_mb']):.0f} | "
                             f"{_rel(f['lambda_max'], f0['lambda_max']):.1e} | {_rel(f['m_lambda'], f0['m_lambda']):.1e} |")
        lines.append(f"λ_max = {f0['lambda_max']:.10g}, m_λ = {f0['m_lambda']:.10g} (W = 1)")
    if "expansion" in parts:
        e0 = base[0]["expansion"]
        K = len(e0["S"]) - 1
        lines += ["", f"Expansion: action_series to order {K}, N = {e0['N']} (Fashion-MNIST train), silu",
                  "| W | rank | N_r | time (s) | time / W=1 | peak added (MB) | peak RSS (MB) | max_k abs. diff S_k / max_k abs. S_k |",
                  "|---|---|---|---|---|---|---|---|"]
        t0 = max(r["expansion"]["series_s"] for r in base)
        for w, ranks in results.items():
            for r in ranks:
                e = r["expansion"]
                scale = max(abs(b) for b in e0["S"])  # relative to the largest coefficient (S_1 ≈ 0 for balanced data)
                diff = max(abs(a - b) for a, b in zip(e["S"], e0["S"])) / scale
                lines.append(f"| {w} | {r['rank']} | {e['N_local']} | {e['series_s']:.2f} | {e['series_s'] / t0:.2f} | "
                             f"{e['series_mb']:.0f} | {e['rss_mb']:.0f} | {diff:.1e} |")
        lines.append("S = " + ", ".join(f"{s:.6g}" for s in e0["S"]) + " (W = 1)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 2], help="world sizes to run (default 1 2)")
    ap.add_argument("--only", nargs="+", choices=["fisher", "expansion"], default=["fisher", "expansion"])
    ap.add_argument("--T", type=int, default=1000, help="inputs of F* (C·T = 10·T)")
    ap.add_argument("--width", type=int, default=256, help="hidden width M of the MLP [784, M, M, 10]")
    ap.add_argument("--hidden", type=int, default=100, help="H of the two-layer classifier of the expansion")
    ap.add_argument("--order", type=int, default=8, help="K of the expansion")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads, split over the ranks")
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    ap.add_argument("--data-root", default=None, help="folder with fashion-mnist/ (default: actionlab's search)")
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args(argv)
    results = {w: run_world(w, args) for w in args.worlds}
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"threads {args.threads} split over the ranks; device {args.device}")
    print(table(results, args.only))
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
