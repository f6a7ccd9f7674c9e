"""Streaming cost of Continuation against River's HalfSpaceTrees, in the same run: per-point
latency (Python API and ``anomaly score --stream``), batch throughput, CPU per line of a long
piped stream, and memory over long streams.

* Python API: ``det.decision_function(one_point)`` then ``det.flag(score)`` (moving threshold), one point at a
  time after a warm-up; median and p99 over ``--points`` points. River: ``score_one`` then
  ``learn_one`` of ``MinMaxScaler | HalfSpaceTrees`` on the same points.
* ``--stream``: the CLI in a subprocess fed one CSV line at a time; the time from writing a line
  to reading its scored line back (parse, score, flag, print, flush, pipes).
* Piped: ``--long-lines`` CSV lines written to ``score --stream`` at once; wall time and the
  child's CPU time per line.
* Batch: ``det.decision_function(series)`` on 10^5 steps at once, points per second.
* Memory: RSS of this process after 10^4, 10^5 and 10^6 points streamed through ``score`` and
  ``flag`` in chunks of 1,000 (the stream state is bounded).
* NAB's [0, 1] score (``SurpriseScore`` with every kind of evidence on, as ``nab.results_scores``
  sets it for a dated series of 5-minute steps: forecast, weekly cycle, neighbours, change): one
  step at a time after 6,000 (median, p99), alone and after the detector's score of the step (the
  whole series route, one step: ``decision_function`` then ``SurpriseScore.update``), and its RSS after 10^4, 10^5 and 3 * 10^5 steps in
  chunks of 1,000.
River is a benchmark-only dependency (``pip install river``); without it its rows are skipped.
The detectors run with their defaults (window 64, horizon 5, 2 x 32 LSTM or a temporal CNN of 32
channels; the season of the test series, 50 steps, is detected) and their thread policy.
Run:  python benchmarks/stream_speed.py
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.scoring.thresholds import SurpriseScore

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
    det.decision_function(x[:200])  # fill the window (and the season)
    out = np.empty(n)
    for i in range(n):
        point = x[200 + i : 201 + i]
        t = time.perf_counter()
        det.flag(det.decision_function(point))
        out[i] = time.perf_counter() - t
    return out


def river_latency(x: np.ndarray, n: int) -> np.ndarray | None:
    try:
        from river import anomaly, preprocessing
    except ImportError:
        return None
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0)
    for v in x[:200].tolist():
        model.learn_one({"x": v})
    out = np.empty(n)
    for i, v in enumerate(x[200 : 200 + n].tolist()):
        t = time.perf_counter()
        model.score_one({"x": v})
        model.learn_one({"x": v})
        out[i] = time.perf_counter() - t
    return out


def nab_surprise() -> SurpriseScore:
    """NAB's score as ``nab.results_scores`` sets it for a dated series of 5-minute steps (the
    test series' season of 50 steps, window 64)."""
    week, day = nab.calendar_steps(300.0)
    return SurpriseScore(np.ones(100), refractory=375, season=50, reach=25, settle=0, cycle=week, cycle_warm=day,
                         extremes=False, neighbours=nab.NEIGHBOURS, change=64)


def nab_latency(x: np.ndarray, n: int, det=None) -> np.ndarray:
    """One step of NAB's [0, 1] score with every kind of evidence reading the step, after 6,000
    (``nab.results_scores``' settings), on stand-in scores; with ``det``, one step of the whole
    series route: the detector's score of the step, then NAB's score of it."""
    if det is None:
        stand_in = 1 + 0.1 * np.abs(x)
        scores = lambda a, b: stand_in[a:b]  # noqa: E731
    else:
        det.reset()
        scores = lambda a, b: det.decision_function(x[a:b])  # noqa: E731
    sc = nab_surprise()
    sc.update(scores(0, 6000), x[:6000])
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        sc.update(scores(6000 + i, 6001 + i), x[6000 + i : 6001 + i])
        out[i] = time.perf_counter() - t
    return out


def nab_memory(x: np.ndarray, marks=(10_000, 100_000, 300_000)) -> tuple[dict, float]:
    sc, seen, rss = nab_surprise(), 0, {}
    t = time.perf_counter()
    while seen < max(marks):
        chunk = x[seen % 100_000 : seen % 100_000 + 1000]
        sc.update(1 + 0.1 * np.abs(chunk), chunk)
        seen += len(chunk)
        if seen in marks:
            rss[seen] = rss_mb()
    return rss, max(marks) / (time.perf_counter() - t)


def cli_command(bundle: Path) -> list[str]:
    return [sys.executable, str(REPO / "cli.py"), "score", str(bundle), "--data", "-", "--stream", "-q"]


