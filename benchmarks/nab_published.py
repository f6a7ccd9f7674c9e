"""Issue 19: the published detectors on the same halves as this toolkit's figures.

NAB's repository publishes, per detector and profile, each file's raw score at the detector's own
threshold (``results/<detector>/<detector>_<profile>_scores.csv``: Detector, Profile, File,
Threshold, Score, ...; the threshold optimised over NAB's whole corpus). This script reads such
files (downloaded by the user: they are not shipped here) and gives each detector's normalised
score over the series of each half of ``nab_score.halves`` and over all the shared series:
``100 (S + A_FN W) / (W + A_FN W)``, S the summed raw scores, W the windows (a perfect detector
earns 1 per window, the null one -A_FN). The threshold stays the detector's own, not one
re-optimised on the half, so a half's figure is the detector as published, on those series.
Check the last column against ``nab_score.md``'s table (the result files rescored): ARTime's files
give its figures exactly; numenta's per-file file was written by an older NAB version (its rows
count the probationary period) and does not (62.54 against 69.52), so its halves are not HTM as
published.

Run:  python benchmarks/nab_published.py FILE [FILE ...] [--no-record]
      (FILE: e.g. NAB's results/ARTime/ARTime_standard_scores.csv)
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import record
from nab_score import halves

A_FN = {"standard": 1.0, "reward_low_FP_rate": 1.0, "reward_low_FN_rate": 2.0}


def windows() -> dict:
    root = Path(os.environ.get("ANOMALY_DATA_DIR", Path.home() / ".cache/anomalib_lite/data")) / "NAB"
    return json.loads((root / "labels" / "combined_windows.json").read_text())


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    split = halves()
    split["all shared"] = sorted({f for names in split.values() for f in names})
    wins = windows()
    rows = []
    for path in args.files:
        with path.open(newline="") as fh:
            table = [r for r in csv.DictReader(fh) if r["Detector"] != "Totals"]
        raw = {r["File"]: float(r["Score"]) for r in table}
        detector, profile = table[0]["Detector"], table[0]["Profile"]
        cells = []
        for names in split.values():
            missing = [n for n in names if n not in raw]
            if missing:
                raise SystemExit(f"{path}: no score for {missing[0]} ({len(missing)} files missing)")
            s, w = sum(raw[n] for n in names), sum(len(wins[n]) for n in names)
            cells.append(f"{100 * (s + A_FN[profile] * w) / (w + A_FN[profile] * w):.2f}")
        rows.append(f"| {detector} | {profile} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    body = ("Published NAB results (each file's raw score at the detector's own threshold, from NAB's repository), "
            "normalised over the series of each half (`nab_score.halves`) and over all the shared ones.\n\n"
            "| detector | profile | " + " | ".join(f"{k} ({len(v)})" for k, v in split.items()) + " |\n"
            "| --- | --- |" + " --- |" * len(split) + "\n" + "\n".join(rows))
    record.publish("Issue 19: the published detectors on the same halves (nab_published.py)", body, args.no_record)


if __name__ == "__main__":
    main()
