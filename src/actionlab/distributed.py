"""The one rule for reductions over data, and the communication primitives behind it.

**The rule.** A public function that sums or averages over data points takes a
keyword ``group=``: a ``torch.distributed`` ProcessGroup, or ``None`` (the
default) for this process alone. With a group every rank passes its own shard
of the data and every rank gets the result over the union of all shards, the
shards taken in rank order (rank 0's points first). Shards may be uneven; each
rank holds at least one point. The math modules communicate only through this
module.

**Exactness.** A sum over ranks is added in a different order than the
one-process sum, so float64 results agree to round-off (≈ 1e-15 relative per
operation; the tests ask for 1e-12), not bit for bit. Every rank receives the
same bits: an all-reduce computes each entry once and sends it to all (gloo's
and NCCL's ring algorithms), a gather only copies.

**Sharding.** :func:`shard` gives rank r of W the contiguous slice of n indices
with ``n // W + 1`` points on the first ``n % W`` ranks and ``n // W`` on the
others (the rule of ``numpy.array_split``), so the concatenation of the shards
in rank order is the data in its original order.

**Backends.** gloo for CPU tensors, NCCL for CUDA tensors (:func:`backend_for`);
a group whose backend cannot handle a tensor's device is refused with the fix
(:func:`check_device`). Groups made by ``torchrun`` (:func:`init_from_env`),
Lightning Fabric, accelerate or Ray Train are ordinary ProcessGroups: pass
theirs, or ``torch.distributed.group.WORLD`` for the default one.

Communication does not carry gradients: every primitive works on detached tensors.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import torch

from actionlab._checks import ShapeError, ValueCheckError

__all__ = [
    "world",
    "is_rank0",
    "is_distributed",
    "backend",
    "backend_for",
    "describe",
    "check_device",
    "comm_device",
    "init_from_env",
    "shard",
    "shard_sizes",
    "all_reduce_sum",
    "all_reduce_max",
    "all_gather_varlen",
    "each_rank",
    "broadcast",
    "broadcast_object",
    "check_same",
    "raise_together",
    "all_sizes",
    "rank0_drives",
]


def _dist():
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueCheckError("this torch build has no torch.distributed; pass group=None (one process)")
    return dist


def _check_group(group) -> None:
    dist = _dist()
    if not dist.is_initialized():
        raise ValueCheckError(
            "group= was given but torch.distributed is not initialised; call "
            "actionlab.distributed.init_from_env() under torchrun (or torch.distributed.init_process_group), "
            "or pass group=None for one process"
        )
    if not isinstance(group, dist.ProcessGroup):
        raise ValueCheckError(
            f"group must be a torch.distributed ProcessGroup or None, got {type(group).__name__}; "
            f"pass torch.distributed.group.WORLD for the default group"
        )
    if dist.get_rank(group) < 0:
        raise ValueCheckError("this process is not a member of the group it passed; pass a group it belongs to")


def world(group=None) -> tuple[int, int]:
    """(rank of this process in ``group``, size of ``group``); (0, 1) for ``group=None``."""
    if group is None:
        return 0, 1
    _check_group(group)
    dist = _dist()
    return int(dist.get_rank(group)), int(dist.get_world_size(group))


def is_rank0(group=None) -> bool:
    """True on the group's rank 0 (and always for ``group=None``): the rank that writes files."""
    return world(group)[0] == 0


def is_distributed(group=None) -> bool:
    """True when ``group`` has more than one rank (communication will happen)."""
    return world(group)[1] > 1


def backend(group=None) -> str | None:
    """The group's backend name (``"gloo"``, ``"nccl"``, ``"cpu:gloo,cuda:nccl"``, …); None for ``group=None``."""
    if group is None:
        return None
    _check_group(group)
    return str(_dist().get_backend(group)).lower()


def backend_for(device: torch.device | str | None = None) -> str:
    """The backend for tensors on ``device``: ``"nccl"`` for CUDA, ``"gloo"`` otherwise (CPU)."""
    dev = torch.device("cpu" if device is None else device)
    return "nccl" if dev.type == "cuda" else "gloo"


def describe(group=None) -> dict:
    """``{"world_size", "rank", "backend"}`` of a group, for provenance (``backend`` None for one process)."""
    rank, size = world(group)
    return {"world_size": size, "rank": rank, "backend": backend(group)}


_DEVICES = {"gloo": {"cpu"}, "mpi": {"cpu"}, "nccl": {"cuda"}, "xccl": {"xpu"}, "ucc": {"cpu", "cuda"}}


