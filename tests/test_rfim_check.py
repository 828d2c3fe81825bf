"""rfim-check: 003 table 1 closed forms against the definition and the full-rank remark, as verdict rows."""

from __future__ import annotations

import json

import pytest
import torch

from actionlab.config import RunOptions
from actionlab.experiments import get_experiment, make_config
from actionlab.experiments.rfim_check import (BLOCKS, RfimCheckConfig, definition_rfim, judge_full_rank,
                                              judge_relative_error)


def test_judges_on_both_sides():
    assert judge_relative_error(1e-12, 1e-9) == "holds"
    assert judge_relative_error(1e-3, 1e-9) == "does not hold"
    assert judge_full_rank([1, 2, 3, 3, 3], 3) == "holds"
    assert judge_full_rank([1, 2, 2, 3, 3], 3) == "does not hold"  # n = dim but rank short
    assert judge_full_rank([1, 3, 3, 3], 3) == "does not hold"  # full rank below dim samples: impossible, flagged


def test_definition_of_a_gaussian_linear_unit_is_the_input_second_moment():
    """Independent check of the reference: y ~ N(wᵀx̃, 1) has g = mean x̃x̃ᵀ (Gauss–Hermite must be exact)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    w = torch.randn(3, generator=g, dtype=torch.float64)
    G = definition_rfim(lambda th, xn: (th[:2] @ xn + th[2]).reshape(1), "gaussian", w, x)
    xt = torch.cat([x, torch.ones(5, 1, dtype=torch.float64)], 1)
    assert torch.allclose(G, xt.T @ xt / 5, atol=1e-13)


@pytest.mark.slow
def test_quick_preset_every_table1_row_and_full_rank_holds(tmp_path):
    cfg = make_config(RfimCheckConfig, "quick")
    res = get_experiment("rfim-check").run(cfg, RunOptions(out=tmp_path, seed=0, preset="quick"))
    assert set(res.relative_error) == set(BLOCKS)
    assert max(res.relative_error.values()) < 1e-10
    payload = json.loads((tmp_path / "results.json").read_text())
    claims = {c["id"]: c for c in payload["claims"]}
    assert {f"003.table1.{b}" for b in BLOCKS} | {"003.full-rank"} == set(claims)
    assert all(c["verdict"] == "holds" for c in claims.values())
    for by_dim in res.ranks.values():
        for d, ranks in by_dim.items():
            assert ranks[: d - 1] == list(range(1, d)) and set(ranks[d - 1:]) == {d}
    assert (tmp_path / "rfim_check.png").exists()
