"""How NAB's score of the series route was chosen: its variants on NAB's own score, by the
development and held-out halves of the shared series (``nab_score.halves``), and what each kind of
evidence saw at every miss and false alarm of the held-out half.

The network's raw scores are computed once per route and seed (Continuation with every default):
* example: ``nab.run_protocol`` (fit on the probationary period, then test-then-train);
* CLI: what ``anomaly fit continuation --data "nab:NAME?stop=P"`` then ``anomaly score`` does
  (fit on the probationary period less its last tenth, calibrate on that tenth as the
  continuation, score the whole series with no learning).
Each variant then maps the same raw scores to NAB's [0, 1] score with ``nab.results_scores``
and one change (its ``options``, passed on to ``SurpriseScore``). Every variant is scored by NAB's
scorer (``../shared/tools/nab_score.py``, imported by path: the same code as its command line).
Then, for the default on the CLI route at the standard profile's threshold, every anomaly window
of the held-out half that was missed (or found) and every alarm outside the windows is listed
with the surprise (-log10 p) each kind of evidence had there.
Run:  python benchmarks/nab_ablation.py [--cache DIR]      (about 15 minutes on 2 CPU cores)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record
import torch
from nab_score import PROFILES, TOOL, halves, subset_dir

import anomalib_lite as al
from anomalib_lite.evaluation import nab
from anomalib_lite.data.series_sources import nab_files
from anomalib_lite.data.sources import data_root
from anomalib_lite.scoring.thresholds import SurpriseScore

#: name -> options of ``results_scores`` (a callable: of the series' probationary period p and the
#: detector), or (options, "oos") for the variant whose history holds out-of-sample scores only
VARIANTS = {
    "default: forecast + cycle + neighbours + change": {},
    "issue-18 score (forecast + new extremes + cycle, settle 1.5 p)": lambda p, det: dict(
        settle=p + p // 2, extremes=True, neighbours=0, change=0),
    "settle 1.5 p instead of p": lambda p, det: dict(settle=p + p // 2),
    "with new extremes (+ alarm)": dict(extremes=True),
    "without neighbours": dict(neighbours=0),
    "without change": dict(change=0),
    "without cycle": dict(cycle=0),
    "forecast + cycle only": dict(neighbours=0, change=0),
    "forecast + cycle + new extremes (settle p)": dict(neighbours=0, change=0, extremes=True),
    "forecast alone": dict(neighbours=0, change=0, cycle=0),
    "neighbours of 4 steps": dict(neighbours=4),
    "neighbours of 16 steps": dict(neighbours=16),
    "neighbours of 32 steps": dict(neighbours=32),
    "neighbours' memory 2000": dict(memory=2000),
    "neighbours' memory 8000": dict(memory=8000),
    "change over 32 steps": dict(change=32),
    "change over 128 steps": dict(change=128),
    "change against 4 windows": lambda p, det: dict(reference=4 * det.window),
    "change against 16 windows": lambda p, det: dict(reference=16 * det.window),
    "change silent for its first 8 windows of values (they share most of their steps)": lambda p, det: dict(
        change_warm=8 * det.window),
    "forecast history: out-of-sample scores only": ({}, "oos"),
    "alarm at p <= 1e-4": dict(alarm=4.0, rest=2.0),
    "alarm at p <= 1e-6": dict(alarm=6.0, rest=4.0),
}
DEFAULT = next(iter(VARIANTS))
KINDS = SurpriseScore.KINDS


def scorer():
    spec = importlib.util.spec_from_file_location("nab_scorer", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_scorer"] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


class Corpora:
    """NAB's scorer on subsets of the series: one corpus (and its null / perfect scores) each."""

    def __init__(self, tmp: Path):
        self.tool, self.tmp, self.made = scorer(), tmp, {}

    def score(self, unit: dict, subset) -> dict:
        if subset not in self.made:
            tool = self.tool
            corpus = tool.Corpus(str(subset_dir(self.tmp, subset)), str(data_root() / "NAB" / "labels" / "combined_windows.json"))
            base = {}
            for name, profile in tool.DEFAULT_PROFILES.items():
                weights = tool.sweep_weights(corpus, profile)
                base[name] = (tool.null_baseline(corpus, weights, profile["fnWeight"]), profile["tpWeight"] * corpus.n_windows)
            self.made[subset] = (corpus, base)
        corpus, base = self.made[subset]
        s = np.concatenate([unit[se.rel][se.first_scored :] for se in corpus.series])
        return self.tool.score_detector(corpus, s, self.tool.DEFAULT_PROFILES, base)


