"""The thread policy on a busy machine: ``anomaly fit continuation`` with its defaults on a NAB
probationary period (15 % of a 4,032-step file), on an idle machine and beside a busy process
(a CPU-burning loop this script starts), with the default policy (one torch thread for these
small networks) and with ``--threads N`` = every core (torch's own default).

Each configuration runs ``--repeats`` times; the table gives the median wall time of the whole
command (start-up, loading, fit, calibration, saving). Goal: busy / idle <= 2 with the defaults.
Run:  python benchmarks/thread_policy.py
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record

REPO = Path(__file__).resolve().parents[1]
DATA = "nab:realKnownCause/ec2_request_latency_system_failure.csv?stop=0.15"
BURN = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def fit_seconds(threads: int | None, out: Path) -> float:
    cmd = [sys.executable, str(REPO / "cli.py"), "fit", "continuation", "--data", DATA, "-o", str(out), "-q"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    configs = [("default policy (1 thread)", None), (f"--threads {cores} (torch's default)", cores)]
    results, loads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.anomaly"
        for busy in (False, True):
            burner = subprocess.Popen([sys.executable, "-c", BURN]) if busy else None
            try:
                if busy:
                    time.sleep(2)  # the burner is running
                loads[busy] = os.getloadavg()
                for name, threads in configs:
                    results[name, busy] = float(np.median([fit_seconds(threads, out) for _ in range(args.repeats)]))
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
    lines = [
        f"`anomaly fit continuation --data \"{DATA}\"` (605 steps: 545 train, 60 calibrate; every default), "
        f"median of {args.repeats} runs, wall seconds of the whole command. Busy: one CPU-burning Python loop "
        f"started by the script beside it. Load average (1/5/15 min) at the start of the idle runs: "
        + "/".join(f"{v:.1f}" for v in loads[False]) + ", of the busy runs: " + "/".join(f"{v:.1f}" for v in loads[True])
        + f" ({cores} cores; other engineers' jobs share them).",
        "",
        "| threads | idle (s) | busy (s) | busy / idle |",
        "| --- | --- | --- | --- |",
    ]
    for name, _ in configs:
        idle, busy = results[name, False], results[name, True]
        lines.append(f"| {name} | {idle:.1f} | {busy:.1f} | {busy / idle:.2f} |")
    record.append("Thread policy: fit continuation on a NAB probation period, idle vs busy", "\n".join(lines))


if __name__ == "__main__":
    main()
