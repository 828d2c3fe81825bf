"""``actionlab study``: registry order, presets, resuming, interrupted and failing experiments, study.json.

The study runs whatever the registry holds; these tests hand it small
synthetic experiments (a config dataclass with presets and a ``run`` that
writes a real run folder through :class:`actionlab.runs.RunFolder`), so that
every rule can be checked in well under a second per test. The real
registry is exercised by the slow test at the end (the ``demo`` experiment).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from actionlab._checks import ValueCheckError
from actionlab.config import RunOptions
from actionlab.experiments._registry import Experiment
from actionlab.runs import MANIFEST, Claim, RunFolder
from actionlab.study import decide, load_study, plan_study, run_state, run_study


@dataclass
class FakeConfig:
    """A synthetic experiment's configuration."""

    n: int = 10
    PRESETS: ClassVar[dict[str, dict]] = {"quick": {"n": 3}, "default": {}, "full": {"n": 100}}


@dataclass
class DefaultOnlyConfig:
    n: int = 7
    PRESETS: ClassVar[dict[str, dict]] = {"default": {}}


def make_experiment(
    name: str,
    sources: tuple[str, ...] = ("000",),
    order: int = 100,
    calls: list | None = None,
    fail: BaseException | None = None,
    figure: bool = False,
    verdict: str = "holds",
    config_cls: type = FakeConfig,
) -> Experiment:
    """A registered-experiment stand-in that writes a genuine run folder.

    ``fail`` is raised after the run folder was opened (so a RUNNING marker
    is on disk, as with a real crash or Ctrl-C).
    """

    def run(config, options):
        if calls is not None:
            calls.append((name, config.n, options.seed, options.command))
        folder = RunFolder(options, experiment=name, config=config,
                           data={"name": "synthetic", "n": config.n})
        if fail is not None:
            raise fail
        if figure:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(3, 2))
            ax.plot(range(config.n), [i * i for i in range(config.n)])
            ax.set_title(name)
            folder.save_figure(fig, "curve")
        folder.add_claim(Claim(source=sources[0] if sources else "", claim=f"{name}: the sum of 0..n-1 is n(n-1)/2",
                               document_value="n(n-1)/2", measured=sum(range(config.n)), verdict=verdict,
                               details="exact integer arithmetic"))
        folder.finish({"n": config.n, "sum": sum(range(config.n)), "values": [float(i) for i in range(config.n)]},
                      f"# {name}\n\nsum = {sum(range(config.n))}\n")

    return Experiment(name, config_cls, run, f"synthetic experiment {name}", tuple(sources), order)


def registry(*exps: Experiment) -> dict[str, Experiment]:
    return {e.name: e for e in exps}


def test_runs_in_registry_order_with_preset_and_writes_study_json(tmp_path):
    calls: list = []
    reg = registry(
        make_experiment("zeta", order=1, calls=calls),
        make_experiment("alpha", order=5, calls=calls),
        make_experiment("beta", order=5, calls=calls, sources=("004",)),
    )
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None, options=RunOptions(seed=3))
    # order: by `order`, then name
    assert [c[0] for c in calls] == ["zeta", "alpha", "beta"]
    assert all(c[1] == 3 for c in calls)  # the quick preset's n
    assert all(c[2] == 3 for c in calls)  # the seed
    assert study.counts == {"done": 3}
    for name in ("zeta", "alpha", "beta"):
        assert run_state(tmp_path / name) == "finished"
        res = json.loads((tmp_path / name / "results.json").read_text())
        assert res["results"]["sum"] == 3
    data = json.loads((tmp_path / "study.json").read_text())
    assert data["study"]["preset"] == "quick" and data["study"]["seed"] == 3
    assert [e["name"] for e in data["experiments"]] == ["zeta", "alpha", "beta"]
    beta = data["experiments"][2]
    assert beta["status"] == "done" and beta["sources"] == ["004"] and beta["claims"] == {"holds": 1}
    assert beta["wall_time_s"] >= 0 and beta["folder"] == "beta"
    assert data["counts"] == {"done": 3}


def test_provenance_records_the_single_experiment_command(tmp_path):
    calls: list = []
    argv_before = list(sys.argv)
    run_study(tmp_path, preset="quick", experiments=registry(make_experiment("alpha", calls=calls)),
              options=RunOptions(seed=5), progress=False, log=lambda s: None)
    assert sys.argv == argv_before  # untouched: the command reaches the experiment through options.command
    expected = f"actionlab alpha --preset quick --out {tmp_path / 'alpha'} --seed 5 --device cpu --dtype float32"
    assert calls[0][3] == expected
    prov = json.loads((tmp_path / "alpha" / "provenance.json").read_text())
    assert prov["command"] == expected and prov["seed"] == 5
    assert load_study(tmp_path).entry("alpha").command == expected


