"""Issue 19: how much NAB's score moves with the forecaster's seed, and whether averaging seeds helps.

Every NAB figure of the series route so far comes from one seed (0). Many rules tried in
``nab_tried.py`` moved the development half by less than a point; whether such a difference is
signal depends on how far the figure moves when only the network's initialisation and batch order
change. This script fits the CLI route (``nab_nll.py``'s: fit on the probationary period less a
tenth, calibrate on that tenth, score the whole series) once per seed, scores each seed's raw
scores with NAB's scorer, then the mean of the seeds' raw scores (an ensemble of forecasters: each
score is already in its detector's error units; seed 0's detector supplies the rest of NAB's
score). Both halves are computed: the seeds' spread is a property of the figure, not a rule to
choose; an ensemble is judged as the protocol says (it must help the development half).
Run:  python benchmarks/nab_seeds.py [--seeds 5] [--half dev|held-out|both]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import record
from nab_ablation import Corpora
from nab_nll import score_row
from nab_score import halves

import anomalib_lite as al
from anomalib_lite.evaluation import nab


def fits(names: list[str], seeds: list[int]) -> dict:
    """name -> ([(fitted Continuation, raw scores of the whole series) per seed], the series)."""
    out = {}
    for name in names:
        source = al.load_data(f"nab:{name}")
        train, held = al.load_data(f"nab:{name}?stop={nab.probation_steps(len(source))}").split(0.1)
        per = []
        for seed in seeds:
            det = al.Continuation(device="cpu", seed=seed)
            det.fit(train).calibrate(held, fpr=0.01, context=train).reset()
            per.append((det, np.asarray(det.decision_function(source.values))))
        out[name] = (per, source)
    return out


def figure(row: str) -> float:
    return float(row.split("| ")[2].split(" /")[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--half", choices=["dev", "held-out", "both"], default="both")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    seeds = list(range(args.seeds))
    parts = ["dev", "held-out"] if args.half == "both" else [args.half]
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        for half in parts:
            raw = fits(halves()[half], seeds)
            rows = [score_row(f"seed {s}", {n: (per[i][0], per[i][1], src) for n, (per, src) in raw.items()},
                              corpora, half) for i, s in enumerate(seeds)]
            single = np.array([figure(r) for r in rows])
            for k in sorted({3, len(seeds)}):
                rows.append(score_row(f"mean of seeds 0-{k - 1}'s raw scores (an ensemble of {k})",
                                      {n: (per[0][0], np.mean([p[1] for p in per[:k]], axis=0), src)
                                       for n, (per, src) in raw.items()}, corpora, half))
            tables.append(f"**{half} half** ({len(raw)} series): single seeds, standard profile: mean "
                          f"{single.mean():.2f}, sd {single.std(ddof=1):.2f}, range {single.min():.2f} to "
                          f"{single.max():.2f}.\n\n| forecaster | {half} half, CLI route |\n| --- | --- |\n"
                          + "\n".join(rows))
    body = (f"Continuation with every default, CLI route (fit on the probationary period less a tenth, calibrate "
            f"on the tenth, score the whole series), one fit per seed, NAB's score with every kind of evidence; "
            f"{time.perf_counter() - t0:.0f} s. NAB's scorer, standard / reward low FP / reward low FN "
            f"(false-positive rows, standard).\n\n" + "\n\n".join(tables))
    record.publish("Issue 19: NAB's score by the forecaster's seed, and seeds averaged (nab_seeds.py)", body,
                   args.no_record)


if __name__ == "__main__":
    main()
