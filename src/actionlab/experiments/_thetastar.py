"""Shared helpers of the θ* experiments (j-stats, theta-star, embedding-dim, scaling, conjecture, early-stop).

* :func:`load_splits` – the data as the notes used it (Fashion-MNIST, pixels in [0, 1]);
* :func:`get_embedding` / :func:`get_theta_star` – embed and train θ* once, cached on disk
  keyed by the full configuration, so that experiments reuse a trained θ*;
* :func:`gaussianity` / :func:`histogram_figure` – the element statistics the notes describe
  ("Gaussian distributed elements, centred at zero", "highly biased");
* :func:`dominance` – which named term dominates S_n and by how much.

Nothing here re-derives a formula of the notes: the series and the named terms come from
:mod:`actionlab.expansion`.
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

__all__ = [
    "DataSpec",
    "ThetaStar",
    "load_splits",
    "get_embedding",
    "get_theta_star",
    "train_classifier",
    "gaussianity",
    "histogram_figure",
    "dominance",
    "cache_root",
    "spec_key",
]

CACHE_VERSION = 1


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


@dataclass
class ThetaStarSettings:
    """The settings that define a trained θ* (the notes' Keras set-up, papers.md): data,
    embedding, classifier and AdamW training. Experiments that analyse θ* inherit these
    fields, so equal settings share one cached θ*."""

    dataset: str = "fashion-mnist"
    standardize: str = "none"
    embedding: str = "learned"
    dim: int = 1024
    hidden: int = 2048
    activation: str = "silu"
    epochs: int = 20
    patience: int = 3
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.004
    train_per_class: int | None = None
    test_per_class: int | None = None
    cache: bool = True
    cache_dir: str | None = None


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

    kw = dict(standardize=spec.standardize, seed=spec.seed, dtype=dtype)
    tr_kw = dict(kw)
    te_kw = dict(kw)
    if spec.train_per_class:
        tr_kw.update(balance=True, per_class=spec.train_per_class)
    if spec.test_per_class:
        te_kw.update(balance=True, per_class=spec.test_per_class)
    train = data.load(spec.dataset, "train", **tr_kw)
    test = data.load(spec.dataset, "test", **te_kw)
    return train, test


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
    seed: int = 0,
    device: str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    progress: bool = True,
    splits: tuple | None = None,
):
    """Embedded (train, test, info, joint_model_or_None); ``learned`` embeddings are cached on disk.

    The cache stores the trained projection and jointly trained classifier under a key of
    the data spec, kind, dim, training settings and seed; z is recomputed from the pixels.
    """
    from actionlab.models import TwoLayer

    learned = learned or _emb.LearnedConfig()
    train, test = splits if splits is not None else load_splits(data)
    if kind != "learned":
        tr, te, info = _emb.embed(train, test, kind, dim, seed=seed)
        return tr, te, _emb.jsonable_info(info), None
    desc = {"what": "learned-embedding", "data": dataclasses.asdict(data), "dim": dim,
            "learned": dataclasses.asdict(learned), "seed": seed}
    key = spec_key(desc)
    folder = cache_root(cache_dir) / "embeddings" / key
    if cache and (folder / "info.json").exists():
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
        _, _, full = _emb.embed(train, test, "learned", dim, learned=learned, seed=seed, device=device, progress=progress)
        model = full["model"]
        info = _emb.jsonable_info(full)
        info["cache_key"] = key
        if cache:
            folder.mkdir(parents=True, exist_ok=True)
            _save_module(model.projection, folder / "projection.pt")
            _save_module(model.classifier, folder / "classifier.pt")
            (folder / "info.json").write_text(json.dumps(_jsonable(info), indent=1))
        info["cached"] = False
    z_tr = _emb.apply_projection(model.projection, train.z)
    z_te = _emb.apply_projection(model.projection, test.z)
    tr = dataclasses.replace(train, z=z_tr, info={**(train.info or {}), "embedding": info})
    te = dataclasses.replace(test, z=z_te, info={**(test.info or {}), "embedding": info})
    return tr, te, info, model


def _jsonable(obj: Any) -> Any:
    from actionlab.runs import to_jsonable

    return to_jsonable(obj)


def train_classifier(
    train: Any,
    hidden: int,
    cfg: _emb.LearnedConfig,
    *,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
    callbacks: tuple = (),
):
    """Train a Glorot-initialised TwoLayer on fixed z: AdamW, early stopping on a held-out
    validation part of ``train`` (best weights restored) — the same procedure as the learned
    embedding's joint training.  Returns (model, record)."""
    from actionlab import train as _train
    from actionlab.models import TwoLayer

    gen = torch.Generator().manual_seed(seed)
    model = TwoLayer.glorot(train.num_classes, hidden, train.z.shape[1], activation=cfg.activation,
                            generator=gen, dtype=train.z.dtype)
    tr_idx, va_idx = _emb._stratified_split(train.labels, cfg.val_fraction, seed)
    stopper = _emb.ValLossEarlyStop(train.z[va_idx], train.labels[va_idx], patience=cfg.patience)
    hist = _train.fit(
        model, (train.z[tr_idx], train.labels[tr_idx]), eval=(train.z[va_idx], train.labels[va_idx]),
        optimizer="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, epochs=cfg.epochs,
        batch_size=cfg.batch_size, callbacks=(stopper, *callbacks), seed=seed, device=device,
        progress=progress, max_steps=cfg.max_steps,
    )
    stopper.restore(model)
    model = model.cpu().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    record = {"config": dataclasses.asdict(cfg), "hidden": hidden, "n_train": len(tr_idx), "n_validation": len(va_idx),
              "validation_losses": stopper.losses, "best_evaluation": stopper.best_index,
              "best_validation_loss": stopper.best_loss, "stopped_early": stopper.stopped,
              "wall_time_s": getattr(hist, "wall_time_s", None)}
    return model, record


def get_theta_star(
    data: DataSpec,
    embedding: str = "learned",
    dim: int | None = 1024,
    hidden: int = 2048,
    learned: _emb.LearnedConfig | None = None,
    *,
    seed: int = 0,
    device: str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    progress: bool = True,
    splits: tuple | None = None,
) -> ThetaStar:
    """θ* = (U, c, W, b) trained on the training split, with the embedded train and test data.

    ``learned``: θ* is the classifier trained jointly with the embedding (as in the notes'
    script), so its hidden width is ``hidden``.  Other embeddings: the embedding is fixed first
    and a TwoLayer of width ``hidden`` is trained on it with the same optimiser and early
    stopping.  Cached on disk by the full configuration.
    """
    from actionlab.models import TwoLayer

    cfg = dataclasses.replace(learned or _emb.LearnedConfig(), hidden=hidden)
    if embedding == "learned":
        tr, te, info, model = get_embedding(data, "learned", dim, cfg, seed=seed, device=device, cache=cache,
                                            cache_dir=cache_dir, progress=progress, splits=splits)
        return ThetaStar(model.classifier, tr, te, {"data": dataclasses.asdict(data), "embedding": info,
                                                     "training": info.get("training"), "hidden": hidden},
                         cached=bool(info.get("cached")))
    tr, te, info, _ = get_embedding(data, embedding, dim, cfg, seed=seed, splits=splits)
    desc = {"what": "theta-star", "data": dataclasses.asdict(data), "embedding": embedding, "dim": dim,
            "learned": dataclasses.asdict(cfg), "seed": seed}
    key = spec_key(desc)
    folder = cache_root(cache_dir) / "theta_star" / key
    if cache and (folder / "record.json").exists():
        record = json.loads((folder / "record.json").read_text())
        model = TwoLayer.zeros(tr.num_classes, hidden, tr.z.shape[1], activation=cfg.activation, dtype=tr.z.dtype)
        model.load_state_dict(_load_state(folder / "classifier.pt"))
        model.eval()
        cached = True
    else:
        model, record = train_classifier(tr, hidden, cfg, seed=seed, device=device, progress=progress)
        record["cache_key"] = key
        if cache:
            folder.mkdir(parents=True, exist_ok=True)
            _save_module(model, folder / "classifier.pt")
            (folder / "record.json").write_text(json.dumps(_jsonable(record), indent=1))
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
    d = a - mean
    m2 = float((d**2).mean())
    skew = float((d**3).mean() / m2**1.5) if m2 > 0 else float("nan")
    kurt = float((d**4).mean() / m2**2 - 3.0) if m2 > 0 else float("nan")
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


def histogram_figure(arrays: dict[str, torch.Tensor], title: str = "", bins: int = 120, max_points: int = 2_000_000):
    """One panel per tensor: histogram of its elements with the normal of the same mean/std overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(arrays)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4))
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
        dens, _, _ = ax.hist(a, bins=bins, range=(lo, hi), density=True, color="tab:blue", alpha=0.75)
        if sd > 0:
            xs = np.linspace(lo, hi, 400)
            ax.plot(xs, np.exp(-0.5 * ((xs - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), "r-", lw=1, label="normal, same mean/std")
        ax.axvline(0.0, color="k", lw=0.6)
        ax.set_title(f"{name}\nmean {mu:.3g}, frac<0 {np.mean(a < 0):.2f} (central 99.9 %)", fontsize=9)
        ax.set_yscale("log")
        pos = dens[dens > 0]
        if pos.size:
            ax.set_ylim(pos.min() * 0.3, pos.max() * 3)
        if sd > 0:
            ax.legend(fontsize=7)
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
                          seed=options.seed, device=options.device, cache=settings.cache,
                          cache_dir=settings.cache_dir, progress=True)


def learned_config_from(cfg: Any) -> _emb.LearnedConfig:
    """The LearnedConfig of an experiment config with fields hidden, activation, lr, weight_decay,
    batch_size, epochs, patience (those absent keep LearnedConfig's defaults).  Experiments that
    build θ* the same way share the on-disk cache."""
    base = _emb.LearnedConfig()
    kw = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(base) if hasattr(cfg, f.name)}
    return dataclasses.replace(base, **kw)


def j_tensors(z: torch.Tensor, labels: torch.Tensor, n: int, num_classes: int | None = None) -> torch.Tensor:
    """J_{αγ1…γn} = E_p[z_γ1⋯z_γn] − E_{p(z|α)}[z_γ1⋯z_γn] (notes 001 eqs. after (6) and §2.4, §2.5),
    materialised for n = 1, 2, from :func:`actionlab.expansion.j_tensor`."""
    try:
        from actionlab.expansion import j_tensor
    except ImportError:  # expansion module not there yet: the same moments, computed directly
        return _j_direct(z, labels, n, num_classes)
    return j_tensor(z, labels, n, num_classes=num_classes)


def _j_direct(z: torch.Tensor, labels: torch.Tensor, n: int, num_classes: int | None = None) -> torch.Tensor:
    M = int(num_classes or int(labels.max()) + 1)
    zz = z.double()
    if n == 1:
        overall = zz.mean(0)
        return torch.stack([overall - zz[labels == a].mean(0) for a in range(M)]).to(z.dtype)
    if n == 2:
        overall = zz.T @ zz / len(zz)
        out = []
        for a in range(M):
            za = zz[labels == a]
            out.append(overall - za.T @ za / len(za))
        return torch.stack(out).to(z.dtype)
    raise ValueError("direct J only for n = 1, 2")
