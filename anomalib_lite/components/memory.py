"""Nearest-neighbour search and memory-bank reduction.

Distances are computed as ``|q|^2 - 2 q.b + |b|^2`` by chunked matrix products on the bank's
device (memory-bounded, unlike a full ``cdist``). With FAISS (an extra) a bank gets an index chosen
for its size (flat, IVF-Flat, IVF-PQ, or HNSW when named), trained once and kept in bundles as
FAISS's own serialisation (bytes, validated when read back); its candidates are re-ranked exactly.
:func:`greedy_coreset` picks a bank that covers the data (farthest-point sampling on a random
projection), vectorised so each step is one matrix-vector product.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .. import progress
from ..errors import AnomalyError

__all__ = [
    "FAISS_INDEXES", "KnnIndex", "build_faiss_index", "choose_faiss_index", "faiss_available", "faiss_plan",
    "greedy_coreset", "index_from_bytes", "index_to_bytes", "knn_distances",
]

# rows of the distance matrix held at once: ~16 MB of float32, cache-friendly
_BLOCK_ELEMENTS = 1 << 22


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise AnomalyError("search='faiss': faiss is not installed (pip install 'anomalib_lite[faiss]'; "
                           "faiss-gpu for CUDA)") from None
    return faiss


#: the FAISS index types a bank can use (``search="faiss:<type>"``; ``"faiss"`` picks one by size)
FAISS_INDEXES = ("flat", "ivfflat", "ivfpq", "hnsw")
#: ``search="faiss"`` searches banks of up to this many rows exhaustively (flat: exact, and a
#: 10^5 x 384 bank answers 1000 queries in ~0.6 s on one CPU thread: an IVF index saves little
#: and costs a k-means; benchmarks/faiss_banks.py) ...
FLAT_MAX_ROWS = 100_000
#: ... IVF-Flat up to this many (recall@1 0.98-1 at the default nprobe, exact distances, but its
#: lists hold a float32 copy of the bank: 3 GB at 2 x 10^6 x 384), and IVF-PQ beyond (48 bytes
#: a row at width 384, 32 candidates re-ranked exactly against the bank)
IVFFLAT_MAX_ROWS = 2_000_000
#: the coarse k-means and each added row cost O(nlist): 4096 lists keep a 10^7-row build to
#: minutes on a small CPU (FAISS suggests 4-16 sqrt(n) lists; more lists = faster queries)
_MAX_NLIST = 4096
#: a named approximate index is trained only for banks of at least this many rows (FAISS wants
#: ~39 training rows per centroid); smaller banks are searched flat (exact, nothing to train)
MIN_TRAINED_ROWS = 1000
_FOURCC = {"flat": b"IxF2", "ivfflat": b"IwFl", "ivfpq": b"IwPQ", "hnsw": b"IHNf"}
_CLASSES = {"flat": ("IndexFlat", "IndexFlatL2"), "ivfflat": ("IndexIVFFlat",), "ivfpq": ("IndexIVFPQ",),
            "hnsw": ("IndexHNSWFlat",)}
_ADD_ROWS = 1 << 16  # rows converted to float32 and added at once (bounded memory for big banks)


def choose_faiss_index(rows: int, requested: str = "auto") -> str:
    """The index a bank of ``rows`` rows gets: ``requested`` (one of :data:`FAISS_INDEXES`; flat
    below :data:`MIN_TRAINED_ROWS`), or for ``"auto"`` flat, IVF-Flat or IVF-PQ by size."""
    if requested != "auto":
        if requested not in FAISS_INDEXES:
            raise AnomalyError(f"faiss index '{requested}': unknown; use one of auto, {', '.join(FAISS_INDEXES)}")
        return requested if rows >= MIN_TRAINED_ROWS else "flat"
    if rows <= FLAT_MAX_ROWS:
        return "flat"
    return "ivfflat" if rows <= IVFFLAT_MAX_ROWS else "ivfpq"


def faiss_plan(kind: str, rows: int, dim: int) -> dict:
    """How an index of ``kind`` is built for ``rows`` x ``dim``: the FAISS factory string, the
    search setting (``nprobe`` lists or HNSW's ``ef``), the training sample and how many
    candidates are re-ranked exactly. Every k-means gets >= 39 points per centroid (FAISS's
    minimum), so small banks get fewer lists and fewer PQ bits."""
    if kind not in FAISS_INDEXES:
        raise AnomalyError(f"faiss index '{kind}': unknown; use one of {', '.join(FAISS_INDEXES)}")
    plan = {"kind": kind, "factory": "Flat", "nprobe": 0, "ef": 0, "train_rows": 0, "candidates": 1}
    if kind == "hnsw":
        plan.update(factory="HNSW32,Flat", ef=128)
    elif kind in ("ivfflat", "ivfpq"):
        nlist = 1 << max(0, round(math.log2(4 * math.sqrt(max(1, rows)))))
        nlist = min(nlist, _MAX_NLIST)
        while nlist > 1 and nlist * 39 > rows:
            nlist //= 2
        plan.update(factory=f"IVF{nlist},Flat", nprobe=min(nlist, max(16, nlist // 64)),
                    train_rows=min(rows, 64 * nlist))
        if kind == "ivfpq":
            m = max(s for s in range(1, dim + 1) if dim % s == 0 and s <= max(1, dim // 8))  # 8 dims a byte
            bits = max(1, min(8, int(math.log2(max(2, rows // 39)))))
            plan.update(factory=f"IVF{nlist},PQ{m}x{bits}", candidates=32,
                        train_rows=min(rows, max(64 * nlist, 39 * 256)))
    return plan


def build_faiss_index(bank: torch.Tensor, kind: str, seed: int = 0):
    """A trained CPU FAISS index over ``bank`` (added in float32 chunks, so a float16 bank is
    never copied whole); IVF indexes train on a seeded sample of at most ``train_rows`` rows."""
    faiss = _faiss()
    rows, dim = bank.shape
    plan = faiss_plan(kind, rows, dim)
    index = faiss.index_factory(dim, plan["factory"], faiss.METRIC_L2)
    if plan["train_rows"]:
        pick = np.random.default_rng(seed).choice(rows, plan["train_rows"], replace=False)
        pick.sort()
        sample = _f32(bank[torch.from_numpy(pick).to(bank.device)])
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.seed = int(seed) % (1 << 31)
        if kind == "ivfpq":  # (polysemous codes serve Hamming filtering, unused here; slow to train)
            faiss.downcast_index(ivf).do_polysemous_training = False
            faiss.downcast_index(ivf).pq.cp.max_points_per_centroid = 64  # 16k rows per codebook
        index.train(sample)
        del sample
    for i in range(0, rows, _ADD_ROWS):
        index.add(_f32(bank[i : i + _ADD_ROWS]))
    _set_search(index, plan)
    return index


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _set_search(index, plan: dict) -> None:
    faiss = _faiss()
    if plan["nprobe"]:
        faiss.extract_index_ivf(index).nprobe = plan["nprobe"]
    if plan["ef"]:
        index.hnsw.efSearch = plan["ef"]


def index_to_bytes(index) -> torch.Tensor:
    """FAISS's own serialisation of a CPU index, as a uint8 tensor (bundles hold it; no pickle)."""
    return torch.from_numpy(_faiss().serialize_index(index).copy())


def max_index_bytes(rows: int, dim: int) -> int:
    """An upper bound on a serialised index of any type for ``rows`` x ``dim`` (float32 vectors,
    ids, an HNSW graph, centroids): larger bytes are refused before FAISS reads them."""
    return rows * (4 * dim + 8 + 1024) + (_MAX_NLIST + 256) * 4 * dim + (1 << 20)


def index_from_bytes(data: torch.Tensor, kind: str, rows: int, dim: int, what: str = "index"):
    """Read a serialised index back (never retrained), validated: type and size first, then
    FAISS's reader, then its dimensions, row count and row ids, so a damaged index is one
    AnomalyError rather than a crash or wrong neighbours."""
    faiss = _faiss()
    if data.dtype != torch.uint8 or data.ndim != 1 or not 16 <= data.numel() <= max_index_bytes(rows, dim):
        raise AnomalyError(f"{what}: {data.numel()} bytes is not a serialised FAISS index of {rows} x {dim}")
    raw = data.cpu().numpy()
    if raw[:4].tobytes() != _FOURCC[kind]:
        raise AnomalyError(f"{what}: not a FAISS {kind} index (starts with {raw[:4].tobytes()!r})")
    try:
        index = faiss.deserialize_index(np.ascontiguousarray(raw))
    except Exception as e:  # FAISS raises RuntimeError: "Error in <function> at <file>: Error: '<check>' failed"
        said = " ".join(str(e).split())
        said = said.rsplit("Error: ", 1)[-1][:100] or type(e).__name__
        raise AnomalyError(f"{what}: FAISS could not read the serialised {kind} index ({said})") from None
    if type(index).__name__ not in _CLASSES[kind] or index.d != dim or index.ntotal != rows or not index.is_trained:
        raise AnomalyError(f"{what}: the serialised index is a {type(index).__name__} of {index.ntotal} x "
                           f"{index.d}, expected a {kind} index of {rows} x {dim}")
    _check_ids(index, kind, rows, what)
    return index


def _check_ids(index, kind: str, rows: int, what: str) -> None:
    """Every row id an IVF index returns is a bank row, each exactly once; an HNSW graph links
    bank rows only (a damaged index must not index past the bank)."""
    faiss = _faiss()
    if kind in ("ivfflat", "ivfpq"):
        lists = index.invlists
        ids = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
               for i in range(lists.nlist) if lists.list_size(i)]
        ids = np.sort(np.concatenate(ids)) if ids else np.empty(0, np.int64)
        if len(ids) != rows or (rows and (ids[0] != 0 or ids[-1] != rows - 1 or (np.diff(ids) != 1).any())):
            raise AnomalyError(f"{what}: the serialised index's row ids are not the bank's {rows} rows")
    elif kind == "hnsw":
        h = index.hnsw
        nb = faiss.vector_to_array(h.neighbors)
        off = faiss.vector_to_array(h.offsets)
        levels = faiss.vector_to_array(h.levels)
        ok = (len(levels) == rows and len(off) == rows + 1 and (np.diff(off.astype(np.int64)) >= 0).all()
              and int(off[-1]) <= len(nb) and (nb.size == 0 or (nb.min() >= -1 and nb.max() < rows))
              and (rows == 0 or 0 <= h.entry_point < rows) and h.max_level < 64 and (levels <= h.max_level + 1).all())
        if not ok:
            raise AnomalyError(f"{what}: the serialised HNSW graph does not link the bank's {rows} rows")


