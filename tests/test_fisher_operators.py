"""The curvature-operator protocol: every operator against the dense FIM of torch.func (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actionlab._checks import ShapeError, ValueCheckError
from actionlab.fisher import operators as O
from actionlab.fisher import rfim
from actionlab.fisher.empirical import dense_fisher, dual_matrix
from actionlab.fisher.ntk import generic_dual_matrix

OUTS = ["squared", "cross_entropy"]


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _digits(T: int, size: int) -> torch.Tensor:
    """T sklearn 8×8 digits in [0, 1] as (T, 1, size, size) (bilinear upsampling for size 28)."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images[:T] / 16.0, dtype=torch.float64)[:, None]
    if size != 8:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def _convnet(size: int, seed=0):
    """Conv2d + BatchNorm2d(eval, non-trivial running statistics) + ReLU + MaxPool + Conv2d + LayerNorm + AvgPool + Linear."""
    torch.manual_seed(seed)
    s1 = size // 2 if size == 8 else size // 4
    first_pool = nn.MaxPool2d(2) if size == 8 else nn.MaxPool2d(4)
    s2 = s1 - 2
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), first_pool,
        nn.Conv2d(3, 4, 3), nn.LayerNorm([4, s2, s2]), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * (s2 // 2) ** 2, 4),
    ).double()
    with torch.no_grad():
        net[1].running_mean.normal_(0, 0.3)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[5].weight.normal_(1, 0.2)
    return net.eval()


@pytest.mark.parametrize("outputs", OUTS)
def test_fisher_operator_mlp_against_dense(outputs):
    m = _mlp()
    x = torch.randn(10, 6, dtype=torch.float64)
    F = dense_fisher(m, x, outputs)
    op = O.FisherOperator(m, x, outputs, batch_size=4)
    assert op.shape == F.shape and op.dtype == torch.float64 and op.device.type == "cpu"
    torch.testing.assert_close(op.dense(), F, atol=1e-12, rtol=0)
    V = torch.randn(F.shape[0], 3, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(V), F @ V, atol=1e-12, rtol=0)
    v = np.random.default_rng(0).standard_normal(F.shape[0])
    out = op.matvec(v)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, F.numpy() @ v, atol=1e-12)
    W = torch.randn(5, F.shape[0], dtype=torch.float64)  # a non-contiguous block (a transposed view)
    torch.testing.assert_close(op.matmat(W.T), F @ W.T, atol=1e-12, rtol=0)
    lin = op.to_scipy()
    np.testing.assert_allclose(lin @ v, F.numpy() @ v, atol=1e-12)
    np.testing.assert_allclose(lin.matmat(V.numpy()), (F @ V).numpy(), atol=1e-12)


