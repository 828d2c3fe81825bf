"""``actionlab fim-spectrum``: measured FIM eigenvalue statistics of random MLPs against mean-field theory.

Source 004 (Karakida, Akaho & Amari, supplement) with the main-text definitions
of ``seeds/papers.md``. For every activation (tanh, relu, linear, erf by
default) and width M on a grid, random MLPs of depth L (widths
[α_0 M, α_1 M, …, α_{L−1} M, C], W ~ N(0, σ_w²/M_{l−1}), b ~ N(0, σ_b²)) are
drawn for several seeds and their squared-loss FIM on T inputs is measured
through the dual matrix F* (:mod:`actionlab.fisher.empirical`): m_λ, s_λ,
λ_max and the Fisher–Rao norm θᵀFθ (weights only). Theory:
:func:`actionlab.fisher.meanfield.predict` (A.12, A.25/A.33, Theorem 4, A.50).

Also: λ_max, m, s against T at fixed M (Fig. C.1); relu networks with a linear
and with a relu output unit against both boundaries q̃^L (linear output: 1;
B.10: 1/2); the C = O(M) bounds of A.5; the papers.md quick check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from actionlab import stats as _stats
from actionlab._checks import ValueCheckError
from actionlab.config import RunOptions, seed_everything
from actionlab import activations as _act
from actionlab._display import short_repr
from actionlab.experiments._registry import param, register_experiment
from actionlab.fisher import empirical as emp
from actionlab.fisher import meanfield as mf
from actionlab.models import MLP
from actionlab.runs import Claim, RunFolder, claims_table_md

__all__ = ["FimSpectrumConfig", "FimSpectrumResult", "run", "measure"]

_DEFAULT_SIGMAS = {"tanh": (3.0, 0.64), "erf": (3.0, 0.64), "relu": (2.0, 0.1), "linear": (1.0, 0.1)}


@dataclass
class FimSpectrumConfig:
    """Random-network FIM statistics (m_λ, s_λ, λ_max) against the mean-field theory of 004."""

    activations: tuple[str, ...] = param(
        ("tanh", "relu", "linear", "erf"), "activations φ of the hidden layers, one sweep each (papers.md)",
        choices=_act.names(), allow_empty=False)
    sigma_w2: tuple[float, ...] = param(
        (), "weight variance σ_w² (W^l_ij ~ N(0, σ_w²/M_{l−1}), papers.md), one per activation; "
            "empty: tanh/erf 3, relu 2, linear 1, others 1", min=0.0)
    sigma_b2: tuple[float, ...] = param(
        (), "bias variance σ_b² (b^l_i ~ N(0, σ_b²)), one per activation; empty: tanh/erf 0.64, relu and others 0.1",
        min=0.0)
    widths: tuple[int, ...] = param(
        (100, 200, 500, 1000, 2000, 3000), "reference widths M of the sweep (M_l = α_l M, papers.md)", min=1,
        allow_empty=False)
    L: int = param(3, "depth L: number of weight layers (u^l = W^l h^{l−1} + b^l, l = 1..L)", min=1)
    alphas: tuple[float, ...] = param(
        (), "width ratios α_0 … α_{L−1} (M_l = α_l M; L entries); empty: all 1 (M_0 = M)", min=0.0, exclusive_min=True)
    C: int = param(1, "number of outputs C = M_L", min=1)
    T: int = param(100, "number of random inputs T of the FIM (A.26)", min=1)
    seeds: int = param(4, "random networks per (activation, M); mean ± std reported", min=1)
    seeds_largest: int = param(
        16, "random networks per activation at the largest width M, where the claims are judged (A.12, A.25, "
           "Theorem 4, A.4, A.9, per layer A.19, B.10 with a linear output); 0: the same as seeds", min=0)
    inputs: str = param("gaussian", "inputs x: 'gaussian' (i.i.d. N(0, 1): q̂⁰ = 1, q̂⁰_st = 0) or an actionlab.data "
                                    "set name (then M_0 is the data's dimension and q̂⁰, q̂⁰_st are measured)")
    T_grid: tuple[int, ...] = param(
        (1, 2, 5, 10, 20, 50, 100, 200, 500), "numbers of inputs T for the statistics against T (Fig. C.1)", min=1,
        allow_empty=False)
    T_width: int = param(1000, "reference width M of the sweep over T", min=1)
    C_grid: tuple[int, ...] = param(
        (1, 10, 50, 200), "numbers of outputs C for the C = O(M) bounds of A.5; empty: skip that part", min=1)
    C_width: int = param(400, "reference width M of the sweep over C (A.5)", min=1)
    C_T: int = param(10, "number of inputs T of the sweep over C (A.5)", min=1)
    relu_output_seeds: int = param(
        24, "random relu networks with a relu output unit f = φ(u^L) for B.10's q̃^L = 1/2 (the linear-output "
            "networks are section 1's at the largest width)", min=1)
    quick_check: bool = param(True, "also run the papers.md quick check (tanh, L = 3, M = 400, T = 60)")
    tolerance: float = param(
        0.1, "largest |relative error| at the largest width for a 'holds' verdict (dimensionless)", min=0.0,
        exclusive_min=True)
    level: float = param(0.95, "confidence level of the intervals over seeds (t-interval, actionlab.stats)", min=0.0,
                         max=1.0, exclusive_min=True)
    markov_levels: tuple[float, ...] = param(
        (0.5, 1.0, 2.0, 4.0), "levels k of Corollary 2's N(λ ≥ k) ≤ ακ₁CM/k (A.16), as multiples of the A.4(i) bulk "
                              "value α(κ₁−κ₂)M/T", min=0.0, exclusive_min=True, allow_empty=False)

    PRESETS: ClassVar[dict[str, dict]] = {
        "quick": {"widths": (50, 100, 200, 400), "seeds": 2, "T": 40, "T_grid": (1, 5, 20, 60), "T_width": 300,
                  "C_grid": (1, 10, 40), "C_width": 100, "C_T": 5, "relu_output_seeds": 4, "tolerance": 0.15,
                  "seeds_largest": 4},
        "default": {},
        "full": {"widths": (100, 200, 500, 1000, 2000, 4000), "seeds": 8, "seeds_largest": 32, "relu_output_seeds": 64,
                 "T_grid": (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)},
    }

    def seeds_at(self, M: int) -> int:
        """Random networks drawn at width M: ``seeds``, or max(seeds, seeds_largest) at the largest width."""
        return max(self.seeds, self.seeds_largest) if M == max(self.widths) else self.seeds


@short_repr
@dataclass
class FimSpectrumResult:
    rows: list[dict] = field(default_factory=list)  # one per (activation, M): measured mean/std, per-seed values, theory
    t_rows: list[dict] = field(default_factory=list)  # statistics against T
    relu_boundary: list[dict] = field(default_factory=list)
    c_rows: list[dict] = field(default_factory=list)  # A.5
    quick_check: dict = field(default_factory=dict)
    spectra: dict = field(default_factory=dict)  # activation → {M: all eigenvalues of F* of the seed-0 network}
    layer_rows: list[dict] = field(default_factory=list)  # per (activation, M, layer): measured F*_l vs κ^(l) theory
    wall_time_s: float = 0.0


def _sigmas(config: FimSpectrumConfig) -> dict[str, tuple[float, float]]:
    out = {}
    for i, a in enumerate(config.activations):
        dw, db = _DEFAULT_SIGMAS.get(a, (1.0, 0.1))
        w = config.sigma_w2[i] if i < len(config.sigma_w2) else dw
        b = config.sigma_b2[i] if i < len(config.sigma_b2) else db
        out[a] = (float(w), float(b))
    return out


def _widths(config: FimSpectrumConfig, M: int, C: int, M0: int | None) -> list[int]:
    al = list(config.alphas) if config.alphas else [1.0] * config.L
    if len(al) != config.L:
        raise ValueCheckError(f"--alphas needs L = {config.L} entries (α_0 … α_(L−1)), got {len(al)}; or leave it empty")
    w = [max(1, int(round(a * M))) for a in al] + [C]
    if M0 is not None:
        w[0] = M0
    return w


def _inputs(config: FimSpectrumConfig, T: int, M0: int, gen: torch.Generator, dtype, device, data_cache: dict):
    if config.inputs == "gaussian":
        return torch.randn(T, M0, generator=gen, dtype=dtype).to(device)
    if "ds" not in data_cache:
        from actionlab.data import load

        data_cache["ds"] = load(config.inputs, "train", standardize="zscore", dtype=torch.float64, validation=0)
    z = data_cache["ds"].z
    idx = torch.randperm(z.shape[0], generator=gen)[:T]
    return z[idx].to(dtype=dtype, device=device)


def _fisher_statistics(net, x: torch.Tensor, group=None, spectrum: bool = True):
    """m, s, λ_max (and all eigenvalues when ``spectrum``) of ``net`` on all T inputs ``x``, replicated on every rank.

    Every rank holds the same ``x``; with a group each keeps its shard (:func:`actionlab.distributed.shard`)
    and :func:`actionlab.fisher.empirical.fisher_statistics` (``group=``) computes the union's statistics.
    Fewer inputs than ranks: every rank computes them on all of ``x`` (replicated, not divided).
    Without ``spectrum`` only λ_max is computed (Lanczos, ``spectrum="top"``, ``top_k=1``).
    """
    from actionlab import distributed as _D

    kw = {"spectrum": "auto"} if spectrum else {"spectrum": "top", "top_k": 1}
    if not _D.is_distributed(group) or x.shape[0] < _D.world(group)[1]:
        return emp.fisher_statistics(net, x, **kw)
    return emp.fisher_statistics(net, x[_D.shard(x.shape[0], group)], group=group, **kw)


def measure(arch: mf.Architecture, x: torch.Tensor, gen: torch.Generator, dtype=torch.float64, device=None,
            fr: bool = True, spectrum: bool = False, layers: bool = False, group=None) -> dict:
    """One random network of ``arch``: measured m, s, λ_max (dual matrix), the weights-only Fisher–Rao norm
    (``fr``), all eigenvalues of F* (``spectrum``) and the per-layer terms F*_l of A.19 (``layers``).

    ``group``: m, s, λ_max (and the spectrum) over a process group (:func:`_fisher_statistics`); the
    Fisher–Rao norms and the layer terms are computed by every rank on all of ``x``."""
    net = MLP(list(arch.widths), activation=arch.activation, sigma_w2=arch.sigma_w2, sigma_b2=arch.sigma_b2,
              output_activation=arch.output_activation, generator=gen, dtype=dtype, device=device)
    st = _fisher_statistics(net, x, group, spectrum)
    out = {"m": st.m, "s": st.s, "lambda_max": st.lambda_max, "num_params": st.num_params}
    if spectrum:
        out["eigenvalues"] = [float(v) for v in st.eigenvalues]
    if fr:
        out["fisher_rao"] = emp.fisher_rao_norm(net, x, weights_only=True)
        out["fisher_rao_diag"] = emp.fisher_rao_diagonal(net, x)
    if layers:
        out["layers"] = [{"m": ly.m, "s": ly.s, "lambda_max": ly.lambda_max, "m_bias": ly.m_bias}
                         for ly in emp.layer_statistics(net, x)]
    return out


def spectrum_statistics(eigenvalues, C: int, lambda_bulk: float, lambda_max: float, levels) -> dict:
    """The bulk and the tail of one F* spectrum against A.4(i) and Corollary 2.

    ``bulk_mean``: mean of the CT − C eigenvalues below the C largest (A.4(i) predicts α(κ₁−κ₂)M/T,
    because tr F̄* − Cλ_max = C(T−1)·α(κ₁−κ₂)M/T); ``outliers``: the number of eigenvalues above
    τ = √(λ_bulk λ_max), the geometric midpoint of the theory's two values (A.4 predicts C);
    ``counts[k]``: N(λ ≥ k) at each level k of ``levels`` (Corollary 2, A.16).
    """
    ev = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    if ev.size <= C:
        raise ValueCheckError(f"need more than C = {C} eigenvalues for a bulk, got {ev.size}; use T ≥ 2")
    tau = float(np.sqrt(max(lambda_bulk, 0.0) * lambda_max))
    return {"bulk_mean": float(ev[C:].mean()), "outliers": int((ev > tau).sum()), "tau": tau,
            "counts": [int((ev >= k).sum()) for k in levels]}


def _agg(vals: list[dict], key: str) -> tuple[float, float]:
    a = np.array([v[key] for v in vals], dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@dataclass
class _Context:
    """What every part of the run shares: config, options, σ's, the data cache, M_0 of a data set."""

    config: FimSpectrumConfig
    options: RunOptions
    sig: dict
    cache: dict
    M0: int | None

    @property
    def dtype(self):
        return self.options.torch_dtype

    @property
    def device(self):
        return self.options.torch_device

    def input_stats(self, x: torch.Tensor) -> tuple[float, float]:
        return (1.0, 0.0) if self.config.inputs == "gaussian" else emp.input_statistics(x)

    def inputs(self, T: int, M0: int, gen: torch.Generator) -> torch.Tensor:
        return _inputs(self.config, T, M0, gen, self.dtype, self.device, self.cache)


