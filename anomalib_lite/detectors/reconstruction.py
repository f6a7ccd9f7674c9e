"""Reconstruction: anomaly = what an autoencoder trained on normal data cannot reproduce.

A convolutional autoencoder with a dense bottleneck learns to reconstruct normal images (or the
frozen backbone feature maps of normal images, ``backbone=...``). The score is the
reconstruction error (``metric``: mean squared error, 1 - SSIM, or mean absolute error; on
feature maps the error is in feature space), ``score_map`` the per-pixel error at input
resolution. ``mc_samples > 1`` with ``dropout > 0`` averages several stochastic passes
(MC-dropout); :meth:`score_spread` gives their spread. Training uses the project's loop
(:func:`anomalib_lite.training.fit_model`) with an optional ``augment`` pipeline; ``fit`` reads
its data batch by batch (feature statistics in a streaming pass), never all at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import backbones

from ..base import Detector, register
from ..data import Batch, training_data
from ..errors import AnomalyError
from ..features import Featurizer
from ..nets import ConvAutoencoder
from ..streaming import RunningMoments
from ..training import TrainConfig, augment_pipeline, fit_model

__all__ = ["Reconstruction", "ssim_map"]

_METRICS = ("mse", "ssim", "l1")


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM (N, H, W) of images in [0, 1], averaged over channels (Wang et al. 2004)."""
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2
    pool = lambda t: F.avg_pool2d(F.pad(t, (pad,) * 4, mode="reflect"), window, stride=1)
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(1)


