"""MNIST outliers as a streaming minibatch pipeline, through the Python API.

One digit is normal. A DataLoader over that digit's training images feeds ``partial_fit`` batch
by batch (memory stays bounded by ``memory_size``), a held-out share of the digit calibrates the
threshold, then the 10,000 test digits stream past in batches and anomalies are flagged as they
pass. Run:  python examples/mnist_outliers.py --digit 7
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import anomalib_lite as al


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--digit", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--memory-size", type=int, default=4000)
    ap.add_argument("--fpr", type=float, default=0.01)
    ap.add_argument("--download", action="store_true")
    args = ap.parse_args()

    train = al.load_data(f"mnist:train?classes={args.digit}", download=args.download)
    fit_part, held_out = train.split(0.1, seed=0)
    loader = DataLoader(TensorDataset(torch.from_numpy(fit_part.x)), batch_size=args.batch_size, shuffle=True)

    det = al.LatentDistance(k=5, image_score="pooled", memory_size=args.memory_size, maps=False)
    for (batch,) in loader:  # streaming: one minibatch at a time
        det.partial_fit(batch)
    det.calibrate(held_out, fpr=args.fpr)
    print(f"learned from {det.n_seen_} digits, kept {len(det.memory_)}; threshold {det.threshold_:.3f}")

    test = al.load_data("mnist:test", download=args.download)
    labels = test.anomaly_labels([str(args.digit)])
    scores, flagged = [], 0
    for start in range(0, len(test), 1000):  # the test stream
        batch = test.x[start : start + 1000]
        s = det.decision_function(batch)
        p = det.p_values(s)
        flags = s > det.threshold_
        flagged += int(flags.sum())
        scores.append(s)
        worst = int(np.argmin(p))
        print(f"digits {start:5d}-{start + len(batch) - 1:5d}: {int(flags.sum()):4d} flagged; "
              f"most anomalous #{start + worst} (p = {p[worst]:.4f}, digit {test.targets[start + worst]})")
    m = al.metrics.image_metrics(labels, np.concatenate(scores), det.threshold_)
    print(f"ROC-AUC {100 * m['roc_auc']:.2f}  AP {100 * m['average_precision']:.2f}  "
          f"recall {100 * m['recall']:.1f} at false positive rate {100 * m['fpr']:.2f} "
          f"(target {100 * args.fpr:.1f}); {flagged} flagged in all")


if __name__ == "__main__":
    main()
