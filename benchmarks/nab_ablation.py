"""How the weekly cycle of ``nab.results_scores`` was chosen: its variants on NAB's own score, by
the development and held-out halves of the shared series (``nab_score.halves``).

The network's raw scores are computed once per route and seed (Continuation with every default):
* example: ``nab.run_protocol`` (fit on the probationary period, then test-then-train);
* CLI: what ``anomaly fit continuation --data "nab:NAME?stop=P"`` then ``anomaly score`` does
  (fit on the probationary period less its last tenth, calibrate on that tenth as the
  continuation, score the whole series with no learning).
Each variant then maps the same raw scores to NAB's [0, 1] score with ``SurpriseScore`` set as
``results_scores`` sets it, but for the variant's change; the default variant is checked to equal
``results_scores`` itself. Every variant is scored by NAB's scorer (``../shared/tools/nab_score.py``).
Run:  python benchmarks/nab_ablation.py            (about six minutes on 2 CPU cores)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import record
from nab_score import PROFILES, TOOL, subset_dir

import anomalib_lite as al
from anomalib_lite import nab
from anomalib_lite.series_sources import nab_files
from anomalib_lite.sources import data_root
from anomalib_lite.thresholds import SurpriseScore

#: name -> change to the default cycle (week, day: the series' calendar in steps; season: the network's)
VARIANTS = {
    "previous defaults (no cycle)": lambda week, day, season: dict(cycle=0),
    "weekly cycle only where the detected season is one day": lambda week, day, season: dict(cycle=week if season == day else 0),
    "weekly cycle on every dated series (= default)": lambda week, day, season: {},
    "daily cycle only": lambda week, day, season: dict(cycle=day),
    "median of 1 week instead of 3": lambda week, day, season: dict(depth=1),
    "median of 5 weeks instead of 3": lambda week, day, season: dict(depth=5),
    "EWMA span 5 instead of the detector's 10": lambda week, day, season: dict(span=5.0),
    "EWMA span 20 instead of the detector's 10": lambda week, day, season: dict(span=20.0),
    "silent for 0 days instead of 1": lambda week, day, season: dict(cycle_warm=0),
    "silent for 2 days instead of 1": lambda week, day, season: dict(cycle_warm=2 * day),
    "only once 2 full weeks are behind": lambda week, day, season: dict(cycle_warm=day + week),
}
DEFAULT = "weekly cycle on every dated series (= default)"


def raw_scores(route: str, seed: int) -> dict:
    """name -> (fitted detector, its raw scores of the whole series, the series)."""
    out = {}
    for name in nab_files():
        source = al.load_data(f"nab:{name}")
        det = al.Continuation(device="cpu", seed=seed)
        if route == "example":
            scores, _ = nab.run_protocol(det, source)
        else:
            train, held = al.load_data(f"nab:{name}?stop={nab.probation_steps(len(source))}").split(0.1)
            det.fit(train).calibrate(held, fpr=0.01, context=train).reset()
            scores = det.decision_function(source.values)
        out[name] = (det, np.asarray(scores), source)
    return out


def variant_scores(det, scores, source, change) -> np.ndarray:
    """NAB's [0, 1] scores as ``nab.results_scores`` makes them, with one change."""
    n, p = len(scores), nab.probation_steps(len(scores))
    week, day = nab.calendar_steps(source.step_seconds)
    if week + day >= n:
        week = day = 0
    season = det.season_
    kw = dict(refractory=max(det.window, season, p // 2), season=season,
              reach=min(det.window // 2, season - 1) if season else 0, settle=p + p // 2, cycle=week,
              cycle_warm=day, span=float(det.smoothing))
    kw.update(change(week, day, season))
    out = SurpriseScore(det.calibration_scores_, **kw).update(scores, det._scaled(source.values))
    out = np.nan_to_num(out, nan=0.0)
    out[:p] = 0.0
    return out


def score_all(results: Path, data: Path, out: Path) -> dict:
    """NAB's scorer over every detector (variant) under ``results``: name -> profile -> figures."""
    labels = data_root() / "NAB" / "labels" / "combined_windows.json"
    subprocess.run([sys.executable, str(TOOL), "--data", str(data), "--labels", str(labels), "--results", str(results),
                    "--json", str(out)], check=True, capture_output=True, text=True)
    return json.loads(out.read_text())["detectors"]


def main() -> None:
    load_before, t = os.getloadavg(), time.perf_counter()
    ids = {name: f"v{i}" for i, name in enumerate(VARIANTS)}
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for route, seed in (("example", 0), ("CLI", 0), ("example", 1)):
            results = tmp / f"{route}-{seed}"
            for det, scores, source in raw_scores(route, seed).values():
                for name, change in VARIANTS.items():
                    unit = variant_scores(det, scores, source, change)
                    if name == DEFAULT:  # the variants are results_scores with one change
                        same = nab.results_scores(det, scores, values=source.values, step_seconds=source.step_seconds)
                        assert np.array_equal(unit, same), f"{source.spec}: the default variant is not results_scores"
                    nab.write_results(results, source, unit, ids[name])
            for half, subset in (("dev", "dev"), ("held-out", "held-out"), ("all", None)):
                table[route, seed, half] = score_all(results, subset_dir(tmp, subset), tmp / "scores.json")
    fmt = lambda r: " / ".join(f"{r[p]['normalized']:.1f}" for p in PROFILES)  # noqa: E731
    lines = [
        "Continuation with every default; the network's raw scores once per route (seed 0, and seed 1 for the "
        f"example route), then each variant of the NAB score ({time.perf_counter() - t:.0f} s in all). Standard / "
        "reward low FP / reward low FN by half (`nab_score.halves`: files alternate within each category, fixed "
        "before any result); the CLI route's standard score on all 18 in brackets. Load average (1/5/15 min) before: "
        + "/".join(f"{v:.1f}" for v in load_before) + ", after: " + "/".join(f"{v:.1f}" for v in os.getloadavg()) + ".",
        "", "| variant | dev half | held-out half | all 18 |", "| --- | --- | --- | --- |"]
    for name, vid in ids.items():
        ex = [table["example", 0, h][vid] for h in ("dev", "held-out", "all")]
        lines.append(f"| {name} | {fmt(ex[0])} | {fmt(ex[1])} | {fmt(ex[2])} "
                     f"({table['CLI', 0, 'all'][vid]['standard']['normalized']:.1f}) |")
    seed1 = [table["example", 1, h][ids[DEFAULT]] for h in ("dev", "held-out", "all")]
    lines.append(f"| default, network seed 1 instead of 0 (example route) | {fmt(seed1[0])} | {fmt(seed1[1])} | {fmt(seed1[2])} |")
    record.append("How the weekly cycle was chosen: its variants on NAB's own score (nab_ablation.py)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
