"""RNGD: the preconditioned step against a dense metric built independently (float64)."""

from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actionlab._checks import ValueCheckError
from actionlab.optim import RNGD

DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)
    ).to(DT)


def _data(seed=1, N=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, 3, generator=g, dtype=DT), torch.randint(0, 2, (N,), generator=g)


def _flat_params(lin):
    return torch.cat([lin.weight, lin.bias[:, None]], 1).reshape(-1).detach().clone()


def _fisher_block_reference(kind, act, x, lin):
    """Dense metric of one layer from its definition, by autodiff (no use of actionlab.fisher.rfim).

    shared:      Gaussian linear layer y ~ N(W x̃, I):   mean_n J_nᵀ J_n, J_n = ∂(W x̃_n)/∂θ
    sigmoid:     Bernoulli units, enumerate y ∈ {0,1}^m
    tanh:        Bernoulli ±1 units (003 eqs. 5–7), enumerate y ∈ {±1}^m
    relu:        Gaussian units y ~ N(relu_1(a), 1) with the smoothed relu (ω = 1, ι = 0):
                 mean_n J_nᵀ J_n, J_n = ∂ softplus(W x̃_n)/∂θ
    """
    m, D = lin.weight.shape
    th0 = _flat_params(lin)
    N = x.shape[0]

    def pre(th, xn):
        Wt = th.reshape(m, D + 1)
        return Wt[:, :D] @ xn + Wt[:, D]

    P = th0.numel()
    G = torch.zeros(P, P, dtype=DT)
    for n in range(N):
        if kind == "shared" or act == "relu":
            f = (lambda th: pre(th, x[n])) if kind == "shared" else (lambda th: F.softplus(pre(th, x[n])))
            J = torch.autograd.functional.jacobian(f, th0)
            G += J.T @ J / N
        else:
            vals = [0.0, 1.0] if act == "sigmoid" else [-1.0, 1.0]
            for y in itertools.product(vals, repeat=m):
                yt = torch.tensor(y, dtype=DT)
                th = th0.clone().requires_grad_(True)
                a = pre(th, x[n])
                lp = F.logsigmoid((2 * yt - 1) * a).sum() if act == "sigmoid" else torch.log((1 + yt * torch.tanh(a)) / 2).sum()
                (s,) = torch.autograd.grad(lp, th)
                G += lp.detach().exp() * torch.outer(s, s) / N
    return G


def _damped_dense(G, m, d, lam):
    """Block-diagonal damping: each d × d diagonal block gets ε = λ·tr(block)/d."""
    G = G.clone()
    for o in range(m):
        sl = slice(o * d, (o + 1) * d)
        eps = lam * torch.trace(G[sl, sl]) / d
        G[sl, sl] += eps * torch.eye(d, dtype=DT)
    return G


@pytest.mark.parametrize("first_layer", ["shared", "per_neuron"])
def test_step_equals_dense_metric_inverse_times_gradient(first_layer):
    net = _net()
    x, y = _data()
    lam, lr = 0.03, 0.1
    opt = RNGD(net, lr=lr, decay=0.0, damping=lam, inverse_every=1, first_layer=first_layer)
    lins = [m for m in net if isinstance(m, nn.Linear)]
    # the layer inputs, computed independently of the hooks
    inputs, h = [], x
    for mod in net:
        if isinstance(mod, nn.Linear):
            inputs.append(h.detach())
        h = mod(h)
    before = [_flat_params(l) for l in lins]
    lins_before = [copy.deepcopy(l) for l in lins]  # the metric is evaluated at the pre-step weights
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    grads = [torch.cat([l.weight.grad, l.bias.grad[:, None]], 1).reshape(-1).clone() for l in lins]
    opt.step()
    kinds = [("per_neuron" if first_layer == "per_neuron" else "shared", "sigmoid"), ("per_neuron", "relu"), ("per_neuron", "tanh"), ("shared", None)]
    for l, l0, xin, g, b0, (kind, act) in zip(lins, lins_before, inputs, grads, before, kinds):
        m, d = l.weight.shape[0], l.weight.shape[1] + 1
        G = _fisher_block_reference(kind, act, xin, l0)
        if kind == "per_neuron":  # the definition is block-diagonal over neurons (003 section 2.6)
            off = G.clone()
            for o in range(m):
                off[o * d:(o + 1) * d, o * d:(o + 1) * d] = 0
            assert off.abs().max() < 1e-12
        expected = torch.linalg.solve(_damped_dense(G, m, d, lam), g)
        measured = (b0 - _flat_params(l)) / lr
        assert torch.allclose(measured, expected, atol=1e-10, rtol=1e-10), (measured - expected).abs().max()


