"""Kinds of evidence that a step of a series is anomalous, each independent of a forecaster.

Each kind reads the series' values (standardised, one row per step, one column per channel) as a
stream and gives one statistic per step, computed from that step and the ones before it, in
bounded memory and independent of how the stream is cut into chunks (each step's statistic is
computed by the same operations whatever chunk it arrives in). :class:`Likelihood` turns any of
them into a surprise on its own history (HTM's anomaly likelihood: the Gaussian tail of the
statistic under the mean and standard deviation of its previous values), so that kinds in other
units, and series of other scales, compare; :class:`anomalib_lite.scoring.thresholds.SurpriseScore`
combines them with a forecaster's error into NAB's [0, 1] score.

* :class:`Neighbours`: the distance of the latest subsequence to its nearest earlier one (KNN CAD,
  CAD OSE, matrix-profile discords): a spike, a jump to a new level, a shape never seen before,
  whether or not a forecaster follows it. A pattern seen before has a near neighbour.
* :class:`Change`: whether the last steps come from the distribution of the steps before them:
  the Gaussian likelihood ratio of a change in level or variance at a fixed lag (a two-window
  test, the building block of CUSUM and of Bayesian online change-point detection).
* :class:`Cycle`: the distance of a step to the same phase of the last cycles (a calendar's week:
  a public holiday in a weekly rhythm, which a forecaster of the next steps follows).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import log_ndtr

from ..components.streaming import Ewma, MovingWindow

__all__ = ["Change", "Cycle", "Likelihood", "Neighbours"]

_BLOCK = 64  # steps whose statistics are computed in one numpy pass (bounds the temporary arrays)


def _rows(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v.reshape(len(v), -1)


class Likelihood:
    """A statistic's surprise on its own history: ``-log10`` of the Gaussian tail probability of
    each value under the mean and standard deviation of the previous ``history`` finite values
    (seeded with ``prior``). Test, then learn: a value is judged, then joins the history. 0 while
    the history holds fewer than ``min_count`` values and for the first ``warm`` values; NaN gives
    0 and is not learned. The standard deviation is at least ``min_std`` (a statistic in known
    units: below it, differences are float noise)."""

    def __init__(self, history: int = 8640, min_count: int = 30, min_std: float = 0.01, warm: int = 0, prior=()):
        self.window = MovingWindow(history, ordered=False)
        self.min_count, self.min_std, self.warm, self.seen = int(min_count), float(min_std), int(warm), 0
        for v in np.asarray(prior, dtype=np.float64).reshape(-1).tolist():
            if math.isfinite(v):
                self.window.push(v)

    def surprise(self, x: float) -> float:
        """The surprise of ``x`` against the history so far (nothing learned)."""
        w = self.window
        if len(w) < self.min_count or math.isnan(x):
            return 0.0
        mean = w.mean()
        std = max(w.std(), self.min_std, 1e-9 * abs(mean))
        return float(-log_ndtr(-(x - mean) / std) / math.log(10.0))

    def update(self, x: float) -> float:
        """The surprise of ``x``, then ``x`` joins the history."""
        if math.isnan(x):
            return 0.0
        level = self.surprise(x) if self.seen >= self.warm else 0.0
        self.window.push(x)
        self.seen += 1
        return level


class Neighbours:
    """The distance of the latest subsequence to its nearest earlier neighbour.

    Each step's statistic: the RMS distance (over steps and channels) between the last ``length``
    steps and the nearest of the subsequences of ``length`` steps that ended ``length`` to
    ``memory`` steps earlier (no overlap: a subsequence is not its own neighbour); NaN until there
    is one, and for a subsequence holding a non-finite value (never a neighbour either). A
    recurring pattern has a near neighbour; a spike, a new level or a new shape has none.

    Streaming in O(``memory``) per step (the matrix profile's STAMPI recursion): the dot product of
    the latest subsequence with the one ``lag`` steps earlier is the previous step's at the same
    lag, less the product of the steps that left the two subsequences, plus that of the steps that
    entered. Every ``memory`` steps the products are recomputed afresh, which bounds the rounding a
    long stream accumulates. The same operations run for a step whatever chunk it arrives in, so
    the statistics do not depend on chunking. Keeps the last ``memory + length + 1`` steps."""

    def __init__(self, length: int = 8, memory: int = 4000):
        if length < 1 or memory < length:
            raise ValueError(f"Neighbours: length={length!r} must be >= 1 and memory={memory!r} >= length")
        self.length, self.memory = int(length), int(memory)
        self.size = size = self.memory + self.length + 1  # the steps (values) and subsequences (by start) kept
        self.steps = 0
        # rings written twice (at i and i + size), so that the values at lags lo..hi are one slice
        self.vals: np.ndarray | None = None  # (2 size, D); a non-finite value is held as 0 ...
        self.odd = np.zeros(2 * size, dtype=bool)  # ... and marked
        self.sq = np.zeros(2 * size)  # squared norm of the subsequence starting at each step
        self.bad = np.zeros(2 * size, dtype=bool)  # whether it holds a non-finite value
        self.dots = np.zeros(self.memory + 1)  # dots[lag]: latest subsequence . the one lag steps earlier

    def _back(self, ring: np.ndarray, t: int, lo: int, hi: int) -> np.ndarray:
        """``ring``'s entries for steps t - lo, t - lo - 1, ..., t - hi (a view)."""
        q = t % self.size + self.size
        return ring[q - hi : q - lo + 1][::-1]

    def _put(self, ring: np.ndarray, t: int, value) -> None:
        ring[t % self.size] = ring[t % self.size + self.size] = value

    def stats(self, values) -> np.ndarray:
        v = _rows(values)
        if self.vals is None:
            self.vals = np.zeros((2 * self.size, v.shape[1]))
        m, memory, back = self.length, self.memory, self._back
        vals, out = self.vals, np.full(len(v), np.nan)
        for i in range(len(v)):
            t = self.steps
            self.steps += 1
            ok = np.isfinite(v[i])
            self._put(vals, t, np.where(ok, v[i], 0.0))
            self._put(self.odd, t, not ok.all())
            s = t - m + 1  # the latest subsequence starts here
            if s < 0:
                continue
            cur = back(vals, t, 0, m - 1)[::-1]  # steps s .. t
            self._put(self.sq, s, float((cur * cur).sum()))
            self._put(self.bad, s, bool(back(self.odd, t, 0, m - 1).any()))
            top = min(memory, s)  # lags m .. top have a subsequence
            if top < m:
                continue
            dots = self.dots[m : top + 1]
            if s % memory == 0:  # afresh: every product in full
                dots[:] = 0.0
                for k in range(m):
                    dots += (back(vals, s + k, m, top) * cur[k]).sum(1)
            else:  # the recursion for the lags the previous step had, then the new lag in full
                hi = min(memory, s - 1)
                if hi >= m:
                    dots[: hi - m + 1] += ((back(vals, t, m, hi) * vals[t % self.size]).sum(1)
                                           - (back(vals, s - 1, m, hi) * vals[(s - 1) % self.size]).sum(1))
                if top == s:
                    dots[-1] = float((vals[:m] * cur).sum())
            d = self.sq[s % self.size] + back(self.sq, s, m, top) - 2.0 * dots
            d = np.where(back(self.bad, s, m, top), np.inf, d)
            best = float(d.min())
            if not self.bad[s % self.size] and math.isfinite(best):
                out[i] = math.sqrt(max(best, 0.0) / cur.size)
        return out


class Change:
    """Whether the last ``short`` steps come from the distribution of the ``long`` steps before
    them: ``sqrt(2 * short * KL)``, KL the Kullback-Leibler divergence of the Gaussian of the last
    ``short`` steps from the Gaussian of the reference (per channel, summed), the square root of
    the likelihood-ratio statistic of a change in level or variance ``short`` steps ago (roughly
    a standard normal's size under no change). Variances are at least ``floor`` (standardised
    units). NaN until ``short + long`` steps were seen, and where the windows hold a NaN. Keeps the
    last ``short + long`` steps."""

    def __init__(self, short: int = 64, long: int = 512, floor: float = 1e-4):
        if short < 2 or long < 2:
            raise ValueError(f"Change: short={short!r} and long={long!r} must be >= 2")
        self.short, self.long, self.floor = int(short), int(long), float(floor)
        self.tail: np.ndarray | None = None

    def stats(self, values) -> np.ndarray:
        v = _rows(values)
        s, r, n = self.short, self.long, len(v)
        past = np.zeros((0, v.shape[1])) if self.tail is None else self.tail
        x = np.concatenate([past, v])
        out = np.full(n, np.nan)
        size = s + r
        if len(x) >= size:
            win = sliding_window_view(x, size, axis=0)  # (windows, D, size): win[w] = steps w .. w + size - 1
            first = len(past) - size + 1
            for a in range(max(first, 0), len(win), _BLOCK):
                b = min(len(win), a + _BLOCK)
                ref, recent = win[a:b, :, :r], win[a:b, :, r:]
                m0, v0 = ref.mean(-1), np.maximum(ref.var(-1), self.floor)
                m1, v1 = recent.mean(-1), np.maximum(recent.var(-1), self.floor)
                kl = 0.5 * (np.log(v0 / v1) + (v1 + (m1 - m0) ** 2) / v0 - 1.0)
                out[a - first : b - first] = np.sqrt(np.maximum(2.0 * s * kl.sum(1), 0.0))
        self.tail = x[-(size - 1) :] if size > 1 else x[:0]
        return out


class Cycle:
    """The distance of each step to the median of the same phase in the last ``depth`` cycles of
    ``cycle`` steps (RMS over channels; a median of three ignores one anomalous cycle), smoothed by
    an EWMA of span ``span``; NaN until there is a reference (a gap keeps the last smoothed
    distance). Keeps the last ``depth * cycle`` steps."""

    def __init__(self, cycle: int, depth: int = 3, span: float = 10.0):
        if cycle < 1 or depth < 1 or not span >= 1:
            raise ValueError(f"Cycle: cycle={cycle!r}, depth={depth!r}, span={span!r} must be >= 1")
        self.cycle, self.depth = int(cycle), int(depth)
        self.ring: np.ndarray | None = None  # the last depth * cycle values (steps, channels)
        self.smooth = Ewma(span)
        self.steps = 0

    def stats(self, values) -> np.ndarray:
        values = _rows(values)
        n, size = len(values), self.depth * self.cycle
        if self.ring is None:
            self.ring = np.full((size, values.shape[1]), np.nan)
        t0, at = self.steps, np.arange(n)
        lags = []
        for k in range(1, self.depth + 1):  # step t0 + i, k cycles back: in this chunk or in the ring
            back = at - k * self.cycle  # (a step before the stream's start has a slot never written: NaN)
            lags.append(np.where((back >= 0)[:, None], values[np.maximum(back, 0)], self.ring[(t0 + back) % size]))
        lags = np.sort(np.stack(lags), axis=0)  # the median of the finite ones (NaN sorts last) ...
        count = np.isfinite(lags).sum(0)[None]
        mid = np.take_along_axis(lags, np.maximum(count - 1, 0) // 2, 0) + np.take_along_axis(lags, count // 2, 0)
        with np.errstate(invalid="ignore"):  # no reference yet (or a gap): NaN
            gap = (values - np.where(count > 0, mid / 2, np.nan)[0]) ** 2
            dist = np.sqrt(np.nansum(gap, axis=1) / np.isfinite(gap).sum(1))  # ... as np.nanmedian, RMS as np.nanmean
        keep = min(n, size)
        self.ring[(t0 + n - keep + np.arange(keep)) % size] = values[n - keep :]
        self.steps += n
        last = math.nan if self.smooth.value is None else self.smooth.value
        smooth = self.smooth.update(dist)
        for i in range(n):  # a gap keeps the last smoothed distance
            if math.isnan(smooth[i]):
                smooth[i] = last
            last = smooth[i]
        return smooth
