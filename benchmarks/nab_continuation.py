"""Continuation vs a windowed-Gaussian baseline on every shared NAB series: window figures.

Both run in the same process on the same series under NAB's protocol: nothing is counted in the
probationary period (15 %, at most 750 steps) and every later step is judged from the past alone.

* Continuation: ``anomalib_lite.evaluation.nab.run_protocol`` (fit on the probationary period, then
  test-then-train in chunks of 64 steps); flags from its moving rule, score > mean + k * std of
  the previous 2,000 scores (never below 1, the mean training error), for several k.
* Windowed Gaussian: z = |x - mean| / std over the previous 6,400 values, updated every step and
  scored from the 31st value; flags |z| > z0 for several z0, and also the same moving rule as
  above. This is a re-implementation, NOT NAB's ``windowedGaussian`` detector: NAB's moves its
  window in steps of 100 values and scores from the first value, and writes a Gaussian tail
  probability. For NAB's own score against NAB's published detectors (windowedGaussian 12.07
  on these series) see ``benchmarks/nab_score.py``.

Figures per operating point: anomaly windows with a flag inside (recall), false alarms per 1,000
steps outside windows (flagged steps, and alarm events = runs of flagged steps), and the mean
lead of the first flag inside a window before NAB's labelled anomaly (steps; negative = after).
Run:  python benchmarks/nab_continuation.py
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import record
import torch

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.data.series_sources import nab_files
from anomalib_lite.components.streaming import MovingWindow
from anomalib_lite.scoring.thresholds import MovingThreshold


def windowed_gaussian(values: np.ndarray, size: int = 6400) -> np.ndarray:
    """|x - mean| / std of the previous ``size`` values (NaN for the first 30 steps)."""
    window, out = MovingWindow(size), np.full(len(values), np.nan)
    for i, v in enumerate(values.tolist()):
        if len(window) >= 30:
            mu, sd = window.mean(), window.std()
            out[i] = abs(v - mu) / sd if sd > 0 else (0.0 if v == mu else np.inf)
        window.push(v)
    return out


def summary(sources, flags_per_series) -> dict:
    rows = []
    events = 0
    for src, flags in zip(sources, flags_per_series):
        rows.append(al.metrics.window_metrics(flags, src.windows, src.references))
        outside = np.ones(len(flags), dtype=bool)
        for a, b in src.windows:
            outside[a : b + 1] = False
        f = flags & outside
        events += int((f & ~np.r_[False, f[:-1]]).sum())
    n_out = sum(r["points_outside"] for r in rows)
    leads = [lead for r in rows for lead in r["leads"]]
    return {
        "detected": sum(r["detected"] for r in rows),
        "windows": sum(r["windows"] for r in rows),
        "fa_steps": 1000 * sum(r["false_alarms"] for r in rows) / n_out,
        "fa_events": 1000 * events / n_out,
        "lead": float(np.mean(leads)) if leads else float("nan"),
        "rows": rows,
    }


def flags_from(sources, scores, rule):
    out = []
    for src, s in zip(sources, scores):
        f = rule(s)
        f[: nab.probation_steps(len(src))] = False
        out.append(f)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=float, nargs="*", default=[3, 4, 5, 6])
    ap.add_argument("--z", type=float, nargs="*", default=[3, 4, 5, 6])
    ap.add_argument("--epochs", type=int, default=al.Continuation().epochs)
    args = ap.parse_args()
    torch.manual_seed(0)
    load_before = os.getloadavg()
    sources = [al.load_data(f"nab:{name}") for name in nab_files()]

    start = time.perf_counter()
    cont = []
    for src in sources:
        det = al.Continuation(epochs=args.epochs, threshold_rule="moving", device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, _ = nab.run_protocol(det, src, chunk=64)
        cont.append(scores)
    cont_s = time.perf_counter() - start
    start = time.perf_counter()
    gauss = [windowed_gaussian(src.values[:, 0]) for src in sources]
    gauss_s = time.perf_counter() - start

    def moving(k):
        return lambda s: MovingThreshold("std", 2000, k, floor=1.0).update(s)

    table = []
    for k in args.k:
        table.append(("Continuation", f"moving, k={k:g}", summary(sources, flags_from(sources, cont, moving(k)))))
    for z in args.z:
        table.append(("windowed Gaussian (re-impl.)", f"abs(z) > {z:g}", summary(sources, flags_from(sources, gauss, lambda s, z=z: np.nan_to_num(s) > z))))
    for k in args.k:
        table.append(("windowed Gaussian (re-impl.)", f"moving, k={k:g}", summary(sources, flags_from(sources, gauss, moving(k)))))

    lines = [
        f"{len(sources)} NAB series ({sum(len(s) for s in sources):,} steps, {sum(len(s.windows) for s in sources)} "
        f"anomaly windows); Continuation with its defaults (LSTM 2x32, window 64, horizon 5, season auto, EWMA span "
        f"10), {args.epochs} epochs on the probationary period, then test-then-train in chunks of 64 ({cont_s:.0f} s "
        f"for all series); windowed Gaussian over 6,400 past values, re-implemented (not NAB's windowedGaussian: "
        f"NAB's moves its window every 100 values and scores from the first value; NAB's own score: "
        f"benchmarks/nab_score.py) ({gauss_s:.0f} s). Load average (1/5/15 min) before: "
        f"{load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, after: "
        + "/".join(f"{v:.1f}" for v in os.getloadavg()) + " (other engineers' jobs share the 2 cores).",
        "",
        "| detector | flag rule | windows detected | recall | false alarms / 1k steps outside windows | alarm events / 1k | mean lead (steps) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rule, m in table:
        lines.append(f"| {name} | {rule} | {m['detected']} of {m['windows']} | {100 * m['detected'] / m['windows']:.0f} % | "
                     f"{m['fa_steps']:.2f} | {m['fa_events']:.2f} | {m['lead']:.1f} |")
    primary = table[[r for _, r, _ in table].index("moving, k=4")][2] if 4 in args.k else None
    if primary is not None:
        lines += ["", "Per series, Continuation with its default moving rule (k=4): windows detected, false alarms per 1k steps, lead.", "",
                  "| series | steps | detected | FA / 1k | lead |", "| --- | --- | --- | --- | --- |"]
        for src, r in zip(sources, primary["rows"]):
            lead = f"{np.mean(r['leads']):.0f}" if r["leads"] else "-"
            lines.append(f"| {src.nab_name} | {len(src)} | {r['detected']} of {r['windows']} | {r['false_alarms_per_1k']:.2f} | {lead} |")
    record.append("NAB: Continuation vs windowed Gaussian (NAB protocol)", "\n".join(lines))


if __name__ == "__main__":
    main()
