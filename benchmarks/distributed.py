"""1 vs 2 processes (torchrun, gloo on CPU) for `anomaly fit latent` and `anomaly score` on all
MNIST training and test digits (issue 14): wall time of each command, and whether the scores are
the same.

Each command runs as it would for a user: `python cli.py ...` for one process,
`python -m torch.distributed.run --standalone --nproc-per-node 2 cli.py ...` for two, with
OMP_NUM_THREADS=1 per process (so 2 processes use the 2 cores one process leaves idle). Times
include starting the processes (the torchrun agent, imports: a few seconds each).

Configurations (raw pixels, pooled kNN, k=5; fit holds out 10 % to calibrate):
* ``full``: ``--memory-size 60000``: every training digit is kept (the bank is all 54,000 fitted
  digits either way), so the scores must agree to float precision;
* ``coreset``: the default ``--memory-size 10000``: one process reduces a uniform sample of 40,000
  digits to a 10,000-row greedy coreset; two processes each reduce their 27,000 digits to 10,000
  rows and the gathered 20,000 to 10,000 (composable coresets): another bank, so the scores differ;
  reported: the largest relative difference and the correlation of the two score columns.

Run:  OMP_NUM_THREADS=1 python benchmarks/distributed.py                 (both configurations)
      python benchmarks/distributed.py --configs full --no-record
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"full": ["--memory-size", "60000"], "coreset": []}


def run(args: list[str], procs: int, cwd: Path) -> float:
    """Wall seconds of one CLI command in ``procs`` processes (raises if it fails)."""
    launch = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 "--nproc-per-node", str(procs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    res = subprocess.run([*launch, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode:
        raise SystemExit(f"{' '.join(args[:2])} in {procs} process(es) failed:\n{res.stderr[-3000:]}")
    return seconds


def scores(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == list(range(len(rows))), f"{path}: rows out of order"
    return np.array([float(r["score"]) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="full,coreset")
    ap.add_argument("--train", default="mnist:train")
    ap.add_argument("--test", default="mnist:test")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for name in args.configs.split(","):
            out = {}
            for procs in (1, 2):
                fit = ["fit", "latent", "--data", args.train, "--image-score", "pooled", "--no-maps", "--device", "cpu",
                       "-q", *CONFIGS[name], "-o", f"{name}{procs}.anomaly"]
                t_fit = run(fit, procs, cwd)
                t_score = run(["score", f"{name}{procs}.anomaly", "--data", args.test, "--device", "cpu", "-q",
                               "-o", f"{name}{procs}.csv"], procs, cwd)
                out[procs] = (t_fit, t_score, scores(cwd / f"{name}{procs}.csv"))
                print(f"{name}: {procs} process(es): fit {t_fit:.1f} s, score {t_score:.1f} s", flush=True)
            a, b = out[1][2], out[2][2]
            rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))
            same = "identical" if np.array_equal(a, b) else f"max relative difference {rel:.2g}"
            corr = float(np.corrcoef(a, b)[0, 1])
            for procs in (1, 2):
                t_fit, t_score, _ = out[procs]
                lines.append(f"| {name} | {procs} | {t_fit:.1f} | {t_score:.1f} | "
                             f"{same if procs == 2 else '(reference)'}{f', correlation {corr:.4f}' if procs == 2 and same != 'identical' else ''} |")
        # what starting the processes costs alone (a command that does almost nothing)
        name = args.configs.split(",")[0]
        start = [run(["info", f"{name}1.anomaly"], procs, cwd) for procs in (1, 2)]
    load_after = os.getloadavg()
    body = (
        f"Fit on `{args.train}` (raw pixels, pooled kNN, k=5, 10 % held out to calibrate), score `{args.test}`; "
        "wall seconds per command, process start included; OMP_NUM_THREADS=1 per process; gloo. "
        "Scores compared as written in the CSVs (6 significant digits). "
        f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; after: "
        f"{', '.join(f'{v:.1f}' for v in load_after)}: the machine was shared with other workers, "
        "so these are upper bounds and the speed-up understates what 2 idle cores give.\n\n"
        "| config | processes | fit s | score s | scores vs 1 process |\n| --- | --- | --- | --- | --- |\n"
        + "\n".join(lines)
        + f"\n\nStarting the processes alone (`anomaly info`): {start[0]:.1f} s for 1, {start[1]:.1f} s for 2 (torchrun)."
    )
    if args.no_record:
        print(body)
    else:
        record.append("Many processes: fit latent and score on all MNIST digits, 1 vs 2 processes (torchrun)", body)


if __name__ == "__main__":
    main()