def _context(config: FimSpectrumConfig, options: RunOptions) -> _Context:
    cache: dict = {}
    M0 = None
    if config.inputs != "gaussian":
        from actionlab.data import load

        cache["ds"] = load(config.inputs, "train", standardize="zscore", dtype=torch.float64, validation=0)
        M0 = int(cache["ds"].z.shape[1])
    return _Context(config, options, _sigmas(config), cache, M0)


def _width_row(ctx: _Context, a: str, M: int, res: FimSpectrumResult) -> None:
    """Section 1 for one (activation, M): seeds, m/s/λ_max/Fisher–Rao, the spectrum's bulk and tail, per layer."""
    config = ctx.config
    sw, sb = ctx.sig[a]
    widths = _widths(config, M, config.C, ctx.M0)
    arch = mf.Architecture(a, widths, M=M, sigma_w2=sw, sigma_b2=sb)
    vals, qs = [], []
    for s in range(config.seeds_at(M)):
        gen = torch.Generator().manual_seed(ctx.options.seed * 100_003 + s * 7919 + M)
        x = ctx.inputs(config.T, widths[0], gen)
        qs.append(ctx.input_stats(x))
        vals.append(measure(arch, x, gen, dtype=ctx.dtype, device=ctx.device, spectrum=True, layers=True,
                            group=ctx.options.group))
    q0, q0st = np.mean(qs, axis=0)
    th = mf.predict(arch, T=config.T, q_hat0=q0, q_hat0_st=q0st)
    levels = [f * th.lambda_bulk for f in config.markov_levels]
    for v in vals:
        v.update(spectrum_statistics(v["eigenvalues"], config.C, th.lambda_bulk, th.lambda_max, levels))
    res.spectra.setdefault(a, {})[M] = vals[0]["eigenvalues"]
    row = {"activation": a, "M": M, "widths": widths, "P": vals[0]["num_params"], "sigma_w2": sw, "sigma_b2": sb,
           "kappa1": th.kappa1, "kappa2": th.kappa2, "alpha": th.alpha, "q_hat0": float(q0), "q_hat0_st": float(q0st)}
    for k, tk, tkf in (("m", "m", "m_finite"), ("s", "s", "s_finite"), ("lambda_max", "lambda_max", "lambda_max_finite"),
                       ("fisher_rao", "fisher_rao", "fisher_rao"), ("fisher_rao_diag", "fisher_rao", "fisher_rao"),
                       ("bulk_mean", "lambda_bulk", "lambda_bulk_finite")):
        _stat_entry(row, k, [v[k] for v in vals], getattr(th, tk), getattr(th, tkf))
    _stat_entry(row, "m_bias", [sum(ly["m_bias"] for ly in v["layers"]) for v in vals], th.m_bias, th.m_bias_finite)
    row["outliers_seeds"] = [v["outliers"] for v in vals]
    row["tau"] = vals[0]["tau"]
    row["markov_levels"] = levels
    row["markov_bounds"] = [th.markov_bound(k) for k in levels]
    row["markov_counts_seeds"] = [v["counts"] for v in vals]
    row["markov_bound_at_tau"] = th.markov_bound(vals[0]["tau"])
    res.rows.append(row)
    for l, lt in enumerate(mf.layer_predictions(th)):
        lrow = {"activation": a, "M": M, "layer": l + 1, "kappa1_l": lt.kappa1, "kappa2_l": lt.kappa2}
        for k, tk in (("m", "m"), ("s", "s"), ("lambda_max", "lambda_max"), ("m_bias", "m_bias")):
            _stat_entry(lrow, k, [v["layers"][l][k] for v in vals], getattr(lt, tk), getattr(lt, tk + "_finite", getattr(lt, tk)))
        res.layer_rows.append(lrow)


