"""Fault injection, inputs at the edge (issue 15 items 4 and 8; issue 14 item 8, ``--print-config``).

Every case calls ``actionlab.cli.main`` in-process: a bad input must end in one line
``actionlab CMD: error: …`` and exit status 2 (Ctrl-C: ``interrupted``, 130) before any work — no
traceback, no run folder left holding only a RUNNING marker. The API cases check that a named error
(:class:`actionlab.ActionlabError`) says what to fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import typing

import numpy as np
import pytest
import torch

from actionlab._checks import ActionlabError, ValueCheckError
from actionlab.cli import main
from actionlab.experiments import EXPERIMENTS, load_all, make_config
from actionlab.experiments._registry import Experiment
from actionlab.runs import LOCK, RunFolder, folder_state


def _one_line_error(capsys, name: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"actionlab {name}: error: "), err
    return err[0]


# ---------------------------------------------------------------------------------------------
# the cases of issue 15 item 4, verbatim
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, needle", [
    (["fim-spectrum", "--widths", "0"], "--widths must be >= 1"),
    (["fim-spectrum", "--widths", "-5"], "--widths must be >= 1"),
    (["fim-spectrum", "--T", "-3"], "--T must be >= 1"),
    (["fim-spectrum", "--tolerance", "nan"], "--tolerance must be a finite number"),
    (["early-stop", "--sizes", "-10"], "--sizes must be >="),
    (["lr-bound", "--n-lrs", "0"], "--n-lrs must be >= 1"),
    (["notes-check", "--hidden", "-1"], "--hidden must be >= 1"),
])
def test_issue_cases_are_one_line_errors_before_any_work(argv, needle, capsys, tmp_path):
    out = tmp_path / "never"
    assert main([*argv, "--out", str(out)]) == 2
    assert needle in _one_line_error(capsys, argv[0])
    assert not out.exists()  # checked before anything was written


def _numeric_fields(cls):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        elem = args[0] if typing.get_origin(tp) in (tuple, list) and args else tp
        if typing.get_origin(elem) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            elem = next((a for a in typing.get_args(elem) if a is not type(None)), str)
        if elem in (int, float):
            yield f, elem, typing.get_origin(tp) in (tuple, list)


def _below_min_cases():
    load_all()
    for name, exp in sorted(EXPERIMENTS.items()):
        for f, elem, is_tuple in _numeric_fields(exp.config_cls):
            lo = (f.metadata or {}).get("min")
            if lo is not None:
                bad = lo - 1 if elem is int else (lo if (f.metadata or {}).get("exclusive_min") else lo - 0.5)
                yield pytest.param(name, f.name, str(int(bad) if elem is int else bad), id=f"{name}-{f.name}-below")
            if elem is float:
                yield pytest.param(name, f.name, "nan", id=f"{name}-{f.name}-nan")
                yield pytest.param(name, f.name, "inf", id=f"{name}-{f.name}-inf")


@pytest.mark.parametrize("name, field, value", list(_below_min_cases()))
def test_every_numeric_config_field_is_checked_at_the_edge(name, field, value, capsys, tmp_path):
    """Below its declared minimum, NaN or inf: every numeric field of every experiment, one line, exit 2."""
    out = tmp_path / "never"
    flag = "--" + field.replace("_", "-")
    meta = next(f.metadata for f in dataclasses.fields(EXPERIMENTS[name].config_cls) if f.name == field) or {}
    values = [value] * (meta.get("length") or 1)  # a fixed-length tuple takes that many values
    assert main([name, flag, *values, "--out", str(out)]) == 2
    line = _one_line_error(capsys, name)
    assert flag in line
    assert not out.exists()


def test_every_numeric_field_declares_a_range_or_is_a_free_real():
    """A numeric config field without min/max/choices must be a real number with no natural bound."""
    free = {("expand", "t")}  # points t of the path θ(t) = t·θ: any real t
    load_all()
    missing = []
    for name, exp in sorted(EXPERIMENTS.items()):
        for f, _, _ in _numeric_fields(exp.config_cls):
            m = f.metadata or {}
            if m.get("min") is None and m.get("max") is None and m.get("choices") is None and (name, f.name) not in free:
                missing.append(f"{name}.{f.name}")
    assert missing == []


@pytest.mark.parametrize("out, needle", [
    ("", "--out is empty"),
    ("FILE", "is a file, not a folder"),
    ("FILE/below", "lies below the file"),
    ("/proc/1/cannot-create", "cannot be created"),
])
@pytest.mark.parametrize("command", [["demo", "--quick"], ["study", "--quick", "--only", "demo", "--no-report"]])
def test_bad_out_is_one_line(out, needle, command, capsys, tmp_path):
    f = tmp_path / "FILE"
    f.write_text("precious")
    target = out.replace("FILE", str(f)) if out else out
    assert main([*command, "--out", target]) == 2
    assert needle in _one_line_error(capsys, command[0])
    assert f.read_text() == "precious"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_is_one_line(capsys, tmp_path):  # pragma: no cover - CI runs as a user
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert main(["demo", "--quick", "--out", str(ro / "x")]) == 2
    assert "cannot be created" in _one_line_error(capsys, "demo")


@pytest.mark.parametrize("device, needle", [("tpu", "unknown device 'tpu'"), ("meta", "device 'meta' cannot run"),
                                            ("cuda:99", "cuda")])
def test_bad_device_is_one_line(device, needle, capsys, tmp_path):
    assert main(["demo", "--quick", "--device", device, "--out", str(tmp_path / "d")]) == 2
    assert needle in _one_line_error(capsys, "demo")
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------------
# concurrency, interruption, failure, in-process with a synthetic experiment
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Cfg:
    """Synthetic experiment of the fault suite."""

    size: int = 1


@pytest.fixture
def synthetic(monkeypatch):
    """Register ``fault-test`` (its behaviour set by ``box['fail']``) for the length of one test."""
    box: dict = {"fail": None}

    def run(config, options):
        folder = RunFolder(options, "fault-test", config)
        if box["fail"] is not None:
            raise box["fail"]
        folder.finish({"size": config.size})

    load_all()
    monkeypatch.setitem(EXPERIMENTS, "fault-test", Experiment("fault-test", _Cfg, run, "synthetic"))
    return box


def test_second_command_on_a_folder_in_use_fails_at_once(synthetic, capsys, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = {"pid": os.getppid(), "hostname": socket.gethostname(), "started": "2026-01-01T10:00:00+00:00",
              "proc_start": None, "command": "actionlab fault-test --out busy"}
    (out / LOCK).write_text(json.dumps(holder))
    (out / "RUNNING").write_text("theirs")
    assert main(["fault-test", "--out", str(out)]) == 2
    line = _one_line_error(capsys, "fault-test")
    assert f"is in use by pid {os.getppid()} (started 2026-01-01T10:00:00+00:00)" in line
    assert "wait for it or choose another --out" in line
    assert json.loads((out / LOCK).read_text()) == holder and (out / "RUNNING").read_text() == "theirs"
    assert not (out / "FAILED").exists()  # the holder's folder is not marked failed


def test_ctrl_c_is_interrupted_exit_130_and_a_failed_folder(synthetic, capsys, tmp_path):
    synthetic["fail"] = KeyboardInterrupt()
    out = tmp_path / "k"
    assert main(["fault-test", "--out", str(out)]) == 130
    assert _one_line_error(capsys, "fault-test") == "actionlab fault-test: error: interrupted"
    assert folder_state(out) == "failed" and not (out / "RUNNING").exists() and not (out / LOCK).exists()


def test_os_error_in_a_run_is_one_line_and_marks_failed(synthetic, capsys, tmp_path):
    synthetic["fail"] = PermissionError(13, "Permission denied", "/somewhere/file")
    out = tmp_path / "p"
    assert main(["fault-test", "--out", str(out)]) == 2
    assert "Permission denied: /somewhere/file" in _one_line_error(capsys, "fault-test")
    assert folder_state(out) == "failed" and not (out / LOCK).exists()


def test_a_finished_command_leaves_no_lock(synthetic, capsys, tmp_path):
    out = tmp_path / "ok"
    assert main(["fault-test", "--out", str(out), "--size", "3"]) == 0
    assert folder_state(out) == "finished" and not (out / LOCK).exists()


# ---------------------------------------------------------------------------------------------
# --print-config (issue 14 item 8)
# ---------------------------------------------------------------------------------------------


def _preset_cases():
    load_all()
    for name, exp in sorted(EXPERIMENTS.items()):
        for preset in getattr(exp.config_cls, "PRESETS", {"default": {}}):
            yield pytest.param(name, preset, id=f"{name}-{preset}")


def _plain(obj):
    return json.loads(json.dumps(obj, default=str))


@pytest.mark.parametrize("name, preset", list(_preset_cases()))
def test_print_config_is_the_resolved_config(name, preset, capsys, tmp_path):
    out = tmp_path / "never"
    assert main([name, "--preset", preset, "--print-config", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == _plain(dataclasses.asdict(make_config(EXPERIMENTS[name].config_cls, preset)))
    assert not out.exists()  # nothing ran, nothing was written


def test_print_config_applies_the_flags_and_checks_them(capsys):
    assert main(["fim-spectrum", "--quick", "--widths", "8", "16", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["widths"] == [8, 16]
    assert main(["fim-spectrum", "--quick", "--widths", "0", "--print-config"]) == 2
    assert "--widths" in _one_line_error(capsys, "fim-spectrum")


# ---------------------------------------------------------------------------------------------
# the API side of item 4
# ---------------------------------------------------------------------------------------------


def _named(fn, needle: str):
    with pytest.raises(ActionlabError, match=needle):
        fn()


def test_mlp_widths_must_be_positive_integers():
    from actionlab.models import MLP

    _named(lambda: MLP([4, 2.5, 3]), r"integers .* got 2\.5 at position 1")
    _named(lambda: MLP([4, True, 3]), "integers")
    _named(lambda: MLP("43"), "list of integers")
    _named(lambda: MLP([4, 0, 3]), "≥ 1")
    _named(lambda: MLP([4, 3], sigma_w2=float("nan")), "sigma_w2 must be a finite number")
    assert MLP([4, np.int64(3), 2]).widths == [4, 3, 2]  # numpy integers are integers


def test_labels_list_or_uint8_and_empty_inputs_to_j_tensor():
    from actionlab.expansion import j_contract, j_tensor

    z = torch.randn(4, 3, dtype=torch.float64)
    _named(lambda: j_tensor(z, [0, 1, 0, 1], 2), r"torch.as_tensor\(labels, dtype=torch.long\)")
    _named(lambda: j_tensor(z, torch.tensor([0, 1, 0, 1], dtype=torch.uint8), 2), r"int64 .* labels.long\(\)")
    _named(lambda: j_tensor(torch.randn(0, 3), torch.zeros(0, dtype=torch.long), 2), "empty")
    _named(lambda: j_tensor(torch.randn(0, 3), torch.zeros(0, dtype=torch.long), 2, num_classes=2), "empty")
    _named(lambda: j_tensor(z, torch.tensor([0, 1, 0, 1]), 2, num_classes=2.5), "positive integer")
    U, W = torch.randn(2, 5, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    _named(lambda: j_contract(z, [0, 1, 0, 1], U, W, 1), "torch.Tensor")
    _named(lambda: j_contract(torch.randn(0, 3, dtype=torch.float64), torch.zeros(0, dtype=torch.long), U, W, 1),
           "empty")


def test_check_labels_direct():
    from actionlab._checks import check_labels

    assert check_labels(torch.tensor([0, 2]), None).tolist() == [0, 2]
    _named(lambda: check_labels(torch.tensor([-1, 0]), None), "≥ 0")
    _named(lambda: check_labels(torch.tensor([0, 1], dtype=torch.int32), 2), "int64")


def test_run_options_device_and_out_api():
    from actionlab.config import check_out_dir, resolve_device

    _named(lambda: resolve_device("tpu"), "unknown device")
    _named(lambda: resolve_device("meta"), "cannot run")
    _named(lambda: check_out_dir(""), "empty")
    assert resolve_device("cpu").type == "cpu"


# --- API inputs of the Fisher modules and RNGD (issue 15 item 4) -----------------------------------

_OWNER = "issue 15 item 4, not yet fixed in {} (owned by another engineer this wave)"


def test_meanfield_negative_alphas_and_non_integer_M():
    from actionlab.fisher import meanfield as mf

    with pytest.raises(ValueCheckError, match="alpha"):
        mf.Architecture.uniform("tanh", 2, 8, alphas=[1.0, -0.5])
    with pytest.raises(ValueCheckError, match="M"):
        mf.Architecture.uniform("tanh", 2, 2.5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_meanfield_non_finite_q_hat0(bad):
    from actionlab.fisher import meanfield as mf

    arch = mf.Architecture.uniform("tanh", 2, 8)
    with pytest.raises(ValueCheckError, match="q"):
        mf.predict(arch, q_hat0=bad)


def test_meanfield_non_finite_sigma_w2():
    from actionlab.fisher import meanfield as mf

    for bad in (float("nan"), float("inf")):
        _named(lambda: mf.predict(mf.Architecture.uniform("tanh", 2, 8, sigma_w2=bad)), "sigma_w2")


def test_fisher_statistics_nan_weights():
    from actionlab.fisher.empirical import fisher_statistics
    from actionlab.models import MLP

    m = MLP([4, 8, 3])
    with torch.no_grad():
        next(m.parameters())[0, 0] = float("nan")
    with pytest.raises(ValueCheckError, match="non-finite|NaN"):
        fisher_statistics(m, torch.randn(5, 4))


def test_fisher_statistics_empty_and_nan_inputs():
    from actionlab.fisher.empirical import fisher_statistics
    from actionlab.models import MLP

    _named(lambda: fisher_statistics(MLP([4, 8, 3]), torch.randn(0, 4)), "leading sample dimension")
    _named(lambda: fisher_statistics(MLP([4, 8, 3]), torch.full((2, 4), float("nan"))), "non-finite")


def test_rngd_lr_must_be_a_number():
    from actionlab.models import MLP
    from actionlab.optim.rngd import RNGD

    with pytest.raises(ValueCheckError, match="lr"):
        RNGD(MLP([4, 8, 3]).parameters(), lr="a")


@pytest.mark.parametrize("kw, needle", [({"seed": "abc"}, "seed"),
                                        pytest.param({"device": "cuda"}, "CUDA", marks=pytest.mark.skipif(
                                            torch.cuda.is_available(), reason="a GPU is visible"))])
def test_data_load_bad_seed_or_device(kw, needle):
    from actionlab import data

    with pytest.raises(ValueCheckError, match=needle):
        data.load("digits", "train", **kw)
