"""TwoLayer, MLP and the action S(θ): shapes, dtypes, persistence, references and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actionlab import ActionlabError, DataError, ShapeError, ValueCheckError
from actionlab.models import MLP, TwoLayer, action, two_layer_logits


def _problem(M=3, H=5, E=4, N=20, seed=0, dtype=torch.float64, activation="silu"):
    g = torch.Generator().manual_seed(seed)
    model = TwoLayer.random(M, H, E, activation=activation, generator=g, dtype=dtype)
    z = torch.randn(N, E, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, M, (N,), generator=g)
    return model, z, labels


def test_logits_formula_against_explicit_sum():
    model, z, _ = _problem()
    U, c, W, b = (model.tensors()[k] for k in "UcWb")
    ref = torch.empty(z.shape[0], model.M, dtype=torch.float64)
    for i in range(z.shape[0]):
        for a in range(model.M):
            ref[i, a] = sum(U[a, beta] * model.activation(W[beta] @ z[i] + b[beta]) for beta in range(model.H)) + c[a]
    torch.testing.assert_close(model.logits(z), ref)
    torch.testing.assert_close(model.probs(z).sum(-1), torch.ones(z.shape[0], dtype=torch.float64))


def test_action_is_mean_cross_entropy_and_ln_m_at_zero():
    model, z, labels = _problem(M=7)
    q = model.probs(z)
    ref = -torch.log(q[torch.arange(len(labels)), labels]).mean()
    torch.testing.assert_close(action(model, z, labels), ref)
    torch.testing.assert_close(action(model, z, labels, batch_size=3), ref)
    zero = TwoLayer.zeros(7, 5, 4, dtype=torch.float64)
    assert float(action(zero, z, labels).detach()) == pytest.approx(math.log(7), abs=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    model, z, labels = _problem(dtype=dtype)
    assert model.dtype == dtype and model.logits(z).dtype == dtype and action(model, z, labels).dtype == dtype
    U = torch.zeros(2, 3, dtype=torch.float64)
    m = TwoLayer(U=U, c=torch.zeros(2, dtype=torch.float64), W=torch.zeros(3, 4, dtype=torch.float64), b=torch.zeros(3, dtype=torch.float64))
    assert m.U.dtype == torch.float64


@settings(max_examples=25, deadline=None)
@given(M=st.integers(1, 6), H=st.integers(1, 7), E=st.integers(1, 5), seed=st.integers(0, 10_000), t=st.floats(-3, 3))
def test_vector_roundtrip_and_scaling(M, H, E, seed, t):
    model = TwoLayer.random(M, H, E, activation="tanh", generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    vec = model.to_vector()
    assert vec.numel() == model.num_params == M * H + M + H * E + H
    back = TwoLayer.from_vector(vec, M, H, E, activation="tanh")
    torch.testing.assert_close(back.to_vector(), vec)
    torch.testing.assert_close(model.scaled(t).to_vector(), t * vec)
    # vector order is U, c, W, b
    torch.testing.assert_close(vec[: M * H], model.U.detach().reshape(-1))
    torch.testing.assert_close(vec[-H:], model.b.detach())


def test_initialisers():
    g = torch.Generator().manual_seed(0)
    m = TwoLayer.glorot(10, 400, 300, generator=g)
    a = math.sqrt(6 / 700)
    assert m.W.abs().max() <= a and m.W.abs().max() > 0.9 * a
    assert float(m.W.detach().var()) == pytest.approx(a * a / 3, rel=0.05)
    assert torch.count_nonzero(m.b) == 0 and torch.count_nonzero(m.c) == 0
    r = TwoLayer.random(10, 400, 300, scale=0.5, generator=g)
    assert float(r.W.detach().std()) == pytest.approx(0.5, rel=0.02)
    assert TwoLayer.zeros(2, 3, 4).to_vector().abs().sum() == 0
    # same seed, same draw, regardless of dtype
    m1 = TwoLayer.random(3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    m2 = TwoLayer.random(3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(m1.to_vector().double(), m2.to_vector(), rtol=1e-6, atol=1e-7)


def test_save_load_roundtrip(tmp_path):
    model, z, _ = _problem(activation="elu")
    model.activation = __import__("actionlab.activations", fromlist=["get"]).get("elu", alpha=0.3)
    path = model.save(tmp_path / "m.safetensors")
    back = TwoLayer.load(path)
    assert back.activation == model.activation and back.dtype == torch.float64
    torch.testing.assert_close(back.logits(z), model.logits(z))
    with pytest.raises(DataError, match="does not exist"):
        TwoLayer.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="not a readable safetensors"):
        TwoLayer.load(tmp_path / "junk.safetensors")


def test_pure_function_under_torch_func():
    model, z, labels = _problem()
    params = model.tensors()

    def s(p):
        logits = two_layer_logits(p["U"], p["c"], p["W"], p["b"], "silu", z)
        return torch.nn.functional.cross_entropy(logits, labels)

    grads = torch.func.grad(s)(params)
    ref = torch.autograd.grad(action(model, z, labels), [model.U, model.c, model.W, model.b])
    for k, r in zip("UcWb", ref):
        torch.testing.assert_close(grads[k], r)


def test_bad_input_messages():
    model, z, labels = _problem()
    with pytest.raises(ShapeError, match="columns"):
        model.logits(torch.randn(3, 9, dtype=torch.float64))
    bad = z.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueCheckError, match="non-finite"):
        action(model, bad, labels)
    with pytest.raises(ValueCheckError, match=r"0\.\.2"):
        action(model, z, torch.full_like(labels, 5))
    with pytest.raises(ShapeError, match="rows"):
        action(model, z, labels[:-1])
    with pytest.raises(ValueCheckError, match="dtype"):
        model.logits(z.float())
    with pytest.raises(ShapeError, match="inconsistent shapes"):
        TwoLayer(U=torch.zeros(2, 3), c=torch.zeros(2), W=torch.zeros(4, 5), b=torch.zeros(3))
    with pytest.raises(ValueCheckError, match="unknown activation"):
        TwoLayer.zeros(2, 3, 4, activation="nope")
    with pytest.raises(ValueCheckError, match="integer"):
        action(model, z, labels.double())
    with pytest.raises(ShapeError):
        TwoLayer.from_vector(torch.zeros(5), 2, 3, 4)
    assert issubclass(ShapeError, ActionlabError)


def test_mlp_initialisation_statistics_and_structure():
    g = torch.Generator().manual_seed(0)
    net = MLP([500, 800, 800, 3], activation="tanh", sigma_w2=3.0, sigma_b2=0.64, generator=g, dtype=torch.float64)
    assert net.depth == 3 and len(net.linears) == 3
    w = net.linears[1].weight.detach()
    assert float(w.var()) == pytest.approx(3.0 / 800, rel=0.02)
    assert float(net.linears[1].bias.detach().var()) == pytest.approx(0.64, rel=0.2)
    x = torch.randn(4, 500, dtype=torch.float64, generator=g)
    # explicit recurrence u^l = W h + b, h = tanh(u), linear output
    h = x
    for l, lin in enumerate(net.linears):
        u = h @ lin.weight.T + lin.bias
        h = torch.tanh(u) if l < 2 else u
    torch.testing.assert_close(net(x), h)
    relu_out = MLP([5, 6, 2], activation="relu", output_activation="relu")
    assert (relu_out(torch.randn(10, 5)) >= 0).all()
    bn = MLP([5, 6, 6, 2], batchnorm=True, bias=False)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in bn.net) == 2
    assert all(lin.bias is None for lin in bn.linears)
    with pytest.raises(ShapeError):
        net(torch.randn(2, 7, dtype=torch.float64))
    with pytest.raises(ValueCheckError):
        MLP([5])


def test_two_layer_and_expansion_params_share_one_shape_check():
    from actionlab.expansion import as_params
    from actionlab.models import check_two_layer

    U, c, W, b = torch.zeros(3, 4), torch.zeros(3), torch.zeros(4, 5), torch.zeros(4)
    assert check_two_layer(U, c, W, b) == (3, 4, 5)
    p, m = as_params((U, c, W, b), activation="tanh"), TwoLayer(U, c, W, b, activation="tanh")
    assert (p.M, p.H, p.E) == (m.M, m.H, m.E) == (3, 4, 5)
    bad = [((U, torch.zeros(2), W, b), ShapeError, "inconsistent shapes"),
           ((U, c, W, torch.zeros(4, 1)), ShapeError, "needs U"),
           ((U, c, W.long(), b), ValueCheckError, "floating-point"),
           ((U, c, W, torch.tensor([0.0, float("nan"), 0.0, 0.0])), ValueCheckError, "non-finite")]
    for args, err, msg in bad:  # the same error, with the same words, from both
        for build in (lambda a: TwoLayer(*a, activation="tanh"), lambda a: as_params(a, activation="tanh")):
            with pytest.raises(err, match=msg):
                build(args)
