"""MNIST outliers with LatentDistance on raw pixels, all 10 digits, against scikit-learn.

For each digit: fit on that digit's training images, score all 10,000 test digits, ROC-AUC.
Every method gets the same float32 arrays. In the same run, scikit-learn's NearestNeighbors (brute force, k=5 mean distance: the same work)
and IsolationForest (a common baseline) on the same data; wall time of fit + score for each.
Run:  python benchmarks/latent_mnist.py [--digits 0,1] [--no-record]
"""
from __future__ import annotations

import time

import numpy as np
import record
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

import anomalib_lite as al


def main() -> None:
    ap = record.parser()
    ap.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train = al.load_data("mnist:train")
    test = al.load_data("mnist:test")
    xte = test.x.reshape(len(test), -1).astype(np.float32) / 255
    digits = [int(d) for d in args.digits.split(",")]
    rows, totals = [], {"knn": 0.0, "gauss": 0.0, "sk_knn": 0.0, "iforest": 0.0}
    aucs = {k: [] for k in totals}
    for d in digits:
        xtr_src = train.subset(np.flatnonzero(train.targets == d))
        xtr = xtr_src.x.reshape(len(xtr_src), -1).astype(np.float32) / 255
        y = (test.targets != d).astype(int)
        res = {}

        t = time.perf_counter()
        s = al.LatentDistance(k=5, image_score="pooled", maps=False, device="cpu").fit(xtr).decision_function(xte)
        res["knn"] = (time.perf_counter() - t, roc_auc_score(y, s))

        t = time.perf_counter()
        s = al.LatentDistance(method="gaussian", image_score="pooled", maps=False, device="cpu").fit(xtr).decision_function(xte)
        res["gauss"] = (time.perf_counter() - t, roc_auc_score(y, s))

        t = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=5, algorithm="brute", n_jobs=-1).fit(xtr)
        s = nn.kneighbors(xte)[0].mean(1)
        res["sk_knn"] = (time.perf_counter() - t, roc_auc_score(y, s))

        t = time.perf_counter()
        s = -IsolationForest(random_state=0, n_jobs=-1).fit(xtr).score_samples(xte)
        res["iforest"] = (time.perf_counter() - t, roc_auc_score(y, s))

        for k, (sec, auc) in res.items():
            totals[k] += sec
            aucs[k].append(auc)
        rows.append((d, res))
        print(d, {k: f"{100 * a:.1f} ({s:.2f}s)" for k, (s, a) in res.items()}, flush=True)

    names = {"knn": "LatentDistance kNN (k=5)", "gauss": "LatentDistance Gaussian",
             "sk_knn": "sklearn NearestNeighbors (k=5)", "iforest": "sklearn IsolationForest"}
    head = "| method | " + " | ".join(str(d) for d in digits) + " | mean | fit+score, all digits (s) |"
    lines = [head, "|" + "---|" * (len(digits) + 3)]
    for k, name in names.items():
        per = " | ".join(f"{100 * a:.1f}" for a in aucs[k])
        lines.append(f"| {name} | {per} | **{100 * np.mean(aucs[k]):.1f}** | {totals[k]:.1f} |")
    body = (
        "ROC-AUC (%) per normal digit, all 10,000 test digits scored, raw pixels in [0, 1].\n\n"
        + "\n".join(lines)
    )
    record.publish("MNIST outliers: LatentDistance on raw pixels vs scikit-learn", body, args.no_record)


if __name__ == "__main__":
    main()
