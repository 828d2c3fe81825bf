"""Tests of the ``actionlab`` command line: help, subcommands, common options, errors, the demo."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actionlab import ValueCheckError
from actionlab.cli import build_parser, main
from actionlab.experiments import EXPERIMENTS, Experiment, load_all

COMMON = ("--out", "--seed", "--device", "--dtype")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the actionlab parser has no subcommands")


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    subs = _subparsers(build_parser())
    assert "demo" in subs and "data" in subs
    for name in subs:
        assert name in out, f"{name} missing from actionlab --help"


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: actionlab" in capsys.readouterr().out


def test_every_registered_experiment_has_a_subparser_with_its_config_flags():
    subs = _subparsers(build_parser())
    experiments = load_all()
    assert "demo" in experiments
    for name, exp in experiments.items():
        assert name in subs, f"experiment {name} has no subcommand"
        flags = {s for a in subs[name]._actions for s in a.option_strings}
        assert "--preset" in flags
        import dataclasses

        for f in dataclasses.fields(exp.config_cls):
            if not f.name.startswith("_"):
                assert "--" + f.name.replace("_", "-") in flags, f"{name}: no flag for config field {f.name}"


def test_common_options_on_every_command():
    for name, sub in _subparsers(build_parser()).items():
        flags = {s for a in sub._actions for s in a.option_strings}
        missing = [o for o in COMMON if o not in flags]
        assert not missing, f"actionlab {name} lacks {missing}"
        positional = {"data": ["digits"], "report": ["runs/study"]}.get(name, [])
        args = sub.parse_args(["--seed", "3", "--dtype", "float64", "--device", "cpu", "--out", "x"] + positional)
        assert args.seed == 3 and args.dtype == "float64" and args.device == "cpu" and Path(args.out) == Path("x")


@pytest.mark.parametrize("argv,needle", [
    (["no-such-command"], "invalid choice"),
    (["demo", "--no-such-option"], "unrecognized arguments"),
    (["demo", "--epochs", "many"], "invalid int value"),
    (["demo", "--dtype", "float16"], "invalid choice"),
])
def test_bad_command_line_is_a_clean_usage_error(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_actionlab_error_in_a_handler_prints_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    from dataclasses import dataclass

    @dataclass
    class BoomConfig:
        size: int = 1

    def boom(config, options):
        raise ValueCheckError(f"size must be even, got {config.size}; pass --size 2")

    load_all()
    monkeypatch.setitem(EXPERIMENTS, "boom-test", Experiment("boom-test", BoomConfig, boom, "raises"))
    rc = main(["boom-test", "--size", "3", "--out", str(tmp_path / "boom")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["actionlab boom-test: error: size must be even, got 3; pass --size 2"]


def test_user_error_in_a_real_process_has_no_traceback(tmp_path):
    # an invalid hidden width reaches TwoLayer's checks: one line on stderr, exit status 2
    proc = subprocess.run(
        [sys.executable, "-m", "actionlab.cli", "demo", "--quick", "--hidden", "0", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("actionlab demo: error:") and "positive" in lines[0]


@pytest.mark.slow
def test_demo_quick_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "run folder" in printed and "S(θ = 0)" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == "demo" and res["config"]["epochs"] == 8 and res["config"]["hidden"] == 32
    r = res["results"]
    # S(0) = ln M exactly (float32 rounding), eq. (4) of 001
    assert r["M"] == 10 and r["S_zero"] == pytest.approx(math.log(10), rel=1e-6)
    assert res["claims"][0]["verdict"] == "holds"
    # training works: the action falls well below ln M and the test accuracy is far above chance
    assert r["S_final_train"] < 0.5 * r["S_init_train"]
    assert r["S_final_test"] < r["S_init_test"]
    assert r["final_test_accuracy"] > 0.85
    h = r["history"]
    assert h["epoch"][-1] == pytest.approx(8) and len(h["train_loss"]) == 9
    assert h["train_loss"][-1] == pytest.approx(r["S_final_train"], rel=1e-4)
    for fig in ("loss.png", "accuracy.png"):
        assert fig in res["figures"]
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.md").exists() and not (out / "RUNNING").exists()
