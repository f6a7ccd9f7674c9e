"""Images in time: an MNIST stream counting 0, 1, ..., 9, 0, 1, ... in which an out-of-order digit
is the anomaly.

Each frame goes through a ``Featurizer`` (raw pixels, 2x2-pooled by default, or a ``backbones``
network) to one embedding, and the series detectors run on the sequence of embeddings:

* ``Continuation`` (unsupervised) learns what the next frame looks like from a clean stream of
  training digits; an out-of-order digit is a frame it did not predict.
* ``SupervisedRNN`` with ``horizon=0`` (detection at the step itself) learns from a labelled
  stream that contains out-of-order digits.

Both are scored on a stream of *test* digits (other writers) with 2 % out-of-order frames.
Run:  python examples/mnist_stream.py            (about a minute on 2 CPU cores)
      python examples/mnist_stream.py --backbone lenet5 --weights random
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import anomalib_lite as al
from anomalib_lite.components.features import Featurizer


def counting_stream(source, n: int, p_anomaly: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames of digits counting 0..9 (a random image of each); with probability
    ``p_anomaly`` a frame shows another digit instead (label 1). The count goes on regardless."""
    rng = np.random.default_rng(seed)
    by_digit = [np.flatnonzero(source.targets == d) for d in range(10)]
    digits = np.arange(n) % 10
    labels = (rng.random(n) < p_anomaly) & (np.arange(n) >= 20)
    digits[labels] = (digits[labels] + rng.integers(1, 10, labels.sum())) % 10
    frames = source.x[[rng.choice(by_digit[d]) for d in digits]]
    return frames, labels.astype(np.int64)


def embed(featurizer: Featurizer, frames: np.ndarray, pool: int) -> np.ndarray:
    """(T, 28, 28) uint8 frames -> (T, D) embeddings, in batches."""
    out = []
    for i in range(0, len(frames), 512):
        x = torch.from_numpy(frames[i : i + 512]).float().div(255)[:, None]
        if featurizer.extractor is None and pool > 1:
            x = F.avg_pool2d(x, pool)
        out.append(featurizer.embed(x).cpu())
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default=None, help="a backbones name (default: raw pixels)")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--pool", type=int, default=2, help="raw pixels: average-pool frames by this factor")
    ap.add_argument("--frames", type=int, default=4000, help="frames in the clean training stream")
    ap.add_argument("--labelled-frames", type=int, default=20000, help="frames in the labelled stream")
    ap.add_argument("--test-frames", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--download", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)

    train = al.load_data("mnist:train", download=args.download)
    test = al.load_data("mnist:test", download=args.download)
    featurizer = Featurizer(args.backbone, weights=args.weights, device="cpu")
    clean, _ = counting_stream(train, args.frames, 0.0, seed=0)
    held, _ = counting_stream(train, 1200, 0.0, seed=1)
    frames, labels = counting_stream(test, args.test_frames, 0.02, seed=2)
    e_clean, e_held, e_test = (embed(featurizer, f, args.pool) for f in (clean, held, frames))
    print(f"embeddings: {e_clean.shape[1]} values per frame ({args.backbone or 'raw pixels'}); "
          f"test stream of {len(frames)} frames, {labels.sum()} out of order")

    det = al.Continuation(window=10, horizon=1, hidden=128, num_layers=1, dropout=0.0, relative=False,
                          scaling="global", smoothing=1, epochs=args.epochs, lr=3e-3, device="cpu")
    det.fit(e_clean).calibrate(e_held, fpr=0.01)
    scores = det.reset().decision_function(e_test)
    flags = det.reset().predict(e_test)
    ok = np.isfinite(scores)
    m = al.metrics.image_metrics(labels[ok], scores[ok], det.threshold_)
    print(f"Continuation:  ROC-AUC {100 * m['roc_auc']:.1f}  AP {100 * m['average_precision']:.1f}  "
          f"flagged {flags.sum()}: recall {100 * m['recall']:.1f} % at false positive rate {100 * m['fpr']:.2f} %")

    lab_frames, lab_labels = counting_stream(train, args.labelled_frames, 0.05, seed=3)
    rnn = al.SupervisedRNN(window=10, horizon=0, hidden=64, epochs=args.epochs, lr=3e-3, device="cpu")
    rnn.fit((embed(featurizer, lab_frames, args.pool), lab_labels))
    prob = rnn.decision_function(e_test)
    alarms = rnn.reset().predict(e_test)
    m = al.metrics.image_metrics(labels, prob, rnn.threshold_)
    print(f"SupervisedRNN: ROC-AUC {100 * m['roc_auc']:.1f}  AP {100 * m['average_precision']:.1f}  "
          f"flagged {alarms.sum()}: recall {100 * m['recall']:.1f} % at false positive rate {100 * m['fpr']:.2f} %")


if __name__ == "__main__":
    main()
