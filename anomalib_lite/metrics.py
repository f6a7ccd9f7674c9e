"""Detection metrics, from scikit-learn, with one clear error when labels cannot support them.

Scores may hold NaN where a series detector had no full window yet; those steps are left out.
For time series also: anomaly windows (:func:`window_metrics`: share of windows detected, false
alarms per 1,000 points outside them, lead of the first flag) and early warning (:func:`onsets`,
:func:`early_warning_labels`, :func:`lead_times`).
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from .errors import AnomalyError

__all__ = [
    "average_precision", "early_warning_labels", "image_metrics", "lead_times", "onsets",
    "roc_auc", "window_metrics",
]


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise AnomalyError(f"metrics: {y.size} labels for {s.size} scores")
    keep = ~np.isnan(s)  # series warm-up: no score yet
    y, s = y[keep], s[keep]
    if not np.isin(y, (0, 1)).all():
        raise AnomalyError("metrics: labels must be 0 (normal) or 1 (anomalous)")
    if len(np.unique(y)) < 2:
        raise AnomalyError("metrics: ROC-AUC and AP need both normal and anomalous samples")
    return y, s


def roc_auc(labels, scores) -> float:
    return float(skm.roc_auc_score(*_check(labels, scores)))


def average_precision(labels, scores) -> float:
    return float(skm.average_precision_score(*_check(labels, scores)))


def image_metrics(labels, scores, threshold: float | None = None) -> dict[str, float]:
    """ROC-AUC and AP; with a threshold also precision, recall, F1 and FPR at it."""
    y, s = _check(labels, scores)
    out = {
        "roc_auc": float(skm.roc_auc_score(y, s)),
        "average_precision": float(skm.average_precision_score(y, s)),
        "n": int(y.size),
        "n_anomalous": int(y.sum()),
    }
    if threshold is not None:
        pred = s > threshold
        out.update(
            threshold=float(threshold),
            precision=float(skm.precision_score(y, pred, zero_division=0)),
            recall=float(skm.recall_score(y, pred, zero_division=0)),
            f1=float(skm.f1_score(y, pred, zero_division=0)),
            fpr=float(pred[y == 0].mean()),
        )
    return out


# ---------------------------------------------------------------- time series

def onsets(labels) -> np.ndarray:
    """Time steps where an anomaly starts: a 1 label after a 0 (or at step 0)."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    return np.flatnonzero(y & ~np.concatenate([[False], y[:-1]]))


def early_warning_labels(labels, horizon: int) -> np.ndarray:
    """1 at step t when an anomaly starts within (t, t + horizon]; ``horizon=0``: starts at t."""
    y = np.asarray(labels).reshape(-1)
    out = np.zeros(len(y), dtype=np.int64)
    for o in onsets(y):
        out[max(0, o - horizon) : o if horizon else o + 1] = 1
    return out


def lead_times(alarms, labels, horizon: int) -> dict:
    """Early-warning figures from 0/1 labels per step: an onset o is warned when an alarm falls in
    [o - horizon, o]; its lead is o minus the first such alarm. Alarms outside every such span and
    outside anomalous steps are false alarms, counted per 1,000 such steps."""
    a = np.asarray(alarms).reshape(-1).astype(bool)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if a.shape != y.shape:
        raise AnomalyError(f"metrics: {a.size} alarms for {y.size} labels")
    covered = y.copy()
    leads = []
    starts = onsets(y)
    for o in starts.tolist():
        lo = max(0, o - horizon)
        covered[lo : o + 1] = True
        hits = np.flatnonzero(a[lo : o + 1])
        if hits.size:
            leads.append(o - (lo + int(hits[0])))
    n = len(starts)
    return {
        "onsets": n,
        "warned": len(leads) / n if n else float("nan"),
        "mean_lead": float(np.mean(leads)) if leads else float("nan"),
        "median_lead": float(np.median(leads)) if leads else float("nan"),
        "false_alarms_per_1k": float(1000.0 * (a & ~covered).sum() / max(1, (~covered).sum())),
    }


def window_metrics(flags, windows, references=None) -> dict:
    """Event-level figures for anomaly windows ``[(start, end), ...]`` (inclusive steps):
    ``recall`` (share of windows with a flag inside), ``false_alarms_per_1k`` (flagged steps
    outside every window per 1,000 such steps) and ``mean_lead`` (over detected windows: the
    reference step, the labelled anomaly or else the window end, minus the first flag inside)."""
    f = np.asarray(flags).reshape(-1).astype(bool)
    inside = np.zeros(len(f), dtype=bool)
    leads, detected = [], 0
    for i, (a, b) in enumerate(windows):
        inside[a : b + 1] = True
        hits = np.flatnonzero(f[a : b + 1])
        if hits.size:
            detected += 1
            ref = b if references is None else references[i]
            leads.append(int(ref) - (a + int(hits[0])))
    outside = ~inside
    return {
        "windows": len(windows),
        "detected": detected,
        "recall": detected / len(windows) if windows else float("nan"),
        "false_alarms": int((f & outside).sum()),
        "points_outside": int(outside.sum()),
        "false_alarms_per_1k": float(1000.0 * (f & outside).sum() / max(1, outside.sum())),
        "mean_lead": float(np.mean(leads)) if leads else float("nan"),
        "leads": leads,
    }
