"""The exact expansion of the action against independent float64 references.

References implemented here, independently of actionlab.expansion / series:
nested reverse-mode autodiff of t ↦ S(base + tθ) (logits U σ(W z + b) + c
written out, loss by torch.nn.functional.cross_entropy), brute-force loops
for J tensors, torch.autograd.functional.hessian for the S_2 matrix.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actionlab import activations as A
from actionlab._checks import ShapeError, ValueCheckError
from actionlab.expansion import (
    action_exact,
    action_series,
    j_contract,
    j_tensor,
    kappa,
    kink_radius,
    kappa_note,
    leading_series,
    s2_matrix,
    s2_stability,
    terms,
)

DT = torch.float64
ALL = ["silu", "gelu", "tanh", "sigmoid", "softplus", "erf", "elu", "relu", "leaky_relu"]
ANALYTIC0 = ["silu", "gelu", "tanh", "erf"]  # σ(0) = 0 and analytic at 0: the named terms apply


def problem(seed, M=None, H=None, E=None, N=None, scale=0.6, balanced=False):
    g = torch.Generator().manual_seed(seed)
    M = M or int(torch.randint(2, 6, (1,), generator=g))
    H = H or int(torch.randint(1, 9, (1,), generator=g))
    E = E or int(torch.randint(1, 7, (1,), generator=g))
    N = N or int(torch.randint(M, 40, (1,), generator=g))
    z = torch.randn(N, E, dtype=DT, generator=g)
    if balanced:
        N = M * max(2, N // M)
        z = torch.randn(N, E, dtype=DT, generator=g)
        labels = torch.arange(N) % M
    else:
        labels = torch.randint(0, M, (N,), generator=g)
        labels[:M] = torch.arange(M)

    def th():
        return {
            "U": torch.randn(M, H, dtype=DT, generator=g) * scale,
            "c": torch.randn(M, dtype=DT, generator=g) * scale,
            "W": torch.randn(H, E, dtype=DT, generator=g) * scale,
            "b": torch.randn(H, dtype=DT, generator=g) * scale,
        }

    return z, labels, th(), th()


def S_of(P, act, z, labels):
    logits = act(z @ P["W"].T + P["b"]) @ P["U"].T + P["c"]
    return torch.nn.functional.cross_entropy(logits, labels)


def ref_series(theta, base, act, z, labels, K, t0=0.0):
    """[S_0..S_K] of t ↦ S(base + tθ) at t = t0 by nested autograd (float64)."""
    t = torch.tensor(t0, dtype=DT, requires_grad=True)
    P = {k: (base[k] if base is not None else 0.0) + t * theta[k] for k in theta}
    g = S_of(P, act, z, labels)
    out = [g.detach().item()]
    for k in range(1, K + 1):
        if not g.requires_grad:
            out.append(0.0)
            continue
        (g,) = torch.autograd.grad(g, t, create_graph=True, allow_unused=True, materialize_grads=True)
        out.append(g.detach().item() / math.factorial(k))
    return torch.tensor(out, dtype=DT)


def assert_rel(got, ref, rtol=1e-9):
    scale = max(1.0, float(ref.abs().max()))
    err = float((got - ref).abs().max())
    assert err <= rtol * scale, f"max abs err {err:.3e} > {rtol:g}·{scale:.3g}\n got {got}\n ref {ref}"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("seed", [0])
def test_series_at_random_base_matches_nested_autodiff(name, seed):
    act = A.get(name)
    z, labels, theta, base = problem(seed)
    got = action_series(theta, z, labels, 6, base=base, activation=act)
    assert got.dtype == DT and got.shape == (7,)
    assert_rel(got, ref_series(theta, base, act, z, labels, 6))


@pytest.mark.parametrize("name", ["silu", "gelu", "tanh", "sigmoid", "softplus", "erf"])
def test_series_at_zero_matches_nested_autodiff(name):
    act = A.get(name)
    z, labels, theta, _ = problem(3)
    assert_rel(action_series(theta, z, labels, 6, activation=act), ref_series(theta, None, act, z, labels, 6))


def test_relu_at_zero_is_the_exact_homogeneous_function():
    """relu: f(tθ) = t·c + t²·U·relu(W z + b) exactly; its series is the analytic function's series."""
    z, labels, theta, _ = problem(4, M=4, H=6, E=5, N=30)
    got = action_series(theta, z, labels, 6, activation="relu")
    t = torch.tensor(0.0, dtype=DT, requires_grad=True)
    r = torch.relu(z @ theta["W"].T + theta["b"]) @ theta["U"].T
    g = torch.nn.functional.cross_entropy(t * theta["c"] + t**2 * r, labels)
    ref = [g.item()]
    for k in range(1, 7):
        (g,) = torch.autograd.grad(g, t, create_graph=True)
        ref.append(g.item() / math.factorial(k))
    assert_rel(got, torch.tensor(ref, dtype=DT))
    # and the partial sums approach the true S(tθ) for small t > 0
    for tt in (0.05, 0.1):
        S = S_of({k: tt * v for k, v in theta.items()}, A.get("relu"), z, labels)
        partial = sum(float(got[k]) * tt**k for k in range(7))
        assert abs(partial - float(S)) < 50 * tt**7


