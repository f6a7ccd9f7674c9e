"""Three ways to read more from raw-pixel patches on the inspection set (issue 18; rules tried on
the dev half, none kept). Each is one change to LatentDistance with every default:

* ``scales``: a large faint defect (a stain, a blur, a fold) raises many patches a little, and the
  map's maximum sees one of them. So the map is also blurred at sigma 4, 8 and 16 px (at 128 px),
  each maximum is made a robust z of its log on the held-out training crops, and the image score is
  the largest z (a scan over scales).
* ``shape``: the L2 distance between raw patches is dominated by contrast, and a patch that lost
  detail is near every low-contrast patch of the bank. So each patch is compared by its shape
  (standardised to zero mean and unit spread, then unit length), its level and its log contrast
  (the two standardised over the fit crops' patches), each in units of its own spread.
* ``whole-bank``: a stochastic texture has many distinct patches; the coreset keeps 10000. So the
  bank keeps every patch (``coreset_ratio=1``, ``memory_size=200000``).

Image / pixel ROC-AUC / PRO per category, and image ROC-AUC per defect kind (mean over the half's
categories). Fit on the training crops less a tenth (``inspection.py``'s split); the tenth held
out is what ``scales`` standardises on.

Run:  python benchmarks/patch_evidence.py --data DIR [--half dev] [--variants ...] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote; whole-bank takes about 20 minutes a half)
"""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import _figures, _images, category, set_parser  # noqa: E402

import anomalib_lite as al  # noqa: E402
from anomalib_lite.components import features  # noqa: E402
from anomalib_lite.data import sample_data  # noqa: E402
from anomalib_lite.numeric import gaussian_blur  # noqa: E402

VARIANTS = ("default", "scales", "shape", "whole-bank")
SCALES = (4.0, 8.0, 16.0)  # extra blur, px at 128 px


def robust_z(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    med = np.median(ref)
    return (v - med) / (1.4826 * np.median(np.abs(ref - med)) + 1e-12)


def scan_scales(maps: np.ndarray, held_maps: np.ndarray) -> np.ndarray:
    """Image score: the largest robust z (on the held-out crops) of the log-maximum of the map at
    its own scale and blurred at each of :data:`SCALES`."""
    zs = []
    for s in (0.0, *SCALES):
        def peak(m):
            t = torch.as_tensor(m, dtype=torch.float32)
            t = t if s == 0 else gaussian_blur(t, sigma=s * t.shape[-1] / 128)
            return np.log(t.flatten(1).amax(1).numpy())
        zs.append(robust_z(peak(maps), peak(held_maps)))
    return np.max(zs, axis=0)


@contextmanager
def shape_level_patches(fit_images: torch.Tensor):
    """Raw patches as [shape, level, log contrast] while the block runs (Featurizer restored after)."""
    plain = features.Featurizer.patches

    def split(self, x):
        p = plain(self, x)
        mu, sd = p.mean(1, keepdim=True), p.std(1, keepdim=True)
        return (p - mu) / (sd + 0.01) / p.shape[1] ** 0.5, mu, torch.log(sd + 0.01)

    _, mu, ls = split(features.Featurizer(), fit_images)
    m0, s0, l0, t0 = mu.mean(), mu.std(), ls.mean(), ls.std()

    def patches(self, x):
        shape, mu, ls = split(self, x)
        return torch.cat([shape, (mu - m0) / s0, (ls - l0) / t0], 1)

    features.Featurizer.patches = patches
    try:
        yield
    finally:
        features.Featurizer.patches = plain


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_all, res = time.perf_counter(), {v: [] for v in args.variants}
    cats = sample_data.HALVES[args.half]["categories"]
    for cat in cats:
        fit_part, held, test, labels, names, masks = category(args.data, cat)
        for var in args.variants:
            t0 = time.perf_counter()
            kw = {"memory_size": 200_000, "coreset_ratio": 1.0} if var == "whole-bank" else {}
            with shape_level_patches(_images(fit_part)) if var == "shape" else nullcontext():
                det = al.LatentDistance(device="cpu", seed=0, **kw).fit(fit_part)
                scores, maps = (np.concatenate(v) for v in zip(*det._scores_and_maps(test)))
                if var == "scales":
                    held_maps = np.concatenate([m for _, m in det._scores_and_maps(held)])
                    scores = scan_scales(maps, held_maps)
            r = _figures(var, labels, names, scores, maps, masks)
            r["seconds"] = time.perf_counter() - t0
            res[var].append(r)
            print(f"{cat} {var}: {r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f} ({r['seconds']:.0f} s)",
                  flush=True)
    kinds = sorted(res[args.variants[0]][0]["per"])
    head = "| variant | " + " | ".join(cats) + " | mean | fit + score s, mean |"
    lines = [head, "|" + " --- |" * (len(cats) + 3)]
    for var, rs in res.items():
        cells = [f"{r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f}" for r in rs]
        mean = " / ".join(f"{np.mean([r[k] for r in rs]):.1f}" for k in ("image", "pixel_roc_auc", "pro"))
        lines.append(f"| {var} | " + " | ".join(cells) + f" | **{mean}** | {np.mean([r['seconds'] for r in rs]):.0f} |")
    lines += ["", "| variant | " + " | ".join(kinds) + " |", "|" + " --- |" * (len(kinds) + 1)]
    for var, rs in res.items():
        lines.append(f"| {var} | " + " | ".join(f"{np.mean([r['per'][d] for r in rs]):.1f}" for d in kinds) + " |")
    body = (f"Inspection set, **{args.half} half**, LatentDistance with every default on raw pixels and one change "
            f"each (the script's docstring); image / pixel ROC-AUC / PRO, then image ROC-AUC by defect kind. "
            f"{time.perf_counter() - t_all:.0f} s in all.\n\n" + "\n".join(lines))
    record.publish(f"Images: three ways to read more from raw-pixel patches ({args.half} half, issue 18)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
