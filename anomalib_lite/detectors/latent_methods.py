"""LatentDistance's two methods, one interface: what each keeps of the normal features and how it
measures a distance to them.

* :class:`KnnMethod` (``method="knn"``, PatchCore): banks of normal features, sampled while fitting
  (keyed candidates, then reservoirs), reduced by the coreset at the end of ``fit``, searched
  exactly or by FAISS;
* :class:`GaussianMethod` (``method="gaussian"``, PaDiM): running means and scatters (pooled, and
  per patch position on a random subset of channels), Mahalanobis distance with shrinkage.

The detector owns the feature extraction, the evidence and the bundle; a method owns its state
while fitting, writes its learned tensors into the detector's ``bank_`` (:meth:`Method.sync`) and
says which tensors a bundle of it holds (:meth:`Method.skeleton`).
"""
from __future__ import annotations

import math
import numpy as np
import torch

from .. import distributed
from ..components.memory import KnnIndex, greedy_coreset, max_index_bytes
from ..components.streaming import KeyedSample, Reservoir, RunningMoments
from ..errors import AnomalyError
from ..numeric import mahalanobis, reweight_factor
from .base import Detector

__all__ = ["BANKS", "DTYPES", "GaussianMethod", "KnnMethod", "METHODS", "Method", "index_name"]

BANKS = ("memory", "patch_memory")  # each bank's FAISS index is the buffer "index" / "patch_index"
DTYPES = {"float16": torch.float16, "float32": torch.float32}


def index_name(bank: str) -> str:
    return bank.replace("memory", "index")


