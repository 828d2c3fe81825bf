"""rngd-mnist: the quick preset runs end to end and every optimizer lowers the training loss."""

from __future__ import annotations

import json
import math

import pytest

from actionlab._checks import ValueCheckError
from actionlab.config import RunOptions
from actionlab.experiments import get_experiment, make_config
from actionlab.experiments.rngd_mnist import RngdMnistConfig, parse_architecture


def test_parse_architecture():
    assert parse_architecture("784-80-80-80-10") == ([784, 80, 80, 80, 10], False)
    assert parse_architecture("784-100-100-100-10+bn") == ([784, 100, 100, 100, 10], True)
    with pytest.raises(ValueCheckError, match="784"):
        parse_architecture("100-10")
    with pytest.raises(ValueCheckError, match="look like"):
        parse_architecture("784-x-10")


def test_registered_with_presets():
    exp = get_experiment("rngd-mnist")
    assert exp.sources == ("003",)
    full = make_config(RngdMnistConfig, "full")
    assert full.seeds == 40 and full.select_all_seeds and 1e-2 in full.lr_rngd and 5e-3 in full.lr_rngd
    default = make_config(RngdMnistConfig)
    assert default.batch_size == 50 and default.l2 == 1e-3 and default.train_size == 50000 and default.validation_size == 10000
    assert len(default.architectures) == 4


@pytest.mark.slow
def test_quick_preset_every_optimizer_lowers_training_loss(tmp_path):
    cfg = make_config(RngdMnistConfig, "quick")
    exp = get_experiment("rngd-mnist")
    res = exp.run(cfg, RunOptions(out=tmp_path, seed=0))
    assert {r.optimizer for r in res.runs} == {"sgd", "adam", "rngd", "rngd-fast"}
    for r in res.runs:
        assert not r.diverged
        assert len(r.train_loss) == cfg.epochs + 1
        # every optimizer lowers the training loss (cross-entropy on the training subset) from its initial value
        assert r.train_loss[-1] < 0.5 * r.train_loss[0], (r.optimizer, r.train_loss)
        assert r.val_accuracy[-1] > 0.5
        assert all(t > 0 for t in r.epoch_time_s)
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["experiment"] == "rngd-mnist"
    assert {c["source"] for c in payload["claims"]} == {"003"}
    assert (tmp_path / "curves_784-80-80-80-10.png").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "Does RNGD learn faster here?" in summary and "s / epoch" in summary
    assert all(math.isfinite(t["test_accuracy_mean"]) for t in res.table)


def _synthetic_result(ratios: dict[str, float]):
    """An RngdMnistResult with given rngd-fast / Adam epoch-time ratios per architecture (other fields neutral)."""
    from actionlab.experiments.rngd_mnist import RngdMnistResult

    fractions = {"val_better_fraction": 0.5, "loss_better_fraction": 0.5}
    per_epoch = {a: {"rngd-fast": {"sgd": fractions, "adam": fractions}} for a in ratios}
    per_second = {a: {"t_budget_s": 1.0, "sgd": 0.9, "adam": 0.9, "rngd-fast": 0.8,
                      "time_ratio": {"rngd-fast": {"sgd": 2 * r, "adam": r}}} for a, r in ratios.items()}
    table = [{"test_accuracy_mean": 0.97, "val_accuracy_mean": 0.968}]
    return RngdMnistResult([], {a: {"rngd-fast": 0.1} for a in ratios}, table, per_epoch, per_second, 1.0)


@pytest.mark.parametrize(("ratios", "verdict"), [
    ({"784-80-80-80-10": 1.8, "784-100-100-100-10": 2.7}, "holds"),
    ({"784-80-80-80-10": 2.2, "784-100-100-100-10": 1.5}, "does not hold"),
    ({"784-100-100-100-10": 1.5}, "inconclusive"),
])
def test_speed_goal_claim_is_judged_on_the_goal_network(ratios, verdict):
    from actionlab.experiments.rngd_mnist import _claims

    cfg = RngdMnistConfig(architectures=tuple(ratios), optimizers=("sgd", "adam", "rngd-fast"))
    goal = [c for c in _claims(cfg, _synthetic_result(ratios)) if "at most 2× Adam's" in c.claim]
    assert len(goal) == 1
    assert goal[0].verdict == verdict
    assert goal[0].measured == {a: round(r, 2) for a, r in ratios.items()}


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"epochs": 0}, {"lr_sgd": (float("nan"),)}, {"lr_rngd": ()},
                                 {"optimizers": ("lbfgs",)}, {"rngd_decay": 1.5}, {"divergence_factor": 1.0}])
def test_config_refuses_nonsense_before_any_work(bad):
    with pytest.raises(ValueCheckError):
        make_config(RngdMnistConfig, "quick", **bad)
