"""Detection metrics, from scikit-learn, with one clear error when labels cannot support them.

Scores may hold NaN where a series detector had no full window yet; those steps are left out.
For time series also: anomaly windows (:func:`window_metrics`: share of windows detected, false
alarms per 1,000 points outside them, lead of the first flag; a label column's anomalies as such
spans: :func:`label_events`) and early warning (:func:`onsets`, :func:`early_warning_labels`,
:func:`lead_times`).
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ..errors import AnomalyError

__all__ = [
    "average_precision", "early_warning_labels", "fpr_interval", "image_metrics", "in_spans", "label_events", "lead_times", "onsets",
    "pixel_metrics", "pro_auc", "roc_auc", "window_metrics",
]


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise AnomalyError(f"metrics: {y.size} labels for {s.size} scores")
    keep = ~np.isnan(s)  # series warm-up: no score yet
    y, s = y[keep], s[keep]
    if not np.isin(y, (0, 1)).all():
        seen = np.unique(y)
        shown = ", ".join(map(str, seen[:8])) + (", ..." if seen.size > 8 else "")
        raise AnomalyError(f"metrics: labels must be 0 (normal) or 1 (anomalous), got {shown}; class indices of a "
                           "data spec (a folder's sub-folders) give 0/1 by source.anomaly_labels()")
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


def fpr_interval(flags_of_normals, target: float | None = None, level: float = 0.95) -> dict:
    """The false positive rate achieved on normal samples (``flags_of_normals``: True where one
    was flagged), its exact binomial (Clopper-Pearson) ``level`` interval, and whether the
    ``target`` rate the threshold was calibrated for lies inside it. A target outside says the
    threshold does not hold on this data (a shift since calibration, or too few normals there)."""
    from scipy.stats import beta

    f = np.asarray(flags_of_normals, dtype=bool).reshape(-1)
    k, n = int(f.sum()), int(f.size)
    if n == 0:
        raise AnomalyError("metrics: the false positive rate needs normal samples")
    a = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    out = {"fpr": k / n, "false_positives": k, "normals": n, "low": low, "high": high, "level": level}
    if target is not None:
        out.update(target=float(target), target_inside=bool(low <= target <= high))
    return out


# ---------------------------------------------------------------- pixels

def _regions(masks: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(image index, boolean region) for each connected defect region (8-connectivity)."""
    from scipy import ndimage

    out = []
    for i, m in enumerate(masks):
        if m.any():
            lab, n = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
            out += [(i, lab == r) for r in range(1, n + 1)]
    return out


def pro_auc(masks, maps, max_fpr: float = 0.3, steps: int = 300) -> float:
    """Per-region overlap integrated up to a pixel false positive rate of ``max_fpr``, divided by
    ``max_fpr`` (MVTec AD's PRO, Bergmann et al.): for each threshold, the share of each connected
    defect region's pixels above it, averaged over regions (small defects weigh like large ones),
    against the share of normal pixels above it. ``steps`` thresholds evenly spaced in FPR."""
    masks = np.asarray(masks, dtype=bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape:
        raise AnomalyError(f"metrics: masks {masks.shape} and maps {maps.shape} differ in shape")
    regions = _regions(masks)
    normal = maps[~masks]
    if not regions or normal.size == 0:
        raise AnomalyError("metrics: PRO needs defect regions and normal pixels")
    grid = np.linspace(0.0, min(1.0, 2 * max_fpr), 2 * steps + 1)
    ths = np.concatenate([[np.inf], np.unique(np.quantile(normal, 1.0 - grid))[::-1], [-np.inf]])
    normal = np.sort(normal)
    fpr = 1.0 - np.searchsorted(normal, ths, side="right") / normal.size
    overlap = np.zeros(len(ths))
    for i, r in regions:
        vals = np.sort(maps[i][r])
        overlap += 1.0 - np.searchsorted(vals, ths, side="right") / len(vals)
    pro = overlap / len(regions)
    # the curve up to max_fpr, its end interpolated between the points around it (as MVTec's code)
    end = np.interp(max_fpr, fpr, pro)
    keep = fpr < max_fpr
    x, y = np.append(fpr[keep], max_fpr), np.append(pro[keep], end)
    return float(np.trapezoid(y, x) / max_fpr)


def pixel_metrics(masks, maps) -> dict[str, float]:
    """Pixel ROC-AUC and PRO of anomaly maps against boolean defect masks (N, H, W)."""
    masks = np.asarray(masks, dtype=bool)
    out = {"pixel_roc_auc": roc_auc(masks.reshape(-1).astype(np.int64), np.asarray(maps).reshape(-1))}
    out["pro"] = pro_auc(masks, maps)
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


def label_events(labels, after: int = 0) -> tuple[list[tuple[int, int]], list[int]]:
    """The anomalies a 0/1 label per step marks, as spans for :func:`window_metrics`: each run of
    1s from its first step to ``after`` steps past its last (a detector that reads the last
    ``after`` steps still holds the anomaly in its input there: its flags then are the anomaly's,
    not false alarms), merged where they overlap; and each span's first labelled step (the
    reference for the delay of its first flag)."""
    y = np.asarray(labels).reshape(-1).astype(bool)
    n = len(y)
    ends = np.flatnonzero(y & ~np.concatenate([y[1:], [False]]))
    spans: list[tuple[int, int]] = []
    starts: list[int] = []
    for a, b in zip(onsets(y).tolist(), ends.tolist()):
        b = min(n - 1, b + max(0, int(after)))
        if spans and a <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
            starts.append(a)
    return spans, starts


def in_spans(spans, n: int) -> np.ndarray:
    """(n,) bool: True at the steps inside any of ``spans`` ``[(start, end), ...]`` (inclusive)."""
    inside = np.zeros(n, dtype=bool)
    for a, b in spans:
        inside[a : b + 1] = True
    return inside


def window_metrics(flags, windows, references=None) -> dict:
    """Event-level figures for anomaly windows ``[(start, end), ...]`` (inclusive steps):
    ``recall`` (share of windows with a flag inside), ``false_alarms_per_1k`` (flagged steps
    outside every window per 1,000 such steps) and ``mean_lead`` (over detected windows: the
    reference step, the labelled anomaly or else the window end, minus the first flag inside)."""
    f = np.asarray(flags).reshape(-1).astype(bool)
    inside = in_spans(windows, len(f))
    leads, detected = [], 0
    for i, (a, b) in enumerate(windows):
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
