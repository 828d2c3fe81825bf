"""The θ* analysis helpers: the radius of convergence in t, the path 0 → θ*, the verdict rules of
theta-star / embedding-dim / j-stats (fed numbers on both sides of their thresholds) and BuildOptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actionlab import expansion
from actionlab.config import RunOptions
from actionlab.experiments._trained import BuildOptions, SeriesRadius, activation_pole_bound, series_radius
from actionlab.experiments.embedding_dim import judge_vanishes, smallest_dominant_E, trend
from actionlab.experiments.j_stats import judge_range
from actionlab.experiments.theta_star import along_path, judge_against, judge_all_below


def _model(M=3, H=5, E=4, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = lambda *s: scale * torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return expansion.as_params((f(M, H), f(M), f(H, E), f(H)), activation="silu")


# ----------------------------------------------------------------------------- radius


def test_series_radius_of_log_one_plus_t_over_r():
    r0 = 0.5
    coeffs = [math.log(2.0)] + [(-1) ** (k + 1) / (k * r0**k) for k in range(1, 40)]  # log(1 + t/r0) + const
    r = series_radius(coeffs, tail=6)
    assert r.orders == list(range(34, 40))
    assert r.low <= r.estimate <= r.high
    assert r.estimate == pytest.approx(r0, rel=0.12)  # |a_k|^{-1/k} = r0 · k^{1/k} → r0
    assert r.high - r.low < 0.02  # the spread across the last orders is small for a clean series
    assert r.location(0.2) == "inside" and r.location(1.0) == "outside"
    assert series_radius([1.0, 0.0, 0.0]).estimate == math.inf


def test_series_radius_location_uses_the_activation_bound():
    r = SeriesRadius(2.0, 1.5, 2.5, [4, 5], [1.5, 2.5], activation_bound=0.8)
    assert r.radius == 0.8 and r.location(1.0) == "outside" and r.location(0.3) == "inside"
    assert SeriesRadius(2.0, 1.5, 2.5, [4, 5], [1.5, 2.5]).location(2.0) == "ambiguous"


def test_activation_pole_bound_against_direct_preactivations_and_the_series():
    p = _model()
    z = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h = z @ p.W.T + p.b
    assert activation_pole_bound(p, z, batch_size=3) == pytest.approx(math.pi / float(h.abs().max()), rel=1e-12)
    # one sample, small readout: t ↦ S(tθ) is singular at SiLU's pole t·h = iπ (|t| = π/2 here) and at the zeros of
    # Σ_a exp f_a(t) near it, so the root test of the exact order-60 series (an independent computation, Taylor
    # mode) sits just inside the bound; with a large readout the log-sum-exp zeros come closer: only an upper bound
    z1, y1 = torch.ones(1, 1, dtype=torch.float64), torch.tensor([0])
    for u, lo, hi in ((0.1, 0.9, 1.0), (1.0, 0.3, 0.8)):
        U = torch.tensor([[u], [-u]], dtype=torch.float64)  # distinct logits: S varies with t
        q = expansion.as_params((U, torch.zeros(2, dtype=torch.float64), torch.tensor([[2.0]], dtype=torch.float64),
                                 torch.zeros(1, dtype=torch.float64)), activation="silu")
        bound = activation_pole_bound(q, z1)
        assert bound == pytest.approx(math.pi / 2)
        r = series_radius(expansion.action_series(q, z1, y1, 60), tail=6)
        assert lo * bound < r.estimate < hi * bound, (u, r.estimate, bound)


def test_along_path_inside_the_radius_matches_the_exact_action():
    p = _model(scale=0.6)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(40, 4, dtype=torch.float64, generator=g)
    y = torch.arange(40) % 3
    coeffs = expansion.action_series(p, z, y, 16)
    T = expansion.terms(p, z, y, exact=True)
    terms = [{"name": t.name, "order": t.order, "value": t.value} for t in T.terms]
    r = series_radius(coeffs, 6, activation_pole_bound(p, z))
    t = 0.5 * r.radius
    out = along_path(p, z, y, coeffs, terms, t)
    assert out["contributions"][2] == pytest.approx(float(coeffs[2]) * t**2)
    assert out["partial_sums"][-1] == pytest.approx(out["exact"], rel=1e-6)  # inside the radius the series converges
    # the named terms at t are the S_2 and S_3 terms times t^n; they sum to S_2 t² + S_3 t³
    assert sum(out["named_terms"].values()) == pytest.approx(float(coeffs[2]) * t**2 + float(coeffs[3]) * t**3, rel=1e-9)
    delta = out["exact"] - float(coeffs[0])
    assert out["largest_term_part_of_change"] == pytest.approx(out["named_terms"][out["largest_term"]] / delta)
    assert out["truncation_error_PK"] < 1e-4


# ----------------------------------------------------------------------------- verdict rules


def _iv(est, lo, hi, n=3):
    return {"estimate": est, "low95": lo, "high95": hi, "n": n}


def test_judge_against_both_sides_straddle_and_strength():
    assert judge_against(_iv(0.8, 0.7, 0.9), 0.5, above=True, quick=False) == ("holds", "firm")
    assert judge_against(_iv(0.3, 0.2, 0.4), 0.5, above=True, quick=False) == ("does not hold", "firm")
    assert judge_against(_iv(0.5, 0.4, 0.6), 0.5, above=True, quick=False) == ("inconclusive", "indicative")
    assert judge_against(_iv(0.8, 0.7, 0.9), 0.5, above=True, quick=True) == ("holds", "indicative")
    assert judge_against(_iv(0.8, 0.7, 0.9, n=2), 0.5, above=True, quick=False)[1] == "indicative"
    assert judge_against(_iv(0.8, math.nan, math.nan, n=1), 0.5, above=True, quick=False) == ("holds", "indicative")
    assert judge_against(_iv(0.3, 0.2, 0.4), 0.5, above=False, quick=False) == ("holds", "firm")


def test_judge_all_below():
    good, bad, mid = _iv(0.1, 0.05, 0.2), _iv(2.0, 1.5, 2.5), _iv(1.0, 0.5, 1.5)
    assert judge_all_below([good, good], [1.0, 1.0], quick=False) == ("holds", "firm")
    assert judge_all_below([good, bad], [1.0, 1.0], quick=False) == ("does not hold", "firm")
    assert judge_all_below([good, mid], [1.0, 1.0], quick=False) == ("inconclusive", "indicative")


def _rows(share_of_E, seeds=(0, 1, 2), dims=(2, 4, 8, 16, 32, 64, 128, 256), noise=0.01, seed=0):
    """Synthetic embedding-dim rows: U·W·W's share share_of_E(E) (+ noise), the rest split over two terms."""
    rng = np.random.default_rng(seed)
    rows = []
    for E in dims:
        for s in seeds:
            x = float(np.clip(share_of_E(E) + rng.normal(0, noise), 0, 1))
            rows.append({"E": E, "seed": s, "shares_S3": {"U·W·W": x, "(U·W)·c": 0.6 * (1 - x), "c·c·c": 0.4 * (1 - x)}})
    return rows


