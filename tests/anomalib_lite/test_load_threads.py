"""The commands' thread rule on a busy machine: torch's count less the other processes' runnable
threads, read as a command starts; OMP_NUM_THREADS respected; the caller's count restored."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_lite import threads
from anomalib_lite.app import workflows

LINUX = Path("/proc/stat").is_file() and Path("/proc/self/task").is_dir()


def test_runnable_count_is_read_from_proc_stat():
    text = "cpu  1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 0\n"
    assert threads._runnable(text) == 3
    with pytest.raises(StopIteration):
        threads._runnable("cpu 1 2 3\n")


@pytest.mark.parametrize("others, cores, expected", [(0, 2, 2), (1, 2, 1), (5, 2, 1), (1, 8, 2), (None, 2, 2)])
def test_threads_left_by_other_runnable_threads(two_threads, monkeypatch, others, cores, expected):
    monkeypatch.setattr(threads, "other_runnable", lambda: others)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    n, why = threads.threads_for_load()
    assert n == expected
    assert ("descheduled" in why) == (expected < 2)


def test_omp_num_threads_is_left_as_set(two_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(threads, "other_runnable", lambda: 7)
    assert threads.threads_for_load() == (2, "OMP_NUM_THREADS is set")


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_a_busy_process_is_seen():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert threads.other_runnable() >= 1
    finally:
        burner.kill()
        burner.wait()


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_own_threads_do_not_count():
    """This process's threads, busy in a parallel torch op, are not 'other' processes."""
    assert threads._own_runnable() >= 1  # the reading thread itself is running
    assert threads.other_runnable() is not None


def test_commands_run_under_the_rule_and_restore_the_callers_count(two_threads, monkeypatch, tmp_path):
    import anomalib_lite as al

    monkeypatch.setattr(threads, "threads_for_load", lambda: (1, "test"))
    seen, real_fit = [], al.LatentDistance.fit

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(al.LatentDistance, "fit", spy)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 1, 8, 8)).astype("float32"))
    workflows.fit_and_save(al.LatentDistance(device="cpu"), str(tmp_path / "x.npy"), tmp_path / "m.anomaly", device="cpu")
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2
    assert (tmp_path / "m.anomaly").is_file()


@pytest.mark.parametrize("name", ["fit_and_save", "score_and_write", "evaluate_and_write", "stream", "pretrain_and_save", "demo"])
def test_every_command_that_computes_is_under_the_rule(name):
    assert getattr(getattr(workflows, name), "__wrapped__", None) is not None
