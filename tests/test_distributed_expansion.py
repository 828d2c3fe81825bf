"""The expansion with group= on real gloo groups (tests/_dist.py): world sizes 1, 2, 3 against one process.

N = 7 samples sharded 7 | 4+3 | 3+2+2 with labels chosen so that every rank of the 2- and 3-rank
groups lacks at least one class (the class counts and class-conditional sums must be added over
the ranks, not averaged); every result is compared in float64 with the one-process result on the
union to 1e-12 relative. The gradient of a coefficient with group= is each rank's share: their sum
over the ranks is the one-process gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import _dist
from actionlab import distributed as D
from actionlab import expansion as X
from actionlab._checks import ValueCheckError

N, E, H, M = 7, 4, 5, 3
RTOL = 1e-12
LABELS = [0, 0, 1, 2, 1, 0, 2]  # 3 ranks: [0,0,1] [2,1] [0,2], each lacking a class
LABELS_SKEW = [0, 0, 0, 1, 1, 2, 2]  # 2 ranks: [0,0,0,1] [1,2,2]: each lacks a class


def _close(a, b, rtol=RTOL):
    _dist.assert_close_scaled(a, b, rtol)


def _problem(labels):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(N, E, dtype=torch.float64, generator=g)
    theta = {k: 0.7 * torch.randn(*shape, dtype=torch.float64, generator=g)
             for k, shape in (("U", (M, H)), ("c", (M,)), ("W", (H, E)), ("b", (H,)))}
    base = {k: 0.5 * torch.randn(v.shape, dtype=torch.float64, generator=g) for k, v in theta.items()}
    return z, torch.tensor(labels), theta, base


def _expansion_results(labels, group) -> dict:
    """Every expansion function on this rank's shard; with group=None the one-process reference."""
    z, lab, theta, base = _problem(labels)
    sl = D.shard(N, group)
    z, lab = z[sl], lab[sl]
    U = theta["U"].clone().requires_grad_(True)
    th = dict(theta, U=U)
    S = X.action_series(th, z, lab, 5, activation="silu", batch_size=2, group=group)
    (gU,) = torch.autograd.grad(S[2] + S[4], U)
    t = X.terms(theta, z, lab, activation="silu", batch_size=2, group=group)
    ls = X.leading_series(theta, z, lab, 4, activation="tanh", batch_size=3, group=group)
    out = {
        "series": S.detach(),
        "series_grad_U": gU,  # this rank's share
        "series_base": X.action_series(theta, z, lab, 4, base=base, activation="tanh", group=group),
        "series_relu": X.action_series(theta, z, lab, 4, activation="relu", group=group),
        "exact": X.action_exact(theta, z, lab, activation="gelu", batch_size=2, group=group),
        "freq": X.class_frequencies(lab, M, group=group),
        "J2": X.j_tensor(z, lab, 2, group=group),  # M from the union's labels
        "J3w": X.j_tensor(z, lab, 3, num_classes=M, class_weighted=True, batch_size=2, group=group),
        "contract": X.j_contract(z, lab, theta["U"], theta["W"], 3, b=theta["b"], weights=theta["b"],
                                 batch_size=2, group=group),
        "contract_w": X.j_contract(z, lab, theta["U"], theta["W"], 2, class_weighted=True, group=group),
        "terms": [tt.value for tt in t.terms] + [t.S1, t.S2, t.S3, t.exact_S2, t.exact_S3],
        "balanced": t.balanced,
        "leading": ls.contractions + ls.partial_sums + ls.note_partial_sums + [ls.exact],
    }
    return {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}


def _on_rank(rank, size, group, labels):
    return _expansion_results(labels, group)


@pytest.mark.parametrize("labels", [LABELS, LABELS_SKEW])
def test_distributed_expansion_equals_one_process(labels):
    ref = _expansion_results(labels, None)
    for size, ranks in _dist.run(_on_rank, labels).items():
        grad_sum = sum(r["series_grad_U"] for r in ranks)
        _close(grad_sum, ref["series_grad_U"])  # the shares add up to the one-process gradient
        for got in ranks:
            for key, val in ref.items():
                if key == "series_grad_U":
                    continue
                if key == "balanced":
                    assert got[key] == val
                else:
                    _close(got[key], val)
            np.testing.assert_array_equal(got["series"], ranks[0]["series"])  # the same bits on every rank


def test_reference_is_independent():
    """The one-process reference itself, against float64 autodiff of S(tθ) and a direct class-mean J."""
    z, lab, theta, _ = _problem(LABELS)
    S = X.action_series(theta, z, lab, 3, activation="silu")

    def action(t):
        th = {k: t * v for k, v in theta.items()}
        return X.action_exact(th, z, lab, activation="silu")

    t0 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    d1 = torch.autograd.grad(action(t0), t0, create_graph=True)[0]
    d2 = torch.autograd.grad(d1, t0)[0]
    assert float(S[1]) == pytest.approx(float(d1.detach()), rel=1e-12, abs=1e-15)
    assert float(S[2]) == pytest.approx(float(d2) / 2, rel=1e-12)
    J = X.j_tensor(z, lab, 1)
    direct = torch.stack([z.mean(0) - z[lab == a].mean(0) for a in range(M)])
    _close(J, direct)


def _errors_on_rank(rank, size, group):
    z, lab, theta, _ = _problem(LABELS)
    sl = D.shard(N, group)
    z, lab = z[sl], lab[sl].clone()
    out = {}
    bad = lab.clone()
    if rank == size - 1:
        bad[0] = M + 2  # a label out of range on the last rank only
    try:
        X.action_series(theta, z, bad, 2, activation="silu", group=group)
    except ValueCheckError as e:
        out["label"] = str(e)
    other = dict(theta)
    if rank == 1:
        other["W"] = theta["W"] + 1e-9
    try:
        X.action_exact(other, z, lab, activation="silu", group=group)
    except ValueCheckError as e:
        out["theta"] = str(e)
    return out


def test_distributed_expansion_errors_raise_on_every_rank():
    for size, ranks in _dist.run(_errors_on_rank, world_sizes=(2, 3)).items():
        for o in ranks:
            assert "label" in o and "differ between the ranks" in o["theta"]
