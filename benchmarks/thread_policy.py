"""The thread policy on a busy machine, on an idle machine and beside a busy process (a
CPU-burning loop this script starts):

* ``--route continuation`` (default): ``anomaly fit continuation`` with its defaults on a NAB
  probationary period (15 % of a 4,032-step file), with the default policy (one torch thread for
  these small networks) and with ``--threads N`` = every core (torch's own default);
* ``--route images``: ``anomaly fit --data`` (the offline image route: a resnet18 pretrained on
  the images, then its patch bank) on the sample brick set ``anomaly demo --make-data`` writes
  (100 images of 64 px), with the commands' rule (torch's count less the other processes'
  runnable threads, ``anomalib_lite.threads.threads_for_load``) and with ``OMP_NUM_THREADS`` =
  every core (torch's own count whatever the load: the rule before it).

Each configuration runs ``--repeats`` times; the table gives the median wall time of the whole
command (start-up, loading, fit, calibration, saving). Goal: busy / idle <= 2 with the defaults.
Run:  python benchmarks/thread_policy.py [--route continuation|images]
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


def fit_seconds(route: str, threads: int | None, out: Path, images: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if route == "images":
        cmd = [sys.executable, str(REPO / "cli.py"), "fit", "--data", str(images), "-o", str(out), "-q"]
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
    else:
        cmd = [sys.executable, str(REPO / "cli.py"), "fit", "continuation", "--data", DATA, "-o", str(out), "-q"]
        if threads is not None:
            cmd += ["--threads", str(threads)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**env, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--route", choices=["continuation", "images"], default="continuation")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if args.route == "images":
        configs = [("the commands' rule (torch's count less the other runnable threads)", None),
                   (f"OMP_NUM_THREADS={cores} (torch's count whatever the load)", cores)]
    else:
        configs = [("default policy (1 thread)", None), (f"--threads {cores} (torch's default)", cores)]
    results, loads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.anomaly"
        images = Path(tmp) / "data" / "brick" / "train"
        if args.route == "images":
            from anomalib_lite.data import sample_data

            sample_data.make_demo_data(Path(tmp) / "data")
        for busy in (False, True):
            burner = subprocess.Popen([sys.executable, "-c", BURN]) if busy else None
            try:
                if busy:
                    time.sleep(2)  # the burner is running
                loads[busy] = os.getloadavg()
                for name, threads in configs:
                    results[name, busy] = float(np.median([fit_seconds(args.route, threads, out, images)
                                                            for _ in range(args.repeats)]))
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
    what = ("`anomaly fit --data brick/train` (`anomaly demo --make-data`'s 100 images of 64 px; the offline image "
            "route, every default)" if args.route == "images" else
            f"`anomaly fit continuation --data \"{DATA}\"` (605 steps: 545 train, 60 held out; every default: "
            "4 fits, the kept one and 3 that score the training steps out of fold)")
    lines = [
        f"{what}, "
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
    title = ("Thread policy: the offline image route's fit, idle vs busy" if args.route == "images"
             else "Thread policy: fit continuation on a NAB probation period, idle vs busy")
    record.append(title, "\n".join(lines))


if __name__ == "__main__":
    main()
