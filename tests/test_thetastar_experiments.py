"""The θ* experiments (j-stats, theta-star, embedding-dim, conjecture, early-stop; scaling: tests/test_scaling.py) and their helpers.

Helpers are checked against independent computations; the experiments' quick presets (marked slow) are
checked for structure and for properties that must hold (named terms summing to the exact S_n, the
histogrammed products summing to the terms, partial sums converging for small t, …; early-stop: tests/test_early_stop.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from actionlab.config import RunOptions
from actionlab.experiments import get_experiment, make_config
from actionlab.experiments._trained import dominance, gaussianity, looks_gaussian_centred
from actionlab.experiments.conjecture import radius_estimate
from actionlab.experiments.j_stats import range_matches
from actionlab.experiments.theta_star import rank_tensors

# ----------------------------------------------------------------------------- helpers


def test_gaussianity_on_known_distributions():
    rng = np.random.default_rng(0)
    g = gaussianity(torch.from_numpy(rng.normal(1.0, 2.0, 100_000)))
    assert g["mean"] == pytest.approx(1.0, abs=0.03) and g["std"] == pytest.approx(2.0, rel=0.02)
    assert abs(g["skew"]) < 0.05 and abs(g["excess_kurtosis"]) < 0.1
    assert g["normaltest_p"] > 1e-3 and g["ks_p"] > 1e-3
    assert g["fraction_negative"] == pytest.approx(0.3085, abs=0.01)  # Φ(−1/2)
    e = gaussianity(rng.exponential(1.0, 100_000), max_test=5000)
    assert e["skew"] == pytest.approx(2.0, abs=0.15) and e["excess_kurtosis"] == pytest.approx(6.0, abs=1.0)
    assert e["test_sample"] == 5000 and e["normaltest_p"] < 1e-6
    assert looks_gaussian_centred(gaussianity(rng.normal(0, 1, 10_000)))
    assert not looks_gaussian_centred(e)


def test_dominance():
    d = dominance({"a": 1.0, "b": -3.0, "c": 0.0})
    assert d["dominant"] == "b" and d["share_of_abs"] == pytest.approx(0.75) and d["sum"] == pytest.approx(-2.0)
    assert sum(d["shares"].values()) == pytest.approx(1.0)


def test_direct_j_equals_expansion_j_tensor():
    from actionlab.expansion import j_tensor

    g = torch.Generator().manual_seed(0)
    z = torch.randn(60, 5, generator=g, dtype=torch.float64)
    y = torch.arange(60) % 3
    # the class-conditional moments, computed directly: J_α = E_p[z] − E_{p|α}[z], J_αγδ = E_p[z z] − E_{p|α}[z z]
    direct = {1: torch.stack([z.mean(0) - z[y == a].mean(0) for a in range(3)]),
              2: torch.stack([z.T @ z / len(z) - z[y == a].T @ z[y == a] / int((y == a).sum()) for a in range(3)])}
    for n in (1, 2):
        torch.testing.assert_close(direct[n], j_tensor(z, y, n, num_classes=3))
    # by hand, one entry: J_{α γ δ} = E_p[z_γ z_δ] − E_{p|α}[z_γ z_δ]
    want = (z[:, 1] * z[:, 2]).mean() - (z[y == 2, 1] * z[y == 2, 2]).mean()
    assert float(j_tensor(z, y, 2)[2, 1, 2]) == pytest.approx(float(want), rel=1e-12)


def test_rank_tensors_against_einsum_and_block_sampling():
    g = torch.Generator().manual_seed(1)
    U, W = torch.randn(3, 7, generator=g, dtype=torch.float64), torch.randn(7, 6, generator=g, dtype=torch.float64)
    J1, J2 = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    t = rank_tensors(U, W, J1, J2)
    torch.testing.assert_close(t["UW"], U @ W)
    torch.testing.assert_close(t["UWW"], torch.einsum("ab,bg,bd->agd", U, W, W))
    torch.testing.assert_close(t["J3*UWW"], J2 * t["UWW"])
    assert t["rank3_block"] is None
    s = rank_tensors(U, W, J1, J2, max_elements=3 * 16)
    assert s["rank3_block"] == 4 and s["UWW"].shape == (3, 4, 4)


def test_range_matches():
    assert range_matches(-0.1, 0.075) and range_matches(-0.09, 0.08)
    assert not range_matches(-0.5, 0.5) and not range_matches(-0.1, 0.2)


def test_radius_estimate_of_a_geometric_series():
    assert radius_estimate([2.0**k for k in range(12)]) == pytest.approx(0.5)
    assert radius_estimate([0.0] * 5) == math.inf


# ----------------------------------------------------------------------------- quick presets


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("thetastar-cache"))


def _run(name, tmp_path, cache_dir, **overrides):
    exp = get_experiment(name)
    cfg = make_config(exp.config_cls, "quick", cache_dir=cache_dir, **overrides)
    out = tmp_path / name
    res = exp.run(cfg, RunOptions(out=out, seed=0))
    payload = json.loads((out / "results.json").read_text())
    assert payload["experiment"] == name and payload["claims"], "a run must state its claims"
    assert (out / "summary.md").exists() and (out / "provenance.json").exists()
    assert not (out / "RUNNING").exists()
    for fig in payload["figures"]:
        assert (out / fig).stat().st_size > 1000
    assert "versions" in payload["provenance"] and payload["provenance"]["seed"] == 0
    return res, payload


@pytest.mark.slow
def test_theta_star_quick_terms_sum_to_the_exact_series(tmp_path, cache_dir):
    res, payload = _run("theta-star", tmp_path, cache_dir)
    a = res.analysis
    assert a["S2_terms_sum"] == pytest.approx(a["S2_series"], rel=1e-9, abs=1e-12)
    assert a["S3_terms_sum"] == pytest.approx(a["S3_series"], rel=1e-9, abs=1e-12)
    assert a["S_n"][0] == pytest.approx(math.log(10), rel=1e-12)
    assert abs(a["S_n"][1]) < 1e-12  # balanced test subset: S_1 = 0
    terms = {t["name"]: t["value"] for t in a["terms"]}
    # the histogrammed products, summed with the derived coefficient, are the U·W and U·W·W terms
    assert a["check_UW_from_tensors"] == pytest.approx(terms["U·W"], rel=1e-9)
    assert a["check_UWW_from_tensors"] == pytest.approx(terms["U·W·W"], rel=1e-9)
    assert set(a["stats"]) == {"J", "UW", "J*UW", "J3", "UWW", "J3*UWW"}
    assert a["stats"]["J"]["mean"] == pytest.approx(0.0, abs=1e-9)  # Σ_α J_αγ = 0 for balanced data
    assert payload["config"]["embedding"] == "learned"
    assert {"hist_rank2.png", "hist_rank3.png", "terms.png", "radius.png"} <= set(payload["figures"])
    assert 0 < a["S_exact"] < math.log(10)
    # two independent seeds, intervals across them; every claim has an id, evidence and (quick) indicative strength
    assert [r["seed"] for r in res.per_seed] == [0, 1] and res.across_seeds["share_S2[U·W]"]["n"] == 2
    ids = {c["id"] for c in payload["claims"]}
    assert {"001.s2-dominance", "001.s3-dominance", "001.jfold-negative", "001.j-gaussian"} <= ids
    assert all(c["evidence"] and c["strength"] == "indicative" for c in payload["claims"])
    # the radius: root test and activation bound; t = r/2 lies inside, where S_0..S_K reproduce S(tθ*)
    path = a["path"]
    assert path["radius"]["radius"] <= path["radius"]["activation_bound"]
    h = path["at_half_radius"]
    assert h["t"] == pytest.approx(path["radius"]["radius"] / 2)
    assert h["truncation_error_PK"] < 0.05 and h["truncation_error_PK"] < path["at_one"]["truncation_error_PK"]


@pytest.mark.slow
def test_conjecture_quick_partial_sums_and_first_order(tmp_path, cache_dir):
    res, payload = _run("conjecture", tmp_path, cache_dir)
    L = res.leading
    # the n = 1 conjectured term with the derived κ_1 is exactly the U·W term, which is all of S_2 for balanced
    # data up to the c·c term: compare with the exact S_2
    assert L["kappa"][0] * L["contractions"][0] == pytest.approx(res.taylor_coefficients[2], rel=0.05)
    assert L["kappa_note"][0] == pytest.approx(L["kappa"][0] / 2)
    # inside the radius the true series converges to the exact S(tθ*)
    t = np.array(res.t)
    i = int(np.argmin(abs(t - min(0.2, res.radius_t / 2))))
    K = max((k for k in res.curves if k.startswith("taylor K=")), key=lambda k: int(k.split("=")[1]))  # by order, not as text
    assert res.curves[K][i] == pytest.approx(res.exact[i], rel=1e-3)
    assert res.exact[0] == pytest.approx(math.log(10), rel=1e-12)
    assert res.exact[-1] == pytest.approx(res.S_star, rel=1e-9)


@pytest.mark.slow
def test_conjecture_relu_says_the_series_is_refused(tmp_path, cache_dir):
    """relu has a kink at 0: leading_series refuses it, and the run says so in a claim and its summary."""
    res, payload = _run("conjecture", tmp_path, cache_dir, activation="relu")
    claim = next(c for c in payload["claims"] if c["id"] == "001.all-orders-kinked")
    assert claim["verdict"] == "inconclusive" and "not analytic at 0" in claim["details"]
    assert res.leading == {} and math.isfinite(res.S_star) and 0 < res.S_star < math.log(10)
    assert "not analytic at 0" in (tmp_path / "conjecture" / "summary.md").read_text()
    assert res.taylor_coefficients[0] == pytest.approx(math.log(10), rel=1e-12)


@pytest.mark.slow
def test_j_stats_quick(tmp_path, cache_dir):
    res, payload = _run("j-stats", tmp_path, cache_dir)
    combos = {(r["split"], r["standardize"], r["embedding"]) for r in res.rows}
    assert ("test", "none", "raw") in combos and ("train", "none", "learned") in combos
    for r in res.rows:
        assert r["J2"]["mean"] == pytest.approx(0.0, abs=1e-5 * max(1.0, r["J2"]["std"]))  # balanced subsets
        assert r["J2"]["count"] == 10 * r["E"]
    raw = next(r for r in res.rows if r["split"] == "train" and r["standardize"] == "none" and r["embedding"] == "raw")
    assert -1.0 <= raw["J2"]["min"] < 0 < raw["J2"]["max"] <= 1.0  # pixels in [0, 1]
    assert payload["claims"][0]["verdict"] in ("holds", "does not hold")
    assert [c["id"] for c in payload["claims"]] == ["001.j-range", "001.j-range-over-2M"]
    assert payload["claims"][0]["evidence"]["threshold"] == 0.25


@pytest.mark.slow
def test_embedding_dim_quick(tmp_path, cache_dir):
    res, payload = _run("embedding-dim", tmp_path, cache_dir)
    assert {r["embedding"] for r in res.rows} == {"learned", "pca"}
    for r in res.rows:
        assert 0.0 <= r["share_UW_in_S2"] <= 1.0 and 0.0 <= r["share_UWW_in_S3"] <= 1.0
        assert r["subterms"]["U·W·W"] == 10 * r["H"] * r["E"] ** 2
        total = sum(v for k, v in r["terms"].items() if k in ("c·c", "U·W", "U·b"))
        assert total == pytest.approx(r["S_n"][2], rel=1e-8, abs=1e-12)
        total3 = sum(v for k, v in r["terms"].items() if k not in ("c·c", "U·W", "U·b"))  # vs the series' S_3
        assert total3 == pytest.approx(r["S_n"][3], rel=1e-8, abs=1e-12)
        assert r["shares_S3"]["U·W·W"] == pytest.approx(abs(r["terms"]["U·W·W"]) / sum(
            abs(v) for k, v in r["terms"].items() if k not in ("c·c", "U·W", "U·b")))
    assert {r["seed"] for r in res.rows} == {0, 1}
    for kind in ("learned", "pca"):
        t = res.trends[f"{kind}/S3"]
        assert t["dims"] == sorted(t["dims"]) and len(t["per_E"]) == len(t["dims"]) >= 3
        assert t["slope95"]["low"] <= t["slope95"]["estimate"] <= t["slope95"]["high"]
    claims = {c["id"]: c for c in payload["claims"]}
    assert {"001.dominance-vs-E", "001.dominance-vs-E-pca"} <= set(claims)
    assert claims["001.dominance-vs-E"]["strength"] == "indicative" and claims["001.dominance-vs-E"]["evidence"]


def test_histogram_figure_uses_auto_bins_and_labels_axes():
    from actionlab.experiments._trained import histogram_figure

    x = torch.from_numpy(np.random.default_rng(0).normal(size=5000))
    fig = histogram_figure({"x": x}, "title")
    ax = fig.axes[0]
    n_bins = len(ax.patches)
    assert n_bins == len(np.histogram_bin_edges(x.numpy()[(x.numpy() >= np.quantile(x.numpy(), 0.0005))
                                                         & (x.numpy() <= np.quantile(x.numpy(), 0.9995))],
                                                bins="auto")) - 1
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is not None


def test_conjecture_judges_read_the_numbers_on_both_sides_of_their_thresholds():
    from actionlab.experiments.conjecture import judge_close, judge_converges_at_one, judge_leading

    # every ratio in [0.5, 2]: holds; firm only when clear of the edges by the 10 % margin
    assert judge_leading({1: 1.0, 2: 0.9}) == ("holds", "firm")
    assert judge_leading({1: 1.0, 2: 0.52}) == ("holds", "indicative")
    assert judge_leading({1: 0.5, 2: 0.0}) == ("does not hold", "firm")  # the measured θ*: ratio 0 at n = 3
    assert judge_leading({1: 1.0, 2: 0.48}) == ("does not hold", "indicative")
    assert judge_leading({1: 1.0, 2: 2.5}) == ("does not hold", "firm")
    assert judge_leading({1: 1.0}, quick=True) == ("holds", "indicative")
    assert judge_leading({}) == ("inconclusive", "indicative")
    # partial sum within 10 % of S(θ*)
    assert judge_close(0.39, 0.3839) == ("holds", "firm")
    assert judge_close(-3.195, 0.3839) == ("does not hold", "firm")
    assert judge_close(0.3839 * 1.105, 0.3839) == ("does not hold", "indicative")
    assert judge_close(float("nan"), 0.38)[0] == "inconclusive"
    # the series at t = 1: radius > 1 converges; near 1 the estimate cannot decide firmly
    assert judge_converges_at_one(0.459) == ("does not hold", "firm")
    assert judge_converges_at_one(3.0) == ("holds", "firm")
    assert judge_converges_at_one(1.1) == ("holds", "indicative")
    assert judge_converges_at_one(0.9) == ("does not hold", "indicative")
    assert judge_converges_at_one(0.459, quick=True) == ("does not hold", "indicative")
