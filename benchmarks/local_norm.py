"""Local contrast normalisation before the raw-pixel route: does it remove the drift between parts
of a photograph and keep the defects? (issue 18; a rule tried on the dev half)

Good test crops come from another part of each photograph than the training crops: a moon crop
from the maria is darker, a gravel crop from a shaded part has less contrast. Standardising each
image as a whole (``instance_norm.py``) lost 6.7 image points on the dev half: it hides defects
that shift an image's mean. Local contrast normalisation (Jarrett et al. 2009; the first layers of
early CNNs) removes the slowly varying part instead: each pixel's grey level less its Gaussian
neighbourhood's mean (sigma ``--sigma`` px, about a patch), over the neighbourhood's standard
deviation (at least the 10th percentile of it over the training crops, so flat regions are not
blown up into noise). The colour channels keep their differences from the grey level, so a stain's
tint stays. What it keeps: local structure (a crack, a cut, a hole's edge, blur's lost detail);
what it drops: illumination, albedo and contrast that change slowly across a photograph, and with
them a defect that is only a change of brightness over a large region.

Variants: ``as given`` (LatentDistance with every default on raw pixels), ``LCN`` (the images
normalised), ``both`` (the raw channels and the normalised ones side by side: the kNN sees both).
Image / pixel ROC-AUC / PRO per category, fitted on the training crops less a tenth.

Run:  python benchmarks/local_norm.py --data DIR [--half dev] [--sigma 4] [--no-record]
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


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), reflecting at the borders."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def local_std(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The grey level's local mean and standard deviation (N, 1, H, W)."""
    g = x.mean(1, keepdim=True)
    m = _blur(g, sigma)
    return m, (_blur((g - m) ** 2, sigma)).clamp_min(0).sqrt()


def lcn(x: torch.Tensor, sigma: float, floor: float) -> torch.Tensor:
    """Each channel less the grey level's local mean, over its local standard deviation."""
    m, s = local_std(x, sigma)
    return (x - m) / s.clamp_min(floor)


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--sigma", type=float, default=4.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    labels_ = ("as given", "LCN", "both")
    t0, rows, means = time.perf_counter(), [], {k: [] for k in labels_}
    per: dict = {k: {} for k in labels_}
    for cat in sample_data.HALVES[args.half]["categories"]:
        fit_part, _, test, labels, names, masks = category(args.data, cat)
        x_fit, x_test = _images(fit_part), _images(test)
        floor = float(torch.quantile(local_std(x_fit, args.sigma)[1].flatten()[::7], 0.1))
        preps = {"as given": lambda x: x, "LCN": lambda x: lcn(x, args.sigma, floor),
                 "both": lambda x: torch.cat([x, 0.1 * lcn(x, args.sigma, floor)], 1)}
        cells = []
        for label in labels_:
            det = al.LatentDistance(device="cpu", seed=0).fit(preps[label](x_fit))
            b = preps[label](x_test)
            r = _figures(label, labels, names, np.asarray(det.decision_function(b)), np.asarray(det.score_map(b)), masks)
            means[label].append((r["image"], r["pixel_roc_auc"], r["pro"]))
            for d, v in r["per"].items():
                per[label].setdefault(d, []).append(v)
            cells.append(f"{r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f}")
            print(cat, label, cells[-1], flush=True)
        rows.append(f"| {cat} | " + " | ".join(cells) + " |")
    mean = " | ".join("**" + " / ".join(f"{v:.1f}" for v in np.mean(means[k], 0)) + "**" for k in labels_)
    kinds = sorted(per["as given"])
    by_kind = "\n".join(f"| {k} | " + " | ".join(f"{np.mean(per[k][d]):.1f}" for d in kinds) + " |" for k in labels_)
    body = (f"LatentDistance with every default on raw pixels, fitted on the training crops less a tenth, scored on "
            f"the test crops: the images as given, locally contrast-normalised (sigma {args.sigma:g} px; the "
            f"script's docstring), or both side by side (the normalised channels weighted 0.1). Inspection set, "
            f"{args.half} half; image / pixel ROC-AUC / PRO; {time.perf_counter() - t0:.0f} s.\n\n"
            f"| category | {' | '.join(labels_)} |\n| --- | --- | --- | --- |\n" + "\n".join(rows)
            + f"\n| **mean** | {mean} |\n\nImage ROC-AUC by defect kind (mean over the half's categories):\n\n"
            f"| variant | {' | '.join(kinds)} |\n| --- |{' --- |' * len(kinds)}\n{by_kind}")
    record.publish(f"Images that hold: local contrast normalisation (local_norm.py, {args.half} half)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
