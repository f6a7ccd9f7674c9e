"""Self-supervised pretraining of a backbone on the user's own normal data.

Three pretext tasks, all needing only normal images:

* ``"transforms"``: predict which geometric transformation (a set of flips x shifts x quarter
  turns, see :data:`anomalib_lite.components.nets.TRANSFORM_SETS`) was applied. Telling orientation and
  position apart forces features that describe the normal shapes (GEOM, RotNet).
* ``"synthetic"``: tell normal images from subtle anomalies synthesised by ``augment.synth``
  (CutPaste-style pretraining).
* ``"segment"``: find those synthesised anomalies patch by patch, from the same patch features
  that ``LatentDistance`` compares (DRAEM-style dense supervision): the layers that describe
  patches learn what a local irregularity looks like on these images.

The result is a weights file (``backbones.save_weights``: safetensors + metadata) that works
anywhere ``weights=PATH`` does. The training loop is :func:`anomalib_lite.training.loop.fit_model`,
which reads the data batch by batch (lazy image folders through DataLoader workers).
This module is what an issue may call ``backbones.pretrain``: ``backbones`` itself knows nothing
of training, it only loads the file.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import backbones

from .. import distributed
from ..data.batches import training_data
from ..errors import AnomalyError
from ..io import atomic_output
from ..components.nets import (
    BackboneClassifier,
    PatchSegmenter,
    geometric_transform,
    n_transforms,
    trainable_extractor,
)
from ..components.streaming import stream_rng
from .loop import TrainConfig, TrainResult, fit_model

__all__ = ["PRETRAIN_CROP", "TASKS", "PretrainResult", "crop_batch", "pretrain", "synth_batch"]

TASKS = ("transforms", "synthetic", "segment")
DEFAULT_SYNTH_OPS = ("cutpaste", "scar", "stroke_blob", "local_elastic", "perlin")
#: what ``segment`` learns to find by default: local changes of any kind (``augment.synth.region``)
SEGMENT_SYNTH_OPS = ("region",)
#: ``LatentDistance(pretrain="segment")``'s recipe: small batches (each image twice, as it is and
#: with a synthesised change of any kind at full strength), mirrored normals, a time budget
DENSE_RECIPE = {"task": "segment", "synth_ops": SEGMENT_SYNTH_OPS, "severity": 1.0, "batch_size": 16,
                "augment": {"steps": [{"op": "hflip", "p": 0.5}, {"op": "vflip", "p": 0.5}]}}


#: the pretext tasks train on random crops of at most this many pixels a side: they learn local
#: patterns, which a crop of a large photograph holds as well as the whole, at a fraction of the
#: time and memory (24 photographs of 1200 x 900 px, segment task, batches of 16: 23.8 GB and
#: 107 s for one step whole). Smaller images are used whole, so nothing changes for them.
PRETRAIN_CROP = 256


#: held-out images below which their loss is too noisy to judge an epoch by (early stopping) or to
#: compare with chance: 4 constant images, whose rotations no network can tell apart, gave 1.328
#: against the chance loss of 1.386 (the transform ids the 4 drew were not uniform)
JUDGED = 32


@dataclass
class PretrainResult:
    """The pretrained (frozen) extractor, where its weights went, the loss history, and the pretext
    model itself (for ``segment``: a :class:`~anomalib_lite.components.nets.PatchSegmenter`, whose output is a
    map of where it sees anomalies), in eval mode."""

    extractor: backbones.FeatureExtractor
    history: TrainResult
    path: str | None = None
    model: torch.nn.Module | None = None
    #: the pretext loss of a guess that learned nothing (transforms: log of their number; synthetic:
    #: log 2), None where it depends on the data (segment: the share of changed pixels)
    chance: float | None = None
    #: what was asked: the epochs (at most) and the early-stopping patience
    epochs: int = 0
    patience: int | None = None

    @property
    def kept_epoch(self) -> int:
        """The epoch (0-based) whose weights were kept: the best held-out one with early stopping,
        else the last (the training loop's record)."""
        return self.history.kept_epoch

    @property
    def held_out(self) -> int:
        """Images held out for the held-out loss (early stopping; the training loop's record)."""
        return self.history.held_out

    def kept_loss(self) -> float | None:
        """The held-out loss of the kept weights (None without held-out images)."""
        return self.history.kept_loss()

    def learned(self) -> bool | None:
        """Whether the kept weights beat chance on the held-out images (by 2 %); None when there
        is no chance level, or fewer than :data:`JUDGED` held-out images to compare."""
        kept = self.kept_loss()
        if self.chance is None or kept is None or self.held_out < JUDGED:
            return None
        return kept < 0.98 * self.chance


def synth_batch(x: torch.Tensor, index: torch.Tensor, epoch: int, seed: int, ops, severity: float):
    """Synthesised anomalies of a batch with their masks (draws keyed by seed, epoch, index)."""
    import augment

    try:
        images, masks, _ = augment.synth.synthesize(
            x.detach().cpu().clamp(0, 1), ops=list(ops), severity=severity, seed=seed,
            indices=index.tolist(), epoch=epoch, min_pixels=2,
        )
    except augment.AugmentError as e:
        raise AnomalyError(f"synthesis: {e}") from None
    return images.to(x.device), torch.as_tensor(np.asarray(masks)).to(x.device)


def _segment_loss(model, step, seed: int, ops, severity: float, crop: int | None = None) -> torch.Tensor:
    """Dense pretext: find synthesised changes patch by patch (DRAEM's discriminative task). Every
    image appears twice, as it is and with a synthesised change; a patch's target is the share of
    it the change covers, and the focal loss (as DRAEM's) keeps the many easy normal patches from
    drowning the few changed ones. With ``crop``, the change is synthesised on the whole image (so
    its size is the one it has there) and the network sees the same window of both copies."""
    fake, masks = synth_batch(step.x, step.index, step.epoch, seed, ops, severity)
    x, fake, masks = crop_batch(step.x, step.index, step.epoch, seed, crop, fake, masks)
    logits = model(torch.cat([x, fake]))
    m = torch.cat([torch.zeros_like(masks), masks]).float()[:, None]
    target = F.adaptive_avg_pool2d(m, logits.shape[-2:])[:, 0]
    return focal_loss(logits, target)


def crop_batch(x: torch.Tensor, index: torch.Tensor, epoch: int, seed: int, size: int | None,
               *others: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Each image of ``x`` (N, C, H, W) cut to a random ``size`` x ``size`` window (a side shorter
    than ``size`` is kept whole), the window keyed by (seed, epoch, sample index); ``x`` itself when
    it fits or ``size`` is None. ``others`` (N, ..., H, W: a synthesised copy, its masks) are cut at
    the same windows, and then all are returned as a tuple."""
    h, w = x.shape[-2:]
    if size is None or (h <= size and w <= size):
        return (x, *others) if others else x
    ch, cw = min(h, size), min(w, size)
    rng = stream_rng(seed, epoch, 4099)
    top, left = (rng.integers(0, n - c + 1, size=int(index.max()) + 1) for n, c in ((h, ch), (w, cw)))
    rows = index.cpu().numpy()
    cut = [torch.stack([t[i, ..., a : a + ch, b : b + cw] for i, a, b in zip(range(len(t)), top[rows], left[rows])])
           for t in (x, *others)]
    return tuple(cut) if others else cut[0]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) with soft targets in [0, 1]."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return (ce * (1 - pt) ** gamma).mean()


def _transform_ids(index: torch.Tensor, epoch: int, seed: int, n: int) -> torch.Tensor:
    rng = stream_rng(seed, epoch, 7919)
    table = rng.integers(0, n, size=int(index.max()) + 1)
    return torch.as_tensor(table[index.numpy()])


def pretrain(
    backbone: str,
    data,
    task: str = "transforms",
    epochs: int = 10,
    weights: str | os.PathLike = "random",
    layers: list[str] | None = None,
    image_size: int | None = None,
    transforms: str = "geom",
    synth_ops: list[str] | tuple[str, ...] | None = None,
    severity: float = 0.5,
    augment: str | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    max_time: float | None = None,
    num_workers: int = 2,
    device: str = "auto",
    seed: int = 0,
    out: str | os.PathLike | None = None,
    verbose: bool = False,
    crop: int | None = PRETRAIN_CROP,
    patience: int | None = 5,
) -> PretrainResult:
    """Pretrain ``backbone`` on normal ``data`` with a self-supervised ``task``; optionally write
    the weights to ``out``. Returns the frozen extractor and the loss history.

    Parameters
    ----------
    backbone : str
        Backbone to pretrain (``anomaly backbones``).
    data
        Normal images: anything :func:`anomalib_lite.data.batches.training_data` reads (never held whole).
    task : {"transforms", "synthetic", "segment"}, default "transforms"
        transforms: which of ``transforms`` was applied; synthetic: normal vs synthesised
        defects; segment: where the synthesised defects are, patch by patch (local defects).
    epochs : int, default 10
        Passes over the images (at most: ``max_time`` ends it sooner; ``$ANOMALY_MAX_EPOCHS``
        caps it).
    weights : str or path, default "random"
        Starting weights: "random", "imagenet" or a weights file.
    layers : list of str or None, default None
    image_size : int or None, default None
    transforms : {"rot4", "rot4_flip", "geom"}, default "geom"
        Transformation set of the transforms task (geom: 72 flips x shifts x rotations).
    synth_ops : list of str or None, default None
        ``augment.synth`` ops of the synthetic and segment tasks; None: ``region`` (a local change
        of any kind) for segment, the five :data:`DEFAULT_SYNTH_OPS` for synthetic.
    severity : float, default 0.5
    augment : dict, str or None, default None
        Augmentation config applied to the normal images.
    batch_size : int, default 128
        Images per optimisation step.
    lr : float, default 1e-3
        Learning rate (AdamW).
    max_time : float or None, default None
        Time budget in seconds, set-up included (training stops before the step that would cross it).
    num_workers : int, default 2
        DataLoader processes decoding lazy data.
    device : str, default "auto"
    seed : int, default 0
    out : str or path or None, default None
        Weights file to write (safetensors).
    verbose : bool, default False
    crop : int or None, default 256
        Train on random crops of this many pixels a side of larger images (local patterns at a
        fraction of the time and memory); None (or a crop larger than the images): whole images. ``segment`` synthesises its change
        on the whole image and cuts both copies and the mask at one window (the change keeps the
        size it has on whole images); the other tasks cut first. Not with ``image_size`` (the
        extractor resizes whole images, so a crop would be seen at another scale).
    patience : int or None, default 5
        Epochs without a better held-out loss (10 % of the images) before training stops, keeping
        the best epoch's weights; None: every epoch (within ``max_time``), the last weights kept.

    Examples
    --------
    >>> import numpy as np
    >>> from anomalib_lite.training.pretrain import pretrain
    >>> images = np.random.default_rng(0).random((32, 1, 16, 16)).astype("float32")
    >>> res = pretrain("resnet18", images, transforms="rot4", epochs=1, batch_size=16, num_workers=0, device="cpu")
    >>> len(res.history.train_loss)
    1
    """
    t0 = time.perf_counter()
    if task not in TASKS:
        raise AnomalyError(f"task='{task}': unknown; use one of {', '.join(TASKS)}")
    if synth_ops is None:
        synth_ops = SEGMENT_SYNTH_OPS if task == "segment" else DEFAULT_SYNTH_OPS
    if out is not None:
        from ..io import check_writable

        check_writable(out, "weights")
    dev = backbones.resolve_device(device)
    train = training_data(data, batch_size=batch_size)
    if len(train.sample_shape) != 3:
        raise AnomalyError(f"pretrain: needs images (N,C,H,W), got samples shaped {train.sample_shape}")
    ext = trainable_extractor(backbone, weights, layers, image_size, seed, dev)
    n_out = n_transforms(transforms) if task == "transforms" else 2
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = PatchSegmenter(ext) if task == "segment" else BackboneClassifier(ext, n_out)

    if crop is not None and crop < 8:
        raise AnomalyError(f"pretrain: crop={crop!r} must be at least 8 pixels, or None for whole images")
    crop = None if ext.image_size else crop

    def loss_fn(model, step):
        window = crop if step.train else None
        if task == "segment":  # the change synthesised on the whole image (its size there), then cut with it
            return _segment_loss(model, step, seed, synth_ops, severity, window)
        x = crop_batch(step.x, step.index, step.epoch, seed, window)  # cut first: every copy must hold its change
        if task == "transforms":
            ids = _transform_ids(step.index, step.epoch, seed, n_out).to(x.device)
            logits = model(geometric_transform(x, ids, transforms))
            return F.cross_entropy(logits, ids)
        fake, _ = synth_batch(x, step.index, step.epoch, seed, synth_ops, severity)
        xb = torch.cat([x, fake])
        target = torch.cat([torch.zeros(len(step.x)), torch.ones(len(fake))]).long().to(xb.device)
        return F.cross_entropy(model(xb), target)

    if max_time is not None:  # the budget covers the set-up above too (reading data, building the network)
        max_time = max(1e-3, max_time - (time.perf_counter() - t0))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_time=max_time, num_workers=num_workers,
                      seed=seed, verbose=verbose, patience=patience)
    history = fit_model(model, loss_fn, train, None, cfg, dev, augment=augment, desc=f"pretrain {task}")
    meta = {
        "task": task,
        "world_size": distributed.world(),
        "transforms": transforms if task == "transforms" else None,
        "epochs_run": len(history.train_loss),
        "final_loss": history.train_loss[-1],
        "image_size": list(ext.image_size) if ext.image_size else None,
        "layers": list(ext.layers),
        "mean": list(ext.mean),
        "std": list(ext.std),
    }
    path = None
    if out is not None:
        if distributed.is_main():  # under torchrun every rank holds the same weights: rank 0 writes
            data = backbones.weights.weights_bytes(ext.trunk_state_dict(), backbone, metadata=meta, where=str(out))
            with atomic_output(out, "weights") as tmp:
                tmp.write_bytes(data)
        path = str(out)
    frozen = backbones.FeatureExtractor.from_config(
        {**ext.config(), "weights_source": path or "pretrained (not saved)"},
        state_dict=ext.trunk_state_dict(), device=dev,
    )
    chance = math.log(n_out) if task != "segment" else None
    return PretrainResult(frozen, history, path, model.eval(), chance, cfg.epochs, patience)


def _checks() -> dict:
    from .. import validate as v
    from ..components.nets import TRANSFORM_SETS

    return {"task": v.one_of(*TASKS), "transforms": v.one_of(*TRANSFORM_SETS),
            "patience": v.none_or(v.integer(1, 100_000))}


pretrain._param_checks = _checks()  # the CLI offers their choices
