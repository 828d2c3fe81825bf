"""actionlab.embeddings: raw / pca / pool / learned, checked against independent computations."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

from actionlab import ShapeError, ValueCheckError
from actionlab.data import Dataset
from actionlab.embeddings import (
    EmbeddedClassifier,
    LearnedConfig,
    ValLossEarlyStop,
    apply_projection,
    embed,
    jsonable_info,
)


def _ds(N=200, E=16, M=3, seed=0, split="train"):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, E, generator=g) * torch.linspace(0.2, 3.0, E)
    labels = torch.arange(N) % M
    return Dataset(z, labels, M, [str(i) for i in range(M)], "custom", split)


def test_raw_keeps_z_and_rejects_a_dimension():
    tr, te = _ds(), _ds(seed=1, split="test")
    a, b, info = embed(tr, te, "raw")
    assert torch.equal(a.z, tr.z) and torch.equal(b.z, te.z)
    assert info["kind"] == "raw" and info["dim"] == 16
    assert a.info["embedding"]["kind"] == "raw"
    with pytest.raises(ValueCheckError, match="raw"):
        embed(tr, te, "raw", 4)


def test_unknown_kind_and_missing_dim_are_clear_errors():
    tr, te = _ds(), _ds(seed=1)
    with pytest.raises(ValueCheckError, match="raw, pca, pool, learned"):
        embed(tr, te, "umap", 4)
    with pytest.raises(ValueCheckError, match="dimension"):
        embed(tr, te, "pca")
    with pytest.raises(ShapeError):
        embed(tr, _ds(E=8), "pca", 2)


def test_local_pca_matches_sklearn_fitted_on_train_only():
    from sklearn.decomposition import PCA

    tr, te = _ds(), _ds(seed=1, split="test")
    a, b, info = embed(tr, te, "pca", 5)
    ref = PCA(5).fit(tr.z.double().numpy())
    for got, x in ((a.z, tr.z), (b.z, te.z)):
        want = ref.transform(x.double().numpy())
        signs = np.sign((got.double().numpy() * want).sum(0))  # components are defined up to sign
        np.testing.assert_allclose(got.double().numpy() * signs, want, atol=1e-4)
    assert info["explained_variance_ratio"] == pytest.approx(ref.explained_variance_ratio_.sum(), rel=1e-6)


def test_pca_and_pool_delegate_to_data_reductions_on_loaded_data():
    from actionlab import data

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    a, b, info = embed(tr, te, "pca", 6)
    ref = data.load("digits", "test", reduce="pca", dim=6)
    assert info["via"].startswith("actionlab.data")
    torch.testing.assert_close(b.z, ref.z)
    a, b, info = embed(tr, te, "pool", 16)
    torch.testing.assert_close(a.z, data.load("digits", "train", reduce="pool", dim=16).z)
    assert a.z.shape[1] == 16


def test_local_pool_averages_blocks():
    z = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 16)
    tr = Dataset(z, torch.tensor([0, 1]), 2, ["a", "b"])
    a, _, info = embed(tr, tr, "pool", 4)
    img = z.reshape(2, 4, 4)
    want = torch.stack([img[:, i : i + 2, j : j + 2].mean((1, 2)) for i in (0, 2) for j in (0, 2)], 1)
    torch.testing.assert_close(a.z, want)
    with pytest.raises(ValueCheckError, match="square"):
        embed(_ds(E=15), _ds(E=15), "pool", 4)


def test_learned_embedding_is_the_frozen_projection_and_restores_best_weights():
    from actionlab import data

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    cfg = LearnedConfig(hidden=16, epochs=6, batch_size=64, lr=1e-2, patience=2)
    a, b, info = embed(tr, te, "learned", 8, learned=cfg, seed=3, progress=False)
    model = info["model"]
    assert isinstance(model, EmbeddedClassifier)
    assert a.z.shape == (len(tr), 8) and b.z.shape == (len(te), 8)
    # z is A x + a of the frozen projection; the classifier on z equals the joint model on x
    torch.testing.assert_close(b.z, te.z @ model.projection.weight.T + model.projection.bias)
    torch.testing.assert_close(model.classifier(b.z), model(te.z))
    assert not any(p.requires_grad for p in model.parameters())
    rec = info["training"]
    assert rec["n_train"] + rec["n_validation"] == len(tr)
    assert rec["best_validation_loss"] == pytest.approx(min(rec["validation_losses"]))
    # the restored weights are the best ones: recompute the validation loss is not possible here without the split,
    # but the best index must be a recorded evaluation and the loss below ln M (it learned something)
    assert 0 <= rec["best_evaluation"] < len(rec["validation_losses"])
    assert rec["best_validation_loss"] < np.log(10)
    assert a.info["embedding"]["kind"] == "learned"
    json.dumps(jsonable_info(info))  # JSON-able without the model
    # same seed, same embedding
    _, b2, _ = embed(tr, te, "learned", 8, learned=cfg, seed=3, progress=False)
    torch.testing.assert_close(b2.z, b.z)


def test_val_loss_early_stop_patience_and_restore():
    lin = torch.nn.Linear(2, 2)
    x = torch.randn(10, 2)
    y = torch.zeros(10, dtype=torch.long)
    cb = ValLossEarlyStop(x, y, patience=2)
    losses = iter([1.0, 0.5, 0.7, 0.6])
    cb._loss = lambda model: next(losses)  # drive the callback with given losses
    state = types.SimpleNamespace(model=lin, history=None, eval=None)
    best = None
    for k in range(4):
        with torch.no_grad():
            lin.weight.fill_(float(k))
        stop = cb.on_eval(state)
        if k == 1:
            best = lin.weight.clone()
        if stop:
            break
    assert k == 3 and cb.stopped and cb.best_index == 1
    cb.restore(lin)
    torch.testing.assert_close(lin.weight, best)


def test_apply_projection_batches():
    proj = torch.nn.Linear(5, 3)
    x = torch.randn(50, 5)
    torch.testing.assert_close(apply_projection(proj, x, batch_size=7), proj(x).detach())
