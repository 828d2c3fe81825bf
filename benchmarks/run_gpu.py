"""Run the full presets' largest cells and the three benchmarks on a GPU, in one go, and print their wall times.

Each *cell* is one command, run in its own process, one after the other:

* the experiments, ``actionlab NAME --preset full`` restricted by flags to their largest cell (the
  largest width / embedding dimension / data set, the fewest seeds the experiment accepts), with
  ``--device cuda`` and a fresh θ* cache where the experiment keeps one (so that θ* is trained, not read);
* the benchmarks ``bench_expansion.py``, ``bench_fisher.py`` and ``bench_rngd.py`` with ``--device cuda``
  where the script has that option (a script without it is listed, not run).

Every command's output goes to ``OUT/logs/<cell>.log``, the experiments' run folders to ``OUT/<name>/``;
at the end a Markdown table (cell, wall time, status) is printed and written with the GPU's name, torch's
version and the load average to ``OUT/gpu-times.json``. The wall times are what the README's table
"Preset wall times" needs in its GPU column.

Usage::

    python benchmarks/run_gpu.py --dry-run              # print the commands, run nothing
    python benchmarks/run_gpu.py                        # every cell on cuda (hours on one GPU: see --only)
    python benchmarks/run_gpu.py --only scaling bench_rngd --timeout 1800
    python benchmarks/run_gpu.py --device cpu --only demo   # the same cells on the CPU, for comparison

On a machine without CUDA (and ``--device cuda``) it prints the commands, says that nothing was run, and
exits with status 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@dataclass(frozen=True)
class Cell:
    """One command of the run: an experiment's largest cell or a benchmark."""

    name: str
    kind: str  # "experiment" | "benchmark"
    argv: tuple[str, ...]
    note: str


#: (experiment, flags after ``--preset full``, what the cell is); the flags restrict the full preset to
#: its largest cell — values below an experiment's minimum (e.g. seeds ≥ 2) are refused by its config
EXPERIMENT_CELLS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("demo", (), "the whole full preset (H = 256, 100 epochs): a first check that CUDA works"),
    ("theta-star", ("--seeds", "1"), "one θ* of the full preset: H = 4096, E = 1024, 60 epochs"),
    ("embedding-dim", ("--dims", "1024", "--seeds", "1", "--embeddings", "learned"),
     "the largest E = 1024 at H = 4096, learned embedding, one seed"),
    ("scaling", ("--dims", "1024", "--seeds", "1"), "E = 1024, the ten widths 16 … 4096, one seed"),
    ("early-stop", ("--sizes", "30000", "--seeds", "2"),
     "the largest training set N = 30,000, two seeds (the minimum)"),
    ("fim-spectrum", ("--widths", "4000", "--seeds", "1"), "the largest width M = 4000, one seed"),
    ("lr-bound", ("--datasets", "cifar10", "--widths", "1600", "--seeds", "1"),
     "CIFAR-10 at the largest width 1600, one seed"),
    ("rngd-mnist", ("--architectures", "784-100-100-100-10+bn", "--seeds", "2", "--selection-seeds", "1"),
     "the widest network, two reported seeds (the minimum), one selection seed"),
)

#: experiments with a θ* / embedding cache (``--cache-dir``): each cell gets a fresh one under OUT/cache/
CACHED = frozenset({"theta-star", "embedding-dim", "early-stop"})

#: (script, flags, how it writes its JSON, what it measures)
BENCHMARK_CELLS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("bench_expansion.py", ("--no-jet",), "--out", "S_0..S_K, N = 10,000, H = 2048, K = 2…8 (no JAX anchor on a GPU)"),
    ("bench_fisher.py", (), "--json", "dual F*, Lanczos, dense FIM of tanh [M, M, M, 10], M = 500, 2000, 2300"),
    ("bench_rngd.py", ("--steps", "1000"), "--json", "time per step of RNGD, rngd-fast, K-FAC against Adam"),
)


