"""A series far from zero: does the detector see its changes? (series read in float64)

A meter's running total, a counter, an absolute pressure: values such as 1e9 + a small signal.
Read in float32 (24 bits) their changes round to steps of 64 at 1e9. The same wave with a planted
bump (+1 for 5 steps) is shifted by each offset; Continuation (3 epochs, no season) is fitted on
the first 2,000 steps and scores the next 1,000 as the continuation of the stream; ROC-AUC of
the scores against the bump's steps (+10 after it: the smoothing's tail).

Run:  python benchmarks/series_offset.py [--offsets 0,1e6,1e9,1e12] [--no-record]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

import anomalib_lite as al  # noqa: E402


def main() -> None:
    ap = record.parser(__doc__)
    ap.add_argument("--offsets", default="0,1e6,1e9,1e12")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    base = np.sin(2 * np.pi * t / 50) + rng.normal(0, 0.05, t.size)
    base[2500:2505] += 1.0
    labels = np.zeros(1000)
    labels[500:515] = 1
    rows, t0 = [], time.perf_counter()
    for offset in (float(o) for o in args.offsets.split(",")):
        x = base + offset
        det = al.Continuation(epochs=3, season=0).fit(x[:2000])
        det.reset().decision_function(x[:2000])
        s = det.decision_function(x[2000:])
        ok = ~np.isnan(s)
        rows.append(f"| {offset:g} | {100 * roc_auc_score(labels[ok], s[ok]):.1f} |")
        print(rows[-1], flush=True)
    body = ("Continuation (3 epochs, no season) on a wave with a planted bump, shifted by each offset; ROC-AUC (%) "
            f"of the scores of the 1,000 steps after the fit against the bump ({time.perf_counter() - t0:.0f} s).\n\n"
            "| offset | ROC-AUC |\n| --- | --- |\n" + "\n".join(rows))
    record.publish("A series far from zero (series_offset.py)", body, args.no_record)


if __name__ == "__main__":
    main()
