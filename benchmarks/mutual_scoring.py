"""Mutual scoring across the test batch (MuSc, Li et al., ICLR 2024) on the inspection set: do the
other test images explain the drift between the parts of a photograph? (issue 18)

A normal patch has near neighbours in most other test images, which share the test part's look,
whatever its drift from the training part; a defect patch has them only in the few images that
hold a similar defect. Rules fixed before any result: per patch, its nearest-patch distance to each
of 30 other test images (a seeded draw per image), sorted, and the mean of the smallest 30 %
(``mutual``); ``bank-or-mutual`` takes the smaller of that and the bank's distance (a patch is
normal when the training crops or the other test crops explain it). ``context`` is the library's
form of ``bank-or-mutual`` (``LatentDistance.set_context``): one seeded draw of reference images
for the whole batch (``--images``: 30 here by default, as the per-image rules; ``--images
30,60,120`` is how the library's default of 60 was chosen, on the dev half), each image against
the references that are not itself, so a score does not depend on how the batch is chunked. Maps are upsampled and blurred as LatentDistance's;
the image score is the map's maximum. Routes: raw pixels (every default), resnet18 random
layer1+layer2 (patch score), and the offline route (``dense``: the same pretrained with
``pretrain="segment"``). Fit on the training crops less a tenth (``inspection.py``'s split); the
test crops of a category are the batch. Achieved FPR: share of the good test crops above the
threshold cross-calibrated for 1 % on the training crops (the same threshold for every rule: a
rule that takes the smaller distance can only lower it).

Run:  python benchmarks/mutual_scoring.py --data DIR [--half dev] [--routes raw,r18,dense] [--no-record]
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
from anomalib_lite.numeric import patch_maps  # noqa: E402

OTHERS, SHARE, CHUNK = 30, 0.3, 32
_R18 = {"backbone": "resnet18", "weights": "random", "layers": ["layer1", "layer2"], "image_score": "patch"}
ROUTES = {"raw": {}, "r18": _R18, "dense": {**_R18, "pretrain": "segment", "pretrain_steps": 250}}
RULES = ("bank", "mutual", "bank-or-mutual", "context")


def mutual(p: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(n, h, w) mutual scores of a batch's patch features ``p`` (n, d, h, w)."""
    n, d, h, w = p.shape
    rows = p.permute(0, 2, 3, 1).reshape(n, h * w, d).float()
    rng, k = np.random.default_rng(seed), max(1, round(SHARE * OTHERS))
    out = torch.empty(n, h * w)
    for i in range(n):
        others = rng.choice(np.delete(np.arange(n), i), min(OTHERS, n - 1), replace=False)
        nearest = torch.stack([torch.cdist(rows[i], rows[j]).amin(1) for j in others], 1)
        out[i] = nearest.sort(1).values[:, :k].mean(1)
    return out.reshape(n, h, w)


def run(data: Path, cat: str, route: str, images=(30,), context_only: bool = False) -> dict:
    fit_part, _, test, labels, names, masks = category(data, cat)
    det = al.LatentDistance(device="cpu", seed=0, **ROUTES[route]).fit(fit_part)
    x = _images(test)
    with torch.no_grad():
        p = torch.cat([det.featurizer_.patches(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)])
        n, _, h, w = p.shape
        bank = torch.cat([det._method.patch_distance(p[i:i + CHUNK], False)[0]
                          for i in range(0, n, CHUNK)]).reshape(n, h, w).float()
        t = None if context_only else mutual(p)
    det.cross_calibrate(fit_part, fpr=0.01, seed=0)
    out = {}
    grids = {"bank": bank} if context_only else dict(zip(RULES, (bank, t, torch.minimum(bank, t))))
    for rule, grid in grids.items():
        maps = patch_maps(grid, tuple(x.shape[-2:])).numpy()
        out[rule] = _figures(rule, labels, names, maps.reshape(n, -1).max(1), maps, masks, det.threshold_)
    for m in images:  # the library's mutual scoring (LatentDistance.set_context)
        t0 = time.perf_counter()
        maps = det.set_context(x, images=m).score_map(x)
        rule = "context" if tuple(images) == (30,) else f"context {m}"
        out[rule] = _figures(rule, labels, names, maps.reshape(n, -1).max(1), maps, masks, det.threshold_)
        out[rule]["seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--routes", default="raw,r18", help="comma-separated, of: " + ", ".join(ROUTES))
    ap.add_argument("--images", default="30", help="comma-separated reference counts of the context rule")
    ap.add_argument("--context-only", action="store_true", help="only the bank and the context rule")
    args = ap.parse_args()
    images = tuple(int(v) for v in args.images.split(","))
    torch.set_num_threads(2)
    t0, cats = time.perf_counter(), sample_data.HALVES[args.half]["categories"]
    kinds = sample_data.HALVES[args.half]["defects"]
    lines = ["| route | rule | " + " | ".join(cats) + " | mean | " + " | ".join(kinds)
             + " | achieved FPR (target 1 %) | context s per category |",
             "|" + " --- |" * (len(cats) + len(kinds) + 5)]
    for route in args.routes.split(","):
        res: dict[str, list] = {}
        for cat in cats:
            for rule, r in run(args.data, cat, route, images, args.context_only).items():
                res.setdefault(rule, []).append(r)
                print(f"{cat} {route} {rule}: {r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f}"
                      f" fpr {100 * r['fpr']['fpr']:.0f} %", flush=True)
        for rule, rs in res.items():
            cells = [f"{r['image']:.1f} / {r['pixel_roc_auc']:.1f} / {r['pro']:.1f}" for r in rs]
            mean = " / ".join(f"{np.mean([r[m] for r in rs]):.1f}" for m in ("image", "pixel_roc_auc", "pro"))
            per = [f"{np.mean([r['per'][d] for r in rs]):.1f}" for d in kinds]
            fpr = f"{100 * np.mean([r['fpr']['fpr'] for r in rs]):.0f} % (max {100 * max(r['fpr']['fpr'] for r in rs):.0f} %)"
            secs = f"{np.mean([r['seconds'] for r in rs]):.0f}" if rule.startswith("context") else "—"
            lines.append(f"| {route} | {rule} | " + " | ".join(cells) + f" | **{mean}** | " + " | ".join(per)
                         + f" | {fpr} | {secs} |")
    body = (f"Inspection set, **{args.half} half**: each category's 180 test crops are the batch; image / pixel ROC-AUC "
            f"/ PRO per category and their mean, then image ROC-AUC by defect kind (mean over the half's categories). "
            f"`bank` is the route as it is. {time.perf_counter() - t0:.0f} s in all.\n\n" + "\n".join(lines))
    record.publish(f"Images: mutual scoring across the test batch ({args.half} half, issue 18)", body, args.no_record)


if __name__ == "__main__":
    main()
