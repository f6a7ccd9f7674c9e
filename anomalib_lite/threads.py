"""How many intra-op threads torch uses for a detector's work, restored afterwards.

Small networks on the CPU run with one thread by default. A parallel region waits for its
slowest thread, and on a busy machine a thread that is descheduled for a time slice stalls every
step: measured on a 2-core machine at load average 4-7, one forward + backward pass of a 2 x 64
LSTM on 64 windows took 5.3 s with torch's default 2 threads and 0.065 s with 1
(``benchmarks/thread_policy.py`` measures ``anomaly fit continuation`` idle and beside a busy
process). Networks of this size gain little from a second thread even on an idle machine, so one
thread is also the better default there. Large models (``SMALL_MODEL`` parameters or more) keep
torch's own setting. ``threads=N`` on a detector (``--threads N`` on the CLI) overrides the rule.

:func:`torch_threads` applies the choice around a block of work and restores the caller's count
afterwards, so nothing leaks into the rest of a program.

Larger work (image backbones, pretraining) gains from every core on an idle machine but suffers
the same stall beside other busy processes: the offline image route's ``anomaly fit`` on the
sample brick set took 33 s idle, and beside one CPU-burning process 103.8 s with torch's 2
threads against 45.3 s with this rule's 1 (``benchmarks/thread_policy.py --route images``). So the commands
(:mod:`anomalib_lite.app.workflows`) run their torch work with :func:`threads_for_load`: torch's
count, less the threads of other processes that are runnable when the command starts (read from
``/proc`` on Linux; elsewhere torch's count). ``OMP_NUM_THREADS`` set by the user or a launcher
(torchrun sets it) is left as it is.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import AnomalyError

__all__ = ["SMALL_MODEL", "choose_threads", "other_runnable", "threads_for_load", "torch_threads"]

#: networks with fewer parameters than this run with one intra-op thread on the CPU by default
SMALL_MODEL = 1_000_000


def choose_threads(threads: int | None, n_params: int, device: torch.device | str = "cpu") -> tuple[int, str]:
    """The thread count for a model of ``n_params`` parameters, and why (for verbose logs)."""
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise AnomalyError(f"threads={threads!r}: must be an integer >= 1 (or None for the default rule)")
        return threads, "threads given"
    if torch.device(device).type != "cpu":
        return torch.get_num_threads(), "the model runs on an accelerator"
    if n_params < SMALL_MODEL:
        return 1, "a small network on the CPU; threads=N to change"
    return torch.get_num_threads(), f"a large network (about {n_params:,} parameters): torch's default"


def _runnable(stat: str) -> int:
    """``procs_running`` of a ``/proc/stat`` text: the runnable threads of the whole machine."""
    return next(int(line.split()[1]) for line in stat.splitlines() if line.startswith("procs_running"))


def _own_runnable() -> int:
    """This process's runnable threads (``/proc/self/task/*/stat``: the state after the name)."""
    n = 0
    for task in os.scandir("/proc/self/task"):
        try:
            with open(os.path.join(task.path, "stat")) as fh:
                text = fh.read()
        except OSError:  # the thread ended meanwhile
            continue
        n += text[text.rindex(")") + 2 : text.rindex(")") + 3] == "R"
    return n


def other_runnable(samples: int = 5, gap: float = 0.02) -> int | None:
    """How many threads of other processes are runnable, the median of ``samples`` reads ``gap``
    seconds apart (a brief burst does not count); None where ``/proc`` cannot be read."""
    counts = []
    try:
        for i in range(samples):
            if i:
                time.sleep(gap)
            with open("/proc/stat") as fh:
                counts.append(max(0, _runnable(fh.read()) - _own_runnable()))
    except (OSError, StopIteration, ValueError):
        return None
    return int(statistics.median_low(counts))


def threads_for_load() -> tuple[int, str]:
    """Torch's thread count less the other processes' runnable threads (at least 1), and why."""
    n = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        return n, "OMP_NUM_THREADS is set"
    others = other_runnable()
    if not others:
        return n, "torch's default" if others == 0 else "torch's default (no /proc to read the load from)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    free = max(1, min(n, cores - others))
    if free == n:
        return n, f"torch's default ({others} other runnable thread{'s' if others != 1 else ''}, {cores} cores)"
    return free, (f"{others} other runnable thread{'s' if others != 1 else ''} on {cores} cores: "
                  "a parallel step would wait for a descheduled thread")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the caller's count."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def log_choice(name: str, n: int, why: str) -> None:
    """One line on stderr saying how many threads a detector uses and why (verbose mode)."""
    print(f"anomalib_lite: {name}: {n} torch thread{'s' if n != 1 else ''} ({why})", file=sys.stderr)
