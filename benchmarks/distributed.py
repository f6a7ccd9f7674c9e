"""1 vs 2 processes (torchrun, gloo on CPU) for `anomaly fit latent` and `anomaly score` on all
MNIST training and test digits (issue 14): wall time of each command, and whether the scores are
the same.

Each command runs as it would for a user: `python cli.py ...` for one process,
`python -m torch.distributed.run --standalone --nproc-per-node 2 cli.py ...` for two, with
OMP_NUM_THREADS=1 per process (so 2 processes use the 2 cores one process leaves idle). Times
include starting the processes (the torchrun agent, imports: a few seconds each).

Configurations (raw pixels, kNN; fit holds out 10 % to calibrate):
* ``full``: all digits, pooled (k=5), ``--memory-size 60000``: every training digit is kept (the
  bank is all 54,000 fitted digits either way), so the scores must agree to float precision;
* ``coreset``: all digits, pooled, the default ``--memory-size 10000``: a sample of 40,000
  candidate digits keyed by their global index (issue 20: the same candidates whatever the world
  size), reduced once to a 10,000-row greedy coreset: the scores must agree as for ``full``
  (before issue 20 two processes composed per-process coresets: another bank);
* ``patch7``: PatchCore's way on one digit (the defaults: patch scores, ``coreset_ratio`` 0.1 of
  1.1 M patches, capped at 10,000 rows), fitted on the 7s, scored on all test digits: ROC-AUC
  (7 = normal) and the scores of 2 processes against 1.

Run:  OMP_NUM_THREADS=1 python benchmarks/distributed.py                 (both configurations)
      python benchmarks/distributed.py --configs full --no-record
"""
from __future__ import annotations

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
POOLED = ["--image-score", "pooled", "--no-maps"]
CONFIGS = {"full": ("mnist:train", [*POOLED, "--memory-size", "60000"]), "coreset": ("mnist:train", POOLED),
           "patch7": ("mnist:train?classes=7", [])}


def run(args: list[str], procs: int, cwd: Path) -> float:
    """Wall seconds of one CLI command in ``procs`` processes (raises if it fails)."""
    launch = [sys.executable] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    start = time.perf_counter()
    res = subprocess.run([*launch, str(REPO / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if res.returncode:
        raise SystemExit(f"{' '.join(args[:2])} in {procs} process(es) failed:\n{res.stderr[-3000:]}")
    return seconds


def scores(path: Path) -> tuple[np.ndarray, float | None]:
    """The scores column (rows checked to be in input order) and its ROC-AUC where labels vary."""
    from sklearn.metrics import roc_auc_score

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == list(range(len(rows))), f"{path}: rows out of order"
    s = np.array([float(r["score"]) for r in rows])
    y = np.array([int(r["label"]) for r in rows]) if rows and "label" in rows[0] else None
    return s, (roc_auc_score(y, s) if y is not None and 0 < y.sum() < len(y) else None)


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="full,coreset,patch7")
    ap.add_argument("--limit", type=int, default=None, help="Only the first N digits of each set (a quick try).")
    args = ap.parse_args()
    load_before = os.getloadavg()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        def cut(spec: str) -> str:
            return spec if args.limit is None else f"{spec}{'&' if '?' in spec else '?'}limit={args.limit}"

        test = cut("mnist:test")
        for name in args.configs.split(","):
            train, extra = CONFIGS[name]
            out = {}
            for procs in (1, 2):
                fit = ["fit", "latent", "--data", cut(train), "--device", "cpu", "-q", *extra,
                       "-o", f"{name}{procs}.anomaly"]
                t_fit = run(fit, procs, cwd)
                t_score = run(["score", f"{name}{procs}.anomaly", "--data", test, "--device", "cpu", "-q",
                               "-o", f"{name}{procs}.csv"], procs, cwd)
                out[procs] = (t_fit, t_score, *scores(cwd / f"{name}{procs}.csv"))
                print(f"{name}: {procs} process(es): fit {t_fit:.1f} s, score {t_score:.1f} s", flush=True)
            a, b = out[1][2], out[2][2]
            rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))
            same = "identical" if np.array_equal(a, b) else f"max relative difference {rel:.2g}, correlation " \
                f"{np.corrcoef(a, b)[0, 1]:.4f}"
            for procs in (1, 2):
                t_fit, t_score, _, auc = out[procs]
                lines.append(f"| {name} | `{cut(train)}` | {procs} | {t_fit:.1f} | {t_score:.1f} | "
                             f"{'-' if auc is None else f'{100 * auc:.2f}'} | {same if procs == 2 else '(reference)'} |")
        # what starting the processes costs alone (a command that does almost nothing)
        name = args.configs.split(",")[0]
        start = [run(["info", f"{name}1.anomaly"], procs, cwd) for procs in (1, 2)]
    load_after = os.getloadavg()
    body = (
        f"`anomaly fit latent` (raw pixels; 10 % held out to calibrate) on the training digits shown, "
        f"`anomaly score` on `{test}` (configurations: see the script's docstring); "
        "wall seconds per command, process start included; OMP_NUM_THREADS=1 per process; gloo. "
        "Scores compared as written in the CSVs (6 significant digits). "
        f"Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; after: "
        f"{', '.join(f'{v:.1f}' for v in load_after)}: the machine was shared with other workers, "
        "so these are upper bounds and the speed-up understates what 2 idle cores give.\n\n"
        "| config | fitted on | processes | fit s | score s | ROC-AUC % | scores vs 1 process |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        + "\n".join(lines)
        + f"\n\nStarting the processes alone (`anomaly info`): {start[0]:.1f} s for 1, {start[1]:.1f} s for 2 (torchrun)."
    )
    record.publish("Many processes: fit latent and score on all MNIST digits, 1 vs 2 processes (torchrun)", body, args.no_record)


if __name__ == "__main__":
    main()
