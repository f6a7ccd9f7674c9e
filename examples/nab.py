"""The NAB protocol: Continuation over every shared NAB series, the NAB way, with its defaults.

For each series: learn during the probationary period (the first 15 %, at most 750 steps, as
NAB's scorer counts it; its last tenth calibrates, scored as the continuation of the rest), then
score every later step from the past alone while continuing to learn (test-then-train, chunk by
chunk). NAB's [0, 1] score (``nab.results_scores``: the forecast error and the evidence read from
the series itself, each a surprise on its own history, the largest counts; one alarm per event)
alarms at 0.5. Prints, per series and in all, the anomaly windows
with an alarm, false alarms per 1,000 steps outside windows and the lead of the first alarm
before the labelled anomaly; with ``--results DIR`` also writes NAB's results files for NAB's
own scorer (``benchmarks/nab_score.py`` runs it on this example and on the CLI route).
Run:  python examples/nab.py                       (all 31 series, about three minutes on 2 CPU cores)
      python examples/nab.py --files realKnownCause/nyc_taxi.csv --results results
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.data.series_sources import nab_files
from anomalib_lite.scoring.thresholds import SurpriseScore


def run_file(name: str, args) -> dict:
    """The NAB protocol on one series; returns its window figures (and writes results)."""
    source = al.load_data(f"nab:{name}")
    det = al.Continuation(epochs=args.epochs, network=args.network, device="cpu")
    scores, _ = nab.run_protocol(det, source, chunk=args.chunk)
    unit = nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds)  # 0 in the probationary period, which NAB does not count
    if args.results:
        nab.write_results(args.results, source, unit, "continuation")
    alarms = unit >= SurpriseScore().alarm_level
    return al.metrics.window_metrics(alarms, source.windows, source.references) | {"n": len(source), "season": det.season_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", default=None, help="NAB names (default: every shared series)")
    ap.add_argument("--network", choices=["lstm", "tcn"], default=al.Continuation().network)
    ap.add_argument("--epochs", type=int, default=al.Continuation().epochs)
    ap.add_argument("--chunk", type=int, default=64, help="steps scored before each online update")
    ap.add_argument("--results", default=None, help="write NAB results files under this folder")
    args = ap.parse_args()

    files = args.files or nab_files()
    print(f"{'series':58s} {'steps':>6s} {'season':>6s} {'windows':>8s} {'FA/1k':>6s} {'lead':>6s}")
    rows, start = [], time.perf_counter()
    for name in files:
        m = run_file(name, args)
        rows.append(m)
        lead = f"{m['mean_lead']:.0f}" if m["leads"] else "-"
        print(f"{name:58s} {m['n']:6d} {m['season']:6d} {m['detected']:>3d} of {m['windows']:<2d} "
              f"{m['false_alarms_per_1k']:6.2f} {lead:>6s}")
    detected, windows = sum(m["detected"] for m in rows), sum(m["windows"] for m in rows)
    fa = 1000 * sum(m["false_alarms"] for m in rows) / sum(m["points_outside"] for m in rows)
    leads = [lead for m in rows for lead in m["leads"]]
    print(f"all {len(rows)} series: windows detected {detected} of {windows} ({100 * detected / max(1, windows):.0f} %), "
          f"false alarms {fa:.2f} per 1,000 steps outside windows, mean lead "
          f"{np.mean(leads) if leads else float('nan'):.1f} steps; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
