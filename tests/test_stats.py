"""Tests of actionlab.stats against independent references.

References: direct formulas with scipy's t quantile, numpy least squares,
exact enumeration of the signed-rank distribution, a multi-start
``scipy.optimize.least_squares`` / ``nnls`` for the curve fits, and simulation
of known laws with stated tolerances (coverage over ≥ 200 repetitions).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import least_squares, nnls

from actionlab._checks import ShapeError, ValueCheckError
from actionlab.stats import (
    MODELS,
    bootstrap_interval,
    compare_models,
    fit_power_law,
    mean_interval,
    paired_difference,
    robust_loglog_fit,
    slope_interval,
)

SIZES = 2.0 ** np.linspace(4, 12, 10)  # the notes' ten widths 2^4 … 2^12


def _law(alpha, l_inf, sizes=SIZES):
    """a·N^(−α) + L∞ with a chosen so that the reducible part is 1 at N = 16."""
    return 16.0**alpha * sizes ** (-alpha) + l_inf


def _noisy(mu, rng, noise=0.03, seeds=5):
    return mu[:, None] * (1.0 + noise * rng.standard_normal((mu.size, seeds)))


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("level", [0.68, 0.95])
def test_t_interval_matches_direct_formula(level):
    x = np.random.default_rng(0).normal(2.0, 0.5, size=7)
    iv = mean_interval(x, level=level)
    m, s = x.mean(), x.std(ddof=1)
    half = st.t.ppf((1 + level) / 2, 6) * s / math.sqrt(7)
    assert iv.estimate == pytest.approx(m, rel=1e-12)
    assert iv.low == pytest.approx(m - half, rel=1e-12)
    assert iv.high == pytest.approx(m + half, rel=1e-12)
    assert (iv.level, iv.method, iv.n) == (level, "t", 7)
    assert iv.contains(m) and not iv.contains(m + 2 * half)


def test_t_interval_coverage_on_normal_data():
    rng = np.random.default_rng(1)
    hits = [mean_interval(rng.normal(1.0, 2.0, 5)).contains(1.0) for _ in range(1000)]
    assert 0.64 <= np.mean(hits) <= 0.72  # nominal 0.68, binomial sd 0.015


def test_bootstrap_mean_interval_coverage_roughly_nominal():
    rng = np.random.default_rng(2)
    hits = [mean_interval(rng.normal(0.0, 1.0, 30), method="bootstrap", n_resamples=999, seed=i).contains(0.0)
            for i in range(300)]
    assert 0.58 <= np.mean(hits) <= 0.76  # percentile bootstrap, n = 30: slightly below 0.68


def test_bootstrap_interval_any_statistic_and_paired():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    iv = bootstrap_interval(np.median, x, level=0.9, n_resamples=2000, seed=1)
    assert iv.estimate == pytest.approx(np.median(x))
    assert iv.low < iv.estimate < iv.high and iv.method == "bootstrap"
    # the percentile interval is the quantiles of the resampled statistic: it lies inside the data range
    assert x.min() <= iv.low and iv.high <= x.max()
    y = x + 0.1 * rng.normal(size=40)
    corr = bootstrap_interval(lambda a, b: np.corrcoef(a, b)[0, 1], x, y, paired=True, n_resamples=500, seed=0)
    assert 0.95 < corr.low <= corr.estimate <= corr.high <= 1.0
    const = bootstrap_interval(np.mean, np.full(5, 2.5))
    assert (const.low, const.estimate, const.high) == (2.5, 2.5, 2.5)
    same_seed = bootstrap_interval(np.median, x, n_resamples=500, seed=7)
    assert same_seed == bootstrap_interval(np.median, x, n_resamples=500, seed=7)


def _signed_rank_p_exact(d):
    """Two-sided exact Wilcoxon p-value by enumerating all 2^n sign patterns."""
    ranks = st.rankdata(np.abs(d))
    w_obs = ranks[d > 0].sum()
    mean = ranks.sum() / 2
    ws = np.array([sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=d.size)])
    return float(np.mean(np.abs(ws - mean) >= abs(w_obs - mean) - 1e-12))


def test_paired_difference_against_references_and_sign_symmetry():
    rng = np.random.default_rng(4)
    a = rng.normal(1.0, 1.0, 8)
    b = a - 0.4 + 0.5 * rng.normal(size=8)
    ab, ba = paired_difference(a, b), paired_difference(b, a)
    ref = mean_interval(a - b)
    assert (ab.difference.estimate, ab.difference.low, ab.difference.high) == pytest.approx(
        (ref.estimate, ref.low, ref.high))
    assert ba.difference.estimate == pytest.approx(-ab.difference.estimate)
    assert (ba.difference.low, ba.difference.high) == pytest.approx((-ab.difference.high, -ab.difference.low))
    assert ab.p_wilcoxon == pytest.approx(ba.p_wilcoxon) and ab.p_t == pytest.approx(ba.p_t)
    assert ab.p_wilcoxon == pytest.approx(_signed_rank_p_exact(a - b), abs=1e-9)
    assert ab.p_t == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert (ab.mean_a, ab.mean_b, ab.n) == (pytest.approx(a.mean()), pytest.approx(b.mean()), 8)


def test_paired_difference_degenerate_cases():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    same = paired_difference(a, a)
    assert (same.p_wilcoxon, same.p_t, same.difference.estimate) == (1.0, 1.0, 0.0)
    shifted = paired_difference(a + 1.0, a)
    assert shifted.p_t == 0.0 and shifted.difference.low == shifted.difference.high == pytest.approx(1.0)
    with pytest.raises(ShapeError, match="pair them by seed"):
        paired_difference(a, a[:3])


# --------------------------------------------------------------------------- trends


def test_slope_interval_pooled_against_least_squares_formula():
    rng = np.random.default_rng(5)
    x = np.log(np.array([8.0, 16, 32, 64, 128]))
    y = 0.3 + 0.05 * x[:, None] + 0.02 * rng.normal(size=(5, 4))
    fit = slope_interval(x, y, level=0.95, method="pooled")
    X = np.column_stack([np.ones(20), np.repeat(x, 4)])
    coef, res, *_ = np.linalg.lstsq(X, y.ravel(), rcond=None)
    s2 = res[0] / (20 - 2)
    se = math.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1])
    half = st.t.ppf(0.975, 18) * se
    assert fit.slope.estimate == pytest.approx(coef[1]) and fit.intercept == pytest.approx(coef[0])
    assert (fit.slope.low, fit.slope.high) == pytest.approx((coef[1] - half, coef[1] + half))
    assert (fit.n_points, fit.n_seeds, fit.method) == (5, 4, "pooled")


def test_slope_interval_over_seeds_is_t_interval_of_per_seed_slopes():
    rng = np.random.default_rng(6)
    x = np.arange(6.0)
    y = 1.0 - 0.2 * x[:, None] + 0.1 * rng.normal(size=(6, 5)) + rng.normal(size=5)  # a seed offset
    fit = slope_interval(x, y)
    slopes = np.polyfit(x, y, 1)[0]
    ref = mean_interval(slopes)
    assert (fit.slope.estimate, fit.slope.low, fit.slope.high) == pytest.approx((ref.estimate, ref.low, ref.high))
    with pytest.raises(ValueCheckError, match="method='pooled'"):
        slope_interval(x, y[:, 0])
    with pytest.raises(ShapeError, match="rows"):
        slope_interval(x, y[:5])


# --------------------------------------------------------------------------- power-law fits


@pytest.mark.parametrize("alpha,l_inf", [(0.1, 0.3), (0.7, 0.3), (0.5, 0.0), (1.5, 0.05)])
def test_fit_power_law_recovers_noiseless_law(alpha, l_inf):
    losses = np.repeat(_law(alpha, l_inf)[:, None], 3, axis=1)
    fit = fit_power_law(SIZES, losses, compare=False)
    assert fit.alpha == pytest.approx(alpha, abs=1e-6)
    assert fit.a == pytest.approx(16.0**alpha, rel=1e-5)
    assert fit.l_inf == pytest.approx(l_inf, abs=1e-6)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-9) and fit.rmse_relative < 1e-7
    np.testing.assert_allclose(fit.predict(SIZES), losses[:, 0], rtol=1e-6)


def _best_least_squares(sizes, ybar):
    """Independent reference: multi-start bounded least_squares on the relative residuals."""
    best = (np.inf, None)
    for alpha0 in (0.05, 0.2, 0.5, 1.0, 2.0):
        for l0 in (0.0, 0.5 * ybar.min(), 0.9 * ybar.min()):
            r = least_squares(lambda p: (ybar - p[0] * (sizes / sizes[0]) ** (-p[1]) - p[2]) / ybar,
                              [ybar[0] - l0, alpha0, l0], bounds=([0, 0, 0], [np.inf, 4, np.inf]),
                              xtol=1e-15, ftol=1e-15, gtol=1e-15)
            if 2 * r.cost < best[0]:
                best = (2 * r.cost, r.x)
    return best


def test_fit_power_law_is_the_global_least_squares_optimum():
    rng = np.random.default_rng(7)
    for alpha in (0.1, 0.3, 0.7):
        for _ in range(2):
            losses = _noisy(_law(alpha, 0.3), rng)
            fit = fit_power_law(SIZES, losses, compare=False)
            rss_ref, p = _best_least_squares(SIZES, losses.mean(axis=1))
            rss = fit.rmse_relative**2 * SIZES.size
            assert rss <= rss_ref * (1 + 1e-7) + 1e-15
            assert fit.alpha == pytest.approx(p[1], abs=1e-4)


def test_jackknife_alphas_are_refits_without_each_seed():
    rng = np.random.default_rng(8)
    losses = _noisy(_law(0.3, 0.3), rng)
    fit = fit_power_law(SIZES, losses, compare=False, interval="jackknife")
    loo = [fit_power_law(SIZES, np.delete(losses, j, axis=1), compare=False).alpha for j in range(5)]
    np.testing.assert_allclose(fit.jackknife_alphas, loo, atol=1e-8)
    se = math.sqrt(4 / 5 * np.sum((np.array(loo) - np.mean(loo)) ** 2))
    half = st.t.ppf(0.84, 4) * se
    assert (fit.alpha_interval.low, fit.alpha_interval.high) == pytest.approx((fit.alpha - half, fit.alpha + half))


def _profile_rss(ybar, alpha):
    """Independent reference for the profile: nnls for (a, L∞) at fixed α, relative residuals."""
    X = np.column_stack([(SIZES / SIZES[0]) ** (-alpha), np.ones_like(SIZES)]) / ybar[:, None]
    return nnls(X, np.ones_like(ybar))[1] ** 2


def test_profile_interval_ends_sit_on_the_threshold():
    rng = np.random.default_rng(9)
    losses = _noisy(_law(0.3, 0.3), rng)
    fit = fit_power_law(SIZES, losses, compare=False)
    ybar = losses.mean(axis=1)
    s2 = np.sum(((losses - ybar[:, None]) / ybar[:, None]) ** 2) / (10 * 4)
    threshold = _profile_rss(ybar, fit.alpha) + st.t.ppf(0.84, 40) ** 2 * s2 / 5
    iv = fit.alpha_interval
    assert iv.low < fit.alpha < iv.high and iv.method.startswith("profile")
    assert _profile_rss(ybar, iv.low) == pytest.approx(threshold, rel=1e-6)
    assert _profile_rss(ybar, iv.high) == pytest.approx(threshold, rel=1e-6)


@pytest.mark.parametrize("alpha,l_inf", [(0.1, 0.3), (0.3, 0.3), (0.7, 0.3), (0.3, 0.0)])
def test_alpha_interval_coverage_from_seeds(alpha, l_inf):
    """The 68 % interval covers the true α in 60–76 % of 200 simulated experiments.

    10 sizes 2^4…2^12, 5 seeds, 3 % relative noise per (size, seed), independent
    across seeds; binomial sd of the coverage ≈ 0.033.
    """
    rng = np.random.default_rng(100 + int(100 * alpha) + int(10 * l_inf))
    mu = _law(alpha, l_inf)
    hits = [fit_power_law(SIZES, _noisy(mu, rng), compare=False).alpha_interval.contains(alpha) for _ in range(200)]
    assert 0.60 <= np.mean(hits) <= 0.76


# --------------------------------------------------------------------------- model comparison


def test_model_comparison_criteria_follow_their_formulas():
    rng = np.random.default_rng(10)
    losses = _noisy(_law(0.5, 0.2), rng, noise=0.01)
    comp = compare_models(SIZES, losses)
    ybar = losses.mean(axis=1)
    assert [r.name for r in comp.rows] == list(MODELS)
    for row in comp.rows:
        p = row.parameters
        if row.name == "saturating power law":
            f = p["a"] * SIZES ** (-p["alpha"]) + p["l_inf"]
        elif row.name == "pure power law":
            f = p["a"] * SIZES ** (-p["alpha"])
        elif row.name == "exponential saturation":
            f = p["a"] * np.exp(-SIZES / p["tau"]) + p["l_inf"]
        else:
            f = p["b"] - p["c"] * np.log(SIZES)
        rss = np.sum(((ybar - f) / ybar) ** 2)
        assert row.rss == pytest.approx(rss, rel=1e-9)
        n, k = 10, row.k
        assert row.aic == pytest.approx(n * math.log(rss / n) + 2 * k)
        assert row.bic == pytest.approx(n * math.log(rss / n) + k * math.log(n))
        assert row.aicc == pytest.approx(row.aic + 2 * k * (k + 1) / (n - k - 1))
        assert row.heldout_error > 0
    assert comp.best == "saturating power law"
    assert comp.row("pure power law").k == 2
    with pytest.raises(ValueCheckError, match="choose one of"):
        comp.row("cubic")


def _heldout_reference(sizes, ybar, i):
    """Refit the saturating law without size i through the public function, predict size i."""
    keep = np.arange(sizes.size) != i
    fit = fit_power_law(sizes[keep], ybar[keep, None], compare=False)
    return (ybar[i] - fit.predict(sizes[i])) / ybar[i]


def test_heldout_error_is_leave_one_size_out():
    rng = np.random.default_rng(11)
    ybar = _noisy(_law(0.4, 0.2), rng, noise=0.01).mean(axis=1)
    comp = compare_models(SIZES, ybar[:, None])
    ref = math.sqrt(np.mean([_heldout_reference(SIZES, ybar, i) ** 2 for i in range(10)]))
    assert comp.row("saturating power law").heldout_error == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("truth", ["pure power law", "exponential saturation", "saturating power law", "logarithmic"])
def test_model_comparison_picks_the_true_law(truth):
    rng = np.random.default_rng(12)
    laws = {
        "pure power law": 3.0 * SIZES**-0.4,
        "exponential saturation": 0.3 + 0.8 * np.exp(-SIZES / 300.0),
        "saturating power law": _law(0.6, 0.3),
        "logarithmic": 2.0 - 0.15 * np.log(SIZES),
    }
    picks = [compare_models(SIZES, _noisy(laws[truth], rng, noise=0.01)).best for _ in range(20)]
    assert np.mean([p == truth for p in picks]) >= 0.7, picks


# --------------------------------------------------------------------------- edge cases and bad input


def test_flat_increasing_near_flat_and_one_seed():
    flat = fit_power_law(SIZES, np.full((10, 4), 0.5), compare=False)
    assert any("flat" in w for w in flat.warnings)
    np.testing.assert_allclose(flat.predict(SIZES), 0.5, rtol=1e-12)
    rising = fit_power_law(SIZES, np.linspace(0.4, 0.6, 10)[:, None] * np.ones((1, 3)), compare=False)
    assert any("flat" in w for w in rising.warnings)
    rng = np.random.default_rng(13)
    near = fit_power_law(SIZES, _noisy(0.5 + 0.01 * (SIZES / 16) ** -0.3, rng, noise=0.002))
    assert np.isfinite([near.alpha, near.alpha_interval.low, near.alpha_interval.high]).all()
    assert near.alpha_interval.low <= near.alpha_interval.high
    one = fit_power_law(SIZES, _law(0.3, 0.2)[:, None])
    assert math.isnan(one.alpha_interval.low) and any("one seed" in w for w in one.warnings)
    assert one.alpha == pytest.approx(0.3, abs=1e-6) and math.isnan(one.lack_of_fit_p)


def test_alpha_at_upper_bound_is_flagged():
    fit = fit_power_law(SIZES, np.repeat((1 + 1e6 * SIZES**-5.0)[:, None], 2, axis=1), compare=False, alpha_max=3.0)
    assert any("upper bound" in w for w in fit.warnings)


@pytest.mark.parametrize(
    "sizes,losses,error,match",
    [
        (SIZES, np.ones((9, 3)), ShapeError, "transpose"),
        (SIZES, np.ones(10), ShapeError, r"\[:, None\]"),
        (SIZES[:2], np.ones((2, 3)), ValueCheckError, "at least 3 sizes"),
        (np.r_[0.0, SIZES[1:]], np.ones((10, 3)), ValueCheckError, "sizes must be > 0"),
        (np.r_[SIZES[:9], SIZES[8]], np.ones((10, 3)), ValueCheckError, "distinct"),
        (SIZES, np.where(np.eye(10, 3) > 0, np.nan, 1.0), ValueCheckError, "NaN"),
        (SIZES, -np.ones((10, 3)), ValueCheckError, "losses must be > 0"),
    ],
)
def test_fit_power_law_rejects_bad_input(sizes, losses, error, match):
    with pytest.raises(error, match=match):
        fit_power_law(sizes, losses)


def test_bad_options_are_rejected():
    losses = np.ones((10, 3))
    with pytest.raises(ValueCheckError, match="level"):
        fit_power_law(SIZES, losses, level=68)
    with pytest.raises(ValueCheckError, match="interval method"):
        fit_power_law(SIZES, losses, interval="bayes")
    with pytest.raises(ValueCheckError, match="interval method"):
        mean_interval([1.0, 2.0], method="z")
    with pytest.raises(ValueCheckError, match="at least 2"):
        mean_interval([1.0])


# --------------------------------------------------------------------------- the notes' log–log line


def test_robust_loglog_fit_exact_law_and_planted_outlier():
    alpha = 0.25
    y = 3.0 * SIZES**-alpha
    exact = robust_loglog_fit(SIZES, y)
    assert exact.alpha == pytest.approx(alpha) and exact.slope == pytest.approx(-alpha)
    assert exact.intercept == pytest.approx(math.log2(3.0)) and exact.n_used == 10 and not exact.outliers.any()
    rng = np.random.default_rng(14)
    y_noisy = y * np.exp(0.01 * rng.standard_normal(10))
    y_noisy[6] *= 1.6  # one failed run
    fit = robust_loglog_fit(SIZES, y_noisy)
    assert fit.outliers[6] and fit.n_used <= 9
    keep = ~fit.outliers
    ref = st.linregress(np.log2(SIZES[keep]), np.log2(y_noisy[keep]))
    assert (fit.slope, fit.intercept, fit.stderr) == pytest.approx((ref.slope, ref.intercept, ref.stderr))
    assert abs(fit.alpha - alpha) < abs(st.linregress(np.log2(SIZES), np.log2(y_noisy)).slope + alpha)
    e10 = robust_loglog_fit(SIZES, y_noisy, base=10.0)
    assert e10.slope == pytest.approx(fit.slope) and e10.base == 10.0
    two_d = robust_loglog_fit(SIZES, np.stack([y, y], axis=1))
    assert two_d.slope == pytest.approx(-alpha)


def test_results_print_short():
    rng = np.random.default_rng(15)
    fit = fit_power_law(SIZES, _noisy(_law(0.3, 0.3), rng))
    text = repr(fit)
    assert "alpha=" in text and "jackknife_alphas" not in text and len(text) < 1200
    assert "ModelComparison" in text and "<table>" in fit._repr_html_()
