"""Real process groups on one machine for the tests: gloo on 127.0.0.1, one thread per rank.

A pool of ``MAX_WORLD`` worker processes (torch.multiprocessing, start method *spawn*) joins one
default group through ``tcp://127.0.0.1:<free port>`` and makes the subgroups of the first 1, 2, …,
``MAX_WORLD`` ranks, so that one start-up (≈ 1–2 s per rank) serves every world size of every test.

``run(fn, *args, world_sizes=(1, 2, 3))`` calls ``fn(rank, size, group, *args)`` on the ranks
``0..size-1`` of each world size's group and returns ``{size: [result of rank 0, rank 1, …]}``.
``fn`` and its arguments must be picklable (a function at module level of a test file). An
exception on a rank is re-raised in the test with that rank's traceback; a rank that hangs
(a collective some rank did not join) fails the test after ``timeout`` seconds. After a failure
the pool is torn down and the next ``run`` starts a fresh one.
"""

from __future__ import annotations

import atexit
import os
import queue
import socket
import traceback
from datetime import timedelta

MAX_WORLD = 3
TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, size: int, port: int, tasks, results) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size,
                            timeout=timedelta(seconds=TIMEOUT_S))
    groups = {w: dist.new_group(list(range(w)), timeout=timedelta(seconds=TIMEOUT_S)) for w in range(1, size + 1)}
    results.put(("ready", rank, None, None))
    while True:
        task = tasks.get()
        if task is None:
            break
        tid, fn, args, world_sizes = task
        for w in world_sizes:
            if rank >= w:
                continue
            try:
                out = ("ok", fn(rank, w, groups[w], *args))
            except BaseException:  # noqa: BLE001 - sent to the parent with the traceback
                out = ("error", traceback.format_exc())
            results.put((tid, rank, w, out))
    dist.destroy_process_group()


class Pool:
    """MAX_WORLD ranks in one gloo group, waiting for tasks."""

    def __init__(self, size: int = MAX_WORLD):
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.size = size
        self.tasks = [ctx.Queue() for _ in range(size)]
        self.results = ctx.Queue()
        port = free_port()
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            self.procs = [ctx.Process(target=_worker, args=(r, size, port, self.tasks[r], self.results), daemon=True)
                          for r in range(size)]
            for p in self.procs:
                p.start()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        for _ in range(size):
            self._get()
        self.next_id = 0

    def _get(self):
        try:
            return self.results.get(timeout=TIMEOUT_S)
        except queue.Empty:
            raise TimeoutError(f"no answer from the ranks within {TIMEOUT_S:.0f} s (a collective not joined?)") from None

    def run(self, fn, args, world_sizes) -> dict[int, list]:
        tid = self.next_id = self.next_id + 1
        for q in self.tasks:
            q.put((tid, fn, args, tuple(world_sizes)))
        expected = sum(world_sizes)
        got: dict[int, dict[int, object]] = {w: {} for w in world_sizes}
        errors = []
        for _ in range(expected):
            t, rank, w, (status, value) = self._get()
            assert t == tid, f"answer of task {t} while waiting for task {tid}"
            if status == "error":
                errors.append(f"rank {rank} of world size {w}:\n{value}")
            got[w][rank] = value
        if errors:
            raise RuntimeError("\n".join(errors))
        return {w: [got[w][r] for r in range(w)] for w in world_sizes}

    def close(self) -> None:
        for q in self.tasks:
            try:
                q.put(None)
            except Exception:  # noqa: BLE001
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


_POOL: Pool | None = None


def run(fn, *args, world_sizes=(1, 2, 3)) -> dict[int, list]:
    """``{size: [fn(rank, size, group, *args) for rank in range(size)]}`` over real gloo groups."""
    global _POOL
    if max(world_sizes) > MAX_WORLD:
        raise ValueError(f"world sizes up to {MAX_WORLD}, got {world_sizes}")
    if _POOL is None:
        _POOL = Pool()
    try:
        return _POOL.run(fn, args, world_sizes)
    except BaseException:
        shutdown()
        raise


def shutdown() -> None:
    """Stop the pool (it restarts on the next ``run``)."""
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL = None


atexit.register(shutdown)


def assert_close_scaled(a, b, rtol: float = 1e-12) -> None:
    """|a − b| ≤ rtol · max|b| elementwise (one scale for the whole array: entries that are round-off
    zeros in one process are compared at the scale of the array, not of themselves)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-300)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)
