"""Tests of actionlab.train: the loop, its history, checkpoints, callbacks and the §3 stopping rule."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from actionlab import ActionlabError, ValueCheckError
from actionlab.models import MLP, TwoLayer, action
from actionlab.train import (
    GradientAlignmentStop,
    History,
    OptimizerSpec,
    StopAfter,
    Trainer,
    TrainSpec,
    evaluate,
    fit,
    full_gradient,
    load_checkpoint,
)


def blobs(n: int, E: int = 8, M: int = 3, seed: int = 0, noise: float = 0.0, dtype=torch.float32, spread: float = 2.0):
    """Gaussian class blobs: fixed class means spread·N(0, I) (the same for every ``seed``), unit noise;
    a fraction ``noise`` of the labels redrawn at random."""
    means = spread * torch.randn(M, E, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, M, (n,), generator=g)
    z = means[labels] + torch.randn(n, E, generator=g, dtype=torch.float64)
    if noise:
        flip = torch.rand(n, generator=g) < noise
        labels = torch.where(flip, torch.randint(0, M, (n,), generator=g), labels)
    return z.to(dtype), labels


def two_layer(E=8, M=3, H=16, seed=0, dtype=torch.float32):
    return TwoLayer.glorot(M, H, E, activation="silu", generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tensors here are tiny: intra-op threads only add synchronisation cost (and contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params_of(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# ---------------------------------------------------------------------------------------------
def test_loss_decreases_and_history_is_consistent():
    tr, te = blobs(300, seed=1), blobs(200, seed=2)
    te = (te[0], te[1])
    model = two_layer()
    h = fit(model, tr, eval=te, optimizer="adam", lr=1e-2, epochs=5, batch_size=32, progress=False)
    assert isinstance(h, History)
    steps_per_epoch = math.ceil(300 / 32)
    assert h.steps_per_epoch == steps_per_epoch
    assert h.step == [k * steps_per_epoch for k in range(6)]  # step 0 plus one per epoch
    assert h.epoch == pytest.approx([0, 1, 2, 3, 4, 5])
    # at step 0 the recorded loss is the action of the initial model
    assert h.train_loss[0] == pytest.approx(float(action(two_layer(), *tr).detach()), rel=1e-5)
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.eval_loss[-1] < h.eval_loss[0]
    assert h.eval_accuracy[-1] > 0.9  # well-separated blobs
    # the final recorded loss is the model's loss as returned
    assert h.train_loss[-1] == pytest.approx(evaluate(model, *tr)[0], rel=1e-6)
    assert h.batch_loss[0] is None and all(b is not None for b in h.batch_loss[1:])
    assert not h.stopped_early and "completed 5 epochs" in h.stop_reason
    assert h.steps_done == 5 * steps_per_epoch


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", torch.optim.RMSprop, functools.partial(torch.optim.SGD, lr=0.1)])
def test_optimizers_and_eval_every_k(optimizer):
    tr = blobs(200, seed=3)
    model = two_layer(seed=4)
    kw = {"momentum": 0.9} if optimizer == "sgd" else {}
    h = fit(model, tr, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-2, epochs=3, batch_size=50,
            eval_every=5, progress=False, **kw)
    assert h.step == [0, 5, 10, 12]  # every 5 steps, plus the final step 12
    assert h.eval_loss == [None] * 4
    assert h.train_loss[-1] < h.train_loss[0]


def test_mse_loss_is_half_squared_error_to_one_hot():
    z, y = blobs(50, seed=5)
    model = two_layer(seed=5)
    loss, _ = evaluate(model, z, y, loss="mse")
    with torch.no_grad():
        f = model(z)
        ref = 0.5 * ((f - torch.nn.functional.one_hot(y, 3).float()) ** 2).sum(1).mean()
    assert loss == pytest.approx(float(ref), rel=1e-6)
    h = fit(model, (z, y), loss="mse", optimizer="sgd", lr=0.05, epochs=10, batch_size=10, progress=False)
    assert h.train_loss[-1] < h.train_loss[0]


def test_l2_options():
    z, y = blobs(100, seed=6)
    norms = {}
    for key, kw in {"none": {}, "l2": {"l2": 1.0}, "wd": {"weight_decay": 1.0}}.items():
        model = two_layer(seed=6)
        fit(model, (z, y), optimizer="sgd", lr=0.05, epochs=10, batch_size=100, progress=False, **kw)
        norms[key] = float(params_of(model).norm())
    # both penalties shrink θ; with plain SGD they are the same gradient (l2·θ = weight_decay·θ)
    assert norms["l2"] < 0.8 * norms["none"]
    assert norms["wd"] == pytest.approx(norms["l2"], rel=1e-4)


def test_determinism_same_seed_and_different_seed():
    z, y = blobs(200, seed=7)
    runs = []
    for seed in (11, 11, 12):
        model = two_layer(seed=0)
        fit(model, (z, y), optimizer="adam", lr=1e-2, epochs=3, batch_size=16, seed=seed, progress=False)
        runs.append(params_of(model))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])  # a different seed shuffles differently


def test_checkpoint_round_trip_and_resume_equals_uninterrupted(tmp_path):
    z, y = blobs(150, seed=8)
    ev = blobs(60, seed=9)
    ref = two_layer(seed=1)
    h_ref = fit(ref, (z, y), eval=ev, optimizer="adam", lr=1e-2, epochs=4, batch_size=20, eval_every=3,
                seed=5, progress=False)

    # interrupted after 2 epochs (mid-way between evaluations: step 16 of 32, last eval at 15) ...
    first = two_layer(seed=1)
    fit(first, (z, y), eval=ev, optimizer="adam", lr=1e-2, epochs=2, batch_size=20, eval_every=3, seed=5,
        progress=False, checkpoint_dir=tmp_path)
    ck = load_checkpoint(tmp_path)
    assert set(ck) >= {"model", "optimizer", "history", "step"}
    assert ck["step"] == 16
    assert torch.equal(ck["model"]["U"], first.U.detach())
    assert ck["optimizer"]["state"]  # Adam moments are saved

    # ... and resumed in a fresh model and process-like state to 4 epochs
    second = two_layer(seed=99)  # different init: the checkpoint must overwrite it
    h = fit(second, (z, y), eval=ev, optimizer="adam", lr=1e-2, epochs=4, batch_size=20, eval_every=3, seed=5,
            progress=False, checkpoint_dir=tmp_path, resume=True)
    assert torch.allclose(params_of(second), params_of(ref), rtol=0, atol=1e-6)
    assert h.step[: len(h_ref.step) - 1] == h_ref.step[:-1] or h.step[-1] == h_ref.step[-1]
    assert h.steps_done == h_ref.steps_done == 32
    assert h.train_loss[-1] == pytest.approx(h_ref.train_loss[-1], rel=1e-5)


def test_resume_with_dropout_continues_the_random_stream(tmp_path):
    z, y = blobs(90, seed=21)

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(16, 3))

    kw = dict(optimizer="sgd", lr=0.1, batch_size=30, seed=2, progress=False)
    ref = net()
    fit(ref, (z, y), epochs=4, **kw)
    part = net()
    fit(part, (z, y), epochs=2, checkpoint_dir=tmp_path, **kw)
    resumed = net()
    fit(resumed, (z, y), epochs=4, checkpoint_dir=tmp_path, resume=True, **kw)
    assert torch.allclose(params_of(resumed), params_of(ref), rtol=0, atol=1e-6)
    # and the dropout really draws: a different seed gives different weights
    other = net()
    fit(other, (z, y), epochs=4, **{**kw, "seed": 3})
    assert not torch.allclose(params_of(other), params_of(ref))


def test_resume_rejects_mismatched_batch_size(tmp_path):
    z, y = blobs(60, seed=10)
    fit(two_layer(), (z, y), epochs=1, batch_size=20, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueCheckError, match="batch_size"):
        fit(two_layer(), (z, y), epochs=2, batch_size=10, progress=False, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ActionlabError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_callbacks_stop_and_max_steps():
    z, y = blobs(100, seed=11)
    seen = []

    class Recorder:
        def on_eval(self, state):
            seen.append(state.step)
            return False

    h = fit(two_layer(), (z, y), epochs=50, batch_size=10, callbacks=[StopAfter(7), Recorder()], progress=False)
    assert h.stopped_early and h.steps_done == 7 and "StopAfter" in h.stop_reason
    assert h.step[-1] == 7  # the stopping state is evaluated
    h2 = fit(two_layer(), (z, y), epochs=50, batch_size=10, max_steps=13, progress=False)
    assert h2.steps_done == 13 and not h2.stopped_early and "max_steps" in h2.stop_reason


def test_non_finite_loss_stops_with_reason():
    z, y = blobs(100, seed=12)
    model = two_layer()
    # an absurd SGD step on the squared loss blows the weights up within a few steps (the growth guard is
    # switched off here so that the non-finite test itself is exercised; see test_divergence_factor_*)
    h = fit(model, (z, y), optimizer="sgd", lr=1e6, loss="mse", epochs=20, batch_size=10, progress=False,
            divergence_factor=None)
    assert h.stopped_early and h.diverged
    assert "non-finite" in h.stop_reason
    assert h.steps_done < 200

    class NaNModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(8, 3))

        def forward(self, x):
            out = x @ self.w
            return out + (float("nan") if self.training else 0.0)

    h = fit(NaNModel(), (z, y), epochs=2, batch_size=10, progress=False)
    assert h.diverged and h.steps_done == 0 and "step 1" in h.stop_reason

    class EvalInf(torch.nn.Module):  # finite mini-batch losses, but the full-data loss overflows after step 3
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(8, 3))
            self.calls = 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                return x @ self.w
            return x @ self.w + (float("inf") if self.calls >= 3 else 0.0)

    h = fit(EvalInf(), (z, y), epochs=5, batch_size=10, eval_every=1, progress=False)
    assert h.diverged and h.stopped_early and h.steps_done == 3
    assert "non-finite full-data loss at step 3" in h.stop_reason


def test_bad_input_is_a_clear_error():
    z, y = blobs(20, seed=13)
    with pytest.raises(ValueCheckError, match="unknown optimizer"):
        fit(two_layer(), (z, y), optimizer="lbfgs-ish", progress=False)
    with pytest.raises(ValueCheckError, match="unknown loss"):
        fit(two_layer(), (z, y), loss="hinge", progress=False)
    with pytest.raises(ActionlabError, match="lie in 0..2"):
        fit(two_layer(), (z, y + 5), progress=False)
    zz = z.clone()
    zz[3, 1] = float("nan")
    with pytest.raises(ActionlabError, match="non-finite"):
        fit(two_layer(), (zz, y), progress=False)
    with pytest.raises(ActionlabError):
        fit(two_layer(), (z, y[:5]), progress=False)
    with pytest.raises(ValueCheckError, match="batch_size"):
        fit(two_layer(), (z, y), batch_size=0, progress=False)
    with pytest.raises(ValueCheckError, match="momentum"):
        fit(two_layer(), (z, y), optimizer="adam", momentum=0.9, progress=False)


def test_full_gradient_streams_exactly():
    z, y = blobs(101, seed=14, dtype=torch.float64)
    model = two_layer(seed=2, dtype=torch.float64)
    s, g = full_gradient(model, z, y, batch_size=17)
    S = action(model, z, y)
    ref = torch.autograd.grad(S, list(model.parameters()))
    assert s == pytest.approx(float(S.detach()), rel=1e-13)
    for a, b in zip(g, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# §3 of notes 001: early stopping at ∇S_T · ∇S_E = 0
# ---------------------------------------------------------------------------------------------
def test_gradient_alignment_dot_matches_direct_autograd_float64():
    zt, yt = blobs(40, seed=15, noise=0.3, dtype=torch.float64)
    ze, ye = blobs(90, seed=16, noise=0.3, dtype=torch.float64)
    model = two_layer(H=32, seed=3, dtype=torch.float64)
    rule = GradientAlignmentStop((zt, yt), (ze, ye), every=1, batch_size=7)
    rec = rule.measure(model, step=0)
    params = list(model.parameters())
    gT = torch.autograd.grad(action(model, zt, yt), params)
    gE = torch.autograd.grad(action(model, ze, ye), params)
    dot = sum((a * b).sum() for a, b in zip(gT, gE))
    nT = torch.sqrt(sum((a * a).sum() for a in gT))
    nE = torch.sqrt(sum((b * b).sum() for b in gE))
    assert rec.dot == pytest.approx(float(dot), rel=1e-12)
    assert rec.cosine == pytest.approx(float(dot / (nT * nE)), rel=1e-12)
    with torch.no_grad():
        assert rec.S_T == pytest.approx(float(action(model, zt, yt)), rel=1e-13)
        assert rec.S_E == pytest.approx(float(action(model, ze, ye)), rel=1e-13)


def test_gradient_alignment_stops_when_overfitting_sets_in():
    # tiny noisy training set, big model: S_E falls, then rises while S_T keeps falling
    zt, yt = blobs(24, E=10, M=3, seed=17, noise=0.35, spread=0.7, dtype=torch.float64)
    ze, ye = blobs(300, E=10, M=3, seed=18, noise=0.35, spread=0.7, dtype=torch.float64)

    def run(callbacks):
        model = two_layer(E=10, M=3, H=64, seed=4, dtype=torch.float64)
        return fit(model, (zt, yt), eval=(ze, ye), optimizer="adam", lr=1e-3, epochs=70, batch_size=24,
                   eval_every=2, callbacks=callbacks, progress=False)

    watch = GradientAlignmentStop((zt, yt), (ze, ye), every=2, stop=False)
    h_all = run([watch])
    dots = [r.dot for r in watch.records]
    assert [r.step for r in watch.records] == h_all.step  # step 0, then every 2 steps
    assert dots[0] > 0  # at the start the two actions descend together
    assert watch.stop_step is not None
    # the eval loss grows after its minimum while the train loss keeps falling: overfitting happens here
    i_min = h_all.best("eval_loss")
    assert 0 < h_all.step[i_min] < h_all.steps_done
    assert h_all.eval_loss[-1] > h_all.eval_loss[i_min] + 0.05
    assert h_all.train_loss[-1] < h_all.train_loss[i_min] - 0.1
    # before the first crossing every dot product was positive, at it ≤ 0
    k = [r.step for r in watch.records].index(watch.stop_step)
    assert all(d > 0 for d in dots[:k]) and dots[k] <= 0
    # the crossing lies where S_E stops decreasing (eq. (7)): S_E there is within 2% of its minimum
    se = dict(zip(h_all.step, h_all.eval_loss))
    assert se[watch.stop_step] <= 1.02 * h_all.eval_loss[i_min]
    assert abs(watch.stop_step - h_all.step[i_min]) <= 10
    # the recorded S_E is fit's eval loss at the same step
    assert watch.records[k].S_E == pytest.approx(se[watch.stop_step], rel=1e-10)

    # the rule as a stopper halts training at that step
    stopper = GradientAlignmentStop((zt, yt), (ze, ye), every=2)
    h = run([stopper])
    assert h.stopped_early and h.steps_done == stopper.stop_step == watch.stop_step
    assert "GradientAlignmentStop" in h.stop_reason
    assert stopper.records[-1].dot <= 0


def test_gradient_alignment_smoothing_and_estimate():
    zt, yt = blobs(500, seed=18)
    ze, ye = blobs(300, seed=19)
    rule = GradientAlignmentStop((zt, yt), (ze, ye), every="eval", smoothing=0.5, max_samples=100)
    assert rule.estimated and rule.train[0].shape[0] == 100 and rule.eval[0].shape[0] == 100
    model = two_layer(seed=5)
    fit(model, (zt, yt), eval=(ze, ye), epochs=2, batch_size=100, callbacks=[rule], progress=False, lr=1e-2)
    d = [r.dot for r in rule.records]
    sm = [r.dot_smoothed for r in rule.records]
    assert len(d) == 3  # step 0 and one per epoch
    assert sm[0] == d[0] and sm[1] == pytest.approx(0.5 * sm[0] + 0.5 * d[1])
    cols = rule.as_dict()
    assert cols["step"] == [0, 5, 10] and cols["estimated"] is True
    with pytest.raises(ValueCheckError, match="smoothing"):
        GradientAlignmentStop((zt, yt), (ze, ye), smoothing=1.0)


def test_mlp_with_batchnorm_trains_on_device_option():
    z, y = blobs(120, seed=20)
    model = MLP([8, 16, 3], activation="tanh", batchnorm=True, generator=torch.Generator().manual_seed(0))
    h = fit(model, (z, y), epochs=3, batch_size=30, lr=1e-2, device="cpu", progress=False)
    assert h.train_loss[-1] < h.train_loss[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_matches_cpu():
    z, y = blobs(200, seed=22, dtype=torch.float64)
    runs = {}
    for dev in ("cpu", "cuda"):
        model = two_layer(seed=7, dtype=torch.float64)
        rule = GradientAlignmentStop((z[:50], y[:50]), (z[50:], y[50:]), every=5, stop=False)
        h = fit(model, (z[:50], y[:50]), eval=(z[50:], y[50:]), epochs=5, batch_size=10, lr=1e-2, device=dev,
                callbacks=[rule], progress=False)
        assert next(model.parameters()).device.type == dev
        runs[dev] = (params_of(model).cpu(), h.eval_loss[-1], rule.records[-1].dot)
    assert torch.allclose(runs["cpu"][0], runs["cuda"][0], rtol=1e-9, atol=1e-10)
    assert runs["cpu"][1] == pytest.approx(runs["cuda"][1], rel=1e-9)
    assert runs["cpu"][2] == pytest.approx(runs["cuda"][2], rel=1e-7)


def test_fit_accepts_datasets_and_a_progress_bar(capsys):
    from actionlab import data

    tr, te = data.load("digits", "train", standardize="zscore"), data.load("digits", "test", standardize="zscore")
    model = TwoLayer.glorot(tr.num_classes, 32, tr.z.shape[1], generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)  # the float32 data are cast to the model's dtype
    rule = GradientAlignmentStop(tr, te, every=10, stop=False)
    h = fit(model, tr, eval=te, lr=3e-3, epochs=2, batch_size=64, callbacks=rule, progress=True)
    assert h.steps_done == 2 * math.ceil(len(tr) / 64)
    assert h.eval_accuracy[-1] > 0.8 and h.eval_loss[-1] < h.eval_loss[0]
    assert rule.records[0].step == 0 and rule.records[-1].step == 40
    assert all(r.dot > 0 for r in rule.records)  # two epochs in: no overfitting yet
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the trainer's separate steps and the divergence guard (issues 12 and 15)
# ---------------------------------------------------------------------------------------------
def test_divergence_factor_stops_adam_before_the_bad_update():
    z, y = blobs(100, seed=23)
    model = two_layer(seed=8)
    h = fit(model, (z, y), optimizer="adam", lr=1e6, epochs=20, batch_size=10, progress=False)
    assert h.diverged and h.stopped_early
    assert "divergence_factor = 1000" in h.stop_reason and "not applied" in h.stop_reason
    assert h.steps_done < 200
    # the refused update was not applied: the parameters are those after steps_done steps without the guard
    ref = two_layer(seed=8)
    fit(ref, (z, y), optimizer="adam", lr=1e6, epochs=20, batch_size=10, progress=False,
        max_steps=h.steps_done, divergence_factor=None)
    assert torch.equal(params_of(model), params_of(ref))
    # without the guard the same run "completes" with an enormous loss — the case the guard is for
    free = fit(two_layer(seed=8), (z, y), optimizer="adam", lr=1e6, epochs=2, batch_size=10, progress=False,
               divergence_factor=None)
    assert not free.diverged and free.train_loss[-1] > 1e3 * free.train_loss[0]
    # a larger factor lets training run longer before it stops
    h_big = fit(two_layer(seed=8), (z, y), optimizer="adam", lr=1e6, epochs=20, batch_size=10, progress=False,
                divergence_factor=1e12)
    assert h_big.steps_done >= h.steps_done
    with pytest.raises(ValueCheckError, match="divergence_factor"):
        TrainSpec(divergence_factor=0.5)


def test_divergence_factor_on_the_full_data_loss():
    z, y = blobs(100, seed=24)

    class Grows(torch.nn.Module):  # finite, modest mini-batch losses; the full-data loss explodes after 3 steps
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(8, 3))
            self.calls = 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                return x @ self.w
            return x @ self.w + (torch.tensor([1e6, 0.0, 0.0]) if self.calls >= 3 else 0.0)

    h = fit(Grows(), (z, y), optimizer="sgd", lr=1e-3, epochs=5, batch_size=10, eval_every=1, progress=False)
    assert h.diverged and h.stopped_early and h.steps_done == 3
    assert "full-data training loss" in h.stop_reason and "divergence_factor" in h.stop_reason


def test_trainer_step_is_one_gradient_step_with_l2_on_weights_only():
    z, y = blobs(40, seed=25, dtype=torch.float64)
    model = MLP([8, 6, 3], activation="tanh", generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    lr, l2 = 0.1, 0.3
    tr = Trainer(model, (z, y), optimizer=OptimizerSpec("sgd", lr=lr),
                 spec=TrainSpec(batch_size=16, l2=l2, l2_on="weights", loss="mse", progress=False))
    idx = torch.arange(5, 21)
    lval = tr.step(idx)
    assert tr.step_count == 1
    # independent reference: float64 autograd of ½‖f − e_m‖² (mean) + (l2/2)Σ‖W‖² over the 2-D parameters only
    ref = MLP([8, 6, 3], activation="tanh", generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = list(ref.parameters())
    f = ref(z[idx])
    data = 0.5 * ((f - torch.nn.functional.one_hot(y[idx], 3).double()) ** 2).sum(1).mean()
    obj = data + 0.5 * l2 * sum((p * p).sum() for p in params if p.dim() >= 2)
    grads = torch.autograd.grad(obj, params)
    assert lval == pytest.approx(float(data.detach()), rel=1e-14)
    for p, p0, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), p0 - lr * g, rtol=1e-13, atol=1e-15)
    # evaluate() appends one full-data record; checkpoint() without a directory writes nothing
    assert tr.evaluate() is None and tr.history.step == [1]
    assert tr.history.train_loss[0] == pytest.approx(evaluate(model, z, y, loss="mse")[0], rel=1e-14)
    assert tr.checkpoint() is None and tr.resume() is False


def test_drop_last_train_time_and_a_ready_optimizer_instance():
    z, y = blobs(95, seed=26)
    sizes = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 3)

        def forward(self, x):
            if self.training:
                sizes.append(x.shape[0])
            return self.lin(x)

    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    h = Trainer(net, (z, y), optimizer=opt, spec=TrainSpec(epochs=3, batch_size=20, drop_last=True, progress=False)).run()
    assert h.steps_per_epoch == 4 and h.steps_done == 12 and sizes == [20] * 12  # the 15 leftover rows are dropped
    assert h.step == [0, 4, 8, 12]
    assert len(h.train_time_s) == len(h.step) and h.train_time_s[0] < 0.05
    assert all(b >= a for a, b in zip(h.train_time_s, h.train_time_s[1:]))
    assert all(t <= w + 1e-9 for t, w in zip(h.train_time_s, h.time_s))  # evaluations are not counted
    assert h.train_loss[-1] < h.train_loss[0]
    with pytest.raises(ValueCheckError, match="ready optimizer"):
        fit(net, (z, y), optimizer=opt, lr=0.5, progress=False)
    with pytest.raises(ValueCheckError, match="unknown setting"):
        fit(net, (z, y), epoch=3, progress=False)
    with pytest.raises(ValueCheckError, match="drop_last"):
        Trainer(net, (z, y), optimizer=opt, spec=TrainSpec(batch_size=200, drop_last=True))


def test_closure_optimizer_lbfgs_minimises_a_convex_loss():
    z, y = blobs(120, seed=27, dtype=torch.float64)
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3).double()  # multinomial logistic regression: convex in θ
    spec = TrainSpec(epochs=40, batch_size=120, closure=True, l2=1e-2, progress=False)
    h = Trainer(model, (z, y), optimizer=OptimizerSpec(torch.optim.LBFGS, lr=1.0), spec=spec).run()
    # independent reference: at the minimum of S + (l2/2)‖θ‖² the full gradient vanishes (LBFGS stops at its
    # default tolerance_change = 1e-9 on the objective: a gradient norm ~1e-5 there)
    params = list(model.parameters())
    obj = torch.nn.functional.cross_entropy(model(z), y) + 0.5 * 1e-2 * sum((p * p).sum() for p in params)
    grad = torch.autograd.grad(obj, params)
    assert math.sqrt(sum(float((g * g).sum()) for g in grad)) < 1e-4
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
