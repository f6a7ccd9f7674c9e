"""Each image standardised on its own before the raw-pixel route: does it remove the drift between
parts of a photograph? (issue 18; a rule tried on the dev half, not kept)

Good test crops come from another part of each photograph than the training crops. When that part
is lit or coloured differently, every raw-pixel patch of a good crop sits farther from the bank.
Standardising each image per channel (zero mean, unit standard deviation, as instance
normalisation does), for the training crops and the test crops alike, removes a global shift of
brightness and contrast before patches are compared, and leaves a local defect. The score-level
version of the idea (the map's maximum less its median) is ``local_contrast.py``'s. Image / pixel
ROC-AUC / PRO per category of the inspection set, LatentDistance with every default on raw pixels,
fitted on the training crops less a tenth (``inspection.py``'s split).

Run:  python benchmarks/instance_norm.py --data DIR [--half dev] [--no-record]
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
from inspection import _figures, _images, category, set_parser  # noqa: E402

import anomalib_lite as al  # noqa: E402
from anomalib_lite.data import sample_data  # noqa: E402


def standardised(x: torch.Tensor) -> torch.Tensor:
    """Each image (N, C, H, W) per channel to zero mean and unit standard deviation."""
    return (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True).clamp_min(1e-3)


def main() -> None:
    ap = set_parser(__doc__)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0, rows, means = time.perf_counter(), [], {"as given": [], "each image standardised": []}
    for cat in sample_data.HALVES[args.half]["categories"]:
        fit_part, _, test, labels, names, masks = category(args.data, cat)
        x_fit, x_test = _images(fit_part), _images(test)
        cells = []
        for label, prep in (("as given", lambda x: x), ("each image standardised", standardised)):
            det = al.LatentDistance(device="cpu", seed=0).fit(prep(x_fit))
            b = prep(x_test)
            r = _figures(label, labels, names, np.asarray(det.decision_function(b)), np.asarray(det.score_map(b)), masks)
            means[label].append((r["image"], r["pixel_roc_auc"], r["pro"]))
            cells.append(f"{r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f}")
            print(cat, label, cells[-1], flush=True)
        rows.append(f"| {cat} | " + " | ".join(cells) + " |")
    mean = " | ".join("**" + " / ".join(f"{v:.1f}" for v in np.mean(means[k], 0)) + "**" for k in means)
    body = (f"LatentDistance with every default on raw pixels, fitted on the training crops less a tenth, scored on "
            f"the test crops; the images as given, or each image standardised per channel first (train and test "
            f"alike). Inspection set, {args.half} half; image / pixel ROC-AUC / PRO; "
            f"{time.perf_counter() - t0:.0f} s.\n\n| category | as given | each image standardised |\n"
            f"| --- | --- | --- |\n" + "\n".join(rows) + f"\n| **mean** | {mean} |")
    record.publish(f"Images that hold: each image standardised on its own (instance_norm.py, {args.half} half)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
