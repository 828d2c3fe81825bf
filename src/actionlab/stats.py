"""Statistics over seeds: intervals, paired comparisons, trends and scaling-law fits.

Every experiment that repeats a measurement over seeds reports it through this
module, so that an interval always means the same thing.  The functions are
small and pure, over numpy arrays (torch CPU tensors and lists are accepted);
moments, quantiles, bootstraps, rank tests and regressions are scipy's.

* :func:`mean_interval` — the mean over seeds with a t-interval or a
  percentile-bootstrap interval.
* :func:`bootstrap_interval` — a percentile-bootstrap interval of any
  statistic of one or more samples (``scipy.stats.bootstrap``).
* :func:`paired_difference` — seed-paired comparison of two conditions:
  interval on the mean difference, Wilcoxon signed-rank and paired-t p-values.
* :func:`slope_interval` — a linear trend (e.g. a share against log E) with
  seeds as replicates.
* :func:`fit_power_law` — the saturating power law L(N) = a·N^(−α) + L∞ fitted
  to a (sizes × seeds) table of losses, with an interval on α from the
  variation between seeds and a comparison against alternative laws (:func:`compare_models`).
* :func:`robust_loglog_fit` — the outlier-trimmed log–log line of the source
  notes' scaling script, to report beside the proper fit.

**Seeds must be independent replications.**  An interval here is computed from
the variation *between seed columns*; it is only honest when each seed
retrains everything the seed changes — initialisation, batch order *and* the
learned embedding.  A shared, frozen embedding makes the seeds agree more than
independent replications would, and the interval is then too narrow.

The scaling law itself is the one of the source notes' scaling experiment
(``papers.md``, shuiruge/entropy ``scales/scaling_law_on_fashion_mnist_v2.py``):
the test loss against the parameter count N over ten widths 2⁴…2¹².
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

from actionlab._checks import ShapeError, ValueCheckError, check_choice
from actionlab._display import short_repr

__all__ = [
    "Interval",
    "PairedComparison",
    "SlopeFit",
    "ModelComparisonRow",
    "ModelComparison",
    "PowerLawFit",
    "LogLogFit",
    "MODELS",
    "mean_interval",
    "bootstrap_interval",
    "paired_difference",
    "slope_interval",
    "compare_models",
    "fit_power_law",
    "robust_loglog_fit",
]

# --------------------------------------------------------------------------- input checks


def _array(x, name: str, ndim: tuple[int, ...]) -> np.ndarray:
    """``x`` as a finite float64 array with one of the allowed numbers of dimensions."""
    try:
        arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueCheckError(f"{name} must be an array of numbers, got {type(x).__name__} ({exc})") from None
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        hint = f"; for one seed pass {name}[:, None]" if 2 in ndim and 1 not in ndim and arr.ndim == 1 else ""
        raise ShapeError(f"{name} must be {want}, got shape {arr.shape}{hint}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueCheckError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s), the first at index {first}; "
            f"drop or re-run those seeds before computing statistics"
        )
    return arr


def _sample(x, name: str, min_n: int = 2) -> np.ndarray:
    arr = _array(x, name, (1,))
    if arr.size < min_n:
        raise ValueCheckError(f"{name} has {arr.size} value(s) but at least {min_n} are needed; run more seeds")
    return arr


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise ValueCheckError(f"level must be a probability in (0, 1), e.g. 0.68 or 0.95, got {level!r}")
    return float(level)


def _rng_kwarg(seed: int) -> dict:
    """``scipy.stats.bootstrap`` takes ``rng`` from scipy 1.15 on, ``random_state`` before."""
    params = inspect.signature(_st.bootstrap).parameters
    return {"rng": np.random.default_rng(seed)} if "rng" in params else {"random_state": np.random.default_rng(seed)}


# --------------------------------------------------------------------------- intervals


@short_repr
@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at ``level`` from ``n`` replicates."""

    estimate: float
    low: float
    high: float
    level: float
    method: str
    n: int

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        """Whether ``low ≤ value ≤ high``."""
        return bool(self.low <= value <= self.high)


def _t_interval(estimate: float, se: float, df: int, level: float, method: str, n: int) -> Interval:
    """estimate ± t_{(1+level)/2, df} · se (scipy's t quantile)."""
    q = float(_st.t.ppf(0.5 + level / 2.0, df)) if df > 0 else math.nan
    half = q * se
    return Interval(float(estimate), float(estimate - half), float(estimate + half), level, method, n)


