"""Issue 19: a forecaster that predicts its own error scale, measured by the protocol on NAB.

The idea: NAB's held-out half loses most to forecast false positives (surprise 5 to 7) in regimes
of a series that are volatile by nature. Rescaling the error by the recent error level, or by the
input's recent volatility, after the fact, lost on the development half (``nab_tried.py``): a
calm stretch makes the divisor small. Here the network itself learns, on the probationary period,
how large its error is for the window it reads: a second head gives the log-variance of each
forecast, trained with the Gaussian negative log-likelihood (Nix & Weigend 1994; DeepAR), and the
score is the error in units of the predicted standard deviation. A regime seen in training to be
volatile is expected to be volatile; a calm one still has the variance the training data gave it.

``NllContinuation`` changes three things of ``Continuation`` (outside the library, for the
measurement): the head's outputs (means and log-variances), the loss (Gaussian NLL, log-variance
clamped to [-8, 8]), and the error (|step - mean forecast| / sqrt(mean forecast variance)); the
rest (scaling, season, smoothing, error scale, NAB's score with every kind of evidence) is the
library's. The CLI route of ``nab_ablation.py`` (fit on the probationary period less a tenth,
calibrate on that tenth, score the whole series at once, seed 0); its default row comes from the
same route's cached raw scores. Judged on the development half first (``nab_score.halves``); the
held-out half only if it helps there.
Run:  python benchmarks/nab_nll.py --cache DIR [--half dev|held-out|all]
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

import anomalib_lite as al
from anomalib_lite.components.series_nets import StreamNet
from anomalib_lite.detectors.continuation import pool_forecasts
from anomalib_lite.evaluation import nab


class NllContinuation(al.Continuation):
    """Continuation whose network also predicts the log-variance of each forecast. ``BETA`` > 0:
    beta-NLL (Seitzer et al. 2022), each step's NLL weighted by its predicted variance ** beta
    (no gradient through the weight), so that hard steps do not stop the means from learning."""

    BETA = 0.0

    def _net(self, dim: int, device=None) -> StreamNet:
        d_in = dim * (1 + (self.horizon if self.season_ else 0))
        return self._build_net(lambda: StreamNet(self.network, d_in, self.hidden, self.num_layers, self.dropout,
                                                 self.window, 2 * self.horizon * dim), device)

    def _loss(self, model, step) -> torch.Tensor:
        pred, _ = model(step.x)
        k = pred.shape[-1] // 2
        mu, logv = pred[:, self.window :, :k], pred[:, self.window :, k:].clamp(-8.0, 8.0)
        y = step.y[:, self.window :]
        ok = torch.isfinite(y)
        if not bool(ok.any()):
            return (pred * 0.0).sum()
        nll = 0.5 * (logv[ok] + (y[ok] - mu[ok]) ** 2 * torch.exp(-logv[ok]))
        if self.BETA:
            nll = nll * torch.exp(self.BETA * logv[ok]).detach()
        return nll.mean()

    def _errors(self, x: np.ndarray) -> np.ndarray:
        """|step - mean of its forecasts| / sqrt(mean of their variances), per channel; one torch pass."""
        st, h = self._stream, self.horizon
        if not hasattr(st, "vsums"):
            st.vsums = np.zeros_like(st.sums)
        z, out, ahead, valid = self._network_pass(x)
        n, dim = z.shape
        f = z[:, None, :] + out[:, : h * dim].reshape(n, h, dim)
        var = np.exp(np.clip(out[:, h * dim :], -8.0, 8.0)).reshape(n, h, dim)
        if ahead is not None:
            f += self.season_weight_ * ahead
        total, count = pool_forecasts(f, valid, st.sums, st.counts)
        vtotal, _ = pool_forecasts(var, valid, st.vsums, st.counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(z - total[:n] / count[:n, None]) / np.sqrt(vtotal[:n] / count[:n, None])
        st.sums, st.vsums, st.counts = total[n:], vtotal[n:], count[n:]
        return err


class BetaNllContinuation(NllContinuation):
    BETA = 0.5


def nll_scores(names: list[str], make=NllContinuation) -> dict:
    """name -> (fitted NllContinuation, raw scores of the whole series, the series): the CLI route."""
    out = {}
    for name in names:
        source = al.load_data(f"nab:{name}")
        train, held = al.load_data(f"nab:{name}?stop={nab.probation_steps(len(source))}").split(0.1)
        det = make(device="cpu", seed=0)
        det.fit(train).calibrate(held, fpr=0.01, context=train).reset()
        out[name] = (det, np.asarray(det.decision_function(source.values)), source)
    return out


def unit(raw: dict) -> dict:
    return {name: nab.results_scores(det, s, values=src.values, step_seconds=src.step_seconds)
            for name, (det, s, src) in raw.items()}


def score_row(label: str, raw: dict, corpora: Corpora, half: str) -> str:
    """One table row: NAB's scorer on the half (standard / reward low FP / reward low FN, and the
    standard profile's false-positive rows) for raw scores of the CLI route; printed as it comes."""
    r = corpora.score(unit(raw), None if half == "all" else half)
    row = (f"| {label} | " + " / ".join(f"{r[p]['normalized']:.2f}" for p in
                                        ("standard", "reward_low_FP_rate", "reward_low_FN_rate"))
           + f" ({r['standard']['fp']}) |")
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="nab_ablation.py's cache of raw scores (the default row)")
    ap.add_argument("--half", choices=["dev", "held-out", "all"], default="dev")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = halves()[args.half] if args.half != "all" else [n for h in halves().values() for n in h]
    base = {n: v for n, v in raw_scores("CLI", 0, Path(args.cache) if args.cache else None).items() if n in names}
    tried = {
        "default (the library's Continuation, CLI route)": base,
        "forecast error over the network's own predicted standard deviation (Gaussian NLL head)": nll_scores(names),
        "the same, beta-NLL (beta 0.5)": nll_scores(names, BetaNllContinuation),
    }
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        rows = [score_row(label, raw, corpora, args.half) for label, raw in tried.items()]
    body = (f"Continuation with a second head for the log-variance of each forecast, trained with the Gaussian "
            f"negative log-likelihood; score = error over the predicted standard deviation, then the library's "
            f"smoothing, error scale and NAB score (every kind of evidence). CLI route (fit on the probationary "
            f"period less a tenth, calibrate on the tenth, score the whole series), seed 0; {args.half} half; "
            f"{time.perf_counter() - t0:.0f} s. NAB's scorer, standard / reward low FP / reward low FN "
            f"(false-positive rows, standard).\n\n| forecaster | {args.half} half, CLI route |\n| --- | --- |\n"
            + "\n".join(rows) + "\n\nA forecaster that loses on the development half is not judged on the held-out half.")
    record.publish("Issue 19: a forecaster that predicts its own error scale (nab_nll.py)", body, args.no_record)


if __name__ == "__main__":
    main()
