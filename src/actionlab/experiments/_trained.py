"""The trained classifiers the θ* experiments share: their data spec, embeddings and trained θ*, cached on disk.

Owns what theta-star, j-stats, embedding-dim, scaling, conjecture and early-stop
have in common:

* :class:`DataSpec` / :func:`load_splits` – the data as the notes used it (Fashion-MNIST, pixels in [0, 1]);
* :func:`get_embedding` / :func:`get_theta_star` – embed and train θ* once, cached on disk
  keyed by the full configuration, so that experiments reuse a trained θ*
  (the training itself is :mod:`actionlab.embeddings`');
* :func:`gaussianity` / :func:`histogram_figure` – the element statistics the notes describe
  ("Gaussian distributed elements, centred at zero", "highly biased");
* :func:`dominance` – which named term dominates S_n and by how much.

Nothing here re-derives a formula of the notes: the series, the named terms and the
moment tensors J come from :mod:`actionlab.expansion`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionlab import embeddings as _emb
from actionlab._display import short_repr
from actionlab.runs import atomic_write_text

__all__ = [
    "DataSpec",
    "BuildOptions",
    "ThetaStar",
    "load_splits",
    "get_embedding",
    "get_theta_star",
    "gaussianity",
    "histogram_figure",
    "dominance",
    "cache_root",
    "spec_key",
]

CACHE_VERSION = 3  # 2: the held-out validation part is data.splits.stratified_holdout's; 3: train/validation/test disjoint by default


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where trained θ* are kept: ``cache_dir``, else $ACTIONLAB_CACHE, else ~/.cache/actionlab."""
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("ACTIONLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "actionlab"


def spec_key(obj: Any) -> str:
    """A short stable hash of a JSON-able description (the cache key)."""
    from actionlab.runs import to_jsonable

    text = json.dumps({"v": CACHE_VERSION, "spec": to_jsonable(obj)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _choices_of_activations() -> tuple[str, ...]:
    from actionlab.activations import names

    return tuple(names())


#: help text and admissible values of the settings the θ* experiments share (see :func:`shared_param`)
SHARED_PARAMS: dict[str, dict] = {
    "dataset": dict(help="data set the classifier is trained on (notes' script: fashion-mnist; pixels in [0, 1])",
                    choices=("digits", "fashion-mnist", "mnist", "cifar10")),
    "standardize": dict(help="standardisation of the pixels before embedding: none | centre | zscore "
                             "(train-split statistics)", choices=("none", "centre", "center", "zscore")),
    "embedding": dict(help="the embedding z (001 §1.1): raw pixels, pca, pool, or a learned linear map trained "
                           "jointly with the classifier (the notes' script)", choices=("raw", "pca", "pool", "learned")),
    "dim": dict(help="embedding dimension E (001 §1.1; notes' script: 1024); ignored for raw", min=1),
    "hidden": dict(help="hidden width H of θ* = (U, c, W, b) (001 §1.1; notes' script: 4096)", min=1),
    "activation": dict(help="hidden activation σ (notes: silu)", choices=_choices_of_activations()),
    "epochs": dict(help="AdamW epochs at most (early stopping on the validation loss may stop sooner)", min=1),
    "patience": dict(help="early stopping: evaluations without a better validation loss before stopping", min=1),
    "batch_size": dict(help="mini-batch size in samples (notes' script: 4096)", min=1),
    "lr": dict(help="AdamW learning rate (Keras default 1e-3)", min=0, exclusive_min=True),
    "weight_decay": dict(help="AdamW decoupled weight decay (Keras default 0.004)", min=0),
    "train_per_class": dict(help="training samples per class (balanced, seeded subset); empty = the whole train split",
                            min=1),
    "test_per_class": dict(help="test samples per class (balanced, seeded subset); empty = the whole test split", min=1),
    "cache": dict(help="reuse / store the trained θ* on disk, keyed by every setting"),
    "cache_dir": dict(help="folder of the θ* cache; empty = $ACTIONLAB_CACHE or ~/.cache/actionlab"),
}


def shared_param(name: str, default: Any) -> Any:
    """The config field ``name`` with the shared help text and range of :data:`SHARED_PARAMS`."""
    from actionlab.experiments._registry import param

    meta = dict(SHARED_PARAMS[name])
    return param(default, meta.pop("help"), **meta)


@dataclass
class ThetaStarSettings:
    """The settings that define a trained θ* (the notes' Keras set-up, papers.md): data,
    embedding, classifier and AdamW training. Experiments that analyse θ* inherit these
    fields, so equal settings share one cached θ*."""

    dataset: str = shared_param("dataset", "fashion-mnist")
    standardize: str = shared_param("standardize", "none")
    embedding: str = shared_param("embedding", "learned")
    dim: int = shared_param("dim", 1024)
    hidden: int = shared_param("hidden", 2048)
    activation: str = shared_param("activation", "silu")
    epochs: int = shared_param("epochs", 20)
    patience: int = shared_param("patience", 3)
    batch_size: int = shared_param("batch_size", 4096)
    lr: float = shared_param("lr", 1e-3)
    weight_decay: float = shared_param("weight_decay", 0.004)
    train_per_class: int | None = shared_param("train_per_class", None)
    test_per_class: int | None = shared_param("test_per_class", None)
    cache: bool = shared_param("cache", True)
    cache_dir: str | None = shared_param("cache_dir", None)


#: the θ* settings of the quick presets (shared so that quick runs reuse one cached θ*)
QUICK_THETA_STAR = {"dim": 32, "hidden": 64, "epochs": 8, "train_per_class": 200, "test_per_class": 80,
                    "batch_size": 256, "lr": 3e-3}


@dataclass
class DataSpec:
    """Which data, how preprocessed, how many samples (``per_class`` None = all)."""

    dataset: str = "fashion-mnist"
    standardize: str = "none"
    train_per_class: int | None = None
    test_per_class: int | None = None
    seed: int = 0

    @classmethod
    def from_config(cls, config: Any, seed: int, **overrides: Any) -> DataSpec:
        """The spec of an experiment config with fields dataset, standardize, train_per_class and
        test_per_class; ``overrides`` replace any of them (e.g. one standardisation of a sweep)."""
        values = {f.name: overrides[f.name] if f.name in overrides else getattr(config, f.name)
                  for f in dataclasses.fields(cls) if f.name != "seed"}
        return cls(seed=seed, **values)


def load_splits(spec: DataSpec, dtype: torch.dtype = torch.float32):
    """(train, test) :class:`actionlab.data.Dataset` of the spec (pixels scaled to [0, 1] first).

    The "train" split is the whole official training split when the data module offers a
    separate validation split only on request; the test split is the official test split.
    """
    from actionlab import data

    base = data.LoadSpec(standardize=spec.standardize, seed=spec.seed, dtype=dtype)
    train_spec = base.replace(balance=True, per_class=spec.train_per_class) if spec.train_per_class else base
    test_spec = base.replace(balance=True, per_class=spec.test_per_class) if spec.test_per_class else base
    train = data.load(spec.dataset, "train", train_spec)
    test = data.load(spec.dataset, "test", test_spec)
    return train, test


@dataclass(frozen=True)
class BuildOptions:
    """How a learned embedding / θ* is built and kept: the seed that drives the data subset, the
    initialisation, the batch order and the validation hold-out; the device it trains on; the on-disk
    cache (``cache_dir`` None = :func:`cache_root`'s default); and whether a progress bar is shown."""

    seed: int = 0
    device: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True

    @classmethod
    def of(cls, config: Any, options: Any, *, seed: int | None = None, progress: bool = True) -> BuildOptions:
        """From an experiment config with fields ``cache``/``cache_dir`` (absent: cache in the default
        folder) and the run's :class:`~actionlab.config.RunOptions` (device, seed unless ``seed`` is given)."""
        return cls(seed=options.seed if seed is None else int(seed), device=options.device,
                   cache=bool(getattr(config, "cache", True)), cache_dir=getattr(config, "cache_dir", None),
                   progress=progress)


@short_repr
@dataclass
class ThetaStar:
    """A trained θ* with the embedded data it was trained (train) and is evaluated (test) on."""

    model: Any  # actionlab.models.TwoLayer on z
    train: Any  # embedded Dataset
    test: Any  # embedded Dataset
    info: dict = field(default_factory=dict)  # JSON-able: data, embedding, training record, cache key
    cached: bool = False


def _save_module(module: torch.nn.Module, path: Path) -> None:
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, path)


def _load_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def get_embedding(
    data: DataSpec,
    kind: str,
    dim: int | None,
    learned: _emb.LearnedConfig | None = None,
    *,
    build: BuildOptions | None = None,
    splits: tuple | None = None,
):
    """Embedded (train, test, info, joint_model_or_None); ``learned`` embeddings are cached on disk.

    The cache stores the trained projection and jointly trained classifier under a key of
    the data spec, kind, dim, training settings and seed; z is recomputed from the pixels.
    """
    from actionlab.models import TwoLayer

    b = build or BuildOptions()
    seed = b.seed
    learned = learned or _emb.LearnedConfig()
    train, test = splits if splits is not None else load_splits(data)
    if kind != "learned":
        tr, te, info = _emb.embed(train, test, kind, dim, seed=seed)
        return tr, te, _emb.jsonable_info(info), None
    desc = {"what": "learned-embedding", "data": dataclasses.asdict(data), "dim": dim,
            "learned": dataclasses.asdict(learned), "seed": seed}
    key = spec_key(desc)
    folder = cache_root(b.cache_dir) / "embeddings" / key
    if b.cache and (folder / "info.json").exists():
        info = json.loads((folder / "info.json").read_text())
        proj = torch.nn.Linear(train.z.shape[1], dim, bias=learned.bias).to(train.z.dtype)
        proj.load_state_dict(_load_state(folder / "projection.pt"))
        clf = TwoLayer.zeros(train.num_classes, learned.hidden, dim, activation=learned.activation, dtype=train.z.dtype)
        clf.load_state_dict(_load_state(folder / "classifier.pt"))
        model = _emb.EmbeddedClassifier(proj, clf).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        info["cached"] = True
    else:
        _, _, full = _emb.embed(train, test, "learned", dim, learned=learned, seed=seed, device=b.device,
                                progress=b.progress)
        model = full["model"]
        info = _emb.jsonable_info(full)
        info["cache_key"] = key
        if b.cache:
            folder.mkdir(parents=True, exist_ok=True)
            _save_module(model.projection, folder / "projection.pt")
            _save_module(model.classifier, folder / "classifier.pt")
            atomic_write_text(folder / "info.json", json.dumps(_jsonable(info), indent=1))
        info["cached"] = False
    z_tr = _emb.apply_projection(model.projection, train.z)
    z_te = _emb.apply_projection(model.projection, test.z)
    tr = dataclasses.replace(train, z=z_tr, info={**(train.info or {}), "embedding": info})
    te = dataclasses.replace(test, z=z_te, info={**(test.info or {}), "embedding": info})
    return tr, te, info, model


def _jsonable(obj: Any) -> Any:
    from actionlab.runs import to_jsonable

    return to_jsonable(obj)


def get_theta_star(
    data: DataSpec,
    embedding: str = "learned",
    dim: int | None = 1024,
    hidden: int = 2048,
    learned: _emb.LearnedConfig | None = None,
    *,
    build: BuildOptions | None = None,
    splits: tuple | None = None,
) -> ThetaStar:
    """θ* = (U, c, W, b) trained on the training split, with the embedded train and test data.

    ``learned``: θ* is the classifier trained jointly with the embedding (as in the notes'
    script), so its hidden width is ``hidden``.  Other embeddings: the embedding is fixed first
    and a TwoLayer of width ``hidden`` is trained on it with the same optimiser and early
    stopping.  Cached on disk by the full configuration.
    """
    from actionlab.models import TwoLayer

    b = build or BuildOptions()
    seed = b.seed
    cfg = dataclasses.replace(learned or _emb.LearnedConfig(), hidden=hidden)
    if embedding == "learned":
        tr, te, info, model = get_embedding(data, "learned", dim, cfg, build=b, splits=splits)
        return ThetaStar(model.classifier, tr, te, {"data": dataclasses.asdict(data), "embedding": info,
                                                     "training": info.get("training"), "hidden": hidden},
                         cached=bool(info.get("cached")))
    tr, te, info, _ = get_embedding(data, embedding, dim, cfg, build=b, splits=splits)
    desc = {"what": "theta-star", "data": dataclasses.asdict(data), "embedding": embedding, "dim": dim,
            "learned": dataclasses.asdict(cfg), "seed": seed}
    key = spec_key(desc)
    folder = cache_root(b.cache_dir) / "theta_star" / key
    if b.cache and (folder / "record.json").exists():
        record = json.loads((folder / "record.json").read_text())
        model = TwoLayer.zeros(tr.num_classes, hidden, tr.z.shape[1], activation=cfg.activation, dtype=tr.z.dtype)
        model.load_state_dict(_load_state(folder / "classifier.pt"))
        model.eval()
        cached = True
    else:
        model, record = _emb.train_classifier(tr, cfg, seed=seed, device=b.device, progress=b.progress)
        record["cache_key"] = key
        if b.cache:
            folder.mkdir(parents=True, exist_ok=True)
            _save_module(model, folder / "classifier.pt")
            atomic_write_text(folder / "record.json", json.dumps(_jsonable(record), indent=1))
        cached = False
    return ThetaStar(model, tr, te, {"data": dataclasses.asdict(data), "embedding": info, "training": record,
                                     "hidden": hidden}, cached=cached)


# ----------------------------------------------------------------------------- statistics


def gaussianity(x: torch.Tensor | np.ndarray, max_test: int = 200_000, seed: int = 0) -> dict:
    """Element statistics of a tensor: count, mean, std, min, max, skew, excess kurtosis, fraction
    negative (all on every element, float64), and two normality tests from scipy —
    D'Agostino–Pearson ``normaltest`` and a one-sample Kolmogorov–Smirnov test against the normal
    with the sample's mean and std — on a uniform random sample of at most ``max_test`` elements
    (stated in ``test_sample``; with millions of elements any test rejects for tiny departures, so
    read the moments first).
    """
    from scipy import stats

    a = x.detach().cpu().double().numpy().ravel() if isinstance(x, torch.Tensor) else np.asarray(x, float).ravel()
    n = a.size
    mean = float(a.mean())
    std = float(a.std())
    # population (biased) moments, as scipy.stats.skew / kurtosis compute them by default
    skew = float(stats.skew(a)) if std > 0 else float("nan")
    kurt = float(stats.kurtosis(a, fisher=True)) if std > 0 else float("nan")
    rng = np.random.default_rng(seed)
    sample = a if n <= max_test else rng.choice(a, size=max_test, replace=False)
    out = {
        "count": int(n), "mean": mean, "std": std, "min": float(a.min()), "max": float(a.max()),
        "median": float(np.median(sample)), "skew": skew, "excess_kurtosis": kurt,
        "fraction_negative": float((a < 0).mean()), "fraction_positive": float((a > 0).mean()),
        "mean_over_std": mean / std if std > 0 else float("nan"), "test_sample": int(sample.size),
    }
    if sample.size >= 20 and std > 0:
        nt = stats.normaltest(sample)
        ks = stats.kstest((sample - sample.mean()) / sample.std(), "norm")
        out.update(normaltest_stat=float(nt.statistic), normaltest_p=float(nt.pvalue),
                   ks_stat=float(ks.statistic), ks_p=float(ks.pvalue))
    return out


def looks_gaussian_centred(st: dict, skew_tol: float = 0.5, kurt_tol: float = 1.0, centre_tol: float = 0.1) -> bool:
    """A lenient reading of the notes' "Gaussian distributed, centred at zero": |skew| < skew_tol,
    |excess kurtosis| < kurt_tol and |mean| < centre_tol·std."""
    return (abs(st["skew"]) < skew_tol and abs(st["excess_kurtosis"]) < kurt_tol
            and abs(st["mean"]) < centre_tol * st["std"])


def histogram_figure(arrays: dict[str, torch.Tensor], title: str = "", bins: int | str = "auto",
                     max_points: int = 2_000_000):
    """One panel per tensor: density histogram of its elements (central 99.9 %, log scale) with the normal of
    the same mean and std overlaid; ``bins="auto"`` is numpy's rule (the larger of Sturges' and Freedman–Diaconis')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(arrays)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.8))
    axes = np.atleast_1d(axes)
    rng = np.random.default_rng(0)
    for ax, (name, t) in zip(axes, arrays.items()):
        a = t.detach().cpu().double().numpy().ravel()
        if a.size > max_points:
            a = rng.choice(a, size=max_points, replace=False)
        mu, sd = a.mean(), a.std()
        lo, hi = np.quantile(a, [0.0005, 0.9995]) if a.size > 100 else (a.min(), a.max())
        if hi <= lo:
            lo, hi = a.min() - 0.5, a.max() + 0.5
        inside = a[(a >= lo) & (a <= hi)]
        dens, _, _ = ax.hist(inside, bins=bins, range=(lo, hi), density=True, color="tab:blue", alpha=0.75,
                             label="elements")
        if sd > 0:
            xs = np.linspace(lo, hi, 400)
            ax.plot(xs, np.exp(-0.5 * ((xs - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), "r-", lw=1,
                    label="normal, same mean/std")
        ax.axvline(0.0, color="k", lw=0.6)
        ax.set_title(f"{name}\nmean {mu:.3g}, frac<0 {np.mean(a < 0):.2f} (central 99.9 %)", fontsize=9)
        ax.set_xlabel("element value")
        ax.set_ylabel("density (log scale)")
        ax.set_yscale("log")
        ax.locator_params(axis="x", nbins=5)  # few x ticks: the labels of small values do not overlap
        pos = dens[dens > 0]
        if pos.size:
            ax.set_ylim(pos.min() * 0.3, pos.max() * 30)  # head room above the peak for the legend
        ax.legend(fontsize=7, loc="upper right", framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def dominance(terms: dict[str, float]) -> dict:
    """The term of largest |value|, its signed value, its share of Σ|terms| and its ratio to the sum."""
    if not terms:
        return {"dominant": None}
    vals = {k: float(v) for k, v in terms.items()}
    tot_abs = sum(abs(v) for v in vals.values())
    total = sum(vals.values())
    name = max(vals, key=lambda k: abs(vals[k]))
    return {
        "dominant": name,
        "value": vals[name],
        "share_of_abs": abs(vals[name]) / tot_abs if tot_abs > 0 else float("nan"),
        "ratio_to_sum": vals[name] / total if total != 0 else float("nan"),
        "sum": total,
        "shares": {k: (abs(v) / tot_abs if tot_abs > 0 else float("nan")) for k, v in vals.items()},
    }


def theta_star_for(settings: ThetaStarSettings, data: DataSpec, options: Any) -> ThetaStar:
    """θ* for an experiment whose config inherits :class:`ThetaStarSettings` (cached like
    :func:`get_theta_star`); ``options`` is the run's :class:`~actionlab.config.RunOptions`."""
    dim = settings.dim if settings.embedding != "raw" else None
    return get_theta_star(data, settings.embedding, dim, settings.hidden, learned_config_from(settings),
                          build=BuildOptions.of(settings, options))


def learned_config_from(cfg: Any) -> _emb.LearnedConfig:
    """The LearnedConfig of an experiment config with fields hidden, activation, lr, weight_decay,
    batch_size, epochs, patience (those absent keep LearnedConfig's defaults).  Experiments that
    build θ* the same way share the on-disk cache."""
    base = _emb.LearnedConfig()
    kw = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(base) if hasattr(cfg, f.name)}
    return dataclasses.replace(base, **kw)


# ----------------------------------------------------------------------------- radius of convergence in t

#: |x| of the nearest complex singularity of σ: the logistic's poles at x = iπ(2k+1) (silu, sigmoid; softplus'
#: branch points sit there too), tanh's at iπ(2k+1)/2; entire activations (linear, erf, gelu) have none.
ACTIVATION_SINGULARITY = {"silu": math.pi, "sigmoid": math.pi, "softplus": math.pi, "tanh": math.pi / 2,
                          "linear": math.inf, "erf": math.inf, "gelu": math.inf}


@short_repr
@dataclass
class SeriesRadius:
    """The radius of convergence of t ↦ S(tθ) = Σ_k S_k t^k (000 eq. (3)) from its Taylor coefficients.

    ``estimate`` is the root test 1 / max_k |S_k|^{1/k} over the last ``len(orders)`` orders (Cauchy–Hadamard
    with lim sup read off the highest orders computed); ``low`` / ``high`` are the smallest and largest
    r_k = |S_k|^{−1/k} over those orders — the spread across orders is its uncertainty.
    ``activation_bound`` = |x_σ| / max_{i,β} |(W z_i + b)_β|: along tθ the pre-activation t·h_iβ meets σ's
    nearest complex singularity x_σ (:data:`ACTIVATION_SINGULARITY`) at |t| = |x_σ| / |h_iβ|, a singularity
    of sample i's term of S, so the radius is at most this (∞ for entire σ).  ``radius`` = min(estimate,
    activation_bound) is the value used: at a finite order the root test over-estimates the radius when the
    nearest singularity belongs to few of the N samples (its weight 1/N shows in |S_k|^{1/k} only at
    k ≳ ln N / ln(r_far / r_near)), which the bound catches."""

    estimate: float
    low: float
    high: float
    orders: list = field(default_factory=list)
    per_order: list = field(default_factory=list)
    activation_bound: float = math.inf
    radius: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.radius):
            self.radius = min(self.estimate, self.activation_bound)

    def location(self, t: float) -> str:
        """"inside" (t below every order's r_k and the bound), "outside" (t above the largest r_k or at/above
        the activation bound) or "ambiguous" (within the spread across orders)."""
        if t >= self.activation_bound or t > self.high:
            return "outside"
        return "inside" if t < self.low else "ambiguous"


