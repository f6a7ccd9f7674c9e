"""SyntheticOOD: a classifier of normal images vs subtle anomalies synthesised from them.

A backbone (random, ImageNet or self-pretrained weights) with a linear head is fine-tuned to tell
normal images from ``augment.synth`` variations of them (CutPaste, scars, Perlin blends, strokes,
local warps). The anomaly score is the classifier's anomaly probability (``scoring="probability"``)
or, as in CutPaste, the Mahalanobis distance of an image's pooled features to a Gaussian fitted on
the normal training images (``scoring="gaussian"``, usually better: synthetic artefacts are not the
real anomalies, but the features learned to spot them describe the normal images well).
``score_map``: ``map_method="patch"`` scores every position of the finest requested layer
against a Gaussian of normal patch features; ``"gradient"`` is the smoothed input gradient of the
score. ``fit`` reads its data batch by batch (the Gaussians from running moments), never all at
once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import backbones

from .. import validate as v
from .base import RUN_CHECKS, Capabilities, register
from ..data.batches import Batch
from ..errors import AnomalyError
from ..components.features import BACKBONE_CHECKS, check_backbone_config
from ..components.nets import BackboneClassifier, trainable_extractor
from ..numeric import gaussian_blur, mahalanobis
from ..training.pretrain import DEFAULT_SYNTH_OPS, synth_batch
from ..state import Buffers
from ..components.streaming import RunningMoments
from ..training.loop import TRAIN_CHECKS, augment_pipeline, check_augment, history
from .trained import TrainedDetector

__all__ = ["SyntheticOOD"]

_SCORES = ("gaussian", "probability")
_MAPS = ("patch", "gradient")


def _synth_ops(value, name):
    import augment

    if not isinstance(value, (list, tuple)) or not value or len(value) > 32:
        raise AnomalyError(f"{name}: give one to 32 augment.synth ops")
    unknown = [op for op in value if op not in augment.synth.OPS]
    if unknown:
        raise AnomalyError(f"{name}: unknown op '{str(unknown[0])[:40]}'; ops are: {', '.join(augment.synth.OPS)}")
    return value


@register
class SyntheticOOD(TrainedDetector):
    """Normal-vs-synthetic classifier; score = Gaussian feature distance or anomaly probability.

    Parameters
    ----------
    backbone : str, default "resnet18"
        The network to fine-tune.
    weights : str or path, default "random"
        "random", "imagenet" or a weights file (e.g. written by ``anomaly pretrain``).
    layers, image_size
        As for :func:`backbones.create`.
    synth_ops : list of str, default the five of :data:`anomalib_lite.training.pretrain.DEFAULT_SYNTH_OPS`
        ``augment.synth`` ops that make the anomalous class.
    severity : float, default 0.5
        In (0, 1]: how strong the synthesised changes may be.
    scoring : {"gaussian", "probability"}, default "gaussian"
        Mahalanobis distance of pooled features to the normal Gaussian (CutPaste), or the
        classifier's anomaly probability.
    map_method : {"patch", "gradient"}, default "patch"
        Maps from per-position Gaussians of the finest layer, or from the score's input gradient.
    shrinkage : float, default 0.01
        Weight of the scaled identity mixed into the covariances.
    augment : dict, str, augment.Pipeline or None, default None
        Augmentation of the normal images before synthesis.
    epochs : int, default 10
        Passes over the training images (at most: early stopping and ``max_time`` end it sooner;
        ``$ANOMALY_MAX_EPOCHS`` caps it).
    batch_size : int, default 64
        Images per optimisation step.
    lr : float, default 1e-3
        Learning rate (AdamW).
    weight_decay : float, default 1e-4
        AdamW's weight decay.
    patience : int or None, default 5
        Epochs without a better loss on a 10 % held-out share before training stops (None: all
        epochs).
    max_time : float or None, default None
        Training time budget in seconds (training stops before the step that would cross it).
    num_workers : int, default 2
    partial_fit_epochs : int, default 1
    contamination, device, seed, verbose
        The run parameters every detector has (:class:`~anomalib_lite.detectors.base.Detector`).

    Attributes
    ----------
    model_ : anomalib_lite.components.nets.BackboneClassifier
        The fine-tuned backbone and its two-way head.
    gauss_ : anomalib_lite.state.Buffers
        ``mean``/``scatter`` of pooled features and ``patch_mean``/``patch_scatter`` of the
        finest layer's patch features, over the normal training images.
    history_ : anomalib_lite.training.loop.TrainResult

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite import SyntheticOOD
    >>> rng = np.random.default_rng(0)
    >>> normal = (0.5 + 0.1 * rng.standard_normal((48, 1, 16, 16))).clip(0, 1).astype("float32")
    >>> det = SyntheticOOD(epochs=1, batch_size=16, num_workers=0, device="cpu").fit(normal)
    >>> det.decision_function(normal[:2]).shape
    (2,)
    """

    capabilities = Capabilities(has_maps=True)
    command = "synthetic"  # `anomaly fit synthetic`
    cli_examples = ('--data "mnist:train?classes=7" --image-size 32 -o ood7.anomaly',)
    quick_params = {"layers": ["layer1"], "epochs": 1, "batch_size": 16, "num_workers": 0}
    _train_desc = "synthetic-ood"

    input_kind = "image"
    _param_checks = {
        **{k: c for k, c in BACKBONE_CHECKS.items() if k != "backbone"},
        "backbone": v.text(64),
        "synth_ops": _synth_ops,
        "severity": v.number(0, 1, lo_open=True),
        "scoring": v.one_of(*_SCORES),
        "map_method": v.one_of(*_MAPS),
        "shrinkage": v.number(0, 1),
        "augment": check_augment,
        **TRAIN_CHECKS,
        "partial_fit_epochs": v.integer(1, 1000),
        **RUN_CHECKS,
    }
    _fitted_checks = {
        "backbone_": lambda cfg, name: check_backbone_config(cfg, name),
        "moments_n_": v.integer(0, 1 << 62),
        "patch_moments_n_": v.integer(0, 1 << 62),
        "history_": v.none_or(history),
    }
    _learned = ("model_", "gauss_")

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "random",
        layers: list[str] | None = None,
        image_size: int | None = None,
        synth_ops: list[str] | tuple[str, ...] = DEFAULT_SYNTH_OPS,
        severity: float = 0.5,
        scoring: str = "gaussian",
        map_method: str = "patch",
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
        contamination: float | None = None,
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
        self.map_method = map_method
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
        self.contamination = contamination
        self.device = device
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------ set-up
    def _classifier(self, ext) -> BackboneClassifier:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return BackboneClassifier(ext, 2)

    def _reset(self) -> None:
        self.device_ = self._resolve_device()
        self._pipeline = augment_pipeline(self.augment)
        ext = trainable_extractor(self.backbone, self.weights, self.layers, self.image_size, self.seed, self.device_)
        self.model_ = self._classifier(ext)
        self.backbone_ = ext.config()
        self._moments, self._patch_moments = RunningMoments(), RunningMoments()
        self.gauss_ = Buffers()
        self.moments_n_ = self.patch_moments_n_ = 0
        self._precision = self._patch_precision = None
        self.history_ = None

    def _build_learned(self, device) -> dict:
        check_backbone_config(self.backbone_, "fitted.backbone_")
        cfg = self.backbone_
        try:
            ext = backbones.FeatureExtractor(
                cfg["name"], cfg["layers"], weights_source=cfg["weights_source"], weights_sha256=cfg.get("weights_sha256"),
                image_size=cfg.get("image_size"), mean=cfg["mean"], std=cfg["std"], seed=cfg["seed"],
                device="cpu" if str(device) == "meta" else device, frozen=False,
            )
        except backbones.BackboneError as e:
            raise AnomalyError(str(e)) from None
        d = sum(ext.layer_channels.values())
        c = ext.layer_channels[ext.layers[0]]
        spec = {}
        if self.moments_n_:
            spec.update(mean=((d,), torch.float64), scatter=((d, d), torch.float64))
        if self.patch_moments_n_:
            spec.update(patch_mean=((c,), torch.float64), patch_scatter=((c, c), torch.float64))
        return {"model_": self._classifier(ext).eval(), "gauss_": Buffers.skeleton(spec, device)}

    def _after_load(self) -> None:
        super()._after_load()
        self.model_.to(self.device_).eval()
        g = self.gauss_
        self._moments = RunningMoments.from_buffers(g, self.moments_n_)
        self._patch_moments = RunningMoments.from_buffers(g, self.patch_moments_n_, "patch_")
        self._precision = self._patch_precision = None

    def _loss(self, model, step) -> torch.Tensor:
        fake, _ = synth_batch(step.x, step.index, step.epoch, self.seed, self.synth_ops, self.severity)
        xb = torch.cat([step.x, fake])
        target = torch.cat([torch.zeros(len(step.x)), torch.ones(len(fake))]).long().to(xb.device)
        return F.cross_entropy(model(xb), target)

    def _finest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (N, D) and the finest layer's map (N, C, h, w), model in eval mode."""
        maps = self.model_.extractor(x.to(self.device_))
        pooled = torch.cat([m.float().mean(dim=(2, 3)) for m in maps.values()], dim=1)
        return pooled, next(iter(maps.values())).float()

    def _fit_gaussians(self, xs, sharded: bool = False) -> None:
        """Add the batches ``xs`` to the running moments of pooled and patch features
        (``sharded``: ``xs`` is this process's share, the moments are merged over processes)."""
        self.model_.eval()
        with torch.no_grad():
            for x in xs:
                for i in range(0, len(x), 256):
                    pooled, fine = self._finest(x[i : i + 256])
                    self._moments.update(pooled)
                    self._patch_moments.update(fine.permute(0, 2, 3, 1).reshape(-1, fine.shape[1]))
        if sharded:
            self._moments = self._moments.merged()
            self._patch_moments = self._patch_moments.merged()
        self._precision = self._patch_precision = None
        m, pm = self._moments, self._patch_moments
        self.gauss_ = Buffers(mean=m.mean, scatter=m.scatter, patch_mean=pm.mean, patch_scatter=pm.scatter)
        self.moments_n_, self.patch_moments_n_ = m.n, pm.n

    # ------------------------------------------------------------------ the hooks
    def _after_training(self, batches, sharded: bool) -> None:
        self._fit_gaussians(batches, sharded=sharded)

    def _update(self, batch: Batch, fitting: bool) -> None:  # partial_fit only
        self._train(batch.x, self.partial_fit_epochs, val=False)
        self._fit_gaussians([batch.x])

    def _gaussian(self, moments: RunningMoments) -> torch.Tensor:
        try:
            return moments.precision(self.shrinkage)
        except ValueError as e:  # fewer than 2 samples, or singular
            raise AnomalyError(f"SyntheticOOD: {e}") from None

    def _score_batch(self, x: torch.Tensor) -> torch.Tensor:
        self.model_.eval()
        if self.scoring == "probability":
            return self.model_(x.to(self.device_)).float().softmax(1)[:, 1]
        if self._precision is None:
            self._precision = self._gaussian(self._moments)
        pooled, _ = self._finest(x)
        return mahalanobis(pooled, self._moments.mean, self._precision)

    def _score_map_batch(self, x: torch.Tensor) -> torch.Tensor:
        self.model_.eval()
        H, W = x.shape[-2:]
        if self.map_method == "patch":
            if self._patch_precision is None:
                self._patch_precision = self._gaussian(self._patch_moments)
            _, fine = self._finest(x)
            n, _, h, w = fine.shape
            d = mahalanobis(fine.permute(0, 2, 3, 1), self._patch_moments.mean, self._patch_precision)
            m = F.interpolate(d.reshape(n, 1, h, w).float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        else:
            with torch.inference_mode(False), torch.enable_grad():
                xg = x.clone().to(self.device_).requires_grad_(True)
                self._score_for_grad(xg).sum().backward()
                m = xg.grad.abs().amax(1)
        return gaussian_blur(m, sigma=max(1.0, 4.0 * max(H, W) / 224))

    def _score_for_grad(self, x: torch.Tensor) -> torch.Tensor:
        if self.scoring == "probability":
            return self.model_(x).float().log_softmax(1)[:, 1]
        if self._precision is None:
            self._precision = self._gaussian(self._moments)
        pooled, _ = self._finest(x)
        return mahalanobis(pooled, self._moments.mean, self._precision)

