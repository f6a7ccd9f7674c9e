"""Bounded-memory building blocks for minibatch and stream learning.

:class:`Reservoir` keeps a uniform sample of everything it was shown (vectorised Algorithm R);
:class:`RunningMoments` keeps the mean and covariance of a stream (Chan et al.'s pairwise update,
float64), optionally per position (PaDiM-style); :class:`PositionShare` measures how much of
images' variance their position explains (aligned objects vs textures). The first two are seeded
and resumable: their random draws depend only on (seed, number of items seen), never on batch
boundaries of earlier calls.
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

__all__ = ["Ewma", "KeyedSample", "MovingAverage", "MovingWindow", "PositionShare", "Reservoir", "RunningMoments", "sliding_windows", "stream_rng"]


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


_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 arrays (wrapping): nearby integers, scattered."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keyed_hash(seed: int, ids: np.ndarray) -> np.ndarray:
    """A 64-bit pseudo-random key per row of ``ids`` (n, k) int64, a function of (seed, the row)
    alone: the same item gets the same key whichever process, batch or order it comes in."""
    ids = np.asarray(ids, dtype=np.int64).reshape(len(ids), -1)
    z = _mix(np.full(len(ids), int(seed) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64))
    for col in ids.T:
        z = _mix(z ^ col.astype(np.uint64))
    return z


class KeyedSample:
    """A uniform sample without replacement of at most ``capacity`` rows, each row's fate keyed
    by its global id (e.g. (sample index, tile, patch position)): the rows whose hashed ids
    (:func:`keyed_hash`) are the smallest are kept (a bottom-k sample).

    Which rows are kept depends only on which ids were offered, never on their order, batch
    boundaries or the process that saw them: samples of disjoint shards of the data merge
    (:meth:`merged`, under torchrun) into exactly the sample one process keeps of all the data.
    Memory: ``capacity`` rows (full, a new row only costs a comparison unless it is kept).
    """

    def __init__(self, capacity: int, seed: int = 0, dtype: torch.dtype | None = None):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity, self.seed, self.dtype = int(capacity), int(seed), dtype
        self.rows: torch.Tensor | None = None
        self.ids = np.zeros((0, 0), dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.uint64)
        self.n_seen = 0

    def __len__(self) -> int:
        return 0 if self.rows is None else len(self.rows)

    def add(self, rows: torch.Tensor, ids) -> None:
        """Offer ``rows`` (n, d) with their global ``ids`` (n,) or (n, k) integers."""
        n = rows.shape[0]
        if n == 0:
            return
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(n, -1))
        keys = keyed_hash(self.seed, ids)
        self.n_seen += n
        if self.dtype is not None:
            rows = rows.to(self.dtype)
        if len(self) >= self.capacity:
            new = keys <= self.keys.max()  # only these can displace a kept row (ties: the ids decide)
            if not new.any():
                return
            pick = torch.as_tensor(np.flatnonzero(new), device=rows.device)
            rows, ids, keys = rows.index_select(0, pick), ids[new], keys[new]
        if self.rows is None:
            self.rows, self.ids, self.keys = rows.clone(), ids, keys
        elif len(self) < self.capacity:
            self.rows = torch.cat([self.rows, rows])
            self.ids, self.keys = np.concatenate([self.ids, ids]), np.concatenate([self.keys, keys])
        else:  # full: the new rows that win take the slots of the kept rows they displace
            m = len(self)
            order = _smallest(np.concatenate([self.keys, keys]), np.concatenate([self.ids, ids]), self.capacity)
            won = order[order >= m] - m
            lost = np.setdiff1d(np.arange(m), order[order < m])
            slots = torch.as_tensor(lost, device=self.rows.device)
            self.rows[slots] = rows.index_select(0, torch.as_tensor(won, device=rows.device)).to(self.rows.device)
            self.ids[lost], self.keys[lost] = ids[won], keys[won]
            return
        if len(self) > self.capacity:
            keep = np.sort(_smallest(self.keys, self.ids, self.capacity))
            self.rows = self.rows.index_select(0, torch.as_tensor(keep, device=self.rows.device))
            self.ids, self.keys = self.ids[keep], self.keys[keep]

    def values(self) -> torch.Tensor:
        """The rows kept, in the order of their ids (one order, whoever collected them)."""
        if self.rows is None:
            raise ValueError("empty sample")
        order = np.lexsort(self.ids.T[::-1])
        return self.rows.index_select(0, torch.as_tensor(order, device=self.rows.device))

    def merged(self, what: str = "merging the candidate samples") -> KeyedSample:
        """Under torchrun: the sample of every process's rows (each process's keys are gathered
        first, then only the rows that make the cut), the same on every rank; else itself."""
        from .. import distributed

        if not distributed.active():
            return self
        k = self.ids.shape[1] if self.rows is not None else 0
        meta = torch.from_numpy(np.concatenate([self.keys.view(np.int64)[:, None], self.ids], 1)) if k else \
            torch.zeros((0, 1), dtype=torch.int64)
        parts = distributed.gather_list(meta, what)
        width = max(p.shape[1] for p in parts)
        full = [p for p in parts if len(p)]
        every = torch.cat(full) if full else torch.zeros((0, width), dtype=torch.int64)
        keys, ids = every[:, 0].numpy().view(np.uint64), every[:, 1:].numpy()
        chosen = np.zeros(len(every), dtype=bool)
        chosen[_smallest(keys, ids, self.capacity)] = True
        start = sum(len(p) for p in parts[: distributed.rank()])
        mine = np.flatnonzero(chosen[start : start + len(self)])
        rows = self.rows if self.rows is not None else torch.zeros((0, 0))
        rows = rows.index_select(0, torch.as_tensor(mine, dtype=torch.int64, device=rows.device)).float().cpu()
        out = KeyedSample(self.capacity, self.seed, self.dtype)
        out.n_seen = int(distributed.all_sum([self.n_seen], what)[0])
        got = distributed.gather_cat(rows, what)
        if len(got):
            out.rows = got if self.dtype is None else got.to(self.dtype)
            out.ids, out.keys = ids[chosen], keys[chosen]  # rank order, each rank's rows in its own order
        return out


def _smallest(keys: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest (key, id) pairs (the ids break ties between equal keys)."""
    order = np.lexsort((*ids.T[::-1], keys))
    return order[:k]


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

    def merged(self, what: str = "merging running moments") -> RunningMoments:
        """Every torchrun process's moments combined (Chan et al.'s pairwise merge, in rank
        order): the moments of all the data; alone, these moments."""
        from .. import distributed

        if not distributed.active():
            return self
        dtype = torch.float64
        has = self.mean is not None
        shape = list(self.mean.shape) if has else []
        shapes = distributed.all_gather(torch.tensor([[len(shape), *shape, 0, 0, 0][:4]], dtype=torch.int64), what)
        ref = next((s[0] for s in shapes if int(s[0, 0]) > 0), None)
        if ref is None:
            return self
        d = [int(v) for v in ref[1 : 1 + int(ref[0])]]
        mean = self.mean.to(dtype).cpu() if has else torch.zeros(d, dtype=dtype)
        scatter = self.scatter.to(dtype).cpu() if has else torch.zeros([*d, d[-1]], dtype=dtype)
        counts = distributed.all_gather(torch.tensor([self.n], dtype=torch.int64), what)
        means = distributed.all_gather(mean[None], what)
        scatters = distributed.all_gather(scatter[None], what)
        out = RunningMoments()
        for n, mu, sc in zip(counts, means, scatters):
            out.merge(RunningMoments.from_state(int(n[0]), mu[0], sc[0]) if int(n[0]) else RunningMoments())
        if out.mean is not None and has:
            out.mean, out.scatter = out.mean.to(self.mean), out.scatter.to(self.scatter)  # device and dtype
        return out

    @classmethod
    def from_state(cls, n: int, mean: torch.Tensor, scatter: torch.Tensor) -> RunningMoments:
        rm = cls()
        rm.n, rm.mean, rm.scatter = int(n), mean, scatter
        return rm

    @classmethod
    def from_buffers(cls, buffers, n: int, prefix: str = "") -> RunningMoments:
        """The moments a detector saved as ``{prefix}mean`` / ``{prefix}scatter`` in its
        :class:`~anomalib_lite.state.Buffers` (empty when it saved none)."""
        mean = buffers.get(prefix + "mean")
        return cls() if mean is None else cls.from_state(n, mean, buffers.get(prefix + "scatter"))


