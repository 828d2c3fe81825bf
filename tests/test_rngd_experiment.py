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
    assert full.seeds == 40 and full.selection_seeds >= 10 and 1e-2 in full.lrs and 5e-3 in full.lrs
    assert len(full.architectures) == 4 and full.epochs == 20
    default = make_config(RngdMnistConfig)
    assert default.batch_size == 50 and default.l2 == 1e-3 and default.train_size == 50000 and default.validation_size == 10000
    # 003 §4: one grid for every optimizer; the authors' RNGD settings; ≥ 10 reported seeds in the default preset
    assert default.lrs == (0.1, 0.05, 1e-2, 5e-3, 1e-3) and default.seeds >= 10
    assert (default.rngd_inverse_every, default.rngd_decay, default.rngd_relu_omega) == (100, 0.995, 1.0)
    assert (default.rngd_damping, default.rngd_damping_relative_to) == (1e-4, "trace")
    assert default.architectures == ("784-80-80-80-10",)


@pytest.mark.slow
def test_quick_preset_every_optimizer_lowers_training_loss(tmp_path):
    cfg = make_config(RngdMnistConfig, "quick")
    exp = get_experiment("rngd-mnist")
    res = exp.run(cfg, RunOptions(out=tmp_path, seed=0))
    assert {r.optimizer for r in res.runs} == {"sgd", "adam", "rngd", "rngd-fast"}
    # η chosen on selection seeds that are not among the reported seeds, over the whole grid
    assert {r.seed for r in res.selection_runs}.isdisjoint({r.seed for r in res.runs})
    assert {r.lr for r in res.selection_runs} == set(cfg.lrs)
    assert len(res.runs) == cfg.seeds * 4 and len(res.selection_runs) == cfg.selection_seeds * len(cfg.lrs) * 4
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
    ids = {c["id"] for c in payload["claims"]}
    assert {"003.rngd-faster-per-epoch", "003.rngd-speed", "003.rngd-fast-faster-per-epoch", "003.rngd-fast-speed"} <= ids
    key = next(c for c in payload["claims"] if c["id"] == "003.rngd-faster-per-epoch")
    assert key["strength"] == "indicative" and key["evidence"]["cuts"]  # quick preset: indicative, cuts stated
    assert set(key["measured"]) == {"vs sgd", "vs adam"}
    assert (tmp_path / "curves_784-80-80-80-10.png").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "Does RNGD learn faster per epoch here?" in summary and "s / epoch" in summary and "K-FAC" in summary
    assert all(math.isfinite(t["test_accuracy_mean"]) for t in res.table)


def _synthetic_result(ratios: dict[str, tuple[float, float, float]]):
    """An RngdMnistResult with given rngd-fast / Adam epoch-time ratios (mean, low, high) per architecture."""
    from actionlab.experiments.rngd_mnist import RngdMnistResult

    cmp = {"auc_difference": 0.0, "low": -0.01, "high": 0.01, "p_wilcoxon": 1.0, "n": 10, "auc_rngd": 0.9, "auc_other": 0.9}
    per_epoch = {a: {"rngd-fast": {"sgd": cmp, "adam": cmp}} for a in ratios}
    speed = {a: {"rngd-fast": {"ratio": r, "low": lo, "high": hi, "n": 10}} for a, (r, lo, hi) in ratios.items()}
    table = [{"test_accuracy_mean": 0.97, "val_accuracy_mean": 0.968}]
    return RngdMnistResult([], [], {a: {"rngd-fast": 0.1} for a in ratios}, table, per_epoch, speed, 1.0)


@pytest.mark.parametrize(("ratios", "verdict"), [
    ({"784-80-80-80-10": (1.8, 1.7, 1.9), "784-100-100-100-10": (2.7, 2.6, 2.8)}, "holds"),
    ({"784-80-80-80-10": (2.2, 2.1, 2.3), "784-100-100-100-10": (1.5, 1.4, 1.6)}, "does not hold"),
    ({"784-80-80-80-10": (2.0, 1.8, 2.2)}, "inconclusive"),
])
def test_speed_goal_claim_is_judged_by_its_interval(ratios, verdict):
    from actionlab.experiments.rngd_mnist import _claims

    cfg = RngdMnistConfig(architectures=tuple(ratios), optimizers=("sgd", "adam", "rngd-fast"))
    claims = {c.id: c for c in _claims(cfg, _synthetic_result(ratios), "default")}
    goal = claims["003.rngd-fast-speed"]  # the main network's row; other networks get suffixed ids
    assert goal.verdict == verdict
    r, lo, hi = ratios["784-80-80-80-10"]
    assert goal.measured == {"ratio": r, "interval": [lo, hi]}
    assert goal.strength == ("indicative" if verdict == "inconclusive" else "firm")
    assert all(i == "003.rngd-fast-speed" or i.endswith(".784-100-100-100-10") or not i.endswith("speed") for i in claims)
    # the AUC intervals straddle 0: per-epoch verdict inconclusive and indicative
    assert claims["003.rngd-fast-faster-per-epoch"].verdict == "inconclusive"
    assert claims["003.rngd-fast-faster-per-epoch"].strength == "indicative"


def test_judges_on_both_sides_of_the_threshold():
    from actionlab.experiments.rngd_mnist import judge_at_most, judge_faster

    assert judge_faster({"sgd": (0.001, 0.01), "adam": (0.002, 0.02)}) == "holds"
    assert judge_faster({"sgd": (0.001, 0.01), "adam": (-0.02, -0.002)}) == "does not hold"
    assert judge_faster({"sgd": (0.001, 0.01), "adam": (-0.002, 0.02)}) == "inconclusive"
    assert judge_faster({}) == "not yet measured"
    assert judge_at_most(1.2, 1.9, 2.0) == "holds"
    assert judge_at_most(2.1, 2.5, 2.0) == "does not hold"
    assert judge_at_most(1.9, 2.1, 2.0) == "inconclusive"


def test_auc_and_epochs_to_level():
    from actionlab.experiments.rngd_mnist import TrainingRun, epochs_to_level, validation_auc

    r = TrainingRun("784-80-80-80-10", "sgd", 0.1, 0, val_accuracy=[0.1, 0.9, 0.95, 0.97])
    assert validation_auc(r) == pytest.approx((0.9 + 0.95 + 0.97) / 3)
    assert epochs_to_level(r, 0.95) == 2 and epochs_to_level(r, 0.99) == math.inf


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"epochs": 0}, {"lrs": (float("nan"),)}, {"lrs": ()},
                                 {"seeds": 1}, {"rngd_damping_relative_to": "max"},
                                 {"optimizers": ("lbfgs",)}, {"rngd_decay": 1.5}, {"divergence_factor": 1.0}])
def test_config_refuses_nonsense_before_any_work(bad):
    with pytest.raises(ValueCheckError):
        make_config(RngdMnistConfig, "quick", **bad)
