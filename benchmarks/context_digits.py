"""Mutual scoring (``--context``) on digits: what it does where the anomalies are few, where they
are most of the batch, and where the whole batch drifted (issue 18).

``LatentDistance()`` with every default (the combined image score) fits the training 7s less a
tenth, and the tenth calibrates it at 5 %. Three batches, each scored without and with
``set_context(batch)`` (60 reference images, the default):

* a lot: the 1,028 test 7s and 114 other test digits (a tenth of the lot, a seeded draw);
* the first 2,000 test digits, nine in ten of them other digits (anomalies are most of the batch,
  which mutual scoring is not for: a kind of anomaly in more than 30 % of the references is
  explained by them);
* the lot through a dimmer camera (every pixel times 0.7, and 0.1 of background light added):
  a drift every image shares.

ROC-AUC of the batch's labels (7 normal), and the false-positive rate achieved on its 7s at the
threshold calibrated for 5 %.

Run:  python benchmarks/context_digits.py [--no-record]
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import anomalib_lite as al
from anomalib_lite.components.context import CONTEXT_IMAGES
from anomalib_lite.scoring.metrics import roc_auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def sevens_and_lot():
    """``LatentDistance()`` with every default fitted on MNIST's training 7s less a tenth and
    calibrated at 5 % on the tenth; the test digits (N, 1, 28, 28) in [0, 1] and their labels; the
    lot: the indices of the 1,028 test 7s and of 114 other test digits (a seeded draw)."""
    fit_part, held = al.load_data("mnist:train?classes=7").split(0.1, seed=0)
    det = al.LatentDistance(seed=0).fit(fit_part).calibrate(held, fpr=0.05)
    test = al.load_data("mnist:test")
    x, _ = test.read(range(len(test)))
    x = torch.as_tensor(np.asarray(x)).float()
    x = (x / 255 if x.max() > 1 else x).reshape(len(x), 1, 28, 28)
    digits = np.asarray(test.targets)
    sevens = np.flatnonzero(digits == 7)
    others = np.random.default_rng(0).choice(np.flatnonzero(digits != 7), 114, replace=False)
    return det, x, digits, np.sort(np.concatenate([sevens, others]))


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0, load = time.perf_counter(), os.getloadavg()
    det, x, digits, lot = sevens_and_lot()
    cases = [("lot: 1,028 test 7s + 114 other digits", lot, 1.0, 0.0),  # (name, test digits, gain, light)
             ("first 2,000 test digits (9 in 10 other digits)", np.arange(2000), 1.0, 0.0),
             ("the lot through a dimmer camera (x 0.7 + 0.1)", lot, 0.7, 0.1)]
    lines = ["| batch | ROC-AUC: no context / --context 60 | FPR on its 7s at the 5 % threshold: no context / "
             "--context 60 | scoring s: no context / --context 60 |", "| --- | --- | --- | --- |"]
    for name, rows, gain, light in cases:
        b, y = x[rows] * gain + light, (digits[rows] != 7).astype(int)
        cells = []
        for images in (0, CONTEXT_IMAGES):
            t = time.perf_counter()
            s = det.set_context(b, images=images).decision_function(b)
            cells.append((100 * roc_auc(y, s), 100 * np.mean(s[y == 0] > det.threshold_), time.perf_counter() - t))
        det.set_context(b, images=0)
        lines.append(f"| {name} | {cells[0][0]:.2f} / {cells[1][0]:.2f} | {cells[0][1]:.1f} % / {cells[1][1]:.1f} % | "
                     f"{cells[0][2]:.0f} / {cells[1][2]:.0f} |")
        print(lines[-1], flush=True)
    body = (f"`LatentDistance()` (every default: the combined score) fitted on MNIST's training 7s less a tenth, "
            f"calibrated at 5 % on the tenth; each batch scored without and with `set_context(batch)` "
            f"({CONTEXT_IMAGES} reference images: what `anomaly score --context {CONTEXT_IMAGES}` does). "
            f"{time.perf_counter() - t0:.0f} s in all; load average "
            f"(1/5/15 min) at start {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}.\n\n" + "\n".join(lines))
    record.publish("Mutual scoring (--context) on digits (issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