def mean_interval(x, level: float = 0.68, method: str = "t", n_resamples: int = 9999, seed: int = 0) -> Interval:
    """The mean of ``x`` (one value per seed) with an interval at ``level``.

    ``method="t"``: x̄ ± t_{(1+level)/2, n−1} · s/√n with s the sample standard
    deviation (ddof = 1, ``scipy.stats.sem``).  ``method="bootstrap"``: the
    percentile bootstrap of the mean (``scipy.stats.bootstrap``,
    ``n_resamples`` resamples, generator seeded with ``seed``).  With fewer
    than ~10 seeds the percentile bootstrap is too narrow (its spread is
    s·√((n−1)/n)/√n and it ignores the t tail); prefer ``"t"`` there.
    """
    level = _check_level(level)
    check_choice(method, ("t", "bootstrap"), "interval method")
    x = _sample(x, "x")
    if method == "t":
        return _t_interval(float(np.mean(x)), float(_st.sem(x)), x.size - 1, level, "t", x.size)
    return bootstrap_interval(np.mean, x, level=level, n_resamples=n_resamples, seed=seed)


def bootstrap_interval(
    stat: Callable[..., float],
    *samples,
    level: float = 0.68,
    n_resamples: int = 9999,
    seed: int = 0,
    paired: bool = False,
) -> Interval:
    """Percentile-bootstrap interval of ``stat(*samples)``.

    ``scipy.stats.bootstrap(method="percentile")``: resample each sample with
    replacement (jointly, by index, when ``paired``), recompute the statistic
    ``n_resamples`` times and take its (1−level)/2 and (1+level)/2 quantiles.
    ``stat`` may accept an ``axis`` keyword (then it is called vectorised).
    A sample with no spread gives the degenerate interval [stat, stat].
    """
    level = _check_level(level)
    if not samples:
        raise ValueCheckError("bootstrap_interval needs at least one sample after the statistic")
    if int(n_resamples) < 1:
        raise ValueCheckError(f"n_resamples must be ≥ 1 (e.g. 9999), got {n_resamples}")
    arrays = tuple(_sample(s, f"sample {i}") for i, s in enumerate(samples))
    if paired and len({a.size for a in arrays}) != 1:
        raise ShapeError(f"paired samples must have equal lengths, got {[a.size for a in arrays]}")
    estimate = float(stat(*arrays))
    n = arrays[0].size
    if all(np.ptp(a) == 0 for a in arrays):
        return Interval(estimate, estimate, estimate, level, "bootstrap", n)
    res = _st.bootstrap(
        arrays, stat, n_resamples=int(n_resamples), paired=paired, confidence_level=level,
        method="percentile", **_rng_kwarg(seed),
    )
    ci = res.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high), level, "bootstrap", n)


# --------------------------------------------------------------------------- paired comparisons


@short_repr
@dataclass(frozen=True)
class PairedComparison:
    """Condition a against b, paired by seed: the mean of d = a − b with its interval and two tests."""

    difference: Interval
    p_wilcoxon: float
    p_t: float
    mean_a: float
    mean_b: float
    n: int


def paired_difference(
    a, b, level: float = 0.68, method: str = "t", n_resamples: int = 9999, seed: int = 0
) -> PairedComparison:
    """Compare two conditions measured on the same seeds.

    d_s = a_s − b_s per seed s; the interval is :func:`mean_interval` of d
    (t-interval on the differences, or a bootstrap over seeds, which keeps the
    pairs).  ``p_wilcoxon``: the two-sided Wilcoxon signed-rank test of
    median(d) = 0 (``scipy.stats.wilcoxon``, exact for small n); ``p_t``: the
    paired t-test (``scipy.stats.ttest_1samp`` on d).  When every d_s = 0
    both p-values are 1; when d is a non-zero constant, p_t is 0.
    """
    a, b = _sample(a, "a"), _sample(b, "b")
    if a.shape != b.shape:
        raise ShapeError(f"a has {a.size} seeds but b has {b.size}; pair them by seed (same seeds, same order)")
    d = a - b
    diff = mean_interval(d, level=level, method=method, n_resamples=n_resamples, seed=seed)
    if np.all(d == 0):
        p_w = p_t = 1.0
    else:
        p_w = float(_st.wilcoxon(d).pvalue)
        p_t = 0.0 if np.ptp(d) == 0 else float(_st.ttest_1samp(d, 0.0).pvalue)
    return PairedComparison(diff, p_w, p_t, float(np.mean(a)), float(np.mean(b)), a.size)


# --------------------------------------------------------------------------- trends


@short_repr
@dataclass(frozen=True)
class SlopeFit:
    """A straight line y = intercept + slope·x with an interval on the slope."""

    slope: Interval
    intercept: float
    r_value: float
    p_value: float
    n_points: int
    n_seeds: int
    method: str