@pytest.mark.parametrize("name", ["elu", "leaky_relu"])
def test_kinked_at_zero_one_sided_coefficients(name):
    """At θ = 0 every pre-activation sits on the kink: the right-sided coefficients are those of the branch sign(Wz+b)."""
    act = A.get(name)
    z, labels, theta, _ = problem(5, M=3, H=5, E=4, N=25)
    got = action_series(theta, z, labels, 5, activation=act)
    a = z @ theta["W"].T + theta["b"]
    t = torch.tensor(0.0, dtype=DT, requires_grad=True)
    if name == "elu":
        h = torch.where(a >= 0, t * a, torch.expm1(t * a))  # alpha = 1
    else:
        h = torch.where(a >= 0, t * a, 0.01 * t * a)
    g = torch.nn.functional.cross_entropy(t * h @ theta["U"].T + t * theta["c"], labels)
    ref = [g.item()]
    for k in range(1, 6):
        (g,) = torch.autograd.grad(g, t, create_graph=True)
        ref.append(g.item() / math.factorial(k))
    assert_rel(got, torch.tensor(ref, dtype=DT))
    # nested autodiff of the true S at a tiny positive offset agrees to O(t0)
    near = ref_series(theta, None, act, z, labels, 2, t0=1e-7)
    assert_rel(got[:3], near, rtol=1e-5)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), name=st.sampled_from(ALL), order=st.integers(0, 6))
def test_series_property_random_shapes(seed, name, order):
    act = A.get(name)
    z, labels, theta, base = problem(seed)
    assert_rel(action_series(theta, z, labels, order, base=base, activation=act), ref_series(theta, base, act, z, labels, order))


@pytest.mark.parametrize("name", ["silu", "tanh", "relu"])
def test_partial_sums_converge(name):
    act = A.get(name)
    z, labels, theta, base = problem(6, M=3, H=4, E=3, N=30, scale=0.5)
    K = 5
    ser = action_series(theta, z, labels, K, base=base, activation=act)
    r = kink_radius(theta, z, base, activation=act)  # the series is exact on [0, r) only
    assert (r == math.inf) == (name != "relu")
    t0 = min(0.08, 0.9 * r)
    errs = []
    for t in (t0, t0 / 2, t0 / 4):
        S = float(S_of({k: base[k] + t * theta[k] for k in theta}, act, z, labels))
        errs.append(abs(S - sum(float(ser[k]) * t**k for k in range(K + 1))))
    assert errs[0] < 1e-5 * max(1.0, (t0 / 0.08) ** 6)
    assert errs[1] < errs[0] / 16 and errs[2] < errs[1] / 16  # O(t^{K+1}) = O(t^6)


def test_S1_unbalanced_exact_value_and_balanced_zero():
    z, labels, theta, _ = problem(7, M=4, H=3, E=3, N=37)
    M = 4
    p = torch.bincount(labels, minlength=M).to(DT) / len(labels)
    assert (p - 1 / M).abs().max() > 0.01
    ser = action_series(theta, z, labels, 1, activation="silu")
    expected = -float(((p - 1 / M) * theta["c"]).sum())
    assert abs(float(ser[1]) - expected) < 1e-13
    assert abs(float(ser[0]) - math.log(M)) < 1e-14
    zb, lb, th, _ = problem(8, M=4, H=3, E=3, balanced=True)
    assert abs(float(action_series(th, zb, lb, 1, activation="silu")[1])) < 1e-14


