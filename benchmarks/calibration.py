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

Each case also says whether ``anomaly score`` would warn of drift (``thresholds.drift``: more than
half of a batch above three quarters of the calibration scores) on the test 7s (it should not) and
on the first 2,000 test digits (nine in ten are other digits: it should). ``--images DIR`` adds the
inspection set's categories of ``--half`` (a set ``sample_data.make_image_set`` wrote): fitted on
``CAT/train`` at ``--fpr 0.01``, the good test crops (from another part of the photograph) scored.

Run:  python benchmarks/calibration.py [--images DIR [--half dev]]
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
from anomalib_lite.data import sample_data
from anomalib_lite.scoring.metrics import fpr_interval
from anomalib_lite.scoring.thresholds import DRIFT_LEVEL, drift

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

CASES = [("mnist:train?classes=7", 0.05), ("mnist:train?classes=7&limit=200", 0.01),
         ("mnist:train?classes=7&limit=200", 0.05)]


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--images", type=Path, default=None, help="an inspection set: its good test crops too")
    ap.add_argument("--half", choices=list(sample_data.HALVES), default="dev")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    normals, mixed = al.load_data("mnist:test?classes=7"), al.load_data("mnist:test?limit=2000")
    load = os.getloadavg()
    lines = ["| training data | target FPR | how calibrated | achieved FPR on the 1,028 test 7s | 95 % interval | "
             "target inside | drift warning: test 7s / 2,000 test digits | s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for spec, fpr in CASES:
        det, scores, cells, t0 = _case(spec, fpr, normals, 2)
        row = (f"| {spec} | {fpr:g} | {cells} | {_warns(det, scores)} / {_warns(det, det.decision_function(mixed))} | "
               f"{time.perf_counter() - t0:.0f} |")
        print(row, flush=True)
        lines.append(row)
    if args.images is not None:
        lines += ["", f"The inspection set's {args.half} half: fitted on a category's 200 training crops at fpr 0.01, "
                  "the 60 good test crops scored.", "",
                  "| category | how calibrated | achieved FPR on the good test crops | 95 % interval | target inside | "
                  "drift warning | s |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for cat in sample_data.HALVES[args.half]["categories"]:
            good = al.load_data(str(args.images / cat / "test" / "good"))
            det, scores, cells, t0 = _case(str(args.images / cat / "train"), 0.01, good, 1)
            row = f"| {cat} | {cells} | {_warns(det, scores)} | {time.perf_counter() - t0:.0f} |"
            print(row, flush=True)
            lines.append(row)
    body = (f"LatentDistance with every default (raw pixels, combined image score), fitted as `anomaly fit` does. "
            f"Load average at start: {load[0]:.1f}.\n\n" + "\n".join(lines))
    title = "MNIST" + (" and the inspection set" if args.images is not None else "")
    record.publish(f"Thresholds that keep their promise: achieved false-positive rates on {title} (calibration.py)", body,
                   args.no_record)


def _case(spec: str, fpr: float, normals, digits: int):
    """Fit ``LatentDistance()`` on ``spec`` as ``anomaly fit`` does and score ``normals``: (the
    detector, their scores, the table's cells from "how calibrated" to "target inside", start time)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        line = workflows.fit_and_save(al.LatentDistance(device="cpu"), spec, Path(tmp) / "m.anomaly", fpr=fpr)
        det = al.load(Path(tmp) / "m.anomaly")
    scores = det.decision_function(normals)
    r = fpr_interval(scores > det.threshold_, target=fpr)
    how = "5-fold cross-fitting" if "cross-fitting" in line else "10 % hold-out"
    cells = (f"{how} | {100 * r['fpr']:.{digits}f} % ({r['false_positives']} of {r['normals']}) | "
             f"{100 * r['low']:.{digits}f}-{100 * r['high']:.{digits}f} % | {'yes' if r['target_inside'] else 'no'}")
    return det, scores, cells, t0


def _warns(det, scores) -> str:
    """Whether ``anomaly score`` warns of drift on these scores: "yes (share)" or "no (share)"."""
    p = det.p_values(scores)
    return f"{'yes' if drift(p) else 'no'} ({100 * (p <= DRIFT_LEVEL).mean():.0f} % at p <= {DRIFT_LEVEL:g})"


if __name__ == "__main__":
    main()
