"""The NAB protocol (Numenta Anomaly Benchmark) and its results format.

NAB scores streaming detectors: the first 15 % of each series, at most 750 steps (NAB's
``probationaryPeriod``), is for learning only; every later step gets a score in [0, 1] computed
from the past alone. :func:`run_protocol` does exactly that with a series detector: ``fit`` on
the probationary period, then ``partial_fit`` chunk by chunk (score, then learn). The results
files NAB's own scorer reads are ``<dir>/<detector>/<category>/<detector>_<file>.csv`` with the
columns ``timestamp,value,anomaly_score,label`` (label = inside an anomaly window).
"""
from __future__ import annotations

import csv
import glob
import math
from pathlib import Path

import numpy as np

from ..errors import AnomalyError
from ..io import atomic_output

__all__ = ["NEIGHBOURS", "calendar_steps", "probation_steps", "results_path", "results_scores", "run_protocol", "write_results"]


def probation_steps(n: int, share: float = 0.15) -> int:
    """NAB's probationary period: ``min(floor(share * n), share * 5000)`` steps."""
    return int(min(math.floor(share * n), share * 5000))


def run_protocol(detector, source, chunk: int = 64, share: float = 0.15, fpr: float = 0.01,
                 holdout: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """NAB's protocol with a series detector: ``fit`` on the probationary period but its last
    ``holdout`` share, ``calibrate`` on that share as the continuation of the training steps
    (realistic scores of unseen data), then score the training steps to carry the stream to the
    held-out ones, and go on test-then-train (``partial_fit``: score, then learn) chunk by chunk
    from there, the held-out steps included. Returns (scores, flags) for every step; nothing
    uses a later step."""
    n = len(source)
    p = probation_steps(n, share)
    k = max(1, round(holdout * p))
    if p - k <= getattr(detector, "window", 0) + getattr(detector, "horizon", 0):
        raise AnomalyError(f"{source.spec}: a probationary period of {p} steps is shorter than the window")
    values = source.values
    detector.fit(values[: p - k])
    detector.calibrate(values[p - k : p], fpr=fpr, context=values[: p - k])
    detector.reset()
    scores = [detector.decision_function(values[: p - k])]
    flags = [detector.flag(scores[0]) if detector.can_flag() else np.zeros(p - k, dtype=bool)]
    for i in range(p - k, n, chunk):
        detector.partial_fit(values[i : i + chunk])
        scores.append(detector.last_scores_)
        flags.append(detector.last_flags_)
    return np.concatenate(scores), np.concatenate(flags)


def calendar_steps(step_seconds: float | None) -> tuple[int, int]:
    """(one week, one day) in steps of ``step_seconds``; (0, 0) without dates or when a step is
    longer than a day (no weekly rhythm to see)."""
    if not step_seconds or step_seconds > 86400:
        return 0, 0
    return round(7 * 86400 / step_seconds), max(1, round(86400 / step_seconds))


#: the subsequence length of the nearest-neighbour evidence in NAB's score (steps)
NEIGHBOURS = 8


def results_scores(detector, scores, share: float = 0.15, values=None, step_seconds: float | None = None,
                   **options) -> np.ndarray:
    """The [0, 1] scores NAB reads for one series scored from its first step:
    ``detector.unit_scores`` of the whole stream (its long-run distribution of scores starts
    with the probationary period's), 0 in the probationary period, which NAB does not score, and
    no alarm there. After an alarm the score stays quiet for half the probationary period: NAB's
    anomaly windows are 10 % of a series shared among its anomalies, the probationary period 15 %
    (at most 750 steps), so half of it is about one window, and NAB counts one detection per
    window and charges every other one. ``values`` (the series) add the evidence that does not
    depend on the forecaster, each a surprise on its own history: the distance of the latest
    :data:`NEIGHBOURS` steps to their nearest earlier neighbour (a spike, a new level, a shape
    never seen), a change in level or variance between the detector's last window of steps and
    the eight before, and with ``step_seconds`` (the series' time step, when it has dates;
    ``SeriesSource.step_seconds``) the distance to the same time of day and week in the last
    three weeks (a holiday, which a forecaster of the next steps follows), once that comparison
    has a day of history: the weekly rhythm of human activity, which Prophet also assumes for any
    series with dates and steps of a day or less. ``options`` change what is passed to
    ``unit_scores`` (and on to :class:`anomalib_lite.scoring.thresholds.SurpriseScore`), for ablations."""
    s = np.asarray(scores, dtype=np.float64)
    p = probation_steps(len(s), share)
    week, day = calendar_steps(step_seconds) if values is not None else (0, 0)
    if week + day >= len(s):  # never compared: hold no ring of a week's steps
        week = day = 0
    kw = dict(quiet=p // 2, settle=p, cycle=week, cycle_warm=day, extremes=False, neighbours=NEIGHBOURS,
              change=int(getattr(detector, "window", 0)))
    out = detector.unit_scores(s, values=values, **{**kw, **options})
    out = np.nan_to_num(out, nan=0.0)
    out[:p] = 0.0
    return out


def results_path(folder, source, detector_name: str) -> Path:
    """Where NAB's scorer looks for the results of ``source`` (a nab: series, or any series)."""
    base = Path(str(source.spec).split("?")[0])
    if glob.has_magic(str(base)):  # a series read from several files (days/*.csv): named after their folder
        base = base.parent.with_suffix(".csv") if base.parent.name else Path("series.csv")
    name = getattr(source, "nab_name", None) or base.name
    rel = Path(name)
    return Path(folder) / detector_name / rel.parent / f"{detector_name}_{rel.name}"


def write_results(folder, source, unit_scores, detector_name: str) -> Path:
    """Write NAB's results file for ``source``; scores must lie in [0, 1] (NaN is written as 0)."""
    s = np.nan_to_num(np.asarray(unit_scores, dtype=np.float64), nan=0.0)
    if s.shape != (len(source),) or s.min(initial=0) < 0 or s.max(initial=0) > 1:
        raise AnomalyError("NAB results: need one score in [0, 1] per step")
    path = results_path(folder, source, detector_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnomalyError(f"{folder}: cannot create the NAB results folder {path.parent} ({e.strerror})") from None
    labels = source.anomaly_labels()
    labels = np.zeros(len(source), dtype=np.int64) if labels is None else labels
    stamps = source.stamps or [str(i) for i in range(len(source))]
    with atomic_output(path, "NAB results") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for i in range(len(source)):
            w.writerow([stamps[i], f"{source.values[i, 0]:.10g}", f"{s[i]:.6g}", int(labels[i])])
    return path
