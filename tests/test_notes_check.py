"""The `notes-check` and `expand` experiments: the claim rows, their verdicts and the run folders."""

from __future__ import annotations

import json
import math

import pytest

from actionlab.cli import main
from actionlab.experiments.notes_check import NotesCheckConfig, check_note_claims, run_notes_check

EXPECTED = {
    "S0": "holds",
    "S1": "holds",
    "S2.cc": "holds",
    "S2.UW": "does not hold",
    "S2.Ub": "holds",
    "S2.cc.definite": "does not hold",
    "S2.cc.definite.002": "holds",
    "S2.c.unstable": "does not hold",
    "S2.no_lower_bound": "holds",
    "S3.c·c·c": "holds",
    "S3.(U·b)·c": "does not hold",
    "S3.(U·W)·c": "does not hold",
    "S3.U·W·b": "does not hold",
    "S3.U·W·W": "does not hold",
    "S3.Ubb": "holds",
    "S3.no_lower_bound": "holds",
    "S3.subterms": "holds",
    "S.all_orders": "does not hold",
    "silu.derivatives": "holds",
    "relu.sigma_prime": "does not hold",
}
RATIOS = {"S2.UW": 2.0, "S3.(U·b)·c": 6.0, "S3.(U·W)·c": 6.0, "S3.U·W·b": 6.0, "S3.U·W·W": 3.0}


@pytest.fixture(scope="module")
def rows():
    r, info = run_notes_check(NotesCheckConfig(random_shape=(5, 4, 3, 12), fashion=False), seed=1)
    return {x["id"]: x for x in r}


def test_every_claim_has_a_row_and_the_expected_verdict(rows):
    assert set(EXPECTED) <= set(rows)
    for cid, verdict in EXPECTED.items():
        assert rows[cid]["verdict"] == verdict, (cid, rows[cid])


def test_coefficient_slips_are_exact_integer_factors(rows):
    for cid, ratio in RATIOS.items():
        note, exact = rows[cid]["note_value"]["random"], rows[cid]["exact"]["random"]
        assert abs(exact / note - ratio) < 1e-9, (cid, exact, note)
    meas = rows["S.all_orders"]["exact"]["random"]
    note = rows["S.all_orders"]["note_value"]["random"]
    for n, (a, b) in enumerate(zip(meas, note), start=1):
        if b != 0:
            assert abs(a / b - (n + 1)) < 1e-6


def test_S0_is_ln_M(rows):
    assert abs(rows["S0"]["exact"]["random"] - math.log(5)) < 1e-12


def test_cli_writes_markdown_and_json(tmp_path, capsys):
    out = tmp_path / "nc"
    assert main(["notes-check", "--no-fashion", "--random-shape", "4", "3", "3", "10", "--out", str(out)]) == 0
    md = (out / "notes_check.md").read_text()
    assert "| S2.UW |" in md and "does not hold" in md
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == "notes-check"
    verdicts = {c["claim"].split("]")[0][1:]: c["verdict"] for c in res["claims"]}
    assert verdicts["S2.UW"] == "does not hold" and verdicts["S0"] == "holds"
    assert not (out / "RUNNING").exists()


@pytest.mark.slow
def test_notes_check_on_fashion_mnist(tmp_path):
    pytest.importorskip("actionlab.data")
    try:
        r, info = run_notes_check(NotesCheckConfig(random_shape=(4, 3, 3, 10), fashion=True, per_class=20, hidden=8),
                                  seed=0)
    except Exception as exc:  # data files missing on this machine
        if "DataError" in type(exc).__name__:
            pytest.skip(str(exc))
        raise
    rows = {x["id"]: x for x in r}
    assert info["fashion-mnist"]["E"] == 784 and info["fashion-mnist"]["N"] == 200
    assert abs(rows["S2.UW"]["exact"]["fashion-mnist"] / rows["S2.UW"]["note_value"]["fashion-mnist"] - 2) < 1e-9
    assert rows["J.range"]["verdict"] == "inconclusive"