def accepts_device(script: Path) -> bool:
    """Whether a benchmark script has a ``--device`` option (read from its source; nothing is imported)."""
    return '"--device"' in script.read_text(encoding="utf-8")


def cells(device: str, out: Path, python: str = sys.executable) -> list[Cell]:
    """Every command of the run, in order: the experiments' largest cells, then the benchmarks."""
    rows = []
    for name, flags, note in EXPERIMENT_CELLS:
        argv = [python, "-m", "actionlab", name, "--preset", "full", *flags,
                "--device", device, "--out", str(out / name)]
        if name in CACHED:
            argv += ["--cache-dir", str(out / "cache" / name)]
        rows.append(Cell(name, "experiment", tuple(argv), note))
    for script, flags, json_flag, note in BENCHMARK_CELLS:
        path = BENCH / script
        argv = [python, str(path), *flags, json_flag, str(out / (path.stem + ".json"))]
        if accepts_device(path):
            argv += ["--device", device]
        else:
            argv = []
            note = f"not run: {script} has no --device option yet ({note})"
        rows.append(Cell(path.stem, "benchmark", tuple(argv), note))
    return rows


def run_cell(cell: Cell, logs: Path, timeout: float) -> dict:
    """Run one cell (its output to logs/<name>.log); its wall time and status."""
    row = {"cell": cell.name, "kind": cell.kind, "note": cell.note, "command": shlex.join(cell.argv)}
    if not cell.argv:
        return {**row, "status": "not run", "wall_s": None}
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{cell.name}.log"
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        try:
            rc = subprocess.run(cell.argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc}, see {log})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    return {**row, "status": status, "wall_s": round(time.perf_counter() - t0, 1), "log": str(log)}


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(seconds, 60)
    return f"{int(m)} min {s:.0f} s" if m else f"{s:.1f} s"


def table(rows: list[dict], device: str) -> str:
    """The Markdown table of the wall times."""
    lines = [f"| cell | what | wall time on {device} | status |", "| --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['cell']}` | {r['note']} | {_format_time(r.get('wall_s'))} | {r['status']} |")
    return "\n".join(lines)


def _machine(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "device": device, "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _parse(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="print the commands and run nothing")
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N (default cuda); cpu runs the same cells on the CPU")
    ap.add_argument("--out", type=Path, default=None, help="folder of the run folders, logs and gpu-times.json "
                                                           "(default runs/gpu-<UTC time>)")
    ap.add_argument("--only", nargs="+", default=None, metavar="CELL", help="run only these cells (names as listed)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per command before it is stopped (default 3600)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or ROOT / "runs" / f"gpu-{stamp}").resolve()
    todo = cells(args.device, out)
    if args.only:
        unknown = sorted(set(args.only) - {c.name for c in todo})
        if unknown:
            print(f"run_gpu.py: error: unknown cell(s) {', '.join(unknown)}; choose from "
                  f"{', '.join(c.name for c in todo)}", file=sys.stderr)
            return 2
        todo = [c for c in todo if c.name in args.only]
    for c in todo:
        print(f"# {c.name}: {c.note}")
        if c.argv:
            print(shlex.join(c.argv))
    if args.dry_run:
        return 0
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"run_gpu.py: no CUDA device on this machine (torch {torch.__version__}: torch.cuda.is_available() "
              f"is False); nothing was run. Run this script where a GPU is, or pass --device cpu.")
        return 0
    rows = []
    for i, c in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {c.name} …", flush=True)
        rows.append(run_cell(c, out / "logs", args.timeout))
        print(f"[{i}/{len(todo)}] {c.name}: {rows[-1]['status']} in {_format_time(rows[-1]['wall_s'])}", flush=True)
    text = table(rows, args.device)
    print()
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-times.json").write_text(json.dumps({"machine": _machine(args.device), "rows": rows, "table": text},
                                                   indent=2), encoding="utf-8")
    print(f"wrote {out / 'gpu-times.json'}")
    return 0 if all(r["status"] in ("ok", "not run") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
