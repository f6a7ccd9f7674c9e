"""Issue 19: the forecaster trained with a robust loss (Huber) instead of the squared error.

The idea: NAB's probationary periods hold spikes and bursts of their own; the squared error
makes the network spend its few hundred steps of training on them (a spike's error weighs its
square), so its forecasts of ordinary steps are worse and its errors after the probation larger,
which is where the forecast's false alarms come from. Huber's loss (quadratic within ``delta``
standardised units, linear beyond) learns the ordinary course and gives a spike a bounded pull.

``HuberContinuation`` changes ``Continuation._loss`` only (outside the library, for the
measurement). CLI route of ``nab_ablation.raw_scores`` (fit on the probationary period less a
tenth, calibrate on the tenth, score the whole series), NAB's score with every kind of evidence,
judged by its paired gain over the default on the same seeds (``nab_tried_seeds.py``'s rule): the
held-out half only when the mean gain on the development half is positive and above twice its
standard error.
Run:  python benchmarks/nab_forecaster_loss.py --cache DIR [--seeds 5] [--delta 1.0]
      (DIR: ``nab_ablation.py``'s cache, whose default fits it reuses)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import torch
from nab_ablation import Corpora, raw_scores
from nab_score import halves
from nab_tried import DEFAULT, VARIANTS, unit_scores

import anomalib_lite as al
from anomalib_lite.evaluation import nab


class HuberContinuation(al.Continuation):
    """Continuation whose network learns with Huber's loss (``DELTA`` standardised units)."""

    DELTA = 1.0

    def _loss(self, model, step) -> torch.Tensor:
        pred, _ = model(step.x)
        p, y = pred[:, self.window :], step.y[:, self.window :]
        ok = torch.isfinite(y)
        if not bool(ok.any()):
            return (pred * 0.0).sum()
        return torch.nn.functional.huber_loss(p[ok], y[ok], delta=self.DELTA)


def huber_raw(names: list[str], seed: int) -> dict:
    out = {}
    for name in names:
        source = al.load_data(f"nab:{name}")
        train, held = al.load_data(f"nab:{name}?stop={nab.probation_steps(len(source))}").split(0.1)
        det = HuberContinuation(device="cpu", seed=seed)
        det.fit(train).calibrate(held, fpr=0.01, context=train).reset()
        out[name] = (det, np.asarray(det.decision_function(source.values)), source)
    return out


def standard(corpora: Corpora, raw: dict, half: str) -> float:
    return corpora.score(unit_scores(raw, VARIANTS[DEFAULT]), half)["standard"]["normalized"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, help="nab_ablation.py's cache of fitted detectors and raw scores")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--delta", type=float, default=1.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    HuberContinuation.DELTA = args.delta
    t0, seeds = time.perf_counter(), list(range(args.seeds))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        gains = {}
        for half in ("dev", "held-out"):
            names = halves()[half]
            g = []
            for s in seeds:
                base = {n: v for n, v in raw_scores("CLI", s, Path(args.cache)).items() if n in names}
                g.append(standard(corpora, huber_raw(names, s), half) - standard(corpora, base, half))
                print(half, s, f"{g[-1]:+.2f}", flush=True)
            gains[half] = np.array(g)
            mean, se = gains[half].mean(), gains[half].std(ddof=1) / np.sqrt(len(g))
            rows.append(f"| {half} | {' '.join(f'{x:+.2f}' for x in g)} | {mean:+.2f} ± {se:.2f} |")
            if half == "dev" and not (mean > 0 and mean > 2 * se):
                rows.append("| held-out | not judged (no gain on the development half) | |")
                break
    body = (f"Continuation trained with Huber's loss (delta {args.delta:g} standardised units) instead of the "
            f"squared error, every other default kept; CLI route, seeds {seeds[0]} to {seeds[-1]}; gain in NAB's "
            f"standard score over the default on the same seed (the default's raw scores from "
            f"`nab_ablation.raw_scores`). {time.perf_counter() - t0:.0f} s.\n\n"
            "| half | gain by seed | mean ± s.e. |\n| --- | --- | --- |\n" + "\n".join(rows))
    record.publish("Issue 19: the forecaster trained with Huber's loss (nab_forecaster_loss.py)", body, args.no_record)


if __name__ == "__main__":
    main()
