"""``actionlab scaling``: the notes' scaling script over seeds and E — grid, size count, early stopping, verdicts, run."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from actionlab import stats
from actionlab.config import RunOptions
from actionlab.experiments import get_experiment, make_config
from actionlab.experiments.scaling import (
    KerasEarlyStopping,
    ScalingConfig,
    ScalingResult,
    _figures,
    judge_only_large,
    judge_power_law_at,
    notes_widths,
    param_count,
)

# the settings of shuiruge/entropy scales/scaling_law_on_fashion_mnist_v2.py (papers.md [checked])
SCRIPT_WIDTHS = [int(2**x) for x in np.linspace(4, 12, 10)]


# ----------------------------------------------------------------------------- the script's grid and size


def test_widths_are_the_scripts_grid():
    assert notes_widths() == SCRIPT_WIDTHS == [16, 29, 54, 101, 188, 348, 645, 1194, 2211, 4096]
    assert ScalingConfig().widths() == SCRIPT_WIDTHS
    assert make_config(ScalingConfig, "default", widths_used=7).widths() == SCRIPT_WIDTHS[:7]
    with pytest.raises(ValueError):
        notes_widths(4, 4, 10)


@pytest.mark.parametrize("E,n", [(4, 16), (1024, 4096), (64, 101)])
def test_param_count_is_the_scripts_weight_count(E, n):
    # independent count: the weights (not biases) of the Keras layers after the frozen embedding
    model = nn.Sequential(nn.Linear(E, n), nn.ReLU(), nn.Linear(n, n), nn.ReLU(), nn.Linear(n, 10))
    weights = sum(m.weight.numel() for m in model if isinstance(m, nn.Linear))
    assert param_count(E, n) == weights == E * n + n * n + 10 * n
    assert param_count(E, n, layers=1) == E * n + 10 * n


# ----------------------------------------------------------------------------- Keras' EarlyStopping


class _Scripted(KerasEarlyStopping):
    """The callback with the validation losses given in advance (the rule, not the measurement, is tested)."""

    def __init__(self, losses, **kw):
        super().__init__(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), **kw)
        self._script = iter(losses)

    def validation_loss(self, model):
        return next(self._script)


def _keras_rule(losses, patience):
    """Keras 2/3 EarlyStopping.on_epoch_end (min_delta 0, baseline None): the epoch index at which it stops, or None."""
    best, wait = math.inf, 0
    for epoch, cur in enumerate(losses):
        wait += 1
        if cur < best:
            best, wait = cur, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch
    return None


class _State:
    def __init__(self, model, epoch):
        self.model, self.epoch, self.device = model, epoch, torch.device("cpu")


@pytest.mark.parametrize("patience", [0, 1, 2])
def test_early_stopping_follows_keras(patience):
    rng = np.random.default_rng(patience)
    for _ in range(30):
        losses = list(np.round(1.0 - np.cumsum(rng.normal(0.01, 0.02, 12)), 2))  # ties happen: they do not improve
        cb = _Scripted(losses, patience=patience)
        first = next((e for e in range(len(losses)) if cb.on_step_end(_State(None, float(e + 1)))), None)
        expected = _keras_rule(losses, patience)
        assert first == expected
        if expected is not None:
            assert cb.stopped_epoch == expected and len(cb.losses) == expected + 1


def test_early_stopping_only_at_epoch_ends_and_restores_best():
    model = nn.Linear(2, 2)
    cb = _Scripted([1.0, 0.5, 0.7], patience=0, restore_best=True)
    assert cb.on_step_end(_State(model, 0.5)) is False and cb.losses == []  # mid-epoch: nothing measured
    assert cb.on_step_end(_State(model, 1.0)) is False
    assert cb.on_step_end(_State(model, 2.0)) is False
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    assert cb.on_step_end(_State(model, 3.0)) is True
    assert torch.equal(model.weight, best["weight"])  # the best epoch's weights are back
    plain = _Scripted([1.0, 0.5, 0.7], patience=0)  # the script: no restoring
    for e in (1.0, 2.0, 3.0):
        plain.on_step_end(_State(model, e))
    assert plain.best_state is None and plain.stopped_epoch == 2


# ----------------------------------------------------------------------------- verdicts


def test_judge_power_law_at_both_sides_of_the_thresholds():
    assert judge_power_law_at(3.0, 0.1, 3) == ("holds", "firm")
    assert judge_power_law_at(3.0, 0.1, 2) == ("holds", "indicative")  # < 3 seeds
    assert judge_power_law_at(3.0, 0.1, 5, quick=True) == ("holds", "indicative")
    assert judge_power_law_at(2.0, 1e-6, 3) == ("holds", "firm")  # exactly at the margin
    assert judge_power_law_at(1.99, 0.1, 3) == ("inconclusive", "indicative")
    assert judge_power_law_at(-1.99, 0.1, 3) == ("inconclusive", "indicative")
    assert judge_power_law_at(-2.0, 0.1, 3) == ("does not hold", "firm")
    assert judge_power_law_at(-5.0, 0.0, 3) == ("does not hold", "firm")
    assert judge_power_law_at(3.0, 0.0, 3) == ("does not hold", "indicative")  # α interval reaches 0
    assert judge_power_law_at(3.0, math.nan, 3) == ("does not hold", "indicative")  # one seed: no interval
    assert judge_power_law_at(math.nan, 0.1, 3) == ("inconclusive", "indicative")


def _reference_only_large(verdicts):
    """By enumeration over every threshold E*: the claim holds iff some k in 1..m−1 puts 'no' below and 'yes' above."""
    m = len(verdicts)
    outcomes = set()
    choices = [[True] if v == "holds" else [False] if v == "does not hold" else [True, False] for v in verdicts]
    for flags in itertools.product(*choices):
        outcomes.add(any(all(not f for f in flags[:k]) and all(flags[k:]) for k in range(1, m)))
    return None if len(outcomes) > 1 else outcomes.pop()


def test_judge_only_large_against_enumeration():
    names = ("holds", "does not hold", "inconclusive")
    for m in (2, 3, 4):
        for verdicts in itertools.product(names, repeat=m):
            ref = _reference_only_large(list(verdicts))
            got, strength = judge_only_large(list(verdicts), ["firm"] * m)
            assert got == {None: "inconclusive", True: "holds", False: "does not hold"}[ref], verdicts
            assert strength == ("indicative" if got == "inconclusive" else "firm")
    assert judge_only_large(["does not hold", "holds"], ["firm", "indicative"]) == ("holds", "indicative")
    assert judge_only_large(["holds"], ["firm"]) == ("inconclusive", "indicative")  # one E cannot answer it
    with pytest.raises(ValueError):
        judge_only_large(["holds", "holds"], ["firm"])


# ----------------------------------------------------------------------------- the fits the verdict rests on


def _margin(fit):
    comp = fit.comparison
    power = min(comp.row(m).aicc for m in ("saturating power law", "pure power law"))
    return min(r.aicc for r in comp.rows if r.name not in ("saturating power law", "pure power law")) - power


def test_power_law_fit_recovers_a_known_law():
    rng = np.random.default_rng(0)
    N = np.array([param_count(64, n) for n in SCRIPT_WIDTHS], float)
    a, alpha, l_inf = 30.0, 0.6, 0.25
    per_seed = (a * N[:, None] ** -alpha + l_inf) + rng.normal(0, 0.003, (len(N), 4))
    fit = stats.fit_power_law(N, per_seed)
    half = (fit.alpha_interval.high - fit.alpha_interval.low) / 2
    assert fit.alpha == pytest.approx(alpha, abs=max(3 * half, 0.05))
    assert fit.l_inf == pytest.approx(l_inf, abs=0.02)
    assert fit.a == pytest.approx(a, rel=0.2)
    assert fit.r_squared > 0.999 and fit.lack_of_fit_f < 5
    assert fit.alpha_interval.low <= fit.alpha <= fit.alpha_interval.high
    assert judge_power_law_at(_margin(fit), fit.alpha_interval.low, 4) == ("holds", "firm")


def test_power_law_not_claimed_on_flat_noise():
    rng = np.random.default_rng(1)
    N = np.array([param_count(4, n) for n in SCRIPT_WIDTHS[:6]], float)
    per_seed = 0.5 + rng.normal(0, 0.01, (len(N), 3))
    fit = stats.fit_power_law(N, per_seed)
    verdict, _ = judge_power_law_at(_margin(fit), fit.alpha_interval.low, 3)
    assert verdict != "holds"


# ----------------------------------------------------------------------------- presets and the run


def test_full_preset_is_the_notes_setting():
    cfg = make_config(ScalingConfig, "full")
    assert cfg.widths() == SCRIPT_WIDTHS and cfg.hidden_layers == 2 and cfg.base_hidden == 1024
    assert set(cfg.dims) >= {4, 16, 64, 256, 1024} and cfg.seeds >= 5
    assert (cfg.lr, cfg.weight_decay, cfg.beta1, cfg.beta2, cfg.eps) == (1e-3, 0.004, 0.9, 0.999, 1e-7)
    assert (cfg.batch_size, cfg.max_epochs, cfg.patience, cfg.restore_best) == (4096, 10000, 0, False)
    assert cfg.validation == "test" and cfg.dataset == "fashion-mnist"  # the script's leak, reproduced
    assert cfg.train_per_class is None and cfg.test_per_class is None
    default = make_config(ScalingConfig, "default")  # the reduction: fewer sizes / seeds / E, same architecture
    assert default.validation == "holdout" and default.widths() == SCRIPT_WIDTHS[: len(default.widths())]
    assert (default.hidden_layers, default.base_hidden, default.batch_size, default.patience) == (2, 1024, 4096, 0)


def test_full_preset_through_print_config():
    from actionlab.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["scaling", "--preset", "full", "--print-config"]) == 0
    cfg = json.loads(out.getvalue())
    assert cfg["dims"] == [4, 16, 64, 256, 1024] and cfg["seeds"] == 5 and cfg["validation"] == "test"
    assert (cfg["min_log2_width"], cfg["max_log2_width"], cfg["num_widths"], cfg["widths_used"]) == (4.0, 12.0, 10, None)
    assert (cfg["lr"], cfg["weight_decay"], cfg["eps"], cfg["batch_size"], cfg["patience"]) == (1e-3, 0.004, 1e-7, 4096, 0)


def test_config_refuses_nonsense():
    from actionlab._checks import ValueCheckError

    for bad in ({"dims": ()}, {"seeds": 0}, {"validation": "train"}, {"widths_used": 2}, {"val_fraction": 0.0},
                {"patience": -1}, {"eps": 0.0}):
        with pytest.raises(ValueCheckError):
            make_config(ScalingConfig, "quick", **bad)


def _fake_result():
    widths = [16, 29, 54, 101]
    P = [param_count(4, n) for n in widths]
    loss = [2.0 * p**-0.5 for p in P]  # an exact power law with L∞ = 0
    L = np.array([loss, [x * 1.01 for x in loss]]).T
    res = ScalingResult([4], widths, [0, 1], num_params={"4": P}, losses={"4": L.tolist()})
    fit = stats.fit_power_law(P, L)
    res.fits["4"] = fit
    res.loglog["4"] = {"means": stats.robust_loglog_fit(P, L), "per_seed_alpha": [0.5, 0.5],
                       "interval": stats.mean_interval([0.5, 0.5])}
    res.outcomes["4"] = {"verdict": "holds", "strength": "indicative", "aicc_margin": 3.0, "best_by_aicc": "pure power law",
                         "alpha": fit.alpha, "alpha_low": fit.alpha_interval.low, "alpha_high": fit.alpha_interval.high}
    return res, loss


def test_scaling_figure_log_axis_survives_zero_l_inf():
    res, loss = _fake_result()
    assert res.fits["4"].l_inf == pytest.approx(0.0, abs=1e-12)
    figs = {}
    _figures(type("RF", (), {"save_figure": lambda self, fig, name: figs.setdefault(name, fig)})(), res)
    ax = figs["scaling_loglog"].axes[0]
    lo, hi = ax.get_ylim()
    assert 0 < lo < min(loss) and max(loss) < hi < 10 * max(loss)  # the measured losses fill the axis
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() and ax.get_legend() is not None
    assert "L∞" not in [t.get_text() for t in ax.get_legend().get_texts()]  # no L∞ line at 0 on a log axis
    ax2 = figs["scaling_alpha_vs_E"].axes[0]
    assert ax2.get_xlabel() == "embedding width E" and ax2.get_ylabel() and ax2.get_legend() is not None


@pytest.mark.slow
def test_scaling_quick(tmp_path):
    exp = get_experiment("scaling")
    cfg = make_config(exp.config_cls, "quick")
    out = tmp_path / "scaling"
    res = exp.run(cfg, RunOptions(out=out, seed=0, preset="quick"))
    payload = json.loads((out / "results.json").read_text())
    assert res.widths == SCRIPT_WIDTHS[: cfg.widths_used] and res.seeds == [0, 1]
    for E in res.dims:
        k = str(E)
        L = np.array(res.losses[k])
        assert L.shape == (len(res.widths), 2) and np.all(np.isfinite(L)) and np.all(L > 0)
        assert res.num_params[k] == [param_count(E, n) for n in res.widths]
        fit = res.fits[k]
        assert fit.n_seeds == 2 and math.isfinite(fit.alpha_interval.low) and math.isfinite(fit.alpha_interval.high)
        assert {r.name for r in fit.comparison.rows} == {"saturating power law", "pure power law",
                                                         "exponential saturation", "logarithmic"}
        assert all(math.isfinite(r.aicc) for r in fit.comparison.rows)
        assert math.isfinite(res.loglog[k]["means"].alpha) and res.loglog[k]["interval"] is not None
        bases = [r["base"] for r in res.training[k]]
        assert bases[0]["best_validation_loss"] != bases[1]["best_validation_loss"]  # each seed retrains the embedding
        assert all(r["base"]["epochs"] >= 2 for r in res.training[k])
    ids = {c["id"]: c for c in payload["claims"]}
    assert set(ids) == {"001.power-law-E"} | {f"001.power-law-E{E}" for E in res.dims}
    for c in ids.values():
        assert c["strength"] == "indicative" and c["verdict"] in ("holds", "does not hold", "inconclusive")
        ev = c["evidence"]
        assert ev["preset"] == "quick" and ev["seeds"]["number"] == 2 and ev["threshold"]["aicc_margin"] == 2.0
        assert ev["decision_rule"] and ev["cuts_from_the_notes_setting"]
    assert set(payload["figures"]) == {"scaling_loglog.png", "scaling_alpha_vs_E.png"}
    for fig in payload["figures"]:
        assert (out / fig).stat().st_size > 1000


def test_the_script_trains_on_the_whole_training_file():
    import torch as _torch

    from actionlab.experiments.scaling import _load, _splits

    cfg = make_config(ScalingConfig, "full")
    train, test = _load(cfg, 0, _torch.float32)
    assert (len(train), len(test)) == (60000, 10000)  # the script's x_train, x_test
    assert float(train.z.min()) == 0.0 and float(train.z.max()) == 1.0  # x / 255
    fit, val, tst = _splits(train, test, cfg, 0)
    assert len(fit[0]) == 60000 and val[0] is tst[0]  # full: early stopping on the test split, as the script
    fit, val, tst = _splits(train, test, make_config(ScalingConfig, "default"), 3)
    assert (len(fit[0]), len(val[0])) == (54000, 6000) and len(tst[0]) == 10000  # held out, disjoint from test
