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
from scipy.special import log_ndtr

from ..components.streaming import Ewma, MovingWindow

__all__ = ["Change", "Cycle", "Likelihood", "Neighbours"]


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
        self.sq = np.zeros(2 * size)  # squared norm of the subsequence starting at each step, inf if it holds a non-finite value
        self.dots = np.zeros(self.memory + 1)  # dots[lag]: latest subsequence . the one lag steps earlier

    def _back(self, ring: np.ndarray, t: int, lo: int, hi: int) -> np.ndarray:
        """``ring``'s entries for steps t - lo, t - lo - 1, ..., t - hi (a view)."""
        q = t % self.size + self.size
        return ring[q - hi : q - lo + 1][::-1]

    def stats(self, values) -> np.ndarray:
        v = _rows(values)
        if self.vals is None:
            self.vals = np.zeros((2 * self.size, v.shape[1]))
        m, memory, back, size = self.length, self.memory, self._back, self.size
        vals, out = self.vals, np.full(len(v), np.nan)
        one = vals.shape[1] == 1
        flat = vals[:, 0] if one else vals  # one channel: products of 1-D slices (no reduction over channels)
        dot = (lambda rows, row: rows * row) if one else (lambda rows, row: rows @ row)
        odd, sq, isfinite = self.odd, self.sq, math.isfinite
        for i, row in enumerate(v.tolist()):
            t = self.steps
            self.steps += 1
            j = t % size
            strange = not all(map(isfinite, row))
            vals[j] = vals[j + size] = [u if isfinite(u) else 0.0 for u in row] if strange else row
            odd[j] = odd[j + size] = strange
            s = t - m + 1  # the latest subsequence starts here
            if s < 0:
                continue
            cur = flat[j + size - m + 1 : j + size + 1]  # steps s .. t
            bad = bool(odd[j + size - m + 1 : j + size + 1].any())
            norm = float((cur * cur).sum())
            sq[s % size] = sq[s % size + size] = math.inf if bad else norm
            top = min(memory, s)  # lags m .. top have a subsequence
            if top < m:
                continue
            dots = self.dots[m : top + 1]
            if s % memory == 0:  # afresh: every product in full
                dots[:] = 0.0
                for k in range(m):
                    dots += dot(back(flat, s + k, m, top), cur[k])
            else:  # the recursion for the lags the previous step had, then the new lag in full
                hi = min(memory, s - 1)
                if hi >= m:
                    dots[: hi - m + 1] += dot(back(flat, t, m, hi), flat[j]) - dot(
                        back(flat, s - 1, m, hi), flat[(s - 1) % size])
                if top == s:
                    dots[-1] = float((flat[:m] * cur).sum())
            if bad:
                continue
            best = float((back(sq, s, m, top) - 2.0 * dots).min()) + norm  # a neighbour holding a non-finite value: inf
            if isfinite(best):
                out[i] = math.sqrt(max(best, 0.0) / cur.size)
        return out


