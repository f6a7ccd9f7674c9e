"""Where a category's scores lie: good test crops, unseen training-part crops and each defect kind
(issue 18's diagnostics; describes, chooses nothing).

LatentDistance with every default on raw pixels, fitted on a category's training crops less a
tenth (``inspection.py``'s split), scores the 20 held-out training-part crops, the good test crops
(another part of the photograph) and each defect kind: the 10th, 50th and 90th percentile of each
group's image scores and each kind's image ROC-AUC against the good test crops. A good test part
whose upper percentiles pass the training part's is a shift between the photograph's parts; a
defect kind whose scores lie among the good ones is one that looks like the photograph's own
content.

Run:  python benchmarks/score_spread.py --data DIR --category moon [--no-record]
      python benchmarks/score_spread.py --data DIR --half held-out   (every category of the half)
      (DIR: a set `sample_data.make_image_set` wrote)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402
from inspection import _figures, _images, category, set_parser  # noqa: E402

import anomalib_lite as al  # noqa: E402
from anomalib_lite.data import sample_data  # noqa: E402


def spread(data: Path, cat: str) -> str:
    """One category's section body."""
    fit_part, held, test, labels, names, masks = category(data, cat)
    det = al.LatentDistance(device="cpu", seed=0).fit(_images(fit_part))
    x = _images(test)
    s = np.asarray(det.decision_function(x))
    r = _figures("raw", labels, names, s, np.asarray(det.score_map(x)), masks)
    groups = {"unseen training-part crops": np.asarray(det.decision_function(_images(held))),
              "good test crops": s[labels == 0]}
    groups.update({k: s[names == k] for k in sorted(r["per"])})
    rows = [f"| {g} | {len(v)} | " + " / ".join(f"{q:.3f}" for q in np.percentile(v, [10, 50, 90]))
            + (f" | {r['per'][g]:.1f} |" if g in r["per"] else " | |") for g, v in groups.items()]
    return (f"Category `{cat}` of the inspection set ({data}), LatentDistance with every default on "
            f"raw pixels (image ROC-AUC {r['image']:.1f}): image scores by group.\n\n"
            "| group | crops | score: 10th / 50th / 90th percentile | image ROC-AUC against the good test crops |\n"
            "| --- | --- | --- | --- |\n" + "\n".join(rows))


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--category", default=None, help="one category (default: every category of --half)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cats = [args.category] if args.category else sample_data.HALVES[args.half]["categories"]
    body = "\n\n".join(spread(args.data, c) for c in cats)
    record.publish(f"Images: where the scores of a category lie (score_spread.py, {', '.join(cats)})", body,
                   args.no_record)


if __name__ == "__main__":
    main()
