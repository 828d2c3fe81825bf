"""``actionlab early-stop``: the rule ∇S_T·∇S_E = 0 (001 §3, eq. 7) against argmin S_E.

The helpers are checked by hand-computed traces; the regime of the derivation (full-batch GD,
small η, full-set gradients every step) is checked against the rule on a small float64 problem
with an independent trace of S_E; the verdict logic is fed numbers on both sides of its
thresholds; the quick preset is checked for its regime table.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from actionlab.config import RunOptions
from actionlab.experiments import get_experiment, make_config
from actionlab.experiments.early_stop import (
    EarlyStopConfig,
    compare_rule,
    first_nonpositive,
    gap_statement,
    judge_regime,
    passed_minimum,
    regime_grid,
    regime_seeds,
    run_gaps,
    step_budget,
    summarise_regime,
)



@pytest.fixture(autouse=True)
def _one_thread():
    """These nets are tiny: one intra-op thread is fastest (and on a busy machine by far); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- helpers


def test_first_nonpositive_and_compare_rule():
    steps = [0, 10, 20, 30, 40, 50]
    dots = [5.0, 2.0, -0.5, 1.0, -1.0, -2.0]
    assert first_nonpositive(dots, steps) == 20
    assert first_nonpositive(dots, steps, smoothing=0.5) == 50  # EMA: 5, 3.5, 1.5, 1.25, 0.125, −0.94
    s_e = [2.0, 1.5, 1.2, 1.3, 1.4, 1.6]
    c = compare_rule(steps, s_e, dots, smoothing=0.0)
    assert c["min_step"] == 20 and c["raw"]["rule_step"] == 20 and c["raw"]["gap_steps"] == 0
    assert c["raw"]["gap_loss"] == pytest.approx(0.0) and not c["min_at_end"]
    assert first_nonpositive([1.0, 1.0], [0, 1]) is None


def test_run_gaps_censoring():
    steps = [0, 1, 2, 3]
    late = compare_rule(steps, [2.0, 1.0, 1.5, 1.7], [1.0, 1.0, 1.0, 1.0], 0.0)  # min passed, never fired
    assert run_gaps(late) == {"status": "late", "gap_steps": 2, "gap_nats": pytest.approx(0.7)}
    early = compare_rule(steps, [2.0, 1.8, 1.7, 1.6], [1.0, -1.0, 1.0, 1.0], 0.0)  # fired, S_E still falling
    assert run_gaps(early) == {"status": "early", "gap_steps": -2, "gap_nats": pytest.approx(0.2)}
    none = compare_rule(steps, [2.0, 1.8, 1.7, 1.6], [1.0] * 4, 0.0)
    assert run_gaps(none)["status"] == "none" and run_gaps(none)["gap_steps"] is None
    ok = compare_rule(steps, [2.0, 1.0, 1.5, 1.7], [1.0, -1.0, -1.0, -1.0], 0.0)
    assert run_gaps(ok) == {"status": "measured", "gap_steps": 0, "gap_nats": 0.0}


def _iv(est, lo, hi, n=3):
    return {"estimate": est, "low": lo, "high": hi, "level": 0.9, "n": n}


def test_judge_regime_on_both_sides_of_the_thresholds():
    tight, nats_ok = _iv(0.0, -0.5, 0.8), _iv(1e-4, 0.0, 2e-4)
    assert judge_regime(tight, nats_ok, 1.0, 0.01) == ("holds", "firm")
    assert judge_regime(_iv(0.0, -0.5, 0.8, n=2), nats_ok, 1.0, 0.01) == ("holds", "indicative")
    # late beyond the band in steps, or above the tolerance in nats: does not hold
    assert judge_regime(_iv(8.0, 3.0, 13.0), nats_ok, 1.0, 0.01)[0] == "does not hold"
    assert judge_regime(_iv(-8.0, -13.0, -3.0), nats_ok, 1.0, 0.01)[0] == "does not hold"
    assert judge_regime(tight, _iv(0.05, 0.02, 0.08), 1.0, 0.01)[0] == "does not hold"
    # straddling a threshold: inconclusive, never firm
    assert judge_regime(_iv(1.0, -0.5, 2.5), nats_ok, 1.0, 0.01) == ("inconclusive", "indicative")
    assert judge_regime(tight, _iv(0.01, 0.0, 0.02), 1.0, 0.01) == ("inconclusive", "indicative")
    # the same numbers with a wider tolerance flip to holds: the verdict follows the threshold
    assert judge_regime(_iv(1.0, -0.5, 2.5), nats_ok, 3.0, 0.01)[0] == "holds"
    # censored seeds: a late lower bound beyond the band still decides "does not hold", never "holds"
    assert judge_regime(_iv(50.0, 40.0, 60.0), nats_ok, 1.0, 0.01, {"late": 1})[0] == "does not hold"
    assert judge_regime(tight, nats_ok, 1.0, 0.01, {"late": 1})[0] == "inconclusive"
    assert judge_regime(_iv(50.0, 40.0, 60.0), nats_ok, 1.0, 0.01, {"late": 1, "early": 1})[0] == "inconclusive"
    assert judge_regime(None, None, 1.0, 0.01) == ("inconclusive", "indicative")


