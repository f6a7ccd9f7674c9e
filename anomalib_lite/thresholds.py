"""Thresholds: turning scores into decisions without labels.

The threshold is set on scores of held-out *normal* data at a target false positive rate, in the
conformal way: a score ``s`` gets the p-value ``(1 + #{s_i >= s}) / (n + 1)`` against the n
calibration scores, and ``s > threshold`` exactly when that p-value is at most ``fpr``. On
exchangeable data this bounds the false positive rate by ``fpr``.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import AnomalyError

__all__ = ["check_scores", "fpr_threshold", "p_values"]


def check_scores(scores, where: str = "scores") -> np.ndarray:
    """1-D float64 array of finite scores, or AnomalyError."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise AnomalyError(f"{where}: no scores")
    if not np.isfinite(s).all():
        raise AnomalyError(f"{where}: score {int(np.flatnonzero(~np.isfinite(s))[0])} is not finite")
    return s


def fpr_threshold(normal_scores, fpr: float = 0.01) -> float:
    """The smallest threshold whose conformal p-value test flags at most ``fpr`` of normals.

    Needs at least ``1/fpr - 1`` calibration scores to reach the rate; with fewer it returns the
    largest normal score (flagging only what exceeds every normal) and warns.
    """
    if not 0 < fpr < 1:
        raise AnomalyError(f"fpr: must be in (0, 1), got {fpr}")
    s = np.sort(check_scores(normal_scores, "calibration scores"))[::-1]
    allowed = int(np.floor(fpr * (len(s) + 1) + 1e-9)) - 1  # calibration scores allowed >= s
    if allowed < 0:
        warnings.warn(
            f"{len(s)} calibration scores cannot certify fpr={fpr:g} "
            f"(need {int(np.ceil(1 / fpr - 1))}); threshold = largest normal score",
            stacklevel=2,
        )
        return float(s[0])
    return float(s[min(allowed, len(s) - 1)])


def p_values(scores, calibration_scores) -> np.ndarray:
    """Conformal p-values ``(1 + #{c >= s}) / (n + 1)``: small means unlike the normal data."""
    cal = np.sort(check_scores(calibration_scores, "calibration scores"))
    s = np.asarray(scores, dtype=np.float64)
    n_ge = len(cal) - np.searchsorted(cal, s, side="left")
    return (1.0 + n_ge) / (len(cal) + 1.0)
