"""actionlab.distributed and the distributed Fisher operators / spectral functions on real gloo groups.

Every distributed result (world sizes 1, 2, 3; N = 7 inputs, shards 7 | 4+3 | 3+2+2) is compared in
float64 with the one-process result on the union of the shards, to 1e-12 relative.
The ranks run in tests/_dist.py's pool (spawned once per test session, shared with tests/test_distributed_*.py).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

import _dist
from actionlab import distributed as D
from actionlab._checks import ShapeError, ValueCheckError
from actionlab.fisher import operators as O
from actionlab.fisher import spectral as S

N = 7
RTOL = 1e-12


def _close(a, b, rtol=RTOL):
    _dist.assert_close_scaled(a, b, rtol)


# ---------------------------------------------------------------- the primitives, in-process


def test_shard_rule_and_one_process():
    for n in (0, 1, 7, 10):
        for size in (1, 2, 3, 4):
            sizes = D.shard_sizes(n, size)
            assert sizes == [len(a) for a in np.array_split(np.arange(n), size)]
    assert D.world(None) == (0, 1) and D.is_rank0(None) and not D.is_distributed(None)
    assert D.shard(N, None) == slice(0, N)
    assert D.describe(None) == {"world_size": 1, "rank": 0, "backend": None}
    t = torch.arange(3.0)
    assert D.all_reduce_sum(t, None) is t and D.all_reduce_sum(2, None) == 2.0
    assert [x is t for x in D.all_gather_varlen(t, None)] == [True]
    assert D.broadcast_object({"a": 1}, None) == {"a": 1}
    assert D.backend_for("cpu") == "gloo" and D.backend_for(torch.device("cuda", 0)) == "nccl"
    assert D.backend_for(None) == "gloo"
    with pytest.raises(ValueCheckError, match="n ≥ 0"):
        D.shard_sizes(-1, 2)
    with pytest.raises(ValueCheckError, match="same"):
        D.raise_together(ValueCheckError("the same"), None)


def test_init_from_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert D.init_from_env() is None  # not launched by torchrun: one process
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    if not torch.distributed.is_initialized():
        with pytest.raises(ValueCheckError, match="MASTER_ADDR, MASTER_PORT is not"):
            D.init_from_env()
        with pytest.raises(ValueCheckError, match="not initialised"):
            D.world(object())


# ---------------------------------------------------------------- the primitives, on real groups


def _primitives(rank, size, group):
    x = torch.arange(N * 3, dtype=torch.float64).reshape(N, 3)
    sl = D.shard(N, group)
    out = {"world": D.world(group), "rank0": D.is_rank0(group), "slice": (sl.start, sl.stop),
           "describe": D.describe(group), "sizes": D.all_sizes(sl.stop - sl.start, group)}
    g = torch.Generator().manual_seed(100 + rank)
    mine = torch.randn(4, 5, dtype=torch.float64, generator=g)
    out["sum"] = D.all_reduce_sum(mine, group).numpy()
    out["sum_number"] = D.all_reduce_sum(float(rank + 1), group)
    out["max"] = D.all_reduce_max(torch.tensor([float(rank), -float(rank)]), group).tolist()
    out["gather"] = torch.cat(D.all_gather_varlen(x[sl], group)).numpy()
    blocks = list(D.each_rank([x[sl], x[sl, :1] * 2], group))
    out["each_rank"] = [(r, o, a.numpy(), b.numpy()) for r, o, (a, b) in blocks]
    out["object"] = D.broadcast_object({"from": rank}, group)
    out["bcast"] = D.broadcast(torch.full((2,), float(rank)), group).tolist()
    D.check_same(torch.ones(3), group, "ones")
    try:
        D.check_same(torch.full((3,), float(rank)), group, "the model's parameters")
        out["check_same"] = None
    except ValueCheckError as e:
        out["check_same"] = str(e)
    try:
        D.raise_together(ShapeError("bad shard") if rank == size - 1 else None, group)
        out["together"] = None
    except ShapeError as e:
        out["together"] = str(e)
    try:
        D.check_device(torch.empty(2, device="meta"), group, "x")
        out["device"] = None
    except ValueCheckError as e:
        out["device"] = str(e)
    return out


def test_primitives_on_gloo_groups():
    x = np.arange(N * 3, dtype=np.float64).reshape(N, 3)
    res = _dist.run(_primitives)
    for size, ranks in res.items():
        sizes = D.shard_sizes(N, size)
        ref = sum(torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(100 + r))
                  for r in range(size)).numpy()
        starts = np.cumsum([0] + sizes)
        for rank, o in enumerate(ranks):
            assert o["world"] == (rank, size) and o["rank0"] == (rank == 0)
            assert o["slice"] == (starts[rank], starts[rank + 1]) and o["sizes"] == sizes
            assert o["describe"] == {"world_size": size, "rank": rank, "backend": "gloo"}
            _close(o["sum"], ref)
            np.testing.assert_array_equal(o["sum"], ranks[0]["sum"])  # the same bits on every rank
            assert o["sum_number"] == size * (size + 1) / 2
            assert o["max"] == [size - 1, 0.0]
            np.testing.assert_array_equal(o["gather"], x)  # uneven shards, rank order = data order
            assert [(r, off) for r, off, _, _ in o["each_rank"]] == [(r, starts[r]) for r in range(size)]
            np.testing.assert_array_equal(np.concatenate([a for _, _, a, _ in o["each_rank"]]), x)
            np.testing.assert_array_equal(np.concatenate([b for _, _, _, b in o["each_rank"]]), 2 * x[:, :1])
            assert o["object"] == {"from": 0} and o["bcast"] == [0.0, 0.0]
            if size == 1:
                assert o["check_same"] is None and o["together"] == "bad shard"
            else:
                assert "differ between the ranks" in o["check_same"]  # raised on every rank, not only the odd one
                assert o["together"] == ("bad shard" if rank == size - 1 else f"rank {size - 1}: bad shard")
            assert "backend 'gloo'" in o["device"] and "backend_for" in o["device"]


def _driven(rank, size, group):
    def serve(cmd, V):  # a collective product: Σ over ranks of (rank + 1)·V
        return D.all_reduce_sum((rank + 1.0) * V, group)

    def fn(call):
        return [float(call(0, torch.ones(2, 1, dtype=torch.float64)).sum()) for _ in range(3)]

    out = D.rank0_drives(fn, serve, group, torch.float64, torch.device("cpu"))

    def bad(call):
        call(0, torch.ones(1, 1, dtype=torch.float64))
        raise ValueCheckError("rank 0 gave up")

    try:
        D.rank0_drives(bad, serve, group, torch.float64, torch.device("cpu"))
        err = None
    except ValueCheckError as e:
        err = str(e)
    return out, err


def test_rank0_drives_keeps_ranks_in_step():
    for size, ranks in _dist.run(_driven).items():
        total = size * (size + 1)  # 2 entries × Σ (r + 1)
        for out, err in ranks:
            assert out == [float(total)] * 3 and err == "rank 0 gave up"


# ---------------------------------------------------------------- Fisher operators and spectra


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _convnet():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(2 * 16, 3)).double()
    with torch.no_grad():
        net[1].running_mean.normal_(0, 0.3)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _data(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, 6, dtype=torch.float64, generator=g) if kind == "mlp" else \
        torch.randn(N, 1, 8, 8, dtype=torch.float64, generator=g)


def _fisher_results(kind: str, outputs: str, group) -> dict:
    """Everything the distributed operators compute; with group=None the one-process reference."""
    model = _mlp() if kind == "mlp" else _convnet()
    x = _data(kind)
    xs = x[D.shard(N, group)]
    F = O.FisherOperator(model, xs, outputs, batch_size=2, group=group)
    d = O.DualFisherOperator(model, xs, outputs, group=group)
    g = torch.Generator().manual_seed(5)
    V = torch.randn(F.shape[0], 3, dtype=torch.float64, generator=g)
    W = torch.randn(d.shape[0], 2, dtype=torch.float64, generator=g)
    out = {
        "F_V": F.matmat(V), "F_v": F @ V[:, 0], "T": (F.T, d.T), "dual": d.dense(), "dual_W": d.matmat(W),
        "dual_local": d.matmat_local(d.local_part(W)), "trace": d.trace(), "frob": d.frobenius_sq(),
        "terms": [t for _, t in d.layer_terms()],
        "lmax_F": S.top_eigenpairs(F, 2, method="lanczos").values,
        "lmax_dual": S.top_eigenpairs(d, 2).values,
        "lmax_dense": S.top_eigenpairs(d, 1, method="dense").values,
        "hutch": S.hutchinson_trace(F, 6, seed=3).samples,
        "hutchpp": S.hutchpp_trace(d, 9, seed=4).estimate,
        "slq": S.spectral_density(F, method="slq", probes=2, steps=4, seed=2).nodes,
        "lanczos": S.lanczos_tridiagonal(d, W, 3)[0],
    }
    return {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}, d.offset, d.T_local


def _fisher_on_rank(rank, size, group, kind, outputs):
    return _fisher_results(kind, outputs, group)


@pytest.mark.parametrize("kind,outputs", [("mlp", "squared"), ("mlp", "cross_entropy"), ("conv", "cross_entropy")])
def test_distributed_fisher_equals_one_process(kind, outputs):
    ref, _, _ = _fisher_results(kind, outputs, None)
    C = ref["dual"].shape[0] // N
    for size, ranks in _dist.run(_fisher_on_rank, kind, outputs).items():
        for rank, (got, off, Tl) in enumerate(ranks):
            assert got["T"] == (N, N)
            local_rows = ref["dual"].reshape(C, N, C * N)[:, off:off + Tl].reshape(C * Tl, C * N)
            for key in ("F_V", "F_v", "dual", "dual_W", "trace", "frob", "lmax_F", "lmax_dual", "lmax_dense",
                        "hutch", "hutchpp", "slq", "lanczos"):
                _close(got[key], ref[key])
            _close(got["dual_local"], ref["dual_W"].reshape(C, N, 2)[:, off:off + Tl].reshape(C * Tl, 2))
            for t_got, t_ref in zip(got["terms"], ref["terms"], strict=True):  # each rank: its rows of F*_l
                _close(t_got, t_ref.reshape(C, N, C * N)[:, off:off + Tl].reshape(C * Tl, C * N))
            _close(sum(got["terms"]), local_rows)


def test_one_process_statistics_against_dense():
    """The reference itself: trace and Frobenius norm of F* are those of the P × P Fisher (float64 autodiff)."""
    from actionlab.fisher.empirical import dense_fisher

    m, x = _mlp(), _data("mlp")
    for outputs in ("squared", "cross_entropy"):
        Fd = dense_fisher(m, x, outputs)
        d = O.DualFisherOperator(m, x, outputs)
        assert d.trace() == pytest.approx(float(torch.trace(Fd)), rel=1e-12)
        assert d.frobenius_sq() == pytest.approx(float((Fd**2).sum()), rel=1e-11)


def _errors_on_rank(rank, size, group):
    out = {}
    model = _mlp()
    if rank == 1:
        with torch.no_grad():
            model[0].bias.add_(1e-3)
    xs = _data("mlp")[D.shard(N, group)]
    for name, cls in (("F", O.FisherOperator), ("dual", O.DualFisherOperator)):
        try:
            cls(model, xs, group=group)
            out[name] = None
        except ValueCheckError as e:
            out[name] = str(e)
    empty = xs[:0] if rank == size - 1 else xs
    for name, cls in (("F_empty", O.FisherOperator), ("dual_empty", O.DualFisherOperator)):
        try:
            cls(_mlp(), empty, group=group)
            out[name] = None
        except (ShapeError, ValueCheckError) as e:
            out[name] = str(e)
    op = O.FisherOperator(_mlp(), xs, group=group)
    try:
        S.top_eigenpairs(op, 0)
    except ValueCheckError as e:
        out["k"] = str(e)
    return out


def test_distributed_errors_raise_on_every_rank():
    for size, ranks in _dist.run(_errors_on_rank, world_sizes=(2, 3)).items():
        for rank, o in enumerate(ranks):
            assert "differ between the ranks" in o["F"] and "differ between the ranks" in o["dual"]
            assert "≥ 1" in o["F_empty"] and "≥ 1 input" in o["dual_empty"]
            assert "k must lie" in o["k"]