def test_minimum_at_the_end_of_the_budget_is_inconclusive():
    """A seed whose S_E minimum is its last measurement (rule not fired) never lets the cell hold or fail."""
    tight, nats_ok = _iv(0.0, -0.5, 0.8, n=9), _iv(1e-4, 0.0, 2e-4, n=9)
    assert judge_regime(tight, nats_ok, 1.0, 0.01, {"measured": 9, "none": 0}) == ("holds", "firm")
    assert judge_regime(tight, nats_ok, 1.0, 0.01, {"measured": 9, "none": 1}) == ("inconclusive", "indicative")
    far = _iv(-300.0, -450.0, -150.0, n=9)
    assert judge_regime(far, nats_ok, 40.0, 0.01, {"measured": 9}) == ("does not hold", "firm")
    assert judge_regime(far, nats_ok, 40.0, 0.01, {"measured": 9, "none": 1})[0] == "inconclusive"
    # a trace whose minimum is its last point is status "none" and says so in words
    c = compare_rule([0, 1, 2, 3], [2.0, 1.8, 1.7, 1.6], [1.0] * 4, 0.0)
    assert c["min_at_end"] and run_gaps(c)["status"] == "none"
    summ = {"gap_steps": None, "gap_nats": None, "counts": {"measured": 2, "late": 0, "early": 0, "none": 1}}
    assert "still falling at the end of the step budget in 1 of 3 seeds" in gap_statement(summ)


def test_gap_statement_direction_size_and_interval():
    early = {"gap_steps": _iv(-306.0, -450.0, -160.0, n=10), "gap_nats": _iv(0.014, 0.007, 0.021, n=10),
             "counts": {"measured": 10, "late": 0, "early": 0, "none": 0}}
    text = gap_statement(early)
    assert text.startswith("fires early by 306.0 [160.0, 450.0] steps, costing 0.0140 [0.0070, 0.0210] nats")
    assert "10 seeds" in text and "censored" not in text
    late = {"gap_steps": _iv(39.0, 24.0, 54.0, n=10), "gap_nats": _iv(0.006, 0.003, 0.009, n=10),
            "counts": {"measured": 8, "late": 2, "early": 0, "none": 0}}
    assert gap_statement(late).startswith("fires late by 39.0 [24.0, 54.0] steps")
    assert "censored at their bound: 2 late" in gap_statement(late)
    straddle = {"gap_steps": _iv(-5.0, -20.0, 10.0), "gap_nats": _iv(0.0, 0.0, 0.0), "counts": {"measured": 3}}
    assert "early by 5.0 [-10.0, 20.0]" in gap_statement(straddle)  # the interval reaches the other side
    exact = {"gap_steps": _iv(0.0, 0.0, 0.0), "gap_nats": _iv(0.0, 0.0, 0.0), "counts": {"measured": 3}}
    assert gap_statement(exact).startswith("fires at argmin S_E (gap 0.0 [0.0, 0.0] steps)")


def test_passed_minimum_on_both_sides_of_margin_and_patience():
    # fired, S_E 0.03 above its minimum, 2× the argmin step: the run may end
    assert passed_minimum(200, 1.03, 100, 1.0, True, margin=0.02, patience=0.5)
    assert not passed_minimum(200, 1.03, 100, 1.0, False, margin=0.02, patience=0.5)  # rule not fired: go on
    assert not passed_minimum(200, 1.01, 100, 1.0, True, margin=0.02, patience=0.5)  # within the margin
    assert not passed_minimum(140, 1.03, 100, 1.0, True, margin=0.02, patience=0.5)  # too soon after argmin
    assert passed_minimum(150, 1.02, 100, 1.0, True, margin=0.02, patience=0.5)  # both bounds met exactly


