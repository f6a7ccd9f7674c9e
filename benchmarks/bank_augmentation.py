"""Transformed copies of the training crops in the patch bank: do flips, the eight rotations and
flips, or brightness and contrast changes widen "normal" enough to absorb the drift between the
parts of a photograph? (issue 18; rules tried on the dev half)

Good test crops come from another part of each photograph than the training crops, and sit
farther from the bank than unseen training-part crops do (``inspection.py``'s median p). A texture
is, as a statistic, often the same under a flip or a quarter turn, and a part of a photograph lit a
little differently is still normal; adding such copies of the training crops before the bank is
built (and its coreset chosen) lets a good crop of the other part find a near patch. The risk: a
copy that looks like a defect (a blur's smooth patch, a fold's turned edge) teaches the bank that
it is normal. LatentDistance with every default on raw pixels, fitted on the training crops less a
tenth (``inspection.py``'s split), scored on the test crops. Image / pixel ROC-AUC / PRO per
category, then image ROC-AUC per defect kind.

Run:  python benchmarks/bank_augmentation.py --data DIR [--half dev] [--no-record]
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


def flips(x: torch.Tensor) -> torch.Tensor:
    """Each crop, mirrored left-right, up-down, and both (4 times the crops)."""
    return torch.cat([x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)])


def dihedral(x: torch.Tensor) -> torch.Tensor:
    """The eight rotations by quarter turns and their mirror images (8 times the crops)."""
    return torch.cat([flips(x), flips(x.transpose(-1, -2))])


def photometric(x: torch.Tensor) -> torch.Tensor:
    """Each crop as it is, with its contrast x 1.15 and x 0.87 about its mean, and 0.05 brighter
    and darker (5 times the crops)."""
    m = x.mean((1, 2, 3), keepdim=True)
    out = [x] + [((x - m) * a + m + b).clamp(0, 1) for a, b in ((1.15, 0.0), (0.87, 0.0), (1.0, 0.05), (1.0, -0.05))]
    return torch.cat(out)


VARIANTS = {"as given": lambda x: x, "flips (x4)": flips, "rotations and flips (x8)": dihedral,
            "brightness and contrast (x5)": photometric}


def main() -> None:
    args = set_parser(__doc__).parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cells = {v: {} for v in VARIANTS}
    kinds = {v: {} for v in VARIANTS}
    seconds = {v: [] for v in VARIANTS}
    cats = sample_data.HALVES[args.half]["categories"]
    for cat in cats:
        fit_part, _, test, labels, names, masks = category(args.data, cat)
        x_fit, x_test = _images(fit_part), _images(test)
        for v, grow in VARIANTS.items():
            t = time.perf_counter()
            det = al.LatentDistance(device="cpu", seed=0).fit(grow(x_fit))
            r = _figures(v, labels, names, np.asarray(det.decision_function(x_test)),
                         np.asarray(det.score_map(x_test)), masks)
            seconds[v].append(time.perf_counter() - t)
            cells[v][cat] = (r["image"], r["pixel_roc_auc"], r["pro"])
            for d, auc in r["per"].items():
                kinds[v].setdefault(d, []).append(auc)
            print(cat, v, " / ".join(f"{a:.1f}" for a in cells[v][cat]), f"{seconds[v][-1]:.0f} s", flush=True)
    fmt = lambda t: " / ".join(f"{a:.1f}" for a in t)
    rows = [f"| {v} | " + " | ".join(fmt(cells[v][c]) for c in cats) + f" | **{fmt(np.mean(list(cells[v].values()), 0))}**"
            f" | {np.mean(seconds[v]):.0f} |" for v in VARIANTS]
    ks = sorted(kinds["as given"])
    krows = [f"| {v} | " + " | ".join(f"{np.mean(kinds[v][d]):.1f}" for d in ks) + " |" for v in VARIANTS]
    body = (f"Inspection set, **{args.half} half**, LatentDistance with every default on raw pixels, its bank built "
            f"from the training crops less a tenth and their transformed copies (the script's docstring); image / "
            f"pixel ROC-AUC / PRO, then image ROC-AUC by defect kind. {time.perf_counter() - t0:.0f} s in all.\n\n"
            f"| bank | " + " | ".join(cats) + " | mean | fit + score s, mean |\n| --- |" + " --- |" * (len(cats) + 2)
            + "\n" + "\n".join(rows) + "\n\n| bank | " + " | ".join(ks) + " |\n| --- |" + " --- |" * len(ks) + "\n"
            + "\n".join(krows))
    record.publish(f"Images: transformed copies of the training crops in the bank ({args.half} half, issue 18)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
