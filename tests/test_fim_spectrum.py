"""``fim-spectrum`` (004): the quick preset end to end, and the pure judges fed numbers on both sides."""

import json

import numpy as np
import pytest

from actionlab.config import RunOptions
from actionlab.experiments import fim_spectrum as fs
from actionlab.experiments import get_experiment, make_config


@pytest.mark.slow
def test_fim_spectrum_quick(tmp_path):
    exp = get_experiment("fim-spectrum")
    cfg = make_config(exp.config_cls, "quick")
    res = exp.run(cfg, RunOptions(out=tmp_path, seed=0, dtype="float64", preset="quick"))
    Mmax = max(cfg.widths)
    big = [r for r in res.rows if r["M"] == Mmax]
    assert {r["activation"] for r in big} == set(cfg.activations)
    for r in big:  # theory and measurement agree at the largest quick width (M = 400)
        assert abs(r["m_relerr"]) < 0.15, r
        assert abs(r["lambda_max_relerr"]) < 0.15, r
        assert abs(r["s_relerr"]) < 0.25, r
        assert abs(r["bulk_mean_relerr"]) < 0.15, r  # A.4(i)
        assert abs(r["m_bias_relerr"]) < 0.15, r  # A.9
        assert r["outliers_seeds"] == [cfg.C] * cfg.seeds_at(Mmax), r  # A.4: C outliers in every network
        for counts in r["markov_counts_seeds"]:  # Corollary 2 at every level
            assert all(n <= b for n, b in zip(counts, r["markov_bounds"]))
    # per layer: m_l follows the layer's κ^(l)_1 in the last layer (the self-averaging one at C = 1)
    last = [r for r in res.layer_rows if r["M"] == Mmax and r["layer"] == cfg.L]
    assert len(last) == len(cfg.activations) and all(abs(r["m_relerr"]) < 0.1 for r in last)
    assert all(sum(1 for r in res.layer_rows if r["M"] == M and r["activation"] == "tanh") == cfg.L for M in cfg.widths)
    # relu with a linear output follows q̃^L = 1, not B.10's 1/2
    lin = {r["boundary"]: r for r in res.relu_boundary if r["network_output"] == "linear"}
    assert abs(lin["q̃^L = 1 (linear output)"]["lambda_max_relerr"]) < 0.2
    assert lin["q̃^L = 1/2 (relu output, B.10)"]["lambda_max_relerr"] > 0.5
    # the linear-output relu networks are section 1's at the largest M (no second draw); relu outputs drawn anew
    relu_big = next(r for r in big if r["activation"] == "relu")
    assert lin["q̃^L = 1 (linear output)"]["lambda_max_seeds"] == relu_big["lambda_max_seeds"]
    assert lin["q̃^L = 1 (linear output)"]["n"] == cfg.seeds_at(Mmax)
    assert all(r["n"] == cfg.relu_output_seeds for r in res.relu_boundary if r["network_output"] == "relu")
    # papers.md quick check: theory reproduced
    qc = res.quick_check
    for k in ("m", "s", "lambda_max"):
        assert abs(qc["theory"][k] - qc["document_theory"][k]) / qc["document_theory"][k] < 0.005
    # A.5: measured λ_max at C = O(M) lies between the bounds (with 15 % slack)
    for r in res.c_rows:
        assert r["lambda_max_lower"] * 0.85 <= r["lambda_max"] <= r["lambda_max_upper"] * 1.15
    data = json.loads((tmp_path / "results.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    assert {c["verdict"] for c in data["claims"]} <= {"holds", "does not hold", "inconclusive"}
    for cid in ("004.cor2-markov", "004.A4-bulk", "004.A4-outliers", "004.A9-bias-mean", "004.per-layer",
                "004.B12-relu", "004.B10-relu"):
        assert cid in claims, cid
    assert len(claims) == len(data["claims"])  # one id per claim
    assert all(c["strength"] == "indicative" and c["evidence"]["preset"] == "quick" for c in data["claims"])
    assert claims["004.B12-relu"]["verdict"] == "does not hold" and claims["004.B10-relu"]["verdict"] == "does not hold"
    assert claims["004.cor2-markov"]["verdict"] == "holds" and claims["004.A4-outliers"]["verdict"] == "holds"
    assert set(claims["004.B10-relu"]["measured"]) == {"λ_max measured", "theory with q̃^L = 1/2 (B.10)",
                                                       "theory with q̃^L = 1"}
    for name in ("stats_vs_M", "stats_vs_T", "spectrum_density", "per_layer", "c_order_m_bounds"):
        assert (tmp_path / f"{name}.png").exists(), name
    summary = (tmp_path / "summary.md").read_text()
    assert "## Claims" in summary and "Per-layer terms" in summary and "Bulk, outliers" in summary


def test_judge_within_both_sides():
    assert fs.judge_within([(-0.05, 0.04), (0.0, 0.09)], 0.1) == "holds"
    assert fs.judge_within([(-0.05, 0.04), (0.11, 0.3)], 0.1) == "does not hold"
    assert fs.judge_within([(-0.3, -0.12)], 0.1) == "does not hold"
    assert fs.judge_within([(-0.05, 0.15)], 0.1) == "inconclusive"
    with pytest.raises(ValueError):
        fs.judge_within([], 0.1)


def test_judge_upper_bound_outliers_boundary_printed():
    assert fs.judge_upper_bound(0.3, 0.9) == "holds"
    assert fs.judge_upper_bound(1.2, 1.5) == "does not hold"
    assert fs.judge_upper_bound(0.8, 1.2) == "inconclusive"
    assert fs.judge_outlier_count([1, 1, 1], 1, 1.0, 1.0) == "holds"
    assert fs.judge_outlier_count([3, 4, 3], 1, 2.5, 4.0) == "does not hold"
    assert fs.judge_outlier_count([1, 2, 1], 1, 0.6, 2.0) == "inconclusive"
    assert fs.judge_boundary((-0.02, 0.03), (0.8, 1.1), 0.1) == "does not hold"  # fits q̃^L = 1, not 1/2
    assert fs.judge_boundary((-0.7, -0.6), (-0.03, 0.05), 0.1) == "holds"  # fits 1/2, not 1
    assert fs.judge_boundary((-0.02, 0.3), (0.8, 1.1), 0.1) == "inconclusive"
    assert fs.judge_printed(0.58, 0.29, 1e-3) == "does not hold"
    assert fs.judge_printed(0.29001, 0.29, 1e-3) == "holds"
    assert fs.strength_of("holds", 4) == "firm" and fs.strength_of("holds", 2) == "indicative"
    assert fs.strength_of("inconclusive", 8) == "indicative"


def test_spectrum_statistics_on_the_leading_dual():
    """On the leading F̄* of A.23 (C blocks: κ₁ diagonal, κ₂ off it, × αM/T) the bulk mean is α(κ₁−κ₂)M/T exactly,
    there are C outliers, and N(λ ≥ k) is counted by enumeration."""
    C, T, a, M, k1, k2 = 2, 6, 3.0, 100, 0.9, 0.3
    K = np.full((T, T), k2) + np.eye(T) * (k1 - k2)
    ev = np.linalg.eigvalsh(np.kron(np.eye(C), a * M * K / T))
    bulk, lam = a * (k1 - k2) * M / T, a * ((T - 1) / T * k2 + k1 / T) * M
    st = fs.spectrum_statistics(ev, C, bulk, lam, [0.5 * bulk, 2 * bulk, 2 * lam])
    assert abs(st["bulk_mean"] - bulk) < 1e-10 * bulk
    assert st["outliers"] == C and st["counts"] == [C * T, C, 0]
    with pytest.raises(ValueError, match="more than C"):
        fs.spectrum_statistics(ev[:2], C, bulk, lam, [bulk])


def test_seeds_at_the_largest_width_and_the_scale_left_out():
    """Extra seeds go to the largest width only; the evidence names every setting below the full preset."""
    cfg = fs.FimSpectrumConfig(widths=(100, 400), seeds=3, seeds_largest=10)
    assert cfg.seeds_at(400) == 10 and cfg.seeds_at(100) == 3
    assert fs.FimSpectrumConfig(widths=(100, 400), seeds=5, seeds_largest=2).seeds_at(400) == 5  # never fewer
    assert fs.FimSpectrumConfig(widths=(100, 400), seeds=4, seeds_largest=0).seeds_at(400) == 4  # 0: as seeds
    full = make_config(fs.FimSpectrumConfig, "full")
    assert fs.reduced_from_full(full) == {}
    default = make_config(fs.FimSpectrumConfig, "default")
    cut = fs.reduced_from_full(default)
    assert cut["widths"] == {"here": list(default.widths), "full": list(full.widths)}
    assert cut["seeds"] == {"here": default.seeds, "full": full.seeds}
    assert default.seeds_at(max(default.widths)) > default.seeds  # the judged width gets more networks
    assert json.loads(json.dumps(cut)) == cut  # plain JSON for results.json