def test_step_budget_grows_with_N_and_noisy_cells_get_more_seeds():
    from actionlab.experiments.early_stop import Regime

    cfg = make_config(EarlyStopConfig, "default", steps=1000, max_steps=50_000, n_train=300, lr_fraction=0.05)
    assert step_budget(cfg, Regime("gd", 0.05, None, 300)) == 1000
    assert step_budget(cfg, Regime("gd", 0.5, None, 300)) == 100  # same gradient-flow time η·k
    assert step_budget(cfg, Regime("gd", 0.05, None, 3000)) == 10_000  # ∝ N above N₀
    assert step_budget(cfg, Regime("gd", 0.05, None, 100)) == 1000  # never below the baseline's
    assert step_budget(cfg, Regime("adam", 0.05, None, 3000)) == 10 * cfg.adam_steps
    small_cap = make_config(EarlyStopConfig, "default", steps=1000, max_steps=4000, n_train=300, lr_fraction=0.05)
    assert step_budget(small_cap, Regime("gd", 0.05, None, 3000)) == 4000
    cfg = make_config(EarlyStopConfig, "default", seeds=3, noisy_seeds=7, near_limit=0.75)
    assert len(regime_seeds(cfg, Regime("gd", 0.05, None, 300), 0)) == 3
    assert len(regime_seeds(cfg, Regime("momentum", 0.5, None, 300), 0)) == 3
    assert regime_seeds(cfg, Regime("gd", 0.05, 64, 300), 5) == [5, 6, 7, 8, 9, 10, 11]
    assert len(regime_seeds(cfg, Regime("adam", 0.05, None, 300), 0)) == 7
    assert len(regime_seeds(cfg, Regime("gd", 0.9, None, 300), 0)) == 7


def test_summarise_regime_intervals_and_counts():
    def run(min_step, rule, s_min, s_rule):
        cmp = {"min_step": min_step, "min_S_E": s_min, "final_step": 100, "final_S_E": 2.0, "min_at_end": False,
               "raw": {"rule_step": rule, "S_E_at_rule": s_rule, "gap_steps": rule - min_step, "gap_loss": s_rule - s_min}}
        return {"comparison": cmp, "gap": run_gaps(cmp)}

    runs = [run(10, 12, 1.0, 1.1), run(20, 24, 1.0, 1.3), run(30, 36, 1.0, 1.2)]
    s = summarise_regime(runs, 0.9)
    assert s["counts"] == {"measured": 3, "late": 0, "early": 0, "none": 0}
    from scipy import stats

    gaps = np.array([2.0, 4.0, 6.0])
    half = stats.t.ppf(0.95, 2) * gaps.std(ddof=1) / np.sqrt(3)
    assert s["gap_steps"]["estimate"] == pytest.approx(4.0)
    assert s["gap_steps"]["high"] - 4.0 == pytest.approx(half)
    assert s["gap_nats"]["estimate"] == pytest.approx(0.2) and s["min_step"]["estimate"] == pytest.approx(20.0)


def test_regime_grid_is_one_factor_at_a_time_around_the_baseline():
    cfg = make_config(EarlyStopConfig, "default")
    grid = regime_grid(cfg)
    base = grid[0]
    assert (base.optimizer, base.lr_fraction, base.batch_size, base.n_train) == ("gd", cfg.lr_fraction, None, cfg.n_train)
    assert set(base.sweeps) == {"baseline", "step size", "batch size", "optimizer", "training-set size"}
    assert len({r.key for r in grid}) == len(grid)  # each regime once
    by = lambda sw: [r for r in grid if sw in r.sweeps]  # noqa: E731
    assert len(by("step size")) >= 3 and max(r.lr_fraction for r in by("step size")) >= 0.9
    assert min(r.lr_fraction for r in by("step size")) <= 0.02
    assert sum(r.batch_size is not None for r in by("batch size")) >= 2
    assert {r.optimizer for r in by("optimizer")} == {"gd", "momentum", "adam"}
    sizes = [r.n_train for r in by("training-set size")]
    assert min(sizes) <= 100 and max(sizes) >= 10_000
    for r in grid:  # every other regime differs from the baseline in exactly one factor
        diff = sum(a != b for a, b in ((r.optimizer, base.optimizer), (r.lr_fraction, base.lr_fraction),
                                       (r.batch_size, base.batch_size), (r.n_train, base.n_train)))
        assert diff <= 1 or (r.optimizer == "adam" and diff <= 1)


