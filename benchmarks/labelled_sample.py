"""The README's labelled sample series through the CLI, fitted on its first half, five seeds.

``anomaly demo --make-data DIR`` writes ``labelled.csv``: 4,032 five-minute steps, 24 anomalies
labelled in a column ``anomaly``, 12 in each half. Each seed is one ``anomaly fit --data
"labelled.csv?stop=0.5" --seed S`` (no detector named: the series route; the first half's labelled
anomalies inside the fitted steps) and one ``anomaly evaluate --data "labelled.csv?start=0.5"
--json``, in child processes. The table gives, per seed and as the mean: the threshold, ROC-AUC
and average precision over the second half's steps, the share of its anomalous steps flagged, the
false-positive rate outside each anomaly and the detector's window after it (target 1 %), and
the anomalies detected (of 12) with the false alarms outside them.

Run:  python benchmarks/labelled_sample.py      (about 4 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import record
from series_csv import run  # (`anomaly ARGS` in a child process)

SEEDS = (0, 1, 2, 3, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-record", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = ap.parse_args()
    rows, figures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run(["demo", "--make-data", str(tmp / "data")])
        data = tmp / "data" / "labelled.csv"
        for seed in SEEDS:
            bundle, out = tmp / f"m{seed}.anomaly", tmp / f"e{seed}.json"
            run(["fit", "--data", f"{data}?stop=0.5", "--seed", str(seed), "-o", str(bundle)])
            run(["evaluate", str(bundle), "--data", f"{data}?start=0.5", "--json", str(out)])
            f = json.loads(out.read_text())
            ev = f["events"]
            got = (f["threshold"], 100 * f["roc_auc"], 100 * f["average_precision"], 100 * f["recall"],
                   100 * f["fpr_check"]["fpr"], ev["detected"], ev["false_alarms"])
            figures.append(got)
            rows.append(f"| {seed} | {got[0]:.2f} | {got[1]:.2f} | {got[2]:.2f} | {got[3]:.1f} % | {got[4]:.2f} % | "
                        f"{got[5]} of {ev['windows']} | {got[6]} |")
            print(rows[-1], flush=True)
    m = np.mean(figures, axis=0)
    rows.append(f"| **mean** | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.1f} % | {m[4]:.2f} % | {m[5]:.1f} | "
                f"{m[6]:.1f} |")
    body = (__doc__.split("\n\n")[1].replace("\n", " ") + "\n\n"
            "| seed | threshold | ROC-AUC | average precision | anomalous steps flagged | false-positive rate "
            "outside the anomalies (target 1 %) | anomalies detected | false alarms |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish("The labelled sample series, fitted on its first half (labelled_sample.py)", body, args.no_record)


if __name__ == "__main__":
    main()