class Change:
    """Whether the last ``short`` steps come from the distribution of the ``long`` steps before
    them: ``sqrt(2 * short * KL)``, KL the Kullback-Leibler divergence of the Gaussian of the last
    ``short`` steps from the Gaussian of the reference (per channel, summed), the square root of
    the likelihood-ratio statistic of a change in level or variance ``short`` steps ago (roughly
    a standard normal's size under no change). Variances are at least ``floor`` (standardised
    units). NaN until ``short + long`` steps were seen, and where the windows hold a non-finite
    value. Keeps the last ``short + long`` steps.

    O(channels) per step: each window's sum and sum of squares move by the steps that enter and
    leave it, and are recomputed afresh every ``short + long`` steps, which bounds the rounding a
    long stream accumulates; the sums are of each value less the windows' mean at the last
    recomputation (a series far from 0 keeps its small variances: no cancellation of two large
    sums). The same operations run for a step whatever chunk it arrives in."""

    def __init__(self, short: int = 64, long: int = 512, floor: float = 1e-4):
        if short < 2 or long < 2:
            raise ValueError(f"Change: short={short!r} and long={long!r} must be >= 2")
        self.short, self.long, self.floor = int(short), int(long), float(floor)
        self.size = self.short + self.long
        self.ring: np.ndarray | None = None  # the last size steps (slot t % size), as given
        self.sums: list[list[float]] | None = None  # per channel: reference sum, squares, non-finite; recent's; shift
        self.steps = 0

    def _afresh(self, t: int) -> None:
        """Every channel's sums over the windows that end at step ``t``, afresh."""
        x = self.ring[(t + 1 + np.arange(self.size)) % self.size]  # steps t - size + 1 .. t
        ok = np.isfinite(x)
        count = ok.sum(0)
        shift = np.where(count > 0, np.where(ok, x, 0.0).sum(0) / np.maximum(count, 1), 0.0)
        x = np.where(ok, x - shift, 0.0)
        parts = [(x[: self.long], ok[: self.long]), (x[self.long :], ok[self.long :])]
        columns = [(p.sum(0), (p * p).sum(0), (~k).sum(0).astype(np.float64)) for p, k in parts]
        self.sums[:] = np.stack([c for part in columns for c in part] + [shift], 1).tolist()  # in place: stats holds it

    def stats(self, values) -> np.ndarray:
        v = _rows(values)
        s, r, size = self.short, self.long, self.size
        if self.ring is None:
            self.ring = np.full((size, v.shape[1]), np.nan)
            self.sums = [[0.0] * 7 for _ in range(v.shape[1])]
        ring, sums, isfinite = self.ring, self.sums, math.isfinite
        out = np.full(len(v), np.nan)
        for i, row in enumerate(v.tolist()):
            t = self.steps
            self.steps += 1
            slot = t % size
            mid = ring[(t - s) % size].tolist() if t >= s else None  # leaves the recent window for the reference
            old = ring[slot].tolist() if t >= size else None  # leaves the reference
            ring[slot] = row
            for c, x in enumerate(row):
                w = sums[c]
                if isfinite(x):
                    x -= w[6]
                    w[3] += x
                    w[4] += x * x
                else:
                    w[5] += 1.0
                if mid is not None:
                    y = mid[c]
                    if isfinite(y):
                        y -= w[6]
                        w[3] -= y
                        w[4] -= y * y
                        w[0] += y
                        w[1] += y * y
                    else:
                        w[5] -= 1.0
                        w[2] += 1.0
                if old is not None:
                    z = old[c]
                    if isfinite(z):
                        z -= w[6]
                        w[0] -= z
                        w[1] -= z * z
                    else:
                        w[2] -= 1.0
            if (t + 1) % size == 0:
                self._afresh(t)
            if t + 1 < size:
                continue
            kl = 0.0
            for w in sums:
                if w[2] or w[5]:
                    kl = math.nan
                    break
                m0, m1 = w[0] / r, w[3] / s
                v0, v1 = max(w[1] / r - m0 * m0, self.floor), max(w[4] / s - m1 * m1, self.floor)
                kl += 0.5 * (math.log(v0 / v1) + (v1 + (m1 - m0) ** 2) / v0 - 1.0)
            if not math.isnan(kl):
                out[i] = math.sqrt(max(2.0 * s * kl, 0.0))
        return out


class Cycle:
    """The distance of each step to the median of the same phase in the last ``depth`` cycles of
    ``cycle`` steps (RMS over channels; a median of three ignores one anomalous cycle), smoothed by
    an EWMA of span ``span``; NaN until there is a reference (a gap keeps the last smoothed
    distance). Keeps the last ``depth * cycle`` steps; O(depth * channels) per step."""

    def __init__(self, cycle: int, depth: int = 3, span: float = 10.0):
        if cycle < 1 or depth < 1 or not span >= 1:
            raise ValueError(f"Cycle: cycle={cycle!r}, depth={depth!r}, span={span!r} must be >= 1")
        self.cycle, self.depth = int(cycle), int(depth)
        self.ring: np.ndarray | None = None  # the last depth * cycle values (slot t % size)
        self.smooth = Ewma(span)
        self.steps = 0

    def stats(self, values) -> np.ndarray:
        values = _rows(values)
        size, cycle, isfinite = self.depth * self.cycle, self.cycle, math.isfinite
        if self.ring is None:
            self.ring = np.full((size, values.shape[1]), np.nan)
        ring, out = self.ring, np.full(len(values), np.nan)
        a, b = self.smooth.alpha, 1.0 - self.smooth.alpha
        for i, row in enumerate(values.tolist()):
            t = self.steps
            self.steps += 1
            refs = [ring[(t - k * cycle) % size].tolist() for k in range(1, min(self.depth, t // cycle) + 1)]
            total, count = 0.0, 0
            for c, x in enumerate(row):
                same = sorted(ref[c] for ref in refs if isfinite(ref[c]))
                if same and isfinite(x):
                    n = len(same)
                    total += (x - (same[(n - 1) // 2] + same[n // 2]) / 2) ** 2
                    count += 1
            ring[t % size] = row  # after reading: this slot held the step depth cycles back
            if count:
                d = math.sqrt(total / count)
                self.smooth.value = d if self.smooth.value is None else a * d + b * self.smooth.value
            if self.smooth.value is not None:  # a gap keeps the last smoothed distance
                out[i] = self.smooth.value
        return out
