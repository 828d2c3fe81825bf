"""``lr-bound`` (004 Lemma 6, A.7): the stability measurement at a minimum, its verdicts, and the quick preset."""

import json
import math

import numpy as np
import pytest
import torch

from actionlab.config import RunOptions
from actionlab.experiments import _minimum_stability as ms
from actionlab.experiments import get_experiment, make_config
from actionlab.experiments.lr_bound import (judge_below, judge_critical_ratio, judge_init_survival, judge_lr_bound,
                                            train_one_epoch)
from actionlab.fisher import empirical as emp
from actionlab.models import MLP
from actionlab.train import OptimizerSpec


# ----------------------------------------------------------------------------- heavy ball on a quadratic
def _quadratic(eigs):
    """E(θ) = ½ θᵀAθ with A = Q diag(eigs) Qᵀ (θ* = 0): the exact linear setting of A.51."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ Q.T
    return (lambda th: 0.5 * th @ A @ th), A, Q


def test_heavy_ball_is_torch_sgd_momentum_and_the_A52_recurrence():
    loss, A, Q = _quadratic([5.0, 2.0, 0.5, 0.0])
    d0 = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    lr, mu, K = 0.3, 0.6, 25
    run = ms.heavy_ball(loss, torch.zeros(4, dtype=torch.float64), d0, lr, mu, K, growth=1e12)
    # reference 1: torch.optim.SGD(momentum=μ, dampening=0), full batch
    th = d0.clone().requires_grad_(True)
    opt = torch.optim.SGD([th], lr=lr, momentum=mu)
    for _ in range(K):
        opt.zero_grad()
        loss(th).backward()
        opt.step()
    # reference 2: the companion matrix of A.52 per eigen-direction, Δ̄_{−1} = Δ̄_0
    db = Q.T @ d0
    out = []
    for lam, c in zip([5.0, 2.0, 0.5, 0.0], db.tolist()):
        Mx = np.array([[1 - lr * lam + mu, -mu], [1.0, 0.0]])
        out.append((np.linalg.matrix_power(Mx, K) @ np.array([c, c]))[0])
    ref = float(np.linalg.norm(out)) / float(d0.norm())
    assert run.final_growth == pytest.approx(float(th.detach().norm() / d0.norm()), rel=1e-10)
    assert run.final_growth == pytest.approx(ref, rel=1e-10)
    assert not run.diverged and run.steps == K


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_critical_ratio_of_a_quadratic_is_one_up_to_the_detection_limit(mu):
    """A.53: stable iff ηλ_max < 2(1+μ). Bisection of heavy_ball's criterion finds r* ∈ [1, r*_K] where r*_K is
    the linearised top mode's detection limit at K steps, and r*_K → 1 as K grows."""
    eigs = [4.0, 1.5, 0.3, 0.0]
    loss, A, Q = _quadratic(eigs)
    d0 = Q @ torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64)  # share ½ on the top eigenvector
    K, growth, tol = 400, 10.0, 1e-3
    eta_c = 2 * (1 + mu) / 4.0
    cr = ms.critical_ratio(lambda r: ms.heavy_ball(loss, torch.zeros(4, dtype=torch.float64), d0, r * eta_c, mu, K,
                                                   growth).diverged, 0.8, 1.25, tol)
    lin = ms.critical_ratio(lambda r: ms.linear_mode_diverges(r, mu, 0.5, K, growth), 1.0, 1.25, tol)
    assert cr.bracketed and 1.0 - tol <= cr.r_star <= lin.r_star + 2 * tol
    assert lin.r_star - 1 < 0.01
    lin_long = ms.critical_ratio(lambda r: ms.linear_mode_diverges(r, mu, 0.5, 10 * K, growth), 1.0, 1.25, tol / 10)
    assert 1.0 < lin_long.r_star < lin.r_star


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_linear_mode_diverges_iff_the_A53_spectral_radius_exceeds_one(mu):
    for r in (0.97, 0.995, 1.005, 1.03):
        a = 1 - 2 * (1 + mu) * r + mu
        rho = max(abs(np.roots([1.0, -a, mu])))
        assert ms.linear_mode_diverges(r, mu, 1e-3, 20000, 10.0) == (rho > 1), (r, rho)


def test_critical_ratio_bisection_and_bracket_widening():
    cr = ms.critical_ratio(lambda r: r > 1.2345, 0.8, 1.25, 1e-4)
    assert cr.bracketed and abs(cr.r_star - 1.2345) < 1e-4 and cr.stable <= 1.2345 < cr.unstable
    wide = ms.critical_ratio(lambda r: r > 3.3, 0.8, 1.25, 1e-3)  # high end widened ×2 until unstable
    assert wide.bracketed and abs(wide.r_star - 3.3) < 1e-3
    never = ms.critical_ratio(lambda r: False, 0.8, 1.25, 1e-3)
    assert not never.bracketed and math.isnan(never.r_star)
    with pytest.raises(ValueError):
        ms.critical_ratio(lambda r: True, 1.2, 0.8)


