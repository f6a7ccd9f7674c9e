"""Variance-stabilised intensities before the raw-pixel route: do faint defects on dark parts (a
stain or a crack on the star field's black) count as much as those on bright ones? (issue 18)

A camera's noise grows with the light (photon noise: variance proportional to intensity), so a
difference of 0.02 on black is as telling as a larger one on a bright galaxy, yet a distance between
raw patches weighs them alike. The square root (Anscombe's variance-stabilising transform, up to
constants) and the logarithm stretch dark values before the patches are compared. Image / pixel
ROC-AUC per category of the inspection set, raw-pixel route (LatentDistance, patch score), fitted
on 180 training crops, each transform applied to the training and the test crops alike.

Run:  python benchmarks/intensity_transform.py --data DIR [--half dev] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import set_parser  # noqa: E402
from local_contrast import image_study, pair_header, pair_lines, test_truth  # noqa: E402

TRANSFORMS = {
    "as given": lambda x: x,
    "square root": lambda x: np.sqrt(x),
    "log (x + 1/64), rescaled to [0, 1]": lambda x: np.log(x + 1 / 64) / np.log(65) + 1,
}


def main() -> None:
    args = set_parser(__doc__).parse_args()
    import anomalib_lite as al
    from anomalib_lite.scoring.metrics import roc_auc

    cats = image_study(args)
    table = {name: [] for name in TRANSFORMS}
    t0 = time.perf_counter()
    for cat in cats:
        train, test = al.load_data(str(args.data / cat / "train")), al.load_data(str(args.data / cat / "test"))
        xtr = np.asarray(train.read(list(range(180)))[0], dtype=np.float32) / 255
        xte = np.asarray(test.read(list(range(len(test))))[0], dtype=np.float32) / 255
        labels, masks = test_truth(test)
        for name, f in TRANSFORMS.items():
            det = al.LatentDistance(image_score="patch", device="cpu").fit(f(xtr))
            maps = np.asarray(det.score_map(f(xte))).reshape(len(xte), -1)
            table[name].append((100 * roc_auc(labels, maps.max(1)), 100 * roc_auc(masks.reshape(-1), maps.reshape(-1))))
        print(cat, {k: f"{v[-1][0]:.1f}/{v[-1][1]:.1f}" for k, v in table.items()}, flush=True)
    lines = pair_header(["transform"], cats)
    lines += pair_lines(table, [])
    body = (f"Inspection set, **{args.half} half**, 128 px, raw-pixel route fitted on 180 training crops per "
            "category: image / pixel ROC-AUC (%) with the crops' intensities (in [0, 1]) as given or "
            f"transformed alike for training and test. {time.perf_counter() - t0:.0f} s.\n\n" + "\n".join(lines))
    record.publish(f"Images: variance-stabilised intensities, {args.half} half (issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