def _backend_devices(name: str) -> set[str] | None:
    if ":" in name:  # "cpu:gloo,cuda:nccl": a device → backend map
        return {part.split(":")[0].strip() for part in name.split(",")}
    return _DEVICES.get(name)  # unknown (custom) backends: not checked


def check_device(tensor: torch.Tensor, group, name: str = "the tensor") -> None:
    """Refuse a tensor whose device the group's backend cannot communicate (gloo + CUDA, NCCL + CPU, …)."""
    if group is None:
        return
    be = backend(group)
    devices = _backend_devices(be)
    dev = tensor.device.type
    if devices is not None and dev not in devices:
        raise ValueCheckError(
            f"{name} is on {dev} but the group's backend {be!r} communicates {'/'.join(sorted(devices))} tensors; "
            f"create the group with backend={backend_for(tensor.device)!r} "
            f"(actionlab.distributed.backend_for(device)) or move the model and data to {'/'.join(sorted(devices))}"
        )


def comm_device(group) -> torch.device:
    """The device on which small bookkeeping tensors travel: the current CUDA device for NCCL, else CPU."""
    be = backend(group) or "gloo"
    devices = _backend_devices(be)
    if devices is not None and "cpu" not in devices and "cuda" in devices:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_from_env(device: torch.device | str | None = None, timeout_s: float | None = None):
    """Initialise the default process group from torchrun's environment; return it, or None when not launched so.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (and ``LOCAL_RANK`` for the CUDA
    device of this process). Without ``RANK`` and ``WORLD_SIZE`` it does nothing and returns None
    (one process: pass ``group=None``). The backend is :func:`backend_for` ``(device)``. When the
    default group already exists (made by a framework) it is returned as it is.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    dist = _dist()
    if dist.is_initialized():
        return dist.group.WORLD
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueCheckError(
            f"RANK and WORLD_SIZE are set but {', '.join(missing)} is not; launch with torchrun, which sets "
            f"all four, or export MASTER_ADDR (the host of rank 0) and MASTER_PORT (a free port)"
        )
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", dev.index or 0)))
    kw = {} if timeout_s is None else {"timeout": timedelta(seconds=float(timeout_s))}
    dist.init_process_group(backend=backend_for(dev), init_method="env://", **kw)
    return dist.group.WORLD


def shard_sizes(n: int, size: int) -> list[int]:
    """The shard sizes of n points over ``size`` ranks: n // size + 1 on the first n % size ranks, n // size after."""
    if int(n) < 0 or int(size) < 1:
        raise ValueCheckError(f"need n ≥ 0 points and ≥ 1 rank, got n={n}, size={size}")
    q, r = divmod(int(n), int(size))
    return [q + (1 if i < r else 0) for i in range(int(size))]


def shard(n: int, group=None) -> slice:
    """The contiguous slice of ``range(n)`` this rank holds (:func:`shard_sizes`; all of it for ``group=None``)."""
    rank, size = world(group)
    sizes = shard_sizes(n, size)
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _number(x, group) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x), dtype=torch.float64, device=comm_device(group)), True
    raise ValueCheckError(f"expected a tensor or a number, got {type(x).__name__}")


def _reduce(x, group, op_name: str):
    t, scalar = _number(x, group)
    if group is None or world(group)[1] == 1:
        return x if not scalar else float(t)
    check_device(t, group)
    dist = _dist()
    out = t.detach().clone(memory_format=torch.contiguous_format)
    dist.all_reduce(out, op=getattr(dist.ReduceOp, op_name), group=group)
    return float(out) if scalar else out


def all_reduce_sum(x, group=None):
    """Σ over the ranks of ``x`` (a tensor, returned as a new tensor, or a number, returned as a float).

    ``group=None`` or a group of one returns ``x`` itself. Every rank receives the same bits.
    """
    return _reduce(x, group, "SUM")


def all_reduce_max(x, group=None):
    """The elementwise maximum over the ranks of ``x`` (tensor or number), as :func:`all_reduce_sum`."""
    return _reduce(x, group, "MAX")


_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool, torch.complex128, torch.complex64]
_MAX_DIM = 8


