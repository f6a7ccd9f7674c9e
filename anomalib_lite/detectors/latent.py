"""LatentDistance: anomaly = distance from the normal data in feature space.

Two methods on one feature space (raw pixels, or any backbone and layer set):

* ``"knn"``: distance to the nearest rows of a memory bank of normal features (PatchCore);
* ``"gaussian"``: Mahalanobis distance to a Gaussian whose mean and covariance are kept as running
  sums (any number of batches, fixed memory), shrunk towards a scaled identity (PaDiM per position).

Images are scored from two kinds of evidence by default (``image_score="combined"``): the patch
evidence (PatchCore: every patch of the image gets its distance to the normal patches, the map is
that distance upsampled and smoothed, and its maximum is the image's local evidence, so one small
defect counts) and the pooled evidence (the distance of the globally averaged features: whole-image
outliers, such as another digit, whose every patch is plausible), and with them the image's global
statistics (exposure, contrast, sharpness: ``numeric.image_stats``, a Mahalanobis distance to the
training images'), which see a blurred or rescaled image, or thinner strokes, that both distances
take for normal: a blur moves an image towards the average of the normal ones. These two count only
where the images' position explains their appearance (aligned objects: a digit, a part in its
fixture; :class:`~anomalib_lite.components.streaming.PositionShare`, measured at ``fit``): a texture
looks alike everywhere, so its pooled features only add the drift between parts of the material,
and its image score is the patch evidence alone. Otherwise each kind is turned into a surprise on
its own scale, measured at ``fit`` on a tenth of the training images held out of the banks (at
most 64: the robust z of the log-distance), and the image score is the length of the vector of
surprises (each made positive by a softplus, which keeps their order), so any kind alone can
decide and they add up when more than one sees something.
``evidence(X)`` says which decided. ``image_score="patch"`` or ``"pooled"`` use one kind alone.

Memory follows the data: ``fit`` keeps a uniform sample of the patch features seen (at most
``pool_factor * memory_size`` rows, allocated as they arrive) and reduces it with the greedy
coreset on random projections to ``coreset_ratio`` of the patches seen, at most ``memory_size``
rows, stored in ``bank_dtype`` (float16 halves bundles; searches run in float32).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .. import distributed
from .. import validate as v
from .base import RUN_CHECKS, Capabilities, Detector, register
from ..data.batches import Batch
from ..errors import AnomalyError
from ..components.features import (
    BACKBONE_CHECKS,
    Featurizer,
    check_backbone_config,
    extractor_from_config,
    make_extractor,
)
from ..components.context import CONTEXT_IMAGES, BatchContext
from ..components.memory import FAISS_INDEXES
from ..components.streaming import PositionShare, RunningMoments
from ..numeric import (STATS_MIN_SIDE, combined, image_stats, log_scale, mahalanobis, patch_maps,
                       standardised_precision, surprise)
from ..state import Buffers
from .latent_methods import BANKS as _BANKS
from .latent_methods import DTYPES as _DTYPES
from .latent_methods import METHODS

__all__ = ["LatentDistance"]

_METHODS = tuple(METHODS)
_CORESETS = ("greedy", "random")
_IMAGE_SCORES = ("combined", "patch", "pooled")
_MAP_PIXELS = 1 << 22  # pixels of maps (and their patch features) computed at once
_MAX_ROWS = 10**8  # the largest bank a LatentDistance may hold (memory_size's bound)
_SEARCHES = ("torch", "faiss", *(f"faiss:{kind}" for kind in FAISS_INDEXES))


def _index_info(value, name):
    """fitted.faiss_index_: {bank: {"type": one of FAISS_INDEXES, "bytes": serialised size}}."""
    if not isinstance(value, dict) or set(value) - set(_BANKS):
        raise AnomalyError(f"{name}: expected an object keyed by {' / '.join(_BANKS)}")
    for bank, info in value.items():
        if not isinstance(info, dict) or set(info) != {"type", "bytes"}:
            raise AnomalyError(f"{name}.{bank}: expected {{type, bytes}}")
        v.one_of(*FAISS_INDEXES)(info["type"], f"{name}.{bank}.type")
        v.integer(0, 1 << 40)(info["bytes"], f"{name}.{bank}.bytes")
    return value


def _item_ids(index: torch.Tensor) -> np.ndarray:
    """(sample index, tile) of each row of a batch: tiles of one image come consecutively with
    its index repeated, so a row's tile is its place in that run (0 without tiling)."""
    idx = index.to(torch.int64).cpu().numpy()
    pos = np.arange(len(idx))
    starts = np.ones(len(idx), dtype=bool)
    starts[1:] = idx[1:] != idx[:-1]
    run_start = np.maximum.accumulate(np.where(starts, pos, 0))
    return np.stack([idx, pos - run_start], 1)


#: ``image_score="combined"``: every tenth training image among the first ``10 * _HELD_MAX`` is held
#: out of the banks to measure each evidence's scale (by global index: the same at any world size)
_HELD_MAX = 64
#: below this share of variance explained by position, images are a texture (the patch score):
#: each MNIST digit gives 0.54 to 0.69, the ten mixed under MNIST-C-like corruptions 0.16 to 0.49,
#: every texture photograph of the inspection set and a woven fabric under 0.06, vignetting
#: included; with 20 training images or fewer a texture may read higher and keeps both kinds
#: (``python benchmarks/position_share.py``)
TEXTURE_SHARE = 0.1
_HELD_MIN = 1  # with none held (fewer than 10 images) the combined score is the patch score
_LOO_MAX = 4096  # pooled bank rows whose leave-one-out distances measure the pooled evidence's scale