@pytest.mark.parametrize("name", ANALYTIC0)
@pytest.mark.parametrize("balanced", [True, False])
def test_named_terms_sum_to_exact_S2_S3(name, balanced):
    z, labels, theta, _ = problem(9, M=4, H=5, E=6, N=40, balanced=balanced)
    T = terms(theta, z, labels, activation=name)
    assert abs(T.S2 - T.exact_S2) < 1e-10 * max(1, abs(T.exact_S2))
    assert abs(T.S3 - T.exact_S3) < 1e-10 * max(1, abs(T.exact_S3))
    ref = ref_series(theta, None, A.get(name), z, labels, 3)
    assert abs(T.S2 - float(ref[2])) < 1e-10 and abs(T.S3 - float(ref[3])) < 1e-10
    assert abs(T.S1 - float(ref[1])) < 1e-12
    M, H, E = 4, 5, 6
    counts = {t.name: t.subterms for t in T.terms}
    assert counts == {"c·c": M * M, "U·W": M * H * E, "U·b": M * H, "c·c·c": M**3, "(U·b)·c": M * M * H,
                      "(U·W)·c": M * M * H * E, "U·W·b": M * H * E, "U·W·W": M * H * E * E, "U·b·b": M * H}
    if balanced:
        assert T.balanced
        assert abs(T.by_name("U·b").value) < 1e-14 and abs(T.by_name("U·b·b").value) < 1e-14


def test_each_named_term_isolated_by_its_own_direction():
    """Set all but the term's parameters to zero: the exact S_n is then that term alone (balanced, silu)."""
    z, labels, th, _ = problem(10, M=3, H=4, E=5, N=30, balanced=True)
    zero = {k: torch.zeros_like(v) for k, v in th.items()}

    def only(**keep):
        d = dict(zero)
        d.update({k: th[k] for k in keep})
        return d

    cases = [("U·W", 2, only(U=1, W=1)), ("c·c", 2, only(c=1)), ("c·c·c", 3, only(c=1)), ("U·W·W", 3, only(U=1, W=1))]
    for name, n, d in cases:
        T = terms(d, z, labels, activation="silu")
        assert abs(T.by_name(name).value - float(T.exact_S2 if n == 2 else T.exact_S3)) < 1e-12
    # (U·b)·c alone: U, b, c on, W off → S_3 = c·c·c + (U·b)·c
    T = terms(only(U=1, b=1, c=1), z, labels, activation="silu")
    assert abs(T.by_name("(U·b)·c").value + T.by_name("c·c·c").value - T.exact_S3) < 1e-12


def test_terms_refuse_kinked_or_nonzero_sigma0():
    z, labels, theta, _ = problem(11)
    for name in ("relu", "sigmoid", "elu"):
        with pytest.raises(ValueCheckError):
            terms(theta, z, labels, activation=name)


def brute_J(z, labels, n, M):
    E = z.shape[1]
    J = torch.zeros((M,) + (E,) * n, dtype=DT)
    import itertools

    for idx in itertools.product(range(E), repeat=n):
        prod = torch.ones(len(z), dtype=DT)
        for g in idx:
            prod = prod * z[:, g]
        for a in range(M):
            J[(a,) + idx] = prod.mean() - prod[labels == a].mean()
    return J


@pytest.mark.parametrize("n", [1, 2, 3])
def test_j_tensor_and_contraction_brute_force(n):
    z, labels, theta, _ = problem(12, M=3, H=4, E=3, N=30)
    J = j_tensor(z, labels, n)
    torch.testing.assert_close(J, brute_J(z, labels, n, 3), rtol=1e-12, atol=1e-12)
    U, W = theta["U"], theta["W"]
    # Σ J Σ_β U_αβ W_βγ1⋯W_βγn, brute force
    ref = 0.0
    import itertools

    for idx in itertools.product(range(3), repeat=n):
        w = torch.ones(4, dtype=DT)
        for g in idx:
            w = w * W[:, g]
        ref += float((J[(slice(None),) + idx] * (U @ w)).sum())
    assert abs(float(j_contract(z, labels, U, W, n)) - ref) < 1e-11
    assert abs(float(j_contract(z, labels, U, W, n, batch_size=7)) - ref) < 1e-11