def _header(t: torch.Tensor) -> list[int]:
    if t.dim() < 1 or t.dim() > _MAX_DIM:
        raise ShapeError(f"gathering needs a tensor of 1..{_MAX_DIM} dimensions, got shape {tuple(t.shape)}")
    if t.dtype not in _DTYPES:
        raise ValueCheckError(f"cannot gather dtype {t.dtype}")
    return [_DTYPES.index(t.dtype), t.dim(), *t.shape, *([-1] * (_MAX_DIM - t.dim()))]


def _gather_headers(tensors: Sequence[torch.Tensor], group) -> list[list[list[int]]]:
    """heads[r][i] = [dtype index, ndim, *shape] of tensor i on rank r; the same on every rank."""
    dist = _dist()
    size = world(group)[1]
    mine = torch.tensor([_header(t) for t in tensors], dtype=torch.int64, device=comm_device(group))
    out = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(out, mine, group=group)
    heads = [[row[: 2 + row[1]] for row in o.tolist()] for o in out]
    for i in range(len(tensors)):
        ref = heads[0][i]
        for r in range(size):
            h = heads[r][i]
            if h[0] != ref[0] or h[1] != ref[1] or h[3:] != ref[3:]:
                raise ShapeError(
                    f"tensor {i} differs between ranks beyond its first dimension: rank 0 has dtype "
                    f"{_DTYPES[ref[0]]}, shape {tuple(ref[2:])}; rank {r} has dtype {_DTYPES[h[0]]}, shape "
                    f"{tuple(h[2:])} — every rank must pass the same model and features"
                )
    return heads


def all_gather_varlen(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (first dimensions may differ), as a list in rank order, on every rank.

    Gathers the shapes first, pads each tensor to the longest first dimension, gathers, trims.
    ``group=None`` returns ``[tensor]``. Concatenate with ``torch.cat(..., dim=0)`` for the union.
    """
    if group is None or world(group)[1] == 1:
        return [tensor]
    check_device(tensor, group)
    dist = _dist()
    heads = _gather_headers([tensor], group)
    lengths = [h[0][2] for h in heads]
    n = max(lengths)
    t = tensor.detach().contiguous()
    pad = torch.zeros((n - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    t = torch.cat([t, pad]) if pad.shape[0] else t
    out = [torch.empty_like(t) for _ in lengths]
    dist.all_gather(out, t, group=group)
    return [o[:m] for o, m in zip(out, lengths)]


def _global_rank(group, rank: int) -> int:
    return int(_dist().get_global_rank(group, rank))


def broadcast(tensor: torch.Tensor, group=None, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s tensor on every rank; the receivers pass a tensor of the same shape and dtype (overwritten copy)."""
    if group is None or world(group)[1] == 1:
        return tensor
    check_device(tensor, group)
    out = tensor.detach().clone(memory_format=torch.contiguous_format)
    _dist().broadcast(out, src=_global_rank(group, src), group=group)
    return out


def broadcast_object(obj: Any, group=None, src: int = 0) -> Any:
    """Rank ``src``'s picklable object on every rank (the others' ``obj`` is ignored); ``obj`` for ``group=None``."""
    if group is None or world(group)[1] == 1:
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=_global_rank(group, src), group=group, device=comm_device(group))
    return box[0]


def each_rank(tensors: Sequence[torch.Tensor], group=None) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
    """Yield ``(rank, offset, tensors of that rank)`` for every rank in turn, on every rank.

    Each rank broadcasts its tensors when its turn comes, so a rank holds one other rank's
    block at a time (peak memory: the largest shard's, not the union's); ``offset`` is the
    position of that rank's first point in the union (the sum of the earlier first dimensions).
    Every rank must consume the whole iterator (it is a sequence of collectives).
    """
    tensors = list(tensors)
    if group is None or world(group)[1] == 1:
        yield 0, 0, tensors
        return
    for t in tensors:
        check_device(t, group)
    rank, size = world(group)
    heads = _gather_headers(tensors, group)
    offset = 0
    for r in range(size):
        got = []
        for i, t in enumerate(tensors):
            shape = heads[r][i][2:]
            buf = t.detach().contiguous() if r == rank else torch.empty(shape, dtype=t.dtype, device=t.device)
            _dist().broadcast(buf, src=_global_rank(group, r), group=group)
            got.append(buf)
        yield r, offset, got
        offset += heads[r][0][2]


def check_same(tensor: torch.Tensor, group, name: str) -> None:
    """Raise on every rank (not only the odd one) if ``tensor`` differs from rank 0's, e.g. the model's parameters."""
    if group is None or world(group)[1] == 1:
        return
    ref = broadcast(tensor, group, 0)
    bad = 0.0 if torch.equal(ref, tensor) else 1.0
    if all_reduce_max(bad, group) > 0:
        raise ValueCheckError(
            f"{name} differ between the ranks of the group; load the same state on every rank "
            f"(e.g. the same seed, or broadcast rank 0's state_dict) before the call"
        )


