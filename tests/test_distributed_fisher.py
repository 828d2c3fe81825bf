"""fisher.empirical's fisher_statistics / dual_matrix / lanczos_lambda_max with ``group=`` on real gloo groups.

Every distributed result (world sizes 1, 2, 3; N = 7 inputs, uneven shards 7 | 4+3 | 3+2+2) is compared
in float64 with the one-process result on the union of the shards, to 1e-12 relative: m_λ, s_λ, λ_max,
the full spectrum (gathered onto rank 0, broadcast), the top eigenvalues by distributed Lanczos, the
block rows of F*, and the matrix-free λ_max of F — squared and cross-entropy outputs, a Linear/activation
stack (layer-wise factorisation) and a LayerNorm network (Jacobian Gram matrix).
The ranks run in tests/_dist.py's pool (spawned once per test session, shared with tests/test_distributed*.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import _dist
from actionlab import distributed as D
from actionlab._checks import ShapeError, ValueCheckError
from actionlab.fisher import empirical as E

N = 7
TOP = 3
RTOL = 1e-12
OUTS = ("squared", "cross_entropy")


def _close(a, b, rtol=RTOL):
    _dist.assert_close_scaled(a, b, rtol)


def _model(kind: str) -> nn.Module:
    torch.manual_seed(3)
    if kind == "stack":
        m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    else:  # not a Linear/activation stack: the Jacobian Gram matrix path
        m = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3))
    return m.double()


def _inputs() -> torch.Tensor:
    return torch.randn(N, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(11))


def _stats(rank, size, group, kind):
    model, x = _model(kind), _inputs()
    xl = x[D.shard(N, group)]
    out = {}
    for o in OUTS:
        full = E.fisher_statistics(model, xl, o, return_dual=True, group=group)
        top = E.fisher_statistics(model, xl, o, group=group, spectrum="top", top_k=TOP)
        out[o] = {"m": full.m, "s": full.s, "lambda_max": full.lambda_max, "ev": full.eigenvalues,
                  "spectrum": full.spectrum, "T": full.T, "C": full.C, "P": full.num_params,
                  "rows": full.dual.numpy(), "top": top.eigenvalues, "top_kind": top.spectrum,
                  "top_lambda": top.lambda_max, "top_m": top.m,
                  "dual": E.dual_matrix(model, xl, o, group=group).numpy() if kind == "stack" else None,
                  "lanczos": E.lanczos_lambda_max(model, xl, o, tol=0.0, group=group)}
    return out


def _stack_rows(rows_per_rank, C, T):
    """The ranks' block rows (C·T_r × C·T, row k·T_r + s) → the union's F* (row k·T + t)."""
    return np.concatenate([r.reshape(C, -1, C * T) for r in rows_per_rank], axis=1).reshape(C * T, C * T)


@pytest.mark.parametrize("kind", ["stack", "generic"])
def test_fisher_statistics_over_ranks_equal_one_process(kind):
    model, x = _model(kind), _inputs()
    got = _dist.run(_stats, kind)
    for o in OUTS:
        ref = E.fisher_statistics(model, x, o, return_dual=True)
        ref_lanczos = E.lanczos_lambda_max(model, x, o, tol=0.0)
        assert ref.spectrum == "full" and ref.eigenvalues.shape == (3 * N,)
        for size, ranks in got.items():
            for rank, r in enumerate(ranks):
                r = r[o]
                assert (r["T"], r["C"], r["P"], r["spectrum"], r["top_kind"]) == (N, 3, ref.num_params, "full", "top")
                for key, want in (("m", ref.m), ("s", ref.s), ("lambda_max", ref.lambda_max),
                                  ("top_lambda", ref.lambda_max), ("top_m", ref.m)):
                    _close(r[key], want)
                _close(r["ev"], ref.eigenvalues)
                _close(r["top"], ref.eigenvalues[:TOP])
                _close(r["lanczos"], ref_lanczos)
                assert r["rows"].shape == (3 * D.shard_sizes(N, size)[rank], 3 * N)
                if r["dual"] is not None:
                    np.testing.assert_array_equal(r["dual"], r["rows"])
            _close(_stack_rows([r[o]["rows"] for r in ranks], 3, N), ref.dual.numpy())
            assert all(np.array_equal(r[o]["ev"], ranks[0][o]["ev"]) for r in ranks)  # the same bits everywhere
        _close(ref_lanczos, ref.lambda_max, 1e-10)  # F (matrix-free) and F* share λ_max


def test_one_process_top_spectrum_and_arguments():
    model, x = _model("stack"), _inputs()
    full = E.fisher_statistics(model, x, "cross_entropy")
    top = E.fisher_statistics(model, x, "cross_entropy", spectrum="top", top_k=TOP)
    assert top.spectrum == "top" and top.eigenvalues.shape == (TOP,)
    _close(top.eigenvalues, full.eigenvalues[:TOP])
    assert (top.m, top.s) == (full.m, full.s)
    big = E.fisher_statistics(model, x, spectrum="top", top_k=100)  # k ≥ CT − 1: every eigenvalue, dense
    _close(big.eigenvalues, E.fisher_statistics(model, x).eigenvalues)
    with pytest.raises(ValueCheckError, match="spectrum"):
        E.fisher_statistics(model, x, spectrum="some")
    with pytest.raises(ValueCheckError, match="top_k"):
        E.fisher_statistics(model, x, spectrum="top", top_k=0)


def test_one_process_falls_back_to_lanczos_when_the_eigendecomposition_does_not_fit(monkeypatch):
    model, x = _model("stack"), _inputs()
    ref = E.fisher_statistics(model, x)
    # F* itself fits, its eigendecomposition on top of it does not
    monkeypatch.setattr(E, "check_memory", _refusing("eigendecomposition"))
    st = E.fisher_statistics(model, x, top_k=TOP)
    assert st.spectrum == "top" and st.eigenvalues.shape == (TOP,)
    _close(st.eigenvalues, ref.eigenvalues[:TOP])
    with pytest.raises(E.InsufficientMemoryError, match="eigendecomposition"):
        E.fisher_statistics(model, x, spectrum="full")


def _refusing(part: str):
    """A check_memory that refuses the needs whose description contains ``part`` (as a full device would)."""
    real = E.check_memory

    def check(need, device, what, fraction=0.9):
        if part in what:
            raise E.InsufficientMemoryError(f"{what} needs {need} bytes (refused by the test)")
        return real(need, device, what, fraction)

    return check


def _tight_rank0(rank, size, group):
    """Rank 0 cannot hold the gathered F* (but every rank holds its rows): auto → top_k by Lanczos; full → refused."""
    model, xl = _model("stack"), _inputs()[D.shard(N, group)]
    real = E.check_memory
    E.check_memory = _refusing("gathered")
    try:
        st = E.fisher_statistics(model, xl, "cross_entropy", group=group, top_k=TOP)
        try:
            E.fisher_statistics(model, xl, "cross_entropy", group=group, spectrum="full")
            refused = ""
        except E.InsufficientMemoryError as e:
            refused = str(e)
    finally:
        E.check_memory = real
    return {"kind": st.spectrum, "ev": st.eigenvalues, "m": st.m, "s": st.s, "refused": refused}


def test_spectrum_falls_back_to_lanczos_when_rank0_cannot_gather():
    ref = E.fisher_statistics(_model("stack"), _inputs(), "cross_entropy")
    for size, ranks in _dist.run(_tight_rank0, world_sizes=(2, 3)).items():
        for r in ranks:
            assert r["kind"] == "top" and r["ev"].shape == (TOP,)
            _close(r["ev"], ref.eigenvalues[:TOP])
            _close(r["m"], ref.m)
            _close(r["s"], ref.s)
            assert "rank 0 cannot hold the gathered F*" in r["refused"] and "spectrum='top'" in r["refused"]


def _bad_inputs(rank, size, group):
    model = _model("stack")
    out = {}
    x = _inputs()[:2][D.shard(2, group)]  # 3 ranks, 2 inputs: rank 2 has none
    for name, fn in (("stats", lambda: E.fisher_statistics(model, x, group=group)),
                     ("dual", lambda: E.dual_matrix(model, x, group=group)),
                     ("lanczos", lambda: E.lanczos_lambda_max(model, x, group=group))):
        try:
            fn()
            out[name] = None
        except (ShapeError, ValueCheckError) as e:
            out[name] = (type(e).__name__, str(e))
    return out


def test_a_rank_without_inputs_fails_on_every_rank():
    for rank, r in enumerate(_dist.run(_bad_inputs, world_sizes=(3,))[3]):
        for name in ("stats", "dual", "lanczos"):
            assert r[name] is not None and r[name][0] == "ShapeError" and "≥ 1 input" in r[name][1], (name, r[name])
            assert rank == 2 or r[name][1].startswith("rank 2: "), r[name]  # the others name the failing rank