def slope_interval(x, y, level: float = 0.68, method: str = "seeds") -> SlopeFit:
    """Linear trend of y on x with seeds as replicates.

    ``y`` is (len(x),) for one curve or (len(x), n_seeds).

    * ``method="seeds"`` (default; needs ≥ 2 seeds): the least-squares slope
      of each seed's curve (``scipy.stats.linregress``) and the t-interval over
      seeds (:func:`mean_interval`).  Correlation between the points of one
      seed (shared data, shared embedding) is accounted for.
    * ``method="pooled"``: one regression through all (x, y) pairs; slope ±
      t_{(1+level)/2, m−2} · stderr with m the number of pairs (assumes
      independent points).

    ``intercept``, ``r_value`` and ``p_value`` (slope = 0) are those of the
    pooled regression in both cases.
    """
    level = _check_level(level)
    check_choice(method, ("seeds", "pooled"), "slope method")
    x = _sample(x, "x", min_n=3)
    y = _array(y, "y", (1, 2))
    y2 = y[:, None] if y.ndim == 1 else y
    if y2.shape[0] != x.size:
        raise ShapeError(f"y has {y2.shape[0]} rows but x has {x.size} points; y must be (len(x),) or (len(x), n_seeds)")
    if np.ptp(x) == 0:
        raise ValueCheckError("x has a single distinct value; a slope needs at least two different x")
    r = y2.shape[1]
    pooled = _st.linregress(np.repeat(x, r), y2.ravel())
    if method == "seeds":
        if r < 2:
            raise ValueCheckError("method='seeds' needs y of shape (len(x), n_seeds ≥ 2); pass method='pooled' for one curve")
        slopes = np.array([_st.linregress(x, y2[:, j]).slope for j in range(r)])
        iv = mean_interval(slopes, level=level, method="t")
        slope = Interval(iv.estimate, iv.low, iv.high, level, "t over seeds", r)
    else:
        slope = _t_interval(pooled.slope, pooled.stderr, x.size * r - 2, level, "pooled t", x.size * r)
    return SlopeFit(slope, float(pooled.intercept), float(pooled.rvalue), float(pooled.pvalue), x.size, r, method)


# --------------------------------------------------------------------------- curve models


@dataclass(frozen=True)
class _Curve:
    """A law f(N) = Σ_j c_j·g_j(x; θ) with x = N / N_min, linear coefficients c and at most one θ.

    ``design(x, θ)`` returns the columns g_j (shape (..., n, c)); ``nonneg[j]``
    says whether c_j is constrained to be ≥ 0; ``theta_range(x)`` bounds θ
    (``None`` for a law with no nonlinear parameter); ``params(c, θ, N_min)``
    gives the named parameters in the units of N.
    """

    name: str
    formula: str
    k: int
    nonneg: tuple[bool, ...]
    design: Callable[[np.ndarray, np.ndarray], np.ndarray]
    theta_range: Callable[[np.ndarray, float], tuple[float, float]] | None
    params: Callable[[np.ndarray, float, float], dict[str, float]]


def _stack(*cols: np.ndarray) -> np.ndarray:
    shape = np.broadcast_shapes(*(c.shape for c in cols))
    return np.stack([np.broadcast_to(c, shape) for c in cols], axis=-1)


MODELS: dict[str, _Curve] = {
    "saturating power law": _Curve(
        "saturating power law", "a·N^(−α) + L∞", 3, (True, True),
        lambda x, t: _stack(x ** (-t), np.ones_like(x)),
        lambda x, amax: (0.0, amax),
        lambda c, t, n0: {"a": c[0] * n0**t, "alpha": t, "l_inf": c[1]},
    ),
    "pure power law": _Curve(
        "pure power law", "a·N^(−α)", 2, (True,),
        lambda x, t: _stack(x ** (-t)),
        lambda x, amax: (0.0, amax),
        lambda c, t, n0: {"a": c[0] * n0**t, "alpha": t},
    ),
    "exponential saturation": _Curve(
        "exponential saturation", "a·exp(−N/τ) + L∞", 3, (True, True),
        lambda x, t: _stack(np.exp(-x / np.exp(t)), np.ones_like(x)),
        lambda x, amax: (math.log(0.1 * x.min()), math.log(10.0 * x.max())),
        lambda c, t, n0: {"a": c[0], "tau": n0 * math.exp(t), "l_inf": c[1]},
    ),
    "logarithmic": _Curve(
        "logarithmic", "b − c·ln N", 2, (False, False),
        lambda x, t: _stack(np.ones_like(x), -np.log(x)),
        None,
        lambda c, t, n0: {"b": c[0] + c[1] * math.log(n0), "c": c[1]},
    ),
}
"""The laws :func:`compare_models` fits, by name.  Documented formulas (L∞ ≥ 0, a ≥ 0)."""

_GRID = 121  # grid points over θ before the golden-section refinement
_LOCAL = 41  # points of each local grid over [θ − h, θ + h]; h shrinks 20-fold a round
_REFINE = 6  # local rounds after the global grid: final resolution (4/120)/20⁶ ≈ 5e-10 in α


