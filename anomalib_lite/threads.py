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
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import AnomalyError

__all__ = ["SMALL_MODEL", "choose_threads", "torch_threads"]

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