def raw_scores(route: str, seed: int, cache: Path | None) -> dict:
    """name -> (fitted detector, its raw scores of the whole series, the series); cached as a bundle
    and the scores when ``cache`` is given."""
    out = {}
    if cache is not None:  # every script that passes a cache (nab_tried.py too) may name a new folder
        cache.mkdir(parents=True, exist_ok=True)
    for name in nab_files():
        source = al.load_data(f"nab:{name}")
        stem = None if cache is None else cache / f"{route}-{seed}-{name.replace('/', '--')}"
        if stem is not None and Path(f"{stem}.npy").is_file():
            out[name] = (al.load(f"{stem}.anomaly"), np.load(f"{stem}.npy"), source)
            continue
        det = al.Continuation(device="cpu", seed=seed)
        if route == "example":
            scores, _ = nab.run_protocol(det, source)
        else:
            train, held = al.load_data(f"nab:{name}?stop={nab.probation_steps(len(source))}").split(0.1)
            det.fit(train).calibrate(held, fpr=0.01, context=train).reset()
            scores = det.decision_function(source.values)
        if stem is not None:
            det.save(f"{stem}.anomaly")
            np.save(f"{stem}.npy", scores)
        out[name] = (det, np.asarray(scores), source)
    return out


def variant_scores(det, scores, source, variant) -> tuple[np.ndarray, dict]:
    """NAB's [0, 1] scores by ``results_scores`` with the variant's options, and each kind's
    surprise per step."""
    p = nab.probation_steps(len(scores))
    options, how = variant if isinstance(variant, tuple) else (variant, "")
    options = options(p, det) if callable(options) else options
    if how == "oos":  # the forecast's history: the calibration scores, then the scored steps only
        scores = np.where(np.arange(len(scores)) < p, np.nan, scores)
    unit = nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds, **options)
    return unit, det.last_levels_


