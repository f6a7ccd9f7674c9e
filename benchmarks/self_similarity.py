"""A patch is normal when the bank *or its own image* explains it: does self-similarity remove the
drift between parts of a photograph? (issue 18)

Good test crops come from another part of each photograph than the training crops, so every patch
of a good crop can sit far from the bank. A texture repeats itself, though: a normal patch finds a
near twin elsewhere in the same crop, a defect does not (it is rare within its image). The rules
score each patch by its distance to the training bank, to its nearest patch of the same image
outside a square of radius R (grid cells) around it, or by the smaller of the two. Image ROC-AUC and
pixel ROC-AUC per category of the inspection set, for the raw-pixel route and the dense (offline
`fit`) route, fitted on 180 training crops.

Run:  python benchmarks/self_similarity.py --data DIR [--half dev] [--routes raw,dense] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import set_parser  # noqa: E402
from local_contrast import (fitted_route, image_study, map_figures, pair_header, pair_lines,  # noqa: E402
                            test_truth)


def self_distance(p: torch.Tensor, radius: int) -> torch.Tensor:
    """(n, h*w): each patch's distance to its nearest patch of the same image outside the square of
    ``radius`` grid cells around it."""
    n, d, h, w = p.shape
    rows = p.permute(0, 2, 3, 1).reshape(n, h * w, d).float()
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yy, xx = yy.reshape(-1), xx.reshape(-1)
    near = ((yy[:, None] - yy[None]).abs() <= radius) & ((xx[:, None] - xx[None]).abs() <= radius)
    out = []
    for r in rows:
        dist = torch.cdist(r, r)
        dist[near] = float("inf")
        out.append(dist.min(1).values)
    return torch.stack(out)


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--routes", default="raw,dense")
    ap.add_argument("--radii", default="2,4,8")
    args = ap.parse_args()
    cats = image_study(args)
    radii = [int(r) for r in args.radii.split(",")]
    rules = ["bank"] + [f"self R={r}" for r in radii] + [f"min(bank, self R={r})" for r in radii]
    lines = pair_header(["route", "rule"], cats)
    for route in args.routes.split(","):
        table = {rule: [] for rule in rules}
        for cat in cats:
            t = time.perf_counter()
            det, test = fitted_route(route, args.data, cat)
            labels, masks = test_truth(test)
            dists = {rule: [] for rule in rules}
            with torch.inference_mode():
                for b, _ in det._batches(test):
                    for part in det._chunks(b.x):
                        p = det.featurizer_.patches(part)
                        n, _, h, w = p.shape
                        bank, _ = det._method.patch_distance(p, False)
                        dists["bank"].append(bank)
                        for r in radii:
                            s = self_distance(p, r)
                            dists[f"self R={r}"].append(s)
                            dists[f"min(bank, self R={r})"].append(torch.minimum(bank, s))
            for rule, parts in dists.items():
                table[rule].append(map_figures(torch.cat(parts).reshape(-1, h, w), labels, masks))
            print(cat, route, f"{time.perf_counter() - t:.0f} s",
                  {k: f"{v[-1][0]:.1f}/{v[-1][1]:.1f}" for k, v in table.items()}, flush=True)
        lines += pair_lines(table, [route])
        print("\n".join(lines[-len(table):]), flush=True)
    body = (f"Inspection set, **{args.half} half**, 128 px, 180 training crops per category: image / pixel "
            "ROC-AUC (%) of the patch map scored by the distance to the bank, to the image's own patches "
            "outside radius R (grid cells), or the smaller of the two.\n\n" + "\n".join(lines))
    record.publish(f"Images: patches explained by the bank or by their own image, {args.half} half (issue 18)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
