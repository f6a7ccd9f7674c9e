"""Thresholds: turning scores into decisions without labels.

The threshold is set on scores of held-out *normal* data at a target false positive rate, in the
conformal way: a score ``s`` gets the p-value ``(1 + #{s_i >= s}) / (n + 1)`` against the n
calibration scores, and ``s > threshold`` exactly when that p-value is at most ``fpr``. On
exchangeable data this bounds the false positive rate by ``fpr``.

For series and streams two label-free alternatives: :func:`dynamic_threshold` (Telemanom's
non-parametric search over mean + z*std with pruning, on a batch of smoothed errors) and
:class:`MovingThreshold` (mean + k*std or a quantile of a moving window of past scores).
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import AnomalyError
from .streaming import MovingWindow

__all__ = ["MovingThreshold", "check_scores", "dynamic_threshold", "fpr_threshold", "p_values"]


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
    """Conformal p-values ``(1 + #{c >= s}) / (n + 1)``: small means unlike the normal data.
    A NaN score (a series still warming up) has a NaN p-value."""
    cal = np.sort(check_scores(calibration_scores, "calibration scores"))
    s = np.asarray(scores, dtype=np.float64)
    n_ge = len(cal) - np.searchsorted(cal, s, side="left")
    return np.where(np.isnan(s), np.nan, (1.0 + n_ge) / (len(cal) + 1.0))


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def dynamic_threshold(
    errors, z_range: tuple[float, float] = (2.5, 12.0), z_step: float = 0.5, prune: float = 0.13
) -> tuple[float, np.ndarray]:
    """Telemanom's threshold (Hundman et al. 2018) on a batch of smoothed errors.

    Among ``mean + z*std`` for z in ``z_range``, pick the one whose removal of the points above it
    lowers the mean and std of the rest the most per flagged point and sequence:
    ``(dmean/mean + dstd/std) / (n_flagged + n_sequences**2)``; at most half the points may be
    flagged. Then prune: sort the flagged sequences by their peak, append the largest unflagged
    error, and unflag the sequences after the last peak that is at least ``prune`` (13 %) above
    the next. Returns ``(threshold, flags)``; NaN errors are never flagged.
    """
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    finite = np.isfinite(e)
    v = e[finite]
    flags = np.zeros(e.shape, dtype=bool)
    if v.size < 2 or v.std() == 0:
        return float("inf"), flags
    mu, sd = v.mean(), v.std()
    best, eps_best = -np.inf, np.inf
    for z in np.arange(z_range[0], z_range[1] + 1e-9, z_step):
        eps = mu + z * sd
        above = v > eps
        n_above = int(above.sum())
        if n_above == 0 or n_above >= 0.5 * v.size:
            continue
        rest = v[~above]
        gain = (mu - rest.mean()) / max(abs(mu), 1e-12) + (sd - rest.std()) / sd
        score = gain / (n_above + len(_runs(above)) ** 2)
        if score > best:
            best, eps_best = score, eps
    if not np.isfinite(eps_best):
        return float(mu + z_range[1] * sd), flags
    flags = finite & (np.nan_to_num(e, nan=-np.inf) > eps_best)
    runs = _runs(flags)
    peaks = np.array([e[a:b].max() for a, b in runs])
    order = np.argsort(-peaks, kind="stable")
    ladder = np.append(peaks[order], e[finite & ~flags].max(initial=0.0))
    drops = (ladder[:-1] - ladder[1:]) / np.maximum(ladder[:-1], 1e-12)
    big = np.flatnonzero(drops >= prune)
    keep = 0 if big.size == 0 else int(big[-1]) + 1  # sequences ranked below this are pruned
    for rank in order[keep:]:
        a, b = runs[rank]
        flags[a:b] = False
    return float(eps_best), flags


class MovingThreshold:
    """A streaming threshold from the previous ``window`` finite scores.

    ``method="std"``: flag when the score exceeds mean + ``k`` * std of the window;
    ``method="quantile"``: when it exceeds the window's ``q`` quantile. Each score is judged
    against the scores before it (test, then learn), then joins the window; NaN scores are
    never flagged and never join. Nothing is flagged before ``min_count`` scores were seen, nor
    at or below ``floor`` (scores in known units: a floor keeps float noise on a flat series from
    being flagged).
    """

    def __init__(self, method: str = "std", window: int = 1000, k: float = 4.0, q: float = 0.99,
                 min_count: int | None = None, floor: float = -np.inf):
        if method not in ("std", "quantile"):
            raise AnomalyError(f"moving threshold method '{method}': unknown; use 'std' or 'quantile'")
        if not isinstance(window, int) or window < 2:
            raise AnomalyError(f"threshold_window={window!r}: must be an integer >= 2")
        if not 0 < q < 1:
            raise AnomalyError(f"threshold_q={q}: must be in (0, 1)")
        self.method, self.k, self.q, self.floor = method, float(k), float(q), float(floor)
        self.min_count = min(window, 30) if min_count is None else int(min_count)
        self.window = MovingWindow(window)

    def current(self) -> float:
        """The threshold the next score will be judged against (inf while warming up)."""
        w = self.window
        if len(w) < max(self.min_count, 1):
            return float("inf")
        t = w.mean() + self.k * w.std() if self.method == "std" else w.quantile(self.q)
        return max(t, self.floor)

    def update(self, scores) -> np.ndarray:
        """Flags for ``scores`` in order; each then joins the window."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        flags = np.zeros(s.shape, dtype=bool)
        for i, v in enumerate(s.tolist()):
            if np.isnan(v):
                continue
            flags[i] = v > self.current()
            self.window.push(v)
        return flags
