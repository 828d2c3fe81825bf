"""Fault injection, ``actionlab study`` (issue 15 items 3 and 8): foreign and corrupted files in a study
folder, a member another live process writes, a second study on the same folder, SIGKILL mid-study.

Synthetic members (a config with presets and a ``run`` that writes a genuine run folder) keep each case
well under a second; one subprocess where a second live process is the point.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import pytest

from actionlab.experiments._registry import Experiment
from actionlab.runs import LOCK, MANIFEST, Claim, FolderInUseError, RunFolder, folder_state
from actionlab.study import STUDY_FILE, load_study, run_study


@dataclass
class Cfg:
    """A synthetic member's configuration."""

    n: int = 4
    PRESETS: ClassVar[dict[str, dict]] = {"quick": {"n": 2}, "default": {}}


def member(name: str, calls: list) -> Experiment:
    def run(config, options):
        calls.append(name)
        folder = RunFolder(options, experiment=name, config=config)
        folder.write_text("table.md", f"n = {config.n}\n")
        folder.add_claim(Claim("000", f"{name}: n ≥ 1", verdict="holds" if config.n >= 1 else "does not hold"))
        folder.finish({"n": config.n}, f"# {name}\n")

    return Experiment(name, Cfg, run, f"synthetic {name}", ("000",), 100)


def study(tmp_path, calls, *names, log=None, **kw):
    reg = {n: member(n, calls) for n in (names or ("demo",))}
    lines: list[str] = []
    s = run_study(tmp_path, preset="quick", experiments=reg, progress=False, log=lines.append if log is None else log,
                  **kw)
    return s, lines


def test_study_never_deletes_a_file_it_did_not_write(tmp_path):
    calls: list = []
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "precious.txt").write_text("my notes")
    s, _ = study(tmp_path, calls, only="demo")
    assert s.entry("demo").status == "done" and (tmp_path / "demo" / "precious.txt").read_text() == "my notes"
    # a rerun clears what the run wrote (table.md, results…), keeps the user's file
    (tmp_path / "demo" / "table.md").write_text("stale")
    s, _ = study(tmp_path, calls, only="demo", rerun=True)
    assert calls == ["demo", "demo"] and (tmp_path / "demo" / "precious.txt").read_text() == "my notes"
    assert (tmp_path / "demo" / "table.md").read_text() == "n = 2\n"
    # after an interruption too
    (tmp_path / "demo" / "RUNNING").write_text("x")
    s, lines = study(tmp_path, calls, only="demo")
    assert s.entry("demo").status == "done" and "interrupted" in s.entry("demo").note
    assert (tmp_path / "demo" / "precious.txt").read_text() == "my notes"


@pytest.mark.parametrize("content, why", [
    (b"\x80\x81\xfe not utf-8", "not UTF-8"),
    (b"[]", "not an object"),
    (b'{"experiment": "demo", "claims": []}', "no config"),
    (b'{"experiment": "demo", "config": {"n": 2}}', "no claims"),
    (b'{"config": {"n": 2}, "claims": [{"verdict": ["x"]}]}', "verdict"),
])
def test_corrupted_results_json_is_rerun_with_a_note(tmp_path, content, why):
    calls: list = []
    study(tmp_path, calls)
    (tmp_path / "demo" / "results.json").write_bytes(content)
    s, lines = study(tmp_path, calls)
    assert calls == ["demo", "demo"] and s.entry("demo").status == "done"
    assert why in s.entry("demo").note and any(why in ln for ln in lines)
    assert folder_state(tmp_path / "demo") == "finished"