def evidence_rows(unit: dict, levels: dict, result: dict, names: list[str]) -> list[str]:
    """One row per window (missed or found) and per alarm outside the windows, at the standard
    profile's threshold: each kind's surprise there (a window: the largest in it before the first
    detection, or in all of it when missed; an alarm: at its step)."""
    threshold = result["standard"]["threshold"]
    rows = []
    for name in names:
        source = al.load_data(f"nab:{name}")
        u, lv, p = unit[name], levels[name], nab.probation_steps(len(unit[name]))
        hits = np.flatnonzero(u >= threshold)
        inside = np.zeros(len(u), dtype=bool)
        short = name.split("/")[1]
        for a, b in source.windows:
            inside[a : b + 1] = True
            found = hits[(hits >= a) & (hits <= b)]
            end = int(found[0]) if len(found) else b
            seen = " | ".join(f"{np.nanmax(lv[k][max(a, p) : end + 1], initial=0.0):.1f}" for k in KINDS)
            what = f"found at {(found[0] - a) / (b - a + 1):.0%} of it" if len(found) else "**missed**"
            rows.append(f"| {short} | window {a}-{b} | {what} | {seen} |")
        for t in hits[~inside[hits]]:
            fired = KINDS[int(np.argmax([lv[k][t] for k in KINDS]))]
            seen = " | ".join(f"{lv[k][t]:.1f}" for k in KINDS)
            rows.append(f"| {short} | alarm at {t} | false positive ({fired}) | {seen} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=None, help="keep the fitted detectors and raw scores here (reused when present)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load_before, t = os.getloadavg(), time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    table, kept = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        corpora = Corpora(Path(tmp))
        for route, seed in (("example", 0), ("CLI", 0), ("example", 1)):
            raw = raw_scores(route, seed, cache)
            for vname, variant in VARIANTS.items():
                if seed and vname != DEFAULT:
                    continue
                unit, levels = {}, {}
                for name, (det, scores, source) in raw.items():
                    unit[name], levels[name] = variant_scores(det, scores, source, variant)
                    if vname == DEFAULT:  # the default variant is results_scores itself
                        same = nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds)
                        assert np.array_equal(unit[name], same), f"{name}: the default variant is not results_scores"
                for half in ("dev", "held-out", None):
                    table[route, seed, vname, half] = corpora.score(unit, half)
                if vname == DEFAULT and route == "CLI":
                    kept = (unit, levels)
                print(f"{route} {seed} {vname}: " + " ".join(
                    f"{table[route, seed, vname, h]['standard']['normalized']:.1f}" for h in ("dev", "held-out", None)), flush=True)
        rows = evidence_rows(*kept, table["CLI", 0, DEFAULT, "held-out"], halves()["held-out"])
    fmt = lambda r: " / ".join(f"{r[p]['normalized']:.1f}" for p in PROFILES)  # noqa: E731
    lines = [
        "Continuation with every default; the network's raw scores once per route (seed 0, and seed 1 for the "
        f"example route), then each variant of the NAB score ({time.perf_counter() - t:.0f} s in all). Standard / "
        "reward low FP / reward low FN by half (`nab_score.halves`: files alternate within each category, fixed "
        "before any result); the CLI route's standard score on all 31 in brackets. Default: `nab.results_scores` "
        "(HTM's likelihood of the forecast error, the weekly cycle, the nearest earlier neighbour of the last 8 "
        "steps, a change in level or variance over the detector's window (64 steps) against the 8 windows before; "
        "each a surprise on its own history, the largest counts; quiet for half the probationary period after an "
        "alarm; no alarm in the probationary period). Every other row changes one thing. Load average "
        "(1/5/15 min) before: " + "/".join(f"{v:.1f}" for v in load_before) + ", after: "
        + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".",
        "", "| variant | dev half (17) | held-out half (14) | all 31 |", "| --- | --- | --- | --- |"]
    for vname in VARIANTS:
        ex = [table["example", 0, vname, h] for h in ("dev", "held-out", None)]
        lines.append(f"| {vname} | {fmt(ex[0])} | {fmt(ex[1])} | {fmt(ex[2])} "
                     f"({table['CLI', 0, vname, None]['standard']['normalized']:.1f}) |")
    seed1 = [table["example", 1, DEFAULT, h] for h in ("dev", "held-out", None)]
    lines.append(f"| default, network seed 1 instead of 0 (example route) | {fmt(seed1[0])} | {fmt(seed1[1])} | {fmt(seed1[2])} |")
    lines += ["", "What each kind of evidence saw in the held-out half (default, CLI route, standard profile's threshold "
              f"{table['CLI', 0, DEFAULT, 'held-out']['standard']['threshold']:.4f}): per anomaly window, the largest "
              "surprise (-log10 p) of each kind in it up to its first detection (all of it when missed), and per alarm "
              "outside the windows each kind's surprise at its step (in brackets: the kind that fired). An alarm needs "
              "5 (p <= 1e-5); the forecast's includes the season's rest.", "",
              "| series | where | outcome | forecast | cycle | neighbours | change |", "| --- | --- | --- | --- | --- | --- | --- |",
              *rows]
    record.append("How NAB's score was chosen: its variants by half, and what each kind of evidence saw (nab_ablation.py)",
                  "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
