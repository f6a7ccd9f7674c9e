"""Patch or pooled image scores? LatentDistance both ways on MNIST (issue 10's evidence).

Two tasks on MNIST, raw pixels (and a random-weight resnet18 with ``--backbone``):
* outliers: one digit normal, the other nine anomalous (whole-image, semantic anomalies);
* local defects: the normal digit's test images with ``augment.synth`` strokes and blobs planted
  in half of them (``mnist:test?classes=D&synth=stroke_blob``), with exact masks.
For each normal digit and ``image_score`` in (pooled, patch): image ROC-AUC, and pixel ROC-AUC of
the maps on the local defects. Appends a section to BENCHMARKS.md unless ``--no-record``.

Run:  python benchmarks/image_scores.py                      (digits 0-9, 2,000 test digits)
      python benchmarks/image_scores.py --digits 3,8 --test-limit 10000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import anomalib_lite as al
from anomalib_lite.evaluation import assess

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--test-limit", type=int, default=2000)
    ap.add_argument("--backbone", default=None, help="e.g. resnet18 (random weights, 32 px)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    extra = {} if args.backbone is None else dict(backbone=args.backbone, weights="random", image_size=32)
    rows = []
    for d in [int(v) for v in args.digits.split(",")]:
        train = al.load_data(f"mnist:train?classes={d}")
        outliers = al.load_data(f"mnist:test?limit={args.test_limit}")
        local = al.load_data(f"mnist:test?classes={d}&synth=stroke_blob&severity=1")
        row = {"digit": d}
        for how in ("pooled", "patch"):
            t0 = time.perf_counter()
            det = al.LatentDistance(image_score=how, maps=True, device="cpu", **extra).fit(train)
            ev_out = assess(det, outliers)
            ev_loc = assess(det, local)
            row[how] = (100 * ev_out.figures["roc_auc"], 100 * ev_loc.figures["roc_auc"],
                        100 * ev_loc.figures["pixel_roc_auc"], time.perf_counter() - t0)
            print(d, how, " ".join(f"{v:.1f}" for v in row[how]), flush=True)
        rows.append(row)
    head = ("| digit | outliers: pooled | outliers: patch | local defects: pooled | local defects: patch | "
            "pixel ROC-AUC (same maps) | s pooled / patch |\n| --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for r in rows:
        p, q = r["pooled"], r["patch"]
        lines.append(f"| {r['digit']} | {p[0]:.1f} | {q[0]:.1f} | {p[1]:.1f} | {q[1]:.1f} | {q[2]:.1f} | {p[3]:.0f} / {q[3]:.0f} |")
    mean = lambda how, i: np.mean([r[how][i] for r in rows])
    lines.append(f"| **mean** | **{mean('pooled', 0):.1f}** | **{mean('patch', 0):.1f}** | **{mean('pooled', 1):.1f}** | "
                 f"**{mean('patch', 1):.1f}** | {mean('patch', 2):.1f} | |")
    feats = "raw pixels" if args.backbone is None else f"{args.backbone}, random weights, 32 px"
    body = (f"LatentDistance (kNN, {feats}) fitted on one digit's training images. Outliers: the first "
            f"{args.test_limit:,} test digits, other digits anomalous. Local defects: the digit's test images, "
            "half with a synthetic stroke or blob (stroke_blob, severity 1). Image ROC-AUC (%) with pooled and "
            "patch image scores; the maps (and so pixel ROC-AUC) are the same patch maps either way.\n\n"
            + "\n".join(lines))
    if args.no_record:
        print(body)
    else:
        record.append("Image scores: patch vs pooled on MNIST", body)


if __name__ == "__main__":
    main()
