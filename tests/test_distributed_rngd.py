"""RNGD with a process group on real gloo groups (tests/_dist.py): world sizes 1, 2, 3 against one process.

Four steps on global batches of 11, 9, 10 and 8 samples, sharded unevenly (e.g. 4+4+3), with the
inverses refreshed every second step: under DistributedDataParallel (each rank's mean loss scaled by
W·N_r/N, so that DDP's average is the global batch's mean gradient) and on a plain model whose
gradients the test all-reduces. The parameters and the running metrics after the four steps must
equal single-process RNGD on the global batches to 1e-12 relative (float64), for the dense, the
blocked and the low-rank-plus-identity shared metrics and the per-neuron hidden metrics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import _dist
from actionlab import distributed as D
from actionlab._checks import ValueCheckError
from actionlab.models import TwoLayer
from actionlab.optim.rngd import RNGD

BATCHES = (11, 9, 10, 8)
RTOL = 1e-12
CONFIGS = {
    "dense": dict(lr=0.3, inverse_every=2),
    "blocked+momentum": dict(lr=0.2, inverse_every=2, shared_block_size=3, momentum=0.9, weight_decay=0.01,
                             metric_every=2),
    "low-rank": dict(lr=0.2, inverse_every=1, first_layer_rank=2, decay=0.5),
    "per-neuron-first": dict(lr=0.2, inverse_every=3, first_layer="per_neuron", damping=1e-3,
                             damping_relative_to="trace"),
}


def _close(a, b, rtol=RTOL):
    _dist.assert_close_scaled(a, b, rtol)


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "twolayer":
        g = torch.Generator().manual_seed(0)
        return TwoLayer(*(0.5 * torch.randn(*s, dtype=torch.float64, generator=g) for s in ((3, 6), (3,), (6, 5), (6,))),
                        activation="tanh")
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def _batch(step: int):
    g = torch.Generator().manual_seed(10 + step)
    n = BATCHES[step]
    return torch.randn(n, 5, dtype=torch.float64, generator=g), torch.randint(0, 3, (n,), generator=g)


def _train(kind: str, config: str, group, mode: str):
    """Four RNGD steps; with group=None on the global batches (the reference)."""
    model = _model(kind)
    net = model
    if mode == "ddp" and group is not None:
        net = nn.parallel.DistributedDataParallel(model, process_group=group)
        opt = RNGD(net, **CONFIGS[config])  # the group comes from the DDP model
    else:
        opt = RNGD(model, group=group, **CONFIGS[config])
    _, size = D.world(group)
    for step in range(len(BATCHES)):
        x, y = _batch(step)
        n = len(x)
        sl = D.shard(n, group)
        opt.zero_grad()
        out = net(x[sl])
        if mode == "ddp" and group is not None:  # DDP averages: rank r's mean loss × W·N_r/N
            loss = nn.functional.cross_entropy(out, y[sl]) * (size * (sl.stop - sl.start) / n)
            loss.backward()
        else:
            loss = nn.functional.cross_entropy(out, y[sl], reduction="sum") / n
            loss.backward()
            for p in model.parameters():
                p.grad = D.all_reduce_sum(p.grad, group)
        opt.step()
    params = [p.detach().numpy().copy() for p in model.parameters()]
    metrics = [opt.metric(i).numpy().copy() for i in range(len(opt.specs))]
    return params, metrics


def _on_rank(rank, size, group, kind, config, mode):
    return _train(kind, config, group, mode)


@pytest.mark.parametrize("kind,config,mode", [
    ("mlp", "dense", "ddp"),
    ("mlp", "blocked+momentum", "ddp"),
    ("mlp", "low-rank", "plain"),
    ("mlp", "per-neuron-first", "plain"),
    ("twolayer", "dense", "plain"),
])
def test_distributed_rngd_equals_one_process(kind, config, mode):
    ref_params, ref_metrics = _train(kind, config, None, mode)
    start = [p.detach().numpy() for p in _model(kind).parameters()]
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(ref_params, start))  # the steps moved the model
    for size, ranks in _dist.run(_on_rank, kind, config, mode).items():
        for params, metrics in ranks:
            for got, ref in zip(params, ref_params, strict=True):
                _close(got, ref)
            for got, ref in zip(metrics, ref_metrics, strict=True):
                _close(got, ref)
            for got, ref in zip(params, ranks[0][0]):
                np.testing.assert_array_equal(got, ref)  # every rank holds the same bits


def test_inverse_units_cover_every_neuron_and_balance():
    """The work units of a layer's inverse: contiguous, covering the m neurons, costs adding up to m·d³."""
    opt = RNGD(_model("mlp"), first_layer="per_neuron")
    for s in opt.specs:
        for size in (1, 2, 3, 7):
            units = RNGD._units(s, size)
            if s.kind == "per_neuron":
                assert [u[0] for u in units] == [0] + [u[1] for u in units[:-1]] and units[-1][1] == s.m
                assert len(units) == min(size, s.m)
                assert sum(u[2] for u in units) == pytest.approx(s.m * s.d**3)
            else:
                assert units == [(0, 1, float(s.d**3))]


def _errors_on_rank(rank, size, group):
    out = {}
    model = _model("mlp")
    if rank == size - 1:
        with torch.no_grad():
            model[0].weight.add_(1e-6)
    try:
        RNGD(model, group=group)
    except ValueCheckError as e:
        out["params"] = str(e)
    model = _model("mlp")
    opt = RNGD(model, group=group, damping=0.0, decay=0.0)  # G = G_batch of 4 samples: rank-deficient, d = 6, 7, 5
    x, y = _batch(0)
    sl = D.shard(4, group)
    nn.functional.cross_entropy(model(x[:4][sl]), y[:4][sl]).backward()
    try:
        opt.step()
    except ValueCheckError as e:
        out["singular"] = str(e)
    return out


def test_distributed_rngd_errors_raise_on_every_rank():
    for size, ranks in _dist.run(_errors_on_rank, world_sizes=(2, 3)).items():
        for o in ranks:
            assert "differ between the ranks" in o["params"]
            assert "singular" in o["singular"]