def test_running_average_and_inverse_schedule():
    net = _net(2)
    x, y = _data(3)
    omega, T = 0.9, 3
    opt = RNGD(net, lr=1e-3, decay=omega, damping=0.01, inverse_every=T)
    lin = net[2]  # relu per-neuron layer
    batch_metrics, inverses = [], []
    for t in range(5):
        xin = net[1](net[0](x)).detach()
        xt = torch.cat([xin, torch.ones(len(x), 1, dtype=DT)], 1)
        a = (xt @ torch.cat([lin.weight, lin.bias[:, None]], 1).T).detach()
        nu = torch.sigmoid(a) ** 2  # smoothed relu RFIM, ω = 1, ι = 0 (003 table 1)
        batch_metrics.append(torch.einsum("no,ni,nj->oij", nu, xt, xt) / len(x))
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        inverses.append(opt.state[lin.weight]["inverse"].clone())
    G = torch.eye(5, dtype=DT).expand(3, 5, 5)
    for Gb in batch_metrics:
        G = omega * G + (1 - omega) * Gb
    assert torch.allclose(opt.metric(1), G, atol=1e-12)
    # recomputed at t = 0 and t = T only
    assert torch.equal(inverses[0], inverses[1]) and torch.equal(inverses[1], inverses[2])
    assert not torch.equal(inverses[2], inverses[3]) and torch.equal(inverses[3], inverses[4])


def test_momentum_and_decoupled_weight_decay():
    net = _net(4)
    x, y = _data(5)
    mu, wd, lr = 0.5, 0.1, 0.05
    opt = RNGD(net, lr=lr, momentum=mu, weight_decay=wd, decay=0.0, inverse_every=1)
    lin = net[6]
    dirs = []
    W_prev = lin.weight.detach().clone()
    for t in range(2):
        W_prev = lin.weight.detach().clone()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        dirs.append(opt.state[lin.weight]["last_direction"].clone())
    buf = mu * dirs[0] + dirs[1]
    expected = W_prev * (1 - lr * wd) - lr * buf[:, :-1]
    assert torch.allclose(lin.weight.detach(), expected, atol=1e-12)


def test_state_dict_round_trip():
    net = _net(6)
    x, y = _data(7)
    opt = RNGD(net, lr=0.05, momentum=0.9, inverse_every=2)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net2 = copy.deepcopy(net)
    opt2 = RNGD(net2, lr=0.05, momentum=0.9, inverse_every=2)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2.load_state_dict(torch.load(buf))
    for o, n in ((opt, net), (opt2, net2)):
        for _ in range(2):
            o.zero_grad()
            F.cross_entropy(n(x), y).backward()
            o.step()
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    assert opt2.state[net2[0].weight]["rngd_step"] == 5


def test_mlp_with_batchnorm_learns_and_eval_pass_does_not_touch_metric():
    from actionlab.models import MLP

    g = torch.Generator().manual_seed(0)
    model = MLP([5, 16, 16, 3], activation="relu", batchnorm=True, generator=g, dtype=DT)
    X = torch.randn(64, 5, generator=g, dtype=DT)
    Y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()
    opt = RNGD(model, lr=0.05, inverse_every=5)
    assert [s.kind for s in opt.specs] == ["shared", "per_neuron", "shared"]
    bn = model.net[1]
    gamma0 = bn.weight.detach().clone()
    losses = []
    for _ in range(40):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(X), Y)
        loss.backward()
        model.eval()
        with torch.no_grad():
            model(X[:3])  # evaluation in between must not replace the captured batch
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(bn.weight.detach(), gamma0)  # BatchNorm parameters take SGD steps


def test_errors_and_hooks():
    with pytest.raises(ValueCheckError, match="Conv2d"):
        RNGD(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), lr=0.1)
    with pytest.raises(ValueCheckError, match="nn.Sequential"):
        RNGD(nn.Linear(3, 2), lr=0.1)
    with pytest.raises(ValueCheckError, match="lr"):
        RNGD(_net(), lr=-1.0)
    net = _net()
    opt = RNGD(net, lr=0.1)
    x, y = _data()
    net.eval()  # an eval-mode forward is not captured
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    with pytest.raises(ValueCheckError, match="training forward pass"):
        opt.step()
    net.train()
    opt.remove_hooks()
    F.cross_entropy(net(x), y).backward()
    with pytest.raises(ValueCheckError, match="training forward"):
        opt.step()
    assert loss.item() > 0


