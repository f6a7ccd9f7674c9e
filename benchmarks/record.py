"""Shared by the benchmark scripts: describe the machine and append a dated section to
BENCHMARKS.md (command, machine, figures), so every figure quoted has its command beside it."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads{gpu}, Python {platform.python_version()}"
    )


def command() -> str:
    """The command line that ran, quoted so that it can be pasted into a shell."""
    return "python " + shlex.join([os.path.relpath(sys.argv[0], BENCHMARKS_MD.parent), *sys.argv[1:]])


def append(title: str, body: str) -> None:
    """Append a section: title, date, command, machine, then ``body`` (markdown)."""
    date = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = (
        f"\n## {title}\n\n- date: {date}\n- command: `{command()}`\n- machine: {machine()}\n\n"
        f"{body.strip()}\n"
    )
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text(
            "# Benchmarks\n\nEvery figure here was written by a script in `benchmarks/`, with the "
            "command that produced it. Newest sections are at the bottom.\n"
        )
    with BENCHMARKS_MD.open("a") as fh:
        fh.write(text)
    print(text)


def parser(description: str | None = None, busy: str | None = None) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the flags every benchmark shares: ``--no-record``
    (print instead of appending to BENCHMARKS.md) and, with ``busy`` (its help), ``--busy``."""
    ap = argparse.ArgumentParser(description=description)
    if busy:
        ap.add_argument("--busy", action="store_true", help=busy)
    ap.add_argument("--no-record", action="store_true", help="print the section instead of appending it to BENCHMARKS.md")
    return ap


def publish(title: str, body: str, no_record: bool) -> None:
    """``--no-record``: print ``body``; otherwise :func:`append` it to BENCHMARKS.md."""
    if no_record:
        print(body)
    else:
        append(title, body)


@contextmanager
def busy_core():
    """Run the block beside a process that keeps one core busy (timings "under load")."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(2)
        yield
    finally:
        burner.kill()
        burner.wait()
