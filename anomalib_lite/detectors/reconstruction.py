"""Reconstruction: anomaly = what an autoencoder trained on normal data cannot reproduce.

A convolutional autoencoder with a dense bottleneck learns to reconstruct normal images (or the
frozen backbone feature maps of normal images, ``backbone=...``). The score is the
reconstruction error (``metric``: mean squared error, 1 - SSIM, or mean absolute error; on
feature maps the error is in feature space), ``score_map`` the per-pixel error at input
resolution. ``mc_samples > 1`` with ``dropout > 0`` averages several stochastic passes
(MC-dropout); :meth:`score_spread` gives their spread. Training uses the project's loop
(:func:`anomalib_lite.training.loop.fit_model`) with an optional ``augment`` pipeline; ``fit`` reads
its data batch by batch (feature statistics in a streaming pass), never all at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import validate as v
from .base import RUN_CHECKS, Capabilities, register
from ..data.batches import Batch
from ..errors import AnomalyError
from ..components.features import (
    BACKBONE_CHECKS,
    Featurizer,
    check_backbone_config,
    extractor_from_config,
    make_extractor,
)
from ..components.nets import ConvAutoencoder
from ..numeric import error_map, ssim_map
from ..state import Buffers
from ..components.streaming import RunningMoments
from ..training.loop import TRAIN_CHECKS, augment_pipeline, check_augment, history
from .trained import TrainedDetector

__all__ = ["Reconstruction", "error_map", "ssim_map"]

_METRICS = ("mse", "ssim", "l1")


@register
class Reconstruction(TrainedDetector):
    """Convolutional autoencoder trained on normal images; score = reconstruction error.

    Parameters
    ----------
    latent_dim : int, default 16
        Bottleneck size. The defaults (16, width 16, 20 epochs) are the best of a grid on MNIST digit
        8's dev half within 150 CPU seconds (``benchmarks/reconstruction_defaults.py``): a wide
        bottleneck (32) learns to reproduce other digits too (79 vs 88 ROC-AUC on digit 8).
    width : int, default 16
        Channels of the first stage (doubled at each of ``levels`` stride-2 stages).
    levels : int, default 2
    metric : {"mse", "ssim", "l1"}, default "mse"
        Reconstruction error (1 - SSIM compares images: pixels only).
    dropout : float, default 0.0
    mc_samples : int, default 1
        Stochastic passes at scoring time (MC-dropout; needs ``dropout > 0``).
    backbone, weights, layers, image_size
        Reconstruct the frozen feature maps of this backbone instead of pixels (None: pixels).
    augment : dict, str, augment.Pipeline or None, default None
        Augmentation of training batches (a config, a YAML/JSON path, or a pipeline).
    epochs : int, default 20
        Passes over the training images (at most: early stopping and ``max_time`` end it sooner;
        ``$ANOMALY_MAX_EPOCHS`` caps it).
    batch_size : int, default 128
        Images per optimisation step.
    lr : float, default 1e-3
        Learning rate (AdamW).
    weight_decay : float, default 1e-5
        AdamW's weight decay.
    patience : int or None, default 5
        Epochs without a better loss on a 10 % held-out share before training stops (None: all
        epochs).
    max_time : float or None, default None
        Training time budget in seconds (training stops before the step that would cross it).
    num_workers : int, default 2
        DataLoader processes that decode lazy data (image folders) while training.
    partial_fit_epochs : int, default 1
        Passes over each minibatch given to ``partial_fit``.
    contamination, device, seed, verbose
        The run parameters every detector has (:class:`~anomalib_lite.detectors.base.Detector`).

    Attributes
    ----------
    model_ : anomalib_lite.components.nets.ConvAutoencoder
    extractor_ : backbones.FeatureExtractor or None
    norm_ : anomalib_lite.state.Buffers
        Per-channel ``mean`` and ``std`` of the backbone's feature maps (empty for pixels).
    history_ : anomalib_lite.training.loop.TrainResult
        Losses per epoch, best epoch, why training stopped.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import Reconstruction
    >>> rng = np.random.default_rng(0)
    >>> normal = np.zeros((64, 1, 8, 8), "float32"); normal[:, :, 2:6, 2:6] = 1
    >>> det = Reconstruction(latent_dim=4, width=4, epochs=3, device="cpu").fit(normal)
    >>> odd = normal[:4].copy(); odd[:, :, :2, :2] = 1
    >>> bool(det.decision_function(odd).mean() > det.decision_function(normal[:4]).mean())
    True
    """

    capabilities = Capabilities(exports_onnx=True, has_maps=True)
    command = "reconstruction"  # `anomaly fit reconstruction`
    cli_examples = ('--data "mnist:train?classes=7" --augment aug.yaml -o ae7.anomaly',)
    quick_params = {"latent_dim": 4, "width": 4, "epochs": 1}
    _train_desc = "autoencoder"

    input_kind = "image"
    _param_checks = {
        "latent_dim": v.integer(1, 1 << 16),
        "width": v.integer(1, 4096),
        "levels": v.integer(1, 8),
        "metric": v.one_of(*_METRICS),
        "dropout": v.number(0, 1, hi_open=True),
        "mc_samples": v.integer(1, 1000),
        **BACKBONE_CHECKS,
        "augment": check_augment,
        **TRAIN_CHECKS,
        "partial_fit_epochs": v.integer(1, 1000),
        **RUN_CHECKS,
    }
    _fitted_checks = {
        "backbone_": v.none_or(lambda cfg, name: check_backbone_config(cfg, name)),
        "model_input_shape_": v.shape(3, 1 << 14, 1 << 26, min_dims=3),
        "history_": v.none_or(history),
    }
    _learned = ("extractor_", "model_", "norm_")

    def __init__(
        self,
        latent_dim: int = 16,
        width: int = 16,
        levels: int = 2,
        metric: str = "mse",
        dropout: float = 0.0,
        mc_samples: int = 1,
        backbone: str | None = None,
        weights: str = "imagenet",
        layers: list[str] | None = None,
        image_size: int | None = None,
        augment=None,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        patience: int | None = 5,
        max_time: float | None = None,
        num_workers: int = 2,
        partial_fit_epochs: int = 1,
        contamination: float | None = None,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.latent_dim = latent_dim
        self.width = width
        self.levels = levels
        self.metric = metric
        self.dropout = dropout
        self.mc_samples = mc_samples
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.image_size = image_size
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.max_time = max_time
        self.num_workers = num_workers
        self.partial_fit_epochs = partial_fit_epochs
        self.contamination = contamination
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _check_more(self) -> None:
        if self.metric == "ssim" and self.backbone is not None:
            raise AnomalyError("metric='ssim' compares images; with a backbone use 'mse' or 'l1'")
        if self.mc_samples > 1 and self.dropout == 0:
            raise AnomalyError("mc_samples > 1 needs dropout > 0 (MC-dropout)")
        super()._check_more()

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self._pipeline = augment_pipeline(self.augment)
        self.extractor_ = make_extractor(self.backbone, self.weights, self.layers, self.image_size,
                                         self.device_, self.seed)
        self.backbone_ = None if self.extractor_ is None else self.extractor_.config()
        self.featurizer_ = None if self.extractor_ is None else Featurizer(extractor=self.extractor_, device=self.device_)
        self.model_ = None
        self.norm_ = Buffers()
        self.model_input_shape_ = None
        self.history_ = None

    def _autoencoder(self, shape, device) -> ConvAutoencoder:
        """The network for inputs of ``shape``, seeded (the caller's random state untouched)."""
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(self.seed)
            return ConvAutoencoder(shape, self.latent_dim, self.width, self.levels, self.dropout,
                                   sigmoid=self.backbone_ is None)

    def _build_learned(self, device) -> dict:
        meta = str(device) == "meta"
        ext = None if self.backbone_ is None else extractor_from_config(
            self.backbone_, "cpu" if meta else device, weights=not meta)
        shape = tuple(self.model_input_shape_)
        norm = {} if ext is None else {n: ((1, shape[0], 1, 1), torch.float32) for n in ("mean", "std")}
        return {"extractor_": ext, "model_": self._autoencoder(shape, device).eval(),
                "norm_": Buffers.skeleton(norm, device)}

    def _after_load(self) -> None:
        super()._after_load()
        self.featurizer_ = None if self.extractor_ is None else Featurizer(extractor=self.extractor_, device=self.device_)
        self.model_.eval()

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the autoencoder sees: the image, or its standardised backbone feature maps."""
        x = x.to(self.device_)
        if self.featurizer_ is not None:
            with torch.no_grad():
                x = (self.featurizer_.patches(x) - self.norm_.mean) / self.norm_.std
        want = getattr(self, "model_input_shape_", None)
        if want is not None and list(x.shape[1:]) != list(want):
            raise AnomalyError(f"fitted.model_input_shape_={list(want)}: the network gets {list(x.shape[1:])} from "
                               "these images (a damaged or forged bundle?)")
        return x

    def _build(self, xs, shape: tuple[int, ...], sharded: bool = False) -> None:
        """The autoencoder for samples of ``shape``; with a backbone, the per-channel mean and std
        of its feature maps over the batches ``xs`` first (running moments, one pass; ``sharded``:
        ``xs`` is this process's share, the moments are merged over processes)."""
        if self.featurizer_ is not None:
            moments = RunningMoments()
            with torch.no_grad():
                for x in xs:
                    for i in range(0, len(x), 32):  # bounds the float64 copies of the feature maps
                        f = self.featurizer_.patches(x[i : i + 32].to(self.device_))
                        shape = tuple(f.shape[1:])
                        moments.update(f.transpose(0, 1).reshape(shape[0], -1).T[:, :, None])  # channels as positions
            if sharded:
                moments = moments.merged()
            self.norm_ = Buffers(mean=moments.mean.reshape(1, -1, 1, 1).float(),
                                 std=moments.covariance().sqrt().reshape(1, -1, 1, 1).float().clamp_min(1e-6))
        self.model_ = self._autoencoder(shape, "cpu").to(self.device_)
        self.model_input_shape_ = list(shape)

    def _onnx_graph(self):
        from ..components.onnx_graphs import ReconstructionGraph

        if self.mc_samples > 1:
            raise AnomalyError("Reconstruction: mc_samples > 1 (MC-dropout) is random at scoring time; export a "
                               "bundle with mc_samples=1")
        return ReconstructionGraph(self)

    def _loss(self, model, step) -> torch.Tensor:
        target = self._model_input(step.x)
        return F.mse_loss(model(target), target)

    # ------------------------------------------------------------------ the hooks
    def _before_training(self, batches, sharded: bool) -> None:
        self._build(batches, self.input_shape_, sharded=sharded)

    def _update(self, batch: Batch, fitting: bool) -> None:  # partial_fit only
        if self.model_ is None:
            self._build([batch.x], tuple(batch.x.shape[1:]))
        self._train(batch.x, self.partial_fit_epochs, val=False)

    def _passes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-pixel error maps (N, h, w) of ``mc_samples`` passes (dropout on when > 1)."""
        inp = self._model_input(x)
        self.model_.eval()
        if self.mc_samples > 1:
            for m in self.model_.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.train()
        gen_state = torch.random.fork_rng(devices=[self.device_.index or 0] if self.device_.type == "cuda" else [])
        maps = []
        with gen_state:
            torch.manual_seed(self.seed)
            for _ in range(self.mc_samples):
                maps.append(error_map(inp, self.model_(inp), self.metric))
        self.model_.eval()
        return maps

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.flatten(1).mean(1) for m in self._passes(x)]).mean(0)

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.stack(self._passes(x)).mean(0)
        if m.shape[-2:] != x.shape[-2:]:
            m = F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return m

    def score_spread(self, data):
        """Standard deviation of the image score over the MC-dropout passes (0 without them)."""
        self._require_fitted()
        out = []
        with torch.inference_mode():
            for b, _ in self._batches(data, "score_spread"):
                s = torch.stack([m.flatten(1).mean(1) for m in self._passes(b.x)])
                out.append(s.std(0, unbiased=False).double().cpu())
        return torch.cat(out).numpy()

