"""`anomaly fit --data` with no detector on digits: the offline image route (resnet18 pretrained by
`segment` on the training images, no ImageNet weights) by its patch score (what the route uses)
and by the combined score (both kinds of evidence; the 7s read as aligned objects), issue 18.

One digit normal (its first 2,000 training images), the first 3,000 test digits scored, the
other digits anomalous; image ROC-AUC (%). Dev digits 0, 2, 4, 6, 8 and held-out 1, 3, 5, 7, 9
(the split of `image_scores.py`).

Run:  python benchmarks/offline_route_digits.py [--half dev|held-out|all] [--no-record]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

HALVES = {"dev": [0, 2, 4, 6, 8], "held-out": [1, 3, 5, 7, 9]}


def main() -> None:
    ap = record.parser(__doc__.splitlines()[0])
    ap.add_argument("--half", default="all", choices=["dev", "held-out", "all"])
    args = ap.parse_args()
    import anomalib_lite as al
    import backbones
    from anomalib_lite.app.workflows import choose_detector
    from anomalib_lite.scoring.metrics import roc_auc

    torch.set_num_threads(2)
    backbones.weights.imagenet_cached = lambda name: False  # the offline route, as on a machine without them
    digits = HALVES["dev"] + HALVES["held-out"] if args.half == "all" else HALVES[args.half]
    test = al.load_data("mnist:test?limit=3000")
    lines = ["| digit | patch (the route) | combined | position share | fit + score s |", "| --- | --- | --- | --- | --- |"]
    table = {}
    for d in sorted(digits):
        train = al.load_data(f"mnist:train?classes={d}&limit=2000")
        labels = np.asarray(test.anomaly_labels([str(d)]))
        t0 = time.perf_counter()
        det = choose_detector(train, device="cpu")[0].fit(train)  # the route (patch score)
        # the combined score on the same pretrained backbone (pretraining is the route's, not the score's)
        both = type(det)(**{**det.get_params(), "backbone": det.extractor_, "pretrain": None, "image_score": "combined"})
        both.fit(train)
        row = {name: 100 * roc_auc(labels, d.decision_function(test)) for name, d in (("patch", det), ("combined", both))}
        share = both.position_share_
        table[d] = row
        lines.append(f"| {d} | {row['patch']:.2f} | {row['combined']:.2f} | {share:.2f} | {time.perf_counter() - t0:.0f} |")
        print(lines[-1], flush=True)
    for half, ds in HALVES.items():
        ds = [d for d in ds if d in table]
        if ds:
            lines.append(f"| **{half} mean** | **{np.mean([table[d]['patch'] for d in ds]):.2f}** | "
                         f"**{np.mean([table[d]['combined'] for d in ds]):.2f}** | | |")
    body = ("The offline image route of `anomaly fit --data` (`workflows.choose_detector`, ImageNet weights made "
            "absent) on MNIST: one digit's first 2,000 training images fit, the first 3,000 test digits scored "
            "(other digits anomalous); image ROC-AUC (%) by the route's patch score and by the combined score.\n\n"
            + "\n".join(lines))
    record.publish("Digits through the offline image route: patch vs combined (issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
