"""SyntheticOOD: a classifier of normal images vs subtle anomalies synthesised from them.

A backbone (random, ImageNet or self-pretrained weights) with a linear head is fine-tuned to tell
normal images from ``augment.synth`` variations of them (CutPaste, scars, Perlin blends, strokes,
local warps). The anomaly score is the classifier's anomaly probability (``scoring="probability"``)
or, as in CutPaste, the Mahalanobis distance of an image's pooled features to a Gaussian fitted on
the normal training images (``scoring="gaussian"``, usually better: synthetic artefacts are not the
real anomalies, but the features learned to spot them describe the normal images well).
``score_map``: ``maps="patch"`` scores every position of the finest requested layer against a
Gaussian of normal patch features; ``maps="gradient"`` is the smoothed input gradient of the
score. ``fit`` reads its data batch by batch (the Gaussians from running moments), never all at
once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import backbones

from ..base import Detector, register
from ..data import Batch, training_data
from ..errors import AnomalyError
from ..nets import BackboneClassifier, trainable_extractor
from ..pretrain import DEFAULT_SYNTH_OPS, synth_batch
from ..streaming import RunningMoments
from ..training import TrainConfig, augment_pipeline, fit_model
from .latent import _blur, _mahalanobis

__all__ = ["SyntheticOOD"]

_SCORES = ("gaussian", "probability")
_MAPS = ("patch", "gradient")


@register
class SyntheticOOD(Detector):
    """Normal-vs-synthetic classifier; score = Gaussian feature distance or anomaly probability.

    Parameters
    ----------
    backbone, weights, layers, image_size: the network to fine-tune (``weights`` may be a file
        written by ``anomaly pretrain``).
    synth_ops, severity: the synthesis (``augment.synth`` op names; severity in (0, 1]).
    scoring: "gaussian" or "probability"; maps: "patch" or "gradient"; shrinkage: of the Gaussians.
    augment: an ``augment`` config applied to the normal images before synthesis.
    epochs, batch_size, lr, weight_decay, patience, max_time: training (see ``TrainConfig``).
    num_workers: DataLoader processes that decode lazy data (image folders) while training.
    """

    input_kind = "image"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "random",
        layers: list[str] | None = None,
        image_size: int | None = None,
        synth_ops: list[str] | tuple[str, ...] = DEFAULT_SYNTH_OPS,
        severity: float = 0.5,
        scoring: str = "gaussian",
        maps: str = "patch",
        shrinkage: float = 0.01,
        augment=None,
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int | None = 5,
        max_time: float | None = None,
        num_workers: int = 2,
        partial_fit_epochs: int = 1,
        device: str = "auto",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.image_size = image_size
        self.synth_ops = synth_ops
        self.severity = severity
        self.scoring = scoring
        self.maps = maps
        self.shrinkage = shrinkage
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
        if self.scoring not in _SCORES:
            raise AnomalyError(f"scoring='{self.scoring}': unknown; use one of {', '.join(_SCORES)}")
        if self.maps not in _MAPS:
            raise AnomalyError(f"maps='{self.maps}': unknown; use one of {', '.join(_MAPS)}")
        if not 0 < self.severity <= 1:
            raise AnomalyError(f"severity={self.severity}: must be in (0, 1]")
        if not self.synth_ops:
            raise AnomalyError("synth_ops: give at least one augment.synth op")
        import augment

        unknown = [op for op in self.synth_ops if op not in augment.synth.OPS]
        if unknown:
            raise AnomalyError(f"synth_ops: unknown op '{unknown[0]}'; ops are: {', '.join(augment.synth.OPS)}")
        self._train_config(self.epochs)

    def _train_config(self, epochs: int, val: bool = True) -> TrainConfig:
        return TrainConfig.for_epochs(self.get_params(), epochs, val)

    def _reset(self) -> None:
        try:
            self.device_ = backbones.resolve_device(self.device)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None
        self._pipeline = augment_pipeline(self.augment)
        ext = trainable_extractor(self.backbone, self.weights, self.layers, self.image_size, self.seed, self.device_)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.model_ = BackboneClassifier(ext, 2)
        self._moments, self._patch_moments = RunningMoments(), RunningMoments()
        self._precision = self._patch_precision = None
        self.history_ = None

    def _loss(self, model, step) -> torch.Tensor:
        fake, _ = synth_batch(step.x, step.index, step.epoch, self.seed, self.synth_ops, self.severity)
        xb = torch.cat([step.x, fake])
        target = torch.cat([torch.zeros(len(step.x)), torch.ones(len(fake))]).long().to(xb.device)
        return F.cross_entropy(model(xb), target)

    def _train(self, x, epochs: int, val: bool) -> None:
        self.history_ = fit_model(
            self.model_, self._loss, x, None, self._train_config(epochs, val), self.device_,
            augment=self._pipeline, desc="synthetic-ood",
        )

    def _finest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (N, D) and the finest layer's map (N, C, h, w), model in eval mode."""
        maps = self.model_.extractor(x.to(self.device_))
        pooled = torch.cat([m.float().mean(dim=(2, 3)) for m in maps.values()], dim=1)
        return pooled, next(iter(maps.values())).float()

    def _fit_gaussians(self, xs) -> None:
        """Add the batches ``xs`` to the running moments of pooled and patch features."""
        self.model_.eval()
        with torch.no_grad():
            for x in xs:
                for i in range(0, len(x), 256):
                    pooled, fine = self._finest(x[i : i + 256])
                    self._moments.update(pooled)
                    self._patch_moments.update(fine.permute(0, 2, 3, 1).reshape(-1, fine.shape[1]))
        self._precision = self._patch_precision = None

    # ------------------------------------------------------------------ the hooks
    def fit(self, data) -> SyntheticOOD:
        """Fine-tune on normal images vs their synthesised variations, then fit the Gaussians."""
        self._start(data)
        train = training_data(data, batch_size=self.batch_size)
        self._check_input(train.head())
        self.input_shape_ = train.sample_shape
        self._train(train, self.epochs, val=True)
        self._fit_gaussians(b.x for b in train.batches(self.batch_size, self.num_workers))
        self.n_seen_ = len(train)
        return self

    def _update(self, batch: Batch, fitting: bool) -> None:  # partial_fit only
        self._train(batch.x, self.partial_fit_epochs, val=False)
        self._fit_gaussians([batch.x])

    def _gaussian(self, moments: RunningMoments) -> torch.Tensor:
        return torch.linalg.inv(moments.covariance(self.shrinkage))

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        self.model_.eval()
        if self.scoring == "probability":
            return self.model_(x.to(self.device_)).float().softmax(1)[:, 1]
        if self._precision is None:
            self._precision = self._gaussian(self._moments)
        pooled, _ = self._finest(x)
        return _mahalanobis(pooled, self._moments.mean, self._precision)

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        self.model_.eval()
        H, W = x.shape[-2:]
        if self.maps == "patch":
            if self._patch_precision is None:
                self._patch_precision = self._gaussian(self._patch_moments)
            _, fine = self._finest(x)
            n, _, h, w = fine.shape
            d = _mahalanobis(fine.permute(0, 2, 3, 1), self._patch_moments.mean, self._patch_precision)
            m = F.interpolate(d.reshape(n, 1, h, w).float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        else:
            with torch.inference_mode(False), torch.enable_grad():
                xg = x.clone().to(self.device_).requires_grad_(True)
                self._score_for_grad(xg).sum().backward()
                m = xg.grad.abs().amax(1)
        return _blur(m, sigma=max(1.0, 4.0 * max(H, W) / 224))

    def _score_for_grad(self, x: torch.Tensor) -> torch.Tensor:
        if self.scoring == "probability":
            return self.model_(x).float().log_softmax(1)[:, 1]
        if self._precision is None:
            self._precision = self._gaussian(self._moments)
        pooled, _ = self._finest(x)
        return _mahalanobis(pooled, self._moments.mean, self._precision)

    # ------------------------------------------------------------------ bundles
    def _get_state(self):
        ext = self.model_.extractor
        tensors = {f"backbone.{k}": v for k, v in ext.trunk_state_dict().items()}
        tensors.update({f"head.{k}": v for k, v in self.model_.head.state_dict().items()})
        tensors.update(mean=self._moments.mean, scatter=self._moments.scatter,
                       patch_mean=self._patch_moments.mean, patch_scatter=self._patch_moments.scatter)
        meta = {
            "backbone": {**ext.config(), "weights_source": ext.weights_source},
            "preprocessing": {"image_size": ext.config()["image_size"], "mean": list(ext.mean), "std": list(ext.std)},
            "moments_n": self._moments.n,
            "patch_moments_n": self._patch_moments.n,
            "augment_config": None if self._pipeline is None else self._pipeline.to_config(),
            "history": None if self.history_ is None else self.history_.to_dict(),
        }
        return tensors, meta

    def _set_state(self, tensors, meta) -> None:
        self._check_params()
        self.device_ = backbones.resolve_device(self.device)
        self._pipeline = augment_pipeline(meta.get("augment_config"))
        state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
        try:
            ext = backbones.FeatureExtractor.from_config(meta["backbone"], state_dict=state, device=self.device_)
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None
        self.model_ = BackboneClassifier(ext, 2)
        self.model_.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        self.model_.to(self.device_).eval()
        dev = self.device_
        self._moments = RunningMoments.from_state(meta["moments_n"], tensors["mean"].to(dev), tensors["scatter"].to(dev))
        self._patch_moments = RunningMoments.from_state(
            meta["patch_moments_n"], tensors["patch_mean"].to(dev), tensors["patch_scatter"].to(dev)
        )
        self._precision = self._patch_precision = None
        self.history_ = None