# ----------------------------------------------------------------------------- Hessian = F at zero residual
def _tiny_minimum():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (6,), generator=g), 3).double()
    net = MLP([5, 12, 3], activation="tanh", sigma_w2=2.0, sigma_b2=0.1, generator=torch.Generator().manual_seed(4),
              dtype=torch.float64)
    fm = ms.flat_model(net)
    loss = ms.squared_loss(fm, x, y)
    return net, fm, loss, x


def test_hessian_equals_the_squared_loss_fim_at_a_zero_residual_minimum():
    net, fm, loss, x = _tiny_minimum()
    H0 = torch.autograd.functional.hessian(loss, fm.theta0)
    fm.load_into(net, fm.theta0)
    F0 = emp.dense_fisher(net, x)
    assert (H0 - F0).norm() / F0.norm() > 1e-2  # at initialisation the residual term is not negligible
    mini = ms.train_to_minimum(loss, fm.theta0, C=3, residual_tol=1e-10)
    assert mini.converged and mini.residual_rms <= 1e-10
    fm.load_into(net, mini.theta)
    H = torch.autograd.functional.hessian(loss, mini.theta)  # dense float64 autodiff reference
    F = emp.dense_fisher(net, x)
    assert (H - F).norm() / F.norm() < 1e-6
    lam_f = emp.fisher_statistics(net, x).lambda_max
    lam_h, v = ms.hessian_top_eigenpair(loss, mini.theta)
    assert lam_h == pytest.approx(lam_f, rel=1e-6)
    assert lam_h == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-8)
    assert float((H @ v - lam_h * v).norm()) < 1e-6 * lam_h


# ----------------------------------------------------------------------------- verdict logic (both sides)
def test_judge_critical_ratio_on_both_sides_of_the_tolerance():
    assert judge_critical_ratio(0.995, 1.004, 0.02) == "holds"
    assert judge_critical_ratio(1.03, 1.05, 0.02) == "does not hold"
    assert judge_critical_ratio(0.90, 0.97, 0.02) == "does not hold"
    assert judge_critical_ratio(1.01, 1.04, 0.02) == "inconclusive"  # straddles 1 + tol
    assert judge_critical_ratio(math.nan, 1.0, 0.02) == "inconclusive"


def test_judge_lr_bound_combines_momenta_and_sets_strength():
    ok, bad, wide = (0.999, 1.003), (1.2, 1.3), (0.9, 1.1)
    assert judge_lr_bound([ok, ok, ok], 0.02, seeds=5, quick=False) == ("holds", "firm")
    assert judge_lr_bound([ok, bad, ok], 0.02, seeds=5, quick=False) == ("does not hold", "firm")
    assert judge_lr_bound([ok, wide, ok], 0.02, seeds=5, quick=False) == ("inconclusive", "indicative")
    assert judge_lr_bound([ok, ok, ok], 0.02, seeds=2, quick=False) == ("holds", "indicative")
    assert judge_lr_bound([ok, ok, ok], 0.02, seeds=5, quick=True) == ("holds", "indicative")
    assert judge_lr_bound([], 0.02, seeds=5, quick=False)[0] == "not yet measured"


def test_judge_init_survival_and_judge_below():
    assert judge_init_survival(0, 40) == ("holds", "indicative")
    assert judge_init_survival(1, 40) == ("does not hold", "indicative")
    assert judge_init_survival(0, 0)[0] == "not yet measured"
    assert judge_below(1e-8, 1e-6) == "holds" and judge_below(1e-5, 1e-6) == "does not hold"
    assert judge_below(math.nan, 1e-6) == "inconclusive"


