"""LatentDistance: anomaly = distance from the normal data in feature space.

Two methods on one feature space (raw pixels, or any backbone and layer set):

* ``"knn"``: distance to the nearest rows of a memory bank of normal features (PatchCore);
* ``"gaussian"``: Mahalanobis distance to a Gaussian whose mean and covariance are kept as running
  sums (any number of batches, fixed memory), shrunk towards a scaled identity (PaDiM per position).

Images are scored from patch evidence by default (``image_score="patch"``, PatchCore): every patch
of the image gets its distance to the normal patches, the map is that distance upsampled to the
input size and smoothed, and the image score is the map's maximum, so one small defect decides the
image and the score always agrees with the map. ``image_score="pooled"`` scores the globally
averaged features instead (right for whole-image outliers, such as another digit).

Memory follows the data: ``fit`` keeps a uniform sample of the patch features seen (at most
``pool_factor * memory_size`` rows, allocated as they arrive) and reduces it with the greedy
coreset on random projections to ``coreset_ratio`` of the patches seen, at most ``memory_size``
rows, stored in ``bank_dtype`` (float16 halves bundles; searches run in float32).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import backbones

from ..base import Detector, register
from ..data import Batch
from ..errors import AnomalyError
from ..features import Featurizer
from ..memory import KnnIndex, greedy_coreset
from ..streaming import Reservoir, RunningMoments

__all__ = ["LatentDistance"]

_METHODS = ("knn", "gaussian")
_CORESETS = ("greedy", "random")
_IMAGE_SCORES = ("patch", "pooled")
_DTYPES = {"float16": torch.float16, "float32": torch.float32}
_MAP_PIXELS = 1 << 22  # pixels of maps (and their patch features) computed at once


def _mahalanobis(x: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """sqrt((x-m)^T P (x-m)) over the last dim; leading dims broadcast (positions, samples)."""
    d = x.to(mean.dtype) - mean
    return ((d @ precision) * d).sum(-1).clamp_min(0).sqrt()


def _blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N,H,W) maps; PatchCore smooths its upsampled maps the same way."""
    if sigma < 0.5:
        return maps
    r = int(2 * round(2 * sigma) + 1)
    t = torch.arange(r, dtype=maps.dtype, device=maps.device) - r // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (r // 2, r // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, r))
    x = F.conv2d(F.pad(x, (0, 0, r // 2, r // 2), mode="replicate"), g.view(1, 1, r, 1))
    return x[:, 0]


@register
class LatentDistance(Detector):
    """kNN or Mahalanobis distance to normal data in a feature space.

    Parameters
    ----------
    method: "knn" or "gaussian".
    k: neighbours averaged by "knn" for pooled and vector scores (patches use the nearest one).
    image_score: "patch" (PatchCore: the largest patch distance, the maximum of the map) or
        "pooled" (distance of the globally averaged features). Vectors (N, D) are always scored
        as they are.
    coreset_ratio: share of the patch features seen that the patch bank keeps (PatchCore's coreset
        sampling ratio); memory_size: absolute cap on each bank's rows (patches and pooled).
    pool_factor: ``fit`` gathers at most ``pool_factor * memory_size`` candidate rows (a uniform
        sample of everything seen) for the coreset to choose from.
    coreset: how ``fit`` reduces a bank: "greedy" (farthest-point, PatchCore) or "random".
    reweight: PatchCore's re-weighting of the image score by how isolated the matched bank patch
        is, over this many bank neighbours (0 = off; the paper uses 9). The map is scaled by the
        same factor, so its maximum still equals the image score.
    bank_dtype: precision of the patch bank: "float16" (half-size bundles; searches still run in
        float32; patch features of images are moderate numbers) or "float32". Pooled and vector
        banks stay float32 (vectors may be anything a user passes).
    shrinkage: weight of the scaled identity mixed into the covariance ("gaussian").
    backbone, weights, layers, image_size: the feature space (None = raw pixels); see
        :func:`backbones.create`. ``backbone`` may also be a ``backbones.FeatureExtractor``
        object (e.g. one returned by :func:`anomalib_lite.pretrain.pretrain`), used as it is.
    normalize: L2-normalise each layer's pooled features ("pooled" scores).
    maps: with ``image_score="pooled"``, also learn patch features so that ``score_map`` works
        (patch scores always learn them).
    patch_size: raw-pixel patch side; map_dims: channels kept per position ("gaussian" maps).
    search: "torch" (chunked matrix products on ``device``) or "faiss".
    """

    input_kind = "any"

    def __init__(
        self,
        method: str = "knn",
        k: int = 5,
        image_score: str = "patch",
        coreset_ratio: float = 0.1,
        memory_size: int = 10000,
        pool_factor: int = 4,
        coreset: str = "greedy",
        reweight: int = 0,
        bank_dtype: str = "float16",
        shrinkage: float = 0.01,
        backbone: str | None = None,
        weights: str = "imagenet",
        layers: list[str] | None = None,
        image_size: int | None = None,
        normalize: bool = False,
        maps: bool = True,
        patch_size: int = 7,
        map_dims: int = 100,
        search: str = "torch",
        batch_size: int = 256,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.method = method
        self.k = k
        self.image_score = image_score
        self.coreset_ratio = coreset_ratio
        self.memory_size = memory_size
        self.pool_factor = pool_factor
        self.coreset = coreset
        self.reweight = reweight
        self.bank_dtype = bank_dtype
        self.shrinkage = shrinkage
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.image_size = image_size
        self.normalize = normalize
        self.maps = maps
        self.patch_size = patch_size
        self.map_dims = map_dims
        self.search = search
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        for name, allowed in (("method", _METHODS), ("coreset", _CORESETS), ("image_score", _IMAGE_SCORES),
                              ("bank_dtype", tuple(_DTYPES)), ("search", ("torch", "faiss"))):
            if getattr(self, name) not in allowed:
                raise AnomalyError(f"{name}='{getattr(self, name)}': unknown; use one of {', '.join(allowed)}")
        for name in ("k", "memory_size", "pool_factor", "patch_size", "map_dims", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AnomalyError(f"{name}={value!r}: must be a positive integer")
        if not isinstance(self.reweight, int) or isinstance(self.reweight, bool) or self.reweight < 0:
            raise AnomalyError(f"reweight={self.reweight!r}: must be 0 (off) or a number of neighbours")
        if self.memory_size < self.k:
            raise AnomalyError(f"memory_size={self.memory_size} must be at least k={self.k}")
        if not isinstance(self.coreset_ratio, (int, float)) or not 0 < self.coreset_ratio <= 1:
            raise AnomalyError(f"coreset_ratio={self.coreset_ratio!r}: must be in (0, 1]")
        if not 0 <= self.shrinkage <= 1:
            raise AnomalyError(f"shrinkage={self.shrinkage}: must be in [0, 1]")
        if self.reweight and self.method != "knn":
            raise AnomalyError("reweight: PatchCore's re-weighting applies to method='knn'")

    def _resolve_device(self) -> torch.device:
        try:
            return backbones.resolve_device(self.device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None

    def _learns_patches(self) -> bool:
        return self.image_score == "patch" or self.maps

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self.featurizer_ = Featurizer(
            self.backbone, weights=self.weights, layers=self.layers, image_size=self.image_size,
            patch_size=self.patch_size, device=self.device_, seed=self.seed, normalize=self.normalize,
        )
        pool = self.memory_size * self.pool_factor  # candidates in float32: the coreset sees them exactly
        self._bank = Reservoir(pool, seed=self.seed)
        self._patch_bank = Reservoir(pool, seed=self.seed + 1)
        self._moments = RunningMoments()
        self._patch_moments = RunningMoments()
        self._precision = self._patch_precision = None
        self.memory_ = self.patch_memory_ = None
        self.patch_channels_ = None
        self.patches_seen_ = 0
        self._indexes: dict[str, KnnIndex] = {}

    def _chunks(self, x: torch.Tensor):
        """Slices of a batch small enough that their patch features and maps stay bounded."""
        step = max(1, _MAP_PIXELS // max(1, x.shape[-2] * x.shape[-1]))
        for i in range(0, len(x), step):
            yield x[i : i + step]

    def _update(self, batch: Batch, fitting: bool) -> None:
        x = batch.x
        self._precision = None
        if not fitting and self._bank.capacity != self.memory_size:  # partial_fit from scratch
            self._bank = Reservoir(self.memory_size, seed=self.seed)
            self._patch_bank = Reservoir(self.memory_size, seed=self.seed + 1, dtype=self._patch_dtype())
        patches = x.ndim == 4 and self._learns_patches()
        if x.ndim == 2 or self.image_score == "pooled":
            emb = self.featurizer_.embed(x)
            if self.method == "knn":
                self._bank.add(emb)
                self.memory_ = None if fitting else self._bank.values()
            else:
                self._moments.update(emb)
        if patches:
            for part in self._chunks(x):
                self._update_patches(self.featurizer_.patches(part), fitting)

    def _update_patches(self, p: torch.Tensor, fitting: bool) -> None:
        n, d, h, w = p.shape
        self.map_grid_ = (h, w)
        self.patches_seen_ += n * h * w
        self._patch_precision = None
        if self.method == "knn":
            self._patch_bank.add(p.permute(0, 2, 3, 1).reshape(-1, d))
            self.patch_memory_ = None if fitting else self._patch_bank.values()
            return
        if self.patch_channels_ is None:
            gen = torch.Generator().manual_seed(self.seed)
            keep = min(d, self.map_dims)
            self.patch_channels_ = torch.randperm(d, generator=gen)[:keep].sort().values
        sel = p[:, self.patch_channels_.to(p.device)]
        self._patch_moments.update(sel.permute(0, 2, 3, 1).reshape(n, h * w, -1))

    def _reduce(self, pool: Reservoir, size: int, seed: int) -> torch.Tensor:
        rows = pool.values()
        if rows.shape[0] <= size:
            return rows.clone()
        if self.coreset == "greedy":
            idx = greedy_coreset(rows, size, seed=seed)
        else:
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(rows.shape[0], generator=gen)[:size].to(rows.device)
        return rows[idx].clone()

    def _finish_fit(self) -> None:
        if self.method == "knn":
            # the candidate pools become memory_size reservoirs that partial_fit goes on with
            bank, patch_bank = self._bank, self._patch_bank
            self._bank = Reservoir(self.memory_size, seed=self.seed)
            self._patch_bank = Reservoir(self.memory_size, seed=self.seed + 1, dtype=self._patch_dtype())
            if bank.n_seen:
                self.memory_ = self._reduce(bank, self.memory_size, self.seed)
                self._bank = self._reservoir_from(self.memory_, self.seed, bank.n_seen)
            if patch_bank.n_seen:
                seen = patch_bank.n_seen
                size = min(self.memory_size, max(self.k, math.ceil(self.coreset_ratio * seen)))
                self.patch_memory_ = self._reduce(patch_bank, size, self.seed + 1).to(self._patch_dtype())
                self._patch_bank = self._reservoir_from(self.patch_memory_, self.seed + 1, seen)
            bank = self.memory_ if self.memory_ is not None else self.patch_memory_
            if len(bank) < self.k:
                raise AnomalyError(f"data: k={self.k} needs at least {self.k} normal samples, got {len(bank)}")
        elif self._moments.n < 2 and self._patch_moments.n < 2:
            raise AnomalyError("data: the Gaussian needs at least 2 normal samples")

    def _reservoir_from(self, rows: torch.Tensor, seed: int, n_seen: int) -> Reservoir:
        """A memory_size reservoir that goes on from the bank ``rows`` (partial_fit after fit)."""
        return Reservoir.restore(rows, self.memory_size, seed, n_seen, rows.dtype)

    def _patch_dtype(self) -> torch.dtype:
        return _DTYPES[self.bank_dtype]

    # ------------------------------------------------------------------ scoring
    def score(self, data, leave_one_out: bool = False):
        """Scores per sample; ``leave_one_out`` skips a sample's own entry in the bank ("knn"),
        for scoring the training data itself."""
        self._exclude_self = leave_one_out
        try:
            return super().score(data)
        finally:
            self._exclude_self = False

    def _gaussian(self, moments: RunningMoments) -> torch.Tensor:
        cov = moments.covariance(self.shrinkage)
        return torch.linalg.inv(cov)

    def _knn_index(self, patches: bool) -> KnnIndex:
        """The search index over the current bank, rebuilt only after the bank changed."""
        name = "patch_memory_" if patches else "memory_"
        if getattr(self, name) is None:
            setattr(self, name, (self._patch_bank if patches else self._bank).values())
        bank = getattr(self, name)
        cached = self._indexes.get(name)
        if cached is None or cached.source is not bank:
            cached = self._indexes[name] = KnnIndex(bank, self.search)
        return cached

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and self.image_score == "patch":
            return torch.cat([self._maps(part).flatten(1).amax(1) for part in self._chunks(x)])
        emb = self.featurizer_.embed(x)
        if self.method == "knn":
            index = self._knn_index(patches=False)
            return index.search(emb, self.k, getattr(self, "_exclude_self", False)).mean(1)
        if self._precision is None:
            self._precision = self._gaussian(self._moments)
        return _mahalanobis(emb, self._moments.mean, self._precision)

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise AnomalyError("score_map: needs images (N,C,H,W), got vectors")
        if not self._learns_patches():
            raise AnomalyError("score_map: this LatentDistance was fitted with maps=False")
        return torch.cat([self._maps(part) for part in self._chunks(x)])

    def _score_and_map_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self._score_map_batch(x)
        if self.image_score == "patch":
            return maps.flatten(1).amax(1), maps  # the same pass, so they always agree
        return self._score_batch(x), maps

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel maps (n, H, W): patch distances, upsampled, blurred, and re-weighted."""
        p = self.featurizer_.patches(x)
        n, d, h, w = p.shape
        weight = None
        if self.method == "knn":
            rows = p.permute(0, 2, 3, 1).reshape(-1, d)
            index = self._knn_index(patches=True)
            dist, idx = index.search(rows, 1, getattr(self, "_exclude_self", False), return_index=True)
            dist = dist[:, 0].reshape(n, h * w)
            if self.reweight:
                weight = self._reweight(index, rows.reshape(n, h * w, d), dist, idx[:, 0].reshape(n, h * w))
        else:
            if self._patch_precision is None:
                self._patch_precision = self._gaussian(self._patch_moments)
            sel = p[:, self.patch_channels_.to(p.device)].permute(2, 3, 0, 1).reshape(h * w, n, -1)
            mean = self._patch_moments.mean[:, None, :]  # (positions, 1, d)
            dist = _mahalanobis(sel, mean, self._patch_precision).T  # (n, positions)
        maps = dist.reshape(n, 1, h, w).float()
        H, W = x.shape[-2:]
        if (h, w) != (H, W):
            maps = F.interpolate(maps, size=(H, W), mode="bilinear", align_corners=False)
        maps = _blur(maps[:, 0], sigma=4.0 * max(H, W) / 224)
        return maps if weight is None else maps * weight[:, None, None]

    def _reweight(self, index: KnnIndex, rows: torch.Tensor, dist: torch.Tensor, nearest: torch.Tensor):
        """PatchCore's factor ``1 - softmax(-)[0]`` over the distances from each image's most
        anomalous patch to its nearest bank patch and that patch's ``reweight`` bank neighbours:
        near 0 when the match sits in a dense part of the bank, up to 1 when it is isolated."""
        n = rows.shape[0]
        top = dist.argmax(1)
        worst = rows[torch.arange(n), top]  # (n, d)
        matched = index.bank[nearest[torch.arange(n), top]]  # (n, d)
        b = min(self.reweight, len(index))
        _, support = index.search(matched, b, return_index=True)  # (n, b), the match included
        d = (worst[:, None, :].float() - index.bank[support].float()).norm(dim=-1)
        return 1 - torch.softmax(d, dim=1)[:, 0]

    def summary(self) -> str:
        """The banks' sizes: e.g. 'patch bank 18,432 rows of 184,320 patches seen (float16)'."""
        parts = []
        if self.memory_ is not None:
            parts.append(f"bank {len(self.memory_):,} rows of {self._bank.n_seen:,} seen")
        if self.patch_memory_ is not None:
            parts.append(f"patch bank {len(self.patch_memory_):,} rows of {self.patches_seen_:,} patches seen "
                         f"({str(self.patch_memory_.dtype).replace('torch.', '')})")
        if self.method == "gaussian":
            parts.append("Gaussian" + (" per position" if self._patch_moments.mean is not None else ""))
        return "; ".join(parts)

    # ------------------------------------------------------------------ bundles
    def _get_state(self):
        f = self.featurizer_
        tensors = dict(f.state_tensors())
        meta = {"backbone": f.config(), "preprocessing": f.preprocessing(), "patches_seen": self.patches_seen_}
        if self.method == "knn":
            if self.memory_ is not None or self._bank.n_seen:
                tensors["memory"] = self.memory_ if self.memory_ is not None else self._bank.values()
                meta["rows_seen"] = self._bank.n_seen
            if self.patch_memory_ is not None or self._patch_bank.n_seen:
                pm = self.patch_memory_ if self.patch_memory_ is not None else self._patch_bank.values()
                tensors["patch_memory"] = pm
                meta["patch_rows_seen"] = self._patch_bank.n_seen
        else:
            if self._moments.mean is not None:
                tensors["mean"], tensors["scatter"] = self._moments.mean, self._moments.scatter
                meta["moments_n"] = self._moments.n
            if self._patch_moments.mean is not None:
                tensors["patch_mean"] = self._patch_moments.mean
                tensors["patch_scatter"] = self._patch_moments.scatter
                tensors["patch_channels"] = self.patch_channels_
                meta["patch_moments_n"] = self._patch_moments.n
        if getattr(self, "map_grid_", None) is not None:
            meta["map_grid"] = list(self.map_grid_)
        return tensors, meta

    def _set_state(self, tensors, meta) -> None:
        self._check_params()
        self.device_ = self._resolve_device()
        self.featurizer_ = Featurizer.from_state(
            meta["backbone"], tensors, self.patch_size, self.device_, normalize=self.normalize
        )
        dev = self.device_
        self._moments, self._patch_moments = RunningMoments(), RunningMoments()
        self._precision = self._patch_precision = None
        self.memory_ = self.patch_memory_ = self.patch_channels_ = None
        self._indexes = {}
        self._bank = Reservoir(self.memory_size, seed=self.seed)
        self._patch_bank = Reservoir(self.memory_size, seed=self.seed + 1, dtype=self._patch_dtype())
        self.patches_seen_ = int(meta.get("patches_seen", 0))
        if "map_grid" in meta:
            self.map_grid_ = tuple(meta["map_grid"])
        if self.method == "knn":
            if "memory" in tensors:
                self.memory_ = tensors["memory"].to(dev)
                self._bank = self._reservoir_from(self.memory_, self.seed, meta.get("rows_seen", 0))
            if "patch_memory" in tensors:
                self.patch_memory_ = tensors["patch_memory"].to(dev)
                self._patch_bank = self._reservoir_from(
                    self.patch_memory_, self.seed + 1, meta.get("patch_rows_seen", 0)
                )
        else:
            if "mean" in tensors:
                self._moments = RunningMoments.from_state(
                    meta["moments_n"], tensors["mean"].to(dev), tensors["scatter"].to(dev)
                )
            if "patch_mean" in tensors:
                self._patch_moments = RunningMoments.from_state(
                    meta["patch_moments_n"], tensors["patch_mean"].to(dev), tensors["patch_scatter"].to(dev)
                )
                self.patch_channels_ = tensors["patch_channels"].to(torch.long)