@pytest.mark.parametrize("content", [b"\xff\xff", b"{oops", b"[1, 2]", b'{"study": 3}', b'{"experiments": 5}'])
def test_corrupted_study_json_is_moved_aside_and_rebuilt(tmp_path, content):
    calls: list = []
    study(tmp_path, calls)
    (tmp_path / STUDY_FILE).write_bytes(content)
    s, lines = study(tmp_path, calls)
    assert s.entry("demo").status == "cached" and calls == ["demo"]
    aside = list(tmp_path.glob(f"{STUDY_FILE}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content  # kept, not deleted
    assert any("moved it to" in ln for ln in lines)
    assert load_study(tmp_path).entry("demo") is not None


def test_malformed_study_entries_are_dropped_with_a_note(tmp_path):
    calls: list = []
    study(tmp_path, calls, "demo", "other")
    data = json.loads((tmp_path / STUDY_FILE).read_text())
    data["experiments"] += [7, {"name": "../evil", "folder": "../evil"}, {"name": "x", "status": 3, "figures": "many"}]
    (tmp_path / STUDY_FILE).write_text(json.dumps(data))
    s, lines = study(tmp_path, calls, "demo", only="demo")
    assert sum("dropped" in ln for ln in lines) == 2
    assert s.entry("x") is not None and s.entry("x").status == "pending" and s.entry("x").figures == 0
    assert s.entry("other").status in ("done", "cached")


def test_member_path_that_is_a_file_is_reported_and_kept(tmp_path):
    calls: list = []
    (tmp_path / "demo").write_text("not a folder")
    s, lines = study(tmp_path, calls)
    assert s.entry("demo").status == "failed" and "is a file" in s.entry("demo").error
    assert (tmp_path / "demo").read_text() == "not a folder" and calls == []


def _lock_of(pid: int) -> str:
    return json.dumps({"pid": pid, "hostname": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00",
                       "proc_start": None})


def test_live_member_and_live_study_are_left_alone(tmp_path):
    """A member folder locked by a live process is not treated as interrupted; a locked study folder refuses.

    The live holder is this test's parent process (alive, not us); a dead one is a finished child's pid.
    """
    calls: list = []
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "RUNNING").write_text("being written by someone else")
    (folder / "partial.npy").write_bytes(b"theirs")
    (folder / MANIFEST).write_text(json.dumps(["partial.npy"]))
    (folder / LOCK).write_text(_lock_of(os.getppid()))
    s, lines = study(tmp_path, calls, "demo", "other")
    e = s.entry("demo")
    assert e.status == "busy" and f"pid {os.getppid()}" in e.note and calls == ["other"]
    assert (folder / "partial.npy").read_bytes() == b"theirs" and (folder / "RUNNING").exists()
    assert s.busy == [e] and any("left alone" in ln for ln in lines)
    # the holder is dead: now it is an interrupted member, restarted (its own files cleared)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK).write_text(_lock_of(dead.pid))
    s, _ = study(tmp_path, calls, "demo", "other")
    assert s.entry("demo").status == "done" and not (folder / LOCK).exists()
    assert not (folder / "partial.npy").exists()
    # a second study on a study folder another live process holds (here: our parent, alive) fails at once
    (tmp_path / LOCK).write_text(_lock_of(os.getppid()))
    try:
        with pytest.raises(FolderInUseError, match=rf"in use by pid {os.getppid()} \(started 2026-01-01"):
            study(tmp_path, calls)
        assert calls == ["other", "demo"]  # the refused study ran nothing
    finally:
        (tmp_path / LOCK).unlink()


def test_sigkill_mid_study_then_resume(tmp_path):
    """SIGKILL a study while a member runs: the next study keeps the finished member and restarts the other."""
    code = f"""
        import time
        from dataclasses import dataclass
        from typing import ClassVar
        from actionlab.experiments._registry import Experiment
        from actionlab.runs import RunFolder
        from actionlab.study import run_study

        @dataclass
        class Cfg:
            n: int = 4
            PRESETS: ClassVar[dict] = {{"quick": {{"n": 2}}, "default": {{}}}}

        def fast(config, options):
            RunFolder(options, experiment="a", config=config).finish({{"n": 1}})

        def slow(config, options):
            run = RunFolder(options, experiment="b", config=config)
            run.write_text("half.txt", "half")
            print("ready", flush=True)
            time.sleep(120)

        reg = {{"a": Experiment("a", Cfg, fast, "a"), "b": Experiment("b", Cfg, slow, "b")}}
        run_study({str(tmp_path)!r}, preset="quick", experiments=reg, progress=False, log=lambda s: None)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert folder_state(tmp_path / "a") == "finished" and folder_state(tmp_path / "b") == "running"
    calls: list = []
    reg_names = ("a", "b")
    s, lines = study(tmp_path, calls, *reg_names)
    assert s.entry("a").status == "cached" and s.entry("b").status == "done" and calls == ["b"]
    assert not (tmp_path / "b" / "half.txt").exists() and not (tmp_path / "b" / LOCK).exists()
