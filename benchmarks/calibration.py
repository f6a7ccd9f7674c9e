"""Thresholds that keep their promise (issue 18): the false-positive rate achieved on new normal
data at the threshold ``anomaly fit`` calibrates, against its target.

Each case fits ``LatentDistance()`` (every default) the way ``anomaly fit`` does
(``workflows.fit_and_save``: a 10 % hold-out calibrates when it can certify the target, else 5-fold
cross-fitting on all the samples) and counts the normal test samples above the threshold, with
the exact binomial 95 % interval of that rate (``metrics.fpr_interval``):

* MNIST digit 7, all 6,265 training 7s, ``--fpr 0.05``: the 1,028 test 7s;
* MNIST digit 7, 200 training 7s, ``--fpr 0.01``: the hold-out (20) cannot certify 1 %, so it
  cross-fits; the 1,028 test 7s;
* the same with 200 training 7s at ``--fpr 0.05``.

Run:  python benchmarks/calibration.py
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import anomalib_lite as al
from anomalib_lite.app import workflows
from anomalib_lite.scoring.metrics import fpr_interval

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

CASES = [("mnist:train?classes=7", 0.05), ("mnist:train?classes=7&limit=200", 0.01),
         ("mnist:train?classes=7&limit=200", 0.05)]


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    normals = al.load_data("mnist:test?classes=7")
    load = os.getloadavg()
    lines = ["| training data | target FPR | how calibrated | achieved FPR on the 1,028 test 7s | 95 % interval | "
             "target inside | s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for spec, fpr in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            line = workflows.fit_and_save(al.LatentDistance(device="cpu"), spec, Path(tmp) / "m.anomaly", fpr=fpr)
            det = al.load(Path(tmp) / "m.anomaly")
        r = fpr_interval(det.decision_function(normals) > det.threshold_, target=fpr)
        how = "5-fold cross-fitting" if "cross-fitting" in line else "10 % hold-out"
        row = (f"| {spec} | {fpr:g} | {how} | {100 * r['fpr']:.2f} % ({r['false_positives']} of {r['normals']}) | "
               f"{100 * r['low']:.2f}-{100 * r['high']:.2f} % | {'yes' if r['target_inside'] else 'no'} | "
               f"{time.perf_counter() - t0:.0f} |")
        print(row, flush=True)
        lines.append(row)
    body = (f"LatentDistance with every default (raw pixels, combined image score), fitted as `anomaly fit` does. "
            f"Load average at start: {load[0]:.1f}.\n\n" + "\n".join(lines))
    record.publish("Thresholds that keep their promise: achieved false-positive rates on MNIST (calibration.py)", body, args.no_record)


if __name__ == "__main__":
    main()
