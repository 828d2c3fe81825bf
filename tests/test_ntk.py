"""The empirical NTK and the generic dual F* = Θ/T (float64), and the mean-field κ₁, κ₂ against Θ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actionlab._checks import ShapeError, ValueCheckError
from actionlab.fisher import meanfield as mf
from actionlab.fisher.empirical import dense_fisher, dual_matrix
from actionlab.fisher.ntk import empirical_ntk, generic_dual_matrix, per_sample_jacobian


def _conv():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.LayerNorm(18), nn.Linear(18, 3)).double()
    return net.eval()


@pytest.mark.parametrize("outputs", ["squared", "cross_entropy"])
def test_dual_equals_ntk_over_T(outputs):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    Fs = dual_matrix(m, x, outputs)  # the layer-wise factorisation A.19 (independent of the Jacobians)
    torch.testing.assert_close(generic_dual_matrix(m, x, outputs), Fs, atol=1e-12, rtol=0)
    if outputs == "squared":  # T·F* = Θ on the training inputs
        K = empirical_ntk(m, x, layout="output_major")
        assert float((x.shape[0] * Fs - K).abs().max()) < 1e-10


def test_ntk_against_autograd_loop():
    net = _conv()
    x1 = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    x2 = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    K = empirical_ntk(net, x1, x2)
    assert K.shape == (3, 2, 3, 3)

    def grads(x):
        out = []
        for t in range(x.shape[0]):
            f = net(x[t : t + 1])[0]
            out.append(torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(f[k], list(net.parameters()),
                                   retain_graph=True)]) for k in range(3)]))
        return torch.stack(out)  # (T, C, P)

    G1, G2 = grads(x1), grads(x2)
    torch.testing.assert_close(K, torch.einsum("skp,tlp->stkl", G1, G2), atol=1e-12, rtol=0)
    Km = empirical_ntk(net, x1, x2, layout="output_major")
    assert Km.shape == (9, 6) and float(Km[2 * 3 + 1, 1 * 2 + 0]) == pytest.approx(float(K[1, 0, 2, 1]))
    # the Fisher of the conv net from the kernel: F* = Θ/T shares F's non-zero eigenvalues
    Fd = torch.linalg.eigvalsh(dense_fisher(net, x1)).flip(0)[:9]
    torch.testing.assert_close(torch.linalg.eigvalsh(empirical_ntk(net, x1, layout="output_major") / 3).flip(0), Fd,
                               atol=1e-12, rtol=0)


def test_errors():
    net = _conv().train()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueCheckError, match="BatchNorm in training mode"):
        empirical_ntk(net, x)
    with pytest.raises(ValueCheckError, match="Dropout"):
        per_sample_jacobian(nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)).double(), torch.randn(2, 3).double())
    with pytest.raises(ShapeError, match=r"\(n, C\)"):
        empirical_ntk(nn.Conv2d(1, 1, 3).double(), x)
    with pytest.raises(ValueCheckError, match="layout"):
        empirical_ntk(_conv(), x, layout="rows")
    with pytest.raises(ValueCheckError, match="floating"):
        empirical_ntk(_conv(), torch.ones(2, 1, 8, 8, dtype=torch.long))


def _random_tanh(widths, sigma_w2, seed):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for l in range(1, len(widths)):
        lin = nn.Linear(widths[l - 1], widths[l], bias=False).double()
        with torch.no_grad():  # W^l_ij ~ N(0, σ_w²/M_{l−1})
            lin.weight.copy_(torch.randn(widths[l], widths[l - 1], generator=g, dtype=torch.float64)
                             * np.sqrt(sigma_w2 / widths[l - 1]))
        layers += [lin, nn.Tanh()] if l < len(widths) - 1 else [lin]
    return nn.Sequential(*layers)


def _inputs(T, M0, q0, q0_st, seed):
    """T inputs with exactly ‖x‖²/M_0 = q̂⁰ and x_s·x_t/M_0 = q̂⁰_st for every pair."""
    Q, _ = torch.linalg.qr(torch.randn(M0, T + 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return np.sqrt(M0) * (np.sqrt(q0_st) * Q[:, :1].T + np.sqrt(q0 - q0_st) * Q[:, 1:].T)


def test_meanfield_kappas_against_ntk():
    """κ₁ = mean_t Θ_kk(x_t, x_t)/(αM), κ₂ = mean_{s≠t} Θ_kk(x_s, x_t)/(αM) (A.6, A.23; no biases).

    Tolerance: 4 Monte-Carlo standard errors over the random networks plus 3 % for the
    O(1/M) finite-width corrections (measured deviation at M = 128: < 1 standard error).
    """
    M, T, sw2, seeds = 128, 5, 2.0, 5
    arch = mf.Architecture("tanh", (M, M, M, 2), sigma_w2=sw2, sigma_b2=0.0, bias=False)
    pred = mf.predict(arch, T=T, q_hat0=1.0, q_hat0_st=0.5)
    k1, k2, cross = [], [], []
    for s in range(seeds):
        K = empirical_ntk(_random_tanh(arch.widths, sw2, s), _inputs(T, M, 1.0, 0.5, 100 + s)) / (arch.alpha * arch.M)
        Kd = torch.diagonal(K, dim1=2, dim2=3)  # Θ_kk(x_s, x_t): (T, T, C)
        on = torch.diagonal(Kd, dim1=0, dim2=1)
        k1.append(float(on.mean()))
        k2.append(float((Kd.sum((0, 1)) - on.sum(-1)).mean() / (T * (T - 1))))
        cross.append(float(K[:, :, 0, 1].mean()))
    for meas, ref in ((k1, pred.kappa1), (k2, pred.kappa2)):
        se = np.std(meas, ddof=1) / np.sqrt(seeds)
        assert abs(np.mean(meas) - ref) <= 4 * se + 0.03 * ref
    assert abs(np.mean(cross)) <= 4 * np.std(cross, ddof=1) / np.sqrt(seeds) + 0.03 * pred.kappa2  # Θ_kk' → 0