def test_finished_experiments_are_kept_unless_rerun(tmp_path):
    calls: list = []
    reg = registry(make_experiment("alpha", calls=calls), make_experiment("beta", calls=calls))
    run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    stamp = (tmp_path / "alpha" / "results.json").stat().st_mtime_ns
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    assert len(calls) == 2  # nothing ran the second time
    assert study.counts == {"cached": 2}
    assert study.entry("alpha").claims == {"holds": 1}  # filled from the kept results.json
    assert (tmp_path / "alpha" / "results.json").stat().st_mtime_ns == stamp
    study = run_study(tmp_path, preset="quick", experiments=reg, rerun=True, only="beta", progress=False, log=lambda s: None)
    assert [c[0] for c in calls] == ["alpha", "beta", "beta"]
    assert study.entry("beta").status == "done" and "asked for" in study.entry("beta").note
    assert study.entry("alpha").status == "cached"  # kept from the previous study.json


def test_changed_preset_or_seed_reruns(tmp_path):
    calls: list = []
    reg = registry(make_experiment("alpha", calls=calls))
    run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    study = run_study(tmp_path, preset="default", experiments=reg, progress=False, log=lambda s: None)
    assert [c[1] for c in calls] == [3, 10]
    assert study.entry("alpha").status == "done" and "configuration changed (n)" in study.entry("alpha").note
    study = run_study(tmp_path, preset="default", experiments=reg, progress=False, log=lambda s: None, options=RunOptions(seed=1))
    assert len(calls) == 3 and "seed changed" in study.entry("alpha").note
    study = run_study(tmp_path, preset="default", experiments=reg, progress=False, log=lambda s: None, options=RunOptions(seed=1, dtype="float64"))
    assert len(calls) == 4 and "dtype changed" in study.entry("alpha").note
    study = run_study(tmp_path, preset="default", experiments=reg, progress=False, log=lambda s: None, options=RunOptions(seed=1, dtype="float64"))
    assert len(calls) == 4 and study.entry("alpha").status == "cached"


