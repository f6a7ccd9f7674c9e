"""Bounded-memory building blocks for minibatch and stream learning.

:class:`Reservoir` keeps a uniform sample of everything it was shown (vectorised Algorithm R);
:class:`RunningMoments` keeps the mean and covariance of a stream (Chan et al.'s pairwise update,
float64), optionally per position (PaDiM-style). Both are seeded and resumable: their random draws
depend only on (seed, number of items seen), never on batch boundaries of earlier calls.
For series: :func:`sliding_windows` (views, no copies), :class:`Ewma` (exponential smoothing) and
:class:`MovingWindow` (the last n values with mean, std and quantiles), :class:`MovingAverage`
(scores of a stream of frames smoothed over a time window). Each gives the same
numbers whether a stream arrives at once or in chunks.
"""
from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
import torch

__all__ = ["Ewma", "MovingAverage", "MovingWindow", "Reservoir", "RunningMoments", "sliding_windows", "stream_rng"]


def stream_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator keyed by (seed, *key): the same key always gives the same draws."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *map(int, key)]))


class Reservoir:
    """A uniform random sample of at most ``capacity`` rows of a stream of (n, d) tensors.

    Storage follows what was seen: rows are kept as they come until ``capacity`` is reached, so
    a capacity of 10^6 rows costs nothing for a data set of 200 images. ``dtype`` stores the
    rows in another precision (e.g. float16 halves the memory of a patch pool).
    """

    def __init__(self, capacity: int, seed: int = 0, dtype: torch.dtype | None = None):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity, self.seed, self.dtype = int(capacity), int(seed), dtype
        self.data: torch.Tensor | None = None  # exactly `capacity` rows once full
        self._filling: list[torch.Tensor] = []  # rows kept while not yet full
        self.n_seen = 0

    def __len__(self) -> int:
        return min(self.n_seen, self.capacity)

    def add(self, rows: torch.Tensor) -> None:
        """Offer ``rows``; each row of the stream is kept with probability capacity / n_seen."""
        n = rows.shape[0]
        if n == 0:
            return
        if self.dtype is not None:
            rows = rows.to(self.dtype)
        room = max(0, self.capacity - self.n_seen)
        if room:  # still filling: keep the first `room` rows as they are
            self._filling.append(rows[:room].clone())
            self.n_seen += min(room, n)
            if self.n_seen < self.capacity:
                return
            self.data, self._filling = torch.cat(self._filling), []
            rows, n = rows[room:], n - room
            if n == 0:
                return
        pos = np.arange(self.n_seen, self.n_seen + n)
        rng = stream_rng(self.seed, self.n_seen, n)
        slots = (rng.random(n) * (pos + 1)).astype(np.int64)
        keep = slots < self.capacity
        # later rows overwrite earlier ones that drew the same slot (sequential semantics)
        src = np.flatnonzero(keep)
        dst = slots[keep]
        _, last = np.unique(dst[::-1], return_index=True)
        src, dst = src[::-1][last], dst[::-1][last]
        idx = torch.as_tensor(src, device=rows.device)
        self.data[torch.as_tensor(dst, device=rows.device)] = rows.index_select(0, idx)
        self.n_seen += n

    @classmethod
    def restore(cls, rows: torch.Tensor, capacity: int, seed: int = 0, n_seen: int = 0,
                dtype: torch.dtype | None = None) -> Reservoir:
        """A reservoir holding ``rows`` (e.g. a coreset) that goes on from there: while it holds
        fewer than ``capacity`` rows new ones are appended, then each replaces a random slot
        with probability capacity / rows seen (``n_seen``, when more were seen than kept)."""
        res = cls(capacity, seed, dtype)
        rows = rows[:capacity]
        res.add(rows)
        if len(rows) >= res.capacity:
            res.n_seen = max(res.n_seen, int(n_seen))
        return res

    def values(self) -> torch.Tensor:
        """The rows kept so far (in slot order)."""
        if self.n_seen == 0:
            raise ValueError("empty reservoir")
        if self.data is not None:
            return self.data
        if len(self._filling) > 1:
            self._filling = [torch.cat(self._filling)]
        return self._filling[0]


