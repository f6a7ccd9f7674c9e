"""A patch's distance to the bank measured against the bank's own spacing there (local outlier
factor): does a heavy-tailed normal (rare galaxies, craters, stroma) stop outscoring a defect?
(issue 18)

The patch score is the distance d(q, m) of a patch q to its nearest bank row m. Where normal
content is common the bank is dense and a normal patch lands close; where it is rare (a bright
galaxy in a star field) the bank holds few rows, spaced wide, and an unseen normal patch of that
kind lands far from all of them. A defect lands far from the bank relative to how far normal
patches land *there*. The rules divide d(q, m) by a local scale of the matched row m:

* ``bank``: d(q, m) as it is (the route as it is);
* ``lof k``: over the distance from m to its k-th nearest other bank row (Breunig et al. 2000's
  k-distance; the bank is a coreset of the training patches, so this is its local spacing);
* ``spread``: over the median distance of the training patches matched to m (leave-one-out: a
  training patch that is itself a bank row is matched to its nearest other row); rows matched by
  fewer than 3 training patches take the median over all rows.

Image ROC-AUC (maximum of the map) and pixel ROC-AUC per category of the inspection set, for the
raw-pixel and the dense (offline `fit`) routes, fitted on 180 training crops.

Run:  python benchmarks/local_density.py --data DIR [--half dev] [--routes raw,dense] [--no-record]
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from anomalib_lite.components.memory import KnnIndex

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import set_parser  # noqa: E402
from local_contrast import (fitted_route, image_study, map_figures, pair_header, pair_lines,  # noqa: E402
                            patch_features, test_truth)


def kth_distance(bank: torch.Tensor, k: int) -> torch.Tensor:
    """(rows,): each bank row's distance to its k-th nearest other row."""
    return KnnIndex(bank.float()).search(bank.float(), k, exclude_self=True)[:, -1]


def nearest(rows: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each row's nearest bank row, a row that is itself in the bank skipped
    (as the detector scores its training data: leave-one-out)."""
    dist, idx = KnnIndex(bank.float()).search(rows, 1, exclude_self=True, return_index=True)
    return dist[:, 0], idx[:, 0]


def spread_scale(det, train, bank: torch.Tensor) -> torch.Tensor:
    """(rows,): median distance of the training patches matched to each bank row."""
    p = patch_features(det, train)
    d, j = nearest(p.permute(0, 2, 3, 1).reshape(-1, p.shape[1]), bank)
    scale = torch.full((len(bank),), float(d.median()))
    for r in range(len(bank)):
        m = d[j == r]
        if len(m) >= 3:
            scale[r] = m.median()
    return scale


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--routes", default="raw,dense")
    ap.add_argument("--ks", default="1,3,9")
    args = ap.parse_args()
    import anomalib_lite as al
    cats = image_study(args)
    ks = [int(k) for k in args.ks.split(",")]
    rules = ["bank"] + [f"lof {k}" for k in ks] + ["spread"]
    lines = pair_header(["route", "rule"], cats)
    for route in args.routes.split(","):
        table = {rule: [] for rule in rules}
        for cat in cats:
            t = time.perf_counter()
            det, test = fitted_route(route, args.data, cat)
            train = al.load_data(str(args.data / cat / "train")).read(list(range(180)))[0]
            bank = det.bank_.get("patch_memory").float()
            scales = {f"lof {k}": kth_distance(bank, k) for k in ks}
            scales["spread"] = spread_scale(det, train, bank)
            labels, masks = test_truth(test)
            p = patch_features(det, test)
            n, _, h, w = p.shape
            d, j = nearest(p.permute(0, 2, 3, 1).reshape(-1, p.shape[1]), bank)
            table["bank"].append(map_figures(d.reshape(n, h, w), labels, masks))
            for rule, s in scales.items():
                table[rule].append(map_figures((d / s[j].clamp_min(1e-6)).reshape(n, h, w), labels, masks))
            print(cat, route, f"bank {len(bank)} rows", f"{time.perf_counter() - t:.0f} s",
                  {k: f"{v[-1][0]:.1f}/{v[-1][1]:.1f}" for k, v in table.items()}, flush=True)
        lines += pair_lines(table, [route])
        print("\n".join(lines[-len(table):]), flush=True)
    body = (f"Inspection set, **{args.half} half**, 128 px, 180 training crops per category: image / pixel "
            "ROC-AUC (%) of the patch map scored by the distance to the nearest bank row, or by that distance "
            "over the matched row's local scale (its k-th nearest bank row: `lof k`; the median distance of "
            "the training patches matched to it: `spread`).\n\n" + "\n".join(lines))
    record.publish(f"Images: patch distances over the bank's local spacing, {args.half} half (issue 18)",
                   body, args.no_record)


if __name__ == "__main__":
    main()