def test_interrupted_experiment_is_cleaned_and_restarted(tmp_path):
    calls: list = []
    reg = registry(make_experiment("alpha", calls=calls), make_experiment("beta", calls=calls, fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    assert run_state(tmp_path / "beta") == "running"  # the marker of the interrupted run is on disk
    saved = load_study(tmp_path)
    assert saved.entry("alpha").status == "done" and saved.entry("beta").status == "interrupted"
    (tmp_path / "beta" / "half-written.npy").write_bytes(b"junk")
    # the interrupted run wrote it (it is in the folder's manifest); a user's file is not, and stays
    (tmp_path / "beta" / MANIFEST).write_text(json.dumps(["half-written.npy"]))
    (tmp_path / "beta" / "precious.txt").write_text("mine")
    # the next study: alpha is kept, beta starts again with the interrupted run's files cleared
    reg["beta"] = make_experiment("beta", calls=calls)
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    assert [c[0] for c in calls] == ["alpha", "beta", "beta"]
    assert study.entry("alpha").status == "cached"
    assert study.entry("beta").status == "done" and "interrupted" in study.entry("beta").note
    assert not (tmp_path / "beta" / "half-written.npy").exists()
    assert (tmp_path / "beta" / "precious.txt").read_text() == "mine"
    assert run_state(tmp_path / "beta") == "finished"


def test_killed_run_folder_without_study_json_is_restarted(tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    (folder / "RUNNING").write_text("2026-01-01T00:00:00")
    (folder / "results.json").write_text("{}")  # even with a results.json, RUNNING means unfinished
    calls: list = []
    study = run_study(tmp_path, preset="quick", experiments=registry(make_experiment("alpha", calls=calls)),
                      progress=False, log=lambda s: None)
    assert len(calls) == 1 and study.entry("alpha").status == "done"
    assert json.loads((folder / "results.json").read_text())["experiment"] == "alpha"


def test_failing_experiment_is_recorded_and_the_others_go_on(tmp_path):
    calls: list = []
    lines: list[str] = []
    reg = registry(
        make_experiment("alpha", order=1, calls=calls),
        make_experiment("broken", order=2, calls=calls, fail=RuntimeError("the Hessian is not symmetric")),
        make_experiment("gamma", order=3, calls=calls),
    )
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lines.append)
    assert [c[0] for c in calls] == ["alpha", "broken", "gamma"]
    assert study.counts == {"done": 2, "failed": 1}
    assert [e.name for e in study.failed] == ["broken"]
    data = json.loads((tmp_path / "study.json").read_text())
    broken = next(e for e in data["experiments"] if e["name"] == "broken")
    assert broken["status"] == "failed"
    assert broken["error"] == "RuntimeError: the Hessian is not symmetric"
    assert "Traceback (most recent call last)" in broken["traceback"] and "the Hessian is not symmetric" in broken["traceback"]
    assert run_state(tmp_path / "broken") == "failed"
    failed = (tmp_path / "broken" / "FAILED").read_text()
    assert "the Hessian is not symmetric" in failed
    assert failed.startswith(f"actionlab broken --preset quick --out {tmp_path / 'broken'} --seed 0")
    assert not (tmp_path / "broken" / "RUNNING").exists()
    assert run_state(tmp_path / "gamma") == "finished"
    assert any("broken: FAILED" in ln for ln in lines) and sum("done in" in ln for ln in lines) == 2
    # a later study retries the failed one only
    reg["broken"] = make_experiment("broken", order=2, calls=calls)
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    assert [c[0] for c in calls][3:] == ["broken"]
    assert study.counts == {"cached": 2, "done": 1} and study.entry("broken").error is None


def test_experiment_that_forgets_to_finish_is_a_failure(tmp_path):
    def run(config, options):
        RunFolder(options, experiment="lazy", config=config)  # never finished

    reg = {"lazy": Experiment("lazy", FakeConfig, run, "never finishes", ("000",))}
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    assert study.entry("lazy").status == "failed"
    assert "without finishing its run folder" in study.entry("lazy").error


def test_missing_preset_falls_back_to_default(tmp_path):
    calls: list = []
    reg = registry(make_experiment("alpha", calls=calls, config_cls=DefaultOnlyConfig))
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    assert calls[0][1] == 7
    entry = study.entry("alpha")
    assert entry.preset == "default" and "no preset 'quick'" in entry.note


def test_only_skip_and_unknown_names():
    reg = registry(make_experiment("a", order=2), make_experiment("b", order=1), make_experiment("c", order=3))
    assert [e.name for e in plan_study(experiments=reg)] == ["b", "a", "c"]
    assert [e.name for e in plan_study(only="c,a", experiments=reg)] == ["a", "c"]
    assert [e.name for e in plan_study(only=["a", "c"], skip=["c"], experiments=reg)] == ["a"]
    with pytest.raises(ValueCheckError, match="unknown experiment.*nope.*registered: b, a, c"):
        plan_study(only=["nope"], experiments=reg)
    with pytest.raises(ValueCheckError, match="unknown preset"):
        run_study("/nonexistent-never-created", preset="fast", experiments=reg)


def test_progress_bar_shows_the_current_experiment(tmp_path, capsys):
    reg = registry(make_experiment("alpha"), make_experiment("beta"))
    run_study(tmp_path, preset="quick", experiments=reg, progress=True)
    err = capsys.readouterr()
    text = err.err + err.out
    assert "study: beta" in text and "2/2 experiments" in text
    assert "[1/2] alpha: done in" in text and "[2/2] beta: done in" in text


def test_cli_study_then_report(tmp_path, monkeypatch, capsys):
    """`actionlab study --preset quick --only … --out DIR` then `actionlab report DIR`, through the real CLI."""
    from actionlab.cli import main
    from actionlab.experiments import load_all
    from actionlab.experiments._registry import EXPERIMENTS

    load_all()
    monkeypatch.setitem(EXPERIMENTS, "synthetic-ok", make_experiment("synthetic-ok", sources=("003",), figure=True))
    monkeypatch.setitem(EXPERIMENTS, "synthetic-broken",
                        make_experiment("synthetic-broken", sources=("004",), fail=ValueError("no convergence")))
    out = tmp_path / "study"
    rc = main(["study", "--preset", "quick", "--only", "synthetic-ok,synthetic-broken", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 1  # one experiment failed
    assert "synthetic-broken: failed: ValueError: no convergence" in text
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert run_state(out / "synthetic-ok") == "finished"
    rc = main(["report", str(out), "--out", str(tmp_path / "r")])
    assert rc == 0 and "report.html" in capsys.readouterr().out
    page = (tmp_path / "r" / "report.html").read_text()
    assert "synthetic-ok: the sum of 0..n-1 is n(n-1)/2" in page and "no convergence" in page
    assert page.count('src="data:image/png;base64,') == 1
    # --list prints the plan with each run folder's state
    rc = main(["study", "--list", "--only", "synthetic-ok", "synthetic-broken", "--out", str(out)])
    listed = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert rc == 0 and sorted(listed) == ["synthetic-broken", "synthetic-ok"]
    assert " finished " in listed["synthetic-ok"] and " failed " in listed["synthetic-broken"]


def tiny_demo(reg):
    """The registered `demo` experiment with a one-epoch quick preset (its real run function)."""
    demo = reg["demo"]

    class TinyDemoConfig(demo.config_cls):
        PRESETS: ClassVar[dict[str, dict]] = {"quick": {"hidden": 8, "epochs": 1}, "default": {}}

    return Experiment("demo", TinyDemoConfig, demo.run, demo.help, demo.sources, demo.order)


@pytest.mark.slow
def test_real_registry_demo(tmp_path):
    """The foundation's `demo` experiment (one epoch) through the study, when it is registered."""
    from actionlab.experiments import load_all

    reg = load_all()
    if "demo" not in reg:
        pytest.skip("the `demo` experiment is not registered in this version")
    exps = [tiny_demo(reg)]
    study = run_study(tmp_path, preset="quick", experiments=exps, progress=False, log=lambda s: None)
    entry = study.entry("demo")
    assert entry.status == "done", entry.traceback
    assert entry.sources == list(reg["demo"].sources) and entry.figures >= 1
    data = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert data["experiment"] == "demo" and data["config"]["epochs"] == 1
    assert data["provenance"]["command"].startswith("actionlab demo --preset quick --out ")
    again = run_study(tmp_path, preset="quick", experiments=exps, progress=False, log=lambda s: None)
    assert again.entry("demo").status == "cached"


def test_decide_reads_the_folder_state(tmp_path):
    """`decide` only decides (nothing is run or deleted): absent → run, finished → keep, the rest → run again."""
    opts = RunOptions(seed=0)
    cfg = FakeConfig(n=3)
    folder = tmp_path / "alpha"
    assert decide(folder, cfg, opts) == type(decide(folder, cfg, opts))(True, "")
    RunFolder(RunOptions(out=folder, seed=0), "alpha", cfg).finish({"n": 3})
    assert decide(folder, cfg, opts).run is False
    assert decide(folder, cfg, opts, rerun=True).reason == "rerun: asked for"
    assert decide(folder, FakeConfig(n=4), opts).reason == "rerun: configuration changed (n)"
    assert decide(folder, cfg, RunOptions(seed=2)).reason == "rerun: seed changed (0 -> 2)"
    assert decide(folder, cfg, RunOptions(dtype="float64")).reason == "rerun: dtype changed (float32 -> float64)"
    RunFolder(folder, "alpha", cfg)  # opened again and never finished
    assert decide(folder, cfg, opts).reason == "restarted: the previous run was interrupted"
    from actionlab.runs import mark_failed

    mark_failed(folder, "RuntimeError: boom")
    d = decide(folder, cfg, opts)
    assert d.run and d.reason == "retried: the previous run failed" and run_state(folder) == "failed"
    assert (folder / "results.json").exists()  # deciding touches nothing


def test_members_are_the_registered_experiments_and_commands_import_nothing_from_cli():
    """`expand` and `notes-check` are registered experiments (members like the others); `actionlab.commands`
    keeps only data, study and report, and none of them imports the CLI."""
    import ast
    import pathlib

    import actionlab.commands as commands_pkg
    from actionlab.experiments import load_all
    from actionlab.study import study_members

    members = study_members()
    assert set(members) == set(load_all())
    assert members["expand"].sources == ("000", "001") and members["notes-check"].sources == ("000", "001", "002")
    folder = pathlib.Path(commands_pkg.__file__).parent
    assert sorted(f.stem for f in folder.glob("*.py") if f.stem != "__init__") == ["data", "report", "study"]
    for f in folder.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "actionlab.cli" or n.startswith("actionlab.cli.") for n in names), f"{f.name} imports the CLI"


def test_a_user_error_in_an_experiment_is_a_recorded_failure(tmp_path):
    reg = registry(make_experiment("picky", fail=ValueCheckError("--n must be even; pass --n 4")))
    study = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    entry = study.entry("picky")
    assert entry.status == "failed" and entry.error == "ValueCheckError: --n must be even; pass --n 4"
    assert run_state(tmp_path / "picky") == "failed" and not (tmp_path / "picky" / "RUNNING").exists()
    assert "--n must be even" in (tmp_path / "picky" / "FAILED").read_text()