def test_expand_cli(tmp_path):
    out = tmp_path / "ex"
    assert main(["expand", "--data", "digits", "--per-class", "10", "--hidden", "6", "--order", "4",
                 "--dtype", "float64", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())["results"]
    assert len(res["S"]) == 5 and abs(res["S"][0] - math.log(10)) < 1e-12
    t = res["terms"]
    assert abs(t["S2"] - res["S"][2]) < 1e-10 and abs(t["S3"] - res["S"][3]) < 1e-10
    # partial sums approach the exact S at small t
    p = res["partial_sums"][0]
    assert abs(p["partial_sums"][-1] - p["exact"]) < abs(p["partial_sums"][1] - p["exact"]) + 1e-15
    out2 = tmp_path / "ex2"
    assert main(["expand", "--data", "digits", "--per-class", "10", "--activation", "relu", "--hidden", "5",
                 "--order", "3", "--out", str(out2)]) == 0
    res2 = json.loads((out2 / "results.json").read_text())["results"]
    assert res2["terms"] is None and "not analytic" in res2["terms_note"]


def test_notes_check_is_a_registered_experiment_with_claim_ids_and_strength(tmp_path):
    from actionlab.experiments import get_experiment

    exp = get_experiment("notes-check")
    assert exp.sources == ("000", "001", "002") and exp.config_cls is NotesCheckConfig
    out = tmp_path / "nc"
    assert main(["notes-check", "--no-fashion", "--random-shape", "4", "3", "3", "10", "--seed", "2", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    claims = {c["id"]: c for c in res["claims"]}
    assert claims["notes-check.S2.UW"]["verdict"] == "does not hold"
    # an exact check that is decided is firm under the default preset; its evidence names the problem
    assert claims["notes-check.S2.UW"]["strength"] == "firm"
    ev = claims["notes-check.S2.UW"]["evidence"]
    assert ev["preset"] == "default" and ev["seed"] == 2 and ev["problems"]["random"] == {"M": 4, "H": 3, "E": 3, "N": 40}
    assert res["provenance"]["command"] == f"actionlab notes-check --no-fashion --random-shape 4 3 3 10 --seed 2 --out {out}"
    # the quick preset downgrades every claim to indicative
    q = tmp_path / "q"
    assert main(["notes-check", "--quick", "--no-fashion", "--random-shape", "4", "3", "3", "10", "--out", str(q)]) == 0
    quick = json.loads((q / "results.json").read_text())
    assert quick["preset"] == "quick" and {c["strength"] for c in quick["claims"]} == {"indicative"}
    assert [c["verdict"] for c in quick["claims"]] == [c["verdict"] for c in res["claims"]]


def test_random_shape_takes_exactly_four_values(tmp_path, capsys):
    import pytest as _pytest

    with _pytest.raises(SystemExit) as exc:
        main(["notes-check", "--no-fashion", "--random-shape", "4", "3", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "expected 4 arguments" in capsys.readouterr().err
    from actionlab.experiments import make_config
    from actionlab._checks import ValueCheckError

    with _pytest.raises(ValueCheckError, match="exactly 4 values"):
        make_config(NotesCheckConfig, random_shape=(4, 3, 3))
    assert not (tmp_path / "x").exists()


def test_check_note_claims_on_unbalanced_data_leaves_balance_claims_undecided():
    """S_1 = 0 and the absent U·b terms assume p(α) = 1/M: on unbalanced data they are not decided (holds None),
    and the exact S_1 equals −Σ_α (p(α) − 1/M) c_α (independent float64 arithmetic)."""
    import torch

    gen = torch.Generator().manual_seed(3)
    M, H, E = 3, 4, 2
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    z = torch.randn(len(labels), E, dtype=torch.float64, generator=gen)
    theta = {"U": torch.randn(M, H, dtype=torch.float64, generator=gen) * 0.3,
             "c": torch.randn(M, dtype=torch.float64, generator=gen) * 0.3,
             "W": torch.randn(H, E, dtype=torch.float64, generator=gen) * 0.3,
             "b": torch.randn(H, dtype=torch.float64, generator=gen) * 0.3}
    checks = {c.id: c for c in check_note_claims(z, labels, theta)}
    for cid in ("S1", "S2.Ub", "S3.Ubb"):
        assert checks[cid].holds is None, cid
    p = torch.bincount(labels, minlength=M).double() / len(labels)
    assert abs(checks["S1"].exact - float(-((p - 1 / M) * theta["c"]).sum())) < 1e-12
    assert checks["S0"].holds is True and abs(checks["S0"].exact - math.log(M)) < 1e-12
