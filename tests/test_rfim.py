"""RFIM closed forms (003, table 1, sections 2.1–2.8, Theorem 3) against the definition.

Reference: g = Σ_y p(y|θ,x) ∂_θ ln p(y) ∂_θ ln p(y)ᵀ with autodiff scores in
float64, averaged over the inputs — the expectation enumerated exactly for
Bernoulli / categorical outputs, and by Gauss–Hermite quadrature (exact for the
polynomial integrand in y) for Gaussian outputs. The reference models are
written here with plain torch ops, independently of ``actionlab.activations``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from actionlab._checks import ShapeError, ValueCheckError
from actionlab.fisher import rfim

DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
TOL = 1e-10

# independent definitions of the activations (003 section 1)
REF_ACTS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu_omega": lambda t, omega=1.0, iota=0.0: omega * torch.logaddexp(iota * t / omega, t / omega),
    "elu": lambda t, alpha=1.0: torch.where(t >= 0, t, alpha * torch.expm1(torch.clamp(t, max=0.0))),
}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=_gen(seed), dtype=DT) * scale


def hermite(k: int = 5):
    """Nodes/weights for E_{y~N(0,1)}[f(y)] (probabilists' Gauss–Hermite), exact for deg f ≤ 2k − 1."""
    nodes, w = np.polynomial.hermite_e.hermegauss(k)
    return torch.tensor(nodes, dtype=DT), torch.tensor(w / math.sqrt(2 * math.pi), dtype=DT)


def fisher_reference(logp, theta, outcomes, probs=None):
    """Σ_k p_k s_k s_kᵀ, s_k = ∂_θ logp(θ, y_k) by autodiff; p_k = exp(logp) unless given (quadrature)."""
    P = theta.numel()
    G = torch.zeros(P, P, dtype=DT)
    for k, y in enumerate(outcomes):
        th = theta.detach().clone().requires_grad_(True)
        lp = logp(th, y)
        (s,) = torch.autograd.grad(lp, th)
        p = lp.detach().exp() if probs is None else probs[k]
        G += p * torch.outer(s, s)
    return G


def gaussian_outcomes(mu: torch.Tensor, k: int = 4):
    """Product Gauss–Hermite nodes y = μ + ξ for y ~ N(μ, I) with weights."""
    nodes, w = hermite(k)
    outs, ws = [], []
    for idx in itertools.product(range(k), repeat=mu.numel()):
        outs.append(mu + nodes[list(idx)])
        ws.append(torch.prod(w[list(idx)]))
    return outs, ws


def gauss_logp(mean_fn):
    return lambda th, y: -0.5 * ((y - mean_fn(th)) ** 2).sum()


# ---------------------------------------------------------------------------------------
# single neurons (table 1, sections 2.1–2.4)
# ---------------------------------------------------------------------------------------
NEURON_CASES = [
    ("tanh", {}, "bernoulli"),
    ("sigmoid", {}, "bernoulli"),
    ("relu_omega", {"omega": 0.7, "iota": 0.15}, "gaussian"),
    ("relu_omega", {"omega": 1.0, "iota": 0.0}, "gaussian"),
    ("elu", {"alpha": 1.3}, "gaussian"),
    ("tanh", {}, "gaussian"),  # the Gaussian reading: coefficient sech⁴
]


@pytest.mark.parametrize("name,params,output", NEURON_CASES)
def test_single_neuron_rfim_matches_definition(name, params, output):
    from actionlab import activations

    D, N = 3, 7
    x = _rand(N, D, seed=1, scale=1.5)
    w = _rand(D + 1, seed=2)
    act = activations.get(name, **params)
    closed = rfim.neuron_rfim(w, x, act, output=output)
    f = lambda t: REF_ACTS[name](t, **params)  # noqa: E731
    ref = torch.zeros(D + 1, D + 1, dtype=DT)
    for n in range(N):
        xt = torch.cat([x[n], torch.ones(1, dtype=DT)])
        if output == "bernoulli" and name == "tanh":  # y = ±1, p = (1 ± tanh)/2, eqs. (5)–(7)
            logp = lambda th, y, xt=xt: torch.log((1 + y * f(th @ xt)) / 2)  # noqa: E731
            ref += fisher_reference(logp, w, [1.0, -1.0]) / N
        elif output == "bernoulli":  # y ∈ {0,1}, p(1) = sigm
            logp = lambda th, y, xt=xt: F.logsigmoid((2 * y - 1) * (th @ xt))  # noqa: E731
            ref += fisher_reference(logp, w, [1.0, 0.0]) / N
        else:
            mean = lambda th, xt=xt: f(th @ xt).reshape(1)  # noqa: E731
            outs, ws = gaussian_outcomes(mean(w).detach(), k=4)
            ref += fisher_reference(gauss_logp(mean), w, outs, ws) / N
    assert torch.allclose(closed, ref, atol=TOL, rtol=0), (closed - ref).abs().max()


def test_table1_closed_forms_by_name():
    """The table-1 entries written out: sech², sigm(1−sigm), [ι+(1−ι)sigm((1−ι)a/ω)]², elu piecewise."""
    a = torch.linspace(-3, 3, 13, dtype=DT)
    assert torch.allclose(rfim.rfim_coefficient("tanh", a), 1 / torch.cosh(a) ** 2, atol=1e-14)
    s = torch.sigmoid(a)
    assert torch.allclose(rfim.rfim_coefficient("sigm", a), s * (1 - s), atol=1e-14)
    from actionlab import activations

    r = activations.get("relu_omega", omega=0.5, iota=0.2)
    assert torch.allclose(rfim.rfim_coefficient(r, a), (0.2 + 0.8 * torch.sigmoid(0.8 / 0.5 * a)) ** 2, atol=1e-14)
    e = activations.get("elu", alpha=2.0)
    assert torch.allclose(rfim.rfim_coefficient(e, a), torch.where(a >= 0, 1.0, (2.0 * a.exp()) ** 2), atol=1e-14)
    assert rfim.default_output("tanh") == "bernoulli" and rfim.default_output("relu") == "gaussian"


# ---------------------------------------------------------------------------------------
# layers (sections 2.5–2.8)
# ---------------------------------------------------------------------------------------
def _flat(W, b):
    return torch.cat([W, b[:, None]], dim=1).reshape(-1)


def _unflat(th, m, D):
    Wt = th.reshape(m, D + 1)
    return Wt[:, :D], Wt[:, D]


def test_linear_layer_rfim():
    m, D, N = 3, 2, 5
    W, b, x = _rand(m, D, seed=3), _rand(m, seed=4), _rand(N, D, seed=5)
    closed = rfim.linear_layer_rfim(W, b, x)
    ref = torch.zeros(m * (D + 1), m * (D + 1), dtype=DT)
    for n in range(N):
        mean = lambda th, n=n: (lambda Wb: Wb[0] @ x[n] + Wb[1])(_unflat(th, m, D))  # noqa: E731
        outs, ws = gaussian_outcomes(mean(_flat(W, b)).detach(), k=3)
        ref += fisher_reference(gauss_logp(mean), _flat(W, b), outs, ws) / N
    assert torch.allclose(closed.dense(), ref, atol=TOL, rtol=0)
    assert torch.allclose(closed.B, torch.eye(m, dtype=DT))


@pytest.mark.parametrize("name,params", [("sigmoid", {}), ("tanh", {}), ("relu_omega", {"omega": 0.8, "iota": 0.1}), ("elu", {"alpha": 0.7})])
def test_nonlinear_layer_rfim_is_block_diagonal(name, params):
    from actionlab import activations

    m, D, N = 3 if name in ("sigmoid", "tanh") else 2, 2, 4
    W, b, x = _rand(m, D, seed=6), _rand(m, seed=7), _rand(N, D, seed=8, scale=1.3)
    act = activations.get(name, **params)
    closed = rfim.nonlinear_layer_rfim(W, b, x, act)
    f = lambda t: REF_ACTS[name](t, **params)  # noqa: E731
    P = m * (D + 1)
    ref = torch.zeros(P, P, dtype=DT)
    for n in range(N):
        pre = lambda th, n=n: (lambda Wb: Wb[0] @ x[n] + Wb[1])(_unflat(th, m, D))  # noqa: E731
        if name == "sigmoid":
            logp = lambda th, y, pre=pre: F.logsigmoid((2 * y - 1) * pre(th)).sum()  # noqa: E731
            ref += fisher_reference(logp, _flat(W, b), [torch.tensor(c, dtype=DT) for c in itertools.product([0.0, 1.0], repeat=m)]) / N
        elif name == "tanh":
            logp = lambda th, y, pre=pre: torch.log((1 + y * torch.tanh(pre(th))) / 2).sum()  # noqa: E731
            ref += fisher_reference(logp, _flat(W, b), [torch.tensor(c, dtype=DT) for c in itertools.product([-1.0, 1.0], repeat=m)]) / N
        else:
            mean = lambda th, pre=pre: f(pre(th))  # noqa: E731
            outs, ws = gaussian_outcomes(mean(_flat(W, b)).detach(), k=3)
            ref += fisher_reference(gauss_logp(mean), _flat(W, b), outs, ws) / N
    assert torch.allclose(closed.dense(), ref, atol=TOL, rtol=0), (closed.dense() - ref).abs().max()
    # per-sample form averages to the mean form
    per = rfim.nonlinear_layer_rfim(W, b, x, act, reduce="none")
    assert torch.allclose(per.blocks.mean(0), closed.blocks, atol=1e-14)


def test_softmax_layer_rfim_eq10():
    m, D, N = 4, 3, 5
    W, b, x = _rand(m, D, seed=9), _rand(m, seed=10), _rand(N, D, seed=11)
    closed = rfim.softmax_layer_rfim(W, b, x)
    ref = torch.zeros(m * (D + 1), m * (D + 1), dtype=DT)
    for n in range(N):
        logp = lambda th, y, n=n: torch.log_softmax((lambda Wb: Wb[0] @ x[n] + Wb[1])(_unflat(th, m, D)), 0)[y]  # noqa: E731
        ref += fisher_reference(logp, _flat(W, b), list(range(m))) / N
    assert torch.allclose(closed.dense(), ref, atol=TOL, rtol=0)
    # eq. (10) is singular: the rows of the m blocks sum to zero (softmax is shift invariant)
    assert torch.linalg.matrix_rank(closed.dense()).item() <= (m - 1) * (D + 1)


@pytest.mark.parametrize(
    "hidden,out_act,output",
    [("sigmoid", "sigmoid", None), ("tanh", "tanh", None), ("relu_omega", "relu_omega", "gaussian")],
)
def test_two_layer_rfim_eq12(hidden, out_act, output):
    H, D, Dy, N = 3, 2, 2, 4
    W, b, x = _rand(H, D, seed=12), _rand(H, seed=13), _rand(N, D, seed=14)
    C, c = _rand(Dy, H, seed=15), _rand(Dy, seed=16)
    closed = rfim.two_layer_rfim(W, b, C, c, x, hidden, out_act, output=output)
    fh = REF_ACTS[hidden]
    P = H * (D + 1)
    ref = torch.zeros(P, P, dtype=DT)
    for n in range(N):
        u = lambda th, n=n: C @ fh((lambda Wb: Wb[0] @ x[n] + Wb[1])(_unflat(th, H, D))) + c  # noqa: E731
        if out_act == "sigmoid":
            logp = lambda th, y, u=u: F.logsigmoid((2 * y - 1) * u(th)).sum()  # noqa: E731
            ref += fisher_reference(logp, _flat(W, b), [torch.tensor(v, dtype=DT) for v in itertools.product([0.0, 1.0], repeat=Dy)]) / N
        elif out_act == "tanh":
            logp = lambda th, y, u=u: torch.log((1 + y * torch.tanh(u(th))) / 2).sum()  # noqa: E731
            ref += fisher_reference(logp, _flat(W, b), [torch.tensor(v, dtype=DT) for v in itertools.product([-1.0, 1.0], repeat=Dy)]) / N
        else:
            mean = lambda th, u=u: REF_ACTS["relu_omega"](u(th))  # noqa: E731
            outs, ws = gaussian_outcomes(mean(_flat(W, b)).detach(), k=3)
            ref += fisher_reference(gauss_logp(mean), _flat(W, b), outs, ws) / N
    assert torch.allclose(closed.dense(), ref, atol=TOL, rtol=0), (closed.dense() - ref).abs().max()


def test_eq12_hidden_factor_is_the_derivative_not_the_rfim_coefficient():
    """For relu hidden units the factor of eq. (12) must be σ' (the derivative); writing the
    RFIM coefficient ν = σ'² there (the literal reading of ν_f) gives a different matrix."""
    from actionlab import activations

    H, D, Dy, N = 3, 2, 2, 6
    W, b, x = _rand(H, D, seed=17), _rand(H, seed=18), _rand(N, D, seed=19)
    C, c = _rand(Dy, H, seed=20), _rand(Dy, seed=21)
    r = activations.get("relu_omega")
    good = rfim.two_layer_rfim(W, b, C, c, x, r, "sigmoid").dense()
    xt = rfim.augment(x)
    a = xt @ torch.cat([W, b[:, None]], 1).T
    u = rfim.augment(r(a)) @ torch.cat([C, c[:, None]], 1).T
    s = torch.sigmoid(u)
    nu_h = rfim.rfim_coefficient(r, a)  # σ'² — the literal ν_f
    K = torch.einsum("nl,li,lj->nij", s * (1 - s), C, C) * nu_h[:, :, None] * nu_h[:, None, :]
    literal = torch.einsum("nop,ni,nj->opij", K / N, xt, xt).transpose(1, 2).reshape(H * (D + 1), -1)
    assert (good - literal).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------
# Theorem 3 (section 3): the joint Fisher of a fully stochastic network is block-diagonal
# ---------------------------------------------------------------------------------------
def test_theorem3_joint_fisher_block_diagonal_with_averaged_rfims():
    """x → h1 (tanh Bernoulli ±1 units) → h2 (sigm Bernoulli {0,1} units) → y (softmax).

    Fisher of p(h1, h2, y | x) by exact enumeration of all 2²·2²·3 configurations
    per input, averaged over inputs, against diag[E g^{h1}, E g^{h2}, E g^{y}]
    with each g the layer's RFIM at its (random) reference input.
    """
    E, H1, H2, K, N = 2, 2, 2, 3, 3
    W1, b1 = _rand(H1, E, seed=30), _rand(H1, seed=31)
    W2, b2 = _rand(H2, H1, seed=32), _rand(H2, seed=33)
    W3, b3 = _rand(K, H2, seed=34), _rand(K, seed=35)
    X = _rand(N, E, seed=36)
    sizes = [H1 * (E + 1), H2 * (H1 + 1), K * (H2 + 1)]
    theta = torch.cat([_flat(W1, b1), _flat(W2, b2), _flat(W3, b3)])

    def logp(th, cfg, x):
        t1, t2, t3 = torch.split(th, sizes)
        h1, h2, y = cfg
        A1, c1 = _unflat(t1, H1, E)
        A2, c2 = _unflat(t2, H2, H1)
        A3, c3 = _unflat(t3, K, H2)
        l1 = torch.log((1 + h1 * torch.tanh(A1 @ x + c1)) / 2).sum()
        l2 = F.logsigmoid((2 * h2 - 1) * (A2 @ h1 + c2)).sum()
        l3 = torch.log_softmax(A3 @ h2 + c3, 0)[y]
        return l1 + l2 + l3

    H1c = [torch.tensor(v, dtype=DT) for v in itertools.product([-1.0, 1.0], repeat=H1)]
    H2c = [torch.tensor(v, dtype=DT) for v in itertools.product([0.0, 1.0], repeat=H2)]
    cfgs = [(a, b, y) for a in H1c for b in H2c for y in range(K)]
    J = torch.zeros(theta.numel(), theta.numel(), dtype=DT)
    for n in range(N):
        J += fisher_reference(lambda th, cfg, n=n: logp(th, cfg, X[n]), theta, cfgs) / N
    # closed-form blocks: each layer's RFIM averaged over its reference distribution
    G1 = rfim.nonlinear_layer_rfim(W1, b1, X, "tanh").dense()
    # reference of layer 2: h1 with probability p(h1 | x) / N
    r2, w2 = [], []
    r3, w3 = [], []
    for n in range(N):
        p1 = torch.prod((1 + torch.stack(H1c) * torch.tanh(W1 @ X[n] + b1)) / 2, dim=1)
        for i, h1 in enumerate(H1c):
            r2.append(h1)
            w2.append(p1[i] / N)
            q = torch.sigmoid(W2 @ h1 + b2)
            for h2 in H2c:
                r3.append(h2)
                w3.append(p1[i] / N * torch.prod(torch.where(h2 > 0, q, 1 - q)))
    G2 = rfim.nonlinear_layer_rfim(W2, b2, torch.stack(r2), "sigmoid", weights=torch.stack(w2)).dense()
    G3 = rfim.softmax_layer_rfim(W3, b3, torch.stack(r3), weights=torch.stack(w3)).dense()
    blocks = torch.block_diag(G1, G2, G3)
    assert torch.allclose(J, blocks, atol=TOL, rtol=0), (J - blocks).abs().max()
    # and the off-diagonal (cross-layer) blocks really vanish while the diagonal ones do not
    assert J[: sizes[0], sizes[0]:].abs().max() < TOL
    assert min(G1.abs().max(), G2.abs().max(), G3.abs().max()) > 1e-3


# ---------------------------------------------------------------------------------------
# representations and errors
# ---------------------------------------------------------------------------------------
def test_representations_dense_consistent():
    W, b, x = _rand(3, 2, seed=40), _rand(3, seed=41), _rand(4, 2, seed=42)
    nb = rfim.nonlinear_layer_rfim(W, b, x, "tanh")
    D = nb.dense()
    assert D.shape == (9, 9) and nb.dim == 9
    assert torch.allclose(D[3:6, 3:6], nb.blocks[1]) and D[0:3, 3:6].abs().max() == 0
    kr = rfim.linear_layer_rfim(W, None, x)
    assert kr.dense().shape == (6, 6)
    per = rfim.linear_layer_rfim(W, b, x, reduce="none")
    assert torch.allclose(per.dense().mean(0), rfim.linear_layer_rfim(W, b, x).dense(), atol=1e-14)
    sm = rfim.softmax_layer_rfim(W, b, x, reduce="none")
    assert torch.allclose(sm.dense().mean(0), rfim.softmax_layer_rfim(W, b, x).dense(), atol=1e-14)


def test_clear_errors():
    W, b, x = _rand(3, 2), _rand(3), _rand(4, 2)
    with pytest.raises(ShapeError, match="columns"):
        rfim.nonlinear_layer_rfim(W, b, _rand(4, 5), "tanh")
    with pytest.raises(ShapeError, match="b must have shape"):
        rfim.linear_layer_rfim(W, _rand(2), x)
    with pytest.raises(ValueCheckError, match="Bernoulli"):
        rfim.nonlinear_layer_rfim(W, b, x, "relu", output="bernoulli")
    with pytest.raises(ValueCheckError, match="non-finite"):
        rfim.softmax_layer_rfim(W, b, x * float("nan"))
    with pytest.raises(ValueCheckError, match="unknown"):
        rfim.nonlinear_layer_rfim(W, b, x, "tanh", reduce="sum")