# ----------------------------------------------------------------------------- the regime of the derivation


def _overfitting_toy():
    """A float64 3-class problem that overfits within 600 full-batch GD steps (argmin S_E at step 250):
    24 training and 300 test points around Gaussian class centres, and a silu TwoLayer (H = 16)."""
    from actionlab.models import TwoLayer

    g = torch.Generator().manual_seed(3)
    M, E, H, n = 3, 6, 16, 24
    centres = 1.2 * torch.randn(M, E, generator=g, dtype=torch.float64)
    y_tr, y_te = torch.arange(n) % M, torch.arange(300) % M
    z_tr = centres[y_tr] + torch.randn(n, E, generator=g, dtype=torch.float64)
    z_te = centres[y_te] + torch.randn(300, E, generator=g, dtype=torch.float64)
    model = TwoLayer.glorot(M, H, E, activation="silu", generator=g, dtype=torch.float64)
    return z_tr, y_tr, z_te, y_te, model


def test_rule_fires_at_argmin_S_E_under_small_step_full_batch_gd():
    """Full-batch GD, float64, small η, dot product on the full sets every step: |rule − argmin S_E| ≤ 1.

    S_E is recomputed independently (a plain forward pass after every step), not taken from the callback.
    """
    from actionlab import train as T

    z_tr, y_tr, z_te, y_te, model = _overfitting_toy()
    n = len(y_tr)
    rule = T.GradientAlignmentStop((z_tr, y_tr), (z_te, y_te), every=1, stop=False)
    s_e: list[float] = []

    class Watch:
        def on_step_end(self, state):
            with torch.no_grad():
                s_e.append(float(torch.nn.functional.cross_entropy(state.model(z_te), y_te)))
            return False

    steps = 600  # argmin S_E at step 250
    spec = T.TrainSpec(epochs=steps, max_steps=steps, batch_size=n, seed=0, eval_every=steps, progress=False)
    T.Trainer(model, (z_tr, y_tr), optimizer=T.OptimizerSpec("sgd", lr=0.05), spec=spec,
              callbacks=(rule, Watch())).run()
    tr = rule.as_dict()
    assert tr["step"] == list(range(steps + 1))
    np.testing.assert_allclose(tr["S_E"][1:], s_e, rtol=1e-12)
    k_min = int(np.argmin(tr["S_E"]))
    assert 0 < k_min < steps - 50, "the problem must overfit within the budget"
    k_rule = first_nonpositive(tr["dot"], tr["step"])
    assert k_rule is not None and abs(k_rule - k_min) <= 1
    # the first-order step: S_E(k+1) − S_E(k) = −η ∇S_E·∇S_T + O(η²); at η = 0.05 the O(η²) rest is < 10 %
    # of the largest first-order change (about 7 % here, at the first step)
    d_se = np.diff(tr["S_E"])
    pred = -0.05 * np.array(tr["dot"][:-1])
    assert np.max(np.abs(d_se - pred)) < 0.1 * np.max(np.abs(pred))


def test_run_ends_once_S_E_has_passed_its_minimum_with_the_same_argmin_and_rule_step():
    """The early end (rule fired, S_E ≥ min + margin, step ≥ (1 + patience)·argmin) changes neither argmin S_E
    nor the rule's step against the same run trained to its whole budget."""
    from actionlab import train as T
    from actionlab.experiments.early_stop import _PassedMinimum

    def toy(ends: bool):
        z_tr, y_tr, z_te, y_te, model = _overfitting_toy()
        n = len(y_tr)
        rule = T.GradientAlignmentStop((z_tr, y_tr), (z_te, y_te), every=1, stop=False)
        cbs = (rule, _PassedMinimum(rule, margin=0.002, patience=0.5)) if ends else (rule,)
        spec = T.TrainSpec(epochs=600, max_steps=600, batch_size=n, seed=0, eval_every=600, progress=False)
        hist = T.Trainer(model, (z_tr, y_tr), optimizer=T.OptimizerSpec("sgd", lr=0.05), spec=spec, callbacks=cbs).run()
        tr = rule.as_dict()
        return hist, compare_rule(tr["step"], tr["S_E"], tr["dot"], 0.0), tr

    full_hist, full, _ = toy(False)
    short_hist, short, tr = toy(True)
    assert full_hist.steps_done == 600 and short_hist.steps_done < 600 and "passed its minimum" in short_hist.stop_reason
    assert short["min_step"] == full["min_step"] and short["raw"]["rule_step"] == full["raw"]["rule_step"]
    end = short_hist.steps_done
    assert end >= 1.5 * short["min_step"] and tr["S_E"][-1] >= short["min_S_E"] + 0.002  # the stated rule
    assert not short["min_at_end"] and run_gaps(short)["status"] == "measured"


