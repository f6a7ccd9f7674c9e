"""Two detectors' evidence combined after each is calibrated on normal images: the inspection set's
raw-pixel and dense routes (issue 18, item 2: "evidence from several detectors combined after each
is calibrated on held-out normals").

It reads the image scores that ``benchmarks/inspection.py --save DIR`` keeps per category and
route (test scores, labels, defect kinds, and the route's cross-fitted calibration scores: every
training image scored by a model fitted without it). Each route's test scores become a surprise on
its own calibration scores (``numeric.log_scale`` / ``numeric.surprise``: the robust z of the
log-score, as the combined image score of LatentDistance does for its two kinds of evidence), and
the surprises are combined as ``numeric.combined`` does (the length of their softplus), or by their
maximum. Image ROC-AUC per category and defect kind, beside each route alone.

Run:  python benchmarks/inspection.py --half dev --routes raw,dense --save DIR   (then)
      python benchmarks/inspection_ensemble.py --save DIR --half dev [--no-record]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def surprises(run: dict) -> np.ndarray:
    from anomalib_lite.numeric import log_scale, surprise

    scale = log_scale(torch.as_tensor(run["calibration"]))
    return surprise(torch.as_tensor(run["scores"]), scale).numpy()


def main() -> None:
    ap = record.parser(__doc__.splitlines()[0])
    ap.add_argument("--save", type=Path, required=True, help="the folder inspection.py --save wrote")
    ap.add_argument("--half", required=True, choices=["dev", "held-out"])
    ap.add_argument("--routes", default="raw,dense")
    args = ap.parse_args()
    from anomalib_lite.data.sample_data import HALVES
    from anomalib_lite.scoring.metrics import roc_auc
    from anomalib_lite.numeric import combined

    a, b = args.routes.split(",")
    rules = {a: None, b: None, "combined (softplus length)": "combined", "max of the surprises": "max"}
    cats = HALVES[args.half]["categories"]
    kinds = HALVES[args.half]["defects"]
    table = {rule: {} for rule in rules}
    for cat in cats:
        runs = {r: dict(np.load(args.save / f"{cat}_{r}.npz")) for r in (a, b)}
        labels, names = runs[a]["labels"], runs[a]["names"]
        assert np.array_equal(labels, runs[b]["labels"]) and np.array_equal(names, runs[b]["names"])
        z = {r: surprises(runs[r]) for r in (a, b)}
        for rule, how in rules.items():
            if how is None:
                s = runs[rule]["scores"]
            elif how == "combined":
                s = combined(torch.as_tensor(z[a]), torch.as_tensor(z[b])).numpy()
            else:
                s = np.maximum(z[a], z[b])
            table[rule][cat] = 100 * roc_auc(labels, s)
            for k in kinds:
                keep = (names == k) | (labels == 0)
                table[rule].setdefault(k, []).append(100 * roc_auc(labels[keep], s[keep]))
    lines = [f"| rule | {' | '.join(cats)} | mean image | {' | '.join(kinds)} |",
             "|" + "---|" * (len(cats) + len(kinds) + 2)]
    for rule, row in table.items():
        mean = np.mean([row[c] for c in cats])
        lines.append(f"| {rule} | " + " | ".join(f"{row[c]:.1f}" for c in cats) + f" | **{mean:.1f}** | "
                     + " | ".join(f"{np.mean(row[k]):.1f}" for k in kinds) + " |")
        print(lines[-1], flush=True)
    body = (f"Inspection set, **{args.half} half**: image ROC-AUC (%) of the {a} and {b} routes (the scores "
            f"`inspection.py --save` kept, 128 px, 180 training crops), each alone and their evidence combined "
            f"after each is made a surprise on its own cross-fitted calibration scores (robust z of the log-score). "
            f"Per category, then per defect kind (mean over the half's categories).\n\n" + "\n".join(lines))
    record.publish(f"Images: two routes' evidence combined after calibration, {args.half} half (issue 18)", body,
                   args.no_record)


if __name__ == "__main__":
    main()