def _solve_support(G: np.ndarray, b: np.ndarray, yy: np.ndarray, support: list[int]):
    """Least squares restricted to the columns in ``support`` (at most 2) from the Gram sums G = XᵀX, b = Xᵀy.

    Returns (coefficients on the support, rss = yᵀy − bᵀc, valid) — ``valid`` is
    False where the support's columns are (numerically) collinear.
    """
    if not support:
        return np.zeros(yy.shape + (0,)), yy, np.ones(yy.shape, bool)
    if len(support) == 1:
        g, bj = G[..., support[0], support[0]], b[..., support[0]]
        valid = g > 0
        c = np.where(valid, bj / np.where(valid, g, 1.0), 0.0)
        return c[..., None], yy - c * bj, valid
    if len(support) == 2:
        i, j = support
        g00, g11, g01, b0, b1 = G[..., i, i], G[..., j, j], G[..., i, j], b[..., i], b[..., j]
        det = g00 * g11 - g01 * g01
        valid = det > 1e-12 * g00 * g11
        safe = np.where(valid, det, 1.0)
        c0, c1 = (g11 * b0 - g01 * b1) / safe, (g00 * b1 - g01 * b0) / safe
        return np.stack([c0, c1], axis=-1), yy - c0 * b0 - c1 * b1, valid
    raise ValueCheckError(f"the internal solver handles laws with at most 2 linear coefficients, got support {support}")


def _lstsq_nonneg(X: np.ndarray, y: np.ndarray, nonneg: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray]:
    """min ‖y − X c‖² subject to c_j ≥ 0 where ``nonneg[j]``; batched over leading axes.

    Exact for the few columns used here: the constrained optimum is the
    unconstrained least-squares fit on its support, so the best feasible fit
    over all supports (that keep every free column) is the optimum.  Supports
    are tried from small to large and a larger one replaces a smaller only if
    it lowers the residual, so exact ties keep the simpler curve.  The rss
    returned is yᵀy − bᵀc (accurate to ~1e-15·yᵀy).
    """
    c = X.shape[-1]
    G = np.einsum("...ni,...nj->...ij", X, X)
    b = np.einsum("...ni,...n->...i", X, y)
    yy = np.broadcast_to(np.einsum("...n,...n->...", y, y), G.shape[:-2])
    free = tuple(j for j in range(c) if not nonneg[j])
    optional = [j for j in range(c) if nonneg[j]]
    best_rss = np.full(G.shape[:-2], np.inf)
    best = np.zeros(G.shape[:-2] + (c,))
    tol = 1e-12 * yy
    for size in range(len(optional) + 1):
        for extra in itertools.combinations(optional, size):
            support = sorted(free + extra)
            coef_s, rss, ok = _solve_support(G, b, yy, support)
            for pos, j in enumerate(support):
                if nonneg[j]:
                    ok = ok & (coef_s[..., pos] >= 0)
            better = ok & (rss < best_rss - tol)
            coef = np.zeros_like(best)
            coef[..., support] = coef_s
            best_rss = np.where(better, rss, best_rss)
            best = np.where(better[..., None], coef, best)
    return best, best_rss


def _profile(curve: _Curve, x: np.ndarray, ybar: np.ndarray, theta: np.ndarray):
    """Relative-residual least squares for fixed θ: rows weighted by 1/ȳ_i, so rss = Σ((ȳ_i − f_i)/ȳ_i)²."""
    w = 1.0 / ybar
    X = curve.design(x, theta[..., None]) * w[..., None]
    return _lstsq_nonneg(X, np.ones_like(ybar), curve.nonneg)


def _rss_at(curve: _Curve, x: np.ndarray, ybar: np.ndarray, thetas: np.ndarray) -> np.ndarray:
    """Profile rss at θ values (B, m) for curves ybar (B, n), x (n,) or (B, n)."""
    xb = x[:, None, :] if np.ndim(x) == 2 else x
    coef, _ = _profile(curve, xb, ybar[:, None, :], thetas)
    return _relative_rss(curve, xb, ybar[:, None, :], thetas, coef)  # from the residuals: no cancellation


def _fit_curves(curve: _Curve, x: np.ndarray, ybar: np.ndarray, theta_max: float):
    """Fit ``curve`` to each row of ``ybar`` (B, n) at abscissae x ((n,) or (B, n)).

    Variable projection: the linear coefficients are solved exactly for each θ
    (:func:`_lstsq_nonneg`); θ is located on a grid of ``_GRID`` points over
    ``theta_range``, then refined by ``_REFINE`` rounds of a local grid of
    ``_LOCAL`` points over [θ − h, θ + h] around the best θ so far, h
    shrinking 20-fold a round (robust to the kink of the profile where a
    constraint such as L∞ ≥ 0 becomes active; the best point evaluated is
    kept) — no starting values, vectorised over B.
    Returns θ (B,), coefficients (B, c) and the relative rss (B,).
    """
    B = ybar.shape[0]
    if curve.theta_range is None:
        theta = np.zeros(B)
        coef, _ = _profile(curve, x, ybar, theta)
        return theta, coef, _relative_rss(curve, x, ybar, theta, coef)
    lo, hi = curve.theta_range(np.asarray(x).ravel(), theta_max)
    grid = np.linspace(lo, hi, _GRID)
    rss_grid = _rss_at(curve, x, ybar, np.broadcast_to(grid, (B, _GRID)))
    i = np.argmin(rss_grid, axis=1)
    theta, best = grid[i], rss_grid[np.arange(B), i]
    h = grid[1] - grid[0]
    offsets = np.linspace(-1.0, 1.0, _LOCAL)
    for _ in range(_REFINE):
        pts = np.clip(theta[:, None] + h * offsets, lo, hi)
        f = _rss_at(curve, x, ybar, pts)
        j = np.argmin(f, axis=1)
        improved = f[np.arange(B), j] < best
        theta = np.where(improved, pts[np.arange(B), j], theta)
        best = np.where(improved, f[np.arange(B), j], best)
        h = 2.0 * h / (_LOCAL - 1)
    coef, _ = _profile(curve, x, ybar, theta)
    return theta, coef, _relative_rss(curve, x, ybar, theta, coef)


