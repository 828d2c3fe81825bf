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
