"""The Python blocks of docs/getting-started.md run as printed, and give the numbers they claim.

Each fenced ``python`` block is extracted from the page and executed in a fresh namespace (in a
temporary working folder); the walkthrough's results are then checked against independent
references: S_0 = ln M (001 eq. (4)), S_1 = 0 at c = 0 with σ(0) = 0, S_2 against float64 nested
autodiff of t ↦ S(tθ), the Fisher statistics against the dense FIM of torch.func, and RNGD's
training loop against chance level.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

PAGE = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The contents of every fenced ```python block of a Markdown text, in order."""
    return FENCE.findall(text)


def _block(marker: str) -> str:
    hits = [b for b in python_blocks(PAGE.read_text(encoding="utf-8")) if marker in b]
    assert len(hits) == 1, f"expected one python block of docs/getting-started.md containing {marker!r}, got {len(hits)}"
    return hits[0]


def _run(code: str, where: Path, monkeypatch) -> dict:
    monkeypatch.chdir(where)
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 - the documented code itself
    return namespace


def test_python_blocks_are_found():
    blocks = python_blocks("text\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n")
    assert blocks == ["x = 1\n", "y = 2\n"]
    assert len(python_blocks(PAGE.read_text(encoding="utf-8"))) >= 2


def test_every_python_block_is_checked_here():
    """A new python block on the page must get a test of its own (no block runs untested)."""
    markers = ("RNGD(model", "run_study(")
    for block in python_blocks(PAGE.read_text(encoding="utf-8")):
        assert any(m in block for m in markers), f"untested python block in docs/getting-started.md:\n{block[:200]}"


def _series_reference(model, z, labels) -> list[float]:
    """[S_0, S_1, S_2] of t ↦ S(tθ) by float64 nested autodiff of the plain forward (the independent reference)."""
    from actionlab.models import two_layer_logits

    theta = [getattr(model, k).detach().to(torch.float64) for k in ("U", "c", "W", "b")]
    z = z.to(torch.float64)

    def S(t):
        f = two_layer_logits(*(v * t for v in theta), model.activation, z)
        return torch.nn.functional.cross_entropy(f, labels)

    t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    s0 = S(t)
    (d1,) = torch.autograd.grad(s0, t, create_graph=True)
    (d2,) = torch.autograd.grad(d1, t)
    return [float(s0.detach()), float(d1.detach()), float(d2) / 2]


def test_walkthrough_runs_and_its_numbers_hold(tmp_path, monkeypatch):
    from actionlab.fisher.empirical import dense_fisher
    from actionlab.models import TwoLayer, action

    torch.set_num_threads(1)  # the machine is shared; the block is small
    ns = _run(_block("RNGD(model"), tmp_path, monkeypatch)
    M, S, stats, losses, accuracy = ns["M"], ns["S"], ns["stats"], ns["losses"], ns["accuracy"]
    train = ns["train"]

    # the expansion: S_0 = ln M (001 eq. (4)); S_1 = mean(c) − c_m = 0 at c = 0, σ(0) = 0 (silu)
    assert S.shape == (5,)
    assert float(S[0]) == pytest.approx(math.log(M), abs=1e-12)
    assert abs(float(S[1])) < 1e-12
    # the initial θ again (the loop trained the model in place): the same seeded Glorot draw
    model0 = TwoLayer.glorot(M, 32, ns["E"], activation="silu", generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64)
    ref = _series_reference(model0, train.z, train.labels)
    assert ref[0] == pytest.approx(math.log(M), abs=1e-12) and abs(ref[1]) < 1e-12
    assert float(S[2]) == pytest.approx(ref[2], rel=1e-9, abs=1e-12)

    # the Fisher statistics against the dense P × P FIM (torch.func.jacrev), eigenvalues of F = BᵀB/T
    F = dense_fisher(model0, train.z[:50], "cross_entropy")
    ev = torch.linalg.eigvalsh(F)
    P = F.shape[0]
    assert stats.num_params == P == model0.num_params
    assert stats.m == pytest.approx(float(torch.trace(F)) / P, rel=1e-9)
    assert stats.s == pytest.approx(float((F * F).sum()) / P, rel=1e-9)
    assert stats.lambda_max == pytest.approx(float(ev[-1]), rel=1e-9)

    # RNGD in a plain loop learns: the train action falls below half its start (measured 2.66 → 0.63 in
    # two epochs) and the test accuracy is far above chance 1/M (measured 0.844)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[0] == pytest.approx(float(action(model0, train.z, train.labels).detach()), rel=1e-12)
    assert losses[-1] < 0.5 * losses[0]
    assert accuracy > 0.75


@pytest.mark.slow
def test_study_block_runs(tmp_path, monkeypatch):
    ns = _run(_block("run_study("), tmp_path, monkeypatch)
    study, files = ns["study"], ns["files"]
    assert sum(study.counts.values()) == 1 and set(study.counts) <= {"done", "cached"}
    html = Path(files.html)
    assert html.is_file() and html.stat().st_size > 0
    assert (tmp_path / "runs" / "study" / "demo" / "results.json").is_file()
