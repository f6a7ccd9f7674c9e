"""--max-time kept: the wall time of whole commands given a budget, quiet and beside a busy process.

Runs, as a user does (fresh processes), ``anomaly pretrain --task segment --max-time T`` on the
brick inspection set (128 px, 200 training crops: ``sample_data.make_image_set``) and ``anomaly fit
reconstruction --max-time T`` on MNIST's digit 8 (needs $ANOMALY_DATA_DIR), and reports each
command's wall time against T. The budget counts from the command's start (imports and reading
the data included); training stops before a step that would cross it.

Run:  python benchmarks/time_budget.py [--budget 60] [--busy] [--no-record]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

ANOMALY = shutil.which("anomaly", path=str(Path(sys.executable).parent)) or "anomaly"


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run([ANOMALY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if r.returncode:
        raise SystemExit(f"anomaly {' '.join(args)} failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t, r.stdout.strip().splitlines()[-1]


def rows(tmp: Path, budget: float, label: str) -> list[str]:
    out = []
    for name, args in (
        ("pretrain resnet18, segment, brick 128 px", ["pretrain", "--backbone", "resnet18", "--data", "set/brick/train",
                                                      "--task", "segment", "--epochs", "100", "-o", "w.safetensors"]),
        ("fit reconstruction, MNIST digit 8", ["fit", "reconstruction", "--data", "mnist:train?classes=8",
                                               "--epochs", "100", "-o", "ae8.anomaly"]),
    ):
        load = os.getloadavg()[0]
        wall, line = timed([*args, "--max-time", str(budget)], tmp)
        out.append(f"| {name} | {label} | {budget:.0f} | {wall:.1f} | {100 * (wall / budget - 1):+.1f} % | {load:.1f} | "
                   f"{line[:110]} |")
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = record.parser(busy="also beside a process burning one core")
    ap.add_argument("--budget", type=float, default=60)
    args = ap.parse_args()
    from anomalib_lite.data.sample_data import make_image_set

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        make_image_set(tmp / "set", categories=["brick"])
        lines = ["| command | machine | --max-time s | wall s | over the budget | load before | result |",
                 "|---|---|---|---|---|---|---|"]
        lines += rows(tmp, args.budget, "quiet")
        if args.busy:
            with record.busy_core():
                lines += rows(tmp, args.budget, "beside a busy process")
    body = ("Whole commands, fresh processes, `--epochs 100` so that the budget ends them; wall time from start to "
            "exit.\n\n" + "\n".join(lines))
    record.publish("Time budgets: --max-time against the wall time of the command", body, args.no_record)


if __name__ == "__main__":
    main()