class RunningMoments:
    """Streaming mean and covariance of rows, optionally per position.

    ``update(x)`` takes (n, d) or (n, p, d) for p positions; statistics are float64 on the device
    of the data (float32 on MPS, which has no float64).
    """

    def __init__(self):
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.scatter: torch.Tensor | None = None  # sum of outer products of deviations

    def update(self, x: torch.Tensor) -> None:
        dtype = torch.float32 if x.device.type == "mps" else torch.float64
        x = x.to(dtype)
        m = x.shape[0]
        if m == 0:
            return
        mean_b = x.mean(0)
        dev = (x - mean_b).movedim(0, -2)  # (..., m, d)
        scatter_b = dev.transpose(-1, -2) @ dev
        if self.mean is None:
            self.n, self.mean, self.scatter = m, mean_b, scatter_b
            return
        n = self.n
        delta = mean_b - self.mean
        total = n + m
        self.mean = self.mean + delta * (m / total)
        self.scatter = self.scatter + scatter_b + (delta[..., :, None] * delta[..., None, :]) * (n * m / total)
        self.n = total

    def covariance(self, shrinkage: float = 0.0) -> torch.Tensor:
        """Sample covariance shrunk towards a scaled identity: (1-a) S + a tr(S)/d I."""
        if self.mean is None or self.n < 2:
            raise ValueError("need at least 2 samples for a covariance")
        cov = self.scatter / (self.n - 1)
        if shrinkage:
            d = cov.shape[-1]
            scale = torch.diagonal(cov, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
            eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
            cov = (1 - shrinkage) * cov + shrinkage * scale[..., None, None] * eye
        return cov

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Add another stream's moments (Chan et al.'s pairwise combination); returns self."""
        if other.mean is None or other.n == 0:
            return self
        if self.mean is None:
            self.n, self.mean, self.scatter = other.n, other.mean.clone(), other.scatter.clone()
            return self
        n, m = self.n, other.n
        delta = other.mean.to(self.mean) - self.mean
        total = n + m
        self.mean = self.mean + delta * (m / total)
        self.scatter = (self.scatter + other.scatter.to(self.scatter)
                        + (delta[..., :, None] * delta[..., None, :]) * (n * m / total))
        self.n = total
        return self

    def precision(self, shrinkage: float = 0.0) -> torch.Tensor:
        """The inverse of :meth:`covariance`; ValueError when it is singular (no shrinkage and
        fewer samples than dimensions, or a constant feature)."""
        try:
            return torch.linalg.inv(self.covariance(shrinkage))
        except torch.linalg.LinAlgError:
            raise ValueError(f"the covariance of {self.n} samples is singular; use shrinkage > 0") from None

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "scatter": self.scatter}

    @classmethod
    def from_state(cls, n: int, mean: torch.Tensor, scatter: torch.Tensor) -> RunningMoments:
        rm = cls()
        rm.n, rm.mean, rm.scatter = int(n), mean, scatter
        return rm


def sliding_windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """All windows of ``size`` consecutive steps of a (T, D) series as a (T - size + 1, size, D)
    view (no copy); empty when T < size."""
    if x.shape[0] < size:
        return x.new_empty((0, size, *x.shape[1:]))
    return x.unfold(0, size, 1).movedim(-1, 1)


class Ewma:
    """Exponentially weighted moving average, ``alpha = 2 / (span + 1)``, started at the first
    finite value (no bias towards zero). NaN in gives NaN out and leaves the state alone;
    ``span <= 1`` passes values through."""

    def __init__(self, span: float):
        self.span = float(span)
        self.alpha = 1.0 if span <= 1 else 2.0 / (span + 1.0)
        self.value: float | None = None

    def update(self, x) -> np.ndarray:
        a, b, v = self.alpha, 1.0 - self.alpha, self.value
        out = []
        for e in np.asarray(x, dtype=np.float64).reshape(-1).tolist():
            if math.isnan(e):
                out.append(e)
                continue
            v = e if v is None else a * e + b * v
            out.append(v)
        self.value = v
        return np.asarray(out, dtype=np.float64)


class MovingWindow:
    """The last ``size`` values pushed (bounded memory), with their mean, standard deviation and
    quantiles. Sums are recomputed exactly every ``size`` pushes, so rounding never drifts and
    the statistics depend only on the values, not on how the stream was chunked.
    ``ordered=False`` keeps no sorted copy (no quantiles; pushes stay O(1))."""

    def __init__(self, size: int, ordered: bool = True):
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = int(size)
        self.values: deque[float] = deque()
        self.ordered: list[float] | None = [] if ordered else None
        self.total = self.total_sq = 0.0
        self.pushed = 0

    def __len__(self) -> int:
        return len(self.values)

    def push(self, v: float) -> None:
        self.values.append(v)
        if self.ordered is not None:
            bisect.insort(self.ordered, v)
        self.total += v
        self.total_sq += v * v
        if len(self.values) > self.size:
            old = self.values.popleft()
            if self.ordered is not None:
                del self.ordered[bisect.bisect_left(self.ordered, old)]
            self.total -= old
            self.total_sq -= old * old
        self.pushed += 1
        if self.pushed % self.size == 0:
            self.total = math.fsum(self.values)
            self.total_sq = math.fsum(u * u for u in self.values)

    def mean(self) -> float:
        return self.total / len(self.values)

    def std(self) -> float:
        n = len(self.values)
        return math.sqrt(max(0.0, self.total_sq / n - (self.total / n) ** 2))

    def quantile(self, q: float) -> float:
        """Linear interpolation between order statistics (numpy's default)."""
        s = self.ordered
        pos = q * (len(s) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (pos - lo) * (s[hi] - s[lo])


class MovingAverage:
    """Scores of a stream (e.g. image frames scored by ``Reconstruction``) averaged over the last
    ``window`` scores, so one noisy frame does not raise an alarm but a run of anomalous frames
    does. Feed chunks in order with :meth:`update`; the result does not depend on the chunking.
    The first ``window - 1`` outputs average over the scores seen so far."""

    def __init__(self, window: int):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = int(window)
        self.tail = np.empty(0)

    def update(self, scores) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        x = np.concatenate([self.tail, s])
        c = np.concatenate([[0.0], np.cumsum(x)])
        end = np.arange(len(self.tail) + 1, len(x) + 1)
        start = np.maximum(0, end - self.window)
        out = (c[end] - c[start]) / (end - start)  # one output per new score
        self.tail = x[-(self.window - 1) :] if self.window > 1 else np.empty(0)
        return out

    def reset(self) -> None:
        self.tail = np.empty(0)