def _stat_entry(row: dict, k: str, per_seed: list[float], theory: float, theory_finite: float) -> None:
    a = np.asarray(per_seed, dtype=float)
    row[k] = float(a.mean())
    row[k + "_std"] = float(a.std(ddof=1)) if a.size > 1 else 0.0
    row[k + "_seeds"] = [float(v) for v in a]
    row[k + "_theory"] = float(theory)
    row[k + "_theory_finite"] = float(theory_finite)
    row[k + "_relerr"] = (row[k] - theory) / theory if theory else float("nan")
    row[k + "_relerr_seeds"] = [(v - theory) / theory if theory else float("nan") for v in a]


def _t_sweep(ctx: _Context, res: FimSpectrumResult) -> None:
    """Section 2: m, s, λ_max against T at M = T_width (Fig. C.1)."""
    config, M = ctx.config, ctx.config.T_width
    for a in tqdm(config.activations, desc="fim-spectrum: T", disable=None):
        sw, sb = ctx.sig[a]
        widths = _widths(config, M, config.C, ctx.M0)
        arch = mf.Architecture(a, widths, M=M, sigma_w2=sw, sigma_b2=sb)
        for s in range(config.seeds):
            gen = torch.Generator().manual_seed(ctx.options.seed * 100_003 + s * 7919 + 13)
            net = MLP(widths, activation=a, sigma_w2=sw, sigma_b2=sb, generator=gen, dtype=ctx.dtype, device=ctx.device)
            xall = ctx.inputs(max(config.T_grid), widths[0], gen)
            for T in config.T_grid:
                st = _fisher_statistics(net, xall[:T], ctx.options.group, spectrum=False)
                q0, q0st = ctx.input_stats(xall[:T]) if T > 1 else (ctx.input_stats(xall[:2])[0], 0.0)
                th = mf.predict(arch, T=T, q_hat0=q0, q_hat0_st=q0st)
                res.t_rows.append({"activation": a, "M": M, "T": T, "seed": s, "m": st.m, "s": st.s,
                                   "lambda_max": st.lambda_max, "m_theory": th.m, "s_theory": th.s,
                                   "lambda_max_theory": th.lambda_max})


def _relu_boundary(ctx: _Context, res: FimSpectrumResult) -> None:
    """Section 3: relu networks with a linear and with a relu output unit against q̃^L = 1 and B.10's 1/2.

    The linear-output networks are those of section 1 at the largest width (the same distribution; no
    second draw); ``relu_output_seeds`` fresh networks with a relu output unit."""
    config = ctx.config
    sw, sb = ctx.sig["relu"]
    M = max(config.widths)
    widths = _widths(config, M, config.C, ctx.M0)
    row1 = next(r for r in res.rows if r["activation"] == "relu" and r["M"] == M)
    for out_act in (None, "relu"):
        if out_act is None:
            vals = [{"m": m, "s": s, "lambda_max": lam}
                    for m, s, lam in zip(row1["m_seeds"], row1["s_seeds"], row1["lambda_max_seeds"])]
        else:
            net_arch = mf.Architecture("relu", widths, M=M, sigma_w2=sw, sigma_b2=sb, output_activation=out_act)
            vals = []
            for s in range(config.relu_output_seeds):
                gen = torch.Generator().manual_seed(ctx.options.seed * 100_003 + s * 7919 + 77)
                x = ctx.inputs(config.T, widths[0], gen)
                vals.append(measure(net_arch, x, gen, dtype=ctx.dtype, device=ctx.device, fr=False,
                                    group=ctx.options.group))
        for boundary in (None, "relu"):
            th = mf.predict(mf.Architecture("relu", widths, M=M, sigma_w2=sw, sigma_b2=sb,
                                            output_activation=boundary), T=config.T)
            row = {"network_output": out_act or "linear", "boundary": _ONE if boundary is None else _HALF, "M": M,
                   "n": len(vals), "networks": "section 1 (largest M)" if out_act is None else "own draw"}
            for k in ("m", "s", "lambda_max"):
                _stat_entry(row, k, [v[k] for v in vals], getattr(th, k), getattr(th, k))
            res.relu_boundary.append(row)


def _c_sweep(ctx: _Context, res: FimSpectrumResult) -> None:
    """Section 4: C = O(M), the bounds of A.5."""
    config = ctx.config
    a0 = config.activations[0]
    sw, sb = ctx.sig[a0]
    for C in tqdm(config.C_grid, desc="fim-spectrum: C", disable=None):
        widths = _widths(config, config.C_width, C, ctx.M0)
        gen = torch.Generator().manual_seed(ctx.options.seed * 100_003 + C)
        x = ctx.inputs(config.C_T, widths[0], gen)
        arch = mf.Architecture(a0, widths, M=config.C_width, sigma_w2=sw, sigma_b2=sb)
        v = measure(arch, x, gen, dtype=ctx.dtype, device=ctx.device, fr=False, group=ctx.options.group)
        th = mf.predict(arch, T=config.C_T)
        res.c_rows.append({"activation": a0, "M": config.C_width, "C": C, "T": config.C_T, "m": v["m"], "m_theory": th.m,
                           "s": v["s"], "s_lower": th.s_lower, "s_upper": th.s_upper, "lambda_max": v["lambda_max"],
                           "lambda_max_lower": th.lambda_max_lower, "lambda_max_upper": th.lambda_max_upper,
                           "lambda_max_lower_printed": th.lambda_max_lower / th.alpha})


def _quick_check(ctx: _Context, res: FimSpectrumResult) -> None:
    """Section 5: the papers.md quick check (tanh, L = 3, M = 400, T = 60, σ_w² = 3, σ_b² = 0.64)."""
    arch = mf.Architecture("tanh", (400, 400, 400, 1), sigma_w2=3.0, sigma_b2=0.64)
    vals = []
    for s in range(max(ctx.config.seeds, 6)):
        gen = torch.Generator().manual_seed(ctx.options.seed * 100_003 + s * 7919 + 400)
        x = torch.randn(60, 400, generator=gen, dtype=ctx.dtype).to(ctx.device)
        vals.append(measure(arch, x, gen, dtype=ctx.dtype, device=ctx.device, fr=False, group=ctx.options.group))
    th = mf.predict(arch, T=60)
    qc = {"theory": {"m": th.m, "s": th.s, "lambda_max": th.lambda_max},
          "document_theory": {"m": 0.00239, "s": 0.0581, "lambda_max": 106.1},
          "document_measured": {"m": 0.00229, "s": 0.0556, "lambda_max": 102.9},
          "per_seed": vals}
    for k in ("m", "s", "lambda_max"):
        qc[k + "_mean"], qc[k + "_std"] = _agg(vals, k)
    res.quick_check = qc