def _to_gpu(index, kind: str, device: torch.device):
    """The index on the bank's GPU when FAISS was built with CUDA (HNSW has no GPU form);
    else the CPU index. Returns (index, resources to keep alive)."""
    faiss = _faiss()
    if device.type != "cuda" or kind == "hnsw" or not hasattr(faiss, "StandardGpuResources") \
            or faiss.get_num_gpus() <= 0:
        return index, None
    res = faiss.StandardGpuResources()
    opts = faiss.GpuClonerOptions()
    opts.useFloat16 = kind == "ivfpq"  # PQ lookup tables in half precision (large M needs it)
    try:
        return faiss.index_cpu_to_gpu(res, device.index or 0, index, opts), res
    except RuntimeError:  # a layout the GPU build does not support: search on the CPU
        return index, None


class KnnIndex:
    """k-nearest-neighbour search over a fixed bank (build once, query many times).

    ``backend="torch"``: exact; chunked ``|b|^2 - 2 q.b`` products on the bank's device, then
    exact distances to the k candidates. ``"faiss"``: a FAISS index of ``index_type`` (one of
    :data:`FAISS_INDEXES`, or ``"auto"``: :func:`choose_faiss_index`), built here or read from
    ``index_bytes`` (a serialised index, validated, never retrained); on the GPU when FAISS has
    CUDA and the bank is there. FAISS proposes candidates and their distances are recomputed
    exactly against the bank, so an approximate index can only miss a neighbour, never report
    a wrong distance. A bank stored in half precision is searched in float32.
    """

    def __init__(self, bank: torch.Tensor, backend: str = "torch", index_type: str = "auto",
                 index_bytes: torch.Tensor | None = None, seed: int = 0):
        if backend not in ("torch", "faiss"):
            raise AnomalyError(f"search='{backend}': unknown; use 'torch' or 'faiss'")
        self.source, self.backend = bank, backend  # `source`: the bank as given (identity checks)
        self.index_type = None
        self._sq = self._faiss = self._gpu_res = self._cpu = self._exact = None
        if backend == "torch":
            self.bank = bank if bank.dtype in (torch.float32, torch.float64) else bank.float()
            self._sq = (self.bank * self.bank).sum(1)
            return
        _faiss()
        self.bank = bank  # kept in its dtype: rows are converted as they are gathered
        rows, dim = bank.shape
        self.index_type = index_type if index_bytes is not None else choose_faiss_index(rows, index_type)
        self.plan = faiss_plan(self.index_type, rows, dim)
        if index_bytes is not None:
            cpu = index_from_bytes(index_bytes, self.index_type, rows, dim, "faiss index")
        else:
            cpu = build_faiss_index(bank, self.index_type, seed)
        self._faiss, self._gpu_res = _to_gpu(cpu, self.index_type, bank.device)
        self._cpu = cpu if self._gpu_res is None else None

    def __len__(self) -> int:
        return int(self.bank.shape[0])

    def to_bytes(self) -> torch.Tensor:
        """The FAISS index serialised (``"faiss"`` backend only)."""
        if self._faiss is None:
            raise AnomalyError("only a FAISS index can be serialised")
        cpu = self._cpu if self._cpu is not None else _faiss().index_gpu_to_cpu(self._faiss)
        return index_to_bytes(cpu)

    @property
    def trained(self) -> bool:
        """Whether the FAISS index holds more than the bank (worth keeping in a bundle)."""
        return self.index_type not in (None, "flat")

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
            d, idx = _rerank(q, bank, idx, k)  # the expansion loses precision near zero
            dists.append(d)
            indices.append(idx)
        return torch.cat(dists), torch.cat(indices)

    def _faiss_search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        want = min(n, max(k, self.plan["candidates"]))  # IVF-PQ: more candidates, re-ranked below
        if self.plan["ef"] and want > self.plan["ef"]:
            self._faiss.hnsw.efSearch = want
        _, found = self._faiss.search(_f32(queries), want)
        found = torch.from_numpy(found).to(self.bank.device)
        if found.numel() and int(found.max()) >= n:
            raise AnomalyError(f"faiss index: returned row {int(found.max())} of a {n}-row bank")
        queries = queries.to(self.bank.device)
        rows = max(1, _BLOCK_ELEMENTS // max(1, want * self.bank.shape[1]))
        dists, indices = [], []
        for i in range(0, len(found), rows):  # exact distances to the candidates
            d, idx = _rerank(queries[i : i + rows], self.bank, found[i : i + rows], k)
            dists.append(d)
            indices.append(idx)
        dist, idx = torch.cat(dists), torch.cat(indices)
        short = ~torch.isfinite(dist[:, -1]) if len(dist) else torch.zeros(0, dtype=torch.bool)
        if short.any():  # an IVF probe found fewer than k rows (tiny banks): search those exactly
            if self._exact is None:
                self._exact = KnnIndex(self.bank)
            dist[short], idx[short] = self._exact._torch(queries[short], k)
        return dist, idx

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


def _rerank(q: torch.Tensor, bank: torch.Tensor, cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distances from each query row to its candidate bank rows (index -1: none, at
    infinity), the ``k`` nearest ascending, with their bank indices."""
    d = (q[:, None, :] - bank[cand.clamp_min(0)].to(q.dtype)).norm(dim=-1)
    d, order = d.masked_fill(cand < 0, float("inf")).sort(1)
    return d[:, :k], cand.gather(1, order)[:, :k]


def knn_distances(
    queries: torch.Tensor, bank: torch.Tensor, k: int, exclude_self: bool = False, backend: str = "torch"
) -> torch.Tensor:
    """One-off search: ``KnnIndex(bank, backend).search(queries, k, exclude_self)``."""
    return KnnIndex(bank, backend).search(queries, k, exclude_self)


def greedy_coreset(
    features: torch.Tensor, m: int, seed: int = 0, projection_dim: int = 128, max_steps: int = 200,
    verbose: bool = False,
) -> torch.Tensor:
    """Indices of ``m`` rows chosen by farthest-point sampling (the PatchCore coreset).

    Rows are first randomly projected to ``projection_dim`` dimensions (Johnson-Lindenstrauss,
    PatchCore's trick). Exact greedy adds, one at a time, the row farthest from everything chosen
    so far; that is ``m`` passes over the data. Here each pass (at most ``max_steps`` of them)
    adds ``s = ceil(m / max_steps)`` rows: the ``4 s`` farthest rows are the candidates, and exact
    greedy among them (their pairwise distances are small) picks ``s`` that are far from the
    chosen rows and from each other. The work is about ``2 n m projection_dim`` flops (10^6 rows
    to 10^5: minutes on two CPU cores); distances are computed in row blocks, so memory stays
    at about ``n (projection_dim + 2)`` floats. ``verbose``: a progress bar of the passes.
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
    bar = progress.bar(1 + math.ceil((m - 1) / per_step), f"coreset {m:,} of {n:,} rows", verbose, unit="pass")
    while True:
        chosen[filled : filled + len(new)] = new
        filled += len(new)
        bar.update(1)
        if filled >= m:
            bar.close()
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
