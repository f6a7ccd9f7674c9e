"""Long series: fit time and quality of ``anomaly fit continuation`` on logs of 20,000 to a
million steps.

A year of five-minute steps is 105,120 rows; users bring such logs. `sample_data.make_series`
writes a load-like series (a daily rhythm, quieter weekends, drift, noise) of ``--steps`` steps
with four anomalies (a spike, a level shift, a dropout, a noise burst) between 55 % and 85 % of
it; the command's route fits on it (the last 10 % held out to calibrate), then the bundle scores
the whole file. Figures: fit seconds and epochs, ROC-AUC and average precision of the step scores
against the anomalies' steps, the share of anomalous steps flagged and the false-positive rate
outside them at the calibrated threshold.

Run:  python benchmarks/long_series.py [--steps 20000,100000,1000000] [--no-record]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

import anomalib_lite as al  # noqa: E402
from anomalib_lite.app import workflows  # noqa: E402
from anomalib_lite.data import sample_data  # noqa: E402
from anomalib_lite.scoring.metrics import average_precision, roc_auc  # noqa: E402


def main() -> None:
    ap = record.parser(__doc__)
    ap.add_argument("--steps", default="20000,100000,1000000")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.steps.split(",")]:
            path, out = Path(tmp) / f"s{n}.csv", Path(tmp) / f"s{n}.anomaly"
            events = sample_data.make_series(path, n=n)
            labels = np.zeros(n, dtype=int)
            for a, b in events:
                labels[a : b + 1] = 1
            t = time.perf_counter()
            workflows.fit_and_save(al.Continuation(), str(path), out)
            fit_s = time.perf_counter() - t
            det = al.load(out)
            scores = np.asarray(det.decision_function(al.load_data(str(path))))
            ok = ~np.isnan(scores)
            flags = np.asarray(det.flag(scores)).astype(bool) & ok
            h = det.history_
            epochs = len(h["train_loss"] if isinstance(h, dict) else h.train_loss)
            rows.append(f"| {n:,} | {fit_s:.0f} | {epochs} | "
                        f"{100 * roc_auc(labels[ok], scores[ok]):.1f} | {100 * average_precision(labels[ok], scores[ok]):.1f} | "
                        f"{100 * flags[labels == 1].mean():.1f} % | {100 * flags[labels == 0].mean():.2f} % |")
            print(rows[-1], flush=True)
    body = ("`workflows.fit_and_save(Continuation(), CSV, bundle)` (what `anomaly fit continuation --data CSV` runs: "
            "every default, the last 10 % held out to calibrate at fpr 0.01) on `sample_data.make_series(n=steps)`, "
            "then the bundle scores the file.\n\n"
            "| steps | fit s | epochs | ROC-AUC | AP | anomalous steps flagged | FPR outside them |\n"
            "| --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish("Long series: fit time and quality (long_series.py)", body, args.no_record)


if __name__ == "__main__":
    main()