def raise_together(error: Exception | None, group) -> None:
    """Raise on every rank when any rank's local validation failed (``error`` not None there).

    A check that fails on one rank only would leave the others waiting in the next collective;
    every rank calls this after its local checks instead. The first failing rank's exception is
    raised there as it is and on the others as the same class with "rank r: " before its message.
    """
    if group is None or world(group)[1] == 1:
        if error is not None:
            raise error
        return
    rank = world(group)[0]
    flags = all_gather_varlen(torch.tensor([0 if error is None else 1], device=comm_device(group)), group)
    bad = [r for r, f in enumerate(flags) if int(f[0])]
    if not bad:
        return
    msg = broadcast_object(None if error is None else (type(error), str(error)), group, bad[0])
    if rank == bad[0]:
        raise error
    cls, text = msg
    try:
        exc = cls(f"rank {bad[0]}: {text}")
    except Exception:  # noqa: BLE001 - an exception class with a different signature
        exc = ValueCheckError(f"rank {bad[0]}: {cls.__name__}: {text}")
    raise exc


def all_sizes(n: int, group=None) -> list[int]:
    """Every rank's local count ``n`` (e.g. its number of data points), in rank order, on every rank."""
    if group is None or world(group)[1] == 1:
        return [int(n)]
    t = torch.tensor([int(n)], dtype=torch.int64, device=comm_device(group))
    return [int(s[0]) for s in all_gather_varlen(t, group)]


_STOP = -1


def rank0_drives(fn: Callable[[Callable], Any], serve: Callable[[int, torch.Tensor | None], Any], group,
                 dtype: torch.dtype, device: torch.device) -> Any:
    """Run ``fn`` on rank 0 only while the other ranks serve its collective requests; return its result everywhere.

    ``fn(call)`` may call ``call(cmd, V)`` (``cmd`` ≥ 0 an integer, ``V`` a 2-D tensor of ``dtype`` or
    None) any number of times: each call broadcasts (cmd, V) from rank 0 and runs
    ``serve(cmd, V)`` on every rank at once, returning rank 0's value. The other ranks loop on the
    requests until rank 0's ``fn`` returns; its result (or its exception) is then broadcast, so
    every rank returns the same object (or raises). This keeps iterative solvers (ARPACK,
    Lanczos) that are not bitwise reproducible across machines in step: only rank 0 iterates.
    """
    if group is None or world(group)[1] == 1:
        return fn(serve)
    dist = _dist()
    rank = world(group)[0]
    src = _global_rank(group, 0)
    cdev = comm_device(group)

    def send_header(cmd: int, shape: tuple[int, int]) -> None:
        dist.broadcast(torch.tensor([cmd, *shape], dtype=torch.int64, device=cdev), src=src, group=group)

    if rank == 0:
        def call(cmd: int, V: torch.Tensor | None):
            if V is None:
                send_header(int(cmd), (-1, -1))
            else:
                if V.dim() != 2:
                    raise ShapeError(f"requests carry 2-D blocks, got shape {tuple(V.shape)}")
                V = V.detach().to(dtype=dtype, device=device).contiguous()
                send_header(int(cmd), tuple(V.shape))
                dist.broadcast(V, src=src, group=group)
            return serve(int(cmd), V)

        try:
            out = ("ok", fn(call))
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            out = ("error", exc)
        send_header(_STOP, (-1, -1))
        try:
            pickle.dumps(out)
        except Exception:  # noqa: BLE001 - an unpicklable result or exception
            out = ("error", RuntimeError(f"rank 0's result could not be sent: {out[1]!r}"))
        status, value = broadcast_object(out, group, 0)
        if status == "error":
            raise value
        return value
    while True:
        head = torch.empty(3, dtype=torch.int64, device=cdev)
        dist.broadcast(head, src=src, group=group)
        cmd, rows, cols = head.tolist()
        if cmd == _STOP:
            break
        V = None
        if rows >= 0:
            V = torch.empty(rows, cols, dtype=dtype, device=device)
            dist.broadcast(V, src=src, group=group)
        serve(cmd, V)
    status, value = broadcast_object(None, group, 0)
    if status == "error":
        raise value
    return value