def test_trend_and_vanishing_verdict_on_both_sides():
    rising = trend(_rows(lambda E: 0.1 + 0.8 * math.log2(E) / 8), 3)
    assert rising["slope95"]["low"] > 0 and rising["slope95"]["estimate"] == pytest.approx(0.1, rel=0.1)
    assert rising["smallest_dominant_E"] in (8, 16, 32)  # share > 0.6·(1 − share) from ≈ 0.375 on
    assert judge_vanishes(rising, quick=False) == ("holds", "firm")
    assert judge_vanishes(rising, quick=True) == ("holds", "indicative")
    flat = trend(_rows(lambda E: 0.95), 3)  # dominant at every E: dominance does not vanish
    assert flat["smallest_dominant_E"] == 2
    assert judge_vanishes(flat, quick=False) == ("does not hold", "firm")
    noisy = trend(_rows(lambda E: 0.4, noise=0.3, seeds=(0, 1)), 3)
    assert judge_vanishes(noisy, quick=False)[0] in ("inconclusive", "does not hold")
    assert judge_vanishes(noisy, quick=False)[1] == "indicative"  # two seeds are never firm
    assert trend(_rows(lambda E: 0.5, dims=(2, 4)), 3) is None  # no trend from two endpoints


def test_smallest_dominant_E_needs_every_larger_E():
    d = lambda lo: {"difference95": {"low": lo}}  # noqa: E731
    per_E = [dict(E=E, **d(lo)) for E, lo in ((2, -0.1), (4, 0.2), (8, -0.05), (16, 0.1), (32, 0.3))]
    assert smallest_dominant_E(per_E) == 16
    assert smallest_dominant_E(per_E[:3]) is None


