"""Reading a long CSV series: seconds and memory per million rows (``anomalib_lite.load_data``).

A log of a year at one-minute steps is half a million rows; users bring such files. Writes a CSV
of ``--rows`` rows (ISO timestamps, ``--columns`` value columns) into a temporary folder, reads it
``--repeats`` times, and reports the best wall time and the peak of Python's traced allocations
during the read (tracemalloc: what the reader holds, not torch's libraries).

Run:  python benchmarks/csv_read.py [--rows 1000000] [--columns 1,3] [--no-record]
"""
from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

import anomalib_lite as al  # noqa: E402


def write_csv(path: Path, rows: int, columns: int) -> None:
    rng = np.random.default_rng(0)
    stamps = (np.datetime64("2024-01-01T00:00") + np.arange(rows) * np.timedelta64(1, "m")).astype(str)
    values = np.sin(np.arange(rows)[:, None] * 2 * np.pi / 1440) + rng.normal(0, 0.1, (rows, columns))
    with open(path, "w") as fh:
        fh.write("timestamp," + ",".join(f"v{j}" for j in range(columns)) + "\n")
        for s, v in zip(stamps, values):
            fh.write(s + "," + ",".join(f"{a:.4f}" for a in v) + "\n")


def main() -> None:
    ap = record.parser(__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--columns", default="1,3")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in [int(c) for c in args.columns.split(",")]:
            path = Path(tmp) / f"s{d}.csv"
            write_csv(path, args.rows, d)
            best = float("inf")
            for _ in range(args.repeats):
                t = time.perf_counter()
                src = al.load_data(str(path))
                best = min(best, time.perf_counter() - t)
            del src
            tracemalloc.start()
            al.load_data(str(path))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            mb = path.stat().st_size / 1e6
            lines.append(f"| {args.rows:,} | {d} | {mb:.0f} | {best:.1f} | {1e6 * best / args.rows:.1f} | "
                         f"{peak / 1e6:.0f} | {peak / args.rows:.0f} |")
            print(lines[-1], flush=True)
    body = ("`load_data` on a CSV series with ISO timestamps, best of "
            f"{args.repeats} reads; memory: peak of the allocations traced during one read.\n\n"
            "| rows | value columns | file MB | seconds | us per row | peak MB | bytes per row |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(lines))
    record.publish("Reading a long CSV series (csv_read.py)", body, args.no_record)


if __name__ == "__main__":
    main()
