"""Detection metrics, from scikit-learn, with one clear error when labels cannot support them."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from .errors import AnomalyError

__all__ = ["average_precision", "image_metrics", "roc_auc"]


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise AnomalyError(f"metrics: {y.size} labels for {s.size} scores")
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
