"""Run folders, shared options and the experiment registry."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from actionlab._checks import ValueCheckError, check_labels, check_matrix
from actionlab.config import RunOptions, resolve_device, resolve_dtype, seed_everything
from actionlab.experiments import EXPERIMENTS, load_all, make_config
from actionlab.runs import Claim, RunFolder, claims_table_md, to_jsonable


@dataclass
class _Result:
    value: float
    curve: torch.Tensor


def test_run_folder_writes_everything(tmp_path):
    run = RunFolder(tmp_path / "r", experiment="unit", config={"a": 1}, seed=3, data={"name": "digits"})
    assert (tmp_path / "r" / "RUNNING").exists()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.save_figure(fig, "curve")
    run.add_claim(Claim("001", "S_0 = ln M", "ln 10", math.log(10), "holds", "exact"))
    run.finish(_Result(1.5, torch.arange(3.0)), summary="# hi\n")
    payload = json.loads((tmp_path / "r" / "results.json").read_text())
    assert payload["experiment"] == "unit" and payload["results"] == {"value": 1.5, "curve": [0.0, 1.0, 2.0]}
    assert payload["figures"] == ["curve.png"] and (tmp_path / "r" / "curve.png").stat().st_size > 0
    assert payload["claims"][0]["verdict"] == "holds"
    assert payload["provenance"]["seed"] == 3 and "torch" in payload["provenance"]["versions"]
    assert not (tmp_path / "r" / "RUNNING").exists()
    assert (tmp_path / "r" / "summary.md").read_text() == "# hi\n"
    assert "S_0 = ln M" in claims_table_md(run.claims)
    table = claims_table_md([Claim("001", "a | b", "x", {"share": 0.99999555, "low95": 0.5, "per": ["U·W"]},
                                   "holds", "d", strength="indicative")])
    # readable text, not a JSON string: 6 significant digits, unicode kept, pipes escaped, strength shown
    assert "share: 0.999996; low95: 0.5; per: [U·W]" in table and "\\u00b7" not in table and '{"' not in table
    assert "a \\| b" in table and table.rstrip().endswith("| **holds** | indicative |")


def test_provenance_records_the_code_that_ran_and_the_machine_load(tmp_path, monkeypatch):
    """The commit is the one checked out when the run started (the checkout may move on while it runs);
    CPU seconds and the load average at start and end stand beside the wall time."""
    from actionlab import runs

    monkeypatch.setattr(runs, "_git_commit", lambda: "a" * 40)
    monkeypatch.setattr(runs, "_git_dirty", lambda: True)
    run = RunFolder(tmp_path / "r", experiment="unit", config={"a": 1})
    monkeypatch.setattr(runs, "_git_commit", lambda: "b" * 40)  # a commit lands during the run
    sum(i * i for i in range(200_000))  # some CPU work
    run.finish(_Result(1.0, torch.zeros(1)))
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["git_commit"] == "a" * 40 and prov["git_dirty"] is True
    assert prov["started"] <= prov["date"]
    assert 0.0 < prov["cpu_time_s"] and prov["wall_time_s"] > 0.0
    for key in ("load_average_start", "load_average_end"):
        assert len(prov[key]) == 3 and all(x >= 0.0 for x in prov[key])


def test_claim_verdicts_checked():
    with pytest.raises(ValueError, match="verdict"):
        Claim("001", "x", verdict="maybe")


def test_to_jsonable_handles_non_finite_and_numpy():
    out = to_jsonable({"a": np.float32(2.5), "b": float("nan"), "c": np.arange(2), "d": torch.tensor([float("inf")])})
    assert out == {"a": 2.5, "b": "nan", "c": [0, 1], "d": ["inf"]}
    json.dumps(out, allow_nan=False)


def test_options_and_seeding():
    assert resolve_dtype("float64") is torch.float64
    with pytest.raises(ValueCheckError, match="float16"):
        resolve_dtype("float16")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueCheckError, match="no CUDA"):
            resolve_device("cuda")
    opts = RunOptions(seed=5, dtype="float64")
    assert opts.torch_dtype is torch.float64 and opts.torch_device.type == "cpu"
    seed_everything(7)
    a = torch.rand(3)
    seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_checks_messages():
    with pytest.raises(ValueCheckError, match="non-finite.*index \\(1, 0\\)"):
        check_matrix(torch.tensor([[1.0], [float("inf")]]), "z")
    with pytest.raises(ValueCheckError, match="integer"):
        check_labels(torch.tensor([0.0, 1.0]), 2)


def test_make_config_presets():
    @dataclass
    class Cfg:
        width: int = 10
        PRESETS: ClassVar[dict] = {"quick": {"width": 2}, "default": {}}

    assert make_config(Cfg, "quick").width == 2
    assert make_config(Cfg, "quick", width=5).width == 5
    with pytest.raises(ValueCheckError, match="unknown preset"):
        make_config(Cfg, "huge")
    with pytest.raises(ValueCheckError, match="no option"):
        make_config(Cfg, "default", depth=3)


def test_every_registered_experiment_is_well_formed():
    for name, exp in load_all().items():
        presets = getattr(exp.config_cls, "PRESETS", {"default": {}})
        assert "default" in presets, name
        for preset in presets:
            make_config(exp.config_cls, preset)  # every preset builds
        assert exp.help, name
        assert all(s in {"000", "001", "002", "003", "004"} for s in exp.sources), name
    assert EXPERIMENTS is load_all()


def test_folder_state_and_markers(tmp_path):
    from actionlab.runs import FAILED, RUNNING, failure_text, folder_state, mark_failed

    f = tmp_path / "r"
    assert folder_state(f) == "absent"
    assert mark_failed(f, "boom") is None and not f.exists()  # no folder is made for a failure before any work
    run = RunFolder(f, experiment="unit", config={"a": 1})
    assert folder_state(f) == "running" and (f / RUNNING).exists()
    marker = mark_failed(f, "ValueError: boom", command="actionlab unit --out r")
    assert marker == f / FAILED and folder_state(f) == "failed" and not (f / RUNNING).exists()
    assert failure_text(f) == "actionlab unit --out r\n\nValueError: boom"
    run = RunFolder(f, experiment="unit", config={"a": 1})  # a new run in the same folder clears FAILED
    assert not (f / FAILED).exists() and folder_state(f) == "running"
    run.finish({"x": 1})
    assert folder_state(f) == "finished" and failure_text(f) is None
    (tmp_path / "empty").mkdir()
    assert folder_state(tmp_path / "empty") == "incomplete"
    assert mark_failed(tmp_path / "new", "x", create=True) is not None and folder_state(tmp_path / "new") == "failed"


def test_run_folder_takes_run_options_and_downgrades_quick_claims(tmp_path):
    firm = Claim("001", "S_0 = ln M", math.log(10), math.log(10), "holds", "exact", id="unit.s0", strength="firm",
                 evidence={"tolerance": 1e-12})
    opts = RunOptions(out=tmp_path / "q", seed=4, dtype="float64", preset="quick", command="actionlab unit --quick")
    run = RunFolder(opts, experiment="unit", config={"a": 1})
    kept = run.add_claim(firm)
    assert kept.strength == "indicative" and firm.strength == "firm"  # the caller's claim is not changed
    run.finish({"x": 1})
    payload = json.loads((tmp_path / "q" / "results.json").read_text())
    assert payload["preset"] == "quick" and payload["claims"][0]["strength"] == "indicative"
    assert payload["claims"][0]["id"] == "unit.s0" and payload["claims"][0]["evidence"] == {"tolerance": 1e-12}
    prov = payload["provenance"]
    assert prov["command"] == "actionlab unit --quick" and prov["seed"] == 4 and prov["dtype"] == "float64"
    # the default preset keeps a firm claim firm; a run started from Python records no command
    run = RunFolder(RunOptions(out=tmp_path / "d", preset="default"), experiment="unit")
    run.add_claim(firm)
    run.finish({})
    d = json.loads((tmp_path / "d" / "results.json").read_text())
    assert d["claims"][0]["strength"] == "firm"
    run = RunFolder(tmp_path / "p", experiment="unit")
    run.finish({})
    assert json.loads((tmp_path / "p" / "provenance.json").read_text())["command"] is None
    with pytest.raises(ValueError, match="options.out is None"):
        RunFolder(RunOptions(), experiment="unit")


def test_param_help_range_and_length():
    from actionlab.experiments import param
    from actionlab.experiments._registry import check_config

    @dataclass
    class Cfg:
        shape: tuple[int, ...] = param((2, 3), "two sizes", min=1, length=2)
        rate: float = param(0.1, "a rate", min=0, exclusive_min=True)
        name: str | None = param(None, "optional name", choices=("a", "b"))

    assert make_config(Cfg).shape == (2, 3)
    with pytest.raises(ValueCheckError, match="--shape takes exactly 2 values"):
        make_config(Cfg, shape=(1, 2, 3))
    with pytest.raises(ValueCheckError, match="--shape must be >= 1 \\(a positive integer\\), got 0"):
        make_config(Cfg, shape=(1, 0))
    with pytest.raises(ValueCheckError, match="--rate must be > 0 \\(positive\\)"):
        make_config(Cfg, rate=0.0)
    with pytest.raises(ValueCheckError, match="--name 'c' is not one of: a, b"):
        make_config(Cfg, name="c")
    assert check_config(Cfg(name="a")).name == "a"
    with pytest.raises(TypeError, match="help"):
        param(1, "")


def test_torch_threads_sets_and_restores_the_thread_count():
    from actionlab.config import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    for leave in (None, 0):
        with torch_threads(leave):
            assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):  # restored on an exception too
        with torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
