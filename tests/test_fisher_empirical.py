"""Dual-matrix FIM statistics (004, A.17–A.30) against the dense FIM from torch.func (float64)."""

import numpy as np
import pytest
import torch
from torch import nn

from actionlab._checks import ShapeError, ValueCheckError
from actionlab.fisher import empirical as E
from actionlab.models import MLP


def _net(act="tanh", out=None, widths=(5, 7, 6, 3), bias=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    m = MLP(list(widths), activation=act, sigma_w2=2.0, sigma_b2=0.3, output_activation=out, bias=bias,
            generator=g, dtype=torch.float64)
    x = torch.randn(4, widths[0], dtype=torch.float64, generator=g)
    return m, x


CASES = [("tanh", None, True), ("relu", None, True), ("relu", "relu", True), ("erf", None, False),
         ("linear", None, True), ("silu", "tanh", True)]


@pytest.mark.parametrize("act,out,bias", CASES)
@pytest.mark.parametrize("outputs", ["squared", "cross_entropy"])
def test_dual_matches_dense(act, out, bias, outputs):
    m, x = _net(act, out, bias=bias)
    F = E.dense_fisher(m, x, outputs)
    P = F.shape[0]
    st = E.fisher_statistics(m, x, outputs)
    assert st.num_params == P and st.T == 4 and st.C == 3
    ev = torch.linalg.eigvalsh(F).flip(0).numpy()
    k = len(st.eigenvalues)
    scale = max(1.0, ev[0])
    # F* eigenvalues = F's largest CT eigenvalues; the rest of F's are zero
    np.testing.assert_allclose(st.eigenvalues, ev[:k], atol=1e-10 * scale, rtol=0)
    assert np.abs(ev[k:]).max() < 1e-10 * scale
    assert abs(st.m - float(torch.trace(F)) / P) < 1e-12 * scale
    assert abs(st.s - float((F * F).sum()) / P) < 1e-10 * scale**2
    assert abs(st.lambda_max - ev[0]) < 1e-10 * scale
    nz = st.nonzero_eigenvalues()
    assert len(nz) == int((ev > 1e-10 * ev[0]).sum())


@pytest.mark.parametrize("outputs", ["squared", "cross_entropy"])
def test_lanczos_and_fisher_rao(outputs):
    m, x = _net("tanh", None, widths=(6, 9, 8, 4))
    F = E.dense_fisher(m, x, outputs)
    lam = float(torch.linalg.eigvalsh(F)[-1])
    assert abs(E.lanczos_lambda_max(m, x, outputs, tol=1e-12, batch_size=3) - lam) < 1e-9 * lam
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    assert abs(E.fisher_rao_norm(m, x, outputs) - float(theta @ F @ theta)) < 1e-10 * max(1, lam)
    thw = torch.cat([(p.detach() if n.endswith("weight") else torch.zeros_like(p)).reshape(-1)
                     for n, p in m.named_parameters()])
    assert abs(E.fisher_rao_norm(m, x, outputs, weights_only=True) - float(thw @ F @ thw)) < 1e-10 * max(1, lam)
    if outputs == "squared":
        assert abs(E.fisher_rao_diagonal(m, x) - float((F.diagonal() * thw * thw).sum())) < 1e-12 * max(1, lam)


def test_plain_sequential_and_dual_structure():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.GELU(), nn.Linear(5, 2)).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    st = E.fisher_statistics(seq, x, return_dual=True)
    F = E.dense_fisher(seq, x)
    ev = torch.linalg.eigvalsh(F).flip(0).numpy()[: len(st.eigenvalues)]
    np.testing.assert_allclose(st.eigenvalues, ev, atol=1e-10 * ev[0])
    # F* = BᵀB/T, output-major: block (k,k') entry (s,t) = ∇f_k(s)·∇f_k'(t)/T
    names = [n for n, _ in seq.named_parameters()]
    params = [p.detach() for p in seq.parameters()]
    J = torch.func.jacrev(lambda *p: torch.func.functional_call(seq, dict(zip(names, p)), (x,)),
                          argnums=tuple(range(len(params))))(*params)
    B = torch.cat([j.reshape(3, 2, -1) for j in J], dim=2)  # (T, C, P)
    Bk = B.permute(1, 0, 2).reshape(6, -1)
    torch.testing.assert_close(st.dual, Bk @ Bk.T / 3, atol=1e-12, rtol=1e-10)


def test_input_statistics():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    qd, qs = E.input_statistics(x)
    assert abs(qd - (0.5 + 1.0 + 2.0) / 3) < 1e-15
    assert abs(qs - 2 * (0.5 + 0.0 + 1.0) / 6) < 1e-15


def test_mean_field_agreement_moderate_width():
    """Measured m, λ_max of a random tanh net within 15 % of 004's formulas at M = 300 (3 seeds)."""
    from actionlab.fisher import meanfield as mf

    M, T = 300, 30
    vals = []
    for s in range(3):
        g = torch.Generator().manual_seed(s)
        net = MLP([M, M, M, 1], activation="tanh", sigma_w2=3.0, sigma_b2=0.64, generator=g, dtype=torch.float64)
        st = E.fisher_statistics(net, torch.randn(T, M, generator=g, dtype=torch.float64))
        vals.append((st.m, st.lambda_max))
    m, lam = np.mean(vals, axis=0)
    p = mf.predict(mf.Architecture("tanh", (M, M, M, 1), sigma_w2=3.0, sigma_b2=0.64), T=T)
    assert abs(m - p.m) / p.m < 0.15
    assert abs(lam - p.lambda_max) / p.lambda_max < 0.15


def test_errors():
    m, x = _net()
    with pytest.raises(ValueCheckError):
        E.fisher_statistics(m, x, outputs="hinge")
    with pytest.raises(ShapeError):
        E.fisher_statistics(m, x[:, :3])
    bn = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1))
    with pytest.raises(ValueCheckError, match="BatchNorm"):
        E.fisher_statistics(bn, torch.randn(3, 4))
    with pytest.raises(ValueCheckError, match="unsupported layer"):
        E.fisher_statistics(nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=1)), torch.randn(3, 4))
    with pytest.raises(ValueCheckError):
        E.fisher_statistics(m, torch.full((4, 5), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueCheckError):
        E.fisher_statistics(nn.Conv1d(1, 1, 1), torch.randn(3, 4))


def test_dual_with_mapped_and_autograd_activations_and_short_repr():
    """φ' from activations.from_module (LeakyReLU, Softplus(β), ELU, SiLU) or autograd (Mish, tanh-GELU):
    the non-zero spectrum of F* equals that of the dense autodiff FIM."""
    torch.manual_seed(5)
    seq = nn.Sequential(nn.Linear(3, 5), nn.LeakyReLU(0.1), nn.Linear(5, 5), nn.Softplus(beta=2.0), nn.Linear(5, 4),
                        nn.Mish(), nn.Linear(4, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 4), nn.ELU(0.7),
                        nn.Linear(4, 3), nn.SiLU(), nn.Linear(3, 2)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    st = E.fisher_statistics(seq, x)
    ev_dense = torch.linalg.eigvalsh(E.dense_fisher(seq, x)).flip(0)[: len(st.eigenvalues)].numpy()
    np.testing.assert_allclose(st.eigenvalues, ev_dense, rtol=1e-9, atol=1e-12)
    text = repr(st)
    assert "eigenvalues=array(shape=(12,)" in text and "lambda_max=" in text
    assert "<table>" in st._repr_html_()