@register
class Reconstruction(Detector):
    """Convolutional autoencoder; score = reconstruction error.

    Parameters
    ----------
    latent_dim, width, levels: bottleneck size, first stage width, number of stride-2 stages.
    metric: "mse", "ssim" (1 - SSIM; pixels only) or "l1".
    dropout, mc_samples: MC-dropout (``mc_samples`` stochastic passes at scoring time).
    backbone, weights, layers, image_size: reconstruct frozen backbone features instead of pixels.
    augment: an ``augment`` config (dict or YAML/JSON path) applied to training batches.
    epochs, batch_size, lr, weight_decay, patience, max_time: training (see ``TrainConfig``).
    num_workers: DataLoader processes that decode lazy data (image folders) while training.
    partial_fit_epochs: passes over each minibatch given to ``partial_fit``.
    """

    input_kind = "image"

    def __init__(
        self,
        latent_dim: int = 32,
        width: int = 32,
        levels: int = 2,
        metric: str = "mse",
        dropout: float = 0.0,
        mc_samples: int = 1,
        backbone: str | None = None,
        weights: str = "imagenet",
        layers: list[str] | None = None,
        image_size: int | None = None,
        augment=None,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        patience: int | None = 5,
        max_time: float | None = None,
        num_workers: int = 2,
        partial_fit_epochs: int = 1,
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
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        if self.metric not in _METRICS:
            raise AnomalyError(f"metric='{self.metric}': unknown; use one of {', '.join(_METRICS)}")
        if self.metric == "ssim" and self.backbone is not None:
            raise AnomalyError("metric='ssim' compares images; with a backbone use 'mse' or 'l1'")
        for name in ("latent_dim", "width", "levels", "mc_samples", "partial_fit_epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise AnomalyError(f"{name}={v!r}: must be a positive integer")
        if not 0 <= self.dropout < 1:
            raise AnomalyError(f"dropout={self.dropout}: must be in [0, 1)")
        if self.mc_samples > 1 and self.dropout == 0:
            raise AnomalyError("mc_samples > 1 needs dropout > 0 (MC-dropout)")
        self._train_config(self.epochs)

    def _train_config(self, epochs: int, val: bool = True) -> TrainConfig:
        return TrainConfig.for_epochs(self.get_params(), epochs, val)

    def _reset(self) -> None:
        try:
            self.device_ = backbones.resolve_device(self.device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None
        self._pipeline = augment_pipeline(self.augment)
        self.featurizer_ = Featurizer(
            self.backbone, weights=self.weights, layers=self.layers, image_size=self.image_size,
            device=self.device_, seed=self.seed,
        ) if self.backbone else None
        self.model_ = None
        self.feature_mean_ = self.feature_std_ = None
        self.history_ = None

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the autoencoder sees: the image, or its standardised backbone feature maps."""
        x = x.to(self.device_)
        if self.featurizer_ is None:
            return x
        with torch.no_grad():
            f = self.featurizer_.patches(x)
        return (f - self.feature_mean_) / self.feature_std_

    def _build(self, xs, shape: tuple[int, ...]) -> None:
        """The autoencoder for samples of ``shape``; with a backbone, the per-channel mean and std
        of its feature maps over the batches ``xs`` first (running moments, one pass)."""
        if self.featurizer_ is not None:
            moments = RunningMoments()
            with torch.no_grad():
                for x in xs:
                    for i in range(0, len(x), 32):  # bounds the float64 copies of the feature maps
                        f = self.featurizer_.patches(x[i : i + 32].to(self.device_))
                        shape = tuple(f.shape[1:])
                        moments.update(f.transpose(0, 1).reshape(shape[0], -1).T[:, :, None])  # channels as positions
            self.feature_mean_ = moments.mean.reshape(1, -1, 1, 1).float()
            self.feature_std_ = moments.covariance().sqrt().reshape(1, -1, 1, 1).float().clamp_min(1e-6)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.model_ = ConvAutoencoder(
                shape, self.latent_dim, self.width, self.levels, self.dropout,
                sigmoid=self.featurizer_ is None,
            ).to(self.device_)
        self.model_input_shape_ = shape

    def _loss(self, model, step) -> torch.Tensor:
        target = self._model_input(step.x)
        return F.mse_loss(model(target), target)

    def _train(self, x, epochs: int, val: bool) -> None:
        cfg = self._train_config(epochs, val)
        self.history_ = fit_model(
            self.model_, self._loss, x, None, cfg, self.device_, augment=self._pipeline,
            desc="autoencoder",
        )

    # ------------------------------------------------------------------ the hooks
    def fit(self, data) -> Reconstruction:
        """Train the autoencoder on normal images for ``epochs`` (early stopping on 10 %)."""
        self._start(data)
        train = training_data(data, batch_size=self.batch_size)
        self._check_input(train.head())
        self.input_shape_ = train.sample_shape
        self._build((b.x for b in train.batches(self.batch_size, self.num_workers)), self.input_shape_)
        self._train(train, self.epochs, val=True)
        self.n_seen_ = len(train)
        return self

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
                rec = self.model_(inp)
                if self.metric == "ssim":
                    maps.append(1 - ssim_map(inp, rec))
                elif self.metric == "l1":
                    maps.append((inp - rec).abs().mean(1))
                else:
                    maps.append(((inp - rec) ** 2).mean(1))
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

    # ------------------------------------------------------------------ bundles
    def _get_state(self):
        tensors = {f"ae.{k}": v for k, v in self.model_.state_dict().items()}
        meta = {
            "model_input_shape": list(self.model_input_shape_),
            "augment_config": None if self._pipeline is None else self._pipeline.to_config(),
            "history": None if self.history_ is None else self.history_.to_dict(),
        }
        if self.featurizer_ is not None:
            tensors.update(self.featurizer_.state_tensors())
            tensors["feature_mean"], tensors["feature_std"] = self.feature_mean_, self.feature_std_
            meta["backbone"] = self.featurizer_.config()
            meta["preprocessing"] = self.featurizer_.preprocessing()
        else:
            meta["preprocessing"] = {"features": "raw_pixels", "scale": "uint8/255"}
        return tensors, meta

    def _set_state(self, tensors, meta) -> None:
        self._check_params()
        self.device_ = backbones.resolve_device(self.device)
        self._pipeline = augment_pipeline(meta.get("augment_config"))
        self.featurizer_ = None
        if meta.get("backbone"):
            self.featurizer_ = Featurizer.from_state(meta["backbone"], tensors, 7, self.device_)
            self.feature_mean_ = tensors["feature_mean"].to(self.device_)
            self.feature_std_ = tensors["feature_std"].to(self.device_)
        shape = tuple(meta["model_input_shape"])
        self.model_input_shape_ = shape
        self.model_ = ConvAutoencoder(
            shape, self.latent_dim, self.width, self.levels, self.dropout,
            sigmoid=self.featurizer_ is None,
        )
        self.model_.load_state_dict({k[3:]: v for k, v in tensors.items() if k.startswith("ae.")})
        self.model_.to(self.device_).eval()
        self.history_ = None