def test_j_tensor_memory_guard_and_weighted_form():
    z, labels, _, _ = problem(13, M=3, E=6)
    with pytest.raises(ValueCheckError, match="j_contract"):
        j_tensor(z, labels, 3, max_bytes=1000)
    zb, lb, _, _ = problem(14, M=3, E=4, balanced=True)
    torch.testing.assert_close(j_tensor(zb, lb, 2), j_tensor(zb, lb, 2, class_weighted=True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["silu", "tanh", "gelu", "erf"])
def test_kappa_n_is_the_coefficient_of_the_U_linear_part(name):
    """d/dε S_{n+1}(εU, W, b=0, c=0) at ε = 0 equals κ_n Σ J U Wⁿ with κ_n = σ⁽ⁿ⁾(0)/(n!·M)."""
    z, labels, th, _ = problem(15, M=3, H=4, E=3, N=30, balanced=True)
    M = 3
    eps = torch.tensor(0.0, dtype=DT, requires_grad=True)
    d = {"U": eps * th["U"], "c": torch.zeros(M, dtype=DT), "W": th["W"], "b": torch.zeros(4, dtype=DT)}
    ser = action_series(d, z, labels, 6, activation=name)
    for n in range(1, 6):
        (g,) = torch.autograd.grad(ser[n + 1], eps, retain_graph=True)
        want = kappa(name, n, M) * float(j_contract(z, labels, th["U"], th["W"], n))
        assert abs(float(g) - want) < 1e-10 * max(1.0, abs(want))
        k_note = kappa_note(name, n, M)
        if kappa(name, n, M) != 0:
            assert abs(kappa(name, n, M) / k_note - (n + 1)) < 1e-12


def test_leading_series_structure():
    z, labels, th, _ = problem(16, M=3, H=4, E=3, N=30, balanced=True)
    L = leading_series(th, z, labels, 4, activation="silu")
    assert L.n == [1, 2, 3, 4] and len(L.partial_sums) == 4
    assert abs(L.exact - float(action_exact(th, z, labels, activation="silu"))) < 1e-14
    # with c = b = 0 and small θ, S_2 and S_3 are exactly the n = 1, 2 terms
    small = {k: 0.01 * v for k, v in th.items()}
    small["c"] = torch.zeros(3, dtype=DT)
    small["b"] = torch.zeros(4, dtype=DT)
    ser = action_series(small, z, labels, 3, activation="silu")
    L2 = leading_series(small, z, labels, 2, activation="silu")
    assert abs(L2.partial_sums[1] - (float(ser[0]) + float(ser[2]) + float(ser[3]))) < 1e-14


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
def test_kappa_and_leading_series_refuse_kinked_activations_like_terms(name):
    """A kink at 0 has no J-contraction: kappa, kappa_note and leading_series raise the ValueCheckError of terms.

    The refusal is right, not merely cautious: for relu the U-linear part of S_2 is Σ U D[relu(W z)], which
    differs from the right-hand κ_1 Σ J U W (measured here by autodiff in ε), so a κ_n would be wrong."""
    z, labels, th, _ = problem(21, M=3, H=4, E=3, N=30, balanced=True)
    with pytest.raises(ValueCheckError) as ref:
        terms(th, z, labels, activation=name)
    for call in (lambda: kappa(name, 1, 3), lambda: kappa_note(name, 2, 3),
                 lambda: leading_series(th, z, labels, 2, activation=name)):
        with pytest.raises(ValueCheckError) as exc:
            call()
        assert str(exc.value) == str(ref.value) and "not analytic at 0" in str(exc.value)
    if name == "relu":
        eps = torch.tensor(0.0, dtype=DT, requires_grad=True)
        d = {"U": eps * th["U"], "c": torch.zeros(3, dtype=DT), "W": th["W"], "b": torch.zeros(4, dtype=DT)}
        (g,) = torch.autograd.grad(action_series(d, z, labels, 2, activation="relu")[2], eps)
        right_hand = A.get("relu").taylor(1)[1] / 3 * float(j_contract(z, labels, th["U"], th["W"], 1))
        p = torch.bincount(labels, minlength=3).double() / len(labels)
        r = torch.relu(z @ th["W"].T)  # D_α[g] = E_p[g]/M − p(α) E_{p(z|α)}[g], written out
        D = torch.stack([r.mean(0) / 3 - p[a] * r[labels == a].mean(0) for a in range(3)])
        assert abs(float(g) - float((th["U"] * D).sum())) < 1e-12
        assert abs(float(g) - right_hand) > 1e-3 * max(abs(right_hand), 1e-12)


def test_kappa_accepts_analytic_activations_with_nonzero_value_at_zero_and_checks_n():
    """σ(0) ≠ 0 (softplus, sigmoid) adds only terms of higher degree in U: κ_n still applies (measured by autodiff)."""
    z, labels, th, _ = problem(22, M=3, H=4, E=3, N=30, balanced=True)
    eps = torch.tensor(0.0, dtype=DT, requires_grad=True)
    d = {"U": eps * th["U"], "c": torch.zeros(3, dtype=DT), "W": th["W"], "b": torch.zeros(4, dtype=DT)}
    ser = action_series(d, z, labels, 4, activation="softplus")
    for n in (1, 2, 3):
        (g,) = torch.autograd.grad(ser[n + 1], eps, retain_graph=True)
        want = kappa("softplus", n, 3) * float(j_contract(z, labels, th["U"], th["W"], n))
        assert abs(float(g) - want) < 1e-10 * max(1.0, abs(want))
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueCheckError, match="n must be an int"):
            kappa("silu", bad, 3)
    with pytest.raises(ValueCheckError, match="M must be an int"):
        kappa_note("silu", 1, 0)


