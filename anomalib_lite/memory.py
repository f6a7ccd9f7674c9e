"""Nearest-neighbour search and memory-bank reduction.

Distances are computed as ``|q|^2 - 2 q.b + |b|^2`` by chunked matrix products on the bank's
device (memory-bounded, unlike a full ``cdist``); FAISS is used when installed and asked for.
:func:`greedy_coreset` picks a bank that covers the data (farthest-point sampling on a random
projection), vectorised so each step is one matrix-vector product.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .errors import AnomalyError

__all__ = ["KnnIndex", "faiss_available", "greedy_coreset", "knn_distances"]

# rows of the distance matrix held at once: ~16 MB of float32, cache-friendly
_BLOCK_ELEMENTS = 1 << 22


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class KnnIndex:
    """Exact k-nearest-neighbour search over a fixed bank (build once, query many times).

    ``backend="torch"``: chunked ``|b|^2 - 2 q.b`` products on the bank's device, then exact
    distances to the k candidates; ``"faiss"``: a flat L2 index (CPU), when faiss is installed.
    A bank stored in half precision (float16 bundles) is searched in float32.
    """

    def __init__(self, bank: torch.Tensor, backend: str = "torch"):
        if backend not in ("torch", "faiss"):
            raise AnomalyError(f"search='{backend}': unknown; use 'torch' or 'faiss'")
        if backend == "faiss" and not faiss_available():
            raise AnomalyError("search='faiss': faiss is not installed (pip install faiss-cpu)")
        self.source, self.backend = bank, backend  # `source`: the bank as given (identity checks)
        self.bank = bank if bank.dtype in (torch.float32, torch.float64) else bank.float()
        self._sq = (self.bank * self.bank).sum(1) if backend == "torch" else None
        self._faiss = None

    def __len__(self) -> int:
        return int(self.bank.shape[0])

    def _torch(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        bank = self.bank.to(queries.dtype)
        sq = self._sq.to(queries.dtype)
        rows = max(1, _BLOCK_ELEMENTS // max(1, len(self)))
        dists, indices = [], []
        # one block buffer reused: a fresh 16 MB block per step fragments glibc's heap (its
        # dynamic mmap threshold), and the process grew by gigabytes over a large image batch
        buf = torch.empty(min(rows, queries.shape[0]), len(self), dtype=queries.dtype, device=queries.device)
        for i in range(0, queries.shape[0], rows):
            q = queries[i : i + rows]
            # |b|^2 - 2 q.b in one fused call (|q|^2 is constant per row: it cannot change the order)
            part = torch.addmm(sq, q, bank.T, alpha=-2.0, out=buf[: len(q)])
            # (min() is faster than argmin() on CPU)
            idx = part.min(1, keepdim=True).indices if k == 1 else part.topk(k, 1, largest=False).indices
            # exact distances to the k candidates: the expansion loses precision near zero
            d, order = (q[:, None, :] - bank[idx]).norm(dim=-1).sort(1)
            dists.append(d)
            indices.append(idx.gather(1, order))
        return torch.cat(dists), torch.cat(indices)

    def _faiss_search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        import faiss

        if self._faiss is None:
            self._faiss = faiss.IndexFlatL2(self.bank.shape[1])
            self._faiss.add(np.ascontiguousarray(self.bank.detach().float().cpu().numpy()))
        d2, idx = self._faiss.search(np.ascontiguousarray(queries.detach().float().cpu().numpy()), k)
        dist = torch.from_numpy(np.sqrt(np.maximum(d2, 0))).to(queries.device)
        return dist, torch.from_numpy(idx).to(queries.device)

    def search(
        self, queries: torch.Tensor, k: int, exclude_self: bool = False, return_index: bool = False
    ):
        """Euclidean distances from each query row to its ``k`` nearest bank rows, ascending
        (and their bank row indices with ``return_index``).

        With ``exclude_self`` a query that is itself in the bank (distance ~0) skips that match,
        so scoring the training data gives leave-one-out distances rather than zeros.
        """
        kk = k + int(exclude_self)
        if len(self) < kk:
            raise AnomalyError(f"k={k} needs at least {kk} samples in memory, have {len(self)}")
        if queries.dtype not in (torch.float32, torch.float64):
            queries = queries.float()
        search = self._faiss_search if self.backend == "faiss" else self._torch
        dist, idx = search(queries, kk)
        if exclude_self:
            # a half-precision bank holds each row to ~1e-3 of its norm; faiss is approximate too
            tol = 2e-3 if self.source.dtype in (torch.float16, torch.bfloat16) else 1e-5
            is_self = dist[:, 0] <= tol * queries.norm(dim=1).clamp_min(1.0)
            dist = torch.where(is_self[:, None], dist[:, 1:], dist[:, :-1])
            idx = torch.where(is_self[:, None], idx[:, 1:], idx[:, :-1])
        return (dist, idx) if return_index else dist


def knn_distances(
    queries: torch.Tensor, bank: torch.Tensor, k: int, exclude_self: bool = False, backend: str = "torch"
) -> torch.Tensor:
    """One-off search: ``KnnIndex(bank, backend).search(queries, k, exclude_self)``."""
    return KnnIndex(bank, backend).search(queries, k, exclude_self)


def greedy_coreset(
    features: torch.Tensor, m: int, seed: int = 0, projection_dim: int = 128, max_steps: int = 200
) -> torch.Tensor:
    """Indices of ``m`` rows chosen by farthest-point sampling (the PatchCore coreset).

    Rows are first randomly projected to ``projection_dim`` dimensions (Johnson-Lindenstrauss,
    PatchCore's trick). Exact greedy adds, one at a time, the row farthest from everything chosen
    so far; that is ``m`` passes over the data. Here each pass (at most ``max_steps`` of them)
    adds ``s = ceil(m / max_steps)`` rows: the ``4 s`` farthest rows are the candidates, and exact
    greedy among them (their pairwise distances are small) picks ``s`` that are far from the
    chosen rows and from each other. The work is about ``2 n m projection_dim`` flops (10^6 rows
    to 10^5: minutes on two CPU cores); distances are computed in row blocks, so memory stays
    at about ``n (projection_dim + 2)`` floats.
    """
    n, d = features.shape
    if m >= n:
        return torch.arange(n, device=features.device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    dev = features.device
    proj = torch.randn(d, projection_dim, generator=gen) / math.sqrt(projection_dim) if d > projection_dim else None
    block = 1 << 16
    parts = []
    for i in range(0, n, block):  # project block by block: no float32 copy of the whole input
        xb = features[i : i + block].float()
        parts.append(xb @ proj.to(dev) if proj is not None else xb)
    x = torch.cat(parts)
    del parts
    per_step = math.ceil(m / max(1, max_steps))
    sq = (x * x).sum(1)
    chosen = torch.empty(m, dtype=torch.long, device=dev)
    new = torch.randint(n, (1,), generator=gen).to(dev)
    min_d2 = torch.full((n,), float("inf"), device=dev)
    rows = max(1, _BLOCK_ELEMENTS // per_step)
    filled = 0
    while True:
        chosen[filled : filled + len(new)] = new
        filled += len(new)
        if filled >= m:
            return chosen
        centres, csq = x[new].T.contiguous(), sq[new]
        for i in range(0, n, rows):  # squared distances to the newly chosen rows, block by block
            d2 = torch.addmm(csq[None, :], x[i : i + rows], centres, alpha=-2.0).add_(sq[i : i + rows, None])
            torch.minimum(min_d2[i : i + rows], d2.min(1).values.clamp_min_(0), out=min_d2[i : i + rows])
        min_d2[new] = -1.0  # never choose a row twice (minimum() keeps it below every distance)
        new = _greedy_among(x, min_d2, min(per_step, m - filled))


def _greedy_among(x: torch.Tensor, min_d2: torch.Tensor, s: int) -> torch.Tensor:
    """``s`` rows picked by exact farthest-point greedy among the ``4 s`` farthest candidates."""
    if s == 1:
        return min_d2.argmax().reshape(1)
    cand = min_d2.topk(min(len(min_d2), 4 * s)).indices
    xc = x[cand]
    dc = min_d2[cand].clone()
    csq = (xc * xc).sum(1)
    picked = []
    for _ in range(s):
        i = int(dc.argmax())
        if dc[i] < 0:  # fewer usable candidates than s (tiny inputs)
            break
        picked.append(i)
        d2 = (csq - 2 * (xc @ xc[i]) + csq[i]).clamp_min_(0)
        torch.minimum(dc, d2, out=dc)
        dc[i] = -1.0
    return cand[torch.tensor(picked, dtype=torch.long, device=x.device)]
