"""Tests of actionlab.data and the ``actionlab data`` command.

Real files: Fashion-MNIST / MNIST from ../shared/data (counts from its README
tables). Broken files, CIFAR-10 batches and download mirrors are built in
tmp_path; nothing touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actionlab import data
from actionlab.data import catalog as data_catalog
from actionlab.data import download as data_download
from actionlab.data import sources as data_sources
from actionlab.data import splits as data_splits
from actionlab.data import verify as data_verify
from actionlab._checks import DataError, ShapeError, ValueCheckError
from actionlab.cli import main

FM_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _shared() -> Path | None:
    for p in data_sources._repo_shared_roots():
        if (p / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
            return p
    return None


SHARED = _shared()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data with Fashion-MNIST/MNIST not found next to the repository")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch, tmp_path_factory):
    """Each test starts without $ACTIONLAB_DATA so the lookup order is the documented default, with its own
    $ACTIONLAB_CACHE (the verified-files cache of read-only folders) and no in-process record of verified files."""
    monkeypatch.delenv("ACTIONLAB_DATA", raising=False)
    monkeypatch.setenv("ACTIONLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    data_verify.clear_memo()


def _copy_test_files(dest: Path, name: str = "fashion-mnist", gz: bool = True) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        src = SHARED / name / f
        if gz:
            shutil.copy(src, dest / f)
        else:
            (dest / f[:-3]).write_bytes(gzip.decompress(src.read_bytes()))
    return dest


def _raw_idx(name: str, f: str) -> bytes:
    return gzip.decompress((SHARED / name / f).read_bytes())


# --------------------------------------------------------------------------- real files


@needs_shared
def test_fashion_mnist_real_files_shapes_counts_range():
    # issue 15 item 5: the default "train" no longer contains the validation rows (it did: 60000 rows)
    tr = data.load("fashion-mnist", "train")
    assert tr.z.shape == (50000, 784) and tr.z.dtype == torch.float32 and tr.labels.dtype == torch.long
    assert tr.counts() == [5000] * 10  # 6000 each minus the stratified 1000 each of the validation split
    assert tr.info["found_via"] == "shared data folder" and tr.info["train_includes_validation"] is False
    full = data.load("fashion-mnist", "train", validation=0)  # no validation split: the whole official file
    assert full.z.shape == (60000, 784) and full.z.dtype == torch.float32 and full.labels.dtype == torch.long
    assert full.counts() == [6000] * 10  # README table: 6000 each
    assert float(full.z.min()) == 0.0 and float(full.z.max()) == 1.0
    assert full.class_names[0] == "T-shirt/top" and full.class_names[9] == "Ankle boot"
    te = data.load("fashion-mnist", "test")
    assert te.z.shape == (10000, 784) and te.counts() == [1000] * 10
    assert te.balance_report().is_balanced
    # pixels are exactly byte / 255
    raw = np.frombuffer(_raw_idx("fashion-mnist", "t10k-images-idx3-ubyte.gz"), np.uint8, offset=16).reshape(-1, 784)
    assert torch.equal(te.z, torch.from_numpy(raw.astype(np.float32) / 255))


@needs_shared
def test_mnist_counts_and_rngd_split():
    te = data.load("mnist", "test")
    assert te.counts() == MNIST_TEST_COUNTS and len(te) == 10000
    full = data.load("mnist", "train", validation=0)  # issue 15 item 5: the default train is 50,000 now
    assert full.counts() == MNIST_TRAIN_COUNTS and len(full) == 60000
    tr = data.load("mnist", "train", validation=10000)
    va = data.load("mnist", "validation", validation=10000)
    assert (len(tr), len(va)) == (50000, 10000)
    assert tr.info["train_includes_validation"] is False
    itr, iva = set(tr.indices.tolist()), set(va.indices.tolist())
    assert not itr & iva and len(itr | iva) == 60000
    # stratified: each class's validation share is within one sample of 1/6
    for c, n in enumerate(MNIST_TRAIN_COUNTS):
        assert abs(va.counts()[c] - n / 6) <= 1
    # the default split is the same rows (same seed): train 50,000 / validation 10,000, disjoint
    assert torch.equal(data.load("mnist", "validation").indices, va.indices)
    assert torch.equal(data.load("mnist", "train").indices, tr.indices)
    with pytest.raises(ValueCheckError, match="validation = 0 leaves no validation split"):
        data.load("mnist", "validation", validation=0)
    # a different seed gives a different validation set
    assert not torch.equal(data.load("mnist", "validation", validation=10000, seed=1).indices, va.indices)


@needs_shared
def test_found_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    te = data.load("fashion-mnist", "test")
    assert len(te) == 10000 and Path(te.info["root"]).resolve() == SHARED.resolve()


# --------------------------------------------------------------------------- lookup


@needs_shared
@pytest.mark.parametrize("layout", ["subfolder", "flat", "uncompressed"])
def test_explicit_root_layouts(tmp_path, layout):
    ref = data.load("fashion-mnist", "test")
    dest = tmp_path / "fashion-mnist" if layout == "subfolder" else tmp_path
    _copy_test_files(dest, gz=layout != "uncompressed")
    ds = data.load("fashion-mnist", "test", root=tmp_path)
    assert ds.info["found_via"] == "explicit root" and str(tmp_path) in ds.info["files"][0]
    assert torch.equal(ds.z, ref.z) and torch.equal(ds.labels, ref.labels)


@needs_shared
def test_actionlab_data_env(tmp_path, monkeypatch):
    _copy_test_files(tmp_path)
    monkeypatch.setenv("ACTIONLAB_DATA", str(tmp_path))
    ds = data.load("fashion-mnist", "test")
    assert ds.info["found_via"] == "$ACTIONLAB_DATA" and ds.info["root"] == str(tmp_path)
    assert data.data_roots()[0] == (tmp_path, "$ACTIONLAB_DATA")


def test_missing_files_name_every_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as e:
        data.load("fashion-mnist", "test", root=tmp_path)
    msg = str(e.value)
    for p in (tmp_path / "fashion-mnist", tmp_path / "FashionMNIST" / "raw", tmp_path):
        assert str(p) in msg
    assert "t10k-images-idx3-ubyte" in msg and "ACTIONLAB_DATA" in msg and "root=" in msg


@needs_shared
def test_partial_folder_says_what_is_missing(tmp_path):
    _copy_test_files(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="but not t10k-labels-idx1-ubyte.gz"):
        data.load("fashion-mnist", "test", root=tmp_path)


# --------------------------------------------------------------------------- broken files


def _write_gz(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload))


@needs_shared
@pytest.mark.parametrize(
    "case, expect",
    [
        ("truncated_gzip", "truncated"),
        ("corrupt_gzip", "gzip"),
        ("not_gzip", "not gzip-compressed"),
        ("bad_magic", "magic number is 0x00000803"),
        ("count_mismatch", "announces 10000 = 10000 bytes of data but the file holds 9000"),
        ("label_out_of_range", "label 12 at index 7 is out of range"),
        ("image_label_count", "holds 10000 images but"),
        ("empty", "too short for an IDX header"),
    ],
)
def test_broken_label_files_give_clear_errors(tmp_path, case, expect):
    _copy_test_files(tmp_path)
    lab = tmp_path / "t10k-labels-idx1-ubyte.gz"
    gzb = lab.read_bytes()
    raw = bytearray(gzip.decompress(gzb))
    if case == "truncated_gzip":
        lab.write_bytes(gzb[: len(gzb) // 2])
    elif case == "corrupt_gzip":
        bad = bytearray(gzb)
        for i in range(100, 400):
            bad[i] ^= 0x5A
        lab.write_bytes(bytes(bad))
    elif case == "not_gzip":
        lab.write_bytes(bytes(raw))
    elif case == "bad_magic":
        raw[3] = 3
        _write_gz(lab, bytes(raw))
    elif case == "count_mismatch":
        _write_gz(lab, bytes(raw[: 8 + 9000]))
    elif case == "label_out_of_range":
        raw[8 + 7] = 12
        _write_gz(lab, bytes(raw))
    elif case == "image_label_count":
        raw[4:8] = (9999).to_bytes(4, "big")
        _write_gz(lab, bytes(raw[: 8 + 9999]))
    elif case == "empty":
        _write_gz(lab, b"")
    with pytest.raises(DataError) as e:
        data.load("fashion-mnist", "test", root=tmp_path)
    assert expect in str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value)


@needs_shared
def test_truncated_uncompressed_images_and_wrong_size(tmp_path):
    _copy_test_files(tmp_path, gz=False)
    img = tmp_path / "t10k-images-idx3-ubyte"
    raw = img.read_bytes()
    img.write_bytes(raw[: len(raw) - 5000])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: the IDX header announces 10000 x 28 x 28 .*truncated"):
        data.load("fashion-mnist", "test", root=tmp_path)
    # images of the wrong side
    hdr = bytearray(raw[:16])
    hdr[4:8] = (10000).to_bytes(4, "big")
    hdr[8:12] = (56).to_bytes(4, "big")
    hdr[12:16] = (14).to_bytes(4, "big")
    img.write_bytes(bytes(hdr) + raw[16:])
    with pytest.raises(DataError, match="56x14 but MNIST-style images are 28x28"):
        data.load("fashion-mnist", "test", root=tmp_path)
    # a labels file in the images file's place: wrong magic, named
    shutil.copy(tmp_path / "t10k-labels-idx1-ubyte", img)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: IDX magic number is 0x00000801"):
        data.load("fashion-mnist", "test", root=tmp_path)


# --------------------------------------------------------------------------- digits splits


def test_digits_splits_deterministic_disjoint_stratified():
    parts = {s: data.load("digits", s) for s in data.SPLITS}
    assert {s: len(d) for s, d in parts.items()} == {"train": 1258, "validation": 180, "test": 359}
    idx = {s: set(d.indices.tolist()) for s, d in parts.items()}
    assert not idx["train"] & idx["validation"] and not idx["train"] & idx["test"] and not idx["validation"] & idx["test"]
    assert len(idx["train"] | idx["validation"] | idx["test"]) == 1797
    assert parts["train"].z.shape[1] == 64 and float(parts["train"].z.max()) == 1.0 and float(parts["train"].z.min()) == 0.0
    again = data.load("digits", "test")
    assert torch.equal(again.indices, parts["test"].indices) and torch.equal(again.z, parts["test"].z)
    other = data.load("digits", "test", seed=7)
    assert not torch.equal(other.indices, parts["test"].indices)
    # stratified: each class's test count is within one of 20% of its total
    from sklearn.datasets import load_digits

    totals = np.bincount(load_digits().target)
    for c in range(10):
        assert abs(parts["test"].counts()[c] - 0.2 * totals[c]) <= 1
    # z equals the bundled pixel values / 16
    raw = load_digits().data[parts["test"].indices.numpy()]
    assert torch.allclose(parts["test"].z, torch.from_numpy(raw / 16).float(), atol=0)
    assert len(data.load("digits", "validation", validation=0.2)) == 359


# --------------------------------------------------------------------------- balancing


def test_balance_exact_and_per_class():
    raw = data.load("digits", "train")
    assert not raw.balance_report().is_balanced
    with pytest.raises(ValueCheckError, match=r"balance=True") as e:
        data.check_balanced(raw.labels, 10)
    assert str(raw.counts()) in str(e.value)
    bal = data.load("digits", "train", balance=True)
    assert bal.counts() == [min(raw.counts())] * 10
    rep = data.check_balanced(bal.labels, 10)
    assert rep.is_balanced and rep.max_deviation == 0.0 and rep.kl_from_uniform == 0.0
    assert all(p == 0.1 for p in rep.proportions)
    assert set(bal.indices.tolist()) <= set(raw.indices.tolist())
    assert torch.equal(data.load("digits", "train", balance=True).indices, bal.indices)
    other = data.load("digits", "train", balance=True, seed=3)  # another seed: another split and subsample
    assert other.balance_report().is_balanced and not torch.equal(other.indices, bal.indices)
    pc = data.load("digits", "train", per_class=20)
    assert pc.counts() == [20] * 10 and pc.info["per_class"] == 20
    assert data.load("digits", "train", per_class=1000, balance=True).counts() == bal.counts()
    assert data.load("digits", "train", per_class=1000).counts() == raw.counts()


@needs_shared
def test_balance_mnist_test_to_smallest_class():
    bal = data.load("mnist", "test", balance=True)
    assert bal.counts() == [min(MNIST_TEST_COUNTS)] * 10 and len(bal) == 8920


def test_balance_report_values():
    rep = data.balance_report(torch.tensor([0, 0, 0, 1]))
    assert rep.counts == [3, 1] and rep.proportions == [0.75, 0.25] and rep.n == 4 and not rep.is_balanced
    assert rep.max_deviation == pytest.approx(0.25, abs=1e-15)
    assert rep.kl_from_uniform == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-15)
    rep3 = data.balance_report([0, 1, 1, 0], num_classes=3)  # an empty class: KL = ln 3 - ln 2
    assert rep3.counts == [2, 2, 0] and rep3.kl_from_uniform == pytest.approx(math.log(3) - math.log(2), abs=1e-15)
    assert data.balance_report(np.array([2, 1, 0, 2, 1, 0])).is_balanced
    assert data.check_balanced([0, 0, 1, 1, 1], tol=0.11).max_deviation == pytest.approx(0.1)
    with pytest.raises(ValueCheckError):
        data.balance_report(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueCheckError):
        data.balance_report(torch.tensor([0, 5]), num_classes=3)


@given(st.lists(st.integers(0, 4), min_size=5, max_size=200), st.data())
@settings(max_examples=60, deadline=None)
def test_stratified_pick_and_subsample_properties(labels, draw):
    y = np.array(labels, dtype=np.int64)
    size = draw.draw(st.integers(0, len(y)))
    rows = data_splits.stratified_pick(y, size, data_splits.rng(0, 1), 5)
    assert rows.size == size == np.unique(rows).size and (rows.size == 0 or rows.max() < len(y))
    counts = np.bincount(y, minlength=5)
    picked = np.bincount(y[rows], minlength=5)
    assert np.all(np.abs(picked - counts * size / len(y)) < 1)  # largest-remainder quotas
    if counts.min() > 0:
        keep = data_splits.subsample(y, True, None, 0, 5, list("abcde"))
        assert data.balance_report(y[keep], 5).is_balanced and len(keep) == 5 * counts.min()
    rep = data.balance_report(y, 5)
    p = counts / len(y)
    kl = sum(pi * math.log(5 * pi) for pi in p if pi > 0)
    assert rep.kl_from_uniform == pytest.approx(kl if not rep.is_balanced else 0.0, abs=1e-12)
    assert rep.is_balanced == (counts.min() == counts.max())


# --------------------------------------------------------------------------- standardisation


def test_standardize_centre_and_zscore_use_train_statistics():
    tr_raw = data.load("digits", "train", dtype=torch.float64)
    te_raw = data.load("digits", "test", dtype=torch.float64)
    mu = tr_raw.z.mean(0)
    sd = tr_raw.z.std(0, unbiased=False)
    c = data.load("digits", "train", standardize="centre", dtype=torch.float64)
    assert c.z.mean(0).abs().max() < 1e-12 and c.info["standardize"] == "centre"
    ct = data.load("digits", "test", standardize="center", dtype=torch.float64)
    assert torch.allclose(ct.z, te_raw.z - mu, atol=1e-12) and "train split" in ct.info["fitted_on"]
    zs = data.load("digits", "train", standardize="zscore")
    const = sd <= data.ZERO_STD
    assert int(const.sum()) == zs.info["zero_variance_coordinates"] >= 1  # pixel (0, 0) is always blank
    assert torch.all(zs.z[:, const] == 0)
    assert torch.allclose(zs.z[:, ~const].double().std(0, unbiased=False), torch.ones(int((~const).sum()), dtype=torch.float64), atol=1e-5)
    assert zs.z[:, ~const].double().mean(0).abs().max() < 1e-5
    zt = data.load("digits", "test", standardize="zscore", dtype=torch.float64)
    expect = torch.where(const, torch.zeros_like(sd), (te_raw.z - mu) / sd.clamp_min(1e-300))
    assert torch.isfinite(zt.z).all() and torch.allclose(zt.z, expect, atol=1e-10)


@needs_shared
def test_zscore_mnist_validation_constant_pixels():
    va = data.load("mnist", "validation", validation=10000, per_class=100, standardize="zscore")
    assert torch.isfinite(va.z).all() and va.info["zero_variance_coordinates"] > 0
    assert va.info["fitted_on"].startswith("the train split") and "N = " in va.info["fitted_on"]


# --------------------------------------------------------------------------- reductions


def test_pca_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    tr_raw = data.load("digits", "train", dtype=torch.float64)
    te_raw = data.load("digits", "test", dtype=torch.float64)
    pca = PCA(n_components=8, svd_solver="full").fit(tr_raw.z.numpy())
    ref = torch.from_numpy(pca.transform(te_raw.z.numpy()))
    ours = data.load("digits", "test", reduce="pca", dim=8, dtype=torch.float64)
    assert ours.z.shape == (359, 8) and ours.info["reduce"] == "pca" and ours.info["dim"] == 8
    signs = torch.sign((ref * ours.z).sum(0))
    assert torch.allclose(ours.z, ref * signs, atol=1e-8)
    assert ours.info["pca_explained_variance_ratio"] == pytest.approx(pca.explained_variance_ratio_.sum(), rel=1e-9)
    tr = data.load("digits", "train", reduce="pca", dim=8, dtype=torch.float64)
    assert tr.z.mean(0).abs().max() < 1e-10  # PCA scores of the fitting set are centred
    cov = tr.z.T @ tr.z / len(tr)
    assert torch.allclose(cov, torch.diag(torch.diag(cov)), atol=1e-8)  # uncorrelated components
    assert torch.all(torch.diag(cov)[:-1] >= torch.diag(cov)[1:])  # decreasing variance
    with pytest.raises(ValueCheckError, match="dim"):
        data.load("digits", reduce="pca", dim=65)


def test_random_projection_deterministic_and_norm_preserving():
    a = data.load("digits", "train", reduce="random", dim=512, dtype=torch.float64)
    b = data.load("digits", "train", reduce="random", dim=512, dtype=torch.float64)
    c = data.load("digits", "train", reduce="random", dim=512, seed=1, dtype=torch.float64)
    assert a.z.shape == (1258, 512) and torch.equal(a.z, b.z) and not torch.allclose(a.z, c.z)
    raw = data.load("digits", "train", dtype=torch.float64)
    ratio = (a.z.pow(2).sum(1) / raw.z.pow(2).sum(1))
    # E||zR||^2 = ||z||^2 with R_jk ~ N(0, 1/dim): the spread of the ratio is ~ sqrt(2/512) ≈ 0.06
    assert abs(float(ratio.mean()) - 1) < 0.2 and float(ratio.min()) > 0.5 and float(ratio.max()) < 1.5
    # linear and the same map for every split
    te = data.load("digits", "test", reduce="random", dim=512, dtype=torch.float64)
    R = torch.from_numpy(data_splits.rng(0, data_splits.STREAM_PROJECTION).standard_normal((64, 512)) / math.sqrt(512))
    te_raw = data.load("digits", "test", dtype=torch.float64)
    assert torch.allclose(a.z, raw.z @ R, atol=1e-12) and torch.allclose(te.z, te_raw.z @ R, atol=1e-12)


def test_pool_digits_and_allowed_dims():
    raw = data.load("digits", "test")
    p = data.load("digits", "test", reduce="pool", dim=16)
    img = raw.z.reshape(-1, 8, 8)
    manual = img.reshape(-1, 4, 2, 4, 2).mean((2, 4)).reshape(-1, 16)
    assert p.z.shape == (359, 16) and torch.allclose(p.z, manual, atol=1e-6) and p.info["pool_side"] == 4
    assert data.load("digits", "test", reduce="pool", dim=9).z.shape == (359, 9)  # adaptive 3x3
    with pytest.raises(ValueCheckError, match=r"nearest allowed: 9, 16"):
        data.load("digits", reduce="pool", dim=12)
    with pytest.raises(ValueCheckError, match="needs a positive integer dim"):
        data.load("digits", reduce="pool")
    with pytest.raises(ValueCheckError, match="without reduce"):
        data.load("digits", dim=16)
    pz = data.load("digits", "train", reduce="pool", dim=16, standardize="zscore")
    assert torch.allclose(pz.z.double().std(0, unbiased=False)[pz.z.std(0) > 0], torch.tensor(1.0, dtype=torch.float64), atol=1e-5)


@needs_shared
def test_pool_fashion_mnist_196():
    te = data.load("fashion-mnist", "test", per_class=10)
    p = data.load("fashion-mnist", "test", per_class=10, reduce="pool", dim=196)
    manual = te.z.reshape(-1, 14, 2, 14, 2).mean((2, 4)).reshape(-1, 196)
    assert p.z.shape == (100, 196) and torch.allclose(p.z, manual, atol=1e-6)


# --------------------------------------------------------------------------- CIFAR-10 (fake batches)


def _fake_cifar(root: Path, n_per_batch: int = 12, n_test: int = 10, seed: int = 0, monkeypatch=None) -> dict:
    """Synthetic CIFAR-10 batches; with ``monkeypatch`` their md5s become the known ones (they pass the check)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for fname, n in [*((f"data_batch_{i}", n_per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / fname, "wb") as f:
            pickle.dump({b"batch_label": fname.encode(), b"labels": y, b"data": x,
                         b"filenames": [b"img%d.png" % i for i in range(n)]}, f, protocol=2)
        made[fname] = (x, y)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}, f, protocol=2)
    if monkeypatch is not None:
        for f in folder.iterdir():
            monkeypatch.setitem(data_catalog.CIFAR_MD5, f.name, hashlib.md5(f.read_bytes()).hexdigest())
    return made


