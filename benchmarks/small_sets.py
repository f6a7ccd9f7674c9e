"""A handful of normal images through the offline image route: what fewer pretraining steps
would save, and what they would cost.

With few images, ``anomaly fit --data DIR`` spends most of its time pretraining a resnet18 from
random weights on them (``pretrain="segment"``, ``pretrain_steps=250``, whatever the set's
size): 12 photographs of 250 x 300 px took 7 min. Fewer steps would be faster; this measures
whether they keep the quality. The inspection set's development categories (brick, gravel, ihc,
retina; ``sample_data.make_image_set``, 128 px), the first 12 training crops of each, the
route's detector with ``pretrain_steps`` 250 (the default), 100 and 50; image ROC-AUC on the
category's whole test set (60 good, 120 defective), and the fit's seconds.

Run:  python benchmarks/small_sets.py --data DIR      (DIR: an inspection set; about 20 minutes)
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import record

import anomalib_lite as al
from anomalib_lite.scoring import metrics

CATEGORIES = ("brick", "gravel", "ihc", "retina")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="an inspection set (anomaly demo / make_image_set)")
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--steps", default="250,100,50")
    ap.add_argument("--no-record", action="store_true", help="print, do not append to BENCHMARKS.md")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",")]
    got = {}
    for cat in CATEGORIES:
        train = al.load_data(str(args.data / cat / "train" / "good")).subset(np.arange(args.images))
        test = al.load_data(str(args.data / cat / "test"))
        for n in steps:
            t = time.perf_counter()
            det = al.LatentDistance(backbone="resnet18", weights="random", layers=["layer1", "layer2"],
                                    pretrain="segment", image_score="patch", pretrain_steps=n, device="cpu",
                                    verbose=False).fit(train)
            seconds = time.perf_counter() - t
            got[cat, n] = (100 * metrics.roc_auc(test.anomaly_labels(), det.decision_function(test)), seconds)
            print(cat, n, f"{got[cat, n][0]:.1f}", f"{seconds:.0f} s", flush=True)
    rows = [f"| {n} | " + " | ".join(f"{got[c, n][0]:.1f}" for c in CATEGORIES)
            + f" | **{np.mean([got[c, n][0] for c in CATEGORIES]):.1f}** | {np.mean([got[c, n][1] for c in CATEGORIES]):.0f} |"
            for n in steps]
    head = f"| pretraining steps | {' | '.join(CATEGORIES)} | mean image ROC-AUC | fit s (mean) |\n"
    body = (" ".join(__doc__.split("\n\n")[1].split()) + "\n\n" + head
            + "| --- " * (len(CATEGORIES) + 3) + "|\n" + "\n".join(rows))
    record.publish(f"Images: {args.images} normal images, fewer pretraining steps? (small_sets.py)", body,
                   args.no_record)


if __name__ == "__main__":
    main()
