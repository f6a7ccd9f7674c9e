"""Streaming cost of Continuation: per-point latency (Python API and ``anomaly score --stream``),
batch throughput, and memory over long streams.

* Python API: ``det.score(one_point)`` then ``det.flag(score)`` (moving threshold), one point at a
  time after a warm-up; median and p99 over ``--points`` points.
* ``--stream``: the CLI in a subprocess fed one CSV line at a time; the time from writing a line
  to reading its scored line back (parse, score, flag, print, flush, pipes).
* Batch: ``det.score(series)`` on 10^5 steps at once, points per second.
* Memory: RSS of this process after 10^4, 10^5 and 10^6 points streamed through ``score`` and
  ``flag`` in chunks of 1,000 (the stream state is bounded: the last window, the pending
  forecasts, the EWMA value and the moving-threshold window).
Run:  python benchmarks/stream_speed.py
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
import torch

import anomalib_lite as al

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def series(n: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 50) + 0.1 * np.random.default_rng(seed).normal(size=n)


def api_latency(det, x: np.ndarray, n: int) -> np.ndarray:
    det.reset()
    det.score(x[:200])  # fill the window
    out = np.empty(n)
    for i in range(n):
        point = x[200 + i : 201 + i]
        t = time.perf_counter()
        det.flag(det.score(point))
        out[i] = time.perf_counter() - t
    return out


def cli_latency(bundle: Path, x: np.ndarray, n: int) -> np.ndarray:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "score", str(bundle), "--data", "-", "--stream", "-q"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    proc.stdin.write("timestamp,value\n")
    proc.stdin.flush()
    proc.stdout.readline()  # the header: the process is up
    out = np.empty(n)
    for i in range(200 + n):
        t = time.perf_counter()
        proc.stdin.write(f"{i},{x[i]:.6f}\n")
        proc.stdin.flush()
        proc.stdout.readline()
        if i >= 200:
            out[i - 200] = time.perf_counter() - t
    proc.stdin.close()
    proc.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2000, help="points timed one at a time")
    ap.add_argument("--long", type=int, default=1_000_000, help="length of the memory stream")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    x = series(max(args.long, 100_000) + 1000)
    rows, mem_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("lstm", "tcn"):
            det = al.Continuation(model=model, window=64, horizon=5, hidden=64, layers=2, epochs=1,
                                  threshold="moving", device="cpu")
            det.fit(x[:3000]).calibrate(x[3000:4000])  # speed does not depend on how well it learned
            bundle = Path(tmp) / f"{model}.anomaly"
            det.save(bundle)
            api = api_latency(det, x, args.points) * 1e3
            cli = cli_latency(bundle, x, args.points) * 1e3
            det.reset()
            t = time.perf_counter()
            det.score(x[:100_000])
            batch = 100_000 / (time.perf_counter() - t)
            rows.append(f"| {model} | {np.median(api):.2f} | {np.percentile(api, 99):.2f} | {np.median(cli):.2f} | "
                        f"{np.percentile(cli, 99):.2f} | {batch:,.0f} |")
            det.reset()
            marks, seen, rss = {10_000, 100_000, 1_000_000, args.long}, 0, {}
            t = time.perf_counter()
            while seen < args.long:
                chunk = x[seen % 100_000 : seen % 100_000 + 1000]
                det.flag(det.score(chunk))
                seen += len(chunk)
                if seen in marks:
                    rss[seen] = rss_mb()
            rate = args.long / (time.perf_counter() - t)
            mem_rows.append(f"| {model} | " + " | ".join(f"{rss.get(m, float('nan')):.0f}" for m in (10_000, 100_000, 1_000_000))
                            + f" | {rate:,.0f} |")
    body = "\n".join([
        f"Continuation, window 64, horizon 5, LSTM 2x64 or temporal CNN (64 channels, dilations 1-16), moving "
        f"threshold (k=4 over 2,000 scores); torch threads: 1 (for one point at a time, more threads only add "
        f"latency). Load average (1/5/15 min) before: {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
        "after: " + "/".join(f"{v:.1f}" for v in os.getloadavg()) + " (other engineers' jobs share the 2 cores).",
        "",
        f"Latency per point, {args.points} points after a warm-up of 200 (ms):",
        "",
        "| model | API median | API p99 | `--stream` median | `--stream` p99 | batch `score` (points/s, 10^5 steps) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Memory: RSS of the process (MB) after N points streamed through `score` + `flag` in chunks of 1,000:",
        "",
        "| model | 10^4 | 10^5 | 10^6 | points/s in chunks of 1,000 |",
        "| --- | --- | --- | --- | --- |",
        *mem_rows,
    ])
    record.append("Continuation streaming cost: latency, throughput, memory", body)


if __name__ == "__main__":
    main()