# ----------------------------------------------------------------------------- the one-epoch colour map
def test_lr_bound_one_epoch_is_heavy_ball_sgd_and_flags_divergence():
    """train_one_epoch against a hand-written float64 epoch of v ← μv + ∇E_batch, θ ← θ − ηv (A.51)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)

    def net():
        return MLP([6, 8, 3], activation="tanh", generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def sq(f, yy):
        return 0.5 * ((f - torch.nn.functional.one_hot(yy, 3).double()) ** 2).sum(1).mean()

    lr, mu, B = 0.05, 0.5, 8
    model = net()
    init, final = train_one_epoch(model, x, y, "squared", OptimizerSpec("sgd", lr=lr, momentum=mu), B, seed=3)
    ref = net()
    params = list(ref.parameters())
    with torch.no_grad():
        init_ref = float(sq(ref(x), y))
    bufs = [torch.zeros_like(p) for p in params]
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    for i in range(0, 40, B):
        idx = perm[i:i + B]
        grads = torch.autograd.grad(sq(ref(x[idx]), y[idx]), params)
        with torch.no_grad():
            for p, b, gr in zip(params, bufs, grads):
                b.mul_(mu).add_(gr)
                p.sub_(lr * b)
    with torch.no_grad():
        final_ref = float(sq(ref(x), y))
    assert init == pytest.approx(init_ref, rel=1e-13) and final == pytest.approx(final_ref, rel=1e-12)
    assert final < init
    # far too large a step: the loss blows up and the cell reports inf
    _, blown = train_one_epoch(net(), x, y, "squared", OptimizerSpec("sgd", lr=1e4), B, seed=3)
    assert blown == math.inf


def test_lr_bound_config_refuses_nonsense(tmp_path):
    from actionlab._checks import ValueCheckError

    exp = get_experiment("lr-bound")
    for bad in ({"widths": (0,)}, {"n_lrs": 0}, {"losses": ("hinge",)}, {"momenta": (-0.1,)}, {"batch_size": 0},
                {"min_momenta": (1.0,)}, {"perturbations": (0.0,)}, {"ratio_range": (0.9,)}, {"seeds": 0}):
        with pytest.raises(ValueCheckError):
            make_config(exp.config_cls, "quick", **bad)
    with pytest.raises(ValueCheckError, match="bracket"):
        exp.run(make_config(exp.config_cls, "quick", ratio_range=(1.05, 1.3)), RunOptions(out=tmp_path / "a", seed=0))
    with pytest.raises(ValueCheckError, match="T·C ≤ P"):
        exp.run(make_config(exp.config_cls, "quick", min_inputs=500, min_width=4, datasets=()),
                RunOptions(out=tmp_path / "b", seed=0))


# ----------------------------------------------------------------------------- the quick preset
@pytest.mark.slow
def test_lr_bound_quick(tmp_path):
    exp = get_experiment("lr-bound")
    cfg = make_config(exp.config_cls, "quick")
    res = exp.run(cfg, RunOptions(out=tmp_path, seed=0, preset="quick"))
    # the regime table: one row per (μ, ε) with an interval over the seeds
    assert {(r["momentum"], r["perturbation"]) for r in res.critical} == {
        (mu, eps) for mu in cfg.min_momenta for eps in cfg.perturbations}
    for r in res.critical:
        assert r["seeds"] == cfg.seeds and r["low"] <= r["r_star_mean"] <= r["high"]
    for m in res.minima:  # a zero-residual minimum, where ∇²E = F
        assert m["converged"] and abs(m["hessian_fim_relative_difference"]) < 1e-6
    eps = min(cfg.perturbations)
    for mu in cfg.min_momenta:
        small = [s for s in res.stability if s["momentum"] == mu and s["perturbation"] == eps]
        big = [s for s in res.stability if s["momentum"] == mu and s["perturbation"] == max(cfg.perturbations)]
        assert all(abs(s["r_star"] - 1) < 0.03 for s in small), small  # r* → 1 at small perturbations
        assert np.mean([abs(s["r_star"] - 1) for s in small]) < np.mean([abs(s["r_star"] - 1) for s in big])
    assert {r["momentum"] for r in res.ratio_grid} == set(cfg.min_momenta)
    for r in res.ratio_grid:  # far below the bound every run is stable
        if r["ratio"] <= 0.9:
            assert not r["diverged"], r
    data = json.loads((tmp_path / "results.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    assert {"004.lr-bound", "004.lr-bound.hessian", "004.lr-bound.init"} <= set(claims)
    key = claims["004.lr-bound"]
    assert key["strength"] == "indicative" and set(key["measured"]) == {f"μ = {mu:g}" for mu in cfg.min_momenta}
    assert key["evidence"]["seeds"]["number"] == cfg.seeds and "rule" in key["evidence"]
    assert claims["004.lr-bound.hessian"]["verdict"] == "holds"
    # the colour map at initialisation: below η_c(init) one epoch of SGD always lowers the training loss
    assert res.cells and not res.skipped
    for f in res.init_rows:
        assert 0.0 <= f["fraction_correct"] <= 1.0
        assert f["failed_below_eta_c"] == 0, f
    assert claims["004.lr-bound.init"]["verdict"] == "holds"
    # far above the bound (η ≥ 8·η_c) squared-loss SGD without momentum fails
    far = [c for c in res.cells if c["loss"] == "squared" and c["momentum"] == 0.0 and c["lr"] >= 7.9 * c["eta_c"]]
    assert far and not any(c["trained"] for c in far)
    for r in res.curves:
        assert r["lambda_max_measured"] > 0 and math.isclose(r["eta_c_measured"], 2 / r["lambda_max_measured"])
    assert (tmp_path / "loss_map.png").exists() and (tmp_path / "critical_ratio.png").exists()
    summary = (tmp_path / "summary.md").read_text()
    assert "lr-bound" in summary and "At a minimum" in summary
