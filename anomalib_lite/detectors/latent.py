"""LatentDistance: anomaly = distance from the normal data in feature space.

Two methods on one feature space (raw pixels, or any backbone and layer set):

* ``"knn"``: mean distance to the ``k`` nearest rows of a bounded memory bank. ``fit`` streams the
  data into a reservoir of ``4 * memory_size`` rows and reduces it to ``memory_size`` with the
  greedy coreset (PatchCore); ``partial_fit`` keeps a reservoir sample of ``memory_size`` rows.
* ``"gaussian"``: Mahalanobis distance to a Gaussian whose mean and covariance are kept as running
  sums (any number of batches, fixed memory), shrunk towards a scaled identity.

``score_map`` works the same way on patch features: nearest-patch distance to a patch bank
(PatchCore) or a per-position Gaussian on ``map_dims`` random channels (PaDiM), upsampled to the
input size.
"""
from __future__ import annotations

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

_POOL_FACTOR = 4  # fit keeps 4x memory_size candidates for the coreset to choose from
_METHODS = ("knn", "gaussian")
_CORESETS = ("greedy", "random")


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
    k: neighbours averaged by "knn".
    memory_size: bound on the bank of image features (and of patch features for maps).
    coreset: how ``fit`` reduces the bank: "greedy" (farthest-point, PatchCore) or "random".
    shrinkage: weight of the scaled identity mixed into the covariance ("gaussian").
    backbone, weights, layers, image_size: the feature space (None = raw pixels); see
        :func:`backbones.create`. ``backbone`` may also be a ``backbones.FeatureExtractor``
        object (e.g. one returned by :func:`anomalib_lite.pretrain.pretrain`), used as it is. normalize: L2-normalise each layer's pooled features.
    maps: also learn patch features so that ``score_map`` works.
    patch_size: raw-pixel patch side for maps; map_dims: channels kept per position ("gaussian").
    search: "torch" (chunked matrix products on ``device``) or "faiss".
    """

    input_kind = "any"

    def __init__(
        self,
        method: str = "knn",
        k: int = 5,
        memory_size: int = 10000,
        coreset: str = "greedy",
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
        batch_size: int = 1024,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.method = method
        self.k = k
        self.memory_size = memory_size
        self.coreset = coreset
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
        if self.method not in _METHODS:
            raise AnomalyError(f"method='{self.method}': unknown; use one of {', '.join(_METHODS)}")
        if self.coreset not in _CORESETS:
            raise AnomalyError(f"coreset='{self.coreset}': unknown; use one of {', '.join(_CORESETS)}")
        if self.search not in ("torch", "faiss"):
            raise AnomalyError(f"search='{self.search}': unknown; use 'torch' or 'faiss'")
        for name in ("k", "memory_size", "patch_size", "map_dims", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AnomalyError(f"{name}={value!r}: must be a positive integer")
        if self.memory_size < self.k:
            raise AnomalyError(f"memory_size={self.memory_size} must be at least k={self.k}")
        if not 0 <= self.shrinkage <= 1:
            raise AnomalyError(f"shrinkage={self.shrinkage}: must be in [0, 1]")

    def _resolve_device(self) -> torch.device:
        try:
            return backbones.resolve_device(self.device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self.featurizer_ = Featurizer(
            self.backbone, weights=self.weights, layers=self.layers, image_size=self.image_size,
            patch_size=self.patch_size, device=self.device_, seed=self.seed, normalize=self.normalize,
        )
        self._bank = Reservoir(self.memory_size * _POOL_FACTOR, seed=self.seed)
        self._patch_bank = Reservoir(self.memory_size * _POOL_FACTOR, seed=self.seed + 1)
        self._moments = RunningMoments()
        self._patch_moments = RunningMoments()
        self._precision = self._patch_precision = None
        self.memory_ = self.patch_memory_ = None
        self.patch_channels_ = None
        self._indexes: dict[str, KnnIndex] = {}

    def _update(self, batch: Batch, fitting: bool) -> None:
        emb = self.featurizer_.embed(batch.x)
        self._precision = None
        if not fitting and self._bank.capacity != self.memory_size:  # partial_fit from scratch
            self._bank = Reservoir(self.memory_size, seed=self.seed)
            self._patch_bank = Reservoir(self.memory_size, seed=self.seed + 1)
        if self.method == "knn":
            self._bank.add(emb)
            self.memory_ = None if fitting else self._bank.values()
        else:
            self._moments.update(emb)
        if self.maps and batch.x.ndim == 4:
            self._update_patches(self.featurizer_.patches(batch.x), fitting)

    def _update_patches(self, p: torch.Tensor, fitting: bool) -> None:
        n, d, h, w = p.shape
        self.map_grid_ = (h, w)
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

    def _reduce(self, pool: Reservoir, seed: int) -> torch.Tensor:
        rows = pool.values()
        if rows.shape[0] <= self.memory_size:
            return rows.clone()
        if self.coreset == "greedy":
            idx = greedy_coreset(rows, self.memory_size, seed=seed)
        else:
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(rows.shape[0], generator=gen)[: self.memory_size].to(rows.device)
        return rows[idx].clone()

    def _finish_fit(self) -> None:
        if self.method == "knn":
            self.memory_ = self._reduce(self._bank, self.seed)
            self._bank = self._reservoir_from(self.memory_, self.seed)
            if self._patch_bank.n_seen:
                seen = self._patch_bank.n_seen
                self.patch_memory_ = self._reduce(self._patch_bank, self.seed + 1)
                self._patch_bank = self._reservoir_from(self.patch_memory_, self.seed + 1, seen)
        if self.method == "knn" and len(self.memory_) < self.k:
            raise AnomalyError(f"data: k={self.k} needs at least {self.k} normal samples, got {len(self.memory_)}")
        if self.method == "gaussian" and self._moments.n < 2:
            raise AnomalyError("data: the Gaussian needs at least 2 normal samples")

    def _reservoir_from(self, rows: torch.Tensor, seed: int, n_seen: int | None = None) -> Reservoir:
        """A memory_size reservoir holding ``rows``, as if it had seen ``n_seen`` rows."""
        res = Reservoir(self.memory_size, seed=seed)
        res.add(rows[: self.memory_size])
        res.n_seen = max(res.n_seen, n_seen if n_seen is not None else self.n_seen_)
        return res

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
        if cached is None or cached.bank is not bank:
            cached = self._indexes[name] = KnnIndex(bank, self.search)
        return cached

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
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
        if not self.maps:
            raise AnomalyError("score_map: this LatentDistance was fitted with maps=False")
        p = self.featurizer_.patches(x)
        n, d, h, w = p.shape
        if self.method == "knn":
            rows = p.permute(0, 2, 3, 1).reshape(-1, d)
            dist = self._knn_index(patches=True).search(rows, 1)[:, 0]
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
        return _blur(maps[:, 0], sigma=4.0 * max(H, W) / 224)

    # ------------------------------------------------------------------ bundles
    def _get_state(self):
        f = self.featurizer_
        tensors = dict(f.state_tensors())
        meta = {"backbone": f.config(), "preprocessing": f.preprocessing()}
        if self.method == "knn":
            tensors["memory"] = self.memory_ if self.memory_ is not None else self._bank.values()
            if self.patch_memory_ is not None or self._patch_bank.n_seen:
                pm = self.patch_memory_ if self.patch_memory_ is not None else self._patch_bank.values()
                tensors["patch_memory"] = pm
                meta["patch_rows_seen"] = self._patch_bank.n_seen
        else:
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
        self._patch_bank = Reservoir(self.memory_size, seed=self.seed + 1)
        if "map_grid" in meta:
            self.map_grid_ = tuple(meta["map_grid"])
        if self.method == "knn":
            self.memory_ = tensors["memory"].to(dev)
            self._bank = self._reservoir_from(self.memory_, self.seed)
            if "patch_memory" in tensors:
                self.patch_memory_ = tensors["patch_memory"].to(dev)
                self._patch_bank = self._reservoir_from(
                    self.patch_memory_, self.seed + 1, meta.get("patch_rows_seen", 0)
                )
        else:
            self._moments = RunningMoments.from_state(meta["moments_n"], tensors["mean"].to(dev), tensors["scatter"].to(dev))
            if "patch_mean" in tensors:
                self._patch_moments = RunningMoments.from_state(
                    meta["patch_moments_n"], tensors["patch_mean"].to(dev), tensors["patch_scatter"].to(dev)
                )
                self.patch_channels_ = tensors["patch_channels"].to(torch.long)