class PositionShare:
    """The share of images' variance that position explains: large for aligned objects (a
    digit's strokes sit in the middle, the border is background), near 0 for textures, whose
    crops look alike everywhere. The R^2 of a one-way analysis of variance with the position as
    the group, adjusted for the share that chance alone gives (about 1/n for n images), on images
    averaged down to a coarse grid of about ``SIDE`` cells each way (so that pixel noise averages
    out and a digit that moves by a few pixels still has its place), the outer cells of an axis
    left out when it has 8 or more. Streaming in O(cells) memory; :meth:`value` sums over
    torchrun processes."""

    SIDE = 8

    def __init__(self):
        self.n = 0
        self.sum: torch.Tensor | None = None  # (C, h, w): sum over images
        self.sumsq: torch.Tensor | None = None  # (C, h, w): sum of squares

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        step = tuple(max(1, math.ceil(s / self.SIDE)) for s in x.shape[-2:])  # about SIDE cells each way
        x = torch.nn.functional.avg_pool2d(x.float(), step) if step != (1, 1) else x
        h, w = x.shape[-2:]
        mh, mw = int(h >= 8), int(w >= 8)
        return x[..., mh : h - mh, mw : w - mw].double()

    def update(self, x: torch.Tensor) -> None:
        """Add images (n, C, H, W)."""
        if not len(x):
            return
        x = self._small(x)
        s, sq = x.sum(0).cpu(), (x * x).sum(0).cpu()
        self.sum = s if self.sum is None else self.sum + s
        self.sumsq = sq if self.sumsq is None else self.sumsq + sq
        self.n += len(x)

    def value(self) -> float | None:
        """The adjusted share in [0, 1] (None before 2 images, or for constant images)."""
        from .. import distributed

        s, sq, n = self.sum, self.sumsq, self.n
        if distributed.active():  # every process's sums (a process that saw no image adds zeros)
            what = "measuring the images' position share"
            shapes = distributed.gather_list(torch.tensor(list(s.shape) if s is not None else [0, 0, 0]), what)
            shape = max((tuple(int(v) for v in t) for t in shapes), key=lambda t: t[0])
            own = torch.zeros(2, *shape, dtype=torch.float64) if s is None else torch.stack([s, sq])
            total = torch.tensor(distributed.all_sum(own.reshape(-1).tolist() + [n], what), dtype=torch.float64)
            n, (s, sq) = int(total[-1]), total[:-1].reshape(2, *shape)
        if s is None or n < 2:
            return None
        s, sq = s.reshape(len(s), -1), sq.reshape(len(sq), -1)  # (C, cells)
        cells = s.shape[1]
        if cells < 2:
            return None
        mean = s.sum(1, keepdim=True) / (n * cells)  # per channel
        total = float((sq.sum(1) - n * cells * mean[:, 0] ** 2).sum())
        if not total > 1e-12 * max(1.0, float(sq.sum())):
            return None
        between = float(((s / n - mean) ** 2).sum() * n)
        chance = (cells - 1) / (n * cells - 1)
        return max(0.0, min(1.0, (between / total - chance) / (1 - chance)))


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