def test_wide_hidden_layer_memory_formula():
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU(), nn.Linear(30, 5))
    assert RNGD(net).metric_numel() == 21 * 21 + 30 * 31 * 32 // 2 + 31 * 31  # per-neuron blocks packed
    assert RNGD(net, hidden_layers="shared").metric_numel() == 21 * 21 + 31 * 31 + 31 * 31


def _blockdiag_mask(d, sizes):
    """d × d mask that keeps the entries of contiguous diagonal blocks of the given sizes."""
    lab = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    assert len(lab) == d
    return (lab[:, None] == lab[None, :]).to(DT)


def test_blocked_shared_metric_step_equals_block_diagonal_reference():
    """shared_block_size=b: each shared layer's metric I_m ⊗ A is replaced by I_m ⊗ blockdiag(A_JJ), damped with the
    dense metric's ε = λ·tr(A)/d; the step must equal that matrix's inverse times the gradient."""
    torch.manual_seed(11)
    net = nn.Sequential(nn.Linear(7, 4), nn.Sigmoid(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to(DT)
    g = torch.Generator().manual_seed(12)
    x, y = torch.randn(9, 7, generator=g, dtype=DT), torch.randint(0, 2, (9,), generator=g)
    lam, lr = 0.05, 0.1
    opt = RNGD(net, lr=lr, decay=0.0, damping=lam, inverse_every=1, shared_block_size=3)
    # d = 8 → 3 blocks (3, 3, 2); hidden per-neuron (d = 5); last layer d = 4 → 2 blocks (2, 2)
    assert [(s.kind, s.blocks, s.block_sizes) for s in opt.specs] == [
        ("shared", 3, [3, 3, 2]), ("per_neuron", 1, [5]), ("shared", 2, [2, 2])]
    lins = [net[0], net[2], net[4]]
    inputs = [x, net[1](net[0](x)).detach(), net[3](net[2](net[1](net[0](x)))).detach()]
    before = [_flat_params(l) for l in lins]
    l0s = [copy.deepcopy(l) for l in lins]
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    grads = [torch.cat([l.weight.grad, l.bias.grad[:, None]], 1).clone() for l in lins]
    opt.step()
    for idx in (0, 2):
        lin, spec = lins[idx], opt.specs[idx]
        m, d = lin.weight.shape[0], lin.weight.shape[1] + 1
        Gfull = _fisher_block_reference("shared", None, inputs[idx], l0s[idx])
        A = Gfull[:d, :d]  # the full metric is I_m ⊗ A
        assert torch.allclose(Gfull, torch.kron(torch.eye(m, dtype=DT), A), atol=1e-12)
        Ab = (A + lam * torch.trace(A) / d * torch.eye(d, dtype=DT)) * _blockdiag_mask(d, spec.block_sizes)
        expected = grads[idx] @ torch.linalg.inv(Ab)
        measured = (before[idx] - _flat_params(lin)).reshape(m, d) / lr
        assert torch.allclose(measured, expected, atol=1e-10, rtol=1e-10), (measured - expected).abs().max()
    # the dense default is recovered when the block is at least d
    assert [s.blocks for s in RNGD(copy.deepcopy(net), shared_block_size=8).specs] == [1, 1, 1]
    assert RNGD(copy.deepcopy(net), shared_block_size=3).metric_numel() == 3 * 3 * 3 + 3 * 5 * 6 // 2 + 2 * 2 * 2


def test_metric_every_compounds_the_decay():
    """metric_every=k: G ← ωᵏ G + (1 − ωᵏ) G_batch at steps 0, k, 2k, …, and nothing in between."""
    net = _net(8)
    x, y = _data(9)
    omega, k = 0.8, 2
    opt = RNGD(net, lr=1e-3, decay=omega, damping=0.01, inverse_every=1, metric_every=k)
    G = torch.eye(4, dtype=DT)
    for t in range(5):
        xt = torch.cat([x, torch.ones(len(x), 1, dtype=DT)], 1)
        if t % k == 0:
            G = omega**k * G + (1 - omega**k) * xt.T @ xt / len(x)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        assert torch.allclose(opt.metric(0), G, atol=1e-13)


def test_schedule_arguments_are_checked():
    for bad in (0, 2.5, -3):
        with pytest.raises(ValueCheckError, match="shared_block_size"):
            RNGD(_net(), shared_block_size=bad)
        with pytest.raises(ValueCheckError, match="metric_every"):
            RNGD(_net(), metric_every=bad)


def _as_linear(W, b):
    lin = nn.Linear(W.shape[1], W.shape[0]).to(DT)
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(b)
    return lin


@pytest.mark.parametrize("act,first_layer", [("sigmoid", "per_neuron"), ("tanh", "per_neuron"), ("relu", "per_neuron"),
                                             ("silu", "shared")])
def test_two_layer_step_equals_dense_metric_inverse_times_gradient(act, first_layer):
    """RNGD on actionlab's own TwoLayer f = U σ(W z + b) + c: layers (W, b) on z and (U, c) on h = σ(W z + b);
    the step equals −lr·G⁻¹g with G built by autodiff / enumeration from the definition (as above)."""
    from actionlab.models import TwoLayer

    g = torch.Generator().manual_seed(21)
    model = TwoLayer.random(M=2, H=3, E=3, activation=act, scale=0.8, generator=g, dtype=DT)
    z = torch.randn(7, 3, generator=g, dtype=DT)
    y = torch.randint(0, 2, (7,), generator=g)
    lam, lr = 0.03, 0.1
    opt = RNGD(model, lr=lr, decay=0.0, damping=lam, inverse_every=1, first_layer=first_layer)
    assert [s.kind for s in opt.specs] == [first_layer, "shared"]
    lins = [_as_linear(model.W.detach(), model.b.detach()), _as_linear(model.U.detach(), model.c.detach())]
    inputs = [z, model.activation(z @ model.W.T + model.b).detach()]  # h, computed independently of the hook
    before = [_flat_params(l) for l in lins]
    opt.zero_grad()
    F.cross_entropy(model(z), y).backward()
    grads = [torch.cat([model.W.grad, model.b.grad[:, None]], 1).reshape(-1).clone(),
             torch.cat([model.U.grad, model.c.grad[:, None]], 1).reshape(-1).clone()]
    opt.step()
    after = [torch.cat([model.W, model.b[:, None]], 1).reshape(-1).detach(),
             torch.cat([model.U, model.c[:, None]], 1).reshape(-1).detach()]
    for lin, xin, gr, b0, b1, kind, a in zip(lins, inputs, grads, before, after, [first_layer, "shared"], [act, None]):
        m, d = lin.weight.shape[0], lin.weight.shape[1] + 1
        G = _fisher_block_reference(kind, a, xin, lin)
        expected = torch.linalg.solve(_damped_dense(G, m, d, lam), gr)
        assert torch.allclose((b0 - b1) / lr, expected, atol=1e-10, rtol=1e-10), ((b0 - b1) / lr - expected).abs().max()


def test_two_layer_trains_and_eval_pass_is_not_captured():
    from actionlab.models import TwoLayer

    g = torch.Generator().manual_seed(3)
    model = TwoLayer.glorot(M=3, H=16, E=4, activation="tanh", generator=g, dtype=DT)
    X = torch.randn(96, 4, generator=g, dtype=DT)
    Y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    opt = RNGD(model, lr=0.2, inverse_every=5, first_layer="per_neuron")
    losses = []
    for _ in range(60):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(X), Y)
        loss.backward()
        model.eval()
        with torch.no_grad():
            model(X[:2])  # must not replace the captured batch (shapes would not match the gradient's metric)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert opt.metric(0).shape == (16, 5, 5) and opt.metric(1).shape == (17, 17)
    assert "affine(4→16) per_neuron" in repr(opt)


def test_activation_modules_map_through_activations_from_module():
    """RNGD's ν comes from activations.from_module(...).smoothed(relu_omega); unknown modules name the module."""
    from actionlab import activations as A

    net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 4), nn.Softplus(beta=2.0), nn.Linear(4, 4),
                        nn.ELU(0.5), nn.Linear(4, 2)).to(DT)
    opt = RNGD(net, relu_omega=0.25, first_layer="per_neuron")  # ω of relu layers; Softplus(β) has ω = 1/β
    assert [s.activation for s in opt.specs] == [A.get("relu_omega", omega=0.25, iota=0.2),
                                                 A.get("relu_omega", omega=0.5, iota=0.0), A.get("elu", alpha=0.5), None]
    with pytest.raises(ValueCheckError, match="Hardtanh.*nn.Softplus"):
        RNGD(nn.Sequential(nn.Linear(3, 4), nn.Hardtanh(), nn.Linear(4, 2)))
    with pytest.raises(ValueCheckError, match="approximate"):
        RNGD(nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 2)))