_ONE, _HALF = "q̃^L = 1 (linear output)", "q̃^L = 1/2 (relu output, B.10)"


@register_experiment("fim-spectrum", config=FimSpectrumConfig, sources=("004",), order=50,
                     help="FIM eigenvalue statistics m_λ, s_λ, λ_max of random MLPs against mean-field theory (004)")
def run(config: FimSpectrumConfig, options: RunOptions) -> FimSpectrumResult:
    t0 = time.perf_counter()
    seed_everything(options.seed)
    rf = RunFolder(options, "fim-spectrum", config, seed=options.seed, data={"inputs": config.inputs})
    ctx = _context(config, options)
    res = FimSpectrumResult()
    for a, M in tqdm([(a, M) for a in config.activations for M in config.widths], desc="fim-spectrum: widths",
                     disable=None):
        _width_row(ctx, a, M, res)
    _t_sweep(ctx, res)
    if "relu" in config.activations:
        _relu_boundary(ctx, res)
    _c_sweep(ctx, res)
    if config.quick_check:
        _quick_check(ctx, res)
    res.wall_time_s = time.perf_counter() - t0
    _figures(rf, res, config)
    _claims(rf, res, config, options)
    rf.finish(res, _summary(rf, res, config, options))
    return res


# ---------------------------------------------------------------------------------------------
_KEYS = (("m", "m_λ = tr F / P"), ("s", "s_λ = Σ λ² / P"), ("lambda_max", "λ_max"))


def _log_ticks(ax, xs) -> None:
    """Label a log x-axis at the measured values only, as plain numbers (no crowded minor labels)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks(list(xs))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45 if len(xs) > 7 else 0)


def _legend_right(fig, ax) -> None:
    """One legend for the figure, outside the axes on the right (it covers no data)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)


def _stats_figure(rf: RunFolder, rows: list[dict], x_key: str, x_label: str, title: str, name: str, colors: dict) -> None:
    """m_λ, s_λ, λ_max against ``x_key`` per activation: seed mean ± std (markers) and theory (lines)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for ax, (k, lab) in zip(axes, _KEYS):
        for a, color in colors.items():
            mine = [r for r in rows if r["activation"] == a]
            xs = sorted({r[x_key] for r in mine})
            groups = [[r for r in mine if r[x_key] == x] for x in xs]  # one row with its std, or one row per seed
            mean = [np.mean([r[k] for r in g]) for g in groups]
            sd = [g[0][k + "_std"] if len(g) == 1 else np.std([r[k] for r in g]) for g in groups]
            ax.errorbar(xs, mean, yerr=sd, fmt="o", color=color, label=f"{a} measured", capsize=3)
            ax.plot(xs, [g[0][k + "_theory"] for g in groups], "-", color=color, label=f"{a} theory")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax, sorted({r[x_key] for r in rows}))
        ax.set_xlabel(x_label)
        ax.set_ylabel(lab)
        ax.set_title(lab)
    fig.suptitle(title)
    _legend_right(fig, axes[-1])
    rf.save_figure(fig, name)


def _bounds_figure(rf: RunFolder, rows: list[dict]) -> None:
    """A.5: measured s'_λ and λ_max against C with the lower and upper bounds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    Cs = [r["C"] for r in rows]
    panels = ((axes[0], "s", "s'_λ", (("s_lower", "--", "lower s_λ (A.40)"), ("s_upper", ":", "upper C s_λ (A.43)"))),
              (axes[1], "lambda_max", "λ_max", (("lambda_max_lower", "--", "lower α(…)M (A.37 with α)"),
                                                ("lambda_max_upper", ":", "upper M√(αC s_λ) (A.5)"))))
    for ax, k, lab, bounds in panels:
        ax.plot(Cs, [r[k] for r in rows], "o", label=f"measured {lab}")
        for key, style, blab in bounds:
            ax.plot(Cs, [r[key] for r in rows], style, label=blab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax, Cs)
        ax.set_xlabel("number of outputs C")
        ax.set_ylabel(lab)
        ax.set_title(f"A.5: {lab} bounds")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"C = O(M): {rows[0]['activation']}, M = {rows[0]['M']}, T = {rows[0]['T']}")
    rf.save_figure(fig, "c_order_m_bounds")


def _spectrum_figure(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig) -> None:
    """Density of log₁₀ λ (non-zero eigenvalues of F*, seed 0, bins="auto") over the widths M, one panel per
    activation, with the theory's outlier λ_max (Theorem 4), bulk value α(κ₁−κ₂)M/T (A.4(i)) and m_λ (A.12)."""
    import matplotlib.pyplot as plt

    acts = list(res.spectra)
    fig, axes = plt.subplots(1, len(acts), figsize=(4.6 * len(acts), 4.2), layout="constrained", squeeze=False)
    cmap = plt.get_cmap("viridis")
    Ms = sorted(config.widths)
    for ax, a in zip(axes[0], acts):
        for i, M in enumerate(Ms):
            color = cmap(i / max(1, len(Ms) - 1))
            ev = np.asarray(res.spectra[a][M])
            logs = np.log10(ev[ev > 1e-10 * ev.max()])
            ax.hist(logs, bins=np.histogram_bin_edges(logs, bins="auto"), histtype="step", density=True, color=color,
                    label=f"M = {M}")
            r = next(r for r in res.rows if r["activation"] == a and r["M"] == M)
            for key, ls in (("lambda_max_theory", "--"), ("bulk_mean_theory", ":"), ("m_theory", "-.")):
                ax.axvline(np.log10(r[key]), color=color, ls=ls, lw=1)
        ax.set_xlabel("log₁₀ λ (non-zero eigenvalues of F*)")
        ax.set_ylabel("density of log₁₀ λ")
        ax.set_title(f"{a}")
    for ls, lab in (("--", "theory λ_max (Thm 4)"), (":", "theory bulk α(κ₁−κ₂)M/T (A.4)"), ("-.", "theory m_λ (A.12)")):
        axes[0][-1].plot([], [], ls, color="grey", label=lab)
    fig.suptitle(f"FIM spectra over widths (L = {config.L}, C = {config.C}, T = {config.T}; one network per M)")
    _legend_right(fig, axes[0][-1])
    rf.save_figure(fig, "spectrum_density")


def _layer_figure(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig, colors: dict) -> None:
    """Per-layer m_l and λ_max,l (F*_l of A.19) at the largest M: seed mean ± std against κ^(l) theory."""
    import matplotlib.pyplot as plt

    Mmax = max(config.widths)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    n = len(colors)
    for ax, (k, lab) in zip(axes, (("m", "m_l = tr F*_l / P"), ("lambda_max", "λ_max,l = ‖F*_l‖₂"))):
        for j, (a, color) in enumerate(colors.items()):
            rows = [r for r in res.layer_rows if r["activation"] == a and r["M"] == Mmax]
            xs = np.array([r["layer"] for r in rows]) + (j - (n - 1) / 2) * 0.12
            ax.errorbar(xs, [r[k] for r in rows], yerr=[r[k + "_std"] for r in rows], fmt="o", color=color, capsize=3,
                        label=f"{a} measured")
            ax.plot(xs, [r[k + "_theory"] for r in rows], "x", color=color, ms=9, label=f"{a} theory (κ^(l))")
        ax.set_yscale("log")
        ax.set_xticks(range(1, config.L + 1))
        ax.set_xlabel("layer l")
        ax.set_ylabel(lab)
        ax.set_title(lab)
    fig.suptitle(f"Per-layer terms of F* (A.19) at M = {Mmax}, {config.seeds_at(Mmax)} seeds")
    _legend_right(fig, axes[-1])
    rf.save_figure(fig, "per_layer")


