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
        [sys.executable, "-m", "actionlab", "demo", "--quick", "--hidden", "0", "--out", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("actionlab demo: error:") and "positive" in lines[0]
    assert not (tmp_path / "d").exists()  # the config is checked before any folder is made


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


def test_help_needs_neither_torch_nor_the_experiments():
    """`python -m actionlab --help` answers from the static index: torch and no experiment module are imported."""
    code = ("import sys, contextlib, io\n"
            "from actionlab.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0\n"
            "assert 'notes-check' in buf.getvalue() and 'demo' in buf.getvalue()\n"
            "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('actionlab.experiments'))\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    proc = subprocess.run([sys.executable, "-m", "actionlab", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: actionlab" in proc.stdout and "rngd-mnist" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "actionlab", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("actionlab ")


def test_the_static_index_matches_the_registry_and_the_commands():
    """COMMANDS (what `actionlab --help` shows without imports) lists every registered experiment, with its module
    and its help, in study order, and every hand-written command with the help of its parser."""
    from actionlab.cli import COMMANDS

    experiments = sorted(load_all().values(), key=lambda e: (e.order, e.name))
    indexed = [n for n, c in COMMANDS.items() if c.experiment]
    assert indexed == [e.name for e in experiments], "actionlab.cli.COMMANDS is stale: list every experiment, in order"
    for e in experiments:
        assert COMMANDS[e.name].module == e.run.__module__, e.name
        assert COMMANDS[e.name].help == e.help, f"COMMANDS[{e.name!r}].help differs from the registered help"
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert list(sub.choices) == list(COMMANDS)
    for name, cmd in COMMANDS.items():
        assert helps[name] == cmd.help, name


def test_every_experiment_flag_has_a_help_string():
    """Every field of every registered experiment's config declares its help (actionlab.experiments.param)."""
    import dataclasses

    missing = [f"{name}.{f.name}" for name, exp in sorted(load_all().items())
               for f in dataclasses.fields(exp.config_cls)
               if not f.name.startswith("_") and not str((f.metadata or {}).get("help", "")).strip()]
    assert not missing, f"config fields without a help text (declare them with param(default, help)): {missing}"


def test_experiment_help_shows_the_default_and_the_range(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--hidden HIDDEN hidden width H of the TwoLayer (default: 64; >= 1)" in out
    assert "--lr LR learning rate η (default: 0.003; > 0)" in out


def _hanging_experiment(fail):
    from dataclasses import dataclass

    from actionlab.runs import RunFolder

    @dataclass
    class HangConfig:
        size: int = 1

    def run(config, options):
        RunFolder(options, "hang-test", config)
        raise fail

    return Experiment("hang-test", HangConfig, run, "opens its run folder, then fails")


@pytest.mark.parametrize("fail,status,line", [
    (KeyboardInterrupt(), 130, "actionlab hang-test: error: interrupted"),
    (ValueCheckError("size too small; pass --size 2"), 2, "actionlab hang-test: error: size too small; pass --size 2"),
])
def test_a_failed_command_marks_its_run_folder_failed(fail, status, line, monkeypatch, capsys, tmp_path):
    from actionlab.runs import folder_state

    load_all()
    monkeypatch.setitem(EXPERIMENTS, "hang-test", _hanging_experiment(fail))
    out = tmp_path / "h"
    assert main(["hang-test", "--out", str(out)]) == status
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert folder_state(out) == "failed" and not (out / "RUNNING").exists()
    text = (out / "FAILED").read_text()
    assert text.startswith(f"actionlab hang-test --out {out}\n")
    assert ("interrupted" in text) if status == 130 else ("size too small" in text)


def test_a_bug_in_an_experiment_is_a_traceback_and_a_failed_folder(monkeypatch, tmp_path):
    load_all()
    monkeypatch.setitem(EXPERIMENTS, "hang-test", _hanging_experiment(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):
        main(["hang-test", "--out", str(tmp_path / "b")])
    assert "ZeroDivisionError: a bug" in (tmp_path / "b" / "FAILED").read_text()


def test_provenance_records_the_command_a_user_reruns(tmp_path, monkeypatch):
    """The run folder records `actionlab NAME ARGS` (with the --out it wrote to), not sys.argv."""
    from dataclasses import dataclass

    from actionlab.runs import RunFolder

    @dataclass
    class EchoConfig:
        size: int = 1

    def run(config, options):
        RunFolder(options, "echo-test", config).finish({"size": config.size})

    load_all()
    monkeypatch.setitem(EXPERIMENTS, "echo-test", Experiment("echo-test", EchoConfig, run, "writes a run folder"))
    monkeypatch.setattr(sys, "argv", ["/somewhere/cli.py", "unrelated"])
    monkeypatch.chdir(tmp_path)
    assert main(["echo-test", "--size", "3", "--seed", "4"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["command"] == f"actionlab echo-test --size 3 --seed 4 --out {Path('runs') / folder.name}"
    assert prov["seed"] == 4 and prov["preset"] == "default" and prov["dtype"] == "float32"