@pytest.mark.parametrize("outputs", OUTS)
def test_dual_operator_mlp(outputs):
    m = _mlp(1)
    x = torch.randn(8, 6, dtype=torch.float64)
    d = O.DualFisherOperator(m, x, outputs)
    assert d.factorised and d.shape == (24, 24) and d.full_dim == sum(p.numel() for p in m.parameters())
    torch.testing.assert_close(d.dense(), dual_matrix(m, x, outputs), atol=1e-14, rtol=0)
    ev_F = torch.linalg.eigvalsh(dense_fisher(m, x, outputs)).flip(0)[:24]
    torch.testing.assert_close(torch.linalg.eigvalsh(d.dense()).flip(0), ev_F, atol=1e-12, rtol=0)
    terms = d.layer_terms()
    assert [n for n, _ in terms] == ["0", "2", "4"]
    torch.testing.assert_close(sum(t for _, t in terms), d.dense(), atol=1e-12, rtol=0)
    # each A.19 summand against the Gram matrix of that layer's Jacobian columns
    sizes = np.cumsum([0] + [sum(p.numel() for p in m[i].parameters()) for i in (0, 2, 4)])
    for (name, t), a, b in zip(terms, sizes[:-1], sizes[1:]):
        torch.testing.assert_close(t, generic_dual_matrix(m, x, outputs, params=slice(a, b)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("size,T", [(8, 6), (28, 4)])
@pytest.mark.parametrize("outputs", OUTS)
def test_operators_on_conv_nets(size, T, outputs):
    net = _convnet(size)
    x = _digits(T, size)
    F = dense_fisher(net, x, outputs)
    op = O.FisherOperator(net, x, outputs, batch_size=3)
    torch.testing.assert_close(op.dense(), F, atol=1e-12, rtol=0)
    d = O.DualFisherOperator(net, x, outputs)
    assert not d.factorised and d.shape == (4 * T, 4 * T) and d.full_dim == F.shape[0]
    torch.testing.assert_close(torch.linalg.eigvalsh(d.dense()).flip(0),
                               torch.linalg.eigvalsh(F).flip(0)[: 4 * T], atol=1e-12, rtol=0)
    terms = d.layer_terms()
    assert [n for n, _ in terms] == ["0", "1", "4", "5", "9"]
    torch.testing.assert_close(sum(t for _, t in terms), d.dense(), atol=1e-12, rtol=0)


def test_rfim_block_operator():
    torch.manual_seed(0)
    x = torch.randn(20, 5, dtype=torch.float64)
    W1, b1 = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    h = torch.tanh(x @ W1.T + b1)
    W2, b2 = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    blocks = [rfim.nonlinear_layer_rfim(W1, b1, x, "tanh"), rfim.linear_layer_rfim(W2, b2, h),
              rfim.softmax_layer_rfim(W2, None, h), torch.eye(2, dtype=torch.float64) * 3]
    op = O.RFIMBlockOperator(blocks)
    D = torch.block_diag(*[b if isinstance(b, torch.Tensor) else b.dense() for b in blocks])
    assert op.shape == D.shape == (24 + 15 + 12 + 2,) * 2
    torch.testing.assert_close(op.dense(), D)
    V = torch.randn(D.shape[0], 4, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(V), D @ V, atol=1e-12, rtol=0)
    torch.testing.assert_close(O.CurvatureOperator.dense(op), D, atol=1e-12, rtol=0)  # generic identity-block path
    assert isinstance(O.as_operator(blocks), O.RFIMBlockOperator)
    with pytest.raises(ShapeError, match="per-sample"):
        O.RFIMBlockOperator([rfim.nonlinear_layer_rfim(W1, b1, x, "tanh", reduce="none")])


def test_as_operator_and_errors():
    A = torch.randn(5, 5, dtype=torch.float64)
    A = A + A.T
    assert isinstance(O.as_operator(A), O.DenseOperator)
    from scipy.sparse.linalg import aslinearoperator

    sp = O.as_operator(aslinearoperator(A.numpy()))
    assert isinstance(sp, O.ForeignOperator)
    torch.testing.assert_close(sp.dense(), A, atol=1e-14, rtol=0)
    with pytest.raises(ValueCheckError, match="not symmetric"):
        O.DenseOperator(torch.arange(4.0).reshape(2, 2))
    with pytest.raises(ValueCheckError, match="cannot use"):
        O.as_operator("F")
    with pytest.raises(ShapeError, match="5 × 5"):
        O.as_operator(A).matmat(torch.ones(4, 2, dtype=torch.float64))
    with pytest.raises(ValueCheckError, match="curvlinops"):
        O.from_curvlinops(aslinearoperator(A.numpy()))
    with pytest.raises(ValueCheckError, match="unknown outputs"):
        O.FisherOperator(_mlp(), torch.randn(3, 6, dtype=torch.float64), "hinge")
    net = _convnet(8).train()
    with pytest.raises(ValueCheckError, match=r"BatchNorm in training mode.*model\.eval\(\)"):
        O.FisherOperator(net, _digits(2, 8))
    with pytest.raises(ShapeError, match=r"shape \(n, C\)"):
        O.FisherOperator(nn.Sequential(nn.Conv2d(1, 2, 3)).double(), _digits(2, 8))


def test_curvlinops_agreement():
    cl = pytest.importorskip("curvlinops", reason="curvlinops is an optional extra: pip install actionlab[curvlinops]")
    from actionlab.fisher.spectral import top_eigenpairs

    net = _convnet(8)
    x = _digits(12, 8)
    y = torch.arange(12) % 4
    params = list(net.parameters())
    data = [(x[:6], y[:6]), (x[6:], y[6:])]
    kw = dict(check_deterministic=False)
    ce = O.from_curvlinops(cl.GGNLinearOperator(net, nn.CrossEntropyLoss(), params, data, **kw))
    # MSELoss(mean) over C = 4 outputs is (2/C)·F_squared: scale C/2
    zeros = torch.zeros(12, 4, dtype=x.dtype)
    mse = O.from_curvlinops(cl.GGNLinearOperator(net, nn.MSELoss(), params, [(x, zeros)], **kw), scale=4 / 2)
    assert O.as_operator(ce) is ce and isinstance(O.as_operator(ce.op), O.ForeignOperator)
    for theirs, outputs in ((ce, "cross_entropy"), (mse, "squared")):
        mine = O.DualFisherOperator(net, x, outputs)  # λ_max and trace of F through its dual
        A = theirs.dense()
        assert top_eigenpairs(A, 1).values[0] == pytest.approx(top_eigenpairs(mine, 1).values[0], rel=1e-10)
        assert float(torch.trace(A)) == pytest.approx(float(torch.trace(mine.dense())), rel=1e-10)
        v = torch.randn(A.shape[0], dtype=A.dtype)
        torch.testing.assert_close(theirs @ v, O.FisherOperator(net, x, outputs) @ v, atol=1e-12, rtol=0)
