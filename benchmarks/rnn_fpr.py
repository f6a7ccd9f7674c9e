"""SupervisedRNN's ``fpr=`` threshold on the README's labelled sample: the robust tail or the counts.

``SupervisedRNN(horizon=20, fpr=F)`` fitted on the first 70 % of the sample's ``labelled.csv``
(``anomaly demo --make-data``), seeds 0-2; its calibration scores are the validation tail's steps
with no onset within the horizon. For each seed and target F (0.05, 0.01), the threshold the
series' robust tail gives (``TAIL_START``, what ``fit`` uses) and the one the counts give
(``fit_tail(start=None)``, what a Continuation calibrated on labelled steps uses), each with the
share of the last 30 %'s steps with no onset ahead that it flags and the share of its steps with
one ahead that it warns on.

Run:  python benchmarks/rnn_fpr.py      (about 2 minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

import record

import anomalib_lite as al
from anomalib_lite.data.sample_data import make_demo_data
from anomalib_lite.detectors.series import TAIL_START
from anomalib_lite.detectors.supervised_rnn import early_warning_labels
from anomalib_lite.scoring.thresholds import tail_threshold

SEEDS = (0, 1, 2)
TARGETS = (0.05, 0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-record", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_data(Path(tmp))
        path = Path(tmp) / "labelled.csv"
        train, test = al.load_data(f"{path}?stop=0.7"), al.load_data(f"{path}?start=0.7")
        y = test.anomaly_labels()
        ahead = early_warning_labels(y, 20)
        for fpr in TARGETS:
            for seed in SEEDS:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    det = al.SupervisedRNN(horizon=20, fpr=fpr, seed=seed, device="cpu").fit(train)
                cal = det.calibration_scores_
                s = det.reset().decision_function(test)
                quiet = (ahead == 0) & (y == 0) & np.isfinite(s)
                cells = []
                for t in (tail_threshold(cal, fpr, start=TAIL_START), tail_threshold(cal, fpr)):
                    cells.append(f"{t:.3f} / {100 * (s[quiet] > t).mean():.2f} % / {100 * (s[ahead == 1] > t).mean():.1f} %")
                rows.append(f"| {fpr:g} | {seed} | {cal.size} | {cells[0]} | {cells[1]} |")
                print(rows[-1], flush=True)
    body = (__doc__.split("\n\n")[1].replace("\n", " ") + "\n\n"
            "| target | seed | calibration scores | robust tail: threshold / flagged with no onset ahead / "
            "warned with one | counts: the same |\n| --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish("SupervisedRNN's fpr threshold: robust tail or counts (rnn_fpr.py)", body, args.no_record)


if __name__ == "__main__":
    main()
