"""The NAB protocol: Continuation over every shared NAB series, the NAB way.

For each series: learn during the probationary period (the first 15 %, at most 750 steps, as
NAB's scorer counts it), then score every later step from the past alone while continuing to
learn (test-then-train, chunk by chunk). Flags come from a moving threshold (mean + k * std of
the past scores). Prints, per series and in all, the anomaly windows detected, false alarms per
1,000 steps outside windows and the lead of the first flag before the labelled anomaly; with
``--results DIR`` also writes NAB's results files for NAB's own scorer.
Run:  python examples/nab.py                       (all series, a few minutes on 2 CPU cores)
      python examples/nab.py --files realKnownCause/nyc_taxi.csv --results results
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

import anomalib_lite as al
from anomalib_lite import nab
from anomalib_lite.series_sources import nab_files


def continuation(args) -> al.Continuation:
    return al.Continuation(model=args.model, window=args.window, horizon=args.horizon, hidden=args.hidden,
                           layers=1, epochs=args.epochs, smoothing=args.smoothing, threshold="moving",
                           threshold_k=args.k, device="cpu")


def run_file(name: str, args) -> dict:
    """The NAB protocol on one series; returns its window figures (and writes results)."""
    source = al.load_data(f"nab:{name}")
    det = continuation(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short probationary periods cannot certify the fpr
        scores, flags = nab.run_protocol(det, source, chunk=args.chunk)
    p = nab.probation_steps(len(source))
    flags[:p] = False  # NAB does not count the probationary period
    if args.results:
        unit = det.unit_scores(scores)  # 1 - p-value against the probationary period's scores
        unit[:p] = 0.0
        nab.write_results(args.results, source, unit, "continuation")
    return al.metrics.window_metrics(flags, source.windows, source.references) | {"n": len(source)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", default=None, help="NAB names (default: every shared series)")
    ap.add_argument("--model", choices=["lstm", "tcn"], default="lstm")
    ap.add_argument("--window", type=int, default=48)
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--smoothing", type=float, default=10.0)
    ap.add_argument("--k", type=float, default=4.0, help="flag when above mean + k * std of past scores")
    ap.add_argument("--chunk", type=int, default=64, help="steps scored before each online update")
    ap.add_argument("--results", default=None, help="write NAB results files under this folder")
    args = ap.parse_args()
    torch.manual_seed(0)

    files = args.files or nab_files()
    print(f"{'series':58s} {'steps':>6s} {'windows':>8s} {'FA/1k':>6s} {'lead':>6s}")
    rows, start = [], time.perf_counter()
    for name in files:
        m = run_file(name, args)
        rows.append(m)
        lead = f"{m['mean_lead']:.0f}" if m["leads"] else "-"
        print(f"{name:58s} {m['n']:6d} {m['detected']:>3d} of {m['windows']:<2d} {m['false_alarms_per_1k']:6.2f} {lead:>6s}")
    detected, windows = sum(m["detected"] for m in rows), sum(m["windows"] for m in rows)
    fa = 1000 * sum(m["false_alarms"] for m in rows) / sum(m["points_outside"] for m in rows)
    leads = [lead for m in rows for lead in m["leads"]]
    print(f"all {len(rows)} series: windows detected {detected} of {windows} ({100 * detected / max(1, windows):.0f} %), "
          f"false alarms {fa:.2f} per 1,000 steps outside windows, mean lead "
          f"{np.mean(leads) if leads else float('nan'):.1f} steps; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
