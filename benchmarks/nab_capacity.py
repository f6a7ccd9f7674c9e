"""Issue 19: the forecaster's capacity and training on NAB, measured by the protocol.

On NAB's probationary period (at most 750 steps) the forecaster's validation loss is lowest after
its first epochs, then rises while the training loss falls: the network (2 x 32 LSTM, about 13,000
weights) learns the training steps themselves. A forecaster that generalises better should make
smaller errors on the normal steps after the probation, and so fewer forecast false positives.
Each row changes one setting of ``Continuation`` (every other default kept) and runs the CLI
route of ``nab_nll.py`` (fit on the probationary period less a tenth, calibrate on the tenth,
score the whole series, seed 0) on one half; the default row comes from ``nab_ablation.py``'s
cache of the same route. Chosen on the development half; the held-out half only for a setting
that helps there.
Run:  python benchmarks/nab_capacity.py --cache DIR [--half dev|held-out|all] [--only TEXT ...]
"""
from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import record
from nab_ablation import Corpora, raw_scores
from nab_nll import nll_scores, score_row
from nab_score import halves

import anomalib_lite as al

SETTINGS = {
    "hidden 16 (2 x 16 LSTM)": dict(hidden=16),
    "one layer (1 x 32 LSTM)": dict(num_layers=1),
    "dropout 0.3": dict(dropout=0.3),
    "no early stopping (30 epochs)": dict(patience=None),
    "temporal CNN instead of LSTM": dict(network="tcn"),
    "one epoch": dict(epochs=1),
    "learning rate 3e-4": dict(lr=3e-4),
    "learning rate 1e-4": dict(lr=1e-4),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="nab_ablation.py's cache of raw scores (the default row)")
    ap.add_argument("--half", choices=["dev", "held-out", "all"], default="dev")
    ap.add_argument("--only", nargs="*", default=None, help="settings whose name contains one of these")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = halves()[args.half] if args.half != "all" else [n for h in halves().values() for n in h]
    chosen = {k: v for k, v in SETTINGS.items() if not args.only or any(s in k for s in args.only)}
    base = {n: v for n, v in raw_scores("CLI", 0, Path(args.cache) if args.cache else None).items() if n in names}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        for label, kw in {"default (every setting of Continuation)": None, **chosen}.items():
            raw = base if kw is None else nll_scores(names, functools.partial(al.Continuation, **kw))
            rows.append(score_row(label, raw, corpora, args.half))
    body = (f"Continuation with one setting changed, CLI route (fit on the probationary period less a tenth, "
            f"calibrate on the tenth, score the whole series), seed 0, NAB's score with every kind of evidence; "
            f"{args.half} half; {time.perf_counter() - t0:.0f} s. NAB's scorer, standard / reward low FP / "
            f"reward low FN (false-positive rows, standard).\n\n| setting | {args.half} half, CLI route |\n"
            f"| --- | --- |\n" + "\n".join(rows))
    record.publish("Issue 19: the forecaster's capacity and training (nab_capacity.py)", body, args.no_record)


if __name__ == "__main__":
    main()
