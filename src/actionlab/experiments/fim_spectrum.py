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
        8, "random relu networks per output unit (linear vs relu) for the q̃^L boundary of B.10", min=1)
    quick_check: bool = param(True, "also run the papers.md quick check (tanh, L = 3, M = 400, T = 60)")
    tolerance: float = param(
        0.1, "largest |relative error| at the largest width for a 'holds' verdict (dimensionless)", min=0.0,
        exclusive_min=True)

    PRESETS: ClassVar[dict[str, dict]] = {
        "quick": {"widths": (50, 100, 200, 400), "seeds": 2, "T": 40, "T_grid": (1, 5, 20, 60), "T_width": 300,
                  "C_grid": (1, 10, 40), "C_width": 100, "C_T": 5, "relu_output_seeds": 4, "tolerance": 0.15},
        "default": {},
        "full": {"widths": (100, 200, 500, 1000, 2000, 4000), "seeds": 8, "T_grid": (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)},
    }


@short_repr
@dataclass
class FimSpectrumResult:
    rows: list[dict] = field(default_factory=list)  # one per (activation, M): measured mean/std and theory
    t_rows: list[dict] = field(default_factory=list)  # statistics against T
    relu_boundary: list[dict] = field(default_factory=list)
    c_rows: list[dict] = field(default_factory=list)  # A.5
    quick_check: dict = field(default_factory=dict)
    spectra: dict = field(default_factory=dict)  # activation → all eigenvalues of F* of one network at the largest M
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

        data_cache["ds"] = load(config.inputs, "train", standardize="zscore", dtype=torch.float64)
    z = data_cache["ds"].z
    idx = torch.randperm(z.shape[0], generator=gen)[:T]
    return z[idx].to(dtype=dtype, device=device)


def measure(arch: mf.Architecture, x: torch.Tensor, gen: torch.Generator, dtype=torch.float64, device=None,
            fr: bool = True, spectrum: bool = False) -> dict:
    """One random network of ``arch``: measured m, s, λ_max (dual matrix), the weights-only Fisher–Rao norm
    (``fr``) and all eigenvalues of F* (``spectrum``)."""
    net = MLP(list(arch.widths), activation=arch.activation, sigma_w2=arch.sigma_w2, sigma_b2=arch.sigma_b2,
              output_activation=arch.output_activation, generator=gen, dtype=dtype, device=device)
    st = emp.fisher_statistics(net, x)
    out = {"m": st.m, "s": st.s, "lambda_max": st.lambda_max, "num_params": st.num_params}
    if spectrum:
        out["eigenvalues"] = [float(v) for v in st.eigenvalues]
    if fr:
        out["fisher_rao"] = emp.fisher_rao_norm(net, x, weights_only=True)
        out["fisher_rao_diag"] = emp.fisher_rao_diagonal(net, x)
    return out