# ----------------------------------------------------------------------------- the quick preset


@pytest.mark.slow
def test_early_stop_quick_regime_table(tmp_path):
    exp = get_experiment("early-stop")
    cfg = make_config(exp.config_cls, "quick", cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "early-stop"
    res = exp.run(cfg, RunOptions(out=out, seed=0, preset="quick"))
    payload = json.loads((out / "results.json").read_text())
    assert {"early_stop_gaps.png", "early_stop_traces.png"} <= set(payload["figures"])
    sweeps = {s for r in res.regimes for s in r["sweeps"]}
    assert sweeps == {"baseline", "step size", "batch size", "optimizer", "training-set size"}
    ids = {c["id"] for c in payload["claims"]}
    assert "001.early-stop" in ids and all(f"001.early-stop.{r['key']}" in ids for r in res.regimes)
    assert all(c["strength"] == "indicative" for c in payload["claims"])  # quick: never firm
    base = next(r for r in res.regimes if r["key"] == res.baseline)
    assert len(base["runs"]) == cfg.seeds and all(r["trace"]["step"][0] == 0 for r in base["runs"])
    for r in base["runs"]:  # small-step full-batch GD: the raw rule at argmin S_E within the grid
        assert r["gap"]["status"] == "measured" and abs(r["gap"]["gap_steps"]) <= 1
        assert all(-1 - 1e-9 <= x <= 1 + 1e-9 for x in r["trace"]["cosine"])
        assert r["lambda_max_init"] > 0 and r["eta"] == pytest.approx(cfg.lr_fraction * 2 / r["lambda_max_init"])
    table = (out / "summary.md").read_text()
    for r in res.regimes:
        assert r["label"] in table


def test_early_stop_config_refuses_nonsense():
    from actionlab._checks import ValueCheckError

    exp = get_experiment("early-stop")
    for bad in ({"sizes": ()}, {"steps": 0}, {"lr_fraction": 0.0}, {"seeds": 1}, {"embedding": "x"},
                {"batch_sizes": ()}, {"momentum": 1.0}, {"adam_lr": 0.0}):
        with pytest.raises(ValueCheckError):
            make_config(exp.config_cls, "quick", **bad)


def test_key_finding_sentence_reads_the_summary_claim():
    from actionlab.experiments.early_stop import EarlyStopResult, overall_measured
    from actionlab.report.findings import KEY_FINDINGS, finding_sentence

    def reg(key, opt, f, bs, n, sweeps, verdict, gap):
        return {"key": key, "label": key, "optimizer": opt, "lr_fraction": f, "batch_size": bs, "n_train": n,
                "sweeps": sweeps, "verdict": verdict,
                "summary": {"gap_steps": _iv(gap, gap - 1, gap + 1), "gap_nats": _iv(0.0, 0.0, 0.0)}}

    res = EarlyStopResult(baseline="b", regimes=[
        reg("b", "gd", 0.05, None, 300, ["baseline", "step size", "batch size", "optimizer"], "holds", 0.0),
        reg("f2", "gd", 0.2, None, 300, ["step size"], "holds", 0.5),
        reg("f5", "gd", 0.5, None, 300, ["step size"], "does not hold", 20.0),
        reg("f9", "gd", 0.9, None, 300, ["step size"], "holds", 0.0),  # above a failing fraction: not counted
        reg("m16", "gd", 0.05, 16, 300, ["batch size"], "does not hold", 9.0),
        reg("adam", "adam", 0.05, None, 300, ["optimizer"], "does not hold", 60.0)])
    m = overall_measured(res)
    assert m["gd_holds_up_to_f"] == 0.2
    assert m["minibatch"] == {"m16": "9.0 steps (does not hold)"} and "adam" in m["optimizer"]
    claim = {"measured": m, "document_value": "rule step = argmin S_E", "verdict": "holds", "strength": "firm",
             "claim": "c", "source": "001", "details": "", "evidence": {}}
    text = finding_sentence(KEY_FINDINGS["001.early-stop"], claim, "run")
    assert "holds up to η = 0.2·2/λ_max" in text and "m16" in text and text.startswith("Early stopping")
