"""benchmarks/run_gpu.py: its dry run lists one command per cell, every experiment cell is a valid
configuration of its experiment, and a run times and records each command (checked on the CPU)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "run_gpu.py"


@pytest.fixture(scope="module")
def run_gpu():
    spec = importlib.util.spec_from_file_location("run_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["run_gpu"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("run_gpu", None)


def test_dry_run_lists_a_command_per_cell(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for name in ("demo", "theta-star", "embedding-dim", "scaling", "early-stop", "fim-spectrum", "lr-bound", "rngd-mnist"):
        cmd = [ln for ln in lines if f" -m actionlab {name} --preset full" in ln]
        assert len(cmd) == 1, f"no single command for {name}: {lines}"
        assert "--device cuda" in cmd[0] and f"--out {tmp_path / name}" in cmd[0]
    for bench in ("bench_expansion", "bench_fisher", "bench_rngd"):
        assert any(ln.startswith(f"# {bench}:") for ln in lines)
    assert not list(tmp_path.iterdir()), "a dry run must write nothing"


def test_no_cuda_means_dry_run_and_exit_zero(run_gpu, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run the cells")
    assert run_gpu.main(["--only", "demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "-m actionlab demo --preset full" in out and "no CUDA device" in out and "nothing was run" in out
    assert not (tmp_path / "gpu-times.json").exists()


def test_unknown_cell_is_refused(run_gpu, tmp_path, capsys):
    assert run_gpu.main(["--dry-run", "--only", "nonesuch", "--out", str(tmp_path)]) == 2
    assert "unknown cell(s) nonesuch" in capsys.readouterr().err


def test_benchmarks_get_device_only_where_they_accept_it(run_gpu, tmp_path):
    for cell in run_gpu.cells("cuda:1", tmp_path):
        if cell.kind != "benchmark":
            continue
        script = run_gpu.BENCH / f"{cell.name}.py"
        if run_gpu.accepts_device(script):
            assert cell.argv[-2:] == ("--device", "cuda:1") and str(script) in cell.argv
        else:
            assert cell.argv == () and "no --device option" in cell.note


def test_every_experiment_cell_is_a_valid_full_configuration(run_gpu, tmp_path):
    """Each cell's flags parse and pass the experiment's own checks (--print-config: nothing runs),
    restrict the full preset as the note says, and a fresh θ* cache is given exactly where one exists."""
    from actionlab.cli import main
    from actionlab.experiments import load_all

    registry = load_all()
    for cell in run_gpu.cells("cuda", tmp_path):
        if cell.kind != "experiment":
            continue
        argv = list(cell.argv[cell.argv.index("actionlab") + 1:])
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main([*argv, "--print-config"])
        assert rc in (0, None), f"{cell.name}: {argv} refused"
        config = json.loads(buf.getvalue())
        fields = {f.name for f in dataclasses.fields(registry[cell.name].config_cls)}
        assert ("cache_dir" in fields) == (cell.name in run_gpu.CACHED), cell.name
        if cell.name in run_gpu.CACHED:
            assert config["cache_dir"] == str(tmp_path / "cache" / cell.name)
        flags = dict(zip(argv[::2], argv[1::2]))
        if "--seeds" in flags:
            assert config["seeds"] == int(flags["--seeds"])
        for key in ("--dims", "--widths", "--sizes"):
            if key in flags:
                assert config[key[2:]] == [int(flags[key])]


def test_run_cell_times_and_records(run_gpu, tmp_path):
    ok = run_gpu.Cell("ok", "benchmark", (sys.executable, "-c", "import time; time.sleep(0.2); print('hi')"), "sleeps")
    bad = run_gpu.Cell("bad", "benchmark", (sys.executable, "-c", "raise SystemExit(3)"), "fails")
    slow = run_gpu.Cell("slow", "benchmark", (sys.executable, "-c", "import time; time.sleep(30)"), "hangs")
    none = run_gpu.Cell("none", "benchmark", (), "not run: no --device option")
    rows = [run_gpu.run_cell(c, tmp_path / "logs", timeout=5) for c in (ok, bad, slow, none)]
    assert rows[0]["status"] == "ok" and rows[0]["wall_s"] >= 0.2
    assert (tmp_path / "logs" / "ok.log").read_text().strip() == "hi"
    assert rows[1]["status"].startswith("failed (exit 3")
    assert rows[2]["status"] == "timed out after 5 s" and 5 <= rows[2]["wall_s"] < 25
    assert rows[3]["status"] == "not run" and rows[3]["wall_s"] is None
    text = run_gpu.table(rows, "cuda")
    assert text.splitlines()[0] == "| cell | what | wall time on cuda | status |"
    assert "| `none` | not run: no --device option | — | not run |" in text
    assert len(text.splitlines()) == 2 + len(rows)