def _spread(moments: RunningMoments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each feature's mean and standard deviation from the running moments of vectors (rows of
    (N, D, 1)), and which features vary (a spread above the float rounding of their mean)."""
    mean = moments.mean[:, 0]
    std = moments.covariance()[:, 0, 0].clamp(min=0).sqrt() if moments.n > 1 else torch.zeros_like(mean)
    return mean, std, std > 1e-12 * (1 + mean.abs())


def _held_out(samples: np.ndarray) -> np.ndarray:
    return (samples % 10 == 9) & (samples < 10 * _HELD_MAX)


@register
class LatentDistance(Detector):
    """kNN or Mahalanobis distance to normal data in a feature space (PatchCore, PaDiM).

    Parameters
    ----------
    method : {"knn", "gaussian"}, default "knn"
        Distance to the nearest normal features, or Mahalanobis distance to their Gaussian.
    k : int, default 5
        Neighbours averaged by "knn" for pooled and vector scores (patches use the nearest one).
    image_score : {"combined", "patch", "pooled"}, default "combined"
        "patch": an image scores its most anomalous patch, the maximum of its map (PatchCore; one
        small defect decides). "pooled": distance of the globally averaged features (whole-image
        outliers, e.g. another digit). "combined": both, each as a surprise on its own scale
        (robust z of its log-distance on held-out training images), combined as the length of the
        softplus of both surprises (see the module's docstring); for textures (position explains
        under ``TEXTURE_SHARE`` of the images' variance) the patch score alone. Vectors (N, D) are
        scored as they are.
    coreset_ratio : float, default 0.1
        Share of the patch features seen that the patch bank keeps (PatchCore's sampling ratio).
    memory_size : int, default 10000
        Cap on the rows of each bank (patches, and pooled features).
    pool_factor : int, default 4
        ``fit`` gathers at most ``pool_factor * memory_size`` candidates (a uniform sample of all
        it sees) for the coreset to choose from.
    coreset : {"greedy", "random"}, default "greedy"
        How ``fit`` reduces a bank: farthest-point sampling on random projections, or at random.
    reweight : int, default 0
        PatchCore's re-weighting of the image score by how isolated the matched bank patch is,
        over this many bank neighbours (0 = off; the paper uses 9); the map is scaled alike.
    bank_dtype : {"float16", "float32"}, default "float16"
        Precision of the patch bank (half-size bundles; searches still run in float32). Pooled
        and vector banks stay float32.
    shrinkage : float, default 0.01
        Weight of the scaled identity mixed into each covariance ("gaussian").
    scaling : {"none", "feature"}, default "none"
        Vectors only. "feature": each feature standardised by its mean and standard deviation
        over the training data (a pass of its own before the bank is learned), so that features in
        their own units (a temperature beside a pressure in pascals, the columns of a table) weigh
        alike in every distance; the scale travels in the bundle. "none": the values as they are
        (embeddings, PCA components: features that share one unit). ``anomaly fit`` takes
        "feature" for a table's rows (``?rows=samples``).
    backbone : str or backbones.FeatureExtractor or None, default None
        Feature extractor (``anomaly backbones``); None = raw pixels. An extractor object (e.g.
        from :func:`anomalib_lite.training.pretrain.pretrain`) is used as it is.
    weights : str or path, default "imagenet"
        "imagenet", "random" or a weights file (see :func:`backbones.create`).
    layers : list of str or None, default None
        Backbone layers (None: the backbone's default).
    image_size : int or (int, int) or None, default None
        Resize images to this before the backbone.
    normalize : bool, default False
        L2-normalise each layer's pooled features (pooled scores).
    maps : bool, default True
        With ``image_score="pooled"``, also learn patch features so that ``score_map`` works.
    patch_size : int, default 7
        Raw-pixel patch side.
    map_dims : int, default 100
        Channels kept per position by "gaussian" maps (PaDiM).
    pretrain : {None, "segment", "transforms", "synthetic"}, default None
        Before learning the bank, pretrain the backbone (a name, with ``weights`` as the start) on
        the training images themselves, self-supervised (:func:`anomalib_lite.training.pretrain.pretrain`):
        "segment" learns to find synthesised local changes of any kind patch by patch (DRAEM's
        dense task, :data:`~anomalib_lite.training.pretrain.DENSE_RECIPE`), so that the patch features see
        local irregularities; the offline route for images with no ImageNet weights. Needs data
        with random access (an array or a data spec); the pretrained backbone travels in the bundle.
    pretrain_steps : int, default 250
        Batches of pretraining (16 images, each also with a synthesised change): a budget that
        does not depend on the data's size or the machine's speed, so a fit is reproducible.
    pretrain_time : float or None, default None
        An optional cap on pretraining, in seconds (machine-dependent: results then vary).
    search : {"torch", "faiss", "faiss:flat", "faiss:ivfflat", "faiss:ivfpq", "faiss:hnsw"}, default "torch"
        Exact search by chunked matrix products, or FAISS (the ``faiss`` extra): ``"faiss"`` picks
        the index by bank size (flat up to 10^5 rows, IVF-Flat up to 2 x 10^6, IVF-PQ beyond;
        :func:`anomalib_lite.components.memory.choose_faiss_index`), ``"faiss:<type>"`` names it (banks under
        1000 rows stay flat). The index is trained at ``fit`` and saved in the bundle (FAISS's own
        serialisation); candidates are re-ranked by exact distance; on the GPU when FAISS has CUDA.
    batch_size : int, default 256
    contamination, device, seed, verbose
        The run parameters every detector has (:class:`~anomalib_lite.detectors.base.Detector`).

    Attributes
    ----------
    extractor_ : backbones.FeatureExtractor or None
        The frozen feature extractor (None for raw pixels).
    bank_ : anomalib_lite.state.Buffers
        What was learned: ``memory`` and ``patch_memory`` (knn), or ``mean``, ``scatter``,
        ``patch_mean``, ``patch_scatter`` and ``patch_channels`` (gaussian).
    patches_seen_ : int
        Patch features seen by ``fit`` (the patch bank keeps ``coreset_ratio`` of them).
    evidence_scale_ : list or None
        ``image_score="combined"``: [[median, scale], ...] of the log patch and log pooled
        distances of the held-out training images (None with fewer than 10 training images:
        the patch score alone; and for textures).
    position_share_ : float or None
        ``image_score="combined"``: the share of the training images' variance that position
        explains (:class:`~anomalib_lite.components.streaming.PositionShare`; 0.54 to 0.69 for MNIST
        digits, under 0.06 for texture photographs); below ``TEXTURE_SHARE`` the images are a
        texture and score by their patch evidence alone.
    threshold_, fpr_, calibration_scores_ : set by :meth:`calibrate`.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import LatentDistance
    >>> rng = np.random.default_rng(0)
    >>> normal = rng.normal(size=(200, 8)).astype("float32")
    >>> det = LatentDistance(device="cpu").fit(normal[:150]).calibrate(normal[150:], fpr=0.1)
    >>> outliers = normal[:3] + 6
    >>> det.predict(outliers).tolist()
    [1, 1, 1]
    >>> bool(det.decision_function(outliers).min() > det.decision_function(normal[150:]).max())
    True
    """

    capabilities = Capabilities(exports_onnx=True, has_maps=True)
    command = "latent"  # `anomaly fit latent`
    cli_examples = ('--data data/brick/train --backbone resnet18 --weights random -o brick.anomaly',
                    '--data "mnist:train?classes=7" -o digit7.anomaly',)
    quick_params = {"memory_size": 400}

    input_kind = "any"
    _fit_stage = "features"
    _param_checks = {
        "method": v.one_of(*_METHODS),
        "k": v.integer(1, 10_000),
        "image_score": v.one_of(*_IMAGE_SCORES),
        "coreset_ratio": v.number(0, 1, lo_open=True),
        "memory_size": v.integer(1, _MAX_ROWS),
        "pool_factor": v.integer(1, 100),
        "coreset": v.one_of(*_CORESETS),
        "reweight": v.integer(0, 1000),
        "bank_dtype": v.one_of(*_DTYPES),
        "shrinkage": v.number(0, 1),
        "scaling": v.one_of("none", "feature"),
        **BACKBONE_CHECKS,
        "normalize": v.boolean(),
        "maps": v.boolean(),
        "patch_size": v.integer(1, 64),
        "map_dims": v.integer(1, 4096),
        "pretrain": v.none_or(v.one_of("segment", "transforms", "synthetic")),
        "pretrain_steps": v.integer(1, 10_000_000),
        "pretrain_time": v.none_or(v.number(1, 7 * 86400)),
        "search": v.one_of(*_SEARCHES),
        **RUN_CHECKS,
    }
    _fitted_checks = {
        "backbone_": v.none_or(lambda cfg, name: check_backbone_config(cfg, name)),
        "rows_seen_": v.integer(0, 1 << 62),
        "patches_seen_": v.integer(0, 1 << 62),
        "map_grid_": v.none_or(v.list_of(v.integer(1, 4096), 2, 2)),
        "bank_rows_": v.integer(0, _MAX_ROWS),
        "patch_bank_rows_": v.integer(0, _MAX_ROWS),
        "moments_n_": v.integer(0, 1 << 62),
        "patch_moments_n_": v.integer(0, 1 << 62),
        "faiss_index_": v.none_or(_index_info),
        "evidence_scale_": v.none_or(v.list_of(v.list_of(v.number(-1e6, 1e6), 2, 2), 3, 2)),
        "position_share_": v.none_or(v.number(0, 1)),
    }
    _fitted_optional = ("position_share_",)  # bundles before it: no texture test was made
    _params_added = {"scaling": "none"}  # bundles before it: vectors as they are
    _learned = ("extractor_", "bank_")

    def __init__(
        self,
        method: str = "knn",
        k: int = 5,
        image_score: str = "combined",
        coreset_ratio: float = 0.1,
        memory_size: int = 10000,
        pool_factor: int = 4,
        coreset: str = "greedy",
        reweight: int = 0,
        bank_dtype: str = "float16",
        shrinkage: float = 0.01,
        scaling: str = "none",
        backbone=None,
        weights: str = "imagenet",
        layers: list[str] | None = None,
        image_size: int | None = None,
        normalize: bool = False,
        maps: bool = True,
        patch_size: int = 7,
        map_dims: int = 100,
        pretrain: str | None = None,
        pretrain_steps: int = 250,
        pretrain_time: float | None = None,
        search: str = "torch",
        batch_size: int = 256,
        contamination: float | None = None,
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
        self.scaling = scaling
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.image_size = image_size
        self.normalize = normalize
        self.maps = maps
        self.patch_size = patch_size
        self.map_dims = map_dims
        self.pretrain = pretrain
        self.pretrain_steps = pretrain_steps
        self.pretrain_time = pretrain_time
        self.search = search
        self.batch_size = batch_size
        self.contamination = contamination
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def _check_more(self) -> None:
        if self.memory_size < self.k:
            raise AnomalyError(f"memory_size={self.memory_size} must be at least k={self.k}")
        if self.reweight and self.method != "knn":
            raise AnomalyError("reweight: PatchCore's re-weighting applies to method='knn'")
        if self.pretrain is not None and not isinstance(self.backbone, str):
            raise AnomalyError("pretrain: needs a backbone name to pretrain (e.g. backbone='resnet18')")
        if self.scaling != "none" and self.backbone is not None:
            raise AnomalyError(f"scaling='{self.scaling}': applies to vectors (raw values, backbone=None)")

    def _start(self, data) -> None:
        super()._start(data)
        if self.scaling == "feature":
            self._measure_scale(data)

    def _measure_scale(self, data) -> None:
        """``scaling="feature"``: each feature's mean and standard deviation over the training
        data, in a pass of their own (a feature that does not vary keeps its unit)."""
        if isinstance(data, Iterator):
            raise AnomalyError("scaling='feature' reads the training data twice (its spread, then the bank); give "
                               "an array, a Dataset, a DataLoader or a data spec rather than a one-shot iterator")
        moments = RunningMoments()
        for batch in self._iter_data(data, self.batch_size):
            if batch.x.ndim != 2:
                raise AnomalyError(f"scaling='feature': applies to vectors (N, D), got samples shaped "
                                   f"{tuple(batch.x.shape[1:])}")
            moments.update(batch.x.detach().cpu().double()[:, :, None])
        mean, std, varies = _spread(moments)
        std = torch.where(varies, std, torch.ones_like(std))
        self.bank_.set("feature_mean", mean.float())
        self.bank_.set("feature_std", std.float())
        self.featurizer_.standardise = (self.bank_.feature_mean, self.bank_.feature_std)

    def partial_fit(self, X, y=None) -> LatentDistance:
        if not self._is_fitted() and self.scaling == "feature":
            raise AnomalyError("scaling='feature' measures each feature's spread on all the training data: start "
                               "with fit (partial_fit after it keeps that scale)")
        return super().partial_fit(X, y)

    #: named recipes of the literature, as parameters of this one class (:meth:`preset`)
    PRESETS = {
        # PatchCore (Roth et al. 2022): kNN to a coreset of layer2+3 patch features, worst patch
        "patchcore": {"method": "knn", "backbone": "wide_resnet50_2", "weights": "imagenet",
                      "layers": ["layer2", "layer3"], "image_score": "patch"},
        # PaDiM (Defard et al. 2021): a Gaussian per patch position on 100 random channels of layer1-3
        "padim": {"method": "gaussian", "backbone": "resnet18", "weights": "imagenet",
                  "layers": ["layer1", "layer2", "layer3"], "image_score": "patch", "map_dims": 100},
    }

    @classmethod
    def preset(cls, name: str, **params) -> LatentDistance:
        """A detector with a named recipe's parameters (:data:`PRESETS`), ``params`` overriding
        them: ``LatentDistance.preset("padim", weights="random")``."""
        if name not in cls.PRESETS:
            raise AnomalyError(f"preset '{str(name)[:40]}': unknown; presets are: {', '.join(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **params})

    def fit(self, X, y=None) -> LatentDistance:
        """Learn the normal features of ``X``; with ``pretrain``, first pretrain the backbone on
        ``X`` itself (self-supervised, ``pretrain_steps`` batches), then learn on its features."""
        self._pretrained = self._pretext = None
        if self.pretrain is not None:
            from ..data.batches import training_data
            from ..training.pretrain import DENSE_RECIPE, pretrain

            self._check_params()
            recipe = DENSE_RECIPE if self.pretrain == "segment" else {"task": self.pretrain, "batch_size": 16}
            n = len(training_data(X, batch_size=recipe["batch_size"]))
            epochs = max(1, math.ceil(self.pretrain_steps / max(1, math.ceil(n / recipe["batch_size"]))))
            res = pretrain(
                self.backbone, X, weights=self.weights, layers=self.layers, image_size=self.image_size,
                epochs=epochs, max_time=self.pretrain_time, device=self.device, seed=self.seed,
                verbose=self.verbose, **recipe,
            )
            self._pretrained, self._pretext = res.extractor, res.model  # the pretext model: for studies
        return super().fit(X, y)

    def _fold_clone(self) -> LatentDistance:
        """Cross-fitting's clones reuse the pretrained backbone (pretraining five more times would
        cost five budgets); each still learns its own bank without its fold."""
        part = super()._fold_clone()
        if self.pretrain is not None and self.extractor_ is not None:
            part.set_params(backbone=self.extractor_, pretrain=None)
        return part

    def _learns_patches(self) -> bool:
        return self.image_score != "pooled" or self.maps

    def _maps_available(self) -> bool:
        return self._learns_patches()

    def _onnx_graph(self):
        from ..components.onnx_graphs import LatentGraph

        return LatentGraph(self)

    def _keeps_pooled(self, image: bool) -> bool:
        """Whether a pooled (or vector) bank is learned: always for vectors; for images unless
        they score by patches (``image_score="patch"``, or a texture)."""
        return not image or (self.image_score != "patch" and not self._texture())

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        pretrained = getattr(self, "_pretrained", None)
        self.extractor_ = pretrained if pretrained is not None else make_extractor(
            self.backbone, self.weights, self.layers, self.image_size, self.device_, self.seed)
        self.backbone_ = None if self.extractor_ is None else self.extractor_.config()
        self.featurizer_ = Featurizer(extractor=self.extractor_, patch_size=self.patch_size,
                                      device=self.device_, normalize=self.normalize)
        self._method = METHODS[self.method](self)
        self._method.reset()
        self.bank_ = Buffers()
        self.patch_channels_ = None
        self.faiss_index_ = None
        self.map_grid_ = None
        self.rows_seen_ = self.patches_seen_ = 0
        self._columns = RunningMoments()  # vectors: each feature's spread (a position of one value each)
        self.evidence_scale_ = self.position_share_ = None
        self._position = PositionShare()
        self._stats = RunningMoments()  # of the images' global statistics (not the held ones)
        self._context = None  # set_context: a batch's reference images, for scoring only
        # (images, ids) held out of the banks to measure the evidence scales
        self._held: list[tuple[torch.Tensor, np.ndarray]] = []
        self._sync_counts()

    def _chunks(self, x: torch.Tensor):
        """Slices of a batch small enough that their patch features and maps stay bounded."""
        step = max(1, _MAP_PIXELS // max(1, x.shape[-2] * x.shape[-1]))
        for i in range(0, len(x), step):
            yield x[i : i + step]

    def _update(self, batch: Batch, fitting: bool) -> None:
        x = batch.x
        self._method.drop_caches()
        if not fitting:  # partial_fit (from scratch: sampling as after a fit)
            self._method.start_online()
        items = _item_ids(batch.index)  # (sample, tile) of each row of the batch
        if fitting and x.ndim == 2 and self.scaling == "none":  # (for the spreads warning; "feature" measured them)
            self._columns.update(x.detach().cpu()[:, :, None])
        if fitting and x.ndim == 4 and self.image_score == "combined":
            self._position.update(x)
            held = _held_out(items[:, 0])
            if held.any():  # measured against the banks at the end, never in them (unless a texture)
                keep = torch.as_tensor(~held)
                self._held.append((x[torch.as_tensor(held)].cpu(), items[held]))
                x, items = x[keep.to(x.device)], items[~held]
                if not len(x):
                    return
            if min(x.shape[-2:]) >= STATS_MIN_SIDE:
                self._stats.update(image_stats(x).cpu().double())  # float64 on the CPU (MPS has none)
        self._offer(x, items, fitting)
        if not fitting:
            self._sync_bank()

    def _offer(self, x: torch.Tensor, items: np.ndarray, fitting: bool) -> None:
        """Offer a batch's pooled and patch features to the banks."""
        if self._keeps_pooled(x.ndim == 4):
            emb = self.featurizer_.embed(x)
            self.rows_seen_ += len(emb)
            self._method.add_pooled(emb, items, fitting)
        if x.ndim == 4 and self._learns_patches():
            start = 0
            for part in self._chunks(x):
                self._update_patches(self.featurizer_.patches(part), items[start : start + len(part)], fitting)
                start += len(part)

    def _update_patches(self, p: torch.Tensor, items: np.ndarray, fitting: bool) -> None:
        n, d, h, w = p.shape
        self.map_grid_ = [h, w]
        self.patches_seen_ += n * h * w
        self._method.add_patches(p, items, fitting)

    def _texture(self) -> bool:
        """Whether ``image_score="combined"`` found the training images to be a texture."""
        return self.position_share_ is not None and self.position_share_ < TEXTURE_SHARE

    def _check_scales(self) -> None:
        """Vectors: one warning when the features' spreads differ over 100-fold. A distance adds
        squared differences, so the widest feature decides it and a change in a narrow one (a
        temperature beside a pressure in pascals) goes unseen; standardising is the fix, unless the
        units are meant to weigh so (PCA components)."""
        if self._columns.n < 2:  # (none with scaling="feature": it standardises them)
            return
        _, std, varies = _spread(self._columns)
        spread = std[varies]
        if len(spread) >= 2 and float(spread.max() / spread.min()) > 100:
            wide, narrow = int(std.argmax()), int(torch.where(std == spread.min())[0][0])
            names = (self.data_info_ or {}).get("columns")  # a table's or a frame's columns, by name
            name = (lambda i: f"column '{names[i]}'") if names and len(names) == len(std) else (lambda i: f"feature {i}")
            warnings.warn(
                f"data: the features' spreads differ {float(spread.max() / spread.min()):.0f}-fold ({name(wide)}: "
                f"std {float(std[wide]):.3g}; {name(narrow)}: {float(std[narrow]):.3g}); distances are decided by "
                "the widest, so a change in a narrow one goes unseen: standardise them (scaling='feature', "
                "`--scaling feature`) unless their units are meant to weigh so",
                UserWarning, stacklevel=3)

    def _finish_fit(self) -> None:
        self._check_scales()
        sharded = self._shard() is not None
        if self.image_score == "combined":
            self.position_share_ = self._position.value()
            if self._texture():  # the patch score alone: the images held for the scales join the
                held, self._held = self._held, []  # patch bank, the pooled one is dropped
                self._method.drop_pooled()
                self.rows_seen_ = 0
                for x, items in held:
                    self._offer(x.to(self.device_), items, True)
        seen, patches_seen = self._method.seen()
        if sharded:  # what every process saw, for the bank sizes and the bundle's counts
            counts = distributed.all_sum([seen, patches_seen, self.rows_seen_, self.patches_seen_],
                                         "counting the features")
            seen, patches_seen, self.rows_seen_, self.patches_seen_ = (int(c) for c in counts)
        self._method.finish(sharded, seen, patches_seen)
        self._sync_bank()
        self._method.check_fitted()
        self._measure_evidence()

    def _measure_evidence(self) -> None:
        """``image_score="combined"``: each evidence's scale, on as many normal images as it can be
        measured on without bias. The patch evidence (a map's maximum) on the images held out of
        the banks; the pooled evidence by leave-one-out over the pooled bank itself when it holds
        every image seen (one row per image: exact, and many more images than the held ones, so
        an uninformative kind cannot get a falsely narrow scale), else on the held images too.
        Every process measures its own held images, the values are gathered: one scale at any
        world size."""
        held, self._held = [x for x, _ in self._held], []
        if self.image_score != "combined" or self._texture():
            return  # a texture: the patch score (evidence_scale_ stays None)
        stats = self._stats.merged("measuring the images' statistics")
        if stats.n >= 2:
            mean = stats.mean.double().cpu()
            self.bank_.set("stats_mean", mean)
            self.bank_.set("stats_precision", standardised_precision(mean, stats.covariance().double().cpu(),
                                                                     self.shrinkage))
        x = torch.cat(held) if held else None
        values = torch.empty((0, 3 if stats.n >= 2 else 2), dtype=torch.float64)
        if x is not None:
            with torch.inference_mode():
                values = torch.stack([torch.cat(v) for v in zip(*(self._evidence_batch(x[i:i + 64])
                                                                   for i in range(0, len(x), 64)))], 1).cpu().double()
        if self._shard() is not None:
            values = distributed.gather_cat(values, "gathering the evidence scales")
        if len(values) < _HELD_MIN or not self._method.pooled_ready():
            self.evidence_scale_ = None
            self.bank_.set("stats_mean", None)
            self.bank_.set("stats_precision", None)
            return
        with torch.inference_mode():
            loo = self._method.leave_one_out(_LOO_MAX)
        pooled = values[:, 1] if loo is None else loo.double()
        self.evidence_scale_ = [log_scale(values[:, 0]), log_scale(pooled), *(log_scale(c) for c in values.T[2:])]

    def _sync_bank(self) -> None:
        """Write what the method holds (banks, running moments) into ``bank_`` (the learned state)."""
        self._method.sync()
        self._sync_counts()

    def _sync_counts(self) -> None:
        memory, patch = self.bank_.get("memory"), self.bank_.get("patch_memory")
        self.bank_rows_ = 0 if memory is None else len(memory)
        self.patch_bank_rows_ = 0 if patch is None else len(patch)
        self.moments_n_, self.patch_moments_n_ = self._method.moments_counts()

    # ------------------------------------------------------------------ the learned state
    def _build_learned(self, device) -> dict:
        """Skeletons: the extractor the bundle describes and the bank's buffers, whose shapes
        follow from the parameters, the input shape and the fitted counts."""
        if self.backbone_ is None and self.backbone is not None:
            raise AnomalyError("fitted.backbone_: missing for a detector with a backbone")
        meta = str(device) == "meta"
        ext = None if self.backbone_ is None else extractor_from_config(
            self.backbone_, "cpu" if meta else device, weights=not meta)
        feat = Featurizer(extractor=ext, patch_size=self.patch_size, device="cpu", normalize=self.normalize)
        shape = tuple(self.input_shape_)
        image = len(shape) == 3
        for name in ("bank_rows_", "patch_bank_rows_"):
            if getattr(self, name) > self.memory_size:
                raise AnomalyError(f"fitted.{name}={getattr(self, name)}: more rows than memory_size={self.memory_size}")
        pooled = self._keeps_pooled(image)  # what a bank may hold
        pooled_scores = not image or self.image_score == "pooled" or (
            self.image_score == "combined" and self.evidence_scale_ is not None)
        patches = image and self._learns_patches()
        self._method = METHODS[self.method](self)  # a bundle's detector: its method, which _after_load restores
        self._check_counts(pooled_scores, image and self.image_score != "pooled")
        d, dp = feat.embed_dim(shape), feat.patch_dim(shape) if image else 0
        spec = self._method.skeleton(pooled, patches, d, dp)
        if self.scaling == "feature":
            if image:
                raise AnomalyError(f"scaling='feature': applies to vectors, but the input is {list(shape)}")
            spec.update(feature_mean=((d,), torch.float32), feature_std=((d,), torch.float32))
        if self._has_stats():
            if not image or min(shape[1:]) < STATS_MIN_SIDE:
                raise AnomalyError(f"fitted.evidence_scale_: a scale for image statistics, but the input is {list(shape)}")
            k = 2 * shape[0] + 2
            spec.update(stats_mean=((k,), torch.float64), stats_precision=((k, k), torch.float64))
        return {"extractor_": ext, "bank_": Buffers.skeleton(spec, device)}

    def _has_stats(self) -> bool:
        """Whether the combined score counts the images' global statistics (fitted since they were
        added: three evidence scales)."""
        return self.evidence_scale_ is not None and len(self.evidence_scale_) == 3

    def _check_counts(self, pooled: bool, patch_scores: bool) -> None:
        """The fitted counts must give scoring what it needs (what ``fit`` guarantees): a bank
        of at least k rows or a Gaussian of at least 2 samples for pooled (and vector) scores,
        a patch bank or per-position Gaussians for patch scores."""
        def need(name: str, low: int, why: str) -> None:
            if getattr(self, name) < low:
                raise AnomalyError(f"fitted.{name}={getattr(self, name)}: {why}")

        for name in ("moments_n_", "patch_moments_n_"):
            if getattr(self, name) == 1:
                need(name, 2, "a Gaussian needs at least 2 samples")
        self._method.check_counts(need, pooled, patch_scores)

    def _after_load(self) -> None:
        if self.extractor_ is not None:
            self.extractor_.eval()
        self.featurizer_ = Featurizer(extractor=self.extractor_, patch_size=self.patch_size,
                                      device=self.device_, normalize=self.normalize)
        if self.bank_.get("feature_mean") is not None:
            self.featurizer_.standardise = (self.bank_.feature_mean, self.bank_.feature_std)
        self._method.restore()

    @property
    def memory_(self) -> torch.Tensor | None:
        """The bank of pooled (or vector) features ("knn"), rows x features."""
        return self.bank_.get("memory")

    @property
    def patch_memory_(self) -> torch.Tensor | None:
        """The bank of patch features ("knn"), rows x features, in ``bank_dtype``."""
        return self.bank_.get("patch_memory")

    def summary(self) -> str:
        """The banks' sizes: e.g. 'patch bank 18,432 rows of 184,320 patches seen (float16)'."""
        parts = []
        memory, patch = self.bank_.get("memory"), self.bank_.get("patch_memory")
        if memory is not None:
            parts.append(f"bank {len(memory):,} rows of {self.rows_seen_:,} seen")
        if patch is not None:
            parts.append(f"patch bank {len(patch):,} rows of {self.patches_seen_:,} patches seen "
                         f"({str(patch.dtype).replace('torch.', '')})")
        if self.image_score == "combined" and self.position_share_ is not None:
            kind = "patch (a texture" if self._texture() else (
                "combined: patches, pooled features" + (" and image statistics" if self._has_stats() else "")
                + " (aligned objects")
            parts.append(f"image score {kind}: position explains {self.position_share_:.1%} of the variance)")
        return "; ".join(parts + self._method.summary())

    # ------------------------------------------------------------------ scoring
    def decision_function(self, X, leave_one_out: bool = False):
        """Anomaly scores per sample; ``leave_one_out`` skips a sample's own entry in the bank
        ("knn"), for scoring the training data itself."""
        self._exclude_self = leave_one_out
        try:
            return super().decision_function(X)
        finally:
            self._exclude_self = False

    def _in_sample_scores(self, X):
        return self.decision_function(X, leave_one_out=True)

    @property
    def context_images(self) -> int:
        """Reference images of the context set by :meth:`set_context` (0: none)."""
        context = getattr(self, "_context", None)
        return 0 if context is None else len(context)

    def set_context(self, X, images: int = CONTEXT_IMAGES, seed: int = 0) -> LatentDistance:
        """Score images from now on also against ``images`` images drawn from ``X``, the batch
        about to be scored (mutual scoring, :mod:`anomalib_lite.components.context`): a patch is
        normal when the bank or the other images of its batch explain it, so a drift that the
        whole batch shares (a new lot, another part of the material, a dimmer or blurred camera:
        the image statistics are compared with the batch's too) is not flagged. Scores never
        rise, so a calibrated threshold keeps its false-positive bound. ``images=0`` turns it
        off. Images only, ``method="knn"``, no tiling; not saved in bundles."""
        self._require_fitted()
        images = v.integer(0, 10_000)(images, "context: images")
        if images == 0:
            self._context = None
            return self
        from ..data.batches import Batch, _random_access

        why = ("method='gaussian' (Mahalanobis distances are not comparable with distances between images)"
               if self.method != "knn" else "maps=False" if not self._learns_patches()
               else "tiled images" if (getattr(X, "tiling", None) or self.tiling_) is not None else None)
        if why:
            raise AnomalyError(f"context: mutual scoring needs patch features of whole images, not {why}")
        samples = _random_access(X, "context")
        if samples is None:
            raise AnomalyError("context: needs data it can draw images from (an array, a folder, a data spec)")
        if len(samples) < 2:
            raise AnomalyError(f"context: needs at least 2 images to compare, got {len(samples)}")
        idx = np.sort(np.random.default_rng(seed).choice(len(samples), min(images, len(samples)), replace=False))
        x, _, index = samples[idx]
        self._check_input(Batch(x, None, index))
        if x.ndim != 4:
            raise AnomalyError("context: mutual scoring compares images, got vectors")
        with torch.inference_mode():
            stats = image_stats(x).cpu() if self.bank_.get("stats_mean") is not None else None
            self._context = BatchContext(x, torch.cat([self.featurizer_.patches(part) for part in self._chunks(x)]),
                                         stats=stats)
        return self

    def _evidence_batch(self, x: torch.Tensor, maps: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Each kind of evidence of images: the map's maximum, the pooled distance and, once
        measured (at the end of ``fit``), the distance of the image's statistics."""
        if maps is None:
            maps = torch.cat([self._maps(part) for part in self._chunks(x)])
        out = (maps.flatten(1).amax(1), self._pooled_batch(x))
        mean, precision = self.bank_.get("stats_mean"), self.bank_.get("stats_precision")
        if mean is None:
            return out
        stats = image_stats(x).to(mean)
        dist = mahalanobis(stats, mean, precision)
        context = getattr(self, "_context", None)
        if context is not None and context.stats is not None:  # or what the batch's images share
            dist = torch.minimum(dist, mahalanobis(stats, context.stats_centres(x).to(mean), precision))
        return (*out, dist.to(out[1]))  # the device and dtype of the other kinds

    def _combine(self, *evidence: torch.Tensor) -> torch.Tensor:
        """The length of the (softplus-positive) surprises of the kinds of evidence (called only
        once their scales were measured: see ``_patch_scored``)."""
        return combined(*(surprise(v, s) for v, s in zip(evidence, self.evidence_scale_)))

    def evidence(self, X) -> dict[str, np.ndarray]:
        """Each kind of evidence per image as a surprise on its own scale (``image_score="combined"``):
        ``{"patch": z, "pooled": z, "stats": z, "decided": "patch"|"pooled"|"stats", "score": the
        combined score}`` (the largest surprise decided; "stats" only for detectors fitted since the
        image statistics count), in one scoring pass."""
        self._require_fitted()
        if self.image_score != "combined" or self.evidence_scale_ is None:
            why = (f"these images are a texture (position explains {self.position_share_:.1%} of their variance), "
                   "scored by their patch evidence alone" if self.image_score == "combined" and self._texture()
                   else "it needs image_score='combined' fitted on at least 10 images")
            raise AnomalyError(f"evidence: one kind of evidence only: {why}")
        out = []
        with torch.inference_mode():
            for b, tiled in self._batches(X, "evidence"):
                z = torch.stack([surprise(v, s) for v, s in zip(self._evidence_batch(b.x), self.evidence_scale_)], 1)
                out.append(z if tiled is None else z.reshape(-1, tiled[0], z.shape[1]).amax(1))
        z = torch.cat(out)
        score = combined(*z.T).numpy()
        z = z.numpy()
        names = ["patch", "pooled", "stats"][: z.shape[1]]
        return {**dict(zip(names, z.T)), "decided": np.array(names)[z.argmax(1)], "score": score}

    def _patch_scored(self) -> bool:
        """Image scores are the maps' maxima: image_score='patch', or 'combined' fitted on too few
        images to measure the evidence scales (then the pooled evidence is never computed)."""
        return self.image_score == "patch" or (self.image_score == "combined" and self.evidence_scale_ is None)

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and self._patch_scored():
            return torch.cat([self._maps(part).flatten(1).amax(1) for part in self._chunks(x)])
        if x.ndim == 4 and self.image_score == "combined":
            return self._combine(*self._evidence_batch(x))
        return self._pooled_batch(x)

    def _pooled_batch(self, x: torch.Tensor) -> torch.Tensor:
        """Distance of each sample's pooled features (vectors: the sample itself) to the normal ones."""
        return self._method.pooled_distance(self.featurizer_.embed(x), getattr(self, "_exclude_self", False))

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise AnomalyError("score_map: needs images (N,C,H,W), got vectors")
        if not self._learns_patches():
            raise AnomalyError("score_map: this LatentDistance was fitted with maps=False")
        return torch.cat([self._maps(part) for part in self._chunks(x)])

    def _score_and_map_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self._score_map_batch(x)
        if self._patch_scored():
            return maps.flatten(1).amax(1), maps  # the same pass, so they always agree
        if self.image_score == "combined":
            return self._combine(*self._evidence_batch(x, maps)), maps
        return self._score_batch(x), maps

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel maps (n, H, W): patch distances, upsampled, blurred, and re-weighted."""
        p = self.featurizer_.patches(x)
        n, _, h, w = p.shape
        dist, weight = self._method.patch_distance(p, getattr(self, "_exclude_self", False))
        context = getattr(self, "_context", None)
        if context is not None:
            dist = torch.minimum(dist, context.distances(x, p).to(dist.dtype))
        return patch_maps(dist.reshape(n, h, w), tuple(x.shape[-2:]), weight)
