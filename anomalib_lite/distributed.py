"""Many processes (``torchrun``): the process-group logic, in one place.

Inside a process group of more than one process (``torchrun`` sets ``WORLD_SIZE``; the CLI calls
:func:`init_from_env`; a Python caller may initialise its own group) the rest of the code asks:

* :func:`rank`, :func:`world`, :func:`is_main`: who am I (outside a group: 0, 1, True);
* :func:`shard`: this rank's sample indices ``rank::world`` (what ``data.iter_batches`` reads);
* :func:`gather_rows`: every rank's rows back in input order (scores, maps);
* :func:`all_sum`, :func:`gather_cat`, :func:`broadcast`, :func:`all_gather` (RunningMoments.merged): counts, coreset
  candidates, the reduced bank, running moments;
* :func:`local`: a block run by one rank alone as a single process (rank 0 drawing heatmaps).

Collectives go through gloo for CPU tensors and NCCL for CUDA tensors (the group's backend is
``"cpu:gloo,cuda:nccl"`` where CUDA is present, else ``"gloo"``). Each waits at most
:func:`timeout` seconds (``$ANOMALY_DIST_TIMEOUT``, default 600); when another rank fails or
stops answering, the collective becomes one :class:`DistributedError` line, so no rank hangs.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from contextlib import contextmanager

import numpy as np
import torch

from .errors import AnomalyError, DistributedError

__all__ = [
    "DistributedError", "active", "all_gather", "all_sum", "broadcast", "gather_cat", "gather_rows", "init_from_env", "is_main",
    "local", "rank", "shard", "shutdown", "timeout", "world",
]

DEFAULT_TIMEOUT = 600.0  # seconds a collective waits for the slowest rank (torch's own: 30 min)
_local_depth = 0  # > 0 inside local(): this process acts alone
_owned = False  # whether init_from_env made the group (and shutdown destroys it)


def _dist():
    import torch.distributed as dist

    return dist


def active() -> bool:
    """Whether this process works as one of several (an initialised group of > 1, not in local())."""
    dist = _dist()
    return _local_depth == 0 and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def world() -> int:
    return _dist().get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or no group): the one process that writes files and prints."""
    return rank() == 0


@contextmanager
def local():
    """Run a block as a single process (no sharding, gathering or DDP): rank 0's own work."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def timeout() -> float:
    """Seconds a collective waits: ``$ANOMALY_DIST_TIMEOUT``, default 600."""
    raw = os.environ.get("ANOMALY_DIST_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise AnomalyError(f"ANOMALY_DIST_TIMEOUT={raw!r}: must be a number of seconds > 0")
    return value


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment);
    returns whether a group was made here. CUDA processes use GPU ``LOCAL_RANK``."""
    global _owned
    dist = _dist()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    try:
        dist.init_process_group(backend, timeout=_dt.timedelta(seconds=timeout()))
    except (RuntimeError, ValueError, dist.DistError) as e:
        raise DistributedError(f"distributed: rank {os.environ.get('RANK', '?')} could not join the group "
                               f"({_cause(e)})") from None
    _owned = True
    return True


def shutdown(synchronise: bool = False) -> None:
    """Leave the group made by :func:`init_from_env` (a group the caller made is left alone).
    ``synchronise`` (a command that succeeded): wait for every rank first, so that no rank tears
    its connections down while another still uses them (rank 0 writing the bundle while the others
    have returned: gloo then aborted a rank now and then, "terminate called without an active
    exception"). A rank that failed does not wait; a barrier that fails is not an error here."""
    global _owned
    dist = _dist()
    if _owned and dist.is_initialized():
        if synchronise:
            try:
                dist.barrier()
            except RuntimeError:  # (torch's DistError is one)
                pass
        dist.destroy_process_group()
    _owned = False


def shard(n: int) -> np.ndarray | None:
    """This rank's indices of ``n`` samples (``rank::world``), or None outside a group."""
    if not active():
        return None
    return np.arange(rank(), n, world(), dtype=np.int64)


# ---------------------------------------------------------------- collectives
def _cause(e: BaseException) -> str:
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", s.strip()) for s in str(e).splitlines() if s.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]  # gloo's first line, less its source path


def _device() -> torch.device:
    """Where collective buffers live: CPU (gloo), or the current GPU for an NCCL-only group."""
    backend = str(_dist().get_backend()).lower()
    if "gloo" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def _call(what: str, fn, *args, **kwargs):
    """Run a collective; a peer that failed, left or timed out becomes one DistributedError."""
    dist = _dist()
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistError) as e:
        cause = _cause(e).split(". ")[0]
        why = (f"no answer from another process within {timeout():g} s (ANOMALY_DIST_TIMEOUT)"
               if "time" in cause.lower() else "another process failed or stopped; see its error")
        raise DistributedError(f"distributed: rank {rank()} of {world()}: {what} failed: {why} ({cause})") from None


def collective(what: str, fn, *args, **kwargs):
    """Any torch.distributed call (e.g. DDP's set-up) with :func:`_call`'s one-line failure."""
    return _call(what, fn, *args, **kwargs)


def all_sum(values, what: str = "summing counts") -> list[float]:
    """Element-wise sum over ranks of a list of numbers (float64)."""
    if not active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_device())
    _call(what, _dist().all_reduce, t)
    return t.cpu().tolist()


def all_gather(t: torch.Tensor, what: str) -> list[torch.Tensor]:
    """Every rank's tensor (same number of dimensions; any first dimension; an empty one may
    have any other shape), in rank order."""
    dist, dev = _dist(), _device()
    shape = torch.tensor(list(t.shape), dtype=torch.int64, device=dev)
    shapes = [torch.zeros_like(shape) for _ in range(world())]
    _call(what, dist.all_gather, shapes, shape)
    shapes = [s.tolist() for s in shapes]
    sizes = [s[0] for s in shapes]
    trailing = next((s[1:] for s in shapes if s[0] > 0), list(t.shape[1:]))
    padded = torch.zeros((max(sizes), *trailing), dtype=t.dtype, device=dev)
    if t.shape[0]:
        padded[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    _call(what, dist.all_gather, parts, padded.contiguous())
    return [p[:n].to(t.device) for p, n in zip(parts, sizes)]


def gather_list(t: torch.Tensor, what: str = "gathering rows") -> list[torch.Tensor]:
    """Every rank's tensor, in rank order (``[t]`` outside a group)."""
    return all_gather(t, what) if active() else [t]


def gather_cat(t: torch.Tensor, what: str = "gathering rows") -> torch.Tensor:
    """Every rank's rows concatenated in rank order (``t`` itself outside a group)."""
    return torch.cat(all_gather(t, what)) if active() else t


def gather_rows(values: torch.Tensor, index: torch.Tensor, what: str = "gathering scores") -> torch.Tensor:
    """Every rank's rows ``values`` (n, ...) with their global sample ``index`` (n,), as one
    tensor in index order: the rows a single process would have made, in its order."""
    if not active():
        return values
    vals = torch.cat(all_gather(values, what))
    idx = torch.cat(all_gather(index.to(torch.int64), what))
    return vals[torch.argsort(idx, stable=True)]


def broadcast(t: torch.Tensor, src: int = 0, what: str = "sharing the result") -> torch.Tensor:
    """Rank ``src``'s tensor on every rank (same shape and dtype everywhere)."""
    if not active():
        return t
    buf = t.to(_device()).contiguous()
    _call(what, _dist().broadcast, buf, src)
    return buf.to(t.device)