# ---------------------------------------------------------------------------------------
# low-rank-plus-identity first-layer inverse (first_layer_rank) and the damping=0 refusal
# ---------------------------------------------------------------------------------------
def _first_layer_net(D=12, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 5), nn.ReLU(), nn.Linear(5, 3)).to(DT)


def _structured_inputs(N=200, D=12, seed=3):
    """Inputs with a decaying covariance spectrum (scales 3, 2.5, …), so the top eigen-directions are separated."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3.0, 0.2, D, dtype=DT)
    return torch.randn(N, D, generator=g, dtype=DT) * scales, torch.randint(0, 3, (N,), generator=g)


def test_low_rank_plus_identity_matches_eigh():
    from actionlab.optim import low_rank_plus_identity

    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=DT))
    spec = torch.cat([torch.tensor([50.0, 30.0, 20.0, 10.0, 8.0], dtype=DT), torch.linspace(1.0, 0.1, 35, dtype=DT)])
    A = (Q * spec) @ Q.T
    lam, V, rho, basis = low_rank_plus_identity(A, 5, iters=30)
    assert torch.allclose(lam, spec[:5], rtol=1e-10)
    assert torch.allclose(rho, spec[5:].mean(), rtol=1e-10)  # the mean of the remaining eigenvalues
    assert torch.allclose(V @ V.T, Q[:, :5] @ Q[:, :5].T, atol=1e-8)  # the top-5 eigenspace
    assert basis.shape == (40, 15)


def test_low_rank_first_layer_step_matches_reference_and_full_rank_is_exact():
    D, lam, lr, k = 12, 0.05, 0.1, 4
    x, y = _structured_inputs(D=D)
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=DT)], 1)
    A = xt.T @ xt / len(x)
    Ad = A + lam * torch.trace(A) / (D + 1) * torch.eye(D + 1, dtype=DT)
    vals, vecs = torch.linalg.eigh(Ad)  # ascending: the reference low-rank-plus-identity inverse from eigh
    top, Vk = vals[-k:], vecs[:, -k:]
    rho = vals[:-k].mean()
    for rank in (k, D):  # rank D = d − 1: ρ is the last eigenvalue, the inverse is exact
        net = _first_layer_net(D)
        before = _flat_params(net[0])
        opt = RNGD(net, lr=lr, decay=0.0, damping=lam, inverse_every=1, first_layer_rank=rank)
        assert opt.specs[0].rank == rank and opt.specs[1].rank == 0
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        g = torch.cat([net[0].weight.grad, net[0].bias.grad[:, None]], 1).clone()
        opt.step()
        step = (before - _flat_params(net[0])).reshape(g.shape) / lr
        if rank == k:
            expected = g / rho + ((g @ Vk) * (1 / top - 1 / rho)) @ Vk.T
            assert torch.allclose(step, expected, atol=1e-7, rtol=1e-6), (step - expected).abs().max()
        else:
            expected = torch.linalg.solve(Ad, g.T).T
            assert torch.allclose(step, expected, atol=1e-9, rtol=1e-8), (step - expected).abs().max()
        assert "rank" in repr(opt)


def test_low_rank_first_layer_warm_start_tracks_the_running_metric():
    """After several refreshes (4 warm-started subspace iterations each, k + 10 < d columns) the directions are
    the top-k eigenvectors of the running metric at the last refresh."""
    D, k = 30, 3
    g = torch.Generator().manual_seed(5)
    scales = torch.cat([torch.tensor([5.0, 4.0, 3.0], dtype=DT), torch.linspace(1.0, 0.1, D - 3, dtype=DT)])
    x = torch.randn(400, D, generator=g, dtype=DT) * scales
    y = torch.randint(0, 3, (400,), generator=g)
    net = _first_layer_net(D)
    opt = RNGD(net, lr=1e-3, decay=0.9, damping=0.01, inverse_every=2, first_layer_rank=k)
    for t in range(11):  # refreshes at t = 0, 2, …, 10: the last one sees the final metric
        sl = slice((t % 8) * 50, (t % 8) * 50 + 50)
        opt.zero_grad()
        F.cross_entropy(net(x[sl]), y[sl]).backward()
        opt.step()
    G = opt.metric(0)
    vecs = torch.linalg.eigh(G).eigenvectors[:, -k:]
    V = opt.state[net[0].weight]["inverse"]
    assert torch.linalg.matrix_norm(V @ V.T - vecs @ vecs.T, ord=2) < 1e-3


def test_first_layer_rank_is_checked():
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueCheckError, match="first_layer_rank"):
            RNGD(_first_layer_net(), first_layer_rank=bad)


def test_damping_zero_refuses_a_singular_metric():
    """Fewer samples (N = 5) than d = 13 parameters per neuron: g^y(w) is rank-deficient (003 §2.1), refuse."""
    D = 12
    x, y = _structured_inputs(N=5, D=D)
    for rank in (None, 4):
        net = _first_layer_net(D)
        opt = RNGD(net, lr=0.1, decay=0.0, damping=0.0, inverse_every=1, first_layer_rank=rank)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        before = _flat_params(net[0])
        with pytest.raises(ValueCheckError, match="singular without damping"):
            opt.step()
        assert torch.equal(before, _flat_params(net[0]))  # no step was taken
    # with enough samples the undamped metric is regular and the step is the exact inverse times the gradient
    x, y = _structured_inputs(N=200, D=D)
    net = _first_layer_net(D)
    opt = RNGD(net, lr=0.1, decay=0.0, damping=0.0, inverse_every=1)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    g = torch.cat([net[0].weight.grad, net[0].bias.grad[:, None]], 1).clone()
    before = _flat_params(net[0])
    opt.step()
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=DT)], 1)
    expected = torch.linalg.solve(xt.T @ xt / len(x), g.T).T
    assert torch.allclose((before - _flat_params(net[0])).reshape(g.shape) / 0.1, expected, atol=1e-8)


def test_low_rank_inverse_apply_matches_dense_inverse_of_the_same_matrix():
    """g M⁻¹ against the dense float64 inverse of the explicit M, for an isotropic and a diagonal remainder;
    M is exact on the kept directions, and k = d (no remainder) gives the dense damped inverse."""
    from actionlab.optim.rngd import low_rank_inverse_apply

    gen = torch.Generator().manual_seed(7)
    d, k, m = 20, 6, 4
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=DT))
    spec = torch.cat([torch.linspace(40.0, 5.0, k, dtype=DT), torch.linspace(2.0, 0.05, d - k, dtype=DT)])
    A = (Q * spec) @ Q.T
    eps = 0.01 * torch.trace(A) / d
    Ad = A + eps * torch.eye(d, dtype=DT)
    vals, vecs = torch.linalg.eigh(Ad)
    lam, V = vals.flip(0)[:k], vecs.flip(1)[:, :k]
    g = torch.randn(m, d, generator=gen, dtype=DT)
    P = torch.eye(d, dtype=DT) - V @ V.T
    rho = vals.flip(0)[k:].mean()
    D = torch.diagonal(Ad - (V * lam) @ V.T)
    # isotropic: M = VΛVᵀ + ρP, inverted densely
    M_iso = (V * lam) @ V.T + rho * P
    assert torch.allclose(low_rank_inverse_apply(g, lam, V, rho), torch.linalg.solve(M_iso, g.T).T, atol=1e-10)
    # diagonal: M⁻¹ = VΛ⁻¹Vᵀ + P D⁻¹ P; the M it inverts (its pseudo-inverse structure) is exact on V
    Minv = (V / lam) @ V.T + P @ torch.diag(1.0 / D) @ P
    assert torch.allclose(low_rank_inverse_apply(g, lam, V, D), g @ Minv, atol=1e-10)
    M = torch.linalg.inv(Minv)
    assert torch.allclose(M @ V, V * lam, atol=1e-8)
    assert torch.all(torch.linalg.eigvalsh(Minv) > 0)  # a positive-definite metric
    # a constant D is the isotropic remainder
    assert torch.allclose(low_rank_inverse_apply(g, lam, V, rho.expand(d).clone()), low_rank_inverse_apply(g, lam, V, rho), atol=1e-10)
    # k = d: the dense damped inverse, with either remainder
    exact = torch.linalg.solve(Ad, g.T).T
    for tail in (vals.min(), torch.ones(d, dtype=DT)):
        assert torch.allclose(low_rank_inverse_apply(g, vals, vecs, tail), exact, atol=1e-10)


def test_bench_goal_judgement_on_both_sides_of_the_thresholds():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rngd.py"
    spec = importlib.util.spec_from_file_location("bench_rngd", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.judge_goal(0.995, 1.4)
    assert not bench.judge_goal(0.985, 1.4)  # not faithful enough
    assert not bench.judge_goal(0.995, 1.6)  # too slow
    assert bench.judge_goal(0.99, 1.5)  # the thresholds are inclusive