class Method:
    """What every method does for :class:`~anomalib_lite.detectors.latent.LatentDistance`."""

    def __init__(self, det: Detector):
        self.det = det  # the LatentDistance whose parameters and bank_ this method uses

    def reset(self) -> None:
        """Empty state, before ``fit``."""

    def start_online(self) -> None:
        """Before a ``partial_fit`` batch (the first one may come without a ``fit``)."""

    def seen(self) -> tuple[int, int]:
        """(pooled rows, patch rows) offered to the banks."""
        return 0, 0

    def moments_counts(self) -> tuple[int, int]:
        """(samples, patch-position samples) in the running moments."""
        return 0, 0

    def leave_one_out(self, limit: int) -> torch.Tensor | None:
        """Leave-one-out pooled distances of training images, when the method can give them."""
        return None

    def add_pooled(self, emb: torch.Tensor, items: np.ndarray, fitting: bool) -> None:
        """Learn pooled (or vector) features; ``items``: each row's (sample, tile)."""

    def add_patches(self, p: torch.Tensor, items: np.ndarray, fitting: bool) -> None:
        """Learn patch features (n, d, h, w)."""

    def drop_pooled(self) -> None:
        """Forget the pooled features offered so far (before ``finish``: images found to be a
        texture score by their patches alone)."""

    def finish(self, sharded: bool, seen: int, patches_seen: int) -> None:
        """The end of ``fit`` (every process's state merged when ``sharded``)."""

    def sync(self) -> None:
        """Write the learned state into the detector's ``bank_``."""

    def check_fitted(self) -> None:
        """Refuse a fit that left too little to score with, in one line."""

    def skeleton(self, pooled: bool, patches: bool, d: int, dp: int) -> dict:
        """The tensors a bundle of this method holds: name -> (shape, dtype)."""
        raise NotImplementedError

    def check_counts(self, need, pooled: bool, patch_scores: bool) -> None:
        """The fitted counts a bundle claims must give scoring what it needs."""

    def restore(self) -> None:
        """The fitting state back from a loaded ``bank_`` (``partial_fit`` goes on from it)."""

    def drop_caches(self) -> None:
        """Forget what was derived from the learned state (it changed)."""

    def pooled_ready(self) -> bool:
        """Whether pooled distances can be computed."""
        raise NotImplementedError

    def pooled_distance(self, emb: torch.Tensor, exclude_self: bool) -> torch.Tensor:
        raise NotImplementedError

    def patch_distance(self, p: torch.Tensor, exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(distance of each patch (n, h * w), a re-weighting factor per image or None)."""
        raise NotImplementedError

    def summary(self) -> list[str]:
        return []


class KnnMethod(Method):
    """Distance to the nearest rows of banks of normal features (PatchCore)."""

    def reset(self) -> None:
        det = self.det
        pool = det.memory_size * det.pool_factor  # candidates in float32: the coreset sees them exactly
        # keyed by each row's global id (sample, tile, patch), so the candidates do not depend on
        # batches or on how torchrun shards the data: every world size gives the same bank
        self.bank = KeyedSample(pool, seed=det.seed)
        self.patch_bank = KeyedSample(pool, seed=det.seed + 1)
        self.drop_caches()

    def _fresh_reservoirs(self) -> None:
        det = self.det
        self.bank = Reservoir(det.memory_size, seed=det.seed)
        self.patch_bank = Reservoir(det.memory_size, seed=det.seed + 1, dtype=self.patch_dtype())

    def patch_dtype(self) -> torch.dtype:
        return DTYPES[self.det.bank_dtype]

    @staticmethod
    def _add(pool, rows: torch.Tensor, ids: np.ndarray, fitting: bool) -> None:
        """Offer rows to a candidate pool: keyed by their ids while fitting, a reservoir after."""
        pool.add(rows, ids) if fitting else pool.add(rows)

    def start_online(self) -> None:
        """``partial_fit`` from scratch: reservoirs from the first batch."""
        if not isinstance(self.bank, Reservoir):
            self._fresh_reservoirs()

    def add_pooled(self, emb, items, fitting) -> None:
        self._add(self.bank, emb, items, fitting)

    def drop_pooled(self) -> None:
        det = self.det
        self.bank = KeyedSample(det.memory_size * det.pool_factor, seed=det.seed)

    def add_patches(self, p, items, fitting) -> None:
        n, d, h, w = p.shape
        ids = np.concatenate([np.repeat(items, h * w, axis=0), np.tile(np.arange(h * w), n)[:, None]], 1)
        self._add(self.patch_bank, p.permute(0, 2, 3, 1).reshape(-1, d), ids, fitting)

    def seen(self) -> tuple[int, int]:
        return self.bank.n_seen, self.patch_bank.n_seen

    def _reduce(self, rows: torch.Tensor, size: int, seed: int) -> torch.Tensor:
        if rows.shape[0] <= size:
            return rows.clone()
        if self.det.coreset == "greedy":
            idx = greedy_coreset(rows, size, seed=seed, verbose=self.det.verbose)
        else:
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(rows.shape[0], generator=gen)[:size].to(rows.device)
        return rows[idx].clone()

    def _composed(self, pool: KeyedSample, size: int, seed: int, sharded: bool) -> torch.Tensor:
        """The bank of ``size`` rows from a candidate pool, by one reduction (the coreset). Under
        torchrun the processes' pools merge first into the pool one process would have drawn
        (candidates are keyed by global ids), rank 0 reduces it and shares the bank: any world
        size gives the bank of one process."""
        if not sharded:
            return self._reduce(pool.values(), size, seed)
        pool = pool.merged("gathering the coreset candidates")
        rows = pool.values()
        bank = self._reduce(rows, size, seed) if distributed.is_main() else \
            torch.empty((min(size, len(rows)), rows.shape[1]), dtype=rows.dtype, device=rows.device)
        return distributed.broadcast(bank, what="sharing the coreset")

    def finish(self, sharded, seen, patches_seen) -> None:
        # the candidate pools become memory_size reservoirs that partial_fit goes on with
        det = self.det
        bank, patch_bank = self.bank, self.patch_bank
        self._fresh_reservoirs()
        if seen:
            memory = self._composed(bank, det.memory_size, det.seed, sharded)
            self.bank = Reservoir.restore(memory, det.memory_size, det.seed, seen, memory.dtype)
        if patches_seen:
            size = min(det.memory_size, max(det.k, math.ceil(det.coreset_ratio * patches_seen)))
            memory = self._composed(patch_bank, size, det.seed + 1, sharded).to(self.patch_dtype())
            self.patch_bank = Reservoir.restore(memory, det.memory_size, det.seed + 1, patches_seen, memory.dtype)

    def check_fitted(self) -> None:
        det = self.det
        bank = det.bank_.get("memory")
        if bank is None or (det.image_score == "combined" and det.bank_.get("patch_memory") is not None):
            bank = det.bank_.get("patch_memory")  # combined: pooled evidence only with k pooled rows
        if bank is None or len(bank) < det.k:
            n = 0 if bank is None else len(bank)
            raise AnomalyError(f"data: k={det.k} needs at least {det.k} normal samples, got {n} sample(s)")

    def sync(self) -> None:
        b = self.det.bank_
        b.set("memory", self.bank.values() if self.bank.n_seen else None)
        b.set("patch_memory", self.patch_bank.values() if self.patch_bank.n_seen else None)
        self._build_indexes()

    def _build_indexes(self) -> None:
        """Train each bank's FAISS index (after the bank changed) and keep the trained ones
        serialised in ``bank_`` (a flat index is the bank itself: rebuilt, not stored)."""
        det = self.det
        det.faiss_index_ = None
        for bank in BANKS:
            det.bank_.set(index_name(bank), None)
            rows = det.bank_.get(bank)
            if rows is None or not det.search.startswith("faiss"):
                continue
            index = KnnIndex(rows, "faiss", det.search.partition(":")[2] or "auto", seed=det.seed)
            self.indexes[bank] = index
            data = index.to_bytes() if index.trained else None
            det.bank_.set(index_name(bank), data)
            det.faiss_index_ = {**(det.faiss_index_ or {}),
                                bank: {"type": index.index_type, "bytes": 0 if data is None else len(data)}}

    def skeleton(self, pooled, patches, d, dp) -> dict:
        det = self.det
        spec: dict = {}
        if det.bank_rows_ and pooled:
            spec["memory"] = ((det.bank_rows_, d), torch.float32)
        if det.patch_bank_rows_ and patches:
            spec["patch_memory"] = ((det.patch_bank_rows_, dp), self.patch_dtype())
        spec.update(self._index_spec(spec))
        return spec

    def _index_spec(self, banks: dict) -> dict:
        """The serialised FAISS indexes the fitted values promise: one uint8 tensor per bank with
        a trained index, bounded by what such an index of that bank can weigh."""
        info = self.det.faiss_index_ or {}  # (kept as trained even if `search` was set otherwise since)
        spec = {}
        for bank, entry in info.items():
            if bank not in banks:
                raise AnomalyError(f"fitted.faiss_index_.{bank}: no such bank in this detector")
            (rows, dim), _ = banks[bank]
            if (entry["type"] == "flat") != (entry["bytes"] == 0) or entry["bytes"] > max_index_bytes(rows, dim):
                raise AnomalyError(f"fitted.faiss_index_.{bank}: {entry['bytes']} bytes for a "
                                   f"{entry['type']} index of {rows} x {dim}")
            if entry["bytes"]:
                spec[index_name(bank)] = ((entry["bytes"],), torch.uint8)
        return spec

    def check_counts(self, need, pooled, patch_scores) -> None:
        k = self.det.k
        if pooled:
            need("bank_rows_", k, f"these scores need a bank of at least k={k} rows")
        if patch_scores:
            need("patch_bank_rows_", 1, "patch scores need a patch bank")

    def restore(self) -> None:
        det = self.det
        dtype = self.patch_dtype()
        memory, patch = det.bank_.get("memory"), det.bank_.get("patch_memory")
        self._fresh_reservoirs()
        if memory is not None:
            self.bank = Reservoir.restore(memory, det.memory_size, det.seed, det.rows_seen_, memory.dtype)
        if patch is not None:
            self.patch_bank = Reservoir.restore(patch, det.memory_size, det.seed + 1, det.patches_seen_, dtype)
        self.drop_caches()
        for bank in (det.faiss_index_ or {}):  # read (and validate) the saved indexes now, never retrain
            try:
                self.index(bank == "patch_memory")
            except AnomalyError as e:
                raise AnomalyError(f"tensor 'bank.{index_name(bank)}': {e}") from None

    def drop_caches(self) -> None:
        self.indexes: dict[str, KnnIndex] = {}

    def index(self, patches: bool) -> KnnIndex:
        """The search index over the current bank, rebuilt only after the bank changed."""
        det = self.det
        name = "patch_memory" if patches else "memory"
        bank = det.bank_.get(name)
        if bank is None:
            raise AnomalyError(f"LatentDistance was fitted without {'patch features' if patches else 'pooled features'}")
        backend, _, named = det.search.partition(":")
        cached = self.indexes.get(name)
        if cached is None or cached.source is not bank or cached.backend != backend:
            info = (det.faiss_index_ or {}).get(name) if backend == "faiss" else None
            kind = info["type"] if info else named or "auto"
            cached = self.indexes[name] = KnnIndex(bank, backend, kind, det.bank_.get(index_name(name)), seed=det.seed)
        return cached

    def pooled_ready(self) -> bool:
        return self.det.bank_rows_ >= self.det.k

    def pooled_distance(self, emb, exclude_self) -> torch.Tensor:
        return self.index(patches=False).search(emb, self.det.k, exclude_self).mean(1)

    def leave_one_out(self, limit: int) -> torch.Tensor | None:
        """Leave-one-out pooled distances of (at most ``limit``) bank rows, when the pooled bank
        holds every image seen (one row per image); None otherwise."""
        det = self.det
        memory = det.bank_.get("memory")
        if memory is None or not det.bank_rows_ == det.rows_seen_ > det.k + 1:
            return None
        rows = memory[torch.randperm(len(memory), generator=torch.Generator().manual_seed(det.seed))[:limit]]
        return self.index(patches=False).search(rows.float(), det.k, exclude_self=True).mean(1)

    def patch_distance(self, p, exclude_self):
        n, d, h, w = p.shape
        rows = p.permute(0, 2, 3, 1).reshape(-1, d)
        index = self.index(patches=True)
        dist, idx = index.search(rows, 1, exclude_self, return_index=True)
        dist = dist[:, 0].reshape(n, h * w)
        weight = None
        if self.det.reweight:
            weight = self._reweight(index, rows.reshape(n, h * w, d), dist, idx[:, 0].reshape(n, h * w))
        return dist, weight

    def _reweight(self, index: KnnIndex, rows: torch.Tensor, dist: torch.Tensor, nearest: torch.Tensor):
        """PatchCore's factor ``1 - softmax(-)[0]`` over the distances from each image's most
        anomalous patch to its nearest bank patch and that patch's ``reweight`` bank neighbours:
        near 0 when the match sits in a dense part of the bank, up to 1 when it is isolated."""
        n = rows.shape[0]
        top = dist.argmax(1)
        worst = rows[torch.arange(n), top]  # (n, d)
        matched = index.bank[nearest[torch.arange(n), top]]  # (n, d)
        b = min(self.det.reweight, len(index))
        _, support = index.search(matched, b, return_index=True)  # (n, b), the match included
        return reweight_factor(worst, index.bank[support])

    def summary(self) -> list[str]:
        return [f"{bank.replace('_', ' ')}: faiss {info['type']} index"
                for bank, info in (self.det.faiss_index_ or {}).items()]


class GaussianMethod(Method):
    """Mahalanobis distance to Gaussians of the normal features (PaDiM: one per patch position)."""

    def reset(self) -> None:
        self.moments, self.patch_moments = RunningMoments(), RunningMoments()
        self.drop_caches()

    def add_pooled(self, emb, items, fitting) -> None:
        self.moments.update(emb)

    def drop_pooled(self) -> None:
        self.moments = RunningMoments()

    def add_patches(self, p, items, fitting) -> None:
        det = self.det
        n, d, h, w = p.shape
        if det.patch_channels_ is None:
            gen = torch.Generator().manual_seed(det.seed)
            det.patch_channels_ = torch.randperm(d, generator=gen)[: min(d, det.map_dims)].sort().values
        sel = p[:, det.patch_channels_.to(p.device)]
        self.patch_moments.update(sel.permute(0, 2, 3, 1).reshape(n, h * w, -1))

    def moments_counts(self) -> tuple[int, int]:
        return self.moments.n, self.patch_moments.n

    def finish(self, sharded, seen, patches_seen) -> None:
        if sharded:
            self.moments = self.moments.merged()
            self.patch_moments = self.patch_moments.merged()

    def check_fitted(self) -> None:
        if self.moments.n < 2 and self.patch_moments.n < 2:
            raise AnomalyError("data: the Gaussian needs at least 2 normal samples")

    def sync(self) -> None:
        b, m, pm = self.det.bank_, self.moments, self.patch_moments
        b.set("mean", m.mean)
        b.set("scatter", m.scatter)
        b.set("patch_mean", pm.mean)
        b.set("patch_scatter", pm.scatter)
        b.set("patch_channels", self.det.patch_channels_ if pm.mean is not None else None)

    def skeleton(self, pooled, patches, d, dp) -> dict:
        det = self.det
        spec: dict = {}
        if det.moments_n_ and pooled:
            spec["mean"], spec["scatter"] = ((d,), torch.float64), ((d, d), torch.float64)
        if det.patch_moments_n_ and patches:
            if det.map_grid_ is None:
                raise AnomalyError("fitted.map_grid_: missing for per-position Gaussians")
            c, pos = min(dp, det.map_dims), det.map_grid_[0] * det.map_grid_[1]
            spec.update(patch_mean=((pos, c), torch.float64), patch_scatter=((pos, c, c), torch.float64),
                        patch_channels=((c,), torch.int64))
        return spec

    def check_counts(self, need, pooled, patch_scores) -> None:
        if pooled:
            need("moments_n_", 2, "these scores need a Gaussian of at least 2 samples")
        if patch_scores:
            need("patch_moments_n_", 2, "patch scores need per-position Gaussians of at least 2 samples")

    def restore(self) -> None:
        det = self.det
        b = det.bank_
        self.moments = RunningMoments.from_buffers(b, det.moments_n_)
        self.patch_moments = RunningMoments.from_buffers(b, det.patch_moments_n_, "patch_")
        det.patch_channels_ = b.get("patch_channels")
        ch = det.patch_channels_
        if ch is not None and ch.numel():
            dp = det.featurizer_.patch_dim(tuple(det.input_shape_))
            if int(ch.min()) < 0 or int(ch.max()) >= dp or not bool((ch[1:] > ch[:-1]).all()):
                raise AnomalyError(f"tensor 'bank.patch_channels': must be increasing channel numbers in [0, {dp})")
        self.drop_caches()

    def drop_caches(self) -> None:
        self.precision = self.patch_precision = None

    def precision_of(self, mean: torch.Tensor, scatter: torch.Tensor, n: int) -> torch.Tensor:
        try:
            return RunningMoments.from_state(n, mean, scatter).precision(self.det.shrinkage)
        except ValueError as e:  # fewer than 2 samples, or singular
            raise AnomalyError(f"LatentDistance: {e}") from None

    def pooled_ready(self) -> bool:
        return self.det.moments_n_ >= 2

    def pooled_distance(self, emb, exclude_self) -> torch.Tensor:
        b = self.det.bank_
        if self.precision is None:
            self.precision = self.precision_of(b.mean, b.scatter, self.det.moments_n_)
        return mahalanobis(emb, b.mean, self.precision)

    def patch_distance(self, p, exclude_self):
        det, b = self.det, self.det.bank_
        n, d, h, w = p.shape
        if [h, w] != list(det.map_grid_):  # per-position Gaussians: the grid they were fitted on
            raise AnomalyError(f"fitted.map_grid_={list(det.map_grid_)}: these images give a {h}x{w} patch grid "
                               "(a damaged or forged bundle?)")
        if self.patch_precision is None:
            self.patch_precision = self.precision_of(b.patch_mean, b.patch_scatter, det.patch_moments_n_)
        sel = p[:, b.patch_channels.to(p.device)].permute(2, 3, 0, 1).reshape(h * w, n, -1)
        return mahalanobis(sel, b.patch_mean[:, None, :], self.patch_precision).T, None  # (n, positions)

    def summary(self) -> list[str]:
        return ["Gaussian" + (" per position" if self.det.bank_.get("patch_mean") is not None else "")]


#: ``method`` -> its class
METHODS = {"knn": KnnMethod, "gaussian": GaussianMethod}
