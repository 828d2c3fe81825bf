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
    with pytest.raises(ValueCheckError, match="unsupported layer"):  # the layer-wise dual: stacks only
        E.dual_matrix(nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=1)), torch.randn(3, 4))
    # fisher_statistics takes any sample-wise module instead (the Jacobian Gram dual): equal to the dense FIM
    sm = nn.Sequential(nn.Linear(4, 5), nn.Softmax(dim=1)).double()
    xs = torch.randn(3, 4, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(E.dense_fisher(sm, xs)).flip(0)[:15].numpy()
    np.testing.assert_allclose(E.fisher_statistics(sm, xs).eigenvalues, ev, atol=1e-12)
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


# --------------------------------------------------------------------------- any nn.Module (issue 17 item 5)
def _conv_net(side: int, seed: int = 0) -> nn.Module:
    """Conv2d → BatchNorm2d (eval, non-trivial running statistics) → ReLU → MaxPool → LayerNorm → Linear."""
    torch.manual_seed(seed)
    k = 3 if side == 8 else 5
    s = (side - k + 1) // 2
    net = nn.Sequential(nn.Conv2d(1, 3, k), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1),
                        nn.Tanh(), nn.AvgPool2d(2) if side == 28 else nn.Identity(), nn.Flatten(),
                        nn.LayerNorm(2 * (s // 2 if side == 28 else s) ** 2), nn.Linear(2 * (s // 2 if side == 28 else s) ** 2, 3))
    net = net.double()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[8].weight.uniform_(0.5, 1.5)
        net[8].bias.uniform_(-0.2, 0.2)
    return net.eval()


def _images(side: int) -> torch.Tensor:
    if side == 8:
        from actionlab.data import load

        return load("digits", "train", per_class=1, dtype=torch.float64).z[:6].reshape(-1, 1, 8, 8)
    g = torch.Generator().manual_seed(3)
    return torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("side", [8, 28])
@pytest.mark.parametrize("outputs", ["squared", "cross_entropy"])
def test_conv_nets_against_dense_fim(side, outputs):
    """Conv2d, pooling, eval-mode BatchNorm and LayerNorm on 8×8 digits and 28×28 images: the spectrum, m, s of
    fisher_statistics equal those of the dense P × P FIM from torch.func.jacrev (float64)."""
    net, x = _conv_net(side), _images(side)
    F = E.dense_fisher(net, x, outputs)
    P = F.shape[0]
    st = E.fisher_statistics(net, x, outputs, batch_size=2)
    ev = torch.linalg.eigvalsh(F).flip(0).numpy()
    k = len(st.eigenvalues)
    assert k == 3 * x.shape[0] and st.num_params == P and st.C == 3
    np.testing.assert_allclose(st.eigenvalues, ev[:k], atol=1e-10 * ev[0], rtol=0)
    assert abs(st.m - float(torch.trace(F)) / P) < 1e-12 * ev[0]
    assert abs(st.s - float((F * F).sum()) / P) < 1e-10 * ev[0] ** 2
    # per-layer terms: one per module with parameters; they add up to m, and each one's trace is that of
    # the dense FIM's diagonal block of the module's parameters
    layers = E.layer_statistics(net, x, outputs)
    assert [ly.name for ly in layers] == ["0", "1", "4", "8", "9"]
    assert abs(sum(ly.m for ly in layers) - st.m) < 1e-12 * ev[0]
    start = 0
    for ly in layers:
        block = F[start:start + ly.num_params, start:start + ly.num_params]
        assert abs(ly.trace - float(torch.trace(block))) < 1e-10 * ev[0]
        assert abs(ly.lambda_max - float(torch.linalg.eigvalsh(block)[-1])) < 1e-9 * ev[0]
        start += ly.num_params
    assert start == P


def test_unsupported_modules_are_refused_with_the_fix():
    net = _conv_net(8).train()
    with pytest.raises(ValueCheckError, match="model.eval"):
        E.fisher_statistics(net, _images(8))

    class ItemNet(nn.Module):  # data-dependent Python control flow: torch.func cannot vmap it
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x) * float(x.sum().item() > 0)

    with pytest.raises(ValueCheckError, match="torch.func could not differentiate"):
        E.fisher_statistics(ItemNet(), torch.randn(3, 4))


@pytest.mark.parametrize("outputs", ["squared", "cross_entropy"])
def test_layer_statistics_of_stacks(outputs):
    """Per-layer terms of an MLP: equal to DualFisherOperator.layer_terms(), they sum to F*; the bias part is
    the trace of the dense FIM's bias entries; each λ_max,l is that of the dense diagonal block."""
    from actionlab.fisher.operators import DualFisherOperator

    m, x = _net("tanh", None)
    F = E.dense_fisher(m, x, outputs)
    P = F.shape[0]
    layers = E.layer_statistics(m, x, outputs)
    terms = DualFisherOperator(m, x, outputs).layer_terms()
    assert [ly.name for ly in layers] == [n for n, _ in terms]
    for ly, (_, Fl) in zip(layers, terms):
        assert abs(ly.m - float(torch.trace(Fl)) / P) < 1e-12
        assert abs(ly.s - float((Fl * Fl).sum()) / P) < 1e-12
    names = [n for n, _ in m.named_parameters()]
    sizes = [p.numel() for _, p in m.named_parameters()]
    diag, start, bias_tr = torch.diagonal(F), 0, 0.0
    for n, k in zip(names, sizes):
        if n.endswith("bias"):
            bias_tr += float(diag[start:start + k].sum())
        start += k
    assert abs(sum(ly.m_bias for ly in layers) - bias_tr / P) < 1e-12
    start = 0
    for ly in layers:
        block = F[start:start + ly.num_params, start:start + ly.num_params]
        assert abs(ly.lambda_max - float(torch.linalg.eigvalsh(block)[-1])) < 1e-10
        start += ly.num_params


def test_memory_guard_refuses_with_the_alternatives(monkeypatch):
    m, x = _net()
    assert E.available_memory("cpu") is None or E.available_memory("cpu") > 0
    monkeypatch.setattr(E, "available_memory", lambda device=None: 1000)  # 1 kB: (CT)² = 144 doubles do not fit ×4
    for fn in (E.fisher_statistics, E.dual_matrix, E.layer_statistics):
        with pytest.raises(E.InsufficientMemoryError, match="Lanczos on F.*fewer inputs.*several ranks"):
            fn(m, x)
    with pytest.raises(E.InsufficientMemoryError, match="Jacobian"):
        E.fisher_statistics(_conv_net(8), _images(8))
    monkeypatch.setattr(E, "available_memory", lambda device=None: 10**12)
    assert E.fisher_statistics(m, x).lambda_max > 0
