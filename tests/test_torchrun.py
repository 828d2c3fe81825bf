"""The CLI under torchrun (issue 16 items 5-6): real process groups (gloo on 127.0.0.1, a free port,
one thread per rank), results.json equal to the one-process run's, rank 0 alone writing."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from actionlab.cli import main
from actionlab.config import RunOptions
from actionlab.runs import RunFolder

RTOL = 1e-10  # issue 16 item 5: float64 results of N ranks equal one process's to 1e-10 relative


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(nproc: int, args: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "actionlab", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _mismatches(one, many, path: str = "", scale: float = 0.0) -> list[str]:
    """Paths where two JSON trees differ: numbers beyond RTOL relative, anything else not equal.

    A number inside a list is compared relative to the largest magnitude of that list (``scale``), so
    an entry that is a round-off zero (S_1 at θ = 0 on balanced classes, ~1e-17) is judged against the
    size of its siblings, not against itself.
    """
    if isinstance(one, dict):
        if set(one) != set(many):
            return [f"{path}: keys {sorted(set(one) ^ set(many))} differ"]
        return [m for k in one for m in _mismatches(one[k], many[k], f"{path}/{k}")]
    if isinstance(one, list):
        if not isinstance(many, list) or len(one) != len(many):
            return [f"{path}: lengths differ"]
        nums = [abs(v) for v in one if isinstance(v, float)]
        s = max(nums, default=0.0)
        return [m for i, (a, b) in enumerate(zip(one, many)) for m in _mismatches(a, b, f"{path}[{i}]", s)]
    if isinstance(one, float) and isinstance(many, (float, int)):
        if abs(one - many) > RTOL * max(abs(one), scale):
            return [f"{path}: {one!r} vs {many!r}"]
        return []
    return [] if one == many else [f"{path}: {one!r} vs {many!r}"]


def test_mismatches_sees_a_difference_beyond_rtol():
    assert _mismatches({"S": [2.0, 1e-17]}, {"S": [2.0, 3e-17]}) == []  # round-off zero beside 2.0
    assert _mismatches({"S": [2.0, 1.0]}, {"S": [2.0, 1.0 + 1e-8]})
    assert _mismatches({"x": 1.0}, {"x": 1.0 + 1e-9})
    assert _mismatches({"n": 3}, {"n": 4})


@pytest.mark.slow
def test_expand_quick_under_torchrun_equals_one_process(tmp_path: Path):
    """``torchrun --nproc_per_node=2 -m actionlab expand --quick --dtype float64`` against one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["expand", "--quick", "--dtype", "float64", "--out", str(one)]) == 0
    proc = _torchrun(2, ["expand", "--quick", "--dtype", "float64", "--out", str(two)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # rank 0 alone prints the summary
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert a["results"]["N"] == b["results"]["N"] > 2
    assert _mismatches(a["results"], b["results"]) == []
    assert b["claims"] == a["claims"]
    prov = json.loads((two / "provenance.json").read_text())
    assert prov["world_size"] == 2 and prov["backend"] == "gloo"
    assert prov["command"].startswith("torchrun --nproc_per_node=2 -m actionlab expand")
    assert a["provenance"]["world_size"] == 1 and a["provenance"]["backend"] is None
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # no LOCK, no RUNNING


def test_a_check_failing_on_rank0_fails_every_rank(tmp_path: Path):
    """--out is a file: rank 0's check fails, every rank exits with the error (none waits in a collective)."""
    bad = tmp_path / "a-file"
    bad.write_text("x")
    proc = _torchrun(2, ["expand", "--quick", "--order", "1", "--out", str(bad)], timeout=90)
    assert proc.returncode != 0
    assert "is a file, not a folder" in proc.stderr
    assert "(rank 1): error: rank 0:" in proc.stderr  # raised on rank 1 too, naming rank 0's failure


def test_run_folder_on_another_rank_writes_nothing(tmp_path: Path, monkeypatch):
    """A RunFolder on rank 1 of a group neither creates, locks nor writes its folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actionlab import distributed

    monkeypatch.setattr(distributed, "describe", lambda group=None: {"world_size": 2, "rank": 1, "backend": "gloo"})
    out = tmp_path / "never"
    rf = RunFolder(RunOptions(out=out, group=object()), "demo")
    assert not rf.writer
    fig = plt.figure()
    assert rf.save_figure(fig, "loss") == out / "loss.png"
    assert not plt.fignum_exists(fig.number)
    assert rf.write_text("notes.txt", "x") == out / "notes.txt"
    assert rf.finish({"a": 1.0}, "summary") == out / "results.json"
    assert not out.exists()


def test_run_folder_records_one_process(tmp_path: Path):
    rf = RunFolder(RunOptions(out=tmp_path / "r"), "demo")
    rf.finish({"a": 1.0})
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert (prov["world_size"], prov["backend"]) == (1, None)


def test_commands_that_are_not_experiments_refuse_a_world_above_one(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "rep")]) == 2
    assert "does not run under torchrun" in capsys.readouterr().err


def test_run_options_group_stays_out_of_repr_and_comparison():
    a, b = RunOptions(seed=1), RunOptions(seed=1, group=object())
    assert a == b and "group" not in repr(b)
    assert (a.world_size, a.backend, a.is_rank0) == (1, None, True)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo on 127.0.0.1")
def test_fim_spectrum_tiny_under_torchrun_equals_one_process(tmp_path: Path):
    """fim-spectrum with tiny widths on 2 ranks: m_λ, s_λ, λ_max (and the rest) equal one process's."""
    flags = ["fim-spectrum", "--quick", "--dtype", "float64", "--activations", "tanh", "--widths", "8", "12",
             "--seeds", "2", "--T", "7", "--T-grid", "2", "5", "--T-width", "8", "--C-grid", "1", "3", "--C-width", "8",
             "--C-T", "3", "--no-quick-check"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*flags, "--out", str(one)]) == 0
    proc = _torchrun(2, [*flags, "--out", str(two)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((one / "results.json").read_text())["results"]
    b = json.loads((two / "results.json").read_text())["results"]
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert _mismatches(a, b) == []
    prov = json.loads((two / "provenance.json").read_text())
    assert (prov["world_size"], prov["backend"]) == (2, "gloo")


_TIMINGS = ("epoch_time_s", "wall_time_s", "speed")  # wall-clock measurements: not expected to agree


def _without_timings(tree):
    if isinstance(tree, dict):
        return {k: _without_timings(v) for k, v in tree.items() if k not in _TIMINGS}
    if isinstance(tree, list):
        return [_without_timings(v) for v in tree]
    return tree


def test_without_timings_drops_only_the_clock():
    tree = {"runs": [{"epoch_time_s": [0.1], "val_accuracy": [0.5]}], "speed": {"r": 1.0}, "wall_time_s": 3.0, "n": 2}
    assert _without_timings(tree) == {"runs": [{"val_accuracy": [0.5]}], "n": 2}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo on 127.0.0.1")
def test_rngd_mnist_tiny_under_torchrun_equals_one_process(tmp_path: Path):
    """rngd-mnist (SGD, Adam, RNGD) on 2 ranks under DDP, batches of 25 split 13 + 12: every curve, accuracy,
    chosen η and AUC comparison equals one process's (timings and the claims built on them excepted)."""
    flags = ["rngd-mnist", "--dtype", "float64", "--architectures", "784-16-12-10", "--optimizers", "sgd", "adam", "rngd",
             "--lrs", "0.05", "--epochs", "1", "--seeds", "2", "--selection-seeds", "1", "--selection-epochs", "1",
             "--batch-size", "25", "--train-size", "200", "--validation-size", "200", "--test-size", "200",
             "--rngd-inverse-every", "3", "--workers", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*flags, "--out", str(one)]) == 0
    proc = _torchrun(2, [*flags, "--out", str(two)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # rank 0 alone prints the summary
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert len(a["results"]["runs"]) == 6 and len(a["results"]["runs"][0]["train_loss"]) == 2
    assert _mismatches(_without_timings(a["results"]), _without_timings(b["results"])) == []
    untimed = [(c["id"], c["measured"], c["verdict"]) for c in a["claims"] if "speed" not in c["id"]]
    assert untimed == [(c["id"], c["measured"], c["verdict"]) for c in b["claims"] if "speed" not in c["id"]]
    prov = json.loads((two / "provenance.json").read_text())
    assert (prov["world_size"], prov["backend"]) == (2, "gloo")
    assert prov["command"].startswith("torchrun --nproc_per_node=2 -m actionlab rngd-mnist")
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_rngd_mnist_refuses_what_a_group_cannot_run_exactly(monkeypatch):
    """Under a group of 2: a batch smaller than the world, and BatchNorm (per-rank statistics), fail with the fix."""
    from actionlab import distributed
    from actionlab._checks import ValueCheckError
    from actionlab.experiments._registry import make_config
    from actionlab.experiments.rngd_mnist import RngdMnistConfig, _check_group_config

    monkeypatch.setattr(distributed, "world", lambda group=None: (0, 2))
    cfg = make_config(RngdMnistConfig, "quick")
    _check_group_config(cfg, object())  # the quick preset runs on 2 ranks
    _check_group_config(dataclasses.replace(cfg, batch_size=1), None)  # one process: anything goes
    with pytest.raises(ValueCheckError, match="below the world size 2"):
        _check_group_config(dataclasses.replace(cfg, batch_size=1), object())
    with pytest.raises(ValueCheckError, match="batch normalisation"):
        _check_group_config(dataclasses.replace(cfg, architectures=("784-80-10+bn",)), object())
