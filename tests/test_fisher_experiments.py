"""Quick presets of ``fim-spectrum`` and ``lr-bound`` (004)."""

import json
import math

import pytest

from actionlab.config import RunOptions
from actionlab.experiments import get_experiment, make_config


@pytest.mark.slow
def test_fim_spectrum_quick(tmp_path):
    exp = get_experiment("fim-spectrum")
    cfg = make_config(exp.config_cls, "quick")
    res = exp.run(cfg, RunOptions(out=tmp_path, seed=0, dtype="float64"))
    Mmax = max(cfg.widths)
    big = [r for r in res.rows if r["M"] == Mmax]
    assert {r["activation"] for r in big} == set(cfg.activations)
    for r in big:  # theory and measurement agree at the largest quick width (M = 400)
        assert abs(r["m_relerr"]) < 0.15, r
        assert abs(r["lambda_max_relerr"]) < 0.15, r
        assert abs(r["s_relerr"]) < 0.25, r
    # relu with a linear output follows q̃^L = 1, not B.10's 1/2
    lin = {r["boundary"]: r for r in res.relu_boundary if r["network_output"] == "linear"}
    assert abs(lin["q̃^L = 1 (linear output)"]["lambda_max_relerr"]) < 0.2
    assert lin["q̃^L = 1/2 (relu output, B.10)"]["lambda_max_relerr"] > 0.5
    # papers.md quick check: theory reproduced
    qc = res.quick_check
    for k in ("m", "s", "lambda_max"):
        assert abs(qc["theory"][k] - qc["document_theory"][k]) / qc["document_theory"][k] < 0.005
    # A.5: measured λ_max at C = O(M) lies between the bounds (with 15 % slack)
    for r in res.c_rows:
        assert r["lambda_max_lower"] * 0.85 <= r["lambda_max"] <= r["lambda_max_upper"] * 1.15
    data = json.loads((tmp_path / "results.json").read_text())
    assert {c["verdict"] for c in data["claims"]} <= {"holds", "does not hold", "inconclusive"}
    assert (tmp_path / "stats_vs_M.png").exists() and (tmp_path / "stats_vs_T.png").exists()
    assert "## Claims" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_lr_bound_quick(tmp_path):
    exp = get_experiment("lr-bound")
    cfg = make_config(exp.config_cls, "quick")
    res = exp.run(cfg, RunOptions(out=tmp_path, seed=0))
    assert res.cells and not res.skipped
    for f in res.fractions:
        assert 0.0 <= f["fraction_correct"] <= 1.0
        # below η_c = 2(1+μ)/λ_max (measured at init) one epoch of SGD always lowers the training loss
        assert f["failed_below_eta_c"] == 0, f
    # far above the bound (η ≥ 8·η_c) squared-loss SGD without momentum fails
    far = [c for c in res.cells if c["loss"] == "squared" and c["momentum"] == 0.0 and c["lr"] >= 7.9 * c["eta_c"]]
    assert far and not any(c["trained"] for c in far)
    for r in res.curves:
        assert r["lambda_max_measured"] > 0 and math.isclose(r["eta_c_measured"], 2 / r["lambda_max_measured"])
    assert (tmp_path / "loss_map.png").exists()
    assert "lr-bound" in (tmp_path / "summary.md").read_text()


def test_lr_bound_one_epoch_is_heavy_ball_sgd_and_flags_divergence():
    """train_one_epoch against a hand-written float64 epoch of v ← μv + ∇E_batch, θ ← θ − ηv (A.51)."""
    import torch

    from actionlab.experiments.lr_bound import train_one_epoch
    from actionlab.models import MLP
    from actionlab.train import OptimizerSpec

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


def test_lr_bound_config_refuses_nonsense():
    from actionlab._checks import ValueCheckError

    exp = get_experiment("lr-bound")
    for bad in ({"widths": (0,)}, {"n_lrs": 0}, {"losses": ("hinge",)}, {"momenta": (-0.1,)}, {"batch_size": 0}):
        with pytest.raises(ValueCheckError):
            make_config(exp.config_cls, "quick", **bad)
