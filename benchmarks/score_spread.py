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


def main() -> None:
    ap = set_parser(__doc__)
    ap.add_argument("--category", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fit_part, held, test, labels, names, masks = category(args.data, args.category)
    det = al.LatentDistance(device="cpu", seed=0).fit(_images(fit_part))
    x = _images(test)
    s = np.asarray(det.decision_function(x))
    r = _figures("raw", labels, names, s, np.asarray(det.score_map(x)), masks)
    groups = {"unseen training-part crops": np.asarray(det.decision_function(_images(held))),
              "good test crops": s[labels == 0]}
    groups.update({k: s[names == k] for k in sorted(r["per"])})
    rows = [f"| {g} | {len(v)} | " + " / ".join(f"{q:.3f}" for q in np.percentile(v, [10, 50, 90]))
            + f" | {r['per'][g]:.1f} |" if g in r["per"] else
            f"| {g} | {len(v)} | " + " / ".join(f"{q:.3f}" for q in np.percentile(v, [10, 50, 90])) + " | |"
            for g, v in groups.items()]
    body = (f"Category `{args.category}` of the inspection set ({args.data}), LatentDistance with every default on "
            f"raw pixels (image ROC-AUC {r['image']:.1f}): image scores by group.\n\n"
            "| group | crops | score: 10th / 50th / 90th percentile | image ROC-AUC against the good test crops |\n"
            "| --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish(f"Images: where the scores of one category lie (score_spread.py, {args.category})", body,
                   args.no_record)


if __name__ == "__main__":
    main()
