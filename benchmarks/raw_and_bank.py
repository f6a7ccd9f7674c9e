"""Raw pixels and a fixed filter bank, combined after each is calibrated on held-out normals
(issue 18, item 2: "evidence from several detectors combined after each is calibrated").

The two see different defects on the dev half: raw 7-pixel patches see colour and shape
(contamination 89.7, extra material 98.3 image ROC-AUC) and miss blur and folds (57.0, 55.8),
whose scores lie among the good crops' (``score_spread.py``); the filter bank's local energies
(``filter_bank.py``, each channel standardised) see blur and folds (74.5, 67.3) and lose colour
and shape (74.2, 78.2). Each detector here is fitted on a category's training crops less a tenth;
its image scores become a surprise on the 20 held-out training crops' scores (the robust z of the
log-score, ``numeric.log_scale`` and ``numeric.surprise``), and the two surprises are combined as
LatentDistance combines its kinds of evidence (``numeric.combined``: the length of their softplus)
or by their maximum. Image ROC-AUC per category and defect kind, beside each detector alone.
``--context N``: both detectors score with mutual scoring against N of the test crops
(``set_context``), the held-out training crops too, so that the shift between a photograph's parts
that the whole test batch shares is not evidence.

Run:  python benchmarks/raw_and_bank.py --data DIR [--half dev] [--context 60] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from filter_bank import extractor, register  # noqa: E402
from inspection import _images, category, set_parser  # noqa: E402

import anomalib_lite as al  # noqa: E402
from anomalib_lite.data.sample_data import HALVES  # noqa: E402
from anomalib_lite.numeric import combined, log_scale, surprise  # noqa: E402
from anomalib_lite.scoring.metrics import roc_auc  # noqa: E402


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--context", type=int, default=0, metavar="N")
    args = ap.parse_args()
    torch.set_num_threads(2)
    register()
    t0 = time.perf_counter()
    rules = ("raw", "bank", "combined", "max")
    per_cat: dict = {r: {} for r in rules}
    per_kind: dict = {r: {} for r in rules}
    for cat in HALVES[args.half]["categories"]:
        fit_part, held, test, labels, names, _ = category(args.data, cat, 0)
        z = {}
        parts = {"raw": [_images(d) for d in (fit_part, held, test)],  # (decoded once; the bank reads the sources)
                 "bank": [fit_part, held, test]}
        for name, (fit_x, held_x, test_x) in parts.items():
            backbone = None if name == "raw" else extractor(fit_part, True)
            det = al.LatentDistance(backbone=backbone, image_score="patch", device="cpu", seed=0).fit(fit_x)
            if args.context:
                det.set_context(test_x, images=args.context)
            h = np.asarray(det.decision_function(held_x))
            s = np.asarray(det.decision_function(test_x))
            z[name] = surprise(torch.as_tensor(s), log_scale(torch.as_tensor(h)))
        scores = {"raw": z["raw"], "bank": z["bank"], "combined": combined(z["raw"], z["bank"]),
                  "max": torch.maximum(z["raw"], z["bank"])}
        good = labels == 0
        for r in rules:
            s = scores[r].numpy()
            per_cat[r][cat] = 100 * roc_auc(labels, s)
            for d in sorted(set(names) - {"good"}):
                keep = (names == d) | good
                per_kind[r].setdefault(d, []).append(100 * roc_auc(labels[keep], s[keep]))
            print(cat, r, f"{per_cat[r][cat]:.1f}", flush=True)
    cats, kinds = list(per_cat["raw"]), sorted(per_kind["raw"])
    lines = [f"| rule | {' | '.join(cats)} | mean | {' | '.join(kinds)} |",
             "| --- |" + " --- |" * (len(cats) + 1 + len(kinds))]
    for r in rules:
        lines.append(f"| {r} | " + " | ".join(f"{per_cat[r][c]:.1f}" for c in cats)
                     + f" | **{np.mean(list(per_cat[r].values())):.1f}** | "
                     + " | ".join(f"{np.mean(per_kind[r][d]):.1f}" for d in kinds) + " |")
    body = (f"Inspection set, **{args.half} half**, 128 px, fitted on 180 training crops per category: image ROC-AUC "
            "(%) of raw pixels and of the filter bank (each LatentDistance, patch score), each made a surprise on "
            "the 20 held-out training crops' scores, and the two combined (softplus length, or maximum); per "
            f"category, their mean, then per defect kind (mean over the half's categories). "
            + (f"Both with mutual scoring against {args.context} test crops (`--context`). " if args.context else "")
            + f"{time.perf_counter() - t0:.0f} s.\n\n" + "\n".join(lines))
    context = f", --context {args.context}" if args.context else ""
    record.publish(f"Images: raw pixels and a filter bank combined after calibration ({args.half} half{context}, "
                   "issue 18)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