def test_cifar10_fake_batches(tmp_path, monkeypatch):
    made = _fake_cifar(tmp_path, monkeypatch=monkeypatch)
    tr = data.load("cifar10", "train", root=tmp_path, validation=0)  # all 60 rows (the default holds out 5000)
    x = np.concatenate([made[f"data_batch_{i}"][0] for i in range(1, 6)])
    y = sum((made[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert tr.z.shape == (60, 3072) and torch.equal(tr.z, torch.from_numpy(x.astype(np.float32) / 255))
    assert tr.labels.tolist() == y and tr.class_names[3] == "cat" and tr.info["image_shape"] == [3, 32, 32]
    te = data.load("cifar-10", "test", root=tmp_path)
    assert len(te) == 10 and te.labels.tolist() == made["test_batch"][1]
    va = data.load("cifar10", "validation", root=tmp_path, validation=10)
    tr2 = data.load("cifar10", "train", root=tmp_path, validation=10)
    assert len(va) == 10 and len(tr2) == 50 and not set(va.indices.tolist()) & set(tr2.indices.tolist())
    p = data.load("cifar10", "test", root=tmp_path, reduce="pool", dim=48)
    manual = te.z.reshape(-1, 3, 4, 8, 4, 8).mean((3, 5)).reshape(-1, 48)
    assert p.z.shape == (10, 48) and torch.allclose(p.z, manual, atol=1e-6)
    with pytest.raises(ValueCheckError, match="nearest allowed: 3, 12"):
        data.load("cifar10", "test", root=tmp_path, reduce="pool", dim=10)
    # layout root/ itself (batches directly in root)
    assert len(data.load("cifar10", "test", root=tmp_path / "cifar-10-batches-py")) == 10


def test_cifar10_broken_batches(tmp_path, monkeypatch):
    _fake_cifar(tmp_path, monkeypatch=monkeypatch)
    folder = tmp_path / "cifar-10-batches-py"
    b3 = folder / "data_batch_3"
    good = b3.read_bytes()
    b3.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"data_batch_3: not a readable CIFAR-10 python batch"):
        data.load("cifar10", "train", root=tmp_path)
    with open(b3, "wb") as f:
        pickle.dump({b"labels": [0, 1], b"data": np.zeros((2, 1000), np.uint8)}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_3: 'data' has shape \(2, 1000\)"):
        data.load("cifar10", "train", root=tmp_path)
    with open(b3, "wb") as f:
        pickle.dump({b"labels": [0, 11], b"data": np.zeros((2, 3072), np.uint8)}, f, protocol=2)
    with pytest.raises(DataError, match="labels must lie in 0..9"):
        data.load("cifar10", "train", root=tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    b3.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        data.load("cifar10", "train", root=tmp_path)
    b3.unlink()
    with pytest.raises(DataError, match=r"has data_batch_1, data_batch_2, data_batch_4, data_batch_5 but not data_batch_3"):
        data.load("cifar10", "train", root=tmp_path)


# --------------------------------------------------------------------------- download (no network)


@needs_shared
def test_download_via_file_url_verifies_checksums(tmp_path, monkeypatch):
    monkeypatch.setitem(data.MIRRORS, "fashion-mnist", ["http://unreachable.invalid/", (SHARED / "fashion-mnist").as_uri() + "/"])
    calls = []
    real_fetch = data_download.fetch_url

    def fetch(url, dest):
        calls.append(url)
        if url.startswith("http://unreachable"):
            raise OSError("no network in tests")
        real_fetch(url, dest)

    monkeypatch.setattr(data_download, "fetch_url", fetch)
    target = tmp_path / "dl"
    ds = data.load("fashion-mnist", "test", root=target, download=True)
    assert ds.info["found_via"] == "downloaded" and len(ds) == 10000
    got = target / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    assert hashlib.md5(got.read_bytes()).hexdigest() == "bb300cfdad3c16e7a12a480ee83cd310"
    assert calls[0] == "http://unreachable.invalid/t10k-images-idx3-ubyte.gz" and len(calls) == 4
    # a second load finds the files and fetches nothing
    calls.clear()
    assert len(data.load("fashion-mnist", "test", root=target)) == 10000 and calls == []


@needs_shared
def test_download_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    _copy_test_files(mirror)
    lab = mirror / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(lab.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid file, but not the official one
    lab.write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setitem(data.MIRRORS, "fashion-mnist", [mirror.as_uri() + "/"])
    target = tmp_path / "dl"
    with pytest.raises(DataError) as e:
        data.load("fashion-mnist", "test", root=target, download=True)
    msg = str(e.value)
    assert "checksum mismatch" in msg and "bb300cfdad3c16e7a12a480ee83cd310" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert not (target / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((target / "fashion-mnist").glob("*.part"))


@needs_shared
def test_default_lookup_downloads_from_official_mirror_into_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data_sources, "_repo_shared_roots", lambda: [])
    monkeypatch.setenv("ACTIONLAB_DATA", str(tmp_path / "cache"))
    urls = []

    def fake_fetch(url, dest):
        urls.append(url)
        shutil.copy(SHARED / "mnist" / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(data_download, "fetch_url", fake_fetch)
    with pytest.raises(DataError, match=r"download=False"):
        data.load("mnist", "test", download=False)
    assert urls == []
    ds = data.load("mnist", "test")
    assert ds.counts() == MNIST_TEST_COUNTS and ds.info["found_via"] == "downloaded"
    assert urls == ["https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
                    "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"]
    assert (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    assert data.load("mnist", "test").info["found_via"] == "$ACTIONLAB_DATA"


def test_cifar_download_extracts_verified_archive(tmp_path, monkeypatch):
    src = tmp_path / "src"
    made = _fake_cifar(src, n_per_batch=3, n_test=4, monkeypatch=monkeypatch)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    archive = buf.getvalue()
    monkeypatch.setattr(data_download, "CIFAR_ARCHIVE", ("cifar-10-python.tar.gz", hashlib.md5(archive).hexdigest(), None))
    urls = []

    def fake_fetch(url, dest):
        urls.append(url)
        Path(dest).write_bytes(archive)

    monkeypatch.setattr(data_download, "fetch_url", fake_fetch)
    ds = data.load("cifar10", "test", root=tmp_path / "dl", download=True)
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert ds.labels.tolist() == made["test_batch"][1] and not (tmp_path / "dl" / "cifar-10-python.tar.gz").exists()


# --------------------------------------------------------------------------- API errors and Dataset


def test_bad_arguments_are_clear():
    with pytest.raises(ValueCheckError, match="unknown data set 'svhn'; choose one of: digits, fashion-mnist, mnist, cifar10"):
        data.load("svhn")
    with pytest.raises(ValueCheckError, match="unknown split"):
        data.load("digits", "dev")
    with pytest.raises(ValueCheckError, match="standardize"):
        data.load("digits", standardize="minmax")
    with pytest.raises(ValueCheckError, match="reduction"):
        data.load("digits", reduce="tsne", dim=2)
    with pytest.raises(ValueCheckError, match="per_class"):
        data.load("digits", per_class=0)
    with pytest.raises(ValueCheckError, match="validation"):
        data.load("digits", "validation", validation=0)
    with pytest.raises(ValueCheckError, match="fraction"):
        data.load("digits", validation=1.5)


def test_dataset_checks_and_helpers():
    ds = data.load("digits", "test", dtype=torch.float64)
    assert len(ds) == ds.N == 359 and ds.E == 64 and ds.M == 10 and ds.z.dtype == torch.float64
    sub = ds.subset(torch.arange(5))
    assert len(sub) == 5 and torch.equal(sub.indices, ds.indices[:5])
    assert ds.to(dtype=torch.float32).z.dtype == torch.float32
    z = ds.z.clone()
    z[3, 4] = float("nan")
    with pytest.raises(ValueCheckError, match="non-finite"):
        data.Dataset(z, ds.labels, 10, ds.class_names)
    with pytest.raises(ShapeError):
        data.Dataset(ds.z, ds.labels[:-1], 10, ds.class_names)
    with pytest.raises(ValueCheckError, match="0..9"):
        data.Dataset(ds.z, ds.labels + 5, 10, ds.class_names)
    json.dumps(ds.info)  # provenance is plain JSON


# --------------------------------------------------------------------------- CLI


def test_cli_data_digits(tmp_path, capsys):
    rc = main(["data", "digits", "--balance", "--seed", "0", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0
    n = 10 * min(data.load("digits", "train").counts())
    assert f"N = {n}, E = 64, M = 10" in out and "balanced:" in out and "p(m) = 1/10 exactly" in out
    facts = json.loads((tmp_path / "o" / "data.json").read_text())
    assert facts["N"] == n and [c["count"] for c in facts["classes"]] == [n // 10] * 10
    assert facts["balance"]["is_balanced"] is True and facts["info"]["balance"] is True


@needs_shared
def test_cli_data_fashion_mnist_test(capsys):
    assert main(["data", "fashion-mnist", "--split", "test", "--reduce", "pool", "--dim", "49"]) == 0
    out = capsys.readouterr().out
    assert "N = 10000, E = 49, M = 10" in out and "Ankle boot" in out and "1000" in out


def test_cli_data_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown data set 'nope'" in err and "Traceback" not in err
    assert main(["data", "fashion-mnist", "--split", "test", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(tmp_path) in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- LoadSpec, holdout, PCA


def test_load_spec_equals_keywords_and_refuses_unknown_options():
    spec = data.LoadSpec(balance=True, per_class=20, standardize="center", reduce="pca", dim=5, seed=3)
    assert spec.standardize == "centre"
    a = data.load("digits", "test", spec)
    b = data.load("digits", "test", balance=True, per_class=20, standardize="centre", reduce="pca", dim=5, seed=3)
    assert torch.equal(a.z, b.z) and torch.equal(a.indices, b.indices)
    # keywords replace the spec's fields
    c = data.load("digits", "test", spec, seed=4)
    assert c.info["seed"] == 4 and not torch.equal(c.indices, a.indices)
    with pytest.raises(ValueCheckError, match="unknown load option.*per_klass.*balance, per_class"):
        data.load("digits", per_klass=3)
    with pytest.raises(ValueCheckError, match="root="):
        data.load("digits", "train", Path("/tmp"))
    with pytest.raises(ValueCheckError, match="without reduce"):
        data.LoadSpec(dim=3)
    with pytest.raises(ValueCheckError, match="per_class must be a positive integer"):
        data.LoadSpec(per_class=0)


@given(st.lists(st.integers(0, 3), min_size=2, max_size=120), st.floats(0.0, 0.9), st.integers(0, 5))
@settings(max_examples=60, deadline=None)
def test_stratified_holdout_is_a_stratified_partition(labels, fraction, seed):
    y = torch.tensor(labels)
    kept, held = data_splits.stratified_holdout(y, fraction, seed)
    n = len(labels)
    assert sorted(kept.tolist() + held.tolist()) == list(range(n))  # disjoint, covering
    size = max(int(round(fraction * n)), 1) if fraction > 0 else 0
    assert len(held) == size
    counts = np.bincount(labels, minlength=4)
    picked = np.bincount(y[held].numpy(), minlength=4)
    assert np.all(np.abs(picked - counts * size / n) < 1)  # each class within one row of its share
    k2, h2 = data_splits.stratified_holdout(y, fraction, seed)
    assert torch.equal(h2, held) and torch.equal(k2, kept)


def test_streamed_pca_is_sklearn_pca():
    from sklearn.decomposition import PCA

    from actionlab.data import transforms

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 12, generator=g, dtype=torch.float64) * torch.linspace(0.3, 4.0, 12) + 2.0
    fit = transforms.fit_pca(transforms.tensor_chunks(x, size=37), 4)  # chunks of 37 rows: the streamed update
    ref = PCA(4, svd_solver="full").fit(x.numpy())
    np.testing.assert_allclose(fit.apply(x).numpy(), ref.transform(x.numpy()), atol=1e-9)
    assert fit.explained_variance_ratio == pytest.approx(ref.explained_variance_ratio_.sum(), rel=1e-12)


# --------------------------------------------------------------------------- issue 15: disjoint splits by default


def _fake_idx(root: Path, name: str, n_train: int, n_test: int, monkeypatch, seed: int = 0) -> None:
    """Synthetic IDX files (random images, balanced labels) under root/name/, registered as the known digests."""
    rng = np.random.default_rng(seed)
    folder = root / data_catalog.SUBDIRS[name][0]
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        for key, payload in ((f"{part}_images", b"\0\0\x08\x03" + np.array([n, 28, 28], ">u4").tobytes() + x.tobytes()),
                             (f"{part}_labels", b"\0\0\x08\x01" + np.array([n], ">u4").tobytes() + y.tobytes())):
            fname, md5, _ = data_catalog.IDX_FILES[name][key]
            gz = gzip.compress(payload, mtime=0)
            (folder / fname).write_bytes(gz)
            monkeypatch.setitem(data_catalog.IDX_FILES[name], key, (fname, md5, hashlib.sha256(gz).hexdigest()))
            monkeypatch.setitem(data_catalog.IDX_CONTENT_SHA256[name], key, hashlib.sha256(payload).hexdigest())


def _content_hashes(ds) -> list[bytes]:
    z = ds.z.cpu().numpy()
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in z]


def _assert_disjoint_by_default(name: str, root=None) -> dict:
    parts = {s: data.load(name, s, root=root) for s in data.SPLITS}
    hashes = {s: _content_hashes(d) for s, d in parts.items()}
    for s, h in hashes.items():
        assert len(set(h)) == len(h), f"{name} {s}: duplicate images inside the split"
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not set(hashes[a]) & set(hashes[b]), f"{name}: {a} and {b} share images by default"
    # train and validation come from the same source rows: their row indices are disjoint too
    assert not set(parts["train"].indices.tolist()) & set(parts["validation"].indices.tolist())
    assert all(d.info["train_includes_validation"] is False for s, d in parts.items() if s != "test")
    return {s: len(d) for s, d in parts.items()}


def test_digits_splits_disjoint_by_default():
    assert _assert_disjoint_by_default("digits") == {"train": 1258, "validation": 180, "test": 359}


@needs_shared
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_splits_disjoint_by_default(name):
    # the official files: 50,000 / 10,000 / 10,000, pairwise disjoint by image content (measured: no image of
    # either data set occurs twice in train + test, so content equality is row identity)
    assert _assert_disjoint_by_default(name) == {"train": 50000, "validation": 10000, "test": 10000}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_synthetic_splits_disjoint_by_default(tmp_path, monkeypatch, name):
    monkeypatch.setitem(data_catalog.DEFAULT_VALIDATION, name, 20)  # the default path, at a size the small files allow
    if name == "cifar10":
        _fake_cifar(tmp_path, n_per_batch=20, n_test=30, monkeypatch=monkeypatch)
    else:
        _fake_idx(tmp_path, name, 100, 30, monkeypatch)
    assert _assert_disjoint_by_default(name, root=tmp_path) == {"train": 80, "validation": 20, "test": 30}


def test_fitted_maps_of_validation_use_train_without_validation():
    # the PCA of the validation split is fitted on "train", which no longer contains the validation rows
    va = data.load("digits", "validation", reduce="pca", dim=5)
    assert va.info["fitted_on"].endswith("(N = 1258)")


# --------------------------------------------------------------------------- issue 15: files are what they claim


def _flip_pixel_copy(dest: Path, gz: bool) -> Path:
    """A copy of Fashion-MNIST's test files in dest with one pixel of image 0 changed; returns the changed file."""
    _copy_test_files(dest, gz=gz)
    img = dest / ("t10k-images-idx3-ubyte.gz" if gz else "t10k-images-idx3-ubyte")
    raw = bytearray(gzip.decompress(img.read_bytes()) if gz else img.read_bytes())
    raw[16 + 400] ^= 0x01  # one pixel, still a perfectly readable file
    img.write_bytes(gzip.compress(bytes(raw), compresslevel=1) if gz else bytes(raw))
    return img


@needs_shared
@pytest.mark.parametrize("gz", [False, True])
def test_one_flipped_pixel_is_an_error_naming_the_file(tmp_path, gz):
    img = _flip_pixel_copy(tmp_path, gz)
    with pytest.raises(DataError) as e:
        data.load("fashion-mnist", "test", root=tmp_path)
    msg = str(e.value)
    actual = hashlib.sha256(img.read_bytes()).hexdigest()
    official = data_catalog.IDX_FILES["fashion-mnist"]["test_images"][2]
    content = data_catalog.IDX_CONTENT_SHA256["fashion-mnist"]["test_images"]
    assert str(img) in msg and actual in msg and official in msg and content in msg
    assert "delete" in msg and "download" in msg and "verify=False" in msg
    if gz:
        assert "decompressed bytes have sha256" in msg
    # verify=False uses the file as it is: exactly one value differs from the official data
    ds = data.load("fashion-mnist", "test", root=tmp_path, verify=False)
    ref = data.load("fashion-mnist", "test")
    assert int((ds.z != ref.z).sum()) == 1 and ds.info["verified"] == "skipped (verify=False)"


@needs_shared
def test_recompressed_copy_with_official_content_is_accepted(tmp_path):
    _copy_test_files(tmp_path)
    img = tmp_path / "t10k-images-idx3-ubyte.gz"
    img.write_bytes(gzip.compress(gzip.decompress(img.read_bytes()), compresslevel=1))
    assert hashlib.sha256(img.read_bytes()).hexdigest() != data_catalog.IDX_FILES["fashion-mnist"]["test_images"][2]
    ds = data.load("fashion-mnist", "test", root=tmp_path)
    assert ds.info["verified"][0]["digest"] == data_catalog.IDX_CONTENT_SHA256["fashion-mnist"]["test_images"]


@needs_shared
def test_verification_is_cached_beside_the_file_and_redone_when_it_changes(tmp_path, monkeypatch):
    _copy_test_files(tmp_path)
    first = data.load("fashion-mnist", "test", root=tmp_path)
    assert [c["checked"] for c in first.info["verified"]] == ["now", "now"]
    cache = json.loads((tmp_path / data_verify.BESIDE).read_text())["files"]
    img = tmp_path / "t10k-images-idx3-ubyte.gz"
    st = img.stat()
    assert cache[img.name] == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "algo": "sha256",
                               "digest": data_catalog.IDX_FILES["fashion-mnist"]["test_images"][2]}
    # a new process (no memo) reads the cache and hashes nothing
    data.clear_cache()
    monkeypatch.setattr(data_verify, "_hash_file", lambda *a: pytest.fail("hashed a file whose check is cached"))
    again = data.load("fashion-mnist", "test", root=tmp_path)
    assert [c["checked"] for c in again.info["verified"]] == ["cached", "cached"]
    monkeypatch.undo()
    # the same size but another modification time: checked again (and a changed byte is caught)
    data.clear_cache()
    raw = bytearray(img.read_bytes())
    raw[-9] ^= 0xFF  # inside the gzip trailer's CRC: same size, different bytes
    img.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        data.load("fashion-mnist", "test", root=tmp_path)


@needs_shared
def test_read_only_folder_caches_elsewhere_and_unwritable_caches_never_fail(tmp_path, monkeypatch):
    ro = _copy_test_files(tmp_path / "ro")
    ro.chmod(0o555)  # permission bits say read-only: never written, even by root
    try:
        ds = data.load("fashion-mnist", "test", root=ro)
        assert not (ro / data_verify.BESIDE).exists()
        fallback = data_verify.cache_file()
        assert Path(ds.info["verified"][0]["cache"]) == fallback and str(Path.home()) not in str(fallback)
        assert str((ro / "t10k-labels-idx1-ubyte.gz").resolve()) in json.loads(fallback.read_text())["files"]
        # no cache can be written at all (the fallback lies below a file): still loads, checked each time
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        monkeypatch.setenv("ACTIONLAB_CACHE", str(blocker / "cache"))
        data.clear_cache()
        ds2 = data.load("fashion-mnist", "test", root=ro)
        assert len(ds2) == 10000 and ds2.info["verified"][0]["cache"] == ""
    finally:
        ro.chmod(0o755)


@needs_shared
def test_fall_through_from_actionlab_data_warns_naming_both_folders(tmp_path, monkeypatch):
    env = tmp_path / "env"
    env.mkdir()
    monkeypatch.setenv("ACTIONLAB_DATA", str(env))
    with pytest.warns(data.DataLookupWarning) as rec:
        ds = data.load("fashion-mnist", "test")
    msg = str(rec[0].message)
    assert str(env) in msg and str(SHARED) in msg and ds.info["found_via"] == "shared data folder"
    # found where $ACTIONLAB_DATA points: no warning
    _copy_test_files(env)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", data.DataLookupWarning)
        assert data.load("fashion-mnist", "test").info["found_via"] == "$ACTIONLAB_DATA"


def test_synthetic_cifar_batch_with_a_flipped_byte_is_an_error(tmp_path, monkeypatch):
    made = _fake_cifar(tmp_path, monkeypatch=monkeypatch)
    b = tmp_path / "cifar-10-batches-py" / "test_batch"
    x, y = made["test_batch"]
    x = x.copy()
    x[0, 100] ^= 0x01  # one pixel of image 0 differs from the batch whose md5 is the known one
    with open(b, "wb") as f:
        pickle.dump({b"batch_label": b"test_batch", b"labels": y, b"data": x,
                     b"filenames": [b"img%d.png" % i for i in range(len(y))]}, f, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: md5 [0-9a-f]{32} is not the digest of the official CIFAR-10 test_batch"):
        data.load("cifar10", "test", root=tmp_path)
    assert len(data.load("cifar10", "test", root=tmp_path, verify=False)) == 10


# --------------------------------------------------------------------------- issue 15 item 4: named errors at load()


def test_load_device_seed_and_verify_errors_are_named():
    if not torch.cuda.is_available():
        with pytest.raises(ValueCheckError, match=r"load\(device='cuda'\): .*no CUDA device is visible.*cpu"):
            data.load("digits", device="cuda")
    with pytest.raises(ValueCheckError, match=r"load\(device='tpu'\): unknown device"):
        data.load("digits", device="tpu")
    for bad in ("abc", 1.5, True, None):
        with pytest.raises(ValueCheckError, match=r"seed must be an integer \(e\.g\. seed=0\)"):
            data.load("digits", seed=bad)
    with pytest.raises(ValueCheckError, match="verify must be True or False"):
        data.load("digits", verify="yes")
    assert data.load("digits", "test", device="cpu", seed=np.int64(3)).info["seed"] == 3


def test_labels_as_list_uint8_or_numpy_are_accepted_where_labels_are_taken():
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    kept, held = data_splits.stratified_holdout(y, 0.3, seed=1)
    for other in (y.tolist(), y.to(torch.uint8), y.numpy().astype(np.int32)):
        k2, h2 = data_splits.stratified_holdout(other, 0.3, seed=1)
        assert torch.equal(k2, kept) and torch.equal(h2, held)
        assert data.balance_report(other).counts == [3, 3, 4]
    for bad, what in ((y.float(), "integer class indices"), ([0.5, 1.0], "integer class indices"),
                      (y.bool(), "integer class indices"), ([[0, 1]], "1-D"), ([0, -1], "≥ 0")):
        with pytest.raises(ValueCheckError, match=what):
            data_splits.stratified_holdout(bad, 0.3, seed=1)
    with pytest.raises(ValueCheckError, match=r"0..1 \(M = 2\)"):
        data_splits.stratified_holdout([0, 1, 2], 0.3, seed=1, num_classes=2)
    with pytest.raises(ValueCheckError, match="seed must be an integer"):
        data_splits.stratified_holdout(y, 0.3, seed="abc")


@needs_shared
def test_cli_data_no_verify_and_the_checksum_error_is_one_line(tmp_path, capsys):
    _flip_pixel_copy(tmp_path, gz=False)
    assert main(["data", "fashion-mnist", "--split", "test", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte" in err and "verify=False" in err and len(err.strip().splitlines()) == 1
    assert main(["data", "fashion-mnist", "--split", "test", "--root", str(tmp_path), "--no-verify"]) == 0
    assert "N = 10000, E = 784, M = 10" in capsys.readouterr().out