def _relative_rss(curve: _Curve, x: np.ndarray, ybar: np.ndarray, theta: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Σ_i ((ȳ_i − f_i)/ȳ_i)² computed from the residuals (no cancellation)."""
    fitted = np.einsum("...nc,...c->...n", curve.design(x, theta[..., None]), coef)
    return np.sum(((ybar - fitted) / ybar) ** 2, axis=-1)


def _predict(curve: _Curve, x: np.ndarray, theta: float, coef: np.ndarray) -> np.ndarray:
    return curve.design(x, np.asarray(theta)) @ coef


def _sizes_and_losses(sizes, losses, min_sizes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Validate (sizes (n,), losses (n, seeds)): n ≥ min_sizes distinct positive sizes, positive finite losses."""
    n = _array(sizes, "sizes", (1,))
    y = _array(losses, "losses", (2,))
    if y.shape[0] != n.size:
        raise ShapeError(
            f"losses has {y.shape[0]} rows but there are {n.size} sizes; losses must be (number of sizes × number of "
            f"seeds), one row per size — transpose it if the seeds are the rows"
        )
    if n.size < min_sizes:
        raise ValueCheckError(f"a scaling fit needs at least {min_sizes} sizes, got {n.size}; measure more sizes")
    if y.shape[1] < 1:
        raise ShapeError("losses has no seed columns; pass shape (number of sizes, number of seeds ≥ 1)")
    if np.any(n <= 0):
        raise ValueCheckError(f"sizes must be > 0 (parameter counts), got min {n.min():g}; drop non-positive sizes")
    if np.unique(n).size != n.size:
        raise ValueCheckError("sizes must be distinct; put repeated runs of one size into the seed columns of losses")
    if np.any(y <= 0):
        raise ValueCheckError(f"losses must be > 0 (test losses), got min {y.min():g}; a zero loss cannot be fitted in relative error")
    return n, y


# --------------------------------------------------------------------------- model comparison


@short_repr
@dataclass(frozen=True)
class ModelComparisonRow:
    """One law fitted to the seed means: its parameters, information criteria and held-out error."""

    name: str
    formula: str
    k: int
    parameters: dict[str, float]
    rss: float
    aic: float
    aicc: float
    bic: float
    heldout_error: float


@short_repr
@dataclass(frozen=True)
class ModelComparison:
    """Every law of :data:`MODELS` fitted to the same curve; ``best`` minimises AICc."""

    rows: tuple[ModelComparisonRow, ...]
    best: str
    best_by_bic: str
    best_by_heldout: str

    def row(self, name: str) -> ModelComparisonRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise ValueCheckError(f"no law {name!r} in this comparison; choose one of: {', '.join(r.name for r in self.rows)}")


def _criteria(rss: float, n: int, k: int) -> tuple[float, float, float]:
    """Gaussian likelihood with one unknown variance: AIC = n·ln(RSS/n) + 2k, AICc = AIC + 2k(k+1)/(n−k−1), BIC = n·ln(RSS/n) + k·ln n."""
    ll = n * math.log(max(rss, n * 1e-24) / n)
    aic = ll + 2 * k
    aicc = aic + 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
    return aic, aicc, ll + k * math.log(n)


def _heldout(curve: _Curve, x: np.ndarray, ybar: np.ndarray, theta_max: float) -> float:
    """Leave-one-size-out error: RMS over i of (ȳ_i − f̂_{−i}(N_i))/ȳ_i, f̂_{−i} fitted without size i."""
    n = x.size
    if n - 1 <= curve.k:
        return math.nan
    keep = ~np.eye(n, dtype=bool)
    xs = np.broadcast_to(x, (n, n))[keep].reshape(n, n - 1)
    ys = np.broadcast_to(ybar, (n, n))[keep].reshape(n, n - 1)
    theta, coef, _ = _fit_curves(curve, xs, ys, theta_max)
    pred = np.einsum("bc,bc->b", curve.design(x[:, None], theta[:, None])[:, 0, :], coef)
    return float(np.sqrt(np.mean(((ybar - pred) / ybar) ** 2)))


def _compare(x: np.ndarray, n0: float, ybar: np.ndarray, theta_max: float) -> ModelComparison:
    rows = []
    for curve in MODELS.values():
        theta, coef, rss = _fit_curves(curve, x, ybar[None, :], theta_max)
        aic, aicc, bic = _criteria(float(rss[0]), x.size, curve.k)
        params = {k: float(v) for k, v in curve.params(coef[0], float(theta[0]), n0).items()}
        rows.append(ModelComparisonRow(curve.name, curve.formula, curve.k, params, float(rss[0]), aic, aicc, bic,
                                       _heldout(curve, x, ybar, theta_max)))
    pick = lambda key: min(rows, key=key).name  # noqa: E731
    held = [r for r in rows if math.isfinite(r.heldout_error)]
    return ModelComparison(tuple(rows), pick(lambda r: r.aicc), pick(lambda r: r.bic),
                           min(held, key=lambda r: r.heldout_error).name if held else "")


def compare_models(sizes, losses, alpha_max: float = 4.0) -> ModelComparison:
    """Fit every law of :data:`MODELS` to the seed means ȳ_i of ``losses`` (sizes × seeds) and rank them.

    All laws are fitted in relative error, rss = Σ_i ((ȳ_i − f(N_i))/ȳ_i)²,
    with their linear coefficients solved exactly and their one nonlinear
    parameter (α or τ) by grid + golden section.  Criteria over the n sizes:
    AIC = n·ln(rss/n) + 2k, AICc = AIC + 2k(k+1)/(n−k−1), BIC = n·ln(rss/n) +
    k·ln n; ``heldout_error`` is the leave-one-size-out RMS relative error
    (NaN when n − 1 ≤ k).  ``best`` is the law of least AICc.
    """
    n, y = _sizes_and_losses(sizes, losses)
    _check_alpha_max(alpha_max)
    n0 = float(n.min())
    return _compare(n / n0, n0, y.mean(axis=1), alpha_max)


def _check_alpha_max(alpha_max: float) -> None:
    if not (isinstance(alpha_max, (int, float)) and 0 < alpha_max < 50):
        raise ValueCheckError(f"alpha_max must be in (0, 50), e.g. 4.0, got {alpha_max!r}")


# --------------------------------------------------------------------------- the power-law fit


@short_repr
@dataclass(frozen=True)
class PowerLawFit:
    """L(N) = a·N^(−α) + L∞ fitted to (sizes × seeds) losses, with intervals from the variation between seeds.

    ``r_squared`` = 1 − Σ(ȳ_i − f_i)²/Σ(ȳ_i − mean ȳ)² over the seed means;
    ``rmse_relative`` = √(rss/n) with rss = Σ((ȳ_i − f_i)/ȳ_i)²;
    ``lack_of_fit_f`` / ``lack_of_fit_p``: the replicate lack-of-fit F test
    (NaN with one seed or n ≤ 3); ``warnings`` lists anything that makes a
    number less meaningful than it looks.
    """

    alpha: float
    alpha_interval: Interval
    a: float
    l_inf: float
    l_inf_interval: Interval
    r_squared: float
    rmse_relative: float
    lack_of_fit_f: float
    lack_of_fit_p: float
    comparison: ModelComparison | None
    n_sizes: int
    n_seeds: int
    jackknife_alphas: np.ndarray = field(repr=False)
    warnings: tuple[str, ...] = ()

    def predict(self, sizes) -> np.ndarray:
        """a·N^(−α) + L∞ at ``sizes``."""
        n = _array(sizes, "sizes", (0, 1))
        return self.a * n ** (-self.alpha) + self.l_inf


def _jackknife(full: float, loo: np.ndarray, level: float, name: str) -> Interval:
    """Seed jackknife: SE² = (r−1)/r · Σ_j (θ_(j) − mean θ_(·))², interval θ̂ ± t_{(1+level)/2, r−1}·SE."""
    r = loo.size
    if r < 2:
        return Interval(full, math.nan, math.nan, level, "none (one seed)", r)
    se = math.sqrt((r - 1) / r * float(np.sum((loo - loo.mean()) ** 2)))
    return _t_interval(full, se, r - 1, level, f"seed jackknife t ({name})", r)


def _lack_of_fit(y: np.ndarray, fitted: np.ndarray, rss: float, k: int) -> tuple[float, float]:
    """F = (r·rss/(n−k)) / (SS_pe/(n(r−1))), SS_pe = Σ_ij ((y_ij − ȳ_i)/ȳ_i)²; p = F-distribution tail."""
    n, r = y.shape
    ybar = y.mean(axis=1)
    ss_pe = float(np.sum(((y - ybar[:, None]) / ybar[:, None]) ** 2))
    if r < 2 or n <= k or ss_pe <= 0:
        return math.nan, math.nan
    f = (r * rss / (n - k)) / (ss_pe / (n * (r - 1)))
    return float(f), float(_st.f.sf(f, n - k, n * (r - 1)))


def _profile_interval(x: np.ndarray, y: np.ndarray, alpha: float, rss_min: float, level: float, alpha_max: float) -> Interval:
    """Profile interval {α : rss(α) − rss_min ≤ t²_{(1+level)/2, n(r−1)} · s²/r}, s² = SS_pe/(n(r−1)).

    rss(α) is the relative rss of the seed means minimised over a, L∞ at fixed
    α; s² the between-seed (pure-error) variance of one relative loss.  The
    ends are located outward from α̂ on the global grid and refined by
    ``scipy.optimize.brentq``; an end that reaches 0 or ``alpha_max`` stays there.
    """
    from scipy.optimize import brentq

    n, r = y.shape
    ybar = y.mean(axis=1)
    ss_pe = float(np.sum(((y - ybar[:, None]) / ybar[:, None]) ** 2))
    if r < 2 or ss_pe <= 0:
        return Interval(alpha, math.nan, math.nan, level, "none (no spread between seeds)", r)
    df = n * (r - 1)
    delta = float(_st.t.ppf(0.5 + level / 2.0, df)) ** 2 * ss_pe / df / r
    curve = MODELS["saturating power law"]
    g = lambda t: float(_rss_at(curve, x, ybar[None, :], np.array([[t]]))[0, 0]) - rss_min - delta  # noqa: E731
    grid = np.linspace(0.0, alpha_max, _GRID)
    vals = _rss_at(curve, x, ybar[None, :], grid[None, :])[0] - rss_min - delta
    low, inner = 0.0, alpha
    for i in np.flatnonzero(grid < alpha)[::-1]:
        if vals[i] > 0:
            low = brentq(g, grid[i], inner, xtol=1e-10)
            break
        inner = grid[i]
    high, inner = alpha_max, alpha
    for i in np.flatnonzero(grid > alpha):
        if vals[i] > 0:
            high = brentq(g, inner, grid[i], xtol=1e-10)
            break
        inner = grid[i]
    ends = (low, high)
    return Interval(alpha, float(ends[0]), float(ends[1]), level, "profile (pure-error variance)", r)


def fit_power_law(
    sizes, losses, level: float = 0.68, compare: bool = True, alpha_max: float = 4.0, interval: str = "profile"
) -> PowerLawFit:
    """Fit the saturating power law L(N) = a·N^(−α) + L∞ to ``losses`` (number of sizes × number of seeds).

    The point estimate fits the seed means ȳ_i in relative error,
    min Σ_i ((ȳ_i − a·N_i^(−α) − L∞)/ȳ_i)² over a ≥ 0, L∞ ≥ 0, 0 ≤ α ≤
    ``alpha_max`` (variable projection: exact in a, L∞; a grid then nested
    local grids in α; L∞ = 0 is allowed and attained for a pure power law).

    The interval on α (at ``level``) comes from the variation between seeds:

    * ``interval="profile"`` (default): {α : rss(α) − rss(α̂) ≤
      t²_{(1+level)/2, n(r−1)}·s²/r}, rss(α) minimised over a, L∞ at fixed α
      and s² = Σ_ij ((y_ij − ȳ_i)/ȳ_i)²/(n(r−1)) the between-seed variance.
      Nominal coverage when the seeds' errors are independent across sizes;
      conservative when a seed shifts its whole curve.
    * ``interval="jackknife"``: refit with seed column j left out (α_(j)), SE²
      = (r−1)/r·Σ_j (α_(j) − ᾱ_(·))², α̂ ± t_{(1+level)/2, r−1}·SE.  Robust to
      correlation between the sizes of one seed but, with 5 seeds, 55 % to
      78 % coverage of the 68 % interval in the hard cases (small α with
      L∞ > 0, or L∞ = 0).

    Measured coverage: ``docs/stats.md``.  The seed columns must be
    independent replications that retrain everything a seed changes,
    including the embedding.  ``l_inf_interval`` is always the seed
    jackknife.  ``compare=True`` adds :func:`compare_models` (saturating power
    law against a pure power law, an exponential saturation and a logarithmic
    law).
    """
    level = _check_level(level)
    _check_alpha_max(alpha_max)
    check_choice(interval, ("jackknife", "profile"), "interval method")
    n, y = _sizes_and_losses(sizes, losses)
    n0 = float(n.min())
    x = n / n0
    curve = MODELS["saturating power law"]
    r = y.shape[1]
    total = y.sum(axis=1)
    means = [total / r] + ([(total - y[:, j]) / (r - 1) for j in range(r)] if r > 1 else [])
    theta, coef, rss = _fit_curves(curve, x, np.stack(means), alpha_max)
    p = [curve.params(coef[b], float(theta[b]), n0) for b in range(len(means))]
    alpha, a, l_inf = p[0]["alpha"], p[0]["a"], p[0]["l_inf"]
    loo_alpha = np.array([q["alpha"] for q in p[1:]])
    ybar = means[0]
    fitted = _predict(curve, x, theta[0], coef[0])
    ss_tot = float(np.sum((ybar - ybar.mean()) ** 2))
    lof_f, lof_p = _lack_of_fit(y, fitted, float(rss[0]), curve.k)
    return PowerLawFit(
        alpha=alpha,
        alpha_interval=_jackknife(alpha, loo_alpha, level, "α") if interval == "jackknife"
        else _profile_interval(x, y, alpha, float(rss[0]), level, alpha_max),
        a=a,
        l_inf=l_inf,
        l_inf_interval=_jackknife(l_inf, np.array([q["l_inf"] for q in p[1:]]), level, "L∞"),
        r_squared=1.0 - float(np.sum((ybar - fitted) ** 2)) / ss_tot if ss_tot > 0 else math.nan,
        rmse_relative=math.sqrt(float(rss[0]) / n.size),
        lack_of_fit_f=lof_f,
        lack_of_fit_p=lof_p,
        comparison=_compare(x, n0, ybar, alpha_max) if compare else None,
        n_sizes=n.size,
        n_seeds=r,
        jackknife_alphas=loo_alpha,
        warnings=_fit_warnings(alpha, a, alpha_max, r, n.size),
    )


def _fit_warnings(alpha: float, a: float, alpha_max: float, r: int, n: int) -> tuple[str, ...]:
    out = []
    if a <= 0 or alpha <= 0:
        out.append("the fitted curve is flat (the loss does not decrease with size): α is not identified")
    elif alpha >= alpha_max * (1 - 1e-9):
        out.append(f"α is at its upper bound alpha_max = {alpha_max:g}; raise alpha_max or check the data")
    if r < 2:
        out.append("one seed: no interval (the interval needs the variation between ≥ 2 seeds)")
    if n <= 3:
        out.append(f"{n} sizes for 3 parameters: the fit interpolates, the goodness of fit is undefined")
    return tuple(out)


# --------------------------------------------------------------------------- the notes' log–log line


@short_repr
@dataclass(frozen=True)
class LogLogFit:
    """log_b L = intercept + slope·log_b N after the notes' outlier trimming; alpha = −slope."""

    slope: float
    intercept: float
    alpha: float
    r_value: float
    p_value: float
    stderr: float
    outliers: np.ndarray
    n_used: int
    base: float


def robust_loglog_fit(sizes, losses, outlier_sigma: float = 2.0, base: float = 2.0) -> LogLogFit:
    """The "robust linear regression" of the source notes' scaling script, on log_b N and log_b L.

    As in shuiruge/entropy ``scales/scaling_law_on_fashion_mnist_v2.py``: fit
    ``scipy.stats.linregress`` of log₂ L on log₂ N, take the absolute residuals
    e_i, keep the points with mean(e) − σ·std(e) < e_i < mean(e) + σ·std(e)
    (σ = ``outlier_sigma``, std with ddof = 0) and fit again on those.  The
    slope does not depend on ``base``; the intercept does (base 2 as in the
    script).  ``losses`` is (n,) or (n, seeds) — seed means are used.  One
    deviation from the script: if trimming would leave fewer than 3 points
    (e.g. all residuals equal), or every residual is at rounding level (an
    exact power law), every point is kept.  ``outliers`` marks the
    dropped points.
    """
    n = _array(sizes, "sizes", (1,))
    y = _array(losses, "losses", (1, 2))
    y = y.mean(axis=1) if y.ndim == 2 else y
    if y.size != n.size:
        raise ShapeError(f"losses has {y.size} rows but there are {n.size} sizes; one row per size")
    if n.size < 3:
        raise ValueCheckError(f"a log–log fit needs at least 3 sizes, got {n.size}")
    if np.any(n <= 0) or np.any(y <= 0):
        raise ValueCheckError("sizes and losses must be > 0 for a log–log fit; drop non-positive entries")
    if not (base > 1 and outlier_sigma > 0):
        raise ValueCheckError(f"need base > 1 and outlier_sigma > 0, got base={base}, outlier_sigma={outlier_sigma}")
    lx, ly = np.log(n) / math.log(base), np.log(y) / math.log(base)
    first = _st.linregress(lx, ly)
    e = np.abs(ly - (first.intercept + first.slope * lx))
    keep = (e > e.mean() - outlier_sigma * e.std()) & (e < e.mean() + outlier_sigma * e.std())
    if keep.sum() < 3 or e.max() <= 1e-9 * max(1.0, float(np.abs(ly).max())):
        keep = np.ones_like(keep)  # nothing left to fit, or residuals at rounding level: no outliers
    fit = _st.linregress(lx[keep], ly[keep])
    return LogLogFit(float(fit.slope), float(fit.intercept), -float(fit.slope), float(fit.rvalue), float(fit.pvalue),
                     float(fit.stderr), ~keep, int(keep.sum()), float(base))
