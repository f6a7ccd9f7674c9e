"""SupervisedRNN's ``fpr=`` threshold: which tail keeps its promise, on probabilities or on logits.

The supervised RNN's scores are probabilities, bounded by 1, and its ``fpr=`` threshold is an
exponential tail fitted to its calibration scores (the validation tail's steps with no onset
within the horizon) and extrapolated past the largest of them: at small targets it can pass 1,
where nothing is ever flagged. Four tails are weighed: the series' robust tail (``TAIL_START``,
what ``fit`` used) and the counts (``fit_tail(start=None)``), each fitted to the probabilities
and to their logits (log p / (1 - p), the network's own output before its sigmoid: unbounded, so
an extrapolated threshold stays below 1). The series were split before any result: dev, the
sample's ``labelled.csv`` (``anomaly demo --make-data``; seeds 0-4) and the ``rnn_inputs.py``
series whose anomalies are announced by growing jitter or a level ramp (seeds 0-2 each);
held-out, the ``rnn_inputs.py`` series announced by the noise going quiet or a fast ripple
(seeds 0-2 each).

Each is fitted on its first 70 % (``SupervisedRNN(horizon=20, fpr=0.05, seed=S)``, every other
default; its own threshold is the counts-on-logits one, checked) and scored on the rest as the
stream's continuation. For each target F (0.05, 0.01),
each tail's achieved false-positive rate on the test steps with no onset ahead and not anomalous
(mean over the series), how many series it flags nothing on (threshold at or above 1), and the
share of steps with an onset ahead that it warns on.

Run:  python benchmarks/rnn_fpr.py      (about 6 minutes on 2 cores)
"""
from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import record
import rnn_inputs

import anomalib_lite as al
from anomalib_lite.data.sample_data import make_demo_data
from anomalib_lite.detectors.series import TAIL_START
from anomalib_lite.scoring.metrics import early_warning_labels
from anomalib_lite.scoring.thresholds import tail_threshold

TARGETS = (0.05, 0.01)
HALVES = {"dev": (("sample", 5), ("jitter", 3), ("ramp", 3)), "held-out": (("quiet", 3), ("ripple", 3))}
TAILS = ("robust tail, probabilities", "counts, probabilities", "robust tail, logits", "counts, logits")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1.0 - 1e-15)
    return np.log(p) - np.log1p(-p)


def thresholds(cal: np.ndarray, fpr: float) -> list[float]:
    """Each tail's threshold, in probability."""
    out = []
    for logits in (False, True):
        c = _logit(cal) if logits else cal
        for start in (TAIL_START, None):
            t = tail_threshold(c, fpr, start=start)
            out.append(1.0 / (1.0 + np.exp(-t)) if logits else t)
    return [out[0], out[1], out[2], out[3]]


def labelled(kind: str, seed: int, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    if kind != "sample":
        return rnn_inputs.series(kind, seed)
    src = al.load_data(str(tmp / "labelled.csv"))
    return np.asarray(src.values, dtype=np.float64).reshape(-1), np.asarray(src.anomaly_labels())


def main() -> None:
    ap = record.parser(description=__doc__.splitlines()[0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    cells, t0 = {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_data(Path(tmp))
        for half, kinds in HALVES.items():
            for kind, seeds in kinds:
                for seed in range(seeds):
                    x, y = labelled(kind, seed, Path(tmp))
                    cut = int(0.7 * len(x))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        det = al.SupervisedRNN(horizon=20, fpr=0.05, seed=seed, device="cpu").fit(x[:cut], y[:cut])
                    lib = thresholds(det.calibration_scores_, 0.05)[3]  # (what fit now does: counts, logits)
                    assert abs(det.threshold_ - lib) <= 1e-12, (det.threshold_, lib)
                    det.reset()
                    s = np.concatenate([det.decision_function(x[:cut]), det.decision_function(x[cut:])])[cut:]
                    ahead, yt = early_warning_labels(y, 20)[cut:], y[cut:]
                    quiet = (ahead == 0) & (yt == 0) & np.isfinite(s)
                    for fpr in TARGETS:
                        for name, t in zip(TAILS, thresholds(det.calibration_scores_, fpr)):
                            cells.setdefault((half, fpr, name), []).append(
                                ((s[quiet] > t).mean(), t >= 1.0, (s[ahead == 1] > t).mean()))
                    print(half, kind, seed, len(det.calibration_scores_), flush=True)
    rows = []
    for half in HALVES:
        n = sum(k[1] for k in HALVES[half])
        for fpr in TARGETS:
            for name in TAILS:
                r = np.array(cells[(half, fpr, name)], dtype=np.float64)
                rows.append(f"| {half} ({n}) | {fpr:g} | {name} | {100 * r[:, 0].mean():.2f} % "
                            f"({100 * r[:, 0].min():.2f} to {100 * r[:, 0].max():.2f}) | {int(r[:, 1].sum())} | "
                            f"{100 * r[:, 2].mean():.1f} % |")
    body = (" ".join(__doc__.split("\n\n")[1:3]).replace("\n", " ") + f" {time.perf_counter() - t0:.0f} s.\n\n"
            "| half (series) | target | tail | achieved false-positive rate, mean (range) | series with nothing "
            "flagged | warned with an onset ahead |\n| --- | --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    record.publish("SupervisedRNN's fpr threshold: tails on probabilities or on logits (rnn_fpr.py)", body,
                   args.no_record)


if __name__ == "__main__":
    main()
