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
    """

    def __init__(self, bank: torch.Tensor, backend: str = "torch"):
        if backend not in ("torch", "faiss"):
            raise AnomalyError(f"search='{backend}': unknown; use 'torch' or 'faiss'")
        if backend == "faiss" and not faiss_available():
            raise AnomalyError("search='faiss': faiss is not installed (pip install faiss-cpu)")
        self.bank, self.backend = bank, backend
        self._sq = (bank * bank).sum(1) if backend == "torch" else None
        self._faiss = None

    def __len__(self) -> int:
        return int(self.bank.shape[0])

    def _torch(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        bank = self.bank.to(queries.dtype)
        rows = max(1, _BLOCK_ELEMENTS // max(1, len(self)))
        out = []
        for i in range(0, queries.shape[0], rows):
            q = queries[i : i + rows]
            # |b|^2 - 2 q.b in one fused call (|q|^2 is constant per row: it cannot change the order)
            part = torch.addmm(self._sq, q, bank.T, alpha=-2.0)
            idx = part.argmin(1, keepdim=True) if k == 1 else part.topk(k, 1, largest=False).indices
            # exact distances to the k candidates: the expansion loses precision near zero
            out.append((q[:, None, :] - bank[idx]).norm(dim=-1).sort(1).values)
        return torch.cat(out)

    def _faiss_search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        import faiss

        if self._faiss is None:
            self._faiss = faiss.IndexFlatL2(self.bank.shape[1])
            self._faiss.add(np.ascontiguousarray(self.bank.detach().float().cpu().numpy()))
        d2, _ = self._faiss.search(np.ascontiguousarray(queries.detach().float().cpu().numpy()), k)
        return torch.from_numpy(np.sqrt(np.maximum(d2, 0))).to(queries.device)

    def search(self, queries: torch.Tensor, k: int, exclude_self: bool = False) -> torch.Tensor:
        """Euclidean distances from each query row to its ``k`` nearest bank rows, ascending.

        With ``exclude_self`` a query that is itself in the bank (distance ~0) skips that match,
        so scoring the training data gives leave-one-out distances rather than zeros.
        """
        kk = k + int(exclude_self)
        if len(self) < kk:
            raise AnomalyError(f"k={k} needs at least {kk} samples in memory, have {len(self)}")
        dist = self._faiss_search(queries, kk) if self.backend == "faiss" else self._torch(queries, kk)
        if not exclude_self:
            return dist
        scale = queries.norm(dim=1).clamp_min(1.0)
        is_self = dist[:, 0] <= 1e-5 * scale  # faiss's distances are approximate near zero
        return torch.where(is_self[:, None], dist[:, 1:], dist[:, :-1])


def knn_distances(
    queries: torch.Tensor, bank: torch.Tensor, k: int, exclude_self: bool = False, backend: str = "torch"
) -> torch.Tensor:
    """One-off search: ``KnnIndex(bank, backend).search(queries, k, exclude_self)``."""
    return KnnIndex(bank, backend).search(queries, k, exclude_self)


def greedy_coreset(
    features: torch.Tensor, m: int, seed: int = 0, projection_dim: int = 128, max_steps: int = 1000
) -> torch.Tensor:
    """Indices of ``m`` rows chosen by farthest-point sampling (the PatchCore coreset).

    Rows are first randomly projected to ``projection_dim`` dimensions (Johnson-Lindenstrauss).
    Each step adds the rows farthest from everything chosen so far: one row per step (exact
    greedy) up to ``max_steps`` steps, then ``ceil(m / max_steps)`` rows per step, so the cost
    stays at ``max_steps`` matrix products however large ``m`` is.
    """
    n, d = features.shape
    if m >= n:
        return torch.arange(n, device=features.device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    x = features.float()
    if d > projection_dim:
        proj = torch.randn(d, projection_dim, generator=gen) / math.sqrt(projection_dim)
        x = x @ proj.to(x.device)
    per_step = math.ceil(m / max_steps)
    sq = (x * x).sum(1)
    chosen = torch.empty(m, dtype=torch.long, device=x.device)
    new = torch.randint(n, (1,), generator=gen).to(x.device)
    min_d2 = torch.full((n,), float("inf"), device=x.device)
    filled = 0
    while True:
        chosen[filled : filled + len(new)] = new
        filled += len(new)
        if filled >= m:
            return chosen
        # squared distances from every row to the newly chosen ones: one (n, s) product
        d2 = sq[:, None] - 2 * (x @ x[new].T) + sq[new][None, :]
        torch.minimum(min_d2, d2.min(1).values.clamp_min_(0), out=min_d2)
        min_d2[new] = -1.0  # never choose a row twice
        new = min_d2.topk(min(per_step, m - filled)).indices