def _figures(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(config.activations, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    _stats_figure(rf, res.rows, "M", "width M", f"Statistics against M (L = {config.L}, C = {config.C}, "
                  f"T = {config.T}, {config.seeds} seeds, {config.seeds_at(max(config.widths))} at the largest M; "
                  f"mean ± std)", "stats_vs_M", colors)
    _stats_figure(rf, res.t_rows, "T", "number of inputs T", f"Statistics against T (M = {config.T_width}, "
                  f"{config.seeds} seeds; mean ± std)", "stats_vs_T", colors)
    if res.c_rows:
        _bounds_figure(rf, res.c_rows)
    if res.spectra:
        _spectrum_figure(rf, res, config)
    if res.layer_rows:
        _layer_figure(rf, res, config, colors)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# --------------------------------------------------------------------------------------------- judges (pure)
def judge_within(intervals, tolerance: float) -> str:
    """Relative errors with intervals (low, high): "holds" when every interval lies inside [−tol, tol],
    "does not hold" when some interval lies entirely outside it, else "inconclusive"."""
    iv = [(float(lo), float(hi)) for lo, hi in intervals]
    if not iv:
        raise ValueCheckError("judge_within needs at least one interval")
    if any(lo > tolerance or hi < -tolerance for lo, hi in iv):
        return "does not hold"
    if all(-tolerance <= lo and hi <= tolerance for lo, hi in iv):
        return "holds"
    return "inconclusive"


def judge_upper_bound(ratio_low: float, ratio_high: float, threshold: float = 1.0) -> str:
    """A bound count/bound ≤ threshold: "holds" if the interval's top is ≤ threshold, "does not hold" if its
    bottom is above, else "inconclusive"."""
    if ratio_high <= threshold:
        return "holds"
    return "does not hold" if ratio_low > threshold else "inconclusive"


def judge_outlier_count(counts, expected: int, low: float, high: float) -> str:
    """A.4: "holds" if every network has exactly ``expected`` (= C) outliers, "does not hold" if the interval
    (low, high) of the mean count excludes it, else "inconclusive"."""
    counts = [int(c) for c in counts]
    if counts and all(c == expected for c in counts):
        return "holds"
    return "does not hold" if (low > expected or high < expected) else "inconclusive"


def judge_boundary(one: tuple[float, float], half: tuple[float, float], tolerance: float) -> str:
    """B.10 for linear-output relu networks: intervals of the relative error against q̃^L = 1 and against
    B.10's 1/2. "does not hold" if 1 fits (within ±tol) and 1/2 is excluded; "holds" if the reverse; else
    "inconclusive"."""
    fits_one, fits_half = judge_within([one], tolerance), judge_within([half], tolerance)
    if fits_one == "holds" and fits_half == "does not hold":
        return "does not hold"
    if fits_half == "holds" and fits_one == "does not hold":
        return "holds"
    return "inconclusive"


def judge_printed(printed: float, correct: float, tolerance: float) -> str:
    """A printed closed form against the exact value: "holds" within |printed/correct − 1| ≤ tol, else "does not hold"."""
    return "holds" if abs(printed / correct - 1.0) <= tolerance else "does not hold"


def strength_of(verdict: str, n_seeds: int, min_seeds: int = 3) -> str:
    """"firm" for a decided verdict on ≥ ``min_seeds`` seeds (the run folder lowers quick presets), else "indicative"."""
    return "firm" if verdict in ("holds", "does not hold") and n_seeds >= min_seeds else "indicative"


def _interval(values, level: float) -> dict:
    """The t-interval of the mean over seeds (actionlab.stats); a point when there is one seed."""
    v = [float(x) for x in values]
    if len(v) < 2 or np.ptp(v) == 0:
        return {"estimate": float(np.mean(v)), "low": float(min(v)), "high": float(max(v)), "level": level, "n": len(v)}
    iv = _stats.mean_interval(v, level=level)
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "level": level, "n": iv.n}


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def reduced_from_full(config: FimSpectrumConfig) -> dict:
    """The settings in which ``config`` falls short of the ``full`` preset (the documents' scale):
    {field: {"here": value, "full": value}}; empty when the run is at full scale."""
    full = {**{f: getattr(FimSpectrumConfig(), f) for f in FimSpectrumConfig.PRESETS["full"]},
            **FimSpectrumConfig.PRESETS["full"]}
    return {k: {"here": _plain(getattr(config, k)), "full": _plain(v)} for k, v in full.items()
            if _plain(getattr(config, k)) != _plain(v)}


def _evidence(config: FimSpectrumConfig, options: RunOptions, statistic: str, intervals, threshold, rule: str,
              n_seeds: int | None = None, **extra) -> dict:
    """The evidence dict of a claim; ``n_seeds``: networks per point the claim rests on (default: those at the
    largest width)."""
    n = config.seeds_at(max(config.widths)) if n_seeds is None else n_seeds
    return {"preset": options.preset, "seeds": {"number": n, "list": list(range(n)), "at_smaller_widths": config.seeds},
            "base_seed": options.seed, "widths": list(config.widths), "L": config.L, "C": config.C, "T": config.T,
            "statistic": statistic, "interval": intervals, "threshold": threshold, "decision_rule": rule,
            "reduced_from_full": reduced_from_full(config), **extra}


_WITHIN = "holds if every interval of the relative error lies in [−tol, tol]; does not hold if one lies outside; else inconclusive"


def _claims(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig, options: RunOptions) -> None:
    _stat_claims(rf, res, config, options)
    _spectrum_claims(rf, res, config, options)
    _layer_claim(rf, res, config, options)
    if res.quick_check:
        _quick_check_claims(rf, res.quick_check, config, options)
    if res.relu_boundary:
        _relu_claims(rf, res, config, options)
    if res.c_rows:
        _c_claims(rf, res, config, options)
    _b12_claim(rf, config, options)


def _relerr_claim(rf, config, options, rows, key, cid, name, eq, extra_detail="", **extra_evidence):
    """A claim "measured statistic = theory" at the largest M: per activation the interval over seeds of the
    relative error, judged against ±tolerance."""
    tol, lev, n = config.tolerance, config.level, config.seeds_at(rows[0]["M"])
    ivs = {r["activation"]: _interval(r[key + "_relerr_seeds"], lev) for r in rows}
    verdict = judge_within([(iv["low"], iv["high"]) for iv in ivs.values()], tol)
    rf.add_claim(Claim(
        "004", f"{name} ({eq}) for wide random networks", document_value=name,
        measured={r["activation"]: f"{_fmt(r[key])} ± {_fmt(r[key + '_std'])} vs theory {_fmt(r[key + '_theory'])} "
                                   f"(rel. err {r[key + '_relerr']:+.3f})" for r in rows},
        verdict=verdict, id=cid, strength=strength_of(verdict, n),
        details=f"M = {rows[0]['M']}, L = {config.L}, C = {config.C}, T = {config.T}, {n} seeds; "
                f"{lev:.0%} t-intervals of the relative error over seeds within ±{tol}.{extra_detail}",
        evidence=_evidence(config, options, f"relative error of the seed mean of {key} at M = {rows[0]['M']}",
                           ivs, {"tolerance": tol}, _WITHIN, **extra_evidence)))


def _stat_claims(rf, res, config, options) -> None:
    big = [r for r in res.rows if r["M"] == max(config.widths)]
    for k, cid, name, eq in (("m", "004.A12-m", "m_λ = C κ₁ / M", "A.12"),
                             ("s", "004.A25-s", "s_λ = α C ((T−1)/T κ₂² + κ₁²/T)", "A.25/A.33"),
                             ("lambda_max", "004.thm4-lambda-max", "λ_max = α ((T−1)/T κ₂ + κ₁/T) M", "Theorem 4 (A.4)"),
                             ("fisher_rao", "004.A50-fisher-rao", "⟨‖θ‖_FR⟩ = ⟨θ_Wᵀ F θ_W⟩ = σ_w² C Σ_l q̃^l q̂^{l−1}", "A.50"),
                             ("fisher_rao_diag", "004.A48-fisher-rao-diag",
                              "diagonal part Σ F_ii W_i² = σ_w² C Σ_l q̃^l q̂^{l−1}", "A.48")):
        extra = {} if k != "s" else {"finite_width_remainder": {
            "order": "C·O(1/√M) (A.33: the O(√M)/T entries of A.23)", "1/sqrt(M) at the largest M": max(config.widths) ** -0.5}}
        _relerr_claim(rf, config, options, big, k, cid, name, eq, **extra)


def _spectrum_claims(rf, res, config, options) -> None:
    """A.4(i) bulk value, A.4 outlier count, Corollary 2 (A.16), A.9 bias mean."""
    Mmax, lev, C = max(config.widths), config.level, config.C
    big = [r for r in res.rows if r["M"] == Mmax]
    _relerr_claim(rf, config, options, big, "bulk_mean", "004.A4-bulk", "the other T−1 eigenvalues of each output "
                  "block of the leading F* are α(κ₁−κ₂)M/T", "A.4(i)",
                  " Statistic: the mean of the CT − C eigenvalues below the C largest.")
    ivs = {r["activation"]: _interval(r["outliers_seeds"], lev) for r in big}
    verdicts = [judge_outlier_count(r["outliers_seeds"], C, ivs[r["activation"]]["low"], ivs[r["activation"]]["high"])
                for r in big]
    verdict = "does not hold" if "does not hold" in verdicts else ("holds" if set(verdicts) == {"holds"} else "inconclusive")
    rf.add_claim(Claim(
        "004", "the leading F* has C outliers λ_max, the rest forms a bulk near α(κ₁−κ₂)M/T (A.4; Corollary 2 "
               "bounds the number of large eigenvalues)", document_value=f"{C} outlier(s) per network",
        measured={r["activation"]: {"outliers per seed": r["outliers_seeds"], "threshold τ": _fmt(r["tau"]),
                                    "Corollary 2 bound N(λ ≥ τ)": _fmt(r["markov_bound_at_tau"])} for r in big},
        verdict=verdict, id="004.A4-outliers", strength=strength_of(verdict, config.seeds_at(Mmax)),
        details=f"M = {Mmax}, T = {config.T}: eigenvalues above τ = √(λ_bulk λ_max) (theory values); Corollary 2's "
                f"Markov bound at k = τ allows far more.",
        evidence=_evidence(config, options, "number of eigenvalues of F* above τ per network", ivs, {"expected": C},
                           "holds if every network has exactly C; does not hold if the interval of the mean count "
                           "excludes C; else inconclusive")))
    ratios = [max(n / b for n, b in zip(counts, r["markov_bounds"])) for r in res.rows for counts in
              r["markov_counts_seeds"]]
    iv = _interval(ratios, lev)
    iv["max"] = float(max(ratios))
    verdict = judge_upper_bound(iv["low"], iv["max"], 1.0)
    rf.add_claim(Claim(
        "004", "Corollary 2: N(λ ≥ k) ≤ ακ₁CM/k (Markov's inequality with m_λ = Cκ₁/M, A.13–A.16)",
        document_value="N(λ ≥ k) ≤ ακ₁CM/k",
        measured={"largest N/bound": _fmt(iv["max"]), "mean over networks of the largest N/bound": _fmt(iv["estimate"]),
                  f"at M = {Mmax}": {r["activation"]: {f"k = {_fmt(k)}": f"N = {n} ≤ {_fmt(b)}" for k, n, b in
                                     zip(r["markov_levels"], r["markov_counts_seeds"][0], r["markov_bounds"])} for r in big}},
        verdict=verdict, id="004.cor2-markov", strength=strength_of(verdict, config.seeds),
        details=f"every width, activation and seed; levels k = {list(config.markov_levels)} × α(κ₁−κ₂)M/T",
        evidence=_evidence(config, options, "largest N(λ ≥ k)/bound over the levels, per network", iv,
                           {"ratio": 1.0}, "holds if the largest ratio over all networks is ≤ 1; does not hold if the "
                           "interval's bottom exceeds 1; else inconclusive", n_seeds=config.seeds,
                           networks=len(ratios), levels=list(config.markov_levels))))
    _bias_claim(rf, res, config, options)


def _bias_claim(rf, res, config, options) -> None:
    """A.9: m_λ^(b) = Σ_l q̃^l/(αM²) per output, and its 1/M² decay over the widths."""
    tol, lev, Mmax = config.tolerance, config.level, max(config.widths)
    big = [r for r in res.rows if r["M"] == Mmax]
    ivs = {r["activation"]: _interval(r["m_bias_relerr_seeds"], lev) for r in big}
    slopes = {}
    for a in config.activations:
        rows = sorted((r for r in res.rows if r["activation"] == a), key=lambda r: r["M"])
        if len(rows) >= 3 and config.seeds >= 2:
            fit = _stats.slope_interval(np.log([r["M"] for r in rows]),  # the first `seeds` networks of every width
                                        np.log([r["m_bias_seeds"][:config.seeds] for r in rows]), level=lev)
            slopes[a] = {"estimate": fit.slope.estimate, "low": fit.slope.low, "high": fit.slope.high, "level": lev}
    rel = [(iv["low"], iv["high"]) for iv in ivs.values()]
    slope_rel = [(iv["high"] / -2 - 1, iv["low"] / -2 - 1) for iv in slopes.values()]  # slope/−2 − 1 reverses order
    verdict = judge_within(rel + slope_rel, tol)
    rf.add_claim(Claim(
        "004", "A.9: the bias part m_λ^(b) = Σ_l q̃^l/(αM²) (per output) is O(1/M²)",
        document_value="C Σ_l q̃^l/(αM²), slope −2 in log M",
        measured={a: {"m_b": f"{_fmt(r['m_bias'])} vs {_fmt(r['m_bias_theory'])} (rel. err {r['m_bias_relerr']:+.3f})",
                      "log-log slope": _fmt(slopes[a]["estimate"]) if a in slopes else "n/a"}
                  for a, r in zip(ivs, big)},
        verdict=verdict, id="004.A9-bias-mean", strength=strength_of(verdict, config.seeds),
        details=f"m_b = Σ_l tr F*_l^(b)/P measured from the bias entries; relative error at M = {Mmax} and slope of "
                f"log m_b on log M over M = {list(config.widths)} (per-seed slopes), both within ±{tol} (the slope "
                f"relative to −2).",
        evidence=_evidence(config, options, "relative error of m_b at the largest M; log-log slope over M",
                           {"relative_error": ivs, "slope": slopes}, {"tolerance": tol, "slope": -2.0}, _WITHIN,
                           slope_seeds_per_width=config.seeds)))


def _layer_claim(rf, res, config, options) -> None:
    """A.19 per layer: m_l and (where κ^(l)_2 > 0) λ_max,l of F*_l against the layer's summand of κ₁, κ₂."""
    tol, lev, Mmax = config.tolerance, config.level, max(config.widths)
    rows = [r for r in res.layer_rows if r["M"] == Mmax]
    ivs, skipped = {}, []
    for r in rows:
        tag = f"{r['activation']} l={r['layer']}"
        ivs[tag + " m"] = _interval(r["m_relerr_seeds"], lev)
        if r["kappa2_l"] > 0:
            ivs[tag + " λ_max"] = _interval(r["lambda_max_relerr_seeds"], lev)
        else:
            skipped.append(tag)
    verdict = judge_within([(iv["low"], iv["high"]) for iv in ivs.values()], tol)
    rf.add_claim(Claim(
        "004", "per layer (A.19): F*_l follows the layer's terms κ^(l)_1, κ^(l)_2 of κ₁, κ₂ (m_l = Cκ^(l)_1/M, "
               "λ_max,l = α((T−1)/T κ^(l)_2 + κ^(l)_1/T)M)", document_value="F* = Σ_l M_{l−1} Z̃^l Ẑ^{l−1}/T",
        measured={k: f"rel. err {iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]" for k, iv in ivs.items()},
        verdict=verdict, id="004.per-layer", strength=strength_of(verdict, config.seeds_at(Mmax)),
        details=f"M = {Mmax}; layers with κ^(l)_2 = 0 (first layer on inputs with q̂⁰_st = 0: {skipped}) have no "
                f"outlier, their λ_max,l is the edge of a bulk widened by the O(√M)/T fluctuations (the exceptional "
                f"case after A.25) and is not compared.",
        evidence=_evidence(config, options, "relative error of m_l and λ_max,l per layer", ivs, {"tolerance": tol},
                           _WITHIN, not_compared=skipped)))


def _quick_check_claims(rf, qc, config, options) -> None:
    th, dt, dm = qc["theory"], qc["document_theory"], qc["document_measured"]
    worst = max(abs(th[k] / dt[k] - 1) for k in th)
    verdict = judge_printed(1.0 + worst, 1.0, 0.005)
    rf.add_claim(Claim(
        "004", "papers.md quick check (tanh, L=3, M=400, C=1, T=60, σ_w²=3, σ_b²=0.64): theory values",
        document_value=dt, measured={k: float(f"{v:.5g}") for k, v in th.items()}, verdict=verdict,
        id="004.quick-check-theory", strength="firm" if verdict != "inconclusive" else "indicative",
        details="mean-field prediction against the printed values, tolerance 0.5 % (deterministic)",
        evidence={"preset": options.preset, "statistic": "largest |relative difference|", "value": worst,
                  "threshold": 0.005, "decision_rule": "holds if ≤ threshold"}))
    n = len(qc["per_seed"])
    ivs = {k: _interval([v[k] for v in qc["per_seed"]], 0.997) for k in ("m", "s", "lambda_max")}
    verdict = "holds" if all(iv["low"] <= dm[k] <= iv["high"] for k, iv in ivs.items()) else "does not hold"
    rf.add_claim(Claim(
        "004", "papers.md quick check: measured values (one network)", document_value=dm,
        measured={k: f"{_fmt(qc[k + '_mean'])} ± {_fmt(qc[k + '_std'])}" for k in ("m", "s", "lambda_max")},
        verdict=verdict, id="004.quick-check-measured", strength=strength_of(verdict, n),
        details=f"{n} seeds here (mean ± std); the document's single draw against the 99.7 % interval of the seed mean",
        evidence={"preset": options.preset, "seeds": {"number": n, "list": list(range(n))},
                  "statistic": "seed mean of m, s, λ_max", "interval": ivs, "threshold": dm,
                  "decision_rule": "holds if every printed value lies in its interval"}))


def _relu_claims(rf, res, config, options) -> None:
    tol, lev = config.tolerance, config.level
    lin = {r["boundary"]: r for r in res.relu_boundary if r["network_output"] == "linear"}
    rel = {r["boundary"]: r for r in res.relu_boundary if r["network_output"] == "relu"}
    M, n, n_rel = lin[_ONE]["M"], lin[_ONE]["n"], rel[_HALF]["n"]
    iv = {b: _interval(lin[b]["lambda_max_relerr_seeds"], lev) for b in (_ONE, _HALF)}
    verdict = judge_boundary((iv[_ONE]["low"], iv[_ONE]["high"]), (iv[_HALF]["low"], iv[_HALF]["high"]), tol)
    ev = {"preset": options.preset, "seeds": {"number": n, "list": list(range(n))}, "M": M, "T": config.T,
          "statistic": "relative error of the seed mean of λ_max", "threshold": {"tolerance": tol},
          "networks": lin[_ONE]["networks"], "reduced_from_full": reduced_from_full(config)}
    rf.add_claim(Claim(
        "004", "B.10's boundary q̃^L = 1/2 for relu networks with a linear output f = u^L (the network of papers.md)",
        document_value="q̃^L = 1/2",
        measured={"λ_max measured": float(f"{lin[_ONE]['lambda_max']:.4g}"),
                  "theory with q̃^L = 1/2 (B.10)": float(f"{lin[_HALF]['lambda_max_theory']:.4g}"),
                  "theory with q̃^L = 1": float(f"{lin[_ONE]['lambda_max_theory']:.4g}")},
        verdict=verdict, id="004.B10-relu", strength=strength_of(verdict, n),
        details=f"M = {M}, {n} seeds: relative error of λ_max {lin[_ONE]['lambda_max_relerr']:+.3f} against q̃^L = 1, "
                f"{lin[_HALF]['lambda_max_relerr']:+.3f} against 1/2; B.10's 1/2 describes a relu output unit.",
        evidence={**ev, "interval": iv, "decision_rule": "does not hold if q̃^L = 1 fits within ±tol and 1/2 is "
                                                         "excluded; holds if the reverse; else inconclusive"}))
    ivh = {k: _interval(rel[_HALF][k + "_relerr_seeds"], lev) for k in ("m", "lambda_max")}
    verdict = judge_within([(v["low"], v["high"]) for v in ivh.values()], 2 * tol)
    rf.add_claim(Claim(
        "004", "B.10's q̃^L = 1/2 for relu networks with a relu output unit f = φ(u^L), C = 1",
        document_value="q̃^L = 1/2",
        measured={k: f"{_fmt(rel[_HALF][k])} ± {_fmt(rel[_HALF][k + '_std'])} vs {_fmt(rel[_HALF][k + '_theory'])}"
                  for k in ("m", "s", "lambda_max")},
        verdict=verdict, id="004.B10-relu-output", strength=strength_of(verdict, n_rel),
        details=f"M = {M}, {n_rel} seeds; a single relu output is not self-averaging: its pre-activations u^L(t) are "
                f"strongly correlated over t (q^L_st/q^L ≈ {_fmt(_ratio_qst(config))}), so per network it is alive or "
                f"dead on most inputs together and s_λ, λ_max scatter far more than the mean-field value assumes.",
        evidence={**ev, "seeds": {"number": n_rel, "list": list(range(n_rel))}, "networks": rel[_HALF]["networks"],
                  "statistic": "relative errors of m and λ_max against q̃^L = 1/2", "interval": ivh,
                  "threshold": {"tolerance": 2 * tol}, "decision_rule": _WITHIN}))


def _c_claims(rf, res, config, options) -> None:
    tol = config.tolerance
    okl = all(r["s_lower"] * (1 - tol) <= r["s"] <= r["s_upper"] * (1 + tol) for r in res.c_rows)
    okm = all(r["lambda_max_lower"] * (1 - tol) <= r["lambda_max"] <= r["lambda_max_upper"] * (1 + tol)
              for r in res.c_rows)
    ev = {"preset": options.preset, "seeds": {"number": 1, "list": [0]}, "M": config.C_width, "T": config.C_T,
          "C": list(config.C_grid), "threshold": {"slack": tol}}
    verdict = "holds" if (okl and okm) else "does not hold"
    rf.add_claim(Claim(
        "004", "A.5 (C = O(M)): s_λ ≤ s'_λ ≤ C s_λ and α(...)M ≤ λ_max ≤ M√(α C s_λ); m'_λ = Cκ₁/M",
        document_value="bounds A.40, A.43, A.37, A.5",
        measured=[{k: _fmt(v) if isinstance(v, float) else v for k, v in r.items()} for r in res.c_rows],
        verdict=verdict, id="004.A5-bounds", strength=strength_of(verdict, ev["seeds"]["number"]),
        details=f"{res.c_rows[0]['activation']}, M = {config.C_width}, T = {config.C_T}, one network per C; bounds "
                f"with {int(tol * 100)} % slack for finite-M fluctuations",
        evidence={**ev, "statistic": "s', λ_max against their bounds", "decision_rule": "holds if every C is inside"}))
    r0 = res.c_rows[0]
    verdict = judge_printed(r0["lambda_max_lower_printed"], r0["lambda_max"], tol)
    alpha = r0["lambda_max_lower"] / r0["lambda_max_lower_printed"]
    rf.add_claim(Claim(
        "004", "A.37 / end of A.4(ii): λ_max = ((T−1)/T κ₂ + κ₁/T) M (printed without the factor α)",
        document_value=_fmt(r0["lambda_max_lower_printed"]), measured=_fmt(r0["lambda_max"]),
        verdict=verdict, id="004.A37-alpha", strength="indicative" if alpha < 1 + 2 * tol else "firm",
        details=f"C = {r0['C']}, M = {r0['M']}, T = {r0['T']}: v₁ᵀF*v₁ = α((T−1)/T κ₂ + κ₁/T)M = "
                f"{_fmt(r0['lambda_max_lower'])} (α = P_w/M² = {alpha:.3g}); the printed A.37 drops α (still a lower "
                f"bound for α ≥ 1, but not the value λ_max takes, which is A.4's α(...)M).",
        evidence={**ev, "statistic": "printed A.37 / measured λ_max − 1", "value": r0["lambda_max_lower_printed"] /
                  r0["lambda_max"] - 1, "decision_rule": "holds if |printed/measured − 1| ≤ tol"}))


def _b12_claim(rf, config, options) -> None:
    a, b = 2.0, 0.5
    printed = mf.DOCUMENT_RELU_I_D(a, b)
    quad = mf.I_dphi("relu", a, b, closed_form=False)
    verdict = judge_printed(printed, quad, 1e-3)
    rf.add_claim(Claim(
        "004", "B.12: I_φ'[a,b] = a/(2π)(π/2 + sin⁻¹c) for relu",
        document_value=f"{printed:.6f} at a = 2, b = 0.5",
        measured={"quadrature": float(f"{quad:.6f}"),
                  "(π/2 + sin⁻¹c)/(2π)": float(f"{_act.get('relu').I_dphi(a, b):.6f}")},
        verdict=verdict, id="004.B12-relu", strength="firm",
        details="E[θ(u₁)θ(u₂)] does not scale with the variance a; B.12 has a spurious factor a (right only at "
                "a = 1). The project uses (π/2 + sin⁻¹c)/(2π).",
        evidence={"preset": options.preset, "statistic": "printed / quadrature − 1 at a = 2, b = 0.5",
                  "value": printed / quad - 1, "threshold": 1e-3, "method": "split Gauss–Legendre quadrature",
                  "decision_rule": "holds if |printed/quadrature − 1| ≤ threshold (deterministic, no seeds)"}))


def _ratio_qst(config: FimSpectrumConfig) -> float:
    sw, sb = _sigmas(config).get("relu", (2.0, 0.1))
    op = mf.order_parameters("relu", config.L, sw, sb)
    return op.q_st[config.L] / op.q[config.L]


def _summary(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig, options: RunOptions) -> str:
    lines = ["# fim-spectrum\n", f"L = {config.L}, C = {config.C}, T = {config.T}, inputs {config.inputs}, "
             f"{config.seeds} seeds ({config.seeds_at(max(config.widths))} at the largest M), dtype {options.dtype}; "
             f"wall time {res.wall_time_s:.1f} s.\n",
             "## Statistics against M (seed mean ± std; theory = 004's formulas; rel. err vs theory)\n",
             "| activation | M | P | m | m theory | rel | s | s theory | rel | λ_max | λ_max theory | rel | θ_WᵀFθ_W | diag. part | A.50 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res.rows:
        lines.append(
            f"| {r['activation']} | {r['M']} | {r['P']} | {_fmt(r['m'])} ± {_fmt(r['m_std'])} | {_fmt(r['m_theory'])} | "
            f"{r['m_relerr']:+.3f} | {_fmt(r['s'])} ± {_fmt(r['s_std'])} | {_fmt(r['s_theory'])} | {r['s_relerr']:+.3f} | "
            f"{_fmt(r['lambda_max'])} ± {_fmt(r['lambda_max_std'])} | {_fmt(r['lambda_max_theory'])} | "
            f"{r['lambda_max_relerr']:+.3f} | {_fmt(r['fisher_rao'])} ± {_fmt(r['fisher_rao_std'])} | "
            f"{_fmt(r['fisher_rao_diag'])} | {_fmt(r['fisher_rao_theory'])} |")
    lines += _spectrum_tables(res, config)
    if res.relu_boundary:
        lines += ["\n## relu: which boundary q̃^L\n",
                  "| network output | theory boundary | m | m rel | s rel | λ_max | λ_max rel |", "|---|---|---|---|---|---|---|"]
        for r in res.relu_boundary:
            lines.append(f"| {r['network_output']} | {r['boundary']} | {_fmt(r['m'])} ± {_fmt(r['m_std'])} | "
                         f"{r['m_relerr']:+.3f} | {r['s_relerr']:+.3f} | {_fmt(r['lambda_max'])} ± "
                         f"{_fmt(r['lambda_max_std'])} | {r['lambda_max_relerr']:+.3f} |")
    if res.c_rows:
        lines += ["\n## C = O(M) (A.5)\n", "| C | s' | s lower | s upper | λ_max | lower (with α) | upper |",
                  "|---|---|---|---|---|---|---|"]
        for r in res.c_rows:
            lines.append(f"| {r['C']} | {_fmt(r['s'])} | {_fmt(r['s_lower'])} | {_fmt(r['s_upper'])} | "
                         f"{_fmt(r['lambda_max'])} | {_fmt(r['lambda_max_lower'])} | {_fmt(r['lambda_max_upper'])} |")
    lines += ["\nFigures: " + ", ".join(rf.figures), "\n## Claims\n", claims_table_md(rf.claims)]
    return "\n".join(lines)


def _spectrum_tables(res: FimSpectrumResult, config: FimSpectrumConfig) -> list[str]:
    """Summary tables: the bulk, the outliers and A.9 against M; the per-layer terms at the largest M."""
    lines = ["\n## Bulk, outliers, bias part (A.4(i), A.4, A.9; seed mean ± std)\n",
             "| activation | M | bulk mean | α(κ₁−κ₂)M/T | rel | outliers per seed | τ | Cor. 2 bound at τ | m_b | A.9 | rel |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res.rows:
        lines.append(
            f"| {r['activation']} | {r['M']} | {_fmt(r['bulk_mean'])} ± {_fmt(r['bulk_mean_std'])} | "
            f"{_fmt(r['bulk_mean_theory'])} | {r['bulk_mean_relerr']:+.3f} | {r['outliers_seeds']} | {_fmt(r['tau'])} | "
            f"{_fmt(r['markov_bound_at_tau'])} | {_fmt(r['m_bias'])} ± {_fmt(r['m_bias_std'])} | "
            f"{_fmt(r['m_bias_theory'])} | {r['m_bias_relerr']:+.3f} |")
    Mmax = max(config.widths)
    lines += [f"\n## Per-layer terms F*_l (A.19) at M = {Mmax} (seed mean ± std; theory from κ^(l)_1, κ^(l)_2)\n",
              "| activation | layer | κ^(l)_1 | κ^(l)_2 | m_l | theory | rel | s_l | theory | λ_max,l | theory | rel | m_b,l |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in res.layer_rows if r["M"] == Mmax):
        lines.append(
            f"| {r['activation']} | {r['layer']} | {_fmt(r['kappa1_l'])} | {_fmt(r['kappa2_l'])} | {_fmt(r['m'])} ± "
            f"{_fmt(r['m_std'])} | {_fmt(r['m_theory'])} | {r['m_relerr']:+.3f} | {_fmt(r['s'])} | {_fmt(r['s_theory'])} | "
            f"{_fmt(r['lambda_max'])} ± {_fmt(r['lambda_max_std'])} | {_fmt(r['lambda_max_theory'])} | "
            f"{r['lambda_max_relerr']:+.3f} | {_fmt(r['m_bias'])} |")
    return lines