def test_s2_matrix_equals_autograd_hessian_and_closed_form_spectrum():
    M, H, E = 3, 2, 3
    z, labels, _, _ = problem(17, M=M, H=H, E=E, N=24)
    act = A.get("silu")

    def S_vec(v):
        U, c, W, b = torch.split(v, [M * H, M, H * E, H])
        return S_of({"U": U.reshape(M, H), "c": c, "W": W.reshape(H, E), "b": b}, act, z, labels)

    P = M * H + M + H * E + H
    Hs = torch.autograd.functional.hessian(S_vec, torch.zeros(P, dtype=DT))
    Hm = s2_matrix(z, labels, "silu", H)
    torch.testing.assert_close(Hm, Hs, rtol=1e-12, atol=1e-12)
    st_ = s2_stability(z, labels, "silu", H, num_t=9)
    ev = torch.linalg.eigvalsh(Hs)
    assert abs(float(ev.min()) - st_.lambda_min) < 1e-12
    closed = sorted(st_.c_eigenvalues + [s * sgn for s in st_.uw_singular_values for sgn in (1, -1) for _ in range(H)]
                    + [0.0] * st_.spectrum_counts["zeros outside the c block"])
    torch.testing.assert_close(torch.tensor(closed, dtype=DT), ev, rtol=1e-10, atol=1e-12)
    # the c block: eigenvalues 0 and 1/M, null direction ∝ (1, …, 1)
    assert abs(st_.c_eigenvalues[0]) < 1e-14 and all(abs(x - 1 / M) < 1e-14 for x in st_.c_eigenvalues[1:])
    torch.testing.assert_close(torch.tensor(st_.c_null, dtype=DT), torch.full((M,), 1 / math.sqrt(M), dtype=DT))
    # along the direction, S_2 = λ_min/2 < 0, while the exact S stays ≥ 0 and turns up
    v = st_.direction
    assert abs(float(v @ Hs @ v) / 2 - st_.s_along[2]) < 1e-12 and st_.s_along[2] < 0
    assert min(st_.exact) >= 0 and st_.S_min < math.log(M) and st_.t_min > 0


def test_float32_close_to_float64_and_batch_independent():
    z, labels, theta, base = problem(18, M=4, H=6, E=5, N=50)
    s64 = action_series(theta, z, labels, 4, base=base, activation="silu")
    s64b = action_series(theta, z, labels, 4, base=base, activation="silu", batch_size=7)
    torch.testing.assert_close(s64, s64b, rtol=1e-12, atol=1e-13)
    f32 = {k: v.float() for k, v in theta.items()}
    b32 = {k: v.float() for k, v in base.items()}
    s32 = action_series(f32, z.float(), labels, 4, base=b32, activation="silu")
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), s64, rtol=1e-4, atol=1e-5)


def test_accepts_twolayer_and_checks_inputs():
    from actionlab.models import TwoLayer

    z, labels, theta, base = problem(19, M=3, H=4, E=2, N=20)
    m = TwoLayer(**theta, activation="tanh")
    mb = TwoLayer(**base, activation="tanh")
    torch.testing.assert_close(
        action_series(m, z, labels, 3, base=mb), action_series(theta, z, labels, 3, base=base, activation="tanh")
    )
    with pytest.raises(ShapeError):
        action_series(theta, z[:, :1], labels, 2, activation="tanh")
    with pytest.raises(ValueCheckError):
        action_series(theta, z, labels + 5, 2, activation="tanh")
    with pytest.raises(ValueCheckError):
        action_series(theta, z, labels, 2)  # no activation
    bad = dict(theta)
    bad["U"] = bad["U"].clone()
    bad["U"][0, 0] = float("nan")
    with pytest.raises(ValueCheckError):
        action_series(bad, z, labels, 2, activation="tanh")
    zn = z.clone()
    zn[0, 0] = float("inf")
    with pytest.raises(ValueCheckError):
        action_series(theta, zn, labels, 2, activation="tanh")