def _trend(diffs, slope, seeds=(0, 1, 2)):
    """A hand-made trend: per E the paired difference's 95 % interval (low, high), the slope's (low, high)."""
    per_E = [{"E": 2**k, "difference95": {"low": lo, "high": hi}} for k, (lo, hi) in enumerate(diffs, start=1)]
    return {"per_E": per_E, "seeds": list(seeds), "slope95": {"low": slope[0], "high": slope[1]}}


def test_judge_vanishes_reads_the_whole_trend():
    lost, unsure, won = (-0.3, -0.1), (-0.1, 0.1), (0.1, 0.3)
    # another term wins at small E, the candidate from E = 8 on, rising share: holds
    assert judge_vanishes(_trend([lost, lost, won, won], (0.01, 0.05)), quick=False) == ("holds", "firm")
    # undetermined at the smallest E but lost at E = 4, below E0 = 8: still holds (not read off the endpoints)
    assert judge_vanishes(_trend([unsure, lost, won, won], (0.01, 0.05)), quick=False) == ("holds", "firm")
    # the same numbers with the slope's interval straddling 0, or just below the threshold: not holds
    assert judge_vanishes(_trend([lost, lost, won, won], (-0.01, 0.05)), quick=False) == ("inconclusive", "indicative")
    assert judge_vanishes(_trend([lost, lost, won, won], (0.01, 0.05)), quick=False, slope_threshold=0.02)[0] == "inconclusive"
    # dominant at the smallest E: does not hold, whatever the slope
    assert judge_vanishes(_trend([won, won, won, won], (0.01, 0.05)), quick=False) == ("does not hold", "firm")
    assert judge_vanishes(_trend([(0.001, 0.3), won, won, won], (-0.1, 0.2)), quick=False)[0] == "does not hold"
    # the share falls as E grows (slope's interval below 0): does not hold
    assert judge_vanishes(_trend([unsure, unsure, unsure, lost], (-0.05, -0.01)), quick=False)[0] == "does not hold"
    # never distinguishably dominant at the largest E: no E0, inconclusive; dominance never lost: inconclusive
    assert judge_vanishes(_trend([lost, lost, unsure, unsure], (0.01, 0.05)), quick=False)[0] == "inconclusive"
    assert judge_vanishes(_trend([unsure, unsure, won, won], (0.01, 0.05)), quick=False)[0] == "inconclusive"
    # fewer than three seeds or a quick preset: never firm
    assert judge_vanishes(_trend([lost, lost, won, won], (0.01, 0.05), seeds=(0, 1)), quick=False) == ("holds", "indicative")
    assert judge_vanishes(_trend([won, won, won, won], (0.01, 0.05)), quick=True) == ("does not hold", "indicative")


def test_judge_range_both_sides():
    assert judge_range({"a": (-0.5, 0.5), "b": (-0.1, 0.07)}, quick=False) == ("holds", "firm")
    assert judge_range({"a": (-0.5, 0.5)}, quick=False) == ("does not hold", "firm")
    assert judge_range({"a": (-0.5, 0.5)}, quick=True) == ("does not hold", "indicative")
    assert judge_range({}, quick=False)[0] == "not yet measured"


def test_build_options_from_a_config_and_run_options():
    cfg = type("C", (), {"cache": False, "cache_dir": "/tmp/x"})()
    b = BuildOptions.of(cfg, RunOptions(out="/tmp/o", seed=4, device="cpu"), progress=False)
    assert (b.seed, b.device, b.cache, b.cache_dir, b.progress) == (4, "cpu", False, "/tmp/x", False)
    assert BuildOptions.of(object(), RunOptions(out="/tmp/o", seed=4), seed=7).seed == 7


def test_embedding_dim_refuses_a_kinked_activation_before_training(tmp_path, monkeypatch):
    """relu has no J-term decomposition: embedding-dim must fail with the ValueCheckError of
    expansion.terms before loading data or training any θ* (the trainer is never reached)."""
    from actionlab._checks import ValueCheckError
    from actionlab.experiments import embedding_dim as ed

    def no_training(*args, **kwargs):
        raise AssertionError("a θ* was trained before the activation was checked")

    monkeypatch.setattr(ed, "get_theta_star", no_training)
    monkeypatch.setattr(ed, "load_splits", no_training)
    config = ed.EmbeddingDimConfig(activation="relu")
    with pytest.raises(ValueCheckError, match="relu is not analytic at 0"):
        ed.run(config, RunOptions(out=str(tmp_path / "ed")))
    expansion.check_terms_activation("silu")  # an analytic σ with σ(0) = 0 passes
    with pytest.raises(ValueCheckError, match="σ\\(0\\) = 0"):
        expansion.check_terms_activation("sigmoid")