def cli_latency(bundle: Path, x: np.ndarray, n: int) -> np.ndarray:
    proc = subprocess.Popen(cli_command(bundle), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
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


def cli_piped(bundle: Path, x: np.ndarray, n: int, tmp: Path) -> tuple[float, float]:
    """Wall seconds and child CPU seconds per line for ``n`` lines piped at once."""
    data = tmp / "lines.csv"
    data.write_text("timestamp,value\n" + "".join(f"{i},{v:.6f}\n" for i, v in enumerate(x[:n].tolist())))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with data.open() as fh:
        subprocess.run(cli_command(bundle), stdin=fh, stdout=subprocess.DEVNULL, check=True, cwd=REPO)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall / n, cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=3000, help="points timed one at a time")
    ap.add_argument("--long", type=int, default=1_000_000, help="length of the memory stream")
    ap.add_argument("--long-lines", type=int, default=200_000, help="lines piped at once into --stream")
    args = ap.parse_args()
    load_before = os.getloadavg()
    x = series(max(args.long, 100_000, args.long_lines) + 1000)
    rows, mem_rows, piped_rows, chain = [], [], [], []
    ms = lambda a: f"{np.median(a):.3f} | {np.percentile(a, 99):.3f}"  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("lstm", "tcn"):
            det = al.Continuation(network=model, epochs=1, threshold_rule="moving", device="cpu")
            det.fit(x[:3000]).calibrate(x[3000:4000], context=x[:3000])  # speed does not depend on how well it learned
            bundle = Path(tmp) / f"{model}.anomaly"
            det.save(bundle)
            api = api_latency(det, x, args.points) * 1e3
            cli = cli_latency(bundle, x, args.points) * 1e3
            det.reset()
            t = time.perf_counter()
            det.decision_function(x[:100_000])
            batch = 100_000 / (time.perf_counter() - t)
            rows.append(f"| Continuation ({model}, season {det.season_}) | {ms(api)} | {ms(cli)} | {batch:,.0f} |")
            chain.append(f"| Continuation ({model}) + NAB's [0, 1] score (every kind of evidence) | "
                         f"{ms(nab_latency(x, args.points, det) * 1e3)} | | | |")
            wall, cpu = cli_piped(bundle, x, args.long_lines, Path(tmp))
            piped_rows.append(f"| Continuation ({model}) | {args.long_lines:,} | {wall * 1e3:.3f} | {cpu * 1e3:.3f} |")
            det.reset()
            marks, seen, rss = {10_000, 100_000, 1_000_000, args.long}, 0, {}
            t = time.perf_counter()
            while seen < args.long:
                chunk = x[seen % 100_000 : seen % 100_000 + 1000]
                det.flag(det.decision_function(chunk))
                seen += len(chunk)
                if seen in marks:
                    rss[seen] = rss_mb()
            rate = args.long / (time.perf_counter() - t)
            mem_rows.append(f"| {model} | " + " | ".join(f"{rss.get(m, float('nan')):.0f}" for m in (10_000, 100_000, 1_000_000))
                            + f" | {rate:,.0f} |")
    nab_rss, nab_rate = nab_memory(x)
    rows.append(f"| NAB's [0, 1] score: `SurpriseScore.update` (every kind of evidence) | {ms(nab_latency(x, args.points) * 1e3)} | | | {nab_rate:,.0f} (chunks of 1,000) |")
    mem_rows.append("| NAB's [0, 1] score (`SurpriseScore`, every kind) | " + " | ".join(
        f"{nab_rss[m]:.0f}" for m in (10_000, 100_000)) + f" | {nab_rss[300_000]:.0f} (3 * 10^5) | {nab_rate:,.0f} |")
    rows += chain
    hst = river_latency(x, args.points)
    if hst is not None:
        import river

        rows.append(f"| River {river.__version__} MinMaxScaler + HalfSpaceTrees (score_one, learn_one) | {ms(hst * 1e3)} | | | |")
    load_after = os.getloadavg()
    body = "\n".join([
        "Continuation with its defaults (window 64, horizon 5; LSTM 2 x 32 or temporal CNN of 32 channels; the "
        "test series' season of 50 steps detected), moving threshold (k=4 over 2,000 scores), torch threads by "
        "the thread policy (one). River in the same run, on the same points. Load average (1/5/15 min) before: "
        + "/".join(f"{v:.1f}" for v in load_before) + ", after: " + "/".join(f"{v:.1f}" for v in load_after)
        + " (2 cores; other engineers' jobs share them: p99 includes their time slices).",
        "",
        f"Latency per point, {args.points} points after a warm-up of 200 (ms):",
        "",
        "| detector | API median | API p99 | `--stream` median | `--stream` p99 | batch `score` (points/s, 10^5 steps) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "A long stream piped at once into `anomaly score --stream` (ms per line):",
        "",
        "| detector | lines | wall per line | CPU per line |",
        "| --- | --- | --- | --- |",
        *piped_rows,
        "",
        "Memory: RSS of the process (MB) after N points streamed through `score` + `flag` in chunks of 1,000:",
        "",
        "| model | 10^4 | 10^5 | 10^6 | points/s in chunks of 1,000 |",
        "| --- | --- | --- | --- | --- |",
        *mem_rows,
    ])
    record.append("Continuation streaming cost vs River HalfSpaceTrees: latency, throughput, memory", body)


if __name__ == "__main__":
    main()