def _agg(vals: list[dict], key: str) -> tuple[float, float]:
    a = np.array([v[key] for v in vals], dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


@register_experiment("fim-spectrum", config=FimSpectrumConfig, sources=("004",), order=50,
                     help="FIM eigenvalue statistics m_λ, s_λ, λ_max of random MLPs against mean-field theory (004)")
def run(config: FimSpectrumConfig, options: RunOptions) -> FimSpectrumResult:
    t0 = time.perf_counter()
    seed_everything(options.seed)
    dtype, device = options.torch_dtype, options.torch_device
    rf = RunFolder(options, "fim-spectrum", config, seed=options.seed, data={"inputs": config.inputs})
    res = FimSpectrumResult()
    sig = _sigmas(config)
    cache: dict = {}
    M0_fixed = None
    if config.inputs != "gaussian":
        from actionlab.data import load

        cache["ds"] = load(config.inputs, "train", standardize="zscore", dtype=torch.float64)
        M0_fixed = int(cache["ds"].z.shape[1])

    def input_stats(x):
        if config.inputs == "gaussian":
            return 1.0, 0.0
        return emp.input_statistics(x)

    # 1. statistics against M ---------------------------------------------------------------
    jobs = [(a, M) for a in config.activations for M in config.widths]
    for a, M in tqdm(jobs, desc="fim-spectrum: widths", disable=None):
        sw, sb = sig[a]
        widths = _widths(config, M, config.C, M0_fixed)
        arch = mf.Architecture(a, widths, M=M, sigma_w2=sw, sigma_b2=sb)
        vals, qs = [], []
        for s in range(config.seeds):
            gen = torch.Generator().manual_seed(options.seed * 100_003 + s * 7919 + M)
            x = _inputs(config, config.T, widths[0], gen, dtype, device, cache)
            qs.append(input_stats(x))
            vals.append(measure(arch, x, gen, dtype=dtype, device=device, spectrum=(s == 0 and M == max(config.widths))))
        if "eigenvalues" in vals[0]:
            res.spectra[a] = vals[0].pop("eigenvalues")
        q0, q0st = np.mean(qs, axis=0)
        th = mf.predict(arch, T=config.T, q_hat0=q0, q_hat0_st=q0st)
        row = {"activation": a, "M": M, "widths": widths, "P": vals[0]["num_params"], "sigma_w2": sw, "sigma_b2": sb,
               "kappa1": th.kappa1, "kappa2": th.kappa2}
        for k, tk, tkf in (("m", "m", "m_finite"), ("s", "s", "s_finite"), ("lambda_max", "lambda_max", "lambda_max_finite"),
                           ("fisher_rao", "fisher_rao", "fisher_rao"), ("fisher_rao_diag", "fisher_rao", "fisher_rao")):
            mean, sd = _agg(vals, k)
            row[k] = mean
            row[k + "_std"] = sd
            row[k + "_theory"] = getattr(th, tk)
            row[k + "_theory_finite"] = getattr(th, tkf)
            row[k + "_relerr"] = (mean - getattr(th, tk)) / getattr(th, tk) if getattr(th, tk) else float("nan")
        res.rows.append(row)

    # 2. against T ---------------------------------------------------------------------------
    M = config.T_width
    for a in tqdm(config.activations, desc="fim-spectrum: T", disable=None):
        sw, sb = sig[a]
        widths = _widths(config, M, config.C, M0_fixed)
        arch = mf.Architecture(a, widths, M=M, sigma_w2=sw, sigma_b2=sb)
        for s in range(config.seeds):
            gen = torch.Generator().manual_seed(options.seed * 100_003 + s * 7919 + 13)
            net = MLP(widths, activation=a, sigma_w2=sw, sigma_b2=sb, generator=gen, dtype=dtype, device=device)
            xall = _inputs(config, max(config.T_grid), widths[0], gen, dtype, device, cache)
            for T in config.T_grid:
                st = emp.fisher_statistics(net, xall[:T])
                q0, q0st = input_stats(xall[:T]) if T > 1 else (input_stats(xall[:2])[0], 0.0)
                th = mf.predict(arch, T=T, q_hat0=q0, q_hat0_st=q0st)
                res.t_rows.append({"activation": a, "M": M, "T": T, "seed": s, "m": st.m, "s": st.s,
                                   "lambda_max": st.lambda_max, "m_theory": th.m, "s_theory": th.s,
                                   "lambda_max_theory": th.lambda_max})

    # 3. relu: which output boundary q̃^L --------------------------------------------------
    if "relu" in config.activations:
        sw, sb = sig["relu"]
        M = max(config.widths)
        widths = _widths(config, M, config.C, M0_fixed)
        for out_act in (None, "relu"):
            vals = []
            net_arch = mf.Architecture("relu", widths, M=M, sigma_w2=sw, sigma_b2=sb, output_activation=out_act)
            for s in range(config.relu_output_seeds):
                gen = torch.Generator().manual_seed(options.seed * 100_003 + s * 7919 + 77)
                x = _inputs(config, config.T, widths[0], gen, dtype, device, cache)
                vals.append(measure(net_arch, x, gen, dtype=dtype, device=device, fr=False))
            for boundary in (None, "relu"):
                th = mf.predict(mf.Architecture("relu", widths, M=M, sigma_w2=sw, sigma_b2=sb,
                                                output_activation=boundary), T=config.T)
                row = {"network_output": out_act or "linear", "boundary": "q̃^L = 1 (linear output)" if boundary is None
                       else "q̃^L = 1/2 (relu output, B.10)", "M": M}
                for k in ("m", "s", "lambda_max"):
                    mean, sd = _agg(vals, k)
                    row[k], row[k + "_std"], row[k + "_theory"] = mean, sd, getattr(th, k)
                    row[k + "_relerr"] = (mean - getattr(th, k)) / getattr(th, k)
                res.relu_boundary.append(row)

    # 4. C = O(M): A.5 bounds ------------------------------------------------------------------
    a0 = config.activations[0]
    sw, sb = sig[a0]
    for C in tqdm(config.C_grid, desc="fim-spectrum: C", disable=None):
        widths = _widths(config, config.C_width, C, M0_fixed)
        gen = torch.Generator().manual_seed(options.seed * 100_003 + C)
        x = _inputs(config, config.C_T, widths[0], gen, dtype, device, cache)
        arch = mf.Architecture(a0, widths, M=config.C_width, sigma_w2=sw, sigma_b2=sb)
        v = measure(arch, x, gen, dtype=dtype, device=device, fr=False)
        th = mf.predict(arch, T=config.C_T)
        res.c_rows.append({"activation": a0, "M": config.C_width, "C": C, "T": config.C_T, "m": v["m"], "m_theory": th.m,
                           "s": v["s"], "s_lower": th.s_lower, "s_upper": th.s_upper, "lambda_max": v["lambda_max"],
                           "lambda_max_lower": th.lambda_max_lower, "lambda_max_upper": th.lambda_max_upper,
                           "lambda_max_lower_printed": th.lambda_max_lower / th.alpha})

    # 5. the papers.md quick check ---------------------------------------------------------------
    if config.quick_check:
        arch = mf.Architecture("tanh", (400, 400, 400, 1), sigma_w2=3.0, sigma_b2=0.64)
        vals = []
        for s in range(max(config.seeds, 6)):
            gen = torch.Generator().manual_seed(options.seed * 100_003 + s * 7919 + 400)
            x = torch.randn(60, 400, generator=gen, dtype=dtype).to(device)
            vals.append(measure(arch, x, gen, dtype=dtype, device=device, fr=False))
        th = mf.predict(arch, T=60)
        qc = {"theory": {"m": th.m, "s": th.s, "lambda_max": th.lambda_max},
              "document_theory": {"m": 0.00239, "s": 0.0581, "lambda_max": 106.1},
              "document_measured": {"m": 0.00229, "s": 0.0556, "lambda_max": 102.9},
              "per_seed": vals}
        for k in ("m", "s", "lambda_max"):
            qc[k + "_mean"], qc[k + "_std"] = _agg(vals, k)
        res.quick_check = qc

    res.wall_time_s = time.perf_counter() - t0
    _figures(rf, res, config)
    _claims(rf, res, config)
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


def _spectrum_figure(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig, colors: dict) -> None:
    """Histogram (numpy bins="auto") of log₁₀ of the non-zero eigenvalues of F* of one network per activation."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    Mmax = max(config.widths)
    for a, ev in res.spectra.items():
        ev = np.asarray(ev)
        logs = np.log10(ev[ev > 1e-10 * ev.max()])
        ax.hist(logs, bins=np.histogram_bin_edges(logs, bins="auto"), histtype="step", color=colors[a],
                label=f"{a} (one network)")
        th = next(r["lambda_max_theory"] for r in res.rows if r["activation"] == a and r["M"] == Mmax)
        ax.axvline(np.log10(th), color=colors[a], ls="--", label=f"{a} mean-field λ_max")
    ax.set_xlabel("log₁₀ λ (non-zero eigenvalues of F* = BᵀB/T)")
    ax.set_ylabel("number of eigenvalues")
    ax.set_title(f"FIM spectrum at M = {Mmax} (L = {config.L}, C = {config.C}, T = {config.T})")
    _legend_right(fig, ax)
    rf.save_figure(fig, "spectrum_hist")


def _figures(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = dict(zip(config.activations, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    _stats_figure(rf, res.rows, "M", "width M", f"Statistics against M (L = {config.L}, C = {config.C}, "
                  f"T = {config.T}, {config.seeds} seeds; mean ± std)", "stats_vs_M", colors)
    _stats_figure(rf, res.t_rows, "T", "number of inputs T", f"Statistics against T (M = {config.T_width}, "
                  f"{config.seeds} seeds; mean ± std)", "stats_vs_T", colors)
    if res.c_rows:
        _bounds_figure(rf, res.c_rows)
    if res.spectra:
        _spectrum_figure(rf, res, config, colors)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _claims(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig) -> None:
    tol = config.tolerance
    Mmax = max(config.widths)
    big = [r for r in res.rows if r["M"] == Mmax]
    for k, name, eq in (("m", "m_λ = C κ₁ / M", "A.12"), ("s", "s_λ = α C ((T−1)/T κ₂² + κ₁²/T)", "A.25/A.33"),
                        ("lambda_max", "λ_max = α ((T−1)/T κ₂ + κ₁/T) M", "Theorem 4 (A.4)"),
                        ("fisher_rao", "⟨‖θ‖_FR⟩ = ⟨θ_Wᵀ F θ_W⟩ = σ_w² C Σ_l q̃^l q̂^{l−1}", "A.50"),
                        ("fisher_rao_diag", "diagonal part Σ F_ii W_i² = σ_w² C Σ_l q̃^l q̂^{l−1}", "A.48")):
        errs = {r["activation"]: r[k + "_relerr"] for r in big}
        worst = max(abs(e) for e in errs.values())
        rf.add_claim(Claim(
            "004", f"{name} ({eq}) for wide random networks", document_value=name,
            measured={a: f"{_fmt(r[k])} ± {_fmt(r[k + '_std'])} vs theory {_fmt(r[k + '_theory'])} "
                         f"(rel. err {e:+.3f})" for (a, e), r in zip(errs.items(), big)},
            verdict="holds" if worst <= tol else "does not hold",
            details=f"M = {Mmax}, L = {config.L}, C = {config.C}, T = {config.T}, {config.seeds} seeds; "
                    f"tolerance |rel. err| ≤ {tol} on the seed mean; largest |rel. err| {worst:.3f}"))
    qc = res.quick_check
    if qc:
        th, dt, dm = qc["theory"], qc["document_theory"], qc["document_measured"]
        ok = all(abs(th[k] - dt[k]) / dt[k] < 0.005 for k in th)
        rf.add_claim(Claim(
            "004", "papers.md quick check (tanh, L=3, M=400, C=1, T=60, σ_w²=3, σ_b²=0.64): theory values",
            document_value=dt, measured={k: float(f"{v:.5g}") for k, v in th.items()},
            verdict="holds" if ok else "does not hold", details="mean-field prediction, tolerance 0.5 %"))
        within = {k: abs(dm[k] - qc[k + "_mean"]) <= 3 * qc[k + "_std"] for k in ("m", "s", "lambda_max")}
        rf.add_claim(Claim(
            "004", "papers.md quick check: measured values (one network)", document_value=dm,
            measured={k: f"{_fmt(qc[k + '_mean'])} ± {_fmt(qc[k + '_std'])}" for k in ("m", "s", "lambda_max")},
            verdict="holds" if all(within.values()) else "does not hold",
            details=f"{len(qc['per_seed'])} seeds here (mean ± std); the document's single draw is within 3 std: {within}"))
    if res.relu_boundary:
        lin = {r["boundary"]: r for r in res.relu_boundary if r["network_output"] == "linear"}
        rel = {r["boundary"]: r for r in res.relu_boundary if r["network_output"] == "relu"}
        one, half = "q̃^L = 1 (linear output)", "q̃^L = 1/2 (relu output, B.10)"

        def fmt(r):
            return (f"m {_fmt(r['m'])} ± {_fmt(r['m_std'])} (rel. err {r['m_relerr']:+.3f}), "
                    f"λ_max {_fmt(r['lambda_max'])} ± {_fmt(r['lambda_max_std'])} (rel. err {r['lambda_max_relerr']:+.3f})")

        M = lin[one]["M"]
        ok_one = abs(lin[one]["m_relerr"]) <= tol and abs(lin[one]["lambda_max_relerr"]) <= tol
        rf.add_claim(Claim(
            "004", "B.10's boundary q̃^L = 1/2 for relu networks with a linear output f = u^L (the network of papers.md)",
            document_value="q̃^L = 1/2",
            measured={f"against {one}": fmt(lin[one]), f"against {half}": fmt(lin[half])},
            verdict="does not hold" if ok_one and abs(lin[half]["lambda_max_relerr"]) > tol else "inconclusive",
            details=f"M = {M}, {config.relu_output_seeds} seeds: linear-output relu networks follow q̃^L = 1 "
                    f"(within {tol:.0%}: {ok_one}); B.10's 1/2 describes a relu output unit, not these networks."))
        ok_half_m = abs(rel[half]["m_relerr"]) <= 2 * tol
        rf.add_claim(Claim(
            "004", "B.10's q̃^L = 1/2 for relu networks with a relu output unit f = φ(u^L), C = 1",
            document_value="q̃^L = 1/2",
            measured={f"against {half}": fmt(rel[half]), f"against {one}": fmt(rel[one])},
            verdict="inconclusive",
            details=f"M = {M}, {config.relu_output_seeds} seeds. m is {'close to' if ok_half_m else 'not close to'} the "
                    f"1/2 boundary, but a single relu output is not self-averaging: its pre-activations u^L(t) are "
                    f"strongly correlated over t (q^L_st/q^L ≈ {_fmt(_ratio_qst(config))}), so per network it is "
                    f"alive or dead on most inputs together, and s_λ, λ_max scatter far more than the "
                    f"mean-field value assumes."))
    if res.c_rows:
        okl = all(r["s_lower"] * (1 - tol) <= r["s"] <= r["s_upper"] * (1 + tol) for r in res.c_rows)
        okm = all(r["lambda_max_lower"] * (1 - tol) <= r["lambda_max"] <= r["lambda_max_upper"] * (1 + tol)
                  for r in res.c_rows)
        rf.add_claim(Claim(
            "004", "A.5 (C = O(M)): s_λ ≤ s'_λ ≤ C s_λ and α(...)M ≤ λ_max ≤ M√(α C s_λ); m'_λ = Cκ₁/M",
            document_value="bounds A.40, A.43, A.37, A.5",
            measured=[{k: _fmt(v) if isinstance(v, float) else v for k, v in r.items()} for r in res.c_rows],
            verdict="holds" if (okl and okm) else "does not hold",
            details=f"{res.c_rows[0]['activation']}, M = {config.C_width}, T = {config.C_T}; bounds with "
                    f"{int(tol * 100)} % slack for finite-M fluctuations"))
        r0 = res.c_rows[0]
        rf.add_claim(Claim(
            "004", "A.37 / end of A.4(ii): λ_max = ((T−1)/T κ₂ + κ₁/T) M (printed without the factor α)",
            document_value=_fmt(r0["lambda_max_lower_printed"]), measured=_fmt(r0["lambda_max"]),
            verdict="does not hold",
            details=f"C = {r0['C']}, M = {r0['M']}, T = {r0['T']}: v₁ᵀF*v₁ = α((T−1)/T κ₂ + κ₁/T)M = "
                    f"{_fmt(r0['lambda_max_lower'])} (α = P_w/M² = {r0['lambda_max_lower'] / r0['lambda_max_lower_printed']:.3g}); "
                    f"the printed A.37 drops α (a slip: still a lower bound for α ≥ 1, but not the value λ_max "
                    f"takes, which is A.4's α(...)M)."))
    rf.add_claim(Claim(
        "004", "B.12: I_φ'[a,b] = a/(2π)(π/2 + sin⁻¹c) for relu",
        document_value=f"at a = 2, b = 0.5: {mf.DOCUMENT_RELU_I_D(2.0, 0.5):.6f}",
        measured=f"quadrature {mf.I_dphi('relu', 2.0, 0.5, closed_form=False):.6f}; "
                 f"(π/2 + sin⁻¹c)/(2π) = {_act.get('relu').I_dphi(2.0, 0.5):.6f}",
        verdict="does not hold",
        details="E[θ(u₁)θ(u₂)] does not scale with the variance a; B.12 has a spurious factor a "
                "(right only at a = 1). The project uses (π/2 + sin⁻¹c)/(2π)."))


def _ratio_qst(config: FimSpectrumConfig) -> float:
    sw, sb = _sigmas(config).get("relu", (2.0, 0.1))
    op = mf.order_parameters("relu", config.L, sw, sb)
    return op.q_st[config.L] / op.q[config.L]


def _summary(rf: RunFolder, res: FimSpectrumResult, config: FimSpectrumConfig, options: RunOptions) -> str:
    lines = ["# fim-spectrum\n", f"L = {config.L}, C = {config.C}, T = {config.T}, inputs {config.inputs}, "
             f"{config.seeds} seeds, dtype {options.dtype}; wall time {res.wall_time_s:.1f} s.\n",
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