def series_radius(coeffs, tail: int = 6, activation_bound: float = math.inf) -> SeriesRadius:
    """Root-test radius of Σ_k a_k t^k from the last ``tail`` orders k ≥ 1 with a_k ≠ 0 (see :class:`SeriesRadius`)."""
    a = [float(c) for c in coeffs]
    ks = [k for k in range(1, len(a)) if a[k] != 0 and math.isfinite(a[k])][-max(1, int(tail)):]
    if not ks:
        return SeriesRadius(math.inf, math.inf, math.inf, [], [], activation_bound)
    r = [abs(a[k]) ** (-1.0 / k) for k in ks]
    return SeriesRadius(min(r), min(r), max(r), ks, r, activation_bound)


@torch.no_grad()
def activation_pole_bound(params, z: torch.Tensor, batch_size: int = 4096) -> float:
    """|x_σ| / max_{i,β} |(W z_i + b)_β| over the data (see :class:`SeriesRadius`); ∞ for an entire σ."""
    from actionlab import expansion

    p = expansion.as_params(params)
    xs = ACTIVATION_SINGULARITY.get(p.activation.name, math.nan)
    if not math.isfinite(xs):
        return xs if xs == math.inf else math.nan
    W, b = p.W.to(torch.float64), p.b.to(torch.float64)
    hmax = 0.0
    for i in range(0, len(z), batch_size):
        zb = z[i:i + batch_size].to(device=W.device, dtype=torch.float64)
        hmax = max(hmax, float((zb @ W.T + b).abs().max()))
    return xs / hmax if hmax > 0 else math.inf
