"""Fault injection, run folders (issue 15 items 3 and 8): atomic writes, the folder lock, failed commands.

Subprocesses only where a second process is the point (a live holder of a lock, a SIGKILL mid-write);
everything else runs in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from actionlab.runs import (
    FAILED,
    LOCK,
    MANIFEST,
    RUNNING,
    Claim,
    FolderInUseError,
    RunFolder,
    acquire_lock,
    atomic_write_text,
    clear_run_files,
    folder_state,
    lock_holder,
    mark_failed,
    read_results,
)


def _python(code: str) -> subprocess.Popen:
    """A child python running ``code``; it prints 'ready' once set up."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def holder_code():
    return """
        import time
        from actionlab.runs import RunFolder
        run = RunFolder({folder!r}, experiment="holder")
        print("ready", flush=True)
        time.sleep(120)
    """


def test_atomic_write_leaves_old_or_new_and_no_temp(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, json.dumps({"v": 1}))
    atomic_write_text(target, json.dumps({"v": 2}))
    assert json.loads(target.read_text()) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_sigkill_mid_write_never_leaves_a_partial_file(tmp_path):
    """A child rewrites a 1 MB results.json in a loop while this process reads it; then SIGKILL mid-loop.

    Every read, and the file after the kill, parses completely.
    """
    target = tmp_path / "results.json"
    code = f"""
        import json
        from actionlab.runs import atomic_write_text
        big = [list(range(1000))] * 150
        atomic_write_text({str(target)!r}, json.dumps({{"i": -1, "x": big}}))
        print("ready", flush=True)
        i = 0
        while True:
            atomic_write_text({str(target)!r}, json.dumps({{"i": i, "x": big}}))
            i += 1
    """
    proc = _python(code)
    try:
        _wait_ready(proc)
        seen = set()
        t_end = time.perf_counter() + 1.0
        while time.perf_counter() < t_end:
            data = json.loads(target.read_text())  # a concurrent reader never sees half a file
            assert len(data["x"]) == 150
            seen.add(data["i"])
    finally:
        _kill(proc)
    assert len(seen) > 1  # the child really was rewriting it
    assert len(json.loads(target.read_text())["x"]) == 150  # nor does a kill mid-write
    # a temporary file the kill left is cleared when a RunFolder opens the folder
    RunFolder(tmp_path, experiment="after-kill").finish({"ok": True})
    assert not list(tmp_path.glob(".*.tmp"))


def test_second_writer_fails_at_once_naming_the_holder(tmp_path, holder_code):
    folder = tmp_path / "run"
    proc = _python(holder_code.format(folder=str(folder)))
    try:
        _wait_ready(proc)
        t0 = time.perf_counter()
        with pytest.raises(FolderInUseError, match=rf"in use by pid {proc.pid} \(started .*\); wait for it or choose another --out"):
            RunFolder(folder, experiment="second")
        assert time.perf_counter() - t0 < 2.0  # at once, no waiting
        assert lock_holder(folder).pid == proc.pid
        # a failure elsewhere must not mark the live holder's folder failed
        assert mark_failed(folder, "boom") is None
        assert folder_state(folder) == "running" and not (folder / FAILED).exists()
    finally:
        _kill(proc)
    # the holder is gone: its lock is stale, taken over with a note
    assert lock_holder(folder) is None
    run = RunFolder(folder, experiment="third")
    assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    run.finish({"x": 1})
    assert not (folder / LOCK).exists() and folder_state(folder) == "finished"


def test_stale_lock_note_and_pid_reuse(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    # a dead pid
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / LOCK).write_text(json.dumps({"pid": dead.pid, "hostname": os.uname().nodename, "started": "2020-01-01",
                                           "proc_start": 1}))
    lock = acquire_lock(folder)
    assert "taking over the stale lock" in capsys.readouterr().err
    lock.release()
    assert not (folder / LOCK).exists()
    # a live pid whose start time differs: the pid was reused by another process -> stale
    (folder / LOCK).write_text(json.dumps({"pid": os.getppid(), "hostname": os.uname().nodename,
                                           "started": "2020-01-01", "proc_start": 1}))
    assert lock_holder(folder) is None
    acquire_lock(folder).release()
    # an unreadable lock: in use while fresh, stale once old
    (folder / LOCK).write_bytes(b"\xff\xfe garbage")
    assert lock_holder(folder) is not None
    old = time.time() - 60
    os.utime(folder / LOCK, (old, old))
    assert lock_holder(folder) is None
    acquire_lock(folder).release()


def test_lock_is_reentrant_in_one_process(tmp_path):
    outer = acquire_lock(tmp_path)
    assert outer is not None and acquire_lock(tmp_path) is None  # the inner holder does not own it
    run = RunFolder(tmp_path, experiment="inner")
    run.finish({"x": 1})
    assert (tmp_path / LOCK).exists()  # still the outer holder's
    outer.release()
    assert not (tmp_path / LOCK).exists()


def test_run_folder_manifest_and_clear(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = RunFolder(tmp_path, experiment="m")
    run.write_text("notes.md", "hello")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    run.save_figure(fig, "curve")
    run.add_claim(Claim("001", "x", verdict="holds"))
    run.finish({"a": 1}, "# s\n")
    (tmp_path / "precious.txt").write_text("user data")
    assert set(json.loads((tmp_path / MANIFEST).read_text())) >= {"notes.md", "curve.png", "results.json"}
    removed = clear_run_files(tmp_path)
    assert set(removed) >= {"notes.md", "curve.png", "results.json", "summary.md", "provenance.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]
    with pytest.raises(ValueError, match="plain file name"):
        RunFolder(tmp_path, experiment="m").save_figure(plt.figure(), "../escape")


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"claims": []}', "no config"),
    (b'{"config": {}}', "no claims"),
    (b'{"config": {}, "claims": [1]}', "no claims"),
    (b'{"config": {}, "claims": [], "provenance": 3}', "provenance"),
])
def test_read_results_says_what_is_wrong(tmp_path, content, problem):
    (tmp_path / "results.json").write_bytes(content)
    data, why = read_results(tmp_path)
    assert data is None and problem in why


def test_mark_failed_on_a_file_or_missing_folder(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    assert mark_failed(f, "boom", create=True) is None and f.read_text() == "x"
    assert mark_failed(tmp_path / "missing", "boom") is None and not (tmp_path / "missing").exists()


def test_failed_run_leaves_failed_marker_not_running_and_releases_the_lock(tmp_path):
    run = RunFolder(tmp_path, experiment="x")
    assert (tmp_path / RUNNING).exists() and (tmp_path / LOCK).exists()
    mark_failed(tmp_path, "Traceback: boom", command="actionlab x")
    assert folder_state(tmp_path) == "failed" and not (tmp_path / RUNNING).exists()
    assert not (tmp_path / LOCK).exists()
    assert "boom" in (tmp_path / FAILED).read_text()
    del run
