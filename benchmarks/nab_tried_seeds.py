"""Issue 19: the rules of ``nab_tried.py`` judged again over several seeds of the forecaster.

``nab_seeds.py`` measured how far the forecaster's seed alone moves NAB's score (development
half: standard deviation 1.43 points over five seeds). ``nab_tried.py`` judged each rule on one
seed, and most rules moved the development half by less than that. Here every rule is judged by
its paired gain over the default on the same raw scores (each seed's CLI route, ``nab_ablation.
raw_scores``), whose seed noise is smaller than the figures' own:

1. every rule on the development half, seed 0; the rules within 1 point of the default or better
   go on;
2. those on the development half with every other seed: mean paired gain and its standard error;
3. a rule whose mean gain on the development half exceeds twice its standard error (and is
   positive) is judged on the held-out half with every seed. Nothing else is.

Run:  python benchmarks/nab_tried_seeds.py --cache DIR [--seeds 5] [--ablation]   (DIR:
      ``nab_ablation.py``'s cache; the seeds' fits are added to it, about a minute each;
      ``--ablation``: ``nab_ablation.py``'s variants, the first pass, instead of the rules tried after;
      ``--only TEXT [TEXT ...]``: the rules whose names hold one of these)
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import torch
import nab_ablation
from nab_ablation import Corpora, raw_scores
from nab_tried import DEFAULT, VARIANTS, unit_scores


def ablation_rules() -> dict:
    """``nab_ablation.py``'s variants (the first pass: which kinds of evidence, their windows and
    memories, the alarm level) in ``nab_tried``'s form; the one that rewrites the raw scores
    (out-of-sample history only) is left out."""
    out = {}
    for name, v in nab_ablation.VARIANTS.items():
        if name == nab_ablation.DEFAULT or isinstance(v, tuple):
            continue
        out[name] = ({}, (lambda f: lambda p, det, n: f(p, det))(v) if callable(v) else v, 0)
    return out


def standard(corpora: Corpora, raw: dict, variant, half: str) -> tuple[float, int]:
    r = corpora.score(unit_scores(raw, variant), half)["standard"]
    return r["normalized"], r["fp"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, help="nab_ablation.py's cache of fitted detectors and raw scores")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ablation", action="store_true",
                    help="judge nab_ablation.py's variants (the first pass) instead of nab_tried.py's rules")
    ap.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                    help="only the rules whose names hold one of these")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0, seeds = time.perf_counter(), list(range(args.seeds))
    raws = {s: raw_scores("CLI", s, Path(args.cache)) for s in seeds}
    rows, judged = [], []
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        rules = ablation_rules() if args.ablation else {v: r for v, r in VARIANTS.items() if v != DEFAULT}
        rules = {v: r for v, r in rules.items() if not args.only or any(t in v for t in args.only)}
        base = {s: standard(corpora, raws[s], VARIANTS[DEFAULT], "dev") for s in seeds}
        first = {v: standard(corpora, raws[0], rule, "dev") for v, rule in rules.items()}
        print("seed 0 done", flush=True)
        for v, (fig0, fp0) in first.items():
            if fig0 < base[0][0] - 1.0:
                rows.append(f"| {v} | {fig0 - base[0][0]:+.2f} | | |")
                continue
            gains = np.array([fig0 - base[0][0]] + [standard(corpora, raws[s], rules[v], "dev")[0] - base[s][0]
                                                    for s in seeds[1:]])
            se = gains.std(ddof=1) / np.sqrt(len(gains))
            cell = " ".join(f"{g:+.2f}" for g in gains)
            held = ""
            if gains.mean() > 0 and gains.mean() > 2 * se:
                hb = {s: standard(corpora, raws[s], VARIANTS[DEFAULT], "held-out")[0] for s in seeds}
                hg = np.array([standard(corpora, raws[s], rules[v], "held-out")[0] - hb[s] for s in seeds])
                held = f"{hg.mean():+.2f} ± {hg.std(ddof=1) / np.sqrt(len(hg)):.2f} ({' '.join(f'{g:+.2f}' for g in hg)})"
                judged.append(v)
            rows.append(f"| {v} | {cell} | {gains.mean():+.2f} ± {se:.2f} | {held} |")
            print(rows[-1], flush=True)
    which = "`nab_ablation.py`'s variants (the first pass)" if args.ablation else "`nab_tried.py`"
    which += "" if not args.only else f" whose names hold {' or '.join(repr(t) for t in args.only)}"
    body = (f"Every rule of {which} (one change each to `nab.results_scores`) on the raw scores of the CLI route "
            f"(Continuation with every default, seeds {seeds[0]} to {seeds[-1]}, `nab_ablation.raw_scores`), by its gain "
            f"in NAB's standard score over the default on the same seed's scores. Development half: seed 0 for "
            f"every rule; the rules within 1 point of the default there, every seed (mean gain ± standard error); "
            f"held-out half only for a rule whose mean gain on the development half is positive and above twice "
            f"its standard error. {time.perf_counter() - t0:.0f} s.\n\n"
            f"The default's standard score by seed, development half: "
            + ", ".join(f"{base[s][0]:.2f}" for s in seeds)
            + ".\n\n| rule | gain on the development half, by seed | mean ± s.e. | gain on the held-out half, mean ± s.e. (by seed) |\n"
            "| --- | --- | --- | --- |\n" + "\n".join(rows)
            + f"\n\nJudged on the held-out half: {len(judged)} rule(s)" + (f": {'; '.join(judged)}." if judged else "."))
    title = ("the first pass's variants" if args.ablation else "the rules tried") + ", judged again over the forecaster's seeds"
    record.publish(f"Issue 19: {title} (nab_tried_seeds.py{' --ablation' if args.ablation else ''})", body,
                   args.no_record)


if __name__ == "__main__":
    main()
